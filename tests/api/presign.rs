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

/// A presigned upload of `user`'s: (upload id, object key).
async fn presigned_ids(app: &TestApp, user: &str) -> (String, String) {
    let upload = presigned_upload(app, user).await;
    let field = |name: &str| upload[name].as_str().unwrap().to_owned();
    (field("upload_id"), field("object_key"))
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
    app.drain().await;
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

/// A `contentType` enters OSS's newline-separated string to sign: with line breaks it would
/// write the expiry and resource lines itself and sign a PUT of another key for as long as
/// the caller likes. Refused with the rule the API document states.
#[tokio::test]
async fn a_content_type_never_writes_lines_of_the_string_to_sign() {
    let app = TestApp::spawn().await;
    let (id, key) = presigned_ids(&app, "alice").await;
    for evil in [
        "video/mp4\n4102444800\n/media-input/uploads/bob/x",
        "video/mp4\r\nx-oss-object-acl: public-read",
        "video/mp4\u{7f}",
        &"v".repeat(256),
    ] {
        for method in ["PUT", "POST"] {
            let body = json!({"method": method, "key": key, "contentType": evil});
            let r = sign(&app, "alice", &id, body).await;
            assert_eq!(r.status(), 422, "{evil:?}");
            assert_eq!(error_code(r).await, "invalid_request");
        }
    }
    let r = sign(
        &app,
        "alice",
        &id,
        json!({"method": "PUT", "key": key, "contentType": "video/mp4; codecs=\"avc1\""}),
    )
    .await;
    assert_eq!(r.status(), 200);
}

/// OSS signs sub-resource values raw: an `&` in an `uploadId` would sign extra sub-resources
/// (`x-oss-process`) of the caller's choosing.
#[tokio::test]
async fn multipart_ids_are_of_a_safe_alphabet() {
    let app = TestApp::spawn().await;
    let (id, key) = presigned_ids(&app, "alice").await;
    for evil in [
        "0004B9894A22E5B1888A1E29F8236E2D&x-oss-process=image/info",
        "MP1&response-content-type=text/html",
        "MP1%26x",
        "MP1 x",
        "MP1#x",
    ] {
        for body in [
            json!({"method": "GET", "key": key, "uploadId": evil}),
            json!({"method": "PUT", "key": key, "uploadId": evil, "partNumber": 1}),
        ] {
            let r = sign(&app, "alice", &id, body).await;
            assert_eq!(r.status(), 422, "{evil:?}");
            assert_eq!(error_code(r).await, "invalid_request");
        }
    }
    assert_eq!(app.app.store.multipart_upload(&id).await.unwrap(), None);
    // What stores mint passes: OSS hex, RGW's `2~...`, S3's base64.
    for good in [
        "0004B9894A22E5B1888A1E29F8236E2D",
        "2~m9vNtB3Wv1jXD0ttxxeQ2ULpPuVnpEO",
        "VXBsb2FkIElE.Zm9y_NmllcyBteS1tb3ZpZS5tMnRz+/A==",
    ] {
        let body = json!({"method": "GET", "key": key, "uploadId": good});
        assert_eq!(sign(&app, "alice", &id, body).await.status(), 200, "{good}");
    }
}

/// Every rule the API document states for a sign request is enforced: `expiresIn` 1-604800.
#[tokio::test]
async fn expiry_is_held_to_the_documented_range() {
    let app = TestApp::spawn().await;
    let (id, key) = presigned_ids(&app, "alice").await;
    for expires in [0, 604_801] {
        let body = json!({"method": "PUT", "key": key, "expiresIn": expires});
        let r = sign(&app, "alice", &id, body).await;
        assert_eq!(r.status(), 422, "{expires}");
        assert_eq!(error_code(r).await, "invalid_request");
    }
    let body = json!({"method": "PUT", "key": key, "expiresIn": 1});
    let signed: Value = sign(&app, "alice", &id, body).await.json().await.unwrap();
    let url = url::Url::parse(signed["url"].as_str().unwrap()).unwrap();
    let expires: i64 = url
        .query_pairs()
        .find(|(k, _)| k == "Expires")
        .unwrap()
        .1
        .parse()
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!((now..=now + 2).contains(&expires), "{expires} vs {now}");
}

/// With one set of credentials per upload, signing every part of it costs one `AssumeRole`
/// (cached for the credentials' life, one call at a time), not one per sign call; and what
/// still has to reach STS counts against the vend limits.
#[tokio::test]
async fn signing_the_parts_of_one_upload_does_not_call_sts_per_part() {
    let app = TestApp::spawn_with(|c| {
        c.storage.credential_scope = mediagate::config::CredentialScope::Upload;
    })
    .await;
    let (id, key) = presigned_ids(&app, "alice").await;
    assert_eq!(app.sts.calls(), 1);
    let calls = (1..=200).map(|part| {
        let body = json!({"method": "PUT", "key": key, "uploadId": "MP1", "partNumber": part});
        sign(&app, "alice", &id, body)
    });
    for r in futures::future::join_all(calls).await {
        assert_eq!(r.status(), 200);
    }
    assert_eq!(app.sts.calls(), 1, "one AssumeRole for the whole upload");

    // Credentials that are never fresh enough to reuse: every sign call needs STS, and those
    // calls are vend requests like any other.
    let app = TestApp::spawn_with(|c| {
        c.storage.credential_scope = mediagate::config::CredentialScope::Upload;
        c.sts.refresh_after = 1e-9;
        c.limits.vend_per_user_per_minute = 5;
    })
    .await;
    let (id, key) = presigned_ids(&app, "alice").await;
    let mut statuses = Vec::new();
    for part in 1..=8 {
        let body = json!({"method": "PUT", "key": key, "uploadId": "MP1", "partNumber": part});
        let r = sign(&app, "alice", &id, body).await;
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
            assert_eq!(error_code(r).await, "rate_limited");
        }
    }
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429, 429, 429]);
    assert_eq!(app.sts.calls(), 5, "refused sign calls reach no STS");
}
