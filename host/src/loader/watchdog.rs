//! The watchdog's view of calls in progress. Each thread that calls into a plugin publishes
//! which plugin, a sequence number for the call and how deeply it nests, in its own thread
//! record (plain stores to a line no other thread writes); the call path never reads the clock.
//! The watchdog thread of each host scans the records and times each call from the scan that
//! first saw it, so a call is never reported early, and late by at most one scan interval.
//! Native code cannot be pre-empted: an overrunning call is reported and counted as a fault,
//! not stopped.
//!
//! The three published fields are one **seqlock**: the owner makes the version odd, fences,
//! writes, and makes it even again; a scan reads the version, the fields, fences, and reads the
//! version again, and uses the fields only when both versions are the same even number. A scan
//! therefore never pairs one call's number with another call's plugin. A report names the call
//! it is about (its number, at its nesting level), so an inner call can never pick up the
//! report of the call around it, nor the other way round. The atomics come from
//! [`super::sync`]: `scripts/loom.sh` model-checks this protocol.

use std::time::{Duration, Instant};

use super::hazard::{self, ThreadRecord};
use super::sync::{fence, AtomicU64, AtomicUsize, Ordering};

/// How many nested calls of one thread the watchdogs time; deeper calls are not timed (plugin
/// calls nest at most `MAX_CALL_DEPTH` (8) deep, far less than this).
pub(crate) const NESTING: usize = 16;

/// What one scan saw of a thread's innermost call in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Published {
    /// The plugin's watchdog key.
    pub key: usize,
    /// The call's number on this record; never 0.
    pub seq: u64,
    /// How many calls it nests in.
    pub level: usize,
}

/// One thread's calls in progress, in its thread record.
#[derive(Debug)]
pub(crate) struct CallSlot {
    /// Odd while the owner rewrites the three fields below.
    version: AtomicU64,
    key: AtomicUsize,
    /// The innermost call's number; 0 when no call is in progress.
    seq: AtomicU64,
    level: AtomicUsize,
    /// The last number handed out on this record (owner only; never reset, so numbers are
    /// unique for the life of the record, across owners).
    last: AtomicU64,
    /// How many calls are in progress on this thread (owner only).
    active: AtomicUsize,
    /// Per nesting level: the number of the last call a watchdog reported at that level.
    reported: [AtomicU64; NESTING],
    /// The watchdogs' memory of when they first saw each call still in progress, outermost
    /// first.
    seen: parking_lot::Mutex<Vec<(u64, Instant)>>,
}

impl Default for CallSlot {
    fn default() -> Self {
        Self {
            version: AtomicU64::new(0),
            key: AtomicUsize::new(0),
            seq: AtomicU64::new(0),
            level: AtomicUsize::new(0),
            last: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            reported: std::array::from_fn(|_| AtomicU64::new(0)),
            seen: parking_lot::Mutex::new(Vec::new()),
        }
    }
}

impl CallSlot {
    /// Publishes the innermost call (owner only).
    fn publish(&self, call: Option<Published>) {
        let (key, seq, level) = call.map_or((0, 0, 0), |c| (c.key, c.seq, c.level));
        let version = self.version.load(Ordering::Relaxed);
        self.version
            .store(version.wrapping_add(1), Ordering::Relaxed);
        // The odd version is visible before any field changes.
        fence(Ordering::Release);
        self.key.store(key, Ordering::Relaxed);
        self.seq.store(seq, Ordering::Relaxed);
        self.level.store(level, Ordering::Relaxed);
        self.version
            .store(version.wrapping_add(2), Ordering::Release);
    }

    /// What the owner last published (owner only: no other thread writes these).
    fn own(&self) -> Option<Published> {
        let seq = self.seq.load(Ordering::Relaxed);
        (seq != 0).then(|| Published {
            key: self.key.load(Ordering::Relaxed),
            seq,
            level: self.level.load(Ordering::Relaxed),
        })
    }

    /// A consistent reading of the innermost call, `None` if there is none or the owner was
    /// rewriting it (the next scan will see it).
    pub(crate) fn snapshot(&self) -> Option<Published> {
        let before = self.version.load(Ordering::Acquire);
        if before & 1 == 1 {
            return None;
        }
        let key = self.key.load(Ordering::Relaxed);
        let seq = self.seq.load(Ordering::Relaxed);
        let level = self.level.load(Ordering::Relaxed);
        // The field loads complete before the version is read again.
        fence(Ordering::Acquire);
        if self.version.load(Ordering::Relaxed) != before || seq == 0 {
            return None;
        }
        Some(Published { key, seq, level })
    }

    /// Marks call `call` reported; true the first time (for that call).
    pub(crate) fn report(&self, call: Published) -> bool {
        call.level < NESTING
            && self.reported[call.level].swap(call.seq, Ordering::AcqRel) != call.seq
    }

