//! The host's own record of what its plugins did, for the metrics: what happens off the call
//! path (outcomes other than an answer, faults, denials, reloads, restarts, waits at a serial
//! gate, HTTP route requests) counted under one lock; the plugins' key/value and stream requests,
//! counted per thread ([`RequestCounts`]: many a call makes them, and a lock shared by every
//! thread would stop two threads' requests scaling); and the call meters of every generation
//! still alive. Kept by plugin id, across generations: a reload never sends a
//! series back.
//!
//! **Every label value a plugin can choose is bounded**: past [`MAX_LABELS`] distinct values of
//! one label for one plugin, further ones are counted as `other`, so a hostile plugin cannot
//! grow the host's memory or the scrape without bound.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::meter::{CallMeter, Observed};
use super::PluginMetrics;
use crate::sync::hazard::{ThreadRecord, SHARDS};

/// The most distinct values one plugin's label may take in one family (denied capabilities,
/// host requests, routes); the rest are counted as [`OTHER`].
pub(crate) const MAX_LABELS: usize = 64;

/// The label value counted for values past [`MAX_LABELS`].
pub(crate) const OTHER: &str = "other";

/// The requests counted per thread ([`RequestCounts`]): the key/value operations and stream
/// chunks, by service and operation.
pub(crate) const COUNTED_REQUESTS: [(&str, &str); 9] = [
    // First: [`RequestCounts::KV_GET`].
    ("kv", "get"),
    ("kv", "set"),
    ("kv", "delete"),
    ("kv", "keys"),
    ("kv", "entry"),
    ("kv", "list"),
    ("kv", "compare_and_set"),
    ("kv", "write"),
    ("stream", "emit"),
];

/// One thread's counts of a plugin's requests, on a pair of cache lines of its own.
#[repr(align(128))]
#[derive(Default)]
struct RequestLine([AtomicU64; COUNTED_REQUESTS.len()]);

/// A plugin's key/value and stream requests ([`COUNTED_REQUESTS`]), counted in the calling
/// thread's own line (a plain load and store, no read-modify-write on a line another thread
/// writes); threads past the shards add to a shared line atomically. Read by summing.
#[derive(Default)]
pub(crate) struct RequestCounts {
    lines: [RequestLine; SHARDS],
    shared: RequestLine,
}

impl RequestCounts {
    /// The index of `kv get`, which the host-function table counts without looking it up.
    pub(crate) const KV_GET: usize = 0;

    /// The index in [`COUNTED_REQUESTS`] of `service`'s `operation`, if it is counted.
    pub(crate) fn index(service: &str, operation: &str) -> Option<usize> {
        COUNTED_REQUESTS
            .iter()
            .position(|(s, o)| *s == service && *o == operation)
    }

    /// Counts one request of kind `index` from the thread whose record is `record`.
    #[inline]
    pub(crate) fn add(&self, record: Option<&'static ThreadRecord>, index: usize) {
        match record.map(ThreadRecord::index) {
            // Only this thread writes this line while it holds its record.
            Some(i) if i < SHARDS => {
                let cell = &self.lines[i].0[index];
                cell.store(
                    cell.load(Ordering::Relaxed).wrapping_add(1),
                    Ordering::Relaxed,
                );
            }
            _ => {
                self.shared.0[index].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn of(&self, index: usize) -> u64 {
        self.lines
            .iter()
            .map(|l| l.0[index].load(Ordering::Relaxed))
            .fold(
                self.shared.0[index].load(Ordering::Relaxed),
                u64::wrapping_add,
            )
    }
}

/// What the host counts of its plugins, by plugin id.
#[derive(Default)]
pub(crate) struct Tally {
    plugins: Mutex<BTreeMap<String, PluginTally>>,
}

/// One plugin's counts, over all its generations.
#[derive(Default)]
struct PluginTally {
    /// The meters of generations that may still be called.
    meters: Vec<Arc<CallMeter>>,
    /// Whether it runs one call at a time (its latest generation).
    serial: bool,
    /// Answered calls and durations of generations gone, by action.
    answered: BTreeMap<String, u64>,
    durations: BTreeMap<String, Observed>,
    /// Calls that ended otherwise than answered: by action, then outcome.
    outcomes: BTreeMap<String, BTreeMap<&'static str, u64>>,
    faults: u64,
    denials: BTreeMap<String, u64>,
    reloads: u64,
    reloads_refused: u64,
    restarts: u64,
    serial_waits: Observed,
    /// HTTP route requests by method, route and status.
    routes: BTreeMap<(String, String, u16), u64>,
    /// Key/value and stream requests, counted per thread.
    counted: Option<Arc<RequestCounts>>,
}

/// Adds one to `key`'s count in `map`, or to [`OTHER`]'s once the map holds [`MAX_LABELS`].
fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    if let Some(n) = map.get_mut(key) {
        *n += 1;
    } else if map.len() < MAX_LABELS {
        map.insert(key.to_owned(), 1);
    } else {
        *map.entry(OTHER.to_owned()).or_default() += 1;
    }
}

impl std::fmt::Debug for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tally").finish_non_exhaustive()
    }
}

