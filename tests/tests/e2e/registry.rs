//! Plugins reaching the host as a whole, through real libraries: the plugin list
//! (`plugins.list`), a dispatch to the holder of a claimed kind (`dispatch:<kind>`), a hook run
//! (`hooks.run:<name>`) and a request that the program shut down (`host.control`). Each is
//! allowed only when declared and granted, and a miss is audited once; a dispatch or hook run
//! is the asking plugin's call (its callee sees it as the caller, the depth bound holds, the
//! holder's retries apply).

use std::sync::mpsc;
use std::time::Duration;

use airlock::hooks::HookMode;
use airlock::services::{AuditOutcome, AuditRecord};
use airlock::{Host, Reply};
use airlock_tests::TempPluginDir;
use serde_json::{json, Value};

/// Every capability the orchestrator declares.
const ORCHESTRATOR_GRANTS: &str =
    "[plugins.orchestrator]\ngrants = [\"plugins.list\", \"dispatch:*\", \"hooks.run:t.*\", \"host.control\"]\n";

/// Generous: the machine is shared.
const PATIENCE: Duration = Duration::from_secs(60);

fn load(names: &[&str], policy: &str) -> (TempPluginDir, Host) {
    let dir = TempPluginDir::with(names);
    let (host, report) = dir.load(policy);
    assert!(report.all_ok(), "{report:#?}");
    (dir, host)
}

fn call(host: &Host, plugin: &str, action: &str, input: &Value) -> Reply {
    host.call(plugin, action).json(input).expect("the call ran")
}

/// The answer of a call that must succeed.
fn ok(reply: Reply) -> Value {
    match reply {
        Reply::Ok(value) => value,
        other => panic!("expected ok, got {other:?}"),
    }
}

