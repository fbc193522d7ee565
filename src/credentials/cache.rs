//! Per-scope credential cache with single-flight refresh.
//!
//! STS allows 6000 calls per minute per account and adds tens of milliseconds per call, so
//! credentials for a scope (a user's prefix, or one upload's object) are reused until
//! `refresh_after` of their lifetime has passed. Concurrent requests for the same scope wait on
//! one STS call instead of each making their own: a browser signing every part of one upload
//! costs one `AssumeRole`, not one per part.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::Scope;
use crate::clock::Clock;
use crate::sts::{AssumeRole, Credentials, Sts, StsError};

type Slot = Arc<tokio::sync::Mutex<SlotState>>;

#[derive(Default)]
struct SlotState {
    creds: Option<Arc<Credentials>>,
    /// The last failed fetch: callers that queued behind it share its error instead of each
    /// running their own retries against a failing STS. (An order of events, not a span of
    /// time: the system's monotonic clock tells it.)
    failure: Option<(Instant, StsError)>,
}

/// Past this many scopes, idle entries whose credentials are no longer usable are dropped.
const PRUNE_ABOVE: usize = 10_000;

pub struct CredentialCache {
    sts: Arc<dyn Sts>,
    /// Decides freshness (and the margin STS's answers must leave).
    clock: Arc<dyn Clock>,
    refresh_after: f64,
    min_remaining: chrono::Duration,
    slots: Mutex<HashMap<Scope, Slot>>,
    hits: metrics::Counter,
    misses: metrics::Counter,
}

impl CredentialCache {
    pub fn new(
        sts: Arc<dyn Sts>,
        refresh_after: f64,
        min_remaining: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            sts,
            clock,
            refresh_after,
            min_remaining: chrono::Duration::from_std(min_remaining)
                .unwrap_or(chrono::Duration::MAX),
            slots: Mutex::new(HashMap::new()),
            hits: metrics::counter!("mediagate_credential_cache_total", "result" => "hit"),
            misses: metrics::counter!("mediagate_credential_cache_total", "result" => "miss"),
        }
    }

    /// Credentials for `scope`: cached ones while they are fresh, otherwise a new `AssumeRole`
    /// (one at a time per scope) made by `request`, which is only called then and may refuse
    /// with its own error (a rate limit). Fails when `request` or STS fails, or STS returns
    /// credentials that would expire within the configured margin.
    pub async fn get<E: From<StsError>>(
        &self,
        scope: &Scope,
        request: impl FnOnce() -> Result<AssumeRole, E>,
    ) -> Result<Arc<Credentials>, E> {
        let queued_at = Instant::now();
        let slot = self.slot(scope);
        let mut state = slot.lock().await;
        if let Some(creds) = &state.creds
            && self.is_fresh(creds, self.clock.now())
        {
            self.hits.increment(1);
            return Ok(creds.clone());
        }
        self.misses.increment(1);
        if let Some((failed_at, error)) = &state.failure
            && *failed_at >= queued_at
        {
            return Err(error.clone().into());
        }
        match self.fetch(request()?).await {
            Ok(creds) => {
                state.creds = Some(creds.clone());
                state.failure = None;
                Ok(creds)
            }
            Err(error) => {
                state.failure = Some((Instant::now(), error.clone()));
                Err(error.into())
            }
        }
    }

    async fn fetch(&self, request: AssumeRole) -> Result<Arc<Credentials>, StsError> {
        let started = std::time::Instant::now();
        let result = self.sts.assume_role(&request).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(StsError::Unavailable { .. }) => "unavailable",
            Err(StsError::Rejected { .. }) => "rejected",
        };
        metrics::counter!("mediagate_sts_calls_total", "outcome" => outcome).increment(1);
        metrics::histogram!("mediagate_sts_call_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        let creds = result?;
        if creds.expiration - self.clock.now() < self.min_remaining {
            return Err(StsError::Rejected {
                code: "ExpiresTooSoon".into(),
                message: format!(
                    "credentials expire at {}, within the configured margin; check sts.duration_seconds and the clock",
                    creds.expiration
                ),
                request_id: String::new(),
            });
        }
        Ok(Arc::new(creds))
    }

    fn is_fresh(&self, creds: &Credentials, now: DateTime<Utc>) -> bool {
        is_fresh(creds, now, self.refresh_after, self.min_remaining)
    }

    fn slot(&self, scope: &Scope) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.get(scope) {
            return slot.clone();
        }
        if slots.len() >= PRUNE_ABOVE {
            let now = self.clock.now();
            slots.retain(|_, slot| match slot.try_lock() {
                Ok(state) => state.creds.as_ref().is_some_and(|c| self.is_fresh(c, now)),
                Err(_) => true,
            });
        }
        slots.entry(scope.clone()).or_default().clone()
    }
}

