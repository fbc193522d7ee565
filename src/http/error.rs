//! The one error type at the HTTP edge: `{"error":{"code","message"}}` with a stable code.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::error;

use crate::auth::AuthError;
use crate::credentials::VendError;
use crate::credentials::limits::RateLimited;
use crate::notifications::NotificationError;
use crate::notifications::keys::KeyError;
use crate::processing::Reprocessed;
use crate::processing::reports::ReportError;
use crate::quotas::Refusal;
use crate::quotas::standing::StandingError;
use crate::sts::StsError;
use crate::uploads::{UploadError, UploadRefused};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<Duration>,
    /// For `quota_exceeded`: the limit the request would pass.
    pub quota: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            quota: None,
        }
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsupported_media_type",
            message,
        )
    }

    pub fn invalid_media_attributes(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_media_attributes",
            message,
        )
    }

    /// The resource exists but is not in a state that allows this.
    pub fn invalid_state(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "invalid_state", message)
    }

    pub fn name_taken(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "name_taken", message)
    }

    /// A notification whose signature, key URL, `Date`, digest or token does not verify.
    /// Too many of something at once (no window to wait out, so no `Retry-After`).
    pub fn too_many(message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
    }

    pub fn invalid_signature(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_signature", message)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this route",
        )
    }

    /// The request ran past `limit`; worth retrying shortly.
    pub fn timeout(limit: Duration) -> Self {
        ApiError {
            retry_after: Some(Duration::from_secs(1)),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!("the request took longer than {} s", limit.as_secs()),
            )
        }
    }

    /// The key or certificate a notification names could not be fetched now.
    pub fn key_unavailable(message: impl Into<String>) -> Self {
        ApiError {
            retry_after: Some(Duration::from_secs(5)),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "key_unavailable", message)
        }
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }

    /// Logs the cause chain; the client sees only that something failed on our side.
    pub fn internal(err: anyhow::Error) -> Self {
        error!(error = format!("{err:#}"), "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server logs",
        )
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        ApiError::internal(err)
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Store(e) => ApiError::internal(e),
            other => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", other.to_string()),
        }
    }
}

impl From<StsError> for ApiError {
    fn from(err: StsError) -> Self {
        match err {
            StsError::Unavailable {
                detail,
                retry_after,
            } => {
                error!(?detail, "STS unavailable");
                ApiError {
                    retry_after: Some(retry_after),
                    ..ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "sts_unavailable",
                        "the credential service is unavailable; retry later",
                    )
                }
            }
            StsError::Rejected {
                code,
                message,
                request_id,
            } => {
                // A configuration fault on our side (role, permissions, keys): loud for the
                // operator, opaque for the client.
                error!(sts_code = ?code, sts_message = ?message, sts_request_id = ?request_id,
                    "STS rejected AssumeRole: check the sts section of the configuration");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "sts_error",
                    "the credential service refused the request",
                )
            }
        }
    }
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Unavailable(m) => ApiError::key_unavailable(m),
            KeyError::NotAllowed(m) | KeyError::Invalid(m) => ApiError::invalid_signature(m),
        }
    }
}

impl From<NotificationError> for ApiError {
    fn from(e: NotificationError) -> Self {
        match e {
            NotificationError::Signature(m) => ApiError::invalid_signature(m),
            NotificationError::Foreign(m) => ApiError::forbidden(m),
            NotificationError::Malformed(m) => ApiError::bad_request(m),
            NotificationError::Key(k) => k.into(),
            NotificationError::NotServed => ApiError::not_found(),
        }
    }
}

impl From<Reprocessed> for ApiError {
    /// Why an operator's reprocessing did nothing; `Queued` is no error.
    fn from(r: Reprocessed) -> Self {
        match r {
            Reprocessed::NotFound => ApiError::not_found(),
            Reprocessed::NothingAnnounced => ApiError::invalid_state(
                "no object was announced for this upload yet; there is nothing to process",
            ),
            Reprocessed::Busy => ApiError::invalid_state(
                "some of this upload's triggers are still pending, in flight or retrying, or still processing",
            ),
            Reprocessed::Queued { .. } => {
                ApiError::internal(anyhow::anyhow!("a queued reprocessing taken for an error"))
            }
        }
    }
}

