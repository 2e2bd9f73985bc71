//! Other plugins' actions ([`Context::plugins`], capability `plugins.call:<id>`).

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Context;
use crate::error::ContextError;
use crate::wire::{self, Request};

/// Other plugins' actions.
#[derive(Debug, Clone, Copy)]
pub struct Plugins<'c> {
    pub(super) ctx: &'c Context,
}

impl Plugins<'_> {
    /// Calls `action` of `plugin`; the outer result is the infrastructure (capability, not
    /// found, panic…), the inner one the action's own `ok`/`error` envelope.
    ///
    /// # Errors
    ///
    /// [`ContextError::CapabilityViolation`] without `plugins.call:<plugin>`;
    /// [`ContextError::Call`] if the call failed in the host or the other plugin.
    pub fn call<I: Serialize, O: DeserializeOwned>(
        &self,
        plugin: &str,
        action: &str,
        input: &I,
    ) -> Result<Result<O, String>, ContextError> {
        let input =
            serde_json::to_value(input).map_err(|e| ContextError::BadRequest(e.to_string()))?;
        let envelope: wire::Envelope<O> = self.ctx.call_service(
            Request::PluginsCall,
            &wire::Call {
                plugin: plugin.to_owned(),
                action: action.to_owned(),
                input,
            },
        )?;
        Ok(envelope.into())
    }
}
