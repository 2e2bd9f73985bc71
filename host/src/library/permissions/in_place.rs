//! Where a library may be loaded in place, from the descriptor that was hashed, with no sealed
//! copy: only where no user but root and the host's own user can change the bytes or what the
//! path names. ARCHITECTURE.md ("Loading in place") argues the rule; in short:
//! - the file (its descriptor's own `fstat`, not the path) is owned by root or the host's
//!   effective user and writable by neither its group nor others (a POSIX ACL's mask shows in
//!   the group bits, so a named user with write access shows as group-writable) — nor by its
//!   owner, when the owner is the host's own user: installed read-only. That one is not for
//!   security (that user could write the host's memory anyway) but for reliability: a file the
//!   host's user may write is one a `cp` over it rewrites in place, changing the code a running
//!   generation executes, which the sealed copy never lets happen (a reload of a broken build
//!   leaves the old generation serving);
//! - every directory of its real path, from `/` down, is owned by root or the host's user and
//!   writable by neither its group nor others — except a sticky directory (`/tmp`), whose
//!   entry below it is then owned by root or the host's user: others may add names there but
//!   not rename or remove that one;
//! - it lives on a local file system whose bytes are what the kernel holds (not FUSE, not a
//!   network file system, whose server could answer a second read differently).
//!
//! The host's own user is accepted because it could rewrite the host's memory anyway; root,
//! because it can do anything. Trusted owners and groups (`[host] trusted_owners`,
//! `trusted_groups`) are enough for stage 1, not here: they are other users.

use std::fs::{File, Metadata};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What the rule reads of a file or directory: its owner and mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owned {
    /// The owner's uid.
    pub uid: u32,
    /// The mode bits (`st_mode`).
    pub mode: u32,
}

impl Owned {
    fn of(meta: &Metadata) -> Self {
        Self {
            uid: meta.uid(),
            mode: meta.mode(),
        }
    }
}

const GROUP_OR_OTHER_WRITE: u32 = 0o022;
const OWNER_WRITE: u32 = 0o200;
const STICKY: u32 = 0o1000;

/// Whether root or the host's own user owns it.
fn owner_ok(owned: Owned, euid: u32) -> bool {
    owned.uid == 0 || owned.uid == euid
}

/// The rule for the library itself, on its descriptor's metadata.
pub(crate) fn file_rule(file: Owned, euid: u32) -> Result<(), String> {
    if !owner_ok(file, euid) {
        return Err(format!(
            "it is owned by uid {}, neither root nor this host's user (uid {euid})",
            file.uid
        ));
    }
    if file.mode & GROUP_OR_OTHER_WRITE != 0 {
        return Err(format!(
            "its group or other users may write it (mode {:04o})",
            file.mode & 0o7777
        ));
    }
    if file.uid == euid && file.mode & OWNER_WRITE != 0 {
        return Err(format!(
            "this host's own user (uid {euid}) owns it and may write it (mode {:04o}): a copy \
             written over it would change the code of the generation running from it; install \
             it read-only (chmod a-w) to load it in place",
            file.mode & 0o7777
        ));
    }
    Ok(())
}

/// The rule for a directory above the library, whose entry on the way down (the next
/// directory, or the library) is `below`.
pub(crate) fn dir_rule(dir: Owned, below: Owned, euid: u32) -> Result<(), String> {
    if !owner_ok(dir, euid) {
        return Err(format!(
            "it is owned by uid {}, neither root nor this host's user (uid {euid}), who could \
             rename what it holds",
            dir.uid
        ));
    }
    if dir.mode & GROUP_OR_OTHER_WRITE == 0 {
        return Ok(());
    }
    let mode = dir.mode & 0o7777;
    if dir.mode & STICKY == 0 {
        return Err(format!(
            "its group or other users may write it (mode {mode:04o}) and could replace what it \
             holds"
        ));
    }
    if !owner_ok(below, euid) {
        return Err(format!(
            "it is sticky and writable by others (mode {mode:04o}), and the entry below it is \
             owned by uid {}, who could replace it",
            below.uid
        ));
    }
    Ok(())
}

