//! The types that cross the boundary between host and plugin: the plugin's root module, the
//! host's vtable, the context token, and the FFI-safe error values.
//!
//! # Evolution rule
//!
//! [`PluginModule`] and [`HostVtable`] are abi_stable *prefix types*. Fields are only ever
//! **appended after the last field**, never removed, reordered or retyped; the fields up to
//! `#[sabi(last_prefix_field)]` are the ones every version has. abi_stable's layout check accepts
//! a library whose prefix type has *more* fields than the host expects, but refuses one with
//! fewer (`layout_mismatch`); since Airlock's version rule refuses plugins built against a newer
//! minor, an appended field could never be used compatibly. So the root module and the vtable
//! are frozen at their prefix: a new capability is a new request name or invocation kind. See
//! `docs/abi-evolution.md`.

use std::ffi::c_void;

use abi_stable::library::RootModule;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{RResult, RSlice, RStr, RString, RVec};
use abi_stable::StableAbi;

use crate::wire::CallErrorCode;

/// An opaque pointer to a plugin instance, created and destroyed by the plugin.
///
/// The host never dereferences it; it only hands it back to the functions of the module that
/// created it.
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct InstanceHandle(pub *mut c_void);

/// What an invocation asks of the plugin; see [`Invocation::kind`].
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvocationKind(pub u32);

impl InvocationKind {
    /// Run the action at `index` with `payload` as JSON input.
    pub const ACTION: Self = Self(1);
    /// Report health; the answer is JSON.
    pub const HEALTH: Self = Self(2);
    /// Deliver an event: `name` is the topic, `payload` its JSON value.
    pub const EVENT: Self = Self(3);
    /// Run the interval job `name`.
    pub const TIMER: Self = Self(4);
    /// Apply a new config (JSON) live; the answer is JSON `true` if applied, `false` if the
    /// plugin must be re-created to take it.
    pub const CONFIG_CHANGED: Self = Self(5);
    /// Module-level (through [`PluginModule::query`], no instance): validate a config (JSON);
    /// the answer is a JSON `{"errors": [...], "warnings": [...]}`.
    pub const VALIDATE_CONFIG: Self = Self(6);
    /// Run the hook at `index` in the manifest's `hooks` list with `payload` as JSON input; the
    /// answer is a JSON `HookReply`: `{"continue": value}`, `{"block": reason}` or
    /// `{"swallow": reply}`.
    pub const HOOK: Self = Self(7);
    /// Snapshot state for the next generation (hot reload); the answer is empty for no state,
    /// else a little-endian `u32` version followed by the state bytes.
    pub const SNAPSHOT: Self = Self(8);
    /// Module-level (through [`PluginModule::query`], no instance): where the plugin's
    /// [`CallTable`] is. The answer is two little-endian `u64` addresses: the plugin's
    /// `&'static CallTable` and the `&'static TypeLayout` it was built with, which the host
    /// checks with abi_stable's layout checker before it uses the table. A plugin without a
    /// call table answers [`ErrorCode::UNSUPPORTED`], and the host calls `invoke`.
    pub const CALL_TABLE: Self = Self(9);
    // 10 and 11, `STARTED` and `STOPPING`, are beside the `Plugin` methods they call (plugin.rs).
}

/// The fast way into an instance, found once per library through [`InvocationKind::CALL_TABLE`]:
/// everything a call passes is in registers, the answer is written into a buffer the host
/// owns, and the outcome is one code, with no result value returned in memory.
///
/// Like the root module, this table is frozen: a faster way still is a new invocation kind
/// answering with a new table type.
#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct CallTable {
    /// Runs the action or hook (`kind` is [`InvocationKind::ACTION`] or
    /// [`InvocationKind::HOOK`]) at `index` of the manifest's list with `payload` as input.
    /// The plugin appends its answer to `out` (empty on entry; the host owns it and its
    /// allocator grows it) and returns [`ErrorCode::OK`]; on failure it leaves the failure's
    /// message (UTF-8) in `out` instead and returns the failure's code. A kind it does not serve
    /// this way is [`ErrorCode::UNSUPPORTED`].
    pub call: extern "C" fn(
        instance: InstanceHandle,
        kind: InvocationKind,
        index: u32,
        payload: RSlice<'_, u8>,
        out: &mut RVec<u8>,
    ) -> ErrorCode,
}

