//! The host's register-returning function table, through a real plugin: its answers equal the
//! frozen slots' (in the same host, and in an isolated plugin's worker, which refuses the table
//! like an older host), hostile bytes get clear errors and no panic, a capability missed through
//! it is audited once, revocation holds for the plugin's own threads, and an operation's
//! encoding is the contract's.

use std::time::{Duration, Instant};

use airlock::{Host, Reply};
use airlock_abi::abi::HostErrorCode;
use airlock_tests::TempPluginDir;
use serde_json::{json, Value};

/// The plugin's grants: everything it declares but `service:probe.fail`.
const GRANTS: &str = "grants = [\"kv\", \"service:probe.ping\", \"service:probe.echo\", \
                      \"service:probe.echo_binary\"]";

fn host(dir: &TempPluginDir, data: &std::path::Path, extra: &str) -> Host {
    let policy = format!(
        "[host]\ndata_dir = {kv:?}\naudit_log = {audit:?}\n\n[plugins.callbacks]\n{GRANTS}\n{extra}\n",
        kv = data.join("kv"),
        audit = data.join("audit.jsonl"),
    );
    let (host, report) = dir.load(&policy);
    assert!(report.all_ok(), "{report:#?}");
    host
}

fn call(host: &Host, action: &str, input: &Value) -> Value {
    match host.call("callbacks", action).json(input).expect("answers") {
        Reply::Ok(v) => v,
        other => panic!("{action}: {other:?}"),
    }
}

/// The answers without the path they took, and without `echo_binary` (which the frozen slots
/// send as JSON, whatever the contract says).
fn comparable(mut answers: Value) -> Value {
    let map = answers.as_object_mut().expect("an object");
    map.remove("path");
    map.remove("echo_binary");
    answers
}

#[test]
fn the_table_and_the_frozen_slots_answer_alike_in_process_and_in_a_worker() {
    let dir = TempPluginDir::with(&["callbacks"]);
    let data = tempfile::tempdir().expect("tempdir");
    let in_process = host(&dir, data.path(), "");
    let table = call(&in_process, "answers", &json!(false));
    assert_eq!(table["path"], "table", "{table:#}");
    let frozen = call(&in_process, "answers", &json!(true));
    assert_eq!(frozen["path"], "frozen");
    assert_eq!(comparable(table.clone()), comparable(frozen));
    // What the answers are, so that equal answers are not equally wrong.
    assert_eq!(table["kv_get"], json!({"ok": {"n": 1}}));
    assert_eq!(table["kv_missing"], json!({"ok": null}));
    assert_eq!(table["kv_scoped_get"], json!({"ok": "in scope"}));
    assert_eq!(
        table["ping"],
        json!({"ok": "pong to callbacks (generation 1): hi ✓"})
    );
    assert_eq!(
        table["echo"],
        json!({"ok": {"a": [1, 2.5, {"b": null}], "s": "text ✓"}})
    );
    assert_eq!(table["log"], json!({"ok": null}));
    for (key, fragment) in [
        ("kv_wrong_type", "invalid type"),
        ("kv_bad_scope", "kind"),
        ("fail", "service:probe.fail"),
        ("publish_denied", "events.publish:demo.topic"),
        ("unknown", "no operation \"here\" on service \"nothing\""),
    ] {
        let error = table[key]["error"].as_str().unwrap_or_default();
        assert!(error.contains(fragment), "{key}: {:#}", table[key]);
    }
    drop(in_process);

    // An isolated plugin's worker refuses the table, as a host that predates it would.
    let data = tempfile::tempdir().expect("tempdir");
    let isolated = host(
        &dir,
        data.path(),
        "isolation = \"process\"\nsandbox = false",
    );
    let worker = call(&isolated, "answers", &json!(false));
    assert_eq!(worker["path"], "frozen", "{worker:#}");
    assert_eq!(comparable(worker), comparable(table));
}

#[test]
fn an_operation_crosses_in_the_encoding_its_contract_declares() {
    let dir = TempPluginDir::with(&["callbacks"]);
    let data = tempfile::tempdir().expect("tempdir");
    let host = host(&dir, data.path(), "");
    let table = call(&host, "answers", &json!(false));
    // `echo` is declared JSON and takes any value; `ping` is postcard (the default).
    assert!(table["echo"]["ok"].is_object(), "{:#}", table["echo"]);
    assert!(table["ping"]["ok"].is_string(), "{:#}", table["ping"]);
    // `echo_binary` leaves a `serde_json::Value` to postcard, which cannot read it: the
    // message says what to do.
    let error = table["echo_binary"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("declare the operation `json`") && error.contains("probe.echo_binary"),
        "{error}"
    );
    // Through the frozen slots it crosses as JSON, which reads any value.
    let frozen = call(&host, "answers", &json!(true));
    assert_eq!(frozen["echo_binary"], table["echo"]);
}

