//! HTTP routes a plugin serves (`routes` in `plugin.json`): the request the host hands the
//! route's action, and the response it answers. Both travel as a [`wire::frame`]: a JSON head,
//! then the body as bytes.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::ActionError;
use crate::registry::Actions;
use crate::wire;

/// The head of a request for a route (the body follows in the frame).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteHead {
    /// The method.
    pub method: String,
    /// The route's path under the plugin's prefix (`/webhook`).
    pub path: String,
    /// The query string, without `?` (empty if none).
    pub query: String,
    /// The headers, in order.
    pub headers: Vec<(String, String)>,
    /// The id the host gave the request (also in the response's `x-request-id`).
    pub request_id: String,
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
