//! What the event bus and the timer service need from the runtime, and nothing more: deliver
//! an event or a timer run to the instance a context token names. They hold a `Weak` of it and
//! never name the runtime.

use airlock_abi::abi::{ContextToken, InvocationKind};

/// Delivers an event or timer run to the plugin instance whose context is `token`; does
/// nothing if that instance is no longer the running one.
pub(crate) trait Deliver: Send + Sync {
    fn deliver(&self, token: ContextToken, kind: InvocationKind, name: &str, payload: &[u8]);
}
