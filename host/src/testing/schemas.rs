//! Schemas derived from the author's Rust types, kept in `plugin.json`: the file carries them
//! (the host reads them without running the plugin), and a test keeps them true to the types.
//!
//! ```no_run
//! # #[derive(schemars::JsonSchema)] struct CountIn;
//! # #[derive(schemars::JsonSchema)] struct CountOut;
//! # #[derive(schemars::JsonSchema)] struct Config;
//! #[test]
//! fn the_manifest_schemas_match_the_types() {
//!     airlock::testing::schemas(env!("CARGO_MANIFEST_DIR"))
//!         .action::<CountIn, CountOut>("count")
//!         .config::<Config>()
//!         .assert_current();
//! }
//! ```
//!
//! When the types change, the test fails naming the schema; `AIRLOCK_WRITE_SCHEMAS=1 cargo
//! test` writes the new ones into `plugin.json` (the rest of the file is kept as it was, in its
//! order). The types need `schemars::JsonSchema` in tests only:
//! `#[cfg_attr(test, derive(schemars::JsonSchema))]`, with `schemars` a dev-dependency.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde_json::Value;

/// The schemas a plugin's `plugin.json` should carry ([`schemas`]).
#[derive(Debug)]
pub struct SchemaCheck {
    manifest: PathBuf,
    /// Per action: its name, and the input and output schemas of its types.
    actions: Vec<(String, Value, Value)>,
    config: Option<Value>,
}

/// The schemas of the plugin crate at `manifest_dir` (`env!("CARGO_MANIFEST_DIR")`).
pub fn schemas(manifest_dir: impl AsRef<Path>) -> SchemaCheck {
    SchemaCheck {
        manifest: manifest_dir.as_ref().join("plugin.json"),
        actions: Vec::new(),
        config: None,
    }
}

impl SchemaCheck {
    /// Action `name` takes an `I` and answers an `O`.
    #[must_use]
    pub fn action<I: JsonSchema, O: JsonSchema>(mut self, name: &str) -> Self {
        self.actions.push((
            name.to_owned(),
            schemars::schema_for!(I).to_value(),
            schemars::schema_for!(O).to_value(),
        ));
        self
    }

    /// The plugin's config is a `C`.
    #[must_use]
    pub fn config<C: JsonSchema>(mut self) -> Self {
        self.config = Some(schemars::schema_for!(C).to_value());
        self
    }

    /// Compares the schemas with `plugin.json`'s; with `AIRLOCK_WRITE_SCHEMAS=1` in the
    /// environment, writes them there instead.
    ///
    /// # Errors
    ///
    /// What is out of date (or cannot be read or written), and how to bring it up to date.
    pub fn check(self) -> Result<(), String> {
        let path = &self.manifest;
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut manifest: Value = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
        let mut stale = Vec::new();
        {
            let actions = manifest
                .get_mut("actions")
                .and_then(Value::as_array_mut)
                .ok_or_else(|| format!("{} declares no actions", path.display()))?;
            for (name, input, output) in &self.actions {
                let action = actions
                    .iter_mut()
                    .find(|a| a.get("name").and_then(Value::as_str) == Some(name))
                    .and_then(Value::as_object_mut)
                    .ok_or_else(|| {
                        format!("{} does not declare action {name:?}", path.display())
                    })?;
                for (key, schema) in [("input_schema", input), ("output_schema", output)] {
                    if action.get(key) != Some(schema) {
                        stale.push(format!("action {name:?}'s {key}"));
                        action.insert(key.to_owned(), schema.clone());
                    }
                }
            }
        }
        if let Some(config) = &self.config {
            if manifest.get("config_schema") != Some(config) {
                stale.push("config_schema".to_owned());
                if let Some(object) = manifest.as_object_mut() {
                    object.insert("config_schema".to_owned(), config.clone());
                }
            }
        }
        if stale.is_empty() {
            return Ok(());
        }
        if std::env::var_os("AIRLOCK_WRITE_SCHEMAS").is_some_and(|v| v == "1") {
            let mut text = serde_json::to_string_pretty(&manifest).map_err(|e| e.to_string())?;
            text.push('\n');
            return std::fs::write(path, text)
                .map_err(|e| format!("cannot write {}: {e}", path.display()));
        }
        Err(format!(
            "{}: {} out of date with the Rust types; run `AIRLOCK_WRITE_SCHEMAS=1 cargo test` \
             to write them, and rebuild the plugin",
            path.display(),
            stale.join(", "),
        ))
    }

    /// [`SchemaCheck::check`], failing the test with its message.
    ///
    /// # Panics
    ///
    /// When the schemas are out of date.
    #[track_caller]
    pub fn assert_current(self) {
        if let Err(message) = self.check() {
            panic!("{message}");
        }
    }
}
