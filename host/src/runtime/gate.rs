//! The serial gate: keeps a `serial` plugin (and an isolated one, whose worker serves one call
//! at a time) to one call at a time, and makes every wait for it end.
//!
//! A call takes the gate before it is marked as a call ([`HostShared::invoke_into`]), so the
//! watchdog never times the wait as the plugin's run. Free, the gate costs what a lock costs:
//! one compare-and-swap, and the holder's index stored beside it. Only a call that finds it
//! taken pays for the rest:
//!
//! - **A call cycle on one thread** (A → B → A, A serial) is refused at once (`reentrant`): the
//!   gate knows which thread is inside.
//! - **A wait is bounded.** A call waits at most until the deadline its caller computed (its own
//!   call timeout, or less: what is left of the call it is nested in, or a service thread's
//!   short bound) and then fails `busy` without running.
//! - **A wait cycle across threads** (A → B on one thread while B → A on another, both
//!   serial) fails `busy` at once: waiters register the gate they wait for in one small
//!   registry, touched only by waits, and a new waiter follows holder → the gate that holder
//!   waits for → its holder … under the registry's lock; if that leads back to itself, it gives
//!   up. While a thread is registered it is blocked in its wait and releases nothing, and it
//!   released what it gave up before it registered, so a holder read under the registry's lock
//!   is the thread inside now, or a later one: a cycle found is a cycle that exists. A holder
//!   not yet written (a thread between taking the lock and writing its index) hides a cycle
//!   for a moment; the waiter looks again every [`SLICE`].
//!
//! How long a call may wait ([`HostShared::gate_deadline`], [`SERVICE_WAIT`]) and the refusals
//! of a call shut out ([`shut_out`]) are here too.
//!
//! [`HostShared::invoke_into`]: super::shared::HostShared::invoke_into

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};

use crate::error::CallErrorCode;
use crate::runtime::outcome::PluginState;
use crate::sync::hazard::ThreadRecord;

use super::called::{not_running, quarantined, refuse, Called};
use super::plugin::LoadedPlugin;
use super::shared::HostShared;

/// How long a waiter waits before it looks again for a wait cycle and whether the plugin is
/// still there to call.
const SLICE: Duration = Duration::from_millis(10);

/// Who waits for which gate: the waiter's record index + 1, and the gate.
static WAITING: Mutex<Vec<(usize, Arc<SerialGate>)>> = parking_lot::const_mutex(Vec::new());

/// One call at a time into a plugin, and which thread it is.
#[derive(Debug, Default)]
pub(crate) struct SerialGate {
    lock: Mutex<()>,
    /// The record index + 1 of the thread inside; 0 when none (or not yet written). Written
    /// only by the thread that holds `lock`.
    holder: AtomicUsize,
}

/// A thread inside a serial plugin; dropping it lets the next call in.
pub(super) struct SerialPass<'a> {
    gate: &'a SerialGate,
    _guard: MutexGuard<'a, ()>,
}

/// Why a call did not get through the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shut {
    /// This very thread is already inside the plugin (a call cycle on one thread).
    Reentrant,
    /// Another call stayed inside until the wait's deadline, after waiting this long.
    Busy(Duration),
    /// The thread inside waits, directly or through others, for this thread: a wait cycle.
    Cycle,
    /// The plugin stopped running (torn down or quarantined) while the call waited.
    Gone,
}

