//! `TestApp::spawn()`: the real application on port 0 with a fresh database (SQLite, or
//! PostgreSQL when `MEDIAGATE_TEST_POSTGRES_URL` names a server) and a loopback STS.
//!
//! The test app runs no background loop of its own: nothing is delivered, retried, swept or
//! expired behind the test's back. A test drains the queue (`TestApp::drain`, the worker's
//! one pass until nothing is due), sweeps (`App::reconcile`) and moves the app's clock
//! (`TestApp::clock`) itself, and the test app fails a test that ends with work left in the
//! queue. Tests about the loops themselves opt in to them (`TestAppBuilder::running_worker`).

pub mod mps_fake;
pub mod notify;
pub mod oss_fake;
pub mod rpc;
pub mod sink;
pub mod sts_fake;
pub mod webhook_receiver;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header};
use mediagate::app::{App, Overrides};
use mediagate::clock::ManualClock;
use mediagate::config::Config;
use mediagate::kinds::TriggerState;
use mediagate::processing::Sink;
use mediagate::server::{Background, serve_with};
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::Connection;
use tokio::sync::oneshot;

pub use mps_fake::MpsFake;
pub use notify::{MnsSigner, OssSigner};
pub use oss_fake::OssFake;
pub use sts_fake::StsFake;
pub use webhook_receiver::WebhookReceiver;

pub const JWT_SECRET: &str = "test-jwt-secret-0123456789abcdef0123456789";
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const S3_TOKEN: &str = "test-s3-token-0123456789";
pub const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Where the test OSS callback key is "published" (pinned in the configuration).
pub const OSS_KEY_URL: &str = "https://gosspublic.alicdn.com/mediagate_test_key.pem";
/// The operator's Alibaba Cloud account: the owner of the MNS topic that pushes OSS events.
pub const MNS_ACCOUNT_ID: &str = "1234567890123456";
pub const MNS_CERT_URL: &str = "https://mnstest.oss-cn-hangzhou.aliyuncs.com/mediagate_test.pem";

/// One signer pair per test binary: RSA key generation is slow in debug builds.
pub fn oss_signer() -> &'static OssSigner {
    static SIGNER: std::sync::OnceLock<OssSigner> = std::sync::OnceLock::new();
    SIGNER.get_or_init(|| OssSigner::new(OSS_KEY_URL))
}

/// Serves `router` on a free loopback port for the rest of the test; its base URL.
pub async fn serve_loopback(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

pub fn mns_signer() -> &'static MnsSigner {
    static SIGNER: std::sync::OnceLock<MnsSigner> = std::sync::OnceLock::new();
    SIGNER.get_or_init(|| MnsSigner::new(MNS_CERT_URL))
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub sts: StsFake,
    pub mps: MpsFake,
    /// The input bucket mediagate verifies announced objects in.
    pub oss: OssFake,
    pub hooks: WebhookReceiver,
    pub app: Arc<App>,
    /// The app's clock: a test moves it instead of waiting (see `mediagate::clock`).
    pub clock: Arc<ManualClock>,
    /// Whether the app's own worker runs (`TestAppBuilder::running_worker`).
    running_worker: bool,
    /// Set by `allow_pending_work`.
    pending_allowed: AtomicBool,
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
    c.sts.endpoint = Some(sts.url.clone());
    c.sts.access_key_id = sts_fake::ACCESS_KEY_ID.into();
    c.sts.access_key_secret = SecretString::from(sts_fake::ACCESS_KEY_SECRET);
    c.sts.role_arn = sts_fake::ROLE_ARN.into();
    c.sts.timeout_ms = 2000;
    c.auth.admin_token = Some(SecretString::from(ADMIN_TOKEN));
    c.notifications.s3_token = Some(SecretString::from(S3_TOKEN));
    c.notifications
        .oss_pinned_keys
        .insert(OSS_KEY_URL.into(), oss_signer().public_pem.clone());
    c.notifications
        .mns_pinned_certs
        .insert(MNS_CERT_URL.into(), mns_signer().cert_pem.clone());
    // Fast retries so outage tests finish in seconds (for an app whose own worker runs).
    c.processing.backoff_base_ms = 50;
    c.processing.backoff_max_ms = 200;
    c.processing.poll_interval_ms = 50;
    // Tests sweep for unannounced uploads themselves (`App::reconcile`), when they mean to.
    c.reconcile.interval_seconds = 0;
    // An object the store does not have is missing at the first look (a test that is about
    // looking again sets its own wait).
    c.verification.missing_wait_ms = 0;
    c.processing.webhook_timeout_ms = 2000;
    c.mps.timeout_ms = 2000;
    c.processing.lease_seconds = 3;
    // Tests and benches that are not about rate limits send far more than a user would.
    c.limits.vend_per_user_per_minute = 0;
    c.limits.vend_per_ip_per_minute = 0;
    c.limits.auth_failures_per_ip_per_minute = 0;
    c.notifications.mns_account_id = Some(MNS_ACCOUNT_ID.into());
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

/// A change to the test configuration.
type Customise<'a> = Box<dyn FnOnce(&mut Config) + 'a>;

/// How a `TestApp` is set up: `TestApp::builder()`, then `spawn()`.
pub struct TestAppBuilder<'a> {
    address: String,
    customise: Option<Customise<'a>>,
    running_worker: bool,
    own_public_url: bool,
    overrides: Overrides,
}

