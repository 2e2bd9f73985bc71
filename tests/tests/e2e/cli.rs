//! The `airlock` command: `check` (table and JSON, exit codes), `inspect`, `run`, and the proof
//! that no refused library's constructor ever runs.

use std::path::Path;
use std::process::{Command, Output};

use airlock_tests::TempPluginDir;
use serde_json::Value;

fn airlock(args: &[&str], dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_airlock-cli"));
    cmd.args(args).arg(dir).env_remove("AIRLOCK_CTOR_MARKER");
    cmd
}

fn run(mut cmd: Command) -> (Output, String) {
    let out = cmd.output().expect("the CLI runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, stdout)
}

const ALL: &[&str] = &[
    "hello",
    "counter",
    "panics-in-init",
    "errors-in-init",
    "wrong-abi",
    "build-mismatch",
    "not-a-plugin",
    "ctor-marker",
    "undefined-symbol",
];

#[test]
fn check_load_json_reports_examples_ok_and_every_fixture_refused_with_its_code() {
    let dir = TempPluginDir::with(ALL);
    let (out, stdout) = run(airlock(
        &["check", "--load", "--format", "json"],
        dir.path(),
    ));
    assert_eq!(
        out.status.code(),
        Some(1),
        "refusals exit 1; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    let entries = json["plugins"].as_array().expect("plugins array");
    assert_eq!(entries.len(), ALL.len());
    let by_file = |name: &str| {
        let file = TempPluginDir::lib_name(name);
        entries
            .iter()
            .find(|e| e["file"].as_str().is_some_and(|f| f.ends_with(&file)))
            .unwrap_or_else(|| panic!("{name} missing from {json:#}"))
            .clone()
    };
    for entry in entries {
        for key in ["file", "id", "version", "status", "reason", "detail"] {
            assert!(entry.get(key).is_some(), "{key} missing in {entry}");
        }
    }
    for (name, reason) in [
        ("hello", Value::Null),
        ("counter", Value::Null),
        ("panics-in-init", "init_panicked".into()),
        ("errors-in-init", "init_failed".into()),
        ("wrong-abi", "abi_incompatible".into()),
        ("build-mismatch", "build_mismatch".into()),
        ("not-a-plugin", "no_manifest".into()),
        ("ctor-marker", "bad_manifest".into()),
        ("undefined-symbol", "load_failed".into()),
    ] {
        let entry = by_file(name);
        assert_eq!(entry["reason"], reason, "{name}: {entry}");
        let status = if reason.is_null() { "ok" } else { "refused" };
        assert_eq!(entry["status"], status, "{name}: {entry}");
    }
    assert_eq!(by_file("hello")["id"], "hello");
}

#[test]
fn check_exits_zero_when_all_pass_and_two_on_usage_errors() {
    let dir = TempPluginDir::with(&["hello", "counter"]);
    let (out, stdout) = run(airlock(&["check", "--load"], dir.path()));
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("2 ok, 0 refused"), "{stdout}");
    let (out, _) = run(airlock(&["check", "--format", "yaml"], dir.path()));
    assert_eq!(out.status.code(), Some(2));
    let (out, _) = run(airlock(&["check", "--policy"], dir.path()));
    assert_eq!(out.status.code(), Some(2));
    let policy = dir.path().join("bad-policy.toml");
    std::fs::write(&policy, "[plugins.hello]\nenabeld = false\n").expect("write");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_airlock-cli"));
    cmd.args(["check", "--policy"]).arg(&policy).arg(dir.path());
    let out = cmd.output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad-policy.toml") && stderr.contains("enabeld"),
        "{stderr}"
    );
}

#[test]
fn no_refused_library_runs_its_constructor_and_the_control_proves_the_marker_works() {
    let marker_dir = tempfile::tempdir().expect("tempdir");
    let marker = marker_dir.path().join("constructor-ran");
    // Refused from the file: ctor-marker (bad manifest). Checked but not loaded: ctor-plugin.
    let refused =
        TempPluginDir::with(&["ctor-marker", "wrong-abi", "build-mismatch", "not-a-plugin"]);
    let mut cmd = airlock(&["check", "--load"], refused.path());
    cmd.env("AIRLOCK_CTOR_MARKER", &marker);
    let (out, _) = run(cmd);
    assert_eq!(out.status.code(), Some(1));
    assert!(!marker.exists(), "a refused library's constructor ran");

    let control = TempPluginDir::with(&["ctor-plugin"]);
    let mut cmd = airlock(&["check"], control.path());
    cmd.env("AIRLOCK_CTOR_MARKER", &marker);
    let (out, _) = run(cmd);
    assert_eq!(out.status.code(), Some(0));
    assert!(!marker.exists(), "checking (stages 1-3) ran a constructor");

    let mut cmd = airlock(&["check", "--load"], control.path());
    cmd.env("AIRLOCK_CTOR_MARKER", &marker);
    let (out, _) = run(cmd);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        marker.exists(),
        "control: loading ctor-plugin must run its constructor"
    );
}

