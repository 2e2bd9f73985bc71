//! The hostile-file corpus: every case is generated here (no opaque binaries are checked in),
//! each has the reason code it must be refused with, and the host keeps serving a good plugin
//! beside all of them. The test prints the figures `RELIABILITY.md` quotes.

use std::process::Command;

use airlock::pipeline::{check_report, PipelineOptions, Status};
use airlock::RefusalReason;
use airlock_tests::synthetic::{self, block, manifest};
use airlock_tests::{fixture_bytes, set_mode, TempPluginDir};
use object::Architecture;

/// A case: a file name, its bytes, and the expected reason (`None`: passes stages 1–3).
struct Case {
    name: String,
    bytes: Vec<u8>,
    expected: Option<RefusalReason>,
}

fn case(name: &str, bytes: Vec<u8>, expected: Option<RefusalReason>) -> Case {
    Case {
        name: name.to_owned(),
        bytes,
        expected,
    }
}

fn with_json(name: &str, json: &str, expected: RefusalReason) -> Case {
    case(
        name,
        synthetic::plugin(block(json).encode()),
        Some(expected),
    )
}

fn with_block(
    name: &str,
    edit: impl FnOnce(&mut airlock_abi::abi::ManifestBlock),
    expected: Option<RefusalReason>,
) -> Case {
    let mut b = block(&manifest(&name.replace('_', "-")));
    edit(&mut b);
    case(name, synthetic::plugin(b.encode()), expected)
}

fn with_bytes(name: &str, edit: impl FnOnce(&mut Vec<u8>), expected: RefusalReason) -> Case {
    let mut bytes = block(&manifest(&name.replace('_', "-"))).encode();
    edit(&mut bytes);
    case(name, synthetic::plugin(bytes), Some(expected))
}

