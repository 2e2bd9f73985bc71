//! The circuit breaker on dispatch through a real claim holder (`claimer`, which fails
//! retryably as many times as its config says): opened after the policy's failures in a row,
//! refusing without calling the plugin, probing after its cooldown, opening again when the
//! probe fails and closing when it succeeds — shown in `PluginInfo`, the console's `/plugins`
//! and the audit log.

use std::time::{Duration, Instant};

use airlock::call::Dispatched;
use airlock::plugins::BreakerState;
use airlock::services::AuditOutcome;
use airlock::{CallError, CallErrorCode, Host, Reply};
use airlock_tests::TempPluginDir;
use serde_json::{json, Value};

const PATIENCE: Duration = Duration::from_secs(30);

fn attempts(host: &Host) -> Value {
    match host.call("claimer", "attempts").json(&Value::Null) {
        Ok(Reply::Ok(n)) => n,
        other => panic!("attempts: {other:?}"),
    }
}

fn dispatch(host: &Host) -> Result<Dispatched, CallError> {
    host.dispatch("notify.email")
        .json(&json!({"to": "ada@example.com"}))
}

/// Dispatches until the breaker lets one through (the probe), within [`PATIENCE`].
fn probe(host: &Host) -> Dispatched {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match dispatch(host) {
            Err(e) if e.code == CallErrorCode::BreakerOpen && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("no probe: {e}"),
            Ok(probe) => return probe,
        }
    }
}

fn breaker_records(host: &Host) -> Vec<AuditOutcome> {
    host.audit()
        .tail(512)
        .into_iter()
        .filter(|r| r.capability == "breaker:send" && r.plugin == "claimer")
        .map(|r| r.outcome)
        .collect()
}

#[test]
fn the_breaker_opens_after_its_failures_probes_after_its_cooldown_and_closes_on_success() {
    let dir = TempPluginDir::with(&["claimer"]);
    // Four sends fail: three open the breaker, the first probe fails, the second succeeds.
    let (host, report) = dir.load(
        "[plugins.claimer]\nconfig = { fail_first = 4 }\ndispatch_retries = 0\n\
         breaker = { failures = 3, cooldown_ms = 300 }\n",
    );
    assert!(report.all_ok(), "{report:#?}");
    for n in 1..=3 {
        let failed = dispatch(&host).expect("dispatched");
        assert!(
            matches!(&failed.reply, Reply::Error(m) if m.contains("smtp busy")),
            "{n}: {failed:?}"
        );
    }
    assert_eq!(breaker_records(&host), [AuditOutcome::BreakerOpened]);
    // Open: refused without reaching the plugin.
    let refused = dispatch(&host).expect_err("the breaker is open");
    assert_eq!(refused.code, CallErrorCode::BreakerOpen);
    assert!(
        refused
            .message
            .contains("claimer.send failed 3 times in a row"),
        "{refused}"
    );
    assert_eq!(attempts(&host), json!(3));
    let info = host.plugin("claimer").expect("loaded");
    assert_eq!(info.breakers.len(), 1);
    assert_eq!(
        (info.breakers[0].action.as_str(), info.breakers[0].state),
        ("send", BreakerState::Open)
    );
    assert_eq!(info.breakers[0].failures, 3);
    // A direct call is not a dispatch: the breaker does not stand in its way.
    assert_eq!(attempts(&host), json!(3));

    // After the cooldown one dispatch probes it; it fails, and the breaker opens again.
    let failed_probe = probe(&host);
    assert!(
        matches!(&failed_probe.reply, Reply::Error(m) if m.contains("attempt 4")),
        "{failed_probe:?}"
    );
    assert_eq!(failed_probe.attempts, 1);
    assert_eq!(
        dispatch(&host).expect_err("open again").code,
        CallErrorCode::BreakerOpen
    );
    assert_eq!(attempts(&host), json!(4));
    // The next probe succeeds and closes it; dispatches go through again.
    let good_probe = probe(&host);
    assert_eq!(
        good_probe.reply,
        Reply::Ok(json!({"sent": {"to": "ada@example.com"}, "attempt": 5}))
    );
    let after = dispatch(&host).expect("closed");
    assert!(matches!(after.reply, Reply::Ok(_)), "{after:?}");
    assert_eq!(attempts(&host), json!(6));
    let info = host.plugin("claimer").expect("loaded");
    assert_eq!(
        (info.breakers[0].state, info.breakers[0].failures),
        (BreakerState::Closed, 0)
    );
    assert_eq!(
        breaker_records(&host),
        [
            AuditOutcome::BreakerOpened,
            AuditOutcome::BreakerHalfOpen,
            AuditOutcome::BreakerOpened,
            AuditOutcome::BreakerHalfOpen,
            AuditOutcome::BreakerClosed,
        ]
    );
}

#[test]
fn without_a_breaker_in_the_policy_every_dispatch_reaches_the_plugin() {
    let dir = TempPluginDir::with(&["claimer"]);
    let (host, report) =
        dir.load("[plugins.claimer]\nconfig = { fail_first = 20 }\ndispatch_retries = 0\n");
    assert!(report.all_ok(), "{report:#?}");
    for _ in 0..10 {
        assert!(matches!(
            dispatch(&host).expect("dispatched").reply,
            Reply::Error(_)
        ));
    }
    assert_eq!(attempts(&host), json!(10));
    assert!(host.plugin("claimer").expect("loaded").breakers.is_empty());
    assert!(breaker_records(&host).is_empty());
}

#[test]
fn the_console_shows_an_open_breaker_in_plugins() {
    let dir = TempPluginDir::with(&["claimer"]);
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[plugins.claimer]\nconfig = { fail_first = 5 }\ndispatch_retries = 0\n\
         breaker = { failures = 2, cooldown_ms = 600000 }\n",
    )
    .expect("policy");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_airlock-cli"));
    cmd.args(["run", "--policy"]).arg(&policy).arg(dir.path());
    let out = airlock_tests::run_with_input(
        cmd,
        "/dispatch notify.email {}\n/dispatch notify.email {}\n/dispatch notify.email {}\n/plugins\n/quit\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("breaker_open"), "{stdout}");
    assert!(
        stdout.contains("breaker open on send after 2 failures in a row"),
        "{stdout}"
    );
}
