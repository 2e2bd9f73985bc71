//! Deferred answers with real libraries: `deferring`'s `ask` answers pending, and the caller
//! gets the envelope's pending state with an id; the plugin (`settle`, through
//! `ctx.resolve`) or the host program (`Host::resolve`) settles it, once; the caller polls it
//! or waits for it, and the host tells its topics. Entries and approvals survive a host built
//! again on the same state file; another plugin cannot reach an entry, by its key or its id;
//! an entry expires by the policy's bound; a hook cannot answer pending; the bounds hold; an
//! isolated plugin answers and resolves through its worker; an MCP client (`rmcp`) sees the
//! pending state as a result, not an error; the console lists and resolves entries.

use std::time::Duration;

use airlock::approvals::{Approval, PendingError, PendingId, PendingState};
use airlock::call::CallerInfo;
use airlock::hooks::HookMode;
use airlock::services::AuditOutcome;
use airlock::{CallErrorCode, Host, Principal, Reply};
use airlock_tests::TempPluginDir;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

fn ask(host: &Host, key: &str, description: &str) -> (PendingId, String) {
    let ada = Principal::new("ada", &["ops"]);
    let input = json!({"key": key, "description": description});
    match host
        .call("deferring", "ask")
        .as_principal(&ada)
        .json(&input)
    {
        Ok(Reply::Pending { id, description }) => (id, description),
        other => panic!("expected a pending answer, got {other:?}"),
    }
}

fn call(host: &Host, plugin: &str, action: &str, input: &Value) -> Value {
    match host.call(plugin, action).json(input) {
        Ok(Reply::Ok(value)) => value,
        other => panic!("{plugin}.{action}: {other:?}"),
    }
}

fn ada() -> CallerInfo {
    CallerInfo::Host {
        principal: Some(Principal::new("ada", &["ops"])),
    }
}

fn records(host: &Host, outcome: AuditOutcome) -> Vec<airlock::services::AuditRecord> {
    host.audit()
        .tail(usize::MAX)
        .into_iter()
        .filter(|r| r.outcome == outcome)
        .collect()
}

fn told(host: &Host, topic: &str) -> u64 {
    let catalog = host.event_catalog();
    catalog
        .seen
        .iter()
        .find(|t| t.topic == topic)
        .map_or(0, |t| t.count)
}

fn load(names: &[&str], policy: &str) -> (TempPluginDir, Host) {
    let dir = TempPluginDir::with(names);
    let (host, report) = dir.load(policy);
    assert!(report.all_ok(), "{report:#?}");
    (dir, host)
}

#[test]
fn a_pending_answer_resolved_by_the_plugin_reaches_the_callers_wait_and_poll() {
    let (_dir, host) = load(&["deferring"], "");
    let (id, description) = ask(&host, "order-7", "waits for a person to sign");
    assert_eq!(description, "waits for a person to sign");
    assert!(PendingId::parse(id.as_str()).is_some(), "{id}");
    assert_eq!(
        serde_json::to_value(Reply::<Value>::Pending {
            id: id.clone(),
            description: description.clone()
        })
        .expect("json"),
        json!({"status": "pending", "data": {"id": id.as_str(), "description": description}})
    );
    let entry = host.pending(&id).expect("kept");
    assert_eq!(entry.state, PendingState::Open);
    assert_eq!(
        (
            entry.plugin.as_str(),
            entry.action.as_str(),
            entry.key.as_str()
        ),
        ("deferring", "ask", "order-7")
    );
    assert_eq!(entry.caller, ada());
    assert!(!host.pending_is_durable(), "no data_dir: kept in memory");

    std::thread::scope(|scope| {
        let waiter = scope.spawn(|| host.wait_pending(&id, WAIT));
        let settled = call(
            &host,
            "deferring",
            "settle",
            &json!({"key": "order-7", "value": {"signed": true}}),
        );
        assert_eq!(settled, json!({"resolved": true}));
        let seen = waiter.join().expect("waiter").expect("kept");
        assert_eq!(
            seen.state,
            PendingState::Resolved(airlock::approvals::Envelope::Ok(json!({"signed": true})))
        );
    });
    // Resolving twice is refused, by the plugin and by the host program.
    let again = call(
        &host,
        "deferring",
        "settle",
        &json!({"key": "order-7", "value": 2}),
    );
    assert_eq!(again["refused"], "pending", "{again}");
    assert!(
        again["message"]
            .as_str()
            .unwrap_or_default()
            .contains("resolved already"),
        "{again}"
    );
    assert_eq!(
        host.resolve(&id, Ok(json!(3))),
        Err(PendingError::Resolved(id.clone()))
    );
    assert!(matches!(
        host.pending(&id).map(|e| e.state),
        Some(PendingState::Resolved(_))
    ));

    let created = records(&host, AuditOutcome::PendingCreated);
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0].caller, Some(ada()));
    assert!(created[0].detail.contains(id.as_str()), "{:?}", created[0]);
    let resolved = records(&host, AuditOutcome::PendingResolved);
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    assert!(
        resolved[0].detail.contains("resolved by plugin deferring"),
        "{resolved:?}"
    );
    assert_eq!(told(&host, airlock::approvals::PENDING_RESOLVED), 1);
}

