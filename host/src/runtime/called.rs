//! How a call into a plugin ended, inside the runtime ([`Called`], with the answer or the
//! message in the caller's buffer) and for callers ([`CallError`], the result envelope), and
//! the lookups whose misses are `not_found`.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use airlock_abi::abi::ErrorCode;
use airlock_abi::wire::Envelope;

use crate::error::{CallError, CallErrorCode};

use super::plugin::{Invoked, LoadedPlugin};
use super::shared::HostShared;
use crate::policy::retry::{backoff, unit, RetryPolicy};
use crate::runtime::outcome::ApprovalId;
use crate::runtime::outcome::Reply;
use crate::services::pending::PendingId;

pub(crate) fn fail(plugin: &str, action: &str, code: CallErrorCode, message: String) -> CallError {
    CallError {
        code,
        plugin: plugin.to_owned(),
        action: action.to_owned(),
        message,
    }
}

/// How a call into a plugin ended. The answer (`Answered`) or the message (otherwise) is in
/// the caller's buffer, so the one invoke path returns a value that fits in a register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Called {
    /// The plugin answered.
    Answered,
    /// The plugin's own domain error.
    Domain,
    /// The plugin's own domain error, which it says is worth retrying (`host.dispatch` does).
    Retryable,
    /// The call did not run: it waits for the approver's decision. The buffer holds the
    /// approval's id, then the message ([`pending`]); the variant carries no value, so that
    /// `Called` stays a byte on the hot path.
    Pending,
    /// The action answered pending: its entry is kept, and the buffer holds the entry's id
    /// (32 bytes), then its description ([`deferred`]).
    Deferred,
    /// An infrastructure failure.
    Failed(CallErrorCode),
}

/// Puts `message` in `out` (for a failure the host itself saw) and answers `code`.
#[cold]
pub(crate) fn refuse(
    out: &mut Vec<u8>,
    code: CallErrorCode,
    message: std::fmt::Arguments<'_>,
) -> Called {
    out.clear();
    let _ = std::io::Write::write_fmt(out, message);
    Called::Failed(code)
}

/// Leaves the id of the approval a call waits for, then `message`, in `out`.
#[cold]
pub(crate) fn pending(out: &mut Vec<u8>, id: ApprovalId, message: &str) -> Called {
    out.clear();
    out.extend_from_slice(&id.0.to_le_bytes());
    out.extend_from_slice(message.as_bytes());
    Called::Pending
}

/// The id and the message a call pending approval left in its buffer.
pub(crate) fn pending_parts(out: &[u8]) -> (ApprovalId, &[u8]) {
    let (id, message) = out.split_at(out.len().min(8));
    let id = id.try_into().map_or(0, u64::from_le_bytes);
    (ApprovalId(id), message)
}

/// Leaves the id of a pending answer, then its description, in `out`.
#[cold]
pub(crate) fn deferred(out: &mut Vec<u8>, id: &PendingId, description: &str) -> Called {
    out.clear();
    out.extend_from_slice(id.as_str().as_bytes());
    out.extend_from_slice(description.as_bytes());
    Called::Deferred
}

/// The id and the description of a pending answer, from its buffer.
pub(crate) fn deferred_parts(out: &[u8]) -> (PendingId, String) {
    let (id, description) = out.split_at(out.len().min(32));
    (PendingId::written(message(id)), message(description))
}

/// The message of a call answered pending, for a caller that takes it as a failure.
pub(crate) fn deferred_message(out: &[u8]) -> String {
    let (id, description) = deferred_parts(out);
    pending_message(&id, &description)
}

/// The message of a pending answer `id`, for a caller that takes it as a failure.
pub(crate) fn pending_message(id: &PendingId, description: &str) -> String {
    format!("the action answered pending ({id}): {description}")
}

