//! Signed webhook sink: POSTs an `upload.completed` event to a workflow's URL, signed the
//! Standard Webhooks way (<https://www.standardwebhooks.com/>), so receivers can verify it
//! with any Standard Webhooks library. One attempt per call; the trigger queue owns retries.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tracing::instrument;

use super::{Delivered, Delivery, DeliveryError};
use crate::signing::{validate_webhook_secret, webhook_signature, webhook_signing_key};
use crate::upstream::without_url;

/// Longest part of a receiver's response body quoted in an error.
const MAX_QUOTED_BODY: usize = 200;

/// Delivers triggers to webhook receivers.
#[derive(Debug)]
pub struct WebhookClient {
    http: reqwest::Client,
}

#[async_trait::async_trait]
impl super::Sink for WebhookClient {
    async fn deliver(
        &self,
        target: &crate::workflows::Sink,
        delivery: &Delivery,
    ) -> Result<Delivered, DeliveryError> {
        match target {
            crate::workflows::Sink::Webhook { url, secret } => {
                self.post(delivery, url, secret).await
            }
            crate::workflows::Sink::Mps { .. } => Err(DeliveryError::Fatal(
                "an MPS workflow reached the webhook sink".into(),
            )),
        }
    }
}

impl WebhookClient {
    /// `timeout` bounds one whole delivery (connect, send, response headers and body).
    pub fn new(timeout: Duration) -> anyhow::Result<Self> {
        let http = crate::upstream::client(timeout)?;
        Ok(Self { http })
    }

    /// POSTs the signed event for `delivery` to `url`.
    ///
    /// Any 2xx is delivered. 410 Gone, an invalid URL or an unusable secret is
    /// [`DeliveryError::Fatal`]; every other status (3xx included: redirects are not
    /// followed), timeouts and network errors are [`DeliveryError::Retry`].
    #[instrument(skip_all, fields(trigger = %delivery.trigger_id, workflow = %delivery.workflow, attempt = delivery.attempt))]
    pub async fn post(
        &self,
        delivery: &Delivery,
        url: &str,
        secret: &SecretString,
    ) -> Result<Delivered, DeliveryError> {
        let now = Utc::now();
        let body = serde_json::to_vec(&payload(delivery, now))
            .map_err(|e| DeliveryError::Fatal(format!("encoding the event: {e}")))?;
        self.send(&delivery.trigger_id, now, body, url, secret)
            .await
    }

    /// POSTs `body` to `url` as the Standard Webhooks message `id`, signed with `secret` at
    /// `now`, and classifies the answer as [`WebhookClient::post`] does.
    pub async fn send(
        &self,
        id: &str,
        now: DateTime<Utc>,
        body: Vec<u8>,
        url: &str,
        secret: &SecretString,
    ) -> Result<Delivered, DeliveryError> {
        // The URL itself is never quoted: its query may carry a token.
        if !url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
            return Err(DeliveryError::Fatal(
                "webhook URL is not an http:// or https:// URL".into(),
            ));
        }
        validate_webhook_secret(secret.expose_secret()).map_err(DeliveryError::Fatal)?;
        let key = webhook_signing_key(secret.expose_secret());
        let timestamp = now.timestamp();
        let signature = webhook_signature(&key, id, timestamp, &body);
        let request = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .header("idempotency-key", id)
            .body(body);
        let mut response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                return Err(DeliveryError::Retry(format!(
                    "webhook request failed: {}",
                    without_url(&e)
                )));
            }
        };
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Ok(Delivered::default());
        }
        // Read only as much of an error body as can be quoted; a receiver may send megabytes.
        let mut head = Vec::new();
        while head.len() < MAX_QUOTED_BODY * 4 {
            match response.chunk().await {
                Ok(Some(chunk)) => head.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        outcome(status, &head)
    }
}

