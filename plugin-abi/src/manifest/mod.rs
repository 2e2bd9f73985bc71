//! The plugin manifest (`plugin.json`): parsed with serde into [`RawManifest`], then validated
//! into [`Manifest`] by one `TryFrom`. Code that holds a `Manifest` never re-checks it.

mod capability;
mod declarations;
mod dependencies;
mod events;
mod id;
mod permissions;
mod resources;
mod routes;
mod validate;

pub use self::capability::{covers, glob_match, Capability, CapabilityKind, DeclaredCapability};
pub use self::declarations::{
    ActionDecl, ClaimDecl, Concurrency, HookDecl, JobDecl, RouteDecl, ROUTE_METHODS,
};
pub use self::dependencies::{Dependency, RawDependency, MAX_DEPENDENCIES};
pub use self::events::{valid_topic, EventDecl, MAX_TOPIC_LEN};
pub use self::id::{PluginId, MAX_ID_LEN};
pub use self::permissions::PermissionDecl;
pub use self::resources::{
    check_resource_path, ResourceDecl, DEFAULT_MEDIA_TYPE, MAX_MEDIA_TYPE, MAX_RESOURCES,
    MAX_RESOURCE_BYTES, MAX_RESOURCE_PATH,
};
pub use self::routes::{
    is_header_name, PublicRoute, RouteAuth, RoutePattern, Segment, SignatureScheme, MAX_ROUTE_PATH,
};
pub use self::validate::MAX_DECLARATIONS;

use std::fmt;

use serde::{Deserialize, Serialize};

/// `plugin.json` as written, before validation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    /// See [`Manifest::id`].
    pub id: String,
    /// See [`Manifest::version`].
    pub version: String,
    /// See [`Manifest::description`].
    #[serde(default)]
    pub description: String,
    /// See [`Manifest::capabilities`].
    #[serde(default)]
    pub capabilities: Vec<RawCapability>,
    /// See [`Manifest::hooks`].
    #[serde(default)]
    pub hooks: Vec<HookDecl>,
    /// See [`Manifest::actions`].
    #[serde(default)]
    pub actions: Vec<ActionDecl>,
    /// See [`Manifest::concurrency`].
    #[serde(default)]
    pub concurrency: Concurrency,
    /// See [`Manifest::claims`].
    #[serde(default)]
    pub claims: Vec<ClaimDecl>,
    /// See [`Manifest::routes`].
    #[serde(default)]
    pub routes: Vec<RouteDecl>,
    /// See [`Manifest::jobs`].
    #[serde(default)]
    pub jobs: Vec<JobDecl>,
    /// The JSON Schema the plugin's config must match (checked in stage 3, before it runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_schema: Option<serde_json::Value>,
    /// See [`Manifest::events`].
    #[serde(default)]
    pub events: Vec<EventDecl>,
    /// See [`Manifest::resources`].
    #[serde(default)]
    pub resources: Vec<ResourceDecl>,
    /// See [`Manifest::dependencies`]: plugin id → a semver range, or
    /// `{"version": range, "optional": true}`.
    #[serde(default)]
    pub depends_on: std::collections::BTreeMap<String, RawDependency>,
    /// See [`Manifest::permissions`].
    #[serde(default)]
    pub permissions: Vec<PermissionDecl>,
}

/// A capability entry as written: `"kv"` or `{"name": "kv", "required": true, "reason": "…"}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawCapability {
    /// Just the name; optional.
    Name(String),
    /// The long form.
    Detailed {
        /// The capability, `kind` or `kind:scope`.
        name: String,
        /// Refuse the plugin unless granted.
        #[serde(default)]
        required: bool,
        /// Why the plugin needs it.
        #[serde(default)]
        reason: Option<String>,
    },
}

/// A validated manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Manifest {
    /// The plugin's id.
    pub id: PluginId,
    /// The plugin's own version (semver).
    pub version: semver::Version,
    /// One line for listings.
    pub description: String,
    /// Capabilities the plugin may ask the operator for.
    pub capabilities: Vec<DeclaredCapability>,
    /// Hook points the plugin implements.
    pub hooks: Vec<HookDecl>,
    /// Actions the plugin offers, in declaration order (the order is the action's index).
    pub actions: Vec<ActionDecl>,
    /// Whether calls may overlap.
    pub concurrency: Concurrency,
    /// Kinds of request the plugin claims to be the one handler of.
    pub claims: Vec<ClaimDecl>,
    /// HTTP routes it serves under its prefix.
    pub routes: Vec<RouteDecl>,
    /// Timer jobs the host schedules for it once it is created.
    pub jobs: Vec<JobDecl>,
    /// The JSON Schema the plugin's config must match (checked in stage 3, before it runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_schema: Option<serde_json::Value>,
    /// The topics it declares it publishes, each with its payload's schema (none: it declares
    /// none, and publishes whatever its grants cover unchecked).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<EventDecl>,
    /// Files of the plugin crate embedded in its library, which the host program can read
    /// (none when the key is absent).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceDecl>,
    /// The plugins it needs beside it (`depends_on`), in id order: created before it, torn down
    /// after it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<Dependency>,
    /// The permissions it defines (`permissions`), with the roles that hold them by default;
    /// the operator's rules override them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<PermissionDecl>,
}

