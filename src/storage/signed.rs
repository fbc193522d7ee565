//! Requests to the input bucket that OpenDAL does not make (the bucket's configuration,
//! conditional server-side copies), signed with the service keys: SigV4 by AWS's own signer
//! for S3, OSS V1 header signing ([`crate::signing`]) for OSS. They travel over mediagate's
//! outbound client, so they never follow a redirect.

use std::time::{Duration, SystemTime};

use secrecy::ExposeSecret;

use super::{Provider, ReaderSettings, StorageConfig};

/// One request to the bucket.
pub struct Call<'a> {
    pub method: &'a str,
    /// The object key, raw; empty for the bucket itself.
    pub key: &'a str,
    /// Sub-resources (`cors`, `uploads`, `partNumber`, `uploadId`), sorted by name, `None`
    /// for a bare name. OSS signs them raw, so only values the store minted or mediagate
    /// wrote go here.
    pub query: Vec<(&'static str, Option<String>)>,
    /// Headers to send and sign, names in lower case (`x-oss-*` and `x-amz-*` ones included).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Instead of the client's own timeout (a server-side copy of a large object takes long).
    pub timeout: Option<Duration>,
}

impl<'a> Call<'a> {
    /// A request without sub-resources, headers or body.
    pub fn new(method: &'a str, key: &'a str) -> Self {
        Call {
            method,
            key,
            query: Vec::new(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
        }
    }
}

/// The input bucket, addressed as the reader addresses it.
pub struct BucketClient {
    http: reqwest::Client,
    settings: ReaderSettings,
    /// Ends with `/`.
    bucket_url: String,
}

impl BucketClient {
    pub fn new(settings: ReaderSettings, http: reqwest::Client) -> Self {
        // As the reader does: an OSS endpoint that cannot carry the bucket in its host name is
        // the bucket's own address; S3 puts the bucket in the path where the reader does.
        let bucket_url = if settings.provider == Provider::Aliyun && settings.path_style {
            settings.endpoint.clone()
        } else {
            StorageConfig {
                provider: settings.provider,
                bucket: settings.bucket.clone(),
                endpoint: settings.endpoint.clone(),
                path_style: settings.path_style,
                ..StorageConfig::default()
            }
            .bucket_url()
        };
        BucketClient {
            http,
            bucket_url: bucket_url.trim_end_matches('/').to_owned() + "/",
            settings,
        }
    }

    pub fn provider(&self) -> Provider {
        self.settings.provider
    }

    pub fn bucket(&self) -> &str {
        &self.settings.bucket
    }

    /// Signs and sends `call`; fails when it cannot be signed or the store cannot be reached
    /// (the answer, whatever its status, is the caller's to read).
    pub async fn send(&self, call: Call<'_>) -> anyhow::Result<reqwest::Response> {
        let query: Vec<String> = call
            .query
            .iter()
            .map(|(name, value)| match value {
                Some(v) => format!("{name}={}", crate::signing::percent_encode(v)),
                None => (*name).to_owned(),
            })
            .collect();
        let mut url = format!("{}{}", self.bucket_url, encode_key(call.key));
        if !query.is_empty() {
            url = format!("{url}?{}", query.join("&"));
        }
        let mut headers = call.headers;
        let s = &self.settings;
        let secret = s.access_key_secret.expose_secret();
        match s.provider {
            Provider::S3 => {
                use aws_sigv4::http_request::{
                    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
                    SigningSettings, UriPathNormalizationMode, sign,
                };
                let identity = aws_credential_types::Credentials::new(
                    &s.access_key_id,
                    secret,
                    None,
                    None,
                    "mediagate",
                )
                .into();
                // S3 wants the payload's hash in `x-amz-content-sha256`, and the key's path
                // encoded once, never normalised.
                let mut settings = SigningSettings::default();
                settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
                settings.percent_encoding_mode = PercentEncodingMode::Single;
                settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
                let params = aws_sigv4::sign::v4::SigningParams::builder()
                    .identity(&identity)
                    .region(&s.region)
                    .name("s3")
                    .time(SystemTime::now())
                    .settings(settings)
                    .build()?
                    .into();
                let signable = SignableRequest::new(
                    call.method,
                    url.as_str(),
                    headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                    SignableBody::Bytes(&call.body),
                )?;
                let (instructions, _) = sign(signable, &params)?.into_parts();
                for (k, v) in instructions.headers() {
                    headers.push((k.to_owned(), v.to_owned()));
                }
            }
            Provider::Aliyun => {
                let date = chrono::Utc::now()
                    .format("%a, %d %b %Y %H:%M:%S GMT")
                    .to_string();
                let get = |name: &str| {
                    headers
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.as_str())
                        .unwrap_or_default()
                        .to_owned()
                };
                let oss_headers: Vec<(&str, &str)> = headers
                    .iter()
                    .filter(|(k, _)| k.starts_with("x-oss-"))
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let raw: Vec<String> = call
                    .query
                    .iter()
                    .map(|(name, value)| match value {
                        Some(v) => format!("{name}={v}"),
                        None => (*name).to_owned(),
                    })
                    .collect();
                let mut resource = format!("/{}/{}", s.bucket, call.key);
                if !raw.is_empty() {
                    resource = format!("{resource}?{}", raw.join("&"));
                }
                let signature = crate::signing::oss_v1_header_signature(
                    secret,
                    &crate::signing::OssSigned {
                        verb: call.method,
                        content_md5: &get("content-md5"),
                        content_type: &get("content-type"),
                        date: &date,
                        oss_headers: &oss_headers,
                        resource: &resource,
                    },
                )?;
                headers.push(("date".into(), date));
                headers.push((
                    "authorization".into(),
                    format!("OSS {}:{signature}", s.access_key_id),
                ));
            }
        }
        // An empty body goes without a length otherwise, which RGW refuses on a POST (411).
        if call.body.is_empty() && matches!(call.method, "POST" | "PUT") {
            headers.push(("content-length".into(), "0".into()));
        }
        let mut request = self
            .http
            .request(call.method.parse()?, &url)
            .body(call.body);
        for (k, v) in &headers {
            request = request.header(k, v);
        }
        if let Some(timeout) = call.timeout {
            request = request.timeout(timeout);
        }
        request
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}: {}", call.method, crate::upstream::without_url(&e)))
    }
}

/// `key` for a URL path (and a copy source): every byte but the unreserved ones encoded, `/`
/// kept.
pub fn encode_key(key: &str) -> String {
    key.split('/')
        .map(crate::signing::percent_encode)
        .collect::<Vec<_>>()
        .join("/")
}

/// Every `<name>...</name>` element of `xml`, whole.
pub fn elements<'a>(xml: &'a str, name: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let Some(len) = rest[start..].find(&close) else {
            break;
        };
        let end = start + len + close.len();
        found.push(&rest[start..end]);
        rest = &rest[end..];
    }
    found
}

/// The text of every `<name>` element directly inside `element`.
pub fn values(element: &str, name: &str) -> Vec<String> {
    elements(element, name)
        .into_iter()
        .map(|e| unescape(&e[name.len() + 2..e.len() - name.len() - 3]))
        .collect()
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}
