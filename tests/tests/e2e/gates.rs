//! Serial gates under contention: a call waiting for a serial plugin is not timed as the
//! plugin's run, every wait ends (`busy` at its bound, or at once on a wait cycle across
//! threads), and operators are not held up by a cycle.

use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use airlock::plugins::PluginState;
use airlock::{CallError, CallErrorCode, Host, Reply};
use airlock_tests::TempPluginDir;
use serde_json::json;

/// The two serial relays, each told its own id, with `extra` in each one's policy.
fn serial_relays(extra: &str) -> (Arc<Host>, TempPluginDir) {
    let dir = TempPluginDir::with(&["relay-a", "relay-d"]);
    let mut policy = String::new();
    for id in ["relay-a", "relay-d"] {
        policy.push_str(&format!(
            "[plugins.{id}]\ngrants = [\"plugins.call:relay-*\"]\n{extra}\n\
             [plugins.{id}.config]\nid = \"{id}\"\n"
        ));
    }
    let (host, report) = dir.load(&policy);
    assert!(report.refused().next().is_none(), "{report:#?}");
    (Arc::new(host), dir)
}

/// Calls `from.bounce` on a thread of its own; the receiver gets the outcome and how long it
/// took.
fn bounce_on_thread(
    host: &Arc<Host>,
    from: &str,
    input: serde_json::Value,
) -> mpsc::Receiver<(Result<Reply, CallError>, Duration)> {
    let (tx, rx) = mpsc::channel();
    let (host, from) = (host.clone(), from.to_owned());
    std::thread::spawn(move || {
        let began = Instant::now();
        let outcome = host.call(&from, "bounce").json(&input);
        let _ = tx.send((outcome, began.elapsed()));
    });
    rx
}

/// Whether a call ended the way a call that lost a wait ends: `busy` (its own, or the nested
/// call's, as the plugin's error), or cancelled or timed out at its timeout.
fn lost_its_wait(outcome: &Result<Reply, CallError>) -> bool {
    match outcome {
        Ok(Reply::Error(message)) => message.contains("busy"),
        Err(e) => matches!(
            e.code,
            CallErrorCode::Busy | CallErrorCode::Cancelled | CallErrorCode::Timeout
        ),
        Ok(_) => false,
    }
}

#[test]
fn two_serial_plugins_calling_each_other_from_two_threads_do_not_deadlock() {
    let (host, _dir) = serial_relays("call_timeout_ms = 2000");
    // Each holds its own gate for 300 ms, then calls the other: A → D on one thread while
    // D → A on the other. Without bounded, cycle-aware waits both threads hang forever.
    let one = bounce_on_thread(
        &host,
        "relay-a",
        json!({ "to": "relay-d", "times": 1, "pause_ms": 300 }),
    );
    let two = bounce_on_thread(
        &host,
        "relay-d",
        json!({ "to": "relay-a", "times": 1, "pause_ms": 300 }),
    );
    // Generous: both end well within their 2 s timeout (plus the watchdog's grace).
    let ended = |rx: mpsc::Receiver<_>| rx.recv_timeout(Duration::from_secs(30)).expect("hung");
    let (one, two) = (ended(one), ended(two));
    let outcomes = [&one.0, &two.0];
    assert!(
        outcomes.iter().any(|o| lost_its_wait(o)),
        "neither call gave up: {outcomes:?}"
    );
    for (outcome, took) in [&one, &two] {
        assert!(
            lost_its_wait(outcome) || *outcome == Ok(Reply::Ok(json!(1))),
            "{outcome:?}"
        );
        assert!(
            *took < Duration::from_secs(10),
            "took {took:?}: {outcome:?}"
        );
    }
    // Nothing is left holding a gate or the admin lock: operators act, and both still answer.
    host.set_config("relay-d", json!({ "id": "relay-d" }))
        .expect("set_config");
    assert_eq!(
        host.call("relay-a", "bounce")
            .json(&json!({ "to": "relay-d", "times": 1 }))
            .expect("call"),
        Reply::Ok(json!(1))
    );
    host.disable("relay-a").expect("disable");
    assert_eq!(
        host.plugin("relay-a").expect("listed").state,
        PluginState::Disabled
    );
}

#[test]
fn a_nested_call_waits_for_a_busy_serial_plugin_no_longer_than_its_outer_call_has_left() {
    let (host, _dir) = serial_relays("call_timeout_ms = 300\ncancel_grace_ms = 5000");
    // relay-d is busy for 4 s on one thread (its own call overruns; it is the one at fault).
    let holder = bounce_on_thread(
        &host,
        "relay-d",
        json!({ "to": "relay-a", "times": 0, "pause_ms": 4000 }),
    );
    std::thread::sleep(Duration::from_millis(100));
    // relay-a's call (300 ms timeout) calls relay-d: its wait ends with what is left of it.
    let began = Instant::now();
    let outcome = host
        .call("relay-a", "bounce")
        .json(&json!({ "to": "relay-d", "times": 1 }));
    let took = began.elapsed();
    assert!(lost_its_wait(&outcome), "{outcome:?}");
    assert!(
        took < Duration::from_millis(3000),
        "waited {took:?}, past its outer call's timeout, for the busy plugin: {outcome:?}"
    );
    let _held = holder
        .recv_timeout(Duration::from_secs(30))
        .expect("the holder ends");
}

