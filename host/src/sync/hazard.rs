//! Reading what a plugin call needs (its instance, its context) without writing a shared cache
//! line: hazard pointers with an asymmetric fence.
//!
//! A [`Guarded`] cell holds an `Arc<T>` for the writers and a raw pointer for the readers. A
//! reader publishes the pointer it is about to use in a slot of its own thread's record (a
//! plain store), fences, checks the cell still holds it, and uses it; when done it clears the
//! slot and bumps that slot's end count. Reads nest (a call, its host callback, a call to
//! another plugin): each nesting level has a slot of its own, so a waiter watches **the exact
//! slot** that named the value, never "some read of this thread ended".
//!
//! A writer that replaces the pointer waits until no slot that named the old value still holds
//! the same read before it lets the old value go. The fence is asymmetric where the kernel
//! offers `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`: readers need only a compiler fence,
//! and the (rare) writer issues the system call, which runs a full barrier on every thread of
//! the process. Elsewhere both sides use a full fence. **The asymmetric fence is a pair or
//! nothing**: if the system call fails once readers rely on it (a seccomp filter installed
//! later, say), a writer-only fence could miss a hazard and free a value in use, so the process
//! is aborted with a message instead.
//!
//! A read that is a call into a plugin ([`Guarded::with_call`]) marks its slot: the pointer is
//! published with its low bit set. That publication, with the slot's end count as the call's
//! number, is all the watchdog needs to time the call (see [`super::watchdog`]): a call writes
//! nothing for the watchdog beyond its hazard. The record also carries what the watchdog
//! reported, and it indexes the counter shards, so a call touches one thread-local record. Records are leased to threads and handed to new
//! threads when their owner exits (with every slot cleared); they are never freed.
//!
//! The atomics come from [`super::primitives`], so `scripts/loom.sh` model-checks this file as it is
//! (nested reads, emptied cells, record hand-off, retiring while reading).
//!
//! [`Retaining`] is the scheme's simplest neighbour: a cell read with one load because nothing
//! it ever held is freed before it (an action handle's resolution).
//!
//! Longer than 400 lines: the scheme's readers, writers, waits and reclamation are one
//! protocol, and its SAFETY arguments refer to each other; it is read and model-checked whole.

use std::cell::Cell;
use std::ptr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::primitives::{
    fence, pause, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Mutex, Ordering,
};
use super::watchdog::CallSlot;

/// How deeply one thread's reads can nest (a plugin call, its host callback, a call to another
/// plugin, ...: about three per level of plugin-to-plugin calls, which nest at most 8 deep);
/// deeper reads take a slower path that clones the `Arc`, and deeper calls are not timed.
pub(crate) const DEPTH: usize = if cfg!(loom) { 4 } else { 24 };

/// Threads with a record index below this count in a shard of their own, in the counters the
/// call path writes (a plugin's, a context's, a call meter's).
pub(crate) const SHARDS: usize = 16;

/// The low bit of a published pointer: the read is a call into a plugin (the watchdog times
/// it). Values in cells are `Arc`s of types aligned to at least 2, so the bit is free.
const CALL: usize = 1;

/// The address a slot names, without the call mark.
fn address(published: *mut ()) -> usize {
    published as usize & !CALL
}

/// One thread's record: the pointers it is reading, what the watchdogs reported, its index.
/// Aligned to a pair of cache lines, so that no two threads' records share one.
#[repr(align(128))]
pub(crate) struct ThreadRecord {
    hazards: [AtomicPtr<()>; DEPTH],
    /// Per slot: how many reads in that slot have ended. Bumped (release) after the slot is
    /// cleared, so a waiter that sees it move knows the read it saw there is over.
    ends: [AtomicU64; DEPTH],
    /// How many slots are in use; written by the owning thread only.
    depth: AtomicUsize,
    /// How many calls this thread is in that nest deeper than its slots (untimed); written by
    /// the owning thread only, on the slow path. Such a call is always the innermost one.
    untimed: AtomicUsize,
    leased: AtomicBool,
    /// Counts down the calls until the next one this thread times for the latency metrics
    /// ([`ThreadRecord::time_this_call`]); written by the owning thread only.
    countdown: AtomicUsize,
    /// The record's position in the registry: unique among live threads.
    index: usize,
    /// What the watchdogs saw and reported of this thread's calls.
    pub(crate) watch: CallSlot,
}

