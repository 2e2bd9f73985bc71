//! Plugins through a real OCI registry (the CNCF distribution registry, started per test on
//! 127.0.0.1): a signed plugin published and installed, pinned by BLAKE3 and digest; a
//! two-platform index of which the host installs its own entry; a blob tampered in the
//! registry's storage refused by digest; unsigned and untrusted artifacts refused with a file's
//! reason codes; a version range resolved; an offline install from an image layout; and a host
//! that follows a channel — moving with its tag, keeping its build when the next is refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use airlock::fleet::SourceOutcome;
use airlock::Host;
use airlock_tests::{fixture, oras_peer, versioned_build, TestRegistry};

use super::distribution::Publisher;

fn airlock(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_airlock-cli"))
        .args(args)
        .env_remove("AIRLOCK_CTOR_MARKER")
        .output()
        .expect("the CLI runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// A copy of `library` in `dir`, so a signature can be written beside it.
fn copy_of(library: &Path, dir: &Path) -> PathBuf {
    let to = dir.join(library.file_name().expect("a file name"));
    std::fs::copy(library, &to).expect("copy");
    to
}

/// The lines `airlock publish` prints: the digest of what the tag points to.
fn published_digest(out: &Output) -> String {
    let line = stdout(out);
    let digest = line
        .lines()
        .find_map(|l| l.strip_prefix("published "))
        .and_then(|l| l.split('(').nth(1))
        .map(|d| d.trim_end_matches(')').to_owned());
    digest.unwrap_or_else(|| panic!("no digest in: {}", text(out)))
}

/// A copy of `library` made to look built for another platform: its embedded provenance names
/// `target` and, if given, its ELF header the machine `e_machine` (the plugin's JSON gives or
/// takes whitespace, so the block keeps its length).
fn foreign(library: &Path, target: &str, e_machine: Option<u16>, to: &Path) -> PathBuf {
    use object::{Object, ObjectSection};
    let mut bytes = std::fs::read(library).expect("read");
    let at = {
        let file = object::File::parse(&*bytes).expect("an object file");
        let section = file
            .section_by_name(".airlock")
            .expect("the manifest block's section");
        usize::try_from(section.file_range().expect("in the file").0).expect("fits")
    };
    let total = u32::from_le_bytes(bytes[at + 12..at + 16].try_into().expect("4 bytes")) as usize;
    let mut fields = Vec::new();
    let mut cursor = at + 16;
    while cursor < at + total {
        let len = u32::from_le_bytes(bytes[cursor..cursor + 4].try_into().expect("4")) as usize;
        fields.push(bytes[cursor + 4..cursor + 4 + len].to_vec());
        cursor += 4 + len;
    }
    let (old, new) = (fields[2].len(), target.len());
    fields[2] = target.as_bytes().to_vec();
    if new <= old {
        fields[4].extend(std::iter::repeat_n(b' ', old - new));
    } else {
        for _ in old..new {
            let space = fields[4]
                .iter()
                .rposition(|b| b.is_ascii_whitespace())
                .expect("whitespace in the plugin's JSON to give");
            fields[4].remove(space);
        }
    }
    let mut block = bytes[at..at + 16].to_vec();
    for field in fields {
        block.extend((field.len() as u32).to_le_bytes());
        block.extend(field);
    }
    assert_eq!(block.len(), total);
    bytes[at..at + total].copy_from_slice(&block);
    if let Some(machine) = e_machine {
        bytes[18..20].copy_from_slice(&machine.to_le_bytes());
    }
    std::fs::write(to, bytes).expect("write");
    to.to_owned()
}

/// ELF's machine number for AArch64.
const EM_AARCH64: u16 = 183;

fn trusting(work: &Path, publisher: &Publisher) -> PathBuf {
    let policy = work.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[trust]\nacme = \"{}\"\n\n[defaults]\nsignature = \"required\"\n",
            publisher.public()
        ),
    )
    .expect("policy");
    policy
}

/// A registry, a work directory, a publisher the policy there trusts (signatures required), and
/// a copy of the hello plugin that publisher signed.
struct Signed {
    registry: TestRegistry,
    work: tempfile::TempDir,
    acme: Publisher,
    policy: PathBuf,
    library: PathBuf,
}

fn signed_hello() -> Signed {
    let registry = TestRegistry::start();
    let work = tempfile::tempdir().expect("tempdir");
    let acme = Publisher::new();
    let policy = trusting(work.path(), &acme);
    let library = copy_of(&fixture("hello"), work.path());
    acme.sign(&library);
    Signed {
        registry,
        work,
        acme,
        policy,
        library,
    }
}

