//! `/v1/notifications/*`: what object stores send after an upload. Each is authenticated by
//! its own signature or token (never a user JWT), recorded durably, then answered; sinks are
//! never called inline (OSS gives a callback 5 s).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::Value;
use tracing::{info, warn};

use super::error::ApiError;
use super::extract::{RawBody, bearer};
use super::openapi::{CallbackAck, ErrorBody};
use crate::app::App;
use crate::callbacks::{mns, oss};
use crate::media::MediaAttributesInput;
use crate::processing::{ObjectEvent, accept};
use crate::signing::constant_time_eq;
use crate::store::Recorded;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A header the signature check needs: its absence is a signature failure.
fn signed_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, ApiError> {
    header(headers, name)
        .ok_or_else(|| ApiError::invalid_signature(format!("missing {name} header")))
}

/// Records one event and wakes the worker when it queued triggers.
async fn record(app: &App, event: ObjectEvent) -> Result<Recorded, ApiError> {
    for (field, value) in [
        ("bucket", &event.bucket),
        ("key", &event.key),
        ("etag", &event.etag),
    ] {
        if value.chars().any(char::is_control) || value.len() > 2048 {
            return Err(ApiError::bad_request(format!(
                "{field} is not a valid object {field}"
            )));
        }
    }
    if event.bucket.is_empty() || event.key.is_empty() {
        return Err(ApiError::bad_request("bucket and key are required"));
    }
    let (bucket, key, source) = (event.bucket.clone(), event.key.clone(), event.source);
    let recorded = accept(&app.store, &app.storage(), event).await?;
    let outcome = match &recorded {
        Recorded::Accepted { triggers: 0, .. } => "skipped",
        Recorded::Accepted { .. } => "accepted",
        Recorded::Duplicate { .. } => "duplicate",
        Recorded::Repeat { .. } => "repeat",
    };
    metrics::counter!("mediagate_notifications_total", "source" => source, "outcome" => outcome)
        .increment(1);
    // Bucket and key come from the sender: logged escaped (`?`), never raw.
    match &recorded {
        Recorded::Accepted {
            triggers,
            upload_id,
        } => {
            info!(
                source,
                ?bucket,
                ?key,
                triggers,
                upload_id = upload_id.as_deref().unwrap_or(""),
                "object event recorded"
            );
            if *triggers > 0 {
                app.wake_worker.notify_one();
            }
        }
        Recorded::Duplicate { .. } => {
            info!(source, ?bucket, ?key, "duplicate object event ignored")
        }
        Recorded::Repeat { upload_id } => {
            warn!(
                source,
                ?bucket,
                ?key,
                upload_id = upload_id.as_deref().unwrap_or(""),
                "another version of a completed object announced; recorded, nothing triggered"
            )
        }
    }
    Ok(recorded)
}

/// Counts notifications refused as a whole (bad signature or token, malformed body), by
/// source: the last segment of the route.
pub async fn count_rejections(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let source: &'static str = match req.uri().path().rsplit('/').next() {
        Some("oss-callback") => "oss-callback",
        Some("oss-events") => "oss-events",
        Some("s3-events") => "s3-events",
        _ => "other",
    };
    let response = next.run(req).await;
    if response.status().is_client_error() || response.status().is_server_error() {
        metrics::counter!("mediagate_notifications_total", "source" => source, "outcome" => "rejected")
            .increment(1);
    }
    response
}

/// `POST /v1/notifications/oss-callback`: OSS's upload callback, RSA-verified.
#[utoipa::path(post, path = "/v1/notifications/oss-callback", tag = "notifications",
    description = "OSS upload callback; authenticated by its RSA signature (`authorization`, `x-oss-pub-key-url`).",
    request_body(content = String, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "recorded (or a duplicate)", body = CallbackAck),
        (status = 400, description = "invalid_signature / bad_request", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 503, description = "key_unavailable (Retry-After)", body = ErrorBody)))]
