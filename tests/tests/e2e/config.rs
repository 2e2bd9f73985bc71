//! Config: validated by the plugin before creation and before a change; applied live when the
//! plugin takes it, otherwise the plugin is re-created with it. `{ env = .. }` and
//! `{ secret = .. }` references resolved by the host (again at each restart), never shown; the
//! schema's defaults filled in (`tests/config_env.rs` sets variables, in a binary of its own); a
//! dry run (`Host::check_config`, `airlock check --config`) that changes nothing; the console and
//! the logs never show a resolved secret.

use airlock::{Error, Reply};
use airlock_tests::TempPluginDir;
use serde_json::json;

#[test]
fn a_config_the_plugin_rejects_refuses_it_at_load() {
    let dir = TempPluginDir::with(&["ticker"]);
    let (_host, report) = dir.load(
        "[plugins.ticker]\ngrants = [\"timers\", \"events.publish:demo.*\"]\n[plugins.ticker.config]\ninterval_ms = 0\n",
    );
    let entry = report.refused().next().expect("refused");
    assert_eq!(entry.reason.map(|r| r.code()), Some("config_invalid"));
    assert!(
        entry.detail.contains("interval_ms must be at least 1"),
        "{}",
        entry.detail
    );
}

#[test]
fn a_live_change_keeps_the_instance_and_a_restart_change_recreates_it() {
    let dir = TempPluginDir::with(&["hello", "ticker"]);
    let (host, report) =
        dir.load("[plugins.ticker]\ngrants = [\"timers\", \"events.publish:demo.*\"]\n");
    assert!(report.all_ok(), "{report:#?}");

    let applied = host
        .set_config("hello", json!({"greeting": "Yo"}))
        .expect("accepted");
    assert!(applied.live);
    assert_eq!(host.plugin("hello").expect("loaded").generation, 1);
    assert_eq!(
        host.call("hello", "greet")
            .json(&json!({"name": "Ada"}))
            .expect("call"),
        Reply::Ok("Yo, Ada!".into())
    );
    assert_eq!(
        host.call("hello", "config")
            .json(&json!(null))
            .expect("call"),
        Reply::Ok(json!({"greeting": "Yo"})),
        "ctx.config() returns the new config"
    );

    let applied = host
        .set_config("ticker", json!({"interval_ms": 5}))
        .expect("accepted");
    assert!(!applied.live);
    assert_eq!(
        applied.warnings,
        vec!["interval_ms = 5 is very short".to_owned()]
    );
    let ticker = host.plugin("ticker").expect("loaded");
    assert_eq!(ticker.generation, 2);
    // The tick job and the `hourly` job its manifest declares: the old instance's are gone,
    // the new one's are there once.
    assert_eq!(
        ticker.stats.timers, 2,
        "the old jobs are gone and the new ones are there once"
    );

    match host.set_config("hello", json!({"greeting": " "})) {
        Err(Error::ConfigRejected { errors, .. }) => {
            assert!(errors[0].contains("blank"), "{errors:?}")
        }
        other => panic!("a blank greeting was accepted: {other:?}"),
    }
    assert_eq!(
        host.call("hello", "greet")
            .json(&json!({"name": "Ada"}))
            .expect("call"),
        Reply::Ok("Yo, Ada!".into()),
        "a rejected config leaves the old one in force"
    );
}

/// A secret whose value must never show outside the plugin.
const SECRET: &str = "tok-5ecret-value-0042";

/// A policy for `configured` with its token a secret reference, and an audit log.
fn referencing_policy(audit: &std::path::Path, env: &str, grant: &str) -> String {
    format!(
        "[host]\naudit_log = {audit:?}\n[secrets]\napi = \"{SECRET}\"\n\
         [plugins.configured]\ngrants = [{grant:?}]\n\
         [plugins.configured.config]\nendpoint = {{ env = {env:?} }}\n\
         token = {{ secret = \"api\" }}\n"
    )
}

fn shown_config(host: &airlock::Host) -> serde_json::Value {
    match host.call("configured", "config").json(&json!(null)) {
        Ok(Reply::Ok(config)) => config,
        other => panic!("config: {other:?}"),
    }
}