#[test]
fn a_signed_plugin_is_published_installed_by_digest_pinned_and_loaded() {
    let Signed {
        registry,
        work,
        policy,
        library,
        ..
    } = signed_hello();
    let reference = format!("oci://{}/acme/hello:1.0.0", registry.addr());
    let out = airlock(&[
        "publish",
        path(&library),
        &reference,
        "--policy",
        path(&policy),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let digest = published_digest(&out);

    // The manifest as the registry serves it: Airlock's artifact type, annotations from the
    // library itself.
    let manifest: serde_json::Value = ureq_json(&registry, "acme/hello", &digest);
    assert_eq!(
        manifest["artifactType"],
        "application/vnd.airlock.plugin.v1"
    );
    assert_eq!(manifest["annotations"]["dev.airlock.plugin.id"], "hello");
    assert_eq!(
        manifest["layers"].as_array().map(Vec::len),
        Some(2),
        "{manifest}"
    );
    assert!(
        manifest["annotations"]["dev.airlock.plugin.publisher"]
            .as_str()
            .is_some_and(|k| !k.is_empty()),
        "{manifest}"
    );

    let plugins = work.path().join("plugins");
    let lock = work.path().join("airlock.lock");
    let out = airlock(&[
        "install",
        &reference,
        "--dir",
        path(&plugins),
        "--lock",
        path(&lock),
        "--policy",
        path(&policy),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("signed by acme"), "{}", text(&out));
    let pinned = std::fs::read_to_string(&lock).expect("lock");
    let blake3 = blake3::hash(&std::fs::read(&library).expect("read"))
        .to_hex()
        .to_string();
    for expected in [
        format!("blake3 = \"{blake3}\""),
        format!("source = \"{reference}\""),
        format!("digest = \"{digest}\""),
    ] {
        assert!(pinned.contains(&expected), "{expected} in:\n{pinned}");
    }
    // The signature came with it, and a host with the lock serves it and says where from.
    let host = Host::builder()
        .plugin_dir(&plugins)
        .policy_file(&policy)
        .expect("policy")
        .lock_file(&lock)
        .build()
        .expect("host");
    let report = host.load().expect("load");
    assert!(
        report.all_ok() && host.plugins().len() == 1,
        "{}",
        report.to_table()
    );
    let origin = host
        .plugin("hello")
        .and_then(|p| p.origin)
        .expect("an origin");
    assert_eq!(
        (origin.source.as_str(), origin.digest.as_str()),
        (reference.as_str(), digest.as_str())
    );
    host.shutdown();
    let listed = airlock(&[
        "list",
        path(&plugins),
        "--lock",
        path(&lock),
        "--policy",
        path(&policy),
    ]);
    assert!(
        stdout(&listed).contains(&format!("{reference}@{digest}")),
        "{}",
        text(&listed)
    );
}

/// A manifest fetched by hand, as any client would.
fn ureq_json(registry: &TestRegistry, repository: &str, digest: &str) -> serde_json::Value {
    let url = format!(
        "http://{}/v2/{repository}/manifests/{digest}",
        registry.addr()
    );
    let body = ureq::get(&url)
        .set(
            "Accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
        )
        .call()
        .expect("the manifest")
        .into_string()
        .expect("text");
    serde_json::from_str(&body).expect("JSON")
}

#[test]
fn a_two_platform_index_installs_this_hosts_entry_read_from_provenance() {
    let registry = TestRegistry::start();
    let work = tempfile::tempdir().expect("tempdir");
    let ours = fixture("hello");
    let dir = work.path().join("builds").tap_mkdir();
    // An AArch64 build, named to mislead: the platform is read from the file, never its name.
    let arm = foreign(
        &ours,
        "aarch64-unknown-linux-gnu",
        Some(EM_AARCH64),
        &dir.join("libhello-x86_64.so"),
    );
    let reference = format!("oci://{}/acme/hello:2", registry.addr());
    let out = airlock(&["publish", path(&arm), path(&ours), &reference]);
    assert!(out.status.success(), "{}", text(&out));
    let index = ureq_json(&registry, "acme/hello", &published_digest(&out));
    assert_eq!(
        index["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{index}"
    );
    let entries: Vec<_> = index["manifests"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|m| {
            let p = &m["platform"];
            format!(
                "{} {}/{}",
                m["annotations"]["dev.airlock.plugin.target"], p["os"], p["architecture"]
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            r#""aarch64-unknown-linux-gnu" "linux"/"arm64""#,
            r#""x86_64-unknown-linux-gnu" "linux"/"amd64""#
        ]
    );
    let plugins = work.path().join("plugins");
    let out = airlock(&["install", &reference, "--dir", path(&plugins)]);
    assert!(out.status.success(), "{}", text(&out));
    let installed = plugins.join(ours.file_name().expect("name"));
    assert_eq!(
        std::fs::read(&installed).expect("installed"),
        std::fs::read(&ours).expect("ours")
    );
    // Two builds for one target are not an index.
    let out = airlock(&["publish", path(&ours), path(&ours), &reference]);
    assert!(
        text(&out).contains("two libraries are built for x86_64-unknown-linux-gnu"),
        "{}",
        text(&out)
    );
    // A file whose provenance names another platform than its own is not published.
    let liar = foreign(
        &ours,
        "aarch64-unknown-linux-gnu",
        None,
        &dir.join("liar.so"),
    );
    let out = airlock(&["publish", path(&liar), &reference]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("build_mismatch") && text(&out).contains("provenance says"),
        "{}",
        text(&out)
    );
    // Builds for other targets only: the host names what there is and installs nothing.
    let musl = foreign(
        &ours,
        "aarch64-unknown-linux-musl",
        Some(EM_AARCH64),
        &dir.join("musl.so"),
    );
    for (tag, files) in [
        ("arm", vec![path(&arm), path(&musl)]),
        ("arm-only", vec![path(&arm)]),
    ] {
        let at = format!("oci://{}/acme/hello:{tag}", registry.addr());
        let mut args = vec!["publish"];
        args.extend(files.iter().copied());
        args.push(&at);
        assert!(airlock(&args).status.success());
        let out = airlock(&["install", &at, "--dir", path(&work.path().join("none"))]);
        assert!(!out.status.success());
        let said = text(&out);
        assert!(
            said.contains("no entry for this host's target x86_64-unknown-linux-gnu")
                && said.contains("aarch64-unknown-linux-gnu"),
            "{tag}: {said}"
        );
    }
}

#[test]
fn a_blob_tampered_in_the_registrys_storage_is_refused_by_digest() {
    let registry = TestRegistry::start();
    let work = tempfile::tempdir().expect("tempdir");
    let library = fixture("hello");
    let reference = format!("oci://{}/acme/hello:1", registry.addr());
    assert!(airlock(&["publish", path(&library), &reference])
        .status
        .success());
    let layer = ureq_json(&registry, "acme/hello", "1")["layers"][0]["digest"]
        .as_str()
        .expect("a layer digest")
        .to_owned();
    let stored = registry.blob_path(&layer);
    let mut bytes = std::fs::read(&stored).expect("the stored blob");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&stored, &bytes).expect("tamper");
    let plugins = work.path().join("plugins");
    let out = airlock(&["install", &reference, "--dir", path(&plugins)]);
    assert!(!out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("digest_mismatch") && said.contains(&layer),
        "{said}"
    );
    let left: Vec<_> = std::fs::read_dir(&plugins)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "nothing is installed: {left:?}");

    // By digest: a manifest whose bytes were changed in storage is refused for what it hashes
    // to, and the right digest of a sound one installs.
    let sound = format!("oci://{}/acme/sound:1", registry.addr());
    let out = airlock(&["publish", path(&fixture("counter")), &sound]);
    let digest = published_digest(&out);
    let by_digest = format!("oci://{}/acme/sound@{digest}", registry.addr());
    let out = airlock(&["install", &by_digest, "--dir", path(&plugins)]);
    assert!(out.status.success(), "{}", text(&out));
    let stored = registry.blob_path(&digest);
    let mut manifest = std::fs::read(&stored).expect("the stored manifest");
    let brace = manifest.iter().rposition(|b| *b == b'}').expect("JSON");
    manifest.insert(brace, b' ');
    std::fs::write(&stored, &manifest).expect("tamper");
    let out = airlock(&[
        "install",
        &by_digest,
        "--dir",
        path(&work.path().join("again")),
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("manifest {digest} arrived with sha256")),
        "{}",
        text(&out)
    );
}

#[test]
fn unsigned_and_untrusted_artifacts_are_refused_with_a_files_reason_codes() {
    let registry = TestRegistry::start();
    let work = tempfile::tempdir().expect("tempdir");
    let acme = Publisher::new();
    let stranger = Publisher::new();
    let policy = trusting(work.path(), &acme);
    let unsigned = copy_of(&fixture("hello"), &work.path().join("u").tap_mkdir());
    let untrusted = copy_of(&fixture("hello"), &work.path().join("t").tap_mkdir());
    stranger.sign(&untrusted);
    for (library, code) in [(&unsigned, "unsigned"), (&untrusted, "untrusted_signer")] {
        let reference = format!("oci://{}/acme/hello:{code}", registry.addr());
        assert!(airlock(&["publish", path(library), &reference])
            .status
            .success());
        let as_file = airlock(&[
            "install",
            path(library),
            "--dir",
            path(&work.path().join("f")),
            "--policy",
            path(&policy),
        ]);
        let as_artifact = airlock(&[
            "install",
            &reference,
            "--dir",
            path(&work.path().join("a")),
            "--policy",
            path(&policy),
        ]);
        for out in [&as_file, &as_artifact] {
            assert!(!out.status.success());
            assert!(
                stdout(out).contains(&format!("refused ({code})")),
                "{}",
                text(out)
            );
        }
    }
}

trait Mkdir {
    fn tap_mkdir(self) -> Self;
}

impl Mkdir for PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).expect("dir");
        self
    }
}

