//! Shutdown: reverse load order, a deadline per plugin, and every context revoked after.

use std::time::{Duration, Instant};

use airlock::plugins::{PluginState, TeardownOutcome};
use airlock::CallErrorCode;
use airlock_abi::abi::{ContextToken, HostErrorCode};
use airlock_tests::TempPluginDir;

/// Reads a plugin's config through the host vtable, with its token, the way the plugin does.
fn config_of(token: ContextToken) -> Result<Vec<u8>, HostErrorCode> {
    (airlock::test_support::host_vtable().config())(token)
        .into_result()
        .map(|bytes| bytes.into_vec())
        .map_err(|e| e.code)
}

#[test]
fn shutdown_tears_down_in_reverse_load_order() {
    let dir = TempPluginDir::new();
    dir.add_as("hello", &TempPluginDir::lib_name("a"));
    dir.add_as("counter", &TempPluginDir::lib_name("b"));
    dir.add_as("ctor-plugin", &TempPluginDir::lib_name("c"));
    let (host, _) = dir.load("");
    let loaded: Vec<String> = host.plugins().into_iter().map(|p| p.id).collect();
    assert_eq!(loaded, ["hello", "counter", "ctor-plugin"]);
    let order: Vec<String> = host.shutdown().into_iter().map(|r| r.id).collect();
    assert_eq!(order, ["ctor-plugin", "counter", "hello"]);
    assert!(
        host.shutdown().is_empty(),
        "a second shutdown has nothing left to do"
    );
}

#[test]
fn contexts_are_revoked_after_teardown() {
    let dir = TempPluginDir::with(&["hello"]);
    let (host, _) = dir.load("[plugins.hello.config]\ngreeting = \"Hey\"\n");
    let token = host.plugin("hello").expect("loaded").context;
    assert!(airlock::test_support::is_open(token));
    assert_eq!(config_of(token).expect("open"), br#"{"greeting":"Hey"}"#);
    host.shutdown();
    assert!(!airlock::test_support::is_open(token));
    assert_eq!(config_of(token), Err(HostErrorCode::REVOKED));
    assert_eq!(
        host.plugin("hello").expect("listed").state,
        PluginState::Stopped
    );
    let err = host
        .call("hello", "greet")
        .json(&serde_json::Value::Null)
        .expect_err("torn down");
    assert_eq!(err.code, CallErrorCode::Revoked);
}

#[test]
fn a_plugin_overrunning_its_deadline_is_abandoned_and_shutdown_continues() {
    let dir = TempPluginDir::new();
    dir.add_as("hello", &TempPluginDir::lib_name("a-hello"));
    dir.add_as("slow-teardown", &TempPluginDir::lib_name("b-slow"));
    let (host, _) = dir.load(
        "[plugins.slow-teardown]\nshutdown_deadline_ms = 100\n[plugins.slow-teardown.config]\nsleep_ms = 5000\n",
    );
    let slow_token = host.plugin("slow-teardown").expect("loaded").context;
    let started = Instant::now();
    let records = host.shutdown();
    assert!(
        started.elapsed() < Duration::from_millis(4000),
        "shutdown waited for the sleeper"
    );
    assert_eq!(records[0].id, "slow-teardown");
    assert_eq!(records[0].outcome, TeardownOutcome::Abandoned);
    assert_eq!(records[1].id, "hello");
    assert_eq!(records[1].outcome, TeardownOutcome::Clean);
    assert!(
        !airlock::test_support::is_open(slow_token),
        "an abandoned plugin's context is revoked"
    );
    assert_eq!(
        host.plugin("slow-teardown").expect("listed").state,
        PluginState::Abandoned
    );
}
