//! What the policy says of isolated plugins: where a plugin runs, its worker's restarts,
//! resource limits and sandbox, and how a policy file's keys override the defaults.

use std::path::PathBuf;
use std::time::Duration;

/// Where a plugin's code runs, from the policy's `isolation`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// In the host's process: the fastest calls; a crash of the plugin's native code is the
    /// host's.
    #[default]
    InProcess,
    /// In a worker process of its own: a crash, an abort or a hang ends the worker, not the
    /// host, and the plugin is restarted within the policy's budget.
    Process,
}

impl std::fmt::Display for Isolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::InProcess => "in-process",
            Self::Process => "process",
        })
    }
}

/// How an isolated plugin whose worker died is restarted: at most `budget` restarts within
/// `window` (then it is quarantined), each after `backoff` doubled per restart already made in
/// the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Restarts allowed within the window.
    pub budget: u32,
    /// The window restarts are counted in.
    pub window: Duration,
    /// The delay before the first restart in the window.
    pub backoff: Duration,
}

/// The resource limits of an isolated plugin's worker process; `None` leaves the system's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerLimits {
    /// Address space, in MiB (`memory_limit_mb`).
    pub memory_mb: Option<u64>,
    /// CPU time, in seconds (`cpu_limit_s`): SIGXCPU at the limit, SIGKILL a second later.
    pub cpu_s: Option<u64>,
    /// Open file descriptors (`open_files_limit`).
    pub open_files: Option<u64>,
}

/// The limits when the policy sets none: 1 GiB of address space, 256 open files, no CPU limit.
pub const DEFAULT_LIMITS: WorkerLimits = WorkerLimits {
    memory_mb: Some(1024),
    cpu_s: None,
    open_files: Some(256),
};

/// The sandbox of an isolated plugin's worker (Linux): a filesystem view limited by Landlock to
/// `read` (read-only; nothing writable), and a seccomp filter that refuses creating sockets and
/// processes, tracing, mounting and loading kernel code — each allowance explicit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    /// Whether the worker sandboxes itself (`sandbox`, default true).
    pub enabled: bool,
    /// Refuse the plugin (`load_failed`) unless the sandbox is fully enforced
    /// (`sandbox_required`, default false: the load report says what the kernel lacks).
    pub required: bool,
    /// Paths the plugin may read beneath (`allow_read`).
    pub read: Vec<PathBuf>,
    /// Whether it may create sockets (`allow_network`).
    pub network: bool,
    /// Whether it may create processes (`allow_processes`).
    pub processes: bool,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self {
            enabled: true,
            required: false,
            read: Vec::new(),
            network: false,
            processes: false,
        }
    }
}

/// The restarts when the policy sets none: 3 within a minute, the first after 10 ms.
pub const DEFAULT_RESTART: RestartPolicy = RestartPolicy {
    budget: 3,
    window: Duration::from_secs(60),
    backoff: Duration::from_millis(10),
};

/// `base` with what a policy file sets instead.
pub(super) fn restart(
    base: RestartPolicy,
    budget: Option<u32>,
    window_ms: Option<u64>,
    backoff_ms: Option<u64>,
) -> RestartPolicy {
    RestartPolicy {
        budget: budget.unwrap_or(base.budget),
        window: window_ms.map_or(base.window, Duration::from_millis),
        backoff: backoff_ms.map_or(base.backoff, Duration::from_millis),
    }
}

/// `base` with what a policy file sets instead (0 lifts a limit).
pub(super) fn limits(
    base: WorkerLimits,
    memory_mb: Option<u64>,
    cpu_s: Option<u64>,
    open_files: Option<u64>,
) -> WorkerLimits {
    let or = |set: Option<u64>, base: Option<u64>| match set {
        Some(0) => None,
        Some(n) => Some(n),
        None => base,
    };
    WorkerLimits {
        memory_mb: or(memory_mb, base.memory_mb),
        cpu_s: or(cpu_s, base.cpu_s),
        open_files: or(open_files, base.open_files),
    }
}

/// `base` with what a policy file sets instead.
pub(super) fn sandbox(
    base: &Sandbox,
    enabled: Option<bool>,
    required: Option<bool>,
    network: Option<bool>,
    processes: Option<bool>,
    read: Option<Vec<PathBuf>>,
) -> Sandbox {
    Sandbox {
        enabled: enabled.unwrap_or(base.enabled),
        required: required.unwrap_or(base.required),
        read: read.unwrap_or_else(|| base.read.clone()),
        network: network.unwrap_or(base.network),
        processes: processes.unwrap_or(base.processes),
    }
}
