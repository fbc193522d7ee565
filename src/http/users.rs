//! A user's standing: their own view (`GET /v1/me`) and operators' (`/v1/admin/users/{user}`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::admin::Admin;
use super::error::{ApiError, ErrorBody};
use super::extract::{Json, Member};
use super::uploads::rfc3339_millis;
use crate::app::App;
use crate::kinds::{Reason, UploadState};
use crate::quotas::PlanLimits;
use crate::quotas::standing::{Standing, change, segment_of, standing};
use crate::store::UserChange;
use crate::uploads::Upload;

/// What a user has used of their plan.
#[derive(Serialize, utoipa::ToSchema)]
pub struct UsageView {
    /// Uploads started since the UTC day began (rejected and expired ones give theirs back).
    uploads_today: i64,
    bytes_today: i64,
    /// Everything stored and not rejected or expired: verified uploads by the store's size,
    /// others by their declared size or what they reserve.
    bytes_total: i64,
}

/// `GET /v1/me`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MeView {
    /// The token's subject.
    user: String,
    /// The plan the caller is on; `null` without plans.
    plan: Option<String>,
    suspended: bool,
    usage: UsageView,
    /// What the plan allows (each limit `null` when unlimited); `null` without plans or for
    /// a plan that is not configured.
    limits: Option<PlanLimits>,
}

impl MeView {
    fn new(user: String, s: Standing) -> MeView {
        MeView {
            user,
            plan: s.plan,
            suspended: s.user.as_ref().is_some_and(|u| u.suspended),
            usage: UsageView {
                uploads_today: s.usage.uploads_today,
                bytes_today: s.usage.bytes_today,
                bytes_total: s.usage.bytes_total,
            },
            limits: s.limits,
        }
    }
}

/// `GET /v1/me`: the caller's plan, usage and limits, and whether they are suspended (the one
/// app route a suspended user may still call).
#[utoipa::path(get, path = "/v1/me", tag = "uploads", security(("app" = [])),
    responses(
        (status = 200, description = "the caller's standing", body = MeView),
        (status = 401, description = "unauthorized", body = ErrorBody)))]
pub async fn me(
    State(app): State<Arc<App>>,
    Member(principal): Member,
) -> Result<Response, ApiError> {
    let s = standing(
        &app.store,
        &app.config.quotas,
        principal.segment.as_str(),
        principal.plan.as_deref(),
        app.clock.now_millis(),
    )
    .await?;
    Ok(axum::Json(MeView::new(principal.subject, s)).into_response())
}

/// One of a user's uploads, as the user view lists them.
#[derive(Serialize, utoipa::ToSchema)]
pub struct UserUploadView {
    upload_id: String,
    object_key: String,
    state: UploadState,
    state_reason: Option<Reason>,
    size: Option<i64>,
    created_at: String,
}

/// `GET /v1/admin/users/{user}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AdminUserView {
    #[serde(flatten)]
    me: MeView,
    /// Where their uploads live.
    owner: String,
    /// The plan an operator put them on, over their tokens'.
    plan_override: Option<String>,
    /// The plan their most recent token named.
    token_plan: Option<String>,
    /// Their 20 most recent uploads.
    uploads: Vec<UserUploadView>,
}

async fn admin_view(app: &App, subject: String) -> Result<AdminUserView, ApiError> {
    let owner = segment_of(&subject);
    let s = standing(
        &app.store,
        &app.config.quotas,
        owner.as_str(),
        None,
        app.clock.now_millis(),
    )
    .await?;
    let uploads = Upload::list(&app.store, &owner, 20, None).await?;
    let (plan_override, token_plan) = s
        .user
        .as_ref()
        .map(|u| (u.plan_override.clone(), u.plan.clone()))
        .unwrap_or_default();
    Ok(AdminUserView {
        owner: s.owner.clone(),
        plan_override,
        token_plan,
        me: MeView::new(subject, s),
        uploads: uploads
            .into_iter()
            .map(|u| UserUploadView {
                upload_id: u.id,
                object_key: u.object_key,
                state: u.state,
                state_reason: u.reason,
                size: u.size,
                created_at: rfc3339_millis(u.created_at),
            })
            .collect(),
    })
}

/// `GET /v1/admin/users/{user}`: a user's standing, usage and most recent uploads.
#[utoipa::path(get, path = "/v1/admin/users/{user}", tag = "admin", security(("admin" = [])),
    params(("user" = String, Path, description = "the token's subject (`apikey:{name}` for an API key)")),
    responses(
        (status = 200, description = "the user", body = AdminUserView),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 422, description = "invalid_request: not a subject (1-256 characters)", body = ErrorBody)))]
pub async fn get_user(
    State(app): State<Arc<App>>,
    _admin: Admin,
    Path(subject): Path<String>,
) -> Result<Response, ApiError> {
    let view = admin_view(&app, bounded_subject(subject)?).await?;
    Ok(axum::Json(view).into_response())
}

/// `PUT /v1/admin/users/{user}`: what an operator sets.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    /// A configured plan, over the one the user's tokens name; `null` takes it away.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    plan: Option<Option<String>>,
    /// `true`: refused on every app route at once (but `GET /v1/me`), and what they still
    /// upload is rejected.
    suspended: Option<bool>,
}

/// `PUT /v1/admin/users/{user}`: a plan override and suspension, audited.
#[utoipa::path(put, path = "/v1/admin/users/{user}", tag = "admin", security(("admin" = [])),
    params(("user" = String, Path, description = "the token's subject (`apikey:{name}` for an API key)")),
    request_body = UserUpdate,
    responses(
        (status = 200, description = "the user as changed", body = AdminUserView),
        (status = 400, description = "bad_request: malformed JSON", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "unknown_plan: the override names no configured plan", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 422, description = "invalid_request", body = ErrorBody)))]
pub async fn put_user(
    State(app): State<Arc<App>>,
    Admin(who): Admin,
    Path(subject): Path<String>,
    Json(update): Json<serde_json::Map<String, serde_json::Value>>,
) -> Result<Response, ApiError> {
    let subject = bounded_subject(subject)?;
    // An object only: serde would also read the two fields from an array.
    let update: UserUpdate = serde_json::from_value(serde_json::Value::Object(update))
        .map_err(|e| ApiError::invalid_request(e.to_string()))?;
    let update = UserChange {
        plan_override: update.plan,
        suspended: update.suspended,
    };
    change(&app.store, &app.config.quotas, &subject, &update, &who).await?;
    let view = admin_view(&app, subject).await?;
    Ok(axum::Json(view).into_response())
}

/// A field that is there, `null` or not (absent is `None` by its default).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A subject as tokens carry it: 1-256 characters.
fn bounded_subject(subject: String) -> Result<String, ApiError> {
    match subject.chars().count() {
        1..=256 => Ok(subject),
        _ => Err(ApiError::invalid_request("a user is 1-256 characters")),
    }
}
