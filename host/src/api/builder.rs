//! [`HostBuilder`]: plugin directories, policy, built-in plugins, files; builds a [`super::Host`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::error::{Error, Refusal};
use crate::library::file::LibraryFile;
use crate::library::lock::Lock;
use crate::policy::Policy;
use crate::runtime::supervisor::Supervisor;
use crate::services::audit::AuditLog;
use crate::services::events::EventBus;
use crate::services::kv::KvStore;
use crate::services::pending::PendingStore;
use crate::services::registry::{Caller, Registry, ServiceError};
use crate::services::routines::RunRoutine;
use crate::services::timers::TimerService;
use crate::sync::hazard::Guarded;

use super::Host;
use crate::pipeline::PipelineOptions;
use crate::runtime::approvals::{Approval, ApprovalRequest, Approvals};
use crate::runtime::supervisor::Supervised;
use crate::runtime::{HostShared, Observer};
use crate::services::delivery::Deliver;

/// Builds a [`Host`].
#[derive(Debug)]
pub struct HostBuilder {
    pub(super) options: PipelineOptions,
    /// Plugins compiled into the host program, in registration order.
    pub(super) builtins: Vec<Result<LibraryFile, Refusal>>,
    /// Set by the authors' test harness.
    pub(super) observer: Option<Observer>,
    pub(super) shadow_parent: Option<PathBuf>,
    pub(super) lock_file: Option<PathBuf>,
    /// The embedding program's services.
    pub(super) registry: Registry,
    /// The embedding program's approver.
    pub(super) approvals: Approvals,
    /// The worker executable for isolated plugins, if set here.
    pub(super) worker: Option<PathBuf>,
    /// The embedding program's authentication of inbound HTTP, and the body limit.
    inbound: super::routes::Inbound,
    /// The program's handler of plugins' shutdown requests.
    pub(super) on_shutdown: super::control::OnShutdown,
}

impl Default for HostBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl HostBuilder {
    /// A builder with no plugin directories and the default policy.
    pub fn new() -> Self {
        Self {
            options: PipelineOptions::new(Vec::new()),
            builtins: Vec::new(),
            observer: None,
            shadow_parent: None,
            lock_file: None,
            registry: Registry::default(),
            approvals: Approvals::default(),
            worker: None,
            inbound: super::routes::Inbound::default(),
            on_shutdown: super::control::OnShutdown::default(),
        }
    }

    /// The worker executable isolated plugins run in (policy `isolation = "process"`); by
    /// default the policy's `[host] worker`, else `airlock-worker` beside this program.
    #[must_use]
    pub fn worker(mut self, program: impl Into<PathBuf>) -> Self {
        self.worker = Some(program.into());
        self
    }

    /// Pins `name` to `addresses` for plugins' outbound HTTP, instead of the system's
    /// resolver (as `[host] resolve` does in a policy file). The addresses are checked like
    /// resolved ones: a pinned private address is still refused unless the policy allows it.
    #[must_use]
    pub fn resolve(mut self, name: &str, addresses: &[std::net::IpAddr]) -> Self {
        self.options
            .policy
            .host_mut()
            .resolve
            .insert(name.to_ascii_lowercase(), addresses.to_vec());
        self
    }

    /// Authenticates the requests [`Host::handle_http`] serves, before any route is looked up:
    /// the principal the route's action runs on behalf of (`None`: the host program itself), or
    /// why the request is refused (`401`). Without it, every request is served as the host
    /// program's.
    #[must_use]
    pub fn http_auth(
        mut self,
        auth: impl Fn(&super::HttpIn) -> Result<Option<airlock_abi::wire::Principal>, String>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        self.inbound.auth = Some(Box::new(auth));
        self
    }

    /// The largest request body [`Host::handle_http`] accepts (`413` above it; default 1 MiB).
    #[must_use]
    pub fn max_request_body(mut self, bytes: usize) -> Self {
        self.inbound.max_body = bytes;
        self
    }

    /// How many route requests of one plugin [`Host::handle_http`] serves at once (default
    /// 32; at least 1): over it a request is answered `503` with `retry-after: 1` at once,
    /// without calling the plugin, so one plugin's slow route cannot take a concurrent
    /// server's threads from the others' routes.
    #[must_use]
    pub fn max_route_concurrency(mut self, requests: usize) -> Self {
        self.inbound.max_concurrency = requests.max(1);
        self
    }

