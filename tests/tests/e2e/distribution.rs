//! Distributing plugins: publisher signatures (minisign's format) checked before anything of a
//! library runs — a trusted one loads; unsigned, tampered (the library or the signature), an
//! untrusted key and a signature for another file are each refused with their own code and the
//! constructor-marker fixture proves no code ran —; interoperability both ways with the
//! reference `minisign` crate, and with the keys the `minisign` tool makes (unencrypted with
//! `-W`, and encrypted); an empty key password treated as unset; and `airlock install`,
//! `remove` and `list`, with a watched directory that follows them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use airlock::pipeline::signature_path;
use airlock::RefusalReason;
use airlock_tests::{fixture_bytes, TempPluginDir};
use serde_json::Value;

/// A publisher: a key pair made by the reference implementation.
pub(crate) struct Publisher {
    pair: minisign::KeyPair,
}

impl Publisher {
    pub(crate) fn new() -> Self {
        Self {
            pair: minisign::KeyPair::generate_unencrypted_keypair().expect("a key pair"),
        }
    }

    pub(crate) fn public(&self) -> String {
        self.pair.pk.to_base64()
    }

    /// Signs `library` with the reference implementation: `library.minisig`.
    pub(crate) fn sign(&self, library: &Path) {
        let bytes = std::fs::read(library).expect("read");
        let signature = minisign::sign(
            None,
            &self.pair.sk,
            std::io::Cursor::new(bytes),
            Some("file:test"),
            None,
        )
        .expect("signed");
        std::fs::write(signature_path(library), signature.into_string()).expect("write");
    }
}

fn airlock(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_airlock-cli"));
    cmd.args(args).env_remove("AIRLOCK_CTOR_MARKER");
    cmd
}

fn run(mut cmd: Command) -> (Output, String) {
    let out = cmd.output().expect("the CLI runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, stdout)
}

/// The offset of a byte inside the library's code: changing it leaves a well-formed library
/// whose bytes are not the ones signed.
fn code_byte(library: &Path) -> usize {
    use object::{Object, ObjectSection};
    let bytes = std::fs::read(library).expect("read");
    let file = object::File::parse(&*bytes).expect("an object file");
    let text = file.section_by_name(".text").expect("a .text section");
    let (offset, size) = text.file_range().expect("in the file");
    usize::try_from(offset + size / 2).expect("fits")
}

#[test]
fn a_trusted_signature_loads_and_every_bad_one_is_refused_before_any_code_runs() {
    let acme = Publisher::new();
    let stranger = Publisher::new();
    let work = tempfile::tempdir().expect("tempdir");
    let policy = work.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[trust]\nacme = \"{}\"\n\n[defaults]\nsignature = \"required\"\n",
            acme.public()
        ),
    )
    .expect("policy");
    let marker = work.path().join("constructor-ran");
    let check = |dir: &Path| -> Value {
        let mut cmd = airlock(&["check", "--load", "--format", "json", "--policy"]);
        cmd.arg(&policy)
            .arg(dir)
            .env("AIRLOCK_CTOR_MARKER", &marker);
        let (_, stdout) = run(cmd);
        serde_json::from_str(&stdout).expect("JSON")
    };
    let reason = |report: &Value| report["plugins"][0]["reason"].clone();
    let lib = |dir: &TempPluginDir| dir.path().join(TempPluginDir::lib_name("ctor-plugin"));

    // Unsigned.
    let unsigned = TempPluginDir::with(&["ctor-plugin"]);
    let report = check(unsigned.path());
    assert_eq!(reason(&report), "unsigned", "{report}");
    assert!(
        report["plugins"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains(".minisig") && d.contains("signature = \"required\"")),
        "{report}"
    );
    // A byte of the library's code changed after signing.
    let tampered = TempPluginDir::with(&["ctor-plugin"]);
    acme.sign(&lib(&tampered));
    let mut bytes = std::fs::read(lib(&tampered)).expect("read");
    let at = code_byte(&lib(&tampered));
    bytes[at] ^= 0x01;
    std::fs::write(lib(&tampered), &bytes).expect("write");
    let report = check(tampered.path());
    assert_eq!(reason(&report), "bad_signature", "{report}");
    // A character of the signature changed (still base64, same key id).
    let forged = TempPluginDir::with(&["ctor-plugin"]);
    acme.sign(&lib(&forged));
    let text = std::fs::read_to_string(signature_path(&lib(&forged))).expect("read");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let line = &mut lines[1];
    let flip = if line.as_bytes()[40] == b'A' {
        "B"
    } else {
        "A"
    };
    line.replace_range(40..41, flip);
    std::fs::write(signature_path(&lib(&forged)), lines.join("\n") + "\n").expect("write");
    let report = check(forged.path());
    assert_eq!(reason(&report), "bad_signature", "{report}");
    // Signed by a key the policy does not trust.
    let untrusted = TempPluginDir::with(&["ctor-plugin"]);
    stranger.sign(&lib(&untrusted));
    let report = check(untrusted.path());
    assert_eq!(reason(&report), "untrusted_signer", "{report}");
    // A trusted signature, of another file.
    let other = TempPluginDir::with(&["ctor-plugin", "hello"]);
    let hello = other.path().join(TempPluginDir::lib_name("hello"));
    acme.sign(&hello);
    std::fs::copy(signature_path(&hello), signature_path(&lib(&other))).expect("copy");
    std::fs::remove_file(&hello).expect("only ctor-plugin");
    std::fs::remove_file(signature_path(&hello)).expect("and its signature");
    let report = check(other.path());
    assert_eq!(reason(&report), "bad_signature", "{report}");
    assert!(!marker.exists(), "a refused library's constructor ran");

    // Signed by the trusted key: it loads (the constructor runs), and says who signed it.
    let signed = TempPluginDir::with(&["ctor-plugin"]);
    acme.sign(&lib(&signed));
    let report = check(signed.path());
    assert_eq!(report["plugins"][0]["status"], "ok", "{report}");
    assert!(
        report["plugins"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("signed by acme")),
        "{report}"
    );
    assert!(marker.exists(), "control: the signed library was loaded");
    // inspect shows the publisher, checked against the policy's keys.
    let mut cmd = airlock(&["inspect", "--format", "json", "--policy"]);
    cmd.arg(&policy).arg(lib(&signed));
    let (_, stdout) = run(cmd);
    let inspected: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(
        inspected["signature"]["signature"], "verified",
        "{inspected}"
    );
    assert_eq!(inspected["signature"]["publisher"], "acme");
}

