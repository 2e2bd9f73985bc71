//! Per-action permissions with real loaded libraries: the policy's allow, deny and ask rules
//! for callers of the bare probe's `whoami` (the host program for a principal, or the probe
//! calling through `whoami_of`), the approver deciding at once or later, a pending call settled
//! after it returned, and hooks under the same rules.

use std::sync::{Arc, Mutex};

use airlock::approvals::{Approval, ApprovalRequest};
use airlock::call::CallerInfo;
use airlock::hooks::HookMode;
use airlock::services::AuditOutcome;
use airlock::{CallErrorCode, Host, Principal, Reply};
use airlock_tests::TempPluginDir;
use serde_json::{json, Value};

/// whoami of probe-bare: admins may, other plugins may not, anyone else is asked.
const RULES: &str = r#"
[plugins.probe]
grants = ["plugins.call:*"]

[[plugins.probe-bare.permissions]]
actions = ["whoami"]
callers = ["role:admin"]
decision = "allow"

[[plugins.probe-bare.permissions]]
actions = ["whoami"]
callers = ["plugin:*"]
decision = "deny"

[[plugins.probe-bare.permissions]]
actions = ["who*"]
decision = "ask"
"#;

fn records(host: &Host, outcome: AuditOutcome) -> Vec<(String, Option<CallerInfo>)> {
    host.audit()
        .tail(usize::MAX)
        .into_iter()
        .filter(|r| r.outcome == outcome)
        .map(|r| (r.capability, r.caller))
        .collect()
}

/// A host over probe and probe-bare with [`RULES`] and an approver answering `decide` for
/// each request, which it also keeps.
fn host_with(
    decide: impl Fn(&ApprovalRequest) -> Approval + Send + Sync + 'static,
) -> (TempPluginDir, Host, Arc<Mutex<Vec<ApprovalRequest>>>) {
    let dir = TempPluginDir::with(&["probe", "probe-bare"]);
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = asked.clone();
    let (host, report) = dir.load_with(RULES, move |b| {
        b.approver(move |request| {
            seen.lock().expect("lock").push(request.clone());
            decide(request)
        })
    });
    assert!(report.all_ok(), "{report:#?}");
    (dir, host, asked)
}

fn host_for(id: &str) -> CallerInfo {
    CallerInfo::Host {
        principal: Some(Principal::new(id, &[])),
    }
}

#[test]
fn allow_and_deny_rules_decide_by_caller_and_each_denial_is_audited_once() {
    let (_dir, host, asked) = host_with(|_| Approval::Deny("not asked in this test".into()));
    let ada = Principal::new("ada", &["admin"]);

    // Allowed: an admin.
    let answer = host
        .call("probe-bare", "whoami")
        .as_principal(&ada)
        .json(&Value::Null);
    assert_eq!(
        answer.expect("allowed"),
        Reply::Ok(json!({"host": {"principal": {"id": "ada", "roles": ["admin"]}}}))
    );
    // Denied: another plugin. The probe's call fails with permission_denied, and one audit
    // record names the calling plugin.
    let answer = host.call("probe", "whoami_of").json(&json!("probe-bare"));
    match answer.expect("the probe answers") {
        Reply::Error(message) => {
            assert!(message.contains("permission_denied"), "{message}");
            assert!(
                message.contains("permissions[1]"),
                "names the rule: {message}"
            );
        }
        other => panic!("expected the probe's error, got {other:?}"),
    }
    assert_eq!(
        records(&host, AuditOutcome::PermissionDenied),
        [(
            "action:whoami".to_owned(),
            Some(CallerInfo::Plugin {
                id: "probe".into(),
                generation: 1
            })
        )]
    );
    assert!(asked.lock().expect("lock").is_empty(), "no rule said ask");
    // Actions no rule covers stay open to everyone, the probe included.
    assert!(matches!(
        host.call("probe", "whoami_of").json(&json!("probe")),
        Ok(Reply::Error(_))
    ));
    assert_eq!(
        host.call("probe-bare", "echo_vec").bytes(b"x"),
        Ok(Reply::Ok(b"vec:x".to_vec()))
    );
}