#[test]
fn the_host_program_resolves_a_pending_answer_and_the_plugin_then_cannot() {
    let (_dir, host) = load(&["deferring"], "");
    let (id, _) = ask(&host, "k", "waits for the bank");
    let entry = host
        .resolve(&id, Err("declined".to_owned()))
        .expect("resolved");
    assert_eq!(
        entry.state,
        PendingState::Resolved(airlock::approvals::Envelope::Error("declined".to_owned()))
    );
    assert_eq!(
        host.wait_pending(&id, WAIT).map(|e| e.state),
        Some(entry.state)
    );
    let late = call(
        &host,
        "deferring",
        "settle",
        &json!({"key": "k", "value": 1}),
    );
    assert_eq!(late["refused"], "pending", "{late}");
    let unknown = PendingId::parse(&"0".repeat(32)).expect("an id");
    assert!(matches!(
        host.resolve(&unknown, Ok(Value::Null)),
        Err(PendingError::NotFound(_))
    ));
    assert_eq!(host.pending(&unknown), None);
    let resolved = records(&host, AuditOutcome::PendingResolved);
    assert!(
        resolved[0].detail.contains("resolved by the host program"),
        "{resolved:?}"
    );
}

#[test]
fn a_pending_answer_survives_a_restart_and_is_resolved_after_it() {
    let state = tempfile::tempdir().expect("tempdir");
    let policy = format!("[host]\ndata_dir = {:?}\n", state.path());
    let dir = TempPluginDir::with(&["deferring"]);
    let (by_plugin, by_host) = {
        let (host, report) = dir.load(&policy);
        assert!(report.all_ok(), "{report:#?}");
        assert!(host.pending_is_durable());
        let first = ask(&host, "sign", "waits for a signature").0;
        let second = ask(&host, "pay", "waits for a payment").0;
        host.shutdown();
        (first, second)
    };
    let (host, report) = dir.load(&policy);
    assert!(report.all_ok(), "{report:#?}");
    let listed = host.pending_answers();
    let shown: Vec<_> = listed
        .iter()
        .map(|e| {
            (
                e.id.clone(),
                e.description.as_str(),
                e.caller.clone(),
                e.state.clone(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            (
                by_plugin.clone(),
                "waits for a signature",
                ada(),
                PendingState::Open
            ),
            (
                by_host.clone(),
                "waits for a payment",
                ada(),
                PendingState::Open
            ),
        ]
    );
    let settled = call(
        &host,
        "deferring",
        "settle",
        &json!({"key": "sign", "value": "signed"}),
    );
    assert_eq!(settled, json!({"resolved": true}));
    host.resolve(&by_host, Ok(json!({"paid": 12})))
        .expect("resolved");
    let ok = |v: Value| Some(PendingState::Resolved(airlock::approvals::Envelope::Ok(v)));
    assert_eq!(
        host.wait_pending(&by_plugin, WAIT).map(|e| e.state),
        ok(json!("signed"))
    );
    assert_eq!(
        host.pending(&by_host).map(|e| e.state),
        ok(json!({"paid": 12}))
    );
}

#[test]
fn an_approval_asked_before_a_restart_is_approved_after_it_for_its_caller() {
    let state = tempfile::tempdir().expect("tempdir");
    let policy = format!(
        "[host]\ndata_dir = {:?}\n[[plugins.probe-bare.permissions]]\nactions = [\"whoami\"]\n\
         decision = \"ask\"\n",
        state.path()
    );
    let dir = TempPluginDir::with(&["probe-bare"]);
    let bob = Principal::new("bob", &["ops"]);
    let asked = {
        let (host, report) = dir.load_with(&policy, |b| b.approver(|_| Approval::Later));
        assert!(report.all_ok(), "{report:#?}");
        let asked = host
            .call("probe-bare", "whoami")
            .as_principal(&bob)
            .json(&Value::Null);
        let Ok(Reply::PendingApproval(id)) = asked else {
            panic!("expected pending_approval, got {asked:?}");
        };
        host.shutdown();
        id
    };
    let (host, report) = dir.load_with(&policy, |b| b.approver(|_| Approval::Later));
    assert!(report.all_ok(), "{report:#?}");
    let waiting = host.pending_approvals();
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert_eq!((waiting[0].id, waiting[0].name.as_str()), (asked, "whoami"));
    // A new question gets a new id, never one given before the restart.
    let next = host.call("probe-bare", "whoami").json(&Value::Null);
    assert!(
        matches!(next, Ok(Reply::PendingApproval(id)) if id > asked),
        "{next:?}"
    );
    assert_eq!(
        host.approve(asked).expect("runs"),
        Reply::Ok(json!({"host": {"principal": {"id": "bob", "roles": ["ops"]}}}))
    );
    assert_eq!(
        host.approve(asked).expect_err("once").code,
        CallErrorCode::NotFound
    );
}

#[test]
fn a_plugin_cannot_resolve_another_plugins_pending_answer() {
    let (_dir, host) = load(&["deferring", "deferring-rival"], "");
    let (id, _) = ask(&host, "secret-key", "waits for its owner");
    for key in ["secret-key", id.as_str(), "deferring\0secret-key"] {
        let stolen = call(&host, "deferring-rival", "steal", &json!({"key": key}));
        assert_eq!(stolen["refused"], "not_found", "{key:?}: {stolen}");
    }
    assert_eq!(host.pending(&id).map(|e| e.state), Some(PendingState::Open));
    let settled = call(
        &host,
        "deferring",
        "settle",
        &json!({"key": "secret-key", "value": 1}),
    );
    assert_eq!(settled, json!({"resolved": true}));
}

#[test]
fn an_unresolved_pending_answer_expires_by_the_policys_bound() {
    let (_dir, host) = load(&["deferring"], "[host]\npending_ttl_secs = 1\n");
    let (id, _) = ask(&host, "slow", "nobody will answer");
    // Told when it happens, though nobody reads the store meanwhile (the event catalog does not).
    let deadline = std::time::Instant::now() + WAIT;
    while told(&host, airlock::approvals::PENDING_EXPIRED) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "expiry was never told"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let seen = host.wait_pending(&id, WAIT).expect("kept");
    assert_eq!(seen.state, PendingState::Expired);
    assert_eq!(
        host.resolve(&id, Ok(Value::Null)),
        Err(PendingError::Expired(id.clone()))
    );
    let late = call(
        &host,
        "deferring",
        "settle",
        &json!({"key": "slow", "value": 1}),
    );
    assert_eq!(late["refused"], "pending", "{late}");
    assert!(
        late["message"]
            .as_str()
            .unwrap_or_default()
            .contains("expired"),
        "{late}"
    );
    assert_eq!(records(&host, AuditOutcome::PendingExpired).len(), 1);
    assert_eq!(told(&host, airlock::approvals::PENDING_EXPIRED), 1);

    for (secs, why) in [("0", "0"), ("2592001", "2592001")] {
        let policy = format!("[host]\npending_ttl_secs = {secs}\n");
        let error = airlock::Policy::parse(&policy, airlock::policy::PolicyFormat::Toml)
            .expect_err("out of bounds");
        let error = error.to_string();
        assert!(
            error.contains("pending_ttl_secs") && error.contains(why),
            "{error}"
        );
    }
}

#[test]
fn a_hook_cannot_answer_pending_and_a_key_names_one_open_answer() {
    let (_dir, host) = load(&["deferring"], "");
    host.define_hook("check", HookMode::Chain);
    let out = host.hooks().chain("check", json!("x")).expect("dispatched");
    assert_eq!(out.failures.len(), 1, "{out:?}");
    assert_eq!(out.failures[0].code, CallErrorCode::HandlerError);
    assert!(
        out.failures[0].reason.contains("only an action may"),
        "{out:?}"
    );
    assert!(host.pending_answers().is_empty());

    ask(&host, "same", "first");
    let twice = host.call("deferring", "ask").json(&json!({"key": "same"}));
    let error = twice.expect_err("refused");
    assert_eq!(error.code, CallErrorCode::HandlerError);
    assert!(
        error.message.contains("already has an open pending answer"),
        "{error}"
    );
    let long = "k".repeat(airlock::approvals::MAX_PENDING_KEY + 1);
    let error = host
        .call("deferring", "ask")
        .json(&json!({"key": long}))
        .expect_err("refused");
    assert!(error.message.contains("key must be 1 to"), "{error}");

    // The bound per plugin: one more open answer than it allows is refused.
    for n in 1..airlock::approvals::MAX_PENDING_PER_PLUGIN {
        ask(&host, &format!("k{n}"), "");
    }
    let over = host
        .call("deferring", "ask")
        .json(&json!({"key": "one-too-many"}));
    let error = over.expect_err("over the bound");
    assert!(
        error.message.contains("open pending answers, the most"),
        "{error}"
    );
}

#[test]
fn a_plugin_calling_an_action_that_answers_pending_sees_the_code_pending() {
    let policy = "[plugins.probe]\ngrants = [\"plugins.call:deferring\"]\n";
    let (_dir, host) = load(&["deferring", "probe"], policy);
    let called = call(
        &host,
        "probe",
        "call_plugin",
        &json!({"plugin": "deferring", "action": "later"}),
    );
    assert_eq!(called, json!({"outcome": "allowed", "detail": "pending"}));
    let listed = host.pending_answers();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(
        matches!(&listed[0].caller, CallerInfo::Plugin { id, .. } if id == "probe"),
        "{listed:?}"
    );
    // Settled with the action's own error, which its caller's poll reads.
    let settled = call(
        &host,
        "deferring",
        "settle_error",
        &json!({"key": "later-0", "message": "no"}),
    );
    assert_eq!(settled, json!({"resolved": true}));
    assert_eq!(
        host.pending(&listed[0].id).map(|e| e.state),
        Some(PendingState::Resolved(airlock::approvals::Envelope::Error(
            "no".to_owned()
        )))
    );
}

#[test]
fn an_isolated_plugin_answers_pending_and_resolves_it_through_its_worker() {
    let policy = "[plugins.deferring]\nisolation = \"process\"\n";
    let (_dir, host) = load(&["deferring"], policy);
    let (id, description) = ask(&host, "far", "waits in a worker");
    assert_eq!(description, "waits in a worker");
    assert_eq!(host.pending(&id).map(|e| e.caller), Some(ada()));
    let settled = call(
        &host,
        "deferring",
        "settle",
        &json!({"key": "far", "value": [1, 2]}),
    );
    assert_eq!(settled, json!({"resolved": true}));
    assert_eq!(
        host.wait_pending(&id, WAIT).map(|e| e.state),
        Some(PendingState::Resolved(airlock::approvals::Envelope::Ok(
            json!([1, 2])
        )))
    );
}

#[test]
fn an_mcp_client_sees_a_pending_answer_as_such() {
    use rmcp::model::CallToolRequestParams;
    use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
    use rmcp::ServiceExt;

    let dir = TempPluginDir::with(&["deferring"]);
    let work = tempfile::tempdir().expect("tempdir");
    let policy = work.path().join("policy.toml");
    std::fs::write(&policy, "").expect("policy");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let command =
            tokio::process::Command::new(env!("CARGO_BIN_EXE_airlock-cli")).configure(|c| {
                c.arg("mcp").arg(dir.path()).arg("--policy").arg(&policy);
            });
        let (transport, _stderr) = TokioChildProcess::builder(command)
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("airlock mcp starts");
        let client = ().serve(transport).await.expect("initialized");
        let arguments = json!({"key": "m1", "description": "waits for a person"});
        let Value::Object(arguments) = arguments else {
            unreachable!("an object")
        };
        let answered = client
            .call_tool(CallToolRequestParams::new("deferring__ask").with_arguments(arguments))
            .await
            .expect("answered");
        assert_ne!(answered.is_error, Some(true), "not an error: {answered:?}");
        let content = answered.structured_content.expect("structured");
        assert_eq!(content["state"], "pending", "{content}");
        assert_eq!(content["description"], "waits for a person", "{content}");
        let id = content["id"].as_str().unwrap_or_default();
        assert!(PendingId::parse(id).is_some(), "{content}");
        client.cancel().await.expect("closed");
    });
}

