//! Reading a policy file: the shape it is written in (unknown keys are errors) and the one
//! function that turns it into a [`Policy`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use airlock_abi::manifest::{Capability, PluginId};
use serde::Deserialize;

use super::http::{http, RawHttp};
use super::isolation::{limits, restart, sandbox};
use super::trust::{signature, trust, RawSignature};
use super::PolicyFormat;
use super::{Credential, HostSettings, Isolation, PluginPolicy, Policy, SecretSource};
use crate::library::file::parse_digest;
use crate::policy::permission::{PermissionRule, RawRule};

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
    #[serde(default)]
    trust: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    data_dir: Option<PathBuf>,
    audit_log: Option<PathBuf>,
    lock: Option<PathBuf>,
    max_retained: Option<usize>,
    worker: Option<PathBuf>,
    #[serde(default)]
    dumpable: bool,
    #[serde(default)]
    resolve: BTreeMap<String, Vec<std::net::IpAddr>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawSecret {
    Value(String),
    // Before `Env`, which would take a credential's `env` and ignore the rest.
    Credential(RawCredential),
    Env { env: String },
}

/// A secret usable, not readable: sent as `header` to `hosts`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredential {
    value: Option<String>,
    env: Option<String>,
    header: String,
    hosts: Vec<String>,
}

impl std::fmt::Debug for RawSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Value(_) => f.write_str("Value(<redacted>)"),
            Self::Env { env } => f.debug_struct("Env").field("env", env).finish(),
            Self::Credential(c) => f
                .debug_struct("Credential")
                .field("env", &c.env)
                .field("header", &c.header)
                .finish_non_exhaustive(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    shutdown_deadline_ms: Option<u64>,
    init_deadline_ms: Option<u64>,
    call_timeout_ms: Option<u64>,
    cancel_grace_ms: Option<u64>,
    quarantine_faults: Option<u32>,
    quarantine_window_ms: Option<u64>,
    health_interval_ms: Option<u64>,
    dispatch_retries: Option<u32>,
    dispatch_backoff_ms: Option<u64>,
    dispatch_backoff_max_ms: Option<u64>,
    isolation: Option<Isolation>,
    restart_budget: Option<u32>,
    restart_window_ms: Option<u64>,
    restart_backoff_ms: Option<u64>,
    memory_limit_mb: Option<u64>,
    cpu_limit_s: Option<u64>,
    open_files_limit: Option<u64>,
    sandbox: Option<bool>,
    sandbox_required: Option<bool>,
    allow_network: Option<bool>,
    allow_processes: Option<bool>,
    allow_read: Option<Vec<PathBuf>>,
    http: Option<RawHttp>,
    signature: Option<RawSignature>,
    signed_by: Option<Vec<String>>,
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
    cancel_grace_ms: Option<u64>,
    quarantine_faults: Option<u32>,
    quarantine_window_ms: Option<u64>,
    priority: Option<i32>,
    #[serde(default)]
    permissions: Vec<RawRule>,
    dispatch_retries: Option<u32>,
    dispatch_backoff_ms: Option<u64>,
    dispatch_backoff_max_ms: Option<u64>,
    isolation: Option<Isolation>,
    restart_budget: Option<u32>,
    restart_window_ms: Option<u64>,
    restart_backoff_ms: Option<u64>,
    memory_limit_mb: Option<u64>,
    cpu_limit_s: Option<u64>,
    open_files_limit: Option<u64>,
    sandbox: Option<bool>,
    sandbox_required: Option<bool>,
    allow_network: Option<bool>,
    allow_processes: Option<bool>,
    allow_read: Option<Vec<PathBuf>>,
    http: Option<RawHttp>,
    signature: Option<RawSignature>,
    signed_by: Option<Vec<String>>,
}

