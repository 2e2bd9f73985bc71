//! The operator's policy: per plugin id, whether it is enabled, its hash pins, the
//! capabilities granted to it, its config and its shutdown deadline. Written as TOML (or JSON);
//! unknown keys are errors, reported with their location.

pub(crate) mod permission;
pub(crate) mod retry;
pub(crate) mod routines;
pub(crate) mod sources;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use airlock_abi::manifest::{Capability, PluginId};

use crate::error::Error;

mod breaker;
mod client_cert;
mod credential;
mod format;
mod host;
mod http;
mod isolation;
mod json;
mod kv;
mod lines;
mod lint;
mod parse;
pub(crate) mod reference;
mod secret;
mod trust;

pub use breaker::{BreakerPolicy, DEFAULT_BREAKER};
pub use client_cert::ClientCertificate;
pub use credential::{Credential, CredentialHost};
pub use format::PolicyFormat;
pub use host::HostSettings;
pub use http::{HttpPolicy, IpRange};
pub use isolation::{
    Isolation, RestartPolicy, Sandbox, WorkerLimits, DEFAULT_LIMITS, DEFAULT_RESTART,
};
pub use lint::{authority_warning, AuthorityWarning, WideGrant};
pub use permission::declared::with_declared;
pub use permission::{
    decide, explain, CallerPattern, Decided, InputCheck, InputMatch, Permission, PermissionRule,
    RuleCheck, RuleOrigin, Target,
};
pub use retry::{RetryPolicy, DEFAULT_RETRY};
pub use routines::{Routine, MAX_ROUTINES};
pub use secret::Unreadable;
pub use sources::{Channel, Source, DEFAULT_SOURCE_INTERVAL, MAX_SOURCES};
pub use trust::SignaturePolicy;

/// The shutdown deadline used when the policy sets none.
pub const DEFAULT_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);
/// The init deadline used when the policy sets none.
pub const DEFAULT_INIT_DEADLINE: Duration = Duration::from_secs(10);
/// How long one call into a plugin may take before it counts as a fault (`timeout`).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a call told it is cancelled at its timeout has to stop before it counts as a fault.
pub const DEFAULT_CANCEL_GRACE: Duration = Duration::from_millis(100);
/// Faults (panics, timeouts) within [`DEFAULT_QUARANTINE_WINDOW`] that quarantine a plugin.
pub const DEFAULT_QUARANTINE_FAULTS: u32 = 5;
/// The window in which faults are counted.
pub const DEFAULT_QUARANTINE_WINDOW: Duration = Duration::from_secs(60);
/// How often the host polls each plugin's health.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(10);

/// Where a secret's value comes from. Its `Debug` never shows a value.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Written in the policy.
    Value(String),
    /// Read from this environment variable when the plugin asks.
    Env(String),
}

impl SecretSource {
    /// The value.
    ///
    /// # Errors
    ///
    /// Its environment variable is unset (the message names the variable, not a value).
    pub fn read(&self) -> Result<String, String> {
        match self {
            Self::Value(v) => Ok(v.clone()),
            Self::Env(var) => {
                std::env::var(var).map_err(|_| format!("the environment variable {var} is not set"))
            }
        }
    }
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Value(_) => f.write_str("Value(<redacted>)"),
            Self::Env(var) => write!(f, "Env({var})"),
        }
    }
}

