//! The application: its shared state, how it is built from configuration, and how it serves
//! on a listener until a shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::auth::Authenticator;
use crate::config::Config;
use crate::credentials::cache::CredentialCache;
use crate::credentials::{KeyPrefix, Vendor};
use crate::store::Store;
use crate::sts::{AliyunSts, Sts};

/// Everything a request handler needs; one `Arc<App>` is the router's state.
pub struct App {
    pub config: Config,
    pub store: Store,
    pub auth: Authenticator,
    pub vendor: Vendor,
    /// `storage.prefix`, checked.
    pub prefix: KeyPrefix,
}

impl App {
    /// Connects to the database (applying migrations) and wires the outside services. The
    /// configuration must have passed [`Config::validate`].
    pub async fn build(config: Config) -> anyhow::Result<Arc<App>> {
        let store = Store::connect(&config.database).await?;
        let sts: Arc<dyn Sts> = Arc::new(AliyunSts::new(&config.sts)?);
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
            config.storage.bucket.clone(),
            config.sts.duration_seconds,
        );
        let auth = Authenticator::new(&config.auth, store.clone())?;
        Ok(Arc::new(App {
            config,
            store,
            auth,
            vendor,
            prefix,
        }))
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
    let signal = async move {
        shutdown.await;
        info!("shutting down: no new connections, finishing in-flight requests");
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
    app.store.close().await;
    Ok(())
}