#[test]
fn a_version_range_installs_the_highest_tag_within_it() {
    let registry = TestRegistry::start();
    let work = tempfile::tempdir().expect("tempdir");
    let repository = format!("oci://{}/acme/tools", registry.addr());
    for (plugin, tag) in [
        ("hello", "1.1.0"),
        ("counter", "1.2.0"),
        ("kv-counter", "2.0.0"),
        ("hello", "stable"),
    ] {
        let out = airlock(&[
            "publish",
            path(&fixture(plugin)),
            &format!("{repository}:{tag}"),
        ]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let plugins = work.path().join("plugins");
    let lock = work.path().join("airlock.lock");
    let out = airlock(&[
        "install",
        &repository,
        "--version",
        "^1.1",
        "--dir",
        path(&plugins),
        "--lock",
        path(&lock),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains(&format!("fetched {repository}:1.2.0")),
        "{}",
        text(&out)
    );
    assert!(stdout(&out).contains("installed counter"), "{}", text(&out));
    let pinned = std::fs::read_to_string(&lock).expect("lock");
    assert!(
        pinned.contains("range = \"^1.1\"")
            && pinned.contains(&format!("source = \"{repository}\"")),
        "{pinned}"
    );
    // A newer version within the range makes it outdated; `update` installs it.
    let newer = format!("{repository}:1.3.0");
    assert!(airlock(&["publish", path(&fixture("tally")), &newer])
        .status
        .success());
    let out = airlock(&["outdated", "--lock", path(&lock)]);
    assert!(stdout(&out).contains("(outdated)"), "{}", text(&out));
    let out = airlock(&["update", "--dir", path(&plugins), "--lock", path(&lock)]);
    assert!(
        out.status.success() && stdout(&out).contains("installed tally"),
        "{}",
        text(&out)
    );
    let none = airlock(&[
        "install",
        &repository,
        "--version",
        "^3",
        "--dir",
        path(&plugins),
    ]);
    let misused = airlock(&["install", path(&fixture("hello")), "--version", "^1"]);
    assert!(
        text(&misused).contains("--version chooses among an artifact's tags"),
        "{}",
        text(&misused)
    );
    let two = airlock(&["install", &repository, path(&fixture("hello"))]);
    assert!(
        text(&two).contains("one artifact at a time"),
        "{}",
        text(&two)
    );
    assert!(
        text(&none).contains("no tag is a version within ^3"),
        "{}",
        text(&none)
    );
}

#[test]
fn an_image_layout_installs_offline() {
    let work = tempfile::tempdir().expect("tempdir");
    let layout = work.path().join("mirror");
    {
        let registry = TestRegistry::start();
        let reference = format!("oci://{}/acme/hello:1.0.0", registry.addr());
        assert!(airlock(&["publish", path(&fixture("hello")), &reference])
            .status
            .success());
        let out = airlock(&["pull", &reference, path(&layout)]);
        assert!(out.status.success(), "{}", text(&out));
    }
    // The registry is gone: only the layout on disk remains.
    let plugins = work.path().join("plugins");
    let lock = work.path().join("airlock.lock");
    let source = format!("oci-layout:{}:1.0.0", layout.display());
    let out = airlock(&[
        "install",
        &source,
        "--dir",
        path(&plugins),
        "--lock",
        path(&lock),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read(plugins.join(fixture("hello").file_name().expect("name")))
            .expect("installed"),
        std::fs::read(fixture("hello")).expect("built")
    );
    // A blob changed on disk is refused as one changed in a registry.
    let blobs = layout.join("blobs/sha256");
    let library_blob = std::fs::read_dir(&blobs)
        .expect("blobs")
        .flatten()
        .map(|e| e.path())
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("the library blob");
    let mut bytes = std::fs::read(&library_blob).expect("read");
    bytes[100] ^= 1;
    std::fs::write(&library_blob, bytes).expect("tamper");
    let out = airlock(&[
        "install",
        &source,
        "--dir",
        path(&work.path().join("again")),
    ]);
    assert!(
        !out.status.success() && text(&out).contains("digest_mismatch"),
        "{}",
        text(&out)
    );
}

/// Waits for the follower to report an outcome that `want` accepts.
fn wait_for(
    rx: &std::sync::mpsc::Receiver<SourceOutcome>,
    want: impl Fn(&SourceOutcome) -> bool,
) -> SourceOutcome {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(outcome) if want(&outcome) => return outcome,
            Ok(other) => seen.push(other.to_string()),
            Err(e) => panic!("no such outcome from the follower ({e}); it reported: {seen:#?}"),
        }
    }
}

/// A policy in `work` whose host pins in `lock` and follows `acme/versioned:stable` of
/// `registry` every second.
fn following_policy(work: &Path, registry: &TestRegistry, lock: &Path) -> PathBuf {
    let policy = work.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[host]\nlock = \"{}\"\n\n[plugins.versioned]\ngrants = [\"events.subscribe:reload.*\", \"timers\"]\n\n\
             [[sources]]\nregistry = \"{}\"\nrepository = \"acme/versioned\"\ntag = \"stable\"\nplugin = \"versioned\"\ninterval_secs = 1\n",
            lock.display(),
            registry.addr()
        ),
    )
    .expect("policy");
    policy
}

