//! The operator's side: `airlock install`, `remove` and `list` over a plugin directory.
//!
//! An install checks the file as a host would (stages 2 and 3, its signature included: nothing
//! of it runs), refuses an id another installed file has unless asked to replace it, and puts
//! the library and its signature into the directory each by a rename of a file written and
//! synced beside it — a host watching the directory never sees half a library. It updates the
//! lock file in force, and says what the plugin asks for against what the policy grants.

use std::fs;
use std::path::Path;
use std::process::ExitCode;

use airlock::fleet::{
    install_file, installed, remove_library, unpin, Destination, FleetError, Origin,
};
use airlock::pipeline::{check, check_plugin_dir, effective_grants, Lock, PipelineOptions};
use airlock::Policy;

use crate::Result;

/// `airlock install FILE... --dir DIR`: each file checked, placed atomically with its
/// signature, pinned in the lock in force, and what it asks for told.
pub(crate) fn install(files: &[std::path::PathBuf], to: Destination<'_>) -> Result<ExitCode> {
    prepare_plugin_dir(to.dir, to.policy)?;
    let mut code = ExitCode::SUCCESS;
    for file in files {
        if !install_one(file, to, None)? {
            code = ExitCode::from(1);
        }
    }
    Ok(code)
}

/// Installs one file (from the command line, or fetched from an artifact) and says what it
/// did; `false` if it was refused.
pub(super) fn install_one(
    file: &Path,
    to: Destination<'_>,
    origin: Option<&Origin>,
) -> Result<bool> {
    let (lock, policy) = (to.lock, to.policy);
    let done = match install_file(file, to, origin) {
        Ok(done) => done,
        // Fetched into a staging directory: the artifact names what was refused.
        Err(FleetError::Refused(refusal)) if origin.is_some() => {
            let origin = origin
                .map(|o| format!("{}@{}", o.source, o.digest))
                .unwrap_or_default();
            println!(
                "not installed: {origin}: refused ({}): {}",
                refusal.reason, refusal.detail
            );
            return Ok(false);
        }
        Err(e @ (FleetError::Refused(_) | FleetError::Conflict(_))) => {
            println!("not installed: {e}");
            return Ok(false);
        }
        Err(e) => return Err(e.into()),
    };
    for (path, id) in &done.removed {
        println!("removed {} ({id})", path.display());
    }
    let file = &done.checked.file;
    println!(
        "installed {} {} as {} ({}; blake3 {})",
        file.manifest.id,
        file.manifest.version,
        done.target.display(),
        file.signature,
        file.blake3
    );
    if let (Some(lock), true) = (lock, done.pinned) {
        match origin {
            Some(origin) => println!(
                "pinned in {} with {} {}",
                lock.display(),
                origin.source,
                origin.digest
            ),
            None => println!("pinned in {}", lock.display()),
        }
    }
    print!("{}", grants_report(&done.checked, policy));
    for warning in &done.checked.decision.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(true)
}

/// Creates the plugin directory if it is missing, writable by its owner only (whatever the
/// umask allows the group), and holds it to stage 1's rule: a host would refuse every library
/// in a directory others may write.
pub(super) fn prepare_plugin_dir(dir: &Path, policy: &Policy) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o755);
    builder
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let host = policy.host();
    check_plugin_dir(dir, &host.trusted_owners, &host.trusted_groups).map_err(|detail| {
        format!(
            "not installed: a host would refuse every library in it (unsafe_permissions): \
             {detail}"
        )
        .into()
    })
}

/// What the plugin asks for against what the policy grants, with the lines to add.
fn grants_report(checked: &airlock::pipeline::Checked, policy: &Policy) -> String {
    let manifest = &checked.file.manifest;
    let granted = effective_grants(
        &manifest.capabilities,
        &policy.for_plugin(&manifest.id).grants,
    );
    let mut out = String::new();
    let mut missing = Vec::new();
    for declared in &manifest.capabilities {
        let is_granted = granted.contains(&declared.capability);
        out.push_str(&format!(
            "  {:<28} {}{}{}\n",
            declared.capability.to_string(),
            if declared.required { "required, " } else { "" },
            if is_granted { "granted" } else { "not granted" },
            declared
                .reason
                .as_deref()
                .map(|r| format!(" - {r}"))
                .unwrap_or_default()
        ));
        if !is_granted {
            missing.push(format!("{:?}", declared.capability.to_string()));
        }
    }
    if manifest.capabilities.is_empty() {
        out.push_str("  it asks for no capabilities\n");
    }
    let mut report = format!("{} asks for:\n{out}", manifest.id);
    if !missing.is_empty() {
        report.push_str(&format!(
            "to grant what it asks for, add to the policy:\n  [plugins.{}]\n  grants = [{}]\n",
            manifest.id,
            policy
                .for_plugin(&manifest.id)
                .grants
                .iter()
                .map(|g| format!("{:?}", g.to_string()))
                .chain(missing)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    report
}

/// `airlock remove ID --dir DIR`: the library (and its signature, and its lock entry).
pub(crate) fn remove(id: &str, dir: &Path, lock: Option<&Path>) -> Result<ExitCode> {
    let found: Vec<_> = installed(dir).into_iter().filter(|i| i.id == id).collect();
    if found.is_empty() {
        println!("no plugin {id} is installed in {}", dir.display());
        return Ok(ExitCode::from(1));
    }
    for library in &found {
        remove_library(&library.path)?;
        println!("removed {} ({id})", library.path.display());
    }
    if let Some(lock) = lock {
        if unpin(lock, id)? {
            println!("unpinned {id} from {}", lock.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `airlock list DIR`: id, version, publisher, hash, the checks' verdict of each library, and
/// where it came from (the artifact and digest its lock entry pins).
pub(crate) fn list(options: &PipelineOptions) -> Result<ExitCode> {
    println!(
        "{:<20} {:<10} {:<24} {:<16} {:<10} SOURCE",
        "PLUGIN", "VERSION", "PUBLISHER", "BLAKE3", "CHECKS"
    );
    let source = |id: &airlock_abi::manifest::PluginId| {
        let entry = options.lock.as_ref().and_then(|l: &Lock| l.get(id));
        match entry.and_then(|e| e.source.as_ref().zip(e.digest.as_ref())) {
            Some((source, digest)) => format!("{source}@{digest}"),
            None => "file".to_owned(),
        }
    };
    for checked in check(options)? {
        match checked {
            Ok(c) => {
                let publisher = match &c.file.signature {
                    airlock::pipeline::SignatureStatus::Verified { publisher, .. } => {
                        publisher.clone()
                    }
                    airlock::pipeline::SignatureStatus::Unsigned => "unsigned".to_owned(),
                    airlock::pipeline::SignatureStatus::Untrusted { key_id } => {
                        format!("untrusted {key_id}")
                    }
                    airlock::pipeline::SignatureStatus::Invalid { .. } => "invalid".to_owned(),
                };
                println!(
                    "{:<20} {:<10} {:<24} {:<16} {:<10} {}",
                    c.file.manifest.id.to_string(),
                    c.file.manifest.version.to_string(),
                    publisher,
                    &c.file.blake3[..16],
                    "ok",
                    source(&c.file.manifest.id)
                );
            }
            Err(refusal) => println!(
                "{:<20} {:<10} {:<24} {:<16} refused: {} ({})",
                refusal
                    .id
                    .as_ref()
                    .map_or_else(|| refusal.file.display().to_string(), ToString::to_string),
                "-",
                "-",
                "-",
                refusal.reason,
                refusal.detail
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}
