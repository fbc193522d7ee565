//! `cargo bench --bench vending`: warm-cache credential vending (`POST /v1/uploads`, which
//! records the upload durably, and `GET /v1/sts-token`, which only serves the cache) next to
//! `GET /healthz`, with the `aliyun` provider against a loopback STS fake that answers after
//! `BENCH_STS_LATENCY_MS`, and, when `BENCH_RGW_URL` names a Ceph RGW (`scripts/rgw.sh
//! start`), with the `s3` provider against RGW's STS in the same run.
//!
//! Environment: `BENCH_USERS` (100), `BENCH_CONNECTIONS` (32), `BENCH_SECONDS` per measured
//! phase (10), `BENCH_STS_LATENCY_MS` (30), `BENCH_DATABASE_URL` (default: SQLite in a
//! temporary directory), `BENCH_RGW_URL` (unset).
//!
//! The production middleware is on: request ids, metrics, timeouts, CORS and the rate limits
//! (with quotas the load never reaches, so every request is checked and none refused).
//!
//! Prints per provider a markdown table (requests, req/s, p50/p99 latency, errors per
//! endpoint, the cold phase in which every user's first vend calls `AssumeRole`), the
//! vending/healthz throughput ratio, and the STS calls seen by the fake.

// The API tests' support code (STS fake, configuration, tokens); the bench uses only part of it.
#[allow(dead_code)]
#[path = "../tests/api/support/mod.rs"]
mod support;

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{env_or, rate, row, runtime, shown_url, table_header};
use mediagate::config::{Config, Provider};
use reqwest::Url;
use secrecy::SecretString;
use serde_json::json;
use support::{JWT_SECRET, StsFake, config_for, token_with};

const UPLOAD_BODY: &str = r#"{"file_name":"clip.mp4"}"#;
/// Measured phases per endpoint, alternated so that drift (thermal, database growth) hits
/// both endpoints alike.
const ROUNDS: usize = 2;

struct Params {
    users: usize,
    connections: usize,
    phase: Duration,
    sts_latency: Duration,
}

impl Params {
    fn from_env() -> Params {
        let params = Params {
            users: env_or("BENCH_USERS", 100) as usize,
            connections: env_or("BENCH_CONNECTIONS", 32) as usize,
            phase: Duration::from_secs(env_or("BENCH_SECONDS", 10)),
            sts_latency: Duration::from_millis(env_or("BENCH_STS_LATENCY_MS", 30)),
        };
        assert!(params.users > 0 && params.connections > 0 && !params.phase.is_zero());
        params
    }
}

#[derive(Clone, Copy)]
enum Endpoint {
    Healthz,
    Vending,
    StsToken,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::Healthz => "GET /healthz",
            Endpoint::Vending => "POST /v1/uploads",
            Endpoint::StsToken => "GET /v1/sts-token",
        }
    }
}

/// What one or more measured phases produced.
#[derive(Default)]
struct Phase {
    latencies: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
    elapsed: Duration,
}

impl Phase {
    fn merge(&mut self, other: Phase) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.elapsed += other.elapsed;
    }
}

/// The load generator: one client per connection, and a token per user minted up front so
/// signing them is not part of what is measured.
struct Load {
    healthz: Url,
    uploads: Url,
    sts_token: Url,
    clients: Vec<reqwest::Client>,
    tokens: Vec<String>,
}

impl Load {
    fn new(base: &str, params: &Params) -> Load {
        let exp = chrono::Utc::now().timestamp() + 24 * 3600;
        let tokens = (0..params.users)
            .map(|u| {
                token_with(
                    json!({"sub": format!("bench-user-{u}"), "exp": exp}),
                    JWT_SECRET,
                )
            })
            .collect();
        let clients = common::clients(params.connections);
        Load {
            healthz: Url::parse(&format!("{base}/healthz")).unwrap(),
            uploads: Url::parse(&format!("{base}/v1/uploads")).unwrap(),
            sts_token: Url::parse(&format!("{base}/v1/sts-token")).unwrap(),
            clients,
            tokens,
        }
    }

    async fn request(&self, endpoint: Endpoint, conn: usize, user: usize) -> Result<(), String> {
        let client = &self.clients[conn];
        let (request, expected) = match endpoint {
            Endpoint::Healthz => (client.get(self.healthz.clone()), 200),
            Endpoint::Vending => (
                client
                    .post(self.uploads.clone())
                    .bearer_auth(&self.tokens[user])
                    .header("content-type", "application/json")
                    .body(UPLOAD_BODY),
                201,
            ),
            Endpoint::StsToken => (
                client
                    .get(self.sts_token.clone())
                    .bearer_auth(&self.tokens[user]),
                200,
            ),
        };
        let response = request.send().await.map_err(|e| format!("{e:?}"))?;
        let status = response.status();
        // Reading the body to its end is what returns the connection to the pool.
        let body = response.bytes().await.map_err(|e| format!("{e:?}"))?;
        if status.as_u16() != expected {
            return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
        }
        Ok(())
    }

