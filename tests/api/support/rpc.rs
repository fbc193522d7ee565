//! What every Alibaba RPC endpoint checks before the operation itself, shared by the STS and
//! MPS fakes: parameters from the query and the form body, the common parameters, the
//! signature recomputed with the caller's secret, the timestamp window and nonce replay.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDateTime, Utc};
use serde_json::json;

/// HTTP status, error code, message.
pub type Rejection = (u16, &'static str, String);

/// The request's parameters, query and form body together; `true` when one came twice.
pub fn params(query: Option<String>, body: &[u8]) -> (HashMap<String, String>, bool) {
    let mut params = HashMap::new();
    let mut duplicate = false;
    for source in [query.unwrap_or_default().as_bytes(), body] {
        for (k, v) in url::form_urlencoded::parse(source) {
            duplicate |= params.insert(k.into_owned(), v.into_owned()).is_some();
        }
    }
    (params, duplicate)
}

pub fn get<'a>(p: &'a HashMap<String, String>, k: &str) -> Result<&'a str, Rejection> {
    p.get(k).map(String::as_str).ok_or((
        400,
        "MissingParameter",
        format!("{k} is mandatory for this action."),
    ))
}

/// The checks of RPC signature v1 for the key pair `key_id`/`secret`; `nonces` remembers the
/// nonces seen.
pub fn verify(
    method: &Method,
    p: &HashMap<String, String>,
    key_id: &str,
    secret: &str,
    nonces: &Mutex<HashSet<String>>,
) -> Result<(), Rejection> {
    for k in [
        "Action",
        "Version",
        "Format",
        "AccessKeyId",
        "SignatureMethod",
        "SignatureVersion",
        "SignatureNonce",
        "Timestamp",
        "Signature",
    ] {
        get(p, k)?;
    }
    if get(p, "AccessKeyId")? != key_id {
        return Err((
            404,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.".into(),
        ));
    }
    if get(p, "SignatureMethod")? != "HMAC-SHA1" || get(p, "SignatureVersion")? != "1.0" {
        return Err((
            400,
            "InvalidParameter",
            "unsupported signature method".into(),
        ));
    }
    let canonical =
        mediagate::signing::rpc_canonical_query(p.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    if mediagate::signing::rpc_signature(secret, method.as_str(), &canonical)
        != get(p, "Signature")?
    {
        // Like the real services, echo the string to sign (never the key).
        return Err((
            400,
            "SignatureDoesNotMatch",
            format!(
                "Specified signature is not matched with our calculation. server string to sign is:{}",
                mediagate::signing::rpc_string_to_sign(method.as_str(), &canonical)
            ),
        ));
    }
    let timestamp = NaiveDateTime::parse_from_str(get(p, "Timestamp")?, "%Y-%m-%dT%H:%M:%SZ")
        .map_err(|_| {
            (
                400,
                "InvalidTimeStamp.Format",
                "Specified time stamp is not valid.".to_string(),
            )
        })?
        .and_utc();
    if (Utc::now() - timestamp).num_seconds().abs() > 900 {
        return Err((
            400,
            "InvalidTimeStamp.Expired",
            "Specified time stamp or date value is expired.".into(),
        ));
    }
    if !nonces
        .lock()
        .unwrap()
        .insert(get(p, "SignatureNonce")?.to_owned())
    {
        return Err((
            400,
            "SignatureNonceUsed",
            "Specified signature nonce was used already.".into(),
        ));
    }
    Ok(())
}

/// The documented error body.
pub fn error(status: u16, code: &str, message: &str, host: &str) -> Response {
    let body = json!({
        "RequestId": uuid::Uuid::new_v4().to_string(),
        "HostId": host,
        "Code": code,
        "Message": message,
    });
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}
