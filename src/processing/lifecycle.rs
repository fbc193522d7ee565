//! Lifecycle events for the app's own backend (`[events]`): an upload's change of state, told
//! once per change as a Standard Webhooks message.
//!
//! The database queues each event with the change itself (a trigger on `uploads`, for the
//! types the running configuration lists), so no code path that changes a state can forget
//! one and a crash cannot lose one; the trigger queue delivers it, with its retries, dead
//! letter and replay. The event's id is its trigger's id: the same through every retry and
//! whichever instance sends it.

use chrono::{DateTime, SecondsFormat, Utc};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};

use super::webhook::WebhookClient;
use super::{Delivered, DeliveryError};
use crate::kinds::UploadState;
use crate::store::{OutputRow, Store};
use crate::uploads::Upload;

/// The types told by default: where an upload ends.
const DEFAULT_TYPES: [&str; 4] = [
    "upload.ready",
    "upload.failed",
    "upload.rejected",
    "upload.expired",
];

/// `[events]`: where the app's backend is told of upload state changes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// `MEDIAGATE__EVENTS__WEBHOOK_URL`: the receiver; unset (default), no events.
    pub webhook_url: Option<String>,
    /// `MEDIAGATE__EVENTS__WEBHOOK_SECRET`: the Standard Webhooks secret (`whsec_<base64>`,
    /// or raw, at least 24 bytes).
    pub webhook_secret: Option<SecretString>,
    /// `MEDIAGATE__EVENTS__TYPES`: which changes are told, `upload.<state>`.
    pub types: Vec<String>,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            webhook_url: None,
            webhook_secret: None,
            types: DEFAULT_TYPES.map(str::to_owned).to_vec(),
        }
    }
}

/// Every type an upload can change to (it starts `issued`).
pub fn known_types() -> impl Iterator<Item = String> {
    UploadState::ALL
        .iter()
        .filter(|s| **s != UploadState::Issued)
        .map(|s| format!("upload.{s}"))
}

impl EventsConfig {
    /// The types to queue: none without a receiver.
    pub fn subscribed(&self) -> &[String] {
        match self.webhook_url {
            Some(_) => &self.types,
            None => &[],
        }
    }

    /// Every problem of the section, one line each.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let Some(url) = &self.webhook_url else {
            if self.webhook_secret.is_some() {
                problems.push("events.webhook_secret: set without events.webhook_url".into());
            }
            return problems;
        };
        if !url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
            problems.push("events.webhook_url: must be an http:// or https:// URL".into());
        }
        match &self.webhook_secret {
            None => problems.push("events.webhook_secret: needed with events.webhook_url".into()),
            Some(secret) => {
                use secrecy::ExposeSecret;
                if let Err(e) = crate::signing::validate_webhook_secret(secret.expose_secret()) {
                    problems.push(format!("events.webhook_secret: {e}"));
                }
            }
        }
        if self.types.is_empty() {
            problems.push("events.types: must list at least one type".into());
        }
        for t in &self.types {
            if !known_types().any(|k| k == *t) {
                let known: Vec<String> = known_types().collect();
                problems.push(format!(
                    "events.types: unknown type {t:?} (known: {})",
                    known.join(", ")
                ));
            }
        }
        problems
    }
}

/// The change the database queued (the trigger's payload).
#[derive(Debug, Deserialize)]
pub struct Change {
    #[serde(rename = "type")]
    pub kind: String,
    pub upload_id: String,
    pub state: String,
    pub state_reason: Option<String>,
    /// When the change was made (Unix ms).
    pub at: i64,
}

/// The event for `change`: its state and reason are the change's; the rest is the upload and
/// its outputs as they are when the event is sent (outputs as bucket and key: the backend
/// reads them with its own access, URLs would expire).
pub fn body(change: &Change, upload: &Upload, outputs: &[OutputRow]) -> Value {
    let at = DateTime::<Utc>::from_timestamp_millis(change.at).unwrap_or_default();
    let outputs: Vec<Value> = outputs
        .iter()
        .map(|o| {
            json!({"workflow": o.workflow_name, "name": o.name, "kind": o.kind,
                "bucket": o.bucket, "key": o.object_key, "format": o.format,
                "width": o.width, "height": o.height, "duration_ms": o.duration_ms,
                "size": o.size})
        })
        .collect();
    json!({
        "type": change.kind,
        "timestamp": at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "data": {
            "upload_id": upload.id,
            "user": upload.owner,
            "bucket": upload.bucket,
            "object_key": upload.object_key,
            "size": upload.size,
            "content_type": upload.content_type,
            "state": change.state,
            "state_reason": change.state_reason,
            "media": upload.media,
            "outputs": outputs,
        }
    })
}

