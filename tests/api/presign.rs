//! `mode: "presigned"` and `POST /v1/uploads/{id}/sign`: no credentials ever reach the
//! client; each store request is signed by the server for the upload's own key only.

use axum::http::{HeaderMap, Method, header};
use serde_json::{Value, json};

use crate::support::oss_fake::v1_signature;
use crate::support::{TestApp, error_code};

async fn presigned_upload(app: &TestApp, user: &str) -> Value {
    let r = app
        .create_upload(
            &app.token(user),
            json!({"file_name": "clip.mp4", "mode": "presigned", "content_type": "video/mp4"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

async fn sign(app: &TestApp, user: &str, id: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/v1/uploads/{id}/sign")))
        .bearer_auth(app.token(user))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Recomputes the OSS query signature of `url` as OSS does (the `Expires` value in the Date
/// position, sub-resources and the STS token in the resource).
fn oss_signature_holds(
    app: &TestApp,
    url: &str,
    method: &Method,
    content_type: Option<&str>,
) -> bool {
    let url = url::Url::parse(url).unwrap();
    let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut sub: Vec<String> = query
        .iter()
        .filter(|(k, _)| {
            ["uploads", "partNumber", "uploadId", "security-token"].contains(&k.as_str())
        })
        .map(|(k, v)| {
            if v.is_empty() {
                k.clone()
            } else {
                format!("{k}={v}")
            }
        })
        .collect();
    sub.sort();
    let key = percent_encoding::percent_decode_str(url.path())
        .decode_utf8_lossy()
        .into_owned();
    let mut resource = format!("/media-input{key}");
    if !sub.is_empty() {
        resource = format!("{resource}?{}", sub.join("&"));
    }
    let mut headers = HeaderMap::new();
    headers.insert(header::DATE, get("Expires").unwrap().parse().unwrap());
    if let Some(t) = content_type {
        headers.insert(header::CONTENT_TYPE, t.parse().unwrap());
    }
    // The vended session keys sign it, so OSS still enforces the session policy.
    let secret = app.sts.secret_of(&get("OSSAccessKeyId").unwrap()).unwrap();
    !url.as_str().contains(&secret)
        && get("Signature").unwrap() == v1_signature(&secret, method, &headers, &resource)
}

#[tokio::test]
async fn presigned_uploads_get_no_credentials_and_signed_requests_for_their_key() {
    let app = TestApp::spawn().await;
    let upload = presigned_upload(&app, "alice").await;
    assert!(upload.get("credentials").is_none(), "{upload}");
    assert!(upload.get("callback").is_none() && upload.get("post_policy").is_none());
    let (id, key) = (
        upload["upload_id"].as_str().unwrap(),
        upload["object_key"].as_str().unwrap(),
    );

    for (body, method, content_type) in [
        (
            json!({"method": "PUT", "key": key, "contentType": "video/mp4"}),
            Method::PUT,
            Some("video/mp4"),
        ),
        (
            json!({"method": "POST", "key": key}),
            Method::POST,
            Some("video/mp4"),
        ),
        (
            json!({"method": "PUT", "key": key, "uploadId": "MP1", "partNumber": 3}),
            Method::PUT,
            None,
        ),
        (
            json!({"method": "GET", "key": key, "uploadId": "MP1"}),
            Method::GET,
            None,
        ),
        (
            json!({"method": "POST", "key": key, "uploadId": "MP1"}),
            Method::POST,
            Some("application/xml"),
        ),
        (
            json!({"method": "DELETE", "key": key, "uploadId": "MP1", "expiresIn": 60}),
            Method::DELETE,
            None,
        ),
    ] {
        let r = sign(&app, "alice", id, body.clone()).await;
        assert_eq!(r.status(), 200, "{body}");
        let signed: Value = r.json().await.unwrap();
        assert_eq!(signed["key"], key);
        let url = signed["url"].as_str().unwrap();
        assert!(
            url.starts_with("https://media-input.oss-cn-hangzhou.aliyuncs.com/uploads/alice/"),
            "{url}"
        );
        assert_eq!(
            signed["headers"]["content-type"].as_str(),
            content_type,
            "{body}"
        );
        assert!(
            oss_signature_holds(&app, url, &method, content_type),
            "{body}: {url}"
        );
    }
    let full = app.admin_upload(id).await;
    assert_eq!(full["upload_id"], id);
    assert_eq!(
        app.app.store.multipart_upload(id).await.unwrap().as_deref(),
        Some("MP1")
    );
}

#[tokio::test]
async fn sign_requests_are_refused_beyond_the_uploads_own_key_and_operations() {
    let app = TestApp::spawn().await;
    let upload = presigned_upload(&app, "alice").await;
    let (id, key) = (
        upload["upload_id"].as_str().unwrap(),
        upload["object_key"].as_str().unwrap(),
    );
    // Another key, even the user's own prefix or another of her uploads: 403.
    let other = presigned_upload(&app, "alice").await;
    for wrong in [
        key.replace("clip.mp4", "other.mp4"),
        other["object_key"].as_str().unwrap().to_owned(),
        "uploads/bob/x/clip.mp4".into(),
    ] {
        let r = sign(&app, "alice", id, json!({"method": "PUT", "key": wrong})).await;
        assert_eq!(r.status(), 403);
        assert_eq!(error_code(r).await, "forbidden");
    }
    // Another user's upload: 404, as if it did not exist.
    let r = sign(&app, "bob", id, json!({"method": "PUT", "key": key})).await;
    assert_eq!(r.status(), 404);
    // Operations that do not exist, and part numbers outside 1..10000.
    for body in [
        json!({"method": "GET", "key": key}),
        json!({"method": "DELETE", "key": key}),
        json!({"method": "PUT", "key": key, "uploadId": "MP1"}),
        json!({"method": "PUT", "key": key, "uploadId": "MP1", "partNumber": 0}),
        json!({"method": "PUT", "key": key, "uploadId": "MP1", "partNumber": 10001}),
        json!({"method": "PATCH", "key": key}),
        json!({"method": "PUT", "key": key, "uploadId": "bad id"}),
    ] {
        let r = sign(&app, "alice", id, body.clone()).await;
        assert!(
            r.status() == 422 || r.status() == 400,
            "{body}: {}",
            r.status()
        );
    }
    // Uploads of another mode, and uploads no longer issued: 409.
    let (sts_id, sts_key) = app.issue("alice", "a.mp4", json!({})).await;
    let r = sign(
        &app,
        "alice",
        &sts_id,
        json!({"method": "PUT", "key": sts_key}),
    )
    .await;
    assert_eq!(r.status(), 409);
    app.webhook_workflow("hooks", "uploads/").await;
    app.upload_completed(key, "E1", id).await;
    app.settle().await;
    let r = sign(&app, "alice", id, json!({"method": "PUT", "key": key})).await;
    assert_eq!(r.status(), 409);
    assert_eq!(error_code(r).await, "invalid_state");
}

/// A `post_policy` upload's one PUT is answered with its form (Uppy then POSTs the fields);
/// its other requests are not signed.
#[tokio::test]
async fn a_form_uploads_put_is_answered_with_the_form() {
    let app = TestApp::spawn().await;
    let r = app
        .create_upload(
            &app.token("alice"),
            json!({"file_name": "clip.mp4", "mode": "post_policy", "size": 4096}),
        )
        .await;
    let upload: Value = r.json().await.unwrap();
    let (id, key) = (
        upload["upload_id"].as_str().unwrap(),
        upload["object_key"].as_str().unwrap(),
    );
    let r = sign(&app, "alice", id, json!({"method": "PUT", "key": key})).await;
    assert_eq!(r.status(), 200);
    let signed: Value = r.json().await.unwrap();
    assert_eq!(
        signed["url"],
        "https://media-input.oss-cn-hangzhou.aliyuncs.com/"
    );
    assert_eq!(signed["fields"]["key"], key);
    assert!(signed["fields"]["policy"].is_string() && signed["fields"]["Signature"].is_string());
    // The form pins the declared size, as the one from POST /v1/uploads does.
    let policy = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        signed["fields"]["policy"].as_str().unwrap(),
    )
    .unwrap();
    assert!(
        String::from_utf8(policy)
            .unwrap()
            .contains("[\"content-length-range\",4096,4096]")
    );
    let r = sign(&app, "alice", id, json!({"method": "POST", "key": key})).await;
    assert_eq!(r.status(), 409);
}
