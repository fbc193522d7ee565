//! `[events]`: the app's own backend is told of each upload state change of a listed type,
//! durably (queued with the change itself), Standard Webhooks signed, one event id per change
//! whatever the number of instances, retries or crashes.

use mediagate::clock::Clock;
use serde_json::{Value, json};

use crate::outcomes::second_instance;
use crate::reports::{delivered, report};
use crate::support::oss_fake::mp4_header;
use crate::support::webhook_receiver::WebhookReceiver;
use crate::support::{TestApp, WEBHOOK_SECRET};

/// The backend's own secret, not a workflow's.
const EVENTS_SECRET: &str = "whsec_YmFja2VuZC1ldmVudHMtc2VjcmV0LTI0Ynl0ZXM=";

/// An app telling `receiver` of the changes to `types`.
async fn app_telling(receiver: &WebhookReceiver, types: &[&str]) -> TestApp {
    let (url, types) = (
        receiver.url.clone(),
        types.iter().map(|t| (*t).to_owned()).collect(),
    );
    TestApp::spawn_with(move |c| {
        c.events.webhook_url = Some(url);
        c.events.webhook_secret = Some(EVENTS_SECRET.to_owned().into());
        c.events.types = types;
    })
    .await
}

/// Makes a delivered upload `ready` through its processor's report, with one output; the
/// upload id and the output's key.
async fn made_ready(app: &TestApp) -> (String, String) {
    let (id, _) = delivered(app).await;
    let view = app.upload("alice", &id).await;
    let trigger = view["triggers"][0]["id"].as_str().unwrap().to_owned();
    let key = format!("outputs/{id}/240p.mp4");
    app.oss.put(&key, mp4_header(), "video/mp4");
    let done = json!({"trigger_id": trigger, "state": "succeeded", "outputs": [
        {"name": "240p", "kind": "video", "key": key, "format": "mp4", "height": 240}]});
    let now = chrono::Utc::now().timestamp();
    let r = report(app, WEBHOOK_SECRET, &format!("rep_{id}"), now, &done).await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.upload("alice", &id).await["state"], "ready");
    (id, key)
}

/// The events of `receiver` of type `kind`: (webhook-id, body).
fn told(receiver: &WebhookReceiver, kind: &str) -> Vec<(String, Value)> {
    receiver
        .deliveries()
        .into_iter()
        .filter(|(_, body)| body["type"] == kind)
        .collect()
}

