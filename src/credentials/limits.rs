//! Rate limits on credential vending (per user and per client address) and the throttle on
//! failed authentication per address. Answered by the HTTP edge as 429 `rate_limited` with
//! `Retry-After`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use serde::Deserialize;

/// A request refused by a limit: retry after `retry_after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimited {
    pub retry_after: Duration,
    pub message: String,
}

/// `[limits]`: how much one user or one address may ask for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// `MEDIAGATE__LIMITS__VEND_PER_USER_PER_MINUTE`, default 120: credential requests
    /// (`POST /v1/uploads`, `.../credentials`, `/v1/sts-token`) per user; 0 disables.
    pub vend_per_user_per_minute: u32,
    /// `MEDIAGATE__LIMITS__VEND_PER_IP_PER_MINUTE`, default 1200: the same per client address;
    /// 0 disables.
    pub vend_per_ip_per_minute: u32,
    /// `MEDIAGATE__LIMITS__AUTH_FAILURES_PER_IP_PER_MINUTE`, default 30: refused credentials
    /// (app tokens, API keys, the admin token, the S3 notification token) per client address;
    /// past it, that address is answered 429 with `Retry-After` before any check runs. 0
    /// disables.
    pub auth_failures_per_ip_per_minute: u32,
    /// `MEDIAGATE__LIMITS__STREAMS_PER_USER`, default 4: `GET /v1/uploads/{id}/events`
    /// streams a user may hold open at once on one instance.
    pub streams_per_user: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            vend_per_user_per_minute: 120,
            vend_per_ip_per_minute: 1200,
            auth_failures_per_ip_per_minute: 30,
            streams_per_user: 4,
        }
    }
}

/// Past this many tracked keys, keys whose buckets are full again are forgotten.
const PRUNE_ABOVE: usize = 100_000;

pub struct VendLimits {
    per_user: Option<DefaultKeyedRateLimiter<String>>,
    /// Keyed by IPv4 address or IPv6 /64: one IPv6 client usually holds a whole /64.
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
}

impl VendLimits {
    pub fn new(config: &LimitsConfig) -> Self {
        VendLimits {
            per_user: keyed(config.vend_per_user_per_minute),
            per_ip: keyed(config.vend_per_ip_per_minute),
            clock: DefaultClock::default(),
        }
    }

    /// Counts one credential request from `ip` for `user`; refused when either is over its
    /// quota.
    /// The user is checked first, so one user's refused requests do not use up the address's
    /// quota for everyone else behind it (a company NAT, say).
    pub fn vend(&self, ip: IpAddr, user: &str) -> Result<(), RateLimited> {
        if let Some(limiter) = &self.per_user {
            self.check(limiter, &user.to_owned(), "this user")?;
        }
        if let Some(limiter) = &self.per_ip {
            self.check(limiter, &address_key(ip), "this address")?;
        }
        Ok(())
    }

    fn check<K: std::hash::Hash + Eq + Clone>(
        &self,
        limiter: &DefaultKeyedRateLimiter<K>,
        key: &K,
        who: &str,
    ) -> Result<(), RateLimited> {
        if limiter.len() > PRUNE_ABOVE {
            limiter.retain_recent();
        }
        limiter.check_key(key).map_err(|not_until| {
            too_many(
                not_until.wait_time_from(self.clock.now()),
                &format!("too many credential requests from {who}; retry later"),
            )
        })
    }
}

/// Failed authentication per client address: each refused credential counts, and an address
/// past its quota is answered 429 before its next attempt is even looked at, so guessing
/// tokens or API keys (each a database lookup) is bounded.
pub struct AuthThrottle {
    failures: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Addresses over their quota, until when.
    /// Read on every authenticated request, written only on a refusal past the quota.
    blocked: RwLock<HashMap<IpAddr, Instant>>,
    clock: DefaultClock,
}

impl AuthThrottle {
    pub fn new(config: &LimitsConfig) -> Self {
        AuthThrottle {
            failures: keyed(config.auth_failures_per_ip_per_minute),
            blocked: RwLock::new(HashMap::new()),
            clock: DefaultClock::default(),
        }
    }

