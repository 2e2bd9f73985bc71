//! Where an artifact is and which one: `oci://REGISTRY/REPOSITORY[:TAG][@sha256:HEX]`, or an
//! OCI image layout on disk, `oci-layout:DIR[:TAG][@sha256:HEX]`; a version range in place of a
//! tag picks the highest tag that is a semver version within it.

use std::fmt;
use std::path::PathBuf;

use semver::{Version, VersionReq};

use super::FleetError;

/// The scheme of an artifact in a registry.
pub const OCI_SCHEME: &str = "oci://";
/// The scheme of an artifact in an OCI image layout (a directory).
pub const LAYOUT_SCHEME: &str = "oci-layout:";

/// A repository: in a registry, or an OCI image layout on disk.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Repository {
    /// `REGISTRY/REPOSITORY` of a registry (`REGISTRY` is a host, with a port or not).
    Registry {
        /// The registry's host and port, e.g. `ghcr.io` or `127.0.0.1:5000`.
        registry: String,
        /// The repository's path in it, e.g. `acme/plugins/hello`.
        repository: String,
    },
    /// An OCI image layout: a directory with `oci-layout`, `index.json` and `blobs/`.
    Layout {
        /// The directory.
        dir: PathBuf,
    },
}

/// Which artifact of a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// The artifact a tag points to now.
    Tag(String),
    /// Exactly the artifact with this digest (`sha256:` and 64 hex digits).
    Digest(String),
    /// The highest tag that is a semver version within the range.
    Range(VersionReq),
}

/// An artifact: a repository and which of its artifacts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactRef {
    /// Where.
    pub repository: Repository,
    /// Which.
    pub selector: Selector,
}

impl ArtifactRef {
    /// Reads `oci://REGISTRY/REPOSITORY[:TAG][@sha256:HEX]` or `oci-layout:DIR[:TAG][@…]`; with
    /// `range`, the reference names a repository only and the range picks the tag. Without a
    /// tag, a digest or a range, the tag is `latest`.
    ///
    /// # Errors
    ///
    /// [`FleetError::Reference`] saying what is wrong and what was expected.
    pub fn parse(text: &str, range: Option<&str>) -> Result<Self, FleetError> {
        let bad = |why: String| FleetError::Reference {
            reference: text.to_owned(),
            why,
        };
        let (repository, rest) = if let Some(rest) = text.strip_prefix(OCI_SCHEME) {
            let (registry, path) = rest.split_once('/').ok_or_else(|| {
                bad(
                    "expected oci://REGISTRY/REPOSITORY[:TAG], e.g. oci://ghcr.io/acme/hello:1.0.0"
                        .into(),
                )
            })?;
            check_registry(registry).map_err(&bad)?;
            let (name, selector) = split_selector(path);
            check_repository(name).map_err(&bad)?;
            (
                Repository::Registry {
                    registry: registry.to_owned(),
                    repository: name.to_owned(),
                },
                selector,
            )
        } else if let Some(rest) = text.strip_prefix(LAYOUT_SCHEME) {
            let (dir, selector) = split_selector(rest);
            if dir.is_empty() {
                return Err(bad(
                    "expected oci-layout:DIR[:TAG], e.g. oci-layout:./plugins-oci:1.0.0".into(),
                ));
            }
            (Repository::Layout { dir: dir.into() }, selector)
        } else {
            return Err(bad(format!(
                "not an artifact reference: expected {OCI_SCHEME}REGISTRY/REPOSITORY[:TAG] or \
                 {LAYOUT_SCHEME}DIR[:TAG]"
            )));
        };
        let selector =
            match (rest, range) {
                (Some(_), Some(_)) => return Err(bad(
                    "a version range picks the tag: name the repository without a tag or digest"
                        .into(),
                )),
                (None, Some(range)) => Selector::Range(VersionReq::parse(range).map_err(|e| {
                    bad(format!(
                        "version range {range:?}: {e} (e.g. '^1.2' or '>=1.0, <2')"
                    ))
                })?),
                (Some(Rest::Digest(digest)), None) => {
                    Selector::Digest(check_digest(&digest).map_err(&bad)?)
                }
                (Some(Rest::Tag(tag)), None) => {
                    check_tag(&tag).map_err(&bad)?;
                    Selector::Tag(tag)
                }
                (None, None) => Selector::Tag("latest".to_owned()),
            };
        Ok(Self {
            repository,
            selector,
        })
    }

    /// The same repository with another selector.
    pub fn with(&self, selector: Selector) -> Self {
        Self {
            repository: self.repository.clone(),
            selector,
        }
    }

    /// The reference without its selector: `oci://REGISTRY/REPOSITORY` or `oci-layout:DIR`.
    pub fn repository_text(&self) -> String {
        match &self.repository {
            Repository::Registry {
                registry,
                repository,
            } => format!("{OCI_SCHEME}{registry}/{repository}"),
            Repository::Layout { dir } => format!("{LAYOUT_SCHEME}{}", dir.display()),
        }
    }
}

impl fmt::Display for ArtifactRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repository_text())?;
        match &self.selector {
            Selector::Tag(tag) => write!(f, ":{tag}"),
            Selector::Digest(digest) => write!(f, "@{digest}"),
            Selector::Range(range) => write!(f, " (versions {range})"),
        }
    }
}

