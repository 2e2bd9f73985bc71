//! The embedding API: build a [`Host`] from plugin directories and a policy, load what can be
//! loaded (reporting every refusal), call actions, operate the plugins at run time (revoke a
//! capability, disable, enable, change config), and shut down in reverse load order.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use airlock_abi::{
    ActionDecl, Capability, CapabilityKind, Concurrency, ConfigReport, ContextToken, ErrorCode,
    Health, HookDecl, HookReply, InvocationKind, PluginError, PluginId,
};

use parking_lot::Mutex;
use serde::Serialize;

use crate::audit::{AuditLog, AuditOutcome, AuditRecord};
use crate::context::{self, ContextEntry, ShardedCounter};
use crate::decide::{decide, Decision};
use crate::discover::{discover, discover_one, Candidate};
use crate::error::{CallError, CallErrorCode, Error, Refusal, RefusalReason};
use crate::events::EventBus;
use crate::hooks::{HookDispatch, HookMode};
use crate::kv::KvStore;
use crate::library_file::{read_library, LibraryFile, Origin, DEFAULT_MAX_LIBRARY_SIZE};
use crate::loader::hazard::Guarded;
use crate::loader::{self, Creator, Instance, LoadedLibrary};
use crate::lock::Lock;
use crate::policy::{PluginPolicy, Policy};
use crate::report::{LoadReport, PluginReport, Status};
use crate::supervisor::Supervisor;
use crate::timers::TimerService;
use crate::watch::Watcher;
use crate::watchdog::{self, Watch};

/// Options shared by checking and loading.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Directories searched for libraries, in order.
    pub dirs: Vec<PathBuf>,
    /// The operator's policy.
    pub policy: Policy,
    /// Libraries larger than this are refused (`too_large`) without being read.
    pub max_library_size: u64,
    /// If set, only libraries pinned here load.
    pub lock: Option<Lock>,
}

impl PipelineOptions {
    /// Options for `dirs` with the default policy, no lock and the default size cap.
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        Self {
            dirs,
            policy: Policy::default(),
            max_library_size: DEFAULT_MAX_LIBRARY_SIZE,
            lock: None,
        }
    }
}

/// A library that passed stages 1–3.
#[derive(Debug)]
pub struct Checked {
    /// What stage 2 read.
    pub file: LibraryFile,
    /// What stage 3 decided.
    pub decision: Decision,
}

/// Runs stages 1–3 over every directory: nothing of any plugin runs. One entry per file, in
/// discovery order; a later file whose id an earlier one already has is refused (`duplicate_id`).
///
/// # Errors
///
/// [`Error::PluginDir`] if a directory cannot be read.
pub fn check(options: &PipelineOptions) -> Result<Vec<Result<Checked, Refusal>>, Error> {
    Ok(decide_all(
        options,
        read_all(options, discover(&options.dirs)?),
        &[],
    ))
}

/// Stage 2 for what stage 1 found, spread over the cores (reading and hashing are independent
/// per file); results in input order.
fn read_all(
    options: &PipelineOptions,
    candidates: Vec<Result<Candidate, Refusal>>,
) -> Vec<Result<LibraryFile, Refusal>> {
    parallel_map(candidates, |candidate| {
        candidate.and_then(|c| read_library(&c.file, &c.open, options.max_library_size))
    })
}

/// Stage 3 for what stage 2 read, in order. The one composition that startup (`check`, `load`,
/// `lock`, `validate`) and reload share: a file whose id another file already provides — a
/// loaded one (`taken`) or an earlier one here — is refused `duplicate_id`; the rest are decided.
fn decide_all(
    options: &PipelineOptions,
    files: Vec<Result<LibraryFile, Refusal>>,
    taken: &[(PluginId, PathBuf)],
) -> Vec<Result<Checked, Refusal>> {
    let mut seen = taken.to_vec();
    files
        .into_iter()
        .map(|file| {
            file.and_then(|file| {
                refuse_duplicate(&file, &seen)?;
                // The id is claimed even if the policy then refuses the file: a second file
                // with it is a duplicate either way.
                seen.push((file.manifest.id.clone(), file.path.clone()));
                decide_checked(options, file)
            })
        })
        .collect()
}

/// `duplicate_id` if another file in `taken` provides `file`'s id.
fn refuse_duplicate(file: &LibraryFile, taken: &[(PluginId, PathBuf)]) -> Result<(), Refusal> {
    let id = &file.manifest.id;
    match taken.iter().find(|(taken_id, _)| taken_id == id) {
        None => Ok(()),
        Some((_, first)) => Err(Refusal::new(
            &file.path,
            RefusalReason::DuplicateId,
            format!(
                "plugin id {id} is already provided by {}; remove one of the two files",
                first.display()
            ),
        )
        .with_id(id)),
    }
}

/// Stage 3's policy and version checks for one file.
fn decide_checked(options: &PipelineOptions, file: LibraryFile) -> Result<Checked, Refusal> {
    let decision = decide(&file, &options.policy, options.lock.as_ref())?;
    Ok(Checked { file, decision })
}

/// Whether two paths name the same file (as written, or once resolved).
fn same_path(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(a), Ok(b)) if a == b
        )
}

/// `f` over `items` on up to as many threads as there are cores; results in input order.
fn parallel_map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(items.len());
    if workers <= 1 {
        return items.into_iter().map(f).collect();
    }
    let len = items.len();
    let queue = Mutex::new(items.into_iter().enumerate());
    let results = Mutex::new(Vec::with_capacity(len));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let Some((i, item)) = queue.lock().next() else {
                    break;
                };
                let result = f(item);
                results.lock().push((i, result));
            });
        }
    });
    let mut results = results.into_inner();
    results.sort_unstable_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Stages 1–3 as a report.
///
/// # Errors
///
/// [`Error::PluginDir`] if a directory cannot be read.
pub fn check_report(options: &PipelineOptions) -> Result<LoadReport, Error> {
    let plugins = check(options)?
        .iter()
        .map(|r| match r {
            Ok(c) => ok_report(&c.file, "passed stages 1-3 (not loaded)".to_owned()),
            Err(refusal) => PluginReport::refused(refusal, None),
        })
        .collect();
    Ok(LoadReport { plugins })
}

/// Pins what passes stages 1–3 (ignoring any lock already in force): the lock `airlock lock`
/// writes to `output`. Refused files are in the report and not pinned.
///
/// # Errors
///
/// [`Error::PluginDir`] if a directory cannot be read.
pub fn pin(options: &PipelineOptions, output: &Path) -> Result<(Lock, LoadReport), Error> {
    let options = PipelineOptions {
        lock: None,
        ..options.clone()
    };
    let mut entries = std::collections::BTreeMap::new();
    let mut report = LoadReport::default();
    for checked in check(&options)? {
        match checked {
            Ok(c) => {
                let file_name = c
                    .file
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                report.plugins.push(ok_report(
                    &c.file,
                    format!("pinned sha256 {}", c.file.sha256),
                ));
                entries.insert(
                    c.file.manifest.id.clone(),
                    crate::lock::LockEntry {
                        sha256: c.file.sha256.clone(),
                        version: c.file.manifest.version.to_string(),
                        file: file_name,
                    },
                );
            }
            Err(refusal) => report.plugins.push(PluginReport::refused(&refusal, None)),
        }
    }
    Ok((Lock::new(output, entries), report))
}

fn ok_report(file: &LibraryFile, detail: String) -> PluginReport {
    PluginReport {
        file: file.path.clone(),
        id: Some(file.manifest.id.to_string()),
        version: Some(file.manifest.version.to_string()),
        status: Status::Ok,
        reason: None,
        detail,
    }
}