    /// Every connection sends requests back to back until `length` has passed.
    async fn run(self: &Arc<Self>, endpoint: Endpoint, length: Duration) -> Phase {
        // On stderr, so a profiler can be attached to one endpoint's phase.
        eprintln!("measured phase started: {}", endpoint.name());
        let n = self.clients.len();
        let start = Instant::now();
        let deadline = start + length;
        let tasks: Vec<_> = (0..n)
            .map(|c| {
                let load = self.clone();
                tokio::spawn(async move {
                    let mut out = Phase::default();
                    let mut i = 0;
                    while Instant::now() < deadline {
                        // Connection c walks the users with stride n, so every user is hit
                        // and a user's requests spread over connections.
                        let user = (c + i * n) % load.tokens.len();
                        let sent = Instant::now();
                        let result = load.request(endpoint, c, user).await;
                        out.latencies.push(sent.elapsed());
                        if let Err(e) = result {
                            out.errors += 1;
                            out.first_error.get_or_insert(e);
                        }
                        i += 1;
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

    /// Each user vends once (spread over the connections), and every connection is opened,
    /// so the measured phases see a warm credential cache and established connections.
    async fn warm_up(self: &Arc<Self>) -> Phase {
        let n = self.clients.len();
        let start = Instant::now();
        let tasks: Vec<_> = (0..n)
            .map(|c| {
                let load = self.clone();
                tokio::spawn(async move {
                    let mut out = Phase::default();
                    let vends = (c..load.tokens.len())
                        .step_by(n)
                        .map(|u| (Endpoint::Vending, u));
                    for (endpoint, user) in std::iter::once((Endpoint::Healthz, 0)).chain(vends) {
                        if let Err(e) = load.request(endpoint, c, user).await {
                            out.errors += 1;
                            out.first_error.get_or_insert(e);
                        }
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
}

struct Results {
    warm_up: Phase,
    /// STS calls the fake received during warm-up, and the credentials it issued.
    sts_warm_up: usize,
    issued_warm_up: u64,
    healthz: Phase,
    vending: Phase,
    sts_token: Phase,
    /// STS calls the fake received during the measured vending phases.
    sts_measured: usize,
}

async fn measure(load: &Arc<Load>, sts: &StsFake, params: &Params) -> Results {
    let warm_up = load.warm_up().await;
    let (sts_warm_up, issued_warm_up) = (sts.calls(), sts.issued());
    let mut healthz = Phase::default();
    let mut vending = Phase::default();
    let mut sts_token = Phase::default();
    let mut sts_measured = 0;
    for _ in 0..ROUNDS {
        healthz.merge(load.run(Endpoint::Healthz, params.phase).await);
        let before = sts.calls();
        sts_token.merge(load.run(Endpoint::StsToken, params.phase).await);
        vending.merge(load.run(Endpoint::Vending, params.phase).await);
        sts_measured += sts.calls() - before;
    }
    Results {
        warm_up,
        sts_warm_up,
        issued_warm_up,
        healthz,
        vending,
        sts_token,
        sts_measured,
    }
}

/// One provider's server: the app, the STS fake (the one called for `aliyun`; idle for
/// `s3`) and what the output says about it.
struct Server {
    app: common::Server,
    sts: StsFake,
    label: String,
    /// Whether `sts` is the STS the app calls, so its counts mean something.
    counts_sts: bool,
}

fn database_url(dir: &std::path::Path, name: &str) -> (String, String) {
    match std::env::var("BENCH_DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            let shown = format!("{} (BENCH_DATABASE_URL)", shown_url(&url));
            (url, shown)
        }
        _ => (
            format!("sqlite://{}/{name}.db", dir.display()),
            "SQLite file in a temporary directory".into(),
        ),
    }
}

/// Starts the STS fake and the app for `provider` on the current (server) runtime.
async fn start_server(params: &Params, dir: &std::path::Path, provider: Provider) -> Server {
    let sts = StsFake::start().await;
    sts.set_latency(params.sts_latency);
    let (url, database) = database_url(dir, provider.as_str());
    let mut c: Config = config_for(&sts, url);
    // Rate limits on, as in production, with quotas the load never reaches: every request
    // pays for the check without being refused.
    c.limits.vend_per_user_per_minute = 100_000_000;
    c.limits.vend_per_ip_per_minute = 100_000_000;
    c.limits.auth_failures_per_ip_per_minute = 100_000_000;
    // And the CORS layer a browser deployment has on the app routes.
    c.server.cors_origins = vec!["https://app.example.com".into()];
    let label = match provider {
        Provider::Aliyun => format!(
            "aliyun: loopback STS fake answering after {} ms",
            params.sts_latency.as_millis()
        ),
        Provider::S3 => {
            let rgw = std::env::var("BENCH_RGW_URL").expect("BENCH_RGW_URL");
            c.storage.provider = Provider::S3;
            c.storage.region = "us-east-1".into();
            c.storage.endpoint = rgw.clone();
            c.storage.path_style = true;
            c.sts.endpoint = Some(rgw.clone());
            c.sts.access_key_id = "TESTERAK".into();
            c.sts.access_key_secret = SecretString::from("TESTERSK");
            c.sts.role_arn = "arn:aws:iam:::role/uploader".into();
            format!("s3: Ceph RGW STS at {rgw} (SigV4 AssumeRole)")
        }
    };
    let label = format!(
        "{label}; database {database}, max_connections {}",
        c.database.max_connections
    );
    Server {
        app: common::Server::start(c).await,
        counts_sts: provider == Provider::Aliyun,
        sts,
        label,
    }
}

fn report(server: &Server, params: &Params, r: &mut Results) {
    println!(
        "## provider {}
",
        server.label
    );
    table_header();
    for (endpoint, phase) in [
        (Endpoint::Healthz, &mut r.healthz),
        (Endpoint::StsToken, &mut r.sts_token),
        (Endpoint::Vending, &mut r.vending),
    ] {
        row(
            endpoint.name(),
            &mut phase.latencies,
            phase.elapsed,
            phase.errors,
        );
    }
    println!();
    let healthz = rate(r.healthz.latencies.len(), r.healthz.elapsed);
    println!(
        "ratio to healthz: sts-token {:.2}, uploads {:.2}",
        rate(r.sts_token.latencies.len(), r.sts_token.elapsed) / healthz,
        rate(r.vending.latencies.len(), r.vending.elapsed) / healthz,
    );
    println!(
        "cold vending (warm-up, one AssumeRole per user): {} users in {:.0} ms, {:.0} vends/s",
        params.users,
        r.warm_up.elapsed.as_secs_f64() * 1000.0,
        rate(params.users, r.warm_up.elapsed)
    );
    let vended = r.vending.latencies.len() + r.sts_token.latencies.len();
    if server.counts_sts {
        println!(
            "STS calls during warm-up: {} (users: {}, credentials issued: {})",
            r.sts_warm_up, params.users, r.issued_warm_up
        );
        println!(
            "STS calls per 10,000 vending requests (measured): {:.2} ({} calls in {} requests)",
            r.sts_measured as f64 * 10_000.0 / vended.max(1) as f64,
            r.sts_measured,
            vended,
        );
    }
    for (name, phase) in [
        ("warm-up", &r.warm_up),
        ("healthz", &r.healthz),
        ("vending", &r.vending),
        ("sts-token", &r.sts_token),
    ] {
        if let Some(e) = &phase.first_error {
            println!("{name}: {} errors, first: {e}", phase.errors);
        }
    }
    println!();
}

fn main() {
    let params = Params::from_env();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Separate runtimes keep the load generator's tasks off the server's workers; they still
    // compete for the same cores, which the output states.
    let server_rt = runtime("server", cores);
    let load_rt = runtime("load", cores);
    let dir = tempfile::tempdir().unwrap();
    let mut providers = vec![Provider::Aliyun];
    if std::env::var("BENCH_RGW_URL").is_ok_and(|u| !u.is_empty()) {
        providers.push(Provider::S3);
    }

    println!("# mediagate credential vending benchmark\n");
    println!(
        "- {} users, {} connections (one reqwest client each, keep-alive), {} s per measured phase, {ROUNDS} phases per endpoint alternated",
        params.users,
        params.connections,
        params.phase.as_secs(),
    );
    println!(
        "- server and STS fake on one multi-thread tokio runtime ({cores} workers), load generator on a separate one ({cores} workers), sharing this machine's {cores} cores\n"
    );

    let mut errors = 0;
    for provider in providers {
        let server = server_rt.block_on(start_server(&params, dir.path(), provider));
        let load = Arc::new(Load::new(&server.app.base, &params));
        let mut r = load_rt.block_on(measure(&load, &server.sts, &params));
        // Closing the clients' connections lets the graceful shutdown finish.
        drop(load);
        report(&server, &params, &mut r);
        errors += r.warm_up.errors + r.healthz.errors + r.vending.errors + r.sts_token.errors;
        server.app.stop(&server_rt);
    }
    if errors > 0 {
        std::process::exit(1);
    }
}
