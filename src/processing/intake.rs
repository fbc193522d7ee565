//! From a verified notification to a recorded event: link the upload it completes, decide
//! which workflows it triggers, and queue those triggers, all in one transaction.

use chrono::Utc;
use tokio::sync::Notify;
use tracing::{info, warn};

use super::Delivery;
use crate::credentials::KeyPrefix;
use crate::kinds::{EventOutcome, EventSource, Reason, TriggerSink, UploadMode, UploadState};
use crate::media::{MediaAttributes, MediaAttributesInput};
use crate::storage::check_object_key;
use crate::store::{
    Actor, EventRow, EventWrite, NewTrigger, Recorded, Reprocess, Store, UploadChange,
};
use crate::uploads::{SizeSource, Upload, size_problem};
use crate::workflows::{Sink, Workflow, decide};

/// Where uploads go: the input bucket, its key prefix and region, the largest form upload,
/// and whether announced objects are verified in the store before anything is triggered.
pub struct StorageScope<'a> {
    pub bucket: &'a str,
    pub prefix: &'a KeyPrefix,
    pub region: &'a str,
    pub max_upload_bytes: u64,
    pub verify: bool,
}

impl StorageScope<'_> {
    /// Whether mediagate may read `key` in `bucket` with its service keys: only under the
    /// upload prefix of the input bucket.
    fn readable(&self, bucket: &str, key: &str) -> bool {
        bucket == self.bucket
            && key.len() > self.prefix.as_str().len()
            && key.starts_with(self.prefix.as_str())
            && !key.ends_with('/')
    }
}

/// Why an object announced for `upload` must not be processed, judged from the size its
/// notification states (see [`SizeSource::Notification`]).
fn announced_size_problem(
    upload: &Upload,
    size: Option<i64>,
    max: u64,
) -> Option<(Reason, String)> {
    size_problem(
        size?,
        Some(upload.mode),
        upload.size,
        max,
        SizeSource::Notification,
    )
}

/// An object-created notification after its signature or token was checked and its key
/// decoded.
#[derive(Debug, Clone)]
pub struct ObjectEvent {
    pub source: EventSource,
    pub bucket: String,
    pub key: String,
    /// As the sender wrote it; [`accept`] normalises it (quotes, case) once for every sender.
    pub etag: String,
    pub size: Option<i64>,
    pub content_type: Option<String>,
    /// The object is a symbolic link to another object (OSS `PutSymlink`): recorded, never
    /// processed, and it completes nothing.
    pub symlink: bool,
    /// `x:upload_id` from the client; only trusted when it names the upload of this very key.
    pub upload_hint: Option<String>,
    /// `x:title` and friends: override the upload's media attributes when valid.
    pub media_overrides: MediaAttributesInput,
}

impl ObjectEvent {
    /// Refuses an event whose bucket, key or ETag no store would send: the key under the one
    /// key rule every intake path shares (a `..` segment would name another user's object
    /// wherever the key becomes a URL). The message is fit for the sender.
    pub fn check(&self) -> Result<(), String> {
        for (field, value) in [("bucket", &self.bucket), ("etag", &self.etag)] {
            if value.chars().any(char::is_control) || value.len() > 2048 {
                return Err(format!("{field} is not a valid object {field}"));
            }
        }
        if self.bucket.is_empty() {
            return Err("bucket and key are required".into());
        }
        check_object_key(&self.key).map_err(|why| format!("key is not a valid object key: {why}"))
    }

    /// An event with nothing announced yet, to fill in.
    pub fn empty() -> ObjectEvent {
        ObjectEvent {
            source: EventSource::Reconcile,
            bucket: String::new(),
            key: String::new(),
            etag: String::new(),
            size: None,
            content_type: None,
            symlink: false,
            upload_hint: None,
            media_overrides: MediaAttributesInput::default(),
        }
    }
}

