//! Outbound HTTP made by the host for the plugin ([`Context::http`], capability
//! `http.outbound:<host glob>`), under the operator's policy.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{decode, encode, Context};
use crate::error::ContextError;
use crate::wire::{self, Request};

/// Outbound HTTP, made by the host: the host checks the URL's host against the plugin's
/// `http.outbound` grants, its scheme (https unless the policy allows http for that host) and
/// every address it resolves to (no loopback, private, link-local or multicast address unless
/// the policy allows the range), connects to the address it checked, follows redirects
/// checking each hop, and caps time and body size. Every call leaves an audit record. A body
/// too long to hold, or one that arrives over time (server-sent events, NDJSON), is read as it
/// arrives with [`Http::stream`].
#[derive(Debug, Clone, Copy)]
pub struct Http<'c> {
    pub(super) ctx: &'c Context,
}

impl Http<'_> {
    /// `GET url`.
    ///
    /// # Errors
    ///
    /// See [`Http::send`].
    pub fn get(&self, url: &str) -> Result<HttpResponse, ContextError> {
        self.send(&HttpRequest::new("GET", url))
    }

    /// Sends `request`; any status (`404` too) is a response.
    ///
    /// # Errors
    ///
    /// [`ContextError::CapabilityViolation`] for a host no grant covers;
    /// [`ContextError::Refused`] for a scheme, an address or a redirect the policy refuses;
    /// [`ContextError::Unreachable`] when the connection fails, the time runs out or the body
    /// is over its limit; `BadRequest` for a URL that does not parse or a method that is not
    /// an HTTP token.
    pub fn send(&self, request: &HttpRequest) -> Result<HttpResponse, ContextError> {
        let payload = request.payload()?;
        let answer = self.ctx.request(
            Request::HttpRequest.service(),
            Request::HttpRequest.operation(),
            &payload,
        )?;
        let (head, body) =
            wire::unframe::<wire::HttpAnswer>(&answer).map_err(ContextError::Decode)?;
        Ok(HttpResponse {
            status: head.status,
            headers: head.headers,
            body: body.to_vec(),
        })
    }
}

/// An HTTP request for [`Http::send`] or [`Http::stream`].
#[derive(Debug, Clone)]
pub struct HttpRequest {
    head: wire::HttpHead,
    body: Vec<u8>,
}

impl HttpRequest {
    /// `method url`, no headers, no body. The method must be an HTTP token (`GET`, `POST`,
    /// `PROPFIND`: letters, digits and ``!#$%&'*+-.^_`|~``); one that is not is refused when
    /// the request is sent.
    pub fn new(method: &str, url: &str) -> Self {
        Self {
            head: wire::HttpHead {
                method: method.to_owned(),
                url: url.to_owned(),
                headers: Vec::new(),
                credential: None,
            },
            body: Vec::new(),
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.head.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Has the host attach the credential `name` (capability `secrets:<name>`): a secret the
    /// operator made usable, not readable — the host sends it as the header the operator chose,
    /// to the hosts the operator named (not on a redirect elsewhere), and the plugin never
    /// sees it.
    #[must_use]
    pub fn credential(mut self, name: &str) -> Self {
        self.head.credential = Some(name.to_owned());
        self
    }

    /// Sets the body (bytes).
    #[must_use]
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The payload of `http request` and `http stream_open`, once the method is checked.
    pub(super) fn payload(&self) -> Result<Vec<u8>, ContextError> {
        if !wire::is_http_token(&self.head.method) {
            return Err(ContextError::BadRequest(format!(
                "the HTTP method {:?} is not a token: use letters, digits and !#$%&'*+-.^_`|~ \
                 only (GET, POST, PROPFIND), with no space or line break",
                self.head.method
            )));
        }
        wire::frame(&self.head, &self.body).map_err(|e| ContextError::BadRequest(e.to_string()))
    }

    /// Sets a JSON body and its content type.
    ///
    /// # Errors
    ///
    /// `BadRequest` if `value` cannot be encoded.
    pub fn json<T: Serialize>(self, value: &T) -> Result<Self, ContextError> {
        let body = encode(value)?;
        Ok(self.header("content-type", "application/json").body(body))
    }
}

/// The response to an [`HttpRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code (after the redirects the host followed).
    pub status: u16,
    /// The headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body, as bytes.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    ///
    /// # Errors
    ///
    /// `Decode` if it is not JSON of type `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ContextError> {
        decode(&self.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_method_that_is_not_a_token_is_refused_before_it_is_sent() {
        let smuggled = HttpRequest::new(
            "GET /x HTTP/1.1\r\nHost: admin.internal\r\n\r\nGET",
            "https://a.test/",
        );
        match smuggled.payload() {
            Err(ContextError::BadRequest(m)) => assert!(m.contains("is not a token"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(HttpRequest::new("PATCH", "https://a.test/")
            .payload()
            .is_ok());
    }
}
