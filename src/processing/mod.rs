//! Durable processing of uploads: the trigger queue, the worker that drains it, and the sinks
//! a trigger is delivered to (MPS `AddMedia`, signed webhooks).

pub mod follow;
mod intake;
pub mod lifecycle;
pub mod mps;
pub mod reconcile;
pub mod reports;
pub mod verify;
pub mod webhook;
mod worker;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::media::MediaAttributes;

pub use intake::{ObjectEvent, Reprocessed, StorageScope, accept, announce, reprocess};

/// Where triggers go: MPS `AddMedia` ([`mps::MpsClient`]) or a signed webhook
/// ([`webhook::WebhookClient`]). One attempt per call; the queue owns retries. The worker is
/// given its sinks, so tests can hand it their own.
#[async_trait::async_trait]
pub trait Sink: Send + Sync {
    /// Delivers `delivery` to `target`, the workflow's sink settings; a target of another
    /// kind is a [`DeliveryError::Fatal`].
    async fn deliver(
        &self,
        target: &crate::workflows::Sink,
        delivery: &Delivery,
    ) -> Result<Delivered, DeliveryError>;
}

/// The sink of each kind a worker delivers to, and the object store its verification jobs
/// read.
#[derive(Clone)]
pub struct Sinks {
    pub mps: std::sync::Arc<dyn Sink>,
    pub webhook: std::sync::Arc<dyn Sink>,
    pub objects: std::sync::Arc<dyn crate::storage::reader::ObjectReader>,
}
pub use worker::Worker;

/// Everything a sink needs to deliver one trigger. Stored as the trigger's payload when the
/// event is recorded, so a delivery never depends on state that changed since.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    /// The trigger id: receivers use it as an idempotency key.
    #[serde(skip)]
    pub trigger_id: String,
    /// 1 for the first attempt.
    #[serde(skip)]
    pub attempt: u32,
    pub workflow: String,
    pub upload_id: Option<String>,
    /// The user segment the object was uploaded under, when known.
    pub user: Option<String>,
    pub bucket: String,
    pub region: String,
    /// The announced object; processors are handed `protected_key` instead when there is one.
    pub object_key: String,
    /// The copy of the object verification made and judged, where app credentials never
    /// write (`verification.protected_prefix`): what processors read. `etag`, `size` and
    /// `content_type` are then the copy's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_key: Option<String>,
    pub etag: String,
    pub size: Option<i64>,
    pub content_type: Option<String>,
    pub media: MediaAttributes,
    /// The container the object's first bytes identify, once verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Set on the notice a webhook gets when verification refused an object a workflow would
    /// otherwise have taken: the reason code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<crate::kinds::Reason>,
    /// For verification: the size the client declared when it asked for the upload (the
    /// stored object must have it), kept here because the upload's size becomes the
    /// store's once verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_size: Option<i64>,
    /// For verification: how the upload was issued (a form's object must be within the range
    /// its policy signed), kept here so verifying an object needs no read of its upload.
    /// Jobs queued without it look the upload up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_mode: Option<crate::kinds::UploadMode>,
    /// For a webhook workflow that follows its outcome: where its receiver reports, and where
    /// its outputs go. Filled in when the trigger is delivered.
    #[serde(default, flatten, skip_serializing_if = "Option::is_none")]
    pub report: Option<ReportTo>,
}

impl Delivery {
    /// The key a processor reads: the protected copy when verification made one, else the
    /// announced object.
    pub fn processed_key(&self) -> &str {
        self.protected_key.as_deref().unwrap_or(&self.object_key)
    }
}

/// Where a processor reports its outcome (`POST /v1/notifications/processing`, signed with
/// its workflow's secret) and where it puts its outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportTo {
    pub report_url: String,
    pub output_bucket: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_prefix: Option<String>,
}

