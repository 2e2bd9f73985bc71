//! Hot reload, in a test binary of its own: a rebuilt plugin replaces the running one, calls
//! keep flowing, state is carried across, and a broken build never takes a working one down.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use airlock::plugins::ReloadOutcome;
use airlock::{Host, Reply};
use airlock_tests::{set_mode, versioned_build, TempPluginDir};
use serde_json::Value;

const POLICY: &str = "[plugins.versioned]\ngrants = [\"events.subscribe:reload.*\", \"timers\"]\n";

fn lib_name() -> String {
    TempPluginDir::lib_name("versioned")
}

/// Puts `variant` into `dir` the way a build does: written beside, then renamed over.
fn install(dir: &Path, variant: &str) {
    let staging = dir.join(".staging");
    std::fs::copy(versioned_build(variant), &staging).expect("copy");
    set_mode(&staging, 0o755);
    std::fs::rename(&staging, dir.join(lib_name())).expect("rename");
}

fn ok(host: &Host, action: &str) -> Value {
    match host
        .call("versioned", action)
        .json(&Value::Null)
        .expect("the call succeeds")
    {
        Reply::Ok(v) => v,
        other => panic!("{other:?}"),
    }
}

fn load(dir: &TempPluginDir) -> Host {
    let (host, report) = dir.load(POLICY);
    assert!(report.all_ok(), "{report:#?}");
    host
}

fn next_outcome(rx: &mpsc::Receiver<ReloadOutcome>) -> ReloadOutcome {
    rx.recv_timeout(Duration::from_secs(20))
        .expect("a reload outcome")
}

#[test]
fn a_rebuilt_library_is_served_after_the_debounce_with_its_state_carried() {
    let dir = TempPluginDir::new();
    install(dir.path(), "1");
    let host = load(&dir);
    let (tx, rx) = mpsc::channel();
    let debounce = Duration::from_millis(100);
    let _watcher = host.watch(debounce, move |o| {
        let _ = tx.send(o.clone());
    });
    assert_eq!(ok(&host, "version"), "1");
    for expected in 1..=3 {
        assert_eq!(ok(&host, "count"), expected);
    }
    let installed = Instant::now();
    install(dir.path(), "2");
    match next_outcome(&rx) {
        ReloadOutcome::Loaded { generation, .. } => assert_eq!(generation, 2),
        other => panic!("{other}"),
    }
    let served_after = installed.elapsed();
    assert_eq!(ok(&host, "version"), "2");
    assert!(
        served_after < debounce + Duration::from_secs(5),
        "served after {served_after:?}"
    );
    assert_eq!(
        ok(&host, "count"),
        4,
        "the count was handed across the reload"
    );
    let info = host.plugin("versioned").expect("loaded");
    assert_eq!(
        (info.generation, info.stats.subscriptions, info.stats.timers),
        (2, 1, 1)
    );
    eprintln!(
        "reload served {:?} after the new file was in place (debounce {debounce:?})",
        served_after
    );
}

#[test]
fn a_forced_reload_of_unchanged_bytes_is_a_new_generation_with_fresh_statics() {
    let dir = TempPluginDir::new();
    install(dir.path(), "1");
    let host = load(&dir);
    assert_eq!(ok(&host, "statics"), 1);
    assert!(matches!(
        host.reload_file(&dir.path().join(lib_name())),
        ReloadOutcome::Unchanged { .. }
    ));
    for generation in 2..=4 {
        match host.reload("versioned").expect("known plugin") {
            ReloadOutcome::Loaded { generation: g, .. } => assert_eq!(g, generation),
            other => panic!("{other}"),
        }
        assert_eq!(ok(&host, "statics"), 1, "a cached library would count 2");
    }
}

