//! Harness shared by the benches: environment parameters, runtimes, the result table, and
//! starting and stopping the app on a loopback port.

use std::time::Duration;

use mediagate::app::App;
use mediagate::config::Config;
use mediagate::server::serve;
use reqwest::Url;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

pub fn env_or(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
        Err(_) => default,
    }
}

pub fn runtime(name: &str, workers: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(name)
        .enable_all()
        .build()
        .unwrap()
}

/// Nearest-rank percentile of sorted durations, in milliseconds.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}

pub fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

/// Kept next to [`row`] so the columns and the values filling them stay in step.
pub fn table_header() {
    println!("| endpoint | requests | req/s | p50 ms | p99 ms | errors |");
    println!("|---|---:|---:|---:|---:|---:|");
}

/// Sorts `latencies` in place: the percentiles need them sorted.
pub fn row(name: &str, latencies: &mut [Duration], elapsed: Duration, errors: usize) {
    latencies.sort_unstable();
    println!(
        "| {name} | {} | {:.0} | {:.2} | {:.2} | {errors} |",
        latencies.len(),
        rate(latencies.len(), elapsed),
        percentile_ms(latencies, 50.0),
        percentile_ms(latencies, 99.0),
    );
}

/// `n` HTTP clients, one per load connection: a client whose requests are strictly
/// sequential keeps exactly one keep-alive connection, so `n` clients mean `n` connections.
pub fn clients(n: usize) -> Vec<reqwest::Client> {
    (0..n)
        .map(|_| {
            reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .tcp_nodelay(true)
                .build()
                .unwrap()
        })
        .collect()
}

/// A database URL fit for the output: where the database is, never the password.
pub fn shown_url(url: &str) -> String {
    let mut shown = Url::parse(url).expect("BENCH_DATABASE_URL is a URL");
    let _ = shown.set_password(None);
    shown.to_string()
}

/// The app serving on a loopback port.
pub struct Server {
    pub base: String,
    /// For benches that prepare data in the store; not every bench does.
    #[allow(dead_code)]
    pub app: std::sync::Arc<App>,
    shutdown: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    /// Starts the app on the current runtime, which then carries the server's work.
    pub async fn start(config: Config) -> Server {
        assert_eq!(config.validate(), Vec::<String>::new());
        let app = App::build(config).await.expect("app builds");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (shutdown, stop) = oneshot::channel();
        let task = tokio::spawn(serve(app.clone(), listener, async {
            let _ = stop.await;
        }));
        Server {
            base,
            app,
            shutdown,
            task,
        }
    }

    /// Graceful shutdown from within the runtime it was started on, bounded.
    #[allow(dead_code)]
    pub async fn shutdown_now(self) -> bool {
        let _ = self.shutdown.send(());
        matches!(
            tokio::time::timeout(Duration::from_secs(10), self.task).await,
            Ok(Ok(Ok(())))
        )
    }

    /// Graceful shutdown on `rt`, the runtime it was started on; bounded, so a shutdown that
    /// hangs is reported instead of hanging the bench.
    pub fn stop(self, rt: &Runtime) {
        let _ = self.shutdown.send(());
        match rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), self.task).await })
        {
            Ok(Ok(Ok(()))) => {}
            other => eprintln!("server did not shut down cleanly: {other:?}"),
        }
    }
}
