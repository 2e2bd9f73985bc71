//! The watchdog's view of calls in progress. Each thread that calls into a plugin publishes
//! which plugin, and a sequence number for the call, in its own thread record (plain stores to
//! a line no other thread writes); the call path never reads the clock. The watchdog thread of
//! each host scans the records and times each call from the scan that first saw it, so a call
//! is never reported early, and late by at most one scan interval. Native code cannot be
//! pre-empted: an overrunning call is reported and counted as a fault, not stopped.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::loader::hazard::{self, ThreadRecord};

/// How many nested calls of one thread the watchdogs remember.
const MEMORY: usize = 16;

/// One thread's call in progress, in its thread record.
#[derive(Debug, Default)]
pub(crate) struct CallSlot {
    key: AtomicUsize,
    /// The call's number on this thread; 0 when no call is in progress.
    seq: AtomicU64,
    /// The last number handed out on this thread (written by the owner only).
    last: AtomicU64,
    reported: AtomicBool,
    /// The watchdogs' memory of when they first saw each call still in progress, outermost
    /// first (calls nest when plugins call plugins).
    seen: Mutex<Vec<(u64, Instant)>>,
}

impl CallSlot {
    /// Forgets everything (the thread that owned the record has exited).
    pub(crate) fn reset(&self) {
        self.seq.store(0, Ordering::Release);
        self.key.store(0, Ordering::Relaxed);
        self.reported.store(false, Ordering::Relaxed);
        self.seen.lock().clear();
    }

    /// When a watchdog first saw call `seq` (now, if this is the first time).
    fn first_seen(&self, seq: u64, now: Instant) -> Instant {
        let mut seen = self.seen.lock();
        // Numbers grow on a thread: entries above `seq` were nested calls that have ended.
        while seen.last().is_some_and(|(s, _)| *s > seq) {
            seen.pop();
        }
        match seen.last() {
            Some((s, at)) if *s == seq => *at,
            _ => {
                // Calls below `seq` may have ended too; keep the memory bounded.
                if seen.len() >= MEMORY {
                    seen.remove(0);
                }
                seen.push((seq, now));
                now
            }
        }
    }
}

/// Marks a call in progress on this thread until dropped; restores an outer call's record
/// (plugin-to-plugin calls nest).
pub(crate) struct Watch {
    record: Option<&'static ThreadRecord>,
    previous: (usize, u64, bool),
}

impl Watch {
    /// Publishes a call into the plugin identified by `key`.
    #[inline]
    pub(crate) fn enter(key: usize) -> Self {
        let record = hazard::this_thread();
        let mut previous = (0, 0, false);
        if let Some(slot) = record.map(|r| &r.watch) {
            previous = (
                slot.key.load(Ordering::Relaxed),
                slot.seq.load(Ordering::Relaxed),
                slot.reported.load(Ordering::Relaxed),
            );
            let seq = slot.last.load(Ordering::Relaxed) + 1;
            slot.last.store(seq, Ordering::Relaxed);
            slot.reported.store(false, Ordering::Relaxed);
            slot.key.store(key, Ordering::Relaxed);
            slot.seq.store(seq, Ordering::Release);
        }
        Self { record, previous }
    }

    /// Whether the watchdog already reported this call as overrunning.
    #[inline]
    pub(crate) fn reported(&self) -> bool {
        self.record
            .is_some_and(|r| r.watch.reported.load(Ordering::Acquire))
    }
}

impl Drop for Watch {
    #[inline]
    fn drop(&mut self) {
        let Some(slot) = self.record.map(|r| &r.watch) else {
            return;
        };
        let (key, seq, reported) = self.previous;
        slot.seq.store(0, Ordering::Release);
        slot.key.store(key, Ordering::Relaxed);
        slot.reported.store(reported, Ordering::Relaxed);
        slot.seq.store(seq, Ordering::Release);
    }
}

/// Calls `report` once for every call in progress that has run longer than `deadline(key)`
/// (`None`: not one of the caller's plugins), as far as the scans can tell.
pub(crate) fn scan(
    deadline: impl Fn(usize) -> Option<Duration>,
    mut report: impl FnMut(usize, Duration),
) {
    let now = Instant::now();
    hazard::each_record(|record| {
        let slot = &record.watch;
        let seq = slot.seq.load(Ordering::Acquire);
        if seq == 0 {
            slot.seen.lock().clear();
            return;
        }
        let key = slot.key.load(Ordering::Relaxed);
        let Some(limit) = deadline(key) else {
            return;
        };
        let running = now.duration_since(slot.first_seen(seq, now));
        if running > limit
            && slot.seq.load(Ordering::Acquire) == seq
            && !slot.reported.swap(true, Ordering::AcqRel)
        {
            report(key, running);
        }
    });
}
