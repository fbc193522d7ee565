//! Webhook processors report their outcome to `POST /v1/notifications/processing`, signed the
//! Standard Webhooks way with their workflow's secret; only a report that passes every check
//! changes anything.

use serde_json::{Value, json};

use crate::support::oss_fake::mp4_header;
use crate::support::{TestApp, WEBHOOK_SECRET};

/// Another workflow's secret: valid, but not the one of the trigger's workflow.
const OTHER_SECRET: &str = "whsec_c2Vjb25kLXNlY3JldC1vZi1hbm90aGVyLXdvcmtmbG93";

/// A clip delivered to a webhook workflow that follows its outcome: the upload id and the
/// trigger payload the receiver got.
pub(crate) async fn delivered(app: &TestApp) -> (String, Value) {
    let body = json!({"name": "thumbs", "state": "Active", "bucket": "media-input",
        "prefix": "uploads/", "sink": "webhook", "webhook_url": app.hooks.url,
        "webhook_secret": WEBHOOK_SECRET, "track_outcome": true, "output_prefix": "outputs/"});
    let created = app
        .admin(reqwest::Method::POST, "/v1/admin/workflows", Some(body))
        .await;
    assert_eq!(created.status(), 201);
    let (id, key) = app.issue("alice", "clip.mp4", json!({})).await;
    assert_eq!(app.upload_completed(&key, "abc", &id).await.status(), 200);
    app.drain().await;
    let upload = app.upload("alice", &id).await;
    assert_eq!(upload["state"], "processing", "{upload}");
    let (_, payload) = app.hooks.deliveries().remove(0);
    (id, payload)
}

/// Sends `body` as a report, signed with `secret` at `timestamp` as `webhook_id`.
pub(crate) async fn report(
    app: &TestApp,
    secret: &str,
    webhook_id: &str,
    timestamp: i64,
    body: &Value,
) -> reqwest::Response {
    let text = body.to_string();
    let key = mediagate::signing::webhook_signing_key(secret);
    let signature =
        mediagate::signing::webhook_signature(&key, webhook_id, timestamp, text.as_bytes());
    app.client
        .post(app.url("/v1/notifications/processing"))
        .header("webhook-id", webhook_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .header("content-type", "application/json")
        .body(text)
        .send()
        .await
        .unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn a_processor_reports_running_then_succeeded_and_the_upload_is_ready() {
    let app = TestApp::spawn().await;
    let (id, payload) = delivered(&app).await;
    // The payload says where to report and where outputs go.
    assert!(
        payload["report_url"]
            .as_str()
            .unwrap()
            .ends_with("/v1/notifications/processing"),
        "{payload}"
    );
    assert_eq!(
        (&payload["output_bucket"], &payload["output_prefix"]),
        (&json!("media-input"), &json!("outputs/"))
    );
    let trigger = app.upload("alice", &id).await["triggers"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let running = json!({"trigger_id": trigger, "state": "running"});
    let r = report(&app, WEBHOOK_SECRET, "msg_1", now(), &running).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        app.upload("alice", &id).await["triggers"][0]["processing"],
        "running"
    );

    let key = format!("outputs/{id}/360p.mp4");
    app.oss.put(&key, mp4_header(), "video/mp4");
    let done = json!({"trigger_id": trigger, "state": "succeeded", "outputs": [
        {"name": "360p", "kind": "video", "key": key, "format": "mp4", "width": 640, "height": 360}]});
    let r = report(&app, WEBHOOK_SECRET, "msg_2", now(), &done).await;
    assert_eq!(r.status(), 200);
    let upload = app.upload("alice", &id).await;
    assert_eq!(upload["state"], "ready", "{upload}");
    let output = &upload["outputs"][0];
    assert_eq!(
        (&output["name"], &output["width"]),
        (&json!("360p"), &json!(640))
    );
    assert_eq!(output["size"], mp4_header().len(), "the store's size");
    assert!(output["url"].as_str().unwrap().contains("&Signature="));

    // The same report again changes nothing; a new one after the end is refused.
    let r = report(&app, WEBHOOK_SECRET, "msg_2", now(), &done).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["result"], "repeat");
    let late = json!({"trigger_id": trigger, "state": "failed", "error": {"code": "X"}});
    let r = report(&app, WEBHOOK_SECRET, "msg_3", now(), &late).await;
    assert_eq!(r.status(), 409);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "already_finished"
    );
    assert_eq!(app.upload("alice", &id).await["state"], "ready");
}

