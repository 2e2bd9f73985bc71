//! Calls the caller can cancel: [`Host::call_cancellable`].

use super::Host;
use crate::cancel::{self, CancelToken};
use crate::error::{CallError, CallErrorCode};
use crate::outcome::ActionOutcome;

impl Host {
    /// [`Host::call`] with a token the caller (any thread) can cancel while the call runs: the
    /// plugin sees `ctx.cancelled()` turn true, and so do the plugins it calls. A call whose
    /// token was cancelled before it returned ends `cancelled` — its own outcome, not a fault —
    /// whatever the plugin answered; a call with a token already cancelled is not made.
    ///
    /// # Errors
    ///
    /// [`CallErrorCode::Cancelled`], or what [`Host::call`] returns.
    pub fn call_cancellable(
        &self,
        plugin: &str,
        action: &str,
        input: &serde_json::Value,
        token: &CancelToken,
    ) -> Result<ActionOutcome, CallError> {
        let cancelled = || CallError {
            code: CallErrorCode::Cancelled,
            plugin: plugin.to_owned(),
            action: action.to_owned(),
            message: format!("{plugin}.{action} was cancelled"),
        };
        if token.is_cancelled() {
            return Err(cancelled());
        }
        let answered = {
            let _watching = cancel::push(token.clone());
            self.call(plugin, action, input)
        };
        if token.is_cancelled() {
            return Err(cancelled());
        }
        answered
    }
}