/// Records a notification's `event` (see [`accept`]), counts and logs what it came to, and
/// wakes the worker when it queued triggers.
pub async fn announce(
    store: &Store,
    storage: &StorageScope<'_>,
    event: ObjectEvent,
    wake: &Notify,
) -> anyhow::Result<Recorded> {
    let (bucket, key, source) = (
        event.bucket.clone(),
        event.key.clone(),
        event.source.as_str(),
    );
    let recorded = accept(store, storage, event).await?;
    let outcome = match &recorded {
        Recorded::Accepted { triggers: 0, .. } => "skipped",
        Recorded::Accepted { .. } => "accepted",
        Recorded::Duplicate { .. } => "duplicate",
        Recorded::Repeat { .. } => "repeat",
    };
    metrics::counter!("mediagate_notifications_total", "source" => source, "outcome" => outcome)
        .increment(1);
    // Bucket and key come from the sender: logged escaped (`?`), never raw.
    match &recorded {
        Recorded::Accepted {
            triggers,
            upload_id,
        } => {
            let upload_id = upload_id.as_deref().unwrap_or("");
            info!(
                source,
                ?bucket,
                ?key,
                triggers,
                upload_id,
                "object event recorded"
            );
            if *triggers > 0 {
                wake.notify_one();
            }
        }
        Recorded::Duplicate { .. } => {
            info!(source, ?bucket, ?key, "duplicate object event ignored")
        }
        Recorded::Repeat { upload_id } => {
            let upload_id = upload_id.as_deref().unwrap_or("");
            warn!(
                source,
                ?bucket,
                ?key,
                upload_id,
                "another version of a completed object announced; recorded, nothing triggered"
            )
        }
    }
    Ok(recorded)
}

/// Records `event` once per (bucket, key, ETag). The first event for an object completes it
/// and queues a trigger per matching workflow; a later one for the same object (another
/// ETag, from any sender) is recorded as a repeat and changes nothing.
pub async fn accept(
    store: &Store,
    storage: &StorageScope<'_>,
    mut event: ObjectEvent,
) -> anyhow::Result<Recorded> {
    let (prefix, region) = (storage.prefix, storage.region);
    // OSS writes ETags in upper case, S3 in lower case, some senders quote them: one object
    // version must dedupe to one record whoever announces it.
    event.etag = event.etag.trim_matches('"').to_ascii_uppercase();
    let now = Utc::now().timestamp_millis();
    let existing = linked_upload(store, prefix, &event).await?;
    let mut row = EventRow {
        id: uuid::Uuid::now_v7().to_string(),
        bucket: event.bucket.clone(),
        object_key: event.key.clone(),
        etag: event.etag.clone(),
        size: event.size,
        content_type: event.content_type.clone(),
        source: event.source,
        upload_id: existing.as_ref().map(|u| u.id.clone()),
        outcome: EventOutcome::Skipped,
        reason: None,
        received_at: now,
    };

    // An OSS callback body is written by the uploading client (OSS signs whatever template it
    // was given), so it only counts for an upload mediagate issued for exactly this key; other
    // objects are announced by signed events or token-authenticated webhooks.
    let untrusted = event.source == EventSource::OssCallback && existing.is_none();
    if untrusted || event.symlink {
        let (outcome, reason) = if event.symlink {
            (
                EventOutcome::Symlink,
                "a symbolic link to another object; not processed",
            )
        } else {
            (
                EventOutcome::Ignored,
                "callback for an object mediagate did not issue; ignored",
            )
        };
        row.outcome = outcome;
        row.reason = Some(reason.into());
        return store.record_event(EventWrite::only(row)).await;
    }

    // Only our own bucket has user prefixes.
    let owner = existing.as_ref().map(|u| u.owner.clone()).or_else(|| {
        (event.bucket == storage.bucket)
            .then(|| owner_segment(prefix, &event.key))
            .flatten()
    });
    let base_media = existing
        .as_ref()
        .map(|u| u.media.clone())
        .unwrap_or_default();
    let media = merge_media(base_media, event.media_overrides.clone());
    let change = match (&existing, &owner) {
        (Some(u), _) => UploadChange::Existing { id: u.id.clone() },
        (None, Some(owner)) if !event.key.ends_with('/') => {
            let file_name = event.key.rsplit('/').next().unwrap_or_default().to_owned();
            let upload = Upload {
                id: uuid::Uuid::now_v7().to_string(),
                owner: owner.clone(),
                subject: String::new(),
                bucket: event.bucket.clone(),
                object_key: event.key.clone(),
                file_name,
                size: event.size.filter(|_| !storage.verify),
                content_type: event.content_type.clone(),
                mode: UploadMode::External,
                media: media.clone(),
                state: UploadState::Skipped,
                reason: None,
                created_at: now,
                uploaded_at: Some(now),
                updated_at: now,
            };
            UploadChange::New(Box::new(upload.to_row()?))
        }
        _ => UploadChange::None,
    };
    row.upload_id = match &change {
        UploadChange::Existing { id } => Some(id.clone()),
        UploadChange::New(upload) => Some(upload.id.clone()),
        UploadChange::None => None,
    };

    let object = Delivery {
        trigger_id: String::new(),
        attempt: 0,
        workflow: String::new(),
        upload_id: row.upload_id.clone(),
        user: owner,
        bucket: event.bucket.clone(),
        region: region.to_owned(),
        object_key: event.key.clone(),
        protected_key: None,
        etag: event.etag.clone(),
        size: event.size,
        content_type: event.content_type.clone(),
        media,
        container: None,
        rejected: None,
        // The first completion of the object: nothing has written the upload's size yet.
        declared_size: existing.as_ref().and_then(|u| u.size),
        upload_mode: existing.as_ref().map(|u| u.mode),
        report: None,
    };
    let plan = if storage.verify {
        Plan::verify(storage, &store.workflows().await?, &object)?
    } else {
        match existing
            .as_ref()
            .and_then(|u| announced_size_problem(u, event.size, storage.max_upload_bytes))
        {
            Some((code, detail)) => Plan::skip(code, detail),
            None => Plan::for_object(&store.workflows().await?, &object)?,
        }
    };
    row.outcome = plan.outcome();
    row.reason = plan.detail;
    store
        .record_event(EventWrite {
            event: row,
            completes: true,
            upload: change,
            upload_state: plan.upload_state,
            upload_reason: plan.code,
            upload_size: event.size.filter(|_| !storage.verify),
            triggers: plan.triggers,
        })
        .await
}

