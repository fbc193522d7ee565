//! MPS (ApsaraVideo Media Processing, Mts 2014-06-18): the `AddMedia` sink that registers an
//! uploaded object and starts a media workflow on it, the queries that follow each run it
//! started to its outcome (`QueryMediaWorkflowExecutionList`, `QueryMediaList`), and the pure
//! rules that read their answers (docs/protocols.md §7, §9). One signed RPC call per attempt:
//! the trigger queue and the outcome follower own retries and pacing, so this module only says
//! what an answer means.

use std::time::Duration;

use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use tracing::instrument;

use super::{Delivered, Delivery, DeliveryError};
use crate::signing::{RpcCall, percent_encode, rpc_signed_query};
use crate::upstream::without_url;

/// AddMedia's limit on `FileURL` (and `CoverURL`), in bytes.
const MAX_FILE_URL: usize = 3200;
/// Longest provider message quoted in an error or a verdict.
const MAX_MESSAGE: usize = 200;
/// Longest provider error code kept in a verdict.
const MAX_CODE: usize = 64;
/// RunIds per `QueryMediaWorkflowExecutionList`, MediaIds per `QueryMediaList`.
pub const MAX_IDS_PER_QUERY: usize = 10;

/// Client for MPS (Alibaba RPC signature v1, HMAC-SHA1): `AddMedia` as a [`super::Sink`], the
/// outcome lookups as [`MpsQueries`].
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

/// The lookups that follow MPS runs to their outcome, at the boundary so that the follower can
/// be tested against a stand-in. [`MpsClient`] implements it with one signed call each.
#[async_trait::async_trait]
pub trait MpsQueries: Send + Sync {
    /// `QueryMediaWorkflowExecutionList` for at most [`MAX_IDS_PER_QUERY`] runs.
    async fn query_runs(&self, run_ids: &[String]) -> Result<RunLookup, QueryError>;
    /// `QueryMediaList` with plays and snapshots for at most [`MAX_IDS_PER_QUERY`] media.
    async fn query_media(&self, media_ids: &[String]) -> Result<MediaLookup, QueryError>;
}

#[async_trait::async_trait]
impl MpsQueries for MpsClient {
    async fn query_runs(&self, run_ids: &[String]) -> Result<RunLookup, QueryError> {
        MpsClient::query_runs(self, run_ids).await
    }

    async fn query_media(&self, media_ids: &[String]) -> Result<MediaLookup, QueryError> {
        MpsClient::query_media(self, media_ids).await
    }
}

/// Why a lookup gave no answer. None of them says anything about the run: the caller looks
/// again later (backing off on all three) and never fails a run for one. Messages name no
/// secret, signature or signed URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// `Throttling*` codes, HTTP 429 and 503: the account's shared budget (100 calls/s) is
    /// spent; slow down.
    #[error("MPS throttled the query: {0}")]
    Throttled(String),
    /// Network errors, timeouts, other 5xx, an answer that cannot be read.
    #[error("MPS query failed: {0}")]
    Transient(String),
    /// The request itself (signature, keys, permissions, parameters; more than
    /// [`MAX_IDS_PER_QUERY`] ids): repeating it as is will not help, so it wants an operator.
    #[error("MPS refused the query: {0}")]
    Refused(String),
}

/// What `QueryMediaWorkflowExecutionList` says about the runs asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunLookup {
    /// The runs MPS knows, in its order; entries without a RunId are left out.
    pub executions: Vec<Execution>,
    /// `NonExistRunIds`: runs MPS does not know (yet, or any more).
    pub missing: Vec<String>,
}

/// One run of a media workflow (`MediaWorkflowExecution`), read leniently: absent fields are
/// empty, unknown fields and activity types are kept or ignored, never an error.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Execution {
    #[serde(default, deserialize_with = "text_or_empty")]
    pub run_id: String,
    /// The media the run works on; empty when the answer has none.
    #[serde(default, deserialize_with = "text_or_empty")]
    pub media_id: String,
    /// `Running`, `Completed`, `Fail` (older answers: `Success` for `Completed`); see
    /// [`run_verdict`].
    #[serde(default, deserialize_with = "text_or_empty")]
    pub state: String,
    /// `ActivityList`: `{"Activity": [...]}` in the API, a plain array in workflow messages.
    #[serde(rename = "ActivityList", default, deserialize_with = "listed")]
    pub activities: Vec<Activity>,
}

/// One activity (node) of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Activity {
    #[serde(default, deserialize_with = "text_or_empty")]
    pub name: String,
    /// `Type`: `Start`, `Transcode`, `Snapshot`, `Analysis`, `Report`, or a newer one.
    #[serde(rename = "Type", default, deserialize_with = "text_or_empty")]
    pub kind: String,
    /// `Running`, `Success`, `Fail` or `Skipped` (not run by the workflow's choice).
    #[serde(default, deserialize_with = "text_or_empty")]
    pub state: String,
    #[serde(default, deserialize_with = "text")]
    pub code: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub message: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub job_id: Option<String>,
}

/// What `QueryMediaList` says about the media asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaLookup {
    /// The media MPS knows, in its order; entries without a MediaId are left out.
    pub media: Vec<MediaOutputs>,
    /// `NonExistMediaIds`: media MPS does not know.
    pub missing: Vec<String>,
}

/// A medium and what its workflows produced. Measurements are absent until MPS has analysed
/// the input; plays and snapshots are complete only once the runs ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MediaOutputs {
    #[serde(default, deserialize_with = "text_or_empty")]
    pub media_id: String,
    /// `CoverURL`, an output URL like a play's (see [`output_location`]).
    #[serde(rename = "CoverURL", default, deserialize_with = "text")]
    pub cover_url: Option<String>,
    /// `Duration`, given in seconds.
    #[serde(rename = "Duration", default, deserialize_with = "seconds_as_ms")]
    pub duration_ms: Option<u64>,
    #[serde(default, deserialize_with = "whole")]
    pub width: Option<u32>,
    #[serde(default, deserialize_with = "whole")]
    pub height: Option<u32>,
    /// Bytes.
    #[serde(default, deserialize_with = "whole")]
    pub size: Option<u64>,
    #[serde(default, deserialize_with = "text")]
    pub format: Option<String>,
    /// `PlayList.Play`: one per rendition; those without a file URL are left out.
    #[serde(rename = "PlayList", default, deserialize_with = "listed")]
    pub plays: Vec<Play>,
    /// `SnapshotList.Snapshot`; those without a file URL are left out.
    #[serde(rename = "SnapshotList", default, deserialize_with = "listed")]
    pub snapshots: Vec<Snapshot>,
}

