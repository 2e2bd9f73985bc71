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
    // The schema rejects it (its pattern), then the plugin does (repeating it).
    for value in ["5ecret-schema-breaking", "tok-5ecret-now-revoked"] {
        let policy = referencing_policy(&audit, "PATH", "secrets:api").replace(SECRET, value);
        let (_host, report) = dir.load(&policy);
        let refused = report.refused().next().expect("refused");
        assert_eq!(refused.reason.map(|r| r.code()), Some("config_invalid"));
        assert!(
            refused.detail.contains("<hidden>") && !refused.detail.contains(value),
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
