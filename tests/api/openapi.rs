//! `/openapi.json` describes every route the server has, and nothing it does not.

use serde_json::Value;

use crate::support::TestApp;

/// Every operation the API has. A route added to the table shows up in the document by
/// construction; this list makes sure none disappears or appears unnoticed.
const OPERATIONS: &[(&str, &str)] = &[
    ("post", "/v1/uploads"),
    ("get", "/v1/uploads"),
    ("get", "/v1/uploads/{id}"),
    ("post", "/v1/uploads/{id}/credentials"),
    ("get", "/v1/sts-token"),
    ("post", "/v1/notifications/oss-callback"),
    ("post", "/v1/notifications/oss-events"),
    ("post", "/v1/notifications/s3-events"),
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
