//! Per-action permissions on the call path: the policy's rules ([`crate::policy::permission`]) checked
//! for the thread's current caller before an action or hook runs, the embedding program's
//! approver for `ask`, and the calls waiting for its decision, which the host runs or refuses
//! when it comes ([`Host::approve`](crate::Host::approve), [`Host::refuse_approval`](crate::Host::refuse_approval)).

use std::sync::atomic::{AtomicU64, Ordering};

use airlock_abi::wire::CallerInfo;

use super::plugin::LoadedPlugin;
use super::shared::HostShared;
use crate::error::CallErrorCode;
use crate::policy::permission::{decide, Permission, Target};
use crate::runtime::outcome::ApprovalId;
use crate::services::audit::AuditOutcome;

/// How many calls may wait for approval at once; an `ask` beyond it is refused.
pub const MAX_PENDING_APPROVALS: usize = 1024;

/// What the approver is asked to decide: who calls which action or hook of which plugin, with
/// what input. Kept in the host's state while it waits, so it survives a restart.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApprovalRequest {
    /// The id a later decision names.
    pub id: ApprovalId,
    /// The plugin called.
    pub plugin: String,
    /// Its generation when asked.
    pub generation: u64,
    /// The action or hook's name.
    pub name: String,
    /// Whether it is a hook (`false`: an action).
    pub hook: bool,
    /// Who calls.
    pub caller: CallerInfo,
    /// The call's JSON input, as bytes.
    pub input: Vec<u8>,
}

/// The approver's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approval {
    /// Run the call now.
    Allow,
    /// Refuse it (`permission_denied`), for this reason.
    Deny(String),
    /// Decide later: the call answers `pending_approval` with the request's id, and
    /// [`Host::approve`](crate::Host::approve) or
    /// [`Host::refuse_approval`](crate::Host::refuse_approval) settles it. A hook cannot wait:
    /// a hook call the approver defers counts as that plugin failing (`pending_approval`),
    /// skipped by most modes, and blocking in a guard hook.
    Later,
}

/// The embedding program's approver.
pub(crate) type Approver = dyn Fn(&ApprovalRequest) -> Approval + Send + Sync;

/// The approver, and the last id given to a call waiting for it (the calls themselves are
/// kept in the pending store, [`crate::services::pending`]).
#[derive(Default)]
pub(crate) struct Approvals {
    pub(crate) approver: Option<Box<Approver>>,
    pub(crate) next: AtomicU64,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals")
            .field("approver", &self.approver.is_some())
            .finish()
    }
}

/// Why a call was not let through.
pub(crate) struct Refused {
    pub(crate) code: CallErrorCode,
    pub(crate) message: String,
    pub(crate) pending: Option<ApprovalId>,
}

impl HostShared {
    /// Checks the policy's permissions of `loaded` for `target`, called by this thread's
    /// current caller with `input`. Only reached for a plugin whose policy has rules.
    #[cold]
    pub(crate) fn permit(
        &self,
        loaded: &LoadedPlugin,
        target: Target<'_>,
        input: &[u8],
    ) -> Result<(), Refused> {
        // An approval given for this call answers its `ask`, and no other: taken whatever the
        // rule now says, so it can never reach a call this one makes.
        let approved = crate::frame::take_approval();
        let caller = crate::frame::caller::current();
        let id = loaded.id().as_str();
        let rules = &loaded.policy.permissions;
        let decided = decide(rules, target, &caller, input);
        // Named only in a refusal or a question, never on the allowed path.
        let rule = || {
            decided
                .rule
                .and_then(|n| rules.get(n))
                .map_or_else(String::new, |r| r.origin.to_string())
        };
        let generation = loaded.generation.load(Ordering::SeqCst);
        let audit = |outcome, detail: &str| {
            self.audit
                .record(id, generation, &target.to_string(), outcome, detail)
        };
        let deny = |why: String| {
            let message = format!("{target} of {id} is not permitted to {caller}: {why}");
            audit(AuditOutcome::PermissionDenied, &message);
            Err(Refused {
                code: CallErrorCode::PermissionDenied,
                message,
                pending: None,
            })
        };
        if let Some(why) = &decided.unreadable {
            return deny(format!("{why} (for {})", rule()));
        }
        match decided.permission {
            Permission::Allow => Ok(()),
            Permission::Deny => deny(format!("the policy denies it ({})", rule())),
            Permission::Ask if approved => Ok(()),
            Permission::Ask => {
                let Some(approver) = &self.approvals.approver else {
                    return deny(format!(
                        "the policy says ask ({}) and this host has no approver \
                         (HostBuilder::approver)",
                        rule()
                    ));
                };
                let (name, hook) = match target {
                    Target::Action(name) => (name, false),
                    Target::Hook(name) => (name, true),
                };
                let request = ApprovalRequest {
                    id: ApprovalId(self.approvals.next.fetch_add(1, Ordering::Relaxed) + 1),
                    plugin: id.to_owned(),
                    generation,
                    name: name.to_owned(),
                    hook,
                    caller: caller.clone(),
                    input: input.to_vec(),
                };
                let answer =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| approver(&request)));
                match answer {
                    Ok(Approval::Allow) => {
                        audit(
                            AuditOutcome::Approved,
                            &format!("approved at once ({})", rule()),
                        );
                        Ok(())
                    }
                    Ok(Approval::Deny(reason)) => deny(format!("the approver refused: {reason}")),
                    Err(_) => deny("the approver panicked".to_owned()),
                    Ok(Approval::Later) if hook => Err(Refused {
                        code: CallErrorCode::PendingApproval,
                        message: format!(
                            "{target} of {id} waits for approval, and a hook does not wait: \
                             the plugin fails in this dispatch"
                        ),
                        pending: None,
                    }),
                    Ok(Approval::Later) => self.defer(request, &rule(), audit),
                }
            }
        }
    }

    fn defer(
        &self,
        request: ApprovalRequest,
        rule: &str,
        audit: impl Fn(AuditOutcome, &str),
    ) -> Result<(), Refused> {
        let id = request.id;
        self.sweep_pending();
        let kept = serde_json::to_vec(&request)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                self.pending
                    .put_approval(id.0, &bytes, MAX_PENDING_APPROVALS)
                    .map_err(|e| e.to_string())
            });
        if let Err(message) = kept {
            audit(AuditOutcome::PermissionDenied, &message);
            return Err(Refused {
                code: CallErrorCode::PermissionDenied,
                message,
                pending: None,
            });
        }
        audit(
            AuditOutcome::ApprovalPending,
            &format!("approval {id} pending ({rule})"),
        );
        Err(Refused {
            code: CallErrorCode::PendingApproval,
            message: format!("the call waits for approval {id}"),
            pending: Some(id),
        })
    }
}
