//! The sandbox a worker puts itself in once the plugin's library is loaded and before the
//! plugin is created (Linux): no new privileges; a filesystem view limited by Landlock to the
//! paths the policy lets it read (nothing writable); and a seccomp filter that refuses creating
//! sockets and processes, tracing other processes, mounting, and loading kernel code — unless
//! the policy allows sockets or processes. What the kernel cannot enforce is said in the load
//! report; with `sandbox_required`, it refuses the plugin instead.

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
}

/// Reads [`to_env`]'s text.
pub(crate) fn from_env(text: &str) -> Settings {
    let mut settings = Settings::default();
    for field in text.split(';') {
        match field.split_once('=') {
            Some(("required", v)) => settings.required = v == "1",
            Some(("network", v)) => settings.network = v == "1",
            Some(("processes", v)) => settings.processes = v == "1",
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

/// Sandboxes this process; says what is enforced (`Err` when `required` and something is not).
#[cfg(target_os = "linux")]
pub(crate) fn enter(settings: &Settings) -> Result<String, String> {
    let landlock = landlock_view(&settings.read)?;
    let filter = seccomp(settings)?;
    let status = format!("{landlock}; {filter}");
    let complete = landlock.starts_with("Landlock fully") && filter.starts_with("seccomp");
    if settings.required && !complete {
        return Err(format!(
            "the policy requires the sandbox and this kernel cannot enforce all of it ({status})"
        ));
    }
    Ok(status)
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn enter(settings: &Settings) -> Result<String, String> {
    let status = "no sandbox on this system".to_owned();
    if settings.required {
        return Err(format!("the policy requires the sandbox: {status}"));
    }
    Ok(status)
}

/// Landlock: every filesystem access right handled, read-only access beneath `read`.
#[cfg(target_os = "linux")]
fn landlock_view(read: &[String]) -> Result<String, String> {
    use landlock::{
        path_beneath_rules, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr,
        RulesetStatus, ABI,
    };
    let abi = ABI::V3;
    let restricted = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.create())
        .and_then(|r| r.add_rules(path_beneath_rules(read, AccessFs::from_read(abi))))
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

/// seccomp: `EPERM` for what creates sockets or processes (unless allowed) and for the escapes;
/// `ENOSYS` for `clone3`, whose flags a filter cannot read, so that the C library falls back to
/// `clone` — threads pass, processes do not.
#[cfg(target_os = "linux")]
fn seccomp(settings: &Settings) -> Result<String, String> {
    use seccompiler::{
        apply_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
        SeccompFilter, SeccompRule,
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
    let denying = program(denied, libc::EPERM)?;
    apply_filter(&denying).map_err(|e| failed(&e))?;
    if !unavailable.is_empty() {
        let hiding = program(unavailable, libc::ENOSYS)?;
        apply_filter(&hiding).map_err(|e| failed(&e))?;
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
            }
        );
        let off = Sandbox {
            enabled: false,
            ..Sandbox::default()
        };
        assert_eq!(to_env(&off), None);
    }
}