/// The app's backend: where events go, and how they are signed.
pub struct Backend {
    url: String,
    secret: SecretString,
    client: WebhookClient,
}

impl Backend {
    /// The receiver of `config`, when there is one.
    pub fn new(config: &EventsConfig, client: WebhookClient) -> Option<Backend> {
        Some(Backend {
            url: config.webhook_url.clone()?,
            secret: config.webhook_secret.clone()?,
            client,
        })
    }

    /// Sends the event `id` queued as `payload`.
    pub async fn tell(
        &self,
        store: &Store,
        id: &str,
        payload: &str,
    ) -> Result<Delivered, DeliveryError> {
        let change: Change = serde_json::from_str(payload)
            .map_err(|e| DeliveryError::Fatal(format!("unreadable event: {e}")))?;
        let read = |e: anyhow::Error| DeliveryError::Retry(format!("reading the upload: {e:#}"));
        let upload = store
            .get_upload(&change.upload_id)
            .await
            .map_err(read)?
            .map(Upload::from_row)
            .ok_or_else(|| DeliveryError::Fatal("the upload no longer exists".into()))?;
        let outputs = store
            .outputs_for_upload(&change.upload_id)
            .await
            .map_err(read)?;
        let body = serde_json::to_vec(&body(&change, &upload, &outputs))
            .map_err(|e| DeliveryError::Fatal(format!("encoding the event: {e}")))?;
        self.client
            .send(id, Utc::now(), body, &self.url, &self.secret)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(types: &[&str]) -> EventsConfig {
        EventsConfig {
            webhook_url: Some("https://app.example.com/hooks".into()),
            webhook_secret: Some(SecretString::from("a-secret-of-at-least-24-bytes")),
            types: types.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    #[test]
    fn types_are_upload_states_and_nothing_is_queued_without_a_receiver() {
        assert_eq!(config(&["upload.ready"]).problems(), Vec::<String>::new());
        let problems = config(&["upload.issued", "upload.done"]).problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("\"upload.issued\""), "{problems:?}");
        assert_eq!(config(&[]).problems().len(), 1);
        let unset = EventsConfig::default();
        assert!(unset.problems().is_empty());
        assert!(unset.subscribed().is_empty());
        assert_eq!(config(&["upload.ready"]).subscribed(), ["upload.ready"]);
        let short = EventsConfig {
            webhook_secret: Some(SecretString::from("short")),
            ..config(&["upload.ready"])
        };
        assert_eq!(short.problems().len(), 1);
        let no_url = EventsConfig {
            webhook_url: None,
            ..config(&["upload.ready"])
        };
        assert_eq!(no_url.problems().len(), 1);
    }

    #[test]
    fn the_body_has_the_change_and_outputs_as_bucket_and_key() {
        let row = crate::store::UploadRow {
            id: "up_1".into(),
            owner: "alice".into(),
            subject: "alice".into(),
            bucket: "media-input".into(),
            object_key: "uploads/alice/up_1/clip.mp4".into(),
            file_name: "clip.mp4".into(),
            size: Some(1234),
            content_type: Some("video/mp4".into()),
            mode: crate::kinds::UploadMode::Sts,
            media: r#"{"title":"Clip"}"#.into(),
            state: UploadState::Failed,
            state_reason: None,
            created_at: 0,
            uploaded_at: None,
            updated_at: 0,
        };
        let upload = Upload::from_row(row);
        let change = Change {
            kind: "upload.ready".into(),
            upload_id: "up_1".into(),
            state: "ready".into(),
            state_reason: None,
            at: 1_700_000_000_123,
        };
        let output = OutputRow {
            trigger_id: "trg_1".into(),
            upload_id: Some("up_1".into()),
            workflow_name: "thumbs".into(),
            name: "video".into(),
            kind: crate::kinds::OutputKind::Video,
            bucket: "media-output".into(),
            object_key: "outputs/trg_1/video.mp4".into(),
            format: Some("mp4".into()),
            width: Some(426),
            height: Some(240),
            duration_ms: Some(2000),
            size: Some(99),
        };
        let body = body(&change, &upload, &[output]);
        assert_eq!(body["type"], "upload.ready");
        assert_eq!(body["timestamp"], "2023-11-14T22:13:20.123Z");
        let data = &body["data"];
        // The state is the change's, not the upload's now.
        assert_eq!(data["state"], "ready");
        assert_eq!(data["user"], "alice");
        assert_eq!(data["media"]["title"], "Clip");
        assert_eq!(
            data["outputs"][0],
            json!({"workflow": "thumbs", "name": "video", "kind": "video",
                "bucket": "media-output", "key": "outputs/trg_1/video.mp4", "format": "mp4",
                "width": 426, "height": 240, "duration_ms": 2000, "size": 99})
        );
        assert!(!body.to_string().contains("url"), "{body}");
    }
}
