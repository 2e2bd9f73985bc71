//! Splits startup of N copies of the benchmark plugin into stages 1-3 (discover, read, hash,
//! decide: `pipeline::check`, which loads nothing) and the whole load (`Host::load`: the same,
//! then `dlopen` and create), in place or from sealed copies:
//! `profile_startup [N] [in-place|sealed] [DIR] [load]`. With DIR, the copies are written there
//! once and reused by later runs; with `load`, stages 1-3 are not run alone first, so that a
//! profiler sees only the load.

use std::time::Instant;

use airlock::pipeline::Placement;
use airlock::{Host, Policy};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(100);
    let sealed = args.get(2).is_some_and(|mode| mode == "sealed");
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = args.get(3).map_or(temp.path().to_path_buf(), Into::into);
    std::fs::create_dir_all(&dir).expect("dir");
    if std::fs::read_dir(&dir).expect("read dir").count() != n {
        use std::os::unix::fs::PermissionsExt;
        airlock_bench::copies(&dir, n);
        // Installed read-only, so that they may be loaded in place.
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let path = entry.expect("entry").path();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o555))
                .expect("chmod");
        }
    }
    let mut policy = Policy::default();
    policy.host_mut().always_seal = sealed;
    let builder = Host::builder().plugin_dir(&dir).policy(policy);
    let options = builder.check_options().expect("options");
    let started = Instant::now();
    if args.get(4).is_none_or(|what| what != "load") {
        let checked = airlock::pipeline::check(&options).expect("check");
        assert!(checked.iter().all(Result::is_ok));
    }
    let checked_in = started.elapsed();
    let host = builder.build().expect("host");
    let started = Instant::now();
    let report = host.load().expect("load");
    let loaded_in = started.elapsed();
    assert!(report.all_ok(), "{report:?}");
    let in_place = report
        .plugins
        .iter()
        .filter(|p| matches!(p.placement, Some(Placement::InPlace { .. })))
        .count();
    println!(
        "n={n}, {in_place} in place: stages 1-3 alone {:.1} ms; load (stages 1-5) {:.1} ms",
        checked_in.as_secs_f64() * 1e3,
        loaded_in.as_secs_f64() * 1e3,
    );
}
