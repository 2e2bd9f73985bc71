//! Every hook mode: order (load order, then the policy's priority), short-circuits, and what a
//! failing plugin does to each mode (skipped and reported; a guard fails closed).

use airlock::hooks::{GuardVerdict, HookError, HookMode};
use airlock::{CallErrorCode, Host};
use airlock_tests::TempPluginDir;

/// hook-a, hook-b and hook-c, with the behaviour of each in `behave` (TOML table bodies).
fn hookers(a: &str, b: &str, c: &str, extra: &str) -> (TempPluginDir, Host) {
    let dir = TempPluginDir::with(&["hook-a", "hook-b", "hook-c"]);
    let policy = format!(
        "{extra}\n[plugins.hook-a.config]\ntag = \"a\"\nbehave = {{ {a} }}\n\
         [plugins.hook-b.config]\ntag = \"b\"\nbehave = {{ {b} }}\n\
         [plugins.hook-c.config]\ntag = \"c\"\nbehave = {{ {c} }}\n"
    );
    let (host, report) = dir.load(&policy);
    assert!(report.all_ok(), "{report:#?}");
    for (hook, mode) in [
        ("t.chain", HookMode::Chain),
        ("t.intercept", HookMode::Intercept),
        ("t.guard", HookMode::Guard),
        ("t.filter", HookMode::Filter),
        ("t.collect", HookMode::Collect),
    ] {
        host.define_hook(hook, mode);
    }
    (dir, host)
}

fn faults(host: &Host, plugin: &str) -> u64 {
    host.plugin(plugin).expect("loaded").stats.faults
}

#[test]
fn chain_runs_in_load_order_and_priority_reorders_it() {
    let (_dir, host) = hookers("", "", "", "");
    let out = host
        .hooks()
        .chain("t.chain", "x".to_owned())
        .expect("dispatched");
    assert_eq!(out.value, "xabc");
    assert!(out.failures.is_empty() && out.swallowed.is_none());

    let (_dir, host) = hookers(
        "",
        "",
        "",
        "[plugins.hook-c]\npriority = -1\n[plugins.hook-a]\npriority = 5\n",
    );
    assert_eq!(
        host.hooks()
            .chain("t.chain", "x".to_owned())
            .expect("dispatched")
            .value,
        "xcba"
    );
}

