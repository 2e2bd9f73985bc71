//! `airlock run --console ADDR`: the web console — a page that shows the plugins (state,
//! generation, isolation, signature, grants, counters and charts of the last minutes), the
//! audit log following live, the calls waiting for approval, and acts on them through the
//! same [`airlock::Host`] methods as the line console.
//!
//! It is served by the same machinery as `--listen` ([`crate::listen::server`]: a cap on
//! connections, head and body limits, idle timeouts). Who may look is decided before anything
//! else ([`auth`]): a token, always — `AIRLOCK_CONSOLE_TOKEN`, or one generated at start —
//! exchanged once for a session cookie; a change is a `POST` of JSON from the console's own
//! origin. The page is static ([`assets`]): no inline script, under a strict
//! Content-Security-Policy. Live updates go out as server-sent events ([`events`]), the charts
//! come from a sampler on the server ([`series`]).

mod actions;
mod api;
mod assets;
mod auth;
mod events;
mod series;

pub(crate) use auth::sets_session;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use airlock::nonblocking::AsyncHost;
use airlock::Host;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::watch;

use crate::listen::server;
use crate::listen::Limits;

pub use auth::console_token;

/// What one client can make the console hold: the listener's limits, with fewer connections
/// and a body no larger than a config needs.
pub fn limits() -> Limits {
    Limits {
        max_connections: 64,
        max_body: 256 * 1024,
        ..Limits::default()
    }
}

/// What the console answers with: whole bodies, or an event stream.
type Body = BoxBody<Bytes, Infallible>;
type Answer = Response<Body>;

/// The web console, bound: [`WebConsole::serve`] answers until [`WebConsole::stop`].
pub struct WebConsole {
    socket: std::net::TcpListener,
    addr: SocketAddr,
    token: String,
    limits: Limits,
    stop: watch::Sender<bool>,
}

