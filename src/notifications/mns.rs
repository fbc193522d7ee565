//! MNS pushes of OSS events and of MPS workflow messages: how MNS signs them (RSA PKCS#1 v1.5
//! over SHA-1 with the key of an X.509 certificate, see docs/protocols.md §5), the freshness
//! rule for their `Date`, and their bodies (§5, §9). Pure functions; the certificate itself
//! comes from [`super::keys`].

use crate::kinds::EventSource;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, TimeDelta, Utc};
use openssl::hash::MessageDigest;

use super::public_key::PublicKey;
pub use super::public_key::SignatureError;
use super::{NotificationError, Parsed};
use crate::processing::ObjectEvent;
use serde::Deserialize;

/// How far a push's `Date` may be from our clock, either way.
pub const MAX_CLOCK_SKEW: TimeDelta = TimeDelta::minutes(15);

/// StringToSign of an MNS push: `METHOD\nContent-MD5\nContent-Type\nDate\n`, then every
/// `x-mns-*` header of `headers` (the request's headers, any others are skipped) with its name
/// lowercased, sorted by name, as `name:value\n`, then the path with its query.
pub fn string_to_sign(
    method: &str,
    content_md5: &str,
    content_type: &str,
    date: &str,
    headers: &[(String, String)],
    path_and_query: &str,
) -> String {
    let mut mns_headers: Vec<(String, &str)> = headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.as_str()))
        .filter(|(name, _)| name.starts_with("x-mns-"))
        .collect();
    mns_headers.sort();
    let mut out = format!("{method}\n{content_md5}\n{content_type}\n{date}\n");
    for (name, value) in mns_headers {
        out.push_str(&name);
        out.push(':');
        out.push_str(value);
        out.push('\n');
    }
    out.push_str(path_and_query);
    out
}

/// Checks the `Authorization` header of an MNS push (base64 of an RSA PKCS#1 v1.5 signature
/// over SHA-1 of `string_to_sign`). Fails on a header that is not base64 or on any mismatch.
pub fn verify(
    key: &PublicKey,
    authorization_b64: &str,
    string_to_sign: &str,
) -> Result<(), SignatureError> {
    let signature = B64
        .decode(authorization_b64.trim())
        .map_err(|_| SignatureError::Malformed("Authorization is not base64"))?;
    key.verify(MessageDigest::sha1(), string_to_sign.as_bytes(), &signature)
}

/// Accepts an HTTP/RFC 2822 date (`Wed, 25 Nov 2026 08:00:00 GMT`) within
/// [`MAX_CLOCK_SKEW`] of `now`, which bounds how long a captured push can be replayed.
pub fn check_date(date_header: &str, now: DateTime<Utc>) -> Result<(), SignatureError> {
    let date = DateTime::parse_from_rfc2822(date_header.trim())
        .map_err(|_| SignatureError::Malformed("Date is not an HTTP date"))?;
    let skew = now.signed_duration_since(date);
    if skew > MAX_CLOCK_SKEW || skew < -MAX_CLOCK_SKEW {
        return Err(SignatureError::StaleDate);
    }
    Ok(())
}

/// The object-created events of a verified push body (base64 of `{"events": [...]}`);
/// multipart steps and other events are counted as ignored, symlinks kept as such.
pub fn oss_events(body: &[u8]) -> Result<Parsed, NotificationError> {
    let malformed = |m: &str| NotificationError::Malformed(m.to_owned());
    let text = std::str::from_utf8(body).map_err(|_| malformed("body is not base64 text"))?;
    let decoded = B64
        .decode(text.trim())
        .map_err(|_| malformed("body is not valid base64"))?;
    let message: OssEventMessage = serde_json::from_slice(&decoded)
        .map_err(|e| NotificationError::Malformed(format!("malformed event JSON: {e}")))?;
    let mut parsed = Parsed::default();
    for event in message.events {
        let symlink = event.event_name == OSS_SYMLINK;
        let Some(oss) = event
            .oss
            .filter(|_| symlink || OSS_CREATED.contains(&event.event_name.as_str()))
        else {
            parsed.ignored += 1;
            continue;
        };
        let vars = event.x_vars.unwrap_or_default();
        parsed.events.push(ObjectEvent {
            source: EventSource::OssEvents,
            bucket: oss.bucket.name,
            key: percent_decode(&oss.object.key),
            etag: oss.object.etag.unwrap_or_default(),
            size: oss.object.size,
            content_type: None,
            symlink,
            upload_hint: vars.get("x:upload_id").cloned(),
            media_overrides: super::overrides(|k| vars.get(&format!("x:{k}")).cloned()),
        });
    }
    Ok(parsed)
}

