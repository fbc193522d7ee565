//! Health endpoints for load balancers and orchestrators.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use super::openapi::{Health, Ready};
use crate::app::{App, Readiness};

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
    const FRESH_FOR: std::time::Duration = std::time::Duration::from_secs(1);
    let mut cached = app.readiness.lock().await;
    // A stopping worker (shutdown has begun) is seen at once, whatever was cached.
    let fresh = cached.as_ref().filter(|(at, answer)| {
        at.elapsed() < FRESH_FOR && (!answer.ready || app.worker.is_alive())
    });
    let answer = match fresh {
        Some((_, answer)) => answer.clone(),
        None => {
            let answer = check_readiness(&app).await;
            *cached = Some((std::time::Instant::now(), answer.clone()));
            answer
        }
    };
    let status = if answer.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(answer.checks))
}

async fn check_readiness(app: &App) -> Readiness {
    let database = app.store.check_ready().await;
    if let Err(e) = &database {
        tracing::warn!(error = format!("{e:#}"), "readiness check failed: database");
    }
    let worker = app.worker.is_alive();
    if !worker {
        tracing::warn!("readiness check failed: the trigger worker is stopped or stuck");
    }
    let mut upstreams = serde_json::Map::new();
    let mut upstreams_ok = true;
    if app.config.server.readyz_upstreams {
        let mut targets = vec![("sts", app.config.sts_endpoint())];
        if app.config.storage.provider == crate::config::Provider::Aliyun {
            targets.push(("mps", app.config.mps.endpoint.clone()));
        }
        let probes = targets.iter().map(|(_, url)| reachable(url));
        for ((name, _), ok) in targets
            .iter()
            .zip(futures_util::future::join_all(probes).await)
        {
            if !ok {
                tracing::warn!(
                    upstream = name,
                    "readiness check failed: upstream unreachable"
                );
                upstreams_ok = false;
            }
            upstreams.insert(
                (*name).to_owned(),
                if ok {
                    json!({"status": "ok"})
                } else {
                    json!({"status": "failed", "message": "no connection within 1 s"})
                },
            );
        }
    }
    // The store is read with the service keys: a HEAD answered (found or not) proves both
    // the address and the keys.
    if app.config.server.readyz_upstreams && app.config.verification.enabled {
        let probe =
            tokio::time::timeout(std::time::Duration::from_secs(2), app.objects.probe()).await;
        let ok = matches!(probe, Ok(Ok(())));
        if !ok {
            tracing::warn!(
                upstream = "store",
                "readiness check failed: the store did not answer"
            );
            upstreams_ok = false;
        }
        upstreams.insert(
            "store".to_owned(),
            if ok {
                json!({"status": "ok"})
            } else {
                json!({"status": "failed", "message": "no answer with the service keys within 2 s"})
            },
        );
    }
    let status = if database.is_ok() && worker && upstreams_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let check = |r: &anyhow::Result<()>| match r {
        Ok(()) => json!({"status": "ok"}),
        // Details go to the log; this endpoint is unauthenticated.
        Err(_) => json!({"status": "failed", "message": "unreachable or not migrated"}),
    };
    let mut checks = json!({
        "database": check(&database),
        "worker": if worker {
            json!({"status": "ok"})
        } else {
            json!({"status": "failed", "message": "stopped or not looping"})
        },
    });
    if let Some(map) = checks.as_object_mut() {
        map.extend(upstreams);
    }
    Readiness {
        ready: status.is_success(),
        checks: json!({
            "status": if status.is_success() { "ok" } else { "unavailable" },
            "checks": checks,
        }),
    }
}

/// The queue figures, read at most every few seconds; concurrent scrapes wait for one read.
async fn cached_queue_stats(app: &App) -> anyhow::Result<crate::store::QueueStats> {
    const FRESH_FOR: std::time::Duration = std::time::Duration::from_secs(5);
    let mut cached = app.queue_stats.lock().await;
    if let Some((at, stats)) = cached.as_ref()
        && at.elapsed() < FRESH_FOR
    {
        return Ok(stats.clone());
    }
    let stats = app.store.queue_stats().await?;
    *cached = Some((std::time::Instant::now(), stats.clone()));
    Ok(stats)
}

/// Whether `url`'s host accepts a TCP connection within a second: enough to tell a network or
/// DNS fault from a working path, without calling (and being billed for) an API.
async fn reachable(url: &str) -> bool {
    let Ok(url) = url::Url::parse(url) else {
        return false;
    };
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return false;
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    matches!(
        tokio::time::timeout(
            std::time::Duration::from_secs(1),
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await,
        Ok(Ok(_))
    )
}

/// `GET /metrics`: Prometheus text. The queue gauges are read from the database at each
/// scrape, so every instance reports the shared queue.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn metrics(State(app): State<Arc<App>>) -> axum::response::Response {
    match cached_queue_stats(&app).await {
        Ok(stats) => {
            for state in ["pending", "in_flight", "failed", "delivered", "dead"] {
                let n = stats
                    .counts
                    .iter()
                    .find(|(s, _)| s == state)
                    .map_or(0, |(_, n)| *n);
                metrics::gauge!("mediagate_queue_triggers", "state" => state).set(n as f64);
            }
            metrics::gauge!("mediagate_queue_oldest_pending_age_seconds")
                .set(stats.oldest_pending_age_ms as f64 / 1000.0);
        }
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
