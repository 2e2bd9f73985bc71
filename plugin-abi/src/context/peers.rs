//! The other plugins as a whole, and the host program ([`Context::peers`],
//! [`Context::request_shutdown`]): which plugins run, the holder of a claimed kind, the hook
//! points the program defined, and a request that the program shut down.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Context;
use crate::error::ContextError;
use crate::wire::{self, Request};

/// The other plugins as a whole: listed, dispatched to by claim, run through a hook point.
#[derive(Debug, Clone, Copy)]
pub struct Peers<'c> {
    pub(super) ctx: &'c Context,
}

/// How a dispatched request ended, decoded: who handled it, after how many attempts, and the
/// holder's own `ok`/`error` answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Dispatched<O> {
    /// The plugin holding the claim.
    pub holder: String,
    /// Its action that handles the kind.
    pub action: String,
    /// How many times it was called: 1, plus one per retry its policy allowed.
    pub attempts: u32,
    /// The last attempt's answer, or its own error message.
    pub reply: Result<O, String>,
}

impl Peers<'_> {
    /// The plugins the host runs (this one included), with their versions, states, actions
    /// (schemas and hints), claims and hooks. A plugin the operator disabled or the host
    /// quarantined is listed with its state.
    ///
    /// # Errors
    ///
    /// [`ContextError::CapabilityViolation`] without `plugins.list`; [`ContextError::Unsupported`]
    /// on a host older than the request.
    pub fn list(&self) -> Result<Vec<wire::PeerInfo>, ContextError> {
        let request = Request::PluginsList;
        super::decode(
            &self
                .ctx
                .request(request.service(), request.operation(), &[])?,
        )
    }

    /// Sends `input` to the plugin that claims `kind`, as the host program's `dispatch` does:
    /// an answer the holder marks retryable is retried as its policy says. The outer result is
    /// the infrastructure, [`Dispatched::reply`] the holder's own envelope.
    ///
    /// # Errors
    ///
    /// [`ContextError::CapabilityViolation`] without `dispatch:<kind>`;
    /// [`ContextError::Call`] if nobody claims the kind (`not_found`), the call nests too deep
    /// (`too_deep`), would re-enter a serial plugin (`reentrant`) or failed in the holder;
    /// [`ContextError::BadRequest`] if this plugin holds the kind itself.
    pub fn dispatch<I: Serialize, O: DeserializeOwned>(
        &self,
        kind: &str,
        input: &I,
    ) -> Result<Dispatched<O>, ContextError> {
        let input =
            serde_json::to_value(input).map_err(|e| ContextError::BadRequest(e.to_string()))?;
        let answer: wire::Dispatched<O> = self.ctx.call_service(
            Request::PluginsDispatch,
            &wire::Dispatch {
                kind: kind.to_owned(),
                input,
            },
        )?;
        Ok(Dispatched {
            holder: answer.holder,
            action: answer.action,
            attempts: answer.attempts,
            reply: answer.reply.into(),
        })
    }

    /// Runs the hook point `hook` with `input`, in the mode the host program defined it with
    /// (for a `filter` hook, `input` is the list of items). This plugin's own handler of the
    /// hook, if it has one, is skipped.
    ///
    /// # Errors
    ///
    /// [`ContextError::CapabilityViolation`] without `hooks.run:<hook>`;
    /// [`ContextError::Call`] with `not_found` if the program did not define the hook, or
    /// `too_deep` if calls nest too deep.
    pub fn run_hook<I: Serialize>(
        &self,
        hook: &str,
        input: &I,
    ) -> Result<wire::HookRunOutcome, ContextError> {
        let input =
            serde_json::to_value(input).map_err(|e| ContextError::BadRequest(e.to_string()))?;
        self.ctx.call_service(
            Request::HooksRun,
            &wire::HookRun {
                hook: hook.to_owned(),
                input,
            },
        )
    }
}

impl Context {
    /// The other plugins as a whole (capabilities `plugins.list`, `dispatch:<kind>`,
    /// `hooks.run:<name>`).
    pub fn peers(&self) -> Peers<'_> {
        Peers { ctx: self }
    }

    /// Asks the host program to shut down, saying why (capability `host.control`, which only
    /// the operator grants). It is a request: the program decides when, and meanwhile this
    /// plugin keeps running (and is torn down like the others when the program shuts down).
    ///
    /// # Errors
    ///
    /// [`ContextError::CapabilityViolation`] without `host.control` (an audit record is
    /// written); [`ContextError::BadRequest`] for a reason over 1024 characters;
    /// [`ContextError::Unsupported`] on a host older than the request.
    pub fn request_shutdown(&self, reason: &str) -> Result<(), ContextError> {
        self.call_service::<serde_json::Value>(
            Request::HostShutdown,
            &wire::Shutdown {
                reason: reason.to_owned(),
            },
        )
        .map(drop)
    }
}
