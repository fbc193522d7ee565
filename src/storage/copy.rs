//! Server-side copies of an announced object, made with the service keys, for verification to
//! keep where app credentials never write (`verification.protected_prefix`): what it judges
//! and hands processors is that copy, so a second PUT to the original changes nothing they
//! read. Each copy request names the version verification saw (S3
//! `x-amz-copy-source-if-match`, OSS `x-oss-copy-source-if-match`), and a store that answers
//! 412 (or no longer has the object) means it changed. Some stores ignore the condition (Ceph
//! RGW 16 reads only its own `x-amz-copy-if-match`; measured), which is why the copy itself is
//! what gets judged.
//!
//! One CopyObject copies at most [`MAX_COPY_OBJECT_BYTES`] here (OSS's limit; S3's is 5 GiB);
//! larger objects are copied in parts (UploadPartCopy), each conditioned the same way, and a
//! failed multipart copy is aborted.

use std::time::Duration;

use super::Provider;
use super::signed::{BucketClient, Call, encode_key, values};

/// Why a copy was not made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyError {
    /// The source is not the version the copy named any more (or is gone).
    Changed,
    /// The store refused or did not answer: what it said, fit for a log.
    Failed(String),
}

/// The version of an object to copy, as a HEAD described it.
pub struct Source<'a> {
    pub key: &'a str,
    pub size: u64,
    /// The ETag as the store sent it, which the copy's condition names.
    pub raw_etag: &'a str,
    pub content_type: Option<&'a str>,
}

/// The most one CopyObject copies: OSS's limit (S3's is 5 GiB), so one rule holds on both.
pub const MAX_COPY_OBJECT_BYTES: u64 = 1 << 30;
/// The smallest part S3 takes (but the last); OSS takes 100 KB.
pub const MIN_PART_BYTES: u64 = 5 << 20;
/// The largest part either store takes.
pub const MAX_PART_BYTES: u64 = 5 << 30;
/// A copy of a large object runs in the store; it may take long.
const COPY_TIMEOUT: Duration = Duration::from_secs(300);

/// The inclusive byte ranges an object of `size` bytes is copied in with parts of at least
/// `part_bytes`: `None` for one CopyObject (`size` at most `part_bytes`), else at most 10,000
/// parts, each larger than `part_bytes` when that many would not cover it. Fails when no part
/// size within the stores' limits covers it (more than 10,000 parts of 5 GiB).
pub fn parts(size: u64, part_bytes: u64) -> Result<Option<Vec<(u64, u64)>>, String> {
    if size <= part_bytes {
        return Ok(None);
    }
    let part = part_bytes.max(size.div_ceil(u64::from(super::MAX_PART_NUMBER)));
    if part > MAX_PART_BYTES {
        return Err(format!(
            "{size} bytes cannot be copied in {} parts of at most 5 GiB",
            super::MAX_PART_NUMBER
        ));
    }
    let ranges = (0..size)
        .step_by(part as usize)
        .map(|first| (first, (first + part).min(size) - 1))
        .collect();
    Ok(Some(ranges))
}

/// Copies `source` to `target` (see the module's documentation), in parts when it is larger
/// than `part_bytes`.
pub async fn copy_version(
    client: &BucketClient,
    source: &Source<'_>,
    target: &str,
    part_bytes: u64,
) -> Result<(), CopyError> {
    let ranges = parts(source.size, part_bytes).map_err(CopyError::Failed)?;
    let x = match client.provider() {
        Provider::S3 => "x-amz",
        Provider::Aliyun => "x-oss",
    };
    let copy_source = match client.provider() {
        Provider::S3 => format!("{}/{}", client.bucket(), encode_key(source.key)),
        Provider::Aliyun => format!("/{}/{}", client.bucket(), encode_key(source.key)),
    };
    let conditions = vec![
        (format!("{x}-copy-source"), copy_source),
        (
            format!("{x}-copy-source-if-match"),
            source.raw_etag.to_owned(),
        ),
    ];
    let Some(ranges) = ranges else {
        let mut copy = Call::new("PUT", target);
        copy.headers = conditions;
        copy.timeout = Some(COPY_TIMEOUT);
        answer(client, copy, "CopyObjectResult").await?;
        return Ok(());
    };
    let mut create = Call::new("POST", target);
    create.query = vec![("uploads", None)];
    // Only a single copy takes the source's type along.
    if let Some(content_type) = source.content_type {
        create.headers = vec![("content-type".into(), content_type.to_owned())];
    }
    let created = answer(client, create, "InitiateMultipartUploadResult").await?;
    let upload_id = values(&created, "UploadId")
        .into_iter()
        .next()
        .filter(|id| super::is_multipart_id(id))
        .ok_or_else(|| CopyError::Failed("the store named no usable UploadId".into()))?;
    let copied = copy_parts(client, target, &upload_id, &conditions, &ranges, x).await;
    if copied.is_err() {
        // The parts would be kept (and billed) until a lifecycle rule aborts them.
        let mut abort = Call::new("DELETE", target);
        abort.query = vec![("uploadId", Some(upload_id.clone()))];
        if let Err(e) = client.send(abort).await {
            tracing::warn!(error = format!("{e:#}"), "aborting a failed multipart copy");
        }
    }
    copied
}