#[test]
fn callers_queued_for_a_serial_plugin_are_not_timed_as_its_run() {
    let dir = TempPluginDir::with(&["prover"]);
    let (host, report) =
        dir.load("[plugins.prover]\ncall_timeout_ms = 300\nquarantine_faults = 3\n");
    assert!(report.refused().next().is_none(), "{report:#?}");
    let host = Arc::new(host);
    // Eight callers at once; each call takes half the timeout. Those queued long enough get
    // `busy` (their own wait bound), but none is a fault: the plugin never overran.
    let outcomes: Vec<_> = std::thread::scope(|s| {
        let callers: Vec<_> = (0..8)
            .map(|_| s.spawn(|| host.call("prover", "hold").json(&json!(150))))
            .collect();
        callers
            .into_iter()
            .map(|c| c.join().expect("caller"))
            .collect()
    });
    for outcome in &outcomes {
        match outcome {
            Ok(Reply::Ok(_)) => {}
            Err(e) if e.code == CallErrorCode::Busy => {}
            other => panic!("{other:?} in {outcomes:?}"),
        }
    }
    let info = host.plugin("prover").expect("listed");
    assert_eq!(info.stats.faults, 0, "{outcomes:?}");
    assert_eq!(info.state, PluginState::Running);
    assert!(outcomes.iter().any(|o| matches!(o, Ok(Reply::Ok(_)))));
}

/// The service threads (the health poller, the timer thread, the event dispatcher) each serve
/// every plugin: one serial plugin stuck in a long call must not stop the others' timer runs
/// and health polls.
#[test]
fn a_serial_plugin_stuck_in_a_call_does_not_stop_the_others_timers_or_health_polls() {
    let dir = TempPluginDir::with(&["prover", "prover-parallel"]);
    let mut policy = String::from("[defaults]\nhealth_interval_ms = 20\n");
    for id in ["prover", "prover-parallel"] {
        policy.push_str(&format!(
            "[plugins.{id}]\ngrants = [\"timers\"]\ncall_timeout_ms = 30000\nshutdown_deadline_ms = 100\n\
             [plugins.{id}.config]\ntick_ms = 10\n"
        ));
    }
    let (host, report) = dir.load(&policy);
    assert!(report.refused().next().is_none(), "{report:#?}");
    let host = Arc::new(host);
    let count = |plugin: &str, action: &str| match host.call(plugin, action).json(&json!(null)) {
        Ok(Reply::Ok(n)) => n.as_u64().expect("a count"),
        other => panic!("{plugin}.{action}: {other:?}"),
    };
    // prover is busy for 20 s; its own timer runs and health polls cannot enter meanwhile.
    let holder = {
        let host = host.clone();
        std::thread::spawn(move || host.call("prover", "hold").json(&json!(20_000)))
    };
    std::thread::sleep(Duration::from_millis(200));
    let (ticks, polls) = (
        count("prover-parallel", "ticks"),
        count("prover-parallel", "polls"),
    );
    // The other plugin keeps being served: both counts move on long before prover is free.
    let began = Instant::now();
    loop {
        let moved = count("prover-parallel", "ticks") > ticks + 5
            && count("prover-parallel", "polls") > polls + 5;
        if moved {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "the service threads waited for the busy plugin: ticks {ticks} -> {}, polls {polls} -> {}",
            count("prover-parallel", "ticks"),
            count("prover-parallel", "polls")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let info = host.plugin("prover").expect("listed");
    assert_eq!(info.state, PluginState::Running);
    assert_eq!(info.stats.faults, 0);
    // Not waited for: disabling abandons the instance the 20 s call still runs on.
    host.disable("prover").expect("disable");
    drop(holder);
}

/// An event for a serial plugin busy with a call waits for it without holding up the other
/// plugins' events, and the busy plugin hears its events afterwards, in order.
#[test]
fn events_for_a_busy_serial_plugin_wait_for_it_and_do_not_hold_up_the_others() {
    let dir = TempPluginDir::with(&["prover", "prover-parallel"]);
    let mut policy = String::new();
    for id in ["prover", "prover-parallel"] {
        policy.push_str(&format!(
            "[plugins.{id}]\ngrants = [\"events.subscribe:gate.*\"]\ncall_timeout_ms = 30000\n\
             [plugins.{id}.config]\nsubscribe = \"gate.*\"\n"
        ));
    }
    let (host, report) = dir.load(&policy);
    assert!(report.refused().next().is_none(), "{report:#?}");
    let host = Arc::new(host);
    let heard = |plugin: &str| match host.call(plugin, "heard").json(&json!(null)) {
        Ok(Reply::Ok(topics)) => topics,
        other => panic!("{plugin}.heard: {other:?}"),
    };
    let holder = {
        let host = host.clone();
        std::thread::spawn(move || host.call("prover", "hold").json(&json!(6_000)))
    };
    std::thread::sleep(Duration::from_millis(200));
    let topics: Vec<String> = (1..=5).map(|n| format!("gate.{n}")).collect();
    for topic in &topics {
        assert_eq!(host.publish(topic, &json!(null)), 2);
    }
    // The other plugin hears them while prover is still busy.
    let began = Instant::now();
    while heard("prover-parallel") != json!(topics) {
        assert!(
            began.elapsed() < Duration::from_secs(4),
            "the dispatcher waited for the busy plugin: {}",
            heard("prover-parallel")
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    holder.join().expect("holder").expect("hold");
    // Once free, prover hears every event, in the order they were published.
    let began = Instant::now();
    while heard("prover") != json!(topics) {
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "not delivered after the plugin was free: {}",
            heard("prover")
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
