//! Airlock: loads native plugins (shared libraries) into a host program after checking them,
//! and hands each one a revocable, capability-checked context.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use airlock::{Host, Reply};
//!
//! let host = Host::builder().plugin_dir("plugins").build()?;
//! let report = host.load()?;
//! for refused in report.refused() {
//!     eprintln!("{}: {:?} {}", refused.file.display(), refused.reason, refused.detail);
//! }
//! match host.call("hello", "greet").json(&serde_json::json!({"name": "Ada"}))? {
//!     Reply::Ok(answer) => println!("{answer}"),
//!     other => eprintln!("{other:?}"),
//! }
//! host.shutdown();
//! # Ok(())
//! # }
//! ```
//!
//! # Core concepts
//!
//! - **[`Host`]**, made by a [`HostBuilder`]: the plugin directories, the operator's
//!   [`Policy`], the embedding program's services. [`Host::load`] runs every library through
//!   the pipeline before any of its code runs — discover (stage 1), read without running (2),
//!   decide (3) — then loads a fresh copy (4) and creates the instance (5). The
//!   [`LoadReport`] says what loaded and why each refusal happened (a stable
//!   [`RefusalReason`]); one bad library never stops the others.
//! - **[`Call`]**: the one way to call a plugin, from [`Host::call`] (by name),
//!   [`ActionHandle::call`] (resolved once, for hot paths; [`ActionHandle::call_into`] is the
//!   cheapest call there is) or [`Host::dispatch`] (whoever claims a kind of request). It
//!   carries on whose behalf it runs ([`Principal`]), which [`CancelToken`] stops it, where
//!   its [`Chunk`]s go, and ends in `.json(..)` or `.bytes(..)` with a [`Reply`] — the
//!   action's answer, its own error, or a wait for approval — or a [`CallError`] saying, with
//!   a [`CallErrorCode`], why the call itself failed.
//! - **The membrane**: a plugin reaches the host only through its context, checked on every
//!   request against the capabilities it declared and the policy granted, every denial
//!   audited ([`services::AuditLog`]). The context closes at teardown, at reload, or when the
//!   operator revokes a capability or disables the plugin ([`Host::revoke_capability`],
//!   [`Host::disable`]).
//! - **Operating**: [`Host::plugins`] ([`PluginInfo`]), reloads and the directory watcher
//!   ([`Host::reload`], [`Host::watch`]), config changes, approvals, hooks
//!   ([`Host::hooks`]), inbound HTTP ([`Host::handle_http`]).
//!
//! The rest is in topic modules: [`call`], [`hooks`], [`http`], [`approvals`], [`plugins`],
//! [`pipeline`], [`policy`], [`services`], [`worker`], and `testing` (feature `testing`).

// `unsafe` lives in two rooms, allowed by name: the loader (`dlopen`, the layout checks) and
// the concurrent core (`sync`: the hazard pointers, the memory shared with a worker and the
// atomics under them). Anywhere else it does not compile.
#![deny(unsafe_code)]

mod api;
mod error;
#[cfg(feature = "failpoints")]
#[doc(hidden)]
pub mod failpoint;
#[cfg(not(feature = "failpoints"))]
mod failpoint;
pub mod fleet;
mod frame;
mod isolation;
mod library;
#[allow(unsafe_code)]
mod loader;
mod membrane;
mod observe;
pub mod pipeline;
pub mod policy;
mod runtime;
pub mod services;
#[allow(unsafe_code)]
mod sync;
#[cfg(feature = "testing")]
pub mod testing;

pub use api::{ActionHandle, Answered, Call, Host, HostBuilder};
pub use error::{CallError, CallErrorCode, Error, Refusal, RefusalReason};
pub use frame::cancel::CancelToken;
pub use frame::stream::Chunk;
pub use observe::Metrics;
pub use pipeline::report::LoadReport;
pub use policy::Policy;
pub use runtime::outcome::{PluginInfo, Reply};

pub use airlock_abi::wire::Principal;

/// Calls: what a [`Call`] is addressed to, how a dispatched request ended, the limits of
/// nesting and streaming, and the names of the `tracing` spans every call runs in.
pub mod call {
    pub use crate::api::{Action, Claim, Dispatched};
    pub use crate::frame::stream::{MAX_CHUNK, STREAM_BUFFER};
    pub use crate::frame::trace::{CALL_SPAN, REQUEST_SPAN, TARGET as TRACE_TARGET};
    pub use crate::membrane::MAX_CALL_DEPTH;
    pub use airlock_abi::wire::CallerInfo;
}

