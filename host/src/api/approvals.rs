//! The host program's side of calls waiting for approval: listing them, and approving or
//! refusing one ([`Host::approve`], [`Host::refuse_approval`]).

use std::cell::Cell;

use super::Host;
use crate::error::{CallError, CallErrorCode};
use crate::frame::{self, Frame};
use crate::policy::permission::Target;
use crate::runtime::approvals::ApprovalRequest;
use crate::runtime::called::{envelope, fail};
use crate::runtime::outcome::{ApprovalId, Reply};
use crate::services::audit::AuditOutcome;

impl Host {
    /// The calls waiting for approval, oldest first — those asked before a restart too, when
    /// the host has a state file (`[host] data_dir`). One waiting past the policy's bound
    /// (`[host] pending_ttl_secs`) is dropped and audited (`pending_expired`).
    pub fn pending_approvals(&self) -> Vec<ApprovalRequest> {
        self.shared.sweep_pending();
        let waiting = self.shared.pending.approvals().unwrap_or_else(|e| {
            tracing::error!("the calls waiting for approval could not be read: {e}");
            Vec::new()
        });
        let mut requests = Vec::with_capacity(waiting.len());
        for (id, bytes) in &waiting {
            match serde_json::from_slice(bytes) {
                Ok(request) => requests.push(request),
                // Kept until approved, refused or expired, each of which audits it.
                Err(e) => tracing::error!(
                    "the call waiting for approval {id} does not decode, so it is not listed: {e}"
                ),
            }
        }
        requests
    }

    /// Approves the call waiting as `id` and runs it now, for the caller it was made by, on the
    /// plugin's current generation; its answer is the call's.
    ///
    /// # Errors
    ///
    /// `not_found` if no call waits as `id` (already settled, or never asked); otherwise as
    /// [`Host::call`] (the permissions are checked again, so a rule changed to `deny` since
    /// holds).
    pub fn approve(&self, id: ApprovalId) -> Result<Reply, CallError> {
        let Some((request, _calling)) =
            self.settle(id, AuditOutcome::Approved, &format!("approval {id} given"))
        else {
            return Err(fail(
                "",
                "",
                CallErrorCode::NotFound,
                format!("no call waits for approval {id}"),
            ));
        };
        let _approved = frame::enter(Frame {
            approved: Cell::new(true),
            ..Frame::default()
        });
        let mut out = Vec::new();
        let called =
            self.shared
                .call_into(&request.plugin, &request.name, &request.input, &mut out);
        envelope(&request.plugin, &request.name, called?, out)
    }

    /// Refuses the call waiting for approval as `id`; whether one was waiting.
    pub fn refuse_approval(&self, id: ApprovalId, reason: &str) -> bool {
        let detail = format!("approval {id} refused: {reason}");
        self.settle(id, AuditOutcome::ApprovalRefused, &detail)
            .is_some()
    }

    /// Takes the call waiting as `id` and records how it was settled, with its caller made
    /// this thread's until the guard returned is dropped.
    fn settle(
        &self,
        id: ApprovalId,
        outcome: AuditOutcome,
        detail: &str,
    ) -> Option<(ApprovalRequest, frame::Entered)> {
        self.shared.sweep_pending();
        let taken = self.shared.pending.take_approval(id.0).unwrap_or_else(|e| {
            tracing::error!("the call waiting for approval {id} could not be read: {e}");
            None
        });
        let request: ApprovalRequest = match serde_json::from_slice(&taken?) {
            Ok(request) => request,
            Err(e) => {
                // Taken, so gone: say so where a settled call is recorded.
                let why = format!("{detail}, but its request does not decode and was dropped: {e}");
                tracing::error!("{why}");
                self.shared
                    .audit
                    .record("", 0, &format!("approval:{id}"), outcome, &why);
                return None;
            }
        };
        // Decided by an operator acting as someone ([`Host::as_operator`]): the record says who.
        let by = match crate::frame::caller::current() {
            airlock_abi::wire::CallerInfo::Host {
                principal: Some(operator),
            } => format!(" by {}", operator.id),
            _ => String::new(),
        };
        let detail = format!("{detail}{by}");
        let calling = crate::frame::caller::push(request.caller.clone());
        let target = Target::Action(&request.name).to_string();
        let audit = &self.shared.audit;
        audit.record(
            &request.plugin,
            request.generation,
            &target,
            outcome,
            &detail,
        );
        Some((request, calling))
    }
}
