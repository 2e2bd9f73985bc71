//! Settling the plugin's own deferred answers ([`Context::resolve`], [`Context::resolve_error`]):
//! an action answered [`ActionError::pending`](crate::ActionError::pending) with a key, and the
//! plugin names that key later — from another action, a timer, an event — to give the answer.

use super::Context;
use crate::error::ContextError;
use crate::wire::{Envelope, Request, Resolution};

impl Context {
    /// Settles the open pending answer `key` (the key an action of this plugin answered
    /// pending with) with `value`: its caller then reads `{"status": "ok", "data": value}`.
    /// Needs no capability; a plugin reaches only its own entries.
    ///
    /// # Errors
    ///
    /// [`ContextError::Call`] with [`CallErrorCode::NotFound`](crate::CallErrorCode::NotFound)
    /// if this plugin has no entry `key`, or with `Pending` if it is no longer open (resolved
    /// already, or expired; the message says which); [`ContextError::Unsupported`] on a host
    /// that predates deferred answers.
    pub fn resolve<T: serde::Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<(), ContextError> {
        let value =
            serde_json::to_value(value).map_err(|e| ContextError::BadRequest(e.to_string()))?;
        self.settle(key, Envelope::Ok(value))
    }

    /// Settles the open pending answer `key` with the action's own error `message`: its caller
    /// reads `{"status": "error", "data": message}`.
    ///
    /// # Errors
    ///
    /// As [`Context::resolve`].
    pub fn resolve_error(&self, key: &str, message: &str) -> Result<(), ContextError> {
        self.settle(key, Envelope::Error(message.to_owned()))
    }

    fn settle(&self, key: &str, outcome: Envelope<serde_json::Value>) -> Result<(), ContextError> {
        let body = Resolution {
            key: key.to_owned(),
            outcome,
        };
        let body =
            serde_json::to_vec(&body).map_err(|e| ContextError::BadRequest(e.to_string()))?;
        let request = Request::PendingResolve;
        self.request(request.service(), request.operation(), &body)?;
        Ok(())
    }
}
