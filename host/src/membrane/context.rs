//! The revocable context: a process-wide table of plugin contexts addressed by token
//! (slot + generation). The host vtable whose functions every plugin calls through is in
//! `membrane.rs`; it reads entries with [`with_entry`].
//!
//! The table lives in the host binary, which is never unloaded, so a plugin can never hold a
//! pointer that dangles: it holds a token, and a stale token is answered with `Revoked`.
//! Looking a token up publishes the entry in a hazard slot of the calling thread (a plain store;
//! see `sync::hazard`), and the entry holds the host's services for as long as it is in the
//! table (no reference count moves per request), so the membrane's part of a host callback
//! (the lookup, the grant check, the route to a service) writes no cache line another thread
//! reads. What a service does may (a kv write, a publication to subscribers).
//! Revoking (the whole context, or one capability) is a store followed by a wait for the calls
//! that were in flight before it; calls that start later are not waited for, so a stream of
//! them cannot starve the wait.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use airlock_abi::abi::ContextToken;
use airlock_abi::manifest::{Capability, CapabilityKind, PluginId};
use airlock_abi::wire::CallerInfo;
use arc_swap::ArcSwap;
use parking_lot::Mutex;

use crate::services::kv::SealKeys;
use crate::services::registry::Caller;
use crate::services::HostServices;
use crate::services::RequestCounts;
use crate::sync::hazard::{self, Guarded, SHARDS};

const CHUNK: usize = 256;
const MAX_CHUNKS: usize = 4096;

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
    /// Adds `n` from the thread whose record is `record` (the caller's own).
    #[inline]
    pub(crate) fn add(&self, record: Option<&'static hazard::ThreadRecord>, n: u64) {
        match record.map(|r| r.index()) {
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
pub(crate) struct ContextEntry {
    pub plugin: PluginId,
    pub generation: u64,
    pub config: ArcSwap<Vec<u8>>,
    pub grants: ArcSwap<Vec<Capability>>,
    /// The kinds `grants` grants without a scope, one bit each ([`unscoped_bit`]): what a
    /// request needing such a kind checks, with one load. Stored with `grants`, always after it.
    unscoped: AtomicU32,
    pub span: tracing::Span,
    /// The services behind the membrane; `None` for a context no host serves (tests). Held,
    /// not counted per request: the runtime revokes every context it opened before it lets
    /// itself go (teardown, shutdown), and a revoked entry is dropped once no call reads it,
    /// by the revocation or, past its deadline, by the last request leaving it.
    pub host: Option<Arc<dyn HostServices>>,
    /// Set when teardown starts: no new timers or subscriptions.
    pub closing: AtomicBool,
    /// Host calls served, and capability violations.
    pub calls: ShardedCounter,
    pub denials: AtomicU64,
    /// State handed over by the previous generation, taken once by the new instance.
    pub handover: Mutex<Option<Vec<u8>>>,
    /// The plugin's open outbound HTTP streams: closed, each with its audit record, when the
    /// entry is dropped (its context revoked and no call reading it).
    pub(crate) http_streams: super::http::HttpStreams,
    /// Whether the host records what the plugin does ([`HostServices::observe`]): the
    /// authors' test harness; false otherwise, and then it costs one load per log line.
    pub observed: bool,
    /// Who calls the program's service operations, when the plugin serves the host on behalf
    /// of no one (most calls): built once, lent to every handler.
    pub(crate) caller: Caller,
    /// The plugin's key ring for sealed values, read from the policy at its first kv request.
    pub(crate) kv_keys: OnceLock<Result<Option<SealKeys>, String>>,
    /// Its key/value and stream requests, counted for the metrics in the calling thread's own
    /// line; taken from the tally at its first such request.
    pub(crate) request_counts: OnceLock<Arc<RequestCounts>>,
    revoked: AtomicBool,
    token_generation: u32,
}

impl ContextEntry {
    pub(crate) fn new(
        plugin: PluginId,
        generation: u64,
        config: Vec<u8>,
        grants: Vec<Capability>,
        host: Option<Arc<dyn HostServices>>,
        handover: Option<Vec<u8>>,
    ) -> Self {
        let span = tracing::info_span!("plugin", id = %plugin, generation);
        let caller = Caller {
            plugin: plugin.to_string(),
            generation,
            on_behalf_of: CallerInfo::Host { principal: None },
        };
        Self {
            plugin,
            generation,
            config: ArcSwap::from_pointee(config),
            unscoped: AtomicU32::new(unscoped_mask(&grants)),
            grants: ArcSwap::from_pointee(grants),
            span,
            host,
            closing: AtomicBool::new(false),
            calls: ShardedCounter::default(),
            denials: AtomicU64::new(0),
            handover: Mutex::new(handover),
            http_streams: super::http::HttpStreams::default(),
            observed: false,
            caller,
            kv_keys: OnceLock::new(),
            request_counts: OnceLock::new(),
            revoked: AtomicBool::new(false),
            token_generation: 0,
        }
    }
}

impl ContextEntry {
    /// Whether `kind` is granted without a scope: one load, no match over the grants.
    #[inline]
    pub(crate) fn granted_unscoped(&self, kind: CapabilityKind) -> bool {
        let bit = unscoped_bit(kind);
        bit != 0 && self.unscoped.load(Ordering::Acquire) & bit != 0
    }

    /// Replaces the grants (the list, then the mask of kinds granted without a scope).
    fn set_grants(&self, grants: Vec<Capability>) {
        let mask = unscoped_mask(&grants);
        self.grants.store(Arc::new(grants));
        self.unscoped.store(mask, Ordering::Release);
    }
}

/// The bit of a kind granted without a scope in [`ContextEntry`]'s mask; 0 for a kind that is
/// always checked against the list.
fn unscoped_bit(kind: CapabilityKind) -> u32 {
    match kind {
        CapabilityKind::Kv => 1,
        CapabilityKind::Timers => 1 << 1,
        CapabilityKind::HostControl => 1 << 2,
        CapabilityKind::PluginsList => 1 << 3,
        _ => 0,
    }
}

fn unscoped_mask(grants: &[Capability]) -> u32 {
    grants
        .iter()
        .filter(|g| g.scope().is_none())
        .fold(0, |mask, g| mask | unscoped_bit(g.kind()))
}

impl ContextEntry {
    /// Whether the context has been revoked (its token answers `Revoked` from then on).
    pub(crate) fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::SeqCst)
    }
}

