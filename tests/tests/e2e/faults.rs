//! Fault containment: every call error code, reached from the library and from the CLI; a
//! panic at every entry point with the host surviving; quarantine and recovery; the watchdog;
//! the threading contract, proved by the plugin itself.

use std::process::Command;
use std::time::{Duration, Instant};

use airlock::plugins::{PluginState, TeardownOutcome};
use airlock::{CallErrorCode, Host, Reply};
use airlock_tests::TempPluginDir;
use serde_json::{json, Value};

const POLICY: &str = "[plugins.hook-a]\ncall_timeout_ms = 100\nquarantine_faults = 100\n\
     [plugins.hook-a.config]\ntag = \"a\"\n\
     [plugins.hook-b]\nquarantine_faults = 2\n[plugins.hook-b.config]\ntag = \"b\"\n";

fn code(host: &Host, plugin: &str, action: &str, input: Value) -> CallErrorCode {
    host.call(plugin, action)
        .json(&input)
        .expect_err("fails")
        .code
}

/// Each code, and the call that reaches it, in the order the CLI test replays them.
fn code_cases() -> Vec<(CallErrorCode, &'static str, &'static str, Value)> {
    vec![
        (CallErrorCode::NotFound, "hook-a", "nothing", Value::Null),
        (
            CallErrorCode::BadInput,
            "hook-a",
            "sleep",
            json!({"ms": "soon"}),
        ),
        (
            CallErrorCode::HandlerError,
            "hook-a",
            "bad_output",
            Value::Null,
        ),
        (CallErrorCode::Panicked, "hook-b", "boom", Value::Null),
        (
            CallErrorCode::Timeout,
            "hook-a",
            "sleep",
            json!({"ms": 300}),
        ),
        (
            CallErrorCode::CapabilityViolation,
            "probe-bare",
            "kv_set",
            json!({"key": "k", "value": 1}),
        ),
        // The second fault within the window quarantines hook-b (quarantine_faults = 2).
        (CallErrorCode::Panicked, "hook-b", "boom", Value::Null),
        (CallErrorCode::Quarantined, "hook-b", "boom", Value::Null),
    ]
}

#[test]
fn every_call_error_code_is_reached_from_the_library() {
    let dir = TempPluginDir::with(&["hook-a", "hook-b", "probe-bare", "hello"]);
    let (host, report) = dir.load(POLICY);
    assert!(report.all_ok(), "{report:#?}");
    let mut seen = Vec::new();
    for (expected, plugin, action, input) in code_cases() {
        assert_eq!(
            code(&host, plugin, action, input),
            expected,
            "{plugin}/{action}"
        );
        seen.push(expected);
    }
    host.disable("hello").expect("disable");
    assert_eq!(
        code(&host, "hello", "greet", Value::Null),
        CallErrorCode::Revoked
    );
    seen.push(CallErrorCode::Revoked);
    for wanted in [
        CallErrorCode::NotFound,
        CallErrorCode::BadInput,
        CallErrorCode::HandlerError,
        CallErrorCode::Panicked,
        CallErrorCode::Revoked,
        CallErrorCode::Quarantined,
        CallErrorCode::CapabilityViolation,
        CallErrorCode::Timeout,
    ] {
        assert!(seen.contains(&wanted), "{wanted} not reached");
    }
}

