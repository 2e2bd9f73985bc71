//! A host vtable that does nothing: a context for a module run without a host.

use abi_stable::prefix_type::WithMetadata;
use abi_stable::std_types::{RResult, RSlice, RStr, RVec};

use crate::ffi::{ContextToken, HostError, HostVtable, HostVtableRef, LogLevel};

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
