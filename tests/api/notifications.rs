use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::Method;
use serde_json::{Value, json};

use mediagate::processing::DeliveryError;

use crate::support::sink::RecordingSink;
use crate::support::{S3_TOKEN, TestApp, error_code, http_date, mns_signer, oss_signer};

#[tokio::test]
async fn a_callback_triggers_the_matching_workflow_once() {
    let app = TestApp::spawn().await;
    app.webhook_workflow("hooks", "uploads/").await;
    let (id, key) = app
        .issue(
            "alice",
            "trip.MP4",
            json!({"title": "Trip", "tags": ["a", "b"]}),
        )
        .await;

    let response = app
        .upload_completed(&key, "\"5EB63BBBE01EEED093CB22BB8F5ACDC3\"", &id)
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["Status"], "OK");
    assert_eq!(body["upload_id"], id);
    assert_eq!(body["duplicate"], false);

    app.drain().await;
    assert_eq!(app.hooks.count(), 1);
    let (webhook_id, delivery) = app.hooks.deliveries().remove(0);
    assert_eq!(delivery["id"], webhook_id);
    // The processor is handed the copy verification judged, where alice cannot write.
    let copy = app.protected_copy(&delivery, &key);
    assert!(copy.starts_with("verified/alice/"), "{copy}");
    assert_eq!(delivery["upload_id"], id);
    assert_eq!(delivery["user"], "alice");
    assert_eq!(delivery["etag"], "5EB63BBBE01EEED093CB22BB8F5ACDC3");
    assert_eq!(delivery["media"]["title"], "Trip");
    assert_eq!(delivery["workflow"], "hooks");

    let upload = app.upload("alice", &id).await;
    assert_eq!(upload["state"], "triggered");
    assert!(upload["uploaded_at"].is_string());
    assert_eq!(upload["size"], 1048576);
    let triggers = upload["triggers"].as_array().unwrap();
    assert_eq!(triggers.len(), 1);
    assert_eq!(triggers[0]["workflow"], "hooks");
    assert_eq!(triggers[0]["sink"], "webhook");
    assert_eq!(triggers[0]["state"], "delivered");
    assert_eq!(triggers[0]["attempts"], 1);
    assert_eq!(triggers[0]["id"], webhook_id);

    // The upload is done: no more credentials for it.
    let refresh = app
        .client
        .post(app.url(&format!("/v1/uploads/{id}/credentials")))
        .bearer_auth(app.token("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(refresh.status(), 409);
    assert_eq!(error_code(refresh).await, "invalid_state");

    // OSS retries, and the same object is also announced by an event: nothing new.
    let again = app
        .upload_completed(&key, "\"5EB63BBBE01EEED093CB22BB8F5ACDC3\"", &id)
        .await;
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["upload_id"], id);
    let event = app
        .s3_event(&json!({"Records": [{"eventName": "ObjectCreated:Put", "eventSource": "aws:s3",
            "s3": {"bucket": {"name": "media-input"}, "object": {"key": key, "eTag": "5eb63bbbe01eeed093cb22bb8f5acdc3", "size": 1048576}}}]}))
        .await;
    assert_eq!(event.status(), 200);
    app.drain().await;
    assert_eq!(app.hooks.count(), 1, "one delivery for one object");
    assert_eq!(
        app.hooks.rejected(),
        0,
        "every delivery was correctly signed"
    );
}

