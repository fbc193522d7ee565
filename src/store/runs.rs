//! Processing outcomes after delivery: the outcome a delivered trigger opens, the processor
//! runs it follows (MPS `RunId`s, looked up on their own backoff), the outputs a succeeded
//! outcome produced, and the upload state each change leaves.

use anyhow::Context;
use sqlx::Row;

use super::batch::{self, BatchRow, Statements, push_rows};
use super::outcomes::{OutcomeWrite, refresh_upload_states};
use super::{Backend, Outcome, Store};
use crate::kinds::{OutputKind, ProcessingState, Reason, RunState};

/// A run due for a lookup, claimed until its lease ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueRun {
    pub run_id: String,
    pub trigger_id: String,
    pub workflow_id: String,
    pub upload_id: Option<String>,
    pub media_id: String,
    pub opened_at: i64,
    /// The wait before this lookup, doubled for the next (up to the configured longest).
    pub interval_ms: i64,
    pub lookups: i64,
    /// How many lookups found it succeeded but its outputs not (all) in the store yet.
    pub output_looks: i64,
    /// When it was claimed: a message after that keeps its lookup due.
    pub claimed_at: i64,
}

/// A run as operators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    pub run_id: String,
    pub trigger_id: String,
    pub media_id: String,
    pub state: RunState,
    pub lookups: i64,
    pub next_check_at: i64,
    /// What the last lookup found, in a few words.
    pub last_result: Option<String>,
    /// What the most recent lookups found (at most [`KEPT_RESULTS`]), oldest first: when
    /// (Unix ms) and what.
    pub results: Vec<(i64, String)>,
    /// The activities as the last lookup listed them (JSON).
    pub activities: Option<String>,
    pub code: Option<String>,
    pub message: Option<String>,
    pub opened_at: i64,
    pub finished_at: Option<i64>,
}

/// An output of a succeeded outcome, found in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRow {
    pub trigger_id: String,
    pub upload_id: Option<String>,
    pub workflow_name: String,
    /// Unique within its trigger (`cover`, the activity's name, ...).
    pub name: String,
    pub kind: OutputKind,
    pub bucket: String,
    pub object_key: String,
    pub format: Option<String>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub duration_ms: Option<i64>,
    pub size: Option<i64>,
}

/// What a lookup found about one run.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// Still running (or not visible yet): look again at `next_check_at`.
    Open {
        next_check_at: i64,
        interval_ms: i64,
        running: bool,
        /// It succeeded, but its outputs were not all found.
        output_look: bool,
        result: String,
        activities: Option<String>,
    },
    /// Ended: the outcome of the run, with the outputs of its trigger when it succeeded.
    Finished {
        state: RunState,
        reason: Option<Reason>,
        code: Option<String>,
        message: Option<String>,
        result: String,
        activities: Option<String>,
        outputs: Vec<OutputRow>,
    },
}

const RUN_COLUMNS: &str = "run_id, trigger_id, media_id, state, lookups, next_check_at, last_result, results, activities, code, message, opened_at, finished_at";

/// How many lookup results a run keeps for operators (the count of all is `lookups`).
pub const KEPT_RESULTS: usize = 20;