/// Builds a [`Host`].
#[derive(Debug)]
pub struct HostBuilder {
    options: PipelineOptions,
    /// Plugins compiled into the host program, in registration order.
    builtins: Vec<Result<LibraryFile, Refusal>>,
    shadow_parent: Option<PathBuf>,
    lock_file: Option<PathBuf>,
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
            shadow_parent: None,
            lock_file: None,
        }
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
    pub fn build(self) -> Result<Host, Error> {
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
        let audit = match &settings.audit_log {
            Some(path) => AuditLog::to_file(path)?,
            None => AuditLog::in_memory(),
        };
        let health_interval = options.policy.health_interval();
        let builtins = self.builtins;
        let shared = Arc::new_cyclic(|me: &Weak<HostShared>| HostShared {
            options,
            builtins,
            shadow,
            plugins: Guarded::new(Some(Arc::new(Vec::new()))),
            admin: Mutex::new(()),
            audit,
            kv,
            events: EventBus::start(me.clone()),
            timers: TimerService::start(me.clone()),
            supervisor: Supervisor::start(me, health_interval),
            hook_modes: Mutex::new(std::collections::BTreeMap::new()),
            me: me.clone(),
        });
        Ok(Host { shared })
    }
}

/// Where a plugin is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginState {
    /// Serving calls.
    Running,
    /// Disabled by the operator; its context is revoked. `enable` creates it again.
    Disabled,
    /// Torn down at shutdown; its context is revoked.
    Stopped,
    /// Teardown failed or overran its deadline; its context is revoked and it was abandoned.
    Abandoned,
    /// Creating it again (enable, config change) failed; see the log.
    Failed,
    /// Loaded but faulted too often: calls fail fast until an operator enables it again.
    Quarantined,
}

impl std::fmt::Display for PluginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            Self::Running => "running",
            Self::Disabled => "disabled",
            Self::Stopped => "stopped",
            Self::Abandoned => "abandoned",
            Self::Failed => "failed",
            Self::Quarantined => "quarantined",
        };
        f.write_str(text)
    }
}

/// What the host shows about a loaded plugin.
#[derive(Debug, Clone, Serialize)]
pub struct PluginInfo {
    /// The plugin's id.
    pub id: String,
    /// The plugin's version.
    pub version: String,
    /// From the manifest.
    pub description: String,
    /// The library file it was loaded from.
    pub file: PathBuf,
    /// sha256 of the bytes loaded.
    pub sha256: String,
    /// The airlock-abi version it was built against.
    pub abi_version: String,
    /// The compiler that built it.
    pub rustc: String,
    /// Increases by one each time an instance is created.
    pub generation: u64,
    /// Running, disabled, stopped…
    pub state: PluginState,
    /// Serial or parallel.
    pub concurrency: Concurrency,
    /// Declared actions.
    pub actions: Vec<ActionDecl>,
    /// Declared hooks.
    pub hooks: Vec<HookDecl>,
    /// Effective grants now (declared ∩ granted, less what was revoked at run time).
    pub grants: Vec<String>,
    /// The token of its current context (revoked once it is not running).
    #[serde(skip)]
    pub context: ContextToken,
    /// How long stages 2–5 took for it.
    pub load_time: Duration,
    /// Counters.
    pub stats: PluginStats,
    /// The last health the plugin reported (polled by the host).
    pub health: Option<Health>,
}

/// Per-plugin counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PluginStats {
    /// Actions called.
    pub calls: u64,
    /// Calls the plugin made into the host (current context).
    pub host_calls: u64,
    /// Capability violations (current context).
    pub denials: u64,
    /// Events delivered.
    pub events: u64,
    /// Timer runs.
    pub timer_runs: u64,
    /// Event subscriptions held.
    pub subscriptions: u64,
    /// Timer jobs scheduled.
    pub timers: u64,
    /// Faults: panics contained and calls that overran their timeout.
    pub faults: u64,
}

/// A domain result of an action: the result envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "data", rename_all = "lowercase")]
pub enum ActionOutcome {
    /// `ok(data)`.
    Ok(serde_json::Value),
    /// `error(message)`: the action refused, for a reason of its own domain.
    Error(String),
}

/// How one plugin's teardown ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "detail", rename_all = "snake_case")]
pub enum TeardownOutcome {
    /// Returned within the deadline.
    Clean,
    /// Returned an error or panicked (contained).
    Failed(String),
    /// Overran its deadline: revoked and abandoned; its library stays mapped.
    Abandoned,
}

/// One plugin's teardown.
#[derive(Debug, Clone, Serialize)]
pub struct TeardownRecord {
    /// The plugin.
    pub id: String,
    /// How it ended.
    pub outcome: TeardownOutcome,
    /// How long it took (up to the deadline).
    pub elapsed: Duration,
}

/// How a config change was applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigApplied {
    /// True if the plugin took it live; false if it was re-created.
    pub live: bool,
    /// The plugin's warnings about the config.
    pub warnings: Vec<String>,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// A new generation is serving (or a new plugin was loaded).
    Loaded {
        /// The plugin.
        id: String,
        /// Its generation now.
        generation: u64,
        /// From reading the file to serving the new generation.
        elapsed: Duration,
    },
    /// The file has the bytes already loaded; nothing was done.
    Unchanged {
        /// The plugin.
        id: String,
    },
    /// The new build was refused before the swap; the old generation (if any) keeps serving.
    Refused {
        /// Why.
        refusal: Refusal,
        /// The generation still serving, if any.
        serving: Option<u64>,
    },
}

impl std::fmt::Display for ReloadOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Loaded {
                id,
                generation,
                elapsed,
            } => write!(
                f,
                "{id}: generation {generation} loaded in {:.1} ms",
                elapsed.as_secs_f64() * 1e3
            ),
            Self::Unchanged { id } => write!(f, "{id}: unchanged, not reloaded"),
            Self::Refused { refusal, serving } => {
                let id = refusal
                    .id
                    .as_ref()
                    .map_or_else(|| refusal.file.display().to_string(), ToString::to_string);
                write!(
                    f,
                    "{id}: reload refused: {} ({})",
                    refusal.reason, refusal.detail
                )?;
                match serving {
                    Some(g) => write!(f, " — still serving generation {g}"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// A live instance and the context it was created with.
struct Running {
    instance: Instance,
    token: ContextToken,
}

#[derive(Default)]
struct Counters {
    calls: ShardedCounter,
    events: AtomicU64,
    timer_runs: AtomicU64,
    faults: AtomicU64,
}

/// How an invocation ended when it did not return bytes.
pub(crate) enum Invoked {
    /// The plugin's own domain error.
    Domain(String),
    /// An infrastructure failure, with its code.
    Failed(CallErrorCode, String),
}

pub(crate) struct LoadedPlugin {
    file: LibraryFile,
    policy: PluginPolicy,
    /// The library the code came from; `None` for a built-in plugin.
    _library: Option<LoadedLibrary>,
    creator: Creator,
    grants: Mutex<Vec<Capability>>,
    /// Grants the operator revoked at run time; they stay revoked across reloads.
    revoked: Mutex<Vec<Capability>>,
    config: Mutex<serde_json::Value>,
    running: Guarded<Running>,
    state: Mutex<PluginState>,
    last_token: Mutex<ContextToken>,
    generation: AtomicU64,
    serial: Option<SerialGate>,
    load_time: Duration,
    counters: Counters,
    quarantined: AtomicBool,
    recent_faults: Mutex<VecDeque<Instant>>,
    health: Mutex<Option<Health>>,
}

impl LoadedPlugin {
    pub(crate) fn id(&self) -> &PluginId {
        &self.file.manifest.id
    }

    /// Identifies the plugin to the watchdog while it is loaded.
    fn key(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }
}

/// Keeps a `serial` plugin to one call at a time, and knows which thread is inside, so that a
/// call cycle back into the plugin (A → B → A) is refused instead of deadlocking the thread on
/// its own lock.
#[derive(Default)]
struct SerialGate {
    lock: Mutex<()>,
    /// The record index + 1 of the thread inside; 0 when none.
    holder: std::sync::atomic::AtomicUsize,
}

/// A thread inside a serial plugin; leaving it lets the next call in.
struct SerialPass<'a> {
    gate: &'a SerialGate,
    _guard: parking_lot::MutexGuard<'a, ()>,
}

impl SerialGate {
    /// Waits for the plugin to be free; `None` if this very thread is already inside it.
    fn enter(&self) -> Option<SerialPass<'_>> {
        // 0 when the thread has no record (its locals are being torn down): never a match.
        let me = crate::loader::hazard::this_thread().map_or(0, |r| r.index() + 1);
        if me != 0 && self.holder.load(Ordering::Relaxed) == me {
            return None;
        }
        let guard = self.lock.lock();
        self.holder.store(me, Ordering::Relaxed);
        Some(SerialPass {
            gate: self,
            _guard: guard,
        })
    }
}

impl Drop for SerialPass<'_> {
    fn drop(&mut self) {
        self.gate.holder.store(0, Ordering::Relaxed);
    }
}

