//! `export_plugin!` and the generic glue it expands to, which built-in plugins ([`Builtin`],
//! compiled into the host program) share. This module and the macro's expansion are the only
//! places on the plugin side with `unsafe` code: turning the opaque instance handle back into
//! the plugin's instance (`entry.rs`), declaring the exported symbols (`export_plugin.rs`), and
//! turning the host's answer to `context functions` into its table once checked (`host_fns.rs`).
//!
//! Here: an instance's life (created for a manifest, its handlers matched to the declarations,
//! torn down) and the guard that keeps every panic on this side of the boundary. Serving an
//! invocation is `invoke.rs`; the idle vtable, a context without a host, is `idle.rs`.

mod builtin;
mod entry;
mod export_plugin;
mod host_fns;
mod idle;
mod invoke;

pub use self::builtin::{builtin_module, Builtin};
pub use self::entry::{call_table_answer, destroy_entry, into_handle, invoke_entry, query_entry};
pub(crate) use self::host_fns::host_fns;
pub use self::idle::idle_vtable;
pub use self::invoke::{invoke, query};

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::std_types::RResult;

use crate::block::ManifestBlock;
use crate::context::Context;
use crate::ffi::{ErrorCode, HostContext, PluginError};
use crate::manifest::Manifest;
use crate::plugin::Plugin;
use crate::registry::{Actions, Handler, Hooks};

/// A plugin instance as the plugin side keeps it: the author's value and its action handlers,
/// indexed like the manifest's `actions` list.
#[doc(hidden)]
pub struct Instance<P> {
    plugin: P,
    handlers: Vec<Handler<P>>,
    hooks: Vec<Handler<P>>,
}

/// Runs `f`, turning a panic into a [`PluginError`] with code `PANICKED`.
///
/// Nothing unwinds out of this function: a panic payload whose own `drop` panics is leaked.
#[doc(hidden)]
pub fn guard<T>(f: impl FnOnce() -> Result<T, PluginError>) -> RResult<T, PluginError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result.into(),
        Err(payload) => RResult::RErr(PluginError::new(
            ErrorCode::PANICKED,
            panic_message(payload),
        )),
    }
}

pub(crate) fn panic_message(payload: Box<dyn Any + Send>) -> String {
    let message = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panicked with a non-string payload".to_owned()
    };
    // A payload's destructor may itself panic; never let that unwind.
    if catch_unwind(AssertUnwindSafe(move || drop(payload))).is_err() {
        return format!("{message} (and its payload panicked on drop)");
    }
    message
}

/// Creates an instance of `P` for the manifest in `block`: checks the registered actions
/// against the manifest, then runs the author's `create`.
#[doc(hidden)]
pub fn create<P: Plugin>(
    block: &'static [u8],
    context: HostContext,
) -> Result<Box<Instance<P>>, PluginError> {
    let block = ManifestBlock::parse(block)
        .map_err(|e| PluginError::new(ErrorCode::INIT, format!("manifest block: {e}")))?;
    create_for::<P>(&block.manifest_json, context)
}

/// [`create`] for a manifest given as JSON.
fn create_for<P: Plugin>(
    manifest_json: &str,
    context: HostContext,
) -> Result<Box<Instance<P>>, PluginError> {
    let init = |m: String| PluginError::new(ErrorCode::INIT, m);
    let manifest = Manifest::from_json(manifest_json).map_err(|e| init(e.to_string()))?;
    let mut actions = Actions::new();
    P::actions(&mut actions);
    let declared = manifest.actions.iter().map(|a| a.name.as_str());
    let handlers =
        match_declared("action", "Plugin::actions", declared, actions.handlers).map_err(init)?;
    let mut hooks = Hooks::new();
    P::hooks(&mut hooks);
    let declared = manifest.hooks.iter().map(|h| h.name.as_str());
    let hooks = match_declared("hook", "Plugin::hooks", declared, hooks.handlers).map_err(init)?;
    let plugin = P::create(Context::from_raw(context)).map_err(|e| init(e.message().to_owned()))?;
    Ok(Box::new(Instance {
        plugin,
        handlers,
        hooks,
    }))
}

/// Orders registered handlers like the manifest's declarations; every declaration needs one
/// handler and every handler a declaration.
fn match_declared<'a, P>(
    what: &str,
    registry: &str,
    declared: impl Iterator<Item = &'a str>,
    mut registered: Vec<(String, Handler<P>)>,
) -> Result<Vec<Handler<P>>, String> {
    let mut ordered = Vec::new();
    for name in declared {
        let pos = registered.iter().position(|(n, _)| n == name).ok_or_else(|| {
            format!("{what} {name:?} is declared in plugin.json but no handler is registered in {registry}")
        })?;
        ordered.push(registered.swap_remove(pos).1);
    }
    if let Some((name, _)) = registered.first() {
        return Err(format!(
            "{what} {name:?} is registered in {registry} but not declared in plugin.json (or registered twice)"
        ));
    }
    Ok(ordered)
}

/// Tears an instance down and frees it.
#[doc(hidden)]
pub fn destroy<P: Plugin>(instance: Instance<P>) -> Result<(), PluginError> {
    let Instance {
        plugin,
        handlers,
        hooks,
    } = instance;
    drop((handlers, hooks));
    plugin.teardown();
    Ok(())
}
