//! The state a call carries on its thread while it runs, in one per-thread stack of frames:
//! each call that changes something for itself and for the calls it makes pushes one
//! [`Frame`] — who is calling ([`caller`]), which token cancels it ([`cancel`]), where its
//! chunks go ([`stream`]), whether it is a plugin calling another (bounded in depth), whether
//! an approver let it run — and pops it when it ends. What is not set in a frame is the outer
//! call's: a plugin calling another passes its cancellation on, and the host calling from
//! inside a call names itself the caller of the calls it makes.

pub(crate) mod caller;
pub(crate) mod cancel;
pub(crate) mod stream;
pub(crate) mod trace;

use std::cell::{Cell, RefCell};

use airlock_abi::wire::CallerInfo;

use cancel::CancelToken;
use stream::Sink;

/// What one call changes for itself and for the calls it makes, pushed once when it starts.
#[derive(Default)]
pub(crate) struct Frame {
    /// Who asked for the call (`None`: the outer call's caller).
    pub(crate) caller: Option<CallerInfo>,
    /// The token that cancels it (any outer call's token cancels it too).
    pub(crate) cancel: Option<CancelToken>,
    /// Where the chunks the plugin emits go.
    pub(crate) stream: Stream,
    /// A plugin calling another: counted against the membrane's bound on how deep such calls nest.
    pub(crate) plugin_call: bool,
    /// Set for the call an approver let run: the `ask` it meets is answered, once.
    pub(crate) approved: Cell<bool>,
}

/// Where the chunks of a call go.
#[derive(Default)]
pub(crate) enum Stream {
    /// Where the outer call's go.
    #[default]
    Inherit,
    /// Nowhere: a plugin called from inside a streamed call does not emit into its stream.
    Hidden,
    /// To the caller of a streamed call.
    To(Sink),
}

impl Frame {
    /// A frame that only names the caller.
    pub(crate) fn caller(caller: CallerInfo) -> Self {
        Self {
            caller: Some(caller),
            ..Self::default()
        }
    }
}

thread_local! {
    static FRAMES: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
}

/// The frame of a call in progress on this thread, popped when dropped.
#[must_use = "the frame is popped when this is dropped"]
pub(crate) struct Entered(());

impl Drop for Entered {
    fn drop(&mut self) {
        let _ = FRAMES.try_with(|f| f.borrow_mut().pop());
    }
}

/// Pushes `frame` for the call about to be made on this thread, until the guard is dropped.
pub(crate) fn enter(frame: Frame) -> Entered {
    let _ = FRAMES.try_with(|f| f.borrow_mut().push(frame));
    Entered(())
}

/// Reads this thread's frames, outermost first (none on a thread being torn down).
fn read<R: Default>(read: impl FnOnce(&[Frame]) -> R) -> R {
    FRAMES.try_with(|f| read(&f.borrow())).unwrap_or_default()
}

/// Whether this thread is inside a call made through a frame.
pub(crate) fn in_call() -> bool {
    read(|frames| !frames.is_empty())
}

/// How many plugin-to-plugin calls are in progress on this thread.
pub(crate) fn plugin_calls() -> u32 {
    read(|frames| frames.iter().filter(|f| f.plugin_call).count())
        .try_into()
        .unwrap_or(u32::MAX)
}

/// Whether an approver let the call this thread is making run; answered once, so that the
/// approval can never reach a call this one makes.
pub(crate) fn take_approval() -> bool {
    read(|frames| frames.iter().rev().any(|f| f.approved.replace(false)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_counts_plugin_calls_and_an_approval_answers_once() {
        assert_eq!(plugin_calls(), 0);
        assert!(!in_call());
        let outer = enter(Frame {
            approved: Cell::new(true),
            ..Frame::default()
        });
        let inner = enter(Frame {
            plugin_call: true,
            ..Frame::default()
        });
        assert!(in_call());
        assert_eq!(plugin_calls(), 1);
        assert!(take_approval());
        assert!(!take_approval(), "an approval answers one ask");
        drop(inner);
        drop(outer);
        assert_eq!(plugin_calls(), 0);
        assert!(!in_call());
    }
}
