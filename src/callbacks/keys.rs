//! Public keys for notification signatures: the OSS callback key named by
//! `x-oss-pub-key-url` and the MNS signing certificate named by `x-mns-signing-cert-url`.
//!
//! Both URLs come from the unauthenticated request, so they are checked against configured
//! prefixes before any network I/O (otherwise anyone could make us fetch anything, or sign
//! with their own key). Pinned keys are used without fetching; fetched keys are cached for
//! the life of the process, failures are not.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rsa::RsaPublicKey;
use tokio::sync::OnceCell;

use super::{mns, oss};
use crate::config::NotificationsConfig;

/// Largest key or certificate body we read; real ones are well under 2 KiB.
const MAX_BODY_BYTES: usize = 16 * 1024;
/// URLs in error messages are cut to this many characters (they come from the caller).
const MAX_URL_IN_MESSAGE: usize = 200;

/// Why no key could be had for a notification. Messages name the URL at most.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The URL is not under an allowed prefix; nothing was fetched.
    #[error("{0}")]
    NotAllowed(String),
    /// The key's host could not be reached, timed out or failed (worth retrying).
    #[error("{0}")]
    Unavailable(String),
    /// The header is malformed, or the URL does not hold a usable key.
    #[error("{0}")]
    Invalid(String),
}

/// Public keys and certificates for OSS callbacks and MNS pushes, shared by all requests.
pub struct KeyStore {
    client: reqwest::Client,
    oss: Source,
    mns: Source,
}

impl KeyStore {
    /// Builds the store from configuration. Fails if a pinned PEM does not parse or the HTTP
    /// client cannot be built.
    pub fn new(config: &NotificationsConfig) -> anyhow::Result<KeyStore> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.fetch_timeout_ms))
            // A redirect could leave the allowed prefix.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the key-fetching HTTP client")?;
        Ok(KeyStore {
            client,
            oss: Source::new(
                Kind::OssKey,
                &config.oss_key_url_prefixes,
                &config.oss_pinned_keys,
            )?,
            mns: Source::new(
                Kind::MnsCert,
                &config.mns_cert_url_prefixes,
                &config.mns_pinned_certs,
            )?,
        })
    }

    /// The OSS callback public key named by an `x-oss-pub-key-url` header (base64 of a URL).
    pub async fn oss_callback_key(
        &self,
        pub_key_url_header_b64: &str,
    ) -> Result<Arc<RsaPublicKey>, KeyError> {
        self.oss.key(&self.client, pub_key_url_header_b64).await
    }

    /// The key of the MNS signing certificate named by an `x-mns-signing-cert-url` header
    /// (base64 of a URL).
    pub async fn mns_cert_key(
        &self,
        cert_url_header_b64: &str,
    ) -> Result<Arc<RsaPublicKey>, KeyError> {
        self.mns.key(&self.client, cert_url_header_b64).await
    }
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore")
            .field("oss_prefixes", &self.oss.prefixes)
            .field("mns_prefixes", &self.mns.prefixes)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    OssKey,
    MnsCert,
}

impl Kind {
    fn header(self) -> &'static str {
        match self {
            Kind::OssKey => "x-oss-pub-key-url",
            Kind::MnsCert => "x-mns-signing-cert-url",
        }
    }

    fn parse(self, pem: &str) -> Result<RsaPublicKey, oss::SignatureError> {
        match self {
            Kind::OssKey => oss::parse_public_key_pem(pem),
            Kind::MnsCert => mns::public_key_from_cert_pem(pem),
        }
    }

    fn what(self) -> &'static str {
        match self {
            Kind::OssKey => "an RSA public key",
            Kind::MnsCert => "an X.509 certificate with an RSA key",
        }
    }
}

type Cell = Arc<OnceCell<Arc<RsaPublicKey>>>;

