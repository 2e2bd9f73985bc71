//! `export_plugin!` and the generic glue it expands to, which built-in plugins ([`Builtin`],
//! compiled into the host program) share. This file and the macro's expansion are the only
//! places on the plugin side with `unsafe` code: turning the opaque instance handle back into
//! the plugin's instance, and declaring the exported symbols.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::prefix_type::WithMetadata;
use abi_stable::std_types::{RResult, RSlice, RStr, RVec};
use abi_stable::type_layout::TypeLayout;
use abi_stable::StableAbi;

use crate::block::ManifestBlock;
use crate::context::Context;
use crate::ffi::{
    CallTable, ContextToken, ErrorCode, HostContext, HostError, HostVtable, HostVtableRef,
    InstanceHandle, Invocation, InvocationKind, LogLevel, PluginError, PluginModule,
    PluginModuleRef,
};
use crate::manifest::Manifest;
use crate::plugin::{ConfigChange, Plugin};
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

/// Turns a created instance into the opaque handle the host keeps.
#[doc(hidden)]
pub fn into_handle<P>(instance: Box<Instance<P>>) -> InstanceHandle {
    InstanceHandle(Box::into_raw(instance).cast())
}

/// Runs the action or hook at `index`, appending its answer to `out`.
fn call<P: Plugin>(
    instance: &Instance<P>,
    kind: InvocationKind,
    index: u32,
    payload: &[u8],
    out: &mut RVec<u8>,
) -> Result<(), PluginError> {
    let (handlers, what) = match kind {
        InvocationKind::ACTION => (&instance.handlers, "action"),
        InvocationKind::HOOK => (&instance.hooks, "hook"),
        other => {
            return Err(PluginError::new(
                ErrorCode::UNSUPPORTED,
                format!(
                    "invocation kind {} is not served by the call table",
                    other.0
                ),
            ))
        }
    };
    let handler = handlers.get(index as usize).ok_or_else(|| {
        PluginError::new(ErrorCode::NOT_FOUND, format!("no {what} at index {index}"))
    })?;
    handler(&instance.plugin, payload, out)
}

/// Serves one invocation.
#[doc(hidden)]
pub fn invoke<P: Plugin>(
    instance: &Instance<P>,
    invocation: Invocation<'_>,
) -> Result<RVec<u8>, PluginError> {
    match invocation.kind {
        kind @ (InvocationKind::ACTION | InvocationKind::HOOK) => {
            let mut out = RVec::new();
            call(
                instance,
                kind,
                invocation.index,
                invocation.payload.as_slice(),
                &mut out,
            )?;
            Ok(out)
        }
        InvocationKind::HEALTH => to_json(&instance.plugin.health()),
        InvocationKind::SNAPSHOT => Ok(instance
            .plugin
            .snapshot()
            .map(|s| RVec::from(s.encode()))
            .unwrap_or_default()),
        InvocationKind::EVENT => {
            let payload = parse_json(invocation.payload.as_slice())?;
            instance.plugin.on_event(invocation.name.as_str(), &payload);
            Ok(RVec::new())
        }
        InvocationKind::TIMER => {
            let run = crate::plugin::JobRun::from_invocation(
                invocation.name.as_str(),
                invocation.payload.as_slice(),
            );
            instance.plugin.on_job(&run);
            Ok(RVec::new())
        }
        InvocationKind::CONFIG_CHANGED => {
            let config = parse_json(invocation.payload.as_slice())?;
            let applied = instance.plugin.config_changed(&config) == ConfigChange::Applied;
            to_json(&applied)
        }
        other => Err(PluginError::new(
            ErrorCode::UNSUPPORTED,
            format!(
                "invocation kind {} is not supported by this plugin",
                other.0
            ),
        )),
    }
}

/// Serves a module-level invocation (no instance).
#[doc(hidden)]
pub fn query<P: Plugin>(invocation: Invocation<'_>) -> Result<RVec<u8>, PluginError> {
    match invocation.kind {
        InvocationKind::VALIDATE_CONFIG => {
            let config = parse_json(invocation.payload.as_slice())?;
            to_json(&P::validate_config(&config))
        }
        InvocationKind::CALL_TABLE => {
            let table: &'static CallTable = Entries::<P>::CALL_TABLE;
            let layout: &'static TypeLayout = <CallTable as StableAbi>::LAYOUT;
            Ok(call_table_answer(
                std::ptr::from_ref(table) as usize,
                std::ptr::from_ref(layout) as usize,
            ))
        }
        other => Err(PluginError::new(
            ErrorCode::UNSUPPORTED,
            format!(
                "module-level invocation kind {} is not supported by this plugin",
                other.0
            ),
        )),
    }
}

