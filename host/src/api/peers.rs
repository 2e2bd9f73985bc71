//! The host as a whole, as plugins reach it ([`Peers`]): the plugin list, a dispatch to the
//! holder of a claimed kind with its policy's retries (as [`Host::dispatch`] makes it), a hook
//! point's run in the mode the program defined it with (as [`Host::hooks`] runs it, the asking
//! plugin left out), and a request that the program shut down ([`super::control`]).
//!
//! Each runs on the thread of the plugin's request, inside the frame the membrane pushed for
//! it: the plugins called see the asking plugin as their caller.

use std::sync::{Arc, Weak};

use airlock_abi::wire::{
    Dispatched, Envelope, HookBlocked, HookRunFailure, HookRunOutcome, HookSwallowed, PeerAction,
    PeerClaim, PeerHook, PeerInfo,
};
use serde_json::Value;

use super::control::{ShutdownRequest, Shutdowns};
use super::hooks::{Defined, GuardVerdict, HookDispatch, HookError, HookFailure, HookMode};
use super::Host;
use crate::error::{CallError, CallErrorCode};
use crate::runtime::called::{fail, reply_bytes};
use crate::runtime::outcome::Reply;
use crate::runtime::{HostShared, LoadedPlugin};
use crate::services::audit::AuditOutcome;
use crate::services::peers::{Asker, HookRunError, Peers};

/// What the membrane reaches the host as a whole through; the runtime holds it.
pub(super) struct HostPeers {
    shared: Weak<HostShared>,
    hooks: Arc<Defined>,
    shutdowns: Arc<Shutdowns>,
}

impl HostPeers {
    /// Hands `host`'s runtime what its plugins reach it through.
    pub(super) fn install(host: &Host) {
        let peers = Self {
            shared: Arc::downgrade(&host.shared),
            hooks: Arc::clone(&host.hooks),
            shutdowns: Arc::clone(&host.shutdowns),
        };
        // Set once, when the host is built.
        let _ = host.shared.peers.set(Box::new(peers));
    }
}

/// A plugin as `plugins list` shows it.
fn peer(p: &LoadedPlugin) -> PeerInfo {
    let m = &p.file.manifest;
    PeerInfo {
        id: m.id.to_string(),
        version: m.version.to_string(),
        description: m.description.clone(),
        generation: p.generation.load(std::sync::atomic::Ordering::SeqCst),
        state: p.state.get().to_string(),
        actions: m
            .actions
            .iter()
            .map(|a| PeerAction {
                name: a.name.clone(),
                description: a.description.clone(),
                title: a.title.clone(),
                input_schema: a.input_schema.clone(),
                output_schema: a.output_schema.clone(),
                read_only: a.read_only,
                destructive: a.destructive,
                idempotent: a.idempotent,
            })
            .collect(),
        claims: m
            .claims
            .iter()
            .map(|c| PeerClaim {
                kind: c.kind.clone(),
                action: c.action.clone(),
            })
            .collect(),
        hooks: m
            .hooks
            .iter()
            .map(|h| PeerHook {
                name: h.name.clone(),
                description: h.description.clone(),
            })
            .collect(),
    }
}

/// The host is going away: nothing to reach.
fn gone(kind: &str) -> CallError {
    fail(
        "",
        kind,
        CallErrorCode::Revoked,
        "the host is shutting down".to_owned(),
    )
}

impl Peers for HostPeers {
    fn list(&self) -> Vec<PeerInfo> {
        self.shared
            .upgrade()
            .map(|shared| shared.table().iter().map(|p| peer(p)).collect())
            .unwrap_or_default()
    }

    fn holder(&self, kind: &str) -> Option<String> {
        let shared = self.shared.upgrade()?;
        super::dispatch::holder(&shared, kind).map(|(id, _, _)| id)
    }

