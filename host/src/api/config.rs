//! A dry run of a config: [`Host::check_config`] asks everything a config change would ask —
//! the references, the schema's defaults and the schema, the plugin's own `validate_config` —
//! and applies nothing.

use super::Host;
use crate::error::Error;
use crate::runtime::outcome::CheckedConfig;

impl Host {
    /// Checks `config` for `plugin` as [`Host::set_config`] would, without applying it: its
    /// `{ env = .. }` and `{ secret = .. }` references resolve (a secret only where the plugin
    /// is granted it), the config schema's defaults are filled in, it fits the schema, and the
    /// plugin's own `validate_config` accepts it. The running instance, its config and its
    /// generation stay as they are; nothing is restarted and nothing is audited.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownPlugin`]; [`Error::ConfigRejected`] with what is wrong (a value that came
    /// from a reference is never shown).
    pub fn check_config(
        &self,
        plugin: &str,
        config: &serde_json::Value,
    ) -> Result<CheckedConfig, Error> {
        let admin = self.shared.admin();
        let loaded = admin.plugin(plugin)?;
        let valid =
            self.shared
                .validate(&loaded, config)
                .map_err(|refusal| Error::ConfigRejected {
                    plugin: plugin.to_owned(),
                    errors: vec![refusal.detail],
                })?;
        Ok(CheckedConfig {
            config: valid.prepared.shown,
            defaults: valid.prepared.defaults,
            warnings: valid.warnings,
        })
    }
}
