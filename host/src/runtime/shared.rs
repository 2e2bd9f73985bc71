//! The runtime's shared core: the plugin table, the admin lock every operator action goes
//! through, fault accounting, hook participants, supervision.

use std::path::Path;
use std::sync::{Arc, Weak};

use airlock_abi::abi::InvocationKind;
use airlock_abi::manifest::PluginId;
use airlock_abi::wire::Envelope;
use airlock_abi::Health;

use parking_lot::Mutex;

use crate::error::{CallError, CallErrorCode, Error, Refusal};
use crate::library::file::LibraryFile;
use crate::runtime::supervisor::Supervisor;
use crate::services::audit::AuditLog;
use crate::services::events::EventBus;
use crate::services::kv::KvStore;
use crate::services::registry::Registry;
use crate::services::timers::TimerService;
use crate::sync::hazard::Guarded;
use crate::sync::watchdog::{self};

use super::called::fail;
use super::names::PluginTable;
use super::plugin::{Invoked, LoadedPlugin};
use crate::pipeline::{PipelineOptions, Taken};
use crate::runtime::outcome::{PluginState, ReloadOutcome};
use crate::services::Observed;

/// What a host shares with its service threads and with the contexts of its plugins.
pub(crate) struct HostShared {
    pub(crate) options: PipelineOptions,
    /// Plugins compiled into the host program (`HostBuilder::builtin`).
    /// Taken by the first `load`.
    pub(crate) builtins: Mutex<Vec<Result<LibraryFile, Refusal>>>,
    pub(crate) shadow: tempfile::TempDir,
    /// The plugin table, read by every call by name without a reference count.
    pub(crate) plugins: Guarded<PluginTable>,
    /// Serializes whatever changes the plugin table or a plugin's instance.
    pub(crate) admin: Mutex<()>,
    pub(crate) audit: AuditLog,
    pub(crate) kv: Option<KvStore>,
    pub(crate) events: EventBus,
    pub(crate) timers: TimerService,
    pub(crate) supervisor: Supervisor,
    pub(crate) me: Weak<HostShared>,
    /// Set for the authors' test harness: what plugins do is recorded, timers run only when
    /// fired, and calls to plugins that are not loaded get the answers given.
    pub(crate) observer: Option<Observer>,
    /// The embedding program's services.
    pub(crate) registry: Registry,
    /// The embedding program's approver, and the calls waiting for it.
    pub(crate) approvals: super::approvals::Approvals,
    /// Pending answers and the calls waiting for approval, in the state database.
    pub(crate) pending: crate::services::pending::PendingStore,
    /// The addresses the embedding program serves on (`Host::serving_on`): a plugin's outbound
    /// HTTP never reaches them.
    pub(crate) serving: parking_lot::RwLock<Vec<std::net::SocketAddr>>,
    /// The host as a whole, as plugins reach it: set by the embedding API once it is built.
    pub(crate) peers: std::sync::OnceLock<Box<dyn crate::services::peers::Peers>>,
    /// The circuit breakers of dispatched actions.
    pub(crate) breakers: super::breaker::Breakers,
    /// What the metrics count off the call path, and every generation's call meter (shared
    /// with the audit log, which counts the denials, reloads and restarts it records).
    pub(crate) tally: Arc<crate::observe::tally::Tally>,
}

/// What the authors' test harness asks of a host (`airlock::testing`).
#[derive(Debug, Default)]
pub(crate) struct Observer {
    /// What each plugin did, in order.
    pub(crate) seen: Mutex<Vec<(PluginId, Observed)>>,
    /// Answers for calls to plugins that are not loaded: plugin, action, envelope.
    pub(crate) answers: Vec<(String, String, Result<serde_json::Value, String>)>,
}

impl HostShared {
    /// Stops the host's threads (supervisor, event dispatcher, timers, audit writer) and waits
    /// for them. `Host` does it when dropped, on the embedder's thread, before it lets the
    /// runtime go: no thread of the host ever holds the last reference to it, so none has to
    /// join itself.
    pub(crate) fn stop_threads(&self) {
        self.supervisor.stop();
        self.events.stop();
        self.timers.stop();
        self.audit.close();
    }
}

/// The admin lock, held: whatever changes the plugin table or a plugin's instance holds one.
pub(crate) struct Admin<'a> {
    pub(super) shared: &'a HostShared,
    pub(super) _guard: parking_lot::MutexGuard<'a, ()>,
}

impl Admin<'_> {
    /// The plugin with this id, as the table holds it under the lock.
    pub(crate) fn plugin(&self, id: &str) -> Result<Arc<LoadedPlugin>, Error> {
        self.shared
            .find(id)
            .ok_or_else(|| Error::UnknownPlugin(id.to_owned()))
    }
}

