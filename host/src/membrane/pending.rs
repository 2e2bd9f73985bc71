//! `pending resolve`: a plugin settles one of its own deferred answers, named by the key it
//! answered pending with. No capability: the key is looked up only among the requesting
//! plugin's entries, so no bytes of it reach another plugin's.

use airlock_abi::abi::{HostError, HostErrorCode};
use airlock_abi::wire::{CallErrorCode, Request, Resolution};

use super::host_error;
use super::row::{row, Grant};
use crate::services::pending::PendingError;
use crate::services::registry::{BuiltIn, Requester};

/// One row per operation.
pub(super) fn rows() -> Vec<Box<dyn BuiltIn>> {
    vec![row(Request::PendingResolve, Grant::Free, resolve)]
}

/// Not found (in this plugin's own entries), no longer open, over a bound, or the store failed:
/// each with a code the plugin can tell apart.
fn resolve(r: &dyn Requester, resolution: Resolution) -> Result<bool, HostError> {
    let resolved = r
        .host()
        .resolve_pending(r.plugin(), &resolution.key, resolution.outcome);
    match resolved {
        Ok(()) => Ok(true),
        Err(e) => {
            let code = match e {
                PendingError::NotFound(_) => HostErrorCode::call_failed(CallErrorCode::NotFound),
                PendingError::Resolved(_) | PendingError::Expired(_) => {
                    HostErrorCode::call_failed(CallErrorCode::Pending)
                }
                PendingError::Refused(_) => HostErrorCode::BAD_REQUEST,
                _ => HostErrorCode::SERVICE_FAILED,
            };
            Err(host_error(code, "", &e.to_string()))
        }
    }
}
