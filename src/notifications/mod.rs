//! Upload notifications: the callback parameters clients attach to uploads, the verification
//! of what object stores send back (OSS callbacks, MNS-pushed OSS events, S3-style records)
//! and the parsing of their wire formats into [`ObjectEvent`]s.

pub mod keys;
pub mod mns;
pub mod oss;
pub mod public_key;
pub mod s3;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use secrecy::SecretString;
use serde::Deserialize;

use crate::media::MediaAttributesInput;
use crate::processing::ObjectEvent;
use crate::signing::constant_time_eq;
use keys::{KeyError, KeyStore};
pub use mns::MpsHint;

/// `[notifications]`: who may announce uploads, and how their signatures are checked.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsConfig {
    /// `MEDIAGATE__NOTIFICATIONS__OSS_KEY_URL_PREFIXES`: the only places OSS callback public
    /// keys are fetched from.
    pub oss_key_url_prefixes: Vec<String>,
    /// `MEDIAGATE__NOTIFICATIONS__OSS_PINNED_KEYS`: key URL -> PEM, used instead of fetching.
    pub oss_pinned_keys: std::collections::BTreeMap<String, String>,
    /// `MEDIAGATE__NOTIFICATIONS__MNS_CERT_URL_PREFIXES`: the only places MNS signing
    /// certificates are fetched from.
    pub mns_cert_url_prefixes: Vec<String>,
    /// `MEDIAGATE__NOTIFICATIONS__MNS_PINNED_CERTS`: cert URL -> PEM certificate.
    pub mns_pinned_certs: std::collections::BTreeMap<String, String>,
    /// `MEDIAGATE__NOTIFICATIONS__S3_TOKEN`: bearer token S3/RGW/MinIO webhooks must send.
    pub s3_token: Option<SecretString>,
    /// `MEDIAGATE__NOTIFICATIONS__MNS_ACCOUNT_ID`: the Alibaba Cloud account (digits) whose
    /// MNS topics may push OSS events. MNS signs every account's pushes with one certificate,
    /// so the signed `x-mns-topic-owner` of each push must equal this; unset (default), the
    /// `oss-events` route is not served (404).
    pub mns_account_id: Option<String>,
    /// `MEDIAGATE__NOTIFICATIONS__MNS_TOPIC_NAMES`: when not empty, only pushes of OSS events
    /// from these topics (the signed `x-mns-topic-name`) are accepted.
    pub mns_topic_names: Vec<String>,
    /// `MEDIAGATE__NOTIFICATIONS__MPS_TOPIC_NAMES`, default empty (any of the account's
    /// topics): when not empty, only pushes of MPS workflow messages from these topics (the
    /// signed `x-mns-topic-name`) are accepted. The account is `mns_account_id`, as for OSS
    /// events.
    pub mps_topic_names: Vec<String>,
    /// `MEDIAGATE__NOTIFICATIONS__MNS_TOKEN`: when set (at least 16 characters), MNS pushes
    /// must also carry `?token=` with it in the subscribed URL.
    pub mns_token: Option<SecretString>,
    /// `MEDIAGATE__NOTIFICATIONS__FETCH_TIMEOUT_MS`, default 3000: key and cert fetches.
    pub fetch_timeout_ms: u64,
}

impl NotificationsConfig {
    /// Where keys and certificates may be fetched from, by configuration key.
    pub fn fetch_prefixes(&self) -> [(&'static str, &Vec<String>); 2] {
        [
            (
                "notifications.oss_key_url_prefixes",
                &self.oss_key_url_prefixes,
            ),
            (
                "notifications.mns_cert_url_prefixes",
                &self.mns_cert_url_prefixes,
            ),
        ]
    }
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            oss_key_url_prefixes: vec![
                "http://gosspublic.alicdn.com/".into(),
                "https://gosspublic.alicdn.com/".into(),
            ],
            oss_pinned_keys: Default::default(),
            mns_cert_url_prefixes: vec![
                "https://mnstest.oss-cn-hangzhou.aliyuncs.com/".into(),
                "http://mnstest.oss-cn-hangzhou.aliyuncs.com/".into(),
            ],
            mns_pinned_certs: Default::default(),
            s3_token: None,
            mns_account_id: None,
            mns_topic_names: Vec::new(),
            mps_topic_names: Vec::new(),
            mns_token: None,
            fetch_timeout_ms: 3000,
        }
    }
}

/// Why a notification is refused.
#[derive(Debug, thiserror::Error)]
pub enum NotificationError {
    /// The signature, key URL, `Date`, digest or endpoint token does not verify.
    #[error("{0}")]
    Signature(String),
    /// Correctly signed, but not from this deployment's account or topics.
    #[error("{0}")]
    Foreign(String),
    /// The body is not in the sender's format.
    #[error("{0}")]
    Malformed(String),
    /// No key or certificate could be had for the signature.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// This kind of notification is not configured.
    #[error("not served")]
    NotServed,
}

/// The object-created events of one notification, and how many other events it carried.
#[derive(Debug, Default)]
pub struct Parsed {
    pub events: Vec<ObjectEvent>,
    pub ignored: usize,
}

/// A notification as it arrived: what its signature covers.
pub struct Inbound<'a> {
    /// The path as sent on the wire (still percent-encoded).
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// Every header whose value is text.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl Inbound<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A header the signature needs: without it, the signature cannot verify.
    fn signed_header(&self, name: &str) -> Result<&str, NotificationError> {
        self.header(name)
            .ok_or_else(|| NotificationError::Signature(format!("missing {name} header")))
    }
}

