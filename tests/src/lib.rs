//! The vocabulary of Airlock's end-to-end tests: real plugin libraries built once per test run
//! into their own target directory ([`fixture`]), and temporary plugin directories to load them
//! from ([`TempPluginDir`]), and a real OCI registry to publish them to ([`TestRegistry`]) with
//! an OCI client of another project beside it ([`oras_peer`]).

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use airlock::{Host, Policy};

mod registry;

pub use registry::{oras_peer, TestRegistry};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_owned)
}

/// Where the plugin crates are built: a target directory of their own, so that building them
/// from inside `cargo test` never waits on the lock of the outer build.
pub fn fixture_target_dir() -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from);
    base.join("airlock-fixtures")
}

/// Builds every plugin crate under `plugins/` once per test process (cargo makes later builds
/// no-ops) and returns the library of each, by short name (`hello`, `panics-in-init`, …).
///
/// # Panics
///
/// If cargo cannot be run or the build fails; the build's own diagnostics are on stderr.
pub fn fixtures() -> &'static BTreeMap<String, PathBuf> {
    static FIXTURES: OnceLock<BTreeMap<String, PathBuf>> = OnceLock::new();
    FIXTURES.get_or_init(build_fixtures)
}

fn build_fixtures() -> BTreeMap<String, PathBuf> {
    let exclude = [
        "--exclude",
        "airlock",
        "--exclude",
        "airlock-abi",
        "--exclude",
        "airlock-tests",
    ];
    let mut args = vec!["--workspace"];
    args.extend(exclude);
    cargo_build(&args, &[])
}

/// Builds the `versioned` fixture once per variant (environment values at build time) and
/// keeps a copy of each library: `versioned_build("2")` answers version "2".
///
/// # Panics
///
/// If the build fails.
pub fn versioned_build(variant: &str) -> PathBuf {
    static BUILDS: OnceLock<BTreeMap<String, PathBuf>> = OnceLock::new();
    let builds = BUILDS.get_or_init(|| {
        let dir = fixture_target_dir().join("versioned-variants");
        fs::create_dir_all(&dir).expect("variants directory");
        let mut builds = BTreeMap::new();
        for (name, env) in [
            ("1", vec![("AIRLOCK_FIXTURE_VERSION", "1")]),
            ("2", vec![("AIRLOCK_FIXTURE_VERSION", "2")]),
            ("panic", vec![("AIRLOCK_FIXTURE_VERSION", "panic")]),
            (
                "abi9",
                vec![
                    ("AIRLOCK_FIXTURE_VERSION", "abi9"),
                    ("AIRLOCK_FIXTURE_ABI", "9.0.0"),
                ],
            ),
        ] {
            let libs = cargo_build(&["-p", "airlock-fixture-versioned"], &env);
            let copy = dir.join(format!(
                "versioned-{name}.{}",
                airlock::pipeline::library_suffix()
            ));
            fs::copy(&libs["versioned"], &copy).expect("copy the variant");
            builds.insert(name.to_owned(), copy);
        }
        builds
    });
    builds
        .get(variant)
        .unwrap_or_else(|| panic!("no variant {variant:?}"))
        .clone()
}

/// Runs `cargo build` into the fixture target directory and returns each cdylib by short name.
/// Fixtures are built without debug info: smaller files are quicker to copy and map, which the
/// reload stress test does hundreds of times.
fn cargo_build(args: &[&str], env: &[(&str, &str)]) -> BTreeMap<String, PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace_root())
        .args(["build", "--message-format=json-render-diagnostics"])
        .args(["--config", "profile.dev.debug=false"])
        .args(["--config", "profile.dev.strip=\"debuginfo\""])
        .args(args)
        .arg("--target-dir")
        .arg(fixture_target_dir())
        .env_remove("AIRLOCK_FIXTURE_VERSION")
        .env_remove("AIRLOCK_FIXTURE_ABI")
        .stdout(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command
        .spawn()
        .expect("cannot run cargo to build the plugin fixtures");
    let stdout = child.stdout.take().expect("piped stdout");
    let suffix = format!(".{}", airlock::pipeline::library_suffix());
    let mut libs = BTreeMap::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("cargo output is UTF-8");
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let Some(target) = message["target"]["name"].as_str() else {
            continue;
        };
        if let Some(exe) = message["executable"].as_str() {
            libs.insert(format!("bin:{target}"), PathBuf::from(exe));
            continue;
        }
        let short = target
            .trim_start_matches("airlock_example_")
            .trim_start_matches("airlock_fixture_")
            .replace('_', "-");
        for file in message["filenames"].as_array().into_iter().flatten() {
            if let Some(file) = file.as_str().filter(|f| f.ends_with(&suffix)) {
                libs.insert(short.clone(), PathBuf::from(file));
            }
        }
    }
    let status = child.wait().expect("cargo ran");
    assert!(
        status.success(),
        "building the plugin fixtures failed: {status}"
    );
    libs
}

