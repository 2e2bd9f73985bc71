//! How pending answers are laid out in the state database: each entry's metadata in one table
//! (small rows: who, what, when, and which state), its answer — once resolved — in another, as
//! the bytes it was written as, read only when that one entry is polled, waited for or listed.
//! Creating, sweeping and bounding the store read the metadata alone, so no answer, however
//! large or deep, is parsed on their way; a row that does not decode is skipped and logged, and
//! purged by the next write, never failing the operation for the other entries.

use airlock_abi::wire::{CallerInfo, Envelope};
use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{storage, PendingEntry, PendingError, PendingId, PendingState};

/// Entries' metadata by id ([`Row`], as JSON).
pub(super) const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("pending");
/// Resolved entries' answers by id: the [`Envelope`] as JSON.
pub(super) const ANSWERS: TableDefinition<&str, &[u8]> = TableDefinition::new("pending-answer");
/// The id of each plugin's key (`plugin`, NUL, `key`).
pub(super) const KEYS: TableDefinition<&str, &str> = TableDefinition::new("pending-key");

/// Where an entry is, without its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RowState {
    Open,
    Resolved,
    Expired,
}

/// One entry's metadata: a [`PendingEntry`] but for its answer, and the answer's size.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Row {
    pub(super) id: PendingId,
    pub(super) plugin: String,
    pub(super) action: String,
    pub(super) key: String,
    pub(super) description: String,
    pub(super) caller: CallerInfo,
    pub(super) created_unix_ms: u64,
    pub(super) expires_unix_ms: u64,
    pub(super) settled_unix_ms: Option<u64>,
    pub(super) state: RowState,
    /// The size of the answer kept in [`ANSWERS`] (0 unless resolved).
    pub(super) answer_bytes: u64,
}

impl Row {
    pub(super) fn encode(&self) -> Result<Vec<u8>, PendingError> {
        serde_json::to_vec(self).map_err(storage)
    }

    /// The entry, in `state` (the answer read by the caller when resolved).
    pub(super) fn entry(self, state: PendingState) -> PendingEntry {
        PendingEntry {
            id: self.id,
            plugin: self.plugin,
            action: self.action,
            key: self.key,
            description: self.description,
            caller: self.caller,
            created_unix_ms: self.created_unix_ms,
            expires_unix_ms: self.expires_unix_ms,
            settled_unix_ms: self.settled_unix_ms,
            state,
        }
    }
}

/// The rows of `entries` that decode, and the ids of those that do not (each logged).
pub(super) fn scan(
    entries: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<(Vec<Row>, Vec<String>), PendingError> {
    let mut rows = Vec::new();
    let mut unreadable = Vec::new();
    for row in entries.iter().map_err(storage)? {
        let (id, value) = row.map_err(storage)?;
        match serde_json::from_slice::<Row>(value.value()) {
            Ok(row) => rows.push(row),
            Err(e) => {
                let id = id.value().to_owned();
                tracing::error!("pending answer {id:?} does not decode, skipped and dropped: {e}");
                unreadable.push(id);
            }
        }
    }
    Ok((rows, unreadable))
}

/// The row `id`, if kept; one that does not decode is an error of this entry alone.
pub(super) fn read_row(
    entries: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &PendingId,
) -> Result<Option<Row>, PendingError> {
    let Some(value) = entries.get(id.as_str()).map_err(storage)? else {
        return Ok(None);
    };
    serde_json::from_slice(value.value())
        .map(Some)
        .map_err(|e| storage(format!("pending answer {id} does not decode: {e}")))
}

/// The entry of `row`, its answer read from `answers` when resolved.
pub(super) fn with_answer(
    answers: &impl ReadableTable<&'static str, &'static [u8]>,
    row: Row,
) -> Result<PendingEntry, PendingError> {
    let state = match row.state {
        RowState::Open => PendingState::Open,
        RowState::Expired => PendingState::Expired,
        RowState::Resolved => {
            let bytes = answers.get(row.id.as_str()).map_err(storage)?;
            let bytes =
                bytes.ok_or_else(|| storage(format!("the answer of {} is gone", row.id)))?;
            let outcome = decode_answer(bytes.value())
                .map_err(|e| storage(format!("the answer of {} does not decode: {e}", row.id)))?;
            PendingState::Resolved(outcome)
        }
    };
    Ok(row.entry(state))
}

/// An answer as kept.
pub(super) fn decode_answer(
    bytes: &[u8],
) -> Result<Envelope<serde_json::Value>, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// The tables an entry lives in, open in one write transaction.
pub(super) struct Tables<'t> {
    pub(super) entries: redb::Table<'t, &'static str, &'static [u8]>,
    pub(super) answers: redb::Table<'t, &'static str, &'static [u8]>,
    pub(super) keys: redb::Table<'t, &'static str, &'static str>,
}

impl<'t> Tables<'t> {
    pub(super) fn open(txn: &'t redb::WriteTransaction) -> Result<Self, PendingError> {
        Ok(Self {
            entries: txn.open_table(ENTRIES).map_err(storage)?,
            answers: txn.open_table(ANSWERS).map_err(storage)?,
            keys: txn.open_table(KEYS).map_err(storage)?,
        })
    }

    /// The rows that decode; those that do not are dropped now (and were logged).
    pub(super) fn scan_purging(&mut self) -> Result<(Vec<Row>, usize), PendingError> {
        let (rows, unreadable) = scan(&self.entries)?;
        for id in &unreadable {
            self.entries.remove(id.as_str()).map_err(storage)?;
            self.answers.remove(id.as_str()).map_err(storage)?;
        }
        Ok((rows, unreadable.len()))
    }

