//! A loopback webhook receiver that verifies Standard Webhooks signatures the way the
//! reference libraries do (HMAC-SHA256 over `{id}.{timestamp}.{body}`, key from a `whsec_`
//! secret, any of the space-separated `v1,` signatures, timestamp within 5 minutes), written
//! independently of mediagate's signer. Bad signatures get 401 and are counted apart; tests
//! script 5xx answers and latency, and read back the verified deliveries.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// Accepted distance between `webhook-timestamp` and now, either way.
const TOLERANCE_SECONDS: i64 = 5 * 60;

struct ReceiverState {
    key: Vec<u8>,
    calls: AtomicUsize,
    /// Requests being answered now, and the most there ever were at once.
    open: AtomicUsize,
    most_open: AtomicUsize,
    rejected: AtomicUsize,
    latency_ms: AtomicU64,
    /// Statuses to answer the next valid deliveries with, instead of accepting them.
    scripted: Mutex<VecDeque<u16>>,
    deliveries: Mutex<Vec<(String, Value)>>,
    signatures: Mutex<Vec<String>>,
}

#[derive(Clone)]
pub struct WebhookReceiver {
    /// Where to deliver: `http://127.0.0.1:PORT/hooks`.
    pub url: String,
    state: Arc<ReceiverState>,
}

impl WebhookReceiver {
    /// Starts a receiver for `secret` (`whsec_<base64>` or a raw secret).
    pub async fn start(secret: &str) -> WebhookReceiver {
        let key = match secret.strip_prefix("whsec_") {
            Some(b64) => STANDARD.decode(b64).expect("whsec_ secret is base64"),
            None => secret.as_bytes().to_vec(),
        };
        let state = Arc::new(ReceiverState {
            key,
            calls: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            most_open: AtomicUsize::new(0),
            rejected: AtomicUsize::new(0),
            latency_ms: AtomicU64::new(0),
            scripted: Mutex::new(VecDeque::new()),
            deliveries: Mutex::new(Vec::new()),
            signatures: Mutex::new(Vec::new()),
        });
        let router = Router::new()
            .route("/hooks", post(handle))
            .with_state(state.clone());
        let url = format!("{}/hooks", super::serve_loopback(router).await);
        WebhookReceiver { url, state }
    }

    /// The next `n` deliveries with a valid signature answer 503 (and are not recorded).
    pub fn fail_next(&self, n: usize) {
        self.fail_next_with(503, n);
    }

    /// The next `n` deliveries with a valid signature answer `status` (e.g. 410, 301).
    pub fn fail_next_with(&self, status: u16, n: usize) {
        self.state
            .scripted
            .lock()
            .unwrap()
            .extend(std::iter::repeat_n(status, n));
    }

    pub fn set_latency(&self, latency: Duration) {
        self.state
            .latency_ms
            .store(latency.as_millis() as u64, Ordering::SeqCst);
    }

    /// Verified and accepted deliveries: (`webhook-id` header, parsed JSON body), in order.
    pub fn deliveries(&self) -> Vec<(String, Value)> {
        self.state.deliveries.lock().unwrap().clone()
    }

    /// The `webhook-signature` headers of accepted deliveries.
    pub fn signatures(&self) -> Vec<String> {
        self.state.signatures.lock().unwrap().clone()
    }

    /// Number of accepted deliveries.
    pub fn count(&self) -> usize {
        self.state.deliveries.lock().unwrap().len()
    }

    /// Requests answered 401 (bad or missing signature, timestamp out of tolerance).
    pub fn rejected(&self) -> usize {
        self.state.rejected.load(Ordering::SeqCst)
    }

    /// Every request that reached the receiver.
    pub fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    /// The most requests the receiver was answering at the same time.
    pub fn most_at_once(&self) -> usize {
        self.state.most_open.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` deliveries were accepted; false if `timeout` passes first.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.count() >= n {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn handle(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    state.calls.fetch_add(1, Ordering::SeqCst);
    let open = state.open.fetch_add(1, Ordering::SeqCst) + 1;
    state.most_open.fetch_max(open, Ordering::SeqCst);
    let answer = answer(&state, &headers, &body).await;
    state.open.fetch_sub(1, Ordering::SeqCst);
    answer
}

async fn answer(
    state: &ReceiverState,
    headers: &HeaderMap,
    body: &Bytes,
) -> (StatusCode, &'static str) {
    let latency = state.latency_ms.load(Ordering::SeqCst);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let Some(id) = verify(&state.key, headers, body) else {
        state.rejected.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::UNAUTHORIZED, "invalid signature");
    };
    let json_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let Ok(parsed) = serde_json::from_slice::<Value>(body) else {
        return (StatusCode::BAD_REQUEST, "body is not JSON");
    };
    if !json_type {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected application/json",
        );
    }
    if let Some(status) = state.scripted.lock().unwrap().pop_front() {
        return (StatusCode::from_u16(status).unwrap(), "scripted failure");
    }
    if let Some(signature) = headers
        .get("webhook-signature")
        .and_then(|v| v.to_str().ok())
    {
        state.signatures.lock().unwrap().push(signature.to_owned());
    }
    state.deliveries.lock().unwrap().push((id, parsed));
    (StatusCode::NO_CONTENT, "")
}

/// The `webhook-id` when the signature and timestamp verify.
fn verify(key: &[u8], headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let id = header("webhook-id")?;
    let timestamp = header("webhook-timestamp")?;
    let signatures = header("webhook-signature")?;
    let seconds: i64 = timestamp.parse().ok()?;
    if (chrono::Utc::now().timestamp() - seconds).abs() > TOLERANCE_SECONDS {
        return None;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    // Any of the space-separated signatures may match (secret rotation).
    let matches = signatures.split(' ').any(|entry| {
        entry
            .strip_prefix("v1,")
            .and_then(|b64| STANDARD.decode(b64).ok())
            .is_some_and(|sig| mediagate::signing::constant_time_eq(&sig, &expected))
    });
    matches.then(|| id.to_owned())
}
