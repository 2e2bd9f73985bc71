//! HTTP routes a plugin serves (`routes` in `plugin.json`): the request the host hands the
//! route's action, and the response it answers. Both travel as a [`wire::frame`]: a JSON head,
//! then the body as bytes.
//!
//! The head grows by optional fields only, sent only when they hold something: `params` reaches
//! a plugin only on a route with parameters, which only a plugin that knows the field declares.
//! The query string travels as it came, and [`Incoming::query_params`] parses it here, in the
//! plugin, so that a plugin built before the parsed form existed still decodes every head.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::ActionError;
use crate::registry::Actions;
use crate::wire;

/// The head of a request for a route (the body follows in the frame). Fields a newer host adds
/// are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteHead {
    /// The method.
    pub method: String,
    /// The route's path under the plugin's prefix (`/webhook`).
    pub path: String,
    /// The query string, without `?` (empty if none).
    pub query: String,
    /// The headers, in order — less the host's credentials (`Authorization`,
    /// `Proxy-Authorization`, `Cookie`), the hop-by-hop headers and any `x-request-id` the
    /// client sent.
    pub headers: Vec<(String, String)>,
    /// The id the host gave the request (also in the response's `x-request-id`).
    pub request_id: String,
    /// The route's parameters (`{id}`, `{*rest}`) as matched, percent-decoded, in the order of
    /// the route's path (empty for a route without).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<(String, String)>,
}

/// The head of a route's response (the body follows in the frame).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseHead {
    /// The status code.
    pub status: u16,
    /// The headers, in order.
    pub headers: Vec<(String, String)>,
}

/// A request for one of the plugin's routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// Method, path, query, headers and request id.
    pub head: RouteHead,
    /// The body, as bytes.
    pub body: Vec<u8>,
}

impl Incoming {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The route's parameter `name` (`{id}` in `/items/{id}`, `{*rest}` in `/files/{*rest}`),
    /// percent-decoded.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.head
            .params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The query string parsed: see [`parse_query`].
    pub fn query_params(&self) -> Vec<(String, String)> {
        parse_query(&self.head.query)
    }

    /// The first value of the query parameter `name`, decoded (see [`parse_query`]).
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_params()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// The body parsed as JSON.
    ///
    /// # Errors
    ///
    /// An [`ActionError`] saying why it is not JSON of type `T` (the route answers `400`).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ActionError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| ActionError::new(format!("the body is not the JSON expected: {e}")))
    }
}

/// A route's response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Status and headers.
    pub head: ResponseHead,
    /// The body, as bytes.
    pub body: Vec<u8>,
}

impl Outgoing {
    /// A response with this status and no body.
    pub fn status(status: u16) -> Self {
        Self {
            head: ResponseHead {
                status,
                headers: Vec::new(),
            },
            body: Vec::new(),
        }
    }

    /// `200` with a text body.
    pub fn text(body: &str) -> Self {
        Self::status(200)
            .header("content-type", "text/plain; charset=utf-8")
            .body(body.as_bytes().to_vec())
    }

    /// `200` with a JSON body.
    ///
    /// # Errors
    ///
    /// `value` cannot be encoded.
    pub fn json<T: Serialize>(value: &T) -> Result<Self, ActionError> {
        let body = serde_json::to_vec(value).map_err(|e| ActionError::new(e.to_string()))?;
        Ok(Self::status(200)
            .header("content-type", "application/json")
            .body(body))
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.head.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the status.
    #[must_use]
    pub fn with_status(mut self, status: u16) -> Self {
        self.head.status = status;
        self
    }

    /// Sets the body.
    #[must_use]
    pub fn body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }
}

/// Parses a query string (`a=1&b=two+words&a=%C3%A9`) as a form does: pairs separated by `&`,
/// a name without `=` has an empty value, `+` is a space, `%XX` escapes are decoded (a
/// malformed one is kept as written, bytes that are not UTF-8 become U+FFFD), empty pairs are
/// skipped, and repeated names are all kept, in order.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(name), form_decode(value))
        })
        .collect()
}

fn form_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match bytes.get(i + 1..i + 3).and_then(hex_byte) {
                Some(byte) => {
                    out.push(byte);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The byte two hex digits spell.
fn hex_byte(pair: &[u8]) -> Option<u8> {
    let digit = |b: u8| char::from(b).to_digit(16);
    match pair {
        [high, low] => Some(u8::try_from(digit(*high)? * 16 + digit(*low)?).ok()?),
        _ => None,
    }
}

impl<P: 'static> Actions<P> {
    /// Registers `handler` for the action `name`, which `routes` in `plugin.json` names for one
    /// or more HTTP routes: it gets the request (method, path, query, headers, body, request
    /// id) and answers the response. An error answers `500` with its message.
    pub fn add_route<F>(&mut self, name: &str, handler: F) -> &mut Self
    where
        F: Fn(&P, Incoming) -> Result<Outgoing, ActionError> + Send + Sync + 'static,
    {
        self.add_bytes(name, move |plugin, input| {
            let (head, body) = wire::unframe::<RouteHead>(input).map_err(ActionError::new)?;
            let answer = handler(
                plugin,
                Incoming {
                    head,
                    body: body.to_vec(),
                },
            )?;
            wire::frame(&answer.head, &answer.body).map_err(|e| ActionError::new(e.to_string()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_is_parsed_as_a_form_does() {
        let pair = |n: &str, v: &str| (n.to_owned(), v.to_owned());
        assert_eq!(
            parse_query("q=two+words&tag=a&&tag=b%26c&flag&x=%E2%9C%93&bad=%zz%4"),
            vec![
                pair("q", "two words"),
                pair("tag", "a"),
                pair("tag", "b&c"),
                pair("flag", ""),
                pair("x", "\u{2713}"),
                pair("bad", "%zz%4"),
            ]
        );
        assert_eq!(parse_query("bin=%FF"), vec![pair("bin", "\u{fffd}")]);
        assert!(parse_query("").is_empty());
    }

    #[test]
    fn an_incoming_request_answers_its_parameters_and_query() {
        let request = Incoming {
            head: RouteHead {
                method: "GET".to_owned(),
                path: "/items/a%20b".to_owned(),
                query: "q=x&q=y".to_owned(),
                headers: Vec::new(),
                request_id: "r".to_owned(),
                params: vec![("id".to_owned(), "a b".to_owned())],
            },
            body: Vec::new(),
        };
        assert_eq!(request.param("id"), Some("a b"));
        assert_eq!(request.param("other"), None);
        assert_eq!(request.query_param("q").as_deref(), Some("x"));
        assert_eq!(request.query_params().len(), 2);
    }

    #[test]
    fn a_head_from_an_older_host_or_with_a_newer_field_decodes() {
        let older = r#"{"method":"GET","path":"/","query":"","headers":[],"request_id":"r"}"#;
        let head: RouteHead = serde_json::from_str(older).expect("older head");
        assert!(head.params.is_empty());
        let newer = r#"{"method":"GET","path":"/","query":"","headers":[],"request_id":"r",
                        "params":[["id","7"]],"later":true}"#;
        let head: RouteHead = serde_json::from_str(newer).expect("newer head");
        assert_eq!(head.params, vec![("id".to_owned(), "7".to_owned())]);
        let sent = serde_json::to_string(&RouteHead {
            params: Vec::new(),
            ..head
        })
        .expect("json");
        assert!(!sent.contains("params"), "{sent}");
    }
}
