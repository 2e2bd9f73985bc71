//! What the two HTTP servers of `airlock run` share — the routes' listener and the web
//! console: the accept loop with its cap on connections, each connection's head timeout, head
//! size and idle limit, and a request body read within the time and size limits.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Incoming};
use hyper::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, EXPECT};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{watch, Semaphore};

use super::idle::{Activity, Tracked};
use super::Limits;

/// An answer of a server's own, whole.
pub(crate) type Answer = Response<Full<Bytes>>;

/// A runtime for a server: two worker threads named after it.
///
/// # Errors
///
/// The runtime could not be built.
pub(crate) fn runtime(name: &str) -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(|e| format!("the {name} runtime: {e}"))
}

/// Accepts connections on `socket` until `stop` says so, at most `limits.max_connections` at
/// once (one over the cap is closed as it is accepted), each answered by `answer`.
///
/// # Errors
///
/// The socket could not be handed to the runtime.
pub(crate) async fn accept<F, Fut, B>(
    socket: std::net::TcpListener,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    answer: F,
) -> Result<(), String>
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let socket = tokio::net::TcpListener::from_std(socket)
        .map_err(|e| format!("the listening socket: {e}"))?;
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let answer = Arc::new(answer);
    let limits = Arc::new(limits);
    loop {
        let accepted = tokio::select! {
            accepted = socket.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => return Ok(()),
        };
        let Ok((stream, _)) = accepted else {
            // Out of descriptors, or a connection reset before it was taken: go on.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (answer, limits) = (Arc::clone(&answer), Arc::clone(&limits));
        tokio::spawn(async move {
            connection(stream, &limits, answer).await;
            drop(permit);
        });
    }
}

/// Serves one connection until it closes, fails, or idles past the limit.
async fn connection<F, Fut, B>(stream: tokio::net::TcpStream, limits: &Limits, answer: Arc<F>)
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let activity = Activity::new();
    let io = TokioIo::new(Tracked::new(stream, Arc::clone(&activity)));
    let answering = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |request| {
        let answer = Arc::clone(&answer);
        let answering = answering.answering();
        async move {
            let answered = answer(request).await;
            drop(answering);
            Ok::<_, Infallible>(answered)
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .serve_connection(io, service);
    tokio::select! {
        _ = connection => {}
        () = activity.idle_for(limits.idle_timeout) => {}
    }
}

/// The length a request declares for its body, if it will send it without waiting for
/// `100 Continue` (a client that waits sends no body to read away).
pub(crate) fn declared_length(request: &Request<Incoming>) -> (Option<u64>, Option<u64>) {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let sent = declared.filter(|_| !request.headers().contains_key(EXPECT));
    (declared, sent)
}

/// Reads a request's body within `limits`: over the size, `413` (a declared length over it is
/// refused before a byte is read); over the time, `408`.
///
/// # Errors
///
/// The answer that refuses the request.
pub(crate) async fn read_body(
    limits: &Limits,
    request: Request<Incoming>,
) -> Result<(hyper::http::request::Parts, Bytes), Answer> {
    let (declared, sent) = declared_length(&request);
    let limit = limits.max_body;
    let over = || format!("the body is over the limit of {limit} bytes");
    if declared.is_some_and(|n| n > limit as u64) {
        linger(limits, request.into_body(), sent, limit).await;
        return Err(text(413, &over(), true));
    }
    let (head, body) = request.into_parts();
    match tokio::time::timeout(limits.body_timeout, Limited::new(body, limit).collect()).await {
        Ok(Ok(body)) => Ok((head, body.to_bytes())),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(text(413, &over(), true)),
        Ok(Err(e)) => Err(text(400, &format!("the body could not be read: {e}"), true)),
        Err(_) => Err(text(
            408,
            &format!(
                "the body took longer than {} ms",
                limits.body_timeout.as_millis()
            ),
            true,
        )),
    }
}

/// How much of a refused request's body is read away, beyond what it was allowed, so that a
/// client that sends its body without waiting reads the answer instead of a reset connection.
const LINGER: u64 = 1 << 20;

/// Reads away the body of a request about to be refused, if it is declared at most
/// [`LINGER`] bytes over `allowed` (a larger one is not read at all), within the body's time
/// limit.
pub(crate) async fn linger(
    limits: &Limits,
    mut body: Incoming,
    declared: Option<u64>,
    allowed: usize,
) {
    let Some(declared) = declared.filter(|n| n.saturating_sub(allowed as u64) <= LINGER) else {
        return;
    };
    let drain = async {
        let mut read = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, |d| d.len() as u64);
            if read >= declared {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(limits.body_timeout, drain).await;
}

/// Where both servers answer the host's metrics, in Prometheus's text format.
pub(crate) const METRICS_PATH: &str = "/metrics";

/// The content type of Prometheus's text exposition format.
const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`, once the server has decided who may ask: the host's metrics
/// ([`airlock::Host::metrics`]) as Prometheus text; any other method is refused (`405`).
pub(crate) async fn metrics(
    host: &airlock::Host,
    limits: &Limits,
    request: Request<Incoming>,
) -> Answer {
    let method = request.method().clone();
    let (_, sent) = declared_length(&request);
    linger(limits, request.into_body(), sent, 0).await;
    if method != hyper::Method::GET && method != hyper::Method::HEAD {
        let mut refused = text(405, "/metrics answers GET only", false);
        refused
            .headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return refused;
    }
    let mut answer = Response::new(Full::new(Bytes::from(host.metrics().prometheus())));
    answer
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_TYPE));
    answer
}

/// A plain-text answer of the server's own; `close` when the request's body was not read.
pub(crate) fn text(status: u16, message: &str, close: bool) -> Answer {
    let mut answer = Response::new(Full::new(Bytes::from(format!("{message}\n"))));
    *answer.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let headers = answer.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if close {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    answer
}

/// A request head of `pairs`, for the tests of who may ask.
#[cfg(test)]
pub(crate) fn head(pairs: &[(&'static str, &'static str)]) -> hyper::HeaderMap {
    let mut map = hyper::HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, value.parse().expect("value"));
    }
    map
}