impl<'a> TestAppBuilder<'a> {
    /// Changes the configuration the app is built with (after the test defaults).
    pub fn config(mut self, customise: impl FnOnce(&mut Config) + 'a) -> Self {
        self.customise = Some(Box::new(customise));
        self
    }

    /// Listens on `address` (`[::]:0` for a dual-stack listener) instead of `127.0.0.1:0`.
    pub fn listen_at(mut self, address: &str) -> Self {
        self.address = address.to_owned();
        self
    }

    /// Runs the app's own trigger worker beside the server, as the service does, with quick
    /// retries (in real time): only for tests whose subject is that loop (its
    /// concurrency, its graceful stop, readiness reporting it) or that wait on a real store
    /// pushing notifications on its own schedule (RGW). Such a test waits for outcomes
    /// (`wait_upload`) rather than drains.
    pub fn running_worker(mut self) -> Self {
        self.running_worker = true;
        self
    }

    /// Makes `server.public_url` the app's own loopback address, so that what the app hands
    /// out (a processor's `report_url`) reaches it.
    pub fn own_public_url(mut self) -> Self {
        self.own_public_url = true;
        self
    }

    /// Delivers webhook triggers to `sink` instead of over HTTP.
    pub fn webhook_sink(mut self, sink: Arc<dyn Sink>) -> Self {
        self.overrides.webhook = Some(sink);
        self
    }

    pub async fn spawn(self) -> TestApp {
        let sts = StsFake::start().await;
        let mps = MpsFake::start().await;
        let oss = OssFake::start().await;
        let hooks = WebhookReceiver::start(WEBHOOK_SECRET).await;
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(&sts, dir.path()).await;
        config.mps.endpoint = mps.url.clone();
        config.storage.internal_endpoint = Some(oss.url.clone());
        if !self.running_worker {
            // Retries wait a minute and more on the app's clock, far longer than any test
            // runs: a drain retries nothing until the test moves the clock
            // (`TestApp::drain_with_retries`).
            config.processing.backoff_base_ms = 60_000;
            config.processing.backoff_max_ms = 600_000;
        }
        let listener = tokio::net::TcpListener::bind(&self.address).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let base = format!("http://127.0.0.1:{port}");
        if self.own_public_url {
            config.server.public_url = base.clone();
        }
        if let Some(customise) = self.customise {
            customise(&mut config);
        }
        assert_eq!(config.validate(), Vec::<String>::new());
        let clock = Arc::new(ManualClock::new());
        let overrides = Overrides {
            clock: Some(clock.clone()),
            ..self.overrides
        };
        let app = App::build_with(config, overrides)
            .await
            .expect("app builds");
        let (tx, rx) = oneshot::channel();
        // The follower runs with the worker: tests that drain look up runs themselves
        // (`App::follower`), on the clock they move.
        let background = Background {
            worker: self.running_worker,
            reconcile: false,
            follow: self.running_worker,
        };
        tokio::spawn(serve_with(
            app.clone(),
            listener,
            async {
                let _ = rx.await;
            },
            background,
        ));
        TestApp {
            base,
            client: reqwest::Client::new(),
            sts,
            mps,
            oss,
            hooks,
            app,
            clock,
            running_worker: self.running_worker,
            pending_allowed: AtomicBool::new(false),
            shutdown: Some(tx),
            _dir: dir,
        }
    }
}

