//! AWS-compatible STS `AssumeRole` (AWS, Ceph RGW, MinIO): the Query API as a form-encoded
//! POST signed with SigV4, answered in XML.

use std::time::SystemTime;

use async_trait::async_trait;
use aws_credential_types::Credentials as SigningKeys;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tracing::instrument;

use super::StsConfig;
use super::{AssumeRole, Attempt, Credentials, Sts, StsError, http_client, with_retries};
use crate::signing::percent_encode;
use crate::upstream::without_url;

pub struct AwsSts {
    http: reqwest::Client,
    endpoint: String,
    region: String,
    identity: Identity,
    role_arn: String,
    external_id: Option<String>,
    max_attempts: u32,
}

impl AwsSts {
    /// A client for the STS at `endpoint`, signing for `region`, with the keys and role of
    /// `config`.
    pub fn new(config: &StsConfig, endpoint: &str, region: &str) -> anyhow::Result<Self> {
        let keys = SigningKeys::new(
            config.access_key_id.clone(),
            config.access_key_secret.expose_secret().to_owned(),
            None,
            None,
            "mediagate-config",
        );
        Ok(Self {
            http: http_client(config.timeout_ms)?,
            endpoint: format!("{}/", endpoint.trim_end_matches('/')),
            region: region.to_owned(),
            identity: keys.into(),
            role_arn: config.role_arn.clone(),
            external_id: config.external_id.clone(),
            max_attempts: config.max_attempts.max(1),
        })
    }

    /// The form body of one call. Encoded with `%20`, never `+`: some STS implementations (Ceph
    /// RGW among them) do not decode `+` in the form body.
    fn body(&self, request: &AssumeRole) -> String {
        let duration = request.duration_seconds.to_string();
        let mut params = vec![
            ("Action", "AssumeRole"),
            ("Version", "2011-06-15"),
            ("RoleArn", self.role_arn.as_str()),
            ("RoleSessionName", request.role_session_name.as_str()),
            ("Policy", request.policy.as_str()),
            ("DurationSeconds", duration.as_str()),
        ];
        if let Some(external_id) = &self.external_id {
            params.push(("ExternalId", external_id.as_str()));
        }
        params
            .iter()
            .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// The SigV4 headers for `body` at `time`.
    fn signed_headers(
        &self,
        body: &str,
        time: SystemTime,
    ) -> Result<Vec<(String, String)>, String> {
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name("sts")
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let signable = SignableRequest::new(
            "POST",
            self.endpoint.as_str(),
            [("content-type", FORM)].into_iter(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| e.to_string())?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| e.to_string())?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect())
    }

    async fn attempt(&self, request: &AssumeRole) -> Attempt {
        let body = self.body(request);
        let headers = match self.signed_headers(&body, SystemTime::now()) {
            Ok(h) => h,
            Err(e) => {
                return Attempt::Done(Err(StsError::Rejected {
                    code: "SigningFailed".into(),
                    message: e,
                    request_id: String::new(),
                }));
            }
        };
        let mut call = self
            .http
            .post(&self.endpoint)
            .header("content-type", FORM)
            .body(body);
        for (name, value) in headers {
            call = call.header(name, value);
        }
        let response = match call.send().await {
            Ok(r) => r,
            Err(e) => return Attempt::Retry(format!("request failed: {}", without_url(&e))),
        };
        let status = response.status();
        let body = match response.text().await {
            Ok(b) => b,
            Err(e) => return Attempt::Retry(format!("reading response: {}", without_url(&e))),
        };
        outcome(status.as_u16(), &body)
    }
}

const FORM: &str = "application/x-www-form-urlencoded; charset=utf-8";

/// Reads an STS answer: credentials, a retryable fault, or a rejection.
fn outcome(status: u16, body: &str) -> Attempt {
    if (200..300).contains(&status) {
        return match quick_xml::de::from_str::<AssumeRoleResponse>(body) {
            Ok(ok) => {
                let c = ok.result.credentials;
                Attempt::Done(Ok(Credentials {
                    access_key_id: c.access_key_id,
                    access_key_secret: SecretString::from(c.secret_access_key),
                    security_token: SecretString::from(c.session_token),
                    expiration: c.expiration,
                    obtained_at: Utc::now(),
                }))
            }
            Err(e) => Attempt::Retry(format!("unreadable success response ({e})")),
        };
    }
    let error = quick_xml::de::from_str::<ErrorDocument>(body)
        .map(ErrorDocument::flatten)
        .unwrap_or_default();
    let retryable = status >= 500
        || status == 429
        || error.code.starts_with("Throttling")
        || matches!(
            error.code.as_str(),
            "RequestLimitExceeded"
                | "TooManyRequestsException"
                | "ServiceUnavailable"
                | "InternalFailure"
                | "InternalError"
                | "SlowDown"
        );
    Attempt::failed(
        status,
        retryable,
        error.code,
        error.message,
        error.request_id,
    )
}

#[async_trait]
impl Sts for AwsSts {
    #[instrument(skip_all, fields(session = %request.role_session_name))]
    async fn assume_role(&self, request: &AssumeRole) -> Result<Credentials, StsError> {
        with_retries(self.max_attempts, || self.attempt(request)).await
    }
}