impl Policy {
    /// Parses policy text written in `format`.
    ///
    /// # Errors
    ///
    /// A message naming the key and location of the first problem.
    pub fn parse(text: &str, format: PolicyFormat) -> Result<Self, String> {
        let raw: RawPolicy = match format {
            PolicyFormat::Json => serde_json::from_str(text).map_err(|e| e.to_string())?,
            PolicyFormat::Toml => {
                toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())?
            }
        };
        let mut policy = Self {
            host: HostSettings {
                data_dir: raw.host.data_dir,
                audit_log: raw.host.audit_log,
                lock: raw.host.lock,
                max_retained: raw.host.max_retained,
                worker: raw.host.worker,
                dumpable: raw.host.dumpable,
                resolve: raw
                    .host
                    .resolve
                    .into_iter()
                    .map(|(name, addresses)| (name.to_ascii_lowercase(), addresses))
                    .collect(),
            },
            ..Self::default()
        };
        for (name, secret) in raw.secrets {
            let source = match secret {
                RawSecret::Value(v) => SecretSource::Value(v),
                RawSecret::Env { env } => SecretSource::Env(env),
                RawSecret::Credential(c) => {
                    let source = match (c.value, c.env) {
                        (Some(v), None) => SecretSource::Value(v),
                        (None, Some(env)) => SecretSource::Env(env),
                        _ => {
                            return Err(format!(
                                "[secrets] {name}: a credential takes one of value or env"
                            ))
                        }
                    };
                    let credential = Credential {
                        source,
                        header: c.header,
                        hosts: c.hosts,
                    };
                    policy.credentials.insert(name, credential);
                    continue;
                }
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
        if let Some(ms) = raw.defaults.cancel_grace_ms {
            policy.defaults.cancel_grace = Duration::from_millis(ms);
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
        if let Some(isolation) = raw.defaults.isolation {
            policy.defaults.isolation = isolation;
        }
        policy.defaults.limits = limits(
            policy.defaults.limits,
            raw.defaults.memory_limit_mb,
            raw.defaults.cpu_limit_s,
            raw.defaults.open_files_limit,
        );
        policy.defaults.sandbox = sandbox(
            &policy.defaults.sandbox,
            raw.defaults.sandbox,
            raw.defaults.sandbox_required,
            raw.defaults.allow_network,
            raw.defaults.allow_processes,
            raw.defaults.allow_read,
        );
        policy.defaults.http = http(&policy.defaults.http, raw.defaults.http, "[defaults.http]")?;
        policy.trust = trust(raw.trust)?;
        policy.defaults.signature = signature(
            &policy,
            &policy.defaults.signature,
            raw.defaults.signature,
            raw.defaults.signed_by,
            "[defaults]",
        )?;
        policy.defaults.restart = restart(
            policy.defaults.restart,
            raw.defaults.restart_budget,
            raw.defaults.restart_window_ms,
            raw.defaults.restart_backoff_ms,
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
                    cancel_grace: entry
                        .cancel_grace_ms
                        .map_or(policy.defaults.cancel_grace, Duration::from_millis),
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
                    isolation: entry.isolation.unwrap_or(policy.defaults.isolation),
                    sandbox: sandbox(
                        &policy.defaults.sandbox,
                        entry.sandbox,
                        entry.sandbox_required,
                        entry.allow_network,
                        entry.allow_processes,
                        entry.allow_read,
                    ),
                    limits: limits(
                        policy.defaults.limits,
                        entry.memory_limit_mb,
                        entry.cpu_limit_s,
                        entry.open_files_limit,
                    ),
                    restart: restart(
                        policy.defaults.restart,
                        entry.restart_budget,
                        entry.restart_window_ms,
                        entry.restart_backoff_ms,
                    ),
                    http: http(
                        &policy.defaults.http,
                        entry.http,
                        &format!("[plugins.{id}.http]"),
                    )?,
                    signature: signature(
                        &policy,
                        &policy.defaults.signature,
                        entry.signature,
                        entry.signed_by,
                        &format!("[plugins.{id}]"),
                    )?,
                },
            );
        }
        Ok(policy)
    }
}
