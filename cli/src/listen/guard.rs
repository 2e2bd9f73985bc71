//! Who may ask the listener at all, decided from the request's head before its body is read:
//! with a token, the bearer token; without one (loopback only), a `Host` that names this
//! listener and no sign of a cross-site request, so neither a web page the operator visits
//! nor a rebinding DNS name can use the routes as the host program.

use std::net::SocketAddr;

use hyper::header::{HeaderMap, AUTHORIZATION, HOST, ORIGIN};

/// The variable whose value requests must carry as a bearer token.
pub const TOKEN_ENV: &str = "AIRLOCK_LISTEN_TOKEN";

/// The token in [`TOKEN_ENV`], if it is set.
///
/// # Errors
///
/// It is set but empty, not UTF-8, or holds what a header cannot carry: the listener does not
/// start rather than serve without the authentication the operator asked for.
pub fn read_token() -> Result<Option<String>, String> {
    token_from(TOKEN_ENV, "or unset it to serve loopback only")
}

/// The token in the variable `var`, if it is set; `unset` says what unsetting it does.
///
/// # Errors
///
/// As [`read_token`].
pub(crate) fn token_from(var: &str, unset: &str) -> Result<Option<String>, String> {
    let Some(raw) = std::env::var_os(var) else {
        return Ok(None);
    };
    let token = raw.into_string().map_err(|_| {
        format!("{var} is not UTF-8: set it to a token of visible ASCII characters")
    })?;
    if token.is_empty() {
        return Err(format!("{var} is empty: set it to a token, {unset}"));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{var} holds spaces, control or non-ASCII characters: a bearer token is \
             visible ASCII"
        ));
    }
    Ok(Some(token))
}

/// Whether `presented` is `token`, compared in full whatever differs first, so the time taken
/// tells nothing.
pub fn same_token(presented: &[u8], token: &[u8]) -> bool {
    presented.len() == token.len()
        && presented
            .iter()
            .zip(token)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// What the listener checks before it reads a body.
#[derive(Debug, Clone)]
pub enum Guard {
    /// Requests carry `Authorization: Bearer <token>`.
    Token(String),
    /// Loopback without a token: the request must be addressed to this listener and come from
    /// no other site.
    Loopback(SocketAddr),
}

impl Guard {
    /// Why the request is refused (`401` for a token, `403` for the rest), if it is. A
    /// `public` route's request carries a signature over its body instead of the token: the
    /// host checks it once the body is read.
    pub fn refuses(&self, headers: &HeaderMap, public: bool) -> Option<(u16, String)> {
        match self {
            Self::Token(_) if public => None,
            Self::Token(token) => {
                let presented = headers
                    .get(AUTHORIZATION)
                    .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
                match presented {
                    Some(p) if same_token(p, token.as_bytes()) => None,
                    _ => Some((401, format!("a bearer token is needed ({TOKEN_ENV})"))),
                }
            }
            Self::Loopback(addr) => cross_site(*addr, headers).map(|why| (403, why)),
        }
    }
}

/// The names a loopback listener answers to, with its port.
fn our_authorities(addr: SocketAddr) -> Vec<String> {
    let port = addr.port();
    let ip = match addr {
        SocketAddr::V4(v4) => v4.ip().to_string(),
        SocketAddr::V6(v6) => format!("[{}]", v6.ip()),
    };
    let mut names = vec![ip, "localhost".to_owned()];
    names.dedup();
    names.into_iter().map(|n| format!("{n}:{port}")).collect()
}

/// The request's `Host` when it names this loopback listener (its address or `localhost`, with
/// its port); otherwise why not. A page of another name resolved to 127.0.0.1 (DNS rebinding)
/// names its own.
pub(crate) fn addressed_to(addr: SocketAddr, headers: &HeaderMap) -> Result<&str, String> {
    let ours = our_authorities(addr);
    let host = headers.get(HOST).and_then(|v| v.to_str().ok());
    host.filter(|h| ours.iter().any(|o| o.eq_ignore_ascii_case(h)))
        .ok_or_else(|| format!("Host {host:?} is not this listener ({})", ours.join(" or ")))
}

/// Why a tokenless request is refused: a `Host` that is not this listener (a rebinding name),
/// an `Origin` of another site, or a browser's word that the request is cross-site.
fn cross_site(addr: SocketAddr, headers: &HeaderMap) -> Option<String> {
    let host = match addressed_to(addr, headers) {
        Ok(host) => host,
        Err(why) => {
            return Some(format!(
                "{why}: without a token only requests addressed to it are served"
            ))
        }
    };
    if let Some(origin) = headers.get(ORIGIN) {
        let ok = origin
            .to_str()
            .ok()
            .and_then(|o| o.strip_prefix("http://"))
            .is_some_and(|o| o.eq_ignore_ascii_case(host));
        if !ok {
            return Some(format!(
                "Origin {origin:?} is another site: without a token, requests from web pages \
                 other than this listener's are refused"
            ));
        }
    }
    match headers
        .get("sec-fetch-site")
        .map(|v| v.as_bytes().to_ascii_lowercase())
    {
        None => None,
        Some(site) if site == b"same-origin" || site == b"none" => None,
        Some(_) => Some(
            "Sec-Fetch-Site says the request comes from another site: without a token it is \
             refused"
                .to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listen::server::head;

    #[test]
    fn tokenless_requests_must_be_addressed_here_and_come_from_here() {
        let guard = Guard::Loopback("127.0.0.1:8080".parse().expect("addr"));
        for ok in [
            head(&[("host", "127.0.0.1:8080")]),
            head(&[
                ("host", "localhost:8080"),
                ("origin", "http://localhost:8080"),
            ]),
            head(&[
                ("host", "127.0.0.1:8080"),
                ("sec-fetch-site", "same-origin"),
            ]),
            head(&[("host", "LOCALHOST:8080"), ("sec-fetch-site", "none")]),
        ] {
            assert_eq!(guard.refuses(&ok, false), None, "{ok:?}");
        }
        for refused in [
            head(&[]),
            head(&[("host", "evil.example:8080")]),
            head(&[("host", "127.0.0.1:9999")]),
            head(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "https://evil.example"),
            ]),
            head(&[("host", "127.0.0.1:8080"), ("origin", "null")]),
            head(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://localhost:3000"),
            ]),
            head(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "cross-site")]),
            head(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "same-site")]),
        ] {
            assert!(
                matches!(guard.refuses(&refused, false), Some((403, _))),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn the_token_is_compared_whole() {
        let guard = Guard::Token("s3cret".to_owned());
        assert_eq!(
            guard.refuses(&head(&[("authorization", "Bearer s3cret")]), false),
            None
        );
        assert_eq!(
            guard.refuses(&head(&[]), true),
            None,
            "a public route's is signed"
        );
        for wrong in [
            "Bearer s3cre",
            "Bearer s3cret2",
            "bearer s3cret",
            "s3cret",
            "Basic s3cret",
        ] {
            let mut map = HeaderMap::new();
            map.insert(AUTHORIZATION, wrong.parse().expect("value"));
            assert!(
                matches!(guard.refuses(&map, false), Some((401, _))),
                "{wrong}"
            );
        }
    }
}
