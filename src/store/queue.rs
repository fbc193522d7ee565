//! Object events and the trigger queue. An event, the upload it completes and its triggers are
//! written in one transaction, before the notification is answered; workers claim due
//! triggers with a lease, so a crashed worker's claims are taken over when the lease ends.

use anyhow::Context;
use sqlx::Row;

use std::collections::{HashMap, HashSet};

use super::batch::{
    self, BatchRow, Batched, Statements, Ticket, insert_rows, push_rows, with_rows,
};
use super::{Backend, Store, UploadRow, now_millis};
use crate::uploads::{EventOutcome, TriggerState, UploadState};

/// An accepted object-created notification, as stored.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub id: String,
    pub bucket: String,
    pub object_key: String,
    pub etag: String,
    pub size: Option<i64>,
    pub content_type: Option<String>,
    pub source: String,
    pub upload_id: Option<String>,
    pub outcome: EventOutcome,
    pub reason: Option<String>,
    pub received_at: i64,
}

/// What the event does to the upload it completes.
#[derive(Debug, Clone)]
pub enum UploadChange {
    /// An upload requested through `POST /v1/uploads`.
    Existing { id: String },
    /// An object under a user's prefix nobody announced: recorded in their history.
    New(Box<UploadRow>),
    /// Not under any user's prefix.
    None,
}

#[derive(Debug, Clone)]
pub struct NewTrigger {
    pub id: String,
    pub workflow_id: String,
    pub workflow_name: String,
    pub sink: String,
    /// JSON of the delivery a sink needs (the processing module's `Delivery`).
    pub payload: String,
}

/// The result of recording an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    Accepted {
        upload_id: Option<String>,
        triggers: usize,
    },
    /// The same (bucket, key, ETag) was recorded before: nothing new happens.
    Duplicate { upload_id: Option<String> },
    /// Another version of an object that was completed before: recorded for operators,
    /// nothing else changes.
    Repeat { upload_id: Option<String> },
}

/// A claimed trigger.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: String,
    pub claim_id: String,
    /// The notification it acts on.
    pub event_id: String,
    pub upload_id: Option<String>,
    pub workflow_id: String,
    pub workflow_name: String,
    pub sink: String,
    pub attempts: i64,
    pub payload: String,
}

/// What `GET /metrics` reports of the queue.
#[derive(Debug, Clone)]
pub struct QueueStats {
    pub counts: Vec<(String, i64)>,
    pub oldest_pending_age_ms: i64,
}

/// A trigger as stored.
#[derive(Debug, Clone)]
pub struct TriggerRow {
    pub id: String,
    pub upload_id: Option<String>,
    pub workflow: String,
    pub sink: String,
    pub state: TriggerState,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub media_id: Option<String>,
    pub next_attempt_at: i64,
    pub updated_at: i64,
}

const TRIGGER_COLUMNS: &str = "id, upload_id, workflow_name, sink, state, attempts, last_error, media_id, next_attempt_at, updated_at";

impl Store {
    /// Records the event with its upload change and triggers, unless the same object version
    /// was recorded before. Commits together with other concurrent writes.
    pub async fn record_event(&self, write: EventWrite) -> anyhow::Result<Recorded> {
        self.write(super::Write::Event(write), |w| match w {
            super::Written::Event(recorded) => Some(recorded),
            _ => None,
        })
        .await
    }

    /// Claims up to `limit` triggers due at `now` (Unix ms: pending, failed and due, or in
    /// flight with an expired lease) for `lease_ms`. Commits together with other concurrent
    /// writes.
    pub async fn claim_triggers(
        &self,
        now: i64,
        limit: u32,
        lease_ms: i64,
    ) -> anyhow::Result<Vec<Claimed>> {
        let claim = ClaimWrite {
            claim_id: uuid::Uuid::new_v4().to_string(),
            now,
            limit,
            lease_ms,
        };
        self.write(super::Write::Claim(claim), |w| match w {
            super::Written::Claimed(claimed) => Some(claimed),
            _ => None,
        })
        .await
    }

    /// Gives back the triggers of claim `claim_id` still in flight (a worker stopping with
    /// deliveries unfinished), so another instance or the next start takes them at once instead
    /// of after the lease. The interrupted attempt is not counted. Returns how many.
    pub async fn release_claim(&self, claim_id: &str) -> anyhow::Result<u64> {
        let now = now_millis();
        let r = sqlx::query(
            "UPDATE triggers SET state = 'pending', claim_id = NULL, lease_until = NULL, attempts = attempts - 1,
             next_attempt_at = $1, updated_at = $1 WHERE claim_id = $2 AND state = 'in_flight'",
        )
        .bind(now)
        .bind(claim_id)
        .execute(&self.writer)
        .await
        .context("releasing claimed triggers")?;
        Ok(r.rows_affected())
    }

    /// Records the outcome of an attempt; commits together with other concurrent writes.
    pub async fn record_outcome(&self, trigger: Claimed, outcome: Outcome) -> anyhow::Result<bool> {
        let write = super::Write::Outcome(OutcomeWrite { trigger, outcome });
        self.write(write, |w| match w {
            super::Written::Outcome(applied) => Some(applied),
            _ => None,
        })
        .await
    }