pub async fn oss_callback(
    State(app): State<Arc<App>>,
    uri: Uri,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let authorization = signed_header(&headers, "authorization")?;
    let key_url = signed_header(&headers, "x-oss-pub-key-url")?;
    let key = app.keys.oss_callback_key(key_url).await?;
    let signed = oss::callback_string_to_sign(uri.path(), uri.query(), &body);
    oss::verify_callback(&key, authorization, &signed)
        .map_err(|e| ApiError::invalid_signature(e.to_string()))?;

    let is_json = header(&headers, "content-type").is_some_and(|c| c.contains("json"));
    let fields = callback_fields(&body, is_json)?;
    let text = |k: &str| fields.get(k).and_then(field_text);
    let event = ObjectEvent {
        source: "oss-callback",
        bucket: text("bucket")
            .ok_or_else(|| ApiError::bad_request("callback body has no bucket"))?,
        key: text("object").ok_or_else(|| ApiError::bad_request("callback body has no object"))?,
        etag: text("etag")
            .unwrap_or_default()
            .trim_matches('"')
            .to_owned(),
        size: fields.get("size").and_then(field_number),
        content_type: text("mimeType").filter(|m| !m.is_empty()),
        symlink: false,
        upload_hint: text("upload_id").or_else(|| text("x:upload_id")),
        media_overrides: overrides(|k| text(&format!("x:{k}")).or_else(|| text(k))),
    };
    let recorded = record(&app, event).await?;
    let (upload_id, duplicate) = match recorded {
        Recorded::Accepted { upload_id, .. } => (upload_id, false),
        Recorded::Duplicate { upload_id } | Recorded::Repeat { upload_id } => (upload_id, true),
    };
    Ok(axum::Json(CallbackAck {
        status: "OK",
        upload_id,
        duplicate,
    })
    .into_response())
}

/// The callback body as a flat map: JSON object, or form fields (OSS URL-encodes the values it
/// substitutes, so form decoding restores them).
fn callback_fields(body: &[u8], is_json: bool) -> Result<serde_json::Map<String, Value>, ApiError> {
    if is_json {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(ApiError::bad_request("callback body must be a JSON object")),
            Err(e) => Err(ApiError::bad_request(format!("malformed JSON: {e}"))),
        }
    } else {
        Ok(url::form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect())
    }
}

fn field_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn field_number(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Media attribute overrides from custom variables (`title`, `description`, `tags` as a
/// comma-separated list, `cate_id`, `cover_url`, `user_data`).
fn overrides(get: impl Fn(&str) -> Option<String>) -> MediaAttributesInput {
    MediaAttributesInput {
        title: get("title"),
        description: get("description"),
        tags: get("tags").map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        }),
        cate_id: get("cate_id").and_then(|c| c.trim().parse().ok()),
        cover_url: get("cover_url"),
        user_data: get("user_data"),
    }
}

/// Object-created events MPS treats as new objects; multipart steps are not.
const OSS_CREATED: &[&str] = &[
    "ObjectCreated:PutObject",
    "ObjectCreated:PostObject",
    "ObjectCreated:CopyObject",
    "ObjectCreated:AppendObject",
    "ObjectCreated:CompleteMultipartUpload",
];

/// A link to another object, which `oss:PutObject` lets any uploader create: recorded, never
/// processed as the uploader's media.
const OSS_SYMLINK: &str = "ObjectCreated:PutSymlink";

/// What a notification carrying several events came to.
#[derive(Default, serde::Serialize, utoipa::ToSchema)]
pub struct NotificationTally {
    accepted: usize,
    duplicates: usize,
    /// Other versions of objects completed before: recorded, nothing triggered.
    repeats: usize,
    ignored: usize,
}

impl NotificationTally {
    fn add(&mut self, r: &Recorded) {
        match r {
            Recorded::Accepted { .. } => self.accepted += 1,
            Recorded::Duplicate { .. } => self.duplicates += 1,
            Recorded::Repeat { .. } => self.repeats += 1,
        }
    }
}

