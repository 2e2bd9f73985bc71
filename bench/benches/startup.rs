//! Startup: verify + load + init of N copies of a plugin (distinct ids), N = 1, 10, 100, 200,
//! each measured in a fresh process (as a host starts; libraries are never unloaded, so one
//! process measuring all of them would carry every earlier run's libraries); the median of 5
//! runs each, and the cost per plugin. Writes target/bench-startup.json.

use std::process::Command;
use std::time::Instant;

use airlock::Host;

/// One measurement in this process: milliseconds to load `n` plugins.
fn once(n: usize) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    airlock_bench::copies(dir.path(), n);
    let host = Host::builder().plugin_dir(dir.path()).build().expect("host");
    let started = Instant::now();
    let report = host.load().expect("load");
    let elapsed = started.elapsed().as_secs_f64() * 1e3;
    assert!(report.all_ok() && report.plugins.len() == n, "{report:?}");
    host.shutdown();
    elapsed
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--once") {
        let n = args.get(at + 1).and_then(|n| n.parse().ok()).expect("--once N");
        println!("{}", once(n));
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    let mut rows = Vec::new();
    for n in [1usize, 10, 100, 200] {
        let mut times: Vec<f64> = (0..5)
            .map(|_| {
                let out = Command::new(&exe).args(["--once", &n.to_string()]).output().expect("child");
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                String::from_utf8_lossy(&out.stdout).trim().parse().expect("milliseconds")
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let (median, low, high) = (times[2], times[0], times[4]);
        println!("startup n={n}: median {median:.2} ms (min {low:.2}, max {high:.2}), {:.3} ms per plugin", median / n as f64);
        rows.push(serde_json::json!({"n": n, "median_ms": median, "min_ms": low, "max_ms": high, "per_plugin_ms": median / n as f64}));
    }
    let out = std::env::var("AIRLOCK_BENCH_STARTUP_OUT").unwrap_or_else(|_| "target/bench-startup.json".to_owned());
    std::fs::write(out, serde_json::to_vec_pretty(&rows).expect("json")).expect("write");
}
