//! The watchdog's view of calls in progress. A call into a plugin reads the plugin's running
//! instance through a hazard slot marked as a call ([`hazard::Guarded::with_call`]); that
//! publication is the whole record of the call: the slot's depth is its nesting level, the
//! slot's end count its number (never shared with another read of that slot), and the address
//! it names the instance it runs on. The call path writes nothing else and never reads the
//! clock. The watchdog thread of each host scans the records, matches the addresses against its
//! plugins' running instances, and times each call from the scan that first saw it, so a call
//! is never reported early, and late by at most one scan interval. Native code cannot be
//! pre-empted: a call past its timeout is reported — the plugin sees `ctx.cancelled()` turn
//! true — and one still running after a grace is settled as a fault, not stopped. A call that
//! returns within the grace settles itself as cancelled: whichever of the two settles a call
//! first ([`CallSlot::settle`]) decides its outcome, once.
//!
//! A scan never pairs one call's number with another call's instance: it reads the end count,
//! the pointer, fences, and reads the end count again, and a later call's publication is a
//! release store made after the count moved ([`ThreadRecord::call_at`]). A report names the
//! call it is about (its number, at its level), so an inner call can never pick up the report
//! of the call around it, nor a later call the report of an earlier one. A scan acts on what it
//! saw a moment ago, so it checks the call is still in its slot with that number just before it
//! reports or settles it ([`report`], [`settle`]), and the marks only move forward: a report or
//! settling that still comes late (the call ended in between) never touches a later call's.
//! `scripts/loom.sh` model-checks this pairing and the late report with the hazard pointers'
//! own models.

use std::time::{Duration, Instant};

use super::hazard::{self, ThreadRecord, DEPTH};
use super::primitives::{AtomicU64, Ordering};

/// A call a watchdog saw in a slot: its number, when it was first seen, its timeout.
type Seen = (u64, Option<Instant>, Option<Duration>);

/// What the watchdogs saw and reported of one thread's calls, per hazard slot.
///
/// `reported` and `settled` hold a call's number + 1 (0: none yet) and only move forward
/// (`fetch_max`): a call's number is its slot's end count, which only grows, so a report or a
/// settling that comes late — about a call that has ended since the scan saw it — never
/// replaces the mark of a later call in the same slot.
#[derive(Debug)]
pub(crate) struct CallSlot {
    /// Per slot: the number + 1 of the last call a watchdog reported there (or its own thread
    /// marked cancelled).
    reported: [AtomicU64; DEPTH],
    /// Per slot: the number + 1 of the last call whose overrun was settled, by the watchdog (a
    /// fault) or by the call returning (cancelled).
    settled: [AtomicU64; DEPTH],
    /// Per slot: the call a watchdog saw there, when it first saw it, and its timeout (unknown
    /// when the call's own thread marked it first, see [`CallSlot::timed_from`]).
    seen: parking_lot::Mutex<[Seen; DEPTH]>,
}

impl Default for CallSlot {
    fn default() -> Self {
        Self {
            reported: std::array::from_fn(|_| AtomicU64::new(0)),
            settled: std::array::from_fn(|_| AtomicU64::new(0)),
            seen: parking_lot::Mutex::new([(0, None, None); DEPTH]),
        }
    }
}

impl CallSlot {
    /// Marks call `number` in slot `depth` reported; true the first time (for that call). A
    /// report of a call older than the slot's last mark changes nothing.
    pub(crate) fn report(&self, depth: usize, number: u64) -> bool {
        let mark = number.wrapping_add(1);
        self.reported[depth].fetch_max(mark, Ordering::AcqRel) < mark
    }

    /// Settles the overrun of call `number` in slot `depth`: true for the first to ask (the
    /// watchdog counting a fault, or the call ending cancelled), false for the other, and false
    /// for a call older than the last one settled there.
    pub(crate) fn settle(&self, depth: usize, number: u64) -> bool {
        let mark = number.wrapping_add(1);
        self.settled[depth].fetch_max(mark, Ordering::AcqRel) < mark
    }

    /// Whether a watchdog reported call `number` in slot `depth` as overrunning.
    #[inline(always)]
    pub(crate) fn was_reported(&self, depth: usize, number: u64) -> bool {
        self.reported[depth].load(Ordering::Acquire) == number.wrapping_add(1)
    }

    /// Forgets what the watchdogs saw (the thread that owned the record has exited; the end
    /// counts, and so the call numbers, carry on).
    pub(crate) fn reset(&self) {
        *self.seen.lock() = [(0, None, None); DEPTH];
    }

    /// When a watchdog first saw call `number` in slot `depth` (now, if this is the first time),
    /// remembering its timeout.
    fn first_seen(&self, depth: usize, number: u64, now: Instant, limit: Duration) -> Instant {
        let mut seen = self.seen.lock();
        match &mut seen[depth] {
            (seen, Some(at), known) if *seen == number => {
                *known = Some(limit);
                *at
            }
            other => {
                *other = (number, Some(now), Some(limit));
                now
            }
        }
    }

    /// When call `number` in slot `depth` is timed from, and its timeout if a watchdog saw it
    /// already; for the call's own thread (a call nested in it waiting for a serial gate reads
    /// what is left of it). A call no watchdog saw yet is timed from `now`, the instant the
    /// next scan would have chosen within one interval: watchdog and thread agree on it.
    pub(crate) fn timed_from(
        &self,
        depth: usize,
        number: u64,
        now: Instant,
    ) -> (Instant, Option<Duration>) {
        let mut seen = self.seen.lock();
        match &mut seen[depth] {
            (seen, Some(at), limit) if *seen == number => (*at, *limit),
            other => {
                *other = (number, Some(now), None);
                (now, None)
            }
        }
    }
}

/// Reports every call in progress on a value at an address `deadline` knows (`None`: not one of
/// the caller's plugins' running instances; otherwise its timeout and grace) that has run
/// longer than its timeout, and calls `fault` once for each that has also run through its grace
/// without settling itself, as far as the scans can tell.
pub(crate) fn scan(
    deadline: impl Fn(usize) -> Option<(Duration, Duration)>,
    mut fault: impl FnMut(usize, Duration),
) {
    let now = Instant::now();
    hazard::each_record(|record: &'static ThreadRecord| {
        let slot = &record.watch;
        for depth in 0..DEPTH {
            let Some(call) = record.call_at(depth) else {
                continue;
            };
            let Some((limit, grace)) = deadline(call.0) else {
                continue;
            };
            let running = now.duration_since(slot.first_seen(depth, call.1, now, limit));
            if running > limit {
                report(record, depth, call);
            }
            if running > limit.saturating_add(grace) && settle(record, depth, call) {
                fault(call.0, running);
            }
        }
    });
}

/// Reports `call` (address and number, as a scan saw it in slot `depth` of `record`) if it is
/// still the call there: a call that ended since the scan saw it is not reported.
pub(crate) fn report(record: &ThreadRecord, depth: usize, call: (usize, u64)) -> bool {
    record.call_at(depth) == Some(call) && record.watch.report(depth, call.1)
}

/// Settles `call` as a fault if it is still the call in slot `depth` of `record` and nothing
/// settled it yet; true if this did.
pub(crate) fn settle(record: &ThreadRecord, depth: usize, call: (usize, u64)) -> bool {
    record.call_at(depth) == Some(call) && record.watch.settle(depth, call.1)
}
