//! Isolation with real worker processes: the same libraries, run isolated by the policy, crash,
//! abort, overflow their stack and hang in their worker while the host keeps serving the
//! others; a dead worker is restarted with backoff within the policy's budget and quarantined
//! after it; a hung call gets its worker killed; and an isolated plugin's service requests,
//! kv writes and audit records are those of the same plugin in-process.

use std::time::{Duration, Instant};

use airlock::plugins::PluginState;
use airlock::services::AuditOutcome;
use airlock::{CallErrorCode, Host, Reply};
use airlock_tests::TempPluginDir;
use serde_json::{json, Value};

const ISOLATED: &str = "[plugins.hostile]\nisolation = \"process\"\ngrants = [\"kv\"]\n\
                        restart_backoff_ms = 5\n";

fn ok(host: &Host, plugin: &str, action: &str, input: &Value) -> Value {
    match host.call(plugin, action).json(input) {
        Ok(Reply::Ok(v)) => v,
        other => panic!("{plugin}.{action}: {other:?}"),
    }
}

/// Waits until `plugin` answers `ping` again (its worker restarted); how long that took.
fn serving_again(host: &Host, plugin: &str) -> Duration {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if let Ok(Reply::Ok(_)) = host.call(plugin, "ping").json(&Value::Null) {
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("{plugin} is not serving again: {:?}", host.plugin(plugin));
}

fn load(policy: &str) -> (TempPluginDir, Host) {
    let dir = TempPluginDir::with(&["hostile", "hello"]);
    let data = dir.path().join("data");
    let policy = format!("[host]\ndata_dir = {data:?}\n{policy}");
    let (host, report) = dir.load(&policy);
    assert!(report.all_ok(), "{report:#?}");
    (dir, host)
}

#[test]
fn an_isolated_plugin_runs_in_its_own_process_and_answers_like_an_in_process_one() {
    let (_dir, host) = load(ISOLATED);
    let pid = ok(&host, "hostile", "pid", &Value::Null);
    assert_ne!(
        pid,
        json!(std::process::id()),
        "it runs in a worker process"
    );
    assert_eq!(ok(&host, "hostile", "ping", &Value::Null), json!(1));
    assert_eq!(ok(&host, "hostile", "ping", &Value::Null), json!(2));
    // Its requests come back through the host's membrane: kv, granted.
    let before = host.plugin("hostile").expect("loaded").stats.host_calls;
    assert_eq!(
        ok(&host, "hostile", "kv_set", &json!({"n": 1})),
        Value::Null
    );
    let info = host.plugin("hostile").expect("loaded");
    assert_eq!(
        info.stats.host_calls,
        before + 1,
        "the kv request was served by the host"
    );

    // In-process, the same library runs in the host's process.
    let (_dir, host) = load("[plugins.hostile]\ngrants = [\"kv\"]\n");
    assert_eq!(
        ok(&host, "hostile", "pid", &Value::Null),
        json!(std::process::id())
    );
}

#[test]
fn what_the_plugin_prints_or_asks_between_calls_leaves_its_channel_whole() {
    let (_dir, host) = load(ISOLATED);
    // Its standard output is not the channel: printing, then an answer slow enough that the
    // host sleeps on the channel's socket, breaks nothing.
    assert_eq!(
        ok(&host, "hostile", "print", &Value::Null),
        json!("printed")
    );
    assert_eq!(ok(&host, "hostile", "nap", &json!(20)), json!(20));
    // A request from the plugin's own thread after its call returned is refused at once
    // (the channel is the host's to speak on), not slipped into the next call.
    ok(&host, "hostile", "config_later", &json!(50));
    std::thread::sleep(Duration::from_millis(300));
    let said = ok(&host, "hostile", "config_later_result", &Value::Null);
    let said = said.as_str().unwrap_or_default();
    assert!(
        said.starts_with("refused") && said.contains("between calls"),
        "{said}"
    );
    assert_eq!(ok(&host, "hostile", "nap", &json!(20)), json!(20));
    assert_eq!(ok(&host, "hostile", "ping", &Value::Null), json!(1));
    assert_eq!(host.plugin("hostile").expect("loaded").stats.faults, 0);
}

#[test]
fn crashes_end_the_worker_not_the_host_and_the_plugin_serves_again_after_a_restart() {
    // The normal run crashes it once each way; scripts/reliability.sh sets
    // AIRLOCK_CRASH_ROUNDS=100 (a restart window so short that every restart is the first of
    // its window, so none waits more than the first backoff, and no quarantine).
    let rounds: u64 = std::env::var("AIRLOCK_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    let (_dir, host) = load(&format!(
        "{ISOLATED}restart_window_ms = 1\nquarantine_faults = 0\n"
    ));
    let kinds = [
        ("segfault", "SIGSEGV"),
        ("abort", "SIGABRT"),
        ("stack_overflow", "signal"),
    ];
    let mut back_after = Vec::new();
    for round in 0..rounds {
        for (action, signal) in kinds {
            // What it wrote through the host survives every crash; what it held in memory
            // does not.
            let written = json!({"round": round, "before": action});
            assert_eq!(ok(&host, "hostile", "kv_set", &written), Value::Null);
            let before = host.plugin("hostile").expect("loaded").generation;
            let err = host
                .call("hostile", action)
                .json(&Value::Null)
                .expect_err("the worker died");
            assert_eq!(err.code, CallErrorCode::WorkerFailure, "{action}: {err}");
            assert!(
                err.message.contains("worker process died") && err.message.contains(signal),
                "{action}: {err}"
            );
            // The host and its other plugins never stopped.
            assert_eq!(
                ok(&host, "hello", "greet", &json!({"name": "Ada"})),
                json!("Hello, Ada!")
            );
            back_after.push(serving_again(&host, "hostile"));
            let after = host.plugin("hostile").expect("loaded");
            assert_eq!(after.generation, before + 1, "{action}: a new instance");
            assert_eq!(after.state, PluginState::Running);
            assert_eq!(ok(&host, "hostile", "kv_get", &Value::Null), written);
            // One ping since the restart (the one that found it serving again), not the
            // pings of the instances before it.
            assert_eq!(ok(&host, "hostile", "count", &Value::Null), json!(1));
        }
    }
    let crashes = rounds * kinds.len() as u64;
    let restarts = host
        .audit()
        .tail(usize::MAX)
        .into_iter()
        .filter(|r| r.outcome == AuditOutcome::Restarted)
        .count() as u64;
    // Each crash restarted once (the in-memory tail keeps the last AUDIT_RING records).
    assert_eq!(restarts, crashes.min(airlock::services::AUDIT_RING as u64));
    assert_eq!(
        host.plugin("hostile").expect("loaded").stats.faults,
        crashes
    );
    back_after.sort();
    println!(
        "isolation: {rounds} segfaults, {rounds} aborts, {rounds} stack overflows survived; \
         {crashes} restarts, serving again after {:.1} ms (median), {:.1} ms (max); \
         {crashes} kv writes read back after their crash",
        back_after[back_after.len() / 2].as_secs_f64() * 1e3,
        back_after[back_after.len() - 1].as_secs_f64() * 1e3,
    );
}