/// File systems whose bytes are the kernel's own (`statfs` magic numbers): disk file systems,
/// memory file systems and overlays of them. FUSE and network file systems are left out: their
/// server answers every read, and could answer the dynamic linker's otherwise than the hash's.
const LOCAL_FILE_SYSTEMS: &[(i64, &str)] = &[
    (0xEF53, "ext2/3/4"),
    (0x5846_5342, "xfs"),
    (0x9123_683E, "btrfs"),
    (0x0102_1994, "tmpfs"),
    (0x794C_7630, "overlayfs"),
    (0x7371_7368, "squashfs"),
    (0xE0F5_E1E2, "erofs"),
    (0xF2F5_2010, "f2fs"),
    (0x2FC1_2FC1, "zfs"),
    (0x8584_58F6, "ramfs"),
];

/// Whether `magic` (a `statfs` type) is a local file system.
pub(crate) fn local_file_system(magic: i64) -> bool {
    LOCAL_FILE_SYSTEMS.iter().any(|(m, _)| *m == magic)
}

/// Whether the library open as `file` (whose `fstat` is `meta`) may be loaded in place: its
/// real path if so; otherwise which path broke which rule, as a sentence for reports.
pub(crate) fn check(file: &File, meta: &Metadata) -> Result<PathBuf, String> {
    let euid = rustix::process::geteuid().as_raw();
    let fd_link = format!("/proc/self/fd/{}", file.as_raw_fd());
    let real = std::fs::read_link(&fd_link)
        .map_err(|e| format!("its real path cannot be read from {fd_link} ({e})"))?;
    file_rule(Owned::of(meta), euid).map_err(|why| format!("{}: {why}", real.display()))?;
    let magic = rustix::fs::fstatfs(file)
        .map_err(|e| {
            format!(
                "{}: its file system cannot be examined ({e})",
                real.display()
            )
        })?
        .f_type;
    #[expect(
        clippy::useless_conversion,
        reason = "`f_type`'s width differs between targets"
    )]
    let magic = i64::from(magic);
    if !local_file_system(magic) {
        return Err(format!(
            "{}: it is on a file system (type {magic:#x}) whose server, not this kernel, answers \
             reads (FUSE, a network file system), or one this host does not know",
            real.display()
        ));
    }
    if !real.is_absolute() || real.as_os_str().to_string_lossy().ends_with(" (deleted)") {
        return Err(format!(
            "{}: the file was removed or renamed while it was read",
            real.display()
        ));
    }
    ancestors(&real, Owned::of(meta), euid)?;
    Ok(real)
}

