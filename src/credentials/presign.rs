//! One store request signed by the server for a browser (`POST /v1/uploads/{id}/sign`): a
//! presigned URL for exactly one operation on the upload's own key, so the secret never
//! reaches JavaScript. S3 stores get SigV4 query signing (AWS's own signer); OSS gets its V1
//! query signing (`OSSAccessKeyId`, `Expires`, `Signature`; docs/protocols.md 4b).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use secrecy::ExposeSecret;

use crate::signing::{OssQuery, Unsignable, oss_presigned_query};
use crate::storage::signed::encode_key;
use crate::storage::{Provider, StorageConfig};
use crate::sts::Credentials;

/// The S3 operations a browser upload makes, as Uppy's `signRequest` names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    PutObject,
    CreateMultipartUpload,
    UploadPart { upload_id: String, part_number: u32 },
    ListParts { upload_id: String },
    CompleteMultipartUpload { upload_id: String },
    AbortMultipartUpload { upload_id: String },
}

pub use crate::storage::{MAX_MULTIPART_ID_BYTES, MAX_PART_NUMBER, is_multipart_id};

impl Operation {
    /// The operation a request names by its method and multipart fields; a message fit for
    /// the client otherwise.
    pub fn parse(
        method: &str,
        upload_id: Option<&str>,
        part_number: Option<u32>,
    ) -> Result<Operation, String> {
        if let Some(id) = upload_id
            && !is_multipart_id(id)
        {
            return Err(format!(
                "uploadId must be 1-{MAX_MULTIPART_ID_BYTES} characters of A-Z a-z 0-9 . _ ~ - + / ="
            ));
        }
        if let Some(n) = part_number
            && !(1..=MAX_PART_NUMBER).contains(&n)
        {
            return Err(format!("partNumber must be 1-{MAX_PART_NUMBER}"));
        }
        let id = || upload_id.map(str::to_owned);
        let op = match (method, id(), part_number) {
            ("PUT", None, None) => Operation::PutObject,
            ("POST", None, None) => Operation::CreateMultipartUpload,
            ("PUT", Some(upload_id), Some(part_number)) => Operation::UploadPart {
                upload_id,
                part_number,
            },
            ("GET", Some(upload_id), None) => Operation::ListParts { upload_id },
            ("POST", Some(upload_id), None) => Operation::CompleteMultipartUpload { upload_id },
            ("DELETE", Some(upload_id), None) => Operation::AbortMultipartUpload { upload_id },
            _ => {
                return Err(
                    "method, uploadId and partNumber name no upload operation (PutObject, CreateMultipartUpload, UploadPart, ListParts, CompleteMultipartUpload, AbortMultipartUpload)"
                        .into(),
                );
            }
        };
        Ok(op)
    }

    pub fn method(&self) -> &'static str {
        match self {
            Operation::PutObject | Operation::UploadPart { .. } => "PUT",
            Operation::CreateMultipartUpload | Operation::CompleteMultipartUpload { .. } => "POST",
            Operation::ListParts { .. } => "GET",
            Operation::AbortMultipartUpload { .. } => "DELETE",
        }
    }

    /// The sub-resources of the request, sorted by name (`None`: a bare name).
    fn subresources(&self) -> Vec<(&'static str, Option<String>)> {
        match self {
            Operation::PutObject => vec![],
            Operation::CreateMultipartUpload => vec![("uploads", None)],
            Operation::UploadPart {
                upload_id,
                part_number,
            } => vec![
                ("partNumber", Some(part_number.to_string())),
                ("uploadId", Some(upload_id.clone())),
            ],
            Operation::ListParts { upload_id }
            | Operation::CompleteMultipartUpload { upload_id }
            | Operation::AbortMultipartUpload { upload_id } => {
                vec![("uploadId", Some(upload_id.clone()))]
            }
        }
    }

    /// The multipart upload the request belongs to, if any.
    pub fn upload_id(&self) -> Option<&str> {
        match self {
            Operation::PutObject | Operation::CreateMultipartUpload => None,
            Operation::UploadPart { upload_id, .. }
            | Operation::ListParts { upload_id }
            | Operation::CompleteMultipartUpload { upload_id }
            | Operation::AbortMultipartUpload { upload_id } => Some(upload_id),
        }
    }

    /// The Content-Type the browser sends: the file's on PutObject and CreateMultipartUpload
    /// (Uppy sends it on both; `application/octet-stream` when nobody named one, so the store
    /// never keeps a type the signature did not cover), XML on CompleteMultipartUpload, none
    /// otherwise.
    pub fn content_type<'a>(&self, file_type: Option<&'a str>) -> Option<&'a str> {
        match self {
            Operation::PutObject | Operation::CreateMultipartUpload => {
                Some(file_type.unwrap_or("application/octet-stream"))
            }
            Operation::CompleteMultipartUpload { .. } => Some("application/xml"),
            _ => None,
        }
    }
}

