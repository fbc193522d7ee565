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

/// Loopback stand-ins for outside services (key hosts, MPS, webhook receivers) in unit tests.
/// Built on hyper directly: only the HTTP edge builds on axum.
#[cfg(test)]
pub mod loopback {
    use std::future::Future;
    use std::sync::Arc;

    use bytes::Bytes;
    use http::{Request, Response, StatusCode};
    use http_body_util::{BodyExt, Full};
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    /// Serves `handle` on a fresh loopback port for as long as the test's runtime runs, each
    /// request with its whole body read; returns the base URL, `http://127.0.0.1:<port>`.
    pub async fn serve<F, Fut>(handle: F) -> String
    where
        F: Fn(Request<Bytes>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Bytes>> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let handle = Arc::new(handle);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let handle = handle.clone();
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let handle = handle.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await?.to_bytes();
                        let response = handle(Request::from_parts(parts, body)).await;
                        Ok::<_, hyper::Error>(response.map(Full::new))
                    }
                });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
        });
        base
    }

    /// An answer of `status` with `body`.
    pub fn respond(status: StatusCode, body: impl Into<Bytes>) -> Response<Bytes> {
        let mut response = Response::new(body.into());
        *response.status_mut() = status;
        response
    }
}