/// A host over `dirs` with `policy`, loaded and following its sources; what it reports arrives
/// on the receiver.
fn following_host(
    dirs: &[&Path],
    policy: &Path,
) -> (
    Host,
    airlock::fleet::Follower,
    std::sync::mpsc::Receiver<SourceOutcome>,
) {
    let mut builder = Host::builder();
    for dir in dirs {
        builder = builder.plugin_dir(dir);
    }
    let host = builder
        .policy_file(policy)
        .expect("policy")
        .build()
        .expect("host");
    host.load().expect("load");
    let (tx, rx) = std::sync::mpsc::channel();
    let follower = host
        .follow(move |outcome| {
            let _ = tx.send(outcome.clone());
        })
        .expect("follow");
    (host, follower, rx)
}

#[test]
fn a_host_follows_its_channel_and_keeps_serving_when_a_build_is_refused() {
    let registry = TestRegistry::start();
    let work = tempfile::tempdir().expect("tempdir");
    let plugins = work.path().join("plugins").tap_mkdir();
    let lock = work.path().join("airlock.lock");
    std::fs::write(&lock, "").expect("an empty lock");
    let stable = format!("oci://{}/acme/versioned:stable", registry.addr());
    let policy = following_policy(work.path(), &registry, &lock);
    let publish = |variant: &str| {
        published_digest(&airlock(&[
            "publish",
            path(&versioned_build(variant)),
            &stable,
        ]))
    };
    let first = publish("1");
    let (host, _follower, rx) = following_host(&[&plugins], &policy);
    let installed = |digest: &str| {
        let digest = digest.to_owned();
        move |o: &SourceOutcome| matches!(o, SourceOutcome::Installed { digest: d, .. } if *d == digest)
    };
    wait_for(&rx, installed(&first));
    let version = || host.call("versioned", "version").json(&()).expect("call");
    assert_eq!(
        format!("{:?}", version()),
        format!("{:?}", airlock::Reply::Ok(serde_json::json!("1")))
    );

    // The tag moves: the host moves with it, and says which digest it serves.
    let second = publish("2");
    wait_for(&rx, installed(&second));
    assert_eq!(
        format!("{:?}", version()),
        format!("{:?}", airlock::Reply::Ok(serde_json::json!("2")))
    );
    assert_eq!(
        host.plugin("versioned")
            .and_then(|p| p.origin)
            .map(|o| o.digest),
        Some(second.clone())
    );
    let serving =
        std::fs::read(plugins.join(versioned_build("1").file_name().expect("name"))).expect("file");

    // A build that fails at load (its create panics): refused, the files and the pin put back.
    let broken = publish("panic");
    let refused = wait_for(
        &rx,
        |o| matches!(o, SourceOutcome::Refused { digest: Some(d), .. } if *d == broken),
    );
    assert!(refused.to_string().contains("did not load"), "{refused}");
    assert_eq!(
        format!("{:?}", version()),
        format!("{:?}", airlock::Reply::Ok(serde_json::json!("2")))
    );
    assert_eq!(
        std::fs::read(plugins.join(versioned_build("1").file_name().expect("name"))).expect("file"),
        serving
    );
    assert!(std::fs::read_to_string(&lock)
        .expect("lock")
        .contains(&second));
    // A build the checks refuse (another ABI) never reaches the directory.
    let other_abi = publish("abi9");
    wait_for(
        &rx,
        |o| matches!(o, SourceOutcome::Refused { digest: Some(d), .. } if *d == other_abi),
    );
    assert_eq!(
        std::fs::read(plugins.join(versioned_build("1").file_name().expect("name"))).expect("file"),
        serving
    );
    assert_eq!(
        host.plugin("versioned")
            .and_then(|p| p.origin)
            .map(|o| o.digest),
        Some(second)
    );
    let audited: Vec<_> = host
        .audit()
        .tail(200)
        .into_iter()
        .filter(|r| r.capability == stable)
        .map(|r| format!("{:?}", r.outcome))
        .collect();
    assert_eq!(
        audited,
        [
            "SourceInstalled",
            "SourceInstalled",
            "SourceRefused",
            "SourceRefused"
        ]
    );
    host.shutdown();
}

