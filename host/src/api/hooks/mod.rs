//! Hooks: named extension points the host program defines, each with a dispatch mode. Plugins
//! declare the hooks they implement in their manifest, so the host knows the participants
//! without running anything; they run in ascending policy `priority`, then load order.
//!
//! What each mode does with a plugin that fails (errors, panics, times out, is quarantined or
//! answers something the mode does not allow):
//!
//! | mode | on failure |
//! |---|---|
//! | `chain`, `intercept` | skipped and reported; the value passes on unchanged |
//! | `guard` | **fails closed**: the failing plugin blocks, and the rest do not run |
//! | `filter` | skipped and reported; its opinion is not intersected |
//! | `collect` | skipped and reported; nothing is collected from it |

use std::collections::BTreeMap;
use std::sync::Arc;

use airlock_abi::abi::InvocationKind;
use airlock_abi::HookReply;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

mod outcome;

pub use outcome::{
    ChainOutcome, CollectOutcome, FilterOutcome, GuardOutcome, GuardVerdict, HookError,
    HookFailure, HookMode, Swallowed,
};

use airlock_abi::wire::{CallerInfo, Principal};

use super::Host;
use crate::error::CallErrorCode;
use crate::policy::permission::Target;
use crate::runtime::{HostShared, Invoked, LoadedPlugin};

/// The hooks the program defined, with their modes.
pub(super) type Defined = Mutex<BTreeMap<String, HookMode>>;

/// Dispatches hooks over a host's plugins; from [`crate::Host::hooks`].
pub struct HookDispatch<'h> {
    shared: &'h HostShared,
    defined: &'h Defined,
    /// Whom the host dispatches for ([`HookDispatch::as_principal`]).
    principal: Option<&'h Principal>,
    /// A plugin that does not take part: the one that asked for the run (`hooks run`).
    skip: Option<&'h str>,
}

impl std::fmt::Debug for HookDispatch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookDispatch").finish_non_exhaustive()
    }
}

type Participants = Vec<(Arc<LoadedPlugin>, u32)>;

fn failure(plugin: &LoadedPlugin, code: CallErrorCode, reason: impl Into<String>) -> HookFailure {
    HookFailure {
        plugin: plugin.id().to_string(),
        code,
        reason: reason.into(),
    }
}

impl<'h> HookDispatch<'h> {
    pub(super) fn new(host: &'h Host) -> Self {
        Self::over(&host.shared, &host.hooks)
    }

    /// A dispatch over `shared`'s plugins of the hooks in `defined`.
    pub(super) fn over(shared: &'h HostShared, defined: &'h Defined) -> Self {
        Self {
            shared,
            defined,
            principal: None,
            skip: None,
        }
    }

    /// Leaves `plugin` out: a plugin running a hook it implements does not call itself.
    pub(super) fn skipping(mut self, plugin: &'h str) -> Self {
        self.skip = Some(plugin);
        self
    }

    /// The mode `hook` was defined with, if it was.
    pub(super) fn mode(&self, hook: &str) -> Option<HookMode> {
        self.defined.lock().get(hook).copied()
    }

    /// Dispatches on behalf of `principal`: what the plugins' hook handlers see in
    /// `ctx.caller()` and what the policy's permissions for hooks are checked against.
    pub fn as_principal(mut self, principal: &'h Principal) -> Self {
        self.principal = Some(principal);
        self
    }

    fn prepare(&self, hook: &str, used: HookMode) -> Result<Participants, HookError> {
        match self.mode(hook) {
            None => Err(HookError::Undefined(hook.to_owned())),
            Some(defined) if defined != used => Err(HookError::WrongMode {
                hook: hook.to_owned(),
                defined,
                used,
            }),
            Some(_) => {
                let mut participants = self.shared.hook_participants(hook);
                if let Some(skip) = self.skip {
                    participants.retain(|(p, _)| p.id().as_str() != skip);
                }
                Ok(participants)
            }
        }
    }

