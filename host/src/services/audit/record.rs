//! What an audit record is: its layout's version, its outcomes and its fields.

use serde::{Deserialize, Serialize};

/// The version of the audit record layout: 2 added `caller` to denials; 3 the permission and
/// approval outcomes and `restarted`; 4 `http` and `http_refused`; 5 `loaded` and `removed`
/// (a watched directory following installs and removals); 6 `route_refused`; 7 `routine` (one
/// per routine run, the publisher as `caller`), `event_refused`
/// and `shutdown_requested`; 8 `pending_created`, `pending_resolved` and `pending_expired`
/// (deferred answers, and approvals that waited past the bound), `breaker_opened`,
/// `breaker_half_open` and `breaker_closed` (a dispatched action's circuit breaker); 9
/// `config_changed`, and a `caller` on the operator's records (`revoked`, `disabled`, `enabled`,
/// `config_changed`, `loaded`, `reload_refused`): the host program, as [`crate::Host::as_operator`];
/// 10 `source_installed` and `source_refused` (a host following a channel, `[[sources]]`).
pub const AUDIT_SCHEMA: u32 = 10;
/// What an audit record says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// A plugin used a capability it was not granted (or that was revoked).
    Denied,
    /// The operator revoked a capability at run time.
    Revoked,
    /// The operator disabled a plugin.
    Disabled,
    /// The operator enabled a plugin.
    Enabled,
    /// Records were dropped because the queue was full; `detail` has the count.
    Dropped,
    /// A new build of the plugin was refused; the old generation keeps serving.
    ReloadRefused,
    /// A library was loaded while the host ran: a new plugin, or a new build of one (a reload).
    Loaded,
    /// A plugin's library was removed from its directory: the plugin was torn down.
    Removed,
    /// The policy's per-action permissions refused a caller an action or hook (a `deny` rule,
    /// an `ask` the approver refused, or an `ask` with no approver).
    PermissionDenied,
    /// An `ask` the approver will decide later: the call answered `pending_approval`.
    ApprovalPending,
    /// The approver allowed a call an `ask` rule covers (at once, or a pending one later).
    Approved,
    /// A call pending approval was refused (`Host::refuse_approval`).
    ApprovalRefused,
    /// An isolated plugin's worker died and was restarted within the policy's budget.
    Restarted,
    /// An outbound HTTP request the host made for a plugin (or tried to: the connection
    /// failed, the time ran out, the body was over its limit): method, host, status, size.
    Http,
    /// An outbound HTTP request the policy refused although a grant covers the host: its
    /// scheme, an address the name resolves to, or too many redirects.
    HttpRefused,
    /// A request to a plugin's public route refused before the plugin ran: the operator did not
    /// grant the route's secret, or the signature was missing, wrong, stale or replayed.
    RouteRefused,
    /// A routine ran (`capability` is `routine:<name>`, `plugin` its target, `caller` the
    /// event's publisher): `detail` says the topic and how it ended — answered, the action's
    /// error, or why it could not run (not running, denied by a permission rule, …).
    Routine,
    /// A plugin's publication refused because its payload does not fit the schema its manifest
    /// declares for the topic (`capability` is `events.publish:<topic>`); nothing was delivered.
    EventRefused,
    /// A plugin asked the host program to shut down (capability `host.control`); `detail` is
    /// its reason. The program decides what to do.
    ShutdownRequested,
    /// An action answered pending (`capability` is `action:<name>`): `detail` names the
    /// entry's id, key, description and caller; the record's `caller` is the call's.
    PendingCreated,
    /// A pending answer was resolved, by its plugin or by the host program (`detail` says
    /// which, with the entry's id, key, description and caller).
    PendingResolved,
    /// A pending answer, or a call waiting for approval, stayed open past the policy's bound
    /// (`[host] pending_ttl_secs`); its caller now reads `expired`.
    PendingExpired,
    /// An action's circuit breaker opened (`capability` is `breaker:<action>`): it failed the
    /// policy's number of dispatches in a row, or its probe failed; dispatches to it are
    /// refused (`breaker_open`) for the cooldown, which `detail` says.
    BreakerOpened,
    /// An open breaker's cooldown is over: the next dispatch probes the action.
    BreakerHalfOpen,
    /// A probe succeeded: the breaker is closed, and dispatches go through again.
    BreakerClosed,
    /// The operator changed a plugin's config ([`crate::Host::set_config`]): `detail` says
    /// whether it was applied live or the plugin re-created with it (never the config's values).
    ConfigChanged,
    /// A new build from a source the host follows (`[[sources]]`) passed every check and was
    /// placed and loaded (`capability` is the source, `detail` the digest and version).
    SourceInstalled,
    /// A build from a followed source was refused — by digest, by the checks a file gets, or at
    /// load — and the serving build kept (`detail` says the digest and why).
    SourceRefused,
}

impl AuditOutcome {
    /// Whether a record of this outcome names the caller of the call concerned.
    pub(super) fn names_caller(self) -> bool {
        matches!(
            self,
            Self::Denied
                | Self::PermissionDenied
                | Self::ApprovalPending
                | Self::Approved
                | Self::ApprovalRefused
                | Self::Http
                | Self::HttpRefused
                | Self::Routine
                | Self::PendingCreated
                | Self::Revoked
                | Self::Disabled
                | Self::Enabled
                | Self::ConfigChanged
                | Self::Loaded
                | Self::ReloadRefused
        )
    }
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// [`AUDIT_SCHEMA`].
    pub schema: u32,
    /// Increases by one per record, across the host's life; gaps are dropped records.
    pub seq: u64,
    /// UTC, RFC 3339 with milliseconds.
    pub time: String,
    /// The plugin concerned (empty for `dropped`).
    pub plugin: String,
    /// Its generation.
    pub generation: u64,
    /// The capability concerned.
    pub capability: String,
    /// What happened.
    pub outcome: AuditOutcome,
    /// Detail for people. Never holds a secret's value.
    pub detail: String,
    /// For a denial, or a permission decision: who asked for the call the plugin was serving
    /// (the host program, with its principal, or another plugin). Absent from other records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<airlock_abi::wire::CallerInfo>,
}

impl AuditRecord {
    /// For a `dropped` record, how many records it stands for.
    pub fn dropped_count(&self) -> Option<u64> {
        if self.outcome != AuditOutcome::Dropped {
            return None;
        }
        self.detail.split_whitespace().next()?.parse().ok()
    }
}
