//! The input bucket as mediagate and its clients address it: the provider, the bucket's
//! endpoint and addressing style, what credentials cover, and the bucket-name rules.

pub mod copy;
pub mod reader;
pub mod setup;
pub mod signed;

use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

/// OSS PostObject accepts objects up to 5 GB.
pub const MAX_POST_OBJECT_BYTES: u64 = 5 * 1024 * 1024 * 1024;

/// Bucket names as OSS and S3 accept them: 3-63 of `[a-z0-9-]`, starting and ending with a
/// letter or digit.
pub fn validate_bucket_name(bucket: &str) -> Result<(), String> {
    let b = bucket.as_bytes();
    let ok = (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-';
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{bucket:?} must be 3-63 characters of a-z, 0-9 and -, not starting or ending with -"
        ))
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Alibaba Cloud OSS, STS (RPC signature v1) and MPS.
    Aliyun,
    /// Any S3-compatible store with an AWS-style STS (AWS, Ceph RGW, MinIO), SigV4-signed.
    S3,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Aliyun => "aliyun",
            Provider::S3 => "s3",
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CredentialScope {
    /// Credentials cover the user's whole prefix, so they are cached and shared.
    User,
    /// Credentials cover exactly one object key; never cached.
    Upload,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PostSigning {
    Session,
    Service,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `MEDIAGATE__STORAGE__PROVIDER`, default `aliyun`.
    pub provider: Provider,
    /// `MEDIAGATE__STORAGE__BUCKET`: the input bucket.
    pub bucket: String,
    /// `MEDIAGATE__STORAGE__REGION`, e.g. `cn-hangzhou`.
    pub region: String,
    /// `MEDIAGATE__STORAGE__ENDPOINT`: what clients upload to.
    pub endpoint: String,
    /// `MEDIAGATE__STORAGE__PREFIX`, default `uploads/`: each user uploads under
    /// `{prefix}{user}/`.
    pub prefix: String,
    /// `MEDIAGATE__STORAGE__CREDENTIAL_SCOPE`: `user` (default) or `upload`.
    pub credential_scope: CredentialScope,
    /// `MEDIAGATE__STORAGE__MAX_UPLOAD_BYTES`, default 5 GiB (the PostObject maximum): the
    /// upper bound of a form upload's `content-length-range`.
    pub max_upload_bytes: u64,
    /// `MEDIAGATE__STORAGE__POST_SIGNING`: which keys sign form uploads. `session` (default):
    /// the vended temporary credentials. `service`: the `sts` keys themselves, so the form
    /// shows their AccessKeyId (never the secret); for stores that do not honour forms signed
    /// with session credentials (Ceph RGW 16 neither checks their size range nor announces
    /// their objects).
    pub post_signing: PostSigning,
    /// `MEDIAGATE__STORAGE__PATH_STYLE`, default false: S3 URLs as `{endpoint}/{bucket}/key`
    /// rather than `{bucket}.{endpoint host}` (RGW and MinIO without wildcard DNS).
    pub path_style: bool,
    /// `MEDIAGATE__STORAGE__PRESIGN_EXPIRES_SECONDS`, default 900: how long a URL signed by
    /// `POST /v1/uploads/{id}/sign` stays valid (never past the signing credentials).
    pub presign_expires_seconds: u64,
    /// `MEDIAGATE__STORAGE__ABORT_INCOMPLETE_MULTIPART_DAYS`, default 2: `mediagate bucket
    /// setup` has the bucket abort multipart uploads under the prefix left this long.
    pub abort_incomplete_multipart_days: u32,
    /// `MEDIAGATE__STORAGE__ACCESS_KEY_ID` / `..._SECRET`: the service keys mediagate reads
    /// the input bucket with (HEAD, ranged GET); default: the `sts` keys.
    pub access_key_id: Option<String>,
    pub access_key_secret: Option<secrecy::SecretString>,
    /// `MEDIAGATE__STORAGE__INTERNAL_ENDPOINT`: where mediagate itself reads the bucket when
    /// that differs from what clients upload to (OSS's `-internal` endpoint from inside the
    /// region, a private address); default `endpoint`.
    pub internal_endpoint: Option<String>,
}

impl StorageConfig {
    /// Where browsers POST form uploads: the bucket's URL, virtual-hosted
    /// (`{scheme}://{bucket}.{host}/`) or, where [`StorageConfig::uses_path_style`],
    /// `{endpoint}/{bucket}`. The configuration was validated, so this cannot fail.
    pub fn bucket_url(&self) -> String {
        let Ok(mut url) = url::Url::parse(&self.endpoint) else {
            return format!("{}/{}", self.endpoint.trim_end_matches('/'), self.bucket);
        };
        let host = format!("{}.{}", self.bucket, url.host_str().unwrap_or_default());
        if self.uses_path_style() || url.set_host(Some(&host)).is_err() {
            url.set_path(&format!("/{}", self.bucket));
        } else {
            url.set_path("/");
        }
        url.to_string()
    }

    /// Whether clients must address the bucket in the path (`{endpoint}/{bucket}/key`): as
    /// configured, and always where a bucket host name cannot work (as the AWS SDKs decide):
    /// an endpoint that is an IP address or `localhost` (MinIO and RGW run so), or a bucket
    /// with dots over https (no certificate covers `a.b.host`). S3 only: OSS always
    /// addresses buckets by host name.
    pub fn uses_path_style(&self) -> bool {
        if self.provider != Provider::S3 {
            return false;
        }
        let Ok(url) = Url::parse(&self.endpoint) else {
            return self.path_style;
        };
        self.path_style
            || is_bare_host(&self.endpoint)
            || (self.bucket.contains('.') && url.scheme() == "https")
    }

    /// Where mediagate itself reads the bucket: `internal_endpoint`, else `endpoint`.
    pub fn read_endpoint(&self) -> &str {
        self.internal_endpoint.as_deref().unwrap_or(&self.endpoint)
    }
}

/// Whether `endpoint` is an IP address or `localhost`, where no bucket host name can resolve
/// (a local store, or a stand-in for one).
pub fn is_bare_host(endpoint: &str) -> bool {
    Url::parse(endpoint)
        .is_ok_and(|url| !matches!(url.host(), Some(url::Host::Domain(d)) if d != "localhost"))
}

impl StorageConfig {}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            provider: Provider::Aliyun,
            bucket: String::new(),
            region: String::new(),
            endpoint: String::new(),
            prefix: "uploads/".into(),
            credential_scope: CredentialScope::User,
            max_upload_bytes: MAX_POST_OBJECT_BYTES,
            path_style: false,
            presign_expires_seconds: 900,
            abort_incomplete_multipart_days: 2,
            post_signing: PostSigning::Session,
            access_key_id: None,
            access_key_secret: None,
            internal_endpoint: None,
        }
    }
}

