//! MPS `AddMedia` sink: registers an uploaded object with ApsaraVideo Media Processing
//! (Mts, 2014-06-18) and starts a media workflow on it. One signed RPC call per attempt; the
//! trigger queue owns retries, so this module only says whether an attempt is worth repeating.

use std::time::Duration;

use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tracing::instrument;

use super::{Delivered, Delivery, DeliveryError};
use crate::signing::{RpcCall, percent_encode, rpc_signed_query};
use crate::upstream::without_url;

/// AddMedia's limit on `FileURL` (and `CoverURL`), in bytes.
const MAX_FILE_URL: usize = 3200;
/// Longest provider message quoted in an error.
const MAX_MESSAGE: usize = 200;

/// Client for MPS `AddMedia` (Alibaba RPC signature v1, HMAC-SHA1).
pub struct MpsClient {
    http: reqwest::Client,
    endpoint: String,
    access_key_id: String,
    access_key_secret: SecretString,
}

impl std::fmt::Debug for MpsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpsClient")
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl super::Sink for MpsClient {
    async fn deliver(
        &self,
        target: &crate::workflows::Sink,
        delivery: &Delivery,
    ) -> Result<Delivered, DeliveryError> {
        match target {
            // Rejected objects are never sent for processing; only webhooks hear of them.
            _ if delivery.rejected.is_some() => Err(DeliveryError::Fatal(
                "a rejected object reached the MPS sink".into(),
            )),
            crate::workflows::Sink::Mps { media_workflow_id } => {
                self.add_media(delivery, media_workflow_id).await
            }
            crate::workflows::Sink::Webhook { .. } => Err(DeliveryError::Fatal(
                "a webhook workflow reached the MPS sink".into(),
            )),
        }
    }
}

impl MpsClient {
    /// `endpoint` is e.g. `https://mts.cn-hangzhou.aliyuncs.com`; the keys are the resolved
    /// `[mps]` keys (which default to the `[sts]` ones). `timeout` bounds one whole call.
    pub fn new(
        endpoint: &str,
        access_key_id: String,
        access_key_secret: SecretString,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let http = crate::upstream::client(timeout)?;
        Ok(Self {
            http,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            access_key_id,
            access_key_secret,
        })
    }