#[test]
fn a_reload_is_skipped_when_the_blake3_of_the_new_file_is_unchanged() {
    let dir = TempPluginDir::new();
    install(dir.path(), "1");
    let host = load(&dir);
    let path = dir.path().join(lib_name());
    let identity = |path: &Path| blake3::hash(&std::fs::read(path).expect("read")).to_hex();
    let first = identity(&path);
    assert_eq!(
        host.plugin("versioned").expect("loaded").blake3,
        first.as_str()
    );
    // The same bytes written again as a new file (new inode, new times): nothing to do.
    install(dir.path(), "1");
    assert!(matches!(
        host.reload_file(&path),
        ReloadOutcome::Unchanged { .. }
    ));
    assert_eq!(host.plugin("versioned").expect("loaded").generation, 1);
    // Other bytes: a new generation, reporting the new file's BLAKE3.
    install(dir.path(), "2");
    assert!(matches!(
        host.reload_file(&path),
        ReloadOutcome::Loaded { generation: 2, .. }
    ));
    let info = host.plugin("versioned").expect("loaded");
    assert_eq!(info.blake3, identity(&path).as_str());
    assert_ne!(info.blake3, first.as_str());
}

#[test]
fn broken_builds_leave_the_old_generation_serving() {
    let dir = TempPluginDir::new();
    install(dir.path(), "1");
    let host = load(&dir);
    let (tx, rx) = mpsc::channel();
    let _watcher = host.watch(Duration::from_millis(100), move |o| {
        let _ = tx.send(o.clone());
    });
    let expect_refused = |reason: &str, rx: &mpsc::Receiver<ReloadOutcome>| match next_outcome(rx) {
        ReloadOutcome::Refused { refusal, serving } => {
            assert_eq!(refusal.reason.code(), reason);
            assert_eq!(serving, Some(1), "{refusal}");
        }
        other => panic!("expected {reason}, got {other}"),
    };
    install(dir.path(), "panic");
    expect_refused("init_panicked", &rx);
    assert_eq!(ok(&host, "version"), "1");

    install(dir.path(), "abi9");
    expect_refused("abi_incompatible", &rx);
    assert_eq!(ok(&host, "version"), "1");

    let bytes = std::fs::read(versioned_build("2")).expect("v2");
    let staging = dir.path().join(".staging");
    std::fs::write(&staging, &bytes[..bytes.len() / 2]).expect("write");
    std::fs::rename(&staging, dir.path().join(lib_name())).expect("rename");
    expect_refused("truncated", &rx);
    assert_eq!(ok(&host, "version"), "1");

    // A file written in two halves within the debounce is only ever loaded whole.
    let target = dir.path().join(lib_name());
    std::fs::write(&target, &bytes[..bytes.len() / 3]).expect("first part");
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&target, &bytes).expect("the rest");
    match next_outcome(&rx) {
        ReloadOutcome::Loaded { .. } => {}
        other => panic!("the half-written file reached the loader: {other}"),
    }
    assert_eq!(ok(&host, "version"), "2");
    let refused = host
        .audit()
        .tail(100)
        .iter()
        .filter(|r| r.outcome == airlock::services::AuditOutcome::ReloadRefused)
        .count();
    assert_eq!(refused, 3, "each refused reload is in the audit log");
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[test]
fn two_threads_keep_calling_through_two_hundred_swaps() {
    // 200 in the normal run; scripts/reliability.sh sets AIRLOCK_RELOAD_SWAPS=1000.
    let swaps: u64 = std::env::var("AIRLOCK_RELOAD_SWAPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let dir = TempPluginDir::new();
    install(dir.path(), "1");
    let host = load(&dir);
    let path = dir.path().join(lib_name());
    let (fds_before, rss_before, retained_before) =
        (open_fds(), rss_bytes(), airlock::plugins::retained());
    let done = AtomicBool::new(false);
    let calls = AtomicU64::new(0);
    let started = Instant::now();
    // One thread calls by name, the other through one pre-resolved handle, which must follow
    // every swap (resolving the action again on the new generation).
    let handle = host.action("versioned", "version").expect("resolved");
    std::thread::scope(|s| {
        for by_handle in [false, true] {
            let (handle, done, calls, host) = (&handle, &done, &calls, &host);
            s.spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    let answer = if by_handle {
                        handle.call().json(&Value::Null)
                    } else {
                        host.call("versioned", "version").json(&Value::Null)
                    };
                    match answer {
                        Ok(Reply::Ok(v)) => assert!(v == "1" || v == "2", "{v}"),
                        other => panic!("a call failed during the swaps: {other:?}"),
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let mut last_generation = 1;
        for i in 0..swaps {
            install(dir.path(), if i % 2 == 0 { "2" } else { "1" });
            match host.reload_file(&path) {
                ReloadOutcome::Loaded { generation, .. } => {
                    assert!(
                        generation > last_generation,
                        "generations must strictly increase"
                    );
                    last_generation = generation;
                }
                other => panic!("swap {i}: {other}"),
            }
        }
        done.store(true, Ordering::Relaxed);
    });
    let elapsed = started.elapsed();
    // The handle now serves the last build installed.
    let last = if swaps.is_multiple_of(2) { "1" } else { "2" };
    assert_eq!(
        handle.call().json(&Value::Null).expect("call"),
        Reply::Ok(last.into())
    );
    let info = host.plugin("versioned").expect("loaded");
    assert_eq!(info.generation, swaps + 1);
    assert_eq!(
        (info.stats.subscriptions, info.stats.timers),
        (1, 1),
        "subscriptions or timers doubled"
    );
    assert_eq!(
        host.publish("reload.check", &Value::Null),
        1,
        "exactly one subscription receives"
    );
    let (retained, retained_bytes) = airlock::plugins::retained();
    let retained_added = retained - retained_before.0;
    let retained_bytes_added = (retained_bytes - retained_before.1) as u64;
    let rss_growth = rss_bytes().saturating_sub(rss_before);
    let fds_after = open_fds();
    eprintln!(
        "{swaps} swaps in {elapsed:?} ({:.2} ms each) with {} calls from 2 threads, 0 failed; \
         fds {fds_before} -> {fds_after}; RSS +{:.1} MB for {retained_added} retained libraries \
         ({:.1} MB of files, {:.0} KB RSS each)",
        elapsed.as_secs_f64() * 1e3 / swaps as f64,
        calls.load(Ordering::Relaxed),
        rss_growth as f64 / 1e6,
        retained_bytes_added as f64 / 1e6,
        rss_growth as f64 / 1e3 / retained_added as f64,
    );
    assert!(
        retained_added as u64 >= swaps,
        "every generation is retained"
    );
    assert!(
        fds_after <= fds_before + 8,
        "file descriptors leak: {fds_before} -> {fds_after}"
    );
    assert!(
        rss_growth <= retained_bytes_added + 64 * 1024 * 1024,
        "RSS grew by {rss_growth} bytes, more than the {retained_bytes_added} bytes of retained libraries account for"
    );
}

#[test]
fn the_console_announces_reloads_and_refusals_and_serves_the_new_build() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    let dir = TempPluginDir::new();
    install(dir.path(), "1");
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).expect("policy");
    let mut child = Command::new(env!("CARGO_BIN_EXE_airlock-cli"))
        .args(["run", "--watch", "--debounce-ms", "50", "--policy"])
        .arg(&policy)
        .arg(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("runs");
    let mut stdin = child.stdin.take().expect("stdin");
    // Read on a thread of its own, so that a host that stops answering fails the test instead
    // of hanging it.
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.expect("utf-8")).is_err() {
                return;
            }
        }
    });
    let next_line = || match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(line) => line,
        Err(_) => panic!("the host said nothing for 30 s"),
    };
    assert!(next_line().starts_with("airlock console"));
    install(dir.path(), "panic");
    let refused = next_line();
    assert!(
        refused.starts_with("versioned: reload refused: init_panicked")
            && refused.ends_with("still serving generation 1"),
        "{refused}"
    );
    install(dir.path(), "2");
    let loaded = next_line();
    assert!(
        loaded.starts_with("versioned: generation 2 loaded in"),
        "{loaded}"
    );
    writeln!(stdin, "/call versioned version").expect("write");
    assert_eq!(next_line(), "ok \"2\"");
    writeln!(stdin, "/reload versioned").expect("write");
    assert!(next_line().starts_with("versioned: generation 3 loaded in"));
    writeln!(stdin, "/quit").expect("write");
    assert_eq!(next_line(), "bye");
    assert!(child.wait().expect("exits").success());
}