impl Store {
    /// Claims up to `limit` open runs due at `now` by moving their next lookup `lease_ms`
    /// ahead, so that no other instance looks them up meanwhile.
    pub async fn claim_due_runs(
        &self,
        now: i64,
        lease_ms: i64,
        limit: u32,
    ) -> anyhow::Result<Vec<DueRun>> {
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let rows = sqlx::query(&format!(
            // The claim is a CTE: PostgreSQL may run a locking `IN (SELECT ... LIMIT)` more
            // than once in one update, and claim more than the limit.
            "WITH due AS (SELECT run_id FROM runs WHERE state = 'open' AND next_check_at <= $2
                          ORDER BY next_check_at LIMIT $3{lock})
             UPDATE runs SET next_check_at = $1
             WHERE run_id IN (SELECT run_id FROM due) AND state = 'open'
             RETURNING run_id, trigger_id, workflow_id, upload_id, media_id, opened_at, interval_ms, lookups, output_looks"
        ))
        .bind(now + lease_ms)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.writer)
        .await
        .context("claiming due runs")?;
        rows.iter()
            .map(|r| {
                Ok(DueRun {
                    run_id: r.try_get("run_id")?,
                    trigger_id: r.try_get("trigger_id")?,
                    workflow_id: r.try_get("workflow_id")?,
                    upload_id: r.try_get("upload_id")?,
                    media_id: r.try_get("media_id")?,
                    opened_at: r.try_get("opened_at")?,
                    interval_ms: r.try_get("interval_ms")?,
                    lookups: r.try_get("lookups")?,
                    output_looks: r.try_get("output_looks")?,
                    claimed_at: now,
                })
            })
            .collect()
    }

    /// Makes an open run's next lookup due at `now` (a processor's message said something
    /// happened), unless a message did so within `every_ms`. `false` for a run mediagate
    /// does not follow.
    pub async fn hint_run(&self, run_id: &str, now: i64, every_ms: i64) -> anyhow::Result<bool> {
        // At most one hinted lookup per `every_ms`: a replayed message costs no lookup.
        let done = sqlx::query(
            "UPDATE runs SET next_check_at = $1, hinted_at = $1
             WHERE run_id = $2 AND state = 'open' AND next_check_at > $1
               AND (hinted_at IS NULL OR hinted_at <= $3)",
        )
        .bind(now)
        .bind(run_id)
        .bind(now - every_ms)
        .execute(&self.writer)
        .await
        .context("hinting a run")?;
        if done.rows_affected() > 0 {
            return Ok(true);
        }
        let known = sqlx::query("SELECT 1 FROM runs WHERE run_id = $1")
            .bind(run_id)
            .fetch_optional(&self.reader)
            .await
            .context("reading a run")?;
        Ok(known.is_some())
    }

    /// Records what a lookup of `run` found, at `now`: another wait, or its end. When the
    /// last open run of a trigger ends, the trigger's outcome is decided (succeeded only if
    /// every run did), its outputs are kept and its upload's state follows, in one
    /// transaction. `false` when the run had ended already (another instance's lookup).
    pub async fn record_lookup(
        &self,
        run: &DueRun,
        lookup: Lookup,
        now: i64,
    ) -> anyhow::Result<bool> {
        let mut tx = self.writer.begin().await.context("recording a lookup")?;
        let result = match &lookup {
            Lookup::Open { result, .. } | Lookup::Finished { result, .. } => result,
        };
        let results = with_result(&mut tx, &run.run_id, now, result).await?;
        let changed = match &lookup {
            Lookup::Open {
                next_check_at,
                interval_ms,
                running,
                output_look,
                result,
                activities,
            } => {
                let changed = sqlx::query(
                    // A message that came while this lookup was under way keeps the run
                    // due: what it announced may be newer than what the lookup read.
                    "UPDATE runs SET next_check_at = CASE WHEN hinted_at > $8 THEN hinted_at ELSE $1 END,
                       interval_ms = $2, lookups = lookups + 1,
                       last_result = $3, activities = COALESCE($4, activities), results = $6,
                       output_looks = output_looks + $7
                     WHERE run_id = $5 AND state = 'open'",
                )
                .bind(next_check_at)
                .bind(interval_ms)
                .bind(result)
                .bind(activities)
                .bind(&run.run_id)
                .bind(&results)
                .bind(i64::from(*output_look))
                .bind(run.claimed_at)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    > 0;
                if changed && *running {
                    sqlx::query(
                        "UPDATE triggers SET outcome = 'running', updated_at = $1 WHERE id = $2 AND outcome = 'pending'",
                    )
                    .bind(now)
                    .bind(&run.trigger_id)
                    .execute(&mut *tx)
                    .await?;
                }
                changed
            }
            Lookup::Finished {
                state,
                reason,
                code,
                message,
                result,
                activities,
                outputs,
            } => {
                let changed = sqlx::query(
                    "UPDATE runs SET state = $1, code = $2, message = $3, last_result = $4,
                       activities = COALESCE($5, activities), lookups = lookups + 1, finished_at = $6,
                       results = $8, reason = $9
                     WHERE run_id = $7 AND state = 'open'",
                )
                .bind(state.as_str())
                .bind(code)
                .bind(message)
                .bind(result)
                .bind(activities)
                .bind(now)
                .bind(&run.run_id)
                .bind(&results)
                .bind(reason.map(Reason::as_str))
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    > 0;
                if changed {
                    let mut statements = Statements::new(&mut tx, self.backend);
                    if !outputs.is_empty() {
                        let rows: Vec<OutputInsert> =
                            outputs.iter().map(|o| OutputInsert(o, now)).collect();
                        // Several runs of one trigger name the same media's outputs.
                        push_rows(
                            &mut statements,
                            OutputInsert::INSERT,
                            &rows,
                            " ON CONFLICT (trigger_id, name) DO NOTHING",
                        )
                        .await
                        .context("keeping outputs")?;
                    }
                    statements.send().await?;
                    settle_trigger(&mut tx, self.backend, &run.trigger_id, now).await?;
                }
                changed
            }
        };
        tx.commit().await.context("recording a lookup")?;
        Ok(changed)
    }

    /// Sets a delivered trigger's processing outcome (a processor's own report), and the
    /// state its upload takes. `false` when the trigger does not track one, or it ended.
    pub async fn set_trigger_outcome(
        &self,
        trigger_id: &str,
        processing: ProcessingState,
        reason: Option<Reason>,
        now: i64,
    ) -> anyhow::Result<bool> {
        let mut tx = self.writer.begin().await.context("recording an outcome")?;
        let changed = sqlx::query(
            "UPDATE triggers SET outcome = $1, outcome_reason = $2, updated_at = $3
             WHERE id = $4 AND state = 'delivered' AND outcome IN ('pending', 'running')",
        )
        .bind(processing.as_str())
        .bind(reason.map(Reason::as_str))
        .bind(now)
        .bind(trigger_id)
        .execute(&mut *tx)
        .await
        .context("recording an outcome")?
        .rows_affected()
            > 0;
        if changed {
            refresh_trigger_upload(&mut tx, self.backend, trigger_id).await?;
        }
        tx.commit().await.context("recording an outcome")?;
        Ok(changed)
    }

    /// Ends every outcome still open `timeout_ms` after its delivery: `timed_out`, with its
    /// open runs, and the uploads' states follow. Returns how many ended.
    pub async fn time_out_outcomes(&self, now: i64, timeout_ms: i64) -> anyhow::Result<u64> {
        let mut tx = self.writer.begin().await.context("timing out outcomes")?;
        let late = "SELECT id FROM triggers WHERE outcome IN ('pending', 'running') AND delivered_at <= $1";
        let uploads: Vec<String> = sqlx::query(&format!(
            "SELECT DISTINCT upload_id FROM triggers WHERE id IN ({late}) AND upload_id IS NOT NULL"
        ))
        .bind(now - timeout_ms)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
        sqlx::query(&format!(
            "UPDATE runs SET state = 'timed_out', finished_at = $2, last_result = 'no end within the timeout',
               reason = '{}'
             WHERE state = 'open' AND trigger_id IN ({late})",
            Reason::ProcessingTimedOut.as_str()
        ))
        .bind(now - timeout_ms)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let ended = sqlx::query(
            "UPDATE triggers SET outcome = 'timed_out', outcome_reason = $1, updated_at = $2
             WHERE outcome IN ('pending', 'running') AND delivered_at <= $3",
        )
        .bind(Reason::ProcessingTimedOut.as_str())
        .bind(now)
        .bind(now - timeout_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let ids: Vec<&str> = uploads.iter().map(String::as_str).collect();
        for chunk in ids.chunks(500) {
            let mut statements = Statements::new(&mut tx, self.backend);
            refresh_upload_states(&mut statements, chunk).await?;
            statements.send().await?;
        }
        tx.commit().await.context("timing out outcomes")?;
        Ok(ended)
    }

    /// The outputs of an upload's succeeded outcomes.
    pub async fn outputs_for_upload(&self, upload_id: &str) -> anyhow::Result<Vec<OutputRow>> {
        self.outputs_for_uploads(&[upload_id]).await
    }

    /// The outputs of the succeeded outcomes of `upload_ids` (at most a page of them), in one
    /// query, by upload, trigger and name.
    pub async fn outputs_for_uploads(&self, upload_ids: &[&str]) -> anyhow::Result<Vec<OutputRow>> {
        if upload_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT trigger_id, upload_id, workflow_name, name, kind, bucket, object_key, format, width, height, duration_ms, size
             FROM outputs WHERE upload_id IN ({}) ORDER BY upload_id, trigger_id, name",
            super::placeholders(1, upload_ids.len())
        );
        let rows = upload_ids
            .iter()
            .fold(sqlx::query(&sql), |q, id| q.bind(*id))
            .fetch_all(&self.reader)
            .await
            .context("reading outputs")?;
        rows.iter()
            .map(|r| {
                Ok(OutputRow {
                    trigger_id: r.try_get("trigger_id")?,
                    upload_id: r.try_get("upload_id")?,
                    workflow_name: r.try_get("workflow_name")?,
                    name: r.try_get("name")?,
                    kind: super::stored(r, "kind", OutputKind::parse)?,
                    bucket: r.try_get("bucket")?,
                    object_key: r.try_get("object_key")?,
                    format: r.try_get("format")?,
                    width: r.try_get("width")?,
                    height: r.try_get("height")?,
                    duration_ms: r.try_get("duration_ms")?,
                    size: r.try_get("size")?,
                })
            })
            .collect()
    }

    /// The runs of an upload's triggers, oldest first.
    pub async fn runs_for_upload(&self, upload_id: &str) -> anyhow::Result<Vec<RunRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE upload_id = $1 ORDER BY opened_at, run_id"
        ))
        .bind(upload_id)
        .fetch_all(&self.reader)
        .await
        .context("reading runs")?;
        rows.iter()
            .map(|r| {
                Ok(RunRow {
                    run_id: r.try_get("run_id")?,
                    trigger_id: r.try_get("trigger_id")?,
                    media_id: r.try_get("media_id")?,
                    state: super::stored(r, "state", RunState::parse)?,
                    lookups: r.try_get("lookups")?,
                    next_check_at: r.try_get("next_check_at")?,
                    last_result: r.try_get("last_result")?,
                    results: r
                        .try_get::<Option<String>, _>("results")?
                        .and_then(|t| serde_json::from_str(&t).ok())
                        .unwrap_or_default(),
                    activities: r.try_get("activities")?,
                    code: r.try_get("code")?,
                    message: r.try_get("message")?,
                    opened_at: r.try_get("opened_at")?,
                    finished_at: r.try_get("finished_at")?,
                })
            })
            .collect()
    }
}

