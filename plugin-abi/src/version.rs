//! The one rule that decides whether a plugin built against one airlock-abi version can be
//! loaded by a host built against another.

use semver::Version;

/// The airlock-abi version this crate is; plugins embed it, hosts compare against it.
pub const ABI_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Why a plugin's ABI version is not compatible with the host's.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Incompatibility {
    /// Different major versions (for 1.0 and later).
    MajorDiffers,
    /// The plugin needs a newer minor version than the host has.
    MinorAhead,
    /// Before 1.0 every minor version is a breaking change.
    PreReleaseMinorDiffers,
    /// Pre-release versions (`1.0.0-alpha`) only match exactly.
    PreReleaseTag,
}

impl std::fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::MajorDiffers => "the major versions differ",
            Self::MinorAhead => "the plugin needs a newer minor version than the host provides",
            Self::PreReleaseMinorDiffers => "before 1.0 the minor versions must be equal",
            Self::PreReleaseTag => "pre-release versions must match exactly",
        })
    }
}

/// Decides whether a plugin built against `plugin` may be loaded by a host built against `host`.
///
/// Same major; the plugin's minor not ahead of the host's; 0.x needs the same minor. Patch
/// versions never matter.
///
/// # Errors
///
/// The reason the two versions are incompatible.
pub fn check_compatible(host: &Version, plugin: &Version) -> Result<(), Incompatibility> {
    if (!host.pre.is_empty() || !plugin.pre.is_empty())
        && (host.major, host.minor, host.patch, &host.pre)
            != (plugin.major, plugin.minor, plugin.patch, &plugin.pre)
    {
        return Err(Incompatibility::PreReleaseTag);
    }
    if host.major != plugin.major {
        return Err(Incompatibility::MajorDiffers);
    }
    if host.major == 0 {
        if host.minor != plugin.minor {
            return Err(Incompatibility::PreReleaseMinorDiffers);
        }
        return Ok(());
    }
    if plugin.minor > host.minor {
        return Err(Incompatibility::MinorAhead);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compatibility_table() {
        use Incompatibility::*;
        let table: &[(&str, &str, Result<(), Incompatibility>)] = &[
            // host, plugin, expected
            ("1.2.0", "1.2.0", Ok(())),
            ("1.2.0", "1.2.9", Ok(())),
            ("1.2.9", "1.2.0", Ok(())),
            ("1.2.0", "1.0.0", Ok(())),
            ("1.2.0", "1.3.0", Err(MinorAhead)),
            ("1.2.0", "2.0.0", Err(MajorDiffers)),
            ("2.0.0", "1.9.0", Err(MajorDiffers)),
            ("0.1.0", "0.1.0", Ok(())),
            ("0.1.0", "0.1.7", Ok(())),
            ("0.1.7", "0.1.0", Ok(())),
            ("0.2.0", "0.1.0", Err(PreReleaseMinorDiffers)),
            ("0.1.0", "0.2.0", Err(PreReleaseMinorDiffers)),
            ("0.1.0", "1.1.0", Err(MajorDiffers)),
            ("1.0.0", "0.9.0", Err(MajorDiffers)),
            ("1.0.0-alpha", "1.0.0-alpha", Ok(())),
            ("1.0.0-alpha", "1.0.0-beta", Err(PreReleaseTag)),
            ("1.0.0", "1.0.0-alpha", Err(PreReleaseTag)),
        ];
        for (host, plugin, expected) in table {
            let host = Version::parse(host).expect("valid");
            let plugin = Version::parse(plugin).expect("valid");
            assert_eq!(
                &check_compatible(&host, &plugin),
                expected,
                "host {host}, plugin {plugin}"
            );
        }
    }

    #[test]
    fn own_version_is_compatible_with_itself() {
        let v = Version::parse(ABI_VERSION).expect("crate version is semver");
        assert_eq!(check_compatible(&v, &v), Ok(()));
    }
}
