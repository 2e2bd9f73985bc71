//! Exclusive claims with real loaded libraries: one handler per kind of request (a second
//! claimant is refused `claim_conflict`, at load and at reload), `host.dispatch` reaching the
//! holder, and retryable failures retried within the policy's bounds.

use std::time::{Duration, Instant};

use airlock::plugins::ReloadOutcome;
use airlock::{CallErrorCode, Principal, Reply};
use airlock_tests::{reason_of, TempPluginDir};
use serde_json::{json, Value};

fn attempts(host: &airlock::Host) -> Value {
    match host.call("claimer", "attempts").json(&Value::Null) {
        Ok(Reply::Ok(n)) => n,
        other => panic!("attempts: {other:?}"),
    }
}

#[test]
fn a_second_plugin_claiming_the_same_kind_is_refused_naming_the_holder() {
    // Discovery goes by file name: the holder first, the rival after it.
    let dir = TempPluginDir::with(&["claimer"]);
    let rival = TempPluginDir::lib_name("rival");
    dir.add_as("claim-rival", &rival);
    let (host, report) = dir.load("");
    assert_eq!(reason_of(&report, &rival), Some("claim_conflict"));
    assert_eq!(
        reason_of(&report, &TempPluginDir::lib_name("claimer")),
        None
    );
    let refused = report
        .plugins
        .iter()
        .find(|p| p.reason.is_some())
        .expect("one refusal");
    assert!(
        refused.detail.contains("\"notify.email\"") && refused.detail.contains("plugin claimer"),
        "names the kind and the holder: {}",
        refused.detail
    );
    assert!(host.plugin("claim-rival").is_none());
    assert_eq!(
        host.claims(),
        [("notify.email".to_owned(), "claimer".to_owned())]
    );

    // `airlock check` sees the same conflict, before anything runs.
    let options = airlock::pipeline::PipelineOptions::new(vec![dir.path().to_owned()]);
    let checked = airlock::pipeline::check(&options).expect("readable");
    let reasons: Vec<_> = checked
        .iter()
        .filter_map(|c| c.as_ref().err().map(|r| r.reason.code()))
        .collect();
    assert_eq!(reasons, ["claim_conflict"]);

    // Dispatch reaches the holder, whatever else is in the directory.
    let sent = host
        .dispatch("notify.email")
        .json(&json!({"to": "ada@example.com"}))
        .expect("dispatched");
    assert_eq!(
        (sent.holder.as_str(), sent.action.as_str()),
        ("claimer", "send")
    );
    assert_eq!(
        sent.reply,
        Reply::Ok(json!({"sent": {"to": "ada@example.com"}, "attempt": 1}))
    );
    let none = host
        .dispatch("notify.sms")
        .json(&Value::Null)
        .expect_err("nobody claims it");
    assert_eq!(none.code, CallErrorCode::NotFound);
    assert!(none.message.contains("notify.sms"), "{none}");
}

#[test]
fn a_new_build_that_claims_a_held_kind_is_refused_and_the_old_one_keeps_serving() {
    let dir = TempPluginDir::with(&["claimer"]);
    let (host, report) = dir.load("");
    assert!(report.all_ok(), "{report:#?}");
    // The rival arrives later, as a watched directory would see it.
    let path = dir.add("claim-rival");
    match host.reload_file(&path) {
        ReloadOutcome::Refused { refusal, .. } => {
            assert_eq!(refusal.reason.code(), "claim_conflict", "{refusal}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(
        host.dispatch("notify.email")
            .json(&json!("x"))
            .expect("the holder still serves")
            .holder,
        "claimer"
    );
}

#[test]
fn retryable_failures_are_retried_with_backoff_within_the_policys_bounds() {
    let dir = TempPluginDir::with(&["claimer"]);
    let policy = "[plugins.claimer]\ndispatch_retries = 3\ndispatch_backoff_ms = 40\n\
                  dispatch_backoff_max_ms = 60\n[plugins.claimer.config]\nfail_first = 2\n";
    let (host, report) = dir.load(policy);
    assert!(report.all_ok(), "{report:#?}");

    // Two busy answers, then it goes through: three attempts, after at least half of each
    // delay's ceiling (40 ms, then min(80, 60) ms).
    let started = Instant::now();
    let sent = host
        .dispatch("notify.email")
        .as_principal(&Principal::new("ada", &[]))
        .json(&json!("hello"))
        .expect("dispatched");
    let waited = started.elapsed();
    assert_eq!(sent.attempts, 3);
    assert_eq!(
        sent.reply,
        Reply::Ok(json!({"sent": "hello", "attempt": 3}))
    );
    assert!(
        waited >= Duration::from_millis(20 + 30),
        "retried without backing off: {waited:?}"
    );

    // A domain error that is not retryable is answered at once.
    let sent = host
        .dispatch("notify.email")
        .json(&json!({"permanent": true}))
        .expect("dispatched");
    assert_eq!(
        (sent.attempts, sent.reply),
        (1, Reply::Error("no such mailbox".into()))
    );
    assert_eq!(attempts(&host), json!(4));
}

#[test]
fn retries_stop_at_the_policys_limit_and_a_plain_call_is_never_retried() {
    let dir = TempPluginDir::with(&["claimer"]);
    let policy = "[defaults]\ndispatch_retries = 2\ndispatch_backoff_ms = 1\n\
                  [plugins.claimer.config]\nfail_first = 100\n";
    let (host, report) = dir.load(policy);
    assert!(report.all_ok(), "{report:#?}");
    let sent = host
        .dispatch("notify.email")
        .json(&json!("hello"))
        .expect("dispatched");
    assert_eq!(sent.attempts, 3, "the first try and two retries");
    assert_eq!(sent.reply, Reply::Error("smtp busy (attempt 3)".into()));
    // Called directly, a retryable answer is the envelope's error, once.
    assert_eq!(
        host.call("claimer", "send")
            .json(&json!("x"))
            .expect("answers"),
        Reply::Error("smtp busy (attempt 4)".into())
    );
    assert_eq!(attempts(&host), json!(4));
}

#[test]
fn a_claim_naming_an_undeclared_action_is_a_bad_manifest() {
    let err = airlock_abi::manifest::Manifest::from_json(
        r#"{"id": "x", "version": "0.1.0", "actions": [{"name": "send"}],
            "claims": [{"kind": "notify.email", "action": "mail"}]}"#,
    )
    .expect_err("undeclared action");
    assert!(err.0.contains("\"mail\""), "{err}");
    let err = airlock_abi::manifest::Manifest::from_json(
        r#"{"id": "x", "version": "0.1.0", "actions": [{"name": "send"}],
            "claims": [{"kind": "a", "action": "send"}, {"kind": "a", "action": "send"}]}"#,
    )
    .expect_err("claimed twice");
    assert!(err.0.contains("declared twice"), "{err}");
}

#[test]
fn inspect_shows_a_claim_without_running_the_file() {
    let dir = TempPluginDir::with(&["claimer"]);
    let file = dir.path().join(TempPluginDir::lib_name("claimer"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock-cli"))
        .arg("inspect")
        .arg(&file)
        .output()
        .expect("the CLI runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("claim:        notify.email (handled by send)"),
        "{stdout}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock-cli"))
        .args(["inspect", "--format", "json"])
        .arg(&file)
        .output()
        .expect("the CLI runs");
    let json: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        json["manifest"]["claims"],
        json!([{"kind": "notify.email", "action": "send"}])
    );
}
