//! A loopback MPS (Mts 2014-06-18) that checks every call the way the real service does: RPC
//! v1 signature recomputed (mismatch -> `SignatureDoesNotMatch`), nonce replay, timestamp
//! window, and each action's parameter limits; answers with the documented JSON
//! (docs/protocols.md §7, §9). `AddMedia` starts one run per call; `QueryMediaWorkflowExecution
//! List` and `QueryMediaList` answer from what each run was scripted to do. Tests script
//! failures, latency and runs, move the fake's own clock, and read back what was received.
//!
//! A run nobody scripted completes on its first lookup with one play, `Act-Transcode-HD`
//! (mp4, 1280x720, 2.645 s, 122539 bytes) at [`default_play_key`], and a cover at
//! [`default_cover_key`], both in the bucket of the media's FileURL (`media-input` for
//! [`MpsFake::add_run`]) on its OSS host: `http://{bucket}.oss-{region}.aliyuncs.com/{key}`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Value, json};

/// The same keys as the loopback STS: MPS keys default to the STS keys, so a test app
/// configured for the STS fake talks to this fake without further settings.
pub const ACCESS_KEY_ID: &str = super::sts_fake::ACCESS_KEY_ID;
pub const ACCESS_KEY_SECRET: &str = super::sts_fake::ACCESS_KEY_SECRET;
/// A media workflow id for tests; any non-empty id is accepted.
pub const MEDIA_WORKFLOW_ID: &str = "0b3b8d7a5e0c4f1e9a2d6c4b8e7f1a2b";
/// The activity that makes the default play.
pub const DEFAULT_PLAY_ACTIVITY: &str = "Act-Transcode-HD";

/// Where the default play of `media_id` is: `outputs/{media_id}/720p.mp4`.
pub fn default_play_key(media_id: &str) -> String {
    format!("outputs/{media_id}/720p.mp4")
}

/// Where the default cover of `media_id` is: `outputs/{media_id}/cover.jpg`.
pub fn default_cover_key(media_id: &str) -> String {
    format!("outputs/{media_id}/cover.jpg")
}

/// How a run ends.
#[derive(Clone, Debug)]
enum End {
    Completes,
    FailsActivity {
        name: String,
        code: String,
        message: String,
    },
    Fails,
    NeverVisible,
}

/// When a run ends.
#[derive(Clone, Copy, Debug)]
enum Wait {
    /// After this many lookups of it (each of which saw it running).
    Lookups(u32),
    /// This long after it started, on the fake's clock ([`MpsFake::advance`]).
    Time(Duration),
}

/// What a run does when it is looked up: `RunScript::completes()` and the like, then
/// `.after_lookups(n)` / `.after_time(d)` and `.with_outputs(..)`.
#[derive(Clone, Debug)]
pub struct RunScript {
    end: End,
    wait: Wait,
    outputs: Option<OutputScript>,
}

impl RunScript {
    /// Completed (`Completed`, every activity `Success`) from the start, so on its first
    /// lookup, with the default outputs: what a run nobody scripted does.
    pub fn completes() -> RunScript {
        RunScript {
            end: End::Completes,
            wait: Wait::Lookups(0),
            outputs: None,
        }
    }

    /// Running for `lookups` lookups, completed from the next.
    pub fn completes_after(lookups: u32) -> RunScript {
        RunScript::completes().after_lookups(lookups)
    }

    /// Running until the fake's clock is `wait` past the run's start.
    pub fn completes_after_time(wait: Duration) -> RunScript {
        RunScript::completes().after_time(wait)
    }

    /// Ends like MPS's own sample: the run says `Success`, the activity `name` says `Fail`
    /// with `code` and `message` (its plays are not made).
    pub fn fails_activity(name: &str, code: &str, message: &str) -> RunScript {
        RunScript {
            end: End::FailsActivity {
                name: name.to_owned(),
                code: code.to_owned(),
                message: message.to_owned(),
            },
            ..RunScript::completes()
        }
    }

