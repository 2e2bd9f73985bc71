//! Startup: verify + load + init of N copies of a plugin (distinct ids), N = 10, 100, 200, in
//! the two ways Airlock loads a library — in place (installed files, read-only, in directories
//! only root or this user can write: the dynamic linker maps the descriptor that was hashed)
//! and from sealed copies (forced with `[host] always_seal`, what a file another user could
//! write gets) — against BLAKE3 of the same N files alone (read and hashed on one core) and a
//! bare `dlopen(RTLD_NOW | RTLD_LOCAL)` of them (no checks, no copy, no init). Each run is a
//! fresh process (as a host starts; libraries are never unloaded, so one process measuring all
//! of them would carry every earlier run's libraries); the four kinds of run alternate, and
//! each figure is the median of 5 runs. Writes target/bench-startup.json: per N, the medians,
//! their costs per plugin and their ratios to the bare `dlopen`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use airlock::pipeline::Placement;
use airlock::{Host, Policy};

const RUNS: usize = 5;
const SIZES: [usize; 3] = [10, 100, 200];

/// One measurement in this process: milliseconds for Airlock to load `n` plugins, in place or
/// from sealed copies; the load report must say every plugin was loaded that way.
fn airlock_once(n: usize, sealed: bool) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    installed(dir.path(), n);
    let mut policy = Policy::default();
    policy.host_mut().always_seal = sealed;
    let host = Host::builder()
        .plugin_dir(dir.path())
        .policy(policy)
        .build()
        .expect("host");
    let started = Instant::now();
    let report = host.load().expect("load");
    let elapsed = started.elapsed().as_secs_f64() * 1e3;
    assert!(report.all_ok() && report.plugins.len() == n, "{report:?}");
    for plugin in &report.plugins {
        let in_place = matches!(plugin.placement, Some(Placement::InPlace { .. }));
        assert_eq!(in_place, !sealed, "{:?}", plugin.placement);
    }
    host.shutdown();
    elapsed
}

/// `n` copies in `dir`, installed read-only (mode 0555), as an installer puts libraries: the
/// files may then be loaded in place even by a host running as their owner.
fn installed(dir: &Path, n: usize) {
    use std::os::unix::fs::PermissionsExt;
    airlock_bench::copies(dir, n);
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o555)).expect("chmod");
    }
}

fn files(dir: &Path, n: usize) -> Vec<PathBuf> {
    installed(dir, n);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert_eq!(files.len(), n);
    files
}

/// One measurement in this process: milliseconds to `dlopen` the same `n` files bare.
fn bare_once(n: usize) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = files(dir.path(), n);
    let started = Instant::now();
    for file in &files {
        airlock::test_support::bare_dlopen(file).expect("dlopen");
    }
    started.elapsed().as_secs_f64() * 1e3
}

/// One measurement in this process: milliseconds to read the same `n` files and hash each with
/// BLAKE3, on one core: what the identity costs alone.
fn hash_once(n: usize) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = files(dir.path(), n);
    let started = Instant::now();
    for file in &files {
        let bytes = std::fs::read(file).expect("read");
        std::hint::black_box(blake3::hash(&bytes));
    }
    started.elapsed().as_secs_f64() * 1e3
}

/// A kind of run: its flag, and what it measures for N plugins (milliseconds).
type Mode = (&'static str, fn(usize) -> f64);

const MODES: [Mode; 4] = [
    ("--in-place", |n| airlock_once(n, false)),
    ("--sealed", |n| airlock_once(n, true)),
    ("--hash", hash_once),
    ("--bare", bare_once),
];

/// Runs this benchmark as a child with `mode` for `n` plugins.
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
    for (mode, run) in MODES {
        if let Some(at) = args.iter().position(|a| a == mode) {
            let n = args.get(at + 1).and_then(|n| n.parse().ok()).expect("N");
            println!("{}", run(n));
            return;
        }
    }
    let mut rows = Vec::new();
    for n in SIZES {
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); MODES.len()];
        for _ in 0..RUNS {
            for (at, (mode, _)) in MODES.iter().enumerate() {
                times[at].push(child(mode, n));
            }
        }
        let mut row = serde_json::json!({ "n": n });
        let [in_place, sealed, hash, bare] = [0, 1, 2, 3].map(|at| spread(times[at].clone()));
        for (name, (median, low, high)) in [
            ("in_place", in_place),
            ("sealed", sealed),
            ("hash", hash),
            ("bare", bare),
        ] {
            row[format!("{name}_median_ms")] = median.into();
            row[format!("{name}_min_ms")] = low.into();
            row[format!("{name}_max_ms")] = high.into();
            row[format!("{name}_per_plugin_ms")] = (median / n as f64).into();
            row[format!("{name}_ratio")] = (median / bare.0).into();
        }
        println!(
            "startup n={n}: in place {:.2} ms ({:.3} per plugin, {:.2}× bare); sealed {:.2} ms \
             ({:.3}, {:.2}×); BLAKE3 alone {:.2} ms ({:.3}, {:.2}×); bare dlopen {:.2} ms ({:.3})",
            in_place.0,
            in_place.0 / n as f64,
            in_place.0 / bare.0,
            sealed.0,
            sealed.0 / n as f64,
            sealed.0 / bare.0,
            hash.0,
            hash.0 / n as f64,
            hash.0 / bare.0,
            bare.0,
            bare.0 / n as f64,
        );
        rows.push(row);
    }
    let out = std::env::var("AIRLOCK_BENCH_STARTUP_OUT")
        .unwrap_or_else(|_| "target/bench-startup.json".to_owned());
    std::fs::write(out, serde_json::to_vec_pretty(&rows).expect("json")).expect("write");
}
