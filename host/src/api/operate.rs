//! The operator's side of [`Host`]: revoke a capability, run a job by hand, disable, enable,
//! change config. Each takes the admin lock, then looks the plugin up.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use airlock_abi::abi::InvocationKind;
use airlock_abi::manifest::{Capability, CapabilityKind};

use crate::error::Error;
use crate::membrane::context::{self};
use crate::services::audit::AuditOutcome;

use super::Host;
use crate::runtime::outcome::{ConfigApplied, PluginState, TeardownRecord};
use crate::runtime::LoadedPlugin;

impl Host {
    /// Revokes capabilities of a running plugin: `spec` is a capability (`kv`,
    /// `events.publish:demo.*`) or a kind (`events.publish`) to revoke every grant of that kind.
    /// When this returns, no call using a revoked grant succeeds, and the calls that were in
    /// flight have finished. The revocation lasts for the life of the host (an `enable`
    /// re-creates the plugin without it). Writes one audit record per grant revoked.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownPlugin`], [`Error::BadCapability`].
    pub fn revoke_capability(&self, plugin: &str, spec: &str) -> Result<Vec<String>, Error> {
        let selector = CapabilitySelector::parse(spec)?;
        let admin = self.shared.admin();
        let loaded = admin.plugin(plugin)?;
        // The plugin's grants, which every instance it creates starts from, running or not...
        let mut removed: Vec<Capability> = Vec::new();
        loaded.settings.lock().grants.retain(|c| {
            let matched = selector.matches(c);
            if matched {
                removed.push(c.clone());
            }
            !matched
        });
        // ...and the running instance's context: no call using them succeeds after this.
        let token = loaded.settings.lock().last_token;
        for cap in context::revoke_grants(token, |c| selector.matches(c)) {
            if !removed.contains(&cap) {
                removed.push(cap);
            }
        }
        // Recorded whatever the plugin's state: a reload or an enable does not bring them back.
        {
            let mut settings = loaded.settings.lock();
            for cap in &removed {
                if !settings.revoked.contains(cap) {
                    settings.revoked.push(cap.clone());
                }
            }
        }
        let generation = loaded.generation.load(Ordering::SeqCst);
        for cap in &removed {
            self.shared.audit.record(
                plugin,
                generation,
                &cap.to_string(),
                AuditOutcome::Revoked,
                &format!("the operator revoked {cap} from {plugin}"),
            );
        }
        Ok(removed.iter().map(ToString::to_string).collect())
    }

    /// Runs the timer job `job` of `plugin` once, now, on this thread: a run by hand, with its
    /// own run id (returned) and `manual` set. Refused while a run of the job is going — runs
    /// of a job never overlap — and once the plugin is torn down (its jobs are gone).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownPlugin`], [`Error::NotRunning`], or [`Error::Job`] (no such job, or a
    /// run of it is going).
    pub fn run_job(&self, plugin: &str, job: &str) -> Result<u64, Error> {
        let loaded = self
            .shared
            .find(plugin)
            .ok_or_else(|| Error::UnknownPlugin(plugin.to_owned()))?;
        let state = loaded.state.get();
        if state != PluginState::Running {
            return Err(Error::NotRunning {
                plugin: plugin.to_owned(),
                state: state.to_string(),
            });
        }
        let token = loaded.settings.lock().last_token;
        self.shared
            .timers
            .run_now(token, job)
            .map_err(|reason| Error::Job {
                plugin: plugin.to_owned(),
                reason,
            })
    }

    /// Disables a plugin: tears it down within its deadline and revokes its context. The
    /// running plugins that depend on it (not optionally), directly or through others, are
    /// disabled first, dependents first; the record lists them in
    /// [`TeardownRecord::dependents`]. Enabling it again does not enable them: each is enabled
    /// by name, once what it needs runs.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownPlugin`]; [`Error::NotRunning`] if it is not running.
    pub fn disable(&self, plugin: &str) -> Result<TeardownRecord, Error> {
        let admin = self.shared.admin();
        let loaded = admin.plugin(plugin)?;
        if !loaded.running.is_some() {
            return Err(Error::NotRunning {
                plugin: plugin.to_owned(),
                state: loaded.state.get().to_string(),
            });
        }
        let why = format!("the operator disabled {plugin}");
        let dependents = self.shared.disable_dependents(&loaded, &why);
        let mut record = self
            .shared
            .teardown(&loaded, PluginState::Disabled)
            .ok_or_else(|| Error::NotRunning {
                plugin: plugin.to_owned(),
                state: loaded.state.get().to_string(),
            })?;
        self.record_operator(&loaded, AuditOutcome::Disabled, "disabled");
        record.dependents = dependents;
        Ok(record)
    }

