//! Durable processing of uploads: the trigger queue, the worker that drains it, and the sinks
//! a trigger is delivered to (MPS `AddMedia`, signed webhooks).

mod intake;
pub mod mps;
pub mod webhook;
mod worker;

use serde::{Deserialize, Serialize};

use crate::media::MediaAttributes;

pub use intake::{ObjectEvent, Reprocessed, StorageScope, accept, reprocess};
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
    pub object_key: String,
    pub etag: String,
    pub size: Option<i64>,
    pub content_type: Option<String>,
    pub media: MediaAttributes,
}

/// A successful delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivered {
    /// MPS `MediaId`, for the MPS sink.
    pub media_id: Option<String>,
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
