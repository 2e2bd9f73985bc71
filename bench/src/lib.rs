//! Helpers shared by the benchmarks: where the benchmark plugin is, and plugin directories
//! holding copies of it under distinct ids.

use std::path::{Path, PathBuf};

/// The release build of the `bench-noop` fixture, from `AIRLOCK_BENCH_PLUGIN` (set by
/// `scripts/bench.sh`).
///
/// # Panics
///
/// If the variable is not set.
pub fn plugin() -> PathBuf {
    std::env::var_os("AIRLOCK_BENCH_PLUGIN")
        .map(PathBuf::from)
        .expect("run the benchmarks with scripts/bench.sh (AIRLOCK_BENCH_PLUGIN is not set)")
}

/// Writes `n` copies of the benchmark plugin into `dir`, copy `i` with the id `bench-nNNN`
/// (the same length as `bench-noop`, so the manifest block keeps its size).
///
/// # Panics
///
/// On I/O errors, or if the plugin's id is not where it is expected.
pub fn copies(dir: &Path, n: usize) {
    use std::os::unix::fs::PermissionsExt;
    let bytes = std::fs::read(plugin()).expect("the benchmark plugin");
    let needle = br#""id": "bench-noop""#;
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the id in the manifest");
    for i in 0..n {
        let mut copy = bytes.clone();
        let id = format!("bench-n{i:03}");
        copy[at + 7..at + 7 + id.len()].copy_from_slice(id.as_bytes());
        let path = dir.join(format!("{id}.{}", airlock::pipeline::library_suffix()));
        std::fs::write(&path, copy).expect("write a copy");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
}

/// Writes a copy of the benchmark plugin into `dir` whose manifest says `"concurrency":
/// "serial"` (the default for plugins), under the id `bench-serl`: the host then takes the
/// plugin's lock on every call.
///
/// # Panics
///
/// On I/O errors, or if the manifest is not laid out as expected.
pub fn serial_copy(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut bytes = std::fs::read(plugin()).expect("the benchmark plugin");
    // Same lengths, so the manifest block keeps its size: JSON allows the padding.
    for (from, to) in [
        (&br#""id": "bench-noop""#[..], &br#""id": "bench-serl""#[..]),
        (
            br#""concurrency": "parallel""#,
            br#""concurrency": "serial"  "#,
        ),
    ] {
        let at = bytes
            .windows(from.len())
            .position(|w| w == from)
            .expect("the manifest field");
        bytes[at..at + to.len()].copy_from_slice(to);
    }
    let path = dir.join(format!(
        "bench-serl.{}",
        airlock::pipeline::library_suffix()
    ));
    std::fs::write(&path, bytes).expect("write the serial copy");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}
