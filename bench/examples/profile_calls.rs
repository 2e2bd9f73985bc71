//! Calls the no-op action in a loop, for a profiler: `perf record` this binary.
//! Which loop is chosen by the first argument: `handle` (default), `name`, `callbacks`.

use airlock::Host;

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(
        airlock_bench::plugin(),
        dir.path().join(format!(
            "bench-noop.{}",
            airlock::pipeline::library_suffix()
        )),
    )
    .expect("copy");
    let host = Host::builder()
        .plugin_dir(dir.path())
        .build()
        .expect("host");
    assert!(host.load().expect("load").all_ok());
    let n: u64 = std::env::args()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or(50_000_000);
    match std::env::args().nth(1).as_deref().unwrap_or("handle") {
        "name" => {
            for _ in 0..n {
                let _ = host.call("bench-noop", "noop").bytes(b"null").expect("ok");
            }
        }
        "callbacks" => {
            let out = host
                .call("bench-noop", "callbacks")
                .json(&serde_json::json!(n))
                .expect("call");
            println!("{out:?}");
        }
        _ => {
            let noop = host.action("bench-noop", "noop").expect("resolved");
            for _ in 0..n {
                let _ = noop
                    .call()
                    .bytes(std::hint::black_box(b"null"))
                    .expect("ok");
            }
        }
    }
}
