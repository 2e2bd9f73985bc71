//! Call spans, recorded by a subscriber of the test's own: a plugin calling another makes a
//! tree (the callee's `airlock.call` a child of the caller's, with plugin, action, caller and
//! outcome), also when the caller is an isolated plugin whose worker asks the host for the call
//! (the request's span between the two); a failing call's outcome is its failure's code; a call
//! by handle, a dispatch and a hook run each have a span; and `airlock run --trace` prints the
//! tree.

use airlock::{Host, Reply};
use airlock_tests::TempPluginDir;
use serde_json::json;

use crate::spans::{call_of, field, Seen, Spans};

/// The two parallel relays, each told its own id; `relay-b` with `extra` in its policy.
fn relays(extra: &str) -> (TempPluginDir, Host) {
    let dir = TempPluginDir::with(&["relay-b", "relay-c", "panicker"]);
    let mut policy = String::from("[plugins.panicker.config]\npanic_in = \"action\"\n");
    for id in ["relay-b", "relay-c"] {
        let more = if id == "relay-b" { extra } else { "" };
        policy.push_str(&format!(
            "[plugins.{id}]\ngrants = [\"plugins.call:relay-*\"]\n{more}\n\
             [plugins.{id}.config]\nid = \"{id}\"\n"
        ));
    }
    let (host, report) = dir.load(&policy);
    assert!(report.refused().next().is_none(), "{report:#?}");
    (dir, host)
}

/// Asserts the span at `i` is the call of `plugin.bounce` by `caller`, ended `outcome`, with a
/// duration.
fn assert_call(spans: &[Seen], i: usize, plugin: &str, caller: &str, outcome: &str) {
    let span = &spans[i];
    assert_eq!(field(span, "action"), "bounce", "{span:?}");
    assert_eq!(field(span, "kind"), "action", "{span:?}");
    assert_eq!(field(span, "caller"), caller, "{span:?}");
    assert_eq!(field(span, "outcome"), outcome, "{span:?}");
    assert!(
        field(span, "duration_ns").parse::<u64>().is_ok(),
        "a duration was recorded: {span:?}"
    );
    assert_eq!(field(span, "plugin"), plugin);
}

#[test]
fn a_plugin_calling_another_makes_a_tree_of_call_spans() {
    let (_dir, host) = relays("");
    let spans = Spans::default();
    let reply = tracing::subscriber::with_default(spans.subscriber(), || {
        host.call("relay-b", "bounce")
            .as_principal(&airlock::Principal::new("alice", &[]))
            .json(&json!({ "to": "relay-c", "times": 1 }))
    });
    assert_eq!(reply.expect("call"), Reply::Ok(json!(1)));
    let seen = spans.all();
    let (outer, inner) = (
        call_of(&seen, "relay-b", "bounce"),
        call_of(&seen, "relay-c", "bounce"),
    );
    assert_eq!(
        seen[outer].parent, None,
        "the outer call is a root: {seen:#?}"
    );
    assert_eq!(
        seen[inner].parent,
        Some(outer),
        "B's call nests in A's: {seen:#?}"
    );
    assert_call(&seen, outer, "relay-b", "host:alice", "ok");
    assert_call(&seen, inner, "relay-c", "plugin:relay-b", "ok");
}

#[test]
fn an_isolated_plugins_call_to_another_nests_under_its_call_through_its_request() {
    let (_dir, host) = relays("isolation = \"process\"");
    let spans = Spans::default();
    let reply = tracing::subscriber::with_default(spans.subscriber(), || {
        host.call("relay-b", "bounce")
            .json(&json!({ "to": "relay-c", "times": 1 }))
    });
    assert_eq!(reply.expect("call"), Reply::Ok(json!(1)));
    let seen = spans.all();
    let (outer, inner) = (
        call_of(&seen, "relay-b", "bounce"),
        call_of(&seen, "relay-c", "bounce"),
    );
    assert_call(&seen, outer, "relay-b", "host", "ok");
    assert_call(&seen, inner, "relay-c", "plugin:relay-b", "ok");
    // The worker asked the host for the call: that request is the callee's parent, and the
    // isolated call's child.
    let request = seen[inner].parent.expect("the inner call has a parent");
    assert_eq!(seen[request].name, "airlock.request", "{seen:#?}");
    assert_eq!(field(&seen[request], "service"), "plugins", "{seen:#?}");
    assert_eq!(field(&seen[request], "operation"), "call", "{seen:#?}");
    assert_eq!(seen[request].parent, Some(outer), "{seen:#?}");
}

