//! The one invoke path: every call into a plugin instance — actions, hooks, events, timers,
//! health, config changes — goes through [`HostShared::invoke_addressed`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use airlock_abi::abi::{ContextToken, ErrorCode, InvocationKind};

use crate::error::{CallError, CallErrorCode};
use crate::loader::watchdog::Watch;

use super::plugin::{Invoked, LoadedPlugin, Running};
use super::shared::HostShared;
use crate::outcome::ActionOutcome;
use crate::outcome::PluginState;

pub(super) fn fail(plugin: &str, action: &str, code: CallErrorCode, message: String) -> CallError {
    CallError {
        code,
        plugin: plugin.to_owned(),
        action: action.to_owned(),
        message,
    }
}

impl HostShared {
    /// Runs one invocation on the running instance of `plugin`: fails fast when quarantined or
    /// not running, serializes `serial` plugins, publishes the call to the watchdog, and turns
    /// panics and overruns into counted faults. Every call into a plugin instance goes through
    /// here.
    pub(crate) fn invoke(
        &self,
        plugin: &LoadedPlugin,
        kind: InvocationKind,
        index: u32,
        name: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, Invoked> {
        self.invoke_addressed(plugin, None, kind, index, name, payload)
    }

    /// [`HostShared::invoke`] for a delivery addressed to the instance of context `to` (an
    /// event or a timer run): if that instance is no longer the running one, nothing runs and
    /// the answer is `revoked`. The check and the call read the running instance once.
    pub(crate) fn invoke_addressed(
        &self,
        plugin: &LoadedPlugin,
        to: Option<ContextToken>,
        kind: InvocationKind,
        index: u32,
        name: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, Invoked> {
        let id = plugin.id();
        if plugin.state.get() == PluginState::Quarantined {
            return Err(Invoked::Failed(
                CallErrorCode::Quarantined,
                format!("plugin {id} is quarantined after repeated faults; an operator must enable it again"),
            ));
        }
        plugin.running.with(|running| {
            let running = running.ok_or_else(|| {
                let state = plugin.state.get();
                Invoked::Failed(CallErrorCode::Revoked, format!("plugin {id} is {state}"))
            })?;
            if to.is_some_and(|to| to != running.token) {
                return Err(Invoked::Failed(
                    CallErrorCode::Revoked,
                    format!("addressed to an instance of {id} that has been torn down"),
                ));
            }
            self.invoke_running(plugin, running, kind, index, name, payload)
        })
    }

    /// [`HostShared::invoke`] on the instance that is running.
    #[inline]
    pub(super) fn invoke_running(
        &self,
        plugin: &LoadedPlugin,
        running: &Running,
        kind: InvocationKind,
        index: u32,
        name: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, Invoked> {
        let _serial = match &plugin.serial {
            None => None,
            Some(gate) => Some(gate.enter().ok_or_else(|| {
                Invoked::Failed(
                    CallErrorCode::Reentrant,
                    format!(
                        "plugin {} is serial and this thread is already inside it (a call cycle); \
                         refused instead of deadlocking",
                        plugin.id()
                    ),
                )
            })?),
        };
        // The watchdog times the call (and counts the fault) from its own thread: the call path
        // reads the clock once, when it publishes the call.
        let watch = Watch::enter(plugin.key());
        let result = running.instance.invoke(kind, index, name, payload);
        let overran = watch.reported();
        drop(watch);
        let timeout = plugin.policy.call_timeout;
        match result {
            Err(e) if e.code == ErrorCode::PANICKED => {
                let message = e.message.into_string();
                self.fault(plugin, &format!("{name} panicked: {message}"));
                Err(Invoked::Failed(CallErrorCode::Panicked, message))
            }
            _ if overran => Err(Invoked::Failed(
                CallErrorCode::Timeout,
                format!(
                    "{name} overran the {} ms call timeout; its result was discarded",
                    timeout.as_millis()
                ),
            )),
            Ok(bytes) => Ok(bytes),
            Err(e) if e.code == ErrorCode::DOMAIN => Err(Invoked::Domain(e.message.into_string())),
            Err(e) => Err(Invoked::Failed(
                plugin_error_code(e.code),
                e.message.into_string(),
            )),
        }
    }

    /// Counts a fault of `plugin`; enough of them in the policy's window quarantine it.
    pub(crate) fn fault(&self, plugin: &LoadedPlugin, what: &str) {
        plugin.counters.faults.fetch_add(1, Ordering::Relaxed);
        let policy = &plugin.policy;
        let now = Instant::now();
        let quarantine = {
            let mut recent = plugin.recent_faults.lock();
            recent.push_back(now);
            while recent
                .front()
                .is_some_and(|t| now.duration_since(*t) > policy.quarantine_window)
            {
                recent.pop_front();
            }
            policy.quarantine_faults > 0 && recent.len() >= policy.quarantine_faults as usize
        };
        tracing::warn!(plugin = %plugin.id(), "fault: {what}");
        // Only a running plugin is quarantined (a fault reported as its instance went away
        // leaves the new state alone).
        if quarantine
            && plugin
                .state
                .change(PluginState::Running, PluginState::Quarantined)
        {
            tracing::error!(
                plugin = %plugin.id(),
                "quarantined after {} faults within {} ms; `enable` it to try again",
                policy.quarantine_faults,
                policy.quarantine_window.as_millis()
            );
        }
    }

    /// The current plugin with this id and the index of `action` in its manifest.
    pub(crate) fn resolve(
        &self,
        plugin: &str,
        action: &str,
    ) -> Result<(Arc<LoadedPlugin>, usize), CallError> {
        lookup(&self.table(), plugin, action).map(|(loaded, index)| (loaded.clone(), index))
    }

    /// Whether `loaded` has been replaced in the table by a newer generation (a reload).
    pub(super) fn replaced(&self, loaded: &LoadedPlugin) -> bool {
        self.find(loaded.id().as_str())
            .is_some_and(|current| !std::ptr::eq(Arc::as_ptr(&current), loaded))
    }

    /// Calls an action with JSON bytes; see [`Host::call_bytes`]. A call that raced a reload
    /// (it found the old generation already retired) goes to the new generation.
    pub(crate) fn call_bytes(
        &self,
        plugin: &str,
        action: &str,
        input: &[u8],
    ) -> Result<Result<Vec<u8>, String>, CallError> {
        let mut attempts = 0;
        loop {
            // Looked up in the table as read (no reference count is written per call); the
            // table a call read stays alive until the call returns.
            let result = self.plugins.with(|plugins| {
                let (loaded, index) =
                    lookup(plugins.map_or(&[][..], Vec::as_slice), plugin, action)?;
                let result = self.call_index(loaded, index, action, input);
                let retry = matches!(&result, Err(e) if e.code == CallErrorCode::Revoked)
                    && self.replaced(loaded);
                Ok((result, retry))
            });
            match result? {
                (_, true) if attempts < 8 => attempts += 1,
                (result, _) => return result,
            }
        }
    }

    /// Calls the action at `index` of a plugin already looked up.
    pub(crate) fn call_index(
        &self,
        loaded: &LoadedPlugin,
        index: usize,
        action: &str,
        input: &[u8],
    ) -> Result<Result<Vec<u8>, String>, CallError> {
        loaded.counters.calls.add(1);
        // A manifest declares at most 256 actions, so the index always fits.
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        match self.invoke(loaded, InvocationKind::ACTION, index, action, input) {
            Ok(bytes) => Ok(Ok(bytes)),
            Err(Invoked::Domain(message)) => Ok(Err(message)),
            Err(Invoked::Failed(code, message)) => {
                Err(fail(loaded.id().as_str(), action, code, message))
            }
        }
    }

    /// Delivers an event or timer run to the plugin whose current context is `token`; does
    /// nothing if that plugin is no longer running under that token.
    pub(crate) fn deliver(
        &self,
        token: ContextToken,
        kind: InvocationKind,
        name: &str,
        payload: &[u8],
    ) {
        let plugins = self.table();
        let Some(plugin) = plugins
            .iter()
            .find(|p| p.running.with(|r| r.is_some_and(|r| r.token == token)))
        else {
            return;
        };
        crate::failpoint::hit(crate::failpoint::DELIVER_MATCHED);
        let delivered = match self.invoke_addressed(plugin, Some(token), kind, 0, name, payload) {
            Ok(_) | Err(Invoked::Domain(_)) => true,
            // Torn down since it was found: it was for that instance, not for its successor.
            Err(Invoked::Failed(CallErrorCode::Revoked, _)) => false,
            Err(Invoked::Failed(code, message)) => {
                tracing::warn!(plugin = %plugin.id(), name, %code, "delivery failed: {message}");
                true
            }
        };
        if delivered {
            let counter = if kind == InvocationKind::TIMER {
                &plugin.counters.timer_runs
            } else {
                &plugin.counters.events
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Encodes `input`, calls, and decodes the answer into the result envelope.
pub(super) fn json_call(
    plugin: &str,
    action: &str,
    input: &serde_json::Value,
    call: impl FnOnce(&[u8]) -> Result<Result<Vec<u8>, String>, CallError>,
) -> Result<ActionOutcome, CallError> {
    let input = serde_json::to_vec(input)
        .map_err(|e| fail(plugin, action, CallErrorCode::BadInput, e.to_string()))?;
    match call(&input)? {
        Ok(bytes) => airlock_abi::wire::parse(&bytes)
            .map(ActionOutcome::Ok)
            .map_err(|e| {
                fail(
                    plugin,
                    action,
                    CallErrorCode::HandlerError,
                    format!("the plugin answered with invalid JSON: {e}"),
                )
            }),
        Err(message) => Ok(ActionOutcome::Error(message)),
    }
}

/// The plugin `plugin` in `plugins` (the newest with that id) and the index of `action` in its
/// manifest; `not_found` otherwise.
pub(super) fn lookup<'a>(
    plugins: &'a [Arc<LoadedPlugin>],
    plugin: &str,
    action: &str,
) -> Result<(&'a Arc<LoadedPlugin>, usize), CallError> {
    let loaded = plugins
        .iter()
        .rev()
        .find(|p| p.id().as_str() == plugin)
        .ok_or_else(|| not_loaded(plugin, action))?;
    let index = loaded
        .file
        .manifest
        .action_index(action)
        .ok_or_else(|| no_such_action(loaded, action))?;
    Ok((loaded, index))
}

/// `not_found` for a plugin that is not loaded.
pub(super) fn not_loaded(plugin: &str, what: &str) -> CallError {
    fail(
        plugin,
        what,
        CallErrorCode::NotFound,
        format!("no plugin {plugin:?} is loaded"),
    )
}

/// `not_found` for an action the plugin does not have, listing the ones it has.
pub(super) fn no_such_action(loaded: &LoadedPlugin, action: &str) -> CallError {
    let plugin = loaded.id().as_str();
    let known: Vec<_> = loaded
        .file
        .manifest
        .actions
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    fail(
        plugin,
        action,
        CallErrorCode::NotFound,
        format!(
            "plugin {plugin:?} has no action {action:?}; it has: {}",
            known.join(", ")
        ),
    )
}

pub(super) fn plugin_error_code(code: ErrorCode) -> CallErrorCode {
    match code {
        ErrorCode::BAD_INPUT => CallErrorCode::BadInput,
        ErrorCode::NOT_FOUND => CallErrorCode::NotFound,
        ErrorCode::PANICKED => CallErrorCode::Panicked,
        ErrorCode::CAPABILITY_VIOLATION => CallErrorCode::CapabilityViolation,
        ErrorCode::REVOKED => CallErrorCode::Revoked,
        _ => CallErrorCode::HandlerError,
    }
}