#[tokio::test]
async fn every_matching_workflow_gets_its_own_trigger_and_mps_gets_addmedia() {
    let app = TestApp::spawn().await;
    app.webhook_workflow("hooks", "uploads/").await;
    app.mps_workflow("transcode", "uploads/alice/").await;
    app.mps_workflow("elsewhere", "other/").await;
    let (id, key) = app
        .issue("alice", "my trip 1.mov", json!({"title": "Trip", "description": "d", "tags": ["x", "y"], "cate_id": 7, "cover_url": "https://cdn.example.com/c.jpg", "user_data": "{\"k\":1}"}))
        .await;
    assert_eq!(app.upload_completed(&key, "abc", &id).await.status(), 200);
    app.drain().await;
    let upload = app.upload("alice", &id).await;
    assert_eq!(
        upload["state"], "processing",
        "the MPS run is followed: {upload}"
    );
    let triggers = upload["triggers"].as_array().unwrap();
    assert_eq!(triggers.len(), 2);
    let mps = triggers.iter().find(|t| t["sink"] == "mps").unwrap();
    assert_eq!(
        mps["media_id"].as_str(),
        app.mps.media_ids().first().map(String::as_str)
    );

    let requests = app.mps.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    // MPS reads the protected copy the webhook is handed too (one verification, one copy).
    let (_, delivery) = app.hooks.deliveries().remove(0);
    let copy = app.protected_copy(&delivery, &key);
    assert_eq!(
        r["FileURL"],
        format!(
            "http://media-input.oss-cn-hangzhou.aliyuncs.com/{}",
            copy.replace(' ', "%20")
        )
    );
    assert_eq!(r["Title"], "Trip");
    assert_eq!(r["Tags"], "x,y");
    assert_eq!(r["CateId"], "7");
    assert_eq!(r["MediaWorkflowUserData"], "{\"k\":1}");
    assert_eq!(
        r["MediaWorkflowId"],
        crate::support::mps_fake::MEDIA_WORKFLOW_ID
    );
}

#[tokio::test]
async fn custom_variables_override_media_attributes() {
    let app = TestApp::spawn().await;
    app.mps_workflow("transcode", "uploads/").await;
    let (id, key) = app
        .issue(
            "alice",
            "a.mp4",
            json!({"title": "old", "description": "keep"}),
        )
        .await;
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("bucket", "media-input")
        .append_pair("object", &key)
        .append_pair("etag", "e1")
        .append_pair("size", "10")
        .append_pair("upload_id", &id)
        .append_pair("x:title", "New title")
        .finish();
    assert_eq!(app.oss_callback(&form).await.status(), 200);
    app.drain().await;
    assert_eq!(
        app.upload("alice", &id).await["state"],
        "processing",
        "an MPS run is followed to its end"
    );
    let r = &app.mps.requests()[0];
    assert_eq!(r["Title"], "New title");
    assert_eq!(r["Description"], "keep");
}

