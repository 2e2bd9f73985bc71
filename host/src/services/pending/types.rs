//! The values of the pending store: an entry's id, its state, the entry, and why an operation
//! on it failed.

use airlock_abi::wire::{CallerInfo, Envelope};
use serde::{Deserialize, Serialize};

/// The id of a pending answer: 32 lower-case hex digits, 128 bits from the operating system's
/// random source, so that no one guesses another caller's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PendingId(String);

impl PendingId {
    pub(super) fn random() -> Result<Self, PendingError> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes)
            .map_err(|e| PendingError::Storage(format!("no random source for an id: {e}")))?;
        Ok(Self(bytes.iter().map(|b| format!("{b:02x}")).collect()))
    }

    /// The id written as `text`, if it is one (32 lower-case hex digits).
    pub fn parse(text: &str) -> Option<Self> {
        let ok = text.len() == 32 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| Self(text.to_owned()))
    }

    /// An id the host wrote itself (into a call's buffer), read back.
    pub(crate) fn written(text: String) -> Self {
        Self(text)
    }

    /// The id's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PendingId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a pending answer is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "outcome", rename_all = "snake_case")]
pub enum PendingState {
    /// Waiting to be resolved.
    Open,
    /// Resolved, by the plugin or the host program, with the answer the call gives.
    Resolved(Envelope<serde_json::Value>),
    /// Not resolved within the policy's bound.
    Expired,
}

/// One pending answer ([`crate::Host::pending`], [`crate::Host::pending_answers`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingEntry {
    /// Its id, which its caller was given.
    pub id: PendingId,
    /// The plugin whose action answered pending.
    pub plugin: String,
    /// The action.
    pub action: String,
    /// The plugin's own key for it.
    pub key: String,
    /// What it waits for.
    pub description: String,
    /// Who called the action.
    pub caller: CallerInfo,
    /// When the action answered pending (unix time, ms).
    pub created_unix_ms: u64,
    /// When it expires if still open (unix time, ms).
    pub expires_unix_ms: u64,
    /// When it was resolved or expired (unix time, ms).
    pub settled_unix_ms: Option<u64>,
    /// Open, resolved (with the answer) or expired.
    pub state: PendingState,
}

/// Why a pending answer could not be made, found or settled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PendingError {
    /// No entry has this id (or this key, in the resolving plugin's own entries).
    #[error("no pending answer {0}")]
    NotFound(String),
    /// The entry was resolved already: an answer is given once.
    #[error("pending answer {0} was resolved already; an answer is given once")]
    Resolved(PendingId),
    /// The entry expired before it was resolved.
    #[error("pending answer {0} expired before it was resolved ([host] pending_ttl_secs)")]
    Expired(PendingId),
    /// A bound or a rule refused it (the message says which).
    #[error("{0}")]
    Refused(String),
    /// The state database failed.
    #[error("the pending store failed: {0}")]
    Storage(String),
}