impl std::fmt::Debug for ThreadRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadRecord")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl ThreadRecord {
    fn new(index: usize) -> Self {
        Self {
            hazards: std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
            ends: std::array::from_fn(|_| AtomicU64::new(0)),
            depth: AtomicUsize::new(0),
            untimed: AtomicUsize::new(0),
            leased: AtomicBool::new(true),
            countdown: AtomicUsize::new(0),
            index,
            watch: CallSlot::default(),
        }
    }

    /// Unique among the threads alive now; small numbers are reused.
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// Whether the call this thread is about to make is one it times: one in `period` of its
    /// calls, the first one included (the owning thread only: a plain load and store).
    #[inline(always)]
    pub(crate) fn time_this_call(&self, period: usize) -> bool {
        let left = self.countdown.load(Ordering::Relaxed);
        let timed = left == 0;
        let next = if timed { period - 1 } else { left - 1 };
        self.countdown.store(next, Ordering::Relaxed);
        timed
    }

    /// Ends the read in slot `depth` (or withdraws a publication that never became a read).
    #[inline(always)]
    fn end(&self, depth: usize) {
        // Release: everything the read did happens before a writer sees the slot clear.
        self.hazards[depth].store(ptr::null_mut(), Ordering::Release);
        let ends = &self.ends[depth];
        ends.store(
            ends.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Release,
        );
    }

    /// Whether slot `depth` still holds the read of `target` it held when its end count was
    /// `ends`.
    fn still_reads(&self, depth: usize, ends: u64, target: *const ()) -> bool {
        self.ends[depth].load(Ordering::Acquire) == ends
            && address(self.hazards[depth].load(Ordering::Acquire)) == target as usize
    }

    /// Whether any slot names `value` (for reclamation).
    fn names(&self, value: usize) -> bool {
        self.hazards
            .iter()
            .any(|h| address(h.load(Ordering::Acquire)) == value)
    }

    /// The call in progress in slot `depth`, as the watchdog sees it: the address of the value
    /// the call reads (a plugin's running instance) and the call's number (the slot's end count,
    /// which no other read there shares). `None` if the slot holds no call, or changed while
    /// it was read.
    pub(crate) fn call_at(&self, depth: usize) -> Option<(usize, u64)> {
        let ends = self.ends[depth].load(Ordering::Acquire);
        let published = self.hazards[depth].load(Ordering::Acquire);
        if published as usize & CALL == 0 {
            return None;
        }
        // Pairs with the release store of a later publication: if the pointer read is a later
        // read's, that read began after this slot's count moved, so the count read next differs.
        fence(Ordering::Acquire);
        (self.ends[depth].load(Ordering::Relaxed) == ends).then_some((address(published), ends))
    }

    /// Whether a watchdog reported the innermost call this thread is in as overrunning its
    /// timeout (the owning thread only: what `ctx.cancelled()` answers for a call past its
    /// time). Reads the thread's own slots, which only it writes.
    pub(crate) fn innermost_call_reported(&self) -> bool {
        self.innermost_call()
            .is_some_and(|(d, number)| self.watch.was_reported(d, number))
    }

    /// Marks the innermost call this thread is in as reported (the owning thread only), as the
    /// watchdog would at its timeout: the plugin was told its call is cancelled (it is being
    /// torn down), so the call ends `cancelled` unless it runs on through its grace. Nothing is
    /// marked when the innermost call is untimed (nested deeper than the slots): the call in a
    /// slot is an outer call, another plugin's.
    pub(crate) fn cancel_innermost_call(&self) {
        if let Some((d, number)) = self.innermost_call() {
            self.watch.report(d, number);
        }
    }

    /// The innermost timed call this thread is in (the owning thread only; an untimed call
    /// nested deeper runs inside it, so its deadline bounds that one too): the address of the
    /// value it reads (its plugin's running instance), when it is timed from and its timeout if
    /// a watchdog saw it already ([`CallSlot::timed_from`]). `None` when the thread is in no
    /// timed call.
    pub(crate) fn innermost_call_timed(
        &self,
        now: Instant,
    ) -> Option<(usize, Instant, Option<Duration>)> {
        let depth = self.depth.load(Ordering::Relaxed).min(DEPTH);
        (0..depth).rev().find_map(|d| {
            let (address, number) = self.call_at(d)?;
            let (from, limit) = self.watch.timed_from(d, number, now);
            Some((address, from, limit))
        })
    }

    /// Whether this thread is inside a call into a plugin (the owning thread only).
    pub(crate) fn in_call(&self) -> bool {
        self.untimed.load(Ordering::Relaxed) > 0 || self.innermost_call().is_some()
    }

    /// The slot and number of the innermost call this thread is in (the owning thread only);
    /// `None` if it is in none, or if the innermost one is untimed.
    fn innermost_call(&self) -> Option<(usize, u64)> {
        if self.untimed.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let depth = self.depth.load(Ordering::Relaxed).min(DEPTH);
        (0..depth)
            .rev()
            .find_map(|d| self.call_at(d).map(|(_, number)| (d, number)))
    }
}

/// The thread records and the values retired while still read: the process has one
/// ([`Domain::global`]); a loom model makes its own.
pub(crate) struct Domain {
    records: Mutex<Vec<&'static ThreadRecord>>,
    /// Values retired while still read: their address and the owning reference.
    limbo: Mutex<Vec<(usize, Box<dyn Send>)>>,
}

impl Domain {
    pub(crate) fn new() -> Self {
        Self {
            records: Mutex::new(Vec::new()),
            limbo: Mutex::new(Vec::new()),
        }
    }

