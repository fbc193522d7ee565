//! Permission control: plans from the app token, quotas counted from the uploads (the store's
//! sizes once verified) and shared by every instance on the database, suspension.

use mediagate::quotas::{MediaKind, PlanLimits};
use serde_json::{Value, json};

use crate::outcomes::second_instance;
use crate::support::oss_fake::mp4_header;
use crate::support::{JWT_SECRET, TestApp, error_code, serve_loopback, token_with};

const MIB: u64 = 1 << 20;

/// An app with a `free` plan (the default) of `free` and an unlimited `pro` plan.
async fn app_with(free: PlanLimits) -> TestApp {
    TestApp::spawn_with(move |c| {
        c.quotas.plans.insert("free".into(), free);
        c.quotas.plans.insert("pro".into(), PlanLimits::default());
    })
    .await
}

fn token(app: &TestApp, sub: &str, plan: Option<&str>) -> String {
    let exp = app.app.clock.now().timestamp() + 3600;
    let mut claims = json!({"sub": sub, "exp": exp});
    if let Some(plan) = plan {
        claims["plan"] = json!(plan);
    }
    token_with(claims, JWT_SECRET)
}

async fn create(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.create_upload(token, body).await
}

async fn me(app: &TestApp, token: &str) -> Value {
    let r = app.get(token, "/v1/me").await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn a_free_users_51st_upload_of_the_day_is_refused_naming_the_quota_and_when_it_frees() {
    let app = app_with(PlanLimits {
        uploads_per_day: Some(50),
        ..Default::default()
    })
    .await;
    let free = token(&app, "alice", None);
    for n in 0..50 {
        let r = create(&app, &free, json!({"file_name": format!("{n}.mp4")})).await;
        assert_eq!(r.status(), 201, "upload {n}");
    }
    let calls = app.sts.calls();
    let r = create(&app, &free, json!({"file_name": "51.mp4"})).await;
    assert_eq!(r.status(), 403);
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=86_400).contains(&retry_after));
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (&body["error"]["code"], &body["error"]["quota"]),
        (&json!("quota_exceeded"), &json!("uploads_per_day")),
        "{body}"
    );
    assert_eq!(body["error"]["retry_after_seconds"], retry_after);
    assert_eq!(app.sts.calls(), calls, "a refusal costs no STS call");

    let mine = me(&app, &free).await;
    assert_eq!(
        (&mine["user"], &mine["plan"], &mine["suspended"]),
        (&json!("alice"), &json!("free"), &json!(false))
    );
    assert_eq!(mine["usage"]["uploads_today"], 50);
    assert_eq!(mine["limits"]["uploads_per_day"], 50);

    // Another plan, another user: not affected.
    let pro = token(&app, "bob", Some("pro"));
    for n in 0..60 {
        let r = create(&app, &pro, json!({"file_name": format!("{n}.mp4")})).await;
        assert_eq!(r.status(), 201);
    }
    assert_eq!(me(&app, &pro).await["plan"], "pro");
    // The quotas are counted in metrics, by quota.
    assert!(
        app.metrics_text()
            .await
            .contains(r#"mediagate_quota_refusals_total{quota="uploads_per_day"}"#)
    );
}

