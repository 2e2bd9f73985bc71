//! The plugin's own key/value namespace ([`Context::kv`], capability `kv`): values with
//! versions, compare-and-set, and batches written all or none; and its scopes
//! ([`Kv::scope`]), which the host understands and can drop across plugins.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Context;
use crate::error::ContextError;
use crate::wire::{self, Expected, KvEntry, KvScope, Request, Swapped};

/// The plugin's key/value namespace, or one scope of it ([`Kv::scope`]). Values are JSON;
/// writes are durable when they return.
#[derive(Debug, Clone)]
pub struct Kv<'c> {
    pub(super) ctx: &'c Context,
    pub(super) scope: Option<KvScope>,
}

impl<'c> Kv<'c> {
    /// The scope `(kind, id)` of the namespace, e.g. `("project", "p-42")`: keys of their own,
    /// apart from the unscoped ones and from every other scope's, that the host program can
    /// drop across every plugin in one step (`Host::drop_scope`) when the thing they belong to
    /// goes away. Everything [`Kv`] does works in a scope.
    ///
    /// The kind is a plain name (letters, digits, `_`, `-`, `.`; at most 64 bytes), the id at
    /// most 256 bytes without control characters: the host refuses others (`BadRequest`) on
    /// the first request, as does a host that predates scopes.
    #[must_use]
    pub fn scope(&self, kind: &str, id: &str) -> Kv<'c> {
        Kv {
            ctx: self.ctx,
            scope: Some(KvScope {
                kind: kind.to_owned(),
                id: id.to_owned(),
            }),
        }
    }

    /// The scope this handle reads and writes, if any.
    pub fn scope_of(&self) -> Option<&KvScope> {
        self.scope.as_ref()
    }
}

impl Kv<'_> {
    /// The value of `key`, if set.
    ///
    /// # Errors
    ///
    /// [`ContextError`] from the host, or `Decode` if the stored value does not fit `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, ContextError> {
        if let Some(fns) = self.ctx.fns {
            let scope = self
                .scope
                .as_ref()
                .map(|s| (s.kind.as_str(), s.id.as_str()));
            return super::fast::kv_get(fns, self.ctx.raw.token, key, scope);
        }
        self.ctx.call_service(
            Request::KvGet,
            &wire::Key {
                key: key.to_owned(),
                scope: self.scope.clone(),
            },
        )
    }

    /// Sets `key` to `value`; durable on disk when it returns.
    ///
    /// # Errors
    ///
    /// [`ContextError`] from the host (e.g. `BadRequest` for a key over the size limit).
    pub fn set<T: Serialize>(&self, key: &str, value: &T) -> Result<(), ContextError> {
        let value =
            serde_json::to_value(value).map_err(|e| ContextError::BadRequest(e.to_string()))?;
        self.ctx.call_service(
            Request::KvSet,
            &wire::KeyValue {
                key: key.to_owned(),
                value,
                scope: self.scope.clone(),
            },
        )
    }

    /// Removes `key`; true if it was set.
    ///
    /// # Errors
    ///
    /// [`ContextError`] from the host.
    pub fn delete(&self, key: &str) -> Result<bool, ContextError> {
        self.ctx.call_service(
            Request::KvDelete,
            &wire::Key {
                key: key.to_owned(),
                scope: self.scope.clone(),
            },
        )
    }

    /// The keys starting with `prefix`, sorted.
    ///
    /// # Errors
    ///
    /// [`ContextError`] from the host.
    pub fn keys(&self, prefix: &str) -> Result<Vec<String>, ContextError> {
        self.ctx.call_service(
            Request::KvKeys,
            &wire::Prefix {
                prefix: prefix.to_owned(),
                scope: self.scope.clone(),
            },
        )
    }
}

impl Kv<'_> {
    /// The value of `key` with its version, if set: the version to pass to
    /// [`Kv::compare_and_set`] with [`Expected::Version`].
    ///
    /// # Errors
    ///
    /// [`ContextError`] from the host, or `Decode` if the stored value does not fit `T`.
    pub fn entry<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<KvEntry<T>>, ContextError> {
        self.ctx.call_service(
            Request::KvEntry,
            &wire::Key {
                key: key.to_owned(),
                scope: self.scope.clone(),
            },
        )
    }

    /// The entries whose keys start with `prefix` (key, value, version), sorted by key; at most
    /// 10,000 of them.
    ///
    /// # Errors
    ///
    /// [`ContextError`] from the host, or `Decode` if a stored value does not fit `T`.
    pub fn list<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<KvEntry<T>>, ContextError> {
        self.ctx.call_service(
            Request::KvList,
            &wire::Prefix {
                prefix: prefix.to_owned(),
                scope: self.scope.clone(),
            },
        )
    }

    /// Sets `key` to `value` only if it holds what is `expected` (nothing, the value of a
    /// version read earlier, or a value), in one step no other write can come between; durable
    /// on disk when it returns. Whether it wrote, and the key's version now.
    ///
    /// # Errors
    ///
    /// [`ContextError`] from the host.
    pub fn compare_and_set<T: Serialize>(
        &self,
        key: &str,
        expected: Expected,
        value: &T,
    ) -> Result<Swapped, ContextError> {
        let value =
            serde_json::to_value(value).map_err(|e| ContextError::BadRequest(e.to_string()))?;
        self.ctx.call_service(
            Request::KvCompareAndSet,
            &wire::CompareAndSet {
                key: key.to_owned(),
                expected,
                value,
                scope: self.scope.clone(),
            },
        )
    }

    /// Makes the batch's writes together: all of them are durable on disk when it returns, or
    /// none was made. The version they share.
    ///
    /// # Errors
    ///
    /// [`ContextError`] from the host (e.g. `BadRequest` for a key or value over its limit,
    /// and then nothing was written).
    pub fn write(&self, batch: KvBatch) -> Result<u64, ContextError> {
        self.ctx.call_service(
            Request::KvWrite,
            &wire::Writes {
                writes: batch.writes,
                scope: self.scope.clone(),
            },
        )
    }
}

/// Writes to make together with [`Kv::write`]: all or none.
#[derive(Debug, Clone, Default)]
pub struct KvBatch {
    writes: Vec<wire::Write>,
}

impl KvBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds setting `key` to `value`.
    ///
    /// # Errors
    ///
    /// `BadRequest` if `value` cannot be encoded as JSON.
    pub fn set<T: Serialize>(mut self, key: &str, value: &T) -> Result<Self, ContextError> {
        let value =
            serde_json::to_value(value).map_err(|e| ContextError::BadRequest(e.to_string()))?;
        self.writes.push(wire::Write::Set {
            key: key.to_owned(),
            value,
        });
        Ok(self)
    }

    /// Adds removing `key`.
    #[must_use]
    pub fn delete(mut self, key: &str) -> Self {
        self.writes.push(wire::Write::Delete {
            key: key.to_owned(),
        });
        self
    }

    /// How many writes it holds.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }
}
