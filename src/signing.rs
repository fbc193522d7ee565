//! Signature maths for the protocols mediagate speaks. Pure functions only: no clock, no I/O,
//! so every one of them is checked against published test vectors.

use base64::Engine;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD as B64;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

/// Percent-encodes the way Alibaba's RPC and OSS signers do: UTF-8 bytes, `A-Z a-z 0-9 - _ . ~`
/// unchanged, every other byte as `%XY` with upper-case hex (so space is `%20`, `*` is `%2A`).
pub fn percent_encode(input: &str) -> String {
    let mut out = String::with_capacity(input.len() + input.len() / 2);
    for &b in input.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0x0f) as usize] as char);
        }
    }
    out
}

/// The canonical query of an RPC request: parameters encoded, sorted by encoded key (byte
/// order) and joined as `k=v&k=v`. `Signature` itself is never part of it.
pub fn rpc_canonical_query<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut encoded: Vec<(String, String)> = params
        .into_iter()
        .filter(|(k, _)| *k != "Signature")
        .map(|(k, v)| (percent_encode(k), percent_encode(v)))
        .collect();
    encoded.sort();
    let mut query = String::new();
    for (i, (k, v)) in encoded.iter().enumerate() {
        if i > 0 {
            query.push('&');
        }
        query.push_str(k);
        query.push('=');
        query.push_str(v);
    }
    query
}

/// StringToSign of Alibaba RPC signature v1: `METHOD&%2F&pe(canonical query)`.
pub fn rpc_string_to_sign(method: &str, canonical_query: &str) -> String {
    format!(
        "{}&{}&{}",
        method.to_ascii_uppercase(),
        percent_encode("/"),
        percent_encode(canonical_query)
    )
}

/// Alibaba RPC signature v1: base64(HMAC-SHA1(secret + "&", StringToSign)).
pub fn rpc_signature(secret: &str, method: &str, canonical_query: &str) -> String {
    let string_to_sign = rpc_string_to_sign(method, canonical_query);
    hmac_sha1_base64(format!("{secret}&").as_bytes(), string_to_sign.as_bytes())
}

/// The common parameters of one RPC call; nonce and timestamp must be fresh per attempt.
pub struct RpcCall<'a> {
    pub action: &'a str,
    pub version: &'a str,
    pub access_key_id: &'a str,
    pub nonce: &'a str,
    /// `YYYY-MM-DDThh:mm:ssZ`.
    pub timestamp: &'a str,
}

/// The full query string of a signed RPC request: the common parameters, the operation's
/// `params`, and `Signature` last.
pub fn rpc_signed_query<'a>(
    call: &RpcCall<'a>,
    secret: &str,
    method: &str,
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> String {
    let common = [
        ("Action", call.action),
        ("Version", call.version),
        ("Format", "JSON"),
        ("AccessKeyId", call.access_key_id),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("SignatureNonce", call.nonce),
        ("Timestamp", call.timestamp),
    ];
    let query = rpc_canonical_query(common.into_iter().chain(params));
    let signature = rpc_signature(secret, method, &query);
    format!("{query}&Signature={}", percent_encode(&signature))
}

/// base64(HMAC-SHA1(key, message)); also the OSS PostObject V1 policy signature.
pub fn hmac_sha1_base64(key: &[u8], message: &[u8]) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(message);
    B64.encode(mac.finalize().into_bytes())
}

