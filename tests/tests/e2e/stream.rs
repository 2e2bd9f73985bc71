//! Streamed calls: chunks arrive in order as the plugin emits them, in-process and from a
//! worker; a slow consumer slows the plugin and keeps the host's memory bounded over 100,000
//! chunks; cancelling stops the stream; a call not taken as a stream discards the chunks.

use std::time::Duration;

use airlock::{CallErrorCode, CancelToken, Chunk, Host, Reply};
use airlock_tests::TempPluginDir;
use serde_json::json;

fn load(dir: &TempPluginDir, extra: &str) -> Host {
    let trace = dir.path().join("trace");
    let policy =
        format!("[plugins.long-call]\n{extra}\n[plugins.long-call.config]\ntrace = {trace:?}\n");
    let (host, report) = dir.load(&policy);
    assert!(report.all_ok(), "{report:#?}");
    host
}

/// This process's resident memory, in bytes.
fn resident() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

fn number(chunk: &Chunk) -> u64 {
    match chunk {
        Chunk::Bytes(bytes) => u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")),
        Chunk::Json(value) => value.as_u64().expect("a number"),
    }
}

/// Streams 100 000 chunks of 4 KiB to a slow consumer; returns how much this process's resident
/// memory grew at most meanwhile.
fn stream_slowly(host: &Host) -> u64 {
    const COUNT: u64 = 100_000;
    const SIZE: usize = 4096;
    let before = resident();
    let mut peak = before;
    let mut next = 0;
    let answer = host
        .call("long-call", "chunks")
        .cancel_on(&CancelToken::new())
        .on_chunk(|chunk| {
            assert_eq!(number(&chunk), next, "in order");
            next += 1;
            // Slow: a pause at the start, then 1 ms every thousand chunks.
            if next == 1 {
                std::thread::sleep(Duration::from_millis(300));
            } else if next % 1000 == 0 {
                std::thread::sleep(Duration::from_millis(1));
                peak = peak.max(resident());
            }
        })
        .json(&json!({"count": COUNT, "size": SIZE}))
        .expect("streamed");
    assert_eq!(next, COUNT);
    let Reply::Ok(answer) = answer else {
        panic!("{answer:?}")
    };
    assert_eq!(answer["emitted"], COUNT);
    // The plugin waited for the consumer's first pause instead of running ahead of it.
    assert!(answer["ms"].as_u64().expect("ms") >= 300, "{answer}");
    let grew = peak.saturating_sub(before);
    eprintln!(
        "streamed {} MB; resident memory grew by {:.1} MB at most",
        COUNT * SIZE as u64 / 1_000_000,
        grew as f64 / 1e6
    );
    grew
}

#[test]
fn a_slow_consumer_of_100000_chunks_slows_the_plugin_and_the_hosts_memory_stays_bounded() {
    let dir = TempPluginDir::with(&["long-call"]);
    let host = load(&dir, "call_timeout_ms = 120000");
    // 400 MB go through; the host holds at most a few of them at once. The measure is the whole
    // process's, which the tests running beside this one move too: a host that buffered the
    // stream would grow by hundreds of MB on every run, so one run of two under the bound is
    // the bound kept.
    let first = stream_slowly(&host);
    let grew = if first < 64 << 20 {
        first
    } else {
        stream_slowly(&host)
    };
    assert!(
        grew < 64 << 20,
        "resident memory grew by {first} then {grew} bytes"
    );
}

#[test]
fn chunks_from_a_worker_arrive_in_order_and_an_unstreamed_call_discards_them() {
    for isolation in ["", "isolation = \"process\"\nsandbox = false"] {
        let dir = TempPluginDir::with(&["long-call"]);
        let host = load(&dir, isolation);
        let mut got = Vec::new();
        let answer = host
            .call("long-call", "chunks")
            .cancel_on(&CancelToken::new())
            .on_chunk(|chunk| got.push(number(&chunk)))
            .json(&json!({"count": 1000}))
            .expect("streamed");
        assert!(matches!(answer, Reply::Ok(ref a) if a["emitted"] == 1000));
        assert_eq!(got, (0..1000).collect::<Vec<_>>(), "{isolation:?}");
        // The same action called plainly: its chunks go nowhere, its answer comes back.
        let plain = host
            .call("long-call", "chunks")
            .json(&json!({"count": 10}))
            .expect("called");
        assert!(matches!(plain, Reply::Ok(ref a) if a["emitted"] == 10));
    }
}

#[test]
fn cancelling_stops_the_stream_and_the_call_ends_cancelled() {
    for isolation in ["", "isolation = \"process\"\nsandbox = false"] {
        let dir = TempPluginDir::with(&["long-call"]);
        let host = load(&dir, isolation);
        let token = CancelToken::new();
        let mut taken = 0u64;
        let err = host
            .call("long-call", "chunks")
            .cancel_on(&token)
            .on_chunk(|_| {
                taken += 1;
                if taken == 10 {
                    token.cancel();
                }
            })
            .json(&json!({"count": 1_000_000, "size": 64}))
            .expect_err("cancelled");
        assert_eq!(err.code, CallErrorCode::Cancelled, "{isolation:?}: {err}");
        assert!(
            taken < 100,
            "{isolation:?}: {taken} chunks after cancelling"
        );
        let trace = std::fs::read_to_string(dir.path().join("trace")).expect("trace");
        assert!(
            trace.contains("chunks stopped after"),
            "{isolation:?}: {trace}"
        );
        assert_eq!(host.plugin("long-call").expect("loaded").stats.faults, 0);
    }
}

#[test]
fn a_plugin_waiting_on_a_stalled_consumer_is_stopped_at_its_timeout() {
    let dir = TempPluginDir::with(&["long-call"]);
    let host = load(&dir, "call_timeout_ms = 200\ncancel_grace_ms = 3000");
    let mut taken = 0u64;
    // The consumer stalls on the first chunk past the call's timeout; nobody cancels the token.
    let err = host
        .call("long-call", "chunks")
        .cancel_on(&CancelToken::new())
        .on_chunk(|_| {
            taken += 1;
            if taken == 1 {
                std::thread::sleep(Duration::from_millis(1000));
            }
        })
        .json(&json!({"count": 1000}))
        .expect_err("cancelled at its timeout");
    assert_eq!(err.code, CallErrorCode::Cancelled, "{err}");
    // The plugin waiting in emit was told, and stopped: it did not emit the rest once the
    // consumer came back.
    let trace = std::fs::read_to_string(dir.path().join("trace")).expect("trace");
    assert!(trace.contains("chunks stopped after"), "{trace}");
    assert!(taken < 1000, "{taken}");
    assert_eq!(host.plugin("long-call").expect("loaded").stats.faults, 0);
}