#[test]
fn the_host_reports_the_publisher_and_a_signed_by_rule_refuses_another_trusted_key() {
    let acme = Publisher::new();
    let other = Publisher::new();
    let dir = TempPluginDir::with(&["hello"]);
    let hello = dir.path().join(TempPluginDir::lib_name("hello"));
    // signed_by alone asks for a signature: an unsigned build does not do.
    let (_host, report) = dir.load(&format!(
        "[trust]\nacme = \"{}\"\n[plugins.hello]\nsigned_by = [\"acme\"]\n",
        acme.public()
    ));
    assert_eq!(
        report.plugins[0].reason,
        Some(RefusalReason::Unsigned),
        "{report:?}"
    );
    assert!(
        report.plugins[0]
            .detail
            .contains("[plugins.hello] signed_by"),
        "{report:?}"
    );
    other.sign(&hello);
    let policy = format!(
        "[trust]\nacme = \"{}\"\nother = \"{}\"\n[plugins.hello]\nsignature = \"required\"\nsigned_by = [\"acme\"]\n",
        acme.public(),
        other.public()
    );
    let (_host, report) = dir.load(&policy);
    assert_eq!(
        report.plugins[0].reason,
        Some(RefusalReason::UntrustedSigner),
        "{report:?}"
    );
    assert!(report.plugins[0].detail.contains("signed_by"), "{report:?}");
    acme.sign(&hello);
    let (host, report) = dir.load(&policy);
    assert!(report.all_ok(), "{report:?}");
    let info = host.plugin("hello").expect("loaded");
    assert_eq!(info.signature.publisher(), Some("acme"));
}

