//! Stages 4 and 5 (prepare, validate the config, create), and teardown within one deadline.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_abi::abi::{ContextToken, ErrorCode, PluginError};
use airlock_abi::manifest::{Capability, Concurrency};

use parking_lot::Mutex;

use crate::error::{Refusal, RefusalReason};
use crate::isolation::Creator;
use crate::library::file::{LibraryFile, Origin};
use crate::loader::{self, LoadedLibrary};
use crate::membrane::context::{self, ContextEntry};
use crate::policy::{Isolation, PluginPolicy};
use crate::sync::hazard::Guarded;

pub(crate) use super::deadline::run_with_deadline;
use super::gate::SerialGate;
use super::plugin::{Counters, Lifecycle, LoadedPlugin, Running, Settings};
use super::shared::HostShared;
use crate::pipeline::Checked;
use crate::runtime::outcome::{PluginState, TeardownOutcome, TeardownRecord};
use crate::services::HostServices;

impl HostShared {
    /// Stage 4 and 5 for one checked library.
    pub(crate) fn load_one(&self, checked: Checked) -> Result<LoadedPlugin, Refusal> {
        let prepared = self.prepare_timed(checked)?;
        self.start_prepared(prepared)
    }

    /// Stage 4 for a first load, timed.
    pub(crate) fn prepare_timed(
        &self,
        checked: Checked,
    ) -> Result<(LoadedPlugin, Duration), Refusal> {
        let started = Instant::now();
        let plugin = self.prepare(checked, None)?;
        Ok((plugin, started.elapsed()))
    }

    /// Stage 5 for a plugin [`HostShared::prepare_timed`] prepared.
    pub(crate) fn start_prepared(
        &self,
        (mut plugin, prepare_time): (LoadedPlugin, Duration),
    ) -> Result<LoadedPlugin, Refusal> {
        let started = Instant::now();
        let config = plugin.settings.lock().config.clone();
        self.start_instance(&plugin, &config, None)?;
        plugin.load_time = prepare_time + started.elapsed();
        Ok(plugin)
    }

    /// Stage 4 and the config check for one checked library: a plugin ready to be started.
    /// `previous` is the generation it replaces on a reload: its config, revocations and
    /// generation count carry over.
    pub(crate) fn prepare(
        &self,
        checked: Checked,
        previous: Option<&LoadedPlugin>,
    ) -> Result<LoadedPlugin, Refusal> {
        let Checked {
            mut file,
            decision,
            schemas,
        } = checked;
        let (library, creator) = self.load_code(&mut file, &decision.policy)?;
        file.release_bytes();
        let (config, revoked, generation) = match previous {
            Some(old) => {
                let settings = old.settings.lock();
                (
                    settings.config.clone(),
                    settings.revoked.clone(),
                    old.generation.load(Ordering::SeqCst),
                )
            }
            None => (decision.policy.config.clone(), Vec::new(), 0),
        };
        let grants: Vec<Capability> = decision
            .grants
            .into_iter()
            .filter(|g| !revoked.contains(g))
            .collect();
        // A worker serves one call at a time: an isolated plugin is entered like a serial one
        // (and a call cycle back into it is refused, not deadlocked).
        let serial = (file.manifest.concurrency == Concurrency::Serial
            || decision.policy.isolation == Isolation::Process)
            .then(|| Arc::new(SerialGate::default()));
        let meter = self.tally.meter(
            file.manifest.id.as_str(),
            file.manifest
                .actions
                .iter()
                .map(|a| a.name.clone())
                .collect(),
            serial.is_some(),
        );
        let plugin = LoadedPlugin {
            creator,
            _library: library,
            settings: Mutex::new(Settings {
                grants,
                revoked,
                config: config.clone(),
                last_token: ContextToken {
                    slot: u32::MAX,
                    generation: 0,
                },
                warnings: Vec::new(),
            }),
            policy: decision.policy,
            file,
            running: Guarded::default(),
            state: Lifecycle::new(PluginState::Failed),
            generation: AtomicU64::new(generation),
            serial,
            load_time: Duration::ZERO,
            counters: Counters {
                calls: meter,
                events: Default::default(),
                timer_runs: Default::default(),
                faults: Default::default(),
            },
            recent_faults: Mutex::new(VecDeque::new()),
            health: Mutex::new(None),
            restarts: super::isolated::Restarts::default(),
            died_at: Mutex::new(None),
            schemas,
        };
        let warnings = self.validate(&plugin, &config)?.warnings;
        for warning in &warnings {
            tracing::warn!(plugin = %plugin.id(), "config: {warning}");
        }
        plugin.settings.lock().warnings = warnings;
        Ok(plugin)
    }
}

