//! The command line as clap parses it: one variant of [`Command`] per subcommand, with its
//! flags and their help.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "airlock",
    version,
    about = "Load native plugins after checking them, and give each a revocable context"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(crate) enum Format {
    Table,
    Json,
}

/// What one client can make `--listen` hold.
#[derive(Args)]
pub(crate) struct ListenLimits {
    /// With --listen: connections open at once (one more is closed as it is accepted).
    #[arg(long, default_value_t = 256)]
    pub(crate) max_connections: usize,
    /// With --listen: how long a connection may sit idle, and a request's head take.
    #[arg(long, default_value_t = 30_000)]
    pub(crate) idle_timeout_ms: u64,
    /// With --listen: how long a request's body may take.
    #[arg(long, default_value_t = 30_000)]
    pub(crate) body_timeout_ms: u64,
}

/// The plugins a command works on: directories, and the operator's policy and lock.
#[derive(Args)]
pub(crate) struct Plugins {
    /// Plugin directories.
    #[arg(required = true)]
    pub(crate) dirs: Vec<PathBuf>,
    /// The operator's policy file (TOML, or JSON if it ends in .json).
    #[arg(long)]
    pub(crate) policy: Option<PathBuf>,
    /// Load only the libraries pinned in this lock file.
    #[arg(long)]
    pub(crate) lock: Option<PathBuf>,
}

/// `airlock inspect FILE --policy F --action NAME ...`: which permission rule decides a call.
#[derive(clap::Args, Default)]
pub(crate) struct Explain {
    /// Explain which permission rule (the policy's, then the plugin's declared permissions)
    /// decides a call of this action, instead of describing the file.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["hook", "resource"])]
    pub(crate) action: Option<String>,
    /// The same for a call of this hook.
    #[arg(long, value_name = "NAME", conflicts_with = "resource")]
    pub(crate) hook: Option<String>,
    /// Who calls: `host` (the host program on its own account), `user:<id>` (on behalf of a
    /// principal) or `plugin:<id>`.
    #[arg(long, value_name = "CALLER", default_value = "host")]
    pub(crate) caller: String,
    /// A role of the principal (repeat for more).
    #[arg(long = "role", value_name = "ROLE")]
    pub(crate) roles: Vec<String>,
    /// An attribute of the principal, `NAME=VALUE` (repeat for more).
    #[arg(long = "attr", value_name = "NAME=VALUE")]
    pub(crate) attributes: Vec<String>,
    /// The call's input, as JSON text (passed as written: text that is not JSON is explained
    /// as such).
    #[arg(long, value_name = "JSON", default_value = "null")]
    pub(crate) input: String,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
        /// Print this resource's bytes (a path its plugin.json declares) instead.
        #[arg(long, value_name = "PATH")]
        resource: Option<String>,
        #[command(flatten)]
        explain: Explain,
    },
    /// Report what would load and why not (stages 1-3; with --load, all stages then teardown).
    Check {
        #[command(flatten)]
        plugins: Plugins,
        /// Also load and create each plugin, then tear it down.
        #[arg(long)]
        load: bool,
        /// Dry-run the configs in FILE (`[plugins.<id>.config]` tables, TOML or, named
        /// `*.json`, JSON) against the loaded plugins: references, schema defaults, the schema
        /// and each plugin's own validation. Loads the plugins; applies nothing.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
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
        /// Serve the web console at this address (`127.0.0.1:8090`): plugins, audit log,
        /// approvals, config forms. It always needs a token: AIRLOCK_CONSOLE_TOKEN, or one
        /// generated at start; the address to open, with it, is printed on standard error.
        #[arg(long, value_name = "ADDR")]
        console: Option<String>,
        #[command(flatten)]
        limits: ListenLimits,
        /// Print every call's span tree on standard error when its outermost call ends: the
        /// plugin, action, caller, outcome and duration of each call, the calls it made
        /// indented beneath it.
        #[arg(long)]
        trace: bool,
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
    /// signatures: files, or one artifact (oci://REGISTRY/REPOSITORY[:TAG|@sha256:…] or
    /// oci-layout:DIR[:TAG]), fetched by digest and pinned with its source.
    Install {
        /// The library files, or one artifact reference.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// With an artifact named without a tag: the highest tag that is a semver version
        /// within this range (e.g. '^1.2').
        #[arg(long, value_name = "RANGE")]
        version: Option<String>,
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
    /// Publish libraries to an OCI registry (or an image layout) as one artifact: FILE...
    /// oci://REGISTRY/REPOSITORY:TAG. Several files, built for several targets, make an index
    /// with one entry per target.
    Publish {
        /// The library files (each signed beforehand if it is to be: its .minisig travels with
        /// it), then the reference to publish to.
        #[arg(required = true, num_args = 2.., value_name = "FILE... REFERENCE")]
        args: Vec<String>,
        /// The operator's policy file (its [host] insecure_registries, its [trust]).
        #[arg(long)]
        policy: Option<PathBuf>,
    },
    /// Copy an artifact (every platform of it) from a registry into an OCI image layout, each
    /// byte verified, for `install oci-layout:DIR:TAG` on machines without network access.
    Pull {
        /// oci://REGISTRY/REPOSITORY[:TAG|@sha256:…]
        reference: String,
        /// The image layout's directory (created if missing).
        dir: PathBuf,
        /// The highest tag within this version range, instead of a tag.
        #[arg(long, value_name = "RANGE")]
        version: Option<String>,
        /// The tag it gets in the layout (default: its tag in the registry).
        #[arg(long)]
        tag: Option<String>,
        /// The operator's policy file (its [host] insecure_registries).
        #[arg(long)]
        policy: Option<PathBuf>,
    },
    /// The plugins installed from artifacts whose source (a tag or a version range) points to
    /// another digest now.
    Outdated {
        /// The operator's policy file (its [host] lock, its [host] insecure_registries).
        #[arg(long)]
        policy: Option<PathBuf>,
        /// The lock file (default: the policy's [host] lock).
        #[arg(long)]
        lock: Option<PathBuf>,
    },
    /// Install again, from their sources, the plugins `outdated` names (or these ones).
    Update {
        /// Only these plugins.
        ids: Vec<String>,
        /// The plugin directory.
        #[arg(long, default_value = "plugins")]
        dir: PathBuf,
        /// The operator's policy file.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// The lock file (default: the policy's [host] lock).
        #[arg(long)]
        lock: Option<PathBuf>,
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
        /// Libraries of the plugins it depends on, loaded beside it (each granted what it
        /// declares, as the plugin under test is).
        #[arg(long = "with", value_name = "FILE")]
        with: Vec<PathBuf>,
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
