//! Hostile plugins: odd panic payloads, a thread that outlives teardown and keeps calling its
//! context, a flood of denied calls, and a raw export that panics without the macro.

use std::time::Duration;

use airlock::services::{AuditOutcome, AuditRecord};
use airlock::CallErrorCode;
use airlock_tests::{fixture, TempPluginDir};
use serde_json::{json, Value};

#[test]
fn a_non_string_panic_payload_is_contained_too() {
    let dir = TempPluginDir::with(&["panicker"]);
    let (host, _) = dir.load(
        "[plugins.panicker]\ngrants = [\"events.subscribe:panic.*\", \"timers\"]\n[plugins.panicker.config]\npanic_in = \"action\"\npayload = \"int\"\n",
    );
    let err = host
        .call("panicker", "ping")
        .json(&Value::Null)
        .expect_err("panics");
    assert_eq!(err.code, CallErrorCode::Panicked);
    assert!(
        err.message.contains("non-string payload"),
        "{}",
        err.message
    );
}

#[test]
fn a_thread_that_outlives_teardown_only_ever_sees_revoked() {
    let dir = TempPluginDir::with(&["stale-caller"]);
    let trace = tempfile::NamedTempFile::new().expect("trace");
    let read = || std::fs::read_to_string(trace.path()).unwrap_or_default();
    let (host, _) = dir.load(&format!(
        "[plugins.stale-caller.config]\ntrace = {:?}\n",
        trace.path()
    ));
    let started = std::time::Instant::now();
    while read().lines().filter(|l| *l == "ok").count() < 5 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the thread never called"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    host.shutdown();
    let at_shutdown = read().lines().count();
    std::thread::sleep(Duration::from_millis(100));
    let text = read();
    let after: Vec<&str> = text.lines().skip(at_shutdown + 1).collect();
    assert!(
        after.len() >= 10,
        "the thread stopped calling: {} lines",
        after.len()
    );
    assert!(
        after.iter().all(|l| *l == "revoked"),
        "a call after teardown was not revoked: {after:?}"
    );
}

#[test]
fn a_flood_of_denied_calls_keeps_memory_bounded_and_every_record_accounted_for() {
    let dir = TempPluginDir::with(&["probe-bare"]);
    let work = tempfile::tempdir().expect("tempdir");
    let audit = work.path().join("audit.jsonl");
    let (host, _) = dir.load(&format!(
        "[host]\ndata_dir = {:?}\naudit_log = {audit:?}\n",
        work.path()
    ));
    const FLOOD: u64 = 50_000;
    assert_eq!(
        host.call("probe-bare", "flood")
            .json(&json!(FLOOD))
            .expect("call"),
        airlock::Reply::Ok(FLOOD.into())
    );
    assert_eq!(
        host.audit().tail(usize::MAX).len(),
        airlock::services::AUDIT_RING,
        "the in-memory tail is bounded"
    );
    drop(host);
    let text = std::fs::read_to_string(&audit).expect("audit log");
    let records: Vec<AuditRecord> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a record"))
        .collect();
    let denied = records
        .iter()
        .filter(|r| r.outcome == AuditOutcome::Denied)
        .count() as u64;
    let dropped: u64 = records.iter().filter_map(AuditRecord::dropped_count).sum();
    eprintln!("audit flood: {FLOOD} denials, {denied} written, {dropped} dropped and counted");
    assert_eq!(denied + dropped, FLOOD);
}

#[test]
fn a_raw_export_that_panics_aborts_its_process_which_is_why_the_macro_is_required() {
    // Loaded and called outside Airlock, in a child process: there is no catch_unwind around a
    // hand-written export, and a panic cannot unwind through `extern "C"`.
    let library = fixture("raw-panic");
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import ctypes, sys; ctypes.CDLL(sys.argv[1]).raw_panic()",
        ])
        .arg(&library)
        .output()
        .expect("python3 runs (it ships with this machine image)");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(6),
        "the process must abort (SIGABRT): {:?}",
        out.status
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("panic in a function that cannot unwind"),
        "{stderr}"
    );
}
