//! `context cancelled`: whether the call a plugin is serving is cancelled, which `ctx.cancelled()`
//! asks and `stream emit` checks while it waits for room.

use crate::services::registry::Requester;

/// Whether the call the requesting plugin is serving on this thread is cancelled: its caller's
/// token (or an outer call's), the plugin being torn down, or the watchdog reporting it past
/// its timeout. A call told so is marked, and ends `cancelled` once it stops (within its grace).
pub(super) fn cancelled(requester: &dyn Requester) -> bool {
    let record = crate::sync::hazard::this_thread();
    let reported = record.is_some_and(|record| record.innermost_call_reported());
    let cancelled = reported || crate::frame::cancel::current() || requester.closing();
    if cancelled && !reported {
        if let Some(record) = record {
            record.cancel_innermost_call();
        }
    }
    cancelled
}
