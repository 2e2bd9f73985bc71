//! Stage 1, discover: the files with the platform's library suffix in the plugin directories,
//! with symlinks that leave a directory refused, and files or directories that others than
//! their owner could change refused (`permissions`).

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Refusal, RefusalReason};
use crate::library::permissions::{self, Role, Trusted};

/// A file found in a plugin directory, with the path to open (a symlink's resolved target).
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    /// As found in the directory; what reports name.
    pub file: PathBuf,
    /// What to open: the file itself, or the canonical target of a symlink inside the directory.
    pub open: PathBuf,
}

/// The library suffix of this platform, without the dot (`so`, `dylib`, `dll`).
pub fn library_suffix() -> &'static str {
    std::env::consts::DLL_EXTENSION
}

/// Stage 1's rule for a directory libraries are loaded from, as a host running as this
/// process's user with these trusted owners and groups (the policy's `[host] trusted_owners`
/// and `trusted_groups`, as ids) would apply it: for a program that puts libraries there (an
/// install), so it refuses a directory the host would refuse every library in.
///
/// # Errors
///
/// What is wrong with the directory, its mode and owner, and what to do about it.
pub fn check_plugin_dir(
    dir: &Path,
    trusted_owners: &[u32],
    trusted_groups: &[u32],
) -> Result<(), String> {
    let trusted = Trusted {
        owners: trusted_owners,
        groups: trusted_groups,
    };
    permissions::check(dir, Role::Directory, trusted)
}

/// Lists the candidates of every directory, sorted by file name within each directory so that
/// load order (and which of two files with the same id wins) is deterministic.
///
/// # Errors
///
/// A directory that cannot be read stops nothing else but is returned as an error, since the
/// operator named it.
pub(crate) fn discover(
    dirs: &[PathBuf],
    trusted: Trusted<'_>,
) -> Result<Vec<Result<Candidate, Refusal>>, Error> {
    let mut out = Vec::new();
    for dir in dirs {
        let read = fs::read_dir(dir).map_err(|source| Error::PluginDir {
            path: dir.clone(),
            source,
        })?;
        let dir_canonical = fs::canonicalize(dir).map_err(|source| Error::PluginDir {
            path: dir.clone(),
            source,
        })?;
        let dir_unsafe = permissions::check(&dir_canonical, Role::Directory, trusted).err();
        let mut files: Vec<PathBuf> = read
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|ext| ext == library_suffix()))
            .collect();
        files.sort();
        for file in files {
            out.push(check_candidate(
                &dir_canonical,
                dir_unsafe.as_deref(),
                file,
                trusted,
            ));
        }
    }
    Ok(out)
}

/// Stage 1 for one file (a reload), under the same rules as [`discover`]: its directory and the
/// file itself must be safe from other users, and a symlink must stay inside the directory.
pub(crate) fn discover_one(file: &Path, trusted: Trusted<'_>) -> Result<Candidate, Refusal> {
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let dir = fs::canonicalize(dir).map_err(|e| {
        Refusal::new(
            file,
            RefusalReason::NotALibrary,
            format!("cannot resolve its directory: {e}"),
        )
    })?;
    let dir_unsafe = permissions::check(&dir, Role::Directory, trusted).err();
    check_candidate(&dir, dir_unsafe.as_deref(), file.to_path_buf(), trusted)
}

/// Stage 1 for `file` in `dir`, whose own check found `dir_unsafe` (what is wrong with it).
fn check_candidate(
    dir: &Path,
    dir_unsafe: Option<&str>,
    file: PathBuf,
    trusted: Trusted<'_>,
) -> Result<Candidate, Refusal> {
    if let Some(detail) = dir_unsafe {
        return Err(Refusal::new(
            file,
            RefusalReason::UnsafePermissions,
            detail.to_owned(),
        ));
    }
    let link = fs::symlink_metadata(&file).map_err(|e| {
        Refusal::new(
            &file,
            RefusalReason::NotALibrary,
            format!("cannot stat: {e}"),
        )
    })?;
    let open = if link.file_type().is_symlink() {
        let target = fs::canonicalize(&file).map_err(|e| {
            Refusal::new(
                &file,
                RefusalReason::UnsafePermissions,
                format!("the symlink cannot be resolved: {e}"),
            )
        })?;
        if target.parent() != Some(dir) {
            return Err(Refusal::new(
                &file,
                RefusalReason::UnsafePermissions,
                format!(
                    "the symlink points to {}, outside the plugin directory {}; copy the library into the directory instead",
                    target.display(),
                    dir.display()
                ),
            ));
        }
        target
    } else {
        file.clone()
    };
    // A directory or FIFO with the suffix is stage 2's to refuse (`not_a_library`).
    if fs::metadata(&open).is_ok_and(|m| m.is_file()) {
        permissions::check(&open, Role::Library, trusted)
            .map_err(|detail| Refusal::new(&file, RefusalReason::UnsafePermissions, detail))?;
    }
    Ok(Candidate { file, open })
}
