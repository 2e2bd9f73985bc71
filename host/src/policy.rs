//! The operator's policy: per plugin id, whether it is enabled, its hash pins, the
//! capabilities granted to it, its config and its shutdown deadline. Written as TOML (or JSON);
//! unknown keys are errors, reported with their location.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use airlock_abi::manifest::{Capability, PluginId};
use serde::Deserialize;

use crate::error::Error;
use crate::library_file::parse_digest;
use crate::permission::{PermissionRule, RawRule};
use crate::retry::{RetryPolicy, DEFAULT_RETRY};

/// The shutdown deadline used when the policy sets none.
pub const DEFAULT_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);
/// The init deadline used when the policy sets none.
pub const DEFAULT_INIT_DEADLINE: Duration = Duration::from_secs(10);
/// How long one call into a plugin may take before it counts as a fault (`timeout`).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Faults (panics, timeouts) within [`DEFAULT_QUARANTINE_WINDOW`] that quarantine a plugin.
pub const DEFAULT_QUARANTINE_FAULTS: u32 = 5;
/// The window in which faults are counted.
pub const DEFAULT_QUARANTINE_WINDOW: Duration = Duration::from_secs(60);
/// How often the host polls each plugin's health.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(10);
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    host: RawHost,
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    plugins: BTreeMap<String, RawPluginPolicy>,
    #[serde(default)]
    secrets: BTreeMap<String, RawSecret>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    data_dir: Option<PathBuf>,
    audit_log: Option<PathBuf>,
    lock: Option<PathBuf>,
    max_retained: Option<usize>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawSecret {
    Value(String),
    Env { env: String },
}

impl std::fmt::Debug for RawSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Value(_) => f.write_str("Value(<redacted>)"),
            Self::Env { env } => f.debug_struct("Env").field("env", env).finish(),
        }
    }
}

/// Where a secret's value comes from. Its `Debug` never shows a value.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Written in the policy.
    Value(String),
    /// Read from this environment variable when the plugin asks.
    Env(String),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Value(_) => f.write_str("Value(<redacted>)"),
            Self::Env(var) => write!(f, "Env({var})"),
        }
    }
}

/// Host-wide settings from the policy's `[host]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostSettings {
    /// Where the key/value store lives (`kv.redb`); without it there is no `kv` service.
    pub data_dir: Option<PathBuf>,
    /// Where audit records are appended as JSON lines.
    pub audit_log: Option<PathBuf>,
    /// A lock file written by `airlock lock`: only the libraries it pins may load.
    pub lock: Option<PathBuf>,
    /// Warn when more libraries than this are retained (loaded and never unloaded).
    pub max_retained: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    shutdown_deadline_ms: Option<u64>,
    init_deadline_ms: Option<u64>,
    call_timeout_ms: Option<u64>,
    quarantine_faults: Option<u32>,
    quarantine_window_ms: Option<u64>,
    health_interval_ms: Option<u64>,
    dispatch_retries: Option<u32>,
    dispatch_backoff_ms: Option<u64>,
    dispatch_backoff_max_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPluginPolicy {
    enabled: Option<bool>,
    blake3: Option<String>,
    sha256: Option<String>,
    #[serde(default)]
    grants: Vec<String>,
    config: Option<serde_json::Value>,
    shutdown_deadline_ms: Option<u64>,
    init_deadline_ms: Option<u64>,
    call_timeout_ms: Option<u64>,
    quarantine_faults: Option<u32>,
    quarantine_window_ms: Option<u64>,
    priority: Option<i32>,
    #[serde(default)]
    permissions: Vec<RawRule>,
    dispatch_retries: Option<u32>,
    dispatch_backoff_ms: Option<u64>,
    dispatch_backoff_max_ms: Option<u64>,
}

