//! Calling actions: config from the policy, the result envelope, the error codes, and parallel
//! calls from several threads.

use airlock::{Answered, CallErrorCode, Reply};
use airlock_tests::TempPluginDir;
use serde_json::json;

#[test]
fn hello_greets_with_the_greeting_from_its_config() {
    let dir = TempPluginDir::with(&["hello"]);
    let (host, _) = dir.load("[plugins.hello.config]\ngreeting = \"Hi\"\n");
    let answer = host
        .call("hello", "greet")
        .json(&json!({"name": "Ada"}))
        .expect("call");
    assert_eq!(answer, Reply::Ok("Hi, Ada!".into()));
    let config = host
        .call("hello", "config")
        .json(&json!(null))
        .expect("call");
    assert_eq!(config, Reply::Ok(json!({"greeting": "Hi"})));
}

#[test]
fn a_bad_config_refuses_the_plugin_at_init() {
    let dir = TempPluginDir::with(&["hello"]);
    let (host, report) = dir.load("[plugins.hello.config]\ngreting = \"typo\"\n");
    let entry = report.refused().next().expect("refused");
    assert_eq!(entry.reason.map(|r| r.code()), Some("config_invalid"));
    assert!(entry.detail.contains("greting"), "{}", entry.detail);
    assert!(host.plugins().is_empty());
}

#[test]
fn domain_errors_are_envelopes_and_infrastructure_errors_have_codes() {
    let dir = TempPluginDir::with(&["hello"]);
    let (host, _) = dir.load("");
    assert_eq!(
        host.call("hello", "fail").json(&json!(null)).expect("call"),
        Reply::Error("hello refuses, as asked".to_owned())
    );
    let code = |plugin: &str, action: &str, input: serde_json::Value| {
        host.call(plugin, action)
            .json(&input)
            .expect_err("fails")
            .code
    };
    assert_eq!(
        code("nobody", "greet", json!(null)),
        CallErrorCode::NotFound
    );
    assert_eq!(
        code("hello", "nothing", json!(null)),
        CallErrorCode::NotFound
    );
    assert_eq!(
        code("hello", "greet", json!({"name": 5})),
        CallErrorCode::BadInput
    );
    let raw = host
        .call("hello", "greet")
        .bytes(b"{not json")
        .expect_err("fails");
    assert_eq!(raw.code, CallErrorCode::BadInput);
}

#[test]
fn a_parallel_plugin_serves_two_threads_without_losing_updates() {
    let dir = TempPluginDir::with(&["counter"]);
    let (host, _) = dir.load("");
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..500 {
                    host.call("counter", "increment")
                        .json(&json!({"by": 2}))
                        .expect("call");
                }
            });
        }
    });
    assert_eq!(
        host.call("counter", "get")
            .json(&json!(null))
            .expect("call"),
        Reply::Ok(2000.into())
    );
    assert_eq!(
        host.health("counter").expect("health"),
        airlock_abi::Health::Ok
    );
}

#[test]
fn bytes_actions_answer_into_the_callers_buffer_through_the_call_table() {
    let dir = TempPluginDir::with(&["probe"]);
    let (host, _) = dir.load("");
    let echo = host.action("probe", "echo_into").expect("resolved");
    assert_eq!(
        echo.call().bytes(b"abc").expect("call"),
        Reply::Ok(b"echo:abc".to_vec())
    );
    assert_eq!(
        host.call("probe", "echo_vec").bytes(b"abc").expect("call"),
        Reply::Ok(b"vec:abc".to_vec())
    );

    // `call_into` leaves the answer in the caller's buffer, replacing what was there.
    let mut out = b"stale".to_vec();
    assert_eq!(
        echo.call_into(b"xyz", &mut out).expect("call"),
        Answered::Ok
    );
    assert_eq!(out, b"echo:xyz");
    // An answer larger than the buffer grows it (the plugin appends through the host's
    // allocator): every byte arrives.
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(echo.call_into(&big, &mut out).expect("call"), Answered::Ok);
    assert_eq!(&out[..5], b"echo:");
    assert!(
        out[5..] == big[..],
        "the large answer was changed on the way"
    );

    // A domain error is the envelope's error, with the plugin's message, through both forms.
    assert_eq!(
        echo.call_into(b"fail", &mut out).expect("call"),
        Answered::Error
    );
    assert_eq!(out, b"asked to fail");
    assert_eq!(
        echo.call().bytes(b"fail").expect("call"),
        Reply::Error("asked to fail".to_owned())
    );
    // And the buffer is usable again after it.
    assert_eq!(
        echo.call_into(b"again", &mut out).expect("call"),
        Answered::Ok
    );
    assert_eq!(out, b"echo:again");

    // An infrastructure failure is the error, with its code and the host's message.
    host.disable("probe").expect("disabled");
    let err = echo.call_into(b"x", &mut out).expect_err("disabled");
    assert_eq!(err.code, CallErrorCode::Revoked, "{err}");
    assert!(err.message.contains("disabled"), "{err}");
}

/// Calls by name are resolved from a per-thread cache of names; a reload that renames an action
/// is seen by the very next call on every thread that had resolved the old names.
#[test]
fn a_reload_that_renames_an_action_is_seen_by_the_next_call_on_every_thread() {
    let dir = TempPluginDir::new();
    let library = dir.add("tally");
    let (host, report) = dir.load("");
    assert!(report.all_ok(), "{report:?}");
    let text = json!({"text": "a b a"});
    let counted = |host: &airlock::Host| host.call("tally", "count").json(&text);
    // The old build counts into an object; the next one answers a number.
    assert!(matches!(counted(&host).expect("call"), Reply::Ok(ref v) if v.is_object()));
    let barrier = std::sync::Barrier::new(3);
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    // Resolved and kept by this thread, many times over.
                    assert_ne!(
                        host.call("tally", "totals")
                            .json(&json!(null))
                            .err()
                            .map(|e| e.code),
                        Some(CallErrorCode::NotFound)
                    );
                    for _ in 0..200 {
                        assert!(counted(&host).is_ok());
                    }
                    barrier.wait();
                    barrier.wait();
                    let totals = host.call("tally", "totals").json(&json!(null));
                    assert_eq!(
                        totals.expect_err("renamed away").code,
                        CallErrorCode::NotFound
                    );
                    assert!(
                        matches!(counted(&host).expect("call"), Reply::Ok(ref v) if v.is_number())
                    );
                    assert_eq!(
                        host.call("tally", "summary").json(&text).expect("call"),
                        Reply::Ok(json!("a b a"))
                    );
                })
            })
            .collect();
        barrier.wait();
        // Replaced the way an installer does: a new file renamed over the old one.
        let next = dir.path().join("next.tmp");
        std::fs::write(&next, airlock_tests::fixture_bytes("tally-next")).expect("write");
        std::fs::rename(&next, &library).expect("replace");
        let outcome = host.reload("tally").expect("reloaded");
        assert!(
            matches!(outcome, airlock::plugins::ReloadOutcome::Loaded { .. }),
            "{outcome:?}"
        );
        barrier.wait();
        for t in threads {
            t.join().expect("thread");
        }
    });
    // And on this thread, which had resolved the old names too.
    assert_eq!(
        host.call("tally", "totals")
            .json(&json!(null))
            .expect_err("renamed away")
            .code,
        CallErrorCode::NotFound
    );
}