/// One kind of key: where it may come from, what is pinned, what was fetched.
struct Source {
    kind: Kind,
    prefixes: Vec<String>,
    /// The prefixes as the URL parser writes them, to check the URL after normalisation too.
    normalized_prefixes: Vec<String>,
    pinned: HashMap<String, Arc<RsaPublicKey>>,
    /// One cell per URL so concurrent first requests share one fetch.
    fetched: Mutex<HashMap<String, Cell>>,
}

impl Source {
    fn new(
        kind: Kind,
        prefixes: &[String],
        pinned: &BTreeMap<String, String>,
    ) -> anyhow::Result<Source> {
        let pinned = pinned
            .iter()
            .map(|(url, pem)| {
                let key = kind
                    .parse(pem)
                    .with_context(|| format!("pinned {} for {url}", kind.header()))?;
                Ok((url.clone(), Arc::new(key)))
            })
            .collect::<anyhow::Result<_>>()?;
        let normalized_prefixes = prefixes
            .iter()
            .map(|p| url::Url::parse(p).map_or_else(|_| p.clone(), String::from))
            .collect();
        Ok(Source {
            kind,
            prefixes: prefixes.to_vec(),
            normalized_prefixes,
            pinned,
            fetched: Mutex::new(HashMap::new()),
        })
    }

    async fn key(
        &self,
        client: &reqwest::Client,
        header_b64: &str,
    ) -> Result<Arc<RsaPublicKey>, KeyError> {
        let header = self.kind.header();
        let url = B64
            .decode(header_b64.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| KeyError::Invalid(format!("{header} is not base64 of a URL")))?;

        // Pinned keys are trusted by configuration, so they need no prefix.
        if let Some(key) = self.pinned.get(&url) {
            return Ok(key.clone());
        }
        let parsed = self.allowed(&url)?;

        let cell = self
            .fetched
            .lock()
            .expect("key cache lock")
            .entry(url.clone())
            .or_default()
            .clone();
        let result = cell
            .get_or_try_init(|| async {
                fetch(client, self.kind, parsed, &url).await.map(Arc::new)
            })
            .await
            .cloned();
        if result.is_err() {
            // Forget the failure (and the entry, so failed URLs do not pile up), unless
            // another request has replaced or filled the cell meanwhile.
            let mut fetched = self.fetched.lock().expect("key cache lock");
            if let Some(current) = fetched.get(&url)
                && Arc::ptr_eq(current, &cell)
                && !current.initialized()
            {
                fetched.remove(&url);
            }
        }
        result
    }

    /// Parses `url` if it starts with an allowed prefix, both as written and as normalised
    /// (so `..` segments cannot climb out of a prefix that ends in a directory).
    fn allowed(&self, url: &str) -> Result<url::Url, KeyError> {
        let not_allowed = || {
            KeyError::NotAllowed(format!(
                "{} {} is not an allowed location",
                self.kind.header(),
                shorten(url)
            ))
        };
        if !self.prefixes.iter().any(|p| url.starts_with(p.as_str())) {
            return Err(not_allowed());
        }
        let parsed = url::Url::parse(url).map_err(|_| not_allowed())?;
        if !self
            .normalized_prefixes
            .iter()
            .any(|p| parsed.as_str().starts_with(p.as_str()))
        {
            return Err(not_allowed());
        }
        Ok(parsed)
    }
}

/// Fetches and parses one key. Transport failures, timeouts, 5xx and 429 are `Unavailable`;
/// other statuses (redirects included, as they are not followed), oversized or unparsable
/// bodies are `Invalid`.
#[tracing::instrument(skip_all, fields(url = %url, kind = ?kind))]
async fn fetch(
    client: &reqwest::Client,
    kind: Kind,
    parsed: url::Url,
    url: &str,
) -> Result<RsaPublicKey, KeyError> {
    let url = shorten(url);
    let unavailable = |e: reqwest::Error| {
        tracing::warn!(error = %e, "key fetch failed");
        let why = if e.is_timeout() {
            "timed out"
        } else {
            "request failed"
        };
        KeyError::Unavailable(format!("fetching {url}: {why}"))
    };
    let mut response = client.get(parsed).send().await.map_err(unavailable)?;
    let status = response.status();
    if !status.is_success() {
        tracing::warn!(%status, "key fetch refused");
        let message = format!("fetching {url}: HTTP {}", status.as_u16());
        return Err(
            if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                KeyError::Unavailable(message)
            } else {
                KeyError::Invalid(message)
            },
        );
    }
    let too_large = || KeyError::Invalid(format!("{url} is larger than {MAX_BODY_BYTES} bytes"));
    if response
        .content_length()
        .is_some_and(|len| len > MAX_BODY_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(unavailable)? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    std::str::from_utf8(&body)
        .ok()
        .and_then(|pem| kind.parse(pem).ok())
        .ok_or_else(|| KeyError::Invalid(format!("{url} does not hold {}", kind.what())))
}

