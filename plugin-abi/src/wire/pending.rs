//! Deferred answers on the wire: what an action that answers pending sends the host (a
//! [`Deferral`], the message of its [`ErrorCode::PENDING`](crate::abi::ErrorCode::PENDING)
//! error), and how a plugin later settles one (`pending resolve`, a [`Resolution`]).

use serde::{Deserialize, Serialize};

use super::Envelope;

/// The longest key of a pending answer, in bytes.
pub const MAX_PENDING_KEY: usize = 256;
/// The longest description of a pending answer, in bytes.
pub const MAX_PENDING_DESCRIPTION: usize = 4096;

/// What an action answering pending tells the host: its own key for the entry (which it names
/// to resolve it) and what the answer waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deferral {
    /// The plugin's name for the entry, unique among its open entries.
    pub key: String,
    /// What the answer waits for, for people (the caller, an operator's listing).
    pub description: String,
}

/// `pending resolve`: settles the plugin's own open entry `key` with `outcome`, the answer the
/// call would have given (`{"status": "ok", "data": ..}` or `{"status": "error", "data":
/// message}`). Answer: `true`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resolution {
    /// The key the action answered pending with.
    pub key: String,
    /// The answer.
    pub outcome: Envelope<serde_json::Value>,
}