/// What the operator decided for one plugin id.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginPolicy {
    /// If false the plugin is refused (`disabled`).
    pub enabled: bool,
    /// If set, the library's BLAKE3 (its identity) must equal it (`hash_mismatch`).
    pub blake3: Option<String>,
    /// If set, the library's SHA-256 must equal it (`hash_mismatch`); computed only for files
    /// pinned this way.
    pub sha256: Option<String>,
    /// Capabilities granted; effective = declared ∩ granted.
    pub grants: Vec<Capability>,
    /// The plugin's config, handed to it as JSON.
    pub config: serde_json::Value,
    /// How long teardown may take before the plugin is abandoned.
    pub shutdown_deadline: Duration,
    /// How long creation may take before the plugin is refused (`init_timeout`).
    pub init_deadline: Duration,
    /// How long one call may take before it counts as a fault and answers `timeout`.
    pub call_timeout: Duration,
    /// Faults within `quarantine_window` that quarantine the plugin (0: never).
    pub quarantine_faults: u32,
    /// The window faults are counted in.
    pub quarantine_window: Duration,
    /// Order in hooks: lower runs first; ties keep load order.
    pub priority: i32,
    /// Which callers may invoke which of its actions and hooks ([`crate::permission`]).
    pub permissions: Vec<PermissionRule>,
    /// How `host.dispatch` retries its retryable failures, when it holds a claim.
    pub retry: RetryPolicy,
}

/// The operator's policy for every plugin; plugins it does not name get the defaults (enabled,
/// no grants, empty config).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    source: Option<PathBuf>,
    host: HostSettings,
    defaults: PluginPolicy,
    plugins: BTreeMap<PluginId, PluginPolicy>,
    secrets: BTreeMap<String, SecretSource>,
    health_interval: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            source: None,
            host: HostSettings::default(),
            secrets: BTreeMap::new(),
            defaults: PluginPolicy {
                enabled: true,
                blake3: None,
                sha256: None,
                grants: Vec::new(),
                config: serde_json::Value::Object(serde_json::Map::new()),
                shutdown_deadline: DEFAULT_SHUTDOWN_DEADLINE,
                init_deadline: DEFAULT_INIT_DEADLINE,
                call_timeout: DEFAULT_CALL_TIMEOUT,
                quarantine_faults: DEFAULT_QUARANTINE_FAULTS,
                quarantine_window: DEFAULT_QUARANTINE_WINDOW,
                priority: 0,
                permissions: Vec::new(),
                retry: DEFAULT_RETRY,
            },
            health_interval: DEFAULT_HEALTH_INTERVAL,
            plugins: BTreeMap::new(),
        }
    }
}

