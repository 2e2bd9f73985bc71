//! The OCI peers of the distribution tests: a real registry, the CNCF distribution registry
//! (`docker-registry serve`, which `scripts/test.sh` installs), run on 127.0.0.1 over plain HTTP
//! with its storage in a temporary directory so that a test can read and damage what it stores;
//! and a client this project did not write, `tests/interop/oras_peer.py` on the ORAS project's
//! Python SDK, that pushes and pulls plugins in Airlock's layout.

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a registry may take to answer `GET /v2/` after it starts.
const READY_DEADLINE: Duration = Duration::from_secs(20);
/// How often the start is polled.
const POLL: Duration = Duration::from_millis(50);
/// How many ports are tried when the one picked was taken before the registry bound it.
const PORT_ATTEMPTS: usize = 5;

/// A registry process of its own (deletes enabled; authentication only when asked for), killed
/// on drop.
#[derive(Debug)]
pub struct TestRegistry {
    // Declared before `dir`: the process is stopped before its storage is removed.
    process: Process,
    port: u16,
    dir: tempfile::TempDir,
}

impl TestRegistry {
    /// Starts a registry on a free port of 127.0.0.1 and waits until it answers `GET /v2/`.
    ///
    /// # Panics
    ///
    /// If `AIRLOCK_TEST_REGISTRY` does not name the `docker-registry` program (run the tests
    /// with `./scripts/test.sh`), or the registry does not start; the message holds its log.
    pub fn start() -> Self {
        Self::start_with(None, None)
    }

    /// [`TestRegistry::start`], serving HTTPS with the certificate and key (PEM files) given.
    ///
    /// # Panics
    ///
    /// As [`TestRegistry::start`].
    pub fn start_with_tls(certificate: &Path, key: &Path) -> Self {
        Self::start_with(None, Some((certificate, key)))
    }

    /// [`TestRegistry::start`], with HTTP basic authentication: only `user` with `password` may
    /// read or write (an htpasswd file made by Apache's `htpasswd`, bcrypt, as the registry
    /// requires).
    ///
    /// # Panics
    ///
    /// As [`TestRegistry::start`]; also if `AIRLOCK_TEST_HTPASSWD` does not name `htpasswd`, or
    /// `user` or `password` holds anything but ASCII letters, digits, `.`, `_` and `-` (they
    /// travel in the address the start is checked with).
    pub fn start_with_basic_auth(user: &str, password: &str) -> Self {
        let plain = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        };
        assert!(
            plain(user) && plain(password),
            "the test registry's user and password are letters, digits, '.', '_' and '-'"
        );
        Self::start_with(Some((user, password)), None)
    }

    fn start_with(basic_auth: Option<(&str, &str)>, tls: Option<(&Path, &Path)>) -> Self {
        let program = peer_program(
            "AIRLOCK_TEST_REGISTRY",
            "the distribution registry (docker-registry)",
        );
        let dir = tempfile::Builder::new()
            .prefix("airlock-registry-")
            .tempdir()
            .expect("temporary directory for the registry");
        let mut config_text = String::new();
        if let Some((certificate, key)) = tls {
            config_text = format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                certificate.display(),
                key.display()
            );
        }
        if let Some((user, password)) = basic_auth {
            let htpasswd = htpasswd_line(user, password);
            let path = dir.path().join("htpasswd");
            fs::write(&path, htpasswd).expect("write the registry's htpasswd file");
            config_text += &format!(
                "auth:\n  htpasswd:\n    realm: airlock-test\n    path: {}\n",
                path.display()
            );
        }
        let log_path = dir.path().join("registry.log");
        let mut taken = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let config = dir.path().join("config.yml");
            let text = config_yaml(&dir.path().join("storage"), port) + &config_text;
            fs::write(&config, text).expect("write the registry's config");
            let log = fs::File::create(&log_path).expect("create the registry's log");
            let mut command = Command::new(&program);
            // The registry reads `REGISTRY_*` variables over its config file: none may leak in.
            for (name, _) in std::env::vars_os() {
                if name.to_string_lossy().starts_with("REGISTRY_") {
                    command.env_remove(name);
                }
            }
            let child = command
                .arg("serve")
                .arg(&config)
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("registry log handle"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
            let mut process = Process(child);
            match wait_ready(&mut process.0, port, basic_auth, tls.is_some(), &log_path) {
                Ok(()) => return Self { process, port, dir },
                Err(Start::PortTaken) => taken.push(port),
                Err(Start::Failed(why)) => panic!(
                    "the test registry did not start: {why}\n{}",
                    fs::read_to_string(&log_path).unwrap_or_default()
                ),
            }
        }
        panic!("the test registry found no free port: {taken:?} were taken before it bound them")
    }

    /// Its address, `127.0.0.1:<port>` (plain HTTP).
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The directory its filesystem storage driver keeps everything under.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The file holding the blob `digest` (`sha256:<hex>`) in the filesystem driver's layout,
    /// which the registry serves as it is: a test may change it to play a registry that lies.
    ///
    /// # Panics
    ///
    /// If `digest` is not a sha256 digest in lower-case hex.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        assert!(
            hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
            "{digest:?} is not a sha256 digest"
        );
        self.root()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// What the registry has logged (warnings and errors), for a failing test's message.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The registry's process id (a test may stop it to play a registry that went away).
    pub fn pid(&self) -> u32 {
        self.process.0.id()
    }
}

