//! The resource limits a worker process puts on itself before it loads a plugin, from the
//! policy (`memory_limit_mb`, `cpu_limit_s`, `open_files_limit`): an isolated plugin that
//! allocates without bound, burns CPU outside any call or leaks descriptors ends its own worker.
//! The host hands them over in the worker's environment; the worker applies them first thing.
//! Here too: the signal that asks a hung worker to stop before it is killed, and how a worker
//! ended.

use std::io;

use crate::policy::WorkerLimits;

/// The environment variable the limits travel in.
pub(crate) const ENV: &str = "AIRLOCK_WORKER_LIMITS";

/// `memory=<bytes>,cpu=<seconds>,files=<n>`, each only when set.
pub(crate) fn to_env(limits: &WorkerLimits) -> String {
    let mut parts = Vec::new();
    if let Some(mb) = limits.memory_mb {
        parts.push(format!("memory={}", mb.saturating_mul(1 << 20)));
    }
    if let Some(s) = limits.cpu_s {
        parts.push(format!("cpu={s}"));
    }
    if let Some(n) = limits.open_files {
        parts.push(format!("files={n}"));
    }
    parts.join(",")
}

/// What the host's limits mean for messages: `memory 256 MiB, 64 open files`.
pub(crate) fn describe(limits: &WorkerLimits) -> String {
    let mut parts = Vec::new();
    if let Some(mb) = limits.memory_mb {
        parts.push(format!("memory {mb} MiB"));
    }
    if let Some(s) = limits.cpu_s {
        parts.push(format!("CPU time {s} s"));
    }
    if let Some(n) = limits.open_files {
        parts.push(format!("{n} open files"));
    }
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

/// Applies the limits in `text` (from [`ENV`]) to this process.
///
/// # Errors
///
/// A malformed entry, or a limit the system refused.
pub(crate) fn apply(text: &str) -> io::Result<()> {
    for entry in text.split(',').filter(|e| !e.is_empty()) {
        let bad = || io::Error::new(io::ErrorKind::InvalidInput, format!("limit {entry:?}"));
        let (name, value) = entry.split_once('=').ok_or_else(bad)?;
        let value: u64 = value.parse().map_err(|_| bad())?;
        match name {
            "memory" => set(libc::RLIMIT_AS, value, value)?,
            // SIGXCPU at the soft limit, SIGKILL a second later.
            "cpu" => set(libc::RLIMIT_CPU, value, value.saturating_add(1))?,
            "files" => set(libc::RLIMIT_NOFILE, value, value)?,
            _ => return Err(bad()),
        }
    }
    Ok(())
}

/// Asks the worker `pid` to stop (SIGTERM); it is killed (SIGKILL) if it has not by the
/// deadline.
pub(crate) fn terminate(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: `kill` takes plain integers and touches no memory of this process; `pid` is a
    // child of this process that has not been waited for (so its id cannot have been reused).
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}

/// How a worker ended: `killed by signal 11 (SIGSEGV)`, `exited with exit status: 2`.
pub(crate) fn ended(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(signal) => format!("killed by signal {signal} ({})", signal_name(signal)),
        None => format!("exited with {status}"),
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        31 => "SIGSYS",
        _ => "signal",
    }
}

#[cfg(target_env = "gnu")]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type Resource = libc::c_int;

fn set(resource: Resource, soft: u64, hard: u64) -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: `setrlimit` only reads the `rlimit` passed by reference, which lives for the
    // whole call; it has no other memory-safety precondition.
    let rc = unsafe { libc::setrlimit(resource, &limit) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_travel_as_text_and_a_malformed_one_is_refused() {
        let limits = WorkerLimits {
            memory_mb: Some(256),
            cpu_s: None,
            open_files: Some(64),
        };
        assert_eq!(to_env(&limits), "memory=268435456,files=64");
        assert_eq!(describe(&limits), "memory 256 MiB, 64 open files");
        assert!(apply("memory=lots").is_err());
        assert!(apply("stack=1").is_err());
        assert!(apply("").is_ok());
    }
}
