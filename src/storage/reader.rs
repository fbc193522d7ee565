//! Reading the input bucket with the service keys, to check what a notification claims.
//! Apache OpenDAL signs and parses the requests for both providers (OSS's own API, and S3);
//! they travel over mediagate's outbound client, so they never follow a redirect and are
//! bounded in time. Only keys under the upload prefix of the input bucket are ever read.

use std::time::Duration;

use async_trait::async_trait;
use opendal::raw::{HttpBody, HttpClient, HttpFetch};
use opendal::{Buffer, ErrorKind, Operator};
use secrecy::ExposeSecret;

use super::Provider;
pub use super::ReaderSettings;
use super::copy::CopyError;
use super::signed::BucketClient;

/// What the store says about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    pub size: u64,
    /// Unquoted and upper-cased, as events are keyed.
    pub etag: String,
    /// The ETag exactly as the store sent it (quoted, in its own case: S3 lower-case hex, OSS
    /// upper-case), which is what a conditional request must name.
    pub raw_etag: String,
    pub content_type: Option<String>,
}

/// An object a listing found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub head: ObjectHead,
    /// Unix milliseconds, when the store says.
    pub modified_at: Option<i64>,
}

/// The answer to a HEAD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(ObjectHead),
    Missing,
    /// An OSS symbolic link: never read through, since its target may be any object.
    Symlink,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Outside the upload prefix of the input bucket, a key the client library would send as
    /// another key (leading or trailing spaces, `//`), or one the key rule refuses: never read.
    #[error("{0:?} is not a key under the upload prefix that can be read as it is; not read")]
    NotReadable(String),
    /// The store could not answer (down, slow, refused the keys): try again later.
    #[error("the object store did not answer: {0}")]
    Unavailable(String),
    /// The object is no longer the version a conditional read named (PUT again since).
    #[error("the object changed since it was looked up")]
    Changed,
}

/// The input bucket, as verification and reconciliation read it.
#[async_trait]
pub trait ObjectReader: Send + Sync {
    async fn head(&self, key: &str) -> Result<Lookup, ReadError>;
    /// At most `len` bytes from the start of the object (fewer when it is shorter), only
    /// while it is the version whose ETag is `raw_etag` (as the store sent it): `Changed`
    /// otherwise, so that bytes are never judged under another version's size and ETag.
    async fn first_bytes(
        &self,
        key: &str,
        len: usize,
        raw_etag: &str,
    ) -> Result<Vec<u8>, ReadError>;
    /// Whether the store answers with these keys (for readiness).
    async fn probe(&self) -> Result<(), ReadError>;
    /// Looks up a processor's output: any key of `bucket` (the caller holds it to the
    /// workflow's output bucket and prefix), with the same keys and client.
    async fn head_output(&self, bucket: &str, key: &str) -> Result<Lookup, ReadError>;
    /// Up to `limit` objects under the upload prefix, in key order, after `start_after`.
    async fn list(&self, start_after: &str, limit: usize) -> Result<Vec<Listed>, ReadError>;
    /// Copies the version of `source` (under the upload prefix) that `head` describes to
    /// `target` (under the copies prefix), in the store, in parts when it is larger than
    /// `part_bytes` (see [`super::copy`]). `Changed` when the store says `source` is not that
    /// version any more. The copy is then read like any object (`head`, `first_bytes`).
    async fn copy_version(
        &self,
        source: &str,
        head: &ObjectHead,
        target: &str,
        part_bytes: u64,
    ) -> Result<(), ReadError>;
    /// Deletes `target`, a copy under the copies prefix.
    async fn delete_copy(&self, target: &str) -> Result<(), ReadError>;
}

/// The store as OpenDAL reads it, and as [`super::copy`] copies within it.
pub struct StoreReader {
    op: Operator,
    prefix: String,
    /// Where copies are kept (`verification.protected_prefix`), when they are.
    copies: Option<String>,
    bucket: BucketClient,
    settings: ReaderSettings,
    client: reqwest::Client,
    /// Readers of output buckets, by name; their names come from workflow definitions, so
    /// there are few.
    outputs: std::sync::Mutex<std::collections::HashMap<String, Operator>>,
}

impl StoreReader {
    pub fn new(settings: &ReaderSettings, client: reqwest::Client) -> anyhow::Result<Self> {
        Ok(StoreReader {
            op: operator(settings, &settings.bucket, client.clone())?,
            prefix: settings.prefix.clone(),
            copies: None,
            bucket: BucketClient::new(settings.clone(), client.clone()),
            settings: settings.clone(),
            client,
            outputs: Default::default(),
        })
    }

    /// Makes copies under `prefix` (outside the upload prefix), and reads them as it reads
    /// uploads.
    pub fn keeping_copies_under(mut self, prefix: &str) -> Self {
        self.copies = Some(prefix.to_owned());
        self
    }

