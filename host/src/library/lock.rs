//! The lock file `airlock lock` writes: the BLAKE3 of each plugin library an operator has
//! reviewed. When a host runs with a lock, only libraries it pins load, and only with the
//! pinned bytes (`hash_mismatch` otherwise), checked before anything of them runs.
//!
//! Lock files written before BLAKE3 became the identity pin with `sha256 = "..."`; they are
//! still read, and such an entry is verified with SHA-256. `airlock lock` writes `blake3`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use airlock_abi::manifest::PluginId;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::library::file::parse_digest;

/// One pinned library: by BLAKE3, by SHA-256 (older lock files), or both. Reading a lock
/// checks that every entry has at least one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockEntry {
    /// BLAKE3 of the library's bytes, lower-case hex: what `airlock lock` writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// SHA-256 of the library's bytes, lower-case hex: how lock files written before BLAKE3
    /// pin a library; still read and verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The plugin's version when it was pinned (informational).
    pub version: String,
    /// The library's file name when it was pinned (informational).
    pub file: String,
    /// The artifact it was installed from (`oci://REGISTRY/REPOSITORY:TAG`, or the repository
    /// when `range` chose the tag): what `airlock outdated` and `update` compare with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The version range that chose the tag, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
    /// The digest of the manifest the library came from (`sha256:…`), beside its BLAKE3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
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
        for (id, mut entry) in raw.plugins {
            let id = PluginId::new(&id).map_err(|e| fail(format!("[plugins.{id}]: {e}")))?;
            for (key, pin) in [("blake3", &mut entry.blake3), ("sha256", &mut entry.sha256)] {
                if let Some(text) = pin.as_mut() {
                    *text = parse_digest(text).ok_or_else(|| {
                        fail(format!("[plugins.{id}] {key}: expected 64 hex digits"))
                    })?;
                }
            }
            if entry.blake3.is_none() && entry.sha256.is_none() {
                return Err(fail(format!(
                    "[plugins.{id}]: no pin (expected blake3 = \"...\", or sha256 = \"...\" in older lock files)"
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
            "# Written by `airlock lock`: the BLAKE3 of each reviewed plugin library.\n# A host running with this lock loads only these libraries, with exactly these bytes.\n\n{body}"
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

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Lock, Error> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("airlock.lock");
        std::fs::write(&path, text).expect("write");
        Lock::from_file(&path)
    }

    fn hello() -> PluginId {
        PluginId::new("hello").expect("id")
    }

    #[test]
    fn blake3_pins_are_written_and_read_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("airlock.lock");
        let entry = LockEntry {
            blake3: Some("ab".repeat(32)),
            sha256: None,
            version: "0.1.0".to_owned(),
            file: "libhello.so".to_owned(),
            source: None,
            range: None,
            digest: None,
        };
        Lock::new(&path, BTreeMap::from([(hello(), entry.clone())]))
            .write()
            .expect("written");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(
            text.contains("blake3 = ") && !text.contains("sha256"),
            "{text}"
        );
        assert_eq!(
            Lock::from_file(&path).expect("read").get(&hello()),
            Some(&entry)
        );
    }

    #[test]
    fn sha256_pins_of_older_lock_files_are_still_read() {
        let pin = "0C".repeat(32);
        let lock = read(&format!(
            "[plugins.hello]\nsha256 = \"{pin}\"\nversion = \"0.1.0\"\nfile = \"libhello.so\"\n"
        ))
        .expect("read");
        let entry = lock.get(&hello()).expect("pinned");
        assert_eq!(entry.sha256.as_deref(), Some("0c".repeat(32).as_str()));
        assert_eq!(entry.blake3, None);
    }

    #[test]
    fn an_entry_without_a_valid_pin_is_refused() {
        let none = read("[plugins.hello]\nversion = \"0.1.0\"\nfile = \"libhello.so\"\n")
            .expect_err("no pin");
        assert!(none.to_string().contains("no pin"), "{none}");
        let short = read("[plugins.hello]\nblake3 = \"abc\"\nversion = \"0.1.0\"\nfile = \"x\"\n")
            .expect_err("short");
        assert!(
            short.to_string().contains("blake3: expected 64 hex digits"),
            "{short}"
        );
    }
}
