//! Calls into plugins as both sides see them: who asked ([`CallerInfo`], on behalf of a
//! [`Principal`]), and the codes a call can fail with ([`CallErrorCode`]).

use serde::{Deserialize, Serialize};

/// Who asked for the call a plugin is serving: what `ctx.caller()` answers, and what the host
/// passes on to a service of the embedding program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallerInfo {
    /// The host program, on behalf of `principal` when it named one
    /// (`host.call(..).as_principal(..)`).
    Host {
        /// The user (or other party) the host program called for.
        principal: Option<Principal>,
    },
    /// Another plugin, through `ctx.plugins().call(..)`.
    Plugin {
        /// Its id.
        id: String,
        /// The generation of its running instance.
        generation: u64,
    },
}

impl std::fmt::Display for CallerInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Host { principal: None } => f.write_str("the host program"),
            Self::Host { principal: Some(p) } => {
                write!(f, "the host program on behalf of {}", p.id)
            }
            Self::Plugin { id, generation } => write!(f, "plugin {id} (generation {generation})"),
        }
    }
}

/// A party the host program calls a plugin on behalf of: an id and roles, as the embedding
/// program defines them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// Who (a user id, a service account, ...).
    pub id: String,
    /// What they are (`admin`, ...).
    #[serde(default)]
    pub roles: Vec<String>,
}

impl Principal {
    /// A principal with these roles.
    pub fn new(id: impl Into<String>, roles: &[&str]) -> Self {
        Self {
            id: id.into(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    /// Whether it has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// The failure codes a call into a plugin can end with, whatever the caller (host program, CLI
/// or another plugin): the host reports them as `airlock::CallError`, and a plugin calling
/// another one receives them in `ContextError::Call`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CallErrorCode {
    /// No such plugin, or no such action in it.
    NotFound = 0,
    /// The input does not deserialize into the action's input type.
    BadInput = 1,
    /// The plugin failed in a way that is not the caller's fault.
    HandlerError = 2,
    /// The plugin panicked; the panic was contained.
    Panicked = 3,
    /// The plugin's context has been revoked (it was torn down or disabled).
    Revoked = 4,
    /// The plugin faulted too often and is quarantined until an operator enables it again.
    Quarantined = 5,
    /// The plugin hit a capability it was not granted.
    CapabilityViolation = 6,
    /// The call overran the plugin's call timeout (counted as a fault).
    Timeout = 7,
    /// A plugin-to-plugin call would enter a `serial` plugin this thread is already inside
    /// (a call cycle such as A → B → A): refused instead of deadlocking.
    Reentrant = 8,
    /// Plugin-to-plugin calls nested deeper than the host allows on one thread (a cycle
    /// through `parallel` plugins): refused instead of overflowing the stack.
    TooDeep = 9,
    /// The operator's policy does not let this caller invoke this action or hook (a `deny`
    /// rule, or an `ask` the approver refused); audited.
    PermissionDenied = 10,
    /// The policy says `ask` and the approver has not decided yet: the call did not run. The
    /// host resolves it (runs it, or refuses it) once the approver decides; the JSON envelope
    /// carries the approval's id (`pending_approval`).
    PendingApproval = 11,
    /// The isolated plugin's worker process died during the call (a crash, an abort, a
    /// broken channel); the host restarts it within the policy's budget.
    WorkerFailure = 12,
    /// The call was cancelled (by its caller, or because the plugin is being torn down) and
    /// the plugin stopped: an outcome of its own, not a fault.
    Cancelled = 13,
    /// The plugin is `serial` and another call stayed inside it for as long as this one could
    /// wait (its own call timeout, or what is left of the call it is nested in), or the wait
    /// would close a cycle with another thread's (A → B on one thread while B → A on another):
    /// the call did not run. Not a fault.
    Busy = 14,
    /// The action's circuit breaker is open: it failed the policy's number of times in a row,
    /// and the host gives it a rest until its cooldown is over (then one call probes it). The
    /// call did not run. Not a fault.
    BreakerOpen = 15,
}

impl CallErrorCode {
    /// Every code.
    pub const ALL: [Self; 16] = [
        Self::NotFound,
        Self::BadInput,
        Self::HandlerError,
        Self::Panicked,
        Self::Revoked,
        Self::Quarantined,
        Self::CapabilityViolation,
        Self::Timeout,
        Self::Reentrant,
        Self::TooDeep,
        Self::PermissionDenied,
        Self::PendingApproval,
        Self::WorkerFailure,
        Self::Cancelled,
        Self::Busy,
        Self::BreakerOpen,
    ];

    /// The stable code, e.g. `not_found`.
    pub const fn code(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::BadInput => "bad_input",
            Self::HandlerError => "handler_error",
            Self::Panicked => "panicked",
            Self::Revoked => "revoked",
            Self::Quarantined => "quarantined",
            Self::CapabilityViolation => "capability_violation",
            Self::Timeout => "timeout",
            Self::Reentrant => "reentrant",
            Self::TooDeep => "too_deep",
            Self::PermissionDenied => "permission_denied",
            Self::PendingApproval => "pending_approval",
            Self::WorkerFailure => "worker_failure",
            Self::Cancelled => "cancelled",
            Self::Busy => "busy",
            Self::BreakerOpen => "breaker_open",
        }
    }
}

impl std::fmt::Display for CallErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::HostErrorCode;

    #[test]
    fn every_call_error_code_has_its_own_host_error_code() {
        let mut seen = std::collections::BTreeSet::new();
        for code in CallErrorCode::ALL {
            let host = HostErrorCode::call_failed(code);
            assert!(seen.insert(host.0), "{code} shares {host:?}");
            assert_eq!(host.call_error(), Some(code));
        }
        for other in [
            HostErrorCode::REVOKED,
            HostErrorCode::CAPABILITY_VIOLATION,
            HostErrorCode::UNSUPPORTED,
            HostErrorCode::BAD_REQUEST,
            HostErrorCode::INTERNAL,
        ] {
            assert_eq!(other.call_error(), None, "{other:?}");
        }
    }
}
