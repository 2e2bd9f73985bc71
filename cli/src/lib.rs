//! The `airlock` command line: parses arguments, calls the `airlock` library, prints. It uses
//! the library's public API only. `src/main.rs` only calls [`main`]; keeping the command here
//! lets other binaries (and tests) run the same code. Besides the commands, the demo console
//! ([`Console`]), the plugin scaffolder ([`new_plugin`]) and the conformance run ([`validate`])
//! live here: they are uses of the library, not parts of it.

mod console;
mod distribute;
mod listen;
mod mcp;
mod scaffold;
mod validate;

pub use console::{Console, ConsoleOutcome, INPUT_TRANSFORM, REPLY_GUARD, REPLY_TRANSFORM};
pub use scaffold::{abi_path, new_plugin, ScaffoldError};
pub use validate::{validate, Check, ValidationReport};

use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use airlock::pipeline::{
    check_report, pin, read_library, PipelineOptions, Status, DEFAULT_MAX_LIBRARY_SIZE,
};
use airlock::plugins::TeardownOutcome;
use airlock::{Host, HostBuilder, LoadReport, Policy};
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "airlock",
    version,
    about = "Load native plugins after checking them, and give each a revocable context"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    Table,
    Json,
}

/// The plugins a command works on: directories, and the operator's policy and lock.
#[derive(Args)]
struct Plugins {
    /// Plugin directories.
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// The operator's policy file (TOML, or JSON if it ends in .json).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Load only the libraries pinned in this lock file.
    #[arg(long)]
    lock: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Show what a library file says about itself, without running any of it.
    Inspect {
        /// The library file.
        file: PathBuf,
        /// Verify its signature against this policy's [trust] keys.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Report what would load and why not (stages 1-3; with --load, all stages then teardown).
    Check {
        #[command(flatten)]
        plugins: Plugins,
        /// Also load and create each plugin, then tear it down.
        #[arg(long)]
        load: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// The demo host: load the plugins and read commands from standard input.
    Run {
        #[command(flatten)]
        plugins: Plugins,
        /// Watch the plugin directories and hot-reload a library when it is rebuilt.
        #[arg(long)]
        watch: bool,
        /// With --watch: how long a changed library must be quiet before it is reloaded.
        #[arg(long, default_value_t = 300)]
        debounce_ms: u64,
        /// Serve the plugins' HTTP routes at this address (`127.0.0.1:8080`), under
        /// /plugins/<id>/...; with AIRLOCK_LISTEN_TOKEN set, requests need it as a bearer token.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Serve the plugins' actions as MCP tools over standard input and output (for an MCP
    /// client to start: see the README), reloading rebuilt libraries.
    Mcp {
        #[command(flatten)]
        plugins: Plugins,
        /// Do not watch the plugin directories for rebuilt libraries.
        #[arg(long)]
        no_watch: bool,
        /// How long a changed library must be quiet before it is reloaded.
        #[arg(long, default_value_t = 300)]
        debounce_ms: u64,
    },
    /// Make a publisher's key pair (minisign's formats): NAME.key and NAME.pub.
    Keygen {
        /// The key's name (also its name in operators' [trust]).
        name: String,
        /// Where to write the two files (default: the current directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Sign a built library: FILE.minisig beside it.
    Sign {
        /// The library file.
        file: PathBuf,
        /// The secret key (from `airlock keygen` or `minisign -G`); AIRLOCK_KEY_PASSWORD opens
        /// an encrypted one.
        #[arg(long)]
        key: PathBuf,
        /// The signature's trusted comment (default: a timestamp and the file's name).
        #[arg(long)]
        comment: Option<String>,
    },
    /// Check libraries as a host would and put them into a plugin directory, with their
    /// signatures.
    Install {
        /// The library files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The plugin directory.
        #[arg(long, default_value = "plugins")]
        dir: PathBuf,
        /// The operator's policy file.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Pin each installed file in this lock file (default: the policy's [host] lock).
        #[arg(long)]
        lock: Option<PathBuf>,
        /// Replace an installed file that holds the same plugin id.
        #[arg(long)]
        replace: bool,
    },
    /// Remove an installed plugin (its library, its signature and its lock entry).
    Remove {
        /// The plugin's id.
        id: String,
        /// The plugin directory.
        #[arg(long, default_value = "plugins")]
        dir: PathBuf,
        /// The operator's policy file (for its [host] lock).
        #[arg(long)]
        policy: Option<PathBuf>,
        /// The lock file to unpin it from (default: the policy's [host] lock).
        #[arg(long)]
        lock: Option<PathBuf>,
    },
    /// The installed plugins: id, version, publisher, hash and the checks' verdict.
    List {
        #[command(flatten)]
        plugins: Plugins,
    },
    /// Create a plugin crate that builds and loads at once.
    New {
        /// The plugin's name, which is also its id (a-z, 0-9, '-', '_').
        name: String,
        /// Where to create it (default: the current directory).
        #[arg(long)]
        path: Option<PathBuf>,
        /// The airlock-abi crate to depend on (default: AIRLOCK_ABI_PATH, else the Airlock
        /// checkout this command was built from).
        #[arg(long)]
        abi: Option<PathBuf>,
    },
    /// Run the conformance checks against one built plugin library.
    Validate {
        /// The library file.
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Pin the BLAKE3 of every library that passes the checks into a lock file.
    Lock {
        /// Plugin directories.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// The operator's policy file.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// The lock file to write.
        #[arg(long, short, default_value = "airlock.lock")]
        output: PathBuf,
    },
}

/// Runs the `airlock` command with the process's arguments and returns its exit code: 0 when
/// everything passed, 1 when a library was refused, 2 on usage or setup errors.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = std::error::Error::source(e.as_ref());
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::from(2)
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AIRLOCK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .init();
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Inspect {
            file,
            policy,
            format,
        } => inspect(&file, policy.as_deref(), format),
        Command::Keygen { name, dir } => {
            distribute::keygen(&name, &dir.unwrap_or_else(|| PathBuf::from(".")))
        }
        Command::Sign { file, key, comment } => distribute::sign(&file, &key, comment.as_deref()),
        Command::Install {
            files,
            dir,
            policy,
            lock,
            replace,
        } => {
            let policy = read_policy(policy.as_deref())?;
            let lock = lock.or_else(|| policy.host().lock.clone());
            distribute::install(&files, &dir, &policy, lock.as_deref(), replace)
        }
        Command::Remove {
            id,
            dir,
            policy,
            lock,
        } => {
            let policy = read_policy(policy.as_deref())?;
            let lock = lock.or_else(|| policy.host().lock.clone());
            distribute::remove(&id, &dir, lock.as_deref())
        }
        Command::List { plugins } => distribute::list(&builder(plugins)?.check_options()?),
        Command::Check {
            plugins,
            load,
            format,
        } => check(builder(plugins)?, load, format),
        Command::Run {
            plugins,
            watch,
            debounce_ms,
            listen,
        } => run_console(
            builder(plugins)?,
            watch.then(|| std::time::Duration::from_millis(debounce_ms)),
            listen.as_deref(),
        ),
        Command::Mcp {
            plugins,
            no_watch,
            debounce_ms,
        } => {
            // Before any plugin code runs: nothing but the protocol reaches standard output.
            let protocol = mcp::protocol_output()?;
            let host = builder(plugins)?.build()?;
            let report = host.load()?;
            eprint!("{}", report.to_table());
            let watch = (!no_watch).then(|| std::time::Duration::from_millis(debounce_ms));
            mcp::serve(host, protocol, watch)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::New { name, path, abi } => {
            let parent = path.unwrap_or_else(|| PathBuf::from("."));
            let Some(abi) = crate::abi_path(abi.as_deref()) else {
                eprintln!(
                    "airlock new: cannot find the airlock-abi crate (it is not published yet): \
                     pass --abi PATH to an Airlock checkout's plugin-abi, or set AIRLOCK_ABI_PATH"
                );
                return Ok(ExitCode::from(2));
            };
            let dir = crate::new_plugin(&name, &parent, &abi)?;
            println!("created {}", dir.display());
            println!("next: cd {} && cargo build && cargo test", dir.display());
            println!(
                "then: airlock run {}",
                dir.join("target").join("debug").display()
            );
            println!("to release it signed: airlock keygen NAME, then airlock sign LIBRARY --key NAME.key (see its README.md)");
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { file, format } => {
            let report = crate::validate(&file)?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Format::Table => print!("{}", report.to_text()),
            }
            Ok(if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Lock {
            dirs,
            policy,
            output,
        } => write_lock(
            &builder(Plugins {
                dirs,
                policy,
                lock: None,
            })?,
            &output,
        ),
    }
}

/// The policy file's policy, or the default one.
fn read_policy(path: Option<&Path>) -> Result<Policy> {
    Ok(match path {
        Some(path) => Policy::from_file(path)?,
        None => Policy::default(),
    })
}

fn inspect(file: &Path, policy: Option<&Path>, format: Format) -> Result<ExitCode> {
    let mut library = match read_library(file, file, DEFAULT_MAX_LIBRARY_SIZE) {
        Ok(library) => library,
        Err(refusal) => {
            if format == Format::Json {
                println!(
                    "{}",
                    serde_json::json!({"file": file, "status": "refused", "reason": refusal.reason, "detail": refusal.detail})
                );
            } else {
                println!("{refusal}");
            }
            return Ok(ExitCode::from(1));
        }
    };
    // Without a policy no key is trusted: a signature shows its key id, unverified.
    library.examine_signature(read_policy(policy)?.trust());
    let m = &library.manifest;
    if format == Format::Json {
        let out = serde_json::json!({
            "file": file,
            "status": "ok",
            "blake3": library.blake3,
            "size": library.len(),
            "abi_version": library.block.abi_version,
            "rustc": library.block.rustc,
            "target": library.block.target,
            "panic": library.block.panic,
            "signature": library.signature,
            "manifest": m,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("file:         {}", file.display());
        println!("plugin:       {} {}", m.id, m.version);
        println!("description:  {}", m.description);
        println!("blake3:       {}", library.blake3);
        println!("airlock-abi:  {}", library.block.abi_version);
        println!("rustc:        {}", library.block.rustc);
        println!("target:       {}", library.block.target);
        println!("panic:        {}", library.block.panic);
        println!("concurrency:  {:?}", m.concurrency);
        println!("signature:    {}", library.signature);
        for c in &m.capabilities {
            println!(
                "capability:   {}{}{}",
                c.capability,
                if c.required { " (required)" } else { "" },
                c.reason
                    .as_deref()
                    .map(|r| format!(" - {r}"))
                    .unwrap_or_default()
            );
        }
        for a in &m.actions {
            let hints: Vec<String> = a
                .title
                .iter()
                .map(|t| format!("title {t:?}"))
                .chain(a.read_only.then(|| "read-only".to_owned()))
                .chain(a.destructive.then(|| "destructive".to_owned()))
                .chain(a.idempotent.then(|| "idempotent".to_owned()))
                .collect();
            let hints = if hints.is_empty() {
                String::new()
            } else {
                format!(" [{}]", hints.join(", "))
            };
            println!("action:       {} - {}{hints}", a.name, a.description);
            for (what, schema) in [("input: ", &a.input_schema), ("output:", &a.output_schema)] {
                if let Some(schema) = schema {
                    println!("  {what}     {schema}");
                }
            }
        }
        if let Some(schema) = &m.config_schema {
            println!("config:       {schema}");
        }
        for h in &m.hooks {
            println!("hook:         {} - {}", h.name, h.description);
        }
        for c in &m.claims {
            println!("claim:        {} (handled by {})", c.kind, c.action);
        }
        for r in &m.routes {
            let handler = r.action.as_deref().map_or_else(
                || "not handled: 501".to_owned(),
                |a| format!("handled by {a}"),
            );
            println!(
                "route:        {} /plugins/{}{} ({handler}) - {}",
                r.method, m.id, r.path, r.description
            );
        }
        for j in &m.jobs {
            let when = match (&j.cron, j.every_ms) {
                (Some(cron), _) => format!("cron {cron} (UTC)"),
                (None, Some(ms)) => format!("every {ms} ms"),
                (None, None) => String::new(),
            };
            println!("job:          {} - {when}", j.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn builder(plugins: Plugins) -> Result<HostBuilder> {
    let Plugins { dirs, policy, lock } = plugins;
    // Directories on the command line first, then those in AIRLOCK_PLUGIN_PATH.
    let mut builder = Host::builder();
    for dir in dirs {
        builder = builder.plugin_dir(dir);
    }
    builder = builder.plugin_dirs_from_env();
    if let Some(path) = policy {
        builder = builder.policy(Policy::from_file(&path)?);
    }
    if let Some(lock) = lock {
        builder = builder.lock_file(lock);
    }
    Ok(builder)
}

fn write_lock(builder: &HostBuilder, output: &Path) -> Result<ExitCode> {
    let (lock, report) = pin(builder.options(), output)?;
    lock.write()?;
    print!("{}", report.to_table());
    println!(
        "wrote {} pin(s) to {}",
        lock.entries().len(),
        output.display()
    );
    Ok(if report.all_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn check(builder: HostBuilder, load: bool, format: Format) -> Result<ExitCode> {
    let report: LoadReport = if load {
        let host = builder.build()?;
        let mut report = host.load()?;
        for record in host.shutdown() {
            if let TeardownOutcome::Clean = record.outcome {
                continue;
            }
            if let Some(entry) = report
                .plugins
                .iter_mut()
                .find(|p| p.id.as_deref() == Some(&record.id) && p.status == Status::Ok)
            {
                entry.detail = format!("{}; teardown: {:?}", entry.detail, record.outcome);
            }
        }
        report
    } else {
        let options: PipelineOptions = builder.check_options()?;
        check_report(&options)?
    };
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report.to_json())?),
        Format::Table => print!("{}", report.to_table()),
    }
    Ok(if report.all_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn run_console(
    builder: HostBuilder,
    watch: Option<std::time::Duration>,
    listen: Option<&str>,
) -> Result<ExitCode> {
    // A call the policy says to ask about waits for the operator: `/approvals`, `/approve ID`.
    let token = std::env::var(listen::TOKEN_ENV).ok();
    let host = builder
        .approver(|_| airlock::approvals::Approval::Later)
        .http_auth(listen::token_auth(token))
        .build()?;
    let report = host.load()?;
    eprint!("{}", report.to_table());
    let _watcher = match watch {
        Some(debounce) => {
            let watcher = host.watch(debounce, |outcome| println!("{outcome}"))?;
            eprintln!(
                "watching the plugin directories (debounce {} ms)",
                debounce.as_millis()
            );
            Some(watcher)
        }
        None => None,
    };
    let listener = match listen {
        Some(addr) => {
            let listener =
                listen::Listener::bind(addr, std::env::var_os(listen::TOKEN_ENV).is_some())?;
            if let Some(at) = listener.addr() {
                eprintln!("serving the plugins' routes on http://{at}/plugins/<id>/...");
            }
            Some(listener)
        }
        None => None,
    };
    std::thread::scope(|scope| -> Result<()> {
        if let Some(listener) = &listener {
            let host = &host;
            scope.spawn(move || listener.serve(host, airlock::http::DEFAULT_MAX_REQUEST_BODY));
        }
        let ran = Console::new(&host).run(io::stdin().lock(), io::stdout());
        if let Some(listener) = &listener {
            listener.stop();
        }
        ran?;
        Ok(())
    })?;
    shut_down(&host);
    Ok(ExitCode::SUCCESS)
}

/// Tears every plugin down and says how each teardown went (on standard error).
fn shut_down(host: &Host) {
    for record in host.shutdown() {
        eprintln!(
            "{}: {:?} in {:.2} ms",
            record.id,
            record.outcome,
            record.elapsed.as_secs_f64() * 1e3
        );
    }
}
