//! Loading in place: a library that only root and the host's own user can change (the file and
//! every directory above it) is mapped from the descriptor stage 2 examined and hashed; one
//! another user could change is mapped from a sealed in-memory copy, as before. Each case is
//! proved from the load report and from `/proc/self/maps`, which names what each mapping is
//! of: the library's real path, or the memfd `airlock:<id>`. The suite runs as root; the rule
//! accepts the host's effective user as well, and each expectation is what the rule says for
//! the user the test runs as.
#![cfg(target_os = "linux")]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use airlock::pipeline::Placement;
use airlock::plugins::ReloadOutcome;
use airlock::Reply;
use airlock_tests::{fixture_bytes, reason_of, set_mode, TempPluginDir};

fn euid() -> u32 {
    std::fs::metadata("/proc/self")
        .expect("stat /proc/self")
        .uid()
}

/// What the rule says of `file`, worked out here from its metadata and that of every
/// directory above it: the first path that keeps it out of place, if any.
fn rule_keeps_out(file: &Path) -> Option<PathBuf> {
    let me = euid();
    let ours = |uid: u32| uid == 0 || uid == me;
    let real = std::fs::canonicalize(file).expect("canonical");
    let meta = std::fs::metadata(&real).expect("stat");
    let mut chain: Vec<PathBuf> = real.ancestors().map(Path::to_path_buf).collect();
    chain.reverse();
    for pair in chain.windows(2) {
        let (dir, below) = (&pair[0], &pair[1]);
        let d = std::fs::metadata(dir).expect("stat");
        let b = std::fs::metadata(below).expect("stat");
        let writable = d.mode() & 0o022 != 0;
        let sticky_ok = d.mode() & 0o1000 != 0 && ours(b.uid());
        if !ours(d.uid()) || (writable && !sticky_ok) {
            return Some(dir.clone());
        }
    }
    let writable = meta.mode() & 0o022 != 0 || (meta.uid() == me && meta.mode() & 0o200 != 0);
    (!ours(meta.uid()) || writable).then_some(real)
}

/// `fixtures` copied into a new plugin directory and installed read-only (mode 0555).
fn installed(fixtures: &[&str]) -> TempPluginDir {
    let dir = TempPluginDir::with(fixtures);
    for name in fixtures {
        set_mode(&dir.path().join(TempPluginDir::lib_name(name)), 0o555);
    }
    dir
}

/// The placement the load report gives `file_name`.
fn placement_of(report: &airlock::LoadReport, file_name: &str) -> Placement {
    report
        .plugins
        .iter()
        .find(|p| p.file.file_name().is_some_and(|n| n == file_name))
        .and_then(|p| p.placement.clone())
        .unwrap_or_else(|| panic!("no placement for {file_name}: {report:#?}"))
}

/// The executable mappings of this process of the file `what` (a path, or a memfd's name as
/// `/memfd:<name> (deleted)`): the name ends each line of `/proc/self/maps`.
fn executable_mappings(what: &str) -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .expect("maps")
        .lines()
        .filter(|l| l.ends_with(what))
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|perms| perms.contains('x'))
        })
        .count()
}

/// Asserts that `file` was loaded from a sealed copy for a reason that names `culprit` and
/// `rule`: the report says so, and no mapping of this process is of the file itself.
fn assert_sealed(report: &airlock::LoadReport, file: &Path, id: &str, culprit: &Path, rule: &str) {
    let name = file.file_name().expect("name").to_string_lossy();
    assert_eq!(reason_of(report, &name), None, "{report:#?}");
    let Placement::SealedCopy { why } = placement_of(report, &name) else {
        panic!("{name} was loaded in place: {report:#?}");
    };
    let culprit = culprit.display().to_string();
    assert!(why.contains(&culprit) && why.contains(rule), "{why}");
    let real = std::fs::canonicalize(file).expect("canonical");
    assert_eq!(
        executable_mappings(&real.display().to_string()),
        0,
        "{} is mapped in place",
        real.display()
    );
    assert!(executable_mappings(&format!("/memfd:airlock:{id} (deleted)")) > 0);
}

