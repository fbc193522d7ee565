//! `/v1/uploads*` and `/v1/sts-token`: the app-facing side of credential vending.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeZone, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use tracing::instrument;

use super::error::ApiError;
use super::extract::{Authorization, Json, Query, User, page};
use super::limits::ClientIp;
use super::openapi::{ErrorBody, RefreshedCredentials, StsToken, StsTokenError, UploadList};
use crate::app::App;
use crate::config::Provider;
use crate::credentials::UserSegment;
use crate::credentials::forms::PostForm;
use crate::kinds::{
    OutputKind, ProcessingState, Reason, TriggerSink, TriggerState, UploadMode, UploadState,
};
use crate::media::{MediaAttributes, MediaAttributesInput};
use crate::sts::Credentials;
use crate::uploads::callback::OssCallbackParams;
use crate::uploads::issue::{Delivery, Issued};
use crate::uploads::sign::{self, Signed};
use crate::uploads::watch::StreamSlot;
use crate::uploads::{Caller, NewUpload, OutputLink, Upload};
use axum::response::sse::{Event, KeepAlive, Sse};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUpload {
    /// The file's name: at most 200 characters, no `/`, `\`, `*`, `?`, `"` or control
    /// characters, not `.` or `..`, and no extension or a video or audio extension media
    /// workflows accept, in any case (the patterns say exactly which).
    #[schema(min_length = 1, max_length = 200)]
    file_name: String,
    /// The declared size in bytes; a form (`post_policy`) is signed for exactly this size.
    #[schema(maximum = 9223372036854775807_u64)]
    #[serde(default, deserialize_with = "crate::json::integer")]
    size: Option<u64>,
    /// A MIME type: at most 255 printable ASCII characters.
    #[schema(max_length = 255, pattern = r"^[\x20-\x7e]*$")]
    content_type: Option<String>,
    #[serde(default)]
    mode: Mode,
    media: Option<MediaAttributesInput>,
}

/// How the client delivers the object: `sts` (credentials), `post_policy` (a signed form) or
/// `presigned` (no credentials; each store request signed by `POST /v1/uploads/{id}/sign`).
#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum Mode {
    #[default]
    Sts,
    PostPolicy,
    Presigned,
}

impl From<Mode> for UploadMode {
    fn from(m: Mode) -> UploadMode {
        match m {
            Mode::Sts => UploadMode::Sts,
            Mode::PostPolicy => UploadMode::PostPolicy,
            Mode::Presigned => UploadMode::Presigned,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CredentialsView<'a> {
    access_key_id: &'a str,
    access_key_secret: &'a str,
    security_token: &'a str,
    expiration: String,
}

fn credentials_view(c: &Credentials) -> CredentialsView<'_> {
    CredentialsView {
        access_key_id: &c.access_key_id,
        access_key_secret: c.access_key_secret.expose_secret(),
        security_token: c.security_token.expose_secret(),
        expiration: rfc3339(c.expiration),
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedUpload<'a> {
    upload_id: &'a str,
    object_key: &'a str,
    provider: &'static str,
    bucket: &'a str,
    region: &'a str,
    endpoint: &'a str,
    /// S3 only: whether clients must address the bucket in the path (RGW, MinIO).
    #[serde(skip_serializing_if = "Option::is_none")]
    force_path_style: Option<bool>,
    expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    credentials: Option<CredentialsView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    callback: Option<OssCallbackParams>,
    #[serde(skip_serializing_if = "Option::is_none")]
    post_policy: Option<PostForm>,
}

/// `POST /v1/uploads`: checks the file and its media attributes, vends credentials scoped to
/// the caller's prefix (or the one object), and records the upload as `issued`.
#[instrument(skip_all, fields(user = %principal.segment.as_str()))]
#[utoipa::path(post, path = "/v1/uploads", tag = "uploads", security(("app" = [])),
    request_body = CreateUpload,
    responses(
        (status = 201, description = "the upload, with scoped credentials or a signed form", body = CreatedUpload),
        (status = 400, description = "bad_request: malformed JSON", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 422, description = "invalid_request / unsupported_media_type / invalid_media_attributes", body = ErrorBody),
        (status = 429, description = "rate_limited (Retry-After)", body = ErrorBody),
        (status = 502, description = "sts_error", body = ErrorBody),
        (status = 503, description = "sts_unavailable / timeout (Retry-After)", body = ErrorBody)))]
