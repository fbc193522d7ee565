//! After the trigger: an MPS run is followed through the MPS API to its end, its outputs are
//! looked up in the store, and the app user sees `ready` with URLs of exactly those objects,
//! or `failed` with a code of mediagate's own (the processor's words stay on the admin view).

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::TestApp;
use crate::support::mps_fake::{OutputScript, RunScript, default_cover_key, default_play_key};
use crate::support::notify::PushFormat;
use crate::support::oss_fake::mp4_header;

/// A clip issued to alice, uploaded, announced and delivered to an MPS workflow: its upload
/// id and the MediaId MPS gave it.
pub(crate) async fn delivered(app: &TestApp) -> (String, String) {
    app.mps_workflow("transcode", "uploads/").await;
    let (id, key) = app.issue("alice", "clip.mp4", json!({})).await;
    assert_eq!(app.upload_completed(&key, "abc", &id).await.status(), 200);
    app.drain().await;
    let upload = app.upload("alice", &id).await;
    assert_eq!(upload["state"], "processing", "{upload}");
    let mps = &upload["triggers"][0];
    assert_eq!(mps["processing"], "pending", "{upload}");
    (id, mps["media_id"].as_str().unwrap().to_owned())
}

/// Moves the app's clock to the next lookup and lets the follower look.
async fn look(app: &TestApp, after: Duration) {
    app.clock.advance(after);
    app.app.follower.run_once().await.unwrap();
}

/// GETs a view's output URL from the loopback store: the URL names the bucket's public host,
/// so its path and signed query go to the fake, which checks the signature as OSS does.
async fn fetch(app: &TestApp, url: &str) -> reqwest::Response {
    let url = url::Url::parse(url).unwrap();
    let local = format!(
        "{}{}?{}",
        app.oss.url,
        url.path(),
        url.query().unwrap_or("")
    );
    reqwest::get(local).await.unwrap()
}

#[tokio::test]
async fn a_run_is_followed_to_ready_and_each_output_url_fetches_exactly_its_object() {
    let app = TestApp::spawn().await;
    let (id, media_id) = delivered(&app).await;
    let play = [mp4_header(), vec![7; 2000]].concat();
    app.oss
        .put(&default_play_key(&media_id), play.clone(), "video/mp4");
    app.oss.put(
        &default_cover_key(&media_id),
        b"cover".to_vec(),
        "image/jpeg",
    );
    // Nothing is looked up before the first wait is over.
    look(&app, Duration::from_secs(1)).await;
    assert_eq!(app.mps.calls_of("QueryMediaWorkflowExecutionList"), 0);

    look(&app, Duration::from_secs(5)).await;
    let upload = app.upload("alice", &id).await;
    assert_eq!(upload["state"], "ready", "{upload}");
    assert_eq!(upload["triggers"][0]["processing"], "succeeded");
    let outputs = upload["outputs"].as_array().unwrap();
    let names: Vec<&str> = outputs
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cover", "play:Act-Transcode-HD"], "{upload}");
    let play_view = &outputs[1];
    assert_eq!(
        (
            &play_view["kind"],
            &play_view["width"],
            &play_view["height"]
        ),
        (&json!("video"), &json!(1280), &json!(720))
    );
    assert_eq!(play_view["size"], play.len(), "the store's size, not MPS's");
    let response = fetch(&app, play_view["url"].as_str().unwrap()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().as_ref(), play.as_slice());
    let cover = fetch(&app, outputs[0]["url"].as_str().unwrap()).await;
    assert_eq!(cover.bytes().await.unwrap().as_ref(), b"cover");
    // The URL is for that object only: the same signature on another key is refused.
    let other = play_view["url"]
        .as_str()
        .unwrap()
        .replace("720p.mp4", "cover.jpg");
    assert_eq!(fetch(&app, &other).await.status(), 403);
    // The history lists the outputs too; the processor's own URLs are never handed out.
    let list = app.get(&app.token("alice"), "/v1/uploads").await;
    let list: Value = list.json().await.unwrap();
    assert_eq!(list["uploads"][0]["outputs"].as_array().unwrap().len(), 2);
    assert!(outputs.iter().all(|o| {
        let url = o["url"].as_str().unwrap();
        url.starts_with("https://media-input.oss-cn-hangzhou.aliyuncs.com/")
            && url.contains("&Signature=")
    }));
    assert!(!upload.to_string().contains("http://"));

    let admin = app.admin_upload(&id).await;
    assert_eq!(admin["runs"][0]["state"], "succeeded", "{admin}");
    assert_eq!(admin["runs"][0]["lookups"], 1);
    assert_eq!(
        admin["outputs"][1]["object_key"],
        default_play_key(&media_id)
    );
}