/// Where and with which keys the input bucket is read.
#[derive(Clone)]
pub struct ReaderSettings {
    pub provider: Provider,
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub prefix: String,
    pub path_style: bool,
    pub access_key_id: String,
    pub access_key_secret: SecretString,
}

impl ReaderSettings {
    /// The reader of `storage`, with its service keys or else `fallback` (the STS keys).
    pub fn new(storage: &StorageConfig, fallback: (&str, &SecretString)) -> Self {
        let endpoint = storage.read_endpoint();
        ReaderSettings {
            provider: storage.provider,
            endpoint: endpoint.to_owned(),
            region: storage.region.clone(),
            bucket: storage.bucket.clone(),
            prefix: storage.prefix.clone(),
            path_style: storage.uses_path_style() || is_bare_host(endpoint),
            access_key_id: storage
                .access_key_id
                .clone()
                .unwrap_or_else(|| fallback.0.to_owned()),
            access_key_secret: storage
                .access_key_secret
                .clone()
                .unwrap_or_else(|| fallback.1.clone()),
        }
    }
}

/// The limit on `file_name` in requests.
pub const MAX_FILE_NAME_BYTES: usize = 1024;
/// The limit on `file_name` in characters: 200 characters of any script stay well within the
/// byte limits of the name and of the whole key, so the API can state it exactly.
pub const MAX_FILE_NAME_CHARS: usize = 200;

/// The longest key any store accepts (S3: 1,024 bytes; OSS: 1,023).
pub const MAX_KEY_BYTES: usize = 1024;

/// The one rule for object keys that reach mediagate from outside (notifications, listings)
/// and for keys it reads or writes into a URL: 1-1,024 bytes, no control characters, no
/// backslash, and no empty, `.` or `..` segment (a folder marker's final `/` aside). A URL
/// built from `uploads/jo/../kim/a.mp4` resolves to kim's object, and HTTP clients that
/// normalise paths read another key than the one that was checked; a backslash is a path
/// separator to some servers. Returns what is wrong, fit for a log or a client.
pub fn check_object_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err("an object key is 1-1024 bytes");
    }
    if key.chars().any(char::is_control) {
        return Err("an object key must not contain control characters");
    }
    if key.contains('\\') {
        return Err("an object key must not contain backslashes");
    }
    let path = key.strip_suffix('/').unwrap_or(key);
    if path
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err("an object key must not have empty, '.' or '..' segments");
    }
    Ok(())
}

