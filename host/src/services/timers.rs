//! The `timers` service: interval and cron jobs owned by the host. An interval is the gap
//! between the end of one run and the start of the next, so a slow job never piles up; a cron
//! job (5 fields, UTC) runs when its expression matches, and a match that comes while its last
//! run is still going is skipped. Jobs run one at a time on a timer thread of the host; a run
//! started by hand ([`TimerService::run_now`]) runs on the caller's thread and is refused while
//! the same job runs, so no job ever overlaps itself. Every run has its own id. Cancelling a
//! plugin's jobs waits for its runs to finish, so no job of a plugin runs after its teardown
//! returns. The timer thread waits for a busy `serial` plugin only briefly: a run that cannot
//! start then is skipped like a cron match during a run (the job runs at its next time), so
//! one busy plugin never holds up the others' jobs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Weak;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use airlock_abi::abi::{ContextToken, InvocationKind};
use airlock_abi::wire::RunInfo;
use chrono::{DateTime, Utc};
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use parking_lot::{Condvar, Mutex};

use crate::error::RunJobError;
use crate::services::delivery::Deliver;

/// The most jobs one plugin may have.
pub const MAX_JOBS_PER_PLUGIN: usize = 64;

/// When a job runs.
#[derive(Debug, Clone)]
pub(crate) enum Schedule {
    /// After this gap since the end of the last run.
    Every(Duration),
    /// When the expression matches (UTC).
    Cron(Box<Cron>),
}

