//! Cancellation: a caller cancels a running call (in-process and in a worker), the plugins it
//! calls see it too, a token cancelled before the call makes no call, a plugin being disabled or
//! reloaded sees its calls cancelled and stops, so its teardown is clean, and a call past its
//! timeout is cancelled for the plugin. Each is seen by the plugin (its trace) and ends
//! `cancelled`; a plugin that ignores it is still counted as a fault.

use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock::plugins::TeardownOutcome;
use airlock::{CallErrorCode, CancelToken, Host, Reply};
use airlock_tests::TempPluginDir;
use serde_json::{json, Value};

/// Whether the plugin wrote that it saw its call cancelled.
fn saw_cancelled(dir: &TempPluginDir) -> bool {
    std::fs::read_to_string(dir.path().join("trace"))
        .unwrap_or_default()
        .contains("patient saw cancelled")
}

fn load(dir: &TempPluginDir, extra: &str) -> Host {
    let trace = dir.path().join("trace");
    let policy = format!(
        "[plugins.long-call]\nshutdown_deadline_ms = 2000\n{extra}\n\
         [plugins.long-call.config]\ntrace = {trace:?}\n\
         [plugins.probe]\ngrants = [\"plugins.call:long-call\"]\n"
    );
    let (host, report) = dir.load(&policy);
    assert!(report.all_ok(), "{report:#?}");
    host
}