impl SerialGate {
    /// Lets the calling thread in, waiting until the deadline `until` computes (read only if the
    /// gate is taken) for the call inside to leave, and giving up early if `wanted` says the
    /// plugin is no longer there to call. `record` is the calling thread's own. A call that
    /// found the gate taken tells `waited` how long it waited (for the metrics), however its
    /// wait ended.
    #[inline]
    pub(super) fn enter(
        self: &Arc<Self>,
        record: Option<&'static ThreadRecord>,
        until: impl FnOnce() -> Instant,
        wanted: impl Fn() -> bool,
        waited: impl FnOnce(Duration),
    ) -> Result<SerialPass<'_>, Shut> {
        // 0 when the thread has no record (its locals are being torn down): never a match.
        let me = record.map_or(0, |r| r.index() + 1);
        if me != 0 && self.holder.load(Ordering::Relaxed) == me {
            return Err(Shut::Reentrant);
        }
        let guard = match self.lock.try_lock() {
            Some(guard) => guard,
            None => {
                let began = Instant::now();
                let entered = self.wait(me, until(), wanted);
                waited(began.elapsed());
                entered?
            }
        };
        self.holder.store(me, Ordering::Relaxed);
        Ok(SerialPass {
            gate: self,
            _guard: guard,
        })
    }

    /// The contended path: registered as a waiter for this gate, waits in slices until the
    /// gate is free, the deadline passes, the plugin goes, or a wait cycle shows.
    #[cold]
    #[inline(never)]
    fn wait(
        self: &Arc<Self>,
        me: usize,
        until: Instant,
        wanted: impl Fn() -> bool,
    ) -> Result<MutexGuard<'_, ()>, Shut> {
        let began = Instant::now();
        let _registered = (me != 0).then(|| {
            WAITING.lock().push((me, self.clone()));
            Registered(me)
        });
        loop {
            if me != 0 && self.closes_cycle(me) {
                return Err(Shut::Cycle);
            }
            if !wanted() {
                return Err(Shut::Gone);
            }
            let now = Instant::now();
            if now >= until {
                return Err(Shut::Busy(now.duration_since(began)));
            }
            if let Some(guard) = self.lock.try_lock_for(SLICE.min(until - now)) {
                return Ok(guard);
            }
        }
    }

    /// Whether the thread inside this gate waits, directly or through other waiters, for a gate
    /// thread `me` is inside: following holder → gate it waits for → holder, under the
    /// registry's lock (see the module's doc for why what it finds is exact). A waiter that
    /// finds a cycle leaves the registry in the same step, so that the other waiters of the
    /// cycle see it gone and only one of them gives up.
    fn closes_cycle(&self, me: usize) -> bool {
        let mut waiting = WAITING.lock();
        let mut holder = self.holder.load(Ordering::Relaxed);
        // Each waiter is followed at most once on the way to a cycle.
        for _ in 0..=waiting.len() {
            if holder == 0 {
                return false;
            }
            if holder == me {
                waiting.retain(|(waiter, _)| *waiter != me);
                return true;
            }
            let Some((_, next)) = waiting.iter().find(|(waiter, _)| *waiter == holder) else {
                return false;
            };
            holder = next.holder.load(Ordering::Relaxed);
        }
        false
    }
}

impl Drop for SerialPass<'_> {
    fn drop(&mut self) {
        // Before the lock is released (the guard is dropped after this): only the holder
        // writes `holder`.
        self.gate.holder.store(0, Ordering::Relaxed);
    }
}

/// A thread's entry in the registry of waiters, removed when its wait ends.
struct Registered(usize);

impl Drop for Registered {
    fn drop(&mut self) {
        WAITING.lock().retain(|(waiter, _)| *waiter != self.0);
    }
}

/// The longest a service thread (the health poller, the event dispatcher, the timer thread)
/// waits for a serial plugin's gate: a plugin busy for longer is passed over this time, and
/// the thread goes on to the other plugins. A health poll is skipped (the last answer stays);
/// a timer run is skipped like a cron match that comes while the job runs (the job runs at its
/// next time); an event waits in the dispatcher and is tried again, in order, after the
/// plugin's other events (`events.rs`) — without waiting at all, so that plugins that stay
/// busy do not slow the dispatcher down for the others.
pub(crate) const SERVICE_WAIT: Duration = Duration::from_millis(50);

/// The refusal of a call that did not get through a serial plugin's gate.
#[cold]
pub(super) fn shut_out(plugin: &LoadedPlugin, shut: Shut, out: &mut Vec<u8>) -> Called {
    let id = plugin.id();
    match shut {
        Shut::Reentrant => refuse(
            out,
            CallErrorCode::Reentrant,
            format_args!(
                "plugin {id} is serial and this thread is already inside it (a call cycle); \
                 refused instead of deadlocking"
            ),
        ),
        Shut::Busy(waited) => refuse(
            out,
            CallErrorCode::Busy,
            format_args!(
                "plugin {id} is serial and another call stayed inside it for the {} ms this \
                 call could wait; it did not run",
                waited.as_millis()
            ),
        ),
        Shut::Cycle => refuse(
            out,
            CallErrorCode::Busy,
            format_args!(
                "plugin {id} is serial and the call inside it waits for this thread (a wait \
                 cycle across threads); refused instead of deadlocking"
            ),
        ),
        Shut::Gone if plugin.state.is(PluginState::Quarantined) => quarantined(plugin, out),
        Shut::Gone => not_running(plugin, out),
    }
}

