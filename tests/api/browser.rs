//! A real browser (headless Chromium from Debian, driven by playwright-core) uploads through
//! the example page of `clients/web` straight to Ceph RGW: every request to the bucket is
//! signed by mediagate, the bucket's CORS comes from `mediagate bucket setup`, and each file
//! ends `triggered` with its bytes in the bucket. A real clip goes on to the reference
//! processor (`scripts/processor.sh`), and the page follows it to `ready` and plays its
//! rendition. `scripts/test.sh` builds the page and runs these with `--ignored`.

use axum::http::header;
use axum::response::IntoResponse;
use mediagate::config::Provider;
use mediagate::storage::reader::Lookup;
use mediagate::storage::setup::setup as bucket_setup;
use serde_json::Value;

use crate::rgw::{
    Processor, bucket, bucket_api, install_processor, make_clip, setup, spawn, webhook_workflow,
};
use crate::support::{TestApp, WEBHOOK_SECRET};

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

/// mediagate on RGW for a fresh bucket that notifies it, with the page's origin allowed by
/// mediagate and by the bucket's CORS (`mediagate bucket setup`); the page's URL for `user`.
async fn app_for_page(user: &str) -> (TestApp, String, String) {
    let origin = serve_page().await;
    let bucket = bucket();
    let app = spawn(&bucket, |c| c.server.cors_origins = vec![origin.clone()]).await;
    setup(&app, &bucket, &[], &[&bucket]).await;
    let config = &app.app.config;
    bucket_setup(
        &bucket_api(&app),
        Provider::S3,
        &config.server.cors_origins,
        ("uploads/", Some("verified/")),
        2,
        false,
    )
    .await
    .unwrap();
    let page = format!(
        "{origin}/?api={}&token={}",
        url::form_urlencoded::byte_serialize(app.base.as_bytes()).collect::<String>(),
        app.token(user)
    );
    (app, bucket, page)
}

/// Runs the playwright script `clients/web/test/{script}` with `env`; the JSON it prints.
async fn drive_page(script: &str, env: &[(&str, String)]) -> Value {
    let out = tokio::process::Command::new("node")
        .arg(format!(
            "{}/clients/web/test/{script}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "the browser run failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Ceph RGW, Chromium and the built page: scripts/test.sh runs it"]
async fn a_browser_uploads_several_files_through_server_signed_requests() {
    let (app, bucket, page) = app_for_page("alice").await;
    webhook_workflow(&app, &bucket, "uploads/").await;

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
    let report = drive_page(
        "upload.mjs",
        &[
            ("PAGE_URL", page),
            ("FILES", serde_json::to_string(&[path(0), path(1)]).unwrap()),
            ("RESUME", path(2)),
            ("FOREIGN", foreign.to_string()),
        ],
    )
    .await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Ceph RGW, Chromium, ffmpeg and the built page: scripts/test.sh runs it"]
async fn a_browser_follows_a_clip_to_ready_and_plays_its_rendition() {
    install_processor().await;
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    make_clip(&clip).await;

    let (app, bucket, page) = app_for_page("alice").await;
    let processor = Processor::start(WEBHOOK_SECRET).await;
    let workflow = serde_json::json!({"name": format!("renditions-{bucket}"),
        "state": "Active", "bucket": bucket, "prefix": "uploads/", "sink": "webhook",
        "webhook_url": processor.url, "webhook_secret": WEBHOOK_SECRET,
        "track_outcome": true, "output_prefix": "outputs/"});
    let r = app
        .admin(reqwest::Method::POST, "/v1/admin/workflows", Some(workflow))
        .await;
    assert_eq!(r.status(), 201);

    let report = drive_page(
        "outcome.mjs",
        &[("PAGE_URL", page), ("CLIP", clip.display().to_string())],
    )
    .await;
    assert_eq!(
        report["canPlay"], "probably",
        "this Chromium cannot play H.264 with AAC in MP4: {report}"
    );
    if report["final"] != "ready" {
        let view = match report["upload"].as_str() {
            Some(id) => app.admin_upload(id).await,
            None => Value::Null,
        };
        panic!("the page did not see the upload ready: {report}\nmediagate has: {view}");
    }
    // The page heard each state once, in order, and from the stream alone.
    let states: Vec<&str> = report["states"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(states.last(), Some(&"ready"), "{report}");
    assert!(
        states
            .iter()
            .all(|s| ["uploaded", "processing", "ready"].contains(s)),
        "{report}"
    );
    assert!(states.windows(2).all(|w| w[0] != w[1]), "{report}");
    assert_eq!(report["streams"], 1, "{report}");
    assert_eq!(report["polls"], 0, "{report}");

    // The player has the whole rendition at hand and plays it.
    let video = &report["video"];
    assert_eq!(
        report["attributes"],
        serde_json::json!(["controls", "muted", "playsinline"]),
        "{report}"
    );
    assert_eq!(video["error"], Value::Null, "{report}");
    assert_eq!(video["played"], Value::Null, "play() was refused: {report}");
    assert_eq!(video["readyState"], 4, "HAVE_ENOUGH_DATA: {report}");
    let (before, after) = (video["before"].as_f64(), video["after"].as_f64());
    assert!(
        after.unwrap() > before.unwrap() + 0.2,
        "currentTime advances: {report}"
    );
    assert_eq!(
        (&video["width"], &video["height"]),
        (&serde_json::json!(320), &serde_json::json!(240)),
        "{report}"
    );

    // The page shows the outputs of the upload as mediagate has it: the rendition and the
    // cover, each signed for its own object (signed anew at each read: the paths match).
    let id = report["upload"].as_str().unwrap();
    let upload = app.upload("alice", id).await;
    assert_eq!(upload["state"], "ready", "{upload}");
    let output = |kind: &str| {
        upload["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} output: {upload}"))
            .clone()
    };
    let path = |u: &Value| {
        url::Url::parse(u.as_str().unwrap())
            .unwrap()
            .path()
            .to_owned()
    };
    let (rendition, cover) = (output("video"), output("image"));
    assert_eq!(path(&video["src"]), path(&rendition["url"]), "{report}");
    assert_eq!(
        path(&report["cover"]["src"]),
        path(&cover["url"]),
        "{report}"
    );
    assert_eq!(report["cover"]["complete"], true, "{report}");
    assert!(
        report["cover"]["naturalWidth"].as_u64() > Some(0),
        "{report}"
    );

    // The cover's URL, as the page had it, serves the JPEG the processor wrote to the bucket.
    let jpeg = reqwest::get(report["cover"]["src"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(jpeg.status(), 200);
    let jpeg = jpeg.bytes().await.unwrap();
    assert_eq!(jpeg[..3], [0xFF, 0xD8, 0xFF], "a JPEG starts with SOI");
    let trigger = upload["triggers"][0]["id"].as_str().unwrap();
    let key = format!("outputs/{trigger}/cover.jpg");
    let stored = match app.app.objects.head_output(&bucket, &key).await.unwrap() {
        Lookup::Found(head) => head,
        other => panic!("{key}: {other:?}"),
    };
    assert_eq!(stored.size, jpeg.len() as u64);
    // A single PUT's ETag is the MD5 of its bytes.
    use md5::Digest;
    assert_eq!(
        stored.etag.to_lowercase(),
        hex::encode(md5::Md5::digest(&jpeg)),
        "the bytes in the bucket"
    );
    drop(processor);
}
