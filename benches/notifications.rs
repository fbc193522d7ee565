//! `cargo bench --bench notifications`: signed OSS upload callbacks
//! (`POST /v1/notifications/oss-callback`) against the real app, each recorded durably and
//! delivered by the worker to a loopback webhook receiver, next to `GET /healthz`.
//!
//! Environment: `BENCH_CONNECTIONS` (32), `BENCH_SECONDS` per measured phase (10),
//! `BENCH_WARM_UP` callbacks per connection before measuring (10), `BENCH_PRESIGN_RATE`
//! (4000: callbacks per second of measured phase that are RSA-signed before it starts, since
//! signing costs the load generator about half a millisecond of CPU each; beyond those,
//! callbacks are signed inline, which the output reports), `BENCH_DATABASE_URL` (default:
//! SQLite in a temporary directory; a PostgreSQL URL names a server on which a fresh database
//! is created for the run and dropped afterwards), `BENCH_DB_CONNECTIONS` (the
//! configuration's default: `database.max_connections`), `BENCH_RATE` (unset: each connection
//! sends back to back; N: N callbacks per second in all, on a schedule, to see whether
//! delivery keeps up with a steady load), `BENCH_VERIFY` (1: every object is
//! verified in a loopback OSS that checks each request's signature, as by default in
//! production; 0: verification off).
//!
//! Prints a markdown table (requests, req/s, p50/p99 latency, errors per endpoint), the
//! events/healthz throughput ratio, the delay from sending a callback to the receiver
//! accepting its webhook (p50/p99), and the delivery check: every object accepted in the
//! measured phase must be delivered; distinct trigger ids and duplicate deliveries are counted.
//! Exits non-zero on request errors, lost objects or signature rejections.

// The API tests' support code (configuration, OSS signer, webhook receiver); the bench uses
// only part of it.
#[allow(dead_code)]
#[path = "../tests/api/support/mod.rs"]
mod support;

mod common;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{env_or, percentile_ms, rate, row, runtime, shown_url, table_header};
use mediagate::config::{SinkKind, WorkflowConfig, WorkflowState};
use reqwest::Url;
use secrecy::SecretString;
use serde_json::Value;
use sqlx::Connection;
use support::{OssFake, StsFake, WEBHOOK_SECRET, WebhookReceiver, config_for, oss_signer};

const CALLBACK_PATH: &str = "/v1/notifications/oss-callback";
const BUCKET: &str = "media-input";
const WORKFLOW: &str = "bench-hooks";
/// How long to wait, after the measured phase, for its objects to be delivered.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// After the last expected delivery, how long to keep watching for late (duplicate) ones.
const SETTLE: Duration = Duration::from_secs(1);
/// How often the receiver's delivery count is sampled to stamp receive times.
const POLL: Duration = Duration::from_millis(2);

struct Params {
    connections: usize,
    phase: Duration,
    warm_up: usize,
    presign_rate: usize,
    /// Callbacks per second to hold, instead of as many as the connections can send.
    rate: Option<u64>,
}

impl Params {
    fn from_env() -> Params {
        let params = Params {
            connections: env_or("BENCH_CONNECTIONS", 32) as usize,
            phase: Duration::from_secs(env_or("BENCH_SECONDS", 10)),
            warm_up: env_or("BENCH_WARM_UP", 10) as usize,
            presign_rate: env_or("BENCH_PRESIGN_RATE", 4000) as usize,
            rate: Some(env_or("BENCH_RATE", 0)).filter(|r| *r > 0),
        };
        // A held rate needs no more signed callbacks than it sends (and a few spare).
        let params = Params {
            presign_rate: params
                .rate
                .map_or(params.presign_rate, |r| r as usize + r as usize / 50 + 1),
            ..params
        };
        assert!(params.connections > 0 && !params.phase.is_zero());
        params
    }
}

#[derive(Clone, Copy)]
enum Endpoint {
    Healthz,
    Callback,
}

