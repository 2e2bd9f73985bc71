//! The concurrent core under operators and cycles: an operation that retires an instance waits
//! for the calls running on it (or abandons it without destroying it), operator actions that
//! race a reload act on the generation that serves, and call cycles are refused instead of
//! deadlocking or overflowing the stack.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use airlock::plugins::TeardownOutcome;
use airlock::{CallError, Host, Reply};
use airlock_tests::TempPluginDir;
use serde_json::json;

/// A host running the `long-call` fixture, tracing into a file of its own.
struct LongCall {
    host: Arc<Host>,
    trace: PathBuf,
    _dir: TempPluginDir,
    _data: tempfile::TempDir,
}

impl LongCall {
    fn start(extra_policy: &str, snapshot_ms: u64) -> Self {
        let dir = TempPluginDir::with(&["long-call"]);
        let data = tempfile::tempdir().expect("data dir");
        let trace = data.path().join("trace.log");
        let policy = format!(
            "[host]\ndata_dir = {data:?}\n[plugins.long-call]\ngrants = [\"kv\"]\n{extra_policy}\n\
             [plugins.long-call.config]\ntrace = {trace:?}\nsnapshot_ms = {snapshot_ms}\n",
            data = data.path().join("kv").display().to_string(),
            trace = trace.display().to_string(),
        );
        let (host, report) = dir.load(&policy);
        assert!(report.refused().next().is_none(), "{report:#?}");
        Self {
            host: Arc::new(host),
            trace,
            _dir: dir,
            _data: data,
        }
    }

    fn config(&self) -> serde_json::Value {
        json!({ "trace": self.trace.display().to_string(), "snapshot_ms": 0 })
    }

    /// Starts `work` for `ms` on a thread of its own and returns once it is running.
    fn work(&self, ms: u64) -> JoinHandle<Result<Reply, CallError>> {
        let host = self.host.clone();
        let before = self.lines().len();
        let call =
            std::thread::spawn(move || host.call("long-call", "work").json(&json!({ "ms": ms })));
        while !self.lines()[before..]
            .iter()
            .any(|l| l.starts_with("step "))
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        call
    }

