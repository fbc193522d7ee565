//! Typed, layered configuration: built-in defaults, then a TOML file, then
//! `MEDIAGATE__<SECTION>__<KEY>` environment variables. Secrets are `SecretString`, so neither
//! `Debug` nor logs ever show them; `validate` lists every problem, one line each.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::ExposeSecret;
use serde::Deserialize;
use url::Url;

pub use crate::auth::AuthConfig;
pub use crate::credentials::limits::LimitsConfig;
pub use crate::notifications::NotificationsConfig;
pub use crate::processing::lifecycle::EventsConfig;
pub use crate::processing::reconcile::ReconcileConfig;
pub use crate::processing::verify::{Playlists, UnknownContent, VerificationConfig};
pub use crate::processing::{MpsConfig, ProcessingConfig};
pub use crate::quotas::QuotasConfig;
pub use crate::storage::{CredentialScope, PostSigning, Provider, StorageConfig};
pub use crate::store::DatabaseConfig;
pub use crate::sts::StsConfig;
pub use crate::telemetry::LogFormat;
pub use crate::uploads::OutputsConfig;
pub use crate::workflows::{SinkKind, WorkflowConfig, WorkflowState};

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
    pub verification: VerificationConfig,
    pub reconcile: ReconcileConfig,
    pub limits: LimitsConfig,
    pub outputs: OutputsConfig,
    /// `[events]`: lifecycle events for the app's own backend.
    pub events: EventsConfig,
    /// `[quotas]`: plans and what they allow.
    pub quotas: QuotasConfig,
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
        // The `http` crate itself: only the HTTP edge builds on axum.
        if let Some(h) = &self.server.client_ip_header
            && ::http::HeaderName::from_bytes(h.as_bytes()).is_err()
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
        if let Err(e) = crate::storage::validate_bucket_name(&s.bucket) {
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
        if !(1..=crate::storage::MAX_POST_OBJECT_BYTES).contains(&s.max_upload_bytes) {
            p("storage.max_upload_bytes: must be between 1 and 5 GiB".into());
        }
        // Each look holds a worker slot: a long wait would let early notifications crowd out
        // real work.
        if self.verification.missing_wait_ms > 60_000 {
            p("verification.missing_wait_ms: must be at most 60000".into());
        }
        if let Err(e) = crate::credentials::KeyPrefix::parse(&s.prefix) {
            p(format!("storage.prefix: {e}"));
        }
        let v = &self.verification;
        if v.enabled && v.protected_copy {
            match crate::credentials::KeyPrefix::parse(&v.protected_prefix) {
                Err(e) => p(format!("verification.protected_prefix: {e}")),
                Ok(_) if v.protected_prefix.is_empty() => p(
                    "verification.protected_prefix: must not be empty: the copies processors read need a prefix of their own".into(),
                ),
                Ok(_) if overlaps_upload_prefix(&v.protected_prefix, &s.prefix) => p(format!(
                    "verification.protected_prefix: {:?} overlaps storage.prefix {:?}; app credentials could write the copies processors read",
                    v.protected_prefix, s.prefix
                )),
                Ok(_) => {}
            }
            use crate::storage::copy::{MAX_COPY_OBJECT_BYTES, MIN_PART_BYTES};
            if !(MIN_PART_BYTES..=MAX_COPY_OBJECT_BYTES).contains(&v.copy_part_bytes) {
                p(format!(
                    "verification.copy_part_bytes: must be between {MIN_PART_BYTES} (5 MiB) and {MAX_COPY_OBJECT_BYTES} (1 GiB)"
                ));
            }
        }
        if let Some(endpoint) = &s.internal_endpoint {
            match secure_url(endpoint) {
                Err(e) => p(format!("storage.internal_endpoint: {e}")),
                Ok(url) if url.path() != "/" || url.query().is_some() => p(format!(
                    "storage.internal_endpoint: {endpoint:?} must be scheme://host[:port] only"
                )),
                Ok(_) => {}
            }
        }
        if self.reconcile.list_unannounced && !self.verification.enabled {
            p("reconcile.list_unannounced: needs verification.enabled (a listing cannot tell a symbolic link from an object)".into());
        }
        if self.reconcile.expire_after_seconds == Some(0) {
            p("reconcile.expire_after_seconds: must be at least 1 (leave it unset for the credential lifetime plus one hour)".into());
        }
        if !(1..=365).contains(&s.abort_incomplete_multipart_days) {
            p("storage.abort_incomplete_multipart_days: must be between 1 and 365".into());
        }
        if !(60..=86_400).contains(&s.presign_expires_seconds) {
            p("storage.presign_expires_seconds: must be between 60 and 86400".into());
        }
        if s.access_key_id.is_some() != s.access_key_secret.is_some() {
            p("storage.access_key_id and storage.access_key_secret: set both, or neither (the sts keys are used)".into());
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
            if crate::notifications::public_key::PublicKey::from_pem(pem).is_err() {
                p(format!(
                    "notifications.oss_pinned_keys: the key for {url:?} is not an RSA public key PEM"
                ));
            }
        }
        for (url, pem) in &n.mns_pinned_certs {
            if crate::notifications::public_key::PublicKey::from_cert_pem(pem).is_err() {
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
        for (key, topics) in [
            ("notifications.mns_topic_names", &n.mns_topic_names),
            ("notifications.mps_topic_names", &n.mps_topic_names),
        ] {
            for topic in topics {
                if !(1..=256).contains(&topic.len())
                    || !topic
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                {
                    p(format!("{key}: {topic:?} is not an MNS topic name"));
                }
            }
            if !topics.is_empty() && n.mns_account_id.is_none() {
                p(format!("{key}: needs notifications.mns_account_id"));
            }
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
        if !(1..=1000).contains(&self.limits.streams_per_user) {
            p("limits.streams_per_user: must be between 1 and 1000".into());
        }
        if !(1..=100).contains(&self.mps.query_per_second) {
            p("mps.query_per_second: must be between 1 and 100 (the account's own limit)".into());
        }
        if !(1..=604_800).contains(&self.outputs.url_expires_seconds) {
            p("outputs.url_expires_seconds: must be between 1 and 604800 (7 days)".into());
        }
        if q.outcome_poll_min_seconds == 0
            || q.outcome_poll_max_seconds < q.outcome_poll_min_seconds
        {
            p("processing.outcome_poll_min_seconds: must be at least 1 and at most processing.outcome_poll_max_seconds".into());
        }
        if !(60..=30 * 86_400).contains(&q.outcome_timeout_seconds) {
            p(
                "processing.outcome_timeout_seconds: must be between 60 and 2592000 (30 days)"
                    .into(),
            );
        }

        for problem in self
            .events
            .problems()
            .into_iter()
            .chain(self.quotas.problems())
        {
            p(problem);
        }
        // Plans count the store's sizes, read by verification: without it an object past a
        // plan, or of a suspended user, would be processed.
        if self.quotas.enabled() && !self.verification.enabled {
            p(
                "quotas.plans: need verification.enabled (objects are judged by the store's size)"
                    .into(),
            );
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
        if self.verification.enabled && !self.verification.protected_copy {
            warnings.push("verification.protected_copy is off: processors read the uploaded object itself, which its uploader can replace after verification while their credentials or presigned URLs are still valid".to_owned());
        }
        if self.verification.enabled && self.storage.access_key_id.is_none() {
            warnings.push(format!(
                "storage.access_key_id is not set: announced objects are read with the sts keys, which then need read access (HEAD, GET) to {}/{}*{}; with readyz_upstreams, /readyz checks it",
                self.storage.bucket,
                self.storage.prefix,
                if self.verification.protected_copy {
                    format!(
                        " and read, write and delete access to {}/{}* for the protected copies",
                        self.storage.bucket, self.verification.protected_prefix
                    )
                } else {
                    String::new()
                }
            ));
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
    use secrecy::SecretString;

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
    fn protected_copies_are_kept_where_no_app_credential_writes() {
        let mut c = valid();
        let problems = |c: &Config| {
            c.validate()
                .into_iter()
                .filter(|p| p.starts_with("verification."))
                .collect::<Vec<_>>()
        };
        for (protected, uploads) in [
            ("uploads/verified/", "uploads/"),
            ("up/", "up/loads/"),
            ("uploads/", "uploads/"),
            ("verified/", ""),
            ("", "uploads/"),
            ("verified", "uploads/"),
            ("../v/", "uploads/"),
        ] {
            c.verification.protected_prefix = protected.into();
            c.storage.prefix = uploads.into();
            let found = problems(&c);
            assert!(
                found.len() == 1 && found[0].starts_with("verification.protected_prefix: "),
                "{protected:?} beside {uploads:?}: {found:?}"
            );
        }
        c.verification.protected_prefix = "verified/".into();
        c.storage.prefix = "uploads/".into();
        assert_eq!(problems(&c), Vec::<String>::new());
        for part in [(5 << 20) - 1, (1 << 30) + 1] {
            c.verification.copy_part_bytes = part;
            assert_eq!(problems(&c).len(), 1, "{part}");
        }
        c.verification.copy_part_bytes = 5 << 20;
        assert_eq!(problems(&c), Vec::<String>::new());
        // Without copies nothing about them is checked, and the operator is warned.
        c.verification.protected_copy = false;
        c.verification.protected_prefix = "uploads/".into();
        assert_eq!(problems(&c), Vec::<String>::new());
        assert!(
            c.warnings()
                .iter()
                .any(|w| w.starts_with("verification.protected_copy is off")),
            "{:?}",
            c.warnings()
        );
    }

    #[test]
    fn topic_lists_hold_topic_names_and_need_the_account() {
        let mut c = valid();
        c.notifications.mps_topic_names = vec!["mps-outcomes".into(), "bad topic".into()];
        c.notifications.mns_topic_names = vec!["".into()];
        let problems = c.validate();
        assert!(problems.contains(
            &"notifications.mps_topic_names: \"bad topic\" is not an MNS topic name".to_owned()
        ));
        assert!(
            problems.contains(
                &"notifications.mns_topic_names: \"\" is not an MNS topic name".to_owned()
            )
        );
        c.notifications.mps_topic_names = vec!["mps-outcomes".into()];
        c.notifications.mns_topic_names = Vec::new();
        c.notifications.mns_account_id = None;
        assert_eq!(
            c.validate(),
            ["notifications.mps_topic_names: needs notifications.mns_account_id"]
        );
        c.notifications.mns_account_id = Some("1234567890123456".into());
        assert_eq!(c.validate(), Vec::<String>::new());
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
            output_bucket: None,
            track_outcome: None,
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
