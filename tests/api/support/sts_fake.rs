//! A loopback Alibaba Cloud STS that checks `AssumeRole` the way the real service does:
//! RPC v1 signature recomputed (mismatch -> `SignatureDoesNotMatch`), nonce replay, timestamp
//! window, and the parameter constraints of AssumeRole; answers with the documented JSON.
//! Tests script failures and latency, and read back what was received.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

pub const ACCESS_KEY_ID: &str = "LTAI-test-id";
pub const ACCESS_KEY_SECRET: &str = "test-access-key-secret";
pub const ROLE_ARN: &str = "acs:ram::1234567890123456:role/uploader";
/// The role's maximum session duration.
pub const MAX_DURATION: u32 = 3600;

#[derive(Default)]
struct FakeState {
    calls: AtomicUsize,
    issued: AtomicU64,
    latency_ms: AtomicU64,
    nonces: Mutex<HashSet<String>>,
    scripted: Mutex<VecDeque<(u16, String)>>,
    requests: Mutex<Vec<HashMap<String, String>>>,
    /// Error codes answered, in order.
    rejections: Mutex<Vec<String>>,
    /// Lifetime of issued credentials, when it should differ from DurationSeconds.
    lifetime_override: Mutex<Option<i64>>,
    /// AccessKeyId -> AccessKeySecret of every credential issued, so tests can check what
    /// was signed with them.
    secrets: Mutex<HashMap<String, String>>,
}

#[derive(Clone)]
pub struct StsFake {
    pub url: String,
    state: Arc<FakeState>,
}

impl StsFake {
    pub async fn start() -> StsFake {
        let state = Arc::new(FakeState::default());
        let router = Router::new().fallback(handle).with_state(state.clone());
        let url = super::serve_loopback(router).await;
        StsFake { url, state }
    }

    /// Every request that reached the fake, valid or not.
    pub fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    /// Credentials successfully issued.
    pub fn issued(&self) -> u64 {
        self.state.issued.load(Ordering::SeqCst)
    }

    pub fn set_latency(&self, latency: Duration) {
        self.state
            .latency_ms
            .store(latency.as_millis() as u64, Ordering::SeqCst);
    }

    /// The next call answers with this HTTP status and STS error code instead of its result.
    pub fn fail_next(&self, status: u16, code: &str) {
        self.state
            .scripted
            .lock()
            .unwrap()
            .push_back((status, code.to_owned()));
    }

    pub fn set_credential_lifetime(&self, seconds: i64) {
        *self.state.lifetime_override.lock().unwrap() = Some(seconds);
    }

    /// The AccessKeySecret issued with `access_key_id`.
    pub fn secret_of(&self, access_key_id: &str) -> Option<String> {
        self.state
            .secrets
            .lock()
            .unwrap()
            .get(access_key_id)
            .cloned()
    }

    /// The STS error codes the fake answered with, in order.
    pub fn rejections(&self) -> Vec<String> {
        self.state.rejections.lock().unwrap().clone()
    }

    /// Parameters of every request received, decoded.
    pub fn requests(&self) -> Vec<HashMap<String, String>> {
        self.state.requests.lock().unwrap().clone()
    }
}

fn error(status: u16, code: &str, message: &str) -> Response {
    rpc::error(status, code, message, "sts.aliyuncs.com")
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
        state
            .rejections
            .lock()
            .unwrap()
            .push("InvalidParameter".into());
        return error(400, "InvalidParameter", "duplicate parameter");
    }
    let scripted = state.scripted.lock().unwrap().pop_front();
    let result = match scripted {
        Some((status, code)) => Err((status, code, "scripted failure".to_string())),
        None => assume_role(&state, &method, &params).map_err(|(s, c, m)| (s, c.to_string(), m)),
    };
    match result {
        Ok(body) => {
            state.issued.fetch_add(1, Ordering::SeqCst);
            ([("content-type", "application/json")], body.to_string()).into_response()
        }
        Err((status, code, message)) => {
            state.rejections.lock().unwrap().push(code.clone());
            error(status, &code, &message)
        }
    }
}

use super::rpc::{self, Rejection};

