//! Per-action permissions: which callers may invoke which actions and hooks of a plugin, with
//! what input, as the operator's policy and the plugin's declared permissions say. Each rule
//! names actions or hooks (globs), callers (patterns, [`CallerPattern`]), optionally what the
//! input must hold (`match`, [`InputMatch`]), and a decision — `allow`, `deny` or `ask` (the
//! embedding program's approver decides). The operator's rules come first, then the rules of
//! the permissions the plugin declares ([`declared`]); the first rule that covers the call
//! decides, and a call no rule covers is allowed, so a plugin with no rules pays nothing on
//! its call path.
//!
//! ```toml
//! [[plugins.notes.permissions]]
//! actions = ["delete*"]
//! callers = ["role:admin", "attr:org=acme"]
//! decision = "allow"
//!
//! [[plugins.shell.permissions]]
//! actions = ["run"]
//! match = { "/cmd" = ["git *", "ls *"] }
//! decision = "allow"
//!
//! [[plugins.notes.permissions]]
//! actions = ["delete*"]
//! decision = "ask"
//! ```

mod caller;
pub(crate) mod declared;
mod input;

use std::collections::BTreeMap;

use airlock_abi::manifest::glob_match;
use airlock_abi::wire::CallerInfo;
use serde::{Deserialize, Serialize};

pub use caller::CallerPattern;
pub use input::{InputCheck, InputMatch};

use input::{Input, RawGlobs};

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

/// Where a rule comes from, to name it in refusals, audit records and explanations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleOrigin {
    /// The operator's policy: `[[plugins.<id>.permissions]]`, the `index`th (from 0), written
    /// on `line` of the file when it is TOML.
    Policy {
        /// The plugin id it is written under.
        plugin: String,
        /// Its position among the plugin's rules.
        index: usize,
        /// The line it starts on (1-based), when known.
        line: Option<usize>,
    },
    /// A permission the plugin's manifest declares, with its default roles.
    Declared {
        /// The permission's name.
        permission: String,
        /// The roles that hold it by default.
        roles: Vec<String>,
    },
    /// Built by the embedding program in code.
    Code,
}

impl std::fmt::Display for RuleOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Policy {
                plugin,
                index,
                line,
            } => {
                write!(f, "[plugins.{plugin}] permissions[{index}]")?;
                match line {
                    Some(line) => write!(f, ", line {line}"),
                    None => Ok(()),
                }
            }
            Self::Declared { permission, roles } if roles.is_empty() => write!(
                f,
                "the plugin's permission {permission:?}, held by no role by default"
            ),
            Self::Declared { permission, roles } => write!(
                f,
                "the plugin's permission {permission:?}, held by default by role {}",
                roles.join(", role ")
            ),
            Self::Code => f.write_str("a rule of the host program"),
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
    /// What the call's input must hold (`match`); empty for any input. All must hold.
    pub inputs: Vec<InputMatch>,
    /// What it decides.
    pub decision: Permission,
    /// Where it was written.
    pub origin: RuleOrigin,
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
    #[serde(default, rename = "match")]
    matches: BTreeMap<String, RawGlobs>,
    decision: Permission,
}

/// How one rule met a call, in the order [`explain`] reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleCheck {
    /// It names neither this action nor this hook.
    OtherTarget,
    /// It covers other callers.
    OtherCaller,
    /// Its `match` does not hold for this input (the pointer whose string differs).
    OtherInput(String),
    /// Its `match` cannot be read from this input: the call is refused, for this reason.
    Unreadable(String),
    /// It covers the call: its decision is the answer.
    Covers,
}

/// What the rules decide for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// The answer: the deciding rule's decision, `Deny` when its `match` cannot be read, or
    /// `Allow` when no rule covers the call.
    pub permission: Permission,
    /// The deciding rule's position, if a rule decided.
    pub rule: Option<usize>,
    /// Why the input could not be read, when that is why the call is refused.
    pub unreadable: Option<String>,
}

impl PermissionRule {
    /// A rule the embedding program builds in code: these actions, for anyone, any input.
    pub fn new(actions: &[&str], decision: Permission) -> Self {
        Self {
            actions: actions.iter().map(|a| (*a).to_owned()).collect(),
            hooks: Vec::new(),
            callers: Vec::new(),
            inputs: Vec::new(),
            decision,
            origin: RuleOrigin::Code,
        }
    }

