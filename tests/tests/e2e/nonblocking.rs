//! The async embedding API on real plugins: the async example host serving routes behind
//! hyper, a call that leaves the runtime's only worker thread free, a dropped future that
//! cancels its plugin's call, and a streamed call read as a `Stream`.

#[allow(dead_code)]
#[path = "../../../host/examples/async_host.rs"]
mod async_host;

use std::pin::Pin;
use std::time::{Duration, Instant};

use airlock::nonblocking::AsyncHost;
use airlock::{Chunk, Reply};
use airlock_tests::TempPluginDir;
use serde_json::json;

fn loaded(dir: &TempPluginDir) -> AsyncHost {
    let trace = dir.path().join("trace");
    let data = dir.path().join("kv");
    let (host, report) = dir.load(&format!(
        "[host]\ndata_dir = {data:?}\n[plugins.courier]\ngrants = [\"kv\"]\n\
         [plugins.long-call.config]\ntrace = {trace:?}\n"
    ));
    assert!(report.all_ok(), "{report:#?}");
    AsyncHost::from(host)
}

#[test]
fn the_async_example_serves_the_routes_behind_hyper() {
    let dir = TempPluginDir::with(&["courier", "long-call"]);
    let host = loaded(&dir);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bound");
    let addr = listener.local_addr().expect("addr");
    runtime.spawn(async_host::serve(host.clone(), listener));
    let response = ureq::post(&format!("http://{addr}/plugins/courier/webhook"))
        .send_string("{\"n\": 1}")
        .expect("served");
    assert_eq!(response.status(), 202);
    assert!(response.header("x-request-id").is_some());
    let response = ureq::get(&format!("http://{addr}/plugins/long-call/slow?10"))
        .call()
        .expect("served");
    assert_eq!(response.into_string().expect("text"), "done");
    match ureq::get(&format!("http://{addr}/plugins/courier/nope")).call() {
        Err(ureq::Error::Status(404, _)) => {}
        other => panic!("expected 404: {other:?}"),
    }
}

#[test]
fn a_call_leaves_the_runtimes_worker_thread_free() {
    let dir = TempPluginDir::with(&["courier", "long-call"]);
    let host = loaded(&dir);
    // One worker thread: had the call blocked it, the ticker would not tick meanwhile.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let ticked = runtime.block_on(async {
        let call = host.call("long-call", "patient").json(&300);
        let ticker = async {
            let mut ticks = 0u32;
            while started.elapsed() < Duration::from_millis(250) {
                tokio::time::sleep(Duration::from_millis(10)).await;
                ticks += 1;
            }
            ticks
        };
        let (reply, ticks) = tokio::join!(call, ticker);
        assert!(matches!(reply, Ok(Reply::Ok(_))), "{reply:?}");
        ticks
    });
    assert!(
        ticked >= 5,
        "the worker thread ticked {ticked} times in 250 ms"
    );
}

#[test]
fn dropping_a_call_future_cancels_the_plugins_call() {
    let dir = TempPluginDir::with(&["courier", "long-call"]);
    let host = loaded(&dir);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let timed_out = runtime.block_on(async {
        tokio::time::timeout(
            Duration::from_millis(300),
            host.call("long-call", "patient").json(&10_000),
        )
        .await
    });
    assert!(timed_out.is_err(), "the call ran to its end: {timed_out:?}");
    let trace = dir.path().join("trace");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(&trace).unwrap_or_default();
        if text.contains("patient saw cancelled") {
            break;
        }
        assert!(Instant::now() < deadline, "the plugin never saw it: {text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_streamed_call_is_a_stream_of_its_chunks_then_its_reply() {
    let dir = TempPluginDir::with(&["courier", "long-call"]);
    let host = loaded(&dir);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (chunks, reply) = runtime.block_on(async {
        let input = serde_json::to_vec(&json!({"count": 5})).expect("json");
        let mut stream = host.call("long-call", "chunks").stream(input);
        let mut chunks = Vec::new();
        while let Some(chunk) =
            std::future::poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut stream), cx))
                .await
        {
            chunks.push(chunk);
        }
        (chunks, stream.reply().await)
    });
    let numbers: Vec<Chunk> = (0..5).map(|n| Chunk::Json(json!(n))).collect();
    assert_eq!(chunks, numbers);
    assert!(matches!(reply, Ok(Reply::Ok(_))), "{reply:?}");
}
