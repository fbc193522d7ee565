//! Signers playing OSS (upload callbacks) and MNS (pushed OSS events) for the integration
//! tests. The signed content comes from `mediagate::notifications`, so it is defined in one place;
//! only the private-key half lives here. Pin `key_url`/`public_pem` or `cert_url`/`cert_pem`
//! in `NotificationsConfig` so the app trusts them without fetching.

use std::str::FromStr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use md5::Md5;
use mediagate::notifications::{mns, oss};
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use sha1::{Digest, Sha1};
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::der::EncodePem;
use x509_cert::der::asn1::UtcTime;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::{Time, Validity};

/// Signs OSS upload callbacks with its own key, published (in the test) at `key_url`.
pub struct OssSigner {
    pub key_url: String,
    /// The public key as SPKI PEM (`BEGIN PUBLIC KEY`), like OSS publishes it.
    pub public_pem: String,
    private: RsaPrivateKey,
}

impl OssSigner {
    pub fn new(key_url: &str) -> OssSigner {
        let private = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).expect("RSA keygen");
        let public_pem = private
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("encode public key");
        OssSigner {
            key_url: key_url.to_owned(),
            public_pem,
            private,
        }
    }

    /// The `authorization` and `x-oss-pub-key-url` headers OSS sends with a callback to
    /// `raw_path` (as sent on the wire, still percent-encoded) `?raw_query` carrying `body`.
    pub fn sign(&self, raw_path: &str, raw_query: Option<&str>, body: &[u8]) -> (String, String) {
        let signed = oss::callback_string_to_sign(raw_path, raw_query, body);
        let signature = self
            .private
            .sign(Pkcs1v15Sign::new::<Md5>(), &Md5::digest(&signed))
            .expect("sign callback");
        (B64.encode(signature), B64.encode(&self.key_url))
    }
}

/// Signs MNS pushes with its own key and a self-signed certificate published (in the test) at
/// `cert_url`. Like the real MNS certificate, it expired long ago.
pub struct MnsSigner {
    pub cert_url: String,
    pub cert_pem: String,
    private: RsaPrivateKey,
}