    /// Puts a `failed` or `dead` trigger back in the queue with a fresh retry budget, and
    /// records `detail` in the audit trail with the change.
    pub async fn retry_trigger(
        &self,
        id: &str,
        who: &super::Actor,
        detail: &serde_json::Value,
    ) -> anyhow::Result<Option<TriggerRow>> {
        let mut tx = self.writer.begin().await.context("requeueing trigger")?;
        let r = sqlx::query(
            "UPDATE triggers SET state = 'pending', attempts = 0, next_attempt_at = $1, updated_at = $1 WHERE id = $2 AND state IN ('failed', 'dead')",
        )
        .bind(now_millis())
        .bind(id)
        .execute(&mut *tx)
        .await
        .context("requeueing trigger")?;
        if r.rows_affected() == 0 {
            return Ok(None);
        }
        super::audit::record(&mut tx, who, "trigger.retry", id, detail)
            .await
            .context("recording the change")?;
        tx.commit().await.context("requeueing trigger")?;
        let row = self.get_trigger(id).await?;
        if let Some(upload_id) = row.as_ref().and_then(|t| t.upload_id.as_deref()) {
            let mut conn = self.writer.acquire().await?;
            let mut statements = Statements::new(&mut conn, self.backend);
            refresh_upload_states(&mut statements, &[upload_id]).await?;
            statements.send().await?;
        }
        Ok(row)
    }

    /// The notifications recorded for an object (an upload's key is its own), oldest first.
    /// Read through the (bucket, key, ETag) index, so recording events needs no other.
    pub async fn events_for_object(
        &self,
        bucket: &str,
        object_key: &str,
    ) -> anyhow::Result<Vec<EventRow>> {
        let rows = sqlx::query(
            "SELECT id, bucket, object_key, etag, size, content_type, source, upload_id, outcome, reason, received_at
             FROM events WHERE bucket = $1 AND object_key = $2 ORDER BY id",
        )
        .bind(bucket)
        .bind(object_key)
        .fetch_all(&self.reader)
        .await
        .context("reading upload events")?;
        rows.iter()
            .map(|r| {
                Ok(EventRow {
                    id: r.try_get("id")?,
                    bucket: r.try_get("bucket")?,
                    object_key: r.try_get("object_key")?,
                    etag: r.try_get("etag")?,
                    size: r.try_get("size")?,
                    content_type: r.try_get("content_type")?,
                    source: r.try_get("source")?,
                    upload_id: r.try_get("upload_id")?,
                    outcome: super::stored(r, "outcome", EventOutcome::parse)?,
                    reason: r.try_get("reason")?,
                    received_at: r.try_get("received_at")?,
                })
            })
            .collect()
    }

    /// Processes a completed upload again on an operator's request: sets its state, size and
    /// reason and queues `triggers` for `event_id`, with the audit row, in one transaction.
    /// `Ok(false)`, with nothing changed, when the upload is still `issued` or has triggers
    /// still on their way.
    pub async fn reprocess_upload(
        &self,
        write: Reprocess,
        who: &super::Actor,
        detail: &serde_json::Value,
    ) -> anyhow::Result<bool> {
        let now = now_millis();
        let mut tx = self.writer.begin().await.context("reprocessing upload")?;
        // Under PostgreSQL's READ COMMITTED, two concurrent requests would each check the
        // triggers with a snapshot taken before the other committed, and both queue work.
        // Holding the upload's row first makes the second wait, and its check then sees the
        // first one's triggers. SQLite runs one writer at a time already.
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT id FROM uploads WHERE id = $1 FOR UPDATE")
                .bind(&write.upload_id)
                .execute(&mut *tx)
                .await
                .context("reprocessing upload")?;
        }
        let updated = sqlx::query(
            "UPDATE uploads SET state = $1, state_reason = $2, size = COALESCE($3, size), updated_at = $4
             WHERE id = $5 AND state <> 'issued'
               AND NOT EXISTS (SELECT 1 FROM triggers WHERE upload_id = $5 AND state IN ('pending', 'in_flight', 'failed'))",
        )
        .bind(write.upload_state.as_str())
        .bind(&write.upload_reason)
        .bind(write.size)
        .bind(now)
        .bind(&write.upload_id)
        .execute(&mut *tx)
        .await
        .context("reprocessing upload")?;
        if updated.rows_affected() == 0 {
            return Ok(false);
        }
        let triggers: Vec<TriggerInsert> = write
            .triggers
            .iter()
            .map(|trigger| TriggerInsert {
                trigger,
                event_id: &write.event_id,
                upload_id: Some(&write.upload_id),
                now,
                held: None,
            })
            .collect();
        let mut statements = Statements::new(&mut tx, self.backend);
        insert_triggers(&mut statements, &triggers).await?;
        statements.send().await?;
        super::audit::record(&mut tx, who, "upload.reprocess", &write.upload_id, detail)
            .await
            .context("recording the change")?;
        tx.commit().await.context("reprocessing upload")?;
        Ok(true)
    }

    pub async fn get_trigger(&self, id: &str) -> anyhow::Result<Option<TriggerRow>> {
        let row = sqlx::query(&format!(
            "SELECT {TRIGGER_COLUMNS} FROM triggers WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await
        .context("reading trigger")?;
        row.as_ref().map(trigger_from_row).transpose()
    }

    pub async fn list_triggers(
        &self,
        state: TriggerState,
        limit: u32,
    ) -> anyhow::Result<Vec<TriggerRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {TRIGGER_COLUMNS} FROM triggers WHERE state = $1 ORDER BY updated_at DESC LIMIT $2"
        ))
        .bind(state.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .context("listing triggers")?;
        rows.iter().map(trigger_from_row).collect()
    }

    pub async fn triggers_for_upload(&self, upload_id: &str) -> anyhow::Result<Vec<TriggerRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {TRIGGER_COLUMNS} FROM triggers WHERE upload_id = $1 ORDER BY created_at, id"
        ))
        .bind(upload_id)
        .fetch_all(&self.reader)
        .await
        .context("reading upload triggers")?;
        rows.iter().map(trigger_from_row).collect()
    }

    /// Counts triggers by state, for tests and operators.
    /// Triggers per state, and how long the oldest one waiting (pending or failed and due
    /// for a retry) has waited, in ms (0 when none waits).
    pub async fn queue_stats(&self) -> anyhow::Result<QueueStats> {
        let counts = self.trigger_counts().await?;
        let oldest: Option<i64> = sqlx::query(
            "SELECT MIN(created_at) FROM triggers WHERE state = 'pending' OR (state = 'failed' AND next_attempt_at <= $1)",
        )
        .bind(now_millis())
        .fetch_one(&self.reader)
        .await
        .context("reading the oldest waiting trigger")?
        .try_get(0)?;
        Ok(QueueStats {
            counts,
            oldest_pending_age_ms: oldest.map_or(0, |t| (now_millis() - t).max(0)),
        })
    }

    pub async fn trigger_counts(&self) -> anyhow::Result<Vec<(String, i64)>> {
        let rows =
            sqlx::query("SELECT state, COUNT(*) FROM triggers GROUP BY state ORDER BY state")
                .fetch_all(&self.reader)
                .await
                .context("counting triggers")?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }
}

