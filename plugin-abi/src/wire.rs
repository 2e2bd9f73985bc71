//! The payloads of host service requests ([`crate::abi::HostVtable::request`]): one service name, one
//! operation name and a JSON body each. Shared by the plugin-side wrappers and the host, so the
//! two cannot drift apart.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Parses the JSON of an answer or an input: empty bytes are `null` (an action that returns
/// `()` answers nothing, and a caller may send nothing to an action that takes `()`).
///
/// # Errors
///
/// The bytes are not JSON of type `T`.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
    serde_json::from_slice(if bytes.is_empty() { b"null" } else { bytes })
}

/// Every request a plugin makes of the host through [`crate::abi::HostVtable::request`]. Its
/// service and operation names are spelled here and nowhere else: the plugin-side wrappers, the
/// host's membrane match on this type, and a name that is not one of
/// these is answered `UNSUPPORTED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Request {
    /// `kv get` ([`Key`]): capability `kv`.
    KvGet,
    /// `kv set` ([`KeyValue`]): capability `kv`.
    KvSet,
    /// `kv delete` ([`Key`]): capability `kv`.
    KvDelete,
    /// `kv keys` ([`Prefix`]): capability `kv`.
    KvKeys,
    /// `kv entry` ([`Key`]): a value with its version; capability `kv`.
    KvEntry,
    /// `kv list` ([`Prefix`]): the entries under a prefix; capability `kv`.
    KvList,
    /// `kv compare_and_set` ([`CompareAndSet`]): capability `kv`.
    KvCompareAndSet,
    /// `kv write` ([`Writes`]): several writes, all or none; capability `kv`.
    KvWrite,
    /// `events publish` ([`Publish`]): capability `events.publish:<topic>`.
    EventsPublish,
    /// `events subscribe` ([`Pattern`]): capability `events.subscribe:<pattern>`.
    EventsSubscribe,
    /// `events unsubscribe` ([`Pattern`]): capability `events.subscribe:<pattern>`.
    EventsUnsubscribe,
    /// `timers every` ([`Every`]): capability `timers`.
    TimersEvery,
    /// `timers cancel` ([`Name`]): capability `timers`.
    TimersCancel,
    /// `timers cron` ([`CronJob`]): capability `timers`.
    TimersCron,
    /// `secrets get` ([`Name`]): capability `secrets:<name>`.
    SecretsGet,
    /// `plugins call` ([`Call`]): capability `plugins.call:<id>`.
    PluginsCall,
    /// `http request` ([`HttpHead`] and the body, [`frame`]d): capability
    /// `http.outbound:<host>`.
    HttpRequest,
    /// `log write` ([`LogLine`]): a log line with fields; no capability.
    LogWrite,
    /// `reload handover` (no body): the state the previous generation handed over; no
    /// capability.
    Handover,
    /// `context caller` (no body): who asked for the call the plugin is serving now
    /// ([`CallerInfo`]); no capability.
    ContextCaller,
    /// `context cancelled` (no body): whether the call the plugin is serving was cancelled
    /// (`true`/`false`); no capability.
    ContextCancelled,
    /// `stream emit` (a [`CHUNK_JSON`] or [`CHUNK_BYTES`] byte, then the chunk): a partial
    /// result of the call being served, for a caller taking it as a stream (`true`; `false`
    /// when the call is not streamed and the chunk was discarded); no capability.
    StreamEmit,
}

/// The first byte of a [`Request::StreamEmit`] body whose chunk is JSON.
pub const CHUNK_JSON: u8 = 0;
/// The first byte of a [`Request::StreamEmit`] body whose chunk is bytes.
pub const CHUNK_BYTES: u8 = 1;

impl Request {
    /// Every request, for tables and tests.
    pub const ALL: [Self; 22] = [
        Self::KvGet,
        Self::KvSet,
        Self::KvDelete,
        Self::KvKeys,
        Self::KvEntry,
        Self::KvList,
        Self::KvCompareAndSet,
        Self::KvWrite,
        Self::EventsPublish,
        Self::EventsSubscribe,
        Self::EventsUnsubscribe,
        Self::TimersEvery,
        Self::TimersCancel,
        Self::TimersCron,
        Self::SecretsGet,
        Self::PluginsCall,
        Self::HttpRequest,
        Self::LogWrite,
        Self::Handover,
        Self::ContextCaller,
        Self::ContextCancelled,
        Self::StreamEmit,
    ];

