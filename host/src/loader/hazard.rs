//! Reading what a plugin call needs (its instance, its context) without writing a shared cache
//! line: hazard pointers with an asymmetric fence.
//!
//! A [`Guarded`] cell holds an `Arc<T>` for the writers and a raw pointer for the readers. A
//! reader publishes the pointer it is about to use in a slot of its own thread's record (a
//! plain store), fences, checks the cell still holds it, and uses it; when done it clears the
//! slot. A writer that replaces the pointer waits until no thread's record holds the old one
//! before it lets the old value go. The fence is asymmetric where the kernel offers
//! `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`: readers need only a compiler fence, and the
//! (rare) writer issues the system call, which runs a full barrier on every thread of the
//! process. Elsewhere both sides use a full fence.
//!
//! Each thread's record also carries its watchdog slot and its counter shard, so a call touches
//! one thread-local record for all three. Records are leased to threads and handed to new
//! threads when their owner exits; they are never freed.

use std::cell::Cell;
use std::ptr;
use std::sync::atomic::{
    compiler_fence, fence, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering,
};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::watchdog::CallSlot;

/// How deeply one thread's reads can nest (a plugin call, its host callback, a call to another
/// plugin, ...); deeper reads take a slower path that clones the `Arc`.
const DEPTH: usize = 8;

/// One thread's record: the pointers it is reading, its watchdog slot, its index.
pub(crate) struct ThreadRecord {
    hazards: [AtomicPtr<()>; DEPTH],
    /// How many hazards are in use; written by the owning thread only.
    depth: AtomicUsize,
    /// Bumped whenever the owner clears a hazard, so a waiter can tell a read ended.
    cleared: AtomicU64,
    leased: AtomicBool,
    /// The record's position in the registry: unique among live threads.
    index: usize,
    /// What the watchdog knows of this thread's call in progress.
    pub(crate) watch: CallSlot,
}

static RECORDS: Mutex<Vec<&'static ThreadRecord>> = Mutex::new(Vec::new());

struct Lease(&'static ThreadRecord);

impl Lease {
    fn acquire() -> Self {
        let mut records = RECORDS.lock();
        if let Some(free) = records.iter().find(|r| !r.leased.load(Ordering::Acquire)) {
            free.leased.store(true, Ordering::Relaxed);
            return Self(free);
        }
        let record: &'static ThreadRecord = Box::leak(Box::new(ThreadRecord {
            hazards: [const { AtomicPtr::new(ptr::null_mut()) }; DEPTH],
            depth: AtomicUsize::new(0),
            cleared: AtomicU64::new(0),
            leased: AtomicBool::new(true),
            index: records.len(),
            watch: CallSlot::default(),
        }));
        records.push(record);
        Self(record)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // A thread exits between calls: its hazards are clear. Forget the record, then hand
        // it on.
        let _ = RECORD.try_with(|cell| cell.set(None));
        self.0.watch.reset();
        self.0.leased.store(false, Ordering::Release);
    }
}

thread_local! {
    static LEASE: Lease = Lease::acquire();
    /// The leased record, cached so the hot path reads one plain thread-local.
    static RECORD: Cell<Option<&'static ThreadRecord>> = const { Cell::new(None) };
}

/// This thread's record; `None` while the thread's locals are being torn down.
pub(crate) fn this_thread() -> Option<&'static ThreadRecord> {
    if let Ok(Some(record)) = RECORD.try_with(Cell::get) {
        return Some(record);
    }
    let record = LEASE.try_with(|lease| lease.0).ok()?;
    let _ = RECORD.try_with(|cell| cell.set(Some(record)));
    Some(record)
}

impl ThreadRecord {
    /// Unique among the threads alive now; small numbers are reused.
    pub(crate) fn index(&self) -> usize {
        self.index
    }
}

/// Calls `f` with every thread record (leased or not).
pub(crate) fn each_record(mut f: impl FnMut(&'static ThreadRecord)) {
    let records: Vec<&'static ThreadRecord> = RECORDS.lock().clone();
    for record in records {
        f(record);
    }
}

const MEMBARRIER_CMD_QUERY: libc::c_int = 0;
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

/// Whether the heavy side of the fence is `membarrier`; settled before the first cell exists.
static ASYMMETRIC: OnceLock<bool> = OnceLock::new();

#[cfg(any(target_os = "linux", target_os = "android"))]
fn membarrier(command: libc::c_int) -> libc::c_long {
    // SAFETY: membarrier takes two integer arguments and touches no memory of ours; an
    // unsupported command returns -1 with errno set.
    unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            command,
            0 as libc::c_uint,
            0 as libc::c_int,
        )
    }
}