/// A value refused by a signer: a control character (a line break above all) would add lines
/// of the caller's choosing to a newline-separated string to sign, so that one signature
/// covers another request (another key, another expiry).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {0} to sign contains a control character")]
pub struct Unsignable(pub &'static str);

/// OSS's V1 request signature: base64(HMAC-SHA1(secret, VERB, Content-MD5, Content-Type,
/// Date — or `Expires` in a presigned URL — and the resource `/{bucket}/{key}` with its
/// sub-resources, one per line)), for a request that carries no `x-oss-` header. Fails when
/// any part holds a control character.
pub fn oss_v1_signature(
    secret: &str,
    verb: &str,
    content_md5: &str,
    content_type: &str,
    date_or_expires: &str,
    resource: &str,
) -> Result<String, Unsignable> {
    oss_v1_header_signature(
        secret,
        &OssSigned {
            verb,
            content_md5,
            content_type,
            date: date_or_expires,
            oss_headers: &[],
            resource,
        },
    )
}

/// What an OSS V1 header signature covers.
pub struct OssSigned<'a> {
    pub verb: &'a str,
    pub content_md5: &'a str,
    pub content_type: &'a str,
    /// The `Date` header (or `Expires` in a presigned URL).
    pub date: &'a str,
    /// Every `x-oss-*` header the request carries (name, value), in any order and case: they
    /// are signed lower-cased, sorted, `name:value` one per line (CanonicalizedOSSHeaders).
    pub oss_headers: &'a [(&'a str, &'a str)],
    /// `/{bucket}/{key}` with its sub-resources.
    pub resource: &'a str,
}

/// OSS's V1 header signature of `request`, its `x-oss-*` headers included (a copy's
/// `x-oss-copy-source` and conditions). Fails when any part holds a control character.
pub fn oss_v1_header_signature(
    secret: &str,
    request: &OssSigned<'_>,
) -> Result<String, Unsignable> {
    let parts = [
        ("verb", request.verb),
        ("Content-MD5", request.content_md5),
        ("Content-Type", request.content_type),
        ("date", request.date),
        ("resource", request.resource),
    ];
    let headers = request
        .oss_headers
        .iter()
        .flat_map(|(name, value)| [("x-oss- header", *name), ("x-oss- header", *value)]);
    for (part, value) in parts.into_iter().chain(headers) {
        if value.chars().any(char::is_control) {
            return Err(Unsignable(part));
        }
    }
    let mut canonical: Vec<(String, &str)> = request
        .oss_headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.trim()))
        .collect();
    canonical.sort();
    let canonical: String = canonical
        .iter()
        .map(|(name, value)| format!("{name}:{value}\n"))
        .collect();
    let string_to_sign = format!(
        "{}\n{}\n{}\n{}\n{canonical}{}",
        request.verb, request.content_md5, request.content_type, request.date, request.resource
    );
    Ok(hmac_sha1_base64(
        secret.as_bytes(),
        string_to_sign.as_bytes(),
    ))
}

/// One request to presign with OSS V1 query signing (docs/protocols.md §4b, §9).
pub struct OssQuery<'a> {
    pub verb: &'a str,
    /// The Content-Type the client will send; empty when none.
    pub content_type: &'a str,
    pub bucket: &'a str,
    /// The object key, raw (the resource signs it as it is).
    pub key: &'a str,
    /// Sub-resources besides `security-token` (`partNumber`, `uploadId`, `uploads`,
    /// `response-*`), `None` for a bare name. Their values are signed raw: a value with `&`
    /// would add sub-resources of its own, so callers pass only values they vouch for.
    pub subresources: &'a [(&'a str, Option<&'a str>)],
    /// Unix seconds.
    pub expires: u64,
}

/// The query string of an OSS V1 presigned URL for `request` (without the `?`): the
/// sub-resources sorted by name, the STS `security-token` among them when `security_token` is
/// not empty (signed as a sub-resource), then `OSSAccessKeyId`, `Expires` and `Signature`;
/// values percent-encoded with [`percent_encode`]. Fails when a part of the string to sign
/// holds a control character.
pub fn oss_presigned_query(
    request: &OssQuery<'_>,
    access_key_id: &str,
    secret: &str,
    security_token: &str,
) -> Result<String, Unsignable> {
    let mut subresources: Vec<(&str, Option<&str>)> = request.subresources.to_vec();
    if !security_token.is_empty() {
        subresources.push(("security-token", Some(security_token)));
    }
    subresources.sort_by(|a, b| a.0.cmp(b.0));
    let joined = |encode: &dyn Fn(&str) -> String| {
        subresources
            .iter()
            .map(|(name, value)| match value {
                Some(v) => format!("{name}={}", encode(v)),
                None => (*name).to_owned(),
            })
            .collect::<Vec<_>>()
            .join("&")
    };
    let mut resource = format!("/{}/{}", request.bucket, request.key);
    if !subresources.is_empty() {
        resource = format!("{resource}?{}", joined(&|v| v.to_owned()));
    }
    let expires = request.expires.to_string();
    let signature = oss_v1_signature(
        secret,
        request.verb,
        "",
        request.content_type,
        &expires,
        &resource,
    )?;
    let mut query = joined(&percent_encode);
    if !query.is_empty() {
        query.push('&');
    }
    Ok(format!(
        "{query}OSSAccessKeyId={}&Expires={expires}&Signature={}",
        percent_encode(access_key_id),
        percent_encode(&signature)
    ))
}

