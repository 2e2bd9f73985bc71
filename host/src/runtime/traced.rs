//! The span of one call into a plugin, made by the invoke path only when a subscriber may want
//! it ([`trace::on`]): `airlock.call` (target `airlock::call`, level DEBUG) with the plugin,
//! its generation, what was invoked (`kind`, `action`), who asked (`caller`), and, recorded
//! when the call ends, how it ended (`outcome`) and how long it took (`duration_ns`).

use std::time::Instant;

use airlock_abi::abi::InvocationKind;
use airlock_abi::wire::CallerInfo;
use tracing::field::Empty;

use crate::frame::trace::{self, CALL_SPAN};

use super::called::Called;
use super::plugin::LoadedPlugin;

/// Runs `call` (one call into `plugin`) inside its span, the span current on this thread its
/// parent; when no subscriber takes the span, `call` runs alone. Kept out of line: the call
/// path reaches it only when [`trace::on`].
#[cold]
#[inline(never)]
pub(super) fn traced(
    plugin: &LoadedPlugin,
    kind: InvocationKind,
    name: &str,
    out: &mut Vec<u8>,
    call: impl FnOnce(&mut Vec<u8>) -> Called,
) -> Called {
    let span = tracing::debug_span!(
        target: trace::TARGET,
        CALL_SPAN,
        plugin = %plugin.id(),
        generation = plugin.generation.load(std::sync::atomic::Ordering::Relaxed),
        kind = kind_name(kind),
        action = name,
        caller = %Caller(crate::frame::caller::current()),
        outcome = Empty,
        duration_ns = Empty,
    );
    if span.is_disabled() {
        return call(out);
    }
    let started = Instant::now();
    let called = span.in_scope(|| call(out));
    let took = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    span.record("outcome", outcome(called));
    span.record("duration_ns", took);
    called
}

/// How a call ended, as its span's `outcome`: `ok`, `error` (the action's own error),
/// `retryable`, `pending` (waiting for an approval), `deferred` (answered later), or the
/// failure's code (`handler_error`, `panicked`, `timeout`...).
pub(crate) fn outcome(called: Called) -> &'static str {
    match called {
        Called::Answered => "ok",
        Called::Domain => "error",
        Called::Retryable => "retryable",
        Called::Pending => "pending",
        Called::Deferred => "deferred",
        Called::Failed(code) => code.code(),
    }
}

/// What was invoked, as the span's `kind`.
fn kind_name(kind: InvocationKind) -> &'static str {
    match kind {
        InvocationKind::ACTION => "action",
        InvocationKind::HOOK => "hook",
        InvocationKind::EVENT => "event",
        InvocationKind::TIMER => "timer",
        InvocationKind::HEALTH => "health",
        InvocationKind::CONFIG_CHANGED => "config_changed",
        InvocationKind::VALIDATE_CONFIG => "validate_config",
        InvocationKind::SNAPSHOT => "snapshot",
        InvocationKind::STARTED => "started",
        InvocationKind::STOPPING => "stopping",
        _ => "other",
    }
}

/// A caller as a span's `caller`: `host`, `host:<principal>` or `plugin:<id>`.
struct Caller(CallerInfo);

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            CallerInfo::Host { principal: None } => f.write_str("host"),
            CallerInfo::Host { principal: Some(p) } => write!(f, "host:{}", p.id),
            CallerInfo::Plugin { id, .. } => write!(f, "plugin:{id}"),
        }
    }
}
