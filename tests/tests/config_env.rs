//! Config references resolved from the environment at load and again at a restart, with the
//! schema's defaults filled in, and the secret never in what the host shows or writes. It sets
//! an environment variable (process-wide), so it has a binary of its own.

use airlock::Reply;
use airlock_tests::TempPluginDir;
use serde_json::json;

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
fn env_and_secret_references_resolve_with_defaults_and_again_at_a_restart() {
    const VAR: &str = "AIRLOCK_TEST_CONFIG_ENDPOINT";
    std::env::set_var(VAR, "https://one.example.test");
    let dir = TempPluginDir::with(&["configured"]);
    let work = tempfile::tempdir().expect("tempdir");
    let audit = work.path().join("audit.jsonl");
    let (host, report) = dir.load(&referencing_policy(&audit, VAR, "secrets:api"));
    assert!(report.all_ok(), "{report:#?}");
    // The plugin is given the values, and the schema's defaults (nested ones too).
    assert_eq!(
        shown_config(&host),
        json!({
            "endpoint": "https://one.example.test",
            "token": SECRET,
            "retries": 3,
            "http": { "timeout_ms": 500 },
        })
    );
    // A restart resolves the references again: the variable's new value is taken.
    std::env::set_var(VAR, "https://two.example.test");
    let written = json!({
        "endpoint": { "env": VAR },
        "token": { "secret": "api" },
        "retries": 9,
    });
    let applied = host.set_config("configured", written).expect("accepted");
    assert!(!applied.live);
    assert_eq!(applied.warnings, ["retries = 9 is many"]);
    let config = shown_config(&host);
    assert_eq!(config["endpoint"], "https://two.example.test");
    assert_eq!(config["token"], SECRET);
    assert_eq!(config["http"]["timeout_ms"], 500);
    // Nothing the host shows or writes holds the secret.
    let info = format!("{:?}", host.plugin("configured").expect("loaded"));
    let shown = format!("{report:?}{}", report.to_json());
    drop(host);
    let audit = std::fs::read_to_string(&audit).unwrap_or_default();
    for (what, text) in [("info", &info), ("report", &shown), ("audit", &audit)] {
        assert!(
            !text.contains(SECRET),
            "the secret is in the {what}: {text}"
        );
    }
}

#[test]
fn an_env_reference_to_a_variable_behind_a_secret_is_refused_and_an_unrelated_one_works() {
    const KV: &str = "AIRLOCK_TEST_CONFIG_KV_2026";
    const TOKEN: &str = "AIRLOCK_TEST_CONFIG_API_TOKEN";
    const PLAIN: &str = "AIRLOCK_TEST_CONFIG_PLAIN";
    let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    std::env::set_var(KV, key);
    std::env::set_var(TOKEN, "tok-credential-0099");
    std::env::set_var(PLAIN, "https://plain.example.test");
    let dir = TempPluginDir::with(&["configured", "hello"]);
    let policy = |var: &str| {
        format!(
            "[secrets]\nkv-2026 = {{ env = {KV:?}, kind = \"storage_key\" }}\n\
             api = {{ env = {TOKEN:?}, header = \"Authorization\", hosts = [\"api.test\"] }}\n\
             [plugins.configured]\ngrants = [\"secrets:*\"]\n\
             [plugins.configured.config]\nendpoint = {{ env = {var:?} }}\n"
        )
    };
    for (var, secret, value) in [(KV, "kv-2026", key), (TOKEN, "api", "tok-credential-0099")] {
        let (host, report) = dir.load(&policy(var));
        let refused: Vec<_> = report.refused().collect();
        assert_eq!(refused.len(), 1, "{report:#?}");
        assert_eq!(refused[0].id.as_deref(), Some("configured"));
        assert_eq!(refused[0].reason.map(|r| r.code()), Some("config_invalid"));
        let wanted = format!(
            "plugins.configured.config.endpoint: {{ env = {var:?} }}: the environment variable \
             {var} backs the [secrets] entry {secret}"
        );
        assert!(
            refused[0].detail.contains(&wanted) && !refused[0].detail.contains(value),
            "{}",
            refused[0].detail
        );
        assert!(host.plugin("hello").is_some(), "the others load");
    }
    // An unrelated variable is given; a config set at run time is held to the same rule.
    let (host, report) = dir.load(&policy(PLAIN));
    assert!(report.all_ok(), "{report:#?}");
    assert_eq!(
        shown_config(&host)["endpoint"],
        "https://plain.example.test"
    );
    let err = host
        .set_config("configured", json!({ "endpoint": { "env": KV } }))
        .expect_err("refused");
    assert!(
        err.to_string()
            .contains("backs the [secrets] entry kv-2026")
            && !err.to_string().contains(key),
        "{err}"
    );
    assert_eq!(
        shown_config(&host)["endpoint"],
        "https://plain.example.test",
        "the config in force is kept"
    );
}
