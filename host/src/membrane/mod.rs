//! The capability membrane: the host vtable every plugin calls through, and the check of every
//! service request against the plugin's effective grants before any work is done. A miss is a
//! `CapabilityViolation` and exactly one audit record; a hit is served, inside `catch_unwind`.
//! The services are reached through [`HostServices`], never the runtime itself.

use std::sync::Weak;
use std::time::Duration;

use abi_stable::std_types::RString;
use airlock_abi::abi::{ContextToken, HostError, HostErrorCode};
use airlock_abi::manifest::{covers, CapabilityKind};
use airlock_abi::wire::{self, CallerInfo, Request};
use serde::de::DeserializeOwned;

use crate::error::CallErrorCode;
use crate::frame::{Frame, Stream};
use crate::membrane::context::ContextEntry;
use crate::services::audit::AuditOutcome;
use crate::services::registry::{Caller, Failure, Registered, Route};

mod cancelled;
pub(crate) mod context;
mod emit;
mod http;
mod kv;
mod log;
mod vtable;

#[cfg(any(test, feature = "test-support"))]
pub use vtable::host_vtable;

use crate::services::timers::{parse_cron, Schedule};
use crate::services::{HostServices, Observed};
pub(crate) use vtable::host_context;

fn bad_request(message: impl Into<String>) -> HostError {
    host_error(HostErrorCode::BAD_REQUEST, "", &message.into())
}

fn body<T: DeserializeOwned>(payload: &[u8]) -> Result<T, HostError> {
    serde_json::from_slice(payload).map_err(|e| bad_request(format!("malformed request: {e}")))
}

fn json(value: &impl serde::Serialize) -> Result<Vec<u8>, HostError> {
    serde_json::to_vec(value).map_err(|e| host_error(HostErrorCode::INTERNAL, "", &e.to_string()))
}

