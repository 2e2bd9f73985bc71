//! Per-call costs, each group measured in one run so that ratios compare like with like.

use std::hint::black_box;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use airlock::Host;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use serde_json::{json, Value};

/// The benchmark plugin alone, run in a worker process (`AIRLOCK_BENCH_WORKER`).
fn isolated_host() -> (tempfile::TempDir, Host) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(
        airlock_bench::plugin(),
        dir.path().join(format!(
            "bench-noop.{}",
            airlock::pipeline::library_suffix()
        )),
    )
    .expect("copy");
    // Every restart is the first of its window, so each waits the first backoff (10 ms).
    let policy = "[plugins.bench-noop]\nisolation = \"process\"\nrestart_budget = 1000\nrestart_window_ms = 1\nquarantine_faults = 0\n";
    let worker =
        std::env::var_os("AIRLOCK_BENCH_WORKER").expect("AIRLOCK_BENCH_WORKER (scripts/bench.sh)");
    let host = Host::builder()
        .plugin_dir(dir.path())
        .policy(
            airlock::Policy::parse(policy, airlock::policy::PolicyFormat::Toml).expect("policy"),
        )
        .worker(worker)
        .build()
        .expect("host");
    assert!(host.load().expect("load").all_ok());
    (dir, host)
}

/// The median of `n` timings of `f`, in milliseconds.
fn median_ms(n: usize, mut f: impl FnMut() -> Duration) -> f64 {
    let mut times: Vec<f64> = (0..n).map(|_| f().as_secs_f64() * 1e3).collect();
    times.sort_by(f64::total_cmp);
    times[n / 2]
}

fn host() -> (tempfile::TempDir, Host) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(
        airlock_bench::plugin(),
        dir.path().join(format!(
            "bench-noop.{}",
            airlock::pipeline::library_suffix()
        )),
    )
    .expect("copy");
    airlock_bench::serial_copy(dir.path());
    // The plugin reaches a service of this program and the built-in kv (measured from inside).
    let policy = "[plugins.bench-noop]\ngrants = [\"kv\", \"service:probe.ping\"]\n";
    let host = Host::builder()
        .plugin_dir(dir.path())
        .policy(
            airlock::Policy::parse(policy, airlock::policy::PolicyFormat::Toml).expect("policy"),
        )
        .data_dir(dir.path().join("data"))
        .operation::<airlock_contract_probe::Ping>(|_, input| Ok(input.text))
        .build()
        .expect("host");
    assert!(host.load().expect("load").all_ok());
    (dir, host)
}

/// A ~100-byte JSON payload.
fn payload() -> Value {
    json!({"user": "ada", "id": 12345, "tags": ["a", "b", "c"], "text": "the quick brown fox jumps", "ok": true})
}

