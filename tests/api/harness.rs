//! The test app itself: nothing happens in it unless the test does it, and it fails a test
//! that ends with work still in the queue (pending, in flight, or failed and waiting for a
//! retry; delivered and dead triggers are done with).

use std::panic::AssertUnwindSafe;

use serde_json::json;

use crate::support::TestApp;

/// An app with a webhook workflow and one upload announced to it, nothing drained yet.
async fn announced(configure: impl FnOnce(&mut mediagate::config::Config)) -> TestApp {
    let app = TestApp::spawn_with(configure).await;
    app.webhook_workflow("hooks", "uploads/").await;
    let (id, key) = app.issue("alice", "a.mp4", json!({})).await;
    assert_eq!(app.upload_completed(&key, "E1", &id).await.status(), 200);
    app
}

/// Drops `app` as the end of a test does; what its check panicked with, if it did.
fn end_of_test(app: TestApp) -> Option<String> {
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| drop(app)));
    outcome.err().map(|panic| match panic.downcast::<String>() {
        Ok(message) => *message,
        Err(_) => "a panic without a message".into(),
    })
}

#[tokio::test]
async fn a_test_that_leaves_work_in_the_queue_fails() {
    // Announced, never drained: nothing happened behind the test's back, and the work is
    // still there at the end.
    let app = announced(|_| {}).await;
    assert_eq!(app.hooks.count(), 0);
    let counts = app.app.store.trigger_counts().await.unwrap();
    assert_eq!(counts, [("pending".to_owned(), 1)]);
    let refused = end_of_test(app).expect("the pending job fails the test");
    assert!(refused.contains("pending"), "{refused}");

    // A delivery waiting for its retry is work still to do.
    let app = announced(|_| {}).await;
    app.hooks.fail_next(1);
    app.drain().await;
    assert_eq!(app.hooks.calls(), 1);
    let refused = end_of_test(app).expect("the retry fails the test");
    assert!(refused.contains("failed"), "{refused}");

    // A dead one is not: nothing more will happen to it.
    let app = announced(|c| c.processing.max_attempts = 1).await;
    app.hooks.fail_next(1);
    app.drain().await;
    // The verification, then the delivery.
    let counts = app.app.store.trigger_counts().await.unwrap();
    assert_eq!(
        counts,
        [("dead".to_owned(), 1), ("delivered".to_owned(), 1)]
    );
    assert_eq!(end_of_test(app), None);

    // Unless leaving it is the point of the test.
    let app = announced(|_| {}).await;
    app.allow_pending_work();
    assert_eq!(end_of_test(app), None);
}