    /// Calls `AddMedia` once for the delivered object, starting `media_workflow_id`.
    ///
    /// Fails with [`DeliveryError::Fatal`] when the request can never succeed as is (FileURL
    /// too long, invalid parameters, rejected keys or permissions) and with
    /// [`DeliveryError::Retry`] on throttling, 5xx, timeouts and network errors.
    #[instrument(skip_all, fields(trigger = %delivery.trigger_id, workflow = %delivery.workflow, attempt = delivery.attempt))]
    pub async fn add_media(
        &self,
        delivery: &Delivery,
        media_workflow_id: &str,
    ) -> Result<Delivered, DeliveryError> {
        let params = add_media_params(delivery, media_workflow_id)?;
        let nonce = uuid::Uuid::new_v4().to_string();
        let timestamp = Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let url = self.signed_url(&params, &nonce, &timestamp);
        let response = match self.http.post(url).send().await {
            Ok(r) => r,
            Err(e) => {
                return Err(DeliveryError::Retry(format!(
                    "MPS request failed: {}",
                    without_url(&e)
                )));
            }
        };
        let status = response.status();
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Err(DeliveryError::Retry(format!(
                    "reading MPS response: {}",
                    without_url(&e)
                )));
            }
        };
        outcome(status.as_u16(), &body)
    }

    /// The signed URL for one attempt; nonce and timestamp are fresh each attempt.
    fn signed_url(
        &self,
        params: &[(&'static str, String)],
        nonce: &str,
        timestamp: &str,
    ) -> String {
        let call = RpcCall {
            action: "AddMedia",
            version: "2014-06-18",
            access_key_id: &self.access_key_id,
            nonce,
            timestamp,
        };
        let query = rpc_signed_query(
            &call,
            self.access_key_secret.expose_secret(),
            "POST",
            params.iter().map(|(k, v)| (*k, v.as_str())),
        );
        format!("{}/?{query}", self.endpoint)
    }
}

/// The OSS HTTP URL MPS reads the object from:
/// `http://{bucket}.oss-{region}.aliyuncs.com/{key}`, each key segment percent-encoded with
/// [`percent_encode`] and the `/` between segments kept.
pub fn file_url(bucket: &str, region: &str, key: &str) -> String {
    let path: Vec<String> = key.split('/').map(percent_encode).collect();
    format!(
        "http://{bucket}.oss-{region}.aliyuncs.com/{}",
        path.join("/")
    )
}

/// AddMedia's operation parameters for `delivery`, leaving out attributes that are not set
/// (or empty). Fails fatally when the key cannot name the object in a URL, the FileURL exceeds
/// AddMedia's limit, or no workflow id is configured.
fn add_media_params(
    delivery: &Delivery,
    media_workflow_id: &str,
) -> Result<Vec<(&'static str, String)>, DeliveryError> {
    // A dot segment would make the URL name another object than the one verified.
    if let Err(why) = crate::storage::check_object_key(&delivery.object_key) {
        return Err(DeliveryError::Fatal(format!(
            "no FileURL for this key: {why}"
        )));
    }
    let url = file_url(&delivery.bucket, &delivery.region, &delivery.object_key);
    if url.len() > MAX_FILE_URL {
        return Err(DeliveryError::Fatal(format!(
            "FileURL is {} bytes, AddMedia accepts at most {MAX_FILE_URL}",
            url.len()
        )));
    }
    if media_workflow_id.trim().is_empty() {
        return Err(DeliveryError::Fatal(
            "no media_workflow_id configured for this workflow".into(),
        ));
    }
    let media = &delivery.media;
    let mut params = vec![("FileURL", url)];
    // The API counts characters; AddMedia counts bytes. Display text is cut at a character
    // boundary to fit (the webhook sink still carries it whole); the other fields are ASCII.
    let mut optional = |name: &'static str, value: &Option<String>, max_bytes: usize| {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            params.push((name, fit(v, max_bytes).to_owned()));
        }
    };
    optional("Title", &media.title, 128);
    optional("Description", &media.description, 1024);
    optional("CoverURL", &media.cover_url, 3200);
    optional("MediaWorkflowUserData", &media.user_data, 1024);
    if !media.tags.is_empty() {
        let tags: Vec<&str> = media.tags.iter().map(|t| fit(t, 32)).collect();
        params.push(("Tags", tags.join(",")));
    }
    if let Some(cate_id) = media.cate_id {
        params.push(("CateId", cate_id.to_string()));
    }
    params.push(("MediaWorkflowId", media_workflow_id.to_owned()));
    Ok(params)
}

/// The longest prefix of `text` of at most `max_bytes` bytes that ends on a character.
fn fit(text: &str, max_bytes: usize) -> &str {
    &text[..text.floor_char_boundary(max_bytes.min(text.len()))]
}

/// Classifies one AddMedia response.
fn outcome(status: u16, body: &[u8]) -> Result<Delivered, DeliveryError> {
    if (200..300).contains(&status) {
        return match serde_json::from_slice::<SuccessBody>(body) {
            Ok(ok) if !ok.media.media_id.is_empty() => Ok(Delivered {
                media_id: Some(ok.media.media_id),
                run_ids: ok.media.run_ids.run_id,
            }),
            // The media may exist now; retrying can register it twice, but dropping the
            // trigger would lose it, and at-least-once is the queue's promise.
            _ => Err(DeliveryError::Retry(format!(
                "HTTP {status} without a MediaId in the response"
            ))),
        };
    }
    let error: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let code = error.code;
    let message = quote_message(&error.message);
    // Outside 4xx (5xx, and 3xx since redirects are not followed) the service, not the
    // request, is at fault.
    let retryable = !(400..500).contains(&status)
        || matches!(status, 408 | 429)
        || code.starts_with("Throttling")
        || matches!(code.as_str(), "InternalError" | "ServiceUnavailable")
        // The next attempt signs with a fresh nonce.
        || code == "SignatureNonceUsed";
    let code_known = !code.is_empty();
    let what = match (code_known, message.is_empty()) {
        (false, _) => format!("HTTP {status}"),
        (true, true) => code,
        (true, false) => format!("{code}: {message}"),
    };
    if retryable {
        Err(DeliveryError::Retry(if code_known {
            format!("MPS HTTP {status} {what}")
        } else {
            format!("MPS {what}")
        }))
    } else {
        // InvalidParameter.*, MissingParameter, SignatureDoesNotMatch,
        // InvalidAccessKeyId.NotFound, Forbidden*, NoPermission and any other 4xx: a fault
        // in the request or our configuration that repeating will not fix.
        Err(DeliveryError::Fatal(what))
    }
}