impl HostShared {
    /// The plugin table as it is now (a counted reference: for administrative paths).
    pub(crate) fn table(&self) -> Arc<PluginTable> {
        self.plugins.load_full().unwrap_or_default()
    }

    /// Changes the plugin table; calls by name in progress finish with the table they read.
    pub(crate) fn update_table(&self, change: impl FnOnce(&mut Vec<Arc<LoadedPlugin>>)) {
        drop(self.plugins.update(|current| {
            let mut next = current.map(|t| t.to_vec()).unwrap_or_default();
            change(&mut next);
            Some(Arc::new(PluginTable::new(next)))
        }));
    }

    pub(crate) fn find(&self, id: &str) -> Option<Arc<LoadedPlugin>> {
        self.table()
            .iter()
            .rev()
            .find(|p| p.id().as_str() == id)
            .cloned()
    }

    /// What the loaded plugins `keep` selects hold (ids, files, claims): what the duplicate-id
    /// and claim rules check a new file against.
    pub(crate) fn taken(&self, keep: impl Fn(&LoadedPlugin) -> bool) -> Vec<Taken> {
        self.table()
            .iter()
            .filter(|p| keep(p))
            .map(|p| Taken::of(&p.file, true))
            .collect()
    }

    /// Takes the admin lock. Operator actions reach a plugin only through the guard
    /// ([`Admin::plugin`]): lock, then look up, so an action never works on a generation that a
    /// reload retired while it waited for the lock.
    pub(crate) fn admin(&self) -> Admin<'_> {
        Admin {
            shared: self,
            _guard: self.admin.lock(),
        }
    }
}

impl HostShared {
    /// The running plugins that declare `hook`, with the hook's index in their manifest, in
    /// ascending priority and then load order. Quarantined plugins are included: dispatch
    /// reports them as failures.
    pub(crate) fn hook_participants(&self, hook: &str) -> Vec<(Arc<LoadedPlugin>, u32)> {
        let plugins = self.table();
        let mut participants: Vec<(Arc<LoadedPlugin>, u32)> = plugins
            .iter()
            .filter(|p| p.running.is_some())
            .filter_map(|p| {
                let index = p.file.manifest.hooks.iter().position(|h| h.name == hook)?;
                Some((p.clone(), u32::try_from(index).ok()?))
            })
            .collect();
        participants.sort_by_key(|(p, _)| p.policy.priority);
        participants
    }

    /// Reports (and counts as faults) the calls into this host's plugins that are still running
    /// past their timeout, and frees retired values no call reads any more.
    pub(crate) fn watchdog_scan(&self) {
        // Values retired while a call still read them are freed once it has moved on.
        crate::sync::hazard::reclaim();
        let plugins = self.table();
        // A call is known by the address of the running instance it reads.
        let find = |key: usize| plugins.iter().find(|p| p.running.address() == key);
        watchdog::scan(
            |key| find(key).map(|p| (p.policy.call_timeout, p.policy.cancel_grace)),
            |key, running| {
                if let Some(plugin) = find(key) {
                    // An isolated plugin's worker is killed from here: whatever host thread
                    // talks to it is freed, whatever it waits on.
                    plugin.running.with(|r| r.map(|r| r.instance.kill_worker()));
                    self.fault(
                        plugin,
                        &format!(
                            "watchdog: a call has been running for {} ms, over its {} ms timeout and {} ms grace; it was told it is cancelled (native code cannot be pre-empted; it keeps its thread)",
                            running.as_millis(),
                            plugin.policy.call_timeout.as_millis(),
                            plugin.policy.cancel_grace.as_millis()
                        ),
                    );
                }
            },
        );
    }

    /// Polls the health of every running, non-quarantined plugin (on the health thread, a
    /// service thread: a serial plugin busy for longer than a short wait is passed over).
    pub(crate) fn poll_all_health(&self) {
        let plugins = self.table();
        for plugin in plugins.iter() {
            if plugin.state.get() != PluginState::Running || !plugin.running.is_some() {
                continue;
            }
            match self.poll_health(plugin) {
                Ok(_) => {}
                // A serial plugin busy with a call: asked again next time (the last answer
                // stays), and the others are not held up.
                Err(e) if e.code == CallErrorCode::Busy => {
                    tracing::debug!(plugin = %plugin.id(), "health check passed over: {e}");
                }
                Err(e) => tracing::warn!(plugin = %plugin.id(), "health check failed: {e}"),
            }
        }
    }

    /// Asks a plugin for its health and remembers the answer.
    pub(crate) fn poll_health(&self, loaded: &LoadedPlugin) -> Result<Health, CallError> {
        let id = loaded.id().as_str();
        let health = match self.invoke(loaded, InvocationKind::HEALTH, 0, "health", &[]) {
            Ok(bytes) => airlock_abi::wire::parse(&bytes)
                .map_err(|e| fail(id, "health", CallErrorCode::HandlerError, e.to_string()))?,
            Err(Invoked::Domain(message)) => Health::Error(message),
            Err(Invoked::Failed(code, message)) => return Err(fail(id, "health", code, message)),
        };
        *loaded.health.lock() = Some(health.clone());
        Ok(health)
    }
}

