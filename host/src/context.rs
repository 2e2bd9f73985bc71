//! The revocable context: a process-wide table of plugin contexts addressed by token
//! (slot + generation), and the host vtable whose functions every plugin calls through.
//!
//! The table lives in the host binary, which is never unloaded, so a plugin can never hold a
//! pointer that dangles: it holds a token, and a stale token is answered with `Revoked`.
//! Looking a token up is a lock-free `ArcSwap` load (no shared cache line is written per call);
//! revoking is one atomic store, safe to race with calls.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use abi_stable::prefix_type::WithMetadata;
use abi_stable::std_types::{RResult, RSlice, RStr, RString, RVec};
use airlock_abi::{
    Capability, ContextToken, HostContext, HostError, HostErrorCode, HostVtable, HostVtableRef,
    LogLevel, PluginId,
};
use arc_swap::ArcSwapOption;
use parking_lot::Mutex;

const CHUNK: usize = 256;
const MAX_CHUNKS: usize = 4096;

/// What the host knows about one open context.
#[derive(Debug)]
#[expect(
    dead_code,
    reason = "generation and grants are read by the capability services"
)]
pub(crate) struct ContextEntry {
    pub plugin: PluginId,
    pub generation: u64,
    pub config: Vec<u8>,
    pub grants: Vec<Capability>,
    pub span: tracing::Span,
    token_generation: u32,
}

impl ContextEntry {
    pub(crate) fn new(
        plugin: PluginId,
        generation: u64,
        config: Vec<u8>,
        grants: Vec<Capability>,
    ) -> Self {
        let span = tracing::info_span!("plugin", id = %plugin, generation);
        Self {
            plugin,
            generation,
            config,
            grants,
            span,
            token_generation: 0,
        }
    }
}

struct Slot {
    generation: AtomicU32,
    entry: ArcSwapOption<ContextEntry>,
}

struct ContextTable {
    chunks: [OnceLock<Box<[Slot]>>; MAX_CHUNKS],
    free: Mutex<Vec<u32>>,
    next: AtomicU32,
}

static TABLE: ContextTable = ContextTable {
    chunks: [const { OnceLock::new() }; MAX_CHUNKS],
    free: Mutex::new(Vec::new()),
    next: AtomicU32::new(0),
};

impl ContextTable {
    fn slot(&self, index: u32) -> Option<&Slot> {
        let index = index as usize;
        self.chunks.get(index / CHUNK)?.get()?.get(index % CHUNK)
    }

    fn slot_or_init(&self, index: u32) -> Option<&Slot> {
        let index = index as usize;
        let chunk = self.chunks.get(index / CHUNK)?.get_or_init(|| {
            (0..CHUNK)
                .map(|_| Slot {
                    generation: AtomicU32::new(0),
                    entry: ArcSwapOption::empty(),
                })
                .collect()
        });
        chunk.get(index % CHUNK)
    }
}

/// Opens a context for `entry` and returns its token; the context stays open until
/// [`revoke`] is called with the token.
///
/// # Panics
///
/// If more than a million contexts are open at once.
pub(crate) fn open(mut entry: ContextEntry) -> ContextToken {
    let index = TABLE
        .free
        .lock()
        .pop()
        .unwrap_or_else(|| TABLE.next.fetch_add(1, Ordering::Relaxed));
    let slot = TABLE
        .slot_or_init(index)
        .expect("more than a million plugin contexts open at once");
    let generation = slot
        .generation
        .fetch_add(1, Ordering::AcqRel)
        .wrapping_add(1);
    entry.token_generation = generation;
    slot.entry.store(Some(Arc::new(entry)));
    ContextToken {
        slot: index,
        generation,
    }
}

/// Revokes the context of `token`: from the moment this returns, every host function answers
/// the token with `Revoked`. Returns false if it was already revoked. O(1), and safe to race
/// with calls using the token.
pub(crate) fn revoke(token: ContextToken) -> bool {
    let Some(slot) = TABLE.slot(token.slot) else {
        return false;
    };
    let current = slot.entry.load_full();
    match current {
        Some(entry) if entry.token_generation == token.generation => {
            let previous = slot.entry.compare_and_swap(&Some(entry.clone()), None);
            let revoked = previous.as_ref().is_some_and(|p| Arc::ptr_eq(p, &entry));
            if revoked {
                TABLE.free.lock().push(token.slot);
            }
            revoked
        }
        _ => false,
    }
}

/// Whether `token` names an open context.
pub fn is_open(token: ContextToken) -> bool {
    lookup(token).is_ok()
}