#[test]
fn ask_consults_the_approver_which_may_allow_or_deny_at_once() {
    let (_dir, host, asked) = host_with(|request| match &request.caller {
        CallerInfo::Host { principal: Some(p) } if p.id == "bob" => Approval::Allow,
        _ => Approval::Deny("only bob, today".into()),
    });
    let bob = Principal::new("bob", &[]);
    let eve = Principal::new("eve", &[]);
    assert_eq!(
        host.call("probe-bare", "whoami")
            .as_principal(&bob)
            .json(&Value::Null)
            .expect("approved"),
        Reply::Ok(json!({"host": {"principal": {"id": "bob", "roles": []}}}))
    );
    let refused = host
        .call("probe-bare", "whoami")
        .as_principal(&eve)
        .json(&Value::Null)
        .expect_err("refused");
    assert_eq!(refused.code, CallErrorCode::PermissionDenied);
    assert!(refused.message.contains("only bob, today"), "{refused}");
    // The host program on behalf of no one is asked too (the last rule covers anyone).
    let refused = host
        .call("probe-bare", "whoami")
        .json(&Value::Null)
        .expect_err("refused");
    assert_eq!(refused.code, CallErrorCode::PermissionDenied);

    let asked = asked.lock().expect("lock");
    let callers: Vec<_> = asked.iter().map(|r| r.caller.clone()).collect();
    assert_eq!(
        callers,
        [
            host_for("bob"),
            host_for("eve"),
            CallerInfo::Host { principal: None }
        ]
    );
    assert!(asked
        .iter()
        .all(|r| r.plugin == "probe-bare" && r.name == "whoami" && !r.hook));
    assert_eq!(records(&host, AuditOutcome::Approved).len(), 1);
    assert_eq!(records(&host, AuditOutcome::PermissionDenied).len(), 2);
}

#[test]
fn an_approval_given_later_runs_the_call_for_its_caller_and_a_refusal_drops_it() {
    let (_dir, host, _asked) = host_with(|_| Approval::Later);
    let bob = Principal::new("bob", &["ops"]);
    let first = host
        .call("probe-bare", "whoami")
        .as_principal(&bob)
        .json(&Value::Null)
        .expect("pending, not failed");
    let Reply::PendingApproval(first) = first else {
        panic!("expected pending_approval, got {first:?}");
    };
    assert_eq!(
        serde_json::to_value(Reply::<serde_json::Value>::PendingApproval(first)).expect("json"),
        json!({"status": "pending_approval", "data": first.0})
    );
    let second = match host.call("probe-bare", "whoami").json(&Value::Null) {
        Ok(Reply::PendingApproval(id)) => id,
        other => panic!("expected pending_approval, got {other:?}"),
    };
    assert_ne!(first, second);
    // The byte-level call answers the same state, with its own id.
    let third = host
        .call("probe-bare", "whoami")
        .bytes(b"null")
        .expect("pending, not failed");
    assert!(
        matches!(third, Reply::PendingApproval(id) if id != first && id != second),
        "{third:?}"
    );

    // So does a pre-resolved handle answering into the caller's buffer, with the id.
    let handle = host.action("probe-bare", "whoami").expect("resolved");
    let mut out = Vec::new();
    let answered = handle
        .call_into(b"null", &mut out)
        .expect("pending, not failed");
    let airlock::Answered::Pending(fourth) = answered else {
        panic!("expected Answered::Pending, got {answered:?}");
    };
    assert_eq!(
        String::from_utf8_lossy(&out),
        format!("the call waits for approval {fourth}")
    );

    let pending = host.pending_approvals();
    assert_eq!(pending.len(), 4, "{pending:?}");
    assert_eq!(
        (pending[0].id, &pending[0].caller),
        (first, &host_for_roles("bob", &["ops"]))
    );

    // Approved after the call returned: it runs now, and still sees bob as its caller.
    assert_eq!(
        host.approve(first).expect("runs"),
        Reply::Ok(json!({"host": {"principal": {"id": "bob", "roles": ["ops"]}}}))
    );
    // Refused: dropped, audited; settling it again finds nothing.
    assert!(host.refuse_approval(second, "not today"));
    assert!(!host.refuse_approval(second, "twice"));
    let gone = host.approve(second).expect_err("settled already");
    assert_eq!(gone.code, CallErrorCode::NotFound);
    assert_eq!(host.pending_approvals().len(), 2);

    assert_eq!(records(&host, AuditOutcome::ApprovalPending).len(), 4);
    assert_eq!(records(&host, AuditOutcome::Approved).len(), 1);
    assert_eq!(records(&host, AuditOutcome::ApprovalRefused).len(), 1);
}

fn host_for_roles(id: &str, roles: &[&str]) -> CallerInfo {
    CallerInfo::Host {
        principal: Some(Principal::new(id, roles)),
    }
}

