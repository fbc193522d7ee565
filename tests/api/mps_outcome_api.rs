//! The MPS client's outcome lookups against the loopback MPS: what a test scripts is what
//! `query_runs` and `query_media` read, signed calls only; and signed MNS pushes of MPS
//! workflow messages verify and read as the run they point at.

use std::time::Duration;

use mediagate::notifications::keys::KeyStore;
use mediagate::notifications::{
    Inbound, NotificationError, NotificationsConfig, mps_hint, verify_mps_push,
};
use mediagate::processing::mps::{
    MpsClient, MpsQueries, QueryError, RunVerdict, output_location, run_verdict,
};
use mediagate::processing::{Delivery, Sink};
use secrecy::SecretString;

use crate::support::mps_fake::{
    self, DEFAULT_PLAY_ACTIVITY, OutputScript, RunScript, default_cover_key, default_play_key,
};
use crate::support::notify::PushFormat;
use crate::support::{MNS_ACCOUNT_ID, MNS_CERT_URL, MpsFake, http_date, mns_signer};

fn client(mps: &MpsFake, secret: &str) -> MpsClient {
    MpsClient::new(
        &mps.url,
        mps_fake::ACCESS_KEY_ID.into(),
        SecretString::from(secret),
        Duration::from_secs(2),
    )
    .unwrap()
}

fn ids(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|id| id.to_string()).collect()
}

#[tokio::test]
async fn an_unscripted_run_completes_at_once_with_a_play_and_a_cover() {
    let mps = MpsFake::start().await;
    let (media_id, run_id) = mps.add_run(RunScript::completes());
    // Through the trait the outcome follower holds.
    let client: Box<dyn MpsQueries> = Box::new(client(&mps, mps_fake::ACCESS_KEY_SECRET));

    let runs = client.query_runs(&ids(&[&run_id])).await.unwrap();
    assert!(runs.missing.is_empty());
    let run = &runs.executions[0];
    assert_eq!(
        (run.run_id.as_str(), run.media_id.as_str()),
        (run_id.as_str(), media_id.as_str())
    );
    assert_eq!(run.state, "Completed");
    let kinds: Vec<&str> = run.activities.iter().map(|a| a.kind.as_str()).collect();
    assert_eq!(kinds, ["Start", "Transcode", "Report"]);
    assert_eq!(run_verdict(run), RunVerdict::Succeeded);

    let lookup = client.query_media(&ids(&[&media_id])).await.unwrap();
    let media = &lookup.media[0];
    assert_eq!(media.media_id, media_id);
    assert_eq!(
        (media.duration_ms, media.width, media.height, media.size),
        (Some(2645), Some(1280), Some(720), Some(122_539))
    );
    assert_eq!(media.plays.len(), 1);
    let play = &media.plays[0];
    assert_eq!(play.activity_name, DEFAULT_PLAY_ACTIVITY);
    assert_eq!(
        (play.width, play.height, play.bitrate),
        (Some(1280), Some(720), Some(371))
    );
    assert!(!play.file.deleted);
    assert_eq!(
        output_location(&play.file.url),
        Ok(("media-input".to_owned(), default_play_key(&media_id)))
    );
    assert_eq!(
        output_location(media.cover_url.as_deref().unwrap()),
        Ok(("media-input".to_owned(), default_cover_key(&media_id)))
    );
    assert!(media.snapshots.is_empty());

    let requests = mps.requests();
    assert_eq!(requests[0]["RunIds"], run_id);
    assert_eq!(requests[1]["IncludePlayList"], "true");
    assert_eq!(requests[1]["IncludeSnapshotList"], "true");
}