impl Tally {
    fn with(&self, plugin: &str, f: impl FnOnce(&mut PluginTally)) {
        let mut plugins = self.plugins.lock();
        match plugins.get_mut(plugin) {
            Some(tally) => f(tally),
            None => f(plugins.entry(plugin.to_owned()).or_default()),
        }
    }

    /// A meter for a new generation of `plugin`, with its actions in the manifest's order.
    pub(crate) fn meter(&self, plugin: &str, actions: Vec<String>, serial: bool) -> Arc<CallMeter> {
        let meter = Arc::new(CallMeter::new(actions));
        self.with(plugin, |t| {
            // The generations gone by are folded as a new one starts, scraped or not, so a
            // host nobody scrapes keeps no retired meter.
            t.fold_retired();
            t.meters.push(meter.clone());
            t.serial = serial;
        });
        meter
    }

    /// A call of `action` that ended with `outcome` (anything but an answer).
    pub(crate) fn outcome(&self, plugin: &str, action: &str, outcome: &'static str) {
        self.with(plugin, |t| {
            let outcomes = match t.outcomes.get_mut(action) {
                Some(outcomes) => outcomes,
                None => t.outcomes.entry(action.to_owned()).or_default(),
            };
            *outcomes.entry(outcome).or_default() += 1;
        });
    }

    /// A fault: a panic contained, a call past its timeout, a worker that died.
    pub(crate) fn fault(&self, plugin: &str) {
        self.with(plugin, |t| t.faults += 1);
    }

    /// A capability (or an action, by a permission rule) denied.
    pub(crate) fn denial(&self, plugin: &str, capability: &str) {
        self.with(plugin, |t| bump(&mut t.denials, capability));
    }

    /// A new build loaded while the host runs (`refused`: refused, the old one kept serving).
    pub(crate) fn reload(&self, plugin: &str, refused: bool) {
        self.with(plugin, |t| match refused {
            false => t.reloads += 1,
            true => t.reloads_refused += 1,
        });
    }

    /// An isolated plugin's worker restarted.
    pub(crate) fn restart(&self, plugin: &str) {
        self.with(plugin, |t| t.restarts += 1);
    }

    /// A call that found the serial gate taken and waited this long.
    pub(crate) fn serial_wait(&self, plugin: &str, waited: Duration) {
        self.with(plugin, |t| t.serial_waits.observe(waited));
    }

    /// Where `plugin`'s key/value and stream requests are counted: one set of lines per plugin,
    /// across its generations, taken once per context.
    pub(crate) fn request_counts(&self, plugin: &str) -> Arc<RequestCounts> {
        let mut counts = None;
        self.with(plugin, |t| {
            counts = Some(t.counted.get_or_insert_with(Default::default).clone());
        });
        counts.unwrap_or_default()
    }