/// An event with what it does to its upload and the triggers it queues, written together.
#[derive(Debug, Clone)]
pub struct EventWrite {
    pub event: EventRow,
    /// Whether the event completes its object. The first such event for a (bucket, key)
    /// claims it; a later one is recorded as a `repeat` and its upload change and triggers
    /// are dropped.
    pub completes: bool,
    pub upload: UploadChange,
    pub upload_state: UploadState,
    pub upload_reason: Option<String>,
    /// The size the upload takes from the event; `None` keeps the declared one (while the
    /// store has not been read, the event's size is only a claim).
    pub upload_size: Option<i64>,
    pub triggers: Vec<NewTrigger>,
}

impl EventWrite {
    /// The event alone: it completes nothing and changes nothing.
    pub fn only(event: EventRow) -> EventWrite {
        EventWrite {
            event,
            completes: false,
            upload: UploadChange::None,
            upload_state: UploadState::Skipped,
            upload_reason: None,
            upload_size: None,
            triggers: Vec::new(),
        }
    }
}

#[async_trait::async_trait]
impl Batched for EventWrite {
    type Output = Recorded;
    type Started = Vec<Ticket>;

    async fn start(jobs: &[&Self], statements: &mut Statements<'_>) -> anyhow::Result<Vec<Ticket>> {
        // One statement for all events on the happy path: the unique index on (bucket, key,
        // ETag) drops a repeat of the same version, and the partial one on (bucket, key) of
        // completing events lets only the first version of an object complete it (also
        // within the batch: rows are inserted in order). On PostgreSQL a concurrent claim
        // waits for the first transaction and then does nothing.
        let rows: Vec<EventInsert> = jobs.iter().map(|j| EventInsert::as_sent(j)).collect();
        push_rows(
            statements,
            EventInsert::INSERT,
            &rows,
            " ON CONFLICT DO NOTHING",
        )
        .await
    }

    async fn finish(
        jobs: &[&Self],
        started: Vec<Ticket>,
        statements: &mut Statements<'_>,
    ) -> anyhow::Result<Vec<Recorded>> {
        let (first, later): (Vec<&EventWrite>, Vec<&EventWrite>) =
            if statements.changed(&started)? == jobs.len() {
                (jobs.to_vec(), Vec::new())
            } else {
                let inserted = inserted_events(statements, jobs).await?;
                jobs.iter().partition(|j| inserted.contains(&j.event.id))
            };
        apply_events(&first, statements).await?;
        let mut outcomes = HashMap::with_capacity(later.len());
        for job in later {
            outcomes.insert(job.event.id.as_str(), job.after_conflict(statements).await?);
        }
        Ok(jobs
            .iter()
            .map(|j| {
                outcomes
                    .remove(j.event.id.as_str())
                    .unwrap_or_else(|| Recorded::Accepted {
                        upload_id: j.event.upload_id.clone(),
                        triggers: j.triggers.len(),
                    })
            })
            .collect())
    }
}

/// An event row as inserted: whether it completes its object, with its outcome, reason and
/// upload.
struct EventInsert<'a> {
    event: &'a EventRow,
    completes: bool,
    outcome: EventOutcome,
    reason: &'a Option<String>,
    upload_id: &'a Option<String>,
}

impl<'a> EventInsert<'a> {
    fn as_sent(write: &'a EventWrite) -> Self {
        EventInsert {
            event: &write.event,
            completes: write.completes,
            outcome: write.event.outcome,
            reason: &write.event.reason,
            upload_id: &write.event.upload_id,
        }
    }
}

impl BatchRow for EventInsert<'_> {
    const INSERT: &'static str = "INSERT INTO events (id, bucket, object_key, etag, size, content_type, source, upload_id, outcome, reason, received_at, completes)";
    const COLUMNS: usize = 12;

    fn bind(&self, query: batch::Bound) -> batch::Bound {
        let e = self.event;
        query
            .bind(e.id.clone())
            .bind(e.bucket.clone())
            .bind(e.object_key.clone())
            .bind(e.etag.clone())
            .bind(e.size)
            .bind(e.content_type.clone())
            .bind(e.source.clone())
            .bind(self.upload_id.clone())
            .bind(self.outcome.as_str())
            .bind(self.reason.clone())
            .bind(e.received_at)
            .bind(i64::from(self.completes))
    }
}

