//! The revocable context: a process-wide table of plugin contexts addressed by token
//! (slot + generation), and the host vtable whose functions every plugin calls through.
//!
//! The table lives in the host binary, which is never unloaded, so a plugin can never hold a
//! pointer that dangles: it holds a token, and a stale token is answered with `Revoked`.
//! Looking a token up publishes the entry in a hazard slot of the calling thread (a plain store;
//! see `loader::hazard`), so a host callback writes no cache line another thread reads.
//! Revoking (the whole context, or one capability) is a store followed by a wait for the calls
//! that were in flight before it; calls that start later are not waited for, so a stream of
//! them cannot starve the wait.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use abi_stable::prefix_type::WithMetadata;
use abi_stable::std_types::{RResult, RSlice, RStr, RString, RVec};
use airlock_abi::{
    Capability, ContextToken, HostContext, HostError, HostErrorCode, HostVtable, HostVtableRef,
    LogLevel, PluginId,
};
use arc_swap::ArcSwap;
use parking_lot::Mutex;

use crate::host::HostShared;
use crate::loader::hazard::{self, Guarded};

const CHUNK: usize = 256;
const MAX_CHUNKS: usize = 4096;
/// Threads with a record index below this count in a shard of their own.
const SHARDS: usize = 16;

/// A counter on a cache line of its own.
#[repr(align(128))]
#[derive(Debug, Default)]
struct Padded(AtomicU64);

/// A counter that threads add to without a read-modify-write: each of the first [`SHARDS`]
/// threads alive owns a shard and adds with a plain load and store; any further thread adds
/// to a shared atomic. Reads sum the lot.
#[derive(Debug, Default)]
pub(crate) struct ShardedCounter {
    shards: [Padded; SHARDS],
    shared: AtomicU64,
}

impl ShardedCounter {
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        match hazard::this_thread().map(|r| r.index()) {
            // Only this thread writes this shard while it holds its record.
            Some(i) if i < SHARDS => {
                let shard = &self.shards[i].0;
                shard.store(
                    shard.load(Ordering::Relaxed).wrapping_add(n),
                    Ordering::Relaxed,
                );
            }
            _ => {
                self.shared.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn get(&self) -> u64 {
        self.shards
            .iter()
            .map(|c| c.0.load(Ordering::Relaxed))
            .fold(self.shared.load(Ordering::Relaxed), u64::wrapping_add)
    }
}

/// What the host knows about one open context.
#[derive(Debug)]
pub(crate) struct ContextEntry {
    pub plugin: PluginId,
    pub generation: u64,
    pub config: ArcSwap<Vec<u8>>,
    pub grants: ArcSwap<Vec<Capability>>,
    pub span: tracing::Span,
    pub host: Weak<HostShared>,
    /// Set when teardown starts: no new timers or subscriptions.
    pub closing: AtomicBool,
    /// Host calls served, and capability violations.
    pub calls: ShardedCounter,
    pub denials: AtomicU64,
    /// State handed over by the previous generation, taken once by the new instance.
    pub handover: Mutex<Option<Vec<u8>>>,
    revoked: AtomicBool,
    token_generation: u32,
}

impl ContextEntry {
    pub(crate) fn new(
        plugin: PluginId,
        generation: u64,
        config: Vec<u8>,
        grants: Vec<Capability>,
        host: Weak<HostShared>,
        handover: Option<Vec<u8>>,
    ) -> Self {
        let span = tracing::info_span!("plugin", id = %plugin, generation);
        Self {
            plugin,
            generation,
            config: ArcSwap::from_pointee(config),
            grants: ArcSwap::from_pointee(grants),
            span,
            host,
            closing: AtomicBool::new(false),
            calls: ShardedCounter::default(),
            denials: AtomicU64::new(0),
            handover: Mutex::new(handover),
            revoked: AtomicBool::new(false),
            token_generation: 0,
        }
    }
}

struct Slot {
    generation: AtomicU32,
    entry: Guarded<ContextEntry>,
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
                    entry: Guarded::default(),
                })
                .collect()
        });
        chunk.get(index % CHUNK)
    }
}

/// How long a revocation waits for the calls in flight before giving up on them.
pub(crate) const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

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
    drop(slot.entry.replace(Some(Arc::new(entry))));
    ContextToken {
        slot: index,
        generation,
    }
}

/// The entry of an open context.
pub(crate) fn entry(token: ContextToken) -> Option<Arc<ContextEntry>> {
    let slot = TABLE.slot(token.slot)?;
    slot.entry
        .load_full()
        .filter(|e| e.token_generation == token.generation && !e.revoked.load(Ordering::SeqCst))
}