/// An OSS PostObject V1 form signature: returns (`policy` field, `Signature` field), the
/// policy base64-encoded and HMAC-SHA1-signed with the (temporary) AccessKeySecret.
pub fn oss_post_signature(secret: &str, policy_json: &str) -> (String, String) {
    let policy = B64.encode(policy_json.as_bytes());
    let signature = hmac_sha1_base64(secret.as_bytes(), policy.as_bytes());
    (policy, signature)
}

/// A SigV4 POST policy signature: hex(HMAC-SHA256(signing key for `date`/`region`/`s3`,
/// base64 policy)). Returns (`policy` field, `x-amz-signature` field).
pub fn s3_post_signature(
    secret: &str,
    time: std::time::SystemTime,
    region: &str,
    policy_json: &str,
) -> (String, String) {
    use aws_sigv4::sign::v4::{calculate_signature, generate_signing_key};
    let policy = B64.encode(policy_json.as_bytes());
    let key = generate_signing_key(secret, time, region, "s3");
    let signature = calculate_signature(key, policy.as_bytes());
    (policy, signature)
}

/// Compares two strings in time independent of where they differ, for signatures and tokens.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Prefix of Standard Webhooks secrets whose remainder is the base64 key.
const SECRET_PREFIX: &str = "whsec_";

// Secrets are usually padded base64, but an unpadded one is unambiguous, so accept both; and
// any base64 text gives a key, whatever the unused bits of its last character.
const SECRET_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// The HMAC key of a webhook secret: the base64-decoded remainder of a `whsec_` secret, else
/// the secret's raw bytes. A `whsec_` secret that is not valid base64 is used raw as a whole;
/// [`validate_webhook_secret`] rejects those, and the webhook sink refuses to use them.
pub fn webhook_signing_key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix(SECRET_PREFIX)
        .and_then(|b64| SECRET_B64.decode(b64).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// The shortest HMAC key a webhook secret may give: 192 bits, so a receiver's secret cannot
/// be guessed from signed deliveries.
pub const MIN_WEBHOOK_KEY_BYTES: usize = 24;
pub const MAX_WEBHOOK_SECRET_CHARS: usize = 256;

/// What [`validate_webhook_secret`] accepts, as patterns for the OpenAPI document: `whsec_` +
/// base64 of at least 24 bytes (eight whole groups of four), or at least 24 printable ASCII
/// characters (space included) not starting with `whsec_` (spelled out, one character at a time).
pub const WEBHOOK_SECRET_B64_PATTERN: &str =
    "^whsec_(?:[A-Za-z0-9+/]{4}){8,}(?:[A-Za-z0-9+/]{2}(?:==)?|[A-Za-z0-9+/]{3}=?)?$";
pub const WEBHOOK_SECRET_TEXT_PATTERN: &str = concat!(
    r"^(?:[\x20-\x76\x78-\x7e]|w(?:[\x20-\x67\x69-\x7e]|h(?:[\x20-\x72\x74-\x7e]",
    r"|s(?:[\x20-\x64\x66-\x7e]|e(?:[\x20-\x62\x64-\x7e]|c[\x20-\x5e\x60-\x7e])))))",
    r"[\x20-\x7e]*$"
);

/// Checks that `secret` can sign: a `whsec_` secret is base64 of the key, any other secret is
/// the key itself (printable ASCII), the key has at least [`MIN_WEBHOOK_KEY_BYTES`], and the
/// secret at most [`MAX_WEBHOOK_SECRET_CHARS`]. The error says what is wrong without quoting it.
pub fn validate_webhook_secret(secret: &str) -> Result<(), String> {
    if secret.len() > MAX_WEBHOOK_SECRET_CHARS {
        return Err(format!(
            "webhook secret must be at most {MAX_WEBHOOK_SECRET_CHARS} characters"
        ));
    }
    let key_len = match secret.strip_prefix(SECRET_PREFIX) {
        Some(b64) => SECRET_B64
            .decode(b64)
            .map_err(|_| "webhook secret starts with whsec_ but the rest is not base64")?
            .len(),
        None if !secret.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) => {
            return Err("webhook secret must be printable ASCII".into());
        }
        None => secret.len(),
    };
    if key_len < MIN_WEBHOOK_KEY_BYTES {
        return Err(format!(
            "webhook secret gives a {key_len}-byte key; at least {MIN_WEBHOOK_KEY_BYTES} bytes are required (whsec_ + base64 of 24 random bytes, or 24 characters)"
        ));
    }
    Ok(())
}

