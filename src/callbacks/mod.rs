//! Upload notifications: the callback parameters clients attach to uploads, and the
//! verification of what object stores send back (OSS callbacks, MNS-pushed OSS events).

pub mod keys;
pub mod mns;
pub mod oss;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use secrecy::SecretString;
use serde::Deserialize;
use serde::Serialize;
use serde_json::json;

/// The path OSS calls back, under `server.public_url`.
pub const OSS_CALLBACK_PATH: &str = "/v1/notifications/oss-callback";

/// Base64 values for the OSS SDKs' `callback` and `callback-var` parameters.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct OssCallbackParams {
    pub callback: String,
    pub callback_var: String,
}

/// Makes OSS `POST {public_url}/v1/notifications/oss-callback` with the object's bucket, key,
/// ETag, size and MIME type (form-encoded) plus `upload_id` from the custom variable.
pub fn oss_callback_params(public_url: &str, upload_id: &str) -> OssCallbackParams {
    let callback = json!({
        "callbackUrl": format!("{}{OSS_CALLBACK_PATH}", public_url.trim_end_matches('/')),
        "callbackBody": "bucket=${bucket}&object=${object}&etag=${etag}&size=${size}&mimeType=${mimeType}&upload_id=${x:upload_id}",
        "callbackBodyType": "application/x-www-form-urlencoded",
    });
    let vars = json!({ "x:upload_id": upload_id });
    OssCallbackParams {
        callback: B64.encode(callback.to_string()),
        callback_var: B64.encode(vars.to_string()),
    }
}

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
    /// `MEDIAGATE__NOTIFICATIONS__MNS_TOPIC_NAMES`: when not empty, only pushes from these
    /// topics (the signed `x-mns-topic-name`) are accepted.
    pub mns_topic_names: Vec<String>,
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
            mns_token: None,
            fetch_timeout_ms: 3000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_points_at_our_endpoint_with_the_upload_id() {
        let p = oss_callback_params("https://up.example.com/", "abc");
        let cb: serde_json::Value =
            serde_json::from_slice(&B64.decode(&p.callback).unwrap()).unwrap();
        assert_eq!(
            cb["callbackUrl"],
            "https://up.example.com/v1/notifications/oss-callback"
        );
        assert!(
            cb["callbackBody"]
                .as_str()
                .unwrap()
                .contains("upload_id=${x:upload_id}")
        );
        let vars: serde_json::Value =
            serde_json::from_slice(&B64.decode(&p.callback_var).unwrap()).unwrap();
        assert_eq!(vars["x:upload_id"], "abc");
    }
}