#[test]
fn an_installed_library_is_loaded_in_place_from_its_real_path_and_works() {
    let dir = installed(&["counter"]);
    let file = dir.path().join(TempPluginDir::lib_name("counter"));
    let real = std::fs::canonicalize(&file).expect("canonical");
    let (host, report) = dir.load("");
    assert!(report.all_ok(), "{report:#?}");
    let placement = placement_of(&report, &TempPluginDir::lib_name("counter"));
    let info = host.plugin("counter").expect("loaded");
    assert_eq!(info.placement.as_ref(), Some(&placement));
    match rule_keeps_out(&file) {
        None => {
            assert_eq!(
                placement,
                Placement::InPlace { path: real.clone() },
                "{report:#?}"
            );
            assert!(
                executable_mappings(&real.display().to_string()) > 0,
                "no executable mapping of {}",
                real.display()
            );
            // Its identity was taken from the descriptor loaded (in stage 4, nothing pins it).
            let bytes = std::fs::read(&file).expect("read");
            assert_eq!(info.blake3, blake3::hash(&bytes).to_hex().to_string());
            let table = report.to_table();
            assert!(
                table.contains(&format!("mapped in place from {}", real.display())),
                "{table}"
            );
            // The descriptor was closed once the library was mapped.
            let open = std::fs::read_dir("/proc/self/fd")
                .expect("fds")
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|target| *target == real)
                .count();
            assert_eq!(open, 0, "a descriptor of {} stayed open", real.display());
        }
        // Where the temporary directory is, or who owns what above it, can keep it out for
        // the user this runs as; the rule must then say which path.
        Some(culprit) => {
            assert_sealed(&report, &file, "counter", &culprit, "");
        }
    }
    let created = host
        .call("counter", "created")
        .json(&serde_json::Value::Null);
    assert_eq!(created.expect("call"), Reply::Ok(1.into()));
}

#[test]
fn a_library_the_hosts_own_user_may_write_is_loaded_from_a_sealed_copy_and_survives_a_rewrite() {
    // Owned by the user the host runs as, with its write bit (mode 0755): a copy written over it
    // rewrites the inode in place. Loaded from a sealed copy, the running generation keeps its
    // code, and the broken build written over it is refused.
    let dir = TempPluginDir::new();
    let file = dir.add("counter");
    let (host, report) = dir.load("");
    assert_sealed(&report, &file, "counter", &file, "read-only");
    let increment = || {
        host.call("counter", "increment")
            .json(&serde_json::Value::Null)
    };
    assert_eq!(increment().expect("call"), Reply::Ok(1.into()));
    let inode = std::fs::metadata(&file).expect("stat").ino();
    std::fs::write(&file, b"not a library any more").expect("rewrite in place");
    assert_eq!(std::fs::metadata(&file).expect("stat").ino(), inode);
    assert!(matches!(
        host.reload_file(&file),
        ReloadOutcome::Refused { .. }
    ));
    assert_eq!(increment().expect("call"), Reply::Ok(2.into()));
}

#[test]
fn a_library_another_user_owns_is_loaded_from_a_sealed_copy() {
    let dir = TempPluginDir::new();
    let file = dir.add("hello");
    match std::os::unix::fs::chown(&file, Some(65534), None) {
        Ok(()) => {
            let (host, report) = dir.load("[host]\ntrusted_owners = [65534]\n");
            assert!(host.plugin("hello").is_some(), "{report:#?}");
            assert_sealed(&report, &file, "hello", &file, "owned by uid 65534");
        }
        // Only root may give a file away: as another user, no file here can be another's.
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}"),
    }
}

#[test]
fn a_library_its_group_may_write_is_loaded_from_a_sealed_copy_when_the_group_is_trusted() {
    let dir = TempPluginDir::new();
    let file = dir.add("shout");
    set_mode(&file, 0o775);
    let gid = std::fs::metadata(&file).expect("stat").gid();
    let (host, report) = dir.load(&format!("[host]\ntrusted_groups = [{gid}]\n"));
    assert!(host.plugin("shout").is_some(), "{report:#?}");
    assert_sealed(&report, &file, "shout", &file, "mode 0775");
}

