//! Random bodies, headers and paths against every documented route: no 5xx, no panic, and
//! every refusal in the documented error shape.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::openapi::{document, operations};
use crate::support::{ADMIN_TOKEN, S3_TOKEN, TestApp};

const ROUNDS_PER_OPERATION: usize = 40;

fn random_text(rng: &mut StdRng, max: usize) -> String {
    const PIECES: &[&str] = &[
        "a", "Z", "0", "/", "..", "%", "%2F", "%00", "*", "?", "\"", "\\", " ", "+", "&", "=",
        "${x}", "é", "視", "\u{202e}", "\t", "mp4", ".mp4", "-", "_", "{", "}", "[", "]",
    ];
    let n = rng.random_range(0..=max);
    (0..n)
        .map(|_| PIECES[rng.random_range(0..PIECES.len())])
        .collect()
}

fn random_json(rng: &mut StdRng, depth: u32) -> Value {
    match rng.random_range(0..if depth > 2 { 5 } else { 8 }) {
        0 => Value::Null,
        1 => json!(rng.random::<bool>()),
        2 => json!(rng.random::<i64>()),
        3 => json!(rng.random::<f64>() * 1e300),
        4 => json!(random_text(rng, 40)),
        5 => Value::Array(
            (0..rng.random_range(0..5))
                .map(|_| random_json(rng, depth + 1))
                .collect(),
        ),
        _ => {
            const KEYS: &[&str] = &[
                "file_name",
                "size",
                "mode",
                "media",
                "title",
                "tags",
                "cate_id",
                "cover_url",
                "user_data",
                "content_type",
                "name",
                "state",
                "bucket",
                "prefix",
                "sink",
                "webhook_url",
                "webhook_secret",
                "media_workflow_id",
                "output_prefix",
                "Records",
                "Type",
                "Message",
                "s3",
                "object",
                "key",
                "eTag",
                "eventName",
                "events",
            ];
            let mut map = serde_json::Map::new();
            for _ in 0..rng.random_range(0..6) {
                let key = if rng.random_bool(0.8) {
                    KEYS[rng.random_range(0..KEYS.len())].to_owned()
                } else {
                    random_text(rng, 8)
                };
                map.insert(key, random_json(rng, depth + 1));
            }
            Value::Object(map)
        }
    }
}

fn random_body(rng: &mut StdRng) -> Vec<u8> {
    match rng.random_range(0..10) {
        0 => Vec::new(),
        1 => (0..rng.random_range(0..512))
            .map(|_| rng.random::<u8>())
            .collect(),
        2 => vec![b'['; 2048],
        3 => vec![b'x'; 1024 * 1024 + 1],
        4 => b"bucket=media-input&object=uploads%2Fa%2F1%2Fa.mp4&etag=E&size=x".to_vec(),
        5 => {
            let mode = ["sts", "post_policy", "x"][rng.random_range(0..3)];
            json!({"file_name": random_text(rng, 20), "size": rng.random::<u64>(),
                   "mode": mode, "media": random_json(rng, 1)})
            .to_string()
            .into_bytes()
        }
        6 => json!({"file_name": format!("{}.mp4", rng.random::<u32>()), "size": rng.random_range(1..1u64 << 40),
                    "mode": if rng.random_bool(0.5) { "sts" } else { "post_policy" }})
        .to_string()
        .into_bytes(),
        _ => random_json(rng, 0).to_string().into_bytes(),
    }
}

