//! The rows that reach the host as a whole: `plugins list` (capability `plugins.list`),
//! `plugins dispatch` (`dispatch:<kind>`), `hooks run` (`hooks.run:<name>`) and `host shutdown`
//! (`host.control`). A dispatch and a hook run are calls made by the plugin, like
//! `plugins call`: in one frame whose caller is the plugin, counted against
//! [`MAX_CALL_DEPTH`], and subject to the serial plugins' reentrancy rules.

use airlock_abi::abi::{HostError, HostErrorCode};
use airlock_abi::manifest::CapabilityKind;
use airlock_abi::wire::{self, Request};

use super::plugins::as_plugin_call;
use super::row::{json, row, Grant, NoBody};
use super::{bad_request, host_error};
use crate::error::CallErrorCode;
use crate::services::peers::{Asker, HookRunError, Peers};
use crate::services::registry::{BuiltIn, Requester};

/// The longest reason a plugin may give for asking the program to shut down.
const MAX_REASON: usize = 1024;

/// One row per operation.
pub(super) fn rows() -> Vec<Box<dyn BuiltIn>> {
    vec![
        row(
            Request::PluginsList,
            Grant::Unscoped(CapabilityKind::PluginsList),
            list,
        ),
        row(
            Request::PluginsDispatch,
            Grant::Scoped {
                kind: CapabilityKind::Dispatch,
                what: "claimed kind",
                scope: |req: &wire::Dispatch| &req.kind,
            },
            dispatch,
        ),
        row(
            Request::HooksRun,
            Grant::Scoped {
                kind: CapabilityKind::HooksRun,
                what: "hook name",
                scope: |req: &wire::HookRun| &req.hook,
            },
            run_hook,
        ),
        row(
            Request::HostShutdown,
            Grant::Unscoped(CapabilityKind::HostControl),
            shutdown,
        ),
    ]
}

/// The host as a whole, or `unsupported` before the host is built.
fn peers(r: &dyn Requester) -> Result<&dyn Peers, HostError> {
    r.host().peers().ok_or_else(|| {
        host_error(
            HostErrorCode::UNSUPPORTED,
            "",
            "the host is not built yet: no plugin list, dispatch, hook or shutdown request",
        )
    })
}

fn asker(r: &dyn Requester) -> Asker<'_> {
    Asker {
        id: r.plugin(),
        generation: r.generation(),
    }
}

/// `plugins list`: every plugin of the host's table, whatever its state.
fn list(r: &dyn Requester, _: NoBody) -> Result<Vec<wire::PeerInfo>, HostError> {
    Ok(peers(r)?.list())
}

/// `plugins dispatch`: the holder's answer with how many attempts it took; a failure other than
/// a retryable answer is the call's error code.
fn dispatch(r: &dyn Requester, req: wire::Dispatch) -> Result<wire::Dispatched, HostError> {
    let peers = peers(r)?;
    if peers.holder(&req.kind).as_deref() == Some(r.plugin().as_str()) {
        return Err(bad_request(format!(
            "{} holds {:?} itself: a plugin cannot dispatch to itself through the host",
            r.plugin(),
            req.kind
        )));
    }
    let input = json(&req.input)?;
    let what = format!("the holder of {:?}", req.kind);
    as_plugin_call(r, &what, || peers.dispatch(asker(r), &req.kind, &input))?
        .map_err(|e| host_error(HostErrorCode::call_failed(e.code), "", &e.message))
}

/// `hooks run`: the hook's outcome in its mode; a hook the program did not define is
/// `not_found`.
fn run_hook(r: &dyn Requester, req: wire::HookRun) -> Result<wire::HookRunOutcome, HostError> {
    let peers = peers(r)?;
    let what = format!("hook {:?}", req.hook);
    let hook = req.hook;
    as_plugin_call(r, &what, || peers.run_hook(asker(r), &hook, req.input))?.map_err(|e| match e {
        HookRunError::Undefined(message) => host_error(
            HostErrorCode::call_failed(CallErrorCode::NotFound),
            "",
            &message,
        ),
        HookRunError::BadInput(message) => bad_request(message),
    })
}

/// `host shutdown`: the request handed to the program (and audited).
fn shutdown(r: &dyn Requester, req: wire::Shutdown) -> Result<(), HostError> {
    // No control characters, and none of the marks that reorder text: the program shows it.
    let unprintable = crate::services::printable::escaped;
    if req.reason.chars().count() > MAX_REASON || req.reason.chars().any(unprintable) {
        return Err(bad_request(format!(
            "the reason for a shutdown request must be at most {MAX_REASON} printable characters"
        )));
    }
    peers(r)?.request_shutdown(asker(r), &req.reason);
    Ok(())
}
