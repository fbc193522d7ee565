//! `/openapi.json` describes every route the server has, and nothing it does not.

use serde_json::{Value, json};

use crate::support::{ADMIN_TOKEN, TestApp};

/// Every operation the API has. A route added to the table shows up in the document by
/// construction; this list makes sure none disappears or appears unnoticed.
const OPERATIONS: &[(&str, &str)] = &[
    ("post", "/v1/uploads"),
    ("get", "/v1/uploads"),
    ("get", "/v1/uploads/{id}"),
    ("get", "/v1/uploads/{id}/events"),
    ("post", "/v1/uploads/{id}/sign"),
    ("post", "/v1/uploads/{id}/credentials"),
    ("get", "/v1/sts-token"),
    ("get", "/v1/me"),
    ("get", "/v1/admin/users/{user}"),
    ("put", "/v1/admin/users/{user}"),
    ("post", "/v1/notifications/oss-callback"),
    ("post", "/v1/notifications/oss-events"),
    ("post", "/v1/notifications/s3-events"),
    ("post", "/v1/notifications/mps-events"),
    ("post", "/v1/notifications/processing"),
    ("get", "/v1/admin/workflows"),
    ("post", "/v1/admin/workflows"),
    ("get", "/v1/admin/workflows/{id}"),
    ("put", "/v1/admin/workflows/{id}"),
    ("delete", "/v1/admin/workflows/{id}"),
    ("get", "/v1/admin/match"),
    ("get", "/v1/admin/triggers"),
    ("post", "/v1/admin/triggers/{id}/retry"),
    ("get", "/v1/admin/uploads/{id}"),
    ("post", "/v1/admin/uploads/{id}/reprocess"),
    ("get", "/v1/admin/audit"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];

pub async fn document(app: &TestApp) -> Value {
    let r = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    r.json().await.unwrap()
}

/// (method, path) of every operation in `doc`.
pub fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                ops.push((method.clone(), path.clone()));
            }
        }
    }
    ops.sort();
    ops
}

#[tokio::test]
async fn the_document_lists_exactly_the_served_operations() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let mut expected: Vec<(String, String)> = OPERATIONS
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    expected.sort();
    assert_eq!(operations(&doc), expected);

    // Every documented operation reaches a handler: without credentials it is refused or
    // answered, never the router's 404 or 405.
    for (method, path) in operations(&doc) {
        let url = app.url(&path.replace("{id}", "01a23300-0000-7000-8000-000000000000"));
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let r = app
            .client
            .request(method.clone(), &url)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert!(
            ![404, 405].contains(&status),
            "{method} {path} is documented but not routed ({status})"
        );
    }

    // Each operation documents its answers; error answers use the one error schema (the
    // mobile-SDK route keeps its own format).
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            assert!(!responses.is_empty(), "{method} {path}");
            for (status, response) in responses {
                let refers = response.to_string();
                if status.starts_with('4') || status.starts_with('5') {
                    if path == "/v1/sts-token" {
                        assert!(refers.contains("StsTokenError"), "{method} {path} {status}");
                    } else if path != "/readyz" {
                        assert!(
                            refers.contains("ErrorBody"),
                            "{method} {path} {status}: {refers}"
                        );
                    }
                }
            }
        }
    }
    for schema in [
        "ErrorBody",
        "CreateUpload",
        "CreatedUpload",
        "UploadView",
        "WorkflowConfig",
        "AuditView",
        "TriggerAdminView",
        "EventView",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "{schema} missing"
        );
    }
    assert!(doc["components"]["securitySchemes"]["app"].is_object());
}

#[test]
fn no_route_bypasses_the_documented_table() {
    // Plain `.route(` registrations would serve a path the document does not show.
    let source = include_str!("../../src/http/mod.rs");
    assert!(
        !source.contains(".route("),
        "register routes with routes!(...) so they are documented"
    );
}

/// The served document carries this deployment's rules, and they are the server's: an output
/// prefix the document refuses in the input bucket is one the server refuses, and the other
/// way round; a form's declared size is bounded by `storage.max_upload_bytes`.
#[tokio::test]
async fn the_served_document_states_this_deployments_rules() {
    let max = 1_000_000;
    let app = TestApp::spawn_with(|c| c.storage.max_upload_bytes = max).await;
    let doc = document(&app).await;
    let workflow = &doc["components"]["schemas"]["WorkflowConfig"];
    assert_eq!(
        workflow["anyOf"][0]["properties"]["bucket"]["not"]["const"],
        app.app.config.storage.bucket
    );
    let overlapping =
        workflow["anyOf"][1]["properties"]["output_prefix"]["anyOf"][1]["not"]["pattern"]
            .as_str()
            .unwrap();
    let overlapping = regex::Regex::new(overlapping).unwrap();
    for (i, output) in [
        "u",
        "uploads",
        "uploads/",
        "uploads/x/",
        "out/",
        "uploadsx",
        "x",
    ]
    .into_iter()
    .enumerate()
    {
        let body = json!({"name": format!("wf-{i}"), "state": "Active", "bucket": "media-input",
            "prefix": "uploads/", "output_prefix": output, "sink": "mps", "media_workflow_id": "wf"});
        let r = app
            .client
            .post(app.url("/v1/admin/workflows"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        let refused_by_document = overlapping.is_match(output);
        assert_eq!(
            r.status() == 422,
            refused_by_document,
            "{output:?}: server {}, document refuses: {refused_by_document}",
            r.status()
        );
    }
    let create = &doc["components"]["schemas"]["CreateUpload"];
    assert_eq!(create["anyOf"][0]["properties"]["size"]["maximum"], max);
    let form = |size: u64| json!({"file_name": "a.mp4", "mode": "post_policy", "size": size});
    let user = app.token("alice");
    for (size, status) in [(max, 201), (max + 1, 422)] {
        let r = app
            .client
            .post(app.url("/v1/uploads"))
            .bearer_auth(&user)
            .json(&form(size))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{size}");
    }
}
