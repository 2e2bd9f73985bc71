//! Races made deterministic with the host's fail points (`airlock::failpoint`). The points are
//! process-wide, so these tests have a binary of their own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock::ActionOutcome;
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
        let ActionOutcome::Ok(heard) = host.call("listener", "heard", &json!(null)).expect("call")
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