/// What an MPS workflow message points at: the run to look at now. A hint only: what became
/// of the run is read from MPS, never taken from the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpsHint {
    pub run_id: String,
    /// The run's MediaId, when the message names one.
    pub media_id: Option<String>,
    /// The publishing topic, from the XML or JSON envelope (`TopicName`); a SIMPLIFIED body
    /// has none (the push's `x-mns-topic-name` names it, see [`super::mps_hint`]).
    pub topic: Option<String>,
}

/// The MPS workflow message of a verified MNS push body in any of the subscription's formats
/// (docs/protocols.md §9): XML (`<Notification>` with `TopicName` and `Message`), JSON (the
/// same fields in an object) or SIMPLIFIED (the body is the message). The message is JSON,
/// or Base64 of it; its run is `RunId`, else `MediaWorkflowExecution.RunId`. Fails as
/// [`NotificationError::Malformed`] when the body is none of these or names no run (a RunId
/// is 1-128 of `A-Z a-z 0-9 - _`; a MediaId that is not is left out).
pub fn mps_message(body: &[u8]) -> Result<MpsHint, NotificationError> {
    let malformed = |m: &str| NotificationError::Malformed(m.to_owned());
    let text = std::str::from_utf8(body).map_err(|_| malformed("body is not UTF-8 text"))?;
    let text = text.trim_start_matches('\u{feff}').trim();
    let (message, topic) = if text.starts_with('<') {
        let envelope: XmlEnvelope = quick_xml::de::from_str(text)
            .map_err(|_| malformed("body is not an MNS XML notification"))?;
        (message_json(&envelope.message)?, envelope.topic_name)
    } else {
        let value = message_json(text)?;
        match json_envelope(&value) {
            Some((message, topic)) => (message_json(message)?, topic),
            None => (value, None),
        }
    };
    let execution = &message["MediaWorkflowExecution"];
    let run_id = message["RunId"]
        .as_str()
        .or(execution["RunId"].as_str())
        .filter(|id| is_mps_id(id))
        .ok_or_else(|| malformed("the MPS message names no RunId"))?;
    let media_id = message["MediaId"]
        .as_str()
        .or(execution["MediaId"].as_str())
        .filter(|id| is_mps_id(id));
    Ok(MpsHint {
        run_id: run_id.to_owned(),
        media_id: media_id.map(str::to_owned),
        topic: topic.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()),
    })
}

/// A JSON object from `text`, or from the Base64 `text` stands for.
fn message_json(text: &str) -> Result<serde_json::Value, NotificationError> {
    let text = text.trim();
    let value = serde_json::from_str(text).ok().or_else(|| {
        let decoded = B64.decode(text).ok()?;
        serde_json::from_slice(&decoded).ok()
    });
    value.filter(serde_json::Value::is_object).ok_or_else(|| {
        NotificationError::Malformed("the message is not JSON or Base64 JSON".into())
    })
}

/// The message and topic of a JSON envelope: an object with a string `Message` and a
/// `MessageId` that is not itself an MPS message (those carry `RunId` or
/// `MediaWorkflowExecution`, and a failed activity's message has a `Message` of its own).
fn json_envelope(value: &serde_json::Value) -> Option<(&str, Option<String>)> {
    if value.get("RunId").is_some()
        || value.get("MediaWorkflowExecution").is_some()
        || value.get("MessageId").is_none()
    {
        return None;
    }
    let message = value["Message"].as_str()?;
    Some((message, value["TopicName"].as_str().map(str::to_owned)))
}