#[test]
fn the_console_lists_pending_answers_and_resolves_one() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};

    let dir = TempPluginDir::with(&["deferring"]);
    let work = tempfile::tempdir().expect("tempdir");
    let policy = work.path().join("policy.toml");
    std::fs::write(&policy, "").expect("policy");
    let mut child = Command::new(env!("CARGO_BIN_EXE_airlock-cli"))
        .arg("run")
        .arg(dir.path())
        .arg("--policy")
        .arg(&policy)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the host starts");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = |send: Option<&str>| -> String {
        if let Some(send) = send {
            writeln!(stdin, "{send}").expect("write a command");
            stdin.flush().expect("flush");
        }
        let mut answer = String::new();
        stdout.read_line(&mut answer).expect("an answer");
        answer.trim_end().to_owned()
    };
    assert!(line(None).starts_with("airlock console"));
    let asked = line(Some(
        r#"/call deferring ask {"key": "c1", "description": "waits at the console"}"#,
    ));
    let id = asked
        .strip_prefix("pending ")
        .and_then(|rest| rest.split(':').next())
        .and_then(PendingId::parse)
        .unwrap_or_else(|| panic!("a pending answer: {asked}"));
    assert!(asked.ends_with(": waits at the console"), "{asked}");
    let listed = line(Some("/pending"));
    assert_eq!(
        listed,
        format!("{id} deferring.ask for the host program: waits at the console [open]")
    );
    assert!(line(None).contains("kept in memory"), "no data_dir");
    assert_eq!(
        line(Some(&format!("/pending resolve {id} {{\"ok\": 1}}"))),
        format!("{id} resolved (deferring.ask)")
    );
    let again = line(Some(&format!("/pending resolve {id} 2")));
    assert!(again.contains("resolved already"), "{again}");
    let listed = line(Some("/pending"));
    assert!(
        listed.ends_with(r#"[resolved {"status":"ok","data":{"ok":1}}]"#),
        "{listed}"
    );
    assert!(line(None).contains("kept in memory"));
    line(Some("/quit"));
    drop(stdin);
    child.wait().expect("the host exits");
}

