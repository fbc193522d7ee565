//! The identity provider's JWKS: fetched on first use, trusted for a while, and refetched when
//! a token names an unknown `kid`, at most once per `min_refetch` so forged `kid`s cannot turn
//! us into a load generator against the identity provider.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::{Mutex, RwLock};
use tracing::warn;

use super::AuthError;
use crate::clock::Clock;

/// JWKS documents larger than this are refused.
const MAX_JWKS_BYTES: usize = 256 * 1024;

#[derive(Clone)]
struct Key {
    decoding: DecodingKey,
    alg: Algorithm,
}

#[derive(Default)]
struct Cached {
    keys: HashMap<String, Key>,
    /// Keys published without a `kid`; used only by tokens without one.
    anonymous: Vec<Key>,
    fetched_at: Option<Instant>,
}

pub struct Jwks {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    http: reqwest::Client,
    /// Ages the keys and spaces the fetches.
    clock: Arc<dyn Clock>,
    ttl: Duration,
    min_refetch: Duration,
    cached: RwLock<Cached>,
    /// Held while fetching (one fetch at a time); remembers the last attempt.
    fetching: Mutex<Option<Instant>>,
}

impl Jwks {
    pub fn new(
        url: String,
        ttl: Duration,
        min_refetch: Duration,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let inner = Inner {
            url,
            http: crate::upstream::client(Duration::from_secs(5))?,
            clock,
            ttl,
            min_refetch,
            cached: RwLock::new(Cached::default()),
            fetching: Mutex::new(None),
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The key that verifies a token with this `kid` and algorithm.
    pub(super) async fn key_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<DecodingKey, AuthError> {
        let inner = &self.inner;
        let (found, fresh) = {
            let cached = inner.cached.read().await;
            let now = inner.clock.instant();
            let fresh = cached
                .fetched_at
                .is_some_and(|t| now.saturating_duration_since(t) < inner.ttl);
            (lookup(&cached, kid, alg), fresh)
        };
        if let Some(key) = found {
            if !fresh {
                // Answer with the stale key now; an identity-provider outage must not stall
                // every request behind a fetch.
                let inner = self.inner.clone();
                tokio::spawn(async move {
                    if let Ok(mut last) = inner.fetching.try_lock() {
                        inner.refresh_locked(&mut last, false).await;
                    }
                });
            }
            return Ok(key);
        }
        // An unknown kid, or no keys yet: this request needs the answer, so it waits.
        {
            let mut last = inner.fetching.lock().await;
            inner.refresh_locked(&mut last, fresh).await;
        }
        let cached = inner.cached.read().await;
        match lookup(&cached, kid, alg) {
            Some(key) => Ok(key),
            None if cached.fetched_at.is_none() => Err(AuthError::KeysUnavailable),
            None => Err(AuthError::Invalid),
        }
    }
}

impl Inner {
    /// Refetches unless another caller just did; when the keys are still fresh (an unknown
    /// `kid`), only once per `min_refetch`. The caller holds `fetching`.
    async fn refresh_locked(&self, last_attempt: &mut Option<Instant>, fresh: bool) {
        let limit = if fresh {
            self.min_refetch
        } else {
            // Stale or never fetched: retry sooner, but still not on every request.
            self.min_refetch.min(Duration::from_secs(1))
        };
        let now = self.clock.instant();
        if last_attempt.is_some_and(|t| now.saturating_duration_since(t) < limit) {
            return;
        }
        *last_attempt = Some(now);
        match self.fetch().await {
            Ok(fetched) => *self.cached.write().await = fetched,
            // Keep serving the keys we have: an identity provider outage should not log
            // everyone out.
            Err(e) => warn!(url = %self.url, error = %e, "fetching JWKS failed"),
        }
    }

    async fn fetch(&self) -> anyhow::Result<Cached> {
        let mut response = self.http.get(&self.url).send().await?.error_for_status()?;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            body.extend_from_slice(&chunk);
            anyhow::ensure!(body.len() <= MAX_JWKS_BYTES, "JWKS larger than 256 KiB");
        }
        let set: JwkSet = serde_json::from_slice(&body)?;
        let mut cached = Cached {
            fetched_at: Some(self.clock.instant()),
            ..Cached::default()
        };
        for jwk in &set.keys {
            let alg = match (&jwk.algorithm, jwk.common.key_algorithm) {
                (AlgorithmParameters::RSA(_), None) => Algorithm::RS256,
                (AlgorithmParameters::EllipticCurve(_), None) => Algorithm::ES256,
                (_, Some(ka)) => match ka.to_string().parse::<Algorithm>() {
                    Ok(a @ (Algorithm::RS256 | Algorithm::ES256)) => a,
                    _ => continue,
                },
                _ => continue,
            };
            let Ok(decoding) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            let key = Key { decoding, alg };
            match &jwk.common.key_id {
                Some(kid) => {
                    cached.keys.insert(kid.clone(), key);
                }
                None => cached.anonymous.push(key),
            }
        }
        Ok(cached)
    }
}

fn lookup(cached: &Cached, kid: Option<&str>, alg: Algorithm) -> Option<DecodingKey> {
    let matching = |k: &&Key| k.alg == alg;
    match kid {
        Some(kid) => cached
            .keys
            .get(kid)
            .filter(matching)
            .map(|k| k.decoding.clone()),
        None => {
            // Without a kid, only an unambiguous key will do.
            let mut candidates = cached
                .anonymous
                .iter()
                .chain(cached.keys.values())
                .filter(matching);
            let first = candidates.next()?;
            candidates.next().is_none().then(|| first.decoding.clone())
        }
    }
}
