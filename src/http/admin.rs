//! `/v1/admin/*`: workflows, matching explanations and the trigger queue, for operators
//! holding `auth.admin_token`.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::ApiError;
use super::extract::{Json, Query, bearer, page};
use super::limits::ClientIp;
use super::openapi::{AuditList, ErrorBody, MatchReport, TriggerList, WorkflowList};
use super::uploads::rfc3339_millis;
use crate::app::App;
use crate::config::{SinkKind, WorkflowConfig, WorkflowState, overlaps_upload_prefix};
use crate::kinds::{
    EventOutcome, EventSource, OutputKind, ProcessingState, Reason, RunState, TriggerSink,
    TriggerState, UploadMode, UploadState,
};
use crate::media::MediaAttributes;
use crate::processing::{Reprocessed, reprocess};
use crate::signing::constant_time_eq;
use crate::store::{Actor, AuditRow, EventRow, Saved, TriggerRow};
use crate::store::{OutputRow, ReportRow, RunRow};
use crate::uploads::{History, Upload};
use crate::workflows::{Sink, Workflow, WorkflowDef};

/// An operator authenticated with `auth.admin_token`, and where the request came from, for
/// the audit trail; with no token configured the admin API is closed.
pub struct Admin(pub(super) Actor);

impl FromRequestParts<Arc<App>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let denied = || ApiError::unauthorized("admin token required");
        let expected = app.config.auth.admin_token.as_ref().ok_or_else(denied)?;
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let presented = bearer(header).ok_or_else(denied)?;
        if constant_time_eq(presented.as_bytes(), expected.expose_secret().as_bytes()) {
            let ClientIp(ip) = ClientIp::from_request_parts(parts, app).await?;
            let request_id = parts
                .headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            Ok(Admin(Actor {
                actor: "admin-token".into(),
                client_ip: ip.to_string(),
                request_id,
            }))
        } else {
            Err(denied())
        }
    }
}

/// A workflow as the admin API shows it: the webhook secret is never returned.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WorkflowView {
    id: String,
    name: String,
    state: WorkflowState,
    bucket: String,
    prefix: String,
    output_prefix: Option<String>,
    /// Where its outputs may be (its own bucket when not set).
    output_bucket: Option<String>,
    /// Whether processing is followed to its outcome after delivery.
    track_outcome: bool,
    sink: SinkKind,
    media_workflow_id: Option<String>,
    webhook_url: Option<String>,
    webhook_secret_set: bool,
    source: String,
}

impl From<Workflow> for WorkflowView {
    fn from(w: Workflow) -> Self {
        let (media_workflow_id, webhook_url) = match &w.def.sink {
            Sink::Mps { media_workflow_id } => (Some(media_workflow_id.clone()), None),
            Sink::Webhook { url, .. } => (None, Some(url.clone())),
        };
        WorkflowView {
            sink: w.def.sink.kind(),
            webhook_secret_set: matches!(w.def.sink, Sink::Webhook { .. }),
            id: w.id,
            name: w.def.name,
            state: w.def.state,
            bucket: w.def.bucket,
            prefix: w.def.prefix,
            output_prefix: w.def.output_prefix,
            output_bucket: w.def.output_bucket,
            track_outcome: w.def.track_outcome,
            media_workflow_id,
            webhook_url,
            source: w.source,
        }
    }
}

/// A workflow definition as the audit trail records it (no secret, no id).
fn def_detail(def: &WorkflowDef) -> serde_json::Value {
    let mut view = serde_json::to_value(WorkflowView::from(Workflow {
        id: String::new(),
        source: String::new(),
        def: def.clone(),
    }))
    .unwrap_or_default();
    if let Some(map) = view.as_object_mut() {
        map.remove("id");
        map.remove("source");
    }
    view
}

fn parse_def(app: &App, spec: WorkflowConfig) -> Result<WorkflowDef, ApiError> {
    let def = WorkflowDef::parse(spec)
        .map_err(|problems| ApiError::invalid_request(problems.join("; ")))?;
    if let Some(output) = &def.output_prefix
        && def.bucket == app.config.storage.bucket
        && overlaps_upload_prefix(output, app.prefix.as_str())
    {
        return Err(ApiError::invalid_request(format!(
            "output_prefix {output:?} overlaps the upload prefix {:?}: app users could write into it",
            app.prefix.as_str()
        )));
    }
    Ok(def)
}

