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
pub(crate) mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use airlock::http::HttpIn;
use airlock::nonblocking::AsyncHost;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};
use tokio::sync::watch;

use guard::Guard;
pub(crate) use guard::{addressed_to, same_token, token_from};
pub use guard::{read_token, TOKEN_ENV};
use server::{text, Answer};

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
        let runtime = server::runtime("airlock-listen")?;
        let socket = self
            .socket
            .try_clone()
            .map_err(|e| format!("the listening socket: {e}"))?;
        let served = Arc::new(Served {
            host,
            guard: self.guard.clone(),
            limits: self.limits.clone(),
        });
        let stop = self.stop.subscribe();
        let limits = self.limits.clone();
        let served = runtime.block_on(server::accept(socket, limits, stop, move |request| {
            let served = Arc::clone(&served);
            async move { served.answer(request).await }
        }));
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

impl Served {
    /// Answers one request: refused from its head, or its body read within the limits and
    /// handed to the host.
    async fn answer(&self, request: Request<Incoming>) -> Answer {
        // Only a token is waived for a public route: without one, nothing needs to know.
        let public = matches!(self.guard, Guard::Token(_))
            && self
                .host
                .is_public_route(request.method().as_str(), request.uri().path());
        if let Some((status, why)) = self.guard.refuses(request.headers(), public) {
            let (_, sent) = server::declared_length(&request);
            server::linger(&self.limits, request.into_body(), sent, 0).await;
            return text(status, &why, true);
        }
        if request.uri().path() == server::METRICS_PATH {
            return server::metrics(&self.host, &self.limits, request).await;
        }
        let (head, body) = match server::read_body(&self.limits, request).await {
            Ok(read) => read,
            Err(refused) => return refused,
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
            if name.eq_ignore_ascii_case("set-cookie") && crate::web::sets_session(&value) {
                continue;
            }
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
