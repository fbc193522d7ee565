//! RGW's gateway stops while an announced object waits for verification; mediagate keeps the
//! job, retries, and processes the object once the gateway is back. It stops the shared
//! gateway, so `scripts/test.sh` runs it alone, after the other RGW tests.

use std::time::Duration;

use serde_json::json;

use crate::rgw::{args, bucket, request_upload, s3client, setup, spawn, webhook_workflow};

fn rgw(command: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/rgw.sh");
    let status = std::process::Command::new(script)
        .arg(command)
        .status()
        .unwrap();
    assert!(status.success(), "scripts/rgw.sh {command}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "stops Ceph RGW: scripts/test.sh runs it alone"]
async fn an_object_is_verified_once_the_store_is_back() {
    let bucket = bucket();
    let app = spawn(&bucket, |c| {
        // Enough attempts to outlast a gateway restart.
        c.processing.max_attempts = 100;
        c.processing.backoff_base_ms = 200;
        c.processing.backoff_max_ms = 1000;
    })
    .await;
    // No bucket notifications: the test announces the object itself, once the gateway is
    // down, so that verification meets the outage.
    setup(&app, &bucket, &[], &[]).await;
    webhook_workflow(&app, &bucket, "uploads/").await;
    let upload = request_upload(&app, "alice", json!({"file_name": "clip.mp4"})).await;
    let key = upload["object_key"].as_str().unwrap();
    let put = s3client("put", args(&upload, key, json!({"size": 6000}))).await;
    assert_eq!(put["ok"], true, "{put}");

    rgw("pause");
    let r = app
        .s3_event_only(&json!({"Records": [{"eventName": "s3:ObjectCreated:Put", "eventSource": "ceph:s3",
            "s3": {"bucket": {"name": bucket}, "object": {"key": key, "eTag": put["etag"], "size": 6000}}}]}))
        .await;
    assert_eq!(r.status(), 200, "intake does not wait on the store");
    let id = upload["upload_id"].as_str().unwrap();
    // Verification fails while the gateway is down, and keeps its job.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let full = app.admin_upload(id).await;
        if full["verification"][0]["attempts"].as_i64().unwrap_or(0) >= 2 {
            assert_eq!(full["state"], "uploaded", "{full}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{full}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.hooks.count(), 0);

    rgw("resume");
    let done = app
        .wait_upload("alice", id, |u| u["state"] == "triggered")
        .await;
    assert_eq!(done["size"], 6000);
    app.drain().await;
    assert_eq!(app.hooks.count(), 1, "processed once");
}
