//! The host functions that answer in registers ([`HostFns`]), handed out by the `context
//! functions` request: the same membrane as the vtable's (the token looked up and published so
//! that a revocation waits, the grant checked, panics contained), with the outcome one code and
//! the answer, or the error's message, appended to a buffer the plugin owns. Nothing is
//! returned in memory.
//!
//! A log line below every subscriber's level (the global level filter) is answered from two
//! loads of the token's slot, before any entry is read or published, and is not counted as a
//! host call: it does nothing, so it needs only to know that the context is still open (and
//! not observed by the test harness, which is shown every line).

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::std_types::{RSlice, RVec};
use abi_stable::StableAbi;
use airlock_abi::abi::{
    ContextToken, Encoding, HostError, HostErrorCode, HostFns, LogLevel, RawRequest, RawScope,
    ServiceCall,
};
use airlock_abi::manifest::CapabilityKind;

use super::context::{liveness, with_entry, ContextEntry, Liveness};
use super::vtable::{drop_payload, revoked_error, utf8, write_line};
use super::{count_request, host_error, operation_into, request, services, Offered, Requesting};
use crate::services::registry::Requester;
use crate::services::RequestCounts;
use crate::sync::hazard::this_thread;

/// The table every in-process plugin that asks is given.
static FNS: HostFns = HostFns {
    log: fns_log,
    kv_get: fns_kv_get,
    service: fns_service,
    request: fns_request,
};

/// The type layout the table was built with: one address, what the plugin checks.
static LAYOUT: &abi_stable::type_layout::TypeLayout = <HostFns as StableAbi>::LAYOUT;

/// The most a host thread keeps of its scratch buffer for an answer before it is copied into
/// the plugin's, kept between requests so that small ones allocate nothing.
const KEEP: usize = 64 * 1024;