impl EventWrite {
    /// The event was not inserted as sent: the same version was recorded before, or another
    /// version completed the object first.
    async fn after_conflict(&self, statements: &mut Statements<'_>) -> anyhow::Result<Recorded> {
        let event = &self.event;
        if self.completes && self.takes_over_missing(statements).await? {
            apply_events(&[self], statements).await?;
            return Ok(Recorded::Accepted {
                upload_id: event.upload_id.clone(),
                triggers: self.triggers.len(),
            });
        }
        if let Some(upload_id) = recorded_upload(statements, event, true).await? {
            return Ok(Recorded::Duplicate { upload_id });
        }
        // Another version completed the object first: this one is recorded, nothing else.
        let upload_id = recorded_upload(statements, event, false).await?.flatten();
        let reason = Some(
            "the object was completed by an earlier notification; nothing triggered".to_owned(),
        );
        let repeat = EventInsert {
            event,
            completes: false,
            outcome: EventOutcome::Repeat,
            reason: &reason,
            upload_id: &upload_id,
        };
        let tickets = push_rows(
            statements,
            EventInsert::INSERT,
            &[repeat],
            " ON CONFLICT DO NOTHING",
        )
        .await?;
        statements.send().await?;
        if statements.changed(&tickets)? == 0 {
            Ok(Recorded::Duplicate { upload_id })
        } else {
            Ok(Recorded::Repeat { upload_id })
        }
    }
}

impl EventWrite {
    /// Whether this event takes the place of its version's `missing` record (announced before
    /// the store had the object) and completes the object as a first event would, unless
    /// another version completed it meanwhile.
    async fn takes_over_missing(&self, statements: &mut Statements<'_>) -> anyhow::Result<bool> {
        let backend = statements.backend();
        let p = |n| batch::param(backend, n);
        let sql = format!(
            "UPDATE events SET id = {}, size = {}, content_type = {}, source = {}, upload_id = {},
               outcome = {}, reason = {}, received_at = {}, completes = 1
             WHERE bucket = {} AND object_key = {} AND etag = {} AND outcome = '{}'
               AND NOT EXISTS (SELECT 1 FROM events AS done WHERE done.bucket = {} AND done.object_key = {} AND done.completes = 1)",
            p(1),
            p(2),
            p(3),
            p(4),
            p(5),
            p(6),
            p(7),
            p(8),
            p(9),
            p(10),
            p(11),
            EventOutcome::Missing.as_str(),
            p(12),
            p(13)
        );
        let e = self.event.clone();
        let ticket = statements
            .push(&sql, |q| {
                q.bind(e.id)
                    .bind(e.size)
                    .bind(e.content_type)
                    .bind(e.source)
                    .bind(e.upload_id)
                    .bind(e.outcome.as_str())
                    .bind(e.reason)
                    .bind(e.received_at)
                    .bind(e.bucket.clone())
                    .bind(e.object_key.clone())
                    .bind(e.etag)
                    .bind(e.bucket)
                    .bind(e.object_key)
            })
            .await
            .context("recording an object announced again")?;
        statements.send().await?;
        Ok(statements.changed(&[ticket])? == 1)
    }
}

/// Which of `jobs`' events were inserted: those whose id is the one recorded for their
/// version.
async fn inserted_events(
    statements: &mut Statements<'_>,
    jobs: &[&EventWrite],
) -> anyhow::Result<HashSet<String>> {
    let keys: Vec<EventKey> = jobs.iter().map(|j| EventKey(&j.event)).collect();
    with_rows(
        statements,
        "SELECT events.id FROM events JOIN (",
        &keys,
        ") AS v ON events.bucket = v.column1 AND events.object_key = v.column2 AND events.etag = v.column3",
    )
    .await
    .context("reading which events were recorded")?
    .iter()
    .map(|r| r.try_get::<String, _>(0).map_err(Into::into))
    .collect()
}

/// An event's object version (the `VALUES` table of a lookup).
struct EventKey<'a>(&'a EventRow);

impl BatchRow for EventKey<'_> {
    const INSERT: &'static str = "";
    const COLUMNS: usize = 3;

    fn bind(&self, query: batch::Bound) -> batch::Bound {
        query
            .bind(self.0.bucket.clone())
            .bind(self.0.object_key.clone())
            .bind(self.0.etag.clone())
    }
}

/// The upload of the event recorded for `event`'s version (`same_version`), or else of the
/// event that completed its object: `None` when there is no such event.
async fn recorded_upload(
    statements: &mut Statements<'_>,
    event: &EventRow,
    same_version: bool,
) -> anyhow::Result<Option<Option<String>>> {
    let backend = statements.backend();
    let p = |n| batch::param(backend, n);
    let version = if same_version {
        "etag ="
    } else {
        "completes = 1 AND etag <>"
    };
    let sql = format!(
        "SELECT upload_id FROM events WHERE bucket = {} AND object_key = {} AND {version} {}",
        p(1),
        p(2),
        p(3)
    );
    let (bucket, key, etag) = (
        event.bucket.clone(),
        event.object_key.clone(),
        event.etag.clone(),
    );
    statements
        .fetch(&sql, |q| q.bind(bucket).bind(key).bind(etag))
        .await
        .context("reading a recorded event")?
        .first()
        .map(|r| r.try_get::<Option<String>, _>(0).map_err(Into::into))
        .transpose()
}

