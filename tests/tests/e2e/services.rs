//! Events and timers are owned by the host: delivered on host threads, removed at teardown,
//! never doubled when a plugin is re-created, and never run after teardown returns.

use std::time::{Duration, Instant};

use airlock::{Host, Reply};
use airlock_tests::TempPluginDir;
use serde_json::Value;

const EVENTS_POLICY: &str = "[plugins.ticker]\ngrants = [\"timers\", \"events.publish:demo.*\"]\n\
     [plugins.listener]\ngrants = [\"events.subscribe:demo.*\"]\n";

fn heard(host: &Host) -> u64 {
    match host
        .call("listener", "heard")
        .json(&Value::Null)
        .expect("listener answers")
    {
        Reply::Ok(v) => v["count"].as_u64().expect("count"),
        other => panic!("{other:?}"),
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn ticks_flow_to_the_listener_and_nothing_runs_after_teardown() {
    let dir = TempPluginDir::with(&["ticker", "listener"]);
    let trace = tempfile::NamedTempFile::new().expect("trace file");
    let policy = format!(
        "{EVENTS_POLICY}[plugins.ticker.config]\ninterval_ms = 5\ntrace_file = {:?}\n",
        trace.path()
    );
    let (host, report) = dir.load(&policy);
    assert!(report.all_ok(), "{report:#?}");
    wait_until("three ticks heard", || heard(&host) >= 3);
    let ticker = host.plugin("ticker").expect("loaded");
    // The tick job, and the `hourly` job its manifest declares.
    assert_eq!(ticker.stats.timers, 2);
    assert_eq!(
        host.plugin("listener").expect("loaded").stats.subscriptions,
        1
    );

    host.shutdown();
    let ticks_at_shutdown = std::fs::read_to_string(trace.path())
        .expect("trace")
        .lines()
        .count();
    let events_at_shutdown = host.plugin("listener").expect("listed").stats.events;
    std::thread::sleep(Duration::from_millis(100));
    let ticks_later = std::fs::read_to_string(trace.path())
        .expect("trace")
        .lines()
        .count();
    assert_eq!(
        ticks_later, ticks_at_shutdown,
        "a timer job ran after teardown returned"
    );
    assert_eq!(
        host.plugin("listener").expect("listed").stats.events,
        events_at_shutdown
    );
    assert!(ticks_at_shutdown >= 3);
}

#[test]
fn a_recreated_listener_hears_each_event_once() {
    let dir = TempPluginDir::with(&["listener"]);
    let (host, _) = dir.load(EVENTS_POLICY);
    for _ in 0..3 {
        host.disable("listener").expect("disable");
        assert_eq!(
            host.publish("demo.quiet", &Value::Null),
            0,
            "a disabled plugin has no subscription"
        );
        host.enable("listener").expect("enable");
    }
    let info = host.plugin("listener").expect("loaded");
    assert_eq!(info.generation, 4);
    assert_eq!(info.stats.subscriptions, 1, "subscriptions were doubled");
    assert_eq!(host.publish("demo.hello", &serde_json::json!({"x": 1})), 1);
    wait_until("the event", || heard(&host) == 1);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(heard(&host), 1, "the event arrived twice");
}

#[test]
fn a_disabled_plugin_refuses_calls_and_its_context_is_revoked() {
    let dir = TempPluginDir::with(&["hello"]);
    let (host, _) = dir.load("");
    let token = host.plugin("hello").expect("loaded").context;
    host.disable("hello").expect("disable");
    assert!(!airlock::test_support::is_open(token));
    let err = host
        .call("hello", "greet")
        .json(&Value::Null)
        .expect_err("disabled");
    assert_eq!(err.code, airlock::CallErrorCode::Revoked);
    host.enable("hello").expect("enable");
    assert_eq!(
        host.call("hello", "greet")
            .json(&Value::Null)
            .expect("call"),
        Reply::Ok("Hello, world!".into())
    );
    let kinds: Vec<_> = host.audit().tail(10).iter().map(|r| r.outcome).collect();
    assert_eq!(
        kinds,
        [
            airlock::services::AuditOutcome::Disabled,
            airlock::services::AuditOutcome::Enabled
        ]
    );
}
