//! The application: its shared state and how it is built from configuration.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::config::Provider;
use crate::credentials::cache::CredentialCache;
use crate::credentials::limits::{AuthThrottle, VendLimits};
use crate::credentials::{KeyPrefix, PolicyDialect, Vendor};
use crate::notifications::keys::KeyStore;
use crate::processing::mps::MpsClient;
use crate::processing::webhook::WebhookClient;
use crate::processing::{Sinks, Worker};
use crate::storage::reader::{ObjectReader, ReaderSettings, StoreReader};
use crate::store::Store;
use crate::sts::{AliyunSts, AwsSts, Sts};
use crate::workflows::WorkflowDef;
use secrecy::{ExposeSecret, SecretString};

/// What `/readyz` last found: whether the service is ready, and each check by name.
#[derive(Debug, Clone)]
pub struct Readiness {
    pub ready: bool,
    pub checks: serde_json::Value,
}

/// Everything a request handler needs; one `Arc<App>` is the router's state.
pub struct App {
    pub config: Config,
    pub store: Store,
    pub auth: Authenticator,
    pub vendor: Vendor,
    /// `storage.prefix`, checked.
    pub prefix: KeyPrefix,
    /// Keys and certificates that sign notifications.
    pub keys: KeyStore,
    /// Wakes the worker when triggers are queued.
    pub wake_worker: Arc<Notify>,
    pub worker: Arc<Worker>,
    /// The input bucket, read with the service keys (verification, readiness).
    pub objects: Arc<dyn ObjectReader>,
    /// Rate limits on credential vending.
    pub limits: VendLimits,
    /// Failed authentication per client address.
    pub auth_throttle: AuthThrottle,
    /// The last readiness answer, and when: probes within a second share one check, so an
    /// unauthenticated endpoint cannot make the database (or upstreams) work in a loop.
    pub readiness: tokio::sync::Mutex<Option<(std::time::Instant, Readiness)>>,
    /// The queue figures `/metrics` last read, and when: scrapes within a few seconds share
    /// one read, so an unauthenticated endpoint cannot make the database count in a loop.
    pub queue_stats: tokio::sync::Mutex<Option<(std::time::Instant, crate::store::QueueStats)>>,
}

impl App {
    /// Connects to the database (applying migrations) and wires the outside services. The
    /// configuration must have passed [`Config::validate`].
    pub async fn build(config: Config) -> anyhow::Result<Arc<App>> {
        let store = Store::connect(&config.database).await?;
        let defs = config
            .workflows
            .iter()
            .cloned()
            .map(WorkflowDef::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|problems| anyhow::anyhow!("workflows: {}", problems.join("; ")))?;
        store.apply_config_workflows(defs).await?;
        let endpoint = config.sts_endpoint();
        let sts: Arc<dyn Sts> = match config.storage.provider {
            Provider::Aliyun => Arc::new(AliyunSts::new(&config.sts, &endpoint)?),
            Provider::S3 => Arc::new(AwsSts::new(&config.sts, &endpoint, config.sts_region())?),
        };
        let sinks = Self::sinks(&config)?;
        Self::with_parts(config, store, sts, sinks)
    }

    /// The MPS sink (with the `mps` keys, by default the `sts` ones) and the webhook sink.
    fn sinks(config: &Config) -> anyhow::Result<Sinks> {
        let mps = MpsClient::new(
            &config.mps.endpoint,
            config
                .mps
                .access_key_id
                .clone()
                .unwrap_or_else(|| config.sts.access_key_id.clone()),
            config.mps.access_key_secret.clone().unwrap_or_else(|| {
                SecretString::from(config.sts.access_key_secret.expose_secret())
            }),
            Duration::from_millis(config.mps.timeout_ms),
        )?;
        let reader = ReaderSettings::new(
            &config.storage,
            (&config.sts.access_key_id, &config.sts.access_key_secret),
        );
        Ok(Sinks {
            mps: Arc::new(mps),
            webhook: Arc::new(WebhookClient::new(Duration::from_millis(
                config.processing.webhook_timeout_ms,
            ))?),
            objects: Arc::new(StoreReader::new(
                &reader,
                crate::upstream::client(Duration::from_secs(10))?,
            )?),
        })
    }

    /// Builds the app around an existing store, STS client and sinks.
    pub fn with_parts(
        config: Config,
        store: Store,
        sts: Arc<dyn Sts>,
        sinks: Sinks,
    ) -> anyhow::Result<Arc<App>> {
        // First, so the handles the parts below keep record into it.
        crate::telemetry::metrics();
        let prefix = KeyPrefix::parse(&config.storage.prefix)
            .map_err(|e| anyhow::anyhow!("storage.prefix: {e}"))?;
        let cache = CredentialCache::new(
            sts,
            config.sts.refresh_after,
            Duration::from_secs(config.sts.min_remaining_seconds),
        );
        let vendor = Vendor::new(
            cache,
            PolicyDialect::for_provider(config.storage.provider, config.aws_partition()),
            config.storage.bucket.clone(),
            config.sts.duration_seconds,
        );
        let auth = Authenticator::new(&config.auth, store.clone())?;
        let keys = KeyStore::new(&config.notifications)?;
        let wake_worker = Arc::new(Notify::new());
        let objects = sinks.objects.clone();
        let worker = Arc::new(Worker::new(
            &config.processing,
            &config.verification,
            config.storage.max_upload_bytes,
            sinks,
            Duration::from_secs(config.server.shutdown_timeout_seconds),
            store.clone(),
            wake_worker.clone(),
        ));
        let limits = VendLimits::new(&config.limits);
        let auth_throttle = AuthThrottle::new(&config.limits);
        Ok(Arc::new(App {
            limits,
            auth_throttle,
            readiness: tokio::sync::Mutex::new(None),
            queue_stats: tokio::sync::Mutex::new(None),
            config,
            store,
            auth,
            vendor,
            prefix,
            keys,
            wake_worker,
            worker,
            objects,
        }))
    }
}

impl App {
    /// The upload use cases, over the app's parts.
    pub fn uploads(&self) -> crate::uploads::Uploads<'_> {
        crate::uploads::Uploads {
            store: &self.store,
            vendor: &self.vendor,
            storage: &self.config.storage,
            prefix: &self.prefix,
            sts: &self.config.sts,
            public_url: &self.config.server.public_url,
            limits: &self.limits,
        }
    }

    /// One reconciliation sweep (see `processing::reconcile`); wakes the worker when it found
    /// objects to process.
    pub async fn reconcile(&self) -> anyhow::Result<crate::processing::reconcile::Sweep> {
        let settings = &self.config.reconcile;
        let expire_after = Duration::from_secs(
            settings
                .expire_after_seconds
                .unwrap_or(u64::from(self.config.sts.duration_seconds) + 3600),
        );
        let sweep = crate::processing::reconcile::sweep(
            &self.store,
            self.objects.as_ref(),
            &self.storage(),
            settings,
            expire_after,
        )
        .await?;
        if sweep.found + sweep.listed > 0 {
            self.wake_worker.notify_one();
        }
        Ok(sweep)
    }

    /// Where uploads go, as intake needs it.
    pub fn storage(&self) -> crate::processing::StorageScope<'_> {
        crate::processing::StorageScope {
            bucket: &self.config.storage.bucket,
            prefix: &self.prefix,
            region: &self.config.storage.region,
            max_upload_bytes: self.config.storage.max_upload_bytes,
            verify: self.config.verification.enabled,
        }
    }
}
