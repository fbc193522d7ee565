use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use mediagate::config::CredentialScope;
use serde_json::{Value, json};

use crate::support::{TestApp, error_code};

fn policy_resources(params: &std::collections::HashMap<String, String>) -> Vec<String> {
    let policy: Value = serde_json::from_str(&params["Policy"]).unwrap();
    assert_eq!(
        policy["Statement"][0]["Action"],
        json!(["oss:PutObject", "oss:AbortMultipartUpload", "oss:ListParts"])
    );
    policy["Statement"][0]["Resource"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn vends_credentials_scoped_to_the_users_prefix() {
    let app = TestApp::spawn().await;
    let response = app
        .create_upload(
            &app.token("alice"),
            json!({"file_name": "trip.MP4", "size": 1024, "content_type": "video/mp4",
                   "media": {"title": "Trip", "tags": ["beach", "2024"]}}),
        )
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    let id = body["upload_id"].as_str().unwrap();
    assert_eq!(body["object_key"], format!("uploads/alice/{id}/trip.MP4"));
    assert_eq!(body["bucket"], "media-input");
    assert_eq!(body["region"], "cn-hangzhou");
    assert_eq!(body["endpoint"], "https://oss-cn-hangzhou.aliyuncs.com");
    assert!(
        body["credentials"]["access_key_id"]
            .as_str()
            .unwrap()
            .starts_with("STS.")
    );
    assert!(
        body["credentials"]["access_key_secret"]
            .as_str()
            .unwrap()
            .starts_with("fake-secret-")
    );
    assert!(
        body["credentials"]["security_token"]
            .as_str()
            .unwrap()
            .starts_with("CAIS")
    );
    assert_eq!(body["expires_at"], body["credentials"]["expiration"]);

    let requests = app.sts.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r["RoleSessionName"], "mg.alice");
    assert_eq!(r["DurationSeconds"], "3600");
    assert!(!r["Policy"].contains(' '), "policy is compact JSON");
    assert_eq!(
        policy_resources(r),
        vec!["acs:oss:*:*:media-input/uploads/alice/*".to_string()]
    );

    let callback: Value = serde_json::from_slice(
        &B64.decode(body["callback"]["callback"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        callback["callbackUrl"],
        "https://uploads.example.com/v1/notifications/oss-callback"
    );
    let vars: Value = serde_json::from_slice(
        &B64.decode(body["callback"]["callback_var"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(vars["x:upload_id"], id);

    let upload: Value = app
        .get(&app.token("alice"), &format!("/v1/uploads/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(upload["state"], "issued");
    assert_eq!(upload["object_key"], body["object_key"]);
    assert_eq!(upload["media"]["title"], "Trip");
    assert_eq!(upload["media"]["tags"], json!(["beach", "2024"]));
    assert_eq!(upload["size"], 1024);
    assert_eq!(upload["triggers"], json!([]));
    assert!(upload["uploaded_at"].is_null());
}

#[tokio::test]
async fn cached_credentials_are_reused_per_user() {
    let app = TestApp::spawn().await;
    let alice = app.token("alice");
    let mut keys = Vec::new();
    for _ in 0..3 {
        let body: Value = app
            .create_upload(&alice, json!({"file_name": "a.mp4"}))
            .await
            .json()
            .await
            .unwrap();
        keys.push(body["credentials"]["access_key_id"].clone());
    }
    assert_eq!(app.sts.issued(), 1);
    assert!(keys.iter().all(|k| *k == keys[0]));

    let bob: Value = app
        .create_upload(&app.token("bob"), json!({"file_name": "b.mp4"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(app.sts.issued(), 2);
    assert_ne!(bob["credentials"]["access_key_id"], keys[0]);
}

#[tokio::test]
async fn concurrent_requests_of_one_user_share_one_sts_call() {
    let app = TestApp::spawn().await;
    app.sts.set_latency(std::time::Duration::from_millis(100));
    let token = app.token("carol");
    let responses = futures::future::join_all(
        (0..16).map(|_| app.create_upload(&token, json!({"file_name": "c.mp4"}))),
    )
    .await;
    for r in responses {
        assert_eq!(r.status(), 201);
    }
    assert_eq!(app.sts.calls(), 1);
}

#[tokio::test]
async fn upload_scope_covers_exactly_one_object_and_is_not_cached() {
    let app = TestApp::spawn_with(|c| c.storage.credential_scope = CredentialScope::Upload).await;
    let token = app.token("dave");
    let mut keys = Vec::new();
    for _ in 0..2 {
        let body: Value = app
            .create_upload(&token, json!({"file_name": "clip.mov"}))
            .await
            .json()
            .await
            .unwrap();
        keys.push(body["object_key"].as_str().unwrap().to_owned());
    }
    let requests = app.sts.requests();
    assert_eq!(requests.len(), 2);
    for (r, key) in requests.iter().zip(&keys) {
        assert_eq!(
            policy_resources(r),
            vec![format!("acs:oss:*:*:media-input/{key}")]
        );
    }
}

#[tokio::test]
async fn unsafe_subjects_get_a_hashed_prefix() {
    let app = TestApp::spawn().await;
    let body: Value = app
        .create_upload(&app.token("../../admin/*"), json!({"file_name": "x.mp4"}))
        .await
        .json()
        .await
        .unwrap();
    let key = body["object_key"].as_str().unwrap();
    let segment = key
        .strip_prefix("uploads/")
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    assert!(segment.starts_with("_h") && segment.len() == 34, "{key}");
    let resources = policy_resources(&app.sts.requests()[0]);
    assert_eq!(
        resources,
        vec![format!("acs:oss:*:*:media-input/uploads/{segment}/*")]
    );
}

#[tokio::test]
async fn refreshing_credentials_is_for_the_owner_only() {
    // Credentials are reused while fresh; here they never are, so a refresh gets new ones.
    let app = TestApp::spawn_with(|c| {
        c.storage.credential_scope = CredentialScope::Upload;
        c.sts.refresh_after = 1e-9;
    })
    .await;
    let alice = app.token("alice");
    let body: Value = app
        .create_upload(&alice, json!({"file_name": "long.mp4"}))
        .await
        .json()
        .await
        .unwrap();
    let id = body["upload_id"].as_str().unwrap();
    let path = format!("/v1/uploads/{id}/credentials");

    let refreshed = app
        .client
        .post(app.url(&path))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 200);
    let refreshed: Value = refreshed.json().await.unwrap();
    assert_eq!(refreshed["object_key"], body["object_key"]);
    assert_ne!(
        refreshed["credentials"]["access_key_id"],
        body["credentials"]["access_key_id"]
    );
    assert_eq!(
        policy_resources(&app.sts.requests()[1]),
        vec![format!(
            "acs:oss:*:*:media-input/{}",
            body["object_key"].as_str().unwrap()
        )]
    );

    let mallory = app
        .client
        .post(app.url(&path))
        .bearer_auth(app.token("mallory"))
        .send()
        .await
        .unwrap();
    assert_eq!(mallory.status(), 404);
    assert_eq!(error_code(mallory).await, "not_found");
    let peek = app
        .get(&app.token("mallory"), &format!("/v1/uploads/{id}"))
        .await;
    assert_eq!(peek.status(), 404);
    let missing = app
        .client
        .post(app.url(&format!("/v1/uploads/{}/credentials", uuid::Uuid::now_v7())))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let garbage = app.get(&alice, "/v1/uploads/not-a-uuid").await;
    assert_eq!(garbage.status(), 404);
    assert_eq!(app.sts.issued(), 2, "no credentials for others");
}

#[tokio::test]
async fn history_is_per_user_newest_first_and_paginated() {
    let app = TestApp::spawn().await;
    let erin = app.token("erin");
    let mut ids = Vec::new();
    for i in 0..5 {
        let body: Value = app
            .create_upload(&erin, json!({"file_name": format!("{i}.mp3")}))
            .await
            .json()
            .await
            .unwrap();
        ids.push(body["upload_id"].as_str().unwrap().to_owned());
    }
    app.create_upload(&app.token("frank"), json!({"file_name": "f.mp3"}))
        .await;
    ids.reverse();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/uploads?limit=2&cursor={c}"),
            None => "/v1/uploads?limit=2".to_string(),
        };
        let page: Value = app.get(&erin, &path).await.json().await.unwrap();
        let uploads = page["uploads"].as_array().unwrap();
        assert!(uploads.len() <= 2);
        seen.extend(
            uploads
                .iter()
                .map(|u| u["upload_id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ids);

    let bad = app.get(&erin, "/v1/uploads?limit=0").await;
    assert_eq!(bad.status(), 400);
    assert_eq!(error_code(bad).await, "bad_request");
    let bad = app.get(&erin, "/v1/uploads?limit=abc").await;
    assert_eq!(bad.status(), 400);
    let bad = app.get(&erin, "/v1/uploads?cursor=zzz").await;
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn sts_token_speaks_the_mobile_sdk_format() {
    let app = TestApp::spawn().await;
    let response = app.get(&app.token("gina"), "/v1/sts-token").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["StatusCode"], 200);
    for field in [
        "AccessKeyId",
        "AccessKeySecret",
        "SecurityToken",
        "Expiration",
    ] {
        assert!(body[field].is_string(), "{field} in {body}");
    }
    assert!(chrono::DateTime::parse_from_rfc3339(body["Expiration"].as_str().unwrap()).is_ok());
    assert_eq!(
        policy_resources(&app.sts.requests()[0]),
        vec!["acs:oss:*:*:media-input/uploads/gina/*".to_string()]
    );

    let denied = app
        .client
        .get(app.url("/v1/sts-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
    let body: Value = denied.json().await.unwrap();
    assert_eq!(body["StatusCode"], 401);
    assert_eq!(body["ErrorCode"], "unauthorized");
    assert!(body["ErrorMessage"].is_string());
}

#[tokio::test]
async fn sts_token_is_refused_when_credentials_are_per_object() {
    let app = TestApp::spawn_with(|c| c.storage.credential_scope = CredentialScope::Upload).await;
    let response = app.get(&app.token("gina"), "/v1/sts-token").await;
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["ErrorCode"], "forbidden");
    assert_eq!(app.sts.calls(), 0);
}

#[tokio::test]
async fn health_and_readiness() {
    // Readiness reports the worker's loop, so the app runs it.
    let app = TestApp::builder().running_worker().spawn().await;
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["database"]["status"], "ok");
    assert_eq!(body["checks"]["worker"]["status"], "ok");

    app.app.store.close().await;
    // Answers are shared for a second of the app's clock; the next fresh one sees the closed
    // database.
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "the answer of a moment ago");
    app.clock.advance(std::time::Duration::from_secs(1));
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["database"]["status"], "failed");
}

#[tokio::test]
async fn post_policy_mode_gives_a_signed_form_and_never_the_secret() {
    let app = TestApp::spawn_with(|c| c.storage.max_upload_bytes = 100 * 1024 * 1024).await;
    let response = app
        .create_upload(
            &app.token("alice"),
            json!({"file_name": "clip.webm", "size": 2048, "mode": "post_policy"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert!(body.get("credentials").is_none());
    let form = &body["post_policy"];
    assert_eq!(
        form["url"],
        "https://media-input.oss-cn-hangzhou.aliyuncs.com/"
    );
    let fields = &form["fields"];
    assert_eq!(fields["key"], body["object_key"]);
    assert_eq!(fields["success_action_status"], "200");
    assert_eq!(fields["x:upload_id"], body["upload_id"]);
    let access_key_id = fields["OSSAccessKeyId"].as_str().unwrap();
    let secret = app.sts.secret_of(access_key_id).expect("issued by the STS");
    assert!(
        !body.to_string().contains(&secret),
        "the secret never reaches the browser"
    );
    assert!(
        fields["x-oss-security-token"]
            .as_str()
            .unwrap()
            .starts_with("CAIS")
    );

    let policy_b64 = fields["policy"].as_str().unwrap();
    assert_eq!(
        fields["Signature"],
        mediagate::signing::hmac_sha1_base64(secret.as_bytes(), policy_b64.as_bytes())
    );
    let policy: Value = serde_json::from_slice(&B64.decode(policy_b64).unwrap()).unwrap();
    let conditions = policy["conditions"].as_array().unwrap();
    assert!(conditions.contains(&json!({"bucket": "media-input"})));
    assert!(conditions.contains(&json!(["eq", "$key", body["object_key"]])));
    assert!(conditions.contains(&json!(["content-length-range", 2048, 2048])));
    assert!(conditions.contains(&json!({"callback": fields["callback"]})));

    // Without a declared size, the configured maximum bounds the form.
    let body: Value = app
        .create_upload(
            &app.token("alice"),
            json!({"file_name": "b.mp4", "mode": "post_policy"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let policy: Value = serde_json::from_slice(
        &B64.decode(body["post_policy"]["fields"]["policy"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(policy["conditions"].as_array().unwrap().contains(&json!([
        "content-length-range",
        1,
        104857600
    ])));

    let too_big = app
        .create_upload(
            &app.token("alice"),
            json!({"file_name": "c.mp4", "size": 200 * 1024 * 1024, "mode": "post_policy"}),
        )
        .await;
    assert_eq!(too_big.status(), 422);
    assert_eq!(error_code(too_big).await, "invalid_request");
}

#[tokio::test]
async fn a_stopped_worker_is_reported_not_alive() {
    let sts = crate::support::StsFake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = crate::support::test_config(&sts, dir.path()).await;
    let app = mediagate::app::App::build(config).await.unwrap();
    assert!(
        app.worker.is_alive(),
        "a worker just built has time to start"
    );
    app.worker.clone().run(async {}).await;
    assert!(
        !app.worker.is_alive(),
        "a worker that returned is not alive"
    );
}

#[tokio::test]
async fn readiness_can_probe_the_upstreams() {
    // Readiness reports the worker's loop, so these apps run it: what decides their answers
    // is the upstreams.
    let app = TestApp::builder()
        .running_worker()
        .config(|c| c.server.readyz_upstreams = true)
        .spawn()
        .await;
    let body: Value = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["checks"]["sts"]["status"], "ok", "{body}");
    assert_eq!(body["checks"]["mps"]["status"], "ok", "{body}");
    assert_eq!(body["checks"]["store"]["status"], "ok", "{body}");
    assert_eq!(
        app.oss.refused(),
        0,
        "the probe is signed as the store checks"
    );
    // The store refusing or not answering makes the instance unready.
    app.oss.set_down(true);
    app.clock.advance(std::time::Duration::from_secs(1));
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["checks"]["store"]["status"], "failed", "{body}");
    let down = TestApp::builder()
        .running_worker()
        .config(|c| {
            c.server.readyz_upstreams = true;
            c.sts.endpoint = Some("http://127.0.0.1:9".into());
        })
        .spawn()
        .await;
    let r = down.client.get(down.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["checks"]["sts"]["status"], "failed", "{body}");
    assert_eq!(body["checks"]["database"]["status"], "ok");
    // Off by default: no upstream is contacted.
    let plain = TestApp::builder()
        .running_worker()
        .config(|c| c.sts.endpoint = Some("http://127.0.0.1:9".into()))
        .spawn()
        .await;
    let r = plain.client.get(plain.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}
