//! Schemas: they travel in the library's manifest and `airlock inspect` shows them from a file
//! never loaded; an input that does not fit is refused `bad_input` — the schema's path and
//! keyword in the message — before the plugin runs; a config that does not fit is refused at
//! stage 3.

use std::process::Command;
use std::time::{Duration, Instant};

use airlock::{CallErrorCode, RefusalReason};
use airlock_tests::{fixture, TempPluginDir};
use serde_json::{json, Value};

#[test]
fn inspect_shows_the_schemas_and_hints_of_a_file_never_loaded() {
    let tally = fixture("tally");
    let out = Command::new(env!("CARGO_BIN_EXE_airlock-cli"))
        .args(["inspect", "--format", "json"])
        .arg(&tally)
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    let inspected: Value = serde_json::from_slice(&out.stdout).expect("json");
    let count = &inspected["manifest"]["actions"][0];
    assert_eq!(count["name"], "count");
    assert_eq!(count["title"], "Count words");
    assert_eq!(count["read_only"], true);
    assert_eq!(count["input_schema"]["required"], json!(["text"]));
    assert_eq!(count["output_schema"]["title"], "Counted");
    assert_eq!(inspected["manifest"]["actions"][2]["destructive"], true);
    assert_eq!(
        inspected["manifest"]["config_schema"]["properties"]["delay_ms"]["type"],
        "integer"
    );
    let text = Command::new(env!("CARGO_BIN_EXE_airlock-cli"))
        .arg("inspect")
        .arg(&tally)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("action:       count - Counts the words")
            && text.contains("[title \"Count words\", read-only]"),
        "{text}"
    );
    assert!(
        text.contains("  input:      {\"type\":\"object\""),
        "{text}"
    );
    assert!(text.contains("config:       {"), "{text}");
}

#[test]
fn an_input_that_does_not_fit_is_refused_before_the_plugin_runs() {
    let dir = TempPluginDir::with(&["tally", "long-call"]);
    let trace = dir.path().join("trace");
    let data = dir.path().join("data");
    let (host, report) = dir.load(&format!(
        "[host]\ndata_dir = {data:?}\n[plugins.tally]\ngrants = [\"kv\"]\n\
         [plugins.long-call.config]\ntrace = {trace:?}\n"
    ));
    assert!(report.all_ok(), "{report:#?}");
    // `patient` would work 70 s (10 s, its call timeout): its schema allows at most 60000.
    let started = Instant::now();
    let err = host
        .call("long-call", "patient")
        .json(&json!(70_000))
        .expect_err("refused");
    assert_eq!(err.code, CallErrorCode::BadInput, "{err}");
    assert!(started.elapsed() < Duration::from_secs(2), "the plugin ran");
    assert!(err.message.contains("#/maximum"), "{err}");
    // The schema's own path into the input, and its keyword.
    let err = host
        .call("tally", "count")
        .json(&json!({"text": "a b", "top": "two"}))
        .expect_err("refused");
    assert_eq!(err.code, CallErrorCode::BadInput);
    assert!(
        err.message.contains("at /top") && err.message.contains("#/properties/top/type"),
        "{err}"
    );
    let err = host
        .call("tally", "count")
        .json(&json!({"text": "a", "colour": "red"}))
        .expect_err("refused");
    assert!(err.message.contains("additionalProperties"), "{err}");
    // Not a fault, and a fitting input is served.
    assert_eq!(host.plugin("tally").expect("loaded").stats.faults, 0);
    let answer = host
        .call("tally", "count")
        .json(&json!({"text": "a b a"}))
        .expect("served");
    assert!(
        matches!(answer, airlock::Reply::Ok(ref a) if a["words"] == 3),
        "{answer:?}"
    );
}

#[test]
fn a_config_that_does_not_fit_its_schema_is_refused_at_stage_3() {
    let dir = TempPluginDir::with(&["tally"]);
    let (_host, report) = dir.load("[plugins.tally.config]\ndelay_ms = \"slow\"\n");
    let tally = &report.plugins[0];
    assert_eq!(
        tally.reason,
        Some(RefusalReason::ConfigInvalid),
        "{tally:?}"
    );
    assert!(
        tally.detail.contains("at /delay_ms") && tally.detail.contains("[plugins.tally.config]"),
        "{}",
        tally.detail
    );
}
