//! Call spans where a call is handed to another thread, seen by a global subscriber (so this
//! file is a test binary of its own): a call made through the async API runs on a call thread
//! in the span current where it was asked for, a streamed call on its own thread too, and an
//! event's delivery in the span it was published in.

#[path = "e2e/spans.rs"]
mod spans;

use std::time::{Duration, Instant};

use airlock::nonblocking::AsyncHost;
use airlock::{Host, Reply};
use airlock_tests::TempPluginDir;
use serde_json::json;

use spans::{call_of, field, Seen, Spans};

/// The index of the span named `name` that the test made itself.
fn own(seen: &[Seen], name: &str) -> usize {
    seen.iter()
        .position(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name}: {seen:#?}"))
}

#[test]
fn calls_handed_to_other_threads_stay_in_the_span_they_were_made_in() {
    let spans = Spans::default();
    tracing::subscriber::set_global_default(spans.subscriber()).expect("the only subscriber");
    let dir = TempPluginDir::with(&["relay-b", "relay-c", "listener", "tally"]);
    let data = dir.path().join("data");
    let mut policy = format!(
        "[host]\ndata_dir = {data:?}\n[plugins.listener]\ngrants = [\"events.subscribe:demo.*\"]\n\
         [plugins.tally]\ngrants = [\"kv\"]\n",
    );
    for id in ["relay-b", "relay-c"] {
        policy.push_str(&format!(
            "[plugins.{id}]\ngrants = [\"plugins.call:relay-*\"]\n\
             [plugins.{id}.config]\nid = \"{id}\"\n"
        ));
    }
    let (host, report) = dir.load(&policy);
    assert!(report.all_ok(), "{report:#?}");
    let host = AsyncHost::from(host);

    // The async API: the future is made in the program's span, the call runs on a call thread.
    let asked = tracing::info_span!("asked");
    let call = asked.in_scope(|| {
        host.call("relay-b", "bounce")
            .json(&json!({ "to": "relay-c", "times": 1 }))
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    assert_eq!(runtime.block_on(call).expect("call"), Reply::Ok(json!(1)));

    // A streamed call runs on a thread of its own.
    let streamed = tracing::info_span!("streamed");
    let mut chunks = 0;
    let counted = streamed.in_scope(|| {
        Host::call(&host, "tally", "count")
            .on_chunk(|_| chunks += 1)
            .json(&json!({ "text": "to be or not" }))
    });
    assert!(matches!(counted, Ok(Reply::Ok(_))), "{counted:?}");
    assert!(chunks > 0, "the call streamed");

    // An event is delivered on the event thread, after the publisher has moved on.
    let published = tracing::info_span!("published");
    assert_eq!(
        published.in_scope(|| host.publish("demo.traced", &json!({ "n": 1 }))),
        1
    );
    drop(published);
    let deadline = Instant::now() + Duration::from_secs(30);
    let delivered = |seen: &[Seen]| {
        seen.iter().any(|s| {
            field(s, "plugin") == "listener"
                && field(s, "action") == "demo.traced"
                && !field(s, "outcome").is_empty()
        })
    };
    while !delivered(&spans.all()) {
        assert!(
            Instant::now() < deadline,
            "never delivered: {:#?}",
            spans.all()
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    let seen = spans.all();
    let relay = call_of(&seen, "relay-b", "bounce");
    assert_eq!(seen[relay].parent, Some(own(&seen, "asked")), "{seen:#?}");
    assert_eq!(
        seen[call_of(&seen, "relay-c", "bounce")].parent,
        Some(relay),
        "{seen:#?}"
    );
    let tally = call_of(&seen, "tally", "count");
    assert_eq!(
        seen[tally].parent,
        Some(own(&seen, "streamed")),
        "{seen:#?}"
    );
    let event = call_of(&seen, "listener", "demo.traced");
    assert_eq!(
        seen[event].parent,
        Some(own(&seen, "published")),
        "{seen:#?}"
    );
    assert_eq!(field(&seen[event], "kind"), "event");
    assert_eq!(field(&seen[event], "outcome"), "ok");
}
