//! What an attempt came to, and the upload state that follows: delivery outcomes, a
//! verification's verdict with the triggers it queues, an object found missing, and an
//! operator's retry or reprocessing, each in the transaction of its trigger's state change.

use anyhow::Context;

use super::batch::{self, BatchRow, Batched, Statements, Ticket, push_rows};
use super::triggers::{Claimed, NewTrigger, TriggerInsert, TriggerRow, insert_triggers};
use super::{Backend, Store, now_millis};
use crate::kinds::{EventOutcome, Reason, TriggerState, UploadState};
impl Store {
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
               AND NOT EXISTS (SELECT 1 FROM triggers WHERE upload_id = $5
                               AND (state IN ('pending', 'in_flight', 'failed') OR outcome IN ('pending', 'running')))",
        )
        .bind(write.upload_state.as_str())
        .bind(write.upload_reason.map(Reason::as_str))
        .bind(write.size)
        .bind(now)
        .bind(&write.upload_id)
        .execute(&mut *tx)
        .await
        .context("reprocessing upload")?;
        if updated.rows_affected() == 0 {
            return Ok(false);
        }
        // The new triggers decide the upload's state now: the earlier ones (kept for the
        // record) and their outputs no longer count.
        sqlx::query(
            "UPDATE triggers SET outcome = NULL, outcome_reason = NULL WHERE upload_id = $1",
        )
        .bind(&write.upload_id)
        .execute(&mut *tx)
        .await
        .context("reprocessing upload")?;
        sqlx::query("DELETE FROM outputs WHERE upload_id = $1")
            .bind(&write.upload_id)
            .execute(&mut *tx)
            .await
            .context("reprocessing upload")?;
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
}

/// What an operator's reprocessing of an upload writes.
#[derive(Debug, Clone)]
pub struct Reprocess {
    pub upload_id: String,
    /// The recorded notification the new triggers act on.
    pub event_id: String,
    pub size: Option<i64>,
    pub upload_state: UploadState,
    pub upload_reason: Option<Reason>,
    pub triggers: Vec<NewTrigger>,
}