/// What recorded events do beyond their own rows: the upload changes and the triggers, a
/// statement for each kind of row whatever the number of events.
async fn apply_events(
    writes: &[&EventWrite],
    statements: &mut Statements<'_>,
) -> anyhow::Result<()> {
    let updates: Vec<UploadUpdate> = writes
        .iter()
        .filter_map(|w| match &w.upload {
            UploadChange::Existing { id } => Some(UploadUpdate {
                id,
                state: w.upload_state.as_str(),
                reason: &w.upload_reason,
                uploaded_at: w.event.received_at,
                size: w.upload_size,
            }),
            _ => None,
        })
        .collect();
    if !updates.is_empty() {
        push_rows(
            statements,
            "UPDATE uploads SET state = v.column2, state_reason = v.column3, uploaded_at = v.column4,
               size = COALESCE(v.column5, uploads.size), updated_at = v.column4 FROM (",
            &updates,
            ") AS v WHERE uploads.id = v.column1",
        )
        .await
        .context("updating uploads")?;
    }
    let new: Vec<UploadRow> = writes
        .iter()
        .filter_map(|w| match &w.upload {
            UploadChange::New(row) => Some(UploadRow {
                state: w.upload_state,
                state_reason: w.upload_reason.clone(),
                ..(**row).clone()
            }),
            _ => None,
        })
        .collect();
    if !new.is_empty() {
        insert_rows(statements, &new)
            .await
            .context("recording unannounced uploads")?;
    }
    let triggers: Vec<TriggerInsert> = writes
        .iter()
        .flat_map(|w| {
            w.triggers.iter().map(|t| TriggerInsert {
                trigger: t,
                event_id: &w.event.id,
                upload_id: w.event.upload_id.as_deref(),
                now: w.event.received_at,
                held: None,
            })
        })
        .collect();
    insert_triggers(statements, &triggers).await
}

/// An upload completed by an event (the `VALUES` table of a multi-row update).
struct UploadUpdate<'a> {
    id: &'a str,
    state: &'static str,
    reason: &'a Option<String>,
    uploaded_at: i64,
    size: Option<i64>,
}

impl BatchRow for UploadUpdate<'_> {
    const INSERT: &'static str = "";
    const COLUMNS: usize = 5;

    fn bind(&self, query: batch::Bound) -> batch::Bound {
        query
            .bind(self.id.to_owned())
            .bind(self.state)
            .bind(self.reason.clone())
            .bind(self.uploaded_at)
            .bind(self.size)
    }
}

/// What an operator's reprocessing of an upload writes.
#[derive(Debug, Clone)]
pub struct Reprocess {
    pub upload_id: String,
    /// The recorded notification the new triggers act on.
    pub event_id: String,
    pub size: Option<i64>,
    pub upload_state: UploadState,
    pub upload_reason: Option<String>,
    pub triggers: Vec<NewTrigger>,
}

/// A trigger as queued.
struct TriggerInsert<'a> {
    trigger: &'a NewTrigger,
    event_id: &'a str,
    upload_id: Option<&'a str>,
    now: i64,
    /// Written already claimed, for its first attempt: (claim id, lease end).
    held: Option<(&'a str, i64)>,
}

impl BatchRow for TriggerInsert<'_> {
    const INSERT: &'static str = "INSERT INTO triggers (id, event_id, upload_id, workflow_id, workflow_name, sink, state, attempts, next_attempt_at, payload, created_at, updated_at, claim_id, lease_until)";
    const COLUMNS: usize = 14;

    fn bind(&self, query: batch::Bound) -> batch::Bound {
        let t = self.trigger;
        let (state, attempts) = match self.held {
            Some(_) => (TriggerState::InFlight, 1_i64),
            None => (TriggerState::Pending, 0),
        };
        query
            .bind(t.id.clone())
            .bind(self.event_id.to_owned())
            .bind(self.upload_id.map(str::to_owned))
            .bind(t.workflow_id.clone())
            .bind(t.workflow_name.clone())
            .bind(t.sink.clone())
            .bind(state.as_str())
            .bind(attempts)
            .bind(self.now)
            .bind(t.payload.clone())
            .bind(self.now)
            .bind(self.now)
            .bind(self.held.map(|(claim, _)| claim.to_owned()))
            .bind(self.held.map(|(_, until)| until))
    }
}

