//! `airlock run --listen ADDR`: serves the plugins' declared routes (`/plugins/<id><path>`)
//! over HTTP/1.1 with hyper, each request handed to [`AsyncHost::handle_http`] (its plugin
//! call runs on the host's call threads, never on the server's). What a client can make it hold is bounded: connections (over the cap one is
//! closed at once), the time to send the head, the head's size (`431`), the time and size of
//! the body (`408`, `413` — a declared length over the limit is refused before a byte of the
//! body is read), and the time a connection may sit idle. Who may ask is decided from the head
//! before the body is read ([`guard`]): the bearer token of `AIRLOCK_LISTEN_TOKEN` (a public
//! route's signature, checked by the host once the body is read, stands in for it), or,
//! without one (loopback only), a request addressed to this listener from no other site.
//! `GET /metrics`, behind the same guard, answers the host's metrics in Prometheus's text
//! format.

mod guard;
mod idle;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use airlock::http::HttpIn;
use airlock::nonblocking::AsyncHost;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{watch, Semaphore};

use guard::Guard;
pub use guard::{read_token, TOKEN_ENV};
use idle::{Activity, Tracked};

/// What one client can make the listener hold.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections open at once; one over the cap is closed as it is accepted.
    pub max_connections: usize,
    /// How long a client may take to send a request's head.
    pub header_timeout: Duration,
    /// The largest head (request line and headers): over it, `431`.
    pub max_header_bytes: usize,
    /// How long a client may take to send a request's body: over it, `408`.
    pub body_timeout: Duration,
    /// The largest body: over it, `413`.
    pub max_body: usize,
    /// How long a connection may move no byte while none of its requests is being answered.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            body_timeout: Duration::from_secs(30),
            max_body: airlock::http::DEFAULT_MAX_REQUEST_BODY,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// The server, bound: [`Listener::serve`] answers requests until [`Listener::stop`].
pub struct Listener {
    socket: std::net::TcpListener,
    addr: SocketAddr,
    guard: Guard,
    limits: Limits,
    stop: watch::Sender<bool>,
}

impl Listener {
    /// Binds `addr`; with `token`, requests must carry it, and without, only a loopback address
    /// is served.
    ///
    /// # Errors
    ///
    /// Why it cannot listen there.
    pub fn bind(addr: &str, token: Option<String>, limits: Limits) -> Result<Self, String> {
        let socket = std::net::TcpListener::bind(addr)
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let bound = socket
            .local_addr()
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let guard = match token {
            Some(token) => Guard::Token(token),
            // Without a token every request runs as the host program: only this machine may ask.
            None if bound.ip().is_loopback() => Guard::Loopback(bound),
            None => {
                return Err(format!(
                    "set {TOKEN_ENV} to listen on {addr}: without a token only a loopback \
                     address is served"
                ))
            }
        };
        socket
            .set_nonblocking(true)
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        Ok(Self {
            socket,
            addr: bound,
            guard,
            limits,
            stop: watch::channel(false).0,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers requests with `host` until [`Listener::stop`].
    ///
    /// # Errors
    ///
    /// The runtime or the socket could not be set up.
    pub fn serve(&self, host: AsyncHost) -> Result<(), String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("airlock-listen")
            .enable_all()
            .build()
            .map_err(|e| format!("the listener's runtime: {e}"))?;
        let socket = self
            .socket
            .try_clone()
            .map_err(|e| format!("the listening socket: {e}"))?;
        let served = Arc::new(Served {
            host,
            guard: self.guard.clone(),
            limits: self.limits.clone(),
        });
        let mut stop = self.stop.subscribe();
        let served = runtime.block_on(async move {
            let socket = tokio::net::TcpListener::from_std(socket)
                .map_err(|e| format!("the listening socket: {e}"))?;
            let open = Arc::new(Semaphore::new(served.limits.max_connections));
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
                let served = Arc::clone(&served);
                tokio::spawn(async move {
                    served.connection(stream).await;
                    drop(permit);
                });
            }
        });
        // A route call still running ends on its own by its timeout; stopping does not wait
        // for it longer than this.
        runtime.shutdown_timeout(Duration::from_secs(2));
        served
    }

    /// Ends [`Listener::serve`] (connections being answered are dropped with it).
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }
}

/// What every connection shares.
struct Served {
    host: AsyncHost,
    guard: Guard,
    limits: Limits,
}

type Answer = Response<Full<Bytes>>;

