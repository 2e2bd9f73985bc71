//! Per-action permissions on the call path: the policy's rules ([`crate::policy::permission`]) checked
//! for the thread's current caller before an action or hook runs, the embedding program's
//! approver for `ask`, and the calls waiting for its decision, which the host runs or refuses
//! when it comes ([`Host::approve`], [`Host::refuse_approval`]).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use airlock_abi::wire::CallerInfo;
use parking_lot::Mutex;

use super::called::{envelope, fail};
use super::plugin::LoadedPlugin;
use super::shared::HostShared;
use super::Host;
use crate::error::{CallError, CallErrorCode};
use crate::policy::permission::{decide, Permission, Target};
use crate::runtime::outcome::{ActionOutcome, ApprovalId};
use crate::services::audit::AuditOutcome;

/// How many calls may wait for approval at once; an `ask` beyond it is refused.
pub const MAX_PENDING_APPROVALS: usize = 1024;

/// What the approver is asked to decide: who calls which action or hook of which plugin, with
/// what input.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// [`Host::approve`] or [`Host::refuse_approval`] settles it. A hook cannot wait: a hook call the
    /// approver defers leaves that plugin out of the dispatch (`pending_approval`).
    Later,
}

/// The embedding program's approver.
pub(crate) type Approver = dyn Fn(&ApprovalRequest) -> Approval + Send + Sync;

/// The approver and the calls waiting for it.
#[derive(Default)]
pub(crate) struct Approvals {
    pub(crate) approver: Option<Box<Approver>>,
    next: AtomicU64,
    pending: Mutex<BTreeMap<ApprovalId, ApprovalRequest>>,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals")
            .field("approver", &self.approver.is_some())
            .field("pending", &self.pending.lock().len())
            .finish()
    }
}

/// Why a call was not let through.
pub(super) struct Refused {
    pub(super) code: CallErrorCode,
    pub(super) message: String,
    pub(super) pending: Option<ApprovalId>,
}

thread_local! {
    /// Set while [`Host::approve`] runs the call it approved: the `ask` it meets is answered.
    static APPROVED: Cell<bool> = const { Cell::new(false) };
}

impl HostShared {
    /// Checks the policy's permissions of `loaded` for `target`, called by this thread's
    /// current caller with `input`. Only reached for a plugin whose policy has rules.
    #[cold]
    pub(super) fn permit(
        &self,
        loaded: &LoadedPlugin,
        target: Target<'_>,
        input: &[u8],
    ) -> Result<(), Refused> {
        // An approval given for this call answers its `ask`, and no other: taken whatever the
        // rule now says, so it can never reach a call this one makes.
        let approved = APPROVED.replace(false);
        let caller = crate::call::caller::current();
        let id = loaded.id().as_str();
        let (permission, rule) = decide(&loaded.policy.permissions, target, &caller);
        // Named only in a refusal or a question, never on the allowed path.
        let rule = || rule.map_or_else(String::new, |n| format!("[plugins.{id}] permissions[{n}]"));
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
        match permission {
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
                             the plugin is left out of this dispatch"
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
        let mut pending = self.approvals.pending.lock();
        if pending.len() >= MAX_PENDING_APPROVALS {
            drop(pending);
            let message = format!(
                "{MAX_PENDING_APPROVALS} calls already wait for approval; this one was refused"
            );
            audit(AuditOutcome::PermissionDenied, &message);
            return Err(Refused {
                code: CallErrorCode::PermissionDenied,
                message,
                pending: None,
            });
        }
        pending.insert(id, request);
        drop(pending);
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

impl Host {
    /// The calls waiting for approval, oldest first.
    pub fn pending_approvals(&self) -> Vec<ApprovalRequest> {
        let pending = self.shared.approvals.pending.lock();
        pending.values().cloned().collect()
    }

    /// Approves the call waiting as `id` and runs it now, for the caller it was made by, on the
    /// plugin's current generation; its answer is the call's.
    ///
    /// # Errors
    ///
    /// `not_found` if no call waits as `id` (already settled, or never asked); otherwise as
    /// [`Host::call`] (the permissions are checked again, so a rule changed to `deny` since
    /// holds).
    pub fn approve(&self, id: ApprovalId) -> Result<ActionOutcome, CallError> {
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
        APPROVED.set(true);
        let mut out = Vec::new();
        let called =
            self.shared
                .call_into(&request.plugin, &request.name, &request.input, &mut out);
        APPROVED.set(false);
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
    ) -> Option<(ApprovalRequest, crate::call::caller::Calling)> {
        let request = self.shared.approvals.pending.lock().remove(&id)?;
        let calling = crate::call::caller::push(request.caller.clone());
        let target = Target::Action(&request.name).to_string();
        let audit = &self.shared.audit;
        audit.record(
            &request.plugin,
            request.generation,
            &target,
            outcome,
            detail,
        );
        Some((request, calling))
    }
}
