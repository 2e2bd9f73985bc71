//! `ticker`: a host-run interval job that publishes `demo.tick` with a running count. The host
//! owns the job and cancels it at teardown. Config: `interval_ms` (default 1000), and
//! `trace_file`, a file each tick appends a line to (tests use it to prove no tick runs after
//! teardown).

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use airlock_abi::{ActionError, Actions, ConfigReport, Context, InitError, Plugin};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_interval")]
    interval_ms: u64,
    #[serde(default)]
    trace_file: Option<String>,
}

fn default_interval() -> u64 {
    1000
}

/// The plugin.
pub struct Ticker {
    ctx: Context,
    ticks: AtomicU64,
    trace_file: Option<String>,
}

impl Plugin for Ticker {
    fn create(ctx: Context) -> Result<Self, InitError> {
        let config: Config = ctx.config()?;
        ctx.timers()
            .every("tick", Duration::from_millis(config.interval_ms))?;
        Ok(Self {
            ctx,
            ticks: AtomicU64::new(0),
            trace_file: config.trace_file,
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
        actions.add("ticks", |this: &Self, (): ()| {
            Ok::<_, ActionError>(this.ticks.load(Ordering::SeqCst))
        });
    }

    /// The host cancels the job anyway (before this runs); cancelling it here says so to any
    /// reader.
    fn teardown(self) {
        let _ = self.ctx.timers().cancel("tick");
    }

    fn on_timer(&self, _name: &str) {
        let n = self.ticks.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(path) = &self.trace_file {
            if let Ok(mut file) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                let _ = writeln!(file, "tick {n}");
            }
        }
        if let Err(e) = self
            .ctx
            .events()
            .publish("demo.tick", &serde_json::json!({ "n": n }))
        {
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
}
