//! `cargo bench --bench verification`: how many announced objects per second mediagate
//! verifies in the store and delivers: with protected copies (a HEAD, a server-side copy, and
//! a HEAD and a ranged GET of the copy each), without (a HEAD and a ranged GET), and with
//! verification off; and how fast notifications are taken in meanwhile (intake must not wait
//! on the store).
//!
//! Environment: `BENCH_OBJECTS` per pass (2000), `BENCH_RGW_URL` (the store is that Ceph RGW,
//! from `scripts/rgw.sh start`; default: the loopback OSS stand-in that checks every request's
//! signature), `BENCH_PYTHON` (the Python of `scripts/python.sh`, to create the RGW bucket).
//! Objects are 4 KiB MP4s put in the store first; their S3 event records are then sent in
//! batches of 100 by 8 senders, and the pass ends when the webhook receiver has every object.

#[allow(dead_code)]
#[path = "../tests/api/support/mod.rs"]
mod support;

#[allow(dead_code)]
mod common;

use std::time::{Duration, Instant};

use common::{env_or, rate, runtime};
use mediagate::config::{Provider, SinkKind, WorkflowConfig, WorkflowState};
use secrecy::SecretString;
use serde_json::{Value, json};
use support::oss_fake::{BUCKET, mp4_header};
use support::{OssFake, S3_TOKEN, StsFake, WEBHOOK_SECRET, WebhookReceiver, config_for};

const SIZE: usize = 4096;
const BATCH: usize = 100;
const SENDERS: usize = 8;

fn key(pass: usize, n: usize) -> String {
    format!("uploads/bench/{pass}/{n}.mp4")
}

/// Where the objects are: the stand-in, or a fresh bucket on RGW.
enum Store {
    Fake(OssFake),
    Rgw { url: String, bucket: String },
}

impl Store {
    async fn new(pass: usize) -> Store {
        match std::env::var("BENCH_RGW_URL") {
            Ok(url) if !url.is_empty() => {
                let bucket = format!(
                    "mgbench-{pass}-{}",
                    &uuid::Uuid::new_v4().simple().to_string()[..8]
                );
                let python = std::env::var("BENCH_PYTHON")
                    .expect("BENCH_PYTHON names the Python of scripts/python.sh");
                let args = json!({"endpoint": url, "admin": {"access_key_id": "TESTERAK",
                    "access_key_secret": "TESTERSK"}, "buckets": [bucket], "topic": format!("t-{bucket}"),
                    "push_endpoint": "http://127.0.0.1:9/unused", "notify": []});
                let out = std::process::Command::new(python)
                    .args([
                        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/s3client.py"),
                        "setup",
                    ])
                    .arg(args.to_string())
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                Store::Rgw { url, bucket }
            }
            _ => Store::Fake(OssFake::start().await),
        }
    }

    fn bucket(&self) -> &str {
        match self {
            Store::Fake(_) => BUCKET,
            Store::Rgw { bucket, .. } => bucket,
        }
    }

    fn configure(&self, c: &mut mediagate::config::Config) {
        match self {
            Store::Fake(oss) => c.storage.internal_endpoint = Some(oss.url.clone()),
            Store::Rgw { url, bucket } => {
                c.storage.provider = Provider::S3;
                c.storage.bucket = bucket.clone();
                c.storage.region = "us-east-1".into();
                c.storage.endpoint = url.clone();
                c.storage.path_style = true;
                c.sts.endpoint = Some(url.clone());
                c.sts.access_key_id = "TESTERAK".into();
                c.sts.access_key_secret = SecretString::from("TESTERSK");
                c.sts.role_arn = "arn:aws:iam:::role/uploader".into();
            }
        }
    }

    async fn put_all(&self, pass: usize, objects: usize) {
        let mut body = mp4_header();
        body.resize(SIZE, 0);
        match self {
            Store::Fake(oss) => {
                for n in 0..objects {
                    oss.put(&key(pass, n), body.clone(), "video/mp4");
                }
            }
            Store::Rgw { url, bucket } => {
                let op = opendal::Operator::new(
                    opendal::services::S3::default()
                        .endpoint(url)
                        .region("us-east-1")
                        .bucket(bucket)
                        .access_key_id("TESTERAK")
                        .secret_access_key("TESTERSK")
                        .disable_config_load()
                        .disable_ec2_metadata(),
                )
                .unwrap()
                .finish();
                let mut tasks = tokio::task::JoinSet::new();
                for s in 0..16 {
                    let (op, body) = (op.clone(), body.clone());
                    tasks.spawn(async move {
                        for n in (s..objects).step_by(16) {
                            op.write(&key(pass, n), body.clone())
                                .await
                                .expect("put to RGW");
                        }
                    });
                }
                while let Some(done) = tasks.join_next().await {
                    done.unwrap();
                }
            }
        }
    }
}