/// The event body: the trigger id (stable across attempts), the attempt number, the object
/// (as the store has it once verified, with the `container` its first bytes identify) and
/// its media attributes, and `timestamp` (RFC 3339, the same instant as the
/// `webhook-timestamp` header). `object_key` names what the processor reads: the protected
/// copy verification judged, when it made one, with the announced key as `source_key`. `upload.rejected` says an object the workflow would have
/// taken failed verification, with the `reason`. A workflow that follows its outcome adds
/// `report_url`, `output_bucket` and `output_prefix`.
pub fn payload(delivery: &Delivery, now: DateTime<Utc>) -> Value {
    let mut body = json!({
        "type": if delivery.rejected.is_some() { "upload.rejected" } else { "upload.completed" },
        "id": delivery.trigger_id,
        "attempt": delivery.attempt,
        "workflow": delivery.workflow,
        "upload_id": delivery.upload_id,
        "user": delivery.user,
        "bucket": delivery.bucket,
        "object_key": delivery.processed_key(),
        "etag": delivery.etag,
        "size": delivery.size,
        "content_type": delivery.content_type,
        "media": delivery.media,
        "timestamp": now.to_rfc3339_opts(SecondsFormat::Secs, true),
    });
    if delivery.protected_key.is_some() {
        body["source_key"] = json!(delivery.object_key);
    }
    if let Some(container) = &delivery.container {
        body["container"] = json!(container);
    }
    if let Some(reason) = &delivery.rejected {
        body["reason"] = json!(reason);
    }
    // A receiver that reports back: where to, and where its outputs go.
    if let Some(report) = &delivery.report {
        body["report_url"] = json!(report.report_url);
        body["output_bucket"] = json!(report.output_bucket);
        if let Some(prefix) = &report.output_prefix {
            body["output_prefix"] = json!(prefix);
        }
    }
    body
}

/// Classifies a non-2xx (or 2xx) receiver response from its status and the head of its body.
fn outcome(status: u16, body_head: &[u8]) -> Result<Delivered, DeliveryError> {
    match status {
        200..=299 => Ok(Delivered::default()),
        410 => Err(DeliveryError::Fatal(
            "HTTP 410 Gone: the receiver no longer accepts these events".into(),
        )),
        300..=399 => Err(DeliveryError::Retry(format!(
            "HTTP {status}: redirect not followed"
        ))),
        _ => {
            let quoted = quote(body_head);
            if quoted.is_empty() {
                Err(DeliveryError::Retry(format!("HTTP {status}")))
            } else {
                Err(DeliveryError::Retry(format!("HTTP {status}: {quoted}")))
            }
        }
    }
}