fn saved(result: Saved, status: StatusCode) -> Result<Response, ApiError> {
    match result {
        Saved::Saved(w) => Ok((status, axum::Json(WorkflowView::from(*w))).into_response()),
        Saved::NameTaken => Err(ApiError::name_taken("a workflow with this name exists")),
        Saved::NotFound => Err(ApiError::not_found()),
    }
}

#[utoipa::path(get, path = "/v1/admin/workflows", tag = "admin", security(("admin" = [])),
    responses(
        (status = 200, description = "every workflow", body = WorkflowList),
        (status = 401, description = "unauthorized", body = ErrorBody)))]
pub async fn list_workflows(State(app): State<Arc<App>>, _: Admin) -> Result<Response, ApiError> {
    let workflows: Vec<WorkflowView> = app
        .store
        .list_workflows()
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(axum::Json(WorkflowList { workflows }).into_response())
}

#[utoipa::path(post, path = "/v1/admin/workflows", tag = "admin", security(("admin" = [])),
    request_body = WorkflowConfig,
    responses(
        (status = 201, description = "created", body = WorkflowView),
        (status = 400, description = "bad_request: malformed JSON", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 409, description = "name_taken", body = ErrorBody),
        (status = 422, description = "invalid_request", body = ErrorBody)))]
pub async fn create_workflow(
    State(app): State<Arc<App>>,
    Admin(who): Admin,
    Json(spec): Json<WorkflowConfig>,
) -> Result<Response, ApiError> {
    let def = parse_def(&app, spec)?;
    let detail = json!({ "after": def_detail(&def) });
    saved(
        app.store.create_workflow(def, &who, &detail).await?,
        StatusCode::CREATED,
    )
}

#[utoipa::path(get, path = "/v1/admin/workflows/{id}", tag = "admin", security(("admin" = [])),
    params(("id" = String, Path, description = "workflow id")),
    responses(
        (status = 200, description = "the workflow", body = WorkflowView),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody)))]
pub async fn get_workflow(
    State(app): State<Arc<App>>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match app.store.get_workflow(&id).await? {
        Some(w) => Ok(axum::Json(WorkflowView::from(w)).into_response()),
        None => Err(ApiError::not_found()),
    }
}

#[utoipa::path(put, path = "/v1/admin/workflows/{id}", tag = "admin", security(("admin" = [])),
    params(("id" = String, Path, description = "workflow id")),
    request_body = WorkflowConfig,
    responses(
        (status = 200, description = "replaced", body = WorkflowView),
        (status = 400, description = "bad_request: malformed JSON", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
        (status = 409, description = "name_taken", body = ErrorBody),
        (status = 422, description = "invalid_request", body = ErrorBody)))]
pub async fn update_workflow(
    State(app): State<Arc<App>>,
    Admin(who): Admin,
    Path(id): Path<String>,
    Json(spec): Json<WorkflowConfig>,
) -> Result<Response, ApiError> {
    let def = parse_def(&app, spec)?;
    let after = def_detail(&def);
    let detail = |before: &Workflow| json!({ "before": def_detail(&before.def), "after": after });
    saved(
        app.store.update_workflow(&id, def, &who, detail).await?,
        StatusCode::OK,
    )
}

#[utoipa::path(delete, path = "/v1/admin/workflows/{id}", tag = "admin", security(("admin" = [])),
    params(("id" = String, Path, description = "workflow id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody)))]
pub async fn delete_workflow(
    State(app): State<Arc<App>>,
    Admin(who): Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let detail = |before: &Workflow| json!({ "before": def_detail(&before.def) });
    if app.store.delete_workflow(&id, &who, detail).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found())
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct MatchParams {
    bucket: String,
    key: String,
}

/// `GET /v1/admin/match?bucket=B&key=K`: which workflows the object would trigger, and why.
#[utoipa::path(get, path = "/v1/admin/match", tag = "admin", security(("admin" = [])),
    params(MatchParams),
    responses(
        (status = 200, description = "which workflows the object would trigger, and why", body = MatchReport),
        (status = 400, description = "bad_request", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody)))]
