//! Who may use the web console: whoever shows its token — once, in the address printed at
//! start (`/?token=…`), exchanged for a session cookie (`HttpOnly`, `SameSite=Strict`), or on
//! each request as `Authorization: Bearer …`. There is always a token, on loopback too: a page
//! in the operator's browser must not be able to drive the host. A change (`POST`) must also
//! come from the console's own origin and be JSON, which a cross-site form cannot send.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, COOKIE, HOST, ORIGIN};
use hyper::header::{LOCATION, SET_COOKIE};
use hyper::Request;

use super::{json, Answer};
use crate::listen::{same_token, token_from};

/// The variable that sets the console's token (otherwise one is generated at start).
pub const TOKEN_ENV: &str = "AIRLOCK_CONSOLE_TOKEN";

/// The session cookie's name.
pub(crate) const COOKIE_NAME: &str = "airlock_console";

/// Sessions kept at once; a new one past it ends the oldest.
const MAX_SESSIONS: usize = 32;

/// How long a session lasts from its exchange; then the console asks for the token again.
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// The console's token: [`TOKEN_ENV`] if set, else 32 random bytes, hex.
///
/// # Errors
///
/// The variable is set but unusable, or no random bytes could be had.
pub fn console_token() -> Result<String, String> {
    match token_from(TOKEN_ENV, "or unset it to have one generated")? {
        Some(token) => Ok(token),
        None => random_hex(),
    }
}

/// 32 random bytes, hex.
fn random_hex() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no random bytes for a token: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The token and the sessions it was exchanged for.
pub(super) struct Sessions {
    token: String,
    lifetime: Duration,
    /// Each session with when it ends, oldest first.
    open: Mutex<VecDeque<(String, Instant)>>,
}

impl Sessions {
    pub(super) fn new(token: String) -> Self {
        Self::lasting(token, SESSION_LIFETIME)
    }

    fn lasting(token: String, lifetime: Duration) -> Self {
        Self {
            token,
            lifetime,
            open: Mutex::new(VecDeque::new()),
        }
    }

    /// A new session, ending the oldest past [`MAX_SESSIONS`].
    fn open(&self) -> Option<String> {
        let session = random_hex().ok()?;
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.len() == MAX_SESSIONS {
            open.pop_front();
        }
        open.push_back((session.clone(), Instant::now() + self.lifetime));
        Some(session)
    }

    /// For `GET /?token=…`: a session and a redirect to `/` (so the token leaves the address
    /// bar), or `401` for a wrong token. `None` when no token is offered.
    pub(super) fn exchange(&self, request: &Request<Incoming>) -> Option<Answer> {
        let (_, offered) = airlock_abi::route::parse_query(request.uri().query()?)
            .into_iter()
            .find(|(key, _)| key == "token")?;
        if !same_token(offered.as_bytes(), self.token.as_bytes()) {
            let why = "the token in the address is not this console's: open the address \
                       `airlock run --console` printed";
            return Some(json(
                401,
                &serde_json::json!({ "ok": false, "message": why }),
            ));
        }
        let session = self.open()?;
        let mut answer = json(303, &serde_json::json!({ "ok": true }));
        let cookie = format!(
            "{COOKIE_NAME}={session}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
            self.lifetime.as_secs()
        );
        let headers = answer.headers_mut();
        headers.insert(LOCATION, HeaderValue::from_static("/"));
        if let Ok(cookie) = HeaderValue::from_str(&cookie) {
            headers.insert(SET_COOKIE, cookie);
        }
        Some(answer)
    }

    /// Whether the request shows a session or the token; `401` with why not.
    pub(super) fn admits(&self, headers: &HeaderMap) -> Result<(), (u16, String)> {
        let bearer = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        if bearer.is_some_and(|b| same_token(b, self.token.as_bytes())) {
            return Ok(());
        }
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        open.retain(|(_, ends)| *ends > now);
        let known = cookies(headers).any(|presented| {
            open.iter().fold(false, |any, (s, _)| {
                any | same_token(presented, s.as_bytes())
            })
        });
        if known {
            return Ok(());
        }
        Err((
            401,
            format!(
                "the console needs its token: open the address `airlock run --console` printed \
                 (/?token=…), or send Authorization: Bearer (the token is {TOKEN_ENV} if set)"
            ),
        ))
    }
}

/// The values of the session cookies a request carries.
fn cookies(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .filter_map(|pair| {
            let pair = pair.trim_ascii();
            pair.strip_prefix(COOKIE_NAME.as_bytes())?
                .strip_prefix(b"=")
        })
}

