//! Distributing plugins: the author's `airlock keygen` and `airlock sign` (minisign's format,
//! with the reference `minisign` crate), and the operator's `airlock install`, `remove` and
//! `list` over a plugin directory.

mod install;
mod sign;

pub(crate) use self::install::{install, list, remove};
pub(crate) use self::sign::{keygen, sign};

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::Result;

/// Writes `bytes` to a hidden file beside `path`, syncs it, and renames it over `path` (then
/// syncs the directory): a reader sees the old file or the whole new one.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = dir.join(format!(".{name}.{}.part", std::process::id()));
    {
        let mut file = fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        // Read-only: installed, replaced only by the next rename. A host running as the user
        // who installed it may then load the library in place (ARCHITECTURE.md).
        set_mode(&file, 0o555)?;
        file.sync_all()?;
    }
    fs::rename(&temporary, path)?;
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Creates `path` with `bytes` and `mode`, refusing to overwrite.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    set_mode(&file, mode)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

#[cfg(unix)]
fn set_mode(file: &fs::File, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_file: &fs::File, _mode: u32) -> std::io::Result<()> {
    Ok(())
}
