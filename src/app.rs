//! The application: its shared state, how it is built from configuration, and how it serves
//! on a listener until a shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::auth::Authenticator;
use crate::callbacks::keys::KeyStore;
use crate::config::Config;
use crate::config::Provider;
use crate::credentials::cache::CredentialCache;
use crate::credentials::{KeyPrefix, PolicyDialect, Vendor};
use crate::processing::Worker;
use crate::store::Store;
use crate::sts::{AliyunSts, AwsSts, Sts};
use crate::workflows::WorkflowDef;

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
    /// Rate limits on credential vending.
    pub limits: crate::http::VendLimits,
    /// Failed authentication per client address.
    pub auth_throttle: crate::http::AuthThrottle,
    /// The last readiness answer, and when: probes within a second share one check, so an
    /// unauthenticated endpoint cannot make the database (or upstreams) work in a loop.
    pub readiness: tokio::sync::Mutex<Option<(std::time::Instant, crate::http::Readiness)>>,
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
        Self::with_parts(config, store, sts)
    }

    /// Builds the app around an existing store and STS client.
    pub fn with_parts(config: Config, store: Store, sts: Arc<dyn Sts>) -> anyhow::Result<Arc<App>> {
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
        let worker = Arc::new(Worker::new(&config, store.clone(), wake_worker.clone())?);
        let limits = crate::http::VendLimits::new(&config.limits);
        let auth_throttle = crate::http::AuthThrottle::new(&config.limits);
        crate::telemetry::metrics();
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
        }))
    }
}

impl App {
    /// Where uploads go, as intake needs it.
    pub fn storage(&self) -> crate::processing::StorageScope<'_> {
        crate::processing::StorageScope {
            bucket: &self.config.storage.bucket,
            prefix: &self.prefix,
            region: &self.config.storage.region,
            max_upload_bytes: self.config.storage.max_upload_bytes,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then gives in-flight requests up to
/// `server.shutdown_timeout_seconds` to finish.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let grace = Duration::from_secs(app.config.server.shutdown_timeout_seconds);
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let (worker_stop_tx, worker_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(app.worker.clone().run(async {
        let _ = worker_stop_rx.await;
    }));
    let signal = async move {
        shutdown.await;
        info!("shutting down: no new connections, finishing in-flight requests");
        let _ = worker_stop_tx.send(());
        let _ = stopping_tx.send(());
    };
    let router = crate::http::router(app.clone());
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(signal);
    let server = tokio::spawn(async move { server.await });
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => { result??; }
        _ = async { let _ = stopping_rx.await; tokio::time::sleep(grace).await } => {
            warn!(seconds = grace.as_secs(), "in-flight requests did not finish in time; closing them");
            server.abort();
        }
    }
    // The worker gives its deliveries in flight the same grace (counted from the signal), then
    // cancels and releases what is unfinished; the margin lets that release reach the database
    // before the pool closes. Were it still stuck, its claims would be taken over when their
    // lease ends.
    let _ = tokio::time::timeout(grace + Duration::from_secs(5), worker).await;
    app.store.close().await;
    Ok(())
}