/// Checks that `entry` may use `kind` (with `scope`), writing one audit record if not.
fn require(
    entry: &ContextEntry,
    host: &dyn HostServices,
    kind: CapabilityKind,
    scope: Option<&str>,
) -> Result<(), HostError> {
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
    host.audit().record(
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

/// Serves a request for an operation of the embedding program's services
/// ([`crate::services::registry`]): the capability `service:<service>.<operation>` must be granted (one
/// audit record per miss), and the request's contract version must be the host's.
fn operation_request(
    entry: &ContextEntry,
    host: &dyn HostServices,
    service: &str,
    (name, version, registered): (&str, u32, &Registered),
    payload: &[u8],
) -> Result<Vec<u8>, HostError> {
    let unsupported = |message: String| host_error(HostErrorCode::UNSUPPORTED, "", &message);
    require(
        entry,
        host,
        CapabilityKind::Service,
        Some(&format!("{service}.{name}")),
    )?;
    if version != registered.version {
        return Err(unsupported(format!(
            "{service}.{name}: the plugin was built against version {version} of the operation's \
             contract, this host offers version {}; build the plugin against the host's \
             interface crate",
            registered.version
        )));
    }
    let caller = Caller {
        plugin: entry.plugin.to_string(),
        generation: entry.generation,
        on_behalf_of: crate::frame::caller::current(),
    };
    registered
        .call(&caller, payload)
        .map_err(|failure| match failure {
            Failure::BadInput(m) => bad_request(m),
            Failure::Service(m) => host_error(HostErrorCode::SERVICE_FAILED, "", &m),
            Failure::Internal(m) => host_error(HostErrorCode::INTERNAL, "", &m),
        })
}

/// Serves one request of the plugin behind `token`: the router. Every service is in the one
/// registry, the built-in ones first; a request for none of them is `unsupported`.
pub(crate) fn request(
    token: ContextToken,
    entry: &ContextEntry,
    service_name: &str,
    operation: &str,
    payload: &[u8],
) -> Result<Vec<u8>, HostError> {
    let host = entry
        .host
        .as_ref()
        .and_then(Weak::upgrade)
        .ok_or_else(|| host_error(HostErrorCode::REVOKED, "", "the host has shut down"))?;
    let host = &*host;
    match host.registry().route(service_name, operation) {
        Some(Route::BuiltIn(request)) => built_in(token, entry, host, request, payload),
        Some(Route::Offered {
            name,
            version,
            registered,
        }) => operation_request(
            entry,
            host,
            service_name,
            (name, version, registered),
            payload,
        ),
        None => Err(host_error(
            HostErrorCode::UNSUPPORTED,
            "",
            &format!("the host offers no operation {operation:?} on service {service_name:?}"),
        )),
    }
}

/// Serves a request for one of the host's built-in services.
fn built_in(
    token: ContextToken,
    entry: &ContextEntry,
    host: &dyn HostServices,
    request: Request,
    payload: &[u8],
) -> Result<Vec<u8>, HostError> {
    match request {
        Request::KvGet
        | Request::KvSet
        | Request::KvDelete
        | Request::KvKeys
        | Request::KvEntry
        | Request::KvList
        | Request::KvCompareAndSet
        | Request::KvWrite => {
            require(entry, host, CapabilityKind::Kv, None)?;
            let kv = host.kv().ok_or_else(|| {
                host_error(
                    HostErrorCode::UNSUPPORTED,
                    "",
                    "this host has no data directory, so no key/value store",
                )
            })?;
            kv::serve(kv, &entry.plugin, request, payload)
        }
        Request::EventsPublish => {
            let req: wire::Publish = body(payload)?;
            check_name("topic", &req.topic)?;
            require(entry, host, CapabilityKind::EventsPublish, Some(&req.topic))?;
            if entry.observed {
                host.observe(
                    &entry.plugin,
                    Observed::Published {
                        topic: req.topic.clone(),
                        payload: req.payload.clone(),
                    },
                );
            }
            json(&host.events().publish(&req.topic, &req.payload))
        }
        Request::EventsSubscribe | Request::EventsUnsubscribe => {
            let req: wire::Pattern = body(payload)?;
            check_name("pattern", &req.pattern)?;
            require(
                entry,
                host,
                CapabilityKind::EventsSubscribe,
                Some(&req.pattern),
            )?;
            if request == Request::EventsSubscribe {
                refuse_when_closing(entry)?;
                crate::failpoint::hit(crate::failpoint::SUBSCRIBE_CHECKED);
                host.events().subscribe(token, &req.pattern);
                undo_when_closing(entry, || host.events().unsubscribe(token, &req.pattern))?;
                Ok(b"null".to_vec())
            } else {
                json(&host.events().unsubscribe(token, &req.pattern))
            }
        }
        Request::TimersEvery => {
            let req: wire::Every = body(payload)?;
            check_name("job name", &req.name)?;
            require(entry, host, CapabilityKind::Timers, None)?;
            refuse_when_closing(entry)?;
            let every = Schedule::Every(Duration::from_millis(req.interval_ms.max(1)));
            host.timers()
                .schedule(token, &req.name, every)
                .map_err(bad_request)?;
            undo_when_closing(entry, || host.timers().cancel(token, &req.name))?;
            Ok(b"null".to_vec())
        }
        Request::TimersCron => {
            let req: wire::CronJob = body(payload)?;
            check_name("job name", &req.name)?;
            require(entry, host, CapabilityKind::Timers, None)?;
            refuse_when_closing(entry)?;
            let cron = parse_cron(&req.expression).map_err(bad_request)?;
            host.timers()
                .schedule(token, &req.name, Schedule::Cron(Box::new(cron)))
                .map_err(bad_request)?;
            undo_when_closing(entry, || host.timers().cancel(token, &req.name))?;
            Ok(b"null".to_vec())
        }
        Request::TimersCancel => {
            let req: wire::Name = body(payload)?;
            require(entry, host, CapabilityKind::Timers, None)?;
            json(&host.timers().cancel(token, &req.name))
        }
        Request::SecretsGet => {
            let req: wire::Name = body(payload)?;
            check_name("secret name", &req.name)?;
            require(entry, host, CapabilityKind::Secrets, Some(&req.name))?;
            if host.credential(&req.name).is_some() {
                let capability = format!("secrets:{}", req.name);
                let message = format!(
                    "secret {:?} is a credential: usable in outbound HTTP requests, never \
                     readable",
                    req.name
                );
                host.audit().record(
                    entry.plugin.as_str(),
                    entry.generation,
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
            let value = host.secret(&req.name).map_err(|why| {
                bad_request(format!("secret {:?} is not available: {why}", req.name))
            })?;
            json(&value)
        }
        Request::PluginsCall => {
            let req: wire::Call = body(payload)?;
            check_name("plugin id", &req.plugin)?;
            require(entry, host, CapabilityKind::PluginsCall, Some(&req.plugin))?;
            if req.plugin == entry.plugin.as_str() {
                return Err(bad_request("a plugin cannot call itself through the host"));
            }
            let input = json(&req.input)?;
            if crate::frame::plugin_calls() >= MAX_CALL_DEPTH {
                return Err(host_error(
                    HostErrorCode::call_failed(CallErrorCode::TooDeep),
                    "",
                    &format!(
                        "plugin calls nest more than {MAX_CALL_DEPTH} deep on this thread (a call \
                         cycle?); {} -> {} was refused",
                        entry.plugin, req.plugin
                    ),
                ));
            }
            // The called plugin's caller is this one; it emits into no stream of this call.
            let _frame = crate::frame::enter(Frame {
                caller: Some(CallerInfo::Plugin {
                    id: entry.plugin.to_string(),
                    generation: entry.generation,
                }),
                stream: Stream::Hidden,
                plugin_call: true,
                ..Frame::default()
            });
            match host.call_plugin(&req.plugin, &req.action, &input) {
                Ok(Ok(bytes)) => {
                    let data: serde_json::Value =
                        airlock_abi::wire::parse(&bytes).unwrap_or(serde_json::Value::Null);
                    json(&serde_json::json!({"status": "ok", "data": data}))
                }
                Ok(Err(message)) => json(&serde_json::json!({"status": "error", "data": message})),
                Err(e) => Err(host_error(
                    HostErrorCode::call_failed(e.code),
                    "",
                    &e.message,
                )),
            }
        }
        Request::HttpRequest => http::serve(entry, host, payload),
        Request::LogWrite => {
            let line = log::parse(payload)?;
            if entry.observed {
                let fields: Vec<String> = line
                    .fields
                    .iter()
                    .map(|(n, v)| format!(" {n}={v}"))
                    .collect();
                host.observe(
                    &entry.plugin,
                    Observed::Log {
                        level: airlock_abi::abi::LogLevel(line.level),
                        message: format!("{}{}", line.message, fields.concat()),
                    },
                );
            }
            let _span = entry.span.enter();
            log::emit(&line);
            Ok(b"null".to_vec())
        }
        Request::Handover => Ok(entry.handover.lock().take().unwrap_or_default()),
        Request::ContextCaller => json(&crate::frame::caller::current()),
        Request::ContextCancelled => {
            // The caller's token (or an outer call's), the plugin being torn down, or the
            // call reported past its timeout by the watchdog.
            json(&cancelled::cancelled(entry))
        }
        Request::StreamEmit => emit::serve(entry, payload),
        // A request this host does not serve yet (the enum grows with the protocol).
        _ => Err(host_error(
            HostErrorCode::UNSUPPORTED,
            "",
            &format!(
                "the host offers no operation {:?} on service {:?}",
                request.operation(),
                request.service()
            ),
        )),
    }
}

/// How deeply plugin-to-plugin calls may nest on one thread. Deeper calls are refused with
/// `too_deep`: a cycle through parallel plugins would otherwise recurse until the stack
/// overflows and the host dies.
pub const MAX_CALL_DEPTH: u32 = 8;

pub(crate) fn host_error(code: HostErrorCode, capability: &str, message: &str) -> HostError {
    HostError {
        code,
        capability: RString::from(capability),
        message: RString::from(message),
    }
}

/// After an insert: if teardown began meanwhile (it sets `closing`, then removes under the
/// insert's lock: its removal comes after the insert, or this sees it), undoes it and refuses.
fn undo_when_closing<R>(entry: &ContextEntry, undo: impl FnOnce() -> R) -> Result<(), HostError> {
    refuse_when_closing(entry).inspect_err(|_| drop(undo()))
}

fn refuse_when_closing(entry: &ContextEntry) -> Result<(), HostError> {
    if entry.closing.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(host_error(
            HostErrorCode::REVOKED,
            "",
            "the plugin is being torn down: no new timers or subscriptions",
        ));
    }
    Ok(())
}

fn check_name(what: &str, name: &str) -> Result<(), HostError> {
    if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
        return Err(bad_request(format!(
            "the {what} must be 1 to 256 printable characters"
        )));
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
}