/// The domain error of a call that must fail (the fixture answers a host failure as
/// `"<code>: <message>"`).
fn error(reply: Reply) -> String {
    match reply {
        Reply::Error(message) => message,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// What the orchestrator's `action` answered to `input`: an error whose code is `code`.
fn refused(host: &Host, action: &str, input: &Value, code: &str) -> String {
    let message = error(call(host, "orchestrator", action, input));
    assert!(
        message.starts_with(code),
        "orchestrator.{action}: {message}"
    );
    message
}

fn denials(host: &Host, capability: &str) -> Vec<AuditRecord> {
    host.audit()
        .tail(512)
        .into_iter()
        .filter(|r| r.outcome == AuditOutcome::Denied && r.capability == capability)
        .collect()
}

#[test]
fn a_plugin_lists_every_peer_with_its_actions_claims_hooks_and_state() {
    let (_dir, host) = load(
        &["orchestrator", "orchestrator-peer", "claimer"],
        ORCHESTRATOR_GRANTS,
    );
    host.disable("claimer").expect("disabled");
    let peers = ok(call(&host, "orchestrator", "list", &Value::Null));
    let peers: Vec<airlock_abi::wire::PeerInfo> =
        serde_json::from_value(peers).expect("a list of peers");
    let find = |id: &str| {
        peers
            .iter()
            .find(|p| p.id == id)
            .unwrap_or_else(|| panic!("{id} listed in {peers:#?}"))
    };
    assert_eq!(peers.len(), 3, "{peers:#?}");

    let me = find("orchestrator");
    assert_eq!((me.state.as_str(), me.generation), ("running", 1));
    let list = me.actions.iter().find(|a| a.name == "list").expect("list");
    assert_eq!(list.title.as_deref(), Some("List the peers"));
    assert!(list.read_only && !list.destructive);
    let dispatch = me
        .actions
        .iter()
        .find(|a| a.name == "dispatch")
        .expect("dispatch");
    assert_eq!(
        dispatch.input_schema,
        Some(json!({"type": "object", "required": ["kind"]}))
    );
    assert!(me
        .actions
        .iter()
        .any(|a| a.name == "shutdown" && a.destructive));
    assert!(me
        .hooks
        .iter()
        .any(|h| h.name == "t.chain" && h.description == "appends O"));

    let peer = find("orchestrator-peer");
    assert_eq!(peer.version, "0.2.0");
    assert!(peer
        .claims
        .iter()
        .any(|c| c.kind == "orchestra.caller" && c.action == "caller"));

    // The operator disabled it: it is listed, with its state.
    let claimer = find("claimer");
    assert_eq!(claimer.state, "disabled");
    assert_eq!(claimer.claims[0].kind, "notify.email");
}

#[test]
fn each_request_without_its_grant_is_a_capability_violation_audited_once() {
    // Declared and not granted (orchestrator); granted and not declared (orchestrator-peer).
    let policy = "[plugins.orchestrator-peer]\n\
                  grants = [\"plugins.list\", \"hooks.run:*\", \"host.control\"]\n";
    let (tx, rx) = mpsc::channel();
    let dir = TempPluginDir::with(&["orchestrator", "orchestrator-peer"]);
    let (host, report) = dir.load_with(policy, |b| {
        b.on_shutdown_request(move |request| {
            let _ = tx.send(request);
        })
    });
    assert!(report.all_ok(), "{report:#?}");
    host.define_hook("t.chain", HookMode::Chain);
    let requests = [
        ("list", Value::Null, "plugins.list"),
        (
            "dispatch",
            json!({"kind": "orchestra.caller"}),
            "dispatch:orchestra.caller",
        ),
        (
            "run_hook",
            json!({"hook": "t.chain", "input": "x"}),
            "hooks.run:t.chain",
        ),
        ("shutdown", json!({"reason": "no"}), "host.control"),
    ];
    for plugin in ["orchestrator", "orchestrator-peer"] {
        for (action, input, capability) in &requests {
            if plugin == "orchestrator-peer" && action.starts_with("dispatch") {
                continue; // the peer declares dispatch:* and holds the kind itself
            }
            let before = denials(&host, capability).len();
            let message = error(call(&host, plugin, action, input));
            assert!(
                message.starts_with("capability_violation"),
                "{plugin}.{action}: {message}"
            );
            let after = denials(&host, capability);
            assert_eq!(
                after.len(),
                before + 1,
                "{plugin}.{action}: one audit record"
            );
            let record = after.last().expect("record");
            assert_eq!(record.plugin, plugin);
        }
    }
    assert!(
        rx.try_recv().is_err(),
        "no shutdown request reached the program"
    );
    assert_eq!(host.shutdown_requested(), None);
}

#[test]
fn a_dispatch_reaches_the_holder_with_the_asking_plugin_as_its_caller() {
    let (_dir, host) = load(&["orchestrator", "orchestrator-peer"], ORCHESTRATOR_GRANTS);
    let done = ok(call(
        &host,
        "orchestrator",
        "dispatch",
        &json!({"kind": "orchestra.caller"}),
    ));
    assert_eq!(done["holder"], "orchestrator-peer");
    assert_eq!(done["action"], "caller");
    assert_eq!(done["attempts"], 1);
    assert_eq!(
        done["reply"]["ok"],
        json!({"plugin": {"id": "orchestrator", "generation": 1}})
    );

    refused(
        &host,
        "dispatch",
        &json!({"kind": "nobody.holds"}),
        "not_found",
    );

    // It holds orchestra.a itself: refused like calling itself.
    let message = refused(
        &host,
        "dispatch",
        &json!({"kind": "orchestra.a"}),
        "bad_request",
    );
    assert!(message.contains("itself"), "{message}");
}

#[test]
fn a_dispatch_scope_is_the_claimed_kind() {
    let policy = "[plugins.orchestrator]\ngrants = [\"dispatch:orchestra.*\"]\n";
    let (_dir, host) = load(&["orchestrator", "orchestrator-peer", "claimer"], policy);
    let done = ok(call(
        &host,
        "orchestrator",
        "dispatch",
        &json!({"kind": "orchestra.caller"}),
    ));
    assert_eq!(done["holder"], "orchestrator-peer");
    refused(
        &host,
        "dispatch",
        &json!({"kind": "notify.email"}),
        "capability_violation",
    );
    assert_eq!(denials(&host, "dispatch:notify.email").len(), 1);
    assert_eq!(
        ok(call(&host, "claimer", "attempts", &Value::Null)),
        0,
        "the holder was never called"
    );
}

#[test]
fn a_dispatch_from_a_plugin_retries_as_the_holders_policy_says() {
    let policy = format!(
        "{ORCHESTRATOR_GRANTS}[plugins.claimer]\ndispatch_retries = 3\ndispatch_backoff_ms = 1\n\
         dispatch_backoff_max_ms = 2\n[plugins.claimer.config]\nfail_first = 2\n"
    );
    let (_dir, host) = load(&["orchestrator", "claimer"], &policy);
    let done = ok(call(
        &host,
        "orchestrator",
        "dispatch",
        &json!({"kind": "notify.email", "input": {"to": "ada@example.org"}}),
    ));
    assert_eq!(done["holder"], "claimer");
    assert_eq!(done["attempts"], 3, "{done}");
    assert_eq!(done["reply"]["ok"]["attempt"], 3, "{done}");
    assert_eq!(ok(call(&host, "claimer", "attempts", &Value::Null)), 3);

    // Fewer retries than failures: the last retryable answer is the reply.
    let policy = format!(
        "{ORCHESTRATOR_GRANTS}[plugins.claimer]\ndispatch_retries = 1\ndispatch_backoff_ms = 1\n\
         [plugins.claimer.config]\nfail_first = 5\n"
    );
    let (_dir, host) = load(&["orchestrator", "claimer"], &policy);
    let done = ok(call(
        &host,
        "orchestrator",
        "dispatch",
        &json!({"kind": "notify.email"}),
    ));
    assert_eq!(done["attempts"], 2, "{done}");
    assert_eq!(done["reply"]["error"], "smtp busy (attempt 2)", "{done}");
}

#[test]
fn a_dispatch_cycle_between_two_plugins_is_refused_too_deep() {
    let policy =
        format!("{ORCHESTRATOR_GRANTS}[plugins.orchestrator-peer]\ngrants = [\"dispatch:*\"]\n");
    let (_dir, host) = load(&["orchestrator", "orchestrator-peer"], &policy);
    // orchestrator -> orchestra.b (peer) -> orchestra.a (orchestrator) -> ... until the bound.
    let message = error(call(
        &host,
        "orchestrator",
        "bounce",
        &json!({"to": "orchestra.b", "back": "orchestra.a"}),
    ));
    assert!(message.contains("too_deep"), "{message}");
    assert!(
        message.contains(&format!("more than {} deep", airlock::call::MAX_CALL_DEPTH)),
        "{message}"
    );
    // Both still serve.
    assert_eq!(host.plugin("orchestrator").expect("loaded").stats.faults, 0);
    ok(call(&host, "orchestrator-peer", "caller", &Value::Null));
}

/// hook-a and hook-b with tags, the orchestrator (and its peer, if `peer`), every `t.*` hook
/// defined in its mode.
fn hook_host(behave_b: &str, peer: bool) -> (TempPluginDir, Host) {
    let mut names = vec!["hook-a", "hook-b", "orchestrator"];
    if peer {
        names.push("orchestrator-peer");
    }
    let policy = format!(
        "{ORCHESTRATOR_GRANTS}[plugins.hook-a.config]\ntag = \"a\"\n\
         [plugins.hook-b.config]\ntag = \"b\"\nbehave = {{ {behave_b} }}\n"
    );
    let (dir, host) = load(&names, &policy);
    for (hook, mode) in [
        ("t.chain", HookMode::Chain),
        ("t.intercept", HookMode::Intercept),
        ("t.guard", HookMode::Guard),
        ("t.filter", HookMode::Filter),
        ("t.collect", HookMode::Collect),
        ("u.chain", HookMode::Chain),
    ] {
        host.define_hook(hook, mode);
    }
    (dir, host)
}

fn run_hook(host: &Host, hook: &str, input: Value) -> Reply {
    call(
        host,
        "orchestrator",
        "run_hook",
        &json!({"hook": hook, "input": input}),
    )
}

#[test]
fn a_plugin_runs_a_hook_in_its_mode_and_its_own_handler_is_skipped() {
    let (_dir, host) = hook_host("", false);
    // The orchestrator implements t.chain (appending O) but does not run itself.
    let out = ok(run_hook(&host, "t.chain", json!("x")));
    assert_eq!(
        out,
        json!({"mode": "chain", "value": "xab", "failures": []})
    );
    // The host program's own run includes it.
    let mine = host.hooks().chain("t.chain", "x".to_owned()).expect("ran");
    assert_eq!(mine.value, "xabO");

    let out = ok(run_hook(&host, "t.guard", json!("x")));
    assert_eq!(out["mode"], "guard");
    assert_eq!(out["blocked"], Value::Null, "{out}");

    let message = error(run_hook(&host, "t.nothing", json!("x")));
    assert!(message.starts_with("not_found"), "{message}");
    let message = error(run_hook(&host, "t.filter", json!("not a list")));
    assert!(message.starts_with("bad_request"), "{message}");

    // The grant covers t.*, not u.*.
    let message = error(run_hook(&host, "u.chain", json!("x")));
    assert!(message.starts_with("capability_violation"), "{message}");
    assert_eq!(denials(&host, "hooks.run:u.chain").len(), 1);
}

#[test]
fn every_hook_mode_answers_its_typed_outcome() {
    let (_dir, host) = hook_host(
        "\"t.guard\" = \"block\", \"t.filter\" = \"drop:y\", \"t.intercept\" = \"swallow\", \"t.collect\" = \"tag\"",
        true,
    );
    let out = ok(run_hook(&host, "t.guard", json!("x")));
    assert_eq!(
        out["blocked"],
        json!({"plugin": "hook-b", "reason": "b blocks"})
    );
    let out = ok(run_hook(&host, "t.filter", json!(["x", "y", "z"])));
    assert_eq!(
        out,
        json!({"mode": "filter", "items": ["x", "z"], "failures": []})
    );
    let out = ok(run_hook(&host, "t.intercept", json!("x")));
    assert_eq!(
        out["swallowed"],
        json!({"plugin": "hook-b", "reply": "b swallowed it"})
    );
    assert_eq!(out["value"], "xa");

    // The peer's handler answers who asked: the orchestrator, not the host program.
    let out = ok(run_hook(&host, "t.collect", json!("x")));
    assert_eq!(out["mode"], "collect");
    let results = out["results"].as_array().expect("results");
    assert!(results.contains(&json!(["hook-b", "b"])), "{out}");
    assert!(
        results.contains(&json!([
            "orchestrator-peer",
            {"plugin": {"id": "orchestrator", "generation": 1}}
        ])),
        "{out}"
    );
    assert!(
        !results.iter().any(|r| r[0] == "orchestrator"),
        "the asking plugin is skipped: {out}"
    );
}

#[test]
fn a_granted_shutdown_request_reaches_the_program_and_the_plugin_keeps_running() {
    let (tx, rx) = mpsc::channel();
    let dir = TempPluginDir::with(&["orchestrator"]);
    let (host, report) = dir.load_with(ORCHESTRATOR_GRANTS, |b| {
        b.on_shutdown_request(move |request| {
            let _ = tx.send(request);
        })
    });
    assert!(report.all_ok(), "{report:#?}");
    assert_eq!(host.shutdown_requested(), None);

    let answer = ok(call(
        &host,
        "orchestrator",
        "shutdown",
        &json!({"reason": "maintenance window"}),
    ));
    assert_eq!(answer, Value::Null);
    let request = rx.recv_timeout(PATIENCE).expect("the handler saw it");
    assert_eq!(request.plugin, "orchestrator");
    assert_eq!(request.generation, 1);
    assert_eq!(request.reason, "maintenance window");
    assert_eq!(host.shutdown_requested(), Some(request.clone()));
    assert_eq!(host.wait_shutdown_request(PATIENCE), Some(request));

    let record = host
        .audit()
        .tail(512)
        .into_iter()
        .find(|r| r.outcome == AuditOutcome::ShutdownRequested)
        .expect("audited");
    assert_eq!(
        (
            record.plugin.as_str(),
            record.capability.as_str(),
            record.detail.as_str()
        ),
        ("orchestrator", "host.control", "maintenance window")
    );

    // A request, not an exit: the plugin still serves until the program acts.
    let info = host.plugin("orchestrator").expect("loaded");
    assert_eq!(info.state, airlock::plugins::PluginState::Running);
    assert_eq!(
        ok(call(&host, "orchestrator", "caller", &Value::Null)),
        json!({"host": {"principal": null}})
    );

    refused(
        &host,
        "shutdown",
        &json!({"reason": "line\nbreak"}),
        "bad_request",
    );
    // Nor a mark that reorders what the operator reads ("all done" shown backwards).
    refused(
        &host,
        "shutdown",
        &json!({"reason": "\u{202e}enod lla"}),
        "bad_request",
    );
    assert!(rx.try_recv().is_err(), "a refused request is not handed on");
}
