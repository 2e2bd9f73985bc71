//! Built-in plugins: a [`Plugin`] compiled into the host program, whose module is made from
//! code with the same entry points a library exports.

use abi_stable::std_types::{RResult, RSlice};

use super::entry::{destroy_entry, into_handle, invoke_entry, query_entry};
use super::{create_for, guard};
use crate::ffi::{HostContext, InstanceHandle, PluginError, PluginModule, PluginModuleRef};
use crate::plugin::Plugin;

/// A plugin compiled into the host program instead of shipped as a library: its manifest comes
/// from code, and the host registers it with `HostBuilder::builtin::<P>()`. It goes through
/// the same manifest checks, policy, grants, membrane, audit, hooks, faults and shutdown as a
/// loaded library; only reading a file and hashing it do not apply.
///
/// ```
/// use airlock_abi::{ActionError, Actions, Builtin, Context, InitError, Plugin};
///
/// struct Clock;
///
/// impl Plugin for Clock {
///     fn create(_: Context) -> Result<Self, InitError> {
///         Ok(Self)
///     }
///
///     fn actions(actions: &mut Actions<Self>) {
///         actions.add("now", |_: &Self, (): ()| Ok::<_, ActionError>(42));
///     }
/// }
///
/// impl Builtin for Clock {
///     const MANIFEST: &'static str =
///         r#"{"id": "clock", "version": "1.0.0", "actions": [{"name": "now"}]}"#;
/// }
/// ```
pub trait Builtin: Plugin {
    /// The plugin's `plugin.json`, as JSON text.
    const MANIFEST: &'static str;
    /// The resources its manifest declares, as a resource block (what
    /// `airlock_build::embed_resources` writes into `OUT_DIR` for a crate with a
    /// `plugin.json`: `include_bytes!(concat!(env!("OUT_DIR"), "/airlock-resources.bin"))`);
    /// empty, the default, for none. The host checks it against the manifest when the plugin is
    /// registered, as it checks a library's. `export_plugin!(Plugin, resources)` sets it.
    const RESOURCE_BLOCK: &'static [u8] = &[];
}

/// The module's `create` for a built-in plugin type `P`.
extern "C" fn builtin_create<P: Builtin>(
    context: HostContext,
) -> RResult<InstanceHandle, PluginError> {
    guard(|| create_for::<P>(P::MANIFEST, context).map(into_handle))
}

/// A built-in plugin has no manifest block: its manifest is [`Builtin::MANIFEST`].
extern "C" fn no_block() -> RSlice<'static, u8> {
    RSlice::from_slice(&[])
}

/// The module of built-in plugin type `P`: the same entry points a library exports, made from
/// code. Leaks one small allocation per call (modules live as long as the process, like a
/// loaded library's).
#[doc(hidden)]
pub fn builtin_module<P: Builtin>() -> PluginModuleRef {
    use abi_stable::prefix_type::PrefixTypeTrait as _;
    PluginModule {
        manifest_block: no_block,
        create: builtin_create::<P>,
        invoke: invoke_entry::<P>,
        destroy: destroy_entry::<P>,
        query: query_entry::<P>,
    }
    .leak_into_prefix()
}