#[tokio::test]
async fn json_callback_bodies_are_accepted() {
    let app = TestApp::spawn().await;
    app.webhook_workflow("hooks", "uploads/").await;
    let (id, key) = app.issue("alice", "a.mp4", json!({})).await;
    let body = json!({"bucket": "media-input", "object": key, "etag": "E2", "size": 12, "mimeType": "video/mp4", "upload_id": id}).to_string();
    app.oss.put_media_if_absent(&key, 12, "E2");
    let path = "/v1/notifications/oss-callback";
    let (authorization, key_url) = oss_signer().sign(path, None, body.as_bytes());
    let response = app
        .client
        .post(app.url(path))
        .header("authorization", authorization)
        .header("x-oss-pub-key-url", key_url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    app.drain().await;
    assert_eq!(app.upload("alice", &id).await["state"], "triggered");
}

#[tokio::test]
async fn forged_callbacks_are_400_and_record_nothing() {
    let app = TestApp::spawn().await;
    app.webhook_workflow("hooks", "uploads/").await;
    let (id, key) = app.issue("alice", "a.mp4", json!({})).await;
    let form = format!("bucket=media-input&object={key}&etag=e&size=1&upload_id={id}");
    let path = "/v1/notifications/oss-callback";
    let (authorization, key_url) = oss_signer().sign(path, None, form.as_bytes());
    let send = |body: String, auth: Option<String>, url: Option<String>| {
        let mut r = app.client.post(app.url(path)).body(body);
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        if let Some(u) = url {
            r = r.header("x-oss-pub-key-url", u);
        }
        r.send()
    };
    let tampered = form.replace("etag=e", "etag=f");
    for (body, auth, url) in [
        (tampered, Some(authorization.clone()), Some(key_url.clone())),
        (form.clone(), None, Some(key_url.clone())),
        (form.clone(), Some(authorization.clone()), None),
        (
            form.clone(),
            Some("not base64!".into()),
            Some(key_url.clone()),
        ),
        (
            form.clone(),
            Some(authorization.clone()),
            Some("%%%".into()),
        ),
    ] {
        let response = send(body, auth, url).await.unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(error_code(response).await, "invalid_signature");
    }
    // Signed for another path: replaying it here fails.
    let (other_auth, _) = oss_signer().sign("/elsewhere", None, form.as_bytes());
    let response = send(form.clone(), Some(other_auth), Some(key_url.clone()))
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    let upload: Value = app
        .get(&app.token("alice"), &format!("/v1/uploads/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(upload["state"], "issued");
    assert!(app.app.store.trigger_counts().await.unwrap().is_empty());
}

#[tokio::test]
async fn key_urls_outside_the_allowlist_are_never_fetched() {
    // A server that would serve our key: it must never be asked.
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = hits.clone();
    let pem = oss_signer().public_pem.clone();
    let router = axum::Router::new().fallback(move || {
        h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let pem = pem.clone();
        async move { pem }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let evil = format!("http://{}/key.pem", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let app = TestApp::spawn().await;
    let form = "bucket=media-input&object=uploads%2Fa.mp4&etag=e";
    let path = "/v1/notifications/oss-callback";
    let (authorization, _) = oss_signer().sign(path, None, form.as_bytes());
    for url in [
        evil.clone(),
        "https://gosspublic.alicdn.com.evil.example/k.pem".into(),
        "file:///etc/passwd".into(),
    ] {
        let response = app
            .client
            .post(app.url(path))
            .header("authorization", &authorization)
            .header("x-oss-pub-key-url", B64.encode(&url))
            .body(form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{url}");
        assert_eq!(error_code(response).await, "invalid_signature");
    }
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn skipped_objects_are_recorded_with_a_reason() {
    let app = TestApp::spawn().await;
    app.webhook_workflow("hooks", "uploads/alice/").await;

    // Not a media file (uploaded outside POST /v1/uploads, under bob's prefix).
    let r = app.s3_event(&json!({"Records": [{"eventName": "s3:ObjectCreated:Put", "eventSource": "minio:s3",
        "s3": {"bucket": {"name": "media-input"}, "object": {"key": "uploads%2Fbob%2Fx%2Fnotes.txt", "eTag": "n1", "size": 3}}}]})).await;
    assert_eq!(r.status(), 200);
    let tally: Value = r.json().await.unwrap();
    assert_eq!(tally["accepted"], 1);
    let history: Value = app
        .get(&app.token("bob"), "/v1/uploads")
        .await
        .json()
        .await
        .unwrap();
    let uploads = history["uploads"].as_array().unwrap();
    assert_eq!(uploads.len(), 1, "recorded in bob's history: {history}");
    assert_eq!(uploads[0]["object_key"], "uploads/bob/x/notes.txt");
    assert_eq!(uploads[0]["state"], "skipped");
    assert_eq!(uploads[0]["state_reason"], "not_media");
    let bobs = app
        .admin_upload(uploads[0]["upload_id"].as_str().unwrap())
        .await;
    assert!(
        bobs["events"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("not a media file"),
        "{bobs}"
    );

    // A media file outside every workflow prefix.
    let (id, key) = app.issue("carol", "a.mp4", json!({})).await;
    assert_eq!(app.upload_completed(&key, "c1", &id).await.status(), 200);
    let upload: Value = app
        .get(&app.token("carol"), &format!("/v1/uploads/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(upload["state"], "skipped");
    assert_eq!(upload["state_reason"], "no_matching_workflow", "{upload}");
    assert!(
        app.admin_upload(&id).await["events"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("outside prefix")
    );

    // An unknown bucket: 200 and skipped.
    let r = app.s3_event(&json!({"Records": [{"eventName": "s3:ObjectCreated:Put",
        "s3": {"bucket": {"name": "unknown-bucket"}, "object": {"key": "uploads/alice/1/a.mp4", "eTag": "u1"}}}]})).await;
    assert_eq!(r.status(), 200);
    app.drain().await;
    assert_eq!(app.hooks.count(), 0);
    assert!(app.app.store.trigger_counts().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_forged_upload_id_cannot_touch_another_users_upload() {
    let app = TestApp::spawn().await;
    app.webhook_workflow("hooks", "uploads/").await;
    let (alice_id, _) = app
        .issue("alice", "a.mp4", json!({"title": "alice's"}))
        .await;
    let (_, mallory_key) = app.issue("mallory", "m.mp4", json!({})).await;
    assert_eq!(
        app.upload_completed(&mallory_key, "m1", &alice_id)
            .await
            .status(),
        200
    );
    app.drain().await;
    assert_eq!(app.hooks.count(), 1);
    let alice: Value = app
        .get(&app.token("alice"), &format!("/v1/uploads/{alice_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(alice["state"], "issued");
    let (_, delivery) = app.hooks.deliveries().remove(0);
    assert_ne!(delivery["upload_id"], alice_id);
    assert_ne!(delivery["media"]["title"], "alice's");
}

#[tokio::test]
async fn a_sink_outage_of_several_attempts_ends_delivered() {
    let app = TestApp::spawn().await;
    app.webhook_workflow("hooks", "uploads/").await;
    app.hooks.fail_next(3);
    let (id, key) = app.issue("alice", "a.mp4", json!({})).await;
    app.upload_completed(&key, "o1", &id).await;
    app.drain_with_retries().await;
    let upload = app.upload("alice", &id).await;
    assert_eq!(upload["state"], "triggered");
    assert_eq!(upload["triggers"][0]["attempts"], 4);
    assert_eq!(app.hooks.count(), 1);
    assert_eq!(app.hooks.calls(), 4);
    let ids: std::collections::HashSet<_> = app
        .hooks
        .deliveries()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids.len(), 1);
}

/// The webhook sink is the test's own: it records what it is given and fails the first call.
/// The retry waits for its backoff on the app's clock, not a moment less, however long the
/// test itself takes; then the same trigger is delivered as its second attempt.
#[tokio::test]
async fn a_failed_delivery_is_retried_once_the_clock_reaches_its_backoff() {
    let sink = RecordingSink::new();
    let app = TestApp::builder()
        .webhook_sink(sink.clone())
        .config(|c| {
            c.processing.backoff_base_ms = 60_000;
            c.processing.backoff_max_ms = 60_000;
        })
        .spawn()
        .await;
    app.webhook_workflow("hooks", "uploads/").await;
    sink.fail_next(DeliveryError::Retry("receiver busy".into()));
    let (id, key) = app.issue("alice", "a.mp4", json!({"title": "t"})).await;
    assert_eq!(app.upload_completed(&key, "R1", &id).await.status(), 200);
    app.drain().await;
    let first = sink.deliveries();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].attempt, 1);
    assert_eq!(first[0].object_key, key);
    assert_eq!(first[0].upload_id.as_deref(), Some(id.as_str()));
    assert_eq!(first[0].media.title.as_deref(), Some("t"));
    // The upload's triggers: its verification, then the delivery.
    let trigger = app
        .app
        .store
        .triggers_for_upload(&id)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.sink == mediagate::kinds::TriggerSink::Webhook)
        .unwrap();
    assert_eq!(trigger.state, mediagate::kinds::TriggerState::Failed);
    // Half the base to the base: 30 to 60 s from the failure.
    let due_in = trigger.next_attempt_at - app.app.clock.now_millis();
    assert!((20_000..=60_000).contains(&due_in), "{due_in} ms");
    app.clock
        .advance(Duration::from_millis((due_in - 10_000) as u64));
    app.drain().await;
    assert_eq!(sink.deliveries().len(), 1, "not retried before its backoff");
    app.clock.advance(Duration::from_secs(10));
    app.drain().await;
    let deliveries = sink.deliveries();
    assert_eq!(deliveries.len(), 2);
    assert_eq!(deliveries[1].attempt, 2);
    assert_eq!(deliveries[1].trigger_id, deliveries[0].trigger_id);
    let upload = app.upload("alice", &id).await;
    assert_eq!(upload["state"], "triggered", "{upload}");
    assert_eq!(upload["triggers"][0]["attempts"], 2);
    assert_eq!(app.hooks.calls(), 0, "nothing went over HTTP");
}

#[tokio::test]
async fn exhausted_retries_end_dead_and_an_operator_can_replay() {
    let app = TestApp::spawn_with(|c| c.processing.max_attempts = 2).await;
    app.webhook_workflow("hooks", "uploads/").await;
    app.hooks.fail_next(2);
    let (id, key) = app.issue("alice", "a.mp4", json!({})).await;
    app.upload_completed(&key, "d1", &id).await;
    app.drain_with_retries().await;
    let upload = app.upload("alice", &id).await;
    assert_eq!(upload["state"], "failed");
    let trigger = &upload["triggers"][0];
    assert_eq!(trigger["state"], "dead");
    assert_eq!(trigger["attempts"], 2);
    // The owner sees a fixed reason; the receiver's answer is for operators.
    assert_eq!(trigger["last_error"], "delivery_abandoned", "{trigger}");
    let full = app.admin_upload(&id).await;
    assert!(
        full["triggers"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("503"),
        "{full}"
    );

    let dead: Value = app
        .admin(Method::GET, "/v1/admin/triggers?state=dead", None)
        .await
        .json()
        .await
        .unwrap();
    let tid = dead["triggers"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(tid, trigger["id"].as_str().unwrap());
    let retried = app
        .admin(
            Method::POST,
            &format!("/v1/admin/triggers/{tid}/retry"),
            None,
        )
        .await;
    assert_eq!(retried.status(), 200);
    app.drain().await;
    assert_eq!(app.upload("alice", &id).await["state"], "triggered");
    let again = app
        .admin(
            Method::POST,
            &format!("/v1/admin/triggers/{tid}/retry"),
            None,
        )
        .await;
    assert_eq!(again.status(), 409);
    assert_eq!(error_code(again).await, "invalid_state");
    let missing = app
        .admin(Method::POST, "/v1/admin/triggers/nope/retry", None)
        .await;
    assert_eq!(missing.status(), 404);
    // Only the retry that changed something is in the audit trail, with what it changed.
    let audit: Value = app
        .admin(Method::GET, "/v1/admin/audit", None)
        .await
        .json()
        .await
        .unwrap();
    let retries: Vec<&Value> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "trigger.retry")
        .collect();
    assert_eq!(retries.len(), 1, "{audit}");
    assert_eq!(retries[0]["target"], tid.as_str());
    assert_eq!(retries[0]["detail"]["before"]["state"], "dead");
}

#[tokio::test]
async fn mps_invalid_parameters_end_dead_at_once() {
    let app = TestApp::spawn().await;
    app.mps_workflow("transcode", "uploads/").await;
    app.mps.fail_next(400, "InvalidParameter.FileURL");
    let (id, key) = app.issue("alice", "a.mp4", json!({})).await;
    app.upload_completed(&key, "i1", &id).await;
    app.drain().await;
    let upload = app.upload("alice", &id).await;
    assert_eq!(upload["state"], "failed");
    assert_eq!(upload["triggers"][0]["attempts"], 1);
    assert_eq!(upload["triggers"][0]["last_error"], "delivery_abandoned");
    assert!(
        app.admin_upload(&id).await["triggers"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("InvalidParameter.FileURL")
    );

    app.mps.fail_next(503, "ServiceUnavailable");
    app.mps.fail_next(400, "Throttling.User");
    let (id, key) = app.issue("alice", "b.mp4", json!({})).await;
    app.upload_completed(&key, "i2", &id).await;
    app.drain_with_retries().await;
    let upload = app.upload("alice", &id).await;
    assert_eq!(
        upload["state"], "processing",
        "an MPS run is followed to its end"
    );
    assert_eq!(upload["triggers"][0]["attempts"], 3);
    assert!(upload["triggers"][0]["media_id"].is_string());
    assert_eq!(app.mps.calls(), 4);
}

async fn mns_push(app: &TestApp, message: &Value, date: &str, tamper: bool) -> reqwest::Response {
    let path = "/v1/notifications/oss-events";
    let body = B64.encode(message.to_string());
    let mut request = app.client.post(app.url(path));
    for (name, value) in mns_signer().headers(path, &body, date) {
        let value = if tamper && name == "x-mns-request-id" {
            "tampered".into()
        } else {
            value
        };
        request = request.header(name, value);
    }
    request.body(body).send().await.unwrap()
}

#[tokio::test]
async fn mns_pushed_oss_events_are_verified_and_recorded() {
    let app = TestApp::spawn().await;
    app.webhook_workflow("hooks", "uploads/").await;
    let (id, key) = app.issue("alice", "clip.mp4", json!({})).await;
    let encoded = key.replace('/', "%2F");
    let message = json!({"events": [
        {"eventName": "ObjectCreated:InitiateMultipartUpload", "oss": {"bucket": {"name": "media-input"}, "object": {"key": encoded, "size": 0, "eTag": ""}}},
        {"eventName": "ObjectCreated:CompleteMultipartUpload", "eventSource": "acs:oss", "region": "cn-hangzhou",
         "oss": {"bucket": {"name": "media-input"}, "object": {"key": encoded, "size": 122539, "eTag": "688A7BF4F233DC9C88A80BF985AB7329"}},
         "xVars": {"x:title": "from the event"}}
    ]});
    app.oss
        .put_media_if_absent(&key, 122539, "688A7BF4F233DC9C88A80BF985AB7329");
    let response = mns_push(&app, &message, &http_date(), false).await;
    assert_eq!(response.status(), 200);
    let tally: Value = response.json().await.unwrap();
    assert_eq!(tally["accepted"], 1);
    assert_eq!(tally["ignored"], 1);
    app.drain().await;
    let upload = app.upload("alice", &id).await;
    assert_eq!(upload["state"], "triggered");
    assert_eq!(upload["size"], 122539);
    assert_eq!(
        app.hooks.deliveries()[0].1["media"]["title"],
        "from the event"
    );

    let stale = (chrono::Utc::now() - chrono::Duration::minutes(16))
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let response = mns_push(&app, &message, &stale, false).await;
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "invalid_signature");
    let response = mns_push(&app, &message, &http_date(), true).await;
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "invalid_signature");

    // Correctly signed but not base64 / not JSON.
    let path = "/v1/notifications/oss-events";
    for body in ["%%% not base64", &B64.encode("not json")] {
        let mut request = app.client.post(app.url(path));
        for (name, value) in mns_signer().headers(path, body, &http_date()) {
            request = request.header(name, value);
        }
        let response = request.body(body.to_owned()).send().await.unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(error_code(response).await, "bad_request");
    }
}

#[tokio::test]
async fn s3_events_need_the_token_and_understand_sns_envelopes() {
    let app = TestApp::spawn().await;
    app.webhook_workflow("hooks", "uploads/").await;
    let records = json!({"Records": [{"eventName": "ObjectCreated:Put", "eventSource": "aws:s3",
        "s3": {"bucket": {"name": "media-input"}, "object": {"key": "uploads/dave/x/my+clip.mp4", "eTag": "s1", "size": 5}}}]});
    for auth in [
        None,
        Some("Bearer wrong-token-wrong-token"),
        Some("Basic abc"),
    ] {
        let mut request = app
            .client
            .post(app.url("/v1/notifications/s3-events"))
            .json(&records);
        if let Some(a) = auth {
            request = request.header("authorization", a);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(error_code(response).await, "unauthorized");
    }
    // Senders that cannot set headers (Ceph RGW push endpoints) put the token in the URL.
    let wrong = app
        .client
        .post(app.url("/v1/notifications/s3-events?token=wrong-token-wrong-token"))
        .json(&records)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(error_code(wrong).await, "unauthorized");
    let envelope =
        json!({"Type": "Notification", "MessageId": "m", "Message": records.to_string()});
    let response = app.s3_event(&envelope).await;
    assert_eq!(response.status(), 200);
    app.drain().await;
    assert_eq!(app.hooks.count(), 1);
    assert_eq!(
        app.hooks.deliveries()[0].1["source_key"],
        "uploads/dave/x/my clip.mp4"
    );
    let rgw = json!({"Records": [{"eventName": "ObjectCreated:Put", "eventSource": "ceph:s3",
        "s3": {"bucket": {"name": "media-input"}, "object": {"key": "uploads/dave/y/raw+name.mp4",
        "eTag": "r1", "size": 7, "metadata": [{"key": "x-amz-meta-title", "val": "From RGW"}]}}}]});
    app.oss
        .put_media_if_absent("uploads/dave/y/raw+name.mp4", 7, "r1");
    let response = app
        .client
        .post(app.url(&format!("/v1/notifications/s3-events?token={S3_TOKEN}")))
        .json(&rgw)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    app.drain().await;
    assert_eq!(app.hooks.count(), 2);
    let delivered = &app.hooks.deliveries()[1].1;
    app.protected_copy(delivered, "uploads/dave/y/raw+name.mp4");
    assert_eq!(delivered["media"]["title"], "From RGW");

    for bad in [
        json!({"Records": "nope"}),
        json!({"Type": "Notification", "Message": "{"}),
    ] {
        let response = app.s3_event(&bad).await;
        assert_eq!(response.status(), 400);
        assert_eq!(error_code(response).await, "bad_request");
    }
    let raw = app
        .client
        .post(app.url("/v1/notifications/s3-events"))
        .bearer_auth(S3_TOKEN)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
}

#[tokio::test]
async fn notification_bodies_over_one_mebibyte_are_413() {
    let app = TestApp::spawn().await;
    let big = "x".repeat(1024 * 1024 + 10);
    let response = app
        .client
        .post(app.url("/v1/notifications/s3-events"))
        .bearer_auth(S3_TOKEN)
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(error_code(response).await, "payload_too_large");
}

#[tokio::test]
async fn a_slow_mps_times_out_and_is_retried() {
    let app = TestApp::spawn_with(|c| c.mps.timeout_ms = 300).await;
    app.mps_workflow("transcode", "uploads/").await;
    app.mps.set_latency(Duration::from_millis(600));
    let (id, key) = app.issue("alice", "a.mp4", json!({})).await;
    app.upload_completed(&key, "t1", &id).await;
    // The first call is cut at 300 ms and waits for its retry.
    app.drain().await;
    assert_eq!(app.mps.calls(), 1);
    let upload = app.upload("alice", &id).await;
    assert_eq!(upload["triggers"][0]["state"], "failed", "{upload}");
    app.mps.set_latency(Duration::ZERO);
    app.drain_with_retries().await;
    let upload = app.upload("alice", &id).await;
    assert_eq!(
        upload["state"], "processing",
        "an MPS run is followed to its end"
    );
    assert_eq!(upload["triggers"][0]["attempts"], 2);
}

#[tokio::test]
async fn callbacks_only_count_for_uploads_mediagate_issued() {
    let app = TestApp::spawn().await;
    app.webhook_workflow("hooks", "uploads/").await;
    // A correctly signed callback (any uploader can make OSS sign one) naming an object under
    // bob's prefix that was never issued.
    let form =
        "bucket=media-input&object=uploads%2Fbob%2Fx%2Fevil.mp4&etag=e1&size=1&x%3Atitle=pwned";
    let response = app.oss_callback(form).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(body["upload_id"].is_null());
    let history: Value = app
        .get(&app.token("bob"), "/v1/uploads")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(history["uploads"], json!([]), "no row in bob's history");
    app.drain().await;
    assert_eq!(app.hooks.count(), 0);
    assert!(app.app.store.trigger_counts().await.unwrap().is_empty());
}

#[tokio::test]
async fn control_characters_in_keys_are_400() {
    let app = TestApp::spawn().await;
    let r = app
        .s3_event(&json!({"Records": [{"eventName": "s3:ObjectCreated:Put", "eventSource": "minio:s3",
            "s3": {"bucket": {"name": "media-input"}, "object": {"key": "uploads%2Fa%00b.mp4", "eTag": "x"}}}]}))
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "bad_request");
    let (id, key) = app.issue("alice", "a.mp4", json!({})).await;
    let body = json!({"bucket": "media-input", "object": format!("{key}\u{0}"), "etag": "E", "upload_id": id}).to_string();
    let path = "/v1/notifications/oss-callback";
    let (authorization, key_url) = oss_signer().sign(path, None, body.as_bytes());
    let r = app
        .client
        .post(app.url(path))
        .header("authorization", authorization)
        .header("x-oss-pub-key-url", key_url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn mns_bodies_are_bound_by_content_md5_and_the_endpoint_token() {
    let app = TestApp::spawn_with(|c| {
        c.notifications.mns_token = Some(secrecy::SecretString::from("mns-endpoint-token-123"));
    })
    .await;
    app.webhook_workflow("hooks", "uploads/").await;
    let message = |key: &str| {
        B64.encode(
            json!({"events": [{"eventName": "ObjectCreated:PutObject",
                "oss": {"bucket": {"name": "media-input"}, "object": {"key": key, "size": 1, "eTag": "M1"}}}]})
            .to_string(),
        )
    };
    let send = |path: &'static str, signed_body: String, sent_body: String| {
        let headers = mns_signer().headers(path, &signed_body, &http_date());
        let mut request = app.client.post(app.url(path));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.body(sent_body).send()
    };
    app.oss
        .put_media_if_absent("uploads/carol/1/a.mp4", 1, "M1");
    let good = message("uploads/carol/1/a.mp4");
    let with_token = "/v1/notifications/oss-events?token=mns-endpoint-token-123";
    // The same signed headers with another body: refused.
    let swapped = send(with_token, good.clone(), message("uploads/carol/1/b.mp4"))
        .await
        .unwrap();
    assert_eq!(swapped.status(), 400);
    assert_eq!(error_code(swapped).await, "invalid_signature");
    // A correctly signed push to the URL without our token: another account's topic.
    let foreign = send("/v1/notifications/oss-events", good.clone(), good.clone())
        .await
        .unwrap();
    assert_eq!(foreign.status(), 400);
    let ok = send(with_token, good.clone(), good).await.unwrap();
    assert_eq!(ok.status(), 200);
    app.drain().await;
    assert_eq!(app.hooks.count(), 1);
}

#[tokio::test]
async fn the_running_worker_holds_sink_calls_to_its_concurrency_and_records_every_outcome() {
    // About the worker's own loop: how many sink calls it keeps open at once.
    let app = TestApp::builder()
        .running_worker()
        .config(|c| c.processing.concurrency = 3)
        .spawn()
        .await;
    app.webhook_workflow("hooks", "uploads/").await;
    // Slow enough that every slot is taken while the first calls are still open, even on a
    // slow machine.
    app.hooks.set_latency(Duration::from_millis(400));
    let mut uploads = Vec::new();
    for n in 0..12 {
        let (id, key) = app.issue("alice", &format!("{n}.mp4"), json!({})).await;
        assert_eq!(
            app.upload_completed(&key, &format!("g{n}"), &id)
                .await
                .status(),
            200
        );
        uploads.push(id);
    }
    assert!(app.hooks.wait_for(12, Duration::from_secs(20)).await);
    assert_eq!(app.hooks.most_at_once(), 3, "sink calls at once");
    // Outcomes are written after the slot is given back; each one still lands.
    app.drain().await;
    for id in &uploads {
        let states: Vec<_> = app
            .app
            .store
            .triggers_for_upload(id)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.state)
            .collect();
        assert_eq!(
            states,
            [mediagate::kinds::TriggerState::Delivered; 2],
            "{id}"
        );
    }
    assert_eq!(app.hooks.calls(), 12, "each delivered once");
}

#[tokio::test]
async fn a_stopping_worker_gives_back_unfinished_deliveries() {
    // About the worker's own loop: what it does when the server is told to stop.
    let mut first = TestApp::builder()
        .running_worker()
        .config(|c| {
            c.server.shutdown_timeout_seconds = 1;
            c.processing.lease_seconds = 120;
            c.processing.webhook_timeout_ms = 60_000;
        })
        .spawn()
        .await;
    first.webhook_workflow("hooks", "uploads/").await;
    first.hooks.set_latency(Duration::from_secs(30));
    let (id, key) = first.issue("alice", "a.mp4", json!({})).await;
    first.upload_completed(&key, "g1", &id).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while first.hooks.calls() == 0 {
        assert!(std::time::Instant::now() < deadline, "never delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SIGTERM while the delivery hangs: after the 1 s grace it is cancelled and released.
    first.stop();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while first.app.worker.is_alive() {
        assert!(std::time::Instant::now() < deadline, "worker did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.hooks.set_latency(Duration::ZERO);

    // The next instance on the same database delivers it at once, long before the 120 s lease
    // would have let it.
    let second = mediagate::app::App::build(first.app.config.clone())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(mediagate::server::serve(second.clone(), listener, async {
        let _ = rx.await;
    }));
    assert!(
        first.hooks.wait_for(1, Duration::from_secs(10)).await,
        "the released trigger was not delivered"
    );
    // The outcome is recorded just after the receiver answered.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let trigger = loop {
        let t = second
            .store
            .triggers_for_upload(&id)
            .await
            .unwrap()
            .remove(0);
        if t.state == mediagate::kinds::TriggerState::Delivered
            || std::time::Instant::now() > deadline
        {
            break t;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(trigger.state, mediagate::kinds::TriggerState::Delivered);
    assert_eq!(
        trigger.attempts, 1,
        "the interrupted attempt is not counted"
    );
    let _ = tx.send(());
    let _ = server.await;
}