fn asymmetric() -> bool {
    *ASYMMETRIC.get_or_init(|| {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            let supported = membarrier(MEMBARRIER_CMD_QUERY);
            supported >= 0
                && supported & libc::c_long::from(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0
                && membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            false
        }
    })
}

/// The readers' side of the fence.
#[inline]
fn light_fence() {
    // `asymmetric()` was settled when the first cell was made, before any reader could run.
    if ASYMMETRIC.get().copied().unwrap_or(false) {
        compiler_fence(Ordering::SeqCst);
    } else {
        fence(Ordering::SeqCst);
    }
}

/// The writers' side: after this, every reader's hazard published before it is visible, and
/// every reader that publishes later sees what was stored before it.
fn heavy_fence() {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if asymmetric() && membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0 {
        return;
    }
    fence(Ordering::SeqCst);
}

/// An `Arc<T>` that readers use without touching its reference count.
pub(crate) struct Guarded<T> {
    ptr: AtomicPtr<T>,
    owner: Mutex<Option<Arc<T>>>,
    /// Readers on the slow path (nesting deeper than the record holds).
    slow: AtomicUsize,
}

impl<T> std::fmt::Debug for Guarded<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded")
            .field("ptr", &self.ptr)
            .finish_non_exhaustive()
    }
}

impl<T: Send + Sync + 'static> Default for Guarded<T> {
    fn default() -> Self {
        Self::new(None)
    }
}

/// Clears a hazard when a read ends, panicking or not.
struct Clear {
    record: &'static ThreadRecord,
    depth: usize,
}

impl Drop for Clear {
    fn drop(&mut self) {
        let record = self.record;
        // Release: everything the read did happens before a writer sees the slot clear.
        record.hazards[self.depth].store(ptr::null_mut(), Ordering::Release);
        record.depth.store(self.depth, Ordering::Relaxed);
        record.cleared.store(
            record.cleared.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Release,
        );
    }
}

/// Counts a read on the slow path until it ends, panicking or not.
struct SlowRead<'a>(&'a AtomicUsize);

impl Drop for SlowRead<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<T: Send + Sync + 'static> Guarded<T> {
    pub(crate) fn new(value: Option<Arc<T>>) -> Self {
        asymmetric();
        let ptr = value
            .as_ref()
            .map_or(ptr::null_mut(), |v| Arc::as_ptr(v).cast_mut());
        Self {
            ptr: AtomicPtr::new(ptr),
            owner: Mutex::new(value),
            slow: AtomicUsize::new(0),
        }
    }

    /// Runs `f` with the current value. The value stays alive until `f` returns, and a writer
    /// replacing it keeps it alive until then (see [`Retired`]).
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(Option<&T>) -> R) -> R {
        if let Some(record) = this_thread() {
            let depth = record.depth.load(Ordering::Relaxed);
            if depth < DEPTH {
                let hazard = &record.hazards[depth];
                let mut current = self.ptr.load(Ordering::Acquire);
                loop {
                    if current.is_null() {
                        return f(None);
                    }
                    hazard.store(current.cast(), Ordering::Relaxed);
                    light_fence();
                    let again = self.ptr.load(Ordering::Acquire);
                    if again == current {
                        break;
                    }
                    current = again;
                }
                record.depth.store(depth + 1, Ordering::Relaxed);
                let _clear = Clear { record, depth };
                // SAFETY: `current` came from `Arc::as_ptr` of the value the cell held when this
                // thread's hazard named it: the hazard was published (and fenced) before the
                // cell was read again and found unchanged. A writer takes the value out of the
                // cell before it fences and scans the hazards (`Retired`), and keeps its
                // `Arc` until no hazard names the pointer, so the value outlives this borrow,
                // which ends before `_clear` clears the hazard.
                return f(Some(unsafe { &*current }));
            }
        }
        self.slow.fetch_add(1, Ordering::SeqCst);
        let _slow = SlowRead(&self.slow);
        let value = self.owner.lock().clone();
        f(value.as_deref())
    }

    /// A counted reference to the current value (for the administrative paths).
    pub(crate) fn load_full(&self) -> Option<Arc<T>> {
        self.owner.lock().clone()
    }

    /// Whether the cell holds a value.
    pub(crate) fn is_some(&self) -> bool {
        !self.ptr.load(Ordering::Acquire).is_null()
    }

    /// Replaces the value; the previous one comes back retired (readers may still use it).
    pub(crate) fn replace(&self, value: Option<Arc<T>>) -> Retired<T> {
        self.update(|_| value)
    }

    /// Replaces the value only if it is still `expected`.
    pub(crate) fn replace_if(
        &self,
        expected: &Arc<T>,
        value: Option<Arc<T>>,
    ) -> Option<Retired<T>> {
        let mut owner = self.owner.lock();
        if !owner.as_ref().is_some_and(|o| Arc::ptr_eq(o, expected)) {
            return None;
        }
        Some(self.store(&mut owner, value))
    }

    /// Replaces the value with one computed from it, atomically with respect to other writers.
    pub(crate) fn update(&self, f: impl FnOnce(Option<&Arc<T>>) -> Option<Arc<T>>) -> Retired<T> {
        let mut owner = self.owner.lock();
        let value = f(owner.as_ref());
        self.store(&mut owner, value)
    }

    fn store(&self, owner: &mut Option<Arc<T>>, value: Option<Arc<T>>) -> Retired<T> {
        let ptr = value
            .as_ref()
            .map_or(ptr::null_mut(), |v| Arc::as_ptr(v).cast_mut());
        self.ptr.store(ptr, Ordering::SeqCst);
        Retired(std::mem::replace(owner, value))
    }

    /// Waits until every reader of `value` that started before this call has finished (new
    /// readers are not waited for, so a stream of them cannot starve this), or `deadline`
    /// passes; returns false on timeout. For a value still in the cell, this is "wait for the
    /// calls in flight".
    pub(crate) fn wait_readers(&self, value: &Arc<T>, deadline: Duration) -> bool {
        wait_unread(Arc::as_ptr(value).cast(), deadline, || {
            self.slow.load(Ordering::SeqCst) == 0
        })
    }
}

