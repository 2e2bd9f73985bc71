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
    let filter = super::seccomp::filter(settings)?;
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
