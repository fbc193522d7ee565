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
    let response = app
        .create_upload(&app.token("alice"), json!({"file_name": "a.mp4"}))
        .await;
    // An STS answering in 5 s would have been 201: both attempts were cut at 200 ms.
    assert_eq!(response.status(), 503);
    assert_eq!(app.sts.calls(), 2);
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
    // 10 min lifetime: reused for 5 min of the app's clock, then replaced.
    app.sts.set_credential_lifetime(600);
    let token = app.token("alice");
    app.create_upload(&token, json!({"file_name": "a.mp4"}))
        .await;
    app.create_upload(&token, json!({"file_name": "a.mp4"}))
        .await;
    assert_eq!(app.sts.issued(), 1);
    app.clock.advance(Duration::from_secs(301));
    let response = app
        .create_upload(&token, json!({"file_name": "a.mp4"}))
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(app.sts.issued(), 2);
}

/// A loopback server that reads each request and answers with `status` and an XML `body`
/// (never, when `answer` is `None`).
async fn raw_sts(answer: Option<(&'static str, &'static str)>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let _ = socket.read(&mut buf).await;
                match answer {
                    Some((status, body)) => {
                        let response = format!(
                            "HTTP/1.1 {status}\r\ncontent-type: text/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = socket.write_all(response.as_bytes()).await;
                    }
                    None => tokio::time::sleep(Duration::from_secs(3600)).await,
                }
            });
        }
    });
    url
}

fn s3_provider(c: &mut mediagate::config::Config, sts: String) {
    c.storage.provider = mediagate::config::Provider::S3;
    c.storage.region = "us-east-1".into();
    c.storage.endpoint = "http://127.0.0.1:7480".into();
    c.sts.endpoint = Some(sts);
    c.sts.role_arn = "arn:aws:iam::123456789012:role/uploader".into();
    c.sts.max_attempts = 2;
    c.sts.timeout_ms = 300;
}

#[tokio::test]
async fn s3_provider_an_unreachable_or_hung_sts_is_503_without_hanging() {
    let hung = raw_sts(None).await;
    for sts in ["http://127.0.0.1:9".to_owned(), hung] {
        let app = TestApp::spawn_with(|c| s3_provider(c, sts)).await;
        // A hung STS is cut at each attempt's timeout (a hang would never answer).
        let response = app
            .create_upload(&app.token("alice"), json!({"file_name": "a.mp4"}))
            .await;
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "5");
        assert_eq!(error_code(response).await, "sts_unavailable");
    }
}

#[tokio::test]
async fn s3_provider_sts_refusals_are_502_and_throttling_is_503() {
    const DENIED: &str = "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User: x is not authorized to perform sts:AssumeRole</Message></Error><RequestId>r</RequestId></ErrorResponse>";
    const THROTTLED: &str = "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>";
    for (answer, status, code) in [
        (("403 Forbidden", DENIED), 502, "sts_error"),
        (("400 Bad Request", THROTTLED), 503, "sts_unavailable"),
    ] {
        let sts = raw_sts(Some(answer)).await;
        let app = TestApp::spawn_with(|c| s3_provider(c, sts)).await;
        let response = app
            .create_upload(&app.token("alice"), json!({"file_name": "a.mp4"}))
            .await;
        assert_eq!(response.status(), status);
        assert_eq!(error_code(response).await, code);
    }
}
