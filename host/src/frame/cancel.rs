//! Cancelling calls: a [`CancelToken`] the caller holds, and the token of the call a thread is
//! serving, which the plugin polls with `ctx.cancelled()`. A call made with a token
//! (`host.call(..).cancel_on(&token)`) carries it in its frame; a plugin calling another on
//! the same thread passes it on, since the inner call sees every outer frame's token.

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

/// Whether a token of the calls this thread is inside was cancelled (an outer call's
/// cancellation reaches the calls it made).
pub(crate) fn current() -> bool {
    super::read(|frames| {
        frames
            .iter()
            .any(|f| f.cancel.as_ref().is_some_and(CancelToken::is_cancelled))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(token: CancelToken) -> crate::frame::Entered {
        crate::frame::enter(crate::frame::Frame {
            cancel: Some(token),
            ..crate::frame::Frame::default()
        })
    }

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
