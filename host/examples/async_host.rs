//! An async program that embeds Airlock: it serves its plugins' routes behind its own hyper
//! server and calls a plugin from a task, without ever blocking one of tokio's worker threads.
//! Each plugin call runs on tokio's blocking pool; a request whose client goes away drops its
//! future, and that cancels the plugin's call.
//!
//! ```text
//! cargo run -p airlock --features tokio --example async_host -- <plugin dir> [address]
//! curl http://127.0.0.1:8080/plugins/<id>/<route>
//! ```

use std::convert::Infallible;
use std::time::Duration;

use airlock::http::HttpIn;
use airlock::nonblocking::AsyncHost;
use airlock::Host;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

/// Serves `host`'s routes on `listener` until the task is dropped.
pub async fn serve(host: AsyncHost, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let host = host.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let host = host.clone();
                async move { Ok::<_, Infallible>(route(&host, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// One request: its body read within the host's limit, then handed to the plugin's route.
async fn route(host: &AsyncHost, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (head, body) = request.into_parts();
    let limit = airlock::http::DEFAULT_MAX_REQUEST_BODY;
    let Ok(body) = Limited::new(body, limit).collect().await else {
        let mut refused = Response::new(Full::new(Bytes::from_static(b"body too large\n")));
        *refused.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
        return refused;
    };
    let input = HttpIn {
        method: head.method.to_string(),
        path: head.uri.path().to_owned(),
        query: head.uri.query().unwrap_or_default().to_owned(),
        headers: head
            .headers
            .iter()
            .filter_map(|(n, v)| Some((n.to_string(), v.to_str().ok()?.to_owned())))
            .collect(),
        body: body.to_bytes().to_vec(),
    };
    let out = host.handle_http(input).await;
    let mut response = Response::new(Full::new(Bytes::from(out.body)));
    *response.status_mut() = StatusCode::from_u16(out.status).unwrap_or(StatusCode::BAD_GATEWAY);
    for (name, value) in out.headers {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            hyper::header::HeaderValue::from_str(&value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .ok_or("usage: async_host <plugin dir> [address]")?;
    let address = args.next().unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let host = AsyncHost::from(Host::builder().plugin_dir(dir).build()?);
    eprint!("{}", host.load()?.to_table());
    // A call from a task is a future too (`host.call(plugin, action).json(&input).await`), and
    // `.stream(..)` yields a call's chunks as they come.
    let listener = tokio::net::TcpListener::bind(&address).await?;
    eprintln!("serving the plugins' routes on http://{address}/plugins/<id>/...");
    tokio::select! {
        served = serve(host.clone(), listener) => served?,
        _ = tokio::signal::ctrl_c() => {}
    }
    host.shutdown();
    Ok(())
}
