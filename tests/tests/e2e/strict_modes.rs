//! Stage 1 refuses a library that another user than the host's could have changed, as sshd's
//! `StrictModes` refuses such a key file: the library or its directory writable by every user
//! (sticky bit or not), writable by a group the policy does not trust, or owned by a user who
//! is neither the host's, root, nor an owner the policy trusts. These tests run as root, as the
//! suite does: giving a file to another user takes `chown`.
#![cfg(unix)]

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use airlock::plugins::ReloadOutcome;
use airlock_tests::{fixture_bytes, reason_of, set_mode, TempPluginDir};

fn lib(stem: &str) -> String {
    TempPluginDir::lib_name(stem)
}

/// Gives `path` to `uid` and `gid` (`None`: unchanged).
fn give(path: &Path, uid: Option<u32>, gid: Option<u32>) {
    std::os::unix::fs::chown(path, uid, gid).expect("chown (the suite runs as root)");
}

/// The detail the report gives `file`.
fn detail_of(report: &airlock::LoadReport, file: &str) -> String {
    report
        .plugins
        .iter()
        .find(|p| p.file.file_name().is_some_and(|n| n == file))
        .map(|p| p.detail.clone())
        .unwrap_or_default()
}

#[test]
fn a_world_writable_sticky_plugin_directory_is_refused_whatever_the_policy_trusts() {
    let dir = TempPluginDir::with(&["hello"]);
    set_mode(dir.path(), 0o1777);
    let gid = std::fs::metadata(dir.path()).expect("stat").gid();
    for policy in ["", &format!("[host]\ntrusted_groups = [{gid}]\n")] {
        let (host, report) = dir.load(policy);
        assert_eq!(
            reason_of(&report, &lib("hello")),
            Some("unsafe_permissions"),
            "{report:#?}"
        );
        assert!(host.plugins().is_empty());
        let detail = detail_of(&report, &lib("hello"));
        let shown = std::fs::canonicalize(dir.path()).expect("canonical");
        let shown = shown.display();
        assert!(
            detail.contains(&format!("the plugin directory {shown}")),
            "{detail}"
        );
        assert!(detail.contains("mode 1777"), "{detail}");
        assert!(detail.contains(&format!("chmod o-w {shown}")), "{detail}");
    }
}

#[test]
fn a_group_writable_library_is_refused_unless_its_group_is_trusted() {
    let dir = TempPluginDir::with(&["counter"]);
    let file = dir.add("hello");
    set_mode(&file, 0o775);
    give(&file, None, Some(4343));
    let (host, report) = dir.load("");
    assert_eq!(
        reason_of(&report, &lib("hello")),
        Some("unsafe_permissions"),
        "{report:#?}"
    );
    assert!(host.plugin("counter").is_some(), "the others still load");
    let detail = detail_of(&report, &lib("hello"));
    let shown = file.display();
    assert!(detail.contains(&format!("the library {shown}")), "{detail}");
    assert!(
        detail.contains("mode 0775") && detail.contains("gid 4343"),
        "{detail}"
    );
    assert!(detail.contains(&format!("chmod g-w {shown}")), "{detail}");
    assert!(detail.contains("trusted_groups = [4343]"), "{detail}");

    let (host, report) = dir.load("[host]\ntrusted_groups = [4343]\n");
    assert!(report.all_ok(), "{report:#?}");
    assert!(host.plugin("hello").is_some());
}

#[cfg(target_os = "linux")]
#[test]
fn a_trusted_group_may_be_named_as_in_etc_group() {
    let dir = TempPluginDir::new();
    let file = dir.add("hello");
    set_mode(&file, 0o775);
    set_mode(dir.path(), 0o775);
    give(&file, None, Some(0));
    give(dir.path(), None, Some(0));
    let (_, report) = dir.load("");
    assert_eq!(
        reason_of(&report, &lib("hello")),
        Some("unsafe_permissions")
    );
    let (host, report) = dir.load("[host]\ntrusted_groups = [\"root\"]\n");
    assert!(report.all_ok(), "{report:#?}");
    assert!(host.plugin("hello").is_some());
}

#[test]
fn a_library_owned_by_another_user_is_refused_unless_its_owner_is_trusted() {
    let dir = TempPluginDir::with(&["counter"]);
    let me = std::fs::metadata(dir.path()).expect("stat").uid();
    let file = dir.add("hello");
    give(&file, Some(4242), None);
    let (host, report) = dir.load("");
    assert_eq!(
        reason_of(&report, &lib("hello")),
        Some("unsafe_permissions"),
        "{report:#?}"
    );
    assert!(host.plugin("counter").is_some());
    let detail = detail_of(&report, &lib("hello"));
    let shown = file.display();
    assert!(detail.contains(&format!("the library {shown}")), "{detail}");
    assert!(detail.contains("owned by uid 4242"), "{detail}");
    assert!(detail.contains(&format!("chown {me} {shown}")), "{detail}");
    assert!(detail.contains("trusted_owners = [4242]"), "{detail}");

    let (host, report) = dir.load("[host]\ntrusted_owners = [4242]\n");
    assert!(report.all_ok(), "{report:#?}");
    assert!(host.plugin("hello").is_some());
}

