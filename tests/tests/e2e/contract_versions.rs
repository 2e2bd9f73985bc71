//! A plugin built against another version of an interface crate than its host. The host is
//! this test binary, built against `airlock-contract-probe`; the `probe-next` fixture is built
//! against `airlock-contract-probe-next`, where `probe.ping` changed three ways (see that
//! crate). Each mismatch reaches the plugin as a clean error: nothing is misread, nothing
//! panics, no denial is recorded (a mismatch is not a capability miss), and the host goes on
//! serving the plugins built against its own version.

use airlock::plugins::PluginState;
use airlock::{Host, Reply};
use airlock_tests::TempPluginDir;
use serde_json::{json, Value};

const POLICY: &str = "[plugins.probe]\ngrants = [\"service:probe.*\"]\n\
                      [plugins.probe-next]\ngrants = [\"service:probe.*\"]\n";

/// A host offering the probe service (version 1), with `probe` and `probe-next` loaded.
fn host() -> (TempPluginDir, Host) {
    let dir = TempPluginDir::with(&["probe", "probe-next"]);
    let (host, report) = dir.load(POLICY);
    assert!(report.all_ok(), "{report:#?}");
    (dir, host)
}

/// What `probe-next` got back from the mismatched call `which`.
fn mismatched(host: &Host, which: &str) -> Value {
    match host.call("probe-next", "call").json(&json!(which)) {
        Ok(Reply::Ok(v)) => v,
        other => panic!("probe-next did not report: {other:?}"),
    }
}

/// The host still serves a well-formed call, both plugins run without a fault or a denial, and
/// the audit log has nothing about the mismatch.
fn still_serving(host: &Host) {
    let answer = match host.call("probe", "service").json(&json!("ping")) {
        Ok(Reply::Ok(v)) => v,
        other => panic!("the probe was not served: {other:?}"),
    };
    assert_eq!(answer["outcome"], "allowed", "{answer}");
    assert_eq!(answer["answer"], "pong to probe (generation 1): hi");
    for id in ["probe", "probe-next"] {
        let info = host.plugin(id).expect("loaded");
        assert_eq!(info.state, PluginState::Running, "{id}");
        assert_eq!(info.stats.faults, 0, "{id}: {:?}", info.stats);
        assert_eq!(info.stats.denials, 0, "{id}: {:?}", info.stats);
    }
    let records = host.audit().tail(usize::MAX);
    assert!(records.is_empty(), "{records:#?}");
}

#[test]
fn a_bumped_version_is_refused_naming_both_versions_and_the_fix() {
    let (_dir, host) = host();
    // Version 2's input decodes into version 1's (the new field would be ignored): only the
    // version stops the host from misreading it.
    let got = mismatched(&host, "ping_v2");
    assert_eq!(got["kind"], "unsupported", "{got}");
    let message = got["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("probe.ping: "), "{message}");
    assert!(
        message.contains("built against version 2") && message.contains("offers version 1"),
        "{message}"
    );
    assert!(
        message.contains("build the plugin against the host's interface crate"),
        "{message}"
    );
    still_serving(&host);
}

#[test]
fn an_input_changed_without_a_version_bump_is_a_bad_request() {
    let (_dir, host) = host();
    let got = mismatched(&host, "wrong_input");
    assert_eq!(got["kind"], "bad_request", "{got}");
    let message = got["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("the input of probe.ping (version 1) does not fit the host's contract"),
        "{message}"
    );
    // The operation crosses as postcard, which writes no field names: the value's shape
    // (its field renamed) is what differs, and the message names the host's type.
    assert!(
        message.contains("another shape than airlock_contract_probe::PingInput"),
        "{message}"
    );
    assert!(
        message.contains("built against another version of the interface crate"),
        "{message}"
    );
    still_serving(&host);
}

#[test]
fn an_output_changed_without_a_version_bump_is_a_decode_error_in_the_plugin() {
    let (_dir, host) = host();
    let got = mismatched(&host, "wrong_output");
    assert_eq!(got["kind"], "decode", "{got}");
    // The host served the call; its answer, a string, is not the number the plugin expects.
    let message = got["message"].as_str().unwrap_or_default();
    // postcard would read the string's length as the number: its shape is what refuses it.
    assert!(
        message.contains("the answer of probe.ping@1 does not fit this plugin's contract")
            && message.contains("another shape than u64"),
        "{message}"
    );
    still_serving(&host);
}

#[test]
fn every_mismatch_in_a_row_leaves_the_host_serving() {
    let (_dir, host) = host();
    let kinds: Vec<_> = ["ping_v2", "wrong_input", "wrong_output", "ping_v2"]
        .into_iter()
        .map(|which| mismatched(&host, which)["kind"].clone())
        .collect();
    assert_eq!(
        kinds,
        ["unsupported", "bad_request", "decode", "unsupported"]
    );
    // Each call reached the host, and the plugin goes on calling it.
    let info = host.plugin("probe-next").expect("loaded");
    // (And once, when it was created, for the host's function table.)
    assert_eq!(info.stats.host_calls, 5, "{:?}", info.stats);
    still_serving(&host);
}
