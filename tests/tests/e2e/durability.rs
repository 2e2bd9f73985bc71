//! Durability and the operator's files: kv writes acknowledged to a plugin survive `kill -9`
//! of the host, a kv counter survives a restart, `airlock lock` pins what it finds, and secrets
//! never reach the logs.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use airlock::services::KvStore;
use airlock::Reply;
use airlock_abi::manifest::PluginId;
use airlock_tests::TempPluginDir;
use serde_json::{json, Value};

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_airlock-cli"))
}

struct Console {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Console {
    fn start(dir: &Path, policy: &Path) -> Self {
        let mut child = cli()
            .arg("run")
            .arg(dir)
            .arg("--policy")
            .arg(policy)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the host starts");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut banner = String::new();
        stdout.read_line(&mut banner).expect("banner");
        assert!(banner.starts_with("airlock console"), "{banner}");
        Self {
            child,
            stdin,
            stdout,
        }
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("write a command");
        self.stdin.flush().expect("flush");
    }

    fn answer(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("an answer");
        line.trim_end().to_owned()
    }
}

/// A small deterministic generator; the seed is printed so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// The probe in a plugin directory, a policy granting it kv in a data directory of its own,
/// and a seeded generator (the seed is printed so a failure can be replayed).
struct KillSetup {
    dir: TempPluginDir,
    data: tempfile::TempDir,
    policy: std::path::PathBuf,
    seed: u64,
    rng: Rng,
}

impl KillSetup {
    fn new(what: &str) -> Self {
        let dir = TempPluginDir::with(&["probe"]);
        let data = tempfile::tempdir().expect("tempdir");
        let policy = data.path().join("policy.toml");
        std::fs::write(
            &policy,
            "[host]\ndata_dir = \"kv\"\n[plugins.probe]\ngrants = [\"kv\"]\n",
        )
        .expect("policy");
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        eprintln!("{what} seed: {seed}");
        Self {
            dir,
            data,
            policy,
            seed,
            rng: Rng(seed),
        }
    }
}

#[test]
fn acknowledged_kv_writes_survive_kill_9_at_random_points() {
    let KillSetup {
        dir,
        data,
        policy,
        seed,
        mut rng,
    } = KillSetup::new("kill -9 test");
    let mut acked: BTreeMap<String, u64> = BTreeMap::new();
    let probe = PluginId::new("probe").expect("id");
    let mut checked_writes = 0;
    // The normal run kills 5 times; scripts/reliability.sh sets AIRLOCK_KILL_ROUNDS=100.
    let rounds: u64 = std::env::var("AIRLOCK_KILL_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    for round in 0..rounds {
        let mut console = Console::start(dir.path(), &policy);
        let acks = 1 + rng.below(20);
        for i in 0..acks {
            let (key, value) = (format!("r{round}-k{i}"), round * 1000 + i);
            console.send(&format!(
                "/call probe kv_set {}",
                json!({"key": key, "value": value})
            ));
            assert_eq!(console.answer(), "ok null", "round {round}, write {i}");
            acked.insert(key, value);
        }
        // More writes in flight, then kill -9 at a random moment among them.
        let pending: Vec<(String, u64)> = (acks..acks + 5)
            .map(|i| (format!("r{round}-k{i}"), round * 1000 + i))
            .collect();
        for (key, value) in &pending {
            console.send(&format!(
                "/call probe kv_set {}",
                json!({"key": key, "value": value})
            ));
        }
        std::thread::sleep(Duration::from_micros(rng.below(3000)));
        console.child.kill().expect("kill -9");
        console.child.wait().expect("reaped");

        let store = KvStore::open(&data.path().join("kv").join("kv.redb"))
            .expect("the store opens after kill -9");
        for (key, value) in &acked {
            let stored = store.get(&probe, key).expect("readable");
            assert_eq!(
                stored,
                Some(value.to_string().into_bytes()),
                "acknowledged {key} lost (seed {seed})"
            );
        }
        checked_writes += acked.len();
        for (key, value) in &pending {
            if let Some(stored) = store.get(&probe, key).expect("readable") {
                assert_eq!(
                    stored,
                    value.to_string().into_bytes(),
                    "partial value for {key} (seed {seed})"
                );
            }
        }
    }
    eprintln!(
        "kill -9: {rounds} kills, {} acknowledged writes, {checked_writes} presence checks, 0 lost, 0 partial",
        acked.len()
    );
}

#[test]
fn kill_9_during_batched_kv_writes_leaves_each_batch_whole_or_absent() {
    let KillSetup {
        dir,
        data,
        policy,
        seed,
        mut rng,
    } = KillSetup::new("kill -9 batch test");
    let probe = PluginId::new("probe").expect("id");
    let batch = |prefix: &str, round: u64| {
        format!(
            "/call probe kv_batch {}",
            json!({"prefix": prefix, "n": 25, "value": round})
        )
    };
    // The normal run kills 3 times; scripts/reliability.sh sets AIRLOCK_KILL_ROUNDS=100.
    let rounds: u64 = std::env::var("AIRLOCK_KILL_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .map_or(3, |r: u64| r.min(100));
    let (mut acked, mut whole, mut absent) = (Vec::new(), 0, 0);
    for round in 0..rounds {
        let mut console = Console::start(dir.path(), &policy);
        let acks = 1 + rng.below(5);
        for i in 0..acks {
            console.send(&batch(&format!("r{round}-b{i}/"), round));
            assert!(
                console.answer().starts_with("ok "),
                "round {round}, batch {i}"
            );
            acked.push(format!("r{round}-b{i}/"));
        }
        let pending: Vec<String> = (acks..acks + 5)
            .map(|i| format!("r{round}-b{i}/"))
            .collect();
        for prefix in &pending {
            console.send(&batch(prefix, round));
        }
        std::thread::sleep(Duration::from_micros(rng.below(5000)));
        console.child.kill().expect("kill -9");
        console.child.wait().expect("reaped");

        let store = KvStore::open(&data.path().join("kv").join("kv.redb"))
            .expect("the store opens after kill -9");
        for prefix in &acked {
            let keys = store.keys(&probe, prefix).expect("readable");
            assert_eq!(keys.len(), 25, "acknowledged batch {prefix} (seed {seed})");
        }
        for prefix in &pending {
            match store.keys(&probe, prefix).expect("readable").len() {
                25 => whole += 1,
                0 => absent += 1,
                n => panic!("batch {prefix} is partial: {n} of 25 keys (seed {seed})"),
            }
        }
    }
    eprintln!(
        "kill -9 batches: {rounds} kills, {} acknowledged batches whole, {whole} in flight whole, \
         {absent} in flight absent, 0 partial",
        acked.len()
    );
}

#[test]
fn a_kv_counter_survives_a_restart_of_the_host() {
    let dir = TempPluginDir::with(&["kv-counter"]);
    let data = tempfile::tempdir().expect("tempdir");
    let policy = format!(
        "[host]\ndata_dir = {:?}\n[plugins.kv-counter]\ngrants = [\"kv\"]\n",
        data.path()
    );
    for expected in [2u64, 4, 6] {
        let (host, report) = dir.load(&policy);
        assert!(report.all_ok(), "{report:#?}");
        host.call("kv-counter", "increment")
            .json(&Value::Null)
            .expect("call");
        let after = host
            .call("kv-counter", "increment")
            .json(&Value::Null)
            .expect("call");
        assert_eq!(after, Reply::Ok(expected.into()));
    }
}

#[test]
fn lock_pins_what_it_finds_and_a_host_with_the_lock_refuses_anything_else() {
    let dir = TempPluginDir::with(&["hello", "counter"]);
    let work = tempfile::tempdir().expect("tempdir");
    let lock = work.path().join("airlock.lock");
    let out = cli()
        .arg("lock")
        .arg(dir.path())
        .arg("-o")
        .arg(&lock)
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = std::fs::read_to_string(&lock).expect("lock written");
    assert!(
        text.contains("[plugins.hello]") && text.contains("[plugins.counter]"),
        "{text}"
    );
    assert!(
        text.contains("blake3 = ") && !text.contains("sha256"),
        "new lock files pin by BLAKE3: {text}"
    );

    let check = |dir: &Path| {
        let out = cli()
            .args(["check", "--format", "json", "--lock"])
            .arg(&lock)
            .arg(dir)
            .output()
            .expect("runs");
        let json: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        (out.status.code(), json)
    };
    let (code, _) = check(dir.path());
    assert_eq!(code, Some(0));

    dir.add("kv-counter");
    let (code, json) = check(dir.path());
    assert_eq!(code, Some(1));
    let unpinned = json["plugins"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|p| p["id"] == "kv-counter")
        .cloned();
    assert_eq!(unpinned.expect("listed")["reason"], "hash_mismatch");

    let hello = airlock::pipeline::read_library(
        &dir.path().join(TempPluginDir::lib_name("hello")),
        &dir.path().join(TempPluginDir::lib_name("hello")),
        airlock::pipeline::DEFAULT_MAX_LIBRARY_SIZE,
    )
    .expect("readable");
    std::fs::write(&lock, text.replace(&hello.blake3, &"0".repeat(64))).expect("tamper");
    let (_, json) = check(dir.path());
    let tampered = json["plugins"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|p| p["id"] == "hello")
        .cloned();
    let tampered = tampered.expect("listed");
    assert_eq!(tampered["reason"], "hash_mismatch");
    assert!(
        tampered["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&format!("found {}", hello.blake3))),
        "{tampered}"
    );
}

/// The lock `check --lock` answers with, and the entry it reports for `id`.
fn check_with_lock(lock: &Path, dir: &Path, id: &str) -> (Option<i32>, Value) {
    let out = cli()
        .args(["check", "--format", "json", "--lock"])
        .arg(lock)
        .arg(dir)
        .output()
        .expect("runs");
    let json: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let entry = json["plugins"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|p| p["id"] == id)
        .cloned()
        .expect("listed");
    (out.status.code(), entry)
}

#[test]
fn a_lock_file_written_with_sha256_pins_is_still_read_and_enforced() {
    use sha2::Digest;
    let dir = TempPluginDir::with(&["hello", "counter"]);
    let sha256 = |name: &str| -> String {
        let bytes = std::fs::read(dir.path().join(TempPluginDir::lib_name(name))).expect("read");
        sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let (hello, counter) = (sha256("hello"), sha256("counter"));
    let work = tempfile::tempdir().expect("tempdir");
    let lock = work.path().join("airlock.lock");
    // The form `airlock lock` wrote before BLAKE3 became the identity.
    let old = format!(
        "[plugins.counter]\nsha256 = \"{counter}\"\nversion = \"0.1.0\"\nfile = \"c\"\n\n\
         [plugins.hello]\nsha256 = \"{hello}\"\nversion = \"0.1.0\"\nfile = \"h\"\n"
    );
    std::fs::write(&lock, &old).expect("write");
    let (code, entry) = check_with_lock(&lock, dir.path(), "hello");
    assert_eq!((code, &entry["status"]), (Some(0), &json!("ok")), "{entry}");

    // One byte of the pin changed: the file no longer matches it.
    let mut wrong = hello.clone();
    wrong.replace_range(..1, if hello.starts_with('0') { "1" } else { "0" });
    std::fs::write(&lock, old.replace(&hello, &wrong)).expect("tamper");
    let (code, entry) = check_with_lock(&lock, dir.path(), "hello");
    assert_eq!(code, Some(1));
    assert_eq!(entry["reason"], "hash_mismatch");
    let detail = entry["detail"].as_str().expect("detail");
    assert!(
        detail.contains(&format!("expected sha256 {wrong}"))
            && detail.contains(&format!("found {hello}"))
            && detail.contains("airlock lock"),
        "{detail}"
    );
    let (_, entry) = check_with_lock(&lock, dir.path(), "counter");
    assert_eq!(entry["status"], "ok", "{entry}");
}

#[test]
fn secrets_reach_the_plugin_but_never_the_logs() {
    let dir = TempPluginDir::with(&["probe"]);
    let work = tempfile::tempdir().expect("tempdir");
    let policy = work.path().join("policy.toml");
    let secret = "hunter2-do-not-log-me";
    std::fs::write(
        &policy,
        format!(
            "[host]\naudit_log = \"audit.jsonl\"\n[secrets]\nprobe_secret = \"{secret}\"\n[plugins.probe]\ngrants = [\"secrets:probe_secret\"]\n"
        ),
    )
    .expect("policy");
    let mut command = cli();
    command
        .arg("run")
        .arg(dir.path())
        .arg("--policy")
        .arg(&policy)
        .env("AIRLOCK_LOG", "trace");
    let out = airlock_tests::run_with_input(
        command,
        "/call probe use {\"capability\":\"secrets\"}\n/call probe use {\"capability\":\"kv\"}\n/audit\n/quit\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains(r#"ok {"outcome":"allowed"}"#), "{stdout}");
    assert!(stdout.contains("capability_violation"), "{stdout}");
    assert!(
        !stdout.contains(secret) && !stderr.contains(secret),
        "a secret reached the output"
    );
    let audit = std::fs::read_to_string(work.path().join("audit.jsonl")).expect("audit log");
    assert_eq!(audit.lines().count(), 1, "{audit}");
    assert!(!audit.contains(secret));
}