#[tokio::test]
async fn runs_end_after_their_lookups_or_on_the_fakes_clock() {
    let mps = MpsFake::start().await;
    let client = client(&mps, mps_fake::ACCESS_KEY_SECRET);
    let (slow_media, by_lookups) = mps.add_run(RunScript::completes_after(2));
    let (_, by_time) = mps.add_run(RunScript::completes_after_time(Duration::from_secs(60)));
    let both = ids(&[&by_lookups, &by_time]);

    let verdicts = |lookup: mediagate::processing::mps::RunLookup| {
        lookup
            .executions
            .iter()
            .map(run_verdict)
            .collect::<Vec<_>>()
    };
    for _ in 0..2 {
        // Its media lists nothing while the run is running.
        let media = client.query_media(&ids(&[&slow_media])).await.unwrap();
        let media = &media.media[0];
        assert!(media.plays.is_empty() && media.cover_url.is_none());
        assert_eq!(media.duration_ms, None);
        let lookup = client.query_runs(&both).await.unwrap();
        assert_eq!(verdicts(lookup), [RunVerdict::Running, RunVerdict::Running]);
    }
    // Two lookups saw it running: from now on it has ended.
    let media = client.query_media(&ids(&[&slow_media])).await.unwrap();
    assert_eq!(media.media[0].plays.len(), 1);

    let lookup = client.query_runs(&both).await.unwrap();
    assert_eq!(
        verdicts(lookup),
        [RunVerdict::Succeeded, RunVerdict::Running]
    );
    mps.advance(Duration::from_secs(59));
    let lookup = client.query_runs(&ids(&[&by_time])).await.unwrap();
    assert_eq!(verdicts(lookup), [RunVerdict::Running]);
    mps.advance(Duration::from_secs(1));
    let lookup = client.query_runs(&ids(&[&by_time])).await.unwrap();
    assert_eq!(verdicts(lookup), [RunVerdict::Succeeded]);

    assert_eq!(mps.lookups(&by_lookups), 3);
    assert_eq!(mps.lookups(&by_time), 5);
    assert_eq!(mps.run_ids_per_call(), [2, 2, 2, 1, 1]);
    assert_eq!(mps.calls_of("QueryMediaWorkflowExecutionList"), 5);
    assert_eq!(mps.calls_of("QueryMediaList"), 3);
    assert_eq!(
        mps.max_calls_per_second("QueryMediaWorkflowExecutionList"),
        5
    );
    assert_eq!(mps.max_calls_per_second("AddMedia"), 0);
}

#[tokio::test]
async fn failures_and_invisible_runs_read_as_scripted() {
    let mps = MpsFake::start().await;
    let client = client(&mps, mps_fake::ACCESS_KEY_SECRET);
    let outputs = OutputScript::none()
        .play("Act-HD", "outputs/x/720p.mp4")
        .play("Act-SD", "outputs/x/360p.mp4");
    let (failed_media, failed) = mps.add_run(
        RunScript::fails_activity(
            "Act-SD",
            "InvalidParameter.ResourceContentBad",
            "The resource operated \"InputFile\" is bad",
        )
        .with_outputs(outputs),
    );
    let (_, broken) = mps.add_run(RunScript::fails());
    let (_, hidden) = mps.add_run(RunScript::never_visible());

    let lookup = client
        .query_runs(&ids(&[&failed, &broken, &hidden, "0123456789abcdef"]))
        .await
        .unwrap();
    assert_eq!(lookup.missing, ids(&[&hidden, "0123456789abcdef"]));
    // Like MPS's own sample, the run says Success.
    assert_eq!(lookup.executions[0].state, "Success");
    assert_eq!(
        run_verdict(&lookup.executions[0]),
        RunVerdict::Failed {
            activity: "Act-SD".into(),
            code: "InvalidParameter.ResourceContentBad".into(),
            message: "The resource operated \"InputFile\" is bad".into(),
        }
    );
    assert!(matches!(
        run_verdict(&lookup.executions[1]),
        RunVerdict::Failed { code, .. } if code == "ExecutionFailed"
    ));

    // The failed activity made nothing; the other one did.
    let media = client
        .query_media(&ids(&[&failed_media, "nope"]))
        .await
        .unwrap();
    assert_eq!(media.missing, ["nope"]);
    let plays: Vec<&str> = media.media[0]
        .plays
        .iter()
        .map(|p| p.activity_name.as_str())
        .collect();
    assert_eq!(plays, ["Act-HD"]);
    assert_eq!(media.media[0].cover_url, None);
}

