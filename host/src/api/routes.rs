//! Inbound HTTP for plugins: the routes they declare in `plugin.json`, served under
//! `/plugins/<id><path>`, for requests the embedding program received on its own server (any
//! framework: it hands [`HttpIn`] over and sends [`HttpOut`] back) or that `airlock run
//! --listen` received. The program's authentication hook runs first; then the body's size is
//! checked, the route looked up (`404` for none, `501` for one declared with no action) and
//! its action called through the membrane like any call, on behalf of the principal the hook
//! named. Every request gets an id, which the plugin sees and the response carries.

use std::sync::atomic::{AtomicU64, Ordering};

use airlock_abi::route::{ResponseHead, RouteHead};
use airlock_abi::wire::{self, Principal};

use super::Host;
use crate::error::CallErrorCode;
use crate::frame::cancel::CancelToken;
use crate::runtime::outcome::Reply;

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
/// action runs on behalf of (`None`: the host program itself), or why the request is refused
/// (`401`).
pub type HttpAuth = Box<dyn Fn(&HttpIn) -> Result<Option<Principal>, String> + Send + Sync>;

/// What the host holds for inbound HTTP: the program's authentication, and the body limit.
pub(super) struct Inbound {
    pub(super) auth: Option<HttpAuth>,
    pub(super) max_body: usize,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("auth", &self.auth.is_some())
            .field("max_body", &self.max_body)
            .finish()
    }
}

impl Default for Inbound {
    fn default() -> Self {
        Self {
            auth: None,
            max_body: DEFAULT_MAX_REQUEST_BODY,
        }
    }
}

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

/// Headers the server frames the response with: a plugin does not set them.
const FRAMING: [&str; 4] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
];

/// A route's headers as they may be sent: names that are HTTP tokens, values with no CR, LF
/// or NUL, and none of the framing headers the server sets itself (a plugin cannot split a
/// response or frame the next one).
fn sanitized(headers: Vec<(String, String)>) -> Vec<(String, String)> {
    let token = |name: &str| {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    headers
        .into_iter()
        .filter(|(name, value)| {
            token(name)
                && !FRAMING.iter().any(|f| name.eq_ignore_ascii_case(f))
                && !value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
        })
        .collect()
}

impl HttpOut {
    pub(super) fn text(status: u16, request_id: &str, message: &str) -> Self {
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

impl Host {
    /// Serves a request for a plugin's route: `/plugins/<id><path>`. Never fails: every outcome
    /// is a response — `401` (the authentication hook refused), `413` (body over the limit),
    /// `404` (no such plugin or route), `501` (declared, no action), `503` (the plugin is not
    /// running or quarantined), `504` (its call timed out), `403` (a permission rule refused
    /// the principal or the call waits for approval), `400` (the input did not fit, or the
    /// handler failed), `500` (its action answered an error), or the action's own response.
    pub fn handle_http(&self, request: &HttpIn) -> HttpOut {
        self.serve_http(request, None)
    }

    /// [`Host::handle_http`], with a token that cancels the route's call.
    pub(super) fn serve_http(&self, request: &HttpIn, cancel: Option<&CancelToken>) -> HttpOut {
        let request_id = next_request_id();
        let principal = match &self.inbound.auth {
            Some(auth) => match auth(request) {
                Ok(principal) => principal,
                Err(why) => return HttpOut::text(401, &request_id, &why),
            },
            None => None,
        };
        let limit = self.inbound.max_body;
        if request.body.len() > limit {
            let message = format!("the body is over the limit of {limit} bytes");
            return HttpOut::text(413, &request_id, &message);
        }
        let not_found = || HttpOut::text(404, &request_id, "no such route");
        let Some(rest) = request.path.strip_prefix("/plugins/") else {
            return not_found();
        };
        let (id, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let Some(plugin) = self.shared.find(id) else {
            return not_found();
        };
        let route = plugin
            .file
            .manifest
            .routes
            .iter()
            .find(|r| r.method.eq_ignore_ascii_case(&request.method) && r.path == path);
        let Some(route) = route else {
            return not_found();
        };
        let Some(action) = &route.action else {
            let message = format!(
                "{} {path} is declared by {id} and not handled yet",
                route.method
            );
            return HttpOut::text(501, &request_id, &message);
        };
        let head = RouteHead {
            method: route.method.clone(),
            path: path.to_owned(),
            query: request.query.clone(),
            headers: request.headers.clone(),
            request_id: request_id.clone(),
        };
        let Ok(input) = wire::frame(&head, &request.body) else {
            return HttpOut::text(500, &request_id, "the request could not be encoded");
        };
        let mut call = self.call(id, action);
        if let Some(token) = cancel {
            call = call.cancel_on(token);
        }
        if let Some(principal) = &principal {
            call = call.as_principal(principal);
        }
        match call.bytes(&input) {
            Ok(Reply::Ok(bytes)) => match wire::unframe::<ResponseHead>(&bytes) {
                Ok((head, _)) if !(100..=599).contains(&head.status) => HttpOut::text(
                    500,
                    &request_id,
                    &format!("the route answered status {}", head.status),
                ),
                Ok((head, body)) => {
                    let mut headers = sanitized(head.headers);
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
            Err(e) => {
                let status = match e.code {
                    // Cancelled: at its timeout (a route has no caller to cancel it), or as
                    // its plugin was torn down.
                    CallErrorCode::Timeout | CallErrorCode::Cancelled => 504,
                    CallErrorCode::Quarantined | CallErrorCode::Revoked | CallErrorCode::Busy => {
                        503
                    }
                    CallErrorCode::PermissionDenied | CallErrorCode::PendingApproval => 403,
                    CallErrorCode::BadInput | CallErrorCode::HandlerError => 400,
                    CallErrorCode::NotFound => 404,
                    _ => 500,
                };
                HttpOut::text(status, &request_id, &format!("{}: {}", e.code, e.message))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_cannot_split_or_frame_the_response() {
        let pair = |n: &str, v: &str| (n.to_owned(), v.to_owned());
        let kept = sanitized(vec![
            pair("x-ok", "fine"),
            pair("x-split", "a\r\nSet-Cookie: stolen=1"),
            pair("Content-Length", "1"),
            pair("transfer-encoding", "chunked"),
            pair("bad name", "v"),
            pair("x-nul", "a\0b"),
            pair("", "v"),
            pair("Set-Cookie", "session=2"),
        ]);
        assert_eq!(
            kept,
            vec![pair("x-ok", "fine"), pair("Set-Cookie", "session=2")]
        );
    }
}
