//! Typed, layered configuration: built-in defaults, then a TOML file, then
//! `MEDIAGATE__<SECTION>__<KEY>` environment variables. Secrets are `SecretString`, so neither
//! `Debug` nor logs ever show them; `validate` lists every problem, one line each.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_PATH: &str = "config/mediagate.toml";

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub storage: StorageConfig,
    pub sts: StsConfig,
    pub mps: MpsConfig,
    pub notifications: NotificationsConfig,
    pub processing: ProcessingConfig,
    pub limits: LimitsConfig,
    /// `[[workflows]]`: loaded into the database at start (matched by name).
    pub workflows: Vec<WorkflowConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// `MEDIAGATE__SERVER__LISTEN`, default `127.0.0.1:8080`.
    pub listen: String,
    /// `MEDIAGATE__SERVER__PUBLIC_URL`: the base URL the object store calls back.
    pub public_url: String,
    /// `MEDIAGATE__SERVER__LOG_FORMAT`: `pretty` (default) or `json`.
    pub log_format: LogFormat,
    /// `MEDIAGATE__SERVER__SHUTDOWN_TIMEOUT_SECONDS`, default 20: in-flight requests get this
    /// long to finish after SIGTERM/SIGINT.
    pub shutdown_timeout_seconds: u64,
    /// `MEDIAGATE__SERVER__REQUEST_TIMEOUT_SECONDS`, default 30: a request still running after
    /// this long is answered 503 `timeout`.
    pub request_timeout_seconds: u64,
    /// `MEDIAGATE__SERVER__CORS_ORIGINS`: browser origins allowed to call `/v1/uploads*` and
    /// `/v1/sts-token` (exact `scheme://host[:port]`); empty (default) allows none. The
    /// notification and admin routes never allow cross-origin use.
    pub cors_origins: Vec<String>,
    /// `MEDIAGATE__SERVER__CLIENT_IP_HEADER`: behind a load balancer, the header it puts the
    /// client address in (e.g. `x-forwarded-for`; its last address is used, the one the
    /// balancer appended). Unset (default): the TCP peer address.
    pub client_ip_header: Option<String>,
    /// `MEDIAGATE__SERVER__READYZ_UPSTREAMS`, default false: `/readyz` also checks that the
    /// STS (and, for `aliyun`, MPS) endpoint accepts a connection within a second.
    pub readyz_upstreams: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            public_url: "http://127.0.0.1:8080".into(),
            log_format: LogFormat::Pretty,
            shutdown_timeout_seconds: 20,
            request_timeout_seconds: 30,
            cors_origins: Vec::new(),
            client_ip_header: None,
            readyz_upstreams: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// `MEDIAGATE__LIMITS__VEND_PER_USER_PER_MINUTE`, default 120: credential requests
    /// (`POST /v1/uploads`, `.../credentials`, `/v1/sts-token`) per user; 0 disables.
    pub vend_per_user_per_minute: u32,
    /// `MEDIAGATE__LIMITS__VEND_PER_IP_PER_MINUTE`, default 1200: the same per client address;
    /// 0 disables.
    pub vend_per_ip_per_minute: u32,
    /// `MEDIAGATE__LIMITS__AUTH_FAILURES_PER_IP_PER_MINUTE`, default 30: refused credentials
    /// (app tokens, API keys, the admin token, the S3 notification token) per client address;
    /// past it, that address is answered 429 with `Retry-After` before any check runs. 0
    /// disables.
    pub auth_failures_per_ip_per_minute: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            vend_per_user_per_minute: 120,
            vend_per_ip_per_minute: 1200,
            auth_failures_per_ip_per_minute: 30,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `MEDIAGATE__DATABASE__URL`, default `sqlite://data/mediagate.db`; or `postgres://...`.
    pub url: SecretString,
    /// `MEDIAGATE__DATABASE__MAX_CONNECTIONS`, default 8.
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: SecretString::from("sqlite://data/mediagate.db"),
            max_connections: 8,
        }
    }
}

