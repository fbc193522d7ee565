//! What a caller may upload, and the STS session policy that enforces it. Everything here is a
//! pure function of plain values: the user segment derived from a subject, the object key, the
//! policy JSON and the RoleSessionName.

pub mod cache;
pub mod forms;
pub mod limits;
pub mod presign;

use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::storage::{CredentialScope, Provider};
use crate::sts::{AssumeRole, Credentials, StsError};
use cache::CredentialCache;
use limits::RateLimited;

/// Longest user segment derived from a subject as is; longer subjects are hashed.
const MAX_PLAIN_SEGMENT: usize = 64;
/// OSS object keys are at most 1023 bytes.
pub const MAX_OBJECT_KEY_BYTES: usize = 1023;
pub use crate::storage::FileName;

/// The longest `storage.prefix`: with the longest user segment, an upload id (a UUID) and a
/// file name of 200 four-byte characters, a key still fits in [`MAX_OBJECT_KEY_BYTES`], so no
/// request the API document allows is refused for the length of its key.
pub const MAX_PREFIX_BYTES: usize = MAX_OBJECT_KEY_BYTES
    - MAX_PLAIN_SEGMENT
    - "/".len()
    - UPLOAD_ID_CHARS
    - "/".len()
    - 4 * crate::storage::MAX_FILE_NAME_CHARS;
const UPLOAD_ID_CHARS: usize = 36;

/// Session policies longer than this are refused by STS.
pub const MAX_POLICY_CHARS: usize = 2048;

/// The path segment that confines one principal's uploads: `{prefix}{segment}/`.
///
/// Subjects made only of `[A-Za-z0-9._@-]`, starting with a letter or digit, without `..` and
/// at most 64 bytes are used as they are, so operators recognise them in the bucket. Anything
/// else becomes `_h` + 32 hex digits of SHA-256(subject): it cannot carry `*`, `/`, quotes or
/// `..` into a key or a policy, and since plain segments never start with `_` the two forms
/// never collide. API keys get `_k-{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserSegment(String);

impl UserSegment {
    pub fn for_subject(subject: &str) -> Self {
        if is_plain_subject(subject) {
            UserSegment(subject.to_owned())
        } else {
            let digest = Sha256::digest(subject.as_bytes());
            UserSegment(format!("_h{}", &hex::encode(digest)[..32]))
        }
    }

