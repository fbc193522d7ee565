//! Which address a request comes from, and the failed-authentication throttle around the
//! routes that check credentials.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;

use super::error::ApiError;
use crate::app::App;
use crate::config::ServerConfig;

/// Applies [`AuthThrottle`] around the routes that authenticate callers: refuses addresses
/// over their quota up front, and counts every 401 they are answered.
pub async fn throttle_auth(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let ClientIp(ip) = ClientIp::of(req.headers(), req.extensions(), &app);
    if let Err(e) = app.auth_throttle.check(ip) {
        return ApiError::from(e).into_response();
    }
    let response = next.run(req).await;
    if response.status() == StatusCode::UNAUTHORIZED
        && let Some(refused) = app.auth_throttle.failed(ip)
    {
        return ApiError::from(refused).into_response();
    }
    response
}

/// The client's address: the TCP peer, or behind a load balancer the last entry of
/// `server.client_ip_header` (the one the balancer itself appended; earlier ones are whatever
/// the client sent, so they are never used), without a port; the TCP peer when that entry is
/// not an address.
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<Arc<App>> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        Ok(ClientIp::of(&parts.headers, &parts.extensions, app))
    }
}

impl ClientIp {
    fn of(
        headers: &axum::http::HeaderMap,
        extensions: &axum::http::Extensions,
        app: &App,
    ) -> ClientIp {
        let peer = extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        ClientIp(client_ip(&app.config.server, headers, peer).unwrap_or(IpAddr::from([0, 0, 0, 0])))
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
