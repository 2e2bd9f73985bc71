//! Stage 1's rule on who may change a library before it is loaded, in the manner of sshd's
//! `StrictModes`: the library and the directory holding it may be writable only by their owner
//! (or by a group the operator trusts), and owned only by the host's user, root, or an owner the
//! operator trusts. Anyone else who can write either could put their own code into the host.

pub(crate) mod accounts;
#[cfg(target_os = "linux")]
pub(crate) mod in_place;
#[cfg(not(unix))]
mod other;
#[cfg(unix)]
mod unix;

use std::path::Path;

#[cfg(not(unix))]
use other as os;
#[cfg(unix)]
use unix as os;

/// The owners and groups the operator trusts to write libraries (the policy's `[host]
/// trusted_owners` and `trusted_groups`, as numeric ids), besides the host's user and root.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Trusted<'a> {
    /// User ids that may own a library or its directory.
    pub owners: &'a [u32],
    /// Group ids whose members may write a library or its directory.
    pub groups: &'a [u32],
}

/// What a path is to the host, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A directory plugins are loaded from.
    Directory,
    /// A library file.
    Library,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Self::Directory => "the plugin directory",
            Self::Library => "the library",
        }
    }
}

/// Whether `path` (followed if a symlink) is safe to load from as `role`: `Err` says what is
/// wrong with it, with its mode and owner, and what to do about it.
pub(crate) fn check(path: &Path, role: Role, trusted: Trusted<'_>) -> Result<(), String> {
    os::check(path, role, trusted)
}

/// Whether users other than the owner and its group may write to the file `meta` describes.
pub(crate) fn writable_by_others(meta: &std::fs::Metadata) -> bool {
    os::writable_by_others(meta)
}