impl From<ReportError> for ApiError {
    fn from(e: ReportError) -> Self {
        match e {
            ReportError::Signature(m) => {
                ApiError::new(StatusCode::UNAUTHORIZED, "invalid_signature", m)
            }
            ReportError::Malformed(m) => ApiError::bad_request(m),
            ReportError::Finished(m) => ApiError::new(StatusCode::CONFLICT, "already_finished", m),
            ReportError::Early(m) => ApiError {
                retry_after: Some(Duration::from_secs(1)),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "delivery_pending", m)
            },
            ReportError::Invalid(m) => ApiError::invalid_request(m),
            ReportError::OutputMissing(m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "output_missing", m)
            }
            ReportError::Store(e) => ApiError::internal(e),
        }
    }
}

impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> Self {
        match e {
            UploadError::Refused(r) => r.into(),
            UploadError::NotFound => ApiError::not_found(),
            UploadError::Forbidden(m) => ApiError::forbidden(m),
            UploadError::InvalidState(m) => ApiError::invalid_state(m),
            UploadError::Limited(r) => r.into(),
            UploadError::Standing(r) => r.into(),
            UploadError::Sts(s) => s.into(),
            UploadError::Store(e) => ApiError::internal(e),
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Over {
                quota,
                message,
                retry_after_seconds,
            } => ApiError {
                retry_after: retry_after_seconds.map(Duration::from_secs),
                quota: Some(quota.as_str()),
                ..ApiError::new(StatusCode::FORBIDDEN, "quota_exceeded", message)
            },
            Refusal::Suspended => ApiError::new(
                StatusCode::FORBIDDEN,
                "user_suspended",
                "this user is suspended",
            ),
            Refusal::UnknownPlan(name) => ApiError::new(
                StatusCode::FORBIDDEN,
                "unknown_plan",
                format!("plan {name:?} is not one this service offers"),
            ),
        }
    }
}

impl From<StandingError> for ApiError {
    fn from(e: StandingError) -> Self {
        match e {
            StandingError::Refused(r) => r.into(),
            StandingError::Store(e) => ApiError::internal(e),
        }
    }
}

impl From<UploadRefused> for ApiError {
    fn from(e: UploadRefused) -> Self {
        match e {
            UploadRefused::Invalid(m) => ApiError::invalid_request(m),
            UploadRefused::UnsupportedMediaType(m) => ApiError::unsupported_media_type(m),
            UploadRefused::InvalidMediaAttributes(m) => ApiError::invalid_media_attributes(m),
        }
    }
}

impl From<VendError> for ApiError {
    fn from(err: VendError) -> Self {
        match err {
            VendError::Sts(e) => e.into(),
            VendError::Limited(r) => r.into(),
        }
    }
}

impl From<RateLimited> for ApiError {
    fn from(r: RateLimited) -> Self {
        ApiError {
            retry_after: Some(r.retry_after),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", r.message)
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "request body is too large",
            )
        } else {
            ApiError::bad_request(r.body_text())
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::bad_request(r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(_: PathRejection) -> Self {
        ApiError::not_found()
    }
}

impl ApiError {
    /// This error's status and `Retry-After` with another body, for routes whose clients expect
    /// a different error shape.
    pub fn into_response_with(self, body: serde_json::Value) -> Response {
        let mut response = (self.status, Json(body)).into_response();
        if let Some(after) = self.retry_after {
            let secs = after.as_secs().max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

/// The one error shape: `{"error":{"code","message"}}`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable and machine-readable, e.g. `unauthorized`, `rate_limited`.
    pub code: String,
    /// For people; may change.
    pub message: String,
    /// `quota_exceeded`: which limit (`max_file_bytes`, `uploads_per_day`, `bytes_per_day`,
    /// `bytes_total`, `kinds`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<String>,
    /// `quota_exceeded` of a day window: when it frees (as `Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message.clone(),
                quota: self.quota.map(str::to_owned),
                retry_after_seconds: self.quota.and(self.retry_after).map(|d| d.as_secs()),
            },
        };
        let body = serde_json::to_value(body).unwrap_or_else(|_| json!({}));
        self.into_response_with(body)
    }
}