    /// Registers the approver that the policy's `ask` permissions consult
    /// (the policy's `[[plugins.<id>.permissions]]`): it sees who calls which action or hook with what input, and
    /// answers [`Approval::Allow`], [`Approval::Deny`] or [`Approval::Later`] — then the call
    /// answers `pending_approval` with an id, and the program settles it with
    /// [`Host::approve`] or [`Host::refuse_approval`]. It runs on the calling thread; a panic in it is
    /// a denial. Without an approver, `ask` is a denial.
    #[must_use]
    pub fn approver(
        mut self,
        approver: impl Fn(&ApprovalRequest) -> Approval + Send + Sync + 'static,
    ) -> Self {
        self.approvals.approver = Some(Box::new(approver));
        self
    }

    /// Offers plugins operation `O` of a service of this program, named once in an interface
    /// crate the program and its plugins share ([`airlock_abi::contract`]). A plugin calls it
    /// with `ctx.service::<O>(&input)` and needs the capability `service:<service>.<operation>`
    /// (declared and granted, like any other); every call goes through the membrane: the
    /// capability check with one audit record per miss, run-time revocation, the contract's
    /// version, panics contained. `handler` receives the [`Caller`].
    ///
    /// An invalid registration (a bad name, a built-in service's name, an operation registered
    /// twice) makes [`HostBuilder::build`] fail with [`Error::Service`].
    pub fn operation<O: airlock_abi::contract::Operation>(
        mut self,
        handler: impl Fn(&Caller, O::Input) -> Result<O::Output, ServiceError> + Send + Sync + 'static,
    ) -> Self {
        self.registry.add::<O>(handler);
        self
    }