/// `depth` arrays, one in another, around a number.
fn deep(depth: usize) -> Value {
    (0..depth).fold(json!(0), |inner, _| json!([inner]))
}

/// Another entry is made, listed, resolved by the plugin and read by its caller.
fn the_store_still_works(host: &Host, key: &str) {
    let (id, _) = ask(host, key, "after a deep answer");
    assert!(host.pending_answers().iter().any(|e| e.id == id), "{key}");
    let settled = call(
        host,
        "deferring",
        "settle",
        &json!({"key": key, "value": "fine"}),
    );
    assert_eq!(settled, json!({"resolved": true}), "{key}");
    assert_eq!(
        host.wait_pending(&id, WAIT).map(|e| e.state),
        Some(PendingState::Resolved(airlock::approvals::Envelope::Ok(
            json!("fine")
        )))
    );
}

#[test]
fn an_answer_nested_as_deeply_as_a_plugin_can_send_leaves_the_store_working_after_a_restart() {
    let state = tempfile::tempdir().expect("tempdir");
    let policy = format!("[host]\ndata_dir = {:?}\n", state.path());
    let dir = TempPluginDir::with(&["deferring"]);
    let deepest = {
        let (host, report) = dir.load(&policy);
        assert!(report.all_ok(), "{report:#?}");
        // The deepest value the plugin's input and its resolve request carry: kept, readable.
        let (deepest, _) = ask(&host, "deep125", "a deep answer");
        let settled = call(
            &host,
            "deferring",
            "settle",
            &json!({"key": "deep125", "value": deep(125)}),
        );
        assert_eq!(settled, json!({"resolved": true}));
        // Deeper ones fail on their way (the plugin's input or its request), or are kept.
        for depth in [126, 127] {
            let key = format!("deep{depth}");
            ask(&host, &key, "a deeper answer");
            let input = json!({"key": key, "value": deep(depth)});
            let _ = host.call("deferring", "settle").json(&input);
            the_store_still_works(&host, &format!("after{depth}"));
        }
        // The host program may build any value: one that would not read back is refused.
        let (id, _) = ask(&host, "deep300", "an answer too deep");
        let refused = host.resolve(&id, Ok(deep(300)));
        assert!(
            matches!(&refused, Err(PendingError::Refused(why)) if why.contains("read back")),
            "{refused:?}"
        );
        the_store_still_works(&host, "after300");
        host.shutdown();
        deepest
    };
    let (host, report) = dir.load(&policy);
    assert!(report.all_ok(), "{report:#?}");
    assert_eq!(
        host.pending(&deepest).map(|e| e.state),
        Some(PendingState::Resolved(airlock::approvals::Envelope::Ok(
            deep(125)
        )))
    );
    the_store_still_works(&host, "after restart");
    host.shutdown();
    drop(host);
    // The sweep, too, goes on: an entry made now expires by the bound.
    let policy = format!("{policy}pending_ttl_secs = 1\n");
    let (host, report) = dir.load(&policy);
    assert!(report.all_ok(), "{report:#?}");
    let (slow, _) = ask(&host, "slow", "nobody will answer");
    let seen = host.wait_pending(&slow, WAIT).expect("kept");
    assert_eq!(seen.state, PendingState::Expired);
    assert_eq!(
        host.resolve(&slow, Ok(Value::Null)),
        Err(PendingError::Expired(slow.clone()))
    );
}
