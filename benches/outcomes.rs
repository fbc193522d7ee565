//! `cargo bench --bench outcomes`: how long after an MPS run ends its upload is `ready` for the
//! app user, when mediagate only polls MPS (each run on its own backoff) and when MNS pushes
//! the run's `Report` message as it ends, side by side in one run; and how many lookups each
//! run costs in both cases.
//!
//! The real app serves on a loopback port with all its loops running in real time (worker,
//! follower every second), against the loopback MPS (`tests/api/support/mps_fake.rs`), OSS
//! and STS. Uploads are issued (`POST /v1/uploads`), announced by signed OSS callbacks and
//! delivered to MPS by the worker (AddMedia); their outputs are put in the store. Every run is
//! scripted to end at its own moment on the fake's clock, which the bench moves forward one
//! run at a time, evenly spaced over `BENCH_SECONDS`, starting once the runs are looked up at
//! the longest wait. As each run ends the bench alternates the modes: "poll" leaves the run to
//! the follower's next lookup; "message" pushes its `Report` workflow message, signed as MNS
//! signs, to `POST /v1/notifications/mps-events` at once. The upload is then read with
//! `GET /v1/uploads/{id}` as its owner every 25 ms until it is `ready`.
//!
//! Environment: `BENCH_UPLOADS` per mode (50), `BENCH_SECONDS` over which the runs end (25),
//! `BENCH_POLL_MIN` and `BENCH_POLL_MAX` (1 and 4: `processing.outcome_poll_min_seconds` and
//! `outcome_poll_max_seconds`), `BENCH_QUERY_PER_SECOND` (`mps.query_per_second`, 10).
//! Exits non-zero unless every upload ends `ready` with its two outputs.

#[allow(dead_code)]
#[path = "../tests/api/support/mod.rs"]
mod support;

#[allow(dead_code)]
mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{env_or, percentile_ms, runtime};
use mediagate::config::{SinkKind, WorkflowConfig, WorkflowState};
use serde_json::{Value, json};
use support::mps_fake::{MEDIA_WORKFLOW_ID, RunScript, default_cover_key, default_play_key};
use support::notify::PushFormat;
use support::oss_fake::{BUCKET, mp4_header};
use support::{
    JWT_SECRET, MpsFake, OssFake, StsFake, config_for, http_date, mns_signer, oss_signer,
    token_with,
};

const USER: &str = "bench";
const OBJECT_SIZE: usize = 4096;
const MESSAGES_PATH: &str = "/v1/notifications/mps-events";
const CALLBACK_PATH: &str = "/v1/notifications/oss-callback";
/// How often an upload is read while the bench waits for it to be `ready`.
const READ_EVERY: Duration = Duration::from_millis(25);
/// How long after its run's end an upload may take to be `ready` before the bench gives up.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Uploads issued and announced at once while setting up.
const ISSUERS: usize = 8;
const LOOKUP: &str = "QueryMediaWorkflowExecutionList";
const MEDIA: &str = "QueryMediaList";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Poll,
    Message,
}

/// One upload and the MPS run its delivery started.
struct Run {
    run_id: String,
    upload_id: String,
    mode: Option<Mode>,
    /// When the fake's clock passed the run's end.
    ended: Option<Instant>,
    /// Lookups of the run before its end.
    lookups_before_end: u32,
    /// When a read of the upload first answered `ready`.
    ready: Option<Instant>,
    /// Why it never was.
    failure: Option<String>,
}

struct Settings {
    per_mode: usize,
    spread: Duration,
    poll_min: u64,
    poll_max: u64,
    query_per_second: u32,
}

impl Settings {
    fn from_env() -> Settings {
        let s = Settings {
            per_mode: env_or("BENCH_UPLOADS", 50) as usize,
            spread: Duration::from_secs(env_or("BENCH_SECONDS", 25)),
            poll_min: env_or("BENCH_POLL_MIN", 1),
            poll_max: env_or("BENCH_POLL_MAX", 4),
            query_per_second: env_or("BENCH_QUERY_PER_SECOND", 10) as u32,
        };
        assert!(s.per_mode > 0 && !s.spread.is_zero());
        s
    }

