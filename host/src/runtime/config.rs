//! A plugin's config on its way in: the written config prepared (references resolved, the
//! schema's defaults filled in, checked against the schema; [`crate::pipeline::config`]), then
//! the plugin's own `validate_config`. The runtime keeps the config as written and prepares it
//! each time it hands it over, so a reference is resolved again on every reload and restart.

use airlock_abi::abi::ErrorCode;
use airlock_abi::ConfigReport;

use super::lifecycle::describe;
use super::plugin::LoadedPlugin;
use super::shared::HostShared;
use crate::error::{Refusal, RefusalReason};
use crate::pipeline::config::{prepare, PreparedConfig};

/// A config the plugin accepted: what it is given, and its warnings.
pub(crate) struct ValidConfig {
    /// The prepared config.
    pub(crate) prepared: PreparedConfig,
    /// The plugin's warnings (any value that came from a reference hidden).
    pub(crate) warnings: Vec<String>,
}

impl HostShared {
    /// `written` prepared for `plugin`, under its effective grants.
    ///
    /// # Errors
    ///
    /// `config_invalid`: a reference that cannot be resolved, or the config breaks the schema.
    pub(crate) fn prepare_config(
        &self,
        plugin: &LoadedPlugin,
        written: &serde_json::Value,
    ) -> Result<PreparedConfig, Refusal> {
        let grants = plugin.settings.lock().grants.clone();
        prepare(
            &plugin.file.manifest,
            plugin.schemas.as_deref(),
            written,
            &grants,
            &self.options.policy,
        )
        .map_err(|errors| {
            Refusal::new(
                &plugin.file.path,
                RefusalReason::ConfigInvalid,
                errors.join("; "),
            )
            .with_id(plugin.id())
        })
    }

    /// Prepares `written` and asks the plugin to validate it. Changes nothing.
    ///
    /// # Errors
    ///
    /// `config_invalid`: as [`HostShared::prepare_config`], or the plugin rejects it (its
    /// messages, with any value that came from a reference hidden).
    pub(crate) fn validate(
        &self,
        plugin: &LoadedPlugin,
        written: &serde_json::Value,
    ) -> Result<ValidConfig, Refusal> {
        let prepared = self.prepare_config(plugin, written)?;
        let refuse = |detail: String| {
            Refusal::new(
                &plugin.file.path,
                RefusalReason::ConfigInvalid,
                prepared.resolved.mask(&detail),
            )
            .with_id(plugin.id())
        };
        let bytes = serde_json::to_vec(prepared.value()).unwrap_or_else(|_| b"{}".to_vec());
        let report: ConfigReport = match plugin.creator.validate_config(&bytes) {
            Ok(bytes) => airlock_abi::wire::parse(&bytes)
                .map_err(|e| refuse(format!("validate_config answered malformed JSON: {e}")))?,
            Err(e) if e.code == ErrorCode::UNSUPPORTED => ConfigReport::default(),
            Err(e) => return Err(refuse(format!("validate_config failed: {}", describe(&e)))),
        };
        if !report.is_ok() {
            return Err(refuse(format!(
                "the plugin rejected its config: {}",
                report.errors.join("; ")
            )));
        }
        let warnings = report
            .warnings
            .iter()
            .map(|w| prepared.resolved.mask(w))
            .collect();
        Ok(ValidConfig { prepared, warnings })
    }
}