pub async fn explain_match(
    State(app): State<Arc<App>>,
    _: Admin,
    Query(p): Query<MatchParams>,
) -> Result<Response, ApiError> {
    let workflows = app.store.list_workflows().await?;
    Ok(axum::Json(crate::workflows::match_report(
        &workflows, &p.bucket, &p.key,
    ))
    .into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TriggerParams {
    /// Default `failed`.
    state: Option<TriggerState>,
    /// Default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// `GET /v1/admin/triggers?state=failed|dead|pending|in_flight|delivered&limit=`.
#[utoipa::path(get, path = "/v1/admin/triggers", tag = "admin", security(("admin" = [])),
    params(TriggerParams),
    responses(
        (status = 200, description = "triggers in that state", body = TriggerList),
        (status = 400, description = "bad_request", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody)))]
pub async fn list_triggers(
    State(app): State<Arc<App>>,
    _: Admin,
    Query(p): Query<TriggerParams>,
) -> Result<Response, ApiError> {
    let state = p.state.unwrap_or(TriggerState::Failed);
    let limit = page(p.limit, None, 100, 1000)?;
    let triggers = app.store.list_triggers(state, limit).await?;
    Ok(axum::Json(TriggerList {
        triggers: triggers.into_iter().map(Into::into).collect(),
    })
    .into_response())
}

/// `POST /v1/admin/triggers/{id}/retry`: a failed or dead trigger goes back in the queue.
#[utoipa::path(post, path = "/v1/admin/triggers/{id}/retry", tag = "admin", security(("admin" = [])),
    params(("id" = String, Path, description = "trigger id")),
    responses(
        (status = 200, description = "back in the queue with a fresh budget", body = TriggerAdminView),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
        (status = 409, description = "invalid_state", body = ErrorBody)))]
pub async fn retry_trigger(
    State(app): State<Arc<App>>,
    Admin(who): Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let before = app.store.get_trigger(&id).await?;
    let detail = json!({ "before": before.as_ref().map(|t| json!({
        "state": t.state, "attempts": t.attempts, "last_error": t.last_error,
        "workflow": t.workflow, "upload_id": t.upload_id,
    })) });
    if let Some(t) = app.store.retry_trigger(&id, &who, &detail).await? {
        app.wake_worker.notify_one();
        return Ok(axum::Json(TriggerAdminView::from(t)).into_response());
    }
    match app.store.get_trigger(&id).await? {
        Some(t) => Err(ApiError::invalid_state(format!(
            "trigger is {}; only failed or dead triggers can be retried",
            t.state
        ))),
        None => Err(ApiError::not_found()),
    }
}

/// A trigger as operators see it: its full error text and when it is next due.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TriggerAdminView {
    id: String,
    upload_id: Option<String>,
    workflow: String,
    sink: TriggerSink,
    state: TriggerState,
    attempts: i64,
    /// The last failure as the sink reported it.
    last_error: Option<String>,
    media_id: Option<String>,
    /// Its processing once delivered, and why it failed.
    processing: ProcessingState,
    processing_reason: Option<Reason>,
    /// When a pending or failed trigger is due next.
    next_attempt_at: String,
    updated_at: String,
}

impl From<TriggerRow> for TriggerAdminView {
    fn from(t: TriggerRow) -> Self {
        TriggerAdminView {
            next_attempt_at: rfc3339_millis(t.next_attempt_at),
            updated_at: rfc3339_millis(t.updated_at),
            id: t.id,
            upload_id: t.upload_id,
            workflow: t.workflow,
            sink: t.sink,
            state: t.state,
            attempts: t.attempts,
            last_error: t.last_error,
            media_id: t.media_id,
            processing: t.processing,
            processing_reason: t.processing_reason,
        }
    }
}

/// A recorded notification as operators see it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventView {
    id: String,
    bucket: String,
    object_key: String,
    etag: String,
    size: Option<i64>,
    content_type: Option<String>,
    source: EventSource,
    upload_id: Option<String>,
    outcome: EventOutcome,
    /// Why nothing was triggered, in detail.
    reason: Option<String>,
    received_at: String,
}

impl From<EventRow> for EventView {
    fn from(e: EventRow) -> Self {
        EventView {
            received_at: rfc3339_millis(e.received_at),
            id: e.id,
            bucket: e.bucket,
            object_key: e.object_key,
            etag: e.etag,
            size: e.size,
            content_type: e.content_type,
            source: e.source,
            upload_id: e.upload_id,
            outcome: e.outcome,
            reason: e.reason,
        }
    }
}