/// Waits until `patient` has started working (its trace says so).
fn wait_until_patient_started(dir: &TempPluginDir) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(dir.path().join("trace"))
        .unwrap_or_default()
        .contains("patient started")
    {
        assert!(Instant::now() < deadline, "patient never started");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `call` on another thread, cancels `token` once the plugin is at work; how the call
/// ended and how long it took (the plugin would work 10 s if it were not stopped).
fn cancel_once_started(
    dir: &TempPluginDir,
    host: &Arc<Host>,
    token: &CancelToken,
    call: impl FnOnce(&Host) -> Result<Reply, airlock::CallError> + Send + 'static,
) -> (Result<Reply, airlock::CallError>, Duration) {
    let started = Instant::now();
    let caller = {
        let host = host.clone();
        std::thread::spawn(move || call(&host))
    };
    wait_until_patient_started(dir);
    token.cancel();
    (caller.join().expect("caller"), started.elapsed())
}

#[test]
fn a_caller_cancels_a_running_call_in_process_and_in_a_worker() {
    for isolation in ["", "isolation = \"process\"\nsandbox = false"] {
        let dir = TempPluginDir::with(&["long-call", "probe"]);
        let host = Arc::new(load(&dir, isolation));
        let token = CancelToken::new();
        let watched = token.clone();
        let (ended, took) = cancel_once_started(&dir, &host, &token, move |host| {
            host.call("long-call", "patient")
                .cancel_on(&watched)
                .json(&Value::Null)
        });
        let err = ended.expect_err("cancelled");
        assert_eq!(err.code, CallErrorCode::Cancelled, "{isolation:?}: {err}");
        assert!(
            took < Duration::from_secs(5),
            "{isolation:?}: not stopped: {took:?}"
        );
        assert!(saw_cancelled(&dir), "{isolation:?}");
        // Not a fault, and the plugin serves the next call.
        let info = host.plugin("long-call").expect("loaded");
        assert_eq!(info.stats.faults, 0, "{isolation:?}");
        assert_eq!(
            host.call("long-call", "patient")
                .json(&json!(3))
                .expect("served"),
            Reply::Ok(json!(3))
        );
    }
}

#[test]
fn a_cancelled_call_cancels_the_calls_it_made_and_a_cancelled_token_makes_no_call() {
    let dir = TempPluginDir::with(&["long-call", "probe"]);
    let host = Arc::new(load(&dir, ""));
    // probe -> long-call.patient (10 s unless cancelled), on the same thread.
    let token = CancelToken::new();
    let watched = token.clone();
    let (ended, took) = cancel_once_started(&dir, &host, &token, move |host| {
        let target = json!({"plugin": "long-call", "action": "patient"});
        host.call("probe", "call_plugin")
            .cancel_on(&watched)
            .json(&target)
    });
    assert_eq!(ended.expect_err("cancelled").code, CallErrorCode::Cancelled);
    assert!(
        took < Duration::from_secs(5),
        "the inner call was not stopped: {took:?}"
    );
    assert!(saw_cancelled(&dir), "the inner plugin saw it");
    let calls_before = host.plugin("long-call").expect("loaded").stats.calls;
    let err = host
        .call("long-call", "patient")
        .cancel_on(&token)
        .json(&json!(1))
        .expect_err("not made");
    assert_eq!(err.code, CallErrorCode::Cancelled);
    assert_eq!(
        host.plugin("long-call").expect("loaded").stats.calls,
        calls_before
    );
}

#[test]
fn a_plugin_disabled_or_reloaded_sees_its_calls_cancelled_and_its_teardown_is_clean() {
    for reload in [false, true] {
        let dir = TempPluginDir::with(&["long-call", "probe"]);
        let host = Arc::new(load(&dir, ""));
        let started = Instant::now();
        let caller = {
            let host = host.clone();
            std::thread::spawn(move || host.call("long-call", "patient").json(&Value::Null))
        };
        wait_until_patient_started(&dir);
        // Without cancellation the call would run 10 s, past the 2 s deadline: abandoned.
        if reload {
            let outcome = host.reload("long-call").expect("known");
            assert!(
                matches!(
                    outcome,
                    airlock::plugins::ReloadOutcome::Loaded { generation: 2, .. }
                ),
                "{outcome}"
            );
            // The old generation drained and was torn down (an abandoned one is not).
            let trace = std::fs::read_to_string(dir.path().join("trace")).expect("trace");
            assert!(trace.contains("teardown"), "{trace}");
        } else {
            let record = host.disable("long-call").expect("disabled");
            assert_eq!(record.outcome, TeardownOutcome::Clean);
        }
        let err = caller.join().expect("caller").expect_err("cancelled");
        assert_eq!(err.code, CallErrorCode::Cancelled, "reload {reload}: {err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(saw_cancelled(&dir), "reload {reload}");
        if reload {
            // The new generation serves, and the cancelled call was no fault of the old one.
            assert_eq!(
                host.call("long-call", "patient")
                    .json(&json!(2))
                    .expect("served"),
                Reply::Ok(json!(2))
            );
            assert_eq!(host.plugin("long-call").expect("loaded").stats.faults, 0);
        }
    }
}

#[test]
fn a_call_past_its_timeout_is_cancelled_for_the_plugin_and_one_that_ignores_it_is_a_fault() {
    let dir = TempPluginDir::with(&["long-call", "probe"]);
    let host = load(&dir, "call_timeout_ms = 100\ncancel_grace_ms = 2000");
    let started = Instant::now();
    // 10 s of work unless the plugin sees its call cancelled once the watchdog reports it.
    let err = host
        .call("long-call", "patient")
        .json(&Value::Null)
        .expect_err("cancelled");
    assert_eq!(err.code, CallErrorCode::Cancelled, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the plugin never saw its call cancelled: {:?}",
        started.elapsed()
    );
    assert!(saw_cancelled(&dir));
    // It stopped within its grace: not a fault.
    assert_eq!(host.plugin("long-call").expect("loaded").stats.faults, 0);
    // `work` never looks: past the timeout and the grace it is a fault, and ends `timeout`.
    drop(host);
    let host = load(&dir, "call_timeout_ms = 100\ncancel_grace_ms = 100");
    let err = host
        .call("long-call", "work")
        .json(&json!({"ms": 600}))
        .expect_err("timed out");
    assert_eq!(err.code, CallErrorCode::Timeout, "{err}");
    assert_eq!(host.plugin("long-call").expect("loaded").stats.faults, 1);
}

#[test]
fn a_call_its_caller_cancelled_that_runs_on_past_its_timeout_and_grace_ends_timeout() {
    // The caller's cancellation does not hide a fault: `work` never looks, so past the timeout
    // and the grace the watchdog counts it, and the caller is told `timeout`, not `cancelled`.
    let dir = TempPluginDir::with(&["long-call", "probe"]);
    let host = load(&dir, "call_timeout_ms = 100\ncancel_grace_ms = 100");
    let token = CancelToken::new();
    let canceller = {
        let token = token.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            token.cancel();
        })
    };
    let err = host
        .call("long-call", "work")
        .cancel_on(&token)
        .json(&json!({"ms": 600}))
        .expect_err("timed out");
    canceller.join().expect("canceller");
    assert_eq!(err.code, CallErrorCode::Timeout, "{err}");
    assert_eq!(host.plugin("long-call").expect("loaded").stats.faults, 1);
}