#[test]
fn inspect_reads_the_manifest_without_running_the_file() {
    let dir = TempPluginDir::with(&["hello", "not-a-plugin"]);
    let hello = dir.path().join(TempPluginDir::lib_name("hello"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_airlock-cli"));
    cmd.args(["inspect", "--format", "json"]).arg(&hello);
    let (out, stdout) = run(cmd);
    assert_eq!(out.status.code(), Some(0));
    let json: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(json["manifest"]["id"], "hello");
    assert_eq!(json["abi_version"], airlock_abi::ABI_VERSION);
    assert_eq!(json["target"], airlock_abi::abi::BUILD_TARGET);
    assert_eq!(json["panic"], "unwind");
    let (host, _) = dir.load("");
    assert_eq!(json["blake3"], host.plugin("hello").expect("loaded").blake3);
    assert_eq!(
        json["blake3"],
        blake3::hash(&std::fs::read(&hello).expect("read"))
            .to_hex()
            .as_str()
    );

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_airlock-cli"));
    cmd.args(["inspect", "--format", "json"])
        .arg(dir.path().join(TempPluginDir::lib_name("not-a-plugin")));
    let (out, stdout) = run(cmd);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.contains("no_manifest"), "{stdout}");
}

#[test]
fn run_serves_the_console_over_stdin() {
    let dir = TempPluginDir::with(&["hello", "counter"]);
    let out = airlock_tests::run_with_input(
        airlock(&["run"], dir.path()),
        "/plugins\n/call hello greet {\"name\":\"Ada\"}\n/call counter increment\n/call hello fail\n/call hello nope\n/quit\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("hello 0.1.0 [running"), "{stdout}");
    assert!(stdout.contains("ok \"Hello, Ada!\""), "{stdout}");
    assert!(stdout.contains("ok 1"), "{stdout}");
    assert!(stdout.contains("error hello refuses, as asked"), "{stdout}");
    assert!(stdout.contains("error not_found"), "{stdout}");
    assert!(stdout.contains("bye"), "{stdout}");
}

#[test]
fn the_console_prints_a_stream_as_it_arrives_and_cancels_a_background_call() {
    let dir = TempPluginDir::with(&["tally", "long-call"]);
    let policy = dir.path().join("policy.toml");
    let trace = dir.path().join("trace");
    std::fs::write(
        &policy,
        format!("[plugins.long-call.config]\ntrace = {trace:?}\n"),
    )
    .expect("policy");
    let mut cmd = airlock(&["run", "--policy"], &policy);
    cmd.arg(dir.path());
    let out = airlock_tests::run_with_input(
        cmd,
        // The 1 s call gives the background one time to start before it is cancelled.
        "/stream long-call patient 60000\n/call tally count {\"text\": \"to be or not to be\"}\n\
         /call long-call patient 1000\n/cancel 1\n/cancel 7\n/quit\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "#1 started: long-call.patient (/cancel 1 to stop it)",
        "> {\"word\":\"to\",\"count\":1}",
        "> {\"word\":\"be\",\"count\":2}",
        "ok {\"words\":6,",
        "ok 1000",
        "#1 cancelling",
        "no background call 7 is running",
        "#1 error cancelled:",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    assert!(
        std::fs::read_to_string(&trace)
            .unwrap_or_default()
            .contains("patient saw cancelled"),
        "{stdout}"
    );
}

/// Output that remembers when each line was written.
#[derive(Clone, Default)]
struct TimedLines(std::sync::Arc<std::sync::Mutex<Vec<(std::time::Instant, String)>>>);

impl std::io::Write for TimedLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf).into_owned();
        if let Ok(mut lines) = self.0.lock() {
            lines.push((std::time::Instant::now(), text));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_console_prints_each_chunk_when_it_arrives_not_with_the_answer() {
    let dir = TempPluginDir::with(&["tally"]);
    let (host, report) = dir.load("[plugins.tally.config]\ndelay_ms = 150\n");
    assert!(report.all_ok(), "{report:#?}");
    let output = TimedLines::default();
    airlock_cli::Console::new(&host)
        .run(
            "/call tally count {\"text\": \"one two three\"}\n/quit\n".as_bytes(),
            output.clone(),
        )
        .expect("ran");
    let lines = output.0.lock().expect("lines").clone();
    let when = |prefix: &str| {
        lines
            .iter()
            .find(|(_, line)| line.starts_with(prefix))
            .map(|(at, _)| *at)
            .unwrap_or_else(|| panic!("no {prefix:?} in {lines:?}"))
    };
    // The first word is printed as it is counted, two 150 ms pauses before the answer.
    let first = when("> {\"word\":\"one\"");
    let answer = when("ok {");
    assert!(
        answer.duration_since(first) >= std::time::Duration::from_millis(250),
        "printed together: {lines:?}"
    );
}

#[test]
fn the_console_routes_plain_lines_through_the_hooks_and_contains_a_crash() {
    let dir = TempPluginDir::with(&["shout", "guard", "crashy", "commands"]);
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "[plugins.crashy]\nquarantine_faults = 2\n").expect("policy");
    let mut cmd = airlock(&["run", "--policy"], &policy);
    cmd.arg(dir.path());
    let out = airlock_tests::run_with_input(
        cmd,
        "hi there\nwhat a day!\nmy password is 1234\ncrashy: keep this\ncrash now\n/boom\n/boom\n/plugins\n/reverse abc\n/quit\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    for expected in [
        "you said: hi there",
        "YOU SAID: WHAT A DAY!",
        "(reply blocked by guard: replies may not mention \"password\")",
        "[crashy] crashy took \"keep this\" and kept it",
        "! crashy failed in input.transform (panicked)",
        "you said: crash now",
        "error panicked: crashy: boom, as asked",
        "error quarantined",
        "crashy 0.1.0 [quarantined",
        "ok \"cba\"",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}

#[test]
fn check_says_what_an_isolated_plugins_sandbox_holds_here_and_refuses_without_a_worker() {
    let dir = TempPluginDir::with(&["hostile", "hello"]);
    let policy = dir.path().join("policy.toml");
    let check = |worker: &Path, plugin: &str| {
        let text = format!("[host]\nworker = {worker:?}\n[plugins.hostile]\n{plugin}");
        std::fs::write(&policy, text).expect("write");
        let policy = policy.to_str().expect("utf-8");
        run(airlock(
            &["check", "--format", "json", "--policy", policy],
            dir.path(),
        ))
    };
    let worker = airlock_tests::worker();
    // The sandbox the policy asks for, required: a worker probes it on this kernel (which has
    // Landlock and seccomp: the isolation tests observe both refusing).
    let (out, stdout) = check(
        &worker,
        "isolation = \"process\"\nsandbox_required = true\nallow_network = true\n",
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains(
            "its worker here: Landlock fully enforced; seccomp on (sockets allowed, processes refused)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("\"passed stages 1-3 (not loaded)\""),
        "{stdout}"
    );
    let (out, stdout) = check(&worker, "isolation = \"process\"\nsandbox = false\n");
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("its worker here: not sandboxed"),
        "{stdout}"
    );
    // No worker where the policy says: the isolated plugin is refused, with what to do.
    let (out, stdout) = check(
        Path::new("/nonexistent/airlock-worker"),
        "isolation = \"process\"\n",
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("load_failed") && stdout.contains("cannot start the worker"),
        "{stdout}"
    );
}

#[test]
fn inspect_shows_routes_and_jobs() {
    let dir = TempPluginDir::with(&["courier", "ticker"]);
    let inspect = |name: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_airlock-cli"));
        cmd.arg("inspect")
            .arg(dir.path().join(TempPluginDir::lib_name(name)));
        run(cmd).1
    };
    let courier = inspect("courier");
    assert!(
        courier.contains("route:        POST /plugins/courier/webhook (handled by webhook)")
            && courier.contains("route:        DELETE /plugins/courier/webhook (not handled: 501)")
            && courier.contains(
                "route:        POST /plugins/courier/github (handled by echo; public: github \
                 signature with the secret github_hook)"
            ),
        "{courier}"
    );
    let ticker = inspect("ticker");
    assert!(
        ticker.contains("job:          hourly - cron 0 * * * * (UTC)"),
        "{ticker}"
    );
}

#[test]
fn run_exits_cleanly_when_a_plugin_asks_the_host_to_shut_down() {
    use std::io::Write;
    use std::process::Stdio;

    let dir = TempPluginDir::with(&["orchestrator"]);
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[plugins.orchestrator]\ngrants = [\"host.control\"]\n",
    )
    .expect("policy");
    let mut cmd = airlock(&["run", "--policy"], &policy);
    cmd.arg(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the CLI runs");
    // Standard input stays open: only the plugin's request can end the console.
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(b"/call orchestrator shutdown {\"reason\": \"the batch is done\"}\n")
        .expect("write");
    stdin.flush().expect("flush");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("airlock run did not exit after the shutdown request");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    drop(stdin);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(
            "shutting down: plugin orchestrator (generation 1) asked the host to shut down: \
             the batch is done"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("orchestrator: "), "torn down: {stderr}");
}
