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

/// `secrets get`: the secret's value. One that is never readable is refused and audited.
fn get(r: &dyn Requester, req: wire::Name) -> Result<String, HostError> {
    let host = r.host();
    let why = match host.readable_secret(&req.name) {
        Ok(value) => return Ok(value),
        Err(why) => why,
    };
    let message = format!("secret {:?} {why}", req.name);
    if !why.never_readable() {
        return Err(bad_request(message));
    }
    let capability = format!("secrets:{}", req.name);
    host.audit().record(
        r.plugin().as_str(),
        r.generation(),
        &capability,
        AuditOutcome::Denied,
        &message,
    );
    Err(host_error(
        HostErrorCode::CAPABILITY_VIOLATION,
        &capability,
        &message,
    ))
}
