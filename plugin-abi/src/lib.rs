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

// The one room for `unsafe` is what `export_plugin!` expands to and the handle it turns back
// into an instance (`export`); anywhere else it does not compile.
#![deny(unsafe_code)]

mod block;
mod context;
pub mod contract;
mod error;
#[allow(unsafe_code)]
mod export;
mod ffi;
mod host_fns;
pub mod manifest;
mod plugin;
mod registry;
mod resource_block;
pub mod route;
mod shape;
mod version;
pub mod wire;

pub use context::{
    Context, Dispatched, Events, Http, HttpRequest, HttpResponse, HttpStream, Kv, KvBatch, Level,
    Peers, Plugins, Secrets, Timers,
};
pub use error::{ActionError, ContextError, InitError};
pub use export::Builtin;
pub use plugin::{ConfigChange, Health, JobRun, Plugin, Snapshot};
pub use registry::{Actions, HookReply, Hooks, Reply};
pub use route::{Incoming, Outgoing};
pub use version::ABI_VERSION;
pub use wire::{
    CallErrorCode, CallerInfo, ConfigReport, Expected, KvEntry, Principal, Request, Swapped,
};

/// The boundary itself, for hosts and the tools that check libraries: the root module and the
/// host vtable, tokens, invocations, error values, the manifest block and build provenance.
/// Plugin authors never need it; `docs/abi-evolution.md` says how it may change.
pub mod abi {
    pub use crate::block::{
        BlockError, ManifestBlock, BLOCK_HEADER_VERSION, BLOCK_HEADER_VERSION_RESOURCES,
        BLOCK_MAGIC, BLOCK_SECTION, BLOCK_SECTION_MACHO, MAX_BLOCK_LEN,
    };
    pub use crate::ffi::{
        CallTable, ContextToken, ErrorCode, HostContext, HostError, HostErrorCode, HostVtable,
        HostVtableRef, InstanceHandle, Invocation, InvocationKind, LogLevel, PluginError,
        PluginModule, PluginModuleRef, LIB_HEADER_SYMBOL,
    };
    pub use crate::host_fns::{Encoding, HostFns, RawRequest, RawScope, ServiceCall};
    pub use crate::resource_block::{
        ResourceBlock, ResourceBlockError, ResourceEntry, ResourceInput, MAX_RESOURCE_BLOCK_LEN,
        RESOURCE_BLOB_FILE, RESOURCE_DIGEST_FILE, RESOURCE_HEADER_VERSION, RESOURCE_MAGIC,
        RESOURCE_SECTION, RESOURCE_SECTION_MACHO,
    };
    pub use crate::version::{check_compatible, Incompatibility};

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
}

/// What `export_plugin!` expands to refers to these; not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::block::{block_len, build_block};
    pub use crate::export::{
        builtin_module, call_table_answer, create, destroy, destroy_entry, guard, idle_vtable,
        into_handle, invoke, invoke_entry, query, query_entry, Instance,
    };
    #[cfg(feature = "fixture-shapes")]
    pub use crate::ffi::{broken, v0};
    pub use crate::ffi::{
        HostContext, InstanceHandle, Invocation, PluginError, PluginModule, PluginModuleRef,
    };
    pub use abi_stable;
}
