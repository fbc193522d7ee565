//! Health endpoints for load balancers and orchestrators.

use std::sync::Arc;

use super::openapi::{Health, Ready};
use crate::app::App;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;

/// `GET /healthz`: the process is up and serving.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "the process is up", body = Health)))]
pub async fn healthz() -> impl IntoResponse {
    axum::Json(Health { status: "ok" })
}

/// `GET /readyz`: 200 when the database answers and is migrated and the trigger worker is
/// running, 503 otherwise; the body names each check.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "ready", body = Ready),
        (status = 503, description = "not ready; the failing check is named", body = Ready)))]
pub async fn readyz(State(app): State<Arc<App>>) -> impl IntoResponse {
    let answer = app.readiness().await;
    let status = if answer.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(Ready::from(&answer)))
}

/// `GET /metrics`: Prometheus text. The queue gauges are read from the database at each
/// scrape, so every instance reports the shared queue.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn metrics(State(app): State<Arc<App>>) -> axum::response::Response {
    match app.queue_stats().await {
        Ok(stats) => crate::telemetry::set_queue_gauges(&stats.counts, stats.oldest_pending_age_ms),
        Err(e) => tracing::warn!(error = format!("{e:#}"), "reading queue metrics failed"),
    }
    let handle = crate::telemetry::metrics();
    handle.run_upkeep();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}

/// `GET /openapi.json`: the OpenAPI 3.1 description of every route.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "this API", content_type = "application/json", body = Object)))]
pub async fn openapi_json(
    axum::Extension(document): axum::Extension<super::ServedDocument>,
) -> axum::response::Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        document.0,
    )
        .into_response()
}
