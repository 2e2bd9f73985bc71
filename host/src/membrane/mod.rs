//! The capability membrane: the host vtable every plugin calls through, and the check of every
//! service request against the plugin's effective grants before any work is done. A miss is a
//! `CapabilityViolation` and exactly one audit record; a hit is served, inside `catch_unwind`.
//! The services are reached through [`HostServices`], never the runtime itself.
//!
//! Every request is a row of the one registry ([`crate::services::registry`]): the built-in
//! operations are rows defined here, one file per service, each beside its handler
//! ([`row`]); the embedding program's operations are rows it registers. The router looks the
//! request up and hands it to the row.

use std::borrow::Cow;

use abi_stable::std_types::RString;
use airlock_abi::abi::{ContextToken, Encoding, HostError, HostErrorCode};
use airlock_abi::manifest::{covers, CapabilityKind, PluginId};

use crate::membrane::context::ContextEntry;
use crate::services::audit::AuditOutcome;
use crate::services::registry::{Caller, Failure, Registered, Registry, Requester, Route};
use crate::services::RequestCounts;

mod cancelled;
pub(crate) mod context;
mod emit;
mod events;
mod fns;
mod http;
mod kv;
mod log;
mod own;
mod pending;
mod plugins;
mod registry;
mod row;
mod secrets;
mod timers;
mod vtable;

#[cfg(test)]
mod table_tests;

pub use plugins::MAX_CALL_DEPTH;
#[cfg(any(test, feature = "test-support"))]
pub use vtable::host_vtable;

use crate::services::HostServices;
pub(crate) use fns::refused_to_workers as functions_refused;
pub(crate) use vtable::host_context;

/// Registers every built-in operation, one row per request of the protocol.
pub(crate) fn register_built_ins(registry: &mut Registry) {
    let rows = [
        kv::rows(),
        events::rows(),
        timers::rows(),
        secrets::rows(),
        plugins::rows(),
        http::rows(),
        log::rows(),
        own::rows(),
        emit::rows(),
        registry::rows(),
        pending::rows(),
    ];
    for row in rows.into_iter().flatten() {
        registry.built_in(row);
    }
}

fn bad_request(message: impl Into<String>) -> HostError {
    host_error(HostErrorCode::BAD_REQUEST, "", &message.into())
}

/// The plugin behind a request, while the request is served: what a row's handler is given.
struct Requesting<'a> {
    token: ContextToken,
    entry: &'a ContextEntry,
    host: &'a dyn HostServices,
}

impl Requester for Requesting<'_> {
    fn token(&self) -> ContextToken {
        self.token
    }

    fn plugin(&self) -> &PluginId {
        &self.entry.plugin
    }

    fn generation(&self) -> u64 {
        self.entry.generation
    }

    fn host(&self) -> &dyn HostServices {
        self.host
    }

    fn require(&self, kind: CapabilityKind, scope: Option<&str>) -> Result<(), HostError> {
        let entry = self.entry;
        if scope.is_none() && entry.granted_unscoped(kind) {
            return Ok(());
        }
        if covers(&entry.grants.load(), kind, scope) {
            return Ok(());
        }
        let capability = match scope {
            Some(scope) => format!("{}:{scope}", kind.name()),
            None => kind.name().to_owned(),
        };
        entry
            .denials
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.host.audit().record(
            entry.plugin.as_str(),
            entry.generation,
            &capability,
            AuditOutcome::Denied,
            &format!("{} used {capability} without a grant", entry.plugin),
        );
        Err(host_error(
            HostErrorCode::CAPABILITY_VIOLATION,
            &capability,
            &format!(
                "capability {capability} was not granted to {}",
                entry.plugin
            ),
        ))
    }

    fn closing(&self) -> bool {
        self.entry.closing.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn observed(&self) -> bool {
        self.entry.observed
    }

    fn span(&self) -> &tracing::Span {
        &self.entry.span
    }

    fn take_handover(&self) -> Option<Vec<u8>> {
        self.entry.handover.lock().take()
    }

    fn kv_keys(&self) -> Result<Option<&crate::services::kv::SealKeys>, HostError> {
        self.entry
            .kv_keys
            .get_or_init(|| self.host.kv_keys(&self.entry.plugin))
            .as_ref()
            .map(Option::as_ref)
            .map_err(|m| host_error(HostErrorCode::INTERNAL, "", m))
    }
}

/// Serves a request for an operation of the embedding program's services
/// ([`crate::services::registry`]) through the frozen `request` slot: JSON both ways. An
/// operation's wire name (`name@version`) is split where the router found it.
fn operation_request(
    requester: &Requesting<'_>,
    service: &str,
    (name, version, registered): (&str, u32, &Registered),
    payload: &[u8],
) -> Result<Vec<u8>, HostError> {
    let mut out = Vec::new();
    let call = Offered {
        service,
        name,
        version,
        encoding: Encoding::JSON,
        shape: 0,
    };
    operation_into(requester, &call, registered, payload, &mut out)?;
    Ok(out)
}

