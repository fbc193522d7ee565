//! Public keys for notification signatures: the OSS callback key named by
//! `x-oss-pub-key-url` and the MNS signing certificate named by `x-mns-signing-cert-url`.
//!
//! Both URLs come from the unauthenticated request, so they are checked against configured
//! prefixes before any network I/O (otherwise anyone could make us fetch anything, or sign
//! with their own key), and only one spelling of each is accepted: no query, fragment,
//! userinfo or dot segments, compared and cached in normalised form. Pinned keys are used
//! without fetching. Fetched keys stay in a small least-recently-used cache; answers that
//! were not a key are remembered for a few minutes; transport failures are not remembered;
//! and fetches are rate-limited, so no stream of requests becomes a stream of fetches.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use governor::{DefaultDirectRateLimiter, Quota};
use hashlink::LruCache;
use tokio::sync::OnceCell;

use super::NotificationsConfig;
use super::public_key::{PublicKey, SignatureError};

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
        let client = crate::upstream::client(Duration::from_millis(config.fetch_timeout_ms))
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
    ) -> Result<Arc<PublicKey>, KeyError> {
        self.oss.key(&self.client, pub_key_url_header_b64).await
    }

    /// The key of the MNS signing certificate named by an `x-mns-signing-cert-url` header
    /// (base64 of a URL).
    pub async fn mns_cert_key(
        &self,
        cert_url_header_b64: &str,
    ) -> Result<Arc<PublicKey>, KeyError> {
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

    fn parse(self, pem: &str) -> Result<PublicKey, SignatureError> {
        match self {
            Kind::OssKey => PublicKey::from_pem(pem),
            Kind::MnsCert => PublicKey::from_cert_pem(pem),
        }
    }

    fn what(self) -> &'static str {
        match self {
            Kind::OssKey => "an RSA public key",
            Kind::MnsCert => "an X.509 certificate with an RSA key",
        }
    }
}

type Cell = Arc<OnceCell<Arc<PublicKey>>>;

/// Fetched keys kept per kind, least recently used out: a real host publishes one or two.
const CACHED_KEYS: usize = 8;
/// URLs whose answer was not a key, remembered (and not fetched again) for a while.
const REMEMBERED_REFUSALS: usize = 64;
const REFUSAL_MEMORY: Duration = Duration::from_secs(300);
/// Outbound fetches per kind and minute, whatever the requests name: a flood of distinct
/// (allowed) URLs costs at most this many requests to the key host.
const FETCHES_PER_MINUTE: u32 = 30;

/// One kind of key: where it may come from, what is pinned, what was fetched.
struct Source {
    kind: Kind,
    prefixes: Vec<String>,
    /// The prefixes as the URL parser writes them; URLs are compared in that form.
    normalized_prefixes: Vec<String>,
    pinned: HashMap<String, Arc<PublicKey>>,
    cache: Mutex<Cache>,
    fetches: DefaultDirectRateLimiter,
}