/// Parses a 5-field cron expression (minute, hour, day of month, month, day of week; no
/// seconds, no year).
///
/// # Errors
///
/// What is wrong with it.
pub(crate) fn parse_cron(expression: &str) -> Result<Cron, String> {
    let fields = expression.split_whitespace().count();
    if fields != 5 {
        return Err(format!(
            "cron expression {expression:?} has {fields} fields; it needs 5 (minute, hour, day \
             of month, month, day of week)"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(expression)
        .map_err(|e| format!("cron expression {expression:?}: {e}"))
}

/// The first time strictly after `after_ms` (milliseconds since the Unix epoch) that `cron`
/// matches, in UTC; `None` if it never does again.
pub(crate) fn next_after(cron: &Cron, after_ms: i64) -> Option<i64> {
    let after = DateTime::<Utc>::from_timestamp_millis(after_ms)?;
    cron.find_next_occurrence(&after, false)
        .ok()
        .map(|next| next.timestamp_millis())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[derive(Debug)]
struct Job {
    token: ContextToken,
    name: String,
    schedule: Schedule,
    /// When it is due next (`None`: never again).
    due: Option<Instant>,
    /// The wall time it is due at, as the run will be told.
    scheduled_ms: i64,
}

impl Job {
    /// Sets when the job is due next, counted from now.
    fn plan(&mut self) {
        let now = now_ms();
        match &self.schedule {
            Schedule::Every(interval) => {
                self.due = Some(Instant::now() + *interval);
                let ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
                self.scheduled_ms = now.saturating_add(ms);
            }
            // After the slot just run even if the clock stepped back: a slot never runs twice.
            Schedule::Cron(cron) => match next_after(cron, now.max(self.scheduled_ms)) {
                Some(next) => {
                    let wait = u64::try_from(next.saturating_sub(now)).unwrap_or(0);
                    self.due = Some(Instant::now() + Duration::from_millis(wait));
                    self.scheduled_ms = next;
                }
                None => self.due = None,
            },
        }
    }
}

#[derive(Debug, Default)]
struct TimerState {
    jobs: Vec<Job>,
    /// The jobs running now: at most one run of each.
    running: Vec<(ContextToken, String)>,
    stopped: bool,
}

impl TimerState {
    fn is_running(&self, token: ContextToken, name: &str) -> bool {
        self.running.iter().any(|(t, n)| *t == token && n == name)
    }

    fn finished(&mut self, token: ContextToken, name: &str) {
        self.running.retain(|(t, n)| !(*t == token && n == name));
    }
}

/// The host's timer service.
#[derive(Debug)]
pub(crate) struct TimerService {
    state: std::sync::Arc<(Mutex<TimerState>, Condvar)>,
    /// The last run id given.
    runs: std::sync::Arc<AtomicU64>,
    thread: Mutex<Option<JoinHandle<()>>>,
    host: Weak<dyn Deliver>,
}

impl TimerService {
    /// Starts the timer thread, which runs jobs through `host` when they are due.
    pub(crate) fn start(host: Weak<dyn Deliver>) -> Self {
        let service = Self::manual(host.clone());
        let (shared, runs) = (service.state.clone(), service.runs.clone());
        let thread = std::thread::Builder::new()
            .name("airlock-timers".to_owned())
            .spawn(move || run(&shared, &runs, &host))
            .ok();
        *service.thread.lock() = thread;
        service
    }

    /// A timer service whose jobs run only when [`TimerService::run_now`] runs them (the authors'
    /// test harness: deterministic timers).
    pub(crate) fn manual(host: Weak<dyn Deliver>) -> Self {
        Self {
            state: std::sync::Arc::new((Mutex::new(TimerState::default()), Condvar::new())),
            runs: std::sync::Arc::new(AtomicU64::new(0)),
            thread: Mutex::new(None),
            host,
        }
    }

    /// Runs the job `name` of `token` once, now, on this thread (a run by hand); its run id.
    ///
    /// # Errors
    ///
    /// [`RunJobError`]: no such job, or a run of it is going.
    pub(crate) fn run_now(&self, token: ContextToken, name: &str) -> Result<u64, RunJobError> {
        let (lock, _) = &*self.state;
        {
            let mut state = lock.lock();
            if !state
                .jobs
                .iter()
                .any(|j| j.token == token && j.name == name)
            {
                return Err(RunJobError::NoSuchJob(name.to_owned()));
            }
            if state.is_running(token, name) {
                return Err(RunJobError::AlreadyRunning(name.to_owned()));
            }
            state.running.push((token, name.to_owned()));
        }
        // The run is marked finished however delivery ends, a panic included.
        struct Finished<'s>(&'s (Mutex<TimerState>, Condvar), ContextToken, &'s str);
        impl Drop for Finished<'_> {
            fn drop(&mut self) {
                let (lock, cv) = self.0;
                lock.lock().finished(self.1, self.2);
                cv.notify_all();
            }
        }
        let _finished = Finished(&self.state, token, name);
        let info = RunInfo {
            run: self.runs.fetch_add(1, Ordering::Relaxed) + 1,
            scheduled_ms: now_ms(),
            manual: true,
        };
        if let Some(host) = self.host.upgrade() {
            let payload = serde_json::to_vec(&info).unwrap_or_default();
            let _ = host.deliver(token, InvocationKind::TIMER, name, &payload);
        }
        Ok(info.run)
    }

    /// The interval jobs of `token`: name and interval.
    #[cfg(feature = "testing")]
    pub(crate) fn jobs(&self, token: ContextToken) -> Vec<(String, Duration)> {
        self.state
            .0
            .lock()
            .jobs
            .iter()
            .filter(|j| j.token == token)
            .filter_map(|j| match j.schedule {
                Schedule::Every(interval) => Some((j.name.clone(), interval)),
                Schedule::Cron(_) => None,
            })
            .collect()
    }

    /// The cron jobs of `token`: name and expression.
    #[cfg(feature = "testing")]
    pub(crate) fn cron_jobs(&self, token: ContextToken) -> Vec<(String, String)> {
        self.state
            .0
            .lock()
            .jobs
            .iter()
            .filter(|j| j.token == token)
            .filter_map(|j| match &j.schedule {
                Schedule::Cron(cron) => Some((j.name.clone(), cron.pattern.to_string())),
                Schedule::Every(_) => None,
            })
            .collect()
    }

    /// Schedules the job `name` of `token`.
    ///
    /// # Errors
    ///
    /// A message if the plugin already has a job of this name, or [`MAX_JOBS_PER_PLUGIN`] jobs.
    pub(crate) fn schedule(
        &self,
        token: ContextToken,
        name: &str,
        schedule: Schedule,
    ) -> Result<(), String> {
        let (lock, cv) = &*self.state;
        let mut state = lock.lock();
        if state
            .jobs
            .iter()
            .any(|j| j.token == token && j.name == name)
        {
            return Err(format!(
                "the plugin already has a timer job named {name:?}; cancel it first to change it"
            ));
        }
        if state.jobs.iter().filter(|j| j.token == token).count() >= MAX_JOBS_PER_PLUGIN {
            return Err(format!(
                "a plugin may have at most {MAX_JOBS_PER_PLUGIN} timer jobs"
            ));
        }
        let mut job = Job {
            token,
            name: name.to_owned(),
            schedule,
            due: None,
            scheduled_ms: 0,
        };
        job.plan();
        state.jobs.push(job);
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
        let running = |state: &TimerState| state.running.iter().any(|(t, _)| *t == token);
        while running(&state) {
            if cv.wait_until(&mut state, until).timed_out() {
                return !running(&state);
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

fn run(state: &(Mutex<TimerState>, Condvar), runs: &AtomicU64, host: &Weak<dyn Deliver>) {
    crate::services::delivery::serve_on_this_thread();
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
            .filter_map(|(i, j)| j.due.map(|due| (i, due)))
            .min_by_key(|&(_, due)| due);
        let Some((index, due)) = next else {
            cv.wait(&mut guard);
            continue;
        };
        if due > Instant::now() {
            cv.wait_until(&mut guard, due);
            continue;
        }
        let job = &mut guard.jobs[index];
        let (token, name, scheduled_ms) = (job.token, job.name.clone(), job.scheduled_ms);
        if guard.is_running(token, &name) {
            // A run by hand is going: this one is skipped, not overlapped.
            guard.jobs[index].plan();
            continue;
        }
        guard.running.push((token, name.clone()));
        drop(guard);
        if let Some(host) = host.upgrade() {
            let info = RunInfo {
                run: runs.fetch_add(1, Ordering::Relaxed) + 1,
                scheduled_ms,
                manual: false,
            };
            let payload = serde_json::to_vec(&info).unwrap_or_default();
            // Busy: this run is skipped; the job is planned for its next time below.
            let _ = host.deliver(token, InvocationKind::TIMER, &name, &payload);
        }
        guard = lock.lock();
        guard.finished(token, &name);
        if let Some(job) = guard
            .jobs
            .iter_mut()
            .find(|j| j.token == token && j.name == name)
        {
            job.plan();
        }
        cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Milliseconds since the epoch of a UTC time written as RFC 3339.
    fn at(time: &str) -> i64 {
        DateTime::parse_from_rfc3339(time)
            .expect("a time")
            .timestamp_millis()
    }

    fn next(expression: &str, after: &str) -> String {
        let cron = parse_cron(expression).expect("valid");
        let next = next_after(&cron, at(after)).expect("a next run");
        DateTime::<Utc>::from_timestamp_millis(next)
            .expect("in range")
            .to_rfc3339()
    }

    #[test]
    fn the_next_run_is_computed_in_utc_from_a_fixed_clock() {
        // Saturday 2026-11-28.
        assert_eq!(
            next("*/15 * * * *", "2026-11-28T10:07:30Z"),
            "2026-11-28T10:15:00+00:00"
        );
        // Strictly after: a run due exactly now is the next one, not this one.
        assert_eq!(
            next("*/15 * * * *", "2026-11-28T10:15:00Z"),
            "2026-11-28T10:30:00+00:00"
        );
        assert_eq!(
            next("0 9 * * MON-FRI", "2026-11-28T10:00:00Z"),
            "2026-11-30T09:00:00+00:00"
        );
        assert_eq!(
            next("30 23 31 12 *", "2026-11-28T00:00:00Z"),
            "2026-12-31T23:30:00+00:00"
        );
        // The next 29th of February.
        assert_eq!(
            next("0 0 29 2 *", "2026-11-28T00:00:00Z"),
            "2028-02-29T00:00:00+00:00"
        );
        // A time given with an offset is the same instant.
        assert_eq!(
            next("0 * * * *", "2026-11-28T10:59:59+02:00"),
            "2026-11-28T09:00:00+00:00"
        );
    }

    #[test]
    fn only_five_valid_fields_are_a_cron_expression() {
        for bad in [
            "* * * *",
            "0 * * * * *",
            "61 * * * *",
            "* 24 * * *",
            "x * * * *",
            "",
        ] {
            let err = parse_cron(bad).expect_err(bad);
            assert!(err.contains("cron expression"), "{bad}: {err}");
        }
        assert!(parse_cron(" 5  4 * * SUN ").is_ok());
    }
}