#[tokio::test]
async fn sizes_kinds_and_unknown_plans_are_refused_before_anything_is_vended() {
    let app = app_with(PlanLimits {
        max_file_bytes: Some(MIB),
        bytes_total: Some(3 * MIB),
        kinds: Some(vec![MediaKind::Video]),
        ..Default::default()
    })
    .await;
    let free = token(&app, "alice", None);
    let calls = app.sts.calls();
    let quota = |r: reqwest::Response| async move {
        assert_eq!(r.status(), 403);
        let body: Value = r.json().await.unwrap();
        assert!(body["error"].get("retry_after_seconds").is_none(), "{body}");
        body["error"]["quota"].as_str().unwrap().to_owned()
    };
    let big = create(&app, &free, json!({"file_name": "a.mp4", "size": MIB + 1})).await;
    assert_eq!(quota(big).await, "max_file_bytes");
    let song = create(&app, &free, json!({"file_name": "a.mp3"})).await;
    assert_eq!(quota(song).await, "kinds");
    assert_eq!(app.sts.calls(), calls, "refusals cost no STS call");
    // Without a declared size, an upload holds the plan's largest file.
    for _ in 0..3 {
        let r = create(&app, &free, json!({"file_name": "a.mp4"})).await;
        assert_eq!(r.status(), 201);
    }
    let calls = app.sts.calls();
    let full = create(&app, &free, json!({"file_name": "a.mp4", "size": 1})).await;
    assert_eq!(quota(full).await, "bytes_total");
    assert_eq!(me(&app, &free).await["usage"]["bytes_total"], 3 * MIB);

    let gold = token(&app, "carol", Some("gold"));
    let r = create(&app, &gold, json!({"file_name": "a.mp4"})).await;
    assert_eq!(r.status(), 403);
    assert_eq!(error_code(r).await, "unknown_plan");
    assert_eq!(app.sts.calls(), calls, "refusals cost no STS call");
}

