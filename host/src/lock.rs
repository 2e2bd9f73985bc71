//! The lock file `airlock lock` writes: the sha256 of each plugin library an operator has
//! reviewed. When a host runs with a lock, only libraries it pins load, and only with the
//! pinned bytes (`hash_mismatch` otherwise), checked before anything of them runs.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use airlock_abi::manifest::PluginId;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// One pinned library.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockEntry {
    /// sha256 of the library's bytes, lower-case hex.
    pub sha256: String,
    /// The plugin's version when it was pinned (informational).
    pub version: String,
    /// The library's file name when it was pinned (informational).
    pub file: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLock {
    #[serde(default)]
    plugins: BTreeMap<String, LockEntry>,
}

/// The pins of a lock file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lock {
    path: PathBuf,
    entries: BTreeMap<PluginId, LockEntry>,
}

impl Lock {
    /// A lock with these pins, to be written to `path`.
    pub fn new(path: &Path, entries: BTreeMap<PluginId, LockEntry>) -> Self {
        Self {
            path: path.to_owned(),
            entries,
        }
    }

    /// Reads a lock file.
    ///
    /// # Errors
    ///
    /// [`Error::Lock`] if it cannot be read or is malformed.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let fail = |message: String| Error::Lock {
            path: path.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
        let raw: RawLock =
            toml::from_str(&text).map_err(|e| fail(e.to_string().trim_end().to_owned()))?;
        let mut entries = BTreeMap::new();
        for (id, entry) in raw.plugins {
            let id = PluginId::new(&id).map_err(|e| fail(format!("[plugins.{id}]: {e}")))?;
            if entry.sha256.len() != 64 || !entry.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(fail(format!(
                    "[plugins.{id}] sha256: expected 64 hex digits"
                )));
            }
            entries.insert(id, entry);
        }
        Ok(Self {
            path: path.to_owned(),
            entries,
        })
    }

    /// The file this lock was read from (or is to be written to).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pin of `id`, if any.
    pub fn get(&self, id: &PluginId) -> Option<&LockEntry> {
        self.entries.get(id)
    }

    /// Every pin.
    pub fn entries(&self) -> &BTreeMap<PluginId, LockEntry> {
        &self.entries
    }

    /// Writes the lock durably: a temporary file beside it, synced, renamed over it, and the
    /// directory synced, so a crash leaves the old lock or the new one, never half of one.
    ///
    /// # Errors
    ///
    /// [`Error::Lock`] on any I/O failure.
    pub fn write(&self) -> Result<(), Error> {
        let fail = |message: String| Error::Lock {
            path: self.path.clone(),
            message,
        };
        let raw = RawLock {
            plugins: self
                .entries
                .iter()
                .map(|(id, e)| (id.to_string(), e.clone()))
                .collect(),
        };
        let body = toml::to_string(&raw).map_err(|e| fail(e.to_string()))?;
        let text = format!(
            "# Written by `airlock lock`: the sha256 of each reviewed plugin library.\n# A host running with this lock loads only these libraries, with exactly these bytes.\n\n{body}"
        );
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir)
            .map_err(|e| fail(format!("cannot create a temporary file: {e}")))?;
        tmp.write_all(text.as_bytes())
            .map_err(|e| fail(e.to_string()))?;
        tmp.as_file().sync_all().map_err(|e| fail(e.to_string()))?;
        tmp.persist(&self.path).map_err(|e| fail(e.to_string()))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}
