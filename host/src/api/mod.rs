//! The embedding API: build a [`Host`] from plugin directories and a policy, load what can be
//! loaded (reporting every refusal), call actions ([`Call`]), dispatch hooks, serve plugins'
//! HTTP routes, operate the plugins at run time (revoke a capability, disable, enable, change
//! config, approve calls), and shut down in reverse load order. Everything here reaches the
//! plugins through the runtime below it.

mod approvals;
mod builder;
mod call;
#[cfg(feature = "tokio")]
mod call_pool;
mod config;
mod control;
mod dispatch;
mod events;
mod handle;
mod hooks;
mod host;
mod info;
mod metrics;
#[cfg(feature = "tokio")]
mod nonblocking;
mod operate;
mod peers;
mod pending;
mod resources;
mod routes;
mod scopes;

pub use builder::HostBuilder;
pub use call::{Action, Call, Claim, Dispatched};
pub use control::ShutdownRequest;
pub use handle::{ActionHandle, Answered};
pub use hooks::{
    ChainOutcome, CollectOutcome, FilterOutcome, GuardOutcome, GuardVerdict, HookDispatch,
    HookError, HookFailure, HookMode, Swallowed,
};
#[cfg(feature = "tokio")]
pub use nonblocking::{Abandoned, AsyncCall, AsyncHost, CallFuture, CallStream, Claimed, Named};
pub use routes::{
    HttpAuth, HttpIn, HttpOut, DEFAULT_MAX_REQUEST_BODY, DEFAULT_MAX_ROUTE_CONCURRENCY, REMEMBERED,
    REPLAY_WINDOW, TIMESTAMP_WINDOW,
};

use std::sync::Arc;

use crate::runtime::HostShared;

/// A host: loads plugins, serves calls into them, operates them, and tears them down.
///
/// All methods take `&self`; a host can be shared between threads. Dropping it shuts it down
/// (as [`Host::shutdown`]) if that has not been done.
pub struct Host {
    pub(crate) shared: Arc<HostShared>,
    /// The hooks the program defined, with their modes (shared with what plugins run hooks
    /// through).
    hooks: Arc<hooks::Defined>,
    /// Plugins' requests that the program shut down.
    shutdowns: Arc<control::Shutdowns>,
    /// Inbound HTTP: the program's authentication, and the body limit.
    inbound: routes::Inbound,
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