/// One call into a plugin instance.
///
/// New kinds of calls are new [`InvocationKind`] values, never new fields; a plugin answers a kind
/// it does not know with [`ErrorCode::UNSUPPORTED`].
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct Invocation<'a> {
    /// What is asked.
    pub kind: InvocationKind,
    /// For actions, the index of the action in the manifest's `actions` list.
    pub index: u32,
    /// The action or hook name, for diagnostics and name-addressed kinds.
    pub name: RStr<'a>,
    /// The input bytes (JSON for actions); the plugin copies what it keeps.
    pub payload: RSlice<'a, u8>,
}

impl<'a> Invocation<'a> {
    /// An invocation of `kind` at `index` (`name` for diagnostics) with `payload`.
    pub fn new(kind: InvocationKind, index: u32, name: &'a str, payload: &'a [u8]) -> Self {
        Self {
            kind,
            index,
            name: RStr::from_str(name),
            payload: RSlice::from_slice(payload),
        }
    }
}

/// The error code of a [`PluginError`].
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode(pub u32);

impl ErrorCode {
    /// Success: only [`CallTable::call`] returns it, never a [`PluginError`].
    pub const OK: Self = Self(0);
    /// The plugin's own code returned a domain error (the action's `error(message)`).
    pub const DOMAIN: Self = Self(1);
    /// The input did not deserialize into the action's input type.
    pub const BAD_INPUT: Self = Self(2);
    /// No such action in this plugin.
    pub const NOT_FOUND: Self = Self(3);
    /// The plugin's code panicked; the message is the panic payload when it was a string.
    pub const PANICKED: Self = Self(4);
    /// The plugin does not know this invocation kind.
    pub const UNSUPPORTED: Self = Self(5);
    /// Creation failed: the plugin's `create` returned an error, or its actions do not match
    /// its manifest.
    pub const INIT: Self = Self(7);
    /// The plugin's code hit a capability it was not granted and gave up.
    pub const CAPABILITY_VIOLATION: Self = Self(8);
    /// The plugin's context was revoked under it.
    pub const REVOKED: Self = Self(9);
    /// The plugin failed in a way that is not the caller's fault (e.g. output not serializable).
    pub const HANDLER: Self = Self(6);
    /// A domain error the caller may retry (e.g. a dependency was briefly unavailable):
    /// `host.dispatch` retries it with backoff; a plain call sees the envelope's `error`.
    pub const RETRYABLE: Self = Self(10);
}

/// An error returned by a plugin across the boundary.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct PluginError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// A message for people.
    pub message: RString,
}

impl PluginError {
    /// A new error value.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: RString::from(message.into()),
        }
    }
}

