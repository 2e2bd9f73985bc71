//! A built-in operation as one typed row: the request it serves (its wire names), the
//! capability it declares and how the scope comes from its input, and its handler, which takes
//! the input as a payload type of `airlock_abi::wire` and answers a typed value. The steps around
//! the handler are the same for every row: the capability checked (one `require`, one audit
//! record per miss), the input decoded, the handler called, the answer encoded.

use airlock_abi::abi::{HostError, HostErrorCode};
use airlock_abi::manifest::CapabilityKind;
use airlock_abi::wire::Request;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{bad_request, host_error};
use crate::services::registry::{BuiltIn, Requester};

/// The capability a row declares.
pub(super) enum Grant<In: ?Sized> {
    /// None: logging, the handover, the context's own requests, stream chunks.
    Free,
    /// `kind` without a scope, checked before the input is read.
    Unscoped(CapabilityKind),
    /// `kind` scoped by a name the input carries: once the input is read, the name is checked
    /// (1 to 256 printable characters; `what` it is, for the message), then the grant.
    Scoped {
        kind: CapabilityKind,
        what: &'static str,
        scope: fn(&In) -> &str,
    },
    /// `kind` with a scope for each thing the handler reaches (outbound HTTP: each hop's
    /// host), which the handler checks with [`Requester::require`].
    ByHandler(CapabilityKind),
}

impl<In: ?Sized> Grant<In> {
    fn kind(&self) -> Option<CapabilityKind> {
        match self {
            Self::Free => None,
            Self::Unscoped(kind) | Self::Scoped { kind, .. } | Self::ByHandler(kind) => Some(*kind),
        }
    }
}

/// How a row reads its request's payload.
pub(super) trait Input: Sized {
    fn decode(payload: &[u8]) -> Result<Self, HostError>;
}

/// A payload of JSON.
impl<T: DeserializeOwned> Input for T {
    fn decode(payload: &[u8]) -> Result<Self, HostError> {
        serde_json::from_slice(payload).map_err(|e| bad_request(format!("malformed request: {e}")))
    }
}

/// No payload: whatever the plugin sent is not read.
pub(super) struct NoBody;

impl Input for NoBody {
    fn decode(_: &[u8]) -> Result<Self, HostError> {
        Ok(Self)
    }
}

/// How a row's answer is sent.
pub(super) trait Answer {
    fn encode(self) -> Result<Vec<u8>, HostError>;
}

/// A value, as JSON.
impl<T: Serialize> Answer for T {
    fn encode(self) -> Result<Vec<u8>, HostError> {
        json(&self)
    }
}

/// An answer sent as it is: JSON the host wrote already (a stored kv value), or bytes that are
/// not JSON (a handover's state).
pub(super) struct Bytes(pub(super) Vec<u8>);

impl Answer for Bytes {
    fn encode(self) -> Result<Vec<u8>, HostError> {
        Ok(self.0)
    }
}

/// `value` as JSON.
pub(super) fn json(value: &impl Serialize) -> Result<Vec<u8>, HostError> {
    serde_json::to_vec(value).map_err(|e| host_error(HostErrorCode::INTERNAL, "", &e.to_string()))
}

/// A typed row's handler: the requesting plugin and the decoded input, to the answer.
type Handler<In, Out> = fn(&dyn Requester, In) -> Result<Out, HostError>;

/// A raw row's handler: the payload as it is, to the answer's bytes.
type RawHandler = fn(&dyn Requester, &[u8]) -> Result<Vec<u8>, HostError>;

/// A built-in operation whose payloads are typed: JSON (or nothing) in, a value out.
pub(super) struct Row<In, Out> {
    request: Request,
    grant: Grant<In>,
    handler: Handler<In, Out>,
}

/// The row serving `request` with `handler`, which needs `grant`.
pub(super) fn row<In: Input + 'static, Out: Answer + 'static>(
    request: Request,
    grant: Grant<In>,
    handler: Handler<In, Out>,
) -> Box<dyn BuiltIn> {
    Box::new(Row {
        request,
        grant,
        handler,
    })
}

impl<In: Input, Out: Answer> BuiltIn for Row<In, Out> {
    fn request(&self) -> Request {
        self.request
    }

    fn capability(&self) -> Option<CapabilityKind> {
        self.grant.kind()
    }

    fn serve(&self, requester: &dyn Requester, payload: &[u8]) -> Result<Vec<u8>, HostError> {
        if let Grant::Unscoped(kind) = self.grant {
            requester.require(kind, None)?;
        }
        let input = In::decode(payload)?;
        if let Grant::Scoped { kind, what, scope } = &self.grant {
            let scope = scope(&input);
            check_name(what, scope)?;
            requester.require(*kind, Some(scope))?;
        }
        (self.handler)(requester, input)?.encode()
    }
}

/// A built-in operation whose payloads are bytes of a layout of their own (a frame, a tagged
/// chunk), read and written by its handler.
pub(super) struct Raw {
    request: Request,
    grant: Grant<[u8]>,
    handler: RawHandler,
}

/// The row serving `request` with `handler`, which reads the payload as it is. Its capability,
/// if any, is checked before the handler runs (`Unscoped`) or by it (`ByHandler`).
pub(super) fn raw(request: Request, grant: Grant<[u8]>, handler: RawHandler) -> Box<dyn BuiltIn> {
    Box::new(Raw {
        request,
        grant,
        handler,
    })
}

impl BuiltIn for Raw {
    fn request(&self) -> Request {
        self.request
    }

    fn capability(&self) -> Option<CapabilityKind> {
        self.grant.kind()
    }

    fn serve(&self, requester: &dyn Requester, payload: &[u8]) -> Result<Vec<u8>, HostError> {
        match &self.grant {
            Grant::Unscoped(kind) => requester.require(*kind, None)?,
            Grant::Scoped { kind, what, scope } => {
                let scope = scope(payload);
                check_name(what, scope)?;
                requester.require(*kind, Some(scope))?;
            }
            Grant::Free | Grant::ByHandler(_) => {}
        }
        (self.handler)(requester, payload)
    }
}

/// Checks a name a plugin passed (a topic, a pattern, a job's or a secret's name, a plugin id).
pub(super) fn check_name(what: &str, name: &str) -> Result<(), HostError> {
    if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
        return Err(bad_request(format!(
            "the {what} must be 1 to 256 printable characters"
        )));
    }
    Ok(())
}
