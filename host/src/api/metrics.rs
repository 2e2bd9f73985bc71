//! The host's metrics, read by the program: [`Host::metrics`] and [`Host::publish_metrics`].

use super::Host;
use crate::observe::Metrics;

impl Host {
    /// What the plugins did, read now: the per-thread counters of the call path folded, the
    /// host's own counts, and the calls waiting for approval. Cheap enough to call on every
    /// scrape; nothing on the call path waits for it.
    pub fn metrics(&self) -> Metrics {
        let mut plugins = self.shared.tally.read();
        let waiting = self.pending_approvals();
        for p in &mut plugins {
            p.pending_approvals = waiting.iter().filter(|w| w.plugin == p.plugin).count() as u64;
        }
        for w in &waiting {
            if !plugins.iter().any(|p| p.plugin == w.plugin) {
                let mut p = crate::observe::PluginMetrics {
                    plugin: w.plugin.clone(),
                    ..Default::default()
                };
                p.pending_approvals =
                    waiting.iter().filter(|o| o.plugin == w.plugin).count() as u64;
                plugins.push(p);
                plugins.sort_by(|a, b| a.plugin.cmp(&b.plugin));
            }
        }
        Metrics::new(plugins)
    }

    /// [`Host::metrics`] handed to the recorder the program installed for the `metrics`
    /// facade ([`Metrics::publish`]).
    pub fn publish_metrics(&self) {
        self.metrics().publish();
    }
}