    /// A request to one of the plugin's HTTP routes, and the status it was answered.
    pub(crate) fn route(&self, plugin: &str, method: &str, route: &str, status: u16) {
        self.with(plugin, |t| {
            let key = (method.to_owned(), route.to_owned(), status);
            if t.routes.len() < MAX_LABELS || t.routes.contains_key(&key) {
                *t.routes.entry(key).or_default() += 1;
            } else {
                // Past the bound the status is kept by its class (`200`, `400`, `500`…): a
                // plugin answering every status there is adds five series, not five hundred.
                *t.routes
                    .entry((OTHER.to_owned(), OTHER.to_owned(), status / 100 * 100))
                    .or_default() += 1;
            }
        });
    }

    /// Every plugin's counts now; the meters of generations gone are folded into the totals.
    pub(crate) fn read(&self) -> Vec<PluginMetrics> {
        let mut plugins = self.plugins.lock();
        plugins.retain(|_, t| {
            t.fold_retired();
            // A plugin refused before it served (its meter made, then dropped) leaves nothing.
            !t.meters.is_empty() || !t.is_blank()
        });
        plugins.iter().map(|(id, t)| t.read(id)).collect()
    }
}

impl PluginTally {
    /// Its key/value and stream requests, summed over the threads that counted them.
    fn requests(&self) -> Vec<(String, String, u64)> {
        let Some(counted) = &self.counted else {
            return Vec::new();
        };
        let mut requests: Vec<(String, String, u64)> = COUNTED_REQUESTS
            .iter()
            .enumerate()
            .map(|(i, (service, operation))| {
                (
                    (*service).to_owned(),
                    (*operation).to_owned(),
                    counted.of(i),
                )
            })
            .filter(|(_, _, n)| *n > 0)
            .collect();
        requests.sort();
        requests
    }

    /// Folds the meters no generation holds any more into the totals.
    fn fold_retired(&mut self) {
        for meter in std::mem::take(&mut self.meters) {
            match Arc::try_unwrap(meter) {
                Ok(gone) => {
                    for (i, action) in gone.actions().iter().enumerate() {
                        *self.answered.entry(action.clone()).or_default() += gone.answered_of(i);
                        self.durations
                            .entry(action.clone())
                            .or_default()
                            .add(&gone.durations_of(i));
                    }
                }
                Err(alive) => self.meters.push(alive),
            }
        }
    }

    /// Whether nothing was counted for it.
    fn is_blank(&self) -> bool {
        self.answered.values().all(|n| *n == 0)
            && self.durations.values().all(|d| d.count == 0)
            && self.outcomes.is_empty()
            && self.faults == 0
            && self.denials.is_empty()
            && self.reloads == 0
            && self.reloads_refused == 0
            && self.restarts == 0
            && self.serial_waits.count == 0
            && self.routes.is_empty()
            && self.counted.is_none()
    }