impl std::fmt::Debug for DatabaseConfig {
    // The URL may carry a password; show only its scheme.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &format_args!("{}://[REDACTED]", self.scheme()))
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

impl DatabaseConfig {
    pub fn scheme(&self) -> &str {
        self.url
            .expose_secret()
            .split_once("://")
            .map_or("", |(scheme, _)| scheme)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `MEDIAGATE__AUTH__JWT_SECRET`: HS256 secret for app tokens (at least 32 bytes).
    pub jwt_secret: Option<SecretString>,
    /// `MEDIAGATE__AUTH__JWKS_URL`: JWKS of the identity provider, for RS256/ES256 tokens.
    pub jwks_url: Option<String>,
    /// `MEDIAGATE__AUTH__ISSUER`: required `iss` when set.
    pub issuer: Option<String>,
    /// `MEDIAGATE__AUTH__AUDIENCE`: required `aud` when set.
    pub audience: Option<String>,
    /// `MEDIAGATE__AUTH__ADMIN_TOKEN`: bearer token for `/v1/admin/*`.
    pub admin_token: Option<SecretString>,
    /// `MEDIAGATE__AUTH__LEEWAY_SECONDS`, default 30: clock skew allowed on `exp`/`nbf`.
    pub leeway_seconds: u64,
    /// `MEDIAGATE__AUTH__JWKS_CACHE_SECONDS`, default 600: how long fetched keys are trusted.
    pub jwks_cache_seconds: u64,
    /// `MEDIAGATE__AUTH__JWKS_MIN_REFETCH_SECONDS`, default 30: an unknown `kid` refetches the
    /// JWKS at most this often, so forged tokens cannot make us hammer the identity provider.
    pub jwks_min_refetch_seconds: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            jwks_url: None,
            issuer: None,
            audience: None,
            admin_token: None,
            leeway_seconds: 30,
            jwks_cache_seconds: 600,
            jwks_min_refetch_seconds: 30,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Alibaba Cloud OSS, STS (RPC signature v1) and MPS.
    Aliyun,
    /// Any S3-compatible store with an AWS-style STS (AWS, Ceph RGW, MinIO), SigV4-signed.
    S3,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Aliyun => "aliyun",
            Provider::S3 => "s3",
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CredentialScope {
    /// Credentials cover the user's whole prefix, so they are cached and shared.
    User,
    /// Credentials cover exactly one object key; never cached.
    Upload,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PostSigning {
    Session,
    Service,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `MEDIAGATE__STORAGE__PROVIDER`, default `aliyun`.
    pub provider: Provider,
    /// `MEDIAGATE__STORAGE__BUCKET`: the input bucket.
    pub bucket: String,
    /// `MEDIAGATE__STORAGE__REGION`, e.g. `cn-hangzhou`.
    pub region: String,
    /// `MEDIAGATE__STORAGE__ENDPOINT`: what clients upload to.
    pub endpoint: String,
    /// `MEDIAGATE__STORAGE__PREFIX`, default `uploads/`: each user uploads under
    /// `{prefix}{user}/`.
    pub prefix: String,
    /// `MEDIAGATE__STORAGE__CREDENTIAL_SCOPE`: `user` (default) or `upload`.
    pub credential_scope: CredentialScope,
    /// `MEDIAGATE__STORAGE__MAX_UPLOAD_BYTES`, default 5 GiB (the PostObject maximum): the
    /// upper bound of a form upload's `content-length-range`.
    pub max_upload_bytes: u64,
    /// `MEDIAGATE__STORAGE__POST_SIGNING`: which keys sign form uploads. `session` (default):
    /// the vended temporary credentials. `service`: the `sts` keys themselves, so the form
    /// shows their AccessKeyId (never the secret); for stores that do not honour forms signed
    /// with session credentials (Ceph RGW 16 neither checks their size range nor announces
    /// their objects).
    pub post_signing: PostSigning,
    /// `MEDIAGATE__STORAGE__PATH_STYLE`, default false: S3 URLs as `{endpoint}/{bucket}/key`
    /// rather than `{bucket}.{endpoint host}` (RGW and MinIO without wildcard DNS).
    pub path_style: bool,
}

impl StorageConfig {
    /// Whether clients must address the bucket in the path (`{endpoint}/{bucket}/key`): as
    /// configured, and always where a bucket host name cannot work (as the AWS SDKs decide):
    /// an endpoint that is an IP address or `localhost` (MinIO and RGW run so), or a bucket
    /// with dots over https (no certificate covers `a.b.host`). S3 only: OSS always
    /// addresses buckets by host name.
    pub fn uses_path_style(&self) -> bool {
        if self.provider != Provider::S3 {
            return false;
        }
        let Ok(url) = Url::parse(&self.endpoint) else {
            return self.path_style;
        };
        let bare_host = !matches!(url.host(), Some(url::Host::Domain(d)) if d != "localhost");
        self.path_style || bare_host || (self.bucket.contains('.') && url.scheme() == "https")
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            provider: Provider::Aliyun,
            bucket: String::new(),
            region: String::new(),
            endpoint: String::new(),
            prefix: "uploads/".into(),
            credential_scope: CredentialScope::User,
            max_upload_bytes: crate::credentials::MAX_POST_OBJECT_BYTES,
            path_style: false,
            post_signing: PostSigning::Session,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StsConfig {
    /// `MEDIAGATE__STS__ENDPOINT`, default `https://sts.aliyuncs.com` for `aliyun` and
    /// `https://sts.{region}.amazonaws.com` for `s3`.
    pub endpoint: Option<String>,
    /// `MEDIAGATE__STS__REGION`: the SigV4 signing region for `s3`, default `storage.region`.
    pub region: Option<String>,
    /// `MEDIAGATE__STS__ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `MEDIAGATE__STS__ACCESS_KEY_SECRET`.
    pub access_key_secret: SecretString,
    /// `MEDIAGATE__STS__ROLE_ARN`, e.g. `acs:ram::1234567890123456:role/uploader` or
    /// `arn:aws:iam::123456789012:role/uploader`.
    pub role_arn: String,
    /// `MEDIAGATE__STS__EXTERNAL_ID`: sent when set.
    pub external_id: Option<String>,
    /// `MEDIAGATE__STS__DURATION_SECONDS`, default 3600 (900 up to the role's maximum).
    pub duration_seconds: u32,
    /// `MEDIAGATE__STS__TIMEOUT_MS`, default 5000: per attempt.
    pub timeout_ms: u64,
    /// `MEDIAGATE__STS__MAX_ATTEMPTS`, default 3: throttling, 5xx and network errors are retried.
    pub max_attempts: u32,
    /// `MEDIAGATE__STS__REFRESH_AFTER`, default 0.8: cached credentials are reused until this
    /// share of their lifetime has passed.
    pub refresh_after: f64,
    /// `MEDIAGATE__STS__MIN_REMAINING_SECONDS`, default 300: credentials with less left are never
    /// handed out.
    pub min_remaining_seconds: u64,
}

impl Default for StsConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: None,
            access_key_id: String::new(),
            access_key_secret: SecretString::from(""),
            role_arn: String::new(),
            external_id: None,
            duration_seconds: 3600,
            timeout_ms: 5000,
            max_attempts: 3,
            refresh_after: 0.8,
            min_remaining_seconds: 300,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MpsConfig {
    /// `MEDIAGATE__MPS__ENDPOINT`, e.g. `https://mts.cn-hangzhou.aliyuncs.com`.
    pub endpoint: String,
    /// `MEDIAGATE__MPS__ACCESS_KEY_ID`: defaults to `sts.access_key_id`.
    pub access_key_id: Option<String>,
    /// `MEDIAGATE__MPS__ACCESS_KEY_SECRET`: defaults to `sts.access_key_secret`.
    pub access_key_secret: Option<SecretString>,
    /// `MEDIAGATE__MPS__TIMEOUT_MS`, default 10000.
    pub timeout_ms: u64,
}

impl Default for MpsConfig {
    fn default() -> Self {
        Self {
            endpoint: "https://mts.cn-hangzhou.aliyuncs.com".into(),
            access_key_id: None,
            access_key_secret: None,
            timeout_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsConfig {
    /// `MEDIAGATE__NOTIFICATIONS__OSS_KEY_URL_PREFIXES`: the only places OSS callback public
    /// keys are fetched from.
    pub oss_key_url_prefixes: Vec<String>,
    /// `MEDIAGATE__NOTIFICATIONS__OSS_PINNED_KEYS`: key URL -> PEM, used instead of fetching.
    pub oss_pinned_keys: std::collections::BTreeMap<String, String>,
    /// `MEDIAGATE__NOTIFICATIONS__MNS_CERT_URL_PREFIXES`: the only places MNS signing
    /// certificates are fetched from.
    pub mns_cert_url_prefixes: Vec<String>,
    /// `MEDIAGATE__NOTIFICATIONS__MNS_PINNED_CERTS`: cert URL -> PEM certificate.
    pub mns_pinned_certs: std::collections::BTreeMap<String, String>,
    /// `MEDIAGATE__NOTIFICATIONS__S3_TOKEN`: bearer token S3/RGW/MinIO webhooks must send.
    pub s3_token: Option<SecretString>,
    /// `MEDIAGATE__NOTIFICATIONS__MNS_ACCOUNT_ID`: the Alibaba Cloud account (digits) whose
    /// MNS topics may push OSS events. MNS signs every account's pushes with one certificate,
    /// so the signed `x-mns-topic-owner` of each push must equal this; unset (default), the
    /// `oss-events` route is not served (404).
    pub mns_account_id: Option<String>,
    /// `MEDIAGATE__NOTIFICATIONS__MNS_TOPIC_NAMES`: when not empty, only pushes from these
    /// topics (the signed `x-mns-topic-name`) are accepted.
    pub mns_topic_names: Vec<String>,
    /// `MEDIAGATE__NOTIFICATIONS__MNS_TOKEN`: when set (at least 16 characters), MNS pushes
    /// must also carry `?token=` with it in the subscribed URL.
    pub mns_token: Option<SecretString>,
    /// `MEDIAGATE__NOTIFICATIONS__FETCH_TIMEOUT_MS`, default 3000: key and cert fetches.
    pub fetch_timeout_ms: u64,
}

impl NotificationsConfig {
    /// Where keys and certificates may be fetched from, by configuration key.
    fn fetch_prefixes(&self) -> [(&'static str, &Vec<String>); 2] {
        [
            (
                "notifications.oss_key_url_prefixes",
                &self.oss_key_url_prefixes,
            ),
            (
                "notifications.mns_cert_url_prefixes",
                &self.mns_cert_url_prefixes,
            ),
        ]
    }
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            oss_key_url_prefixes: vec![
                "http://gosspublic.alicdn.com/".into(),
                "https://gosspublic.alicdn.com/".into(),
            ],
            oss_pinned_keys: Default::default(),
            mns_cert_url_prefixes: vec![
                "https://mnstest.oss-cn-hangzhou.aliyuncs.com/".into(),
                "http://mnstest.oss-cn-hangzhou.aliyuncs.com/".into(),
            ],
            mns_pinned_certs: Default::default(),
            s3_token: None,
            mns_account_id: None,
            mns_topic_names: Vec::new(),
            mns_token: None,
            fetch_timeout_ms: 3000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessingConfig {
    /// `MEDIAGATE__PROCESSING__MAX_ATTEMPTS`, default 8: then the trigger is `dead`.
    pub max_attempts: u32,
    /// `MEDIAGATE__PROCESSING__BACKOFF_BASE_MS`, default 1000: first retry delay ceiling.
    pub backoff_base_ms: u64,
    /// `MEDIAGATE__PROCESSING__BACKOFF_MAX_MS`, default 300000.
    pub backoff_max_ms: u64,
    /// `MEDIAGATE__PROCESSING__LEASE_SECONDS`, default 60: a claimed trigger whose worker
    /// vanished is taken over after this long.
    pub lease_seconds: u64,
    /// `MEDIAGATE__PROCESSING__POLL_INTERVAL_MS`, default 500: idle worker poll interval.
    pub poll_interval_ms: u64,
    /// `MEDIAGATE__PROCESSING__CONCURRENCY`, default 16: deliveries in flight per instance.
    pub concurrency: usize,
    /// `MEDIAGATE__PROCESSING__WEBHOOK_TIMEOUT_MS`, default 10000.
    pub webhook_timeout_ms: u64,
}

impl Default for ProcessingConfig {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            backoff_base_ms: 1000,
            backoff_max_ms: 300_000,
            lease_seconds: 60,
            poll_interval_ms: 500,
            concurrency: 16,
            webhook_timeout_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub enum WorkflowState {
    Active,
    Inactive,
}

#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    Mps,
    Webhook,
}

/// A workflow declared in the configuration, or sent to the admin API.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowConfig {
    pub name: String,
    pub state: WorkflowState,
    pub bucket: String,
    #[serde(default)]
    pub prefix: String,
    pub sink: SinkKind,
    pub media_workflow_id: Option<String>,
    pub webhook_url: Option<String>,
    #[schema(value_type = Option<String>)]
    pub webhook_secret: Option<SecretString>,
    /// Keys under this prefix never trigger (outputs of the workflow itself).
    pub output_prefix: Option<String>,
}

impl Config {
    /// Reads defaults, then `path` (or [`DEFAULT_CONFIG_PATH`] when it exists), then the
    /// environment. Fails on unreadable files, unknown keys and values of the wrong type.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let mut figment = Figment::new();
        match path {
            Some(p) => {
                anyhow::ensure!(p.exists(), "config file {} does not exist", p.display());
                figment = figment.merge(Toml::file_exact(p));
            }
            None => {
                let default = PathBuf::from(DEFAULT_CONFIG_PATH);
                if default.exists() {
                    figment = figment.merge(Toml::file_exact(default));
                }
            }
        }
        figment = figment.merge(Env::prefixed("MEDIAGATE__").split("__"));
        figment
            .extract()
            .map_err(|e| anyhow::anyhow!(e.to_string()))
    }

    /// The STS endpoint: configured, or the provider's default.
    pub fn sts_endpoint(&self) -> String {
        match (&self.sts.endpoint, self.storage.provider) {
            (Some(e), _) => e.clone(),
            (None, Provider::Aliyun) => "https://sts.aliyuncs.com".into(),
            (None, Provider::S3) => {
                let domain = match self.aws_partition() {
                    "aws-cn" => "amazonaws.com.cn",
                    _ => "amazonaws.com",
                };
                format!("https://sts.{}.{domain}", self.sts_region())
            }
        }
    }

    /// The AWS partition of `sts.role_arn` (`aws`, `aws-cn`, `aws-us-gov`); `aws` when the ARN
    /// names none.
    pub fn aws_partition(&self) -> &str {
        self.sts
            .role_arn
            .strip_prefix("arn:")
            .and_then(|rest| rest.split(':').next())
            .filter(|p| p.starts_with("aws"))
            .unwrap_or("aws")
    }

    /// The region STS requests are signed for (`s3`).
    pub fn sts_region(&self) -> &str {
        self.sts.region.as_deref().unwrap_or(&self.storage.region)
    }

    /// Every problem in the configuration, one line each; empty when it is usable.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut p = |msg: String| problems.push(msg);

        if self.server.listen.parse::<SocketAddr>().is_err() {
            p(format!(
                "server.listen: {:?} is not an address like 127.0.0.1:8080",
                self.server.listen
            ));
        }
        if let Err(e) = http_url(&self.server.public_url) {
            p(format!("server.public_url: {e}"));
        }
        if self.server.request_timeout_seconds == 0 {
            p("server.request_timeout_seconds: must be at least 1".into());
        }
        for origin in &self.server.cors_origins {
            if !is_origin(origin) {
                p(format!(
                    "server.cors_origins: {origin:?} must be an origin like https://app.example.com (no path, no wildcard)"
                ));
            }
        }
        if let Some(h) = &self.server.client_ip_header
            && axum::http::HeaderName::from_bytes(h.as_bytes()).is_err()
        {
            p(format!(
                "server.client_ip_header: {h:?} is not a header name"
            ));
        }

        match self.database.scheme() {
            "sqlite" | "postgres" | "postgresql" => {}
            _ => p("database.url: must start with sqlite:// or postgres://".into()),
        }
        if self.database.max_connections == 0 {
            p("database.max_connections: must be at least 1".into());
        }

        if let Some(secret) = &self.auth.jwt_secret
            && secret.expose_secret().len() < 32
        {
            p("auth.jwt_secret: must be at least 32 bytes for HS256".into());
        }
        if let Some(url) = &self.auth.jwks_url {
            if let Err(e) = secure_url(url) {
                p(format!("auth.jwks_url: {e}"));
            }
            // An identity provider signs tokens for all its applications with the same keys:
            // without an audience, a token minted for any of them would be accepted here.
            if self.auth.audience.is_none() {
                p("auth.audience: required with auth.jwks_url (tokens the identity provider issued for other applications would be accepted)".into());
            }
        }
        if self.auth.jwks_min_refetch_seconds == 0 {
            p("auth.jwks_min_refetch_seconds: must be at least 1".into());
        }
        if self.auth.leeway_seconds > 300 {
            p("auth.leeway_seconds: must be at most 300".into());
        }
        if let Some(token) = &self.auth.admin_token
            && token.expose_secret().len() < 16
        {
            p("auth.admin_token: must be at least 16 characters".into());
        }

        let s = &self.storage;
        if let Err(e) = crate::credentials::validate_bucket_name(&s.bucket) {
            p(format!("storage.bucket: {e}"));
        }
        if !is_region(&s.region) {
            p("storage.region: required, like cn-hangzhou or us-east-1".into());
        }
        match http_url(&s.endpoint) {
            Err(e) => p(format!("storage.endpoint: {e}")),
            Ok(url) => {
                if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
                    p(format!(
                        "storage.endpoint: {:?} must be scheme://host[:port] only; the bucket and key are added to it",
                        s.endpoint
                    ));
                }
                let domain = matches!(url.host(), Some(url::Host::Domain(d)) if d != "localhost");
                if s.provider == Provider::Aliyun && !domain {
                    p(format!(
                        "storage.endpoint: {:?} is not a host name; OSS addresses buckets as {{bucket}}.{{endpoint host}}",
                        s.endpoint
                    ));
                }
            }
        }
        if !(1..=crate::credentials::MAX_POST_OBJECT_BYTES).contains(&s.max_upload_bytes) {
            p("storage.max_upload_bytes: must be between 1 and 5 GiB".into());
        }
        if let Err(e) = crate::credentials::KeyPrefix::parse(&s.prefix) {
            p(format!("storage.prefix: {e}"));
        }

        let t = &self.sts;
        if let Err(e) = secure_url(&self.sts_endpoint()) {
            p(format!("sts.endpoint: {e}"));
        }
        if let Some(r) = &t.region
            && !is_region(r)
        {
            p("sts.region: must look like us-east-1".into());
        }
        if t.access_key_id.is_empty() {
            p("sts.access_key_id: required".into());
        }
        if t.access_key_secret.expose_secret().is_empty() {
            p("sts.access_key_secret: required".into());
        }
        match s.provider {
            Provider::Aliyun if !is_role_arn(&t.role_arn) => {
                p("sts.role_arn: must look like acs:ram::1234567890123456:role/uploader".into())
            }
            Provider::S3 if !is_aws_role_arn(&t.role_arn) => {
                p("sts.role_arn: must look like arn:aws:iam::123456789012:role/uploader".into())
            }
            _ => {}
        }
        if !(900..=43200).contains(&t.duration_seconds) {
            p("sts.duration_seconds: must be between 900 and 43200".into());
        }
        if t.timeout_ms == 0 {
            p("sts.timeout_ms: must be at least 1".into());
        }
        if !(1..=10).contains(&t.max_attempts) {
            p("sts.max_attempts: must be between 1 and 10".into());
        }
        if !(t.refresh_after > 0.0 && t.refresh_after <= 1.0) {
            p("sts.refresh_after: must be in (0, 1]".into());
        }
        if t.min_remaining_seconds >= u64::from(t.duration_seconds) {
            p("sts.min_remaining_seconds: must be less than sts.duration_seconds".into());
        }

        if let Err(e) = secure_url(&self.mps.endpoint) {
            p(format!("mps.endpoint: {e}"));
        }
        let n = &self.notifications;
        for (key, prefixes) in n.fetch_prefixes() {
            for prefix in prefixes {
                // A prefix must pin at least the host, or it would allow fetching anything.
                if http_url(prefix).is_err()
                    || !prefix[prefix.find("://").map_or(0, |i| i + 3)..].contains('/')
                {
                    p(format!(
                        "{key}: {prefix:?} must be an http(s) URL prefix ending in a path, like https://host/"
                    ));
                }
            }
        }
        for (url, pem) in &n.oss_pinned_keys {
            if crate::callbacks::oss::parse_public_key_pem(pem).is_err() {
                p(format!(
                    "notifications.oss_pinned_keys: the key for {url:?} is not an RSA public key PEM"
                ));
            }
        }
        for (url, pem) in &n.mns_pinned_certs {
            if crate::callbacks::mns::public_key_from_cert_pem(pem).is_err() {
                p(format!(
                    "notifications.mns_pinned_certs: the certificate for {url:?} is not an RSA certificate PEM"
                ));
            }
        }
        for (key, token) in [
            ("notifications.s3_token", &n.s3_token),
            ("notifications.mns_token", &n.mns_token),
        ] {
            if token.as_ref().is_some_and(|t| t.expose_secret().len() < 16) {
                p(format!("{key}: must be at least 16 characters when set"));
            }
        }
        if let Some(id) = &n.mns_account_id
            && (!(1..=32).contains(&id.len()) || !id.bytes().all(|b| b.is_ascii_digit()))
        {
            p("notifications.mns_account_id: must be the account id, digits only".into());
        }
        for topic in &n.mns_topic_names {
            if !(1..=256).contains(&topic.len())
                || !topic
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                p(format!(
                    "notifications.mns_topic_names: {topic:?} is not an MNS topic name"
                ));
            }
        }
        if !n.mns_topic_names.is_empty() && n.mns_account_id.is_none() {
            p("notifications.mns_topic_names: needs notifications.mns_account_id".into());
        }
        if n.fetch_timeout_ms == 0 {
            p("notifications.fetch_timeout_ms: must be at least 1".into());
        }

        let q = &self.processing;
        if !(1..=100).contains(&q.max_attempts) {
            p("processing.max_attempts: must be between 1 and 100".into());
        }
        if q.backoff_base_ms == 0 || q.backoff_max_ms < q.backoff_base_ms {
            p("processing.backoff_base_ms: must be at least 1 and at most processing.backoff_max_ms".into());
        }
        if !(1..=256).contains(&q.concurrency) {
            p("processing.concurrency: must be between 1 and 256".into());
        }
        if q.poll_interval_ms == 0 {
            p("processing.poll_interval_ms: must be at least 1".into());
        }
        // A lease shorter than a delivery would let a second worker start the same delivery.
        if q.lease_seconds * 1000 <= q.webhook_timeout_ms.max(self.mps.timeout_ms) {
            p("processing.lease_seconds: must be longer than processing.webhook_timeout_ms and mps.timeout_ms".into());
        }

        let mut names = std::collections::HashSet::new();
        for (i, w) in self.workflows.iter().enumerate() {
            if !names.insert(w.name.clone()) {
                p(format!("workflows[{i}]: name {:?} is used twice", w.name));
            }
            if w.sink == SinkKind::Mps && s.provider != Provider::Aliyun {
                p(format!(
                    "workflows[{i}] ({:?}): sink \"mps\" needs storage.provider = \"aliyun\" (MPS reads from OSS)",
                    w.name
                ));
            }
            if let Some(output) = &w.output_prefix
                && w.bucket == s.bucket
                && overlaps_upload_prefix(output, &s.prefix)
            {
                p(format!(
                    "workflows[{i}] ({:?}): output_prefix {output:?} overlaps storage.prefix {:?}; app users could write into it and outputs would land in a user's history",
                    w.name, s.prefix
                ));
            }
            if let Err(errors) = crate::workflows::WorkflowDef::parse(w.clone()) {
                for e in errors {
                    p(format!("workflows[{i}] ({:?}): {e}", w.name));
                }
            }
        }
        problems
    }
}

/// Whether a workflow's output prefix and the upload prefix share keys: either contains the
/// other (an empty output prefix means none).
pub fn overlaps_upload_prefix(output_prefix: &str, upload_prefix: &str) -> bool {
    !output_prefix.is_empty()
        && (output_prefix.starts_with(upload_prefix) || upload_prefix.starts_with(output_prefix))
}

impl Config {
    /// Settings that work but weaken something, one line each: `check-config` prints them and
    /// `serve` logs them, neither refuses to run.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.storage.prefix.is_empty() {
            warnings.push("storage.prefix is empty: every user's folder is at the root of the bucket, beside anything else stored there".to_owned());
        }
        let n = &self.notifications;
        for (key, prefixes) in n.fetch_prefixes() {
            for prefix in prefixes {
                let twin = prefix.replacen("http://", "https://", 1);
                if prefix.starts_with("http://") && !prefixes.contains(&twin) {
                    warnings.push(format!(
                        "{key}: {prefix:?} is plain http with no https twin: keys from it are fetched unencrypted (add {twin:?} and they are fetched over https)"
                    ));
                }
            }
        }
        if n.mns_account_id.is_none() {
            warnings.push("notifications.mns_account_id is not set: /v1/notifications/oss-events is not served (404), since MNS signs every account's pushes alike".to_owned());
        }
        if self.auth.admin_token.is_none() {
            warnings.push("auth.admin_token is not set: the admin API is closed".to_owned());
        }
        warnings
    }
}

fn http_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("{s:?} is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("{s:?} must be an http:// or https:// URL"));
    }
    Ok(url)
}

/// For URLs we send secrets to or take keys from: plain http only on loopback, where there is
/// no network path to tamper with.
fn secure_url(s: &str) -> Result<Url, String> {
    let url = http_url(s)?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if url.scheme() != "https" && !loopback {
        return Err(format!(
            "{s:?} must use https:// (http:// only on loopback)"
        ));
    }
    Ok(url)
}

/// `scheme://host[:port]` exactly as browsers send it in `Origin`.
fn is_origin(origin: &str) -> bool {
    !origin.contains('*')
        && http_url(origin).is_ok_and(|u| u.origin().ascii_serialization() == origin)
}

fn is_region(region: &str) -> bool {
    !region.is_empty()
        && region.len() <= 64
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `arn:{partition}:iam::{account}:role/{path/}{name}`; the account may be empty (Ceph RGW
/// roles of the default tenant).
fn is_aws_role_arn(arn: &str) -> bool {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    partition.starts_with("aws")
        && account.bytes().all(|b| b.is_ascii_digit())
        && resource
            .strip_prefix("role/")
            .is_some_and(|r| !r.is_empty() && !r.ends_with('/'))
}

fn is_role_arn(arn: &str) -> bool {
    let Some(rest) = arn.strip_prefix("acs:ram::") else {
        return false;
    };
    let Some((account, role)) = rest.split_once(":role/") else {
        return false;
    };
    !account.is_empty() && account.bytes().all(|b| b.is_ascii_digit()) && !role.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Config {
        let mut c = Config::default();
        c.storage.bucket = "media-input".into();
        c.storage.region = "cn-hangzhou".into();
        c.storage.endpoint = "https://oss-cn-hangzhou.aliyuncs.com".into();
        c.sts.access_key_id = "id".into();
        c.sts.access_key_secret = SecretString::from("secret-value");
        c.sts.role_arn = "acs:ram::1234567890123456:role/uploader".into();
        c
    }

    #[test]
    fn a_complete_config_has_no_problems() {
        assert_eq!(valid().validate(), Vec::<String>::new());
    }

    #[test]
    fn every_problem_is_reported_on_its_own_line() {
        let problems = Config::default().validate();
        for key in [
            "storage.bucket",
            "storage.region",
            "storage.endpoint",
            "sts.access_key_id",
            "sts.access_key_secret",
            "sts.role_arn",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(key)),
                "{key} missing from {problems:?}"
            );
        }
    }

    #[test]
    fn debug_never_shows_secrets() {
        let mut c = valid();
        c.auth.jwt_secret = Some(SecretString::from("jwt-secret-that-is-long-enough-1234"));
        c.database.url = SecretString::from("postgres://u:dbpassword@localhost/db");
        let debug = format!("{c:?}");
        for secret in ["secret-value", "jwt-secret-that", "dbpassword"] {
            assert!(!debug.contains(secret), "{secret} leaked in {debug}");
        }
    }

    #[test]
    fn key_and_credential_endpoints_need_https_off_loopback() {
        let mut c = valid();
        c.auth.jwks_url = Some("http://idp.example.com/jwks".into());
        c.sts.endpoint = Some("http://sts.aliyuncs.com".into());
        let problems = c.validate();
        assert!(
            problems.iter().any(|p| p.starts_with("auth.jwks_url")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.starts_with("sts.endpoint")),
            "{problems:?}"
        );
        c.auth.jwks_url = Some("http://127.0.0.1:9400/jwks".into());
        c.sts.endpoint = Some("http://localhost:8000".into());
        assert_eq!(c.validate(), vec!["auth.audience: required with auth.jwks_url (tokens the identity provider issued for other applications would be accepted)".to_string()]);
        c.auth.audience = Some("mediagate".into());
        assert_eq!(c.validate(), Vec::<String>::new());
    }

    #[test]
    fn cors_origins_must_be_exact_origins() {
        let mut c = valid();
        c.server.cors_origins = vec![
            "https://app.example.com".into(),
            "http://localhost:3000".into(),
        ];
        assert_eq!(c.validate(), Vec::<String>::new());
        for bad in [
            "*",
            "https://app.example.com/",
            "https://*.example.com",
            "app.example.com",
        ] {
            c.server.cors_origins = vec![bad.into()];
            assert!(
                c.validate()
                    .iter()
                    .any(|p| p.starts_with("server.cors_origins")),
                "{bad}"
            );
        }
    }

    #[test]
    fn role_arn_shape() {
        assert!(is_role_arn("acs:ram::1234567890123456:role/uploader"));
        assert!(!is_role_arn("arn:aws:iam:::role/uploader"));
        assert!(!is_role_arn("acs:ram::12ab:role/x"));
        assert!(!is_role_arn("acs:ram::123:role/"));
        assert!(is_aws_role_arn("arn:aws:iam::123456789012:role/uploader"));
        assert!(is_aws_role_arn("arn:aws:iam:::role/uploader"));
        assert!(is_aws_role_arn(
            "arn:aws-cn:iam::123456789012:role/path/uploader"
        ));
        assert!(!is_aws_role_arn("arn:aws:iam::123456789012:user/uploader"));
        assert!(!is_aws_role_arn("arn:aws:sts::123456789012:role/uploader"));
        assert!(!is_aws_role_arn("arn:aws:iam::12ab:role/uploader"));
        assert!(!is_aws_role_arn("acs:ram::1234567890123456:role/uploader"));
    }

    #[test]
    fn s3_provider_defaults_and_rules() {
        let mut c = valid();
        c.storage.provider = Provider::S3;
        c.storage.region = "us-east-1".into();
        assert!(
            c.validate().iter().any(|p| p.starts_with("sts.role_arn")),
            "an Alibaba role is refused for s3"
        );
        c.sts.role_arn = "arn:aws:iam::123456789012:role/uploader".into();
        assert_eq!(c.validate(), Vec::<String>::new());
        assert_eq!(c.sts_endpoint(), "https://sts.us-east-1.amazonaws.com");
        c.sts.region = Some("eu-west-1".into());
        assert_eq!(c.sts_endpoint(), "https://sts.eu-west-1.amazonaws.com");
        c.sts.role_arn = "arn:aws-cn:iam::123456789012:role/uploader".into();
        c.sts.region = Some("cn-north-1".into());
        assert_eq!(c.aws_partition(), "aws-cn");
        assert_eq!(c.sts_endpoint(), "https://sts.cn-north-1.amazonaws.com.cn");
        c.sts.endpoint = Some("http://127.0.0.1:7480".into());
        assert_eq!(c.sts_endpoint(), "http://127.0.0.1:7480");
        c.workflows.push(WorkflowConfig {
            name: "t".into(),
            state: WorkflowState::Active,
            bucket: "media-input".into(),
            prefix: String::new(),
            sink: SinkKind::Mps,
            media_workflow_id: Some("w".into()),
            webhook_url: None,
            webhook_secret: None,
            output_prefix: None,
        });
        assert!(
            c.validate()
                .iter()
                .any(|p| p.contains("needs storage.provider")),
            "{:?}",
            c.validate()
        );
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own large error type
    fn layers_file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[storage]\nbucket = \"from-file\"\nregion = \"cn-shanghai\"\n[sts]\nduration_seconds = 1800\n",
        )
        .unwrap();
        figment::Jail::expect_with(|jail| {
            jail.set_env("MEDIAGATE__STORAGE__BUCKET", "from-env");
            let c = Config::load(Some(&path)).unwrap();
            assert_eq!(c.storage.bucket, "from-env");
            assert_eq!(c.storage.region, "cn-shanghai");
            assert_eq!(c.sts.duration_seconds, 1800);
            assert_eq!(c.storage.prefix, "uploads/");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[storage]\nbuckett = \"typo\"\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("buckett"), "{err}");
    }
}
