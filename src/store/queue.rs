//! Object events and the trigger queue. An event, the upload it completes and its triggers are
//! written in one transaction, before the notification is answered; workers claim due
//! triggers with a lease, so a crashed worker's claims are taken over when the lease ends.

use anyhow::Context;
use sqlx::Row;

use sqlx::AnyConnection;

use super::batch::{BatchRow, TxJob};
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
        self.transactions.submit(write).await
    }

    /// Claims up to `limit` due triggers (pending, failed and due, or in flight with an
    /// expired lease) for `lease_ms`.
    pub async fn claim_triggers(&self, limit: u32, lease_ms: i64) -> anyhow::Result<Vec<Claimed>> {
        let claim_id = uuid::Uuid::new_v4().to_string();
        let now = now_millis();
        // PostgreSQL: SKIP LOCKED lets several instances claim side by side without waiting on
        // each other. SQLite has one writer, so the UPDATE itself is the lock.
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let rows = sqlx::query(&format!(
            "UPDATE triggers SET state = 'in_flight', claim_id = $1, lease_until = $2, attempts = attempts + 1, updated_at = $3
             WHERE id IN (SELECT id FROM triggers
                          WHERE (state IN ('pending', 'failed') AND next_attempt_at <= $3) OR (state = 'in_flight' AND lease_until < $3)
                          ORDER BY next_attempt_at LIMIT $4{lock})
             RETURNING id, upload_id, workflow_id, workflow_name, sink, attempts, payload"
        ))
        .bind(&claim_id)
        .bind(now + lease_ms)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.writer)
        .await
        .context("claiming triggers")?;
        rows.iter()
            .map(|r| {
                Ok(Claimed {
                    id: r.try_get("id")?,
                    claim_id: claim_id.clone(),
                    upload_id: r.try_get("upload_id")?,
                    workflow_id: r.try_get("workflow_id")?,
                    workflow_name: r.try_get("workflow_name")?,
                    sink: r.try_get("sink")?,
                    attempts: r.try_get("attempts")?,
                    payload: r.try_get("payload")?,
                })
            })
            .collect()
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
        self.transactions
            .submit(OutcomeWrite { trigger, outcome })
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
            refresh_upload_state(&mut conn, upload_id).await?;
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
        for t in &write.triggers {
            insert_trigger(&mut tx, t, &write.event_id, Some(&write.upload_id), now).await?;
        }
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
impl TxJob for EventWrite {
    type Output = Recorded;

    async fn run(&self, conn: &mut AnyConnection) -> anyhow::Result<Recorded> {
        let event = &self.event;
        // One statement on the happy path: the unique index on (bucket, key, ETag) drops a
        // repeat of the same version, and the partial one on (bucket, key) of completing
        // events lets only the first version of an object complete it. On PostgreSQL a
        // concurrent claim waits for the first transaction and then does nothing.
        if insert_event(
            conn,
            event,
            self.completes,
            event.outcome,
            &event.reason,
            &event.upload_id,
        )
        .await?
        {
            return self.apply(conn).await;
        }
        if let Some(upload_id) = recorded_upload(
            conn,
            "SELECT upload_id FROM events WHERE bucket = $1 AND object_key = $2 AND etag = $3",
            event,
        )
        .await?
        {
            return Ok(Recorded::Duplicate { upload_id });
        }
        // Another version completed the object first: this one is recorded, nothing else.
        let upload_id = recorded_upload(
            conn,
            "SELECT upload_id FROM events WHERE bucket = $1 AND object_key = $2 AND completes = 1 AND etag <> $3",
            event,
        )
        .await?
        .flatten();
        let reason = Some(
            "the object was completed by an earlier notification; nothing triggered".to_owned(),
        );
        if insert_event(
            conn,
            event,
            false,
            EventOutcome::Repeat,
            &reason,
            &upload_id,
        )
        .await?
        {
            Ok(Recorded::Repeat { upload_id })
        } else {
            Ok(Recorded::Duplicate { upload_id })
        }
    }
}