/// One callback sent: which object, when it was sent, and whether it was accepted.
struct Sent {
    conn: usize,
    n: u64,
    at: Instant,
    accepted: bool,
}

/// The upload mediagate issued for object `n` of connection `conn` (rows written before the
/// run): callbacks only count for issued uploads.
fn upload_id(conn: usize, n: u64) -> String {
    uuid::Uuid::from_u128(((conn as u128) << 64) | u128::from(n)).to_string()
}

/// Records the uploads for objects `0..per_connection` of every connection, as
/// `POST /v1/uploads` would have, straight into the store so issuing costs no bench time.
/// Each object is put in the bucket too: a 4 KiB MP4, as the callbacks announce.
async fn issue_uploads(
    store: &mediagate::store::Store,
    oss: &OssFake,
    connections: usize,
    per_connection: u64,
) {
    let now = chrono::Utc::now().timestamp_millis();
    let mut tasks = tokio::task::JoinSet::new();
    for conn in 0..connections {
        let (store, oss) = (store.clone(), oss.clone());
        tasks.spawn(async move {
            for n in 0..per_connection {
                let key = object_key(conn, n);
                oss.put_media_if_absent(&key, OBJECT_SIZE, &etag(conn, n));
                store
                    .insert_upload(mediagate::store::UploadRow {
                        id: upload_id(conn, n),
                        owner: "bench".into(),
                        subject: "bench".into(),
                        bucket: BUCKET.into(),
                        file_name: key.rsplit('/').next().unwrap_or_default().into(),
                        object_key: key,
                        size: None,
                        content_type: None,
                        mode: mediagate::kinds::UploadMode::Sts,
                        media: "{}".into(),
                        state: mediagate::kinds::UploadState::Issued,
                        state_reason: None,
                        created_at: now,
                        uploaded_at: None,
                        updated_at: now,
                    })
                    .await
                    .expect("issue upload");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("issuing task");
    }
}

fn object_key(conn: usize, n: u64) -> String {
    format!("uploads/bench/{conn}/{n}.mp4")
}

fn etag(conn: usize, n: u64) -> String {
    format!("BENCH{conn:04}{n:012}")
}

const OBJECT_SIZE: usize = 4096;

/// What one phase produced.
#[derive(Default)]
struct Phase {
    latencies: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
    elapsed: Duration,
    /// Callbacks only.
    sent: Vec<Sent>,
    /// Callbacks RSA-signed while the phase ran, and the time it took (outside the
    /// measured latency, but on the same cores).
    signed_inline: usize,
    signing: Duration,
}

impl Phase {
    fn merge(&mut self, other: Phase) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.elapsed += other.elapsed;
        self.sent.extend(other.sent);
        self.signed_inline += other.signed_inline;
        self.signing += other.signing;
    }

    fn accepted(&self) -> usize {
        self.sent.iter().filter(|s| s.accepted).count()
    }
}

/// A signed callback for object `n` of its connection, ready to send.
struct Callback {
    n: u64,
    form: String,
    authorization: String,
    key_url: String,
}

/// The load generator: one client per connection; connection `c` sends its `n`-th callback
/// for `uploads/bench/c/n.mp4` (unique per request for the whole run).
struct Load {
    healthz: Url,
    callback: Url,
    clients: Vec<reqwest::Client>,
    /// The next object number per connection.
    next: Vec<Mutex<u64>>,
    /// Callbacks signed ahead of time, per connection, in object order.
    presigned: Vec<Mutex<VecDeque<Callback>>>,
}

impl Load {
    fn new(base: &str, params: &Params) -> Load {
        let clients = common::clients(params.connections);
        Load {
            healthz: Url::parse(&format!("{base}/healthz")).unwrap(),
            callback: Url::parse(&format!("{base}{CALLBACK_PATH}")).unwrap(),
            clients,
            next: (0..params.connections).map(|_| Mutex::new(0)).collect(),
            presigned: (0..params.connections)
                .map(|_| Mutex::new(VecDeque::new()))
                .collect(),
        }
    }

    fn next_object(&self, conn: usize) -> u64 {
        let mut next = self.next[conn].lock().unwrap();
        *next += 1;
        *next - 1
    }

    /// Signs the next `per_connection` callbacks of every connection on `threads` threads;
    /// returns how long it took.
    fn presign(&self, per_connection: usize, threads: usize) -> Duration {
        let start = Instant::now();
        let jobs: Vec<(usize, u64)> = (0..self.clients.len())
            .map(|c| {
                let mut next = self.next[c].lock().unwrap();
                let first = *next;
                *next += per_connection as u64;
                (c, first)
            })
            .collect();
        std::thread::scope(|scope| {
            for t in 0..threads {
                let jobs = &jobs;
                scope.spawn(move || {
                    for &(c, first) in jobs.iter().skip(t).step_by(threads) {
                        let signed = (first..first + per_connection as u64)
                            .map(|n| Self::signed_callback(c, n));
                        self.presigned[c].lock().unwrap().extend(signed);
                    }
                });
            }
        });
        start.elapsed()
    }

    /// The callback OSS sends for object `n` of connection `conn`, signed.
    fn signed_callback(conn: usize, n: u64) -> Callback {
        let key = object_key(conn, n);
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("bucket", BUCKET)
            .append_pair("object", &key)
            .append_pair("etag", &etag(conn, n))
            .append_pair("size", &OBJECT_SIZE.to_string())
            .append_pair("mimeType", "video/mp4")
            .append_pair("upload_id", &upload_id(conn, n))
            .finish();
        let (authorization, key_url) = oss_signer().sign(CALLBACK_PATH, None, form.as_bytes());
        Callback {
            n,
            form,
            authorization,
            key_url,
        }
    }

    async fn request(&self, conn: usize, callback: Option<Callback>) -> Result<(), String> {
        let client = &self.clients[conn];
        let is_callback = callback.is_some();
        let request = match callback {
            None => client.get(self.healthz.clone()),
            Some(c) => client
                .post(self.callback.clone())
                .header("authorization", c.authorization)
                .header("x-oss-pub-key-url", c.key_url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(c.form),
        };
        let response = request.send().await.map_err(|e| format!("{e:?}"))?;
        let status = response.status();
        // Reading the body to its end is what returns the connection to the pool.
        let body = response.bytes().await.map_err(|e| format!("{e:?}"))?;
        if status.as_u16() != 200 {
            return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
        }
        if is_callback {
            let json: Value = serde_json::from_slice(&body)
                .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&body)))?;
            if json["Status"] != "OK" || json["duplicate"] != false {
                return Err(format!("unexpected answer {json}"));
            }
        }
        Ok(())
    }

    /// One request on connection `conn`, recorded in `out`.
    async fn one(&self, endpoint: Endpoint, conn: usize, out: &mut Phase) {
        let (callback, n) = match endpoint {
            Endpoint::Healthz => (None, 0),
            Endpoint::Callback => {
                let presigned = self.presigned[conn].lock().unwrap().pop_front();
                let callback = presigned.unwrap_or_else(|| {
                    let signing = Instant::now();
                    let callback = Self::signed_callback(conn, self.next_object(conn));
                    out.signing += signing.elapsed();
                    out.signed_inline += 1;
                    callback
                });
                let n = callback.n;
                (Some(callback), n)
            }
        };
        let at = Instant::now();
        let result = self.request(conn, callback).await;
        out.latencies.push(at.elapsed());
        if let Endpoint::Callback = endpoint {
            out.sent.push(Sent {
                conn,
                n,
                at,
                accepted: result.is_ok(),
            });
        }
        if let Err(e) = result {
            out.errors += 1;
            out.first_error.get_or_insert(e);
        }
    }

    /// Every connection sends requests back to back until `length` has passed.
    /// With `rate`, callbacks are spread evenly over the connections and sent on a schedule
    /// (a late one goes at once) instead of back to back.
    async fn run(
        self: &Arc<Self>,
        endpoint: Endpoint,
        length: Duration,
        rate: Option<u64>,
    ) -> Phase {
        let start = Instant::now();
        let deadline = start + length;
        let connections = self.clients.len();
        let interval = rate.map(|r| Duration::from_secs_f64(connections as f64 / r as f64));
        let tasks: Vec<_> = (0..connections)
            .map(|c| {
                let load = self.clone();
                tokio::spawn(async move {
                    let mut out = Phase::default();
                    let mut next =
                        interval.map(|i| start + i.mul_f64(c as f64 / connections as f64));
                    while Instant::now() < deadline {
                        if let (Some(at), Some(interval)) = (next.as_mut(), interval) {
                            tokio::time::sleep_until((*at).into()).await;
                            *at += interval;
                        }
                        load.one(endpoint, c, &mut out).await;
                    }
                    out
                })
            })
            .collect();
        let mut phase = Phase::default();
        for task in tasks {
            phase.merge(task.await.unwrap());
        }
        phase.elapsed = start.elapsed();
        phase
    }

    /// Opens every connection and sends `per_connection` callbacks on each.
    async fn warm_up(self: &Arc<Self>, per_connection: usize) -> Phase {
        let tasks: Vec<_> = (0..self.clients.len())
            .map(|c| {
                let load = self.clone();
                tokio::spawn(async move {
                    let mut out = Phase::default();
                    load.one(Endpoint::Healthz, c, &mut out).await;
                    for _ in 0..per_connection {
                        load.one(Endpoint::Callback, c, &mut out).await;
                    }
                    out
                })
            })
            .collect();
        let mut phase = Phase::default();
        for task in tasks {
            phase.merge(task.await.unwrap());
        }
        phase
    }
}

