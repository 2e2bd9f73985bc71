//! Reading a namespace or scope in order (listings and keys), and dropping a scope across
//! every plugin's store in one transaction.

use airlock_abi::wire::KvEntry;
use redb::{TableDefinition, TableHandle};

use super::space::{KvScope, KvSpace, SCOPED_VALUES, SCOPED_VERSIONS};
use super::{check_key, opened, storage, values_in, KvError, KvStore, MAX_LIST, MAX_LIST_BYTES};

impl KvStore {
    /// The entries of `space` whose keys start with `prefix`, sorted by key, with their values
    /// (at most [`MAX_LIST`]).
    ///
    /// # Errors
    ///
    /// [`KvError`].
    pub fn list<'s>(
        &self,
        space: impl Into<KvSpace<'s>>,
        prefix: &str,
    ) -> Result<Vec<KvEntry<Vec<u8>>>, KvError> {
        self.scan(&space.into(), prefix, true)
    }

    /// The keys of `space` starting with `prefix`, sorted (at most [`MAX_LIST`]).
    ///
    /// # Errors
    ///
    /// [`KvError`].
    pub fn keys<'s>(
        &self,
        space: impl Into<KvSpace<'s>>,
        prefix: &str,
    ) -> Result<Vec<String>, KvError> {
        Ok(self
            .scan(&space.into(), prefix, false)?
            .into_iter()
            .map(|e| e.key)
            .collect())
    }

    fn scan(
        &self,
        space: &KvSpace<'_>,
        prefix: &str,
        with_values: bool,
    ) -> Result<Vec<KvEntry<Vec<u8>>>, KvError> {
        check_key(prefix)?;
        let names = space.names();
        let stored_prefix = space.stored(prefix);
        let txn = self.read()?;
        let Some(values) = values_in(&txn, &names)? else {
            return Ok(Vec::new());
        };
        let versions = txn.open_table(names.versions()).ok();
        let (mut entries, mut bytes) = (Vec::new(), 0usize);
        for item in values.range(&*stored_prefix..).map_err(storage)? {
            let (stored, value) = item.map_err(storage)?;
            let stored = stored.value();
            if !stored.starts_with(&*stored_prefix) || entries.len() >= MAX_LIST {
                break;
            }
            let key = space.unstored(stored);
            bytes += key.len() + if with_values { value.value().len() } else { 0 };
            if bytes > MAX_LIST_BYTES {
                break;
            }
            let (value, version) = if with_values {
                let version = match &versions {
                    Some(v) => v.get(stored).map_err(storage)?.map_or(1, |v| v.value()),
                    None => 1,
                };
                (opened(space, key, value.value().to_vec())?, version)
            } else {
                (Vec::new(), 0)
            };
            entries.push(KvEntry {
                key: key.to_owned(),
                value,
                version,
            });
        }
        Ok(entries)
    }

    /// Removes the scope `(kind, id)` from every plugin's namespace in one transaction: when
    /// this returns, no plugin has a key in it, and every other scope and every unscoped key
    /// is as it was. A reader sees the store as it was before, or as it is after. How many
    /// keys were removed.
    ///
    /// # Errors
    ///
    /// [`KvError::Storage`]; nothing was removed then.
    pub fn drop_scope(&self, scope: &KvScope) -> Result<u64, KvError> {
        let (start, end) = (scope.prefix(), scope.end());
        let mut changing = self.cache.change();
        changing.forget_where(|place| place.scoped && place.stored.starts_with(start.as_str()));
        let txn = self.db.begin_write().map_err(storage)?;
        let tables: Vec<String> = txn
            .list_tables()
            .map_err(storage)?
            .map(|t| t.name().to_owned())
            .filter(|name| name.starts_with(SCOPED_VALUES) || name.starts_with(SCOPED_VERSIONS))
            .collect();
        let mut removed = 0u64;
        for name in &tables {
            if name.starts_with(SCOPED_VALUES) {
                let def: TableDefinition<&str, &[u8]> = TableDefinition::new(name);
                let mut table = txn.open_table(def).map_err(storage)?;
                table
                    .retain_in(start.as_str()..end.as_str(), |_, _| {
                        removed += 1;
                        false
                    })
                    .map_err(storage)?;
            } else {
                let def: TableDefinition<&str, u64> = TableDefinition::new(name);
                let mut table = txn.open_table(def).map_err(storage)?;
                table
                    .retain_in(start.as_str()..end.as_str(), |_, _| false)
                    .map_err(storage)?;
            }
        }
        txn.commit().map_err(storage)?;
        Ok(removed)
    }
}
