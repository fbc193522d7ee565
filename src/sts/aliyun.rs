//! Alibaba Cloud STS `AssumeRole` over the RPC API (signature v1, HMAC-SHA1), sent as POST
//! with the parameters in the query string, as the official SDKs do.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tracing::instrument;

use super::StsConfig;
use super::{AssumeRole, Attempt, Credentials, Sts, StsError, http_client, with_retries};
use crate::signing::{RpcCall, rpc_signed_query};
use crate::upstream::without_url;

pub struct AliyunSts {
    http: reqwest::Client,
    endpoint: String,
    access_key_id: String,
    access_key_secret: SecretString,
    role_arn: String,
    external_id: Option<String>,
    max_attempts: u32,
}

impl AliyunSts {
    /// A client for the STS at `endpoint` with the keys and role of `config`.
    pub fn new(config: &StsConfig, endpoint: &str) -> anyhow::Result<Self> {
        Ok(Self {
            http: http_client(config.timeout_ms)?,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            access_key_id: config.access_key_id.clone(),
            access_key_secret: config.access_key_secret.clone(),
            role_arn: config.role_arn.clone(),
            external_id: config.external_id.clone(),
            max_attempts: config.max_attempts.max(1),
        })
    }

    /// The signed URL for one attempt; nonce and timestamp are fresh each time.
    fn signed_url(&self, request: &AssumeRole, nonce: &str, timestamp: &str) -> String {
        let duration = request.duration_seconds.to_string();
        let mut params = vec![
            ("RoleArn", self.role_arn.as_str()),
            ("RoleSessionName", request.role_session_name.as_str()),
            ("Policy", request.policy.as_str()),
            ("DurationSeconds", duration.as_str()),
        ];
        if let Some(external_id) = &self.external_id {
            params.push(("ExternalId", external_id.as_str()));
        }
        let call = RpcCall {
            action: "AssumeRole",
            version: "2015-04-01",
            access_key_id: &self.access_key_id,
            nonce,
            timestamp,
        };
        let query = rpc_signed_query(
            &call,
            self.access_key_secret.expose_secret(),
            "POST",
            params,
        );
        format!("{}/?{query}", self.endpoint)
    }

    async fn attempt(&self, request: &AssumeRole) -> Attempt {
        let nonce = uuid::Uuid::new_v4().to_string();
        let timestamp = Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let url = self.signed_url(request, &nonce, &timestamp);
        let response = match self.http.post(url).send().await {
            Ok(r) => r,
            Err(e) => return Attempt::Retry(format!("request failed: {}", without_url(&e))),
        };
        let status = response.status();
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => return Attempt::Retry(format!("reading response: {}", without_url(&e))),
        };
        if status.is_success() {
            return match serde_json::from_slice::<SuccessBody>(&body) {
                Ok(ok) => Attempt::Done(Ok(ok.credentials.into_credentials())),
                Err(e) => Attempt::Retry(format!("unreadable success response ({e})")),
            };
        }
        let error: ErrorBody = serde_json::from_slice(&body).unwrap_or_default();
        let retryable = status.is_server_error()
            || error.code.starts_with("Throttling")
            || matches!(error.code.as_str(), "InternalError" | "ServiceUnavailable");
        Attempt::failed(
            status.as_u16(),
            retryable,
            error.code,
            error.message,
            error.request_id,
        )
    }
}

#[async_trait]
impl Sts for AliyunSts {
    #[instrument(skip_all, fields(session = %request.role_session_name))]
    async fn assume_role(&self, request: &AssumeRole) -> Result<Credentials, StsError> {
        with_retries(self.max_attempts, || self.attempt(request)).await
    }
}

#[derive(Deserialize)]
struct SuccessBody {
    #[serde(rename = "Credentials")]
    credentials: CredentialsBody,
}

#[derive(Deserialize)]
struct CredentialsBody {
    #[serde(rename = "AccessKeyId")]
    access_key_id: String,
    #[serde(rename = "AccessKeySecret")]
    access_key_secret: String,
    #[serde(rename = "SecurityToken")]
    security_token: String,
    #[serde(rename = "Expiration")]
    expiration: DateTime<Utc>,
}

impl CredentialsBody {
    fn into_credentials(self) -> Credentials {
        Credentials {
            access_key_id: self.access_key_id,
            access_key_secret: SecretString::from(self.access_key_secret),
            security_token: SecretString::from(self.security_token),
            expiration: self.expiration,
            obtained_at: Utc::now(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ErrorBody {
    #[serde(rename = "Code")]
    code: String,
    #[serde(rename = "Message")]
    message: String,
    #[serde(rename = "RequestId")]
    request_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_url_carries_every_parameter_and_a_verifiable_signature() {
        let config = StsConfig {
            access_key_id: "testid".into(),
            access_key_secret: SecretString::from("testsecret"),
            role_arn: "acs:ram::1234567890123456:role/uploader".into(),
            ..StsConfig::default()
        };
        let sts = AliyunSts::new(&config, "http://127.0.0.1:1/").unwrap();
        let request = AssumeRole {
            role_session_name: "mg.alice".into(),
            policy: r#"{"Version":"1"}"#.into(),
            duration_seconds: 3600,
        };
        let url = sts.signed_url(&request, "nonce-1", "2024-01-01T00:00:00Z");
        let parsed = url::Url::parse(&url).unwrap();
        let params: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
        let signature = params
            .iter()
            .find(|(k, _)| k == "Signature")
            .unwrap()
            .1
            .clone();
        let query = crate::signing::rpc_canonical_query(
            params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        assert_eq!(
            crate::signing::rpc_signature("testsecret", "POST", &query),
            signature
        );
        assert!(url.starts_with("http://127.0.0.1:1/?"));
        assert!(url.contains("Policy=%7B%22Version%22%3A%221%22%7D"));
        assert!(!url.contains('+'));
    }
}
