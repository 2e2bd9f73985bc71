//! The errors a plugin meets and gives: [`InitError`] refuses its creation, [`ActionError`] is an
//! action's (or a hook's) own failure, and [`ContextError`] says why a call through the
//! [`Context`](crate::Context) failed. A context's failure converts into either of the others,
//! keeping the code its caller must see.

use std::fmt;

use crate::ffi::{ErrorCode, HostError, HostErrorCode, PluginError};
use crate::wire::CallErrorCode;

/// Why a call through the [`Context`](crate::Context) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContextError {
    /// The context was revoked: the plugin was torn down, reloaded or disabled.
    Revoked,
    /// The operator did not grant this capability (an audit record was written).
    CapabilityViolation {
        /// The capability that was needed.
        capability: String,
    },
    /// The host does not offer this service or operation.
    Unsupported(String),
    /// The request was malformed.
    BadRequest(String),
    /// The host failed to serve the request.
    Host(String),
    /// The host's answer did not decode into the expected type.
    Decode(String),
    /// A service of the embedding program answered with its own error.
    Service(String),
    /// The host's policy refused the request although the capability covers it (a scheme, a
    /// private address, a limit); an audit record was written.
    Refused(String),
    /// The host tried and the outside world failed (a connection, a timeout, an answer over its
    /// size limit).
    Unreachable(String),
    /// A call to another plugin failed in the host or in that plugin.
    Call {
        /// What went wrong (`not_found`, `bad_input`, `panicked`, …).
        code: CallErrorCode,
        /// Detail.
        message: String,
    },
}

impl fmt::Display for ContextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Revoked => f.write_str("the plugin's context has been revoked"),
            Self::CapabilityViolation { capability } => {
                write!(f, "capability {capability} was not granted to this plugin")
            }
            Self::Unsupported(m) => write!(f, "unsupported request: {m}"),
            Self::BadRequest(m) => write!(f, "bad request: {m}"),
            Self::Host(m) => write!(f, "host error: {m}"),
            Self::Decode(m) => write!(f, "could not decode the host's answer: {m}"),
            Self::Service(m) => write!(f, "the service failed: {m}"),
            Self::Refused(m) => write!(f, "refused by the host's policy: {m}"),
            Self::Unreachable(m) => write!(f, "unreachable: {m}"),
            Self::Call { code, message } => write!(f, "the call failed ({code}): {message}"),
        }
    }
}

impl std::error::Error for ContextError {}

impl From<HostError> for ContextError {
    fn from(e: HostError) -> Self {
        let message = e.message.into_string();
        match e.code {
            HostErrorCode::REVOKED => Self::Revoked,
            HostErrorCode::CAPABILITY_VIOLATION => Self::CapabilityViolation {
                capability: e.capability.into_string(),
            },
            HostErrorCode::UNSUPPORTED => Self::Unsupported(message),
            HostErrorCode::BAD_REQUEST => Self::BadRequest(message),
            HostErrorCode::SERVICE_FAILED => Self::Service(message),
            HostErrorCode::REFUSED => Self::Refused(message),
            HostErrorCode::UNREACHABLE => Self::Unreachable(message),
            code => match code.call_error() {
                Some(code) => Self::Call { code, message },
                None => Self::Host(message),
            },
        }
    }
}

/// Why a plugin could not be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitError(String);

impl InitError {
    /// An error with a message for the operator.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<ContextError> for InitError {
    fn from(e: ContextError) -> Self {
        Self(e.to_string())
    }
}

/// Deferred answers: a new value of the open set of error codes.
impl ErrorCode {
    /// The action answers later ([`ActionError::pending`]): the message is a
    /// [`crate::wire::Deferral`] as JSON. A host that knows the code keeps the entry and hands
    /// its caller the id; an older one, which does not, sees a failed call (rule 3 of the ABI's
    /// evolution).
    pub const PENDING: Self = Self(11);
}

/// A domain error from an action: the `error(message)` side of the result envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionError(String, ErrorCode);

impl ActionError {
    /// An error with a message for the caller.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into(), ErrorCode::DOMAIN)
    }

    /// A domain error worth trying again later (a dependency was briefly unavailable, a rate
    /// limit): `host.dispatch` retries the call with the backoff the operator's policy sets.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self(message.into(), ErrorCode::RETRYABLE)
    }

    /// The action answers later: the host keeps a pending entry with `description` (what the
    /// answer waits for, for people), gives the caller its id, and the plugin settles it with
    /// [`Context::resolve`](crate::Context::resolve) naming the same `key` — its own name for
    /// the entry, unique among its open ones, which no other plugin can reach. Only actions
    /// may answer pending; a hook that does fails.
    pub fn pending(key: impl Into<String>, description: impl Into<String>) -> Self {
        let deferral = crate::wire::Deferral {
            key: key.into(),
            description: description.into(),
        };
        let message = serde_json::to_string(&deferral).unwrap_or_default();
        Self(message, ErrorCode::PENDING)
    }

    /// Whether [`ActionError::pending`] made it.
    pub fn is_pending(&self) -> bool {
        self.1 == ErrorCode::PENDING
    }

    /// Whether [`ActionError::retryable`] made it.
    pub fn is_retryable(&self) -> bool {
        self.1 == ErrorCode::RETRYABLE
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }

    /// The error value that crosses the boundary, with the code this error carries.
    pub(crate) fn into_plugin_error(self) -> PluginError {
        PluginError::new(self.1, self.0)
    }
}

impl fmt::Display for ActionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A failure of the host's context is not the action's domain error: a capability violation or
/// a revoked context reaches the caller with its own code (`capability_violation`, `revoked`),
/// whoever the caller is.
impl From<ContextError> for ActionError {
    fn from(e: ContextError) -> Self {
        let code = match &e {
            ContextError::CapabilityViolation { .. } => ErrorCode::CAPABILITY_VIOLATION,
            ContextError::Revoked => ErrorCode::REVOKED,
            _ => ErrorCode::DOMAIN,
        };
        Self(e.to_string(), code)
    }
}
