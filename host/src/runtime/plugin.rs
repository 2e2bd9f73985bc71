//! A loaded plugin: its file, policy, grants, running instance, counters and serial gate
//! (`gate.rs`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use airlock_abi::abi::ContextToken;
use airlock_abi::manifest::{Capability, PluginId};
use airlock_abi::Health;

use parking_lot::Mutex;

use crate::error::CallErrorCode;
use crate::isolation::{Creator, Instance};
use crate::library::file::LibraryFile;
use crate::loader::LoadedLibrary;
use crate::policy::PluginPolicy;
use crate::sync::hazard::Guarded;

use crate::runtime::outcome::PluginState;

/// A live instance and the context it was created with.
pub(crate) struct Running {
    pub(crate) instance: Instance,
    pub(crate) token: ContextToken,
}

pub(crate) struct Counters {
    /// Per action: the calls begun and answered, and a sample of their durations.
    pub(crate) calls: std::sync::Arc<crate::observe::meter::CallMeter>,
    pub(crate) events: AtomicU64,
    pub(crate) timer_runs: AtomicU64,
    pub(crate) faults: AtomicU64,
}

/// How an invocation ended when it did not return bytes.
pub(crate) enum Invoked {
    /// The plugin's own domain error.
    Domain(String),
    /// An infrastructure failure, with its code.
    Failed(CallErrorCode, String),
}

pub(crate) struct LoadedPlugin {
    pub(crate) file: LibraryFile,
    pub(crate) policy: PluginPolicy,
    /// The library the code came from; `None` for a built-in plugin.
    pub(crate) _library: Option<LoadedLibrary>,
    pub(crate) creator: Creator,
    /// What the operator set: grants, revocations, config, the current context.
    pub(crate) settings: Mutex<Settings>,
    pub(crate) running: Guarded<Running>,
    /// Where it is in its life, quarantine included: the one source of truth.
    pub(crate) state: Lifecycle,
    pub(crate) generation: AtomicU64,
    /// For a `serial` (or isolated) plugin: one call at a time, with waits that end.
    pub(crate) serial: Option<std::sync::Arc<super::gate::SerialGate>>,
    pub(crate) load_time: Duration,
    pub(crate) counters: Counters,
    /// When its recent faults happened, for the quarantine window.
    pub(crate) recent_faults: Mutex<VecDeque<Instant>>,
    pub(crate) health: Mutex<Option<Health>>,
    /// When its worker was restarted (isolated plugins), for the restart budget.
    pub(crate) restarts: super::isolated::Restarts,
    /// When a call last found its worker dead.
    pub(crate) died_at: Mutex<Option<Instant>>,
    /// The manifest's schemas, compiled; `None` when it declares none (boxed: the call path
    /// reads one word of it).
    pub(crate) schemas: Option<Box<crate::pipeline::schema::Schemas>>,
}

/// What an operator sets on a plugin, changed together under one lock.
pub(crate) struct Settings {
    /// Effective grants: declared ∩ granted, less what was revoked.
    pub(crate) grants: Vec<Capability>,
    /// Grants the operator revoked at run time; they stay revoked across reloads.
    pub(crate) revoked: Vec<Capability>,
    pub(crate) config: serde_json::Value,
    /// The context of the instance created last (revoked once it is not running).
    pub(crate) last_token: ContextToken,
    /// What the plugin said of its current config when it accepted it.
    pub(crate) warnings: Vec<String>,
}

/// A plugin's [`PluginState`] in one atomic: the call path reads it with one load, operators
/// change it under the admin lock, and the fault path quarantines only a running plugin.
pub(crate) struct Lifecycle(AtomicU8);

impl Lifecycle {
    /// In declaration order: `state as u8` is a state's place here.
    const ORDER: [PluginState; 6] = [
        PluginState::Running,
        PluginState::Disabled,
        PluginState::Stopped,
        PluginState::Abandoned,
        PluginState::Failed,
        PluginState::Quarantined,
    ];

    fn encode(state: PluginState) -> u8 {
        state as u8
    }

    pub(crate) fn new(state: PluginState) -> Self {
        Self(AtomicU8::new(Self::encode(state)))
    }

    pub(crate) fn get(&self) -> PluginState {
        Self::ORDER
            .get(usize::from(self.0.load(Ordering::Acquire)))
            .copied()
            .unwrap_or(PluginState::Failed)
    }

    /// Whether the state is `state`: one load and a compare, for the call path.
    #[inline(always)]
    pub(crate) fn is(&self, state: PluginState) -> bool {
        self.0.load(Ordering::Acquire) == Self::encode(state)
    }

    pub(crate) fn set(&self, state: PluginState) {
        self.0.store(Self::encode(state), Ordering::Release);
    }

    /// `from` → `to`, if it is `from`; true if it changed.
    pub(crate) fn change(&self, from: PluginState, to: PluginState) -> bool {
        self.0
            .compare_exchange(
                Self::encode(from),
                Self::encode(to),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }
}

impl LoadedPlugin {
    /// The name of the action at `index` in its manifest (`""` past the end).
    pub(crate) fn action_name(&self, index: usize) -> &str {
        self.file
            .manifest
            .actions
            .get(index)
            .map_or("", |a| a.name.as_str())
    }

    /// The grant lint's warning, if its effective grants amount to the host's authority
    /// ([`crate::policy::authority_warning`]).
    pub(crate) fn grant_warnings(&self, policy: &crate::Policy) -> Vec<String> {
        let grants = self.settings.lock().grants.clone();
        crate::policy::authority_warning(policy, self.id(), &grants)
            .map(|w| w.to_string())
            .into_iter()
            .collect()
    }

    pub(crate) fn id(&self) -> &PluginId {
        &self.file.manifest.id
    }
}
