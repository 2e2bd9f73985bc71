//! Stage 1, discover: the files with the platform's library suffix in the plugin directories,
//! with symlinks that leave a directory and files or directories writable by other users refused.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Refusal, RefusalReason};

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

/// Lists the candidates of every directory, sorted by file name within each directory so that
/// load order (and which of two files with the same id wins) is deterministic.
///
/// # Errors
///
/// A directory that cannot be read stops nothing else but is returned as an error, since the
/// operator named it.
pub(crate) fn discover(dirs: &[PathBuf]) -> Result<Vec<Result<Candidate, Refusal>>, Error> {
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
        let dir_unsafe = writable_by_others(&dir_canonical);
        let mut files: Vec<PathBuf> = read
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|ext| ext == library_suffix()))
            .collect();
        files.sort();
        for file in files {
            out.push(check_candidate(&dir_canonical, dir_unsafe, file));
        }
    }
    Ok(out)
}

/// Stage 1 for one file (a reload), under the same rules as [`discover`]: its directory and the
/// file itself must not be writable by others, and a symlink must stay inside the directory.
pub(crate) fn discover_one(file: &Path) -> Result<Candidate, Refusal> {
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
    let dir_unsafe = writable_by_others(&dir);
    check_candidate(&dir, dir_unsafe, file.to_path_buf())
}

fn check_candidate(dir: &Path, dir_unsafe: bool, file: PathBuf) -> Result<Candidate, Refusal> {
    if dir_unsafe {
        return Err(Refusal::new(
            file,
            RefusalReason::UnsafePermissions,
            format!(
                "the plugin directory {} is writable by other users, who could replace any library in it; \
                 remove their write permission (chmod o-w)",
                dir.display()
            ),
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
    Ok(Candidate { file, open })
}

/// Whether others than the owner may write to `path` (world-writable, without the sticky bit
/// for directories).
#[cfg(unix)]
pub(crate) fn writable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| {
        let mode = m.permissions().mode();
        mode & 0o002 != 0 && !(m.is_dir() && mode & 0o1000 != 0)
    })
}

/// Whether others than the owner may write to `path`. Not checked on this platform.
#[cfg(not(unix))]
pub(crate) fn writable_by_others(_path: &Path) -> bool {
    false
}