/// The library of one plugin crate, by short name (`hello`, `wrong-abi`, …).
///
/// # Panics
///
/// If there is no such plugin crate.
pub fn fixture(name: &str) -> PathBuf {
    fixtures()
        .get(name)
        .unwrap_or_else(|| {
            panic!(
                "no plugin crate builds {name:?}; have {:?}",
                fixtures().keys()
            )
        })
        .clone()
}

/// The bytes of a fixture's library.
pub fn fixture_bytes(name: &str) -> Vec<u8> {
    fs::read(fixture(name)).expect("fixture readable")
}

/// A temporary plugin directory, removed when dropped.
#[derive(Debug)]
pub struct TempPluginDir {
    dir: tempfile::TempDir,
}

impl Default for TempPluginDir {
    fn default() -> Self {
        Self::new()
    }
}

impl TempPluginDir {
    /// An empty directory (mode 0755).
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("airlock-plugins-")
            .tempdir()
            .expect("temporary directory");
        set_mode(dir.path(), 0o755);
        Self { dir }
    }

    /// A directory holding these fixtures.
    pub fn with(names: &[&str]) -> Self {
        let dir = Self::new();
        for name in names {
            dir.add(name);
        }
        dir
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Copies a fixture in under its own file name, `<name>.so`.
    pub fn add(&self, name: &str) -> PathBuf {
        self.add_as(
            name,
            &format!("{name}.{}", airlock::pipeline::library_suffix()),
        )
    }

    /// Copies a fixture in under `file_name`.
    pub fn add_as(&self, name: &str, file_name: &str) -> PathBuf {
        self.add_bytes(file_name, &fixture_bytes(name))
    }

    /// Writes `bytes` as `file_name` (mode 0755).
    pub fn add_bytes(&self, file_name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(file_name);
        fs::write(&path, bytes).expect("write into the plugin directory");
        set_mode(&path, 0o755);
        path
    }

    /// The file name `stem.<library suffix>`.
    pub fn lib_name(stem: &str) -> String {
        format!("{stem}.{}", airlock::pipeline::library_suffix())
    }

    /// A host over this directory with `policy` (TOML), loaded.
    pub fn load(&self, policy: &str) -> (Host, airlock::LoadReport) {
        self.load_with(policy, |builder| builder)
    }

    /// [`TempPluginDir::load`], with what `customize` adds to the builder (an approver, more
    /// services).
    pub fn load_with(
        &self,
        policy: &str,
        customize: impl FnOnce(airlock::HostBuilder) -> airlock::HostBuilder,
    ) -> (Host, airlock::LoadReport) {
        let policy =
            Policy::parse(policy, airlock::policy::PolicyFormat::Toml).expect("test policy parses");
        let host = customize(probe_services(Host::builder()).worker(worker()))
            .plugin_dir(self.path())
            .policy(policy)
            .build()
            .expect("host builds");
        let report = host.load().expect("plugin directory readable");
        (host, report)
    }
}

/// The worker executable isolated plugins run in, built with the fixtures.
///
/// # Panics
///
/// If the fixture build did not produce it.
pub fn worker() -> PathBuf {
    fixtures()
        .get("bin:airlock-worker")
        .cloned()
        .expect("the fixture build makes the airlock-worker executable")
}

/// Offers the `probe` service of the test interface crate (`airlock-contract-probe`), as every
/// test host does: `ping` answers who called and with what; `fail` answers a service error for
/// `"error"` and panics for `"panic"`; `echo` (JSON) and `echo_binary` (postcard) answer their
/// input.
pub fn probe_services(builder: airlock::HostBuilder) -> airlock::HostBuilder {
    use airlock_contract_probe::{Echo, EchoBinary, Fail, Ping};
    builder
        .operation::<Ping>(probe_ping)
        .operation::<Fail>(probe_fail)
        .operation::<Echo>(|_, value| Ok(value))
        .operation::<EchoBinary>(|_, value| Ok(value))
}

/// The test hosts' `probe.ping`: who called, and with what.
///
/// # Errors
///
/// Never.
pub fn probe_ping(
    caller: &airlock::services::Caller,
    input: airlock_contract_probe::PingInput,
) -> Result<String, airlock::services::ServiceError> {
    Ok(format!(
        "pong to {} (generation {}): {}",
        caller.plugin, caller.generation, input.text
    ))
}

/// The test hosts' `probe.fail`: a service error for `"error"`, a panic for `"panic"`.
///
/// # Errors
///
/// Always, unless it panics.
pub fn probe_fail(
    _: &airlock::services::Caller,
    how: String,
) -> Result<(), airlock::services::ServiceError> {
    if how == "panic" {
        panic!("the probe service was asked to panic");
    }
    Err(airlock::services::ServiceError::new(
        "the probe service was asked to fail",
    ))
}