    fn read(&self, id: &str) -> PluginMetrics {
        let mut answered = self.answered.clone();
        let mut durations = self.durations.clone();
        for meter in &self.meters {
            for (i, action) in meter.actions().iter().enumerate() {
                *answered.entry(action.clone()).or_default() += meter.answered_of(i);
                durations
                    .entry(action.clone())
                    .or_default()
                    .add(&meter.durations_of(i));
            }
        }
        let mut calls = Vec::new();
        for (action, n) in &answered {
            calls.push((action.clone(), "ok".to_owned(), *n));
        }
        for (action, outcomes) in &self.outcomes {
            for (outcome, n) in outcomes {
                calls.push((action.clone(), (*outcome).to_owned(), *n));
            }
        }
        calls.sort();
        PluginMetrics {
            plugin: id.to_owned(),
            calls,
            durations: durations.into_iter().collect(),
            faults: self.faults,
            denials: self.denials.clone().into_iter().collect(),
            reloads: self.reloads,
            reloads_refused: self.reloads_refused,
            restarts: self.restarts,
            serial_waits: self.serial.then_some(self.serial_waits),
            requests: self.requests(),
            routes: self
                .routes
                .iter()
                .map(|((m, r, s), n)| (m.clone(), r.clone(), *s, *n))
                .collect(),
            pending_approvals: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_generation_folds_the_ones_gone_unscraped() {
        let tally = Tally::default();
        for _ in 0..5 {
            let meter = tally.meter("p", vec!["a".into()], false);
            meter.begun(None, 0).answered();
        }
        let meters = tally.plugins.lock().get("p").map(|t| t.meters.len());
        assert_eq!(
            meters,
            Some(1),
            "only the newest generation's meter is kept"
        );
        assert_eq!(tally.read()[0].calls[0].2, 5);
    }

    #[test]
    fn a_generation_gone_is_folded_and_its_counts_stay() {
        let tally = Tally::default();
        let first = tally.meter("p", vec!["a".into(), "b".into()], false);
        first.begun(None, 0).answered();
        first.begun(None, 0).answered();
        first.timed(1, Duration::from_micros(3));
        let second = tally.meter("p", vec!["a".into()], false);
        second.begun(None, 0).answered();
        drop(first);
        tally.outcome("p", "a", "panicked");
        let read = tally.read();
        let p = &read[0];
        assert_eq!(
            p.calls,
            vec![
                ("a".to_owned(), "ok".to_owned(), 3),
                ("a".to_owned(), "panicked".to_owned(), 1),
                ("b".to_owned(), "ok".to_owned(), 0),
            ]
        );
        let b = &p.durations.iter().find(|(a, _)| a == "b").expect("b").1;
        assert_eq!((b.count, b.nanos), (1, 3_000));
        // Read again: the folded generation is counted once.
        assert_eq!(tally.read()[0].calls[0].2, 3);
        drop(second);
        assert_eq!(tally.read()[0].calls[0].2, 3);
        // A generation refused before it served leaves no series.
        drop(tally.meter("refused", vec!["a".into()], false));
        assert_eq!(tally.read().len(), 1);
    }

    #[test]
    fn requests_counted_on_several_threads_are_all_read() {
        let tally = Tally::default();
        let counts = tally.request_counts("p");
        let get = RequestCounts::index("kv", "get").expect("counted");
        assert_eq!(get, RequestCounts::KV_GET);
        let emit = RequestCounts::index("stream", "emit").expect("counted");
        assert_eq!(RequestCounts::index("events", "publish"), None);
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    let record = crate::sync::hazard::this_thread();
                    for _ in 0..1000 {
                        counts.add(record, get);
                    }
                    counts.add(None, emit);
                });
            }
        });
        // Another context of the same plugin counts into the same lines.
        tally.request_counts("p").add(None, get);
        let requests = &tally.read()[0].requests;
        assert_eq!(
            requests,
            &vec![
                ("kv".to_owned(), "get".to_owned(), 3001),
                ("stream".to_owned(), "emit".to_owned(), 3),
            ]
        );
    }

    #[test]
    fn labels_a_plugin_chooses_are_bounded() {
        let tally = Tally::default();
        for i in 0..MAX_LABELS + 10 {
            tally.denial("p", &format!("kv:{i}"));
            tally.route("p", "GET", &format!("/r{i}"), 200);
        }
        let p = &tally.read()[0];
        assert_eq!(p.denials.len(), MAX_LABELS + 1);
        assert_eq!(
            p.denials.iter().find(|(c, _)| c == OTHER).map(|(_, n)| *n),
            Some(10)
        );
        assert_eq!(p.routes.len(), MAX_LABELS + 1);
        for status in 100..600 {
            tally.route("p", "GET", "/past-the-bound", status);
        }
        let routes = &tally.read()[0].routes;
        assert_eq!(
            routes.len(),
            MAX_LABELS + 5,
            "the overflow keeps statuses by class only"
        );
        assert_eq!(
            p.denials.iter().map(|(_, n)| n).sum::<u64>(),
            (MAX_LABELS + 10) as u64
        );
    }
}
