//! Isolated plugins in the runtime: stage 4 for a library that runs in a worker process (the
//! host never maps it), and the supervision of its workers — a worker that died is restarted
//! with backoff within the policy's budget, and the plugin is quarantined once the budget is
//! spent. A restart is a re-creation: a new worker, a new context, the current config; what the
//! dead worker held in memory is gone (no handover: it cannot be asked for a snapshot).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use super::plugin::LoadedPlugin;
use super::shared::HostShared;
use crate::error::{Refusal, RefusalReason};
use crate::isolation::find_worker;
use crate::isolation::process::{Worker, WorkerSpec};
use crate::isolation::Creator;
use crate::library::file::LibraryFile;
use crate::policy::PluginPolicy;
use crate::runtime::outcome::PluginState;
use crate::services::audit::AuditOutcome;

/// When an isolated plugin's worker was restarted, for the restart budget's window.
#[derive(Debug, Default)]
pub(crate) struct Restarts(Mutex<VecDeque<Instant>>);

impl Restarts {
    /// Forgets the restarts made (the operator lifted a quarantine).
    pub(crate) fn clear(&self) {
        self.0.lock().clear();
    }
}

impl HostShared {
    /// Stage 4 for an isolated plugin: a worker is started with the checked bytes and loads them
    /// (its own stage 2 and 4); it is kept for the `create` that follows.
    pub(super) fn worker_creator(
        &self,
        file: &mut LibraryFile,
        policy: &PluginPolicy,
        sealed_only: bool,
    ) -> Result<Creator, Refusal> {
        let refuse = |reason, detail: String| {
            Refusal::new(&file.path, reason, detail).with_id(&file.manifest.id)
        };
        let bytes = std::mem::take(&mut file.bytes).into_vec();
        if bytes.is_empty() {
            return Err(refuse(
                RefusalReason::LoadFailed,
                "the library's checked bytes are no longer in memory, so no worker can load \
                 them; load it again"
                    .to_owned(),
            ));
        }
        let spec = Arc::new(WorkerSpec {
            program: find_worker(self.options.policy.host().worker.as_deref()),
            label: file.path.display().to_string(),
            bytes,
            sealed_only,
            // A call told it is cancelled at its timeout has its grace to stop before its
            // worker is killed.
            call_timeout: policy.call_timeout.saturating_add(policy.cancel_grace),
            init_deadline: policy.init_deadline,
            spare: Mutex::new(None),
            limits: policy.limits,
            sandbox: policy.sandbox.clone(),
            sandboxed: Mutex::new(String::new()),
            dumpable: self.options.policy.host().dumpable,
        });
        let worker = Worker::start(&spec).map_err(|(reason, detail)| {
            let reason = reason
                .and_then(|code| RefusalReason::ALL.into_iter().find(|r| r.code() == code))
                .unwrap_or(RefusalReason::LoadFailed);
            refuse(reason, format!("in its worker process: {detail}"))
        })?;
        *spec.spare.lock() = Some(worker);
        Ok(Creator::Worker(spec))
    }

    /// Restarts the isolated plugins whose worker died, each once its backoff has passed;
    /// quarantines those that spent their budget. Run by the supervisor's restarter thread on
    /// every tick (never on the watchdog's: a restart waits for the admin lock and a process).
    pub(crate) fn restart_dead_workers(&self) {
        for plugin in self.table().iter() {
            // One read of the running instance: a worker that ended between calls (a fault like
            // one that ended in a call), and whether its worker is dead at all.
            let (unseen, died) = plugin.running.with(|r| match r {
                Some(r) => (r.instance.worker_ended_unseen(), r.instance.worker_died()),
                None => (None, false),
            });
            if let Some(how) = unseen {
                *plugin.died_at.lock() = Some(Instant::now());
                self.fault(
                    plugin,
                    &format!("its worker process died between calls: {how}"),
                );
            }
            if died && plugin.state.get() == PluginState::Running {
                self.restart_worker(plugin);
            }
        }
    }

    fn restart_worker(&self, plugin: &Arc<LoadedPlugin>) {
        let policy = plugin.policy.restart;
        let now = Instant::now();
        let (made, due) = {
            let mut restarts = plugin.restarts.0.lock();
            while restarts
                .front()
                .is_some_and(|t| now.duration_since(*t) > policy.window)
            {
                restarts.pop_front();
            }
            let made = restarts.len() as u32;
            let backoff = policy.backoff * 2u32.saturating_pow(made.min(10));
            // The call that met the death records when; the supervisor may see the dead worker
            // first, and then the backoff counts from now.
            let died = *plugin.died_at.lock().get_or_insert(now);
            let since = now.duration_since(died);
            (made, since >= backoff)
        };
        let id = plugin.id().to_string();
        if made >= policy.budget {
            if plugin
                .state
                .change(PluginState::Running, PluginState::Quarantined)
            {
                tracing::error!(
                    plugin = %id,
                    "its worker died {} times within {} ms: quarantined; `enable` it to try again",
                    made + 1,
                    policy.window.as_millis()
                );
            }
            return;
        }
        if !due {
            return;
        }
        crate::failpoint::hit(crate::failpoint::RESTART_DUE);
        let admin = self.admin();
        crate::failpoint::hit(crate::failpoint::RESTART_LOCKED);
        // Still the plugin in the table, still dead, still running (an operator may have
        // disabled it while this waited for the lock): the admin lock makes the restart the
        // only change to it.
        let current = self.find(&id);
        let dead = plugin
            .running
            .with(|r| r.is_some_and(|r| r.instance.worker_died()));
        if !current.is_some_and(|c| Arc::ptr_eq(&c, plugin))
            || !dead
            || plugin.state.get() != PluginState::Running
        {
            return;
        }
        // A plugin whose dependency went away while its worker was dead stays down.
        if let Err(why) = self.dependencies_running(plugin) {
            self.teardown(plugin, PluginState::Disabled);
            let generation = plugin.generation.load(std::sync::atomic::Ordering::SeqCst);
            self.audit.plugin_event(
                &id,
                generation,
                AuditOutcome::Disabled,
                format_args!("its worker died and it was not restarted: {why}"),
            );
            return;
        }
        plugin.restarts.0.lock().push_back(now);
        *plugin.died_at.lock() = None;
        self.teardown(plugin, PluginState::Disabled);
        let config = plugin.settings.lock().config.clone();
        let generation = match self.start_instance(plugin, &config, None) {
            Ok(()) => plugin.generation.load(std::sync::atomic::Ordering::SeqCst),
            Err(refusal) => {
                tracing::error!(plugin = %id, "its worker could not be restarted: {refusal}");
                return;
            }
        };
        self.started_all(&[Arc::clone(plugin)]);
        drop(admin);
        self.audit.plugin_event(
            &id,
            generation,
            AuditOutcome::Restarted,
            format_args!(
                "its worker died; restarted as generation {generation} (restart {} of {} within {} ms)",
                made + 1,
                policy.budget,
                policy.window.as_millis()
            ),
        );
    }
}
