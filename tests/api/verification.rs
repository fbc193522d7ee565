//! Notifications are hints: every announced object is looked up in the store (a loopback OSS
//! that checks signatures as OSS does) before it triggers anything, with the store's size,
//! ETag and type, and its first bytes must be media.

use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sqlx::Connection;

use crate::support::TestApp;
use crate::support::oss_fake::mp4_header;

fn sized(mut head: Vec<u8>, size: usize) -> Vec<u8> {
    head.resize(size, 0);
    head
}

fn zip() -> Vec<u8> {
    sized(b"PK\x03\x04\x14\x00\x00\x00\x08\x00".to_vec(), 4096)
}

/// An upload by alice of `file`, announced by OSS's callback with the given size and ETag.
async fn announced(app: &TestApp, file: &str, size: u64, etag: &str) -> (String, String) {
    let (id, key) = app.issue("alice", file, json!({"title": "t"})).await;
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("bucket", "media-input")
        .append_pair("object", &key)
        .append_pair("etag", etag)
        .append_pair("size", &size.to_string())
        .append_pair("upload_id", &id)
        .finish();
    assert_eq!(app.oss_callback_only(&form).await.status(), 200);
    app.drain().await;
    (id, key)
}

/// An upload by alice with `body`, as `POST /v1/uploads` answers it: (id, object key).
async fn created(app: &TestApp, body: Value) -> (String, String) {
    let created: Value = app
        .create_upload(&app.token("alice"), body)
        .await
        .json()
        .await
        .unwrap();
    let field = |name: &str| created[name].as_str().unwrap().to_owned();
    (field("upload_id"), field("object_key"))
}

/// `user`'s upload history, newest first.
async fn history_of(app: &TestApp, user: &str) -> Value {
    app.get(&app.token(user), "/v1/uploads")
        .await
        .json()
        .await
        .unwrap()
}

/// What each event recorded for `key` came to, oldest first.
async fn outcomes(app: &TestApp, key: &str) -> Vec<&'static str> {
    let events = app
        .app
        .store
        .events_for_object("media-input", key)
        .await
        .unwrap();
    events.iter().map(|e| e.outcome.as_str()).collect()
}

/// Retries alice's upload `id` until its verification used up its `attempts` and the upload
/// failed, with nothing delivered; the dead verification job.
async fn verification_gave_up(app: &TestApp, id: &str, attempts: i64) -> Value {
    app.drain_with_retries().await;
    let upload = app.upload("alice", id).await;
    assert_eq!(upload["state"], "failed", "{upload}");
    assert_eq!(app.hooks.count(), 0, "{upload}");
    let full = app.admin_upload(id).await;
    let job = &full["verification"][0];
    assert_eq!(job["state"], "dead", "{full}");
    assert_eq!(job["attempts"], attempts);
    job.clone()
}

