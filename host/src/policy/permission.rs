//! Per-action permissions: which callers may invoke which actions and hooks of a plugin, as the
//! operator's policy says. Each rule names actions or hooks (globs), callers (patterns) and a
//! decision — `allow`, `deny` or `ask` (the embedding program's approver decides). The first
//! rule that matches decides; a call no rule matches is allowed, so a plugin whose policy has
//! no rules pays nothing on its call path.
//!
//! ```toml
//! [[plugins.notes.permissions]]
//! actions = ["delete*"]
//! callers = ["role:admin"]
//! decision = "allow"
//!
//! [[plugins.notes.permissions]]
//! actions = ["delete*"]
//! decision = "ask"
//! ```

use airlock_abi::manifest::glob_match;
use airlock_abi::wire::CallerInfo;
use serde::{Deserialize, Serialize};

/// What a rule decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// The call runs.
    Allow,
    /// The call is refused with `permission_denied`, and audited.
    Deny,
    /// The embedding program's approver decides: at once, or later (the call answers
    /// `pending_approval` with an id, and the host runs or refuses it when the approver
    /// decides). With no approver registered, `ask` is a denial.
    Ask,
}

/// What a caller pattern matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerPattern {
    /// `*`: anyone.
    Anyone,
    /// `host`: the host program, on behalf of anyone or no one.
    Host,
    /// `user:<glob>`: the host program on behalf of a principal whose id matches.
    User(String),
    /// `role:<role>`: the host program on behalf of a principal with this role.
    Role(String),
    /// `plugin:<glob>`: another plugin whose id matches.
    Plugin(String),
}

impl CallerPattern {
    /// Parses `*`, `host`, `user:<glob>`, `role:<role>` or `plugin:<glob>`.
    ///
    /// # Errors
    ///
    /// What the pattern should look like.
    pub fn parse(text: &str) -> Result<Self, String> {
        let pattern = match text.split_once(':') {
            None if text == "*" => Self::Anyone,
            None if text == "host" => Self::Host,
            Some(("user", glob)) if !glob.is_empty() => Self::User(glob.to_owned()),
            Some(("role", role)) if !role.is_empty() => Self::Role(role.to_owned()),
            Some(("plugin", glob)) if !glob.is_empty() => Self::Plugin(glob.to_owned()),
            _ => {
                return Err(format!(
                    "caller {text:?}: expected \"*\", \"host\", \"user:<id glob>\", \
                     \"role:<role>\" or \"plugin:<id glob>\""
                ))
            }
        };
        Ok(pattern)
    }

    /// Whether `caller` is one this pattern names.
    pub fn matches(&self, caller: &CallerInfo) -> bool {
        match (self, caller) {
            (Self::Anyone, _) | (Self::Host, CallerInfo::Host { .. }) => true,
            (Self::User(glob), CallerInfo::Host { principal: Some(p) }) => glob_match(glob, &p.id),
            (Self::Role(role), CallerInfo::Host { principal: Some(p) }) => {
                p.roles.iter().any(|r| r == role)
            }
            (Self::Plugin(glob), CallerInfo::Plugin { id, .. }) => glob_match(glob, id),
            _ => false,
        }
    }
}

impl std::fmt::Display for CallerPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Anyone => f.write_str("*"),
            Self::Host => f.write_str("host"),
            Self::User(glob) => write!(f, "user:{glob}"),
            Self::Role(role) => write!(f, "role:{role}"),
            Self::Plugin(glob) => write!(f, "plugin:{glob}"),
        }
    }
}

/// What a call is for: an action or a hook of the plugin, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// An action.
    Action(&'a str),
    /// A hook point.
    Hook(&'a str),
}

impl std::fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Action(name) => write!(f, "action:{name}"),
            Self::Hook(name) => write!(f, "hook:{name}"),
        }
    }
}

/// One rule of a plugin's `permissions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionRule {
    /// Globs of the actions it covers.
    pub actions: Vec<String>,
    /// Globs of the hooks it covers.
    pub hooks: Vec<String>,
    /// Whom it covers; empty for anyone.
    pub callers: Vec<CallerPattern>,
    /// What it decides.
    pub decision: Permission,
}

/// A rule as the policy file writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    #[serde(default)]
    actions: Vec<String>,
    #[serde(default)]
    hooks: Vec<String>,
    #[serde(default)]
    callers: Vec<String>,
    decision: Permission,
}

