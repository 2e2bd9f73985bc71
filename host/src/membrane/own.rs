//! A plugin's requests about itself, which need no capability: who asked for the call it is
//! serving (`context caller`), whether that call is cancelled (`context cancelled`), and the
//! state its previous generation handed over (`reload handover`), and where the host's
//! register-returning function table is (`context functions`). None has a body.

use airlock_abi::abi::HostError;
use airlock_abi::wire::{CallerInfo, Request};

use super::row::{raw, row, Bytes, Grant, NoBody};
use crate::services::registry::{BuiltIn, Requester};

/// One row per operation.
pub(super) fn rows() -> Vec<Box<dyn BuiltIn>> {
    vec![
        row(Request::ContextCaller, Grant::Free, caller),
        row(Request::ContextCancelled, Grant::Free, cancelled),
        row(Request::Handover, Grant::Free, handover),
        raw(Request::ContextFunctions, Grant::Free, functions),
    ]
}

fn caller(_: &dyn Requester, NoBody: NoBody) -> Result<CallerInfo, HostError> {
    Ok(crate::frame::caller::current())
}

/// The caller's token (or an outer call's), the plugin being torn down, or the call reported
/// past its timeout by the watchdog.
fn cancelled(r: &dyn Requester, NoBody: NoBody) -> Result<bool, HostError> {
    Ok(super::cancelled::cancelled(r))
}

/// The state handed over, once; nothing after that, or when there was none.
fn handover(r: &dyn Requester, NoBody: NoBody) -> Result<Bytes, HostError> {
    Ok(Bytes(r.take_handover().unwrap_or_default()))
}

/// The addresses of the host's function table and of its type layout (see `fns`).
fn functions(_: &dyn Requester, _: &[u8]) -> Result<Vec<u8>, HostError> {
    Ok(super::fns::answer())
}