    fn dispatch(&self, _: Asker<'_>, kind: &str, input: &[u8]) -> Result<Dispatched, CallError> {
        let shared = self.shared.upgrade().ok_or_else(|| gone(kind))?;
        let (holder, action, retry) = super::dispatch::claimed(&shared, kind)?;
        let mut out = Vec::new();
        let (attempts, called) = shared.call_retried(&holder, &action, input, &retry, &mut out)?;
        let reply = reply_bytes(&holder, &action, called, out)?;
        let reply = match reply {
            Reply::Ok(bytes) => Envelope::Ok(airlock_abi::wire::parse(&bytes).map_err(|e| {
                fail(
                    &holder,
                    &action,
                    CallErrorCode::HandlerError,
                    format!("its answer is not JSON: {e}"),
                )
            })?),
            Reply::Error(message) => Envelope::Error(message),
            Reply::PendingApproval(id) => {
                return Err(fail(
                    &holder,
                    &action,
                    CallErrorCode::PendingApproval,
                    format!("the call waits for the approver's decision ({id})"),
                ))
            }
            Reply::Pending { id, description } => {
                return Err(fail(
                    &holder,
                    &action,
                    CallErrorCode::Pending,
                    crate::runtime::called::pending_message(&id, &description),
                ))
            }
        };
        Ok(Dispatched {
            holder,
            action,
            attempts,
            reply,
        })
    }

    fn run_hook(
        &self,
        asker: Asker<'_>,
        hook: &str,
        input: Value,
    ) -> Result<HookRunOutcome, HookRunError> {
        let shared = self
            .shared
            .upgrade()
            .ok_or_else(|| HookRunError::Undefined("the host is shutting down".to_owned()))?;
        let dispatch = HookDispatch::over(&shared, &self.hooks).skipping(asker.id.as_str());
        let mode = dispatch.mode(hook).ok_or_else(|| {
            HookRunError::Undefined(format!("the host program defines no hook {hook:?}"))
        })?;
        run_in_mode(&dispatch, mode, hook, input).map_err(|e| match e {
            HookError::Undefined(_) | HookError::WrongMode { .. } => {
                HookRunError::Undefined(e.to_string())
            }
            _ => HookRunError::BadInput(e.to_string()),
        })
    }

    fn request_shutdown(&self, asker: Asker<'_>, reason: &str) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        shared.audit.record(
            asker.id.as_str(),
            asker.generation,
            "host.control",
            AuditOutcome::ShutdownRequested,
            reason,
        );
        self.shutdowns.deliver(ShutdownRequest {
            plugin: asker.id.to_string(),
            generation: asker.generation,
            reason: reason.to_owned(),
        });
    }
}

fn failures(failures: Vec<HookFailure>) -> Vec<HookRunFailure> {
    failures
        .into_iter()
        .map(|f| HookRunFailure {
            plugin: f.plugin,
            code: f.code.to_string(),
            reason: f.reason,
        })
        .collect()
}

/// Runs `hook` as `mode` says, with the dispatch the host program's calls use.
fn run_in_mode(
    dispatch: &HookDispatch<'_>,
    mode: HookMode,
    hook: &str,
    input: Value,
) -> Result<HookRunOutcome, HookError> {
    Ok(match mode {
        HookMode::Chain => {
            let out = dispatch.chain(hook, input)?;
            HookRunOutcome::Chain {
                value: out.value,
                failures: failures(out.failures),
            }
        }
        HookMode::Intercept => {
            let out = dispatch.intercept(hook, input)?;
            HookRunOutcome::Intercept {
                value: out.value,
                swallowed: out.swallowed.map(|s| HookSwallowed {
                    plugin: s.plugin,
                    reply: s.reply,
                }),
                failures: failures(out.failures),
            }
        }
        HookMode::Guard => {
            let out = dispatch.guard(hook, &input)?;
            HookRunOutcome::Guard {
                blocked: match out.verdict {
                    GuardVerdict::Allowed => None,
                    GuardVerdict::Blocked { plugin, reason } => {
                        Some(HookBlocked { plugin, reason })
                    }
                },
                failures: failures(out.failures),
            }
        }
        HookMode::Filter => {
            let Value::Array(items) = input else {
                return Err(HookError::Encode(format!(
                    "hook {hook:?} is a filter hook: its input must be a list of items"
                )));
            };
            let out = dispatch.filter(hook, items)?;
            HookRunOutcome::Filter {
                items: out.items,
                failures: failures(out.failures),
            }
        }
        HookMode::Collect => {
            let out = dispatch.collect::<Value, Value>(hook, &input)?;
            HookRunOutcome::Collect {
                results: out.results,
                failures: failures(out.failures),
            }
        }
    })
}
