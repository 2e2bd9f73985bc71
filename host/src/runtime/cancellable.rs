//! Calls the caller can cancel ([`Host::call_cancellable`]) and streamed calls
//! ([`Host::call_stream`]), for the host program and on behalf of a principal.

use super::{Host, OnBehalf};
use crate::call::cancel::{self, CancelToken};
use crate::call::stream::{self, Chunk};
use crate::error::{CallError, CallErrorCode};
use crate::runtime::outcome::ActionOutcome;

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
        OnBehalf::new(self, None).call_cancellable(plugin, action, input, token)
    }

    /// [`Host::call_cancellable`] taking the call as a stream: each chunk the action emits
    /// (`ctx.emit(..)`) is handed to `on_chunk` on this thread, in order, as it comes, and the
    /// final answer is returned. The call runs on a thread of its own meanwhile; it may get at
    /// most [`crate::STREAM_BUFFER`] chunks ahead of `on_chunk` and otherwise waits for it, so a
    /// slow consumer slows the plugin and memory stays bounded however long the stream.
    /// Cancelling `token` stops the stream (the plugin's `emit` answers `cancelled`); a panic in
    /// `on_chunk` cancels the call, waits for it to stop and unwinds here. Asked for from inside
    /// a call into a plugin (a service handler), the call is made on this thread, unstreamed
    /// (its chunks are discarded).
    ///
    /// # Errors
    ///
    /// As [`Host::call_cancellable`].
    pub fn call_stream(
        &self,
        plugin: &str,
        action: &str,
        input: &serde_json::Value,
        token: &CancelToken,
        on_chunk: impl FnMut(Chunk),
    ) -> Result<ActionOutcome, CallError> {
        OnBehalf::new(self, None).call_stream(plugin, action, input, token, on_chunk)
    }
}

impl OnBehalf<'_> {
    /// [`Host::call_cancellable`], with the principal as the caller.
    ///
    /// # Errors
    ///
    /// As [`Host::call_cancellable`].
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

    /// [`Host::call_stream`], with the principal as the caller.
    ///
    /// # Errors
    ///
    /// As [`Host::call_stream`].
    pub fn call_stream(
        &self,
        plugin: &str,
        action: &str,
        input: &serde_json::Value,
        token: &CancelToken,
        on_chunk: impl FnMut(Chunk),
    ) -> Result<ActionOutcome, CallError> {
        let failed = |code, message: String| CallError {
            code,
            plugin: plugin.to_owned(),
            action: action.to_owned(),
            message,
        };
        let id = airlock_abi::manifest::PluginId::new(plugin)
            .map_err(|e| failed(CallErrorCode::NotFound, e))?;
        // From inside a call into a plugin (a service handler of the program), the call is made
        // here, unstreamed: on another thread it would lose this thread's cycle guards.
        if crate::sync::hazard::this_thread().is_some_and(|r| r.in_call()) {
            tracing::debug!(%plugin, action, "a stream asked for from inside a call: made unstreamed");
            return self.call_cancellable(plugin, action, input, token);
        }
        stream::streamed(
            &id,
            token,
            || self.call_cancellable(plugin, action, input, token),
            on_chunk,
        )
        .map_err(|e| {
            failed(
                CallErrorCode::HandlerError,
                format!("no thread could be started for the streamed call: {e}"),
            )
        })?
    }
}