/// One rendition a workflow produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Play {
    /// The workflow activity that made it.
    #[serde(default, deserialize_with = "text_or_empty")]
    pub activity_name: String,
    #[serde(
        rename = "MediaWorkflowName",
        default,
        deserialize_with = "text_or_empty"
    )]
    pub workflow_name: String,
    #[serde(default, deserialize_with = "text")]
    pub format: Option<String>,
    #[serde(default, deserialize_with = "whole")]
    pub width: Option<u32>,
    #[serde(default, deserialize_with = "whole")]
    pub height: Option<u32>,
    #[serde(rename = "Duration", default, deserialize_with = "seconds_as_ms")]
    pub duration_ms: Option<u64>,
    #[serde(default, deserialize_with = "whole")]
    pub size: Option<u64>,
    /// kbit/s as MPS gives it, rounded to a whole number.
    #[serde(default, deserialize_with = "whole")]
    pub bitrate: Option<u64>,
    #[serde(default)]
    pub file: OutputFile,
}

/// Images a snapshot activity produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Snapshot {
    #[serde(default, deserialize_with = "text_or_empty")]
    pub activity_name: String,
    /// `Type`: `Single` or `Sequence`.
    #[serde(rename = "Type", default, deserialize_with = "text_or_empty")]
    pub kind: String,
    #[serde(default, deserialize_with = "whole")]
    pub count: Option<u64>,
    #[serde(default)]
    pub file: OutputFile,
}

/// Where an output is: its `http://{bucket}.{oss host}/{key}` URL (see [`output_location`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct OutputFile {
    #[serde(rename = "URL", default, deserialize_with = "text_or_empty")]
    pub url: String,
    /// `State = Deleted`: the output was removed; it counts as missing.
    #[serde(rename = "State", default, deserialize_with = "is_deleted")]
    pub deleted: bool,
}

/// What a run came to, by [`run_verdict`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunVerdict {
    Running,
    Succeeded,
    Failed {
        /// The failed activity's name; empty when the run failed as a whole.
        activity: String,
        /// The activity's code (`ActivityFailed` when it gave none), or `ExecutionFailed`.
        code: String,
        message: String,
    },
}

/// The outcome of a run: any activity in `Fail` fails it (even when the run says
/// `Completed`/`Success`, as MPS's own sample does), with that activity's name, code and
/// message, bounded; a run in `Fail` without a failed activity fails with `ExecutionFailed`;
/// `Completed` or `Success` otherwise succeeds (`Skipped` activities are fine); any other
/// state is still running. States are compared without regard to case.
pub fn run_verdict(e: &Execution) -> RunVerdict {
    let is = |state: &str, name: &str| state.eq_ignore_ascii_case(name);
    if let Some(failed) = e.activities.iter().find(|a| is(&a.state, "Fail")) {
        return RunVerdict::Failed {
            activity: bounded(&failed.name, MAX_CODE),
            code: bounded(failed.code.as_deref().unwrap_or("ActivityFailed"), MAX_CODE),
            message: bounded(failed.message.as_deref().unwrap_or_default(), MAX_MESSAGE),
        };
    }
    if is(&e.state, "Fail") {
        RunVerdict::Failed {
            activity: String::new(),
            code: "ExecutionFailed".into(),
            message: "the media workflow run failed".into(),
        }
    } else if is(&e.state, "Completed") || is(&e.state, "Success") {
        RunVerdict::Succeeded
    } else {
        RunVerdict::Running
    }
}