#[test]
fn an_artifact_pushed_by_oras_installs_and_one_airlock_published_verifies_in_oras() {
    let Signed {
        registry,
        work,
        acme,
        policy,
        library,
    } = signed_hello();
    let config = work.path().join("plugin.json");
    std::fs::write(&config, r#"{"id":"hello"}"#).expect("config");
    // ORAS pushes; Airlock installs.
    let pushed = format!("{}/acme/hello:from-oras", registry.addr());
    let signature = airlock::pipeline::signature_path(&library);
    oras_peer([
        "push",
        &pushed,
        "--library",
        path(&library),
        "--signature",
        path(&signature),
        "--config",
        path(&config),
    ])
    .expect("oras pushes");
    let plugins = work.path().join("plugins");
    let out = airlock(&[
        "install",
        &format!("oci://{pushed}"),
        "--dir",
        path(&plugins),
        "--policy",
        path(&policy),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("signed by acme"), "{}", text(&out));
    // Airlock publishes; ORAS pulls and checks every digest, and minisign verifies what it got.
    let published = format!("{}/acme/hello:from-airlock", registry.addr());
    let out = airlock(&[
        "publish",
        path(&library),
        &format!("oci://{published}"),
        "--policy",
        path(&policy),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let pulled = work.path().join("pulled");
    let answer = oras_peer(["pull", &published, "--out", path(&pulled)]).expect("oras pulls");
    assert_eq!(
        answer["files"].as_array().map(Vec::len),
        Some(2),
        "{answer}"
    );
    assert_eq!(
        answer["manifest_digest"].as_str(),
        Some(published_digest(&out).as_str()),
        "{answer}"
    );
    let name = library.file_name().and_then(|n| n.to_str()).expect("name");
    let got = pulled.join(name);
    assert_eq!(
        std::fs::read(&got).expect("pulled"),
        std::fs::read(&library).expect("ours")
    );
    let public = work.path().join("acme.pub");
    std::fs::write(
        &public,
        format!("untrusted comment: acme\n{}\n", acme.public()),
    )
    .expect("key");
    let verified = Command::new("minisign")
        .args(["-V", "-p", path(&public), "-m", path(&got)])
        .output()
        .expect("minisign runs (installed by ./scripts/test.sh)");
    assert!(verified.status.success(), "{}{answer}", text(&verified));
}

#[test]
fn credentials_come_from_the_docker_config_file() {
    let registry = TestRegistry::start_with_basic_auth("ada", "s3cret");
    let work = tempfile::tempdir().expect("tempdir");
    let reference = format!("oci://{}/acme/hello:1", registry.addr());
    let with = |config: Option<&Path>, args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_airlock-cli"));
        cmd.args(args)
            .env_remove("REGISTRY_AUTH_FILE")
            .env("HOME", work.path());
        match config {
            Some(dir) => cmd.env("DOCKER_CONFIG", dir),
            None => cmd.env_remove("DOCKER_CONFIG"),
        };
        cmd.output().expect("the CLI runs")
    };
    let refused = with(None, &["publish", path(&fixture("hello")), &reference]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).to_lowercase().contains("unauthorized") || text(&refused).contains("401"),
        "{}",
        text(&refused)
    );
    let docker = work.path().join("docker").tap_mkdir();
    std::fs::write(
        docker.join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"YWRhOnMzY3JldA=="}}}}}}"#,
            registry.addr()
        ),
    )
    .expect("config");
    let out = with(
        Some(&docker),
        &["publish", path(&fixture("hello")), &reference],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = with(
        Some(&docker),
        &[
            "install",
            &reference,
            "--dir",
            path(&work.path().join("plugins")),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
}

/// Pushes a blob the way any client does (a monolithic upload); returns its descriptor.
fn push_blob(
    registry: &TestRegistry,
    repository: &str,
    bytes: &[u8],
    media_type: &str,
    title: Option<&str>,
) -> serde_json::Value {
    use sha2::Digest as _;
    let digest = format!("sha256:{:x}", sha2::Sha256::digest(bytes));
    let start = ureq::post(&format!(
        "http://{}/v2/{repository}/blobs/uploads/",
        registry.addr()
    ))
    .call()
    .expect("an upload starts");
    let location = start
        .header("Location")
        .expect("an upload location")
        .to_owned();
    let location = if location.starts_with("http") {
        location
    } else {
        format!("http://{}{location}", registry.addr())
    };
    let joiner = if location.contains('?') { '&' } else { '?' };
    ureq::put(&format!("{location}{joiner}digest={digest}"))
        .set("Content-Type", "application/octet-stream")
        .send_bytes(bytes)
        .expect("the blob is stored");
    let mut descriptor =
        serde_json::json!({"mediaType": media_type, "digest": digest, "size": bytes.len()});
    if let Some(title) = title {
        descriptor["annotations"] = serde_json::json!({"org.opencontainers.image.title": title});
    }
    descriptor
}

/// Puts a manifest under `tag`, as any client may.
fn put_manifest(
    registry: &TestRegistry,
    repository: &str,
    tag: &str,
    manifest: &serde_json::Value,
) {
    ureq::put(&format!(
        "http://{}/v2/{repository}/manifests/{tag}",
        registry.addr()
    ))
    .set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
    .send_string(&manifest.to_string())
    .expect("the registry takes it");
}

#[test]
fn hostile_manifests_are_refused_before_anything_is_installed() {
    let registry = TestRegistry::start();
    let work = tempfile::tempdir().expect("tempdir");
    let library = std::fs::read(fixture("hello")).expect("read");
    let library_type = "application/vnd.airlock.plugin.library.v1";
    let config = push_blob(
        &registry,
        "evil/hello",
        br#"{"id":"hello"}"#,
        "application/vnd.airlock.plugin.config.v1+json",
        None,
    );
    let layer =
        |title: &str| push_blob(&registry, "evil/hello", &library, library_type, Some(title));
    let cases = [
        (
            "traversal",
            vec![layer("../escape.so")],
            "is not a file name",
        ),
        ("hidden", vec![layer(".hidden.so")], "is not a file name"),
        ("absolute", vec![layer("/tmp/abs.so")], "is not a file name"),
        (
            "wrong-suffix",
            vec![layer("libhello.dll")],
            "is not a file name",
        ),
        (
            "two-libraries",
            vec![layer("liba.so"), layer("libb.so")],
            "2 library layers",
        ),
        ("no-library", vec![], "0 library layers"),
    ];
    let plugins = work.path().join("plugins");
    for (tag, layers, expected) in cases {
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": "application/vnd.airlock.plugin.v1",
            "config": config,
            "layers": layers,
        });
        put_manifest(&registry, "evil/hello", tag, &manifest);
        let out = airlock(&[
            "install",
            &format!("oci://{}/evil/hello:{tag}", registry.addr()),
            "--dir",
            path(&plugins),
        ]);
        assert!(!out.status.success(), "{tag}: {}", text(&out));
        assert!(text(&out).contains(expected), "{tag}: {}", text(&out));
    }
    // An OCI image, not a plugin: refused for what it is.
    let image_config = push_blob(
        &registry,
        "evil/hello",
        b"{}",
        "application/vnd.oci.image.config.v1+json",
        None,
    );
    let image = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": image_config,
        "layers": [layer("libhello.so")],
    });
    put_manifest(&registry, "evil/hello", "image", &image);
    let out = airlock(&[
        "install",
        &format!("oci://{}/evil/hello:image", registry.addr()),
        "--dir",
        path(&plugins),
    ]);
    assert!(
        text(&out).contains("not an Airlock plugin"),
        "{}",
        text(&out)
    );
    let escaped = [
        work.path().join("escape.so"),
        std::env::temp_dir().join("abs.so"),
    ];
    assert!(
        escaped.iter().all(|p| !p.exists()),
        "nothing written outside the plugin directory"
    );
    let left: Vec<_> = std::fs::read_dir(&plugins)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "nothing installed: {left:?}");
}

