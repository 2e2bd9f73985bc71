//! Exclusive claims: a plugin claims a kind of request in its manifest (one handler per kind,
//! checked at load: `claim_conflict`), and [`Host::dispatch`] reaches the holder's action,
//! retrying what it answers as retryable with the bounded, jittered backoff its policy sets
//! ([`super::call`]).

use super::Host;
use crate::error::{CallError, CallErrorCode};
use crate::policy::retry::RetryPolicy;
use crate::runtime::called::fail;
use crate::runtime::HostShared;

/// The plugin that claims `kind`, the action that handles it, and its retry policy.
pub(super) fn holder(shared: &HostShared, kind: &str) -> Option<(String, String, RetryPolicy)> {
    shared.table().iter().find_map(|p| {
        let claim = p.file.manifest.claims.iter().find(|c| c.kind == kind)?;
        Some((p.id().to_string(), claim.action.clone(), p.policy.retry))
    })
}

/// [`holder`], or `not_found` when no loaded plugin claims `kind`.
pub(super) fn claimed(
    shared: &HostShared,
    kind: &str,
) -> Result<(String, String, RetryPolicy), CallError> {
    holder(shared, kind).ok_or_else(|| {
        fail(
            "",
            kind,
            CallErrorCode::NotFound,
            format!("no loaded plugin claims {kind:?}"),
        )
    })
}

impl Host {
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