/// How long a pending answer stays open when `[host] pending_ttl_secs` is not set: a day.
pub const DEFAULT_PENDING_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);
/// The longest `[host] pending_ttl_secs` may be: thirty days.
pub const MAX_PENDING_TTL: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 60 * 60);

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
    /// How long a call sees `ctx.cancelled()` true past its timeout before the watchdog counts
    /// it as a fault: one that stops within it ends `cancelled`.
    pub cancel_grace: Duration,
    /// Faults within `quarantine_window` that quarantine the plugin (0: never).
    pub quarantine_faults: u32,
    /// The window faults are counted in.
    pub quarantine_window: Duration,
    /// Order in hooks: lower runs first; ties keep load order.
    pub priority: i32,
    /// Which callers may invoke which of its actions and hooks (`[[plugins.<id>.permissions]]`).
    pub permissions: Vec<PermissionRule>,
    /// How `host.dispatch` retries its retryable failures, when it holds a claim.
    pub retry: RetryPolicy,
    /// When dispatch gives a failing action a rest (`breaker`; off by default).
    pub breaker: BreakerPolicy,
    /// The storage keys its kv values are sealed with, newest first (`[plugins.<id>.kv]
    /// encrypt`, names of `[secrets]` entries with `kind = "storage_key"`); empty: stored as they are.
    pub kv_encrypt: Vec<String>,
    /// Where its code runs: in the host's process, or in a worker process of its own.
    pub isolation: Isolation,
    /// How its worker is restarted after a crash (isolated plugins).
    pub restart: RestartPolicy,
    /// The resource limits of its worker process (isolated plugins).
    pub limits: WorkerLimits,
    /// The sandbox of its worker process (isolated plugins).
    pub sandbox: Sandbox,
    /// Its outbound HTTP beyond the `http.outbound` grants: schemes, addresses, limits.
    pub http: HttpPolicy,
    /// Whether its library must be signed, and by whom.
    pub signature: SignaturePolicy,
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
    credentials: BTreeMap<String, Credential>,
    client_certificates: BTreeMap<String, ClientCertificate>,
    /// `[secrets]` entries with `kind = "storage_key"`: keys the host seals kv values with.
    storage_keys: BTreeMap<String, SecretSource>,
    /// The publishers' public keys the operator trusts (minisign's text form), by name.
    trust: BTreeMap<String, String>,
    health_interval: Duration,
    /// `[[routines]]`: events that call actions.
    routines: Vec<Routine>,
    /// `[[sources]]`: the channels the host follows.
    sources: Vec<Source>,
    /// The line each plugin's grants are written on (TOML), in order.
    grant_lines: BTreeMap<PluginId, Vec<usize>>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            source: None,
            host: HostSettings::default(),
            secrets: BTreeMap::new(),
            credentials: BTreeMap::new(),
            client_certificates: BTreeMap::new(),
            storage_keys: BTreeMap::new(),
            trust: BTreeMap::new(),
            defaults: PluginPolicy {
                enabled: true,
                blake3: None,
                sha256: None,
                grants: Vec::new(),
                config: serde_json::Value::Object(serde_json::Map::new()),
                shutdown_deadline: DEFAULT_SHUTDOWN_DEADLINE,
                init_deadline: DEFAULT_INIT_DEADLINE,
                call_timeout: DEFAULT_CALL_TIMEOUT,
                cancel_grace: DEFAULT_CANCEL_GRACE,
                quarantine_faults: DEFAULT_QUARANTINE_FAULTS,
                quarantine_window: DEFAULT_QUARANTINE_WINDOW,
                priority: 0,
                permissions: Vec::new(),
                retry: DEFAULT_RETRY,
                breaker: DEFAULT_BREAKER,
                kv_encrypt: Vec::new(),
                isolation: Isolation::InProcess,
                restart: DEFAULT_RESTART,
                limits: DEFAULT_LIMITS,
                sandbox: Sandbox::default(),
                http: HttpPolicy::default(),
                signature: SignaturePolicy {
                    required: false,
                    signed_by: Vec::new(),
                    required_source: "[defaults]".to_owned(),
                    signed_by_source: "[defaults]".to_owned(),
                },
            },
            health_interval: DEFAULT_HEALTH_INTERVAL,
            plugins: BTreeMap::new(),
            routines: Vec::new(),
            sources: Vec::new(),
            grant_lines: BTreeMap::new(),
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
        let mut policy =
            Self::parse(&text, PolicyFormat::of(path)).map_err(|message| Error::PolicyInvalid {
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
        self.grant_lines.remove(&id);
        self.plugins.insert(id, entry);
    }

    /// The line of the policy file (1-based) the `index`th grant of plugin `id` is written on,
    /// when the policy was read from TOML.
    pub fn grant_line(&self, id: &PluginId, index: usize) -> Option<usize> {
        self.grant_lines.get(id)?.get(index).copied()
    }

    /// The entry used for plugins the policy does not name.
    pub fn defaults(&self) -> &PluginPolicy {
        &self.defaults
    }

    /// How often the host polls each plugin's health.
    pub fn health_interval(&self) -> Duration {
        self.health_interval
    }

    /// The publishers' public keys the operator trusts (`[trust]`: name → minisign public key).
    pub fn trust(&self) -> &BTreeMap<String, String> {
        &self.trust
    }

    /// Trusts a publisher's key (for programs that build their policy in code).
    ///
    /// # Errors
    ///
    /// The key is not a minisign public key.
    pub fn trust_key(&mut self, name: &str, public_key: &str) -> Result<(), String> {
        crate::library::signature::public_key_id(public_key)?;
        self.trust
            .insert(name.to_owned(), public_key.trim().to_owned());
        Ok(())
    }

    /// The routines (`[[routines]]`): which published events call which actions.
    pub fn routines(&self) -> &[Routine] {
        &self.routines
    }

    /// The channels the host follows (`[[sources]]`), see `Host::follow`.
    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    /// Adds a source to follow (for programs that build their policy in code).
    pub fn add_source(&mut self, source: Source) {
        self.sources.push(source);
    }

    /// Adds a routine (for programs that build their policy in code).
    pub fn add_routine(&mut self, routine: Routine) {
        self.routines.push(routine);
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

    /// Provides a credential (for programs that build their policy in code).
    pub fn set_credential(&mut self, name: &str, credential: Credential) {
        self.credentials.insert(name.to_owned(), credential);
    }

    /// The value of the secret `name`, if a plugin may read it ([`Policy::readable_secret`]).
    ///
    /// # Errors
    ///
    /// Why it is not readable (a credential, a client certificate or a storage key) or not
    /// available (not in the policy, or its environment variable is unset); the message never
    /// contains a value.
    pub fn secret(&self, name: &str) -> Result<String, String> {
        self.readable_secret(name).map_err(|why| match why {
            Unreadable::Unavailable(why) => why,
            never => format!("it {never}"),
        })
    }

    /// The credential `name`, if the policy has one by that name.
    pub fn credential(&self, name: &str) -> Option<&Credential> {
        self.credentials.get(name)
    }

    /// Provides a client certificate (for programs that build their policy in code).
    pub fn set_client_certificate(&mut self, name: &str, certificate: ClientCertificate) {
        self.client_certificates
            .insert(name.to_owned(), certificate);
    }

    /// The client certificate `name`, if the policy has one by that name.
    pub fn client_certificate(&self, name: &str) -> Option<&ClientCertificate> {
        self.client_certificates.get(name)
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
            PolicyFormat::Toml,
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
        let err = Policy::parse("[plugins.hello]\nenabeld = true\n", PolicyFormat::Toml)
            .expect_err("refused");
        assert!(err.contains("enabeld"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        let err = Policy::parse("[plugin.hello]\n", PolicyFormat::Toml).expect_err("refused");
        assert!(err.contains("plugin"), "{err}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = Policy::parse("[plugins.hello]\nsha256 = \"abc\"\n", PolicyFormat::Toml)
            .expect_err("refused");
        assert!(err.contains("sha256"), "{err}");
        let err = Policy::parse("[plugins.hello]\nblake3 = \"abc\"\n", PolicyFormat::Toml)
            .expect_err("refused");
        assert!(
            err.contains("blake3") && err.contains("64 hex digits"),
            "{err}"
        );
        let err = Policy::parse(
            "[plugins.hello]\ngrants = [\"teleport\"]\n",
            PolicyFormat::Toml,
        )
        .expect_err("refused");
        assert!(err.contains("teleport"), "{err}");
        let err = Policy::parse("[plugins.Hello]\n", PolicyFormat::Toml).expect_err("refused");
        assert!(err.contains("lower-case"), "{err}");
    }

    #[test]
    fn pins_of_either_hash_are_read_as_lower_case_hex() {
        let text = format!(
            "[plugins.hello]\nblake3 = \"{}\"\nsha256 = \"{}\"\n",
            "AB".repeat(32),
            "0c".repeat(32)
        );
        let policy = Policy::parse(&text, PolicyFormat::Toml).expect("valid");
        let hello = policy.for_plugin(&PluginId::new("hello").expect("id"));
        assert_eq!(hello.blake3.as_deref(), Some("ab".repeat(32).as_str()));
        assert_eq!(hello.sha256.as_deref(), Some("0c".repeat(32).as_str()));
    }

    #[test]
    fn host_settings_and_secrets() {
        let policy = Policy::parse(
            "[host]\ndata_dir = \"data\"\naudit_log = \"audit.jsonl\"\n[secrets]\ntoken = \"s3cret\"\nfrom_env = { env = \"AIRLOCK_TEST_UNSET_VARIABLE\" }\n",
            PolicyFormat::Toml,
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
    fn host_control_is_granted_by_name_like_any_capability() {
        let policy = Policy::parse(
            "[plugins.a]\ngrants = [\"host.control\"]\n",
            PolicyFormat::Toml,
        )
        .expect("host.control may be granted");
        let a = policy.for_plugin(&PluginId::new("a").expect("id"));
        assert_eq!(a.grants[0].to_string(), "host.control");
    }

    #[test]
    fn json_policies_parse_too() {
        let policy = Policy::parse(
            r#"{"plugins":{"hello":{"enabled":false}}}"#,
            PolicyFormat::Json,
        )
        .expect("valid");
        assert!(
            !policy
                .for_plugin(&PluginId::new("hello").expect("id"))
                .enabled
        );
        assert!(Policy::parse(r#"{"plugins":{"hello":{"x":1}}}"#, PolicyFormat::Json).is_err());
    }
}
