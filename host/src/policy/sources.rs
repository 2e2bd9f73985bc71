//! `[[sources]]`: the channels a running host follows — a repository of an OCI registry, a tag
//! or a version range in it, and how often to look — and `[host] insecure_registries`.

use std::time::Duration;

use airlock_abi::manifest::PluginId;
use semver::VersionReq;
use serde::Deserialize;

/// At most this many sources.
pub const MAX_SOURCES: usize = 256;
/// How often a source is polled when its entry does not say.
pub const DEFAULT_SOURCE_INTERVAL: Duration = Duration::from_secs(60);

/// What a source follows in its repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    /// Whatever this tag points to (`canary`, `stable`, `1`).
    Tag(String),
    /// The highest tag that is a semver version within the range.
    Range(VersionReq),
}

/// A channel a host follows: when it points to a new digest, the host pulls the build, checks
/// it as a file, installs it and reloads the plugin; a refused build never replaces a serving one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The registry (`HOST` or `HOST:PORT`).
    pub registry: String,
    /// The repository in it.
    pub repository: String,
    /// The tag or the version range followed.
    pub channel: Channel,
    /// The plugin the source must hold, if the entry names one: a build of another is refused.
    pub plugin: Option<PluginId>,
    /// How often the host looks.
    pub interval: Duration,
}

impl Source {
    /// `oci://REGISTRY/REPOSITORY:TAG`, or the repository and its range.
    pub fn reference(&self) -> String {
        match &self.channel {
            Channel::Tag(tag) => format!("oci://{}/{}:{tag}", self.registry, self.repository),
            Channel::Range(range) => {
                format!(
                    "oci://{}/{} (versions {range})",
                    self.registry, self.repository
                )
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    #[serde(default)]
    registry: String,
    #[serde(default)]
    repository: String,
    tag: Option<String>,
    version: Option<String>,
    plugin: Option<String>,
    interval_secs: Option<u64>,
}

/// Checks every `[[sources]]` entry: where, which channel, how often; and that there is a lock
/// (`locked`) to pin what they bring.
pub(super) fn sources(raw: Vec<RawSource>, locked: bool) -> Result<Vec<Source>, String> {
    if !raw.is_empty() && !locked {
        return Err(
            "[[sources]] needs [host] lock = \"FILE\": a host that follows a channel \
                    pins each build it pulls there (its BLAKE3 and the artifact's digest), and \
                    reports the digest it serves from it"
                .to_owned(),
        );
    }
    if raw.len() > MAX_SOURCES {
        return Err(format!(
            "[[sources]]: {} sources; at most {MAX_SOURCES} are allowed",
            raw.len()
        ));
    }
    raw.into_iter()
        .enumerate()
        .map(|(n, s)| source(n, s))
        .collect()
}

fn source(n: usize, raw: RawSource) -> Result<Source, String> {
    let at = format!("[[sources]] entry {n} (from 0)");
    if raw.registry.is_empty() || raw.registry.contains(['/', ' ']) {
        return Err(format!(
            "{at}: `registry` is the registry's host and port, e.g. \"ghcr.io\" or \"127.0.0.1:5000\""
        ));
    }
    let repository_ok = !raw.repository.is_empty()
        && raw.repository.split('/').all(|c| {
            !c.is_empty()
                && c.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
        });
    if !repository_ok {
        return Err(format!(
            "{at}: `repository` {:?} must be lower-case path components, e.g. \"acme/hello\"",
            raw.repository
        ));
    }
    let channel = match (raw.tag, raw.version) {
        (Some(tag), None) if !tag.is_empty() => Channel::Tag(tag),
        (None, Some(range)) => Channel::Range(VersionReq::parse(&range).map_err(|e| {
            format!("{at}: version {range:?} is not a version range: {e} (e.g. \"^1.2\")")
        })?),
        _ => {
            return Err(format!(
                "{at}: give a `tag` (e.g. \"stable\") or a `version` range (e.g. \"^1.2\"), one of them"
            ))
        }
    };
    let plugin = raw
        .plugin
        .map(|p| PluginId::new(&p).map_err(|e| format!("{at}: plugin: {e}")))
        .transpose()?;
    let interval = match raw.interval_secs {
        Some(0) => return Err(format!("{at}: interval_secs must be at least 1")),
        Some(secs) => Duration::from_secs(secs),
        None => DEFAULT_SOURCE_INTERVAL,
    };
    Ok(Source {
        registry: raw.registry,
        repository: raw.repository,
        channel,
        plugin,
        interval,
    })
}

#[cfg(test)]
mod tests {
    use crate::policy::{Channel, Policy, PolicyFormat};

    fn parse(text: &str) -> Result<Policy, String> {
        Policy::parse(text, PolicyFormat::Toml)
    }

    #[test]
    fn a_source_reads_its_channel_and_interval() {
        let policy = parse(
            "[host]\nlock = \"airlock.lock\"\n\n[[sources]]\nregistry = \"127.0.0.1:5000\"\n\
             repository = \"acme/hello\"\nversion = \"^1.2\"\nplugin = \"hello\"\ninterval_secs = 30\n",
        )
        .expect("parses");
        let source = &policy.sources()[0];
        assert!(matches!(&source.channel, Channel::Range(r) if r.to_string() == "^1.2"));
        assert_eq!(source.interval.as_secs(), 30);
        assert_eq!(
            source.reference(),
            "oci://127.0.0.1:5000/acme/hello (versions ^1.2)"
        );
    }

    #[test]
    fn malformed_sources_say_what_to_write() {
        let lock = "[host]\nlock = \"airlock.lock\"\n\n";
        for (body, expected) in [
            (
                "registry = \"r:5000\"\nrepository = \"a/b\"\n",
                "give a `tag`",
            ),
            (
                "registry = \"r:5000\"\nrepository = \"a/b\"\ntag = \"x\"\nversion = \"1\"\n",
                "one of them",
            ),
            (
                "registry = \"r:5000\"\nrepository = \"a/b\"\nversion = \"one\"\n",
                "not a version range",
            ),
            (
                "registry = \"r:5000\"\nrepository = \"A/b\"\ntag = \"x\"\n",
                "lower-case",
            ),
            (
                "registry = \"oci://r\"\nrepository = \"a/b\"\ntag = \"x\"\n",
                "host and port",
            ),
            (
                "registry = \"r\"\nrepository = \"a\"\ntag = \"x\"\ninterval_secs = 0\n",
                "at least 1",
            ),
            (
                "registry = \"r\"\nrepository = \"a\"\ntag = \"x\"\nplugin = \"Bad Id\"\n",
                "plugin",
            ),
        ] {
            let e = parse(&format!("{lock}[[sources]]\n{body}")).expect_err(body);
            assert!(e.contains(expected), "{body}: {e}");
        }
        let e = parse("[[sources]]\nregistry = \"r\"\nrepository = \"a\"\ntag = \"x\"\n")
            .expect_err("no lock");
        assert!(e.contains("needs [host] lock"), "{e}");
    }
}
