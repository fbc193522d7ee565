//! A real browser (headless Chromium from Debian, driven by playwright-core) uploads through
//! the example page of `clients/web` straight to Ceph RGW: every request to the bucket is
//! signed by mediagate, the bucket's CORS comes from `mediagate bucket setup`, and each file
//! ends `triggered` with its bytes in the bucket. `scripts/test.sh` builds the page and runs
//! this with `--ignored`.

use axum::http::header;
use axum::response::IntoResponse;
use mediagate::config::Provider;
use mediagate::storage::reader::Lookup;
use mediagate::storage::setup::setup as bucket_setup;
use serde_json::Value;

use crate::rgw::{bucket, bucket_api, setup, spawn, webhook_workflow};

/// Serves `clients/web/example` on a loopback port; its origin.
async fn serve_page() -> String {
    let root =
        std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/clients/web/example"));
    let router = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let root = root.clone();
        async move {
            let path = match uri.path() {
                "/" => "index.html".to_owned(),
                p => p.trim_start_matches('/').to_owned(),
            };
            if path.contains("..") {
                return axum::http::StatusCode::NOT_FOUND.into_response();
            }
            let kind = match path.rsplit('.').next() {
                Some("html") => "text/html",
                Some("js") => "text/javascript",
                Some("css") => "text/css",
                _ => "application/octet-stream",
            };
            match tokio::fs::read(root.join(&path)).await {
                Ok(bytes) => ([(header::CONTENT_TYPE, kind)], bytes).into_response(),
                Err(_) => axum::http::StatusCode::NOT_FOUND.into_response(),
            }
        }
    });
    crate::support::serve_loopback(router).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Ceph RGW, Chromium and the built page: scripts/test.sh runs it"]
async fn a_browser_uploads_several_files_through_server_signed_requests() {
    let origin = serve_page().await;
    let bucket = bucket();
    let app = spawn(&bucket, |c| c.server.cors_origins = vec![origin.clone()]).await;
    setup(&app, &bucket, &[], &[&bucket]).await;
    webhook_workflow(&app, &bucket, "uploads/").await;
    let config = &app.app.config;
    bucket_setup(
        &bucket_api(&app),
        Provider::S3,
        &config.server.cors_origins,
        "uploads/",
        2,
        false,
    )
    .await
    .unwrap();

    // A small file (one PUT), a 12 MiB one (multipart, 5 MiB parts), and one more 12 MiB
    // file uploaded across a page reload.
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (name, size) in [
        ("small.mp4", 200 * 1024),
        ("large.mp4", 12 * 1024 * 1024),
        ("resumed.mp4", 12 * 1024 * 1024 + 77),
    ] {
        let mut bytes = crate::support::oss_fake::mp4_header();
        bytes.extend((0..size - bytes.len()).map(|i| (i % 251) as u8));
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        files.push((path, bytes));
    }
    let path = |i: usize| files[i].0.display().to_string();
    let bobs = app
        .create_upload(
            &app.token("bob"),
            serde_json::json!({"file_name": "b.mp4", "mode": "presigned"}),
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    let foreign = serde_json::json!({"id": bobs["upload_id"], "key": bobs["object_key"]});
    let page = format!(
        "{origin}/?api={}&token={}",
        url::form_urlencoded::byte_serialize(app.base.as_bytes()).collect::<String>(),
        app.token("alice")
    );
    let out = tokio::process::Command::new("node")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/clients/web/test/upload.mjs"
        ))
        .env("PAGE_URL", &page)
        .env("FILES", serde_json::to_string(&[path(0), path(1)]).unwrap())
        .env("RESUME", path(2))
        .env("FOREIGN", foreign.to_string())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "the browser run failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["cut"], true,
        "the first part's request was cut once: {report}"
    );
    // Another key of the user's own upload: 403; another user's upload: 404.
    assert_eq!(report["forged"], serde_json::json!([403, 404]), "{report}");
    // After the reload, the parts were listed and only the missing ones sent.
    let after = report["partsAfterReload"].as_array().unwrap();
    assert!(after.contains(&serde_json::json!("list")), "{report}");
    let parts: Vec<i64> = after.iter().filter_map(Value::as_i64).collect();
    assert!(!parts.contains(&1), "part 1 was sent again: {report}");
    // Part 2 may have landed before the page went away: then only part 3 is left to send.
    assert!(
        parts == [2, 3] || parts == [3],
        "only the missing parts, once each: {report}"
    );

    // Each file is triggered, once, and the bucket holds exactly its bytes.
    let mut uploads: Vec<Value> = report["states"].as_array().unwrap().clone();
    uploads.extend(report["resumed"].as_array().unwrap().iter().cloned());
    assert_eq!(uploads.len(), 3, "{report}");
    for state in &uploads {
        let id = state["upload"].as_str().unwrap();
        let upload = app
            .wait_upload("alice", id, |u| u["state"] == "triggered")
            .await;
        let key = upload["object_key"].as_str().unwrap();
        let (_, bytes) = files
            .iter()
            .find(|(p, _)| p.ends_with(upload["file_name"].as_str().unwrap()))
            .unwrap();
        let etag = match app.app.objects.head(key).await.unwrap() {
            Lookup::Found(head) => {
                assert_eq!(head.size, bytes.len() as u64);
                head.raw_etag
            }
            other => panic!("{key}: {other:?}"),
        };
        let head = app.app.objects.first_bytes(key, 64 * 1024, &etag).await;
        assert_eq!(head.unwrap(), bytes[..64 * 1024]);
    }
    app.drain().await;
    assert_eq!(app.hooks.count(), 3);
}
