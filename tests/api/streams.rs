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
