//! The routines' queue: the event bus offers every publication to the policy's routines
//! ([`crate::policy::Routine`]); each one it matches is queued here and run on a thread of its
//! own, through [`RunRoutine`] — which the runtime implements, so this layer never names it. The
//! publisher's thread only matches and queues: the queue is bounded by [`ROUTINE_QUEUE`], and a
//! run that finds it full is dropped and counted, so a slow target never stalls a publisher
//! or the bus. Runs happen one at a time, in the order their events were published.
//!
//! A routine's target may publish in turn, and start routines again: an event published while
//! a run is in progress on the routine thread starts runs one level deeper — and so does one a
//! subscriber publishes while the dispatcher delivers it an event published at some depth —,
//! and a run deeper than [`MAX_ROUTINE_DEPTH`] is not queued (dropped, counted and warned of),
//! so routines that feed each other, directly or through subscribers, cannot run forever. (A
//! target that publishes from a thread of its own starts again at the first level: the host
//! cannot tell.)

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use airlock_abi::wire::CallerInfo;
use parking_lot::Mutex;
use serde::Serialize;

use crate::error::CallErrorCode;
use crate::policy::Routine;

/// Routine runs waiting for the routine thread before new ones are dropped.
pub const ROUTINE_QUEUE: usize = 1024;
/// How deep routines may start each other: a run started by an event its target published
/// while running is one level deeper than that run.
pub const MAX_ROUTINE_DEPTH: u32 = 8;
/// The last routine runs kept in memory ([`crate::Host::routine_runs`]).
pub const ROUTINE_RUNS_KEPT: usize = 256;

/// How a routine run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RoutineOutcome {
    /// The target answered.
    Ok,
    /// The target answered with its own error (after the retries, if it was retryable).
    Error,
    /// The target was not running (not loaded, disabled, quarantined or torn down).
    NotRunning,
    /// The call did not run or failed for a reason not the action's own: a permission rule
    /// denied it (`permission_denied`), it waits for approval, it panicked, timed out…
    Failed(CallErrorCode),
}

/// One routine run: which event started it, whom it called, how it ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoutineRun {
    /// The routine's name.
    pub routine: String,
    /// The topic of the event.
    pub topic: String,
    /// Who published it: the caller the target saw.
    pub publisher: CallerInfo,
    /// The target plugin.
    pub plugin: String,
    /// Its action.
    pub action: String,
    /// How many times it was called (0 if it could not be).
    pub attempts: u32,
    /// How it ended.
    pub outcome: RoutineOutcome,
    /// For people: the error's message, or why it could not run.
    pub detail: String,
}

/// One routine to run: for which event.
#[derive(Debug, Clone)]
pub(crate) struct RoutineJob {
    /// Who published the event: the caller the target sees.
    pub(crate) from: CallerInfo,
    /// The topic it was published on.
    pub(crate) topic: Arc<str>,
    /// Its payload, as JSON bytes: the target's input.
    pub(crate) payload: Arc<[u8]>,
    /// 1 for an event published outside any run; one more for each run it came from.
    pub(crate) depth: u32,
}

