//! What an app user, another cloud account or an anonymous client could try, each against a
//! real server on loopback: every attempt is refused or made harmless.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{
    MNS_ACCOUNT_ID, S3_TOKEN, TestApp, error_code, http_date, mns_signer, oss_signer,
};

/// A loopback HTTP host serving fixed bodies by path and counting every request per path;
/// paths under `/moved` redirect to `/landed`.
struct Host {
    base: String,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl Host {
    async fn start(files: Vec<(&'static str, String)>) -> Host {
        type Files = Arc<HashMap<&'static str, String>>;
        type Hits = Arc<Mutex<HashMap<String, usize>>>;
        async fn serve(State((files, hits)): State<(Files, Hits)>, uri: Uri) -> Response {
            let path = uri.path().to_owned();
            *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
            match (path.as_str(), files.get(path.as_str())) {
                (p, _) if p.starts_with("/moved") => {
                    (StatusCode::FOUND, [(header::LOCATION, "/landed")]).into_response()
                }
                (_, Some(body)) => body.clone().into_response(),
                _ => StatusCode::NOT_FOUND.into_response(),
            }
        }
        let hits: Hits = Arc::default();
        let files: Files = Arc::new(files.into_iter().collect());
        let router = axum::Router::new()
            .fallback(serve)
            .with_state((files, hits.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Host { base, hits }
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    fn total(&self) -> usize {
        self.hits.lock().unwrap().values().sum()
    }
}

fn oss_event(name: &str, key: &str, etag: &str, size: i64) -> Value {
    json!({"eventName": name, "oss": {"bucket": {"name": "media-input"},
        "object": {"key": key, "size": size, "eTag": etag}}})
}

async fn trigger_count(app: &TestApp) -> i64 {
    app.app
        .store
        .trigger_counts()
        .await
        .unwrap()
        .iter()
        .map(|(_, n)| n)
        .sum()
}

/// 1. Methods are labelled from a closed set: invented ones, of any size, are `other`.
#[tokio::test]
async fn invented_methods_do_not_become_metric_series() {
    let app = TestApp::spawn().await;
    let marker = format!("MADEUP{}", "Q".repeat(20 * 1024));
    for i in 0..30 {
        let method = Method::from_bytes(format!("{marker}{i}").as_bytes()).unwrap();
        let r = app
            .client
            .request(method, app.url("/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405);
        assert_eq!(error_code(r).await, "method_not_allowed");
    }
    let text = app.metrics_text().await;
    assert!(
        !text.contains("MADEUP"),
        "an invented method became a label"
    );
    assert!(
        text.contains(r#"route="/healthz",method="other",status="405""#),
        "{text}"
    );
    // Thirty 20 KB labels were 10.8 MB before; the whole exposition stays small.
    assert!(text.len() < 512 * 1024, "{} bytes", text.len());
}

/// 2. One spelling per key URL, fetched once; every cheap MNS check runs before any fetch.
#[tokio::test]
async fn key_urls_are_exact_bounded_and_fetched_once() {
    let host = Host::start(vec![
        ("/keys/key.pem", oss_signer().public_pem.clone()),
        ("/keys/cert.pem", mns_signer().cert_pem.clone()),
    ])
    .await;
    let prefix = format!("{}/keys/", host.base);
    let app = TestApp::spawn_with(|c| {
        c.notifications.oss_key_url_prefixes = vec![prefix.clone()];
        c.notifications.oss_pinned_keys.clear();
        c.notifications.mns_cert_url_prefixes = vec![prefix.clone()];
        c.notifications.mns_pinned_certs.clear();
        c.notifications.mns_token = Some("mns-endpoint-token-0123".to_owned().into());
    })
    .await;
    let (id, key) = app.issue("alice", "a.mp4", json!({})).await;
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("bucket", "media-input")
        .append_pair("object", &key)
        .append_pair("etag", "E1")
        .append_pair("size", "5")
        .append_pair("upload_id", &id)
        .finish();
    let path = "/v1/notifications/oss-callback";
    let callback = |key_url: String| {
        let (authorization, _) = oss_signer().sign(path, None, form.as_bytes());
        app.client
            .post(app.url(path))
            .header("authorization", authorization)
            .header("x-oss-pub-key-url", B64.encode(key_url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.clone())
            .send()
    };
    let good = format!("{prefix}key.pem");
    let mut variants = Vec::new();
    for i in 0..20 {
        variants.extend([
            format!("{good}#{i}"),
            format!("{good}?v={i}"),
            format!("{prefix}./key.pem?{i}"),
            format!("{prefix}x{i}/../key.pem"),
            format!("{prefix}x{i}/%2e%2E/key.pem"),
            good.replace("http://", &format!("http://u{i}@")),
        ]);
    }
    assert_eq!(variants.len(), 120);
    for v in variants {
        let r = callback(v.clone()).await.unwrap();
        assert_eq!(r.status(), 400, "{v}");
        assert_eq!(error_code(r).await, "invalid_signature");
    }
    assert_eq!(host.total(), 0, "no variant was fetched");
    for _ in 0..3 {
        assert_eq!(callback(good.clone()).await.unwrap().status(), 200);
    }
    assert_eq!(
        host.hits("/keys/key.pem"),
        1,
        "the exact URL is fetched once"
    );

    // MNS: a stale Date, a body that is not the signed one, a missing token and another
    // account's topic are refused before the certificate is fetched.
    let events =
        json!({"events": [oss_event("ObjectCreated:PutObject", "uploads/x/1/a.mp4", "M1", 1)]});
    let body = B64.encode(events.to_string());
    let mns_path = "/v1/notifications/oss-events?token=mns-endpoint-token-0123";
    let cert = B64.encode(format!("{prefix}cert.pem"));
    let stale = (chrono::Utc::now() - chrono::Duration::minutes(20))
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let cases: Vec<(&str, &str, &str, String, u16)> = vec![
        (MNS_ACCOUNT_ID, mns_path, "stale date", stale, 400),
        (MNS_ACCOUNT_ID, mns_path, "other body", http_date(), 400),
        (
            MNS_ACCOUNT_ID,
            "/v1/notifications/oss-events",
            "no token",
            http_date(),
            400,
        ),
        (
            "9999999999999999",
            mns_path,
            "foreign account",
            http_date(),
            403,
        ),
    ];
    for (owner, path, case, date, status) in cases {
        let mut request = app.client.post(app.url(path));
        for (name, value) in mns_signer().headers_from(owner, "t", path, &body, &date) {
            let value = if name == "x-mns-signing-cert-url" {
                cert.clone()
            } else {
                value
            };
            request = request.header(name, value);
        }
        let sent = if case == "other body" {
            B64.encode("{}")
        } else {
            body.clone()
        };
        let r = request.body(sent).send().await.unwrap();
        assert_eq!(r.status(), status, "{case}");
    }
    assert_eq!(host.hits("/keys/cert.pem"), 0, "refused before any fetch");
}

/// 4. Only the operator's own MNS account (and topics, when named) may push events.
#[tokio::test]
async fn mns_pushes_from_other_accounts_record_nothing() {
    let app = TestApp::spawn_with(|c| {
        c.notifications.mns_topic_names = vec!["mediagate-uploads".into()];
    })
    .await;
    app.webhook_workflow("hooks", "uploads/").await;
    let (id, key) = app.issue("alice", "a.mp4", json!({})).await;
    let events = json!([oss_event("ObjectCreated:PutObject", &key, "F1", 10)]);
    for (owner, topic) in [
        ("9999999999999999", "mediagate-uploads"),
        (MNS_ACCOUNT_ID, "someone-elses-topic"),
    ] {
        let r = app.mns_push_from(owner, topic, events.clone()).await;
        assert_eq!(r.status(), 403, "{owner}/{topic}");
        assert_eq!(error_code(r).await, "forbidden");
    }
    assert_eq!(trigger_count(&app).await, 0);
    let upload = app
        .get(&app.token("alice"), &format!("/v1/uploads/{id}"))
        .await;
    let upload: Value = upload.json().await.unwrap();
    assert_eq!(upload["state"], "issued", "nothing was recorded: {upload}");
    assert!(
        app.admin_upload(&id).await["events"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // The operator's own topic goes through.
    let r = app
        .mns_push_from(MNS_ACCOUNT_ID, "mediagate-uploads", events)
        .await;
    assert_eq!(r.status(), 200);
    app.drain().await;
    // Its verification, and the delivery that followed.
    assert_eq!(trigger_count(&app).await, 2);

    // Without an account configured, the route is not served at all.
    let closed = TestApp::spawn_with(|c| c.notifications.mns_account_id = None).await;
    let r = closed
        .mns_push_from(MNS_ACCOUNT_ID, "mediagate-uploads", json!([]))
        .await;
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "not_found");
}

/// 5. An upload is completed once: later notifications (other ETags, any sender) are
/// recorded and trigger nothing, until an operator reprocesses it on purpose.
#[tokio::test]
async fn an_upload_is_processed_once_whatever_is_announced_later() {
    let app = TestApp::spawn().await;
    app.webhook_workflow("hooks", "uploads/").await;
    let (id, key) = app.issue("alice", "a.mp4", json!({"title": "mine"})).await;
    assert_eq!(app.upload_completed(&key, "E0", &id).await.status(), 200);
    app.drain().await;
    // The verification of the object, and the delivery it queued.
    assert_eq!(trigger_count(&app).await, 2);

    // The uploader makes OSS call back again and again with bodies it writes.
    for i in 1..=5 {
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("bucket", "media-input")
            .append_pair("object", &key)
            .append_pair("etag", &format!("E{i}"))
            .append_pair("size", &(i * 1000).to_string())
            .append_pair("upload_id", &id)
            .append_pair("x:title", "hijacked")
            .finish();
        let r = app.oss_callback(&form).await;
        assert_eq!(r.status(), 200);
        let ack: Value = r.json().await.unwrap();
        assert_eq!(ack["duplicate"], true, "{ack}");
    }
    // An overwrite announced by MNS and by an S3 webhook.
    let r = app
        .mns_push_from(
            MNS_ACCOUNT_ID,
            "t",
            json!([oss_event("ObjectCreated:PutObject", &key, "E6", 6)]),
        )
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["repeats"], 1);
    let r = app
        .s3_event(&json!({"Records": [{"eventName": "s3:ObjectCreated:Put", "eventSource": "ceph:s3",
            "s3": {"bucket": {"name": "media-input"}, "object": {"key": key, "eTag": "e7", "size": 7}}}]}))
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["repeats"], 1);
    // Jobs are written before a notification is answered: none was added.
    assert_eq!(trigger_count(&app).await, 2);
    app.drain().await;
    assert_eq!(trigger_count(&app).await, 2);
    let upload = app.upload("alice", &id).await;
    assert_eq!(upload["state"], "triggered");
    assert_eq!(upload["size"], 1048576, "size is the first object's");
    assert_eq!(upload["media"]["title"], "mine");
    assert_eq!(app.hooks.count(), 1);

    // Operators see every later notification.
    let full = app.admin_upload(&id).await;
    let outcomes: Vec<&str> = full["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "queued", "repeat", "repeat", "repeat", "repeat", "repeat", "repeat", "repeat"
        ]
    );

    // Reprocessing on purpose: audited, and it verifies the object again, so it takes the
    // version the store now has.
    let mut newer = crate::support::oss_fake::mp4_header();
    newer.resize(64, 0);
    app.oss.put_with_etag(&key, newer, "video/mp4", "E7");
    let r = app
        .admin(
            Method::POST,
            &format!("/v1/admin/uploads/{id}/reprocess"),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["triggers"], 1);
    app.drain().await;
    assert_eq!(app.hooks.count(), 2);
    assert_eq!(app.hooks.deliveries()[1].1["etag"], "E7");
    let audit: Value = app
        .admin(Method::GET, "/v1/admin/audit", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(audit["entries"][0]["action"], "upload.reprocess");
    assert_eq!(audit["entries"][0]["target"], id);
    // Not while its triggers are on their way, and never for an upload nothing announced.
    let (fresh, _) = app.issue("alice", "b.mp4", json!({})).await;
    let r = app
        .admin(
            Method::POST,
            &format!("/v1/admin/uploads/{fresh}/reprocess"),
            None,
        )
        .await;
    assert_eq!(r.status(), 409);
    let r = app
        .admin(
            Method::POST,
            "/v1/admin/uploads/0190c0de-0000-7000-8000-000000000000/reprocess",
            None,
        )
        .await;
    assert_eq!(r.status(), 404);

    // Objects nobody requested follow the same rule per key.
    let external = |etag: &str| {
        json!({"Records": [{"eventName": "s3:ObjectCreated:Put", "eventSource": "ceph:s3",
            "s3": {"bucket": {"name": "media-input"}, "object": {"key": "uploads/bob/x/b.mp4", "eTag": etag, "size": 3}}}]})
    };
    let first: Value = app.s3_event(&external("b1")).await.json().await.unwrap();
    assert_eq!(first["accepted"], 1);
    app.drain().await;
    let before = trigger_count(&app).await;
    let again: Value = app.s3_event(&external("b2")).await.json().await.unwrap();
    assert_eq!(again["repeats"], 1);
    app.drain().await;
    assert_eq!(trigger_count(&app).await, before);
}

/// 6. A symlink under the user's own prefix is recorded and never processed as their media.
#[tokio::test]
async fn symlinks_are_recorded_and_never_processed() {
    let app = TestApp::spawn().await;
    app.webhook_workflow("hooks", "uploads/").await;
    let (id, key) = app.issue("alice", "a.mp4", json!({})).await;
    let r = app
        .mns_push_from(
            MNS_ACCOUNT_ID,
            "t",
            json!([oss_event("ObjectCreated:PutSymlink", &key, "S1", 0)]),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(trigger_count(&app).await, 0);
    let full = app.admin_upload(&id).await;
    assert_eq!(full["state"], "issued");
    assert_eq!(full["events"][0]["outcome"], "symlink");
    // The real object, announced afterwards, is processed.
    let r = app
        .mns_push_from(
            MNS_ACCOUNT_ID,
            "t",
            json!([oss_event("ObjectCreated:PutObject", &key, "R1", 10)]),
        )
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["accepted"], 1);
    app.drain().await;
    assert_eq!(trigger_count(&app).await, 2);
}

/// 7. App users see states and fixed reasons; upstream error text and the operator's
/// workflow names, buckets and prefixes stay on the admin routes.
#[tokio::test]
async fn app_users_never_see_operator_detail() {
    let app = TestApp::spawn().await;
    app.mps_workflow("transcode", "uploads/").await;
    app.webhook_workflow("secret-workflow-name", "internal-prefix/")
        .await;
    app.mps
        .fail_next(400, "InvalidParameter.db=prod-pg-3-password-rejected");
    let (id, key) = app.issue("alice", "a.mp4", json!({})).await;
    app.upload_completed(&key, "X1", &id).await;
    app.drain().await;
    let upload = app.upload("alice", &id).await;
    assert_eq!(upload["state"], "failed");
    assert_eq!(upload["triggers"][0]["last_error"], "delivery_abandoned");
    let text = upload.to_string();
    assert!(!text.contains("prod-pg-3"), "{text}");
    let full = app.admin_upload(&id).await;
    assert!(full.to_string().contains("prod-pg-3"), "operators see it");

    let (id, key) = app.issue("alice", "notes.mp3", json!({})).await;
    let workflows: Value = app
        .admin(Method::GET, "/v1/admin/workflows", None)
        .await
        .json()
        .await
        .unwrap();
    // Only the workflow outside the prefix is left, so nothing matches the next upload.
    for w in workflows["workflows"].as_array().unwrap() {
        if w["name"] == "transcode" {
            let r = app
                .admin(
                    Method::DELETE,
                    &format!("/v1/admin/workflows/{}", w["id"].as_str().unwrap()),
                    None,
                )
                .await;
            assert_eq!(r.status(), 204);
        }
    }
    app.upload_completed(&key, "Y1", &id).await;
    let upload: Value = app
        .get(&app.token("alice"), &format!("/v1/uploads/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(upload["state"], "skipped");
    assert_eq!(upload["state_reason"], "no_matching_workflow");
    let text = upload.to_string();
    for detail in ["secret-workflow-name", "internal-prefix"] {
        assert!(!text.contains(detail), "{detail} in {text}");
    }
    let history = app
        .get(&app.token("alice"), "/v1/uploads")
        .await
        .text()
        .await
        .unwrap();
    assert!(!history.contains("internal-prefix"), "{history}");
}

/// 8. IPv4 clients of a dual-stack listener are counted per IPv4 address.
#[tokio::test]
async fn ipv4_clients_of_a_dual_stack_listener_have_their_own_quota() {
    let app = TestApp::builder()
        .listen_at("[::]:0")
        .config(|c| c.limits.vend_per_ip_per_minute = 2)
        .spawn()
        .await;
    let from = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .local_address(Some(std::net::IpAddr::from(ip)))
            .build()
            .unwrap()
    };
    let vend = |client: reqwest::Client, user: &str| {
        let request = client
            .post(app.url("/v1/uploads"))
            .bearer_auth(app.token(user))
            .json(&json!({"file_name": "a.mp4"}));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let a = from([127, 0, 0, 1]);
    assert_eq!(vend(a.clone(), "a1").await, 201);
    assert_eq!(vend(a.clone(), "a2").await, 201);
    assert_eq!(vend(a.clone(), "a3").await, 429);
    // Another IPv4 client (arriving as ::ffff:127.0.0.2) is not locked out with it.
    assert_eq!(vend(from([127, 0, 0, 2]), "b1").await, 201);

    // Behind a balancer, `::ffff:a.b.c.d` and `a.b.c.d` are one client.
    let app = TestApp::spawn_with(|c| {
        c.limits.vend_per_ip_per_minute = 2;
        c.server.client_ip_header = Some("x-forwarded-for".into());
    })
    .await;
    let mut statuses = Vec::new();
    for forwarded in [
        "::ffff:203.0.113.7",
        "203.0.113.7",
        "::ffff:203.0.113.7",
        "203.0.113.8",
    ] {
        let r = app
            .client
            .post(app.url("/v1/uploads"))
            .header("x-forwarded-for", forwarded)
            .bearer_auth(app.token(forwarded))
            .json(&json!({"file_name": "a.mp4"}))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [201, 201, 429, 201]);
}

/// 9. Weak webhook secrets are refused.
#[tokio::test]
async fn weak_webhook_secrets_are_refused() {
    let app = TestApp::spawn().await;
    for secret in ["whsec_aGVsbG8xMjM=", "sixteen-chars-ok"] {
        let r = app
            .admin(
                Method::POST,
                "/v1/admin/workflows",
                Some(json!({"name": "weak", "state": "Active", "bucket": "media-input",
                    "sink": "webhook", "webhook_url": "https://hooks.example.com/in", "webhook_secret": secret})),
            )
            .await;
        assert_eq!(r.status(), 422, "{secret}");
        let body: Value = r.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("24 bytes"), "{message}");
        assert!(!message.contains(secret), "the secret is not echoed");
    }
    // An output prefix users could write into.
    let r = app
        .admin(
            Method::POST,
            "/v1/admin/workflows",
            Some(json!({"name": "overlap", "state": "Active", "bucket": "media-input", "prefix": "uploads/",
                "sink": "mps", "media_workflow_id": "wf", "output_prefix": "uploads/out/"})),
        )
        .await;
    assert_eq!(r.status(), 422);
}

/// 10a. Failed authentication is throttled per address, before any lookup.
#[tokio::test]
async fn failed_authentication_is_throttled_per_address() {
    let app = TestApp::spawn_with(|c| c.limits.auth_failures_per_ip_per_minute = 5).await;
    let fake_key = format!("mgk_{}", "A".repeat(43));
    for (i, token) in ["nope", "mgk_short", &fake_key, "wrong-admin-token", "x"]
        .into_iter()
        .enumerate()
    {
        let path = if i == 3 {
            "/v1/admin/workflows"
        } else {
            "/v1/uploads"
        };
        let r = app.get(token, path).await;
        assert_eq!(r.status(), 401, "{token}");
    }
    // One failure more is over the quota: refused, and so is everything after it, up front
    // on every authenticating route, even with a valid credential.
    assert_eq!(app.get("one-more", "/v1/uploads").await.status(), 429);
    for (token, path) in [
        (app.token("alice"), "/v1/uploads"),
        (
            crate::support::ADMIN_TOKEN.to_owned(),
            "/v1/admin/workflows",
        ),
        (S3_TOKEN.to_owned(), "/v1/notifications/s3-events"),
    ] {
        let method = if path.contains("s3-events") {
            Method::POST
        } else {
            Method::GET
        };
        let r = app
            .client
            .request(method, app.url(path))
            .bearer_auth(&token)
            .json(&json!({"Records": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429, "{path}");
        let wait: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&wait), "{wait}");
        assert_eq!(error_code(r).await, "rate_limited");
    }
    // Operations stay reachable.
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// 10b. `/readyz` runs its checks at most once a second, however often it is asked.
#[tokio::test]
async fn readiness_is_checked_at_most_once_a_second() {
    let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sts_url = format!("http://{}", probe.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = probe.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    // Readiness reports the worker's loop, so the app runs it.
    let app = TestApp::builder()
        .running_worker()
        .config(|c| {
            c.server.readyz_upstreams = true;
            c.sts.endpoint = Some(sts_url);
        })
        .spawn()
        .await;
    let readyz = || async {
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    // A hundred probes while the app's clock stands still: one check. Each check asks the
    // store once (counted by the time it answers) and connects to STS once (counted when the
    // connection is accepted, maybe later).
    let answers = futures::future::join_all((0..100).map(|_| readyz())).await;
    assert!(answers.iter().all(|s| *s == 200), "{answers:?}");
    assert_eq!(app.oss.requests(), 1, "store probes for 100 requests");
    assert!(connections.load(Ordering::SeqCst) <= 1);
    // A second later, the next probe checks again.
    app.clock.advance(Duration::from_secs(1));
    assert_eq!(readyz().await, 200);
    assert_eq!(app.oss.requests(), 2);
    assert!(connections.load(Ordering::SeqCst) <= 2);
}

/// 10c. A wrong S3 token is refused before the body is read.
#[tokio::test]
async fn s3_events_check_the_token_before_reading_the_body() {
    let app = TestApp::spawn().await;
    let mut socket = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap();
    // Announces a 1 MB body and sends none of it.
    socket
        .write_all(
            b"POST /v1/notifications/s3-events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer wrong-token-wrong-token\r\n\
              content-type: application/json\r\ncontent-length: 1000000\r\n\r\n",
        )
        .await
        .unwrap();
    let mut answer = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), socket.read(&mut answer))
        .await
        .expect("answered without waiting for the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("unauthorized"), "{answer}");
}

/// 10d. Outbound clients never follow redirects: an STS answering 302 is an STS error, and
/// the signed request is never replayed elsewhere.
#[tokio::test]
async fn outbound_requests_never_follow_redirects() {
    let host = Host::start(vec![]).await;
    let sts = format!("{}/moved", host.base);
    let app = TestApp::spawn_with(|c| {
        c.sts.endpoint = Some(sts);
        c.sts.max_attempts = 1;
    })
    .await;
    let r = app
        .create_upload(&app.token("alice"), json!({"file_name": "a.mp4"}))
        .await;
    assert!(matches!(r.status().as_u16(), 502 | 503), "{}", r.status());
    assert_eq!(host.total(), 1, "one request, to the STS itself");
    assert_eq!(host.hits("/landed"), 0, "the redirect was followed");
}

/// 11. An S3 endpoint on an IP address gets path-style URLs, never a 500.
#[tokio::test]
async fn ip_endpoints_get_path_style_forms() {
    let app = TestApp::spawn_with(|c| {
        c.storage.provider = mediagate::config::Provider::S3;
        c.storage.region = "us-east-1".into();
        c.storage.endpoint = "http://127.0.0.1:9000".into();
        c.storage.post_signing = mediagate::config::PostSigning::Service;
        c.sts.role_arn = "arn:aws:iam::123456789012:role/uploader".into();
        c.workflows.clear();
    })
    .await;
    let r = app
        .create_upload(
            &app.token("alice"),
            json!({"file_name": "a.mp4", "mode": "post_policy", "size": 10}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["post_policy"]["url"],
        "http://127.0.0.1:9000/media-input"
    );
    assert_eq!(body["force_path_style"], true);
}

/// A key with dot segments passes every prefix check, yet as a URL (MPS's `FileURL`) or
/// through a client that normalises paths it names another user's object. One key rule
/// refuses it on every path that takes a key, before anything is recorded.
#[tokio::test]
async fn keys_with_dot_segments_are_refused_wherever_a_key_is_taken() {
    let app =
        TestApp::spawn_with(|c| c.notifications.mns_account_id = Some(MNS_ACCOUNT_ID.into())).await;
    app.mps_workflow("hd", "uploads/").await;
    let dotted = "uploads/jo/../kim/v1/private.mp4";
    let good = "uploads/jo/v1/mine.mp4";
    let s3 = |key: &str| {
        json!({"eventName": "s3:ObjectCreated:Put", "s3": {"bucket": {"name": "media-input"},
            "object": {"key": key, "size": 4096, "eTag": "E1"}}})
    };
    for bad in [
        dotted,
        "uploads/jo/./v1/a.mp4",
        "uploads//jo/a.mp4",
        "uploads\\jo\\a.mp4",
    ] {
        // Alone, or beside a good record: the notification is refused whole.
        for records in [vec![s3(bad)], vec![s3(good), s3(bad)]] {
            let r = app.s3_event(&json!({"Records": records})).await;
            assert_eq!(r.status(), 400, "{bad:?}");
            assert_eq!(error_code(r).await, "bad_request");
        }
        let r = app
            .mns_push_from(
                MNS_ACCOUNT_ID,
                "t",
                json!([oss_event("ObjectCreated:PutObject", bad, "E2", 4096)]),
            )
            .await;
        assert_eq!(r.status(), 400, "{bad:?}");
    }
    app.drain().await;
    assert_eq!(trigger_count(&app).await, 0);
    for key in [dotted, good] {
        let events = app
            .app
            .store
            .events_for_object("media-input", key)
            .await
            .unwrap();
        assert!(events.is_empty(), "{key}: {events:?}");
    }
    assert!(app.mps.requests().is_empty());
    // The reader never sends such a key to the store.
    let before = app.oss.requests();
    let read = app.app.objects.head(dotted).await;
    assert!(
        matches!(
            read,
            Err(mediagate::storage::reader::ReadError::NotReadable(_))
        ),
        "{read:?}"
    );
    assert_eq!(app.oss.requests(), before);
}

/// Reconciliation's listing takes keys by the same rule as the notification routes.
#[tokio::test]
async fn the_listing_takes_no_key_a_notification_route_would_refuse() {
    let app = TestApp::spawn_with(|c| {
        c.reconcile.after_seconds = 0;
        c.reconcile.list_unannounced = true;
    })
    .await;
    app.webhook_workflow("hooks", "uploads/").await;
    let media = || {
        let mut bytes = crate::support::oss_fake::mp4_header();
        bytes.resize(3000, 0);
        bytes
    };
    for key in [
        "uploads/bob/raw/tab\there.mp4",
        "uploads/bob/raw/../../alice/x.mp4",
        "uploads/bob/raw/direct.mp4",
    ] {
        app.oss.put(key, media(), "video/mp4");
    }
    let sweep = app.app.reconcile().await.unwrap();
    assert_eq!(sweep.listed, 1, "{sweep:?}");
    app.drain().await;
    let deliveries = app.hooks.deliveries();
    assert_eq!(deliveries.len(), 1);
    app.protected_copy(&deliveries[0].1, "uploads/bob/raw/direct.mp4");
    assert!(
        app.metrics_text()
            .await
            .contains(r#"mediagate_reconciliations_total{outcome="refused_key"} 2"#)
    );
}
