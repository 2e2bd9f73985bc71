//! The `kv` service: a durable key/value store with one namespace per plugin id.
//!
//! Backed by redb, an embedded database whose write transactions are durable when `commit`
//! returns (it syncs to disk): a write acknowledged to a plugin survives `kill -9` of the host.
//! Chosen over a hand-written file store because crash-safe page management, checksums and
//! recovery are exactly what redb already does and tests. Each plugin's keys live in a table
//! named after its id, and a key is only ever a key inside that table: no bytes in a key can
//! reach another plugin's namespace.
//!
//! Every write gives the keys it sets a version, from a counter per namespace kept in the same
//! transaction: versions are never reused (a key deleted and set again gets a new one), so a
//! compare-and-set on a version read earlier cannot be fooled by a value that went and came
//! back. A value stored before versions existed reads as version 1.
//!
//! A scope (`kind`, `id`) of a plugin's namespace lives in a table of its own beside the
//! plugin's unscoped one ([`space`]); [`KvStore::drop_scope`] removes a scope from every
//! plugin's scoped table in one transaction. Values the operator has sealed are encrypted
//! before they reach the table and opened after they leave it ([`seal`]).

use std::path::{Path, PathBuf};

use airlock_abi::wire::{Expected, Swapped};
use redb::{Database, ReadTransaction, ReadableDatabase, TableDefinition};

use crate::error::Error;

mod cache;
mod rows;
mod scan;
pub(crate) mod seal;
pub(crate) mod space;

use rows::{
    apply, check_key, check_value, next_version, opened, place, read_entry, to_store, values_in,
};
pub use seal::SealKeys;
pub use space::{KvScope, KvSpace, MAX_SCOPE_ID, MAX_SCOPE_KIND};

/// The longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 1024;
/// The largest value accepted (its JSON encoding), in bytes.
pub const MAX_VALUE_LEN: usize = 1024 * 1024;
/// The most writes one batch makes.
pub const MAX_BATCH: usize = 1000;
/// The most entries one listing (or keys) answers.
pub const MAX_LIST: usize = 10_000;
/// The most bytes of keys and values one listing answers (it stops before the entry that
/// would pass it).
pub const MAX_LIST_BYTES: usize = 16 << 20;

/// The last version given in each namespace, by plugin id.
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("kv-counter");