    /// Runs one plugin's handler of `hook` (its `index` in the manifest) on behalf of this
    /// dispatch's principal, through the plugin's permissions.
    pub(super) fn run_one(
        &self,
        plugin: &LoadedPlugin,
        index: u32,
        hook: &str,
        input: &Value,
    ) -> Result<HookReply<Value>, HookFailure> {
        let payload = serde_json::to_vec(input)
            .map_err(|e| failure(plugin, CallErrorCode::BadInput, e.to_string()))?;
        let _calling = self.principal.map(|p| {
            crate::frame::caller::push(CallerInfo::Host {
                principal: Some(p.clone()),
            })
        });
        if !plugin.policy.permissions.is_empty() {
            self.shared
                .permit(plugin, Target::Hook(hook), &payload)
                .map_err(|refused| failure(plugin, refused.code, refused.message))?;
        }
        match self
            .shared
            .invoke(plugin, InvocationKind::HOOK, index, hook, &payload)
        {
            Ok(bytes) => airlock_abi::wire::parse(&bytes).map_err(|e| {
                failure(
                    plugin,
                    CallErrorCode::HandlerError,
                    format!("malformed hook reply: {e}"),
                )
            }),
            Err(Invoked::Domain(message)) => {
                Err(failure(plugin, CallErrorCode::HandlerError, message))
            }
            Err(Invoked::Failed(code, message)) => Err(failure(plugin, code, message)),
        }
    }

    fn encode<T: Serialize>(value: &T) -> Result<Value, HookError> {
        serde_json::to_value(value).map_err(|e| HookError::Encode(e.to_string()))
    }

    fn run_chain<T: Serialize + DeserializeOwned>(
        &self,
        hook: &str,
        value: T,
        mode: HookMode,
    ) -> Result<ChainOutcome<T>, HookError> {
        let participants = self.prepare(hook, mode)?;
        let mut value = value;
        let mut failures = Vec::new();
        for (plugin, index) in participants {
            let input = Self::encode(&value)?;
            match self.run_one(&plugin, index, hook, &input) {
                Ok(HookReply::Continue(next)) => match serde_json::from_value::<T>(next) {
                    Ok(next) => value = next,
                    Err(e) => failures.push(failure(
                        &plugin,
                        CallErrorCode::HandlerError,
                        format!("its output does not fit: {e}"),
                    )),
                },
                Ok(HookReply::Swallow(reply)) if mode == HookMode::Intercept => {
                    return Ok(ChainOutcome {
                        value,
                        swallowed: Some(Swallowed {
                            plugin: plugin.id().to_string(),
                            reply,
                        }),
                        failures,
                    });
                }
                Ok(other) => failures.push(failure(
                    &plugin,
                    CallErrorCode::HandlerError,
                    format!("answered {} in a {mode:?} hook", reply_name(&other)),
                )),
                Err(f) => failures.push(f),
            }
        }
        Ok(ChainOutcome {
            value,
            swallowed: None,
            failures,
        })
    }

    /// Runs a `chain` hook: each plugin transforms the previous output.
    ///
    /// # Errors
    ///
    /// [`HookError`] if the hook is not defined as `chain` or the value does not serialize.
    pub fn chain<T: Serialize + DeserializeOwned>(
        &self,
        hook: &str,
        value: T,
    ) -> Result<ChainOutcome<T>, HookError> {
        self.run_chain(hook, value, HookMode::Chain)
    }

    /// Runs an `intercept` hook: a chain in which a plugin may swallow the input.
    ///
    /// # Errors
    ///
    /// [`HookError`] if the hook is not defined as `intercept` or the value does not serialize.
    pub fn intercept<T: Serialize + DeserializeOwned>(
        &self,
        hook: &str,
        value: T,
    ) -> Result<ChainOutcome<T>, HookError> {
        self.run_chain(hook, value, HookMode::Intercept)
    }

