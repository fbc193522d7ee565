//! The application: its shared state and how it is built from configuration.

mod readiness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::auth::Authenticator;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::config::Provider;
use crate::credentials::cache::CredentialCache;
use crate::credentials::limits::{AuthThrottle, VendLimits};
use crate::credentials::{KeyPrefix, PolicyDialect, Vendor};
use crate::notifications::keys::KeyStore;
use crate::processing::follow::{FollowSettings, Follower};
use crate::processing::lifecycle::Backend;
use crate::processing::mps::{MpsClient, MpsQueries};
use crate::processing::reports::REPORT_PATH;
use crate::processing::webhook::WebhookClient;
use crate::processing::{Sink, Sinks, Worker};
use crate::storage::reader::{ObjectReader, ReaderSettings, StoreReader};
use crate::store::Store;
use crate::sts::{AliyunSts, AwsSts, Sts};
use crate::workflows::WorkflowDef;
use secrecy::{ExposeSecret, SecretString};

pub use readiness::{Check, Readiness};

/// What a caller hands [`App::build_with`] in place of what the configuration describes:
/// tests give their own clock, and sinks that record or fail on demand.
#[derive(Default, Clone)]
pub struct Overrides {
    /// Instead of the system clock.
    pub clock: Option<Arc<dyn Clock>>,
    /// Instead of the MPS client.
    pub mps: Option<Arc<dyn Sink>>,
    /// Instead of the webhook client.
    pub webhook: Option<Arc<dyn Sink>>,
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
    /// Follows delivered triggers' processing to its outcome.
    pub follower: Arc<Follower>,
    /// Which uploads changed, for the streams of their states.
    pub changes: crate::uploads::watch::Changes,
    /// Set once the service is stopping: open streams end.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// The input bucket, read with the service keys (verification, readiness).
    pub objects: Arc<dyn ObjectReader>,
    /// Rate limits on credential vending.
    pub limits: VendLimits,
    /// Failed authentication per client address.
    pub auth_throttle: AuthThrottle,
    /// Where everything that time decides reads it.
    pub clock: Arc<dyn Clock>,
    /// The last readiness answer, and when (see [`App::readiness`]).
    readiness: tokio::sync::Mutex<Option<(Instant, Readiness)>>,
    /// The queue figures last read, and when (see [`App::queue_stats`]).
    queue_stats: tokio::sync::Mutex<Option<(Instant, crate::store::QueueStats)>>,
}

impl App {
    /// Connects to the database (applying migrations) and wires the outside services. The
    /// configuration must have passed [`Config::validate`].
    pub async fn build(config: Config) -> anyhow::Result<Arc<App>> {
        Self::build_with(config, Overrides::default()).await
    }

    /// [`App::build`], with `overrides` in place of the parts they name.
    pub async fn build_with(config: Config, overrides: Overrides) -> anyhow::Result<Arc<App>> {
        let store = Store::connect(&config.database).await?;
        let defs = config
            .workflows
            .iter()
            .cloned()
            .map(WorkflowDef::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|problems| anyhow::anyhow!("workflows: {}", problems.join("; ")))?;
        store.apply_config_workflows(defs).await?;
        store.subscribe_events(config.events.subscribed()).await?;
        let endpoint = config.sts_endpoint();
        let sts: Arc<dyn Sts> = match config.storage.provider {
            Provider::Aliyun => Arc::new(AliyunSts::new(&config.sts, &endpoint)?),
            Provider::S3 => Arc::new(AwsSts::new(&config.sts, &endpoint, config.sts_region())?),
        };
        let (mut sinks, queries) = Self::sinks(&config)?;
        if let Some(mps) = overrides.mps {
            sinks.mps = mps;
        }
        if let Some(webhook) = overrides.webhook {
            sinks.webhook = webhook;
        }
        let clock = overrides.clock.unwrap_or_else(|| Arc::new(SystemClock));
        Self::with_parts(config, store, sts, (sinks, queries), clock)
    }