fn is_mps_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `<Notification>` of an XML push; its other fields (`TopicOwner`, `MessageId`,
/// `MessageMD5`, `PublishTime`, ...) are not needed: the signed headers carry the owner.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct XmlEnvelope {
    topic_name: Option<String>,
    message: String,
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rsa::pkcs1v15::SigningKey;
    use rsa::pkcs8::EncodePublicKey;
    use rsa::{Pkcs1v15Sign, RsaPrivateKey};
    use sha1::{Digest, Sha1};
    use std::str::FromStr;
    use std::time::Duration;
    use x509_cert::builder::{Builder, CertificateBuilder, Profile};
    use x509_cert::der::EncodePem;
    use x509_cert::der::pem::LineEnding;
    use x509_cert::name::Name;
    use x509_cert::serial_number::SerialNumber;
    use x509_cert::spki::SubjectPublicKeyInfoOwned;
    use x509_cert::time::Validity;

    const PATH: &str = "/v1/notifications/mns?topic=uploads";
    const DATE: &str = "Wed, 25 Nov 2026 08:00:00 GMT";

    /// `private`'s public key as the server holds it.
    pub(crate) fn public_key_of(private: &RsaPrivateKey) -> PublicKey {
        let pem = private.to_public_key().to_public_key_pem(LineEnding::LF);
        PublicKey::from_pem(&pem.unwrap()).unwrap()
    }

    /// A self-signed certificate for a fresh key, valid for one hour from now.
    pub(crate) fn self_signed() -> (RsaPrivateKey, String) {
        let private = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap();
        let signer = SigningKey::<sha2::Sha256>::new(private.clone());
        let spki = SubjectPublicKeyInfoOwned::from_key(private.to_public_key()).unwrap();
        let cert = CertificateBuilder::new(
            Profile::Root,
            SerialNumber::from(1u32),
            Validity::from_now(Duration::from_secs(3600)).unwrap(),
            Name::from_str("CN=mns test").unwrap(),
            spki,
            &signer,
        )
        .unwrap()
        .build::<rsa::pkcs1v15::Signature>()
        .unwrap();
        (private, cert.to_pem(LineEnding::LF).unwrap())
    }

    fn sign(private: &RsaPrivateKey, string_to_sign: &str) -> String {
        B64.encode(
            private
                .sign(
                    Pkcs1v15Sign::new::<Sha1>(),
                    &Sha1::digest(string_to_sign.as_bytes()),
                )
                .unwrap(),
        )
    }

    fn h(name: &str, value: &str) -> (String, String) {
        (name.to_owned(), value.to_owned())
    }

    fn push_headers() -> Vec<(String, String)> {
        vec![
            h("Host", "uploads.example.com"),
            h("x-mns-version", "2015-06-06"),
            h("X-MNS-Signing-Cert-URL", "aHR0cHM6Ly9leGFtcGxlLw=="),
            h("x-mns-request-id", "5C3D1A2B"),
            h("Content-Length", "42"),
        ]
    }

    fn sts(headers: &[(String, String)], path: &str) -> String {
        string_to_sign(
            "POST",
            "1B2M2Y8AsgTpgAmY7PhCfg==",
            "text/xml;charset=utf-8",
            DATE,
            headers,
            path,
        )
    }

    #[test]
    fn string_to_sign_keeps_only_x_mns_headers_lowercased_and_sorted() {
        assert_eq!(
            sts(&push_headers(), PATH),
            "POST\n1B2M2Y8AsgTpgAmY7PhCfg==\ntext/xml;charset=utf-8\n\
             Wed, 25 Nov 2026 08:00:00 GMT\n\
             x-mns-request-id:5C3D1A2B\n\
             x-mns-signing-cert-url:aHR0cHM6Ly9leGFtcGxlLw==\n\
             x-mns-version:2015-06-06\n\
             /v1/notifications/mns?topic=uploads"
        );
        assert_eq!(
            string_to_sign("POST", "", "", DATE, &[], "/"),
            format!("POST\n\n\n{DATE}\n/")
        );
    }

    #[test]
    fn certificate_key_signs_and_verifies() {
        let (private, cert_pem) = self_signed();
        let key = PublicKey::from_cert_pem(&cert_pem).unwrap();
        assert_eq!(key, public_key_of(&private));
        // Surrounding whitespace, as a fetched file may have, is fine.
        assert_eq!(
            PublicKey::from_cert_pem(&format!("\n{cert_pem}\n\n")).unwrap(),
            key
        );
        let signed = sts(&push_headers(), PATH);
        verify(&key, &sign(&private, &signed), &signed).unwrap();
    }

    #[test]
    fn tampering_fails_verification() {
        let (private, cert_pem) = self_signed();
        let key = PublicKey::from_cert_pem(&cert_pem).unwrap();
        let headers = push_headers();
        let auth = sign(&private, &sts(&headers, PATH));

        let mut tampered = vec![
            string_to_sign(
                "POST",
                "AAAAAAAAAAAAAAAAAAAAAA==",
                "text/xml;charset=utf-8",
                DATE,
                &headers,
                PATH,
            ),
            string_to_sign(
                "POST",
                "1B2M2Y8AsgTpgAmY7PhCfg==",
                "application/json",
                DATE,
                &headers,
                PATH,
            ),
            string_to_sign(
                "POST",
                "1B2M2Y8AsgTpgAmY7PhCfg==",
                "text/xml;charset=utf-8",
                "Wed, 25 Nov 2026 08:00:01 GMT",
                &headers,
                PATH,
            ),
            string_to_sign(
                "PUT",
                "1B2M2Y8AsgTpgAmY7PhCfg==",
                "text/xml;charset=utf-8",
                DATE,
                &headers,
                PATH,
            ),
            sts(&headers, "/v1/notifications/mns?topic=other"),
            sts(&headers, "/v1/notifications/mns"),
        ];
        let mut changed = headers.clone();
        changed[3].1 = "5C3D1A2C".into();
        tampered.push(sts(&changed, PATH));
        let mut added = headers.clone();
        added.push(h("x-mns-extra", "1"));
        tampered.push(sts(&added, PATH));
        tampered.push(sts(&headers[..2], PATH));

        for signed in &tampered {
            assert!(
                matches!(verify(&key, &auth, signed), Err(SignatureError::Mismatch)),
                "verified although changed: {signed:?}"
            );
        }
        // Headers other than x-mns-* are not signed.
        let mut other = headers.clone();
        other.push(h("X-Forwarded-For", "10.0.0.1"));
        verify(&key, &auth, &sts(&other, PATH)).unwrap();
        assert!(matches!(
            verify(&key, "%%%", &sts(&headers, PATH)),
            Err(SignatureError::Malformed(_))
        ));
    }

    #[test]
    fn non_certificates_are_bad_keys() {
        let (private, _) = self_signed();
        let public_pem = private
            .to_public_key()
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap();
        for bad in [
            "",
            "junk",
            &public_pem,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ] {
            assert!(matches!(
                PublicKey::from_cert_pem(bad),
                Err(SignatureError::BadKey(_))
            ));
        }
    }

    #[test]
    fn expired_certificates_are_still_accepted() {
        // The validity period is not checked: build one that ended in 2001.
        let private = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap();
        let signer = SigningKey::<sha2::Sha256>::new(private.clone());
        let spki = SubjectPublicKeyInfoOwned::from_key(private.to_public_key()).unwrap();
        let validity = Validity {
            not_before: x509_cert::time::Time::UtcTime(
                x509_cert::der::asn1::UtcTime::from_unix_duration(Duration::from_secs(946_684_800))
                    .unwrap(),
            ),
            not_after: x509_cert::time::Time::UtcTime(
                x509_cert::der::asn1::UtcTime::from_unix_duration(Duration::from_secs(978_307_200))
                    .unwrap(),
            ),
        };
        let cert = CertificateBuilder::new(
            Profile::Root,
            SerialNumber::from(7u32),
            validity,
            Name::from_str("CN=expired").unwrap(),
            spki,
            &signer,
        )
        .unwrap()
        .build::<rsa::pkcs1v15::Signature>()
        .unwrap();
        let pem = cert.to_pem(LineEnding::LF).unwrap();
        assert_eq!(
            PublicKey::from_cert_pem(&pem).unwrap(),
            public_key_of(&private)
        );
    }

    /// A workflow message as MPS sends it after the Report activity (docs/protocols.md §9).
    fn mps_report_message() -> serde_json::Value {
        serde_json::json!({
            "RunId": "fb5ccdf6a8f3462a8a6f5f4e9e8b1d3e",
            "Name": "Act-Report",
            "Type": "Report",
            "State": "Success",
            "MediaWorkflowExecution": {
                "MediaWorkflowId": "43c3d2a0f7c84b9f9f0d9c8a7b6e5d4c",
                "Name": "transcode-hd",
                "RunId": "fb5ccdf6a8f3462a8a6f5f4e9e8b1d3e",
                "MediaId": "3d3e2e3c4b5a69788796a5b4c3d2e1f0",
                "Input": {"InputFile": {"Bucket": "media-input", "Location": "oss-cn-hangzhou", "Object": "uploads/a.mp4"}},
                "State": "Completed",
                "ActivityList": [
                    {"Name": "Act-Start", "Type": "Start", "State": "Success"},
                    {"Name": "Act-SD", "Type": "Transcode", "State": "Fail", "Code": "InvalidParameter.ResourceContentBad", "Message": "bad"},
                    {"Name": "Act-Report", "Type": "Report", "State": "Success"}
                ],
                "CreationTime": "2016-04-01T06:53:43Z"
            }
        })
    }

    fn report_hint(topic: Option<&str>) -> MpsHint {
        MpsHint {
            run_id: "fb5ccdf6a8f3462a8a6f5f4e9e8b1d3e".into(),
            media_id: Some("3d3e2e3c4b5a69788796a5b4c3d2e1f0".into()),
            topic: topic.map(str::to_owned),
        }
    }

    fn xml_escape(text: &str) -> String {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    }

    #[test]
    fn mps_messages_are_read_in_every_push_format() {
        let message = mps_report_message().to_string();
        let base64 = B64.encode(&message);
        for m in [&message, &base64] {
            // SIMPLIFIED: the body is the message.
            assert_eq!(mps_message(m.as_bytes()).unwrap(), report_hint(None), "{m}");
            let json = serde_json::json!({
                "TopicOwner": "1234567890123456", "TopicName": "mps-outcomes",
                "Subscriber": "1234567890123456", "SubscriptionName": "mediagate",
                "MessageId": "C39FB8C345BBFBA8-1-1687AF2F8C2-200000002", "Message": m,
                "MessageMD5": "A8ED7E4FC2A1DD1B94DC9B7E6E24C4F5", "PublishTime": "1548323590000"
            });
            assert_eq!(
                mps_message(json.to_string().as_bytes()).unwrap(),
                report_hint(Some("mps-outcomes"))
            );
            let xml = format!(
                "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Notification xmlns=\"http://mns.aliyuncs.com/doc/v1/\">\
                 <TopicOwner>1234567890123456</TopicOwner><TopicName>mps-outcomes</TopicName>\
                 <Subscriber>1234567890123456</Subscriber><SubscriptionName>mediagate</SubscriptionName>\
                 <MessageId>C39FB8C345BBFBA8-1-1687AF2F8C2-200000002</MessageId>\
                 <MessageMD5>A8ED7E4FC2A1DD1B94DC9B7E6E24C4F5</MessageMD5>\
                 <Message>{}</Message><PublishTime>1548323590000</PublishTime></Notification>",
                xml_escape(m)
            );
            assert_eq!(
                mps_message(xml.as_bytes()).unwrap(),
                report_hint(Some("mps-outcomes"))
            );
        }
        let cdata = format!(
            "<Notification><TopicName>t</TopicName><Message><![CDATA[{message}]]></Message></Notification>"
        );
        assert_eq!(
            mps_message(cdata.as_bytes()).unwrap(),
            report_hint(Some("t"))
        );
    }

    #[test]
    fn mps_messages_name_their_run_at_the_top_or_in_the_execution() {
        let read = |v: serde_json::Value| mps_message(v.to_string().as_bytes());
        // The Start message of a run OSS started: no UserData, only the execution's RunId.
        let start = serde_json::json!({"Name": "Act-Start", "Type": "Start", "State": "Success",
            "MediaWorkflowExecution": {"RunId": "r-1", "State": "Running", "ActivityList": []}});
        assert_eq!(
            read(start).unwrap(),
            MpsHint {
                run_id: "r-1".into(),
                media_id: None,
                topic: None
            }
        );
        // A failed activity's message has a Message of its own: still the message itself.
        let failed = serde_json::json!({"RunId": "r-2", "MediaId": "m_2", "State": "Fail",
            "Code": "InternalError", "Message": "x", "MessageId": "not an envelope"});
        assert_eq!(
            read(failed).unwrap(),
            MpsHint {
                run_id: "r-2".into(),
                media_id: Some("m_2".into()),
                topic: None
            }
        );
        // A MediaId that is no id is left out.
        let odd = serde_json::json!({"RunId": "r-3", "MediaId": "../m"});
        assert_eq!(read(odd).unwrap().media_id, None);
    }

    #[test]
    fn bodies_without_a_run_are_malformed() {
        let long = format!(r#"{{"RunId": "{}"}}"#, "a".repeat(129));
        for body in [
            "",
            "   ",
            "not base64 !",
            "[]",
            "42",
            r#""eyJSdW5JZCI6InIifQ==""#,
            r#"{"Name": "Act-Start"}"#,
            r#"{"RunId": 42}"#,
            r#"{"RunId": ""}"#,
            r#"{"RunId": "a,b"}"#,
            r#"{"RunId": "a b"}"#,
            &long,
            r#"{"MessageId": "1", "TopicName": "t", "Message": "not json"}"#,
            r#"{"MessageId": "1", "TopicName": "t", "Message": "{\"Name\": \"x\"}"}"#,
            "<Notification><TopicName>t</TopicName></Notification>",
            "<Notification><Message>{\"RunId\"</Message>",
            "<html>",
        ] {
            assert!(
                matches!(
                    mps_message(body.as_bytes()),
                    Err(NotificationError::Malformed(_))
                ),
                "{body}"
            );
        }
        assert!(matches!(
            mps_message(&[0xff, 0xfe]),
            Err(NotificationError::Malformed(_))
        ));
    }

    #[test]
    fn event_keys_are_percent_decoded_and_plus_stays() {
        assert_eq!(percent_decode("dir/a%20b+c.mp4"), "dir/a b+c.mp4");
        assert_eq!(percent_decode("bad%zz%4"), "bad%zz%4");
        assert_eq!(percent_decode("%E8%A7%86.mp4"), "视.mp4");
    }

    #[test]
    fn dates_within_fifteen_minutes_are_accepted() {
        let now = DateTime::parse_from_rfc2822(DATE).unwrap().to_utc();
        for offset in [0, 60, 15 * 60, -15 * 60, -60] {
            check_date(DATE, now + TimeDelta::seconds(offset)).unwrap();
        }
        check_date("Wed, 25 Nov 2026 16:00:00 +0800", now).unwrap();
        for offset in [15 * 60 + 1, -15 * 60 - 1, 86_400, -86_400] {
            assert!(matches!(
                check_date(DATE, now + TimeDelta::seconds(offset)),
                Err(SignatureError::StaleDate)
            ));
        }
        for bad in [
            "",
            "yesterday",
            "2026-11-25T08:00:00Z",
            "Wed, 25 Nov 2026 25:00:00 GMT",
        ] {
            assert!(matches!(
                check_date(bad, now),
                Err(SignatureError::Malformed(_))
            ));
        }
    }
}
