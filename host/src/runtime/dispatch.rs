//! Exclusive claims: a plugin claims a kind of request in its manifest (one handler per kind,
//! checked at load: `claim_conflict`), and [`Host::dispatch`] reaches the holder's action,
//! retrying what it answers as retryable with the bounded, jittered backoff its policy sets.

use std::hash::{BuildHasher, Hasher};

use serde::Serialize;

use super::called::{envelope, fail, Called};
use super::on_behalf::OnBehalf;
use super::Host;
use crate::error::{CallError, CallErrorCode};
use crate::policy::retry::{backoff, unit};
use crate::runtime::outcome::ActionOutcome;

/// How a dispatched request ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dispatched {
    /// The plugin holding the claim.
    pub holder: String,
    /// Its action that handles the kind.
    pub action: String,
    /// How many times it was called: 1, plus one per retry.
    pub attempts: u32,
    /// The last attempt's envelope (an `error` after the retries ran out).
    pub outcome: ActionOutcome,
}

impl OnBehalf<'_> {
    /// [`Host::dispatch`], with the principal as the caller.
    ///
    /// # Errors
    ///
    /// As [`Host::dispatch`].
    pub fn dispatch(&self, kind: &str, input: &serde_json::Value) -> Result<Dispatched, CallError> {
        let shared = &self.host.shared;
        let (holder, action, retry) = shared
            .table()
            .iter()
            .find_map(|p| {
                let claim = p.file.manifest.claims.iter().find(|c| c.kind == kind)?;
                Some((p.id().to_string(), claim.action.clone(), p.policy.retry))
            })
            .ok_or_else(|| {
                fail(
                    "",
                    kind,
                    CallErrorCode::NotFound,
                    format!("no loaded plugin claims {kind:?}"),
                )
            })?;
        let input = serde_json::to_vec(input)
            .map_err(|e| fail(&holder, &action, CallErrorCode::BadInput, e.to_string()))?;
        let seed = std::collections::hash_map::RandomState::new();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut out = Vec::new();
            let called = {
                let _calling = self.calling();
                shared.call_into(&holder, &action, &input, &mut out)?
            };
            if called == Called::Retryable && attempts <= retry.retries {
                let mut hasher = seed.build_hasher();
                hasher.write_u32(attempts);
                std::thread::sleep(backoff(&retry, attempts - 1, unit(hasher.finish())));
                continue;
            }
            let outcome = envelope(&holder, &action, called, out)?;
            return Ok(Dispatched {
                holder,
                action,
                attempts,
                outcome,
            });
        }
    }
}

impl Host {
    /// Sends a request of `kind` to the plugin that claims it (`"claims"` in its manifest) and
    /// returns how it ended. An answer the handler marks retryable (`ActionError::retryable`)
    /// is retried up to the holder's `dispatch_retries` times, the n-th retry after a delay
    /// between half and all of `min(dispatch_backoff_ms × 2ⁿ, dispatch_backoff_max_ms)`; the
    /// call goes through the holder's permissions like any other.
    ///
    /// # Errors
    ///
    /// `not_found` if no loaded plugin claims `kind`; otherwise as [`Host::call`] (failures
    /// other than a retryable answer are not retried).
    pub fn dispatch(&self, kind: &str, input: &serde_json::Value) -> Result<Dispatched, CallError> {
        OnBehalf::new(self, None).dispatch(kind, input)
    }

    /// Which plugin holds each claimed kind of request, by kind.
    pub fn claims(&self) -> Vec<(String, String)> {
        let mut claims: Vec<_> = self
            .shared
            .table()
            .iter()
            .flat_map(|p| {
                let id = p.id().to_string();
                p.file
                    .manifest
                    .claims
                    .iter()
                    .map(move |c| (c.kind.clone(), id.clone()))
            })
            .collect();
        claims.sort();
        claims
    }
}
