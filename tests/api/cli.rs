//! The `mediagate` binary itself: configuration from the environment, `check-config`, and a
//! real `serve` process that vends credentials, keeps secrets out of its logs and stops
//! cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::support::{
    ADMIN_TOKEN, JWT_SECRET, OSS_KEY_URL, OssFake, S3_TOKEN, StsFake, WEBHOOK_SECRET,
    WebhookReceiver, oss_signer, sts_fake, test_config, token_with,
};

fn mediagate() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mediagate"));
    // No config file from the working directory: only what the test sets.
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(std::env::temp_dir());
    cmd
}

fn env_for(config: &mediagate::config::Config) -> Vec<(&'static str, String)> {
    vec![
        ("MEDIAGATE__SERVER__LISTEN", "127.0.0.1:0".into()),
        (
            "MEDIAGATE__SERVER__PUBLIC_URL",
            config.server.public_url.clone(),
        ),
        ("MEDIAGATE__SERVER__LOG_FORMAT", "json".into()),
        (
            "MEDIAGATE__DATABASE__URL",
            config.database.url.expose_secret().into(),
        ),
        ("MEDIAGATE__AUTH__JWT_SECRET", JWT_SECRET.into()),
        ("MEDIAGATE__STORAGE__BUCKET", config.storage.bucket.clone()),
        ("MEDIAGATE__STORAGE__REGION", config.storage.region.clone()),
        (
            "MEDIAGATE__STORAGE__ENDPOINT",
            config.storage.endpoint.clone(),
        ),
        ("MEDIAGATE__STS__ENDPOINT", config.sts_endpoint()),
        (
            "MEDIAGATE__STS__ACCESS_KEY_ID",
            sts_fake::ACCESS_KEY_ID.into(),
        ),
        (
            "MEDIAGATE__STS__ACCESS_KEY_SECRET",
            sts_fake::ACCESS_KEY_SECRET.into(),
        ),
        ("MEDIAGATE__STS__ROLE_ARN", sts_fake::ROLE_ARN.into()),
    ]
}

