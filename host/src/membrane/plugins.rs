//! The `plugins` service's operation: calling an action of another plugin, scoped by its id.
//! Calls nest at most [`MAX_CALL_DEPTH`] deep on a thread, and the called plugin sees the
//! calling one as its caller.

use std::cell::Cell;

use airlock_abi::abi::{HostError, HostErrorCode};
use airlock_abi::manifest::CapabilityKind;
use airlock_abi::wire::{self, CallerInfo, Request};

use super::row::{json, row, Grant};
use super::{bad_request, host_error};
use crate::error::CallErrorCode;
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

/// `plugins call`: the result envelope, `{"status": "ok", "data": ..}` or
/// `{"status": "error", "data": message}`; an infrastructure failure is the call's error code.
fn call(r: &dyn Requester, req: wire::Call) -> Result<serde_json::Value, HostError> {
    if req.plugin == r.plugin().as_str() {
        return Err(bad_request("a plugin cannot call itself through the host"));
    }
    let input = json(&req.input)?;
    let Some(_depth) = CallDepth::enter() else {
        return Err(host_error(
            HostErrorCode::call_failed(CallErrorCode::TooDeep),
            "",
            &format!(
                "plugin calls nest more than {MAX_CALL_DEPTH} deep on this thread (a call \
                 cycle?); {} -> {} was refused",
                r.plugin(),
                req.plugin
            ),
        ));
    };
    let _calling = crate::call::caller::push(CallerInfo::Plugin {
        id: r.plugin().to_string(),
        generation: r.generation(),
    });
    let _unstreamed = crate::call::stream::hide();
    match r.host().call_plugin(&req.plugin, &req.action, &input) {
        Ok(Ok(bytes)) => {
            let data: serde_json::Value = wire::parse(&bytes).unwrap_or(serde_json::Value::Null);
            Ok(serde_json::json!({"status": "ok", "data": data}))
        }
        Ok(Err(message)) => Ok(serde_json::json!({"status": "error", "data": message})),
        Err(e) => Err(host_error(
            HostErrorCode::call_failed(e.code),
            "",
            &e.message,
        )),
    }
}

thread_local! {
    /// How many plugin-to-plugin calls are in progress on this thread.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// One plugin-to-plugin call in progress on this thread, until dropped.
struct CallDepth;

impl CallDepth {
    /// `None` when [`MAX_CALL_DEPTH`] calls are already in progress on this thread.
    fn enter() -> Option<Self> {
        let depth = DEPTH.with(Cell::get);
        if depth >= MAX_CALL_DEPTH {
            return None;
        }
        DEPTH.with(|d| d.set(depth + 1));
        Some(Self)
    }
}

impl Drop for CallDepth {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}