    /// Drops the entry `id`, its answer and its key's row, if the key still names it.
    pub(super) fn forget(
        &mut self,
        id: &PendingId,
        plugin: &str,
        key: &str,
    ) -> Result<(), PendingError> {
        self.entries.remove(id.as_str()).map_err(storage)?;
        self.answers.remove(id.as_str()).map_err(storage)?;
        let row = key_row(plugin, key);
        let current = self.keys.get(row.as_str()).map_err(storage)?;
        if current.is_some_and(|named| named.value() == id.as_str()) {
            self.keys.remove(row.as_str()).map_err(storage)?;
        }
        Ok(())
    }

    pub(super) fn put(&mut self, row: &Row) -> Result<(), PendingError> {
        let bytes = row.encode()?;
        self.entries
            .insert(row.id.as_str(), bytes.as_slice())
            .map_err(storage)?;
        Ok(())
    }
}

pub(super) fn key_row(plugin: &str, key: &str) -> String {
    format!("{plugin}\0{key}")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use airlock_abi::wire::{CallerInfo, Deferral, Envelope};
    use redb::{Database, ReadableDatabase};
    use serde_json::{json, Value};

    use super::{ANSWERS, ENTRIES};
    use crate::services::pending::{PendingError, PendingState, PendingStore};

    /// `depth` arrays, one in another, around a number.
    fn deep(depth: usize) -> Value {
        (0..depth).fold(json!(0), |inner, _| json!([inner]))
    }

    fn memory() -> Arc<Database> {
        let backend = redb::backends::InMemoryBackend::new();
        Arc::new(
            Database::builder()
                .create_with_backend(backend)
                .expect("db"),
        )
    }

    fn ask(store: &PendingStore, plugin: &str, key: &str) -> crate::services::pending::PendingId {
        let deferral = Deferral {
            key: key.to_owned(),
            description: String::new(),
        };
        let caller = CallerInfo::Host { principal: None };
        store
            .create(plugin, "ask", deferral, caller)
            .expect("kept")
            .id
    }

    /// Another plugin's answer is made, listed, resolved, read and expired as ever.
    fn others_unharmed(store: &PendingStore, key: &str) {
        let id = ask(store, "b", key);
        assert!(store.list().expect("listed").iter().any(|e| e.id == id));
        store
            .resolve(&id, Envelope::Ok(json!("fine")))
            .expect("resolved");
        let read = store.get(&id).expect("read").expect("kept").state;
        assert_eq!(read, PendingState::Resolved(Envelope::Ok(json!("fine"))));
        store.sweep(true).expect("swept");
    }

    #[test]
    fn an_answer_nested_deeply_is_kept_readable_or_refused_and_never_breaks_the_store() {
        let db = memory();
        let store = PendingStore::open(Some(db.clone()), Duration::from_secs(60)).expect("open");
        let mut kept = Vec::new();
        for depth in [125, 126, 127, 128, 300] {
            let id = ask(&store, "a", &format!("deep{depth}"));
            match store.resolve(&id, Envelope::Ok(deep(depth))) {
                Ok(_) => kept.push((id, depth)),
                Err(PendingError::Refused(why)) => {
                    assert!(depth > 125, "a 125-deep answer is kept: {why}");
                    assert!(why.contains("read back"), "{why}");
                }
                Err(other) => panic!("{depth}: {other:?}"),
            }
            others_unharmed(&store, &format!("after{depth}"));
        }
        assert!(kept.iter().any(|(_, depth)| *depth == 125));
        assert!(!kept.iter().any(|(_, depth)| *depth == 300));
        // A store opened again on the same database reads every one back.
        drop(store);
        let store = PendingStore::open(Some(db), Duration::from_secs(60)).expect("again");
        for (id, depth) in &kept {
            let read = store.get(id).expect("read").expect("kept").state;
            assert_eq!(read, PendingState::Resolved(Envelope::Ok(deep(*depth))));
        }
        others_unharmed(&store, "after restart");
    }

    #[test]
    fn an_entry_that_does_not_decode_is_skipped_then_dropped_and_others_go_on() {
        let store = PendingStore::open(None, Duration::from_secs(60)).expect("open");
        let good = ask(&store, "b", "good");
        let mut nested = "[".repeat(200);
        nested.push_str(&"]".repeat(200));
        {
            let txn = store.db.begin_write().expect("write");
            {
                let mut entries = txn.open_table(ENTRIES).expect("table");
                let mut answers = txn.open_table(ANSWERS).expect("table");
                entries.insert("bad", b"{not json".as_slice()).expect("put");
                entries.insert("deep", nested.as_bytes()).expect("put");
                answers.insert("deep", nested.as_bytes()).expect("put");
            }
            txn.commit().expect("commit");
        }
        let listed = store.list().expect("listed");
        assert_eq!(listed.iter().map(|e| &e.id).collect::<Vec<_>>(), [&good]);
        others_unharmed(&store, "more");
        let swept = store.sweep(true).expect("swept");
        assert_eq!(swept.unreadable, 0, "the write before dropped both");
        let txn = store.db.begin_read().expect("read");
        let entries = txn.open_table(ENTRIES).expect("table");
        let answers = txn.open_table(ANSWERS).expect("table");
        for id in ["bad", "deep"] {
            assert!(entries.get(id).expect("get").is_none(), "{id} dropped");
            assert!(
                answers.get(id).expect("get").is_none(),
                "{id}'s answer dropped"
            );
        }
    }
}