#[derive(Deserialize)]
struct AssumeRoleResponse {
    #[serde(rename = "AssumeRoleResult")]
    result: AssumeRoleResult,
}

#[derive(Deserialize)]
struct AssumeRoleResult {
    #[serde(rename = "Credentials")]
    credentials: CredentialsElement,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CredentialsElement {
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
    expiration: DateTime<Utc>,
}

/// AWS wraps errors as `<ErrorResponse><Error><Code>`; RGW answers some with a bare `<Error>`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ErrorDocument {
    error: Option<ErrorElement>,
    code: String,
    message: String,
    request_id: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ErrorElement {
    code: String,
    message: String,
    request_id: String,
}

impl ErrorDocument {
    fn flatten(self) -> ErrorElement {
        match self.error {
            Some(inner) => ErrorElement {
                request_id: if inner.request_id.is_empty() {
                    self.request_id
                } else {
                    inner.request_id
                },
                ..inner
            },
            None => ErrorElement {
                code: self.code,
                message: self.message,
                request_id: self.request_id,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sts() -> AwsSts {
        let config = StsConfig {
            access_key_id: "AKIDEXAMPLE".into(),
            access_key_secret: SecretString::from("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            role_arn: "arn:aws:iam::123456789012:role/uploader".into(),
            ..StsConfig::default()
        };
        AwsSts::new(&config, "http://127.0.0.1:7480", "us-east-1").unwrap()
    }

    #[test]
    fn body_is_percent_encoded_without_plus() {
        let body = sts().body(&AssumeRole {
            role_session_name: "mg.alice".into(),
            policy: r#"{"Version":"2012-10-17","a b":"+"}"#.into(),
            duration_seconds: 900,
        });
        assert!(body.starts_with("Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fuploader&RoleSessionName=mg.alice&Policy="));
        assert!(body.contains("%22a%20b%22%3A%22%2B%22"));
        assert!(body.ends_with("&DurationSeconds=900"));
        assert!(!body.contains('+'));
    }

    #[test]
    fn signature_covers_the_body_and_names_the_sts_scope() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160);
        let sts = sts();
        let a = sts.signed_headers("Action=AssumeRole", t).unwrap();
        let b = sts.signed_headers("Action=AssumeRolf", t).unwrap();
        let auth = |h: &[(String, String)]| {
            h.iter()
                .find(|(k, _)| k == "authorization")
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert!(
            auth(&a).starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/sts/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature="
            ),
            "{}",
            auth(&a)
        );
        assert_ne!(auth(&a), auth(&b));
        assert!(
            a.iter()
                .any(|(k, v)| k == "x-amz-date" && v == "20150830T123600Z")
        );
    }

    #[test]
    fn reads_credentials_from_the_xml_answer() {
        let body = r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult><AssumedRoleUser><Arn>arn:aws:sts::1:assumed-role/uploader/mg.alice</Arn><AssumedRoleId>x</AssumedRoleId></AssumedRoleUser>
    <Credentials><AccessKeyId>ASIAEXAMPLE</AccessKeyId><SecretAccessKey>secret/+=</SecretAccessKey>
      <SessionToken>token&amp;more</SessionToken><Expiration>2030-01-01T01:00:00Z</Expiration></Credentials>
    <PackedPolicySize>6</PackedPolicySize></AssumeRoleResult>
  <ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata></AssumeRoleResponse>"#;
        let Attempt::Done(Ok(c)) = outcome(200, body) else {
            panic!("not credentials")
        };
        assert_eq!(c.access_key_id, "ASIAEXAMPLE");
        assert_eq!(c.access_key_secret.expose_secret(), "secret/+=");
        assert_eq!(c.security_token.expose_secret(), "token&more");
        assert_eq!(c.expiration.to_rfc3339(), "2030-01-01T01:00:00+00:00");
    }

    #[test]
    fn classifies_errors() {
        let aws = r#"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not allowed</Message></Error><RequestId>r-2</RequestId></ErrorResponse>"#;
        match outcome(403, aws) {
            Attempt::Done(Err(StsError::Rejected {
                code,
                message,
                request_id,
            })) => {
                assert_eq!(
                    (code.as_str(), message.as_str(), request_id.as_str()),
                    ("AccessDenied", "not allowed", "r-2")
                );
            }
            _ => panic!("AccessDenied must be a rejection"),
        }
        let rgw = r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidArgument</Code><RequestId>tx-1</RequestId></Error>"#;
        assert!(matches!(
            outcome(400, rgw),
            Attempt::Done(Err(StsError::Rejected { code, .. })) if code == "InvalidArgument"
        ));
        let throttled = r#"<ErrorResponse><Error><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>"#;
        assert!(matches!(outcome(400, throttled), Attempt::Retry(_)));
        assert!(matches!(outcome(503, "upstream down"), Attempt::Retry(_)));
        assert!(matches!(
            outcome(404, "<html>"),
            Attempt::Done(Err(StsError::Rejected { code, .. })) if code == "HTTP404"
        ));
        assert!(matches!(outcome(200, "<nope/>"), Attempt::Retry(_)));
    }
}