/// Waits until no thread that read `target` when this was called still reads it and `also`
/// holds, or `deadline` passes; returns false on timeout.
fn wait_unread(target: *const (), deadline: Duration, also: impl Fn() -> bool) -> bool {
    let started = Instant::now();
    let mut pending = readers_of(target);
    let mut pause = Duration::from_micros(20);
    loop {
        pending.retain(|(record, cleared)| record.still_reads(*cleared, target));
        if pending.is_empty() && also() {
            return true;
        }
        if started.elapsed() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(1));
    }
}

impl ThreadRecord {
    /// Whether this record still holds the read of `target` it held when `cleared` was read.
    fn still_reads(&self, cleared: u64, target: *const ()) -> bool {
        self.cleared.load(Ordering::Acquire) == cleared
            && self
                .hazards
                .iter()
                .any(|h| ptr::eq(h.load(Ordering::Acquire), target))
    }
}

/// The records reading `target` now, each with its `cleared` count, after a heavy fence.
fn readers_of(target: *const ()) -> Vec<(&'static ThreadRecord, u64)> {
    heavy_fence();
    let mut readers = Vec::new();
    each_record(|record| {
        // Read `cleared` first: a read that ends after this bumps it.
        let cleared = record.cleared.load(Ordering::Acquire);
        if record.still_reads(cleared, target) {
            readers.push((record, cleared));
        }
    });
    readers
}

/// A value taken out of a [`Guarded`] cell that readers may still be using. Dropping it frees
/// the value once no reader uses it (at once, or later from [`reclaim`]).
#[must_use = "dropping a retired value defers it; wait() to know it is no longer read"]
pub(crate) struct Retired<T: Send + Sync + 'static>(Option<Arc<T>>);

impl<T: Send + Sync + 'static> Retired<T> {
    /// The retired value.
    pub(crate) fn get(&self) -> Option<&Arc<T>> {
        self.0.as_ref()
    }

    /// Waits until no reader uses the value, up to `deadline`. `Ok` hands the value back (it
    /// may be dropped or unwrapped); `Err` means readers still used it at the deadline, and it
    /// is left to [`reclaim`].
    pub(crate) fn wait(mut self, deadline: Duration) -> Result<Option<Arc<T>>, StillRead> {
        let Some(value) = self.0.take() else {
            return Ok(None);
        };
        if wait_unread(Arc::as_ptr(&value).cast(), deadline, || true) {
            Ok(Some(value))
        } else {
            defer(value);
            Err(StillRead)
        }
    }
}