#[test]
fn a_plugin_directory_owned_by_another_user_is_refused_unless_its_owner_is_trusted() {
    let dir = TempPluginDir::with(&["hello"]);
    give(dir.path(), Some(4242), None);
    let (_, report) = dir.load("");
    assert_eq!(
        reason_of(&report, &lib("hello")),
        Some("unsafe_permissions")
    );
    let detail = detail_of(&report, &lib("hello"));
    assert!(
        detail.contains("the plugin directory") && detail.contains("uid 4242"),
        "{detail}"
    );
    let (_, report) = dir.load("[host]\ntrusted_owners = [4242]\n");
    assert!(report.all_ok(), "{report:#?}");
}

#[test]
fn airlock_check_refuses_a_group_writable_library_too() {
    let dir = TempPluginDir::with(&["hello"]);
    set_mode(&dir.path().join(lib("hello")), 0o664);
    let report =
        airlock::pipeline::check_report(&airlock::pipeline::PipelineOptions::new(vec![dir
            .path()
            .to_owned()]))
        .expect("checked");
    assert_eq!(
        reason_of(&report, &lib("hello")),
        Some("unsafe_permissions")
    );
}

#[test]
fn a_watched_library_made_group_writable_or_dropped_so_is_refused_and_the_old_one_serves() {
    let dir = TempPluginDir::with(&["hello"]);
    let (host, report) = dir.load("");
    assert!(report.all_ok(), "{report:#?}");
    let (tx, rx) = mpsc::channel();
    let _watcher = host
        .watch(Duration::from_millis(50), move |o| {
            let _ = tx.send(o.clone());
        })
        .expect("watching");
    let next = || {
        rx.recv_timeout(Duration::from_secs(20))
            .expect("a reload outcome")
    };

    // The loaded library becomes writable by its group: the running generation keeps serving.
    set_mode(&dir.path().join(lib("hello")), 0o775);
    match next() {
        ReloadOutcome::Refused { refusal, serving } => {
            assert_eq!(refusal.reason.code(), "unsafe_permissions", "{refusal}");
            assert_eq!(serving, Some(1));
        }
        other => panic!("{other}"),
    }
    // A new library dropped in, group-writable: refused, never loaded.
    let staged = dir.path().join(".counter.part");
    std::fs::write(&staged, fixture_bytes("counter")).expect("write");
    set_mode(&staged, 0o775);
    std::fs::rename(&staged, dir.path().join(lib("counter"))).expect("rename");
    match next() {
        ReloadOutcome::Refused { refusal, serving } => {
            assert_eq!(refusal.reason.code(), "unsafe_permissions", "{refusal}");
            assert_eq!(serving, None);
        }
        other => panic!("{other}"),
    }
    assert!(host.plugin("counter").is_none());
    let answer = host
        .call("hello", "greet")
        .json(&serde_json::json!({"name": "Ada"}))
        .expect("hello still serves");
    assert_eq!(answer, airlock::Reply::Ok("Hello, Ada!".into()));
}

/// `airlock install FILE --dir DIR`, run under umask 002 (as on systems with a group per user).
fn install(file: &Path, dir: &Path) -> std::process::Output {
    std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 002 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_airlock-cli"))
        .arg("install")
        .arg(file)
        .arg("--dir")
        .arg(dir)
        .env_remove("AIRLOCK_CTOR_MARKER")
        .output()
        .expect("the CLI runs")
}

#[test]
fn airlock_install_refuses_a_directory_a_host_would_refuse_and_creates_one_it_would_not() {
    let work = tempfile::tempdir().expect("tempdir");
    let source = work.path().join(lib("hello"));
    std::fs::write(&source, fixture_bytes("hello")).expect("write");
    set_mode(&source, 0o755);

    let open = work.path().join("open");
    std::fs::create_dir(&open).expect("mkdir");
    set_mode(&open, 0o1777);
    let out = install(&source, &open);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("unsafe_permissions"), "{said}");
    assert!(
        said.contains(&format!("chmod o-w {}", open.display())),
        "{said}"
    );
    assert!(!open.join(lib("hello")).exists(), "nothing was put there");

    // A directory the install creates is one a host loads from, whatever the umask.
    let fresh = work.path().join("fresh").join("plugins");
    let out = install(&source, &fresh);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(&fresh).expect("created").mode();
    assert_eq!(mode & 0o022, 0, "mode {mode:o}");
    let (_, report) = {
        let dir = airlock::Host::builder()
            .plugin_dir(&fresh)
            .build()
            .expect("host");
        let report = dir.load().expect("loaded");
        (dir, report)
    };
    assert!(report.all_ok(), "{report:#?}");
}
