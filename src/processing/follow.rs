//! Following processing to its outcome: the MPS runs a delivery started are looked up through
//! the MPS API (messages only make a lookup due sooner), each on its own backoff, within this
//! instance's query budget; a succeeded run's outputs are looked up in the store before the
//! upload is `ready`; an outcome still open past the timeout fails.

use std::num::NonZeroU32;
use std::sync::Arc;

use tracing::{info, warn};

use super::mps::{
    MAX_IDS_PER_QUERY, MediaLookup, MediaOutputs, MpsQueries, RunLookup, RunVerdict,
    output_location, run_verdict,
};
use crate::clock::Clock;
use crate::kinds::{OutputKind, Reason, RunState};
use crate::storage::reader::{Lookup as Found, ObjectReader};
use crate::store::{DueRun, Lookup, OutputRow, Store};
use crate::workflows::Workflow;

/// How often a succeeded run's outputs are looked for before the upload fails with
/// `output_missing`: stores show a new object at once, so a few looks cover a slow listing.
const OUTPUT_LOOKS: i64 = 4;

/// Messages make a run's lookup due at most once a second: a replayed one costs nothing more.
const HINT_EVERY_MS: i64 = 1000;

/// The follower's settings.
#[derive(Debug, Clone)]
pub struct FollowSettings {
    pub poll_min_ms: i64,
    pub poll_max_ms: i64,
    pub timeout_ms: i64,
    /// How long a claimed run is kept from other instances.
    pub lease_ms: i64,
    /// MPS queries a second, this instance.
    pub queries_per_second: u32,
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Runs looked up.
    pub looked_up: usize,
    /// Runs that ended.
    pub finished: usize,
    /// Outcomes that timed out.
    pub timed_out: u64,
}

type Limiter = governor::DefaultDirectRateLimiter;

pub struct Follower {
    store: Store,
    mps: Arc<dyn MpsQueries>,
    objects: Arc<dyn ObjectReader>,
    clock: Arc<dyn Clock>,
    settings: FollowSettings,
    budget: Limiter,
}

impl Follower {
    pub fn new(
        store: Store,
        mps: Arc<dyn MpsQueries>,
        objects: Arc<dyn ObjectReader>,
        clock: Arc<dyn Clock>,
        settings: FollowSettings,
    ) -> Follower {
        let per_second = NonZeroU32::new(settings.queries_per_second).unwrap_or(NonZeroU32::MIN);
        Follower {
            // Evenly spaced, no burst: never more than the budget in any second.
            budget: governor::RateLimiter::direct(
                governor::Quota::per_second(per_second).allow_burst(NonZeroU32::MIN),
            ),
            store,
            mps,
            objects,
            clock,
            settings,
        }
    }