impl std::fmt::Debug for ContextEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContextEntry")
            .field("plugin", &self.plugin)
            .field("generation", &self.generation)
            .field("served", &self.host.is_some())
            .field("closing", &self.closing)
            .field("revoked", &self.revoked)
            .finish_non_exhaustive()
    }
}

struct Slot {
    generation: AtomicU32,
    /// Whether the occupant's context is `observed`: readable without reading the entry.
    observed: AtomicBool,
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
    #[inline(always)]
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
                    observed: AtomicBool::new(false),
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
    slot.observed.store(entry.observed, Ordering::Release);
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
    entry.set_grants(kept);
    let drained = TABLE
        .slot(token.slot)
        .is_none_or(|slot| slot.entry.wait_readers(&entry, DRAIN_DEADLINE));
    if !drained {
        tracing::warn!(plugin = %entry.plugin, "calls into the host were still in flight when a capability was revoked");
    }
    removed
}

/// What a plain look at a token's slot says, without reading (or publishing) its entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// Open, and not observed.
    Open,
    /// Open, and observed by the test harness.
    Observed,
    /// Revoked or stale: once [`revoke`] has returned, every look says so (it empties the slot
    /// before it returns, and the slot gets a new generation before it is reused).
    Revoked,
}

/// Whether `token`'s context is open, from two loads of its slot: what a host function that
/// does nothing for an open context (a log line the level filter drops) needs to know.
#[inline(always)]
pub(crate) fn liveness(token: ContextToken) -> Liveness {
    match TABLE.slot(token.slot) {
        Some(slot)
            if slot.generation.load(Ordering::Acquire) == token.generation
                && slot.entry.is_some() =>
        {
            if slot.observed.load(Ordering::Relaxed) {
                Liveness::Observed
            } else {
                Liveness::Open
            }
        }
        _ => Liveness::Revoked,
    }
}

/// Whether `token` names an open context.
#[cfg(any(test, feature = "test-support"))]
pub fn is_open(token: ContextToken) -> bool {
    entry(token).is_some()
}

/// Runs `f` with the open context of `token` (`None` if it is stale or revoked), read through
/// the hazard slot of `record` (the calling thread's own): a revocation waits for `f` to return.
#[inline(always)]
pub(crate) fn with_entry<R>(
    record: Option<&'static hazard::ThreadRecord>,
    token: ContextToken,
    f: impl FnOnce(Option<&ContextEntry>) -> R,
) -> R {
    match TABLE.slot(token.slot) {
        None => f(None),
        Some(slot) => slot.entry.with_record(record, |entry| {
            f(entry.filter(|e| e.token_generation == token.generation))
        }),
    }
}
