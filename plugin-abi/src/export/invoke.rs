//! Serving invocations: an action or a hook by its index in the manifest, and the plugin's
//! other entry points (health, snapshot, events, timer runs, config changes, the started and
//! stopping phases); and the module-level ones, which need no instance (a config check, the
//! call table).

use abi_stable::std_types::RVec;
use abi_stable::type_layout::TypeLayout;
use abi_stable::StableAbi;

use super::entry::{call_table_answer, Entries};
use super::Instance;
use crate::ffi::{CallTable, ErrorCode, Invocation, InvocationKind, PluginError};
use crate::plugin::{ConfigChange, JobRun, Plugin};

/// Runs the action or hook at `index`, appending its answer to `out`.
pub(super) fn call<P: Plugin>(
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
            let run =
                JobRun::from_invocation(invocation.name.as_str(), invocation.payload.as_slice());
            instance.plugin.on_job(&run);
            Ok(RVec::new())
        }
        InvocationKind::CONFIG_CHANGED => {
            let config = parse_json(invocation.payload.as_slice())?;
            let applied = instance.plugin.config_changed(&config) == ConfigChange::Applied;
            to_json(&applied)
        }
        InvocationKind::STARTED => {
            instance.plugin.started();
            Ok(RVec::new())
        }
        InvocationKind::STOPPING => {
            instance.plugin.stopping();
            Ok(RVec::new())
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