#[test]
fn a_reference_that_cannot_resolve_refuses_that_plugin_only_and_says_where() {
    let dir = TempPluginDir::with(&["configured", "hello"]);
    let work = tempfile::tempdir().expect("tempdir");
    let audit = work.path().join("audit.jsonl");
    let unset = "AIRLOCK_TEST_CONFIG_SURELY_UNSET";
    // An unset variable, then a secret the plugin is not granted.
    for (grant, wanted) in [
        (
            "secrets:api",
            "plugins.configured.config.endpoint: { env = \"AIRLOCK_TEST_CONFIG_SURELY_UNSET\" }: \
             the environment variable AIRLOCK_TEST_CONFIG_SURELY_UNSET is not set",
        ),
        (
            "secrets:other",
            "plugins.configured.config.token: { secret = \"api\" }: plugin configured is not \
             granted secrets:api; add it to grants in [plugins.configured]",
        ),
    ] {
        let policy = referencing_policy(&audit, unset, grant).replace(
            &format!("endpoint = {{ env = {unset:?} }}"),
            &if grant == "secrets:api" {
                format!("endpoint = {{ env = {unset:?} }}")
            } else {
                "endpoint = \"https://x.test\"".to_owned()
            },
        );
        let (host, report) = dir.load(&policy);
        let refused: Vec<_> = report.refused().collect();
        assert_eq!(refused.len(), 1, "{report:#?}");
        assert_eq!(refused[0].id.as_deref(), Some("configured"));
        assert_eq!(refused[0].reason.map(|r| r.code()), Some("config_invalid"));
        assert!(refused[0].detail.contains(wanted), "{}", refused[0].detail);
        assert!(host.plugin("hello").is_some(), "the others load");
    }
}

#[test]
fn a_value_from_a_reference_is_hidden_in_what_rejects_it() {
    let dir = TempPluginDir::with(&["configured"]);
    let work = tempfile::tempdir().expect("tempdir");
    let audit = work.path().join("audit.jsonl");
    // The schema rejects it (its pattern, the value unquoted), then the plugin does (repeating
    // it, hidden).
    for (value, wanted) in [
        ("5ecret-schema-breaking", "does not match pattern"),
        ("tok-5ecret-now-revoked", "<hidden>"),
    ] {
        let policy = referencing_policy(&audit, "PATH", "secrets:api").replace(SECRET, value);
        let (_host, report) = dir.load(&policy);
        let refused = report.refused().next().expect("refused");
        assert_eq!(refused.reason.map(|r| r.code()), Some("config_invalid"));
        assert!(
            refused.detail.contains(wanted) && !refused.detail.contains(value),
            "{}",
            refused.detail
        );
    }
}

#[test]
fn a_dry_run_checks_everything_and_changes_nothing() {
    let dir = TempPluginDir::with(&["configured"]);
    let work = tempfile::tempdir().expect("tempdir");
    let audit = work.path().join("audit.jsonl");
    let (host, report) = dir.load(&referencing_policy(&audit, "PATH", "secrets:api"));
    assert!(report.all_ok(), "{report:#?}");
    let before = shown_config(&host);
    let generation = host.plugin("configured").expect("loaded").generation;
    let audited = std::fs::read_to_string(&audit).unwrap_or_default();

    let checked = host
        .check_config(
            "configured",
            &json!({ "token": { "secret": "api" }, "retries": 7, "http": {} }),
        )
        .expect("accepted");
    // What would be kept: the references as written, the defaults filled in.
    assert_eq!(
        checked.config,
        json!({
            "token": { "secret": "api" },
            "retries": 7,
            "http": { "timeout_ms": 500 },
            "endpoint": "https://api.example.test",
        })
    );
    assert_eq!(checked.defaults, ["/endpoint", "/http/timeout_ms"]);
    assert_eq!(checked.warnings, ["retries = 7 is many"]);
    // The plugin's own validation, its message shown (a literal is not hidden; a value from a
    // reference would be).
    let revoked = host
        .check_config("configured", &json!({ "token": "tok-now-revoked" }))
        .expect_err("rejected");
    assert!(
        matches!(&revoked, Error::ConfigRejected { errors, .. }
            if errors[0].contains("token tok-now-revoked is revoked")),
        "{revoked}"
    );
    let bad = host
        .check_config("configured", &json!({ "retries": -1 }))
        .expect_err("rejected by the schema");
    assert!(bad.to_string().contains("retries"), "{bad}");
    assert!(matches!(
        host.check_config("nobody", &json!({})),
        Err(Error::UnknownPlugin(_))
    ));
    // Nothing changed: the same instance, its config, no record.
    assert_eq!(
        host.plugin("configured").expect("loaded").generation,
        generation
    );
    assert_eq!(shown_config(&host), before);
    assert_eq!(std::fs::read_to_string(&audit).unwrap_or_default(), audited);
}

