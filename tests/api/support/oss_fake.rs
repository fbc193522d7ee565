//! A loopback OSS bucket, addressed as a bucket's own domain (a custom domain, so requests
//! are `/{key}` while signatures cover `/{bucket}/{key}`), that checks requests the way OSS
//! does: the V1 header signature recomputed from the verb, Content-MD5, Content-Type, Date,
//! the `x-oss-` headers and the canonical resource (mismatch -> 403 `SignatureDoesNotMatch`),
//! and the Date within 15 minutes. It serves HEAD and GET (with `Range`) of the objects a
//! test puts, ETags as OSS writes them, and symbolic links with `x-oss-object-type: Symlink`,
//! and lists them (ListObjectsV2: `prefix`, `start-after`, `max-keys`, continuation tokens).
//! `If-Match` is honoured as OSS does (412 `PreconditionFailed` when the quoted ETag differs).
//! It makes server-side copies as OSS does, signed like any other request with their
//! `x-oss-copy-source*` headers: CopyObject (`PUT` with `x-oss-copy-source`), and the
//! multipart copy of large objects (InitiateMultipartUpload `POST ?uploads`, UploadPartCopy
//! with `x-oss-copy-source-range`, CompleteMultipartUpload `POST ?uploadId=`, Abort), each
//! refused 412 when `x-oss-copy-source-if-match` names another version; and it deletes.
//! Tests can take it down (503), have an object replaced right after a HEAD (an uploader
//! PUTting again between two reads), and count what reached it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hmac::{Hmac, Mac};

pub const BUCKET: &str = "media-input";
/// The service keys default to the STS keys, as in a test app's configuration.
pub const ACCESS_KEY_ID: &str = super::sts_fake::ACCESS_KEY_ID;
pub const ACCESS_KEY_SECRET: &str = super::sts_fake::ACCESS_KEY_SECRET;

#[derive(Clone)]
struct Object {
    bytes: Vec<u8>,
    etag: String,
    content_type: String,
    symlink: bool,
    modified: chrono::DateTime<chrono::Utc>,
}

/// A multipart upload in progress: its key, the type it was created with, and its parts.
struct Multipart {
    key: String,
    content_type: String,
    parts: std::collections::BTreeMap<u32, Vec<u8>>,
}

#[derive(Default)]
struct FakeState {
    objects: Mutex<HashMap<String, Object>>,
    multipart: Mutex<HashMap<String, Multipart>>,
    /// Copy requests (CopyObject and UploadPartCopy) that copied something.
    copies: AtomicUsize,
    /// Per key, the versions that replace the object after each of its next HEADs.
    after_head: Mutex<HashMap<String, VecDeque<Object>>>,
    /// Per key, the versions that replace the object after each next copy request from it.
    after_copy: Mutex<HashMap<String, VecDeque<Object>>>,
    /// The bucket's `?cors` and `?lifecycle` documents.
    bucket_config: Mutex<HashMap<String, String>>,
    down: AtomicBool,
    requests: AtomicUsize,
    refused: AtomicUsize,
    preconditions_failed: AtomicUsize,
}

#[derive(Clone)]
pub struct OssFake {
    pub url: String,
    state: Arc<FakeState>,
}

/// The first bytes of an MP4 file (an `ftyp` box), for objects tests call media.
pub fn mp4_header() -> Vec<u8> {
    let mut head = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isommp41".to_vec();
    head.extend_from_slice(b"\x00\x00\x00\x08free");
    head
}

impl OssFake {
    pub async fn start() -> OssFake {
        let state = Arc::new(FakeState::default());
        let router = Router::new().fallback(handle).with_state(state.clone());
        let url = super::serve_loopback(router).await;
        OssFake { url, state }
    }