#[test]
fn a_restart_waits_its_backoff_and_the_backoff_doubles_within_the_window() {
    let (_dir, host) = load(
        "[plugins.hostile]\nisolation = \"process\"\nrestart_backoff_ms = 150\n\
         quarantine_faults = 0\n",
    );
    let mut waited = Vec::new();
    for _ in 0..2 {
        let started = Instant::now();
        let err = host
            .call("hostile", "abort")
            .json(&Value::Null)
            .expect_err("died");
        assert_eq!(err.code, CallErrorCode::WorkerFailure);
        serving_again(&host, "hostile");
        waited.push(started.elapsed());
    }
    // The first restart after at least the backoff, the second after at least twice it.
    assert!(waited[0] >= Duration::from_millis(150), "{waited:?}");
    assert!(waited[1] >= Duration::from_millis(300), "{waited:?}");
}

#[test]
fn a_worker_killed_between_calls_is_restarted_without_waiting_for_a_call() {
    let (_dir, host) = load(ISOLATED);
    let pid = ok(&host, "hostile", "pid", &Value::Null);
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    // No call is made: the supervisor notices and restarts it.
    let started = Instant::now();
    loop {
        let info = host.plugin("hostile").expect("loaded");
        if info.generation >= 2 && info.state == PluginState::Running && info.context_open {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not restarted: {:?}",
            host.plugin("hostile")
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_ne!(
        ok(&host, "hostile", "pid", &Value::Null),
        pid,
        "a new worker"
    );
    assert_eq!(host.plugin("hostile").expect("loaded").stats.faults, 1);
}

#[test]
fn a_plugin_whose_worker_keeps_dying_is_quarantined_once_the_budget_is_spent() {
    let (_dir, host) = load(
        "[plugins.hostile]\nisolation = \"process\"\nrestart_budget = 1\nrestart_backoff_ms = 5\n",
    );
    let err = host
        .call("hostile", "abort")
        .json(&Value::Null)
        .expect_err("died");
    assert_eq!(err.code, CallErrorCode::WorkerFailure);
    serving_again(&host, "hostile");
    let err = host
        .call("hostile", "abort")
        .json(&Value::Null)
        .expect_err("died");
    assert_eq!(err.code, CallErrorCode::WorkerFailure);
    let started = Instant::now();
    while host.plugin("hostile").expect("loaded").state != PluginState::Quarantined {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not quarantined: {:?}",
            host.plugin("hostile")
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let err = host
        .call("hostile", "ping")
        .json(&Value::Null)
        .expect_err("quarantined");
    assert_eq!(err.code, CallErrorCode::Quarantined);
    assert_eq!(
        ok(&host, "hello", "greet", &Value::Null),
        json!("Hello, world!")
    );
    // The operator lifts it: a new worker, serving.
    host.enable("hostile").expect("enabled");
    serving_again(&host, "hostile");
}

/// What the hostile plugin got when it read a file, opened a socket and started a process.
fn escapes(host: &Host) -> Vec<Value> {
    [
        ("open_file", json!("/etc/hostname")),
        ("socket", Value::Null),
        ("spawn", Value::Null),
    ]
    .into_iter()
    .map(|(action, input)| ok(host, "hostile", action, &input))
    .collect()
}

#[test]
fn the_sandbox_refuses_files_sockets_and_processes_unless_the_policy_allows_them() {
    // In-process, the same library reads, opens and spawns: what follows is the sandbox.
    let (_dir, host) = load("[plugins.hostile]\n");
    let free = escapes(&host);
    assert!(free.iter().all(|e| e.get("denied").is_none()), "{free:?}");

    let dir = TempPluginDir::with(&["hostile", "hello"]);
    let data = dir.path().join("data");
    let (host, report) = dir.load(&format!("[host]\ndata_dir = {data:?}\n{ISOLATED}"));
    let detail = &report
        .plugins
        .iter()
        .find(|p| p.id.as_deref() == Some("hostile"))
        .expect("hostile")
        .detail;
    assert!(
        detail.contains("in a worker process: Landlock fully enforced; seccomp on"),
        "the load report says what is enforced: {detail}"
    );
    let denied = escapes(&host);
    assert_eq!(
        denied[0]["errno"],
        json!(libc_eacces()),
        "the file: {denied:?}"
    );
    assert_eq!(
        denied[1]["errno"],
        json!(1),
        "the socket (EPERM): {denied:?}"
    );
    assert!(denied[2].get("denied").is_some(), "the process: {denied:?}");
    // Refused, it still serves, and what it asks of the host still works.
    assert_eq!(ok(&host, "hostile", "kv_set", &json!(7)), Value::Null);
    assert_eq!(ok(&host, "hostile", "ping", &Value::Null), json!(1));

    // Each allowance is explicit (reading beneath `/` includes running `/bin/true`).
    let (_dir, host) = load(
        "[plugins.hostile]\nisolation = \"process\"\nallow_read = [\"/\"]\n\
         allow_network = true\nallow_processes = true\n",
    );
    let allowed = escapes(&host);
    assert!(allowed[0].get("read").is_some(), "{allowed:?}");
    assert_eq!(allowed[1], json!({"opened": true}));
    assert!(allowed[2].get("spawned").is_some(), "{allowed:?}");
}

fn libc_eacces() -> i32 {
    13
}

#[test]
fn unbounded_allocation_ends_at_the_workers_memory_limit() {
    let (_dir, host) = load(
        "[plugins.hostile]\nisolation = \"process\"\nmemory_limit_mb = 256\nrestart_backoff_ms = 5\n",
    );
    let err = host
        .call("hostile", "alloc")
        .json(&Value::Null)
        .expect_err("the worker died");
    assert_eq!(err.code, CallErrorCode::WorkerFailure, "{err}");
    assert!(
        err.message.contains("SIGABRT") && err.message.contains("memory 256 MiB"),
        "{err}"
    );
    assert_eq!(
        ok(&host, "hello", "greet", &json!({"name": "Ada"})),
        json!("Hello, Ada!")
    );
    serving_again(&host, "hostile");
}

#[test]
fn a_hung_call_gets_its_worker_killed_at_the_timeout() {
    let (_dir, host) = load(
        "[plugins.hostile]\nisolation = \"process\"\ncall_timeout_ms = 300\nrestart_backoff_ms = 5\n",
    );
    // Spinning silently, and logging without end (the host is never left waiting for the
    // channel, yet the call is stopped at its deadline all the same).
    for (action, faults) in [("spin", 1), ("chatter", 2)] {
        let started = Instant::now();
        let err = host
            .call("hostile", action)
            .json(&Value::Null)
            .expect_err("timed out");
        assert_eq!(err.code, CallErrorCode::Timeout, "{action}: {err}");
        assert!(err.message.contains("killed"), "{action}: {err}");
        assert!(started.elapsed() >= Duration::from_millis(300));
        serving_again(&host, "hostile");
        assert_eq!(host.plugin("hostile").expect("loaded").stats.faults, faults);
    }
}

/// What the probe does and leaves behind, through the public API: its answers, its kv, and
/// its audit records without their times and sequence numbers.
fn probe_run(isolation: &str) -> (Vec<Value>, Vec<(String, AuditOutcome, String)>) {
    let dir = TempPluginDir::with(&["probe", "hello"]);
    let data = tempfile::tempdir().expect("data dir");
    let policy = format!(
        "[host]\ndata_dir = {:?}\n[plugins.probe]\nisolation = {isolation:?}\n\
         grants = [\"kv\", \"events.publish:probe.*\", \"service:probe.ping\"]\n",
        data.path()
    );
    let (host, report) = dir.load(&policy);
    assert!(report.all_ok(), "{report:#?}");
    let mut answers = Vec::new();
    for (action, input) in [
        ("kv_set", json!({"key": "a", "value": {"n": 1}})),
        ("kv_get", json!({"key": "a", "value": null})),
        ("use", json!({"capability": "events.publish"})),
        ("use", json!({"capability": "timers"})),
        ("use", json!({"capability": "secrets"})),
        ("service", json!("ping")),
        ("service", json!("fail_error")),
        ("whoami", Value::Null),
    ] {
        answers.push(ok(&host, "probe", action, &input));
    }
    let audit = host
        .audit()
        .tail(usize::MAX)
        .into_iter()
        .map(|r| (r.capability, r.outcome, r.plugin))
        .collect();
    (answers, audit)
}

#[test]
fn an_isolated_plugin_leaves_what_the_same_plugin_in_process_leaves() {
    let (in_process, in_process_audit) = probe_run("in-process");
    let (isolated, isolated_audit) = probe_run("process");
    assert_eq!(isolated, in_process);
    assert_eq!(isolated_audit, in_process_audit);
    assert_eq!(in_process[1], json!({"n": 1}), "the kv write was read back");
    assert_eq!(
        in_process_audit
            .iter()
            .filter(|(_, outcome, _)| *outcome == AuditOutcome::Denied)
            .count(),
        3,
        "timers, secrets and the ungranted service operation were denied, once each: \
         {in_process_audit:?}"
    );
}

#[test]
fn a_worker_does_not_outlive_its_host_killed_mid_call() {
    use std::io::{BufRead, BufReader, Write};
    let dir = TempPluginDir::with(&["hostile"]);
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[host]\nworker = {:?}\n[plugins.hostile]\nisolation = \"process\"\ncall_timeout_ms = 60000\n",
            airlock_tests::worker()
        ),
    )
    .expect("policy written");
    let mut host = std::process::Command::new(env!("CARGO_BIN_EXE_airlock-cli"))
        .arg("run")
        .arg(dir.path())
        .arg("--policy")
        .arg(&policy)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the host starts");
    let mut stdin = host.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(host.stdout.take().expect("stdout"));
    writeln!(stdin, "/call hostile pid").expect("written");
    let worker: u32 = loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).expect("read") > 0,
            "the host ended"
        );
        if let Some(pid) = line.trim().strip_prefix("ok ") {
            break pid.parse().expect("a pid");
        }
    };
    // The plugin is stuck in a call; the host is killed under it.
    writeln!(stdin, "/call hostile spin").expect("written");
    std::thread::sleep(Duration::from_millis(200));
    let proc = std::path::PathBuf::from(format!("/proc/{worker}"));
    assert!(proc.exists(), "the worker runs");
    host.kill().expect("kill -9");
    let _ = host.wait();
    let started = Instant::now();
    while proc.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the worker {worker} outlived its host"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_isolated_create_that_never_returns_gets_its_worker_killed_at_the_init_deadline() {
    let dir = TempPluginDir::with(&["hostile"]);
    let pid_file = dir.path().join("stalled.pid");
    let started = Instant::now();
    let (_host, report) = dir.load(&format!(
        "[plugins.hostile]\nisolation = \"process\"\nsandbox = false\ninit_deadline_ms = 300\n\
         [plugins.hostile.config]\nstall_create = {pid_file:?}\n"
    ));
    let refused = &report.plugins[0];
    assert!(
        matches!(
            refused.reason.map(|r| r.code()),
            Some("init_timeout" | "init_failed")
        ),
        "{report:#?}"
    );
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .expect("create ran in its worker")
        .trim()
        .parse()
        .expect("a process id");
    // Killed (and reaped) at the deadline: the worker is gone, and with it the host thread that
    // served it; nothing waits for it any more.
    let proc = std::path::PathBuf::from(format!("/proc/{pid}"));
    while proc.exists() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        !proc.exists(),
        "the stalled worker {pid} still runs after {:?}",
        started.elapsed()
    );
}