enum Rest {
    Tag(String),
    Digest(String),
}

/// Splits `NAME[:TAG][@DIGEST]` (a digest wins over a tag beside it, as in every OCI tool).
fn split_selector(text: &str) -> (&str, Option<Rest>) {
    if let Some((name, digest)) = text.split_once('@') {
        let name = match name.rsplit_once(':') {
            Some((n, tag)) if !tag.contains('/') => n,
            _ => name,
        };
        return (name, Some(Rest::Digest(digest.to_owned())));
    }
    match text.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(Rest::Tag(tag.to_owned()))),
        _ => (text, None),
    }
}

fn check_registry(registry: &str) -> Result<(), String> {
    let ok = !registry.is_empty()
        && registry.len() <= 255
        && registry
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "registry {registry:?} is not a host name with an optional port"
        ))
    }
}

/// The distribution spec's repository names: lower-case components separated by `/`, each of
/// alphanumerics with single `.`, `_`, `__` or `-` runs between them.
fn check_repository(name: &str) -> Result<(), String> {
    let component = |c: &str| {
        !c.is_empty()
            && c.starts_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
            && c.ends_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
            && c.chars().all(|ch| {
                ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-')
            })
    };
    if name.len() <= 255 && name.split('/').all(component) {
        Ok(())
    } else {
        Err(format!(
            "repository {name:?}: expected lower-case components of a-z, 0-9, '.', '_' and '-' \
             separated by '/'"
        ))
    }
}

fn check_tag(tag: &str) -> Result<(), String> {
    let ok = (1..=128).contains(&tag.len())
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tag {tag:?}: expected 1-128 characters of A-Z, a-z, 0-9, '_', '.' and '-', not \
             starting with '.' or '-'"
        ))
    }
}

/// A `sha256:` digest in lower case, checked.
pub(crate) fn check_digest(digest: &str) -> Result<String, String> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) => {
            Ok(format!("sha256:{}", hex.to_ascii_lowercase()))
        }
        _ => Err(format!(
            "digest {digest:?}: expected sha256: and 64 hex digits (the only algorithm Airlock \
             accepts)"
        )),
    }
}

/// The version a tag names, if it is one (`1.2.0`, or `v1.2.0`).
pub(crate) fn tag_version(tag: &str) -> Option<Version> {
    Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok()
}

/// The highest tag within `range`; pre-releases only when the range names one (semver's rule).
pub(crate) fn highest_within<'t>(tags: &'t [String], range: &VersionReq) -> Option<&'t str> {
    tags.iter()
        .filter_map(|t| tag_version(t).map(|v| (v, t)))
        .filter(|(v, _)| range.matches(v))
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, t)| t.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ArtifactRef {
        ArtifactRef::parse(text, None).expect(text)
    }

    #[test]
    fn registry_references_read_their_parts() {
        let r = parse("oci://127.0.0.1:5000/acme/hello:1.2.0");
        assert_eq!(
            r.repository,
            Repository::Registry {
                registry: "127.0.0.1:5000".into(),
                repository: "acme/hello".into()
            }
        );
        assert_eq!(r.selector, Selector::Tag("1.2.0".into()));
        assert_eq!(r.to_string(), "oci://127.0.0.1:5000/acme/hello:1.2.0");
        let digest = format!("sha256:{}", "AB".repeat(32));
        let r = parse(&format!("oci://ghcr.io/acme/hello:stable@{digest}"));
        assert_eq!(r.selector, Selector::Digest(digest.to_ascii_lowercase()));
        assert_eq!(
            parse("oci://ghcr.io/hello").selector,
            Selector::Tag("latest".into())
        );
    }

    #[test]
    fn layouts_and_ranges_read() {
        let r = parse("oci-layout:/srv/mirror:1.0.0");
        assert_eq!(
            r.repository,
            Repository::Layout {
                dir: "/srv/mirror".into()
            }
        );
        let r = ArtifactRef::parse("oci://ghcr.io/acme/hello", Some("^1.2")).expect("range");
        assert!(matches!(r.selector, Selector::Range(_)));
        let tags: Vec<String> = ["1.1.0", "1.2.0", "v1.3.1", "1.4.0-rc.1", "2.0.0", "stable"]
            .map(String::from)
            .into();
        let Selector::Range(range) = r.selector else {
            unreachable!("a range")
        };
        assert_eq!(highest_within(&tags, &range), Some("v1.3.1"));
    }

    #[test]
    fn malformed_references_say_what_was_expected() {
        for (text, range, expect) in [
            ("hello:1.0", None, "not an artifact reference"),
            ("oci://ghcr.io", None, "expected oci://REGISTRY/REPOSITORY"),
            ("oci://ghcr.io/Acme/hello", None, "lower-case components"),
            ("oci://ghcr.io/acme/hello:-x", None, "tag \"-x\""),
            ("oci://ghcr.io/acme/hello@sha512:00", None, "sha256"),
            ("oci://ghcr.io/acme/hello:1.0", Some("^1"), "without a tag"),
            ("oci://ghcr.io/acme/hello", Some("one"), "version range"),
            ("oci://bad host/acme", None, "registry"),
        ] {
            let e = ArtifactRef::parse(text, range).expect_err(text).to_string();
            assert!(e.contains(expect), "{text}: {e}");
        }
    }
}