impl HostShared {
    /// Stage 4: what creates the plugin's instances — the library loaded into this process, a
    /// worker process that loads the checked bytes, or the host itself for a built-in — and
    /// the library when this process maps it. The one branch on where the code comes from.
    fn load_code(
        &self,
        file: &mut LibraryFile,
        policy: &PluginPolicy,
    ) -> Result<(Option<LoadedLibrary>, Creator), Refusal> {
        // Bytes that were pinned or verified are never opened from a file another process
        // could rewrite first, in this process or in a worker.
        let checked_bytes = self.options.lock.is_some()
            || policy.signature.required()
            || policy.blake3.is_some()
            || policy.sha256.is_some();
        Ok(match file.origin {
            // Isolated: the host never maps the library; each worker loads the checked bytes.
            Origin::File if policy.isolation == Isolation::Process => {
                (None, self.worker_creator(file, policy, checked_bytes)?)
            }
            Origin::File => {
                let library = loader::load(file, self.shadow.path(), checked_bytes)?;
                let creator = Creator::Module(library.creator());
                (Some(library), creator)
            }
            Origin::Builtin(module) => {
                (None, Creator::Module(loader::Creator::from_module(module)))
            }
        })
    }

    /// Creates an instance with a fresh context (stage 5) and makes it the running one, with
    /// `config` (as written: its references are resolved and its defaults filled in here).
    pub(crate) fn start_instance(
        &self,
        plugin: &LoadedPlugin,
        config: &serde_json::Value,
        handover: Option<Vec<u8>>,
    ) -> Result<(), Refusal> {
        let config = self.prepare_config(plugin, config)?;
        let id = plugin.id().clone();
        let refuse =
            |reason, detail: String| Refusal::new(&plugin.file.path, reason, detail).with_id(&id);
        let generation = plugin.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let mut entry = ContextEntry::new(
            id.clone(),
            generation,
            serde_json::to_vec(config.value()).unwrap_or_else(|_| b"{}".to_vec()),
            plugin.settings.lock().grants.clone(),
            self.me.upgrade().map(|me| me as Arc<dyn HostServices>),
            handover,
        );
        entry.observed = self.observer.is_some();
        let token = context::open(entry);
        plugin.settings.lock().last_token = token;
        let creator = plugin.creator.clone();
        let deadline = plugin.policy.init_deadline;
        let created = run_with_deadline(deadline, move || {
            creator.create(crate::membrane::host_context(token))
        });
        let instance = match created {
            Some(Ok(instance)) => instance,
            Some(Err(e)) => {
                self.release_context(token, plugin.policy.shutdown_deadline);
                plugin.state.set(PluginState::Failed);
                return Err(if e.code == ErrorCode::PANICKED {
                    refuse(
                        RefusalReason::InitPanicked,
                        format!("create panicked: {}", e.message),
                    )
                } else {
                    refuse(
                        RefusalReason::InitFailed,
                        format!("create failed: {}", e.message),
                    )
                });
            }
            None => {
                self.release_context(token, plugin.policy.shutdown_deadline);
                plugin.state.set(PluginState::Failed);
                return Err(refuse(
                    RefusalReason::InitTimeout,
                    format!(
                        "create did not return within {} ms; the plugin was abandoned and its context revoked",
                        deadline.as_millis()
                    ),
                ));
            }
        };
        drop(
            plugin
                .running
                .replace(Some(Arc::new(Running { instance, token }))),
        );
        self.schedule_declared_jobs(plugin, token);
        plugin.state.set(PluginState::Running);
        Ok(())
    }

