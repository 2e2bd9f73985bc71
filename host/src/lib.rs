//! Airlock: loads native plugins (`.so`, `.dylib`, `.dll`) into a host program after checking
//! them, and hands each one a revocable, capability-checked context.
//!
//! Every library goes through the pipeline before any of its code runs: discover (stage 1),
//! read without running (2), decide (3); then load a fresh shadow copy (4) and create the
//! instance (5). A refusal carries a stable [`RefusalReason`]; one bad library never stops the
//! others.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let host = airlock::Host::builder()
//!     .plugin_dir("plugins")
//!     .build()?;
//! let report = host.load()?;
//! for refused in report.refused() {
//!     eprintln!("{}: {:?} {}", refused.file.display(), refused.reason, refused.detail);
//! }
//! let answer = host.call("hello", "greet", &serde_json::json!({"name": "Ada"}))?;
//! println!("{answer:?}");
//! host.shutdown();
//! # Ok(())
//! # }
//! ```

// `unsafe` lives in two rooms, allowed by name: the loader (`dlopen`, the layout checks, the
// hazard pointers and the atomics under them) and the memory shared with a worker
// (`isolation::shm`). Anywhere else it does not compile.
#![deny(unsafe_code)]

mod call;
mod error;
#[cfg(feature = "failpoints")]
#[doc(hidden)]
pub mod failpoint;
#[cfg(not(feature = "failpoints"))]
mod failpoint;
mod isolation;
mod library;
#[allow(unsafe_code)]
mod loader;
mod membrane;
mod pipeline;
mod policy;
mod runtime;
mod services;
#[allow(unsafe_code)]
mod sync;
#[cfg(feature = "testing")]
pub mod testing;

pub use call::cancel::CancelToken;
pub use call::stream::{Chunk, MAX_CHUNK, STREAM_BUFFER};
pub use library::signature::{public_key_id, signature_path, SignatureStatus, SIGNATURE_SUFFIX};

pub use airlock_abi::wire::{CallerInfo, Principal};
pub use error::RunJobError;
pub use error::{CallError, CallErrorCode, Error, Refusal, RefusalReason};
pub use isolation::worker_main;
pub use library::discover::library_suffix;
pub use library::file::{read_library, read_library_bytes, LibraryFile, DEFAULT_MAX_LIBRARY_SIZE};
pub use library::lock::{Lock, LockEntry};
#[cfg(all(unix, feature = "test-support"))]
pub use loader::bare_dlopen;
pub use loader::retained;
#[cfg(feature = "test-support")]
pub use membrane::context::is_open;
#[cfg(feature = "test-support")]
pub use membrane::host_vtable;
pub use pipeline::decide::effective_grants;
pub use pipeline::report::{LoadReport, PluginReport, Status};
pub use policy::permission::{CallerPattern, Permission, PermissionRule, Target};
pub use policy::retry::{RetryPolicy, DEFAULT_RETRY};
pub use policy::{
    Credential, HostSettings, HttpPolicy, IpRange, Isolation, PluginPolicy, Policy, PolicyFormat,
    RestartPolicy, Sandbox, SecretSource, WorkerLimits, DEFAULT_CALL_TIMEOUT, DEFAULT_CANCEL_GRACE,
    DEFAULT_HEALTH_INTERVAL, DEFAULT_INIT_DEADLINE, DEFAULT_LIMITS, DEFAULT_QUARANTINE_FAULTS,
    DEFAULT_QUARANTINE_WINDOW, DEFAULT_RESTART, DEFAULT_SHUTDOWN_DEADLINE,
};
pub use runtime::supervisor::WATCHDOG_TICK;
pub use runtime::watch::{Watcher, DEFAULT_DEBOUNCE};
pub use runtime::{
    check, check_file, check_report, pin, ActionHandle, ActionOutcome, Answered, Approval,
    ApprovalId, ApprovalRequest, Checked, ConfigApplied, Dispatched, Host, HostBuilder, OnBehalf,
    PipelineOptions, PluginInfo, PluginState, PluginStats, ReloadOutcome, TeardownOutcome,
    TeardownRecord, MAX_CALL_DEPTH, MAX_PENDING_APPROVALS,
};
pub use runtime::{
    ChainOutcome, CollectOutcome, FilterOutcome, GuardOutcome, GuardVerdict, HookDispatch,
    HookError, HookFailure, HookMode, Swallowed,
};
pub use runtime::{HttpAuth, HttpIn, HttpOut, DEFAULT_MAX_REQUEST_BODY};
pub use services::audit::{
    AuditLog, AuditOutcome, AuditRecord, AUDIT_QUEUE, AUDIT_RING, AUDIT_SCHEMA,
};
pub use services::events::EVENT_QUEUE;
pub use services::kv::{
    KvError, KvStore, MAX_BATCH, MAX_KEY_LEN, MAX_LIST, MAX_LIST_BYTES, MAX_VALUE_LEN,
};
pub use services::registry::{Caller, ServiceError};
pub use services::timers::MAX_JOBS_PER_PLUGIN;
