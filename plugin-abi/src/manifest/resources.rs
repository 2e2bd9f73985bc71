//! Resources a plugin ships inside its library (`"resources"` in `plugin.json`): files of the
//! plugin crate — skills, prompt templates, UI fragments — embedded at build time by the
//! crate's build script, hashed into the library's resource block and readable by the host
//! program without running the plugin. Here: what a declaration says, and the rules its paths
//! and media types keep.

use serde::{Deserialize, Serialize};

use super::ManifestError;

/// The most resources one manifest may declare.
pub const MAX_RESOURCES: usize = 256;
/// The longest resource path, in bytes.
pub const MAX_RESOURCE_PATH: usize = 256;
/// The longest media type, in bytes.
pub const MAX_MEDIA_TYPE: usize = 127;
/// The most bytes all of a plugin's resources may hold together (16 MiB).
pub const MAX_RESOURCE_BYTES: usize = 16 << 20;
/// The media type of a resource that declares none.
pub const DEFAULT_MEDIA_TYPE: &str = "application/octet-stream";

/// One resource as the manifest declares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceDecl {
    /// Where the file is in the plugin crate, relative to its `plugin.json`, with `/` between
    /// names (`skills/summarize.md`); also the name the host program reads it by.
    pub path: String,
    /// Its media type (`text/markdown`); `application/octet-stream` when not given.
    #[serde(default = "default_media_type")]
    pub media_type: String,
    /// What it is for, shown in listings.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

fn default_media_type() -> String {
    DEFAULT_MEDIA_TYPE.to_owned()
}

/// Every rule the `resources` list keeps: a bounded count, each path relative and plain, no
/// path twice, each media type well formed.
pub(super) fn check_resources(resources: &[ResourceDecl]) -> Result<(), ManifestError> {
    let err = |m: String| Err(ManifestError(m));
    if resources.len() > MAX_RESOURCES {
        return err(format!(
            "{} resources declared; at most {MAX_RESOURCES} are allowed",
            resources.len()
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for resource in resources {
        check_resource_path(&resource.path)
            .map_err(|m| ManifestError(format!("resource {:?}: {m}", resource.path)))?;
        if !seen.insert(resource.path.as_str()) {
            return err(format!("resource {:?} is declared twice", resource.path));
        }
        if !is_media_type(&resource.media_type) {
            return err(format!(
                "resource {:?}: media_type {:?} must be a type/subtype such as text/markdown",
                resource.path, resource.media_type
            ));
        }
        if resource.description.len() > 1024 {
            return err(format!(
                "resource {:?}: the description is longer than 1024 bytes",
                resource.path
            ));
        }
    }
    Ok(())
}

/// A resource path: relative, `/`-separated names, none empty, `.` or `..`, no backslash or
/// control character, at most [`MAX_RESOURCE_PATH`] bytes. The same rule is applied when the
/// crate is built and when the host reads the library.
///
/// # Errors
///
/// What is wrong with it, in words an author can act on.
pub fn check_resource_path(path: &str) -> Result<(), String> {
    if path.is_empty() || path.len() > MAX_RESOURCE_PATH {
        return Err(format!(
            "the path must be 1 to {MAX_RESOURCE_PATH} bytes long"
        ));
    }
    if path.starts_with('/') || path.contains(':') {
        return Err(
            "the path must be relative to plugin.json (no leading '/', no drive or scheme)"
                .to_owned(),
        );
    }
    if path.chars().any(|c| c == '\\' || c.is_control()) {
        return Err(
            "the path may not hold a backslash or a control character; separate names with '/'"
                .to_owned(),
        );
    }
    if let Some(bad) = path
        .split('/')
        .find(|name| name.is_empty() || *name == "." || *name == "..")
    {
        return Err(format!(
            "every name in the path must be a file or directory name, not {bad:?} (no '..', '.' or '//')"
        ));
    }
    Ok(())
}

/// `type/subtype` (parameters allowed after `;`), of token characters, bounded.
fn is_media_type(text: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    let essence = text.split(';').next().unwrap_or_default().trim();
    text.len() <= MAX_MEDIA_TYPE
        && text.is_ascii()
        && !text.bytes().any(|b| b.is_ascii_control())
        && essence
            .split_once('/')
            .is_some_and(|(t, s)| token(t) && token(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;

    fn with(resources: &str) -> Result<Manifest, ManifestError> {
        Manifest::from_json(&format!(
            r#"{{"id":"p","version":"1.0.0","resources":{resources}}}"#
        ))
    }

    #[test]
    fn a_plain_declaration_is_accepted_with_its_defaults() {
        let m = with(
            r#"[{"path":"skills/summarize.md","media_type":"text/markdown","description":"d"},
                {"path":"ui/panel.html"}]"#,
        )
        .expect("valid");
        assert_eq!(m.resources.len(), 2);
        assert_eq!(m.resources[1].media_type, DEFAULT_MEDIA_TYPE);
        let none = Manifest::from_json(r#"{"id":"p","version":"1.0.0"}"#).expect("valid");
        assert!(none.resources.is_empty(), "no key: no resources");
    }

    #[test]
    fn paths_that_leave_the_crate_or_are_not_plain_are_refused() {
        for (path, says) in [
            ("../secret", "not \"..\""),
            ("skills/../../x", "not \"..\""),
            ("/etc/passwd", "relative"),
            ("C:/x", "relative"),
            ("a\\b", "backslash"),
            ("a//b", "not \"\""),
            ("./a", "not \".\""),
            ("a/", "not \"\""),
            ("", "1 to"),
            ("a\nb", "control"),
        ] {
            let decl = serde_json::json!([{ "path": path }]).to_string();
            let e = with(&decl).expect_err(path);
            assert!(e.0.contains(says), "{path:?}: {e}");
            assert!(e.0.contains("resource"), "{path:?}: {e}");
        }
        let long = "a/".repeat(MAX_RESOURCE_PATH) + "b";
        let decl = serde_json::json!([{ "path": long }]).to_string();
        assert!(with(&decl).is_err(), "too long");
    }

    #[test]
    fn duplicates_bad_media_types_and_too_many_are_refused() {
        let dup = with(r#"[{"path":"a.md"},{"path":"a.md"}]"#).expect_err("twice");
        assert!(dup.0.contains("declared twice"), "{dup}");
        for media in ["markdown", "text/", "/x", "text/mark down", "tëxt/x"] {
            let decl = serde_json::json!([{ "path": "a", "media_type": media }]).to_string();
            let e = with(&decl).expect_err(media);
            assert!(e.0.contains("media_type"), "{media}: {e}");
        }
        assert!(with(r#"[{"path":"a","media_type":"text/plain; charset=utf-8"}]"#).is_ok());
        let many: Vec<_> = (0..=MAX_RESOURCES)
            .map(|i| serde_json::json!({ "path": format!("r{i}") }))
            .collect();
        let e = with(&serde_json::Value::from(many).to_string()).expect_err("too many");
        assert!(e.0.contains("at most"), "{e}");
        let unknown = with(r#"[{"path":"a","size":3}]"#).expect_err("unknown key");
        assert!(unknown.0.contains("unknown field"), "{unknown}");
    }
}