#[test]
fn a_failing_call_records_its_failure_code_as_its_outcome() {
    let (_dir, host) = relays("");
    let spans = Spans::default();
    let (bad, panicked, own_error) = tracing::subscriber::with_default(spans.subscriber(), || {
        (
            // Not the input `bounce` takes: refused by the plugin's own decoding.
            host.call("relay-b", "bounce")
                .json(&json!({ "times": "x" })),
            host.call("panicker", "ping").json(&json!(null)),
            // The inner call is refused (no such plugin): the relay answers its own error.
            host.call("relay-b", "bounce")
                .json(&json!({ "to": "relay-none", "times": 1 })),
        )
    });
    assert_eq!(
        bad.expect_err("bad input").code,
        airlock::CallErrorCode::BadInput
    );
    assert_eq!(
        panicked.expect_err("panicked").code,
        airlock::CallErrorCode::Panicked
    );
    assert!(matches!(own_error, Ok(Reply::Error(_))), "{own_error:?}");
    let seen = spans.all();
    let outcomes: Vec<(&str, &str)> = seen
        .iter()
        .filter(|s| s.name == "airlock.call")
        .map(|s| (field(s, "plugin"), field(s, "outcome")))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("relay-b", "bad_input"),
            ("panicker", "panicked"),
            ("relay-b", "error")
        ],
        "{seen:#?}"
    );
}

#[test]
fn airlock_run_with_trace_prints_the_tree_of_a_nested_call_on_stderr() {
    let dir = TempPluginDir::with(&["relay-b", "relay-c"]);
    let policy = dir.path().join("policy.toml");
    let mut text = String::new();
    for id in ["relay-b", "relay-c"] {
        text.push_str(&format!(
            "[plugins.{id}]\ngrants = [\"plugins.call:relay-*\"]\n\
             [plugins.{id}.config]\nid = \"{id}\"\n"
        ));
    }
    std::fs::write(&policy, text).expect("policy");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_airlock-cli"));
    cmd.args(["run", "--trace", "--policy"])
        .arg(&policy)
        .arg(dir.path())
        .env_remove("AIRLOCK_LOG");
    let out = airlock_tests::run_with_input(
        cmd,
        "/call relay-b bounce {\"to\":\"relay-c\",\"times\":1}\n/quit\n",
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("ok 1"), "{stdout}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("trace: "))
        .collect();
    let outer = lines
        .iter()
        .position(|l| {
            l.starts_with("trace: airlock.call plugin=relay-b ") && l.contains(" action=bounce ")
        })
        .unwrap_or_else(|| panic!("no root call of relay-b in:\n{stderr}"));
    let inner = lines
        .get(outer + 1)
        .unwrap_or_else(|| panic!("nothing nested in:\n{stderr}"));
    assert!(
        inner.starts_with("trace:   airlock.call plugin=relay-c "),
        "{stderr}"
    );
    for (line, caller) in [
        (lines[outer], "caller=host"),
        (*inner, "caller=plugin:relay-b"),
    ] {
        for field in ["action=bounce", caller, "outcome=ok", "duration_ns="] {
            assert!(line.contains(field), "{field} missing in {line:?}");
        }
    }
}

#[test]
fn a_call_by_handle_a_dispatch_and_a_hook_run_each_run_in_a_call_span() {
    let dir = TempPluginDir::with(&["relay-c", "orchestrator", "orchestrator-peer"]);
    let (host, report) = dir.load(
        "[plugins.relay-c]\ngrants = [\"plugins.call:relay-*\"]\n\
         [plugins.relay-c.config]\nid = \"relay-c\"\n",
    );
    assert!(report.refused().next().is_none(), "{report:#?}");
    host.define_hook("t.chain", airlock::hooks::HookMode::Chain);
    let handle = host.action("relay-c", "bounce").expect("resolved");
    let spans = Spans::default();
    tracing::subscriber::with_default(spans.subscriber(), || {
        let by_handle = handle.call().json(&json!({ "to": "relay-c", "times": 0 }));
        assert_eq!(by_handle.expect("call"), Reply::Ok(json!(0)));
        let dispatched = host
            .dispatch("orchestra.caller")
            .json(&serde_json::Value::Null);
        assert!(dispatched.is_ok(), "{dispatched:?}");
        host.hooks()
            .chain("t.chain", "x".to_owned())
            .expect("dispatched");
    });
    let seen = spans.all();
    assert_call(
        &seen,
        call_of(&seen, "relay-c", "bounce"),
        "relay-c",
        "host",
        "ok",
    );
    let caller = &seen[call_of(&seen, "orchestrator-peer", "caller")];
    assert_eq!(
        (field(caller, "kind"), field(caller, "outcome")),
        ("action", "ok"),
        "{caller:?}"
    );
    for plugin in ["orchestrator", "orchestrator-peer"] {
        let hook = &seen[call_of(&seen, plugin, "t.chain")];
        assert_eq!(
            (field(hook, "kind"), field(hook, "outcome")),
            ("hook", "ok"),
            "{hook:?}"
        );
    }
}
