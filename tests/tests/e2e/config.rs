//! Config: validated by the plugin before creation and before a change; applied live when the
//! plugin takes it, otherwise the plugin is re-created with it.

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
