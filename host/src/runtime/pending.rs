//! Deferred answers on the call path: an action's `pending` answer kept as an entry of the
//! store ([`crate::services::pending`]) for the caller of the call, its settling by the plugin
//! or the host program, and the expiry of what waited too long — each audited, and told on the
//! host's topics [`PENDING_RESOLVED`] and [`PENDING_EXPIRED`].

use airlock_abi::abi::InvocationKind;
use airlock_abi::wire::{CallerInfo, Deferral, Envelope};

use super::called::{deferred, refuse, Called};
use super::plugin::LoadedPlugin;
use super::shared::HostShared;
use crate::error::CallErrorCode;
use crate::services::audit::AuditOutcome;
use crate::services::pending::{PendingEntry, PendingError, PendingId, PendingState};

/// The topic the host publishes on when a pending answer is resolved: `{"id", "plugin",
/// "action", "state"}` (the answer itself is read with [`crate::Host::pending`]).
pub const PENDING_RESOLVED: &str = "airlock.pending.resolved";
/// The topic the host publishes on when a pending answer expires unresolved.
pub const PENDING_EXPIRED: &str = "airlock.pending.expired";

impl HostShared {
    /// [`HostShared::sweep_pending_now`], when a second has passed since the last sweep.
    pub(crate) fn sweep_pending(&self) {
        self.sweep_pending_now(false);
    }

    /// A plugin answered pending: kept for an action; a failure of anything else.
    #[cold]
    pub(crate) fn pending_answer(
        &self,
        plugin: &LoadedPlugin,
        kind: InvocationKind,
        name: &str,
        out: &mut Vec<u8>,
    ) -> Called {
        if kind == InvocationKind::ACTION {
            return self.defer_answer(plugin, name, out);
        }
        refuse(
            out,
            CallErrorCode::HandlerError,
            format_args!(
                "{}.{name} answered pending, which only an action may",
                plugin.id()
            ),
        )
    }

    /// `plugin`'s action `name` answered pending, with the [`Deferral`] in `out`: the entry is
    /// kept for this thread's caller, and `out` holds its id and description ([`deferred`]).
    #[cold]
    pub(crate) fn defer_answer(
        &self,
        plugin: &LoadedPlugin,
        name: &str,
        out: &mut Vec<u8>,
    ) -> Called {
        let id = plugin.id().as_str();
        let deferral: Deferral = match serde_json::from_slice(out) {
            Ok(deferral) => deferral,
            Err(e) => {
                return refuse(
                    out,
                    CallErrorCode::HandlerError,
                    format_args!("{id}.{name} answered pending with a malformed deferral: {e}"),
                )
            }
        };
        self.sweep_pending();
        let caller = crate::frame::caller::current();
        match self.pending.create(id, name, deferral, caller) {
            Ok(entry) => {
                self.audit_pending(&entry, AuditOutcome::PendingCreated, "answered pending");
                deferred(out, &entry.id, &entry.description)
            }
            Err(e) => refuse(
                out,
                CallErrorCode::HandlerError,
                format_args!("{id}.{name} answered pending, and it was refused: {e}"),
            ),
        }
    }

    /// Settles the open entry `id` with `outcome`, `by` the plugin or the host program.
    pub(crate) fn settle_pending(
        &self,
        id: &PendingId,
        outcome: Envelope<serde_json::Value>,
        by: &str,
    ) -> Result<PendingEntry, PendingError> {
        self.sweep_pending();
        let entry = self.pending.resolve(id, outcome)?;
        self.audit_pending(
            &entry,
            AuditOutcome::PendingResolved,
            &format!("resolved by {by}"),
        );
        self.tell(PENDING_RESOLVED, &entry);
        Ok(entry)
    }

    /// Marks what waited past the policy's bound expired, each audited and told — at most once
    /// a second (the bound's resolution) unless `now`.
    pub(crate) fn sweep_pending_now(&self, now: bool) {
        let swept = match self.pending.sweep(now) {
            Ok(swept) => swept,
            Err(e) => {
                tracing::error!("pending answers could not be swept: {e}");
                return;
            }
        };
        if swept.unreadable > 0 {
            tracing::error!(
                "{} pending answers did not decode and were dropped from the store",
                swept.unreadable
            );
        }
        for entry in &swept.answers {
            let ttl = self.pending.ttl().as_secs();
            self.audit_pending(
                entry,
                AuditOutcome::PendingExpired,
                &format!("expired unresolved after {ttl} s ([host] pending_ttl_secs)"),
            );
            self.tell(PENDING_EXPIRED, entry);
        }
        for (id, request) in &swept.approvals {
            let request: Option<crate::runtime::approvals::ApprovalRequest> =
                serde_json::from_slice(request).ok();
            let (plugin, generation, target) = request.map_or_else(Default::default, |r| {
                (r.plugin, r.generation, format!("action:{}", r.name))
            });
            self.audit.record(
                &plugin,
                generation,
                &target,
                AuditOutcome::PendingExpired,
                &format!("approval #{id} expired undecided ([host] pending_ttl_secs)"),
            );
        }
    }

    fn audit_pending(&self, entry: &PendingEntry, outcome: AuditOutcome, what: &str) {
        let generation = self.find(&entry.plugin).map_or(0, |p| {
            p.generation.load(std::sync::atomic::Ordering::SeqCst)
        });
        let detail = format!(
            "pending answer {} (key {:?}: {:?}) for {}: {what}",
            entry.id, entry.key, entry.description, entry.caller
        );
        let target = format!("action:{}", entry.action);
        self.audit
            .record(&entry.plugin, generation, &target, outcome, &detail);
    }

    fn tell(&self, topic: &str, entry: &PendingEntry) {
        let state = match entry.state {
            PendingState::Open => "open",
            PendingState::Resolved(_) => "resolved",
            PendingState::Expired => "expired",
        };
        let payload = serde_json::json!({
            "id": entry.id,
            "plugin": entry.plugin,
            "action": entry.action,
            "state": state,
        });
        let host = CallerInfo::Host { principal: None };
        self.events.publish(&host, topic, &payload);
    }
}