#[test]
fn hostile_bytes_through_the_table_get_clear_errors_and_the_plugin_serves_on() {
    let dir = TempPluginDir::with(&["callbacks"]);
    let data = tempfile::tempdir().expect("tempdir");
    let host = host(&dir, data.path(), "");
    let answers = call(&host, "hostile", &Value::Null);
    let expect = |case: &str, code: HostErrorCode, fragment: &str| {
        let got = &answers[case];
        assert_eq!(got["code"], json!(code.0), "{case}: {got:#}");
        let text = got["text"].as_str().unwrap_or_default();
        assert!(text.contains(fragment), "{case}: {got:#}");
    };
    expect(
        "kv_key_not_text",
        HostErrorCode::BAD_REQUEST,
        "the key is not valid UTF-8",
    );
    expect(
        "kv_scope_not_text",
        HostErrorCode::BAD_REQUEST,
        "the scope kind is not valid UTF-8",
    );
    expect("kv_huge_key", HostErrorCode::BAD_REQUEST, "key");
    expect(
        "service_malformed",
        HostErrorCode::BAD_REQUEST,
        "the input of probe.ping (version 1) does not fit",
    );
    expect(
        "service_malformed_json",
        HostErrorCode::BAD_REQUEST,
        "the input of probe.ping (version 1) does not fit",
    );
    expect(
        "service_wrong_shape",
        HostErrorCode::BAD_REQUEST,
        "another shape than airlock_contract_probe::PingInput",
    );
    expect(
        "service_unknown_encoding",
        HostErrorCode::BAD_REQUEST,
        "unknown encoding 7",
    );
    expect(
        "service_other_version",
        HostErrorCode::UNSUPPORTED,
        "version 99",
    );
    expect(
        "service_long_name",
        HostErrorCode::UNSUPPORTED,
        "no operation",
    );
    expect(
        "service_not_text",
        HostErrorCode::UNSUPPORTED,
        "no operation",
    );
    expect(
        "request_not_text",
        HostErrorCode::BAD_REQUEST,
        "the operation name is not valid UTF-8",
    );
    expect("log_not_text", HostErrorCode::OK, "");
    // 8 MiB in, the whole answer back.
    assert_eq!(answers["service_big_answer_code"], json!(0));
    assert!(
        answers["service_big_answer_len"].as_u64() > Some(8 << 20),
        "{:#}",
        answers["service_big_answer_len"]
    );
    let after = call(&host, "answers", &json!(false));
    assert_eq!(after["kv_get"], json!({"ok": {"n": 1}}));
    assert_eq!(host.plugin("callbacks").expect("loaded").stats.faults, 0);
}

#[test]
fn a_capability_missed_through_the_table_is_audited_once() {
    let dir = TempPluginDir::with(&["callbacks"]);
    let data = tempfile::tempdir().expect("tempdir");
    let host = host(&dir, data.path(), "");
    let table = call(&host, "answers", &json!(false));
    assert_eq!(table["path"], "table");
    drop(host);
    let audit = std::fs::read_to_string(data.path().join("audit.jsonl")).unwrap_or_default();
    for capability in ["service:probe.fail", "events.publish:demo.topic"] {
        let records: Vec<Value> = audit
            .lines()
            .map(|l| serde_json::from_str(l).expect("a record"))
            .filter(|r: &Value| r["capability"] == capability)
            .collect();
        assert_eq!(records.len(), 1, "{capability}: {records:#?}");
        assert_eq!(records[0]["outcome"], "denied", "{capability}");
    }
}

#[test]
fn revocation_holds_for_every_function_of_the_table_from_the_plugins_own_thread() {
    let dir = TempPluginDir::with(&["callbacks"]);
    let data = tempfile::tempdir().expect("tempdir");
    let host = host(&dir, data.path(), "");
    let report = data.path().join("revoked.json");
    call(&host, "watch_revocation", &json!(report));
    // The thread calls back while the plugin is loaded; then its context is revoked under it.
    std::thread::sleep(Duration::from_millis(20));
    host.disable("callbacks").expect("disabled");
    let deadline = Instant::now() + Duration::from_secs(30);
    let written = loop {
        if let Ok(text) = std::fs::read_to_string(&report) {
            if !text.is_empty() {
                break text;
            }
        }
        assert!(Instant::now() < deadline, "the plugin's thread never wrote");
        std::thread::sleep(Duration::from_millis(5));
    };
    let codes: Value = serde_json::from_str(&written).unwrap_or_else(|_| panic!("{written}"));
    for function in ["log_trace", "log_error", "kv_get", "service", "request"] {
        assert_eq!(
            codes[function],
            json!(HostErrorCode::REVOKED.0),
            "{function}: {codes:#}"
        );
    }
    assert_eq!(codes["typed"], json!([true, true, true, true]), "{codes:#}");
}