#[test]
fn chain_skips_a_failing_plugin_and_reports_it() {
    let (_dir, host) = hookers("", r#""t.chain" = "panic""#, r#""t.chain" = "wrong""#, "");
    let out = host
        .hooks()
        .chain("t.chain", "x".to_owned())
        .expect("dispatched");
    assert_eq!(out.value, "xa");
    let failed: Vec<_> = out
        .failures
        .iter()
        .map(|f| (f.plugin.as_str(), f.code))
        .collect();
    assert_eq!(
        failed,
        [
            ("hook-b", CallErrorCode::Panicked),
            ("hook-c", CallErrorCode::HandlerError)
        ]
    );
    assert_eq!(faults(&host, "hook-b"), 1, "a panic is a fault");
    assert_eq!(faults(&host, "hook-c"), 0, "a wrong answer is not");
    // The host and the other plugins keep working.
    assert_eq!(
        host.hooks()
            .chain("t.chain", "y".to_owned())
            .expect("dispatched")
            .value,
        "ya"
    );
}

#[test]
fn intercept_stops_at_the_plugin_that_swallows() {
    let (_dir, host) = hookers(
        "",
        r#""t.intercept" = "swallow""#,
        r#""t.intercept" = "panic""#,
        "",
    );
    let out = host
        .hooks()
        .intercept("t.intercept", "x".to_owned())
        .expect("dispatched");
    let swallowed = out.swallowed.expect("swallowed");
    assert_eq!(
        (swallowed.plugin.as_str(), swallowed.reply.as_str()),
        ("hook-b", "b swallowed it")
    );
    assert_eq!(out.value, "xa", "the value as it was when swallowed");
    assert_eq!(faults(&host, "hook-c"), 0, "hook-c must not have run");
    // In a plain chain, swallowing is not allowed: skipped and reported.
    let (_dir, host) = hookers("", r#""t.chain" = "swallow""#, "", "");
    let out = host
        .hooks()
        .chain("t.chain", "x".to_owned())
        .expect("dispatched");
    assert_eq!(out.value, "xac");
    assert_eq!(out.failures[0].plugin, "hook-b");
}

#[test]
fn guard_short_circuits_on_the_first_block_and_fails_closed() {
    let allow = r#""t.guard" = "allow""#;
    let (_dir, host) = hookers(allow, allow, allow, "");
    assert_eq!(
        host.hooks()
            .guard("t.guard", &"x")
            .expect("dispatched")
            .verdict,
        GuardVerdict::Allowed
    );

    let (_dir, host) = hookers(
        allow,
        r#""t.guard" = "block""#,
        r#""t.guard" = "panic""#,
        "",
    );
    let out = host.hooks().guard("t.guard", &"x").expect("dispatched");
    assert_eq!(
        out.verdict,
        GuardVerdict::Blocked {
            plugin: "hook-b".into(),
            reason: "b blocks".into()
        }
    );
    assert_eq!(faults(&host, "hook-c"), 0, "hook-c must not have run");

    let (_dir, host) = hookers(r#""t.guard" = "error""#, allow, allow, "");
    let out = host.hooks().guard("t.guard", &"x").expect("dispatched");
    match out.verdict {
        GuardVerdict::Blocked { plugin, reason } => {
            assert_eq!(plugin, "hook-a");
            assert!(
                reason.contains("failed closed") && reason.contains("a fails"),
                "{reason}"
            );
        }
        GuardVerdict::Allowed => panic!("a failing guard let the input through"),
    }
    assert_eq!(out.failures.len(), 1);
}

#[test]
fn filter_intersects_and_skips_failures() {
    let (_dir, host) = hookers(
        r#""t.filter" = "drop:x""#,
        r#""t.filter" = "drop:z""#,
        r#""t.filter" = "panic""#,
        "",
    );
    let items: Vec<String> = ["x", "y", "z", "w"].map(String::from).to_vec();
    let out = host.hooks().filter("t.filter", items).expect("dispatched");
    assert_eq!(out.items, ["y", "w"]);
    assert_eq!(out.failures.len(), 1);
    assert_eq!(out.failures[0].plugin, "hook-c");
}

#[test]
fn collect_gathers_every_result_in_order_and_skips_failures() {
    let tag = r#""t.collect" = "tag""#;
    let (_dir, host) = hookers(tag, r#""t.collect" = "error""#, tag, "");
    let out = host
        .hooks()
        .collect::<_, String>("t.collect", &"x")
        .expect("dispatched");
    let results: Vec<(&str, &str)> = out
        .results
        .iter()
        .map(|(p, v)| (p.as_str(), v.as_str()))
        .collect();
    assert_eq!(results, [("hook-a", "a"), ("hook-c", "c")]);
    assert_eq!(out.failures[0].plugin, "hook-b");
}

#[test]
fn undefined_hooks_and_wrong_modes_are_errors() {
    let (_dir, host) = hookers("", "", "", "");
    assert_eq!(
        host.hooks().chain("t.nothing", 1).expect_err("undefined"),
        HookError::Undefined("t.nothing".into())
    );
    assert!(matches!(
        host.hooks().guard("t.chain", &1),
        Err(HookError::WrongMode { .. })
    ));
}

#[test]
fn disabled_and_quarantined_plugins_leave_the_hook() {
    let (_dir, host) = hookers("", "", "", "[plugins.hook-b]\nquarantine_faults = 1\n");
    host.disable("hook-a").expect("disable");
    let _ = host.call("hook-b", "boom").json(&serde_json::Value::Null);
    let out = host
        .hooks()
        .chain("t.chain", "x".to_owned())
        .expect("dispatched");
    assert_eq!(out.value, "xc");
    assert_eq!(out.failures.len(), 1);
    assert_eq!(out.failures[0].code, CallErrorCode::Quarantined);
}
