use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, WEBHOOK_SECRET, error_code};

fn webhook(name: &str) -> Value {
    json!({"name": name, "state": "Active", "bucket": "media-input", "prefix": "",
           "sink": "webhook", "webhook_url": "https://hooks.example.com/in", "webhook_secret": WEBHOOK_SECRET,
           "output_prefix": "out/"})
}

#[tokio::test]
async fn workflows_crud() {
    let app = TestApp::spawn().await;
    let created = app
        .admin(Method::POST, "/v1/admin/workflows", Some(webhook("hd")))
        .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["webhook_secret_set"], true);
    assert!(
        created.get("webhook_secret").is_none(),
        "secrets are never returned"
    );
    assert!(!created.to_string().contains(WEBHOOK_SECRET));
    assert_eq!(created["source"], "api");

    let taken = app
        .admin(Method::POST, "/v1/admin/workflows", Some(webhook("hd")))
        .await;
    assert_eq!(taken.status(), 409);
    assert_eq!(error_code(taken).await, "name_taken");

    let mut changed = webhook("hd-renamed");
    changed["state"] = json!("Inactive");
    let updated = app
        .admin(
            Method::PUT,
            &format!("/v1/admin/workflows/{id}"),
            Some(changed),
        )
        .await;
    assert_eq!(updated.status(), 200);
    let got: Value = app
        .admin(Method::GET, &format!("/v1/admin/workflows/{id}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["name"], "hd-renamed");
    assert_eq!(got["state"], "Inactive");

    let list: Value = app
        .admin(Method::GET, "/v1/admin/workflows", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["workflows"].as_array().unwrap().len(), 1);

    let deleted = app
        .admin(Method::DELETE, &format!("/v1/admin/workflows/{id}"), None)
        .await;
    assert_eq!(deleted.status(), 204);
    let gone = app
        .admin(Method::GET, &format!("/v1/admin/workflows/{id}"), None)
        .await;
    assert_eq!(gone.status(), 404);
    let gone = app
        .admin(
            Method::PUT,
            &format!("/v1/admin/workflows/{id}"),
            Some(webhook("x")),
        )
        .await;
    assert_eq!(gone.status(), 404);
}

#[tokio::test]
async fn invalid_workflows_are_422() {
    let app = TestApp::spawn().await;
    let long_name = "n".repeat(65);
    let cases = [
        json!({"name": long_name, "state": "Active", "bucket": "media-input", "sink": "mps", "media_workflow_id": "w"}),
        json!({"name": "a", "state": "Active", "bucket": "Bad_Bucket", "sink": "mps", "media_workflow_id": "w"}),
        json!({"name": "a", "state": "Active", "bucket": "media-input", "sink": "mps"}),
        json!({"name": "a", "state": "Active", "bucket": "media-input", "sink": "webhook", "webhook_url": "ftp://x", "webhook_secret": WEBHOOK_SECRET}),
        json!({"name": "a", "state": "Active", "bucket": "media-input", "sink": "webhook", "webhook_url": "https://x.example.com", "webhook_secret": "short"}),
        json!({"name": "a", "state": "Deleted", "bucket": "media-input", "sink": "mps", "media_workflow_id": "w"}),
        json!({"name": "a", "state": "Active", "bucket": "media-input", "sink": "ftp"}),
        json!({"name": "a"}),
    ];
    for body in cases {
        let response = app
            .admin(Method::POST, "/v1/admin/workflows", Some(body.clone()))
            .await;
        assert_eq!(response.status(), 422, "{body}");
        assert_eq!(error_code(response).await, "invalid_request", "{body}");
    }
    let malformed = app
        .client
        .post(app.url("/v1/admin/workflows"))
        .bearer_auth(crate::support::ADMIN_TOKEN)
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
}

#[tokio::test]
async fn the_admin_api_needs_the_admin_token() {
    let app = TestApp::spawn().await;
    for token in [
        None,
        Some("wrong-token-wrong".to_string()),
        Some(app.token("alice")),
    ] {
        let mut request = app.client.get(app.url("/v1/admin/workflows"));
        if let Some(t) = &token {
            request = request.bearer_auth(t);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(error_code(response).await, "unauthorized");
    }
    let closed = TestApp::spawn_with(|c| c.auth.admin_token = None).await;
    let response = closed.admin(Method::GET, "/v1/admin/workflows", None).await;
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn match_explains_each_decision() {
    let app = TestApp::spawn().await;
    app.admin(Method::POST, "/v1/admin/workflows", Some(webhook("hd")))
        .await;
    let mut off = webhook("off");
    off["state"] = json!("Inactive");
    app.admin(Method::POST, "/v1/admin/workflows", Some(off))
        .await;

    let report: Value = app
        .admin(
            Method::GET,
            "/v1/admin/match?bucket=media-input&key=uploads/alice/1/trip.MP4",
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["media"], true);
    assert_eq!(report["extension"], "mp4");
    let decisions = report["workflows"].as_array().unwrap();
    let hd = decisions.iter().find(|d| d["name"] == "hd").unwrap();
    assert_eq!(hd["matched"], true);
    let off = decisions.iter().find(|d| d["name"] == "off").unwrap();
    assert_eq!(off["matched"], false);
    assert_eq!(off["reason"], "workflow is Inactive");

    let report: Value = app
        .admin(
            Method::GET,
            "/v1/admin/match?bucket=media-input&key=out/a.mp4",
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let hd = report["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "hd")
        .unwrap()
        .clone();
    assert_eq!(hd["matched"], false);
    assert!(hd["reason"].as_str().unwrap().contains("output prefix"));

    let missing = app
        .admin(Method::GET, "/v1/admin/match?bucket=media-input", None)
        .await;
    assert_eq!(missing.status(), 400);
    let bad_state = app
        .admin(Method::GET, "/v1/admin/triggers?state=bogus", None)
        .await;
    assert_eq!(bad_state.status(), 400);
}

#[tokio::test]
async fn configured_workflows_are_applied_at_start_and_retired_when_removed() {
    let spec = |name: &str| mediagate::config::WorkflowConfig {
        name: name.into(),
        state: mediagate::config::WorkflowState::Active,
        bucket: "media-input".into(),
        prefix: "uploads/".into(),
        sink: mediagate::config::SinkKind::Mps,
        media_workflow_id: Some("wf".into()),
        webhook_url: None,
        webhook_secret: None,
        output_prefix: None,
        output_bucket: None,
        track_outcome: None,
    };
    let app = TestApp::spawn_with(|c| c.workflows = vec![spec("keep"), spec("drop")]).await;
    let state_of = |list: &Value, name: &str| {
        list["workflows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["name"] == name)
            .map(|w| (w["state"].clone(), w["source"].clone()))
    };
    let list: Value = app
        .admin(Method::GET, "/v1/admin/workflows", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        state_of(&list, "drop"),
        Some((json!("Active"), json!("config")))
    );

    // The next start, with "drop" taken out of the configuration.
    let mut config = app.app.config.clone();
    config.workflows = vec![spec("keep")];
    mediagate::app::App::build(config).await.unwrap();
    let list: Value = app
        .admin(Method::GET, "/v1/admin/workflows", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        state_of(&list, "keep"),
        Some((json!("Active"), json!("config")))
    );
    assert_eq!(
        state_of(&list, "drop"),
        Some((json!("Inactive"), json!("config")))
    );
}

#[tokio::test]
async fn every_admin_change_is_audited_newest_first_without_secrets() {
    let app = TestApp::spawn().await;
    let unauthorized = app
        .client
        .get(app.url("/v1/admin/audit"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);

    let id = app.webhook_workflow("hooks", "uploads/").await;
    let body = json!({"name": "hooks", "state": "Inactive", "bucket": "media-input",
        "prefix": "uploads/", "sink": "webhook", "webhook_url": app.hooks.url,
        "webhook_secret": crate::support::WEBHOOK_SECRET});
    let r = app
        .client
        .put(app.url(&format!("/v1/admin/workflows/{id}")))
        .bearer_auth(crate::support::ADMIN_TOKEN)
        .header("x-request-id", "ops-change-42")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Refused changes are not changes.
    let dup = app
        .admin(
            Method::POST,
            "/v1/admin/workflows",
            Some(
                json!({"name": "hooks", "state": "Active", "bucket": "media-input",
                "sink": "mps", "media_workflow_id": "x"}),
            ),
        )
        .await;
    assert_eq!(dup.status(), 409);
    let r = app
        .admin(Method::DELETE, &format!("/v1/admin/workflows/{id}"), None)
        .await;
    assert_eq!(r.status(), 204);

    let response = app.admin(Method::GET, "/v1/admin/audit", None).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(!text.contains(crate::support::WEBHOOK_SECRET), "{text}");
    assert!(!text.contains(crate::support::ADMIN_TOKEN), "{text}");
    let audit: Value = serde_json::from_str(&text).unwrap();
    let entries = audit["entries"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["workflow.delete", "workflow.update", "workflow.create"]
    );
    for e in entries {
        assert_eq!(e["target"], id.as_str());
        assert_eq!(e["actor"], "admin-token");
        assert_eq!(e["client_ip"], "127.0.0.1");
        assert!(chrono::DateTime::parse_from_rfc3339(e["at"].as_str().unwrap()).is_ok());
    }
    let update = &entries[1];
    assert_eq!(update["request_id"], "ops-change-42");
    assert_eq!(update["detail"]["before"]["state"], "Active");
    assert_eq!(update["detail"]["after"]["state"], "Inactive");
    assert_eq!(entries[0]["detail"]["before"]["name"], "hooks");
    assert_eq!(entries[2]["detail"]["after"]["sink"], "webhook");

    // Pages follow the cursor.
    let first: Value = app
        .admin(Method::GET, "/v1/admin/audit?limit=2", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["entries"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap();
    let rest: Value = app
        .admin(
            Method::GET,
            &format!("/v1/admin/audit?limit=2&cursor={cursor}"),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rest["entries"][0]["action"], "workflow.create");
    assert!(rest["next_cursor"].is_null());
    for bad in ["limit=0", "limit=5000", "cursor=nope", "other=1"] {
        let r = app
            .admin(Method::GET, &format!("/v1/admin/audit?{bad}"), None)
            .await;
        assert_eq!(r.status(), 400, "{bad}");
    }
}

/// Operators who click twice, or scripts that retry, race each other: concurrent reprocess
/// requests for one upload queue its work once (on PostgreSQL as on SQLite).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reprocess_requests_queue_the_work_once() {
    let app = TestApp::spawn().await;
    app.webhook_workflow("hooks", "uploads/").await;
    let (id, key) = app.issue("alice", "a.mp4", json!({})).await;
    assert_eq!(app.upload_completed(&key, "E1", &id).await.status(), 200);
    app.drain().await;
    assert_eq!(app.hooks.count(), 1);
    // Nothing is delivered until the test drains: while the requests race, the work the
    // first one queued is on its way.
    let path = format!("/v1/admin/uploads/{id}/reprocess");
    for round in 0..3 {
        let requests = (0..16).map(|_| app.admin(Method::POST, &path, None));
        let mut statuses: Vec<u16> = futures::future::join_all(requests)
            .await
            .iter()
            .map(|r| r.status().as_u16())
            .collect();
        statuses.sort();
        let mut expected = vec![200];
        expected.extend([409; 15]);
        assert_eq!(statuses, expected, "round {round}");
        app.drain().await;
        assert_eq!(app.hooks.count(), 2 + round, "round {round}");
    }
}
