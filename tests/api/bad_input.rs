use serde_json::{Value, json};

use crate::support::{TestApp, error_code};

async fn post_raw(app: &TestApp, body: Vec<u8>) -> reqwest::Response {
    app.client
        .post(app.url("/v1/uploads"))
        .bearer_auth(app.token("alice"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn malformed_bodies_are_400_json() {
    let app = TestApp::spawn().await;
    for body in [
        b"".to_vec(),
        b"{".to_vec(),
        b"not json".to_vec(),
        b"{\"file_name\": \"a.mp4\"} trailing".to_vec(),
        b"{\"file_name\": \"\xff\xfe.mp4\"}".to_vec(),
    ] {
        let response = post_raw(&app, body.clone()).await;
        assert_eq!(response.status(), 400, "{}", String::from_utf8_lossy(&body));
        assert_eq!(error_code(response).await, "bad_request");
    }
    assert_eq!(app.sts.calls(), 0);
}

#[tokio::test]
async fn wrong_shapes_are_422_invalid_request() {
    let app = TestApp::spawn().await;
    for body in [
        json!({}),
        json!([]),
        json!({"file_name": 42}),
        json!({"file_name": "a.mp4", "size": -1}),
        json!({"file_name": "a.mp4", "mode": "ftp"}),
        json!({"file_name": "a.mp4", "unexpected": true}),
        json!({"file_name": "a.mp4", "content_type": "video/\u{0007}"}),
    ] {
        let response = app.create_upload(&app.token("alice"), body.clone()).await;
        assert_eq!(response.status(), 422, "{body}");
        assert_eq!(error_code(response).await, "invalid_request", "{body}");
    }
}

#[tokio::test]
async fn file_names_that_could_escape_are_refused() {
    let app = TestApp::spawn().await;
    for name in [
        "",
        ".",
        "..",
        "../x.mp4",
        "../../etc/passwd",
        "a/b.mp4",
        "/abs.mp4",
        "a\\b.mp4",
        "a\nb.mp4",
        "a\u{0000}.mp4",
        "*.mp4",
        "x?.mp4",
        "q\".mp4",
    ] {
        let response = app
            .create_upload(&app.token("alice"), json!({"file_name": name}))
            .await;
        assert_eq!(response.status(), 422, "{name:?}");
        assert_eq!(error_code(response).await, "invalid_request", "{name:?}");
    }
    let long = format!("{}.mp4", "a".repeat(1021));
    let response = app
        .create_upload(&app.token("alice"), json!({"file_name": long}))
        .await;
    assert_eq!(response.status(), 422);
    assert_eq!(app.sts.calls(), 0);
}

#[tokio::test]
async fn non_media_extensions_are_422_unsupported_media_type() {
    let app = TestApp::spawn().await;
    for name in ["notes.txt", "photo.jpeg", "movie.", "archive.mp4.zip"] {
        let response = app
            .create_upload(&app.token("alice"), json!({"file_name": name}))
            .await;
        assert_eq!(response.status(), 422, "{name}");
        assert_eq!(
            error_code(response).await,
            "unsupported_media_type",
            "{name}"
        );
    }
    for name in ["MOVIE.MKV", "song.Mp3", "raw-capture", "clip.webm"] {
        let response = app
            .create_upload(&app.token("alice"), json!({"file_name": name}))
            .await;
        assert_eq!(response.status(), 201, "{name}");
    }
}

#[tokio::test]
async fn media_attributes_beyond_addmedia_limits_are_422() {
    let app = TestApp::spawn().await;
    for media in [
        json!({"title": "t".repeat(129)}),
        json!({"description": "d".repeat(1025)}),
        json!({"tags": vec!["t"; 17]}),
        json!({"tags": ["a,b"]}),
        json!({"tags": ["x".repeat(33)]}),
        json!({"cate_id": -1}),
        json!({"cover_url": "ftp://x/y.jpg"}),
        json!({"user_data": "u".repeat(1025)}),
    ] {
        let response = app
            .create_upload(
                &app.token("alice"),
                json!({"file_name": "a.mp4", "media": media}),
            )
            .await;
        assert_eq!(response.status(), 422, "{media}");
        assert_eq!(
            error_code(response).await,
            "invalid_media_attributes",
            "{media}"
        );
    }
    let response = app
        .create_upload(
            &app.token("alice"),
            json!({"file_name": "a.mp4", "media": {"colour": "red"}}),
        )
        .await;
    assert_eq!(error_code(response).await, "invalid_request");
    assert_eq!(app.sts.calls(), 0);
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let app = TestApp::spawn().await;
    let body = json!({"file_name": "a.mp4", "media": {"description": "d".repeat(70 * 1024)}});
    let response = post_raw(&app, serde_json::to_vec(&body).unwrap()).await;
    assert_eq!(response.status(), 413);
    assert_eq!(error_code(response).await, "payload_too_large");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let app = TestApp::spawn().await;
    let response = app.get(&app.token("a"), "/v1/nothing-here").await;
    assert_eq!(response.status(), 404);
    assert_eq!(error_code(response).await, "not_found");
    let response = app
        .client
        .delete(app.url("/v1/uploads"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(error_code(response).await, "method_not_allowed");
}

#[tokio::test]
async fn secrets_never_appear_in_error_responses() {
    let app = TestApp::spawn_with(|c| {
        c.sts.access_key_secret = secrecy::SecretString::from("wrong-secret-should-not-leak");
    })
    .await;
    let response = app
        .create_upload(&app.token("alice"), json!({"file_name": "a.mp4"}))
        .await;
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    let text = body.to_string();
    assert!(!text.contains("wrong-secret"));
    assert!(!text.contains(crate::support::sts_fake::ACCESS_KEY_ID));
}