    /// The service name on the wire.
    pub const fn service(self) -> &'static str {
        match self {
            Self::KvGet
            | Self::KvSet
            | Self::KvDelete
            | Self::KvKeys
            | Self::KvEntry
            | Self::KvList
            | Self::KvCompareAndSet
            | Self::KvWrite => "kv",
            Self::EventsPublish | Self::EventsSubscribe | Self::EventsUnsubscribe => "events",
            Self::TimersEvery | Self::TimersCancel | Self::TimersCron => "timers",
            Self::SecretsGet => "secrets",
            Self::PluginsCall => "plugins",
            Self::HttpRequest => "http",
            Self::LogWrite => "log",
            Self::Handover => "reload",
            Self::ContextCaller | Self::ContextCancelled => "context",
            Self::StreamEmit => "stream",
        }
    }

    /// The operation name on the wire.
    pub const fn operation(self) -> &'static str {
        match self {
            Self::KvGet | Self::SecretsGet => "get",
            Self::KvSet => "set",
            Self::KvDelete => "delete",
            Self::KvKeys => "keys",
            Self::KvEntry => "entry",
            Self::KvList => "list",
            Self::KvCompareAndSet => "compare_and_set",
            Self::KvWrite => "write",
            Self::EventsPublish => "publish",
            Self::EventsSubscribe => "subscribe",
            Self::EventsUnsubscribe => "unsubscribe",
            Self::TimersEvery => "every",
            Self::TimersCancel => "cancel",
            Self::TimersCron => "cron",
            Self::PluginsCall => "call",
            Self::HttpRequest => "request",
            Self::LogWrite => "write",
            Self::Handover => "handover",
            Self::ContextCaller => "caller",
            Self::ContextCancelled => "cancelled",
            Self::StreamEmit => "emit",
        }
    }

    /// The request with these names, if there is one.
    pub fn parse(service: &str, operation: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|r| r.service() == service && r.operation() == operation)
    }
}

/// Who asked for the call a plugin is serving: what `ctx.caller()` answers, and what the host
/// passes on to a service of the embedding program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallerInfo {
    /// The host program, on behalf of `principal` when it named one
    /// (`host.as_principal(..).call(..)`).
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
}

impl CallErrorCode {
    /// Every code.
    pub const ALL: [Self; 15] = [
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
        }
    }
}

impl std::fmt::Display for CallErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// `kv get`, `kv delete`: one key. Answer: the value or `null`; `true` if a key was deleted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Key {
    /// Any string, NUL bytes included; it never leaves the plugin's namespace.
    pub key: String,
}

/// `kv set`: a key and its JSON value. Answer: `null` once the write is durable.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value.
    pub value: serde_json::Value,
}

/// `kv keys`: the keys starting with a prefix. Answer: a list of keys, sorted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prefix {
    /// The prefix (empty for every key).
    pub prefix: String,
}

/// A stored value and its version: what `kv entry` answers (or `null`), and each item of
/// `kv list`'s answer (with its key). A version is never reused within a plugin's namespace: a
/// key deleted and written again has a new one, so a version read earlier matches only the
/// very write it was read from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvEntry<T = serde_json::Value> {
    /// The key (empty in `kv entry`'s answer, which is for the key asked).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    /// The value.
    pub value: T,
    /// Its version.
    pub version: u64,
}

/// What a compare-and-set expects to find before it writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expected {
    /// The key is not set.
    Absent,
    /// The key holds the value of this version.
    Version(u64),
    /// The key holds this value (compared as JSON values).
    Value(serde_json::Value),
}

/// `kv compare_and_set`: writes `value` to `key` only if it holds what is `expected`.
/// Answer: a [`Swapped`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareAndSet {
    /// The key.
    pub key: String,
    /// What the key must hold for the write to happen.
    pub expected: Expected,
    /// The new value.
    pub value: serde_json::Value,
}

/// How a compare-and-set went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Swapped {
    /// Whether the value was written (durable when this is answered).
    pub written: bool,
    /// The key's version now: the new one if written, else the one found (0: not set).
    pub version: u64,
}

/// One write of a [`Writes`] batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Write {
    /// Sets a key.
    Set {
        /// The key.
        key: String,
        /// Its value.
        value: serde_json::Value,
    },
    /// Removes a key (nothing if it is not set).
    Delete {
        /// The key.
        key: String,
    },
}

/// `kv write`: writes made together, all or none. Answer: the version they share.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Writes {
    /// The writes, in order (a later write to the same key wins).
    pub writes: Vec<Write>,
}

/// `events publish`: a topic and a payload. Answer: the number of subscriptions it went to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publish {
    /// The topic, e.g. `demo.tick`.
    pub topic: String,
    /// The payload.
    pub payload: serde_json::Value,
}

/// `events subscribe`, `events unsubscribe`: a topic pattern (`*` matches any run of
/// characters). Answer: `null`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pattern {
    /// The pattern.
    pub pattern: String,
}

