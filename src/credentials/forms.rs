//! Browser form uploads: the signed POST form for exactly one object key (OSS PostObject V1
//! with the upload callback, or an S3 SigV4 POST), and the keys that sign it.

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::Serialize;

use super::{KeyCondition, ObjectKey, oss_post_policy, s3_post_policy};
use crate::signing::{oss_post_signature, s3_post_signature};
use crate::storage::{Provider, StorageConfig};
use crate::sts::{Credentials, StsConfig};

/// A browser form upload: POST the `fields` (file last) to `url`.
#[derive(Clone, Serialize, utoipa::ToSchema)]
pub struct PostForm {
    pub url: String,
    pub fields: std::collections::BTreeMap<&'static str, String>,
}

/// The configured STS keys as signing credentials for forms (`storage.post_signing =
/// "service"`), valid as long as vended credentials would be.
pub fn service_credentials(sts: &StsConfig) -> Credentials {
    let now = Utc::now();
    Credentials {
        access_key_id: sts.access_key_id.clone(),
        access_key_secret: sts.access_key_secret.clone(),
        security_token: secrecy::SecretString::from(""),
        expiration: now + chrono::Duration::seconds(i64::from(sts.duration_seconds)),
        obtained_at: now,
    }
}

/// The form for exactly `key`, signed with `creds` (vended, or the service keys; their secret
/// never leaves the server), with the size range bound into the policy: OSS PostObject V1 with
/// the upload callback (`callback_b64`, the OSS `callback` parameter), or an S3 SigV4 POST with
/// the upload id as metadata.
pub fn post_form(
    storage: &StorageConfig,
    key: &ObjectKey,
    upload_id: &str,
    creds: &Credentials,
    size: (u64, u64),
    callback_b64: &str,
) -> PostForm {
    let url = storage.bucket_url();
    let secret = creds.access_key_secret.expose_secret();
    let token = creds.security_token.expose_secret();
    let fields: Vec<(&'static str, String)> = match storage.provider {
        Provider::Aliyun => {
            let policy = oss_post_policy(
                creds.expiration,
                &storage.bucket,
                KeyCondition::Exact(key.as_str()),
                size,
                Some(callback_b64),
            );
            let (policy, signature) = oss_post_signature(secret, &policy);
            let mut fields = vec![
                ("key", key.as_str().to_owned()),
                ("policy", policy),
                ("OSSAccessKeyId", creds.access_key_id.clone()),
                ("Signature", signature),
                ("success_action_status", "200".to_owned()),
                ("callback", callback_b64.to_owned()),
                ("x:upload_id", upload_id.to_owned()),
            ];
            if !token.is_empty() {
                fields.push(("x-oss-security-token", token.to_owned()));
            }
            fields
        }
        Provider::S3 => {
            let now = std::time::SystemTime::now();
            let date = DateTime::<Utc>::from(now);
            let credential = format!(
                "{}/{}/{}/s3/aws4_request",
                creds.access_key_id,
                date.format("%Y%m%d"),
                storage.region
            );
            let mut signed = vec![
                ("success_action_status", "200".to_owned()),
                ("x-amz-algorithm", "AWS4-HMAC-SHA256".to_owned()),
                ("x-amz-credential", credential),
                ("x-amz-date", date.format("%Y%m%dT%H%M%SZ").to_string()),
                ("x-amz-meta-upload_id", upload_id.to_owned()),
            ];
            if !token.is_empty() {
                signed.push(("x-amz-security-token", token.to_owned()));
            }
            let pairs: Vec<(&str, &str)> = signed.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let policy = s3_post_policy(
                creds.expiration,
                &storage.bucket,
                KeyCondition::Exact(key.as_str()),
                size,
                &pairs,
            );
            let (policy, signature) = s3_post_signature(secret, now, &storage.region, &policy);
            let mut fields = vec![
                ("key", key.as_str().to_owned()),
                ("policy", policy),
                ("x-amz-signature", signature),
            ];
            fields.extend(signed);
            fields
        }
    };
    PostForm {
        url,
        fields: fields.into_iter().collect(),
    }
}