/// What an operator's request to process an upload again came to.
#[derive(Debug)]
pub enum Reprocessed {
    NotFound,
    /// Nothing was announced for it yet (still `issued`): there is nothing to process.
    NothingAnnounced,
    /// Some of its triggers are still pending, in flight or waiting for a retry, or their
    /// processing has not ended.
    Busy,
    /// Matched again; `triggers` were queued.
    Queued {
        triggers: usize,
        state: UploadState,
    },
}

/// Processes a completed upload again, on purpose: the newest version of its object that was
/// announced is matched against today's workflows and queued like a first notification, and
/// the operator's request is audited with the change.
pub async fn reprocess(
    store: &Store,
    storage: &StorageScope<'_>,
    upload_id: &str,
    who: &Actor,
    wake: &Notify,
) -> anyhow::Result<Reprocessed> {
    let Some(upload) = Upload::find(store, upload_id).await? else {
        return Ok(Reprocessed::NotFound);
    };
    let events = store
        .events_for_object(&upload.bucket, &upload.object_key)
        .await?;
    let Some(latest) = events.iter().rev().find(|e| e.outcome.announced_object()) else {
        return Ok(Reprocessed::NothingAnnounced);
    };
    let object = Delivery {
        trigger_id: String::new(),
        attempt: 0,
        workflow: String::new(),
        upload_id: Some(upload.id.clone()),
        user: Some(upload.owner.clone()).filter(|o| !o.is_empty()),
        bucket: upload.bucket.clone(),
        region: storage.region.to_owned(),
        object_key: upload.object_key.clone(),
        // Verified again, into a copy of its own.
        protected_key: None,
        etag: latest.etag.clone(),
        size: latest.size,
        content_type: latest.content_type.clone(),
        media: upload.media.clone(),
        container: None,
        rejected: None,
        // The operator asks on purpose: the object must be media (and a form's within its
        // largest size), but need not be the size the client first declared.
        declared_size: None,
        upload_mode: Some(upload.mode),
        report: None,
    };
    let plan = if storage.verify {
        Plan::verify(storage, &store.workflows().await?, &object)?
    } else {
        match announced_size_problem(&upload, latest.size, storage.max_upload_bytes) {
            Some((code, detail)) => Plan::skip(code, detail),
            None => Plan::for_object(&store.workflows().await?, &object)?,
        }
    };
    let (state, queued) = (plan.upload_state, plan.triggers.len());
    let detail = serde_json::json!({
        "before": {"state": upload.state, "state_reason": upload.reason},
        "event_id": latest.id,
        "etag": latest.etag,
        "triggers": queued,
    });
    let write = Reprocess {
        upload_id: upload.id.clone(),
        event_id: latest.id.clone(),
        size: latest.size.filter(|_| !storage.verify),
        upload_state: state,
        upload_reason: plan.code,
        triggers: plan.triggers,
    };
    if store.reprocess_upload(write, who, &detail).await? {
        if queued > 0 {
            wake.notify_one();
        }
        Ok(Reprocessed::Queued {
            triggers: queued,
            state,
        })
    } else if upload.state == UploadState::Issued {
        Ok(Reprocessed::NothingAnnounced)
    } else {
        Ok(Reprocessed::Busy)
    }
}

