//! A loopback MPS (Mts 2014-06-18) that checks `AddMedia` the way the real service does: RPC
//! v1 signature recomputed (mismatch -> `SignatureDoesNotMatch`), nonce replay, timestamp
//! window, and AddMedia's parameter limits; answers with the documented JSON. Tests script
//! failures and latency, and read back what was received and which media were created.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Value, json};

/// The same keys as the loopback STS: MPS keys default to the STS keys, so a test app
/// configured for the STS fake talks to this fake without further settings.
pub const ACCESS_KEY_ID: &str = super::sts_fake::ACCESS_KEY_ID;
pub const ACCESS_KEY_SECRET: &str = super::sts_fake::ACCESS_KEY_SECRET;
/// A media workflow id for tests; any non-empty id is accepted.
pub const MEDIA_WORKFLOW_ID: &str = "0b3b8d7a5e0c4f1e9a2d6c4b8e7f1a2b";

#[derive(Default)]
struct FakeState {
    calls: AtomicUsize,
    latency_ms: AtomicU64,
    nonces: Mutex<HashSet<String>>,
    scripted: Mutex<VecDeque<(u16, String)>>,
    requests: Mutex<Vec<HashMap<String, String>>>,
    media_ids: Mutex<Vec<String>>,
}

#[derive(Clone)]
pub struct MpsFake {
    pub url: String,
    state: Arc<FakeState>,
}

impl MpsFake {
    pub async fn start() -> MpsFake {
        let state = Arc::new(FakeState::default());
        let router = Router::new().fallback(handle).with_state(state.clone());
        let url = super::serve_loopback(router).await;
        MpsFake { url, state }
    }

    /// Every request that reached the fake, valid or not.
    pub fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    /// The MediaIds created, in order.
    pub fn media_ids(&self) -> Vec<String> {
        self.state.media_ids.lock().unwrap().clone()
    }

    pub fn set_latency(&self, latency: Duration) {
        self.state
            .latency_ms
            .store(latency.as_millis() as u64, Ordering::SeqCst);
    }

    /// The next call answers with this HTTP status and error code instead of its result
    /// (after the call is recorded, before it is checked).
    pub fn fail_next(&self, status: u16, code: &str) {
        self.state
            .scripted
            .lock()
            .unwrap()
            .push_back((status, code.to_owned()));
    }

    /// Parameters of every request received (query and form body), decoded.
    pub fn requests(&self) -> Vec<HashMap<String, String>> {
        self.state.requests.lock().unwrap().clone()
    }
}

fn error(status: u16, code: &str, message: &str) -> Response {
    rpc::error(status, code, message, "mts.aliyuncs.com")
}

async fn handle(
    State(state): State<Arc<FakeState>>,
    method: Method,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    state.calls.fetch_add(1, Ordering::SeqCst);
    let latency = state.latency_ms.load(Ordering::SeqCst);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let (params, duplicate) = rpc::params(query, &body);
    state.requests.lock().unwrap().push(params.clone());
    if duplicate {
        return error(400, "InvalidParameter", "duplicate parameter");
    }
    if let Some((status, code)) = state.scripted.lock().unwrap().pop_front() {
        return error(status, &code, "scripted failure");
    }
    match add_media(&state, &method, &params) {
        Ok(body) => ([("content-type", "application/json")], body.to_string()).into_response(),
        Err((status, code, message)) => error(status, code, &message),
    }
}

use super::rpc::{self, Rejection};

fn invalid(code: &'static str, message: &str) -> Rejection {
    (400, code, message.to_owned())
}

