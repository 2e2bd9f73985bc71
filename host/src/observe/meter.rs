//! What the call path writes for the metrics: per action, the calls begun and the calls that
//! answered, counted in the calling thread's own cache line (folded on read), and the durations
//! of a sample of calls in a histogram. One [`CallMeter`] per generation of a plugin; the host keeps every
//! meter it made until its generation is gone, then folds it into the plugin's totals
//! ([`super::tally::Tally`]), so that the series never go back across a reload.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::sync::hazard::{ThreadRecord, SHARDS};

/// One call in this many, on each thread, is timed (the first one included). A prime, so that
/// a thread cycling through a fixed sequence of fewer actions still times each of them.
pub(crate) const TIME_ONE_IN: usize = 61;

/// The upper bounds of the duration histograms' buckets, in seconds (`+Inf` is implied): from
/// a no-op in-process call to a call near the longest timeouts.
pub(crate) const BOUNDS: [f64; 12] = [
    0.000_001, 0.000_005, 0.000_025, 0.000_1, 0.000_5, 0.002_5, 0.01, 0.05, 0.25, 1.0, 5.0, 30.0,
];

/// Actions per cache line pair: each has two counters, begun and answered.
const PER_LINE: usize = 8;

/// Eight actions' counters on a pair of cache lines no other thread's counters share.
#[repr(align(128))]
#[derive(Default)]
struct Line([[AtomicU64; 2]; PER_LINE]);

/// A call counted as begun: where its answer is counted, beside it in the same line.
#[derive(Clone, Copy)]
pub(crate) struct Begun<'a> {
    answered: Option<&'a AtomicU64>,
    /// The shared row (a thread beyond the shards): counted with an atomic add.
    shared: bool,
}

impl Begun<'_> {
    /// Counts the call as answered.
    #[inline(always)]
    pub(crate) fn answered(self) {
        match self.answered {
            Some(cell) if self.shared => {
                cell.fetch_add(1, Ordering::Relaxed);
            }
            // Only this thread writes this shard while it holds its record.
            Some(cell) => cell.store(
                cell.load(Ordering::Relaxed).wrapping_add(1),
                Ordering::Relaxed,
            ),
            None => {}
        }
    }
}

/// Durations observed: a count per bucket (not cumulative), their number and their sum.
#[derive(Default)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; BOUNDS.len() + 1],
    count: AtomicU64,
    nanos: AtomicU64,
}

impl Histogram {
    /// Adds one duration (any thread: atomic adds, on the sampled or contended paths only).
    pub(crate) fn observe(&self, took: Duration) {
        if let Some(b) = self.buckets.get(bucket_of(took)) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.nanos.fetch_add(nanos_of(took), Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// What it holds now.
    pub(crate) fn read(&self) -> Observed {
        Observed {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            count: self.count.load(Ordering::Relaxed),
            nanos: self.nanos.load(Ordering::Relaxed),
        }
    }
}

/// The bucket a duration falls in: the first whose bound holds it, else `+Inf`.
fn bucket_of(took: Duration) -> usize {
    let seconds = took.as_secs_f64();
    BOUNDS
        .iter()
        .position(|bound| seconds <= *bound)
        .unwrap_or(BOUNDS.len())
}

fn nanos_of(took: Duration) -> u64 {
    u64::try_from(took.as_nanos()).unwrap_or(u64::MAX)
}

/// A histogram's values at one moment (buckets not cumulative; the last is `+Inf`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Observed {
    pub(crate) buckets: [u64; BOUNDS.len() + 1],
    pub(crate) count: u64,
    pub(crate) nanos: u64,
}

impl Observed {
    /// Adds one duration (a histogram kept under a lock).
    pub(crate) fn observe(&mut self, took: Duration) {
        if let Some(b) = self.buckets.get_mut(bucket_of(took)) {
            *b = b.wrapping_add(1);
        }
        self.nanos = self.nanos.wrapping_add(nanos_of(took));
        self.count = self.count.wrapping_add(1);
    }

    /// Adds `other`'s values.
    pub(crate) fn add(&mut self, other: &Observed) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine = mine.wrapping_add(theirs);
        }
        self.count = self.count.wrapping_add(other.count);
        self.nanos = self.nanos.wrapping_add(other.nanos);
    }
}

/// One generation's per-action counters of calls begun and answered, and its sampled
/// durations. An action's two counters sit side by side, in the line of the calling thread.
pub(crate) struct CallMeter {
    /// The actions' names, in the manifest's order (an action's index is its place here).
    actions: Vec<String>,
    /// Lines per shard: enough for every action.
    stride: usize,
    /// `SHARDS + 1` groups of `stride` lines: the first [`SHARDS`] each written by one thread
    /// (its record's index), the last by any other thread, with atomic adds.
    lines: Box<[Line]>,
    /// Per action: the durations of the calls timed.
    durations: Box<[Histogram]>,
}

impl CallMeter {
    /// A meter for the actions named, in their manifest's order.
    pub(crate) fn new(actions: Vec<String>) -> Self {
        let stride = actions.len().div_ceil(PER_LINE).max(1);
        Self {
            lines: (0..stride * (SHARDS + 1))
                .map(|_| Line::default())
                .collect(),
            durations: actions.iter().map(|_| Histogram::default()).collect(),
            stride,
            actions,
        }
    }