async fn insert_triggers(
    statements: &mut Statements<'_>,
    triggers: &[TriggerInsert<'_>],
) -> anyhow::Result<()> {
    if !triggers.is_empty() {
        insert_rows(statements, triggers)
            .await
            .context("queueing triggers")?;
    }
    Ok(())
}

/// What happened to one claimed trigger.
#[derive(Debug, Clone)]
pub enum Outcome {
    Delivered {
        media_id: Option<String>,
    },
    /// `retry_at: None` makes the trigger `dead`.
    Failed {
        error: String,
        retry_at: Option<i64>,
    },
    /// A verification job finished: the upload takes the store's attributes and its state,
    /// and the triggers that follow are queued, in the same transaction.
    Verified(Box<VerifiedWrite>),
}

/// What a finished verification writes.
#[derive(Debug, Clone)]
pub struct VerifiedWrite {
    pub upload_state: UploadState,
    pub upload_reason: Option<String>,
    /// The store's size and content type (`None` when rejected before they were read).
    pub size: Option<i64>,
    pub content_type: Option<String>,
    /// For operators: why it was rejected or skipped (kept as the job's `last_error`).
    pub detail: Option<String>,
    pub triggers: Vec<NewTrigger>,
    /// The triggers are written claimed by the verification's own claim until then, for the
    /// verifying worker to deliver at once ([`Claimed::follow_ups`]): queued, they waited
    /// behind every job already due, and took a claim of their own. Should that worker stop,
    /// another takes them over when this lease ends.
    pub held_until: i64,
    /// The store had no such object: the event completed nothing (it is `missing`), and the
    /// upload is left as it was before it (`issued`; one the event created is dropped).
    pub missing: bool,
}

impl VerifiedWrite {
    /// What a verification that found no object writes.
    pub fn missing(detail: String) -> VerifiedWrite {
        VerifiedWrite {
            upload_state: UploadState::Issued,
            upload_reason: None,
            size: None,
            content_type: None,
            detail: Some(detail),
            triggers: Vec::new(),
            held_until: 0,
            missing: true,
        }
    }
}

impl Claimed {
    /// The triggers a verification wrote for this job, as claimed for their first attempt.
    pub fn follow_ups(&self, write: &VerifiedWrite) -> Vec<Claimed> {
        write
            .triggers
            .iter()
            .map(|t| Claimed {
                id: t.id.clone(),
                claim_id: self.claim_id.clone(),
                event_id: self.event_id.clone(),
                upload_id: self.upload_id.clone(),
                workflow_id: t.workflow_id.clone(),
                workflow_name: t.workflow_name.clone(),
                sink: t.sink.clone(),
                attempts: 1,
                payload: t.payload.clone(),
            })
            .collect()
    }
}

/// A claim of due triggers.
#[derive(Debug, Clone)]
pub struct ClaimWrite {
    claim_id: String,
    /// What is due is due at this time (Unix ms), the caller's.
    now: i64,
    limit: u32,
    lease_ms: i64,
}

#[async_trait::async_trait]
impl Batched for ClaimWrite {
    type Output = Vec<Claimed>;
    type Started = Vec<Ticket>;

    async fn start(jobs: &[&Self], statements: &mut Statements<'_>) -> anyhow::Result<Vec<Ticket>> {
        let backend = statements.backend();
        // PostgreSQL: SKIP LOCKED lets several instances claim side by side without waiting on
        // each other. SQLite has one writer, so the UPDATE itself is the lock.
        let lock = match backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        // Placeholders in text order (see `batch::values`): now and limit for each state,
        // then the claim id, lease, now and limit of the update.
        let p = |n| batch::param(backend, n);
        // One query per state, each reading the (state, next_attempt_at) index in order and
        // stopping at `limit`: a single query over all three (an OR) collected every due
        // trigger and sorted them, so each claim cost as much as the backlog was long and
        // delivery slowed down exactly when it fell behind.
        let sql = format!(
            "WITH pending AS (SELECT id, next_attempt_at FROM triggers WHERE state = 'pending' AND next_attempt_at <= {}
                              ORDER BY next_attempt_at LIMIT {}{lock}),
                  retry AS (SELECT id, next_attempt_at FROM triggers WHERE state = 'failed' AND next_attempt_at <= {}
                            ORDER BY next_attempt_at LIMIT {}{lock}),
                  lapsed AS (SELECT id, next_attempt_at FROM triggers WHERE state = 'in_flight' AND lease_until < {}
                             ORDER BY next_attempt_at LIMIT {}{lock})
             UPDATE triggers SET state = 'in_flight', claim_id = {}, lease_until = {}, attempts = attempts + 1, updated_at = {}
             WHERE id IN (SELECT id FROM (SELECT id, next_attempt_at FROM pending
                                          UNION ALL SELECT id, next_attempt_at FROM retry
                                          UNION ALL SELECT id, next_attempt_at FROM lapsed) AS due
                          ORDER BY next_attempt_at LIMIT {})
             RETURNING id, event_id, upload_id, workflow_id, workflow_name, sink, attempts, payload",
            p(1),
            p(2),
            p(3),
            p(4),
            p(5),
            p(6),
            p(7),
            p(8),
            p(9),
            p(10)
        );
        let mut tickets = Vec::with_capacity(jobs.len());
        for job in jobs {
            let (now, limit) = (job.now, i64::from(job.limit));
            let claim_id = job.claim_id.clone();
            let bind = |q: batch::Bound| {
                q.bind(now)
                    .bind(limit)
                    .bind(now)
                    .bind(limit)
                    .bind(now)
                    .bind(limit)
                    .bind(claim_id)
                    .bind(now + job.lease_ms)
                    .bind(now)
                    .bind(limit)
            };
            tickets.push(statements.push(&sql, bind).await?);
        }
        Ok(tickets)
    }

    async fn finish(
        jobs: &[&Self],
        started: Vec<Ticket>,
        statements: &mut Statements<'_>,
    ) -> anyhow::Result<Vec<Vec<Claimed>>> {
        jobs.iter()
            .zip(started)
            .map(|(job, ticket)| {
                statements
                    .take(ticket)
                    .context("claiming triggers")?
                    .rows
                    .iter()
                    .map(|r| {
                        Ok(Claimed {
                            id: r.try_get("id")?,
                            claim_id: job.claim_id.clone(),
                            event_id: r.try_get("event_id")?,
                            upload_id: r.try_get("upload_id")?,
                            workflow_id: r.try_get("workflow_id")?,
                            workflow_name: r.try_get("workflow_name")?,
                            sink: r.try_get("sink")?,
                            attempts: r.try_get("attempts")?,
                            payload: r.try_get("payload")?,
                        })
                    })
                    .collect()
            })
            .collect()
    }
}

/// Records an attempt's outcome and the upload state that follows from it.
#[derive(Debug, Clone)]
pub struct OutcomeWrite {
    pub trigger: Claimed,
    pub outcome: Outcome,
}

#[async_trait::async_trait]
impl Batched for OutcomeWrite {
    /// `false` when the claim was lost (its lease ran out and another worker took it over).
    type Output = bool;
    type Started = (Vec<Ticket>, i64);

