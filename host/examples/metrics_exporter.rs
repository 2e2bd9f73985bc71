//! Wiring the host's per-plugin metrics to another exporter: the program installs a recorder
//! for the `metrics` facade (here a small one of its own, printing StatsD-like lines; in a
//! real program an OpenTelemetry bridge, StatsD, or `metrics-exporter-prometheus`), and hands
//! the host's series to it with `Host::publish_metrics` — on a timer, or before each flush.
//!
//! ```text
//! cargo run -p airlock --example metrics_exporter [-- <plugin dir>]
//! ```
//!
//! It runs a built-in plugin (compiled in, called through the same runtime as a library) and,
//! given a directory, the plugins in it too (`./scripts/demo.sh` builds some into
//! `target/demo-plugins`).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use airlock::Host;
use airlock_abi::{ActionError, Actions, Builtin, Context, InitError, Plugin};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

/// Greets, refuses, panics, and tries the kv store it was not granted.
struct Greeter {
    ctx: Context,
}

impl Plugin for Greeter {
    fn create(ctx: Context) -> Result<Self, InitError> {
        Ok(Self { ctx })
    }

    fn actions(actions: &mut Actions<Self>) {
        actions
            .add("greet", |_: &Self, name: String| {
                Ok::<_, ActionError>(format!("hello, {name}"))
            })
            .add("refuse", |_: &Self, (): ()| -> Result<(), ActionError> {
                Err(ActionError::new("no, thank you"))
            })
            .add("panic", |_: &Self, (): ()| -> Result<(), ActionError> {
                panic!("the greeter panics on purpose")
            })
            .add("remember", |this: &Self, name: String| {
                this.ctx.kv().set("last", &name).map_err(ActionError::from)
            });
    }
}

impl Builtin for Greeter {
    const MANIFEST: &'static str = r#"{
        "id": "greeter",
        "version": "1.0.0",
        "description": "A built-in plugin whose calls end every way a call can",
        "actions": [{"name": "greet"}, {"name": "refuse"}, {"name": "panic"}, {"name": "remember"}],
        "capabilities": ["kv"]
    }"#;
}

/// The example's exporter: keeps the last value of every series, printed on demand.
#[derive(Clone, Default)]
struct LineRecorder {
    values: Arc<Mutex<BTreeMap<String, String>>>,
}

/// One series of the recorder, as the facade hands it out.
struct Series {
    name: String,
    values: Arc<Mutex<BTreeMap<String, String>>>,
}

impl Series {
    fn put(&self, value: String) {
        if let Ok(mut values) = self.values.lock() {
            values.insert(self.name.clone(), value);
        }
    }
}

impl metrics::CounterFn for Series {
    fn increment(&self, n: u64) {
        self.put(format!("+{n}|c"));
    }
    fn absolute(&self, n: u64) {
        self.put(format!("{n}|c"));
    }
}

impl metrics::GaugeFn for Series {
    fn increment(&self, v: f64) {
        self.put(format!("+{v}|g"));
    }
    fn decrement(&self, v: f64) {
        self.put(format!("-{v}|g"));
    }
    fn set(&self, v: f64) {
        self.put(format!("{v}|g"));
    }
}

impl LineRecorder {
    fn series(&self, key: &Key) -> Arc<Series> {
        let tags: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        Arc::new(Series {
            name: format!("{}#{}", key.name(), tags.join(",")),
            values: self.values.clone(),
        })
    }
}

impl Recorder for LineRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.series(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.series(key))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        // The host publishes no facade histograms (see `Metrics::publish`).
        Histogram::noop()
    }
}

fn main() -> ExitCode {
    // The greeter's panic is contained and counted; say so in one line, without a backtrace.
    std::panic::set_hook(Box::new(|info| eprintln!("(a plugin panicked: {info})")));
    let recorder = LineRecorder::default();
    if metrics::set_global_recorder(recorder.clone()).is_err() {
        eprintln!("a recorder was installed already");
        return ExitCode::from(2);
    }
    let mut builder = Host::builder().builtin::<Greeter>();
    if let Some(dir) = std::env::args_os().nth(1) {
        builder = builder.plugin_dir(dir);
    }
    let host = match builder.build() {
        Ok(host) => host,
        Err(e) => {
            eprintln!("cannot create the host: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = host.load() {
        eprintln!("cannot load: {e}");
        return ExitCode::from(2);
    }
    for name in ["Ada", "Grace", "Barbara"] {
        let _ = host.call("greeter", "greet").json(&serde_json::json!(name));
    }
    let _ = host
        .call("greeter", "refuse")
        .json(&serde_json::Value::Null);
    let _ = host.call("greeter", "panic").json(&serde_json::Value::Null);
    // The manifest declares kv, but no policy grants it: a denial, counted by capability.
    let _ = host
        .call("greeter", "remember")
        .json(&serde_json::json!("Ada"));
    if host.plugin("hello").is_some() {
        let _ = host
            .call("hello", "greet")
            .json(&serde_json::json!({"name": "Ada"}));
    }

    // What a program does on its exporter's timer: hand the host's series to the recorder.
    host.publish_metrics();
    let values = recorder
        .values
        .lock()
        .map(|v| v.clone())
        .unwrap_or_default();
    for (series, value) in values.iter().filter(|(s, _)| {
        // The families of the calls made above; the others are published too.
        [
            "airlock_calls_total#",
            "airlock_faults_total#",
            "airlock_denials_total#",
        ]
        .iter()
        .any(|f| s.starts_with(f))
            || s.starts_with("airlock_call_duration_seconds_count#")
    }) {
        println!("{series}:{value}");
    }
    println!("({} series published in all)", values.len());
    host.shutdown();
    ExitCode::SUCCESS
}
