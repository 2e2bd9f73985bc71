//! The sandbox a worker puts itself in before the plugin's library is opened (Linux), while it
//! is still one thread: no capabilities and no new privileges; a filesystem view limited by
//! Landlock to the paths the policy lets it read (nothing writable), with its network rules and
//! scopes where the kernel has them; and a seccomp filter on every thread that refuses creating
//! sockets and processes (unless the policy allows them), io_uring, reaching into other
//! processes (ptrace, `process_vm_*`, pidfds, `process_madvise`, `kcmp`), mounting, and loading
//! kernel code. What the kernel cannot enforce is said in the load report; with
//! `sandbox_required`, it refuses the plugin instead.

use crate::policy::Sandbox;

/// The environment variable the sandbox's settings travel in.
pub(crate) const ENV: &str = "AIRLOCK_WORKER_SANDBOX";

/// The settings as the worker reads them: `required=1;network=0;processes=0;read=/a:/b`. No
/// variable means no sandbox.
pub(crate) fn to_env(sandbox: &Sandbox) -> Option<String> {
    sandbox.enabled.then(|| {
        let read: Vec<String> = sandbox
            .read
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        format!(
            "required={};network={};processes={};read={}",
            u8::from(sandbox.required),
            u8::from(sandbox.network),
            u8::from(sandbox.processes),
            read.join(":")
        )
    })
}

/// What the worker was told.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) required: bool,
    pub(crate) network: bool,
    pub(crate) processes: bool,
    pub(crate) read: Vec<String>,
    /// `landlock=0`: leave Landlock out, to see that the other rules hold on their own. The host
    /// never writes it; a worker wrapper that a test (or a kernel without Landlock) stands for.
    pub(crate) without_landlock: bool,
}

