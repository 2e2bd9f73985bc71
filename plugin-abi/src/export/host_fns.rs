//! Finding the host's register-returning function table ([`HostFns`]) once per host vtable:
//! the `context functions` request answers with its address and its type layout's, and the
//! table is used only if that layout describes the table this library knows: the same type of
//! the same package, of the same size and alignment, with the same fields in the same order.
//! The table is frozen (a changed table is a new request), so this shallow comparison is a
//! guard against a host answering with something else, not a version check; abi_stable's full
//! checker is not linked into every plugin for it (it is the host's, which checks the
//! plugins' call tables: about 200 KiB of code a plugin no longer carries).
//! Any other answer (an older host, an isolated plugin's worker, a context of the test
//! harness's own, a layout of another shape) leaves the context on the vtable's frozen slots.

use std::sync::{Mutex, PoisonError};

use abi_stable::std_types::{RResult, RSlice, RStr};
use abi_stable::type_layout::TypeLayout;
use abi_stable::StableAbi;

use crate::ffi::{HostContext, HostErrorCode};
use crate::host_fns::HostFns;
use crate::wire::Request;

/// What each host vtable this library met answered, by the vtable's address (usually one).
static FOUND: Mutex<Vec<(usize, Option<&'static HostFns>)>> = Mutex::new(Vec::new());

/// The function table of the host behind `raw`, if it hands out one this library can use.
pub(crate) fn host_fns(raw: HostContext) -> Option<&'static HostFns> {
    let vtable = raw.vtable.0.to_raw_ptr() as usize;
    let known = |found: &[(usize, Option<&'static HostFns>)]| {
        found.iter().find(|(v, _)| *v == vtable).map(|(_, f)| *f)
    };
    if let Some(fns) = known(&FOUND.lock().unwrap_or_else(PoisonError::into_inner)) {
        return fns;
    }
    // Asked without the lock: the host serves the request without calling back, but nothing
    // here needs to rely on it.
    let (fns, settled) = ask(raw);
    if settled {
        let mut found = FOUND.lock().unwrap_or_else(PoisonError::into_inner);
        if known(&found).is_none() {
            found.push((vtable, fns));
        }
    }
    fns
}

/// Asks the host; the answer is settled (kept for the vtable) unless the context was revoked
/// or the host failed, which says nothing about the table.
fn ask(raw: HostContext) -> (Option<&'static HostFns>, bool) {
    let request = Request::ContextFunctions;
    let answer = match (raw.vtable.request())(
        raw.token,
        RStr::from_str(request.service()),
        RStr::from_str(request.operation()),
        RSlice::from_slice(&[]),
    ) {
        RResult::ROk(answer) => answer,
        RResult::RErr(e) => {
            let settled = !matches!(e.code, HostErrorCode::REVOKED | HostErrorCode::INTERNAL);
            return (None, settled);
        }
    };
    let address = |at: usize| -> Option<usize> {
        let bytes = answer.as_slice().get(at..at + 8)?.try_into().ok()?;
        usize::try_from(u64::from_le_bytes(bytes)).ok()
    };
    let (Some(table), Some(layout)) = (address(0), address(8)) else {
        return (None, true);
    };
    if answer.len() != 16
        || table == 0
        || layout == 0
        || table % std::mem::align_of::<HostFns>() != 0
        || layout % std::mem::align_of::<TypeLayout>() != 0
    {
        return (None, true);
    }
    // SAFETY: the host answers `context functions` with the address of the `&'static
    // TypeLayout` of the `HostFns` type it was compiled with (the host's membrane, airlock's
    // only implementation; a vtable of another kind answers otherwise and is caught by the
    // checks above). It lives in the host binary, which is never unloaded.
    let theirs: &'static TypeLayout = unsafe { &*(layout as *const TypeLayout) };
    if !same_table(<HostFns as StableAbi>::LAYOUT, theirs) {
        return (None, true);
    }
    // SAFETY: as above, `table` is the address of the host's `&'static HostFns`, a type whose
    // layout was just found to be this library's.
    (Some(unsafe { &*(table as *const HostFns) }), true)
}

/// Whether `theirs` describes the same table as `ours`: type and package names, size,
/// alignment and the fields' names in order.
fn same_table(ours: &TypeLayout, theirs: &TypeLayout) -> bool {
    let fields = |layout: &TypeLayout| layout.mono_type_layout().field_names();
    ours.name() == theirs.name()
        && ours.package() == theirs.package()
        && ours.size() == theirs.size()
        && ours.alignment() == theirs.alignment()
        && fields(ours).eq(fields(theirs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::CallTable;

    #[test]
    fn only_the_same_table_passes() {
        let ours = <HostFns as StableAbi>::LAYOUT;
        assert!(same_table(ours, ours));
        assert!(!same_table(ours, <CallTable as StableAbi>::LAYOUT));
        assert!(!same_table(ours, <u64 as StableAbi>::LAYOUT));
    }
}