    /// A rule from the policy file; `origin` names it, in errors too.
    pub(crate) fn from_raw(raw: RawRule, origin: RuleOrigin) -> Result<Self, String> {
        let at = &match &origin {
            RuleOrigin::Policy {
                plugin,
                index,
                line: Some(line),
            } => format!("[plugins.{plugin}] permissions[{index}] (line {line})"),
            other => other.to_string(),
        };
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
        let inputs = raw
            .matches
            .into_iter()
            .map(|(pointer, globs)| InputMatch::from_raw(pointer, globs, at))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            actions: raw.actions,
            hooks: raw.hooks,
            callers,
            inputs,
            decision: raw.decision,
            origin,
        })
    }

    /// Whether the rule names `target` and covers `caller` (its `match` aside).
    pub fn matches(&self, target: Target<'_>, caller: &CallerInfo) -> bool {
        self.meets(target, caller).is_none()
    }

    /// How the rule meets `target` and `caller`: `None` when it names the one and covers the
    /// other, or the step that says why not.
    fn meets(&self, target: Target<'_>, caller: &CallerInfo) -> Option<RuleCheck> {
        let names = match target {
            Target::Action(name) => self.actions.iter().any(|g| glob_match(g, name)),
            Target::Hook(name) => self.hooks.iter().any(|g| glob_match(g, name)),
        };
        if !names {
            Some(RuleCheck::OtherTarget)
        } else if self.callers.is_empty() || self.callers.iter().any(|c| c.matches(caller)) {
            None
        } else {
            Some(RuleCheck::OtherCaller)
        }
    }

    fn check(&self, target: Target<'_>, caller: &CallerInfo, input: &Input<'_>) -> RuleCheck {
        if let Some(other) = self.meets(target, caller) {
            return other;
        }
        match input.check(&self.inputs) {
            InputCheck::Matches => RuleCheck::Covers,
            InputCheck::Differs { pointer } => RuleCheck::OtherInput(pointer),
            InputCheck::Unreadable(why) => RuleCheck::Unreadable(why),
        }
    }
}

/// What the first rule covering `target` for `caller` with `input` decides: its decision, or
/// a denial when its `match` cannot be read from the input; `Allow` (and no rule) when none
/// covers the call. The input is parsed only if a rule with a `match` is reached.
pub fn decide(
    rules: &[PermissionRule],
    target: Target<'_>,
    caller: &CallerInfo,
    input: &[u8],
) -> Decided {
    walk(rules, target, caller, input, |_| {})
}

/// How each rule, up to the deciding one, met the call, and what was decided: what
/// `airlock inspect --policy` prints.
pub fn explain(
    rules: &[PermissionRule],
    target: Target<'_>,
    caller: &CallerInfo,
    input: &[u8],
) -> (Vec<RuleCheck>, Decided) {
    let mut steps = Vec::new();
    let decided = walk(rules, target, caller, input, |step| {
        steps.push(step.clone())
    });
    (steps, decided)
}