/// The registry's process, killed and reaped on drop.
#[derive(Debug)]
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        // Killing a process that has already exited fails; waiting reaps it either way.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls until `child` answers `GET /v2/` on `port` with 200, or says why it never will.
fn wait_ready(
    child: &mut Child,
    port: u16,
    basic_auth: Option<(&str, &str)>,
    tls: bool,
    log: &Path,
) -> Result<(), Start> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(2))
        .build();
    let login = basic_auth.map_or_else(String::new, |(user, password)| {
        format!("{user}:{password}@")
    });
    let url = format!("http://{login}127.0.0.1:{port}/v2/");
    let deadline = Instant::now() + READY_DEADLINE;
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("registry status") {
            let logged = fs::read_to_string(log).unwrap_or_default();
            return Err(if logged.contains("address already in use") {
                Start::PortTaken
            } else {
                Start::Failed(format!("it exited ({status})"))
            });
        }
        match agent.get(&url).call() {
            // Another program may hold the port and answer; the registry started here is
            // ready only when it owns the socket that answered.
            Ok(response) if response.status() == 200 => {
                if owns_listener(child.id(), port) {
                    return Ok(());
                }
                last = "another program answers on the port".to_owned();
            }
            // A TLS registry answers a plain request with 400 ("an HTTP request to an HTTPS
            // server"): listening, and the port is its own.
            Err(ureq::Error::Status(400, _)) if tls && owns_listener(child.id(), port) => {
                return Ok(());
            }
            Ok(response) => last = format!("GET /v2/ answered {}", response.status()),
            Err(ureq::Error::Status(code, _)) => last = format!("GET /v2/ answered {code}"),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(POLL);
    }
    Err(Start::Failed(format!(
        "no 200 from {url} within {READY_DEADLINE:?}: {last}"
    )))
}

