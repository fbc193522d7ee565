//! Serving the app: the HTTP server and the trigger worker on one listener until a shutdown
//! signal, with the grace periods that make stopping safe.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::app::App;

/// The loops that run beside the HTTP server and act on the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Background {
    /// The trigger worker (`Worker::run`).
    pub worker: bool,
    /// The reconciliation sweeps, which also expire uploads (when
    /// `reconcile.interval_seconds` is not 0).
    pub reconcile: bool,
    /// Following processing to its outcome (`Follower::run_once` every second).
    pub follow: bool,
}

impl Background {
    /// Every loop: how the service runs.
    pub const ALL: Background = Background {
        worker: true,
        reconcile: true,
        follow: true,
    };
    /// None: whoever serves the app does that work itself (`Worker::drain`, `App::reconcile`),
    /// as tests do so that nothing happens behind their back.
    pub const NONE: Background = Background {
        worker: false,
        reconcile: false,
        follow: false,
    };
}

/// Serves `app` on `listener`, with every background loop, until `shutdown` completes, then
/// gives in-flight requests up to `server.shutdown_timeout_seconds` to finish.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_with(app, listener, shutdown, Background::ALL).await
}

/// [`serve`], with only the `background` loops.
pub async fn serve_with(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    background: Background,
) -> anyhow::Result<()> {
    let grace = Duration::from_secs(app.config.server.shutdown_timeout_seconds);
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let (worker_stop_tx, worker_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = background.worker.then(|| {
        tokio::spawn(app.worker.clone().run(async {
            let _ = worker_stop_rx.await;
        }))
    });
    let (reconcile_stop_tx, reconcile_stop_rx) = tokio::sync::oneshot::channel::<()>();
    if background.reconcile {
        tokio::spawn(reconcile_until(app.clone(), reconcile_stop_rx));
    }
    let (follow_stop_tx, follow_stop_rx) = tokio::sync::oneshot::channel::<()>();
    if background.follow {
        tokio::spawn(follow_until(app.clone(), follow_stop_rx));
    }
    // Streams of upload states hear of changes made by any instance; not a loop that acts on
    // the queue, so it runs whatever `background` says.
    tokio::spawn(watch_changes(app.clone()));
    let stopping = app.clone();
    let signal = async move {
        shutdown.await;
        stopping.stopping.send_replace(true);
        let _ = follow_stop_tx.send(());
        info!("shutting down: no new connections, finishing in-flight requests");
        let _ = worker_stop_tx.send(());
        let _ = reconcile_stop_tx.send(());
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
    if let Some(worker) = worker {
        let _ = tokio::time::timeout(grace + Duration::from_secs(5), worker).await;
    }
    app.store.close().await;
    Ok(())
}

/// Sweeps for unannounced uploads every `reconcile.interval_seconds` (never when 0) until
/// `stop` resolves.
async fn reconcile_until(app: Arc<App>, mut stop: tokio::sync::oneshot::Receiver<()>) {
    let seconds = app.config.reconcile.interval_seconds;
    if seconds == 0 {
        return;
    }
    let mut every = tokio::time::interval(Duration::from_secs(seconds));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = every.tick() => {
                if let Err(e) = app.reconcile().await {
                    warn!(error = format!("{e:#}"), "reconciliation sweep failed");
                }
            }
        }
    }
}

/// Looks up due processing runs and times out overdue outcomes every second until `stop`
/// resolves; each run has its own, longer, backoff.
async fn follow_until(app: Arc<App>, mut stop: tokio::sync::oneshot::Receiver<()>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = every.tick() => {
                if let Err(e) = app.follower.run_once().await {
                    warn!(error = format!("{e:#}"), "following processing outcomes failed");
                }
            }
        }
    }
}

/// Tells this instance's streams which uploads changed, four times a second, until the
/// service stops.
async fn watch_changes(app: Arc<App>) {
    let mut stopping = app.stopping.subscribe();
    let mut every = tokio::time::interval(Duration::from_millis(250));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = stopping.changed() => {
                if changed.is_err() || *stopping.borrow() {
                    return;
                }
            }
            _ = every.tick() => if let Err(e) = app.changes.poll(&app.store).await {
                warn!(error = format!("{e:#}"), "reading changed uploads failed");
            }
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
}

/// The OpenAPI document of every route, as served at `/openapi.json`.
pub fn openapi_json() -> &'static str {
    crate::http::openapi_json()
}