    /// The process's domain.
    pub(crate) fn global() -> &'static Self {
        static GLOBAL: OnceLock<Domain> = OnceLock::new();
        GLOBAL.get_or_init(Self::new)
    }

    /// Leases a record to the calling thread: a free one, or a new one.
    pub(crate) fn acquire(&self) -> &'static ThreadRecord {
        let mut records = self.records.lock();
        if let Some(free) = records.iter().find(|r| !r.leased.load(Ordering::Acquire)) {
            free.leased.store(true, Ordering::Relaxed);
            // A new owner times its first call, as on a record of its own.
            free.countdown.store(0, Ordering::Relaxed);
            return free;
        }
        let record: &'static ThreadRecord = Box::leak(Box::new(ThreadRecord::new(records.len())));
        records.push(record);
        record
    }

    /// Hands `record` back. Its owner is exiting, between reads; every slot is cleared anyway
    /// (and its end count bumped), so the next owner starts clean whatever happened before.
    pub(crate) fn release(&self, record: &'static ThreadRecord) {
        for depth in 0..DEPTH {
            if !record.hazards[depth].load(Ordering::Relaxed).is_null() {
                record.end(depth);
            }
        }
        record.depth.store(0, Ordering::Relaxed);
        record.watch.reset();
        let _records = self.records.lock();
        record.leased.store(false, Ordering::Release);
    }

    /// Calls `f` with every thread record (leased or not).
    pub(crate) fn each_record(&self, mut f: impl FnMut(&'static ThreadRecord)) {
        let records: Vec<&'static ThreadRecord> = self.records.lock().clone();
        for record in records {
            f(record);
        }
    }

    /// The slots reading `target` now, each with its end count, after a heavy fence.
    fn readers_of(&self, target: *const ()) -> Vec<(&'static ThreadRecord, usize, u64)> {
        heavy_fence();
        let mut readers = Vec::new();
        self.each_record(|record| {
            for depth in 0..DEPTH {
                // The end count first: a read that ends after this moves it.
                let ends = record.ends[depth].load(Ordering::Acquire);
                if record.still_reads(depth, ends, target) {
                    readers.push((record, depth, ends));
                }
            }
        });
        readers
    }

    /// Waits until no slot that read `target` when this was called still holds that read and
    /// `also` holds, or `deadline` passes; returns false on timeout.
    fn wait_unread(&self, target: *const (), deadline: Duration, also: impl Fn() -> bool) -> bool {
        let started = Instant::now();
        let mut pending = self.readers_of(target);
        let mut nap = Duration::from_micros(20);
        loop {
            pending.retain(|(record, depth, ends)| record.still_reads(*depth, *ends, target));
            if pending.is_empty() && also() {
                return true;
            }
            if started.elapsed() >= deadline {
                return false;
            }
            pause(nap);
            nap = (nap * 2).min(Duration::from_millis(1));
        }
    }

    fn defer<T: Send + Sync + 'static>(&self, value: Arc<T>) {
        let address = Arc::as_ptr(&value).cast::<()>() as usize;
        self.limbo.lock().push((address, Box::new(value)));
        self.reclaim();
    }

    /// Frees the retired values no reader names any more. Runs whenever a value is retired and
    /// from the host's supervisor.
    pub(crate) fn reclaim(&self) {
        let mut limbo = self.limbo.lock();
        if limbo.is_empty() {
            return;
        }
        heavy_fence();
        let records: Vec<&'static ThreadRecord> = self.records.lock().clone();
        let freed: Vec<_> = {
            let (kept, freed): (Vec<_>, Vec<_>) = limbo
                .drain(..)
                .partition(|(address, _)| records.iter().any(|r| r.names(*address)));
            *limbo = kept;
            freed
        };
        drop(limbo);
        // Dropped outside the lock: a value's destructor may retire other values.
        drop(freed);
    }
}

/// Frees the retired values of the process's domain that no reader names any more.
pub(crate) fn reclaim() {
    Domain::global().reclaim();
}

/// Calls `f` with every thread record of the process (leased or not).
pub(crate) fn each_record(f: impl FnMut(&'static ThreadRecord)) {
    Domain::global().each_record(f);
}

struct Lease(&'static ThreadRecord);

impl Drop for Lease {
    fn drop(&mut self) {
        let _ = RECORD.try_with(|cell| cell.set(None));
        Domain::global().release(self.0);
    }
}

thread_local! {
    static LEASE: Lease = Lease(Domain::global().acquire());
    /// The leased record, cached so the hot path reads one plain thread-local.
    static RECORD: Cell<Option<&'static ThreadRecord>> = const { Cell::new(None) };
}

/// This thread's record; `None` while the thread's locals are being torn down.
#[inline]
pub(crate) fn this_thread() -> Option<&'static ThreadRecord> {
    if let Ok(Some(record)) = RECORD.try_with(Cell::get) {
        return Some(record);
    }
    lease_record()
}

/// The first [`this_thread`] of a thread: leases its record.
#[cold]
fn lease_record() -> Option<&'static ThreadRecord> {
    let record = LEASE.try_with(|lease| lease.0).ok()?;
    let _ = RECORD.try_with(|cell| cell.set(Some(record)));
    Some(record)
}

#[cfg(all(any(target_os = "linux", target_os = "android"), not(loom)))]
mod barrier {
    const MEMBARRIER_CMD_QUERY: libc::c_int = 0;
    const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
    const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

    /// Lets a test make the system call fail, as a seccomp filter installed later would.
    #[cfg(test)]
    pub(super) static FAIL: std::sync::atomic::AtomicBool =
        std::sync::atomic::AtomicBool::new(false);

    fn membarrier(command: libc::c_int) -> libc::c_long {
        #[cfg(test)]
        if command == MEMBARRIER_CMD_PRIVATE_EXPEDITED
            && FAIL.load(std::sync::atomic::Ordering::SeqCst)
        {
            return -1;
        }
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

    /// Whether the process can use the asymmetric fence (and is registered for it).
    pub(super) fn available() -> bool {
        let supported = membarrier(MEMBARRIER_CMD_QUERY);
        supported >= 0
            && supported & libc::c_long::from(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0
            && membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0
    }

    /// A full barrier on every running thread of the process, or false.
    pub(super) fn all_threads() -> bool {
        membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0
    }
}

#[cfg(not(all(any(target_os = "linux", target_os = "android"), not(loom))))]
mod barrier {
    pub(super) fn available() -> bool {
        false
    }

    pub(super) fn all_threads() -> bool {
        false
    }
}

/// Whether the heavy side of the fence is `membarrier`; settled before the first cell exists,
/// and never changed after: readers rely on it.
static ASYMMETRIC: OnceLock<bool> = OnceLock::new();

fn asymmetric() -> bool {
    *ASYMMETRIC.get_or_init(barrier::available)
}

/// The readers' side of the fence.
#[inline]
fn light_fence() {
    // `asymmetric()` was settled when the first cell was made, before any reader could run.
    if ASYMMETRIC.get().copied().unwrap_or(false) {
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
    } else {
        fence(Ordering::SeqCst);
    }
}

/// The writers' side: after this, every reader's hazard published before it is visible, and
/// every reader that publishes later sees what was stored before it.
fn heavy_fence() {
    if asymmetric() {
        if barrier::all_threads() {
            return;
        }
        // Readers fence with the compiler only: a full fence on this side alone would not order
        // their hazards against this thread's loads, and a value could be freed under a call.
        eprintln!(
            "airlock: membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) failed after the process came \
             to rely on it (was a seccomp filter installed after the host started?); aborting \
             rather than risk freeing memory a plugin call is using"
        );
        std::process::abort();
    }
    fence(Ordering::SeqCst);
}

/// A value that readers see with one acquire load. Replacing it keeps the old value until the
/// cell is dropped, so a reader that loaded it can go on using it: memory grows by one value
/// per replacement.
pub(crate) struct Retaining<T> {
    current: AtomicPtr<T>,
    /// Every value the cell has held; boxed, so their addresses do not move when it grows.
    all: Mutex<Vec<Box<T>>>,
}

impl<T> std::fmt::Debug for Retaining<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retaining").finish_non_exhaustive()
    }
}

