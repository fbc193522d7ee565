//! The HTTP edge: the single route table, middleware, extractors and the error type.

mod admin;
pub mod error;
mod extract;
mod notifications;
mod ops;
mod uploads;

pub use admin::match_report;
pub use extract::bearer;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::app::App;
use error::ApiError;

/// Request bodies on the app-facing and admin routes are small JSON documents.
const BODY_LIMIT: usize = 64 * 1024;
/// Notifications may batch many events.
const NOTIFICATION_BODY_LIMIT: usize = 1024 * 1024;

/// Every route mediagate serves.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/uploads", post(uploads::create).get(uploads::list))
        .route("/v1/uploads/{id}", get(uploads::get))
        .route(
            "/v1/uploads/{id}/credentials",
            post(uploads::refresh_credentials),
        )
        .route("/v1/sts-token", get(uploads::sts_token))
        .merge(
            Router::new()
                .route(
                    "/v1/notifications/oss-callback",
                    post(notifications::oss_callback),
                )
                .route(
                    "/v1/notifications/oss-events",
                    post(notifications::oss_events),
                )
                .route(
                    "/v1/notifications/s3-events",
                    post(notifications::s3_events),
                )
                .layer(DefaultBodyLimit::max(NOTIFICATION_BODY_LIMIT)),
        )
        .route(
            "/v1/admin/workflows",
            get(admin::list_workflows).post(admin::create_workflow),
        )
        .route(
            "/v1/admin/workflows/{id}",
            get(admin::get_workflow)
                .put(admin::update_workflow)
                .delete(admin::delete_workflow),
        )
        .route("/v1/admin/match", get(admin::explain_match))
        .route("/v1/admin/triggers", get(admin::list_triggers))
        .route("/v1/admin/triggers/{id}/retry", post(admin::retry_trigger))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // Responses carry credentials and per-user data: no cache may keep them.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let route = req
                        .extensions()
                        .get::<MatchedPath>()
                        .map_or("unmatched", MatchedPath::as_str);
                    tracing::info_span!("request", method = %req.method(), route)
                })
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal(anyhow::anyhow!("handler panicked")).into_response()
        }))
        .with_state(app)
}