    fn lines(&self) -> Vec<String> {
        read_lines(&self.trace)
    }
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Every instance's events in trace order; panics if one ran a step after its teardown.
fn assert_nothing_after_teardown(lines: &[String]) -> HashMap<String, Vec<String>> {
    let mut by_instance: HashMap<String, Vec<String>> = HashMap::new();
    for line in lines {
        let (what, instance) = line.split_once(' ').expect("`what instance`");
        let events = by_instance.entry(instance.to_owned()).or_default();
        assert!(
            !events.iter().any(|e| e == "teardown"),
            "instance {instance} ran `{what}` after its teardown:\n{}",
            lines.join("\n")
        );
        events.push(what.to_owned());
    }
    by_instance
}

fn torn_down(events: &HashMap<String, Vec<String>>) -> usize {
    events
        .values()
        .filter(|e| e.iter().any(|w| w == "teardown"))
        .count()
}

#[test]
fn retiring_an_instance_waits_for_a_call_that_calls_back_into_the_host() {
    type Operation = fn(&LongCall);
    let operations: [(&str, Operation); 4] = [
        ("disable", |p| {
            let record = p.host.disable("long-call").expect("disable");
            assert_eq!(record.outcome, TeardownOutcome::Clean);
        }),
        ("reload", |p| {
            p.host.reload("long-call").expect("reload");
        }),
        ("config change", |p| {
            let applied = p.host.set_config("long-call", p.config()).expect("config");
            assert!(!applied.live, "the fixture asks to be re-created");
        }),
        ("shutdown", |p| {
            let records = p.host.shutdown();
            assert_eq!(records[0].outcome, TeardownOutcome::Clean, "{records:?}");
        }),
    ];
    for (name, operation) in operations {
        let plugin = LongCall::start("", 0);
        let call = plugin.work(300);
        operation(&plugin);
        // The call finished on the instance it started on, which was destroyed only after it.
        let lines = plugin.lines();
        let events = assert_nothing_after_teardown(&lines);
        let first = events
            .values()
            .find(|e| e.first().is_some_and(|w| w == "create") && e.iter().any(|w| w == "step"))
            .expect("the instance that ran the call");
        assert_eq!(
            first.iter().filter(|w| *w == "step").count(),
            300,
            "{name}: every step of the call ran before the teardown"
        );
        assert_eq!(first.last().map(String::as_str), Some("teardown"), "{name}");
        assert_eq!(
            call.join().expect("call thread").expect("call"),
            Reply::Ok(json!(300)),
            "{name}"
        );
    }
}

#[test]
fn a_call_outliving_the_deadline_leaves_its_instance_abandoned_not_destroyed() {
    let plugin = LongCall::start("shutdown_deadline_ms = 100", 0);
    let call = plugin.work(600);
    let record = plugin.host.disable("long-call").expect("disable");
    assert_eq!(record.outcome, TeardownOutcome::Abandoned);
    assert!(
        record.elapsed < Duration::from_millis(550),
        "disable waited past its deadline: {record:?}"
    );
    let answer = call.join().expect("call thread");
    let lines = plugin.lines();
    let events = assert_nothing_after_teardown(&lines);
    assert_eq!(torn_down(&events), 0, "an instance in use was destroyed");
    // The call ran to its end on a live (abandoned) instance; its host calls were revoked.
    assert!(answer.is_ok(), "{answer:?}");
}

#[test]
fn no_time_left_for_teardown_means_abandoned_and_not_destroyed() {
    let plugin = LongCall::start("shutdown_deadline_ms = 0", 0);
    let records = plugin.host.shutdown();
    assert_eq!(records[0].outcome, TeardownOutcome::Abandoned);
    std::thread::sleep(Duration::from_millis(200));
    let events = assert_nothing_after_teardown(&plugin.lines());
    assert_eq!(
        torn_down(&events),
        0,
        "reported abandoned, but its teardown ran: {events:?}"
    );
}

#[test]
fn a_capability_revoked_while_disabled_stays_revoked_across_reload_and_enable() {
    let plugin = LongCall::start("", 0);
    let use_kv = || {
        plugin
            .host
            .call("long-call", "kv_use")
            .json(&json!(null))
            .expect("call")
    };
    assert_eq!(use_kv(), Reply::Ok(json!("allowed")));
    plugin.host.disable("long-call").expect("disable");
    let removed = plugin
        .host
        .revoke_capability("long-call", "kv")
        .expect("revoke");
    assert_eq!(removed, ["kv"], "the revocation names what it removed");
    plugin.host.enable("long-call").expect("enable");
    assert_ne!(use_kv(), Reply::Ok(json!("allowed")), "enable");
    plugin.host.reload("long-call").expect("reload");
    let after = use_kv();
    assert!(
        matches!(&after, Reply::Ok(v) if v.as_str().is_some_and(|s| s.contains("kv"))),
        "the reloaded generation got kv back: {after:?}"
    );
}

/// Runs `host.reload` on a thread while the fixture's slow snapshot holds the admin lock, then
/// `during` on this thread.
fn during_a_reload<T>(plugin: &LongCall, during: impl FnOnce() -> T) -> T {
    let host = plugin.host.clone();
    let reload = std::thread::spawn(move || host.reload("long-call").expect("reload"));
    std::thread::sleep(Duration::from_millis(100));
    let result = during();
    reload.join().expect("reload thread");
    result
}

#[test]
fn a_config_change_racing_a_reload_starts_no_orphan_instance() {
    let plugin = LongCall::start("", 300);
    let generation = |p: &LongCall| p.host.plugin("long-call").expect("listed").generation;
    let before = generation(&plugin);
    during_a_reload(&plugin, || {
        plugin
            .host
            .set_config("long-call", plugin.config())
            .expect("config");
    });
    // Reload (one generation) then the config change's re-creation (one more), in that order.
    assert_eq!(generation(&plugin), before + 2);
    plugin.host.shutdown();
    let events = assert_nothing_after_teardown(&plugin.lines());
    let created = events.len();
    assert_eq!(
        torn_down(&events),
        created,
        "an instance was created and never torn down: {events:?}"
    );
}

#[test]
fn a_revocation_racing_a_reload_reaches_the_generation_that_serves() {
    let plugin = LongCall::start("", 300);
    let removed = during_a_reload(&plugin, || {
        plugin
            .host
            .revoke_capability("long-call", "kv")
            .expect("revoke")
    });
    assert_eq!(removed, ["kv"]);
    let after = plugin
        .host
        .call("long-call", "kv_use")
        .json(&json!(null))
        .expect("call");
    assert_ne!(after, Reply::Ok(json!("allowed")));
}

/// The three relays, each told its own id.
fn relays() -> (Arc<Host>, TempPluginDir) {
    let dir = TempPluginDir::with(&["relay-a", "relay-b", "relay-c"]);
    let mut policy = String::new();
    for id in ["relay-a", "relay-b", "relay-c"] {
        policy.push_str(&format!(
            "[plugins.{id}]\ngrants = [\"plugins.call:relay-*\"]\n[plugins.{id}.config]\nid = \"{id}\"\n"
        ));
    }
    let (host, report) = dir.load(&policy);
    assert!(report.refused().next().is_none(), "{report:#?}");
    (Arc::new(host), dir)
}

/// Bounces from `from` to `to` `times` times, on a thread, failing the test if it hangs.
fn bounce(host: &Arc<Host>, from: &str, to: &str, times: u32) -> Reply {
    let (tx, rx) = mpsc::channel();
    let (host, from, to) = (host.clone(), from.to_owned(), to.to_owned());
    std::thread::spawn(move || {
        let input = json!({ "to": to, "times": times });
        let _ = tx.send(host.call(&from, "bounce").json(&input));
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the call cycle hung (deadlocked)")
        .expect("the outer call itself succeeds")
}

#[test]
fn a_call_cycle_back_into_a_serial_plugin_is_refused_not_deadlocked() {
    let (host, _dir) = relays();
    // relay-a (serial) -> relay-b -> relay-a: the thread is already inside relay-a.
    let answer = bounce(&host, "relay-a", "relay-b", 3);
    assert!(
        matches!(&answer, Reply::Error(m) if m.contains("reentrant")),
        "{answer:?}"
    );
    // relay-a is not stuck: it still answers.
    assert_eq!(bounce(&host, "relay-a", "relay-b", 1), Reply::Ok(json!(1)));
}

#[test]
fn a_call_cycle_through_parallel_plugins_is_cut_at_the_depth_bound() {
    let (host, _dir) = relays();
    assert_eq!(bounce(&host, "relay-b", "relay-c", 3), Reply::Ok(json!(3)));
    // An endless cycle: without the bound it recurses until the stack overflows.
    let answer = bounce(&host, "relay-b", "relay-c", 100_000);
    assert!(
        matches!(&answer, Reply::Error(m) if m.contains("too_deep")),
        "{answer:?}"
    );
    let limit = airlock::call::MAX_CALL_DEPTH;
    assert_eq!(
        bounce(&host, "relay-b", "relay-c", limit),
        Reply::Ok(json!(limit)),
        "{limit} nested calls are allowed"
    );
}