/// What an object that completes an upload comes to: the triggers of the workflows it
/// matches, or why it triggers nothing (a code users see, the detail operators see).
pub struct Plan {
    pub triggers: Vec<NewTrigger>,
    pub upload_state: UploadState,
    pub code: Option<Reason>,
    pub detail: Option<String>,
}

impl Plan {
    fn skip(code: Reason, detail: String) -> Plan {
        Plan {
            triggers: Vec::new(),
            upload_state: UploadState::Skipped,
            code: Some(code),
            detail: Some(detail),
        }
    }

    /// The verification job for an announced object a workflow would take; a skip when none
    /// would (nothing to verify) or when mediagate may not read it.
    fn verify(
        storage: &StorageScope<'_>,
        workflows: &[Workflow],
        object: &Delivery,
    ) -> anyhow::Result<Plan> {
        let matching = Plan::for_object(workflows, object)?;
        if matching.triggers.is_empty() {
            return Ok(matching);
        }
        if !storage.readable(&object.bucket, &object.object_key) {
            return Ok(Plan::skip(
                Reason::NotVerifiable,
                "outside the upload prefix of the input bucket: not read, not processed".into(),
            ));
        }
        Ok(Plan {
            triggers: vec![NewTrigger {
                id: uuid::Uuid::now_v7().to_string(),
                workflow_id: String::new(),
                workflow_name: "verification".into(),
                sink: TriggerSink::Verify,
                payload: serde_json::to_string(object)?,
                tracks_outcome: false,
            }],
            upload_state: UploadState::Uploaded,
            code: None,
            detail: None,
        })
    }

    /// After verification refused `object`: a `upload.rejected` notice for each webhook
    /// workflow that would otherwise have taken it (MPS has nothing to be told).
    pub fn rejected(
        workflows: &[Workflow],
        object: &Delivery,
        code: Reason,
        detail: String,
    ) -> anyhow::Result<Plan> {
        let notice = Delivery {
            rejected: Some(code),
            ..object.clone()
        };
        let mut plan = Plan::for_object(workflows, &notice)?;
        plan.triggers.retain(|t| t.sink == TriggerSink::Webhook);
        Ok(Plan {
            triggers: plan.triggers,
            upload_state: UploadState::Rejected,
            code: Some(code),
            detail: Some(detail),
        })
    }