/// The run's kept lookup results with `result` at `now` added (the oldest dropped past
/// [`KEPT_RESULTS`]), as stored.
async fn with_result(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    run_id: &str,
    now: i64,
    result: &str,
) -> anyhow::Result<String> {
    let stored: Option<String> = sqlx::query("SELECT results FROM runs WHERE run_id = $1")
        .bind(run_id)
        .fetch_optional(&mut **tx)
        .await?
        .and_then(|r| r.try_get(0).ok())
        .flatten();
    let mut results: Vec<(i64, String)> = stored
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    results.push((now, result.chars().take(300).collect()));
    let drop = results.len().saturating_sub(KEPT_RESULTS);
    results.drain(..drop);
    Ok(serde_json::to_string(&results)?)
}

/// Once no run of `trigger_id` is open: its outcome from its runs (failed with their least
/// reason when any failed or timed out), and its upload's state.
async fn settle_trigger(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    trigger_id: &str,
    now: i64,
) -> anyhow::Result<()> {
    let open: Option<i64> =
        sqlx::query("SELECT COUNT(*) FROM runs WHERE trigger_id = $1 AND state = 'open'")
            .bind(trigger_id)
            .fetch_one(&mut **tx)
            .await?
            .try_get(0)?;
    if open.unwrap_or(0) > 0 {
        return Ok(());
    }
    sqlx::query(
        "UPDATE triggers SET updated_at = $1,
           outcome = CASE WHEN EXISTS (SELECT 1 FROM runs WHERE runs.trigger_id = triggers.id AND runs.state = 'timed_out') THEN 'timed_out'
                          WHEN EXISTS (SELECT 1 FROM runs WHERE runs.trigger_id = triggers.id AND runs.state = 'failed') THEN 'failed'
                          ELSE 'succeeded' END,
           outcome_reason = (SELECT MIN(runs.reason) FROM runs
                             WHERE runs.trigger_id = triggers.id AND runs.state <> 'succeeded')
         WHERE id = $2 AND outcome IN ('pending', 'running')",
    )
    .bind(now)
    .bind(trigger_id)
    .execute(&mut **tx)
    .await
    .context("settling a trigger's outcome")?;
    refresh_trigger_upload(tx, backend, trigger_id).await
}

