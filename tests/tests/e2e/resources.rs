//! Resources a plugin ships inside its library: listed by `airlock inspect` from a file never
//! loaded, read by the host program as the bytes stage 2 checked, covered by the lock like the
//! code, and refused before anything runs when the library's declarations, index and bytes
//! disagree. The `skills` fixture embeds two files with `airlock-build`; `skills-next` is the
//! same plugin and code rebuilt with one of them changed.

use std::path::{Path, PathBuf};
use std::process::Command;

use airlock::pipeline::{read_library, read_library_bytes, DEFAULT_MAX_LIBRARY_SIZE};
use airlock::{Error, RefusalReason};
use airlock_tests::synthetic::{self, block};
use airlock_tests::{fixture_bytes, reason_of, workspace_root, TempPluginDir};
use serde_json::Value;

const SKILL: &str = "skills/summarize.md";
const PANEL: &str = "ui/panel.html";

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_airlock-cli"))
}

/// A resource's source file in the fixture crate `krate`.
fn source(krate: &str, path: &str) -> Vec<u8> {
    let file: PathBuf = workspace_root()
        .join("plugins/fixtures")
        .join(krate)
        .join(path);
    std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// Every offset at which `needle` occurs in `haystack`.
fn occurrences(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

fn refusal_of(bytes: Vec<u8>) -> airlock::Refusal {
    read_library_bytes(Path::new("skills.so"), bytes).expect_err("refused in stage 2")
}

#[test]
fn inspect_lists_the_resources_of_a_file_it_never_loads_and_prints_one() {
    let dir = TempPluginDir::with(&["skills"]);
    let file = dir.path().join(TempPluginDir::lib_name("skills"));
    let out = cli()
        .args(["inspect", "--format", "json"])
        .arg(&file)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let json: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let listed = json["resources"].as_array().expect("a resources list");
    assert_eq!(listed.len(), 2, "{json}");
    for (entry, (path, media)) in listed
        .iter()
        .zip([(SKILL, "text/markdown"), (PANEL, "text/html")])
    {
        let bytes = source("skills", path);
        assert_eq!(entry["path"], path);
        assert_eq!(entry["media_type"], media);
        assert_eq!(entry["size"], bytes.len());
        assert_eq!(entry["blake3"], blake3::hash(&bytes).to_hex().as_str());
    }
    assert_eq!(listed[0]["description"], "How to summarize a thread");

    let table = cli().arg("inspect").arg(&file).output().expect("runs");
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains(&format!("resource:     {SKILL} (")) && table.contains("text/markdown"),
        "{table}"
    );

    let one = cli()
        .arg("inspect")
        .arg(&file)
        .args(["--resource", SKILL])
        .output()
        .expect("runs");
    assert_eq!(one.status.code(), Some(0));
    assert_eq!(one.stdout, source("skills", SKILL), "the bytes, exactly");
    let none = cli()
        .arg("inspect")
        .arg(&file)
        .args(["--resource", "skills/none.md"])
        .output()
        .expect("runs");
    assert_eq!(none.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("no resource \"skills/none.md\""),
        "{none:?}"
    );
}

#[test]
fn the_host_program_reads_the_checked_bytes_not_the_file_on_disk() {
    let dir = TempPluginDir::with(&["skills"]);
    let (host, report) = dir.load("");
    assert!(report.all_ok(), "{report:#?}");
    let listed = host.resources("skills").expect("a loaded plugin");
    let paths: Vec<&str> = listed.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, [SKILL, PANEL], "in declaration order");

    let skill = host.resource("skills", SKILL).expect("declared");
    assert_eq!(*skill.bytes, *source("skills", SKILL));
    assert_eq!(skill.media_type, "text/markdown");
    assert_eq!(skill.blake3, blake3::hash(&skill.bytes).to_hex().as_str());
    assert!(skill.text().is_some_and(|t| t.starts_with("# Summarize")));

    // The file on disk changes (here: to a build with another skill); the host still answers
    // what it checked when it loaded the plugin.
    dir.add_bytes(
        &TempPluginDir::lib_name("skills"),
        &fixture_bytes("skills-next"),
    );
    let again = host.resource("skills", SKILL).expect("still there");
    assert_eq!(*again.bytes, *source("skills", SKILL));

    assert!(matches!(
        host.resource("skills", "skills/none.md"),
        Err(Error::NoSuchResource { plugin, path }) if plugin == "skills" && path == "skills/none.md"
    ));
    assert!(matches!(
        host.resources("nobody"),
        Err(Error::UnknownPlugin(_))
    ));
    // A plugin without resources has none.
    let plain = TempPluginDir::with(&["hello"]);
    let (host, _) = plain.load("");
    assert!(host.resources("hello").expect("loaded").is_empty());
}