struct Pass {
    intake: Duration,
    processed: Duration,
}

/// What a pass does with an announced object before it is delivered.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Verified in a protected copy (the default).
    Copies,
    /// Verified in place.
    InPlace,
    /// Not looked up.
    Off,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Copies => "on, protected copy",
            Mode::InPlace => "on, in place",
            Mode::Off => "off",
        }
    }
}

async fn pass(pass: usize, mode: Mode, objects: usize, receiver: &WebhookReceiver) -> Pass {
    let sts = StsFake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(pass).await;
    let mut c = config_for(
        &sts,
        format!("sqlite://{}/mediagate.db", dir.path().display()),
    );
    store.configure(&mut c);
    c.verification.enabled = mode != Mode::Off;
    c.verification.protected_copy = mode == Mode::Copies;
    c.processing.concurrency = 32;
    c.workflows = vec![WorkflowConfig {
        name: "bench-hooks".into(),
        state: WorkflowState::Active,
        bucket: store.bucket().to_owned(),
        prefix: "uploads/".into(),
        sink: SinkKind::Webhook,
        media_workflow_id: None,
        webhook_url: Some(receiver.url.clone()),
        webhook_secret: Some(SecretString::from(WEBHOOK_SECRET)),
        output_prefix: None,
        output_bucket: None,
        track_outcome: None,
    }];
    let server = common::Server::start(c).await;
    store.put_all(pass, objects).await;

    let before = receiver.count();
    let client = reqwest::Client::new();
    let url = format!("{}/v1/notifications/s3-events", server.base);
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for s in 0..SENDERS {
        let (client, url, bucket) = (client.clone(), url.clone(), store.bucket().to_owned());
        senders.spawn(async move {
            for batch in (0..objects.div_ceil(BATCH)).skip(s).step_by(SENDERS) {
                let records: Vec<Value> = (batch * BATCH..((batch + 1) * BATCH).min(objects))
                    .map(|n| {
                        json!({"eventName": "s3:ObjectCreated:Put", "eventSource": "ceph:s3",
                        "s3": {"bucket": {"name": bucket}, "object": {"key": key(pass, n),
                        "eTag": format!("E{n}"), "size": SIZE}}})
                    })
                    .collect();
                let r = client
                    .post(&url)
                    .bearer_auth(S3_TOKEN)
                    .json(&json!({ "Records": records }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        });
    }
    while let Some(done) = senders.join_next().await {
        done.unwrap();
    }
    let intake = started.elapsed();
    assert!(
        receiver
            .wait_for(before + objects, Duration::from_secs(300))
            .await,
        "only {} of {objects} delivered",
        receiver.count() - before
    );
    let processed = started.elapsed();
    let _ = server.shutdown_now().await;
    Pass { intake, processed }
}

fn main() {
    let objects = env_or("BENCH_OBJECTS", 2000) as usize;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rt = runtime("bench", cores);
    let receiver = rt.block_on(WebhookReceiver::start(WEBHOOK_SECRET));
    let store = match std::env::var("BENCH_RGW_URL") {
        Ok(url) if !url.is_empty() => format!("Ceph RGW at {url}"),
        _ => "the loopback OSS stand-in (every request's V1 signature recomputed)".into(),
    };
    println!("# mediagate verification benchmark\n");
    println!(
        "- {objects} objects of {SIZE} B per pass, in {store}; S3 event records in batches of {BATCH} from {SENDERS} senders; SQLite; webhook sink; {cores} cores shared by everything\n"
    );
    println!("| verification | intake events/s | announced -> delivered objects/s |");
    println!("|---|---:|---:|");
    let mut results = Vec::new();
    let modes = [Mode::Copies, Mode::InPlace, Mode::Off];
    for (i, mode) in modes.into_iter().chain(modes).enumerate() {
        let p = rt.block_on(pass(i, mode, objects, &receiver));
        println!(
            "| {} | {:.0} | {:.0} |",
            mode.name(),
            rate(objects, p.intake),
            rate(objects, p.processed)
        );
        results.push((mode, rate(objects, p.processed)));
    }
    let mean = |mode: Mode| {
        let v: Vec<f64> = results
            .iter()
            .filter(|r| r.0 == mode)
            .map(|r| r.1)
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    println!(
        "\nprocessed objects/s, protected copy / in place / off: {:.2} / {:.2} / 1",
        mean(Mode::Copies) / mean(Mode::Off),
        mean(Mode::InPlace) / mean(Mode::Off)
    );
}
