//! Deferred answers and calls waiting for approval, kept durably.
//!
//! An action that answers pending leaves an entry here: its id (128 random bits, the name its
//! caller and the host program use), the plugin's own key for it (the name the plugin resolves
//! it by, reachable by no other plugin: keys are looked up only within the resolving plugin's
//! namespace), its description, its caller, and — once settled — the answer. Calls waiting for
//! the approver live beside them. An entry's answer is kept apart from its metadata
//! ([`rows`]), so only polling, waiting for or listing an entry reads it. Both are tables of
//! the host's state database (the kv service's redb file), written in a transaction that is
//! durable when it commits, so they survive a restart; a host without `[host] data_dir` keeps
//! them in an in-memory database, lost when it stops.
//!
//! Every entry expires by the policy's bound (`[host] pending_ttl_secs`): one still open then
//! answers `expired`; a settled or expired one is kept as long again for its caller to read,
//! then dropped. The number of entries is bounded per plugin and in all; settled entries make
//! room for new ones, oldest first, so only open ones can fill the store; so do they for an
//! answer past the byte budgets ([`bounds`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use airlock_abi::wire::{CallerInfo, Deferral, Envelope};
use parking_lot::{Condvar, Mutex};
use redb::{Database, ReadableDatabase, ReadableTable};

mod approvals;
mod bounds;
mod rows;
mod types;

use approvals::{split_approval, APPROVALS, APPROVAL_IDS};
use rows::{key_row, read_row, scan, with_answer, Row, RowState, Tables, ANSWERS, ENTRIES, KEYS};
pub use types::{PendingEntry, PendingError, PendingId, PendingState};

/// The most open pending answers one plugin may have (one more is refused), and the most
/// settled ones kept for it.
pub const MAX_PENDING_PER_PLUGIN: usize = 256;
/// The most pending answers the host keeps in all, settled ones included (the oldest settled
/// make room; a new one is refused only when this many are open).
pub const MAX_PENDING: usize = 4096;
/// The largest answer a pending entry is settled with (its JSON), in bytes.
pub const MAX_PENDING_ANSWER: usize = 1024 * 1024;
/// The most bytes of answers kept for one plugin's settled entries: resolving one past it
/// drops that plugin's oldest settled entries first.
pub const MAX_PENDING_ANSWER_BYTES_PER_PLUGIN: u64 = 16 * 1024 * 1024;
/// The most bytes of answers the host keeps in all: resolving one past it drops the oldest
/// settled entries (of any plugin) first.
pub const MAX_PENDING_ANSWER_BYTES: u64 = 64 * 1024 * 1024;

pub(crate) fn storage(e: impl std::fmt::Display) -> PendingError {
    PendingError::Storage(e.to_string())
}

/// The time now, as unix ms.
pub(crate) fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// What a sweep found past its time.
#[derive(Debug, Default)]
pub(crate) struct Swept {
    /// Open answers that expired now.
    pub(crate) answers: Vec<PendingEntry>,
    /// Calls that waited for approval past the bound, dropped now: id and request.
    pub(crate) approvals: Vec<(u64, Vec<u8>)>,
    /// Entries that did not decode, dropped now (each logged).
    pub(crate) unreadable: usize,
}

/// The pending answers and waiting approvals of one host.
pub(crate) struct PendingStore {
    db: Arc<Database>,
    durable: bool,
    ttl: Duration,
    changed: Mutex<u64>,
    wake: Condvar,
    /// When the last sweep ran (unix ms): a sweep reads every entry's metadata, so it runs at
    /// most once per [`SWEEP_EVERY`] (or the bound, if shorter) unless asked to.
    swept: std::sync::atomic::AtomicU64,
}