/// Reads [`to_env`]'s text.
pub(crate) fn from_env(text: &str) -> Settings {
    let mut settings = Settings::default();
    for field in text.split(';') {
        match field.split_once('=') {
            Some(("required", v)) => settings.required = v == "1",
            Some(("network", v)) => settings.network = v == "1",
            Some(("processes", v)) => settings.processes = v == "1",
            Some(("landlock", v)) => settings.without_landlock = v == "0",
            Some(("read", v)) => {
                settings.read = v
                    .split(':')
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
            _ => {}
        }
    }
    settings
}

/// Marks this process non-dumpable, once: its memory is then out of reach of every process
/// without `CAP_SYS_PTRACE` in its user namespace — a worker drops every capability before any
/// plugin code runs — whatever user it runs as and whether or not Landlock holds. (Landlock
/// refuses a sandboxed worker the host's memory too: two rules, not one.)
#[cfg(target_os = "linux")]
pub(crate) fn protect_host_memory() {
    static PROTECTED: std::sync::Once = std::sync::Once::new();
    PROTECTED.call_once(|| {
        if let Err(e) =
            rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        {
            tracing::warn!("the host could not mark itself non-dumpable: {e}");
        }
    });
}

/// No dumpable mark elsewhere (no sandbox either: the load report says so).
#[cfg(not(target_os = "linux"))]
pub(crate) fn protect_host_memory() {}

/// Sandboxes this process before any plugin code runs; says what is enforced (`Err` when
/// `required` and something is not, or when the process is not single-threaded). In order:
/// the capabilities are dropped (no `CAP_SYS_PTRACE`: a worker running as root cannot reach
/// the host's memory past its non-dumpable mark), Landlock's filesystem view (with read access
/// to `library`, the copy about to be loaded, when it is a file), its network rules and scopes
/// where the kernel has them, then the seccomp filter on every thread. Called while the worker
/// is one thread, so that everything after it — the library's constructors and every thread
/// they start — inherits all of it.
#[cfg(target_os = "linux")]
pub(crate) fn enter(
    settings: &Settings,
    library: Option<&std::fs::File>,
) -> Result<String, String> {
    let threads = std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count);
    if threads != 1 {
        return Err(format!(
            "the worker has {threads} threads as it sandboxes itself (it must have one: Landlock \
             binds only the thread that enters it)"
        ));
    }
    // Out of the host's session: no controlling terminal to type into, no signal from it.
    let _ = rustix::process::setsid();
    // Not dumpable: another worker of the same user cannot open this one's memory either.
    let dumpable =
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
    let capabilities = drop_capabilities();
    let (landlock, scoped) = if settings.without_landlock {
        let off = "Landlock left out (landlock=0)".to_owned();
        (off.clone(), off)
    } else {
        (
            landlock_view(&settings.read, library)?,
            landlock_scopes(settings),
        )
    };
    let filter = seccomp(settings)?;
    let status = format!("{landlock}; {filter}; {scoped}; {capabilities}");
    // What `sandbox_required` requires: the filesystem view, the filter, no capabilities and
    // not dumpable. The TCP rules and the scopes are reported; the filter refuses sockets and
    // signals to other processes without them.
    let complete = landlock.starts_with("Landlock fully")
        && filter.starts_with("seccomp")
        && capabilities == "no capabilities"
        && dumpable.is_ok();
    if settings.required && !complete {
        return Err(format!(
            "the policy requires the sandbox and this kernel cannot enforce all of it ({status})"
        ));
    }
    Ok(status)
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn enter(settings: &Settings, _: Option<&std::fs::File>) -> Result<String, String> {
    let status = "no sandbox on this system".to_owned();
    if settings.required {
        return Err(format!("the policy requires the sandbox: {status}"));
    }
    Ok(status)
}

/// Drops every capability this process has (a worker started by root has them all): without
/// `CAP_SYS_PTRACE` it cannot open a non-dumpable host's memory, whatever its user.
#[cfg(target_os = "linux")]
fn drop_capabilities() -> String {
    use rustix::thread::{set_capabilities, CapabilitySet, CapabilitySets};
    let none = CapabilitySets {
        effective: CapabilitySet::empty(),
        permitted: CapabilitySet::empty(),
        inheritable: CapabilitySet::empty(),
    };
    match set_capabilities(None, none) {
        Ok(()) => "no capabilities".to_owned(),
        Err(e) => format!("capabilities kept ({e})"),
    }
}

/// Landlock: every filesystem access right handled, read-only access beneath `read`, and read
/// and execute access to `library` (a shadow copy; a sealed in-memory copy is an anonymous file
/// no path rule governs).
#[cfg(target_os = "linux")]
fn landlock_view(read: &[String], library: Option<&std::fs::File>) -> Result<String, String> {
    use landlock::{
        path_beneath_rules, Access, AccessFs, PathBeneath, Ruleset, RulesetAttr,
        RulesetCreatedAttr, RulesetStatus, ABI,
    };
    let abi = ABI::V3;
    let restricted = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.create())
        .and_then(|r| r.add_rules(path_beneath_rules(read, AccessFs::from_read(abi))))
        .and_then(|r| match library {
            Some(file) => r.add_rule(PathBeneath::new(
                file,
                AccessFs::ReadFile | AccessFs::Execute,
            )),
            None => Ok(r),
        })
        .and_then(|r| r.restrict_self())
        .map_err(|e| format!("Landlock could not be set up: {e}"))?;
    Ok(match restricted.ruleset {
        RulesetStatus::FullyEnforced => "Landlock fully enforced".to_owned(),
        RulesetStatus::PartiallyEnforced => {
            "Landlock partly enforced (this kernel lacks some of its access rights)".to_owned()
        }
        RulesetStatus::NotEnforced => "Landlock not enforced (this kernel lacks it)".to_owned(),
    })
}