#[tokio::test]
async fn reports_that_fail_a_check_change_nothing() {
    let app = TestApp::spawn().await;
    let (id, _) = delivered(&app).await;
    let trigger = app.upload("alice", &id).await["triggers"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = format!("outputs/{id}/360p.mp4");
    app.oss.put(&key, mp4_header(), "video/mp4");
    let done = json!({"trigger_id": trigger, "state": "succeeded", "outputs": [
        {"name": "360p", "kind": "video", "key": key}]});
    let code = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        (
            status,
            r.json::<Value>().await.unwrap()["error"]["code"].clone(),
        )
    };

    // Another workflow's secret, a stale or future timestamp.
    let r = report(&app, OTHER_SECRET, "f1", now(), &done).await;
    assert_eq!(code(r).await, (401, json!("invalid_signature")));
    let r = report(&app, WEBHOOK_SECRET, "f2", now() - 600, &done).await;
    assert_eq!(code(r).await, (401, json!("invalid_signature")));
    let r = report(&app, WEBHOOK_SECRET, "f3", now() + 600, &done).await;
    assert_eq!(code(r).await, (401, json!("invalid_signature")));
    // The body changed after signing.
    let signed = report(&app, OTHER_SECRET, "f4", now(), &done).await;
    assert_eq!(signed.status(), 401);
    // A trigger nobody delivered.
    let stranger = json!({"trigger_id": "01a25300-0000-7000-8000-000000000000", "state": "failed"});
    let r = report(&app, WEBHOOK_SECRET, "f5", now(), &stranger).await;
    assert_eq!(code(r).await, (401, json!("invalid_signature")));
    // Outputs outside the workflow's output bucket or prefix.
    for (bucket, key) in [
        ("media-input", "uploads/alice/x.mp4"),
        ("other-bucket", "outputs/x.mp4"),
    ] {
        let outside = json!({"trigger_id": trigger, "state": "succeeded", "outputs": [
            {"name": "a", "kind": "video", "bucket": bucket, "key": key}]});
        let r = report(
            &app,
            WEBHOOK_SECRET,
            &format!("o-{bucket}"),
            now(),
            &outside,
        )
        .await;
        assert_eq!(code(r).await, (422, json!("invalid_request")));
    }
    // An output that is not in the store.
    let missing = json!({"trigger_id": trigger, "state": "succeeded", "outputs": [
        {"name": "a", "kind": "video", "key": "outputs/nothing-here.mp4"}]});
    let r = report(&app, WEBHOOK_SECRET, "m1", now(), &missing).await;
    assert_eq!(code(r).await, (422, json!("output_missing")));
    // None of them changed anything.
    let upload = app.upload("alice", &id).await;
    assert_eq!(upload["state"], "processing", "{upload}");
    assert_eq!(upload["triggers"][0]["processing"], "pending");
    assert_eq!(upload["outputs"], json!([]));

    // A processor's failure: app users see the code of mediagate, operators the processor's.
    let failed = json!({"trigger_id": trigger, "state": "failed",
        "error": {"code": "ffmpeg_exit_1", "message": "moov atom not found"}});
    let r = report(&app, WEBHOOK_SECRET, "x1", now(), &failed).await;
    assert_eq!(r.status(), 200);
    let upload = app.upload("alice", &id).await;
    assert_eq!(
        (&upload["state"], &upload["state_reason"]),
        (&json!("failed"), &json!("processing_failed"))
    );
    assert!(!upload.to_string().contains("moov"));
    let admin = app.admin_upload(&id).await;
    let reports = admin["reports"].as_array().unwrap();
    assert_eq!(
        reports.len(),
        1,
        "only the report that passed is recorded: {admin}"
    );
    assert_eq!(reports[0]["code"], "ffmpeg_exit_1");
    assert_eq!(reports[0]["message"], "moov atom not found");
}

