//! Capabilities: the services a plugin may ask for ([`CapabilityKind`]), each with its scope
//! ([`Capability`]), as the manifest declares them ([`DeclaredCapability`]), and whether the
//! grants an operator gave cover a request ([`covers`]).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The services a capability can open. Logging and reading the plugin's own config need none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum CapabilityKind {
    /// The plugin's own key/value namespace.
    Kv,
    /// Publishing events on topics matching the scope (a glob).
    EventsPublish,
    /// Subscribing to topics matching the scope (a glob).
    EventsSubscribe,
    /// Interval jobs run by the host.
    Timers,
    /// Reading the operator-provided secret named by the scope.
    Secrets,
    /// Calling actions of the plugin named by the scope.
    PluginsCall,
    /// Asking the host program to shut down (`ctx.request_shutdown(..)`): a request the
    /// program decides on. Like every capability, effective only when the operator's policy
    /// grants it by name.
    HostControl,
    /// Calling operations of a service the embedding program offers; the scope is
    /// `<service>.<operation>` (a glob: `editor.*`).
    Service,
    /// Outbound HTTP to the hosts matching the scope (a glob: `api.example.com`,
    /// `*.example.com`); the operator's policy also decides schemes, addresses and limits.
    HttpOutbound,
    /// Listing the plugins the host runs, with their actions, claims and hooks.
    PluginsList,
    /// Dispatching to the plugin that holds the claimed kind named by the scope (a glob).
    Dispatch,
    /// Running the hook point named by the scope (a glob).
    HooksRun,
}

impl CapabilityKind {
    /// Every kind, in a stable order (tests iterate over it).
    pub const ALL: [Self; 12] = [
        Self::Kv,
        Self::EventsPublish,
        Self::EventsSubscribe,
        Self::Timers,
        Self::Secrets,
        Self::PluginsCall,
        Self::HostControl,
        Self::Service,
        Self::HttpOutbound,
        Self::PluginsList,
        Self::Dispatch,
        Self::HooksRun,
    ];

    /// The name used in manifests and policies.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Kv => "kv",
            Self::EventsPublish => "events.publish",
            Self::EventsSubscribe => "events.subscribe",
            Self::Timers => "timers",
            Self::Secrets => "secrets",
            Self::PluginsCall => "plugins.call",
            Self::HostControl => "host.control",
            Self::Service => "service",
            Self::HttpOutbound => "http.outbound",
            Self::PluginsList => "plugins.list",
            Self::Dispatch => "dispatch",
            Self::HooksRun => "hooks.run",
        }
    }

    /// Whether the capability must carry a `:scope`.
    pub const fn is_scoped(self) -> bool {
        matches!(
            self,
            Self::EventsPublish
                | Self::EventsSubscribe
                | Self::Secrets
                | Self::PluginsCall
                | Self::Service
                | Self::HttpOutbound
                | Self::Dispatch
                | Self::HooksRun
        )
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// A capability: a kind and, for scoped kinds, a scope (`events.publish:ticks.*`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Capability {
    kind: CapabilityKind,
    scope: Option<String>,
}

impl Capability {
    /// Parses `kind` or `kind:scope`.
    ///
    /// # Errors
    ///
    /// A message naming the unknown kind, the missing scope or the unexpected one.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (name, scope) = match text.split_once(':') {
            Some((name, scope)) => (name, Some(scope)),
            None => (text, None),
        };
        let kind = CapabilityKind::from_name(name).ok_or_else(|| {
            let known: Vec<_> = CapabilityKind::ALL.iter().map(|k| k.name()).collect();
            format!(
                "unknown capability {name:?}; known capabilities are {}",
                known.join(", ")
            )
        })?;
        match (kind.is_scoped(), scope) {
            (true, None) | (true, Some("")) => Err(format!(
                "capability {name:?} needs a scope, as in \"{name}:<name or glob>\""
            )),
            (false, Some(_)) => Err(format!("capability {name:?} takes no scope")),
            (_, scope) => {
                if let Some(s) = scope {
                    if s.len() > 256 || s.chars().any(char::is_control) {
                        return Err(format!(
                            "the scope of capability {name:?} must be at most 256 printable characters"
                        ));
                    }
                }
                Ok(Self {
                    kind,
                    scope: scope.map(str::to_owned),
                })
            }
        }
    }

    /// The kind of service.
    pub fn kind(&self) -> CapabilityKind {
        self.kind
    }

    /// The scope, for scoped kinds.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scope {
            Some(scope) => write!(f, "{}:{scope}", self.kind.name()),
            None => f.write_str(self.kind.name()),
        }
    }
}

impl Serialize for Capability {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Capability {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// One capability as the manifest declares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeclaredCapability {
    /// What the plugin asks for.
    pub capability: Capability,
    /// If true, the plugin is refused (`not_granted`) unless the operator grants it.
    pub required: bool,
    /// Why the plugin needs it, shown to operators.
    pub reason: Option<String>,
}

/// Whether `grants` allow using `kind` on `scope` (`None` for unscoped kinds): a grant of the
/// same kind whose scope glob matches the requested scope.
pub fn covers(grants: &[Capability], kind: CapabilityKind, scope: Option<&str>) -> bool {
    grants.iter().any(|g| {
        g.kind() == kind
            && match (g.scope(), scope) {
                (None, None) => true,
                (Some(pattern), Some(scope)) => glob_match(pattern, scope),
                _ => false,
            }
    })
}

/// Matches `text` against `pattern`, where `*` matches any run of characters (including none).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_rules() {
        assert!(Capability::parse("kv").is_ok());
        assert!(Capability::parse("kv:x").is_err());
        assert!(Capability::parse("secrets").is_err());
        assert!(Capability::parse("secrets:").is_err());
        assert!(Capability::parse("teleport").is_err());
        let c = Capability::parse("plugins.call:hello").expect("valid");
        assert_eq!(c.to_string(), "plugins.call:hello");
    }
}