/// Several instances behind a load balancer hand out the quota once.
#[tokio::test]
async fn concurrent_requests_on_two_instances_get_exactly_the_quota() {
    let app = app_with(PlanLimits {
        uploads_per_day: Some(50),
        ..Default::default()
    })
    .await;
    let other = second_instance(&app).await;
    let other_url = serve_loopback(mediagate::http::router(other)).await;
    let free = token(&app, "alice", None);
    let requests = (0..200).map(|n| {
        let url = if n % 2 == 0 {
            app.url("/v1/uploads")
        } else {
            format!("{other_url}/v1/uploads")
        };
        let (client, free) = (app.client.clone(), free.clone());
        async move {
            client
                .post(url)
                .bearer_auth(free)
                .json(&json!({"file_name": format!("{n}.mp4")}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    let statuses = futures::future::join_all(requests).await;
    let created = statuses.iter().filter(|s| **s == 201).count();
    let refused = statuses.iter().filter(|s| **s == 403).count();
    assert_eq!((created, refused), (50, 150), "{statuses:?}");
    assert_eq!(me(&app, &free).await["usage"]["uploads_today"], 50);
}

/// An object announced for a user past their plan (uploaded with `/v1/sts-token` credentials,
/// or bigger than declared) is rejected by the store's size and triggers nothing.
#[tokio::test]
async fn an_object_past_the_plan_is_rejected_by_the_stores_size() {
    let app = app_with(PlanLimits {
        max_file_bytes: Some(MIB),
        bytes_total: Some(2 * MIB),
        ..Default::default()
    })
    .await;
    app.webhook_workflow("hooks", "uploads/").await;
    let free = token(&app, "alice", None);
    // Credentials for the whole prefix: the object comes with no request of its own.
    assert_eq!(app.get(&free, "/v1/sts-token").await.status(), 200);
    let key = "uploads/alice/own/huge.mp4";
    let mut huge = mp4_header();
    huge.resize(3 * MIB as usize, 0);
    app.oss.put(key, huge, "video/mp4");
    let event = |key: &str, size: u64| {
        json!({"Records": [{"eventName": "s3:ObjectCreated:Put", "eventSource": "ceph:s3",
            "s3": {"bucket": {"name": "media-input"}, "object": {"key": key, "eTag": "e1", "size": size}}}]})
    };
    // The event understates the size; the store's counts.
    assert_eq!(app.s3_event(&event(key, 10)).await.status(), 200);
    app.drain().await;
    let listed: Value = app.get(&free, "/v1/uploads").await.json().await.unwrap();
    let admin = listed["uploads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["object_key"] == key)
        .cloned()
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(
        (&admin["state"], &admin["state_reason"]),
        (&json!("rejected"), &json!("quota_exceeded")),
        "{admin}"
    );
    assert!(
        app.hooks
            .deliveries()
            .iter()
            .all(|(_, d)| d["type"] == "upload.rejected"),
        "nothing processed"
    );

    // No size declared: the upload holds the plan's largest file until the store's size is
    // known, and the store's size is what is judged.
    let mut ids = Vec::new();
    for size in [MIB, 3 * MIB] {
        let r = create(&app, &free, json!({"file_name": "a.mp4"})).await;
        assert_eq!(r.status(), 201);
        let upload: Value = r.json().await.unwrap();
        let key = upload["object_key"].as_str().unwrap();
        let mut bytes = mp4_header();
        bytes.resize(size as usize, 0);
        app.oss.put(key, bytes, "video/mp4");
        let id = upload["upload_id"].as_str().unwrap();
        let form = format!("bucket=media-input&object={key}&etag=E&size={size}&upload_id={id}");
        assert_eq!(app.oss_callback_only(&form).await.status(), 200);
        app.drain().await;
        ids.push(id.to_owned());
    }
    let fits = app.upload("alice", &ids[0]).await;
    let past = app.upload("alice", &ids[1]).await;
    assert_eq!(fits["state"], "triggered", "{fits}");
    assert_eq!(
        (&past["state"], &past["state_reason"]),
        (&json!("rejected"), &json!("quota_exceeded")),
        "{past}"
    );
    // Rejected uploads count for nothing; the verified one by the store's size.
    assert_eq!(me(&app, &free).await["usage"]["bytes_total"], MIB);
    // Only the accepted upload keeps its protected copy.
    let copies: Vec<String> = app
        .oss
        .keys()
        .into_iter()
        .filter(|k| k.starts_with("verified/"))
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
}

#[tokio::test]
async fn an_expired_upload_gives_its_reservation_back() {
    let app = TestApp::spawn_with(|c| {
        c.quotas.plans.insert(
            "free".into(),
            PlanLimits {
                uploads_per_day: Some(1),
                ..Default::default()
            },
        );
        c.reconcile.after_seconds = 0;
        c.reconcile.expire_after_seconds = Some(3600);
    })
    .await;
    let free = token(&app, "alice", None);
    let r = create(&app, &free, json!({"file_name": "a.mp4", "size": 10})).await;
    assert_eq!(r.status(), 201);
    let r = create(&app, &free, json!({"file_name": "b.mp4"})).await;
    assert_eq!(r.status(), 403);
    let usage = me(&app, &free).await["usage"].clone();
    assert_eq!(
        (&usage["uploads_today"], &usage["bytes_total"]),
        (&json!(1), &json!(10))
    );
    app.app.reconcile().await.unwrap();
    app.clock.advance(std::time::Duration::from_secs(3600));
    assert_eq!(app.app.reconcile().await.unwrap().expired, 1);
    let free = token(&app, "alice", None);
    let usage = me(&app, &free).await["usage"].clone();
    assert_eq!(
        (&usage["uploads_today"], &usage["bytes_total"]),
        (&json!(0), &json!(0))
    );
}

#[tokio::test]
async fn a_suspended_user_is_refused_at_once_everywhere_and_a_late_upload_is_rejected() {
    let app = TestApp::spawn().await;
    app.webhook_workflow("hooks", "uploads/").await;
    let other = second_instance(&app).await;
    let other_url = serve_loopback(mediagate::http::router(other)).await;
    let alice = app.token("alice");
    let (id, key) = app.issue("alice", "clip.mp4", json!({})).await;

    let path = "/v1/admin/users/alice";
    let r = app
        .admin(reqwest::Method::PUT, path, Some(json!({"suspended": true})))
        .await;
    assert_eq!(r.status(), 200);
    let calls = app.sts.calls();
    for base in [app.base.clone(), other_url.clone()] {
        for (method, route) in [
            (reqwest::Method::POST, "/v1/uploads".to_owned()),
            (reqwest::Method::GET, "/v1/uploads".to_owned()),
            (reqwest::Method::GET, format!("/v1/uploads/{id}")),
            (
                reqwest::Method::POST,
                format!("/v1/uploads/{id}/credentials"),
            ),
            (reqwest::Method::GET, "/v1/sts-token".to_owned()),
        ] {
            let r = app
                .client
                .request(method, format!("{base}{route}"))
                .bearer_auth(&alice)
                .json(&json!({"file_name": "x.mp4"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403, "{route}");
            let body: Value = r.json().await.unwrap();
            let code = body["error"]["code"]
                .as_str()
                .or(body["ErrorCode"].as_str());
            assert_eq!(code, Some("user_suspended"), "{route}: {body}");
        }
    }
    assert_eq!(app.sts.calls(), calls, "no credentials handed out");
    assert_eq!(me(&app, &alice).await["suspended"], true);

    // What they upload with credentials vended before is rejected.
    assert_eq!(app.upload_completed(&key, "abc", &id).await.status(), 200);
    app.drain().await;
    let admin = app.admin_upload(&id).await;
    assert_eq!(
        (&admin["state"], &admin["state_reason"]),
        (&json!("rejected"), &json!("user_suspended"))
    );

    // Lifted, and audited both ways.
    let r = app
        .admin(
            reqwest::Method::PUT,
            path,
            Some(json!({"suspended": false})),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        create(&app, &alice, json!({"file_name": "y.mp4"}))
            .await
            .status(),
        201
    );
    let audit: Value = app
        .admin(reqwest::Method::GET, "/v1/admin/audit", None)
        .await
        .json()
        .await
        .unwrap();
    let changes = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "user.change")
        .count();
    assert_eq!(changes, 2, "{audit}");
}

#[tokio::test]
async fn operators_see_usage_and_uploads_and_set_a_configured_plan() {
    let app = app_with(PlanLimits {
        uploads_per_day: Some(1),
        ..Default::default()
    })
    .await;
    let free = token(&app, "alice", None);
    assert_eq!(
        create(&app, &free, json!({"file_name": "a.mp4", "size": 5}))
            .await
            .status(),
        201
    );
    assert_eq!(
        create(&app, &free, json!({"file_name": "b.mp4"}))
            .await
            .status(),
        403
    );

    let path = "/v1/admin/users/alice";
    let view: Value = app
        .admin(reqwest::Method::GET, path, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            &view["plan"],
            &view["usage"]["uploads_today"],
            &view["usage"]["bytes_total"]
        ),
        (&json!("free"), &json!(1), &json!(5)),
        "{view}"
    );
    assert_eq!(view["uploads"].as_array().unwrap().len(), 1);

    let r = app
        .admin(reqwest::Method::PUT, path, Some(json!({"plan": "gold"})))
        .await;
    assert_eq!(r.status(), 403);
    assert_eq!(error_code(r).await, "unknown_plan");
    let r = app
        .admin(reqwest::Method::PUT, path, Some(json!({"plan": "pro"})))
        .await;
    let view: Value = r.json().await.unwrap();
    assert_eq!(
        (&view["plan"], &view["plan_override"]),
        (&json!("pro"), &json!("pro"))
    );
    // The override is over the token's plan.
    assert_eq!(
        create(&app, &free, json!({"file_name": "b.mp4"}))
            .await
            .status(),
        201
    );
    let r = app
        .admin(reqwest::Method::PUT, path, Some(json!({"plan": null})))
        .await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["plan_override"],
        Value::Null
    );
    assert_eq!(
        create(&app, &free, json!({"file_name": "c.mp4"}))
            .await
            .status(),
        403
    );
}

/// Sizes nobody could store are refused, so the sums of a user's sizes stay exact.
#[tokio::test]
async fn a_size_no_store_takes_is_refused() {
    let app = TestApp::spawn().await;
    let alice = app.token("alice");
    let r = create(
        &app,
        &alice,
        json!({"file_name": "a.mp4", "size": 9_000_000_000_000_000_u64}),
    )
    .await;
    assert_eq!(r.status(), 422);
    let r = create(
        &app,
        &alice,
        json!({"file_name": "a.mp4", "size": 5_u64 << 40}),
    )
    .await;
    assert_eq!(r.status(), 201);
    assert_eq!(me(&app, &alice).await["usage"]["bytes_total"], 5_u64 << 40);
}

#[test]
fn plans_need_verification() {
    let mut c = mediagate::config::Config::default();
    c.quotas.plans.insert("free".into(), PlanLimits::default());
    c.verification.enabled = false;
    assert!(
        c.validate()
            .iter()
            .any(|p| p.starts_with("quotas.plans: need verification.enabled")),
        "{:?}",
        c.validate()
    );
}
