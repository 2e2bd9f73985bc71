//! The resource limits a worker process puts on itself before it loads a plugin, from the
//! policy (`memory_limit_mb`, `cpu_limit_s`, `open_files_limit`): an isolated plugin that
//! allocates without bound, burns CPU outside any call or leaks descriptors ends its own worker.
//! The host hands them over in the worker's environment; the worker applies them first thing.
//! Here too: how a worker is killed (through a pidfd, never by a process id that could have
//! been reused), and how it ended.

use std::io;
use std::os::fd::OwnedFd;

use rustix::process::{Pid, Resource, Rlimit, Signal};

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
            "memory" => set(Resource::As, value, value)?,
            // SIGXCPU at the soft limit, SIGKILL a second later.
            "cpu" => set(Resource::Cpu, value, value.saturating_add(1))?,
            "files" => set(Resource::Nofile, value, value)?,
            _ => return Err(bad()),
        }
    }
    Ok(())
}

/// A descriptor for the worker `pid`, a child of this process not yet waited for (so the id
/// is still its own); `None` where the kernel has no pidfds.
#[cfg(target_os = "linux")]
pub(crate) fn pidfd(pid: u32) -> Option<OwnedFd> {
    let pid = i32::try_from(pid).ok().and_then(Pid::from_raw)?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
}

/// No pidfds here: the worker is signalled through its `Child`, locked against being reaped.
#[cfg(not(target_os = "linux"))]
pub(crate) fn pidfd(_: u32) -> Option<OwnedFd> {
    None
}

/// SIGKILL to the worker behind `pidfd`: it reaches that process or, if it has ended, nothing.
#[cfg(target_os = "linux")]
pub(crate) fn kill(pidfd: &OwnedFd) {
    let _ = rustix::process::pidfd_send_signal(pidfd, Signal::KILL);
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn kill(_: &OwnedFd) {}

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

fn set(resource: Resource, soft: u64, hard: u64) -> io::Result<()> {
    let limit = Rlimit {
        current: Some(soft),
        maximum: Some(hard),
    };
    Ok(rustix::process::setrlimit(resource, limit)?)
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
