//! The `mediagate` binary itself: configuration from the environment, `check-config`, and a
//! real `serve` process that vends credentials, keeps secrets out of its logs and stops
//! cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::support::{JWT_SECRET, StsFake, sts_fake, test_config, token_with};

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
        ("MEDIAGATE__STS__ENDPOINT", config.sts.endpoint.clone()),
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
async fn serve_vends_credentials_keeps_secrets_out_of_logs_and_stops_on_sigterm() {
    let sts = StsFake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(&sts, dir.path()).await;
    let env = env_for(&config);

    let ok = mediagate()
        .args(["check-config"])
        .envs(env.clone())
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let mut child = mediagate()
        .args(["serve"])
        .envs(env)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut logs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let address = loop {
        let line = lines_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("server logs its address");
        logs.push(line.clone());
        let entry: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if entry["message"] == "mediagate listening" {
            break entry["address"].as_str().unwrap().to_owned();
        }
    };

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
    let body: Value = response.json().await.unwrap();
    assert!(
        body["object_key"]
            .as_str()
            .unwrap()
            .starts_with("uploads/alice/")
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = wait_with_timeout(&mut child, Duration::from_secs(10));
    assert_eq!(exit, Some(0), "clean exit on SIGTERM");
    logs.extend(lines_rx.try_iter());

    let all = logs.join("\n");
    for secret in [
        sts_fake::ACCESS_KEY_SECRET,
        JWT_SECRET,
        token.as_str(),
        body["credentials"]["access_key_secret"].as_str().unwrap(),
        body["credentials"]["security_token"].as_str().unwrap(),
    ] {
        assert!(!all.contains(secret), "secret {secret:?} in logs:\n{all}");
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