#[tokio::test]
async fn a_workflow_that_does_not_follow_outcomes_takes_no_reports() {
    let app = TestApp::spawn().await;
    app.webhook_workflow("hooks", "uploads/").await;
    let (id, key) = app.issue("alice", "clip.mp4", json!({})).await;
    assert_eq!(app.upload_completed(&key, "abc", &id).await.status(), 200);
    app.drain().await;
    let upload = app.upload("alice", &id).await;
    assert_eq!(upload["state"], "triggered");
    let (_, payload) = app.hooks.deliveries().remove(0);
    assert!(payload.get("report_url").is_none(), "{payload}");
    let trigger = upload["triggers"][0]["id"].as_str().unwrap();
    let r = report(
        &app,
        WEBHOOK_SECRET,
        "n1",
        now(),
        &json!({"trigger_id": trigger, "state": "running"}),
    )
    .await;
    assert_eq!(r.status(), 409);
}

/// A receiver so quick that it reports from inside the delivery, before its answer to the
/// delivery is recorded: the answers it got, in order.
struct ReportsAtOnce {
    answers: std::sync::Mutex<Vec<(u16, Option<String>, Value)>>,
}

#[async_trait::async_trait]
impl mediagate::processing::Sink for ReportsAtOnce {
    async fn deliver(
        &self,
        _target: &mediagate::workflows::Sink,
        delivery: &mediagate::processing::Delivery,
    ) -> Result<mediagate::processing::Delivered, mediagate::processing::DeliveryError> {
        let url = &delivery
            .report
            .as_ref()
            .expect("a tracked workflow")
            .report_url;
        let body = json!({"trigger_id": delivery.trigger_id, "state": "running"}).to_string();
        let key = mediagate::signing::webhook_signing_key(WEBHOOK_SECRET);
        let signature =
            mediagate::signing::webhook_signature(&key, "early", now(), body.as_bytes());
        let r = reqwest::Client::new()
            .post(url)
            .header("webhook-id", "early")
            .header("webhook-timestamp", now().to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let retry = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let answer = (status, retry, r.json().await.unwrap_or(Value::Null));
        self.answers.lock().unwrap().push(answer);
        Ok(Default::default())
    }
}

#[tokio::test]
async fn a_report_sent_before_its_delivery_is_recorded_is_asked_again_not_refused() {
    let sink = std::sync::Arc::new(ReportsAtOnce {
        answers: Default::default(),
    });
    let app = TestApp::builder()
        .own_public_url()
        .webhook_sink(sink.clone())
        .spawn()
        .await;
    let body = json!({"name": "quick", "state": "Active", "bucket": "media-input",
        "prefix": "uploads/", "sink": "webhook", "webhook_url": app.hooks.url,
        "webhook_secret": WEBHOOK_SECRET, "track_outcome": true});
    let r = app
        .admin(reqwest::Method::POST, "/v1/admin/workflows", Some(body))
        .await;
    assert_eq!(r.status(), 201);
    let (id, key) = app.issue("alice", "clip.mp4", json!({})).await;
    assert_eq!(app.upload_completed(&key, "abc", &id).await.status(), 200);
    app.drain().await;
    let answers = sink.answers.lock().unwrap().clone();
    assert_eq!(answers.len(), 1);
    let (status, retry, error) = &answers[0];
    assert_eq!((*status, retry.as_deref()), (503, Some("1")), "{error}");
    assert_eq!(error["error"]["code"], "delivery_pending");

    // Sent again once the delivery is recorded, the same report is taken.
    let view = app.upload("alice", &id).await;
    let trigger = view["triggers"][0]["id"].as_str().unwrap();
    let running = json!({"trigger_id": trigger, "state": "running"});
    let r = report(&app, WEBHOOK_SECRET, "early", now(), &running).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["result"], "applied");
    assert_eq!(
        app.upload("alice", &id).await["triggers"][0]["processing"],
        "running"
    );
}
