//! Call spans across threads. Every call into a plugin runs in a `tracing` span of its own
//! (named [`CALL_SPAN`], target [`TARGET`], level DEBUG; made by the invoke path), and a
//! call's parent is the span current on the thread that makes it: a plugin calling another
//! nests by itself. Where part of a call is handed to another thread (the async API's call
//! threads, a streamed call's thread, an event's delivery), the span current where it was
//! handed over is [`carried`] along and entered there, so the tree stays whole.
//!
//! With no subscriber, or one that wants nothing at DEBUG, [`on`] is one relaxed load and
//! nothing else is done: no span is built, no clock is read.

use tracing::level_filters::{LevelFilter, STATIC_MAX_LEVEL};
use tracing::Span;

/// The target of the host's call spans and of the requests an isolated plugin's worker
/// sends back, at level DEBUG: what a subscriber's filter names (`airlock::call=debug`).
pub const TARGET: &str = "airlock::call";

/// The name of the span of one call into a plugin.
pub const CALL_SPAN: &str = "airlock.call";

/// The name of the span of one request an isolated plugin's worker sends to the host while a
/// call runs (kv, events, a call to another plugin...), a child of that call's span.
pub const REQUEST_SPAN: &str = "airlock.request";

/// Whether any subscriber may want spans at DEBUG: one relaxed load of `tracing`'s global
/// level, so that a host without one pays nothing else per call.
#[inline(always)]
pub(crate) fn on() -> bool {
    STATIC_MAX_LEVEL >= LevelFilter::DEBUG && LevelFilter::current() >= LevelFilter::DEBUG
}

/// The span current on this thread, to be entered on the thread a part of this call is handed
/// to; none when no subscriber wants call spans.
#[inline]
pub(crate) fn carried() -> Span {
    if on() {
        Span::current()
    } else {
        Span::none()
    }
}
