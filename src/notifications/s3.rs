//! S3-style event records, as AWS S3, MinIO and Ceph RGW send them (docs/protocols.md §6),
//! alone or inside an SNS `Notification`.

use crate::kinds::EventSource;
use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;
use tracing::warn;

use super::{NotificationError, Parsed};
use crate::processing::ObjectEvent;

/// The object-created events of a `Records` document (or of the SNS `Notification` carrying
/// one); other events are counted as ignored.
pub fn s3_events(body: &[u8]) -> Result<Parsed, NotificationError> {
    let malformed = |what: &str, e: serde_json::Error| {
        NotificationError::Malformed(format!("malformed {what}: {e}"))
    };
    let mut doc: Value = serde_json::from_slice(body).map_err(|e| malformed("JSON", e))?;
    match doc.get("Type").and_then(Value::as_str) {
        Some("Notification") => {
            let message = doc
                .get("Message")
                .and_then(Value::as_str)
                .unwrap_or_default();
            doc = serde_json::from_str(message).map_err(|e| malformed("SNS Message", e))?;
        }
        Some("SubscriptionConfirmation") => {
            // Confirming would mean fetching a URL the sender chose; an operator confirms by
            // hand.
            warn!("SNS subscription confirmation received; confirm it from the SNS console");
            return Ok(Parsed::default());
        }
        _ => {}
    }
    let records: Vec<S3Record> = match doc.get("Records") {
        Some(r) => serde_json::from_value(r.clone()).map_err(|e| malformed("Records", e))?,
        // MinIO's test event and other record-less messages.
        None => Vec::new(),
    };
    let mut parsed = Parsed::default();
    for r in records {
        let created = r.event_name.starts_with("s3:ObjectCreated:")
            || r.event_name.starts_with("ObjectCreated:");
        if !created {
            parsed.ignored += 1;
            continue;
        }
        let key = decode_s3_key(
            &r.s3.object.key,
            r.event_source.as_deref().unwrap_or("aws:s3"),
        );
        let meta = object_metadata(&r.s3.object);
        let meta_get = |k: &str| meta.get(k).cloned();
        parsed.events.push(ObjectEvent {
            source: EventSource::S3Events,
            bucket: r.s3.bucket.name,
            key,
            etag: r.s3.object.etag.unwrap_or_default(),
            size: r.s3.object.size,
            content_type: r.s3.object.content_type,
            symlink: false,
            upload_hint: meta_get("upload_id"),
            media_overrides: super::overrides(meta_get),
        });
    }
    Ok(parsed)
}

/// User metadata by plain lower-case name with `_` for `-` (`upload_id`): MinIO sends a
/// `userMetadata` map, Ceph RGW a `metadata` list of `x-amz-meta-*` headers with `_` turned
/// into `-`.
fn object_metadata(object: &S3Object) -> HashMap<String, String> {
    let listed = object
        .metadata
        .iter()
        .flatten()
        .map(|m| (m.key.as_str(), m.val.as_str()));
    let mapped = object
        .user_metadata
        .iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.as_str()));
    listed
        .chain(mapped)
        .map(|(name, value)| {
            let name = name.to_ascii_lowercase();
            let name = name.strip_prefix("x-amz-meta-").unwrap_or(&name);
            (name.replace('-', "_"), value.to_owned())
        })
        .collect()
}

/// AWS form-encodes keys (`+` for space); MinIO URL-encodes them the same way; Ceph RGW sends
/// them as they are.
fn decode_s3_key(key: &str, event_source: &str) -> String {
    if event_source.starts_with("ceph") {
        key.to_owned()
    } else {
        url::form_urlencoded::parse(
            format!("k={}", key.replace('&', "%26").replace('=', "%3D")).as_bytes(),
        )
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
    }
}

#[derive(Deserialize)]
struct S3Record {
    #[serde(rename = "eventName")]
    event_name: String,
    #[serde(rename = "eventSource")]
    event_source: Option<String>,
    s3: S3Entity,
}

#[derive(Deserialize)]
struct NamedBucket {
    name: String,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: NamedBucket,
    object: S3Object,
}

#[derive(Deserialize)]
struct S3Object {
    key: String,
    size: Option<i64>,
    #[serde(rename = "eTag")]
    etag: Option<String>,
    #[serde(rename = "contentType")]
    content_type: Option<String>,
    #[serde(rename = "userMetadata")]
    user_metadata: Option<HashMap<String, String>>,
    metadata: Option<Vec<MetadataEntry>>,
}

#[derive(Deserialize)]
struct MetadataEntry {
    key: String,
    val: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_decoding_per_sender() {
        assert_eq!(
            decode_s3_key("dir%2Fmy+clip.mp4", "minio:s3"),
            "dir/my clip.mp4"
        );
        assert_eq!(decode_s3_key("my+clip%2B1.mp4", "aws:s3"), "my clip+1.mp4");
        assert_eq!(decode_s3_key("a&b=c.mp4", "aws:s3"), "a&b=c.mp4");
        assert_eq!(decode_s3_key("my+clip%.mp4", "ceph:s3"), "my+clip%.mp4");
    }
}