/// One call of an operation the program offers, as named by the plugin.
struct Offered<'a> {
    service: &'a str,
    name: &'a str,
    version: u32,
    encoding: Encoding,
    /// The shape of a postcard input's value (0 for JSON).
    shape: u64,
}

/// Serves an operation of the program's services: the capability `service:<service>.<name>`
/// must be granted (one audit record per miss), and the request's contract version must be the
/// host's. The answer, in the request's encoding, is appended to `out`. The handler is lent the
/// context's own [`Caller`] when the plugin serves the host on behalf of no one (no
/// allocation), and a caller built for the call otherwise.
fn operation_into(
    requester: &Requesting<'_>,
    call: &Offered<'_>,
    registered: &Registered,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), HostError> {
    let Offered {
        service,
        name,
        version,
        encoding,
        shape,
    } = *call;
    let mut buffer = [0u8; 132];
    requester.require(
        CapabilityKind::Service,
        Some(&service_scope(&mut buffer, service, name)),
    )?;
    if version != registered.version {
        return Err(host_error(
            HostErrorCode::UNSUPPORTED,
            "",
            &format!(
                "{service}.{name}: the plugin was built against version {version} of the \
                 operation's contract, this host offers version {}; build the plugin against \
                 the host's interface crate",
                registered.version
            ),
        ));
    }
    let owned;
    let caller = if crate::frame::caller::is_host_alone() {
        &requester.entry.caller
    } else {
        owned = Caller {
            plugin: requester.entry.plugin.to_string(),
            generation: requester.entry.generation,
            on_behalf_of: crate::frame::caller::current(),
        };
        &owned
    };
    registered
        .call_into(caller, (encoding, shape), input, out)
        .map_err(|failure| match failure {
            Failure::BadInput(m) => bad_request(m),
            Failure::Service(m) => host_error(HostErrorCode::SERVICE_FAILED, "", &m),
            Failure::Internal(m) => host_error(HostErrorCode::INTERNAL, "", &m),
        })
}

/// `<service>.<name>`, the scope of an operation's capability, written into `buffer` (no
/// allocation; both names are at most 64 bytes, which the registry holds its names to).
fn service_scope<'b>(buffer: &'b mut [u8; 132], service: &str, name: &str) -> Cow<'b, str> {
    let (s, n) = (service.len(), name.len());
    if s + 1 + n > buffer.len() {
        return Cow::Owned(format!("{service}.{name}"));
    }
    buffer[..s].copy_from_slice(service.as_bytes());
    buffer[s] = b'.';
    buffer[s + 1..s + 1 + n].copy_from_slice(name.as_bytes());
    match std::str::from_utf8(&buffer[..s + 1 + n]) {
        Ok(scope) => Cow::Borrowed(scope),
        Err(_) => Cow::Owned(format!("{service}.{name}")),
    }
}

/// The host's services behind a context, or `Revoked` when the host has shut down.
fn services(entry: &ContextEntry) -> Result<&dyn HostServices, HostError> {
    entry
        .host
        .as_deref()
        .ok_or_else(|| host_error(HostErrorCode::REVOKED, "", "the host has shut down"))
}

/// Counts a key/value or stream request for the metrics, in the calling thread's own line.
fn count_request(entry: &ContextEntry, host: &dyn HostServices, index: usize) {
    entry
        .request_counts
        .get_or_init(|| host.tally().request_counts(entry.plugin.as_str()))
        .add(crate::sync::hazard::this_thread(), index);
}

/// Serves one request of the plugin behind `token`: the router. Every operation is a row of the
/// one registry, the built-in ones and the program's; a request for none of them is
/// `unsupported`. The context holds the host's services for as long as it is open, so reaching
/// them writes nothing another thread reads.
pub(crate) fn request(
    token: ContextToken,
    entry: &ContextEntry,
    service: &str,
    operation: &str,
    payload: &[u8],
) -> Result<Vec<u8>, HostError> {
    let host = services(entry)?;
    let requester = Requesting { token, entry, host };
    let route = host.registry().route(service, operation);
    // Counted for the metrics: key/value reads and writes, and stream chunks, each in the
    // calling thread's own line; other requests are not counted.
    if route.is_some() && matches!(service, "kv" | "stream") {
        if let Some(index) = RequestCounts::index(service, operation) {
            count_request(entry, host, index);
        }
    }
    match route {
        Some(Route::BuiltIn(row)) => row.serve(&requester, payload),
        Some(Route::Offered {
            name,
            version,
            registered,
        }) => operation_request(&requester, service, (name, version, registered), payload),
        None => Err(host_error(
            HostErrorCode::UNSUPPORTED,
            "",
            &format!("the host offers no operation {operation:?} on service {service:?}"),
        )),
    }
}

