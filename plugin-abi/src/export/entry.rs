//! The `extern "C"` entry points of a module, generic over the plugin type, and the opaque
//! handle they share: the one place on the plugin side where `unsafe` code turns a handle back
//! into the instance it was made from. Every handle is made by [`into_handle`], here.

use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::std_types::{RResult, RSlice, RVec};

use super::invoke::{call, invoke, query};
use super::{destroy, guard, panic_message, Instance};
use crate::ffi::{CallTable, ErrorCode, InstanceHandle, Invocation, InvocationKind, PluginError};
use crate::plugin::Plugin;

/// Turns a created instance into the opaque handle the host keeps.
#[doc(hidden)]
pub fn into_handle<P>(instance: Box<Instance<P>>) -> InstanceHandle {
    InstanceHandle(Box::into_raw(instance).cast())
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

/// The call table of plugin type `P`, as a constant so that it is one `'static` value per type.
pub(super) struct Entries<P>(std::marker::PhantomData<P>);

impl<P: Plugin> Entries<P> {
    pub(super) const CALL_TABLE: &'static CallTable = &CallTable {
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