/// Applies the state rule to the upload of `trigger_id`.
async fn refresh_trigger_upload(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    trigger_id: &str,
) -> anyhow::Result<()> {
    let upload: Option<String> = sqlx::query("SELECT upload_id FROM triggers WHERE id = $1")
        .bind(trigger_id)
        .fetch_optional(&mut **tx)
        .await?
        .and_then(|r| r.try_get(0).ok())
        .flatten();
    if let Some(upload) = upload {
        let mut statements = Statements::new(tx, backend);
        refresh_upload_states(&mut statements, &[upload.as_str()]).await?;
        statements.send().await?;
    }
    Ok(())
}

/// Opens the outcomes of triggers just delivered whose workflows follow them (`pending`), with
/// their runs to look up. A trigger that does not track its outcome opens nothing.
pub(super) async fn open_outcomes(
    statements: &mut Statements<'_>,
    delivered: &[&OutcomeWrite],
    now: i64,
) -> anyhow::Result<()> {
    if delivered.is_empty() {
        return Ok(());
    }
    let backend = statements.backend();
    let ids = batch::values(backend, 2, 1, delivered.len());
    let sql = format!(
        "UPDATE triggers SET outcome = 'pending', updated_at = {} WHERE tracks_outcome = 1 AND outcome IS NULL AND id IN {ids}",
        batch::param(backend, 1)
    );
    let trigger_ids: Vec<String> = delivered.iter().map(|w| w.trigger.id.clone()).collect();
    statements
        .push(&sql, |mut q| {
            q = q.bind(now);
            for id in &trigger_ids {
                q = q.bind(id.clone());
            }
            q
        })
        .await
        .context("opening outcomes")?;
    let runs: Vec<RunInsert> = delivered
        .iter()
        .flat_map(|w| match &w.outcome {
            Outcome::Delivered {
                media_id: Some(media_id),
                run_ids,
                first_look_at,
            } => run_ids
                .iter()
                .map(|run_id| RunInsert {
                    run_id,
                    trigger_id: &w.trigger.id,
                    workflow_id: &w.trigger.workflow_id,
                    upload_id: w.trigger.upload_id.as_deref(),
                    media_id,
                    now,
                    first_look_at: *first_look_at,
                })
                .collect(),
            _ => Vec::new(),
        })
        .collect();
    if !runs.is_empty() {
        push_rows(
            statements,
            "INSERT INTO runs (run_id, trigger_id, workflow_id, upload_id, media_id, state, opened_at, next_check_at, interval_ms, lookups)
             SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6, v.column7, v.column8, v.column9, v.column10 FROM (",
            &runs,
            ") AS v WHERE EXISTS (SELECT 1 FROM triggers WHERE triggers.id = v.column2 AND triggers.tracks_outcome = 1)",
        )
        .await
        .context("opening runs")?;
    }
    Ok(())
}

/// A run opened by a delivery (the `VALUES` table of an insert).
struct RunInsert<'a> {
    run_id: &'a str,
    trigger_id: &'a str,
    workflow_id: &'a str,
    upload_id: Option<&'a str>,
    media_id: &'a str,
    now: i64,
    first_look_at: i64,
}

