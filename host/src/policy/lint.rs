//! The grant lint: a warning when a plugin's effective grants amount to the host's authority.
//!
//! The host's authority, as a plugin can hold it, is four families of capability:
//! `plugins.call` (every other plugin, and so whatever they are granted), `service` (every
//! operation the host program offers), `http.outbound` (any network host) and `secrets` (every
//! secret). A grant is *wide* when its scope names nothing — only `*` and `.` (`*`, `*.*`).
//! When a plugin's effective grants (declared ∩ granted) hold a wide grant of all four, it can
//! do whatever the host can, and the membrane guards nothing: `airlock check` and
//! `airlock install` say so, naming the policy's lines (a JSON policy: its keys). It is a
//! warning, not a refusal: the operator may mean it.

use airlock_abi::manifest::{covers, Capability, CapabilityKind, PluginId};

use super::Policy;

/// The capability families that together are the host's authority.
const AUTHORITY: [CapabilityKind; 4] = [
    CapabilityKind::PluginsCall,
    CapabilityKind::Service,
    CapabilityKind::HttpOutbound,
    CapabilityKind::Secrets,
];

/// A plugin whose effective grants amount to the host's authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorityWarning {
    /// The plugin.
    pub plugin: PluginId,
    /// The wide effective grants, one per family, each with where the policy grants it.
    pub grants: Vec<WideGrant>,
    /// The policy file, if it was read from one.
    pub source: Option<std::path::PathBuf>,
}

/// One wide effective grant, and the policy's grants that give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WideGrant {
    /// The effective grant (`secrets:*`).
    pub capability: Capability,
    /// Where the policy grants it: `[plugins.<id>] grants[<n>]`, and its line when the policy
    /// is TOML.
    pub granted_at: Vec<(String, Option<usize>)>,
}

impl AuthorityWarning {
    /// The lines of the policy file that grant it (sorted, each once).
    pub fn lines(&self) -> Vec<usize> {
        let mut lines: Vec<usize> = self
            .grants
            .iter()
            .flat_map(|w| w.granted_at.iter().filter_map(|(_, line)| *line))
            .collect();
        lines.sort_unstable();
        lines.dedup();
        lines
    }
}

impl std::fmt::Display for AuthorityWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let file = self
            .source
            .as_ref()
            .map_or_else(|| "the policy".to_owned(), |p| p.display().to_string());
        write!(
            f,
            "the effective grants of {} amount to the host's authority: it may call every plugin, \
             every operation the host program offers and any network host, and read every \
             secret ({file}:",
            self.plugin
        )?;
        for (n, wide) in self.grants.iter().enumerate() {
            let places: Vec<String> = wide
                .granted_at
                .iter()
                .map(|(key, line)| match line {
                    Some(line) => format!("line {line}"),
                    None => key.clone(),
                })
                .collect();
            let sep = if n == 0 { " " } else { "; " };
            write!(f, "{sep}{} at {}", wide.capability, places.join(", "))?;
        }
        f.write_str("); grant the names it needs instead")
    }
}

/// Whether a grant's scope names nothing: only `*` and `.`, with at least one `*`.
fn wide(capability: &Capability) -> bool {
    capability
        .scope()
        .is_some_and(|s| s.contains('*') && s.chars().all(|c| c == '*' || c == '.'))
}

/// The warning for plugin `id` whose effective grants are `effective`, if they amount to the
/// host's authority.
pub fn authority_warning(
    policy: &Policy,
    id: &PluginId,
    effective: &[Capability],
) -> Option<AuthorityWarning> {
    let granted = &policy.for_plugin(id).grants;
    let mut grants = Vec::new();
    for kind in AUTHORITY {
        let held = effective.iter().find(|c| c.kind() == kind && wide(c))?;
        let granted_at = granted
            .iter()
            .enumerate()
            .filter(|(_, g)| covers(std::slice::from_ref(*g), kind, held.scope()))
            .map(|(n, _)| {
                (
                    format!("[plugins.{id}] grants[{n}]"),
                    policy.grant_line(id, n),
                )
            })
            .collect();
        grants.push(WideGrant {
            capability: held.clone(),
            granted_at,
        });
    }
    Some(AuthorityWarning {
        plugin: id.clone(),
        grants,
        source: policy.source().map(ToOwned::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicyFormat;

    fn caps(list: &[&str]) -> Vec<Capability> {
        list.iter()
            .map(|c| Capability::parse(c).expect("capability"))
            .collect()
    }

    const ALL: [&str; 4] = [
        "plugins.call:*",
        "service:*.*",
        "http.outbound:*",
        "secrets:*",
    ];

    #[test]
    fn all_four_wide_families_warn_and_name_their_lines() {
        let text = "[plugins.evil]\ngrants = [\n  \"plugins.call:*\",\n  \"service:*.*\",\n  \"http.outbound:*\",\n  \"secrets:*\",\n  \"kv\",\n]\n";
        let policy = crate::Policy::parse(text, PolicyFormat::Toml).expect("valid");
        let id = PluginId::new("evil").expect("id");
        let warning = authority_warning(&policy, &id, &caps(&ALL)).expect("warns");
        assert_eq!(warning.lines(), [3, 4, 5, 6]);
        let text = warning.to_string();
        assert!(text.contains("secrets:* at line 6"), "{text}");
        // A JSON policy names keys.
        let json = r#"{"plugins":{"evil":{"grants":["plugins.call:*","service:*.*","http.outbound:*","secrets:*"]}}}"#;
        let policy = crate::Policy::parse(json, PolicyFormat::Json).expect("valid");
        let warning = authority_warning(&policy, &id, &caps(&ALL)).expect("warns");
        assert!(warning.lines().is_empty());
        assert!(
            warning.to_string().contains("[plugins.evil] grants[3]"),
            "{warning}"
        );
    }

    #[test]
    fn a_narrow_or_missing_family_is_not_the_hosts_authority() {
        let policy = crate::Policy::default();
        let id = PluginId::new("p").expect("id");
        for (n, narrow) in [
            "plugins.call:store",
            "service:editor.*",
            "http.outbound:*.example.com",
            "secrets:token*",
        ]
        .into_iter()
        .enumerate()
        {
            let mut grants = ALL.to_vec();
            grants[n] = narrow;
            assert!(
                authority_warning(&policy, &id, &caps(&grants)).is_none(),
                "{narrow}"
            );
            grants.remove(n);
            assert!(authority_warning(&policy, &id, &caps(&grants)).is_none());
        }
        assert!(authority_warning(&policy, &id, &caps(&ALL)).is_some());
    }
}
