//! Races, in a test binary of their own: revoke, disable, enable, reload, config changes and
//! shutdown racing calls on several threads, and two reloads racing each other. Nothing may
//! crash or deadlock (each race runs under a time limit), and every call ends in a value or a
//! clean error code.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use airlock::plugins::ReloadOutcome;
use airlock::{CallErrorCode, Host, Reply};
use airlock_tests::{set_mode, versioned_build, TempPluginDir};
use serde_json::{json, Value};

const POLICY: &str = "[plugins.versioned]\ngrants = [\"events.subscribe:reload.*\", \"timers\"]\n";

fn setup() -> (TempPluginDir, Host) {
    let dir = TempPluginDir::with(&["hello"]);
    let path = dir.path().join(TempPluginDir::lib_name("versioned"));
    std::fs::copy(versioned_build("1"), &path).expect("copy");
    set_mode(&path, 0o755);
    let (host, report) = dir.load(POLICY);
    assert!(report.all_ok(), "{report:#?}");
    (dir, host)
}

/// Ends the whole test process if it is still alive after `limit`: a deadlock must fail the
/// run, never hang it. Dropping the guard disarms it.
struct Deadline(
    #[allow(dead_code, reason = "held to disarm the deadline on drop")] mpsc::Sender<()>,
);

impl Deadline {
    fn arm(limit: Duration, what: &'static str) -> Self {
        let (tx, rx) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                eprintln!("deadlock: {what} did not finish within {limit:?}");
                std::process::exit(101);
            }
        });
        Self(tx)
    }
}

/// Sets the flag when dropped, so that callers stop even if the operations panic.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn operations_racing_calls_never_crash_deadlock_or_fail_uncleanly() {
    let (_dir, host) = setup();
    let stop = AtomicBool::new(false);
    let (ok, clean) = (AtomicU64::new(0), AtomicU64::new(0));
    let _deadline = Deadline::arm(Duration::from_secs(120), "operations racing calls");
    {
        std::thread::scope(|s| {
            for caller in 0..3 {
                let (host, stop, ok, clean) = (&host, &stop, &ok, &clean);
                s.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let (plugin, action) = if caller == 0 {
                            ("hello", "greet")
                        } else {
                            ("versioned", "count")
                        };
                        match host.call(plugin, action).json(&Value::Null) {
                            Ok(Reply::Ok(_)) => ok.fetch_add(1, Ordering::Relaxed),
                            Err(e) if e.code == CallErrorCode::Revoked => {
                                clean.fetch_add(1, Ordering::Relaxed)
                            }
                            other => panic!("{plugin}/{action}: {other:?}"),
                        };
                    }
                });
            }
            let _stop = StopOnDrop(&stop);
            for round in 0..20 {
                host.disable("hello").expect("disable");
                host.enable("hello").expect("enable");
                let outcome = host.reload("versioned").expect("known");
                assert!(matches!(outcome, ReloadOutcome::Loaded { .. }), "{outcome}");
                host.set_config("hello", json!({"greeting": format!("Hi {round}")}))
                    .expect("config");
            }
            // Last, because the reloaded build needs its timer to start: a revocation carries
            // over to the next generation, which then refuses to be created.
            host.revoke_capability("versioned", "timers")
                .expect("revoke");
            host.shutdown();
        });
    }
    eprintln!(
        "race: {} calls succeeded, {} ended cleanly as revoked, 0 crashed",
        ok.load(Ordering::Relaxed),
        clean.load(Ordering::Relaxed)
    );
    assert!(ok.load(Ordering::Relaxed) > 0);
}

#[test]
fn two_reloads_racing_each_get_a_generation_of_their_own() {
    let (_dir, host) = setup();
    let _deadline = Deadline::arm(Duration::from_secs(120), "two reloads racing");
    let generations = {
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        (0..15)
                            .map(|_| match host.reload("versioned").expect("known") {
                                ReloadOutcome::Loaded { generation, .. } => generation,
                                other => panic!("{other}"),
                            })
                            .collect::<Vec<u64>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().expect("worker"))
                .collect::<Vec<u64>>()
        })
    };
    let mut sorted = generations.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        30,
        "two reloads got the same generation: {generations:?}"
    );
    assert_eq!(host.plugin("versioned").expect("loaded").generation, 31);
    let info = host.plugin("versioned").expect("loaded");
    assert_eq!((info.stats.subscriptions, info.stats.timers), (1, 1));
}