/// Why a kv operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// The key or value is over its limit.
    #[error("{0}")]
    TooLarge(String),
    /// A scope's kind or id is not one the host accepts.
    #[error("{0}")]
    BadScope(String),
    /// A sealed value does not open: its key is not in the ring, or it was altered or moved.
    #[error("{0}")]
    Sealed(String),
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
    db: std::sync::Arc<Database>,
    path: PathBuf,
    /// What `get` read, kept true by every write ([`cache`]).
    cache: cache::ReadCache,
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
            db: std::sync::Arc::new(db),
            path: path.to_owned(),
            cache: cache::ReadCache::default(),
        })
    }

    /// The database file itself, for the host's other durable state (pending answers and
    /// approvals, in tables of their own: [`crate::services::pending`]).
    pub(crate) fn database(&self) -> std::sync::Arc<Database> {
        self.db.clone()
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<ReadTransaction, KvError> {
        self.db.begin_read().map_err(storage)
    }

    /// The value of `key` in `space` (a plugin's namespace, or a scope of it).
    ///
    /// # Errors
    ///
    /// [`KvError`]; [`KvError::Sealed`] for a sealed value that does not open.
    pub fn get<'s>(
        &self,
        space: impl Into<KvSpace<'s>>,
        key: &str,
    ) -> Result<Option<Vec<u8>>, KvError> {
        self.read_with(space, key, |value| value.map(<[u8]>::to_vec))
    }

    /// Runs `f` with the value of `key` in `space`, borrowed: from the read cache when it holds
    /// the key, so that a read of an unsealed value copies it once, into wherever `f` puts it.
    ///
    /// # Errors
    ///
    /// [`KvError`]; [`KvError::Sealed`] for a sealed value that does not open.
    pub fn read_with<'s, R>(
        &self,
        space: impl Into<KvSpace<'s>>,
        key: &str,
        f: impl FnOnce(Option<&[u8]>) -> R,
    ) -> Result<R, KvError> {
        let space = space.into();
        check_key(key)?;
        if space.seal.is_some() {
            return Ok(f(self.read_stored(&space, key)?.as_deref()));
        }
        let stored = space.stored(key);
        let place = place(&space, &stored);
        // A hit reads the map alone; `f` runs once, on the hit or after the fill.
        let mut f = Some(f);
        if let Some(answer) = self.cache.read(place, |v| f.take().map(|f| f(v))) {
            return Ok(answer.expect("called once"));
        }
        let f = f.take().expect("not called on a miss");
        let mut changing = self.cache.change();
        if let Some(answer) = changing.read(place, |v| v.map(<[u8]>::to_vec)) {
            return Ok(f(answer.as_deref()));
        }
        let value = self.read_stored(&space, key)?;
        changing.keep(place, value.as_deref());
        drop(changing);
        Ok(f(value.as_deref()))
    }

    /// The value of `key` read from the database, opened.
    fn read_stored(&self, space: &KvSpace<'_>, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let txn = self.read()?;
        // The value alone: its version is another table, read only when asked for.
        let Some(values) = values_in(&txn, &space.names())? else {
            return Ok(None);
        };
        let value = values.get(&*space.stored(key)).map_err(storage)?;
        value
            .map(|v| opened(space, key, v.value().to_vec()))
            .transpose()
    }

    /// The value of `key` in `space` and its version.
    ///
    /// # Errors
    ///
    /// [`KvError`].
    pub fn entry<'s>(
        &self,
        space: impl Into<KvSpace<'s>>,
        key: &str,
    ) -> Result<Option<(Vec<u8>, u64)>, KvError> {
        let space = space.into();
        check_key(key)?;
        let names = space.names();
        let txn = self.read()?;
        let Some(values) = values_in(&txn, &names)? else {
            return Ok(None);
        };
        let versions = txn.open_table(names.versions()).ok();
        match read_entry(&values, versions.as_ref(), &space.stored(key))? {
            Some((value, version)) => Ok(Some((opened(&space, key, value)?, version))),
            None => Ok(None),
        }
    }

    /// Sets `key` in `space`; durable when this returns. Its new version.
    ///
    /// # Errors
    ///
    /// [`KvError`].
    pub fn set<'s>(
        &self,
        space: impl Into<KvSpace<'s>>,
        key: &str,
        value: &[u8],
    ) -> Result<u64, KvError> {
        self.write(space, &[(key, Some(value))])
    }

    /// Removes `key` from `space`; true if it was set.
    ///
    /// # Errors
    ///
    /// [`KvError`].
    pub fn delete<'s>(&self, space: impl Into<KvSpace<'s>>, key: &str) -> Result<bool, KvError> {
        let space = space.into();
        check_key(key)?;
        let names = space.names();
        let stored = space.stored(key);
        let mut changing = self.cache.change();
        changing.forget(place(&space, &stored));
        let txn = self.db.begin_write().map_err(storage)?;
        let existed = {
            let mut values = txn.open_table(names.values()).map_err(storage)?;
            let mut versions = txn.open_table(names.versions()).map_err(storage)?;
            versions.remove(&*stored).map_err(storage)?;
            let removed = values.remove(&*stored).map_err(storage)?;
            removed.is_some()
        };
        txn.commit().map_err(storage)?;
        changing.keep(place(&space, &stored), None);
        Ok(existed)
    }

    /// Makes `writes` (a value to set, or `None` to remove the key) in one transaction: all of
    /// them are durable when this returns, or none was made. The version the keys set share.
    ///
    /// # Errors
    ///
    /// [`KvError::TooLarge`] for more than [`MAX_BATCH`] writes or a key or value over its
    /// limit (checked before anything is written); [`KvError::Storage`].
    pub fn write<'s>(
        &self,
        space: impl Into<KvSpace<'s>>,
        writes: &[(&str, Option<&[u8]>)],
    ) -> Result<u64, KvError> {
        let space = space.into();
        if writes.len() > MAX_BATCH {
            return Err(KvError::TooLarge(format!(
                "{} writes in one batch; at most {MAX_BATCH} are allowed",
                writes.len()
            )));
        }
        for &(key, value) in writes {
            check_key(key)?;
            value.map(check_value).transpose()?;
        }
        let stored = writes
            .iter()
            .map(|&(key, value)| {
                let value = value.map(|v| to_store(&space, key, v)).transpose()?;
                Ok((space.stored(key).into_owned(), value))
            })
            .collect::<Result<Vec<_>, KvError>>()?;
        let mut changing = self.cache.change();
        for (key, _) in &stored {
            changing.forget(place(&space, key));
        }
        let txn = self.db.begin_write().map_err(storage)?;
        let version = next_version(&txn, space.plugin)?;
        apply(&txn, &space.names(), version, &stored)?;
        txn.commit().map_err(storage)?;
        if space.seal.is_none() {
            for (key, value) in &stored {
                changing.keep(place(&space, key), value.as_deref());
            }
        }
        Ok(version)
    }

    /// Sets `key` to `value` only if it holds what is `expected`, in one transaction; durable
    /// when this returns. Whether it wrote, and the key's version now (0: not set).
    ///
    /// # Errors
    ///
    /// [`KvError`].
    pub fn compare_and_set<'s>(
        &self,
        space: impl Into<KvSpace<'s>>,
        key: &str,
        expected: &Expected,
        value: &[u8],
    ) -> Result<Swapped, KvError> {
        let space = space.into();
        check_key(key)?;
        check_value(value)?;
        let names = space.names();
        let stored = space.stored(key).into_owned();
        let sealed = to_store(&space, key, value)?;
        let mut changing = self.cache.change();
        changing.forget(place(&space, &stored));
        let txn = self.db.begin_write().map_err(storage)?;
        let found = {
            let values = txn.open_table(names.values()).map_err(storage)?;
            let versions = txn.open_table(names.versions()).map_err(storage)?;
            read_entry(&values, Some(&versions), &stored)?
        };
        let holds = match (expected, &found) {
            (Expected::Absent | Expected::Version(0), None) => true,
            (Expected::Version(v), Some((_, version))) => v == version,
            (Expected::Value(want), Some((bytes, _))) => {
                let bytes = opened(&space, key, bytes.clone())?;
                serde_json::from_slice::<serde_json::Value>(&bytes).is_ok_and(|have| have == *want)
            }
            _ => false,
        };
        if !holds {
            // Dropped, not committed: nothing was written.
            return Ok(Swapped {
                written: false,
                version: found.map_or(0, |(_, version)| version),
            });
        }
        let version = next_version(&txn, space.plugin)?;
        apply(&txn, &names, version, &[(stored.clone(), Some(sealed))])?;
        txn.commit().map_err(storage)?;
        if space.seal.is_none() {
            changing.keep(place(&space, &stored), Some(value));
        }
        Ok(Swapped {
            written: true,
            version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_abi::manifest::PluginId;

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

    #[test]
    fn versions_are_never_reused_and_compare_and_set_writes_only_over_what_it_expects() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kv = KvStore::open(&dir.path().join("kv.redb")).expect("opens");
        let a = id("a");
        let v1 = kv.set(&a, "k", b"1").expect("set");
        assert_eq!(kv.entry(&a, "k").expect("entry"), Some((b"1".to_vec(), v1)));
        // Deleted and set again to the same value: a new version, so the old one no longer
        // matches.
        assert!(kv.delete(&a, "k").expect("delete"));
        let v2 = kv.set(&a, "k", b"1").expect("set");
        assert!(v2 > v1);
        let stale = kv
            .compare_and_set(&a, "k", &Expected::Version(v1), b"2")
            .expect("cas");
        assert_eq!(
            stale,
            Swapped {
                written: false,
                version: v2
            }
        );
        assert_eq!(kv.get(&a, "k").expect("get"), Some(b"1".to_vec()));
        let won = kv
            .compare_and_set(&a, "k", &Expected::Version(v2), b"2")
            .expect("cas");
        assert!(won.written && won.version > v2);
        // By value (compared as JSON) and by absence.
        let by_value = Expected::Value(serde_json::json!(2));
        assert!(
            kv.compare_and_set(&a, "k", &by_value, b"3")
                .expect("cas")
                .written
        );
        assert!(
            !kv.compare_and_set(&a, "k", &by_value, b"4")
                .expect("cas")
                .written
        );
        assert!(
            !kv.compare_and_set(&a, "k", &Expected::Absent, b"5")
                .expect("cas")
                .written
        );
        let fresh = kv
            .compare_and_set(&a, "new", &Expected::Absent, b"5")
            .expect("cas");
        assert!(fresh.written);
        assert_eq!(
            kv.compare_and_set(&a, "gone", &Expected::Version(7), b"5")
                .expect("cas"),
            Swapped {
                written: false,
                version: 0
            }
        );
        // Another namespace's versions are its own.
        assert_eq!(kv.entry(&id("b"), "k").expect("entry"), None);
    }

    #[test]
    fn a_batch_is_all_or_nothing_and_a_listing_has_values_and_versions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kv = KvStore::open(&dir.path().join("kv.redb")).expect("opens");
        let a = id("a");
        kv.set(&a, "p/old", b"0").expect("set");
        let version = kv
            .write(
                &a,
                &[
                    ("p/1", Some(b"1")),
                    ("p/2", Some(b"2")),
                    ("p/old", None),
                    ("q", Some(b"9")),
                ],
            )
            .expect("written");
        let listed = kv.list(&a, "p/").expect("list");
        let as_tuples: Vec<_> = listed
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_slice(), e.version))
            .collect();
        assert_eq!(
            as_tuples,
            vec![("p/1", &b"1"[..], version), ("p/2", &b"2"[..], version)]
        );
        // One write over its limit: nothing of the batch is written.
        let big = vec![b'1'; MAX_VALUE_LEN + 1];
        let refused = kv.write(&a, &[("p/3", Some(b"3")), ("p/4", Some(&big))]);
        assert!(matches!(refused, Err(KvError::TooLarge(_))));
        let too_many: Vec<(&str, Option<&[u8]>)> = vec![("x", None); MAX_BATCH + 1];
        assert!(matches!(kv.write(&a, &too_many), Err(KvError::TooLarge(_))));
        assert_eq!(kv.keys(&a, "p/").expect("keys"), vec!["p/1", "p/2"]);
    }

    #[test]
    fn scopes_never_meet_each_other_or_the_unscoped_keys_and_drop_across_plugins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kv = KvStore::open(&dir.path().join("kv.redb")).expect("opens");
        let (a, b) = (id("a"), id("b"));
        let p1 = KvScope::new("project", "1").expect("scope");
        let p10 = KvScope::new("project", "10").expect("scope");
        let run1 = KvScope::new("run", "1").expect("scope");
        let in_ = |plugin, scope| KvSpace::of(plugin).scoped(Some(scope));
        // An attacker's keys, written unscoped and in other scopes, shaped like p1's stored
        // keys: none reads as p1's, and none goes when p1 is dropped.
        for key in ["project\u{0}1\u{0}x", "\u{0}1\u{0}x", "1\u{0}x", "x"] {
            kv.set(&a, key, b"1").expect("set");
            kv.set(in_(&a, &p10), key, b"1").expect("set");
            kv.set(in_(&a, &run1), key, b"1").expect("set");
        }
        kv.set(in_(&a, &p1), "x", b"2").expect("set");
        kv.set(in_(&b, &p1), "x", b"3").expect("set");
        kv.set(in_(&b, &p1), "y", b"4").expect("set");
        assert_eq!(kv.keys(in_(&a, &p1), "").expect("keys"), vec!["x"]);
        assert_eq!(kv.get(in_(&a, &p1), "x").expect("get"), Some(b"2".to_vec()));
        assert_eq!(kv.get(&a, "x").expect("get"), Some(b"1".to_vec()));
        assert_eq!(kv.keys(&b, "").expect("keys"), Vec::<String>::new());
        let listed = kv.list(in_(&b, &p1), "").expect("list");
        assert_eq!(
            listed.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
            ["x", "y"]
        );

        assert_eq!(kv.drop_scope(&p1).expect("dropped"), 3);
        assert!(kv.keys(in_(&a, &p1), "").expect("keys").is_empty());
        assert!(kv.keys(in_(&b, &p1), "").expect("keys").is_empty());
        for space in [KvSpace::of(&a), in_(&a, &p10), in_(&a, &run1)] {
            assert_eq!(kv.keys(space, "").expect("keys").len(), 4, "{space:?}");
        }
        assert_eq!(kv.drop_scope(&p1).expect("dropped"), 0);
        // Versions of a scope come from the plugin's one counter: never reused.
        let before = kv.set(&a, "v", b"1").expect("set");
        assert!(kv.set(in_(&a, &p1), "v", b"1").expect("set") > before);
    }

    #[test]
    fn a_sealed_namespace_stores_no_plaintext_and_compares_by_the_opened_value() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kv.redb");
        let kv = KvStore::open(&path).expect("opens");
        let a = id("a");
        let keys = SealKeys::new(vec![("k1".to_owned(), [9; 32])]).expect("ring");
        let sealed = KvSpace::of(&a).sealed(Some(&keys));
        kv.set(sealed, "card", b"\"4111-1111-1111-1111\"")
            .expect("set");
        let by_value = Expected::Value(serde_json::json!("4111-1111-1111-1111"));
        assert!(
            kv.compare_and_set(sealed, "card", &by_value, b"\"nothing-to-see\"")
                .expect("cas")
                .written
        );
        assert_eq!(
            kv.get(sealed, "card").expect("get"),
            Some(b"\"nothing-to-see\"".to_vec())
        );
        let listed = kv.list(sealed, "").expect("list");
        assert_eq!(listed[0].value, b"\"nothing-to-see\"");
        // Unsealed, it is a refusal naming its key, not the ciphertext read as a value.
        for refused in [
            kv.get(&a, "card").map(|_| ()),
            kv.entry(&a, "card").map(|_| ()),
            kv.list(&a, "").map(|_| ()),
            kv.compare_and_set(&a, "card", &by_value, b"1").map(|_| ()),
        ] {
            assert!(
                matches!(&refused, Err(KvError::Sealed(m)) if m.contains("sealed with key \"k1\"") && m.contains("encrypt")),
                "{refused:?}"
            );
        }
        drop(kv);
        let raw = std::fs::read(&path).expect("file");
        assert!(!raw.windows(14).any(|w| w == b"nothing-to-see"));
        assert!(!raw.windows(9).any(|w| w == b"4111-1111"));
    }

    /// The read cache is kept true by every kind of write: once a write returns, no read on
    /// any thread answers an older value, and no reader ever goes back to one.
    #[test]
    fn a_write_is_seen_by_the_next_read_on_every_thread() {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
        let dir = tempfile::tempdir().expect("tempdir");
        let kv = KvStore::open(&dir.path().join("kv.redb")).expect("opens");
        let a = id("a");
        let scope = KvScope::new("user", "u1").expect("scope");
        let scoped = KvSpace::of(&a).scoped(Some(&scope));
        let read = |space: KvSpace<'_>, key: &str| -> u64 {
            kv.get(space, key)
                .expect("get")
                .map_or(0, |v| serde_json::from_slice(&v).expect("a number"))
        };
        kv.set(&a, "n", b"0").expect("set");
        let (done, stop) = (AtomicU64::new(0), AtomicBool::new(false));
        std::thread::scope(|s| {
            let readers: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        let (mut last, mut reads) = (0, 0u64);
                        while !stop.load(SeqCst) {
                            let written = done.load(SeqCst);
                            let now = read(KvSpace::of(&a), "n");
                            assert!(now >= written, "read {now} after {written} was written");
                            assert!(now >= last, "read {now} after reading {last}");
                            let in_scope = read(scoped, "n");
                            assert!(in_scope == 0 || in_scope >= written.saturating_sub(1));
                            last = now;
                            reads += 1;
                        }
                        reads
                    })
                })
                .collect();
            for i in 1..=60u64 {
                let value = i.to_string();
                match i % 4 {
                    0 => drop(kv.set(&a, "n", value.as_bytes()).expect("set")),
                    1 => drop(
                        kv.write(&a, &[("n", Some(value.as_bytes())), ("other", None)])
                            .expect("batch"),
                    ),
                    2 => {
                        let previous = (i - 1).to_string();
                        let expected = Expected::Value(serde_json::json!(i - 1));
                        let swapped = kv
                            .compare_and_set(&a, "n", &expected, value.as_bytes())
                            .expect("cas");
                        assert!(swapped.written, "{previous} was there");
                    }
                    _ => {
                        kv.set(&a, "n", value.as_bytes()).expect("set");
                        kv.set(&a, "gone", b"1").expect("set");
                        assert_eq!(read(KvSpace::of(&a), "gone"), 1);
                        assert!(kv.delete(&a, "gone").expect("delete"));
                        assert_eq!(kv.get(&a, "gone").expect("get"), None);
                    }
                }
                kv.set(scoped, "n", value.as_bytes()).expect("scoped set");
                done.store(i, SeqCst);
                // A failed compare-and-set changes nothing, and the cache says so.
                let stale = Expected::Value(serde_json::json!(0));
                assert!(
                    !kv.compare_and_set(&a, "n", &stale, b"-1")
                        .expect("cas")
                        .written
                );
                assert_eq!(read(KvSpace::of(&a), "n"), i);
            }
            assert_eq!(kv.drop_scope(&scope).expect("dropped"), 1);
            assert_eq!(kv.get(scoped, "n").expect("get"), None, "the scope is gone");
            stop.store(true, SeqCst);
            for reader in readers {
                assert!(reader.join().expect("reader") > 0);
            }
        });
        // A new store on the same file (a restarted host) reads what was written.
        drop(kv);
        let again = KvStore::open(&dir.path().join("kv.redb")).expect("reopens");
        assert_eq!(
            again.get(&a, "n").expect("get").as_deref(),
            Some(&b"60"[..])
        );
        assert_eq!(again.get(scoped, "n").expect("get"), None);
    }
}