    fn output_operator(&self, bucket: &str) -> Result<Operator, ReadError> {
        let mut outputs = self.outputs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(op) = outputs.get(bucket) {
            return Ok(op.clone());
        }
        let op = operator(&self.settings, bucket, self.client.clone())
            .map_err(|e| ReadError::Unavailable(format!("{e:#}")))?;
        if outputs.len() < 64 {
            outputs.insert(bucket.to_owned(), op.clone());
        }
        Ok(op)
    }

    /// `key` when it is under the upload prefix or the copies prefix, and reads as itself.
    fn checked<'a>(&self, key: &'a str) -> Result<&'a str, ReadError> {
        self.checked_under(key, below(key, &self.prefix) || self.is_copy(key))
    }

    fn is_copy(&self, key: &str) -> bool {
        self.copies
            .as_deref()
            .is_some_and(|prefix| below(key, prefix))
    }

    /// `key` when `inside` and it reads as itself.
    fn checked_under<'a>(&self, key: &'a str, inside: bool) -> Result<&'a str, ReadError> {
        // OpenDAL trims and collapses paths; a key it would change names another object.
        if !inside
            || key.ends_with('/')
            || super::check_object_key(key).is_err()
            || opendal::raw::normalize_path(key) != key
        {
            return Err(ReadError::NotReadable(key.to_owned()));
        }
        Ok(key)
    }
}

/// Whether `key` names an object below `prefix`.
fn below(key: &str, prefix: &str) -> bool {
    key.starts_with(prefix) && key.len() > prefix.len()
}

/// An OpenDAL operator for `bucket`, with the reader's keys, address and client.
fn operator(
    settings: &ReaderSettings,
    bucket: &str,
    client: reqwest::Client,
) -> anyhow::Result<Operator> {
    let (id, secret) = (
        settings.access_key_id.as_str(),
        settings.access_key_secret.expose_secret(),
    );
    let op = match settings.provider {
        // OSS signs `/{bucket}/{key}` whatever the address, and has no path-style URLs: an
        // endpoint that cannot carry the bucket in its host name is taken as the bucket's
        // own address, as a custom domain is.
        Provider::Aliyun => Operator::new(
            opendal::services::Oss::default()
                .endpoint(&settings.endpoint)
                .bucket(bucket)
                .addressing_style(if settings.path_style {
                    "cname"
                } else {
                    "virtual"
                })
                .access_key_id(id)
                .access_key_secret(secret),
        )?
        .finish(),
        Provider::S3 => {
            let mut s3 = opendal::services::S3::default()
                .endpoint(&settings.endpoint)
                .region(&settings.region)
                .bucket(bucket)
                .access_key_id(id)
                .secret_access_key(secret)
                .disable_config_load()
                .disable_ec2_metadata();
            if !settings.path_style {
                s3 = s3.enable_virtual_host_style();
            }
            Operator::new(s3)?.finish()
        }
    };
    let op = op
        .layer(opendal::layers::HttpClientLayer::new(HttpClient::with(
            NoSymlinks(client),
        )))
        .layer(opendal::layers::TimeoutLayer::new().with_timeout(Duration::from_secs(30)));
    Ok(op)
}

