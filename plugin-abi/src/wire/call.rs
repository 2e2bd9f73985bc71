//! Calls into plugins as both sides see them: who asked ([`CallerInfo`], on behalf of a
//! [`Principal`]), and the codes a call can fail with ([`CallErrorCode`]).

use std::collections::BTreeMap;

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

/// A party the host program calls a plugin on behalf of: an id, roles and attributes, as the
/// embedding program defines them.
///
/// `attributes` crossed the boundary later than `id` and `roles`: it is left out of the JSON
/// when empty, and a plugin built before it ignores it (the struct refuses no unknown field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// Who (a user id, a service account, ...).
    pub id: String,
    /// What they are (`admin`, ...).
    #[serde(default)]
    pub roles: Vec<String>,
    /// What they belong to, by name (`org` = `acme`, `tenant`, `space`, ...), which a
    /// permission rule may match (`attr:org=acme`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

impl Principal {
    /// A principal with these roles and no attributes.
    pub fn new(id: impl Into<String>, roles: &[&str]) -> Self {
        Self {
            id: id.into(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            attributes: BTreeMap::new(),
        }
    }

    /// The principal with the attribute `name` set to `value` (replacing any value it had).
    #[must_use]
    pub fn with_attribute(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(name.into(), value.into());
        self
    }

    /// The value of its attribute `name`, if it has one.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).map(String::as_str)
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
    /// The action answered pending (a deferred answer): the message names the entry's id and
    /// its description; the host program settles or reads it (`Host::pending`). A plugin that
    /// calls such an action sees this code.
    Pending = 15,
    /// The action's circuit breaker is open: it failed the policy's number of times in a row,
    /// and the host gives it a rest until its cooldown is over (then one call probes it). The
    /// call did not run. Not a fault.
    BreakerOpen = 16,
}

impl CallErrorCode {
    /// Every code.
    pub const ALL: [Self; 17] = [
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
        Self::Pending,
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
            Self::Pending => "pending",
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

    /// The caller as a plugin built before attributes reads it: the same fields, no others.
    #[derive(Deserialize, PartialEq, Debug)]
    #[serde(rename_all = "snake_case")]
    enum OldCallerInfo {
        Host { principal: Option<OldPrincipal> },
    }

    #[derive(Deserialize, PartialEq, Debug)]
    struct OldPrincipal {
        id: String,
        #[serde(default)]
        roles: Vec<String>,
    }

    #[test]
    fn attributes_cross_to_new_plugins_and_old_ones_ignore_them() {
        let ada = Principal::new("ada", &["admin"]).with_attribute("org", "acme");
        let caller = CallerInfo::Host {
            principal: Some(ada.clone()),
        };
        let bytes = serde_json::to_vec(&caller).expect("serialize");
        let old: OldCallerInfo = serde_json::from_slice(&bytes).expect("an old plugin reads it");
        let OldCallerInfo::Host { principal } = old;
        assert_eq!(
            principal,
            Some(OldPrincipal {
                id: "ada".into(),
                roles: vec!["admin".into()]
            })
        );
        let new: CallerInfo = serde_json::from_slice(&bytes).expect("a new plugin reads it");
        assert_eq!(new, caller);
        assert_eq!(ada.attribute("org"), Some("acme"));
        // From an old host (no attributes key): none, and nothing more on the wire than before.
        let from_old: Principal =
            serde_json::from_str(r#"{"id":"bob","roles":[]}"#).expect("an old host's principal");
        assert!(from_old.attributes.is_empty());
        let plain = serde_json::to_string(&Principal::new("bob", &[])).expect("serialize");
        assert_eq!(plain, r#"{"id":"bob","roles":[]}"#);
    }
}