/// Inserts `event` (as completing its object or not, with `outcome`, `reason` and
/// `upload_id`); `false` when a unique index already holds it.
async fn insert_event(
    conn: &mut AnyConnection,
    event: &EventRow,
    completes: bool,
    outcome: EventOutcome,
    reason: &Option<String>,
    upload_id: &Option<String>,
) -> anyhow::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO events (id, bucket, object_key, etag, size, content_type, source, upload_id, outcome, reason, received_at, completes)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING",
    )
    .bind(&event.id)
    .bind(&event.bucket)
    .bind(&event.object_key)
    .bind(&event.etag)
    .bind(event.size)
    .bind(&event.content_type)
    .bind(&event.source)
    .bind(upload_id)
    .bind(outcome.as_str())
    .bind(reason)
    .bind(event.received_at)
    .bind(i64::from(completes))
    .execute(conn)
    .await
    .context("recording event")?;
    Ok(inserted.rows_affected() == 1)
}

/// The upload of the event `sql` finds for `event`'s bucket, key and ETag (`$1`-`$3`):
/// `None` when there is no such event.
async fn recorded_upload(
    conn: &mut AnyConnection,
    sql: &str,
    event: &EventRow,
) -> anyhow::Result<Option<Option<String>>> {
    sqlx::query(sql)
        .bind(&event.bucket)
        .bind(&event.object_key)
        .bind(&event.etag)
        .fetch_optional(conn)
        .await
        .context("reading a recorded event")?
        .map(|r| r.try_get::<Option<String>, _>(0).map_err(Into::into))
        .transpose()
}

impl EventWrite {
    /// What a recorded event does beyond its own row: the upload change and the triggers.
    async fn apply(&self, conn: &mut AnyConnection) -> anyhow::Result<Recorded> {
        let event = &self.event;
        match &self.upload {
            UploadChange::Existing { id } => {
                sqlx::query(
                    "UPDATE uploads SET state = $1, state_reason = $2, uploaded_at = $3, size = COALESCE($4, size), updated_at = $5 WHERE id = $6",
                )
                .bind(self.upload_state.as_str())
                .bind(&self.upload_reason)
                .bind(event.received_at)
                .bind(self.upload_size)
                .bind(event.received_at)
                .bind(id)
                .execute(&mut *conn)
                .await
                .context("updating upload")?;
            }
            UploadChange::New(row) => {
                let row = UploadRow {
                    state: self.upload_state,
                    state_reason: self.upload_reason.clone(),
                    ..(**row).clone()
                };
                let sql = format!(
                    "{} VALUES ({})",
                    UploadRow::INSERT,
                    super::placeholders(1, UploadRow::COLUMNS)
                );
                row.bind(sqlx::query(&sql))
                    .execute(&mut *conn)
                    .await
                    .context("recording unannounced upload")?;
            }
            UploadChange::None => {}
        }
        for t in &self.triggers {
            insert_trigger(
                &mut *conn,
                t,
                &event.id,
                event.upload_id.as_deref(),
                event.received_at,
            )
            .await?;
        }
        Ok(Recorded::Accepted {
            upload_id: event.upload_id.clone(),
            triggers: self.triggers.len(),
        })
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

async fn insert_trigger(
    conn: &mut AnyConnection,
    t: &NewTrigger,
    event_id: &str,
    upload_id: Option<&str>,
    now: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO triggers (id, event_id, upload_id, workflow_id, workflow_name, sink, state, attempts, next_attempt_at, payload, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $8, $7, $7)",
    )
    .bind(&t.id)
    .bind(event_id)
    .bind(upload_id)
    .bind(&t.workflow_id)
    .bind(&t.workflow_name)
    .bind(&t.sink)
    .bind(now)
    .bind(&t.payload)
    .execute(conn)
    .await
    .context("queueing trigger")?;
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
}

impl VerifiedWrite {
    async fn apply(&self, conn: &mut AnyConnection, job: &Claimed, now: i64) -> anyhow::Result<()> {
        let event_id: String = sqlx::query("SELECT event_id FROM triggers WHERE id = $1")
            .bind(&job.id)
            .fetch_one(&mut *conn)
            .await
            .context("reading the verified event")?
            .try_get(0)?;
        for trigger in &self.triggers {
            insert_trigger(conn, trigger, &event_id, job.upload_id.as_deref(), now).await?;
        }
        if let Some(upload_id) = &job.upload_id {
            sqlx::query(
                "UPDATE uploads SET state = $1, state_reason = $2, size = COALESCE($3, size),
                   content_type = COALESCE($4, content_type), updated_at = $5
                 WHERE id = $6 AND state = 'uploaded'",
            )
            .bind(self.upload_state.as_str())
            .bind(&self.upload_reason)
            .bind(self.size)
            .bind(&self.content_type)
            .bind(now)
            .bind(upload_id)
            .execute(&mut *conn)
            .await
            .context("recording the verified upload")?;
        }
        Ok(())
    }
}

/// Records an attempt's outcome and the upload state that follows from it.
#[derive(Debug, Clone)]
pub struct OutcomeWrite {
    pub trigger: Claimed,
    pub outcome: Outcome,
}

#[async_trait::async_trait]
impl TxJob for OutcomeWrite {
    /// `false` when the claim was lost (its lease ran out and another worker took it over).
    type Output = bool;

