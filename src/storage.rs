//! The input bucket as mediagate and its clients address it: the provider, the bucket's
//! endpoint and addressing style, what credentials cover, and the bucket-name rules.

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
        let bare_host = !matches!(url.host(), Some(url::Host::Domain(d)) if d != "localhost");
        self.path_style || bare_host || (self.bucket.contains('.') && url.scheme() == "https")
    }
}

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
            post_signing: PostSigning::Session,
        }
    }
}
