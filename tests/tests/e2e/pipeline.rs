//! The pipeline over the real fixtures: every refusal has its exact reason code, the examples
//! load, and one bad library never stops the others.

use airlock::pipeline::Status;
use airlock_tests::{reason_of, TempPluginDir};

const EXPECTED: &[(&str, Option<&str>)] = &[
    ("hello", None),
    ("counter", None),
    ("ctor-plugin", None),
    ("slow-teardown", None),
    ("panics-in-init", Some("init_panicked")),
    ("errors-in-init", Some("init_failed")),
    ("wrong-abi", Some("abi_incompatible")),
    ("build-mismatch", Some("build_mismatch")),
    ("not-a-plugin", Some("no_manifest")),
    ("ctor-marker", Some("bad_manifest")),
    ("undefined-symbol", Some("load_failed")),
];

#[test]
fn every_fixture_gets_its_exact_reason_and_the_examples_load() {
    let names: Vec<&str> = EXPECTED.iter().map(|(n, _)| *n).collect();
    let dir = TempPluginDir::with(&names);
    let (host, report) = dir.load("");
    for (name, expected) in EXPECTED {
        let file = TempPluginDir::lib_name(name);
        assert_eq!(reason_of(&report, &file), *expected, "{name}: {report:#?}");
    }
    assert_eq!(report.plugins.len(), EXPECTED.len());
    let loaded: Vec<String> = host.plugins().into_iter().map(|p| p.id).collect();
    // Load order is file-name order.
    assert_eq!(loaded, ["counter", "ctor-plugin", "hello", "slow-teardown"]);
}

#[test]
fn a_panicking_init_leaves_the_host_and_the_other_plugins_running() {
    let dir = TempPluginDir::with(&["panics-in-init", "hello"]);
    let (host, report) = dir.load("");
    let refused: Vec<_> = report.refused().collect();
    assert_eq!(refused.len(), 1);
    assert!(
        refused[0].detail.contains("deliberately panicking"),
        "{}",
        refused[0].detail
    );
    let answer = host
        .call("hello", "greet")
        .json(&serde_json::json!({"name": "after the panic"}))
        .expect("hello still serves");
    assert_eq!(answer, airlock::Reply::Ok("Hello, after the panic!".into()));
}

#[test]
fn refusals_name_what_was_expected_and_found() {
    let dir = TempPluginDir::with(&["wrong-abi", "build-mismatch"]);
    let report =
        airlock::pipeline::check_report(&airlock::pipeline::PipelineOptions::new(vec![dir
            .path()
            .to_owned()]))
        .expect("checked");
    let detail = |id: &str| {
        report
            .plugins
            .iter()
            .find(|p| p.id.as_deref() == Some(id))
            .map(|p| p.detail.clone())
            .unwrap_or_default()
    };
    assert!(
        detail("wrong-abi").contains("9.0.0"),
        "{}",
        detail("wrong-abi")
    );
    assert!(detail("wrong-abi").contains(airlock_abi::ABI_VERSION));
    assert!(detail("build-mismatch").contains("riscv64gc-unknown-none-elf"));
    assert!(detail("build-mismatch").contains(airlock_abi::abi::BUILD_TARGET));
}

#[test]
fn check_without_load_passes_good_files_and_runs_nothing() {
    let dir = TempPluginDir::with(&["hello", "panics-in-init"]);
    let report =
        airlock::pipeline::check_report(&airlock::pipeline::PipelineOptions::new(vec![dir
            .path()
            .to_owned()]))
        .expect("checked");
    // panics-in-init only fails when it runs: stages 1–3 pass it.
    assert!(
        report.plugins.iter().all(|p| p.status == Status::Ok),
        "{report:#?}"
    );
}

#[test]
fn duplicate_ids_refuse_the_later_file() {
    let dir = TempPluginDir::new();
    dir.add_as("hello", &TempPluginDir::lib_name("a-hello"));
    dir.add_as("hello", &TempPluginDir::lib_name("b-hello"));
    let (host, report) = dir.load("");
    assert_eq!(
        reason_of(&report, &TempPluginDir::lib_name("a-hello")),
        None
    );
    assert_eq!(
        reason_of(&report, &TempPluginDir::lib_name("b-hello")),
        Some("duplicate_id")
    );
    assert_eq!(host.plugins().len(), 1);
}

#[test]
fn policy_disables_and_pins() {
    let dir = TempPluginDir::with(&["hello", "counter"]);
    let counter = std::fs::read(dir.path().join(TempPluginDir::lib_name("counter"))).expect("read");
    let blake3 = blake3::hash(&counter).to_hex().to_string();
    // The identity the host reports is the BLAKE3 of the file's bytes.
    let loaded = dir.load("").0.plugin("counter").expect("loaded").blake3;
    assert_eq!(loaded, blake3);
    let wrong = "0".repeat(64);
    let (host, report) = dir.load(&format!(
        "[plugins.hello]\nenabled = false\n[plugins.counter]\nblake3 = \"{wrong}\"\n"
    ));
    assert_eq!(
        reason_of(&report, &TempPluginDir::lib_name("hello")),
        Some("disabled")
    );
    assert_eq!(
        reason_of(&report, &TempPluginDir::lib_name("counter")),
        Some("hash_mismatch")
    );
    let detail = &report
        .plugins
        .iter()
        .find(|p| p.id.as_deref() == Some("counter"))
        .expect("reported")
        .detail;
    assert!(
        detail.contains(&format!("expected blake3 {wrong}"))
            && detail.contains(&format!("found {blake3}")),
        "{detail}"
    );
    assert!(host.plugins().is_empty());
    // Upper-case hex pins the same bytes.
    let (host, report) = dir.load(&format!(
        "[plugins.counter]\nblake3 = \"{}\"\n",
        blake3.to_ascii_uppercase()
    ));
    assert!(report.all_ok(), "{report:#?}");
    assert_eq!(host.plugins().len(), 2);
}