impl TestApp {
    pub fn builder<'a>() -> TestAppBuilder<'a> {
        TestAppBuilder {
            address: "127.0.0.1:0".into(),
            customise: None,
            running_worker: false,
            own_public_url: false,
            overrides: Overrides::default(),
        }
    }

    pub async fn spawn() -> TestApp {
        Self::builder().spawn().await
    }

    pub async fn spawn_with(customise: impl FnOnce(&mut Config)) -> TestApp {
        Self::builder().config(customise).spawn().await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The key of the protected copy a webhook `delivery` names for the announced `key`
    /// (`verified/{user}/{job}/{file name}`, with `source_key` naming `key`), after checking
    /// that the input bucket holds it with the bytes `key` holds.
    pub fn protected_copy(&self, delivery: &Value, key: &str) -> String {
        assert_eq!(delivery["source_key"], key, "{delivery}");
        let copy = delivery["object_key"].as_str().unwrap().to_owned();
        let name = key.rsplit('/').next().unwrap();
        assert!(
            copy.starts_with("verified/") && copy.ends_with(&format!("/{name}")),
            "{copy}"
        );
        assert!(self.oss.bytes(key).is_some(), "{key} is not in the store");
        assert_eq!(self.oss.bytes(&copy), self.oss.bytes(key), "{copy}");
        copy
    }

    /// An HS256 app token for `sub`, valid for an hour of the app's clock.
    pub fn token(&self, sub: &str) -> String {
        let exp = self.app.clock.now().timestamp() + 3600;
        token_with(json!({"sub": sub, "exp": exp}), JWT_SECRET)
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

impl TestApp {
    /// Puts what `events` announce into the bucket, as an uploader would have: an MP4 of the
    /// announced size and ETag for each object in the input bucket that is not there yet.
    /// Tests about objects the store does not have, or has other bytes for, put (or leave
    /// out) those first.
    fn stage(&self, events: &[mediagate::processing::ObjectEvent]) {
        for e in events.iter().filter(|e| e.bucket == oss_fake::BUCKET) {
            let size = e.size.and_then(|s| usize::try_from(s).ok()).unwrap_or(1024);
            self.oss
                .put_media_if_absent(&e.key, size.min(1 << 20), &e.etag);
        }
    }

    /// Sends a signed OSS upload callback with a form body, as OSS does, for an object in
    /// the bucket.
    pub async fn oss_callback(&self, form: &str) -> reqwest::Response {
        if let Ok(event) = mediagate::notifications::oss::callback_event(form.as_bytes(), false) {
            self.stage(&[event]);
        }
        self.oss_callback_only(form).await
    }

    /// Sends a signed OSS upload callback, whatever the bucket holds.
    pub async fn oss_callback_only(&self, form: &str) -> reqwest::Response {
        let path = "/v1/notifications/oss-callback";
        let (authorization, key_url) = oss_signer().sign(path, None, form.as_bytes());
        self.client
            .post(self.url(path))
            .header("authorization", authorization)
            .header("x-oss-pub-key-url", key_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_owned())
            .send()
            .await
            .unwrap()
    }

    /// The callback OSS sends for `key` with the body mediagate asks for.
    pub async fn upload_completed(
        &self,
        key: &str,
        etag: &str,
        upload_id: &str,
    ) -> reqwest::Response {
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("bucket", "media-input")
            .append_pair("object", key)
            .append_pair("etag", etag)
            .append_pair("size", "1048576")
            .append_pair("mimeType", "video/mp4")
            .append_pair("upload_id", upload_id)
            .finish();
        self.oss_callback(&form).await
    }

    /// Sends an S3 event notification for objects in the bucket.
    pub async fn s3_event(&self, body: &Value) -> reqwest::Response {
        if let Ok(parsed) = mediagate::notifications::s3::s3_events(body.to_string().as_bytes()) {
            self.stage(&parsed.events);
        }
        self.s3_event_only(body).await
    }

    /// Sends an S3 event notification, whatever the bucket holds.
    pub async fn s3_event_only(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/v1/notifications/s3-events"))
            .bearer_auth(S3_TOKEN)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    /// Delivers every trigger due now on the app's clock, as a pass of the worker's loop does,
    /// until none is: what is delivered is delivered, what failed waits for its retry (see
    /// `drain_with_retries`). With the app's own worker running, also waits (reading the
    /// queue) for the deliveries that worker holds.
    pub async fn drain(&self) {
        self.app.worker.drain().await.expect("draining the queue");
        if !self.running_worker {
            return;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            self.app.worker.drain().await.expect("draining the queue");
            let counts = self.app.store.trigger_counts().await.unwrap();
            let busy = counts
                .iter()
                .any(|(state, n)| *n > 0 && (state == "pending" || state == "in_flight"));
            if !busy {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "triggers still pending or in flight: {counts:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Drains, then moves the app's clock to the next retry and drains again, until no
    /// trigger waits for one: every trigger ends delivered or dead, as the sinks answer.
    pub async fn drain_with_retries(&self) {
        for _ in 0..1000 {
            self.drain().await;
            let waiting = self
                .app
                .store
                .list_triggers(TriggerState::Failed, 1000)
                .await
                .unwrap();
            let Some(next) = waiting.iter().map(|t| t.next_attempt_at).min() else {
                return;
            };
            let wait = next - self.app.clock.now_millis();
            if wait > 0 {
                self.clock.advance(Duration::from_millis(wait as u64));
            }
        }
        panic!("triggers were still retried after 1000 passes");
    }

    /// Lets this test end with work in the queue (see `Drop`): for a test about what is left.
    pub fn allow_pending_work(&self) {
        self.pending_allowed.store(true, Ordering::SeqCst);
    }

    /// The upload `id` as its owner `user` sees it.
    pub async fn upload(&self, user: &str, id: &str) -> Value {
        self.get(&self.token(user), &format!("/v1/uploads/{id}"))
            .await
            .json()
            .await
            .unwrap()
    }

    /// The Prometheus text of `GET /metrics`.
    pub async fn metrics_text(&self) -> String {
        let r = self.client.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    }

    /// A signed MNS push of OSS `events` from `owner`'s topic `topic`.
    pub async fn mns_push_from(
        &self,
        owner: &str,
        topic: &str,
        events: Value,
    ) -> reqwest::Response {
        use base64::Engine;
        let body = base64::engine::general_purpose::STANDARD
            .encode(json!({ "events": events }).to_string());
        if let Ok(parsed) = mediagate::notifications::mns::oss_events(body.as_bytes()) {
            self.stage(&parsed.events);
        }
        self.mns_push_only(owner, topic, body).await
    }

    /// A signed MNS push of the (base64) `body` from `owner`'s topic `topic`, whatever the
    /// bucket holds.
    pub async fn mns_push_only(&self, owner: &str, topic: &str, body: String) -> reqwest::Response {
        let path = "/v1/notifications/oss-events";
        let mut request = self.client.post(self.url(path));
        for (name, value) in mns_signer().headers_from(owner, topic, path, &body, &http_date()) {
            request = request.header(name, value);
        }
        request.body(body).send().await.unwrap()
    }

    /// Pushes an MPS workflow message the way MNS does, signed, in `format`.
    pub async fn mps_message(
        &self,
        format: notify::PushFormat,
        topic: &str,
        message: &Value,
    ) -> reqwest::Response {
        let path = "/v1/notifications/mps-events";
        let (body, headers) = mns_signer().mps_push(format, topic, message, path, &http_date());
        let mut request = self.client.post(self.url(path));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.body(body).send().await.unwrap()
    }

    /// The upload as operators see it: notifications and triggers in full.
    pub async fn admin_upload(&self, id: &str) -> Value {
        let r = self
            .admin(
                reqwest::Method::GET,
                &format!("/v1/admin/uploads/{id}"),
                None,
            )
            .await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// Creates an Active webhook workflow on `media-input` for `prefix`, delivering to the
    /// test receiver; returns its id.
    pub async fn webhook_workflow(&self, name: &str, prefix: &str) -> String {
        let body = json!({"name": name, "state": "Active", "bucket": "media-input", "prefix": prefix,
            "sink": "webhook", "webhook_url": self.hooks.url, "webhook_secret": WEBHOOK_SECRET});
        self.create_workflow(body).await
    }

    pub async fn mps_workflow(&self, name: &str, prefix: &str) -> String {
        let body = json!({"name": name, "state": "Active", "bucket": "media-input", "prefix": prefix,
            "sink": "mps", "media_workflow_id": mps_fake::MEDIA_WORKFLOW_ID});
        self.create_workflow(body).await
    }

    async fn create_workflow(&self, body: Value) -> String {
        let response = self
            .admin(reqwest::Method::POST, "/v1/admin/workflows", Some(body))
            .await;
        assert_eq!(response.status(), 201);
        let created: Value = response.json().await.unwrap();
        created["id"].as_str().unwrap().to_owned()
    }

    /// Requests an upload for `user` and returns (upload id, object key).
    pub async fn issue(&self, user: &str, file: &str, media: Value) -> (String, String) {
        let body: Value = self
            .create_upload(
                &self.token(user),
                json!({"file_name": file, "media": media}),
            )
            .await
            .json()
            .await
            .unwrap();
        (
            body["upload_id"].as_str().unwrap().to_owned(),
            body["object_key"].as_str().unwrap().to_owned(),
        )
    }

    /// Polls the upload until `done` holds for it, or panics after 10 s: for an app whose own
    /// worker runs (others drain, then read the upload).
    pub async fn wait_upload(&self, user: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        assert!(
            self.running_worker,
            "nothing happens while the test waits: drain, then read the upload"
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let upload = self.upload(user, id).await;
            if done(&upload) {
                return upload;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "upload never got there: {upload}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        }
    }
}

impl TestApp {
    /// Asks the server to shut down (as SIGTERM does) without waiting for it.
    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Work a test left in the queue: triggers `pending` (due), `in_flight` (claimed) or
/// `failed` (waiting for a retry), which the service would still deliver. `delivered` and
/// `dead` triggers are done with. (Uploads waiting for a reconciliation lookup are not queue
/// work: a test sweeps when it means to.)
const PENDING: [TriggerState; 3] = [
    TriggerState::Pending,
    TriggerState::InFlight,
    TriggerState::Failed,
];

impl Drop for TestApp {
    /// Fails the test when it ends with work pending (see `PENDING`): it asserted before the
    /// work was done, or left work its assertions never saw. `drain` (or
    /// `drain_with_retries`) does the work; `allow_pending_work` says leaving it is the point.
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // A test that fails already says why; a second panic would abort the run.
        if std::thread::panicking() || self.pending_allowed.load(Ordering::SeqCst) {
            return;
        }
        // The test's own runtime is ending, so the queue is read from a thread with a
        // runtime and a connection of its own.
        let database = self.app.config.database.clone();
        let counts = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let store = mediagate::store::Store::connect(&database).await.ok()?;
                let counts = store.trigger_counts().await.ok();
                store.close().await;
                counts
            })
        })
        .join()
        .ok()
        .flatten()
        .expect("reading the queue at the end of the test");
        let pending: Vec<(String, i64)> = counts
            .into_iter()
            .filter(|(state, n)| *n > 0 && PENDING.iter().any(|p| p.as_str() == state))
            .collect();
        assert!(
            pending.is_empty(),
            "the test ended with work still in the queue: {pending:?} (TestApp::drain does \
             it; TestApp::allow_pending_work says leaving it is the point)"
        );
    }
}

/// Now as an HTTP date, as MNS sends it.
pub fn http_date() -> String {
    chrono::Utc::now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
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
