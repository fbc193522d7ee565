//! The OSS upload callback signature: what OSS signs when it calls us back after an upload,
//! and how we check it (RSA PKCS#1 v1.5 over MD5, see docs/protocols.md §3). Pure functions;
//! the public key itself comes from [`super::keys`].

use crate::kinds::EventSource;
use serde_json::Value;

use super::NotificationError;
use crate::processing::ObjectEvent;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use openssl::hash::MessageDigest;

use super::public_key::PublicKey;
pub use super::public_key::SignatureError;

/// The bytes OSS signs: the percent-decoded path, then `?` and the raw query (only when there is
/// a non-empty query), then `\n` and the raw body.
///
/// The path is decoded `%XX` by `%XX` as bytes (a `+` stays a `+`; a `%` not followed by two
/// hex digits stays as it is), so a key with UTF-8 or `%2F` escapes signs as OSS signed it.
pub fn callback_string_to_sign(raw_path: &str, raw_query: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut out = percent_decode(raw_path);
    if let Some(query) = raw_query.filter(|q| !q.is_empty()) {
        out.push(b'?');
        out.extend_from_slice(query.as_bytes());
    }
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

/// Checks the `authorization` header of an OSS callback (base64 of an RSA PKCS#1 v1.5
/// signature over MD5 of `signed`). Fails on a header that is not base64 or on any mismatch.
pub fn verify_callback(
    key: &PublicKey,
    authorization_b64: &str,
    signed: &[u8],
) -> Result<(), SignatureError> {
    let signature = B64
        .decode(authorization_b64.trim())
        .map_err(|_| SignatureError::Malformed("authorization is not base64"))?;
    key.verify(MessageDigest::md5(), signed, &signature)
}

/// Decodes `%XX` escapes into bytes; everything else, `+` included, is kept as it is.
fn percent_decode(input: &str) -> Vec<u8> {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// The object a verified callback announces: bucket, key, ETag, size and type as the body
/// (templated by the uploading client) states them, the `x:upload_id` hint and `x:` media
/// attributes. JSON or form body, as its content type says.
pub fn callback_event(body: &[u8], is_json: bool) -> Result<ObjectEvent, NotificationError> {
    let fields = callback_fields(body, is_json)?;
    let text = |k: &str| fields.get(k).and_then(field_text);
    let missing = |what: &str| NotificationError::Malformed(format!("callback body has no {what}"));
    Ok(ObjectEvent {
        source: EventSource::OssCallback,
        bucket: text("bucket").ok_or_else(|| missing("bucket"))?,
        key: text("object").ok_or_else(|| missing("object"))?,
        etag: text("etag").unwrap_or_default(),
        size: fields.get("size").and_then(field_number),
        content_type: text("mimeType").filter(|m| !m.is_empty()),
        symlink: false,
        upload_hint: text("upload_id").or_else(|| text("x:upload_id")),
        media_overrides: super::overrides(|k| text(&format!("x:{k}")).or_else(|| text(k))),
    })
}

/// The callback body as a flat map: JSON object, or form fields (OSS URL-encodes the values it
/// substitutes, so form decoding restores them).
fn callback_fields(
    body: &[u8],
    is_json: bool,
) -> Result<serde_json::Map<String, Value>, NotificationError> {
    if is_json {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(NotificationError::Malformed(
                "callback body must be a JSON object".into(),
            )),
            Err(e) => Err(NotificationError::Malformed(format!("malformed JSON: {e}"))),
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

#[cfg(test)]
mod tests {
    use super::*;
    use md5::{Digest, Md5};
    use rsa::pkcs1::EncodeRsaPublicKey;
    use rsa::pkcs8::{DecodePublicKey, EncodePublicKey, LineEnding};
    use rsa::{Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};

    /// TV-CB-1 (docs/protocols.md §3): the published example.
    const TV_KEY: &str = "-----BEGIN PUBLIC KEY-----
MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAKs/JBGzwUB2aVht4crBx3oIPBLNsjGs
C0fTXv+nvlmklvkcolvpvXLTjaxUHR3W9LXxQ2EHXAJfCB+6H2YF1k8CAwEAAQ==
-----END PUBLIC KEY-----
";
    const TV_AUTH: &str =
        "kKQeGTRccDKyHB3H9vF+xYMSrmhMZjzzl2/kdD1ktNVgbWEfYTQG0G2SU/RaHBovRCE8OkQDjC3uG33esH2txA==";
    const TV_BODY: &[u8] = b"bucket=yonghu-test";

    fn tv_key() -> PublicKey {
        PublicKey::from_pem(TV_KEY).unwrap()
    }

    fn sign(private: &RsaPrivateKey, signed: &[u8]) -> String {
        // Signed by the `rsa` crate, checked by OpenSSL: two implementations must agree.
        B64.encode(
            private
                .sign(Pkcs1v15Sign::new::<Md5>(), &Md5::digest(signed))
                .unwrap(),
        )
    }

    #[test]
    fn published_example_verifies() {
        let signed = callback_string_to_sign("/index.php", Some("id=1&index=2"), TV_BODY);
        assert_eq!(signed, b"/index.php?id=1&index=2\nbucket=yonghu-test");
        verify_callback(&tv_key(), TV_AUTH, &signed).unwrap();
    }

    #[test]
    fn published_example_fails_when_anything_changes() {
        let key = tv_key();
        let changed_body =
            callback_string_to_sign("/index.php", Some("id=1&index=2"), b"bucket=yonghu-tesT");
        let crlf = b"/index.php?id=1&index=2\r\nbucket=yonghu-test";
        let other_query = callback_string_to_sign("/index.php", Some("id=1&index=3"), TV_BODY);
        let no_query = callback_string_to_sign("/index.php", None, TV_BODY);
        let other_path = callback_string_to_sign("/index.PHP", Some("id=1&index=2"), TV_BODY);
        for signed in [
            &changed_body[..],
            crlf,
            &other_query,
            &no_query,
            &other_path,
        ] {
            assert!(matches!(
                verify_callback(&key, TV_AUTH, signed),
                Err(SignatureError::Mismatch)
            ));
        }
    }

    #[test]
    fn authorization_that_is_not_base64_is_malformed() {
        let signed = callback_string_to_sign("/index.php", Some("id=1&index=2"), TV_BODY);
        assert!(matches!(
            verify_callback(&tv_key(), "not base64!", &signed),
            Err(SignatureError::Malformed(_))
        ));
        // Valid base64 of the wrong length is a mismatch, not a panic.
        assert!(matches!(
            verify_callback(&tv_key(), "AAAA", &signed),
            Err(SignatureError::Mismatch)
        ));
    }

    #[test]
    fn string_to_sign_decodes_the_path_but_not_the_query() {
        assert_eq!(
            callback_string_to_sign("/a%2Fb/%E4%BD%A0+c%zz%4", Some("x=%2F+y"), b"B"),
            "/a/b/你+c%zz%4?x=%2F+y\nB".as_bytes()
        );
        assert_eq!(callback_string_to_sign("/p", Some(""), b""), b"/p\n");
        assert_eq!(callback_string_to_sign("/p", None, b"x\r\n"), b"/p\nx\r\n");
    }

    #[test]
    fn both_pem_forms_parse_and_garbage_does_not() {
        let key = tv_key();
        let other = RsaPublicKey::from_public_key_pem(TV_KEY).unwrap();
        let pkcs1 = other.to_pkcs1_pem(LineEnding::LF).unwrap();
        assert_eq!(PublicKey::from_pem(&pkcs1).unwrap(), key);
        let spki = other.to_public_key_pem(LineEnding::CRLF).unwrap();
        assert_eq!(PublicKey::from_pem(&spki).unwrap(), key);
        for bad in [
            "",
            "hello",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        ] {
            assert!(matches!(
                PublicKey::from_pem(bad),
                Err(SignatureError::BadKey(_))
            ));
        }
    }

    #[test]
    fn generated_key_round_trips_with_escaped_paths() {
        let private = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap();
        let public = PublicKey::from_pem(
            &private
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .unwrap(),
        )
        .unwrap();
        let body = br#"{"bucket":"b","object":"dir/a b.mp4","size":12}"#;
        let signed = callback_string_to_sign(
            "/v1/notifications/oss-callback/dir%2F%E8%A7%86%E9%A2%91.mp4",
            Some("a=1&b=%2F"),
            body,
        );
        let auth = sign(&private, &signed);
        verify_callback(&public, &auth, &signed).unwrap();
        // The path is signed decoded: the escaped and unescaped forms sign the same bytes.
        let unescaped = callback_string_to_sign(
            "/v1/notifications/oss-callback/dir/视频.mp4",
            Some("a=1&b=%2F"),
            body,
        );
        verify_callback(&public, &auth, &unescaped).unwrap();
        // The query is signed raw.
        let decoded_query = callback_string_to_sign(
            "/v1/notifications/oss-callback/dir%2F%E8%A7%86%E9%A2%91.mp4",
            Some("a=1&b=/"),
            body,
        );
        assert!(verify_callback(&public, &auth, &decoded_query).is_err());
        // Another key does not verify it.
        assert!(verify_callback(&tv_key(), &auth, &signed).is_err());
    }

    proptest::proptest! {
        #[test]
        fn percent_decoding_inverts_encoding(s in "\\PC*") {
            let encoded = crate::signing::percent_encode(&s);
            proptest::prop_assert_eq!(percent_decode(&encoded), s.as_bytes().to_vec());
        }

        #[test]
        fn percent_decoding_never_panics(s in "[%0-9a-fA-F+/]{0,12}") {
            let _ = percent_decode(&s);
        }
    }
}
