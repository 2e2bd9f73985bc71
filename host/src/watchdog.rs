//! The watchdog's view of calls in progress: each thread that calls into a plugin publishes
//! which plugin and since when in a record of its own (plain stores to a line no other thread
//! writes), and a watchdog thread of each host scans the records for calls that overran their
//! deadline. Native code cannot be pre-empted: an overrunning call is reported and counted as
//! a fault, not stopped.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// One thread's call in progress.
#[derive(Debug, Default)]
pub(crate) struct CallSlot {
    key: AtomicUsize,
    start_ns: AtomicU64,
    reported: AtomicBool,
}

static SLOTS: Mutex<Vec<Weak<CallSlot>>> = Mutex::new(Vec::new());

thread_local! {
    static SLOT: Arc<CallSlot> = {
        let slot = Arc::new(CallSlot::default());
        let mut slots = SLOTS.lock();
        slots.retain(|s| s.strong_count() > 0);
        slots.push(Arc::downgrade(&slot));
        slot
    };
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since the process's watchdog epoch, never 0.
fn now_ns() -> u64 {
    u64::try_from(epoch().elapsed().as_nanos())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Marks a call in progress on this thread until dropped; restores an outer call's record
/// (plugin-to-plugin calls nest).
pub(crate) struct Watch {
    previous: (usize, u64, bool),
}

impl Watch {
    /// Publishes a call into the plugin identified by `key`.
    pub(crate) fn enter(key: usize) -> Self {
        SLOT.with(|slot| {
            let previous = (
                slot.key.load(Ordering::Relaxed),
                slot.start_ns.load(Ordering::Relaxed),
                slot.reported.load(Ordering::Relaxed),
            );
            slot.reported.store(false, Ordering::Relaxed);
            slot.key.store(key, Ordering::Relaxed);
            slot.start_ns.store(now_ns(), Ordering::Release);
            Self { previous }
        })
    }

    /// Whether the watchdog already reported this call as overrunning.
    pub(crate) fn reported(&self) -> bool {
        SLOT.with(|slot| slot.reported.load(Ordering::Acquire))
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let (key, start, reported) = self.previous;
        SLOT.with(|slot| {
            slot.start_ns.store(0, Ordering::Release);
            slot.key.store(key, Ordering::Relaxed);
            slot.reported.store(reported, Ordering::Relaxed);
            slot.start_ns.store(start, Ordering::Release);
        });
    }
}

/// Calls `report` once for every call in progress that has run longer than `deadline(key)`
/// (`None`: not one of the caller's plugins).
pub(crate) fn scan(
    deadline: impl Fn(usize) -> Option<Duration>,
    mut report: impl FnMut(usize, Duration),
) {
    let now = now_ns();
    let slots: Vec<Arc<CallSlot>> = SLOTS.lock().iter().filter_map(Weak::upgrade).collect();
    for slot in slots {
        let start = slot.start_ns.load(Ordering::Acquire);
        if start == 0 {
            continue;
        }
        let key = slot.key.load(Ordering::Relaxed);
        let Some(limit) = deadline(key) else {
            continue;
        };
        let running = Duration::from_nanos(now.saturating_sub(start));
        if running > limit
            && slot.start_ns.load(Ordering::Acquire) == start
            && !slot.reported.swap(true, Ordering::AcqRel)
        {
            report(key, running);
        }
    }
}