    /// The counters of `action` (begun, answered) in the lines of `shard`.
    #[inline(always)]
    fn pair(&self, shard: usize, action: usize) -> Option<&[AtomicU64; 2]> {
        self.lines
            .get(shard * self.stride + action / PER_LINE)
            .map(|line| &line.0[action % PER_LINE])
    }

    /// Counts a call of `action` begun from the thread of `record` (the caller's own): a plain
    /// load and store in that thread's line, an atomic add for threads beyond the shards.
    /// The answer, if it comes, is counted through what this returns.
    #[inline(always)]
    pub(crate) fn begun(&self, record: Option<&'static ThreadRecord>, action: usize) -> Begun<'_> {
        match record.map(ThreadRecord::index) {
            Some(shard) if shard < SHARDS => {
                let pair = self.pair(shard, action);
                if let Some([begun, _]) = pair {
                    // Only this thread writes this shard while it holds its record.
                    begun.store(
                        begun.load(Ordering::Relaxed).wrapping_add(1),
                        Ordering::Relaxed,
                    );
                }
                Begun {
                    answered: pair.map(|[_, answered]| answered),
                    shared: false,
                }
            }
            _ => {
                let pair = self.pair(SHARDS, action);
                if let Some([begun, _]) = pair {
                    begun.fetch_add(1, Ordering::Relaxed);
                }
                Begun {
                    answered: pair.map(|[_, answered]| answered),
                    shared: true,
                }
            }
        }
    }

    /// Adds the duration of a timed call of `action`.
    pub(crate) fn timed(&self, action: usize, took: Duration) {
        if let Some(histogram) = self.durations.get(action) {
            histogram.observe(took);
        }
    }

    /// The actions' names, in their manifest's order.
    pub(crate) fn actions(&self) -> &[String] {
        &self.actions
    }

    /// Counter `which` (0: begun, 1: answered) of `action`, summed over the shards.
    fn sum(&self, action: usize, which: usize) -> u64 {
        (0..=SHARDS)
            .filter_map(|shard| self.pair(shard, action))
            .map(|pair| pair[which].load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    /// The calls of `action` begun.
    pub(crate) fn begun_of(&self, action: usize) -> u64 {
        if action < self.actions.len() {
            self.sum(action, 0)
        } else {
            0
        }
    }

    /// The calls of `action` answered.
    pub(crate) fn answered_of(&self, action: usize) -> u64 {
        if action < self.actions.len() {
            self.sum(action, 1)
        } else {
            0
        }
    }

    /// The durations observed of `action`.
    pub(crate) fn durations_of(&self, action: usize) -> Observed {
        self.durations
            .get(action)
            .map(Histogram::read)
            .unwrap_or_default()
    }

    /// The calls begun, and the calls timed with their total duration.
    pub(crate) fn totals(&self) -> (u64, u64, u64) {
        (0..self.actions.len()).fold((0, 0, 0), |(calls, timed, nanos), a| {
            let d = self.durations_of(a);
            (
                calls.wrapping_add(self.begun_of(a)),
                timed.wrapping_add(d.count),
                nanos.wrapping_add(d.nanos),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_fold_over_the_threads_shards_and_the_shared_counter() {
        let meter = std::sync::Arc::new(CallMeter::new((0..40).map(|i| format!("a{i}")).collect()));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let meter = meter.clone();
                std::thread::spawn(move || {
                    let record = crate::sync::hazard::this_thread();
                    for _ in 0..1000 {
                        meter.begun(record, 0).answered();
                        meter.begun(record, 39);
                    }
                    // A thread without a record counts in the shared counter.
                    meter.begun(None, 17).answered();
                })
            })
            .collect();
        for t in threads {
            t.join().expect("joined");
        }
        assert_eq!((meter.begun_of(0), meter.answered_of(0)), (4000, 4000));
        assert_eq!((meter.begun_of(39), meter.answered_of(39)), (4000, 0));
        assert_eq!((meter.begun_of(17), meter.answered_of(17)), (4, 4));
        assert_eq!((meter.begun_of(1), meter.answered_of(1)), (0, 0));
        assert_eq!(meter.begun_of(40), 0, "no such action: nothing, no panic");
        assert_eq!(meter.totals().0, 8004);
    }

    #[test]
    fn a_duration_lands_in_the_first_bucket_whose_bound_holds_it() {
        let h = Histogram::default();
        h.observe(Duration::from_nanos(1_000)); // exactly the first bound
        h.observe(Duration::from_nanos(1_001));
        h.observe(Duration::from_secs(31)); // past the last bound: +Inf
        let seen = h.read();
        assert_eq!(seen.buckets[0], 1);
        assert_eq!(seen.buckets[1], 1);
        assert_eq!(seen.buckets[BOUNDS.len()], 1);
        assert_eq!(seen.count, 3);
        assert_eq!(seen.nanos, 2_001 + 31_000_000_000);
    }

    #[test]
    fn a_thread_times_its_first_call_and_then_one_in_the_period() {
        let record = crate::sync::hazard::this_thread().expect("a record");
        // Another test may have used this thread's record: align on its next timed call.
        while !record.time_this_call(TIME_ONE_IN) {}
        let timed = (0..TIME_ONE_IN * 3)
            .filter(|_| record.time_this_call(TIME_ONE_IN))
            .count();
        assert_eq!(timed, 3);
    }
}
