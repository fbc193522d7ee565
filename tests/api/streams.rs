//! `GET /v1/uploads/{id}/events`: the upload view as Server-Sent Events, at every change made
//! by any instance, until a final state.

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use crate::outcomes::{delivered, second_instance};
use crate::support::TestApp;
use crate::support::mps_fake::{default_cover_key, default_play_key};
use crate::support::oss_fake::mp4_header;

/// Reads `upload` events from an open stream until it ends (or `limit` passes).
async fn events(response: reqwest::Response, limit: Duration) -> Vec<Value> {
    let mut body = response.bytes_stream();
    let mut text = String::new();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline, body.next()).await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            if block.lines().any(|l| l == "event: upload")
                && let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: "))
            {
                seen.push(serde_json::from_str(data).unwrap());
            }
        }
    }
    seen
}

#[tokio::test]
async fn a_stream_sees_every_change_made_by_another_instance_and_ends_when_final() {
    let app = TestApp::spawn().await;
    let (id, media_id) = delivered(&app).await;
    let stream = app
        .get(&app.token("alice"), &format!("/v1/uploads/{id}/events"))
        .await;
    assert_eq!(stream.status(), 200);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let reader = tokio::spawn(events(stream, Duration::from_secs(20)));

    // Another instance follows the run to its end.
    let other = second_instance(&app).await;
    app.oss
        .put(&default_play_key(&media_id), mp4_header(), "video/mp4");
    app.oss
        .put(&default_cover_key(&media_id), b"c".to_vec(), "image/jpeg");
    app.clock.advance(Duration::from_secs(5));
    other.follower.run_once().await.unwrap();

    let seen = reader.await.unwrap();
    let states: Vec<&str> = seen.iter().map(|v| v["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["processing", "ready"], "then the stream ended");
    assert_eq!(seen[1]["outputs"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn streams_are_the_owners_and_limited_per_user() {
    let app = TestApp::spawn_with(|c| c.limits.streams_per_user = 1).await;
    let (id, _) = delivered(&app).await;
    let path = format!("/v1/uploads/{id}/events");
    assert_eq!(app.get(&app.token("mallory"), &path).await.status(), 404);
    let first = app.get(&app.token("alice"), &path).await;
    assert_eq!(first.status(), 200);
    let second = app.get(&app.token("alice"), &path).await;
    assert_eq!(second.status(), 429);
    // Closing the first gives its place back.
    drop(first);
    let mut reopened = 0;
    for _ in 0..50 {
        let again = app.get(&app.token("alice"), &path).await;
        if again.status() == 200 {
            reopened += 1;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(reopened, 1);
}

/// The resident memory of this process, in KiB (server and clients alike).
fn resident_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4
}

/// The soft limit of open files of this process.
fn open_files_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_streams_are_held_in_little_memory() {
    // Both ends of 1,000 connections live in this process (scripts/test.sh raises the limit).
    if open_files_limit() < 4096 {
        eprintln!("note: fewer than 4,096 open files allowed; 1,000 streams not measured");
        return;
    }
    let app = TestApp::spawn_with(|c| c.limits.streams_per_user = 1000).await;
    let (id, _) = delivered(&app).await;
    let path = format!("/v1/uploads/{id}/events");
    let token = app.token("alice");
    // Warm up what every stream shares (the connection pool, the change feed).
    let warm = app.get(&token, &path).await;
    assert_eq!(warm.status(), 200);
    let before = resident_kib();
    let mut streams = Vec::new();
    // One client: each stream holds a connection of its own all the same.
    let client = reqwest::Client::new();
    // With the warm-up one, 1,000 streams: the limit.
    for _ in 0..999 {
        let response = client
            .get(app.url(&path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        streams.push(response);
    }
    let per_stream = (resident_kib().saturating_sub(before)) as f64 / 999.0;
    eprintln!("1,000 idle streams: {per_stream:.1} KiB each, server and client together");
    // Server and client side of each connection together (measured: about 70 KiB).
    assert!(per_stream < 128.0, "{per_stream:.1} KiB a stream");
    // One more than the limit for this user is refused.
    assert_eq!(app.get(&token, &path).await.status(), 429);
    drop(streams);
}