/// Revokes the context of `token`: from the moment this returns, every host function answers
/// the token with `Revoked`, and every call that was in flight has finished (or overran
/// `deadline`). Returns false if it was already revoked. Safe to race with calls.
pub(crate) fn revoke(token: ContextToken, deadline: Duration) -> bool {
    let Some(slot) = TABLE.slot(token.slot) else {
        return false;
    };
    let Some(current) = slot.entry.load_full() else {
        return false;
    };
    if current.token_generation != token.generation {
        return false;
    }
    current.revoked.store(true, Ordering::SeqCst);
    let Some(retired) = slot.entry.replace_if(&current, None) else {
        return false;
    };
    let plugin = current.plugin.clone();
    // `wait` hands the entry back only as its last counted reference.
    drop(current);
    if retired.wait(deadline).is_err() {
        // The slot is not reused while a call may still be reading its old entry: a thread that
        // outlives teardown keeps answering `Revoked` from its own, retired entry.
        tracing::warn!(plugin = %plugin, "calls into the host were still in flight when the context was revoked");
        return true;
    }
    TABLE.free.lock().push(token.slot);
    true
}

/// Removes every grant `matches` selects from the context of `token` and waits for the calls
/// in flight to finish, so that no call with the old grants succeeds after this returns.
/// Returns the grants removed.
pub(crate) fn revoke_grants(
    token: ContextToken,
    matches: impl Fn(&Capability) -> bool,
) -> Vec<Capability> {
    let Some(entry) = entry(token) else {
        return Vec::new();
    };
    let current = entry.grants.load_full();
    let (removed, kept): (Vec<Capability>, Vec<Capability>) =
        current.iter().cloned().partition(|c| matches(c));
    entry.grants.store(Arc::new(kept));
    let drained = TABLE
        .slot(token.slot)
        .is_none_or(|slot| slot.entry.wait_readers(&entry, DRAIN_DEADLINE));
    if !drained {
        tracing::warn!(plugin = %entry.plugin, "calls into the host were still in flight when a capability was revoked");
    }
    removed
}

/// Whether `token` names an open context.
pub fn is_open(token: ContextToken) -> bool {
    entry(token).is_some()
}

pub(crate) fn host_error(code: HostErrorCode, capability: &str, message: &str) -> HostError {
    HostError {
        code,
        capability: RString::from(capability),
        message: RString::from(message),
    }
}

fn revoked_error() -> HostError {
    host_error(
        HostErrorCode::REVOKED,
        "",
        "the plugin's context has been revoked",
    )
}

/// Runs a host function body: looks the token up (publishing the entry as in use, so that a
/// revocation waits for this call), then runs `f` with panics contained. Nothing unwinds into
/// the plugin.
fn serve<T>(
    token: ContextToken,
    f: impl FnOnce(&ContextEntry) -> Result<T, HostError>,
) -> RResult<T, HostError> {
    let result = catch_unwind(AssertUnwindSafe(|| {
        let slot = TABLE.slot(token.slot).ok_or_else(revoked_error)?;
        slot.entry.with(|entry| {
            let entry = entry
                .filter(|e| e.token_generation == token.generation)
                .ok_or_else(revoked_error)?;
            entry.calls.add(1);
            f(entry)
        })
    }));
    match result {
        Ok(r) => r.into(),
        Err(payload) => {
            drop_payload(payload);
            RResult::RErr(host_error(
                HostErrorCode::INTERNAL,
                "",
                "the host panicked while serving the request",
            ))
        }
    }
}

/// Drops a panic payload without letting a panicking destructor unwind into the plugin: a
/// payload that panics on drop is leaked, and so is that second payload.
fn drop_payload(payload: Box<dyn std::any::Any + Send>) {
    if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(again);
    }
}

/// A string the plugin passed, checked: the plugin's side promises UTF-8, but a `&str` over
/// other bytes would be undefined behaviour, so nothing here trusts it.
fn text<'a>(what: &str, s: &RStr<'a>) -> Result<&'a str, HostError> {
    std::str::from_utf8(s.as_rslice().as_slice()).map_err(|_| {
        host_error(
            HostErrorCode::BAD_REQUEST,
            "",
            &format!("the {what} is not valid UTF-8"),
        )
    })
}

extern "C" fn host_log(
    token: ContextToken,
    level: LogLevel,
    message: RStr<'_>,
) -> RResult<(), HostError> {
    serve(token, |entry| {
        let enabled = match level {
            LogLevel::ERROR => tracing::enabled!(target: "airlock::plugin", tracing::Level::ERROR),
            LogLevel::WARN => tracing::enabled!(target: "airlock::plugin", tracing::Level::WARN),
            LogLevel::INFO => tracing::enabled!(target: "airlock::plugin", tracing::Level::INFO),
            LogLevel::DEBUG => tracing::enabled!(target: "airlock::plugin", tracing::Level::DEBUG),
            _ => tracing::enabled!(target: "airlock::plugin", tracing::Level::TRACE),
        };
        if !enabled {
            return Ok(());
        }
        let _span = entry.span.enter();
        let message = String::from_utf8_lossy(message.as_rslice().as_slice());
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
    serve(token, |entry| {
        Ok(RVec::from(entry.config.load().as_slice().to_vec()))
    })
}

extern "C" fn host_request(
    token: ContextToken,
    service: RStr<'_>,
    operation: RStr<'_>,
    payload: RSlice<'_, u8>,
) -> RResult<RVec<u8>, HostError> {
    serve(token, |entry| {
        crate::membrane::request(
            token,
            entry,
            text("service name", &service)?,
            text("operation name", &operation)?,
            payload.as_slice(),
        )
        .map(RVec::from)
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
            Weak::new(),
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
