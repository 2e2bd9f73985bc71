//! The rule on Unix: mode bits and owners, read with `stat`.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::accounts::{group_name, user_name};
use super::{Role, Trusted};

/// One thing wrong with a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Problem {
    /// Every user may write it: never trusted.
    OthersWrite,
    /// Its group may write it, and the group is not trusted.
    GroupWrite,
    /// It is owned by neither the host's user, root, nor a trusted owner.
    Owner,
}

pub(super) fn check(path: &Path, role: Role, trusted: Trusted<'_>) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| {
        format!(
            "{} {} cannot be examined for who may write it ({e}); make it readable by this host",
            role.name(),
            path.display()
        )
    })?;
    let euid = rustix::process::geteuid().as_raw();
    let found = problems(&meta, euid, trusted);
    if found.is_empty() {
        Ok(())
    } else {
        Err(describe(path, role, &meta, euid, &found))
    }
}

pub(super) fn writable_by_others(meta: &Metadata) -> bool {
    meta.mode() & 0o002 != 0
}

/// What is wrong with a file or directory `meta` describes, for a host running as `euid`.
fn problems(meta: &Metadata, euid: u32, trusted: Trusted<'_>) -> Vec<Problem> {
    let mode = meta.mode();
    let mut found = Vec::new();
    // The sticky bit does not help: it stops others removing a file, not adding one.
    if mode & 0o002 != 0 {
        found.push(Problem::OthersWrite);
    }
    if mode & 0o020 != 0 && !trusted.groups.contains(&meta.gid()) {
        found.push(Problem::GroupWrite);
    }
    let uid = meta.uid();
    if uid != euid && uid != 0 && !trusted.owners.contains(&uid) {
        found.push(Problem::Owner);
    }
    found
}

/// The message: which path, its mode and owner, what is wrong and what to do about each.
fn describe(path: &Path, role: Role, meta: &Metadata, euid: u32, found: &[Problem]) -> String {
    let shown = path.display();
    let (uid, gid) = (meta.uid(), meta.gid());
    let quoted = |name: Option<String>, id: u32| name.map_or(id.to_string(), |n| format!("{n:?}"));
    let what: Vec<String> = found
        .iter()
        .map(|problem| match problem {
            Problem::OthersWrite => format!(
                "it is writable by every user, who could put their own code in it (this is never \
                 trusted): run `chmod o-w {shown}`"
            ),
            Problem::GroupWrite => format!(
                "it is writable by its group (gid {gid}), whose members could put their own code \
                 in it: run `chmod g-w {shown}`, or trust the group in the policy: [host] \
                 trusted_groups = [{}]",
                quoted(group_name(gid), gid)
            ),
            Problem::Owner => format!(
                "it is owned by uid {uid}, neither this host's user (uid {euid}) nor root, who \
                 could change it: run `chown {euid} {shown}`, or trust the owner in the policy: \
                 [host] trusted_owners = [{}]",
                quoted(user_name(uid), uid)
            ),
        })
        .collect();
    format!(
        "{} {shown} (mode {:04o}, owner uid {uid}, group gid {gid}) is not safe to load from: {}",
        role.name(),
        meta.mode() & 0o7777,
        what.join("; and ")
    )
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn with_mode(path: &Path, mode: u32) -> Metadata {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        std::fs::metadata(path).expect("stat")
    }

    #[test]
    fn only_the_owner_writing_passes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let euid = rustix::process::geteuid().as_raw();
        let none = Trusted::default();
        assert!(problems(&with_mode(dir.path(), 0o755), euid, none).is_empty());
        assert_eq!(
            problems(&with_mode(dir.path(), 0o1777), euid, none),
            [Problem::OthersWrite, Problem::GroupWrite]
        );
        assert_eq!(
            problems(&with_mode(dir.path(), 0o775), euid, none),
            [Problem::GroupWrite]
        );
    }

    #[test]
    fn a_trusted_group_may_write_but_everyone_never() {
        let dir = tempfile::tempdir().expect("tempdir");
        let euid = rustix::process::geteuid().as_raw();
        let gid = std::fs::metadata(dir.path()).expect("stat").gid();
        let groups = [gid];
        let trusted = Trusted {
            owners: &[],
            groups: &groups,
        };
        assert!(problems(&with_mode(dir.path(), 0o775), euid, trusted).is_empty());
        assert_eq!(
            problems(&with_mode(dir.path(), 0o777), euid, trusted),
            [Problem::OthersWrite]
        );
    }

    #[test]
    fn another_owner_is_refused_unless_trusted() {
        let dir = tempfile::tempdir().expect("tempdir");
        // As root the directory is given to uid 4242; otherwise it stays ours, and is seen from
        // a host running as another user.
        let _ = std::os::unix::fs::chown(dir.path(), Some(4242), None);
        let meta = with_mode(dir.path(), 0o755);
        let host = if meta.uid() == 4242 {
            rustix::process::geteuid().as_raw()
        } else {
            meta.uid() + 1
        };
        assert_eq!(problems(&meta, host, Trusted::default()), [Problem::Owner]);
        let owner = [meta.uid()];
        let trusted = Trusted {
            owners: &owner,
            groups: &[],
        };
        assert!(problems(&meta, host, trusted).is_empty());
    }

    #[test]
    fn the_message_names_the_path_the_mode_and_the_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        with_mode(dir.path(), 0o1777);
        let err = check(dir.path(), Role::Directory, Trusted::default()).expect_err("refused");
        let shown = dir.path().display().to_string();
        assert!(
            err.contains(&format!("the plugin directory {shown}")),
            "{err}"
        );
        assert!(err.contains("mode 1777"), "{err}");
        assert!(err.contains(&format!("chmod o-w {shown}")), "{err}");
        assert!(err.contains(&format!("chmod g-w {shown}")), "{err}");
        assert!(err.contains("trusted_groups"), "{err}");
    }
}