fn shorten(url: &str) -> String {
    match url.char_indices().nth(MAX_URL_IN_MESSAGE) {
        Some((cut, _)) => format!("{}...", &url[..cut]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::extract::State;
    use axum::http::{StatusCode, Uri, header};
    use axum::response::{IntoResponse, Response};
    use rsa::RsaPrivateKey;
    use rsa::pkcs8::{EncodePublicKey, LineEnding};

    const TV_URL: &str = "http://gosspublic.alicdn.com/callback_pub_key_v1.pem";
    const TV_HEADER: &str =
        "aHR0cDovL2dvc3NwdWJsaWMuYWxpY2RuLmNvbS9jYWxsYmFja19wdWJfa2V5X3YxLnBlbQ==";
    const TV_KEY: &str = "-----BEGIN PUBLIC KEY-----
MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAKs/JBGzwUB2aVht4crBx3oIPBLNsjGs
C0fTXv+nvlmklvkcolvpvXLTjaxUHR3W9LXxQ2EHXAJfCB+6H2YF1k8CAwEAAQ==
-----END PUBLIC KEY-----
";

    /// A loopback key host counting the requests to each path.
    struct Host {
        base: String,
        state: Arc<HostState>,
    }

    struct HostState {
        key_pem: String,
        cert_pem: String,
        hits: Mutex<HashMap<String, usize>>,
        flaky_failures_left: AtomicUsize,
    }

    impl Host {
        async fn start(key_pem: String, cert_pem: String) -> Host {
            let state = Arc::new(HostState {
                key_pem,
                cert_pem,
                hits: Mutex::default(),
                flaky_failures_left: AtomicUsize::new(1),
            });
            let router = Router::new().fallback(serve).with_state(state.clone());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}/", listener.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(listener, router).await });
            Host { base, state }
        }

        fn hits(&self, path: &str) -> usize {
            let hits = self.state.hits.lock().unwrap();
            hits.get(path).copied().unwrap_or(0)
        }

        fn total_hits(&self) -> usize {
            self.state.hits.lock().unwrap().values().sum()
        }

        fn header(&self, path: &str) -> String {
            B64.encode(format!("{}{path}", self.base))
        }
    }

    async fn serve(State(state): State<Arc<HostState>>, uri: Uri) -> Response {
        let path = uri.path().trim_start_matches('/').to_owned();
        *state.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
        match path.as_str() {
            "keys/key.pem" => state.key_pem.clone().into_response(),
            "keys/cert.pem" => state.cert_pem.clone().into_response(),
            "keys/slow.pem" => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                state.key_pem.clone().into_response()
            }
            "keys/flaky.pem" => {
                let failing = state
                    .flaky_failures_left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if failing {
                    StatusCode::INTERNAL_SERVER_ERROR.into_response()
                } else {
                    state.key_pem.clone().into_response()
                }
            }
            "keys/huge.pem" => "A".repeat(MAX_BODY_BYTES + 1).into_response(),
            "keys/garbage.pem" => "hello".into_response(),
            "keys/redirect.pem" => {
                (StatusCode::FOUND, [(header::LOCATION, "/keys/key.pem")]).into_response()
            }
            "secret" => state.key_pem.clone().into_response(),
            _ => StatusCode::NOT_FOUND.into_response(),
        }
    }

    struct Fixture {
        host: Host,
        key: RsaPublicKey,
        cert_key: RsaPublicKey,
        config: NotificationsConfig,
    }

    /// A host serving a fresh key and certificate under `/keys/`, and a configuration that
    /// allows exactly that prefix for both kinds.
    async fn fixture() -> Fixture {
        let private = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap();
        let key = private.to_public_key();
        let (cert_private, cert_pem) = mns::tests::self_signed();
        let host = Host::start(key.to_public_key_pem(LineEnding::LF).unwrap(), cert_pem).await;
        let prefix = format!("{}keys/", host.base);
        let config = NotificationsConfig {
            oss_key_url_prefixes: vec![prefix.clone()],
            mns_cert_url_prefixes: vec![prefix],
            fetch_timeout_ms: 2000,
            ..NotificationsConfig::default()
        };
        Fixture {
            host,
            key,
            cert_key: cert_private.to_public_key(),
            config,
        }
    }

    #[tokio::test]
    async fn urls_outside_the_prefixes_are_refused_without_a_request() {
        let f = fixture().await;
        let default_store = KeyStore::new(&NotificationsConfig::default()).unwrap();
        let store = KeyStore::new(&f.config).unwrap();
        let outside = [
            // Served by the host, but not under an allowed prefix.
            (&default_store, f.host.header("keys/key.pem")),
            (&store, f.host.header("secret")),
            (&store, f.host.header("keys/../secret")),
            (&store, f.host.header("keys/%2e%2e/secret")),
            (&store, B64.encode(f.host.base.trim_end_matches('/'))),
            (
                &default_store,
                B64.encode("http://gosspublic.alicdn.com.evil.example/k.pem"),
            ),
            (
                &default_store,
                B64.encode("http://evil.example/?http://gosspublic.alicdn.com/"),
            ),
        ];
        for (store, header) in &outside {
            assert!(matches!(
                store.oss_callback_key(header).await,
                Err(KeyError::NotAllowed(_))
            ));
            assert!(matches!(
                store.mns_cert_key(header).await,
                Err(KeyError::NotAllowed(_))
            ));
        }
        assert_eq!(f.host.total_hits(), 0);
    }

    #[tokio::test]
    async fn pinned_keys_are_used_without_fetching() {
        let (_, cert_pem) = mns::tests::self_signed();
        let mut config = NotificationsConfig {
            // Nothing is allowed to be fetched, and nothing is reachable anyway.
            oss_key_url_prefixes: vec![],
            mns_cert_url_prefixes: vec![],
            fetch_timeout_ms: 1,
            ..NotificationsConfig::default()
        };
        config.oss_pinned_keys.insert(TV_URL.into(), TV_KEY.into());
        let cert_url = "https://mnstest.oss-cn-hangzhou.aliyuncs.com/x509_public_certificate.pem";
        config
            .mns_pinned_certs
            .insert(cert_url.into(), cert_pem.clone());
        let store = KeyStore::new(&config).unwrap();

        let key = store.oss_callback_key(TV_HEADER).await.unwrap();
        assert_eq!(*key, oss::parse_public_key_pem(TV_KEY).unwrap());
        let cert_key = store.mns_cert_key(&B64.encode(cert_url)).await.unwrap();
        assert_eq!(*cert_key, mns::public_key_from_cert_pem(&cert_pem).unwrap());
        // Pins are per kind and per exact URL.
        assert!(matches!(
            store.mns_cert_key(TV_HEADER).await,
            Err(KeyError::NotAllowed(_))
        ));
        assert!(matches!(
            store
                .oss_callback_key(&B64.encode(format!("{TV_URL}?")))
                .await,
            Err(KeyError::NotAllowed(_))
        ));
    }

    #[test]
    fn unparsable_pins_fail_at_startup() {
        let mut config = NotificationsConfig::default();
        config
            .oss_pinned_keys
            .insert(TV_URL.into(), "not a key".into());
        let err = KeyStore::new(&config).unwrap_err();
        assert!(format!("{err:#}").contains(TV_URL), "{err:#}");

        let mut config = NotificationsConfig::default();
        // A public key where a certificate is expected.
        config.mns_pinned_certs.insert(TV_URL.into(), TV_KEY.into());
        assert!(KeyStore::new(&config).is_err());
    }

    #[tokio::test]
    async fn allowed_keys_are_fetched_once_and_cached() {
        let f = fixture().await;
        let store = KeyStore::new(&f.config).unwrap();
        let header = f.host.header("keys/key.pem");
        let first =
            futures::future::join_all((0..8).map(|_| store.oss_callback_key(&header))).await;
        for key in first {
            assert_eq!(*key.unwrap(), f.key);
        }
        for _ in 0..3 {
            assert_eq!(*store.oss_callback_key(&header).await.unwrap(), f.key);
        }
        assert_eq!(f.host.hits("keys/key.pem"), 1);

        let cert_header = f.host.header("keys/cert.pem");
        for _ in 0..3 {
            assert_eq!(*store.mns_cert_key(&cert_header).await.unwrap(), f.cert_key);
        }
        assert_eq!(f.host.hits("keys/cert.pem"), 1);
    }

    #[tokio::test]
    async fn failed_fetches_are_not_cached() {
        let f = fixture().await;
        let store = KeyStore::new(&f.config).unwrap();
        let header = f.host.header("keys/flaky.pem");
        assert!(matches!(
            store.oss_callback_key(&header).await,
            Err(KeyError::Unavailable(_))
        ));
        assert_eq!(*store.oss_callback_key(&header).await.unwrap(), f.key);
        assert_eq!(*store.oss_callback_key(&header).await.unwrap(), f.key);
        assert_eq!(f.host.hits("keys/flaky.pem"), 2);
        assert!(store.oss.fetched.lock().unwrap().len() == 1);
    }

    #[tokio::test]
    async fn bad_answers_are_invalid_and_redirects_are_not_followed() {
        let f = fixture().await;
        let store = KeyStore::new(&f.config).unwrap();
        for path in [
            "keys/missing.pem",
            "keys/garbage.pem",
            "keys/huge.pem",
            "keys/redirect.pem",
            // A certificate is not a bare key, and the other way round.
            "keys/cert.pem",
        ] {
            let result = store.oss_callback_key(&f.host.header(path)).await;
            assert!(
                matches!(result, Err(KeyError::Invalid(_))),
                "{path}: {result:?}"
            );
        }
        assert!(matches!(
            store.mns_cert_key(&f.host.header("keys/key.pem")).await,
            Err(KeyError::Invalid(_))
        ));
        assert_eq!(f.host.hits("keys/key.pem"), 1);
        // Failures leave nothing behind in the cache.
        assert!(store.oss.fetched.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn malformed_headers_are_invalid() {
        let store = KeyStore::new(&NotificationsConfig::default()).unwrap();
        for header in ["not base64!", &B64.encode([0xff, 0xfe])] {
            assert!(matches!(
                store.oss_callback_key(header).await,
                Err(KeyError::Invalid(_))
            ));
            assert!(matches!(
                store.mns_cert_key(header).await,
                Err(KeyError::Invalid(_))
            ));
        }
    }

    #[tokio::test]
    async fn slow_hosts_time_out() {
        let mut f = fixture().await;
        f.config.fetch_timeout_ms = 200;
        let store = KeyStore::new(&f.config).unwrap();
        let started = std::time::Instant::now();
        let result = store
            .oss_callback_key(&f.host.header("keys/slow.pem"))
            .await;
        assert!(
            matches!(&result, Err(KeyError::Unavailable(m)) if m.contains("timed out")),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn long_urls_are_shortened_in_messages() {
        let long = format!("http://x/{}", "é".repeat(500));
        let short = shorten(&long);
        assert_eq!(short.chars().count(), MAX_URL_IN_MESSAGE + 3);
        assert_eq!(shorten("http://x/"), "http://x/");
    }
}