    /// Times out what is overdue, then looks up every run due now, in calls of up to ten.
    pub async fn run_once(&self) -> anyhow::Result<Pass> {
        let now = self.clock.now_millis();
        let mut pass = Pass {
            timed_out: self
                .store
                .time_out_outcomes(now, self.settings.timeout_ms)
                .await?,
            ..Pass::default()
        };
        if pass.timed_out > 0 {
            metrics::counter!("mediagate_processing_outcomes_total", "sink" => "mps", "outcome" => "timed_out")
                .increment(pass.timed_out);
        }
        let limit = self.settings.queries_per_second.max(1) * MAX_IDS_PER_QUERY as u32;
        let due = self
            .store
            .claim_due_runs(now, self.settings.lease_ms, limit)
            .await?;
        if due.is_empty() {
            return Ok(pass);
        }
        let workflows = self.store.workflows().await?;
        for runs in due.chunks(MAX_IDS_PER_QUERY) {
            self.budget.until_ready().await;
            let ids: Vec<String> = runs.iter().map(|r| r.run_id.clone()).collect();
            let answer = self.mps.query_runs(&ids).await;
            metrics::counter!("mediagate_mps_queries_total", "action" => "QueryMediaWorkflowExecutionList", "outcome" => if answer.is_ok() { "ok" } else { "error" })
                .increment(1);
            // One media lookup for every run of the call that succeeded.
            let media = match &answer {
                Ok(found) => self.media_of(found, runs).await,
                Err(_) => Ok(MediaLookup::default()),
            };
            for run in runs {
                let lookup = match &answer {
                    Err(e) => self.again(run, false, format!("lookup failed: {e}")),
                    Ok(found) => match found.executions.iter().find(|e| e.run_id == run.run_id) {
                        None => self.again(run, false, "not visible yet".into()),
                        Some(execution) => {
                            let activities = serde_json::to_string(&activities(execution)).ok();
                            let verdict = run_verdict(execution);
                            let lookup = self.judge(run, verdict, &workflows, &media).await;
                            with_activities(lookup, activities)
                        }
                    },
                };
                pass.looked_up += 1;
                if let Lookup::Finished { state, .. } = &lookup {
                    pass.finished += 1;
                    info!(run = %run.run_id, state = %state, "processing run ended");
                    metrics::counter!("mediagate_processing_outcomes_total", "sink" => "mps", "outcome" => state.as_str())
                        .increment(1);
                    let took = (self.clock.now_millis() - run.opened_at).max(0) as f64 / 1000.0;
                    metrics::histogram!("mediagate_processing_seconds", "sink" => "mps")
                        .record(took);
                }
                self.store
                    .record_lookup(run, lookup, self.clock.now_millis())
                    .await?;
            }
        }
        Ok(pass)
    }

