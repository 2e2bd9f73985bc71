//! Finding a module's [`CallTable`], the fast way into its instances: the module answers
//! [`InvocationKind::CALL_TABLE`] with the table's address and the address of the type layout
//! it was compiled with, and the table is used only if abi_stable's layout checker finds that
//! layout equal to this host's.

use abi_stable::abi_stability::abi_checking::check_layout_compatibility;
use abi_stable::std_types::{RResult, RSlice, RStr};
use abi_stable::type_layout::TypeLayout;
use abi_stable::StableAbi;
use airlock_abi::abi::{CallTable, Invocation, InvocationKind, PluginModuleRef};

/// Asks `module` where its [`CallTable`] is ([`InvocationKind::CALL_TABLE`]) and checks the
/// table's type layout with abi_stable's checker; `None` (calls go through `invoke`) if the
/// module has none or its table does not have this host's layout.
pub(super) fn find(module: PluginModuleRef) -> Option<&'static CallTable> {
    let invocation = Invocation {
        kind: InvocationKind::CALL_TABLE,
        index: 0,
        name: RStr::from_str(""),
        payload: RSlice::from_slice(&[]),
    };
    let RResult::ROk(answer) = (module.query())(invocation) else {
        return None;
    };
    let address = |at: usize| -> Option<usize> {
        let bytes = answer.as_slice().get(at..at + 8)?.try_into().ok()?;
        usize::try_from(u64::from_le_bytes(bytes)).ok()
    };
    let (table, layout) = (address(0)?, address(8)?);
    if answer.len() != 16
        || table == 0
        || layout == 0
        || table % std::mem::align_of::<CallTable>() != 0
        || layout % std::mem::align_of::<TypeLayout>() != 0
    {
        tracing::warn!("a plugin answered CALL_TABLE with malformed addresses; calls use invoke");
        return None;
    }
    // SAFETY: the module answers `CALL_TABLE` with the address of the `&'static TypeLayout` of
    // the `CallTable` type it was compiled with (`export_plugin!`'s `query`; airlock-abi is
    // the only implementation, like every other entry of the module). It lives in the module's
    // library, which is never unloaded, or in this program (built-in plugins).
    let layout: &'static TypeLayout = unsafe { &*(layout as *const TypeLayout) };
    if let Err(e) = check_layout_compatibility(<CallTable as StableAbi>::LAYOUT, layout) {
        tracing::warn!("a plugin's call table has another layout ({e}); calls use invoke");
        return None;
    }
    // SAFETY: as above, `table` is the address of the module's `&'static CallTable`, a type
    // whose layout the checker just found equal to this host's.
    Some(unsafe { &*(table as *const CallTable) })
}

#[cfg(test)]
mod tests {
    use abi_stable::prefix_type::PrefixTypeTrait as _;
    use abi_stable::std_types::{RSlice, RVec};
    use airlock_abi::abi::{
        ContextToken, ErrorCode, HostContext, HostError, HostVtable, InstanceHandle, LogLevel,
        PluginError, PluginModule, PluginModuleRef,
    };

    use super::*;

    extern "C" fn call(
        _: InstanceHandle,
        _: InvocationKind,
        _: u32,
        _: RSlice<'_, u8>,
        _: &mut RVec<u8>,
    ) -> ErrorCode {
        ErrorCode::OK
    }

    static TABLE: CallTable = CallTable { call };

    fn addresses(table: usize, layout: usize) -> RVec<u8> {
        let mut answer = RVec::new();
        answer.extend_from_slice(&(table as u64).to_le_bytes());
        answer.extend_from_slice(&(layout as u64).to_le_bytes());
        answer
    }

    extern "C" fn answers_table(_: Invocation<'_>) -> RResult<RVec<u8>, PluginError> {
        let layout = <CallTable as StableAbi>::LAYOUT;
        RResult::ROk(addresses(
            std::ptr::from_ref(&TABLE) as usize,
            std::ptr::from_ref(layout) as usize,
        ))
    }

    extern "C" fn answers_another_layout(_: Invocation<'_>) -> RResult<RVec<u8>, PluginError> {
        let layout = <u64 as StableAbi>::LAYOUT;
        RResult::ROk(addresses(
            std::ptr::from_ref(&TABLE) as usize,
            std::ptr::from_ref(layout) as usize,
        ))
    }

