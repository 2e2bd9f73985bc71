//! `/events`: the event catalog — the topics the loaded plugins declare (with their payload
//! schemas), the topics published so far (by whom, how often, how long ago) — and the last
//! runs of the policy's routines.

use std::time::SystemTime;

use super::Console;

/// How many routine runs `/events` shows.
const RUNS_SHOWN: usize = 10;

impl Console<'_> {
    pub(super) fn events(&self) -> String {
        let catalog = self.host.event_catalog();
        let mut lines = Vec::new();
        if catalog.declared.is_empty() {
            lines.push("declared: none".to_owned());
        }
        for d in &catalog.declared {
            let schema = d
                .schema
                .as_ref()
                .map_or_else(|| "no schema".to_owned(), |s| format!("schema {s}"));
            lines.push(format!(
                "declared {} by {} - {} ({schema})",
                d.topic, d.plugin, d.description
            ));
        }
        if catalog.seen.is_empty() {
            lines.push("seen: none yet".to_owned());
        }
        let now = SystemTime::now();
        for s in &catalog.seen {
            let ago = now
                .duration_since(s.last_seen)
                .map_or(0.0, |d| d.as_secs_f64());
            lines.push(format!(
                "seen {} from {}: {} time(s), last {ago:.1} s ago",
                s.topic,
                s.publishers.join(", "),
                s.count
            ));
        }
        if catalog.unrecorded > 0 {
            lines.push(format!(
                "{} publication(s) on topics past the catalog's {} not listed",
                catalog.unrecorded,
                airlock::events::MAX_SEEN_TOPICS
            ));
        }
        let runs = self.host.routine_runs();
        for r in runs.iter().rev().take(RUNS_SHOWN).rev() {
            lines.push(format!(
                "routine {}: {} from {} -> {}.{}: {:?} after {} attempt(s){}",
                r.routine,
                r.topic,
                r.publisher,
                r.plugin,
                r.action,
                r.outcome,
                r.attempts,
                if r.detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", r.detail)
                }
            ));
        }
        lines.join("\n")
    }
}
