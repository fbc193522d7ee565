//! Protection of credential vending: per-user and per-client-address rate limits (429
//! `rate_limited` with `Retry-After`), the throttle on failed authentication, and which
//! address a request comes from.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use super::error::ApiError;
use crate::app::App;
use crate::config::{LimitsConfig, ServerConfig};

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

    /// Counts one credential request from `ip` for `user`; 429 when either is over its quota.
    /// The user is checked first, so one user's refused requests do not use up the address's
    /// quota for everyone else behind it (a company NAT, say).
    pub fn vend(&self, ip: IpAddr, user: &str) -> Result<(), ApiError> {
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
    ) -> Result<(), ApiError> {
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
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    clock: DefaultClock,
}

impl AuthThrottle {
    pub fn new(config: &LimitsConfig) -> Self {
        AuthThrottle {
            failures: keyed(config.auth_failures_per_ip_per_minute),
            blocked: Mutex::new(HashMap::new()),
            clock: DefaultClock::default(),
        }
    }

    /// 429 `rate_limited` while `ip` is over its quota of failures.
    pub fn check(&self, ip: IpAddr) -> Result<(), ApiError> {
        if self.failures.is_none() {
            return Ok(());
        }
        let key = address_key(ip);
        let now = Instant::now();
        let blocked = self.blocked.lock().expect("throttle lock");
        match blocked.get(&key) {
            Some(until) if *until > now => Err(too_many(
                *until - now,
                "too many failed authentication attempts from this address; retry later",
            )),
            _ => Ok(()),
        }
    }

    /// Counts one refused credential from `ip`; past the quota, blocks the address and returns
    /// the 429 to answer instead.
    pub fn failed(&self, ip: IpAddr) -> Option<ApiError> {
        let limiter = self.failures.as_ref()?;
        if limiter.len() > PRUNE_ABOVE {
            limiter.retain_recent();
        }
        let key = address_key(ip);
        if let Err(not_until) = limiter.check_key(&key) {
            let now = Instant::now();
            let until = now + not_until.wait_time_from(self.clock.now());
            let mut blocked = self.blocked.lock().expect("throttle lock");
            if blocked.len() > PRUNE_ABOVE {
                blocked.retain(|_, until| *until > now);
            }
            blocked.insert(key, until);
            drop(blocked);
            return self.check(ip).err();
        }
        None
    }
}

/// 429 `rate_limited` with `Retry-After` in whole seconds, rounded up, so a client that waits
/// as told is let through.
fn too_many(wait: Duration, message: &str) -> ApiError {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    ApiError {
        retry_after: Some(Duration::from_secs(secs.max(1))),
        ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
    }
}

/// Applies [`AuthThrottle`] around the routes that authenticate callers: refuses addresses
/// over their quota up front, and counts every 401 they are answered.
pub async fn throttle_auth(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (parts, body) = req.into_parts();
    let ClientIp(ip) = ClientIp::of(&parts, &app);
    if let Err(e) = app.auth_throttle.check(ip) {
        return e.into_response();
    }
    let response = next
        .run(axum::extract::Request::from_parts(parts, body))
        .await;
    if response.status() == StatusCode::UNAUTHORIZED
        && let Some(refused) = app.auth_throttle.failed(ip)
    {
        return refused.into_response();
    }
    response
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

/// The client's address: the TCP peer, or behind a load balancer the last entry of
/// `server.client_ip_header` (the one the balancer itself appended; earlier ones are whatever
/// the client sent, so they are never used), without a port; the TCP peer when that entry is
/// not an address.
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<Arc<App>> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        Ok(ClientIp::of(parts, app))
    }
}

impl ClientIp {
    fn of(parts: &Parts, app: &App) -> ClientIp {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        ClientIp(
            client_ip(&app.config.server, &parts.headers, peer)
                .unwrap_or(IpAddr::from([0, 0, 0, 0])),
        )
    }
}

/// IPv4 clients of a dual-stack listener (`[::]:8080`) arrive as `::ffff:a.b.c.d`; they are
/// counted as the IPv4 addresses they are, never as one shared IPv6 /64.
fn client_ip(
    server: &ServerConfig,
    headers: &axum::http::HeaderMap,
    peer: Option<IpAddr>,
) -> Option<IpAddr> {
    forwarded_ip(server, headers, peer).map(|ip| ip.to_canonical())
}

fn forwarded_ip(
    server: &ServerConfig,
    headers: &axum::http::HeaderMap,
    peer: Option<IpAddr>,
) -> Option<IpAddr> {
    let Some(name) = &server.client_ip_header else {
        return peer;
    };
    let last = headers
        .get_all(name.as_str())
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .map(str::trim);
    last.and_then(parse_address).or(peer)
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:5678`.
fn parse_address(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse() {
        return Some(ip);
    }
    if let Ok(addr) = entry.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    entry
        .strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(ip, _)| ip.parse().ok())
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
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(limits.vend(a, "alice").is_ok());
        assert!(limits.vend(a, "alice").is_ok());
        let e = limits.vend(a, "alice").unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (429, "rate_limited"));
        assert!(e.retry_after.unwrap() >= Duration::from_secs(1));
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
        });
        for _ in 0..1000 {
            assert!(off.vend(a, "alice").is_ok());
        }
    }

    #[test]
    fn the_balancers_address_is_the_last_one() {
        let mut server = ServerConfig::default();
        let peer = Some("192.0.2.9".parse().unwrap());
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("x-forwarded-for", "6.6.6.6, 203.0.113.7".parse().unwrap());
        assert_eq!(client_ip(&server, &headers, peer), peer);
        server.client_ip_header = Some("x-forwarded-for".into());
        let none = axum::http::HeaderMap::new();
        assert_eq!(client_ip(&server, &none, peer), peer, "no header: the peer");
        assert_eq!(
            client_ip(&server, &headers, peer),
            Some("203.0.113.7".parse().unwrap())
        );
        headers.insert("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(client_ip(&server, &headers, peer), peer);
        // A spoofed earlier entry is never used, even when the last one is unreadable.
        headers.insert("x-forwarded-for", "6.6.6.6, unknown".parse().unwrap());
        assert_eq!(client_ip(&server, &headers, peer), peer);
        for (entry, ip) in [
            ("203.0.113.7:443", "203.0.113.7"),
            ("[2001:db8::5]:443", "2001:db8::5"),
            ("2001:db8::5", "2001:db8::5"),
        ] {
            headers.insert(
                "x-forwarded-for",
                format!("6.6.6.6, {entry}").parse().unwrap(),
            );
            assert_eq!(
                client_ip(&server, &headers, peer),
                Some(ip.parse().unwrap())
            );
        }
    }
}
