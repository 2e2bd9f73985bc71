//! [`OnBehalf`]: the host program calling plugins, on behalf of a principal it names (which
//! their handlers see in `ctx.caller()`) or of no one (`Host::call` and `Host::call_bytes`).

use airlock_abi::wire::{CallerInfo, Principal};

use super::called::json_call;
use super::Host;
use crate::error::CallError;
use crate::runtime::outcome::ActionOutcome;

/// A host calling plugins on behalf of a principal ([`Host::as_principal`]).
#[derive(Debug)]
pub struct OnBehalf<'a> {
    pub(super) host: &'a Host,
    principal: Option<&'a Principal>,
}

impl<'a> OnBehalf<'a> {
    pub(super) fn new(host: &'a Host, principal: Option<&'a Principal>) -> Self {
        Self { host, principal }
    }

    /// [`Host::call`], with the principal as the caller.
    ///
    /// # Errors
    ///
    /// As [`Host::call`].
    pub fn call(
        &self,
        plugin: &str,
        action: &str,
        input: &serde_json::Value,
    ) -> Result<ActionOutcome, CallError> {
        json_call(plugin, action, input, |bytes, out| {
            let _calling = self.calling();
            self.host.shared.call_into(plugin, action, bytes, out)
        })
    }

    /// [`Host::hooks`], with the principal as the caller: what the plugins' hook handlers see
    /// in `ctx.caller()` and what the policy's permissions for hooks are checked against.
    pub fn hooks(&self) -> super::HookDispatch<'a> {
        super::HookDispatch {
            shared: &self.host.shared,
            principal: self.principal,
        }
    }

    /// [`Host::call_bytes`], with the principal as the caller.
    ///
    /// # Errors
    ///
    /// As [`Host::call_bytes`].
    pub fn call_bytes(
        &self,
        plugin: &str,
        action: &str,
        input: &[u8],
    ) -> Result<Result<Vec<u8>, String>, CallError> {
        let _calling = self.calling();
        self.host.shared.call_bytes(plugin, action, input)
    }

    /// Makes the host, on behalf of the principal, the caller of the calls this thread makes
    /// until dropped.
    pub(super) fn calling(&self) -> Option<crate::call::caller::Calling> {
        match self.principal {
            Some(principal) => Some(crate::call::caller::push(CallerInfo::Host {
                principal: Some(principal.clone()),
            })),
            None => crate::call::caller::host_call(),
        }
    }
}
