//! What the event bus and the timer service need from the runtime, and nothing more: deliver
//! an event or a timer run to the instance a context token names. They hold a `Weak` of it and
//! never name the runtime. Also which threads are the host's service threads (the event
//! dispatcher, the timer thread, the health poller): one of them waits for a busy `serial`
//! plugin only briefly, so that one busy plugin never holds up the others.

use std::cell::Cell;

use airlock_abi::abi::{ContextToken, InvocationKind};

/// What became of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivered {
    /// It ran, failed, or was for an instance no longer running: nothing more to do.
    Done,
    /// The plugin is `serial` and stayed busy for as long as a service thread waits: it did
    /// not run, and may be tried again.
    Busy,
}

/// Delivers an event or timer run to the plugin instance whose context is `token`; does
/// nothing if that instance is no longer the running one.
pub(crate) trait Deliver: Send + Sync {
    fn deliver(
        &self,
        token: ContextToken,
        kind: InvocationKind,
        name: &str,
        payload: &[u8],
    ) -> Delivered;
}

thread_local! {
    static SERVICE_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Marks the calling thread as one of the host's service threads.
pub(crate) fn serve_on_this_thread() {
    SERVICE_THREAD.set(true);
}

/// Whether the calling thread is one of the host's service threads.
pub(crate) fn on_service_thread() -> bool {
    SERVICE_THREAD.get()
}

thread_local! {
    static RETRYING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` as a service thread's second try of what a busy plugin could not take: its gate is
/// tried without waiting, so plugins that stay busy cost the other plugins nothing each time.
pub(crate) fn retrying<R>(f: impl FnOnce() -> R) -> R {
    RETRYING.set(true);
    let result = f();
    RETRYING.set(false);
    result
}

/// Whether the calling service thread is trying again ([`retrying`]).
pub(crate) fn is_retrying() -> bool {
    RETRYING.get()
}