impl PermissionRule {
    /// A rule from the policy file; `at` names it in errors.
    pub(crate) fn from_raw(raw: RawRule, at: &str) -> Result<Self, String> {
        if raw.actions.is_empty() && raw.hooks.is_empty() {
            return Err(format!(
                "{at}: a rule names the actions or hooks it covers (\"actions\" or \"hooks\", \
                 globs such as \"delete*\" or \"*\")"
            ));
        }
        let callers = raw
            .callers
            .iter()
            .map(|c| CallerPattern::parse(c).map_err(|e| format!("{at}: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            actions: raw.actions,
            hooks: raw.hooks,
            callers,
            decision: raw.decision,
        })
    }

    /// Whether the rule covers `target` called by `caller`.
    pub fn matches(&self, target: Target<'_>, caller: &CallerInfo) -> bool {
        let names = match target {
            Target::Action(name) => self.actions.iter().any(|g| glob_match(g, name)),
            Target::Hook(name) => self.hooks.iter().any(|g| glob_match(g, name)),
        };
        names && (self.callers.is_empty() || self.callers.iter().any(|c| c.matches(caller)))
    }
}

/// The decision of the first rule covering `target` for `caller`, and the rule's position;
/// `Allow` (and no position) when none does.
pub fn decide(
    rules: &[PermissionRule],
    target: Target<'_>,
    caller: &CallerInfo,
) -> (Permission, Option<usize>) {
    rules
        .iter()
        .position(|r| r.matches(target, caller))
        .map_or((Permission::Allow, None), |at| {
            (rules[at].decision, Some(at))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_abi::wire::Principal;

    fn rule(actions: &[&str], callers: &[&str], decision: Permission) -> PermissionRule {
        PermissionRule {
            actions: actions.iter().map(|s| (*s).to_owned()).collect(),
            hooks: Vec::new(),
            callers: callers
                .iter()
                .map(|c| CallerPattern::parse(c).expect("pattern"))
                .collect(),
            decision,
        }
    }

    fn host(id: &str, roles: &[&str]) -> CallerInfo {
        CallerInfo::Host {
            principal: Some(Principal::new(id, roles)),
        }
    }

    #[test]
    fn the_first_matching_rule_decides_and_no_rule_allows() {
        let rules = [
            rule(&["delete*"], &["role:admin"], Permission::Allow),
            rule(&["delete*"], &["plugin:*"], Permission::Deny),
            rule(&["delete*"], &[], Permission::Ask),
        ];
        let del = Target::Action("delete_all");
        assert_eq!(
            decide(&rules, del, &host("ada", &["admin"])).0,
            Permission::Allow
        );
        let plugin = CallerInfo::Plugin {
            id: "relay".into(),
            generation: 1,
        };
        assert_eq!(decide(&rules, del, &plugin), (Permission::Deny, Some(1)));
        assert_eq!(decide(&rules, del, &host("bob", &[])).0, Permission::Ask);
        assert_eq!(
            decide(&rules, del, &CallerInfo::Host { principal: None }).0,
            Permission::Ask
        );
        assert_eq!(
            decide(&rules, Target::Action("read"), &plugin),
            (Permission::Allow, None)
        );
        // A rule for actions does not cover a hook of the same name.
        assert_eq!(
            decide(&rules, Target::Hook("delete_all"), &plugin).0,
            Permission::Allow
        );
    }

    #[test]
    fn caller_patterns_parse_and_refuse_what_they_do_not_know() {
        assert_eq!(CallerPattern::parse("*"), Ok(CallerPattern::Anyone));
        assert_eq!(
            CallerPattern::parse("user:a*").map(|p| p.to_string()),
            Ok("user:a*".to_owned())
        );
        for bad in ["", "admin", "role:", "group:x", "plugin"] {
            assert!(CallerPattern::parse(bad).is_err(), "{bad:?}");
        }
        assert!(CallerPattern::parse("user:a*")
            .expect("p")
            .matches(&host("ada", &[])));
        assert!(!CallerPattern::parse("user:a*")
            .expect("p")
            .matches(&host("bob", &[])));
        assert!(!CallerPattern::parse("host")
            .expect("p")
            .matches(&CallerInfo::Plugin {
                id: "x".into(),
                generation: 1
            }));
    }
}
