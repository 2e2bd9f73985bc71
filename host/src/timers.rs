//! The `timers` service: interval jobs owned by the host. The interval is the gap between the
//! end of one run and the start of the next, so a slow job never piles up. Jobs run one at a
//! time on a timer thread of the host; cancelling a plugin's jobs waits for a run of one of
//! them to finish, so no job of a plugin runs after its teardown returns.

use std::sync::Weak;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use airlock_abi::abi::{ContextToken, InvocationKind};
use parking_lot::{Condvar, Mutex};

use crate::delivery::Deliver;

/// The most jobs one plugin may have.
pub const MAX_JOBS_PER_PLUGIN: usize = 64;

#[derive(Debug)]
struct Job {
    token: ContextToken,
    name: String,
    interval: Duration,
    due: Instant,
}

#[derive(Debug, Default)]
struct TimerState {
    jobs: Vec<Job>,
    running: Option<ContextToken>,
    stopped: bool,
}

/// The host's timer service.
#[derive(Debug)]
pub(crate) struct TimerService {
    state: std::sync::Arc<(Mutex<TimerState>, Condvar)>,
    thread: Mutex<Option<JoinHandle<()>>>,
    #[cfg_attr(
        not(feature = "testing"),
        expect(
            dead_code,
            reason = "used by the authors' test harness (feature `testing`)"
        )
    )]
    host: Weak<dyn Deliver>,
}

impl TimerService {
    /// Starts the timer thread, which runs jobs through `host` when they are due.
    pub(crate) fn start(host: Weak<dyn Deliver>) -> Self {
        let service = Self::manual(host.clone());
        let shared = service.state.clone();
        let thread = std::thread::Builder::new()
            .name("airlock-timers".to_owned())
            .spawn(move || run(&shared, &host))
            .ok();
        *service.thread.lock() = thread;
        service
    }

    /// A timer service whose jobs run only when [`TimerService::fire`] runs them (the authors'
    /// test harness: deterministic timers).
    pub(crate) fn manual(host: Weak<dyn Deliver>) -> Self {
        Self {
            state: std::sync::Arc::new((Mutex::new(TimerState::default()), Condvar::new())),
            thread: Mutex::new(None),
            host,
        }
    }

    /// Runs the job `name` of `token` once, now, on this thread; false if there is no such job.
    #[cfg(feature = "testing")]
    pub(crate) fn fire(&self, token: ContextToken, name: &str) -> bool {
        let (lock, cv) = &*self.state;
        {
            let mut state = lock.lock();
            if !state
                .jobs
                .iter()
                .any(|j| j.token == token && j.name == name)
            {
                return false;
            }
            while state.running.is_some() {
                cv.wait(&mut state);
            }
            state.running = Some(token);
        }
        if let Some(host) = self.host.upgrade() {
            host.deliver(token, InvocationKind::TIMER, name, &[]);
        }
        lock.lock().running = None;
        cv.notify_all();
        true
    }

    /// The jobs of `token`: name and interval.
    #[cfg(feature = "testing")]
    pub(crate) fn jobs(&self, token: ContextToken) -> Vec<(String, Duration)> {
        self.state
            .0
            .lock()
            .jobs
            .iter()
            .filter(|j| j.token == token)
            .map(|j| (j.name.clone(), j.interval))
            .collect()
    }

    /// Schedules (or reschedules) the job `name` of `token`.
    ///
    /// # Errors
    ///
    /// A message if the plugin already has [`MAX_JOBS_PER_PLUGIN`] jobs.
    pub(crate) fn every(
        &self,
        token: ContextToken,
        name: &str,
        interval: Duration,
    ) -> Result<(), String> {
        let (lock, cv) = &*self.state;
        let mut state = lock.lock();
        state.jobs.retain(|j| !(j.token == token && j.name == name));
        if state.jobs.iter().filter(|j| j.token == token).count() >= MAX_JOBS_PER_PLUGIN {
            return Err(format!(
                "a plugin may have at most {MAX_JOBS_PER_PLUGIN} timer jobs"
            ));
        }
        state.jobs.push(Job {
            token,
            name: name.to_owned(),
            interval,
            due: Instant::now() + interval,
        });
        cv.notify_all();
        Ok(())
    }

    /// Cancels one job; true if it existed.
    pub(crate) fn cancel(&self, token: ContextToken, name: &str) -> bool {
        let (lock, cv) = &*self.state;
        let mut state = lock.lock();
        let before = state.jobs.len();
        state.jobs.retain(|j| !(j.token == token && j.name == name));
        cv.notify_all();
        state.jobs.len() != before
    }

    /// Cancels every job of `token` and waits (up to `deadline`) for a run of one of them to
    /// finish. Returns false if a run was still going at the deadline.
    pub(crate) fn cancel_all(&self, token: ContextToken, deadline: Duration) -> bool {
        let (lock, cv) = &*self.state;
        let mut state = lock.lock();
        state.jobs.retain(|j| j.token != token);
        cv.notify_all();
        let until = Instant::now() + deadline;
        while state.running == Some(token) {
            if cv.wait_until(&mut state, until).timed_out() {
                return state.running != Some(token);
            }
        }
        true
    }

    /// How many jobs `token` has.
    pub(crate) fn count(&self, token: ContextToken) -> usize {
        self.state
            .0
            .lock()
            .jobs
            .iter()
            .filter(|j| j.token == token)
            .count()
    }

    /// Stops the timer thread.
    pub(crate) fn stop(&self) {
        {
            let (lock, cv) = &*self.state;
            lock.lock().stopped = true;
            cv.notify_all();
        }
        let handle = self.thread.lock().take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

fn run(state: &(Mutex<TimerState>, Condvar), host: &Weak<dyn Deliver>) {
    let (lock, cv) = state;
    let mut guard = lock.lock();
    loop {
        if guard.stopped {
            return;
        }
        let next = guard
            .jobs
            .iter()
            .enumerate()
            .min_by_key(|(_, j)| j.due)
            .map(|(i, j)| (i, j.due));
        let Some((index, due)) = next else {
            cv.wait(&mut guard);
            continue;
        };
        if due > Instant::now() {
            cv.wait_until(&mut guard, due);
            continue;
        }
        let token = guard.jobs[index].token;
        let name = guard.jobs[index].name.clone();
        guard.running = Some(token);
        drop(guard);
        if let Some(host) = host.upgrade() {
            host.deliver(token, InvocationKind::TIMER, &name, &[]);
        }
        guard = lock.lock();
        guard.running = None;
        if let Some(job) = guard
            .jobs
            .iter_mut()
            .find(|j| j.token == token && j.name == name)
        {
            job.due = Instant::now() + job.interval;
        }
        cv.notify_all();
    }
}
