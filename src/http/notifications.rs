//! `/v1/notifications/*`: what object stores send after an upload. Each is authenticated by
//! its own signature or token (never a user JWT), recorded durably, then answered; sinks are
//! never called inline (OSS gives a callback 5 s). Verification and wire formats are the
//! `notifications` module's; this is the edge.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;

use super::error::ApiError;
use super::extract::{RawBody, bearer};
use super::openapi::{CallbackAck, ErrorBody};
use crate::app::App;
use crate::notifications::{
    Inbound, Parsed, mns, mps_hint, oss, query_token, s3, verify_mns_push, verify_mps_push,
    verify_oss_callback,
};
use crate::processing::follow::hint;
use crate::processing::reports::{self, ReportBody, Signed};
use crate::processing::{ObjectEvent, announce};
use crate::signing::constant_time_eq;
use crate::store::Recorded;
use crate::store::Reported;

/// The request as the signature checks read it.
fn inbound<'a>(uri: &'a Uri, headers: &'a [(String, String)], body: &'a [u8]) -> Inbound<'a> {
    Inbound {
        path: uri.path(),
        query: uri.query(),
        headers,
        body,
    }
}

/// Every header whose value is text, as the signature checks read them.
fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}

/// Records one checked event (waking the worker when it queued triggers).
async fn record(app: &App, event: ObjectEvent) -> Result<Recorded, ApiError> {
    Ok(announce(&app.store, &app.storage(), event, &app.wake_worker).await?)
}

/// An event no store would send is refused whole.
fn check(event: &ObjectEvent) -> Result<(), ApiError> {
    event.check().map_err(ApiError::bad_request)
}

/// Counts notifications refused as a whole (bad signature or token, malformed body), by
/// source: the last segment of the route.
pub async fn count_rejections(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let source: &'static str = match req.uri().path().rsplit('/').next() {
        Some("oss-callback") => "oss-callback",
        Some("oss-events") => "oss-events",
        Some("s3-events") => "s3-events",
        Some("mps-events") => "mps-events",
        Some("processing") => "processing",
        _ => "other",
    };
    let response = next.run(req).await;
    if response.status().is_client_error() || response.status().is_server_error() {
        metrics::counter!("mediagate_notifications_total", "source" => source, "outcome" => "rejected")
            .increment(1);
    }
    response
}

/// Records every event of a notification and counts what they came to.
async fn record_all(app: &App, parsed: Parsed) -> Result<NotificationTally, ApiError> {
    let mut tally = NotificationTally {
        ignored: parsed.ignored,
        ..NotificationTally::default()
    };
    // All or nothing: a refused event refuses the notification before any of it is recorded.
    for event in &parsed.events {
        check(event)?;
    }
    for event in parsed.events {
        tally.add(&record(app, event).await?);
    }
    Ok(tally)
}

/// `POST /v1/notifications/oss-callback`: OSS's upload callback, RSA-verified.
#[utoipa::path(post, path = "/v1/notifications/oss-callback", tag = "notifications",
    description = "OSS upload callback; authenticated by its RSA signature (`authorization`, `x-oss-pub-key-url`).",
    request_body(content = String, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "recorded (or a duplicate)", body = CallbackAck),
        (status = 400, description = "invalid_signature / bad_request", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 503, description = "key_unavailable (Retry-After)", body = ErrorBody)))]
pub async fn oss_callback(
    State(app): State<Arc<App>>,
    uri: Uri,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let headers = header_pairs(&headers);
    let inbound = inbound(&uri, &headers, &body);
    verify_oss_callback(&app.keys, &inbound).await?;
    let is_json = headers
        .iter()
        .any(|(k, v)| k == "content-type" && v.contains("json"));
    let event = oss::callback_event(&body, is_json)?;
    check(&event)?;
    let (upload_id, duplicate) = match record(&app, event).await? {
        Recorded::Accepted { upload_id, .. } => (upload_id, false),
        Recorded::Duplicate { upload_id } | Recorded::Repeat { upload_id } => (upload_id, true),
    };
    Ok(axum::Json(CallbackAck {
        status: "OK",
        upload_id,
        duplicate,
    })
    .into_response())
}

/// What a notification carrying several events came to.
#[derive(Default, serde::Serialize, utoipa::ToSchema)]
pub struct NotificationTally {
    accepted: usize,
    duplicates: usize,
    /// Other versions of objects completed before: recorded, nothing triggered.
    repeats: usize,
    ignored: usize,
}

impl NotificationTally {
    fn add(&mut self, r: &Recorded) {
        match r {
            Recorded::Accepted { .. } => self.accepted += 1,
            Recorded::Duplicate { .. } => self.duplicates += 1,
            Recorded::Repeat { .. } => self.repeats += 1,
        }
    }
}

/// `POST /v1/notifications/oss-events`: OSS events pushed by MNS, RSA-SHA1 verified.
#[utoipa::path(post, path = "/v1/notifications/oss-events", tag = "notifications",
    description = "OSS events pushed by MNS (base64 body); authenticated by the MNS RSA-SHA1 signature and, when configured, `?token=`.",
    request_body(content = String, content_type = "text/plain"),
    responses(
        (status = 200, description = "events counted", body = NotificationTally),
        (status = 400, description = "invalid_signature / bad_request", body = ErrorBody),
        (status = 403, description = "forbidden: another account's or topic's push", body = ErrorBody),
        (status = 404, description = "not_found: notifications.mns_account_id is not set", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 503, description = "key_unavailable (Retry-After)", body = ErrorBody)))]
