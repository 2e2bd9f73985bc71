//! The operator's side: `airlock install`, `remove` and `list` over a plugin directory.
//!
//! An install checks the file as a host would (stages 2 and 3, its signature included: nothing
//! of it runs), refuses an id another installed file has unless asked to replace it, and puts
//! the library and its signature into the directory each by a rename of a file written and
//! synced beside it — a host watching the directory never sees half a library. It updates the
//! lock file in force, and says what the plugin asks for against what the policy grants.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use airlock::pipeline::{
    check, check_file, check_plugin_dir, effective_grants, library_suffix, read_library,
    signature_path, Lock, LockEntry, PipelineOptions, DEFAULT_MAX_LIBRARY_SIZE,
};
use airlock::Policy;

use super::write_atomically;
use crate::Result;

/// A library in a plugin directory, read for its id and claims.
struct Installed {
    path: PathBuf,
    id: String,
    claims: Vec<String>,
}

/// The libraries in `dir`, by id (files that do not read as plugins are left out).
fn installed(dir: &Path) -> Vec<Installed> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<Installed> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == library_suffix()))
        .filter_map(|path| {
            let library = read_library(&path, &path, DEFAULT_MAX_LIBRARY_SIZE).ok()?;
            Some(Installed {
                id: library.manifest.id.to_string(),
                claims: library
                    .manifest
                    .claims
                    .iter()
                    .map(|c| c.kind.clone())
                    .collect(),
                path,
            })
        })
        .collect();
    found.sort_by(|a, b| a.path.cmp(&b.path));
    found
}

/// `airlock install FILE... --dir DIR`: each file checked, placed atomically with its
/// signature, pinned in the lock in force, and what it asks for told.
pub(crate) fn install(
    files: &[PathBuf],
    dir: &Path,
    policy: &Policy,
    lock: Option<&Path>,
    replace: bool,
) -> Result<ExitCode> {
    prepare_plugin_dir(dir, policy)?;
    let options = PipelineOptions {
        dirs: vec![dir.to_owned()],
        policy: policy.clone(),
        max_library_size: DEFAULT_MAX_LIBRARY_SIZE,
        // The file is checked to be pinned: the lock in force cannot name it yet.
        lock: None,
    };
    let mut code = ExitCode::SUCCESS;
    for file in files {
        let checked = match check_file(&options, file) {
            Ok(checked) => checked,
            Err(refusal) => {
                println!("not installed: {refusal}");
                code = ExitCode::from(1);
                continue;
            }
        };
        let manifest = &checked.file.manifest;
        let id = manifest.id.to_string();
        let Some(name) = file.file_name() else {
            continue;
        };
        let target = dir.join(name);
        // Another file with this id (or another plugin at this name) is replaced only if asked.
        let (clashes, staying): (Vec<Installed>, Vec<Installed>) = installed(dir)
            .into_iter()
            .partition(|i| i.id == id || i.path == target);
        let clashes: Vec<Installed> = clashes
            .into_iter()
            .filter(|i| (i.id == id) != (i.path == target))
            .collect();
        // One handler per kind of request, as at load (`claim_conflict`).
        if let Some((holder, kind)) = staying.iter().find_map(|i| {
            manifest
                .claims
                .iter()
                .find(|c| i.claims.contains(&c.kind))
                .map(|c| (i, &c.kind))
        }) {
            println!(
                "not installed: {}: plugin {id} claims {kind:?}, which {} ({}) already holds \
                 (claim_conflict)",
                file.display(),
                holder.id,
                holder.path.display()
            );
            code = ExitCode::from(1);
            continue;
        }
        if !clashes.is_empty() && !replace {
            for clash in &clashes {
                println!(
                    "not installed: {}: {} already holds plugin {}; remove it first, or install \
                     with --replace",
                    file.display(),
                    clash.path.display(),
                    clash.id
                );
            }
            code = ExitCode::from(1);
            continue;
        }
        for clash in &clashes {
            remove_library(&clash.path)?;
            println!("removed {} ({})", clash.path.display(), clash.id);
            if let (Some(lock), false) = (lock, clash.id == id) {
                unpin(lock, &clash.id)?;
            }
        }
        // Exactly what was checked: the signature first (or the stale one away), then the
        // library.
        let target_signature = signature_path(&target);
        match checked.file.signature_text() {
            Some(text) => write_atomically(&target_signature, text.as_bytes())?,
            None if target_signature.exists() => fs::remove_file(&target_signature)?,
            None => {}
        }
        write_atomically(&target, checked.file.bytes())?;
        println!(
            "installed {id} {} as {} ({}; blake3 {})",
            manifest.version,
            target.display(),
            checked.file.signature,
            checked.file.blake3
        );
        if let Some(lock) = lock {
            pin(lock, &checked, &target)?;
            println!("pinned in {}", lock.display());
        }
        print!("{}", grants_report(&checked, policy));
        for warning in &checked.decision.warnings {
            eprintln!("warning: {warning}");
        }
    }
    Ok(code)
}