pub(crate) fn host_error(code: HostErrorCode, capability: &str, message: &str) -> HostError {
    HostError {
        code,
        capability: RString::from(capability),
        message: RString::from(message),
    }
}

/// After an insert: if teardown began meanwhile (it sets `closing`, then removes under the
/// insert's lock: its removal comes after the insert, or this sees it), undoes it and refuses.
fn undo_when_closing<R>(
    requester: &dyn Requester,
    undo: impl FnOnce() -> R,
) -> Result<(), HostError> {
    refuse_when_closing(requester).inspect_err(|_| drop(undo()))
}

fn refuse_when_closing(requester: &dyn Requester) -> Result<(), HostError> {
    if requester.closing() {
        return Err(host_error(
            HostErrorCode::REVOKED,
            "",
            "the plugin is being torn down: no new timers or subscriptions",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membrane::context::{is_open, open, revoke, DRAIN_DEADLINE};
    use abi_stable::std_types::RStr;
    use airlock_abi::abi::LogLevel;
    use airlock_abi::manifest::PluginId;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    fn entry(id: &str) -> ContextEntry {
        ContextEntry::new(
            PluginId::new(id).expect("id"),
            1,
            b"{\"a\":1}".to_vec(),
            Vec::new(),
            None,
            None,
        )
    }

    #[test]
    fn revoked_tokens_get_revoked_and_reused_slots_do_not_revive_them() {
        let vt = host_vtable();
        let token = open(entry("unit-a"));
        assert_eq!(
            (vt.config())(token).into_result().expect("open").as_slice(),
            b"{\"a\":1}"
        );
        assert!(revoke(token, DRAIN_DEADLINE));
        assert!(!revoke(token, DRAIN_DEADLINE), "second revoke is a no-op");
        let err = (vt.config())(token).into_result().expect_err("revoked");
        assert_eq!(err.code, HostErrorCode::REVOKED);
        // The slot is reused by the next context, under a new generation.
        let next = open(entry("unit-b"));
        let stale = (vt.log())(token, LogLevel::INFO, RStr::from_str("x")).into_result();
        assert_eq!(stale.expect_err("stale").code, HostErrorCode::REVOKED);
        assert!(is_open(next));
        assert!(revoke(next, DRAIN_DEADLINE));
    }

    #[test]
    fn unknown_slots_are_revoked_not_ub() {
        let token = ContextToken {
            slot: u32::MAX,
            generation: 7,
        };
        let err = (host_vtable().config())(token)
            .into_result()
            .expect_err("unknown");
        assert_eq!(err.code, HostErrorCode::REVOKED);
    }

    #[test]
    fn no_call_succeeds_after_revoke_returns() {
        let token = open(entry("unit-race"));
        let vt = host_vtable();
        let revoked = AtomicBool::new(false);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..20_000 {
                        let after = revoked.load(Ordering::SeqCst);
                        let result = (vt.config())(token).into_result();
                        if after {
                            assert_eq!(
                                result.expect_err("after revoke").code,
                                HostErrorCode::REVOKED
                            );
                        }
                    }
                });
            }
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(2));
                assert!(revoke(token, DRAIN_DEADLINE));
                revoked.store(true, Ordering::SeqCst);
            });
        });
        assert!(!is_open(token));
    }

    #[test]
    fn a_kind_granted_without_a_scope_is_checked_with_the_grants_it_was_stored_with() {
        use airlock_abi::manifest::{Capability, CapabilityKind};
        let grants = ["kv", "timers", "events.publish:x.*"]
            .into_iter()
            .map(|g| Capability::parse(g).expect("capability"))
            .collect();
        let token = open(ContextEntry::new(
            PluginId::new("unit-mask").expect("id"),
            1,
            Vec::new(),
            grants,
            None,
            None,
        ));
        let granted =
            |kind| crate::membrane::context::entry(token).is_some_and(|e| e.granted_unscoped(kind));
        assert!(granted(CapabilityKind::Kv));
        assert!(granted(CapabilityKind::Timers));
        // Scoped kinds are never taken from the mask: the list and the scope decide.
        assert!(!granted(CapabilityKind::EventsPublish));
        assert!(!granted(CapabilityKind::Secrets));
        let removed =
            crate::membrane::context::revoke_grants(token, |c| c.kind() == CapabilityKind::Kv);
        assert_eq!(removed.len(), 1);
        assert!(
            !granted(CapabilityKind::Kv),
            "revoked: the next check refuses"
        );
        assert!(granted(CapabilityKind::Timers), "the rest stays");
        assert!(revoke(token, DRAIN_DEADLINE));
    }
}