impl<T> Retaining<T> {
    pub(crate) fn new(value: T) -> Self {
        let mut first = Box::new(value);
        let current = AtomicPtr::new(ptr::from_mut(&mut *first));
        Self {
            current,
            all: Mutex::new(vec![first]),
        }
    }

    /// The current value.
    #[inline(always)]
    pub(crate) fn get(&self) -> &T {
        // SAFETY: `current` always points into one of the boxes in `all` (set in `new` and
        // `replace`, each time to a box pushed there first), which are only dropped with the
        // cell; the acquire load pairs with the release store that published the pointer after
        // its box was written. The borrow cannot outlive `&self`.
        unsafe { &*self.current.load(Ordering::Acquire) }
    }

    /// Makes `value` the current value; the one it replaces stays alive with the cell.
    pub(crate) fn replace(&self, value: T) {
        let mut all = self.all.lock();
        let mut boxed = Box::new(value);
        let address = ptr::from_mut(&mut *boxed);
        all.push(boxed);
        self.current.store(address, Ordering::Release);
    }

    /// How many values the cell holds, the current one included.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.all.lock().len()
    }
}

// SAFETY: the cell hands out `&T` to any thread (so `T: Sync`) and moves values in from any
// thread and drops them on the thread that drops the cell (so `T: Send`).
unsafe impl<T: Send + Sync> Sync for Retaining<T> {}
// SAFETY: as above; the raw pointer only ever points into the cell's own boxes.
unsafe impl<T: Send + Sync> Send for Retaining<T> {}

/// An `Arc<T>` that readers use without touching its reference count.
pub(crate) struct Guarded<T> {
    ptr: AtomicPtr<T>,
    owner: Mutex<Option<Arc<T>>>,
    /// Readers on the slow path (nesting deeper than the record holds).
    slow: AtomicUsize,
    domain: &'static Domain,
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

/// A call in progress, marked in its thread's record ([`Guarded::with_call`]).
#[derive(Clone, Copy)]
pub(crate) struct CallMark {
    record: &'static ThreadRecord,
    depth: usize,
    /// The call's number: its slot's end count while it runs.
    number: u64,
}

impl CallMark {
    /// Whether a watchdog reported this very call as overrunning, or it was cancelled for the
    /// plugin ([`ThreadRecord::cancel_innermost_call`]).
    #[inline(always)]
    pub(crate) fn reported(self) -> bool {
        self.record.watch.was_reported(self.depth, self.number)
    }