/// A provider message fit for a stored error: cut before any echoed string-to-sign (which
/// `SignatureDoesNotMatch` messages carry and which names the access key and every
/// parameter), control characters replaced, at most [`MAX_MESSAGE`] characters.
fn quote_message(message: &str) -> String {
    let lower = message.to_ascii_lowercase();
    let cut = lower
        .find("string to sign")
        .map_or(message, |i| &message[..i]);
    cut.trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_MESSAGE)
        .collect()
}

#[derive(Deserialize)]
struct SuccessBody {
    #[serde(rename = "Media")]
    media: MediaBody,
}

#[derive(Deserialize)]
struct MediaBody {
    #[serde(rename = "MediaId", default)]
    media_id: String,
    #[serde(rename = "RunIdList", default)]
    run_ids: RunIdList,
}

#[derive(Deserialize, Default)]
struct RunIdList {
    #[serde(rename = "RunId", default)]
    run_id: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ErrorBody {
    #[serde(rename = "Code")]
    code: String,
    #[serde(rename = "Message")]
    message: String,
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::media::MediaAttributes;

    fn delivery(key: &str, media: MediaAttributes) -> Delivery {
        Delivery {
            trigger_id: "trg_1".into(),
            attempt: 1,
            workflow: "transcode-hd".into(),
            upload_id: Some("up_1".into()),
            user: Some("alice".into()),
            bucket: "media-input".into(),
            region: "cn-hangzhou".into(),
            object_key: key.into(),
            etag: "688A7BF4F233DC9C88A80BF985AB7329".into(),
            size: Some(122_539),
            content_type: Some("video/mp4".into()),
            media,
            container: None,
            rejected: None,
            declared_size: None,
            upload_mode: None,
        }
    }

    fn full_media() -> MediaAttributes {
        MediaAttributes {
            title: Some("Trip: day 1".into()),
            description: Some("Beach & sun".into()),
            tags: vec!["travel".into(), "beach".into()],
            cate_id: Some(0),
            cover_url: Some("https://cdn.example.com/c.jpg".into()),
            user_data: Some(r#"{"k":"v"}"#.into()),
        }
    }

    fn client(endpoint: &str) -> MpsClient {
        MpsClient::new(
            endpoint,
            "testid".into(),
            SecretString::from("testsecret"),
            Duration::from_secs(1),
        )
        .unwrap()
    }

    #[test]
    fn file_url_encodes_each_segment_and_keeps_slashes() {
        assert_eq!(
            file_url(
                "media-input",
                "cn-hangzhou",
                "uploads/alice/u1/my trip+1 100%.mp4"
            ),
            "http://media-input.oss-cn-hangzhou.aliyuncs.com/uploads/alice/u1/my%20trip%2B1%20100%25.mp4"
        );
        assert_eq!(
            file_url("b", "cn-shanghai", "视频/été*~.MOV"),
            "http://b.oss-cn-shanghai.aliyuncs.com/%E8%A7%86%E9%A2%91/%C3%A9t%C3%A9%2A~.MOV"
        );
        // Empty segments survive, so the URL names exactly the stored key.
        assert_eq!(
            file_url("b", "r", "a//b/"),
            "http://b.oss-r.aliyuncs.com/a//b/"
        );
        assert_eq!(
            file_url("b", "r", "a?b#c&d=e"),
            "http://b.oss-r.aliyuncs.com/a%3Fb%23c%26d%3De"
        );
    }

    proptest::proptest! {
        #[test]
        fn file_url_path_decodes_back_to_the_key(key in "\\PC{1,64}") {
            let url = file_url("b-1", "cn-hangzhou", &key);
            let path = url.strip_prefix("http://b-1.oss-cn-hangzhou.aliyuncs.com/").unwrap();
            proptest::prop_assert!(path.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~/%".contains(&b)));
            let decoded: Vec<u8> = url::form_urlencoded::parse(format!("k={path}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned().into_bytes())
                .unwrap();
            proptest::prop_assert_eq!(decoded, key.as_bytes().to_vec());
            proptest::prop_assert_eq!(path.matches('/').count(), key.matches('/').count());
        }
    }

    #[test]
    fn parameters_for_full_attributes() {
        let params: HashMap<_, _> =
            add_media_params(&delivery("uploads/a b.mp4", full_media()), "wf-1")
                .unwrap()
                .into_iter()
                .collect();
        let expected: HashMap<&str, String> = [
            (
                "FileURL",
                "http://media-input.oss-cn-hangzhou.aliyuncs.com/uploads/a%20b.mp4",
            ),
            ("Title", "Trip: day 1"),
            ("Description", "Beach & sun"),
            ("Tags", "travel,beach"),
            ("CateId", "0"),
            ("CoverURL", "https://cdn.example.com/c.jpg"),
            ("MediaWorkflowId", "wf-1"),
            ("MediaWorkflowUserData", r#"{"k":"v"}"#),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_owned()))
        .collect();
        assert_eq!(params, expected);
    }

    #[test]
    fn parameters_for_empty_attributes() {
        let params =
            add_media_params(&delivery("a.mp4", MediaAttributes::default()), "wf-1").unwrap();
        let names: Vec<&str> = params.iter().map(|(k, _)| *k).collect();
        assert_eq!(names, ["FileURL", "MediaWorkflowId"]);
        // Empty strings count as not set.
        let blank = MediaAttributes {
            title: Some(String::new()),
            user_data: Some(String::new()),
            ..MediaAttributes::default()
        };
        let params = add_media_params(&delivery("a.mp4", blank), "wf-1").unwrap();
        assert_eq!(params.len(), 2);
    }

    #[test]
    fn display_text_is_cut_to_addmedias_bytes_on_a_character() {
        let wide = MediaAttributes {
            title: Some("影".repeat(128)),
            description: Some("é".repeat(1024)),
            tags: vec!["旅".repeat(32), "beach".into()],
            ..MediaAttributes::default()
        };
        let params = add_media_params(&delivery("a.mp4", wide), "wf-1").unwrap();
        let get = |name: &str| params.iter().find(|(k, _)| *k == name).unwrap().1.clone();
        assert_eq!(get("Title"), "影".repeat(42));
        assert_eq!(get("Description"), "é".repeat(512));
        assert_eq!(get("Tags"), format!("{},beach", "旅".repeat(10)));
    }

    #[test]
    fn over_long_file_url_dotted_key_or_missing_workflow_is_fatal() {
        // Encoded length counts: 1024 spaces are 3072 bytes in the URL, over the limit with
        // a long region.
        let spaces = " ".repeat(1024);
        let mut long = delivery(&spaces, MediaAttributes::default());
        assert!(add_media_params(&long, "wf").is_ok());
        long.region = "r".repeat(120);
        assert!(matches!(
            add_media_params(&long, "wf"),
            Err(DeliveryError::Fatal(m)) if m.contains("3200")
        ));
        // A dot segment would make the URL name another object.
        for key in [
            "uploads/jo/../kim/a.mp4",
            "uploads/./a.mp4",
            "uploads//a.mp4",
        ] {
            assert!(matches!(
                add_media_params(&delivery(key, MediaAttributes::default()), "wf"),
                Err(DeliveryError::Fatal(m)) if m.contains("segments")
            ));
        }
        assert!(matches!(
            add_media_params(&delivery("a.mp4", MediaAttributes::default()), " "),
            Err(DeliveryError::Fatal(_))
        ));
    }

    #[test]
    fn signed_url_verifies_and_has_no_plus() {
        let mps = client("http://127.0.0.1:1/");
        let params =
            add_media_params(&delivery("uploads/a b+c.mp4", full_media()), "wf-1").unwrap();
        let url = mps.signed_url(&params, "nonce-1", "2024-01-01T00:00:00Z");
        assert!(url.starts_with("http://127.0.0.1:1/?"));
        assert!(!url.contains('+'));
        assert!(!url.contains("testsecret"));
        let parsed = url::Url::parse(&url).unwrap();
        let pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let query = crate::signing::rpc_canonical_query(
            pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        assert_eq!(
            get("Signature").unwrap(),
            crate::signing::rpc_signature("testsecret", "POST", &query)
        );
        assert_eq!(get("Action"), Some("AddMedia"));
        assert_eq!(get("Version"), Some("2014-06-18"));
        assert_eq!(get("Format"), Some("JSON"));
        assert_eq!(get("SignatureMethod"), Some("HMAC-SHA1"));
        assert_eq!(get("SignatureVersion"), Some("1.0"));
        assert_eq!(get("AccessKeyId"), Some("testid"));
        assert_eq!(
            get("FileURL"),
            Some("http://media-input.oss-cn-hangzhou.aliyuncs.com/uploads/a%20b%2Bc.mp4")
        );
        assert_eq!(get("Tags"), Some("travel,beach"));
        // Each parameter once.
        assert_eq!(pairs.len(), 8 + 8 + 1);
    }

    #[test]
    fn success_yields_the_media_id() {
        let body = br#"{"RequestId":"r","Media":{"MediaId":"0123456789abcdef0123456789abcdef","RunIdList":{"RunId":["x"]}}}"#;
        assert_eq!(
            outcome(200, body),
            Ok(Delivered {
                media_id: Some("0123456789abcdef0123456789abcdef".into()),
                run_ids: vec!["x".into()],
            })
        );
        assert!(matches!(outcome(200, b"{}"), Err(DeliveryError::Retry(_))));
        assert!(matches!(
            outcome(200, b"<html>"),
            Err(DeliveryError::Retry(_))
        ));
    }

    fn error_body(code: &str, message: &str) -> Vec<u8> {
        serde_json::json!({"RequestId": "r", "Code": code, "Message": message})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn configuration_and_parameter_faults_are_fatal() {
        for (status, code) in [
            (400, "InvalidParameter.Title"),
            (400, "InvalidParameter"),
            (400, "MissingParameter"),
            (400, "SignatureDoesNotMatch"),
            (404, "InvalidAccessKeyId.NotFound"),
            (403, "Forbidden.RAM"),
            (403, "NoPermission"),
            (404, "InvalidMediaWorkflow.NotFound"),
        ] {
            assert_eq!(
                outcome(status, &error_body(code, "why")),
                Err(DeliveryError::Fatal(format!("{code}: why"))),
                "{status} {code}"
            );
        }
        assert_eq!(
            outcome(403, b"not json"),
            Err(DeliveryError::Fatal("HTTP 403".into()))
        );
    }

    #[test]
    fn throttling_and_server_faults_are_retried() {
        for (status, code) in [
            (400, "Throttling.User"),
            (503, "Throttling"),
            (503, "ServiceUnavailable"),
            (500, "InternalError"),
            (502, ""),
            (504, "GatewayTimeout"),
            (429, "TooManyRequests"),
            (400, "SignatureNonceUsed"),
            (302, ""),
        ] {
            let result = outcome(status, &error_body(code, "busy"));
            assert!(
                matches!(&result, Err(DeliveryError::Retry(m)) if m.contains(&status.to_string())),
                "{status} {code}: {result:?}"
            );
        }
    }

    #[test]
    fn error_messages_drop_the_echoed_string_to_sign_and_are_bounded() {
        let message = "Specified signature is not matched with our calculation. server string to sign is:POST&%2F&AccessKeyId%3Dtestid";
        let Err(DeliveryError::Fatal(m)) =
            outcome(400, &error_body("SignatureDoesNotMatch", message))
        else {
            panic!("expected fatal");
        };
        assert!(!m.contains("testid"), "{m}");
        assert!(m.starts_with("SignatureDoesNotMatch: Specified signature"));
        let Err(DeliveryError::Retry(m)) =
            outcome(500, &error_body("InternalError", &"x\n".repeat(1000)))
        else {
            panic!("expected retry");
        };
        assert!(m.len() < 300 && !m.contains('\n'), "{m}");
    }

    #[tokio::test]
    async fn network_errors_are_retried_without_the_signed_url() {
        // Nothing listens on port 1.
        let mps = client("http://127.0.0.1:1");
        let result = mps
            .add_media(&delivery("a.mp4", MediaAttributes::default()), "wf-1")
            .await;
        let Err(DeliveryError::Retry(m)) = result else {
            panic!("expected retry, got {result:?}");
        };
        assert!(
            !m.contains("Signature") && !m.contains("testid") && !m.contains("127.0.0.1"),
            "{m}"
        );
    }

    /// A loopback stand-in for MPS that checks the signature with the shared signer and
    /// answers like the real service; `latency` delays every answer.
    async fn loopback(latency: Duration) -> String {
        use crate::upstream::loopback::respond;
        use http::{Method, StatusCode};

        let handler = move |req: http::Request<bytes::Bytes>| async move {
            tokio::time::sleep(latency).await;
            let method = req.method();
            let params: Vec<(String, String)> =
                url::form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
                    .into_owned()
                    .collect();
            let signature = params
                .iter()
                .find(|(k, _)| k == "Signature")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let canonical = crate::signing::rpc_canonical_query(
                params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            );
            if method != Method::POST
                || crate::signing::rpc_signature("testsecret", "POST", &canonical) != signature
            {
                // The real service echoes its string to sign.
                let message = format!(
                    "Specified signature is not matched with our calculation. server string to sign is:{}",
                    crate::signing::rpc_string_to_sign(method.as_str(), &canonical)
                );
                let body = serde_json::json!({"RequestId": "r", "Code": "SignatureDoesNotMatch", "Message": message});
                return respond(StatusCode::BAD_REQUEST, body.to_string());
            }
            let body = serde_json::json!({
                "RequestId": "r",
                "Media": {"MediaId": "0123456789abcdef0123456789abcdef", "RunIdList": {"RunId": ["run"]}},
            });
            respond(StatusCode::OK, body.to_string())
        };
        crate::upstream::loopback::serve(handler).await
    }

    #[tokio::test]
    async fn signed_call_over_http_returns_the_media_id() {
        let url = loopback(Duration::ZERO).await;
        let result = client(&url)
            .add_media(&delivery("uploads/a b+c%.mp4", full_media()), "wf-1")
            .await;
        assert_eq!(
            result,
            Ok(Delivered {
                media_id: Some("0123456789abcdef0123456789abcdef".into()),
                run_ids: vec!["run".into()],
            })
        );
    }

    #[tokio::test]
    async fn signature_mismatch_is_fatal_without_echoing_the_string_to_sign() {
        let url = loopback(Duration::ZERO).await;
        let wrong = MpsClient::new(
            &url,
            "testid".into(),
            SecretString::from("wrong-secret"),
            Duration::from_secs(1),
        )
        .unwrap();
        let result = wrong
            .add_media(&delivery("a.mp4", MediaAttributes::default()), "wf-1")
            .await;
        let Err(DeliveryError::Fatal(m)) = &result else {
            panic!("expected fatal, got {result:?}");
        };
        assert!(m.starts_with("SignatureDoesNotMatch: "), "{m}");
        assert!(
            !m.contains("testid") && !m.contains("POST&") && !m.contains("wrong-secret"),
            "{m}"
        );
    }

    #[tokio::test]
    async fn timeouts_are_retried_without_the_signed_url() {
        let url = loopback(Duration::from_millis(500)).await;
        let slow = MpsClient::new(
            &url,
            "testid".into(),
            SecretString::from("testsecret"),
            Duration::from_millis(100),
        )
        .unwrap();
        let result = slow
            .add_media(&delivery("a.mp4", MediaAttributes::default()), "wf-1")
            .await;
        let Err(DeliveryError::Retry(m)) = &result else {
            panic!("expected retry, got {result:?}");
        };
        assert!(m.contains("timed out"), "{m}");
        assert!(!m.contains("Signature") && !m.contains(&url), "{m}");
    }

    #[test]
    fn debug_does_not_print_the_secret() {
        let printed = format!("{:?}", client("http://127.0.0.1:1"));
        assert!(!printed.contains("testsecret"), "{printed}");
    }
}
