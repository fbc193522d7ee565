//! The OpenAPI document against the server, by an OpenAPI-driven fuzzer (Schemathesis, from
//! PyPI): requests the document allows are accepted, answers are the documented ones, and
//! nothing is a server error.

use crate::support::{ADMIN_TOKEN, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Schemathesis: scripts/test.sh installs it and runs this"]
async fn the_document_describes_what_the_server_accepts_and_answers() {
    let schemathesis = std::env::var("MEDIAGATE_TEST_SCHEMATHESIS")
        .expect("MEDIAGATE_TEST_SCHEMATHESIS names the schemathesis command");
    // `/readyz` is fuzzed too, and reports whether the worker loop runs.
    let app = TestApp::builder().running_worker().spawn().await;
    app.webhook_workflow("fuzz", "uploads/").await;
    let user = app.token("fuzzer");
    // Each part of the API with the credential it takes; the notification routes are
    // authenticated by signatures a fuzzer cannot make, and are fuzzed by tests/api/fuzz.rs.
    // A fixed seed keeps CI repeatable; other seeds and budgets explore further.
    let seed = std::env::var("MEDIAGATE_TEST_SCHEMATHESIS_SEED").unwrap_or("20261201".into());
    let examples = std::env::var("MEDIAGATE_TEST_SCHEMATHESIS_EXAMPLES").unwrap_or("30".into());
    // Schemathesis keeps a cache of past failures in its working directory; each run starts
    // without one.
    let workdir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (tag, token) in [
        ("uploads", user.as_str()),
        ("admin", ADMIN_TOKEN),
        ("operations", "none"),
    ] {
        let out = tokio::process::Command::new(&schemathesis)
            .current_dir(workdir.path())
            .args(["run", &format!("{}/openapi.json", app.base)])
            .args(["--include-tag", tag])
            // A stream of an upload's states lasts until the upload is final, which a fuzzed
            // upload never is: tests/api/streams.rs holds it to its contract.
            .args(["--exclude-path-regex", "/events$"])
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .args(["--max-examples", &examples, "--seed", &seed])
            .args(["--request-timeout", "10"])
            .output()
            .await
            .expect("schemathesis runs");
        let report = String::from_utf8_lossy(&out.stdout);
        // A run that reached no operation would pass without testing anything.
        let count = |label: &str| {
            report
                .lines()
                .find_map(|l| l.trim().strip_prefix(label))
                .and_then(|rest| rest.trim().split('/').next()?.parse::<u32>().ok())
        };
        let (selected, tested) = (count("Selected:"), count("Tested:"));
        if !out.status.success() || selected.is_none_or(|n| n == 0) || tested != selected {
            failures.push(format!(
                "{tag} (selected {selected:?}, tested {tested:?}):\n{report}\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "schemathesis found failures in {}",
        failures.join("\n")
    );
}
