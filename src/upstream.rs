//! Shared habits of talking to outside HTTP services.

use std::time::Duration;

/// The one way mediagate builds an HTTP client for an outside service: `timeout` bounds a
/// whole request, connecting at most 3 s of it, and redirects are never followed. Every
/// request we send is signed for, or carries a secret meant for, the configured host; a
/// redirect would replay it to a host nobody configured (or leave an allowed key prefix).
pub fn client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(3)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("mediagate/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// The http(s) URLs mediagate accepts for outside services a request names (webhook
/// receivers, cover images), as a pattern the OpenAPI document states and the server checks:
/// a DNS name (labels of letters, digits, `-` and `_`, the last one not numeric) or an IPv4
/// address, an optional port, and a path and query of printable ASCII. No IPv6 literals and
/// no user info.
pub const HTTP_URL: &str = concat!(
    r"^https?://(?:(?:[A-Za-z0-9_-]+\.)*[A-Za-z_][A-Za-z0-9_-]*",
    r"|(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9]))",
    r"(?::(?:[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?",
    r"(?:[/?#][\x21-\x7e]*)?$"
);

/// Describes a failed request without its URL: reqwest's own message includes it, and our
/// URLs carry signatures, access key ids or webhook tokens.
pub fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "transport error"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}

/// Exponential backoff with full jitter: a random delay up to `base * 2^attempt`, capped.
pub fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let ceiling = base.saturating_mul(1u32 << attempt.min(16)).min(cap);
    let millis = ceiling.as_millis() as u64;
    Duration::from_millis(rand::random_range(0..=millis))
}