    /// `QueryMediaList` for the media of the runs in `found` that succeeded (at most ten, one
    /// call), or why it failed.
    async fn media_of(&self, found: &RunLookup, runs: &[DueRun]) -> Result<MediaLookup, String> {
        let mut ids: Vec<String> = found
            .executions
            .iter()
            .filter(|e| run_verdict(e) == RunVerdict::Succeeded)
            .filter_map(|e| runs.iter().find(|r| r.run_id == e.run_id))
            .map(|r| r.media_id.clone())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Ok(MediaLookup::default());
        }
        self.budget.until_ready().await;
        let media = self.mps.query_media(&ids).await;
        metrics::counter!("mediagate_mps_queries_total", "action" => "QueryMediaList", "outcome" => if media.is_ok() { "ok" } else { "error" })
            .increment(1);
        media.map_err(|e| format!("media lookup failed: {e}"))
    }

    /// What a verdict on `run` comes to: another wait, a failure, or (outputs found) success.
    async fn judge(
        &self,
        run: &DueRun,
        verdict: RunVerdict,
        workflows: &[Workflow],
        media: &Result<MediaLookup, String>,
    ) -> Lookup {
        match verdict {
            RunVerdict::Running => self.again(run, true, "running".into()),
            RunVerdict::Failed {
                activity,
                code,
                message,
            } => finished(
                RunState::Failed,
                Some(Reason::ProcessingFailed),
                Some(code),
                Some(message),
                format!("failed in activity {activity:?}"),
                Vec::new(),
            ),
            RunVerdict::Succeeded => {
                let Some(workflow) = workflows.iter().find(|w| w.id == run.workflow_id) else {
                    return finished(
                        RunState::Failed,
                        Some(Reason::ProcessingFailed),
                        Some("WorkflowDeleted".into()),
                        None,
                        "its workflow was deleted".into(),
                        Vec::new(),
                    );
                };
                match self.outputs(run, workflow, media).await {
                    Ok(outputs) => finished(
                        RunState::Succeeded,
                        None,
                        None,
                        None,
                        format!("succeeded with {} outputs", outputs.len()),
                        outputs,
                    ),
                    Err(Missing::Retry(why)) if run.output_looks + 1 < OUTPUT_LOOKS => {
                        match self.again(run, true, why) {
                            Lookup::Open {
                                next_check_at,
                                interval_ms,
                                running,
                                result,
                                activities,
                                ..
                            } => Lookup::Open {
                                next_check_at,
                                interval_ms,
                                running,
                                output_look: true,
                                result,
                                activities,
                            },
                            finished => finished,
                        }
                    }
                    Err(Missing::Retry(why) | Missing::Never(why)) => finished(
                        RunState::Failed,
                        Some(Reason::OutputMissing),
                        Some("OutputMissing".into()),
                        Some(why.clone()),
                        why,
                        Vec::new(),
                    ),
                }
            }
        }
    }

    /// The outputs of `run`'s media (as `media` lists it), each found in the store where its
    /// workflow keeps them.
    async fn outputs(
        &self,
        run: &DueRun,
        workflow: &Workflow,
        media: &Result<MediaLookup, String>,
    ) -> Result<Vec<OutputRow>, Missing> {
        let media = media.as_ref().map_err(|e| Missing::Retry(e.clone()))?;
        let Some(media) = media.media.iter().find(|m| m.media_id == run.media_id) else {
            return Err(Missing::Retry("the media is not listed yet".into()));
        };
        let mut outputs = Vec::new();
        for (name, kind, url, deleted, details) in listed(media) {
            // The cover may be the app's own (AddMedia's `CoverURL`), not the workflow's
            // output: only one in the output location is kept.
            let optional = name == "cover";
            if deleted {
                return Err(Missing::Retry(format!("output {name:?} is marked deleted")));
            }
            let def = &workflow.def;
            let location = output_location(url).ok().filter(|(bucket, key)| {
                bucket == def.outputs_bucket()
                    && def
                        .output_prefix
                        .as_deref()
                        .is_none_or(|p| key.starts_with(p))
            });
            let Some((bucket, key)) = location else {
                if optional {
                    continue;
                }
                return Err(Missing::Never(format!(
                    "output {name:?} is not an object in the workflow's output location"
                )));
            };
            let size = match self.objects.head_output(&bucket, &key).await {
                Ok(Found::Found(head)) => i64::try_from(head.size).ok(),
                Ok(_) => {
                    return Err(Missing::Retry(format!(
                        "output {name:?} is not in the store"
                    )));
                }
                Err(e) => return Err(Missing::Retry(format!("output {name:?}: {e}"))),
            };
            outputs.push(OutputRow {
                trigger_id: run.trigger_id.clone(),
                upload_id: run.upload_id.clone(),
                workflow_name: def.name.clone(),
                name,
                kind,
                bucket,
                object_key: key,
                size,
                ..details
            });
        }
        Ok(outputs)
    }

    /// Looks again after the next wait (doubled, within the configured bounds).
    fn again(&self, run: &DueRun, running: bool, result: String) -> Lookup {
        let interval_ms = (run.interval_ms * 2)
            .clamp(self.settings.poll_min_ms, self.settings.poll_max_ms.max(1));
        if !running {
            warn!(run = %run.run_id, %result, "processing run not settled; looking again later");
        }
        Lookup::Open {
            next_check_at: self.clock.now_millis() + interval_ms,
            interval_ms,
            running,
            output_look: false,
            result,
            activities: None,
        }
    }
}

/// Takes a processor's message about `run_id` (or why it could not be read) as a hint: the
/// run's next lookup is due `now`. A message that
/// could not be read, or names a run mediagate does not follow, changes nothing; both are
/// counted.
pub async fn hint(store: &Store, run_id: Result<String, String>, now: i64) -> anyhow::Result<()> {
    let outcome = match run_id {
        Err(e) => {
            info!(error = %e, "an MPS message could not be read; dropped");
            "unreadable"
        }
        Ok(run_id) if store.hint_run(&run_id, now, HINT_EVERY_MS).await? => "hinted",
        Ok(_) => "unknown_run",
    };
    metrics::counter!("mediagate_mps_messages_total", "outcome" => outcome).increment(1);
    Ok(())
}