/// A successful delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivered {
    /// MPS `MediaId`, for the MPS sink.
    pub media_id: Option<String>,
    /// MPS `RunIdList.RunId`: one run per media workflow execution AddMedia started, each
    /// to be followed to its outcome. Empty for webhooks.
    pub run_ids: Vec<String>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DeliveryError {
    /// Worth another attempt later (timeouts, throttling, 5xx).
    #[error("{0}")]
    Retry(String),
    /// Will never succeed as is (invalid parameters, gone): the trigger ends `dead`.
    #[error("{0}")]
    Fatal(String),
}

/// `[mps]`: the MPS endpoint and keys of the `mps` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MpsConfig {
    /// `MEDIAGATE__MPS__ENDPOINT`, e.g. `https://mts.cn-hangzhou.aliyuncs.com`.
    pub endpoint: String,
    /// `MEDIAGATE__MPS__ACCESS_KEY_ID`: defaults to `sts.access_key_id`.
    pub access_key_id: Option<String>,
    /// `MEDIAGATE__MPS__ACCESS_KEY_SECRET`: defaults to `sts.access_key_secret`.
    pub access_key_secret: Option<SecretString>,
    /// `MEDIAGATE__MPS__TIMEOUT_MS`, default 10000.
    pub timeout_ms: u64,
    /// `MEDIAGATE__MPS__QUERY_PER_SECOND`, default 10: this instance's budget of MPS lookups
    /// (`QueryMediaWorkflowExecutionList`, `QueryMediaList`) a second; the account has 100.
    pub query_per_second: u32,
}

impl Default for MpsConfig {
    fn default() -> Self {
        Self {
            endpoint: "https://mts.cn-hangzhou.aliyuncs.com".into(),
            access_key_id: None,
            access_key_secret: None,
            timeout_ms: 10_000,
            query_per_second: 10,
        }
    }
}

/// `[processing]`: the trigger queue and its worker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessingConfig {
    /// `MEDIAGATE__PROCESSING__MAX_ATTEMPTS`, default 8: then the trigger is `dead`.
    pub max_attempts: u32,
    /// `MEDIAGATE__PROCESSING__BACKOFF_BASE_MS`, default 1000: first retry delay ceiling.
    pub backoff_base_ms: u64,
    /// `MEDIAGATE__PROCESSING__BACKOFF_MAX_MS`, default 300000.
    pub backoff_max_ms: u64,
    /// `MEDIAGATE__PROCESSING__LEASE_SECONDS`, default 60: a claimed trigger whose worker
    /// vanished is taken over after this long.
    pub lease_seconds: u64,
    /// `MEDIAGATE__PROCESSING__POLL_INTERVAL_MS`, default 500: idle worker poll interval.
    pub poll_interval_ms: u64,
    /// `MEDIAGATE__PROCESSING__CONCURRENCY`, default 16: deliveries in flight per instance.
    pub concurrency: usize,
    /// `MEDIAGATE__PROCESSING__WEBHOOK_TIMEOUT_MS`, default 10000.
    pub webhook_timeout_ms: u64,
    /// `MEDIAGATE__PROCESSING__OUTCOME_TIMEOUT_SECONDS`, default 21600: a followed outcome
    /// still open this long after delivery fails (`processing_timed_out`).
    pub outcome_timeout_seconds: u64,
    /// `MEDIAGATE__PROCESSING__OUTCOME_POLL_MIN_SECONDS`, default 5: the first look at a
    /// processor's run, after its delivery; each later wait doubles ...
    pub outcome_poll_min_seconds: u64,
    /// `MEDIAGATE__PROCESSING__OUTCOME_POLL_MAX_SECONDS`, default 60: ... up to this.
    pub outcome_poll_max_seconds: u64,
}

impl Default for ProcessingConfig {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            backoff_base_ms: 1000,
            backoff_max_ms: 300_000,
            lease_seconds: 60,
            poll_interval_ms: 500,
            concurrency: 16,
            webhook_timeout_ms: 10_000,
            outcome_timeout_seconds: 21_600,
            outcome_poll_min_seconds: 5,
            outcome_poll_max_seconds: 60,
        }
    }
}
