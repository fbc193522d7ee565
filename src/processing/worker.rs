//! The worker: claims due triggers, delivers them to their sink, and records the outcome with
//! exponential backoff and jitter until the retry budget is spent, then `dead`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::intake::Plan;
use super::lifecycle::Backend;
use super::verify::{Verdict, VerificationConfig, Verifier};
use super::{Delivered, Delivery, DeliveryError, ReportTo};
use super::{ProcessingConfig, Sinks};
use crate::clock::Clock;
use crate::kinds::{Reason, TriggerSink};
use crate::quotas::standing::judge_verified;
use crate::quotas::{QuotasConfig, Refusal};
use crate::store::{Claimed, Outcome, Store, UploadRow, VerifiedWrite, now_millis};
use crate::workflows::{Sink as Target, Workflow};

/// How many outcomes, per sink call slot, may be waiting to be written.
const RECORDING: usize = 4;

pub struct Worker {
    store: Store,
    sinks: Sinks,
    verifier: Verifier,
    max_attempts: u32,
    backoff_base: Duration,
    /// How long after delivery a processor's run is first looked up.
    first_look_ms: i64,
    /// Where processors report their outcome.
    report_url: Option<String>,
    /// The app's backend, told of upload changes (`[events]`).
    backend: Option<Backend>,
    /// Plans: a verified object must fit its user's.
    quotas: QuotasConfig,
    backoff_max: Duration,
    lease_ms: i64,
    poll: Duration,
    batch: u32,
    /// One permit per sink call that may be in flight (`batch` of them).
    calls: Arc<Semaphore>,
    /// Woken when an event queues triggers, so delivery does not wait for the next poll.
    wake: Arc<Notify>,
    /// When the loop last went round (Unix ms); 0 once it has stopped.
    heartbeat: AtomicI64,
    /// How long deliveries in flight may finish after a stop is asked for.
    grace: Duration,
    /// Decides what is due, and when a retry or a lease ends. (The heartbeat is the system's:
    /// it tells whether the loop runs, not what is due.)
    clock: Arc<dyn Clock>,
}

