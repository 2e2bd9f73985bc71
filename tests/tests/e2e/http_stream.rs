//! Streamed responses against real servers on 127.0.0.1: the `courier` relays a body of over
//! 100 MB to its caller chunk by chunk while the host's memory stays flat, in-process and from
//! a worker; a server that goes quiet past the idle time ends the stream with an error; each
//! stream leaves one audit record with the bytes it carried.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use airlock::services::AuditOutcome;
use airlock::{Chunk, Host, Reply};
use airlock_tests::TempPluginDir;
use serde_json::{json, Value};

/// A real HTTP server on 127.0.0.1 that answers every request with a close-delimited body:
/// `chunks` pieces of `size` bytes, then — if `quiet` — silence for that long before it closes.
fn server(chunks: usize, size: usize, quiet: Option<Duration>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a server");
    let at = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                    line.clear();
                }
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n\
                            Connection: close\r\n\r\n";
                if stream.write_all(head.as_bytes()).is_err() {
                    return;
                }
                let piece = vec![b'x'; size];
                for _ in 0..chunks {
                    if stream.write_all(&piece).is_err() {
                        return;
                    }
                }
                let _ = stream.flush();
                if let Some(quiet) = quiet {
                    std::thread::sleep(quiet);
                }
            });
        }
    });
    at
}

fn load(extra: &str, http: &str) -> (TempPluginDir, Host) {
    let dir = TempPluginDir::with(&["courier"]);
    let data = dir.path().join("data");
    let policy = format!(
        "[host]\ndata_dir = {data:?}\n[plugins.courier]\n{extra}\ncall_timeout_ms = 120000\n\
         grants = [\"kv\", \"http.outbound:127.0.0.1\"]\n[plugins.courier.http]\n\
         allow_http = [\"127.0.0.1\"]\nallow_private = [\"127.0.0.1/32\"]\n{http}\n"
    );
    let (host, report) = dir.load(&policy);
    assert!(report.all_ok(), "{report:#?}");
    (dir, host)
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

/// Relays `url` through the courier: its answer, the bytes and chunks the caller received, and
/// the resident memory's peak growth while it ran.
fn relay(host: &Host, url: &str) -> (Value, u64, u64, u64) {
    let before = resident();
    let (mut bytes, mut chunks, mut peak) = (0u64, 0u64, before);
    let answer = host
        .call("courier", "relay")
        .on_chunk(|chunk| {
            let Chunk::Bytes(chunk) = chunk else {
                panic!("bytes were emitted")
            };
            assert!(chunk.iter().all(|b| *b == b'x'));
            bytes += chunk.len() as u64;
            chunks += 1;
            if chunks % 64 == 0 {
                peak = peak.max(resident());
            }
        })
        .json(&json!({ "url": url }))
        .expect("relayed");
    let Reply::Ok(answer) = answer else {
        panic!("{answer:?}")
    };
    (answer, bytes, chunks, peak.saturating_sub(before))
}

#[test]
fn a_body_of_over_100_mb_is_relayed_chunk_by_chunk_and_the_hosts_memory_stays_flat() {
    const SIZE: usize = 64 << 10;
    const COUNT: usize = 1700;
    let total = (SIZE * COUNT) as u64;
    assert!(total > 100 << 20);
    let at = server(COUNT, SIZE, None);
    let (_dir, host) = load("", "");
    let (answer, bytes, chunks, grew) = relay(&host, &format!("http://{at}/events"));
    assert_eq!(answer["status"], 200, "{answer}");
    assert_eq!(answer["bytes"], total, "{answer}");
    assert_eq!(bytes, total);
    assert_eq!(answer["chunks"], chunks);
    assert!(chunks >= COUNT as u64, "at most 64 KiB a chunk: {chunks}");
    eprintln!(
        "relayed {} MB in {chunks} chunks; resident memory grew by {:.1} MB at most",
        total >> 20,
        grew as f64 / 1e6
    );
    assert!(grew < 30 << 20, "resident memory grew by {grew} bytes");
    let records: Vec<String> = host
        .audit()
        .tail(usize::MAX)
        .into_iter()
        .filter(|r| r.capability == "http.outbound:127.0.0.1")
        .map(|r| r.detail)
        .collect();
    assert_eq!(
        records,
        [format!(
            "GET 127.0.0.1 -> 200, streamed {total} bytes, to its end"
        )]
    );
}

#[test]
fn a_stream_from_a_worker_reaches_the_caller_too() {
    let at = server(300, 32 << 10, None);
    let (_dir, host) = load("isolation = \"process\"\nsandbox = false", "");
    let (answer, bytes, chunks, _) = relay(&host, &format!("http://{at}/events"));
    assert_eq!(answer["bytes"], 300 * (32 << 10), "{answer}");
    assert_eq!(bytes, 300 * (32 << 10));
    assert!(chunks > 1);
    assert_eq!(
        host.audit()
            .tail(usize::MAX)
            .iter()
            .filter(|r| r.outcome == AuditOutcome::Http && r.detail.contains("streamed"))
            .count(),
        1
    );
}

#[test]
fn a_server_quiet_past_the_idle_time_ends_the_stream_with_an_error() {
    let at = server(3, 1000, Some(Duration::from_secs(8)));
    let (_dir, host) = load("", "stream_idle_ms = 300");
    let started = Instant::now();
    let (answer, bytes, _, _) = relay(&host, &format!("http://{at}/events"));
    assert_eq!(bytes, 3000, "what arrived before the silence was relayed");
    let error = answer["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("the server sent nothing for 300 ms"),
        "{answer}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "the stream ended long before the server did"
    );
    let ended = host
        .audit()
        .tail(usize::MAX)
        .into_iter()
        .find(|r| r.detail.contains("streamed"))
        .expect("a record");
    assert!(ended
        .detail
        .contains("streamed 3000 bytes, ended: the server sent nothing"));
}
