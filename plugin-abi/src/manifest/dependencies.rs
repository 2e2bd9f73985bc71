//! `depends_on`: the plugins a plugin needs beside it, each with a semver range, and whether it
//! can do without one.
//!
//! ```json
//! "depends_on": {
//!     "store": "^1.2",
//!     "metrics": { "version": ">=0.3, <2", "optional": true }
//! }
//! ```
//!
//! A plain string is a required dependency; the long form can mark one optional. A required
//! dependency that is missing refuses the plugin; an optional one may be missing, but if it is
//! there its version must be in the range. The host creates a plugin after the plugins it
//! depends on and tears it down before them.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{ManifestError, PluginId};

/// The most dependencies one manifest may declare.
pub const MAX_DEPENDENCIES: usize = 64;

/// One entry of `depends_on` as written: a range, or `{"version": range, "optional": bool}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawDependency {
    /// Just the range: a required dependency.
    Range(String),
    /// The long form.
    Detailed {
        /// The semver range the dependency's version must be in (`^1.2`, `>=1, <3`, `*`).
        version: String,
        /// Whether the plugin loads without it.
        #[serde(default)]
        optional: bool,
    },
}

/// A plugin this one depends on, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dependency {
    /// The plugin depended on.
    pub id: PluginId,
    /// The versions of it that do.
    pub range: semver::VersionReq,
    /// Whether the plugin loads without it (it must still be in range when present).
    pub optional: bool,
}

impl Dependency {
    /// Whether `version` is in this dependency's range.
    pub fn accepts(&self, version: &semver::Version) -> bool {
        self.range.matches(version)
    }
}

impl fmt::Display for Dependency {
    /// `b ^1.2`, or `b ^1.2 (optional)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.id, self.range)?;
        if self.optional {
            f.write_str(" (optional)")?;
        }
        Ok(())
    }
}

/// Validates `depends_on` for the plugin `own`: every key a plugin id, every range semver, no
/// dependency on itself. In id order.
///
/// # Errors
///
/// What is wrong, naming the entry.
pub(super) fn parse(
    own: &PluginId,
    raw: BTreeMap<String, RawDependency>,
) -> Result<Vec<Dependency>, ManifestError> {
    if raw.len() > MAX_DEPENDENCIES {
        return Err(ManifestError(format!(
            "{} dependencies declared in depends_on; at most {MAX_DEPENDENCIES} are allowed",
            raw.len()
        )));
    }
    raw.into_iter()
        .map(|(name, entry)| {
            let id = PluginId::new(&name)
                .map_err(|e| ManifestError(format!("depends_on names {name:?}: {e}")))?;
            if &id == own {
                return Err(ManifestError(format!(
                    "depends_on names the plugin itself ({id}); a plugin cannot depend on itself"
                )));
            }
            let (text, optional) = match entry {
                RawDependency::Range(text) => (text, false),
                RawDependency::Detailed { version, optional } => (version, optional),
            };
            let range = semver::VersionReq::parse(&text).map_err(|e| {
                ManifestError(format!(
                    "depends_on {id}: {text:?} is not a semver range ({e}); write one like \"^1.2\" or \">=1.0, <3\""
                ))
            })?;
            Ok(Dependency {
                id,
                range,
                optional,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::manifest::Manifest;

    fn with(depends: &str) -> Result<Manifest, crate::manifest::ManifestError> {
        Manifest::from_json(&format!(
            r#"{{"id":"c","version":"1.0.0","depends_on":{depends}}}"#
        ))
    }

    #[test]
    fn both_forms_parse() {
        let m = with(r#"{"b":"^2.0","a":{"version":">=0.3, <2","optional":true}}"#).expect("valid");
        assert_eq!(m.dependencies.len(), 2);
        assert_eq!(m.dependencies[0].id.as_str(), "a");
        assert!(m.dependencies[0].optional);
        assert_eq!(m.dependencies[1].to_string(), "b ^2.0");
        assert!(m.dependencies[1].accepts(&semver::Version::new(2, 3, 0)));
        assert!(!m.dependencies[1].accepts(&semver::Version::new(1, 9, 0)));
        let none = Manifest::from_json(r#"{"id":"c","version":"1.0.0"}"#).expect("valid");
        assert!(none.dependencies.is_empty());
    }

    #[test]
    fn bad_entries_are_refused_with_what_is_wrong() {
        for (bad, says) in [
            (
                r#"{"b":"not a range"}"#,
                "depends_on b: \"not a range\" is not a semver range",
            ),
            (r#"{"c":"^1"}"#, "cannot depend on itself"),
            (r#"{"B C":"^1"}"#, "depends_on names \"B C\""),
            (r#"{"b":{"optional":true}}"#, "did not match any variant"),
            (r#"{"b":3}"#, "did not match any variant"),
        ] {
            let err = with(bad).expect_err(bad);
            assert!(err.0.contains(says), "{bad}: {err}");
        }
    }
}
