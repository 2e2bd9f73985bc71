//! The embedding API: build a [`Host`] from plugin directories and a policy, load what can be
//! loaded (reporting every refusal), call actions, and shut down in reverse load order.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use airlock_abi::{
    ActionDecl, Concurrency, ContextToken, ErrorCode, Health, HookDecl, PluginError, PluginId,
};
use parking_lot::Mutex;
use serde::Serialize;

use crate::context::{self, ContextEntry};
use crate::decide::{decide, Decision};
use crate::discover::discover;
use crate::error::{CallError, CallErrorCode, Error, Refusal, RefusalReason};
use crate::library_file::{read_library, LibraryFile, DEFAULT_MAX_LIBRARY_SIZE};
use crate::loader::{self, Instance, LoadedLibrary};
use crate::policy::Policy;
use crate::report::{LoadReport, PluginReport, Status};

/// Options shared by checking and loading.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Directories searched for libraries, in order.
    pub dirs: Vec<PathBuf>,
    /// The operator's policy.
    pub policy: Policy,
    /// Libraries larger than this are refused (`too_large`) without being read.
    pub max_library_size: u64,
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
    let mut seen: Vec<(PluginId, PathBuf)> = Vec::new();
    let mut out = Vec::new();
    for candidate in discover(&options.dirs)? {
        let checked = candidate
            .and_then(|c| read_library(&c.file, &c.open, options.max_library_size))
            .and_then(|file| {
                let id = &file.manifest.id;
                if let Some((_, first)) = seen.iter().find(|(seen_id, _)| seen_id == id) {
                    return Err(Refusal::new(
                        &file.path,
                        RefusalReason::DuplicateId,
                        format!(
                            "plugin id {id} is already provided by {}; remove one of the two files",
                            first.display()
                        ),
                    )
                    .with_id(id));
                }
                seen.push((id.clone(), file.path.clone()));
                let decision = decide(&file, &options.policy)?;
                Ok(Checked { file, decision })
            });
        out.push(checked);
    }
    Ok(out)
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
    shadow_parent: Option<PathBuf>,
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
            options: PipelineOptions {
                dirs: Vec::new(),
                policy: Policy::default(),
                max_library_size: DEFAULT_MAX_LIBRARY_SIZE,
            },
            shadow_parent: None,
        }
    }

    /// Adds a directory to search for plugin libraries.
    pub fn plugin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.options.dirs.push(dir.into());
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

    /// The options this builder would check and load with.
    pub fn options(&self) -> &PipelineOptions {
        &self.options
    }

    /// Creates the host; nothing is loaded until [`Host::load`].
    ///
    /// # Errors
    ///
    /// [`Error::ShadowDir`] if the private shadow directory cannot be created.
    pub fn build(self) -> Result<Host, Error> {
        let parent = self.shadow_parent.unwrap_or_else(std::env::temp_dir);
        let shadow = tempfile::Builder::new()
            .prefix("airlock-shadow-")
            .tempdir_in(&parent)
            .map_err(|source| Error::ShadowDir {
                path: parent.clone(),
                source,
            })?;
        Ok(Host {
            options: self.options,
            shadow,
            plugins: Vec::new(),
        })
    }
}

/// Where a plugin is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginState {
    /// Serving calls.
    Running,
    /// Torn down cleanly; its context is revoked.
    Stopped,
    /// Teardown failed or overran its deadline; its context is revoked and it was abandoned.
    Abandoned,
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
    /// Increases by one each time the plugin is loaded anew.
    pub generation: u64,
    /// Running, stopped or abandoned.
    pub state: PluginState,
    /// Serial or parallel.
    pub concurrency: Concurrency,
    /// Declared actions.
    pub actions: Vec<ActionDecl>,
    /// Declared hooks.
    pub hooks: Vec<HookDecl>,
    /// Effective grants.
    pub grants: Vec<String>,
    /// The token of its context (revoked once it is stopped).
    #[serde(skip)]
    pub context: ContextToken,
    /// How long stages 2–5 took for it.
    pub load_time: Duration,
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

/// One plugin's teardown, in the order they happened.
#[derive(Debug, Clone, Serialize)]
pub struct TeardownRecord {
    /// The plugin.
    pub id: String,
    /// How it ended.
    pub outcome: TeardownOutcome,
    /// How long it took (up to the deadline).
    pub elapsed: Duration,
}

struct LoadedPlugin {
    file: LibraryFile,
    decision: Decision,
    _library: LoadedLibrary,
    instance: Option<Instance>,
    serial: Option<Mutex<()>>,
    token: ContextToken,
    generation: u64,
    state: PluginState,
    load_time: Duration,
}

