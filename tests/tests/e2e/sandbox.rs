//! The isolation boundary holds from a library's first instruction: a worker sandboxes itself
//! before it opens the library, so what the library's constructor tries, what a thread that
//! constructor starts tries later, and what a call tries are all refused — a socket, a
//! process, a system file, the host's memory, io_uring, a pidfd of the host, a signal to it
//! (by `kill`, through a pipe it owns, through a pidfd).

use airlock::{Host, Reply};
use airlock_tests::TempPluginDir;
use serde_json::Value;

/// What `escape` reports its attempts got, from its constructor, its thread or a call.
fn attempts(host: &Host, from: &str) -> serde_json::Map<String, Value> {
    match host.call("escape", from).json(&Value::Null) {
        Ok(Reply::Ok(Value::Object(attempts))) => attempts,
        other => panic!("escape.{from}: {other:?}"),
    }
}

#[test]
fn a_library_is_sandboxed_from_its_first_instruction_in_its_constructor_threads_and_calls() {
    // The control: in the host's process nothing stops the same library, so its attempts do
    // show what they reach.
    let dir = TempPluginDir::with(&["escape"]);
    let (host, report) = dir.load("[plugins.escape]\n");
    assert!(report.all_ok(), "{report:#?}");
    let free = attempts(&host, "constructor");
    for reached in [
        "socket",
        "file",
        "signal_host",
        "sigio_host",
        "pidfd_signal_host",
    ] {
        assert_eq!(free[reached], "allowed", "in-process, {reached}: {free:?}");
    }
    drop(host);

    let (host, report) =
        dir.load("[plugins.escape]\nisolation = \"process\"\nsandbox_required = true\n");
    let loaded = &report.plugins[0];
    if !report.all_ok() {
        // A kernel that cannot enforce it all: the plugin is refused, never run unconfined.
        // Only a kernel without Landlock's filesystem rules (ABI 3) may say so.
        assert!(
            landlock_abi() < 3 && loaded.detail.contains("cannot enforce"),
            "refused on a kernel with Landlock ABI {}: {report:#?}",
            landlock_abi()
        );
        return;
    }
    assert!(
        loaded
            .detail
            .contains("Landlock fully enforced; seccomp on"),
        "{}",
        loaded.detail
    );
    for from in ["constructor", "thread", "call"] {
        let got = attempts(&host, from);
        assert_eq!(got.len(), 9, "{from}: {got:?}");
        for (attempt, outcome) in &got {
            assert!(
                outcome.as_str().is_some_and(|o| o.starts_with("refused")),
                "{from}, {attempt}: {outcome} (all: {got:?})"
            );
        }
    }
}

/// Without Landlock (a worker wrapper leaves it out, as a kernel without it would), the host's
/// memory and the host itself are still out of reach: the host is non-dumpable and the worker
/// has no capabilities (even as root), and seccomp refuses io_uring, pidfds and signals to other
/// processes. The file read shows Landlock was indeed left out.
#[test]
fn the_hosts_memory_is_out_of_reach_without_landlock_too() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempPluginDir::with(&["escape"]);
    let wrapper = dir.path().join("worker-without-landlock");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nAIRLOCK_WORKER_SANDBOX=\"$AIRLOCK_WORKER_SANDBOX;landlock=0\" exec {:?}\n",
            airlock_tests::worker()
        ),
    )
    .expect("wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("mode");
    let (host, report) = dir.load_with("[plugins.escape]\nisolation = \"process\"\n", |b| {
        b.worker(&wrapper)
    });
    assert!(report.all_ok(), "{report:#?}");
    assert!(
        report.plugins[0].detail.contains("Landlock left out"),
        "{}",
        report.plugins[0].detail
    );
    let got = attempts(&host, "constructor");
    assert_eq!(got["file"], "allowed", "Landlock was left out: {got:?}");
    for attempt in [
        "host_memory",
        "io_uring",
        "host_pidfd",
        "signal_host",
        "socket",
        "process",
    ] {
        assert!(
            got[attempt]
                .as_str()
                .is_some_and(|o| o.starts_with("refused")),
            "{attempt}: {got:?}"
        );
    }
}

/// The Landlock ABI this kernel offers (0: none), asked of the kernel directly.
fn landlock_abi() -> i64 {
    const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1;
    // SAFETY: with a null attribute, size 0 and the VERSION flag, landlock_create_ruleset only
    // answers the ABI version (or -1); it reads and writes no memory.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    abi.max(0)
}