    /// Ends as a whole in `Fail`, no activity failed, nothing made.
    pub fn fails() -> RunScript {
        RunScript {
            end: End::Fails,
            ..RunScript::completes()
        }
    }

    /// Never found: every lookup lists it in `NonExistRunIds` (its media has no outputs).
    pub fn never_visible() -> RunScript {
        RunScript {
            end: End::NeverVisible,
            ..RunScript::completes()
        }
    }

    pub fn after_lookups(mut self, lookups: u32) -> RunScript {
        self.wait = Wait::Lookups(lookups);
        self
    }

    pub fn after_time(mut self, wait: Duration) -> RunScript {
        self.wait = Wait::Time(wait);
        self
    }

    /// These outputs instead of the default ones, listed once the run ended.
    pub fn with_outputs(mut self, outputs: OutputScript) -> RunScript {
        self.outputs = Some(outputs);
        self
    }
}

/// The outputs of a run, as keys in one bucket on the media's OSS host (by default the bucket
/// of its FileURL).
#[derive(Clone, Debug, Default)]
pub struct OutputScript {
    bucket: Option<String>,
    cover: Option<String>,
    /// Activity, key, deleted.
    plays: Vec<(String, String, bool)>,
    /// Activity, key.
    snapshots: Vec<(String, String)>,
}

impl OutputScript {
    /// No output at all.
    pub fn none() -> OutputScript {
        OutputScript::default()
    }

    pub fn in_bucket(mut self, bucket: &str) -> OutputScript {
        self.bucket = Some(bucket.to_owned());
        self
    }

    /// A play (mp4, 1280x720) made by `activity` at `key`.
    pub fn play(mut self, activity: &str, key: &str) -> OutputScript {
        self.plays
            .push((activity.to_owned(), key.to_owned(), false));
        self
    }

    /// A play MPS lists with `File.State = Deleted`.
    pub fn deleted_play(mut self, activity: &str, key: &str) -> OutputScript {
        self.plays.push((activity.to_owned(), key.to_owned(), true));
        self
    }

    /// A single snapshot made by `activity` at `key`.
    pub fn snapshot(mut self, activity: &str, key: &str) -> OutputScript {
        self.snapshots.push((activity.to_owned(), key.to_owned()));
        self
    }

    /// The media's `CoverURL`.
    pub fn cover(mut self, key: &str) -> OutputScript {
        self.cover = Some(key.to_owned());
        self
    }

    fn default_for(media_id: &str) -> OutputScript {
        OutputScript::none()
            .play(DEFAULT_PLAY_ACTIVITY, &default_play_key(media_id))
            .cover(&default_cover_key(media_id))
    }
}

/// One run the fake started.
struct Run {
    run_id: String,
    media_id: String,
    workflow_id: String,
    user_data: Option<String>,
    /// Bucket, OSS host, key of the input.
    input: (String, String, String),
    script: RunScript,
    lookups: u32,
    started: Duration,
}

impl Run {
    /// Whether the run ended at `now` on the fake's clock (or after the lookups so far).
    fn ended(&self, now: Duration) -> bool {
        match self.script.wait {
            Wait::Lookups(n) => self.lookups >= n,
            Wait::Time(wait) => now >= self.started + wait,
        }
    }

    fn outputs(&self) -> OutputScript {
        self.script
            .outputs
            .clone()
            .unwrap_or_else(|| OutputScript::default_for(&self.media_id))
    }

