//! The plugin author's path, as a new user takes it: `airlock new`, `cargo build`,
//! `cargo test`, then `airlock validate` and `airlock run` on what was built.

use std::path::Path;
use std::process::{Command, Output};

use airlock_tests::{fixture_target_dir, workspace_root, TempPluginDir};

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_airlock-cli"))
}

/// Runs cargo in the new crate. The target directory and profile settings are those of the
/// fixture build, so the dependencies already compiled there are reused (this is only about
/// the test's speed; the commands are the user's).
fn cargo(dir: &Path, args: &[&str]) -> Output {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    Command::new(cargo)
        .current_dir(dir)
        .args(args)
        .env("CARGO_TARGET_DIR", fixture_target_dir())
        .env("CARGO_PROFILE_DEV_DEBUG", "false")
        .env("CARGO_PROFILE_DEV_STRIP", "debuginfo")
        .output()
        .expect("cargo runs")
}

#[test]
fn airlock_new_builds_tests_validates_and_runs() {
    let _ = airlock_tests::fixtures();
    let work = tempfile::tempdir().expect("tempdir");
    let out = cli()
        .args(["new", "demo-plugin", "--path"])
        .arg(work.path())
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let crate_dir = work.path().join("demo-plugin");
    // The workspace's lock file pins the same dependency versions the fixtures were built with.
    std::fs::copy(
        workspace_root().join("Cargo.lock"),
        crate_dir.join("Cargo.lock"),
    )
    .expect("lock");

    let build = cargo(&crate_dir, &["build"]);
    assert!(
        build.status.success(),
        "cargo build failed:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let test = cargo(&crate_dir, &["test"]);
    let test_out = String::from_utf8_lossy(&test.stdout);
    assert!(
        test.status.success(),
        "cargo test failed:\n{test_out}\n{}",
        String::from_utf8_lossy(&test.stderr)
    );
    assert!(
        test_out.contains("test tests::greets_and_signs_replies ... ok"),
        "{test_out}"
    );

    let lib = fixture_target_dir()
        .join("debug")
        .join(TempPluginDir::lib_name("libdemo_plugin"));
    let validate = cli().arg("validate").arg(&lib).output().expect("runs");
    let report = String::from_utf8_lossy(&validate.stdout);
    assert_eq!(validate.status.code(), Some(0), "{report}");
    assert!(report.contains("0 failed"), "{report}");

    let dir = TempPluginDir::new();
    dir.add_bytes(
        &TempPluginDir::lib_name("demo-plugin"),
        &std::fs::read(&lib).expect("built library"),
    );
    let mut command = cli();
    command.arg("run").arg(dir.path());
    let out = airlock_tests::run_with_input(
        command,
        "/call demo-plugin greet {\"name\":\"Ada\"}\nhi\n/quit\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ok \"Hello, Ada!\""), "{stdout}");
    assert!(stdout.contains("you said: hi (demo-plugin)"), "{stdout}");

    let again = cli()
        .args(["new", "demo-plugin", "--path"])
        .arg(work.path())
        .output()
        .expect("runs");
    assert_eq!(again.status.code(), Some(2), "refuses to overwrite");
    let bad = cli()
        .args(["new", "Demo Plugin", "--path"])
        .arg(work.path())
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr.contains("cannot be a plugin name"), "{stderr}");
}

#[test]
fn validate_fails_a_plugin_that_panics_on_bad_input() {
    let out = cli()
        .arg("validate")
        .arg(airlock_tests::fixture("crashy"))
        .output()
        .expect("runs");
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        report.contains("FAIL action boom with empty input: panicked"),
        "{report}"
    );
    assert!(report.contains("PASS panics are contained"), "{report}");
    assert!(
        report.contains("PASS context revoked after teardown"),
        "{report}"
    );
}