/// How deeply plugin-to-plugin calls may nest on one thread. Deeper calls are refused with
/// `too_deep`: a cycle through parallel plugins would otherwise recurse until the stack
/// overflows and the host dies.
pub const MAX_CALL_DEPTH: u32 = 8;

/// What a host shares with its service threads and with the contexts of its plugins.
pub(crate) struct HostShared {
    pub(crate) options: PipelineOptions,
    /// Plugins compiled into the host program (`HostBuilder::builtin`).
    builtins: Vec<Result<LibraryFile, Refusal>>,
    shadow: tempfile::TempDir,
    /// The plugin table, read by every call by name without a reference count.
    plugins: Guarded<Vec<Arc<LoadedPlugin>>>,
    /// Serializes whatever changes the plugin table or a plugin's instance.
    admin: Mutex<()>,
    pub(crate) audit: AuditLog,
    pub(crate) kv: Option<KvStore>,
    pub(crate) events: EventBus,
    pub(crate) timers: TimerService,
    supervisor: Supervisor,
    hook_modes: Mutex<std::collections::BTreeMap<String, HookMode>>,
    me: Weak<HostShared>,
}

impl Drop for HostShared {
    fn drop(&mut self) {
        self.supervisor.stop();
        self.events.stop();
        self.timers.stop();
        self.audit.close();
    }
}

/// A host: loads plugins, serves calls into them, operates them, and tears them down.
///
/// All methods take `&self`; a host can be shared between threads. Dropping it shuts it down
/// (as [`Host::shutdown`]) if that has not been done.
pub struct Host {
    shared: Arc<HostShared>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("dirs", &self.shared.options.dirs)
            .field("plugins", &self.shared.table().len())
            .finish_non_exhaustive()
    }
}

fn fail(plugin: &str, action: &str, code: CallErrorCode, message: String) -> CallError {
    CallError {
        code,
        plugin: plugin.to_owned(),
        action: action.to_owned(),
        message,
    }
}

/// The admin lock, held: whatever changes the plugin table or a plugin's instance holds one.
struct Admin<'a> {
    shared: &'a HostShared,
    _guard: parking_lot::MutexGuard<'a, ()>,
}

impl Admin<'_> {
    /// The plugin with this id, as the table holds it under the lock.
    fn plugin(&self, id: &str) -> Result<Arc<LoadedPlugin>, Error> {
        self.shared
            .find(id)
            .ok_or_else(|| Error::UnknownPlugin(id.to_owned()))
    }
}

impl HostShared {
    /// The plugin table as it is now (a counted reference: for administrative paths).
    fn table(&self) -> Arc<Vec<Arc<LoadedPlugin>>> {
        self.plugins.load_full().unwrap_or_default()
    }

    /// Changes the plugin table; calls by name in progress finish with the table they read.
    fn update_table(&self, change: impl FnOnce(&mut Vec<Arc<LoadedPlugin>>)) {
        drop(self.plugins.update(|current| {
            let mut next = current.map(|t| Vec::clone(t)).unwrap_or_default();
            change(&mut next);
            Some(Arc::new(next))
        }));
    }

    fn find(&self, id: &str) -> Option<Arc<LoadedPlugin>> {
        self.table()
            .iter()
            .rev()
            .find(|p| p.id().as_str() == id)
            .cloned()
    }