pub async fn create(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    User(principal): User,
    Json(req): Json<CreateUpload>,
) -> Result<Response, ApiError> {
    let caller = Caller {
        principal: &principal,
        ip,
    };
    let uploads = app.uploads();
    let issued = uploads.issue(&caller, req.into()).await?;
    let body = CreatedUpload::new(&issued);
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

impl<'a> CreatedUpload<'a> {
    fn new(issued: &'a Issued<'a>) -> Self {
        let storage = issued.storage;
        let (credentials, callback, post_policy) = match &issued.delivery {
            Delivery::Sdk { callback } => (
                Some(credentials_view(&issued.credentials)),
                callback.clone(),
                None,
            ),
            Delivery::Form(form) => (None, None, Some(form.clone())),
            Delivery::Presigned => (None, None, None),
        };
        let s3 = storage.provider == Provider::S3;
        CreatedUpload {
            upload_id: &issued.upload_id,
            object_key: issued.key.as_str(),
            provider: storage.provider.as_str(),
            bucket: &storage.bucket,
            region: &storage.region,
            endpoint: &storage.endpoint,
            force_path_style: s3.then_some(storage.uses_path_style()),
            expires_at: rfc3339(issued.credentials.expiration),
            credentials,
            callback,
            post_policy,
        }
    }
}

impl From<CreateUpload> for NewUpload {
    fn from(req: CreateUpload) -> NewUpload {
        NewUpload {
            file_name: req.file_name,
            size: req.size,
            content_type: req.content_type,
            mode: req.mode.into(),
            media: req.media,
        }
    }
}

/// `POST /v1/uploads/{id}/credentials`: fresh credentials for an upload still in progress.
#[instrument(skip_all, fields(user = %principal.segment.as_str()))]
#[utoipa::path(post, path = "/v1/uploads/{id}/credentials", tag = "uploads", security(("app" = [])),
    params(("id" = String, Path, description = "upload id")),
    responses(
        (status = 200, description = "fresh credentials for the same upload", body = RefreshedCredentials),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "not_found (also for another user's upload)", body = ErrorBody),
        (status = 409, description = "invalid_state", body = ErrorBody),
        (status = 429, description = "rate_limited (Retry-After)", body = ErrorBody),
        (status = 502, description = "sts_error", body = ErrorBody),
        (status = 503, description = "sts_unavailable (Retry-After)", body = ErrorBody)))]
pub async fn refresh_credentials(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    User(principal): User,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = Caller {
        principal: &principal,
        ip,
    };
    let (upload, creds) = app.uploads().refresh(&caller, &id).await?;
    let body = RefreshedCredentials {
        upload_id: upload.id,
        object_key: upload.object_key,
        expires_at: rfc3339(creds.expiration),
        credentials: credentials_view(&creds),
    };
    Ok(axum::Json(body).into_response())
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UploadView {
    upload_id: String,
    object_key: String,
    bucket: String,
    file_name: String,
    size: Option<i64>,
    content_type: Option<String>,
    state: UploadState,
    /// Why it was skipped, rejected or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    state_reason: Option<Reason>,
    media: MediaAttributes,
    created_at: String,
    uploaded_at: Option<String>,
    triggers: Vec<TriggerView>,
    /// What processing made, each with a GET URL for exactly that object (signed when this
    /// view was read, valid `outputs.url_expires_seconds`).
    outputs: Vec<OutputView>,
}

/// An output of processing as app users see it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OutputView {
    workflow: String,
    name: String,
    kind: OutputKind,
    format: Option<String>,
    width: Option<i64>,
    height: Option<i64>,
    duration_ms: Option<i64>,
    size: Option<i64>,
    url: String,
    url_expires_at: String,
}

impl From<OutputLink> for OutputView {
    fn from(l: OutputLink) -> Self {
        let o = l.output;
        OutputView {
            workflow: o.workflow_name,
            name: o.name,
            kind: o.kind,
            format: o.format,
            width: o.width,
            height: o.height,
            duration_ms: o.duration_ms,
            size: o.size,
            url: l.url,
            url_expires_at: rfc3339_millis(l.url_expires_at),
        }
    }
}

/// A trigger as its upload's owner sees it: state and a fixed reason, never a receiver's or
/// MPS's error text (operators read that on `/v1/admin/uploads/{id}`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct TriggerView {
    id: String,
    workflow: String,
    sink: TriggerSink,
    state: TriggerState,
    attempts: i64,
    /// `delivery_failed` (will be retried) or `delivery_abandoned` (retries used up).
    last_error: Option<Reason>,
    media_id: Option<String>,
    /// Its processing once delivered: `untracked` when its workflow does not follow it.
    processing: ProcessingState,
}