/// Samples the receiver's delivery count every [`POLL`] on its own thread. Deliveries are
/// appended in order, so delivery `i` was received no later than the first sample that saw
/// more than `i` of them.
struct Stamper {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Stamps>,
}

struct Stamps {
    /// (when, count) at every change of the count.
    changes: Vec<(Instant, usize)>,
    /// Times between two samples, sorted: the actual resolution.
    gaps: Vec<Duration>,
}

impl Stamps {
    /// When delivery `i` (0-based, in the receiver's order) had been received.
    fn received(&self, i: usize) -> Option<Instant> {
        let at = self.changes.partition_point(|&(_, count)| count <= i);
        self.changes.get(at).map(|&(when, _)| when)
    }
}

impl Stamper {
    fn start(receiver: WebhookReceiver) -> Stamper {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("delivery-stamper".into())
            .spawn(move || {
                let mut stamps = Stamps {
                    changes: Vec::new(),
                    gaps: Vec::new(),
                };
                let mut last = (Instant::now(), usize::MAX);
                while !stopped.load(Ordering::Relaxed) {
                    let count = receiver.count();
                    let now = Instant::now();
                    stamps.gaps.push(now - last.0);
                    if count != last.1 {
                        stamps.changes.push((now, count));
                    }
                    last = (now, count);
                    std::thread::sleep(POLL);
                }
                stamps.gaps.sort_unstable();
                stamps
            })
            .unwrap();
        Stamper { stop, thread }
    }

