//! Reading a policy file: the shape it is written in (unknown keys are errors) and the one
//! function that turns it into a [`Policy`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use airlock_abi::manifest::{Capability, PluginId};
use serde::Deserialize;

use super::credential::{read_secret, RawSecret, Secret};
use super::host::{pinned_names, trusted_groups, trusted_owners, RawAccount};
use super::http::{http, RawHttp};
use super::isolation::{limits, restart, sandbox};
use super::trust::{signature, trust, RawSignature, SignaturePolicy};
use super::PolicyFormat;
use super::{HostSettings, Isolation, PluginPolicy, Policy};
use crate::library::file::parse_digest;
use crate::policy::lines::EntryLines;
use crate::policy::permission::{PermissionRule, RawRule, RuleOrigin};

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
    #[serde(default)]
    routines: Vec<super::routines::RawRoutine>,
    #[serde(default)]
    sources: Vec<super::sources::RawSource>,
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
    #[serde(default)]
    trusted_owners: Vec<RawAccount>,
    #[serde(default)]
    trusted_groups: Vec<RawAccount>,
    #[serde(default)]
    tls_roots: Vec<PathBuf>,
    pending_ttl_secs: Option<u64>,
    #[serde(default)]
    always_seal: bool,
    #[serde(default)]
    insecure_registries: Vec<String>,
}