    /// Takes the admin lock. Operator actions reach a plugin only through the guard
    /// ([`Admin::plugin`]): lock, then look up, so an action never works on a generation that a
    /// reload retired while it waited for the lock.
    fn admin(&self) -> Admin<'_> {
        Admin {
            shared: self,
            _guard: self.admin.lock(),
        }
    }

    /// Runs one invocation on the running instance of `plugin`: fails fast when quarantined or
    /// not running, serializes `serial` plugins, publishes the call to the watchdog, and turns
    /// panics and overruns into counted faults. Every call into a plugin instance goes through
    /// here.
    pub(crate) fn invoke(
        &self,
        plugin: &LoadedPlugin,
        kind: InvocationKind,
        index: u32,
        name: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, Invoked> {
        self.invoke_addressed(plugin, None, kind, index, name, payload)
    }

    /// [`HostShared::invoke`] for a delivery addressed to the instance of context `to` (an
    /// event or a timer run): if that instance is no longer the running one, nothing runs and
    /// the answer is `revoked`. The check and the call read the running instance once.
    pub(crate) fn invoke_addressed(
        &self,
        plugin: &LoadedPlugin,
        to: Option<ContextToken>,
        kind: InvocationKind,
        index: u32,
        name: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, Invoked> {
        let id = plugin.id();
        if plugin.quarantined.load(Ordering::Acquire) {
            return Err(Invoked::Failed(
                CallErrorCode::Quarantined,
                format!("plugin {id} is quarantined after repeated faults; an operator must enable it again"),
            ));
        }
        plugin.running.with(|running| {
            let running = running.ok_or_else(|| {
                let state = *plugin.state.lock();
                Invoked::Failed(CallErrorCode::Revoked, format!("plugin {id} is {state}"))
            })?;
            if to.is_some_and(|to| to != running.token) {
                return Err(Invoked::Failed(
                    CallErrorCode::Revoked,
                    format!("addressed to an instance of {id} that has been torn down"),
                ));
            }
            self.invoke_running(plugin, running, kind, index, name, payload)
        })
    }

    /// [`HostShared::invoke`] on the instance that is running.
    #[inline]
    fn invoke_running(
        &self,
        plugin: &LoadedPlugin,
        running: &Running,
        kind: InvocationKind,
        index: u32,
        name: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, Invoked> {
        let _serial = match &plugin.serial {
            None => None,
            Some(gate) => Some(gate.enter().ok_or_else(|| {
                Invoked::Failed(
                    CallErrorCode::Reentrant,
                    format!(
                        "plugin {} is serial and this thread is already inside it (a call cycle); \
                         refused instead of deadlocking",
                        plugin.id()
                    ),
                )
            })?),
        };
        // The watchdog times the call (and counts the fault) from its own thread: the call path
        // reads the clock once, when it publishes the call.
        let watch = Watch::enter(plugin.key());
        let result = running.instance.invoke(kind, index, name, payload);
        let overran = watch.reported();
        drop(watch);
        let timeout = plugin.policy.call_timeout;
        match result {
            Err(e) if e.code == ErrorCode::PANICKED => {
                let message = e.message.into_string();
                self.fault(plugin, &format!("{name} panicked: {message}"));
                Err(Invoked::Failed(CallErrorCode::Panicked, message))
            }
            _ if overran => Err(Invoked::Failed(
                CallErrorCode::Timeout,
                format!(
                    "{name} overran the {} ms call timeout; its result was discarded",
                    timeout.as_millis()
                ),
            )),
            Ok(bytes) => Ok(bytes),
            Err(e) if e.code == ErrorCode::DOMAIN => Err(Invoked::Domain(e.message.into_string())),
            Err(e) => Err(Invoked::Failed(
                plugin_error_code(e.code),
                e.message.into_string(),
            )),
        }
    }

    /// Counts a fault of `plugin`; enough of them in the policy's window quarantine it.
    pub(crate) fn fault(&self, plugin: &LoadedPlugin, what: &str) {
        plugin.counters.faults.fetch_add(1, Ordering::Relaxed);
        let policy = &plugin.policy;
        let now = Instant::now();
        let quarantine = {
            let mut recent = plugin.recent_faults.lock();
            recent.push_back(now);
            while recent
                .front()
                .is_some_and(|t| now.duration_since(*t) > policy.quarantine_window)
            {
                recent.pop_front();
            }
            policy.quarantine_faults > 0 && recent.len() >= policy.quarantine_faults as usize
        };
        tracing::warn!(plugin = %plugin.id(), "fault: {what}");
        if quarantine && !plugin.quarantined.swap(true, Ordering::AcqRel) {
            tracing::error!(
                plugin = %plugin.id(),
                "quarantined after {} faults within {} ms; `enable` it to try again",
                policy.quarantine_faults,
                policy.quarantine_window.as_millis()
            );
        }
    }

    /// The current plugin with this id and the index of `action` in its manifest.
    pub(crate) fn resolve(
        &self,
        plugin: &str,
        action: &str,
    ) -> Result<(Arc<LoadedPlugin>, usize), CallError> {
        lookup(&self.table(), plugin, action).map(|(loaded, index)| (loaded.clone(), index))
    }

    /// Whether `loaded` has been replaced in the table by a newer generation (a reload).
    fn replaced(&self, loaded: &LoadedPlugin) -> bool {
        self.find(loaded.id().as_str())
            .is_some_and(|current| !std::ptr::eq(Arc::as_ptr(&current), loaded))
    }

    /// Calls an action with JSON bytes; see [`Host::call_bytes`]. A call that raced a reload
    /// (it found the old generation already retired) goes to the new generation.
    pub(crate) fn call_bytes(
        &self,
        plugin: &str,
        action: &str,
        input: &[u8],
    ) -> Result<Result<Vec<u8>, String>, CallError> {
        let mut attempts = 0;
        loop {
            // Looked up in the table as read (no reference count is written per call); the
            // table a call read stays alive until the call returns.
            let result = self.plugins.with(|plugins| {
                let (loaded, index) =
                    lookup(plugins.map_or(&[][..], Vec::as_slice), plugin, action)?;
                let result = self.call_index(loaded, index, action, input);
                let retry = matches!(&result, Err(e) if e.code == CallErrorCode::Revoked)
                    && self.replaced(loaded);
                Ok((result, retry))
            });
            match result? {
                (_, true) if attempts < 8 => attempts += 1,
                (result, _) => return result,
            }
        }
    }

    /// Calls the action at `index` of a plugin already looked up.
    pub(crate) fn call_index(
        &self,
        loaded: &LoadedPlugin,
        index: usize,
        action: &str,
        input: &[u8],
    ) -> Result<Result<Vec<u8>, String>, CallError> {
        loaded.counters.calls.add(1);
        // A manifest declares at most 256 actions, so the index always fits.
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        match self.invoke(loaded, InvocationKind::ACTION, index, action, input) {
            Ok(bytes) => Ok(Ok(bytes)),
            Err(Invoked::Domain(message)) => Ok(Err(message)),
            Err(Invoked::Failed(code, message)) => {
                Err(fail(loaded.id().as_str(), action, code, message))
            }
        }
    }

    /// Delivers an event or timer run to the plugin whose current context is `token`; does
    /// nothing if that plugin is no longer running under that token.
    pub(crate) fn deliver(
        &self,
        token: ContextToken,
        kind: InvocationKind,
        name: &str,
        payload: &[u8],
    ) {
        let plugins = self.table();
        let Some(plugin) = plugins
            .iter()
            .find(|p| p.running.with(|r| r.is_some_and(|r| r.token == token)))
        else {
            return;
        };
        crate::failpoint::hit(crate::failpoint::DELIVER_MATCHED);
        let delivered = match self.invoke_addressed(plugin, Some(token), kind, 0, name, payload) {
            Ok(_) | Err(Invoked::Domain(_)) => true,
            // Torn down since it was found: it was for that instance, not for its successor.
            Err(Invoked::Failed(CallErrorCode::Revoked, _)) => false,
            Err(Invoked::Failed(code, message)) => {
                tracing::warn!(plugin = %plugin.id(), name, %code, "delivery failed: {message}");
                true
            }
        };
        if delivered {
            let counter = if kind == InvocationKind::TIMER {
                &plugin.counters.timer_runs
            } else {
                &plugin.counters.events
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The mode a hook was defined with.
    pub(crate) fn hook_mode(&self, hook: &str) -> Option<HookMode> {
        self.hook_modes.lock().get(hook).copied()
    }

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
        crate::loader::hazard::reclaim();
        let plugins = self.table();
        let find = |key: usize| plugins.iter().find(|p| p.key() == key);
        watchdog::scan(
            |key| find(key).map(|p| p.policy.call_timeout),
            |key, running| {
                if let Some(plugin) = find(key) {
                    self.fault(
                        plugin,
                        &format!(
                            "watchdog: a call has been running for {} ms, over its {} ms timeout (native code cannot be pre-empted; it keeps its thread)",
                            running.as_millis(),
                            plugin.policy.call_timeout.as_millis()
                        ),
                    );
                }
            },
        );
    }

    /// Polls the health of every running, non-quarantined plugin.
    pub(crate) fn poll_all_health(&self) {
        let plugins = self.table();
        for plugin in plugins.iter() {
            if plugin.quarantined.load(Ordering::Acquire) || !plugin.running.is_some() {
                continue;
            }
            if let Err(e) = self.poll_health(plugin) {
                tracing::warn!(plugin = %plugin.id(), "health check failed: {e}");
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

    /// Stage 4 and 5 for one checked library.
    fn load_one(&self, checked: Checked) -> Result<LoadedPlugin, Refusal> {
        let prepared = self.prepare_timed(checked)?;
        self.start_prepared(prepared)
    }

    /// Stage 4 for a first load, timed.
    fn prepare_timed(&self, checked: Checked) -> Result<(LoadedPlugin, Duration), Refusal> {
        let started = Instant::now();
        let plugin = self.prepare(checked, None)?;
        Ok((plugin, started.elapsed()))
    }

    /// Stage 5 for a plugin [`HostShared::prepare_timed`] prepared.
    fn start_prepared(
        &self,
        (mut plugin, prepare_time): (LoadedPlugin, Duration),
    ) -> Result<LoadedPlugin, Refusal> {
        let started = Instant::now();
        let config = plugin.config.lock().clone();
        self.start_instance(&plugin, &config, None)?;
        plugin.load_time = prepare_time + started.elapsed();
        Ok(plugin)
    }

    /// Stage 4 and the config check for one checked library: a plugin ready to be started.
    /// `previous` is the generation it replaces on a reload: its config, revocations and
    /// generation count carry over.
    fn prepare(
        &self,
        checked: Checked,
        previous: Option<&LoadedPlugin>,
    ) -> Result<LoadedPlugin, Refusal> {
        let Checked { mut file, decision } = checked;
        // The one branch on where the code comes from: a checked library, or the host itself.
        let (library, creator) = match file.origin {
            Origin::File => {
                let library = loader::load(&file, self.shadow.path(), self.options.lock.is_some())?;
                let creator = library.creator();
                (Some(library), creator)
            }
            Origin::Builtin(module) => (None, Creator::from_module(module)),
        };
        file.release_bytes();
        let (config, revoked, generation) = match previous {
            Some(old) => (
                old.config.lock().clone(),
                old.revoked.lock().clone(),
                old.generation.load(Ordering::SeqCst),
            ),
            None => (decision.policy.config.clone(), Vec::new(), 0),
        };
        let grants: Vec<Capability> = decision
            .grants
            .into_iter()
            .filter(|g| !revoked.contains(g))
            .collect();
        let serial = (file.manifest.concurrency == Concurrency::Serial).then(SerialGate::default);
        let plugin = LoadedPlugin {
            creator,
            _library: library,
            grants: Mutex::new(grants),
            revoked: Mutex::new(revoked),
            config: Mutex::new(config.clone()),
            policy: decision.policy,
            file,
            running: Guarded::default(),
            state: Mutex::new(PluginState::Failed),
            last_token: Mutex::new(ContextToken {
                slot: u32::MAX,
                generation: 0,
            }),
            generation: AtomicU64::new(generation),
            serial,
            load_time: Duration::ZERO,
            counters: Counters::default(),
            quarantined: AtomicBool::new(false),
            recent_faults: Mutex::new(VecDeque::new()),
            health: Mutex::new(None),
        };
        for warning in self.validate(&plugin, &config)? {
            tracing::warn!(plugin = %plugin.id(), "config: {warning}");
        }
        Ok(plugin)
    }

    /// Reloads the plugin built into `path` (or loads it, if no plugin has its id yet): stages
    /// 2–5 on a new shadow copy, then an atomic swap. Calls in flight finish on the old
    /// generation, which is then drained, torn down and revoked. If anything fails before the
    /// swap, the old generation keeps serving. Unchanged bytes are skipped unless `force`.
    pub(crate) fn reload_file(&self, path: &Path, force: bool) -> ReloadOutcome {
        let started = Instant::now();
        let _admin = self.admin();
        let table = self.table();
        // Stages 1 and 2 under the same rules as startup (permissions, symlinks, whole file).
        let read = discover_one(path)
            .and_then(|c| read_library(&c.file, &c.open, self.options.max_library_size));
        let file = match read {
            Ok(file) => file,
            Err(mut refusal) => {
                // Not readable as a plugin: whatever was loaded from this path keeps serving.
                let previous = table
                    .iter()
                    .find(|p| same_path(&p.file.path, path))
                    .cloned();
                let serving = previous.as_ref().and_then(|p| {
                    refusal.id = Some(p.id().clone());
                    p.running
                        .is_some()
                        .then(|| p.generation.load(Ordering::SeqCst))
                });
                let outcome = ReloadOutcome::Refused { refusal, serving };
                tracing::warn!("{outcome}");
                if let Some(p) = previous {
                    self.audit.record(
                        p.id().as_str(),
                        serving.unwrap_or(0),
                        "",
                        AuditOutcome::ReloadRefused,
                        &outcome.to_string(),
                    );
                }
                return outcome;
            }
        };
        let id = file.manifest.id.clone();
        let current = self.find(id.as_str());
        let serving = current
            .as_ref()
            .filter(|p| p.running.is_some())
            .map(|p| p.generation.load(Ordering::SeqCst));
        if let Some(old) = &current {
            if same_path(&old.file.path, path) && old.file.sha256 == file.sha256 && !force {
                return ReloadOutcome::Unchanged { id: id.to_string() };
            }
        }
        let refused = |refusal: Refusal| {
            let outcome = ReloadOutcome::Refused { refusal, serving };
            tracing::warn!("{outcome}");
            self.audit.record(
                id.as_str(),
                serving.unwrap_or(0),
                "",
                AuditOutcome::ReloadRefused,
                &outcome.to_string(),
            );
            outcome
        };
        // The ids other files provide (files still there: a renamed library is the same
        // plugin moving, not a second one) — the same duplicate rule as at startup.
        let taken: Vec<(PluginId, PathBuf)> = table
            .iter()
            .filter(|p| !same_path(&p.file.path, path) && p.file.path.exists())
            .map(|p| (p.id().clone(), p.file.path.clone()))
            .collect();
        if let Err(refusal) = refuse_duplicate(&file, &taken) {
            return refused(refusal);
        }
        let checked = match decide_checked(&self.options, file) {
            Ok(checked) => checked,
            Err(refusal) => return refused(refusal),
        };
        let mut plugin = match self.prepare(checked, current.as_deref()) {
            Ok(plugin) => plugin,
            Err(refusal) => return refused(refusal),
        };
        let handover = current.as_deref().and_then(|old| {
            match self.invoke(old, InvocationKind::SNAPSHOT, 0, "snapshot", &[]) {
                Ok(bytes) if !bytes.is_empty() => Some(bytes),
                Ok(_) => None,
                Err(Invoked::Domain(m) | Invoked::Failed(_, m)) => {
                    tracing::warn!(plugin = %id, "snapshot failed, the new generation starts fresh: {m}");
                    None
                }
            }
        });
        let config = plugin.config.lock().clone();
        if let Err(refusal) = self.start_instance(&plugin, &config, handover) {
            return refused(refusal);
        }
        plugin.load_time = started.elapsed();
        let plugin = Arc::new(plugin);
        let generation = plugin.generation.load(Ordering::SeqCst);
        self.update_table(|table| match table.iter().position(|p| p.id() == &id) {
            Some(at) => table[at] = plugin.clone(),
            None => table.push(plugin.clone()),
        });
        // The swap is done: new calls reach the new generation. Drain and retire the old one.
        if let Some(old) = current {
            self.teardown(&old, PluginState::Stopped);
        }
        let retained = loader::retained().0;
        if let Some(max) = self.options.policy.host().max_retained {
            if retained > max {
                tracing::warn!(
                    "{retained} libraries are retained in this process (over the {max} the policy expects); restart the host to release them"
                );
            }
        }
        let outcome = ReloadOutcome::Loaded {
            id: id.to_string(),
            generation,
            elapsed: started.elapsed(),
        };
        tracing::info!("{outcome}");
        outcome
    }

    /// Asks the plugin to validate `config`; returns its warnings.
    fn validate(
        &self,
        plugin: &LoadedPlugin,
        config: &serde_json::Value,
    ) -> Result<Vec<String>, Refusal> {
        let refuse = |reason, detail: String| {
            Refusal::new(&plugin.file.path, reason, detail).with_id(plugin.id())
        };
        let bytes = serde_json::to_vec(config).unwrap_or_else(|_| b"{}".to_vec());
        let report: ConfigReport = match plugin.creator.validate_config(&bytes) {
            Ok(bytes) => airlock_abi::wire::parse(&bytes).map_err(|e| {
                refuse(
                    RefusalReason::ConfigInvalid,
                    format!("validate_config answered malformed JSON: {e}"),
                )
            })?,
            Err(e) if e.code == ErrorCode::UNSUPPORTED => return Ok(Vec::new()),
            Err(e) => {
                return Err(refuse(
                    RefusalReason::ConfigInvalid,
                    format!("validate_config failed: {}", describe(&e)),
                ))
            }
        };
        if !report.is_ok() {
            return Err(refuse(
                RefusalReason::ConfigInvalid,
                format!(
                    "the plugin rejected its config: {}",
                    report.errors.join("; ")
                ),
            ));
        }
        Ok(report.warnings)
    }

    /// Creates an instance with a fresh context (stage 5) and makes it the running one.
    fn start_instance(
        &self,
        plugin: &LoadedPlugin,
        config: &serde_json::Value,
        handover: Option<Vec<u8>>,
    ) -> Result<(), Refusal> {
        let id = plugin.id().clone();
        let refuse =
            |reason, detail: String| Refusal::new(&plugin.file.path, reason, detail).with_id(&id);
        let generation = plugin.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let token = context::open(ContextEntry::new(
            id.clone(),
            generation,
            serde_json::to_vec(config).unwrap_or_else(|_| b"{}".to_vec()),
            plugin.grants.lock().clone(),
            self.me.clone(),
            handover,
        ));
        *plugin.last_token.lock() = token;
        let creator = plugin.creator;
        let deadline = plugin.policy.init_deadline;
        let created = run_with_deadline(deadline, move || {
            creator.create(context::host_context(token))
        });
        let instance = match created {
            Some(Ok(instance)) => instance,
            Some(Err(e)) => {
                self.release_context(token, plugin.policy.shutdown_deadline);
                *plugin.state.lock() = PluginState::Failed;
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
                *plugin.state.lock() = PluginState::Failed;
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
        *plugin.state.lock() = PluginState::Running;
        Ok(())
    }

    /// Drops everything the host holds for a context, then revokes it, waiting up to
    /// `deadline` for a timer run or host call still in progress.
    fn release_context(&self, token: ContextToken, deadline: Duration) {
        let started = Instant::now();
        if let Some(entry) = context::entry(token) {
            entry.closing.store(true, Ordering::SeqCst);
        }
        self.timers.cancel_all(token, deadline);
        self.events.remove_all(token);
        context::revoke(token, deadline.saturating_sub(started.elapsed()));
    }

    /// Tears the running instance down (if any) within the plugin's deadline and revokes its
    /// context; `after` is the state it is left in when teardown is clean. The instance is
    /// destroyed only once no call is running on it; a call still running at the deadline
    /// leaves it abandoned, never destroyed. Every wait shares the one deadline.
    fn teardown(&self, plugin: &LoadedPlugin, after: PluginState) -> Option<TeardownRecord> {
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
        *plugin.state.lock() = match outcome {
            TeardownOutcome::Abandoned => PluginState::Abandoned,
            _ => after,
        };
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
        })
    }
}

impl Host {
    /// Starts building a host.
    pub fn builder() -> HostBuilder {
        HostBuilder::new()
    }

    /// Runs the whole pipeline over the plugin directories and loads every library that passes.
    /// One bad file never stops the others: each is reported, with its reason code.
    ///
    /// # Errors
    ///
    /// [`Error::PluginDir`] if a directory cannot be read.
    pub fn load(&self) -> Result<LoadReport, Error> {
        let shared = &*self.shared;
        let _admin = shared.admin();
        let mut report = LoadReport::default();
        let taken: Vec<(PluginId, PathBuf)> = shared
            .table()
            .iter()
            .map(|p| (p.id().clone(), p.file.path.clone()))
            .collect();
        let options = &shared.options;
        // Built-in plugins first (once: a later `load` finds them loaded), then the libraries.
        let mut files: Vec<Result<LibraryFile, Refusal>> = shared
            .builtins
            .iter()
            .filter(|b| {
                b.as_ref().map_or(taken.is_empty(), |f| {
                    !taken.iter().any(|(id, _)| *id == f.manifest.id)
                })
            })
            .cloned()
            .collect();
        files.extend(read_all(options, discover(&options.dirs)?));
        let checked = decide_all(options, files, &taken);
        // Stage 4 (shadow copy, dlopen, layout check) spread over the cores; stage 5 (create)
        // in discovery order, so a plugin's `create` sees the plugins loaded before it.
        let prepared = parallel_map(checked, |checked| match checked {
            Err(refusal) => Err((refusal, None)),
            Ok(checked) => {
                let version = checked.file.manifest.version.to_string();
                shared
                    .prepare_timed(checked)
                    .map_err(|refusal| (refusal, Some(version)))
            }
        });
        for prepared in prepared {
            let entry = match prepared {
                Err((refusal, version)) => PluginReport::refused(&refusal, version),
                Ok(prepared) => {
                    let version = prepared.0.file.manifest.version.to_string();
                    match shared.start_prepared(prepared) {
                        Ok(plugin) => {
                            let ms = plugin.load_time.as_secs_f64() * 1e3;
                            let detail = if plugin.file.is_builtin() {
                                format!(
                                    "built into the host (no file: discovery, reading and hashing \
                                     do not apply); created in {ms:.2} ms"
                                )
                            } else {
                                format!("loaded in {ms:.2} ms")
                            };
                            let entry = ok_report(&plugin.file, detail);
                            let plugin = Arc::new(plugin);
                            shared.update_table(|table| table.push(plugin));
                            entry
                        }
                        Err(refusal) => PluginReport::refused(&refusal, Some(version)),
                    }
                }
            };
            match entry.reason {
                Some(reason) => {
                    tracing::warn!(file = %entry.file.display(), %reason, "{}", entry.detail)
                }
                None => {
                    tracing::info!(file = %entry.file.display(), id = entry.id.as_deref(), "{}", entry.detail)
                }
            }
            report.plugins.push(entry);
        }
        Ok(report)
    }

    /// Loads (stages 4 and 5) a library that [`check`] already passed, from the bytes it
    /// checked: what is on disk now does not matter.
    ///
    /// # Errors
    ///
    /// The [`Refusal`] of stage 4 or 5, or `duplicate_id` if a plugin with its id is loaded.
    pub fn load_checked(&self, checked: Checked) -> Result<(), Refusal> {
        let shared = &*self.shared;
        let _admin = shared.admin();
        let taken: Vec<(PluginId, PathBuf)> = shared
            .table()
            .iter()
            .map(|p| (p.id().clone(), p.file.path.clone()))
            .collect();
        refuse_duplicate(&checked.file, &taken)?;
        let plugin = Arc::new(shared.load_one(checked)?);
        shared.update_table(|table| table.push(plugin));
        Ok(())
    }

    /// The loaded plugins, in load order.
    pub fn plugins(&self) -> Vec<PluginInfo> {
        self.shared.table().iter().map(|p| self.info(p)).collect()
    }

    /// One loaded plugin by id.
    pub fn plugin(&self, id: &str) -> Option<PluginInfo> {
        self.shared.find(id).map(|p| self.info(&p))
    }

    fn info(&self, p: &LoadedPlugin) -> PluginInfo {
        let m = &p.file.manifest;
        let token = *p.last_token.lock();
        let entry = context::entry(token);
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PluginInfo {
            id: m.id.to_string(),
            version: m.version.to_string(),
            description: m.description.clone(),
            file: p.file.path.clone(),
            sha256: p.file.sha256.clone(),
            abi_version: p.file.block.abi_version.clone(),
            rustc: p.file.block.rustc.clone(),
            generation: p.generation.load(Ordering::SeqCst),
            state: if p.quarantined.load(Ordering::Acquire) {
                PluginState::Quarantined
            } else {
                *p.state.lock()
            },
            concurrency: m.concurrency,
            actions: m.actions.clone(),
            hooks: m.hooks.clone(),
            grants: p.grants.lock().iter().map(ToString::to_string).collect(),
            context: token,
            load_time: p.load_time,
            stats: PluginStats {
                calls: p.counters.calls.get(),
                host_calls: entry.as_ref().map_or(0, |e| e.calls.get()),
                denials: entry.as_ref().map_or(0, |e| load(&e.denials)),
                events: load(&p.counters.events),
                timer_runs: load(&p.counters.timer_runs),
                subscriptions: self.shared.events.count(token) as u64,
                timers: self.shared.timers.count(token) as u64,
                faults: load(&p.counters.faults),
            },
            health: p.health.lock().clone(),
        }
    }

    /// Calls `action` of `plugin` with a JSON value.
    ///
    /// # Errors
    ///
    /// A [`CallError`] for infrastructure failures; a domain error is
    /// `Ok(ActionOutcome::Error)`.
    pub fn call(
        &self,
        plugin: &str,
        action: &str,
        input: &serde_json::Value,
    ) -> Result<ActionOutcome, CallError> {
        json_call(plugin, action, input, |bytes| {
            self.call_bytes(plugin, action, bytes)
        })
    }

    /// Resolves `action` of `plugin` once, for a hot path that should pay no lookup by name
    /// per call.
    ///
    /// # Errors
    ///
    /// `not_found` if there is no such plugin or action.
    pub fn action(&self, plugin: &str, action: &str) -> Result<ActionHandle<'_>, CallError> {
        let resolved = self.shared.resolve(plugin, action)?;
        Ok(ActionHandle {
            shared: &self.shared,
            plugin: plugin.to_owned(),
            action: action.to_owned(),
            resolved: Guarded::new(Some(Arc::new(resolved))),
        })
    }

    /// Calls `action` of `plugin` with JSON bytes the caller encoded; returns the answer's
    /// bytes, or the domain error's message. Empty bytes stand for `null` both ways: an action
    /// returning `()` answers nothing (no allocation on either side); read answers with
    /// [`airlock_abi::wire::parse`].
    ///
    /// # Errors
    ///
    /// A [`CallError`] for infrastructure failures.
    pub fn call_bytes(
        &self,
        plugin: &str,
        action: &str,
        input: &[u8],
    ) -> Result<Result<Vec<u8>, String>, CallError> {
        self.shared.call_bytes(plugin, action, input)
    }

    /// Asks a plugin for its health.
    ///
    /// # Errors
    ///
    /// A [`CallError`] if the plugin is not running or fails to answer.
    pub fn health(&self, plugin: &str) -> Result<Health, CallError> {
        let loaded = self
            .shared
            .find(plugin)
            .ok_or_else(|| not_loaded(plugin, "health"))?;
        self.shared.poll_health(&loaded)
    }

    /// Publishes an event from the host program itself (no capability needed); returns how
    /// many subscriptions it was queued for.
    pub fn publish(&self, topic: &str, payload: &serde_json::Value) -> usize {
        self.shared.events.publish(topic, payload)
    }

    /// Revokes capabilities of a running plugin: `spec` is a capability (`kv`,
    /// `events.publish:demo.*`) or a kind (`events.publish`) to revoke every grant of that kind.
    /// When this returns, no call using a revoked grant succeeds, and the calls that were in
    /// flight have finished. The revocation lasts for the life of the host (an `enable`
    /// re-creates the plugin without it). Writes one audit record per grant revoked.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownPlugin`], [`Error::BadCapability`].
    pub fn revoke_capability(&self, plugin: &str, spec: &str) -> Result<Vec<String>, Error> {
        let selector = CapabilitySelector::parse(spec)?;
        let admin = self.shared.admin();
        let loaded = admin.plugin(plugin)?;
        // The plugin's grants, which every instance it creates starts from, running or not...
        let mut removed: Vec<Capability> = Vec::new();
        loaded.grants.lock().retain(|c| {
            let matched = selector.matches(c);
            if matched {
                removed.push(c.clone());
            }
            !matched
        });
        // ...and the running instance's context: no call using them succeeds after this.
        let token = *loaded.last_token.lock();
        for cap in context::revoke_grants(token, |c| selector.matches(c)) {
            if !removed.contains(&cap) {
                removed.push(cap);
            }
        }
        // Recorded whatever the plugin's state: a reload or an enable does not bring them back.
        {
            let mut revoked = loaded.revoked.lock();
            for cap in &removed {
                if !revoked.contains(cap) {
                    revoked.push(cap.clone());
                }
            }
        }
        let generation = loaded.generation.load(Ordering::SeqCst);
        for cap in &removed {
            self.shared.audit.record(
                plugin,
                generation,
                &cap.to_string(),
                AuditOutcome::Revoked,
                &format!("the operator revoked {cap} from {plugin}"),
            );
        }
        Ok(removed.iter().map(ToString::to_string).collect())
    }

    /// Disables a plugin: tears it down within its deadline and revokes its context.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownPlugin`]; [`Error::NotRunning`] if it is not running.
    pub fn disable(&self, plugin: &str) -> Result<TeardownRecord, Error> {
        let admin = self.shared.admin();
        let loaded = admin.plugin(plugin)?;
        let generation = loaded.generation.load(Ordering::SeqCst);
        let record = self
            .shared
            .teardown(&loaded, PluginState::Disabled)
            .ok_or_else(|| Error::NotRunning {
                plugin: plugin.to_owned(),
                state: loaded.state.lock().to_string(),
            })?;
        self.shared.audit.record(
            plugin,
            generation,
            "",
            AuditOutcome::Disabled,
            &format!("the operator disabled {plugin}"),
        );
        Ok(record)
    }

    /// Enables a disabled (or failed) plugin: creates a new instance with a fresh context.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownPlugin`]; [`Error::NotRunning`] if it was abandoned (its old instance
    /// may still be executing); [`Error::Refused`] if creation fails.
    pub fn enable(&self, plugin: &str) -> Result<(), Error> {
        let admin = self.shared.admin();
        let loaded = admin.plugin(plugin)?;
        if loaded.quarantined.swap(false, Ordering::AcqRel) {
            loaded.recent_faults.lock().clear();
            let generation = loaded.generation.load(Ordering::SeqCst);
            self.shared.audit.record(
                plugin,
                generation,
                "",
                AuditOutcome::Enabled,
                &format!("the operator lifted the quarantine of {plugin}"),
            );
        }
        let state = *loaded.state.lock();
        match state {
            PluginState::Running | PluginState::Quarantined => return Ok(()),
            PluginState::Abandoned | PluginState::Stopped => {
                return Err(Error::NotRunning {
                    plugin: plugin.to_owned(),
                    state: state.to_string(),
                })
            }
            PluginState::Disabled | PluginState::Failed => {}
        }
        let config = loaded.config.lock().clone();
        self.shared.start_instance(&loaded, &config, None)?;
        let generation = loaded.generation.load(Ordering::SeqCst);
        self.shared.audit.record(
            plugin,
            generation,
            "",
            AuditOutcome::Enabled,
            &format!("the operator enabled {plugin}"),
        );
        Ok(())
    }

    /// Changes a plugin's config: the plugin validates it first; then it is applied live if the
    /// plugin takes it, otherwise the plugin is re-created with it.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownPlugin`]; [`Error::ConfigRejected`] (the old config stays);
    /// [`Error::Refused`] if re-creating fails.
    pub fn set_config(
        &self,
        plugin: &str,
        config: serde_json::Value,
    ) -> Result<ConfigApplied, Error> {
        let admin = self.shared.admin();
        let loaded = admin.plugin(plugin)?;
        let warnings =
            self.shared
                .validate(&loaded, &config)
                .map_err(|refusal| Error::ConfigRejected {
                    plugin: plugin.to_owned(),
                    errors: vec![refusal.detail],
                })?;
        *loaded.config.lock() = config.clone();
        let bytes = serde_json::to_vec(&config).unwrap_or_else(|_| b"{}".to_vec());
        let running = loaded.running.load_full();
        if let Some(running) = running {
            if let Some(entry) = context::entry(running.token) {
                entry.config.store(Arc::new(bytes.clone()));
            }
            let answer =
                self.shared
                    .invoke(&loaded, InvocationKind::CONFIG_CHANGED, 0, "config", &bytes);
            drop(running);
            if answer.as_deref().is_ok_and(|a| a == b"true") {
                return Ok(ConfigApplied {
                    live: true,
                    warnings,
                });
            }
            self.shared.teardown(&loaded, PluginState::Disabled);
        }
        self.shared.start_instance(&loaded, &config, None)?;
        Ok(ConfigApplied {
            live: false,
            warnings,
        })
    }

    /// Defines (or redefines) a hook point and its dispatch mode.
    pub fn define_hook(&self, hook: &str, mode: HookMode) {
        self.shared.hook_modes.lock().insert(hook.to_owned(), mode);
    }

    /// Dispatches hooks: `host.hooks().chain::<String>("input.transform", line)`.
    pub fn hooks(&self) -> HookDispatch<'_> {
        HookDispatch {
            shared: &self.shared,
        }
    }

    /// Reloads a plugin from its library file now, even if the bytes did not change: a new
    /// shadow copy, a new generation with fresh statics. The old generation keeps serving if
    /// the new one is refused.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownPlugin`].
    pub fn reload(&self, plugin: &str) -> Result<ReloadOutcome, Error> {
        let path = {
            let loaded = self.shared.admin().plugin(plugin)?;
            if loaded.file.is_builtin() {
                return Err(Error::Builtin {
                    plugin: plugin.to_owned(),
                });
            }
            loaded.file.path.clone()
        };
        Ok(self.shared.reload_file(&path, true))
    }

    /// Reloads (or newly loads) the plugin in `path` if its bytes changed; see [`Host::reload`].
    pub fn reload_file(&self, path: &Path) -> ReloadOutcome {
        self.shared.reload_file(path, false)
    }

    /// Watches the plugin directories and reloads a library when it changes: after `debounce`
    /// of quiet, once the file is whole, and only if its bytes changed. `on_reload` is told
    /// every outcome. Watching stops when the returned [`Watcher`] is dropped.
    ///
    /// # Errors
    ///
    /// [`Error::Watch`] if the directories cannot be watched.
    pub fn watch(
        &self,
        debounce: Duration,
        on_reload: impl Fn(&ReloadOutcome) + Send + 'static,
    ) -> Result<Watcher, Error> {
        Watcher::start(
            Arc::downgrade(&self.shared),
            &self.shared.options.dirs,
            debounce,
            on_reload,
        )
    }

    /// Runs one plugin's handler of `hook` directly, whatever the hook's mode (for conformance
    /// checks like `airlock validate`).
    ///
    /// # Errors
    ///
    /// A [`CallError`]: `not_found` if the plugin does not declare the hook, or the failure.
    pub fn probe_hook(
        &self,
        plugin: &str,
        hook: &str,
        input: &serde_json::Value,
    ) -> Result<HookReply<serde_json::Value>, CallError> {
        let loaded = self
            .shared
            .find(plugin)
            .ok_or_else(|| not_loaded(plugin, hook))?;
        let index = loaded
            .file
            .manifest
            .hooks
            .iter()
            .position(|h| h.name == hook)
            .ok_or_else(|| {
                fail(
                    plugin,
                    hook,
                    CallErrorCode::NotFound,
                    format!("plugin {plugin:?} does not declare hook {hook:?}"),
                )
            })?;
        let payload = serde_json::to_vec(input)
            .map_err(|e| fail(plugin, hook, CallErrorCode::BadInput, e.to_string()))?;
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        match self
            .shared
            .invoke(&loaded, InvocationKind::HOOK, index, hook, &payload)
        {
            Ok(bytes) => airlock_abi::wire::parse(&bytes)
                .map_err(|e| fail(plugin, hook, CallErrorCode::HandlerError, e.to_string())),
            Err(Invoked::Domain(m)) => Err(fail(plugin, hook, CallErrorCode::HandlerError, m)),
            Err(Invoked::Failed(code, m)) => Err(fail(plugin, hook, code, m)),
        }
    }

    /// A raw `extern "C"` function of a loaded plugin's library (its manifest-block export,
    /// which only returns a static slice), for benchmarks that compare Airlock's call path with
    /// a bare call into the library. Not for anything else.
    #[doc(hidden)]
    pub fn raw_entry(
        &self,
        plugin: &str,
    ) -> Option<extern "C" fn() -> abi_stable::std_types::RSlice<'static, u8>> {
        self.shared.find(plugin).map(|p| p.creator.raw_entry())
    }

    /// Events dropped because the delivery queue was full.
    pub fn events_dropped(&self) -> u64 {
        self.shared.events.dropped()
    }

    /// The last `n` audit records, oldest first.
    pub fn audit_tail(&self, n: usize) -> Vec<AuditRecord> {
        self.shared.audit.tail(n)
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.shared.audit
    }

    /// Tears every running plugin down, in reverse load order, each within its deadline; a
    /// plugin that overruns is revoked and abandoned, and shutdown continues. Every context is
    /// revoked when this returns.
    pub fn shutdown(&self) -> Vec<TeardownRecord> {
        let _admin = self.shared.admin();
        let plugins = self.shared.table();
        plugins
            .iter()
            .rev()
            .filter_map(|p| self.shared.teardown(p, PluginState::Stopped))
            .collect()
    }

    /// How many libraries this process retains (loaded and never unloaded) and their bytes.
    pub fn retained_libraries(&self) -> (usize, usize) {
        loader::retained()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Encodes `input`, calls, and decodes the answer into the result envelope.
fn json_call(
    plugin: &str,
    action: &str,
    input: &serde_json::Value,
    call: impl FnOnce(&[u8]) -> Result<Result<Vec<u8>, String>, CallError>,
) -> Result<ActionOutcome, CallError> {
    let input = serde_json::to_vec(input)
        .map_err(|e| fail(plugin, action, CallErrorCode::BadInput, e.to_string()))?;
    match call(&input)? {
        Ok(bytes) => airlock_abi::wire::parse(&bytes)
            .map(ActionOutcome::Ok)
            .map_err(|e| {
                fail(
                    plugin,
                    action,
                    CallErrorCode::HandlerError,
                    format!("the plugin answered with invalid JSON: {e}"),
                )
            }),
        Err(message) => Ok(ActionOutcome::Error(message)),
    }
}

/// A pre-resolved action of a plugin, from [`Host::action`]: calls pay no lookup by name.
pub struct ActionHandle<'h> {
    shared: &'h HostShared,
    plugin: String,
    action: String,
    resolved: Guarded<(Arc<LoadedPlugin>, usize)>,
}

impl std::fmt::Debug for ActionHandle<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionHandle")
            .field("plugin", &self.plugin)
            .field("action", &self.action)
            .finish()
    }
}

impl ActionHandle<'_> {
    /// Calls the action with a JSON value.
    ///
    /// # Errors
    ///
    /// As [`Host::call`].
    pub fn call(&self, input: &serde_json::Value) -> Result<ActionOutcome, CallError> {
        json_call(&self.plugin, &self.action, input, |bytes| {
            self.call_bytes(bytes)
        })
    }

    /// Calls the action with JSON bytes the caller encoded. After a reload the handle follows
    /// the new generation (resolving the action once more).
    ///
    /// # Errors
    ///
    /// As [`Host::call_bytes`].
    pub fn call_bytes(&self, input: &[u8]) -> Result<Result<Vec<u8>, String>, CallError> {
        let mut attempts = 0;
        loop {
            let (result, retry) = self.resolved.with(|resolved| {
                let Some((loaded, index)) = resolved else {
                    return (Err(not_loaded(&self.plugin, &self.action)), false);
                };
                let result = self.shared.call_index(loaded, *index, &self.action, input);
                let retry = matches!(&result, Err(e) if e.code == CallErrorCode::Revoked)
                    && self.shared.replaced(loaded);
                (result, retry)
            });
            if !retry || attempts >= 8 {
                return result;
            }
            attempts += 1;
            let resolved = self.shared.resolve(&self.plugin, &self.action)?;
            drop(self.resolved.replace(Some(Arc::new(resolved))));
        }
    }
}

/// Which grants an operator's `revoke` names.
enum CapabilitySelector {
    Exact(Capability),
    Kind(CapabilityKind),
}

impl CapabilitySelector {
    fn parse(spec: &str) -> Result<Self, Error> {
        if let Some(kind) = CapabilityKind::ALL.into_iter().find(|k| k.name() == spec) {
            return Ok(Self::Kind(kind));
        }
        Capability::parse(spec)
            .map(Self::Exact)
            .map_err(Error::BadCapability)
    }

    fn matches(&self, cap: &Capability) -> bool {
        match self {
            Self::Exact(wanted) => wanted == cap,
            Self::Kind(kind) => cap.kind() == *kind,
        }
    }
}

/// The plugin `plugin` in `plugins` (the newest with that id) and the index of `action` in its
/// manifest; `not_found` otherwise.
fn lookup<'a>(
    plugins: &'a [Arc<LoadedPlugin>],
    plugin: &str,
    action: &str,
) -> Result<(&'a Arc<LoadedPlugin>, usize), CallError> {
    let loaded = plugins
        .iter()
        .rev()
        .find(|p| p.id().as_str() == plugin)
        .ok_or_else(|| not_loaded(plugin, action))?;
    let index = loaded
        .file
        .manifest
        .action_index(action)
        .ok_or_else(|| no_such_action(loaded, action))?;
    Ok((loaded, index))
}

/// `not_found` for a plugin that is not loaded.
fn not_loaded(plugin: &str, what: &str) -> CallError {
    fail(
        plugin,
        what,
        CallErrorCode::NotFound,
        format!("no plugin {plugin:?} is loaded"),
    )
}

/// `not_found` for an action the plugin does not have, listing the ones it has.
fn no_such_action(loaded: &LoadedPlugin, action: &str) -> CallError {
    let plugin = loaded.id().as_str();
    let known: Vec<_> = loaded
        .file
        .manifest
        .actions
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    fail(
        plugin,
        action,
        CallErrorCode::NotFound,
        format!(
            "plugin {plugin:?} has no action {action:?}; it has: {}",
            known.join(", ")
        ),
    )
}

fn plugin_error_code(code: ErrorCode) -> CallErrorCode {
    match code {
        ErrorCode::BAD_INPUT => CallErrorCode::BadInput,
        ErrorCode::NOT_FOUND => CallErrorCode::NotFound,
        ErrorCode::PANICKED => CallErrorCode::Panicked,
        ErrorCode::CAPABILITY_VIOLATION => CallErrorCode::CapabilityViolation,
        ErrorCode::REVOKED => CallErrorCode::Revoked,
        _ => CallErrorCode::HandlerError,
    }
}

fn describe(e: &PluginError) -> String {
    if e.code == ErrorCode::PANICKED {
        format!("panicked: {}", e.message)
    } else {
        e.message.to_string()
    }
}

/// Runs `f` on its own thread and waits up to `deadline`. Native code cannot be pre-empted: on
/// timeout the thread is left running (abandoned) and `None` is returned.
fn run_with_deadline<T: Send + 'static>(
    deadline: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("airlock-deadline".to_owned())
        .spawn(move || {
            let _ = tx.send(f());
        });
    match spawned {
        Ok(_) => rx.recv_timeout(deadline).ok(),
        Err(e) => {
            tracing::error!("cannot spawn a thread to enforce a deadline: {e}");
            None
        }
    }
}
