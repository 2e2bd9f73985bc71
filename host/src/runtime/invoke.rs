//! The one invoke path: every call into a plugin instance — actions, hooks, events, timers
//! (`deliver.rs`), health, config changes — goes through [`HostShared::invoke_into`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use airlock_abi::abi::{ContextToken, ErrorCode, InvocationKind};
use airlock_abi::wire::Envelope;

use crate::error::{CallError, CallErrorCode};
use crate::sync::hazard::{this_thread, CallMark, ThreadRecord};

use super::called::{
    answer, lookup, message, not_loaded, not_running, pending, plugin_error_code, quarantined,
    refuse, Called,
};
use super::plugin::{Invoked, LoadedPlugin, Running};
use super::shared::HostShared;
use super::traced::traced;
use crate::frame::trace;
use crate::isolation::process::{WORKER_FAILURE, WORKER_GONE, WORKER_KILLED};
use crate::policy::permission::Target;
use crate::runtime::outcome::PluginState;

impl HostShared {
    /// Runs one invocation on the running instance of `plugin` (see
    /// [`HostShared::invoke_into`]), answering owned values.
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
    /// the answer is `revoked`.
    pub(crate) fn invoke_addressed(
        &self,
        plugin: &LoadedPlugin,
        to: Option<ContextToken>,
        kind: InvocationKind,
        index: u32,
        name: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, Invoked> {
        let mut out = Vec::new();
        let called = self.invoke_into(
            this_thread(),
            plugin,
            to,
            kind,
            index,
            name,
            payload,
            &mut out,
        );
        Invoked::from_called(called, out)
    }

    /// The one invoke path: runs one invocation on the running instance of `plugin` (the one
    /// of context `to`, if given: the check and the call read the running instance once), fails
    /// fast when quarantined or not running, serializes `serial` plugins, publishes the call to
    /// the watchdog, and turns panics and overruns into counted faults. The answer or the
    /// failure's message is left in `out`. Every call into a plugin instance goes through here.
    /// `record` is the calling thread's ([`this_thread`], read once per call).
    /// The call runs in its span ([`traced`]) when a subscriber may want one.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn invoke_into(
        &self,
        record: Option<&'static ThreadRecord>,
        plugin: &LoadedPlugin,
        to: Option<ContextToken>,
        kind: InvocationKind,
        index: u32,
        name: &str,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Called {
        if trace::on() {
            return traced(plugin, kind, name, out, |out| {
                self.invoke_untraced(record, plugin, to, kind, index, name, payload, out)
            });
        }
        self.invoke_untraced(record, plugin, to, kind, index, name, payload, out)
    }

    /// [`HostShared::invoke_into`] without its span.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn invoke_untraced(
        &self,
        record: Option<&'static ThreadRecord>,
        plugin: &LoadedPlugin,
        to: Option<ContextToken>,
        kind: InvocationKind,
        index: u32,
        name: &str,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Called {
        if plugin.schemas.is_some() && kind == InvocationKind::ACTION {
            if let Some(refused) = super::called::misfit(plugin, index, name, payload, out) {
                return refused;
            }
        }
        if plugin.state.is(PluginState::Quarantined) {
            return quarantined(plugin, out);
        }
        // Taken before the call is marked: a call waiting for the gate is not yet running, and
        // the watchdog does not time it as running.
        let _serial = match &plugin.serial {
            None => None,
            Some(gate) => match gate.enter(
                record,
                || self.gate_deadline(record, plugin),
                || !plugin.state.is(PluginState::Quarantined) && plugin.running.is_some(),
                |waited| self.tally.serial_wait(plugin.id().as_str(), waited),
            ) {
                Ok(pass) => Some(pass),
                Err(shut) => return super::gate::shut_out(plugin, shut, out),
            },
        };
        plugin
            .running
            .with_call(record, |running, call| match running {
                Some(running) if to.is_none_or(|to| to == running.token) => {
                    self.invoke_running(call, plugin, running, kind, index, name, payload, out)
                }
                Some(_) => refuse(
                    out,
                    CallErrorCode::Revoked,
                    format_args!(
                        "addressed to an instance of {} that has been torn down",
                        plugin.id()
                    ),
                ),
                None => not_running(plugin, out),
            })
    }

    /// [`HostShared::invoke_into`] on the instance that is running (a serial plugin's gate
    /// already taken).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn invoke_running(
        &self,
        call: Option<CallMark>,
        plugin: &LoadedPlugin,
        running: &Running,
        kind: InvocationKind,
        index: u32,
        name: &str,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Called {
        // The watchdog times the call (and counts the fault) from its own thread, from the
        // call's mark in this thread's hazard slot: the call path never reads the clock.
        let code = running.instance.call(kind, index, name, payload, out);
        if code == ErrorCode::OK && !call.is_some_and(CallMark::reported) {
            return Called::Answered;
        }
        let overran = call.filter(|c| c.reported());
        if code == ErrorCode::PENDING && overran.is_none() {
            return self.pending_answer(plugin, kind, name, out);
        }
        self.ended_badly(plugin, name, code, overran, out)
    }

    /// A call that did not simply answer: a panic is a fault; a call reported past its timeout
    /// (or told it is cancelled) discards its result and ends `cancelled` if it stopped within
    /// its grace, `timeout` (counted as a fault by the watchdog) if not.
    #[cold]
    fn ended_badly(
        &self,
        plugin: &LoadedPlugin,
        name: &str,
        code: ErrorCode,
        overran: Option<CallMark>,
        out: &mut Vec<u8>,
    ) -> Called {
        match code {
            ErrorCode::PANICKED => {
                self.fault(plugin, &format!("{name} panicked: {}", message(out)));
                Called::Failed(CallErrorCode::Panicked)
            }
            // A worker that died after its call was reported overrunning (the watchdog kills
            // it past the grace) overran: settled once, like one killed by the call itself.
            WORKER_FAILURE if overran.is_none() => {
                *plugin.died_at.lock() = Some(Instant::now());
                self.fault(plugin, &format!("{name}: {}", message(out)));
                Called::Failed(CallErrorCode::WorkerFailure)
            }
            WORKER_GONE => Called::Failed(CallErrorCode::WorkerFailure),
            WORKER_KILLED | WORKER_FAILURE => {
                *plugin.died_at.lock() = Some(Instant::now());
                if overran.is_none_or(CallMark::settle) {
                    self.fault(plugin, &format!("{name}: {}", message(out)));
                }
                Called::Failed(CallErrorCode::Timeout)
            }
            _ if overran.is_some_and(CallMark::settle) => refuse(
                out,
                CallErrorCode::Cancelled,
                format_args!(
                    "{name} was cancelled (by its caller, at its {} ms call timeout, or as its \
                     plugin was torn down) and stopped; what it answered was discarded",
                    plugin.policy.call_timeout.as_millis()
                ),
            ),
            _ if overran.is_some() => refuse(
                out,
                CallErrorCode::Timeout,
                format_args!(
                    "{name} overran the {} ms call timeout and its {} ms grace; its result was discarded",
                    plugin.policy.call_timeout.as_millis(),
                    plugin.policy.cancel_grace.as_millis()
                ),
            ),
            ErrorCode::OK => Called::Answered,
            ErrorCode::DOMAIN => Called::Domain,
            ErrorCode::RETRYABLE => Called::Retryable,
            other => Called::Failed(plugin_error_code(other)),
        }
    }

    /// Counts a fault of `plugin`; enough of them in the policy's window quarantine it.
    pub(crate) fn fault(&self, plugin: &LoadedPlugin, what: &str) {
        plugin.counters.faults.fetch_add(1, Ordering::Relaxed);
        self.tally.fault(plugin.id().as_str());
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
    pub(crate) fn replaced(&self, loaded: &LoadedPlugin) -> bool {
        self.find(loaded.id().as_str())
            .is_some_and(|current| !std::ptr::eq(Arc::as_ptr(&current), loaded))
    }

    /// Calls an action by name with JSON bytes (`host.call(..).bytes(..)`, and plugins calling
    /// plugins).
    pub(crate) fn call_bytes(
        &self,
        plugin: &str,
        action: &str,
        input: &[u8],
    ) -> Result<Envelope<Vec<u8>>, CallError> {
        let mut out = Vec::new();
        let called = self.call_into(plugin, action, input, &mut out)?;
        answer(plugin, action, called, out)
    }

    /// Calls an action with JSON bytes, leaving what it said in `out`. A call that raced a
    /// reload (it found the old generation already retired) goes to the new generation.
    #[inline]
    pub(crate) fn call_into(
        &self,
        plugin: &str,
        action: &str,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Called, CallError> {
        let mut attempts = 0;
        loop {
            // Looked up in the table as read (no reference count is written per call); the
            // table a call read stays alive until the call returns.
            let record = this_thread();
            let called = self.plugins.with_record(record, |plugins| {
                let (loaded, index) = match plugins {
                    Some(table) => table.resolve(plugin, action)?,
                    None => return Err(not_loaded(plugin, action)),
                };
                let called = self.call_index(record, loaded, index, input, out);
                let retry =
                    called == Called::Failed(CallErrorCode::Revoked) && self.replaced(loaded);
                Ok((called, retry))
            });
            match called? {
                (_, true) if attempts < 8 => attempts += 1,
                (called, _) => return Ok(called),
            }
        }
    }

    /// [`HostShared::call_index`] without the counting, in its span ([`traced`], covering a
    /// refusal by permissions too) when a subscriber may want one: the input's check and the
    /// permission rules (for plugins with rules), then the invocation.
    #[inline(always)]
    pub(super) fn call_checked(
        &self,
        record: Option<&'static ThreadRecord>,
        loaded: &LoadedPlugin,
        index: usize,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Called {
        // A manifest declares at most 256 actions, so the index always fits.
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        let name = loaded.action_name(index as usize);
        if trace::on() {
            return traced(loaded, InvocationKind::ACTION, name, out, |out| {
                self.call_permitted(record, loaded, index, name, input, out)
            });
        }
        self.call_permitted(record, loaded, index, name, input, out)
    }

    /// [`HostShared::call_index`] past its count and without its span: the permissions, then
    /// the invoke path.
    #[inline(always)]
    fn call_permitted(
        &self,
        record: Option<&'static ThreadRecord>,
        loaded: &LoadedPlugin,
        index: u32,
        name: &str,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Called {
        if !loaded.policy.permissions.is_empty() {
            // An input that does not fit is refused before it can wait for an approval (the
            // invoke path checks it again; only plugins with rules pay twice).
            if let Some(Err(detail)) = loaded
                .schemas
                .as_ref()
                .map(|s| s.check_input(index as usize, input))
            {
                return refuse(
                    out,
                    CallErrorCode::BadInput,
                    format_args!("{}.{name}: {detail}", loaded.id()),
                );
            }
            if let Err(refused) = self.permit(loaded, Target::Action(name), input) {
                return match refused.pending {
                    Some(id) => pending(out, id, &refused.message),
                    None => refuse(out, refused.code, format_args!("{}", refused.message)),
                };
            }
        }
        self.invoke_untraced(
            record,
            loaded,
            None,
            InvocationKind::ACTION,
            index,
            name,
            input,
            out,
        )
    }
}
