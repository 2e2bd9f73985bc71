//! Installing a library into a plugin directory, from a file or a fetched artifact alike: the
//! checks a host would make (stages 2 and 3, the signature included: nothing of it runs), an
//! id or claim another installed file has refused unless replacing, the library and its
//! signature placed each by a rename of a file written and synced beside it (a host watching
//! the directory never sees half a library), and the pin written to the lock in force.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::FleetError;
use crate::library::discover::library_suffix;
use crate::library::file::{read_library, DEFAULT_MAX_LIBRARY_SIZE};
use crate::library::lock::{Lock, LockEntry};
use crate::library::signature::signature_path;
use crate::pipeline::{check_file, Checked, PipelineOptions};
use crate::policy::Policy;

/// Where an installed library came from: the artifact's source and digest, pinned in the lock
/// beside its BLAKE3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The reference it was installed from, with its tag or digest
    /// (`oci://REGISTRY/REPOSITORY:TAG`), or the repository alone when a range chose the tag.
    pub source: String,
    /// The version range that chose the tag, if one did.
    pub range: Option<String>,
    /// The digest of the manifest the library came from (`sha256:…`).
    pub digest: String,
}

/// A library in a plugin directory, read for its id and claims.
#[derive(Debug, Clone)]
pub struct InstalledFile {
    /// The library.
    pub path: PathBuf,
    /// Its plugin's id.
    pub id: String,
    claims: Vec<String>,
}

/// Where and how an install puts a library.
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    /// The plugin directory.
    pub dir: &'a Path,
    /// The operator's policy the library is checked against.
    pub policy: &'a Policy,
    /// The lock file to pin it in, if any.
    pub lock: Option<&'a Path>,
    /// Whether another file holding the plugin's id (or another plugin at its name) is replaced.
    pub replace: bool,
}

/// What an install did.
#[derive(Debug)]
pub struct Installed {
    /// The checks' findings on what was installed (manifest, signature, hash, decision).
    pub checked: Checked,
    /// Where it was placed.
    pub target: PathBuf,
    /// The files it replaced that held the same id under another name (path, id).
    pub removed: Vec<(PathBuf, String)>,
    /// Whether it was pinned in a lock file.
    pub pinned: bool,
}