/// The message a failed call left in its buffer.
pub(crate) fn message(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

impl HostShared {
    /// [`HostShared::call_into`] again on a retryable answer, as `retry` says (with jittered
    /// backoff): what the last attempt said, in `out`, and how many attempts it took. Dispatches
    /// (the program's and a plugin's) and routines retry through this one loop, behind the
    /// action's circuit breaker ([`HostShared::call_retried`]).
    pub(super) fn call_retrying(
        &self,
        plugin: &str,
        action: &str,
        input: &[u8],
        retry: &RetryPolicy,
        out: &mut Vec<u8>,
    ) -> Result<(u32, Called), CallError> {
        let seed = std::collections::hash_map::RandomState::new();
        let mut attempts = 0;
        loop {
            attempts += 1;
            out.clear();
            let called = self.call_into(plugin, action, input, out)?;
            if called != Called::Retryable || attempts > retry.retries || attempts == u32::MAX {
                return Ok((attempts, called));
            }
            let mut hasher = seed.build_hasher();
            hasher.write_u32(attempts);
            std::thread::sleep(backoff(retry, attempts - 1, unit(hasher.finish())));
        }
    }
}

impl Invoked {
    /// The owned form of how a call ended, for the paths that are not hot.
    pub(crate) fn from_called(called: Called, out: Vec<u8>) -> Result<Vec<u8>, Self> {
        match called {
            Called::Answered => Ok(out),
            Called::Domain | Called::Retryable => Err(Invoked::Domain(message(&out))),
            Called::Pending => Err(Invoked::Failed(
                CallErrorCode::PendingApproval,
                message(pending_parts(&out).1),
            )),
            Called::Deferred => Err(Invoked::Failed(
                CallErrorCode::Pending,
                deferred_message(&out),
            )),
            Called::Failed(code) => Err(Invoked::Failed(code, message(&out))),
        }
    }
}

/// How an action answered another plugin, with the answer or message taken from `out`: the
/// envelope it is sent in; a call that waits for approval or failed is the call's error.
#[inline]
pub(super) fn answer(
    plugin: &str,
    action: &str,
    called: Called,
    out: Vec<u8>,
) -> Result<Envelope<Vec<u8>>, CallError> {
    match called {
        Called::Answered => Ok(Envelope::Ok(out)),
        Called::Domain | Called::Retryable => Ok(Envelope::Error(message(&out))),
        Called::Pending => Err(fail(
            plugin,
            action,
            CallErrorCode::PendingApproval,
            message(pending_parts(&out).1),
        )),
        Called::Deferred => Err(fail(
            plugin,
            action,
            CallErrorCode::Pending,
            deferred_message(&out),
        )),
        Called::Failed(code) => Err(fail(plugin, action, code, message(&out))),
    }
}

/// The reply of a call that ended as `called`, with the bytes it answered in `out`.
pub(crate) fn reply_bytes(
    plugin: &str,
    action: &str,
    called: Called,
    out: Vec<u8>,
) -> Result<Reply<Vec<u8>>, CallError> {
    match called {
        Called::Answered => Ok(Reply::Ok(out)),
        Called::Domain | Called::Retryable => Ok(Reply::Error(message(&out))),
        Called::Pending => Ok(Reply::PendingApproval(pending_parts(&out).0)),
        Called::Deferred => {
            let (id, description) = deferred_parts(&out);
            Ok(Reply::Pending { id, description })
        }
        Called::Failed(code) => Err(fail(plugin, action, code, message(&out))),
    }
}

/// The reply of a call that ended as `called`, with the JSON it answered in `out` decoded.
pub(crate) fn envelope(
    plugin: &str,
    action: &str,
    called: Called,
    out: Vec<u8>,
) -> Result<Reply, CallError> {
    match reply_bytes(plugin, action, called, out)? {
        Reply::Ok(bytes) => airlock_abi::wire::parse(&bytes)
            .map(Reply::Ok)
            .map_err(|e| {
                fail(
                    plugin,
                    action,
                    CallErrorCode::HandlerError,
                    format!("the plugin answered with invalid JSON: {e}"),
                )
            }),
        Reply::Error(message) => Ok(Reply::Error(message)),
        Reply::PendingApproval(id) => Ok(Reply::PendingApproval(id)),
        Reply::Pending { id, description } => Ok(Reply::Pending { id, description }),
    }
}

/// The plugin `plugin` in `plugins` (the newest with that id) and the index of `action` in its
/// manifest; `not_found` otherwise.
pub(crate) fn lookup<'a>(
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
pub(crate) fn not_loaded(plugin: &str, what: &str) -> CallError {
    fail(
        plugin,
        what,
        CallErrorCode::NotFound,
        format!("no plugin {plugin:?} is loaded"),
    )
}

/// `not_found` for an action the plugin does not have, listing the ones it has.
pub(crate) fn no_such_action(loaded: &LoadedPlugin, action: &str) -> CallError {
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

pub(crate) fn plugin_error_code(code: ErrorCode) -> CallErrorCode {
    match code {
        ErrorCode::BAD_INPUT => CallErrorCode::BadInput,
        ErrorCode::NOT_FOUND => CallErrorCode::NotFound,
        ErrorCode::PANICKED => CallErrorCode::Panicked,
        ErrorCode::CAPABILITY_VIOLATION => CallErrorCode::CapabilityViolation,
        ErrorCode::REVOKED => CallErrorCode::Revoked,
        // A kind of invocation the plugin does not know (it was built before the kind was):
        // it serves nothing by that name.
        ErrorCode::UNSUPPORTED => CallErrorCode::NotFound,
        _ => CallErrorCode::HandlerError,
    }
}

/// An action's input that does not fit its schema: refused `bad_input` before the plugin
/// sees it (off the hot path: only plugins whose manifest has schemas come here).
#[cold]
#[inline(never)]
pub(crate) fn misfit(
    plugin: &LoadedPlugin,
    index: u32,
    name: &str,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Option<Called> {
    let detail = plugin
        .schemas
        .as_ref()?
        .check_input(index as usize, payload)
        .err()?;
    Some(refuse(
        out,
        CallErrorCode::BadInput,
        format_args!("{}.{name}: {detail}", plugin.id()),
    ))
}

/// The refusal of a call to a quarantined plugin.
#[cold]
pub(crate) fn quarantined(plugin: &LoadedPlugin, out: &mut Vec<u8>) -> Called {
    let id = plugin.id();
    refuse(
        out,
        CallErrorCode::Quarantined,
        format_args!(
            "plugin {id} is quarantined after repeated faults; an operator must enable it again"
        ),
    )
}

/// The refusal of a call to a plugin with no running instance.
#[cold]
pub(crate) fn not_running(plugin: &LoadedPlugin, out: &mut Vec<u8>) -> Called {
    refuse(
        out,
        CallErrorCode::Revoked,
        format_args!("plugin {} is {}", plugin.id(), plugin.state.get()),
    )
}