    fn runs(&self) -> usize {
        2 * self.per_mode
    }

    /// The waits from a run's opening until they reach `poll_max`: min, doubled, ...
    fn ramp(&self) -> Duration {
        let (mut wait, mut total) = (self.poll_min, 0);
        loop {
            total += wait;
            if wait >= self.poll_max {
                return Duration::from_secs(total);
            }
            wait = (wait * 2).min(self.poll_max);
        }
    }
}

/// The app and the stand-ins it talks to, on the server runtime.
struct Env {
    server: common::Server,
    mps: MpsFake,
    oss: OssFake,
    _sts: StsFake,
}

async fn start(s: &Settings, dir: &std::path::Path) -> Env {
    let sts = StsFake::start().await;
    let mps = MpsFake::start().await;
    let oss = OssFake::start().await;
    let mut c = config_for(&sts, format!("sqlite://{}/mediagate.db", dir.display()));
    c.mps.endpoint = mps.url.clone();
    c.mps.query_per_second = s.query_per_second;
    c.storage.internal_endpoint = Some(oss.url.clone());
    c.processing.outcome_poll_min_seconds = s.poll_min;
    c.processing.outcome_poll_max_seconds = s.poll_max;
    c.workflows = vec![WorkflowConfig {
        name: "bench-transcode".into(),
        state: WorkflowState::Active,
        bucket: BUCKET.into(),
        prefix: "uploads/".into(),
        sink: SinkKind::Mps,
        media_workflow_id: Some(MEDIA_WORKFLOW_ID.into()),
        webhook_url: None,
        webhook_secret: None,
        output_prefix: None,
        output_bucket: None,
        track_outcome: None,
    }];
    Env {
        server: common::Server::start(c).await,
        mps,
        oss,
        _sts: sts,
    }
}