/// `POST /v1/notifications/oss-events`: OSS events pushed by MNS, RSA-SHA1 verified.
#[utoipa::path(post, path = "/v1/notifications/oss-events", tag = "notifications",
    description = "OSS events pushed by MNS (base64 body); authenticated by the MNS RSA-SHA1 signature and, when configured, `?token=`.",
    request_body(content = String, content_type = "text/plain"),
    responses(
        (status = 200, description = "events counted", body = NotificationTally),
        (status = 400, description = "invalid_signature / bad_request", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 503, description = "key_unavailable (Retry-After)", body = ErrorBody)))]
pub async fn oss_events(
    State(app): State<Arc<App>>,
    uri: Uri,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let n = &app.config.notifications;
    let account = n
        .mns_account_id
        .as_deref()
        .ok_or_else(ApiError::not_found)?;
    // Everything that costs no fetch and no RSA comes first: the Date window, the body's
    // digest, the endpoint token and the publishing account.
    let authorization = signed_header(&headers, "authorization")?;
    let cert_url = signed_header(&headers, "x-mns-signing-cert-url")?;
    let date = signed_header(&headers, "date")?;
    mns::check_date(date, chrono::Utc::now())
        .map_err(|e| ApiError::invalid_signature(e.to_string()))?;
    // The signature covers Content-MD5, not the body: only the digest check ties the body to
    // the signature.
    let content_md5 = signed_header(&headers, "content-md5")?;
    if !md5_matches(content_md5, &body) {
        return Err(ApiError::invalid_signature(
            "Content-MD5 does not match the body",
        ));
    }
    if let Some(token) = &n.mns_token {
        let presented = query_token(&uri).unwrap_or_default();
        if !constant_time_eq(presented.as_bytes(), token.expose_secret().as_bytes()) {
            return Err(ApiError::invalid_signature(
                "missing or wrong token in the endpoint URL",
            ));
        }
    }
    // MNS signs every account's pushes with the same certificate: the signed topic owner is
    // what says the push came from the operator's own topic.
    if header(&headers, "x-mns-topic-owner") != Some(account) {
        return Err(ApiError::forbidden(
            "the push does not come from this deployment's MNS account",
        ));
    }
    let topic = header(&headers, "x-mns-topic-name").unwrap_or_default();
    if !n.mns_topic_names.is_empty() && !n.mns_topic_names.iter().any(|t| t == topic) {
        return Err(ApiError::forbidden(
            "the push does not come from an allowed MNS topic",
        ));
    }
    let key = app.keys.mns_cert_key(cert_url).await?;
    let all: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let path_and_query = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let string_to_sign = mns::string_to_sign(
        "POST",
        content_md5,
        header(&headers, "content-type").unwrap_or_default(),
        date,
        &all,
        path_and_query,
    );
    mns::verify(&key, authorization, &string_to_sign)
        .map_err(|e| ApiError::invalid_signature(e.to_string()))?;

    let text =
        std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("body is not base64 text"))?;
    let decoded = B64
        .decode(text.trim())
        .map_err(|_| ApiError::bad_request("body is not valid base64"))?;
    let message: OssEventMessage = serde_json::from_slice(&decoded)
        .map_err(|e| ApiError::bad_request(format!("malformed event JSON: {e}")))?;
    let mut tally = NotificationTally::default();
    for event in message.events {
        let symlink = event.event_name == OSS_SYMLINK;
        let Some(oss) = event
            .oss
            .filter(|_| symlink || OSS_CREATED.contains(&event.event_name.as_str()))
        else {
            tally.ignored += 1;
            continue;
        };
        let vars = event.x_vars.unwrap_or_default();
        let r = record(
            &app,
            ObjectEvent {
                source: "oss-events",
                bucket: oss.bucket.name,
                key: percent_decode(&oss.object.key),
                etag: oss.object.etag.unwrap_or_default(),
                size: oss.object.size,
                content_type: None,
                symlink,
                upload_hint: vars.get("x:upload_id").cloned(),
                media_overrides: overrides(|k| vars.get(&format!("x:{k}")).cloned()),
            },
        )
        .await?;
        tally.add(&r);
    }
    Ok(axum::Json(tally).into_response())
}