impl Served {
    /// Serves one connection until it closes, fails, or idles past the limit.
    async fn connection(self: Arc<Self>, stream: tokio::net::TcpStream) {
        let activity = Activity::new();
        let io = TokioIo::new(Tracked::new(stream, Arc::clone(&activity)));
        let served = Arc::clone(&self);
        let answering = Arc::clone(&activity);
        let service = hyper::service::service_fn(move |request| {
            let served = Arc::clone(&served);
            let answering = answering.answering();
            async move {
                let answer = served.answer(request).await;
                drop(answering);
                Ok::<_, Infallible>(answer)
            }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout)
            .max_buf_size(self.limits.max_header_bytes.max(8192))
            .serve_connection(io, service);
        tokio::select! {
            _ = connection => {}
            () = activity.idle_for(self.limits.idle_timeout) => {}
        }
    }

    /// Answers one request: refused from its head, or its body read within the limits and
    /// handed to the host.
    async fn answer(&self, request: Request<Incoming>) -> Answer {
        // Only a token is waived for a public route: without one, nothing needs to know.
        let public = matches!(self.guard, Guard::Token(_))
            && self
                .host
                .is_public_route(request.method().as_str(), request.uri().path());
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        // A client that waits for `100 Continue` sends no body to read away.
        let sent = declared.filter(|_| !request.headers().contains_key(hyper::header::EXPECT));
        if let Some((status, why)) = self.guard.refuses(request.headers(), public) {
            self.linger(request.into_body(), sent, 0).await;
            return text(status, &why, true);
        }
        if request.uri().path() == METRICS_PATH {
            let method = request.method().clone();
            self.linger(request.into_body(), sent, 0).await;
            return self.metrics(&method);
        }
        let limit = self.limits.max_body;
        if declared.is_some_and(|n| n > limit as u64) {
            self.linger(request.into_body(), sent, limit).await;
            let why = format!("the body is over the limit of {limit} bytes");
            return text(413, &why, true);
        }
        let (head, body) = request.into_parts();
        let body = match tokio::time::timeout(
            self.limits.body_timeout,
            Limited::new(body, limit).collect(),
        )
        .await
        {
            Ok(Ok(body)) => body.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                let why = format!("the body is over the limit of {limit} bytes");
                return text(413, &why, true);
            }
            Ok(Err(e)) => return text(400, &format!("the body could not be read: {e}"), true),
            Err(_) => {
                let why = format!(
                    "the body took longer than {} ms",
                    self.limits.body_timeout.as_millis()
                );
                return text(408, &why, true);
            }
        };
        let mut headers = Vec::with_capacity(head.headers.len());
        for (name, value) in &head.headers {
            let Ok(value) = value.to_str() else {
                return text(400, &format!("header {name} is not text"), false);
            };
            headers.push((name.as_str().to_owned(), value.to_owned()));
        }
        let input = HttpIn {
            method: head.method.as_str().to_owned(),
            path: head.uri.path().to_owned(),
            query: head.uri.query().unwrap_or("").to_owned(),
            headers,
            body: body.to_vec(),
        };
        let out = self.host.handle_http(input).await;
        let mut answer = Response::new(Full::new(Bytes::from(out.body)));
        *answer.status_mut() =
            StatusCode::from_u16(out.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        for (name, value) in out.headers {
            if let (Ok(name), Ok(value)) = (
                hyper::header::HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                answer.headers_mut().append(name, value);
            }
        }
        answer
    }
}

/// Where the listener serves the host's metrics, in Prometheus's text format.
pub const METRICS_PATH: &str = "/metrics";

/// The content type of Prometheus's text exposition format.
const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Served {
    /// `GET /metrics`: the host's metrics ([`airlock::Host::metrics`]) as Prometheus text;
    /// any other method is refused (`405`).
    fn metrics(&self, method: &hyper::Method) -> Answer {
        if method != hyper::Method::GET && method != hyper::Method::HEAD {
            let mut refused = text(405, "/metrics answers GET only", false);
            refused
                .headers_mut()
                .insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return refused;
        }
        let body = self.host.metrics().prometheus();
        let mut answer = Response::new(Full::new(Bytes::from(body)));
        answer
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_TYPE));
        answer
    }
}

/// How much of a refused request's body is read away, beyond what it was allowed, so that a
/// client that sends its body without waiting reads the answer instead of a reset connection.
const LINGER: u64 = 1 << 20;

impl Served {
    /// Reads away the body of a request about to be refused, if it is declared at most
    /// [`LINGER`] bytes over `allowed` (a larger one is not read at all), within the body's
    /// time limit.
    async fn linger(&self, mut body: Incoming, declared: Option<u64>, allowed: usize) {
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
        let _ = tokio::time::timeout(self.limits.body_timeout, drain).await;
    }
}

/// A plain-text answer of the listener's own; `close` when the request's body was not read.
fn text(status: u16, message: &str, close: bool) -> Answer {
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

/// The CLI's authentication hook for [`airlock::Host::handle_http`]: the same bearer token, so
/// a request that reached the host some other way is held to it too.
pub fn token_auth(
    token: Option<String>,
) -> impl Fn(&HttpIn) -> Result<Option<airlock_abi::wire::Principal>, String> + Send + Sync {
    move |request: &HttpIn| {
        let Some(token) = &token else {
            return Ok(None);
        };
        let presented = request
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
            .and_then(|(_, v)| v.strip_prefix("Bearer "));
        if presented.is_some_and(|p| guard::same_token(p.as_bytes(), token.as_bytes())) {
            Ok(None)
        } else {
            Err(format!("a bearer token is needed ({TOKEN_ENV})"))
        }
    }
}