/// The `(bucket, key)` an MPS output URL names: `http(s)://{bucket}.{oss endpoint host}/
/// {percent-encoded key}`, `%2F` standing for `/` or not; a query or fragment is ignored.
/// Fails, saying why, when there is no bucket label (a valid bucket name) before the endpoint
/// host, or the path does not decode (UTF-8) to a key [`crate::storage::check_object_key`]
/// accepts. Decoding is `%XY` only (`+` stays `+`), and no path normalisation is done, so a
/// `..` segment is refused rather than resolved into another key.
pub fn output_location(url: &str) -> Result<(String, String), &'static str> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        &url[7..]
    } else if lower.starts_with("https://") {
        &url[8..]
    } else {
        return Err("an output URL is http(s)");
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (host, path) = rest
        .split_once('/')
        .ok_or("an output URL names an object")?;
    let (bucket, endpoint) = host
        .split_once('.')
        .ok_or("an output URL's host is {bucket}.{endpoint}")?;
    let endpoint_ok = !endpoint.is_empty()
        && endpoint
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
    if !endpoint_ok || crate::storage::validate_bucket_name(bucket).is_err() {
        return Err("an output URL's host is {bucket}.{endpoint}");
    }
    let key = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| "an output URL's key is not UTF-8")?;
    crate::storage::check_object_key(&key)?;
    Ok((bucket.to_owned(), key.into_owned()))
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

    /// Calls `AddMedia` once for the delivered object, starting `media_workflow_id`; the
    /// answer's MediaId and every RunId are kept.
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
        let (status, body) = self
            .call("AddMedia", &params)
            .await
            .map_err(DeliveryError::Retry)?;
        outcome(status, &body)
    }

    /// `QueryMediaWorkflowExecutionList` for `run_ids` (comma-separated `RunIds`). No ids: an
    /// empty lookup without a call. More than [`MAX_IDS_PER_QUERY`]: [`QueryError::Refused`]
    /// without a call (the caller splits its batches).
    #[instrument(skip_all, fields(runs = run_ids.len()))]
    pub async fn query_runs(&self, run_ids: &[String]) -> Result<RunLookup, QueryError> {
        let Some(ids) = id_list("RunIds", run_ids)? else {
            return Ok(RunLookup::default());
        };
        let (status, body) = self
            .call("QueryMediaWorkflowExecutionList", &[("RunIds", ids)])
            .await
            .map_err(QueryError::Transient)?;
        let answer: RunsAnswer = answer(status, &body)?;
        Ok(RunLookup {
            executions: answer
                .media_workflow_execution_list
                .into_iter()
                .filter(|e| !e.run_id.is_empty())
                .collect(),
            missing: answer.non_exist_run_ids,
        })
    }

    /// `QueryMediaList` for `media_ids` with `IncludePlayList` and `IncludeSnapshotList`.
    /// No ids: an empty lookup without a call. More than [`MAX_IDS_PER_QUERY`]:
    /// [`QueryError::Refused`] without a call.
    #[instrument(skip_all, fields(media = media_ids.len()))]
    pub async fn query_media(&self, media_ids: &[String]) -> Result<MediaLookup, QueryError> {
        let Some(ids) = id_list("MediaIds", media_ids)? else {
            return Ok(MediaLookup::default());
        };
        let params = [
            ("MediaIds", ids),
            ("IncludePlayList", "true".to_owned()),
            ("IncludeSnapshotList", "true".to_owned()),
        ];
        let (status, body) = self
            .call("QueryMediaList", &params)
            .await
            .map_err(QueryError::Transient)?;
        let answer: MediaAnswer = answer(status, &body)?;
        let media = answer
            .media_list
            .into_iter()
            .filter(|m| !m.media_id.is_empty())
            .map(|mut m| {
                m.plays.retain(|p| !p.file.url.is_empty());
                m.snapshots.retain(|s| !s.file.url.is_empty());
                m
            })
            .collect();
        Ok(MediaLookup {
            media,
            missing: answer.non_exist_media_ids,
        })
    }

    /// One signed POST of `action`: the answer's status and body, or why there is none (a
    /// message without the URL, which carries the signature and the access key id).
    async fn call(
        &self,
        action: &'static str,
        params: &[(&'static str, String)],
    ) -> Result<(u16, Vec<u8>), String> {
        let nonce = uuid::Uuid::new_v4().to_string();
        let timestamp = Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let url = self.signed_url(action, params, &nonce, &timestamp);
        let response = self
            .http
            .post(url)
            .send()
            .await
            .map_err(|e| format!("MPS request failed: {}", without_url(&e)))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("reading MPS response: {}", without_url(&e)))?;
        Ok((status, body.to_vec()))
    }

    /// The signed URL for one attempt; nonce and timestamp are fresh each attempt.
    fn signed_url(
        &self,
        action: &str,
        params: &[(&'static str, String)],
        nonce: &str,
        timestamp: &str,
    ) -> String {
        let call = RpcCall {
            action,
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

/// `ids` comma-separated for the parameter `name`; `None` when there are none.
fn id_list(name: &str, ids: &[String]) -> Result<Option<String>, QueryError> {
    if ids.len() > MAX_IDS_PER_QUERY {
        return Err(QueryError::Refused(format!(
            "{name}: {} ids, at most {MAX_IDS_PER_QUERY} per call",
            ids.len()
        )));
    }
    // A comma inside an id would name other runs than the caller's.
    if ids.iter().any(|id| id.is_empty() || id.contains(',')) {
        return Err(QueryError::Refused(format!(
            "{name}: an id is empty or holds a comma"
        )));
    }
    Ok((!ids.is_empty()).then(|| ids.join(",")))
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
    // The protected copy when verification made one: what was verified is what MPS reads.
    let key = delivery.processed_key();
    // A dot segment would make the URL name another object than the one verified.
    if let Err(why) = crate::storage::check_object_key(key) {
        return Err(DeliveryError::Fatal(format!(
            "no FileURL for this key: {why}"
        )));
    }
    let url = file_url(&delivery.bucket, &delivery.region, key);
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
        return match serde_json::from_slice::<AddMediaAnswer>(body) {
            Ok(ok) if !ok.media.media_id.is_empty() => Ok(Delivered {
                media_id: Some(ok.media.media_id),
                run_ids: ok.media.run_id_list,
            }),
            // The media may exist now; retrying can register it twice, but dropping the
            // trigger would lose it, and at-least-once is the queue's promise.
            _ => Err(DeliveryError::Retry(format!(
                "HTTP {status} without a MediaId in the response"
            ))),
        };
    }
    Err(match error_of(status, body) {
        QueryError::Refused(what) => DeliveryError::Fatal(what),
        QueryError::Throttled(what) | QueryError::Transient(what) => DeliveryError::Retry(what),
    })
}

/// A query's answer: `T` from a 2xx body, else the error it says.
fn answer<T: DeserializeOwned>(status: u16, body: &[u8]) -> Result<T, QueryError> {
    if !(200..300).contains(&status) {
        return Err(error_of(status, body));
    }
    // serde's message could quote the body; the status is enough to go on.
    serde_json::from_slice(body)
        .map_err(|_| QueryError::Transient(format!("MPS HTTP {status} with an unreadable answer")))
}

/// Classifies an MPS error answer (any status but 2xx).
fn error_of(status: u16, body: &[u8]) -> QueryError {
    let error: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let code = error.code;
    let message = quote_message(&error.message);
    let throttled = matches!(status, 429 | 503) || code.starts_with("Throttling");
    // Outside 4xx (5xx, and 3xx since redirects are not followed) the service, not the
    // request, is at fault.
    let transient = !(400..500).contains(&status)
        || status == 408
        || matches!(code.as_str(), "InternalError" | "ServiceUnavailable")
        // The next attempt signs with a fresh nonce.
        || code == "SignatureNonceUsed";
    let code_known = !code.is_empty();
    let what = match (code_known, message.is_empty()) {
        (false, _) => format!("HTTP {status}"),
        (true, true) => code,
        (true, false) => format!("{code}: {message}"),
    };
    let with_status = || {
        if code_known {
            format!("MPS HTTP {status} {what}")
        } else {
            format!("MPS {what}")
        }
    };
    if throttled {
        QueryError::Throttled(with_status())
    } else if transient {
        QueryError::Transient(with_status())
    } else {
        // InvalidParameter.*, MissingParameter, SignatureDoesNotMatch,
        // InvalidAccessKeyId.NotFound, Forbidden*, NoPermission and any other 4xx: a fault
        // in the request or our configuration that repeating will not fix.
        QueryError::Refused(what)
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
    bounded(cut, MAX_MESSAGE)
}

/// `text` trimmed, control characters replaced, at most `max` characters.
fn bounded(text: &str, max: usize) -> String {
    text.trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect()
}

#[derive(Deserialize)]
struct AddMediaAnswer {
    #[serde(rename = "Media")]
    media: AddedMedia,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AddedMedia {
    #[serde(default, deserialize_with = "text_or_empty")]
    media_id: String,
    /// `{"RunId": [...]}`.
    #[serde(default, deserialize_with = "listed")]
    run_id_list: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RunsAnswer {
    // Required: an answer without it says nothing about the runs asked for.
    #[serde(deserialize_with = "listed")]
    media_workflow_execution_list: Vec<Execution>,
    #[serde(default, deserialize_with = "listed")]
    non_exist_run_ids: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MediaAnswer {
    #[serde(deserialize_with = "listed")]
    media_list: Vec<MediaOutputs>,
    #[serde(default, deserialize_with = "listed")]
    non_exist_media_ids: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ErrorBody {
    #[serde(rename = "Code")]
    code: String,
    #[serde(rename = "Message")]
    message: String,
}

// Lenient readers for MPS answers: numbers come as strings, lists as `{"Name": [...]}`, and
// one odd value must not cost the whole answer.

/// The items of a list given as `{"Item": [...]}` (the API), a plain array (workflow
/// messages) or `{"Item": {...}}` (a single item); items that do not read as `T` are left out.
fn listed<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Vec<T>, D::Error> {
    let items = match Value::deserialize(d)? {
        Value::Array(items) => items,
        Value::Object(wrapper) => match wrapper.into_iter().next() {
            Some((_, Value::Array(items))) => items,
            Some((_, item @ Value::Object(_))) => vec![item],
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    Ok(items
        .into_iter()
        .filter_map(|item| serde_json::from_value(item).ok())
        .collect())
}

/// A string (or a number, written out); empty, blank or anything else is `None`.
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) if !s.trim().is_empty() => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

fn text_or_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(text(d)?.unwrap_or_default())
}

/// A number, or a string holding one; not negative, not NaN.
fn number(value: Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|n: &f64| n.is_finite() && *n >= 0.0)
}

/// A whole number (fractions rounded) that fits `T`.
fn whole<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<Option<T>, D::Error> {
    Ok(number(Value::deserialize(d)?)
        .filter(|n| *n < u64::MAX as f64)
        .and_then(|n| T::try_from(n.round() as u64).ok()))
}

/// Seconds (`"2.645333"`) as whole milliseconds.
fn seconds_as_ms<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(number(Value::deserialize(d)?)
        .map(|s| s * 1000.0)
        .filter(|ms| *ms < u64::MAX as f64)
        .map(|ms| ms.round() as u64))
}

fn is_deleted<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(text(d)?.is_some_and(|s| s.trim().eq_ignore_ascii_case("Deleted")))
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
            protected_key: None,
            etag: "688A7BF4F233DC9C88A80BF985AB7329".into(),
            size: Some(122_539),
            content_type: Some("video/mp4".into()),
            media,
            container: None,
            rejected: None,
            declared_size: None,
            upload_mode: None,
            report: None,
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
    fn the_file_url_names_the_protected_copy() {
        let protected = Delivery {
            protected_key: Some("verified/alice/job 1/a.mp4".into()),
            ..delivery("uploads/alice/up_1/a.mp4", MediaAttributes::default())
        };
        let params = add_media_params(&protected, "wf-1").unwrap();
        assert_eq!(
            params[0],
            (
                "FileURL",
                "http://media-input.oss-cn-hangzhou.aliyuncs.com/verified/alice/job%201/a.mp4"
                    .to_owned()
            )
        );
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
        let url = mps.signed_url("AddMedia", &params, "nonce-1", "2024-01-01T00:00:00Z");
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
    fn success_yields_the_media_id_and_every_run_id() {
        let body = br#"{"RequestId":"r","Media":{"MediaId":"0123456789abcdef0123456789abcdef","RunIdList":{"RunId":["x","y"]}}}"#;
        assert_eq!(
            outcome(200, body),
            Ok(Delivered {
                media_id: Some("0123456789abcdef0123456789abcdef".into()),
                run_ids: vec!["x".into(), "y".into()],
            })
        );
        // A workflow-less AddMedia starts no run.
        let body = br#"{"Media":{"MediaId":"m","RunIdList":{"RunId":[]}}}"#;
        assert_eq!(outcome(200, body).unwrap().run_ids, Vec::<String>::new());
        let body = br#"{"Media":{"MediaId":"m"}}"#;
        assert_eq!(outcome(200, body).unwrap().run_ids, Vec::<String>::new());
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

    /// The documented answer, after MPS's own sample: the run says `Success` while one
    /// Transcode activity failed; numbers and ids as strings, a newer activity type.
    const RUNS_ANSWER: &str = r#"{
        "RequestId": "r",
        "MediaWorkflowExecutionList": {"MediaWorkflowExecution": [{
            "RunId": "fb5ccdf6a8f3462a8a6f5f4e9e8b1d3e",
            "MediaWorkflowId": "43c3d2a0f7c84b9f9f0d9c8a7b6e5d4c",
            "Name": "transcode-hd",
            "MediaId": "3d3e2e3c4b5a69788796a5b4c3d2e1f0",
            "State": "Success",
            "Input": {"InputFile": {"Bucket": "media-input", "Location": "oss-cn-hangzhou", "Object": "uploads/a.mp4"}, "UserData": "{}"},
            "ActivityList": {"Activity": [
                {"Name": "Act-Start", "Type": "Start", "State": "Success", "Code": "", "Message": "", "StartTime": "2016-04-01T06:53:43Z"},
                {"Name": "Act-HD", "Type": "Transcode", "State": "Skipped"},
                {"Name": "Act-SD", "Type": "Transcode", "State": "Fail", "JobId": "88c6ca184c0e47098a5b665e2a126799",
                 "Code": "InvalidParameter.ResourceContentBad", "Message": "The resource operated \"InputFile\" is bad"},
                {"Name": "Act-Summary", "Type": "Summary", "State": "Success", "Extra": {"Whatever": 1}},
                {"Name": "Act-Report", "Type": "Report", "State": "Success"}
            ]},
            "CreationTime": "2016-04-01T06:53:43Z"
        }, {"State": "Running"}]},
        "NonExistRunIds": {"RunId": ["0000000000000000000000000000dead"]}
    }"#;

    fn activity(name: &str, kind: &str, state: &str) -> Activity {
        Activity {
            name: name.into(),
            kind: kind.into(),
            state: state.into(),
            ..Activity::default()
        }
    }

    #[test]
    fn run_answers_are_read_leniently() {
        let answer: RunsAnswer = answer(200, RUNS_ANSWER.as_bytes()).unwrap();
        let run = &answer.media_workflow_execution_list[0];
        assert_eq!(run.run_id, "fb5ccdf6a8f3462a8a6f5f4e9e8b1d3e");
        assert_eq!(run.media_id, "3d3e2e3c4b5a69788796a5b4c3d2e1f0");
        assert_eq!(run.state, "Success");
        assert_eq!(run.activities.len(), 5);
        assert_eq!(run.activities[0], activity("Act-Start", "Start", "Success"));
        assert_eq!(
            run.activities[2],
            Activity {
                code: Some("InvalidParameter.ResourceContentBad".into()),
                message: Some("The resource operated \"InputFile\" is bad".into()),
                job_id: Some("88c6ca184c0e47098a5b665e2a126799".into()),
                ..activity("Act-SD", "Transcode", "Fail")
            }
        );
        assert_eq!(run.activities[3].kind, "Summary");
        assert_eq!(
            answer.non_exist_run_ids,
            ["0000000000000000000000000000dead"]
        );
        // An entry without a RunId is kept by the reader, dropped by the lookup.
        assert_eq!(answer.media_workflow_execution_list[1].run_id, "");

        // The workflow message's form: ActivityList a plain array; a single item not in a
        // list; numbers where strings were expected.
        let message: Execution = serde_json::from_str(
            r#"{"RunId": 42, "State": "Completed", "ActivityList": [{"Name": "Act-Start", "Type": "Start", "State": "Success"}]}"#,
        )
        .unwrap();
        assert_eq!(message.run_id, "42");
        assert_eq!(
            message.activities,
            [activity("Act-Start", "Start", "Success")]
        );
        let single: Execution = serde_json::from_str(
            r#"{"RunId": "r", "ActivityList": {"Activity": {"Name": "a", "State": "Running"}}}"#,
        )
        .unwrap();
        assert_eq!(single.activities.len(), 1);
        let bare: Execution =
            serde_json::from_str(r#"{"RunId": "r", "ActivityList": null}"#).unwrap();
        assert!(bare.activities.is_empty() && bare.state.is_empty());
    }

    const MEDIA_ANSWER: &str = r#"{
        "RequestId": "r",
        "MediaList": {"Media": [{
            "MediaId": "3d3e2e3c4b5a69788796a5b4c3d2e1f0",
            "CoverURL": "http://media-out.oss-cn-hangzhou.aliyuncs.com/outputs/abc/cover.jpg",
            "Duration": "2.645333", "Width": "1280", "Height": "720", "Size": "122539",
            "Format": "mov,mp4,m4a,3gp,3g2,mj2", "Bitrate": "370.6", "Fps": "25.0",
            "PlayList": {"Play": [
                {"ActivityName": "Act-HD", "MediaWorkflowId": "w", "MediaWorkflowName": "transcode-hd",
                 "Format": "mp4", "Width": "1280", "Height": "720", "Duration": "2.645", "Size": "98765",
                 "Bitrate": "1131.767", "Encryption": "0",
                 "File": {"URL": "http://media-out.oss-cn-hangzhou.aliyuncs.com/outputs%2Fabc%2F720p.mp4", "State": "Normal"}},
                {"ActivityName": "Act-SD", "MediaWorkflowName": "transcode-hd", "Format": "mp4",
                 "File": {"URL": "http://media-out.oss-cn-hangzhou.aliyuncs.com/outputs/abc/360p.mp4", "State": "Deleted"}},
                {"ActivityName": "Act-Broken", "Width": "wide", "File": {"State": "Normal"}}
            ]},
            "SnapshotList": {"Snapshot": [
                {"ActivityName": "Act-Snap", "Type": "Sequence", "Count": "10",
                 "File": {"URL": "http://media-out.oss-cn-hangzhou.aliyuncs.com/outputs/abc/snap-{Count}.jpg", "State": "Normal"}}
            ]}
        }, {"MediaId": "", "Duration": ""}, {"MediaId": "m2"}]},
        "NonExistMediaIds": {"MediaId": ["nope"]}
    }"#;

    #[test]
    fn media_answers_are_read_leniently() {
        let answer: MediaAnswer = answer(200, MEDIA_ANSWER.as_bytes()).unwrap();
        let media = &answer.media_list[0];
        assert_eq!(media.media_id, "3d3e2e3c4b5a69788796a5b4c3d2e1f0");
        assert_eq!(
            media.cover_url.as_deref(),
            Some("http://media-out.oss-cn-hangzhou.aliyuncs.com/outputs/abc/cover.jpg")
        );
        assert_eq!(
            (media.duration_ms, media.width, media.height, media.size),
            (Some(2645), Some(1280), Some(720), Some(122_539))
        );
        assert_eq!(media.format.as_deref(), Some("mov,mp4,m4a,3gp,3g2,mj2"));
        assert_eq!(
            media.plays[0],
            Play {
                activity_name: "Act-HD".into(),
                workflow_name: "transcode-hd".into(),
                format: Some("mp4".into()),
                width: Some(1280),
                height: Some(720),
                duration_ms: Some(2645),
                size: Some(98_765),
                bitrate: Some(1132),
                file: OutputFile {
                    url: "http://media-out.oss-cn-hangzhou.aliyuncs.com/outputs%2Fabc%2F720p.mp4"
                        .into(),
                    deleted: false,
                },
            }
        );
        assert!(media.plays[1].file.deleted);
        // An odd value costs only itself.
        assert_eq!(media.plays[2].width, None);
        assert_eq!(
            media.snapshots,
            [Snapshot {
                activity_name: "Act-Snap".into(),
                kind: "Sequence".into(),
                count: Some(10),
                file: OutputFile {
                    url:
                        "http://media-out.oss-cn-hangzhou.aliyuncs.com/outputs/abc/snap-{Count}.jpg"
                            .into(),
                    deleted: false,
                },
            }]
        );
        assert_eq!(answer.media_list[1].duration_ms, None);
        assert_eq!(
            answer.media_list[2],
            MediaOutputs {
                media_id: "m2".into(),
                ..MediaOutputs::default()
            }
        );
        assert_eq!(answer.non_exist_media_ids, ["nope"]);
    }

    #[test]
    fn numbers_are_read_from_strings_and_refused_when_odd() {
        #[derive(Deserialize)]
        struct N {
            #[serde(default, deserialize_with = "whole")]
            n: Option<u32>,
            #[serde(default, deserialize_with = "seconds_as_ms")]
            s: Option<u64>,
        }
        let read = |json: &str| {
            let n: N = serde_json::from_str(json).unwrap();
            (n.n, n.s)
        };
        assert_eq!(
            read(r#"{"n": "720", "s": "2.645333"}"#),
            (Some(720), Some(2645))
        );
        assert_eq!(read(r#"{"n": 720.4, "s": 3}"#), (Some(720), Some(3000)));
        assert_eq!(read(r#"{"n": " 7 ", "s": "0"}"#), (Some(7), Some(0)));
        for odd in [
            r#"{"n": "", "s": ""}"#,
            r#"{"n": "-1", "s": "-2"}"#,
            r#"{"n": "NaN", "s": "inf"}"#,
            r#"{"n": "99999999999", "s": "1e300"}"#,
            r#"{"n": null, "s": {}}"#,
            r#"{"n": true, "s": [1]}"#,
            r#"{}"#,
        ] {
            assert_eq!(read(odd), (None, None), "{odd}");
        }
    }

    #[test]
    fn answers_without_their_list_or_in_another_format_are_transient() {
        for body in [&b"{}"[..], b"<html>", b"", br#"{"MediaList": 7"#] {
            assert!(matches!(
                answer::<MediaAnswer>(200, body),
                Err(QueryError::Transient(m)) if m.contains("200")
            ));
        }
        assert!(matches!(
            answer::<RunsAnswer>(200, br#"{"RequestId": "r"}"#),
            Err(QueryError::Transient(_))
        ));
        // An empty list is an answer.
        let empty: RunsAnswer = answer(
            200,
            br#"{"MediaWorkflowExecutionList": {"MediaWorkflowExecution": []}}"#,
        )
        .unwrap();
        assert!(empty.media_workflow_execution_list.is_empty());
    }

    #[test]
    fn query_errors_tell_throttling_from_transient_from_refused() {
        for (status, code) in [
            (400, "Throttling.User"),
            (400, "Throttling"),
            (503, "ServiceUnavailable"),
            (503, ""),
            (429, "TooManyRequests"),
        ] {
            let e = error_of(status, &error_body(code, "busy"));
            assert!(
                matches!(&e, QueryError::Throttled(_)),
                "{status} {code}: {e:?}"
            );
        }
        for (status, code) in [
            (500, "InternalError"),
            (502, ""),
            (504, "GatewayTimeout"),
            (408, ""),
            (400, "SignatureNonceUsed"),
            (302, ""),
        ] {
            let e = error_of(status, &error_body(code, "oops"));
            assert!(
                matches!(&e, QueryError::Transient(_)),
                "{status} {code}: {e:?}"
            );
        }
        for (status, code) in [
            (400, "SignatureDoesNotMatch"),
            (400, "InvalidParameter"),
            (400, "InvalidParameter.RunIds"),
            (404, "InvalidAccessKeyId.NotFound"),
            (403, "Forbidden.RAM"),
        ] {
            let e = error_of(status, &error_body(code, "no"));
            assert_eq!(
                e,
                QueryError::Refused(format!("{code}: no")),
                "{status} {code}"
            );
        }
        let echoed = "Specified signature is not matched with our calculation. server string to sign is:POST&%2F&AccessKeyId%3Dtestid";
        let e = error_of(400, &error_body("SignatureDoesNotMatch", echoed));
        assert!(!e.to_string().contains("testid"), "{e}");
    }

    #[test]
    fn id_lists_are_comma_separated_and_at_most_ten() {
        let ids = |n: usize| (0..n).map(|i| format!("r{i}")).collect::<Vec<_>>();
        assert_eq!(id_list("RunIds", &[]), Ok(None));
        assert_eq!(id_list("RunIds", &ids(3)), Ok(Some("r0,r1,r2".to_owned())));
        assert!(id_list("RunIds", &ids(10)).is_ok());
        assert!(matches!(
            id_list("RunIds", &ids(11)),
            Err(QueryError::Refused(m)) if m.contains("at most 10")
        ));
        for bad in ["a,b", ""] {
            assert!(matches!(
                id_list("MediaIds", &[bad.to_owned()]),
                Err(QueryError::Refused(_))
            ));
        }
    }

    fn execution(state: &str, activities: Vec<Activity>) -> Execution {
        Execution {
            run_id: "r".into(),
            media_id: "m".into(),
            state: state.into(),
            activities,
        }
    }

    #[test]
    fn verdicts_follow_activities_before_the_run_state() {
        let start = activity("Act-Start", "Start", "Success");
        let report = activity("Act-Report", "Report", "Success");
        let failed = Activity {
            code: Some("InvalidParameter.ResourceContentBad".into()),
            message: Some("The resource operated \"InputFile\" is bad".into()),
            ..activity("Act-SD", "Transcode", "Fail")
        };
        let sd_failed = RunVerdict::Failed {
            activity: "Act-SD".into(),
            code: "InvalidParameter.ResourceContentBad".into(),
            message: "The resource operated \"InputFile\" is bad".into(),
        };
        for (state, activities, verdict) in [
            (
                "Completed",
                vec![start.clone(), report.clone()],
                RunVerdict::Succeeded,
            ),
            ("Success", vec![start.clone()], RunVerdict::Succeeded),
            ("completed", vec![], RunVerdict::Succeeded),
            (
                "Completed",
                vec![
                    start.clone(),
                    activity("Act-HD", "Transcode", "Skipped"),
                    report.clone(),
                ],
                RunVerdict::Succeeded,
            ),
            ("Running", vec![start.clone()], RunVerdict::Running),
            ("", vec![], RunVerdict::Running),
            (
                "Paused",
                vec![activity("x", "Censor", "Running")],
                RunVerdict::Running,
            ),
            // MPS's sample: the run says Success, an activity failed.
            (
                "Success",
                vec![start.clone(), failed.clone(), report.clone()],
                sd_failed.clone(),
            ),
            ("Completed", vec![failed.clone()], sd_failed.clone()),
            (
                "Running",
                vec![start.clone(), failed.clone()],
                sd_failed.clone(),
            ),
            (
                "Fail",
                vec![start.clone(), failed.clone()],
                sd_failed.clone(),
            ),
            (
                "Fail",
                vec![start.clone()],
                RunVerdict::Failed {
                    activity: String::new(),
                    code: "ExecutionFailed".into(),
                    message: "the media workflow run failed".into(),
                },
            ),
            (
                "Completed",
                vec![activity("Act-Cover", "Cover", "fail")],
                RunVerdict::Failed {
                    activity: "Act-Cover".into(),
                    code: "ActivityFailed".into(),
                    message: String::new(),
                },
            ),
        ] {
            assert_eq!(
                run_verdict(&execution(state, activities.clone())),
                verdict,
                "{state} {activities:?}"
            );
        }
    }

    #[test]
    fn verdict_codes_and_messages_are_bounded() {
        let long = Activity {
            code: Some("C".repeat(1000)),
            message: Some("line\n".repeat(1000)),
            ..activity(&"n".repeat(1000), "Transcode", "Fail")
        };
        let RunVerdict::Failed {
            activity,
            code,
            message,
        } = run_verdict(&execution("Completed", vec![long]))
        else {
            panic!("expected a failure");
        };
        assert_eq!(code.len(), MAX_CODE);
        assert_eq!(activity.len(), MAX_CODE);
        assert!(
            message.chars().count() <= MAX_MESSAGE && !message.contains('\n'),
            "{message}"
        );
    }

    #[test]
    fn output_urls_name_a_bucket_and_a_key() {
        let ok = output_location;
        let pair = |b: &str, k: &str| Ok((b.to_owned(), k.to_owned()));
        assert_eq!(
            ok("http://media-out.oss-cn-hangzhou.aliyuncs.com/outputs/abc/720p.mp4"),
            pair("media-out", "outputs/abc/720p.mp4")
        );
        assert_eq!(
            ok("https://media-out.oss-cn-hangzhou.aliyuncs.com/outputs%2Fabc%2F720p%20HD%2B1.mp4"),
            pair("media-out", "outputs/abc/720p HD+1.mp4")
        );
        assert_eq!(
            ok("HTTP://b-1.oss-cn-shanghai-internal.aliyuncs.com/%E8%A7%86+1.mp4?x=1#f"),
            pair("b-1", "视+1.mp4")
        );
        assert_eq!(ok("http://b-1.127.0.0.1:9000/a/b/"), pair("b-1", "a/b/"));
        for bad in [
            "",
            "ftp://b-1.host/a.mp4",
            "b-1.host/a.mp4",
            "http://b-1.host",
            "http://b-1.host/",
            "http://b-1.host/?a.mp4",
            "http://host/a.mp4",
            "http://.host/a.mp4",
            "http://Media.host/a.mp4",
            "http://b-1./a.mp4",
            "http://user@b-1.host/a.mp4",
            "http://ab.host/a.mp4",
            "http://b-1.host/a/../b.mp4",
            "http://b-1.host/a/%2E%2E/b.mp4",
            "http://b-1.host/a%2F%2Fb.mp4",
            "http://b-1.host/a/./b.mp4",
            "http://b-1.host/a%0Ab.mp4",
            "http://b-1.host/a%5Cb.mp4",
            "http://b-1.host/%FF.mp4",
        ] {
            assert!(output_location(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn output_urls_decode_back_to_the_key(
            segments in proptest::collection::vec(r"[^/\\\p{C}]{1,12}", 1..6),
            whole_key in proptest::bool::ANY,
            https in proptest::bool::ANY,
        ) {
            proptest::prop_assume!(segments.iter().all(|s| s != "." && s != ".."));
            let key = segments.join("/");
            let path = if whole_key {
                percent_encode(&key)
            } else {
                segments.iter().map(|s| percent_encode(s)).collect::<Vec<_>>().join("/")
            };
            let scheme = if https { "https" } else { "http" };
            let url = format!("{scheme}://media-out.oss-cn-hangzhou.aliyuncs.com/{path}");
            proptest::prop_assert_eq!(
                output_location(&url),
                Ok(("media-out".to_owned(), key))
            );
        }

        #[test]
        fn output_urls_never_yield_a_key_the_store_would_refuse(path in r"\PC{0,40}") {
            let url = format!("http://media-out.oss-cn-hangzhou.aliyuncs.com/{path}");
            if let Ok((_, key)) = output_location(&url) {
                proptest::prop_assert!(crate::storage::check_object_key(&key).is_ok());
            }
        }
    }

    /// A loopback MPS answering every signed call with `status` and `body`, recording the
    /// parameters of each.
    async fn answering(
        status: u16,
        body: &'static str,
    ) -> (
        String,
        std::sync::Arc<std::sync::Mutex<Vec<HashMap<String, String>>>>,
    ) {
        use crate::upstream::loopback::respond;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        let url = crate::upstream::loopback::serve(move |req: http::Request<bytes::Bytes>| {
            let record = record.clone();
            async move {
                let params: HashMap<String, String> =
                    url::form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
                        .into_owned()
                        .collect();
                let canonical = crate::signing::rpc_canonical_query(
                    params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                );
                let signed = crate::signing::rpc_signature("testsecret", "POST", &canonical);
                assert_eq!(params.get("Signature"), Some(&signed));
                record.lock().unwrap().push(params);
                respond(http::StatusCode::from_u16(status).unwrap(), body)
            }
        })
        .await;
        (url, seen)
    }

    #[tokio::test]
    async fn run_lookups_are_one_signed_call() {
        let (url, seen) = answering(200, RUNS_ANSWER).await;
        let ids = vec![
            "fb5ccdf6a8f3462a8a6f5f4e9e8b1d3e".to_owned(),
            "0000000000000000000000000000dead".to_owned(),
        ];
        let lookup = MpsQueries::query_runs(&client(&url), &ids).await.unwrap();
        assert_eq!(
            lookup.executions.len(),
            1,
            "the entry without a RunId is left out"
        );
        assert_eq!(lookup.executions[0].run_id, ids[0]);
        assert_eq!(lookup.missing, [ids[1].clone()]);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0]["Action"], "QueryMediaWorkflowExecutionList");
        assert_eq!(seen[0]["Version"], "2014-06-18");
        assert_eq!(seen[0]["RunIds"], ids.join(","));
    }

    #[tokio::test]
    async fn media_lookups_ask_for_plays_and_snapshots_and_drop_outputs_without_a_file() {
        let (url, seen) = answering(200, MEDIA_ANSWER).await;
        let ids = vec![
            "3d3e2e3c4b5a69788796a5b4c3d2e1f0".to_owned(),
            "m2".to_owned(),
            "nope".to_owned(),
        ];
        let lookup = MpsQueries::query_media(&client(&url), &ids).await.unwrap();
        assert_eq!(
            lookup
                .media
                .iter()
                .map(|m| m.media_id.as_str())
                .collect::<Vec<_>>(),
            ["3d3e2e3c4b5a69788796a5b4c3d2e1f0", "m2"]
        );
        assert_eq!(lookup.media[0].plays.len(), 2);
        assert_eq!(lookup.media[0].snapshots.len(), 1);
        assert_eq!(lookup.missing, ["nope"]);
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0]["Action"], "QueryMediaList");
        assert_eq!(seen[0]["MediaIds"], ids.join(","));
        assert_eq!(seen[0]["IncludePlayList"], "true");
        assert_eq!(seen[0]["IncludeSnapshotList"], "true");
    }

    #[tokio::test]
    async fn lookups_of_no_ids_or_too_many_make_no_call() {
        let (url, seen) = answering(200, RUNS_ANSWER).await;
        let mps = client(&url);
        assert_eq!(mps.query_runs(&[]).await, Ok(RunLookup::default()));
        assert_eq!(mps.query_media(&[]).await, Ok(MediaLookup::default()));
        let eleven: Vec<String> = (0..11).map(|i| i.to_string()).collect();
        assert!(matches!(
            mps.query_runs(&eleven).await,
            Err(QueryError::Refused(_))
        ));
        assert!(matches!(
            mps.query_media(&eleven).await,
            Err(QueryError::Refused(_))
        ));
        assert!(seen.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn lookup_failures_are_classified_without_the_signed_url() {
        let (url, _) = answering(
            400,
            r#"{"Code": "Throttling.User", "Message": "Request was denied due to user flow control."}"#,
        )
        .await;
        let result = client(&url).query_runs(&["r".to_owned()]).await;
        assert!(
            matches!(&result, Err(QueryError::Throttled(m)) if m.contains("Throttling.User")),
            "{result:?}"
        );

        let down = client("http://127.0.0.1:1")
            .query_media(&["m".to_owned()])
            .await;
        let Err(QueryError::Transient(m)) = &down else {
            panic!("expected transient, got {down:?}");
        };
        assert!(
            !m.contains("Signature") && !m.contains("testid") && !m.contains("127.0.0.1"),
            "{m}"
        );

        let url = loopback(Duration::from_millis(500)).await;
        let slow = MpsClient::new(
            &url,
            "testid".into(),
            SecretString::from("testsecret"),
            Duration::from_millis(100),
        )
        .unwrap();
        let Err(QueryError::Transient(m)) = slow.query_runs(&["r".to_owned()]).await else {
            panic!("expected transient");
        };
        assert!(m.contains("timed out") && !m.contains(&url), "{m}");

        let url = loopback(Duration::ZERO).await;
        let wrong = MpsClient::new(
            &url,
            "testid".into(),
            SecretString::from("wrong-secret"),
            Duration::from_secs(1),
        )
        .unwrap();
        let Err(QueryError::Refused(m)) = wrong.query_media(&["m".to_owned()]).await else {
            panic!("expected refused");
        };
        assert!(
            m.starts_with("SignatureDoesNotMatch") && !m.contains("POST&"),
            "{m}"
        );
    }
}