/// The libraries in `dir` (files that do not read as plugins are left out), by path.
pub fn installed(dir: &Path) -> Vec<InstalledFile> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<InstalledFile> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == library_suffix()))
        .filter_map(|path| {
            let library = read_library(&path, &path, DEFAULT_MAX_LIBRARY_SIZE).ok()?;
            Some(InstalledFile {
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

/// Checks `file` as a host would and installs it into the destination's directory (with the
/// signature beside it), pinning it in its lock with `origin` if given. Another file with its
/// id (or another plugin at its name) is replaced only if the destination says so; a claim
/// another installed plugin holds refuses it.
///
/// # Errors
///
/// [`FleetError::Refused`] with the reason code a host would give, [`FleetError::Conflict`],
/// or [`FleetError::Io`].
pub fn install_file(
    file: &Path,
    to: Destination<'_>,
    origin: Option<&Origin>,
) -> Result<Installed, FleetError> {
    let Destination {
        dir,
        policy,
        lock,
        replace,
    } = to;
    let options = PipelineOptions {
        dirs: vec![dir.to_owned()],
        policy: policy.clone(),
        max_library_size: DEFAULT_MAX_LIBRARY_SIZE,
        // The file is checked to be pinned: the lock in force cannot name it yet.
        lock: None,
    };
    let checked = check_file(&options, file).map_err(|r| FleetError::Refused(Box::new(r)))?;
    let manifest = &checked.file.manifest;
    let id = manifest.id.to_string();
    let name = file
        .file_name()
        .ok_or_else(|| FleetError::Conflict(format!("{}: no file name", file.display())))?;
    let target = dir.join(name);
    let (clashes, staying): (Vec<InstalledFile>, Vec<InstalledFile>) = installed(dir)
        .into_iter()
        .partition(|i| i.id == id || i.path == target);
    let clashes: Vec<InstalledFile> = clashes
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
        return Err(FleetError::Conflict(format!(
            "{}: plugin {id} claims {kind:?}, which {} ({}) already holds (claim_conflict)",
            file.display(),
            holder.id,
            holder.path.display()
        )));
    }
    if let (Some(clash), false) = (clashes.first(), replace) {
        return Err(FleetError::Conflict(format!(
            "{}: {} already holds plugin {}; remove it first, or install with --replace",
            file.display(),
            clash.path.display(),
            clash.id
        )));
    }
    let mut removed = Vec::new();
    for clash in clashes {
        remove_library(&clash.path)?;
        if let (Some(lock), false) = (lock, clash.id == id) {
            unpin(lock, &clash.id)?;
        }
        removed.push((clash.path, clash.id));
    }
    // Exactly what was checked: the signature first (or the stale one away), then the library.
    let target_signature = signature_path(&target);
    match checked.file.signature_text() {
        Some(text) => place(&target_signature, text.as_bytes())?,
        None if target_signature.exists() => {
            fs::remove_file(&target_signature).map_err(FleetError::io(&target_signature))?;
        }
        None => {}
    }
    place(&target, checked.file.bytes())?;
    if let Some(lock) = lock {
        pin(lock, &checked, &target, origin)?;
    }
    Ok(Installed {
        checked,
        target,
        removed,
        pinned: lock.is_some(),
    })
}

/// Writes `bytes` to a hidden file beside `path`, syncs it, and renames it over `path` (then
/// syncs the directory): a reader sees the old file or the whole new one. The file is
/// read-only: installed, replaced only by the next rename (a host running as the user who
/// installed it may then load the library in place).
///
/// # Errors
///
/// [`FleetError::Io`].
pub fn place(path: &Path, bytes: &[u8]) -> Result<(), FleetError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = dir.join(format!(".{name}.{}.part", std::process::id()));
    let io = FleetError::io(&temporary);
    (|| {
        let mut file = fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(0o555))?;
        }
        file.sync_all()
    })()
    .map_err(io)?;
    fs::rename(&temporary, path).map_err(FleetError::io(path))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(FleetError::io(dir))
}

/// Pins an installed file in the lock file (creating it), as `airlock lock` would, with the
/// artifact it came from.
fn pin(
    lock: &Path,
    checked: &Checked,
    target: &Path,
    origin: Option<&Origin>,
) -> Result<(), FleetError> {
    let locked = |e: crate::Error| FleetError::Conflict(e.to_string());
    let mut entries = if lock.exists() {
        Lock::from_file(lock).map_err(locked)?.entries().clone()
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
            source: origin.map(|o| o.source.clone()),
            range: origin.and_then(|o| o.range.clone()),
            digest: origin.map(|o| o.digest.clone()),
        },
    );
    Lock::new(lock, entries).write().map_err(locked)
}

/// Takes `id` out of the lock file, if it is there; says whether it was.
///
/// # Errors
///
/// [`FleetError::Conflict`] if the lock cannot be read or written.
pub fn unpin(lock: &Path, id: &str) -> Result<bool, FleetError> {
    if !lock.exists() {
        return Ok(false);
    }
    let locked = |e: crate::Error| FleetError::Conflict(e.to_string());
    let mut entries = Lock::from_file(lock).map_err(locked)?.entries().clone();
    let before = entries.len();
    entries.retain(|pinned, _| pinned.as_str() != id);
    if entries.len() == before {
        return Ok(false);
    }
    Lock::new(lock, entries).write().map_err(locked)?;
    Ok(true)
}

/// Removes a library and the signature beside it.
///
/// # Errors
///
/// [`FleetError::Io`].
pub fn remove_library(path: &Path) -> Result<(), FleetError> {
    let signature = signature_path(path);
    if signature.exists() {
        fs::remove_file(&signature).map_err(FleetError::io(&signature))?;
    }
    fs::remove_file(path).map_err(FleetError::io(path))
}
