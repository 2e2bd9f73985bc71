//! The config a plugin is given, from the one its operator wrote: references resolved
//! ([`crate::policy::reference`]), then the defaults of the plugin's config schema filled in,
//! then checked against that schema. The same steps run when a plugin is checked (stage 3),
//! loaded, reloaded, restarted, given a new config, and in a dry run
//! ([`crate::Host::check_config`]); only the written config is kept.
//!
//! Defaults, exactly: where a schema (the config schema, then each property's schema in turn)
//! has `properties`, each property that has a `default` and is missing from the config's
//! object is set to that default (a copy, as written); then each property whose value is an
//! object is filled the same way from its own schema. A config that is `null` is first `{}`
//! when its schema has `properties`. Nothing else is followed: not `$ref`, `allOf`, `anyOf`,
//! `oneOf`, `if`/`then`, `items`, `additionalProperties` nor `patternProperties`.

use airlock_abi::manifest::{Capability, Manifest};
use serde_json::{Map, Value};

use super::schema::Schemas;
use crate::policy::reference::{resolve, ResolvedConfig};
use crate::policy::Policy;

/// A config ready for its plugin: resolved, defaulted and checked against the schema.
pub(crate) struct PreparedConfig {
    /// What the plugin is given (references resolved, defaults in).
    pub(crate) resolved: ResolvedConfig,
    /// The JSON pointers of the defaults filled in (`/retries`, `/http/timeout_ms`).
    pub(crate) defaults: Vec<String>,
    /// The written config with those defaults: what may be shown (references as written).
    pub(crate) shown: Value,
}

impl PreparedConfig {
    /// What the plugin is given.
    pub(crate) fn value(&self) -> &Value {
        &self.resolved.value
    }
}

/// Resolves, fills in and checks `written`, the config of the plugin `manifest` describes.
///
/// # Errors
///
/// Every reference that cannot be resolved, or where the config breaks the schema (with any
/// value that came from a reference hidden).
pub(crate) fn prepare(
    manifest: &Manifest,
    schemas: Option<&Schemas>,
    written: &Value,
    grants: &[Capability],
    policy: &Policy,
) -> Result<PreparedConfig, Vec<String>> {
    let mut resolved = resolve(manifest.id.as_str(), written, grants, policy)?;
    let mut shown = written.clone();
    let mut defaults = Vec::new();
    if let Some(schema) = &manifest.config_schema {
        fill_defaults(schema, &mut resolved.value, "", &mut defaults);
        fill_defaults(schema, &mut shown, "", &mut Vec::new());
    }
    if let Some(schemas) = schemas {
        schemas
            .check_config(&resolved.value)
            .map_err(|detail| vec![resolved.mask(&detail)])?;
    }
    Ok(PreparedConfig {
        resolved,
        defaults,
        shown,
    })
}

/// Fills in the defaults of `schema`'s properties in `value`, recording each one's pointer
/// under `at`.
fn fill_defaults(schema: &Value, value: &mut Value, at: &str, filled: &mut Vec<String>) {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    if value.is_null() && at.is_empty() {
        *value = Value::Object(Map::new());
    }
    let Some(object) = value.as_object_mut() else {
        return;
    };
    for (name, property) in properties {
        let pointer = format!("{at}/{}", name.replace('~', "~0").replace('/', "~1"));
        if !object.contains_key(name) {
            if let Some(default) = property.get("default") {
                object.insert(name.clone(), default.clone());
                filled.push(pointer.clone());
            }
        }
        if let Some(inner) = object.get_mut(name).filter(|v| v.is_object()) {
            fill_defaults(property, inner, &pointer, filled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_fill_missing_properties_nested_and_nothing_else() {
        let schema = json!({
            "type": "object",
            "properties": {
                "retries": { "type": "integer", "default": 3 },
                "name": { "type": "string", "default": "x" },
                "http": {
                    "type": "object",
                    "default": {},
                    "properties": {
                        "timeout_ms": { "type": "integer", "default": 500 },
                        "tls": { "type": "object", "properties": { "verify": { "default": true } } }
                    }
                },
                "list": { "type": "array", "items": { "properties": { "a": { "default": 1 } } } },
                "ref": { "$ref": "#/$defs/r" }
            },
            "$defs": { "r": { "properties": { "b": { "default": 2 } } } }
        });
        let mut config = json!({ "name": "given", "list": [{}], "ref": {} });
        let mut filled = Vec::new();
        fill_defaults(&schema, &mut config, "", &mut filled);
        assert_eq!(
            config,
            json!({
                "name": "given",
                "list": [{}],
                "ref": {},
                "retries": 3,
                "http": { "timeout_ms": 500 },
            })
        );
        assert_eq!(filled, ["/retries", "/http", "/http/timeout_ms"]);
        let mut null = Value::Null;
        fill_defaults(&schema, &mut null, "", &mut Vec::new());
        assert_eq!(null["retries"], 3);
        // A value of another type than the schema's is left to the schema check.
        let mut wrong = json!({ "http": 7 });
        fill_defaults(&schema, &mut wrong, "", &mut Vec::new());
        assert_eq!(wrong["http"], 7);
    }
}
