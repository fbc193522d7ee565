//! Structured logs on stderr (human-readable or JSON, filtered by `RUST_LOG`, default `info`)
//! and the Prometheus metrics recorder behind `GET /metrics`.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
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

/// Processing takes seconds to hours: a minute up to the six-hour default timeout.
const PROCESSING_BUCKETS: &[f64] = &[
    5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0,
];

/// The process's metrics, installed on first use. The `metrics` macros record into one
/// process-wide recorder, so every app in the process (tests run several) shares it.
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .expect("the bucket list is not empty")
            .set_buckets_for_metric(
                Matcher::Full("mediagate_processing_seconds".into()),
                PROCESSING_BUCKETS,
            )
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
        "mediagate_processing_outcomes_total",
        "Processing outcomes that ended, by sink and outcome (succeeded, failed, timed_out)."
    );
    describe_histogram!(
        "mediagate_processing_seconds",
        Unit::Seconds,
        "Time from delivery to a processing outcome, by sink."
    );
    describe_counter!(
        "mediagate_mps_messages_total",
        "MPS workflow messages received, by what they came to (hinted, unknown_run, unreadable)."
    );
    describe_counter!(
        "mediagate_mps_queries_total",
        "MPS lookups of runs and media, by action and outcome."
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

/// The queue gauges from the trigger counts by state and the oldest waiting trigger's age.
pub fn set_queue_gauges(counts: &[(String, i64)], oldest_pending_age_ms: i64) {
    for state in ["pending", "in_flight", "failed", "delivered", "dead"] {
        let n = counts
            .iter()
            .find(|(s, _)| s == state)
            .map_or(0, |(_, n)| *n);
        metrics::gauge!("mediagate_queue_triggers", "state" => state).set(n as f64);
    }
    metrics::gauge!("mediagate_queue_oldest_pending_age_seconds")
        .set(oldest_pending_age_ms as f64 / 1000.0);
}

/// Counts one served request and its latency by matched route (never the raw path, whose
/// ids would make one series per upload), method label and status.
pub fn record_request(route: &str, method: &'static str, status: u16, took: Duration) {
    ROUTE_METRICS.record(route, method, status, took);
}

/// Most (route, method, status) series whose metric handles are kept.
const KEPT_SERIES: usize = 1024;

/// The request counter and latency histogram of each (route, method, status), registered
/// once: building and hashing a metric's key on every request cost more than serving a
/// cached credential.
static ROUTE_METRICS: RouteMetrics = RouteMetrics(std::sync::RwLock::new(None));

struct RouteMetrics(std::sync::RwLock<Option<HashMap<SeriesKey, Series>>>);

/// A matched route's text is shared by all its requests, so its address names it; the text
/// is compared as well, for an address reused by another router.
type SeriesKey = (usize, &'static str, u16);

struct Series {
    route: Box<str>,
    requests: metrics::Counter,
    duration: metrics::Histogram,
}

impl RouteMetrics {
    fn record(&self, route: &str, method: &'static str, status: u16, took: Duration) {
        let key = (route.as_ptr() as usize, method, status);
        let record = |s: &Series| {
            s.requests.increment(1);
            s.duration.record(took.as_secs_f64());
        };
        if let Some(s) = self
            .0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(|series| series.get(&key))
            .filter(|s| &*s.route == route)
        {
            return record(s);
        }
        let series = Series {
            route: route.into(),
            requests: metrics::counter!("mediagate_http_requests_total", "route" => route.to_owned(), "method" => method, "status" => status.to_string()),
            duration: metrics::histogram!("mediagate_http_request_duration_seconds", "route" => route.to_owned(), "method" => method),
        };
        record(&series);
        let mut kept = self.0.write().unwrap_or_else(|e| e.into_inner());
        let kept = kept.get_or_insert_with(HashMap::new);
        if kept.len() < KEPT_SERIES || kept.contains_key(&key) {
            kept.insert(key, series);
        }
    }
}