#[test]
fn a_rebuild_with_a_changed_resource_is_refused_by_the_lock() {
    let work = tempfile::tempdir().expect("temporary directory");
    let dir = TempPluginDir::with(&["skills"]);
    let lock = work.path().join("airlock.lock");
    let out = cli()
        .arg("lock")
        .arg(dir.path())
        .arg("-o")
        .arg(&lock)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // The same plugin and code, rebuilt with one changed sentence in its skill.
    let next = fixture_bytes("skills-next");
    let rebuilt = read_library_bytes(Path::new("skills.so"), next.clone()).expect("valid");
    assert_eq!(rebuilt.manifest.id.as_str(), "skills");
    let changed = &rebuilt.resources()[0];
    assert_eq!(*changed.bytes, *source("skills-next", SKILL));
    assert_ne!(*changed.bytes, *source("skills", SKILL));
    dir.add_bytes(&TempPluginDir::lib_name("skills"), &next);

    let out = cli()
        .args(["check", "--format", "json", "--lock"])
        .arg(&lock)
        .arg(dir.path())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let entry = &json["plugins"][0];
    assert_eq!(entry["reason"], "hash_mismatch", "{json}");

    // Through the embedding API too.
    let host = airlock::Host::builder()
        .worker(airlock_tests::worker())
        .plugin_dir(dir.path())
        .lock_file(&lock)
        .build()
        .expect("builds");
    let report = host.load().expect("readable");
    assert_eq!(
        reason_of(&report, &TempPluginDir::lib_name("skills")),
        Some("hash_mismatch")
    );
}

#[test]
fn resource_bytes_changed_in_the_file_are_refused_before_load_naming_the_resource() {
    let original = fixture_bytes("skills");
    let skill = source("skills", SKILL);
    let at = occurrences(&original, &skill);
    assert!(!at.is_empty(), "the skill's bytes are in the library");
    let mut tampered = original.clone();
    for &i in &at {
        tampered[i + 2] ^= 0x20;
    }
    let refusal = refusal_of(tampered.clone());
    assert_eq!(refusal.reason, RefusalReason::BadManifest);
    assert!(
        refusal.detail.contains(&format!("resource \"{SKILL}\""))
            && refusal.detail.contains("embed_resources"),
        "{}",
        refusal.detail
    );

    // Its hash in the index changed with it: the manifest block's digest still refuses it.
    let old_hash = blake3::hash(&skill);
    let mut new_skill = skill.clone();
    new_skill[2] ^= 0x20;
    let new_hash = blake3::hash(&new_skill);
    let hashes = occurrences(&tampered, old_hash.as_bytes());
    assert_eq!(hashes.len(), 1, "one index entry holds the skill's hash");
    tampered[hashes[0]..hashes[0] + 32].copy_from_slice(new_hash.as_bytes());
    let refusal = refusal_of(tampered.clone());
    assert_eq!(refusal.reason, RefusalReason::BadManifest);
    assert!(
        refusal.detail.contains("manifest block gives"),
        "{}",
        refusal.detail
    );

    // And a host refuses the file before its code runs.
    let dir = TempPluginDir::new();
    dir.add_bytes(&TempPluginDir::lib_name("skills"), &tampered);
    let (host, report) = dir.load("");
    assert_eq!(
        reason_of(&report, &TempPluginDir::lib_name("skills")),
        Some("bad_manifest")
    );
    assert!(host.plugins().is_empty());
}