/// Landlock's later layers, where the kernel has them: no TCP connect or bind unless the policy
/// allows the network (a second lock beside the seccomp filter), and scopes — no signal to a
/// process outside the sandbox (the host), no connection to an abstract Unix socket outside it.
#[cfg(target_os = "linux")]
fn landlock_scopes(settings: &Settings) -> String {
    use landlock::{Access, AccessNet, Ruleset, RulesetAttr, RulesetStatus, Scope, ABI};
    let enforced = |status: Result<landlock::RestrictionStatus, landlock::RulesetError>| matches!(status, Ok(s) if s.ruleset == RulesetStatus::FullyEnforced);
    let network = settings.network
        || enforced(
            Ruleset::default()
                .handle_access(AccessNet::from_all(ABI::V4))
                .and_then(|r| r.create())
                .and_then(|r| r.restrict_self()),
        );
    let scopes = enforced(
        Ruleset::default()
            .scope(Scope::from_all(ABI::V6))
            .and_then(|r| r.create())
            .and_then(|r| r.restrict_self()),
    );
    let net = match (settings.network, network) {
        (true, _) => "TCP allowed",
        (false, true) => "TCP refused",
        (false, false) => "no Landlock TCP rules on this kernel",
    };
    let signals = if scopes {
        "signals and abstract sockets scoped"
    } else {
        "no Landlock scopes on this kernel"
    };
    format!("{net}; {signals}")
}

