//! The host vtable every plugin calls through: each function looks its token up (so a
//! revocation waits for it), contains panics, checks what the plugin passed, and hands service
//! requests to the membrane.

use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::prefix_type::WithMetadata;
use abi_stable::std_types::{RResult, RSlice, RStr, RVec};
use airlock_abi::abi::{
    ContextToken, HostContext, HostError, HostErrorCode, HostVtable, HostVtableRef, LogLevel,
};

use super::{host_error, request};
use crate::membrane::context::{with_entry, ContextEntry};
use crate::services::Observed;
use crate::sync::hazard::this_thread;

#[cold]
pub(super) fn revoked_error() -> HostError {
    host_error(
        HostErrorCode::REVOKED,
        "",
        "the plugin's context has been revoked",
    )
}

/// Runs a host function body: looks the token up (publishing the entry as in use, so that a
/// revocation waits for this call), then runs `f` with panics contained. Nothing unwinds into
/// the plugin.
#[inline(always)]
fn serve<T>(
    token: ContextToken,
    f: impl FnOnce(&ContextEntry) -> Result<T, HostError>,
) -> RResult<T, HostError> {
    // The error is boxed inside `catch_unwind`, so that what comes out of it on success is a
    // small value: moving a whole `Result<T, HostError>` out costs a store-forwarding stall.
    let result = catch_unwind(AssertUnwindSafe(|| {
        let record = this_thread();
        with_entry(record, token, |entry| {
            let entry = entry.ok_or_else(|| Box::new(revoked_error()))?;
            entry.calls.add(record, 1);
            f(entry).map_err(Box::new)
        })
    }));
    match result {
        Ok(Ok(value)) => RResult::ROk(value),
        Ok(Err(e)) => RResult::RErr(*e),
        Err(payload) => {
            drop_payload(payload);
            RResult::RErr(host_error(
                HostErrorCode::INTERNAL,
                "",
                "the host panicked while serving the request",
            ))
        }
    }
}

/// Drops a panic payload without letting a panicking destructor unwind into the plugin: a
/// payload that panics on drop is leaked, and so is that second payload.
pub(super) fn drop_payload(payload: Box<dyn std::any::Any + Send>) {
    if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(again);
    }
}

/// A string the plugin passed, checked: the plugin's side promises UTF-8, but a `&str` over
/// other bytes would be undefined behaviour, so nothing here trusts it.
fn text<'a>(what: &str, s: &RStr<'a>) -> Result<&'a str, HostError> {
    utf8(what, s.as_rslice().as_slice())
}

/// Bytes the plugin passed as a string, checked (see [`text`]).
pub(super) fn utf8<'a>(what: &str, bytes: &'a [u8]) -> Result<&'a str, HostError> {
    std::str::from_utf8(bytes).map_err(|_| {
        host_error(
            HostErrorCode::BAD_REQUEST,
            "",
            &format!("the {what} is not valid UTF-8"),
        )
    })
}

extern "C" fn host_log(
    token: ContextToken,
    level: LogLevel,
    message: RStr<'_>,
) -> RResult<(), HostError> {
    serve(token, |entry| {
        write_line(entry, level, message.as_rslice().as_slice());
        Ok(())
    })
}

/// Whether the host's log takes lines at `level` from plugins.
#[inline(always)]
fn level_enabled(level: LogLevel) -> bool {
    match level {
        LogLevel::ERROR => tracing::enabled!(target: "airlock::plugin", tracing::Level::ERROR),
        LogLevel::WARN => tracing::enabled!(target: "airlock::plugin", tracing::Level::WARN),
        LogLevel::INFO => tracing::enabled!(target: "airlock::plugin", tracing::Level::INFO),
        LogLevel::DEBUG => tracing::enabled!(target: "airlock::plugin", tracing::Level::DEBUG),
        _ => tracing::enabled!(target: "airlock::plugin", tracing::Level::TRACE),
    }
}

/// Writes the plugin's line in its span, if the level filter takes it, and shows it to the
/// test harness when the context is observed.
pub(super) fn write_line(entry: &ContextEntry, level: LogLevel, message: &[u8]) {
    if entry.observed {
        observe(
            entry,
            Observed::Log {
                level,
                message: String::from_utf8_lossy(message).into_owned(),
            },
        );
    }
    if !level_enabled(level) {
        return;
    }
    let _span = entry.span.enter();
    let message = String::from_utf8_lossy(message);
    // One line in the operator's log, whatever the plugin wrote.
    let message = crate::services::printable::printable(&message);
    match level {
        LogLevel::ERROR => tracing::error!(target: "airlock::plugin", "{message}"),
        LogLevel::WARN => tracing::warn!(target: "airlock::plugin", "{message}"),
        LogLevel::INFO => tracing::info!(target: "airlock::plugin", "{message}"),
        LogLevel::DEBUG => tracing::debug!(target: "airlock::plugin", "{message}"),
        _ => tracing::trace!(target: "airlock::plugin", "{message}"),
    }
}

extern "C" fn host_config(token: ContextToken) -> RResult<RVec<u8>, HostError> {
    serve(token, |entry| {
        Ok(RVec::from(entry.config.load().as_slice().to_vec()))
    })
}

/// A request whose names are checked text, routed.
fn checked_request(
    token: ContextToken,
    entry: &ContextEntry,
    service: &RStr<'_>,
    operation: &RStr<'_>,
    payload: &[u8],
) -> Result<Vec<u8>, HostError> {
    let service = text("service name", service)?;
    let operation = text("operation name", operation)?;
    request(token, entry, service, operation, payload)
}

extern "C" fn host_request(
    token: ContextToken,
    service: RStr<'_>,
    operation: RStr<'_>,
    payload: RSlice<'_, u8>,
) -> RResult<RVec<u8>, HostError> {
    let mut revoked_inside = false;
    let answer = serve(token, |entry| {
        let answer = checked_request(token, entry, &service, &operation, payload.as_slice());
        revoked_inside = entry.is_revoked();
        answer.map(RVec::from)
    });
    if revoked_inside {
        // The context was revoked while this request was inside it (a request can wait, on
        // another plugin or a network peer, past its plugin's teardown deadline): the entry,
        // and the host's services it holds, go now that no call reads it, not at some later
        // reclaim.
        crate::sync::hazard::reclaim();
    }
    answer
}

const VTABLE: &WithMetadata<HostVtable> = &WithMetadata::new(HostVtable {
    log: host_log,
    config: host_config,
    request: host_request,
});

/// The host vtable every plugin context points to.
pub fn host_vtable() -> HostVtableRef {
    HostVtableRef(VTABLE.static_as_prefix())
}

/// The context handed to a plugin for `token`.
pub(crate) fn host_context(token: ContextToken) -> HostContext {
    HostContext {
        token,
        vtable: host_vtable(),
    }
}

/// Shows the test harness what the plugin did (contexts opened `observed` only).
fn observe(entry: &ContextEntry, what: Observed) {
    if let Some(host) = entry.host.as_deref() {
        host.observe(&entry.plugin, what);
    }
}
