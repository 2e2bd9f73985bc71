//! What the host reports: plugin states and info, how an action answered ([`Reply`]), teardown
//! records, reload outcomes. Types only, public as `airlock::{Reply, PluginInfo}` and in
//! `airlock::plugins`.

use std::path::PathBuf;
use std::time::Duration;

use airlock_abi::abi::ContextToken;
use airlock_abi::manifest::{ActionDecl, Concurrency, HookDecl};
use airlock_abi::Health;

use serde::Serialize;

use crate::error::Refusal;

/// Where a plugin is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginState {
    /// Serving calls.
    Running,
    /// Disabled by the operator; its context is revoked. `enable` creates it again.
    Disabled,
    /// Torn down at shutdown; its context is revoked.
    Stopped,
    /// Teardown failed or overran its deadline; its context is revoked and it was abandoned.
    Abandoned,
    /// Creating it again (enable, config change) failed; see the log.
    Failed,
    /// Loaded but faulted too often: calls fail fast until an operator enables it again.
    Quarantined,
}

impl std::fmt::Display for PluginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            Self::Running => "running",
            Self::Disabled => "disabled",
            Self::Stopped => "stopped",
            Self::Abandoned => "abandoned",
            Self::Failed => "failed",
            Self::Quarantined => "quarantined",
        };
        f.write_str(text)
    }
}

/// What the host shows about a loaded plugin.
#[derive(Debug, Clone, Serialize)]
pub struct PluginInfo {
    /// The plugin's id.
    pub id: String,
    /// The plugin's version.
    pub version: String,
    /// From the manifest.
    pub description: String,
    /// The library file it was loaded from.
    pub file: PathBuf,
    /// BLAKE3 of the bytes loaded, lower-case hex (empty for a built-in plugin).
    pub blake3: String,
    /// The airlock-abi version it was built against.
    pub abi_version: String,
    /// The compiler that built it.
    pub rustc: String,
    /// Increases by one each time an instance is created.
    pub generation: u64,
    /// Running, disabled, stopped…
    pub state: PluginState,
    /// Serial or parallel.
    pub concurrency: Concurrency,
    /// Where its code runs: in the host's process, or in a worker process of its own.
    pub isolation: crate::policy::Isolation,
    /// Whether its library was mapped in place or from a sealed copy, and why not in place
    /// (`None` for a built-in plugin).
    pub placement: Option<crate::library::file::Placement>,
    /// The artifact its library was installed from and the digest of its manifest, when the
    /// lock in force pins these very bytes with them (`airlock install oci://…`, a followed
    /// source); `None` for a library installed from a file.
    pub origin: Option<Origin>,
    /// Declared actions.
    pub actions: Vec<ActionDecl>,
    /// Declared hooks.
    pub hooks: Vec<HookDecl>,
    /// What its library's signature said (`Verified` names the publisher).
    pub signature: crate::library::signature::SignatureStatus,
    /// Declared HTTP routes (their actions take a framed request, not JSON).
    pub routes: Vec<airlock_abi::manifest::RouteDecl>,
    /// Effective grants now (declared ∩ granted, less what was revoked at run time).
    pub grants: Vec<String>,
    /// The token of its current context (revoked once it is not running).
    #[serde(skip)]
    pub context: ContextToken,
    /// Whether that context is open: false once the plugin is torn down, disabled or
    /// abandoned, when every host call it makes answers `revoked`.
    pub context_open: bool,
    /// How long stages 2–5 took for it.
    pub load_time: Duration,
    /// Counters.
    pub stats: PluginStats,
    /// The last health the plugin reported (polled by the host).
    pub health: Option<Health>,
    /// The circuit breakers of its dispatched actions, when its policy sets a breaker.
    pub breakers: Vec<crate::runtime::breaker::BreakerInfo>,
    /// Its config as the operator wrote it: `{ env = .. }` and `{ secret = .. }` references
    /// stay references, so no resolved value is shown.
    pub config: serde_json::Value,
    /// The JSON Schema of its config, from its manifest.
    pub config_schema: Option<serde_json::Value>,
}

/// Per-plugin counters, of its current generation. `calls` counts the calls begun; one in 61
/// of them on each calling thread is timed (`timed_calls`,
/// `timed_nanos`), so their mean duration is `timed_nanos / timed_calls`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PluginStats {
    /// Actions called.
    pub calls: u64,
    /// Calls the plugin made into the host (current context).
    pub host_calls: u64,
    /// Capability violations (current context).
    pub denials: u64,
    /// Events delivered.
    pub events: u64,
    /// Timer runs.
    pub timer_runs: u64,
    /// Event subscriptions held.
    pub subscriptions: u64,
    /// Timer jobs scheduled.
    pub timers: u64,
    /// Faults: panics contained and calls that overran their timeout.
    pub faults: u64,
    /// Calls whose duration was measured (a sample of `calls`).
    pub timed_calls: u64,
    /// The sum of the measured calls' durations, in nanoseconds.
    pub timed_nanos: u64,
}

/// The id of a call waiting for approval.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct ApprovalId(pub u64);

