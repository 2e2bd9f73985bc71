//! The worker's seccomp filter (Linux), part of its sandbox: `EPERM` for what reaches into other
//! processes or the kernel, for signals to another process, and — unless the policy allows
//! them — for what creates sockets or processes; `ENOSYS` for `clone3`.

use std::collections::BTreeMap;

use super::sandbox::Settings;

/// The rules of a seccomp filter, by system call: a call with no rule is caught whatever its
/// arguments; one with rules, when any of them matches.
type Rules = BTreeMap<i64, Vec<seccompiler::SeccompRule>>;

/// Installs the filter and says what it refuses: `EPERM` for what creates sockets or processes
/// (unless allowed), for io_uring and for the escapes; `ENOSYS` for `clone3`, whose flags a
/// filter cannot read, so that the C library falls back to `clone` — threads pass, processes
/// do not.
pub(super) fn filter(settings: &Settings) -> Result<String, String> {
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|e| format!("no seccomp filter on this architecture: {e:?}"))?;
    let mut denied = escapes();
    deny_signals_to_others(&mut denied, settings.processes)?;
    if !settings.network {
        denied.insert(libc::SYS_socket, Vec::new());
        denied.insert(libc::SYS_socketpair, Vec::new());
    }
    let mut unavailable = Rules::new();
    if !settings.processes {
        deny_new_processes(&mut denied, &mut unavailable)?;
    }
    apply_filters(denied, unavailable, arch)?;
    let allowed = |yes: bool| if yes { "allowed" } else { "refused" };
    Ok(format!(
        "seccomp on (sockets {}, processes {})",
        allowed(settings.network),
        allowed(settings.processes)
    ))
}

/// The system calls refused whatever the policy allows: reaching into other processes,
/// io_uring and userfaultfd, mounting and namespaces, loading kernel code, BPF, perf and the
/// kernel's keyrings.
fn escapes() -> Rules {
    [
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
    .collect()
}

/// Signals to another process, however sent: a pidfd's, and a file's owner signalled when it
/// is ready (SIGIO, or any signal `F_SETSIG` picks) — the channel's socket included; typing into
/// a terminal; and, unless the plugin may start processes, `kill` and its kin aimed anywhere but
/// at the worker itself.
fn deny_signals_to_others(denied: &mut Rules, processes: bool) -> Result<(), String> {
    use seccompiler::SeccompCmpOp;
    // The commands refused to `fcntl` and `ioctl`: Linux's values on x86_64 and aarch64 (the
    // libc crate does not name them all).
    const F_SETOWN: u32 = 8;
    const F_SETSIG: u32 = 10;
    const F_SETOWN_EX: u32 = 15;
    const FIOSETOWN: u32 = 0x8901;
    const SIOCSPGRP: u32 = 0x8902;
    const TIOCSTI: u32 = 0x5412;
    const TIOCLINUX: u32 = 0x541C;
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
    if !processes {
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
    Ok(())
}

/// No new process: no `exec`, no `fork`, no `clone` without `CLONE_THREAD`, and `clone3` made
/// `unavailable` (its flags are out of a filter's reach).
fn deny_new_processes(denied: &mut Rules, unavailable: &mut Rules) -> Result<(), String> {
    use seccompiler::{SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};
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
    Ok(())
}

/// Installs the filters on every thread (TSYNC: the worker has one now, but a filter that binds
/// only its caller is not one to rely on): `EPERM` for what is `denied`, then `ENOSYS` for what
/// is `unavailable`.
fn apply_filters(
    denied: Rules,
    unavailable: Rules,
    arch: seccompiler::TargetArch,
) -> Result<(), String> {
    use seccompiler::{apply_filter_all_threads, BpfProgram, SeccompAction, SeccompFilter};
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
    let denying = program(denied, libc::EPERM)?;
    apply_filter_all_threads(&denying).map_err(|e| failed(&e))?;
    if !unavailable.is_empty() {
        let hiding = program(unavailable, libc::ENOSYS)?;
        apply_filter_all_threads(&hiding).map_err(|e| failed(&e))?;
    }
    Ok(())
}

/// One condition on an argument's low 32 bits (what the kernel reads of an `int` or an
/// `unsigned int`, whatever the caller puts above them).
fn arg_is(
    arg: u8,
    op: seccompiler::SeccompCmpOp,
    value: u64,
) -> Result<seccompiler::SeccompRule, String> {
    use seccompiler::{SeccompCmpArgLen, SeccompCondition, SeccompRule};
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value)
        .and_then(|c| SeccompRule::new(vec![c]))
        .map_err(|e| failed(&e))
}

/// Why the filter could not be made or installed.
fn failed(e: &dyn std::fmt::Display) -> String {
    format!("the seccomp filter failed: {e}")
}
