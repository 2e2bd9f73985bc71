//! Startup: verify + load + init of N copies of a plugin (distinct ids), N = 1, 10, 100, 200,
//! against a bare `dlopen(RTLD_NOW | RTLD_LOCAL)` of the same N files (no checks, no copy, no
//! init). Each run is a fresh process (as a host starts; libraries are never unloaded, so one
//! process measuring all of them would carry every earlier run's libraries), Airlock and bare
//! runs alternate, and each figure is the median of 5 runs. Writes target/bench-startup.json:
//! per N, both medians, their costs per plugin and the ratio of the two.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use airlock::Host;

const RUNS: usize = 5;

/// One measurement in this process: milliseconds for Airlock to load `n` plugins.
fn airlock_once(n: usize) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    airlock_bench::copies(dir.path(), n);
    let host = Host::builder()
        .plugin_dir(dir.path())
        .build()
        .expect("host");
    let started = Instant::now();
    let report = host.load().expect("load");
    let elapsed = started.elapsed().as_secs_f64() * 1e3;
    assert!(report.all_ok() && report.plugins.len() == n, "{report:?}");
    host.shutdown();
    elapsed
}

/// One measurement in this process: milliseconds to `dlopen` the same `n` files bare.
fn bare_once(n: usize) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    airlock_bench::copies(dir.path(), n);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert_eq!(files.len(), n);
    let started = Instant::now();
    for file in &files {
        airlock::test_support::bare_dlopen(file).expect("dlopen");
    }
    started.elapsed().as_secs_f64() * 1e3
}

/// Runs this benchmark as a child with `mode` (`--once` or `--bare`) for `n` plugins.
fn child(mode: &str, n: usize) -> f64 {
    let exe = std::env::current_exe().expect("own path");
    let out = Command::new(exe)
        .args([mode, &n.to_string()])
        .output()
        .expect("child");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("milliseconds")
}

/// Median, min and max.
fn spread(mut times: Vec<f64>) -> (f64, f64, f64) {
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times[0], times[times.len() - 1])
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    for (mode, run) in [
        ("--once", airlock_once as fn(usize) -> f64),
        ("--bare", bare_once),
    ] {
        if let Some(at) = args.iter().position(|a| a == mode) {
            let n = args.get(at + 1).and_then(|n| n.parse().ok()).expect("N");
            println!("{}", run(n));
            return;
        }
    }
    let mut rows = Vec::new();
    for n in [1usize, 10, 100, 200] {
        let (mut airlock, mut bare) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            airlock.push(child("--once", n));
            bare.push(child("--bare", n));
        }
        let (median, low, high) = spread(airlock);
        let (bare_median, bare_low, bare_high) = spread(bare);
        let per = |ms: f64| ms / n as f64;
        println!(
            "startup n={n}: median {median:.2} ms (min {low:.2}, max {high:.2}), {:.3} ms per plugin; \
             bare dlopen median {bare_median:.2} ms (min {bare_low:.2}, max {bare_high:.2}), {:.3} ms per plugin; \
             ratio {:.2}",
            per(median),
            per(bare_median),
            median / bare_median
        );
        rows.push(serde_json::json!({
            "n": n,
            "median_ms": median, "min_ms": low, "max_ms": high, "per_plugin_ms": per(median),
            "bare_median_ms": bare_median, "bare_min_ms": bare_low, "bare_max_ms": bare_high,
            "bare_per_plugin_ms": per(bare_median),
            "ratio": median / bare_median,
        }));
    }
    let out = std::env::var("AIRLOCK_BENCH_STARTUP_OUT")
        .unwrap_or_else(|_| "target/bench-startup.json".to_owned());
    std::fs::write(out, serde_json::to_vec_pretty(&rows).expect("json")).expect("write");
}
