//! Health endpoints for load balancers and orchestrators.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use crate::app::App;

/// `GET /healthz`: the process is up and serving.
pub async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 when the database answers and is migrated and the trigger worker is
/// running, 503 otherwise; the body names each check.
pub async fn readyz(State(app): State<Arc<App>>) -> impl IntoResponse {
    let database = app.store.check_ready().await;
    if let Err(e) = &database {
        tracing::warn!(error = format!("{e:#}"), "readiness check failed: database");
    }
    let worker = app.worker.is_alive();
    if !worker {
        tracing::warn!("readiness check failed: the trigger worker is stopped or stuck");
    }
    let status = if database.is_ok() && worker {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let check = |r: &anyhow::Result<()>| match r {
        Ok(()) => json!({"status": "ok"}),
        // Details go to the log; this endpoint is unauthenticated.
        Err(_) => json!({"status": "failed", "message": "unreachable or not migrated"}),
    };
    let body = json!({
        "status": if status.is_success() { "ok" } else { "unavailable" },
        "checks": {
            "database": check(&database),
            "worker": if worker {
                json!({"status": "ok"})
            } else {
                json!({"status": "failed", "message": "stopped or not looping"})
            },
        },
    });
    (status, axum::Json(body))
}