    /// Settles a reported call as it returns: true if it ends `cancelled` (the watchdog has not
    /// counted it as a fault, and now never will), false if the watchdog got there first.
    pub(crate) fn settle(self) -> bool {
        self.record.watch.settle(self.depth, self.number)
    }
}

/// What publishing found: the value, read until the [`EndRead`] is dropped, or an empty cell.
enum Publication<'a, T> {
    Read(&'a T, EndRead),
    Empty,
}

/// Ends a read when dropped, panicking or not.
struct EndRead {
    record: &'static ThreadRecord,
    depth: usize,
}

impl Drop for EndRead {
    #[inline(always)]
    fn drop(&mut self) {
        self.record.end(self.depth);
        self.record.depth.store(self.depth, Ordering::Relaxed);
    }
}

/// Counts an untimed call (one on the slow path) in its thread's record until it ends,
/// panicking or not.
struct UntimedCall(&'static ThreadRecord);

impl UntimedCall {
    fn new(record: &'static ThreadRecord) -> Self {
        let untimed = &record.untimed;
        untimed.store(untimed.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        Self(record)
    }
}

impl Drop for UntimedCall {
    fn drop(&mut self) {
        let untimed = &self.0.untimed;
        untimed.store(untimed.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
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
        Self::new_in(Domain::global(), value)
    }

    /// A cell whose readers and retired values belong to `domain`.
    pub(crate) fn new_in(domain: &'static Domain, value: Option<Arc<T>>) -> Self {
        const {
            assert!(
                std::mem::align_of::<T>() >= 2,
                "a call mark takes the low bit of the address"
            );
        }
        asymmetric();
        let ptr = value
            .as_ref()
            .map_or(ptr::null_mut(), |v| Arc::as_ptr(v).cast_mut());
        Self {
            ptr: AtomicPtr::new(ptr),
            owner: Mutex::new(value),
            slow: AtomicUsize::new(0),
            domain,
        }
    }

    /// Runs `f` with the current value. The value stays alive until `f` returns, and a writer
    /// replacing it keeps it alive until then (see [`Retired`]).
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(Option<&T>) -> R) -> R {
        self.with_record(this_thread(), f)
    }

    /// [`Guarded::with`] publishing in `record` (the calling thread's own record).
    #[inline(always)]
    pub(crate) fn with_record<R>(
        &self,
        record: Option<&'static ThreadRecord>,
        f: impl FnOnce(Option<&T>) -> R,
    ) -> R {
        self.read(
            record,
            0,
            #[inline(always)]
            |value, _| f(value),
        )
    }

    /// [`Guarded::with_record`] for a call into a plugin: the slot is marked as a call, so the
    /// watchdog times it while `f` runs; `f` gets the call's [`CallMark`] (`None` when the call
    /// is not timed: too deeply nested, or no record).
    #[inline(always)]
    pub(crate) fn with_call<R>(
        &self,
        record: Option<&'static ThreadRecord>,
        f: impl FnOnce(Option<&T>, Option<CallMark>) -> R,
    ) -> R {
        self.read(record, CALL, f)
    }

    /// The one reader: publishes, then calls `f` at a single place (so that the compiler
    /// inlines it: the call path has no closure boundary), then ends the read.
    #[inline(always)]
    fn read<R>(
        &self,
        record: Option<&'static ThreadRecord>,
        mark: usize,
        f: impl FnOnce(Option<&T>, Option<CallMark>) -> R,
    ) -> R {
        // Declared first, dropped last: a slow-path reader's count and counted reference, and
        // its thread's count of untimed calls.
        let mut untimed = None;
        let mut slow = None;
        let mut slow_value = None;
        let (value, call, _end) = match record.and_then(|r| self.publish(r, mark)) {
            Some(Publication::Read(value, end)) => {
                let call = (mark == CALL).then_some(CallMark {
                    record: end.record,
                    depth: end.depth,
                    number: end.record.ends[end.depth].load(Ordering::Relaxed),
                });
                (Some(value), call, Some(end))
            }
            Some(Publication::Empty) => (None, None, None),
            None => {
                self.slow.fetch_add(1, Ordering::SeqCst);
                slow = Some(SlowRead(&self.slow));
                slow_value = self.owner.lock().clone();
                untimed = record.filter(|_| mark == CALL).map(UntimedCall::new);
                (slow_value.as_deref(), None, None)
            }
        };
        let result = f(value, call);
        drop(_end);
        drop((slow_value, slow, untimed));
        result
    }

    /// Publishes the cell's value in `record`'s next slot and checks it is still the cell's;
    /// `None` when the record's slots are all in use (the caller takes the slow path).
    #[inline(always)]
    fn publish(&self, record: &'static ThreadRecord, mark: usize) -> Option<Publication<'_, T>> {
        let depth = record.depth.load(Ordering::Relaxed);
        if depth >= DEPTH {
            return None;
        }
        let hazard = &record.hazards[depth];
        let mut current = self.ptr.load(Ordering::Acquire);
        if current.is_null() {
            return Some(Publication::Empty);
        }
        loop {
            // Release: the watchdog that reads this publication also sees the end count the
            // slot's previous read left (`ThreadRecord::call_at`).
            hazard.store(
                current.cast::<()>().map_addr(|a| a | mark),
                Ordering::Release,
            );
            light_fence();
            let again = self.ptr.load(Ordering::Acquire);
            if again == current {
                break;
            }
            if again.is_null() {
                // Emptied meanwhile: withdraw the publication before answering, or an idle
                // thread would look like a reader of the retired value forever.
                record.end(depth);
                return Some(Publication::Empty);
            }
            current = again;
        }
        record.depth.store(depth + 1, Ordering::Relaxed);
        // SAFETY: `current` came from `Arc::as_ptr` of the value the cell held when this
        // thread's slot `depth` named it: the slot was published (and fenced) before the cell
        // was read again and found unchanged. A writer takes the value out of the cell before
        // it fences and scans the slots (`Retired`), and keeps its `Arc` until this very slot
        // no longer holds this read (its end count moved, or it names another address). The
        // borrow lives as long as the returned `EndRead` (the caller drops it after its last
        // use of the value), which clears the slot; nested reads use deeper slots and never
        // clear this one.
        let value = unsafe { &*current };
        Some(Publication::Read(value, EndRead { record, depth }))
    }

    /// The address of the value in the cell now (what the watchdog matches calls against).
    pub(crate) fn address(&self) -> usize {
        self.ptr.load(Ordering::Acquire) as usize
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
        Retired {
            value: std::mem::replace(owner, value),
            domain: self.domain,
        }
    }

    /// Waits until every reader of `value` that started before this call has finished (new
    /// readers are not waited for, so a stream of them cannot starve this), or `deadline`
    /// passes; returns false on timeout. For a value still in the cell, this is "wait for the
    /// calls in flight".
    pub(crate) fn wait_readers(&self, value: &Arc<T>, deadline: Duration) -> bool {
        self.domain
            .wait_unread(Arc::as_ptr(value).cast(), deadline, || {
                self.slow.load(Ordering::SeqCst) == 0
            })
    }
}

/// A value taken out of a [`Guarded`] cell that readers may still be using. Dropping it frees
/// the value once no reader uses it (at once, or later from [`reclaim`]).
#[must_use = "dropping a retired value defers it; wait() to know it is no longer read"]
pub(crate) struct Retired<T: Send + Sync + 'static> {
    value: Option<Arc<T>>,
    domain: &'static Domain,
}

impl<T: Send + Sync + 'static> Retired<T> {
    /// The retired value.
    pub(crate) fn get(&self) -> Option<&Arc<T>> {
        self.value.as_ref()
    }

    /// Waits until no reader uses the value, up to `deadline`: no slot holds a read of it and
    /// no slow-path reader holds a counted reference. `Ok` hands the value back, the only
    /// reference left (it may be dropped or unwrapped); `Err` means it was still read at the
    /// deadline, and it is left to [`reclaim`].
    pub(crate) fn wait(mut self, deadline: Duration) -> Result<Option<Arc<T>>, StillRead> {
        let Some(value) = self.value.take() else {
            return Ok(None);
        };
        let only = || Arc::strong_count(&value) == 1;
        if self
            .domain
            .wait_unread(Arc::as_ptr(&value).cast(), deadline, only)
        {
            Ok(Some(value))
        } else {
            self.domain.defer(value);
            Err(StillRead)
        }
    }
}

impl<T: Send + Sync + 'static> Drop for Retired<T> {
    fn drop(&mut self) {
        if let Some(value) = self.value.take() {
            self.domain.defer(value);
        }
    }
}

/// A retired value was still being read at the deadline.
#[derive(Debug)]
pub(crate) struct StillRead;

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Counts how many values were dropped.
    struct Counted(u32, Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Asserts that `record` is inside no read: depth 0, every slot clear.
    fn assert_clean(record: &ThreadRecord) {
        assert_eq!(record.depth.load(Ordering::Relaxed), 0);
        assert!(record
            .hazards
            .iter()
            .all(|h| h.load(Ordering::Relaxed).is_null()));
    }

    /// Blocks a reader thread inside `cell.with` until released.
    struct Reader {
        entered: Arc<AtomicBool>,
        release: Arc<AtomicBool>,
    }

    impl Reader {
        fn new() -> Self {
            Self {
                entered: Arc::new(AtomicBool::new(false)),
                release: Arc::new(AtomicBool::new(false)),
            }
        }

        fn wait_entered(&self) {
            while !self.entered.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
        }

        fn hold(&self) {
            self.entered.store(true, Ordering::SeqCst);
            while !self.release.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
        }
    }

    #[test]
    fn a_retired_value_outlives_its_readers_and_new_readers_see_the_new_one() {
        let dropped = Arc::new(AtomicUsize::new(0));
        let cell = Arc::new(Guarded::new(Some(Arc::new(Counted(1, dropped.clone())))));
        let gate = Reader::new();
        let reader = {
            let (cell, entered, release) =
                (cell.clone(), gate.entered.clone(), gate.release.clone());
            std::thread::spawn(move || {
                cell.with(|v| {
                    Reader { entered, release }.hold();
                    v.map(|v| v.0)
                })
            })
        };
        gate.wait_entered();
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
        gate.release.store(true, Ordering::SeqCst);
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

    /// The use-after-free of the first version: an inner read ending (a host callback during a
    /// call) made a waiter believe the outer read (the call) had ended.
    #[test]
    fn a_replaced_value_stays_readable_until_the_cell_is_dropped() {
        let cell = Retaining::new(String::from("first"));
        let first: &String = cell.get();
        cell.replace(String::from("second"));
        assert_eq!(first, "first", "the replaced value is still there");
        assert_eq!(cell.get(), "second");
        assert_eq!(cell.held(), 2);
    }

    #[test]
    fn an_inner_read_ending_does_not_end_the_outer_read() {
        let outer = Arc::new(Guarded::new(Some(Arc::new(1u32))));
        let inner = Arc::new(Guarded::new(Some(Arc::new(2u32))));
        let gate = Reader::new();
        let reader = {
            let (outer, inner, entered, release) = (
                outer.clone(),
                inner.clone(),
                gate.entered.clone(),
                gate.release.clone(),
            );
            std::thread::spawn(move || {
                outer.with(|v| {
                    // A nested read that begins and ends while the outer one goes on.
                    inner.with(|i| std::hint::black_box(i.copied()));
                    Reader { entered, release }.hold();
                    v.copied()
                })
            })
        };
        gate.wait_entered();
        let retired = outer.replace(None);
        assert!(
            retired.wait(Duration::from_millis(50)).is_err(),
            "the outer read is still going on: its value must not be handed back"
        );
        gate.release.store(true, Ordering::SeqCst);
        assert_eq!(reader.join().expect("reader"), Some(1));
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
    fn a_slow_path_reader_holds_a_retired_value_until_it_ends() {
        // Nest deeper than the record holds, so the innermost read clones the Arc; retiring
        // that value must wait for it like for any other reader.
        let cells: Vec<Arc<Guarded<usize>>> = (0..=DEPTH)
            .map(|i| Arc::new(Guarded::new(Some(Arc::new(i)))))
            .collect();
        let gate = Reader::new();
        let reader = {
            let (cells, entered, release) =
                (cells.clone(), gate.entered.clone(), gate.release.clone());
            std::thread::spawn(move || {
                fn nest(cells: &[Arc<Guarded<usize>>], at_bottom: &dyn Fn()) {
                    match cells.split_first() {
                        None => at_bottom(),
                        Some((first, rest)) => first.with(|_| nest(rest, at_bottom)),
                    }
                }
                nest(&cells, &|| {
                    Reader {
                        entered: entered.clone(),
                        release: release.clone(),
                    }
                    .hold()
                });
            })
        };
        gate.wait_entered();
        let deepest = cells.last().expect("cells");
        let retired = deepest.replace(None);
        assert!(
            retired.wait(Duration::from_millis(50)).is_err(),
            "a slow-path reader still uses the value"
        );
        gate.release.store(true, Ordering::SeqCst);
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
        assert_clean(record);
    }

    #[test]
    fn cancelling_an_untimed_call_does_not_mark_the_outer_plugins_call() {
        fn fill(cells: &[Guarded<usize>], at_bottom: &dyn Fn()) {
            match cells.split_first() {
                None => at_bottom(),
                Some((first, rest)) => first.with(|_| fill(rest, at_bottom)),
            }
        }
        let outer = Guarded::new(Some(Arc::new(1)));
        let inner = Guarded::new(Some(Arc::new(2)));
        let reads: Vec<Guarded<usize>> = (0..DEPTH)
            .map(|i| Guarded::new(Some(Arc::new(i))))
            .collect();
        let record = this_thread();
        let reported = outer.with_call(record, |_, call| {
            let call = call.expect("the outer call is timed");
            // Every other slot in use: the inner call is untimed, and the innermost one.
            fill(&reads[1..], &|| {
                inner.with_call(record, |_, untimed| {
                    assert!(untimed.is_none());
                    let record = record.expect("record");
                    assert!(record.in_call());
                    assert!(!record.innermost_call_reported());
                    record.cancel_innermost_call();
                });
            });
            call.reported()
        });
        assert!(!reported, "the outer plugin's call was marked cancelled");
        assert!(!record.expect("record").in_call());
    }

    #[test]
    fn a_record_handed_on_starts_clean() {
        let domain: &'static Domain = Box::leak(Box::new(Domain::new()));
        let record = domain.acquire();
        // Its owner exits with a slot still set (it must not happen, but must not carry over).
        record.hazards[3].store(ptr::NonNull::<()>::dangling().as_ptr(), Ordering::Relaxed);
        record.depth.store(4, Ordering::Relaxed);
        domain.release(record);
        let next = domain.acquire();
        assert!(ptr::eq(next, record), "the free record is reused");
        assert_clean(next);
    }

    /// Runs in a child process (see below): makes membarrier fail after the process relies on
    /// it, then retires a value.
    #[test]
    fn child_membarrier_failure() {
        if std::env::var_os("AIRLOCK_TEST_MEMBARRIER_CHILD").is_none() {
            return;
        }
        let cell = Guarded::new(Some(Arc::new(1u32)));
        barrier_fail();
        drop(cell.replace(None).wait(Duration::from_millis(10)));
        println!("survived a writer-only fence");
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn barrier_fail() {
        barrier::FAIL.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn barrier_fail() {}

    #[test]
    fn a_failing_membarrier_aborts_instead_of_fencing_one_side() {
        if !asymmetric() {
            // Both sides use full fences here: a failure cannot unpair them.
            return;
        }
        let exe = std::env::current_exe().expect("test binary");
        let output = std::process::Command::new(exe)
            .args([
                "--exact",
                "sync::hazard::tests::child_membarrier_failure",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("AIRLOCK_TEST_MEMBARRIER_CHILD", "1")
            .output()
            .expect("run the child");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && !stdout.contains("survived"),
            "the child went on after the fence failed: {stdout}"
        );
        assert!(stderr.contains("membarrier"), "no reason given: {stderr}");
    }
}

/// Model checks of the scheme with loom (`scripts/loom.sh`): every interleaving of the
/// readers' and writers' steps, under the C11 memory model, within a preemption bound.
#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use loom::sync::atomic::AtomicBool as LoomBool;

    /// A value that knows whether the writer has destroyed it.
    struct Probe {
        alive: LoomBool,
    }

    impl Probe {
        fn new() -> Arc<Self> {
            Arc::new(Self {
                alive: LoomBool::new(true),
            })
        }
    }

    fn domain() -> &'static Domain {
        Box::leak(Box::new(Domain::new()))
    }

    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        // LOOM_MAX_PREEMPTIONS raises it (scripts/loom.sh sets 3 unless told otherwise).
        builder.preemption_bound = builder.preemption_bound.or(Some(3));
        builder.check(f);
    }

    /// A thread that reads `cell` through `record` and checks that what it reads was not
    /// destroyed under it.
    fn checking_reader(
        cell: &Arc<Guarded<Probe>>,
        record: &'static ThreadRecord,
    ) -> loom::thread::JoinHandle<()> {
        let cell = cell.clone();
        loom::thread::spawn(move || {
            cell.with_record(Some(record), |v| {
                if let Some(v) = v {
                    assert!(v.alive.load(Ordering::SeqCst), "read after destroy");
                }
            });
        })
    }

    /// A cell of a fresh domain holding a live probe, and a record of that domain to read it
    /// through.
    fn probed_cell() -> (Arc<Guarded<Probe>>, &'static ThreadRecord) {
        let domain = domain();
        let cell = Arc::new(Guarded::new_in(domain, Some(Probe::new())));
        (cell, domain.acquire())
    }

    /// A checking reader racing the writer's teardown of a probed cell; returns the reader's
    /// record once both are done.
    fn a_reader_racing_teardown() -> &'static ThreadRecord {
        let (cell, record) = probed_cell();
        let reader = checking_reader(&cell, record);
        retire_and_destroy(&cell);
        reader.join().expect("reader");
        record
    }

    /// The writer's side of teardown: retire, wait for the readers, destroy.
    fn retire_and_destroy(cell: &Guarded<Probe>) {
        if let Ok(Some(value)) = cell.replace(None).wait(Duration::MAX) {
            value.alive.store(false, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_reader_racing_a_replacement_sees_a_whole_value() {
        model(|| {
            let cell = Arc::new(Retaining::new(AtomicU64::new(1)));
            let reader = {
                let cell = cell.clone();
                loom::thread::spawn(move || {
                    let seen = cell.get().load(Ordering::Relaxed);
                    assert!(
                        seen == 1 || seen == 2,
                        "read {seen}: a value not yet written"
                    );
                })
            };
            // Written before it is published: a reader that finds it must see 2, never 0.
            let next = AtomicU64::new(0);
            next.store(2, Ordering::Relaxed);
            cell.replace(next);
            reader.join().expect("reader");
            assert_eq!(cell.get().load(Ordering::Relaxed), 2);
        });
    }

    #[test]
    fn a_scan_never_pairs_one_call_with_another_calls_value() {
        model(|| {
            let domain = domain();
            let first = Arc::new(Guarded::new_in(domain, Some(Probe::new())));
            let second = Arc::new(Guarded::new_in(domain, Some(Probe::new())));
            let (a, b) = (first.address(), second.address());
            let record = domain.acquire();
            let start = record.ends[0].load(Ordering::Relaxed);
            let owner = {
                let (first, second) = (first.clone(), second.clone());
                loom::thread::spawn(move || {
                    // Two calls in turn in slot 0: the second must not inherit the first's
                    // report.
                    first.with_call(Some(record), |_, call| {
                        assert!(call.is_some());
                    });
                    second.with_call(Some(record), |_, call| call.is_some_and(CallMark::reported))
                })
            };
            // The watchdog: whatever it sees is one whole call, and it reports the first only.
            for _ in 0..2 {
                if let Some((value, number)) = record.call_at(0) {
                    let expected = if value == a { start } else { start + 1 };
                    assert!(value == a || value == b, "not a call's value");
                    assert_eq!(number, expected, "a call paired with another's number");
                    if value == a {
                        record.watch.report(0, number);
                    }
                }
            }
            let second_reported = owner.join().expect("owner");
            assert!(
                !second_reported,
                "a later call in the same slot picked up an earlier call's report"
            );
        });
    }

    #[test]
    fn a_late_report_or_settling_never_touches_a_later_call() {
        model(|| {
            let (cell, record) = probed_cell();
            let first = record.ends[0].load(Ordering::Relaxed);
            let owner = {
                let cell = cell.clone();
                loom::thread::spawn(move || {
                    // The first call returns, settling itself if it was reported.
                    let first_settled = cell.with_call(Some(record), |_, call| {
                        call.is_some_and(|call| call.reported() && call.settle())
                    });
                    // The second is told it is cancelled (its plugin is torn down) and stops:
                    // it ends cancelled, whatever the watchdog does about the first.
                    let second = cell.with_call(Some(record), |_, call| {
                        record.cancel_innermost_call();
                        call.map(|call| (call.reported(), call.settle()))
                    });
                    (first_settled, second)
                })
            };
            // The watchdog acts on what a scan saw of the first call: past its timeout and
            // grace, it reports and settles it.
            let faulted = match record.call_at(0) {
                Some(call) if call.1 == first => {
                    crate::sync::watchdog::report(record, 0, call);
                    crate::sync::watchdog::settle(record, 0, call)
                }
                _ => false,
            };
            let (first_settled, second) = owner.join().expect("owner");
            let (reported, settled) = second.expect("the second call is timed");
            assert!(
                reported,
                "a late report replaced a later call's cancellation"
            );
            assert!(settled, "a late settling decided a later call");
            assert!(
                !(faulted && first_settled),
                "the first call was settled twice"
            );
        });
    }

    #[test]
    fn retiring_while_reading() {
        model(|| {
            a_reader_racing_teardown();
        });
    }

    #[test]
    fn an_inner_read_ending_does_not_end_the_outer_one() {
        model(|| {
            let domain = domain();
            let outer = Arc::new(Guarded::new_in(domain, Some(Probe::new())));
            let inner = Arc::new(Guarded::new_in(domain, Some(Probe::new())));
            let record = domain.acquire();
            let reader = {
                let (outer, inner) = (outer.clone(), inner.clone());
                loom::thread::spawn(move || {
                    outer.with_record(Some(record), |v| {
                        inner.with_record(Some(record), |i| assert!(i.is_some()));
                        if let Some(v) = v {
                            assert!(v.alive.load(Ordering::SeqCst), "outer read after destroy");
                        }
                    });
                })
            };
            retire_and_destroy(&outer);
            reader.join().expect("reader");
        });
    }

    #[test]
    fn a_read_of_an_emptied_cell_leaves_no_hazard() {
        model(|| {
            let record = a_reader_racing_teardown();
            for (depth, hazard) in record.hazards.iter().enumerate() {
                assert!(
                    hazard.load(Ordering::SeqCst).is_null(),
                    "slot {depth} still names a value after the read"
                );
            }
        });
    }

    #[test]
    fn a_record_handed_to_a_new_thread() {
        model(|| {
            let domain = domain();
            let cell = Arc::new(Guarded::new_in(domain, Some(Probe::new())));
            let first = {
                let cell = cell.clone();
                loom::thread::spawn(move || {
                    let record = domain.acquire();
                    cell.with_record(Some(record), |_| {});
                    domain.release(record);
                })
            };
            let second = {
                let cell = cell.clone();
                loom::thread::spawn(move || {
                    let record = domain.acquire();
                    cell.with_record(Some(record), |v| {
                        if let Some(v) = v {
                            assert!(v.alive.load(Ordering::SeqCst), "read after destroy");
                        }
                    });
                    domain.release(record);
                })
            };
            retire_and_destroy(&cell);
            first.join().expect("first");
            second.join().expect("second");
        });
    }

    #[test]
    fn waiting_for_the_readers_of_a_value_still_in_the_cell() {
        // Revoking a grant: the value stays; the calls in flight when the wait began end
        // before it returns.
        model(|| {
            let domain = domain();
            let value = Probe::new();
            let cell = Arc::new(Guarded::new_in(domain, Some(value.clone())));
            let done = Arc::new(LoomBool::new(false));
            let record = domain.acquire();
            let reader = {
                let (cell, done) = (cell.clone(), done.clone());
                loom::thread::spawn(move || {
                    cell.with_record(Some(record), |v| {
                        // A call that still saw the grant ends before the wait returns.
                        if v.is_some_and(|v| v.alive.load(Ordering::SeqCst)) {
                            assert!(
                                !done.load(Ordering::SeqCst),
                                "allowed after the revocation returned"
                            );
                        }
                    });
                })
            };
            value.alive.store(false, Ordering::SeqCst);
            assert!(cell.wait_readers(&value, Duration::MAX));
            done.store(true, Ordering::SeqCst);
            reader.join().expect("reader");
        });
    }
}
