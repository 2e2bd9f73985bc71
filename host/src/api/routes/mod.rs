//! Inbound HTTP for plugins: the routes they declare in `plugin.json`, served under
//! `/plugins/<id><path>`, for requests the embedding program received on its own server (any
//! framework: it hands [`HttpIn`] over and sends [`HttpOut`] back) or that `airlock run
//! --listen` received. The program's authentication hook runs first — unless the route is
//! public, when the request's signature is checked instead; then the body's size is checked,
//! the route looked up (`404` for none, `400` for a path it refuses, `501` for one declared with
//! no action), a place taken among the plugin's requests in flight (`503` over the limit) and
//! its action called through the membrane like any call, on behalf of the principal the hook
//! named, or of the principal `anonymous` when there is none. Every request gets an id, which
//! the plugin sees and the response carries.

mod headers;
mod limit;
mod matching;
mod signature;

pub use limit::DEFAULT_MAX_ROUTE_CONCURRENCY;
pub use signature::{REMEMBERED, REPLAY_WINDOW, TIMESTAMP_WINDOW};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use airlock_abi::manifest::{covers, CapabilityKind, PublicRoute, RouteAuth, RouteDecl};
use airlock_abi::route::{ResponseHead, RouteHead};
use airlock_abi::wire::{self, Principal};

use super::Host;
use crate::error::{CallError, CallErrorCode};
use crate::frame::cancel::CancelToken;
use crate::runtime::outcome::Reply;
use crate::runtime::LoadedPlugin;
use crate::services::audit::AuditOutcome;

/// A request the embedding program received, for a plugin's route.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpIn {
    /// The method (`POST`).
    pub method: String,
    /// The whole path (`/plugins/courier/webhook`).
    pub path: String,
    /// The query string, without `?`.
    pub query: String,
    /// The headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// The answer to send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOut {
    /// The status code.
    pub status: u16,
    /// The headers, in order (`x-request-id` among them).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// The embedding program's authentication of inbound requests: the principal the plugin's
/// action runs on behalf of (`None`: an anonymous requester, the principal `anonymous` with no
/// roles), or why the request is refused (`401`).
pub type HttpAuth = Box<dyn Fn(&HttpIn) -> Result<Option<Principal>, String> + Send + Sync>;

/// What the host holds for inbound HTTP: the program's authentication, the body limit, the
/// route requests in flight per plugin and their limit, and the signatures accepted lately.
pub(super) struct Inbound {
    pub(super) auth: Option<HttpAuth>,
    pub(super) max_body: usize,
    pub(super) max_concurrency: usize,
    slots: limit::RouteSlots,
    replays: signature::Replays,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("auth", &self.auth.is_some())
            .field("max_body", &self.max_body)
            .field("max_concurrency", &self.max_concurrency)
            .finish_non_exhaustive()
    }
}

impl Default for Inbound {
    fn default() -> Self {
        Self {
            auth: None,
            max_body: DEFAULT_MAX_REQUEST_BODY,
            max_concurrency: DEFAULT_MAX_ROUTE_CONCURRENCY,
            slots: limit::RouteSlots::default(),
            replays: signature::Replays::default(),
        }
    }
}

/// The id of the principal a route request runs on behalf of when it has none — a public
/// route's, any request when the program installs no authentication hook, or one the hook
/// answers `Ok(None)` for: never the host program's own account, so the permissions a plugin
/// declares (which deny every `user:*`) and the operator's `user:*` rules cover it, and a
/// rule for `user:anonymous` opens an action to such requests.
const ANONYMOUS: &str = "anonymous";

/// The largest request body a route accepts unless the program says otherwise.
pub const DEFAULT_MAX_REQUEST_BODY: usize = 1 << 20;