#[test]
fn every_call_error_code_is_reached_from_the_cli() {
    let dir = TempPluginDir::with(&["hook-a", "hook-b", "probe-bare", "hello"]);
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).expect("policy");
    let mut script = String::new();
    for (_, plugin, action, input) in code_cases() {
        script.push_str(&format!("/call {plugin} {action} {input}\n"));
    }
    script.push_str("/disable hello\n/call hello greet\n/quit\n");
    let mut command = Command::new(env!("CARGO_BIN_EXE_airlock-cli"));
    command
        .arg("run")
        .arg(dir.path())
        .arg("--policy")
        .arg(&policy);
    let out = airlock_tests::run_with_input(command, &script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut codes: Vec<String> = code_cases()
        .iter()
        .map(|(c, ..)| c.code().to_owned())
        .collect();
    codes.push("revoked".to_owned());
    let answers: Vec<&str> = stdout.lines().filter(|l| l.starts_with("error ")).collect();
    let got: Vec<String> = answers
        .iter()
        .map(|l| {
            l["error ".len()..]
                .split(':')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(got, codes, "{stdout}");
}

#[test]
fn quarantine_fails_fast_shows_in_the_listing_and_enable_recovers() {
    let dir = TempPluginDir::with(&["hook-b"]);
    let (host, _) = dir.load(POLICY);
    for _ in 0..2 {
        assert_eq!(
            code(&host, "hook-b", "boom", Value::Null),
            CallErrorCode::Panicked
        );
    }
    let started = Instant::now();
    assert_eq!(
        code(&host, "hook-b", "sleep", json!({"ms": 500})),
        CallErrorCode::Quarantined
    );
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "a quarantined call must fail fast"
    );
    let info = host.plugin("hook-b").expect("listed");
    assert_eq!(info.state, PluginState::Quarantined);
    assert_eq!(info.stats.faults, 2);
    host.enable("hook-b").expect("enable");
    assert_eq!(
        host.plugin("hook-b").expect("listed").state,
        PluginState::Running
    );
    assert_eq!(
        host.call("hook-b", "sleep")
            .json(&json!({"ms": 1}))
            .expect("call"),
        Reply::Ok(1.into())
    );
}

#[test]
fn a_panic_at_every_entry_point_is_contained_and_counted() {
    // create: panics-in-init (pipeline tests); action and hook: here; the rest below.
    for (entry, extra) in [
        ("action", ""),
        ("hook", ""),
        ("event", ""),
        ("timer", ""),
        ("config", ""),
        ("health", ""),
        ("teardown", ""),
        ("validate", ""),
    ] {
        let dir = TempPluginDir::with(&["panicker", "hello"]);
        let policy = format!(
            "[plugins.panicker]\ngrants = [\"events.subscribe:panic.*\", \"timers\"]\nquarantine_faults = 0\n{extra}\
             [plugins.panicker.config]\npanic_in = \"{entry}\"\n"
        );
        let (host, report) = dir.load(&policy);
        if entry == "validate" {
            let refused = report.refused().next().expect("refused");
            assert_eq!(refused.reason.map(|r| r.code()), Some("config_invalid"));
            assert!(refused.detail.contains("panicked"), "{}", refused.detail);
        } else {
            assert!(report.all_ok(), "{entry}: {report:#?}");
            let faults = |host: &Host| host.plugin("panicker").expect("listed").stats.faults;
            match entry {
                "action" => assert_eq!(
                    code(&host, "panicker", "ping", Value::Null),
                    CallErrorCode::Panicked
                ),
                "hook" => {
                    host.define_hook("t.chain", airlock::hooks::HookMode::Chain);
                    let out = host
                        .hooks()
                        .chain("t.chain", "x".to_owned())
                        .expect("dispatched");
                    assert_eq!(out.failures[0].code, CallErrorCode::Panicked);
                }
                "event" => {
                    assert_eq!(host.publish("panic.now", &Value::Null), 1);
                    wait_for(|| faults(&host) >= 1);
                }
                "timer" => wait_for(|| faults(&host) >= 2),
                "config" => {
                    let applied = host
                        .set_config("panicker", json!({"panic_in": "config"}))
                        .expect("re-created");
                    assert!(
                        !applied.live,
                        "a panicking live change falls back to re-creating"
                    );
                }
                "health" => {
                    let err = host.health("panicker").expect_err("panicked");
                    assert_eq!(err.code, CallErrorCode::Panicked);
                }
                "teardown" => {
                    let records = host.shutdown();
                    let record = records
                        .iter()
                        .find(|r| r.id == "panicker")
                        .expect("torn down");
                    assert!(
                        matches!(&record.outcome, TeardownOutcome::Failed(m) if m.contains("panicked")),
                        "{record:?}"
                    );
                }
                _ => unreachable!(),
            }
            if entry != "teardown" {
                assert!(faults(&host) >= 1, "{entry}: the panic was not counted");
            }
        }
        // The host and its other plugin keep working.
        if entry != "teardown" {
            assert_eq!(
                host.call("hello", "greet")
                    .json(&Value::Null)
                    .expect("call"),
                Reply::Ok("Hello, world!".into()),
                "{entry}"
            );
        }
    }
}

fn wait_for(mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(20), "timed out");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_watchdog_reports_an_overrunning_call_while_it_runs() {
    let dir = TempPluginDir::with(&["hook-a"]);
    let (host, _) = dir.load("[plugins.hook-a]\ncall_timeout_ms = 50\nquarantine_faults = 0\n[plugins.hook-a.config]\ntag = \"a\"\n");
    std::thread::scope(|s| {
        let call = s.spawn(|| host.call("hook-a", "sleep").json(&json!({"ms": 1500})));
        wait_for(|| host.plugin("hook-a").expect("listed").stats.faults >= 1);
        assert!(
            !call.is_finished(),
            "the fault was counted while the call was still running"
        );
        let err = call.join().expect("joined").expect_err("overran");
        assert_eq!(err.code, CallErrorCode::Timeout);
    });
    assert_eq!(
        host.plugin("hook-a").expect("listed").stats.faults,
        1,
        "counted once, not twice"
    );
}

#[test]
fn health_is_polled_at_the_policy_interval() {
    let dir = TempPluginDir::with(&["counter"]);
    let (host, _) = dir.load("[defaults]\nhealth_interval_ms = 20\n");
    wait_for(|| host.plugin("counter").expect("listed").health.is_some());
    assert_eq!(
        host.plugin("counter").expect("listed").health,
        Some(airlock_abi::Health::Ok)
    );
}

#[test]
fn a_serial_plugin_is_never_entered_twice_and_the_parallel_control_is() {
    let dir = TempPluginDir::with(&["prover", "prover-parallel"]);
    let (host, _) = dir.load("");
    for plugin in ["prover", "prover-parallel"] {
        let handle = host.action(plugin, "enter").expect("resolved");
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..40 {
                        handle.call().json(&Value::Null).expect("call");
                    }
                });
            }
        });
    }
    let overlaps = |p: &str| host.call(p, "overlaps").json(&Value::Null).expect("call");
    assert_eq!(
        overlaps("prover"),
        Reply::Ok(0.into()),
        "a serial plugin was entered twice"
    );
    match overlaps("prover-parallel") {
        Reply::Ok(n) => assert!(
            n.as_u64().is_some_and(|n| n > 0),
            "the control saw no overlap"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_pre_resolved_handle_calls_without_lookup_and_in_bytes() {
    let dir = TempPluginDir::with(&["counter"]);
    let (host, _) = dir.load("");
    let increment = host.action("counter", "increment").expect("resolved");
    for _ in 0..3 {
        increment.call().json(&Value::Null).expect("call");
    }
    assert_eq!(
        increment.call().bytes(br#"{"by": 10}"#).expect("call"),
        Reply::Ok(b"13".to_vec())
    );
    assert_eq!(
        host.action("counter", "nope").expect_err("unknown").code,
        CallErrorCode::NotFound
    );
}

#[test]
fn a_create_that_overruns_its_deadline_is_refused_as_init_timeout() {
    let dir = TempPluginDir::with(&["panicker", "hello"]);
    let started = Instant::now();
    let (host, report) = dir.load(
        "[plugins.panicker]\ninit_deadline_ms = 100\n[plugins.panicker.config]\nsleep_in_create_ms = 3000\n",
    );
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "the host waited for the sleeper"
    );
    let refused = report.refused().next().expect("refused");
    assert_eq!(refused.reason.map(|r| r.code()), Some("init_timeout"));
    assert!(host.plugin("panicker").is_none());
    assert!(
        host.plugin("hello").is_some(),
        "the next plugin still loads"
    );
}