/// The directory rule for every directory of `real` from `/` down; `file` is the library's
/// own owner and mode. Checked top down: once a directory passes, no other user can rename
/// what it holds, so the next one's name means what it meant when it was examined.
fn ancestors(real: &Path, file: Owned, euid: u32) -> Result<(), String> {
    let dirs: Vec<&Path> = real.ancestors().skip(1).collect();
    let mut owned = Vec::with_capacity(dirs.len());
    for dir in dirs.iter().rev() {
        // `real` is resolved: a directory on it that is a symlink now was swapped in since.
        let meta = std::fs::symlink_metadata(dir)
            .map_err(|e| format!("{}: cannot be examined ({e})", dir.display()))?;
        if !meta.is_dir() {
            return Err(format!(
                "{}: no longer a directory (it was replaced while the library was read)",
                dir.display()
            ));
        }
        owned.push(Owned::of(&meta));
    }
    owned.push(file);
    for (at, dir) in dirs.iter().rev().enumerate() {
        dir_rule(owned[at], owned[at + 1], euid)
            .map_err(|why| format!("{} (above the library): {why}", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EUID: u32 = 1000;
    const OTHER: u32 = 65534;

    fn owned(uid: u32, mode: u32) -> Owned {
        Owned { uid, mode }
    }

    #[test]
    fn a_library_of_root_or_the_hosts_user_that_no_one_else_may_write_passes() {
        for mode in [0o100_755, 0o100_644, 0o100_700, 0o100_555] {
            assert_eq!(file_rule(owned(0, mode), EUID), Ok(()), "{mode:o}");
        }
        for mode in [0o100_555, 0o100_444, 0o100_500] {
            assert_eq!(file_rule(owned(EUID, mode), EUID), Ok(()), "{mode:o}");
        }
    }

    #[test]
    fn a_library_the_hosts_own_user_may_write_is_not_loaded_in_place() {
        // Owned by the host's user with its write bit: a `cp` over it would rewrite the code
        // of the running generation. A host running as root reads root's files that way.
        for (uid, euid) in [(EUID, EUID), (0, 0)] {
            for mode in [0o100_755, 0o100_644, 0o100_700] {
                let err = file_rule(owned(uid, mode), euid).expect_err("owner may write");
                assert!(
                    err.contains("read-only") && err.contains("chmod a-w"),
                    "{err}"
                );
            }
        }
    }

    #[test]
    fn a_library_another_user_owns_or_its_group_or_others_may_write_does_not() {
        let err = file_rule(owned(OTHER, 0o100_755), EUID).expect_err("other owner");
        assert!(
            err.contains("uid 65534") && err.contains("uid 1000"),
            "{err}"
        );
        for mode in [0o100_775, 0o100_757, 0o100_777, 0o100_664, 0o100_646] {
            let err = file_rule(owned(0, mode), EUID).expect_err("writable");
            assert!(err.contains(&format!("{:04o}", mode & 0o7777)), "{err}");
        }
        // The sticky bit means nothing on a file.
        assert!(file_rule(owned(0, 0o101_777), EUID).is_err());
    }

    #[test]
    fn a_directory_others_may_write_fails_unless_sticky_over_an_entry_of_root_or_the_host() {
        let mine = owned(EUID, 0o40_755);
        let theirs = owned(OTHER, 0o40_755);
        assert_eq!(dir_rule(owned(0, 0o40_755), mine, EUID), Ok(()));
        assert_eq!(dir_rule(owned(EUID, 0o40_700), theirs, EUID), Ok(()));
        for mode in [0o40_775, 0o40_777, 0o40_757] {
            let err = dir_rule(owned(0, mode), mine, EUID).expect_err("writable");
            assert!(err.contains("could replace"), "{err}");
        }
        // /tmp: sticky, so others cannot rename or remove an entry they do not own.
        assert_eq!(dir_rule(owned(0, 0o41_777), mine, EUID), Ok(()));
        assert_eq!(
            dir_rule(owned(0, 0o41_777), owned(0, 0o40_755), EUID),
            Ok(())
        );
        assert_eq!(dir_rule(owned(0, 0o41_775), mine, EUID), Ok(()));
        let err = dir_rule(owned(0, 0o41_777), theirs, EUID).expect_err("their entry");
        assert!(err.contains("sticky") && err.contains("uid 65534"), "{err}");
        let err = dir_rule(owned(OTHER, 0o40_755), mine, EUID).expect_err("their directory");
        assert!(err.contains("uid 65534"), "{err}");
        // A sticky directory of another user: its owner may rename anything in it.
        assert!(dir_rule(owned(OTHER, 0o41_777), mine, EUID).is_err());
    }

    #[test]
    fn only_local_file_systems_are_loaded_in_place() {
        assert!(local_file_system(0xEF53));
        assert!(local_file_system(0x0102_1994));
        assert!(!local_file_system(0x6573_5546), "FUSE");
        assert!(!local_file_system(0x6969), "NFS");
        assert!(!local_file_system(0xFF53_4D42), "CIFS");
    }

    #[test]
    fn every_directory_of_the_real_path_is_examined_from_the_root_down() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let euid = rustix::process::geteuid().as_raw();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let inner = open.join("inner");
        std::fs::create_dir(&inner).expect("mkdir");
        let lib = inner.join("lib.so");
        std::fs::write(&lib, b"x").expect("write");
        std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o444)).expect("chmod");
        let file = File::open(&lib).expect("open");
        let meta = file.metadata().expect("fstat");
        let err = check(&file, &meta).expect_err("a directory above it is 0777");
        let shown = open.canonicalize().expect("real").display().to_string();
        assert!(
            err.starts_with(&format!("{shown} (above the library)")),
            "{err}"
        );
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        // Now what the rule says depends on where the temporary directory is, and who owns it:
        // the same rule, applied to the actual directories above it.
        let expected = lib
            .canonicalize()
            .expect("real")
            .ancestors()
            .skip(1)
            .all(|d| {
                let m = std::fs::metadata(d).expect("stat");
                let ok = m.uid() == 0 || m.uid() == euid;
                ok && (m.mode() & 0o022 == 0 || m.mode() & 0o1000 != 0)
            });
        assert_eq!(
            check(&file, &meta).is_ok(),
            expected,
            "{:?}",
            check(&file, &meta)
        );
    }
}
