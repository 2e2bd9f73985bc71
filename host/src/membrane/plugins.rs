//! The `plugins` service's operation: calling an action of another plugin, scoped by its id.
//! Calls nest at most [`MAX_CALL_DEPTH`] deep on a thread, and the called plugin sees the
//! calling one as its caller.

use airlock_abi::abi::{HostError, HostErrorCode};
use airlock_abi::manifest::CapabilityKind;
use airlock_abi::wire::{self, CallerInfo, Request};

use super::row::{json, row, Grant};
use super::{bad_request, host_error};
use crate::error::CallErrorCode;
use crate::frame::{self, Frame, Stream};
use crate::services::registry::{BuiltIn, Requester};

/// How deeply plugin-to-plugin calls may nest on one thread. Deeper calls are refused with
/// `too_deep`: a cycle through parallel plugins would otherwise recurse until the stack
/// overflows and the host dies.
pub const MAX_CALL_DEPTH: u32 = 8;

/// One row per operation.
pub(super) fn rows() -> Vec<Box<dyn BuiltIn>> {
    vec![row(
        Request::PluginsCall,
        Grant::Scoped {
            kind: CapabilityKind::PluginsCall,
            what: "plugin id",
            scope: |req: &wire::Call| &req.plugin,
        },
        call,
    )]
}

/// `plugins call`: the other plugin's [`wire::Envelope`]; an infrastructure failure is the
/// call's error code. The call is made in one frame: the calling plugin is its caller, it counts
/// against the depth bound, and it emits into no stream of the calling one's.
fn call(
    r: &dyn Requester,
    req: wire::Call,
) -> Result<wire::Envelope<serde_json::Value>, HostError> {
    if req.plugin == r.plugin().as_str() {
        return Err(bad_request("a plugin cannot call itself through the host"));
    }
    let input = json(&req.input)?;
    let called = as_plugin_call(r, &req.plugin, || {
        r.host().call_plugin(&req.plugin, &req.action, &input)
    })?;
    match called {
        Ok(wire::Envelope::Ok(bytes)) => Ok(wire::Envelope::Ok(
            wire::parse(&bytes).unwrap_or(serde_json::Value::Null),
        )),
        Ok(wire::Envelope::Error(message)) => Ok(wire::Envelope::Error(message)),
        Err(e) => Err(host_error(
            HostErrorCode::call_failed(e.code),
            "",
            &e.message,
        )),
    }
}

/// Runs `call` as a call made by the requesting plugin (to `what`, for the message): refused
/// `too_deep` past [`MAX_CALL_DEPTH`], else in a frame whose caller is the plugin.
pub(super) fn as_plugin_call<R>(
    r: &dyn Requester,
    what: &str,
    call: impl FnOnce() -> R,
) -> Result<R, HostError> {
    if frame::plugin_calls() >= MAX_CALL_DEPTH {
        return Err(host_error(
            HostErrorCode::call_failed(CallErrorCode::TooDeep),
            "",
            &format!(
                "plugin calls nest more than {MAX_CALL_DEPTH} deep on this thread (a call \
                 cycle?); {} -> {what} was refused",
                r.plugin()
            ),
        ));
    }
    let _frame = frame::enter(Frame {
        caller: Some(CallerInfo::Plugin {
            id: r.plugin().to_string(),
            generation: r.generation(),
        }),
        stream: Stream::Hidden,
        plugin_call: true,
        ..Frame::default()
    });
    Ok(call())
}