/// The first version reloaded without stage 1 and without the duplicate rule: a second library
/// declaring a running plugin's id replaced it, and the two then reloaded each other without
/// end (each reload read a file, and the read itself woke the watcher).
#[test]
fn a_second_file_with_a_running_plugins_id_is_refused_once_and_never_flaps() {
    let dir = TempPluginDir::new();
    install(dir.path(), "1");
    let host = load(&dir);
    let (tx, rx) = mpsc::channel();
    let _watcher = host
        .watch(Duration::from_millis(50), move |o| {
            let _ = tx.send(o.clone());
        })
        .expect("watch");
    let before = host.plugin("versioned").expect("loaded");
    // Another build of the same plugin, under another file name.
    let second = dir.path().join(TempPluginDir::lib_name("also-versioned"));
    std::fs::copy(versioned_build("2"), &second).expect("copy");
    set_mode(&second, 0o755);
    match next_outcome(&rx) {
        ReloadOutcome::Refused { refusal, serving } => {
            assert_eq!(refusal.reason.code(), "duplicate_id", "{refusal:?}");
            assert_eq!(serving, Some(before.generation));
        }
        other => panic!("expected a duplicate_id refusal, got {other}"),
    }
    // Nothing else happens until a file changes.
    let more: Vec<String> = std::iter::from_fn(|| rx.recv_timeout(Duration::from_secs(1)).ok())
        .map(|o| o.to_string())
        .collect();
    assert!(more.is_empty(), "reloaded again without a change: {more:?}");
    let after = host.plugin("versioned").expect("loaded");
    assert_eq!(
        after.generation, before.generation,
        "the original kept serving"
    );
    assert_eq!(after.file, before.file);
    assert_eq!(ok(&host, "version"), "1");
}

