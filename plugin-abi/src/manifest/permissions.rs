//! The permissions a plugin defines (`"permissions"` in `plugin.json`): each a name, the
//! actions and hooks it guards, and the roles that hold it by default. The host turns them into
//! permission rules placed after the operator's own for the plugin, so the operator's rules
//! override them: a caller on behalf of a principal with one of the roles is allowed; any other
//! principal, and any other plugin, is denied; the host program on its own account (no
//! principal) is not bound by them.
//!
//! ```json
//! "permissions": [
//!   {"name": "shell.run", "description": "Run a command", "actions": ["run"], "roles": ["operator"]}
//! ]
//! ```

use serde::{Deserialize, Serialize};

use super::{ActionDecl, HookDecl, ManifestError};

/// One permission a plugin defines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionDecl {
    /// Its name (`shell.run`): 1 to 64 characters of a-z, A-Z, 0-9, `-`, `_` and `.`.
    pub name: String,
    /// What holding it lets a caller do, shown to operators.
    #[serde(default)]
    pub description: String,
    /// The actions it guards, by name: each declared by the manifest, and guarded by no other
    /// permission.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
    /// The hooks it guards, by name, under the same rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<String>,
    /// The roles that hold it unless the operator decides otherwise (none: only callers the
    /// operator's rules allow).
    #[serde(default)]
    pub roles: Vec<String>,
}

/// Checks the declared permissions against the rules above.
pub(super) fn check_permissions(
    permissions: &[PermissionDecl],
    actions: &[ActionDecl],
    hooks: &[HookDecl],
) -> Result<(), ManifestError> {
    let err = |m: String| Err(ManifestError(m));
    super::validate::check_names("permission", permissions.iter().map(|p| p.name.as_str()))?;
    let mut guarded: Vec<(&str, &str, &str)> = Vec::new();
    for p in permissions {
        if p.actions.is_empty() && p.hooks.is_empty() {
            return err(format!(
                "permission {:?} guards nothing: name its \"actions\" or \"hooks\"",
                p.name
            ));
        }
        for (what, name) in p
            .actions
            .iter()
            .map(|a| ("action", a.as_str()))
            .chain(p.hooks.iter().map(|h| ("hook", h.as_str())))
        {
            let declared = match what {
                "action" => actions.iter().any(|a| a.name == name),
                _ => hooks.iter().any(|h| h.name == name),
            };
            if !declared {
                return err(format!(
                    "permission {:?} names {what} {name:?}, which the manifest does not declare",
                    p.name
                ));
            }
            if let Some((_, _, other)) = guarded.iter().find(|(w, n, _)| *w == what && *n == name) {
                return err(format!(
                    "{what} {name:?} is guarded by two permissions, {other:?} and {:?}",
                    p.name
                ));
            }
            guarded.push((what, name, &p.name));
        }
        if let Some(bad) = p
            .roles
            .iter()
            .find(|r| r.is_empty() || r.len() > 64 || r.chars().any(|c| c.is_control() || c == ':'))
        {
            return err(format!(
                "permission {:?}: role {bad:?} must be 1 to 64 printable characters without ':'",
                p.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::manifest::Manifest;

    fn with(permissions: &str) -> Result<Manifest, crate::manifest::ManifestError> {
        Manifest::from_json(&format!(
            r#"{{"id":"p","version":"1.0.0","actions":[{{"name":"run"}},{{"name":"read"}}],
                "hooks":[{{"name":"input.transform"}}],"permissions":{permissions}}}"#
        ))
    }

    #[test]
    fn declared_permissions_are_read_and_checked() {
        let ok = with(
            r#"[{"name":"shell.run","description":"runs","actions":["run"],"roles":["operator"]},
                {"name":"hooked","hooks":["input.transform"]}]"#,
        )
        .expect("valid");
        assert_eq!(ok.permissions[0].roles, ["operator"]);
        assert!(ok.permissions[1].roles.is_empty());
        for (bad, says) in [
            (r#"[{"name":"x","roles":["a"]}]"#, "guards nothing"),
            (r#"[{"name":"x","actions":["nope"]}]"#, "does not declare"),
            (r#"[{"name":"x","hooks":["run"]}]"#, "hook \"run\""),
            (
                r#"[{"name":"x","actions":["run"]},{"name":"y","actions":["run"]}]"#,
                "two permissions",
            ),
            (
                r#"[{"name":"x","actions":["run"]},{"name":"x","actions":["read"]}]"#,
                "declared twice",
            ),
            (r#"[{"name":"a b","actions":["run"]}]"#, "permission name"),
            (
                r#"[{"name":"x","actions":["run"],"roles":["role:admin"]}]"#,
                "without ':'",
            ),
            (r#"[{"name":"x","actions":["run"],"roles":[""]}]"#, "role"),
            (r#"[{"name":"x","actions":["r*"]}]"#, "does not declare"),
            (
                r#"[{"name":"x","actions":["run"],"role":["a"]}]"#,
                "unknown field",
            ),
        ] {
            let err = with(bad).expect_err(bad);
            assert!(err.0.contains(says), "{bad}: {err}");
        }
    }
}
