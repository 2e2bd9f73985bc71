//! What the membrane asks of the host as a whole when a plugin reaches past one other plugin:
//! the list of plugins, a dispatch to the holder of a claimed kind, a hook point's run, a
//! request that the program shut down. The embedding API implements it (hooks and the shutdown
//! request are the program's) and hands it to the runtime when the host is built; nothing below
//! the API names what implements it.

use airlock_abi::manifest::PluginId;
use airlock_abi::wire::{Dispatched, HookRunOutcome, PeerInfo};

use crate::error::CallError;

/// Who asked: the requesting plugin's id and the generation of its instance.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Asker<'a> {
    /// Its id.
    pub(crate) id: &'a PluginId,
    /// Its generation.
    pub(crate) generation: u64,
}

/// Why a hook run could not be made at all.
#[derive(Debug, Clone)]
pub(crate) enum HookRunError {
    /// The program did not define the hook.
    Undefined(String),
    /// The input does not fit the hook's mode (a `filter` hook's input is a list).
    BadInput(String),
}

/// The host as a whole, as plugins reach it (`plugins list`, `plugins dispatch`, `hooks run`,
/// `host shutdown`). Each method runs inside the frame the membrane pushed for the request: the
/// plugin is the caller of whatever it calls, and the call counts against the depth bound.
pub(crate) trait Peers: Send + Sync {
    /// Every plugin of the host's table, whatever its state.
    fn list(&self) -> Vec<PeerInfo>;
    /// The id of the plugin that holds `kind`, if one does.
    fn holder(&self, kind: &str) -> Option<String>;
    /// The holder of `kind` called with `input` (JSON bytes), with its policy's retries.
    fn dispatch(&self, asker: Asker<'_>, kind: &str, input: &[u8])
        -> Result<Dispatched, CallError>;
    /// The hook point `hook` run with `input` in the mode the program defined it with, the
    /// asker's own handler skipped.
    fn run_hook(
        &self,
        asker: Asker<'_>,
        hook: &str,
        input: serde_json::Value,
    ) -> Result<HookRunOutcome, HookRunError>;
    /// Hands the program a plugin's request that it shut down.
    fn request_shutdown(&self, asker: Asker<'_>, reason: &str);
}