#[test]
fn an_isolated_plugin_reloads_under_calls_from_two_threads_with_no_failed_call() {
    let dir = TempPluginDir::new();
    install(dir.path(), "1");
    let (host, report) = dir.load(&format!("{POLICY}isolation = \"process\"\n"));
    assert!(report.all_ok(), "{report:#?}");
    let path = dir.path().join(lib_name());
    assert_eq!(ok(&host, "count"), 1);
    let done = AtomicBool::new(false);
    let calls = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            let (done, calls, host) = (&done, &calls, &host);
            s.spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    match host.call("versioned", "version").json(&Value::Null) {
                        Ok(Reply::Ok(v)) => assert!(v == "1" || v == "2", "{v}"),
                        other => panic!("a call failed during the swaps: {other:?}"),
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        for i in 0..10 {
            install(dir.path(), if i % 2 == 0 { "2" } else { "1" });
            match host.reload_file(&path) {
                ReloadOutcome::Loaded { .. } => {}
                other => panic!("swap {i}: {other}"),
            }
        }
        done.store(true, Ordering::Relaxed);
    });
    assert!(calls.load(Ordering::Relaxed) > 0);
    let info = host.plugin("versioned").expect("loaded");
    assert_eq!(info.generation, 11);
    assert_eq!(info.isolation, airlock::policy::Isolation::Process);
    // The state was handed from worker to worker across every swap.
    assert_eq!(ok(&host, "count"), 2);
    assert_eq!(ok(&host, "version"), "1");
}