    async fn start(
        jobs: &[&Self],
        statements: &mut Statements<'_>,
    ) -> anyhow::Result<(Vec<Ticket>, i64)> {
        let now = now_millis();
        let rows: Vec<AttemptUpdate> = jobs.iter().map(|j| AttemptUpdate::of(j, now)).collect();
        let tickets = push_rows(
            statements,
            "UPDATE triggers SET state = v.column3, last_error = v.column4,
               media_id = COALESCE(v.column5, triggers.media_id),
               next_attempt_at = COALESCE(v.column6, triggers.next_attempt_at),
               delivered_at = COALESCE(v.column7, triggers.delivered_at),
               lease_until = NULL, updated_at = v.column8 FROM (",
            &rows,
            ") AS v WHERE triggers.id = v.column1 AND triggers.claim_id = v.column2 AND triggers.state = 'in_flight'",
        )
        .await
        .context("recording attempts")?;
        Ok((tickets, now))
    }

    async fn finish(
        jobs: &[&Self],
        (started, now): (Vec<Ticket>, i64),
        statements: &mut Statements<'_>,
    ) -> anyhow::Result<Vec<bool>> {
        // Each job updates its own trigger or nothing, so a count short of the batch means some
        // claims were lost (their lease ran out), and only a job alone can tell which.
        let applied = match (statements.changed(&started)? == jobs.len(), jobs.len()) {
            (true, _) => true,
            (false, 1) => false,
            (false, _) => return Err(batch::SplitBatch.into()),
        };
        let verified: Vec<(&Claimed, &VerifiedWrite)> = jobs
            .iter()
            .filter(|_| applied)
            .filter_map(|j| match &j.outcome {
                Outcome::Verified(v) => Some((&j.trigger, &**v)),
                _ => None,
            })
            .collect();
        apply_verified(&verified, statements, now).await?;
        let mut uploads: Vec<&str> = jobs
            .iter()
            .filter_map(|j| j.trigger.upload_id.as_deref())
            .collect();
        uploads.sort_unstable();
        uploads.dedup();
        refresh_upload_states(statements, &uploads).await?;
        Ok(vec![applied; jobs.len()])
    }
}

/// A trigger's row after an attempt (the `VALUES` table of a multi-row update).
struct AttemptUpdate<'a> {
    id: &'a str,
    claim_id: &'a str,
    state: &'static str,
    last_error: Option<&'a str>,
    media_id: Option<&'a str>,
    next_attempt_at: Option<i64>,
    delivered_at: Option<i64>,
    now: i64,
}

impl<'a> AttemptUpdate<'a> {
    fn of(write: &'a OutcomeWrite, now: i64) -> Self {
        let t = &write.trigger;
        let row = AttemptUpdate {
            id: &t.id,
            claim_id: &t.claim_id,
            state: TriggerState::Delivered.as_str(),
            last_error: None,
            media_id: None,
            next_attempt_at: None,
            delivered_at: Some(now),
            now,
        };
        match &write.outcome {
            Outcome::Delivered { media_id } => AttemptUpdate {
                media_id: media_id.as_deref(),
                ..row
            },
            Outcome::Failed { error, retry_at } => AttemptUpdate {
                state: if retry_at.is_some() {
                    TriggerState::Failed.as_str()
                } else {
                    TriggerState::Dead.as_str()
                },
                last_error: Some(error),
                next_attempt_at: Some(retry_at.unwrap_or(now)),
                delivered_at: None,
                ..row
            },
            Outcome::Verified(v) => AttemptUpdate {
                last_error: v.detail.as_deref(),
                ..row
            },
        }
    }
}

impl BatchRow for AttemptUpdate<'_> {
    const INSERT: &'static str = "";
    const COLUMNS: usize = 8;

    fn bind(&self, query: batch::Bound) -> batch::Bound {
        query
            .bind(self.id.to_owned())
            .bind(self.claim_id.to_owned())
            .bind(self.state)
            .bind(self.last_error.map(str::to_owned))
            .bind(self.media_id.map(str::to_owned))
            .bind(self.next_attempt_at)
            .bind(self.delivered_at)
            .bind(self.now)
    }
}