/// UploadPartCopy of each range, then CompleteMultipartUpload.
async fn copy_parts(
    client: &BucketClient,
    target: &str,
    upload_id: &str,
    conditions: &[(String, String)],
    ranges: &[(u64, u64)],
    x: &str,
) -> Result<(), CopyError> {
    let mut completed = String::from("<CompleteMultipartUpload>");
    for (i, (first, last)) in ranges.iter().enumerate() {
        let number = (i + 1).to_string();
        let mut part = Call::new("PUT", target);
        part.query = vec![
            ("partNumber", Some(number.clone())),
            ("uploadId", Some(upload_id.to_owned())),
        ];
        part.headers = conditions.to_vec();
        part.headers.push((
            format!("{x}-copy-source-range"),
            format!("bytes={first}-{last}"),
        ));
        part.timeout = Some(COPY_TIMEOUT);
        let answered = answer(client, part, "CopyPartResult").await?;
        let etag = values(&answered, "ETag")
            .into_iter()
            .next()
            .ok_or_else(|| CopyError::Failed("a part copy came back without ETag".into()))?;
        let etag = etag.trim_matches('"');
        completed +=
            &format!("<Part><PartNumber>{number}</PartNumber><ETag>\"{etag}\"</ETag></Part>");
    }
    completed += "</CompleteMultipartUpload>";
    let mut complete = Call::new("POST", target);
    complete.query = vec![("uploadId", Some(upload_id.to_owned()))];
    complete.headers = vec![("content-type".into(), "application/xml".into())];
    complete.body = completed.into_bytes();
    complete.timeout = Some(COPY_TIMEOUT);
    answer(client, complete, "CompleteMultipartUploadResult").await?;
    Ok(())
}

/// Deletes `key`; one that is already gone is deleted. Fails with what went wrong.
pub async fn delete(client: &BucketClient, key: &str) -> Result<(), String> {
    let response = client
        .send(Call::new("DELETE", key))
        .await
        .map_err(|e| format!("{e:#}"))?;
    match response.status().as_u16() {
        200..=299 | 404 => Ok(()),
        status => Err(format!("DELETE: HTTP {status}")),
    }
}

/// Sends `call` and reads its answer: the body when it holds `<{element}`. A copy's answer
/// can be a 200 whose body is an error (S3 starts answering before a long copy ends), so the
/// body decides. The source changed (412, or gone, or shorter than a range): `Changed`.
async fn answer(client: &BucketClient, call: Call<'_>, element: &str) -> Result<String, CopyError> {
    let response = client
        .send(call)
        .await
        .map_err(|e| CopyError::Failed(format!("{e:#}")))?;
    let status = response.status().as_u16();
    let body = response
        .text()
        .await
        .map_err(|e| CopyError::Failed(crate::upstream::without_url(&e)))?;
    if (200..300).contains(&status) && body.contains(&format!("<{element}")) {
        return Ok(body);
    }
    let code = values(&body, "Code").into_iter().next().unwrap_or_default();
    match (status, code.as_str()) {
        (412, _) | (_, "PreconditionFailed" | "NoSuchKey" | "InvalidRange") => {
            Err(CopyError::Changed)
        }
        _ => Err(CopyError::Failed(format!(
            "HTTP {status} {}",
            code.chars().take(64).collect::<String>()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_objects_are_one_copy_and_large_ones_parts_that_cover_them_exactly() {
        let gib = 1u64 << 30;
        assert_eq!(parts(0, gib), Ok(None));
        assert_eq!(parts(gib, gib), Ok(None));
        let three = parts(2 * gib + 1, gib).unwrap().unwrap();
        assert_eq!(
            three,
            vec![(0, gib - 1), (gib, 2 * gib - 1), (2 * gib, 2 * gib)]
        );
        // Never more than 10,000 parts: they grow instead.
        let huge = 20_000 * MIN_PART_BYTES;
        let ranges = parts(huge, MIN_PART_BYTES).unwrap().unwrap();
        assert_eq!(ranges.len(), 10_000);
        assert_eq!(ranges.last().unwrap().1, huge - 1);
        assert!(
            ranges
                .windows(2)
                .all(|w| w[0].1 + 1 == w[1].0 && w[0].1 - w[0].0 == 2 * MIN_PART_BYTES - 1)
        );
        assert!(parts(10_001 * MAX_PART_BYTES, gib).is_err());
    }
}