impl From<crate::store::TriggerRow> for TriggerView {
    fn from(t: crate::store::TriggerRow) -> Self {
        let last_error = match t.state {
            TriggerState::Dead => Some(Reason::DeliveryAbandoned),
            TriggerState::Failed => Some(Reason::DeliveryFailed),
            _ => None,
        };
        TriggerView {
            id: t.id,
            workflow: t.workflow,
            sink: t.sink,
            state: t.state,
            attempts: t.attempts,
            last_error,
            media_id: t.media_id,
            processing: t.processing,
        }
    }
}

impl From<Upload> for UploadView {
    fn from(u: Upload) -> Self {
        UploadView {
            media: u.media,
            upload_id: u.id,
            object_key: u.object_key,
            bucket: u.bucket,
            file_name: u.file_name,
            size: u.size,
            content_type: u.content_type,
            state: u.state,
            state_reason: u.reason,
            created_at: rfc3339_millis(u.created_at),
            uploaded_at: u.uploaded_at.map(rfc3339_millis),
            triggers: Vec::new(),
            outputs: Vec::new(),
        }
    }
}

/// `GET /v1/uploads/{id}`.
#[utoipa::path(get, path = "/v1/uploads/{id}", tag = "uploads", security(("app" = [])),
    params(("id" = String, Path, description = "upload id")),
    responses(
        (status = 200, description = "the upload and its triggers", body = UploadView),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody)))]
pub async fn get(
    State(app): State<Arc<App>>,
    User(principal): User,
    Path(id): Path<String>,
) -> Result<axum::Json<UploadView>, ApiError> {
    Ok(axum::Json(view_of(&app, &principal.segment, &id).await?))
}

/// The caller's upload `id` as its owner sees it.
async fn view_of(app: &App, owner: &UserSegment, id: &str) -> Result<UploadView, ApiError> {
    let (upload, triggers, outputs) = app.uploads().view(owner, id).await?;
    Ok(UploadView {
        triggers: triggers.into_iter().map(Into::into).collect(),
        outputs: outputs.into_iter().map(Into::into).collect(),
        ..upload.into()
    })
}

/// `GET /v1/uploads/{id}/events`: the upload view as Server-Sent Events (`event: upload`),
/// now and at every change made by any instance, with keep-alives, until it is final.
#[utoipa::path(get, path = "/v1/uploads/{id}/events", tag = "uploads", security(("app" = [])),
    params(("id" = String, Path, description = "upload id")),
    responses(
        (status = 200, description = "`text/event-stream`: `event: upload` with the upload view, at every change; `: keep-alive` at least every 15 s; closed after a final state", content_type = "text/event-stream", body = UploadView),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
        (status = 429, description = "rate_limited: limits.streams_per_user streams open", body = ErrorBody)))]
pub async fn events(
    State(app): State<Arc<App>>,
    User(principal): User,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let owner = principal.segment;
    let max = app.config.limits.streams_per_user as usize;
    let slot = app
        .changes
        .admit(owner.as_str(), max)
        .ok_or_else(|| ApiError::too_many(format!("at most {max} streams open at once")))?;
    let first = view_of(&app, &owner, &id).await?;
    let watch = Watch {
        changes: app.changes.subscribe(),
        stopping: app.stopping.subscribe(),
        app,
        owner,
        id,
        last: String::new(),
        next: Some(first),
        done: false,
        _slot: slot,
    };
    let stream = futures_util::stream::unfold(watch, Watch::next_event);
    let keep_alive = KeepAlive::new().interval(std::time::Duration::from_secs(15));
    Ok(Sse::new(stream).keep_alive(keep_alive).into_response())
}

/// One stream of an upload's views: what it sent last, and how it hears of changes.
struct Watch {
    app: Arc<App>,
    owner: UserSegment,
    id: String,
    changes: tokio::sync::broadcast::Receiver<Arc<str>>,
    stopping: tokio::sync::watch::Receiver<bool>,
    /// The view sent last, as sent.
    last: String,
    next: Option<UploadView>,
    done: bool,
    _slot: StreamSlot,
}