    extern "C" fn answers_unsupported(_: Invocation<'_>) -> RResult<RVec<u8>, PluginError> {
        RResult::RErr(PluginError::new(ErrorCode::UNSUPPORTED, "no"))
    }

    extern "C" fn answers_garbage(_: Invocation<'_>) -> RResult<RVec<u8>, PluginError> {
        RResult::ROk(addresses(0, 3))
    }

    extern "C" fn no_block() -> RSlice<'static, u8> {
        RSlice::from_slice(&[])
    }

    extern "C" fn no_create(_: HostContext) -> RResult<InstanceHandle, PluginError> {
        RResult::RErr(PluginError::new(ErrorCode::INIT, "not here"))
    }

    extern "C" fn no_invoke(
        _: InstanceHandle,
        _: Invocation<'_>,
    ) -> RResult<RVec<u8>, PluginError> {
        RResult::RErr(PluginError::new(ErrorCode::UNSUPPORTED, "not here"))
    }

    extern "C" fn no_destroy(_: InstanceHandle) -> RResult<(), PluginError> {
        RResult::ROk(())
    }

    fn module(
        query: extern "C" fn(Invocation<'_>) -> RResult<RVec<u8>, PluginError>,
    ) -> PluginModuleRef {
        PluginModule {
            manifest_block: no_block,
            create: no_create,
            invoke: no_invoke,
            destroy: no_destroy,
            query,
        }
        .leak_into_prefix()
    }

    extern "C" fn no_log(_: ContextToken, _: LogLevel, _: RStr<'_>) -> RResult<(), HostError> {
        RResult::ROk(())
    }

    extern "C" fn no_config(_: ContextToken) -> RResult<RVec<u8>, HostError> {
        RResult::ROk(RVec::new())
    }

    extern "C" fn no_request(
        _: ContextToken,
        _: RStr<'_>,
        _: RStr<'_>,
        _: RSlice<'_, u8>,
    ) -> RResult<RVec<u8>, HostError> {
        RResult::ROk(RVec::new())
    }

    extern "C" fn create_one(_: HostContext) -> RResult<InstanceHandle, PluginError> {
        RResult::ROk(InstanceHandle(std::ptr::null_mut()))
    }

    extern "C" fn invoke_answers(
        _: InstanceHandle,
        invocation: Invocation<'_>,
    ) -> RResult<RVec<u8>, PluginError> {
        if invocation.payload.as_slice() == b"fail" {
            return RResult::RErr(PluginError::new(ErrorCode::DOMAIN, "as asked"));
        }
        let mut answer = RVec::new();
        answer.extend_from_copy_slice(b"through invoke:");
        answer.extend_from_copy_slice(invocation.payload.as_slice());
        RResult::ROk(answer)
    }

    #[test]
    fn without_a_table_actions_go_through_invoke_with_the_same_answers() {
        let module = PluginModule {
            manifest_block: no_block,
            create: create_one,
            invoke: invoke_answers,
            destroy: no_destroy,
            query: answers_unsupported,
        }
        .leak_into_prefix();
        let creator = crate::loader::Creator::from_module(module);
        let context = HostContext {
            token: ContextToken {
                slot: 0,
                generation: 0,
            },
            vtable: HostVtable {
                log: no_log,
                config: no_config,
                request: no_request,
            }
            .leak_into_prefix(),
        };
        let instance = creator.create(context).expect("created");
        let mut out = b"stale".to_vec();
        let code = instance.call(InvocationKind::ACTION, 0, "a", b"x", &mut out);
        assert_eq!(
            (code, out.as_slice()),
            (ErrorCode::OK, &b"through invoke:x"[..])
        );
        let code = instance.call(InvocationKind::ACTION, 0, "a", b"fail", &mut out);
        assert_eq!(
            (code, out.as_slice()),
            (ErrorCode::DOMAIN, &b"as asked"[..])
        );
        instance.destroy().expect("destroyed");
    }

    #[test]
    fn a_table_with_this_hosts_layout_is_used() {
        let table = find(module(answers_table)).expect("found");
        assert!(std::ptr::eq(table, &TABLE));
    }

    #[test]
    fn a_table_whose_layout_differs_is_not_used() {
        assert!(find(module(answers_another_layout)).is_none());
    }

    #[test]
    fn a_module_without_a_table_or_with_a_malformed_answer_is_called_through_invoke() {
        assert!(find(module(answers_unsupported)).is_none());
        assert!(find(module(answers_garbage)).is_none());
    }
}