fn calls(c: &mut Criterion) {
    let (_dir, host) = host();
    let raw = host.raw_entry("bench-noop").expect("loaded");
    let noop = host.action("bench-noop", "noop").expect("resolved");
    let json_action = host.action("bench-noop", "json").expect("resolved");
    let bytes_action = host.action("bench-noop", "bytes").expect("resolved");
    let bytes_into = host.action("bench-noop", "bytes_into").expect("resolved");
    let serial_noop = host.action("bench-serl", "noop").expect("resolved");
    let payload = payload();
    let payload_bytes = serde_json::to_vec(&payload).expect("json");

    let mut g = c.benchmark_group("call");
    g.bench_function("raw", |b| b.iter(|| black_box(raw()).len()));
    g.bench_function("handle_noop", |b| {
        b.iter(|| noop.call().bytes(black_box(b"null")).expect("ok"))
    });
    let mut out = Vec::new();
    g.bench_function("handle_noop_into", |b| {
        b.iter(|| noop.call_into(black_box(b"null"), &mut out).expect("ok"))
    });
    g.bench_function("serial_noop", |b| {
        b.iter(|| serial_noop.call().bytes(black_box(b"null")).expect("ok"))
    });
    g.bench_function("serial_noop_into", |b| {
        b.iter(|| {
            serial_noop
                .call_into(black_box(b"null"), &mut out)
                .expect("ok")
        })
    });
    g.bench_function("by_name_noop", |b| {
        b.iter(|| {
            host.call("bench-noop", "noop")
                .bytes(black_box(b"null"))
                .expect("ok")
        })
    });
    g.finish();

    store(c);

    let mut g = c.benchmark_group("json");
    g.bench_function("action", |b| {
        b.iter(|| json_action.call().json(black_box(&payload)).expect("ok"))
    });
    g.bench_function("json_bytes", |b| {
        b.iter(|| {
            json_action
                .call()
                .bytes(black_box(&payload_bytes))
                .expect("ok")
        })
    });
    g.bench_function("raw_bytes", |b| {
        b.iter(|| {
            bytes_action
                .call()
                .bytes(black_box(&payload_bytes))
                .expect("ok")
        })
    });
    g.bench_function("bytes_into", |b| {
        b.iter(|| {
            bytes_into
                .call()
                .bytes(black_box(&payload_bytes))
                .expect("ok")
        })
    });
    // One copy of the payload into a fresh buffer of the caller's: what the answer costs at least.
    g.bench_function("one_copy", |b| {
        b.iter(|| black_box(&payload_bytes).to_vec())
    });
    g.bench_function("bare_serde", |b| {
        b.iter(|| {
            let bytes = serde_json::to_vec(black_box(&payload)).expect("json");
            let mut value: Value = serde_json::from_slice(&bytes).expect("json");
            if let Some(map) = value.as_object_mut() {
                map.insert("seen".to_owned(), Value::Bool(true));
            }
            let out = serde_json::to_vec(&value).expect("json");
            serde_json::from_slice::<Value>(&out).expect("json")
        })
    });
    g.finish();

    let mut g = c.benchmark_group("threads");
    // The no-op action, and as the control the raw call, which shares nothing: what this
    // machine gives a second thread for pure compute bounds what any call path can get.
    in_threads(&mut g, "", || {
        let _ = noop.call().bytes(b"null").expect("ok");
    });
    in_threads(&mut g, "raw_", || {
        black_box(black_box(raw)().len());
    });
    g.finish();

    let mut g = c.benchmark_group("peer");
    g.measurement_time(Duration::from_secs(5));
    #[cfg(feature = "wasm")]
    wasm::bench(&mut g);
    // Counted before pinning: once pinned, this process sees one processor.
    let all_cpus = format!(
        "0-{}",
        std::thread::available_parallelism().map_or(1, |n| n.get()) - 1
    );
    for (name, same_core) in [("process_same_core", true), ("process_two_cores", false)] {
        // Pinned: this process (every thread) and the child (it inherits the mask) on CPU 0.
        if same_core {
            pin_process("0");
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_peer"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("peer");
        let mut stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let line = serde_json::to_string(&payload).expect("json");
        let mut answer = String::new();
        g.bench_function(name, |b| {
            b.iter(|| {
                writeln!(stdin, "{line}").expect("write");
                stdin.flush().expect("flush");
                answer.clear();
                stdout.read_line(&mut answer).expect("read");
                serde_json::from_str::<Value>(&answer).expect("json")
            })
        });
        drop(stdin);
        let _ = child.wait();
        if same_core {
            pin_process(&all_cpus);
        }
    }
    // The same plugin in a worker process, in the same run as the JSON-line peer.
    let (_isolated_dir, isolated) = isolated_host();
    let isolated_noop = isolated.action("bench-noop", "noop").expect("resolved");
    let isolated_json = isolated.action("bench-noop", "json").expect("resolved");
    let mut out = Vec::new();
    g.bench_function("isolated_noop", |b| {
        b.iter(|| {
            isolated_noop
                .call_into(black_box(b"null"), &mut out)
                .expect("ok")
        })
    });
    g.bench_function("isolated_json", |b| {
        b.iter(|| isolated_json.call().json(black_box(&payload)).expect("ok"))
    });
    g.finish();
    // A worker started to its first answer (enable after disable), and a crashed worker to its
    // first answer after the supervisor restarted it.
    let answers = |host: &Host| {
        matches!(
            host.call("bench-noop", "noop").json(&Value::Null),
            Ok(airlock::Reply::Ok(_))
        )
    };
    let isolated_start_ms = median_ms(21, || {
        isolated.disable("bench-noop").expect("disabled");
        let started = Instant::now();
        isolated.enable("bench-noop").expect("enabled");
        assert!(answers(&isolated));
        started.elapsed()
    });
    let isolated_restart_ms = median_ms(21, || {
        let started = Instant::now();
        let _ = isolated.call("bench-noop", "abort").json(&Value::Null);
        while !answers(&isolated) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the worker was not restarted"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        started.elapsed()
    });

    let mut g = c.benchmark_group("reload");
    g.sample_size(30);
    let (rss_before, retained_before) = (rss_kib(), airlock::plugins::retained().0);
    g.bench_function("forced", |b| {
        b.iter(|| host.reload("bench-noop").expect("known"))
    });
    g.finish();
    let generations = airlock::plugins::retained().0 - retained_before;
    let rss_per_generation_kib =
        rss_kib().saturating_sub(rss_before) as f64 / generations.max(1) as f64;

    let mut figures = callbacks(&host);
    figures["two_threads"] = callbacks_in_two_threads(&host);
    figures["reload_generations"] = json!(generations);
    figures["isolated_start_ms"] = json!(isolated_start_ms);
    figures["isolated_restart_ms"] = json!(isolated_restart_ms);
    figures["rss_per_generation_kib"] = json!(rss_per_generation_kib);
    figures["library_kib"] =
        json!(std::fs::metadata(airlock_bench::plugin()).map_or(0, |m| m.len() / 1024));
    std::fs::write(
        std::env::var("AIRLOCK_BENCH_OUT")
            .unwrap_or_else(|_| "target/bench-callbacks.json".to_owned()),
        serde_json::to_vec(&figures).expect("json"),
    )
    .expect("write the callback figures");
}

/// How many callbacks of the cheapest kind the `callbacks` action makes (and a twentieth as many
/// JSON requests of each service): 2 million, or `AIRLOCK_BENCH_CALLBACKS` (more averages out a
/// noisy machine).
fn callbacks_count() -> u64 {
    std::env::var("AIRLOCK_BENCH_CALLBACKS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000_000)
}

/// The `callbacks` action's figures (nanoseconds per callback, self-timed inside the plugin).
fn callbacks(host: &Host) -> Value {
    match host
        .call("bench-noop", "callbacks")
        .json(&json!(callbacks_count()))
        .expect("call")
    {
        airlock::Reply::Ok(v) => v,
        other => json!({"error": format!("{other:?}")}),
    }
}

/// The `callbacks` action called on two threads at once: each figure is the mean of the two
/// threads' own times per callback while the other thread calls back too (equal to the
/// one-thread figure when callbacks scale; a shared cache line written per callback shows here).
fn callbacks_in_two_threads(host: &Host) -> Value {
    let both: Vec<Value> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..2).map(|_| s.spawn(|| callbacks(host))).collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("a callbacks thread"))
            .collect()
    });
    let mut mean = serde_json::Map::new();
    for key in [
        "checked_ns",
        "checked_frozen_ns",
        "raw_ns",
        "signature_ns",
        "service_ns",
        "service_frozen_ns",
        "kv_ns",
        "kv_frozen_ns",
        "map_get_ns",
    ] {
        let values: Vec<f64> = both.iter().filter_map(|f| f[key].as_f64()).collect();
        if values.len() == both.len() {
            mean.insert(
                key.to_owned(),
                json!(values.iter().sum::<f64>() / values.len() as f64),
            );
        }
    }
    Value::Object(mean)
}