/// The rules in order until one decides, each step shown to `seen`.
fn walk(
    rules: &[PermissionRule],
    target: Target<'_>,
    caller: &CallerInfo,
    input: &[u8],
    mut seen: impl FnMut(&RuleCheck),
) -> Decided {
    let input = Input::new(input);
    for (at, rule) in rules.iter().enumerate() {
        let step = rule.check(target, caller, &input);
        seen(&step);
        match step {
            RuleCheck::Covers => {
                return Decided {
                    permission: rule.decision,
                    rule: Some(at),
                    unreadable: None,
                }
            }
            RuleCheck::Unreadable(why) => {
                return Decided {
                    permission: Permission::Deny,
                    rule: Some(at),
                    unreadable: Some(why),
                }
            }
            _ => {}
        }
    }
    Decided {
        permission: Permission::Allow,
        rule: None,
        unreadable: None,
    }
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
            inputs: Vec::new(),
            decision,
            origin: RuleOrigin::Code,
        }
    }

    fn host(id: &str, roles: &[&str]) -> CallerInfo {
        CallerInfo::Host {
            principal: Some(Principal::new(id, roles)),
        }
    }

    fn permission(rules: &[PermissionRule], target: Target<'_>, caller: &CallerInfo) -> Permission {
        decide(rules, target, caller, b"null").permission
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
            permission(&rules, del, &host("ada", &["admin"])),
            Permission::Allow
        );
        let plugin = CallerInfo::Plugin {
            id: "relay".into(),
            generation: 1,
        };
        let denied = decide(&rules, del, &plugin, b"null");
        assert_eq!(
            (denied.permission, denied.rule),
            (Permission::Deny, Some(1))
        );
        assert_eq!(permission(&rules, del, &host("bob", &[])), Permission::Ask);
        let nobody = CallerInfo::Host { principal: None };
        assert_eq!(permission(&rules, del, &nobody), Permission::Ask);
        let read = decide(&rules, Target::Action("read"), &plugin, b"null");
        assert_eq!((read.permission, read.rule), (Permission::Allow, None));
        // A rule for actions does not cover a hook of the same name.
        assert_eq!(
            permission(&rules, Target::Hook("delete_all"), &plugin),
            Permission::Allow
        );
    }

    fn shell_rules() -> Vec<PermissionRule> {
        let policy = crate::Policy::parse(
            r#"
            [[plugins.shell.permissions]]
            actions = ["run"]
            match = { "/cmd" = ["*;*", "*&*", "*|*"] }
            decision = "deny"

            [[plugins.shell.permissions]]
            actions = ["run"]
            callers = ["attr:org=acme"]
            match = { "/cmd" = "git *" }
            decision = "allow"

            [[plugins.shell.permissions]]
            actions = ["run"]
            decision = "deny"
            "#,
            crate::policy::PolicyFormat::Toml,
        )
        .expect("valid");
        let id = airlock_abi::manifest::PluginId::new("shell").expect("id");
        policy.for_plugin(&id).permissions.clone()
    }

    #[test]
    fn input_and_attributes_decide_together_and_what_cannot_be_read_is_denied() {
        let rules = shell_rules();
        let acme = CallerInfo::Host {
            principal: Some(Principal::new("ada", &[]).with_attribute("org", "acme")),
        };
        let other = CallerInfo::Host {
            principal: Some(Principal::new("ada", &[]).with_attribute("org", "initech")),
        };
        let run = Target::Action("run");
        let at = |caller: &CallerInfo, input: &str| decide(&rules, run, caller, input.as_bytes());
        assert_eq!(
            at(&acme, r#"{"cmd":"git status"}"#).permission,
            Permission::Allow
        );
        assert_eq!(at(&acme, r#"{"cmd":"git status"}"#).rule, Some(1));
        for denied in [
            r#"{"cmd":"gitx status"}"#,
            r#"{"cmd":"rm -rf / ; git status"}"#,
            r#"{"cmd":"git status; rm -rf /"}"#,
            r#"{"cmd":"git log | sh"}"#,
        ] {
            assert_eq!(at(&acme, denied).permission, Permission::Deny, "{denied}");
        }
        assert_eq!(at(&other, r#"{"cmd":"git status"}"#).rule, Some(2));
        for (input, says) in [
            ("git status", "not JSON"),
            (r#"{"command":"git status"}"#, "nothing at"),
            (r#"{"cmd":["git","status"]}"#, "an array"),
        ] {
            let decided = at(&acme, input);
            assert_eq!(decided.permission, Permission::Deny, "{input}");
            assert_eq!(decided.rule, Some(0), "the first rule reading /cmd refuses");
            assert!(decided.unreadable.expect("why").contains(says), "{input}");
        }
        // Another action is not read at all: no rule names it.
        let other_action = decide(&rules, Target::Action("list"), &acme, b"not json");
        assert_eq!(
            (other_action.permission, other_action.rule),
            (Permission::Allow, None)
        );
        assert!(
            matches!(
                rules[1].origin,
                RuleOrigin::Policy {
                    index: 1,
                    line: Some(7),
                    ..
                }
            ),
            "{:?}",
            rules[1].origin
        );
    }

    #[test]
    fn explain_walks_the_rules_up_to_the_one_that_decides() {
        let rules = shell_rules();
        let other = CallerInfo::Host {
            principal: Some(Principal::new("bob", &[]).with_attribute("org", "initech")),
        };
        let (steps, decided) = explain(
            &rules,
            Target::Action("run"),
            &other,
            br#"{"cmd":"git status"}"#,
        );
        assert_eq!(
            steps,
            [
                RuleCheck::OtherInput("/cmd".into()),
                RuleCheck::OtherCaller,
                RuleCheck::Covers
            ]
        );
        assert_eq!(
            (decided.permission, decided.rule),
            (Permission::Deny, Some(2))
        );
    }
}