/// How often, at most, an operation sweeps the store on its way.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl std::fmt::Debug for PendingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingStore")
            .field("durable", &self.durable)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl PendingStore {
    /// The store in the host's state database (`Some`), or in memory.
    pub(crate) fn open(db: Option<Arc<Database>>, ttl: Duration) -> Result<Self, PendingError> {
        let durable = db.is_some();
        let db = match db {
            Some(db) => db,
            None => Arc::new(
                Database::builder()
                    .create_with_backend(redb::backends::InMemoryBackend::new())
                    .map_err(storage)?,
            ),
        };
        let txn = db.begin_write().map_err(storage)?;
        Tables::open(&txn)?;
        txn.open_table(APPROVALS).map_err(storage)?;
        txn.open_table(APPROVAL_IDS).map_err(storage)?;
        txn.commit().map_err(storage)?;
        Ok(Self {
            db,
            durable,
            ttl,
            changed: Mutex::new(0),
            swept: std::sync::atomic::AtomicU64::new(0),
            wake: Condvar::new(),
        })
    }

    /// Whether entries survive a restart (the host has a state file).
    pub(crate) fn durable(&self) -> bool {
        self.durable
    }

    /// How long an entry stays open.
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX)
    }

    fn notify(&self) {
        *self.changed.lock() += 1;
        self.wake.notify_all();
    }

    /// Keeps a new open entry for `plugin`'s `action`, answered pending with `deferral`.
    pub(crate) fn create(
        &self,
        plugin: &str,
        action: &str,
        deferral: Deferral,
        caller: CallerInfo,
    ) -> Result<PendingEntry, PendingError> {
        use airlock_abi::wire::{MAX_PENDING_DESCRIPTION, MAX_PENDING_KEY};
        if deferral.key.is_empty() || deferral.key.len() > MAX_PENDING_KEY {
            return Err(PendingError::Refused(format!(
                "a pending answer's key must be 1 to {MAX_PENDING_KEY} bytes"
            )));
        }
        if deferral.description.len() > MAX_PENDING_DESCRIPTION {
            return Err(PendingError::Refused(format!(
                "a pending answer's description is over {MAX_PENDING_DESCRIPTION} bytes"
            )));
        }
        let now = now_ms();
        let row = Row {
            id: PendingId::random()?,
            plugin: plugin.to_owned(),
            action: action.to_owned(),
            key: deferral.key,
            description: deferral.description,
            caller,
            created_unix_ms: now,
            expires_unix_ms: now.saturating_add(self.ttl_ms()),
            settled_unix_ms: None,
            state: RowState::Open,
            answer_bytes: 0,
        };
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut tables = Tables::open(&txn)?;
            let (rows, _) = tables.scan_purging()?;
            bounds::room_for_open(&mut tables, &rows, &row)?;
            tables.put(&row)?;
            tables
                .keys
                .insert(key_row(plugin, &row.key).as_str(), row.id.as_str())
                .map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        Ok(row.entry(PendingState::Open))
    }

    /// The entry `id`, with its answer if resolved.
    pub(crate) fn get(&self, id: &PendingId) -> Result<Option<PendingEntry>, PendingError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let entries = txn.open_table(ENTRIES).map_err(storage)?;
        let answers = txn.open_table(ANSWERS).map_err(storage)?;
        let row = read_row(&entries, id)?;
        row.map(|row| with_answer(&answers, row)).transpose()
    }

    /// Every entry, oldest first, with the answers of the resolved ones (an entry that does
    /// not read is skipped, and logged).
    pub(crate) fn list(&self) -> Result<Vec<PendingEntry>, PendingError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let entries = txn.open_table(ENTRIES).map_err(storage)?;
        let answers = txn.open_table(ANSWERS).map_err(storage)?;
        let (mut rows, _) = scan(&entries)?;
        rows.sort_by(|a, b| (a.created_unix_ms, &a.id).cmp(&(b.created_unix_ms, &b.id)));
        let mut all = Vec::with_capacity(rows.len());
        for row in rows {
            match with_answer(&answers, row) {
                Ok(entry) => all.push(entry),
                Err(e) => tracing::error!("a pending answer was skipped in the list: {e}"),
            }
        }
        Ok(all)
    }

    /// The id of `plugin`'s entry `key` (its own namespace only).
    pub(crate) fn by_key(&self, plugin: &str, key: &str) -> Result<PendingId, PendingError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let keys = txn.open_table(KEYS).map_err(storage)?;
        let found = keys.get(key_row(plugin, key).as_str()).map_err(storage)?;
        found
            .map(|id| PendingId::written(id.value().to_owned()))
            .ok_or_else(|| PendingError::NotFound(format!("with key {key:?} of plugin {plugin}")))
    }

    /// Settles the open entry `id` with `outcome`; refused if it is not open, if the answer is
    /// too large, or if it would not read back (nested too deeply for the JSON reader).
    pub(crate) fn resolve(
        &self,
        id: &PendingId,
        outcome: Envelope<serde_json::Value>,
    ) -> Result<PendingEntry, PendingError> {
        let bytes = serde_json::to_vec(&outcome).map_err(storage)?;
        let size = bytes.len();
        if size > MAX_PENDING_ANSWER {
            return Err(PendingError::Refused(format!(
                "the answer is {size} bytes, over the {MAX_PENDING_ANSWER} a pending answer keeps"
            )));
        }
        // Kept only if it reads back: an answer the reader refuses (nested too deeply) would
        // be one its caller could never read.
        if let Err(e) = rows::decode_answer(&bytes) {
            return Err(PendingError::Refused(format!(
                "the answer would not read back ({e}); send one nested less deeply"
            )));
        }
        let now = now_ms();
        let txn = self.db.begin_write().map_err(storage)?;
        let row = {
            let mut tables = Tables::open(&txn)?;
            let Some(mut row) = read_row(&tables.entries, id)? else {
                return Err(PendingError::NotFound(id.to_string()));
            };
            match row.state {
                RowState::Resolved => return Err(PendingError::Resolved(row.id)),
                RowState::Expired => return Err(PendingError::Expired(row.id)),
                RowState::Open if row.expires_unix_ms <= now => {
                    return Err(PendingError::Expired(row.id))
                }
                RowState::Open => {}
            }
            row.state = RowState::Resolved;
            row.settled_unix_ms = Some(now);
            row.answer_bytes = size as u64;
            let (rows, _) = tables.scan_purging()?;
            bounds::room_for_answer(&mut tables, &rows, &row)?;
            tables.put(&row)?;
            tables
                .answers
                .insert(id.as_str(), bytes.as_slice())
                .map_err(storage)?;
            row
        };
        txn.commit().map_err(storage)?;
        self.notify();
        Ok(row.entry(PendingState::Resolved(outcome)))
    }

    /// Marks the open entries past their time expired, drops what was kept long enough (and
    /// what does not decode), and drops the approvals that waited past the bound; what expired
    /// now. Reads no answer. Skipped when the last ran less than a second (or the bound) ago,
    /// unless `now`.
    pub(crate) fn sweep(&self, now: bool) -> Result<Swept, PendingError> {
        use std::sync::atomic::Ordering;
        let ttl = self.ttl_ms();
        let every = u64::try_from(SWEEP_EVERY.as_millis())
            .unwrap_or(u64::MAX)
            .min(ttl);
        let at = now_ms();
        let last = self.swept.load(Ordering::Relaxed);
        if !now && at < last.saturating_add(every) {
            return Ok(Swept::default());
        }
        self.swept.store(at, Ordering::Relaxed);
        let now = at;
        let mut swept = Swept::default();
        let mut purged = 0;
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut tables = Tables::open(&txn)?;
            let (rows, unreadable) = tables.scan_purging()?;
            swept.unreadable = unreadable;
            for mut row in rows {
                match row.settled_unix_ms {
                    None if row.expires_unix_ms <= now => {
                        row.state = RowState::Expired;
                        row.settled_unix_ms = Some(now);
                        tables.put(&row)?;
                        swept.answers.push(row.entry(PendingState::Expired));
                    }
                    Some(at) if at.saturating_add(ttl) <= now => {
                        tables.forget(&row.id, &row.plugin, &row.key)?;
                        purged += 1;
                    }
                    _ => {}
                }
            }
            let mut approvals = txn.open_table(APPROVALS).map_err(storage)?;
            let mut late = Vec::new();
            for row in approvals.iter().map_err(storage)? {
                let (id, value) = row.map_err(storage)?;
                let (asked, request) = split_approval(value.value());
                if asked.saturating_add(ttl) <= now {
                    late.push((id.value(), request.to_vec()));
                }
            }
            for (id, _) in &late {
                approvals.remove(id).map_err(storage)?;
            }
            swept.approvals = late;
        }
        // Nothing past its time: no write, so no sync to disk.
        if swept.answers.is_empty()
            && swept.approvals.is_empty()
            && purged == 0
            && swept.unreadable == 0
        {
            txn.abort().map_err(storage)?;
            return Ok(swept);
        }
        txn.commit().map_err(storage)?;
        if !swept.answers.is_empty() {
            self.notify();
        }
        Ok(swept)
    }

    /// Waits until something is settled, or `until` (whichever is first).
    pub(crate) fn wait_change(&self, until: std::time::Instant) {
        let mut changed = self.changed.lock();
        let seen = *changed;
        while *changed == seen {
            if self.wake.wait_until(&mut changed, until).timed_out() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(ttl: Duration) -> PendingStore {
        PendingStore::open(None, ttl).expect("in memory")
    }

    fn deferral(key: &str) -> Deferral {
        Deferral {
            key: key.to_owned(),
            description: format!("waits for {key}"),
        }
    }

    fn host() -> CallerInfo {
        CallerInfo::Host { principal: None }
    }

    #[test]
    fn ids_are_random_hex_and_parse_only_as_such() {
        let a = PendingId::random().expect("id");
        let b = PendingId::random().expect("id");
        assert_ne!(a, b);
        assert_eq!(PendingId::parse(a.as_str()), Some(a.clone()));
        for bad in ["", "1", &"g".repeat(32), &"A".repeat(32), &format!("{a}0")] {
            assert_eq!(PendingId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_key_is_found_only_in_its_own_plugins_namespace() {
        let store = store(Duration::from_secs(60));
        let entry = store
            .create("a", "ask", deferral("k"), host())
            .expect("kept");
        assert_eq!(store.by_key("a", "k"), Ok(entry.id.clone()));
        for (plugin, key) in [
            ("b", "k"),
            ("a\0k", ""),
            ("", "a\0k"),
            ("a", entry.id.as_str()),
        ] {
            assert!(
                matches!(store.by_key(plugin, key), Err(PendingError::NotFound(_))),
                "{plugin:?} {key:?}"
            );
        }
    }

    #[test]
    fn an_entry_is_resolved_once() {
        let store = store(Duration::from_secs(60));
        let entry = store
            .create("a", "ask", deferral("k"), host())
            .expect("kept");
        let resolved = store.resolve(&entry.id, Envelope::Ok(serde_json::json!(1)));
        assert!(resolved.is_ok(), "{resolved:?}");
        let again = store.resolve(&entry.id, Envelope::Ok(serde_json::json!(2)));
        assert_eq!(again, Err(PendingError::Resolved(entry.id.clone())));
        let kept = store.get(&entry.id).expect("read").expect("kept");
        assert_eq!(
            kept.state,
            PendingState::Resolved(Envelope::Ok(serde_json::json!(1)))
        );
        // Its key may name a new open entry now.
        assert!(store.create("a", "ask", deferral("k"), host()).is_ok());
    }

    #[test]
    fn an_open_entry_past_its_time_expires_and_refuses_resolution() {
        let store = store(Duration::from_millis(1));
        let entry = store
            .create("a", "ask", deferral("k"), host())
            .expect("kept");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let swept = loop {
            let swept = store.sweep(true).expect("swept");
            if !swept.answers.is_empty() || std::time::Instant::now() > deadline {
                break swept;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        assert_eq!(swept.answers.len(), 1);
        assert_eq!(swept.answers[0].state, PendingState::Expired);
        let late = store.resolve(&entry.id, Envelope::Ok(serde_json::Value::Null));
        assert_eq!(late, Err(PendingError::Expired(entry.id)));
    }

    #[test]
    fn oversized_keys_descriptions_and_answers_are_refused() {
        use airlock_abi::wire::{MAX_PENDING_DESCRIPTION, MAX_PENDING_KEY};
        let store = store(Duration::from_secs(60));
        let long_key = deferral(&"k".repeat(MAX_PENDING_KEY + 1));
        assert!(matches!(
            store.create("a", "ask", long_key, host()),
            Err(PendingError::Refused(_))
        ));
        assert!(matches!(
            store.create("a", "ask", deferral(""), host()),
            Err(PendingError::Refused(_))
        ));
        let mut wordy = deferral("k");
        wordy.description = "d".repeat(MAX_PENDING_DESCRIPTION + 1);
        assert!(matches!(
            store.create("a", "ask", wordy, host()),
            Err(PendingError::Refused(_))
        ));
        let entry = store
            .create("a", "ask", deferral("k"), host())
            .expect("kept");
        let huge = Envelope::Ok(serde_json::json!("x".repeat(MAX_PENDING_ANSWER)));
        assert!(matches!(
            store.resolve(&entry.id, huge),
            Err(PendingError::Refused(_))
        ));
    }

    #[test]
    fn approvals_are_kept_bounded_and_their_last_id_remembered() {
        let store = store(Duration::from_secs(60));
        store.put_approval(7, b"seven", 2).expect("kept");
        store.put_approval(3, b"three", 2).expect("kept");
        assert!(matches!(
            store.put_approval(9, b"nine", 2),
            Err(PendingError::Refused(_))
        ));
        assert_eq!(store.last_approval_id(), Ok(7));
        assert_eq!(store.take_approval(7), Ok(Some(b"seven".to_vec())));
        assert_eq!(store.take_approval(7), Ok(None));
        assert_eq!(store.approvals(), Ok(vec![(3, b"three".to_vec())]));
        assert_eq!(
            store.last_approval_id(),
            Ok(7),
            "an id given is never given again"
        );
    }
}

#[cfg(test)]
mod bound_tests {
    use super::*;

    #[test]
    fn settled_answers_make_room_oldest_first_and_open_ones_are_refused() {
        let store = PendingStore::open(None, Duration::from_secs(60)).expect("in memory");
        let host = CallerInfo::Host { principal: None };
        let deferral = |key: String| Deferral {
            key,
            description: String::new(),
        };
        let mut first = None;
        for n in 0..=MAX_PENDING_PER_PLUGIN {
            let entry = store.create("a", "ask", deferral(format!("k{n}")), host.clone());
            let entry = entry.expect("room is made");
            store
                .resolve(&entry.id, Envelope::Ok(serde_json::Value::Null))
                .expect("resolved");
            first.get_or_insert(entry.id);
        }
        let kept = store.list().expect("listed");
        assert_eq!(
            kept.len(),
            MAX_PENDING_PER_PLUGIN,
            "a plugin keeps its share"
        );
        let first = first.expect("one was made");
        assert_eq!(store.get(&first), Ok(None), "the oldest settled made room");
        for n in 0..MAX_PENDING_PER_PLUGIN {
            store
                .create("a", "ask", deferral(format!("open{n}")), host.clone())
                .expect("open");
        }
        let refused = store.create("a", "ask", deferral("over".to_owned()), host.clone());
        assert!(
            matches!(refused, Err(PendingError::Refused(_))),
            "{refused:?}"
        );
        assert!(store
            .create("b", "ask", deferral("over".to_owned()), host)
            .is_ok());
    }
}
