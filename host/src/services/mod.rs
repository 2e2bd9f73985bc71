//! What the membrane serves a plugin's requests with: the host's services, reached through one
//! narrow trait that the runtime implements. An open context holds it (the runtime revokes
//! every context before it lets itself go); nothing below the runtime names the runtime.

pub(crate) mod audit;
pub(crate) mod catalog;
pub(crate) mod delivery;
pub(crate) mod events;
pub(crate) mod kv;
pub(crate) mod offered;
pub(crate) mod peers;
pub(crate) mod pending;
pub(crate) mod printable;
pub(crate) mod registry;
pub(crate) mod routines;
pub(crate) mod timers;

pub use audit::{AuditLog, AuditOutcome, AuditRecord, AUDIT_QUEUE, AUDIT_RING, AUDIT_SCHEMA};
pub use kv::{
    KvError, KvScope, KvSpace, KvStore, SealKeys, MAX_BATCH, MAX_KEY_LEN, MAX_LIST, MAX_LIST_BYTES,
    MAX_SCOPE_ID, MAX_SCOPE_KIND, MAX_VALUE_LEN,
};
pub use registry::{Caller, ServiceError};

use crate::error::CallError;
use crate::services::events::EventBus;
use crate::services::registry::Registry;
use crate::services::timers::TimerService;

/// The per-thread request counts a context keeps, reached by the membrane through this seam.
pub(crate) use crate::observe::tally::RequestCounts;

/// What a plugin did that the authors' test harness shows its test (logs, publications).
#[derive(Debug, Clone)]
#[cfg_attr(
    not(feature = "testing"),
    expect(
        dead_code,
        reason = "used by the authors' test harness (feature `testing`)"
    )
)]
pub(crate) enum Observed {
    /// A log line, at any level.
    Log {
        level: airlock_abi::abi::LogLevel,
        message: String,
    },
    /// An event the plugin published.
    Published {
        topic: String,
        payload: serde_json::Value,
    },
}

/// The services behind the membrane, and the one way back into the runtime a plugin has:
/// calling another plugin.
pub(crate) trait HostServices: Send + Sync {
    /// Records what a plugin did, for a host that observes its plugins (the test harness);
    /// only called for contexts opened with `observed`.
    fn observe(&self, plugin: &airlock_abi::manifest::PluginId, what: Observed);
    /// Where denials and operator actions are recorded.
    fn audit(&self) -> &AuditLog;
    /// Where the host counts its plugins' requests for the metrics.
    fn tally(&self) -> &crate::observe::tally::Tally {
        self.audit().tally()
    }
    /// The durable key/value store, if the host has a data directory.
    fn kv(&self) -> Option<&KvStore>;
    /// The key ring `plugin`'s kv values are sealed with, if the policy seals them; or why
    /// a key of it is not available (the message never holds key material).
    fn kv_keys(
        &self,
        plugin: &airlock_abi::manifest::PluginId,
    ) -> Result<Option<kv::SealKeys>, String>;
    /// The event bus.
    fn events(&self) -> &EventBus;
    /// Whether `payload` fits the schema `plugin` (its instance of `generation`) declares for
    /// `topic`: the schema's message if not.
    fn check_event(
        &self,
        plugin: &airlock_abi::manifest::PluginId,
        generation: u64,
        topic: &str,
        payload: &serde_json::Value,
    ) -> Result<(), String>;
    /// The timer service.
    fn timers(&self) -> &TimerService;
    /// The embedding program's services.
    fn registry(&self) -> &Registry;
    /// A secret's value from the policy or the environment, if a plugin may read it
    /// ([`crate::policy::Policy::readable_secret`]).
    fn readable_secret(&self, name: &str) -> Result<String, crate::policy::Unreadable>;
    /// The credential `name` (a secret usable, not readable), if the policy has one.
    fn credential(&self, name: &str) -> Option<crate::policy::Credential>;
    /// The client certificate `name` (presented in TLS, never readable), if the policy has one.
    fn client_certificate(&self, name: &str) -> Option<crate::policy::ClientCertificate>;
    /// The extra roots trusted for outbound HTTPS (`[host] tls_roots`).
    fn tls_roots(&self) -> Vec<std::path::PathBuf>;
    /// The policy's outbound HTTP rules for `plugin`.
    fn http_policy(&self, plugin: &airlock_abi::manifest::PluginId) -> crate::policy::HttpPolicy;
    /// The addresses the embedding program pinned for a host name, if it did.
    fn pinned(&self, name: &str) -> Option<Vec<std::net::IpAddr>>;
    /// The addresses the host program serves on, which a plugin's outbound HTTP may not reach.
    fn serving(&self) -> Vec<std::net::SocketAddr>;
    /// Calls `action` of `plugin` with JSON bytes: the answer's bytes, or its domain error.
    fn call_plugin(
        &self,
        plugin: &str,
        action: &str,
        input: &[u8],
    ) -> Result<airlock_abi::wire::Envelope<Vec<u8>>, CallError>;
    /// The host as a whole (the plugins listed, dispatched to, run through hooks; the
    /// program asked to shut down), once the host is built.
    fn peers(&self) -> Option<&dyn peers::Peers>;
    /// Settles `plugin`'s own open pending answer `key` with `outcome` (audited, told).
    fn resolve_pending(
        &self,
        plugin: &airlock_abi::manifest::PluginId,
        key: &str,
        outcome: airlock_abi::wire::Envelope<serde_json::Value>,
    ) -> Result<(), pending::PendingError>;
}