/// What happened to one claimed trigger.
#[derive(Debug, Clone)]
pub enum Outcome {
    Delivered {
        media_id: Option<String>,
        /// The processor's runs to follow (MPS `RunId`s), when the trigger tracks its outcome,
        /// first looked up at `first_look_at` (Unix ms).
        run_ids: Vec<String>,
        first_look_at: i64,
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
    pub upload_reason: Option<Reason>,
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
                sink: t.sink,
                attempts: 1,
                payload: t.payload.clone(),
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
        let delivered: Vec<&OutcomeWrite> = jobs
            .iter()
            .filter(|_| applied)
            .filter(|j| matches!(j.outcome, Outcome::Delivered { .. }))
            .copied()
            .collect();
        super::runs::open_outcomes(statements, &delivered, now).await?;
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
            Outcome::Delivered { media_id, .. } => AttemptUpdate {
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
            .bind(v.upload_reason.map(Reason::as_str))
            .bind(v.size)
            .bind(v.content_type.clone())
            .bind(self.now)
    }
}

/// The upload state its triggers give each of `upload_ids`: the rule of
/// `uploads::state_after_triggers`, in SQL (a test holds the two together).
pub(super) async fn refresh_upload_states(
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
    let mine = "SELECT 1 FROM triggers WHERE triggers.upload_id = uploads.id AND triggers.superseded = 0 AND";
    let sql = format!(
        "UPDATE uploads SET state = CASE
             WHEN EXISTS ({mine} triggers.state = 'dead') THEN 'failed'
             WHEN EXISTS ({mine} triggers.state <> 'delivered') THEN 'uploaded'
             WHEN EXISTS ({mine} triggers.outcome IN ('failed', 'timed_out')) THEN 'failed'
             WHEN EXISTS ({mine} triggers.outcome IN ('pending', 'running')) THEN 'processing'
             WHEN EXISTS ({mine} triggers.outcome = 'succeeded') THEN 'ready'
             ELSE 'triggered' END,
           state_reason = CASE
             WHEN NOT EXISTS ({mine} triggers.state <> 'delivered')
              AND EXISTS ({mine} triggers.outcome IN ('failed', 'timed_out'))
             THEN (SELECT MIN(triggers.outcome_reason) FROM triggers
                   WHERE triggers.upload_id = uploads.id AND triggers.superseded = 0
                     AND triggers.outcome IN ('failed', 'timed_out'))
             ELSE uploads.state_reason END,
           updated_at = {now}
         WHERE id IN {ids} AND state IN ('uploaded', 'triggered', 'processing', 'ready', 'failed')"
    );
    statements
        .push(&sql, |q| bind_ids(q.bind(now_millis())))
        .await
        .context("updating upload states")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{event, temp_store};
    use super::*;
    use crate::store::now_millis;

    #[tokio::test]
    async fn outcomes_written_together_apply_only_to_claims_still_held() {
        let (_dir, store) = temp_store().await;
        for i in 0..6 {
            let key = format!("uploads/alice/x/{i}.mp4");
            store.record_event(event(&key, "A", None)).await.unwrap();
        }
        // The first claim's lease has run out when the second claim takes its triggers over.
        let lapsed = store.claim_triggers(now_millis(), 3, -1_000).await.unwrap();
        let current = store.claim_triggers(now_millis(), 6, 60_000).await.unwrap();
        assert_eq!((lapsed.len(), current.len()), (3, 6));
        let held = current
            .iter()
            .filter(|c| lapsed.iter().all(|l| l.id != c.id));
        // Sent together, lost and held claims alternating, so that batches mix them.
        let claims: Vec<Claimed> = lapsed
            .iter()
            .zip(held)
            .flat_map(|(l, h)| [l.clone(), h.clone()])
            .collect();
        let results = futures::future::join_all(claims.into_iter().map(|c| {
            store.record_outcome(
                c,
                Outcome::Delivered {
                    media_id: None,
                    run_ids: Vec::new(),
                    first_look_at: 0,
                },
            )
        }))
        .await;
        let results: Vec<bool> = results.into_iter().map(Result::unwrap).collect();
        assert_eq!(results, [false, true].repeat(3));
        let counts = store.trigger_counts().await.unwrap();
        assert_eq!(
            counts,
            vec![("delivered".to_owned(), 3), ("in_flight".to_owned(), 3)]
        );
    }

    /// A verification's triggers are written claimed by it: no other claim takes them while
    /// the hold lasts, and once it has lapsed (the verifying worker vanished) any claim does,
    /// as their second attempt.
    #[tokio::test]
    async fn verified_triggers_are_held_for_their_verifier_until_the_lease_ends() {
        for (lease_ms, taken_over) in [(60_000, false), (-1_000, true)] {
            let (_dir, store) = temp_store().await;
            store
                .record_event(event("uploads/alice/x/a.mp4", "A", None))
                .await
                .unwrap();
            let job = store
                .claim_triggers(now_millis(), 1, 60_000)
                .await
                .unwrap()
                .remove(0);
            let follow_up = NewTrigger {
                id: uuid::Uuid::now_v7().to_string(),
                workflow_id: "w2".into(),
                workflow_name: "w2".into(),
                sink: crate::kinds::TriggerSink::Webhook,
                payload: "{}".into(),
                tracks_outcome: false,
            };
            let write = VerifiedWrite {
                upload_state: UploadState::Uploaded,
                upload_reason: None,
                size: Some(7),
                content_type: None,
                detail: None,
                triggers: vec![follow_up.clone()],
                held_until: now_millis() + lease_ms,
                missing: false,
            };
            let held = job.follow_ups(&write);
            assert!(
                store
                    .record_outcome(job.clone(), Outcome::Verified(Box::new(write)))
                    .await
                    .unwrap()
            );
            assert_eq!((held.len(), held[0].attempts), (1, 1));
            assert_eq!(
                (&held[0].id, &held[0].claim_id),
                (&follow_up.id, &job.claim_id)
            );
            let claimed = store
                .claim_triggers(now_millis(), 10, 60_000)
                .await
                .unwrap();
            if taken_over {
                assert_eq!(claimed.len(), 1);
                assert_eq!((&claimed[0].id, claimed[0].attempts), (&follow_up.id, 2));
                // The verifier's late outcome no longer counts.
                let late = Outcome::Delivered {
                    media_id: None,
                    run_ids: Vec::new(),
                    first_look_at: 0,
                };
                assert!(!store.record_outcome(held[0].clone(), late).await.unwrap());
            } else {
                assert!(claimed.is_empty(), "{claimed:?}");
                let delivered = Outcome::Delivered {
                    media_id: None,
                    run_ids: Vec::new(),
                    first_look_at: 0,
                };
                assert!(
                    store
                        .record_outcome(held[0].clone(), delivered)
                        .await
                        .unwrap()
                );
                let counts = store.trigger_counts().await.unwrap();
                assert_eq!(counts, vec![("delivered".to_owned(), 2)]);
            }
        }
    }
}