    /// Enables a disabled (or failed) plugin: creates a new instance with a fresh context, then
    /// runs its `started` phase. The plugins that depend on it stay as they are.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownPlugin`]; [`Error::NotRunning`] if it was abandoned (its old instance
    /// may still be executing); [`Error::DependencyNotRunning`] if a plugin it depends on (not
    /// optionally) is not running; [`Error::Refused`] if creation fails.
    pub fn enable(&self, plugin: &str) -> Result<(), Error> {
        let admin = self.shared.admin();
        let loaded = admin.plugin(plugin)?;
        if loaded
            .state
            .change(PluginState::Quarantined, PluginState::Running)
        {
            loaded.recent_faults.lock().clear();
            loaded.restarts.clear();
            // An isolated plugin quarantined because its worker kept dying gets a new one.
            if loaded
                .running
                .with(|r| r.is_some_and(|r| r.instance.worker_died()))
            {
                self.shared.teardown(&loaded, PluginState::Disabled);
            }
            self.record_operator(&loaded, AuditOutcome::Enabled, "lifted the quarantine of");
        }
        let state = loaded.state.get();
        match state {
            PluginState::Running | PluginState::Quarantined => return Ok(()),
            PluginState::Abandoned | PluginState::Stopped => {
                return Err(Error::NotRunning {
                    plugin: plugin.to_owned(),
                    state: state.to_string(),
                })
            }
            PluginState::Disabled | PluginState::Failed => {}
        }
        self.shared.dependencies_running(&loaded)?;
        let config = loaded.settings.lock().config.clone();
        self.shared.start_instance(&loaded, &config, None)?;
        self.record_operator(&loaded, AuditOutcome::Enabled, "enabled");
        self.shared.started_all(&[loaded]);
        Ok(())
    }

    /// Runs `act` as `operator`: the records of the operator's actions it takes (`revoked`,
    /// `disabled`, `enabled`, `config_changed`) name the host program acting for that principal
    /// as their caller, where they otherwise name the host program alone; an approval given or
    /// refused says `by` the principal in its detail (its caller stays the call's). For a program with
    /// more than one way in for its operators (the web console names itself `web-console`).
    pub fn as_operator<R>(
        &self,
        operator: airlock_abi::wire::Principal,
        act: impl FnOnce(&Self) -> R,
    ) -> R {
        let _acting = crate::frame::caller::push(airlock_abi::wire::CallerInfo::Host {
            principal: Some(operator),
        });
        act(self)
    }

    /// Records what the operator `did` to a plugin ("the operator disabled hello"), with the
    /// generation it has now (a teardown keeps it; only a new instance moves it on).
    fn record_operator(&self, loaded: &LoadedPlugin, outcome: AuditOutcome, did: &str) {
        let plugin = loaded.id().as_str();
        let generation = loaded.generation.load(Ordering::SeqCst);
        self.shared.audit.plugin_event(
            plugin,
            generation,
            outcome,
            format_args!("the operator {did} {plugin}"),
        );
    }

    /// Changes a plugin's config: the plugin validates it first; then it is applied live if the
    /// plugin takes it, otherwise the plugin is re-created with it. A change is audited
    /// (`config_changed`, without the config's values).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownPlugin`]; [`Error::ConfigRejected`] (the old config stays);
    /// [`Error::Refused`] if re-creating fails.
    pub fn set_config(
        &self,
        plugin: &str,
        config: serde_json::Value,
    ) -> Result<ConfigApplied, Error> {
        let admin = self.shared.admin();
        let loaded = admin.plugin(plugin)?;
        let valid =
            self.shared
                .validate(&loaded, &config)
                .map_err(|refusal| Error::ConfigRejected {
                    plugin: plugin.to_owned(),
                    errors: vec![refusal.detail],
                })?;
        let warnings = valid.warnings;
        {
            // The config as written is kept: its references are resolved again at each restart.
            let mut settings = loaded.settings.lock();
            settings.config = config.clone();
            settings.warnings = warnings.clone();
        }
        let bytes = serde_json::to_vec(valid.prepared.value()).unwrap_or_else(|_| b"{}".to_vec());
        let running = loaded.running.load_full();
        if let Some(running) = running {
            if let Some(entry) = context::entry(running.token) {
                entry.config.store(Arc::new(bytes.clone()));
            }
            let answer =
                self.shared
                    .invoke(&loaded, InvocationKind::CONFIG_CHANGED, 0, "config", &bytes);
            drop(running);
            if answer.as_deref().is_ok_and(|a| a == b"true") {
                self.record_operator(
                    &loaded,
                    AuditOutcome::ConfigChanged,
                    "changed the config (applied live) of",
                );
                return Ok(ConfigApplied {
                    live: true,
                    warnings,
                });
            }
            self.shared.teardown(&loaded, PluginState::Disabled);
        }
        self.shared.start_instance(&loaded, &config, None)?;
        self.record_operator(
            &loaded,
            AuditOutcome::ConfigChanged,
            "changed the config (re-created with it) of",
        );
        self.shared.started_all(&[loaded]);
        Ok(ConfigApplied {
            live: false,
            warnings,
        })
    }
}

/// Which grants an operator's `revoke` names.
pub(super) enum CapabilitySelector {
    Exact(Capability),
    Kind(CapabilityKind),
}

impl CapabilitySelector {
    pub(super) fn parse(spec: &str) -> Result<Self, Error> {
        if let Some(kind) = CapabilityKind::ALL.into_iter().find(|k| k.name() == spec) {
            return Ok(Self::Kind(kind));
        }
        Capability::parse(spec)
            .map(Self::Exact)
            .map_err(Error::BadCapability)
    }

    pub(super) fn matches(&self, cap: &Capability) -> bool {
        match self {
            Self::Exact(wanted) => wanted == cap,
            Self::Kind(kind) => cap.kind() == *kind,
        }
    }
}