    fn finish(self) -> Stamps {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// The delivery check for the measured phase.
#[derive(Default)]
struct Check {
    sent: usize,
    accepted: usize,
    /// Objects sent in the phase with at least one delivery.
    delivered: usize,
    /// Accepted objects without a delivery.
    lost: Vec<String>,
    distinct_triggers: usize,
    /// Deliveries of the phase's objects whose trigger id was delivered before.
    duplicates: usize,
    /// Deliveries of objects this run never sent.
    unexpected: usize,
    rejected: usize,
    /// Send to first delivery, per delivered object.
    delays: Vec<Duration>,
}

fn check(phase: &Phase, deliveries: &[(String, Value)], stamps: &Stamps, rejected: usize) -> Check {
    let sent: HashMap<String, &Sent> = phase
        .sent
        .iter()
        .map(|s| (object_key(s.conn, s.n), s))
        .collect();
    let mut first: HashMap<&str, Instant> = HashMap::new();
    let mut ids: HashSet<&str> = HashSet::new();
    let mut c = Check {
        sent: phase.sent.len(),
        accepted: phase.accepted(),
        rejected,
        ..Check::default()
    };
    for (i, (id, body)) in deliveries.iter().enumerate() {
        let key = body["object_key"].as_str().unwrap_or_default();
        if !sent.contains_key(key) {
            if !key.starts_with("uploads/bench/") {
                c.unexpected += 1;
            }
            continue;
        }
        if !ids.insert(id) {
            c.duplicates += 1;
        }
        if let Some(at) = stamps.received(i) {
            first.entry(key).or_insert(at);
        }
    }
    c.distinct_triggers = ids.len();
    for (key, s) in &sent {
        match first.get(key.as_str()) {
            Some(at) => {
                c.delivered += 1;
                c.delays.push(at.saturating_duration_since(s.at));
            }
            None if s.accepted => c.lost.push(key.clone()),
            None => {}
        }
    }
    c.lost.sort();
    c
}

/// Waits until every object of `keys` has a delivery (up to `timeout`); returns how long
/// it took.
async fn drain(
    receiver: &WebhookReceiver,
    expected_total: usize,
    keys: &HashSet<String>,
    timeout: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if receiver.count() >= expected_total {
            let delivered: HashSet<String> = receiver
                .deliveries()
                .into_iter()
                .filter_map(|(_, body)| body["object_key"].as_str().map(str::to_owned))
                .collect();
            if keys.iter().all(|k| delivered.contains(k)) {
                return Some(start.elapsed());
            }
        }
        if start.elapsed() >= timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Per second from the start of the measured phase: callbacks accepted and deliveries
/// received.
struct Timeline {
    accepted: Vec<usize>,
    delivered: Vec<usize>,
}

impl Timeline {
    fn new(started: Instant, phase: &Phase, stamps: &Stamps, before: usize) -> Timeline {
        let second = |at: Instant| at.saturating_duration_since(started).as_secs() as usize;
        let mut accepted = Vec::new();
        for s in phase.sent.iter().filter(|s| s.accepted) {
            let i = second(s.at);
            if accepted.len() <= i {
                accepted.resize(i + 1, 0);
            }
            accepted[i] += 1;
        }
        // The count at the end of each second, from the samples taken when it changed.
        let mut delivered = Vec::new();
        let mut last = before;
        for &(at, count) in &stamps.changes {
            let i = second(at);
            if delivered.len() <= i {
                delivered.resize(i + 1, 0);
            }
            delivered[i] += count.saturating_sub(last);
            last = count;
        }
        Timeline {
            accepted,
            delivered,
        }
    }
}

fn join(counts: &[usize]) -> String {
    counts
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

struct Results {
    warm_up: Phase,
    healthz: Phase,
    callbacks: Phase,
    check: Check,
    /// From the end of the measured phase until its last object was delivered.
    drained_after: Option<Duration>,
    /// Sampling gaps of the receive-time stamper, sorted.
    gaps: Vec<Duration>,
    timeline: Timeline,
    warm_up_delivered: bool,
    /// Callbacks signed before the measured phase, and how long that took.
    presigned: usize,
    presigning: Duration,
}

async fn measure(
    load: &Arc<Load>,
    receiver: &WebhookReceiver,
    params: &Params,
    threads: usize,
) -> Results {
    let warm_up = load.warm_up(params.warm_up).await;
    let warm_up_keys: HashSet<String> = warm_up
        .sent
        .iter()
        .filter(|s| s.accepted)
        .map(|s| object_key(s.conn, s.n))
        .collect();
    let warm_up_delivered = drain(receiver, warm_up_keys.len(), &warm_up_keys, DRAIN_TIMEOUT)
        .await
        .is_some();
    let before = receiver.count();

    let per_connection =
        (params.presign_rate * params.phase.as_secs() as usize).div_ceil(params.connections);
    let signer = load.clone();
    let presigning = tokio::task::spawn_blocking(move || signer.presign(per_connection, threads))
        .await
        .unwrap();

    let healthz = load.run(Endpoint::Healthz, params.phase, None).await;

    let stamper = Stamper::start(receiver.clone());
    let started = Instant::now();
    // On stderr, so a profiler can be attached to just this phase.
    eprintln!("measured callback phase: started");
    let callbacks = load
        .run(Endpoint::Callback, params.phase, params.rate)
        .await;
    let keys: HashSet<String> = callbacks
        .sent
        .iter()
        .filter(|s| s.accepted)
        .map(|s| object_key(s.conn, s.n))
        .collect();
    let drained_after = drain(receiver, before + keys.len(), &keys, DRAIN_TIMEOUT).await;
    if drained_after.is_some() {
        tokio::time::sleep(SETTLE).await;
    }
    let mut stamps = stamper.finish();
    let timeline = Timeline::new(started, &callbacks, &stamps, before);
    let check = check(
        &callbacks,
        &receiver.deliveries(),
        &stamps,
        receiver.rejected(),
    );
    Results {
        warm_up,
        healthz,
        callbacks,
        check,
        drained_after,
        gaps: std::mem::take(&mut stamps.gaps),
        timeline,
        warm_up_delivered,
        presigned: per_connection * params.connections,
        presigning,
    }
}

struct Server {
    app: common::Server,
    _sts: StsFake,
    oss: OssFake,
    verify: bool,
    database: String,
    max_connections: u32,
    processing: String,
    /// A database created on a PostgreSQL server for this run: (server URL, name).
    created: Option<(String, String)>,
}

/// Creates a fresh database on the PostgreSQL server at `server`; returns its URL and name.
async fn fresh_postgres_database(server: &str) -> (String, String) {
    let name = format!("mg_bench_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(server)
        .await
        .expect("connect to BENCH_DATABASE_URL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create the bench database");
    let mut url = Url::parse(server).expect("BENCH_DATABASE_URL is a URL");
    url.set_path(&format!("/{name}"));
    (url.to_string(), name)
}

/// Starts the (idle) STS fake and the app, with one webhook workflow delivering to
/// `receiver`, on the current (server) runtime.
async fn start_server(receiver_url: &str, dir: &std::path::Path) -> Server {
    let sts = StsFake::start().await;
    let oss = OssFake::start().await;
    let verify = env_or("BENCH_VERIFY", 1) == 1;
    let (url, database, created) = match std::env::var("BENCH_DATABASE_URL") {
        Ok(server) if !server.is_empty() => {
            let (url, name) = fresh_postgres_database(&server).await;
            let shown = format!(
                "{} (fresh database on BENCH_DATABASE_URL's server)",
                shown_url(&url)
            );
            (url, shown, Some((server, name)))
        }
        _ => (
            format!("sqlite://{}/mediagate.db", dir.display()),
            "SQLite file in a temporary directory".into(),
            None,
        ),
    };
    let mut c = config_for(&sts, url);
    c.workflows = vec![WorkflowConfig {
        name: WORKFLOW.into(),
        state: WorkflowState::Active,
        bucket: BUCKET.into(),
        prefix: "uploads/".into(),
        sink: SinkKind::Webhook,
        media_workflow_id: None,
        webhook_url: Some(receiver_url.to_owned()),
        webhook_secret: Some(SecretString::from(WEBHOOK_SECRET)),
        output_prefix: None,
        output_bucket: None,
        track_outcome: None,
    }];
    c.processing.concurrency = env_or("BENCH_WORKER_CONCURRENCY", 32) as usize;
    c.processing.poll_interval_ms = 50;
    c.storage.internal_endpoint = Some(oss.url.clone());
    c.verification.enabled = verify;
    c.database.max_connections =
        env_or("BENCH_DB_CONNECTIONS", c.database.max_connections.into()) as u32;
    let max_connections = c.database.max_connections;
    let p = &c.processing;
    let processing = format!(
        "worker concurrency {}, poll {} ms, lease {} s, webhook timeout {} ms, backoff {}..{} ms (config_for's values but concurrency, from BENCH_WORKER_CONCURRENCY, and poll)",
        p.concurrency,
        p.poll_interval_ms,
        p.lease_seconds,
        p.webhook_timeout_ms,
        p.backoff_base_ms,
        p.backoff_max_ms
    );
    Server {
        app: common::Server::start(c).await,
        _sts: sts,
        oss,
        verify,
        database,
        max_connections,
        processing,
        created,
    }
}

fn main() {
    // The server's own log, on stderr, only when asked for.
    if std::env::var_os("RUST_LOG").is_some() {
        mediagate::telemetry::init(mediagate::telemetry::LogFormat::Pretty);
    }
    let params = Params::from_env();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Separate runtimes keep the load generator's and the receiver's tasks off the server's
    // workers; they still compete for the same cores, which the output states.
    let server_rt = runtime("server", cores);
    let load_rt = runtime("load", cores);
    let dir = tempfile::tempdir().unwrap();
    // Generate the signing key before anything is timed.
    let _ = oss_signer();
    let receiver = load_rt.block_on(WebhookReceiver::start(WEBHOOK_SECRET));
    let server = server_rt.block_on(start_server(&receiver.url, dir.path()));

    println!("# mediagate upload notification benchmark\n");
    println!(
        "- database: {}, max_connections {}",
        server.database, server.max_connections
    );
    println!("- processing: {}", server.processing);
    println!(
        "- verification: {}",
        if server.verify {
            "on (each object: a signed HEAD and a ranged GET to a loopback OSS that recomputes the signature, then the webhook)"
        } else {
            "off (BENCH_VERIFY=0): the callback's attributes are believed"
        }
    );
    println!(
        "- {} connections (one reqwest client each, keep-alive), {} s per measured phase; warm-up: {} callbacks per connection, all delivered before measuring",
        params.connections,
        params.phase.as_secs(),
        params.warm_up,
    );
    if let Some(rate) = params.rate {
        println!("- callbacks held at {rate}/s (BENCH_RATE), spread evenly over the connections");
    }
    // Enough issued uploads for every object a connection can send: the warm-up, the
    // presigned ones, and as many again signed during the phase.
    let per_connection = params.warm_up as u64
        + 2 * (params.presign_rate as u64 * params.phase.as_secs())
            .div_ceil(params.connections as u64)
        + 1000;
    let issuing = Instant::now();
    server_rt.block_on(issue_uploads(
        &server.app.app.store,
        &server.oss,
        params.connections,
        per_connection,
    ));
    println!(
        "- each callback: RSA-signed form body for a new object `uploads/bench/<conn>/<n>.mp4` of an upload issued beforehand ({} uploads written in {:.1} s), one active webhook workflow on `{BUCKET}` / `uploads/`",
        per_connection * params.connections as u64,
        issuing.elapsed().as_secs_f64()
    );
    println!(
        "- server on one multi-thread tokio runtime ({cores} workers), load generator and webhook receiver on a separate one ({cores} workers), sharing this machine's {cores} cores\n"
    );

    let load = Arc::new(Load::new(&server.app.base, &params));
    let mut r = load_rt.block_on(measure(&load, &receiver, &params, cores));
    // Closing the clients' connections lets the graceful shutdown finish.
    drop(load);

    table_header();
    let (healthz, callbacks) = (&mut r.healthz, &mut r.callbacks);
    row(
        "GET /healthz",
        &mut healthz.latencies,
        healthz.elapsed,
        healthz.errors,
    );
    row(
        "POST oss-callback",
        &mut callbacks.latencies,
        callbacks.elapsed,
        callbacks.errors,
    );
    println!();
    let events = rate(r.check.accepted, callbacks.elapsed);
    println!(
        "accepted durable events/s: {events:.0}; ratio events/healthz: {:.2}",
        events / rate(healthz.latencies.len(), healthz.elapsed)
    );
    let c = &mut r.check;
    c.delays.sort_unstable();
    println!(
        "callback -> webhook delivery: p50 {:.1} ms, p99 {:.1} ms ({} deliveries; receive time stamped by sampling the receiver's count every {} ms from a separate thread, so up to one sampling gap late: gaps p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms)",
        percentile_ms(&c.delays, 50.0),
        percentile_ms(&c.delays, 99.0),
        c.delays.len(),
        POLL.as_millis(),
        percentile_ms(&r.gaps, 50.0),
        percentile_ms(&r.gaps, 99.0),
        percentile_ms(&r.gaps, 100.0),
    );
    println!(
        "per second since the phase started: accepted {} | delivered {}",
        join(&r.timeline.accepted),
        join(&r.timeline.delivered)
    );
    match r.drained_after {
        Some(d) => println!(
            "last object delivered {:.0} ms after the measured phase ended",
            d.as_secs_f64() * 1000.0
        ),
        None => println!(
            "NOT all objects delivered within {} s after the measured phase",
            DRAIN_TIMEOUT.as_secs()
        ),
    }
    let accepted = if c.accepted == c.sent {
        String::new()
    } else {
        format!(" (accepted: {})", c.accepted)
    };
    println!(
        "objects sent: {}{accepted}, delivered: {}, distinct trigger ids: {}, duplicate deliveries: {}, signature rejections: {}",
        c.sent, c.delivered, c.distinct_triggers, c.duplicates, c.rejected,
    );
    println!(
        "callbacks RSA-signed before the measured phase: {} ({:.1} s on {cores} threads); signed during it: {}{}",
        r.presigned,
        r.presigning.as_secs_f64(),
        r.callbacks.signed_inline,
        if r.callbacks.signed_inline > 0 {
            format!(
                " ({:.0} µs of load-generator CPU each, on the server's cores; raise BENCH_PRESIGN_RATE)",
                r.callbacks.signing.as_secs_f64() * 1e6 / r.callbacks.signed_inline as f64
            )
        } else {
            String::new()
        }
    );
    if c.duplicates > 0 {
        println!(
            "DUPLICATES: {} deliveries repeated a trigger id (allowed by at-least-once, expected 0)",
            c.duplicates
        );
    }
    if c.unexpected > 0 {
        println!(
            "deliveries of objects this run never sent: {}",
            c.unexpected
        );
    }
    if !r.warm_up_delivered {
        println!("warm-up objects were NOT all delivered");
    }
    if !c.lost.is_empty() {
        println!(
            "LOST: {} accepted objects never delivered, e.g. {}",
            c.lost.len(),
            c.lost[..c.lost.len().min(5)].join(", ")
        );
    }
    for (name, phase) in [
        ("warm-up", &r.warm_up),
        ("healthz", &r.healthz),
        ("callbacks", &r.callbacks),
    ] {
        if let Some(e) = &phase.first_error {
            println!("{name}: {} errors, first: {e}", phase.errors);
        }
    }

    server.app.stop(&server_rt);
    if let Some((server_url, name)) = &server.created {
        let dropped = server_rt.block_on(async {
            let mut conn = sqlx::PgConnection::connect(server_url).await?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await
        });
        if let Err(e) = dropped {
            eprintln!("could not drop the bench database {name}: {e}");
        }
    }
    let failed = r.warm_up.errors + r.healthz.errors + r.callbacks.errors > 0
        || !r.warm_up_delivered
        || !r.check.lost.is_empty()
        || r.check.rejected > 0;
    if failed {
        std::process::exit(1);
    }
}