#[tokio::test]
async fn scripted_outputs_are_listed_with_their_bucket_and_state() {
    let mps = MpsFake::start().await;
    let client = client(&mps, mps_fake::ACCESS_KEY_SECRET);
    let outputs = OutputScript::none()
        .in_bucket("media-output")
        .play("Act-HD", "out/a b/720p.mp4")
        .deleted_play("Act-SD", "out/a b/360p.mp4")
        .snapshot("Act-Snap", "out/a b/snap.jpg")
        .cover("out/a b/cover.jpg");
    let (media_id, _) = mps.add_run(RunScript::completes().with_outputs(outputs));
    let media = client.query_media(&ids(&[&media_id])).await.unwrap();
    let media = &media.media[0];
    let located: Vec<(String, String, bool)> = media
        .plays
        .iter()
        .map(|p| {
            let (bucket, key) = output_location(&p.file.url).unwrap();
            (bucket, key, p.file.deleted)
        })
        .collect();
    assert_eq!(
        located,
        [
            ("media-output".into(), "out/a b/720p.mp4".into(), false),
            ("media-output".into(), "out/a b/360p.mp4".into(), true),
        ]
    );
    assert!(media.plays[0].file.url.contains("/out/a%20b/720p.mp4"));
    assert_eq!(media.snapshots.len(), 1);
    assert_eq!(
        (media.snapshots[0].kind.as_str(), media.snapshots[0].count),
        ("Single", Some(1))
    );
    assert_eq!(
        output_location(&media.snapshots[0].file.url),
        Ok(("media-output".into(), "out/a b/snap.jpg".into()))
    );
    assert_eq!(
        output_location(media.cover_url.as_deref().unwrap()),
        Ok(("media-output".into(), "out/a b/cover.jpg".into()))
    );
}

fn delivery(key: &str) -> Delivery {
    Delivery {
        trigger_id: "trg_1".into(),
        attempt: 1,
        workflow: "transcode-hd".into(),
        upload_id: Some("up_1".into()),
        user: Some("alice".into()),
        bucket: "media-input".into(),
        region: "cn-shanghai".into(),
        object_key: key.into(),
        protected_key: None,
        etag: "688A7BF4F233DC9C88A80BF985AB7329".into(),
        size: Some(122_539),
        content_type: Some("video/mp4".into()),
        media: Default::default(),
        container: None,
        rejected: None,
        declared_size: None,
        upload_mode: None,
        report: None,
    }
}

#[tokio::test]
async fn add_media_answers_a_run_that_follows_its_script() {
    let mps = MpsFake::start().await;
    let client = client(&mps, mps_fake::ACCESS_KEY_SECRET);
    mps.script_run(RunScript::completes_after(1));
    let target = mediagate::workflows::Sink::Mps {
        media_workflow_id: mps_fake::MEDIA_WORKFLOW_ID.into(),
    };
    let first = client
        .deliver(&target, &delivery("uploads/alice/u1/my clip.mp4"))
        .await
        .unwrap();
    let second = client
        .deliver(&target, &delivery("uploads/alice/u2/b.mp4"))
        .await
        .unwrap();
    assert_eq!(first.run_ids.len(), 1);
    assert_eq!(
        mps.run_ids(),
        [first.run_ids[0].clone(), second.run_ids[0].clone()]
    );
    assert_eq!(
        mps.media_ids(),
        [
            first.media_id.clone().unwrap(),
            second.media_id.clone().unwrap()
        ]
    );
    assert_eq!(mps.calls_of("AddMedia"), 2);

    let both = [first.run_ids[0].clone(), second.run_ids[0].clone()];
    let lookup = client.query_runs(&both).await.unwrap();
    // The first run was scripted to take one more lookup; the second is the default.
    let states: Vec<&str> = lookup.executions.iter().map(|e| e.state.as_str()).collect();
    assert_eq!(states, ["Running", "Completed"]);
    // Outputs of the second lie in its input's bucket, on its region's host.
    let media_id = second.media_id.unwrap();
    let media = client
        .query_media(std::slice::from_ref(&media_id))
        .await
        .unwrap();
    let url = &media.media[0].plays[0].file.url;
    assert!(
        url.starts_with("http://media-input.oss-cn-shanghai.aliyuncs.com/"),
        "{url}"
    );
    assert_eq!(
        output_location(url),
        Ok(("media-input".into(), default_play_key(&media_id)))
    );
}