    /// Adds a directory to search for plugin libraries.
    pub fn plugin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.options.dirs.push(dir.into());
        self
    }

    /// Registers a plugin compiled into the host program. [`Host::load`] creates it before the
    /// libraries, through the same manifest checks, policy, grants, membrane, audit, hooks,
    /// faults and shutdown; it has no file, so discovery, reading and hashing do not apply (and
    /// a lock does not pin it). An invalid manifest is a `bad_manifest` refusal in the report.
    pub fn builtin<P: airlock_abi::Builtin>(mut self) -> Self {
        self.builtins.push(LibraryFile::builtin::<P>());
        self
    }

    /// For the authors' test harness: record what plugins do, run timers only when fired, and
    /// answer calls to plugins that are not loaded with `answers`.
    #[cfg(feature = "testing")]
    pub(crate) fn observed(
        mut self,
        answers: Vec<(String, String, Result<serde_json::Value, String>)>,
    ) -> Self {
        self.observer = Some(Observer {
            seen: Mutex::new(Vec::new()),
            answers,
        });
        self
    }

    /// For the authors' test harness: the services it registered.
    #[cfg(feature = "testing")]
    pub(crate) fn services(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    /// Adds every directory in `AIRLOCK_PLUGIN_PATH` (separated like `PATH`).
    pub fn plugin_dirs_from_env(mut self) -> Self {
        if let Some(path) = std::env::var_os("AIRLOCK_PLUGIN_PATH") {
            self.options.dirs.extend(std::env::split_paths(&path));
        }
        self
    }

    /// Uses `policy`.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.options.policy = policy;
        self
    }

    /// Reads the policy from a file.
    ///
    /// # Errors
    ///
    /// As [`Policy::from_file`].
    pub fn policy_file(self, path: &Path) -> Result<Self, Error> {
        Ok(self.policy(Policy::from_file(path)?))
    }

    /// Loads only the libraries pinned in this lock file (overrides the policy's
    /// `[host] lock`).
    pub fn lock_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.lock_file = Some(path.into());
        self
    }

    /// Keeps the key/value store in `dir` (overrides the policy's `[host] data_dir`).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.options.policy.host_mut().data_dir = Some(dir.into());
        self
    }

    /// Appends audit records to `path` (overrides the policy's `[host] audit_log`).
    pub fn audit_log(mut self, path: impl Into<PathBuf>) -> Self {
        self.options.policy.host_mut().audit_log = Some(path.into());
        self
    }

    /// Refuses libraries larger than `bytes` without reading them.
    pub fn max_library_size(mut self, bytes: u64) -> Self {
        self.options.max_library_size = bytes;
        self
    }

    /// Where to create the private directory for shadow copies (default: the system's
    /// temporary directory).
    pub fn shadow_dir(mut self, parent: impl Into<PathBuf>) -> Self {
        self.shadow_parent = Some(parent.into());
        self
    }

    /// The options this builder would check with (the lock file is read by [`Self::build`]
    /// and [`Self::check_options`]).
    pub fn options(&self) -> &PipelineOptions {
        &self.options
    }

    /// The options with the lock file read.
    ///
    /// # Errors
    ///
    /// [`Error::Lock`] if the lock file cannot be read.
    pub fn check_options(&self) -> Result<PipelineOptions, Error> {
        let mut options = self.options.clone();
        if let Some(worker) = &self.worker {
            options.policy.host_mut().worker = Some(worker.clone());
        }
        let lock_path = self
            .lock_file
            .clone()
            .or_else(|| options.policy.host().lock.clone());
        if let Some(path) = lock_path {
            options.lock = Some(Lock::from_file(&path)?);
        }
        Ok(options)
    }

    /// Creates the host and starts its services; nothing is loaded until [`Host::load`].
    ///
    /// # Errors
    ///
    /// [`Error::ShadowDir`], [`Error::DataDir`], [`Error::Kv`], [`Error::AuditLog`] or
    /// [`Error::Lock`] when the corresponding file or directory cannot be set up.
    pub fn build(mut self) -> Result<Host, Error> {
        if let Some(worker) = self.worker.take() {
            self.options.policy.host_mut().worker = Some(worker);
        }
        crate::membrane::register_built_ins(&mut self.registry);
        if let Some(e) = self.registry.invalid() {
            return Err(Error::Service(e.to_owned()));
        }
        let options = self.check_options()?;
        let parent = self.shadow_parent.unwrap_or_else(std::env::temp_dir);
        let shadow = tempfile::Builder::new()
            .prefix("airlock-shadow-")
            .tempdir_in(&parent)
            .map_err(|source| Error::ShadowDir {
                path: parent.clone(),
                source,
            })?;
        let settings = options.policy.host().clone();
        let kv = match &settings.data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| Error::DataDir {
                    path: dir.clone(),
                    source,
                })?;
                Some(KvStore::open(&dir.join("kv.redb"))?)
            }
            None => None,
        };
        let ttl = settings
            .pending_ttl
            .unwrap_or(crate::policy::DEFAULT_PENDING_TTL);
        let pending =
            PendingStore::open(kv.as_ref().map(KvStore::database), ttl).map_err(|e| Error::Kv {
                path: kv.as_ref().map(|k| k.path().to_owned()).unwrap_or_default(),
                message: e.to_string(),
            })?;
        let last = pending.last_approval_id().unwrap_or(0);
        self.approvals
            .next
            .store(last, std::sync::atomic::Ordering::Relaxed);
        let audit = match &settings.audit_log {
            Some(path) => AuditLog::to_file(path)?,
            None => AuditLog::in_memory(),
        };
        let health_interval = options.policy.health_interval();
        let routines = options.policy.routines().to_vec();
        let builtins = self.builtins;
        let observer = self.observer;
        let registry = self.registry;
        let manual_timers = observer.is_some();
        let tally = audit.tally().clone();
        let shared = Arc::new_cyclic(|me: &Weak<HostShared>| HostShared {
            tally,
            options,
            builtins: Mutex::new(builtins),
            shadow,
            plugins: Guarded::new(Some(Arc::default())),
            admin: Mutex::new(()),
            audit,
            kv,
            events: EventBus::start(
                me.clone() as Weak<dyn Deliver>,
                me.clone() as Weak<dyn RunRoutine>,
                routines,
            ),
            timers: if manual_timers {
                TimerService::manual(me.clone() as Weak<dyn Deliver>)
            } else {
                TimerService::start(me.clone() as Weak<dyn Deliver>)
            },
            supervisor: Supervisor::start(&(me.clone() as Weak<dyn Supervised>), health_interval),
            me: me.clone(),
            observer,
            registry,
            approvals: self.approvals,
            pending,
            serving: parking_lot::RwLock::default(),
            breakers: Default::default(),
            peers: std::sync::OnceLock::new(),
        });
        let host = Host {
            shared,
            hooks: Arc::default(),
            shutdowns: Arc::new(super::control::Shutdowns::new(self.on_shutdown)),
            inbound: self.inbound,
        };
        super::peers::HostPeers::install(&host);
        Ok(host)
    }
}
