//! The same series handed to the `metrics` facade, for a program that installed a recorder of
//! its own (an OpenTelemetry bridge, StatsD, another Prometheus exporter).
//!
//! The mapping is what the facade can say honestly. Counters are set to their absolute values
//! (`Counter::absolute`): the host's counters are the truth, and a recorder that is handed them
//! again and again shows them as they are. A histogram cannot be replayed into the facade's
//! histograms, which take one observation at a time: the host kept bucket counts, not the
//! durations. So a histogram goes out as its cumulative `_bucket` counters (label `le`), its
//! `_count` counter and its `_sum` gauge in seconds — what Prometheus itself exposes.

use std::borrow::Cow;

use metrics::Label;

use super::{Kind, Metrics, Value, Visit};

pub(super) fn publish(metrics: &Metrics) {
    metrics.walk(&mut Facade {
        kind: Kind::Counter,
    });
}

struct Facade {
    /// The family being walked.
    kind: Kind,
}

impl Visit for Facade {
    fn family(&mut self, name: &'static str, kind: Kind, help: &'static str) {
        self.kind = kind;
        match kind {
            Kind::Counter => metrics::describe_counter!(name, help),
            Kind::Gauge => metrics::describe_gauge!(name, help),
            // Its parts are described as what they are published as.
            Kind::Histogram => {}
        }
    }

    fn sample(
        &mut self,
        name: &'static str,
        labels: &[(&'static str, Cow<'_, str>)],
        value: Value,
    ) {
        let labels: Vec<Label> = labels
            .iter()
            .map(|(key, value)| Label::new(*key, value.to_string()))
            .collect();
        match (self.kind, value) {
            (Kind::Gauge, Value::Count(n)) => metrics::gauge!(name, labels).set(n as f64),
            (_, Value::Count(n)) => metrics::counter!(name, labels).absolute(n),
            (_, Value::Seconds(s)) => metrics::gauge!(name, labels).set(s),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The facade's recorder is process-global: the test installs one for this thread only
    //! (`metrics::with_local_recorder`).

    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use metrics::{
        Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    };

    use super::super::meter::Observed;
    use super::super::PluginMetrics;
    use super::*;

    /// Every value the facade was handed, by name and labels.
    #[derive(Default, Clone)]
    struct Seen(Arc<Mutex<BTreeMap<String, String>>>);

    struct Cell(String, Seen);

    impl metrics::CounterFn for Cell {
        fn increment(&self, n: u64) {
            self.1.put(&self.0, format!("+{n}"));
        }
        fn absolute(&self, n: u64) {
            self.1.put(&self.0, n.to_string());
        }
    }

    impl metrics::GaugeFn for Cell {
        fn increment(&self, _: f64) {}
        fn decrement(&self, _: f64) {}
        fn set(&self, v: f64) {
            self.1.put(&self.0, format!("gauge {v}"));
        }
    }

    impl Seen {
        fn put(&self, key: &str, value: String) {
            self.0.lock().expect("seen").insert(key.to_owned(), value);
        }
        fn key(key: &Key) -> String {
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            format!("{}{{{}}}", key.name(), labels.join(","))
        }
    }

    impl Recorder for Seen {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(Arc::new(Cell(Self::key(key), self.clone())))
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(Arc::new(Cell(Self::key(key), self.clone())))
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    #[test]
    fn counters_go_out_absolute_and_histograms_as_their_buckets() {
        let mut observed = Observed::default();
        observed.observe(std::time::Duration::from_millis(20));
        let metrics = Metrics::new(vec![PluginMetrics {
            plugin: "p".into(),
            calls: vec![("a".into(), "ok".into(), 7)],
            durations: vec![("a".into(), observed)],
            pending_approvals: 2,
            ..PluginMetrics::default()
        }]);
        let seen = Seen::default();
        metrics::with_local_recorder(&seen, || metrics.publish());
        let seen = seen.0.lock().expect("seen");
        let at = |k: &str| {
            seen.get(k)
                .cloned()
                .unwrap_or_else(|| panic!("no {k} in {seen:?}"))
        };
        assert_eq!(at("airlock_calls_total{plugin=p,action=a,outcome=ok}"), "7");
        assert_eq!(
            at("airlock_call_duration_seconds_bucket{plugin=p,action=a,le=0.01}"),
            "0"
        );
        assert_eq!(
            at("airlock_call_duration_seconds_bucket{plugin=p,action=a,le=0.05}"),
            "1"
        );
        assert_eq!(
            at("airlock_call_duration_seconds_bucket{plugin=p,action=a,le=+Inf}"),
            "1"
        );
        assert_eq!(
            at("airlock_call_duration_seconds_count{plugin=p,action=a}"),
            "1"
        );
        assert_eq!(
            at("airlock_call_duration_seconds_sum{plugin=p,action=a}"),
            "gauge 0.02"
        );
        assert_eq!(at("airlock_pending_approvals{plugin=p}"), "gauge 2");
    }
}
