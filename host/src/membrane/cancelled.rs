//! `context cancelled`: whether the call a plugin is serving is cancelled, which `ctx.cancelled()`
//! asks and `stream emit` checks while it waits for room.

use crate::membrane::context::ContextEntry;

/// Whether the call `entry`'s plugin is serving on this thread is cancelled: its caller's token
/// (or an outer call's), the plugin being torn down, or the watchdog reporting it past its
/// timeout. A call told so is marked, and ends `cancelled` once it stops (within its grace).
pub(crate) fn cancelled(entry: &ContextEntry) -> bool {
    let record = crate::sync::hazard::this_thread();
    let reported = record.is_some_and(|record| record.innermost_call_reported());
    let cancelled = reported
        || crate::frame::cancel::current()
        || entry.closing.load(std::sync::atomic::Ordering::SeqCst);
    if cancelled && !reported {
        if let Some(record) = record {
            record.cancel_innermost_call();
        }
    }
    cancelled
}
