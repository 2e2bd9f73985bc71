//! The [`Plugin`] trait an author implements, and the values its methods take and answer: a
//! timer job's run ([`JobRun`]), the state handed across a reload ([`Snapshot`]), what became of
//! a live config change ([`ConfigChange`]) and the plugin's [`Health`].

use serde::{Deserialize, Serialize};

use crate::context::Context;
use crate::error::InitError;
use crate::registry::{Actions, Hooks};
use crate::wire::{ConfigReport, RunInfo};

/// A plugin: created by the host with a [`Context`], serving actions until torn down.
///
/// The type must be `Send + Sync`: if its manifest says `"concurrency": "parallel"` the host
/// may call it from several threads at once; with `"serial"` (the default) the host never does.
pub trait Plugin: Sized + Send + Sync + 'static {
    /// Creates the plugin. Read the config with [`Context::config`]; keep the context to log
    /// and to reach host services later.
    ///
    /// # Errors
    ///
    /// An [`InitError`] refuses the plugin (`init_failed`); the host keeps running.
    fn create(ctx: Context) -> Result<Self, InitError>;

    /// Registers a handler for every action declared in `plugin.json`.
    ///
    /// An action declared but not registered, or registered but not declared, refuses the plugin
    /// at creation, naming the action.
    fn actions(actions: &mut Actions<Self>) {
        let _ = actions;
    }

    /// Registers a handler for every hook declared in `plugin.json`; as with actions, a hook
    /// declared but not registered (or the reverse) refuses the plugin at creation.
    fn hooks(hooks: &mut Hooks<Self>) {
        let _ = hooks;
    }

    /// How the plugin is doing.
    fn health(&self) -> Health {
        Health::Ok
    }

    /// Checks a config before the plugin is created with it (or before a live change). Errors
    /// refuse the config; warnings are shown. Runs without an instance.
    fn validate_config(config: &serde_json::Value) -> ConfigReport {
        let _ = config;
        ConfigReport::default()
    }

    /// Applies a new config live. Return [`ConfigChange::Restart`] (the default) to have the
    /// host tear this instance down and create a new one with the new config.
    fn config_changed(&self, config: &serde_json::Value) -> ConfigChange {
        let _ = config;
        ConfigChange::Restart
    }

    /// An event on a topic the plugin subscribed to with `ctx.events().subscribe(..)`.
    fn on_event(&self, topic: &str, payload: &serde_json::Value) {
        let _ = (topic, payload);
    }

    /// A run of the job `name` started with `ctx.timers().every(..)` or `.cron(..)`.
    fn on_timer(&self, name: &str) {
        let _ = name;
    }

    /// A run of a timer job, with its run id and the time it was due; by default it calls
    /// [`Plugin::on_timer`] with the job's name.
    fn on_job(&self, run: &JobRun) {
        self.on_timer(&run.name);
    }

    /// State to hand to the next generation when the plugin is reloaded: versioned bytes the
    /// new build receives through [`Context::handover`] in its `create`. The version is the
    /// new build's to judge; a version it does not understand is its decision, never a crash.
    fn snapshot(&self) -> Option<Snapshot> {
        None
    }

    /// Called once every plugin of the load is created, in dependency order (the plugins this
    /// one depends on first): the place to call peers, which `create` may not see yet. Also
    /// called on the new instance after a reload, a re-enable or a config restart. It is a call
    /// like an action's: a panic is contained and counted as a fault, and past the call timeout
    /// it is told it is cancelled (`ctx.cancelled()`); the host waits for it at most the init
    /// deadline, then goes on.
    fn started(&self) {}

    /// Called at shutdown on every running plugin before any is torn down (dependents first):
    /// peers still answer here, and no longer in [`Plugin::teardown`]. It is a call, like
    /// `started`; the host waits for it at most the shutdown deadline, then goes on.
    fn stopping(&self) {}

    /// Releases what the plugin holds. Runs once, before the context is revoked, within the
    /// shutdown deadline the operator set. Stop every thread the plugin started here.
    fn teardown(self) {}
}

/// The lifecycle phases among plugins: new invocation kinds, each calling one [`Plugin`] method.
impl crate::ffi::InvocationKind {
    /// Every plugin of the load has been created (or, after a reload, re-enable or config
    /// restart, this new instance is the one serving): [`Plugin::started`]. The answer is empty;
    /// a plugin built before this kind answers [`crate::abi::ErrorCode::UNSUPPORTED`], which the
    /// host takes as nothing to do.
    pub const STARTED: Self = Self(10);
    /// The host is shutting down and every plugin is still running: [`Plugin::stopping`], the
    /// last moment to talk to peers; teardown follows. Answered like `STARTED`.
    pub const STOPPING: Self = Self(11);
}

/// One run of a timer job, as [`Plugin::on_job`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRun {
    /// The job's name.
    pub name: String,
    /// The run's id: every run the host starts has its own.
    pub run: u64,
    /// When the run was due (UTC): the cron match, the interval's end, or the manual trigger.
    pub scheduled: std::time::SystemTime,
    /// Whether the host program or the operator started it by hand.
    pub manual: bool,
}

impl JobRun {
    /// The run described by a `TIMER` invocation (no description: run 0, due now).
    pub fn from_invocation(name: &str, payload: &[u8]) -> Self {
        let info: Option<RunInfo> = serde_json::from_slice(payload).ok();
        let scheduled = info.map_or_else(std::time::SystemTime::now, |i| {
            let ms = u64::try_from(i.scheduled_ms).unwrap_or(0);
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)
        });
        Self {
            name: name.to_owned(),
            run: info.map_or(0, |i| i.run),
            scheduled,
            manual: info.is_some_and(|i| i.manual),
        }
    }
}

/// State handed from one generation of a plugin to the next across a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The format version, chosen by the plugin.
    pub version: u32,
    /// The state.
    pub bytes: Vec<u8>,
}

impl Snapshot {
    /// Encodes as the wire form: little-endian version, then the bytes.
    #[doc(hidden)]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.bytes.len());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.bytes);
        out
    }

    /// Decodes the wire form; `None` for an empty (or too short) buffer.
    #[doc(hidden)]
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let version = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?);
        Some(Self {
            version,
            bytes: bytes[4..].to_vec(),
        })
    }
}

/// What a plugin did with a live config change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigChange {
    /// Applied; the plugin keeps running.
    Applied,
    /// Not applied; the host re-creates the plugin with the new config.
    Restart,
}

/// A plugin's health, as reported by [`Plugin::health`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", content = "detail", rename_all = "lowercase")]
pub enum Health {
    /// Working normally.
    Ok,
    /// Working, with a problem worth showing.
    Degraded(String),
    /// Not working.
    Error(String),
}
