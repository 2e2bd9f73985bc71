//! The threads the async API runs plugin calls on. A thread that finishes a call looks for the
//! next one for a moment (yielding) before it parks, and a call handed in while enough threads
//! are looking wakes none: under load, calls pass from thread to thread without a wake-up and a
//! park each (with tokio's blocking pool, every call woke a thread: half the CPU of a busy
//! `--listen` went to switching threads). A call handed in when fewer threads are looking than
//! calls are waiting wakes an idle thread or starts one, so a call never waits behind a busy
//! thread: a slow plugin holds its own threads, never the others' calls.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

/// A call to run.
pub(super) type Job = Box<dyn FnOnce() + Send>;

/// How many times a thread with no call yields to others while it looks for the next.
const LOOK: usize = 64;
/// How long an idle thread waits for a call before it ends.
const KEEP_ALIVE: Duration = Duration::from_secs(10);
/// The most threads; past it, calls wait for a thread to be free.
const MAX_THREADS: usize = 512;

/// The pool's books, under its lock.
#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    /// Threads alive.
    threads: usize,
    /// Threads parked (not counting those a call has woken).
    idle: usize,
    /// Threads about to take a call: looking, started, or woken for one.
    looking: usize,
    /// Wake-ups given to parked threads and not yet taken.
    permits: usize,
}

struct Pool {
    state: Mutex<State>,
    wake: Condvar,
    /// How many calls wait: what a looking thread watches without the lock.
    queued: AtomicUsize,
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A call runs outside the lock and its panics are caught: a poisoned lock only means a
        // thread died between two lines here, and the books are still whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        state: Mutex::new(State::default()),
        wake: Condvar::new(),
        queued: AtomicUsize::new(0),
    })
}

/// Runs `job` on a thread of the pool (it must not panic: the async API catches the call's).
pub(super) fn run(job: Job) {
    let pool = pool();
    let mut state = pool.lock();
    state.queue.push_back(job);
    pool.queued.fetch_add(1, Ordering::Release);
    if state.queue.len() <= state.looking {
        // A thread about to take a call will take this one.
        return;
    }
    if state.idle > 0 {
        state.idle -= 1;
        state.permits += 1;
        state.looking += 1;
        pool.wake.notify_one();
    } else if state.threads < MAX_THREADS {
        state.threads += 1;
        state.looking += 1;
        drop(state);
        let started = std::thread::Builder::new()
            .name("airlock-call".to_owned())
            .spawn(move || work(pool));
        if started.is_err() {
            // No thread: the call waits for one of the others.
            let mut state = pool.lock();
            state.threads -= 1;
            state.looking -= 1;
        }
    }
}

/// A thread of the pool, counted as looking when it starts: takes calls, looks for the next for
/// a moment, parks until it is woken for one or has been idle for [`KEEP_ALIVE`].
fn work(pool: &'static Pool) {
    loop {
        for _ in 0..LOOK {
            if pool.queued.load(Ordering::Acquire) > 0 {
                break;
            }
            std::thread::yield_now();
        }
        let mut state = pool.lock();
        if let Some(job) = state.queue.pop_front() {
            pool.queued.fetch_sub(1, Ordering::Release);
            state.looking -= 1;
            drop(state);
            job();
            pool.lock().looking += 1;
            continue;
        }
        state.looking -= 1;
        state.idle += 1;
        loop {
            let (next, waited) = pool
                .wake
                .wait_timeout(state, KEEP_ALIVE)
                .unwrap_or_else(PoisonError::into_inner);
            state = next;
            if state.permits > 0 {
                // Woken for a call: counted as looking by whoever woke it.
                state.permits -= 1;
                break;
            }
            if waited.timed_out() {
                state.idle -= 1;
                state.threads -= 1;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Instant;

    #[test]
    fn a_call_never_waits_behind_a_slow_one() {
        let (done, finished) = mpsc::channel();
        // Slow calls, each holding its thread, while threads are looking or parked.
        for _ in 0..4 {
            run(Box::new(|| std::thread::sleep(Duration::from_millis(1500))));
        }
        for round in 0..20 {
            let done = done.clone();
            let sent = Instant::now();
            run(Box::new(move || {
                let _ = done.send(sent.elapsed());
            }));
            let waited = finished.recv().expect("the call ran");
            assert!(
                waited < Duration::from_millis(1000),
                "round {round}: a quick call waited {waited:?}"
            );
            if round % 5 == 0 {
                run(Box::new(|| std::thread::sleep(Duration::from_millis(1500))));
            }
        }
        let state = pool().lock();
        assert!(state.threads >= 4, "{}", state.threads);
        assert!(state.looking + state.idle <= state.threads);
    }
}