#[test]
fn airlock_sign_and_keygen_interoperate_with_the_reference_implementation() {
    let work = tempfile::tempdir().expect("tempdir");
    let dir = TempPluginDir::with(&["hello"]);
    let hello = dir.path().join(TempPluginDir::lib_name("hello"));
    // A key made by airlock, a signature made by airlock: the reference verifies it.
    let (out, stdout) = run({
        let mut cmd = airlock(&["keygen", "publisher", "--dir"]);
        cmd.arg(work.path()).env_remove("AIRLOCK_KEY_PASSWORD");
        cmd
    });
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("[trust]") && stdout.contains("publisher = \"RW"),
        "{stdout}"
    );
    // The key id airlock prints is the one the reference implementation writes in the .pub.
    let public_text = std::fs::read_to_string(work.path().join("publisher.pub")).expect("the .pub");
    let id = public_text
        .lines()
        .next()
        .and_then(|l| l.rsplit(' ').next())
        .expect("an id in the comment");
    assert!(stdout.contains(&format!("key id {id}")), "{id}: {stdout}");
    let (out, stdout) = run({
        let mut cmd = airlock(&["sign"]);
        cmd.arg(&hello)
            .arg("--key")
            .arg(work.path().join("publisher.key"));
        cmd
    });
    assert!(out.status.success(), "{stdout}");
    let public = minisign::PublicKey::from_file(work.path().join("publisher.pub")).expect("pub");
    let signature = minisign::SignatureBox::from_file(signature_path(&hello)).expect("a signature");
    let file = std::fs::File::open(&hello).expect("open");
    minisign::verify(&public, &signature, file, true, false, false)
        .expect("the reference implementation verifies airlock's signature");
    // A key made by the reference implementation signs with airlock, and the host trusts it.
    let pair = minisign::KeyPair::generate_unencrypted_keypair().expect("pair");
    let key = work.path().join("reference.key");
    std::fs::write(&key, pair.sk.to_box(None).expect("box").into_string()).expect("write");
    let (out, stdout) = run({
        let mut cmd = airlock(&["sign"]);
        cmd.arg(&hello).arg("--key").arg(&key);
        cmd
    });
    assert!(out.status.success(), "{stdout}");
    let (host, report) = dir.load(&format!(
        "[trust]\nreference = \"{}\"\n[defaults]\nsignature = \"required\"\n",
        pair.pk.to_base64()
    ));
    assert!(report.all_ok(), "{report:?}");
    assert_eq!(
        host.plugin("hello").expect("loaded").signature.publisher(),
        Some("reference")
    );
}

/// Waits until `done` holds, for up to 20 s.
fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn install_replace_remove_and_list_and_a_watched_directory_follows_them() {
    let acme = Publisher::new();
    let work = tempfile::tempdir().expect("tempdir");
    let plugins = work.path().join("plugins");
    std::fs::create_dir(&plugins).expect("plugins");
    let lock = work.path().join("airlock.lock");
    let audit = work.path().join("audit.jsonl");
    let policy = work.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[host]\naudit_log = {audit:?}\n[trust]\nacme = \"{}\"\n[defaults]\nsignature = \"required\"\n",
            acme.public()
        ),
    )
    .expect("policy");
    // Two builds of plugin `tally`, signed, in a build directory of their own.
    let builds = work.path().join("builds");
    std::fs::create_dir(&builds).expect("builds");
    let build = |name: &str, file: &str| -> PathBuf {
        let path = builds.join(file);
        std::fs::write(&path, fixture_bytes(name)).expect("write");
        acme.sign(&path);
        path
    };
    let tally = build("tally", &TempPluginDir::lib_name("tally"));
    let next = build("tally-next", &TempPluginDir::lib_name("tally-next"));
    // A host watching the (empty) directory, with a lock in force (empty: nothing pinned yet;
    // each install pins what it installs, and the host reads the lock again as it reloads).
    airlock::pipeline::Lock::new(&lock, Default::default())
        .write()
        .expect("an empty lock");
    let host = airlock::Host::builder()
        .plugin_dir(&plugins)
        .policy(airlock::Policy::from_file(&policy).expect("policy"))
        .lock_file(&lock)
        .build()
        .expect("host");
    host.load().expect("loaded");
    let _watcher = host
        .watch(Duration::from_millis(100), |_| {})
        .expect("watching");

    let install = |file: &Path, extra: &[&str]| {
        let mut cmd = airlock(&["install"]);
        cmd.arg(file)
            .arg("--dir")
            .arg(&plugins)
            .arg("--policy")
            .arg(&policy)
            .arg("--lock")
            .arg(&lock)
            .args(extra);
        run(cmd)
    };
    let (out, stdout) = install(&tally, &[]);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("installed tally 0.1.0") && stdout.contains("signed by acme"),
        "{stdout}"
    );
    // What it asks for against what the policy grants, with the line to add.
    assert!(
        stdout.contains("kv") && stdout.contains("not granted"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[plugins.tally]\n  grants = [\"kv\"]"),
        "{stdout}"
    );
    assert!(signature_path(&plugins.join(TempPluginDir::lib_name("tally"))).is_file());
    wait_for("the watching host to load tally", || {
        host.plugin("tally").is_some()
    });
    let pinned = std::fs::read_to_string(&lock).expect("the lock");
    assert!(pinned.contains("tally"), "{pinned}");
    // Installed read-only (by a rename), so its owner's own host may load it in place: if it
    // is loaded from a sealed copy, it is not for the file's mode.
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let installed = plugins.join(TempPluginDir::lib_name("tally"));
        let mode = std::fs::metadata(&installed).expect("stat").mode();
        assert_eq!(mode & 0o7777, 0o555);
        let placement = host.plugin("tally").and_then(|p| p.placement);
        if let Some(airlock::pipeline::Placement::SealedCopy { why }) = &placement {
            assert!(!why.contains("read-only"), "{why}");
        }
    }

    // Another file with the same id: refused unless --replace.
    let (out, stdout) = install(&next, &[]);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("already holds plugin tally") && stdout.contains("--replace"),
        "{stdout}"
    );
    let (out, stdout) = install(&next, &["--replace"]);
    assert!(out.status.success(), "{stdout}");
    wait_for("the watching host to serve the new build", || {
        host.plugin("tally").is_some_and(|p| p.version == "0.2.0")
    });
    assert!(!plugins.join(TempPluginDir::lib_name("tally")).exists());

    // An unsigned build is not installed.
    let unsigned = builds.join("unsigned.so");
    std::fs::write(&unsigned, fixture_bytes("hello")).expect("write");
    let (out, stdout) = install(&unsigned, &[]);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("unsigned"), "{stdout}");
    assert!(!plugins.join("unsigned.so").exists());

    // list: id, version, publisher, hash, checks.
    let (out, stdout) = run({
        let mut cmd = airlock(&["list", "--policy"]);
        cmd.arg(&policy).arg(&plugins);
        cmd
    });
    assert!(out.status.success(), "{stdout}");
    let row = stdout
        .lines()
        .find(|l| l.starts_with("tally"))
        .expect("a row");
    assert!(
        row.contains("0.2.0")
            && row.contains("acme")
            && row.split_whitespace().nth(4) == Some("ok")
            && row.ends_with("file"),
        "{stdout}"
    );

    // remove: the watching host tears it down.
    let (out, stdout) = run({
        let mut cmd = airlock(&["remove", "tally", "--dir"]);
        cmd.arg(&plugins).arg("--lock").arg(&lock);
        cmd
    });
    assert!(out.status.success(), "{stdout}");
    wait_for("the watching host to tear tally down", || {
        host.plugin("tally").is_none()
    });
    assert!(!std::fs::read_to_string(&lock)
        .expect("lock")
        .contains("tally"));
    // Each step is in the audit log (written by its own thread).
    for outcome in ["\"outcome\":\"loaded\"", "\"outcome\":\"removed\""] {
        wait_for(outcome, || {
            std::fs::read_to_string(&audit)
                .unwrap_or_default()
                .contains(outcome)
        });
    }
}

