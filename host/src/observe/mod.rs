//! Per-plugin metrics: what the call path counts ([`meter`]), what the host counts off it
//! ([`tally`]), and the snapshot an operator reads ([`Metrics`]): in Prometheus's text format
//! ([`Metrics::prometheus`]) or pushed to the `metrics` facade's recorder
//! ([`Metrics::publish`]). Both walk the same families ([`Metrics::walk`]), so they cannot
//! drift.

pub(crate) mod meter;
mod publish;
mod render;
pub(crate) mod tally;

use std::borrow::Cow;

use meter::{Observed, BOUNDS};

/// What the host's plugins did, read at one moment ([`crate::Host::metrics`]): calls by
/// plugin, action and outcome, sampled call durations, faults, denials by capability, reloads,
/// worker restarts, waits at serial plugins' gates, stream chunks, HTTP route requests, key/value
/// reads and writes and calls waiting for approval. Counters count from the
/// host's start and never go back, across reloads too.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    plugins: Vec<PluginMetrics>,
}

/// One plugin's series.
#[derive(Debug, Clone, Default)]
pub(crate) struct PluginMetrics {
    pub(crate) plugin: String,
    /// Calls that ended: action, outcome (`ok`: answered), count; sorted.
    pub(crate) calls: Vec<(String, String, u64)>,
    /// The sampled durations, by action.
    pub(crate) durations: Vec<(String, Observed)>,
    pub(crate) faults: u64,
    /// Denials by capability.
    pub(crate) denials: Vec<(String, u64)>,
    pub(crate) reloads: u64,
    pub(crate) reloads_refused: u64,
    pub(crate) restarts: u64,
    /// The waits of calls that found the serial gate taken (`None`: not a serial plugin).
    pub(crate) serial_waits: Option<Observed>,
    /// Host requests counted (key/value, stream): service, operation, count.
    pub(crate) requests: Vec<(String, String, u64)>,
    /// HTTP route requests: method, route, status, count.
    pub(crate) routes: Vec<(String, String, u16, u64)>,
    pub(crate) pending_approvals: u64,
}

/// What a family is, in Prometheus's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A sample's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value {
    Count(u64),
    Seconds(f64),
}

/// What walks the families: a renderer, a publisher.
pub(crate) trait Visit {
    /// A family begins.
    fn family(&mut self, name: &'static str, kind: Kind, help: &'static str);
    /// One sample of the current family: its full name (a histogram's `_bucket`, `_sum`,
    /// `_count`), labels and value.
    fn sample(&mut self, name: &'static str, labels: &[(&'static str, Cow<'_, str>)], value: Value);
}

/// A histogram family's names.
pub(crate) struct Family {
    name: &'static str,
    bucket: &'static str,
    sum: &'static str,
    count: &'static str,
}

macro_rules! family {
    ($name:literal) => {
        Family {
            name: $name,
            bucket: concat!($name, "_bucket"),
            sum: concat!($name, "_sum"),
            count: concat!($name, "_count"),
        }
    };
}

const CALLS: &str = "airlock_calls_total";
const DURATION: Family = family!("airlock_call_duration_seconds");
/// Says the sampling period ([`meter::TIME_ONE_IN`]; a test checks they agree).
const DURATION_HELP: &str = "How long calls of plugins' actions took: a sample, one call in 61 \
     on each calling thread (its count is of the calls timed, not of all calls).";
const FAULTS: &str = "airlock_faults_total";
const DENIALS: &str = "airlock_denials_total";
const RELOADS: &str = "airlock_reloads_total";
const RESTARTS: &str = "airlock_worker_restarts_total";
const SERIAL_WAIT: Family = family!("airlock_serial_wait_seconds");
const CHUNKS: &str = "airlock_stream_chunks_total";
const KV: &str = "airlock_kv_operations_total";
const ROUTES: &str = "airlock_http_requests_total";
const PENDING: &str = "airlock_pending_approvals";

/// The `plugin` label of a plugin's series.
fn plugin(p: &PluginMetrics) -> (&'static str, Cow<'_, str>) {
    ("plugin", Cow::Borrowed(&p.plugin))
}

/// The kinds of key/value requests that read.
const KV_READS: [&str; 4] = ["get", "keys", "entry", "list"];

impl Metrics {
    pub(crate) fn new(plugins: Vec<PluginMetrics>) -> Self {
        Self { plugins }
    }

    /// The calls of `plugin`'s `action` that ended with `outcome` (`ok`: answered; otherwise
    /// a [`crate::CallErrorCode`]'s name, `error`, `retryable`, `pending_approval` or
    /// `pending`).
    pub fn calls(&self, plugin: &str, action: &str, outcome: &str) -> u64 {
        self.plugin(plugin)
            .and_then(|p| p.calls.iter().find(|(a, o, _)| a == action && o == outcome))
            .map_or(0, |(_, _, n)| *n)
    }

    fn plugin(&self, id: &str) -> Option<&PluginMetrics> {
        self.plugins.iter().find(|p| p.plugin == id)
    }

    /// The series in Prometheus's text exposition format (version 0.0.4): `airlock_*`
    /// families, each with its `# HELP` and `# TYPE`.
    pub fn prometheus(&self) -> String {
        render::prometheus(self)
    }

    /// Hands every series to the recorder installed for the `metrics` facade (see
    /// [`metrics::set_global_recorder`]): counters as absolute values, gauges set, and each
    /// histogram as its cumulative `_bucket` counters (label `le`), a `_count` counter and a
    /// `_sum` gauge in seconds. Call it before each scrape or on a timer; a program with no
    /// recorder installed pays nearly nothing.
    pub fn publish(&self) {
        publish::publish(self);
    }

