//! The charts' data: a sampler on the server reads every plugin's counters once a second and
//! keeps, per plugin, the last [`WINDOW`] seconds of call rate, faults and mean latency (from
//! [`airlock::plugins::PluginStats::timed_calls`] and `timed_nanos`; none while no call was
//! timed). Bounded: [`WINDOW`] points per loaded plugin; a plugin no longer loaded is
//! forgotten.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use airlock::plugins::PluginStats;
use serde::Serialize;
use serde_json::Value;

use super::Served;

/// Points kept per plugin: ten minutes at one a second.
pub(super) const WINDOW: usize = 600;

/// One second of a plugin.
#[derive(Debug, Clone, Copy, Serialize)]
struct Point {
    /// Seconds since the Unix epoch, at the end of the second.
    t: u64,
    /// Calls in that second.
    calls: u64,
    /// Faults in that second.
    faults: u64,
    /// The mean duration of the calls timed in that second, in milliseconds.
    latency_ms: Option<f64>,
}

#[derive(Default)]
struct Plugin {
    last: Option<PluginStats>,
    points: VecDeque<Point>,
}

/// Every plugin's last minutes.
#[derive(Default)]
pub(super) struct Series(Mutex<BTreeMap<String, Plugin>>);

impl Series {
    /// Adds a second of each plugin in `now` (and forgets the plugins not in it).
    fn add(&self, t: u64, now: &[(String, PluginStats)]) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|id, _| now.iter().any(|(n, _)| n == id));
        for (id, stats) in now {
            let plugin = all.entry(id.clone()).or_default();
            if let Some(last) = plugin.last {
                // A counter that went back (a new context) counts from zero.
                let delta = |now: u64, then: u64| now.checked_sub(then).unwrap_or(now);
                let timed = delta(stats.timed_calls, last.timed_calls);
                let nanos = delta(stats.timed_nanos, last.timed_nanos);
                if plugin.points.len() == WINDOW {
                    plugin.points.pop_front();
                }
                plugin.points.push_back(Point {
                    t,
                    calls: delta(stats.calls, last.calls),
                    faults: delta(stats.faults, last.faults),
                    latency_ms: (timed > 0).then(|| nanos as f64 / timed as f64 / 1e6),
                });
            }
            plugin.last = Some(*stats);
        }
    }

    /// The series of `id`, oldest first.
    pub(super) fn of(&self, id: &str) -> Value {
        let all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let points: Vec<Point> = all
            .get(id)
            .map(|p| p.points.iter().copied().collect())
            .unwrap_or_default();
        serde_json::json!({ "plugin": id, "interval_secs": 1, "window": WINDOW, "points": points })
    }
}

/// Samples the plugins once a second until the console stops.
pub(super) async fn sample(console: Arc<Served>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut stop = console.stop.clone();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        let now: Vec<(String, PluginStats)> = console
            .host
            .plugins()
            .into_iter()
            .map(|p| (p.id, p.stats))
            .collect();
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        console.series.add(t, &now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(calls: u64, faults: u64, timed_calls: u64, timed_nanos: u64) -> PluginStats {
        PluginStats {
            calls,
            faults,
            timed_calls,
            timed_nanos,
            ..PluginStats::default()
        }
    }

    #[test]
    fn a_second_is_the_difference_of_the_counters_and_the_window_is_bounded() {
        let series = Series::default();
        series.add(0, &[("p".into(), stats(10, 0, 0, 0))]);
        series.add(1, &[("p".into(), stats(15, 1, 2, 3_000_000))]);
        series.add(2, &[("p".into(), stats(15, 1, 2, 3_000_000))]);
        let shown = series.of("p");
        let points = shown["points"].as_array().expect("points");
        assert_eq!(points.len(), 2, "the first sample only sets the baseline");
        assert_eq!(points[0]["calls"], 5);
        assert_eq!(points[0]["faults"], 1);
        assert_eq!(points[0]["latency_ms"], 1.5);
        assert_eq!(points[1]["calls"], 0);
        assert!(points[1]["latency_ms"].is_null(), "no call timed");
        for t in 3..(WINDOW as u64 + 100) {
            series.add(t, &[("p".into(), stats(15 + t, 1, 2, 3_000_000))]);
        }
        assert_eq!(
            series.of("p")["points"].as_array().map(Vec::len),
            Some(WINDOW)
        );
        series.add(9999, &[]);
        assert_eq!(
            series.of("p")["points"].as_array().map(Vec::len),
            Some(0),
            "forgotten"
        );
    }
}
