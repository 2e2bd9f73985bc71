//! The capability membrane: every service request from a plugin is checked against the
//! plugin's effective grants before any work is done. A miss is a `CapabilityViolation` and
//! exactly one audit record; a hit is served, inside the caller's `catch_unwind`.

use std::cell::Cell;
use std::time::Duration;

use airlock_abi::wire::{self, service};
use airlock_abi::{CapabilityKind, ContextToken, HostError, HostErrorCode};
use serde::de::DeserializeOwned;

use crate::audit::AuditOutcome;
use crate::context::{host_error, ContextEntry};
use crate::decide::covers;
use crate::error::CallErrorCode;
use crate::host::{HostShared, MAX_CALL_DEPTH};
use crate::kv::KvError;

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
    host: &HostShared,
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
    host.audit.record(
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

/// Serves one request of the plugin behind `token`.
pub(crate) fn request(
    token: ContextToken,
    entry: &ContextEntry,
    service_name: &str,
    operation: &str,
    payload: &[u8],
) -> Result<Vec<u8>, HostError> {
    let host = entry
        .host
        .upgrade()
        .ok_or_else(|| host_error(HostErrorCode::REVOKED, "", "the host has shut down"))?;
    let host = &*host;
    let unsupported = || {
        host_error(
            HostErrorCode::UNSUPPORTED,
            "",
            &format!("the host offers no operation {operation:?} on service {service_name:?}"),
        )
    };
    match (service_name, operation) {
        (service::KV, "get" | "set" | "delete" | "keys") => {
            require(entry, host, CapabilityKind::Kv, None)?;
            let kv = host.kv.as_ref().ok_or_else(|| {
                host_error(
                    HostErrorCode::UNSUPPORTED,
                    "",
                    "this host has no data directory, so no key/value store",
                )
            })?;
            let plugin = &entry.plugin;
            let kv_error = |e: KvError| match e {
                KvError::TooLarge(m) => bad_request(m),
                KvError::Storage(m) => host_error(HostErrorCode::INTERNAL, "", &m),
            };
            match operation {
                "get" => {
                    let req: wire::Key = body(payload)?;
                    match kv.get(plugin, &req.key).map_err(kv_error)? {
                        Some(bytes) => Ok(bytes),
                        None => Ok(b"null".to_vec()),
                    }
                }
                "set" => {
                    let req: wire::KeyValue = body(payload)?;
                    kv.set(plugin, &req.key, &json(&req.value)?)
                        .map_err(kv_error)?;
                    Ok(b"null".to_vec())
                }
                "delete" => {
                    let req: wire::Key = body(payload)?;
                    json(&kv.delete(plugin, &req.key).map_err(kv_error)?)
                }
                _ => {
                    let req: wire::Prefix = body(payload)?;
                    json(&kv.keys(plugin, &req.prefix).map_err(kv_error)?)
                }
            }
        }
        (service::EVENTS, "publish") => {
            let req: wire::Publish = body(payload)?;
            check_name("topic", &req.topic)?;
            require(entry, host, CapabilityKind::EventsPublish, Some(&req.topic))?;
            json(&host.events.publish(&req.topic, &req.payload))
        }
        (service::EVENTS, "subscribe" | "unsubscribe") => {
            let req: wire::Pattern = body(payload)?;
            check_name("pattern", &req.pattern)?;
            require(
                entry,
                host,
                CapabilityKind::EventsSubscribe,
                Some(&req.pattern),
            )?;
            if operation == "subscribe" {
                refuse_when_closing(entry)?;
                host.events.subscribe(token, &req.pattern);
                Ok(b"null".to_vec())
            } else {
                json(&host.events.unsubscribe(token, &req.pattern))
            }
        }
        (service::TIMERS, "every") => {
            let req: wire::Every = body(payload)?;
            check_name("job name", &req.name)?;
            require(entry, host, CapabilityKind::Timers, None)?;
            refuse_when_closing(entry)?;
            host.timers
                .every(
                    token,
                    &req.name,
                    Duration::from_millis(req.interval_ms.max(1)),
                )
                .map_err(bad_request)?;
            Ok(b"null".to_vec())
        }
        (service::TIMERS, "cancel") => {
            let req: wire::Name = body(payload)?;
            require(entry, host, CapabilityKind::Timers, None)?;
            json(&host.timers.cancel(token, &req.name))
        }
        (service::SECRETS, "get") => {
            let req: wire::Name = body(payload)?;
            check_name("secret name", &req.name)?;
            require(entry, host, CapabilityKind::Secrets, Some(&req.name))?;
            let value = host.options.policy.secret(&req.name).map_err(|why| {
                bad_request(format!("secret {:?} is not available: {why}", req.name))
            })?;
            json(&value)
        }
        (service::PLUGINS, "call") => {
            let req: wire::Call = body(payload)?;
            check_name("plugin id", &req.plugin)?;
            require(entry, host, CapabilityKind::PluginsCall, Some(&req.plugin))?;
            if req.plugin == entry.plugin.as_str() {
                return Err(bad_request("a plugin cannot call itself through the host"));
            }
            let input = json(&req.input)?;
            let Some(_depth) = CallDepth::enter() else {
                return Err(host_error(
                    HostErrorCode::CALL_FAILED,
                    CallErrorCode::TooDeep.code(),
                    &format!(
                        "plugin calls nest more than {MAX_CALL_DEPTH} deep on this thread (a call \
                         cycle?); {} -> {} was refused",
                        entry.plugin, req.plugin
                    ),
                ));
            };
            match host.call_bytes(&req.plugin, &req.action, &input) {
                Ok(Ok(bytes)) => {
                    let data: serde_json::Value =
                        airlock_abi::wire::parse(&bytes).unwrap_or(serde_json::Value::Null);
                    json(&serde_json::json!({"status": "ok", "data": data}))
                }
                Ok(Err(message)) => json(&serde_json::json!({"status": "error", "data": message})),
                Err(e) => Err(host_error(
                    HostErrorCode::CALL_FAILED,
                    e.code.code(),
                    &e.message,
                )),
            }
        }
        ("reload", "handover") => Ok(entry.handover.lock().take().unwrap_or_default()),
        _ => Err(unsupported()),
    }
}

thread_local! {
    /// How many plugin-to-plugin calls are in progress on this thread.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// One plugin-to-plugin call in progress on this thread, until dropped.
struct CallDepth;

impl CallDepth {
    /// `None` when [`MAX_CALL_DEPTH`] calls are already in progress on this thread.
    fn enter() -> Option<Self> {
        let depth = DEPTH.with(Cell::get);
        if depth >= MAX_CALL_DEPTH {
            return None;
        }
        DEPTH.with(|d| d.set(depth + 1));
        Some(Self)
    }
}

impl Drop for CallDepth {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
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