#[tokio::test]
async fn the_fake_refuses_a_wrong_secret_and_throttles_when_told() {
    let mps = MpsFake::start().await;
    let (media_id, run_id) = mps.add_run(RunScript::completes());
    let wrong = client(&mps, "not-the-secret");
    let Err(QueryError::Refused(m)) = wrong.query_runs(std::slice::from_ref(&run_id)).await else {
        panic!("a wrong secret is refused");
    };
    assert!(m.starts_with("SignatureDoesNotMatch"), "{m}");
    assert!(
        !m.contains("not-the-secret") && !m.contains(mps_fake::ACCESS_KEY_ID),
        "{m}"
    );
    assert!(matches!(
        wrong.query_media(std::slice::from_ref(&media_id)).await,
        Err(QueryError::Refused(_))
    ));
    assert_eq!(mps.lookups(&run_id), 0, "a refused call looks nothing up");

    let right = client(&mps, mps_fake::ACCESS_KEY_SECRET);
    mps.fail_next(400, "Throttling.User");
    mps.fail_next(503, "ServiceUnavailable");
    mps.fail_next(500, "InternalError");
    for expected in ["throttled", "throttled", "transient"] {
        let result = right.query_runs(std::slice::from_ref(&run_id)).await;
        let kind = match result {
            Err(QueryError::Throttled(_)) => "throttled",
            Err(QueryError::Transient(_)) => "transient",
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(kind, expected);
    }
    assert!(right.query_runs(&[run_id]).await.is_ok());
}

/// The operator's notifications settings: MNS pushes of the test account, the test
/// certificate pinned.
fn notifications(mps_topics: &[&str]) -> NotificationsConfig {
    let mut settings = NotificationsConfig {
        mns_account_id: Some(MNS_ACCOUNT_ID.into()),
        mps_topic_names: ids(mps_topics),
        ..NotificationsConfig::default()
    };
    settings
        .mns_pinned_certs
        .insert(MNS_CERT_URL.into(), mns_signer().cert_pem.clone());
    settings
}

#[tokio::test]
async fn signed_pushes_of_workflow_messages_verify_and_point_at_their_run() {
    let mps = MpsFake::start().await;
    let (media_id, run_id) = mps.add_run(RunScript::completes());
    let settings = notifications(&["mps-outcomes"]);
    let keys = KeyStore::new(&settings).unwrap();
    let path = "/v1/notifications/mps-events";
    for format in [PushFormat::Xml, PushFormat::Json, PushFormat::Simplified] {
        for activity in ["Start", "Report"] {
            let message = mps.workflow_message(&run_id, activity);
            assert!(message["MediaWorkflowExecution"]["ActivityList"].is_array());
            let (body, headers) =
                mns_signer().mps_push(format, "mps-outcomes", &message, path, &http_date());
            let push = Inbound {
                path,
                query: None,
                headers: &headers,
                body: body.as_bytes(),
            };
            verify_mps_push(&keys, &settings, &push, chrono::Utc::now())
                .await
                .unwrap_or_else(|e| panic!("{format:?} {activity}: {e}"));
            let hint = mps_hint(&push).unwrap();
            assert_eq!(hint.run_id, run_id, "{format:?}");
            assert_eq!(hint.media_id.as_deref(), Some(media_id.as_str()));
            assert_eq!(hint.topic.as_deref(), Some("mps-outcomes"));
        }
    }

    // Another topic of the same account, and the OSS-events topic list does not count.
    let message = mps.workflow_message(&run_id, "Report");
    let (body, headers) = mns_signer().mps_push(
        PushFormat::Json,
        "other-topic",
        &message,
        path,
        &http_date(),
    );
    let push = Inbound {
        path,
        query: None,
        headers: &headers,
        body: body.as_bytes(),
    };
    assert!(matches!(
        verify_mps_push(&keys, &settings, &push, chrono::Utc::now()).await,
        Err(NotificationError::Foreign(_))
    ));
    let any_topic = notifications(&[]);
    verify_mps_push(&keys, &any_topic, &push, chrono::Utc::now())
        .await
        .unwrap();
    // A changed body no longer matches its signed digest.
    let tampered = body.replace(&run_id, "0123456789abcdef0123456789abcdef");
    let push = Inbound {
        body: tampered.as_bytes(),
        ..push
    };
    assert!(matches!(
        verify_mps_push(&keys, &any_topic, &push, chrono::Utc::now()).await,
        Err(NotificationError::Signature(_))
    ));
}