/// The `webhook-signature` header value: `v1,` + base64(HMAC-SHA256(key,
/// "{id}.{timestamp}.{body}")), where `key` comes from [`webhook_signing_key`].
pub fn webhook_signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tv_rpc_1_published_example() {
        let params = [
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("Format", "XML"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            ("TimeStamp", "2016-02-23T12:46:24Z"),
            ("Version", "2014-05-26"),
        ];
        let query = rpc_canonical_query(params);
        assert_eq!(
            rpc_string_to_sign("GET", &query),
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0%26TimeStamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
        );
        assert_eq!(
            rpc_signature("testsecret", "GET", &query),
            "CT9X0VtwR86fNWSnsc6v8YGOjuE="
        );
    }

    #[test]
    fn oss_v1_refuses_control_characters_in_every_part() {
        let sign =
            |parts: [&str; 4]| oss_v1_signature("s", parts[0], "", parts[1], parts[2], parts[3]);
        assert!(sign(["PUT", "video/mp4", "1893456000", "/b/k.mp4"]).is_ok());
        // The published attack: a Content-Type that writes the expiry and resource lines.
        assert_eq!(
            sign([
                "PUT",
                "video/mp4\n4102444800\n/b/uploads/bob/x",
                "1",
                "/b/k"
            ]),
            Err(Unsignable("Content-Type"))
        );
        assert_eq!(sign(["PUT", "", "1\r", "/b/k"]), Err(Unsignable("date")));
        assert_eq!(
            sign(["PUT", "", "1", "/b/k\u{7f}"]),
            Err(Unsignable("resource"))
        );
        assert_eq!(sign(["PUT\t", "", "1", "/b/k"]), Err(Unsignable("verb")));
    }

    /// A server-side copy and a part copy, header-signed with their `x-oss-copy-source*`
    /// headers; reproduced with the official `oss2` 2.19.1 (its string to sign and signature, secret
    /// `testsecret`, Date `Wed, 02 Dec 2026 00:00:00 GMT`).
    #[test]
    fn oss_header_signatures_cover_the_oss_headers_as_oss2_signs_them() {
        let date = "Wed, 02 Dec 2026 00:00:00 GMT";
        let source = ("x-oss-copy-source", "/media-in/uploads/alice/01/trip.mp4");
        let condition = (
            "X-Oss-Copy-Source-If-Match",
            "\"5B3C8A0D5AD5F0F1D2B6B2A3E3B1C9AF\"",
        );
        let copy = oss_v1_header_signature(
            "testsecret",
            &OssSigned {
                verb: "PUT",
                content_md5: "",
                content_type: "",
                date,
                oss_headers: &[condition, source],
                resource: "/media-in/verified/alice/01/j1/trip.mp4",
            },
        );
        assert_eq!(copy.unwrap(), "hLfTwymvWSowVV2bLlavMqaSR84=");
        let part = oss_v1_header_signature(
            "testsecret",
            &OssSigned {
                verb: "PUT",
                content_md5: "",
                content_type: "",
                date,
                oss_headers: &[
                    source,
                    ("x-oss-copy-source-range", "bytes=1073741824-2147483647"),
                    condition,
                ],
                resource: "/media-in/verified/alice/01/j1/trip.mp4?partNumber=2&uploadId=0004B9894A22E5B1888A1E29F8236E2D",
            },
        );
        assert_eq!(part.unwrap(), "yH/Xwt72cXvktwt5pvhucioLSrI=");
        let forged = oss_v1_header_signature(
            "testsecret",
            &OssSigned {
                verb: "PUT",
                content_md5: "",
                content_type: "",
                date,
                oss_headers: &[("x-oss-copy-source", "/b/k\n/b/other")],
                resource: "/b/k",
            },
        );
        assert_eq!(forged, Err(Unsignable("x-oss- header")));
    }

    /// TV-GET-1..3 (docs/protocols.md §9), from the official `oss2` SDK's `sign_url`.
    #[test]
    fn oss_presigned_get_matches_the_oss2_vectors() {
        let get = |subresources: &[(&str, Option<&str>)], id: &str, token: &str| {
            let request = OssQuery {
                verb: "GET",
                content_type: "",
                bucket: "examplebucket",
                key: "outputs/abc/720p.mp4",
                subresources,
                expires: 1_700_000_000,
            };
            oss_presigned_query(&request, id, "testsecret", token).unwrap()
        };
        assert_eq!(
            get(&[], "testid", ""),
            "OSSAccessKeyId=testid&Expires=1700000000&Signature=QdJQkr4LZpz78gNqpYYhFQ6km9I%3D"
        );
        assert_eq!(
            get(&[], "STS.testid", "tok"),
            "security-token=tok&OSSAccessKeyId=STS.testid&Expires=1700000000&Signature=J8LxxyY9n3UG5d%2BzxlAztrkFHhk%3D"
        );
        assert_eq!(
            get(
                &[("response-content-disposition", Some("attachment"))],
                "STS.testid",
                "tok"
            ),
            "response-content-disposition=attachment&security-token=tok&OSSAccessKeyId=STS.testid&Expires=1700000000&Signature=eOk8e0nawBI1FBxRQoBmg%2B0l0rI%3D"
        );
    }

    #[test]
    fn oss_presigned_queries_refuse_lines_of_their_own() {
        let request = OssQuery {
            verb: "GET",
            content_type: "",
            bucket: "b",
            key: "a\n1893456000\n/b/other",
            subresources: &[],
            expires: 1,
        };
        assert_eq!(
            oss_presigned_query(&request, "id", "s", ""),
            Err(Unsignable("resource"))
        );
    }

    #[test]
    fn tv_rpc_2_assume_role() {
        // Deliberately unsorted: sorting is the signer's job.
        let params = [
            ("RoleSessionName", "alice"),
            ("Action", "AssumeRole"),
            ("Version", "2015-04-01"),
            ("Format", "JSON"),
            ("AccessKeyId", "testid"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("SignatureNonce", "c3d0a2f4-1b2e-4c5d-9e8f-0123456789ab"),
            ("Timestamp", "2024-01-01T00:00:00Z"),
            ("RoleArn", "acs:ram::1234567890123456:role/uploader"),
        ];
        let query = rpc_canonical_query(params);
        assert_eq!(
            rpc_signature("testsecret", "POST", &query),
            "CFA3WCBSVQWx/WyeR0tb6Einq7Q="
        );
        // The method is signed: the same parameters under GET give another signature.
        assert_ne!(
            rpc_signature("testsecret", "GET", &query),
            "CFA3WCBSVQWx/WyeR0tb6Einq7Q="
        );
    }

    #[test]
    fn s3_post_signature_matches_botocore() {
        // Reproduced with botocore's S3SigV4PostAuth (the signer behind boto3's
        // generate_presigned_post) for these keys, this policy and 2026-12-01.
        let policy = r#"{"expiration": "2030-01-01T00:00:00.000Z", "conditions": [{"bucket": "media-input"}, ["eq", "$key", "uploads/alice/1/trip.mp4"], ["content-length-range", 1, 1048576], {"x-amz-algorithm": "AWS4-HMAC-SHA256"}, {"x-amz-credential": "AKIAIOSFODNN7EXAMPLE/20261201/us-east-1/s3/aws4_request"}, {"x-amz-date": "20261201T184521Z"}, {"x-amz-security-token": "session-token-1"}]}"#;
        let time =
            std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_796_150_721);
        let (field, signature) = s3_post_signature(
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            time,
            "us-east-1",
            policy,
        );
        assert!(field.starts_with(
            "eyJleHBpcmF0aW9uIjogIjIwMzAtMDEtMDFUMDA6MDA6MDAuMDAwWiIsICJjb25kaXRpb25zIjog"
        ));
        assert_eq!(
            signature,
            "4e86a987e29cb8aecedb9ef33afa615c20f07619b80666b7b3a2ec6b1d18ffbc"
        );
        let (_, other_day) = s3_post_signature(
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            time + std::time::Duration::from_secs(86_400),
            "us-east-1",
            policy,
        );
        assert_ne!(other_day, signature, "the date is part of the signing key");
    }

    #[test]
    fn signature_parameter_is_excluded() {
        let with = rpc_canonical_query([("A", "1"), ("Signature", "x")]);
        assert_eq!(with, "A=1");
    }

    #[test]
    fn encoding_of_special_characters() {
        assert_eq!(percent_encode("a b*c~d"), "a%20b%2Ac~d");
        assert_eq!(percent_encode("+/=:"), "%2B%2F%3D%3A");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    fn decode(encoded: &str) -> Vec<u8> {
        let bytes = encoded.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        out
    }

    /// Strings a pattern matches (proptest generates from the unanchored pattern).
    pub(crate) fn generated_from(
        pattern: &str,
    ) -> proptest::string::RegexGeneratorStrategy<String> {
        let unanchored = pattern.trim_start_matches('^').trim_end_matches('$');
        proptest::string::string_regex(unanchored).unwrap()
    }

    proptest! {
        #[test]
        fn encoding_uses_only_the_unreserved_set_and_upper_hex(s in any::<String>()) {
            let e = percent_encode(&s);
            let mut chars = e.chars().peekable();
            while let Some(c) = chars.next() {
                if c == '%' {
                    let hi = chars.next().unwrap();
                    let lo = chars.next().unwrap();
                    prop_assert!(hi.is_ascii_digit() || ('A'..='F').contains(&hi));
                    prop_assert!(lo.is_ascii_digit() || ('A'..='F').contains(&lo));
                } else {
                    prop_assert!(c.is_ascii_alphanumeric() || "-_.~".contains(c), "{c:?} left unencoded");
                }
            }
        }

        #[test]
        fn encoding_round_trips(s in any::<String>()) {
            prop_assert_eq!(decode(&percent_encode(&s)), s.as_bytes().to_vec());
        }

        #[test]
        fn canonical_query_is_order_independent(mut params in proptest::collection::vec(("[A-Za-z]{1,8}", any::<String>()), 0..8)) {
            params.sort_by(|a, b| a.0.cmp(&b.0));
            params.dedup_by(|a, b| a.0 == b.0);
            let forward = rpc_canonical_query(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let backward = rpc_canonical_query(params.iter().rev().map(|(k, v)| (k.as_str(), v.as_str())));
            prop_assert_eq!(forward, backward);
        }

        /// The document's patterns and the server's check agree on every secret: generated
        /// from each pattern, near them, and arbitrary.
        #[test]
        fn secret_patterns_state_the_secret_check(secret in prop_oneof![
            generated_from(WEBHOOK_SECRET_B64_PATTERN),
            generated_from(WEBHOOK_SECRET_TEXT_PATTERN),
            "whsec_[A-Za-z0-9+/=]{20,40}",
            "(whsec_|whse|w)?[ -~]{16,32}",
            any::<String>(),
        ]) {
            let b64 = regex::Regex::new(WEBHOOK_SECRET_B64_PATTERN).unwrap();
            let text = regex::Regex::new(WEBHOOK_SECRET_TEXT_PATTERN).unwrap();
            let by_patterns = secret.chars().count() <= MAX_WEBHOOK_SECRET_CHARS
                && (b64.is_match(&secret)
                    || (text.is_match(&secret) && secret.chars().count() >= MIN_WEBHOOK_KEY_BYTES));
            prop_assert_eq!(validate_webhook_secret(&secret).is_ok(), by_patterns, "{:?}", secret);
        }
    }
}
