//! `ticker`: a host-run interval job that publishes `demo.tick` with a running count, and, if
//! its config has a `cron` expression, a cron job `digest` that publishes `demo.digest` with its
//! run id and the time it was due; its manifest declares a cron job `hourly` (publishing
//! `demo.hourly`), which the host schedules itself. The host owns the jobs and cancels them at
//! teardown. Config:
//! `interval_ms` (default 1000); `cron` (5 fields, UTC; none by default); `digest_ms`, how long
//! a digest run takes (default 0: tests use it to see runs never overlap); and `trace_file`, a
//! file each run appends a line to (tests use it to prove no run happens after teardown).
//! Actions: `ticks` (how many ticks), `runs` (every run seen: job, run id, due time, by hand),
//! and `schedule_again` (tries to schedule a job under a name in use: the host refuses).

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

use airlock_abi::{ActionError, Actions, ConfigReport, Context, InitError, JobRun, Plugin};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_interval")]
    interval_ms: u64,
    #[serde(default)]
    trace_file: Option<String>,
    #[serde(default)]
    cron: Option<String>,
    #[serde(default)]
    digest_ms: u64,
}

fn default_interval() -> u64 {
    1000
}

/// The plugin.
pub struct Ticker {
    ctx: Context,
    ticks: AtomicU64,
    trace_file: Option<String>,
    digest_ms: u64,
    runs: Mutex<Vec<serde_json::Value>>,
}

impl Plugin for Ticker {
    fn create(ctx: Context) -> Result<Self, InitError> {
        let config: Config = ctx.config()?;
        ctx.timers()
            .every("tick", Duration::from_millis(config.interval_ms))?;
        if let Some(cron) = &config.cron {
            ctx.timers().cron("digest", cron)?;
        }
        Ok(Self {
            ctx,
            ticks: AtomicU64::new(0),
            trace_file: config.trace_file,
            digest_ms: config.digest_ms,
            runs: Mutex::new(Vec::new()),
        })
    }

    fn validate_config(config: &serde_json::Value) -> ConfigReport {
        let mut report = ConfigReport::default();
        match serde_json::from_value::<Config>(config.clone()) {
            Err(e) => report.errors.push(e.to_string()),
            Ok(c) if c.interval_ms == 0 => report
                .errors
                .push("interval_ms must be at least 1".to_owned()),
            Ok(c) if c.interval_ms < 10 => report
                .warnings
                .push(format!("interval_ms = {} is very short", c.interval_ms)),
            Ok(_) => {}
        }
        report
    }

    fn actions(actions: &mut Actions<Self>) {
        actions
            .add("ticks", |this: &Self, (): ()| {
                Ok::<_, ActionError>(this.ticks.load(Ordering::SeqCst))
            })
            .add("runs", |this: &Self, (): ()| {
                let runs = this.runs.lock().map(|r| r.clone()).unwrap_or_default();
                Ok::<_, ActionError>(runs)
            })
            .add("schedule_again", |this: &Self, name: String| {
                Ok::<_, ActionError>(match this.ctx.timers().cron(&name, "0 0 1 1 *") {
                    Ok(()) => "scheduled".to_owned(),
                    Err(e) => format!("refused: {e}"),
                })
            });
    }

    /// The host cancels the job anyway (before this runs); cancelling it here says so to any
    /// reader.
    fn teardown(self) {
        let _ = self.ctx.timers().cancel("tick");
        let _ = self.ctx.timers().cancel("digest");
    }

    fn on_job(&self, run: &JobRun) {
        let due_ms = run
            .scheduled
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let seen = serde_json::json!({
            "job": run.name, "run": run.run, "scheduled_ms": due_ms, "manual": run.manual,
        });
        if let Ok(mut runs) = self.runs.lock() {
            runs.push(seen.clone());
        }
        let (topic, payload, line) = if run.name == "tick" {
            let n = self.ticks.fetch_add(1, Ordering::SeqCst) + 1;
            (
                "demo.tick".to_owned(),
                serde_json::json!({ "n": n }),
                format!("tick {n}"),
            )
        } else {
            if run.name == "digest" {
                std::thread::sleep(Duration::from_millis(self.digest_ms));
            }
            let line = format!("{} {}", run.name, run.run);
            (format!("demo.{}", run.name), seen, line)
        };
        if let Some(path) = &self.trace_file {
            if let Ok(mut file) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                let _ = writeln!(file, "{line}");
            }
        }
        if let Err(e) = self.ctx.events().publish(&topic, &payload) {
            self.ctx.warn(&format!("cannot publish: {e}"));
        }
    }
}

airlock_abi::export_plugin!(Ticker);

#[cfg(test)]
mod tests {
    use airlock::testing::TestHost;
    use serde_json::json;

    use super::Ticker;

    #[test]
    fn each_tick_publishes_and_the_job_ends_with_the_plugin() {
        let ticker = TestHost::new()
            .config(json!({"interval_ms": 5}))
            .create::<Ticker>()
            .expect("created");
        assert_eq!(ticker.config_warnings(), ["interval_ms = 5 is very short"]);
        assert_eq!(ticker.timers()["tick"].as_millis(), 5);
        for _ in 0..3 {
            assert!(ticker.fire_timer("tick"));
        }
        let topics: Vec<_> = ticker
            .published()
            .into_iter()
            .map(|(t, p)| (t, p["n"].as_u64()))
            .collect();
        assert_eq!(
            topics,
            [
                ("demo.tick".to_owned(), Some(1)),
                ("demo.tick".to_owned(), Some(2)),
                ("demo.tick".to_owned(), Some(3))
            ]
        );
        ticker.teardown().expect("a clean teardown");
    }

    #[test]
    fn a_zero_interval_is_rejected() {
        let err = TestHost::new()
            .config(json!({"interval_ms": 0}))
            .create::<Ticker>();
        assert!(err.is_err());
    }

    #[test]
    fn the_cron_job_publishes_its_run_and_runs_in_the_harness_by_hand() {
        let ticker = TestHost::new()
            .config(json!({"interval_ms": 1000, "cron": "0 9 * * MON-FRI"}))
            .create::<Ticker>()
            .expect("created");
        let crons: Vec<String> = ticker.cron_jobs().into_keys().collect();
        assert_eq!(
            crons,
            ["digest", "hourly"],
            "registered in create, declared in plugin.json"
        );
        assert!(ticker.fire_timer("digest"));
        assert!(!ticker.fire_timer("nightly"));
        let digests: Vec<_> = ticker
            .published()
            .into_iter()
            .filter(|(topic, _)| topic == "demo.digest")
            .collect();
        assert_eq!(digests.len(), 1, "{digests:?}");
        assert_eq!(digests[0].1["manual"], json!(true));
        assert!(digests[0].1["run"].as_u64().is_some_and(|run| run > 0));
    }
}