#[test]
fn a_declared_resource_the_library_does_not_embed_is_refused() {
    // plugin.json (inside the manifest block) names a file the index lacks.
    let mut bytes = fixture_bytes("skills");
    let quoted = format!("\"{PANEL}\"");
    let at = occurrences(&bytes, quoted.as_bytes());
    assert_eq!(at.len(), 1, "only plugin.json spells the path in quotes");
    bytes[at[0] + quoted.len() - 2] = b'X';
    let refusal = refusal_of(bytes);
    assert_eq!(refusal.reason, RefusalReason::BadManifest);
    assert!(
        refusal
            .detail
            .contains("\"ui/panel.htmX\" is declared in plugin.json")
            && refusal.detail.contains("does not embed it"),
        "{}",
        refusal.detail
    );

    // The resource section is gone (renamed): the manifest block vouches for a block that is
    // not there.
    let mut bytes = fixture_bytes("skills");
    let names = occurrences(&bytes, b".airres\0");
    assert_eq!(names.len(), 1, "one section name");
    bytes[names[0] + 6] = b'z';
    let refusal = refusal_of(bytes);
    assert!(
        refusal.detail.contains("no resource section"),
        "{}",
        refusal.detail
    );

    // Built without embedding: a version 1 manifest block declaring resources, no section.
    let json = r#"{"id":"skills","version":"0.1.0","resources":[{"path":"skills/summarize.md"}]}"#;
    let refusal = refusal_of(synthetic::plugin(block(json).encode()));
    assert_eq!(refusal.reason, RefusalReason::BadManifest);
    assert!(
        refusal.detail.contains("embeds none") && refusal.detail.contains("embed_resources"),
        "{}",
        refusal.detail
    );
}

#[test]
fn a_plugin_without_resources_reads_as_before() {
    use object::{Object as _, ObjectSection as _};
    let hello = fixture_bytes("hello");
    let parsed = object::File::parse(&*hello).expect("an object file");
    let block = parsed
        .section_by_name(".airlock")
        .and_then(|s| s.data().ok())
        .expect("a manifest section");
    assert_eq!(&block[8..10], &[1, 0], "a version 1 manifest block");
    assert!(parsed.section_by_name(".airres").is_none());
    let file = TempPluginDir::with(&["hello"]);
    let path = file.path().join(TempPluginDir::lib_name("hello"));
    let library = read_library(&path, &path, DEFAULT_MAX_LIBRARY_SIZE).expect("valid");
    assert!(library.resources().is_empty());
    assert_eq!(library.block.resources_blake3, None);
    let skills =
        read_library_bytes(Path::new("skills.so"), fixture_bytes("skills")).expect("valid");
    assert!(skills.block.resources_blake3.is_some(), "a version 2 block");
}

#[test]
fn a_malformed_resource_section_is_bad_manifest_not_a_crash() {
    use airlock_abi::abi::ResourceBlock;
    let json = r#"{"id":"r","version":"0.1.0","resources":[{"path":"a.md"}]}"#;
    let good = ResourceBlock::encode(&[(
        "a.md",
        "application/octet-stream",
        *blake3::hash(b"a").as_bytes(),
        b"a",
    )])
    .expect("encodes");
    let with = |section: Vec<u8>| {
        let mut manifest = block(json);
        manifest.resources_blake3 = Some(blake3::hash(&section).to_hex().to_string());
        synthetic::library(&[(".airlock", manifest.encode()), (".airres", section)])
    };
    let ok = read_library_bytes(Path::new("r.so"), with(good.clone())).expect("valid");
    assert_eq!(*ok.resources()[0].bytes, *b"a");
    let mut cases = vec![
        b"not a resource block".to_vec(),
        good[..good.len() - 1].to_vec(),
    ];
    let mut lying = good.clone();
    lying[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    cases.push(lying);
    let mut many = good.clone();
    many[10..12].copy_from_slice(&u16::MAX.to_le_bytes());
    cases.push(many);
    for section in cases {
        let refusal = refusal_of(with(section));
        assert_eq!(refusal.reason, RefusalReason::BadManifest);
        assert!(
            refusal.detail.starts_with("resource block:"),
            "{}",
            refusal.detail
        );
    }
    // Two resource sections.
    let mut manifest = block(json);
    manifest.resources_blake3 = Some(blake3::hash(&good).to_hex().to_string());
    let two = synthetic::library(&[
        (".airlock", manifest.encode()),
        (".airres", good.clone()),
        (".airres", good),
    ]);
    let refusal = refusal_of(two);
    assert!(
        refusal.detail.contains("more than one"),
        "{}",
        refusal.detail
    );
}