thread_local! {
    static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// The answer to `context functions`: the table's address and its type layout's, as two
/// little-endian `u64`s.
pub(super) fn answer() -> Vec<u8> {
    let layout: &'static abi_stable::type_layout::TypeLayout = LAYOUT;
    let mut answer = Vec::with_capacity(16);
    answer.extend_from_slice(&(std::ptr::from_ref(&FNS) as usize as u64).to_le_bytes());
    answer.extend_from_slice(&(std::ptr::from_ref(layout) as usize as u64).to_le_bytes());
    answer
}

/// Runs a host function's body like the vtable's `serve`, with the outcome as a code: `f`
/// appends its answer to `out`; an error's message (or a missing capability) replaces whatever
/// is there.
#[inline(always)]
fn serve_into(
    token: ContextToken,
    out: &mut RVec<u8>,
    f: impl FnOnce(&ContextEntry, &mut RVec<u8>) -> Result<(), HostError>,
) -> HostErrorCode {
    let mut revoked_inside = false;
    let result = catch_unwind(AssertUnwindSafe(|| {
        let record = this_thread();
        with_entry(record, token, |entry| {
            let entry = entry.ok_or_else(|| Box::new(revoked_error()))?;
            entry.calls.add(record, 1);
            let answer = f(entry, out).map_err(Box::new);
            revoked_inside = entry.is_revoked();
            answer
        })
    }));
    if revoked_inside {
        // As the vtable's `request`: the entry goes now that no call reads it.
        crate::sync::hazard::reclaim();
    }
    match result {
        Ok(Ok(())) => HostErrorCode::OK,
        Ok(Err(e)) => failed(out, &e),
        Err(payload) => {
            drop_payload(payload);
            failed(
                out,
                &host_error(
                    HostErrorCode::INTERNAL,
                    "",
                    "the host panicked while serving the request",
                ),
            )
        }
    }
}

/// Leaves `e` in `out` (its capability for a violation, else its message) and returns its code.
#[cold]
fn failed(out: &mut RVec<u8>, e: &HostError) -> HostErrorCode {
    out.clear();
    let text = if e.code == HostErrorCode::CAPABILITY_VIOLATION {
        e.capability.as_str()
    } else {
        e.message.as_str()
    };
    out.extend_from_copy_slice(text.as_bytes());
    e.code
}

/// Runs `f` with this thread's scratch buffer (empty), then copies what it wrote into `out`
/// in one go. A nested request (a handler calling a plugin that calls the host) finds the
/// buffer taken and uses one of its own.
fn through_scratch(
    out: &mut RVec<u8>,
    f: impl FnOnce(&mut Vec<u8>) -> Result<(), HostError>,
) -> Result<(), HostError> {
    let mut scratch = SCRATCH.try_with(Cell::take).unwrap_or_default();
    scratch.clear();
    let result = f(&mut scratch);
    if result.is_ok() {
        out.extend_from_copy_slice(&scratch);
    }
    if scratch.capacity() <= KEEP {
        let _ = SCRATCH.try_with(|cell| cell.set(scratch));
    }
    result
}

extern "C" fn fns_log(
    token: ContextToken,
    level: LogLevel,
    message: RSlice<'_, u8>,
    out: &mut RVec<u8>,
) -> HostErrorCode {
    if filtered_by_level(level) {
        match liveness(token) {
            Liveness::Open => return HostErrorCode::OK,
            Liveness::Revoked => return revoked_into(out),
            Liveness::Observed => {}
        }
    }
    log_served(token, level, message, out)
}

/// Leaves the revoked context's message in `out`: out of line, so that the filtered log line's
/// path keeps no frame.
#[cold]
#[inline(never)]
fn revoked_into(out: &mut RVec<u8>) -> HostErrorCode {
    failed(out, &revoked_error())
}

/// Whether no subscriber takes lines at `level` anywhere: the global maximum level, one load
/// (the per-callsite filter is the full path's `level_enabled`).
#[inline(always)]
fn filtered_by_level(level: LogLevel) -> bool {
    use tracing::level_filters::LevelFilter;
    let level = match level {
        LogLevel::ERROR => LevelFilter::ERROR,
        LogLevel::WARN => LevelFilter::WARN,
        LogLevel::INFO => LevelFilter::INFO,
        LogLevel::DEBUG => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    level > LevelFilter::current()
}

/// A log line the filter takes, or any line of an observed context: the full path, out of
/// line so that the filtered one stays a few instructions.
#[inline(never)]
fn log_served(
    token: ContextToken,
    level: LogLevel,
    message: RSlice<'_, u8>,
    out: &mut RVec<u8>,
) -> HostErrorCode {
    serve_into(token, out, |entry, _| {
        write_line(entry, level, message.as_slice());
        Ok(())
    })
}

extern "C" fn fns_kv_get(
    token: ContextToken,
    key: RSlice<'_, u8>,
    scope: Option<&RawScope<'_>>,
    out: &mut RVec<u8>,
) -> HostErrorCode {
    serve_into(token, out, |entry, out| {
        let host = services(entry)?;
        let requester = Requesting { token, entry, host };
        requester.require(CapabilityKind::Kv, None)?;
        count_request(entry, host, RequestCounts::KV_GET);
        let key = utf8("key", key.as_slice())?;
        let scope = scope
            .map(|s| Ok::<_, HostError>((utf8("scope kind", &s.kind)?, utf8("scope id", &s.id)?)))
            .transpose()?;
        super::kv::get_into(&requester, key, scope, out)
    })
}

extern "C" fn fns_service(
    token: ContextToken,
    call: &ServiceCall<'_>,
    out: &mut RVec<u8>,
) -> HostErrorCode {
    serve_into(token, out, |entry, out| {
        let host = services(entry)?;
        let requester = Requesting { token, entry, host };
        // Looked up by the bytes the plugin passed: a hit is the program's own names, as text.
        let Some(offering) = host.registry().offered(&call.service, &call.operation) else {
            return Err(host_error(
                HostErrorCode::UNSUPPORTED,
                "",
                &format!(
                    "the host offers no operation {:?} on service {:?}",
                    String::from_utf8_lossy(&call.operation),
                    String::from_utf8_lossy(&call.service),
                ),
            ));
        };
        if !matches!(call.encoding, Encoding::JSON | Encoding::POSTCARD) {
            return Err(super::bad_request(format!(
                "{}.{}: unknown encoding {}",
                offering.service, offering.name, call.encoding.0
            )));
        }
        let offered = Offered {
            service: offering.service,
            name: offering.name,
            version: call.version,
            encoding: call.encoding,
            shape: call.shape,
        };
        through_scratch(out, |scratch| {
            operation_into(
                &requester,
                &offered,
                &offering.registered,
                &call.input,
                scratch,
            )
        })
    })
}

extern "C" fn fns_request(
    token: ContextToken,
    raw: &RawRequest<'_>,
    out: &mut RVec<u8>,
) -> HostErrorCode {
    serve_into(token, out, |entry, out| {
        let service = utf8("service name", &raw.service)?;
        let operation = utf8("operation name", &raw.operation)?;
        let answer = request(token, entry, service, operation, &raw.payload)?;
        out.extend_from_copy_slice(&answer);
        Ok(())
    })
}

/// The `context functions` request's answer for a request that came from an isolated
/// plugin's worker: the table's addresses mean nothing in another process.
pub(crate) fn refused_to_workers() -> HostError {
    host_error(
        HostErrorCode::UNSUPPORTED,
        "",
        "an isolated plugin keeps the vtable's slots: the host's function table is not handed \
         to another process",
    )
}

/// What the unit tests call, and the layout they find in the answer.
#[cfg(test)]
pub(super) fn table() -> (
    &'static HostFns,
    &'static abi_stable::type_layout::TypeLayout,
) {
    (&FNS, LAYOUT)
}

#[cfg(test)]
#[path = "fns_tests.rs"]
mod tests;
