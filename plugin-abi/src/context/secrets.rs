//! Secrets the operator provides ([`Context::secrets`], capability `secrets:<name>`).

use super::Context;
use crate::error::ContextError;
use crate::wire::{self, Request};

/// Operator-provided secrets.
#[derive(Debug, Clone, Copy)]
pub struct Secrets<'c> {
    pub(super) ctx: &'c Context,
}

impl Secrets<'_> {
    /// The secret `name`. Never logged by the host.
    ///
    /// # Errors
    ///
    /// [`ContextError::CapabilityViolation`] without `secrets:<name>`; `BadRequest` if the
    /// operator did not provide it.
    pub fn get(&self, name: &str) -> Result<String, ContextError> {
        self.ctx.call_service(
            Request::SecretsGet,
            &wire::Name {
                name: name.to_owned(),
            },
        )
    }
}