/// A signed request: where to send it, and the headers to send with it (those the signature
/// covers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presigned {
    pub url: String,
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PresignError {
    #[error(transparent)]
    Unsignable(#[from] Unsignable),
    #[error("signing failed: {0}")]
    Signer(String),
}

/// Signs `op` on `key` with `creds` for `expires_in` from `now`. Fails on a value that
/// cannot be signed as it is (a control character in the Content-Type).
pub fn presign(
    storage: &StorageConfig,
    creds: &Credentials,
    key: &str,
    op: &Operation,
    content_type: Option<&str>,
    expires_in: Duration,
    now: SystemTime,
) -> Result<Presigned, PresignError> {
    let headers: BTreeMap<String, String> = content_type
        .map(|t| ("content-type".to_owned(), t.to_owned()))
        .into_iter()
        .collect();
    let request = Request {
        method: op.method(),
        subresources: op.subresources(),
        content_type,
    };
    let url = signed_url(storage, creds, key, &request, expires_in, now)?;
    Ok(Presigned { url, headers })
}

/// The longest a SigV4 presigned URL may live.
pub const MAX_S3_PRESIGN: Duration = Duration::from_secs(604_800);

/// A URL that lets whoever holds it GET the object `key` of `bucket` (the input bucket or a
/// workflow's output bucket, on the same client-facing `storage.endpoint`) for `expires_in`
/// from `now`, signed with `creds` (the service keys, so it lives as long as asked): OSS V1
/// query signing or SigV4 (host only), by `storage.provider`. Fails for a key
/// [`crate::storage::check_object_key`] refuses (a client would resolve its dot segments into
/// another object), and on S3 for more than [`MAX_S3_PRESIGN`].
pub fn get_url(
    storage: &StorageConfig,
    creds: &Credentials,
    bucket: &str,
    key: &str,
    expires_in: Duration,
    now: SystemTime,
) -> Result<String, PresignError> {
    crate::storage::check_object_key(key).map_err(|why| PresignError::Signer(why.to_owned()))?;
    if storage.provider == Provider::S3 && expires_in > MAX_S3_PRESIGN {
        return Err(PresignError::Signer(
            "a SigV4 URL lives at most 7 days".into(),
        ));
    }
    let other;
    let storage = if bucket == storage.bucket {
        storage
    } else {
        other = StorageConfig {
            bucket: bucket.to_owned(),
            ..storage.clone()
        };
        &other
    };
    let request = Request {
        method: "GET",
        subresources: Vec::new(),
        content_type: None,
    };
    signed_url(storage, creds, key, &request, expires_in, now)
}

/// What is signed of one request besides the object and the expiry.
struct Request<'a> {
    method: &'static str,
    /// Sorted by name (`None`: a bare name).
    subresources: Vec<(&'static str, Option<String>)>,
    content_type: Option<&'a str>,
}

/// The presigned URL of `request` on `key` in `storage.bucket`, by provider.
fn signed_url(
    storage: &StorageConfig,
    creds: &Credentials,
    key: &str,
    request: &Request<'_>,
    expires_in: Duration,
    now: SystemTime,
) -> Result<String, PresignError> {
    let bucket_url = storage.bucket_url();
    let base = format!("{}/{}", bucket_url.trim_end_matches('/'), encode_key(key));
    match storage.provider {
        Provider::Aliyun => {
            let expires = now
                .checked_add(expires_in)
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .ok_or_else(|| PresignError::Signer("expiry out of range".into()))?
                .as_secs();
            Ok(oss_presigned_url(
                &base,
                &storage.bucket,
                creds,
                key,
                request,
                expires,
            )?)
        }
        Provider::S3 => s3_presigned_url(&base, &storage.region, creds, request, expires_in, now)
            .map_err(PresignError::Signer),
    }
}

fn query_encode(value: &str) -> String {
    crate::signing::percent_encode(value)
}

/// OSS V1 query signing: the signature covers the verb, the Content-Type, `Expires` and
/// `/{bucket}/{key}` with the sub-resources (the STS token among them), raw.
fn oss_presigned_url(
    base: &str,
    bucket: &str,
    creds: &Credentials,
    key: &str,
    request: &Request<'_>,
    expires: u64,
) -> Result<String, Unsignable> {
    let subresources: Vec<(&str, Option<&str>)> = request
        .subresources
        .iter()
        .map(|(name, value)| (*name, value.as_deref()))
        .collect();
    let query = oss_presigned_query(
        &OssQuery {
            verb: request.method,
            content_type: request.content_type.unwrap_or_default(),
            bucket,
            key,
            subresources: &subresources,
            expires,
        },
        &creds.access_key_id,
        creds.access_key_secret.expose_secret(),
        creds.security_token.expose_secret(),
    )?;
    Ok(format!("{base}?{query}"))
}

/// SigV4 query signing by AWS's signer: host signed, payload unsigned (the browser streams
/// it), the session token in `X-Amz-Security-Token`. No other header is signed: Ceph RGW
/// authenticates a browser's CORS preflight by the URL's query, and refuses the preflight of
/// a URL signed with session credentials over any header but `host` (measured with RGW 16),
/// which would stop every browser upload. What unsigned headers could do there is closed
/// elsewhere: the session policy grants no reads (so no copy source), `bucket setup` makes
/// public ACLs grant nothing, and verification refuses active content types.
fn s3_presigned_url(
    base: &str,
    region: &str,
    creds: &Credentials,
    request: &Request<'_>,
    expires_in: Duration,
    now: SystemTime,
) -> Result<String, String> {
    use aws_sigv4::http_request::{
        PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
        UriPathNormalizationMode, sign,
    };
    let query: Vec<String> = request
        .subresources
        .iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={}", query_encode(v)),
            None => format!("{k}="),
        })
        .collect();
    let url = if query.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", query.join("&"))
    };
    let token = creds.security_token.expose_secret();
    let identity = aws_credential_types::Credentials::new(
        &creds.access_key_id,
        creds.access_key_secret.expose_secret(),
        (!token.is_empty()).then(|| token.to_owned()),
        None,
        "mediagate",
    )
    .into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(expires_in);
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("s3")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let signable = SignableRequest::new(
        request.method,
        url.as_str(),
        std::iter::empty(),
        SignableBody::UnsignedPayload,
    )
    .map_err(|e| e.to_string())?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    let signed: Vec<String> = instructions
        .params()
        .iter()
        .map(|(k, v)| format!("{k}={}", query_encode(v)))
        .collect();
    let separator = if query.is_empty() { '?' } else { '&' };
    Ok(format!("{url}{separator}{}", signed.join("&")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use secrecy::SecretString;

    fn creds(id: &str, token: &str) -> Credentials {
        Credentials {
            access_key_id: id.into(),
            access_key_secret: SecretString::from("testsecret"),
            security_token: SecretString::from(token),
            expiration: Utc::now(),
            obtained_at: Utc::now(),
        }
    }

    fn signature(url: &str) -> String {
        let query = url.split_once('?').unwrap().1;
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "Signature")
            .unwrap()
            .1
            .into_owned()
    }

    const KEY: &str = "uploads/alice/01/trip.mp4";

    fn oss_url(
        creds: &Credentials,
        op: &Operation,
        content_type: Option<&str>,
    ) -> Result<String, Unsignable> {
        let request = Request {
            method: op.method(),
            subresources: op.subresources(),
            content_type,
        };
        oss_presigned_url(BASE, "media-in", creds, KEY, &request, EXPIRES)
    }
    const EXPIRES: u64 = 1_893_456_000;
    const BASE: &str = "https://media-in.oss-cn-hangzhou.aliyuncs.com/uploads/alice/01/trip.mp4";

    /// TV-PRESIGN-1..4, from the official `oss2` SDK's `sign_url` (docs/protocols.md 4b).
    #[test]
    fn oss_query_signatures_match_the_oss2_vectors() {
        let plain = creds("testid", "");
        let url = oss_url(&plain, &Operation::PutObject, None).unwrap();
        assert_eq!(signature(&url), "rt1NqtEA1PevZtOMUF4kruvvOpE=");
        assert!(url.starts_with(&format!(
            "{BASE}?OSSAccessKeyId=testid&Expires={EXPIRES}&Signature="
        )));
        let typed = oss_url(&plain, &Operation::PutObject, Some("video/mp4")).unwrap();
        assert_eq!(signature(&typed), "QPaeQKG4lnIS+AAONn9vPKECJ6k=");
        let sts = creds("STS.testid", "CAIStoken+/=");
        let part = Operation::UploadPart {
            upload_id: "0004B9894A22E5B1888A1E29F8236E2D".into(),
            part_number: 2,
        };
        let url = oss_url(&sts, &part, None).unwrap();
        assert_eq!(signature(&url), "wlOzPcrrpG62xy614qVCl8vYaAs=");
        assert!(
            url.contains("?partNumber=2&security-token=CAIStoken%2B%2F%3D&uploadId=0004B9894A22E5B1888A1E29F8236E2D&OSSAccessKeyId=STS.testid&"),
            "{url}"
        );
        let create = oss_url(&sts, &Operation::CreateMultipartUpload, None).unwrap();
        assert_eq!(signature(&create), "MjC7n13vY6xGt+tj0yGSDdKvRME=");
    }

    #[test]
    fn operations_are_named_by_method_and_multipart_fields() {
        use Operation::*;
        assert_eq!(Operation::parse("PUT", None, None), Ok(PutObject));
        assert_eq!(
            Operation::parse("POST", None, None),
            Ok(CreateMultipartUpload)
        );
        assert!(matches!(
            Operation::parse("PUT", Some("u"), Some(1)),
            Ok(UploadPart { .. })
        ));
        assert!(matches!(
            Operation::parse("GET", Some("u"), None),
            Ok(ListParts { .. })
        ));
        assert!(matches!(
            Operation::parse("POST", Some("u"), None),
            Ok(CompleteMultipartUpload { .. })
        ));
        assert!(matches!(
            Operation::parse("DELETE", Some("u"), None),
            Ok(AbortMultipartUpload { .. })
        ));
        for (method, id, part) in [
            ("GET", None, None),
            ("DELETE", None, None),
            ("PUT", Some("u"), None),
            ("PUT", Some("u"), Some(0)),
            ("PUT", Some("u"), Some(10_001)),
            ("PATCH", None, None),
            ("PUT", Some("a b"), Some(1)),
            ("PUT", Some(""), Some(1)),
            ("GET", Some("0004B9&x-oss-process=image/info"), None),
            ("DELETE", Some("id%26more"), None),
        ] {
            assert!(
                Operation::parse(method, id, part).is_err(),
                "{method} {id:?} {part:?}"
            );
        }
    }

    #[test]
    fn multipart_ids_as_stores_mint_them_are_accepted() {
        for id in [
            "0004B9894A22E5B1888A1E29F8236E2D",
            "2~m9vNtB3Wv1jXD0ttxxeQ2ULpPuVnpEO",
            "VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA",
            "ZTM1YmQ0.NzgtNDcx_MS00YjE5LWE5MDE+/Zg==",
        ] {
            assert!(is_multipart_id(id), "{id}");
        }
    }

    #[test]
    fn s3_urls_sign_only_the_host_and_name_the_type_to_send() {
        let storage = StorageConfig {
            provider: Provider::S3,
            bucket: "media-in".into(),
            endpoint: "http://127.0.0.1:7480".into(),
            ..StorageConfig::default()
        };
        let signed = presign(
            &storage,
            &creds("AK", "tok"),
            KEY,
            &Operation::PutObject,
            Operation::PutObject.content_type(None),
            Duration::from_secs(60),
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(signed.headers["content-type"], "application/octet-stream");
        assert_eq!(signed.headers.len(), 1);
        assert!(
            signed.url.contains("X-Amz-SignedHeaders=host&"),
            "{}",
            signed.url
        );
    }

    #[test]
    fn oss_refuses_a_content_type_that_would_write_lines_of_its_own() {
        let evil = "video/mp4\n4102444800\n/media-in/uploads/bob/x";
        assert!(matches!(
            oss_url(&creds("testid", ""), &Operation::PutObject, Some(evil)),
            Err(Unsignable("Content-Type"))
        ));
    }

    fn at(unix_seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(unix_seconds)
    }

    /// TV-GET-1/2 (docs/protocols.md §9) through the whole function: the bucket's host on the
    /// client-facing endpoint, `Expires` = now + lifetime.
    #[test]
    fn oss_get_urls_match_the_oss2_vectors() {
        let storage = StorageConfig {
            bucket: "media-input".into(),
            endpoint: "https://oss-cn-hangzhou.aliyuncs.com".into(),
            internal_endpoint: Some("http://10.0.0.1".into()),
            ..StorageConfig::default()
        };
        let lifetime = Duration::from_secs(3600);
        let key = "outputs/abc/720p.mp4";
        let now = at(1_700_000_000 - 3600);
        let url = get_url(
            &storage,
            &creds("testid", ""),
            "examplebucket",
            key,
            lifetime,
            now,
        );
        assert_eq!(
            url.unwrap(),
            "https://examplebucket.oss-cn-hangzhou.aliyuncs.com/outputs/abc/720p.mp4?OSSAccessKeyId=testid&Expires=1700000000&Signature=QdJQkr4LZpz78gNqpYYhFQ6km9I%3D"
        );
        let sts = creds("STS.testid", "tok");
        let url = get_url(&storage, &sts, "examplebucket", key, lifetime, now).unwrap();
        assert_eq!(signature(&url), "J8LxxyY9n3UG5d+zxlAztrkFHhk=");
        assert!(
            url.contains("?security-token=tok&OSSAccessKeyId=STS.testid&"),
            "{url}"
        );
        // The input bucket itself, and a key that needs encoding.
        let url = get_url(&storage, &sts, "media-input", "a b/視+1.mp4", lifetime, now).unwrap();
        assert!(
            url.starts_with(
                "https://media-input.oss-cn-hangzhou.aliyuncs.com/a%20b/%E8%A6%96%2B1.mp4?"
            ),
            "{url}"
        );
    }

    /// The presigned GET of AWS's SigV4 documentation ("Authenticating Requests: Using Query
    /// Parameters"), host only and an unsigned payload.
    #[test]
    fn s3_get_urls_match_the_aws_example() {
        let storage = StorageConfig {
            provider: Provider::S3,
            bucket: "media-input".into(),
            region: "us-east-1".into(),
            endpoint: "https://s3.amazonaws.com".into(),
            ..StorageConfig::default()
        };
        let aws = Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            access_key_secret: SecretString::from("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            ..creds("", "")
        };
        let url = get_url(
            &storage,
            &aws,
            "examplebucket",
            "test.txt",
            Duration::from_secs(86_400),
            at(1_369_353_600),
        )
        .unwrap();
        assert_eq!(
            url,
            "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
        // A local store is addressed by path.
        let local = StorageConfig {
            endpoint: "http://127.0.0.1:7480".into(),
            ..storage.clone()
        };
        let url = get_url(
            &local,
            &creds("AK", "tok"),
            "media-out",
            "o/a.mp4",
            Duration::from_secs(60),
            SystemTime::now(),
        )
        .unwrap();
        assert!(
            url.starts_with("http://127.0.0.1:7480/media-out/o/a.mp4?X-Amz-"),
            "{url}"
        );
        assert!(url.contains("&X-Amz-Security-Token=tok"), "{url}");
        let week = Duration::from_secs(7 * 86_400);
        assert!(get_url(&storage, &aws, "b-1", "k", week, SystemTime::now()).is_ok());
        assert!(
            get_url(
                &storage,
                &aws,
                "b-1",
                "k",
                week + Duration::from_secs(1),
                SystemTime::now()
            )
            .is_err()
        );
    }

    #[test]
    fn get_urls_refuse_keys_a_client_would_read_as_another_object() {
        let storage = StorageConfig::default();
        for key in ["", "a/../b.mp4", "a//b", "./a", "a\\b", "a\nb"] {
            assert!(
                matches!(
                    get_url(
                        &storage,
                        &creds("id", ""),
                        "b-1",
                        key,
                        Duration::from_secs(60),
                        SystemTime::now()
                    ),
                    Err(PresignError::Signer(_))
                ),
                "{key:?}"
            );
        }
    }

    #[test]
    fn keys_are_encoded_once_with_slashes_kept() {
        assert_eq!(
            encode_key("uploads/a b/視+1.mp4"),
            "uploads/a%20b/%E8%A6%96%2B1.mp4"
        );
    }
}