fn parse_json(bytes: &[u8]) -> Result<serde_json::Value, PluginError> {
    serde_json::from_slice(bytes).map_err(|e| PluginError::new(ErrorCode::BAD_INPUT, e.to_string()))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<RVec<u8>, PluginError> {
    serde_json::to_vec(value)
        .map(RVec::from)
        .map_err(|e| PluginError::new(ErrorCode::HANDLER, e.to_string()))
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

/// The module's `invoke` for plugin type `P`.
#[doc(hidden)]
pub extern "C" fn invoke_entry<P: Plugin>(
    handle: InstanceHandle,
    invocation: Invocation<'_>,
) -> RResult<RVec<u8>, PluginError> {
    guard(|| {
        // SAFETY: the host only passes back handles returned by this module's `create` (a
        // `Box<Instance<P>>` turned into a raw pointer by `into_handle`), and only until it has
        // called `destroy` on them: it destroys an instance only once every call on it has
        // returned.
        let instance = unsafe { &*handle.0.cast::<Instance<P>>() };
        invoke(instance, invocation)
    })
}

/// The answer to [`InvocationKind::CALL_TABLE`]: the table's address, then its type layout's,
/// each a little-endian `u64`.
#[doc(hidden)]
pub fn call_table_answer(table: usize, layout: usize) -> RVec<u8> {
    let mut answer = RVec::with_capacity(16);
    answer.extend_from_copy_slice(&(table as u64).to_le_bytes());
    answer.extend_from_copy_slice(&(layout as u64).to_le_bytes());
    answer
}

extern "C" fn idle_log(_: ContextToken, _: LogLevel, _: RStr<'_>) -> RResult<(), HostError> {
    RResult::ROk(())
}

extern "C" fn idle_config(_: ContextToken) -> RResult<RVec<u8>, HostError> {
    RResult::ROk(RVec::new())
}

extern "C" fn idle_request(
    _: ContextToken,
    _: RStr<'_>,
    _: RStr<'_>,
    _: RSlice<'_, u8>,
) -> RResult<RVec<u8>, HostError> {
    RResult::ROk(RVec::new())
}

/// A host vtable whose functions do nothing and answer success at once: what a context costs
/// on the plugin's side alone (the benchmarks' floor of a callback), and a context for tests of
/// a module without a host. Not public API.
#[doc(hidden)]
pub fn idle_vtable() -> HostVtableRef {
    const IDLE: &WithMetadata<HostVtable> = &WithMetadata::new(HostVtable {
        log: idle_log,
        config: idle_config,
        request: idle_request,
    });
    HostVtableRef(IDLE.static_as_prefix())
}

/// The call table of plugin type `P`, as a constant so that it is one `'static` value per type.
struct Entries<P>(std::marker::PhantomData<P>);

impl<P: Plugin> Entries<P> {
    const CALL_TABLE: &'static CallTable = &CallTable {
        call: call_entry::<P>,
    };
}

/// [`CallTable::call`] for plugin type `P`: the hot path. Nothing is returned in memory; a
/// failure's message goes into `out`, which the host owns.
extern "C" fn call_entry<P: Plugin>(
    handle: InstanceHandle,
    kind: InvocationKind,
    index: u32,
    payload: RSlice<'_, u8>,
    out: &mut RVec<u8>,
) -> ErrorCode {
    // Only a code comes out of `catch_unwind` (a register): a failure's message is put in
    // `out` inside it, so success moves no `Result` through memory.
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: as in `invoke_entry`: a handle from this module's `create`, not yet destroyed.
        let instance = unsafe { &*handle.0.cast::<Instance<P>>() };
        match call(instance, kind, index, payload.as_slice(), out) {
            Ok(()) => ErrorCode::OK,
            Err(e) => failed(out, e.code, e.message.as_str()),
        }
    }));
    match result {
        Ok(code) => code,
        Err(payload) => failed(out, ErrorCode::PANICKED, &panic_message(payload)),
    }
}

/// Leaves `message` in `out` and answers `code`.
#[cold]
fn failed(out: &mut RVec<u8>, code: ErrorCode, message: &str) -> ErrorCode {
    out.clear();
    out.extend_from_copy_slice(message.as_bytes());
    code
}

/// The module's `destroy` for plugin type `P`.
#[doc(hidden)]
pub extern "C" fn destroy_entry<P: Plugin>(handle: InstanceHandle) -> RResult<(), PluginError> {
    guard(|| {
        // SAFETY: as in `invoke_entry`; the host calls `destroy` exactly once per handle, after
        // every `invoke` on it has returned, so this is the only owner.
        let instance = unsafe { *Box::from_raw(handle.0.cast::<Instance<P>>()) };
        destroy(instance)
    })
}

/// The module's `query` for plugin type `P`.
#[doc(hidden)]
pub extern "C" fn query_entry<P: Plugin>(
    invocation: Invocation<'_>,
) -> RResult<RVec<u8>, PluginError> {
    guard(|| query::<P>(invocation))
}

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