    /// Walks every family and sample, in a stable order.
    pub(crate) fn walk(&self, v: &mut impl Visit) {
        let each = |v: &mut dyn FnMut(&PluginMetrics)| self.plugins.iter().for_each(v);

        v.family(
            CALLS,
            Kind::Counter,
            "Calls of plugins' actions that ended, by outcome (ok: answered).",
        );
        each(&mut |p| {
            for (action, outcome, n) in &p.calls {
                let labels = [
                    plugin(p),
                    ("action", action.into()),
                    ("outcome", outcome.into()),
                ];
                v.sample(CALLS, &labels, Value::Count(*n));
            }
        });
        v.family(DURATION.name, Kind::Histogram, DURATION_HELP);
        each(&mut |p| {
            for (action, observed) in &p.durations {
                histogram(
                    v,
                    &DURATION,
                    &[plugin(p), ("action", action.into())],
                    observed,
                );
            }
        });
        v.family(
            FAULTS,
            Kind::Counter,
            "Faults: panics contained, calls past their timeout, workers that died.",
        );
        each(&mut |p| v.sample(FAULTS, &[plugin(p)], Value::Count(p.faults)));
        v.family(DENIALS, Kind::Counter, "Capabilities used without a grant, and actions refused by permission rules, by capability.");
        each(&mut |p| {
            for (capability, n) in &p.denials {
                v.sample(
                    DENIALS,
                    &[plugin(p), ("capability", capability.into())],
                    Value::Count(*n),
                );
            }
        });
        v.family(
            RELOADS,
            Kind::Counter,
            "New builds loaded while the host ran, and builds refused (the old one kept serving).",
        );
        each(&mut |p| {
            v.sample(
                RELOADS,
                &[plugin(p), ("outcome", "loaded".into())],
                Value::Count(p.reloads),
            );
            v.sample(
                RELOADS,
                &[plugin(p), ("outcome", "refused".into())],
                Value::Count(p.reloads_refused),
            );
        });
        v.family(
            RESTARTS,
            Kind::Counter,
            "Workers of isolated plugins restarted after they died.",
        );
        each(&mut |p| v.sample(RESTARTS, &[plugin(p)], Value::Count(p.restarts)));
        self.walk_requests(v);
    }

    /// [`Metrics::walk`]'s second half: waits, and what plugins asked of the host and of it.
    fn walk_requests(&self, v: &mut impl Visit) {
        let each = |v: &mut dyn FnMut(&PluginMetrics)| self.plugins.iter().for_each(v);
        v.family(SERIAL_WAIT.name, Kind::Histogram, "How long calls that found a serial plugin busy waited for it (those that did not wait are not counted).");
        each(&mut |p| {
            if let Some(waits) = &p.serial_waits {
                histogram(v, &SERIAL_WAIT, &[plugin(p)], waits);
            }
        });
        v.family(
            CHUNKS,
            Kind::Counter,
            "Chunks plugins emitted in streamed calls.",
        );
        each(&mut |p| {
            v.sample(
                CHUNKS,
                &[plugin(p)],
                Value::Count(p.requested("stream", |o| o == "emit")),
            )
        });
        v.family(
            KV,
            Kind::Counter,
            "Key/value requests of plugins, reads (get, keys, entry, list) and writes.",
        );
        each(&mut |p| {
            let reads = p.requested("kv", |o| KV_READS.contains(&o));
            let writes = p.requested("kv", |o| !KV_READS.contains(&o));
            v.sample(
                KV,
                &[plugin(p), ("kind", "read".into())],
                Value::Count(reads),
            );
            v.sample(
                KV,
                &[plugin(p), ("kind", "write".into())],
                Value::Count(writes),
            );
        });
        v.family(
            ROUTES,
            Kind::Counter,
            "Requests to plugins' HTTP routes, by route and status answered.",
        );
        each(&mut |p| {
            for (method, route, status, n) in &p.routes {
                let labels = [
                    plugin(p),
                    ("method", method.into()),
                    ("route", route.into()),
                    ("status", status.to_string().into()),
                ];
                v.sample(ROUTES, &labels, Value::Count(*n));
            }
        });
        v.family(
            PENDING,
            Kind::Gauge,
            "Calls waiting for the approver's decision.",
        );
        each(&mut |p| v.sample(PENDING, &[plugin(p)], Value::Count(p.pending_approvals)));
    }
}

impl PluginMetrics {
    /// The host requests to `service` whose operation `which` accepts.
    fn requested(&self, service: &str, which: impl Fn(&str) -> bool) -> u64 {
        self.requests
            .iter()
            .filter(|(s, o, _)| s == service && which(o))
            .map(|(_, _, n)| n)
            .sum()
    }
}

/// A histogram's samples: cumulative buckets, its sum in seconds, its count.
fn histogram(
    v: &mut impl Visit,
    name: &'static Family,
    labels: &[(&'static str, Cow<'_, str>)],
    observed: &Observed,
) {
    let mut cumulative = 0u64;
    for (i, n) in observed.buckets.iter().enumerate() {
        cumulative = cumulative.wrapping_add(*n);
        let le = BOUNDS
            .get(i)
            .map_or(Cow::Borrowed("+Inf"), |b| Cow::Owned(b.to_string()));
        let mut with_le = labels.to_vec();
        with_le.push(("le", le));
        v.sample(name.bucket, &with_le, Value::Count(cumulative));
    }
    let seconds = observed.nanos as f64 / 1e9;
    v.sample(name.sum, labels, Value::Seconds(seconds));
    v.sample(name.count, labels, Value::Count(observed.count));
}