/// S3 and OSS number parts from 1 to 10,000.
pub const MAX_PART_NUMBER: u32 = 10_000;
pub const MAX_MULTIPART_ID_BYTES: usize = 1024;

/// Multipart upload ids as stores mint them (OSS: hex; S3: base64 and URL-safe base64; RGW:
/// `2~` and letters). OSS signs sub-resource values raw, so an alphabet without `&` is what
/// keeps an id from adding sub-resources of its own (`...&x-oss-process=image/info`).
pub fn is_multipart_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_MULTIPART_ID_BYTES
        && id.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-' | b'+' | b'/' | b'=')
        })
}

/// Characters with a meaning in policies and key patterns: `*`, `?`, `"`, `\\`.
pub(crate) fn is_policy_special(c: char) -> bool {
    matches!(c, '*' | '?' | '"' | '\\')
}

/// A file name as a client may send it: the last segment of the object key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName(String);

impl FileName {
    /// Fails with a message fit for the client when the name is empty, `.` or `..`, longer
    /// than 200 characters (or 1024 bytes), or holds `/`, `\`, `*`, `?`, `"`, `${` or control
    /// characters.
    pub fn parse(name: &str) -> Result<Self, String> {
        if name.is_empty() {
            return Err("file_name must not be empty".into());
        }
        if name.len() > MAX_FILE_NAME_BYTES || name.chars().count() > MAX_FILE_NAME_CHARS {
            return Err(format!(
                "file_name must be at most {MAX_FILE_NAME_CHARS} characters"
            ));
        }
        if name == "." || name == ".." {
            return Err("file_name must not be '.' or '..'".into());
        }
        // Object-store clients trim keys (OpenDAL does), so such a key would name another.
        if name.trim() != name {
            return Err("file_name must not start or end with whitespace".into());
        }
        if name.contains('/') {
            return Err("file_name must not contain '/'".into());
        }
        if name.chars().any(char::is_control) {
            return Err("file_name must not contain control characters".into());
        }
        if name.chars().any(is_policy_special) {
            return Err("file_name must not contain \\ * ? or \"".into());
        }
        // `${...}` is policy-variable syntax; keep it out of single-object policies.
        if name.contains("${") {
            return Err("file_name must not contain \"${\"".into());
        }
        Ok(FileName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_name_rules() {
        assert!(FileName::parse("trip.MP4").is_ok());
        assert!(FileName::parse("my holiday (1).mov").is_ok());
        assert!(FileName::parse("視頻.mp4").is_ok());
        for padded in [" trip.mp4", "trip ", "trip\u{3000}"] {
            assert!(FileName::parse(padded).is_err(), "{padded:?}");
        }
        assert!(FileName::parse("noext").is_ok());
        for bad in [
            "", ".", "..", "../x.mp4", "a/b.mp4", "/abs", "a\nb", "a\0b", "*.mp4", "a?.mp4",
            "a\"b", "a\\b",
        ] {
            assert!(FileName::parse(bad).is_err(), "{bad:?}");
        }
        // Counted in characters, whatever the script: 200 of them at most.
        assert!(FileName::parse(&"a".repeat(200)).is_ok());
        assert!(FileName::parse(&"視".repeat(200)).is_ok());
        assert!(FileName::parse(&"a".repeat(201)).is_err());
        assert!(FileName::parse(&"視".repeat(201)).is_err());
    }

    #[test]
    fn one_key_rule_for_every_key_from_outside() {
        for good in [
            "uploads/alice/01/trip.mp4",
            "uploads/alice/",
            "uploads/a b/視頻 (1).mp4",
            "uploads/alice/..mp4",
            "uploads/alice/.hidden",
        ] {
            assert_eq!(check_object_key(good), Ok(()), "{good:?}");
        }
        for bad in [
            "",
            "uploads/jo/../kim/v1/private.mp4",
            "uploads/jo/./a.mp4",
            "uploads//a.mp4",
            "/uploads/a.mp4",
            "uploads/jo/..",
            "uploads/jo/../",
            "uploads\\jo\\a.mp4",
            "uploads/jo/a\nb.mp4",
            "uploads/jo/a\u{7f}.mp4",
            &"a".repeat(1025),
        ] {
            assert!(check_object_key(bad).is_err(), "{bad:?}");
        }
    }
}