impl std::fmt::Display for ApprovalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// How an action answered: the result envelope (`{"status": "ok", "data": ..}`). `T` is the
/// answer's form: a JSON value ([`crate::Call::json`]) or the bytes the plugin wrote
/// ([`crate::Call::bytes`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "data", rename_all = "lowercase")]
pub enum Reply<T = serde_json::Value> {
    /// `ok(data)`.
    Ok(T),
    /// `error(message)`: the action refused, for a reason of its own domain.
    Error(String),
    /// `pending_approval(id)`: the policy says `ask` and the approver will decide later; the
    /// call did not run. [`crate::Host::approve`] runs it, [`crate::Host::refuse_approval`] drops it.
    #[serde(rename = "pending_approval")]
    PendingApproval(ApprovalId),
    /// `pending({id, description})`: the action answers later. The plugin
    /// (`ctx.resolve`) or the host program ([`crate::Host::resolve`]) settles the entry `id`;
    /// [`crate::Host::pending`] polls it and [`crate::Host::wait_pending`] waits for it.
    Pending {
        /// The entry's id.
        id: crate::services::pending::PendingId,
        /// What the answer waits for.
        description: String,
    },
}

impl<T> Reply<T> {
    /// The answer, if the action answered (`None` for its error or a wait for approval).
    pub fn ok(self) -> Option<T> {
        match self {
            Self::Ok(answer) => Some(answer),
            Self::Error(_) | Self::PendingApproval(_) | Self::Pending { .. } => None,
        }
    }
}

/// How one plugin's teardown ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "detail", rename_all = "snake_case")]
pub enum TeardownOutcome {
    /// Returned within the deadline.
    Clean,
    /// Returned an error or panicked (contained).
    Failed(String),
    /// Overran its deadline: revoked and abandoned; its library stays mapped.
    Abandoned,
}

/// One plugin's teardown.
#[derive(Debug, Clone, Serialize)]
pub struct TeardownRecord {
    /// The plugin.
    pub id: String,
    /// How it ended.
    pub outcome: TeardownOutcome,
    /// How long it took (up to the deadline).
    pub elapsed: Duration,
    /// What went wrong in its `stopping` phase at shutdown (an error, a panic or an overrun of
    /// the shutdown deadline), if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopping: Option<String>,
    /// The plugins that depend on it (not optionally) and were disabled with it, dependents
    /// first ([`crate::Host::disable`]); empty otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dependents: Vec<TeardownRecord>,
}

/// How a config change was applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigApplied {
    /// True if the plugin took it live; false if it was re-created.
    pub live: bool,
    /// The plugin's warnings about the config.
    pub warnings: Vec<String>,
}

/// What a dry run of a config found ([`crate::Host::check_config`]): it would be accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CheckedConfig {
    /// The config as it would be kept: as given, with the schema's defaults filled in, and its
    /// references as written (never the values they resolve to).
    pub config: serde_json::Value,
    /// The JSON pointers of the defaults filled in (`/retries`, `/http/timeout_ms`).
    pub defaults: Vec<String>,
    /// The plugin's warnings about it.
    pub warnings: Vec<String>,
}

/// Where a library came from: an artifact's source and the digest of its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    /// The reference it was installed from (`oci://REGISTRY/REPOSITORY:TAG`, or the repository
    /// when a version range chose the tag).
    pub source: String,
    /// The version range that chose the tag, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
    /// The digest of the manifest the library came from (`sha256:…`).
    pub digest: String,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// A new generation is serving (or a new plugin was loaded).
    Loaded {
        /// The plugin.
        id: String,
        /// Its generation now.
        generation: u64,
        /// From reading the file to serving the new generation.
        elapsed: Duration,
    },
    /// The file has the bytes already loaded; nothing was done.
    Unchanged {
        /// The plugin.
        id: String,
    },
    /// The new build was refused before the swap; the old generation (if any) keeps serving.
    Refused {
        /// Why.
        refusal: Refusal,
        /// The generation still serving, if any.
        serving: Option<u64>,
    },
    /// The plugin's library was removed from its directory: the plugin was torn down (its
    /// library stays mapped, as always) and its id is free again.
    Removed {
        /// The plugin.
        id: String,
        /// How its teardown went (`None`: it was not running).
        teardown: Option<TeardownOutcome>,
        /// The running plugins that depend on it (not optionally), disabled before it,
        /// dependents first.
        dependents: Vec<String>,
    },
}

impl std::fmt::Display for ReloadOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Loaded {
                id,
                generation,
                elapsed,
            } => write!(
                f,
                "{id}: generation {generation} loaded in {:.1} ms",
                elapsed.as_secs_f64() * 1e3
            ),
            Self::Unchanged { id } => write!(f, "{id}: unchanged, not reloaded"),
            Self::Removed {
                id,
                teardown,
                dependents,
            } => {
                write!(f, "{id}: its library was removed")?;
                if let Some(outcome) = teardown {
                    write!(f, "; torn down ({outcome:?})")?;
                }
                if !dependents.is_empty() {
                    write!(
                        f,
                        "; disabled with it, as they need it: {}",
                        dependents.join(", ")
                    )?;
                }
                Ok(())
            }
            Self::Refused { refusal, serving } => {
                let id = refusal
                    .id
                    .as_ref()
                    .map_or_else(|| refusal.file.display().to_string(), ToString::to_string);
                write!(
                    f,
                    "{id}: reload refused: {} ({})",
                    refusal.reason, refusal.detail
                )?;
                match serving {
                    Some(g) => write!(f, " — still serving generation {g}"),
                    None => Ok(()),
                }
            }
        }
    }
}