impl Worker {
    /// A worker delivering to `sinks` by the rules of `p`, on `clock`; on a stop, deliveries
    /// in flight get `grace` to finish.
    // Each argument is a part the app wires in on its own; a struct for them would only be
    // built here.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        p: &ProcessingConfig,
        verification: &VerificationConfig,
        max_form_bytes: u64,
        sinks: Sinks,
        grace: Duration,
        store: Store,
        wake: Arc<Notify>,
        clock: Arc<dyn Clock>,
        report_url: Option<String>,
        backend: Option<Backend>,
        quotas: QuotasConfig,
    ) -> Worker {
        Worker {
            quotas,
            report_url,
            backend,
            store,
            verifier: Verifier::new(sinks.objects.clone(), verification, max_form_bytes),
            sinks,
            max_attempts: p.max_attempts.max(1),
            backoff_base: Duration::from_millis(p.backoff_base_ms),
            first_look_ms: p.outcome_poll_min_seconds.saturating_mul(1000) as i64,
            backoff_max: Duration::from_millis(p.backoff_max_ms),
            lease_ms: (p.lease_seconds * 1000) as i64,
            poll: Duration::from_millis(p.poll_interval_ms),
            batch: p.concurrency.max(1) as u32,
            calls: Arc::new(Semaphore::new(p.concurrency.max(1))),
            wake,
            // Counted from construction, so a worker that never starts is noticed once it is
            // overdue rather than before it had a chance to run.
            heartbeat: AtomicI64::new(now_millis()),
            grace,
            clock,
        }
    }

    /// Delivers until nothing is due (each retry waits for its backoff on the clock first, so
    /// a trigger that keeps failing ends `dead` or waiting); returns how many attempts were
    /// made. Tests use it to settle the queue instead of sleeping, and move the clock to a
    /// retry.
    pub async fn drain(&self) -> anyhow::Result<usize> {
        let mut attempts = 0;
        loop {
            match self.run_once().await? {
                0 => return Ok(attempts),
                n => attempts += n,
            }
        }
    }

    /// Claims what is due now and delivers it (concurrently); returns how many were attempted.
    pub async fn run_once(&self) -> anyhow::Result<usize> {
        let claimed = self
            .store
            .claim_triggers(self.clock.now_millis(), self.batch, self.lease_ms)
            .await?;
        let n = claimed.len();
        self.deliver_all(claimed).await?;
        Ok(n)
    }

    async fn deliver_all(&self, claimed: Vec<Claimed>) -> anyhow::Result<()> {
        if claimed.is_empty() {
            return Ok(());
        }
        // The workflows as they are now, read once per batch: a deleted workflow ends its
        // triggers, a changed URL or secret applies to the next attempt.
        let workflows = self.store.workflows().await?;
        let jobs = claimed.into_iter().map(|t| async {
            let slot = self.slot().await;
            self.run_job(t, &workflows, slot).await
        });
        futures_util::future::join_all(jobs).await;
        Ok(())
    }

    /// Waits for a free sink call slot.
    async fn slot(&self) -> OwnedSemaphorePermit {
        Arc::clone(&self.calls)
            .acquire_owned()
            .await
            .expect("the slots are never closed")
    }

    /// Whether the loop is running and went round recently: a batch takes at most about one
    /// lease (deliveries time out well within it), an idle loop wakes every poll interval.
    pub fn is_alive(&self) -> bool {
        let last = self.heartbeat.load(Ordering::Relaxed);
        last > 0 && now_millis() - last <= self.lease_ms + self.poll.as_millis() as i64 + 5_000
    }

    /// Runs until `stop` resolves, polling when idle and waking early when woken.
    pub async fn run(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        self.beat_until_stopped(stop).await;
        self.heartbeat.store(0, Ordering::Relaxed);
    }

    /// Keeps up to `batch` sink calls running, each delivery a task of its own, and claims
    /// more once half of them are free: a batch delivered whole waited for its slowest delivery
    /// (up to the webhook timeout) before claiming the next, holding back every slot that had
    /// finished. A slot is given back when the sink answers, before the outcome is written:
    /// counted until then, each delivery held its slot through two waits on the shared writer
    /// (its claim and its outcome), and under load those waits, not the sinks, set how many
    /// deliveries a second went through. Outcomes being written are bounded apart, by
    /// [`RECORDING`] times `batch`.
    async fn beat_until_stopped(self: &Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let batch = self.batch as usize;
        let most = batch * RECORDING;
        let mut running: JoinSet<String> = JoinSet::new();
        // Deliveries still running, by claim, to give them back on a stop.
        let mut claims: HashMap<String, usize> = HashMap::new();
        // The last claim found nothing due: wait for a wake or the next poll to claim again.
        let mut idle_until: Option<tokio::time::Instant> = None;
        loop {
            self.heartbeat.store(now_millis(), Ordering::Relaxed);
            let half = batch.div_ceil(2);
            let may_claim = idle_until.is_none() && running.len() + half <= most;
            let idle = async {
                match idle_until {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut stop => {
                    self.stop_running(running, claims).await;
                    return;
                }
                Ok(mut slots) = Arc::clone(&self.calls).acquire_many_owned(half as u32), if may_claim => {
                    let more = self.calls.available_permits().min(most - running.len() - half);
                    if let Ok(more) = Arc::clone(&self.calls).try_acquire_many_owned(more as u32) {
                        slots.merge(more);
                    }
                    let claimed = match self.claim(slots.num_permits()).await {
                        Ok(claimed) => claimed,
                        Err(e) => {
                            warn!(error = format!("{e:#}"), "claiming triggers failed");
                            Vec::new()
                        }
                    };
                    if claimed.is_empty() {
                        idle_until = Some(tokio::time::Instant::now() + self.poll);
                    }
                    for (t, workflows) in claimed {
                        let Some(slot) = slots.split(1) else { break };
                        *claims.entry(t.claim_id.clone()).or_default() += 1;
                        let worker = Arc::clone(self);
                        running.spawn(async move {
                            let claim_id = t.claim_id.clone();
                            worker.run_job(t, &workflows, slot).await;
                            claim_id
                        });
                    }
                }
                Some(done) = running.join_next() => {
                    if let Ok(claim_id) = done
                        && let Some(n) = claims.get_mut(&claim_id)
                    {
                        *n -= 1;
                        if *n == 0 {
                            claims.remove(&claim_id);
                        }
                    }
                }
                _ = self.wake.notified() => idle_until = None,
                _ = idle => idle_until = None,
            }
        }
    }

    /// Claims up to `limit` due triggers, with the workflows as they are now.
    async fn claim(&self, limit: usize) -> anyhow::Result<Vec<(Claimed, Arc<[Workflow]>)>> {
        let claimed = self
            .store
            .claim_triggers(self.clock.now_millis(), limit as u32, self.lease_ms)
            .await?;
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        // A deleted workflow ends its triggers, a changed URL or secret applies to the next
        // attempt.
        let workflows = self.store.workflows().await?;
        Ok(claimed
            .into_iter()
            .map(|t| (t, workflows.clone()))
            .collect())
    }

    /// Deliveries in flight get the grace period; what is still unfinished then is cancelled
    /// and given back rather than held until its lease ends.
    async fn stop_running(&self, mut running: JoinSet<String>, claims: HashMap<String, usize>) {
        let finished = async { while running.join_next().await.is_some() {} };
        if tokio::time::timeout(self.grace, finished).await.is_ok() {
            return;
        }
        // Ending the tasks closes the deliveries' connections before the release.
        running.shutdown().await;
        for claim_id in claims.keys() {
            match self.store.release_claim(claim_id).await {
                Ok(n) => info!(
                    released = n,
                    "released unfinished deliveries for another worker"
                ),
                Err(e) => warn!(
                    error = format!("{e:#}"),
                    "releasing claimed triggers failed; they are taken over when their lease ends"
                ),
            }
        }
    }

    /// Attempts a claimed job in `slot`, then what its verification queued, each in a slot
    /// of its own, under the same claim.
    async fn run_job(&self, t: Claimed, workflows: &[Workflow], slot: OwnedSemaphorePermit) {
        let follow_ups = self.attempt(t, workflows, slot).await;
        let next = follow_ups.into_iter().map(|t| async {
            let slot = self.slot().await;
            self.attempt(t, workflows, slot).await
        });
        futures_util::future::join_all(next).await;
    }

    /// One attempt: the slot is given back once the sink answered, before the outcome is
    /// written. Returns the triggers a verification wrote for this worker to deliver.
    async fn attempt(
        &self,
        t: Claimed,
        workflows: &[Workflow],
        slot: OwnedSemaphorePermit,
    ) -> Vec<Claimed> {
        let outcome = self.outcome(&t, workflows).await;
        drop(slot);
        let follow_ups = match &outcome {
            Outcome::Verified(write) => t.follow_ups(write),
            _ => Vec::new(),
        };
        match self.record(t, outcome).await {
            Ok(true) => follow_ups,
            // Another worker holds the job now, and with it what follows.
            Ok(false) => Vec::new(),
            Err(e) => {
                warn!(
                    error = format!("{e:#}"),
                    "recording a delivery outcome failed"
                );
                Vec::new()
            }
        }
    }

    /// Runs a claimed job (a verification or a delivery to its sink) and says what it came to.
    async fn outcome(&self, t: &Claimed, workflows: &[Workflow]) -> Outcome {
        let attempt = u32::try_from(t.attempts).unwrap_or(u32::MAX);
        let outcome = self.perform(t, workflows, attempt).await;
        let outcome = match outcome {
            Ok(Done::Delivered(Delivered { media_id, run_ids })) => {
                info!(trigger = %t.id, workflow = %t.workflow_name, attempt, "trigger delivered");
                Outcome::Delivered {
                    media_id,
                    run_ids,
                    first_look_at: self.clock.now_millis() + self.first_look_ms,
                }
            }
            Ok(Done::Verified(write)) => Outcome::Verified(Box::new(write)),
            Err(DeliveryError::Retry(reason)) if attempt < self.max_attempts => {
                let delay =
                    crate::upstream::backoff(attempt - 1, self.backoff_base, self.backoff_max)
                        .max(self.backoff_base / 2);
                warn!(trigger = %t.id, workflow = %t.workflow_name, attempt, ?reason, retry_in_ms = delay.as_millis() as u64, "delivery failed");
                Outcome::Failed {
                    error: reason,
                    retry_at: Some(self.clock.now_millis() + delay.as_millis() as i64),
                }
            }
            Err(DeliveryError::Retry(reason) | DeliveryError::Fatal(reason)) => {
                warn!(trigger = %t.id, workflow = %t.workflow_name, attempt, ?reason, "trigger is dead");
                Outcome::Failed {
                    error: reason,
                    retry_at: None,
                }
            }
        };
        let state = match &outcome {
            Outcome::Delivered { .. } | Outcome::Verified(_) => "delivered",
            Outcome::Failed {
                retry_at: Some(_), ..
            } => "failed",
            Outcome::Failed { retry_at: None, .. } => "dead",
        };
        metrics::counter!("mediagate_trigger_attempts_total", "workflow" => t.workflow_name.clone(),
            "sink" => t.sink.as_str(), "outcome" => state)
        .increment(1);
        outcome
    }

    /// Does what the job asks: tells the app's backend, verifies an object, or delivers to a
    /// workflow's sink.
    async fn perform(
        &self,
        t: &Claimed,
        workflows: &[Workflow],
        attempt: u32,
    ) -> Result<Done, DeliveryError> {
        if t.sink == TriggerSink::Events {
            let backend = self
                .backend
                .as_ref()
                .ok_or_else(|| DeliveryError::Fatal("no [events] receiver is configured".into()))?;
            return backend
                .tell(&self.store, &t.id, &t.payload)
                .await
                .map(Done::Delivered);
        }
        let mut delivery = serde_json::from_str::<Delivery>(&t.payload)
            .map_err(|e| DeliveryError::Fatal(format!("unreadable trigger payload: {e}")))?;
        if t.sink == TriggerSink::Verify {
            return self
                .verify(t, delivery, workflows)
                .await
                .map(Done::Verified);
        }
        delivery.trigger_id = t.id.clone();
        delivery.attempt = attempt;
        match workflows.iter().find(|w| w.id == t.workflow_id) {
            Some(w) => self.deliver(w, &delivery).await.map(Done::Delivered),
            None => Err(DeliveryError::Fatal("workflow was deleted".into())),
        }
    }

    /// Writes the outcome; false when the claim was lost (another worker took the job over).
    async fn record(&self, t: Claimed, outcome: Outcome) -> anyhow::Result<bool> {
        // A delivery that happened but was not recorded would be repeated when the lease ends
        // (a second AddMedia for MPS), so recording gets a few tries of its own.
        let mut tries = 0;
        loop {
            match self.store.record_outcome(t.clone(), outcome.clone()).await {
                Ok(held) => return Ok(held),
                Err(e) if tries < 3 => {
                    tries += 1;
                    warn!(trigger = %t.id, error = format!("{e:#}"), "recording the outcome failed; trying again");
                    tokio::time::sleep(Duration::from_millis(200 << tries)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Verifies the object a job announces and plans what follows: the store's attributes
    /// and the matching workflows' triggers, or the rejection and its notices.
    async fn verify(
        &self,
        job: &Claimed,
        announced: Delivery,
        workflows: &[Workflow],
    ) -> Result<VerifiedWrite, DeliveryError> {
        // Read once: its mode (for jobs queued without it) and, for a verified object, its
        // owner's standing.
        let upload = match &job.upload_id {
            Some(id) => self
                .store
                .get_upload(id)
                .await
                .map_err(|e| DeliveryError::Retry(format!("reading the upload: {e:#}")))?,
            None => None,
        };
        let mode = announced.upload_mode.or(upload.as_ref().map(|u| u.mode));
        let verdict = self.verifier.verify(&announced, mode).await?;
        let verdict = self.judge_standing(job, upload.as_ref(), verdict).await?;
        let key = announced.object_key.clone();
        let unplanned = |e: anyhow::Error| DeliveryError::Fatal(format!("{e:#}"));
        let (plan, size, content_type) = match verdict {
            Verdict::Verified {
                head,
                container,
                copy,
            } => {
                let object = Delivery {
                    etag: head.etag,
                    size: i64::try_from(head.size).ok(),
                    content_type: head.content_type.clone(),
                    container: container.map(str::to_owned),
                    protected_key: copy,
                    ..announced
                };
                let plan = Plan::for_object(workflows, &object).map_err(unplanned)?;
                (plan, object.size, head.content_type)
            }
            Verdict::Rejected { code, detail } => {
                let plan =
                    Plan::rejected(workflows, &announced, code, detail).map_err(unplanned)?;
                (plan, None, None)
            }
            Verdict::Missing { detail } => {
                info!(job = %job.id, ?key, "announced object not in the store; the upload stays open");
                metrics::counter!("mediagate_verifications_total", "outcome" => "missing")
                    .increment(1);
                return Ok(VerifiedWrite::missing(detail));
            }
        };
        let outcome = plan.code.map_or("verified", Reason::as_str);
        info!(job = %job.id, ?key, outcome, "object verified");
        metrics::counter!("mediagate_verifications_total", "outcome" => outcome).increment(1);
        Ok(VerifiedWrite {
            upload_state: plan.upload_state,
            upload_reason: plan.code,
            size,
            content_type,
            detail: plan.detail,
            triggers: plan.triggers,
            held_until: self.clock.now_millis() + self.lease_ms,
            missing: false,
        })
    }

    /// A verified object of a suspended user, or one past its user's plan, is refused like an
    /// object that is not what it claims: its size is the store's.
    async fn judge_standing(
        &self,
        job: &Claimed,
        upload: Option<&UploadRow>,
        verdict: Verdict,
    ) -> Result<Verdict, DeliveryError> {
        let (Verdict::Verified { head, copy, .. }, Some(upload)) = (&verdict, upload) else {
            return Ok(verdict);
        };
        let unavailable =
            |e: anyhow::Error| DeliveryError::Retry(format!("reading the user's standing: {e:#}"));
        let refusal = judge_verified(
            &self.store,
            &self.quotas,
            upload,
            head.size,
            self.clock.now_millis(),
        )
        .await
        .map_err(unavailable)?;
        let Some(refusal) = refusal else {
            return Ok(verdict);
        };
        // A copy nobody will read; a lifecycle rule takes it if this fails.
        if let Some(copy) = copy
            && let Err(e) = self.sinks.objects.delete_copy(copy).await
        {
            warn!(job = %job.id, error = %e, "deleting the copy of a refused object failed");
        }
        Ok(match refusal {
            Refusal::Suspended => Verdict::Rejected {
                code: Reason::UserSuspended,
                detail: "the user is suspended".into(),
            },
            other => Verdict::Rejected {
                code: Reason::QuotaExceeded,
                detail: other.to_string(),
            },
        })
    }

    async fn deliver(
        &self,
        workflow: &Workflow,
        delivery: &Delivery,
    ) -> Result<Delivered, DeliveryError> {
        let def = &workflow.def;
        let sink = match &def.sink {
            Target::Mps { .. } => &self.sinks.mps,
            Target::Webhook { .. } => &self.sinks.webhook,
        };
        // A receiver that reports back is told where to, and where its outputs go.
        let reported;
        let delivery = match (&def.sink, &self.report_url) {
            (Target::Webhook { .. }, Some(url)) if def.track_outcome => {
                reported = Delivery {
                    report: Some(ReportTo {
                        report_url: url.clone(),
                        output_bucket: def.outputs_bucket().to_owned(),
                        output_prefix: def.output_prefix.clone(),
                    }),
                    ..delivery.clone()
                };
                &reported
            }
            _ => delivery,
        };
        sink.deliver(&def.sink, delivery).await
    }
}

/// What a job came to when it did not fail.
enum Done {
    Delivered(Delivered),
    Verified(VerifiedWrite),
}