struct Cache {
    /// One cell per normalised URL so concurrent first requests share one fetch.
    keys: LruCache<String, Cell>,
    /// URLs that answered with something other than a key, and when.
    refused: LruCache<String, (Instant, String)>,
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
            cache: Mutex::new(Cache {
                keys: LruCache::new(CACHED_KEYS),
                refused: LruCache::new(REMEMBERED_REFUSALS),
            }),
            fetches: DefaultDirectRateLimiter::direct(Quota::per_minute(
                NonZeroU32::new(FETCHES_PER_MINUTE).expect("not zero"),
            )),
        })
    }

    async fn key(
        &self,
        client: &reqwest::Client,
        header_b64: &str,
    ) -> Result<Arc<PublicKey>, KeyError> {
        let header = self.kind.header();
        let raw = B64
            .decode(header_b64.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| KeyError::Invalid(format!("{header} is not base64 of a URL")))?;

        // Pinned keys are trusted by configuration, so they need no prefix and no fetch.
        if let Some(key) = self.pinned.get(&raw) {
            return Ok(key.clone());
        }
        let url = self.allowed(&raw)?;
        if let Some(key) = self.pinned.get(url.as_str()) {
            return Ok(key.clone());
        }
        let name = url.as_str().to_owned();

        let cell = {
            let mut cache = self.cache.lock().expect("key cache lock");
            if let Some((at, why)) = cache.refused.get(&name) {
                if at.elapsed() < REFUSAL_MEMORY {
                    return Err(KeyError::Invalid(why.clone()));
                }
                cache.refused.remove(&name);
            }
            match cache.keys.get(&name) {
                Some(cell) => cell.clone(),
                None => {
                    let cell = Cell::default();
                    cache.keys.insert(name.clone(), cell.clone());
                    cell
                }
            }
        };
        let result = cell
            .get_or_try_init(|| async {
                if self.fetches.check().is_err() {
                    return Err(KeyError::Unavailable(format!(
                        "too many {header} fetches; retry later"
                    )));
                }
                fetch(client, self.kind, url).await.map(Arc::new)
            })
            .await
            .cloned();
        if let Err(e) = &result {
            // Forget the failed cell (so failures do not crowd out keys), unless another
            // request has replaced or filled it meanwhile; remember answers that were not a
            // key, so naming them again costs no fetch.
            let mut cache = self.cache.lock().expect("key cache lock");
            if let Some(current) = cache.keys.peek(&name)
                && Arc::ptr_eq(current, &cell)
                && !current.initialized()
            {
                cache.keys.remove(&name);
            }
            if let KeyError::Invalid(why) = e {
                cache.refused.insert(name, (Instant::now(), why.clone()));
            }
        }
        result
    }

    /// The URL to fetch for `raw`, normalised: an http(s) URL without userinfo, query,
    /// fragment or dot segments, under an allowed prefix. An `http://` URL whose `https://`
    /// twin is also allowed is fetched over https. Nothing else is ever fetched.
    fn allowed(&self, raw: &str) -> Result<url::Url, KeyError> {
        let header = self.kind.header();
        let refuse = |why: &str| KeyError::NotAllowed(format!("{header} {} {why}", shown(raw)));
        if !raw.bytes().all(|b| b.is_ascii_graphic()) || raw.contains('\\') {
            return Err(refuse("contains spaces, control characters or backslashes"));
        }
        if raw.contains('?') || raw.contains('#') {
            return Err(refuse("has a query or fragment"));
        }
        if !self.prefixes.iter().any(|p| raw.starts_with(p.as_str())) {
            return Err(refuse("is not an allowed location"));
        }
        let mut url = url::Url::parse(raw).map_err(|_| refuse("is not a URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(refuse("is not an http(s) URL"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refuse("carries user information"));
        }
        let dot_segment = raw
            .splitn(4, '/')
            .nth(3)
            .unwrap_or_default()
            .split('/')
            .map(|s| s.to_ascii_lowercase().replace("%2e", "."))
            .any(|s| s == "." || s == "..");
        if dot_segment {
            return Err(refuse("has dot segments"));
        }
        let under = |u: &url::Url| {
            self.normalized_prefixes
                .iter()
                .any(|p| u.as_str().starts_with(p.as_str()))
        };
        if !under(&url) {
            return Err(refuse("is not an allowed location"));
        }
        if url.scheme() == "http" {
            let mut secure = url.clone();
            if secure.set_scheme("https").is_ok() && under(&secure) {
                url = secure;
            }
        }
        Ok(url)
    }
}