impl BatchRow for RunInsert<'_> {
    const INSERT: &'static str = "";
    const COLUMNS: usize = 10;

    fn bind(&self, query: batch::Bound) -> batch::Bound {
        query
            .bind(self.run_id.to_owned())
            .bind(self.trigger_id.to_owned())
            .bind(self.workflow_id.to_owned())
            .bind(self.upload_id.map(str::to_owned))
            .bind(self.media_id.to_owned())
            .bind(RunState::Open.as_str())
            .bind(self.now)
            .bind(self.first_look_at)
            .bind((self.first_look_at - self.now).max(1))
            .bind(0_i64)
    }
}

pub(super) struct OutputInsert<'a>(pub(super) &'a OutputRow, pub(super) i64);

impl BatchRow for OutputInsert<'_> {
    const INSERT: &'static str = "INSERT INTO outputs (trigger_id, name, upload_id, workflow_name, kind, bucket, object_key, format, width, height, duration_ms, size, created_at)";
    const COLUMNS: usize = 13;

    fn bind(&self, query: batch::Bound) -> batch::Bound {
        let o = self.0;
        query
            .bind(o.trigger_id.clone())
            .bind(o.name.clone())
            .bind(o.upload_id.clone())
            .bind(o.workflow_name.clone())
            .bind(o.kind.as_str())
            .bind(o.bucket.clone())
            .bind(o.object_key.clone())
            .bind(o.format.clone())
            .bind(o.width)
            .bind(o.height)
            .bind(o.duration_ms)
            .bind(o.size)
            .bind(self.1)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{event, temp_store};
    use super::*;
    use crate::store::now_millis;

    #[tokio::test]
    async fn a_delivery_opens_the_outcome_and_the_runs_of_a_tracked_trigger() {
        let (_dir, store) = temp_store().await;
        let mut write = event("uploads/alice/x/a.mp4", "A", None);
        write.triggers[0].tracks_outcome = true;
        store.record_event(write).await.unwrap();
        let job = store
            .claim_triggers(now_millis(), 1, 60_000)
            .await
            .unwrap()
            .remove(0);
        let delivered = Outcome::Delivered {
            media_id: Some("m".into()),
            run_ids: vec!["r1".into(), "r2".into()],
            first_look_at: now_millis() + 5_000,
        };
        assert!(store.record_outcome(job.clone(), delivered).await.unwrap());
        let due = store
            .claim_due_runs(now_millis() + 5_000, 60_000, 10)
            .await
            .unwrap();
        assert_eq!(due.len(), 2);
        assert!(
            due.iter()
                .all(|r| r.trigger_id == job.id && r.media_id == "m")
        );
    }

    /// A message that comes while a lookup is under way keeps the run due: the lookup may
    /// have read the run before what the message announced.
    #[tokio::test]
    async fn a_message_during_a_lookup_is_not_lost() {
        let (_dir, store) = temp_store().await;
        let mut write = event("uploads/alice/x/a.mp4", "A", None);
        write.triggers[0].tracks_outcome = true;
        store.record_event(write).await.unwrap();
        let job = store
            .claim_triggers(now_millis(), 1, 60_000)
            .await
            .unwrap()
            .remove(0);
        let t0 = now_millis();
        let delivered = Outcome::Delivered {
            media_id: Some("m".into()),
            run_ids: vec!["r1".into()],
            first_look_at: t0,
        };
        store.record_outcome(job, delivered).await.unwrap();
        let run = store
            .claim_due_runs(t0, 60_000, 10)
            .await
            .unwrap()
            .remove(0);
        assert!(store.hint_run("r1", t0 + 1, 1000).await.unwrap());
        let again = Lookup::Open {
            next_check_at: t0 + 10_000,
            interval_ms: 10_000,
            running: true,
            output_look: false,
            result: "running".into(),
            activities: None,
        };
        store.record_lookup(&run, again, t0 + 2).await.unwrap();
        let due = store.claim_due_runs(t0 + 2, 60_000, 10).await.unwrap();
        assert_eq!(
            due.len(),
            1,
            "still due after the lookup that missed the message"
        );
    }
}
