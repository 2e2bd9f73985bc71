//! [`ActionHandle`]: an action resolved once, that follows reloads.

use std::sync::Arc;

use crate::error::{CallError, CallErrorCode};
use crate::loader::hazard::Guarded;

use super::invoke::{json_call, not_loaded};
use super::plugin::LoadedPlugin;
use super::shared::HostShared;
use crate::outcome::ActionOutcome;

/// A pre-resolved action of a plugin, from [`Host::action`]: calls pay no lookup by name.
pub struct ActionHandle<'h> {
    pub(super) shared: &'h HostShared,
    pub(super) plugin: String,
    pub(super) action: String,
    pub(super) resolved: Guarded<(Arc<LoadedPlugin>, usize)>,
}

impl std::fmt::Debug for ActionHandle<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionHandle")
            .field("plugin", &self.plugin)
            .field("action", &self.action)
            .finish()
    }
}

impl ActionHandle<'_> {
    /// Calls the action with a JSON value.
    ///
    /// # Errors
    ///
    /// As [`Host::call`].
    pub fn call(&self, input: &serde_json::Value) -> Result<ActionOutcome, CallError> {
        json_call(&self.plugin, &self.action, input, |bytes| {
            self.call_bytes(bytes)
        })
    }

    /// Calls the action with JSON bytes the caller encoded. After a reload the handle follows
    /// the new generation (resolving the action once more).
    ///
    /// # Errors
    ///
    /// As [`Host::call_bytes`].
    pub fn call_bytes(&self, input: &[u8]) -> Result<Result<Vec<u8>, String>, CallError> {
        let mut attempts = 0;
        loop {
            let (result, retry) = self.resolved.with(|resolved| {
                let Some((loaded, index)) = resolved else {
                    return (Err(not_loaded(&self.plugin, &self.action)), false);
                };
                let result = self.shared.call_index(loaded, *index, &self.action, input);
                let retry = matches!(&result, Err(e) if e.code == CallErrorCode::Revoked)
                    && self.shared.replaced(loaded);
                (result, retry)
            });
            if !retry || attempts >= 8 {
                return result;
            }
            attempts += 1;
            let resolved = self.shared.resolve(&self.plugin, &self.action)?;
            drop(self.resolved.replace(Some(Arc::new(resolved))));
        }
    }
}