/// Benchmarks `work` on 1 and on 2 threads at once, as the time per call of the aggregate
/// (lower means more throughput).
fn in_threads(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, work: impl Fn() + Sync) {
    for threads in [1usize, 2] {
        g.bench_function(format!("{name}{threads}"), |b| {
            b.iter_custom(|iters| {
                let started = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..threads {
                        s.spawn(|| (0..iters).for_each(|_| work()));
                    }
                });
                started.elapsed() / threads as u32
            })
        });
    }
}

/// This process's resident set, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Sets the CPU affinity of every thread of this process (`taskset -a -p`).
fn pin_process(cpus: &str) {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status()
        .expect("taskset (util-linux) is needed to pin the process peer");
    assert!(status.success(), "taskset failed: {status}");
}

/// The WebAssembly peer: wasmtime (Cranelift) calling a module's function that does nothing,
/// the same work as the no-op action.
#[cfg(feature = "wasm")]
mod wasm {
    use criterion::measurement::WallTime;
    use criterion::BenchmarkGroup;
    use wasmtime::{Engine, Instance, Module, Store};

    pub fn bench(g: &mut BenchmarkGroup<'_, WallTime>) {
        let engine = Engine::default();
        let module = Module::new(&engine, r#"(module (func (export "noop")))"#).expect("module");
        let mut store = Store::new(&engine, ());
        let instance = Instance::new(&mut store, &module, &[]).expect("instance");
        let noop = instance
            .get_typed_func::<(), ()>(&mut store, "noop")
            .expect("noop");
        g.bench_function("wasmtime_noop", |b| {
            b.iter(|| noop.call(&mut store, ()).expect("call"))
        });
    }
}

/// The references of the kv store's figures: the least a lookup of a value in memory costs,
/// and what one durable write of redb, the store's database, costs bare.
fn store(c: &mut Criterion) {
    let mut g = c.benchmark_group("store");
    // The value `ctx.kv().get::<u32>("bench")` reads, as the store holds it: JSON bytes.
    let map = std::sync::RwLock::new(std::collections::HashMap::from([(
        "bench".to_owned(),
        b"1".to_vec(),
    )]));
    g.bench_function("hashmap_rwlock_get", |b| {
        b.iter(|| {
            let map = map.read().expect("unpoisoned");
            let value = map.get(black_box("bench")).expect("set");
            serde_json::from_slice::<u32>(value).expect("a number")
        })
    });
    g.bench_function("hashmap_rwlock_lookup", |b| {
        b.iter(|| {
            map.read()
                .expect("unpoisoned")
                .get(black_box("bench"))
                .map(Vec::len)
        })
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let db = redb::Database::create(dir.path().join("bare.redb")).expect("redb");
    const TABLE: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("bare");
    g.sample_size(20);
    g.bench_function("redb_write", |b| {
        b.iter(|| {
            let txn = db.begin_write().expect("write");
            txn.open_table(TABLE)
                .expect("table")
                .insert(black_box("bench"), &b"1"[..])
                .expect("insert");
            txn.commit().expect("durable");
        })
    });
    g.finish();
}

criterion_group!(benches, calls);
criterion_main!(benches);
