//! The web console in a real browser: `airlock run --console 127.0.0.1:0` on the demo's plugins,
//! and headless Chromium driven by Playwright (`tests/browser/console.py`, in the Python that
//! `./scripts/test.sh` prepares). The script lists the plugins, approves a call that waits for the
//! operator and sees it complete, changes hello's greeting through the config form (a good
//! config applies, a bad one shows the schema's or the plugin's message and changes nothing),
//! revokes a capability and sees the revoke in the audit view, and takes screenshots of the main
//! views. It types into the host's line console meanwhile: its standard input is the host's
//! standard output, and its standard output the host's standard input.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock_tests::{workspace_root, TempPluginDir};

/// How long the browser script may take in all, on a slow, busy machine.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(900);
/// How long the host may take to load the plugins and print the console's address, or to quit.
const HOST_DEADLINE: Duration = Duration::from_secs(180);

/// A process killed when dropped, unless it was seen to end: the host, or the browser script
/// with its process group (the Playwright driver and the browser it started).
struct Guarded {
    child: Child,
    ended: Option<ExitStatus>,
    group: bool,
}

impl Guarded {
    /// Waits for the process to end, at most until `deadline`.
    fn wait_until(&mut self, deadline: Instant) -> Option<ExitStatus> {
        while self.ended.is_none() && Instant::now() < deadline {
            self.ended = self
                .child
                .try_wait()
                .expect("the process can be waited for");
            if self.ended.is_none() {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        self.ended
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if self.ended.is_some() {
            return;
        }
        // Not yet waited for, so its id (and its group's) cannot have been reused.
        if self.group {
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{}", self.child.id())])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Everything a process writes on standard error, collected by a thread; `ended` is told at
/// the end of it.
fn collect(
    stderr: ChildStderr,
    seen: Arc<Mutex<String>>,
    line: impl Fn(&str) + Send + 'static,
) -> mpsc::Receiver<()> {
    let (ended, end) = mpsc::channel();
    std::thread::spawn(move || {
        for text in BufReader::new(stderr).lines() {
            let Ok(text) = text else { break };
            line(&text);
            let mut seen = seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            seen.push_str(&text);
            seen.push('\n');
        }
        let _ = ended.send(());
    });
    end
}

fn text_of(seen: &Arc<Mutex<String>>) -> String {
    seen.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// The plugins `scripts/demo.sh` loads, read from its `examples=(...)` line.
fn demo_plugins() -> Vec<String> {
    let demo = std::fs::read_to_string(workspace_root().join("scripts/demo.sh")).expect("demo.sh");
    let list = demo
        .lines()
        .find_map(|line| line.trim().strip_prefix("examples=(")?.strip_suffix(')'))
        .expect("scripts/demo.sh lists its plugins as examples=(...)");
    list.split_whitespace().map(str::to_owned).collect()
}

/// A program the test drives: `variable`'s value, else `default`; missing, the test fails and
/// says how to get it.
fn peer(variable: &str, default: Option<&str>, what: &str) -> PathBuf {
    let path = std::env::var_os(variable)
        .map(PathBuf::from)
        .or_else(|| default.map(PathBuf::from))
        .unwrap_or_else(|| {
            panic!("{variable} is not set: run the tests with ./scripts/test.sh, which prepares {what}")
        });
    assert!(
        path.is_file(),
        "{variable} names {}, which is not there: run the tests with ./scripts/test.sh, which \
         prepares {what}",
        path.display()
    );
    path
}

/// The demo's grants, a greeting, and a rule that makes hello's greeting of a name starting
/// "waiting " wait for the operator's approval.
fn policy(worker: &Path) -> String {
    format!(
        r#"[host]
data_dir = "data"
audit_log = "audit.jsonl"
worker = {worker:?}

[secrets]
github_hook = "browser-test-webhook-secret"

[plugins.hello.config]
greeting = "Hello there"

[[plugins.hello.permissions]]
actions = ["greet"]
match = {{ "/name" = "waiting *" }}
decision = "ask"

[plugins.kv-counter]
grants = ["kv"]

[plugins.ticker]
grants = ["timers", "events.publish:demo.*"]

[plugins.listener]
grants = ["events.subscribe:demo.*"]

[plugins.crashy]
isolation = "process"

[plugins.courier]
grants = ["kv", "secrets:github_hook"]

[plugins.tally]
grants = ["kv"]
"#,
        worker = worker.display().to_string()
    )
}

#[test]
fn the_web_console_lists_approves_configures_and_revokes_in_a_real_browser() {
    let python = peer(
        "AIRLOCK_TEST_PYTHON",
        None,
        "a Python with Playwright (target/test-venv)",
    );
    let chromium = peer(
        "AIRLOCK_TEST_CHROMIUM",
        Some("/usr/bin/chromium"),
        "Debian's chromium",
    );
    let plugins = demo_plugins();
    let names: Vec<&str> = plugins.iter().map(String::as_str).collect();
    let dir = TempPluginDir::with(&names);
    let work = tempfile::tempdir().expect("tempdir");
    let policy_file = work.path().join("airlock.toml");
    std::fs::write(&policy_file, policy(&airlock_tests::worker())).expect("policy");
    // `scripts/console-screenshots.sh` asks for the screenshots to be kept.
    let shots = match std::env::var_os("AIRLOCK_CONSOLE_SCREENSHOTS") {
        Some(dir) => PathBuf::from(dir),
        None => work.path().join("screenshots"),
    };
    std::fs::create_dir_all(&shots).expect("screenshots directory");

    let mut host = Command::new(env!("CARGO_BIN_EXE_airlock-cli"));
    host.args(["run", "--console", "127.0.0.1:0", "--policy"])
        .arg(&policy_file)
        .arg(dir.path())
        .env_remove("AIRLOCK_CONSOLE_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut host = Guarded {
        child: host.spawn().expect("the host starts"),
        ended: None,
        group: false,
    };
    let host_said = Arc::new(Mutex::new(String::new()));
    let (address, url) = mpsc::channel();
    let _ = collect(
        host.child.stderr.take().expect("stderr"),
        Arc::clone(&host_said),
        move |line| {
            if let Some(url) = line.strip_prefix("console: ") {
                let _ = address.send(url.trim().to_owned());
            }
        },
    );
    let url = url.recv_timeout(HOST_DEADLINE).unwrap_or_else(|_| {
        panic!(
            "the host printed no `console:` line; it said:\n{}",
            text_of(&host_said)
        )
    });
    assert!(
        url.starts_with("http://127.0.0.1:") && url.contains("/?token="),
        "the console's address: {url}"
    );

    // The command is dropped once spawned: it holds the ends of the host's pipes it hands over,
    // and the host's input must close when the script ends.
    let script = {
        let mut command = Command::new(&python);
        command
            .arg(workspace_root().join("tests/browser/console.py"))
            .args(["--url", &url, "--plugins", &plugins.join(",")])
            .arg("--chromium")
            .arg(&chromium)
            .arg("--screenshots")
            .arg(&shots)
            .stdin(Stdio::from(host.child.stdout.take().expect("stdout")))
            .stdout(Stdio::from(host.child.stdin.take().expect("stdin")))
            .stderr(Stdio::piped())
            .process_group(0);
        command.spawn().expect("the browser script starts")
    };
    let mut script = Guarded {
        child: script,
        ended: None,
        group: true,
    };
    let script_said = Arc::new(Mutex::new(String::new()));
    let script_ended = collect(
        script.child.stderr.take().expect("stderr"),
        Arc::clone(&script_said),
        |_| {},
    );
    let status = script.wait_until(Instant::now() + SCRIPT_DEADLINE);
    // What it wrote before it ended (a browser left behind may hold the pipe open: then this
    // gives up waiting, with what was read).
    let _ = script_ended.recv_timeout(Duration::from_secs(60));
    let said = text_of(&script_said);
    let report = || {
        format!(
            "the browser script said:\n{said}\nthe host said:\n{}",
            text_of(&host_said)
        )
    };
    let status =
        status.unwrap_or_else(|| panic!("the browser script did not finish; {}", report()));
    assert!(
        status.success(),
        "the browser script failed ({status}); {}",
        report()
    );
    assert!(said.contains("console checks passed"), "{}", report());

    for view in ["plugins", "pending", "plugin", "audit"] {
        let shot = std::fs::read(shots.join(format!("{view}.png"))).expect("a screenshot");
        assert!(
            shot.starts_with(b"\x89PNG\r\n\x1a\n") && shot.len() > 4096,
            "{view}.png is not a picture of the page ({} bytes)",
            shot.len()
        );
    }

    // The script's end closed the line console's input: the host quits, and its audit log
    // holds the revoke made in the browser, by the web console's operator.
    let quit = host.wait_until(Instant::now() + HOST_DEADLINE);
    assert!(
        quit.is_some_and(|status| status.success()),
        "the host did not quit cleanly at the end of its input ({quit:?}); it said:\n{}",
        text_of(&host_said)
    );
    let mut audit = String::new();
    std::fs::File::open(work.path().join("audit.jsonl"))
        .and_then(|mut file| file.read_to_string(&mut audit))
        .expect("the audit log");
    assert!(
        audit.lines().any(|line| line.contains("\"revoked\"")
            && line.contains("kv-counter")
            && line.contains("\"web-console\"")),
        "no revoke of kv-counter by the web console's operator in the audit log:\n{audit}"
    );
}
