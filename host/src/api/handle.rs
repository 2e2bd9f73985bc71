//! [`ActionHandle`]: an action resolved once, that follows reloads.

use std::sync::Arc;

use crate::error::{CallError, CallErrorCode};
use crate::sync::hazard::this_thread;
use crate::sync::hazard::Retaining;

use super::call::Call;
use crate::runtime::called::{fail, message, pending_parts, Called};
use crate::runtime::outcome::ApprovalId;
use crate::runtime::{HostShared, LoadedPlugin};

/// How an action called with [`ActionHandle::call_into`] answered; what it said is in the
/// caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// The buffer holds the answer.
    Ok,
    /// The buffer holds the action's domain error message (the envelope's `error`).
    Error,
    /// The call did not run: it waits for approval (the envelope's `pending_approval`); the
    /// buffer holds the message.
    Pending(ApprovalId),
}

/// A pre-resolved action of a plugin, from [`Host::action`](crate::Host::action): calls pay no
/// lookup by name.
pub struct ActionHandle<'h> {
    pub(super) shared: &'h HostShared,
    pub(super) plugin: String,
    pub(super) action: String,
    /// The plugin and the action's index in its manifest, read with one load; after a reload
    /// the handle resolves again, and keeps what it replaced until it is dropped (a plugin's
    /// bookkeeping, not its library or instance, per reload it followed).
    pub(super) resolved: Retaining<(Arc<LoadedPlugin>, usize)>,
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
    /// Starts a call of the action; see [`Call`] for what it can carry.
    pub fn call(&self) -> Call<'_> {
        Call::handle(self)
    }

    /// Calls the action with bytes, leaving the answer in `out` (cleared first, its capacity
    /// reused): the cheapest call there is, for hot loops. [`Answered::Ok`]: `out` holds the
    /// answer; [`Answered::Error`]: `out` holds the action's domain error message (UTF-8). The
    /// error is boxed so that the whole result comes back in registers.
    ///
    /// # Errors
    ///
    /// As [`Call::bytes`](crate::Call::bytes).
    #[inline]
    pub fn call_into(&self, input: &[u8], out: &mut Vec<u8>) -> Result<Answered, Box<CallError>> {
        let _host = crate::frame::caller::host_call();
        match self.call_raw(input, out) {
            Ok(Called::Answered) => Ok(Answered::Ok),
            Ok(Called::Domain | Called::Retryable) => Ok(Answered::Error),
            Ok(Called::Pending) => {
                let (id, message) = pending_parts(out);
                let message = message.to_vec();
                *out = message;
                Ok(Answered::Pending(id))
            }
            Ok(Called::Deferred) => Err(Box::new(fail(
                &self.plugin,
                &self.action,
                CallErrorCode::Pending,
                crate::runtime::called::deferred_message(out),
            ))),
            Ok(Called::Failed(code)) => Err(Box::new(fail(
                &self.plugin,
                &self.action,
                code,
                message(out),
            ))),
            Err(e) => Err(Box::new(e)),
        }
    }

    /// Calls the resolved action; `Err` only if the plugin is not loaded.
    #[inline(always)]
    pub(super) fn call_raw(&self, input: &[u8], out: &mut Vec<u8>) -> Result<Called, CallError> {
        let record = this_thread();
        let mut attempts = 0;
        loop {
            let (loaded, index) = self.resolved.get();
            let called = self.shared.call_index(record, loaded, *index, input, out);
            let retry =
                called == Called::Failed(CallErrorCode::Revoked) && self.shared.replaced(loaded);
            if !retry || attempts >= 8 {
                return Ok(called);
            }
            attempts += 1;
            let resolved = self.shared.resolve(&self.plugin, &self.action)?;
            self.resolved.replace(resolved);
        }
    }
}