/// `token` from the query string of the endpoint URL a sender was configured with.
fn query_token(uri: &Uri) -> Option<String> {
    url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

/// MNS sends the body's MD5 as hex (seen in captured pushes); base64 is accepted too.
fn md5_matches(header: &str, body: &[u8]) -> bool {
    use md5::{Digest, Md5};
    let digest = Md5::digest(body);
    let header = header.trim();
    header.eq_ignore_ascii_case(&hex::encode(digest)) || header == B64.encode(digest)
}

#[derive(Deserialize)]
struct OssEventMessage {
    events: Vec<OssEvent>,
}

#[derive(Deserialize)]
struct OssEvent {
    #[serde(rename = "eventName")]
    event_name: String,
    // Optional so one odd event we would ignore anyway does not fail the whole message.
    oss: Option<OssEventObject>,
    #[serde(rename = "xVars")]
    x_vars: Option<std::collections::HashMap<String, String>>,
}

#[derive(Deserialize)]
struct OssEventObject {
    bucket: NamedBucket,
    object: EventObject,
}

#[derive(Deserialize)]
struct NamedBucket {
    name: String,
}

#[derive(Deserialize)]
struct EventObject {
    key: String,
    size: Option<i64>,
    #[serde(rename = "eTag")]
    etag: Option<String>,
}

/// `%XX` decoding only: OSS event keys never use `+` for space.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `POST /v1/notifications/s3-events`: S3-style `Records` from AWS S3, MinIO or Ceph RGW
/// (also inside an SNS `Notification`), authenticated by `notifications.s3_token` as a bearer
/// token or, for senders that cannot set headers (Ceph RGW's push endpoints), as `?token=`
/// in the endpoint URL.
#[utoipa::path(post, path = "/v1/notifications/s3-events", tag = "notifications",
    description = "S3 / MinIO / Ceph RGW `Records` (or an SNS envelope); `Authorization: Bearer <s3_token>` or `?token=`.",
    request_body(content = Object, content_type = "application/json"),
    responses(
        (status = 200, description = "events counted", body = NotificationTally),
        (status = 400, description = "bad_request", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody)))]
pub async fn s3_events(
    State(app): State<Arc<App>>,
    _: S3Sender,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let mut doc: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    if doc.get("Type").and_then(Value::as_str) == Some("Notification") {
        let message = doc
            .get("Message")
            .and_then(Value::as_str)
            .unwrap_or_default();
        doc = serde_json::from_str(message)
            .map_err(|e| ApiError::bad_request(format!("malformed SNS Message: {e}")))?;
    } else if doc.get("Type").and_then(Value::as_str) == Some("SubscriptionConfirmation") {
        // Confirming would mean fetching a URL the sender chose; an operator confirms by hand.
        warn!("SNS subscription confirmation received; confirm it from the SNS console");
        return Ok(axum::Json(NotificationTally::default()).into_response());
    }
    let records: Vec<S3Record> = match doc.get("Records") {
        Some(r) => serde_json::from_value(r.clone())
            .map_err(|e| ApiError::bad_request(format!("malformed Records: {e}")))?,
        // MinIO's test event and other record-less messages.
        None => Vec::new(),
    };
    let mut tally = NotificationTally::default();
    for r in records {
        let created = r.event_name.starts_with("s3:ObjectCreated:")
            || r.event_name.starts_with("ObjectCreated:");
        if !created {
            tally.ignored += 1;
            continue;
        }
        let key = decode_s3_key(
            &r.s3.object.key,
            r.event_source.as_deref().unwrap_or("aws:s3"),
        );
        let meta = object_metadata(&r.s3.object);
        let meta_get = |k: &str| meta.get(k).cloned();
        let recorded = record(
            &app,
            ObjectEvent {
                source: "s3-events",
                bucket: r.s3.bucket.name,
                key,
                etag: r
                    .s3
                    .object
                    .etag
                    .unwrap_or_default()
                    .trim_matches('"')
                    .to_owned(),
                size: r.s3.object.size,
                content_type: r.s3.object.content_type,
                symlink: false,
                upload_hint: meta_get("upload_id"),
                media_overrides: overrides(meta_get),
            },
        )
        .await?;
        tally.add(&recorded);
    }
    Ok(axum::Json(tally).into_response())
}