fn assume_role(
    state: &FakeState,
    method: &Method,
    p: &HashMap<String, String>,
) -> Result<Value, Rejection> {
    rpc::verify(method, p, ACCESS_KEY_ID, ACCESS_KEY_SECRET, &state.nonces)?;
    let get = |k: &str| rpc::get(p, k);
    if get("Action")? != "AssumeRole" {
        return Err((
            400,
            "InvalidAction.NotFound",
            "Specified api is not found.".into(),
        ));
    }
    if get("Version")? != "2015-04-01" || get("Format")? != "JSON" {
        return Err((
            400,
            "InvalidVersion",
            "Specified parameter Version is not valid.".into(),
        ));
    }
    let role_arn = get("RoleArn")?;
    let arn_ok = role_arn
        .strip_prefix("acs:ram::")
        .and_then(|r| r.split_once(":role/"))
        .is_some_and(|(acct, role)| {
            !acct.is_empty() && acct.bytes().all(|b| b.is_ascii_digit()) && !role.is_empty()
        });
    if !arn_ok {
        return Err((
            400,
            "InvalidParameter.RoleArn",
            "The parameter RoleArn is wrongly formed.".into(),
        ));
    }
    if role_arn != ROLE_ARN {
        return Err((404, "EntityNotExist.Role", "The role not exists.".into()));
    }
    let session = get("RoleSessionName")?;
    if !(2..=64).contains(&session.len())
        || !session
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".@_-".contains(&b))
    {
        return Err((
            400,
            "InvalidParameter.RoleSessionName",
            "The parameter RoleSessionName is wrongly formed.".into(),
        ));
    }
    if let Some(policy) = p.get("Policy") {
        if policy.chars().count() > 2048 {
            return Err((
                400,
                "InvalidParameter.PolicyLength",
                "The policy is too long.".into(),
            ));
        }
        let parsed: Value = serde_json::from_str(policy).map_err(|_| {
            (
                400,
                "InvalidParameter.PolicyGrammar",
                "The policy is not valid JSON.".into(),
            )
        })?;
        let statements_ok = parsed["Version"] == "1"
            && parsed["Statement"].as_array().is_some_and(|s| {
                !s.is_empty()
                    && s.iter().all(|st| {
                        st["Effect"].is_string()
                            && st["Action"].is_array()
                            && st["Resource"].is_array()
                    })
            });
        if !statements_ok {
            return Err((
                400,
                "InvalidParameter.PolicyGrammar",
                "The policy grammar is not valid.".into(),
            ));
        }
    }
    let duration: u32 = match p.get("DurationSeconds") {
        Some(d) => d.parse().map_err(|_| {
            (
                400,
                "InvalidParameter.DurationSeconds",
                "not a number".into(),
            )
        })?,
        None => 3600,
    };
    if !(900..=MAX_DURATION).contains(&duration) {
        return Err((
            400,
            "InvalidParameter.DurationSeconds",
            "The Min/Max value of DurationSeconds is 15min/1hr.".into(),
        ));
    }
    let n = state.issued.load(Ordering::SeqCst) + 1;
    let lifetime = state
        .lifetime_override
        .lock()
        .unwrap()
        .unwrap_or(i64::from(duration));
    let expiration: DateTime<Utc> = Utc::now() + chrono::Duration::seconds(lifetime);
    let access_key_id = format!("STS.NUk{n:020}");
    let secret = format!("fake-secret-{}", uuid::Uuid::new_v4().simple());
    state
        .secrets
        .lock()
        .unwrap()
        .insert(access_key_id.clone(), secret.clone());
    Ok(json!({
        "RequestId": uuid::Uuid::new_v4().to_string(),
        "AssumedRoleUser": {
            "Arn": format!("{ROLE_ARN}/{session}"),
            "AssumedRoleId": format!("3{n:017}:{session}"),
        },
        "Credentials": {
            "AccessKeyId": access_key_id,
            "AccessKeySecret": secret,
            "SecurityToken": format!("CAIS{}", uuid::Uuid::new_v4().simple()),
            "Expiration": expiration.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        },
    }))
}