fn next_request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    static BOOT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let boot = *BOOT.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    format!("{boot:x}-{:x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

impl HttpOut {
    pub(in crate::api) fn text(status: u16, request_id: &str, message: &str) -> Self {
        Self {
            status,
            headers: vec![
                (
                    "content-type".to_owned(),
                    "text/plain; charset=utf-8".to_owned(),
                ),
                ("x-request-id".to_owned(), request_id.to_owned()),
            ],
            body: format!("{message}\n").into_bytes(),
        }
    }
}

/// A request's route: its plugin, which of its routes, the path under its prefix and the
/// parameters.
struct Found {
    plugin: Arc<LoadedPlugin>,
    route: usize,
    path: String,
    params: Vec<(String, String)>,
}

impl Found {
    fn route(&self) -> &RouteDecl {
        &self.plugin.file.manifest.routes[self.route]
    }

    fn public(&self) -> Option<&PublicRoute> {
        match &self.route().auth {
            RouteAuth::Public(public) => Some(public),
            RouteAuth::Host => None,
        }
    }
}

/// A refusal before the plugin runs: status and message.
type Refusal = (u16, String);

impl Host {
    /// Serves a request for a plugin's route: `/plugins/<id><path>`. Never fails: every outcome
    /// is a response — `401` (the authentication hook refused, or a public route's signature is
    /// missing, wrong or stale), `409` (a public route's signed request was accepted before),
    /// `413` (body over the limit), `404` (no such plugin or route), `400` (a path with a `.` or
    /// `..` segment, or a parameter that decodes to `/`, NUL or not UTF-8), `501` (declared, no
    /// action), `503` (the plugin has as many route requests in flight as
    /// [`HostBuilder::max_route_concurrency`](crate::HostBuilder::max_route_concurrency) allows —
    /// with `retry-after: 1` — or is not running or quarantined), `504` (its call timed out),
    /// `403` (a permission rule refused the principal, the call waits for approval, or a public
    /// route's secret is not granted to the plugin), `400` (the input did not fit, or the
    /// handler failed), `500` (its action answered an error), or the action's own response.
    pub fn handle_http(&self, request: &HttpIn) -> HttpOut {
        self.serve_http(request, None)
    }

    /// Whether `method` and `path` reach a public route (`"auth": {"public": ..}`): one whose
    /// requests carry a signature instead of the program's authentication. A server that
    /// authenticates before it reads a body asks this first, and leaves such a request's
    /// check to [`Host::handle_http`].
    pub fn is_public_route(&self, method: &str, path: &str) -> bool {
        let probe = HttpIn {
            method: method.to_owned(),
            path: path.to_owned(),
            ..HttpIn::default()
        };
        self.route_of(&probe)
            .is_ok_and(|found| found.public().is_some())
    }

    /// [`Host::handle_http`], with a token that cancels the route's call; a request that
    /// reaches a route is counted for the metrics, with the status it was answered.
    pub(in crate::api) fn serve_http(
        &self,
        request: &HttpIn,
        cancel: Option<&CancelToken>,
    ) -> HttpOut {
        let reached = self.route_of(request).ok().map(|found| {
            let route = found.route();
            (
                found.plugin.id().to_string(),
                route.method.clone(),
                route.path.clone(),
            )
        });
        let out = self.serve_routed(request, cancel);
        if let Some((plugin, method, route)) = reached {
            self.shared
                .tally
                .route(&plugin, &method, &route, out.status);
        }
        out
    }

    fn serve_routed(&self, request: &HttpIn, cancel: Option<&CancelToken>) -> HttpOut {
        let request_id = next_request_id();
        let refuse = |(status, message): Refusal| HttpOut::text(status, &request_id, &message);
        let found = self.route_of(request);
        // A public route skips the program's hook; any other request, found or not, meets it
        // before anything about the plugin's routes is told.
        let public = found.as_ref().ok().and_then(Found::public).is_some();
        let principal = match (&self.inbound.auth, public) {
            (Some(auth), false) => match auth(request) {
                Ok(principal) => principal,
                Err(why) => return refuse((401, why)),
            },
            _ => None,
        }
        .unwrap_or_else(|| Principal::new(ANONYMOUS, &[]));
        let limit = self.inbound.max_body;
        if request.body.len() > limit {
            return refuse((413, format!("the body is over the limit of {limit} bytes")));
        }
        let found = match found {
            Ok(found) => found,
            Err(refusal) => return refuse(refusal),
        };
        if let Some(public) = found.public() {
            if let Err(refusal) = self.check_signature(&found.plugin, public, request) {
                self.shared.audit.record(
                    found.plugin.id().as_str(),
                    found.plugin.generation.load(Ordering::Relaxed),
                    &format!("route:{} {}", found.route().method, found.route().path),
                    AuditOutcome::RouteRefused,
                    &format!("{} {}: {}", refusal.0, request_id, refusal.1),
                );
                return refuse(refusal);
            }
        }
        let id = found.plugin.id().as_str();
        let route = found.route();
        let Some(action) = &route.action else {
            let message = format!(
                "{} {} is declared by {id} and not handled yet",
                route.method, route.path
            );
            return refuse((501, message));
        };
        let max = self.inbound.max_concurrency;
        let Some(_slot) = self.inbound.slots.take(id, max) else {
            let message = format!("{id} is serving as many route requests as it may ({max})");
            let mut busy = refuse((503, message));
            busy.headers
                .push(("retry-after".to_owned(), "1".to_owned()));
            return busy;
        };
        let head = RouteHead {
            method: route.method.clone(),
            path: found.path.clone(),
            query: request.query.clone(),
            headers: headers::visible(&request.headers),
            request_id: request_id.clone(),
            params: found.params.clone(),
        };
        let Ok(input) = wire::frame(&head, &request.body) else {
            return refuse((500, "the request could not be encoded".to_owned()));
        };
        let mut call = self.call(id, action).as_principal(&principal);
        if let Some(token) = cancel {
            call = call.cancel_on(token);
        }
        answer(call.bytes(&input), request_id)
    }

    /// The route `request` reaches, or why none (`404`) or why its path is refused (`400`).
    fn route_of(&self, request: &HttpIn) -> Result<Found, Refusal> {
        let not_found = || (404, "no such route".to_owned());
        let rest = request
            .path
            .strip_prefix("/plugins/")
            .ok_or_else(not_found)?;
        let (id, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let plugin = self.shared.find(id).ok_or_else(not_found)?;
        match matching::find(&plugin.file.manifest.routes, &request.method, path) {
            matching::Lookup::Found(route, params) => Ok(Found {
                plugin,
                route,
                path: path.to_owned(),
                params,
            }),
            matching::Lookup::NotFound => Err(not_found()),
            matching::Lookup::Bad(why) => Err((400, format!("the path is refused: {why}"))),
        }
    }

    /// A public route's request: its plugin holds the grant of the secret (`403`), the secret
    /// has a value (`500`), the signature is valid and recent (`401`) and new (`409`).
    fn check_signature(
        &self,
        plugin: &LoadedPlugin,
        public: &PublicRoute,
        request: &HttpIn,
    ) -> Result<(), Refusal> {
        let name = &public.secret;
        let granted = covers(
            &plugin.settings.lock().grants,
            CapabilityKind::Secrets,
            Some(name),
        );
        if !granted {
            return Err((
                403,
                format!(
                    "{}'s public route checks signatures with the secret {name:?}, and the \
                     operator's policy does not grant it secrets:{name}",
                    plugin.id()
                ),
            ));
        }
        let secret = self
            .shared
            .options
            .policy
            .secret(name)
            .map_err(|why| (500, format!("the secret {name:?} is not available: {why}")))?;
        let refused = |refused| match refused {
            signature::Refused::Unauthorized(why) => (401, why),
            signature::Refused::Replayed(why) => (409, why),
        };
        let keys = signature::verify(
            public,
            secret.as_bytes(),
            &request.headers,
            &request.body,
            SystemTime::now(),
        )
        .map_err(refused)?;
        self.inbound
            .replays
            .admit(plugin.id().as_str(), &keys, Instant::now())
            .map_err(refused)
    }
}

/// The response to a route's call.
fn answer(outcome: Result<Reply<Vec<u8>>, CallError>, request_id: String) -> HttpOut {
    match outcome {
        Ok(Reply::Ok(bytes)) => match wire::unframe::<ResponseHead>(&bytes) {
            Ok((head, _)) if !(100..=599).contains(&head.status) => HttpOut::text(
                500,
                &request_id,
                &format!("the route answered status {}", head.status),
            ),
            Ok((head, body)) => {
                let mut headers = headers::sanitized(head.headers);
                headers.push(("x-request-id".to_owned(), request_id));
                HttpOut {
                    status: head.status,
                    headers,
                    body: body.to_vec(),
                }
            }
            Err(e) => HttpOut::text(500, &request_id, &format!("the route's answer: {e}")),
        },
        Ok(Reply::Error(message)) => HttpOut::text(500, &request_id, &message),
        Ok(Reply::PendingApproval(id)) => HttpOut::text(
            403,
            &request_id,
            &format!(
                "{}: waits for approval {id}",
                CallErrorCode::PendingApproval
            ),
        ),
        Ok(Reply::Pending { id, description }) => {
            let body =
                serde_json::json!({"state": "pending", "id": id, "description": description});
            HttpOut {
                status: 202,
                headers: vec![
                    ("content-type".to_owned(), "application/json".to_owned()),
                    ("x-request-id".to_owned(), request_id),
                ],
                body: body.to_string().into_bytes(),
            }
        }
        Err(e) => {
            let status = match e.code {
                // Cancelled: at its timeout (a route has no caller to cancel it), or as its
                // plugin was torn down.
                CallErrorCode::Timeout | CallErrorCode::Cancelled => 504,
                CallErrorCode::Quarantined | CallErrorCode::Revoked | CallErrorCode::Busy => 503,
                CallErrorCode::PermissionDenied | CallErrorCode::PendingApproval => 403,
                CallErrorCode::BadInput | CallErrorCode::HandlerError => 400,
                CallErrorCode::NotFound => 404,
                _ => 500,
            };
            HttpOut::text(status, &request_id, &format!("{}: {}", e.code, e.message))
        }
    }
}