#[async_trait]
impl ObjectReader for StoreReader {
    async fn head_output(&self, bucket: &str, key: &str) -> Result<Lookup, ReadError> {
        if key.ends_with('/')
            || super::check_object_key(key).is_err()
            || opendal::raw::normalize_path(key) != key
        {
            return Err(ReadError::NotReadable(key.to_owned()));
        }
        match self.output_operator(bucket)?.stat(key).await {
            Ok(meta) => Ok(Lookup::Found(head_of(&meta))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Lookup::Missing),
            Err(e) if is_symlink(&e) => Ok(Lookup::Symlink),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn head(&self, key: &str) -> Result<Lookup, ReadError> {
        match self.op.stat(self.checked(key)?).await {
            Ok(meta) => Ok(Lookup::Found(head_of(&meta))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Lookup::Missing),
            Err(e) if is_symlink(&e) => Ok(Lookup::Symlink),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn first_bytes(
        &self,
        key: &str,
        len: usize,
        raw_etag: &str,
    ) -> Result<Vec<u8>, ReadError> {
        let key = self.checked(key)?;
        // Without an ETag the read could be any version: no verdict from it.
        if raw_etag.is_empty() {
            return Err(ReadError::Unavailable("the store gave no ETag".into()));
        }
        let read = self
            .op
            .read_with(key)
            .range(0..len as u64)
            .if_match(raw_etag)
            .await;
        match read {
            Ok(buffer) => {
                let mut bytes = buffer.to_vec();
                bytes.truncate(len);
                Ok(bytes)
            }
            // An object that exists but is empty has no range to read.
            Err(e) if e.kind() == ErrorKind::RangeNotSatisfied => Ok(Vec::new()),
            Err(e) if e.kind() == ErrorKind::ConditionNotMatch => Err(ReadError::Changed),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn list(&self, start_after: &str, limit: usize) -> Result<Vec<Listed>, ReadError> {
        use futures_util::TryStreamExt;
        let mut lister = self
            .op
            .lister_with(&self.prefix)
            .recursive(true)
            .limit(limit);
        if !start_after.is_empty() {
            lister = lister.start_after(start_after);
        }
        let mut entries = lister.await.map_err(unavailable)?;
        let mut listed = Vec::new();
        while listed.len() < limit {
            let Some(entry) = entries.try_next().await.map_err(unavailable)? else {
                break;
            };
            let meta = entry.metadata();
            if entry.path().ends_with('/') || entry.path() <= start_after {
                continue;
            }
            listed.push(Listed {
                key: entry.path().to_owned(),
                head: head_of(meta),
                modified_at: meta.last_modified().and_then(|t| {
                    let since =
                        std::time::SystemTime::from(t).duration_since(std::time::UNIX_EPOCH);
                    since.ok().map(|d| d.as_millis() as i64)
                }),
            });
        }
        Ok(listed)
    }

    async fn copy_version(
        &self,
        source: &str,
        head: &ObjectHead,
        target: &str,
        part_bytes: u64,
    ) -> Result<(), ReadError> {
        let source = self.checked_under(source, below(source, &self.prefix))?;
        let target = self.checked_under(target, self.is_copy(target))?;
        let head = super::copy::Source {
            key: source,
            size: head.size,
            raw_etag: &head.raw_etag,
            content_type: head.content_type.as_deref(),
        };
        super::copy::copy_version(&self.bucket, &head, target, part_bytes)
            .await
            .map_err(|e| match e {
                CopyError::Changed => ReadError::Changed,
                CopyError::Failed(why) => ReadError::Unavailable(why),
            })
    }

    async fn delete_copy(&self, target: &str) -> Result<(), ReadError> {
        let target = self.checked_under(target, self.is_copy(target))?;
        super::copy::delete(&self.bucket, target)
            .await
            .map_err(ReadError::Unavailable)
    }

    async fn probe(&self) -> Result<(), ReadError> {
        let marker = format!("{}.mediagate-readiness", self.prefix);
        match self.op.stat(&marker).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }
}

fn head_of(meta: &opendal::Metadata) -> ObjectHead {
    let raw_etag = meta.etag().unwrap_or_default();
    ObjectHead {
        size: meta.content_length(),
        etag: raw_etag.trim_matches('"').to_ascii_uppercase(),
        raw_etag: raw_etag.to_owned(),
        content_type: meta.content_type().map(str::to_owned),
    }
}

const SYMLINK: &str = "mediagate: the object is a symbolic link";

fn is_symlink(e: &opendal::Error) -> bool {
    e.to_string().contains(SYMLINK)
}

fn unavailable(e: opendal::Error) -> ReadError {
    ReadError::Unavailable(format!("{}", e.kind()))
}

/// The outbound client, refusing any answer about an OSS symbolic link (its size, ETag and
/// bytes are another object's, one the uploader may not own) and any successful answer to a
/// ranged read that is longer than the range (a store that ignores `Range` would stream the whole object).
struct NoSymlinks(reqwest::Client);

impl HttpFetch for NoSymlinks {
    async fn fetch(&self, req: http::Request<Buffer>) -> opendal::Result<http::Response<HttpBody>> {
        let asked = req
            .headers()
            .get(http::header::RANGE)
            .and_then(|r| range_len(r.to_str().ok()?));
        let response = self.0.fetch(req).await?;
        let headers = response.headers();
        let symlink = headers
            .get("x-oss-object-type")
            .is_some_and(|t| t.as_bytes().eq_ignore_ascii_case(b"symlink"));
        if symlink {
            return Err(opendal::Error::new(ErrorKind::PermissionDenied, SYMLINK));
        }
        let length = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|l| l.to_str().ok()?.parse::<u64>().ok());
        // Only bytes of the object count: an error document (a 412 for a changed object) may
        // be longer than a small object's range.
        if let Some(asked) = asked
            && response.status().is_success()
            && length.is_none_or(|l| l > asked)
        {
            return Err(opendal::Error::new(
                ErrorKind::Unexpected,
                "the store answered a ranged read with more than the range",
            ));
        }
        Ok(response)
    }
}

/// The length of a `bytes=a-b` range.
fn range_len(range: &str) -> Option<u64> {
    let (start, end) = range.strip_prefix("bytes=")?.split_once('-')?;
    let (start, end) = (start.parse::<u64>().ok()?, end.parse::<u64>().ok()?);
    end.checked_sub(start).map(|n| n + 1)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ranges_are_measured_exactly() {
        assert_eq!(super::range_len("bytes=0-65535"), Some(65536));
        assert_eq!(super::range_len("bytes=10-10"), Some(1));
        assert_eq!(super::range_len("bytes=0-"), None);
        assert_eq!(super::range_len("items=0-1"), None);
    }
}
