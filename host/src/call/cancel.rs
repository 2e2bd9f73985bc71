//! Cancelling calls: a [`CancelToken`] the caller holds, and the token of the call a thread is
//! serving, which the plugin polls with `ctx.cancelled()`. A call made with a token
//! ([`crate::Host::call_cancellable`]) pushes it for its duration; a plugin calling another on
//! the same thread passes it on, since the inner call sees the same thread's token.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A switch a caller flips to cancel the calls made with it (from any thread); the plugin
/// sees `ctx.cancelled()` turn true and should return early.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token not cancelled yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels the calls made with this token (those running, and any made later).
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether it was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

thread_local! {
    static TOKENS: RefCell<Vec<CancelToken>> = const { RefCell::new(Vec::new()) };
}

/// The token of the calls this thread makes while this lives.
#[must_use = "the token is popped when this is dropped"]
pub(crate) struct Watching(());

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = TOKENS.try_with(|t| t.borrow_mut().pop());
    }
}

/// Makes `token` the token of the calls this thread makes until the guard is dropped.
pub(crate) fn push(token: CancelToken) -> Watching {
    let _ = TOKENS.try_with(|t| t.borrow_mut().push(token));
    Watching(())
}

/// Whether a token of the calls this thread is inside was cancelled (an outer call's
/// cancellation reaches the calls it made).
pub(crate) fn current() -> bool {
    TOKENS
        .try_with(|t| t.borrow().iter().any(CancelToken::is_cancelled))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outer_cancellation_reaches_the_inner_calls_and_ends_with_them() {
        assert!(!current());
        let outer = CancelToken::new();
        let watching = push(outer.clone());
        let inner = push(CancelToken::new());
        assert!(!current());
        outer.cancel();
        assert!(
            current(),
            "the inner call sees the outer one's cancellation"
        );
        drop(inner);
        drop(watching);
        assert!(!current(), "nothing is cancelled outside the calls");
    }
}