/// Credentials are reused until `refresh_after` of their lifetime has passed, and never when
/// less than `min_remaining` is left.
pub fn is_fresh(
    creds: &Credentials,
    now: DateTime<Utc>,
    refresh_after: f64,
    min_remaining: chrono::Duration,
) -> bool {
    let lifetime = creds.expiration - creds.obtained_at;
    let reuse_for =
        chrono::Duration::milliseconds((lifetime.num_milliseconds() as f64 * refresh_after) as i64);
    now < creds.obtained_at + reuse_for && creds.expiration - now >= min_remaining
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{ManualClock, SystemClock};
    use async_trait::async_trait;
    use secrecy::SecretString;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct CountingSts {
        calls: AtomicUsize,
        lifetime: chrono::Duration,
        fail: bool,
    }

    #[async_trait]
    impl Sts for CountingSts {
        async fn assume_role(&self, _: &AssumeRole) -> Result<Credentials, StsError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            if self.fail {
                return Err(StsError::Unavailable {
                    detail: "down".into(),
                    retry_after: Duration::from_secs(5),
                });
            }
            let now = Utc::now();
            Ok(Credentials {
                access_key_id: format!("STS.{n}"),
                access_key_secret: SecretString::from("s"),
                security_token: SecretString::from("t"),
                expiration: now + self.lifetime,
                obtained_at: now,
            })
        }
    }

    fn request() -> Result<AssumeRole, StsError> {
        Ok(AssumeRole {
            role_session_name: "mg.a".into(),
            policy: "{}".into(),
            duration_seconds: 3600,
        })
    }

    fn user(u: &str) -> Scope {
        Scope::User {
            prefix: "p/".into(),
            user: u.into(),
        }
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_call_per_scope() {
        let sts = Arc::new(CountingSts {
            calls: AtomicUsize::new(0),
            lifetime: chrono::Duration::hours(1),
            fail: false,
        });
        let cache = Arc::new(CredentialCache::new(
            sts.clone(),
            0.8,
            Duration::from_secs(300),
            Arc::new(SystemClock),
        ));
        let mut tasks = Vec::new();
        for i in 0..40 {
            let cache = cache.clone();
            tasks.push(tokio::spawn(async move {
                cache
                    .get(&user(&format!("u{}", i % 4)), request)
                    .await
                    .unwrap()
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(sts.calls.load(Ordering::SeqCst), 4);
        // One upload's own credentials are reused as well.
        let object = Scope::Object("p/u0/id/a.mp4".into());
        cache.get(&object, request).await.unwrap();
        cache.get(&object, request).await.unwrap();
        assert_eq!(sts.calls.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn callers_queued_behind_a_failure_share_it() {
        let sts = Arc::new(CountingSts {
            calls: AtomicUsize::new(0),
            lifetime: chrono::Duration::hours(1),
            fail: true,
        });
        let cache = Arc::new(CredentialCache::new(
            sts.clone(),
            0.8,
            Duration::from_secs(300),
            Arc::new(SystemClock),
        ));
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.get(&user("u"), request).await })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap().is_err());
        }
        assert_eq!(sts.calls.load(Ordering::SeqCst), 1);
        // A later caller tries again rather than inheriting an old failure.
        assert!(cache.get(&user("u"), request).await.is_err());
        assert_eq!(sts.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn credentials_within_the_margin_are_refused() {
        let sts = Arc::new(CountingSts {
            calls: AtomicUsize::new(0),
            lifetime: chrono::Duration::seconds(100),
            fail: false,
        });
        let cache = CredentialCache::new(sts, 0.8, Duration::from_secs(300), Arc::new(SystemClock));
        let err = cache.get(&user("a"), request).await.unwrap_err();
        assert!(matches!(err, StsError::Rejected { ref code, .. } if code == "ExpiresTooSoon"));
    }

    #[tokio::test]
    async fn credentials_are_reused_until_the_clock_passes_their_share_of_lifetime() {
        let sts = Arc::new(CountingSts {
            calls: AtomicUsize::new(0),
            lifetime: chrono::Duration::hours(1),
            fail: false,
        });
        let clock = Arc::new(ManualClock::new());
        let cache = CredentialCache::new(sts.clone(), 0.5, Duration::from_secs(300), clock.clone());
        cache.get(&user("a"), request).await.unwrap();
        clock.advance(Duration::from_secs(29 * 60));
        cache.get(&user("a"), request).await.unwrap();
        assert_eq!(
            sts.calls.load(Ordering::SeqCst),
            1,
            "reused within half the hour"
        );
        clock.advance(Duration::from_secs(2 * 60));
        cache.get(&user("a"), request).await.unwrap();
        assert_eq!(sts.calls.load(Ordering::SeqCst), 2, "replaced past it");
    }

    #[test]
    fn freshness_follows_the_share_of_lifetime_and_the_margin() {
        let t0 = Utc::now();
        let creds = Credentials {
            access_key_id: "a".into(),
            access_key_secret: SecretString::from("s"),
            security_token: SecretString::from("t"),
            expiration: t0 + chrono::Duration::seconds(3600),
            obtained_at: t0,
        };
        let margin = chrono::Duration::seconds(300);
        let at = |s| t0 + chrono::Duration::seconds(s);
        assert!(is_fresh(&creds, at(0), 0.8, margin));
        assert!(is_fresh(&creds, at(2879), 0.8, margin));
        assert!(!is_fresh(&creds, at(2881), 0.8, margin));
        assert!(is_fresh(&creds, at(3299), 1.0, margin));
        assert!(!is_fresh(&creds, at(3301), 1.0, margin));
    }
}
