//! `/v1/uploads*` and `/v1/sts-token`: the app-facing side of credential vending.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeZone, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::instrument;

use super::error::ApiError;
use super::extract::{Authorization, Json, Query, User, page};
use super::limits::ClientIp;
use super::openapi::{ErrorBody, RefreshedCredentials, StsToken, StsTokenError, UploadList};
use crate::app::App;
use crate::auth::Principal;
use crate::config::{PostSigning, Provider};
use crate::credentials::ObjectKey;
use crate::credentials::Scope;
use crate::credentials::forms::{PostForm, post_form, service_credentials};
use crate::credentials::issue::Delivery;
use crate::credentials::presign::{Operation, PresignError, presign};
use crate::media::{MediaAttributes, MediaAttributesInput};
use crate::processing::verify::VERIFY_SINK;
use crate::store::UploadRow;
use crate::sts::Credentials;
use crate::uploads::callback::{OssCallbackParams, oss_callback_params};
use crate::uploads::{
    TriggerState, UploadMode, UploadRequest, UploadState, form_size_range, is_content_type,
};

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
    app.limits.vend(ip, principal.segment.as_str())?;
    let storage = &app.config.storage;
    let request = UploadRequest::parse(
        &req.file_name,
        req.size,
        req.content_type,
        req.mode.into(),
        req.media,
        storage.max_upload_bytes,
    )?;
    let issued = app
        .issuer()
        .issue(&principal.segment, &principal.subject, request)
        .await?;
    let (credentials, callback, post_policy) = match issued.delivery {
        Delivery::Sdk { callback } => (Some(credentials_view(&issued.credentials)), callback, None),
        Delivery::Form(form) => (None, None, Some(form)),
        Delivery::Presigned => (None, None, None),
    };
    let s3 = storage.provider == Provider::S3;
    let body = CreatedUpload {
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
    };
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

/// The upload, if it exists and belongs to the caller; anyone else sees 404, so upload ids
/// cannot be probed.
async fn owned_upload(app: &App, principal: &Principal, id: &str) -> Result<UploadRow, ApiError> {
    if uuid::Uuid::try_parse(id).is_err() {
        return Err(ApiError::not_found());
    }
    match app.store.get_upload(id).await? {
        Some(u) if u.owner == principal.segment.as_str() => Ok(u),
        _ => Err(ApiError::not_found()),
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
    app.limits.vend(ip, principal.segment.as_str())?;
    let upload = owned_upload(&app, &principal, &id).await?;
    if upload.state != UploadState::Issued {
        return Err(ApiError::invalid_state(format!(
            "upload is {}; credentials are only issued before the upload completes",
            upload.state
        )));
    }
    let creds = upload_credentials(&app, &principal, &upload).await?;
    app.store.touch_vended(&upload.id).await?;
    Ok(axum::Json(RefreshedCredentials {
        upload_id: upload.id,
        object_key: upload.object_key,
        expires_at: rfc3339(creds.expiration),
        credentials: credentials_view(&creds),
    })
    .into_response())
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
    /// Why it was skipped or rejected: `not_media`, `no_matching_workflow`, `size_mismatch`,
    /// `too_large`, `object_missing`, `symlink`, `empty` or `not_verifiable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    state_reason: Option<String>,
    #[schema(value_type = MediaAttributes)]
    media: serde_json::Value,
    created_at: String,
    uploaded_at: Option<String>,
    triggers: Vec<TriggerView>,
}

/// Why an upload triggered nothing, as app users may see it: only codes from this list, so
/// no operator detail (workflow names, buckets, prefixes) reaches them.
const USER_REASONS: &[&str] = &[
    "not_media",
    "no_matching_workflow",
    "size_mismatch",
    "too_large",
    "object_missing",
    "symlink",
    "empty",
    "not_verifiable",
];

/// A trigger as its upload's owner sees it: state and a fixed reason, never a receiver's or
/// MPS's error text (operators read that on `/v1/admin/uploads/{id}`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct TriggerView {
    id: String,
    workflow: String,
    sink: String,
    state: TriggerState,
    attempts: i64,
    /// `delivery_failed` (will be retried) or `delivery_abandoned` (retries used up).
    last_error: Option<&'static str>,
    media_id: Option<String>,
}