/// The root module every plugin exports (through `export_plugin!`).
///
/// Append-only; see the module documentation.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(option))]
pub struct PluginModule {
    /// The manifest block, the same bytes that are embedded in the library file.
    pub manifest_block: extern "C" fn() -> RSlice<'static, u8>,
    /// Creates an instance; the plugin reads its config through the context.
    pub create: extern "C" fn(context: HostContext) -> RResult<InstanceHandle, PluginError>,
    /// Runs one invocation on an instance; the answer's bytes are owned by the caller.
    pub invoke: extern "C" fn(
        instance: InstanceHandle,
        invocation: Invocation<'_>,
    ) -> RResult<RVec<u8>, PluginError>,
    /// Tears the instance down and frees it. The handle is invalid afterwards.
    pub destroy: extern "C" fn(instance: InstanceHandle) -> RResult<(), PluginError>,
    /// Module-level invocations that need no instance (e.g. validating a config before
    /// creation). New module-level requests are new invocation kinds, not new fields.
    #[sabi(last_prefix_field)]
    pub query: extern "C" fn(invocation: Invocation<'_>) -> RResult<RVec<u8>, PluginError>,
}

impl RootModule for PluginModuleRef {
    abi_stable::declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "airlock_plugin";
    const NAME: &'static str = "airlock_plugin";
    const VERSION_STRINGS: VersionStrings = abi_stable::package_version_strings!();
}

/// The symbol under which `export_plugin!` places the library header (an abi_stable
/// `LibHeader`). Not abi_stable's own mangled name, so that plugin crates need no direct
/// dependency on abi_stable.
pub const LIB_HEADER_SYMBOL: &str = "airlock_plugin_lib_header_v1";

/// Identifies one plugin context: a slot in the host's table and the generation of its occupant.
///
/// A token whose generation no longer matches its slot is stale, and every host function
/// answers it with [`HostErrorCode::REVOKED`].
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContextToken {
    /// The slot index.
    pub slot: u32,
    /// The generation of the slot's occupant.
    pub generation: u32,
}

/// What a plugin receives at creation: its token and the host's vtable, which lives in the
/// host binary and is never unloaded.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct HostContext {
    /// Who is calling.
    pub token: ContextToken,
    /// The host's functions.
    pub vtable: HostVtableRef,
}

impl std::fmt::Debug for HostContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostContext")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// The error code of a [`HostError`].
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostErrorCode(pub u32);

impl HostErrorCode {
    /// Success: only the functions of [`crate::abi::HostFns`] return it, never a [`HostError`].
    pub const OK: Self = Self(0);
    /// The context was revoked (teardown, reload, disable) or the token is stale.
    pub const REVOKED: Self = Self(1);
    /// The plugin was not granted the capability; an audit record was written.
    pub const CAPABILITY_VIOLATION: Self = Self(2);
    /// The request names a service or operation the host does not offer.
    pub const UNSUPPORTED: Self = Self(3);
    /// The request's payload is malformed.
    pub const BAD_REQUEST: Self = Self(4);
    /// The host failed while serving the request.
    pub const INTERNAL: Self = Self(5);
    /// A service of the embedding program answered with its own error (the message is its).
    pub const SERVICE_FAILED: Self = Self(6);
    /// The host's policy refused the request although the capability covers it: a scheme, an
    /// address or a limit (the message says which). One audit record was written.
    pub const REFUSED: Self = Self(7);
    /// The host tried and the outside world failed (a connection, a timeout, a size limit).
    pub const UNREACHABLE: Self = Self(8);
    /// The first of the codes for a failed call to another plugin, one per
    /// [`CallErrorCode`]: see [`HostErrorCode::call_failed`].
    pub const CALL_FAILED: Self = Self(100);

    /// A call to another plugin failed with `code`: its own code, so nothing else carries it.
    pub const fn call_failed(code: CallErrorCode) -> Self {
        Self(Self::CALL_FAILED.0 + code as u32)
    }

    /// The call error code of a failed call to another plugin, if this is one.
    pub fn call_error(self) -> Option<CallErrorCode> {
        CallErrorCode::ALL
            .into_iter()
            .find(|c| Self::call_failed(*c) == self)
    }
}

/// An error returned by the host to a plugin.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct HostError {
    /// What kind of failure.
    pub code: HostErrorCode,
    /// For capability violations, the capability that was missing; empty otherwise.
    pub capability: RString,
    /// A message for people.
    pub message: RString,
}

/// Log levels for [`HostVtable::log`].
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLevel(pub u8);

impl LogLevel {
    /// Errors.
    pub const ERROR: Self = Self(1);
    /// Warnings.
    pub const WARN: Self = Self(2);
    /// Information.
    pub const INFO: Self = Self(3);
    /// Debugging detail.
    pub const DEBUG: Self = Self(4);
    /// Tracing detail.
    pub const TRACE: Self = Self(5);
}

