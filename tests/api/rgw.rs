//! End to end against a real Ceph RADOS Gateway: STS `AssumeRole` with mediagate's session
//! policy, uploads with boto3, presigned POST limits and bucket notifications, all enforced
//! by RGW itself. `scripts/test.sh` starts RGW and runs these with `--ignored`, naming it in
//! `MEDIAGATE_TEST_RGW_URL` and the Python with boto3 in `MEDIAGATE_TEST_PYTHON`.

use std::time::Duration;

use mediagate::config::{CredentialScope, PostSigning, Provider};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::support::{S3_TOKEN, TestApp, WEBHOOK_SECRET};

const ADMIN_KEY: &str = "TESTERAK";
const ADMIN_SECRET: &str = "TESTERSK";
const ROLE_ARN: &str = "arn:aws:iam:::role/uploader";
const REGION: &str = "us-east-1";

pub(crate) fn rgw_url() -> String {
    std::env::var("MEDIAGATE_TEST_RGW_URL")
        .expect("MEDIAGATE_TEST_RGW_URL names the RGW endpoint (scripts/rgw.sh start)")
}

/// Runs the boto3 client with `command` and `args`; its JSON answer.
pub(crate) async fn s3client(command: &str, args: Value) -> Value {
    let python = std::env::var("MEDIAGATE_TEST_PYTHON")
        .expect("MEDIAGATE_TEST_PYTHON names a Python with boto3 (scripts/python.sh)");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/s3client.py");
    let out = tokio::process::Command::new(python)
        .arg(script)
        .arg(command)
        .arg(args.to_string())
        .output()
        .await
        .expect("run the S3 client");
    assert!(
        out.status.success(),
        "s3client {command} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("s3client prints JSON")
}

fn admin() -> Value {
    json!({"access_key_id": ADMIN_KEY, "access_key_secret": ADMIN_SECRET})
}

/// A fresh bucket name per test, so tests share one RGW.
pub(crate) fn bucket() -> String {
    format!("mg-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// mediagate with the S3 provider on RGW for `bucket`. RGW pushes its notifications on its own
/// schedule and the gateway's outage test waits for retries to outlast it, so the app runs its
/// own worker and the tests wait for outcomes as a client would. Its public URL is its own
/// address, so processors can report back to it.
pub(crate) async fn spawn(
    bucket: &str,
    customise: impl FnOnce(&mut mediagate::config::Config),
) -> TestApp {
    let rgw = rgw_url();
    let bucket = bucket.to_owned();
    TestApp::builder()
        .running_worker()
        .own_public_url()
        .config(move |c| {
            c.storage.provider = Provider::S3;
            c.storage.bucket = bucket;
            c.storage.region = REGION.into();
            c.storage.endpoint = rgw.clone();
            c.storage.path_style = true;
            c.sts.endpoint = Some(rgw);
            c.sts.access_key_id = ADMIN_KEY.into();
            c.sts.access_key_secret = SecretString::from(ADMIN_SECRET);
            c.sts.role_arn = ROLE_ARN.into();
            // mediagate reads the bucket where clients upload: RGW itself, with the service keys.
            c.storage.internal_endpoint = None;
            customise(c);
        })
        .spawn()
        .await
}

/// Creates `bucket` (and `others`) with notifications of `notify` pushed to the app.
pub(crate) async fn setup(app: &TestApp, bucket: &str, others: &[&str], notify: &[&str]) {
    // RGW keeps a tenant's topics in one object that concurrent CreateTopic calls overwrite,
    // so tests running side by side set up one at a time.
    static SETUP: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one_at_a_time = SETUP.lock().await;
    let mut buckets = vec![bucket];
    buckets.extend_from_slice(others);
    let push = format!("{}/v1/notifications/s3-events?token={S3_TOKEN}", app.base);
    let r = s3client(
        "setup",
        json!({"endpoint": rgw_url(), "admin": admin(), "buckets": buckets,
               "topic": format!("t-{bucket}"), "push_endpoint": push, "notify": notify}),
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
}

pub(crate) async fn webhook_workflow(app: &TestApp, bucket: &str, prefix: &str) {
    let body = json!({"name": format!("hooks-{bucket}"), "state": "Active", "bucket": bucket,
        "prefix": prefix, "sink": "webhook", "webhook_url": app.hooks.url,
        "webhook_secret": WEBHOOK_SECRET});
    let r = app
        .admin(reqwest::Method::POST, "/v1/admin/workflows", Some(body))
        .await;
    assert_eq!(r.status(), 201);
}

/// `POST /v1/uploads` for `user`; the 201 body.
pub(crate) async fn request_upload(app: &TestApp, user: &str, body: Value) -> Value {
    let r = app.create_upload(&app.token(user), body).await;
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

pub(crate) fn args(upload: &Value, key: &str, extra: Value) -> Value {
    let mut a = json!({"endpoint": upload["endpoint"], "region": upload["region"],
        "creds": upload["credentials"], "bucket": upload["bucket"], "key": key});
    a.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Ceph RGW: scripts/test.sh runs it"]
async fn rgw_enforces_the_vended_scope_and_notifies_the_workflow() {
    let bucket = bucket();
    let other = bucket.replace("mg-", "mx-");
    let app = spawn(&bucket, |_| {}).await;
    setup(&app, &bucket, &[&other], &[&bucket, &other]).await;
    webhook_workflow(&app, &bucket, "uploads/alice/").await;

    let upload = request_upload(
        &app,
        "alice",
        json!({"file_name": "trip.MP4", "media": {"title": "Trip", "tags": ["beach"]}}),
    )
    .await;
    assert_eq!(upload["provider"], "s3");
    assert_eq!(upload["force_path_style"], true);
    assert!(
        upload.get("callback").is_none(),
        "S3 has no upload callback"
    );
    let key = upload["object_key"].as_str().unwrap().to_owned();
    let id = upload["upload_id"].as_str().unwrap().to_owned();

    // Into A's own prefix: allowed.
    let put = s3client("put", args(&upload, &key, json!({"size": 4096}))).await;
    assert_eq!(put["ok"], true, "{put}");
    // Into B's prefix, reading, or without the session token: refused by RGW itself.
    let bobs = key.replace("uploads/alice/", "uploads/bob/");
    let r = s3client("put", args(&upload, &bobs, json!({}))).await;
    assert_eq!(
        (r["ok"].clone(), r["code"].clone()),
        (json!(false), json!("AccessDenied")),
        "{r}"
    );
    let r = s3client("get", args(&upload, &key, json!({}))).await;
    assert_eq!(
        (r["ok"].clone(), r["code"].clone()),
        (json!(false), json!("AccessDenied")),
        "{r}"
    );
    let mut tokenless = args(&upload, &key, json!({}));
    tokenless["creds"]["security_token"] = Value::Null;
    let r = s3client("put", tokenless).await;
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["status"], 403, "{r}");
    // The object really is there, as written by A.
    let head = s3client(
        "head",
        json!({"endpoint": rgw_url(), "creds": admin(), "bucket": bucket, "key": key}),
    )
    .await;
    assert_eq!(head["size"], 4096, "{head}");

    // RGW's notification reached mediagate, matched the workflow and the webhook got a
    // correctly signed delivery.
    assert!(
        app.hooks.wait_for(1, Duration::from_secs(20)).await,
        "no delivery"
    );
    let (_, delivery) = &app.hooks.deliveries()[0];
    // The processor is handed the copy verification judged, beside the uploaded object.
    assert_eq!(delivery["source_key"], key.as_str());
    let copy = delivery["object_key"].as_str().unwrap();
    assert!(copy.starts_with("verified/alice/"), "{copy}");
    assert_eq!(delivery["bucket"], bucket.as_str());
    assert_eq!(delivery["upload_id"], id.as_str());
    assert_eq!(
        delivery["etag"],
        put["etag"].as_str().unwrap().to_uppercase()
    );
    assert_eq!(delivery["media"]["title"], "Trip");
    assert_eq!(app.hooks.rejected(), 0);
    let done = app
        .wait_upload("alice", &id, |u| u["state"] == "triggered")
        .await;
    assert_eq!(done["triggers"][0]["state"], "delivered");

    // A non-media file under A's prefix (her credentials cover it): recorded as skipped.
    let notes = key.replace("trip.MP4", "notes.txt");
    assert_eq!(
        s3client("put", args(&upload, &notes, json!({}))).await["ok"],
        true
    );
    // A media file outside every workflow prefix: bob's upload.
    let bob = request_upload(&app, "bob", json!({"file_name": "clip.mp4"})).await;
    let bob_key = bob["object_key"].as_str().unwrap();
    assert_eq!(
        s3client("put", args(&bob, bob_key, json!({}))).await["ok"],
        true
    );
    // An object in a bucket no workflow reads.
    let r = s3client(
        "put",
        json!({"endpoint": rgw_url(), "creds": admin(), "bucket": other,
        "key": "uploads/alice/x/a.mp4"}),
    )
    .await;
    assert_eq!(r["ok"], true);

    let bob_id = bob["upload_id"].as_str().unwrap();
    let bobs_upload = app
        .wait_upload("bob", bob_id, |u| u["state"] == "skipped")
        .await;
    assert_eq!(
        bobs_upload["state_reason"], "no_matching_workflow",
        "{bobs_upload}"
    );
    let detail = app.admin_upload(bob_id).await;
    assert!(
        detail["events"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("outside prefix"),
        "{detail}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let notes_row = loop {
        let history: Value = app
            .get(&app.token("alice"), "/v1/uploads")
            .await
            .json()
            .await
            .unwrap();
        if let Some(row) = history["uploads"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["object_key"] == notes.as_str())
        {
            break row.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "notes.txt never recorded: {history}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(notes_row["state"], "skipped");
    assert_eq!(notes_row["state_reason"], "not_media");
    // Nothing but the one media upload was delivered.
    app.drain().await;
    assert_eq!(app.hooks.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Ceph RGW: scripts/test.sh runs it"]
async fn a_64_mib_multipart_upload_refreshes_its_credentials_midway() {
    let bucket = bucket();
    // Credentials are reused while fresh; here they never are, so the refresh midway is a
    // new AssumeRole and the second half uploads with other keys.
    let app = spawn(&bucket, |c| {
        c.storage.credential_scope = CredentialScope::Upload;
        c.sts.refresh_after = 1e-9;
    })
    .await;
    setup(&app, &bucket, &[], &[&bucket]).await;
    webhook_workflow(&app, &bucket, "uploads/").await;
    let upload = request_upload(&app, "alice", json!({"file_name": "long-take.mov"})).await;
    let key = upload["object_key"].as_str().unwrap();
    let id = upload["upload_id"].as_str().unwrap();
    let refresh = json!({"url": app.url(&format!("/v1/uploads/{id}/credentials")),
        "token": app.token("alice")});
    let r = s3client(
        "multipart",
        args(
            &upload,
            key,
            json!({"size_mib": 64, "part_mib": 8, "refresh_after_parts": 4,
            "refresh": refresh}),
        ),
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["parts"], 8);
    assert_eq!(r["listed_parts"], 8);
    let keys = r["access_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_ne!(keys[0], keys[1], "the second half used fresh credentials");
    // One-object credentials cover nothing else.
    let other = key.replace("long-take.mov", "other.mov");
    let denied = s3client("put", args(&upload, &other, json!({}))).await;
    assert_eq!(denied["code"], "AccessDenied", "{denied}");

    let head = s3client(
        "head",
        json!({"endpoint": rgw_url(), "creds": admin(), "bucket": bucket, "key": key}),
    )
    .await;
    assert_eq!(head["size"], 64 * 1024 * 1024);
    let done = app
        .wait_upload("alice", id, |u| u["state"] == "triggered")
        .await;
    assert_eq!(done["triggers"][0]["state"], "delivered");
    assert_eq!(app.hooks.deliveries()[0].1["size"], 64 * 1024 * 1024);
    // Once the upload is complete, no more credentials for it.
    let again = app
        .client
        .post(app.url(&format!("/v1/uploads/{id}/credentials")))
        .bearer_auth(app.token("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Ceph RGW: scripts/test.sh runs it"]
async fn presigned_post_limits_are_enforced_by_rgw() {
    let bucket = bucket();
    // RGW 16 neither checks the size range of forms signed with session credentials nor
    // announces their objects, so forms are signed with the service keys here.
    let app = spawn(&bucket, |c| {
        c.storage.max_upload_bytes = 64 * 1024;
        c.storage.post_signing = PostSigning::Service;
    })
    .await;
    setup(&app, &bucket, &[], &[&bucket]).await;
    webhook_workflow(&app, &bucket, "uploads/").await;

    let response = app
        .create_upload(
            &app.token("alice"),
            json!({"file_name": "clip.webm", "size": 2000, "mode": "post_policy"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let text = response.text().await.unwrap();
    assert!(
        !text.contains(ADMIN_SECRET),
        "the signing secret never leaves the server"
    );
    let declared: Value = serde_json::from_str(&text).unwrap();
    assert!(
        declared.get("credentials").is_none(),
        "a browser never gets a secret"
    );
    assert_eq!(app.sts.requests().len(), 0);
    let form = &declared["post_policy"];
    assert_eq!(form["url"], format!("{}/{bucket}", rgw_url()));
    let fields = form["fields"].as_object().unwrap();
    for f in [
        "key",
        "policy",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-date",
        "x-amz-algorithm",
    ] {
        assert!(fields.contains_key(f), "{f} missing from {form}");
    }
    let post = |fields: &Value, size: u64| {
        s3client(
            "post",
            json!({"url": form["url"], "fields": fields, "size": size}),
        )
    };
    // Larger or smaller than declared: refused by RGW.
    for size in [2001, 1999] {
        let r = post(&form["fields"], size).await;
        assert_eq!(r["status"], 400, "{size}: {r}");
        assert!(r["body"].as_str().unwrap().contains("Entity"), "{r}");
    }
    // Another key than the one signed: refused.
    let mut forged = form["fields"].clone();
    forged["key"] = json!("uploads/alice/elsewhere/clip.webm");
    let r = post(&forged, 2000).await;
    assert_eq!(r["status"], 403, "{r}");
    // Exactly the declared size: stored, announced and delivered.
    let r = post(&form["fields"], 2000).await;
    assert_eq!(r["ok"], true, "{r}");
    let id = declared["upload_id"].as_str().unwrap();
    let done = app
        .wait_upload("alice", id, |u| u["state"] == "triggered")
        .await;
    assert_eq!(done["size"], 2000);
    assert!(app.hooks.wait_for(1, Duration::from_secs(10)).await);
    assert_eq!(app.hooks.deliveries()[0].1["upload_id"], id);

    // Undeclared size: capped by storage.max_upload_bytes.
    let open = request_upload(
        &app,
        "alice",
        json!({"file_name": "big.webm", "mode": "post_policy"}),
    )
    .await;
    let form = &open["post_policy"];
    let r = s3client(
        "post",
        json!({"url": form["url"], "fields": form["fields"], "size": 64 * 1024 + 1}),
    )
    .await;
    assert_eq!(r["status"], 400, "{r}");
    let r = s3client(
        "post",
        json!({"url": form["url"], "fields": form["fields"], "size": 64 * 1024}),
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    app.wait_upload("alice", open["upload_id"].as_str().unwrap(), |u| {
        u["state"] == "triggered"
    })
    .await;
    // Declaring more than the maximum is refused before anything is signed.
    let r = app
        .create_upload(
            &app.token("alice"),
            json!({"file_name": "huge.webm", "size": 64 * 1024 + 1, "mode": "post_policy"}),
        )
        .await;
    assert_eq!(r.status(), 422);
}

/// RGW announces what boto3 uploads; mediagate reads each object back with its service keys
/// before anything is triggered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Ceph RGW: scripts/test.sh runs it"]
async fn rgw_objects_are_verified_in_the_store_before_anything_is_triggered() {
    let bucket = bucket();
    let app = spawn(&bucket, |_| {}).await;
    setup(&app, &bucket, &[], &[&bucket]).await;
    webhook_workflow(&app, &bucket, "uploads/").await;

    // Real headers of the common containers pass, with the store's size and ETag.
    for (file, content) in [
        ("a.mp4", "mp4"),
        ("b.mp3", "mp3"),
        ("c.wav", "wav"),
        ("d.mkv", "mkv"),
    ] {
        let upload = request_upload(&app, "alice", json!({"file_name": file})).await;
        let key = upload["object_key"].as_str().unwrap();
        let put = s3client(
            "put",
            args(&upload, key, json!({"size": 5000, "content": content})),
        )
        .await;
        assert_eq!(put["ok"], true, "{put}");
        // A forged notification for the same object claims another size: the store wins,
        // whichever of the two arrives first.
        app.s3_event_only(&json!({"Records": [{"eventName": "s3:ObjectCreated:Put", "eventSource": "ceph:s3",
            "s3": {"bucket": {"name": bucket}, "object": {"key": key, "eTag": "forged", "size": 1}}}]}))
            .await;
        let id = upload["upload_id"].as_str().unwrap();
        let done = app
            .wait_upload("alice", id, |u| u["state"] == "triggered")
            .await;
        assert_eq!(done["size"], 5000, "{file}: {done}");
    }
    app.drain().await;
    let deliveries = app.hooks.deliveries();
    assert_eq!(deliveries.len(), 4);
    for (_, d) in &deliveries {
        assert_eq!(d["size"], 5000);
        assert_ne!(d["etag"], "FORGED");
        assert!(d["container"].is_string(), "{d}");
    }

    // A ZIP named .mp4 is rejected; the workflow hears of it, nothing is processed.
    let upload = request_upload(&app, "alice", json!({"file_name": "e.mp4"})).await;
    let key = upload["object_key"].as_str().unwrap();
    let put = s3client(
        "put",
        args(&upload, key, json!({"size": 5000, "content": "zip"})),
    )
    .await;
    assert_eq!(put["ok"], true);
    let id = upload["upload_id"].as_str().unwrap();
    let rejected = app
        .wait_upload("alice", id, |u| u["state"] == "rejected")
        .await;
    assert_eq!(rejected["state_reason"], "not_media");

    // Notifications before the object exists (two of them): no verdict, nobody is told.
    let early = request_upload(&app, "alice", json!({"file_name": "f.mp4"})).await;
    let (id, key) = (
        early["upload_id"].as_str().unwrap(),
        early["object_key"].as_str().unwrap(),
    );
    for etag in ["e1", "e2"] {
        let r = app.s3_event_only(&json!({"Records": [{"eventName": "s3:ObjectCreated:Put", "eventSource": "ceph:s3",
            "s3": {"bucket": {"name": bucket}, "object": {"key": key, "eTag": etag, "size": 5000}}}]}))
            .await;
        assert_eq!(r.status(), 200);
        app.drain().await;
    }
    let upload: Value = app
        .get(&app.token("alice"), &format!("/v1/uploads/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(upload["state"], "issued", "{upload}");
    let about_it = |app: &TestApp| {
        app.hooks
            .deliveries()
            .into_iter()
            .filter(|(_, d)| d["object_key"] == key || d["source_key"] == key)
            .map(|(_, d)| d)
            .collect::<Vec<_>>()
    };
    assert!(about_it(&app).is_empty(), "no webhook of any type");
    // The real upload that follows: announced by RGW, processed once with the store's size.
    let put = s3client("put", args(&early, key, json!({"size": 4321}))).await;
    assert_eq!(put["ok"], true, "{put}");
    let done = app
        .wait_upload("alice", id, |u| u["state"] == "triggered")
        .await;
    assert_eq!(done["size"], 4321);
    app.drain().await;
    let delivered = about_it(&app);
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!(delivered[0]["type"], "upload.completed");
    assert_eq!(delivered[0]["size"], 4321);
    let notices = app
        .hooks
        .deliveries()
        .into_iter()
        .filter(|(_, d)| d["type"] == "upload.rejected")
        .count();
    assert_eq!(notices, 1, "only the ZIP's");
}

/// With no notifications at all, reconciliation finds RGW objects by listing the prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Ceph RGW: scripts/test.sh runs it"]
async fn rgw_objects_nobody_announced_are_found_by_listing() {
    let bucket = bucket();
    let app = spawn(&bucket, |c| {
        c.reconcile.after_seconds = 0;
        c.reconcile.list_unannounced = true;
    })
    .await;
    setup(&app, &bucket, &[], &[]).await;
    webhook_workflow(&app, &bucket, "uploads/").await;
    let r = s3client(
        "put",
        json!({"endpoint": rgw_url(), "creds": admin(), "bucket": bucket,
            "key": "uploads/carol/x/quiet.mp4", "size": 7000}),
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    let sweep = app.app.reconcile().await.unwrap();
    assert_eq!(sweep.listed, 1, "{sweep:?}");
    app.drain().await;
    let deliveries = app.hooks.deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].1["source_key"], "uploads/carol/x/quiet.mp4");
    assert_eq!(deliveries[0].1["size"], 7000);
    assert_eq!(app.app.reconcile().await.unwrap().listed, 0);
}

/// What a browser does with `mode: "presigned"`: every request to RGW is signed by
/// mediagate (a single PUT, and a multipart upload: create, two parts, list, complete; and an
/// aborted one), the client never holds a key, and RGW enforces each signature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Ceph RGW: scripts/test.sh runs it"]
async fn rgw_takes_uploads_made_only_of_server_signed_requests() {
    let bucket = bucket();
    let app = spawn(&bucket, |_| {}).await;
    setup(&app, &bucket, &[], &[&bucket]).await;
    webhook_workflow(&app, &bucket, "uploads/").await;
    let signed = |id: String, body: Value| {
        let app = &app;
        async move { sign_for(app, &id, body).await }
    };
    let send = |method: reqwest::Method, signed: Value, body: Vec<u8>| async move {
        send_signed(method, &signed, &[], body).await
    };
    let media = |size: usize| {
        let mut bytes = crate::support::oss_fake::mp4_header();
        bytes.resize(size, 7);
        bytes
    };
    let presigned =
        |file: &str| json!({"file_name": file, "mode": "presigned", "content_type": "video/mp4"});

    // One PUT.
    let one = request_upload(&app, "alice", presigned("one.mp4")).await;
    assert!(one.get("credentials").is_none());
    let (id, key) = (
        one["upload_id"].as_str().unwrap().to_owned(),
        one["object_key"].clone(),
    );
    let put = signed(
        id.clone(),
        json!({"method": "PUT", "key": key, "contentType": "video/mp4"}),
    )
    .await;
    let r = send(reqwest::Method::PUT, put, media(6000)).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let done = app
        .wait_upload("alice", &id, |u| u["state"] == "triggered")
        .await;
    assert_eq!(done["size"], 6000);

    // Multipart: 5 MiB + 1 KiB.
    let multi = request_upload(&app, "alice", presigned("multi.mp4")).await;
    let (id, key) = (
        multi["upload_id"].as_str().unwrap().to_owned(),
        multi["object_key"].clone(),
    );
    let create = signed(id.clone(), json!({"method": "POST", "key": key})).await;
    let r = send(reqwest::Method::POST, create, Vec::new()).await;
    assert_eq!(r.status(), 200);
    let xml = r.text().await.unwrap();
    let upload_id = xml
        .split("<UploadId>")
        .nth(1)
        .and_then(|rest| rest.split("</UploadId>").next())
        .unwrap()
        .to_owned();
    let mut etags = Vec::new();
    for (n, part) in [(1, media(5 * 1024 * 1024)), (2, vec![9u8; 1024])] {
        let s = signed(
            id.clone(),
            json!({"method": "PUT", "key": key, "uploadId": upload_id, "partNumber": n}),
        )
        .await;
        let r = send(reqwest::Method::PUT, s, part).await;
        assert_eq!(r.status(), 200);
        etags.push(r.headers()["etag"].to_str().unwrap().to_owned());
    }
    let list = signed(
        id.clone(),
        json!({"method": "GET", "key": key, "uploadId": upload_id}),
    )
    .await;
    let listed = send(reqwest::Method::GET, list, Vec::new())
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(listed.matches("<PartNumber>").count(), 2, "{listed}");
    let complete = signed(
        id.clone(),
        json!({"method": "POST", "key": key, "uploadId": upload_id}),
    )
    .await;
    let parts: String = etags
        .iter()
        .enumerate()
        .map(|(i, e)| {
            format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{e}</ETag></Part>",
                i + 1
            )
        })
        .collect();
    let body = format!("<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>");
    let r = send(reqwest::Method::POST, complete, body.into_bytes()).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let done = app
        .wait_upload("alice", &id, |u| u["state"] == "triggered")
        .await;
    assert_eq!(done["size"], 5 * 1024 * 1024 + 1024);

    // An aborted multipart upload leaves nothing.
    let dropped = request_upload(&app, "alice", presigned("dropped.mp4")).await;
    let (id, key) = (
        dropped["upload_id"].as_str().unwrap().to_owned(),
        dropped["object_key"].clone(),
    );
    let create = signed(id.clone(), json!({"method": "POST", "key": key})).await;
    let xml = send(reqwest::Method::POST, create, Vec::new())
        .await
        .text()
        .await
        .unwrap();
    let upload_id = xml
        .split("<UploadId>")
        .nth(1)
        .unwrap()
        .split("</UploadId>")
        .next()
        .unwrap();
    let abort = signed(
        id.clone(),
        json!({"method": "DELETE", "key": key, "uploadId": upload_id}),
    )
    .await;
    assert_eq!(
        send(reqwest::Method::DELETE, abort, Vec::new())
            .await
            .status(),
        204
    );

    // A signed URL is for its one request: another key under it is refused by RGW.
    let other = request_upload(&app, "alice", presigned("other.mp4")).await;
    let put = signed(
        other["upload_id"].as_str().unwrap().to_owned(),
        json!({"method": "PUT", "key": other["object_key"]}),
    )
    .await;
    let mut forged = put.clone();
    forged["url"] = json!(
        put["url"]
            .as_str()
            .unwrap()
            .replace("other.mp4", "forged.mp4")
    );
    assert_eq!(
        send(reqwest::Method::PUT, forged, media(100))
            .await
            .status(),
        403
    );
    app.drain().await;
    assert_eq!(app.hooks.count(), 2);
}

/// `mediagate bucket setup` on RGW: CORS for the app's origins with `ETag` exposed, and the
/// multipart lifecycle rule; other rules kept; a second run changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Ceph RGW: scripts/test.sh runs it"]
async fn bucket_setup_prepares_rgw_for_browser_uploads() {
    use mediagate::storage::setup::setup as bucket_setup;
    let bucket = bucket();
    let app = spawn(&bucket, |c| {
        c.server.cors_origins = vec!["https://app.example".into()];
    })
    .await;
    setup(&app, &bucket, &[], &[]).await;
    let api = || bucket_api(&app);
    let origins = app.app.config.server.cors_origins.clone();
    // Another application's CORS rule is already there.
    api()
        .put(
            "cors",
            "<CORSConfiguration><CORSRule><AllowedOrigin>https://other.example</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>",
        )
        .await
        .unwrap();
    let dry = bucket_setup(
        &api(),
        Provider::S3,
        &origins,
        ("uploads/", Some("verified/")),
        2,
        true,
    )
    .await
    .unwrap();
    assert!(dry.iter().all(|c| c.set.is_some()), "{dry:?}");
    assert!(
        api().get("lifecycle").await.unwrap().is_none(),
        "a dry run changes nothing"
    );

    let done = bucket_setup(
        &api(),
        Provider::S3,
        &origins,
        ("uploads/", Some("verified/")),
        2,
        false,
    )
    .await
    .unwrap();
    assert!(done.iter().all(|c| c.set.is_some()));
    let cors = api().get("cors").await.unwrap().unwrap();
    assert!(
        cors.contains("https://other.example") && cors.contains("https://app.example"),
        "{cors}"
    );
    let lifecycle = api().get("lifecycle").await.unwrap().unwrap();
    assert!(
        lifecycle.contains("mediagate-abort-incomplete-multipart")
            && lifecycle.contains("mediagate-abort-incomplete-copies"),
        "{lifecycle}"
    );
    // What a browser's preflight gets from RGW now.
    let preflight = reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/{bucket}/uploads/alice/x/a.mp4", rgw_url()),
        )
        .header("origin", "https://app.example")
        .header("access-control-request-method", "PUT")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 200);
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    assert!(
        h["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .to_lowercase()
            .contains("etag")
    );
    // Run again: nothing to change.
    let again = bucket_setup(
        &api(),
        Provider::S3,
        &origins,
        ("uploads/", Some("verified/")),
        2,
        false,
    )
    .await
    .unwrap();
    assert!(again.iter().all(|c| c.set.is_none()), "{again:?}");
}

/// The bucket's configuration API with the app's service keys, as `bucket setup` uses it.
pub(crate) fn bucket_api(app: &TestApp) -> mediagate::storage::setup::BucketApi {
    use mediagate::storage::reader::ReaderSettings;
    let config = &app.app.config;
    mediagate::storage::setup::BucketApi::new(
        ReaderSettings::new(
            &config.storage,
            (&config.sts.access_key_id, &config.sts.access_key_secret),
        ),
        reqwest::Client::new(),
    )
}

/// Asks mediagate to sign one request for alice's upload `id`; the answer.
async fn sign_for(app: &TestApp, id: &str, body: Value) -> Value {
    let r = app
        .client
        .post(app.url(&format!("/v1/uploads/{id}/sign")))
        .bearer_auth(app.token("alice"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{body}");
    r.json().await.unwrap()
}

/// Sends a signed request with the headers mediagate said to send, changed by `extra`
/// (a header there replaces the signed one of that name).
async fn send_signed(
    method: reqwest::Method,
    signed: &Value,
    extra: &[(&str, &str)],
    body: Vec<u8>,
) -> reqwest::Response {
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in signed["headers"].as_object().unwrap() {
        headers.insert(
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.as_str().unwrap().parse().unwrap(),
        );
    }
    for (name, value) in extra {
        headers.insert(
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    reqwest::Client::new()
        .request(method, signed["url"].as_str().unwrap())
        .headers(headers)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// The object's bytes as anyone on the internet would get them: no credentials.
async fn anonymous_get(bucket: &str, key: &str) -> reqwest::StatusCode {
    reqwest::get(format!("{}/{bucket}/{key}", rgw_url()))
        .await
        .unwrap()
        .status()
}

/// RGW acts on `x-amz-*` headers a presigned URL does not sign: a copy source would put
/// another user's object under alice's key. Presigned requests are signed with the upload's
/// session credentials (no reads granted), whatever signs forms, so the copy is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Ceph RGW: scripts/test.sh runs it"]
async fn a_signed_put_never_copies_another_users_object() {
    let bucket = bucket();
    let app = spawn(&bucket, |c| c.storage.post_signing = PostSigning::Service).await;
    setup(&app, &bucket, &[], &[&bucket]).await;
    webhook_workflow(&app, &bucket, "uploads/").await;
    let bobs = "uploads/bob/0190c0de/b.mp4";
    let r = s3client(
        "put",
        json!({"endpoint": rgw_url(), "creds": admin(), "bucket": bucket, "key": bobs, "size": 4096}),
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    let upload = request_upload(
        &app,
        "alice",
        json!({"file_name": "a.mp4", "mode": "presigned", "content_type": "video/mp4"}),
    )
    .await;
    let (id, key) = (
        upload["upload_id"].as_str().unwrap(),
        upload["object_key"].as_str().unwrap(),
    );
    let copy_source = format!("{bucket}/{bobs}");
    let put = sign_for(
        &app,
        id,
        json!({"method": "PUT", "key": key, "contentType": "video/mp4"}),
    )
    .await;
    assert!(
        !put["url"].as_str().unwrap().contains(ADMIN_KEY),
        "signed with session credentials, not the service keys: {put}"
    );
    let r = send_signed(
        reqwest::Method::PUT,
        &put,
        &[("x-amz-copy-source", &copy_source)],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status(), 403, "{}", r.text().await.unwrap());
    // The same through a part of a multipart upload (UploadPartCopy).
    let create = sign_for(&app, id, json!({"method": "POST", "key": key})).await;
    let xml = send_signed(reqwest::Method::POST, &create, &[], Vec::new())
        .await
        .text()
        .await
        .unwrap();
    let multipart = xml
        .split("<UploadId>")
        .nth(1)
        .and_then(|rest| rest.split("</UploadId>").next())
        .unwrap_or_else(|| panic!("{xml}"))
        .to_owned();
    let part = sign_for(
        &app,
        id,
        json!({"method": "PUT", "key": key, "uploadId": multipart, "partNumber": 1}),
    )
    .await;
    let r = send_signed(
        reqwest::Method::PUT,
        &part,
        &[("x-amz-copy-source", &copy_source)],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status(), 403, "{}", r.text().await.unwrap());
    let head = s3client(
        "head",
        json!({"endpoint": rgw_url(), "creds": admin(), "bucket": bucket, "key": key}),
    )
    .await;
    assert_eq!(head["status"], 404, "alice's key holds nothing: {head}");
    app.drain().await;
    // bob's own object was announced and delivered; nothing under alice's key.
    assert!(
        app.hooks
            .deliveries()
            .iter()
            .all(|(_, d)| d["source_key"] == bobs),
        "{:?}",
        app.hooks.deliveries()
    );
}

/// RGW acts on an unsigned `x-amz-acl: public-read` (or a public grant) sent with a signed
/// PUT, and would serve the object to anyone, an HTML page included. `bucket setup` makes
/// public ACLs grant nothing (those set before as well), session uploads still go through,
/// and an object the store keeps as a page is never processed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Ceph RGW: scripts/test.sh runs it"]
async fn uploaders_cannot_publish_their_objects() {
    use mediagate::storage::setup::setup as bucket_setup;
    let bucket = bucket();
    let app = spawn(&bucket, |_| {}).await;
    setup(&app, &bucket, &[], &[&bucket]).await;
    webhook_workflow(&app, &bucket, "uploads/").await;
    // An object made public before the bucket was set up (here by the owner's keys).
    let published = "uploads/bob/0190c0de/old.mp4";
    let put_public = || {
        s3client(
            "put",
            json!({"endpoint": rgw_url(), "creds": admin(), "bucket": bucket, "key": published,
                   "size": 2048, "acl": "public-read"}),
        )
    };
    assert_eq!(put_public().await["ok"], true);
    assert_eq!(anonymous_get(&bucket, published).await, 200);
    let changes = bucket_setup(
        &bucket_api(&app),
        Provider::S3,
        &[],
        ("uploads/", None),
        2,
        false,
    )
    .await
    .unwrap();
    assert!(
        changes
            .iter()
            .any(|c| c.what == "publicAccessBlock" && c.set.is_some()),
        "{changes:?}"
    );
    assert_eq!(anonymous_get(&bucket, published).await, 403);
    // A new public ACL grants nothing either, even with the keys that may set one.
    assert_eq!(put_public().await["ok"], true);
    assert_eq!(anonymous_get(&bucket, published).await, 403);

    let media = || {
        let mut bytes = crate::support::oss_fake::mp4_header();
        bytes.resize(4096, 7);
        bytes
    };
    let presigned = |file: &str| json!({"file_name": file, "mode": "presigned"});
    for (file, change) in [
        ("a.mp4", ("x-amz-acl", "public-read")),
        (
            "b.mp4",
            (
                "x-amz-grant-read",
                "uri=\"http://acs.amazonaws.com/groups/global/AllUsers\"",
            ),
        ),
    ] {
        let upload = request_upload(&app, "alice", presigned(file)).await;
        let (id, key) = (
            upload["upload_id"].as_str().unwrap(),
            upload["object_key"].as_str().unwrap(),
        );
        let put = sign_for(&app, id, json!({"method": "PUT", "key": key})).await;
        let r = send_signed(reqwest::Method::PUT, &put, &[change], media()).await;
        assert_eq!(r.status(), 200, "{change:?}: {}", r.text().await.unwrap());
        assert_eq!(anonymous_get(&bucket, key).await, 403, "{change:?}");
        // A grant replaces the object's whole ACL, so the service keys may no longer read it:
        // the upload fails rather than trigger anything, which harms only its own uploader.
        let done = app
            .wait_upload("alice", id, |u| {
                u["state"] == "triggered" || u["state"] == "failed"
            })
            .await;
        if change.0 == "x-amz-acl" {
            assert_eq!(done["state"], "triggered", "{done}");
        }
    }
    // A page under a media name, stored as one: never handed to a processor.
    let upload = request_upload(&app, "alice", presigned("c.mp4")).await;
    let (id, key) = (
        upload["upload_id"].as_str().unwrap(),
        upload["object_key"].as_str().unwrap(),
    );
    let put = sign_for(&app, id, json!({"method": "PUT", "key": key})).await;
    let page = b"<html><script>alert(1)</script></html>".to_vec();
    let r = send_signed(
        reqwest::Method::PUT,
        &put,
        &[("content-type", "text/html")],
        page,
    )
    .await;
    assert_eq!(r.status(), 200);
    let done = app
        .wait_upload("alice", id, |u| u["state"] == "rejected")
        .await;
    assert_eq!(done["state_reason"], "not_media", "{done}");
    assert_eq!(anonymous_get(&bucket, key).await, 403);
    app.drain().await;
    assert!(
        app.hooks
            .deliveries()
            .iter()
            .all(|(_, d)| d["source_key"] != key || d["type"] != "upload.completed"),
        "{:?}",
        app.hooks.deliveries()
    );
}

/// Makes sure ffmpeg and the Python environment of `scripts/processor.sh` are there (the
/// first time, this installs them).
pub(crate) async fn install_processor() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/processor.sh");
    let out = tokio::process::Command::new(script)
        .arg("install")
        .output()
        .await
        .expect("run scripts/processor.sh install");
    assert!(
        out.status.success(),
        "scripts/processor.sh install: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The reference processor (`scripts/processor.sh`) on a free loopback port, reading and
/// writing RGW with the admin keys. Stopped when dropped; its log is shown when the test
/// failed.
pub(crate) struct Processor {
    /// Its webhook URL, for a workflow's `webhook_url`.
    pub(crate) url: String,
    child: std::process::Child,
    log: tempfile::NamedTempFile,
}

impl Processor {
    pub(crate) async fn start(secret: &str) -> Processor {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/processor.sh");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = std::process::Command::new(script)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--secret", secret])
            .args(["--endpoint", &rgw_url(), "--region", REGION])
            .args(["--access-key", ADMIN_KEY, "--secret-key", ADMIN_SECRET])
            .stdin(std::process::Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("start scripts/processor.sh");
        let processor = Processor {
            url: format!("http://127.0.0.1:{port}/hooks"),
            child,
            log,
        };
        let health = format!("http://127.0.0.1:{port}/");
        for _ in 0..300 {
            if reqwest::get(&health).await.is_ok_and(|r| r.status() == 200) {
                return processor;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the processor did not start listening");
    }
}

impl Drop for Processor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.log.path()).unwrap_or_default();
            eprintln!("--- the processor's log ---\n{log}");
        }
    }
}

/// Runs `program` with `args`; its stdout. Fails the test when it fails.
async fn run_tool(program: &str, args: &[&str]) -> String {
    let out = tokio::process::Command::new(program)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A real 2-second 320x240 clip (H.264 video, AAC audio) made with ffmpeg, at `path`.
pub(crate) async fn make_clip(path: &std::path::Path) {
    #[rustfmt::skip]
    let args = [
        "-nostdin", "-v", "error", "-y",
        "-f", "lavfi", "-i", "testsrc=duration=2:size=320x240:rate=25",
        "-f", "lavfi", "-i", "sine=duration=2",
        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
    ];
    let mut all: Vec<&str> = args.to_vec();
    all.push(path.to_str().unwrap());
    run_tool("ffmpeg", &all).await;
}

/// A real clip, uploaded to RGW with the vended credentials, goes to the reference processor
/// (a webhook workflow that follows its outcome); the processor reads it from RGW, writes a
/// rendition and a cover back, and reports them, and the upload ends `ready` with both, their
/// signed URLs serving the very bytes the processor made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Ceph RGW and ffmpeg: scripts/test.sh runs it"]
async fn the_reference_processor_makes_a_rendition_and_a_cover_that_end_the_upload_ready() {
    install_processor().await;
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    make_clip(&clip).await;
    let bucket = bucket();
    let app = spawn(&bucket, |_| {}).await;
    setup(&app, &bucket, &[], &[&bucket]).await;
    let processor = Processor::start(WEBHOOK_SECRET).await;
    let workflow = json!({"name": format!("renditions-{bucket}"), "state": "Active",
        "bucket": bucket, "prefix": "uploads/", "sink": "webhook",
        "webhook_url": processor.url, "webhook_secret": WEBHOOK_SECRET,
        "track_outcome": true, "output_prefix": "outputs/"});
    let r = app
        .admin(reqwest::Method::POST, "/v1/admin/workflows", Some(workflow))
        .await;
    assert_eq!(r.status(), 201);

    let size = std::fs::metadata(&clip).unwrap().len();
    let upload = request_upload(
        &app,
        "alice",
        json!({"file_name": "clip.mp4", "size": size, "content_type": "video/mp4"}),
    )
    .await;
    let id = upload["upload_id"].as_str().unwrap().to_owned();
    let key = upload["object_key"].as_str().unwrap().to_owned();
    let put = s3client("put", args(&upload, &key, json!({"file": clip}))).await;
    assert_eq!(put["ok"], true, "{put}");

    // ffmpeg runs in real time, on a machine that may be running other tests: more time
    // than `wait_upload` gives.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let done = loop {
        let upload = app.upload("alice", &id).await;
        let state = upload["state"].as_str().unwrap_or_default().to_owned();
        if !["issued", "uploaded", "processing"].contains(&state.as_str())
            || std::time::Instant::now() > deadline
        {
            break upload;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["state"], "ready", "{done}");
    assert_eq!(done["triggers"][0]["processing"], "succeeded", "{done}");
    // It said it was running before it said it had succeeded.
    let admin = app.admin_upload(&id).await;
    let reported: Vec<_> = admin["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(reported, ["running", "succeeded"], "{admin}");

    let outputs = done["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 2, "{done}");
    let of_kind = |kind: &str| {
        outputs
            .iter()
            .find(|o| o["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} output: {done}"))
    };
    let (video, image) = (of_kind("video"), of_kind("image"));
    assert_eq!(
        (&video["format"], &video["width"], &video["height"]),
        (&json!("mp4"), &json!(320), &json!(240)),
        "{video}"
    );
    let duration = video["duration_ms"].as_u64().unwrap();
    assert!((1900..=2200).contains(&duration), "{video}");
    assert_eq!(
        (&image["format"], &image["height"]),
        (&json!("jpg"), &json!(240)),
        "{image}"
    );
    // Each signed URL serves the object the processor wrote, of the size the store has.
    let fetch = async |output: &Value| {
        let r = reqwest::get(output["url"].as_str().unwrap()).await.unwrap();
        assert_eq!(r.status(), 200, "{output}");
        let bytes = r.bytes().await.unwrap().to_vec();
        assert_eq!(
            Some(bytes.len() as u64),
            output["size"].as_u64(),
            "{output}"
        );
        bytes
    };
    let mp4 = fetch(video).await;
    assert_eq!(&mp4[4..8], b"ftyp", "an MP4 starts with its ftyp box");
    let find = |name: &[u8]| mp4.windows(4).position(|w| w == name).unwrap();
    assert!(find(b"moov") < find(b"mdat"), "faststart: the index first");
    let jpeg = fetch(image).await;
    assert_eq!(&jpeg[..3], [0xFF, 0xD8, 0xFF], "a JPEG starts with SOI");
    // What a browser needs to play it: H.264 in 4:2:0 with AAC.
    let rendition = dir.path().join("rendition.mp4");
    std::fs::write(&rendition, &mp4).unwrap();
    let streams = run_tool(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,pix_fmt",
            "-of",
            "csv=p=0",
            rendition.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(streams.trim(), "h264,yuv420p\naac", "{streams}");
    drop(processor);
}

/// The MD5 of `bytes`, in hex: what `s3client get` reports for an object.
fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(bytes))
}

/// mediagate on RGW whose webhook receiver (the processor) takes 5 s to accept a delivery,
/// so that the uploader has time to write again between verification and the processor's
/// read. With `protect` false, verification keeps no copy.
async fn slow_processor(bucket: &str, protect: bool) -> TestApp {
    let app = spawn(bucket, |c| {
        c.verification.protected_copy = protect;
        c.processing.webhook_timeout_ms = 20_000;
        c.processing.lease_seconds = 30;
    })
    .await;
    setup(&app, bucket, &[], &[bucket]).await;
    webhook_workflow(&app, bucket, "uploads/").await;
    app.hooks.set_latency(Duration::from_secs(5));
    app
}

/// Waits until `n` deliveries reached the receiver's door (each after its verification).
async fn delivery_started(app: &TestApp, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while app.hooks.calls() < n {
        assert!(std::time::Instant::now() < deadline, "no delivery started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The delivery the processor takes for `key`, once it has taken it, and the bytes it then
/// reads at the payload's `bucket`/`object_key` with its own (the bucket owner's) keys.
async fn what_the_processor_reads(app: &TestApp, key: &str) -> (Value, Value) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let delivery = loop {
        let found = app.hooks.deliveries().into_iter().find(|(_, d)| {
            d["type"] == "upload.completed" && (d["source_key"] == key || d["object_key"] == key)
        });
        if let Some((_, d)) = found {
            break d;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no delivery for {key}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let read = s3client(
        "get",
        json!({"endpoint": rgw_url(), "creds": admin(), "bucket": delivery["bucket"],
               "key": delivery["object_key"]}),
    )
    .await;
    assert_eq!(read["ok"], true, "{read}");
    (delivery, read)
}

/// What was verified is what gets processed, on a store with no conditional-write policies:
/// a real clip is uploaded with vended STS credentials, verified, and overwritten with the
/// same credentials while the delivery is on its way to the processor. The processor reads
/// the key its payload names and gets the verified clip, never the new bytes. Without
/// protected copies the same race hands it the new bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Ceph RGW and ffmpeg: scripts/test.sh runs it"]
async fn an_overwrite_with_the_same_credentials_never_reaches_the_processor() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    make_clip(&clip).await;
    let clip_md5 = md5_hex(&std::fs::read(&clip).unwrap());
    for protect in [true, false] {
        let bucket = bucket();
        let app = slow_processor(&bucket, protect).await;
        let upload = request_upload(&app, "alice", json!({"file_name": "clip.mp4"})).await;
        let key = upload["object_key"].as_str().unwrap().to_owned();
        let put = s3client("put", args(&upload, &key, json!({"file": clip}))).await;
        assert_eq!(put["ok"], true, "{put}");
        delivery_started(&app, 1).await;
        // Verified and on its way: the uploader writes other bytes with the same credentials.
        let over = s3client(
            "put",
            args(&upload, &key, json!({"size": 50_000, "content": "zip"})),
        )
        .await;
        assert_eq!(over["ok"], true, "{over}");
        let (delivery, read) = what_the_processor_reads(&app, &key).await;
        if protect {
            let copy = delivery["object_key"].as_str().unwrap();
            assert!(copy.starts_with("verified/alice/"), "{delivery}");
            assert_eq!(delivery["source_key"], key.as_str());
            assert_eq!(read["md5"], clip_md5.as_str(), "the verified clip");
            assert_eq!(
                delivery["etag"],
                read["etag"].as_str().unwrap().to_uppercase()
            );
            // The uploaded object itself holds the overwrite.
            let original = s3client(
                "get",
                json!({"endpoint": rgw_url(), "creds": admin(), "bucket": bucket, "key": key}),
            )
            .await;
            assert_eq!(original["etag"], over["etag"], "{original}");
            assert_ne!(original["md5"], clip_md5.as_str());
        } else {
            assert_eq!(delivery["object_key"], key.as_str());
            assert_eq!(
                read["etag"], over["etag"],
                "unprotected, the overwrite got through"
            );
            assert_ne!(read["md5"], clip_md5.as_str());
        }
        app.drain().await;
        assert_eq!(
            app.hooks.count(),
            1,
            "the overwrite triggers nothing itself"
        );
    }
}

/// The same race through a presigned PUT URL the browser obtained before its upload
/// completed (`mode: "presigned"`): still valid afterwards, it overwrites the object, and the
/// processor still reads the verified clip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Ceph RGW and ffmpeg: scripts/test.sh runs it"]
async fn an_overwrite_through_an_earlier_presigned_url_never_reaches_the_processor() {
    let dir = tempfile::tempdir().unwrap();
    let clip_path = dir.path().join("clip.mp4");
    make_clip(&clip_path).await;
    let clip = std::fs::read(&clip_path).unwrap();
    let bucket = bucket();
    let app = slow_processor(&bucket, true).await;
    let upload = request_upload(
        &app,
        "alice",
        json!({"file_name": "clip.mp4", "mode": "presigned", "content_type": "video/mp4"}),
    )
    .await;
    let (id, key) = (
        upload["upload_id"].as_str().unwrap(),
        upload["object_key"].as_str().unwrap(),
    );
    let put = json!({"method": "PUT", "key": key, "contentType": "video/mp4"});
    let first = sign_for(&app, id, put.clone()).await;
    let second = sign_for(&app, id, put).await;
    let r = send_signed(reqwest::Method::PUT, &first, &[], clip.clone()).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    delivery_started(&app, 1).await;
    let mut other = b"PK\x03\x04".to_vec();
    other.resize(40_000, 7);
    let r = send_signed(reqwest::Method::PUT, &second, &[], other.clone()).await;
    assert_eq!(
        r.status(),
        200,
        "the earlier URL still writes: {}",
        r.text().await.unwrap()
    );
    let (delivery, read) = what_the_processor_reads(&app, key).await;
    assert_eq!(delivery["source_key"], key);
    assert_eq!(read["md5"], md5_hex(&clip), "the verified clip");
    let original = s3client(
        "get",
        json!({"endpoint": rgw_url(), "creds": admin(), "bucket": bucket, "key": key}),
    )
    .await;
    assert_eq!(original["md5"], md5_hex(&other), "{original}");
    app.drain().await;
    assert_eq!(app.hooks.count(), 1);
}

/// The copies live where app credentials can do nothing: vended STS credentials are refused
/// (AccessDenied) a PUT over a copy or a new object under `verified/`, a multipart upload
/// there, a read of a copy, and a copy from one into their own prefix; mediagate signs no
/// request for a key there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Ceph RGW: scripts/test.sh runs it"]
async fn app_credentials_cannot_write_or_read_the_protected_copies() {
    let bucket = bucket();
    let app = spawn(&bucket, |_| {}).await;
    setup(&app, &bucket, &[], &[&bucket]).await;
    webhook_workflow(&app, &bucket, "uploads/").await;
    let upload = request_upload(&app, "alice", json!({"file_name": "a b+視.mp4"})).await;
    let key = upload["object_key"].as_str().unwrap().to_owned();
    let put = s3client("put", args(&upload, &key, json!({"size": 8000}))).await;
    assert_eq!(put["ok"], true, "{put}");
    assert!(app.hooks.wait_for(1, Duration::from_secs(20)).await);
    let copy = app.hooks.deliveries()[0].1["object_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(copy.starts_with("verified/alice/"), "{copy}");
    let denied = |r: &Value| {
        assert_eq!(
            (r["ok"].clone(), r["code"].clone()),
            (json!(false), json!("AccessDenied")),
            "{r}"
        )
    };
    // Over the copy, beside it, a multipart upload there, and a read of it.
    denied(&s3client("put", args(&upload, &copy, json!({"size": 100}))).await);
    denied(&s3client("put", args(&upload, "verified/alice/new.mp4", json!({}))).await);
    let multipart = args(&upload, &copy, json!({"size_mib": 5, "part_mib": 5}));
    denied(&s3client("multipart", multipart).await);
    denied(&s3client("get", args(&upload, &copy, json!({}))).await);
    // The copy holds what was verified.
    let read = s3client(
        "get",
        json!({"endpoint": rgw_url(), "creds": admin(), "bucket": bucket, "key": copy}),
    )
    .await;
    assert_eq!(read["etag"], put["etag"], "{read}");
    // A presigned upload: mediagate signs nothing for a key under `verified/`, and a signed
    // PUT of the upload's own key cannot copy a protected copy into it.
    let browser = request_upload(
        &app,
        "alice",
        json!({"file_name": "b.mp4", "mode": "presigned"}),
    )
    .await;
    let id = browser["upload_id"].as_str().unwrap();
    let r = app
        .client
        .post(app.url(&format!("/v1/uploads/{id}/sign")))
        .bearer_auth(app.token("alice"))
        .json(&json!({"method": "PUT", "key": copy}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    let own = browser["object_key"].as_str().unwrap();
    let signed = sign_for(&app, id, json!({"method": "PUT", "key": own})).await;
    let source = format!("{bucket}/{copy}");
    let r = send_signed(
        reqwest::Method::PUT,
        &signed,
        &[("x-amz-copy-source", &source)],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status(), 403, "{}", r.text().await.unwrap());
}

/// An object larger than `verification.copy_part_bytes` is copied in parts (UploadPartCopy)
/// on RGW, and the copy is the whole object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Ceph RGW: scripts/test.sh runs it"]
async fn rgw_copies_large_objects_in_parts() {
    let bucket = bucket();
    let app = spawn(&bucket, |c| c.verification.copy_part_bytes = 5 << 20).await;
    setup(&app, &bucket, &[], &[&bucket]).await;
    webhook_workflow(&app, &bucket, "uploads/").await;
    // A name with a space, a `+` and a character outside ASCII: the copy source is encoded.
    let upload = request_upload(&app, "alice", json!({"file_name": "long take+(視).mp4"})).await;
    let key = upload["object_key"].as_str().unwrap().to_owned();
    let size = 12 * 1024 * 1024 + 5;
    let put = s3client("put", args(&upload, &key, json!({"size": size}))).await;
    assert_eq!(put["ok"], true, "{put}");
    let id = upload["upload_id"].as_str().unwrap();
    let done = app
        .wait_upload("alice", id, |u| u["state"] != "uploaded")
        .await;
    assert_eq!(done["state"], "triggered", "{}", app.admin_upload(id).await);
    let (delivery, read) = what_the_processor_reads(&app, &key).await;
    assert_eq!(delivery["size"], size);
    assert!(
        delivery["etag"].as_str().unwrap().ends_with("-3"),
        "three parts: {delivery}"
    );
    let original = s3client(
        "get",
        json!({"endpoint": rgw_url(), "creds": admin(), "bucket": bucket, "key": key}),
    )
    .await;
    assert_eq!(read["md5"], original["md5"]);
    assert_eq!(read["size"], size);
}
