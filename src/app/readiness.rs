//! Whether this instance should be sent traffic: the database answers and is migrated, the
//! trigger worker is looping and, when asked for, the upstreams are reachable. Checks run at
//! most once a second, however often `/readyz` is probed.

use std::time::Duration;

use super::App;

/// Probes within this long of a check share its answer, so an unauthenticated endpoint cannot
/// make the database (or upstreams) work in a loop.
const FRESH_FOR: Duration = Duration::from_secs(1);

/// What a readiness check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Whether every check passed.
    pub ready: bool,
    /// Each check, in the order it was made.
    pub checks: Vec<Check>,
}

/// One check: `failure` says why it failed, in words safe to show an unauthenticated caller
/// (the cause is logged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// `database`, `worker`, `sts`, `mps` or `store`.
    pub name: &'static str,
    pub failure: Option<&'static str>,
}

impl Check {
    fn new(name: &'static str, ok: bool, failure: &'static str) -> Check {
        Check {
            name,
            failure: (!ok).then_some(failure),
        }
    }
}

impl App {
    /// Whether this instance is ready: the last answer while it is fresh (on the app's clock),
    /// otherwise a new check. A worker that stopped (shutdown has begun) is seen at once,
    /// whatever was cached.
    pub async fn readiness(&self) -> Readiness {
        let mut cached = self.readiness.lock().await;
        let now = self.clock.instant();
        let fresh = cached.as_ref().filter(|(at, answer)| {
            now.saturating_duration_since(*at) < FRESH_FOR
                && (!answer.ready || self.worker.is_alive())
        });
        if let Some((_, answer)) = fresh {
            return answer.clone();
        }
        let answer = self.check_readiness().await;
        *cached = Some((self.clock.instant(), answer.clone()));
        answer
    }

    async fn check_readiness(&self) -> Readiness {
        let database = self.store.check_ready().await;
        if let Err(e) = &database {
            tracing::warn!(error = format!("{e:#}"), "readiness check failed: database");
        }
        let worker = self.worker.is_alive();
        if !worker {
            tracing::warn!("readiness check failed: the trigger worker is stopped or stuck");
        }
        let mut checks = vec![
            Check::new("database", database.is_ok(), "unreachable or not migrated"),
            Check::new("worker", worker, "stopped or not looping"),
        ];
        if self.config.server.readyz_upstreams {
            let mut targets = vec![("sts", self.config.sts_endpoint())];
            if self.config.storage.provider == crate::config::Provider::Aliyun {
                targets.push(("mps", self.config.mps.endpoint.clone()));
            }
            let probes = targets.iter().map(|(_, url)| reachable(url));
            for ((name, _), ok) in targets
                .iter()
                .zip(futures_util::future::join_all(probes).await)
            {
                if !ok {
                    tracing::warn!(
                        upstream = name,
                        "readiness check failed: upstream unreachable"
                    );
                }
                checks.push(Check::new(name, ok, "no connection within 1 s"));
            }
        }
        // The store is read with the service keys: a HEAD answered (found or not) proves both
        // the address and the keys.
        if self.config.server.readyz_upstreams && self.config.verification.enabled {
            let probe = tokio::time::timeout(Duration::from_secs(2), self.objects.probe()).await;
            let ok = matches!(probe, Ok(Ok(())));
            if !ok {
                tracing::warn!(
                    upstream = "store",
                    "readiness check failed: the store did not answer"
                );
            }
            checks.push(Check::new(
                "store",
                ok,
                "no answer with the service keys within 2 s",
            ));
        }
        Readiness {
            ready: checks.iter().all(|c| c.failure.is_none()),
            checks,
        }
    }
}

/// Whether `url`'s host accepts a TCP connection within a second: enough to tell a network or
/// DNS fault from a working path, without calling (and being billed for) an API.
async fn reachable(url: &str) -> bool {
    let Ok(url) = url::Url::parse(url) else {
        return false;
    };
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return false;
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    matches!(
        tokio::time::timeout(
            Duration::from_secs(1),
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await,
        Ok(Ok(_))
    )
}