#[test]
fn a_new_build_is_held_to_the_same_rule_when_it_is_reloaded() {
    let acme = Publisher::new();
    let dir = TempPluginDir::with(&["tally"]);
    let library = dir.path().join(TempPluginDir::lib_name("tally"));
    acme.sign(&library);
    let policy = format!(
        "[trust]\nacme = \"{}\"\n[defaults]\nsignature = \"required\"\n",
        acme.public()
    );
    let (host, report) = dir.load(&policy);
    assert!(report.all_ok(), "{report:?}");
    // A new build over the old one, its signature not renewed: refused, the old one serves.
    std::fs::write(&library, fixture_bytes("tally-next")).expect("write");
    match host.reload_file(&library) {
        airlock::plugins::ReloadOutcome::Refused { refusal, serving } => {
            assert_eq!(refusal.reason, RefusalReason::BadSignature, "{refusal}");
            assert_eq!(serving, Some(1));
        }
        other => panic!("not refused: {other}"),
    }
    assert_eq!(host.plugin("tally").expect("serving").version, "0.1.0");
    // Signed, it is served.
    acme.sign(&library);
    assert!(matches!(
        host.reload_file(&library),
        airlock::plugins::ReloadOutcome::Loaded { generation: 2, .. }
    ));
    assert_eq!(host.plugin("tally").expect("serving").version, "0.2.0");
    // Another plugin's signed library written in its place: tally is torn down, hello serves.
    std::fs::write(&library, fixture_bytes("hello")).expect("write");
    acme.sign(&library);
    assert!(matches!(
        host.reload_file(&library),
        airlock::plugins::ReloadOutcome::Loaded { .. }
    ));
    assert!(host.plugin("hello").is_some());
    assert!(
        host.plugin("tally").is_none(),
        "the displaced plugin still runs"
    );
}

/// The `minisign` tool, which the test script installs.
fn minisign_tool() -> Command {
    let found = Command::new("minisign")
        .arg("-v")
        .output()
        .is_ok_and(|out| out.status.success());
    assert!(
        found,
        "the `minisign` tool is not installed: run scripts/test.sh, which installs it"
    );
    Command::new("minisign")
}