/// `token` from the query string of the endpoint URL a sender was configured with (for
/// senders that cannot set headers).
pub fn query_token(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

/// Verifies an OSS upload callback: the key named by `x-oss-pub-key-url` (allowed, pinned or
/// fetched once) signs the path, query and body.
pub async fn verify_oss_callback(
    keys: &KeyStore,
    req: &Inbound<'_>,
) -> Result<(), NotificationError> {
    let authorization = req.signed_header("authorization")?;
    let key = keys
        .oss_callback_key(req.signed_header("x-oss-pub-key-url")?)
        .await?;
    let signed = oss::callback_string_to_sign(req.path, req.query, req.body);
    oss::verify_callback(&key, authorization, &signed)
        .map_err(|e| NotificationError::Signature(e.to_string()))
}

/// Verifies an MNS push of OSS events (docs/protocols.md §5), from one of
/// `mns_topic_names` when those are set.
pub async fn verify_mns_push(
    keys: &KeyStore,
    settings: &NotificationsConfig,
    req: &Inbound<'_>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), NotificationError> {
    verify_push(keys, settings, &settings.mns_topic_names, req, now).await
}

/// Verifies an MNS push of MPS workflow messages (docs/protocols.md §9) exactly as
/// [`verify_mns_push`] does OSS events, from one of `mps_topic_names` when those are set.
pub async fn verify_mps_push(
    keys: &KeyStore,
    settings: &NotificationsConfig,
    req: &Inbound<'_>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), NotificationError> {
    verify_push(keys, settings, &settings.mps_topic_names, req, now).await
}

/// The run a verified push of an MPS workflow message points at ([`mns::mps_message`]), its
/// topic the signed `x-mns-topic-name` when the push has one, else the body's.
pub fn mps_hint(req: &Inbound<'_>) -> Result<MpsHint, NotificationError> {
    let mut hint = mns::mps_message(req.body)?;
    if let Some(topic) = req.header("x-mns-topic-name") {
        hint.topic = Some(topic.to_owned());
    }
    Ok(hint)
}

/// Verifies an MNS push from the configured account and, when `topics` is not empty, one of
/// those topics. Everything that costs no fetch and no RSA comes first: the `Date` window, the
/// body's digest, the endpoint token and the publishing account and topic; then the
/// certificate and the signature.
async fn verify_push(
    keys: &KeyStore,
    settings: &NotificationsConfig,
    topics: &[String],
    req: &Inbound<'_>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), NotificationError> {
    use secrecy::ExposeSecret;
    let account = settings
        .mns_account_id
        .as_deref()
        .ok_or(NotificationError::NotServed)?;
    let authorization = req.signed_header("authorization")?;
    let cert_url = req.signed_header("x-mns-signing-cert-url")?;
    let date = req.signed_header("date")?;
    mns::check_date(date, now).map_err(|e| NotificationError::Signature(e.to_string()))?;
    // The signature covers Content-MD5, not the body: only the digest ties the body to it.
    let content_md5 = req.signed_header("content-md5")?;
    if !md5_matches(content_md5, req.body) {
        return Err(NotificationError::Signature(
            "Content-MD5 does not match the body".into(),
        ));
    }
    if let Some(token) = &settings.mns_token {
        let presented = query_token(req.query).unwrap_or_default();
        if !constant_time_eq(presented.as_bytes(), token.expose_secret().as_bytes()) {
            return Err(NotificationError::Signature(
                "missing or wrong token in the endpoint URL".into(),
            ));
        }
    }
    // MNS signs every account's pushes with the same certificate: the signed topic owner is
    // what says the push came from the operator's own topic.
    if req.header("x-mns-topic-owner") != Some(account) {
        return Err(NotificationError::Foreign(
            "the push does not come from this deployment's MNS account".into(),
        ));
    }
    let topic = req.header("x-mns-topic-name").unwrap_or_default();
    if !topics.is_empty() && !topics.iter().any(|t| t == topic) {
        return Err(NotificationError::Foreign(
            "the push does not come from an allowed MNS topic".into(),
        ));
    }
    let key = keys.mns_cert_key(cert_url).await?;
    let path_and_query = match req.query {
        Some(q) => format!("{}?{q}", req.path),
        None => req.path.to_owned(),
    };
    let string_to_sign = mns::string_to_sign(
        "POST",
        content_md5,
        req.header("content-type").unwrap_or_default(),
        date,
        req.headers,
        &path_and_query,
    );
    mns::verify(&key, authorization, &string_to_sign)
        .map_err(|e| NotificationError::Signature(e.to_string()))
}

/// MNS sends the body's MD5 as hex (seen in captured pushes); base64 is accepted too.
fn md5_matches(header: &str, body: &[u8]) -> bool {
    use md5::{Digest, Md5};
    let digest = Md5::digest(body);
    let header = header.trim();
    header.eq_ignore_ascii_case(&hex::encode(digest)) || header == B64.encode(digest)
}

/// Media attribute overrides from custom variables (`title`, `description`, `tags` as a
/// comma-separated list, `cate_id`, `cover_url`, `user_data`).
pub(crate) fn overrides(get: impl Fn(&str) -> Option<String>) -> MediaAttributesInput {
    MediaAttributesInput {
        title: get("title"),
        description: get("description"),
        tags: get("tags").map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        }),
        cate_id: get("cate_id").and_then(|c| c.trim().parse().ok()),
        cover_url: get("cover_url"),
        user_data: get("user_data"),
    }
}
