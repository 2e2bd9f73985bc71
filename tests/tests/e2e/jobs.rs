//! Timer jobs through a real library: cron jobs next to intervals, a run id for every run, runs
//! by hand from the host program and the console, runs of a job never overlapping, a duplicate
//! job name refused, a bad cron expression refused at creation, and nothing after teardown.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use airlock::plugins::RunJobError;
use airlock::{Error, Host, Reply};
use airlock_tests::TempPluginDir;
use serde_json::{json, Value};

fn ok(host: &Host, action: &str, input: &Value) -> Value {
    match host.call("ticker", action).json(input) {
        Ok(Reply::Ok(v)) => v,
        other => panic!("ticker.{action}: {other:?}"),
    }
}

fn load(config: &str) -> (TempPluginDir, Host, airlock::LoadReport) {
    let dir = TempPluginDir::with(&["ticker"]);
    let policy = format!(
        "[plugins.ticker]\ngrants = [\"timers\", \"events.publish:demo.*\"]\n\
         [plugins.ticker.config]\n{config}\n"
    );
    let (host, report) = dir.load(&policy);
    (dir, host, report)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The runs the plugin saw of `job`.
fn runs(host: &Host, job: &str) -> Vec<Value> {
    ok(host, "runs", &Value::Null)
        .as_array()
        .expect("a list")
        .iter()
        .filter(|r| r["job"] == json!(job))
        .cloned()
        .collect()
}

#[test]
fn every_run_has_its_own_id_and_its_due_time_scheduled_or_by_hand() {
    // A cron job that is not due for months, and a quick interval.
    let (_dir, host, report) = load("interval_ms = 20\ncron = \"0 0 1 1 *\"");
    assert!(report.all_ok(), "{report:#?}");
    let started = Instant::now();
    while runs(&host, "tick").len() < 3 {
        assert!(started.elapsed() < Duration::from_secs(10), "no ticks");
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = now_ms();
    let first = host.run_job("ticker", "digest").expect("ran by hand");
    let second = host.run_job("ticker", "digest").expect("ran by hand");
    let ticks = runs(&host, "tick");
    let digests = runs(&host, "digest");
    assert_eq!(digests.len(), 2, "{digests:?}");
    assert_eq!(digests[0]["run"], json!(first));
    assert_eq!(digests[1]["run"], json!(second));
    assert!(digests.iter().all(|r| r["manual"] == json!(true)));
    assert!(digests[0]["scheduled_ms"].as_u64().expect("due") >= before);
    assert!(ticks.iter().all(|r| r["manual"] == json!(false)));
    // Every run's id is its own, scheduled or by hand.
    let mut ids: Vec<u64> = ticks
        .iter()
        .chain(&digests)
        .map(|r| r["run"].as_u64().expect("id"))
        .collect();
    let count = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), count, "{ticks:?} {digests:?}");
    // An interval run was due 20 ms after the previous one ended: its due time is close to
    // when it ran, not the time it was scheduled.
    let due: Vec<u64> = ticks
        .iter()
        .map(|r| r["scheduled_ms"].as_u64().expect("due"))
        .collect();
    assert!(due.windows(2).all(|w| w[1] >= w[0] + 20), "{due:?}");
}

#[test]
fn runs_of_a_job_never_overlap_and_a_duplicate_name_is_refused() {
    let (_dir, host, report) =
        load("interval_ms = 3600000\ncron = \"*/5 * * * *\"\ndigest_ms = 400");
    assert!(report.all_ok(), "{report:#?}");
    let host = std::sync::Arc::new(host);
    let first = {
        let host = host.clone();
        std::thread::spawn(move || host.run_job("ticker", "digest"))
    };
    std::thread::sleep(Duration::from_millis(100));
    // The first run takes 400 ms: a second one now would overlap it.
    match host.run_job("ticker", "digest") {
        Err(Error::Job {
            reason: RunJobError::AlreadyRunning(job),
            ..
        }) => assert_eq!(job, "digest"),
        other => panic!("a run overlapped: {other:?}"),
    }
    let run = first.join().expect("first").expect("ran");
    assert!(host.run_job("ticker", "digest").expect("ran after") > run);
    assert_eq!(runs(&host, "digest").len(), 2);
    assert!(matches!(
        host.run_job("ticker", "nightly"),
        Err(Error::Job {
            reason: RunJobError::NoSuchJob(_),
            ..
        })
    ));
    // A name in use is an error, not a silent replacement.
    let again = ok(&host, "schedule_again", &json!("digest"));
    let again = again.as_str().expect("text");
    assert!(
        again.starts_with("refused") && again.contains("already has a timer job named \"digest\""),
        "{again}"
    );
    assert_eq!(
        ok(&host, "schedule_again", &json!("weekly")),
        json!("scheduled")
    );
}

#[test]
fn a_bad_cron_expression_is_refused_at_creation_and_no_job_runs_after_teardown() {
    let (_dir, _host, report) = load("cron = \"61 * * * *\"");
    let entry = report
        .plugins
        .iter()
        .find(|p| p.id.as_deref() == Some("ticker"))
        .expect("reported");
    assert!(
        entry.detail.contains("cron expression \"61 * * * *\""),
        "{report:#?}"
    );
    let (_dir, _host, report) = load("cron = \"0 * * * * *\"");
    assert!(!report.all_ok(), "six fields accepted: {report:#?}");

    let trace = tempfile::NamedTempFile::new().expect("trace file");
    let (_dir, host, report) = load(&format!(
        "interval_ms = 10\ncron = \"* * * * *\"\ntrace_file = {:?}",
        trace.path()
    ));
    assert!(report.all_ok(), "{report:#?}");
    host.run_job("ticker", "digest").expect("ran by hand");
    host.disable("ticker").expect("disabled");
    let after_teardown = std::fs::read_to_string(trace.path()).expect("trace");
    assert!(after_teardown.contains("digest"), "{after_teardown}");
    assert!(matches!(
        host.run_job("ticker", "digest"),
        Err(Error::NotRunning { .. })
    ));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        std::fs::read_to_string(trace.path()).expect("trace"),
        after_teardown,
        "a job ran after teardown"
    );
}

#[test]
fn a_job_the_manifest_declares_is_scheduled_by_the_host() {
    let (_dir, host, report) = load("interval_ms = 3600000");
    assert!(report.all_ok(), "{report:#?}");
    // Declared in plugin.json ("hourly", cron "0 * * * *"), not registered by the plugin.
    let run = host
        .run_job("ticker", "hourly")
        .expect("scheduled by the host");
    let hourly = runs(&host, "hourly");
    assert_eq!(hourly.len(), 1, "{hourly:?}");
    assert_eq!(hourly[0]["run"], json!(run));
    // The interval job the plugin registered, and the one the manifest declared.
    assert_eq!(host.plugin("ticker").expect("loaded").stats.timers, 2);
}