impl Watch {
    async fn next_event(mut self) -> Option<(Result<Event, std::convert::Infallible>, Watch)> {
        loop {
            if let Some(view) = self.next.take() {
                let data = serde_json::to_string(&view).unwrap_or_default();
                if data != self.last {
                    self.done = view.state.is_final();
                    self.last = data.clone();
                    return Some((Ok(Event::default().event("upload").data(data)), self));
                }
            }
            if self.done || *self.stopping.borrow() {
                return None;
            }
            tokio::select! {
                heard = self.changes.recv() => match heard {
                    Ok(changed) if *changed != *self.id => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    // This upload, or changes missed while behind: read it again.
                    _ => self.next = view_of(&self.app, &self.owner, &self.id).await.ok(),
                },
                _ = self.stopping.changed() => return None,
            }
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Default 20.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(format = Uuid)]
    cursor: Option<String>,
}

/// `GET /v1/uploads?limit=&cursor=`: the caller's uploads, newest first.
#[utoipa::path(get, path = "/v1/uploads", tag = "uploads", security(("app" = [])),
    params(ListParams),
    responses(
        (status = 200, description = "the caller's uploads, newest first", body = UploadList),
        (status = 400, description = "bad_request", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody)))]
pub async fn list(
    State(app): State<Arc<App>>,
    User(principal): User,
    Query(params): Query<ListParams>,
) -> Result<axum::Json<UploadList>, ApiError> {
    let limit = page(params.limit, params.cursor.as_deref(), 20, 100)?;
    let cursor = params.cursor.as_deref();
    let mut uploads = app
        .uploads()
        .list(&principal.segment, limit + 1, cursor)
        .await?;
    let next_cursor = (uploads.len() > limit as usize)
        .then(|| {
            uploads.truncate(limit as usize);
            uploads.last().map(|(u, _)| u.id.clone())
        })
        .flatten();
    let uploads = uploads
        .into_iter()
        .map(|(upload, outputs)| UploadView {
            outputs: outputs.into_iter().map(Into::into).collect(),
            ..upload.into()
        })
        .collect();
    Ok(axum::Json(UploadList {
        uploads,
        next_cursor,
    }))
}

/// `GET /v1/sts-token`: the format of the Alibaba OSS mobile SDKs' `OSSAuthCredentialsProvider`,
/// errors included, for the caller's whole prefix.
#[utoipa::path(get, path = "/v1/sts-token", tag = "uploads", security(("app" = [])),
    responses(
        (status = 200, description = "OSSAuthCredentialsProvider format", body = StsToken),
        (status = 401, description = "unauthorized", body = StsTokenError),
        (status = 403, description = "forbidden: credential_scope is upload", body = StsTokenError),
        (status = 429, description = "rate_limited", body = StsTokenError),
        (status = 502, description = "sts_error", body = StsTokenError),
        (status = 503, description = "sts_unavailable", body = StsTokenError)))]
pub async fn sts_token(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    Authorization(authorization): Authorization,
) -> Response {
    let result = async {
        let authorization = authorization.as_ref().and_then(|v| v.to_str().ok());
        let principal = app.auth.authenticate(authorization).await?;
        let user = crate::quotas::standing::admit(&app.store, &principal).await?;
        // A plan that is not configured gets no credentials at all.
        app.config
            .quotas
            .plan(user.as_ref(), principal.plan.as_deref())?;
        let caller = Caller {
            principal: &principal,
            ip,
        };
        Ok::<_, ApiError>(app.uploads().prefix_credentials(&caller).await?)
    }
    .await;
    match result {
        Ok(c) => axum::Json(sts_token_view(&c)).into_response(),
        Err(e) => {
            let body = sts_token_error(&e);
            e.into_response_with(body)
        }
    }
}

fn sts_token_view(c: &Credentials) -> StsToken<'_> {
    StsToken {
        status_code: 200,
        access_key_id: &c.access_key_id,
        access_key_secret: c.access_key_secret.expose_secret(),
        security_token: c.security_token.expose_secret(),
        expiration: rfc3339(c.expiration),
    }
}