impl From<crate::store::TriggerRow> for TriggerView {
    fn from(t: crate::store::TriggerRow) -> Self {
        let last_error = match t.state {
            TriggerState::Dead => Some("delivery_abandoned"),
            TriggerState::Failed => Some("delivery_failed"),
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
        }
    }
}

impl From<UploadRow> for UploadView {
    fn from(u: UploadRow) -> Self {
        UploadView {
            media: serde_json::from_str(&u.media).unwrap_or_else(|_| json!({})),
            upload_id: u.id,
            object_key: u.object_key,
            bucket: u.bucket,
            file_name: u.file_name,
            size: u.size,
            content_type: u.content_type,
            state: u.state,
            state_reason: u
                .state_reason
                .filter(|r| USER_REASONS.contains(&r.as_str())),
            created_at: rfc3339_millis(u.created_at),
            uploaded_at: u.uploaded_at.map(rfc3339_millis),
            triggers: Vec::new(),
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
    let upload = owned_upload(&app, &principal, &id).await?;
    let triggers = app.store.triggers_for_upload(&upload.id).await?;
    // Verification is the upload's own state to app users; operators see its attempts.
    let workflow_triggers = triggers.into_iter().filter(|t| t.sink != VERIFY_SINK);
    Ok(axum::Json(UploadView {
        triggers: workflow_triggers.map(Into::into).collect(),
        ..upload.into()
    }))
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
) -> Result<Response, ApiError> {
    let limit = page(params.limit, params.cursor.as_deref(), 20, 100)?;
    let rows = app
        .store
        .list_uploads(
            principal.segment.as_str(),
            limit + 1,
            params.cursor.as_deref(),
        )
        .await?;
    let more = rows.len() > limit as usize;
    let uploads: Vec<UploadView> = rows
        .into_iter()
        .take(limit as usize)
        .map(Into::into)
        .collect();
    let next_cursor = if more {
        uploads.last().map(|u| u.upload_id.clone())
    } else {
        None
    };
    Ok(axum::Json(UploadList {
        uploads,
        next_cursor,
    })
    .into_response())
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
        app.limits.vend(ip, principal.segment.as_str())?;
        if app.config.storage.credential_scope == crate::config::CredentialScope::Upload {
            // These credentials would cover the whole prefix, which this deployment forbids.
            return Err(ApiError::forbidden(
                "credentials for a whole prefix are disabled (storage.credential_scope = \"upload\"); use POST /v1/uploads",
            ));
        }
        let scope = Scope::user(&app.prefix, &principal.segment);
        Ok::<_, ApiError>(app.vendor.credentials(&principal.segment, &scope).await?)
    }
    .await;
    match result {
        Ok(c) => axum::Json(StsToken {
            status_code: 200,
            access_key_id: &c.access_key_id,
            access_key_secret: c.access_key_secret.expose_secret(),
            security_token: c.security_token.expose_secret(),
            expiration: rfc3339(c.expiration),
        })
        .into_response(),
        Err(e) => {
            let body = serde_json::to_value(StsTokenError {
                status_code: e.status.as_u16(),
                error_code: e.code.to_owned(),
                error_message: e.message.clone(),
            })
            .unwrap_or_default();
            e.into_response_with(body)
        }
    }
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

/// The scope of an upload's session credentials: the caller's prefix or the one object.
fn upload_scope(app: &App, principal: &Principal, upload: &UploadRow) -> Scope {
    match app.config.storage.credential_scope {
        crate::config::CredentialScope::User => Scope::user(&app.prefix, &principal.segment),
        crate::config::CredentialScope::Upload => Scope::Object(upload.object_key.clone()),
    }
}

/// The session credentials of an upload, from the cache (no STS call while cached ones are
/// fresh).
async fn upload_credentials(
    app: &App,
    principal: &Principal,
    upload: &UploadRow,
) -> Result<Arc<Credentials>, ApiError> {
    let scope = upload_scope(app, principal, upload);
    Ok(app.vendor.credentials(&principal.segment, &scope).await?)
}

/// The longest `expiresIn` a sign request may ask for (SigV4's own limit, a week).
const MAX_PRESIGN_SECONDS: u64 = 604_800;

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
    let upload = owned_upload(&app, &principal, &id).await?;
    if req.key != upload.object_key {
        return Err(ApiError::forbidden(
            "requests are signed for this upload's own key only",
        ));
    }
    let op = Operation::parse(
        req.method.as_str(),
        req.upload_id.as_deref(),
        req.part_number,
    )
    .map_err(ApiError::invalid_request)?;
    // Presigned uploads get any of their requests signed; a form upload only its one PUT,
    // answered with the form.
    let form = upload.mode == UploadMode::PostPolicy && op == Operation::PutObject;
    if upload.state != UploadState::Issued || !(upload.mode == UploadMode::Presigned || form) {
        return Err(ApiError::invalid_state(format!(
            "upload is a {} upload, {}; requests are signed for issued presigned uploads (and the one PUT of a post_policy upload) only",
            upload.mode, upload.state
        )));
    }
    let storage = &app.config.storage;
    if form {
        let creds = match storage.post_signing {
            PostSigning::Service => Arc::new(service_credentials(&app.config.sts)),
            PostSigning::Session => upload_credentials(&app, &principal, &upload).await?,
        };
        let callback = oss_callback_params(&app.config.server.public_url, &upload.id);
        let post = post_form(
            storage,
            &ObjectKey::issued(upload.object_key.clone()),
            &upload.id,
            &creds,
            form_size_range(upload.size, storage.max_upload_bytes),
            &callback.callback,
        );
        return Ok(axum::Json(SignedRequest {
            url: post.url,
            key: upload.object_key,
            headers: Default::default(),
            fields: Some(post.fields),
        }));
    }
    if let Some(t) = &req.content_type
        && !is_content_type(t)
    {
        return Err(ApiError::invalid_request(
            "contentType must be at most 255 printable ASCII characters",
        ));
    }
    let expires_in = match req.expires_in {
        Some(s) if !(1..=MAX_PRESIGN_SECONDS).contains(&s) => {
            return Err(ApiError::invalid_request(format!(
                "expiresIn must be 1-{MAX_PRESIGN_SECONDS} seconds"
            )));
        }
        asked => asked.unwrap_or(u64::MAX),
    };
    // Always the upload's own session credentials, whatever signs forms: their policy grants
    // no reads, so a header the store acts on unsigned (`x-amz-copy-source`) cannot copy
    // another object in. Signing every part must not mean an STS call per part: only what
    // the cache cannot answer counts against the vend limits.
    let scope = upload_scope(&app, &principal, &upload);
    let creds = app
        .vendor
        .credentials_admitted(&principal.segment, &scope, || {
            app.limits.vend(ip, principal.segment.as_str())
        })
        .await?;
    let file_type = req
        .content_type
        .as_deref()
        .or(upload.content_type.as_deref());
    let remaining = (creds.expiration - chrono::Utc::now()).num_seconds().max(1) as u64;
    let expires_in = expires_in
        .min(storage.presign_expires_seconds)
        .min(remaining);
    let signed = presign(
        storage,
        &creds,
        &upload.object_key,
        &op,
        op.content_type(file_type),
        std::time::Duration::from_secs(expires_in),
        std::time::SystemTime::now(),
    )
    .map_err(|e| match e {
        PresignError::Unsignable(e) => ApiError::invalid_request(e.to_string()),
        PresignError::Signer(e) => ApiError::internal(anyhow::anyhow!(e)),
    })?;
    if let Some(multipart) = op.upload_id() {
        app.store
            .note_multipart_upload(&upload.id, multipart)
            .await?;
    }
    Ok(axum::Json(SignedRequest {
        url: signed.url,
        key: upload.object_key,
        headers: signed.headers,
        fields: None,
    }))
}
