//! The payloads of host service requests ([`crate::HostVtable::request`]): one service name, one
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

/// Service names, one per capability family.
pub mod service {
    /// The plugin's key/value namespace (`kv`).
    pub const KV: &str = "kv";
    /// Event topics (`events.publish:<glob>`, `events.subscribe:<glob>`).
    pub const EVENTS: &str = "events";
    /// Interval jobs (`timers`).
    pub const TIMERS: &str = "timers";
    /// Operator-provided secrets (`secrets:<name>`).
    pub const SECRETS: &str = "secrets";
    /// Actions of other plugins (`plugins.call:<id>`).
    pub const PLUGINS: &str = "plugins";
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