/// Runs the ORAS peer (`tests/interop/oras_peer.py`) in the tests' Python with `args`, such as
/// `["pull", "127.0.0.1:PORT/repo:tag", "--out", DIR]`: its JSON answer, or what it said on
/// standard error when it failed.
///
/// # Errors
///
/// The peer's message when it refused or failed (a digest that does not match, a manifest that
/// is not Airlock's, a registry that answered an error).
///
/// # Panics
///
/// If `AIRLOCK_TEST_PYTHON` does not name the tests' Python (run the tests with
/// `./scripts/test.sh`), or the peer succeeded without a JSON answer.
pub fn oras_peer<I>(args: I) -> Result<serde_json::Value, String>
where
    I: IntoIterator,
    I::Item: AsRef<OsStr>,
{
    let python = std::env::var_os("AIRLOCK_TEST_PYTHON").unwrap_or_else(|| {
        panic!(
            "AIRLOCK_TEST_PYTHON is not set: run the tests with ./scripts/test.sh, which makes \
             a Python with the ORAS SDK (oras) and sets it"
        )
    });
    assert!(
        Path::new(&python).exists(),
        "AIRLOCK_TEST_PYTHON={} does not exist: run ./scripts/test.sh to make it",
        Path::new(&python).display()
    );
    let output = Command::new(&python)
        .arg(crate::workspace_root().join("tests/interop/oras_peer.py"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the ORAS peer starts");
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).trim().to_owned());
    }
    Ok(serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "the ORAS peer answered no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    }))
}

/// Why a start attempt failed.
enum Start {
    /// The port picked was bound by someone else first: try another.
    PortTaken,
    /// Anything else, said.
    Failed(String),
}

/// A program the tests drive, from the variable `scripts/test.sh` sets to it.
fn peer_program(variable: &str, what: &str) -> PathBuf {
    let program = std::env::var_os(variable).unwrap_or_else(|| {
        panic!(
            "{variable} is not set: run the tests with ./scripts/test.sh, which installs {what} \
             and sets it"
        )
    });
    let program = PathBuf::from(program);
    assert!(
        program.is_file(),
        "{variable}={} does not exist: run ./scripts/test.sh to install {what}",
        program.display()
    );
    program
}

/// An htpasswd line for `user`, its password hashed with bcrypt by Apache's `htpasswd`.
fn htpasswd_line(user: &str, password: &str) -> String {
    let htpasswd = peer_program("AIRLOCK_TEST_HTPASSWD", "Apache's htpasswd (apache2-utils)");
    let output = Command::new(&htpasswd)
        .args(["-B", "-b", "-n", user, password])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", htpasswd.display()));
    assert!(
        output.status.success(),
        "htpasswd failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("htpasswd writes text")
}

/// A port of 127.0.0.1 that was free a moment ago (bound, then released for the registry).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind a free port on 127.0.0.1")
        .port()
}

/// The registry's configuration: filesystem storage under `storage`, deletes enabled (the
/// tests remove what they pushed), no authentication, warnings and worse only, on
/// 127.0.0.1:`port`, with an upload secret of its own (else it warns that it made one). Its log
/// goes to standard error, which is `registry.log`.
fn config_yaml(storage: &Path, port: u16) -> String {
    format!(
        "version: 0.1\n\
         log:\n  level: warn\n  formatter: text\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
         \x20 maintenance:\n    uploadpurging:\n      enabled: false\n\
         http:\n  addr: 127.0.0.1:{port}\n  secret: airlock-test-registry\n",
        storage = storage.display()
    )
}

/// Whether process `pid` holds the socket listening on 127.0.0.1:`port`, read from `/proc`:
/// the inode of the listening socket in `/proc/net/tcp` among the process's open files.
#[cfg(target_os = "linux")]
fn owns_listener(pid: u32, port: u16) -> bool {
    let mut table = String::new();
    if fs::File::open("/proc/net/tcp")
        .and_then(|mut file| file.read_to_string(&mut table))
        .is_err()
    {
        return false;
    }
    // local_address is 0100007F:<PORT> for 127.0.0.1; state 0A is LISTEN; column 9 the inode.
    let local = format!("0100007F:{port:04X}");
    let Some(inode) = table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A"))
            .then(|| fields.get(9).map(|inode| format!("socket:[{inode}]")))
            .flatten()
    }) else {
        return false;
    };
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == inode.as_str()))
}

/// Elsewhere, the answer on the port is taken as the registry's.
#[cfg(not(target_os = "linux"))]
fn owns_listener(_pid: u32, _port: u16) -> bool {
    true
}
