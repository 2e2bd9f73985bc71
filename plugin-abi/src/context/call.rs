//! The call the plugin is serving now, as seen from inside it: who asked for it
//! ([`Context::caller`]), whether it was cancelled ([`Context::cancelled`]), and the partial
//! results it streams to its caller ([`Context::emit`]).

use super::Context;
use crate::error::ContextError;
use crate::wire::{self, CallerInfo, Request};

impl Context {
    /// Who asked for the call this plugin is serving now: the host program (on behalf of a
    /// principal, when it named one) or another plugin. Outside a call (in `create`, a timer or
    /// an event) it is the host with no principal.
    ///
    /// # Errors
    ///
    /// [`ContextError::Revoked`] if the context was revoked.
    pub fn caller(&self) -> Result<CallerInfo, ContextError> {
        let answer = self.request(
            Request::ContextCaller.service(),
            Request::ContextCaller.operation(),
            &[],
        )?;
        serde_json::from_slice(&answer).map_err(|e| ContextError::Decode(e.to_string()))
    }

    /// Whether the call being served was cancelled — by its caller, because the plugin is being
    /// torn down (disabled, reloaded, shut down), because the call that made this one (a
    /// plugin calling a plugin) was, or because the watchdog reported it past its timeout. Cheap enough to poll in a loop; a long action should, and
    /// return early: its caller gets the outcome `cancelled`. A revoked context is cancelled.
    pub fn cancelled(&self) -> bool {
        match self.request(
            Request::ContextCancelled.service(),
            Request::ContextCancelled.operation(),
            &[],
        ) {
            Ok(answer) => answer == b"true",
            Err(ContextError::Revoked) => true,
            Err(_) => false,
        }
    }

    /// Emits a partial result of the call being served: a caller taking the call as a stream
    /// (`host.call(..).on_chunk(..)`, an MCP client's progress) receives it at once, in order; for a
    /// caller that is not, it is discarded. When the caller is behind, this waits for it (the
    /// stream's buffer is bounded). Hooks, events and timers are never streamed.
    ///
    /// # Errors
    ///
    /// [`ContextError::Call`] with [`CallErrorCode::Cancelled`](wire::CallErrorCode::Cancelled)
    /// once the caller cancelled the call or stopped taking the stream: stop and return;
    /// `BadRequest` for a chunk over the host's limit (1 MiB); [`ContextError::Revoked`] after
    /// teardown.
    pub fn emit<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<(), ContextError> {
        let mut body = vec![wire::CHUNK_JSON];
        serde_json::to_writer(&mut body, value)
            .map_err(|e| ContextError::BadRequest(e.to_string()))?;
        self.emit_body(&body)
    }

    /// [`Context::emit`] for a chunk of bytes (text being written, a file's parts).
    ///
    /// # Errors
    ///
    /// As [`Context::emit`].
    pub fn emit_bytes(&self, bytes: &[u8]) -> Result<(), ContextError> {
        let mut body = Vec::with_capacity(bytes.len() + 1);
        body.push(wire::CHUNK_BYTES);
        body.extend_from_slice(bytes);
        self.emit_body(&body)
    }

    fn emit_body(&self, body: &[u8]) -> Result<(), ContextError> {
        self.request(
            Request::StreamEmit.service(),
            Request::StreamEmit.operation(),
            body,
        )
        .map(drop)
    }
}
