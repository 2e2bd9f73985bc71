//! `airlock validate`: a conformance run against one built plugin. It loads the library into a
//! private host (every declared capability granted), runs every declared action with an empty
//! and an invalid input and every declared hook, asks for health, tears the plugin down and
//! checks that its context was revoked. A plugin passes when nothing panics, nothing overruns,
//! and every failure is one of the clean codes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use airlock_abi::manifest::Manifest;
use airlock_abi::HookReply;
use serde::Serialize;
use serde_json::{json, Value};

use airlock::pipeline::{read_library, DEFAULT_MAX_LIBRARY_SIZE};
use airlock::plugins::TeardownOutcome;
use airlock::{CallError, CallErrorCode, Error, Host, Policy, Reply};

/// One check and its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// What happened.
    pub detail: String,
}

/// Every check of one library.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ValidationReport {
    /// The checks, in the order they ran.
    pub checks: Vec<Check>,
}

impl ValidationReport {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    fn push(&mut self, name: impl Into<String>, passed: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.into(),
            passed,
            detail: detail.into(),
        });
    }

    /// The report as a pass/fail list for people.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let _ = writeln!(
                out,
                "{} {}: {}",
                if c.passed { "PASS" } else { "FAIL" },
                c.name,
                c.detail
            );
        }
        let failed = self.checks.iter().filter(|c| !c.passed).count();
        let _ = writeln!(
            out,
            "{} passed, {failed} failed",
            self.checks.len() - failed
        );
        out
    }
}

/// Codes that are a clean answer to a bad input; anything else (a panic, a timeout, a handler
/// error) fails the check.
fn clean(result: &Result<Reply, CallError>) -> (bool, String) {
    match result {
        Ok(Reply::Ok(v)) => (true, format!("ok {v}")),
        Ok(Reply::Error(m)) => (true, format!("error {m}")),
        Ok(Reply::PendingApproval(id)) => (true, format!("pending_approval {id}")),
        Ok(Reply::Pending { id, description }) => (true, format!("pending {id}: {description}")),
        Err(e) => {
            let clean = matches!(
                e.code,
                CallErrorCode::BadInput
                    | CallErrorCode::CapabilityViolation
                    | CallErrorCode::NotFound
                    | CallErrorCode::PermissionDenied
                    | CallErrorCode::PendingApproval
            );
            (clean, format!("{}: {}", e.code, e.message))
        }
    }
}

/// Makes the private copy's directory and file writable by their owner only, whatever the
/// umask and the build's mode: stage 1 refuses a library its group may write.
fn owner_only(dir: &Path, file: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o755))?;
    }
    #[cfg(not(unix))]
    let _ = (dir, file);
    Ok(())
}