/// Fetches and parses one key. Transport failures, timeouts, 5xx and 429 are `Unavailable`;
/// other statuses (redirects included, as they are not followed), oversized or unparsable
/// bodies are `Invalid`.
#[tracing::instrument(skip_all, fields(url = parsed.as_str(), kind = ?kind))]
async fn fetch(
    client: &reqwest::Client,
    kind: Kind,
    parsed: url::Url,
) -> Result<PublicKey, KeyError> {
    let url = shorten(parsed.as_str());
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

/// A URL from a request as messages show it: escaped and cut short.
fn shown(url: &str) -> String {
    format!("{:?}", shorten(url))
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

    use bytes::Bytes;
    use http::{HeaderValue, Request, Response, StatusCode, header};
    use rsa::RsaPrivateKey;

    use crate::upstream::loopback::{self, respond};
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
            let served = state.clone();
            let base = loopback::serve(move |req| serve(served.clone(), req)).await + "/";
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

    async fn serve(state: Arc<HostState>, req: Request<Bytes>) -> Response<Bytes> {
        let path = req.uri().path().trim_start_matches('/').to_owned();
        *state.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
        let ok = |body: &str| respond(StatusCode::OK, body.to_owned());
        match path.as_str() {
            "keys/key.pem" => ok(&state.key_pem),
            "keys/cert.pem" => ok(&state.cert_pem),
            "keys/slow.pem" => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                ok(&state.key_pem)
            }
            "keys/flaky.pem" => {
                let failing = state
                    .flaky_failures_left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if failing {
                    respond(StatusCode::INTERNAL_SERVER_ERROR, "")
                } else {
                    ok(&state.key_pem)
                }
            }
            "keys/huge.pem" => ok(&"A".repeat(MAX_BODY_BYTES + 1)),
            "keys/garbage.pem" => ok("hello"),
            "keys/redirect.pem" => {
                let mut moved = respond(StatusCode::FOUND, "");
                moved
                    .headers_mut()
                    .insert(header::LOCATION, HeaderValue::from_static("/keys/key.pem"));
                moved
            }
            "secret" => ok(&state.key_pem),
            _ => respond(StatusCode::NOT_FOUND, ""),
        }
    }

    struct Fixture {
        host: Host,
        key: PublicKey,
        cert_key: PublicKey,
        config: NotificationsConfig,
    }

    /// A host serving a fresh key and certificate under `/keys/`, and a configuration that
    /// allows exactly that prefix for both kinds.
    async fn fixture() -> Fixture {
        use crate::notifications::mns::tests::{public_key_of, self_signed};
        let private = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap();
        let (cert_private, cert_pem) = self_signed();
        let key_pem = private.to_public_key().to_public_key_pem(LineEnding::LF);
        let host = Host::start(key_pem.unwrap(), cert_pem).await;
        let prefix = format!("{}keys/", host.base);
        let config = NotificationsConfig {
            oss_key_url_prefixes: vec![prefix.clone()],
            mns_cert_url_prefixes: vec![prefix],
            fetch_timeout_ms: 2000,
            ..NotificationsConfig::default()
        };
        Fixture {
            host,
            key: public_key_of(&private),
            cert_key: public_key_of(&cert_private),
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
        let (_, cert_pem) = crate::notifications::mns::tests::self_signed();
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
        assert_eq!(*key, PublicKey::from_pem(TV_KEY).unwrap());
        let cert_key = store.mns_cert_key(&B64.encode(cert_url)).await.unwrap();
        assert_eq!(*cert_key, PublicKey::from_cert_pem(&cert_pem).unwrap());
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
        assert_eq!(store.oss.cache.lock().unwrap().keys.len(), 1);
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
        // Failures leave no key cell behind; answers that were not a key are remembered, so
        // naming them again fetches nothing.
        assert_eq!(store.oss.cache.lock().unwrap().keys.len(), 0);
        let before = f.host.total_hits();
        for _ in 0..3 {
            let result = store
                .oss_callback_key(&f.host.header("keys/garbage.pem"))
                .await;
            assert!(matches!(result, Err(KeyError::Invalid(_))), "{result:?}");
        }
        assert_eq!(f.host.total_hits(), before);
    }

    #[tokio::test]
    async fn one_spelling_per_url_and_a_bounded_cache() {
        let f = fixture().await;
        let store = KeyStore::new(&f.config).unwrap();
        let good = f.host.header("keys/key.pem");
        assert_eq!(*store.oss_callback_key(&good).await.unwrap(), f.key);
        let base = &f.host.base;
        let variants = [
            format!("{base}keys/key.pem#x"),
            format!("{base}keys/key.pem?"),
            format!("{base}keys/key.pem?v=1"),
            format!("{base}keys/./key.pem"),
            format!("{base}keys/x/../key.pem"),
            format!("{base}keys/x/%2E%2e/key.pem"),
            format!("{base}keys/key.pem\r\nERROR forged"),
            format!("{base}keys/ key.pem"),
            format!("{base}keys\\key.pem"),
            base.replace("http://", "http://user:pw@") + "keys/key.pem",
        ];
        for v in &variants {
            let result = store.oss_callback_key(&B64.encode(v)).await;
            assert!(
                matches!(result, Err(KeyError::NotAllowed(_))),
                "{v}: {result:?}"
            );
        }
        assert_eq!(f.host.hits("keys/key.pem"), 1, "variants fetched nothing");
        // A flood of distinct allowed names: at most CACHED_KEYS cells stay, and the fetch
        // budget caps the requests the host sees.
        for i in 0..(FETCHES_PER_MINUTE as usize + 10) {
            let _ = store
                .oss_callback_key(&f.host.header(&format!("keys/k{i}.pem")))
                .await;
        }
        assert!(store.oss.cache.lock().unwrap().keys.len() <= CACHED_KEYS);
        assert!(f.host.total_hits() <= FETCHES_PER_MINUTE as usize);
        let refused = store
            .oss_callback_key(&f.host.header("keys/another.pem"))
            .await;
        assert!(
            matches!(&refused, Err(KeyError::Unavailable(m)) if m.contains("too many")),
            "{refused:?}"
        );
        // The key fetched first is still served from the cache.
        assert_eq!(*store.oss_callback_key(&good).await.unwrap(), f.key);
    }

    #[tokio::test]
    async fn http_urls_with_an_allowed_https_twin_are_fetched_over_https() {
        let store = KeyStore::new(&NotificationsConfig {
            oss_key_url_prefixes: vec![
                "http://keys.example/".into(),
                "https://keys.example/".into(),
            ],
            ..NotificationsConfig::default()
        })
        .unwrap();
        let url = store.oss.allowed("http://keys.example/k.pem").unwrap();
        assert_eq!(url.as_str(), "https://keys.example/k.pem");
        let only_http = KeyStore::new(&NotificationsConfig {
            oss_key_url_prefixes: vec!["http://keys.example/".into()],
            ..NotificationsConfig::default()
        })
        .unwrap();
        let url = only_http.oss.allowed("http://keys.example/k.pem").unwrap();
        assert_eq!(url.as_str(), "http://keys.example/k.pem");
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