    /// `_k-{name}`. Names are checked by [`validate_api_key_name`] when keys are created; one
    /// that is not (a hand-edited database) is hashed rather than trusted.
    pub fn for_api_key(name: &str) -> Self {
        if validate_api_key_name(name).is_ok() {
            UserSegment(format!("_k-{name}"))
        } else {
            UserSegment::for_subject(&format!("apikey:{name}"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_plain_subject(subject: &str) -> bool {
    let bytes = subject.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_PLAIN_SEGMENT
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'))
        && !subject.contains("..")
}

/// API key names: 1-48 of `[a-z0-9-]`, so the key's user segment is readable and safe.
pub fn validate_api_key_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 48
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("must be 1-48 characters of a-z, 0-9 and -".into());
    }
    Ok(())
}

/// The configured key prefix: empty or ending in `/`, no leading `/`, no `//`, no `..`
/// segment, and none of `* ? " \` or control characters (they would widen a policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    pub fn parse(prefix: &str) -> Result<Self, String> {
        if prefix.is_empty() {
            return Ok(KeyPrefix(String::new()));
        }
        if prefix.len() > MAX_PREFIX_BYTES {
            return Err(format!(
                "must be at most {MAX_PREFIX_BYTES} bytes, so every key fits in {MAX_OBJECT_KEY_BYTES}"
            ));
        }
        if !prefix.ends_with('/') || prefix.starts_with('/') || prefix.contains("//") {
            return Err(format!(
                "{prefix:?} must end with '/', and must not start with '/' or contain '//'"
            ));
        }
        if prefix.split('/').any(|s| s == "." || s == "..") {
            return Err(format!("{prefix:?} must not contain '.' or '..' segments"));
        }
        if prefix
            .chars()
            .any(|c| crate::storage::is_policy_special(c) || c.is_control())
        {
            return Err(format!(
                "{prefix:?} must not contain * ? \" \\ or control characters"
            ));
        }
        Ok(KeyPrefix(prefix.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A key built by mediagate: `{prefix}{segment}/{upload_id}/{file name}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectKey(String);

impl ObjectKey {
    pub fn build(
        prefix: &KeyPrefix,
        user: &UserSegment,
        upload_id: &str,
        file: &FileName,
    ) -> Result<Self, String> {
        let key = format!(
            "{}{}/{}/{}",
            prefix.as_str(),
            user.as_str(),
            upload_id,
            file.as_str()
        );
        if key.len() > MAX_OBJECT_KEY_BYTES {
            return Err(format!(
                "file_name is too long: object keys are at most {MAX_OBJECT_KEY_BYTES} bytes"
            ));
        }
        Ok(ObjectKey(key))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key of an upload mediagate issued, read back from the store.
    pub fn issued(key: String) -> Self {
        ObjectKey(key)
    }
}

/// What one set of credentials covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Everything under `{prefix}{segment}/`.
    User { prefix: String, user: String },
    /// Exactly one object key.
    Object(String),
}

impl Scope {
    pub fn for_upload(
        kind: CredentialScope,
        prefix: &KeyPrefix,
        user: &UserSegment,
        key: &ObjectKey,
    ) -> Self {
        match kind {
            CredentialScope::User => Scope::user(prefix, user),
            CredentialScope::Upload => Scope::Object(key.as_str().to_owned()),
        }
    }

    pub fn user(prefix: &KeyPrefix, user: &UserSegment) -> Self {
        Scope::User {
            prefix: prefix.as_str().to_owned(),
            user: user.as_str().to_owned(),
        }
    }

    /// The key pattern inside the bucket: `prefix/user/*` or the one key.
    pub fn key_pattern(&self) -> String {
        match self {
            Scope::User { prefix, user } => format!("{prefix}{user}/*"),
            Scope::Object(key) => key.clone(),
        }
    }
}

#[derive(Serialize)]
struct Policy<'a> {
    #[serde(rename = "Version")]
    version: &'static str,
    #[serde(rename = "Statement")]
    statement: [Statement<'a>; 1],
}

#[derive(Serialize)]
struct Statement<'a> {
    #[serde(rename = "Effect")]
    effect: &'static str,
    #[serde(rename = "Action")]
    action: &'a [&'a str],
    #[serde(rename = "Resource")]
    resource: [String; 1],
}

/// Only the upload actions: `oss:PutObject` also covers PostObject and every step of a
/// multipart upload except aborting and listing its parts.
pub const OSS_UPLOAD_ACTIONS: &[&str] =
    &["oss:PutObject", "oss:AbortMultipartUpload", "oss:ListParts"];

/// The S3 equivalents: `s3:PutObject` covers PUT, POST and creating, uploading parts of and
/// completing a multipart upload.
pub const S3_UPLOAD_ACTIONS: &[&str] = &[
    "s3:PutObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
];

/// Which policy language a session policy is written in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyDialect {
    /// Alibaba RAM: `acs:oss:*:*:{bucket}/...`.
    Ram,
    /// AWS IAM in `partition` (`aws`, `aws-cn`, `aws-us-gov`): `arn:{partition}:s3:::{bucket}/...`.
    Iam { partition: String },
}

impl PolicyDialect {
    pub fn for_provider(provider: Provider, partition: &str) -> Self {
        match provider {
            Provider::Aliyun => PolicyDialect::Ram,
            Provider::S3 => PolicyDialect::Iam {
                partition: partition.to_owned(),
            },
        }
    }
}

/// The session policy (compact JSON) allowing only the upload actions on `scope` in `bucket`,
/// in `dialect`. Fails when the policy would exceed what STS accepts.
pub fn session_policy(
    dialect: &PolicyDialect,
    bucket: &str,
    scope: &Scope,
) -> Result<String, String> {
    let (version, action, resource) = match dialect {
        PolicyDialect::Ram => ("1", OSS_UPLOAD_ACTIONS, "acs:oss:*:*:".to_owned()),
        PolicyDialect::Iam { partition } => (
            "2012-10-17",
            S3_UPLOAD_ACTIONS,
            format!("arn:{partition}:s3:::"),
        ),
    };
    let policy = Policy {
        version,
        statement: [Statement {
            effect: "Allow",
            action,
            resource: [format!("{resource}{bucket}/{}", scope.key_pattern())],
        }],
    };
    let json = serde_json::to_string(&policy).map_err(|e| e.to_string())?;
    if json.chars().count() > MAX_POLICY_CHARS {
        return Err(format!(
            "session policy is {} characters, STS accepts at most {MAX_POLICY_CHARS}",
            json.chars().count()
        ));
    }
    Ok(json)
}

/// The RAM session policy for OSS; see [`session_policy`].
pub fn oss_session_policy(bucket: &str, scope: &Scope) -> Result<String, String> {
    session_policy(&PolicyDialect::Ram, bucket, scope)
}

/// RoleSessionName for a user: `mg.{segment}` (2-32 of `[A-Za-z0-9.@_-]`). A segment too long
/// to fit keeps its first 20 characters and gains 8 hex digits of its hash, so the name still
/// points at the user in the STS audit trail.
pub fn role_session_name(user: &UserSegment) -> String {
    let s = user.as_str();
    if s.len() <= 29 {
        format!("mg.{s}")
    } else {
        let digest = hex::encode(Sha256::digest(s.as_bytes()));
        format!("mg.{}.{}", &s[..20], &digest[..8])
    }
}

/// Which keys a PostObject policy allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyCondition<'a> {
    Exact(&'a str),
    StartsWith(&'a str),
}

/// An OSS PostObject V1 policy document (compact JSON): the bucket, the key, the size range,
/// `success_action_status` 200, and the upload callback when given. The browser cannot change
/// any of these without breaking the signature.
pub fn oss_post_policy(
    expiration: chrono::DateTime<chrono::Utc>,
    bucket: &str,
    key: KeyCondition<'_>,
    size: (u64, u64),
    callback: Option<&str>,
) -> String {
    let mut conditions = post_conditions(bucket, key, size);
    conditions.push(serde_json::json!(["eq", "$success_action_status", "200"]));
    if let Some(callback) = callback {
        conditions.push(serde_json::json!({ "callback": callback }));
    }
    post_policy_document(expiration, conditions)
}

/// An S3 POST policy document (compact JSON) for SigV4: the bucket, the key, the size range,
/// and every other form field by exact value (`fields`: the `x-amz-*` signing fields, the
/// session token, `success_action_status`, metadata), as S3 requires of each field but the
/// policy, the signature and the file.
pub fn s3_post_policy(
    expiration: chrono::DateTime<chrono::Utc>,
    bucket: &str,
    key: KeyCondition<'_>,
    size: (u64, u64),
    fields: &[(&str, &str)],
) -> String {
    let mut conditions = post_conditions(bucket, key, size);
    conditions.extend(
        fields
            .iter()
            .map(|(name, value)| serde_json::json!({ *name: value })),
    );
    post_policy_document(expiration, conditions)
}

fn post_conditions(
    bucket: &str,
    key: KeyCondition<'_>,
    size: (u64, u64),
) -> Vec<serde_json::Value> {
    let key = match key {
        KeyCondition::Exact(k) => serde_json::json!(["eq", "$key", k]),
        KeyCondition::StartsWith(p) => serde_json::json!(["starts-with", "$key", p]),
    };
    vec![
        serde_json::json!({ "bucket": bucket }),
        key,
        serde_json::json!(["content-length-range", size.0, size.1]),
    ]
}

fn post_policy_document(
    expiration: chrono::DateTime<chrono::Utc>,
    conditions: Vec<serde_json::Value>,
) -> String {
    // Field order is part of the signed bytes, so the document is written by hand rather than
    // through a map that might reorder it.
    format!(
        r#"{{"expiration":"{}","conditions":{}}}"#,
        expiration.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        serde_json::Value::Array(conditions)
    )
}

/// Hands out credentials for a scope in the input bucket, through the cache.
pub struct Vendor {
    cache: CredentialCache,
    dialect: PolicyDialect,
    bucket: String,
    duration_seconds: u32,
}

impl Vendor {
    pub fn new(
        cache: CredentialCache,
        dialect: PolicyDialect,
        bucket: String,
        duration_seconds: u32,
    ) -> Self {
        Self {
            cache,
            dialect,
            bucket,
            duration_seconds,
        }
    }

    /// Credentials that allow only uploads within `scope`, for the session of `user`.
    pub async fn credentials(
        &self,
        user: &UserSegment,
        scope: &Scope,
    ) -> Result<Arc<Credentials>, StsError> {
        self.cache
            .get(scope, || self.assume_role(user, scope))
            .await
    }

    /// As [`Vendor::credentials`] for a caller without a rate limit of its own (one sign call
    /// per part): `admit` is asked only when STS must be called, so what reaches STS counts
    /// against the vend limits and cached credentials cost nothing.
    pub async fn credentials_admitted(
        &self,
        user: &UserSegment,
        scope: &Scope,
        admit: impl FnOnce() -> Result<(), RateLimited>,
    ) -> Result<Arc<Credentials>, VendError> {
        self.cache
            .get(scope, || {
                admit()?;
                Ok(self.assume_role(user, scope)?)
            })
            .await
    }

    fn assume_role(&self, user: &UserSegment, scope: &Scope) -> Result<AssumeRole, StsError> {
        // Both inputs are checked types, so a failure here is a bug in our limits.
        let policy = session_policy(&self.dialect, &self.bucket, scope).map_err(|message| {
            StsError::Rejected {
                code: "PolicyTooLong".into(),
                message,
                request_id: String::new(),
            }
        })?;
        Ok(AssumeRole {
            role_session_name: role_session_name(user),
            policy,
            duration_seconds: self.duration_seconds,
        })
    }
}

/// Why credentials were not handed out.
#[derive(Debug)]
pub enum VendError {
    Sts(StsError),
    Limited(RateLimited),
}

impl From<StsError> for VendError {
    fn from(e: StsError) -> Self {
        VendError::Sts(e)
    }
}

impl From<RateLimited> for VendError {
    fn from(e: RateLimited) -> Self {
        VendError::Limited(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn prefix() -> KeyPrefix {
        KeyPrefix::parse("uploads/").unwrap()
    }

    #[test]
    fn iam_policy_allows_only_uploads_in_the_partition_and_scope() {
        let seg = UserSegment::for_subject("alice");
        let dialect = PolicyDialect::Iam {
            partition: "aws-cn".into(),
        };
        let policy =
            session_policy(&dialect, "media-input", &Scope::user(&prefix(), &seg)).unwrap();
        assert_eq!(
            policy,
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:PutObject","s3:AbortMultipartUpload","s3:ListMultipartUploadParts"],"Resource":["arn:aws-cn:s3:::media-input/uploads/alice/*"]}]}"#
        );
        let one = Scope::Object("uploads/alice/1/a b.mp4".into());
        let policy = session_policy(
            &PolicyDialect::for_provider(Provider::S3, "aws"),
            "b-1",
            &one,
        )
        .unwrap();
        assert!(policy.contains(r#""Resource":["arn:aws:s3:::b-1/uploads/alice/1/a b.mp4"]"#));
        assert_eq!(
            PolicyDialect::for_provider(Provider::Aliyun, "aws"),
            PolicyDialect::Ram
        );
    }

    #[test]
    fn plain_subjects_are_kept() {
        assert_eq!(UserSegment::for_subject("alice").as_str(), "alice");
        assert_eq!(
            UserSegment::for_subject("bob@example.com").as_str(),
            "bob@example.com"
        );
        assert_eq!(UserSegment::for_subject("u-42_x.y").as_str(), "u-42_x.y");
    }

    #[test]
    fn unsafe_subjects_are_hashed() {
        for s in [
            "*", "../x", "a/b", "a\"b", "ünï", "..", ".hidden", "_h00", "", "a..b",
        ] {
            let seg = UserSegment::for_subject(s);
            assert!(seg.as_str().starts_with("_h"), "{s:?} -> {seg:?}");
            assert_eq!(seg.as_str().len(), 34);
        }
        assert_ne!(
            UserSegment::for_subject("a/b"),
            UserSegment::for_subject("a\\b")
        );
    }

    #[test]
    fn prefix_rules() {
        assert!(KeyPrefix::parse("").is_ok());
        assert!(KeyPrefix::parse("uploads/").is_ok());
        assert!(KeyPrefix::parse("a/b/").is_ok());
        for bad in [
            "uploads",
            "/uploads/",
            "a//b/",
            "a/*/",
            "../",
            "a/../",
            "q?/",
        ] {
            assert!(KeyPrefix::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn object_key_layout_and_limit() {
        let key = ObjectKey::build(
            &prefix(),
            &UserSegment::for_subject("alice"),
            "0190-id",
            &FileName::parse("trip.mp4").unwrap(),
        )
        .unwrap();
        assert_eq!(key.as_str(), "uploads/alice/0190-id/trip.mp4");
        // The longest prefix, segment, id and name still fit in 1023 bytes; longer prefixes
        // are refused when the configuration is read.
        let long = FileName::parse(&"𝄞".repeat(200)).unwrap();
        let deepest = KeyPrefix::parse(&format!("{}/", "p".repeat(MAX_PREFIX_BYTES - 1))).unwrap();
        let widest = UserSegment::for_subject(&"u".repeat(MAX_PLAIN_SEGMENT));
        let id = uuid::Uuid::now_v7().to_string();
        let key = ObjectKey::build(&deepest, &widest, &id, &long).unwrap();
        assert_eq!(key.as_str().len(), MAX_OBJECT_KEY_BYTES);
        assert!(KeyPrefix::parse(&format!("{}/", "p".repeat(MAX_PREFIX_BYTES))).is_err());
    }

    #[test]
    fn policy_is_compact_and_scoped() {
        let scope = Scope::user(&prefix(), &UserSegment::for_subject("alice"));
        let policy = oss_session_policy("media-input", &scope).unwrap();
        assert_eq!(
            policy,
            r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":["oss:PutObject","oss:AbortMultipartUpload","oss:ListParts"],"Resource":["acs:oss:*:*:media-input/uploads/alice/*"]}]}"#
        );
        let one = Scope::Object("uploads/alice/id/trip.mp4".into());
        assert!(
            oss_session_policy("media-input", &one)
                .unwrap()
                .contains(r#""acs:oss:*:*:media-input/uploads/alice/id/trip.mp4""#)
        );
    }

    #[test]
    fn tv_post_1_policy_bytes_and_signature() {
        let expiration = chrono::DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let policy = oss_post_policy(
            expiration,
            "my-bucket",
            KeyCondition::StartsWith("uploads/u-42/"),
            (1, 10485760),
            None,
        );
        assert_eq!(
            policy,
            r#"{"expiration":"2030-01-01T00:00:00.000Z","conditions":[{"bucket":"my-bucket"},["starts-with","$key","uploads/u-42/"],["content-length-range",1,10485760],["eq","$success_action_status","200"]]}"#
        );
        let (_, signature) = crate::signing::oss_post_signature("testsecret", &policy);
        assert_eq!(signature, "W21a7cbmrfgHvqnlFb66rSIjYdY=");
    }

    #[test]
    fn post_policy_pins_the_key_and_carries_the_callback() {
        let policy = oss_post_policy(
            chrono::Utc::now(),
            "b",
            KeyCondition::Exact("uploads/a/1/x \"y\".mp4"),
            (10, 10),
            Some("Y2I="),
        );
        let v: serde_json::Value = serde_json::from_str(&policy).unwrap();
        assert_eq!(
            v["conditions"][1],
            serde_json::json!(["eq", "$key", "uploads/a/1/x \"y\".mp4"])
        );
        assert_eq!(
            v["conditions"][2],
            serde_json::json!(["content-length-range", 10, 10])
        );
        assert_eq!(v["conditions"][4]["callback"], "Y2I=");
    }

    #[test]
    fn role_session_names() {
        assert_eq!(
            role_session_name(&UserSegment::for_subject("alice")),
            "mg.alice"
        );
        let long = role_session_name(&UserSegment::for_subject(&"x".repeat(60)));
        assert_eq!(long.len(), 32);
        assert!(long.starts_with("mg.xxxxxxxxxxxxxxxxxxxx."));
    }

    fn resources(policy: &str) -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(policy).expect("policy parses");
        v["Statement"][0]["Resource"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_owned())
            .collect()
    }

    fn any_subject() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[*?/.\"'\\\\ a-z]{0,12}",
            Just("*".to_string()),
            Just("../x".to_string()),
            Just("a/b".to_string()),
            "\\PC{0,40}",
            "[a-z]{1000,1100}",
        ]
    }

    proptest! {
        #[test]
        fn no_subject_escapes_its_prefix(subject in any_subject(), file in prop_oneof!["[a-zA-Z0-9 ._()-]{1,40}", any::<String>()]) {
            let seg = UserSegment::for_subject(&subject);
            let s = seg.as_str();
            prop_assert!(!s.is_empty() && s.len() <= 64);
            prop_assert!(!s.contains(['*', '?', '/', '"', '\\', '\'']) && !s.contains(".."));
            prop_assert!(!s.chars().any(char::is_control));
            prop_assert!(s.is_ascii());

            let own = format!("acs:oss:*:*:media-input/uploads/{s}/");
            let policy = oss_session_policy("media-input", &Scope::user(&prefix(), &seg)).unwrap();
            prop_assert!(policy.len() <= MAX_POLICY_CHARS);
            for r in resources(&policy) {
                prop_assert_eq!(r, format!("{own}*"));
            }

            if let Ok(file) = FileName::parse(&file) {
                let key = ObjectKey::build(&prefix(), &seg, "id", &file).unwrap();
                prop_assert!(key.as_str().starts_with(&own["acs:oss:*:*:media-input/".len()..]));
                let policy = oss_session_policy("media-input", &Scope::Object(key.as_str().into())).unwrap();
                for r in resources(&policy) {
                    prop_assert!(r.starts_with(&own));
                    prop_assert!(!r[own.len()..].contains('*'));
                }
            }

            let name = role_session_name(&seg);
            prop_assert!((2..=32).contains(&name.len()), "{}", name);
            prop_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b".@_-".contains(&b)));
        }

        #[test]
        fn distinct_subjects_get_distinct_segments(a in any_subject(), b in any_subject()) {
            prop_assume!(a != b);
            prop_assert_ne!(UserSegment::for_subject(&a), UserSegment::for_subject(&b));
        }

        #[test]
        fn accepted_file_names_stay_in_the_upload_folder(name in any::<String>()) {
            if let Ok(file) = FileName::parse(&name) {
                let seg = UserSegment::for_subject("alice");
                if let Ok(key) = ObjectKey::build(&prefix(), &seg, "id", &file) {
                    prop_assert_eq!(key.as_str().strip_prefix("uploads/alice/id/"), Some(name.as_str()));
                    prop_assert!(!key.as_str().contains(['*', '?']));
                }
            }
        }
    }
}