#[test]
fn ask_without_an_approver_is_a_denial() {
    let dir = TempPluginDir::with(&["probe-bare"]);
    let (host, report) =
        dir.load("[[plugins.probe-bare.permissions]]\nactions = [\"*\"]\ndecision = \"ask\"\n");
    assert!(report.all_ok(), "{report:#?}");
    let err = host
        .call("probe-bare", "whoami")
        .json(&Value::Null)
        .expect_err("denied");
    assert_eq!(err.code, CallErrorCode::PermissionDenied);
    assert!(err.message.contains("no approver"), "{err}");
}

#[test]
fn hooks_follow_the_same_rules_and_a_deferred_hook_leaves_the_plugin_out() {
    let dir = TempPluginDir::with(&["hook-a", "hook-b"]);
    let policy = r#"
        [plugins.hook-a.config]
        tag = "a"
        [plugins.hook-b.config]
        tag = "b"
        [[plugins.hook-a.permissions]]
        hooks = ["t.*"]
        callers = ["user:guest*"]
        decision = "deny"
        [[plugins.hook-b.permissions]]
        hooks = ["t.chain"]
        callers = ["user:guest*"]
        decision = "ask"
    "#;
    let (host, report) = dir.load_with(policy, |b| b.approver(|_| Approval::Later));
    assert!(report.all_ok(), "{report:#?}");
    host.define_hook("t.chain", HookMode::Chain);

    let admin = Principal::new("root", &[]);
    let out = host
        .hooks()
        .as_principal(&admin)
        .chain("t.chain", "x".to_owned())
        .expect("dispatched");
    assert_eq!((out.value.as_str(), out.failures.len()), ("xab", 0));

    let guest = Principal::new("guest-1", &[]);
    let out = host
        .hooks()
        .as_principal(&guest)
        .chain("t.chain", "x".to_owned())
        .expect("dispatched");
    assert_eq!(out.value, "x", "both plugins left out");
    let failed: Vec<_> = out
        .failures
        .iter()
        .map(|f| (f.plugin.as_str(), f.code))
        .collect();
    assert_eq!(
        failed,
        [
            ("hook-a", CallErrorCode::PermissionDenied),
            ("hook-b", CallErrorCode::PendingApproval)
        ]
    );
    assert!(host.pending_approvals().is_empty(), "a hook does not wait");
    assert_eq!(
        records(&host, AuditOutcome::PermissionDenied),
        [("hook:t.chain".to_owned(), Some(host_for("guest-1")))]
    );
}

#[test]
fn a_bad_rule_is_refused_with_its_place_in_the_policy() {
    for (rule, expect) in [
        ("decision = \"allow\"", "names the actions or hooks"),
        (
            "actions = [\"x\"]\ncallers = [\"admin\"]\ndecision = \"deny\"",
            "permissions[0] (line 1): caller \"admin\"",
        ),
        ("actions = [\"x\"]\ndecision = \"maybe\"", "maybe"),
    ] {
        let text = format!("[[plugins.p.permissions]]\n{rule}\n");
        let err =
            airlock::Policy::parse(&text, airlock::policy::PolicyFormat::Toml).expect_err(rule);
        assert!(err.contains(expect), "{rule}: {err}");
    }
}

#[test]
fn the_console_holds_asked_calls_for_the_operator_to_approve_or_refuse() {
    let dir = TempPluginDir::with(&["hello", "claimer"]);
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[[plugins.hello.permissions]]\nactions = [\"greet\"]\ndecision = \"ask\"\n",
    )
    .expect("policy written");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_airlock-cli"));
    command
        .arg("run")
        .arg(dir.path())
        .arg("--policy")
        .arg(&policy);
    let out = airlock_tests::run_with_input(
        command,
        "/call hello greet {\"name\":\"Ada\"}\n/call hello greet {\"name\":\"Bob\"}\n\
         /approvals\n/approve 1\n/refuse 2\n/approve 2\n/approvals\n\
         /dispatch notify.email \"hi\"\n/quit\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let expect = [
        "pending_approval #1",
        "pending_approval #2",
        "1 hello.greet for the host program: {\"name\":\"Ada\"}",
        "2 hello.greet for the host program: {\"name\":\"Bob\"}",
        "ok \"Hello, Ada!\"",
        "#2 refused",
        "error not_found: no call waits for approval #2",
        "no call waits for approval",
        "claimer handled it (1 attempt): ok {\"sent\":\"hi\",\"attempt\":1}",
    ];
    let mut lines = stdout.lines();
    for want in expect {
        assert!(
            lines.any(|line| line.contains(want)),
            "missing, or out of order: {want:?} in:\n{stdout}"
        );
    }
}