/// Whether a change may be made by this request: from the console's own origin (an `Origin`
/// that is this `Host`, or the browser's `Sec-Fetch-Site: same-origin`, and no sign of
/// another site), with a JSON body. `403` or `415` with why not.
pub(super) fn same_origin(headers: &HeaderMap) -> Result<(), (u16, String)> {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let site = text("sec-fetch-site");
    let origin = text(ORIGIN.as_str());
    let ours = text(HOST.as_str()).map(|host| format!("http://{host}"));
    let origin_ok = origin.map(|o| {
        ours.as_deref()
            .is_some_and(|ours| o.eq_ignore_ascii_case(ours))
    });
    let site_ok = site.map(|s| s.eq_ignore_ascii_case("same-origin"));
    match (origin_ok, site_ok) {
        (Some(false), _) | (_, Some(false)) => {
            return Err((
                403,
                "a change must come from the console's own page".to_owned(),
            ))
        }
        (None, None) => {
            return Err((
                403,
                "a change must come from the console's own page: send its Origin".to_owned(),
            ))
        }
        _ => {}
    }
    let json = text(CONTENT_TYPE.as_str()).is_some_and(|kind| {
        kind.split(';')
            .next()
            .is_some_and(|kind| kind.trim().eq_ignore_ascii_case("application/json"))
    });
    if !json {
        return Err((
            415,
            "a change is a JSON body (Content-Type: application/json)".to_owned(),
        ));
    }
    Ok(())
}

/// Whether a `Set-Cookie` value sets the console's session cookie. Browsers do not tell ports
/// apart for cookies, so a plugin's route served on the same host name could otherwise
/// overwrite or clear the operator's session; the route listener drops such a header.
pub(crate) fn sets_session(set_cookie: &str) -> bool {
    set_cookie
        .split_once('=')
        .is_some_and(|(name, _)| name.trim().eq_ignore_ascii_case(COOKIE_NAME))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listen::server::head;

    #[test]
    fn a_change_comes_from_this_origin_as_json() {
        let json = ("content-type", "application/json");
        let host = ("host", "127.0.0.1:9000");
        for ok in [
            head(&[host, json, ("origin", "http://127.0.0.1:9000")]),
            head(&[host, json, ("sec-fetch-site", "same-origin")]),
            head(&[
                host,
                ("content-type", "application/json; charset=utf-8"),
                ("origin", "http://127.0.0.1:9000"),
            ]),
        ] {
            assert_eq!(same_origin(&ok), Ok(()), "{ok:?}");
        }
        for (refused, status) in [
            (head(&[host, json]), 403),
            (head(&[host, json, ("origin", "http://evil.example")]), 403),
            (head(&[host, json, ("origin", "null")]), 403),
            (
                head(&[
                    host,
                    json,
                    ("origin", "http://127.0.0.1:9000"),
                    ("sec-fetch-site", "cross-site"),
                ]),
                403,
            ),
            (head(&[host, json, ("sec-fetch-site", "same-site")]), 403),
            (head(&[json, ("origin", "http://127.0.0.1:9000")]), 403),
            (
                head(&[
                    host,
                    ("content-type", "text/plain"),
                    ("origin", "http://127.0.0.1:9000"),
                ]),
                415,
            ),
            (head(&[host, ("origin", "http://127.0.0.1:9000")]), 415),
        ] {
            assert_eq!(
                same_origin(&refused).map_err(|e| e.0),
                Err(status),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn generated_tokens_are_64_hex_digits_and_differ() {
        let (a, b) = (random_hex().expect("random"), random_hex().expect("random"));
        assert!(
            a.len() == 64 && a.bytes().all(|c| c.is_ascii_hexdigit()),
            "{a}"
        );
        assert_ne!(a, b);
    }

    #[test]
    fn a_route_cannot_set_the_consoles_session_cookie() {
        assert!(sets_session("airlock_console=x; Path=/"));
        assert!(sets_session(" AIRLOCK_CONSOLE=; Max-Age=0"));
        assert!(!sets_session("airlock_console_other=x"));
        assert!(!sets_session("session=airlock_console"));
    }

    #[test]
    fn a_session_ends_after_its_lifetime_and_the_token_still_opens() {
        let lasting = Sessions::lasting("t0ken".into(), Duration::from_secs(3600));
        let session = lasting.open().expect("a session");
        let cookie = format!("{COOKIE_NAME}={session}");
        let with = |pairs: Vec<(hyper::header::HeaderName, String)>| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(name, value.parse().expect("value"));
            }
            map
        };
        assert!(lasting.admits(&with(vec![(COOKIE, cookie)])).is_ok());
        let ended = Sessions::lasting("t0ken".into(), Duration::ZERO);
        let session = ended.open().expect("a session");
        let cookie = format!("{COOKIE_NAME}={session}");
        assert_eq!(
            ended.admits(&with(vec![(COOKIE, cookie)])).map_err(|e| e.0),
            Err(401)
        );
        let bearer = (AUTHORIZATION, "Bearer t0ken".to_owned());
        assert!(ended.admits(&with(vec![bearer])).is_ok());
    }
}