/// Sets a file's permission bits.
pub fn set_mode(path: &Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
}

/// The reason code the report gives a file, by file name (`None` when it passed).
pub fn reason_of(report: &airlock::LoadReport, file_name: &str) -> Option<&'static str> {
    let entry = report
        .plugins
        .iter()
        .find(|p| p.file.file_name().is_some_and(|n| n == file_name))
        .unwrap_or_else(|| panic!("{file_name} is not in the report: {report:#?}"));
    entry.reason.map(|r| r.code())
}

/// Library files made from scratch, for hostile-input tests: an ELF shared object (`ET_DYN`)
/// with whatever sections a case needs, and manifest blocks with chosen contents. Never
/// loaded: every case built from them is refused before the dynamic linker sees it.
pub mod synthetic {
    use airlock_abi::abi::{ManifestBlock, BUILD_RUSTC, BUILD_TARGET};
    use airlock_abi::ABI_VERSION;
    use object::write::Object;
    use object::{Architecture, BinaryFormat, Endianness, SectionKind};

    /// The architecture this host runs.
    pub fn host_arch() -> Architecture {
        match std::env::consts::ARCH {
            "aarch64" => Architecture::Aarch64,
            "riscv64" => Architecture::Riscv64,
            _ => Architecture::X86_64,
        }
    }

    /// A manifest block with this host's provenance and `json` as plugin.json.
    pub fn block(json: &str) -> ManifestBlock {
        ManifestBlock {
            abi_version: ABI_VERSION.to_owned(),
            rustc: BUILD_RUSTC.to_owned(),
            target: BUILD_TARGET.to_owned(),
            panic: "unwind".to_owned(),
            manifest_json: json.to_owned(),
            resources_blake3: None,
            len: 0,
        }
    }

    /// A minimal valid plugin.json with id `id`.
    pub fn manifest(id: &str) -> String {
        format!(r#"{{"id": "{id}", "version": "0.1.0"}}"#)
    }

    /// An ELF shared object for `arch` with these sections (name, contents).
    pub fn library_for(arch: Architecture, dynamic: bool, sections: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut obj = Object::new(BinaryFormat::Elf, arch, Endianness::Little);
        for (name, data) in sections {
            let id = obj.add_section(
                Vec::new(),
                name.as_bytes().to_vec(),
                SectionKind::ReadOnlyData,
            );
            obj.append_section_data(id, data, 1);
        }
        let mut bytes = obj.write().expect("object writes an ELF file");
        if dynamic {
            // e_type: ET_REL (1) -> ET_DYN (3); stage 2 reads it as a shared library.
            bytes[16] = 3;
            bytes[17] = 0;
        }
        bytes
    }

    /// A shared object for this host with these sections.
    pub fn library(sections: &[(&str, Vec<u8>)]) -> Vec<u8> {
        library_for(host_arch(), true, sections)
    }

    /// A shared object whose `.airlock` section holds `block_bytes`.
    pub fn plugin(block_bytes: Vec<u8>) -> Vec<u8> {
        library(&[(".airlock", block_bytes)])
    }

    /// Rewrites the file offset of section `name` (ELF64) to `offset`.
    pub fn move_section(bytes: &mut [u8], name: &str, offset: u64) {
        use object::{Object as _, ObjectSection as _};
        let index = object::File::parse(&*bytes)
            .expect("parses")
            .section_by_name(name)
            .expect("section exists")
            .index()
            .0;
        let u16_at = |at: usize| u64::from(u16::from_le_bytes([bytes[at], bytes[at + 1]]));
        let shoff = u64::from_le_bytes(bytes[0x28..0x30].try_into().expect("8 bytes"));
        let entsize = u16_at(0x3a);
        let header = usize::try_from(shoff + entsize * index as u64).expect("fits");
        bytes[header + 0x18..header + 0x20].copy_from_slice(&offset.to_le_bytes());
    }
}

/// Runs `command` with `input` on its standard input (then closed) and returns what it wrote
/// and how it ended. For driving the console: `/quit` or the end of input stops it.
pub fn run_with_input(mut command: Command, input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write to stdin");
    child.wait_with_output().expect("the command exits")
}

/// The address `airlock run --listen` says it serves on, read from its standard error (the
/// lines before it are read away).
///
/// # Panics
///
/// When the host ends its standard error without saying it.
pub fn listen_addr(stderr: &mut impl std::io::BufRead) -> std::net::SocketAddr {
    loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).expect("a line") > 0,
            "no address printed"
        );
        if let Some(rest) = line
            .trim()
            .strip_prefix("serving the plugins' routes on http://")
        {
            return rest
                .trim_end_matches("/plugins/<id>/...")
                .parse()
                .expect("an address");
        }
    }
}