/// Makes a key pair with the `minisign` tool in `dir`: unencrypted (`-W`), or encrypted with
/// `password` (given on its standard input). Answers the secret key's path and the public key.
fn minisign_keypair(dir: &Path, name: &str, password: Option<&str>) -> (PathBuf, String) {
    use std::io::Write as _;
    let (secret, public) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pub")),
    );
    let mut cmd = minisign_tool();
    cmd.arg("-G").arg("-s").arg(&secret).arg("-p").arg(&public);
    if password.is_none() {
        cmd.arg("-W");
    }
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("minisign runs");
    if let (Some(password), Some(mut stdin)) = (password, child.stdin.take()) {
        write!(stdin, "{password}\n{password}\n").expect("the password");
    }
    let out = child.wait_with_output().expect("minisign ends");
    assert!(out.status.success(), "minisign -G: {out:?}");
    let public = std::fs::read_to_string(&public).expect("the .pub");
    let key = public
        .lines()
        .nth(1)
        .expect("the key line")
        .trim()
        .to_owned();
    (secret, key)
}

#[test]
fn keys_made_by_the_minisign_tool_sign_plugins_that_load() {
    let work = tempfile::tempdir().expect("tempdir");
    for password in [None, Some("correct horse")] {
        let dir = TempPluginDir::with(&["hello"]);
        let hello = dir.path().join(TempPluginDir::lib_name("hello"));
        let name = if password.is_some() {
            "encrypted"
        } else {
            "ci"
        };
        let (secret, public) = minisign_keypair(work.path(), name, password);
        let (out, stdout) = run({
            let mut cmd = airlock(&["sign"]);
            cmd.arg(&hello).arg("--key").arg(&secret);
            match password {
                Some(password) => cmd.env("AIRLOCK_KEY_PASSWORD", password),
                None => cmd.env_remove("AIRLOCK_KEY_PASSWORD"),
            };
            cmd
        });
        assert!(
            out.status.success(),
            "{name}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (host, report) = dir.load(&format!(
            "[trust]\n{name} = \"{public}\"\n[defaults]\nsignature = \"required\"\n"
        ));
        assert!(report.all_ok(), "{name}: {report:?}");
        assert_eq!(
            host.plugin("hello").expect("loaded").signature.publisher(),
            Some(name)
        );
    }
    // The encrypted key with a wrong password, or none, signs nothing.
    let dir = TempPluginDir::with(&["hello"]);
    let hello = dir.path().join(TempPluginDir::lib_name("hello"));
    for password in [Some("wrong"), None] {
        let (out, _) = run({
            let mut cmd = airlock(&["sign"]);
            cmd.arg(&hello)
                .arg("--key")
                .arg(work.path().join("encrypted.key"));
            match password {
                Some(password) => cmd.env("AIRLOCK_KEY_PASSWORD", password),
                None => cmd.env_remove("AIRLOCK_KEY_PASSWORD"),
            };
            cmd
        });
        assert!(!out.status.success(), "{password:?}");
        assert!(!signature_path(&hello).exists(), "{password:?}");
    }
    // A `-W` key whose secret half was damaged is refused, not used to make signatures its
    // public key would refuse.
    let text = std::fs::read_to_string(work.path().join("ci.key")).expect("the key");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut raw = base64_decode(&lines[1]);
    raw[70] ^= 1; // in the Ed25519 seed
    lines[1] = base64_encode(&raw);
    let damaged = work.path().join("damaged.key");
    std::fs::write(&damaged, lines.join("\n") + "\n").expect("write");
    let (out, _) = run({
        let mut cmd = airlock(&["sign"]);
        cmd.arg(&hello).arg("--key").arg(&damaged);
        cmd
    });
    assert!(!out.status.success());
    assert!(!signature_path(&hello).exists());
}

#[test]
fn an_empty_key_password_is_treated_as_unset_and_says_so() {
    let work = tempfile::tempdir().expect("tempdir");
    let mut cmd = airlock(&["keygen", "blank", "--dir"]);
    cmd.arg(work.path()).env("AIRLOCK_KEY_PASSWORD", "");
    let out = cmd.output().expect("the CLI runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stderr.contains("AIRLOCK_KEY_PASSWORD is set but empty"),
        "{stderr}"
    );
    assert!(stdout.contains("not encrypted"), "{stdout}");
    // The key is unencrypted: the reference implementation opens it without a password.
    let text = std::fs::read_to_string(work.path().join("blank.key")).expect("the key");
    let key_box = minisign::SecretKeyBox::from_string(&text).expect("a key box");
    minisign::SecretKey::from_unencrypted_box(key_box).expect("not encrypted");
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .expect("base64")
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
