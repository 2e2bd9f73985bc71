//! [`ActionHandle`]: an action resolved once, that follows reloads.

use std::sync::Arc;

use crate::error::{CallError, CallErrorCode};
use crate::loader::hazard::{this_thread, Guarded};

use super::called::{answer, fail, json_call, message, not_loaded, Called};
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
        let mut out = Vec::new();
        let called = self.call_raw(input, &mut out)?;
        answer(&self.plugin, &self.action, called, out)
    }

    /// Calls the action with bytes, leaving the answer in `out` (cleared first, its capacity
    /// reused): the cheapest call there is, for hot loops. `Ok(Ok(()))` means `out` holds the
    /// answer; `Ok(Err(message))` is the action's domain error.
    ///
    /// # Errors
    ///
    /// As [`Host::call_bytes`].
    pub fn call_into(
        &self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Result<(), String>, CallError> {
        match self.call_raw(input, out)? {
            Called::Answered => Ok(Ok(())),
            Called::Domain => Ok(Err(message(out))),
            Called::Failed(code) => Err(fail(&self.plugin, &self.action, code, message(out))),
        }
    }

    /// Calls the resolved action; `Err` only if the plugin is not loaded.
    #[inline(always)]
    fn call_raw(&self, input: &[u8], out: &mut Vec<u8>) -> Result<Called, CallError> {
        let record = this_thread();
        let mut attempts = 0;
        loop {
            let (called, retry) = self.resolved.with_record(record, |resolved| {
                let Some((loaded, index)) = resolved else {
                    return (None, false);
                };
                let called = self.shared.call_index(record, loaded, *index, input, out);
                let retry = called == Called::Failed(CallErrorCode::Revoked)
                    && self.shared.replaced(loaded);
                (Some(called), retry)
            });
            let Some(called) = called else {
                return Err(not_loaded(&self.plugin, &self.action));
            };
            if !retry || attempts >= 8 {
                return Ok(called);
            }
            attempts += 1;
            let resolved = self.shared.resolve(&self.plugin, &self.action)?;
            drop(self.resolved.replace(Some(Arc::new(resolved))));
        }
    }
}