    /// Runs a `guard` hook: the first plugin to block (or to fail) short-circuits.
    ///
    /// # Errors
    ///
    /// [`HookError`] if the hook is not defined as `guard` or the value does not serialize.
    pub fn guard<T: Serialize>(&self, hook: &str, value: &T) -> Result<GuardOutcome, HookError> {
        let participants = self.prepare(hook, HookMode::Guard)?;
        let input = Self::encode(value)?;
        for (plugin, index) in participants {
            let blocked = |reason: String, failures: Vec<HookFailure>| GuardOutcome {
                verdict: GuardVerdict::Blocked {
                    plugin: plugin.id().to_string(),
                    reason,
                },
                failures,
            };
            match self.run_one(&plugin, index, hook, &input) {
                Ok(HookReply::Continue(_)) => {}
                Ok(HookReply::Block(reason)) => return Ok(blocked(reason, Vec::new())),
                Ok(HookReply::Swallow(_)) => {
                    let f = failure(
                        &plugin,
                        CallErrorCode::HandlerError,
                        "answered swallow in a guard hook",
                    );
                    return Ok(blocked(format!("failed closed: {}", f.reason), vec![f]));
                }
                Err(f) => {
                    return Ok(blocked(
                        format!("failed closed: {} ({})", f.reason, f.code),
                        vec![f],
                    ))
                }
            }
        }
        Ok(GuardOutcome {
            verdict: GuardVerdict::Allowed,
            failures: Vec::new(),
        })
    }

    /// Runs a `filter` hook: each plugin returns the items it keeps; the result is the
    /// intersection, in the original order.
    ///
    /// # Errors
    ///
    /// [`HookError`] if the hook is not defined as `filter` or the items do not serialize.
    pub fn filter<T: Serialize + DeserializeOwned + PartialEq>(
        &self,
        hook: &str,
        items: Vec<T>,
    ) -> Result<FilterOutcome<T>, HookError> {
        let participants = self.prepare(hook, HookMode::Filter)?;
        let input = Self::encode(&items)?;
        let mut keep = vec![true; items.len()];
        let mut failures = Vec::new();
        for (plugin, index) in participants {
            match self.run_one(&plugin, index, hook, &input) {
                Ok(HookReply::Continue(kept)) => match serde_json::from_value::<Vec<T>>(kept) {
                    Ok(kept) => {
                        for (flag, item) in keep.iter_mut().zip(&items) {
                            *flag = *flag && kept.contains(item);
                        }
                    }
                    Err(e) => failures.push(failure(
                        &plugin,
                        CallErrorCode::HandlerError,
                        format!("its output is not a list of items: {e}"),
                    )),
                },
                Ok(other) => failures.push(failure(
                    &plugin,
                    CallErrorCode::HandlerError,
                    format!("answered {} in a filter hook", reply_name(&other)),
                )),
                Err(f) => failures.push(f),
            }
        }
        let items = items
            .into_iter()
            .zip(keep)
            .filter_map(|(item, k)| k.then_some(item))
            .collect();
        Ok(FilterOutcome { items, failures })
    }

    /// Runs a `collect` hook: every plugin's result, in order.
    ///
    /// # Errors
    ///
    /// [`HookError`] if the hook is not defined as `collect` or the value does not serialize.
    pub fn collect<T: Serialize, U: DeserializeOwned>(
        &self,
        hook: &str,
        value: &T,
    ) -> Result<CollectOutcome<U>, HookError> {
        let participants = self.prepare(hook, HookMode::Collect)?;
        let input = Self::encode(value)?;
        let mut results = Vec::new();
        let mut failures = Vec::new();
        for (plugin, index) in participants {
            match self.run_one(&plugin, index, hook, &input) {
                Ok(HookReply::Continue(v)) => match serde_json::from_value::<U>(v) {
                    Ok(v) => results.push((plugin.id().to_string(), v)),
                    Err(e) => failures.push(failure(
                        &plugin,
                        CallErrorCode::HandlerError,
                        format!("its output does not fit: {e}"),
                    )),
                },
                Ok(other) => failures.push(failure(
                    &plugin,
                    CallErrorCode::HandlerError,
                    format!("answered {} in a collect hook", reply_name(&other)),
                )),
                Err(f) => failures.push(f),
            }
        }
        Ok(CollectOutcome { results, failures })
    }
}

fn reply_name<T>(reply: &HookReply<T>) -> &'static str {
    match reply {
        HookReply::Continue(_) => "continue",
        HookReply::Block(_) => "block",
        HookReply::Swallow(_) => "swallow",
    }
}