/// Why a manifest is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError(pub String);

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ManifestError {}

impl Manifest {
    /// Parses and validates `plugin.json` text.
    ///
    /// # Errors
    ///
    /// The JSON error (with line and column) or the rule the manifest breaks.
    pub fn from_json(text: &str) -> Result<Self, ManifestError> {
        let raw: RawManifest =
            serde_json::from_str(text).map_err(|e| ManifestError(format!("plugin.json: {e}")))?;
        Self::try_from(raw)
    }

    /// The index of an action by name.
    pub fn action_index(&self, name: &str) -> Option<usize> {
        self.actions.iter().position(|a| a.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_manifest() {
        let m = Manifest::from_json(
            r#"{"id":"hello","version":"1.2.3","description":"greets",
                "capabilities":["kv",{"name":"events.publish:ticks.*","required":true,"reason":"r"}],
                "hooks":[{"name":"input.transform"}],
                "actions":[{"name":"greet","description":"says hi"}],
                "concurrency":"parallel"}"#,
        )
        .expect("valid");
        assert_eq!(m.id.as_str(), "hello");
        assert_eq!(m.concurrency, Concurrency::Parallel);
        assert_eq!(m.capabilities[1].capability.scope(), Some("ticks.*"));
        assert!(m.capabilities[1].required);
        assert_eq!(m.action_index("greet"), Some(0));
    }

    #[test]
    fn routes_and_jobs_are_checked() {
        let with = |extra: &str| {
            Manifest::from_json(&format!(
                r#"{{"id":"p","version":"1.0.0","capabilities":["timers"],
                    "actions":[{{"name":"hook"}}]{extra}}}"#
            ))
        };
        let ok = with(
            r#","routes":[{"method":"POST","path":"/hook","action":"hook"},{"method":"GET","path":"/later"}],
               "jobs":[{"name":"nightly","cron":"0 3 * * *"},{"name":"beat","every_ms":500}]"#,
        )
        .expect("valid");
        assert_eq!(ok.routes.len(), 2);
        assert_eq!(ok.jobs[1].every_ms, Some(500));
        for (bad, says) in [
            (r#","routes":[{"method":"TRACE","path":"/x"}]"#, "method"),
            (r#","routes":[{"method":"GET","path":"x"}]"#, "path"),
            (
                r#","routes":[{"method":"GET","path":"/a/../b"}]"#,
                "not . or ..",
            ),
            (
                r#","routes":[{"method":"GET","path":"/x"},{"method":"GET","path":"/x"}]"#,
                "twice",
            ),
            (
                r#","routes":[{"method":"GET","path":"/x","action":"nope"}]"#,
                "does not declare",
            ),
            (r#","jobs":[{"name":"j"}]"#, "one of cron or every_ms"),
            (
                r#","jobs":[{"name":"j","cron":"* * * * *","every_ms":5}]"#,
                "one of cron",
            ),
        ] {
            let err = with(bad).expect_err(bad);
            assert!(err.0.contains(says), "{bad}: {err}");
        }
        let schema_on_route = Manifest::from_json(
            r#"{"id":"p","version":"1.0.0","actions":[{"name":"hook","input_schema":{"type":"object"}}],
                "routes":[{"method":"POST","path":"/hook","action":"hook"}]}"#,
        )
        .expect_err("a route action takes a request");
        assert!(
            schema_on_route.0.contains("input_schema"),
            "{schema_on_route}"
        );
        let not_a_schema = Manifest::from_json(
            r#"{"id":"p","version":"1.0.0","actions":[{"name":"a","input_schema":"integer"}]}"#,
        )
        .expect_err("a schema is an object");
        assert!(
            not_a_schema.0.contains("must be a JSON Schema"),
            "{not_a_schema}"
        );
        let no_timers = Manifest::from_json(
            r#"{"id":"p","version":"1.0.0","jobs":[{"name":"j","every_ms":5}]}"#,
        )
        .expect_err("jobs without timers");
        assert!(no_timers.0.contains("timers capability"), "{no_timers}");
    }

    #[test]
    fn rejects_unknown_keys_and_bad_versions() {
        let unknown = Manifest::from_json(r#"{"id":"a","version":"1.0.0","colour":"red"}"#);
        assert!(unknown
            .expect_err("refused")
            .0
            .contains("unknown field `colour`"));
        let semver = Manifest::from_json(r#"{"id":"a","version":"one"}"#);
        assert!(semver.expect_err("refused").0.contains("not semver"));
    }

    #[test]
    fn duplicate_declarations_are_refused() {
        let dup = Manifest::from_json(
            r#"{"id":"a","version":"1.0.0","actions":[{"name":"x"},{"name":"x"}]}"#,
        );
        assert!(dup.expect_err("refused").0.contains("declared twice"));
    }
}