#[test]
fn a_registry_over_tls_is_trusted_through_tls_roots_and_refused_without() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let work = tempfile::tempdir().expect("tempdir");
    let ca_key = KeyPair::generate().expect("a key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Airlock registry CA");
    let ca_cert = ca.self_signed(&ca_key).expect("the CA");
    let server_key = KeyPair::generate().expect("a key");
    let server = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("params")
        .signed_by(&server_key, &ca_cert, &ca_key)
        .expect("signed");
    let (ca_pem, cert, key) = (
        work.path().join("ca.pem"),
        work.path().join("registry.pem"),
        work.path().join("registry.key"),
    );
    std::fs::write(&ca_pem, ca_cert.pem()).expect("write");
    std::fs::write(&cert, server.pem()).expect("write");
    std::fs::write(&key, server_key.serialize_pem()).expect("write");
    let registry = TestRegistry::start_with_tls(&cert, &key);
    let reference = format!("oci://{}/acme/hello:1", registry.addr());
    // Without the CA: a TLS registry whose certificate does not verify is refused, never
    // spoken to in plain HTTP instead.
    let out = airlock(&["publish", path(&fixture("hello")), &reference]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).to_lowercase().contains("certificate"),
        "{}",
        text(&out)
    );
    // With the CA among the policy's roots: published and installed over TLS.
    let policy = work.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!("[host]\ntls_roots = [\"{}\"]\n", ca_pem.display()),
    )
    .expect("policy");
    let out = airlock(&[
        "publish",
        path(&fixture("hello")),
        &reference,
        "--policy",
        path(&policy),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let plugins = work.path().join("plugins");
    let out = airlock(&[
        "install",
        &reference,
        "--dir",
        path(&plugins),
        "--policy",
        path(&policy),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(plugins
        .join(fixture("hello").file_name().expect("name"))
        .exists());
}

#[test]
fn a_followed_plugin_is_replaced_in_the_directory_that_holds_it() {
    let registry = TestRegistry::start();
    let work = tempfile::tempdir().expect("tempdir");
    let (first, second) = (
        work.path().join("first").tap_mkdir(),
        work.path().join("second").tap_mkdir(),
    );
    let lock = work.path().join("airlock.lock");
    let stable = format!("oci://{}/acme/versioned:stable", registry.addr());
    let policy = following_policy(work.path(), &registry, &lock);
    // Version 1 is installed in the second directory, and the tag already points to version 2.
    let out = airlock(&[
        "install",
        path(&versioned_build("1")),
        "--dir",
        path(&second),
        "--lock",
        path(&lock),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let second_build =
        published_digest(&airlock(&["publish", path(&versioned_build("2")), &stable]));
    let (host, _follower, rx) = following_host(&[&first, &second], &policy);
    wait_for(
        &rx,
        |o| matches!(o, SourceOutcome::Installed { digest, .. } if *digest == second_build),
    );
    let answer = host.call("versioned", "version").json(&()).expect("call");
    assert_eq!(
        format!("{answer:?}"),
        format!("{:?}", airlock::Reply::Ok(serde_json::json!("2")))
    );
    let name = versioned_build("1").file_name().expect("name").to_owned();
    assert_eq!(
        std::fs::read(second.join(&name)).expect("replaced where it was"),
        std::fs::read(versioned_build("2")).expect("version 2")
    );
    let first_holds: Vec<_> = std::fs::read_dir(&first)
        .expect("first")
        .flatten()
        .collect();
    assert!(
        first_holds.is_empty(),
        "nothing added to the first directory: {first_holds:?}"
    );
    host.shutdown();
}