/// A host: loads plugins, serves calls into them, and tears them down.
///
/// Dropping a host shuts it down (as [`Host::shutdown`]) if that has not been done.
pub struct Host {
    options: PipelineOptions,
    shadow: tempfile::TempDir,
    plugins: Vec<LoadedPlugin>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("dirs", &self.options.dirs)
            .field("plugins", &self.plugins.len())
            .finish_non_exhaustive()
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
    pub fn load(&mut self) -> Result<LoadReport, Error> {
        let mut report = LoadReport::default();
        let loaded_ids: HashSet<PluginId> = self
            .plugins
            .iter()
            .filter(|p| p.state == PluginState::Running)
            .map(|p| p.file.manifest.id.clone())
            .collect();
        for checked in check(&self.options)? {
            let entry = match checked {
                Err(refusal) => PluginReport::refused(&refusal, None),
                Ok(checked) if loaded_ids.contains(&checked.file.manifest.id) => {
                    let refusal = Refusal::new(
                        &checked.file.path,
                        RefusalReason::DuplicateId,
                        format!(
                            "plugin {} is already loaded in this host",
                            checked.file.manifest.id
                        ),
                    )
                    .with_id(&checked.file.manifest.id);
                    PluginReport::refused(&refusal, Some(checked.file.manifest.version.to_string()))
                }
                Ok(checked) => {
                    let version = checked.file.manifest.version.to_string();
                    match self.load_one(checked) {
                        Ok(plugin) => {
                            let entry = ok_report(
                                &plugin.file,
                                format!("loaded in {:.2} ms", plugin.load_time.as_secs_f64() * 1e3),
                            );
                            self.plugins.push(plugin);
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

    /// Stages 4 and 5 for one checked library.
    fn load_one(&mut self, checked: Checked) -> Result<LoadedPlugin, Refusal> {
        let started = Instant::now();
        let Checked { mut file, decision } = checked;
        let library = loader::load(&file, self.shadow.path())?;
        file.release_bytes();
        let id = file.manifest.id.clone();
        let generation = 1;
        let config = serde_json::to_vec(&decision.policy.config).unwrap_or_else(|_| b"{}".to_vec());
        let token = context::open(ContextEntry::new(
            id.clone(),
            generation,
            config,
            decision.grants.clone(),
        ));
        let refuse = |reason, detail: String| Refusal::new(&file.path, reason, detail).with_id(&id);
        let create = library.creator();
        let deadline = decision.policy.init_deadline;
        let created = run_with_deadline(deadline, move || {
            create.create(context::host_context(token))
        });
        let instance = match created {
            Some(Ok(instance)) => instance,
            Some(Err(e)) => {
                context::revoke(token);
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
                context::revoke(token);
                return Err(refuse(
                    RefusalReason::InitTimeout,
                    format!(
                        "create did not return within {} ms; the plugin was abandoned and its context revoked",
                        deadline.as_millis()
                    ),
                ));
            }
        };
        let serial = (file.manifest.concurrency == Concurrency::Serial).then(|| Mutex::new(()));
        Ok(LoadedPlugin {
            file,
            decision,
            _library: library,
            instance: Some(instance),
            serial,
            token,
            generation,
            state: PluginState::Running,
            load_time: started.elapsed(),
        })
    }

    /// The loaded plugins, in load order.
    pub fn plugins(&self) -> Vec<PluginInfo> {
        self.plugins.iter().map(info).collect()
    }

    /// One loaded plugin by id.
    pub fn plugin(&self, id: &str) -> Option<PluginInfo> {
        self.find(id).map(info)
    }

    fn find(&self, id: &str) -> Option<&LoadedPlugin> {
        self.plugins
            .iter()
            .rev()
            .find(|p| p.file.manifest.id.as_str() == id)
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
        let input = serde_json::to_vec(input).map_err(|e| CallError {
            code: CallErrorCode::BadInput,
            plugin: plugin.to_owned(),
            action: action.to_owned(),
            message: e.to_string(),
        })?;
        match self.call_bytes(plugin, action, &input)? {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(ActionOutcome::Ok)
                .map_err(|e| CallError {
                    code: CallErrorCode::HandlerError,
                    plugin: plugin.to_owned(),
                    action: action.to_owned(),
                    message: format!("the plugin answered with invalid JSON: {e}"),
                }),
            Err(message) => Ok(ActionOutcome::Error(message)),
        }
    }

    /// Calls `action` of `plugin` with JSON bytes the caller encoded; returns the answer's
    /// bytes, or the domain error's message.
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
        let fail = |code, message: String| CallError {
            code,
            plugin: plugin.to_owned(),
            action: action.to_owned(),
            message,
        };
        let loaded = self.find(plugin).ok_or_else(|| {
            fail(
                CallErrorCode::NotFound,
                format!("no plugin {plugin:?} is loaded"),
            )
        })?;
        let instance = loaded.instance.as_ref().ok_or_else(|| {
            fail(
                CallErrorCode::Revoked,
                format!("plugin {plugin:?} has been torn down"),
            )
        })?;
        let index = loaded.file.manifest.action_index(action).ok_or_else(|| {
            let known: Vec<_> = loaded
                .file
                .manifest
                .actions
                .iter()
                .map(|a| a.name.as_str())
                .collect();
            fail(
                CallErrorCode::NotFound,
                format!(
                    "plugin {plugin:?} has no action {action:?}; it has: {}",
                    known.join(", ")
                ),
            )
        })?;
        let _serial = loaded.serial.as_ref().map(Mutex::lock);
        // A manifest declares at most 256 actions, so the index always fits.
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        match instance.action(index, action, input) {
            Ok(bytes) => Ok(Ok(bytes)),
            Err(e) => match e.code {
                ErrorCode::DOMAIN => Ok(Err(e.message.into_string())),
                code => Err(fail(plugin_error_code(code), e.message.into_string())),
            },
        }
    }

    /// Asks a plugin for its health.
    ///
    /// # Errors
    ///
    /// A [`CallError`] if the plugin is not running or fails to answer.
    pub fn health(&self, plugin: &str) -> Result<Health, CallError> {
        let fail = |code, message: String| CallError {
            code,
            plugin: plugin.to_owned(),
            action: "health".to_owned(),
            message,
        };
        let loaded = self.find(plugin).ok_or_else(|| {
            fail(
                CallErrorCode::NotFound,
                format!("no plugin {plugin:?} is loaded"),
            )
        })?;
        let instance = loaded.instance.as_ref().ok_or_else(|| {
            fail(
                CallErrorCode::Revoked,
                format!("plugin {plugin:?} has been torn down"),
            )
        })?;
        let _serial = loaded.serial.as_ref().map(Mutex::lock);
        let bytes = instance
            .health()
            .map_err(|e| fail(plugin_error_code(e.code), e.message.into_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| fail(CallErrorCode::HandlerError, e.to_string()))
    }

    /// Tears every running plugin down, in reverse load order, each within its deadline; a
    /// plugin that overruns is revoked and abandoned, and shutdown continues. Every context is
    /// revoked when this returns.
    pub fn shutdown(&mut self) -> Vec<TeardownRecord> {
        let mut records = Vec::new();
        for plugin in self.plugins.iter_mut().rev() {
            let Some(instance) = plugin.instance.take() else {
                continue;
            };
            let started = Instant::now();
            let deadline = plugin.decision.policy.shutdown_deadline;
            let outcome = match run_with_deadline(deadline, move || instance.destroy()) {
                Some(Ok(())) => TeardownOutcome::Clean,
                Some(Err(e)) => TeardownOutcome::Failed(describe(&e)),
                None => TeardownOutcome::Abandoned,
            };
            context::revoke(plugin.token);
            plugin.state = match outcome {
                TeardownOutcome::Abandoned => PluginState::Abandoned,
                _ => PluginState::Stopped,
            };
            let id = plugin.file.manifest.id.to_string();
            match &outcome {
                TeardownOutcome::Clean => tracing::info!(plugin = %id, "torn down"),
                other => {
                    tracing::warn!(plugin = %id, outcome = ?other, "teardown did not finish cleanly")
                }
            }
            records.push(TeardownRecord {
                id,
                outcome,
                elapsed: started.elapsed(),
            });
        }
        records
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

fn info(p: &LoadedPlugin) -> PluginInfo {
    let m = &p.file.manifest;
    PluginInfo {
        id: m.id.to_string(),
        version: m.version.to_string(),
        description: m.description.clone(),
        file: p.file.path.clone(),
        sha256: p.file.sha256.clone(),
        abi_version: p.file.block.abi_version.clone(),
        rustc: p.file.block.rustc.clone(),
        generation: p.generation,
        state: p.state,
        concurrency: m.concurrency,
        actions: m.actions.clone(),
        hooks: m.hooks.clone(),
        grants: p.decision.grants.iter().map(ToString::to_string).collect(),
        context: p.token,
        load_time: p.load_time,
    }
}

fn plugin_error_code(code: ErrorCode) -> CallErrorCode {
    match code {
        ErrorCode::BAD_INPUT => CallErrorCode::BadInput,
        ErrorCode::NOT_FOUND => CallErrorCode::NotFound,
        ErrorCode::PANICKED => CallErrorCode::Panicked,
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