/// One admin change: who (token holder, address, request), when, what.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditView {
    id: String,
    at: String,
    actor: String,
    client_ip: String,
    request_id: String,
    /// `workflow.create`, `workflow.update`, `workflow.delete`, `trigger.retry`,
    /// `upload.reprocess`, `user.change`.
    action: String,
    /// The workflow, trigger or upload id.
    target: String,
    /// What changed (never a secret).
    #[schema(value_type = Object)]
    detail: serde_json::Value,
}

impl From<AuditRow> for AuditView {
    fn from(a: AuditRow) -> Self {
        AuditView {
            at: rfc3339_millis(a.at),
            id: a.id,
            actor: a.actor,
            client_ip: a.client_ip,
            request_id: a.request_id,
            action: a.action,
            target: a.target,
            detail: a.detail,
        }
    }
}

/// An upload as operators see it: who uploaded it, every notification recorded for it
/// (repeats included) and its triggers with their full error text.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AdminUploadView {
    upload_id: String,
    owner: String,
    subject: String,
    bucket: String,
    object_key: String,
    file_name: String,
    size: Option<i64>,
    content_type: Option<String>,
    /// `sts`, `post_policy` or `external` (announced without a prior `POST /v1/uploads`).
    mode: UploadMode,
    state: UploadState,
    state_reason: Option<Reason>,
    media: MediaAttributes,
    created_at: String,
    uploaded_at: Option<String>,
    /// The verification jobs of the announced object (sink `verify`): attempts, and the
    /// reason in `last_error` when it was rejected.
    verification: Vec<TriggerAdminView>,
    triggers: Vec<TriggerAdminView>,
    events: Vec<EventView>,
    /// The processor runs its triggers started (MPS RunIds), as the last lookup found them.
    runs: Vec<RunView>,
    /// What webhook processors reported (each `webhook-id` once), with their errors.
    reports: Vec<ReportView>,
    /// What processing made, where it is in the store.
    outputs: Vec<OutputAdminView>,
    /// The lifecycle events queued for the app's backend (`[events]`): `workflow` is the
    /// event type, `id` its `webhook-id`; a dead one is replayed like any trigger.
    backend_events: Vec<TriggerAdminView>,
}

/// A processor's report as operators see it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ReportView {
    webhook_id: String,
    trigger_id: String,
    state: String,
    code: Option<String>,
    message: Option<String>,
    received_at: String,
}

impl From<ReportRow> for ReportView {
    fn from(r: ReportRow) -> Self {
        ReportView {
            webhook_id: r.webhook_id,
            trigger_id: r.trigger_id,
            state: r.state,
            code: r.code,
            message: r.message,
            received_at: rfc3339_millis(r.received_at),
        }
    }
}

/// A processor run as operators see it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RunView {
    run_id: String,
    trigger_id: String,
    media_id: String,
    state: RunState,
    lookups: i64,
    next_check_at: String,
    /// What the last lookup found.
    last_result: Option<String>,
    /// What the most recent lookups found (up to 20), oldest first.
    results: Vec<LookupView>,
    /// The activities as the last lookup listed them: name, type, state, code, message.
    #[schema(value_type = Vec<Object>)]
    activities: serde_json::Value,
    /// The processor's code and message when it failed.
    code: Option<String>,
    message: Option<String>,
    opened_at: String,
    finished_at: Option<String>,
}

impl From<RunRow> for RunView {
    fn from(r: RunRow) -> Self {
        RunView {
            activities: r
                .activities
                .as_deref()
                .and_then(|a| serde_json::from_str(a).ok())
                .unwrap_or_else(|| json!([])),
            run_id: r.run_id,
            trigger_id: r.trigger_id,
            media_id: r.media_id,
            state: r.state,
            lookups: r.lookups,
            next_check_at: rfc3339_millis(r.next_check_at),
            last_result: r.last_result,
            results: r
                .results
                .into_iter()
                .map(|(at, result)| LookupView {
                    at: rfc3339_millis(at),
                    result,
                })
                .collect(),
            code: r.code,
            message: r.message,
            opened_at: rfc3339_millis(r.opened_at),
            finished_at: r.finished_at.map(rfc3339_millis),
        }
    }
}

/// One lookup of a run: when, and what it found.
#[derive(Serialize, utoipa::ToSchema)]
pub struct LookupView {
    at: String,
    result: String,
}

/// An output as operators see it: where it is.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OutputAdminView {
    trigger_id: String,
    workflow: String,
    name: String,
    kind: OutputKind,
    bucket: String,
    object_key: String,
    size: Option<i64>,
}

