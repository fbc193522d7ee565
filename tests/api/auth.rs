use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::EncodePrivateKey;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::support::{JWT_SECRET, TestApp, error_code, now, token_with};

struct RsaKey {
    private_pem: String,
    public_pem: String,
    jwk: Value,
}

fn rsa_key() -> &'static RsaKey {
    static KEY: OnceLock<RsaKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let public = private.to_public_key();
        RsaKey {
            private_pem: private.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
            public_pem: public.to_public_key_pem(LineEnding::LF).unwrap(),
            jwk: json!({
                "kty": "RSA", "use": "sig", "alg": "RS256", "kid": "rsa-1",
                "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
                "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
            }),
        }
    })
}

fn ec_key(kid: &str) -> (String, Value) {
    let secret = p256::SecretKey::random(&mut rsa::rand_core::OsRng);
    let pem = secret.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let mut jwk: Value = serde_json::from_str(&secret.public_key().to_jwk_string()).unwrap();
    jwk["kid"] = json!(kid);
    jwk["alg"] = json!("ES256");
    (pem, jwk)
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "exp": now() + 600, "aud": "mediagate"})
}

/// A loopback identity provider serving a JWKS it can rotate, counting fetches.
struct Idp {
    url: String,
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

async fn idp(keys: Vec<Value>) -> Idp {
    let keys = Arc::new(Mutex::new(keys));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (k, f) = (keys.clone(), fetches.clone());
    let router = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let (k, f) = (k.clone(), f.clone());
            async move {
                f.fetch_add(1, Ordering::SeqCst);
                axum::Json(json!({"keys": *k.lock().unwrap()}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    Idp { url, keys, fetches }
}

async fn status(app: &TestApp, token: &str) -> u16 {
    app.create_upload(token, json!({"file_name": "a.mp4"}))
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn missing_or_malformed_authorization_is_401() {
    let app = TestApp::spawn().await;
    let no_header = app
        .client
        .post(app.url("/v1/uploads"))
        .json(&json!({"file_name": "a.mp4"}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_header.status(), 401);
    assert_eq!(error_code(no_header).await, "unauthorized");
    let basic = app
        .client
        .post(app.url("/v1/uploads"))
        .header("authorization", "Basic YWxpY2U6cHc=")
        .json(&json!({"file_name": "a.mp4"}))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);
    for token in ["", "not-a-jwt", "a.b.c", "mgk_"] {
        assert_eq!(status(&app, token).await, 401, "{token:?}");
    }
    assert_eq!(app.sts.calls(), 0);
}

#[tokio::test]
async fn hs256_claims_are_checked() {
    let app = TestApp::spawn_with(|c| {
        c.auth.issuer = Some("https://idp.example.com".into());
        c.auth.audience = Some("mediagate".into());
    })
    .await;
    let good = json!({"sub": "alice", "exp": now() + 600, "iss": "https://idp.example.com", "aud": "mediagate"});
    assert_eq!(
        status(&app, &token_with(good.clone(), JWT_SECRET)).await,
        201
    );

    let mut within_leeway = good.clone();
    within_leeway["exp"] = json!(now() - 10);
    assert_eq!(
        status(&app, &token_with(within_leeway, JWT_SECRET)).await,
        201
    );

    let cases = [
        ("expired", json!({"exp": now() - 120})),
        ("not yet valid", json!({"nbf": now() + 120})),
        ("wrong issuer", json!({"iss": "https://evil.example.com"})),
        ("wrong audience", json!({"aud": "other"})),
        ("no sub", json!({"sub": null})),
        ("empty sub", json!({"sub": ""})),
        ("no exp", json!({"exp": null})),
        ("no iss", json!({"iss": null})),
    ];
    for (name, patch) in cases {
        let mut c = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        let response = app
            .create_upload(&token_with(c, JWT_SECRET), json!({"file_name": "a.mp4"}))
            .await;
        assert_eq!(response.status(), 401, "{name}");
        assert_eq!(error_code(response).await, "unauthorized", "{name}");
    }
    assert_eq!(
        status(
            &app,
            &token_with(good, "another-secret-of-sufficient-length-xx")
        )
        .await,
        401
    );
}

#[tokio::test]
async fn expired_tokens_say_so() {
    let app = TestApp::spawn().await;
    let token = token_with(json!({"sub": "a", "exp": now() - 3600}), JWT_SECRET);
    assert_eq!(refusal(&app, &token).await, "token expired");
}

/// The message of the error a request for an upload with `token` is answered.
async fn refusal(app: &TestApp, token: &str) -> Value {
    let body: Value = app
        .create_upload(token, json!({"file_name": "a.mp4"}))
        .await
        .json()
        .await
        .unwrap();
    body["error"]["message"].clone()
}

/// An accepted token is remembered, so it is not verified again on every request; it is
/// still refused once its `exp` (plus the leeway) has passed.
#[tokio::test]
async fn a_remembered_token_is_refused_once_it_expires() {
    let app = TestApp::spawn_with(|c| c.auth.leeway_seconds = 1).await;
    let exp = app.app.clock.now().timestamp() + 1;
    let token = token_with(json!({"sub": "alice", "exp": exp}), JWT_SECRET);
    assert_eq!(status(&app, &token).await, 201);
    assert_eq!(status(&app, &token).await, 201, "remembered");
    // Accepted through second exp + leeway, refused from the next one, which the app's clock
    // is moved into.
    app.clock.advance(std::time::Duration::from_secs(3));
    assert!(app.app.clock.now().timestamp() > exp + 1);
    assert_eq!(refusal(&app, &token).await, "token expired");
}

#[tokio::test]
async fn tampered_and_unsigned_tokens_are_rejected() {
    let app = TestApp::spawn().await;
    let token = app.token("alice");
    let parts: Vec<&str> = token.split('.').collect();

    let forged_payload =
        URL_SAFE_NO_PAD.encode(json!({"sub": "admin", "exp": now() + 600}).to_string());
    let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    assert_eq!(status(&app, &tampered).await, 401);

    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    sig[0] ^= 1;
    let flipped = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(sig));
    assert_eq!(status(&app, &flipped).await, 401);

    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    for unsigned in [
        format!("{none_header}.{}.", parts[1]),
        format!("{none_header}.{}", parts[1]),
        format!("{}.{}.", parts[0], parts[1]),
    ] {
        assert_eq!(status(&app, &unsigned).await, 401, "{unsigned}");
    }
    assert_eq!(status(&app, &token).await, 201);
}

#[tokio::test]
async fn rs256_and_es256_tokens_verify_against_the_jwks() {
    let (ec_pem, ec_jwk) = ec_key("ec-1");
    let idp = idp(vec![rsa_key().jwk.clone(), ec_jwk]).await;
    let url = idp.url.clone();
    let app = TestApp::spawn_with(move |c| {
        c.auth.jwt_secret = None;
        c.auth.jwks_url = Some(url);
        c.auth.audience = Some("mediagate".into());
    })
    .await;
    let rsa = EncodingKey::from_rsa_pem(rsa_key().private_pem.as_bytes()).unwrap();
    let ec = EncodingKey::from_ec_pem(ec_pem.as_bytes()).unwrap();
    assert_eq!(
        status(
            &app,
            &sign(Algorithm::RS256, Some("rsa-1"), &claims("rita"), &rsa)
        )
        .await,
        201
    );
    assert_eq!(
        status(
            &app,
            &sign(Algorithm::ES256, Some("ec-1"), &claims("eve"), &ec)
        )
        .await,
        201
    );
    assert_eq!(idp.fetches.load(Ordering::SeqCst), 1, "keys are cached");

    // A kid naming a key of the other family fails.
    assert_eq!(
        status(
            &app,
            &sign(Algorithm::RS256, Some("ec-1"), &claims("x"), &rsa)
        )
        .await,
        401
    );
    // Without a kid there are two candidates of different families; RS256 picks the RSA one.
    assert_eq!(
        status(&app, &sign(Algorithm::RS256, None, &claims("x"), &rsa)).await,
        201
    );
    // HS256 is not accepted when no secret is configured.
    assert_eq!(
        status(&app, &token_with(claims("x"), JWT_SECRET)).await,
        401
    );
}

#[tokio::test]
async fn hs_rs_confusion_is_rejected() {
    // The attacker signs HS256 with the published RSA public key as the HMAC secret, with and
    // without an HS256 secret configured beside the JWKS.
    let public = EncodingKey::from_secret(rsa_key().public_pem.as_bytes());
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let forged = jsonwebtoken::encode(&header, &claims("admin"), &public).unwrap();
    for keep_secret in [true, false] {
        let idp = idp(vec![rsa_key().jwk.clone()]).await;
        let url = idp.url.clone();
        let app = TestApp::spawn_with(move |c| {
            c.auth.jwks_url = Some(url);
            c.auth.audience = Some("mediagate".into());
            if !keep_secret {
                c.auth.jwt_secret = None;
            }
        })
        .await;
        assert_eq!(status(&app, &forged).await, 401);
        let rsa = EncodingKey::from_rsa_pem(rsa_key().private_pem.as_bytes()).unwrap();
        assert_eq!(
            status(
                &app,
                &sign(Algorithm::RS256, Some("rsa-1"), &claims("a"), &rsa)
            )
            .await,
            201,
            "the genuine RS256 token still works"
        );
    }
}

#[tokio::test]
async fn unknown_kids_refetch_the_jwks_at_a_bounded_rate() {
    let idp = idp(vec![rsa_key().jwk.clone()]).await;
    let url = idp.url.clone();
    let app = TestApp::spawn_with(move |c| {
        c.auth.jwks_url = Some(url);
        c.auth.audience = Some("mediagate".into());
        c.auth.jwks_min_refetch_seconds = 1;
    })
    .await;
    let rsa = EncodingKey::from_rsa_pem(rsa_key().private_pem.as_bytes()).unwrap();
    assert_eq!(
        status(
            &app,
            &sign(Algorithm::RS256, Some("rsa-1"), &claims("a"), &rsa)
        )
        .await,
        201
    );
    assert_eq!(idp.fetches.load(Ordering::SeqCst), 1);

    // Forged kids: at most one refetch per interval, however many arrive. (The app's clock
    // stands still between moves: the 20 requests take no time on it.)
    app.clock.advance(std::time::Duration::from_secs(1));
    for i in 0..20 {
        let kid = format!("forged-{i}");
        assert_eq!(
            status(
                &app,
                &sign(Algorithm::RS256, Some(&kid), &claims("a"), &rsa)
            )
            .await,
            401
        );
    }
    assert_eq!(idp.fetches.load(Ordering::SeqCst), 2);

    // Key rotation: the IdP publishes a new key; after the interval it is picked up.
    let (ec_pem, ec_jwk) = ec_key("ec-new");
    idp.keys.lock().unwrap().push(ec_jwk);
    app.clock.advance(std::time::Duration::from_secs(1));
    let ec = EncodingKey::from_ec_pem(ec_pem.as_bytes()).unwrap();
    assert_eq!(
        status(
            &app,
            &sign(Algorithm::ES256, Some("ec-new"), &claims("b"), &ec)
        )
        .await,
        201
    );
    assert_eq!(idp.fetches.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn an_unreachable_jwks_is_401_not_500() {
    let app = TestApp::spawn_with(|c| {
        c.auth.jwks_url = Some("http://127.0.0.1:9/jwks".into());
        c.auth.audience = Some("mediagate".into());
    })
    .await;
    let rsa = EncodingKey::from_rsa_pem(rsa_key().private_pem.as_bytes()).unwrap();
    let response = app
        .create_upload(
            &sign(Algorithm::RS256, Some("rsa-1"), &claims("a"), &rsa),
            json!({"file_name": "a.mp4"}),
        )
        .await;
    assert_eq!(response.status(), 401);
    assert_eq!(error_code(response).await, "unauthorized");
}

#[tokio::test]
async fn api_keys_are_created_once_and_stored_hashed() {
    let app = TestApp::spawn().await;
    let db_url = app.app.config.database.url.expose_secret().to_owned();
    let create = |name: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_mediagate"))
            .args(["api-key", "create", "--name", name])
            .env("MEDIAGATE__DATABASE__URL", &db_url)
            .output()
            .unwrap()
    };
    let out = create("ingest-svc");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(key.starts_with("mgk_") && key.len() > 40, "{key}");

    let again = create("ingest-svc");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert!(!create("Bad Name").status.success());

    let body: Value = app
        .create_upload(&key, json!({"file_name": "feed.ts"}))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        body["object_key"]
            .as_str()
            .unwrap()
            .starts_with("uploads/_k-ingest-svc/"),
        "{body}"
    );
    let mut wrong = key.clone();
    wrong.pop();
    wrong.push(if key.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(status(&app, &wrong).await, 401);

    if let Some(path) = db_url.strip_prefix("sqlite://") {
        let mut bytes = std::fs::read(path).unwrap();
        if let Ok(wal) = std::fs::read(format!("{path}-wal")) {
            bytes.extend(wal);
        }
        let haystack = String::from_utf8_lossy(&bytes);
        assert!(
            !haystack.contains(&key[4..]),
            "the key itself is never stored"
        );
        assert!(haystack.contains(&mediagate::auth::hash_api_key(&key)));
    }
}