    async fn run(&self, conn: &mut AnyConnection) -> anyhow::Result<bool> {
        let t = &self.trigger;
        let now = now_millis();
        let result = match &self.outcome {
            Outcome::Delivered { media_id } => sqlx::query(
                "UPDATE triggers SET state = 'delivered', media_id = $1, delivered_at = $2, updated_at = $2, lease_until = NULL, last_error = NULL
                 WHERE id = $3 AND claim_id = $4 AND state = 'in_flight'",
            )
            .bind(media_id)
            .bind(now)
            .bind(&t.id)
            .bind(&t.claim_id)
            .execute(&mut *conn)
            .await
            .context("recording delivery")?,
            Outcome::Failed { error, retry_at } => sqlx::query(
                "UPDATE triggers SET state = $1, last_error = $2, next_attempt_at = $3, lease_until = NULL, updated_at = $4
                 WHERE id = $5 AND claim_id = $6 AND state = 'in_flight'",
            )
            .bind(if retry_at.is_some() { "failed" } else { "dead" })
            .bind(error)
            .bind(retry_at.unwrap_or(now))
            .bind(now)
            .bind(&t.id)
            .bind(&t.claim_id)
            .execute(&mut *conn)
            .await
            .context("recording failed attempt")?,
            Outcome::Verified(v) => {
                let done = sqlx::query(
                    "UPDATE triggers SET state = 'delivered', delivered_at = $1, updated_at = $1, lease_until = NULL, last_error = $2
                     WHERE id = $3 AND claim_id = $4 AND state = 'in_flight'",
                )
                .bind(now)
                .bind(&v.detail)
                .bind(&t.id)
                .bind(&t.claim_id)
                .execute(&mut *conn)
                .await
                .context("recording verification")?;
                if done.rows_affected() == 1 {
                    v.apply(conn, t, now).await?;
                }
                done
            }
        };
        if let Some(upload_id) = &t.upload_id {
            refresh_upload_state(conn, upload_id).await?;
        }
        Ok(result.rows_affected() == 1)
    }
}

/// `triggered` once every trigger of the upload is delivered, `failed` when one is dead,
/// `uploaded` while any is still on its way.
async fn refresh_upload_state(conn: &mut AnyConnection, upload_id: &str) -> anyhow::Result<()> {
    // Lock the upload row first. Two outcomes for the same upload committing side by side
    // (PostgreSQL runs several lanes) would otherwise each read the other's trigger as still
    // pending and leave the upload `uploaded` for good; once the lock is held, the next
    // statement sees whatever the other transaction committed.
    sqlx::query("UPDATE uploads SET updated_at = $1 WHERE id = $2")
        .bind(now_millis())
        .bind(upload_id)
        .execute(&mut *conn)
        .await
        .context("locking upload")?;
    sqlx::query(
        "UPDATE uploads SET state = CASE
             WHEN EXISTS (SELECT 1 FROM triggers WHERE upload_id = $1 AND state = 'dead') THEN 'failed'
             WHEN NOT EXISTS (SELECT 1 FROM triggers WHERE upload_id = $1 AND state <> 'delivered') THEN 'triggered'
             ELSE 'uploaded' END,
           updated_at = $2
         WHERE id = $1 AND state IN ('uploaded', 'triggered', 'failed')",
    )
    .bind(upload_id)
    .bind(now_millis())
    .execute(conn)
    .await
    .context("updating upload state")?;
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