#[test]
fn airlock_check_config_dry_runs_a_file_of_configs() {
    let dir = TempPluginDir::with(&["configured", "hello"]);
    let work = tempfile::tempdir().expect("tempdir");
    let policy = work.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[secrets]\napi = \"{SECRET}\"\n[plugins.configured]\ngrants = [\"secrets:api\"]\n"
        ),
    )
    .expect("policy");
    let check = |file: &str, text: &str| {
        let path = work.path().join(file);
        std::fs::write(&path, text).expect("write");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock-cli"))
            .arg("check")
            .arg(dir.path())
            .arg("--policy")
            .arg(&policy)
            .arg("--config")
            .arg(&path)
            .output()
            .expect("the CLI runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains(SECRET), "{text}");
        (out.status.code(), text)
    };
    let (code, text) = check(
        "good.toml",
        "[plugins.configured.config]\ntoken = { secret = \"api\" }\n\
         [plugins.hello.config]\ngreeting = \"Hi\"\n",
    );
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("configured: config ok")
            && text.contains("defaults filled in: /endpoint, /retries, /http, /http/timeout_ms")
            && text.contains("hello: config ok"),
        "{text}"
    );
    let (code, text) = check(
        "bad.json",
        r#"{"plugins": {"hello": {"config": {"greeting": " "}}, "nobody": {"config": {}}}}"#,
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("greeting must not be blank") && text.contains("nobody: config rejected"),
        "{text}"
    );
    let (code, text) = check("wrong.toml", "[plugins.hello]\ngreeting = \"Hi\"\n");
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("wrong.toml"), "{text}");
}

#[test]
fn the_console_shows_no_resolved_secret() {
    use std::io::Write as _;
    let dir = TempPluginDir::with(&["configured"]);
    let work = tempfile::tempdir().expect("tempdir");
    let policy = work.path().join("policy.toml");
    std::fs::write(
        &policy,
        referencing_policy(&work.path().join("audit.jsonl"), "PATH", "secrets:api"),
    )
    .expect("policy");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_airlock-cli"))
        .arg("run")
        .arg(dir.path())
        .arg("--policy")
        .arg(&policy)
        .env("AIRLOCK_LOG", "debug")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("airlock run starts");
    let mut stdin = child.stdin.take().expect("stdin");
    // A change taken, one the plugin rejects naming the value, then what the operator can see.
    writeln!(
        stdin,
        "/config configured {{\"token\": {{\"secret\": \"api\"}}, \"retries\": 8}}\n\
         /config configured {{\"token\": {{\"env\": \"AIRLOCK_TEST_CONSOLE_TOKEN\"}}}}\n\
         /plugins\n/audit 50\n/quit"
    )
    .expect("commands");
    drop(stdin);
    let out = child.wait_with_output().expect("airlock run ends");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("retries = 8 is many"), "{said}");
    assert!(
        said.contains("AIRLOCK_TEST_CONSOLE_TOKEN is not set"),
        "{said}"
    );
    assert!(!said.contains(SECRET), "the secret was shown: {said}");
}

