//! `stream emit`: a chunk of the call a plugin is serving, handed to its caller when the call
//! is taken as a stream ([`crate::frame::stream`]).

use airlock_abi::abi::{HostError, HostErrorCode};
use airlock_abi::wire::Request;

use super::row::{raw, Grant};
use super::{bad_request, host_error};
use crate::error::CallErrorCode;
use crate::services::registry::{BuiltIn, Requester};

/// One row per operation: its payload is a kind byte and the chunk; no capability.
pub(super) fn rows() -> Vec<Box<dyn BuiltIn>> {
    vec![raw(Request::StreamEmit, Grant::Free, serve)]
}

/// `stream emit`: a chunk of the call being served, to its caller if it takes a stream.
fn serve(r: &dyn Requester, payload: &[u8]) -> Result<Vec<u8>, HostError> {
    use crate::frame::stream::{self, Emitted, MAX_CHUNK};
    let Some((&tag, chunk)) = payload.split_first() else {
        return Err(bad_request("a stream chunk needs its kind byte"));
    };
    if chunk.len() > MAX_CHUNK {
        return Err(bad_request(format!(
            "a stream chunk of {} bytes is over the {MAX_CHUNK}-byte limit",
            chunk.len()
        )));
    }
    let json = match tag {
        airlock_abi::wire::CHUNK_JSON => {
            stream::is_json(chunk)
                .map_err(|e| bad_request(format!("a stream chunk is not JSON: {e}")))?;
            true
        }
        airlock_abi::wire::CHUNK_BYTES => false,
        other => return Err(bad_request(format!("unknown stream chunk kind {other}"))),
    };
    // While it waits for room, the call may be cancelled for other reasons than its caller's.
    let cancelled = || super::cancelled::cancelled(r);
    match stream::emit(r.plugin(), json, chunk.to_vec(), cancelled) {
        Emitted::Sent => Ok(b"true".to_vec()),
        Emitted::Discarded => Ok(b"false".to_vec()),
        Emitted::Cancelled => {
            // The call ends `cancelled` once it stops.
            if let Some(record) = crate::sync::hazard::this_thread() {
                record.cancel_innermost_call();
            }
            Err(host_error(
                HostErrorCode::call_failed(CallErrorCode::Cancelled),
                "",
                "the call was cancelled (by its caller, at its timeout, or as its plugin is torn down)",
            ))
        }
    }
}
