//! The trigger queue: one row per delivery to a workflow (or verification of an object).
//! Workers claim due triggers with a lease, so a crashed worker's claims are taken over
//! when the lease ends; operators list and retry them.

use anyhow::Context;
use sqlx::Row;

use super::batch::{self, BatchRow, Batched, Statements, Ticket, insert_rows};
use super::{Backend, Store, now_millis};
use crate::kinds::{ProcessingState, Reason, TriggerSink, TriggerState};
#[derive(Debug, Clone)]
pub struct NewTrigger {
    pub id: String,
    pub workflow_id: String,
    pub workflow_name: String,
    pub sink: TriggerSink,
    /// JSON of the delivery a sink needs (the processing module's `Delivery`).
    pub payload: String,
    /// Whether its outcome is followed once it is delivered (its workflow's `track_outcome`).
    pub tracks_outcome: bool,
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
    pub sink: TriggerSink,
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
    pub sink: TriggerSink,
    pub state: TriggerState,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub media_id: Option<String>,
    pub next_attempt_at: i64,
    pub updated_at: i64,
    /// Its processing once delivered (`untracked` when its workflow does not follow it).
    pub processing: ProcessingState,
    /// Why its processing failed.
    pub processing_reason: Option<Reason>,
}

const TRIGGER_COLUMNS: &str = "id, upload_id, workflow_name, sink, state, attempts, last_error, media_id, next_attempt_at, updated_at, outcome, outcome_reason";

impl Store {
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

    /// Makes `types` the lifecycle events the database queues with each upload change (see
    /// `migrations/*/0008_lifecycle_events.sql`): the running configuration's, so none when it
    /// has no receiver.
    pub async fn subscribe_events(&self, types: &[String]) -> anyhow::Result<()> {
        let mut tx = self.writer.begin().await.context("subscribing to events")?;
        sqlx::query("DELETE FROM event_types")
            .execute(&mut *tx)
            .await
            .context("subscribing to events")?;
        for t in types {
            // Instances starting side by side each write the list: the same rows.
            sqlx::query("INSERT INTO event_types (type) VALUES ($1) ON CONFLICT (type) DO NOTHING")
                .bind(t)
                .execute(&mut *tx)
                .await
                .context("subscribing to events")?;
        }
        tx.commit().await.context("subscribing to events")
    }

    /// The lifecycle events queued for upload `upload_id`, oldest first.
    pub async fn events_for_upload(&self, upload_id: &str) -> anyhow::Result<Vec<TriggerRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {TRIGGER_COLUMNS} FROM triggers WHERE event_id = $1 AND sink = 'events' ORDER BY created_at, id"
        ))
        .bind(upload_id)
        .fetch_all(&self.reader)
        .await
        .context("reading upload events")?;
        rows.iter().map(trigger_from_row).collect()
    }

    /// Counts triggers by state, for tests and operators.
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

/// A trigger as queued.
pub(super) struct TriggerInsert<'a> {
    pub(super) trigger: &'a NewTrigger,
    pub(super) event_id: &'a str,
    pub(super) upload_id: Option<&'a str>,
    pub(super) now: i64,
    /// Written already claimed, for its first attempt: (claim id, lease end).
    pub(super) held: Option<(&'a str, i64)>,
}

impl BatchRow for TriggerInsert<'_> {
    const INSERT: &'static str = "INSERT INTO triggers (id, event_id, upload_id, workflow_id, workflow_name, sink, state, attempts, next_attempt_at, payload, created_at, updated_at, claim_id, lease_until, tracks_outcome)";
    const COLUMNS: usize = 15;

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
            .bind(t.sink.as_str())
            .bind(state.as_str())
            .bind(attempts)
            .bind(self.now)
            .bind(t.payload.clone())
            .bind(self.now)
            .bind(self.now)
            .bind(self.held.map(|(claim, _)| claim.to_owned()))
            .bind(self.held.map(|(_, until)| until))
            .bind(i64::from(t.tracks_outcome))
    }
}

pub(super) async fn insert_triggers(
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
                            sink: super::stored(r, "sink", TriggerSink::parse)?,
                            attempts: r.try_get("attempts")?,
                            payload: r.try_get("payload")?,
                        })
                    })
                    .collect()
            })
            .collect()
    }
}

fn trigger_from_row(r: &sqlx::any::AnyRow) -> anyhow::Result<TriggerRow> {
    Ok(TriggerRow {
        id: r.try_get("id")?,
        upload_id: r.try_get("upload_id")?,
        workflow: r.try_get("workflow_name")?,
        sink: super::stored(r, "sink", TriggerSink::parse)?,
        state: super::stored(r, "state", TriggerState::parse)?,
        attempts: r.try_get("attempts")?,
        last_error: r.try_get("last_error")?,
        media_id: r.try_get("media_id")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        updated_at: r.try_get("updated_at")?,
        processing: super::stored_opt(r, "outcome", ProcessingState::parse)?
            .unwrap_or(ProcessingState::Untracked),
        processing_reason: super::stored_opt(r, "outcome_reason", Reason::parse)?,
    })
}
