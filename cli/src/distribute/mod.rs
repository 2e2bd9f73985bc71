//! Distributing plugins: the author's `airlock keygen`, `sign` (minisign's format, with the
//! reference `minisign` crate) and `publish`, and the operator's `airlock install`, `remove`,
//! `list`, `pull`, `outdated` and `update` over a plugin directory.

mod install;
mod oci;
mod sign;

pub(crate) use self::install::{install, list, remove};
pub(crate) use self::oci::{install as install_artifact, outdated, publish, pull, update};
pub(crate) use self::sign::{keygen, sign};

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::Result;

/// Writes `bytes` to a hidden file beside `path`, syncs it, and renames it over `path`: a
/// reader sees the old file or the whole new one (as an install places a library).
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(airlock::fleet::place(path, bytes)?)
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