#[test]
fn a_library_every_user_may_write_is_never_loaded_at_all() {
    let dir = TempPluginDir::new();
    let file = dir.add("tally");
    set_mode(&file, 0o757);
    let (host, report) = dir.load("");
    assert_eq!(
        reason_of(&report, &TempPluginDir::lib_name("tally")),
        Some("unsafe_permissions")
    );
    assert!(host.plugin("tally").is_none());
    let real = std::fs::canonicalize(&file).expect("canonical");
    assert_eq!(executable_mappings(&real.display().to_string()), 0);
}

/// `base/open` (mode 0777, not sticky) / `plugins` (0755) / the library (0555, installed
/// read-only), with `base/link` a symlink to `base/open/plugins`.
fn under_an_open_directory(fixture: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let base = tempfile::Builder::new()
        .prefix("airlock-in-place-")
        .tempdir()
        .expect("tempdir");
    set_mode(base.path(), 0o755);
    let open = base.path().join("open");
    let plugins = open.join("plugins");
    std::fs::create_dir_all(&plugins).expect("mkdir");
    set_mode(&open, 0o777);
    set_mode(&plugins, 0o755);
    let file = plugins.join(TempPluginDir::lib_name(fixture));
    std::fs::write(&file, fixture_bytes(fixture)).expect("write");
    set_mode(&file, 0o555);
    std::os::unix::fs::symlink(&plugins, base.path().join("link")).expect("symlink");
    let open = std::fs::canonicalize(open).expect("canonical");
    (base, open, file)
}

fn load_dir(dir: &Path, policy: &str) -> (airlock::Host, airlock::LoadReport) {
    let policy =
        airlock::Policy::parse(policy, airlock::policy::PolicyFormat::Toml).expect("policy");
    let host = airlock::Host::builder()
        .plugin_dir(dir)
        .policy(policy)
        .build()
        .expect("host");
    let report = host.load().expect("load");
    (host, report)
}

#[test]
fn a_directory_above_the_plugin_directory_that_others_may_write_keeps_the_sealed_copy() {
    // Stage 1 looks at the plugin directory itself, which is safe; the in-place rule looks at
    // every directory of the real path, and `open` lets any user rename `plugins` away.
    let (base, open, file) = under_an_open_directory("guard");
    let (host, report) = load_dir(&base.path().join("open").join("plugins"), "");
    assert!(host.plugin("guard").is_some(), "{report:#?}");
    assert_sealed(&report, &file, "guard", &open, "could replace");
    let why = match placement_of(&report, &TempPluginDir::lib_name("guard")) {
        Placement::SealedCopy { why } => why,
        other => panic!("{other:?}"),
    };
    assert!(
        why.contains("mode 0777") && why.contains("above the library"),
        "{why}"
    );
}

#[test]
fn a_symlink_into_a_directory_others_may_write_keeps_the_sealed_copy() {
    // The plugin directory is named through a symlink; what counts is the real path.
    let (base, open, file) = under_an_open_directory("tally");
    let (host, report) = load_dir(&base.path().join("link"), "");
    assert!(host.plugin("tally").is_some(), "{report:#?}");
    assert_sealed(&report, &file, "tally", &open, "could replace");
}

#[test]
fn the_policy_can_ask_for_sealed_copies_of_every_library() {
    let dir = TempPluginDir::new();
    let file = dir.add("snoop");
    let (host, report) = dir.load("[host]\nalways_seal = true\n");
    assert!(host.plugin("snoop").is_some(), "{report:#?}");
    assert_sealed(&report, &file, "snoop", Path::new(""), "always_seal");
}

