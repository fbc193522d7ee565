//! Webhook processors report their outcome: `running`, `succeeded` with its outputs, or
//! `failed`, signed the Standard Webhooks way with the secret of the trigger's workflow. Every
//! report is checked before anything is stored: signature and timestamp, the trigger and its
//! workflow, a repeat of its `webhook-id`, outputs in the workflow's output location, and for
//! a success, each output in the store.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::kinds::{OutputKind, ProcessingState, Reason};
use crate::signing::{constant_time_eq, webhook_signature, webhook_signing_key};
use crate::storage::check_object_key;
use crate::storage::reader::{Lookup, ObjectReader};
use crate::store::{OutputRow, Report, Reported, Store};
use crate::workflows::{Sink, Workflow};

/// Where processors report, under `server.public_url`.
pub const REPORT_PATH: &str = "/v1/notifications/processing";
/// How far a report's timestamp may be from now, either way.
const MAX_SKEW_SECONDS: i64 = 300;
const MAX_OUTPUTS: usize = 64;

/// A report as a processor sends it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportBody {
    /// The trigger id the delivery carried (`webhook-id` of the delivery).
    #[schema(max_length = 64)]
    pub trigger_id: String,
    pub state: ReportState,
    /// For `failed`: the processor's code and message (operators read them; app users see
    /// `processing_failed`).
    pub error: Option<ReportedError>,
    /// For `succeeded`: what it made, each an object in the workflow's output location.
    #[serde(default)]
    #[schema(max_items = 64)]
    pub outputs: Vec<ReportedOutput>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportState {
    Running,
    Succeeded,
    Failed,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportedError {
    #[schema(max_length = 64)]
    pub code: String,
    #[schema(max_length = 1000)]
    pub message: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportedOutput {
    /// Unique within the report, 1-64 characters.
    #[schema(min_length = 1, max_length = 64)]
    pub name: String,
    pub kind: OutputKind,
    /// Default: the workflow's output bucket (the only one allowed).
    pub bucket: Option<String>,
    #[schema(min_length = 1, max_length = 1024)]
    pub key: String,
    #[schema(max_length = 32)]
    pub format: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub duration_ms: Option<u64>,
    pub size: Option<u64>,
}

/// The Standard Webhooks headers of a report, and its body as signed.
pub struct Signed<'a> {
    pub id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signatures: Option<&'a str>,
    pub body: &'a [u8],
}

/// Why a report was not taken.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Not signed by the trigger's workflow, out of the time window, or naming no trigger.
    #[error("{0}")]
    Signature(String),
    #[error("{0}")]
    Malformed(String),
    /// The outcome ended before, or the workflow does not follow one.
    #[error("{0}")]
    Finished(String),
    /// Sent before the answer to the trigger's delivery was recorded: worth sending again in
    /// a moment.
    #[error("{0}")]
    Early(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    OutputMissing(String),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// Checks a report and records it; see the module's description for the order of checks.
pub async fn accept(
    store: &Store,
    objects: &dyn ObjectReader,
    workflows: &[Workflow],
    signed: Signed<'_>,
    now: DateTime<Utc>,
) -> Result<Reported, ReportError> {
    let unsigned = |why: &str| ReportError::Signature(why.to_owned());
    let id = signed
        .id
        .filter(|id| (1..=256).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| unsigned("webhook-id is missing or malformed"))?;
    let timestamp: i64 = signed
        .timestamp
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| unsigned("webhook-timestamp is missing or malformed"))?;
    if (now.timestamp() - timestamp).abs() > MAX_SKEW_SECONDS {
        return Err(unsigned("webhook-timestamp is more than 5 minutes away"));
    }
    let body: ReportBody = serde_json::from_slice(signed.body)
        .map_err(|e| ReportError::Malformed(format!("report body: {e}")))?;
    let target = store
        .report_target(&body.trigger_id)
        .await?
        .ok_or_else(|| unsigned("no delivered trigger has this id"))?;
    let early = !target.delivered;
    let workflow = workflows
        .iter()
        .find(|w| w.id == target.workflow_id)
        .ok_or_else(|| unsigned("the trigger's workflow is gone"))?;
    let Sink::Webhook { secret, .. } = &workflow.def.sink else {
        return Err(unsigned("the trigger's workflow takes no reports"));
    };
    let key = webhook_signing_key(secrecy::ExposeSecret::expose_secret(secret));
    let expected = webhook_signature(&key, id, timestamp, signed.body);
    let signed_by_it = signed
        .signatures
        .unwrap_or_default()
        .split_whitespace()
        .any(|s| constant_time_eq(s.as_bytes(), expected.as_bytes()));
    if !signed_by_it {
        return Err(unsigned(
            "webhook-signature does not match the workflow's secret",
        ));
    }
    if early {
        return Err(ReportError::Early(
            "the trigger's delivery is still being recorded; send the report again".into(),
        ));
    }
    if !workflow.def.track_outcome {
        return Err(ReportError::Finished(
            "the trigger's workflow does not follow outcomes (track_outcome)".into(),
        ));
    }
    let (processing, reason) = match body.state {
        ReportState::Running => (ProcessingState::Running, None),
        ReportState::Succeeded => (ProcessingState::Succeeded, None),
        ReportState::Failed => (ProcessingState::Failed, Some(Reason::ProcessingFailed)),
    };
    if body.state != ReportState::Succeeded && !body.outputs.is_empty() {
        return Err(ReportError::Invalid(
            "only a succeeded report lists outputs".into(),
        ));
    }
    // An ended outcome takes nothing more (a repeat of its own report is still a repeat).
    let outputs = if target.processing.is_final() {
        Vec::new()
    } else {
        checked_outputs(objects, workflow, &body, target.upload_id.clone()).await?
    };
    let (code, message) = match &body.error {
        Some(e) if body.state == ReportState::Failed => (
            Some(bounded(&e.code, 64)),
            e.message.as_deref().map(|m| bounded(m, 1000)),
        ),
        _ => (None, None),
    };
    let report = Report {
        webhook_id: id.to_owned(),
        trigger_id: body.trigger_id.clone(),
        processing,
        reason,
        code,
        message,
        outputs,
    };
    let recorded = store.record_report(&report, now.timestamp_millis()).await?;
    match recorded {
        Reported::Finished => Err(ReportError::Finished(
            "the trigger's outcome has ended".into(),
        )),
        Reported::Applied if processing.is_final() => {
            metrics::counter!("mediagate_processing_outcomes_total", "sink" => "webhook", "outcome" => processing.as_str())
                .increment(1);
            Ok(recorded)
        }
        other => Ok(other),
    }
}

/// The outputs of a succeeded report, each in the workflow's output location and found in
/// the store (its size the store's).
async fn checked_outputs(
    objects: &dyn ObjectReader,
    workflow: &Workflow,
    body: &ReportBody,
    upload_id: Option<String>,
) -> Result<Vec<OutputRow>, ReportError> {
    if body.outputs.len() > MAX_OUTPUTS {
        return Err(ReportError::Invalid(format!(
            "at most {MAX_OUTPUTS} outputs"
        )));
    }
    let def = &workflow.def;
    let mut names = std::collections::HashSet::new();
    let mut rows = Vec::new();
    for o in &body.outputs {
        let name_ok = (1..=64).contains(&o.name.chars().count())
            && !o.name.chars().any(char::is_control)
            && names.insert(o.name.as_str());
        if !name_ok {
            return Err(ReportError::Invalid(
                "output names are 1-64 characters without control characters, unique".into(),
            ));
        }
        let bucket = o.bucket.as_deref().unwrap_or(def.outputs_bucket());
        let inside = bucket == def.outputs_bucket()
            && check_object_key(&o.key).is_ok()
            && def
                .output_prefix
                .as_deref()
                .is_none_or(|p| o.key.starts_with(p));
        if !inside {
            return Err(ReportError::Invalid(format!(
                "output {:?} is not an object in the workflow's output bucket and prefix",
                o.name
            )));
        }
        let size = match objects.head_output(bucket, &o.key).await {
            Ok(Lookup::Found(head)) => i64::try_from(head.size).ok(),
            Ok(_) => {
                return Err(ReportError::OutputMissing(format!(
                    "output {:?} is not in the store",
                    o.name
                )));
            }
            Err(e) => {
                return Err(ReportError::Store(anyhow::anyhow!(
                    "looking up an output: {e}"
                )));
            }
        };
        rows.push(OutputRow {
            trigger_id: body.trigger_id.clone(),
            upload_id: upload_id.clone(),
            workflow_name: def.name.clone(),
            name: o.name.clone(),
            kind: o.kind,
            bucket: bucket.to_owned(),
            object_key: o.key.clone(),
            format: o.format.as_deref().map(|f| bounded(f, 32)),
            width: o.width.map(i64::from),
            height: o.height.map(i64::from),
            duration_ms: o.duration_ms.and_then(|d| i64::try_from(d).ok()),
            size,
        });
    }
    Ok(rows)
}

/// At most `max` characters of `text`, control characters left out.
fn bounded(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max).collect()
}