#[tokio::test]
async fn a_failed_activity_fails_the_upload_and_only_operators_read_why() {
    let app = TestApp::spawn().await;
    app.mps.script_run(
        RunScript::fails_activity(
            "Act-Transcode-HD",
            "InvalidParameter.ResourceContentBad",
            "the source could not be decoded",
        )
        .after_lookups(1),
    );
    let (id, _) = delivered(&app).await;
    look(&app, Duration::from_secs(5)).await;
    let upload = app.upload("alice", &id).await;
    assert_eq!(
        upload["state"], "processing",
        "still running at the first look"
    );
    assert_eq!(upload["triggers"][0]["processing"], "running");

    look(&app, Duration::from_secs(10)).await;
    let upload = app.upload("alice", &id).await;
    assert_eq!(
        (&upload["state"], &upload["state_reason"]),
        (&json!("failed"), &json!("processing_failed")),
        "{upload}"
    );
    assert_eq!(upload["outputs"], json!([]));
    let text = upload.to_string();
    assert!(!text.contains("ResourceContentBad") && !text.contains("decoded"));
    let admin = app.admin_upload(&id).await;
    let run = &admin["runs"][0];
    assert_eq!(
        run["code"], "InvalidParameter.ResourceContentBad",
        "{admin}"
    );
    assert_eq!(run["message"], "the source could not be decoded");
    let failed: Vec<&Value> = run["activities"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state"] == "Fail")
        .collect();
    assert_eq!(failed.len(), 1, "{run}");
}

#[tokio::test]
async fn a_run_never_seen_fails_at_the_timeout() {
    let app = TestApp::spawn_with(|c| c.processing.outcome_timeout_seconds = 600).await;
    app.mps.script_run(RunScript::never_visible());
    let (id, _) = delivered(&app).await;
    // Not visible is no verdict: looked up again and again, on a growing wait.
    for _ in 0..5 {
        look(&app, Duration::from_secs(60)).await;
        assert_eq!(app.upload("alice", &id).await["state"], "processing");
    }
    look(&app, Duration::from_secs(600)).await;
    let upload = app.upload("alice", &id).await;
    assert_eq!(
        (&upload["state"], &upload["state_reason"]),
        (&json!("failed"), &json!("processing_timed_out")),
        "{upload}"
    );
    assert_eq!(upload["triggers"][0]["processing"], "timed_out");
    let admin = app.admin_upload(&id).await;
    assert_eq!(admin["runs"][0]["state"], "timed_out", "{admin}");
    let results = admin["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 5, "every lookup's result: {admin}");
    assert_eq!(results[0]["result"], "not visible yet");
    assert_eq!(admin["runs"][0]["last_result"], "no end within the timeout");
}

#[tokio::test]
async fn an_output_missing_from_the_store_never_makes_the_upload_ready() {
    let app = TestApp::spawn().await;
    app.mps.script_run(
        RunScript::completes()
            .with_outputs(OutputScript::none().play("Act-Transcode-HD", "outputs/clip/720p.mp4")),
    );
    let (id, _) = delivered(&app).await;
    // The run succeeded, but its output is not in the store: looked for a few times ...
    for _ in 0..3 {
        look(&app, Duration::from_secs(60)).await;
        assert_eq!(app.upload("alice", &id).await["state"], "processing");
    }
    // ... then the upload fails, and never turns ready.
    look(&app, Duration::from_secs(60)).await;
    let upload = app.upload("alice", &id).await;
    assert_eq!(
        (&upload["state"], &upload["state_reason"]),
        (&json!("failed"), &json!("output_missing")),
        "{upload}"
    );
    app.oss
        .put("outputs/clip/720p.mp4", mp4_header(), "video/mp4");
    look(&app, Duration::from_secs(60)).await;
    assert_eq!(app.upload("alice", &id).await["state"], "failed");
}

#[tokio::test]
async fn reprocessing_opens_a_new_outcome_and_only_its_outputs_count() {
    let app = TestApp::spawn().await;
    app.mps.script_run(RunScript::fails());
    let (id, _) = delivered(&app).await;
    // While the run is open the upload is busy.
    let busy = app
        .admin(
            reqwest::Method::POST,
            &format!("/v1/admin/uploads/{id}/reprocess"),
            None,
        )
        .await;
    assert_eq!(busy.status(), 409);
    look(&app, Duration::from_secs(5)).await;
    assert_eq!(
        app.upload("alice", &id).await["state_reason"],
        "processing_failed"
    );

    let again = app
        .admin(
            reqwest::Method::POST,
            &format!("/v1/admin/uploads/{id}/reprocess"),
            None,
        )
        .await;
    assert_eq!(again.status(), 200);
    app.drain().await;
    let upload = app.upload("alice", &id).await;
    assert_eq!(upload["state"], "processing", "{upload}");
    let media_id = upload["triggers"][1]["media_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.oss
        .put(&default_play_key(&media_id), mp4_header(), "video/mp4");
    app.oss
        .put(&default_cover_key(&media_id), b"c".to_vec(), "image/jpeg");
    look(&app, Duration::from_secs(5)).await;
    let upload = app.upload("alice", &id).await;
    assert_eq!(
        upload["state"], "ready",
        "the earlier failure no longer counts: {upload}"
    );
    assert_eq!(upload["outputs"].as_array().unwrap().len(), 2);
    let admin = app.admin_upload(&id).await;
    let states: Vec<&str> = admin["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        ["failed", "succeeded"],
        "both runs stay for operators"
    );
}

#[tokio::test]
async fn a_message_makes_the_lookup_due_at_once_and_never_sets_a_state() {
    let app = TestApp::spawn().await;
    app.mps.script_run(RunScript::completes().after_lookups(1));
    let (id, media_id) = delivered(&app).await;
    app.oss
        .put(&default_play_key(&media_id), mp4_header(), "video/mp4");
    app.oss
        .put(&default_cover_key(&media_id), b"c".to_vec(), "image/jpeg");
    let run_id = app.mps.run_ids()[0].clone();
    // A message for a run still going: one lookup now, which finds it running.
    let start = app.mps.workflow_message(&run_id, "Start");
    let pushed = app.mps_message(PushFormat::Json, "mps-topic", &start).await;
    assert_eq!(pushed.status(), 204);
    app.app.follower.run_once().await.unwrap();
    assert_eq!(app.mps.lookups(&run_id), 1);
    assert_eq!(app.upload("alice", &id).await["state"], "processing");
    // The same message again (MNS retries, or someone replays it): no further lookup.
    let replayed = app.mps_message(PushFormat::Json, "mps-topic", &start).await;
    assert_eq!(replayed.status(), 204);
    app.app.follower.run_once().await.unwrap();
    assert_eq!(app.mps.lookups(&run_id), 1);
    // The Report message: looked up at once, not after the run's next wait (10 s by now).
    app.clock.advance(Duration::from_secs(1));
    let report = app.mps.workflow_message(&run_id, "Report");
    let pushed = app
        .mps_message(PushFormat::Simplified, "mps-topic", &report)
        .await;
    assert_eq!(pushed.status(), 204);
    app.app.follower.run_once().await.unwrap();
    assert_eq!(app.upload("alice", &id).await["state"], "ready");
    assert_eq!(app.mps.lookups(&run_id), 2);

    // Messages are hints only: one for a run nobody follows, or one that cannot be read,
    // is answered 204 (so MNS does not retry it for a day) and changes nothing.
    let calls = app.mps.calls();
    let stranger =
        json!({"RunId": "0123456789abcdef0123456789abcdef", "Type": "Report", "State": "Success"});
    let pushed = app
        .mps_message(PushFormat::Xml, "mps-topic", &stranger)
        .await;
    assert_eq!(pushed.status(), 204);
    let pushed = app
        .mps_message(PushFormat::Json, "mps-topic", &json!({"no": "run"}))
        .await;
    assert_eq!(pushed.status(), 204);
    app.app.follower.run_once().await.unwrap();
    assert_eq!(app.mps.calls(), calls, "no MPS call for them");
}

#[tokio::test]
async fn a_forged_or_replayed_message_records_nothing_and_calls_nobody() {
    let app = TestApp::spawn().await;
    app.mps.script_run(RunScript::completes().after_lookups(3));
    let (_, _) = delivered(&app).await;
    let run_id = app.mps.run_ids()[0].clone();
    let report = app.mps.workflow_message(&run_id, "Report");
    let path = "/v1/notifications/mps-events";
    let (body, headers) = crate::support::mns_signer().mps_push(
        PushFormat::Json,
        "mps-topic",
        &report,
        path,
        &crate::support::http_date(),
    );
    let send = |body: String, headers: Vec<(String, String)>| {
        let mut request = reqwest::Client::new().post(app.url(path));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.body(body).send()
    };
    // The body changed after signing.
    let forged = body.replace("Report", "Start");
    assert_eq!(send(forged, headers.clone()).await.unwrap().status(), 400);
    // Another account's push, signed as its own.
    let mut foreign = headers.clone();
    for (name, value) in foreign.iter_mut() {
        if name.eq_ignore_ascii_case("x-mns-topic-owner")
            || name.eq_ignore_ascii_case("x-mns-topicowner")
        {
            *value = "9999999999999999".into();
        }
    }
    let status = send(body.clone(), foreign).await.unwrap().status();
    assert!(status == 400 || status == 403, "{status}");
    // No lookup was made due by them.
    let calls = app.mps.calls();
    app.app.follower.run_once().await.unwrap();
    assert_eq!(app.mps.calls(), calls);
    assert_eq!(app.mps.lookups(&run_id), 0);
}

#[tokio::test]
async fn open_runs_are_looked_up_ten_a_call_within_the_query_budget() {
    let app = TestApp::spawn_with(|c| c.mps.query_per_second = 5).await;
    app.mps_workflow("transcode", "uploads/").await;
    for _ in 0..100 {
        app.mps.script_run(RunScript::never_visible());
    }
    for n in 0..100 {
        let (id, key) = app.issue("alice", &format!("clip{n}.mp4"), json!({})).await;
        assert_eq!(app.upload_completed(&key, "abc", &id).await.status(), 200);
    }
    app.drain().await;
    // A pass takes about a second of the budget: 5 calls of 10 runs; the next pass the rest.
    look(&app, Duration::from_secs(5)).await;
    assert_eq!(app.mps.calls_of("QueryMediaWorkflowExecutionList"), 5);
    app.app.follower.run_once().await.unwrap();
    let calls = app.mps.calls_of("QueryMediaWorkflowExecutionList");
    assert_eq!(calls, 10, "100 runs, 10 a call, each once");
    assert!(app.mps.run_ids_per_call().iter().all(|n| *n == 10));
    let busiest = app
        .mps
        .max_calls_per_second("QueryMediaWorkflowExecutionList");
    assert!(busiest <= 5, "{busiest} calls in one second");
    // Not due again until their next wait.
    app.app.follower.run_once().await.unwrap();
    assert_eq!(app.mps.calls_of("QueryMediaWorkflowExecutionList"), 10);
}

/// Another instance of the app on the same database, with the same outside services.
pub(crate) async fn second_instance(app: &TestApp) -> std::sync::Arc<mediagate::app::App> {
    let overrides = mediagate::app::Overrides {
        clock: Some(app.clock.clone()),
        ..Default::default()
    };
    mediagate::app::App::build_with(app.app.config.clone(), overrides)
        .await
        .unwrap()
}

/// Several instances share one PostgreSQL (SQLite serves one instance).
#[tokio::test]
async fn two_instances_look_each_run_up_once_per_due_time() {
    if std::env::var("MEDIAGATE_TEST_POSTGRES_URL").is_err() {
        eprintln!("note: two instances need PostgreSQL (MEDIAGATE_TEST_POSTGRES_URL); not run");
        return;
    }
    let app = TestApp::spawn_with(|c| c.mps.query_per_second = 3).await;
    let other = second_instance(&app).await;
    app.mps_workflow("transcode", "uploads/").await;
    for _ in 0..60 {
        app.mps.script_run(RunScript::completes_after(5));
    }
    for n in 0..60 {
        let (id, key) = app.issue("alice", &format!("clip{n}.mp4"), json!({})).await;
        assert_eq!(app.upload_completed(&key, "abc", &id).await.status(), 200);
    }
    app.drain().await;
    app.clock.advance(Duration::from_secs(5));
    // Side by side, each takes what the other has not: 30 runs each, one lookup per run.
    let (a, b) = tokio::join!(app.app.follower.run_once(), other.follower.run_once());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.looked_up + b.looked_up, 60, "{a:?} {b:?}");
    assert!(a.looked_up > 0 && b.looked_up > 0, "{a:?} {b:?}");
    let runs = app.mps.run_ids();
    assert_eq!(runs.len(), 60);
    let counts: Vec<u32> = runs.iter().map(|r| app.mps.lookups(r)).collect();
    assert!(counts.iter().all(|n| *n == 1), "{counts:?}");
    // Nothing is due again before each run's next wait, on either instance.
    let (a, b) = tokio::join!(app.app.follower.run_once(), other.follower.run_once());
    assert_eq!((a.unwrap().looked_up, b.unwrap().looked_up), (0, 0));
}

#[tokio::test]
async fn runs_opened_by_an_instance_that_is_gone_are_followed_by_the_next() {
    let app = TestApp::spawn().await;
    let (id, media_id) = delivered(&app).await;
    app.oss
        .put(&default_play_key(&media_id), mp4_header(), "video/mp4");
    app.oss
        .put(&default_cover_key(&media_id), b"c".to_vec(), "image/jpeg");
    // Everything about the open run is in the database: a new instance (the first one
    // killed, say) takes it up from there.
    let next = second_instance(&app).await;
    app.clock.advance(Duration::from_secs(5));
    let pass = next.follower.run_once().await.unwrap();
    assert_eq!((pass.looked_up, pass.finished), (1, 1));
    assert_eq!(app.upload("alice", &id).await["state"], "ready");
}

#[tokio::test]
async fn an_output_mps_marks_deleted_counts_as_missing_even_if_the_object_is_there() {
    let app = TestApp::spawn().await;
    app.mps.script_run(RunScript::completes().with_outputs(
        OutputScript::none().deleted_play("Act-Transcode-HD", "outputs/clip/720p.mp4"),
    ));
    app.oss
        .put("outputs/clip/720p.mp4", mp4_header(), "video/mp4");
    let (id, _) = delivered(&app).await;
    for _ in 0..4 {
        look(&app, Duration::from_secs(60)).await;
    }
    let upload = app.upload("alice", &id).await;
    assert_eq!(
        (&upload["state"], &upload["state_reason"]),
        (&json!("failed"), &json!("output_missing")),
        "{upload}"
    );
}

#[tokio::test]
async fn only_looks_after_success_count_against_a_missing_output() {
    let app = TestApp::spawn_with(|c| c.processing.outcome_poll_max_seconds = 5).await;
    app.mps.script_run(RunScript::completes_after(4));
    let (id, media_id) = delivered(&app).await;
    // Four looks find it running, the fifth succeeded without its outputs in the store yet.
    for _ in 0..5 {
        look(&app, Duration::from_secs(5)).await;
        assert_eq!(app.upload("alice", &id).await["state"], "processing");
    }
    app.oss
        .put(&default_play_key(&media_id), mp4_header(), "video/mp4");
    app.oss
        .put(&default_cover_key(&media_id), b"c".to_vec(), "image/jpeg");
    look(&app, Duration::from_secs(5)).await;
    assert_eq!(app.upload("alice", &id).await["state"], "ready");
}

#[tokio::test]
async fn the_media_of_runs_that_ended_together_are_looked_up_ten_a_call() {
    let app = TestApp::spawn().await;
    app.mps_workflow("transcode", "uploads/").await;
    for n in 0..20 {
        let (id, key) = app.issue("alice", &format!("clip{n}.mp4"), json!({})).await;
        assert_eq!(app.upload_completed(&key, "abc", &id).await.status(), 200);
    }
    app.drain().await;
    look(&app, Duration::from_secs(5)).await;
    assert_eq!(app.mps.calls_of("QueryMediaWorkflowExecutionList"), 2);
    assert_eq!(
        app.mps.calls_of("QueryMediaList"),
        2,
        "one per ten runs that ended"
    );
}