/// Why outputs could not be kept: worth another look, or never.
enum Missing {
    Retry(String),
    Never(String),
}

fn finished(
    state: RunState,
    reason: Option<Reason>,
    code: Option<String>,
    message: Option<String>,
    result: String,
    outputs: Vec<OutputRow>,
) -> Lookup {
    Lookup::Finished {
        state,
        reason,
        code,
        message,
        result,
        activities: None,
        outputs,
    }
}

fn with_activities(lookup: Lookup, listed: Option<String>) -> Lookup {
    match lookup {
        Lookup::Open {
            next_check_at,
            interval_ms,
            running,
            output_look,
            result,
            ..
        } => Lookup::Open {
            next_check_at,
            interval_ms,
            running,
            output_look,
            result,
            activities: listed,
        },
        Lookup::Finished {
            state,
            reason,
            code,
            message,
            result,
            outputs,
            ..
        } => Lookup::Finished {
            state,
            reason,
            code,
            message,
            result,
            activities: listed,
            outputs,
        },
    }
}

/// The activities of a run as operators see them.
fn activities(e: &super::mps::Execution) -> serde_json::Value {
    e.activities
        .iter()
        .map(|a| {
            serde_json::json!({
                "name": a.name, "type": a.kind, "state": a.state,
                "code": a.code, "message": a.message,
            })
        })
        .collect()
}

/// Every output a media lists: its plays (video, or audio without a picture), snapshots and
/// cover, each named uniquely, with what MPS says of it.
fn listed(media: &MediaOutputs) -> Vec<(String, OutputKind, &str, bool, OutputRow)> {
    let blank = OutputRow {
        trigger_id: String::new(),
        upload_id: None,
        workflow_name: String::new(),
        name: String::new(),
        kind: OutputKind::Other,
        bucket: String::new(),
        object_key: String::new(),
        format: None,
        width: None,
        height: None,
        duration_ms: None,
        size: None,
    };
    let mut out = Vec::new();
    let mut names = std::collections::HashSet::new();
    let mut unique = |base: String| {
        let mut name = base.clone();
        let mut n = 1;
        while !names.insert(name.clone()) {
            n += 1;
            name = format!("{base}-{n}");
        }
        name
    };
    for play in &media.plays {
        let kind = if play.width.is_some() || play.height.is_some() {
            OutputKind::Video
        } else {
            OutputKind::Audio
        };
        let details = OutputRow {
            format: play.format.clone(),
            width: play.width.map(i64::from),
            height: play.height.map(i64::from),
            duration_ms: play.duration_ms.and_then(|d| i64::try_from(d).ok()),
            ..blank.clone()
        };
        let name = unique(named("play", &play.activity_name));
        out.push((
            name,
            kind,
            play.file.url.as_str(),
            play.file.deleted,
            details,
        ));
    }
    // A sequence names its images by a `{Count}` pattern, no one object: not listed.
    for snapshot in media
        .snapshots
        .iter()
        .filter(|s| !s.file.url.contains("%7BCount%7D") && !s.file.url.contains("{Count}"))
    {
        let name = unique(named("snapshot", &snapshot.activity_name));
        let (url, deleted) = (snapshot.file.url.as_str(), snapshot.file.deleted);
        out.push((name, OutputKind::Image, url, deleted, blank.clone()));
    }
    if let Some(cover) = media.cover_url.as_deref().filter(|c| !c.is_empty()) {
        let name = unique("cover".into());
        out.push((name, OutputKind::Image, cover, false, blank.clone()));
    }
    out
}

/// `kind` or `kind:activity`, bounded, for an output's name.
fn named(kind: &str, activity: &str) -> String {
    let activity: String = activity
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    if activity.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}:{activity}")
    }
}