    /// The MPS sink (with the `mps` keys, by default the `sts` ones) and the webhook sink, and
    /// the MPS client's lookups of the runs its deliveries start.
    fn sinks(config: &Config) -> anyhow::Result<(Sinks, Arc<dyn MpsQueries>)> {
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
        let mps = Arc::new(mps);
        let webhook_timeout = Duration::from_millis(config.processing.webhook_timeout_ms);
        let sinks = Sinks {
            mps: mps.clone(),
            webhook: Arc::new(WebhookClient::new(webhook_timeout)?),
            objects: Arc::new({
                let reader =
                    StoreReader::new(&reader, crate::upstream::client(Duration::from_secs(10))?)?;
                let v = &config.verification;
                if v.enabled && v.protected_copy {
                    reader.keeping_copies_under(&v.protected_prefix)
                } else {
                    reader
                }
            }),
        };
        Ok((sinks, mps))
    }

    /// Builds the app around an existing store, STS client, sinks and clock.
    pub fn with_parts(
        config: Config,
        store: Store,
        sts: Arc<dyn Sts>,
        (sinks, queries): (Sinks, Arc<dyn MpsQueries>),
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Arc<App>> {
        // First, so the handles the parts below keep record into it.
        crate::telemetry::metrics();
        let prefix = KeyPrefix::parse(&config.storage.prefix)
            .map_err(|e| anyhow::anyhow!("storage.prefix: {e}"))?;
        let cache = CredentialCache::new(
            sts,
            config.sts.refresh_after,
            Duration::from_secs(config.sts.min_remaining_seconds),
            clock.clone(),
        );
        let vendor = Vendor::new(
            cache,
            PolicyDialect::for_provider(config.storage.provider, config.aws_partition()),
            config.storage.bucket.clone(),
            config.sts.duration_seconds,
        );
        let auth = Authenticator::new(
            &config.auth,
            &config.quotas.plan_claim,
            store.clone(),
            clock.clone(),
        )?;
        let keys = KeyStore::new(&config.notifications)?;
        let wake_worker = Arc::new(Notify::new());
        let objects = sinks.objects.clone();
        let follower = Arc::new(Follower::new(
            store.clone(),
            queries,
            objects.clone(),
            clock.clone(),
            FollowSettings {
                poll_min_ms: seconds_ms(config.processing.outcome_poll_min_seconds),
                poll_max_ms: seconds_ms(config.processing.outcome_poll_max_seconds),
                timeout_ms: seconds_ms(config.processing.outcome_timeout_seconds),
                lease_ms: seconds_ms(config.processing.lease_seconds),
                queries_per_second: config.mps.query_per_second,
            },
        ));
        let worker = Arc::new(Worker::new(
            &config.processing,
            &config.verification,
            config.storage.max_upload_bytes,
            sinks,
            Duration::from_secs(config.server.shutdown_timeout_seconds),
            store.clone(),
            wake_worker.clone(),
            clock.clone(),
            Some(format!(
                "{}{REPORT_PATH}",
                config.server.public_url.trim_end_matches('/')
            )),
            Backend::new(
                &config.events,
                WebhookClient::new(Duration::from_millis(config.processing.webhook_timeout_ms))?,
            ),
            config.quotas.clone(),
        ));
        let limits = VendLimits::new(&config.limits);
        let auth_throttle = AuthThrottle::new(&config.limits);
        Ok(Arc::new(App {
            limits,
            auth_throttle,
            clock,
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
            follower,
            changes: Default::default(),
            stopping: tokio::sync::watch::Sender::new(false),
            objects,
        }))
    }
}

fn seconds_ms(seconds: u64) -> i64 {
    i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX)
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
            outputs: &self.config.outputs,
            quotas: &self.config.quotas,
            clock: self.clock.as_ref(),
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
            self.clock.as_ref(),
        )
        .await?;
        if sweep.found + sweep.listed > 0 {
            self.wake_worker.notify_one();
        }
        Ok(sweep)
    }

    /// The queue figures `/metrics` reports: read at most every few seconds (on the app's
    /// clock), so an unauthenticated endpoint cannot make the database count in a loop;
    /// concurrent scrapes wait for one read.
    pub async fn queue_stats(&self) -> anyhow::Result<crate::store::QueueStats> {
        const FRESH_FOR: Duration = Duration::from_secs(5);
        let mut cached = self.queue_stats.lock().await;
        if let Some((at, stats)) = cached.as_ref()
            && self.clock.instant().saturating_duration_since(*at) < FRESH_FOR
        {
            return Ok(stats.clone());
        }
        let stats = self.store.queue_stats().await?;
        *cached = Some((self.clock.instant(), stats.clone()));
        Ok(stats)
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