/// What finished verifications write beyond their jobs: the triggers that follow and the
/// store's attributes on the uploads.
async fn apply_verified(
    verified: &[(&Claimed, &VerifiedWrite)],
    statements: &mut Statements<'_>,
    now: i64,
) -> anyhow::Result<()> {
    let triggers: Vec<TriggerInsert> = verified
        .iter()
        .flat_map(|(job, v)| {
            v.triggers.iter().map(|trigger| TriggerInsert {
                trigger,
                event_id: &job.event_id,
                upload_id: job.upload_id.as_deref(),
                now,
                held: Some((&job.claim_id, v.held_until)),
            })
        })
        .collect();
    insert_triggers(statements, &triggers).await?;
    for (job, v) in verified.iter().filter(|(_, v)| v.missing) {
        record_missing(statements, job, v, now).await?;
    }
    let uploads: Vec<VerifiedUpload> = verified
        .iter()
        .filter(|(_, v)| !v.missing)
        .filter_map(|(job, v)| {
            Some(VerifiedUpload {
                id: job.upload_id.as_deref()?,
                write: v,
                now,
            })
        })
        .collect();
    if !uploads.is_empty() {
        push_rows(
            statements,
            "UPDATE uploads SET state = v.column2, state_reason = v.column3,
               size = COALESCE(v.column4, uploads.size),
               content_type = COALESCE(v.column5, uploads.content_type), updated_at = v.column6 FROM (",
            &uploads,
            ") AS v WHERE uploads.id = v.column1 AND uploads.state = 'uploaded'",
        )
        .await
        .context("recording the verified uploads")?;
    }
    Ok(())
}

/// A verification that found no object: its event completed nothing (so the next event for
/// the object, even of the same version, is processed as the first), and its upload goes back
/// to `issued`, or away if the event created it, unless it was processed before (an
/// operator's reprocessing), when the states of its triggers decide as ever. Rare, so one
/// statement at a time.
async fn record_missing(
    statements: &mut Statements<'_>,
    job: &Claimed,
    write: &VerifiedWrite,
    now: i64,
) -> anyhow::Result<()> {
    let backend = statements.backend();
    let p = |n| batch::param(backend, n);
    // An operator's reprocessing verifies again under the event that completed the object
    // long ago: that one stays as it is.
    let sql = format!(
        "UPDATE events SET outcome = '{}', completes = 0, reason = {} WHERE id = {}
           AND NOT EXISTS (SELECT 1 FROM triggers WHERE triggers.upload_id = {} AND triggers.sink <> 'verify')",
        EventOutcome::Missing.as_str(),
        p(1),
        p(2),
        p(3)
    );
    let (reason, event, upload) = (
        write.detail.clone(),
        job.event_id.clone(),
        job.upload_id.clone(),
    );
    statements
        .push(&sql, |q| q.bind(reason).bind(event).bind(upload))
        .await
        .context("recording a missing object")?;
    let Some(upload) = job.upload_id.clone() else {
        return Ok(());
    };
    let never_processed = "NOT EXISTS (SELECT 1 FROM triggers WHERE triggers.upload_id = uploads.id AND triggers.sink <> 'verify')";
    let sql = format!(
        "UPDATE uploads SET state = 'issued', state_reason = NULL, uploaded_at = NULL, updated_at = {}
         WHERE id = {} AND state = 'uploaded' AND mode <> 'external' AND {never_processed}",
        p(1),
        p(2)
    );
    let id = upload.clone();
    statements
        .push(&sql, |q| q.bind(now).bind(id))
        .await
        .context("reopening an upload")?;
    let sql = format!(
        "DELETE FROM uploads WHERE id = {} AND state = 'uploaded' AND mode = 'external' AND {never_processed}",
        p(1)
    );
    let id = upload.clone();
    statements
        .push(&sql, |q| q.bind(id))
        .await
        .context("dropping an upload nobody made")?;
    for table in ["events", "triggers"] {
        let sql = format!(
            "UPDATE {table} SET upload_id = NULL WHERE upload_id = {} AND NOT EXISTS (SELECT 1 FROM uploads WHERE id = {})",
            p(1),
            p(2)
        );
        let (a, b) = (upload.clone(), upload.clone());
        statements
            .push(&sql, |q| q.bind(a).bind(b))
            .await
            .context("unlinking a dropped upload")?;
    }
    Ok(())
}

struct VerifiedUpload<'a> {
    id: &'a str,
    write: &'a VerifiedWrite,
    now: i64,
}

impl BatchRow for VerifiedUpload<'_> {
    const INSERT: &'static str = "";
    const COLUMNS: usize = 6;

    fn bind(&self, query: batch::Bound) -> batch::Bound {
        let v = self.write;
        query
            .bind(self.id.to_owned())
            .bind(v.upload_state.as_str())
            .bind(v.upload_reason.clone())
            .bind(v.size)
            .bind(v.content_type.clone())
            .bind(self.now)
    }
}

/// `triggered` once every trigger of an upload is delivered, `failed` when one is dead,
/// `uploaded` while any is still on its way.
async fn refresh_upload_states(
    statements: &mut Statements<'_>,
    upload_ids: &[&str],
) -> anyhow::Result<()> {
    if upload_ids.is_empty() {
        return Ok(());
    }
    let backend = statements.backend();
    let ids = batch::values(backend, 2, 1, upload_ids.len());
    let bind_ids = |mut q: batch::Bound| {
        for id in upload_ids {
            q = q.bind((*id).to_owned());
        }
        q
    };
    if backend == Backend::Postgres {
        // Lock the upload rows first. Two outcomes for the same upload committing side by side
        // (PostgreSQL runs several lanes) would otherwise each read the other's trigger as
        // still pending and leave the upload `uploaded` for good; once the lock is held, the
        // next statement sees whatever the other transaction committed. SQLite has one writer.
        let sql = format!("UPDATE uploads SET updated_at = $1 WHERE id IN {ids}");
        statements
            .push(&sql, |q| bind_ids(q.bind(now_millis())))
            .await
            .context("locking uploads")?;
    }
    // Placeholders in text order: SQLite's driver numbers each `?` after the last `?`.
    let now = batch::param(backend, 1);
    let sql = format!(
        "UPDATE uploads SET state = CASE
             WHEN EXISTS (SELECT 1 FROM triggers WHERE triggers.upload_id = uploads.id AND triggers.state = 'dead') THEN 'failed'
             WHEN NOT EXISTS (SELECT 1 FROM triggers WHERE triggers.upload_id = uploads.id AND triggers.state <> 'delivered') THEN 'triggered'
             ELSE 'uploaded' END,
           updated_at = {now}
         WHERE id IN {ids} AND state IN ('uploaded', 'triggered', 'failed')"
    );
    statements
        .push(&sql, |q| bind_ids(q.bind(now_millis())))
        .await
        .context("updating upload states")?;
    Ok(())
}

fn trigger_from_row(r: &sqlx::any::AnyRow) -> anyhow::Result<TriggerRow> {
    Ok(TriggerRow {
        id: r.try_get("id")?,
        upload_id: r.try_get("upload_id")?,
        workflow: r.try_get("workflow_name")?,
        sink: r.try_get("sink")?,
        state: super::stored(r, "state", TriggerState::parse)?,
        attempts: r.try_get("attempts")?,
        last_error: r.try_get("last_error")?,
        media_id: r.try_get("media_id")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}