/// Issues upload `n` to the bench user, puts its object in the store and announces it with a
/// signed OSS callback; its upload id.
async fn issue(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    oss: &OssFake,
    n: usize,
) -> String {
    let response = client
        .post(format!("{base}/v1/uploads"))
        .bearer_auth(token)
        .json(&json!({"file_name": format!("clip{n}.mp4"), "media": {}}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let issued: Value = response.json().await.unwrap();
    let (id, key) = (
        issued["upload_id"].as_str().unwrap().to_owned(),
        issued["object_key"].as_str().unwrap().to_owned(),
    );
    let etag = format!("BENCH{n:012}");
    oss.put_media_if_absent(&key, OBJECT_SIZE, &etag);
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("bucket", BUCKET)
        .append_pair("object", &key)
        .append_pair("etag", &etag)
        .append_pair("size", &OBJECT_SIZE.to_string())
        .append_pair("mimeType", "video/mp4")
        .append_pair("upload_id", &id)
        .finish();
    let (authorization, key_url) = oss_signer().sign(CALLBACK_PATH, None, form.as_bytes());
    let response = client
        .post(format!("{base}{CALLBACK_PATH}"))
        .header("authorization", authorization)
        .header("x-oss-pub-key-url", key_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    id
}

async fn read_upload(client: &reqwest::Client, base: &str, token: &str, id: &str) -> Value {
    let response = client
        .get(format!("{base}/v1/uploads/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Issues every upload, waits until each is delivered (one run started per upload), and puts
/// the default outputs of every run's media in the store; the runs, and when the last opened.
async fn set_up(
    env: &Env,
    s: &Settings,
    client: &reqwest::Client,
    token: &str,
) -> (Vec<Run>, Instant) {
    // Run k ends when the fake's clock reaches k + 1 s; the clock stays at 0 until every run
    // has started. (Which upload gets which script depends on the order of AddMedia calls;
    // the bench reads each run's end from the fake rather than assuming it.)
    for k in 0..s.runs() {
        env.mps
            .script_run(RunScript::completes_after_time(Duration::from_secs(
                k as u64 + 1,
            )));
    }
    let base = env.server.base.clone();
    let mut issuers = tokio::task::JoinSet::new();
    for i in 0..ISSUERS {
        let (client, base, token, oss) = (
            client.clone(),
            base.clone(),
            token.to_owned(),
            env.oss.clone(),
        );
        let runs = s.runs();
        issuers.spawn(async move {
            let mut ids = Vec::new();
            for n in (i..runs).step_by(ISSUERS) {
                ids.push(issue(&client, &base, &token, &oss, n).await);
            }
            ids
        });
    }
    let mut upload_ids = Vec::new();
    while let Some(ids) = issuers.join_next().await {
        upload_ids.extend(ids.unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.mps.run_ids().len() < s.runs() {
        assert!(
            Instant::now() < deadline,
            "only {} of {} uploads delivered to MPS",
            env.mps.run_ids().len(),
            s.runs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let run_ids = env.mps.run_ids();
    assert_eq!(
        run_ids.len(),
        s.runs(),
        "one run per upload, none started again"
    );
    let mut upload_of_media = HashMap::new();
    for id in upload_ids {
        // AddMedia has answered; the worker may still be recording the delivery.
        let mut upload = read_upload(client, &base, token, &id).await;
        while !upload["triggers"][0]["media_id"].is_string() {
            assert!(Instant::now() < deadline, "never delivered: {upload}");
            tokio::time::sleep(Duration::from_millis(10)).await;
            upload = read_upload(client, &base, token, &id).await;
        }
        assert_eq!(upload["state"], "processing", "{upload}");
        let media_id = upload["triggers"][0]["media_id"]
            .as_str()
            .unwrap()
            .to_owned();
        upload_of_media.insert(media_id, id);
    }
    let opened = Instant::now();
    let runs = run_ids
        .into_iter()
        .map(|run_id| {
            let message = env.mps.workflow_message(&run_id, "Start");
            let media_id = message["MediaWorkflowExecution"]["MediaId"]
                .as_str()
                .unwrap();
            env.oss.put(
                &default_play_key(media_id),
                [mp4_header(), vec![7; 2000]].concat(),
                "video/mp4",
            );
            env.oss.put(
                &default_cover_key(media_id),
                b"cover".to_vec(),
                "image/jpeg",
            );
            Run {
                upload_id: upload_of_media[media_id].clone(),
                run_id,
                mode: None,
                ended: None,
                lookups_before_end: 0,
                ready: None,
                failure: None,
            }
        })
        .collect();
    (runs, opened)
}

fn completed(mps: &MpsFake, run_id: &str) -> bool {
    mps.workflow_message(run_id, "Report")["MediaWorkflowExecution"]["State"] == "Completed"
}

/// After the run's end: in message mode pushes its `Report` message as MNS would, then reads
/// the upload until it is `ready`; when it first was.
async fn follow(
    client: reqwest::Client,
    base: String,
    token: String,
    mps: MpsFake,
    run_id: String,
    upload_id: String,
    mode: Mode,
) -> Result<Instant, String> {
    let started = Instant::now();
    if mode == Mode::Message {
        let report = mps.workflow_message(&run_id, "Report");
        let (body, headers) = mns_signer().mps_push(
            PushFormat::Json,
            "mps-topic",
            &report,
            MESSAGES_PATH,
            &http_date(),
        );
        let mut request = client.post(format!("{base}{MESSAGES_PATH}"));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.body(body).send().await.map_err(|e| e.to_string())?;
        if response.status() != 204 {
            return Err(format!("message answered {}", response.status()));
        }
    }
    loop {
        let upload = read_upload(&client, &base, &token, &upload_id).await;
        match upload["state"].as_str() {
            Some("ready") => return Ok(Instant::now()),
            Some("processing") => {}
            _ => return Err(format!("upload left processing but not ready: {upload}")),
        }
        if started.elapsed() > READY_TIMEOUT {
            return Err(format!(
                "not ready {} s after its run ended: {upload}",
                READY_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(READ_EVERY).await;
    }
}

/// Ends the runs one by one, evenly spaced over the spread, from `first`; alternates the
/// modes in the order they end; waits for every upload to be ready (or to fail).
async fn measure(
    env: &Env,
    s: &Settings,
    client: &reqwest::Client,
    token: &str,
    runs: &mut [Run],
    first: Instant,
) {
    let spacing = s.spread / s.runs() as u32;
    let mut followers = tokio::task::JoinSet::new();
    let mut ended = 0;
    for tick in 0..s.runs() {
        tokio::time::sleep_until((first + spacing * tick as u32).into()).await;
        let lookups: Vec<u32> = runs
            .iter()
            .map(|r| {
                if r.ended.is_none() {
                    env.mps.lookups(&r.run_id)
                } else {
                    0
                }
            })
            .collect();
        env.mps.advance(Duration::from_secs(1));
        let at = Instant::now();
        for (i, run) in runs.iter_mut().enumerate() {
            if run.ended.is_some() || !completed(&env.mps, &run.run_id) {
                continue;
            }
            let mode = if ended % 2 == 0 {
                Mode::Poll
            } else {
                Mode::Message
            };
            ended += 1;
            run.ended = Some(at);
            run.mode = Some(mode);
            run.lookups_before_end = lookups[i];
            let task = follow(
                client.clone(),
                env.server.base.clone(),
                token.to_owned(),
                env.mps.clone(),
                run.run_id.clone(),
                run.upload_id.clone(),
                mode,
            );
            followers.spawn(async move { (i, task.await) });
        }
    }
    while let Some(done) = followers.join_next().await {
        let (i, result) = done.unwrap();
        match result {
            Ok(at) => runs[i].ready = Some(at),
            Err(why) => runs[i].failure = Some(why),
        }
    }
}

/// What the bench found for one mode.
struct Figures {
    runs: usize,
    ready: usize,
    latencies: Vec<Duration>,
    lookups: u32,
    lookups_after_end: u32,
}

fn figures(runs: &[Run], mps: &MpsFake, mode: Mode) -> Figures {
    let of_mode: Vec<&Run> = runs.iter().filter(|r| r.mode == Some(mode)).collect();
    let mut latencies: Vec<Duration> = of_mode
        .iter()
        .filter_map(|r| Some(r.ready?.duration_since(r.ended?)))
        .collect();
    latencies.sort_unstable();
    let lookups: Vec<u32> = of_mode.iter().map(|r| mps.lookups(&r.run_id)).collect();
    Figures {
        runs: of_mode.len(),
        ready: latencies.len(),
        latencies,
        lookups: lookups.iter().sum(),
        lookups_after_end: of_mode
            .iter()
            .zip(&lookups)
            .map(|(r, n)| n - r.lookups_before_end)
            .sum(),
    }
}

impl Figures {
    fn p(&self, p: f64) -> f64 {
        percentile_ms(&self.latencies, p)
    }

    fn per_run(&self, n: u32) -> f64 {
        f64::from(n) / self.runs as f64
    }

    /// Uploads ready only more than `wait` after their run's end.
    fn later_than(&self, wait: Duration) -> usize {
        self.latencies.iter().filter(|l| **l > wait).count()
    }
}

fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        mediagate::telemetry::init(mediagate::telemetry::LogFormat::Pretty);
    }
    let s = Settings::from_env();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The app and its stand-ins on one runtime, the bench's own driving and reading on another;
    // both share the machine's cores.
    let server_rt = runtime("server", cores);
    let bench_rt = runtime("bench", cores);
    let dir = tempfile::tempdir().unwrap();
    // Generate the signing keys before anything is timed.
    let _ = (oss_signer(), mns_signer());
    let env = server_rt.block_on(start(&s, dir.path()));
    let token = token_with(
        json!({"sub": USER, "exp": support::now() + 3600}),
        JWT_SECRET,
    );
    let client = reqwest::Client::new();

    let setting_up = Instant::now();
    let (mut runs, opened) = bench_rt.block_on(set_up(&env, &s, &client, &token));
    let setup = setting_up.elapsed();
    let lead = s.ramp();
    let first = opened + lead;
    bench_rt.block_on(measure(&env, &s, &client, &token, &mut runs, first));
    let measured = opened.elapsed();
    drop(client);

    let poll = figures(&runs, &env.mps, Mode::Poll);
    let message = figures(&runs, &env.mps, Mode::Message);
    // The final state as the owner sees it, outputs included.
    let client = reqwest::Client::new();
    let not_ready: Vec<String> = bench_rt.block_on(async {
        let mut not_ready = Vec::new();
        for run in &runs {
            let upload = read_upload(&client, &env.server.base, &token, &run.upload_id).await;
            let outputs = upload["outputs"].as_array().map_or(0, Vec::len);
            if upload["state"] != "ready" || outputs != 2 {
                not_ready.push(format!(
                    "{} ({:?}): {}",
                    run.upload_id,
                    run.mode,
                    run.failure.as_deref().unwrap_or(&upload.to_string())
                ));
            }
        }
        not_ready
    });
    drop(client);

    let calls = env.mps.calls_of(LOOKUP);
    let ids: usize = env.mps.run_ids_per_call().iter().sum();
    println!("# mediagate processing outcome benchmark\n");
    println!(
        "- {} uploads, {} per mode, issued with `POST /v1/uploads`, announced by signed OSS callbacks and delivered by the worker to the loopback MPS (one run each, in {:.1} s); SQLite; one MPS workflow following outcomes",
        s.runs(),
        s.per_mode,
        setup.as_secs_f64()
    );
    println!(
        "- follower every second (the server's own loop), `outcome_poll_min_seconds` {}, `outcome_poll_max_seconds` {}, `mps.query_per_second` {}; real time",
        s.poll_min, s.poll_max, s.query_per_second
    );
    println!(
        "- runs end one at a time every {} ms over {} s, from {} s after the last run opened (the poll waits' ramp); modes alternate in the order the runs end",
        (s.spread / s.runs() as u32).as_millis(),
        s.spread.as_secs(),
        lead.as_secs()
    );
    println!(
        "- end: the moment the loopback MPS's clock passed the run's end; ready: the first `GET /v1/uploads/{{id}}` by the owner answering `ready` (read every {} ms from the end, so up to that much late)",
        READ_EVERY.as_millis()
    );
    println!(
        "- message: the run's `Report` workflow message, signed as MNS signs (JSON envelope), pushed to `{MESSAGES_PATH}` at the end",
    );
    println!(
        "- server, stand-ins and bench on two tokio runtimes ({cores} workers each) sharing this machine's {cores} cores\n"
    );
    let max_wait = Duration::from_secs(s.poll_max);
    println!(
        "| mode | runs | ready | end -> ready p50 ms | p99 ms | max ms | ready > {} s after the end | lookups / run | of which after the end |",
        s.poll_max
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, f) in [("poll only", &poll), ("Report message", &message)] {
        println!(
            "| {name} | {} | {} | {:.0} | {:.0} | {:.0} | {} | {:.2} | {:.2} |",
            f.runs,
            f.ready,
            f.p(50.0),
            f.p(99.0),
            f.p(100.0),
            f.later_than(max_wait),
            f.per_run(f.lookups),
            f.per_run(f.lookups_after_end)
        );
    }
    println!();
    println!(
        "poll only / message: end -> ready p50 {:.1}x, p99 {:.1}x; lookups per run {:.2}x",
        poll.p(50.0) / message.p(50.0),
        poll.p(99.0) / message.p(99.0),
        poll.per_run(poll.lookups) / message.per_run(message.lookups)
    );
    println!(
        "{LOOKUP}: {calls} calls, {ids} run ids ({:.1} a call), at most {} calls in one second; {MEDIA}: {} calls, at most {} in one second; {:.1} s from the last run opening to the last upload ready",
        ids as f64 / calls.max(1) as f64,
        env.mps.max_calls_per_second(LOOKUP),
        env.mps.calls_of(MEDIA),
        env.mps.max_calls_per_second(MEDIA),
        measured.as_secs_f64()
    );

    env.server.stop(&server_rt);
    if !not_ready.is_empty() {
        println!("\nNOT READY: {} uploads", not_ready.len());
        for line in not_ready.iter().take(10) {
            println!("- {line}");
        }
        std::process::exit(1);
    }
}
