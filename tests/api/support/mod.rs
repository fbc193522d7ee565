//! `TestApp::spawn()`: the real application on port 0 with a fresh database (SQLite, or
//! PostgreSQL when `MEDIAGATE_TEST_POSTGRES_URL` names a server) and a loopback STS.

pub mod sts_fake;

use std::sync::Arc;

use jsonwebtoken::{EncodingKey, Header};
use mediagate::app::{App, serve};
use mediagate::config::Config;
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::Connection;
use tokio::sync::oneshot;

pub use sts_fake::StsFake;

pub const JWT_SECRET: &str = "test-jwt-secret-0123456789abcdef0123456789";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub sts: StsFake,
    pub app: Arc<App>,
    shutdown: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

/// A configuration pointing at `sts` with a fresh database in `dir` (or on PostgreSQL).
pub async fn test_config(sts: &StsFake, dir: &std::path::Path) -> Config {
    config_for(sts, database_url(dir).await)
}

/// A complete configuration for the loopback STS `sts` and the database at `database_url`.
pub fn config_for(sts: &StsFake, database_url: String) -> Config {
    let mut c = Config::default();
    c.server.public_url = "https://uploads.example.com".into();
    c.database.url = SecretString::from(database_url);
    c.auth.jwt_secret = Some(SecretString::from(JWT_SECRET));
    c.storage.bucket = "media-input".into();
    c.storage.region = "cn-hangzhou".into();
    c.storage.endpoint = "https://oss-cn-hangzhou.aliyuncs.com".into();
    c.sts.endpoint = sts.url.clone();
    c.sts.access_key_id = sts_fake::ACCESS_KEY_ID.into();
    c.sts.access_key_secret = SecretString::from(sts_fake::ACCESS_KEY_SECRET);
    c.sts.role_arn = sts_fake::ROLE_ARN.into();
    c.sts.timeout_ms = 2000;
    c
}

async fn database_url(dir: &std::path::Path) -> String {
    match std::env::var("MEDIAGATE_TEST_POSTGRES_URL") {
        Ok(server) if !server.is_empty() => {
            let name = format!("mg_test_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::PgConnection::connect(&server)
                .await
                .expect("connect to the test PostgreSQL server");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .expect("create test database");
            let (base, _) = server.rsplit_once('/').expect("URL has a database path");
            format!("{base}/{name}")
        }
        _ => format!("sqlite://{}/mediagate.db", dir.display()),
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(customise: impl FnOnce(&mut Config)) -> TestApp {
        let sts = StsFake::start().await;
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(&sts, dir.path()).await;
        customise(&mut config);
        assert_eq!(config.validate(), Vec::<String>::new());
        let app = App::build(config).await.expect("app builds");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel();
        tokio::spawn(serve(app.clone(), listener, async {
            let _ = rx.await;
        }));
        TestApp {
            base,
            client: reqwest::Client::new(),
            sts,
            app,
            shutdown: Some(tx),
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// An HS256 app token for `sub`, valid for an hour.
    pub fn token(&self, sub: &str) -> String {
        token_with(json!({"sub": sub, "exp": now() + 3600}), JWT_SECRET)
    }

    pub async fn create_upload(&self, token: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url("/v1/uploads"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub fn token_with(claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// Reads a JSON error body and returns its `code`, checking the shape on the way.
pub async fn error_code(response: reqwest::Response) -> String {
    let body: Value = response.json().await.expect("error body is JSON");
    assert!(body["error"]["message"].is_string(), "{body}");
    body["error"]["code"]
        .as_str()
        .expect("error.code")
        .to_owned()
}