/// `timers every`: run the job `name` with `interval_ms` between the end of one run and the
/// start of the next. Answer: `null`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Every {
    /// The job's name, passed back to `Plugin::on_timer`.
    pub name: String,
    /// The gap between runs, in milliseconds (at least 1).
    pub interval_ms: u64,
}

/// A JSON head and a body of bytes in one payload: the head's length (4 bytes, little-endian),
/// the head, then the body as it is (`http request` and its answer: bodies are bytes, and are
/// not encoded).
///
/// # Errors
///
/// The head cannot be encoded.
pub fn frame(head: &impl Serialize, body: &[u8]) -> serde_json::Result<Vec<u8>> {
    let head = serde_json::to_vec(head)?;
    let len = u32::try_from(head.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(4 + head.len() + body.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(body);
    Ok(out)
}

/// The head and the body of a [`frame`]d payload.
///
/// # Errors
///
/// The payload is cut short or its head is not JSON of type `T`.
pub fn unframe<T: DeserializeOwned>(payload: &[u8]) -> Result<(T, &[u8]), String> {
    let (len, rest) = payload
        .split_first_chunk::<4>()
        .ok_or("the payload has no head")?;
    let len = u32::from_le_bytes(*len) as usize;
    if len > rest.len() {
        return Err("the payload's head is cut short".to_owned());
    }
    let (head, body) = rest.split_at(len);
    let head = serde_json::from_slice(head).map_err(|e| format!("the payload's head: {e}"))?;
    Ok((head, body))
}

/// `http request`: what to send (the body follows in the frame).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpHead {
    /// `GET`, `POST`, …
    pub method: String,
    /// An absolute `https://` (or, where the policy allows, `http://`) URL.
    pub url: String,
    /// Header names and values, in order.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// A credential the host attaches for the plugin (capability `secrets:<name>`), to the
    /// hosts the operator named for it; the plugin never sees its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// The answer to `http request` (the body follows in the frame).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpAnswer {
    /// The status code of the last response (after the redirects the host followed).
    pub status: u16,
    /// Its headers, in order.
    pub headers: Vec<(String, String)>,
}

/// The most fields one log line carries.
pub const MAX_LOG_FIELDS: usize = 16;

/// `log write`: a log line with structured fields, which the host emits as one `tracing` event
/// with those fields on the plugin's span. Answer: `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogLine {
    /// The level (a `LogLevel`'s value: 1 error … 5 trace).
    pub level: u8,
    /// The message.
    pub message: String,
    /// The fields, in order: names of `a-z A-Z 0-9 _ .` (at most 64 characters, not
    /// `message`), at most [`MAX_LOG_FIELDS`] of them.
    pub fields: Vec<(String, serde_json::Value)>,
}

/// `timers cron`: run the job `name` when the 5-field cron `expression` matches, in UTC
/// (minute, hour, day of month, month, day of week). Answer: `null`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CronJob {
    /// The job's name, passed back to `Plugin::on_job`.
    pub name: String,
    /// The schedule, e.g. `*/15 * * * *`.
    pub expression: String,
}

/// What the host says of one run of a timer job (the payload of a `TIMER` invocation; the
/// job's name is the invocation's name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The run's id: every run a host starts has its own, increasing.
    pub run: u64,
    /// When the run was due, in milliseconds since the Unix epoch (UTC): the cron match, the
    /// end of the interval, or the moment of a manual trigger.
    pub scheduled_ms: i64,
    /// Whether the host program (or the operator) started it by hand.
    #[serde(default)]
    pub manual: bool,
}

/// `timers cancel`, `secrets get`: a name. Answer: `true` if a job was cancelled; the secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Name {
    /// The name.
    pub name: String,
}

/// `plugins call`: an action of another plugin. Answer: the result envelope
/// `{"status": "ok", "data": ...}` or `{"status": "error", "data": message}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Call {
    /// The plugin called.
    pub plugin: String,
    /// Its action.
    pub action: String,
    /// The input.
    pub input: serde_json::Value,
}

/// A plugin's verdict on a config, from `Plugin::validate_config`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigReport {
    /// Problems that refuse the config.
    #[serde(default)]
    pub errors: Vec<String>,
    /// Problems worth showing that do not refuse it.
    #[serde(default)]
    pub warnings: Vec<String>,
}

impl ConfigReport {
    /// Whether the config is accepted.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::HostErrorCode;

    #[test]
    fn every_request_has_its_own_names_and_parses_back() {
        let mut seen = std::collections::BTreeSet::new();
        for request in Request::ALL {
            assert!(
                seen.insert((request.service(), request.operation())),
                "{request:?} shares its names"
            );
            assert_eq!(
                Request::parse(request.service(), request.operation()),
                Some(request)
            );
        }
        assert_eq!(Request::parse("kv", "drop"), None);
    }

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
