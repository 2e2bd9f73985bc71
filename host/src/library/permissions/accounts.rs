//! User and group names, read from `/etc/passwd` and `/etc/group`, so that a policy may name
//! the owners and groups it trusts. Accounts only a directory service knows (LDAP, NIS) are not
//! looked up: the policy names those by numeric id.

use std::path::Path;

/// The file users are listed in.
pub(crate) const PASSWD: &str = "/etc/passwd";
/// The file groups are listed in.
pub(crate) const GROUP: &str = "/etc/group";

/// The uid of the user `name`.
///
/// # Errors
///
/// The file cannot be read, or names no such user; the message says to write the id instead.
pub(crate) fn user_id(name: &str) -> Result<u32, String> {
    id_in(Path::new(PASSWD), "user", name)
}

/// The gid of the group `name`.
///
/// # Errors
///
/// As [`user_id`], for `/etc/group`.
pub(crate) fn group_id(name: &str) -> Result<u32, String> {
    id_in(Path::new(GROUP), "group", name)
}

/// The name of the user `uid`, if `/etc/passwd` has one (for messages).
pub(crate) fn user_name(uid: u32) -> Option<String> {
    let text = std::fs::read_to_string(PASSWD).ok()?;
    name_of(&text, uid).map(str::to_owned)
}

/// The name of the group `gid`, if `/etc/group` has one (for messages).
pub(crate) fn group_name(gid: u32) -> Option<String> {
    let text = std::fs::read_to_string(GROUP).ok()?;
    name_of(&text, gid).map(str::to_owned)
}

fn id_in(file: &Path, kind: &str, name: &str) -> Result<u32, String> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        format!(
            "cannot read {} to find the {kind} {name:?} ({e}); write its numeric id instead",
            file.display()
        )
    })?;
    id_of(&text, name).ok_or_else(|| {
        format!(
            "there is no {kind} {name:?} in {}; write its numeric id instead (accounts a \
             directory service such as LDAP provides are not looked up by name)",
            file.display()
        )
    })
}

/// The entries of a passwd or group file: the name and the id (the first and third fields);
/// comments, NIS `+`/`-` lines and malformed lines left out.
fn entries(text: &str) -> impl Iterator<Item = (&str, u32)> {
    text.lines().filter_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?.trim();
        let id = fields.nth(1)?.trim().parse().ok()?;
        let skip = name.is_empty() || name.starts_with(['#', '+', '-']);
        (!skip).then_some((name, id))
    })
}

fn id_of(text: &str, name: &str) -> Option<u32> {
    entries(text).find(|(n, _)| *n == name).map(|(_, id)| id)
}

fn name_of(text: &str, id: u32) -> Option<&str> {
    entries(text).find(|(_, i)| *i == id).map(|(n, _)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD_TEXT: &str = "# users\nroot:x:0:0:root:/root:/bin/bash\n\
        builder:x:1001:1001:Builder,,,:/home/builder:/bin/sh\n+nis::::::\nbroken:x:notanid:0\n\n";
    const GROUP_TEXT: &str = "root:x:0:\nplugins:x:2001:builder,ci\n";

    #[test]
    fn names_are_found_by_the_first_field_and_ids_by_the_third() {
        assert_eq!(id_of(PASSWD_TEXT, "builder"), Some(1001));
        assert_eq!(id_of(PASSWD_TEXT, "root"), Some(0));
        assert_eq!(id_of(GROUP_TEXT, "plugins"), Some(2001));
        assert_eq!(name_of(GROUP_TEXT, 2001), Some("plugins"));
        assert_eq!(name_of(PASSWD_TEXT, 1001), Some("builder"));
    }

    #[test]
    fn comments_nis_lines_and_malformed_ids_name_nobody() {
        assert_eq!(id_of(PASSWD_TEXT, "# users"), None);
        assert_eq!(id_of(PASSWD_TEXT, "+nis"), None);
        assert_eq!(id_of(PASSWD_TEXT, "broken"), None);
        assert_eq!(id_of(PASSWD_TEXT, "nobody-here"), None);
    }

    #[test]
    fn an_unknown_name_says_where_it_looked_and_what_to_write_instead() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("passwd");
        std::fs::write(&file, PASSWD_TEXT).expect("write");
        assert_eq!(id_in(&file, "user", "builder"), Ok(1001));
        let err = id_in(&file, "user", "ghost").expect_err("unknown");
        assert!(err.contains("\"ghost\"") && err.contains("passwd"), "{err}");
        assert!(err.contains("numeric id"), "{err}");
        let err = id_in(&dir.path().join("missing"), "group", "g").expect_err("unreadable");
        assert!(
            err.contains("cannot read") && err.contains("missing"),
            "{err}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn root_is_found_in_this_systems_files() {
        assert_eq!(user_id("root"), Ok(0));
        assert_eq!(user_name(0).as_deref(), Some("root"));
    }
}
