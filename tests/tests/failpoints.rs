//! Races made deterministic with the host's fail points (`airlock::failpoint`). The points are
//! process-wide, so these tests have a binary of their own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock::Reply;
use airlock_tests::TempPluginDir;
use serde_json::json;

/// An event queued for a listener whose instance is re-created (disable, enable) between the
/// dispatcher finding it and invoking it must not reach the new instance: it was published
/// before that instance subscribed.
#[test]
fn an_event_for_a_torn_down_instance_never_reaches_its_successor() {
    let dir = TempPluginDir::with(&["listener"]);
    let (host, _) = dir.load("[plugins.listener]\ngrants = [\"events.subscribe:demo.*\"]\n");
    let host = Arc::new(host);
    let recreated = Arc::new(AtomicBool::new(false));
    {
        let (host, recreated) = (host.clone(), recreated.clone());
        airlock::failpoint::arm("deliver:matched", move || {
            if !recreated.load(Ordering::SeqCst) {
                host.disable("listener").expect("disable");
                host.enable("listener").expect("enable");
                recreated.store(true, Ordering::SeqCst);
            }
        });
    }
    assert_eq!(host.publish("demo.before", &json!(1)), 1);
    let started = Instant::now();
    while !recreated.load(Ordering::SeqCst) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never delivered"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    airlock::failpoint::disarm("deliver:matched");
    // The new instance's own subscription hears what is published after it subscribed.
    assert_eq!(host.publish("demo.after", &json!(2)), 1);
    let heard = loop {
        let Reply::Ok(heard) = host
            .call("listener", "heard")
            .json(&json!(null))
            .expect("call")
        else {
            panic!("heard failed");
        };
        if heard["count"].as_u64() > Some(0) || started.elapsed() > Duration::from_secs(10) {
            break heard;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(heard["last_topic"], "demo.after", "{heard}");
    assert_eq!(
        heard["count"], 1,
        "the event for the torn-down instance reached its successor: {heard}"
    );
}

/// A worker restart held up under the admin lock (a slow process start, say) must not hold up
/// the watchdog: a call into another plugin past its timeout is still told it is cancelled.
#[test]
fn a_slow_worker_restart_does_not_delay_the_watchdog() {
    let dir = TempPluginDir::with(&["hostile", "long-call"]);
    let data = tempfile::tempdir().expect("data dir");
    let trace = data.path().join("trace.log");
    let policy = format!(
        "[host]\ndata_dir = {kv:?}\n\
         [plugins.hostile]\nisolation = \"process\"\ngrants = [\"kv\"]\nrestart_backoff_ms = 1\n\
         [plugins.long-call]\ngrants = [\"kv\"]\ncall_timeout_ms = 100\ncancel_grace_ms = 60000\n\
         [plugins.long-call.config]\ntrace = {trace:?}\n",
        kv = data.path().join("kv").display().to_string(),
        trace = trace.display().to_string(),
    );
    let (host, report) = dir.load(&policy);
    assert!(report.all_ok(), "{report:#?}");
    let restarting = Arc::new(AtomicBool::new(false));
    let release = Arc::new(AtomicBool::new(false));
    {
        let (restarting, release) = (restarting.clone(), release.clone());
        airlock::failpoint::arm("restart:locked", move || {
            restarting.store(true, Ordering::SeqCst);
            let began = Instant::now();
            while !release.load(Ordering::SeqCst) && began.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(5));
            }
        });
    }
    // The worker dies; its restart stops at the point, holding the admin lock.
    let _ = host.call("hostile", "abort").json(&json!(null));
    let began = Instant::now();
    while !restarting.load(Ordering::SeqCst) {
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "no restart began"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Works until cancelled (at most 30 s): the watchdog reports it at its 100 ms timeout.
    let began = Instant::now();
    let outcome = host.call("long-call", "patient").json(&json!(30_000));
    let took = began.elapsed();
    release.store(true, Ordering::SeqCst);
    airlock::failpoint::disarm("restart:locked");
    let err = outcome.expect_err("cancelled");
    assert_eq!(err.code, airlock::CallErrorCode::Cancelled, "{err}");
    assert!(
        took < Duration::from_secs(20),
        "the watchdog waited for the restart: the call ran {took:?}"
    );
}

/// A plugin disabled while the supervisor waits for the admin lock to restart its dead worker
/// stays disabled: the restart looks again, under the lock, before it creates anything.
#[test]
fn a_worker_restart_does_not_undo_a_disable_made_while_it_waited() {
    let dir = TempPluginDir::with(&["hostile"]);
    let data = tempfile::tempdir().expect("data dir");
    let policy = format!(
        "[host]\ndata_dir = {kv:?}\n\
         [plugins.hostile]\nisolation = \"process\"\ngrants = [\"kv\"]\nrestart_backoff_ms = 1\n",
        kv = data.path().join("kv").display().to_string(),
    );
    let (host, report) = dir.load(&policy);
    assert!(report.all_ok(), "{report:#?}");
    let host = Arc::new(host);
    let disabled = Arc::new(AtomicBool::new(false));
    {
        let (host, disabled) = (host.clone(), disabled.clone());
        airlock::failpoint::arm("restart:due", move || {
            if !disabled.load(Ordering::SeqCst) {
                host.disable("hostile").expect("disable");
                disabled.store(true, Ordering::SeqCst);
            }
        });
    }
    // The worker dies; the supervisor finds its restart due, and the operator disables it
    // just before the supervisor takes the lock.
    let _ = host.call("hostile", "abort").json(&json!(null));
    let began = Instant::now();
    while !disabled.load(Ordering::SeqCst) {
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "no restart came due"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Give the supervisor its turns: it must not bring the plugin back.
    std::thread::sleep(Duration::from_millis(500));
    airlock::failpoint::disarm("restart:due");
    let info = host.plugin("hostile").expect("listed");
    assert_eq!(
        info.state,
        airlock::plugins::PluginState::Disabled,
        "{info:?}"
    );
    let restarted = host
        .audit()
        .tail(100)
        .iter()
        .any(|r| r.outcome == airlock::services::AuditOutcome::Restarted);
    assert!(!restarted, "the disabled plugin was restarted");
}

/// A plugin's helper thread that passed the `closing` check just before teardown set it, and
/// subscribes after teardown removed the context's subscriptions, must not leave a
/// subscription of the dead context behind (every publish would match it).
#[test]
fn a_subscription_added_as_teardown_removes_them_does_not_outlive_the_context() {
    let dir = TempPluginDir::with(&["probe"]);
    let (host, report) = dir.load("[plugins.probe]\ngrants = [\"events.subscribe:probe.*\"]\n");
    assert!(report.all_ok(), "{report:#?}");
    let host = Arc::new(host);
    let released = Arc::new(AtomicBool::new(false));
    {
        let released = released.clone();
        airlock::failpoint::arm("context:released", move || {
            released.store(true, Ordering::SeqCst);
        });
    }
    let disabling = Arc::new(std::sync::Mutex::new(None));
    {
        let (host, released, disabling) = (host.clone(), released.clone(), disabling.clone());
        airlock::failpoint::arm("membrane:subscribe-checked", move || {
            let mut disabling = disabling.lock().expect("lock");
            if disabling.is_some() {
                return;
            }
            // Teardown starts now, and removes the subscriptions before this one is added.
            let host = host.clone();
            *disabling = Some(std::thread::spawn(move || host.disable("probe")));
            let began = Instant::now();
            while !released.load(Ordering::SeqCst) {
                assert!(began.elapsed() < Duration::from_secs(30), "never released");
                std::thread::sleep(Duration::from_millis(2));
            }
        });
    }
    let answer = host
        .call("probe", "subscribe_later")
        .json(&json!("probe.*"));
    assert_eq!(answer.expect("call"), Reply::Ok(json!(null)));
    let began = Instant::now();
    let disable = loop {
        if let Some(disable) = disabling.lock().expect("lock").take() {
            break disable;
        }
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "no subscription tried"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    disable.join().expect("disable").expect("disabled");
    airlock::failpoint::disarm("membrane:subscribe-checked");
    airlock::failpoint::disarm("context:released");
    assert_eq!(
        host.publish("probe.after", &json!(null)),
        0,
        "a subscription of the torn-down context was left behind"
    );
}