impl Policy {
    /// Reads a policy file: JSON if it ends in `.json`, TOML otherwise.
    ///
    /// # Errors
    ///
    /// [`Error::PolicyRead`] if it cannot be read; [`Error::PolicyInvalid`] naming the key and
    /// location of the first problem.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::PolicyRead {
            path: path.to_owned(),
            source,
        })?;
        let json = path.extension().is_some_and(|e| e == "json");
        let mut policy = Self::parse(&text, json).map_err(|message| Error::PolicyInvalid {
            path: path.to_owned(),
            message,
        })?;
        policy.source = Some(path.to_owned());
        // Relative paths in [host] are relative to the policy file's directory.
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        for p in [
            &mut policy.host.data_dir,
            &mut policy.host.audit_log,
            &mut policy.host.lock,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(policy)
    }

    /// Parses policy text (TOML, or JSON when `json`).
    ///
    /// # Errors
    ///
    /// A message naming the key and location of the first problem.
    pub fn parse(text: &str, json: bool) -> Result<Self, String> {
        let raw: RawPolicy = if json {
            serde_json::from_str(text).map_err(|e| e.to_string())?
        } else {
            toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())?
        };
        let mut policy = Self {
            host: HostSettings {
                data_dir: raw.host.data_dir,
                audit_log: raw.host.audit_log,
                lock: raw.host.lock,
                max_retained: raw.host.max_retained,
            },
            ..Self::default()
        };
        for (name, secret) in raw.secrets {
            let source = match secret {
                RawSecret::Value(v) => SecretSource::Value(v),
                RawSecret::Env { env } => SecretSource::Env(env),
            };
            policy.secrets.insert(name, source);
        }
        if let Some(ms) = raw.defaults.shutdown_deadline_ms {
            policy.defaults.shutdown_deadline = Duration::from_millis(ms);
        }
        if let Some(ms) = raw.defaults.init_deadline_ms {
            policy.defaults.init_deadline = Duration::from_millis(ms);
        }
        if let Some(ms) = raw.defaults.call_timeout_ms {
            policy.defaults.call_timeout = Duration::from_millis(ms);
        }
        if let Some(n) = raw.defaults.quarantine_faults {
            policy.defaults.quarantine_faults = n;
        }
        if let Some(ms) = raw.defaults.quarantine_window_ms {
            policy.defaults.quarantine_window = Duration::from_millis(ms);
        }
        if let Some(ms) = raw.defaults.health_interval_ms {
            policy.health_interval = Duration::from_millis(ms.max(1));
        }
        policy.defaults.retry = policy.defaults.retry.with(
            raw.defaults.dispatch_retries,
            raw.defaults.dispatch_backoff_ms,
            raw.defaults.dispatch_backoff_max_ms,
        );
        for (id, entry) in raw.plugins {
            let plugin_id = PluginId::new(&id).map_err(|e| format!("[plugins.{id}]: {e}"))?;
            let pin = |key: &str, value: Option<String>| match value {
                Some(pin) => parse_digest(&pin).map(Some).ok_or_else(|| {
                    format!("[plugins.{id}] {key}: expected 64 hex digits, found {pin:?}")
                }),
                None => Ok(None),
            };
            let blake3 = pin("blake3", entry.blake3)?;
            let sha256 = pin("sha256", entry.sha256)?;
            let grants = entry
                .grants
                .iter()
                .map(|g| {
                    let cap = Capability::parse(g).map_err(|e| format!("[plugins.{id}] grants: {e}"))?;
                    if cap.kind().is_reserved() {
                        return Err(format!(
                            "[plugins.{id}] grants: {cap} is reserved to the host's own code and cannot be granted to a plugin library"
                        ));
                    }
                    Ok(cap)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let permissions = entry
                .permissions
                .into_iter()
                .enumerate()
                .map(|(n, rule)| {
                    PermissionRule::from_raw(rule, &format!("[plugins.{id}] permissions[{n}]"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let config = match entry.config {
                None => policy.defaults.config.clone(),
                Some(value @ serde_json::Value::Object(_)) => value,
                Some(_) => return Err(format!("[plugins.{id}] config: expected a table")),
            };
            policy.plugins.insert(
                plugin_id,
                PluginPolicy {
                    enabled: entry.enabled.unwrap_or(true),
                    blake3,
                    sha256,
                    grants,
                    config,
                    shutdown_deadline: entry
                        .shutdown_deadline_ms
                        .map_or(policy.defaults.shutdown_deadline, Duration::from_millis),
                    init_deadline: entry
                        .init_deadline_ms
                        .map_or(policy.defaults.init_deadline, Duration::from_millis),
                    call_timeout: entry
                        .call_timeout_ms
                        .map_or(policy.defaults.call_timeout, Duration::from_millis),
                    quarantine_faults: entry
                        .quarantine_faults
                        .unwrap_or(policy.defaults.quarantine_faults),
                    quarantine_window: entry
                        .quarantine_window_ms
                        .map_or(policy.defaults.quarantine_window, Duration::from_millis),
                    priority: entry.priority.unwrap_or(0),
                    permissions,
                    retry: policy.defaults.retry.with(
                        entry.dispatch_retries,
                        entry.dispatch_backoff_ms,
                        entry.dispatch_backoff_max_ms,
                    ),
                },
            );
        }
        Ok(policy)
    }

    /// The file this policy was read from, if any.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// The decision for `id` (the defaults when the policy does not name it).
    pub fn for_plugin(&self, id: &PluginId) -> &PluginPolicy {
        self.plugins.get(id).unwrap_or(&self.defaults)
    }

    /// Sets the entry for one plugin (for programs that build their policy in code).
    pub fn set(&mut self, id: PluginId, entry: PluginPolicy) {
        self.plugins.insert(id, entry);
    }

    /// The entry used for plugins the policy does not name.
    pub fn defaults(&self) -> &PluginPolicy {
        &self.defaults
    }

    /// How often the host polls each plugin's health.
    pub fn health_interval(&self) -> Duration {
        self.health_interval
    }

    /// Host-wide settings.
    pub fn host(&self) -> &HostSettings {
        &self.host
    }

    /// Changes host-wide settings (for programs that build their policy in code).
    pub fn host_mut(&mut self) -> &mut HostSettings {
        &mut self.host
    }

    /// Provides a secret (for programs that build their policy in code).
    pub fn set_secret(&mut self, name: &str, source: SecretSource) {
        self.secrets.insert(name.to_owned(), source);
    }

    /// The value of the secret `name`.
    ///
    /// # Errors
    ///
    /// Why it is not available (not in the policy, or its environment variable is unset); the
    /// message never contains a value.
    pub fn secret(&self, name: &str) -> Result<String, String> {
        match self.secrets.get(name) {
            Some(SecretSource::Value(v)) => Ok(v.clone()),
            Some(SecretSource::Env(var)) => {
                std::env::var(var).map_err(|_| format!("the environment variable {var} is not set"))
            }
            None => Err("the policy's [secrets] table does not provide it".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_policy() {
        let policy = Policy::parse(
            r#"
            [defaults]
            shutdown_deadline_ms = 250

            [plugins.hello]
            grants = ["kv", "events.publish:demo.*"]
            shutdown_deadline_ms = 100
            [plugins.hello.config]
            greeting = "Hi"

            [plugins.counter]
            enabled = false
            "#,
            false,
        )
        .expect("valid");
        let hello = policy.for_plugin(&PluginId::new("hello").expect("id"));
        assert_eq!(hello.grants.len(), 2);
        assert_eq!(hello.config["greeting"], "Hi");
        assert_eq!(hello.shutdown_deadline, Duration::from_millis(100));
        let counter = policy.for_plugin(&PluginId::new("counter").expect("id"));
        assert!(!counter.enabled);
        assert_eq!(counter.shutdown_deadline, Duration::from_millis(250));
        let other = policy.for_plugin(&PluginId::new("other").expect("id"));
        assert!(other.enabled && other.grants.is_empty());
    }

    #[test]
    fn unknown_keys_are_errors_with_a_location() {
        let err = Policy::parse("[plugins.hello]\nenabeld = true\n", false).expect_err("refused");
        assert!(err.contains("enabeld"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        let err = Policy::parse("[plugin.hello]\n", false).expect_err("refused");
        assert!(err.contains("plugin"), "{err}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = Policy::parse("[plugins.hello]\nsha256 = \"abc\"\n", false).expect_err("refused");
        assert!(err.contains("sha256"), "{err}");
        let err = Policy::parse("[plugins.hello]\nblake3 = \"abc\"\n", false).expect_err("refused");
        assert!(
            err.contains("blake3") && err.contains("64 hex digits"),
            "{err}"
        );
        let err = Policy::parse("[plugins.hello]\ngrants = [\"teleport\"]\n", false)
            .expect_err("refused");
        assert!(err.contains("teleport"), "{err}");
        let err = Policy::parse("[plugins.Hello]\n", false).expect_err("refused");
        assert!(err.contains("lower-case"), "{err}");
    }

    #[test]
    fn pins_of_either_hash_are_read_as_lower_case_hex() {
        let text = format!(
            "[plugins.hello]\nblake3 = \"{}\"\nsha256 = \"{}\"\n",
            "AB".repeat(32),
            "0c".repeat(32)
        );
        let policy = Policy::parse(&text, false).expect("valid");
        let hello = policy.for_plugin(&PluginId::new("hello").expect("id"));
        assert_eq!(hello.blake3.as_deref(), Some("ab".repeat(32).as_str()));
        assert_eq!(hello.sha256.as_deref(), Some("0c".repeat(32).as_str()));
    }

    #[test]
    fn host_settings_and_secrets() {
        let policy = Policy::parse(
            "[host]\ndata_dir = \"data\"\naudit_log = \"audit.jsonl\"\n[secrets]\ntoken = \"s3cret\"\nfrom_env = { env = \"AIRLOCK_TEST_UNSET_VARIABLE\" }\n",
            false,
        )
        .expect("valid");
        assert_eq!(policy.host().data_dir.as_deref(), Some(Path::new("data")));
        assert_eq!(policy.secret("token").as_deref(), Ok("s3cret"));
        let err = policy.secret("from_env").expect_err("unset");
        assert!(err.contains("AIRLOCK_TEST_UNSET_VARIABLE") && !err.contains("s3cret"));
        assert!(
            !format!("{policy:?}").contains("s3cret"),
            "Debug must not show secrets"
        );
    }

    #[test]
    fn reserved_capabilities_cannot_be_granted() {
        let err = Policy::parse("[plugins.a]\ngrants = [\"host.control\"]\n", false)
            .expect_err("refused");
        assert!(err.contains("reserved"), "{err}");
    }

    #[test]
    fn json_policies_parse_too() {
        let policy =
            Policy::parse(r#"{"plugins":{"hello":{"enabled":false}}}"#, true).expect("valid");
        assert!(
            !policy
                .for_plugin(&PluginId::new("hello").expect("id"))
                .enabled
        );
        assert!(Policy::parse(r#"{"plugins":{"hello":{"x":1}}}"#, true).is_err());
    }
}