/// Exports a type implementing [`Plugin`](crate::Plugin) as an Airlock plugin.
///
/// Use it once, in a `cdylib` crate that has a `plugin.json` next to its `Cargo.toml`:
///
/// ```text
/// airlock_abi::export_plugin!(MyPlugin);
/// ```
///
/// It embeds the manifest block (the `plugin.json` bytes plus the airlock-abi version, rustc
/// version, target and panic strategy) in a section the host reads without running the library,
/// and generates every exported function. Each one catches panics: a panic comes back to the
/// host as an error value, never as an unwind across `extern "C"`.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty $(,)?) => {
        $crate::export_plugin!(
            @build $plugin,
            abi_version: $crate::ABI_VERSION,
            target: $crate::abi::BUILD_TARGET,
            rustc: $crate::abi::BUILD_RUSTC
        );
    };
    // Not public API: lets test fixtures declare provenance they were not built with.
    (@build $plugin:ty, abi_version: $abi:expr, target: $target:expr, rustc: $rustc:expr) => {
        $crate::export_plugin!(@build $plugin, abi_version: $abi, target: $target, rustc: $rustc, shape: current);
    };
    // Not public API: `shape` picks the root module's layout — `current`, or for fixtures (with
    // airlock-abi's `fixture-shapes` feature) `v0`
    // (one field fewer than the host's) or `broken` (a first field of another type).
    (@build $plugin:ty, abi_version: $abi:expr, target: $target:expr, rustc: $rustc:expr, shape: $shape:ident) => {
        const _: () = {
            use $crate::__private as __airlock;
            use __airlock::abi_stable::std_types::{RResult, RSlice, RVec};
            use __airlock::abi_stable::prefix_type::PrefixTypeTrait as _;

            const JSON: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/plugin.json"));
            const PANIC: &[u8] = if cfg!(panic = "unwind") { b"unwind" } else { b"abort" };
            const FIELDS: [&[u8]; 5] = [
                ($abi).as_bytes(),
                ($rustc).as_bytes(),
                ($target).as_bytes(),
                PANIC,
                JSON,
            ];
            const LEN: usize = __airlock::block_len(FIELDS);

            #[used]
            #[cfg_attr(target_vendor = "apple", unsafe(link_section = "__DATA,__airlock"))]
            #[cfg_attr(not(target_vendor = "apple"), unsafe(link_section = ".airlock"))]
            static BLOCK: [u8; LEN] = __airlock::build_block::<LEN>(FIELDS);

            extern "C" fn manifest_block() -> RSlice<'static, u8> {
                RSlice::from_slice(&BLOCK)
            }

            extern "C" fn create(
                context: __airlock::HostContext,
            ) -> RResult<__airlock::InstanceHandle, __airlock::PluginError> {
                __airlock::guard(|| {
                    __airlock::create::<$plugin>(&BLOCK, context).map(__airlock::into_handle)
                })
            }

            // `create` is the handle's only source; the others are shared with built-ins.
            const invoke: extern "C" fn(
                __airlock::InstanceHandle,
                __airlock::Invocation<'_>,
            ) -> RResult<RVec<u8>, __airlock::PluginError> = __airlock::invoke_entry::<$plugin>;
            const destroy: extern "C" fn(
                __airlock::InstanceHandle,
            ) -> RResult<(), __airlock::PluginError> = __airlock::destroy_entry::<$plugin>;
            const query: extern "C" fn(
                __airlock::Invocation<'_>,
            ) -> RResult<RVec<u8>, __airlock::PluginError> = __airlock::query_entry::<$plugin>;

            // The same type can be registered as a built-in plugin (the authors' test harness
            // does), with the manifest the library embeds.
            impl $crate::Builtin for $plugin {
                const MANIFEST: &'static str =
                    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/plugin.json"));
            }

            $crate::export_plugin!(@root $shape);
        };
    };
    (@root current) => {
        fn root_module() -> __airlock::PluginModuleRef {
            __airlock::PluginModule { manifest_block, create, invoke, destroy, query }.leak_into_prefix()
        }
        $crate::export_plugin!(@header __airlock::PluginModuleRef);
    };
    (@root v0) => {
        fn root_module() -> __airlock::v0::PluginModuleRef {
            let _ = query;
            __airlock::v0::PluginModule { manifest_block, create, invoke, destroy }.leak_into_prefix()
        }
        $crate::export_plugin!(@header __airlock::v0::PluginModuleRef);
    };
    (@root broken) => {
        extern "C" fn broken_manifest_block() -> u32 {
            let _ = (manifest_block, query);
            0
        }
        fn root_module() -> __airlock::broken::PluginModuleRef {
            __airlock::broken::PluginModule { manifest_block: broken_manifest_block, create, invoke, destroy }
                .leak_into_prefix()
        }
        $crate::export_plugin!(@header __airlock::broken::PluginModuleRef);
    };
    (@header $module:ty) => {
        extern "C" fn root_module_loader() -> __airlock::abi_stable::library::RootModuleResult {
            __airlock::abi_stable::library::__call_root_module_loader(root_module)
        }

        #[unsafe(export_name = "airlock_plugin_lib_header_v1")]
        pub static LIB_HEADER: __airlock::abi_stable::library::LibHeader = {
            // SAFETY: `root_module_loader` returns the module built by `root_module`, whose type
            // is the one named here.
            unsafe {
                __airlock::abi_stable::library::LibHeader::from_constructor::<$module>(
                    root_module_loader,
                    __airlock::abi_stable::library::CheckTypeLayout::Yes,
                )
            }
        };
    };
}