    /// Stores `bytes` at `key` with an ETag as OSS writes it (MD5, upper-case hex).
    pub fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) {
        let etag = hex::encode_upper(md5_digest(&bytes));
        self.put_with_etag(key, bytes, content_type, &etag);
    }

    pub fn put_with_etag(&self, key: &str, bytes: Vec<u8>, content_type: &str, etag: &str) {
        self.state
            .objects
            .lock()
            .unwrap()
            .insert(key.to_owned(), object(bytes, content_type, etag));
    }

    /// After the next HEAD of `key` not yet claimed by an earlier call, `bytes` replace the
    /// object (a new version, its own ETag), as a second PUT would, or appear where there was
    /// none, as in a store slow to show a new object.
    pub fn replace_after_head(&self, key: &str, bytes: Vec<u8>, content_type: &str) {
        let etag = hex::encode_upper(md5_digest(&bytes));
        self.state
            .after_head
            .lock()
            .unwrap()
            .entry(key.to_owned())
            .or_default()
            .push_back(object(bytes, content_type, &etag));
    }

    /// After the next copy request (a CopyObject, or one part's) that reads `key`, `bytes`
    /// replace the object, as a second PUT in the middle of a multipart copy would.
    pub fn replace_after_copy(&self, key: &str, bytes: Vec<u8>, content_type: &str) {
        let etag = hex::encode_upper(md5_digest(&bytes));
        self.state
            .after_copy
            .lock()
            .unwrap()
            .entry(key.to_owned())
            .or_default()
            .push_back(object(bytes, content_type, &etag));
    }

    /// Deletes the object at `key`, as its owner would.
    pub fn remove(&self, key: &str) {
        self.state.objects.lock().unwrap().remove(key);
    }

    /// The ETag of the object at `key` now, as OSS writes it.
    pub fn etag(&self, key: &str) -> Option<String> {
        let objects = self.state.objects.lock().unwrap();
        objects.get(key).map(|o| o.etag.clone())
    }

    /// An MP4 of `size` bytes (an `ftyp` box, then zeros) at `key`, unless something is
    /// there already (a test may have put other bytes on purpose).
    pub fn put_media_if_absent(&self, key: &str, size: usize, etag: &str) {
        if self.has(key) {
            return;
        }
        let mut bytes = mp4_header();
        bytes.resize(size.max(bytes.len()), 0);
        bytes.truncate(size.max(1));
        self.put_with_etag(key, bytes, "video/mp4", etag);
    }

    /// A symbolic link at `key`: OSS answers for its target, marked as a link.
    pub fn put_symlink(&self, key: &str) {
        let mut bytes = mp4_header();
        bytes.resize(1024, 0);
        self.put(key, bytes, "video/mp4");
        self.state
            .objects
            .lock()
            .unwrap()
            .get_mut(key)
            .unwrap()
            .symlink = true;
    }

    pub fn has(&self, key: &str) -> bool {
        self.state.objects.lock().unwrap().contains_key(key)
    }

    /// While down, every request is answered 503.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// Requests that reached the fake, and those refused for their signature.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    pub fn refused(&self) -> usize {
        self.state.refused.load(Ordering::SeqCst)
    }

    /// Requests answered 412 because their `If-Match` (or `x-oss-copy-source-if-match`)
    /// named another version.
    pub fn preconditions_failed(&self) -> usize {
        self.state.preconditions_failed.load(Ordering::SeqCst)
    }

    /// Copy requests that copied something (one per CopyObject, one per part).
    pub fn copies(&self) -> usize {
        self.state.copies.load(Ordering::SeqCst)
    }

    /// The bytes of the object at `key` now.
    pub fn bytes(&self, key: &str) -> Option<Vec<u8>> {
        let objects = self.state.objects.lock().unwrap();
        objects.get(key).map(|o| o.bytes.clone())
    }

    /// Every key the bucket holds, in order.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.state.objects.lock().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Multipart uploads neither completed nor aborted.
    pub fn open_multipart_uploads(&self) -> usize {
        self.state.multipart.lock().unwrap().len()
    }
}

fn object(bytes: Vec<u8>, content_type: &str, etag: &str) -> Object {
    Object {
        bytes,
        etag: etag.trim_matches('"').to_ascii_uppercase(),
        content_type: content_type.to_owned(),
        symlink: false,
        modified: chrono::Utc::now(),
    }
}

fn md5_digest(bytes: &[u8]) -> [u8; 16] {
    use md5::Digest;
    md5::Md5::digest(bytes).into()
}

fn error(status: StatusCode, code: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{code}</Message><RequestId>5C3D9175B6FC201293AD4890</RequestId></Error>"
    );
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