/// Hooks: named extension points the host program defines ([`crate::Host::define_hook`]),
/// each with a dispatch mode, and what each mode answers.
pub mod hooks {
    pub use crate::api::{
        ChainOutcome, CollectOutcome, FilterOutcome, GuardOutcome, GuardVerdict, HookDispatch,
        HookError, HookFailure, HookMode, Swallowed,
    };
}

/// Requests plugins make of the host program itself: a request that it shut down
/// ([`crate::HostBuilder::on_shutdown_request`], [`crate::Host::shutdown_requested`]).
pub mod control {
    pub use crate::api::ShutdownRequest;
}

/// Inbound HTTP for plugins' routes ([`crate::Host::handle_http`]).
pub mod http {
    pub use crate::api::{
        HttpAuth, HttpIn, HttpOut, DEFAULT_MAX_REQUEST_BODY, DEFAULT_MAX_ROUTE_CONCURRENCY,
        REMEMBERED, REPLAY_WINDOW, TIMESTAMP_WINDOW,
    };
}

/// The async embedding API (feature `tokio`): an [`AsyncHost`](nonblocking::AsyncHost) whose
/// calls, dispatches and inbound requests are futures, run on the host's call threads and
/// cancelled when dropped.
#[cfg(feature = "tokio")]
pub mod nonblocking {
    pub use crate::api::{Abandoned, AsyncCall, AsyncHost, CallFuture, CallStream, Claimed, Named};
}

/// Answers that wait: calls waiting for the approver's decision
/// ([`crate::HostBuilder::approver`]), and actions that answered pending
/// ([`crate::Reply::Pending`], [`crate::Host::pending`], [`crate::Host::resolve`]). Both are kept
/// in the host's state (they survive a restart with `[host] data_dir`) and expire by
/// `[host] pending_ttl_secs`.
pub mod approvals {
    pub use crate::runtime::approvals::{Approval, ApprovalRequest, MAX_PENDING_APPROVALS};
    pub use crate::runtime::outcome::ApprovalId;
    pub use crate::runtime::pending::{PENDING_EXPIRED, PENDING_RESOLVED};
    pub use crate::services::pending::{
        PendingEntry, PendingError, PendingId, PendingState, MAX_PENDING, MAX_PENDING_ANSWER,
        MAX_PENDING_ANSWER_BYTES, MAX_PENDING_ANSWER_BYTES_PER_PLUGIN, MAX_PENDING_PER_PLUGIN,
    };
    pub use airlock_abi::wire::{Envelope, MAX_PENDING_DESCRIPTION, MAX_PENDING_KEY};
}

/// Loaded plugins at run time: their states and counters, reloads and the directory watcher,
/// teardowns, config changes, timer jobs run by hand, the libraries kept mapped, and the
/// resources a plugin ships inside its library.
pub mod plugins {
    pub use crate::error::RunJobError;
    pub use crate::library::file::Resource;
    pub use crate::loader::retained;
    pub use crate::runtime::breaker::{BreakerInfo, BreakerState};
    pub use crate::runtime::outcome::{
        CheckedConfig, ConfigApplied, Origin, PluginState, PluginStats, ReloadOutcome,
        TeardownOutcome, TeardownRecord,
    };
    pub use crate::runtime::supervisor::WATCHDOG_TICK;
    pub use crate::runtime::watch::{Watcher, DEFAULT_DEBOUNCE};
    pub use crate::services::events::EVENT_QUEUE;
    pub use crate::services::timers::MAX_JOBS_PER_PLUGIN;
}

/// Events declared and routed: the catalog of topics ([`crate::Host::event_catalog`]) and the
/// runs of the policy's routines ([`crate::Host::routine_runs`], [`crate::policy::Routine`]).
pub mod events {
    pub use crate::services::catalog::{
        DeclaredTopic, EventCatalog, SeenTopic, HOST_PUBLISHER, MAX_PUBLISHERS_PER_TOPIC,
        MAX_SEEN_TOPICS,
    };
    pub use crate::services::routines::{
        RoutineOutcome, RoutineRun, MAX_ROUTINE_DEPTH, ROUTINE_QUEUE, ROUTINE_RUNS_KEPT,
    };
}

/// The program of `airlock-worker`, the executable an isolated plugin runs in.
pub mod worker {
    pub use crate::isolation::worker_main as main;
}

/// What only the project's own tests and benchmarks use.
#[cfg(feature = "test-support")]
#[doc(hidden)]
pub mod test_support {
    #[cfg(unix)]
    pub use crate::loader::bare_dlopen;
    pub use crate::membrane::context::is_open;
    pub use crate::membrane::host_vtable;
}