pub async fn oss_events(
    State(app): State<Arc<App>>,
    uri: Uri,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let headers = header_pairs(&headers);
    let inbound = inbound(&uri, &headers, &body);
    verify_mns_push(
        &app.keys,
        &app.config.notifications,
        &inbound,
        chrono::Utc::now(),
    )
    .await?;
    let tally = record_all(&app, mns::oss_events(&body)?).await?;
    Ok(axum::Json(tally).into_response())
}

/// `POST /v1/notifications/mps-events`: MPS workflow messages pushed by MNS, RSA-SHA1
/// verified like `oss-events`. A message is a hint: it makes its run's next lookup due now
/// and never sets a state. One that is signed but cannot be used is answered 204 (and counted)
/// so that MNS does not retry it for a day.
#[utoipa::path(post, path = "/v1/notifications/mps-events", tag = "notifications",
    description = "MPS workflow messages pushed by MNS (XML, JSON or SIMPLIFIED body); authenticated by the MNS RSA-SHA1 signature and, when configured, `?token=`, from `notifications.mps_topic_names` when set.",
    request_body(content = String, content_type = "text/plain"),
    responses(
        (status = 204, description = "taken as a hint (or signed but unusable, and dropped)"),
        (status = 400, description = "invalid_signature / bad_request", body = ErrorBody),
        (status = 403, description = "forbidden: another account's or topic's push", body = ErrorBody),
        (status = 404, description = "not_found: notifications.mns_account_id is not set", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 503, description = "key_unavailable (Retry-After)", body = ErrorBody)))]
pub async fn mps_events(
    State(app): State<Arc<App>>,
    uri: Uri,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<axum::http::StatusCode, ApiError> {
    let headers = header_pairs(&headers);
    let inbound = inbound(&uri, &headers, &body);
    let now = app.clock.now();
    verify_mps_push(&app.keys, &app.config.notifications, &inbound, now).await?;
    let run_id = mps_hint(&inbound)
        .map(|h| h.run_id)
        .map_err(|e| e.to_string());
    hint(&app.store, run_id, now.timestamp_millis()).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// What a processor's report came to.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ReportAck {
    /// `applied`, or `repeat` for a `webhook-id` recorded before (nothing changed).
    result: &'static str,
}

/// `POST /v1/notifications/processing`: a webhook processor reports its outcome, signed the
/// Standard Webhooks way with its workflow's secret.
#[utoipa::path(post, path = "/v1/notifications/processing", tag = "notifications",
    description = "A webhook processor's report (`running`, `succeeded` with outputs, `failed`); `webhook-id`, `webhook-timestamp` (within 5 minutes) and `webhook-signature` with the secret of the trigger's workflow.",
    request_body = ReportBody,
    responses(
        (status = 200, description = "applied, or a repeat of a recorded webhook-id", body = ReportAck),
        (status = 400, description = "bad_request: malformed body", body = ErrorBody),
        (status = 401, description = "invalid_signature: unsigned, wrong secret, stale, or no such trigger", body = ErrorBody),
        (status = 409, description = "already_finished: the outcome ended, or the workflow does not follow one", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 422, description = "invalid_request: outputs outside the workflow's output location / output_missing", body = ErrorBody),
        (status = 503, description = "delivery_pending (Retry-After): sent before the answer to the delivery was recorded", body = ErrorBody)))]
pub async fn processing_report(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<axum::Json<ReportAck>, ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signed = Signed {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signatures: header("webhook-signature"),
        body: &body,
    };
    let workflows = app.store.workflows().await?;
    let objects = app.objects.as_ref();
    let result =
        match reports::accept(&app.store, objects, &workflows, signed, app.clock.now()).await? {
            Reported::Repeat => "repeat",
            _ => "applied",
        };
    Ok(axum::Json(ReportAck { result }))
}

/// `POST /v1/notifications/s3-events`: S3-style `Records` from AWS S3, MinIO or Ceph RGW
/// (also inside an SNS `Notification`), authenticated by `notifications.s3_token` as a bearer
/// token or, for senders that cannot set headers (Ceph RGW's push endpoints), as `?token=`
/// in the endpoint URL.
#[utoipa::path(post, path = "/v1/notifications/s3-events", tag = "notifications",
    description = "S3 / MinIO / Ceph RGW `Records` (or an SNS envelope); `Authorization: Bearer <s3_token>` or `?token=`.",
    request_body(content = Object, content_type = "application/json"),
    responses(
        (status = 200, description = "events counted", body = NotificationTally),
        (status = 400, description = "bad_request", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody)))]
pub async fn s3_events(
    State(app): State<Arc<App>>,
    _: S3Sender,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let tally = record_all(&app, s3::s3_events(&body)?).await?;
    Ok(axum::Json(tally).into_response())
}

/// A sender holding `notifications.s3_token`, as a bearer token or `?token=`. Checked from the
/// request head, before the body is read: a wrong guess costs no body upload.
pub struct S3Sender;

impl axum::extract::FromRequestParts<Arc<App>> for S3Sender {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        app: &Arc<App>,
    ) -> Result<Self, ApiError> {
        let expected = app.config.notifications.s3_token.as_ref().ok_or_else(|| {
            ApiError::unauthorized("S3 notifications are not enabled (notifications.s3_token)")
        })?;
        let authorization = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let presented = bearer(authorization)
            .map(str::to_owned)
            .or_else(|| query_token(parts.uri.query()));
        if presented
            .is_some_and(|t| constant_time_eq(t.as_bytes(), expected.expose_secret().as_bytes()))
        {
            Ok(S3Sender)
        } else {
            Err(ApiError::unauthorized("missing or wrong bearer token"))
        }
    }
}