/// What OSS signs for a header-signed request (only `/{bucket}/{key}`, no sub-resources, as
/// HEAD and GET of an object have none).
fn string_to_sign(method: &Method, headers: &HeaderMap, resource: &str) -> String {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut oss_headers: Vec<(String, String)> = headers
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("x-oss-"))
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or_default().trim().to_owned(),
            )
        })
        .collect();
    oss_headers.sort();
    let canonical_headers: String = oss_headers
        .iter()
        .map(|(k, v)| format!("{k}:{v}\n"))
        .collect();
    format!(
        "{}\n{}\n{}\n{}\n{canonical_headers}{resource}",
        method.as_str(),
        get("content-md5"),
        get("content-type"),
        get("date"),
    )
}

/// OSS's V1 signature of a request to `resource` (`/{bucket}/{key}`), as OSS computes it.
pub fn v1_signature(secret: &str, method: &Method, headers: &HeaderMap, resource: &str) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(string_to_sign(method, headers, resource).as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A URL signed in its query (`OSSAccessKeyId`, `Expires`, `Signature`), as OSS checks it: the
/// string to sign has the expiry where a header-signed request has its date, and the URL is
/// refused once it has expired.
fn query_signed(method: &Method, query: &HashMap<String, String>, resource: &str) -> bool {
    let (Some(id), Some(expires), Some(signature)) = (
        query.get("OSSAccessKeyId"),
        query.get("Expires"),
        query.get("Signature"),
    ) else {
        return false;
    };
    let Ok(expiry) = expires.parse::<i64>() else {
        return false;
    };
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(ACCESS_KEY_SECRET.as_bytes()).unwrap();
    mac.update(format!("{}\n\n\n{expires}\n{resource}", method.as_str()).as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    id == ACCESS_KEY_ID && expiry >= chrono::Utc::now().timestamp() && *signature == expected
}

fn signed(method: &Method, headers: &HeaderMap, resource: &str) -> bool {
    let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((id, signature)) = auth.strip_prefix("OSS ").and_then(|a| a.split_once(':')) else {
        return false;
    };
    let fresh = headers
        .get(header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok())
        .is_some_and(|d| (chrono::Utc::now().timestamp() - d.timestamp()).abs() <= 900);
    id == ACCESS_KEY_ID
        && fresh
        && signature == v1_signature(ACCESS_KEY_SECRET, method, headers, resource)
}

async fn handle(
    State(state): State<Arc<FakeState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    if state.down.load(Ordering::SeqCst) {
        return error(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable");
    }
    let key = percent_encoding::percent_decode_str(uri.path().trim_start_matches('/'))
        .decode_utf8_lossy()
        .into_owned();
    // Sub-resources are signed (sorted by name, raw values, a bare name when empty); the
    // listing parameters are not.
    let config = ["cors", "lifecycle"]
        .into_iter()
        .find(|sub| key.is_empty() && query.contains_key(*sub));
    let mut subresources: Vec<String> = SUBRESOURCES
        .iter()
        .filter_map(|name| {
            query.get(*name).map(|value| match value.as_str() {
                "" => (*name).to_owned(),
                value => format!("{name}={value}"),
            })
        })
        .collect();
    subresources.sort();
    let resource = match subresources.is_empty() {
        true => format!("/{BUCKET}/{key}"),
        false => format!("/{BUCKET}/{key}?{}", subresources.join("&")),
    };
    let by_query = query.contains_key("Signature") && method == Method::GET;
    if !(signed(&method, &headers, &resource)
        || by_query && query_signed(&method, &query, &resource))
    {
        state.refused.fetch_add(1, Ordering::SeqCst);
        return error(StatusCode::FORBIDDEN, "SignatureDoesNotMatch");
    }
    if let Some(sub) = config {
        return bucket_config(&state, &method, sub, &headers, body);
    }
    if key.is_empty() && method == Method::GET {
        return list(&state, &query);
    }
    if headers.contains_key("x-oss-copy-source") && method == Method::PUT {
        return copy(&state, &key, &headers, &query);
    }
    match (
        &method,
        query.get("uploadId"),
        query.contains_key("uploads"),
    ) {
        (&Method::POST, None, true) => return initiate(&state, &key, &headers),
        (&Method::POST, Some(id), _) => return complete(&state, &key, id, &body),
        (&Method::DELETE, Some(id), _) => {
            state.multipart.lock().unwrap().remove(id);
            return StatusCode::NO_CONTENT.into_response();
        }
        (&Method::DELETE, None, _) => {
            state.objects.lock().unwrap().remove(&key);
            return StatusCode::NO_CONTENT.into_response();
        }
        _ => {}
    }
    let found = state.objects.lock().unwrap().get(&key).cloned();
    // This HEAD answers the version it found (or none); the queued one lands right after.
    if method == Method::HEAD {
        let next = state
            .after_head
            .lock()
            .unwrap()
            .get_mut(&key)
            .and_then(VecDeque::pop_front);
        if let Some(next) = next {
            state.objects.lock().unwrap().insert(key.clone(), next);
        }
    }
    let Some(object) = found else {
        return error(StatusCode::NOT_FOUND, "NoSuchKey");
    };
    // OSS compares the quoted ETag it would send; an unquoted or other-case value is another.
    let if_match = headers.get(header::IF_MATCH).map(|v| v.as_bytes());
    if if_match.is_some_and(|v| v != format!("\"{}\"", object.etag).as_bytes()) {
        state.preconditions_failed.fetch_add(1, Ordering::SeqCst);
        return error(StatusCode::PRECONDITION_FAILED, "PreconditionFailed");
    }
    let mut response = match (method.clone(), range(&headers, object.bytes.len())) {
        (Method::HEAD, _) => {
            let mut r = StatusCode::OK.into_response();
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, object.bytes.len().into());
            r
        }
        (Method::GET, Some((start, end))) => {
            let total = object.bytes.len();
            let mut r = (
                StatusCode::PARTIAL_CONTENT,
                object.bytes[start..=end].to_vec(),
            )
                .into_response();
            r.headers_mut().insert(
                header::CONTENT_RANGE,
                format!("bytes {start}-{end}/{total}").parse().unwrap(),
            );
            r
        }
        (Method::GET, None) => (StatusCode::OK, object.bytes.clone()).into_response(),
        _ => return error(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
    };
    let h = response.headers_mut();
    h.insert(
        header::ETAG,
        format!("\"{}\"", object.etag).parse().unwrap(),
    );
    h.insert(header::CONTENT_TYPE, object.content_type.parse().unwrap());
    h.insert(
        header::LAST_MODIFIED,
        "Wed, 02 Dec 2026 00:00:00 GMT".parse().unwrap(),
    );
    let kind = if object.symlink { "Symlink" } else { "Normal" };
    h.insert("x-oss-object-type", kind.parse().unwrap());
    response
}

/// The sub-resources OSS signs that requests to the fake carry.
const SUBRESOURCES: &[&str] = &[
    "continuation-token",
    "cors",
    "lifecycle",
    "partNumber",
    "uploadId",
    "uploads",
];

fn xml(status: StatusCode, body: String) -> Response {
    let body = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{body}");
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

/// CopyObject, or UploadPartCopy with `partNumber` and `uploadId`: the source named by
/// `x-oss-copy-source` (`/{bucket}/{percent-encoded key}`), only while it is the version
/// `x-oss-copy-source-if-match` names, as OSS does.
fn copy(
    state: &FakeState,
    key: &str,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(source) = header("x-oss-copy-source")
        .and_then(|s| s.strip_prefix(&format!("/{BUCKET}/")))
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
    else {
        return error(StatusCode::BAD_REQUEST, "InvalidArgument");
    };
    let Some(found) = state.objects.lock().unwrap().get(&source).cloned() else {
        return error(StatusCode::NOT_FOUND, "NoSuchKey");
    };
    if let Some(etag) = header("x-oss-copy-source-if-match")
        && etag != format!("\"{}\"", found.etag)
    {
        state.preconditions_failed.fetch_add(1, Ordering::SeqCst);
        return error(StatusCode::PRECONDITION_FAILED, "PreconditionFailed");
    }
    let modified = "2026-12-02T00:00:00.000Z";
    // This request copies the version it found; the queued one lands right after.
    let next = state
        .after_copy
        .lock()
        .unwrap()
        .get_mut(&source)
        .and_then(VecDeque::pop_front);
    if let Some(next) = next {
        state.objects.lock().unwrap().insert(source.clone(), next);
    }
    let (Some(number), Some(id)) = (query.get("partNumber"), query.get("uploadId")) else {
        // OSS copies at most 1 GB in one request.
        if found.bytes.len() > 1 << 30 {
            return error(StatusCode::BAD_REQUEST, "InvalidRequest");
        }
        state.copies.fetch_add(1, Ordering::SeqCst);
        let copy = Object {
            modified: chrono::Utc::now(),
            ..found
        };
        let etag = copy.etag.clone();
        state.objects.lock().unwrap().insert(key.to_owned(), copy);
        return xml(
            StatusCode::OK,
            format!(
                "<CopyObjectResult><LastModified>{modified}</LastModified><ETag>\"{etag}\"</ETag></CopyObjectResult>"
            ),
        );
    };
    let range = header("x-oss-copy-source-range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)));
    let Some((first, last)) = range.filter(|(a, b)| a <= b && *b < found.bytes.len()) else {
        return error(StatusCode::RANGE_NOT_SATISFIABLE, "InvalidRange");
    };
    let mut uploads = state.multipart.lock().unwrap();
    let (Some(upload), Ok(number)) = (uploads.get_mut(id.as_str()), number.parse::<u32>()) else {
        return error(StatusCode::NOT_FOUND, "NoSuchUpload");
    };
    if upload.key != key {
        return error(StatusCode::NOT_FOUND, "NoSuchUpload");
    }
    let bytes = found.bytes[first..=last].to_vec();
    let etag = hex::encode_upper(md5_digest(&bytes));
    upload.parts.insert(number, bytes);
    state.copies.fetch_add(1, Ordering::SeqCst);
    xml(
        StatusCode::OK,
        format!(
            "<CopyPartResult><LastModified>{modified}</LastModified><ETag>\"{etag}\"</ETag></CopyPartResult>"
        ),
    )
}

/// InitiateMultipartUpload: a new upload id for `key`, with the type it is created with.
fn initiate(state: &FakeState, key: &str, headers: &HeaderMap) -> Response {
    let id = uuid::Uuid::new_v4()
        .simple()
        .to_string()
        .to_ascii_uppercase();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    state.multipart.lock().unwrap().insert(
        id.clone(),
        Multipart {
            key: key.to_owned(),
            content_type,
            parts: Default::default(),
        },
    );
    xml(
        StatusCode::OK,
        format!(
            "<InitiateMultipartUploadResult><Bucket>{BUCKET}</Bucket><Key>{key}</Key><UploadId>{id}</UploadId></InitiateMultipartUploadResult>"
        ),
    )
}

/// CompleteMultipartUpload: the listed parts, in order, each with the ETag it was given,
/// become the object (ETag as OSS writes it: MD5 of the parts' MD5s, `-` and their count).
fn complete(state: &FakeState, key: &str, id: &str, body: &[u8]) -> Response {
    let body = String::from_utf8_lossy(body);
    let listed: Vec<(u32, String)> = body
        .split("<Part>")
        .skip(1)
        .filter_map(|part| {
            let value = |name: &str| {
                let start = part.find(&format!("<{name}>"))? + name.len() + 2;
                let end = part.find(&format!("</{name}>"))?;
                Some(part[start..end].to_owned())
            };
            Some((value("PartNumber")?.parse().ok()?, value("ETag")?))
        })
        .collect();
    let Some(upload) = state.multipart.lock().unwrap().remove(id) else {
        return error(StatusCode::NOT_FOUND, "NoSuchUpload");
    };
    if upload.key != key || listed.is_empty() {
        return error(StatusCode::BAD_REQUEST, "InvalidPart");
    }
    let (mut bytes, mut digests) = (Vec::new(), Vec::new());
    for (number, etag) in &listed {
        let Some(part) = upload.parts.get(number) else {
            return error(StatusCode::BAD_REQUEST, "InvalidPart");
        };
        let digest = md5_digest(part);
        if !etag
            .trim_matches('"')
            .eq_ignore_ascii_case(&hex::encode(digest))
        {
            return error(StatusCode::BAD_REQUEST, "InvalidPart");
        }
        bytes.extend_from_slice(part);
        digests.extend_from_slice(&digest);
    }
    let etag = format!(
        "{}-{}",
        hex::encode_upper(md5_digest(&digests)),
        listed.len()
    );
    let object = object(bytes, &upload.content_type, &etag);
    state.objects.lock().unwrap().insert(key.to_owned(), object);
    xml(
        StatusCode::OK,
        format!(
            "<CompleteMultipartUploadResult><Bucket>{BUCKET}</Bucket><Key>{key}</Key><ETag>\"{etag}\"</ETag></CompleteMultipartUploadResult>"
        ),
    )
}

/// PutBucketCors / PutBucketLifecycle (Content-MD5 checked, as OSS requires) and their GETs.
fn bucket_config(
    state: &FakeState,
    method: &Method,
    sub: &str,
    headers: &HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut config = state.bucket_config.lock().unwrap();
    match *method {
        Method::GET => match config.get(sub) {
            Some(doc) => (StatusCode::OK, doc.clone()).into_response(),
            None => error(StatusCode::NOT_FOUND, "NoSuchCORSConfiguration"),
        },
        Method::PUT => {
            let md5 = base64::engine::general_purpose::STANDARD.encode(md5_digest(&body));
            if headers.get("content-md5").and_then(|v| v.to_str().ok()) != Some(md5.as_str()) {
                return error(StatusCode::BAD_REQUEST, "InvalidDigest");
            }
            config.insert(sub.to_owned(), String::from_utf8_lossy(&body).into_owned());
            StatusCode::OK.into_response()
        }
        _ => error(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
    }
}

impl OssFake {
    /// The bucket's `?cors` or `?lifecycle` document, as last put.
    pub fn bucket_config(&self, sub: &str) -> Option<String> {
        self.state.bucket_config.lock().unwrap().get(sub).cloned()
    }
}

/// ListObjectsV2: keys under `prefix` after `start-after` (or the continuation token), in
/// order, at most `max-keys` of them.
fn list(state: &FakeState, query: &HashMap<String, String>) -> Response {
    let get = |name: &str| query.get(name).cloned().unwrap_or_default();
    let (prefix, after) = (
        get("prefix"),
        get("continuation-token").max(get("start-after")),
    );
    let max: usize = get("max-keys").parse().unwrap_or(1000);
    let objects = state.objects.lock().unwrap();
    let mut keys: Vec<&String> = objects
        .keys()
        .filter(|k| k.starts_with(&prefix) && **k > after)
        .collect();
    keys.sort();
    let truncated = keys.len() > max;
    keys.truncate(max);
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult><Name>{BUCKET}</Name><Prefix>{}</Prefix><MaxKeys>{max}</MaxKeys><KeyCount>{}</KeyCount><IsTruncated>{truncated}</IsTruncated>",
        escape(&prefix),
        keys.len()
    );
    for key in &keys {
        let o = &objects[*key];
        xml += &format!(
            "<Contents><Key>{}</Key><LastModified>{}</LastModified><ETag>\"{}\"</ETag><Type>Normal</Type><Size>{}</Size><StorageClass>Standard</StorageClass></Contents>",
            escape(key),
            o.modified.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            o.etag,
            o.bytes.len()
        );
    }
    if truncated && let Some(last) = keys.last() {
        xml += &format!(
            "<NextContinuationToken>{}</NextContinuationToken>",
            escape(last)
        );
    }
    xml += "</ListBucketResult>";
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/xml")],
        xml,
    )
        .into_response()
}

/// The inclusive byte range a `Range: bytes=a-b` header asks for, within `len`.
fn range(headers: &HeaderMap, len: usize) -> Option<(usize, usize)> {
    let spec = headers
        .get(header::RANGE)?
        .to_str()
        .ok()?
        .strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    let start: usize = start.parse().ok()?;
    let end: usize = end.parse().ok().unwrap_or(len.saturating_sub(1));
    (start < len).then(|| (start, end.min(len - 1)))
}