/// Creates the plugin directory if it is missing, writable by its owner only (whatever the
/// umask allows the group), and holds it to stage 1's rule: a host would refuse every library
/// in a directory others may write.
fn prepare_plugin_dir(dir: &Path, policy: &Policy) -> Result<()> {
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

/// Pins the installed file in the lock file (creating it), as `airlock lock` would.
fn pin(lock: &Path, checked: &airlock::pipeline::Checked, target: &Path) -> Result<()> {
    let mut entries = if lock.exists() {
        Lock::from_file(lock)?.entries().clone()
    } else {
        Default::default()
    };
    entries.insert(
        checked.file.manifest.id.clone(),
        LockEntry {
            blake3: Some(checked.file.blake3.clone()),
            sha256: None,
            version: checked.file.manifest.version.to_string(),
            file: target
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        },
    );
    Lock::new(lock, entries).write()?;
    Ok(())
}

/// `airlock remove ID --dir DIR`: the library (and its signature, and its lock entry).
pub(crate) fn remove(id: &str, dir: &Path, lock: Option<&Path>) -> Result<ExitCode> {
    let found: Vec<Installed> = installed(dir).into_iter().filter(|i| i.id == id).collect();
    if found.is_empty() {
        println!("no plugin {id} is installed in {}", dir.display());
        return Ok(ExitCode::from(1));
    }
    for library in &found {
        remove_library(&library.path)?;
        println!("removed {} ({id})", library.path.display());
    }
    if let Some(lock) = lock {
        unpin(lock, id)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Takes `id` out of the lock file, if it is there.
fn unpin(lock: &Path, id: &str) -> Result<()> {
    if !lock.exists() {
        return Ok(());
    }
    let mut entries = Lock::from_file(lock)?.entries().clone();
    let before = entries.len();
    entries.retain(|pinned, _| pinned.as_str() != id);
    if entries.len() != before {
        Lock::new(lock, entries).write()?;
        println!("unpinned {id} from {}", lock.display());
    }
    Ok(())
}

/// `airlock list DIR`: id, version, publisher, hash and the checks' verdict of each library.
pub(crate) fn list(options: &PipelineOptions) -> Result<ExitCode> {
    println!(
        "{:<20} {:<10} {:<24} {:<16} CHECKS",
        "PLUGIN", "VERSION", "PUBLISHER", "BLAKE3"
    );
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
                    "{:<20} {:<10} {:<24} {:<16} ok",
                    c.file.manifest.id,
                    c.file.manifest.version,
                    publisher,
                    &c.file.blake3[..16]
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

/// Removes a library and the signature beside it.
fn remove_library(path: &Path) -> Result<()> {
    let signature = signature_path(path);
    if signature.exists() {
        fs::remove_file(&signature)?;
    }
    fs::remove_file(path)?;
    Ok(())
}