impl MnsSigner {
    pub fn new(cert_url: &str) -> MnsSigner {
        let private = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).expect("RSA keygen");
        let signer = SigningKey::<sha2::Sha256>::new(private.clone());
        let spki =
            SubjectPublicKeyInfoOwned::from_key(private.to_public_key()).expect("encode key");
        let utc = |unix_seconds: u64| {
            Time::UtcTime(
                UtcTime::from_unix_duration(Duration::from_secs(unix_seconds)).expect("UTC time"),
            )
        };
        // 2015-07-02 .. 2016-07-01, the validity of the certificate MNS still signs with.
        let validity = Validity {
            not_before: utc(1_435_802_776),
            not_after: utc(1_467_338_776),
        };
        let cert_pem = CertificateBuilder::new(
            Profile::Root,
            SerialNumber::from(1u32),
            validity,
            Name::from_str("CN=notify,OU=Mns,O=mediagate tests").expect("subject"),
            spki,
            &signer,
        )
        .expect("certificate builder")
        .build::<rsa::pkcs1v15::Signature>()
        .expect("self-signed certificate")
        .to_pem(LineEnding::LF)
        .expect("encode certificate");
        MnsSigner {
            cert_url: cert_url.to_owned(),
            cert_pem,
            private,
        }
    }

    /// Every header of a push of `body_b64` (the base64 message MNS sends as the body) to
    /// `path_and_query`, signed for `date` (an HTTP date such as
    /// `Wed, 25 Nov 2026 08:00:00 GMT`): `Authorization`, `Content-MD5`, `Content-Type`,
    /// `Date`, `x-mns-request-id`, `x-mns-signing-cert-url` and `x-mns-version`.
    pub fn headers(
        &self,
        path_and_query: &str,
        body_b64: &str,
        date: &str,
    ) -> Vec<(String, String)> {
        self.headers_from(
            super::MNS_ACCOUNT_ID,
            "mediagate-uploads",
            path_and_query,
            body_b64,
            date,
        )
    }

    /// The same, for a push from `topic` of the account `owner` (MNS signs the topic owner and
    /// name like every `x-mns-*` header).
    pub fn headers_from(
        &self,
        owner: &str,
        topic: &str,
        path_and_query: &str,
        body_b64: &str,
        date: &str,
    ) -> Vec<(String, String)> {
        // As captured from real pushes: the plain-text type of a raw ("SIMPLIFIED") message
        // body.
        let headers = self.push_headers(owner, topic, body_b64, "text/plain;charset=utf-8", date);
        self.signed(headers, path_and_query)
    }

    /// The body and every header of a push of the MPS workflow `message` in `format` from the
    /// operator's topic `topic` to `path_and_query`, signed for `date` (docs/protocols.md §9):
    /// the message as JSON text, inside the `<Notification>` or JSON envelope for those
    /// formats, with the `x-mns-message-id` header MNS adds.
    pub fn mps_push(
        &self,
        format: PushFormat,
        topic: &str,
        message: &serde_json::Value,
        path_and_query: &str,
        date: &str,
    ) -> (String, Vec<(String, String)>) {
        let owner = super::MNS_ACCOUNT_ID;
        let text = message.to_string();
        let message_id = format!(
            "{}-1-19A0B1C2D3E-200000001",
            uuid::Uuid::new_v4().simple().to_string()[..16].to_uppercase()
        );
        let md5 = hex::encode_upper(Md5::digest(text.as_bytes()));
        let publish_time = chrono::Utc::now().timestamp_millis().to_string();
        let (body, content_type) = match format {
            PushFormat::Simplified => (text, "text/plain;charset=utf-8"),
            PushFormat::Json => (
                serde_json::json!({
                    "TopicOwner": owner, "TopicName": topic, "Subscriber": owner,
                    "SubscriptionName": "mediagate", "MessageId": message_id,
                    "Message": text, "MessageMD5": md5, "PublishTime": publish_time,
                })
                .to_string(),
                "application/json;charset=utf-8",
            ),
            PushFormat::Xml => {
                let escaped = text
                    .replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;")
                    .replace('"', "&quot;");
                (
                    format!(
                        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
                         <Notification xmlns=\"http://mns.aliyuncs.com/doc/v1/\">\
                         <TopicOwner>{owner}</TopicOwner><TopicName>{topic}</TopicName>\
                         <Subscriber>{owner}</Subscriber><SubscriptionName>mediagate</SubscriptionName>\
                         <MessageId>{message_id}</MessageId><MessageMD5>{md5}</MessageMD5>\
                         <Message>{escaped}</Message><PublishTime>{publish_time}</PublishTime>\
                         </Notification>"
                    ),
                    "text/xml;charset=utf-8",
                )
            }
        };
        let mut headers = self.push_headers(owner, topic, &body, content_type, date);
        headers.push(("x-mns-message-id".to_owned(), message_id));
        (body, self.signed(headers, path_and_query))
    }

    /// The headers of a push of `body` with `content_type`, before signing.
    fn push_headers(
        &self,
        owner: &str,
        topic: &str,
        body: &str,
        content_type: &str,
        date: &str,
    ) -> Vec<(String, String)> {
        // As captured from real pushes: the MD5 as upper-case hex.
        let content_md5 = hex::encode_upper(Md5::digest(body.as_bytes()));
        let request_id = uuid::Uuid::new_v4().simple().to_string().to_uppercase()[..24].to_owned();
        vec![
            ("Content-MD5".to_owned(), content_md5),
            ("Content-Type".to_owned(), content_type.to_owned()),
            ("Date".to_owned(), date.to_owned()),
            ("x-mns-request-id".to_owned(), request_id),
            (
                "x-mns-signing-cert-url".to_owned(),
                B64.encode(&self.cert_url),
            ),
            ("x-mns-version".to_owned(), "2015-06-06".to_owned()),
            ("x-mns-topic-owner".to_owned(), owner.to_owned()),
            ("x-mns-topic-name".to_owned(), topic.to_owned()),
        ]
    }

    /// `headers` (Content-MD5, Content-Type, Date and the `x-mns-*` ones) of a push to
    /// `path_and_query`, with the `Authorization` MNS signs them with first.
    fn signed(
        &self,
        mut headers: Vec<(String, String)>,
        path_and_query: &str,
    ) -> Vec<(String, String)> {
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map_or("", |(_, v)| v.as_str())
        };
        let string_to_sign = mns::string_to_sign(
            "POST",
            get("content-md5"),
            get("content-type"),
            get("date"),
            &headers,
            path_and_query,
        );
        let signature = self
            .private
            .sign(
                Pkcs1v15Sign::new::<Sha1>(),
                &Sha1::digest(string_to_sign.as_bytes()),
            )
            .expect("sign push");
        headers.insert(0, ("Authorization".to_owned(), B64.encode(signature)));
        headers
    }
}

/// An MNS subscription's `NotifyContentFormat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushFormat {
    Xml,
    Json,
    Simplified,
}
