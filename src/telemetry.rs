//! Structured logs on stderr (human-readable or JSON, filtered by `RUST_LOG`, default `info`)
//! and the Prometheus metrics recorder behind `GET /metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use serde::Deserialize;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// Latency buckets in seconds: loopback answers in a millisecond, an STS call in tens, a slow
/// webhook in seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The process's metrics, installed on first use. The `metrics` macros record into one
/// process-wide recorder, so every app in the process (tests run several) shares it.
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; then ours renders nothing new.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

/// The HELP text of every metric mediagate records, given once to the recorder (so a scrape
/// passes `promtool check metrics`); the modules that record them use these names.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "mediagate_http_requests_total",
        "HTTP requests answered, by matched route, method and status."
    );
    describe_histogram!(
        "mediagate_http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer an HTTP request, by matched route and method."
    );
    describe_counter!(
        "mediagate_credential_cache_total",
        "Credential requests answered from the cache (hit) or by a new AssumeRole (miss)."
    );
    describe_counter!(
        "mediagate_sts_calls_total",
        "AssumeRole calls to the STS, by outcome (ok, unavailable, rejected)."
    );
    describe_histogram!(
        "mediagate_sts_call_duration_seconds",
        Unit::Seconds,
        "Time an AssumeRole call took, retries included."
    );
    describe_counter!(
        "mediagate_notifications_total",
        "Upload notifications, by source and outcome (accepted, skipped, duplicate, repeat, rejected)."
    );
    describe_counter!(
        "mediagate_verifications_total",
        "Announced objects verified in the store, by outcome (verified, missing, or the reason it was refused)."
    );
    describe_counter!(
        "mediagate_reconciliations_total",
        "What reconciliation sweeps found, by outcome."
    );
    describe_counter!(
        "mediagate_trigger_attempts_total",
        "Attempts to deliver a trigger, by workflow, sink and outcome."
    );
    describe_gauge!(
        "mediagate_queue_triggers",
        "Triggers in the durable queue, by state, as of the last scrape."
    );
    describe_gauge!(
        "mediagate_queue_oldest_pending_age_seconds",
        Unit::Seconds,
        "Age of the oldest trigger waiting for delivery, as of the last scrape."
    );
}

/// How log lines are written: `pretty` for people, `json` for collectors.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}
