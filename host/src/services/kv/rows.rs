//! The store's pieces below its operations: the limits' checks, the version counter, writes
//! and reads in a transaction's tables, sealing, and where the read cache keeps a key.

use airlock_abi::manifest::PluginId;
use redb::{ReadOnlyTable, ReadTransaction, ReadableTable, TableError, WriteTransaction};

use super::space::Names;
use super::{cache, seal, storage, KvError, KvSpace, COUNTERS, MAX_KEY_LEN, MAX_VALUE_LEN};

pub(super) fn check_key(key: &str) -> Result<(), KvError> {
    if key.len() > MAX_KEY_LEN {
        return Err(KvError::TooLarge(format!(
            "the key is {} bytes; at most {MAX_KEY_LEN} are allowed",
            key.len()
        )));
    }
    Ok(())
}

pub(super) fn check_value(value: &[u8]) -> Result<(), KvError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(KvError::TooLarge(format!(
            "the value is {} bytes; at most {MAX_VALUE_LEN} are allowed",
            value.len()
        )));
    }
    Ok(())
}

/// The next version of `plugin`'s namespace (taken: no other write gets it). Its scopes share
/// the counter.
pub(super) fn next_version(txn: &WriteTransaction, plugin: &PluginId) -> Result<u64, KvError> {
    let mut counters = txn.open_table(COUNTERS).map_err(storage)?;
    let last = counters
        .get(plugin.as_str())
        .map_err(storage)?
        .map_or(1, |v| v.value());
    let next = last + 1;
    counters.insert(plugin.as_str(), next).map_err(storage)?;
    Ok(next)
}

/// Applies `writes` (stored keys, stored values) in `txn` with `version` for every key set.
pub(super) fn apply(
    txn: &WriteTransaction,
    names: &Names,
    version: u64,
    writes: &[(String, Option<Vec<u8>>)],
) -> Result<(), KvError> {
    let mut values = txn.open_table(names.values()).map_err(storage)?;
    let mut versions = txn.open_table(names.versions()).map_err(storage)?;
    for (key, value) in writes {
        match value {
            Some(value) => {
                values
                    .insert(key.as_str(), value.as_slice())
                    .map_err(storage)?;
                versions.insert(key.as_str(), version).map_err(storage)?;
            }
            None => {
                values.remove(key.as_str()).map_err(storage)?;
                versions.remove(key.as_str()).map_err(storage)?;
            }
        }
    }
    Ok(())
}

/// The namespace's values in a read transaction; `None` if nothing was ever written there.
pub(super) fn values_in(
    txn: &ReadTransaction,
    names: &Names,
) -> Result<Option<ReadOnlyTable<&'static str, &'static [u8]>>, KvError> {
    match txn.open_table(names.values()) {
        Ok(table) => Ok(Some(table)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(storage(e)),
    }
}

/// Reads one entry (its stored value and version) in a read or write transaction's tables.
pub(super) fn read_entry(
    values: &impl ReadableTable<&'static str, &'static [u8]>,
    versions: Option<&impl ReadableTable<&'static str, u64>>,
    stored_key: &str,
) -> Result<Option<(Vec<u8>, u64)>, KvError> {
    let Some(value) = values.get(stored_key).map_err(storage)? else {
        return Ok(None);
    };
    let version = match versions {
        Some(versions) => versions
            .get(stored_key)
            .map_err(storage)?
            .map_or(1, |v| v.value()),
        None => 1,
    };
    Ok(Some((value.value().to_vec(), version)))
}

/// What a stored value of `key` stands for: opened if the space is sealed, else itself — a
/// sealed value read from a space no longer sealed is refused, not handed out as ciphertext.
pub(super) fn opened(space: &KvSpace<'_>, key: &str, stored: Vec<u8>) -> Result<Vec<u8>, KvError> {
    match space.seal {
        None => seal::unsealed(space, key, stored),
        Some(keys) => seal::open(keys, space, key, &stored),
    }
}

/// What to store for `value` of `key`: itself, or sealed if the space is sealed.
pub(super) fn to_store(space: &KvSpace<'_>, key: &str, value: &[u8]) -> Result<Vec<u8>, KvError> {
    match space.seal {
        None => Ok(value.to_vec()),
        Some(keys) => seal::seal(keys, space, key, value),
    }
}

/// Where the read cache keeps `stored` (a key as `space` stores it).
pub(super) fn place<'a>(space: &KvSpace<'a>, stored: &'a str) -> cache::Place<'a> {
    cache::Place {
        plugin: space.plugin.as_str(),
        scoped: space.scope.is_some(),
        stored,
    }
}