impl From<OutputRow> for OutputAdminView {
    fn from(o: OutputRow) -> Self {
        OutputAdminView {
            trigger_id: o.trigger_id,
            workflow: o.workflow_name,
            name: o.name,
            kind: o.kind,
            bucket: o.bucket,
            object_key: o.object_key,
            size: o.size,
        }
    }
}

/// `GET /v1/admin/uploads/{id}`: the upload with its notifications and triggers in full.
#[utoipa::path(get, path = "/v1/admin/uploads/{id}", tag = "admin", security(("admin" = [])),
    params(("id" = String, Path, description = "upload id")),
    responses(
        (status = 200, description = "the upload, its notifications and its triggers", body = AdminUploadView),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody)))]
pub async fn get_upload(
    State(app): State<Arc<App>>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<axum::Json<AdminUploadView>, ApiError> {
    let history = Upload::history(&app.store, &id).await?;
    Ok(axum::Json(history.ok_or_else(ApiError::not_found)?.into()))
}

impl From<History> for AdminUploadView {
    fn from(h: History) -> Self {
        let u = h.upload;
        AdminUploadView {
            media: u.media,
            upload_id: u.id,
            owner: u.owner,
            subject: u.subject,
            bucket: u.bucket,
            object_key: u.object_key,
            file_name: u.file_name,
            size: u.size,
            content_type: u.content_type,
            mode: u.mode,
            state: u.state,
            state_reason: u.reason,
            created_at: rfc3339_millis(u.created_at),
            uploaded_at: u.uploaded_at.map(rfc3339_millis),
            verification: h.verification.into_iter().map(Into::into).collect(),
            triggers: h.triggers.into_iter().map(Into::into).collect(),
            events: h.events.into_iter().map(Into::into).collect(),
            runs: h.runs.into_iter().map(Into::into).collect(),
            reports: h.reports.into_iter().map(Into::into).collect(),
            outputs: h.outputs.into_iter().map(Into::into).collect(),
            backend_events: h.told.into_iter().map(Into::into).collect(),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ReprocessView {
    upload_id: String,
    /// The upload's state after matching: `uploaded` (triggers queued) or `skipped`.
    state: UploadState,
    /// How many triggers were queued.
    triggers: usize,
}

/// `POST /v1/admin/uploads/{id}/reprocess`: matches a completed upload again and queues its
/// triggers, on purpose (audited). Later notifications never do this by themselves.
#[utoipa::path(post, path = "/v1/admin/uploads/{id}/reprocess", tag = "admin", security(("admin" = [])),
    params(("id" = String, Path, description = "upload id")),
    responses(
        (status = 200, description = "matched again; triggers queued", body = ReprocessView),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
        (status = 409, description = "invalid_state: nothing announced yet, or triggers still on their way", body = ErrorBody)))]
pub async fn reprocess_upload(
    State(app): State<Arc<App>>,
    Admin(who): Admin,
    Path(id): Path<String>,
) -> Result<axum::Json<ReprocessView>, ApiError> {
    let storage = app.storage();
    match reprocess(&app.store, &storage, &id, &who, &app.wake_worker).await? {
        Reprocessed::Queued { triggers, state } => Ok(axum::Json(ReprocessView {
            upload_id: id,
            state,
            triggers,
        })),
        refused => Err(refused.into()),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(format = Uuid)]
    cursor: Option<String>,
}

/// `GET /v1/admin/audit?limit=&cursor=`: admin changes, newest first.
#[utoipa::path(get, path = "/v1/admin/audit", tag = "admin", security(("admin" = [])),
    params(AuditParams),
    responses(
        (status = 200, description = "admin changes, newest first", body = AuditList),
        (status = 400, description = "bad_request", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody)))]
pub async fn list_audit(
    State(app): State<Arc<App>>,
    _: Admin,
    Query(p): Query<AuditParams>,
) -> Result<Response, ApiError> {
    let limit = page(p.limit, p.cursor.as_deref(), 100, 1000)?;
    let mut entries = app.store.list_audit(limit + 1, p.cursor.as_deref()).await?;
    let next_cursor = if entries.len() > limit as usize {
        entries.truncate(limit as usize);
        entries.last().map(|e| e.id.clone())
    } else {
        None
    };
    Ok(axum::Json(AuditList {
        entries: entries.into_iter().map(Into::into).collect(),
        next_cursor,
    })
    .into_response())
}
