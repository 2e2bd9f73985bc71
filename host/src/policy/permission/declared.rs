//! The rules a plugin's declared permissions (`"permissions"` in `plugin.json`) stand for,
//! placed after the operator's own rules for the plugin so that the operator's override them:
//! for each permission, callers on behalf of a principal with one of its roles are allowed,
//! and every other principal and every plugin are denied. The host program on its own account
//! (no principal) is covered by neither rule, so its calls go through as they always did; a
//! route request without a principal is not that caller, but the principal `anonymous`.

use airlock_abi::manifest::PermissionDecl;

use super::{CallerPattern, Permission, PermissionRule, RuleOrigin};

/// The operator's `rules` followed by those of the plugin's `declared` permissions.
pub fn with_declared(rules: &[PermissionRule], declared: &[PermissionDecl]) -> Vec<PermissionRule> {
    let mut all = rules.to_vec();
    for p in declared {
        let origin = RuleOrigin::Declared {
            permission: p.name.clone(),
            roles: p.roles.clone(),
        };
        let rule = |callers: Vec<CallerPattern>, decision| PermissionRule {
            actions: p.actions.clone(),
            hooks: p.hooks.clone(),
            callers,
            inputs: Vec::new(),
            decision,
            origin: origin.clone(),
        };
        if !p.roles.is_empty() {
            let holders = p.roles.iter().cloned().map(CallerPattern::Role).collect();
            all.push(rule(holders, Permission::Allow));
        }
        let others = vec![
            CallerPattern::User("*".to_owned()),
            CallerPattern::Plugin("*".to_owned()),
        ];
        all.push(rule(others, Permission::Deny));
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::permission::{decide, Target};
    use airlock_abi::wire::{CallerInfo, Principal};

    #[test]
    fn default_roles_hold_a_declared_permission_and_the_operator_overrides_them() {
        let declared = [PermissionDecl {
            name: "shell.run".into(),
            description: String::new(),
            actions: vec!["run".into()],
            hooks: Vec::new(),
            roles: vec!["operator".into()],
        }];
        let as_user = |roles: &[&str]| CallerInfo::Host {
            principal: Some(Principal::new("ada", roles)),
        };
        let run = Target::Action("run");
        let rules = with_declared(&[], &declared);
        let at = |rules: &[PermissionRule], caller: &CallerInfo| {
            decide(rules, run, caller, b"{}").permission
        };
        assert_eq!(at(&rules, &as_user(&["operator"])), Permission::Allow);
        assert_eq!(at(&rules, &as_user(&["viewer"])), Permission::Deny);
        let plugin = CallerInfo::Plugin {
            id: "relay".into(),
            generation: 1,
        };
        assert_eq!(at(&rules, &plugin), Permission::Deny);
        assert_eq!(
            at(&rules, &CallerInfo::Host { principal: None }),
            Permission::Allow
        );
        // The operator gives it to viewers and takes it from operators.
        let mut operator = vec![PermissionRule::new(&["run"], Permission::Allow)];
        operator[0].callers = vec![CallerPattern::Role("viewer".into())];
        let mut deny = PermissionRule::new(&["run"], Permission::Deny);
        deny.callers = vec![CallerPattern::Role("operator".into())];
        operator.push(deny);
        let rules = with_declared(&operator, &declared);
        assert_eq!(at(&rules, &as_user(&["viewer"])), Permission::Allow);
        assert_eq!(at(&rules, &as_user(&["operator"])), Permission::Deny);
        let decided = decide(&rules, run, &as_user(&["guest"]), b"{}");
        assert!(matches!(
            &rules[decided.rule.expect("a rule")].origin,
            RuleOrigin::Declared { permission, .. } if permission == "shell.run"
        ));
    }
}