    /// Starts a call into the plugin with watchdog key `key` (owner only); `None` past
    /// [`NESTING`] levels (the call is then not timed).
    pub(crate) fn enter(&self, key: usize) -> Option<Published> {
        let level = self.active.load(Ordering::Relaxed);
        self.active.store(level + 1, Ordering::Relaxed);
        if level >= NESTING {
            return None;
        }
        let seq = self.last.load(Ordering::Relaxed) + 1;
        self.last.store(seq, Ordering::Relaxed);
        let call = Published { key, seq, level };
        self.publish(Some(call));
        Some(call)
    }

    /// Ends the innermost call (owner only), publishing the call around it again.
    pub(crate) fn exit(&self, outer: Option<Published>) {
        let level = self.active.load(Ordering::Relaxed);
        self.active
            .store(level.saturating_sub(1), Ordering::Relaxed);
        if level <= NESTING {
            self.publish(outer);
        }
    }

    /// Whether a watchdog reported `call` as overrunning.
    pub(crate) fn was_reported(&self, call: Published) -> bool {
        call.level < NESTING && self.reported[call.level].load(Ordering::Acquire) == call.seq
    }

    /// Forgets the calls in progress (the thread that owned the record has exited).
    pub(crate) fn reset(&self) {
        self.active.store(0, Ordering::Relaxed);
        self.publish(None);
        self.seen.lock().clear();
    }

    /// When a watchdog first saw call `seq` (now, if this is the first time).
    fn first_seen(&self, seq: u64, now: Instant) -> Instant {
        let mut seen = self.seen.lock();
        // Numbers grow on a record: entries above `seq` were nested calls that have ended.
        while seen.last().is_some_and(|(s, _)| *s > seq) {
            seen.pop();
        }
        match seen.last() {
            Some((s, at)) if *s == seq => *at,
            _ => {
                // Calls below `seq` may have ended too; keep the memory bounded.
                if seen.len() >= NESTING {
                    seen.remove(0);
                }
                seen.push((seq, now));
                now
            }
        }
    }
}

/// Marks a call in progress on this thread until dropped; publishes the call around it again
/// when dropped (plugin-to-plugin calls nest).
pub(crate) struct Watch {
    record: Option<&'static ThreadRecord>,
    call: Option<Published>,
    outer: Option<Published>,
}

impl Watch {
    /// Publishes a call into the plugin identified by `key`.
    #[inline]
    pub(crate) fn enter(key: usize) -> Self {
        let record = hazard::this_thread();
        let (call, outer) = match record {
            Some(record) => {
                let outer = record.watch.own();
                (record.watch.enter(key), outer)
            }
            None => (None, None),
        };
        Self {
            record,
            call,
            outer,
        }
    }

    /// Whether the watchdog reported this very call as overrunning.
    #[inline]
    pub(crate) fn reported(&self) -> bool {
        match (self.record, self.call) {
            (Some(record), Some(call)) => record.watch.was_reported(call),
            _ => false,
        }
    }
}

impl Drop for Watch {
    #[inline]
    fn drop(&mut self) {
        if let Some(record) = self.record {
            record.watch.exit(self.outer);
        }
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
        let Some(call) = slot.snapshot() else {
            if slot.seq.load(Ordering::Relaxed) == 0 {
                slot.seen.lock().clear();
            }
            return;
        };
        let Some(limit) = deadline(call.key) else {
            return;
        };
        let running = now.duration_since(slot.first_seen(call.seq, now));
        if running > limit && slot.report(call) {
            report(call.key, running);
        }
    });
}

/// Model checks of the record protocol with loom (`scripts/loom.sh`).
#[cfg(all(test, loom))]
mod loom_models {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_scan_never_pairs_one_call_with_another_calls_plugin() {
        let mut builder = loom::model::Builder::new();
        // LOOM_MAX_PREEMPTIONS raises it (scripts/loom.sh sets 3 unless told otherwise).
        builder.preemption_bound = builder.preemption_bound.or(Some(3));
        builder.check(|| {
            let slot = Arc::new(CallSlot::default());
            let owner = {
                let slot = slot.clone();
                loom::thread::spawn(move || {
                    // Call 1 into plugin 1; inside it, call 2 into plugin 2.
                    let outer = slot.enter(1).expect("level 0");
                    let inner = slot.enter(2).expect("level 1");
                    let inner_reported = slot.was_reported(inner);
                    slot.exit(Some(outer));
                    slot.exit(None);
                    inner_reported
                })
            };
            // The scanner: whatever it sees is one whole call, and it reports plugin 1 only.
            for _ in 0..2 {
                if let Some(call) = slot.snapshot() {
                    assert_eq!(
                        call.key as u64, call.seq,
                        "call {} torn: {call:?}",
                        call.seq
                    );
                    assert_eq!(call.level as u64, call.seq - 1, "{call:?}");
                    if call.key == 1 {
                        slot.report(call);
                    }
                }
            }
            let inner_reported = owner.join().expect("owner");
            assert!(
                !inner_reported,
                "the quick inner call picked up the outer call's report"
            );
        });
    }
}