/// The host's functions, reachable from a plugin through its [`HostContext`].
///
/// Append-only; see the module documentation. Services that need a capability go through
/// [`HostVtable::request`] with a service and operation name.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = HostVtableRef)))]
#[sabi(missing_field(option))]
pub struct HostVtable {
    /// Writes a log line in the plugin's span. Needs no capability.
    pub log: extern "C" fn(
        token: ContextToken,
        level: LogLevel,
        message: RStr<'_>,
    ) -> RResult<(), HostError>,
    /// The plugin's config as JSON. Needs no capability.
    pub config: extern "C" fn(token: ContextToken) -> RResult<RVec<u8>, HostError>,
    /// A named request to a host service (`kv`, `events`, …), checked against the plugin's grants.
    #[sabi(last_prefix_field)]
    pub request: extern "C" fn(
        token: ContextToken,
        service: RStr<'_>,
        operation: RStr<'_>,
        payload: RSlice<'_, u8>,
    ) -> RResult<RVec<u8>, HostError>,
}

/// The root module without its `query` field: a fixture built with this shape proves that a
/// library whose root module has fewer fields than the host's is refused by the layout check
/// (`layout_mismatch`), never loaded with a slot missing. Not public API.
#[cfg(feature = "fixture-shapes")]
#[doc(hidden)]
pub mod v0 {
    use abi_stable::library::RootModule;
    use abi_stable::sabi_types::VersionStrings;
    use abi_stable::std_types::{RResult, RSlice, RVec};
    use abi_stable::StableAbi;

    use super::{HostContext, InstanceHandle, Invocation, PluginError};

    /// See the module documentation.
    #[repr(C)]
    #[derive(StableAbi)]
    #[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
    #[sabi(missing_field(option))]
    pub struct PluginModule {
        /// As in the current shape.
        pub manifest_block: extern "C" fn() -> RSlice<'static, u8>,
        /// As in the current shape.
        pub create: extern "C" fn(context: HostContext) -> RResult<InstanceHandle, PluginError>,
        /// As in the current shape.
        pub invoke: extern "C" fn(
            instance: InstanceHandle,
            invocation: Invocation<'_>,
        ) -> RResult<RVec<u8>, PluginError>,
        /// As in the current shape.
        #[sabi(last_prefix_field)]
        pub destroy: extern "C" fn(instance: InstanceHandle) -> RResult<(), PluginError>,
    }

    impl RootModule for PluginModuleRef {
        abi_stable::declare_root_module_statics! {PluginModuleRef}
        const BASE_NAME: &'static str = "airlock_plugin";
        const NAME: &'static str = "airlock_plugin";
        const VERSION_STRINGS: VersionStrings = abi_stable::package_version_strings!();
    }
}

/// A root module whose first field has another type: abi_stable's layout check refuses it
/// (`layout_mismatch`). Only for the fixture that proves it. Not public API.
#[cfg(feature = "fixture-shapes")]
#[doc(hidden)]
pub mod broken {
    use abi_stable::library::RootModule;
    use abi_stable::sabi_types::VersionStrings;
    use abi_stable::std_types::{RResult, RVec};
    use abi_stable::StableAbi;

    use super::{HostContext, InstanceHandle, Invocation, PluginError};

    /// See the module documentation.
    #[repr(C)]
    #[derive(StableAbi)]
    #[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
    #[sabi(missing_field(option))]
    pub struct PluginModule {
        /// Not what a host expects.
        pub manifest_block: extern "C" fn() -> u32,
        /// As in the current shape.
        pub create: extern "C" fn(context: HostContext) -> RResult<InstanceHandle, PluginError>,
        /// As in the current shape.
        pub invoke: extern "C" fn(
            instance: InstanceHandle,
            invocation: Invocation<'_>,
        ) -> RResult<RVec<u8>, PluginError>,
        /// As in the current shape.
        #[sabi(last_prefix_field)]
        pub destroy: extern "C" fn(instance: InstanceHandle) -> RResult<(), PluginError>,
    }

    impl RootModule for PluginModuleRef {
        abi_stable::declare_root_module_statics! {PluginModuleRef}
        const BASE_NAME: &'static str = "airlock_plugin";
        const NAME: &'static str = "airlock_plugin";
        const VERSION_STRINGS: VersionStrings = abi_stable::package_version_strings!();
    }
}