/// An error in the SDKs' own shape.
fn sts_token_error(e: &ApiError) -> serde_json::Value {
    serde_json::to_value(StsTokenError {
        status_code: e.status.as_u16(),
        error_code: e.code.to_owned(),
        error_message: e.message.clone(),
    })
    .unwrap_or_default()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub(super) fn rfc3339_millis(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// One store request as Uppy's `signRequest` describes it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SignRequest {
    method: SignMethod,
    /// The upload's own object key; any other is refused.
    #[schema(min_length = 1, max_length = 1024)]
    key: String,
    /// The multipart upload, for UploadPart, ListParts, CompleteMultipartUpload and
    /// AbortMultipartUpload: 1-1024 characters of `A-Z a-z 0-9 . _ ~ - + / =` (what stores
    /// mint; an `&` would add sub-resources to an OSS signature).
    #[schema(pattern = r"^[A-Za-z0-9._~+/=-]{1,1024}$")]
    upload_id: Option<String>,
    /// For UploadPart.
    #[schema(minimum = 1, maximum = 10000)]
    #[serde(default, deserialize_with = "crate::json::integer")]
    part_number: Option<u32>,
    /// The file's MIME type (PutObject): at most 255 printable ASCII characters.
    #[schema(max_length = 255, pattern = r"^[\x20-\x7e]*$")]
    content_type: Option<String>,
    /// Seconds the URL should stay valid; capped at `storage.presign_expires_seconds`.
    #[schema(minimum = 1, maximum = 604800)]
    #[serde(default, deserialize_with = "crate::json::integer")]
    expires_in: Option<u64>,
}

#[derive(Debug, Deserialize, Clone, Copy, utoipa::ToSchema)]
enum SignMethod {
    #[serde(rename = "PUT")]
    Put,
    #[serde(rename = "POST")]
    Post,
    #[serde(rename = "GET")]
    Get,
    #[serde(rename = "DELETE")]
    Delete,
}

impl SignMethod {
    fn as_str(self) -> &'static str {
        match self {
            SignMethod::Put => "PUT",
            SignMethod::Post => "POST",
            SignMethod::Get => "GET",
            SignMethod::Delete => "DELETE",
        }
    }
}

/// What Uppy's `signRequest` expects back.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SignedRequest {
    url: String,
    key: String,
    /// Send exactly these with the request (the signature may cover them).
    headers: std::collections::BTreeMap<String, String>,
    /// For a `post_policy` upload's PutObject: POST these form fields (the file last) to
    /// `url` instead; the form pins the key and the size.
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<std::collections::BTreeMap<&'static str, String>>,
}

/// `POST /v1/uploads/{id}/sign`: one request to the store, signed for the upload's own key.
#[instrument(skip_all, fields(user = %principal.segment.as_str()))]
#[utoipa::path(post, path = "/v1/uploads/{id}/sign", tag = "uploads", security(("app" = [])),
    params(("id" = String, Path, description = "upload id")),
    request_body = SignRequest,
    responses(
        (status = 200, description = "the signed request", body = SignedRequest),
        (status = 400, description = "bad_request: malformed JSON", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "forbidden: another key than the upload's", body = ErrorBody),
        (status = 404, description = "not_found (also for another user's upload)", body = ErrorBody),
        (status = 409, description = "invalid_state: not a presigned upload, or no longer issued", body = ErrorBody),
        (status = 422, description = "invalid_request", body = ErrorBody),
        (status = 429, description = "rate_limited: credentials had to be renewed beyond the vend limits (Retry-After)", body = ErrorBody),
        (status = 502, description = "sts_error", body = ErrorBody),
        (status = 503, description = "sts_unavailable (Retry-After)", body = ErrorBody)))]
pub async fn sign(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    User(principal): User,
    Path(id): Path<String>,
    Json(req): Json<SignRequest>,
) -> Result<axum::Json<SignedRequest>, ApiError> {
    let caller = Caller {
        principal: &principal,
        ip,
    };
    let key = req.key.clone();
    let signed = app.uploads().sign(&caller, &id, req.into()).await?;
    Ok(axum::Json(SignedRequest::new(signed, key)))
}

impl SignedRequest {
    fn new(signed: Signed, key: String) -> Self {
        match signed {
            Signed::Request { url, headers } => SignedRequest {
                url,
                key,
                headers,
                fields: None,
            },
            Signed::Form { url, fields } => SignedRequest {
                url,
                key,
                headers: Default::default(),
                fields: Some(fields),
            },
        }
    }
}

impl From<SignRequest> for sign::SignRequest {
    fn from(r: SignRequest) -> sign::SignRequest {
        sign::SignRequest {
            method: r.method.as_str(),
            key: r.key,
            multipart_upload_id: r.upload_id,
            part_number: r.part_number,
            content_type: r.content_type,
            expires_in: r.expires_in,
        }
    }
}
