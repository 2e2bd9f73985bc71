//! The `secrets` service's operation: reading a secret the operator provides, scoped by its
//! name. A credential (a secret the host attaches to outbound HTTP), a client certificate (one
//! it presents in outbound TLS) and a storage key (one the host seals kv values with) are never
//! readable.

use airlock_abi::abi::{HostError, HostErrorCode};
use airlock_abi::manifest::CapabilityKind;
use airlock_abi::wire::{self, Request};

use super::row::{row, Grant};
use super::{bad_request, host_error};
use crate::services::audit::AuditOutcome;
use crate::services::registry::{BuiltIn, Requester};

/// One row per operation.
pub(super) fn rows() -> Vec<Box<dyn BuiltIn>> {
    vec![row(
        Request::SecretsGet,
        Grant::Scoped {
            kind: CapabilityKind::Secrets,
            what: "secret name",
            scope: |req: &wire::Name| &req.name,
        },
        get,
    )]
}

/// `secrets get`: the secret's value.
fn get(r: &dyn Requester, req: wire::Name) -> Result<String, HostError> {
    let host = r.host();
    let unreadable = if host.credential(&req.name).is_some() {
        Some("a credential: usable in outbound HTTP requests")
    } else if host.client_certificate(&req.name).is_some() {
        Some("a client certificate: presented by the host in outbound TLS")
    } else {
        None
    };
    if let Some(what) = unreadable {
        let capability = format!("secrets:{}", req.name);
        let message = format!("secret {:?} is {what}, never readable", req.name);
        host.audit().record(
            r.plugin().as_str(),
            r.generation(),
            &capability,
            AuditOutcome::Denied,
            &message,
        );
        return Err(host_error(
            HostErrorCode::CAPABILITY_VIOLATION,
            &capability,
            &message,
        ));
    }
    if host.storage_key(&req.name) {
        let capability = format!("secrets:{}", req.name);
        let message = format!(
            "secret {:?} is a storage key: the host seals kv values with it, never readable",
            req.name
        );
        host.audit().record(
            r.plugin().as_str(),
            r.generation(),
            &capability,
            AuditOutcome::Denied,
            &message,
        );
        return Err(host_error(
            HostErrorCode::CAPABILITY_VIOLATION,
            &capability,
            &message,
        ));
    }
    host.secret(&req.name)
        .map_err(|why| bad_request(format!("secret {:?} is not available: {why}", req.name)))
}