impl WebConsole {
    /// Binds `addr`; every request must show `token` (or the session it was exchanged for).
    ///
    /// # Errors
    ///
    /// Why it cannot listen there.
    pub fn bind(addr: &str, token: String, limits: Limits) -> Result<Self, String> {
        let socket = std::net::TcpListener::bind(addr)
            .map_err(|e| format!("cannot serve the console on {addr}: {e}"))?;
        let bound = socket
            .local_addr()
            .and_then(|bound| socket.set_nonblocking(true).map(|()| bound))
            .map_err(|e| format!("cannot serve the console on {addr}: {e}"))?;
        Ok(Self {
            socket,
            addr: bound,
            token,
            limits,
            stop: watch::channel(false).0,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address to open, with the token that starts a session.
    pub fn url(&self) -> String {
        let token: String = self
            .token
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        format!("http://{}/?token={token}", self.addr)
    }

    /// Answers requests about `host` until [`WebConsole::stop`].
    ///
    /// # Errors
    ///
    /// The runtime or the socket could not be set up.
    pub fn serve(&self, host: AsyncHost) -> Result<(), String> {
        let runtime = server::runtime("airlock-console")?;
        let socket = self
            .socket
            .try_clone()
            .map_err(|e| format!("the console's socket: {e}"))?;
        let stop = self.stop.subscribe();
        let host = Arc::clone(host.shared());
        let console = Arc::new(Served {
            series: series::Series::default(),
            streams: events::Streams::default(),
            sessions: auth::Sessions::new(self.token.clone()),
            loopback: self.addr.ip().is_loopback().then_some(self.addr),
            limits: self.limits.clone(),
            stop: stop.clone(),
            host,
        });
        let limits = self.limits.clone();
        let served = runtime.block_on(async move {
            tokio::spawn(series::sample(Arc::clone(&console)));
            server::accept(socket, limits, stop, move |request| {
                let console = Arc::clone(&console);
                async move { console.answer(request).await }
            })
            .await
        });
        runtime.shutdown_timeout(Duration::from_secs(2));
        served
    }

    /// Ends [`WebConsole::serve`] and the event streams it holds open.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }
}

/// What every request shares.
struct Served {
    host: Arc<Host>,
    /// On a loopback address, the console answers only requests addressed to it by name
    /// (`Host`): a rebinding page's requests name another.
    loopback: Option<SocketAddr>,
    sessions: auth::Sessions,
    series: series::Series,
    streams: events::Streams,
    limits: Limits,
    stop: watch::Receiver<bool>,
}

impl Served {
    /// Answers one request: who asks is checked first, then the route.
    async fn answer(self: Arc<Self>, request: Request<Incoming>) -> Answer {
        let mut answer = self.route(request).await;
        secure(answer.headers_mut());
        answer
    }

    async fn route(self: Arc<Self>, request: Request<Incoming>) -> Answer {
        let path = request.uri().path().to_owned();
        if let Some(addr) = self.loopback {
            if let Err(why) = crate::listen::addressed_to(addr, request.headers()) {
                return self.refuse(request, (403, why)).await;
            }
        }
        if request.method() == Method::GET && path == "/" {
            if let Some(answer) = self.sessions.exchange(&request) {
                return answer;
            }
        }
        if let Err(refused) = self.sessions.admits(request.headers()) {
            return self.refuse(request, refused).await;
        }
        if path == server::METRICS_PATH {
            return server::metrics(&self.host, &self.limits, request)
                .await
                .map(BodyExt::boxed);
        }
        if request.method() == Method::POST {
            if let Err(refused) = auth::same_origin(request.headers()) {
                return self.refuse(request, refused).await;
            }
            let (head, body) = match server::read_body(&self.limits, request).await {
                Ok(read) => read,
                Err(refused) => return refused.map(BodyExt::boxed),
            };
            return actions::act(&self, &head.uri, body).await;
        }
        if request.method() != Method::GET {
            return self
                .refuse(request, (405, "only GET and POST".to_owned()))
                .await;
        }
        if path == "/api/events" {
            return events::stream(&self, request.headers(), request.uri().query());
        }
        if let Some(api) = path.strip_prefix("/api/") {
            return api::get(&self, api, request.uri().query().unwrap_or("")).await;
        }
        assets::get(&path)
    }

    /// Refuses a request, reading away a small body first so the client reads the answer.
    async fn refuse(&self, request: Request<Incoming>, (status, why): (u16, String)) -> Answer {
        let (_, sent) = server::declared_length(&request);
        server::linger(&self.limits, request.into_body(), sent, 0).await;
        json(status, &serde_json::json!({ "ok": false, "message": why }))
    }

    /// Runs `act` on the host on a thread that may block (a teardown, a reload, a config
    /// change take their time), as the operator of the web console.
    async fn blocking<R: Send + 'static>(
        &self,
        act: impl FnOnce(&Host) -> R + Send + 'static,
    ) -> Option<R> {
        let host = Arc::clone(&self.host);
        tokio::task::spawn_blocking(move || host.as_operator(operator(), act))
            .await
            .ok()
    }
}

/// Who the web console's actions are audited as: the host program acting for its operator.
fn operator() -> airlock_abi::wire::Principal {
    airlock_abi::wire::Principal::new("web-console", &["operator"])
}

/// A JSON answer.
fn json(status: u16, value: &serde_json::Value) -> Answer {
    let body = serde_json::to_vec(value).unwrap_or_default();
    whole(status, "application/json", Bytes::from(body))
}

/// A whole answer of `kind`.
fn whole(status: u16, kind: &'static str, body: Bytes) -> Answer {
    let mut answer = Response::new(Full::new(body).boxed());
    *answer.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    answer
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    answer
}

/// The page's policy: its own script and style only, no frames, no inline code; the token in
/// the first address is not sent on as a referrer.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Sets the security headers every answer carries.
fn secure(headers: &mut hyper::HeaderMap) {
    for (name, value) in [
        ("content-security-policy", CSP),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers
        .entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}