#[tokio::test]
async fn check_config_lists_every_problem() {
    let out = mediagate()
        .args(["check-config"])
        .env("MEDIAGATE__STS__DURATION_SECONDS", "60")
        .env("MEDIAGATE__STORAGE__PREFIX", "../up")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    for key in [
        "storage.bucket",
        "storage.prefix",
        "sts.role_arn",
        "sts.access_key_secret",
        "sts.duration_seconds",
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&format!("configuration: {key}"))),
            "{key} missing in:\n{stderr}"
        );
    }

    let out = mediagate()
        .args(["check-config", "--config", "/nonexistent/mediagate.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

#[tokio::test]
async fn risky_settings_are_refused_or_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("risky.toml");
    std::fs::write(
        &file,
        r#"[auth]
jwks_url = "https://idp.example.com/jwks"

[storage]
prefix = ""

[notifications]
oss_key_url_prefixes = ["http://keys.example.com/"]
mns_token = "short"

[[workflows]]
name = "weak"
state = "Active"
bucket = "media-input"
prefix = ""
sink = "webhook"
webhook_url = "https://hooks.example.com/in"
webhook_secret = "whsec_aGVsbG8xMjM="

[[workflows]]
name = "outputs-in-uploads"
state = "Active"
bucket = "media-input"
prefix = ""
sink = "mps"
media_workflow_id = "wf"
output_prefix = "out/"
"#,
    )
    .unwrap();
    let sts = StsFake::start().await;
    let config = test_config(&sts, dir.path()).await;
    let out = mediagate()
        .args(["check-config", "--config"])
        .arg(&file)
        .envs(env_for(&config))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    for error in [
        "configuration: auth.audience: required with auth.jwks_url",
        "configuration: notifications.mns_token: must be at least 16 characters",
        "configuration: workflows[0] (\"weak\"): webhook_secret: webhook secret gives a 8-byte key",
        "configuration: workflows[1] (\"outputs-in-uploads\"): output_prefix \"out/\" overlaps storage.prefix",
        // With the users' folders at the root, one named `verified` could write the copies.
        "configuration: verification.protected_prefix: \"verified/\" overlaps storage.prefix \"\"",
    ] {
        assert!(stderr.contains(error), "{error} missing in:\n{stderr}");
    }
    for warning in [
        "configuration warning: storage.prefix is empty",
        "configuration warning: notifications.oss_key_url_prefixes: \"http://keys.example.com/\" is plain http",
        "configuration warning: notifications.mns_account_id is not set: /v1/notifications/oss-events is not served",
        "configuration warning: storage.access_key_id is not set: announced objects are read with the sts keys",
    ] {
        assert!(stderr.contains(warning), "{warning} missing in:\n{stderr}");
    }
    assert!(!stderr.contains("aGVsbG8xMjM"), "secrets are never printed");
}

/// Nothing a request sends reaches the default (`pretty`) log raw: a CR/LF in a key URL
/// cannot start a line of its own, and an invented method of any size is logged as `other`.
#[tokio::test]
async fn request_text_cannot_forge_log_lines() {
    let sts = StsFake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(&sts, dir.path()).await;
    let mut env: Vec<_> = env_for(&config)
        .into_iter()
        .filter(|(k, _)| *k != "MEDIAGATE__SERVER__LOG_FORMAT")
        .collect();
    env.push(("NO_COLOR", "1".into()));
    env.push(("MEDIAGATE__NOTIFICATIONS__FETCH_TIMEOUT_MS", "300".into()));
    let mut server = Server::start(&env, None);
    let client = reqwest::Client::new();
    let path = "/v1/notifications/oss-callback";
    let body = "bucket=media-input&object=uploads%2Fa%2F1%2Fa.mp4&etag=E&size=1";
    let forged = "https://gosspublic.alicdn.com/k.pem\r\nERROR forged line\r\n";
    let (authorization, _) = oss_signer().sign(path, None, body.as_bytes());
    let r = client
        .post(format!("http://{}{path}", server.address))
        .header("authorization", authorization)
        .header("x-oss-pub-key-url", B64.encode(forged))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let method =
        reqwest::Method::from_bytes(format!("MADEUP{}", "Q".repeat(20_000)).as_bytes()).unwrap();
    let r = client
        .request(method, format!("http://{}/healthz", server.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    // The answers are logged as the requests finish: stopped, the server has logged both.
    let logs = server.stop();
    assert!(
        logs.matches("finished processing request").count() >= 2,
        "requests never logged:\n{logs}"
    );
    assert!(logs.contains("method=\"other\""), "{logs}");
    for line in logs.lines() {
        assert!(
            !line.trim_start().starts_with("ERROR forged"),
            "forged: {line}"
        );
        assert!(!line.contains("MADEUP"), "raw method logged");
        assert!(line.len() < 2000, "a {}-byte log line", line.len());
    }
}

#[tokio::test]
async fn serve_vends_credentials_keeps_secrets_out_of_logs_and_stops_on_sigterm() {
    let WebhookSetup {
        _sts,
        hooks,
        oss,
        _dir,
        file,
        mut env,
    } = webhook_setup(Duration::ZERO).await;
    env.push(("MEDIAGATE__AUTH__ADMIN_TOKEN", ADMIN_TOKEN.into()));
    let key_pins = format!(
        "{{\"{OSS_KEY_URL}\" = \"\"\"{}\"\"\"}}",
        oss_signer().public_pem
    );
    std::fs::write(
        &file,
        std::fs::read_to_string(&file).unwrap().replace(
            "[notifications]\n",
            &format!("[notifications]\noss_pinned_keys = {key_pins}\n"),
        ),
    )
    .unwrap();

    let ok = mediagate()
        .args(["check-config", "--config"])
        .arg(&file)
        .envs(env.clone())
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let mut server = Server::start(&env, Some(&file));
    let address = server.address.clone();

    // A full flow: vend, the object store's signed callback, an S3 webhook with its token, an
    // admin call, and the signed delivery to the workflow's webhook.
    let client = reqwest::Client::new();
    let token = token_with(
        json!({"sub": "alice", "exp": crate::support::now() + 600}),
        JWT_SECRET,
    );
    let response = client
        .post(format!("http://{address}/v1/uploads"))
        .bearer_auth(&token)
        .json(&json!({"file_name": "clip.mp4"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    let key = body["object_key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("uploads/alice/"));
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("bucket", "media-input")
        .append_pair("object", &key)
        .append_pair("etag", "LOGS1")
        .append_pair("size", "64")
        .append_pair("upload_id", body["upload_id"].as_str().unwrap())
        .finish();
    oss.put_media_if_absent(&key, 64, "LOGS1");
    let path = "/v1/notifications/oss-callback";
    let (signature, key_url) = oss_signer().sign(path, None, form.as_bytes());
    let callback = client
        .post(format!("http://{address}{path}"))
        .header("authorization", &signature)
        .header("x-oss-pub-key-url", &key_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(callback.status(), 200);
    let event = announce(
        &client,
        &oss,
        &address,
        "uploads%2Fbob%2Fx%2Fb.mp4",
        "LOGS2",
    )
    .await;
    assert_eq!(event, 200);
    let audit = client
        .get(format!("http://{address}/v1/admin/workflows"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(audit.status(), 200);
    assert!(hooks.wait_for(2, Duration::from_secs(10)).await);
    let webhook_signatures: Vec<String> = hooks.signatures();

    let all = server.stop();
    let mut secrets = vec![
        sts_fake::ACCESS_KEY_SECRET,
        JWT_SECRET,
        ADMIN_TOKEN,
        S3_TOKEN,
        WEBHOOK_SECRET,
        token.as_str(),
        signature.as_str(),
        body["credentials"]["access_key_secret"].as_str().unwrap(),
        body["credentials"]["security_token"].as_str().unwrap(),
    ];
    secrets.extend(webhook_signatures.iter().map(String::as_str));
    for secret in secrets {
        assert!(!all.contains(secret), "secret {secret:?} in logs:\n{all}");
    }
    // Every request's lines carry its request id.
    let request_lines: Vec<Value> = all
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["span"]["name"] == "request")
        .collect();
    assert!(request_lines.len() >= 5, "{all}");
    for line in &request_lines {
        let id = line["span"]["request_id"].as_str().unwrap_or_default();
        assert!(!id.is_empty(), "no request id in {line}");
    }
    assert!(all.contains("shutting down"), "{all}");
}

fn wait_with_timeout(child: &mut std::process::Child, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    None
}

/// A `mediagate serve` process on a free port, its stderr collected.
struct Server {
    child: std::process::Child,
    address: String,
    logs: Vec<String>,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Server {
    fn start(env: &[(&'static str, String)], config: Option<&std::path::Path>) -> Server {
        let mut cmd = mediagate();
        cmd.arg("serve");
        if let Some(path) = config {
            cmd.arg("--config").arg(path);
        }
        let mut child = cmd
            .envs(env.iter().cloned())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut logs = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        let address = loop {
            let line = lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| {
                    panic!("server never logged its address:\n{}", logs.join("\n"))
                });
            logs.push(line.clone());
            let entry: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if entry["message"] == "mediagate listening" {
                break entry["address"].as_str().unwrap().to_owned();
            }
            // The `pretty` format, without colours: `... mediagate listening address=...`.
            if let Some((_, rest)) = line.split_once("mediagate listening address=") {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        Server {
            child,
            address,
            logs,
            lines,
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn logs(&mut self) -> String {
        self.logs.extend(self.lines.try_iter());
        self.logs.join("\n")
    }

    /// Every line the process logged, once it has exited: its stderr is read to the end.
    fn logs_to_the_end(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.logs.push(line),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    panic!("stderr still open:\n{}", self.logs.join("\n"))
                }
            }
        }
        self.logs.join("\n")
    }

    /// Stops the server as SIGTERM does and waits for a clean exit; everything it logged.
    fn stop(&mut self) -> String {
        self.signal("-TERM");
        let exit = wait_with_timeout(&mut self.child, Duration::from_secs(10));
        assert_eq!(exit, Some(0), "clean exit on SIGTERM");
        self.logs_to_the_end()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a `serve` process delivering to a webhook receiver needs: the STS fake and the
/// directory kept alive, the receiver answering after `latency`, the config file and the env.
struct WebhookSetup {
    _sts: StsFake,
    hooks: WebhookReceiver,
    /// The input bucket the servers verify announced objects in.
    oss: OssFake,
    _dir: tempfile::TempDir,
    file: std::path::PathBuf,
    env: Vec<(&'static str, String)>,
}

async fn webhook_setup(latency: Duration) -> WebhookSetup {
    let sts = StsFake::start().await;
    let hooks = WebhookReceiver::start(WEBHOOK_SECRET).await;
    hooks.set_latency(latency);
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(&sts, dir.path()).await;
    let file = webhook_config(dir.path(), &hooks.url);
    let oss = OssFake::start().await;
    let mut env = env_for(&config);
    env.push(("MEDIAGATE__STORAGE__INTERNAL_ENDPOINT", oss.url.clone()));
    WebhookSetup {
        _sts: sts,
        hooks,
        oss,
        _dir: dir,
        file,
        env,
    }
}

/// Puts a 64-byte MP4 at `key` (URL-encoded, as MinIO sends it) in `oss` and announces it
/// through the S3 webhook of the server at `address`; the answer's status.
async fn announce(
    client: &reqwest::Client,
    oss: &OssFake,
    address: &str,
    key: &str,
    etag: &str,
) -> u16 {
    oss.put_media_if_absent(&key.replace("%2F", "/"), 64, etag);
    let records = json!({"Records": [{"eventName": "s3:ObjectCreated:Put", "eventSource": "minio:s3",
        "s3": {"bucket": {"name": "media-input"}, "object": {"key": key, "eTag": etag, "size": 64}}}]});
    client
        .post(format!("http://{address}/v1/notifications/s3-events"))
        .bearer_auth(S3_TOKEN)
        .json(&records)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A configuration file with fast retries and one webhook workflow on `uploads/` delivering
/// to `url`.
fn webhook_config(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    let file = dir.join("mediagate.toml");
    let toml = format!(
        r#"[processing]
concurrency = 4
lease_seconds = 3
webhook_timeout_ms = 2000
backoff_base_ms = 50
backoff_max_ms = 200
poll_interval_ms = 50

[mps]
timeout_ms = 2000

[notifications]
s3_token = "{S3_TOKEN}"

[[workflows]]
name = "hooks"
state = "Active"
bucket = "media-input"
prefix = "uploads/"
sink = "webhook"
webhook_url = "{url}"
webhook_secret = "{WEBHOOK_SECRET}"
"#,
        url = url
    );
    std::fs::write(&file, toml).unwrap();
    file
}

/// kill -9 while triggers are pending and in flight; after a restart every trigger is
/// delivered, none lost.
#[tokio::test]
async fn triggers_survive_a_crash() {
    let WebhookSetup {
        _sts,
        hooks,
        oss,
        _dir,
        file,
        env,
    } = webhook_setup(Duration::from_millis(250)).await;
    let total = 40;

    let mut first = Server::start(&env, Some(&file));
    let client = reqwest::Client::new();
    for i in 0..total {
        let key = format!("uploads%2Fcrash%2Fx%2F{i}.mp4");
        let status = announce(&client, &oss, &first.address, &key, &format!("E{i}")).await;
        assert_eq!(status, 200, "{}", first.logs());
    }
    assert!(hooks.wait_for(4, Duration::from_secs(10)).await);
    first.signal("-KILL");
    let _ = wait_with_timeout(&mut first.child, Duration::from_secs(5));
    let delivered_before = hooks.count();
    assert!(delivered_before < total, "the crash must leave work behind");

    let _second = Server::start(&env, Some(&file));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let deliveries = hooks.deliveries();
        let ids: std::collections::HashSet<&str> =
            deliveries.iter().map(|(id, _)| id.as_str()).collect();
        let keys: std::collections::HashSet<&str> = deliveries
            .iter()
            .map(|(_, body)| body["object_key"].as_str().unwrap_or_default())
            .collect();
        if keys.len() == total {
            assert_eq!(ids.len(), total, "one trigger per object");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {total} objects delivered after restart ({delivered_before} before the crash)",
            keys.len(),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn match_explains_configured_workflows() {
    let sts = StsFake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(&sts, dir.path()).await;
    let file = dir.path().join("mediagate.toml");
    std::fs::write(
        &file,
        r#"[[workflows]]
name = "transcode-hd"
state = "Active"
bucket = "media-input"
prefix = "uploads/"
sink = "mps"
media_workflow_id = "wf-1"
output_prefix = "out/"

[[workflows]]
name = "paused"
state = "Inactive"
bucket = "media-input"
prefix = "uploads/"
sink = "mps"
media_workflow_id = "wf-2"
"#,
    )
    .unwrap();
    let run = |key: &str| {
        let out = mediagate()
            .args(["match", "--bucket", "media-input", "--key", key, "--config"])
            .arg(&file)
            .envs(env_for(&config))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let report = run("uploads/alice/1/trip.MP4");
    assert_eq!(report["media"], true);
    assert_eq!(report["extension"], "mp4");
    let decisions = report["workflows"].as_array().unwrap();
    assert_eq!(decisions[0]["name"], "transcode-hd");
    assert_eq!(decisions[0]["matched"], true);
    assert_eq!(decisions[1]["reason"], "workflow is Inactive");
    let report = run("out/x.mp4");
    assert_eq!(report["workflows"][0]["matched"], false);
    let report = run("uploads/alice/notes.txt");
    assert_eq!(report["media"], false);
}

/// Two `serve` processes on one database, notifications spread over both under concurrent
/// load: every trigger is delivered exactly once between them.
#[tokio::test]
async fn two_instances_on_one_database_deliver_every_trigger_once() {
    let WebhookSetup {
        _sts,
        hooks,
        oss,
        _dir,
        file,
        env,
    } = webhook_setup(Duration::from_millis(20)).await;
    let mut a = Server::start(&env, Some(&file));
    let mut b = Server::start(&env, Some(&file));
    let total = 300;
    let senders = 8;
    let addresses = [a.address.clone(), b.address.clone()];
    let client = reqwest::Client::new();
    let tasks: Vec<_> = (0..senders)
        .map(|s| {
            let (client, addresses, oss) = (client.clone(), addresses.clone(), oss.clone());
            tokio::spawn(async move {
                for i in (s..total).step_by(senders) {
                    let key = format!("uploads%2Fpair%2Fx%2F{i}.mp4");
                    let status =
                        announce(&client, &oss, &addresses[i % 2], &key, &format!("P{i}")).await;
                    assert_eq!(status, 200);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert!(
        hooks.wait_for(total, Duration::from_secs(60)).await,
        "only {} of {total} delivered",
        hooks.count()
    );
    // Nothing arrives twice, not even late: once both have stopped (finishing what they
    // hold), nothing more can arrive.
    let (logs_a, logs_b) = (a.stop(), b.stop());
    let deliveries = hooks.deliveries();
    let ids: std::collections::HashSet<&str> =
        deliveries.iter().map(|(id, _)| id.as_str()).collect();
    let keys: std::collections::HashSet<&str> = deliveries
        .iter()
        .map(|(_, body)| body["object_key"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(deliveries.len(), total, "every trigger exactly once");
    assert_eq!((ids.len(), keys.len()), (total, total));
    let delivered_by = |logs: String| {
        logs.lines()
            .filter(|l| l.contains("trigger delivered"))
            .count()
    };
    let (by_a, by_b) = (delivered_by(logs_a), delivered_by(logs_b));
    assert_eq!(by_a + by_b, total);
    assert!(
        by_a > 0 && by_b > 0,
        "both instances delivered: {by_a} + {by_b}"
    );
}

/// The object is uploaded while mediagate is stopped, so its notification is lost (OSS never
/// retries a callback); after the restart, reconciliation finds it and processes it, once.
#[tokio::test]
async fn an_upload_made_while_stopped_is_processed_after_restart() {
    let WebhookSetup {
        _sts,
        hooks,
        oss,
        _dir,
        file,
        mut env,
    } = webhook_setup(Duration::ZERO).await;
    env.push(("MEDIAGATE__RECONCILE__INTERVAL_SECONDS", "1".into()));
    env.push(("MEDIAGATE__RECONCILE__AFTER_SECONDS", "0".into()));
    let client = reqwest::Client::new();
    let token = token_with(
        json!({"sub": "alice", "exp": crate::support::now() + 600}),
        JWT_SECRET,
    );

    let mut first = Server::start(&env, Some(&file));
    let created: Value = client
        .post(format!("http://{}/v1/uploads", first.address))
        .bearer_auth(&token)
        .json(&json!({"file_name": "late.mp4"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["object_key"].as_str().unwrap();
    first.signal("-TERM");
    assert_eq!(
        wait_with_timeout(&mut first.child, Duration::from_secs(10)),
        Some(0)
    );
    oss.put_media_if_absent(key, 4096, "LATE");

    let second = Server::start(&env, Some(&file));
    assert!(hooks.wait_for(1, Duration::from_secs(20)).await);
    let (_, delivery) = hooks.deliveries().remove(0);
    assert_eq!(delivery["source_key"], key);
    assert_eq!(delivery["size"], 4096);
    let upload: Value = client
        .get(format!(
            "http://{}/v1/uploads/{}",
            second.address,
            created["upload_id"].as_str().unwrap()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        ["uploaded", "triggered"].contains(&upload["state"].as_str().unwrap()),
        "{upload}"
    );
    assert_eq!(hooks.count(), 1);
}

/// `mediagate bucket setup` against the OSS stand-in, which checks each request's V1
/// signature and Content-MD5: a dry run changes nothing, a run sets CORS and the lifecycle
/// rule, a second run has nothing to do. (The binary runs blocking; the stand-in answers from
/// another worker thread.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_setup_configures_an_oss_bucket() {
    let WebhookSetup {
        _sts,
        hooks: _,
        oss,
        _dir,
        file,
        mut env,
    } = webhook_setup(Duration::ZERO).await;
    env.push((
        "MEDIAGATE__SERVER__CORS_ORIGINS",
        "[\"https://app.example\"]".into(),
    ));
    let run = |args: &[&str]| {
        let out = mediagate()
            .args(["bucket", "setup", "--config"])
            .arg(&file)
            .args(args)
            .envs(env.clone())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let dry = run(&["--dry-run"]);
    assert!(
        dry.contains("cors: would set") && dry.contains("lifecycle: would set"),
        "{dry}"
    );
    assert!(oss.bucket_config("cors").is_none());
    let done = run(&[]);
    assert!(done.contains("cors: set"), "{done}");
    let cors = oss.bucket_config("cors").unwrap();
    assert!(
        cors.contains("<AllowedOrigin>https://app.example</AllowedOrigin>"),
        "{cors}"
    );
    assert!(cors.contains("<ExposeHeader>ETag</ExposeHeader>"));
    let lifecycle = oss.bucket_config("lifecycle").unwrap();
    assert!(lifecycle.contains("<AbortMultipartUpload><Days>2</Days></AbortMultipartUpload>"));
    assert!(lifecycle.contains("<Prefix>uploads/</Prefix>"));
    let again = run(&[]);
    assert!(
        again.contains("cors: already as wanted") && again.contains("lifecycle: already as wanted"),
        "{again}"
    );
    assert_eq!(oss.refused(), 0);
}