/// At most [`MAX_QUOTED_BODY`] characters of a body, control characters as spaces.
fn quote(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .chars()
        .take(MAX_QUOTED_BODY)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use chrono::TimeZone;
    use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;

    use super::*;
    use crate::media::MediaAttributes;
    use crate::signing::{MIN_WEBHOOK_KEY_BYTES, constant_time_eq};

    fn delivery() -> Delivery {
        Delivery {
            trigger_id: "trg_01J0000000000000000000000".into(),
            attempt: 3,
            workflow: "notify-cms".into(),
            upload_id: Some("up_1".into()),
            user: None,
            bucket: "media-input".into(),
            region: "cn-hangzhou".into(),
            object_key: "uploads/alice/up_1/trip.MP4".into(),
            protected_key: None,
            etag: "688A7BF4F233DC9C88A80BF985AB7329".into(),
            size: Some(122_539),
            content_type: None,
            media: MediaAttributes {
                title: Some("Trip".into()),
                tags: vec!["a".into(), "b".into()],
                ..MediaAttributes::default()
            },
            container: None,
            rejected: None,
            declared_size: None,
            upload_mode: None,
            report: None,
        }
    }

    /// What a Standard Webhooks receiver does: every `v1,` entry of the header is a candidate.
    fn verify(secret: &str, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
        let expected = webhook_signature(&webhook_signing_key(secret), id, timestamp, body);
        header
            .split(' ')
            .any(|candidate| constant_time_eq(candidate.as_bytes(), expected.as_bytes()))
    }

    #[test]
    fn standard_webhooks_reference_example() {
        let key = webhook_signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        assert_eq!(
            webhook_signature(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn signing_key_decodes_whsec_and_otherwise_uses_raw_bytes() {
        assert_eq!(webhook_signing_key("whsec_aGVsbG8="), b"hello");
        assert_eq!(webhook_signing_key("whsec_aGVsbG8"), b"hello");
        assert_eq!(webhook_signing_key("plain secret"), b"plain secret");
        assert_eq!(
            webhook_signing_key("whsec_not base64!"),
            b"whsec_not base64!"
        );
        assert!(validate_webhook_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
        assert!(validate_webhook_secret("a plain secret of 24 ch.").is_ok());
        // whsec_ + 10 characters is a 7-byte key: refused, as are short raw secrets.
        assert!(validate_webhook_secret("whsec_aGVsbG8xMjM=").is_err());
        assert!(validate_webhook_secret("plain secret").is_err());
        assert!(validate_webhook_secret("").is_err());
        assert!(validate_webhook_secret("whsec_").is_err());
        let err = validate_webhook_secret("whsec_not base64!").unwrap_err();
        assert!(!err.contains("not base64!"), "{err}");
    }

    #[test]
    fn signatures_round_trip_and_bind_id_timestamp_and_body() {
        for secret in ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "raw-secret"] {
            let body = serde_json::to_vec(&payload(&delivery(), Utc::now())).unwrap();
            let header =
                webhook_signature(&webhook_signing_key(secret), "trg_1", 1_700_000_000, &body);
            assert!(verify(secret, "trg_1", 1_700_000_000, &body, &header));
            // Receivers accept a list of signatures (key rotation).
            let listed = format!("v1,bm90IGl0 {header}");
            assert!(verify(secret, "trg_1", 1_700_000_000, &body, &listed));
            assert!(!verify(secret, "trg_2", 1_700_000_000, &body, &header));
            assert!(!verify(secret, "trg_1", 1_700_000_001, &body, &header));
            let mut tampered = body.clone();
            tampered[1] ^= 1;
            assert!(!verify(secret, "trg_1", 1_700_000_000, &tampered, &header));
            assert!(!verify("other", "trg_1", 1_700_000_000, &body, &header));
        }
    }

    #[test]
    fn payload_shape() {
        let now = Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(
            payload(&delivery(), now),
            json!({
                "type": "upload.completed",
                "id": "trg_01J0000000000000000000000",
                "attempt": 3,
                "workflow": "notify-cms",
                "upload_id": "up_1",
                "user": null,
                "bucket": "media-input",
                "object_key": "uploads/alice/up_1/trip.MP4",
                "etag": "688A7BF4F233DC9C88A80BF985AB7329",
                "size": 122539,
                "content_type": null,
                "media": {"title": "Trip", "tags": ["a", "b"]},
                "timestamp": "2024-01-02T03:04:05Z",
            })
        );
        let empty = Delivery {
            media: MediaAttributes::default(),
            ..delivery()
        };
        assert_eq!(payload(&empty, now)["media"], json!({}));
        let notice = Delivery {
            rejected: Some(crate::kinds::Reason::NotMedia),
            container: Some("video/mp4".into()),
            ..delivery()
        };
        let body = payload(&notice, now);
        assert_eq!(body["type"], "upload.rejected");
        assert_eq!(body["reason"], "not_media");
        assert_eq!(body["container"], "video/mp4");
        // A verified copy is what the processor reads; the announced key comes beside it.
        let protected = Delivery {
            protected_key: Some("verified/alice/job_1/trip.MP4".into()),
            ..delivery()
        };
        let body = payload(&protected, now);
        assert_eq!(body["object_key"], "verified/alice/job_1/trip.MP4");
        assert_eq!(body["source_key"], "uploads/alice/up_1/trip.MP4");
        assert_eq!(body["bucket"], "media-input");
    }

    #[test]
    fn outcomes() {
        assert_eq!(outcome(200, b""), Ok(Delivered::default()));
        assert_eq!(outcome(204, b""), Ok(Delivered::default()));
        assert!(matches!(outcome(410, b"bye"), Err(DeliveryError::Fatal(_))));
        assert_eq!(
            outcome(301, b""),
            Err(DeliveryError::Retry(
                "HTTP 301: redirect not followed".into()
            ))
        );
        assert_eq!(
            outcome(503, b""),
            Err(DeliveryError::Retry("HTTP 503".into()))
        );
        assert_eq!(
            outcome(500, b"oops\n"),
            Err(DeliveryError::Retry("HTTP 500: oops".into()))
        );
        for status in [400, 401, 403, 404, 429] {
            assert!(matches!(outcome(status, b""), Err(DeliveryError::Retry(_))));
        }
        let long = "é".repeat(1000);
        let Err(DeliveryError::Retry(m)) = outcome(502, long.as_bytes()) else {
            panic!("expected retry");
        };
        assert_eq!(m.chars().count(), "HTTP 502: ".len() + MAX_QUOTED_BODY);
    }

    #[tokio::test]
    async fn bad_url_or_secret_is_fatal_and_network_errors_retry() {
        let client = WebhookClient::new(Duration::from_secs(1)).unwrap();
        let secret = SecretString::from("a raw secret of 24 bytes");
        for url in ["not a url", "ftp://example.com/x", "file:///etc/passwd"] {
            assert!(matches!(
                client.post(&delivery(), url, &secret).await,
                Err(DeliveryError::Fatal(m)) if !m.contains(url)
            ));
        }
        assert!(matches!(
            client
                .post(
                    &delivery(),
                    "http://127.0.0.1:1/h",
                    &SecretString::from("whsec_!!")
                )
                .await,
            Err(DeliveryError::Fatal(_))
        ));
        // Nothing listens on port 1; the URL (and its token) stays out of the reason.
        let result = client
            .post(&delivery(), "http://127.0.0.1:1/h?token=tok123", &secret)
            .await;
        let Err(DeliveryError::Retry(m)) = result else {
            panic!("expected retry, got {result:?}");
        };
        assert!(!m.contains("tok123") && !m.contains("127.0.0.1"), "{m}");
    }

    /// Requests a loopback receiver recorded: headers and body.
    type Seen = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

    /// A loopback receiver: `/ok` records headers and body, `/moved` redirects to `/ok`,
    /// `/gone` answers 410, `/boom` a 500 with a 100 kB body, `/slow` answers late.
    async fn loopback() -> (String, Seen) {
        use crate::upstream::loopback::respond;

        let seen = Seen::default();
        let store = seen.clone();
        let base = crate::upstream::loopback::serve(move |req: http::Request<bytes::Bytes>| {
            let store = store.clone();
            async move {
                if req.method() != Method::POST {
                    return respond(StatusCode::METHOD_NOT_ALLOWED, "");
                }
                match req.uri().path() {
                    "/ok" => {
                        let (parts, body) = req.into_parts();
                        store.lock().unwrap().push((parts.headers, body.to_vec()));
                        respond(StatusCode::NO_CONTENT, "")
                    }
                    "/moved" => {
                        let mut moved = respond(StatusCode::TEMPORARY_REDIRECT, "");
                        moved
                            .headers_mut()
                            .insert(header::LOCATION, HeaderValue::from_static("/ok"));
                        moved
                    }
                    "/gone" => respond(StatusCode::GONE, ""),
                    "/boom" => respond(StatusCode::INTERNAL_SERVER_ERROR, "x".repeat(100_000)),
                    "/slow" => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        respond(StatusCode::OK, "")
                    }
                    _ => respond(StatusCode::NOT_FOUND, ""),
                }
            }
        })
        .await;
        (base, seen)
    }

    #[tokio::test]
    async fn delivers_a_verifiable_event_with_its_headers() {
        let (base, seen) = loopback().await;
        let client = WebhookClient::new(Duration::from_secs(2)).unwrap();
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let d = delivery();
        let result = client
            .post(&d, &format!("{base}/ok"), &SecretString::from(secret))
            .await;
        assert_eq!(result, Ok(Delivered::default()));
        let (headers, body) = seen.lock().unwrap()[0].clone();
        let h = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_owned();
        assert_eq!(h("content-type"), "application/json");
        assert_eq!(
            h("user-agent"),
            concat!("mediagate/", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(h("webhook-id"), d.trigger_id);
        assert_eq!(h("idempotency-key"), d.trigger_id);
        let timestamp: i64 = h("webhook-timestamp").parse().unwrap();
        assert!((Utc::now().timestamp() - timestamp).abs() < 5);
        assert!(verify(
            secret,
            &d.trigger_id,
            timestamp,
            &body,
            &h("webhook-signature")
        ));
        // The body is the payload, stamped with the header's instant.
        let parsed: Value = serde_json::from_slice(&body).unwrap();
        let at = DateTime::from_timestamp(timestamp, 0).unwrap();
        assert_eq!(parsed, payload(&d, at));
    }

    #[tokio::test]
    async fn redirects_gone_errors_and_timeouts_over_http() {
        let (base, seen) = loopback().await;
        let client = WebhookClient::new(Duration::from_millis(200)).unwrap();
        let secret = SecretString::from("a raw secret of 24 bytes");
        let d = delivery();
        let deliver = async |path: &str| {
            let url = format!("{base}{path}");
            client.post(&d, &url, &secret).await
        };
        assert_eq!(
            deliver("/moved").await,
            Err(DeliveryError::Retry(
                "HTTP 307: redirect not followed".into()
            ))
        );
        assert!(seen.lock().unwrap().is_empty(), "redirect was followed");
        assert!(matches!(
            deliver("/gone").await,
            Err(DeliveryError::Fatal(_))
        ));
        assert_eq!(
            deliver("/boom").await,
            Err(DeliveryError::Retry(format!(
                "HTTP 500: {}",
                "x".repeat(200)
            )))
        );
        let slow = deliver("/slow").await;
        assert!(
            matches!(&slow, Err(DeliveryError::Retry(m)) if m.contains("timed out") && !m.contains(&base)),
            "{slow:?}"
        );
        assert!(
            matches!(deliver("/missing").await, Err(DeliveryError::Retry(m)) if m == "HTTP 404")
        );
    }

    proptest::proptest! {
        #[test]
        fn any_whsec_secret_round_trips(
            key in proptest::collection::vec(proptest::prelude::any::<u8>(), MIN_WEBHOOK_KEY_BYTES..64),
            id in "[a-zA-Z0-9_]{1,40}",
            timestamp in 0i64..4_000_000_000,
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..256),
            flip in proptest::prelude::any::<proptest::sample::Index>(),
        ) {
            let secret = format!("whsec_{}", B64.encode(&key));
            proptest::prop_assert!(validate_webhook_secret(&secret).is_ok());
            proptest::prop_assert_eq!(webhook_signing_key(&secret), key.clone());
            let header = webhook_signature(&webhook_signing_key(&secret), &id, timestamp, &body);
            proptest::prop_assert!(verify(&secret, &id, timestamp, &body, &header));
            let mut tampered = body.clone();
            tampered[flip.index(body.len())] ^= 0x01;
            proptest::prop_assert!(!verify(&secret, &id, timestamp, &tampered, &header));
        }
    }
}