    fn failed_activity(&self) -> Option<&str> {
        match &self.script.end {
            End::FailsActivity { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The run as `MediaWorkflowExecution` at `now`.
    fn execution(&self, now: Duration) -> Value {
        let ended = self.ended(now);
        let outputs = self.outputs();
        let mut made: Vec<(String, &str)> = Vec::new();
        for (activity, _, _) in &outputs.plays {
            if !made.iter().any(|(a, _)| a == activity) {
                made.push((activity.clone(), "Transcode"));
            }
        }
        for (activity, _) in &outputs.snapshots {
            if !made.iter().any(|(a, _)| a == activity) {
                made.push((activity.clone(), "Snapshot"));
            }
        }
        if let Some(name) = self.failed_activity()
            && !made.iter().any(|(a, _)| a == name)
        {
            made.push((name.to_owned(), "Transcode"));
        }
        let activity = |name: &str, kind: &str, state: &str| {
            json!({"Name": name, "Type": kind, "State": state, "JobId": "", "Code": "", "Message": "",
                   "StartTime": "2024-01-01T00:00:00Z", "EndTime": "2024-01-01T00:00:05Z"})
        };
        let mut activities = vec![activity("Act-Start", "Start", "Success")];
        let state = match (&self.script.end, ended) {
            (_, false) => {
                if let Some((name, kind)) = made.first() {
                    activities.push(activity(name, kind, "Running"));
                }
                "Running"
            }
            (End::Fails, true) => "Fail",
            (End::Completes | End::NeverVisible, true) => "Completed",
            (End::FailsActivity { .. }, true) => "Success",
        };
        if ended && !matches!(self.script.end, End::Fails) {
            for (name, kind) in &made {
                let mut a = activity(name, kind, "Success");
                a["JobId"] = json!(uuid::Uuid::new_v4().simple().to_string());
                if let End::FailsActivity {
                    name: failed,
                    code,
                    message,
                } = &self.script.end
                    && failed == name
                {
                    a["State"] = json!("Fail");
                    a["Code"] = json!(code);
                    a["Message"] = json!(message);
                }
                activities.push(a);
            }
            activities.push(activity("Act-Report", "Report", "Success"));
        }
        let (bucket, host, key) = &self.input;
        let mut input =
            json!({"InputFile": {"Bucket": bucket, "Location": location(host), "Object": key}});
        if let Some(user_data) = &self.user_data {
            input["UserData"] = json!(user_data);
        }
        json!({
            "RunId": self.run_id,
            "MediaWorkflowId": self.workflow_id,
            "Name": "mediagate-test-workflow",
            "MediaId": self.media_id,
            "State": state,
            "Input": input,
            "ActivityList": {"Activity": activities},
            "CreationTime": "2024-01-01T00:00:00Z",
        })
    }
}

/// `oss-cn-hangzhou` of `oss-cn-hangzhou.aliyuncs.com`.
fn location(host: &str) -> &str {
    host.split('.').next().unwrap_or(host)
}

/// `http://{bucket}.{host}/{key}`, each key segment percent-encoded the Alibaba way.
pub fn output_url(bucket: &str, host: &str, key: &str) -> String {
    let path: Vec<String> = key
        .split('/')
        .map(mediagate::signing::percent_encode)
        .collect();
    format!("http://{bucket}.{host}/{}", path.join("/"))
}

#[derive(Default)]
struct FakeState {
    calls: AtomicUsize,
    latency_ms: AtomicU64,
    nonces: Mutex<HashSet<String>>,
    scripted: Mutex<VecDeque<(u16, String)>>,
    requests: Mutex<Vec<HashMap<String, String>>>,
    media_ids: Mutex<Vec<String>>,
    /// Scripts for the next runs AddMedia starts.
    run_scripts: Mutex<VecDeque<RunScript>>,
    runs: Mutex<Vec<Run>>,
    /// The fake's clock: how far tests moved it.
    clock: Mutex<Duration>,
    /// The action of every request received, when.
    actions: Mutex<Vec<(String, Instant)>>,
    /// The number of RunIds of each QueryMediaWorkflowExecutionList received.
    run_ids_per_call: Mutex<Vec<usize>>,
}

impl FakeState {
    fn now(&self) -> Duration {
        *self.clock.lock().unwrap()
    }

    /// Records a run of `media_id` on the input `(bucket, host, key)`; its RunId.
    fn start_run(
        &self,
        media_id: &str,
        workflow_id: &str,
        user_data: Option<String>,
        input: (String, String, String),
        script: RunScript,
    ) -> String {
        let run_id = uuid::Uuid::new_v4().simple().to_string();
        self.runs.lock().unwrap().push(Run {
            run_id: run_id.clone(),
            media_id: media_id.to_owned(),
            workflow_id: workflow_id.to_owned(),
            user_data,
            input,
            script,
            lookups: 0,
            started: self.now(),
        });
        run_id
    }
}

#[derive(Clone)]
pub struct MpsFake {
    pub url: String,
    state: Arc<FakeState>,
}

impl MpsFake {
    pub async fn start() -> MpsFake {
        let state = Arc::new(FakeState::default());
        let router = Router::new().fallback(handle).with_state(state.clone());
        let url = super::serve_loopback(router).await;
        MpsFake { url, state }
    }

    /// Every request that reached the fake, valid or not.
    pub fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    /// The requests of `action` that reached the fake, valid or not.
    pub fn calls_of(&self, action: &str) -> usize {
        let actions = self.state.actions.lock().unwrap();
        actions.iter().filter(|(a, _)| a == action).count()
    }

    /// The most requests of `action` received within any one second (real time).
    pub fn max_calls_per_second(&self, action: &str) -> usize {
        let actions = self.state.actions.lock().unwrap();
        let times: Vec<Instant> = actions
            .iter()
            .filter(|(a, _)| a == action)
            .map(|(_, t)| *t)
            .collect();
        (0..times.len())
            .map(|i| {
                times[i..]
                    .iter()
                    .take_while(|t| t.duration_since(times[i]) < Duration::from_secs(1))
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    /// How many RunIds each `QueryMediaWorkflowExecutionList` asked for, in order.
    pub fn run_ids_per_call(&self) -> Vec<usize> {
        self.state.run_ids_per_call.lock().unwrap().clone()
    }

    /// The MediaIds created, in order.
    pub fn media_ids(&self) -> Vec<String> {
        self.state.media_ids.lock().unwrap().clone()
    }

    /// The RunIds started (by AddMedia or [`MpsFake::add_run`]), in order.
    pub fn run_ids(&self) -> Vec<String> {
        let runs = self.state.runs.lock().unwrap();
        runs.iter().map(|r| r.run_id.clone()).collect()
    }

    /// How often the run was looked up.
    pub fn lookups(&self, run_id: &str) -> u32 {
        let runs = self.state.runs.lock().unwrap();
        runs.iter()
            .find(|r| r.run_id == run_id)
            .map_or(0, |r| r.lookups)
    }

    /// The next run AddMedia starts follows `script` (runs queue their scripts in order;
    /// unscripted runs complete on their first lookup with the default outputs).
    pub fn script_run(&self, script: RunScript) {
        self.state.run_scripts.lock().unwrap().push_back(script);
    }

    /// A medium and a run of it following `script`, as if AddMedia had been called for
    /// `uploads/clip.mp4` in `media-input` (cn-hangzhou); (MediaId, RunId).
    pub fn add_run(&self, script: RunScript) -> (String, String) {
        let media_id = uuid::Uuid::new_v4().simple().to_string();
        self.state.media_ids.lock().unwrap().push(media_id.clone());
        let input = (
            "media-input".to_owned(),
            "oss-cn-hangzhou.aliyuncs.com".to_owned(),
            "uploads/clip.mp4".to_owned(),
        );
        let run_id = self
            .state
            .start_run(&media_id, MEDIA_WORKFLOW_ID, None, input, script);
        (media_id, run_id)
    }

    /// Moves the fake's clock (which `RunScript::after_time` reads) forward.
    pub fn advance(&self, by: Duration) {
        *self.state.clock.lock().unwrap() += by;
    }

    /// The workflow message MPS would publish for the run after its `Start` or `Report`
    /// activity (docs/protocols.md §9): `ActivityList` a plain array, `UserData` only when
    /// AddMedia had one. Does not count as a lookup.
    pub fn workflow_message(&self, run_id: &str, activity: &str) -> Value {
        let now = self.state.now();
        let runs = self.state.runs.lock().unwrap();
        let run = runs
            .iter()
            .find(|r| r.run_id == run_id)
            .expect("a run the fake started");
        let mut execution = run.execution(now);
        let activities = execution["ActivityList"]["Activity"].take();
        execution["ActivityList"] = activities;
        json!({
            "RunId": run_id,
            "Name": format!("Act-{activity}"),
            "Type": activity,
            "State": "Success",
            "MediaWorkflowExecution": execution,
        })
    }

    pub fn set_latency(&self, latency: Duration) {
        self.state
            .latency_ms
            .store(latency.as_millis() as u64, Ordering::SeqCst);
    }

    /// The next call answers with this HTTP status and error code instead of its result
    /// (after the call is recorded, before it is checked).
    pub fn fail_next(&self, status: u16, code: &str) {
        self.state
            .scripted
            .lock()
            .unwrap()
            .push_back((status, code.to_owned()));
    }

    /// Parameters of every request received (query and form body), decoded.
    pub fn requests(&self) -> Vec<HashMap<String, String>> {
        self.state.requests.lock().unwrap().clone()
    }
}

fn error(status: u16, code: &str, message: &str) -> Response {
    rpc::error(status, code, message, "mts.aliyuncs.com")
}

async fn handle(
    State(state): State<Arc<FakeState>>,
    method: Method,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    state.calls.fetch_add(1, Ordering::SeqCst);
    let latency = state.latency_ms.load(Ordering::SeqCst);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let (params, duplicate) = rpc::params(query, &body);
    state.requests.lock().unwrap().push(params.clone());
    let action = params.get("Action").cloned().unwrap_or_default();
    state.actions.lock().unwrap().push((action, Instant::now()));
    if duplicate {
        return error(400, "InvalidParameter", "duplicate parameter");
    }
    if let Some((status, code)) = state.scripted.lock().unwrap().pop_front() {
        return error(status, &code, "scripted failure");
    }
    match dispatch(&state, &method, &params) {
        Ok(body) => ([("content-type", "application/json")], body.to_string()).into_response(),
        Err((status, code, message)) => error(status, code, &message),
    }
}

use super::rpc::{self, Rejection};

fn invalid(code: &'static str, message: &str) -> Rejection {
    (400, code, message.to_owned())
}

/// The checks every action shares, then the action.
fn dispatch(
    state: &FakeState,
    method: &Method,
    p: &HashMap<String, String>,
) -> Result<Value, Rejection> {
    rpc::verify(method, p, ACCESS_KEY_ID, ACCESS_KEY_SECRET, &state.nonces)?;
    let get = |k: &str| rpc::get(p, k);
    if get("Version")? != "2014-06-18" || get("Format")? != "JSON" {
        return Err(invalid(
            "InvalidVersion",
            "Specified parameter Version is not valid.",
        ));
    }
    match get("Action")? {
        "AddMedia" => add_media(state, p),
        "QueryMediaWorkflowExecutionList" => query_runs(state, p),
        "QueryMediaList" => query_media(state, p),
        _ => Err((
            404,
            "InvalidAction.NotFound",
            "Specified api is not found.".into(),
        )),
    }
}

/// The ids of `name` (comma-separated, 1-10 of them).
fn ids<'a>(p: &'a HashMap<String, String>, name: &str) -> Result<Vec<&'a str>, Rejection> {
    let ids: Vec<&str> = rpc::get(p, name)?.split(',').collect();
    if ids.len() > 10 || ids.iter().any(|id| id.is_empty()) {
        return Err((
            400,
            "InvalidParameter",
            format!("The parameter {name} must name 1-10 ids."),
        ));
    }
    Ok(ids)
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string().to_uppercase()
}

fn query_runs(state: &FakeState, p: &HashMap<String, String>) -> Result<Value, Rejection> {
    let asked = ids(p, "RunIds")?;
    state.run_ids_per_call.lock().unwrap().push(asked.len());
    let now = state.now();
    let mut runs = state.runs.lock().unwrap();
    let mut executions = Vec::new();
    let mut missing = Vec::new();
    for id in asked {
        match runs.iter_mut().find(|r| r.run_id == id) {
            Some(run) if !matches!(run.script.end, End::NeverVisible) => {
                executions.push(run.execution(now));
                run.lookups += 1;
            }
            _ => missing.push(id),
        }
    }
    Ok(json!({
        "RequestId": request_id(),
        "MediaWorkflowExecutionList": {"MediaWorkflowExecution": executions},
        "NonExistRunIds": {"RunId": missing},
    }))
}

fn query_media(state: &FakeState, p: &HashMap<String, String>) -> Result<Value, Rejection> {
    let asked = ids(p, "MediaIds")?;
    let include = |k: &str| p.get(k).is_some_and(|v| v == "true");
    let now = state.now();
    let runs = state.runs.lock().unwrap();
    let mut media = Vec::new();
    let mut missing = Vec::new();
    for id in asked {
        let of_media: Vec<&Run> = runs.iter().filter(|r| r.media_id == id).collect();
        let Some(first) = of_media.first() else {
            missing.push(id);
            continue;
        };
        let (input_bucket, host, key) = &first.input;
        // Outputs and media info only once every run of the medium ended well enough.
        let done: Vec<&&Run> = of_media
            .iter()
            .filter(|r| {
                r.ended(now) && matches!(r.script.end, End::Completes | End::FailsActivity { .. })
            })
            .collect();
        let all_ended = of_media.iter().all(|r| r.ended(now));
        let mut plays = Vec::new();
        let mut snapshots = Vec::new();
        let mut cover = String::new();
        for run in &done {
            let outputs = run.outputs();
            let bucket = outputs.bucket.as_deref().unwrap_or(input_bucket);
            for (activity, key, deleted) in &outputs.plays {
                if run.failed_activity() == Some(activity.as_str()) {
                    continue;
                }
                plays.push(json!({
                    "ActivityName": activity, "MediaWorkflowId": run.workflow_id,
                    "MediaWorkflowName": "mediagate-test-workflow", "Format": "mp4",
                    "Width": "1280", "Height": "720", "Duration": "2.645333", "Size": "122539",
                    "Bitrate": "370.6", "Fps": "25", "Encryption": "0",
                    "File": {"URL": output_url(bucket, host, key), "State": if *deleted { "Deleted" } else { "Normal" }},
                }));
            }
            for (activity, key) in &outputs.snapshots {
                snapshots.push(json!({
                    "ActivityName": activity, "MediaWorkflowId": run.workflow_id,
                    "MediaWorkflowName": "mediagate-test-workflow", "Type": "Single", "Count": "1",
                    "File": {"URL": output_url(bucket, host, key), "State": "Normal"},
                }));
            }
            if let Some(key) = &outputs.cover {
                cover = output_url(bucket, host, key);
            }
        }
        let known = all_ended && !done.is_empty();
        let info = |v: &'static str| if known { v } else { "" };
        let mut entry = json!({
            "MediaId": id,
            "Title": key.rsplit('/').next().unwrap_or_default(),
            "CoverURL": cover,
            "Duration": info("2.645333"), "Width": info("1280"), "Height": info("720"),
            "Size": info("122539"), "Format": info("mov,mp4,m4a,3gp,3g2,mj2"),
            "Bitrate": info("370.6"), "Fps": info("25"),
            "State": "Initiated", "PublishState": "Initiated",
            "File": {"URL": output_url(input_bucket, host, key), "State": "Normal"},
            "RunIdList": {"RunId": of_media.iter().map(|r| r.run_id.clone()).collect::<Vec<_>>()},
            "CreationTime": "2024-01-01T00:00:00Z",
        });
        if include("IncludePlayList") {
            entry["PlayList"] = json!({"Play": plays});
        }
        if include("IncludeSnapshotList") {
            entry["SnapshotList"] = json!({"Snapshot": snapshots});
        }
        media.push(entry);
    }
    Ok(json!({
        "RequestId": request_id(),
        "MediaList": {"Media": media},
        "NonExistMediaIds": {"MediaId": missing},
    }))
}

fn add_media(state: &FakeState, p: &HashMap<String, String>) -> Result<Value, Rejection> {
    let get = |k: &str| rpc::get(p, k);
    let file_url = get("FileURL")?;
    if file_url.len() > 3200 || !is_oss_http_url(file_url) {
        return Err(invalid(
            "InvalidParameter.FileURL",
            "The parameter FileURL is not a valid OSS URL.",
        ));
    }
    let workflow_id = get("MediaWorkflowId")?;
    if workflow_id.is_empty() {
        return Err(invalid(
            "InvalidParameter.MediaWorkflowId",
            "The parameter MediaWorkflowId is empty.",
        ));
    }
    for (name, max, code) in [
        ("Title", 128, "InvalidParameter.Title"),
        ("Description", 1024, "InvalidParameter.Description"),
        ("CoverURL", 3200, "InvalidParameter.CoverURL"),
        (
            "MediaWorkflowUserData",
            1024,
            "InvalidParameter.MediaWorkflowUserData",
        ),
    ] {
        if p.get(name).is_some_and(|v| v.len() > max) {
            return Err(invalid(
                code,
                &format!("The parameter {name} exceeds {max} bytes."),
            ));
        }
    }
    let tags: Vec<&str> = p
        .get("Tags")
        .map(|t| t.split(',').collect())
        .unwrap_or_default();
    if tags.len() > 16 || tags.iter().any(|t| t.is_empty() || t.len() > 32) {
        return Err(invalid(
            "InvalidParameter.Tags",
            "At most 16 tags of 1-32 bytes each.",
        ));
    }
    let cate_id = match p.get("CateId") {
        Some(c) => Some(c.parse::<i64>().ok().filter(|c| *c >= 0).ok_or_else(|| {
            invalid(
                "InvalidParameter.CateId",
                "The parameter CateId must be an integer >= 0.",
            )
        })?),
        None => None,
    };

    let media_id = uuid::Uuid::new_v4().simple().to_string();
    state.media_ids.lock().unwrap().push(media_id.clone());
    let script = state
        .run_scripts
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(RunScript::completes);
    let run_id = state.start_run(
        &media_id,
        workflow_id,
        p.get("MediaWorkflowUserData").cloned(),
        input_of(file_url),
        script,
    );
    let now = Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    Ok(json!({
        "RequestId": uuid::Uuid::new_v4().to_string().to_uppercase(),
        "Media": {
            "MediaId": media_id,
            "FileURL": file_url,
            "Title": p.get("Title").cloned().unwrap_or_default(),
            "Description": p.get("Description").cloned().unwrap_or_default(),
            "CoverURL": p.get("CoverURL").cloned().unwrap_or_default(),
            "CateId": cate_id,
            "Tags": {"Tag": tags},
            "State": "Initiated",
            "PublishState": "Initiated",
            "CreationTime": now,
            "MediaWorkflowId": workflow_id,
            "RunIdList": {"RunId": [run_id]},
        },
    }))
}

/// Bucket, host and key of a FileURL that [`is_oss_http_url`] accepted.
fn input_of(file_url: &str) -> (String, String, String) {
    let rest = file_url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (bucket, host) = host.split_once('.').unwrap_or((host, ""));
    let key = percent_encoding::percent_decode_str(path)
        .decode_utf8_lossy()
        .into_owned();
    (bucket.to_owned(), host.to_owned(), key)
}

/// `http://<bucket>.oss-<region>.aliyuncs.com/<key>`, the key percent-encoded the Alibaba way
/// (only `A-Z a-z 0-9 - _ . ~`, `/` and upper-case `%XY` escapes).
fn is_oss_http_url(file_url: &str) -> bool {
    let Some(rest) = file_url.strip_prefix("http://") else {
        return false;
    };
    let Some((host, path)) = rest.split_once('/') else {
        return false;
    };
    let host_ok = host
        .strip_suffix(".aliyuncs.com")
        .and_then(|h| h.split_once(".oss-"))
        .is_some_and(|(bucket, region)| {
            (3..=63).contains(&bucket.len())
                && bucket
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !region.is_empty()
                && region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    if !host_ok || path.is_empty() {
        return false;
    }
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex_ok = bytes.get(i + 1..i + 3).is_some_and(|h| {
                h.iter()
                    .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c))
            });
            if !hex_ok {
                return false;
            }
            i += 3;
        } else if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}