impl<T: Send + Sync + 'static> Drop for Retired<T> {
    fn drop(&mut self) {
        if let Some(value) = self.0.take() {
            defer(value);
        }
    }
}

/// A retired value was still being read at the deadline.
#[derive(Debug)]
pub(crate) struct StillRead;

/// Values retired while still read: their address and the owning reference.
static LIMBO: Mutex<Vec<(usize, Box<dyn Send>)>> = Mutex::new(Vec::new());

fn defer<T: Send + Sync + 'static>(value: Arc<T>) {
    let address = Arc::as_ptr(&value).cast::<()>() as usize;
    LIMBO.lock().push((address, Box::new(value)));
    reclaim();
}

/// Frees the retired values no reader uses any more. Runs whenever a value is retired and
/// from the host's supervisor.
pub(crate) fn reclaim() {
    let mut limbo = LIMBO.lock();
    if limbo.is_empty() {
        return;
    }
    heavy_fence();
    let mut read = Vec::new();
    each_record(|record| {
        read.extend(
            record
                .hazards
                .iter()
                .map(|h| h.load(Ordering::Acquire) as usize)
                .filter(|&p| p != 0),
        );
    });
    let freed: Vec<_> = {
        let (kept, freed): (Vec<_>, Vec<_>) = limbo
            .drain(..)
            .partition(|(address, _)| read.contains(address));
        *limbo = kept;
        freed
    };
    drop(limbo);
    // Dropped outside the lock: a value's destructor may retire other values.
    drop(freed);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts how many values were dropped.
    struct Counted(u32, Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_retired_value_outlives_its_readers_and_new_readers_see_the_new_one() {
        let dropped = Arc::new(AtomicUsize::new(0));
        let cell = Arc::new(Guarded::new(Some(Arc::new(Counted(1, dropped.clone())))));
        let (entered, release) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let reader = {
            let (cell, entered, release) = (cell.clone(), entered.clone(), release.clone());
            std::thread::spawn(move || {
                cell.with(|v| {
                    entered.store(true, Ordering::SeqCst);
                    while !release.load(Ordering::SeqCst) {
                        std::thread::yield_now();
                    }
                    v.map(|v| v.0)
                })
            })
        };
        while !entered.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        let retired = cell.replace(Some(Arc::new(Counted(2, dropped.clone()))));
        assert!(
            retired.wait(Duration::from_millis(30)).is_err(),
            "the reader still holds 1"
        );
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            0,
            "a value in use was freed"
        );
        // New readers see the new value.
        assert_eq!(cell.with(|v| v.map(|v| v.0)), Some(2));
        release.store(true, Ordering::SeqCst);
        assert_eq!(reader.join().expect("reader"), Some(1));
        reclaim();
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            1,
            "the retired value is freed once unread"
        );
        let last = cell.replace(None).wait(Duration::from_secs(1));
        assert!(last.is_ok_and(|v| v.is_some_and(|v| Arc::strong_count(&v) == 1)));
    }

    #[test]
    fn waiting_for_readers_is_not_starved_by_new_ones() {
        let cell = Arc::new(Guarded::new(Some(Arc::new(7u32))));
        let value = cell.load_full().expect("value");
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (cell, stop) = (cell.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    cell.with(|v| std::hint::black_box(v.copied()));
                }
            })
        };
        for _ in 0..100 {
            assert!(
                cell.wait_readers(&value, Duration::from_secs(2)),
                "a stream of reads starved the wait"
            );
        }
        stop.store(true, Ordering::Relaxed);
        reader.join().expect("reader");
    }

    #[test]
    fn reads_nest_deeper_than_the_record_and_stay_correct() {
        fn nest(cells: &[Guarded<usize>]) -> usize {
            match cells.split_first() {
                None => 0,
                Some((first, rest)) => first.with(|v| v.copied().unwrap_or(0) + nest(rest)),
            }
        }
        let cells: Vec<Guarded<usize>> = (0..DEPTH * 2)
            .map(|i| Guarded::new(Some(Arc::new(i))))
            .collect();
        assert_eq!(nest(&cells), (0..DEPTH * 2).sum::<usize>());
        let record = this_thread().expect("record");
        assert_eq!(record.depth.load(Ordering::Relaxed), 0);
        assert!(record
            .hazards
            .iter()
            .all(|h| h.load(Ordering::Relaxed).is_null()));
    }
}