/// A sender holding `notifications.s3_token`, as a bearer token or `?token=`. Checked from the
/// request head, before the body is read: a wrong guess costs no body upload.
pub struct S3Sender;

impl axum::extract::FromRequestParts<Arc<App>> for S3Sender {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        app: &Arc<App>,
    ) -> Result<Self, ApiError> {
        let expected = app.config.notifications.s3_token.as_ref().ok_or_else(|| {
            ApiError::unauthorized("S3 notifications are not enabled (notifications.s3_token)")
        })?;
        let presented = bearer(header(&parts.headers, "authorization"))
            .map(str::to_owned)
            .or_else(|| query_token(&parts.uri));
        if presented
            .is_some_and(|t| constant_time_eq(t.as_bytes(), expected.expose_secret().as_bytes()))
        {
            Ok(S3Sender)
        } else {
            Err(ApiError::unauthorized("missing or wrong bearer token"))
        }
    }
}

/// User metadata by plain lower-case name with `_` for `-` (`upload_id`): MinIO sends a
/// `userMetadata` map, Ceph RGW a `metadata` list of `x-amz-meta-*` headers with `_` turned
/// into `-`.
fn object_metadata(object: &S3Object) -> std::collections::HashMap<String, String> {
    let listed = object
        .metadata
        .iter()
        .flatten()
        .map(|m| (m.key.as_str(), m.val.as_str()));
    let mapped = object
        .user_metadata
        .iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.as_str()));
    listed
        .chain(mapped)
        .map(|(name, value)| {
            let name = name.to_ascii_lowercase();
            let name = name.strip_prefix("x-amz-meta-").unwrap_or(&name);
            (name.replace('-', "_"), value.to_owned())
        })
        .collect()
}

/// AWS form-encodes keys (`+` for space); MinIO URL-encodes them the same way; Ceph RGW sends
/// them as they are.
fn decode_s3_key(key: &str, event_source: &str) -> String {
    if event_source.starts_with("ceph") {
        key.to_owned()
    } else {
        url::form_urlencoded::parse(
            format!("k={}", key.replace('&', "%26").replace('=', "%3D")).as_bytes(),
        )
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
    }
}

#[derive(Deserialize)]
struct S3Record {
    #[serde(rename = "eventName")]
    event_name: String,
    #[serde(rename = "eventSource")]
    event_source: Option<String>,
    s3: S3Entity,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: NamedBucket,
    object: S3Object,
}

#[derive(Deserialize)]
struct S3Object {
    key: String,
    size: Option<i64>,
    #[serde(rename = "eTag")]
    etag: Option<String>,
    #[serde(rename = "contentType")]
    content_type: Option<String>,
    #[serde(rename = "userMetadata")]
    user_metadata: Option<std::collections::HashMap<String, String>>,
    metadata: Option<Vec<MetadataEntry>>,
}

#[derive(Deserialize)]
struct MetadataEntry {
    key: String,
    val: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_decoding_per_sender() {
        assert_eq!(
            decode_s3_key("dir%2Fmy+clip.mp4", "minio:s3"),
            "dir/my clip.mp4"
        );
        assert_eq!(decode_s3_key("my+clip%2B1.mp4", "aws:s3"), "my clip+1.mp4");
        assert_eq!(decode_s3_key("a&b=c.mp4", "aws:s3"), "a&b=c.mp4");
        assert_eq!(decode_s3_key("my+clip%.mp4", "ceph:s3"), "my+clip%.mp4");
        assert_eq!(percent_decode("dir/a%20b+c.mp4"), "dir/a b+c.mp4");
        assert_eq!(percent_decode("bad%zz%4"), "bad%zz%4");
        assert_eq!(percent_decode("%E8%A7%86.mp4"), "视.mp4");
    }
}
