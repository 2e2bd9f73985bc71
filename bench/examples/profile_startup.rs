//! Splits startup into stages 1-3 (read, hash, verify) and 4-5 (shadow copy, dlopen, init),
//! for N copies of the benchmark plugin.

use std::time::Instant;

use airlock::Host;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(100);
    let dir = tempfile::tempdir().expect("temp dir");
    airlock_bench::copies(dir.path(), n);
    let builder = Host::builder().plugin_dir(dir.path());
    let options = builder.check_options().expect("options");
    let host = builder.build().expect("host");
    let started = Instant::now();
    let checked = airlock::pipeline::check(&options).expect("check");
    let checked_at = started.elapsed();
    for c in checked {
        host.load_checked(c.expect("passes")).expect("loads");
    }
    let total = started.elapsed();
    println!(
        "n={n}: stages 1-3 {:.1} ms, stages 4-5 {:.1} ms, total {:.1} ms",
        checked_at.as_secs_f64() * 1e3,
        (total - checked_at).as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e3
    );
}
