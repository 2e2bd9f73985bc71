//! The bodies of the requests a plugin makes of the host (see [`Request`](super::Request) for
//! which request carries which), and of the invocations that carry one the other way (a timer
//! job's run, a config report).

use serde::{Deserialize, Serialize};

/// A scope of a plugin's key/value store that the host understands: a kind (`project`,
/// `run`) and an id. Its keys are apart from the unscoped namespace's and from every other
/// scope's, and the host program can drop a scope across every plugin at once
/// (`Host::drop_scope`). The host checks both parts (bounded, no control characters; the kind
/// is a plain name) and refuses others with `bad_request`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvScope {
    /// What kind of thing the scope belongs to, e.g. `project`.
    pub kind: String,
    /// Which one, e.g. `p-42`.
    pub id: String,
}

/// `kv get`, `kv delete`: one key. Answer: the value or `null`; `true` if a key was deleted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Key {
    /// Any string, NUL bytes included; it never leaves the plugin's namespace.
    pub key: String,
    /// The scope it is in (`ctx.kv().scope(kind, id)`); absent for the plugin's unscoped
    /// namespace. Sent only when set, so a host that predates scopes reads every unscoped
    /// request as before, and refuses a scoped one (`bad_request`: an unknown field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<KvScope>,
}

/// `kv set`: a key and its JSON value. Answer: `null` once the write is durable.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value.
    pub value: serde_json::Value,
    /// The scope it is in (`ctx.kv().scope(kind, id)`); absent for the plugin's unscoped
    /// namespace. Sent only when set, so a host that predates scopes reads every unscoped
    /// request as before, and refuses a scoped one (`bad_request`: an unknown field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<KvScope>,
}

/// `kv keys`: the keys starting with a prefix. Answer: a list of keys, sorted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prefix {
    /// The prefix (empty for every key).
    pub prefix: String,
    /// The scope it is in (`ctx.kv().scope(kind, id)`); absent for the plugin's unscoped
    /// namespace. Sent only when set, so a host that predates scopes reads every unscoped
    /// request as before, and refuses a scoped one (`bad_request`: an unknown field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<KvScope>,
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
    /// The scope it is in (`ctx.kv().scope(kind, id)`); absent for the plugin's unscoped
    /// namespace. Sent only when set, so a host that predates scopes reads every unscoped
    /// request as before, and refuses a scoped one (`bad_request`: an unknown field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<KvScope>,
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
    /// The scope it is in (`ctx.kv().scope(kind, id)`); absent for the plugin's unscoped
    /// namespace. Sent only when set, so a host that predates scopes reads every unscoped
    /// request as before, and refuses a scoped one (`bad_request`: an unknown field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<KvScope>,
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

/// The largest chunk `http stream_next` answers: the body of a stream arrives in pieces of at
/// most this many bytes, however much the server sends at once.
pub const MAX_HTTP_CHUNK: usize = 64 << 10;

/// The answer to `http stream_open`: the last response's head, and the stream its body is read
/// from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpStreamHead {
    /// The stream, for `http stream_next` and `http stream_close`.
    pub stream: u64,
    /// The status code of the last response (after the redirects the host followed).
    pub status: u16,
    /// Its headers, in order.
    pub headers: Vec<(String, String)>,
}

/// `http stream_next`, `http stream_close`: an open stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpStreamId {
    /// What `http stream_open` answered.
    pub stream: u64,
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

/// `plugins call`: an action of another plugin. Answer: its [`Envelope`].
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

/// How another plugin's action answered a plugin's call (`plugins call`), as both sides read
/// and write it: `{"status": "ok", "data": ..}` or `{"status": "error", "data": message}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", content = "data", rename_all = "lowercase")]
pub enum Envelope<T> {
    /// The action's answer.
    Ok(T),
    /// The action's own error message.
    Error(String),
}

impl<T> From<Envelope<T>> for Result<T, String> {
    fn from(envelope: Envelope<T>) -> Self {
        match envelope {
            Envelope::Ok(answer) => Ok(answer),
            Envelope::Error(message) => Err(message),
        }
    }
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
