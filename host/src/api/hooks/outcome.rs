//! What hook dispatch answers: the modes, each mode's outcome, and how a plugin or the hook
//! itself failed.

use serde::Serialize;

use crate::error::CallErrorCode;

/// How a hook combines its participants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HookMode {
    /// Each plugin transforms the previous one's output.
    Chain,
    /// A chain in which a plugin may swallow the input: the rest do not run.
    Intercept,
    /// Any plugin may block; the first block short-circuits and says who and why.
    Guard,
    /// Each plugin returns the subset of a list it accepts; the result is the intersection.
    Filter,
    /// Every plugin's result, in order.
    Collect,
}

/// A plugin that failed in a hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookFailure {
    /// The plugin.
    pub plugin: String,
    /// The failure code (`panicked`, `quarantined`, `handler_error`…).
    pub code: CallErrorCode,
    /// What went wrong.
    pub reason: String,
}

/// Who swallowed the input of an intercept hook, and their reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Swallowed {
    /// The plugin.
    pub plugin: String,
    /// Its reply.
    pub reply: String,
}

/// The result of a `chain` or `intercept` hook.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChainOutcome<T> {
    /// The value after every plugin that ran.
    pub value: T,
    /// Set when an intercept plugin swallowed the input.
    pub swallowed: Option<Swallowed>,
    /// Plugins skipped because they failed.
    pub failures: Vec<HookFailure>,
}

/// A guard's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum GuardVerdict {
    /// Every plugin allowed it.
    Allowed,
    /// A plugin blocked it (or failed, and the guard failed closed).
    Blocked {
        /// Who.
        plugin: String,
        /// Why.
        reason: String,
    },
}

/// The result of a `guard` hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuardOutcome {
    /// Allowed or blocked.
    pub verdict: GuardVerdict,
    /// Plugins that failed (a failure blocks).
    pub failures: Vec<HookFailure>,
}

/// The result of a `filter` hook.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FilterOutcome<T> {
    /// The items every participant kept, in their original order.
    pub items: Vec<T>,
    /// Plugins skipped because they failed.
    pub failures: Vec<HookFailure>,
}

/// The result of a `collect` hook.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CollectOutcome<U> {
    /// Each plugin's result, in order.
    pub results: Vec<(String, U)>,
    /// Plugins skipped because they failed.
    pub failures: Vec<HookFailure>,
}

/// Why a hook could not be dispatched at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HookError {
    /// The host program never defined this hook.
    #[error("hook {0:?} is not defined; define it with Host::define_hook")]
    Undefined(String),
    /// The hook was defined with another mode.
    #[error("hook {hook:?} is defined as {defined:?}, not {used:?}")]
    WrongMode {
        /// The hook.
        hook: String,
        /// Its mode.
        defined: HookMode,
        /// The mode it was dispatched with.
        used: HookMode,
    },
    /// The value could not be encoded as JSON.
    #[error("the hook's value does not serialize: {0}")]
    Encode(String),
}
