//! App tokens whose signature and claims were checked a moment ago. Apps send the same token
//! with every request until it expires, and checking it again each time (two base64 and JSON
//! decodes and an HMAC, or an RSA or ECDSA verification for JWKS tokens) was the largest part
//! of serving a cached credential. Only accepted tokens are remembered, each no longer than its
//! own `exp` allows, and at most a minute, so a signing key withdrawn from the JWKS stops
//! being honoured within a minute of its own cache.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use hashlink::LruCache;

use super::Principal;

/// Tokens remembered; past it, the least recently used is forgotten.
const CAPACITY: usize = 8192;
/// Longer tokens are checked every time, so memory stays bounded by `CAPACITY` times this.
const MAX_TOKEN_BYTES: usize = 2048;
/// How long a check is trusted, whatever the token's `exp`.
const RECHECK_AFTER: Duration = Duration::from_secs(60);

pub struct VerifiedTokens(Mutex<LruCache<Box<str>, Verified>>);

struct Verified {
    principal: Principal,
    /// The last second (Unix time) at which the token's `exp` still accepts it.
    accepted_until: i64,
    checked: Instant,
}

impl VerifiedTokens {
    pub fn new() -> Self {
        VerifiedTokens(Mutex::new(LruCache::new(CAPACITY)))
    }

    /// The caller `token` was accepted for, if it was checked within the minute before `at`
    /// and its `exp` still accepts it at `now` (Unix seconds).
    pub fn get(&self, token: &str, now: i64, at: Instant) -> Option<Principal> {
        let mut entries = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let verified = entries.get(token)?;
        if now <= verified.accepted_until
            && at.saturating_duration_since(verified.checked) < RECHECK_AFTER
        {
            return Some(verified.principal.clone());
        }
        entries.remove(token);
        None
    }

    /// Remembers that `token` was accepted for `principal` at `at`, and is accepted until
    /// `accepted_until` (Unix seconds).
    pub fn insert(&self, token: &str, principal: &Principal, accepted_until: i64, at: Instant) {
        if token.len() > MAX_TOKEN_BYTES {
            return;
        }
        let verified = Verified {
            principal: principal.clone(),
            accepted_until,
            checked: at,
        };
        let mut entries = self.0.lock().unwrap_or_else(|e| e.into_inner());
        entries.insert(token.into(), verified);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::UserSegment;

    fn alice() -> Principal {
        Principal {
            subject: "alice".into(),
            segment: UserSegment::for_subject("alice"),
            plan: None,
        }
    }

    #[test]
    fn a_token_is_remembered_until_its_exp_and_only_when_short() {
        let t = Instant::now();
        let tokens = VerifiedTokens::new();
        tokens.insert("t1", &alice(), 1_000, t);
        assert_eq!(tokens.get("t1", 999, t).unwrap().subject, "alice");
        assert_eq!(tokens.get("t1", 1_000, t).unwrap().subject, "alice");
        assert!(tokens.get("t1", 1_001, t).is_none(), "past its exp");
        assert!(
            tokens.get("t1", 999, t).is_none(),
            "an expired entry is dropped"
        );
        assert!(tokens.get("other", 0, t).is_none());
        let long = "x".repeat(MAX_TOKEN_BYTES + 1);
        tokens.insert(&long, &alice(), 1_000, t);
        assert!(tokens.get(&long, 0, t).is_none());
    }

    #[test]
    fn at_capacity_the_least_recently_used_token_is_forgotten() {
        let t = Instant::now();
        let tokens = VerifiedTokens::new();
        for i in 0..CAPACITY {
            tokens.insert(&format!("t{i}"), &alice(), 1_000, t);
        }
        assert!(tokens.get("t0", 0, t).is_some());
        tokens.insert("newest", &alice(), 1_000, t);
        assert!(
            tokens.get("t1", 0, t).is_none(),
            "the least recently used one"
        );
        assert!(tokens.get("t0", 0, t).is_some());
        assert!(tokens.get("newest", 0, t).is_some());
    }

    #[test]
    fn a_check_is_trusted_for_a_minute_whatever_the_exp() {
        let t = Instant::now();
        let tokens = VerifiedTokens::new();
        tokens.insert("t1", &alice(), i64::MAX, t);
        assert!(tokens.get("t1", 0, t + Duration::from_secs(59)).is_some());
        assert!(tokens.get("t1", 0, t + RECHECK_AFTER).is_none());
    }
}