thread_local! {
    /// The depth of the run in progress on this thread (0: none).
    static DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Runs one routine for one event: what the runtime does for the routine thread.
pub(crate) trait RunRoutine: Send + Sync {
    /// Calls the routine's target for `job`, and records how it went.
    fn run_routine(&self, routine: &Routine, job: &RoutineJob);
}

/// The policy's routines, and the thread running them.
#[derive(Debug)]
pub(crate) struct Routines {
    list: Arc<[Routine]>,
    queue: Mutex<Option<SyncSender<(usize, RoutineJob)>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    stopping: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    runs: Mutex<VecDeque<RoutineRun>>,
}

impl Routines {
    /// Starts the routine thread (none when the policy has no routines).
    pub(crate) fn start(runner: Weak<dyn RunRoutine>, list: Vec<Routine>) -> Self {
        let list: Arc<[Routine]> = list.into();
        let stopping = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let (queue, thread) = if list.is_empty() {
            (None, None)
        } else {
            let (tx, rx) = mpsc::sync_channel(ROUTINE_QUEUE);
            let (list, stopping, dropped) = (list.clone(), stopping.clone(), dropped.clone());
            let thread = std::thread::Builder::new()
                .name("airlock-routines".to_owned())
                .spawn(move || run(&rx, &runner, &list, &stopping, &dropped))
                .ok();
            (Some(tx), thread)
        };
        Self {
            list,
            queue: Mutex::new(queue),
            thread: Mutex::new(thread),
            stopping,
            dropped,
            runs: Mutex::new(VecDeque::new()),
        }
    }

    /// Keeps a record of a run (the last [`ROUTINE_RUNS_KEPT`]).
    pub(crate) fn record(&self, run: RoutineRun) {
        let mut runs = self.runs.lock();
        if runs.len() == ROUTINE_RUNS_KEPT {
            runs.pop_front();
        }
        runs.push_back(run);
    }

    /// The last runs, oldest first.
    pub(crate) fn runs(&self) -> Vec<RoutineRun> {
        self.runs.lock().iter().cloned().collect()
    }

    /// Queues a run of every routine `topic` and `payload` match; returns how many were queued.
    pub(crate) fn offer(
        &self,
        from: &CallerInfo,
        topic: &str,
        payload: &serde_json::Value,
        bytes: &dyn Fn() -> Arc<[u8]>,
    ) -> usize {
        if self.list.is_empty() {
            return 0;
        }
        let queue = self.queue.lock();
        let Some(queue) = queue.as_ref() else {
            return 0;
        };
        let mut queued = 0;
        let topic: Arc<str> = Arc::from(topic);
        let depth = DEPTH.get() + 1;
        for (index, routine) in self.list.iter().enumerate() {
            if !routine.matches(&topic, payload) {
                continue;
            }
            let job = RoutineJob {
                from: from.clone(),
                topic: topic.clone(),
                payload: bytes(),
                depth,
            };
            if depth > MAX_ROUTINE_DEPTH {
                tracing::warn!(
                    routine = %routine.name, %topic,
                    "routine not run: started by routines {MAX_ROUTINE_DEPTH} deep (a loop?)"
                );
                self.dropped.fetch_add(1, Ordering::Relaxed);
            } else if queue.try_send((index, job)).is_ok() {
                queued += 1;
            } else {
                tracing::warn!(routine = %routine.name, %topic, "routine queue full: run dropped");
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        queued
    }

    /// Runs dropped because the queue was full, because routines started each other more than
    /// [`MAX_ROUTINE_DEPTH`] deep, or because the host stopped first.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Stops the routine thread: the runs still queued are dropped and counted.
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        drop(self.queue.lock().take());
        let thread = self.thread.lock().take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// The routine depth of what this thread is doing (0: nothing a routine started).
pub(crate) fn depth() -> u32 {
    DEPTH.get()
}

/// `f` at routine depth `depth`: what it publishes starts routines one level deeper.
pub(crate) fn at_depth<R>(depth: u32, f: impl FnOnce() -> R) -> R {
    let outer = DEPTH.replace(depth);
    let result = f();
    DEPTH.set(outer);
    result
}

fn run(
    rx: &Receiver<(usize, RoutineJob)>,
    runner: &Weak<dyn RunRoutine>,
    list: &[Routine],
    stopping: &AtomicBool,
    dropped: &AtomicU64,
) {
    for (index, job) in rx {
        let Some(runner) = runner
            .upgrade()
            .filter(|_| !stopping.load(Ordering::SeqCst))
        else {
            dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        if let Some(routine) = list.get(index) {
            at_depth(job.depth, || runner.run_routine(routine, &job));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

    use super::*;
    use crate::policy::Routine;

    /// A runner that reports each run it starts and waits until it is let go.
    struct Held {
        started: SyncSender<()>,
        release: Mutex<Receiver<()>>,
    }

    impl RunRoutine for Held {
        fn run_routine(&self, _: &Routine, _: &RoutineJob) {
            let _ = self.started.send(());
            let _ = self.release.lock().recv();
        }
    }

    #[test]
    fn a_slow_target_fills_the_bounded_queue_and_what_does_not_fit_is_dropped_and_counted() {
        let (started, runs) = sync_channel(ROUTINE_QUEUE * 2);
        let (release, released) = sync_channel(ROUTINE_QUEUE * 2);
        let runner: Arc<dyn RunRoutine> = Arc::new(Held {
            started,
            release: Mutex::new(released),
        });
        let routine = Routine {
            name: "r".to_owned(),
            topic: "t.*".to_owned(),
            matches: vec![("/n".to_owned(), serde_json::json!(1))],
            plugin: airlock_abi::manifest::PluginId::new("p").expect("id"),
            action: "a".to_owned(),
            retry: None,
        };
        let routines = Routines::start(Arc::downgrade(&runner), vec![routine]);
        let from = CallerInfo::Host { principal: None };
        let bytes = || Arc::<[u8]>::from(&b"{}"[..]);
        let one = serde_json::json!({"n": 1});
        assert_eq!(routines.offer(&from, "other", &one, &bytes), 0, "topic");
        let two = serde_json::json!({"n": 2});
        assert_eq!(routines.offer(&from, "t.x", &two, &bytes), 0, "payload");
        // The first run holds the thread; then the queue fills, and the rest is dropped.
        assert_eq!(routines.offer(&from, "t.x", &one, &bytes), 1);
        runs.recv().expect("the first run started");
        let queued: usize = (0..ROUTINE_QUEUE + 5)
            .map(|_| routines.offer(&from, "t.x", &one, &bytes))
            .sum();
        assert_eq!((queued, routines.dropped()), (ROUTINE_QUEUE, 5));
        // Stopping drops what is still queued, and counts it.
        for _ in 0..=ROUTINE_QUEUE {
            let _ = release.send(());
        }
        routines.stop();
        assert!(routines.dropped() >= 5);
    }
}
