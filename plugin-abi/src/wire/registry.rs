//! The payloads of the requests that reach the other plugins and the host program itself:
//! the list of plugins (`plugins list`), a dispatch to the holder of a claimed kind
//! (`plugins dispatch`), a hook run (`hooks run`) and a request to shut the host program down
//! (`host shutdown`). The answers are read leniently (no unknown field is refused), so a newer
//! host's additions decode in an older plugin.

use serde::{Deserialize, Serialize};

use super::Envelope;

/// One plugin the host runs, as `plugins list` answers it (capability `plugins.list`). Every
/// plugin of the host's table is listed, the asking one included, whatever its state: a plugin
/// the operator disabled or the host quarantined is listed with that state (and does not
/// answer calls until it runs again).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Its id.
    pub id: String,
    /// Its version (semver).
    pub version: String,
    /// What it says it does.
    #[serde(default)]
    pub description: String,
    /// The generation of its instance (1 at first load, one more per reload).
    pub generation: u64,
    /// `running`, `disabled`, `quarantined`, `stopped`, `abandoned` or `failed`.
    pub state: String,
    /// Its actions, with their schemas and hints.
    #[serde(default)]
    pub actions: Vec<PeerAction>,
    /// The kinds of request it holds (`plugins dispatch` reaches it for them).
    #[serde(default)]
    pub claims: Vec<PeerClaim>,
    /// The hooks it implements.
    #[serde(default)]
    pub hooks: Vec<PeerHook>,
}

/// An action of a listed plugin: what its manifest declares.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PeerAction {
    /// Its name.
    pub name: String,
    /// What it does.
    #[serde(default)]
    pub description: String,
    /// A short human title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The JSON Schema its input must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<serde_json::Value>,
    /// The JSON Schema of its answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<serde_json::Value>,
    /// A hint: it changes nothing.
    #[serde(default)]
    pub read_only: bool,
    /// A hint: it may destroy or overwrite something.
    #[serde(default)]
    pub destructive: bool,
    /// A hint: calling it twice with the same input does no more than once.
    #[serde(default)]
    pub idempotent: bool,
}

/// A kind of request a listed plugin holds, and the action that handles it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerClaim {
    /// The kind (`notify.email`).
    pub kind: String,
    /// The action.
    pub action: String,
}

/// A hook a listed plugin implements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerHook {
    /// The hook point's name.
    pub name: String,
    /// What the plugin does there.
    #[serde(default)]
    pub description: String,
}

/// `plugins dispatch`: a request of a claimed kind, for whichever plugin holds it (capability
/// `dispatch:<kind>`). Answer: [`Dispatched`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dispatch {
    /// The claimed kind.
    pub kind: String,
    /// The input for the holder's action.
    pub input: serde_json::Value,
}

/// How a dispatched request ended: who handled it, after how many attempts (the holder's
/// policy retries an answer it marks retryable), and the last attempt's envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dispatched<T = serde_json::Value> {
    /// The plugin holding the claim.
    pub holder: String,
    /// Its action that handles the kind.
    pub action: String,
    /// How many times it was called: 1, plus one per retry.
    pub attempts: u32,
    /// The last attempt's answer.
    pub reply: Envelope<T>,
}

/// `hooks run`: a hook point the host program defined, run with the mode it was defined with
/// (capability `hooks.run:<name>`). Answer: [`HookRunOutcome`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookRun {
    /// The hook's name.
    pub hook: String,
    /// The value (for a `filter` hook, the list of items).
    pub input: serde_json::Value,
}

/// What a hook run came to, by the mode the host program defined the hook with. The plugin that
/// asked is never run: if it implements the hook itself, its handler is skipped (it would be
/// calling itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
#[non_exhaustive]
pub enum HookRunOutcome {
    /// Each plugin transformed the previous one's output.
    Chain {
        /// The value after every plugin that ran.
        value: serde_json::Value,
        /// Plugins skipped because they failed.
        failures: Vec<HookRunFailure>,
    },
    /// A chain in which a plugin may swallow the input.
    Intercept {
        /// The value after every plugin that ran.
        value: serde_json::Value,
        /// Who swallowed the input, and their reply.
        swallowed: Option<HookSwallowed>,
        /// Plugins skipped because they failed.
        failures: Vec<HookRunFailure>,
    },
    /// Any plugin may block; a failing one blocks too.
    Guard {
        /// Who blocked, and why; `None` if every plugin allowed it.
        blocked: Option<HookBlocked>,
        /// Plugins that failed.
        failures: Vec<HookRunFailure>,
    },
    /// The items every plugin kept, in their original order.
    Filter {
        /// The items kept.
        items: Vec<serde_json::Value>,
        /// Plugins skipped because they failed.
        failures: Vec<HookRunFailure>,
    },
    /// Every plugin's result, in order.
    Collect {
        /// Each plugin's id and result.
        results: Vec<(String, serde_json::Value)>,
        /// Plugins skipped because they failed.
        failures: Vec<HookRunFailure>,
    },
}

/// A plugin that failed in a hook run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookRunFailure {
    /// The plugin.
    pub plugin: String,
    /// The failure code (`panicked`, `quarantined`, `reentrant`, `handler_error`…).
    pub code: String,
    /// What went wrong.
    pub reason: String,
}

/// Who swallowed an intercept hook's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookSwallowed {
    /// The plugin.
    pub plugin: String,
    /// Its reply.
    pub reply: String,
}

/// Who blocked a guard hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookBlocked {
    /// The plugin.
    pub plugin: String,
    /// Why.
    pub reason: String,
}

/// `host shutdown`: the plugin asks the host program to shut down (capability `host.control`,
/// which only the operator grants). The program decides; the answer (`null`) says the request
/// was handed to it, not that the host stops.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shutdown {
    /// Why, for the program and its operator (at most 1024 characters).
    pub reason: String,
}