#[test]
fn a_sha256_pin_in_the_policy_is_still_enforced() {
    use sha2::Digest;
    let dir = TempPluginDir::with(&["counter"]);
    let bytes = std::fs::read(dir.path().join(TempPluginDir::lib_name("counter"))).expect("read");
    let sha256: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let (host, report) = dir.load(&format!("[plugins.counter]\nsha256 = \"{sha256}\"\n"));
    assert!(report.all_ok(), "{report:#?}");
    assert_eq!(host.plugins().len(), 1);
    let mut wrong = sha256.clone();
    wrong.replace_range(..1, if sha256.starts_with('0') { "1" } else { "0" });
    let (host, report) = dir.load(&format!("[plugins.counter]\nsha256 = \"{wrong}\"\n"));
    assert_eq!(
        reason_of(&report, &TempPluginDir::lib_name("counter")),
        Some("hash_mismatch")
    );
    let detail = &report.plugins[0].detail;
    assert!(
        detail.contains(&format!("expected sha256 {wrong}"))
            && detail.contains(&format!("found {sha256}")),
        "{detail}"
    );
    assert!(host.plugins().is_empty());
}

#[test]
fn each_load_is_a_fresh_copy_with_fresh_statics() {
    // Two hosts load the same file. Without a fresh shadow copy the dynamic linker would hand
    // the second host the first one's library, statics and all.
    let dir = TempPluginDir::with(&["counter"]);
    let (first, _) = dir.load("");
    let (second, _) = dir.load("");
    for host in [&first, &second] {
        let created = host
            .call("counter", "created")
            .json(&serde_json::Value::Null)
            .expect("call");
        assert_eq!(created, airlock::Reply::Ok(1.into()));
    }
    assert!(airlock::plugins::retained().0 >= 2);
}

#[cfg(target_os = "linux")]
#[test]
fn libraries_are_mapped_from_sealed_memory_and_keep_no_descriptor() {
    // The loaded copy is a memfd (named after the plugin), not a file anyone can reach; its
    // descriptor is closed once the library is mapped.
    let airlock_memfds = || {
        std::fs::read_dir("/proc/self/fd")
            .expect("fds")
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| target.to_string_lossy().contains("memfd:airlock:"))
            .count()
    };
    // (A library only root or this user can change is loaded in place unless the policy asks
    // for sealed copies: `in_place.rs` tests that.)
    let dir = TempPluginDir::with(&["hello"]);
    let hosts: Vec<_> = (0..5)
        .map(|_| dir.load("[host]\nalways_seal = true\n").0)
        .collect();
    let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
    let mapped = maps
        .lines()
        .filter(|l| l.contains("/memfd:airlock:hello"))
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|perms| perms.contains('x'))
        })
        .count();
    assert!(
        mapped >= 5,
        "executable memfd mappings of hello: {mapped}\n{maps}"
    );
    // Other tests in this process load plugins concurrently and hold a memfd for the moment
    // of their load; a descriptor kept per library would never let the count reach zero.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while airlock_memfds() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} memfd descriptors stayed open",
            airlock_memfds()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    drop(hosts);
}

#[test]
fn layouts_the_host_does_not_expect_are_refused_at_load() {
    // A first field of another type, and a root module with one field fewer than the host's:
    // abi_stable's layout check refuses both, so neither is ever called through a wrong slot.
    let dir = TempPluginDir::with(&["layout-mismatch", "abi-v0", "hello"]);
    let (host, report) = dir.load("");
    assert_eq!(
        reason_of(&report, &TempPluginDir::lib_name("layout-mismatch")),
        Some("layout_mismatch")
    );
    assert_eq!(
        reason_of(&report, &TempPluginDir::lib_name("abi-v0")),
        Some("layout_mismatch")
    );
    assert!(host.plugin("hello").is_some());
}

#[test]
fn startup_keeps_within_a_low_limit_on_descriptors() {
    // Stage 2 keeps each library's sealed copy (a descriptor) open until stage 4 loads it. Under
    // a soft limit of 64 descriptors, 100 libraries must all load all the same: at most a
    // quarter of the limit is held that way, and `dlopen` always finds a descriptor free.
    let dir = TempPluginDir::new();
    let hello = airlock_tests::fixture_bytes("hello");
    let needle = br#""id": "hello""#;
    let at = hello
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the id in the manifest");
    for i in 0..100 {
        let id = format!("h{i:04}");
        let mut copy = hello.clone();
        copy[at + 7..at + 7 + id.len()].copy_from_slice(id.as_bytes());
        dir.add_bytes(&TempPluginDir::lib_name(&id), &copy);
    }
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 64 && exec \"$0\" check --load --format json \"$1\"")
        .arg(env!("CARGO_BIN_EXE_airlock-cli"))
        .arg(dir.path())
        .output()
        .expect("runs");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let refused: Vec<_> = json["plugins"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|p| p["status"] != "ok")
        .collect();
    assert!(refused.is_empty(), "{refused:#?}");
    assert_eq!(json["plugins"].as_array().map(Vec::len), Some(100));
    assert_eq!(out.status.code(), Some(0));
}
