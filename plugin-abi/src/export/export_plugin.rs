//! The `export_plugin!` macro: what a plugin crate expands into a library's manifest block,
//! entry points and exported symbol.

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
///
/// A plugin that ships files inside its library (`"resources"` in `plugin.json`) calls
/// `airlock_build::embed_resources()` from its `build.rs` and writes
///
/// ```text
/// airlock_abi::export_plugin!(MyPlugin, resources);
/// ```
///
/// which also places the resource block the build script wrote (an index of paths, media
/// types, lengths and BLAKE3 hashes, then the bytes) in a section of its own, read by the host
/// from the file like the manifest block. A library whose `plugin.json` declares resources but
/// which embeds none is refused.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty, resources $(,)?) => {
        $crate::export_plugin!(
            @build $plugin,
            abi_version: $crate::ABI_VERSION,
            target: $crate::abi::BUILD_TARGET,
            rustc: $crate::abi::BUILD_RUSTC,
            shape: current,
            resources: (
                include_bytes!(concat!(
                    env!("OUT_DIR", "export_plugin!(.., resources) needs a build.rs that calls airlock_build::embed_resources()"),
                    "/airlock-resources.blake3"
                )),
                include_bytes!(concat!(env!("OUT_DIR"), "/airlock-resources.bin"))
            )
        );
        $crate::export_plugin!(@resources);
    };
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
        $crate::export_plugin!(@build $plugin, abi_version: $abi, target: $target, rustc: $rustc, shape: $shape, resources: (b"", b""));
    };
    // Not public API: `resources` is the resource block's digest (empty: none, a version 1
    // manifest block; else a version 2 block that vouches for it) and the block itself.
    (@build $plugin:ty, abi_version: $abi:expr, target: $target:expr, rustc: $rustc:expr, shape: $shape:ident, resources: ($digest:expr, $resources:expr)) => {
        const _: () = {
            use $crate::__private as __airlock;
            use __airlock::abi_stable::std_types::{RResult, RSlice, RVec};
            use __airlock::abi_stable::prefix_type::PrefixTypeTrait as _;

            const JSON: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/plugin.json"));
            const PANIC: &[u8] = if cfg!(panic = "unwind") { b"unwind" } else { b"abort" };
            const DIGEST: &[u8] = $digest;
            const FIELDS: &[&[u8]] = if DIGEST.is_empty() {
                &[($abi).as_bytes(), ($rustc).as_bytes(), ($target).as_bytes(), PANIC, JSON]
            } else {
                &[($abi).as_bytes(), ($rustc).as_bytes(), ($target).as_bytes(), PANIC, JSON, DIGEST]
            };
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
                const RESOURCE_BLOCK: &'static [u8] = $resources;
            }

            $crate::export_plugin!(@root $shape);
        };
    };
    // Not public API: the resource block `airlock_build::embed_resources` wrote into OUT_DIR.
    (@resources) => {
        const _: () = {
            const LEN: usize = include_bytes!(concat!(env!("OUT_DIR"), "/airlock-resources.bin")).len();

            #[used]
            #[cfg_attr(target_vendor = "apple", unsafe(link_section = "__DATA,__airres"))]
            #[cfg_attr(not(target_vendor = "apple"), unsafe(link_section = ".airres"))]
            static RESOURCES: [u8; LEN] = *include_bytes!(concat!(
                env!("OUT_DIR"),
                "/airlock-resources.bin"
            ));
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