fn add_media(
    state: &FakeState,
    method: &Method,
    p: &HashMap<String, String>,
) -> Result<Value, Rejection> {
    rpc::verify(method, p, ACCESS_KEY_ID, ACCESS_KEY_SECRET, &state.nonces)?;
    let get = |k: &str| rpc::get(p, k);
    if get("Action")? != "AddMedia" {
        return Err((
            404,
            "InvalidAction.NotFound",
            "Specified api is not found.".into(),
        ));
    }
    if get("Version")? != "2014-06-18" || get("Format")? != "JSON" {
        return Err(invalid(
            "InvalidVersion",
            "Specified parameter Version is not valid.",
        ));
    }

    let file_url = get("FileURL")?;
    if file_url.len() > 3200 || !is_oss_http_url(file_url) {
        return Err(invalid(
            "InvalidParameter.FileURL",
            "The parameter FileURL is not a valid OSS URL.",
        ));
    }
    let workflow_id = get("MediaWorkflowId")?;
    if workflow_id.is_empty() {
        return Err(invalid(
            "InvalidParameter.MediaWorkflowId",
            "The parameter MediaWorkflowId is empty.",
        ));
    }
    for (name, max, code) in [
        ("Title", 128, "InvalidParameter.Title"),
        ("Description", 1024, "InvalidParameter.Description"),
        ("CoverURL", 3200, "InvalidParameter.CoverURL"),
        (
            "MediaWorkflowUserData",
            1024,
            "InvalidParameter.MediaWorkflowUserData",
        ),
    ] {
        if p.get(name).is_some_and(|v| v.len() > max) {
            return Err(invalid(
                code,
                &format!("The parameter {name} exceeds {max} bytes."),
            ));
        }
    }
    let tags: Vec<&str> = p
        .get("Tags")
        .map(|t| t.split(',').collect())
        .unwrap_or_default();
    if tags.len() > 16 || tags.iter().any(|t| t.is_empty() || t.len() > 32) {
        return Err(invalid(
            "InvalidParameter.Tags",
            "At most 16 tags of 1-32 bytes each.",
        ));
    }
    let cate_id = match p.get("CateId") {
        Some(c) => Some(c.parse::<i64>().ok().filter(|c| *c >= 0).ok_or_else(|| {
            invalid(
                "InvalidParameter.CateId",
                "The parameter CateId must be an integer >= 0.",
            )
        })?),
        None => None,
    };

    let media_id = uuid::Uuid::new_v4().simple().to_string();
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    state.media_ids.lock().unwrap().push(media_id.clone());
    let now = Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    Ok(json!({
        "RequestId": uuid::Uuid::new_v4().to_string().to_uppercase(),
        "Media": {
            "MediaId": media_id,
            "FileURL": file_url,
            "Title": p.get("Title").cloned().unwrap_or_default(),
            "Description": p.get("Description").cloned().unwrap_or_default(),
            "CoverURL": p.get("CoverURL").cloned().unwrap_or_default(),
            "CateId": cate_id,
            "Tags": {"Tag": tags},
            "State": "Initiated",
            "PublishState": "Initiated",
            "CreationTime": now,
            "MediaWorkflowId": workflow_id,
            "RunIdList": {"RunId": [run_id]},
        },
    }))
}

/// `http://<bucket>.oss-<region>.aliyuncs.com/<key>`, the key percent-encoded the Alibaba way
/// (only `A-Z a-z 0-9 - _ . ~`, `/` and upper-case `%XY` escapes).
fn is_oss_http_url(file_url: &str) -> bool {
    let Some(rest) = file_url.strip_prefix("http://") else {
        return false;
    };
    let Some((host, path)) = rest.split_once('/') else {
        return false;
    };
    let host_ok = host
        .strip_suffix(".aliyuncs.com")
        .and_then(|h| h.split_once(".oss-"))
        .is_some_and(|(bucket, region)| {
            (3..=63).contains(&bucket.len())
                && bucket
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !region.is_empty()
                && region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    if !host_ok || path.is_empty() {
        return false;
    }
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex_ok = bytes.get(i + 1..i + 3).is_some_and(|h| {
                h.iter()
                    .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c))
            });
            if !hex_ok {
                return false;
            }
            i += 3;
        } else if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}
