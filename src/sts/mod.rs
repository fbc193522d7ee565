//! Talking to a Security Token Service: the [`Sts`] trait the rest of mediagate uses, the
//! Alibaba Cloud client (RPC signature v1) and the AWS-compatible client (SigV4) for AWS,
//! Ceph RGW and MinIO.

mod aliyun;
mod aws;

use serde::Deserialize;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::SecretString;

pub use aliyun::AliyunSts;
pub use aws::AwsSts;

/// One `AssumeRole` call: who the session is for and what it may do.
#[derive(Debug, Clone)]
pub struct AssumeRole {
    pub role_session_name: String,
    /// Compact JSON session policy.
    pub policy: String,
    pub duration_seconds: u32,
}

/// Temporary credentials. The secret and token are handed to the uploading client, never
/// logged.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: SecretString,
    pub security_token: SecretString,
    pub expiration: DateTime<Utc>,
    /// When mediagate received them; with `expiration` this gives their lifetime.
    pub obtained_at: DateTime<Utc>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StsError {
    /// STS could not be reached or kept failing with throttling or 5xx: worth retrying later.
    #[error("STS unavailable: {detail}")]
    Unavailable {
        detail: String,
        retry_after: Duration,
    },
    /// STS refused the call (bad key, missing role, no permission, bad parameter): a fault in
    /// our configuration that retrying will not fix.
    #[error("STS rejected AssumeRole: {code}: {message} (request id {request_id})")]
    Rejected {
        code: String,
        message: String,
        request_id: String,
    },
}

#[async_trait]
pub trait Sts: Send + Sync {
    async fn assume_role(&self, request: &AssumeRole) -> Result<Credentials, StsError>;
}

/// What one attempt at `AssumeRole` came to.
pub(crate) enum Attempt {
    Done(Result<Credentials, StsError>),
    /// Throttling, a server fault or the network: worth another attempt.
    Retry(String),
}

impl Attempt {
    /// An STS error answer: retried when `retryable`, otherwise a rejection carrying STS's
    /// code (or the HTTP status when it gave none).
    pub(crate) fn failed(
        status: u16,
        retryable: bool,
        code: String,
        message: String,
        request_id: String,
    ) -> Attempt {
        if retryable {
            return Attempt::Retry(format!("HTTP {status} {code}: {message}"));
        }
        Attempt::Done(Err(StsError::Rejected {
            code: if code.is_empty() {
                format!("HTTP{status}")
            } else {
                code
            },
            message,
            request_id,
        }))
    }
}

/// Runs `attempt` up to `max_attempts` times with jittered backoff between tries; persistent
/// retryable failures become [`StsError::Unavailable`].
pub(crate) async fn with_retries<F, Fut>(
    max_attempts: u32,
    mut attempt: F,
) -> Result<Credentials, StsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Attempt>,
{
    let mut last = String::new();
    for n in 0..max_attempts.max(1) {
        if n > 0 {
            tokio::time::sleep(crate::upstream::backoff(
                n - 1,
                Duration::from_millis(100),
                Duration::from_secs(2),
            ))
            .await;
        }
        match attempt().await {
            Attempt::Done(result) => return result,
            Attempt::Retry(reason) => {
                tracing::warn!(
                    attempt = n + 1,
                    ?reason,
                    "STS AssumeRole failed, will retry"
                );
                last = reason;
            }
        }
    }
    Err(StsError::Unavailable {
        detail: last,
        retry_after: Duration::from_secs(5),
    })
}

/// The HTTP client for one STS: bounded per attempt so a hung STS cannot hang a request.
pub(crate) fn http_client(timeout_ms: u64) -> anyhow::Result<reqwest::Client> {
    crate::upstream::client(Duration::from_millis(timeout_ms))
}

/// `[sts]`: the STS mediagate assumes the uploader role with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StsConfig {
    /// `MEDIAGATE__STS__ENDPOINT`, default `https://sts.aliyuncs.com` for `aliyun` and
    /// `https://sts.{region}.amazonaws.com` for `s3`.
    pub endpoint: Option<String>,
    /// `MEDIAGATE__STS__REGION`: the SigV4 signing region for `s3`, default `storage.region`.
    pub region: Option<String>,
    /// `MEDIAGATE__STS__ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `MEDIAGATE__STS__ACCESS_KEY_SECRET`.
    pub access_key_secret: SecretString,
    /// `MEDIAGATE__STS__ROLE_ARN`, e.g. `acs:ram::1234567890123456:role/uploader` or
    /// `arn:aws:iam::123456789012:role/uploader`.
    pub role_arn: String,
    /// `MEDIAGATE__STS__EXTERNAL_ID`: sent when set.
    pub external_id: Option<String>,
    /// `MEDIAGATE__STS__DURATION_SECONDS`, default 3600 (900 up to the role's maximum).
    pub duration_seconds: u32,
    /// `MEDIAGATE__STS__TIMEOUT_MS`, default 5000: per attempt.
    pub timeout_ms: u64,
    /// `MEDIAGATE__STS__MAX_ATTEMPTS`, default 3: throttling, 5xx and network errors are retried.
    pub max_attempts: u32,
    /// `MEDIAGATE__STS__REFRESH_AFTER`, default 0.8: cached credentials are reused until this
    /// share of their lifetime has passed.
    pub refresh_after: f64,
    /// `MEDIAGATE__STS__MIN_REMAINING_SECONDS`, default 300: credentials with less left are never
    /// handed out.
    pub min_remaining_seconds: u64,
}

impl Default for StsConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: None,
            access_key_id: String::new(),
            access_key_secret: SecretString::from(""),
            role_arn: String::new(),
            external_id: None,
            duration_seconds: 3600,
            timeout_ms: 5000,
            max_attempts: 3,
            refresh_after: 0.8,
            min_remaining_seconds: 300,
        }
    }
}