async fn state(app: &TestApp, id: &str) -> Value {
    app.get(&app.token("alice"), &format!("/v1/uploads/{id}"))
        .await
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_store_not_the_message_decides_size_etag_and_type() {
    let app = TestApp::spawn().await;
    app.webhook_workflow("hooks", "uploads/").await;
    let (id, key) = app.issue("alice", "trip.mp4", json!({})).await;
    app.oss.put(&key, sized(mp4_header(), 2048), "video/mp4");
    // The callback body is the uploader's to write: it claims another size and ETag.
    let form = format!(
        "bucket=media-input&object={key}&etag=FORGED&size=99999999&mimeType=text%2Fplain&upload_id={id}"
    );
    assert_eq!(app.oss_callback_only(&form).await.status(), 200);
    app.drain().await;
    let (_, delivery) = app.hooks.deliveries().remove(0);
    assert_eq!(delivery["type"], "upload.completed");
    assert_eq!(delivery["size"], 2048);
    assert_ne!(delivery["etag"], "FORGED");
    assert_eq!(delivery["etag"].as_str().unwrap().len(), 32);
    assert_eq!(delivery["content_type"], "video/mp4");
    assert_eq!(delivery["container"], "video/mp4");
    let upload = state(&app, &id).await;
    assert_eq!(upload["state"], "triggered");
    assert_eq!(upload["size"], 2048);
    assert_eq!(upload["triggers"].as_array().unwrap().len(), 1, "{upload}");
    // Every store request was signed as OSS checks it.
    assert!(app.oss.requests() >= 2);
    assert_eq!(app.oss.refused(), 0);
    // Operators see the verification as a job of its own.
    let full = app.admin_upload(&id).await;
    assert_eq!(full["verification"][0]["state"], "delivered", "{full}");
    assert_eq!(full["verification"][0]["sink"], "verify");
}

#[tokio::test]
async fn objects_that_are_not_what_they_claim_trigger_nothing() {
    let app = TestApp::spawn().await;
    app.mps_workflow("transcode", "uploads/").await;
    app.webhook_workflow("hooks", "uploads/").await;

    type Put = Box<dyn Fn(&TestApp, &str)>;
    let cases: Vec<(&str, Put, &str)> = vec![
        (
            "archive.mp4",
            Box::new(|app, key| app.oss.put(key, zip(), "video/mp4")),
            "not_media",
        ),
        (
            "page.mp4",
            Box::new(|app, key| {
                app.oss.put(
                    key,
                    sized(b"<!DOCTYPE html><html>".to_vec(), 600),
                    "video/mp4",
                )
            }),
            "not_media",
        ),
        (
            "link.mp4",
            Box::new(|app, key| app.oss.put_symlink(key)),
            "symlink",
        ),
        (
            "empty.mp4",
            Box::new(|app, key| app.oss.put(key, Vec::new(), "video/mp4")),
            "empty",
        ),
    ];
    for (file, put, reason) in cases {
        let (id, key) = app.issue("alice", file, json!({})).await;
        put(&app, &key);
        let form = format!("bucket=media-input&object={key}&etag=E&size=4096&upload_id={id}");
        assert_eq!(app.oss_callback_only(&form).await.status(), 200);
        app.drain().await;
        let upload = state(&app, &id).await;
        assert_eq!(upload["state"], "rejected", "{file}: {upload}");
        assert_eq!(upload["state_reason"], reason, "{file}");
        // The owner sees the fixed reason only; operators the detail.
        let full = app.admin_upload(&id).await;
        assert!(full["verification"][0]["last_error"].is_string(), "{full}");
    }
    assert_eq!(app.mps.calls(), 0, "nothing was sent for processing");
    // The webhook workflow hears of each object it would have taken.
    let notices: Vec<Value> = app.hooks.deliveries().into_iter().map(|(_, d)| d).collect();
    assert_eq!(notices.len(), 4);
    assert!(notices.iter().all(|d| d["type"] == "upload.rejected"));
    let reasons: Vec<&str> = notices
        .iter()
        .map(|d| d["reason"].as_str().unwrap())
        .collect();
    assert!(reasons.contains(&"symlink") && reasons.contains(&"empty"));
    // The recorder is the process's: other tests' refusals count too.
    let metrics = app.metrics_text().await;
    let not_media = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"mediagate_verifications_total{outcome="not_media"} "#))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(not_media >= Some(2), "{metrics}");
}

#[tokio::test]
async fn a_declared_size_must_be_the_stored_size() {
    let app = TestApp::spawn().await;
    app.webhook_workflow("hooks", "uploads/").await;
    let (id, key) = &created(&app, json!({"file_name": "a.mp4", "size": 1000})).await;
    app.oss.put(key, sized(mp4_header(), 999), "video/mp4");
    // The callback repeats the declared size; the store says otherwise.
    let form = format!("bucket=media-input&object={key}&etag=E&size=1000&upload_id={id}");
    assert_eq!(app.oss_callback_only(&form).await.status(), 200);
    app.drain().await;
    let upload = state(&app, id).await;
    assert_eq!(upload["state"], "rejected");
    assert_eq!(upload["state_reason"], "size_mismatch");
}

#[tokio::test]
async fn a_store_outage_delays_verification_and_loses_nothing() {
    let app = TestApp::spawn_with(|c| c.processing.max_attempts = 3).await;
    app.webhook_workflow("hooks", "uploads/").await;
    app.oss.set_down(true);
    let (id, key) = app.issue("alice", "a.mp4", json!({})).await;
    app.oss.put(&key, sized(mp4_header(), 512), "video/mp4");
    let form = format!("bucket=media-input&object={key}&etag=E&size=512&upload_id={id}");
    assert_eq!(app.oss_callback_only(&form).await.status(), 200);
    // The budget runs out while the store is down: the upload is failed, nothing delivered.
    let job = verification_gave_up(&app, &id, 3).await;

    // The store is back; the operator replays the verification: processed, once.
    app.oss.set_down(false);
    let retry = app
        .admin(
            Method::POST,
            &format!("/v1/admin/triggers/{}/retry", job["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(retry.status(), 200);
    app.drain().await;
    assert_eq!(app.upload("alice", &id).await["state"], "triggered");
    assert_eq!(app.hooks.count(), 1);
}

#[tokio::test]
async fn unrecognised_bytes_follow_the_configured_rule() {
    for (rule, expected) in [("accept", "triggered"), ("reject", "rejected")] {
        let app = TestApp::spawn_with(|c| {
            c.verification.unknown_content = match rule {
                "accept" => mediagate::config::UnknownContent::Accept,
                _ => mediagate::config::UnknownContent::Reject,
            }
        })
        .await;
        app.webhook_workflow("hooks", "uploads/").await;
        let (id, key) = app.issue("alice", "tape.dv", json!({})).await;
        app.oss.put(
            &key,
            sized(b"no known signature".to_vec(), 300),
            "video/x-dv",
        );
        let form = format!("bucket=media-input&object={key}&etag=E&size=300&upload_id={id}");
        app.oss_callback_only(&form).await;
        app.drain().await;
        assert_eq!(state(&app, &id).await["state"], expected, "{rule}");
    }
}

#[tokio::test]
async fn objects_outside_the_upload_prefix_are_never_read() {
    let app = TestApp::spawn().await;
    app.webhook_workflow("elsewhere", "ingest/").await;
    let r = app
        .s3_event_only(&json!({"Records": [{"eventName": "s3:ObjectCreated:Put", "eventSource": "ceph:s3",
            "s3": {"bucket": {"name": "media-input"}, "object": {"key": "ingest/a.mp4", "eTag": "e", "size": 3}}}]}))
        .await;
    assert_eq!(r.status(), 200);
    app.drain().await;
    assert_eq!(app.oss.requests(), 0);
    assert_eq!(app.hooks.count(), 0);
}

#[tokio::test]
async fn without_verification_the_message_is_believed() {
    let app = TestApp::spawn_with(|c| c.verification.enabled = false).await;
    app.webhook_workflow("hooks", "uploads/").await;
    let (id, _) = announced(&app, "a.mp4", 777, "MSG").await;
    assert_eq!(app.oss.requests(), 0);
    let (_, delivery) = app.hooks.deliveries().remove(0);
    assert_eq!(delivery["size"], 777);
    assert_eq!(delivery["etag"], "MSG");
    assert_eq!(state(&app, &id).await["state"], "triggered");
}

/// Uploads whose notification never came are found in the store; those never made expire.
#[tokio::test]
async fn reconciliation_finds_unannounced_uploads_and_expires_the_rest() {
    let app = TestApp::spawn_with(|c| {
        c.reconcile.after_seconds = 0;
        c.reconcile.expire_after_seconds = Some(3600);
    })
    .await;
    app.webhook_workflow("hooks", "uploads/").await;
    let (made, made_key) = app
        .issue("alice", "made.mp4", json!({"title": "kept"}))
        .await;
    let (never, _) = app.issue("alice", "never.mp4", json!({})).await;
    // The object arrives, its notification does not.
    app.oss
        .put(&made_key, sized(mp4_header(), 4000), "video/mp4");

    let found_before = reconciled_found(&app).await;
    let sweep = app.app.reconcile().await.unwrap();
    assert_eq!((sweep.found, sweep.missing, sweep.expired), (1, 1, 0));
    app.drain().await;
    let upload = state(&app, &made).await;
    assert_eq!(upload["state"], "triggered", "{upload}");
    let (_, delivery) = app.hooks.deliveries().remove(0);
    assert_eq!(delivery["size"], 4000);
    assert_eq!(delivery["media"]["title"], "kept");
    let full = app.admin_upload(&made).await;
    assert_eq!(full["events"][0]["source"], "reconcile", "{full}");

    // The missing one is not asked again at once: each upload has its own backoff.
    let again = app.app.reconcile().await.unwrap();
    assert_eq!((again.found, again.missing), (0, 0));
    assert_eq!(state(&app, &never).await["state"], "issued");
    // The recorder is the process's, shared with tests running beside this one.
    assert!(reconciled_found(&app).await >= found_before + 1.0);
}

/// How many unannounced uploads reconciliation has found, as `/metrics` says.
async fn reconciled_found(app: &TestApp) -> f64 {
    let series = r#"mediagate_reconciliations_total{outcome="found"} "#;
    app.metrics_text()
        .await
        .lines()
        .find_map(|l| l.strip_prefix(series)?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn uploads_never_made_expire_after_their_credentials() {
    let app = TestApp::spawn_with(|c| {
        c.reconcile.after_seconds = 0;
        c.reconcile.expire_after_seconds = Some(3600);
    })
    .await;
    let (id, _) = app.issue("alice", "never.mp4", json!({})).await;
    let sweep = app.app.reconcile().await.unwrap();
    assert_eq!((sweep.missing, sweep.expired), (1, 0), "{sweep:?}");
    // The expiry counts from the last vend: an hour later on the app's clock, it is over.
    app.clock.advance(std::time::Duration::from_secs(3600));
    let sweep = app.app.reconcile().await.unwrap();
    assert_eq!(sweep.expired, 1);
    let upload = state(&app, &id).await;
    assert_eq!(upload["state"], "expired");
    // An expired upload gets no more credentials.
    let refresh = app
        .client
        .post(app.url(&format!("/v1/uploads/{id}/credentials")))
        .bearer_auth(app.token("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(refresh.status(), 409);
}

/// The bucket stand-in signs as the official `oss2` SDK does: its presign vector (the
/// presigned form signs `Expires` where the header form signs `Date`, docs/protocols.md 4b).
#[test]
fn the_stand_ins_signature_matches_the_oss2_vector() {
    use axum::http::{HeaderMap, Method, header};
    let mut headers = HeaderMap::new();
    headers.insert(header::DATE, "1893456000".parse().unwrap());
    let signature = crate::support::oss_fake::v1_signature(
        "testsecret",
        &Method::PUT,
        &headers,
        "/media-in/uploads/alice/01/trip.mp4",
    );
    assert_eq!(signature, "rt1NqtEA1PevZtOMUF4kruvvOpE=");
}

/// With `list_unannounced`, objects nobody requested or announced are found by listing the
/// upload prefix, a page per sweep from a shared cursor, and processed once.
#[tokio::test]
async fn listing_finds_objects_nobody_announced() {
    let app = TestApp::spawn_with(|c| {
        c.reconcile.after_seconds = 0;
        c.reconcile.list_unannounced = true;
    })
    .await;
    app.webhook_workflow("hooks", "uploads/").await;
    // Uploaded straight to the bucket under bob's prefix, never announced.
    app.oss.put(
        "uploads/bob/raw/direct.mp4",
        sized(mp4_header(), 3000),
        "video/mp4",
    );
    // Announced already: the listing leaves it alone.
    let (id, key) = app.issue("alice", "seen.mp4", json!({})).await;
    assert_eq!(app.upload_completed(&key, "SEEN", &id).await.status(), 200);
    app.drain().await;
    assert!(app.oss.has(&key));
    assert_eq!(app.hooks.count(), 1);

    let sweep = app.app.reconcile().await.unwrap();
    assert_eq!(sweep.listed, 1, "{sweep:?}");
    app.drain().await;
    let deliveries = app.hooks.deliveries();
    assert_eq!(deliveries.len(), 2);
    app.protected_copy(&deliveries[1].1, "uploads/bob/raw/direct.mp4");
    assert_eq!(deliveries[1].1["size"], 3000);
    // In bob's history, as an upload he made without asking.
    let history = history_of(&app, "bob").await;
    assert_eq!(history["uploads"][0]["state"], "triggered", "{history}");

    // The next passes find nothing new.
    for _ in 0..2 {
        assert_eq!(app.app.reconcile().await.unwrap().listed, 0);
    }
    app.drain().await;
    assert_eq!(app.hooks.count(), 2);
    assert_eq!(
        app.oss.refused(),
        0,
        "listings are signed as OSS checks them"
    );
}

/// Without verification, a symbolic link reconciliation finds is recorded as one and never
/// processed: its target may be anyone's object.
#[tokio::test]
async fn unverified_reconciliation_never_processes_a_symlink() {
    let app = TestApp::spawn_with(|c| {
        c.verification.enabled = false;
        c.reconcile.after_seconds = 0;
    })
    .await;
    app.webhook_workflow("hooks", "uploads/").await;
    let (id, key) = app.issue("alice", "link.mp4", json!({})).await;
    app.oss.put_symlink(&key);
    assert_eq!(app.app.reconcile().await.unwrap().found, 1);
    app.drain().await;
    assert_eq!(app.hooks.count(), 0);
    let full = app.admin_upload(&id).await;
    assert_eq!(full["events"][0]["outcome"], "symlink", "{full}");
    assert_eq!(full["state"], "issued");
}

/// A form's object must be within the range its policy signed: over it is `too_large` (an
/// upload of another mode would only be held to its declared size, `size_mismatch`). The
/// verification job carries the upload's mode; one queued without it, as earlier versions
/// queued them, reads the mode from the upload and gets the same verdict.
#[tokio::test]
async fn a_forms_object_is_held_to_the_signed_range_whether_or_not_the_job_carries_the_mode() {
    for carried in [true, false] {
        let app = TestApp::spawn_with(|c| c.processing.max_attempts = 1).await;
        app.webhook_workflow("hooks", "uploads/").await;
        let body = json!({"file_name": "a.mp4", "mode": "post_policy", "size": 1000});
        let (id, key) = &created(&app, body).await;
        app.oss.put(key, sized(mp4_header(), 1001), "video/mp4");
        // Down at first, so the job ends dead and its payload can be rewritten before the
        // replay.
        app.oss.set_down(true);
        let form = format!("bucket=media-input&object={key}&etag=E&size=1000&upload_id={id}");
        assert_eq!(app.oss_callback_only(&form).await.status(), 200);
        app.drain().await;
        let job = app.admin_upload(id).await["verification"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut db = sqlx::AnyConnection::connect(app.app.config.database.url.expose_secret())
            .await
            .unwrap();
        let (payload,): (String,) =
            sqlx::query_as(&format!("SELECT payload FROM triggers WHERE id = '{job}'"))
                .fetch_one(&mut db)
                .await
                .unwrap();
        let mut payload: Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(payload["upload_mode"], "post_policy", "{payload}");
        if !carried {
            payload.as_object_mut().unwrap().remove("upload_mode");
            let text = payload.to_string().replace('\'', "''");
            sqlx::query(&format!(
                "UPDATE triggers SET payload = '{text}' WHERE id = '{job}'"
            ))
            .execute(&mut db)
            .await
            .unwrap();
        }
        db.close().await.unwrap();
        app.oss.set_down(false);
        let retry = app
            .admin(
                Method::POST,
                &format!("/v1/admin/triggers/{job}/retry"),
                None,
            )
            .await;
        assert_eq!(retry.status(), 200);
        app.drain().await;
        let upload = state(&app, id).await;
        assert_eq!(upload["state"], "rejected", "carried {carried}: {upload}");
        assert_eq!(upload["state_reason"], "too_large", "carried {carried}");
        // The workflow hears of it as a rejection notice, not as media to process.
        let deliveries = app.hooks.deliveries();
        assert_eq!(deliveries.len(), 1);
        let notice = &deliveries[0].1;
        assert_eq!(notice["type"], "upload.rejected", "{notice}");
        assert_eq!(notice["reason"], "too_large", "{notice}");
    }
}

/// Alice's upload of `file`, the store holding `bytes` for it with `content_type`, announced
/// and drained: (upload id, object key).
async fn stored(app: &TestApp, file: &str, bytes: &[u8], content_type: &str) -> (String, String) {
    let (id, key) = app.issue("alice", file, json!({})).await;
    app.oss.put(&key, bytes.to_vec(), content_type);
    let size = bytes.len();
    let form = format!("bucket=media-input&object={key}&etag=E&size={size}&upload_id={id}");
    assert_eq!(app.oss_callback_only(&form).await.status(), 200);
    app.drain().await;
    (id, key)
}

/// Nothing the receiver got is media to process: at most rejection notices.
fn nothing_completed(app: &TestApp) {
    for (_, delivery) in app.hooks.deliveries() {
        assert_eq!(delivery["type"], "upload.rejected", "{delivery}");
    }
}

/// A page or an image with scripts, served back from the bucket or a CDN in front of it, runs
/// in the viewer's browser: markup is never media, whatever `unknown_content` says, and
/// neither is an object the store itself would serve as an active type.
#[tokio::test]
async fn markup_and_active_types_are_never_media() {
    let app = TestApp::spawn_with(|c| {
        c.verification.unknown_content = mediagate::config::UnknownContent::Accept
    })
    .await;
    app.webhook_workflow("hooks", "uploads/").await;
    let cases: [(&[u8], &str); 9] = [
        (
            b"<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"/>",
            "video/mp4",
        ),
        (
            b"\xef\xbb\xbf\n  <?xml version=\"1.0\"?>\n<svg onload=\"alert(1)\"/>",
            "video/mp4",
        ),
        (b"\r\n\t<HTML\n><body onload=alert(1)>", "video/mp4"),
        (
            b"<html xmlns=\"http://www.w3.org/1999/xhtml\"><script>alert(1)</script></html>",
            "video/mp4",
        ),
        (b"<ScRiPt\n>alert(1)</script>", "video/mp4"),
        (b"\xff\xfe<\0s\0v\0g\0 \0o\0n\0l\0o\0a\0d\0", "video/mp4"),
        (b"no known signature", "text/html; charset=utf-8"),
        (b"no known signature", "image/svg+xml"),
        (b"no known signature", "Application/JavaScript"),
    ];
    for (n, (bytes, content_type)) in cases.into_iter().enumerate() {
        let (id, _) = stored(&app, &format!("clip{n}.mp4"), bytes, content_type).await;
        let upload = state(&app, &id).await;
        assert_eq!(upload["state"], "rejected", "case {n}: {upload}");
        assert_eq!(upload["state_reason"], "not_media", "case {n}");
    }
    nothing_completed(&app);
    // Unknown bytes the store serves as media still follow the rule.
    let (id, _) = stored(&app, "tape.dv", b"no known signature", "video/x-dv").await;
    assert_eq!(state(&app, &id).await["state"], "triggered");
}

/// An HLS playlist makes the processor fetch what it lists: the cloud's metadata service,
/// other users' objects. Refused by default, under any name.
#[tokio::test]
async fn playlists_are_refused_by_default() {
    let app = TestApp::spawn().await;
    app.webhook_workflow("hooks", "uploads/").await;
    app.mps_workflow("transcode", "uploads/").await;
    let cases: [(&str, &[u8]); 4] = [
        (
            "live.m3u8",
            b"#EXTM3U\n#EXTINF:10,\nhttp://169.254.169.254/latest/meta-data/\n#EXT-X-ENDLIST\n",
        ),
        ("other.m3u8", b"#EXTM3U\n#EXTINF:10,\n../../bob/x.ts\n"),
        (
            "local.m3u8",
            b"#EXTM3U\n#EXTINF:10,\nseg0.ts\n#EXT-X-ENDLIST\n",
        ),
        (
            "renamed.mp4",
            b"#EXTM3U\n#EXTINF:10,\nseg0.ts\n#EXT-X-ENDLIST\n",
        ),
    ];
    for (file, bytes) in cases {
        let (id, _) = stored(&app, file, bytes, "application/vnd.apple.mpegurl").await;
        let upload = state(&app, &id).await;
        assert_eq!(upload["state"], "rejected", "{file}: {upload}");
        assert_eq!(upload["state_reason"], "not_media", "{file}");
    }
    nothing_completed(&app);
    assert_eq!(app.mps.calls(), 0);
}

/// With `playlists = "local"`, a `.m3u8` passes when everything it names is a plain file
/// beside it; anything that leaves the upload's folder, a playlist under another name, or one
/// too long to read whole does not.
#[tokio::test]
async fn local_playlists_name_only_files_beside_them() {
    use mediagate::config::Playlists;
    let app = TestApp::spawn_with(|c| c.verification.playlists = Playlists::Local).await;
    app.webhook_workflow("hooks", "uploads/").await;
    let local = b"#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-MAP:URI=\"init.mp4\"\n\
        #EXT-X-KEY:METHOD=AES-128,URI=\"key.bin\"\n#EXTINF:10,\nseg_0.ts\r\n#EXTINF:10,\nseg-1.ts\n#EXT-X-ENDLIST\n";
    let (id, _) = stored(&app, "ok.m3u8", local, "application/vnd.apple.mpegurl").await;
    let upload = state(&app, &id).await;
    assert_eq!(upload["state"], "triggered", "{upload}");
    let (_, delivery) = app.hooks.deliveries().remove(0);
    assert_eq!(delivery["container"], "application/vnd.apple.mpegurl");

    let mut long = b"#EXTM3U\n".to_vec();
    while long.len() <= 64 * 1024 {
        long.extend_from_slice(b"#EXTINF:1,\nsegment.ts\n");
    }
    long.extend_from_slice(b"#EXTINF:1,\nhttp://169.254.169.254/latest/meta-data/\n");
    let refused: [(&str, &[u8]); 8] = [
        ("url.m3u8", b"#EXTM3U\n#EXTINF:10,\nhttp://169.254.169.254/latest/meta-data/\n"),
        ("up.m3u8", b"#EXTM3U\n#EXTINF:10,\n../../bob/x.ts\n"),
        ("escaped.m3u8", b"#EXTM3U\n#EXTINF:10,\n%2e%2e%2fbob%2fx.ts\n"),
        ("key.m3u8", b"#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"http://169.254.169.254/\"\n#EXTINF:10,\na.ts\n"),
        ("map.m3u8", b"#EXTM3U\n#EXT-X-MAP:URI=/etc/passwd\n#EXTINF:10,\na.ts\n"),
        ("nested.m3u8", b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nlow.m3u8\n"),
        ("renamed.mp4", local),
        ("long.m3u8", &long),
    ];
    for (file, bytes) in refused {
        let (id, _) = stored(&app, file, bytes, "application/vnd.apple.mpegurl").await;
        let upload = state(&app, &id).await;
        assert_eq!(upload["state"], "rejected", "{file}: {upload}");
        assert_eq!(upload["state_reason"], "not_media", "{file}");
    }
    assert_eq!(app.hooks.deliveries().len(), 1 + 8);
}

/// The uploader's credentials stay valid, so it can PUT again between verification's HEAD and
/// its read. The read is conditional on the HEAD's ETag, so what is judged is one version:
/// its bytes, its ETag and its size together.
#[tokio::test]
async fn verification_never_mixes_two_versions() {
    let app = TestApp::spawn().await;
    app.webhook_workflow("hooks", "uploads/").await;
    // A ZIP at the HEAD, an MP4 (of the same size) by the read: the MP4 is looked at again
    // and verified as itself, never with the ZIP's ETag. Both are smaller than the store's
    // answer that the ETag no longer matches, which is still told apart from a bad read.
    let (id, key) = app.issue("alice", "swap.mp4", json!({})).await;
    app.oss.put(&key, sized(zip(), 40), "video/mp4");
    let zip_etag = app.oss.etag(&key).unwrap();
    app.oss
        .replace_after_head(&key, sized(mp4_header(), 40), "video/mp4");
    let form = format!("bucket=media-input&object={key}&etag=E&size=40&upload_id={id}");
    assert_eq!(app.oss_callback_only(&form).await.status(), 200);
    app.drain().await;
    assert_eq!(state(&app, &id).await["state"], "triggered");
    let (_, delivery) = app.hooks.deliveries().remove(0);
    assert_ne!(delivery["etag"], zip_etag);
    assert_eq!(delivery["etag"], app.oss.etag(&key).unwrap());
    assert_eq!(delivery["size"], 40);
    assert_eq!(app.oss.preconditions_failed(), 1);
    assert_eq!(app.oss.refused(), 0);
    let full = app.admin_upload(&id).await;
    assert_eq!(
        full["verification"][0]["attempts"], 1,
        "looked again at once"
    );

    // An MP4 at the HEAD, a ZIP by the read: the ZIP is what is judged.
    let (id, key) = app.issue("alice", "swap2.mp4", json!({})).await;
    app.oss.put(&key, sized(mp4_header(), 3000), "video/mp4");
    app.oss.replace_after_head(&key, zip(), "video/mp4");
    let form = format!("bucket=media-input&object={key}&etag=E&size=3000&upload_id={id}");
    assert_eq!(app.oss_callback_only(&form).await.status(), 200);
    app.drain().await;
    let upload = state(&app, &id).await;
    assert_eq!(upload["state"], "rejected", "{upload}");
    assert_eq!(upload["state_reason"], "not_media");
    let detail = app.admin_upload(&id).await["verification"][0]["last_error"].to_string();
    assert!(detail.contains("zip"), "{detail}");
    assert_eq!(app.hooks.deliveries().len(), 2);
    assert_eq!(app.hooks.deliveries()[1].1["type"], "upload.rejected");
}

/// An object that changes at every look is no verdict: the job is retried, and after its
/// budget the upload is `failed` with nothing sent for processing.
#[tokio::test]
async fn an_object_that_never_holds_still_is_retried_not_judged() {
    let app = TestApp::spawn_with(|c| c.processing.max_attempts = 2).await;
    app.webhook_workflow("hooks", "uploads/").await;
    let (id, key) = app.issue("alice", "busy.mp4", json!({})).await;
    app.oss.put(&key, sized(mp4_header(), 1000), "video/mp4");
    for n in 1..=40 {
        let version = if n % 2 == 0 { zip() } else { mp4_header() };
        app.oss
            .replace_after_head(&key, sized(version, 1000 + n), "video/mp4");
    }
    let form = format!("bucket=media-input&object={key}&etag=E&size=1000&upload_id={id}");
    assert_eq!(app.oss_callback_only(&form).await.status(), 200);
    verification_gave_up(&app, &id, 2).await;
}

/// A signed MNS push of one OSS object-created event, whatever the bucket holds.
async fn early_push(app: &TestApp, key: &str, etag: &str) {
    use base64::Engine;
    let events = json!({"events": [{"eventName": "ObjectCreated:PutObject",
        "oss": {"bucket": {"name": "media-input"}, "object": {"key": key, "size": 4096, "eTag": etag}}}]});
    let body = base64::engine::general_purpose::STANDARD.encode(events.to_string());
    let r = app
        .mns_push_only(crate::support::MNS_ACCOUNT_ID, "t", body)
        .await;
    assert_eq!(r.status(), 200);
}

/// A notification that comes before its object (early, stale or forged) is no verdict: the
/// upload stays `issued`, its event is recorded as `missing`, nobody is told anything, and
/// the real upload that follows, even announced with the same ETag, is processed once with
/// the store's size.
#[tokio::test]
async fn an_early_notification_leaves_the_upload_open() {
    let app = TestApp::spawn().await;
    app.webhook_workflow("hooks", "uploads/").await;
    let (id, key) = app.issue("alice", "early.mp4", json!({})).await;
    for etag in ["E1", "E2"] {
        early_push(&app, &key, etag).await;
        app.drain().await;
    }
    let upload = state(&app, &id).await;
    assert_eq!(upload["state"], "issued", "{upload}");
    assert!(upload.get("state_reason").is_none(), "{upload}");
    assert_eq!(app.hooks.count(), 0, "no webhook of any type");
    assert_eq!(outcomes(&app, &key).await, ["missing", "missing"]);
    let full = app.admin_upload(&id).await;
    assert_eq!(full["events"][0]["outcome"], "missing", "{full}");
    assert!(
        app.metrics_text()
            .await
            .contains(r#"mediagate_verifications_total{outcome="missing"}"#)
    );

    // The real object, announced with the ETag of the first early event.
    let mut bytes = mp4_header();
    bytes.resize(6000, 0);
    app.oss.put_with_etag(&key, bytes, "video/mp4", "E1");
    early_push(&app, &key, "E1").await;
    app.drain().await;
    let upload = state(&app, &id).await;
    assert_eq!(upload["state"], "triggered", "{upload}");
    assert_eq!(upload["size"], 6000);
    let deliveries = app.hooks.deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].1["type"], "upload.completed");
    assert_eq!(deliveries[0].1["size"], 6000);
    // Announced again afterwards: processed once all the same.
    early_push(&app, &key, "E1").await;
    early_push(&app, &key, "E3").await;
    app.drain().await;
    assert_eq!(app.hooks.count(), 1);
}

/// Reconciliation finds the object an early notification could not, and processes it once;
/// an upload whose object never comes is again one reconciliation looks for (and expires).
#[tokio::test]
async fn reconciliation_finds_what_came_after_an_early_notification() {
    let app = TestApp::spawn_with(|c| c.reconcile.after_seconds = 0).await;
    app.webhook_workflow("hooks", "uploads/").await;
    let (id, key) = app.issue("alice", "late.mp4", json!({})).await;
    early_push(&app, &key, "E1").await;
    app.drain().await;
    assert_eq!(state(&app, &id).await["state"], "issued");
    let mut bytes = mp4_header();
    bytes.resize(5000, 0);
    app.oss.put(&key, bytes, "video/mp4");
    app.app.reconcile().await.unwrap();
    app.drain().await;
    let upload = state(&app, &id).await;
    assert_eq!(upload["state"], "triggered", "{upload}");
    assert_eq!(upload["size"], 5000);
    assert_eq!(app.hooks.count(), 1);

    let (never, never_key) = app.issue("alice", "never.mp4", json!({})).await;
    early_push(&app, &never_key, "E9").await;
    app.drain().await;
    let sweep = app.app.reconcile().await.unwrap();
    assert_eq!((sweep.found, sweep.missing), (0, 1), "{sweep:?}");
    assert_eq!(state(&app, &never).await["state"], "issued");
    assert_eq!(app.hooks.count(), 1);
}

/// A store may show a new object a moment after its own notification: verification looks
/// again before it calls an object missing.
#[tokio::test]
async fn a_store_slow_to_show_an_object_is_looked_at_again() {
    let app = TestApp::spawn_with(|c| c.verification.missing_wait_ms = 2000).await;
    app.webhook_workflow("hooks", "uploads/").await;
    let (id, key) = app.issue("alice", "slow.mp4", json!({})).await;
    let mut bytes = mp4_header();
    bytes.resize(3000, 0);
    // Not there at the first look; there right after it.
    app.oss.replace_after_head(&key, bytes, "video/mp4");
    early_push(&app, &key, "E1").await;
    app.drain().await;
    let upload = state(&app, &id).await;
    assert_eq!(upload["state"], "triggered", "{upload}");
    assert_eq!(upload["size"], 3000);
}

/// An early event for a key nobody was issued records the event and nothing else: no upload
/// appears in anyone's history.
#[tokio::test]
async fn an_early_event_for_a_key_nobody_was_issued_records_only_the_event() {
    let app = TestApp::spawn().await;
    app.webhook_workflow("hooks", "uploads/").await;
    let key = "uploads/bob/raw/ghost.mp4";
    early_push(&app, key, "G1").await;
    app.drain().await;
    let history = history_of(&app, "bob").await;
    assert_eq!(history["uploads"], json!([]), "{history}");
    let events = app
        .app
        .store
        .events_for_object("media-input", key)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].outcome.as_str(), "missing");
    assert_eq!(events[0].upload_id, None);
    assert_eq!(app.hooks.count(), 0);
    // The object that then lands there is processed as bob's, once.
    let mut bytes = mp4_header();
    bytes.resize(2000, 0);
    app.oss.put(key, bytes, "video/mp4");
    early_push(&app, key, "G2").await;
    app.drain().await;
    let history = history_of(&app, "bob").await;
    assert_eq!(history["uploads"][0]["state"], "triggered", "{history}");
    assert_eq!(app.hooks.count(), 1);
}

/// An operator reprocesses an upload whose object is gone since: no verdict on it either; it
/// stays as its earlier triggers say, and the event that completed it still holds.
#[tokio::test]
async fn reprocessing_an_object_gone_since_changes_nothing() {
    let app = TestApp::spawn().await;
    app.webhook_workflow("hooks", "uploads/").await;
    let (id, key) = app.issue("alice", "gone.mp4", json!({})).await;
    assert_eq!(app.upload_completed(&key, "E1", &id).await.status(), 200);
    app.drain().await;
    assert_eq!(state(&app, &id).await["state"], "triggered");
    app.oss.remove(&key);
    let r = app
        .admin(
            reqwest::Method::POST,
            &format!("/v1/admin/uploads/{id}/reprocess"),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    app.drain().await;
    let upload = state(&app, &id).await;
    assert_eq!(upload["state"], "triggered", "{upload}");
    assert_eq!(app.hooks.count(), 1);
    // The object is still completed: another version announced later is a repeat.
    early_push(&app, &key, "E2").await;
    app.drain().await;
    assert_eq!(outcomes(&app, &key).await, ["queued", "repeat"]);
    assert_eq!(app.hooks.count(), 1);
}

/// The keys under `verified/` the bucket holds.
fn copies_in(app: &TestApp) -> Vec<String> {
    let keys = app.oss.keys();
    keys.into_iter()
        .filter(|k| k.starts_with("verified/"))
        .collect()
}

/// What was verified is what gets processed. The uploader's credentials (and presigned URLs)
/// stay valid after the upload, so the object can be replaced after verification and before
/// a processor reads it: processors are handed the copy verification made and judged, under
/// `verified/`, where no app credential writes, and its bytes are the verified ones whatever
/// becomes of the original.
#[tokio::test]
async fn a_version_written_after_verification_never_reaches_the_processor() {
    let app = TestApp::spawn().await;
    app.webhook_workflow("hooks", "uploads/").await;
    app.mps_workflow("transcode", "uploads/").await;
    let (id, key) = app.issue("alice", "clip.mp4", json!({})).await;
    let clip = sized(mp4_header(), 4096);
    app.oss.put(&key, clip.clone(), "video/mp4");
    // Neither processor takes the first delivery: it is retried after the overwrite below.
    app.hooks.fail_next(1);
    app.mps.fail_next(503, "ServiceUnavailable");
    let form = format!("bucket=media-input&object={key}&etag=E&size=4096&upload_id={id}");
    assert_eq!(app.oss_callback_only(&form).await.status(), 200);
    app.drain().await;
    assert_eq!(app.hooks.count(), 0);
    let full = app.admin_upload(&id).await;
    assert_eq!(full["verification"][0]["state"], "delivered", "{full}");
    // The uploader PUTs a ZIP over the verified clip with its still-valid credentials.
    app.oss.put(&key, zip(), "video/mp4");
    app.drain_with_retries().await;

    let (_, delivery) = app.hooks.deliveries().remove(0);
    let copy = delivery["object_key"].as_str().unwrap().to_owned();
    assert_eq!(delivery["source_key"], key.as_str());
    assert!(copy.starts_with("verified/alice/"), "{copy}");
    assert!(copy.ends_with("/clip.mp4"), "{copy}");
    assert_eq!(
        app.oss.bytes(&copy),
        Some(clip.clone()),
        "the verified clip"
    );
    assert_eq!(
        app.oss.bytes(&key),
        Some(zip()),
        "the original was replaced"
    );
    assert_eq!(delivery["etag"], app.oss.etag(&copy).unwrap());
    assert_eq!(delivery["size"], 4096);
    // MPS reads the same copy, on the first attempt and on its retry.
    let file_urls: Vec<String> = app
        .mps
        .requests()
        .iter()
        .filter_map(|r| r.get("FileURL").cloned())
        .collect();
    assert_eq!(file_urls.len(), 2, "{file_urls:?}");
    for url in &file_urls {
        assert_eq!(
            url,
            &format!("http://media-input.oss-cn-hangzhou.aliyuncs.com/{copy}")
        );
    }
    assert_eq!(copies_in(&app), std::slice::from_ref(&copy));
    // The overwrite's own notification is a repeat: nothing is verified or copied again.
    let form = format!("bucket=media-input&object={key}&etag=Z&size=4096&upload_id={id}");
    assert_eq!(app.oss_callback_only(&form).await.status(), 200);
    app.drain().await;
    assert_eq!(app.hooks.count(), 1);
    assert_eq!(copies_in(&app), [copy]);
    assert_eq!(
        app.oss.refused(),
        0,
        "every request was signed as OSS checks it"
    );
}

/// The object is copied as the HEAD saw it (the copy names that ETag); a version that landed
/// in between is refused by the store (412), looked at again and judged as itself, in a copy
/// of its own: never passed on under the first version's verdict.
#[tokio::test]
async fn a_version_that_changed_between_the_head_and_the_copy_is_verified_again() {
    let app = TestApp::spawn().await;
    app.webhook_workflow("hooks", "uploads/").await;
    // A clip at the HEAD, a ZIP by the copy: the ZIP is what is judged, and refused.
    let (id, key) = app.issue("alice", "swap.mp4", json!({})).await;
    app.oss.put(&key, sized(mp4_header(), 3000), "video/mp4");
    app.oss.replace_after_head(&key, zip(), "video/mp4");
    let form = format!("bucket=media-input&object={key}&etag=E&size=3000&upload_id={id}");
    assert_eq!(app.oss_callback_only(&form).await.status(), 200);
    app.drain().await;
    let upload = state(&app, &id).await;
    assert_eq!(upload["state"], "rejected", "{upload}");
    assert_eq!(upload["state_reason"], "not_media");
    assert_eq!(app.oss.preconditions_failed(), 1);
    assert_eq!(app.oss.copies(), 1, "only the ZIP was copied");
    let notices = app.hooks.deliveries();
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].1["type"], "upload.rejected");
    assert_eq!(notices[0].1["object_key"], key.as_str());
    // The refused copy is not kept.
    assert_eq!(copies_in(&app), Vec::<String>::new());

    // A clip at the HEAD, another clip by the copy: the second one is verified and handed on.
    let (id, key) = app.issue("alice", "swap2.mp4", json!({})).await;
    app.oss.put(&key, sized(mp4_header(), 3000), "video/mp4");
    let second = sized(mp4_header(), 5000);
    app.oss
        .replace_after_head(&key, second.clone(), "video/mp4");
    let form = format!("bucket=media-input&object={key}&etag=E&size=3000&upload_id={id}");
    assert_eq!(app.oss_callback_only(&form).await.status(), 200);
    app.drain().await;
    assert_eq!(state(&app, &id).await["state"], "triggered");
    assert_eq!(app.oss.preconditions_failed(), 2);
    let (_, delivery) = app.hooks.deliveries().remove(1);
    let copy = app.protected_copy(&delivery, &key);
    assert_eq!(app.oss.bytes(&copy), Some(second));
    assert_eq!(delivery["size"], 5000);
    assert_eq!(app.oss.refused(), 0);
}

/// Objects larger than `copy_part_bytes` are copied in parts (UploadPartCopy, each naming the
/// verified version), and the copy is the whole object.
#[tokio::test]
async fn large_objects_are_copied_in_parts() {
    let app = TestApp::spawn_with(|c| c.verification.copy_part_bytes = 5 << 20).await;
    app.webhook_workflow("hooks", "uploads/").await;
    let (id, key) = app.issue("alice", "long.mov", json!({})).await;
    let mut bytes = b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  ".to_vec();
    bytes.extend((0..12u32 << 20).map(|i| (i % 251) as u8));
    app.oss.put(&key, bytes.clone(), "video/quicktime");
    let form = format!(
        "bucket=media-input&object={key}&etag=E&size={}&upload_id={id}",
        bytes.len()
    );
    assert_eq!(app.oss_callback_only(&form).await.status(), 200);
    app.drain().await;
    assert_eq!(state(&app, &id).await["state"], "triggered");
    let (_, delivery) = app.hooks.deliveries().remove(0);
    let copy = app.protected_copy(&delivery, &key);
    assert_eq!(app.oss.copies(), 3, "three parts of at most 5 MiB");
    assert_eq!(app.oss.open_multipart_uploads(), 0);
    assert!(
        delivery["etag"].as_str().unwrap().ends_with("-3"),
        "{delivery}"
    );
    assert_eq!(delivery["content_type"], "video/quicktime");
    assert_eq!(app.oss.bytes(&copy).map(|b| b.len()), Some(bytes.len()));
    assert_eq!(app.oss.refused(), 0);

    // Replaced after the first part was copied: the second part's condition fails, the
    // multipart copy is aborted, and the new version is looked at again and copied whole.
    let (id, key) = app.issue("alice", "long2.mov", json!({})).await;
    app.oss.put(&key, bytes.clone(), "video/quicktime");
    let mut other = bytes.clone();
    other[100] ^= 1;
    app.oss
        .replace_after_copy(&key, other.clone(), "video/quicktime");
    let form = format!(
        "bucket=media-input&object={key}&etag=E&size={}&upload_id={id}",
        bytes.len()
    );
    assert_eq!(app.oss_callback_only(&form).await.status(), 200);
    app.drain().await;
    assert_eq!(state(&app, &id).await["state"], "triggered");
    let (_, delivery) = app.hooks.deliveries().remove(1);
    let copy = app.protected_copy(&delivery, &key);
    assert_eq!(app.oss.bytes(&copy), Some(other));
    assert_eq!(app.oss.preconditions_failed(), 1);
    assert_eq!(
        app.oss.copies(),
        3 + 1 + 3,
        "one part of the first copy, then all three"
    );
    assert_eq!(
        app.oss.open_multipart_uploads(),
        0,
        "the first copy was aborted"
    );
}

/// Reprocessing verifies the object as the store has it now, into a copy of its own; the
/// earlier copy (which a processor may still be reading) is left as it was.
#[tokio::test]
async fn reprocessing_verifies_into_a_new_copy() {
    let app = TestApp::spawn().await;
    app.webhook_workflow("hooks", "uploads/").await;
    let (id, key) = app.issue("alice", "again.mp4", json!({})).await;
    let first = sized(mp4_header(), 2000);
    app.oss.put(&key, first.clone(), "video/mp4");
    assert_eq!(app.upload_completed(&key, "E1", &id).await.status(), 200);
    app.drain().await;
    let (_, delivery) = app.hooks.deliveries().remove(0);
    let first_copy = app.protected_copy(&delivery, &key);
    let second = sized(mp4_header(), 2500);
    app.oss.put(&key, second.clone(), "video/mp4");
    let r = app
        .admin(
            Method::POST,
            &format!("/v1/admin/uploads/{id}/reprocess"),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    app.drain().await;
    let (_, delivery) = app.hooks.deliveries().remove(1);
    let second_copy = app.protected_copy(&delivery, &key);
    assert_ne!(second_copy, first_copy);
    assert_eq!(app.oss.bytes(&second_copy), Some(second));
    assert_eq!(app.oss.bytes(&first_copy), Some(first));
}

/// With `protected_copy = false` processors are handed the uploaded object itself, as before.
#[tokio::test]
async fn without_protected_copies_the_object_itself_is_handed_on() {
    let app = TestApp::spawn_with(|c| c.verification.protected_copy = false).await;
    app.webhook_workflow("hooks", "uploads/").await;
    let (id, key) = app.issue("alice", "plain.mp4", json!({})).await;
    app.oss.put(&key, sized(mp4_header(), 2000), "video/mp4");
    assert_eq!(app.upload_completed(&key, "E1", &id).await.status(), 200);
    app.drain().await;
    let (_, delivery) = app.hooks.deliveries().remove(0);
    assert_eq!(delivery["object_key"], key.as_str());
    assert!(delivery.get("source_key").is_none(), "{delivery}");
    assert_eq!(app.oss.copies(), 0);
}