#[test]
fn a_secret_with_quotes_and_escapes_is_hidden_in_every_rejection() {
    // Its every form (raw, JSON- or Debug-escaped) holds "w0rd"; no message may.
    let value = "pa\\ss'w0rd\"x";
    let dir = TempPluginDir::with(&["configured"]);
    let work = tempfile::tempdir().expect("tempdir");
    let secrets =
        format!("[secrets]\napi = {value:?}\n[plugins.configured]\ngrants = [\"secrets:api\"]\n");
    let leaks = |what: &str, text: &str| {
        assert!(
            !text.contains("w0rd"),
            "the secret is in the {what}: {text}"
        );
    };
    // At load: the schema's pattern refuses it.
    let (_host, report) = dir.load(&format!(
        "{secrets}[plugins.configured.config]\ntoken = {{ secret = \"api\" }}\n"
    ));
    let refused = report.refused().next().expect("refused");
    assert_eq!(refused.reason.map(|r| r.code()), Some("config_invalid"));
    assert!(
        refused.detail.contains("/token") && refused.detail.contains("pattern"),
        "{}",
        refused.detail
    );
    leaks(
        "load refusal",
        &format!("{}{report:?}{}", refused.detail, report.to_json()),
    );
    // A dry run and a change: the schema's refusal and the plugin's own (repeating the token).
    let (host, report) = dir.load(&secrets);
    assert!(report.all_ok(), "{report:#?}");
    let rejection = host
        .check_config("configured", &json!({ "token": { "secret": "api" } }))
        .expect_err("the schema rejects it");
    leaks("dry run", &format!("{rejection} {rejection:?}"));
    let mut policy = secrets.replace(
        &format!("{value:?}"),
        &format!("{:?}", format!("tok-{value}-revoked")),
    );
    let (host, _) = dir.load(&policy);
    let rejection = host
        .set_config("configured", json!({ "token": { "secret": "api" } }))
        .expect_err("the plugin rejects it");
    assert!(rejection.to_string().contains("is revoked"), "{rejection}");
    leaks("plugin's rejection", &format!("{rejection} {rejection:?}"));
    // airlock check, in both formats.
    policy = secrets;
    let policy_file = work.path().join("policy.toml");
    std::fs::write(&policy_file, &policy).expect("policy");
    let configs = work.path().join("configs.toml");
    std::fs::write(
        &configs,
        "[plugins.configured.config]\ntoken = { secret = \"api\" }\n",
    )
    .expect("configs");
    for format in ["table", "json"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock-cli"))
            .arg("check")
            .arg(dir.path())
            .args(["--policy", policy_file.to_str().expect("utf-8")])
            .args(["--config", configs.to_str().expect("utf-8")])
            .args(["--format", format])
            .output()
            .expect("the CLI runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(text.contains("pattern"), "{text}");
        leaks("airlock check output", &text);
    }
}

#[test]
fn airlock_check_config_leaves_the_operators_state_and_audit_log_alone() {
    let dir = TempPluginDir::with(&["configured", "probe", "deferring"]);
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("data");
    let audit = work.path().join("audit.jsonl");
    let policy = work.path().join("policy.toml");
    let text = format!(
        "[host]\ndata_dir = {data:?}\naudit_log = {audit:?}\n[plugins.probe]\ngrants = [\"kv\"]\n"
    );
    std::fs::write(&policy, &text).expect("policy");
    // The state: a kv value and an open pending answer.
    {
        let (host, report) = dir.load(&text);
        assert!(report.all_ok(), "{report:#?}");
        assert!(matches!(
            host.call("probe", "kv_set")
                .json(&json!({"key": "k", "value": 1})),
            Ok(Reply::Ok(_))
        ));
        let ada = airlock::Principal::new("ada", &["ops"]);
        let asked = host
            .call("deferring", "ask")
            .as_principal(&ada)
            .json(&json!({"key": "sign", "description": "waits"}));
        assert!(matches!(asked, Ok(Reply::Pending { .. })), "{asked:?}");
        host.shutdown();
    }
    let store = data.join("kv.redb");
    let before = (
        std::fs::read(&store).expect("the store"),
        std::fs::read(&audit).expect("audit"),
    );
    // A dry run under a policy whose bound has expired that answer.
    std::fs::write(
        &policy,
        text.replace("[host]\n", "[host]\npending_ttl_secs = 1\n"),
    )
    .expect("policy");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let configs = work.path().join("configs.toml");
    std::fs::write(&configs, "[plugins.configured.config]\nretries = 9\n").expect("configs");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock-cli"))
        .arg("check")
        .arg(dir.path())
        .arg("--policy")
        .arg(&policy)
        .arg("--config")
        .arg(&configs)
        .output()
        .expect("the CLI runs");
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("retries = 9 is many"), "{said}");
    let after = (
        std::fs::read(&store).expect("the store"),
        std::fs::read(&audit).expect("audit"),
    );
    assert!(before.0 == after.0, "the store was written");
    assert_eq!(
        String::from_utf8_lossy(&before.1),
        String::from_utf8_lossy(&after.1),
        "the audit log was written"
    );
}
