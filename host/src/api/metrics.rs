//! The host's metrics, read by the program: [`Host::metrics`] and [`Host::publish_metrics`].

use std::collections::BTreeMap;

use super::Host;
use crate::observe::{Metrics, PluginMetrics};

/// What a scrape reads of a call waiting for approval: whose it is.
#[derive(serde::Deserialize)]
struct Waiting {
    plugin: String,
}

impl Host {
    /// What the plugins did, read now: the per-thread counters of the call path folded, the
    /// host's own counts, and the calls waiting for approval. Cheap enough to call on every
    /// scrape; nothing on the call path waits for it, and it changes nothing (a waiting call
    /// past its bound is dropped by [`Host::pending_approvals`], not here).
    pub fn metrics(&self) -> Metrics {
        let mut waiting: BTreeMap<String, u64> = BTreeMap::new();
        match self.shared.pending.approvals() {
            Ok(approvals) => {
                for (_, bytes) in approvals {
                    if let Ok(w) = serde_json::from_slice::<Waiting>(&bytes) {
                        *waiting.entry(w.plugin).or_default() += 1;
                    }
                }
            }
            Err(e) => tracing::error!("the calls waiting for approval could not be read: {e}"),
        }
        let mut plugins = self.shared.tally.read();
        for p in &mut plugins {
            p.pending_approvals = waiting.remove(&p.plugin).unwrap_or(0);
        }
        // Calls waiting for a plugin the host has not counted yet (asked before a restart).
        for (plugin, n) in waiting {
            plugins.push(PluginMetrics {
                plugin,
                pending_approvals: n,
                ..PluginMetrics::default()
            });
        }
        plugins.sort_by(|a, b| a.plugin.cmp(&b.plugin));
        Metrics::new(plugins)
    }

    /// [`Host::metrics`] handed to the recorder the program installed for the `metrics`
    /// facade ([`Metrics::publish`]).
    pub fn publish_metrics(&self) {
        self.metrics().publish();
    }
}
