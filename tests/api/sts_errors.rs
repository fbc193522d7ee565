use std::time::Duration;

use serde_json::json;

use crate::support::{TestApp, error_code};

#[tokio::test]
async fn throttling_and_5xx_are_retried_until_success() {
    let app = TestApp::spawn().await;
    app.sts.fail_next(400, "Throttling.User");
    app.sts.fail_next(503, "ServiceUnavailable");
    let response = app
        .create_upload(&app.token("alice"), json!({"file_name": "a.mp4"}))
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(app.sts.calls(), 3);
    let nonces: std::collections::HashSet<_> = app
        .sts
        .requests()
        .iter()
        .map(|r| r["SignatureNonce"].clone())
        .collect();
    assert_eq!(nonces.len(), 3, "each attempt is signed afresh");
}

#[tokio::test]
async fn an_sts_outage_is_503_with_retry_after() {
    let app = TestApp::spawn().await;
    for _ in 0..3 {
        app.sts.fail_next(500, "InternalError");
    }
    let response = app
        .create_upload(&app.token("alice"), json!({"file_name": "a.mp4"}))
        .await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().get("retry-after").is_some());
    assert_eq!(error_code(response).await, "sts_unavailable");
    assert_eq!(app.sts.calls(), 3);
    assert_eq!(
        app.get(&app.token("alice"), "/v1/uploads")
            .await
            .json::<serde_json::Value>()
            .await
            .unwrap()["uploads"],
        json!([]),
        "nothing recorded without credentials"
    );
}

#[tokio::test]
async fn an_unreachable_sts_is_503() {
    let app = TestApp::spawn_with(|c| {
        // Nothing listens on port 9 on loopback.
        c.sts.endpoint = Some("http://127.0.0.1:9".into());
        c.sts.max_attempts = 2;
    })
    .await;
    let response = app
        .create_upload(&app.token("alice"), json!({"file_name": "a.mp4"}))
        .await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    assert_eq!(error_code(response).await, "sts_unavailable");
}

#[tokio::test]
async fn a_slow_sts_times_out_instead_of_hanging() {
    let app = TestApp::spawn_with(|c| {
        c.sts.timeout_ms = 200;
        c.sts.max_attempts = 2;
    })
    .await;
    app.sts.set_latency(Duration::from_secs(5));
    let started = std::time::Instant::now();
    let response = app
        .create_upload(&app.token("alice"), json!({"file_name": "a.mp4"}))
        .await;
    assert_eq!(response.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn configuration_faults_are_502_and_not_retried() {
    for code in [
        "NoPermission",
        "EntityNotExist.Role",
        "InvalidAccessKeyId.NotFound",
    ] {
        let app = TestApp::spawn().await;
        let status = if code == "NoPermission" { 403 } else { 404 };
        app.sts.fail_next(status, code);
        let response = app
            .create_upload(&app.token("alice"), json!({"file_name": "a.mp4"}))
            .await;
        assert_eq!(response.status(), 502, "{code}");
        let body = response.text().await.unwrap();
        assert!(body.contains("\"sts_error\""), "{body}");
        assert!(
            !body.contains(code),
            "STS internals stay out of responses: {body}"
        );
        assert_eq!(app.sts.calls(), 1, "{code} is not retried");
    }
}

#[tokio::test]
async fn the_fake_rejects_a_wrong_secret_and_we_report_sts_error() {
    let app = TestApp::spawn_with(|c| {
        c.sts.access_key_secret = secrecy::SecretString::from("not-the-secret");
    })
    .await;
    let response = app
        .create_upload(&app.token("alice"), json!({"file_name": "a.mp4"}))
        .await;
    assert_eq!(response.status(), 502);
    assert_eq!(error_code(response).await, "sts_error");
    assert_eq!(app.sts.rejections(), vec!["SignatureDoesNotMatch"]);
}

#[tokio::test]
async fn a_role_that_does_not_exist_is_reported_by_the_fake() {
    let app = TestApp::spawn_with(|c| {
        c.sts.role_arn = "acs:ram::1234567890123456:role/missing".into();
    })
    .await;
    let response = app
        .create_upload(&app.token("alice"), json!({"file_name": "a.mp4"}))
        .await;
    assert_eq!(response.status(), 502);
    assert_eq!(app.sts.rejections(), vec!["EntityNotExist.Role"]);
}

#[tokio::test]
async fn a_duration_beyond_the_roles_maximum_is_refused_by_sts() {
    let app = TestApp::spawn_with(|c| c.sts.duration_seconds = 7200).await;
    let response = app
        .create_upload(&app.token("alice"), json!({"file_name": "a.mp4"}))
        .await;
    assert_eq!(response.status(), 502);
    assert_eq!(
        app.sts.rejections(),
        vec!["InvalidParameter.DurationSeconds"]
    );
}

#[tokio::test]
async fn credentials_expiring_within_the_margin_are_never_handed_out() {
    let app = TestApp::spawn().await;
    app.sts.set_credential_lifetime(60);
    let response = app
        .create_upload(&app.token("alice"), json!({"file_name": "a.mp4"}))
        .await;
    assert_eq!(response.status(), 502);
    assert_eq!(error_code(response).await, "sts_error");
    assert_eq!(
        app.sts.issued(),
        1,
        "STS answered; we refused to pass them on"
    );
}

#[tokio::test]
async fn credentials_past_their_reuse_window_are_refreshed() {
    let app = TestApp::spawn_with(|c| {
        c.sts.refresh_after = 0.5;
        c.sts.min_remaining_seconds = 1;
    })
    .await;
    // 4 s lifetime: reused for 2 s, then replaced.
    app.sts.set_credential_lifetime(4);
    let token = app.token("alice");
    app.create_upload(&token, json!({"file_name": "a.mp4"}))
        .await;
    app.create_upload(&token, json!({"file_name": "a.mp4"}))
        .await;
    assert_eq!(app.sts.issued(), 1);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let response = app
        .create_upload(&token, json!({"file_name": "a.mp4"}))
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(app.sts.issued(), 2);
}
