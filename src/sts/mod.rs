//! Talking to a Security Token Service: the [`Sts`] trait the rest of mediagate uses, and the
//! Alibaba Cloud client that signs `AssumeRole` with RPC signature v1.

mod aliyun;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::SecretString;

pub use aliyun::AliyunSts;

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

/// Exponential backoff with full jitter: a random delay up to `base * 2^attempt`, capped.
pub(crate) fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let ceiling = base.saturating_mul(1u32 << attempt.min(16)).min(cap);
    let millis = ceiling.as_millis() as u64;
    Duration::from_millis(rand::random_range(0..=millis))
}
