//! The `kv` service: a durable key/value store with one namespace per plugin id.
//!
//! Backed by redb, an embedded database whose write transactions are durable when `commit`
//! returns (it syncs to disk): a write acknowledged to a plugin survives `kill -9` of the host.
//! Chosen over a hand-written file store because crash-safe page management, checksums and
//! recovery are exactly what redb already does and tests. Each plugin's keys live in a table
//! named after its id, and a key is only ever a key inside that table: no bytes in a key can
//! reach another plugin's namespace.

use std::path::{Path, PathBuf};

use airlock_abi::manifest::PluginId;
use redb::{Database, ReadableDatabase, TableDefinition, TableError};

use crate::error::Error;

/// The longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 1024;
/// The largest value accepted (its JSON encoding), in bytes.
pub const MAX_VALUE_LEN: usize = 1024 * 1024;

/// Why a kv operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The key or value is over its limit.
    #[error("{0}")]
    TooLarge(String),
    /// The store failed.
    #[error("the key/value store failed: {0}")]
    Storage(String),
}

fn storage(e: impl std::fmt::Display) -> KvError {
    KvError::Storage(e.to_string())
}

/// A key/value store file, shared by every plugin of a host.
#[derive(Debug)]
pub struct KvStore {
    db: Database,
    path: PathBuf,
}

impl KvStore {
    /// Opens (or creates) the store at `path`.
    ///
    /// # Errors
    ///
    /// [`Error::Kv`] if the file cannot be opened or is not a store.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let db = Database::create(path).map_err(|e| Error::Kv {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Ok(Self {
            db,
            path: path.to_owned(),
        })
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn table_name(plugin: &PluginId) -> String {
        format!("kv/{plugin}")
    }

    fn check_key(key: &str) -> Result<(), KvError> {
        if key.len() > MAX_KEY_LEN {
            return Err(KvError::TooLarge(format!(
                "the key is {} bytes; at most {MAX_KEY_LEN} are allowed",
                key.len()
            )));
        }
        Ok(())
    }

    /// The value of `key` in `plugin`'s namespace.
    ///
    /// # Errors
    ///
    /// [`KvError`].
    pub fn get(&self, plugin: &PluginId, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Self::check_key(key)?;
        let name = Self::table_name(plugin);
        let def: TableDefinition<&str, &[u8]> = TableDefinition::new(&name);
        let txn = self.db.begin_read().map_err(storage)?;
        let table = match txn.open_table(def) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(storage(e)),
        };
        let value = table.get(key).map_err(storage)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// Sets `key` in `plugin`'s namespace; durable when this returns.
    ///
    /// # Errors
    ///
    /// [`KvError`].
    pub fn set(&self, plugin: &PluginId, key: &str, value: &[u8]) -> Result<(), KvError> {
        Self::check_key(key)?;
        if value.len() > MAX_VALUE_LEN {
            return Err(KvError::TooLarge(format!(
                "the value is {} bytes; at most {MAX_VALUE_LEN} are allowed",
                value.len()
            )));
        }
        let name = Self::table_name(plugin);
        let def: TableDefinition<&str, &[u8]> = TableDefinition::new(&name);
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(def).map_err(storage)?;
            table.insert(key, value).map_err(storage)?;
        }
        txn.commit().map_err(storage)
    }

    /// Removes `key` from `plugin`'s namespace; true if it was set.
    ///
    /// # Errors
    ///
    /// [`KvError`].
    pub fn delete(&self, plugin: &PluginId, key: &str) -> Result<bool, KvError> {
        Self::check_key(key)?;
        let name = Self::table_name(plugin);
        let def: TableDefinition<&str, &[u8]> = TableDefinition::new(&name);
        let txn = self.db.begin_write().map_err(storage)?;
        let existed = {
            let mut table = txn.open_table(def).map_err(storage)?;
            let removed = table.remove(key).map_err(storage)?;
            removed.is_some()
        };
        txn.commit().map_err(storage)?;
        Ok(existed)
    }

    /// The keys of `plugin`'s namespace starting with `prefix`, sorted (at most 10,000).
    ///
    /// # Errors
    ///
    /// [`KvError`].
    pub fn keys(&self, plugin: &PluginId, prefix: &str) -> Result<Vec<String>, KvError> {
        Self::check_key(prefix)?;
        let name = Self::table_name(plugin);
        let def: TableDefinition<&str, &[u8]> = TableDefinition::new(&name);
        let txn = self.db.begin_read().map_err(storage)?;
        let table = match txn.open_table(def) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(storage(e)),
        };
        let mut keys = Vec::new();
        for item in table.range(prefix..).map_err(storage)? {
            let (key, _) = item.map_err(storage)?;
            let key = key.value();
            if !key.starts_with(prefix) || keys.len() >= 10_000 {
                break;
            }
            keys.push(key.to_owned());
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> PluginId {
        PluginId::new(s).expect("id")
    }

    #[test]
    fn namespaces_never_meet_whatever_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kv = KvStore::open(&dir.path().join("kv.redb")).expect("opens");
        let (a, b) = (id("a"), id("b"));
        for key in ["../b/x", "kv/b", "x\0y", "", "/", &"k".repeat(MAX_KEY_LEN)] {
            kv.set(&a, key, b"from a").expect("set");
            assert_eq!(kv.get(&b, key).expect("get"), None, "{key:?} leaked into b");
            assert_eq!(
                kv.get(&a, key).expect("get").as_deref(),
                Some(&b"from a"[..])
            );
        }
        assert!(kv.keys(&b, "").expect("keys").is_empty());
        assert!(matches!(
            kv.set(&a, &"k".repeat(MAX_KEY_LEN + 1), b"v"),
            Err(KvError::TooLarge(_))
        ));
        assert!(kv.delete(&a, "x\0y").expect("delete"));
        assert!(!kv.delete(&a, "x\0y").expect("delete"));
        assert_eq!(kv.keys(&a, "..").expect("keys"), vec!["../b/x".to_owned()]);
    }
}