#[tokio::test]
async fn random_requests_never_get_a_server_error() {
    let app = TestApp::spawn().await;
    app.webhook_workflow("fuzz", "uploads/").await;
    let ops = operations(&document(&app).await);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let mut rng = StdRng::seed_from_u64(seed);
    let user = app.token("fuzzer");
    let mut sent = 0;
    for (method, template) in &ops {
        for _ in 0..ROUNDS_PER_OPERATION {
            let id = match rng.random_range(0..4) {
                0 => uuid::Uuid::now_v7().to_string(),
                1 => random_text(&mut rng, 30),
                2 => "..%2F..%2Fetc".to_owned(),
                _ => "x".repeat(rng.random_range(1..3000)),
            };
            let encoded: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
            let mut path = template.replace("{id}", &encoded);
            if rng.random_bool(0.5) {
                let k: String =
                    url::form_urlencoded::byte_serialize(random_text(&mut rng, 8).as_bytes())
                        .collect();
                let v: String =
                    url::form_urlencoded::byte_serialize(random_text(&mut rng, 30).as_bytes())
                        .collect();
                let known =
                    ["limit", "cursor", "state", "bucket", "key", "token"][rng.random_range(0..6)];
                path = format!("{path}?{known}={v}&{k}={v}");
            }
            let method_name = match rng.random_range(0..10) {
                0 => ["PATCH", "OPTIONS", "HEAD", "PUT"][rng.random_range(0..4)].to_owned(),
                // Any token is a method: invented ones, some of them huge.
                1 => invented_method(&mut rng),
                _ => method.to_uppercase(),
            };
            let http_method = reqwest::Method::from_bytes(method_name.as_bytes()).unwrap();
            let mut request = app.client.request(http_method.clone(), app.url(&path));
            // Half the time the credential the route expects, so handlers see the input too.
            let right = if template.starts_with("/v1/admin") {
                ADMIN_TOKEN
            } else if template.starts_with("/v1/notifications") {
                S3_TOKEN
            } else {
                user.as_str()
            };
            request = match rng.random_range(0..8) {
                0 => request,
                1 => request.header("authorization", random_text(&mut rng, 60)),
                2 => request.bearer_auth(random_text(&mut rng, 200)),
                3 => request.bearer_auth(ADMIN_TOKEN),
                _ => request.bearer_auth(right),
            };
            for (name, value) in [
                (
                    "content-type",
                    [
                        "application/json",
                        "application/x-www-form-urlencoded",
                        "text/plain",
                        "multipart/form-data; boundary=x",
                        "garbage",
                    ][rng.random_range(0..5)]
                    .to_owned(),
                ),
                ("x-request-id", random_text(&mut rng, 20)),
                ("x-oss-pub-key-url", random_text(&mut rng, 40)),
                ("x-mns-signing-cert-url", random_text(&mut rng, 40)),
                ("date", random_text(&mut rng, 30)),
                ("content-md5", random_text(&mut rng, 30)),
                ("origin", random_text(&mut rng, 30)),
            ] {
                // Now and then a value far larger than any real one.
                let value = if rng.random_bool(0.05) {
                    value.repeat(16 * 1024 / value.len().max(1) + 1)
                } else {
                    value
                };
                if rng.random_bool(0.3)
                    && let Ok(v) = reqwest::header::HeaderValue::from_str(&value)
                {
                    request = request.header(name, v);
                }
            }
            if http_method != reqwest::Method::GET && http_method != reqwest::Method::HEAD {
                request = request.body(random_body(&mut rng));
            }
            let response = request.send().await.unwrap_or_else(|e| {
                panic!("seed {seed}: {method_name} {path}: connection failed: {e}")
            });
            sent += 1;
            let status = response.status().as_u16();
            let body = response.bytes().await.unwrap_or_default();
            assert!(
                status < 500,
                "seed {seed}: {method_name} {path} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
            if status >= 400 && http_method != reqwest::Method::HEAD {
                let parsed: Value = serde_json::from_slice(&body).unwrap_or_else(|_| {
                    panic!(
                        "seed {seed}: {method_name} {path} {status}: not JSON: {}",
                        String::from_utf8_lossy(&body)
                    )
                });
                let shaped = parsed["error"]["code"].is_string() || parsed["ErrorCode"].is_string();
                assert!(
                    shaped,
                    "seed {seed}: {method_name} {path} {status}: {parsed}"
                );
            }
        }
    }
    assert_eq!(sent, ops.len() * ROUNDS_PER_OPERATION);
    // Still serving.
    let health = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "seed {seed}");
    // No request text became a metric label.
    let metrics = app.metrics_text().await;
    assert!(
        !metrics.contains(INVENTED),
        "seed {seed}: an invented method became a label"
    );
}

/// Marks every invented method, so the metrics can be searched for them.
const INVENTED: &str = "INVENTED";

fn invented_method(rng: &mut StdRng) -> String {
    const TOKEN: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~";
    let len = if rng.random_bool(0.2) {
        rng.random_range(1000..20_000)
    } else {
        rng.random_range(1..12)
    };
    let tail: String = (0..len)
        .map(|_| TOKEN[rng.random_range(0..TOKEN.len())] as char)
        .collect();
    format!("{INVENTED}{tail}")
}
