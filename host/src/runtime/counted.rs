//! The counted entry of an action call ([`HostShared::call_index`]): the call's begin and its
//! answer counted in the calling thread's own line, one call in
//! [`TIME_ONE_IN`] on each thread timed, and any other outcome counted by its code (see
//! `crate::observe`).

use std::time::Instant;

use super::called::Called;
use super::plugin::LoadedPlugin;
use super::shared::HostShared;
use crate::observe::meter::{Begun, TIME_ONE_IN};
use crate::sync::hazard::ThreadRecord;

impl HostShared {
    /// Calls the action at `index` of a plugin already looked up, leaving the answer or the
    /// failure's message in `out`; counts the call as it begins and how it ended. One call in
    /// [`TIME_ONE_IN`](crate::observe::meter::TIME_ONE_IN) on each thread is timed
    /// ([`HostShared::call_timed`]); the others read no clock.
    #[inline(always)]
    pub(crate) fn call_index(
        &self,
        record: Option<&'static ThreadRecord>,
        loaded: &LoadedPlugin,
        index: usize,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Called {
        let begun = loaded.counters.calls.begun(record, index);
        if record.is_none_or(|r| r.time_this_call(TIME_ONE_IN)) {
            return self.call_timed(begun, record, loaded, index, input, out);
        }
        let called = self.call_checked(record, loaded, index, input, out);
        self.ended(begun, loaded, index, called)
    }

    /// [`HostShared::call_index`] for a call it times (and for a thread without a record).
    #[cold]
    #[inline(never)]
    fn call_timed(
        &self,
        begun: Begun<'_>,
        record: Option<&'static ThreadRecord>,
        loaded: &LoadedPlugin,
        index: usize,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Called {
        let began = Instant::now();
        let called = self.call_checked(record, loaded, index, input, out);
        loaded.counters.calls.timed(index, began.elapsed());
        self.ended(begun, loaded, index, called)
    }

    /// Counts how a call ended: an answer in the begin's own cell, anything else by its code.
    #[inline(always)]
    fn ended(
        &self,
        begun: Begun<'_>,
        loaded: &LoadedPlugin,
        index: usize,
        called: Called,
    ) -> Called {
        if called == Called::Answered {
            begun.answered();
        } else {
            self.unanswered(loaded, index, called);
        }
        called
    }

    /// Counts a call that ended otherwise than answered, by its outcome.
    #[cold]
    fn unanswered(&self, loaded: &LoadedPlugin, index: usize, called: Called) {
        let action = loaded.action_name(index);
        let outcome = match called {
            Called::Answered => "ok",
            Called::Domain => "error",
            Called::Retryable => "retryable",
            Called::Pending => "pending_approval",
            Called::Deferred => "pending",
            Called::Failed(code) => code.code(),
        };
        self.tally.outcome(loaded.id().as_str(), action, outcome);
    }
}