fn corpus() -> Vec<Case> {
    use RefusalReason::*;
    let hello = fixture_bytes("hello");
    let mut cases = vec![
        case("empty", Vec::new(), Some(NotALibrary)),
        case(
            "random",
            (0..8192u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
                .collect(),
            Some(NotALibrary),
        ),
        case(
            "text",
            b"#!/bin/sh\necho not a library\n".to_vec(),
            Some(NotALibrary),
        ),
        case(
            "macho-header",
            [0xcf, 0xfa, 0xed, 0xfe, 7, 0, 0, 1].repeat(64),
            Some(NotALibrary),
        ),
        case(
            "pe-header",
            [b'M', b'Z', 0x90, 0].repeat(64),
            Some(NotALibrary),
        ),
        case(
            "elf-relocatable",
            synthetic::library_for(
                synthetic::host_arch(),
                false,
                &[(".airlock", block(&manifest("rel")).encode())],
            ),
            Some(NotALibrary),
        ),
        case(
            "elf-other-arch",
            synthetic::library_for(
                Architecture::PowerPc64,
                true,
                &[(".airlock", block(&manifest("ppc")).encode())],
            ),
            Some(BuildMismatch),
        ),
        case(
            "elf-32-bit",
            synthetic::library_for(
                Architecture::I386,
                true,
                &[(".airlock", block(&manifest("i386")).encode())],
            ),
            Some(BuildMismatch),
        ),
        case(
            "not-a-plugin",
            fixture_bytes("not-a-plugin"),
            Some(NoManifest),
        ),
        case(
            "no-section",
            synthetic::library(&[(".rodata.other", b"hello".to_vec())]),
            Some(NoManifest),
        ),
        case(
            "two-sections",
            synthetic::library(&[
                (".airlock", block(&manifest("a")).encode()),
                (".airlock", block(&manifest("b")).encode()),
            ]),
            Some(BadManifest),
        ),
        with_bytes("bad-magic", |b| b[0] = b'X', BadManifest),
        with_bytes("header-version-2", |b| b[8] = 2, BadManifest),
        with_bytes(
            "total-length-too-big",
            |b| b[12..16].copy_from_slice(&u32::MAX.to_le_bytes()),
            BadManifest,
        ),
        with_bytes(
            "total-length-too-small",
            |b| b[12..16].copy_from_slice(&20u32.to_le_bytes()),
            BadManifest,
        ),
        with_bytes(
            "field-length-lies",
            |b| b[16..20].copy_from_slice(&100_000u32.to_le_bytes()),
            BadManifest,
        ),
        with_bytes(
            "block-duplicated",
            |b| {
                let copy = b.clone();
                b.extend_from_slice(&copy);
            },
            BadManifest,
        ),
        with_bytes(
            "json-not-utf8",
            |b| {
                let last = b.len() - 2;
                b[last] = 0xff;
            },
            BadManifest,
        ),
        with_json(
            "json-invalid",
            r#"{"id": "x", "version": "0.1.0""#,
            BadManifest,
        ),
        with_json(
            "json-unknown-key",
            r#"{"id": "x", "version": "0.1.0", "colour": "red"}"#,
            BadManifest,
        ),
        with_json("id-path-separator", &manifest("../etc"), BadManifest),
        with_json("id-upper-case", &manifest("Hello"), BadManifest),
        with_json("id-1000-chars", &manifest(&"a".repeat(1000)), BadManifest),
        with_json("id-empty", &manifest(""), BadManifest),
        with_json(
            "semver-invalid",
            r#"{"id": "semver-invalid", "version": "one"}"#,
            BadManifest,
        ),
        with_json(
            "string-10mb",
            &format!(
                r#"{{"id": "big", "version": "0.1.0", "description": "{}"}}"#,
                "x".repeat(10 << 20)
            ),
            BadManifest,
        ),
        with_json(
            "json-deeply-nested",
            &format!(
                r#"{{"id": "deep", "version": "0.1.0", "actions": {}{}}}"#,
                "[".repeat(5000),
                "]".repeat(5000)
            ),
            BadManifest,
        ),
        with_json(
            "capability-unknown",
            r#"{"id": "cap", "version": "0.1.0", "capabilities": ["teleport"]}"#,
            BadManifest,
        ),
        with_json(
            "capability-scope-on-unscoped",
            r#"{"id": "cap", "version": "0.1.0", "capabilities": ["host.control:now"]}"#,
            BadManifest,
        ),
        with_json(
            "action-twice",
            r#"{"id": "dup", "version": "0.1.0", "actions": [{"name": "a"}, {"name": "a"}]}"#,
            BadManifest,
        ),
        with_json(
            "required-not-granted",
            r#"{"id": "needs-kv", "version": "0.1.0", "capabilities": [{"name": "kv", "required": true}]}"#,
            NotGranted,
        ),
        with_block(
            "abi-major-plus-one",
            |b| b.abi_version = "1.1.0".into(),
            Some(AbiIncompatible),
        ),
        with_block(
            "abi-major-far",
            |b| b.abi_version = "9.0.0".into(),
            Some(AbiIncompatible),
        ),
        with_block(
            "abi-minor-ahead",
            |b| b.abi_version = "0.2.0".into(),
            Some(AbiIncompatible),
        ),
        with_block(
            "abi-minor-behind",
            |b| b.abi_version = "0.0.9".into(),
            Some(AbiIncompatible),
        ),
        with_block(
            "abi-not-semver",
            |b| b.abi_version = "latest".into(),
            Some(AbiIncompatible),
        ),
        with_block(
            "abi-pre-release",
            |b| b.abi_version = format!("{}-alpha", airlock_abi::ABI_VERSION),
            Some(AbiIncompatible),
        ),
        with_block(
            "target-other",
            |b| b.target = "aarch64-apple-darwin".into(),
            Some(BuildMismatch),
        ),
        with_block(
            "panic-abort",
            |b| b.panic = "abort".into(),
            Some(BuildMismatch),
        ),
        with_block(
            "rustc-other",
            |b| b.rustc = "rustc 1.70.0 (90c541806 2023-05-31)".into(),
            None,
        ),
    ];
    let mut past_end = synthetic::plugin(block(&manifest("past-end")).encode());
    let len = past_end.len() as u64;
    synthetic::move_section(&mut past_end, ".airlock", len + 4096);
    cases.push(case("section-past-end", past_end, Some(Truncated)));
    for cut in [5, 63, 64, 1000, hello.len() / 2, hello.len() - 1] {
        cases.push(case(
            &format!("hello-cut-{cut}"),
            hello[..cut].to_vec(),
            Some(Truncated),
        ));
    }
    let mut bad_json = hello.clone();
    if let Some(at) = bad_json.windows(6).rposition(|w| w == b"\"hello") {
        bad_json[at + 1] = b'H';
    }
    cases.push(case("hello-id-patched-upper", bad_json, Some(BadManifest)));
    cases.push(case("z-hello-copy", hello, Some(DuplicateId)));
    cases
}

#[test]
fn every_hostile_file_is_refused_with_its_reason_and_the_host_keeps_serving() {
    let cases = corpus();
    let dir = TempPluginDir::with(&["hello"]);
    for c in &cases {
        dir.add_bytes(&TempPluginDir::lib_name(&c.name), &c.bytes);
    }
    // File-system cases: permissions, links, special files, a sparse giant.
    let mut fs_cases: Vec<(String, RefusalReason)> = Vec::new();
    let writable = dir.add_bytes(
        &TempPluginDir::lib_name("world-writable"),
        &fixture_bytes("counter"),
    );
    set_mode(&writable, 0o666);
    fs_cases.push(("world-writable".into(), RefusalReason::UnsafePermissions));
    let outside = TempPluginDir::with(&["counter"]);
    std::os::unix::fs::symlink(
        outside.path().join(TempPluginDir::lib_name("counter")),
        dir.path().join(TempPluginDir::lib_name("symlink-out")),
    )
    .expect("symlink");
    fs_cases.push(("symlink-out".into(), RefusalReason::UnsafePermissions));
    std::os::unix::fs::symlink(
        "/nonexistent/airlock",
        dir.path().join(TempPluginDir::lib_name("symlink-dangling")),
    )
    .expect("symlink");
    fs_cases.push(("symlink-dangling".into(), RefusalReason::UnsafePermissions));
    std::fs::create_dir(dir.path().join(TempPluginDir::lib_name("a-directory"))).expect("mkdir");
    fs_cases.push(("a-directory".into(), RefusalReason::NotALibrary));
    assert!(Command::new("mkfifo")
        .arg(dir.path().join(TempPluginDir::lib_name("a-fifo")))
        .status()
        .expect("mkfifo")
        .success());
    fs_cases.push(("a-fifo".into(), RefusalReason::NotALibrary));
    let sparse = std::fs::File::create(dir.path().join(TempPluginDir::lib_name("sparse-1tb")))
        .expect("create");
    sparse.set_len(1 << 40).expect("a sparse terabyte");
    fs_cases.push(("sparse-1tb".into(), RefusalReason::TooLarge));

    let report = check_report(&PipelineOptions::new(vec![dir.path().to_owned()])).expect("checked");
    let reason = |name: &str| airlock_tests::reason_of(&report, &TempPluginDir::lib_name(name));
    let mut right = 0;
    for c in &cases {
        assert_eq!(
            reason(&c.name),
            c.expected.map(|r| r.code()),
            "case {}",
            c.name
        );
        right += 1;
    }
    for (name, expected) in &fs_cases {
        assert_eq!(reason(name), Some(expected.code()), "case {name}");
        right += 1;
    }
    assert_eq!(reason("hello"), None);

    // Loading: everything is refused before load, except the one case that only differs in its
    // rustc (shown, not gated) which is removed first: it is no library the linker can map.
    std::fs::remove_file(dir.path().join(TempPluginDir::lib_name("rustc-other"))).expect("remove");
    let (host, load) = dir.load("");
    assert!(load
        .plugins
        .iter()
        .filter(|p| p.status == Status::Refused)
        .all(|p| p.reason.is_some_and(|r| r.before_load())));
    assert_eq!(host.plugins().len(), 1);
    assert_eq!(
        host.call("hello", "greet")
            .json(&serde_json::Value::Null)
            .expect("hello serves"),
        airlock::Reply::Ok("Hello, world!".into())
    );
    let total = cases.len() + fs_cases.len();
    eprintln!("hostile files: {total} cases, {right} refused with the expected reason (or passed as expected), 0 crashes");
    assert!(total >= 50, "the corpus has {total} cases; the bar is 50");
}

#[test]
fn the_bytes_loaded_are_the_bytes_checked_even_if_the_file_is_replaced_in_between() {
    let dir = TempPluginDir::with(&["hello"]);
    let checked = airlock::pipeline::check(&PipelineOptions::new(vec![dir.path().to_owned()]))
        .expect("checked");
    let checked_hash = checked[0]
        .as_ref()
        .expect("hello passes")
        .file
        .blake3
        .clone();
    // Replace the file on disk after the check: a different build under the same name.
    dir.add_as("counter", &TempPluginDir::lib_name("hello"));
    let host = airlock::Host::builder()
        .plugin_dir(dir.path())
        .build()
        .expect("host");
    for c in checked {
        host.load_checked(c.expect("checked")).expect("loads");
    }
    let info = host.plugin("hello").expect("the checked plugin loaded");
    assert_eq!(info.blake3, checked_hash);
    assert_eq!(
        host.call("hello", "greet")
            .json(&serde_json::Value::Null)
            .expect("call"),
        airlock::Reply::Ok("Hello, world!".into()),
        "the checked bytes were loaded, not the file now on disk"
    );
}

/// A small deterministic generator; the seed is printed so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn mutated_libraries_never_panic_the_reader() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("mutation seed: {seed}");
    let mut rng = Rng(seed);
    let original = fixture_bytes("hello");
    let mut outcomes = std::collections::BTreeMap::<&str, usize>::new();
    const MUTANTS: usize = 2000;
    for _ in 0..MUTANTS {
        let mut bytes = original.clone();
        match rng.below(3) {
            // Flip bytes, mostly in the headers where structure lives.
            0 => {
                for _ in 0..1 + rng.below(8) {
                    let at = if rng.below(2) == 0 {
                        rng.below(4096)
                    } else {
                        rng.below(bytes.len())
                    };
                    bytes[at] ^= 1 << rng.below(8);
                }
            }
            // Cut it short.
            1 => bytes.truncate(rng.below(bytes.len())),
            // Overwrite a run with garbage.
            _ => {
                let at = rng.below(bytes.len());
                let len = rng.below(256).min(bytes.len() - at);
                for b in &mut bytes[at..at + len] {
                    *b = rng.next() as u8;
                }
            }
        }
        let outcome =
            match airlock::pipeline::read_library_bytes(std::path::Path::new("mutant.so"), bytes) {
                Ok(_) => "read",
                Err(refusal) => refusal.reason.code(),
            };
        *outcomes.entry(outcome).or_default() += 1;
    }
    eprintln!("{MUTANTS} mutated libraries read without a panic: {outcomes:?}");
    assert_eq!(outcomes.values().sum::<usize>(), MUTANTS);
}

#[test]
fn random_text_never_panics_the_manifest_and_policy_parsers() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let alphabet: Vec<char> =
        "{}[]\":,.-_ =\n\\abcdefghijklmnopqrstuvwxyz0123456789[plugins.]grants\u{0}\u{ff}é"
            .chars()
            .collect();
    let seeds = [
        r#"{"id": "a", "version": "0.1.0", "capabilities": ["kv"], "actions": [{"name": "x"}]}"#,
        "[plugins.a]\ngrants = [\"kv\"]\n[plugins.a.config]\nx = 1\n",
    ];
    for i in 0..3000 {
        let mut text: Vec<char> = seeds[i % 2].chars().collect();
        for _ in 0..1 + rng.below(6) {
            let at = rng.below(text.len() + 1);
            match rng.below(3) {
                0 if at < text.len() => {
                    text.remove(at);
                }
                _ => text.insert(at, alphabet[rng.below(alphabet.len())]),
            }
        }
        let text: String = text.into_iter().collect();
        let _ = airlock_abi::manifest::Manifest::from_json(&text);
        let _ = airlock::Policy::parse(&text, airlock::policy::PolicyFormat::Toml);
        let _ = airlock::Policy::parse(&text, airlock::policy::PolicyFormat::Json);
    }
}