impl HostShared {
    /// How long a call may wait for a serial plugin's gate (asked only when the gate is taken):
    /// its own call timeout; no longer than what is left of the call this thread is nested in
    /// (a wait past it would outlive its caller); and for a service thread's own entry (a
    /// health poll, an event, a timer run, not a call nested in one) no longer than
    /// [`SERVICE_WAIT`], so that one busy plugin never holds up the others.
    #[cold]
    pub(super) fn gate_deadline(
        &self,
        record: Option<&'static ThreadRecord>,
        plugin: &LoadedPlugin,
    ) -> Instant {
        let now = Instant::now();
        let outer = record.and_then(|r| r.innermost_call_timed(now));
        let mut bound = plugin.policy.call_timeout;
        // A service thread's own entry; a call nested in the plugin it entered is that
        // plugin's, bounded by what is left of it.
        if outer.is_none() && crate::services::delivery::on_service_thread() {
            // Trying again what a busy plugin could not take: no wait at all.
            let wait = if crate::services::delivery::is_retrying() {
                Duration::ZERO
            } else {
                SERVICE_WAIT
            };
            bound = bound.min(wait);
        }
        // A timeout too large to add is no bound short of the process's life.
        let far = || now + Duration::from_secs(365 * 24 * 3600);
        let mut until = now.checked_add(bound).unwrap_or_else(far);
        if let Some((address, from, limit)) = outer {
            // The outer call's timeout, as the watchdog saw it, or from this host's table.
            let limit = limit.or_else(|| {
                self.table()
                    .iter()
                    .find(|p| p.running.address() == address)
                    .map(|p| p.policy.call_timeout)
            });
            if let Some(limit) = limit.and_then(|limit| from.checked_add(limit)) {
                until = until.min(limit);
            }
        }
        until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::mpsc;

    use crate::sync::hazard::this_thread;

    /// Runs `f` on a thread of its own inside `first`, then asks it to enter `second`; returns
    /// how that ended.
    fn hold_then_enter(
        first: Arc<SerialGate>,
        second: Arc<SerialGate>,
        inside: mpsc::Sender<()>,
        go: mpsc::Receiver<()>,
        bound: Duration,
    ) -> std::thread::JoinHandle<Result<(), Shut>> {
        std::thread::spawn(move || {
            let record = this_thread();
            let _pass = first
                .enter(record, Instant::now, || true, |_| {})
                .expect("free");
            inside.send(()).expect("told");
            go.recv().expect("go");
            let until = Instant::now() + bound;
            second.enter(record, || until, || true, |_| {}).map(drop)
        })
    }

    #[test]
    fn two_threads_entering_each_others_gate_do_not_deadlock() {
        let (a, b) = (
            Arc::new(SerialGate::default()),
            Arc::new(SerialGate::default()),
        );
        let (in1, inside1) = mpsc::channel();
        let (in2, inside2) = mpsc::channel();
        let (go1, start1) = mpsc::channel();
        let (go2, start2) = mpsc::channel();
        let bound = Duration::from_secs(60);
        let one = hold_then_enter(a.clone(), b.clone(), in1, start1, bound);
        let two = hold_then_enter(b.clone(), a.clone(), in2, start2, bound);
        inside1.recv().expect("one inside a");
        inside2.recv().expect("two inside b");
        let began = Instant::now();
        go1.send(()).expect("go");
        go2.send(()).expect("go");
        let (one, two) = (one.join().expect("one"), two.join().expect("two"));
        // One of them finds the cycle and gives up; the other then gets in.
        assert!(
            matches!(
                (one, two),
                (Err(Shut::Cycle), Ok(())) | (Ok(()), Err(Shut::Cycle))
            ),
            "{one:?} {two:?}"
        );
        assert!(
            began.elapsed() < bound / 2,
            "waited for the bound, not the cycle"
        );
        let left = WAITING
            .lock()
            .iter()
            .any(|(_, g)| Arc::ptr_eq(g, &a) || Arc::ptr_eq(g, &b));
        assert!(!left, "a waiter stayed registered");
    }

    #[test]
    fn a_wait_ends_at_its_deadline_and_the_same_thread_is_refused() {
        let gate = Arc::new(SerialGate::default());
        let record = this_thread();
        let pass = gate
            .enter(record, Instant::now, || true, |_| {})
            .expect("free");
        assert_eq!(
            gate.enter(record, Instant::now, || true, |_| {}).map(drop),
            Err(Shut::Reentrant)
        );
        let other = {
            let gate = gate.clone();
            std::thread::spawn(move || {
                let until = Instant::now() + Duration::from_millis(30);
                gate.enter(this_thread(), || until, || true, |_| {})
                    .map(drop)
            })
        };
        assert!(matches!(other.join().expect("other"), Err(Shut::Busy(_))));
        let gone = {
            let gate = gate.clone();
            std::thread::spawn(move || {
                let until = Instant::now() + Duration::from_secs(60);
                gate.enter(this_thread(), || until, || false, |_| {})
                    .map(drop)
            })
        };
        assert_eq!(gone.join().expect("gone"), Err(Shut::Gone));
        drop(pass);
        assert!(gate.enter(record, Instant::now, || true, |_| {}).is_ok());
    }
}