    /// Refused while `ip` is over its quota of failures.
    pub fn check(&self, ip: IpAddr) -> Result<(), RateLimited> {
        if self.failures.is_none() {
            return Ok(());
        }
        let blocked = self.blocked.read().expect("throttle lock");
        if blocked.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        match blocked.get(&address_key(ip)) {
            Some(until) if *until > now => Err(refused_auth(*until - now)),
            _ => Ok(()),
        }
    }

    /// Counts one refused credential from `ip`; past the quota, blocks the address and returns
    /// the refusal to answer instead.
    pub fn failed(&self, ip: IpAddr) -> Option<RateLimited> {
        let limiter = self.failures.as_ref()?;
        if limiter.len() > PRUNE_ABOVE {
            limiter.retain_recent();
        }
        let key = address_key(ip);
        let wait = limiter
            .check_key(&key)
            .err()?
            .wait_time_from(self.clock.now());
        let now = Instant::now();
        let mut blocked = self.blocked.write().expect("throttle lock");
        if blocked.len() > PRUNE_ABOVE {
            blocked.retain(|_, until| *until > now);
        }
        blocked.insert(key, now + wait);
        Some(refused_auth(wait))
    }
}

fn refused_auth(wait: Duration) -> RateLimited {
    too_many(
        wait,
        "too many failed authentication attempts from this address; retry later",
    )
}

/// A refusal for `wait`, in whole seconds rounded up, so a client that waits as told is let
/// through.
fn too_many(wait: Duration, message: &str) -> RateLimited {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    RateLimited {
        retry_after: Duration::from_secs(secs.max(1)),
        message: message.to_owned(),
    }
}

/// The address as rate limits count it: IPv4 as is (IPv4-mapped IPv6 too), IPv6 by its /64.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        v4 @ IpAddr::V4(_) => v4,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
        }
    }
}

/// A limiter allowing `per_minute` (as a burst, refilled evenly), or none for 0.
fn keyed<K: std::hash::Hash + Eq + Clone>(per_minute: u32) -> Option<DefaultKeyedRateLimiter<K>> {
    NonZeroU32::new(per_minute).map(|n| DefaultKeyedRateLimiter::keyed(Quota::per_minute(n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_are_per_user_and_per_address() {
        let limits = VendLimits::new(&LimitsConfig {
            vend_per_user_per_minute: 2,
            vend_per_ip_per_minute: 3,
            auth_failures_per_ip_per_minute: 0,
            ..LimitsConfig::default()
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(limits.vend(a, "alice").is_ok());
        assert!(limits.vend(a, "alice").is_ok());
        let e = limits.vend(a, "alice").unwrap_err();
        assert!(e.retry_after >= Duration::from_secs(1));
        // Alice's refused requests did not count against the address.
        assert!(limits.vend(a, "bob").is_ok());
        assert!(
            limits
                .vend(a, "carol")
                .unwrap_err()
                .message
                .contains("address")
        );
        assert!(limits.vend(b, "carol").is_ok());
        // One IPv6 /64 is one address.
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        for host in ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::9"] {
            let _ = limits.vend(v6(host), &format!("u-{host}"));
        }
        assert!(limits.vend(v6("2001:db8:1:2::77"), "dave").is_err());
        assert!(limits.vend(v6("2001:db8:1:3::1"), "dave").is_ok());
        // IPv4-mapped IPv6 is the IPv4 address, not the shared ::ffff:0:0/64.
        assert_eq!(address_key(v6("::ffff:10.0.0.9")), v6("10.0.0.9"));
        assert_ne!(
            address_key(v6("::ffff:10.0.0.9")),
            address_key(v6("::ffff:10.0.0.10"))
        );
        let off = VendLimits::new(&LimitsConfig {
            vend_per_user_per_minute: 0,
            vend_per_ip_per_minute: 0,
            auth_failures_per_ip_per_minute: 0,
            ..LimitsConfig::default()
        });
        for _ in 0..1000 {
            assert!(off.vend(a, "alice").is_ok());
        }
    }
}
