//! Permission rules on what is asked and by whom, with the real `shell-like` fixture (plugin
//! `shell`, whose `run` answers the input it was let through and the caller it was told):
//! rules on an argument (JSON pointers with globs, and what happens when the input cannot be
//! read, or names a key twice), rules on a principal's attributes, the plugin's declared
//! permissions with their default roles and the operator's rules overriding them, route
//! requests without a principal calling as `anonymous`, the grant lint from `airlock check` and
//! `airlock install`, and `airlock inspect --policy` naming the rule that decides.

use std::path::Path;
use std::process::{Command, Output};

use airlock::http::HttpIn;
use airlock::services::AuditOutcome;
use airlock::{CallErrorCode, Host, Principal, Reply};
use airlock_tests::TempPluginDir;
use serde_json::{json, Value};

/// `run` is allowed for `git *` commands only, with shell separators denied first.
const GIT_ONLY: &str = r#"
[[plugins.shell.permissions]]
actions = ["run"]
match = { "/cmd" = ["*;*", "*&*", "*|*", "*`*", "*$(*"] }
decision = "deny"

[[plugins.shell.permissions]]
actions = ["run"]
match = { "/cmd" = "git *" }
decision = "allow"

[[plugins.shell.permissions]]
actions = ["run"]
decision = "deny"
"#;

fn shell(policy: &str) -> (TempPluginDir, Host) {
    let dir = TempPluginDir::with(&["shell-like"]);
    let (host, report) = dir.load(policy);
    assert!(report.all_ok(), "{report:#?}");
    (dir, host)
}

fn run_as(host: &Host, who: &Principal, input: &Value) -> Result<Reply, airlock::CallError> {
    host.call("shell", "run").as_principal(who).json(input)
}

fn denials(host: &Host) -> usize {
    host.audit()
        .tail(usize::MAX)
        .iter()
        .filter(|r| r.outcome == AuditOutcome::PermissionDenied)
        .count()
}

#[test]
fn a_rule_on_an_argument_allows_git_and_nothing_that_only_looks_like_it() {
    let (_dir, host) = shell(GIT_ONLY);
    let ada = Principal::new("ada", &["operator"]);
    let answer = run_as(&host, &ada, &json!({"cmd": "git status"})).expect("allowed");
    let Reply::Ok(answer) = answer else {
        panic!("{answer:?}")
    };
    assert_eq!(answer["ran"], json!({"cmd": "git status"}));
    for cmd in [
        "gitx status",
        "git",
        "rm -rf / ; git status",
        "git status; rm -rf /",
        "git log | sh",
        "git $(reboot)",
        "GIT status",
    ] {
        let err = run_as(&host, &ada, &json!({ "cmd": cmd })).expect_err(cmd);
        assert_eq!(err.code, CallErrorCode::PermissionDenied, "{cmd}: {err}");
    }
    assert_eq!(denials(&host), 7, "each denial is audited once");
}

#[test]
fn input_the_rules_cannot_read_is_refused_whatever_the_rule_would_decide() {
    // Even a rule that would allow: what it cannot read never lets a call through.
    let (_dir, host) = shell(
        r#"
[[plugins.shell.permissions]]
actions = ["run"]
match = { "/cmd" = "git *" }
decision = "allow"
"#,
    );
    let ada = Principal::new("ada", &["operator"]);
    let raw = host
        .call("shell", "run")
        .as_principal(&ada)
        .bytes(b"git status")
        .expect_err("not JSON");
    assert_eq!(raw.code, CallErrorCode::PermissionDenied);
    assert!(raw.message.contains("not JSON"), "{raw}");
    assert!(
        raw.message
            .contains("[plugins.shell] permissions[0], line 2"),
        "names the rule and its line: {raw}"
    );
    for (input, says) in [
        (json!({"command": "git status"}), "nothing at \"/cmd\""),
        (json!({"cmd": ["git", "status"]}), "an array"),
        (json!({"cmd": 1}), "a number"),
        (json!(null), "nothing at"),
    ] {
        let err = run_as(&host, &ada, &input).expect_err("unreadable");
        assert_eq!(err.code, CallErrorCode::PermissionDenied, "{input}");
        assert!(err.message.contains(says), "{input}: {err}");
        assert!(
            !err.message.contains("git status"),
            "no input value in the message"
        );
    }
    // The rule reads /cmd only for the actions it names.
    assert!(matches!(
        host.call("shell", "status").as_principal(&ada).bytes(b"{}"),
        Ok(Reply::Ok(_))
    ));
}