    /// One trigger per workflow `object` matches, each carrying the object's attributes.
    pub fn for_object(workflows: &[Workflow], object: &Delivery) -> anyhow::Result<Plan> {
        let matching = decide(workflows, &object.bucket, &object.object_key);
        let triggers = matching
            .matched(workflows)
            .map(|w| {
                let payload = Delivery {
                    workflow: w.def.name.clone(),
                    ..object.clone()
                };
                Ok(NewTrigger {
                    id: uuid::Uuid::now_v7().to_string(),
                    workflow_id: w.id.clone(),
                    workflow_name: w.def.name.clone(),
                    sink: match w.def.sink {
                        Sink::Mps { .. } => TriggerSink::Mps,
                        Sink::Webhook { .. } => TriggerSink::Webhook,
                    },
                    payload: serde_json::to_string(&payload)?,
                    tracks_outcome: w.def.track_outcome,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if triggers.is_empty() {
            return Ok(Plan::skip(matching.skip_code(), matching.skip_reason()));
        }
        Ok(Plan {
            triggers,
            upload_state: UploadState::Uploaded,
            code: None,
            detail: None,
        })
    }

    fn outcome(&self) -> EventOutcome {
        if self.triggers.is_empty() {
            EventOutcome::Skipped
        } else {
            EventOutcome::Queued
        }
    }
}

/// The upload this object completes: the one named by the hint or by the upload-id segment of
/// the key, provided its bucket and key are exactly this object's.
async fn linked_upload(
    store: &Store,
    prefix: &KeyPrefix,
    event: &ObjectEvent,
) -> anyhow::Result<Option<Upload>> {
    let from_key = event
        .key
        .strip_prefix(prefix.as_str())
        .and_then(|rest| rest.split('/').nth(1))
        .map(str::to_owned);
    for candidate in event.upload_hint.iter().chain(from_key.iter()) {
        if let Some(u) = Upload::find(store, candidate).await?
            && u.bucket == event.bucket
            && u.object_key == event.key
        {
            return Ok(Some(u));
        }
    }
    Ok(None)
}

/// The user segment of a key under `{prefix}{segment}/...`, when it has one.
fn owner_segment(prefix: &KeyPrefix, key: &str) -> Option<String> {
    let rest = key.strip_prefix(prefix.as_str())?;
    let (segment, below) = rest.split_once('/')?;
    (!segment.is_empty() && !below.is_empty()).then(|| segment.to_owned())
}

/// The upload's attributes with valid overrides applied; an override that breaks AddMedia's
/// limits is dropped rather than failing the whole event.
fn merge_media(base: MediaAttributes, overrides: MediaAttributesInput) -> MediaAttributes {
    let merged = MediaAttributesInput {
        title: overrides.title.or(base.title.clone()),
        description: overrides.description.or(base.description.clone()),
        tags: overrides.tags.or(Some(base.tags.clone())),
        cate_id: overrides.cate_id.or(base.cate_id),
        cover_url: overrides.cover_url.or(base.cover_url.clone()),
        user_data: overrides.user_data.or(base.user_data.clone()),
    };
    MediaAttributes::parse(merged).unwrap_or(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_segment_needs_a_path_below_it() {
        let p = KeyPrefix::parse("uploads/").unwrap();
        assert_eq!(
            owner_segment(&p, "uploads/alice/1/a.mp4").as_deref(),
            Some("alice")
        );
        assert_eq!(owner_segment(&p, "uploads/alice/"), None);
        assert_eq!(owner_segment(&p, "uploads/a.mp4"), None);
        assert_eq!(owner_segment(&p, "other/alice/a.mp4"), None);
    }

    #[test]
    fn overrides_win_when_valid() {
        let base = MediaAttributes {
            title: Some("base".into()),
            tags: vec!["a".into()],
            ..Default::default()
        };
        let merged = merge_media(
            base.clone(),
            MediaAttributesInput {
                title: Some("new".into()),
                ..Default::default()
            },
        );
        assert_eq!(merged.title.as_deref(), Some("new"));
        assert_eq!(merged.tags, vec!["a".to_string()]);
        let invalid = merge_media(
            base.clone(),
            MediaAttributesInput {
                title: Some("t".repeat(200)),
                ..Default::default()
            },
        );
        assert_eq!(invalid, base);
    }
}
