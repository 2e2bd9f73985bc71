//! The host program's side of deferred answers: listing them, polling one, waiting for one and
//! resolving one ([`Host::pending_answers`], [`Host::pending`], [`Host::wait_pending`],
//! [`Host::resolve`]).

use std::time::{Duration, Instant};

use airlock_abi::wire::Envelope;

use super::Host;
use crate::services::pending::{now_ms, PendingEntry, PendingError, PendingId, PendingState};

impl Host {
    /// Every pending answer the host keeps, oldest first: the open ones, and the resolved or
    /// expired ones still kept for their callers to read (as long again as the policy's bound,
    /// `[host] pending_ttl_secs`). Each names its plugin, action, key, description and caller.
    /// Entries outlive a restart when the host has a state file (`[host] data_dir`); without
    /// one they are kept in memory and lost when it stops.
    pub fn pending_answers(&self) -> Vec<PendingEntry> {
        self.shared.sweep_pending();
        self.shared.pending.list().unwrap_or_else(|e| {
            tracing::error!("the pending answers could not be read: {e}");
            Vec::new()
        })
    }

    /// The pending answer `id` as it is now (poll it): open, resolved with the answer, or
    /// expired; `None` if the host keeps no such entry.
    pub fn pending(&self, id: &PendingId) -> Option<PendingEntry> {
        self.shared.sweep_pending();
        let read = || {
            self.shared.pending.get(id).unwrap_or_else(|e| {
                tracing::error!("the pending answer {id} could not be read: {e}");
                None
            })
        };
        let entry = read()?;
        // Past its time but not swept yet: expire it now, so the caller reads `expired`.
        if entry.state == PendingState::Open && entry.expires_unix_ms <= now_ms() {
            self.shared.sweep_pending_now(true);
            return read();
        }
        Some(entry)
    }

    /// Waits up to `timeout` for the pending answer `id` to be resolved (or to expire): the
    /// entry then, still open if the time ran out; `None` if the host keeps no such entry.
    pub fn wait_pending(&self, id: &PendingId, timeout: Duration) -> Option<PendingEntry> {
        let deadline = Instant::now() + timeout;
        loop {
            let entry = self.pending(id)?;
            let now = Instant::now();
            if entry.state != PendingState::Open || now >= deadline {
                return Some(entry);
            }
            // Wake at its expiry too, to sweep it.
            let left = entry.expires_unix_ms.saturating_sub(now_ms());
            let expiry = now + Duration::from_millis(left.saturating_add(1));
            self.shared.pending.wait_change(deadline.min(expiry));
        }
    }

    /// Resolves the open pending answer `id` with `outcome` — `Ok(value)` for the answer,
    /// `Err(message)` for the action's own error — as the plugin could with `ctx.resolve`; its
    /// caller's poll or wait then sees it, and the host publishes
    /// [`PENDING_RESOLVED`](crate::approvals::PENDING_RESOLVED). Audited (`pending_resolved`).
    ///
    /// # Errors
    ///
    /// [`PendingError::NotFound`] for an id the host does not keep; [`PendingError::Resolved`]
    /// if it was resolved already (an answer is given once); [`PendingError::Expired`] past the
    /// policy's bound; [`PendingError::Refused`] for an answer over
    /// [`MAX_PENDING_ANSWER`](crate::approvals::MAX_PENDING_ANSWER), or one that would not read
    /// back (JSON nested past 128 levels). Resolving past
    /// [`MAX_PENDING_ANSWER_BYTES_PER_PLUGIN`](crate::approvals::MAX_PENDING_ANSWER_BYTES_PER_PLUGIN)
    /// or [`MAX_PENDING_ANSWER_BYTES`](crate::approvals::MAX_PENDING_ANSWER_BYTES) drops
    /// settled entries, oldest first.
    pub fn resolve(
        &self,
        id: &PendingId,
        outcome: Result<serde_json::Value, String>,
    ) -> Result<PendingEntry, PendingError> {
        let outcome = match outcome {
            Ok(value) => Envelope::Ok(value),
            Err(message) => Envelope::Error(message),
        };
        self.shared.settle_pending(id, outcome, "the host program")
    }
}

impl Host {
    /// Whether pending answers and calls waiting for approval outlive this host: true with a
    /// state file (`[host] data_dir`), false when they are kept in memory only.
    pub fn pending_is_durable(&self) -> bool {
        self.shared.pending.durable()
    }
}
