//! What the host shows of a loaded plugin ([`PluginInfo`]): its manifest, state, counters,
//! settings, and the artifact its library came from when the lock in force says so.

use std::sync::atomic::{AtomicU64, Ordering};

use super::Host;
use crate::membrane::context;
use crate::runtime::outcome::{PluginInfo, PluginStats};
use crate::runtime::LoadedPlugin;

impl Host {
    /// The lock file in force as it is now (an install or a followed source rewrites it).
    pub(super) fn lock_now(&self) -> Option<crate::pipeline::Lock> {
        let path = self.shared.options.lock.as_ref()?.path().to_owned();
        crate::pipeline::Lock::from_file(&path).ok()
    }

    pub(super) fn info(
        &self,
        p: &LoadedPlugin,
        lock: Option<&crate::pipeline::Lock>,
    ) -> PluginInfo {
        let m = &p.file.manifest;
        // The artifact only if the lock pins these very bytes with it.
        let origin = lock
            .and_then(|l| l.get(&m.id))
            .filter(|e| e.blake3.as_deref() == Some(p.file.blake3.as_str()))
            .and_then(|e| {
                Some(crate::runtime::outcome::Origin {
                    source: e.source.clone()?,
                    range: e.range.clone(),
                    digest: e.digest.clone()?,
                })
            });
        let (token, grants, config) = {
            let settings = p.settings.lock();
            (
                settings.last_token,
                settings.grants.iter().map(ToString::to_string).collect(),
                settings.config.clone(),
            )
        };
        let entry = context::entry(token);
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (calls, timed_calls, timed_nanos) = p.counters.calls.totals();
        PluginInfo {
            id: m.id.to_string(),
            version: m.version.to_string(),
            description: m.description.clone(),
            file: p.file.path.clone(),
            blake3: p.file.blake3.clone(),
            abi_version: p.file.block.abi_version.clone(),
            rustc: p.file.block.rustc.clone(),
            generation: p.generation.load(Ordering::SeqCst),
            state: p.state.get(),
            concurrency: m.concurrency,
            isolation: p.policy.isolation,
            placement: (!p.file.is_builtin()).then(|| p.file.placement().clone()),
            origin,
            actions: m.actions.clone(),
            hooks: m.hooks.clone(),
            routes: m.routes.clone(),
            signature: p.file.signature.clone(),
            grants,
            context: token,
            context_open: entry.is_some(),
            load_time: p.load_time,
            stats: PluginStats {
                calls,
                host_calls: entry.as_ref().map_or(0, |e| e.calls.get()),
                denials: entry.as_ref().map_or(0, |e| load(&e.denials)),
                events: load(&p.counters.events),
                timer_runs: load(&p.counters.timer_runs),
                subscriptions: self.shared.events.count(token) as u64,
                timers: self.shared.timers.count(token) as u64,
                faults: load(&p.counters.faults),
                timed_calls,
                timed_nanos,
            },
            health: p.health.lock().clone(),
            breakers: self
                .shared
                .breakers
                .of(m.id.as_str(), std::time::Instant::now()),
            config,
            config_schema: m.config_schema.clone(),
        }
    }
}