/// Runs the conformance checks on the library at `file`, with the libraries of the plugins it
/// depends on (`with`) loaded beside it.
///
/// # Errors
///
/// [`Error`] if the private host cannot be set up (temporary directories).
pub fn validate(file: &Path, with: &[PathBuf]) -> Result<ValidationReport, Error> {
    let mut report = ValidationReport::default();
    let library = match read_library(file, file, DEFAULT_MAX_LIBRARY_SIZE) {
        Ok(library) => library,
        Err(refusal) => {
            report.push(
                "reads without running",
                false,
                format!("{}: {}", refusal.reason, refusal.detail),
            );
            return Ok(report);
        }
    };
    report.push(
        "reads without running",
        true,
        format!(
            "{} {}, blake3 {}",
            library.manifest.id, library.manifest.version, library.blake3
        ),
    );
    let manifest: Manifest = library.manifest.clone();
    let work = tempfile::tempdir().map_err(|source| Error::DataDir {
        path: std::env::temp_dir(),
        source,
    })?;
    let plugins = work.path().join("plugins");
    std::fs::create_dir_all(&plugins).map_err(|source| Error::DataDir {
        path: plugins.clone(),
        source,
    })?;
    // The plugin and the ones it depends on, each granted what it declares.
    let mut policy = format!("[host]\ndata_dir = {:?}\n", work.path().join("data"));
    for library in std::iter::once(file).chain(with.iter().map(PathBuf::as_path)) {
        let manifest = match read_library(library, library, DEFAULT_MAX_LIBRARY_SIZE) {
            Ok(read) => read.manifest,
            Err(refusal) => {
                report.push("reads without running", false, refusal.to_string());
                return Ok(report);
            }
        };
        let name = library
            .file_name()
            .map_or_else(|| "plugin".into(), ToOwned::to_owned);
        std::fs::copy(library, plugins.join(&name))
            .and_then(|_| owner_only(&plugins, &plugins.join(&name)))
            .map_err(|source| Error::DataDir {
                path: plugins.clone(),
                source,
            })?;
        let grants: Vec<String> = manifest
            .capabilities
            .iter()
            .map(|c| format!("{:?}", c.capability.to_string()))
            .collect();
        policy.push_str(&format!(
            "[plugins.{}]\ngrants = [{}]\nquarantine_faults = 0\ncall_timeout_ms = 5000\nshutdown_deadline_ms = 5000\n",
            manifest.id,
            grants.join(", ")
        ));
    }
    let policy =
        Policy::parse(&policy, airlock::policy::PolicyFormat::Toml).map_err(|message| {
            Error::PolicyInvalid {
                path: work.path().join("policy.toml"),
                message,
            }
        })?;
    let host = Host::builder()
        .plugin_dir(&plugins)
        .policy(policy)
        .shadow_dir(work.path())
        .build()?;
    let load = host.load()?;
    let Some(entry) = (load.plugins.iter()).find(|p| p.id.as_deref() == Some(manifest.id.as_str()))
    else {
        report.push("loads", false, "the library was not found by discovery");
        return Ok(report);
    };
    if let Some(reason) = entry.reason {
        let hint = match reason {
            airlock::RefusalReason::MissingDependency
            | airlock::RefusalReason::DependencyVersion => {
                " (pass the libraries it depends on with --with FILE)"
            }
            _ => "",
        };
        report.push("loads", false, format!("{reason}: {}{hint}", entry.detail));
        return Ok(report);
    }
    report.push("loads", true, entry.detail.clone());
    let id = manifest.id.as_str();
    for action in &manifest.actions {
        for (label, input) in [
            ("empty input", Value::Null),
            (
                "invalid input",
                json!({"airlock-validate": [1, "\u{0}", null]}),
            ),
        ] {
            let (passed, detail) = clean(&host.call(id, &action.name).json(&input));
            report.push(
                format!("action {} with {label}", action.name),
                passed,
                detail,
            );
        }
    }
    for hook in &manifest.hooks {
        let (passed, detail) = match host.probe_hook(id, &hook.name, &Value::Null) {
            Ok(HookReply::Continue(v)) => (true, format!("continue {v}")),
            Ok(HookReply::Block(r)) => (true, format!("block {r}")),
            Ok(HookReply::Swallow(r)) => (true, format!("swallow {r}")),
            Err(e) => (
                matches!(
                    e.code,
                    CallErrorCode::BadInput | CallErrorCode::HandlerError
                ),
                format!("{}: {}", e.code, e.message),
            ),
        };
        report.push(format!("hook {} answers", hook.name), passed, detail);
    }
    match host.health(id) {
        Ok(health) => report.push("health answers", true, format!("{health:?}")),
        Err(e) => report.push(
            "health answers",
            false,
            format!("{}: {}", e.code, e.message),
        ),
    }
    let faults = host.plugin(id).map_or(0, |p| p.stats.faults);
    report.push(
        "panics are contained",
        host.health(id).is_ok(),
        format!("{faults} fault(s) counted; the host still serves the plugin"),
    );
    let teardown = host.shutdown();
    match teardown.first().map(|r| (&r.outcome, r.elapsed)) {
        Some((TeardownOutcome::Clean, elapsed)) => {
            report.push("teardown is clean", true, format!("in {elapsed:?}"))
        }
        Some((other, _)) => report.push("teardown is clean", false, format!("{other:?}")),
        None => report.push("teardown is clean", false, "the plugin was not running"),
    }
    let revoked = host.plugin(id).is_some_and(|p| !p.context_open);
    report.push(
        "context revoked after teardown",
        revoked,
        if revoked {
            "every host call now answers revoked"
        } else {
            "the context is still open"
        },
    );
    Ok(report)
}
