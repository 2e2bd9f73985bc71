//! Isolation: where a plugin's code runs. The seam that creates instances has two sides — the
//! library loaded into the host's own process ([`loader`]), or the same library in a worker
//! process ([`process`]), chosen per plugin by the policy's `isolation`. Everything above the
//! seam (the invoke path, the membrane, hooks, events, timers, reload, teardown) is the same for
//! both: an isolated plugin's requests come back over the worker's channel and are served by
//! the host's own vtable functions.

use std::sync::Arc;

use airlock_abi::abi::{ErrorCode, HostContext, InvocationKind, PluginError};

use std::path::{Path, PathBuf};

use crate::loader;

mod bounded;
mod frame;
mod limits;
pub(crate) mod process;
mod requests;
mod sandbox;
#[cfg(target_os = "linux")]
mod seccomp;
mod wire;
mod worker;

pub use worker::worker_main;

/// Creates instances of one plugin: from its library in this process, or in a worker.
#[derive(Clone)]
pub(crate) enum Creator {
    /// A module loaded in this process (a library, or a built-in plugin).
    Module(loader::Creator),
    /// A library run in worker processes.
    Worker(Arc<process::WorkerSpec>),
}

impl Creator {
    /// Asks the plugin to validate a config (JSON) without an instance.
    pub(crate) fn validate_config(&self, config: &[u8]) -> Result<Vec<u8>, PluginError> {
        match self {
            Self::Module(creator) => creator.validate_config(config),
            Self::Worker(spec) => {
                let worker = started(spec)?;
                let mut out = Vec::new();
                let code = worker.validate(config, &mut out);
                // Kept for the `create` that follows a validation.
                *spec.spare.lock() = Some(worker);
                if code == ErrorCode::OK {
                    Ok(out)
                } else {
                    Err(PluginError::new(code, String::from_utf8_lossy(&out)))
                }
            }
        }
    }

    /// Creates an instance with `context`.
    pub(crate) fn create(&self, context: HostContext) -> Result<Instance, PluginError> {
        match self {
            Self::Module(creator) => creator.create(context).map(Instance::Module),
            Self::Worker(spec) => {
                let worker = started(spec)?;
                let mut out = Vec::new();
                match worker.create(context.token, &mut out) {
                    ErrorCode::OK => Ok(Instance::Worker(Box::new(worker))),
                    code => Err(PluginError::new(code, String::from_utf8_lossy(&out))),
                }
            }
        }
    }

    /// The library's raw entry, for the benchmarks' baseline (in-process only).
    #[cfg(feature = "test-support")]
    pub(crate) fn raw_entry(
        &self,
    ) -> Option<extern "C" fn() -> abi_stable::std_types::RSlice<'static, u8>> {
        match self {
            Self::Module(creator) => Some(creator.raw_entry()),
            Self::Worker(_) => None,
        }
    }
}

/// A worker for `spec`, or why none could be started, as the plugin error creation reports.
fn started(spec: &process::WorkerSpec) -> Result<process::Worker, PluginError> {
    spec.worker()
        .map_err(|(_, message)| PluginError::new(process::WORKER_FAILURE, message))
}

/// A live instance: in this process, or in a worker.
pub(crate) enum Instance {
    /// In this process.
    Module(loader::Instance),
    /// In a worker process (boxed: the in-process variant stays small on the call path).
    Worker(Box<process::Worker>),
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Module(i) => i.fmt(f),
            Self::Worker(w) => w.fmt(f),
        }
    }
}

impl Instance {
    /// Runs one invocation (see [`loader::Instance::call`]).
    #[inline(always)]
    pub(crate) fn call(
        &self,
        kind: InvocationKind,
        index: u32,
        name: &str,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> ErrorCode {
        match self {
            Self::Module(instance) => instance.call(kind, index, name, payload, out),
            Self::Worker(worker) => worker.call(kind.0, index, name, payload, out),
        }
    }

    /// Tears the instance down and frees it (a worker exits).
    pub(crate) fn destroy(self) -> Result<(), PluginError> {
        match self {
            Self::Module(instance) => instance.destroy(),
            Self::Worker(worker) => {
                let mut out = Vec::new();
                match worker.destroy(&mut out) {
                    ErrorCode::OK => Ok(()),
                    code => Err(PluginError::new(code, String::from_utf8_lossy(&out))),
                }
            }
        }
    }

    /// Kills the instance's worker now, if it runs in one (the watchdog, for a call past its
    /// timeout and grace): a host thread talking to it is freed by the channel closing.
    pub(crate) fn kill_worker(&self) {
        if let Self::Worker(worker) = self {
            worker.kill_now();
        }
    }

    /// Whether this is an instance in a worker that has died.
    pub(crate) fn worker_died(&self) -> bool {
        matches!(self, Self::Worker(w) if w.is_dead())
    }

    /// How its worker ended, if it ended while no call was talking to it (see
    /// [`process::Worker::ended_unseen`]).
    pub(crate) fn worker_ended_unseen(&self) -> Option<String> {
        match self {
            Self::Worker(w) => w.ended_unseen(),
            Self::Module(_) => None,
        }
    }
}

/// The environment variable that has the worker only sandbox itself and say how it went.
const PROBE_ENV: &str = "AIRLOCK_WORKER_PROBE";

/// What the worker at `program` can enforce of `sandbox` on this system: a worker is started,
/// sandboxes itself as it would before creating a plugin, says what the kernel enforced, and
/// exits (`airlock check`). `Err` if it cannot start, or if the policy requires the whole
/// sandbox and the kernel cannot enforce it.
pub(crate) fn probe(program: &Path, sandbox: &crate::policy::Sandbox) -> Result<String, String> {
    let mut command = std::process::Command::new(program);
    command.env_clear().env(PROBE_ENV, "1");
    if let Some(settings) = self::sandbox::to_env(sandbox) {
        command.env(self::sandbox::ENV, settings);
    }
    let output = command
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| cannot_start(program, &e))?;
    let said = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    match (output.status.success(), said.is_empty()) {
        (true, _) => Ok(said),
        (false, false) => Err(said),
        (false, true) => Err(format!(
            "the worker {} {}: {}",
            program.display(),
            limits::ended(output.status),
            String::from_utf8_lossy(&output.stderr).trim()
        )),
    }
}

/// Why the worker at `program` could not be started, and what to do.
fn cannot_start(program: &Path, error: &std::io::Error) -> String {
    format!(
        "cannot start the worker {}: {error} (build it with `cargo build -p airlock-worker`, \
         or set [host] worker in the policy)",
        program.display()
    )
}

/// Where the worker executable is: `configured` if set, else `airlock-worker` beside this
/// program or one directory up (where cargo puts a workspace's binaries for its tests).
pub(crate) fn find_worker(configured: Option<&Path>) -> PathBuf {
    if let Some(path) = configured {
        return path.to_owned();
    }
    let name = format!("airlock-worker{}", std::env::consts::EXE_SUFFIX);
    let exe = std::env::current_exe().ok();
    let dir = exe.as_deref().and_then(Path::parent);
    let candidates = [
        dir.map(|d| d.join(&name)),
        dir.and_then(Path::parent).map(|d| d.join(&name)),
    ];
    candidates
        .iter()
        .flatten()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| PathBuf::from(name))
}