/// Declares `RawSettings`, the settings `[defaults]` and `[plugins.<id>]` both take, once; and
/// each of those tables with the settings among its own fields — the deadlines after its first
/// fields, the rest after the others, the order serde's messages name them in — and a
/// `settings` method that moves them out. (Not `#[serde(flatten)]`: a flattened table's errors
/// lose the key and location they point at.)
macro_rules! tables_with_settings {
    (
        deadlines $deadlines:tt
        rest $rest:tt
        $(
            $(#[$meta:meta])*
            struct $table:ident {
                $($(#[$first_meta:meta])* $first:ident: $first_ty:ty,)*
                ..deadlines,
                $($(#[$other_meta:meta])* $other:ident: $other_ty:ty,)*
                ..rest,
            }
        )*
    ) => {
        tables_with_settings!(@settings $deadlines $rest);
        $(
            tables_with_settings!(@table $deadlines $rest $(#[$meta])* $table
                { $($(#[$first_meta])* $first: $first_ty,)* }
                { $($(#[$other_meta])* $other: $other_ty,)* });
        )*
    };
    (@settings { $($deadline:ident: $deadline_ty:ty,)* } { $($setting:ident: $setting_ty:ty,)* }) => {
        /// The settings `[defaults]` and `[plugins.<id>]` both take, moved out of either table.
        struct RawSettings {
            $($deadline: $deadline_ty,)*
            $($setting: $setting_ty,)*
        }
    };
    (
        @table { $($deadline:ident: $deadline_ty:ty,)* } { $($setting:ident: $setting_ty:ty,)* }
        $(#[$meta:meta])* $table:ident
        { $($(#[$first_meta:meta])* $first:ident: $first_ty:ty,)* }
        { $($(#[$other_meta:meta])* $other:ident: $other_ty:ty,)* }
    ) => {
        $(#[$meta])*
        struct $table {
            $($(#[$first_meta])* $first: $first_ty,)*
            $($deadline: $deadline_ty,)*
            $($(#[$other_meta])* $other: $other_ty,)*
            $($setting: $setting_ty,)*
        }

        impl $table {
            /// The settings it shares with the other table, moved out of it.
            fn settings(&mut self) -> RawSettings {
                RawSettings {
                    $($deadline: self.$deadline.take(),)*
                    $($setting: self.$setting.take(),)*
                }
            }
        }
    };
}

tables_with_settings! {
    deadlines {
        shutdown_deadline_ms: Option<u64>,
        init_deadline_ms: Option<u64>,
        call_timeout_ms: Option<u64>,
        cancel_grace_ms: Option<u64>,
        quarantine_faults: Option<u32>,
        quarantine_window_ms: Option<u64>,
    }
    rest {
        dispatch_retries: Option<u32>,
        dispatch_backoff_ms: Option<u64>,
        dispatch_backoff_max_ms: Option<u64>,
        breaker: Option<super::breaker::RawBreaker>,
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
    struct RawDefaults {
        ..deadlines,
        health_interval_ms: Option<u64>,
        ..rest,
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
        ..deadlines,
        priority: Option<i32>,
        #[serde(default)]
        permissions: Vec<RawRule>,
        kv: Option<super::kv::RawKv>,
        ..rest,
    }
}

impl Policy {
    /// Parses policy text written in `format`.
    ///
    /// # Errors
    ///
    /// A message naming the key and location of the first problem.
    pub fn parse(text: &str, format: PolicyFormat) -> Result<Self, String> {
        let lines = match format {
            PolicyFormat::Toml => super::lines::read(text),
            PolicyFormat::Json => BTreeMap::new(),
        };
        let raw: RawPolicy = match format {
            PolicyFormat::Json => {
                super::json::refuse_duplicate_keys(text)?;
                serde_json::from_str(text).map_err(|e| e.to_string())?
            }
            PolicyFormat::Toml => {
                toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())?
            }
        };
        let mut policy = Self {
            host: host_settings(raw.host)?,
            ..Self::default()
        };
        policy.read_secrets(raw.secrets)?;
        policy.read_defaults(raw.defaults, raw.trust)?;
        for (id, entry) in raw.plugins {
            let plugin_id = PluginId::new(&id).map_err(|e| format!("[plugins.{id}]: {e}"))?;
            let at = lines.get(&id).cloned().unwrap_or_default();
            let plugin = policy.plugin_policy(&id, entry, &at)?;
            policy.grant_lines.insert(plugin_id.clone(), at.grants);
            policy.plugins.insert(plugin_id, plugin);
        }
        policy.routines = super::routines::routines(raw.routines)?;
        policy.sources = super::sources::sources(raw.sources, policy.host.lock.is_some())?;
        Ok(policy)
    }

    /// `[secrets]`: each a value or an environment variable to read it from, or a credential
    /// (usable, not readable).
    fn read_secrets(&mut self, raw: BTreeMap<String, RawSecret>) -> Result<(), String> {
        for (name, secret) in raw {
            match read_secret(&name, secret)? {
                Secret::Readable(source) => self.secrets.insert(name, source),
                Secret::Credential(credential) => {
                    self.credentials.insert(name, credential);
                    continue;
                }
                Secret::ClientCertificate(certificate) => {
                    self.client_certificates.insert(name, certificate);
                    continue;
                }
                Secret::StorageKey(source) => self.storage_keys.insert(name, source),
            };
        }
        Ok(())
    }

    /// `[defaults]` over the built-in defaults, and `[trust]` (read between them, as the
    /// defaults' signature rule names its keys).
    fn read_defaults(
        &mut self,
        mut raw: RawDefaults,
        trusted: BTreeMap<String, String>,
    ) -> Result<(), String> {
        if let Some(ms) = raw.health_interval_ms {
            self.health_interval = Duration::from_millis(ms.max(1));
        }
        let mut settings = raw.settings();
        self.defaults = settings.over(&self.defaults, "defaults")?;
        self.trust = trust(trusted)?;
        let signature = settings.signature(self, &self.defaults.signature, "defaults")?;
        self.defaults.signature = signature;
        Ok(())
    }

    /// `[plugins.<id>]`: the plugin's own settings, and the shared ones over `[defaults]`.
    fn plugin_policy(
        &self,
        id: &str,
        mut entry: RawPluginPolicy,
        lines: &EntryLines,
    ) -> Result<PluginPolicy, String> {
        let mut settings = entry.settings();
        let blake3 = pin(id, "blake3", entry.blake3)?;
        let sha256 = pin(id, "sha256", entry.sha256)?;
        let grants = grants(id, &entry.grants)?;
        let permissions = entry
            .permissions
            .into_iter()
            .enumerate()
            .map(|(index, rule)| {
                let origin = RuleOrigin::Policy {
                    plugin: id.to_owned(),
                    index,
                    line: lines.permissions.get(index).copied(),
                };
                PermissionRule::from_raw(rule, origin)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let config = match entry.config {
            None => self.defaults.config.clone(),
            Some(value @ serde_json::Value::Object(_)) => value,
            Some(_) => return Err(format!("[plugins.{id}] config: expected a table")),
        };
        let table = format!("plugins.{id}");
        let shared = settings.over(&self.defaults, &table)?;
        Ok(PluginPolicy {
            enabled: entry.enabled.unwrap_or(true),
            blake3,
            sha256,
            grants,
            config,
            priority: entry.priority.unwrap_or(0),
            permissions,
            kv_encrypt: super::kv::kv_encrypt(self, id, entry.kv.take())?,
            signature: settings.signature(self, &self.defaults.signature, &table)?,
            ..shared
        })
    }
}

impl RawSettings {
    /// `base` with these settings over it, all but the signature rule (`signature`);
    /// `table` (`defaults`, `plugins.<id>`) names where they are written, for messages.
    fn over(&mut self, base: &PluginPolicy, table: &str) -> Result<PluginPolicy, String> {
        let millis = |ms: Option<u64>, base| ms.map_or(base, Duration::from_millis);
        Ok(PluginPolicy {
            shutdown_deadline: millis(self.shutdown_deadline_ms, base.shutdown_deadline),
            init_deadline: millis(self.init_deadline_ms, base.init_deadline),
            call_timeout: millis(self.call_timeout_ms, base.call_timeout),
            cancel_grace: millis(self.cancel_grace_ms, base.cancel_grace),
            quarantine_faults: self.quarantine_faults.unwrap_or(base.quarantine_faults),
            quarantine_window: millis(self.quarantine_window_ms, base.quarantine_window),
            retry: base.retry.with(
                self.dispatch_retries,
                self.dispatch_backoff_ms,
                self.dispatch_backoff_max_ms,
            ),
            breaker: super::breaker::breaker(base.breaker, self.breaker.take(), table)?,
            isolation: self.isolation.unwrap_or(base.isolation),
            sandbox: sandbox(
                &base.sandbox,
                self.sandbox,
                self.sandbox_required,
                self.allow_network,
                self.allow_processes,
                self.allow_read.take(),
            ),
            limits: limits(
                base.limits,
                self.memory_limit_mb,
                self.cpu_limit_s,
                self.open_files_limit,
            ),
            restart: restart(
                base.restart,
                self.restart_budget,
                self.restart_window_ms,
                self.restart_backoff_ms,
            ),
            http: http(&base.http, self.http.take(), &format!("[{table}.http]"))?,
            ..base.clone()
        })
    }

    /// `base` with this table's signature rule over it: read after `[trust]`, whose keys
    /// `signed_by` names.
    fn signature(
        self,
        policy: &Policy,
        base: &SignaturePolicy,
        table: &str,
    ) -> Result<SignaturePolicy, String> {
        signature(
            policy,
            base,
            self.signature,
            self.signed_by,
            &format!("[{table}]"),
        )
    }
}

/// `[host]`, with the names it pins to addresses in lower case and the accounts it trusts as
/// ids.
fn host_settings(raw: RawHost) -> Result<HostSettings, String> {
    Ok(HostSettings {
        data_dir: raw.data_dir,
        audit_log: raw.audit_log,
        lock: raw.lock,
        max_retained: raw.max_retained,
        worker: raw.worker,
        dumpable: raw.dumpable,
        resolve: pinned_names(raw.resolve)?,
        trusted_owners: trusted_owners(&raw.trusted_owners)?,
        trusted_groups: trusted_groups(&raw.trusted_groups)?,
        tls_roots: raw.tls_roots,
        pending_ttl: pending_ttl(raw.pending_ttl_secs)?,
        always_seal: raw.always_seal,
        insecure_registries: raw.insecure_registries,
    })
}

/// `[host] pending_ttl_secs`: at least a second, at most [`super::MAX_PENDING_TTL`].
fn pending_ttl(secs: Option<u64>) -> Result<Option<std::time::Duration>, String> {
    let Some(secs) = secs else { return Ok(None) };
    let max = super::MAX_PENDING_TTL.as_secs();
    if secs == 0 || secs > max {
        return Err(format!(
            "[host] pending_ttl_secs: expected 1 to {max} seconds (30 days), found {secs}"
        ));
    }
    Ok(Some(std::time::Duration::from_secs(secs)))
}

/// A plugin's `blake3` or `sha256` pin, checked to be a digest.
fn pin(id: &str, key: &str, value: Option<String>) -> Result<Option<String>, String> {
    match value {
        Some(pin) => parse_digest(&pin)
            .map(Some)
            .ok_or_else(|| format!("[plugins.{id}] {key}: expected 64 hex digits, found {pin:?}")),
        None => Ok(None),
    }
}

/// A plugin's `grants`, each a capability.
fn grants(id: &str, raw: &[String]) -> Result<Vec<Capability>, String> {
    raw.iter()
        .map(|g| Capability::parse(g).map_err(|e| format!("[plugins.{id}] grants: {e}")))
        .collect()
}