#[test]
fn input_naming_a_key_twice_is_refused_where_a_match_reads_it_even_under_an_allow() {
    // A plugin whose JSON reader keeps the first of two equal keys would run what the rule,
    // reading the last, never saw: such input is refused before any match is read.
    let (_dir, host) = shell(
        r#"
[[plugins.shell.permissions]]
actions = ["run"]
match = { "/cmd" = "git *" }
decision = "allow"
"#,
    );
    let ada = Principal::new("ada", &["operator"]);
    let run = |input: &str| {
        host.call("shell", "run")
            .as_principal(&ada)
            .bytes(input.as_bytes())
    };
    for (input, key) in [
        (r#"{"cmd":"rm -rf /","cmd":"git status"}"#, "\"cmd\""),
        (r#"{"cmd":"git status","cmd":"rm -rf /"}"#, "\"cmd\""),
        (
            r#"{"cmd":"git status","env":{"GIT_DIR":"a","GIT_DIR":"b"}}"#,
            "\"GIT_DIR\" in env",
        ),
        (
            r#"{"cmd":"git status","args":[{"f":"x","f":"y"}]}"#,
            "\"f\" in args[0]",
        ),
    ] {
        let err = run(input).expect_err(input);
        assert_eq!(err.code, CallErrorCode::PermissionDenied, "{input}: {err}");
        assert!(
            err.message.contains(&format!("duplicate key {key}")),
            "names the key and where: {err}"
        );
        assert!(
            err.message
                .contains("[plugins.shell] permissions[0], line 2"),
            "{err}"
        );
        assert!(!err.message.contains("rm -rf"), "no input value: {err}");
    }
    assert_eq!(denials(&host), 4, "each refusal is audited");
    // The same input without the duplicate is allowed, and reaches the plugin as sent.
    let Reply::Ok(answer) = run(r#"{"cmd":"git status","env":{"GIT_DIR":"a"}}"#).expect("allowed")
    else {
        panic!("not ok")
    };
    let answer: Value = serde_json::from_slice(&answer).expect("json");
    assert_eq!(answer["ran"]["cmd"], "git status");
    drop(host);

    // Where no rule with a match is reached, the input is not read at all: the plugin's
    // declared permissions (no match) let an operator's duplicate keys through as before.
    let (_dir, host) = shell("");
    let olga = Principal::new("olga", &["operator"]);
    let Reply::Ok(answer) = host
        .call("shell", "run")
        .as_principal(&olga)
        .bytes(br#"{"cmd":"ls","cmd":"ls -la"}"#)
        .expect("no match, no check")
    else {
        panic!("not ok")
    };
    let answer: Value = serde_json::from_slice(&answer).expect("json");
    assert_eq!(answer["ran"]["cmd"], "ls -la");
}

fn route(host: &Host, body: &[u8]) -> (u16, String) {
    let out = host.handle_http(&HttpIn {
        method: "POST".to_owned(),
        path: "/plugins/shell/run".to_owned(),
        body: body.to_vec(),
        ..HttpIn::default()
    });
    (out.status, String::from_utf8_lossy(&out.body).into_owned())
}

#[test]
fn a_route_request_without_a_principal_is_anonymous_and_bound_by_declared_permissions() {
    let dir = TempPluginDir::with(&["shell-like"]);
    // No authentication hook: every request is anonymous, never the host program itself, so
    // `shell.serve` (held by operators) refuses it.
    let (host, report) = dir.load("");
    assert!(report.all_ok(), "{report:#?}");
    let (status, body) = route(&host, br#"{"cmd":"ls"}"#);
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("on behalf of anonymous") && body.contains("\"shell.serve\""),
        "{body}"
    );
    drop(host);

    // A hook that names operators, and no one for other requests.
    let hook = |b: airlock::HostBuilder| {
        b.http_auth(|request: &HttpIn| {
            let token = request
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
                .map(|(_, v)| v.as_str());
            Ok(match token {
                Some("olga") => Some(Principal::new("olga", &["operator"])),
                Some("vic") => Some(Principal::new("vic", &["viewer"])),
                _ => None,
            })
        })
    };
    let (host, report) = dir.load_with("", hook);
    assert!(report.all_ok(), "{report:#?}");
    let as_token = |token: &str| {
        let out = host.handle_http(&HttpIn {
            method: "POST".to_owned(),
            path: "/plugins/shell/run".to_owned(),
            headers: vec![("Authorization".to_owned(), token.to_owned())],
            body: br#"{"cmd":"ls"}"#.to_vec(),
            ..HttpIn::default()
        });
        (out.status, String::from_utf8_lossy(&out.body).into_owned())
    };
    let (status, body) = as_token("olga");
    assert_eq!(status, 200, "{body}");
    let seen: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(seen["caller"]["host"]["principal"]["id"], "olga");
    assert_eq!(as_token("vic").0, 403, "a role without the permission");
    let (status, body) = as_token("nobody");
    assert_eq!(status, 403, "the hook named no one: {body}");
    assert!(body.contains("on behalf of anonymous"), "{body}");
    drop(host);

    // The operator opens the action to anonymous requests by name; the plugin is told who.
    let (host, _) = dir.load(
        r#"
[[plugins.shell.permissions]]
actions = ["serve"]
callers = ["user:anonymous"]
decision = "allow"
"#,
    );
    let (status, body) = route(&host, br#"{"cmd":"ls"}"#);
    assert_eq!(status, 200, "{body}");
    let seen: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        seen["caller"]["host"]["principal"],
        json!({"id": "anonymous", "roles": []})
    );
    drop(host);

    // A match reads JSON, and a route's input is its request frame: a rule with a match on a
    // route's action never reads the body, and refuses.
    let (host, _) = dir.load(
        r#"
[[plugins.shell.permissions]]
actions = ["serve"]
match = { "/cmd" = "*" }
decision = "allow"
"#,
    );
    let (status, body) = route(&host, br#"{"cmd":"ls"}"#);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("not JSON"), "{body}");
}

#[test]
fn a_rule_on_an_attribute_allows_one_org_and_no_other() {
    let (_dir, host) = shell(
        r#"
[[plugins.shell.permissions]]
actions = ["run"]
callers = ["attr:org=acme"]
decision = "allow"

[[plugins.shell.permissions]]
actions = ["run"]
decision = "deny"
"#,
    );
    let acme = Principal::new("ada", &[]).with_attribute("org", "acme");
    let Reply::Ok(answer) = run_as(&host, &acme, &json!({"cmd": "ls"})).expect("allowed") else {
        panic!("not ok")
    };
    // The attributes reach the plugin through the ABI, as ctx.caller() tells it.
    assert_eq!(
        answer["caller"]["host"]["principal"]["attributes"],
        json!({"org": "acme"})
    );
    for other in [
        Principal::new("ada", &[]).with_attribute("org", "acme-evil"),
        Principal::new("ada", &[]).with_attribute("org", "ACME"),
        Principal::new("ada", &[]).with_attribute("tenant", "acme"),
        Principal::new("acme", &["acme", "operator"]),
    ] {
        let err = run_as(&host, &other, &json!({"cmd": "ls"})).expect_err("denied");
        assert_eq!(err.code, CallErrorCode::PermissionDenied, "{other:?}");
        assert!(err.message.contains("permissions[1]"), "{err}");
    }
}

#[test]
fn declared_permissions_hold_for_their_default_roles_until_the_operator_overrides_them() {
    let operator = Principal::new("olga", &["operator"]);
    let viewer = Principal::new("vic", &["viewer"]);
    let (_dir, host) = shell("");
    assert!(run_as(&host, &operator, &json!({"cmd": "ls"})).is_ok());
    let err = run_as(&host, &viewer, &json!({"cmd": "ls"})).expect_err("not a default role");
    assert_eq!(err.code, CallErrorCode::PermissionDenied);
    assert!(
        err.message
            .contains("the plugin's permission \"shell.run\""),
        "{err}"
    );
    // reset is shell.reset, held by admins: an operator does not hold it.
    let reset = host
        .call("shell", "reset")
        .as_principal(&operator)
        .json(&json!({}));
    assert_eq!(
        reset.expect_err("admins only").code,
        CallErrorCode::PermissionDenied
    );
    // An action no permission guards, and the host program on its own account, are not bound.
    assert!(host
        .call("shell", "status")
        .as_principal(&viewer)
        .json(&json!({}))
        .is_ok());
    assert!(host
        .call("shell", "run")
        .json(&json!({"cmd": "ls"}))
        .is_ok());
    drop(host);

    // The operator gives run to viewers and takes it from operators.
    let (_dir, host) = shell(
        r#"
[[plugins.shell.permissions]]
actions = ["run"]
callers = ["role:viewer"]
decision = "allow"

[[plugins.shell.permissions]]
actions = ["run"]
callers = ["role:operator"]
decision = "deny"
"#,
    );
    assert!(run_as(&host, &viewer, &json!({"cmd": "ls"})).is_ok());
    let err = run_as(&host, &operator, &json!({"cmd": "ls"})).expect_err("overridden");
    assert!(
        err.message
            .contains("[plugins.shell] permissions[1], line 7"),
        "{err}"
    );
    // What the operator does not mention keeps the plugin's defaults.
    let reset = host
        .call("shell", "reset")
        .as_principal(&operator)
        .json(&json!({}));
    assert_eq!(
        reset.expect_err("still admins only").code,
        CallErrorCode::PermissionDenied
    );
    let admin = Principal::new("ann", &["admin"]);
    assert!(host
        .call("shell", "reset")
        .as_principal(&admin)
        .json(&json!({}))
        .is_ok());
}

fn airlock(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_airlock-cli"));
    cmd.args(args).env_remove("AIRLOCK_CTOR_MARKER");
    cmd
}

fn output(mut cmd: Command) -> (Output, String, String) {
    let out = cmd.output().expect("the CLI runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// Grants that together are the host's authority, on lines 4 to 7.
const EVERYTHING: &str = "[plugins.shell]\ngrants = [\n  \"kv\",\n  \"plugins.call:*\",\n  \"service:*\",\n  \"http.outbound:*\",\n  \"secrets:*\",\n]\n";

fn write_policy(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("airlock.toml");
    std::fs::write(&path, text).expect("policy");
    path
}

#[test]
fn check_warns_naming_the_lines_when_the_grants_amount_to_the_hosts_authority() {
    let dir = TempPluginDir::with(&["shell-like"]);
    let work = tempfile::tempdir().expect("tempdir");
    let policy = write_policy(work.path(), EVERYTHING);
    let check = |format: &str| {
        let mut cmd = airlock(&["check", "--format", format, "--policy"]);
        cmd.arg(&policy).arg(dir.path());
        output(cmd)
    };
    let (out, table, _) = check("table");
    assert!(out.status.success(), "a warning is not a refusal: {table}");
    let warning = table
        .lines()
        .find(|l| l.contains("warning:"))
        .unwrap_or_else(|| panic!("no warning in {table}"));
    assert!(warning.contains("host's authority"), "{warning}");
    for (grant, line) in [
        ("plugins.call:*", 4),
        ("service:*", 5),
        ("http.outbound:*", 6),
        ("secrets:*", 7),
    ] {
        assert!(
            warning.contains(&format!("{grant} at line {line}")),
            "{warning}"
        );
    }
    assert!(warning.contains("airlock.toml"), "{warning}");
    let (_, json, _) = check("json");
    let json: Value = serde_json::from_str(&json).expect("JSON");
    let warnings = json["plugins"][0]["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{json:#}");
    // Loading the plugin (`--load`) reports it the same way.
    let mut cmd = airlock(&["check", "--load", "--policy"]);
    cmd.arg(&policy).arg(dir.path());
    let (out, loaded, _) = output(cmd);
    assert!(out.status.success(), "{loaded}");
    assert!(
        loaded.contains("warning: the effective grants of shell"),
        "{loaded}"
    );
    assert!(loaded.contains("secrets:* at line 7"), "{loaded}");

    // One family narrowed: no warning.
    std::fs::write(&policy, EVERYTHING.replace("secrets:*", "secrets:token")).expect("policy");
    let (out, table, _) = check("table");
    assert!(out.status.success());
    assert!(!table.contains("warning"), "{table}");
    // Granted but not declared does not count: the lint reads effective grants, and hello
    // declares none of these.
    let both = TempPluginDir::with(&["shell-like", "hello"]);
    std::fs::write(
        &policy,
        format!(
            "{EVERYTHING}{}",
            EVERYTHING.replace("plugins.shell", "plugins.hello")
        ),
    )
    .expect("policy");
    let mut cmd = airlock(&["check", "--format", "json", "--policy"]);
    cmd.arg(&policy).arg(both.path());
    let (_, json, _) = output(cmd);
    let json: Value = serde_json::from_str(&json).expect("JSON");
    let warned: Vec<&str> = json["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .filter(|p| p.get("warnings").is_some())
        .filter_map(|p| p["id"].as_str())
        .collect();
    assert_eq!(warned, ["shell"], "{json:#}");
}

#[test]
fn install_warns_naming_the_lines_too() {
    let built = TempPluginDir::with(&["shell-like"]);
    let file = built.path().join(TempPluginDir::lib_name("shell-like"));
    let work = tempfile::tempdir().expect("tempdir");
    let policy = write_policy(work.path(), EVERYTHING);
    let plugins = work.path().join("plugins");
    let mut cmd = airlock(&["install"]);
    cmd.arg(&file)
        .arg("--dir")
        .arg(&plugins)
        .arg("--policy")
        .arg(&policy);
    let (out, stdout, stderr) = output(cmd);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("installed shell 0.1.0"), "{stdout}");
    assert!(
        stderr.contains("warning: the effective grants of shell amount to the host's authority")
            && stderr.contains("secrets:* at line 7"),
        "{stderr}"
    );
}

#[test]
fn inspect_with_a_policy_explains_which_rule_decides() {
    let dir = TempPluginDir::with(&["shell-like"]);
    let file = dir.path().join(TempPluginDir::lib_name("shell-like"));
    let work = tempfile::tempdir().expect("tempdir");
    let policy = write_policy(
        work.path(),
        &format!(
            "{GIT_ONLY}\n[[plugins.shell.permissions]]\nactions = [\"reset\"]\ncallers = [\"attr:org=acme\"]\ndecision = \"allow\"\n"
        ),
    );
    let explain = |args: &[&str]| {
        let mut cmd = airlock(&["inspect"]);
        cmd.arg(&file).arg("--policy").arg(&policy).args(args);
        output(cmd)
    };
    let (out, stdout, stderr) = explain(&[
        "--action",
        "run",
        "--caller",
        "user:ada",
        "--input",
        r#"{"cmd":"git status"}"#,
    ]);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout
            .contains("1. [plugins.shell] permissions[0], line 2: skipped: the input at \"/cmd\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("decision: allow ([plugins.shell] permissions[1], line 7)"),
        "{stdout}"
    );
    let (_, stdout, _) = explain(&[
        "--action",
        "run",
        "--caller",
        "user:ada",
        "--input",
        r#"{"cmd":"git status; rm -rf /"}"#,
    ]);
    assert!(
        stdout.contains("decision: deny ([plugins.shell] permissions[0], line 2)"),
        "{stdout}"
    );
    let (_, stdout, _) = explain(&[
        "--action",
        "run",
        "--caller",
        "user:ada",
        "--input",
        "git status",
    ]);
    assert!(
        stdout.contains("decision: deny") && stdout.contains("not JSON"),
        "{stdout}"
    );
    // The plugin's declared permission decides when no rule of the operator covers the call.
    let (_, stdout, _) = explain(&[
        "--action", "reset", "--caller", "user:ada", "--role", "viewer",
    ]);
    assert!(
        stdout.contains("decision: deny (the plugin's permission \"shell.reset\", held by default by role admin)"),
        "{stdout}"
    );
    let (_, stdout, _) = explain(&[
        "--action", "reset", "--caller", "user:ada", "--attr", "org=acme", "--format", "json",
    ]);
    let json: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(json["decision"], "allow");
    assert!(
        json["rule"]
            .as_str()
            .is_some_and(|r| r.contains("permissions[3]")),
        "{json:#}"
    );
    // Without --action, inspect lists the permissions the plugin declares.
    let mut cmd = airlock(&["inspect"]);
    cmd.arg(&file);
    let (_, stdout, _) = output(cmd);
    assert!(
        stdout.contains("permission:   shell.run guards action:run (held by default by operator)"),
        "{stdout}"
    );
    // An action the plugin does not declare is an error, not an answer.
    let (out, _, stderr) = explain(&["--action", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("declares no action:nope"), "{stderr}");
}