impl crate::runtime::supervisor::Supervised for HostShared {
    fn watchdog_scan(&self) {
        HostShared::watchdog_scan(self);
    }

    fn poll_all_health(&self) {
        HostShared::poll_all_health(self);
    }

    fn expire_pending(&self) {
        self.sweep_pending();
    }

    fn restart_dead_workers(&self) {
        HostShared::restart_dead_workers(self);
    }
}

impl crate::runtime::watch::Reload for HostShared {
    fn reload_file(&self, path: &Path, force: bool) -> ReloadOutcome {
        HostShared::reload_file(self, path, force)
    }

    fn remove_file(&self, path: &Path) -> Option<ReloadOutcome> {
        HostShared::remove_file(self, path)
    }
}

impl crate::services::HostServices for HostShared {
    fn resolve_pending(
        &self,
        plugin: &PluginId,
        key: &str,
        outcome: airlock_abi::wire::Envelope<serde_json::Value>,
    ) -> Result<(), crate::services::pending::PendingError> {
        let id = self.pending.by_key(plugin.as_str(), key)?;
        self.settle_pending(&id, outcome, &format!("plugin {plugin}"))
            .map(drop)
    }

    fn audit(&self) -> &AuditLog {
        &self.audit
    }

    fn kv(&self) -> Option<&KvStore> {
        self.kv.as_ref()
    }

    fn kv_keys(&self, plugin: &PluginId) -> Result<Option<crate::services::SealKeys>, String> {
        let ring = self.options.policy.kv_keys(plugin)?;
        if ring.is_empty() {
            return Ok(None);
        }
        crate::services::SealKeys::new(ring).map(Some)
    }

    fn events(&self) -> &EventBus {
        &self.events
    }

    fn timers(&self) -> &TimerService {
        &self.timers
    }

    fn check_event(
        &self,
        plugin: &PluginId,
        generation: u64,
        topic: &str,
        payload: &serde_json::Value,
    ) -> Result<(), String> {
        HostShared::check_event(self, plugin, generation, topic, payload)
    }

    fn registry(&self) -> &Registry {
        &self.registry
    }

    fn readable_secret(&self, name: &str) -> Result<String, crate::policy::Unreadable> {
        self.options.policy.readable_secret(name)
    }

    fn credential(&self, name: &str) -> Option<crate::policy::Credential> {
        self.options.policy.credential(name).cloned()
    }

    fn client_certificate(&self, name: &str) -> Option<crate::policy::ClientCertificate> {
        self.options.policy.client_certificate(name).cloned()
    }

    fn tls_roots(&self) -> Vec<std::path::PathBuf> {
        self.options.policy.host().tls_roots.clone()
    }

    fn http_policy(&self, plugin: &PluginId) -> crate::policy::HttpPolicy {
        self.options.policy.for_plugin(plugin).http.clone()
    }

    fn pinned(&self, name: &str) -> Option<Vec<std::net::IpAddr>> {
        self.options.policy.host().pinned(name).map(<[_]>::to_vec)
    }

    fn serving(&self) -> Vec<std::net::SocketAddr> {
        self.serving.read().clone()
    }

    fn observe(&self, plugin: &PluginId, what: Observed) {
        if let Some(observer) = &self.observer {
            observer.seen.lock().push((plugin.clone(), what));
        }
    }

    fn call_plugin(
        &self,
        plugin: &str,
        action: &str,
        input: &[u8],
    ) -> Result<Envelope<Vec<u8>>, CallError> {
        if let Some(observer) = &self.observer {
            let answer = observer
                .answers
                .iter()
                .find(|(p, a, _)| p == plugin && a == action)
                .filter(|_| self.find(plugin).is_none());
            if let Some((_, _, answer)) = answer {
                return Ok(match answer {
                    Ok(value) => Envelope::Ok(serde_json::to_vec(value).unwrap_or_default()),
                    Err(message) => Envelope::Error(message.clone()),
                });
            }
        }
        self.call_bytes(plugin, action, input)
    }

    fn peers(&self) -> Option<&dyn crate::services::peers::Peers> {
        self.peers.get().map(|p| &**p)
    }
}

#[cfg(feature = "testing")]
impl HostShared {
    /// What plugin `id` said of its config when it accepted it.
    pub(crate) fn warnings(&self, id: &str) -> Vec<String> {
        self.find(id)
            .map(|p| p.settings.lock().warnings.clone())
            .unwrap_or_default()
    }
}