#[tokio::test]
async fn the_backend_is_told_each_listed_change_once_in_order_with_outputs_as_bucket_and_key() {
    let backend = WebhookReceiver::start(EVENTS_SECRET).await;
    let app = app_telling(&backend, &["upload.processing", "upload.ready"]).await;
    let (id, key) = made_ready(&app).await;
    app.drain().await;

    // Verified by the receiver with the backend's secret; `uploaded` is not listed.
    let deliveries = backend.deliveries();
    let kinds: Vec<&Value> = deliveries.iter().map(|(_, b)| &b["type"]).collect();
    assert_eq!(kinds, [&json!("upload.processing"), &json!("upload.ready")]);
    assert_eq!(backend.rejected(), 0);
    let (event_id, ready) = &deliveries[1];
    assert!(event_id.starts_with("evt_"), "{event_id}");
    let data = &ready["data"];
    assert_eq!(
        (&data["upload_id"], &data["user"], &data["state"]),
        (&json!(id), &json!("alice"), &json!("ready"))
    );
    assert_eq!(
        data["object_key"],
        app.upload("alice", &id).await["object_key"]
    );
    assert_eq!(
        data["outputs"],
        json!([{"workflow": "thumbs", "name": "240p", "kind": "video", "bucket": "media-input",
            "key": key, "format": "mp4", "width": null, "height": 240, "duration_ms": null,
            "size": mp4_header().len()}])
    );
    assert!(
        !ready.to_string().contains("Signature="),
        "no URLs: {ready}"
    );
    assert!(ready["timestamp"].as_str().unwrap().ends_with('Z'));

    // Operators see what the backend was told; the upload's own triggers are unchanged.
    let admin = app.admin_upload(&id).await;
    let events = admin["backend_events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{admin}");
    assert!(events.iter().all(|e| e["state"] == "delivered"), "{admin}");
    assert_eq!(events[1]["id"], json!(event_id));
    assert_eq!(
        app.upload("alice", &id).await["triggers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn without_events_nothing_is_queued() {
    let app = TestApp::spawn().await;
    let (id, _) = made_ready(&app).await;
    app.drain().await;
    let admin = app.admin_upload(&id).await;
    assert_eq!(admin["backend_events"], json!([]), "{admin}");
    let counts = app.app.store.trigger_counts().await.unwrap();
    assert_eq!(
        counts,
        [("delivered".to_owned(), 2)],
        "verification and delivery only"
    );
}

#[tokio::test]
async fn exactly_one_ready_event_across_a_retry_a_crash_and_two_instances() {
    let backend = WebhookReceiver::start(EVENTS_SECRET).await;
    let app = app_telling(&backend, &["upload.ready"]).await;
    let (id, _) = made_ready(&app).await;

    // The instance that made the change claims the event and dies before sending it.
    let lease_ms = 3_000;
    let claimed = app
        .app
        .store
        .claim_triggers(app.clock.now_millis(), 10, lease_ms)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].sink.as_str(), "events");
    let event_id = claimed[0].id.clone();

    // Two instances on the same database; the first answer of the backend is a 503.
    let (b, c) = (second_instance(&app).await, second_instance(&app).await);
    backend.fail_next(1);
    let (nb, nc) = tokio::join!(b.worker.drain(), c.worker.drain());
    assert_eq!(
        (nb.unwrap(), nc.unwrap()),
        (0, 0),
        "held by the dead instance"
    );
    app.clock
        .advance(std::time::Duration::from_millis(lease_ms as u64 + 1));
    let (nb, nc) = tokio::join!(b.worker.drain(), c.worker.drain());
    assert_eq!(nb.unwrap() + nc.unwrap(), 1, "one attempt, by one instance");
    assert_eq!((backend.calls(), backend.count()), (1, 0));
    // The retry, once due, on both instances at once.
    app.clock.advance(std::time::Duration::from_secs(600));
    let (nb, nc) = tokio::join!(b.worker.drain(), c.worker.drain());
    assert_eq!(nb.unwrap() + nc.unwrap(), 1);
    app.drain().await;

    let ready = told(&backend, "upload.ready");
    assert_eq!(ready.len(), 1, "{ready:?}");
    assert_eq!(ready[0].0, event_id, "the same id through the retry");
    assert_eq!(ready[0].1["data"]["upload_id"], json!(id));
    assert_eq!(backend.calls(), 2);
}

#[tokio::test]
async fn a_refused_event_is_dead_until_an_operator_replays_it() {
    let backend = WebhookReceiver::start(EVENTS_SECRET).await;
    let app = app_telling(&backend, &["upload.ready", "upload.rejected"]).await;
    let (id, _) = made_ready(&app).await;
    // 410 Gone: no retry.
    backend.fail_next_with(410, 1);
    app.drain().await;
    assert_eq!(backend.count(), 0);
    let admin = app.admin_upload(&id).await;
    let event = &admin["backend_events"][0];
    assert_eq!(
        (&event["state"], &event["workflow"]),
        (&json!("dead"), &json!("upload.ready")),
        "{admin}"
    );
    // The upload's own state is not the event's.
    assert_eq!(app.upload("alice", &id).await["state"], "ready");

    let path = format!("/v1/admin/triggers/{}/retry", event["id"].as_str().unwrap());
    let r = app.admin(reqwest::Method::POST, &path, None).await;
    assert_eq!(r.status(), 200);
    app.drain().await;
    let ready = told(&backend, "upload.ready");
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].0, event["id"].as_str().unwrap());
}

#[tokio::test]
async fn a_rejected_upload_is_told_with_its_reason() {
    let backend = WebhookReceiver::start(EVENTS_SECRET).await;
    let app = app_telling(&backend, &["upload.rejected"]).await;
    app.webhook_workflow("hooks", "uploads/").await;
    let (id, key) = app.issue("alice", "notes.mp4", json!({})).await;
    // A zip archive, not a media container.
    let mut archive = b"PK\x03\x04\x14\x00\x00\x00\x08\x00".to_vec();
    archive.resize(4096, 0);
    app.oss.put(&key, archive, "video/mp4");
    let form = format!("bucket=media-input&object={key}&etag=E&size=4096&upload_id={id}");
    assert_eq!(app.oss_callback_only(&form).await.status(), 200);
    app.drain().await;
    let rejected = told(&backend, "upload.rejected");
    assert_eq!(rejected.len(), 1, "{:?}", backend.deliveries());
    let data = &rejected[0].1["data"];
    assert_eq!(
        (&data["state"], &data["state_reason"], &data["outputs"]),
        (&json!("rejected"), &json!("not_media"), &json!([]))
    );
}
