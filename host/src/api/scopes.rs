//! Scopes of the key/value store the host program manages: [`Host::drop_scope`] clears a
//! scope (a project, a run) from every plugin's store at once when the thing it belongs to
//! goes away.

use super::Host;
use crate::services::{KvError, KvScope};

impl Host {
    /// Removes every key of the scope `(kind, id)` — the one plugins reach with
    /// `ctx.kv().scope(kind, id)` — from every plugin's store, in one transaction: a reader or
    /// writer sees every plugin's keys of the scope, or none; every other scope and every
    /// unscoped key stays as it was. How many keys were removed (0 when the host has no data
    /// directory).
    ///
    /// # Errors
    ///
    /// [`KvError::BadScope`] for a kind or id plugins could not use; [`KvError::Storage`] if
    /// the store failed (then nothing was removed).
    pub fn drop_scope(&self, kind: &str, id: &str) -> Result<u64, KvError> {
        let scope = KvScope::new(kind, id)?;
        match self.shared.kv.as_ref() {
            Some(kv) => kv.drop_scope(&scope),
            None => Ok(0),
        }
    }
}