/// seccomp: `EPERM` for what creates sockets or processes (unless allowed), for io_uring and for
/// the escapes;
/// `ENOSYS` for `clone3`, whose flags a filter cannot read, so that the C library falls back to
/// `clone` — threads pass, processes do not.
#[cfg(target_os = "linux")]
fn seccomp(settings: &Settings) -> Result<String, String> {
    use seccompiler::{
        apply_filter_all_threads, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp,
        SeccompCondition, SeccompFilter, SeccompRule,
    };
    use std::collections::BTreeMap;

    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|e| format!("no seccomp filter on this architecture: {e:?}"))?;
    let failed = |e: &dyn std::fmt::Display| format!("the seccomp filter failed: {e}");
    let mut denied: BTreeMap<i64, Vec<SeccompRule>> = [
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        // Reaching into another process: its descriptors, its memory, comparing its objects.
        libc::SYS_pidfd_open,
        libc::SYS_pidfd_getfd,
        libc::SYS_process_madvise,
        libc::SYS_kcmp,
        // io_uring makes sockets and opens files past this filter (its operations are not
        // system calls), and userfaultfd is an exploit's favourite tool.
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_userfaultfd,
        libc::SYS_open_by_handle_at,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_setns,
        libc::SYS_unshare,
        libc::SYS_kexec_load,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
    ]
    .into_iter()
    .map(|call| (call, Vec::new()))
    .collect();
    // One condition on an argument's low 32 bits (what the kernel reads of an `int` or an
    // `unsigned int`, whatever the caller puts above them).
    let arg_is = |arg, op, value: u64| -> Result<SeccompRule, String> {
        SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value)
            .and_then(|c| SeccompRule::new(vec![c]))
            .map_err(|e| failed(&e))
    };
    // The commands refused to `fcntl` and `ioctl`: Linux's values on x86_64 and aarch64 (the
    // libc crate does not name them all).
    const F_SETOWN: u32 = 8;
    const F_SETSIG: u32 = 10;
    const F_SETOWN_EX: u32 = 15;
    const FIOSETOWN: u32 = 0x8901;
    const SIOCSPGRP: u32 = 0x8902;
    const TIOCSTI: u32 = 0x5412;
    const TIOCLINUX: u32 = 0x541C;
    // Signals to another process, however sent: a pidfd's, and a file's owner signalled when
    // it is ready (SIGIO, or any signal `F_SETSIG` picks) — the channel's socket included.
    denied.insert(libc::SYS_pidfd_send_signal, Vec::new());
    denied.insert(
        libc::SYS_fcntl,
        [F_SETOWN, F_SETOWN_EX, F_SETSIG]
            .into_iter()
            .map(|cmd| arg_is(1, SeccompCmpOp::Eq, u64::from(cmd)))
            .collect::<Result<_, _>>()?,
    );
    // The same through ioctl, and typing into a terminal (`TIOCSTI`, `TIOCLINUX`): the worker
    // has left the host's session, and these are refused besides.
    denied.insert(
        libc::SYS_ioctl,
        [FIOSETOWN, SIOCSPGRP, TIOCSTI, TIOCLINUX]
            .into_iter()
            .map(|cmd| arg_is(1, SeccompCmpOp::Eq, u64::from(cmd)))
            .collect::<Result<_, _>>()?,
    );
    if !settings.processes {
        // Signals only to itself: not to the host (nor its process group), whatever the
        // kernel's Landlock scopes. `tkill` names a thread of any process; the C library uses
        // `tgkill`. (A plugin allowed processes must signal its children, and they themselves:
        // there Landlock's signal scope, where the kernel has it, keeps them from the host.)
        let me = u64::from(std::process::id());
        for call in [
            libc::SYS_kill,
            libc::SYS_tgkill,
            libc::SYS_rt_sigqueueinfo,
            libc::SYS_rt_tgsigqueueinfo,
        ] {
            denied.insert(call, vec![arg_is(0, SeccompCmpOp::Ne, me)?]);
        }
        denied.insert(libc::SYS_tkill, Vec::new());
    }
    if !settings.network {
        denied.insert(libc::SYS_socket, Vec::new());
        denied.insert(libc::SYS_socketpair, Vec::new());
    }
    let mut unavailable = BTreeMap::new();
    if !settings.processes {
        denied.insert(libc::SYS_execve, Vec::new());
        denied.insert(libc::SYS_execveat, Vec::new());
        #[cfg(target_arch = "x86_64")]
        {
            denied.insert(libc::SYS_fork, Vec::new());
            denied.insert(libc::SYS_vfork, Vec::new());
        }
        // `clone` without CLONE_THREAD makes a process.
        let no_thread = SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64),
            0,
        )
        .and_then(|c| SeccompRule::new(vec![c]))
        .map_err(|e| failed(&e))?;
        denied.insert(libc::SYS_clone, vec![no_thread]);
        unavailable.insert(libc::SYS_clone3, Vec::new());
    }
    let program = |rules, errno: i32| -> Result<BpfProgram, String> {
        SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(errno as u32),
            arch,
        )
        .map_err(|e| failed(&e))?
        .try_into()
        .map_err(|e: seccompiler::BackendError| failed(&e))
    };
    // On every thread (TSYNC): the worker has one now, but a filter that binds only its
    // caller is not one to rely on.
    let denying = program(denied, libc::EPERM)?;
    apply_filter_all_threads(&denying).map_err(|e| failed(&e))?;
    if !unavailable.is_empty() {
        let hiding = program(unavailable, libc::ENOSYS)?;
        apply_filter_all_threads(&hiding).map_err(|e| failed(&e))?;
    }
    Ok(format!(
        "seccomp on (sockets {}, processes {})",
        if settings.network {
            "allowed"
        } else {
            "refused"
        },
        if settings.processes {
            "allowed"
        } else {
            "refused"
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_travel_as_text() {
        let sandbox = Sandbox {
            enabled: true,
            required: true,
            read: vec!["/usr/share".into(), "/etc/ssl".into()],
            network: false,
            processes: true,
        };
        let text = to_env(&sandbox).expect("enabled");
        assert_eq!(
            from_env(&text),
            Settings {
                required: true,
                network: false,
                processes: true,
                read: vec!["/usr/share".to_owned(), "/etc/ssl".to_owned()],
                without_landlock: false,
            }
        );
        let off = Sandbox {
            enabled: false,
            ..Sandbox::default()
        };
        assert_eq!(to_env(&off), None);
    }
}
