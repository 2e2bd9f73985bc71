//! The embedding API: build a [`Host`] from plugin directories and a policy, load what can be
//! loaded (reporting every refusal), call actions, operate the plugins at run time (revoke a
//! capability, disable, enable, change config), and shut down in reverse load order.

pub(crate) mod outcome;
pub(crate) mod supervisor;
pub(crate) mod watch;

mod api;
mod approvals;
mod builder;
mod called;
mod cancellable;
mod dispatch;
mod gate;
mod handle;
mod hooks;
mod invoke;
mod isolated;
mod lifecycle;
mod on_behalf;
mod operate;
mod plugin;
mod reload;
mod routes;
mod shared;

pub use crate::membrane::MAX_CALL_DEPTH;
pub use crate::pipeline::{check, check_file, check_report, pin, Checked, PipelineOptions};
pub use crate::runtime::outcome::{
    ActionOutcome, ApprovalId, ConfigApplied, PluginInfo, PluginState, PluginStats, ReloadOutcome,
    TeardownOutcome, TeardownRecord,
};
pub use approvals::{Approval, ApprovalRequest, MAX_PENDING_APPROVALS};
pub use builder::HostBuilder;
pub use dispatch::Dispatched;
pub use handle::{ActionHandle, Answered};
pub use hooks::{
    ChainOutcome, CollectOutcome, FilterOutcome, GuardOutcome, GuardVerdict, HookDispatch,
    HookError, HookFailure, HookMode, Swallowed,
};
pub use on_behalf::OnBehalf;
pub(crate) use plugin::Invoked;
pub(crate) use plugin::LoadedPlugin;
pub use routes::{HttpAuth, HttpIn, HttpOut, DEFAULT_MAX_REQUEST_BODY};
pub(crate) use shared::HostShared;

use std::sync::Arc;

/// A host: loads plugins, serves calls into them, operates them, and tears them down.
///
/// All methods take `&self`; a host can be shared between threads. Dropping it shuts it down
/// (as [`Host::shutdown`]) if that has not been done.
pub struct Host {
    pub(crate) shared: Arc<HostShared>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("dirs", &self.shared.options.dirs)
            .field("plugins", &self.shared.table().len())
            .finish_non_exhaustive()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.shutdown();
        self.shared.stop_threads();
    }
}
