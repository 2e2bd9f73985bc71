//! Files that are not what their suffix says: each is refused with its reason, from the file
//! alone, and the good plugin beside it still loads.

use std::process::Command;

use airlock_tests::{fixture_bytes, reason_of, set_mode, TempPluginDir};
use object::{Object, ObjectSection};

/// Where the manifest section starts in a library file.
fn manifest_section_offset(bytes: &[u8]) -> usize {
    let file = object::File::parse(bytes).expect("a library");
    let section = file
        .section_by_name(airlock_abi::abi::BLOCK_SECTION)
        .expect("a manifest section");
    let (offset, _) = section.file_range().expect("in the file");
    usize::try_from(offset).expect("fits")
}

fn lib(stem: &str) -> String {
    TempPluginDir::lib_name(stem)
}

/// Loads `dir` (which also holds `hello`) and asserts `file` got `reason` and hello loaded.
fn assert_refused(dir: &TempPluginDir, file: &str, reason: &str) {
    dir.add("hello");
    let (host, report) = dir.load("");
    assert_eq!(reason_of(&report, file), Some(reason), "{report:#?}");
    assert!(
        host.plugin("hello").is_some(),
        "hello must still load: {report:#?}"
    );
}

#[test]
fn empty_file_is_not_a_library() {
    let dir = TempPluginDir::new();
    dir.add_bytes(&lib("empty"), b"");
    assert_refused(&dir, &lib("empty"), "not_a_library");
}

#[test]
fn random_bytes_are_not_a_library() {
    let dir = TempPluginDir::new();
    let bytes: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    dir.add_bytes(&lib("random"), &bytes);
    assert_refused(&dir, &lib("random"), "not_a_library");
}

#[test]
fn truncated_libraries_are_refused_as_truncated_at_every_cut() {
    let bytes = fixture_bytes("hello");
    let len = bytes.len();
    let dir = TempPluginDir::new();
    let cuts = [
        5,
        20,
        63,
        64,
        200,
        4096,
        len / 3,
        len / 2,
        len - 4096,
        len - 100,
        len - 1,
    ];
    for cut in cuts {
        dir.add_bytes(&lib(&format!("cut-{cut}")), &bytes[..cut]);
    }
    dir.add("hello");
    let (host, report) = dir.load("");
    for cut in cuts {
        assert_eq!(
            reason_of(&report, &lib(&format!("cut-{cut}"))),
            Some("truncated"),
            "cut at {cut} of {len}"
        );
    }
    assert!(host.plugin("hello").is_some());
}

#[test]
fn oversized_files_are_refused_by_the_cap() {
    let dir = TempPluginDir::with(&["hello"]);
    let host = airlock::Host::builder()
        .plugin_dir(dir.path())
        .max_library_size(1024)
        .build()
        .expect("host");
    let report = host.load().expect("loaded");
    assert_eq!(reason_of(&report, &lib("hello")), Some("too_large"));
}

#[cfg(unix)]
#[test]
fn world_writable_files_and_directories_are_refused() {
    let dir = TempPluginDir::new();
    let file = dir.add_as("counter", &lib("writable"));
    set_mode(&file, 0o777);
    assert_refused(&dir, &lib("writable"), "unsafe_permissions");

    let open_dir = TempPluginDir::with(&["hello"]);
    set_mode(open_dir.path(), 0o777);
    let (host, report) = open_dir.load("");
    assert_eq!(
        reason_of(&report, &lib("hello")),
        Some("unsafe_permissions")
    );
    assert!(host.plugins().is_empty());
}

#[cfg(unix)]
#[test]
fn symlinks_leaving_the_directory_are_refused_and_inside_ones_followed() {
    let outside = TempPluginDir::with(&["counter"]);
    let dir = TempPluginDir::new();
    std::os::unix::fs::symlink(
        outside.path().join(lib("counter")),
        dir.path().join(lib("escape")),
    )
    .expect("symlink");
    dir.add_bytes("counter.bin", &fixture_bytes("counter"));
    std::os::unix::fs::symlink(
        dir.path().join("counter.bin"),
        dir.path().join(lib("inside")),
    )
    .expect("symlink");
    dir.add("hello");
    let (host, report) = dir.load("");
    assert_eq!(
        reason_of(&report, &lib("escape")),
        Some("unsafe_permissions")
    );
    assert_eq!(reason_of(&report, &lib("inside")), None, "{report:#?}");
    assert!(host.plugin("counter").is_some());
}

#[cfg(unix)]
#[test]
fn directories_and_fifos_with_the_suffix_are_refused_without_hanging() {
    let dir = TempPluginDir::new();
    std::fs::create_dir(dir.path().join(lib("a-directory"))).expect("mkdir");
    let status = Command::new("mkfifo")
        .arg(dir.path().join(lib("a-fifo")))
        .status()
        .expect("mkfifo runs");
    assert!(status.success());
    dir.add("hello");
    let (host, report) = dir.load("");
    assert_eq!(
        reason_of(&report, &lib("a-directory")),
        Some("not_a_library")
    );
    assert_eq!(reason_of(&report, &lib("a-fifo")), Some("not_a_library"));
    assert!(host.plugin("hello").is_some());
}

#[test]
fn a_corrupt_manifest_block_is_bad_manifest() {
    // Flip the block's header version inside a real library: the file is whole, the block is not.
    let mut bytes = fixture_bytes("hello");
    let at = manifest_section_offset(&bytes);
    assert_eq!(bytes[at..at + 8], airlock_abi::abi::BLOCK_MAGIC);
    bytes[at + 8] = 99;
    let dir = TempPluginDir::new();
    dir.add_bytes(&lib("corrupt"), &bytes);
    dir.add("counter");
    let (host, report) = dir.load("");
    assert_eq!(reason_of(&report, &lib("corrupt")), Some("bad_manifest"));
    assert!(host.plugin("counter").is_some());
}
