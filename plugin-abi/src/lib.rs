//! The stable ABI between Airlock hosts and native plugins, and the safe API plugin authors
//! write against.
//!
//! A plugin is a `cdylib` crate with a `plugin.json` beside its `Cargo.toml`, a type
//! implementing [`Plugin`], and one line: `airlock_abi::export_plugin!(MyPlugin);`. The author
//! writes no `unsafe`; the macro generates the exported functions, catches every panic at the
//! boundary, and embeds the manifest so the host can read it without running the library.
//!
//! ```
//! use airlock_abi::{ActionError, Actions, Context, InitError, Plugin};
//!
//! struct Hello {
//!     ctx: Context,
//! }
//!
//! impl Plugin for Hello {
//!     fn create(ctx: Context) -> Result<Self, InitError> {
//!         Ok(Self { ctx })
//!     }
//!
//!     fn actions(actions: &mut Actions<Self>) {
//!         actions.add("greet", |this: &Self, name: String| {
//!             this.ctx.info("greeting");
//!             Ok::<_, ActionError>(format!("hello, {name}"))
//!         });
//!     }
//! }
//!
//! // In the plugin crate, with its plugin.json beside Cargo.toml:
//! // airlock_abi::export_plugin!(Hello);
//! ```

mod block;
mod export;
mod ffi;
mod manifest;
mod plugin;
mod services;
#[cfg(feature = "testing")]
pub mod testing;
mod version;
pub mod wire;

pub use block::{
    BlockError, ManifestBlock, BLOCK_HEADER_VERSION, BLOCK_MAGIC, BLOCK_SECTION,
    BLOCK_SECTION_MACHO, MAX_BLOCK_LEN,
};
pub use export::Builtin;
pub use ffi::{
    ContextToken, ErrorCode, HostContext, HostError, HostErrorCode, HostVtable, HostVtableRef,
    InstanceHandle, Invocation, InvocationKind, LogLevel, PluginError, PluginModule,
    PluginModuleRef, LIB_HEADER_SYMBOL,
};
pub use manifest::{
    covers, glob_match, ActionDecl, Capability, CapabilityKind, Concurrency, DeclaredCapability,
    HookDecl, Manifest, ManifestError, PluginId, RawCapability, RawManifest, MAX_DECLARATIONS,
    MAX_ID_LEN,
};
pub use plugin::{
    ActionError, Actions, ConfigChange, Context, ContextError, Health, HookReply, Hooks, InitError,
    Level, Plugin, Snapshot,
};
pub use services::{Events, Kv, Plugins, Secrets, Timers};
pub use version::{check_compatible, Incompatibility, ABI_VERSION};
pub use wire::{CallErrorCode, ConfigReport, Request};

/// The target triple this crate (and so the plugin using it) was compiled for.
pub const BUILD_TARGET: &str = env!("AIRLOCK_BUILD_TARGET");
/// `rustc -V` of the compiler that built this crate (and so the plugin using it).
pub const BUILD_RUSTC: &str = env!("AIRLOCK_BUILD_RUSTC");
/// The panic strategy the *host* was compiled with; plugins record their own in the block.
pub const BUILD_PANIC: &str = if cfg!(panic = "unwind") {
    "unwind"
} else {
    "abort"
};

/// What `export_plugin!` expands to refers to these; not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::block::{block_len, build_block};
    pub use crate::export::{
        builtin_module, create, destroy, destroy_entry, guard, into_handle, invoke, invoke_entry,
        query, query_entry, Instance,
    };
    pub use crate::ffi::{
        broken, v0, HostContext, InstanceHandle, Invocation, PluginError, PluginModule,
        PluginModuleRef,
    };
    pub use abi_stable;
}