    /// Schedules the jobs the manifest declares, now that the instance exists (only with the
    /// `timers` capability effective; a job the plugin already scheduled in `create` under the
    /// same name is left as it made it).
    fn schedule_declared_jobs(&self, plugin: &LoadedPlugin, token: ContextToken) {
        let jobs = &plugin.file.manifest.jobs;
        if jobs.is_empty() {
            return;
        }
        let id = &plugin.file.manifest.id;
        let grants = plugin.settings.lock().grants.clone();
        if !airlock_abi::manifest::covers(
            &grants,
            airlock_abi::manifest::CapabilityKind::Timers,
            None,
        ) {
            tracing::warn!(plugin = %id, "its declared jobs are not scheduled: timers is not granted");
            return;
        }
        for job in jobs {
            let schedule = match (&job.cron, job.every_ms) {
                (Some(cron), _) => match crate::services::timers::parse_cron(cron) {
                    Ok(cron) => crate::services::timers::Schedule::Cron(Box::new(cron)),
                    Err(e) => {
                        tracing::warn!(plugin = %id, "job {}: {e}", job.name);
                        continue;
                    }
                },
                (None, Some(ms)) => {
                    crate::services::timers::Schedule::Every(Duration::from_millis(ms.max(1)))
                }
                (None, None) => continue,
            };
            if let Err(e) = self.timers.schedule(token, &job.name, schedule) {
                tracing::warn!(plugin = %id, "job {}: {e}", job.name);
            }
        }
    }

    /// Drops everything the host holds for a context, then revokes it, waiting up to
    /// `deadline` for a timer run or host call still in progress. Once the host calls in
    /// progress have ended, what the context holds is dropped again: a plugin thread that
    /// passed the `closing` check before it was set adds its job or subscription after the
    /// first removal (and takes it away again itself, seeing `closing` after the insert; this
    /// second pass is the same rule from teardown's side).
    pub(crate) fn release_context(&self, token: ContextToken, deadline: Duration) {
        let started = Instant::now();
        let remaining = || deadline.saturating_sub(started.elapsed());
        if let Some(entry) = context::entry(token) {
            entry.closing.store(true, Ordering::SeqCst);
        }
        self.timers.cancel_all(token, deadline);
        self.events.remove_all(token);
        crate::failpoint::hit(crate::failpoint::CONTEXT_RELEASED);
        context::revoke(token, remaining());
        self.timers.cancel_all(token, remaining());
        self.events.remove_all(token);
    }

    /// Tears the running instance down (if any) within the plugin's deadline and revokes its
    /// context; `after` is the state it is left in when teardown is clean. The instance is
    /// destroyed only once no call is running on it; a call still running at the deadline
    /// leaves it abandoned, never destroyed. Every wait shares the one deadline.
    pub(crate) fn teardown(
        &self,
        plugin: &LoadedPlugin,
        after: PluginState,
    ) -> Option<TeardownRecord> {
        let retired = plugin.running.replace(None);
        let token = retired.get()?.token;
        let started = Instant::now();
        let deadline = plugin.policy.shutdown_deadline;
        let remaining = || deadline.saturating_sub(started.elapsed());
        if let Some(entry) = context::entry(token) {
            entry.closing.store(true, Ordering::SeqCst);
        }
        // No timer or event runs after this: cancel them and wait for one in progress.
        let timers_done = self.timers.cancel_all(token, deadline);
        self.events.remove_all(token);
        // Wait for the calls in flight on this instance, whether they read it through the cell
        // or hold a counted reference: `wait` hands it back only as the last reference.
        let running = retired.wait(remaining()).ok().flatten();
        let outcome = match running.map(Arc::try_unwrap) {
            Some(Ok(owned)) if timers_done && !remaining().is_zero() => {
                let instance = owned.instance;
                match run_with_deadline(remaining(), move || instance.destroy()) {
                    Some(Ok(())) => TeardownOutcome::Clean,
                    Some(Err(e)) => TeardownOutcome::Failed(describe(&e)),
                    None => TeardownOutcome::Abandoned,
                }
            }
            // Still in use at the deadline, a timer run still going, or no time left to run
            // `destroy`: it is not destroyed. Dropping our handle leaks the instance.
            Some(Ok(_) | Err(_)) | None => TeardownOutcome::Abandoned,
        };
        self.release_context(token, remaining());
        plugin.state.set(match outcome {
            TeardownOutcome::Abandoned => PluginState::Abandoned,
            _ => after,
        });
        let id = plugin.id().to_string();
        match &outcome {
            TeardownOutcome::Clean => tracing::info!(plugin = %id, "torn down"),
            other => {
                tracing::warn!(plugin = %id, outcome = ?other, "teardown did not finish cleanly")
            }
        }
        Some(TeardownRecord {
            id,
            outcome,
            elapsed: started.elapsed(),
            stopping: None,
            dependents: Vec::new(),
        })
    }
}

pub(crate) fn describe(e: &PluginError) -> String {
    if e.code == ErrorCode::PANICKED {
        format!("panicked: {}", e.message)
    } else {
        e.message.to_string()
    }
}