fn lookup(token: ContextToken) -> Result<arc_swap::Guard<Option<Arc<ContextEntry>>>, HostError> {
    let guard = TABLE.slot(token.slot).map(|slot| slot.entry.load());
    match guard {
        Some(guard)
            if guard
                .as_ref()
                .is_some_and(|e| e.token_generation == token.generation) =>
        {
            Ok(guard)
        }
        _ => Err(host_error(
            HostErrorCode::REVOKED,
            "",
            "the plugin's context has been revoked",
        )),
    }
}

fn host_error(code: HostErrorCode, capability: &str, message: &str) -> HostError {
    HostError {
        code,
        capability: RString::from(capability),
        message: RString::from(message),
    }
}

/// Runs a host function body: looks the token up, then runs `f` on the entry with panics
/// contained. Nothing unwinds into the plugin.
fn serve<T>(
    token: ContextToken,
    f: impl FnOnce(&ContextEntry) -> Result<T, HostError>,
) -> RResult<T, HostError> {
    let result = catch_unwind(AssertUnwindSafe(|| {
        let guard = lookup(token)?;
        match guard.as_ref() {
            Some(entry) => f(entry),
            None => Err(host_error(
                HostErrorCode::REVOKED,
                "",
                "the plugin's context has been revoked",
            )),
        }
    }));
    match result {
        Ok(r) => r.into(),
        Err(_) => RResult::RErr(host_error(
            HostErrorCode::INTERNAL,
            "",
            "the host panicked while serving the request",
        )),
    }
}

extern "C" fn host_log(
    token: ContextToken,
    level: LogLevel,
    message: RStr<'_>,
) -> RResult<(), HostError> {
    serve(token, |entry| {
        let _span = entry.span.enter();
        let message = message.as_str();
        match level {
            LogLevel::ERROR => tracing::error!(target: "airlock::plugin", "{message}"),
            LogLevel::WARN => tracing::warn!(target: "airlock::plugin", "{message}"),
            LogLevel::INFO => tracing::info!(target: "airlock::plugin", "{message}"),
            LogLevel::DEBUG => tracing::debug!(target: "airlock::plugin", "{message}"),
            _ => tracing::trace!(target: "airlock::plugin", "{message}"),
        }
        Ok(())
    })
}

extern "C" fn host_config(token: ContextToken) -> RResult<RVec<u8>, HostError> {
    serve(token, |entry| Ok(RVec::from(entry.config.clone())))
}

extern "C" fn host_request(
    token: ContextToken,
    service: RStr<'_>,
    operation: RStr<'_>,
    _payload: RSlice<'_, u8>,
) -> RResult<RVec<u8>, HostError> {
    serve(token, |entry| {
        Err(host_error(
            HostErrorCode::UNSUPPORTED,
            "",
            &format!(
                "this host offers no service {:?} (operation {:?}, asked by {})",
                service.as_str(),
                operation.as_str(),
                entry.plugin
            ),
        ))
    })
}

const VTABLE: &WithMetadata<HostVtable> = &WithMetadata::new(HostVtable {
    log: host_log,
    config: host_config,
    request: host_request,
});

/// The host vtable every plugin context points to.
pub fn host_vtable() -> HostVtableRef {
    HostVtableRef(VTABLE.static_as_prefix())
}

/// The context handed to a plugin for `token`.
pub(crate) fn host_context(token: ContextToken) -> HostContext {
    HostContext {
        token,
        vtable: host_vtable(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> ContextEntry {
        ContextEntry::new(
            PluginId::new(id).expect("id"),
            1,
            b"{\"a\":1}".to_vec(),
            Vec::new(),
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
        assert!(revoke(token));
        assert!(!revoke(token), "second revoke is a no-op");
        let err = (vt.config())(token).into_result().expect_err("revoked");
        assert_eq!(err.code, HostErrorCode::REVOKED);
        // The slot is reused by the next context, under a new generation.
        let next = open(entry("unit-b"));
        let stale = (vt.log())(token, LogLevel::INFO, RStr::from_str("x")).into_result();
        assert_eq!(stale.expect_err("stale").code, HostErrorCode::REVOKED);
        assert!(is_open(next));
        assert!(revoke(next));
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
    fn revoke_races_with_calls() {
        let token = open(entry("unit-race"));
        let vt = host_vtable();
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(move || {
                    let mut revoked_seen = false;
                    for _ in 0..20_000 {
                        match (vt.config())(token).into_result() {
                            Ok(_) => {
                                assert!(!revoked_seen, "a call succeeded after one saw Revoked")
                            }
                            Err(e) => {
                                assert_eq!(e.code, HostErrorCode::REVOKED);
                                revoked_seen = true;
                            }
                        }
                    }
                });
            }
            s.spawn(move || {
                std::thread::yield_now();
                assert!(revoke(token));
            });
        });
        assert!(!is_open(token));
    }
}