#[test]
fn a_reload_of_the_same_inode_is_not_loaded_in_place_and_has_fresh_statics() {
    // The dynamic linker goes by device and inode: a second `dlopen` of the file loaded in
    // place would hand back the loaded library, statics and all.
    let dir = installed(&["counter"]);
    let file = dir.path().join(TempPluginDir::lib_name("counter"));
    let (host, report) = dir.load("");
    let first = placement_of(&report, &TempPluginDir::lib_name("counter"));
    let created = || {
        host.call("counter", "created")
            .json(&serde_json::Value::Null)
    };
    assert_eq!(created().expect("call"), Reply::Ok(1.into()));
    let inode = std::fs::metadata(&file).expect("stat").ino();
    let outcome = host.reload("counter").expect("reload");
    assert!(matches!(outcome, ReloadOutcome::Loaded { .. }), "{outcome}");
    assert_eq!(std::fs::metadata(&file).expect("stat").ino(), inode);
    // A fresh library: its static counts this generation's one instance.
    assert_eq!(created().expect("call"), Reply::Ok(1.into()));
    let again = host.plugin("counter").expect("loaded").placement;
    let Some(Placement::SealedCopy { why }) = again else {
        panic!("the reload was loaded in place: {again:?}");
    };
    if matches!(first, Placement::InPlace { .. }) {
        assert!(why.contains("same inode"), "{why}");
    }
    // A second host over the same file: the same, from the first load on.
    let (second, report) = dir.load("");
    assert!(report.all_ok(), "{report:#?}");
    let created = second
        .call("counter", "created")
        .json(&serde_json::Value::Null);
    assert_eq!(created.expect("call"), Reply::Ok(1.into()));
    assert!(matches!(
        second.plugin("counter").expect("loaded").placement,
        Some(Placement::SealedCopy { .. })
    ));
}

#[test]
fn a_pin_refuses_a_changed_file_on_both_paths() {
    // The pin is checked on the bytes hashed from the descriptor that would be loaded.
    let dir = installed(&[]);
    let file = dir.add("shout");
    set_mode(&file, 0o555);
    let other = blake3::hash(&fixture_bytes("hello")).to_hex().to_string();
    let own = blake3::hash(&std::fs::read(&file).expect("read"))
        .to_hex()
        .to_string();
    for host_table in ["", "[host]\nalways_seal = true\n"] {
        let refused = format!("{host_table}[plugins.shout]\nblake3 = \"{other}\"\n");
        let (host, report) = dir.load(&refused);
        assert_eq!(
            reason_of(&report, &TempPluginDir::lib_name("shout")),
            Some("hash_mismatch"),
            "{report:#?}"
        );
        assert!(host.plugin("shout").is_none());
        let pinned = format!("{host_table}[plugins.shout]\nblake3 = \"{own}\"\n");
        let (host, report) = dir.load(&pinned);
        assert!(report.all_ok(), "{report:#?}");
        assert!(host.plugin("shout").is_some());
    }
}

#[test]
fn airlock_check_says_where_each_library_would_be_mapped_from_and_why() {
    let dir = installed(&["hello"]);
    let writable = dir.add("shout");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock-cli"))
        .args(["check", "--format", "json"])
        .arg(dir.path())
        .output()
        .expect("runs");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let placement = |id: &str| {
        json["plugins"]
            .as_array()
            .expect("entries")
            .iter()
            .find(|p| p["id"] == id)
            .map(|p| p["placement"].clone())
            .unwrap_or_else(|| panic!("{id} not in {json:#}"))
    };
    let hello = dir.path().join(TempPluginDir::lib_name("hello"));
    match rule_keeps_out(&hello) {
        None => {
            let real = std::fs::canonicalize(&hello).expect("canonical");
            assert_eq!(
                placement("hello"),
                serde_json::json!({ "from": "in_place", "path": real })
            );
        }
        Some(culprit) => {
            assert_eq!(placement("hello")["from"], "sealed_copy");
            let why = placement("hello")["why"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(why.contains(&culprit.display().to_string()), "{why}");
        }
    }
    let shout = placement("shout");
    assert_eq!(shout["from"], "sealed_copy", "{shout}");
    let why = shout["why"].as_str().unwrap_or_default();
    if rule_keeps_out(&hello).is_none() {
        // The same directory: the library's own mode is what keeps it out.
        assert!(
            why.contains(&writable.display().to_string()) && why.contains("read-only"),
            "{why}"
        );
    }
}
