//! The store's bounds, kept by dropping settled entries oldest first: the number of entries
//! per plugin and in all ([`MAX_PENDING_PER_PLUGIN`], [`MAX_PENDING`]) when one is created, and
//! the bytes of answers kept per plugin and in all ([`MAX_PENDING_ANSWER_BYTES_PER_PLUGIN`],
//! [`MAX_PENDING_ANSWER_BYTES`]) when one is resolved. Only open entries can fill the store;
//! they hold no answer, so room for an answer can always be made.

use super::rows::{Row, RowState, Tables};
use super::{
    PendingError, MAX_PENDING, MAX_PENDING_ANSWER_BYTES, MAX_PENDING_ANSWER_BYTES_PER_PLUGIN,
    MAX_PENDING_PER_PLUGIN,
};

/// The settled rows of `rows`, oldest settled first.
fn settled(rows: &[Row]) -> Vec<&Row> {
    let mut settled: Vec<&Row> = rows.iter().filter(|r| r.state != RowState::Open).collect();
    settled.sort_by(|a, b| (a.settled_unix_ms, &a.id).cmp(&(b.settled_unix_ms, &b.id)));
    settled
}

/// Makes room for the new open entry `new` among `rows` (every entry kept), or refuses it: a
/// key names one open answer; a plugin has at most [`MAX_PENDING_PER_PLUGIN`] open and keeps
/// as many settled; the host keeps [`MAX_PENDING`] in all.
pub(super) fn room_for_open(
    tables: &mut Tables<'_>,
    rows: &[Row],
    new: &Row,
) -> Result<(), PendingError> {
    let plugin = new.plugin.as_str();
    let mut open = 0;
    for other in rows
        .iter()
        .filter(|r| r.state == RowState::Open && r.plugin == plugin)
    {
        open += 1;
        if other.key == new.key {
            return Err(PendingError::Refused(format!(
                "plugin {plugin} already has an open pending answer with key {:?} ({}); a key \
                 names one open answer",
                new.key, other.id
            )));
        }
    }
    if open >= MAX_PENDING_PER_PLUGIN {
        return Err(PendingError::Refused(format!(
            "plugin {plugin} has {MAX_PENDING_PER_PLUGIN} open pending answers, the most one \
             plugin may; resolve some first"
        )));
    }
    let settled = settled(rows);
    let mut evict: Vec<&Row> = Vec::new();
    let mine = settled.iter().filter(|r| r.plugin == plugin).count();
    if mine >= MAX_PENDING_PER_PLUGIN {
        evict.extend(settled.iter().find(|r| r.plugin == plugin));
    }
    if rows.len().saturating_sub(evict.len()) >= MAX_PENDING {
        let oldest = settled.iter().find(|r| !evict.iter().any(|e| e.id == r.id));
        match oldest {
            Some(oldest) => evict.push(oldest),
            None => {
                return Err(PendingError::Refused(format!(
                    "the host keeps {MAX_PENDING} open pending answers, the most it keeps in all"
                )))
            }
        }
    }
    for row in evict {
        tables.forget(&row.id, &row.plugin, &row.key)?;
    }
    Ok(())
}

/// Makes room for the answer of `resolved` among `rows`: the oldest settled entries of its
/// plugin are dropped until its answers fit [`MAX_PENDING_ANSWER_BYTES_PER_PLUGIN`], then the
/// oldest of any until all fit [`MAX_PENDING_ANSWER_BYTES`].
pub(super) fn room_for_answer(
    tables: &mut Tables<'_>,
    rows: &[Row],
    resolved: &Row,
) -> Result<(), PendingError> {
    let settled = settled(rows);
    let size = resolved.answer_bytes;
    let mut mine: u64 = settled
        .iter()
        .filter(|r| r.plugin == resolved.plugin)
        .map(|r| r.answer_bytes)
        .sum();
    let mut all: u64 = settled.iter().map(|r| r.answer_bytes).sum();
    let mut dropped = std::collections::HashSet::new();
    for row in settled
        .iter()
        .filter(|r| r.plugin == resolved.plugin && r.answer_bytes > 0)
    {
        if mine.saturating_add(size) <= MAX_PENDING_ANSWER_BYTES_PER_PLUGIN {
            break;
        }
        mine -= row.answer_bytes;
        all -= row.answer_bytes;
        dropped.insert(&row.id);
        tables.forget(&row.id, &row.plugin, &row.key)?;
    }
    for row in settled
        .iter()
        .filter(|r| r.answer_bytes > 0 && !dropped.contains(&r.id))
    {
        if all.saturating_add(size) <= MAX_PENDING_ANSWER_BYTES {
            break;
        }
        all -= row.answer_bytes;
        tables.forget(&row.id, &row.plugin, &row.key)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use airlock_abi::wire::{CallerInfo, Deferral, Envelope};
    use serde_json::json;

    use super::{MAX_PENDING_ANSWER_BYTES, MAX_PENDING_ANSWER_BYTES_PER_PLUGIN};
    use crate::services::pending::{PendingId, PendingState, PendingStore, MAX_PENDING_ANSWER};

    /// Resolves a new entry of `plugin` with an answer of nearly [`MAX_PENDING_ANSWER`] bytes.
    fn settle_large(store: &PendingStore, plugin: &str, n: usize) -> PendingId {
        let deferral = Deferral {
            key: format!("k{n}"),
            description: String::new(),
        };
        let caller = CallerInfo::Host { principal: None };
        let id = store
            .create(plugin, "ask", deferral, caller)
            .expect("kept")
            .id;
        let answer = Envelope::Ok(json!("x".repeat(MAX_PENDING_ANSWER - 64)));
        store.resolve(&id, answer).expect("room is made");
        id
    }

    fn kept_bytes(store: &PendingStore, plugin: Option<&str>) -> usize {
        let listed = store.list().expect("listed");
        let mine = listed
            .iter()
            .filter(|e| plugin.is_none_or(|p| e.plugin == p));
        mine.map(|e| match &e.state {
            PendingState::Resolved(answer) => serde_json::to_vec(answer).expect("json").len(),
            _ => 0,
        })
        .sum()
    }

    #[test]
    fn answers_past_the_byte_budgets_drop_settled_entries_oldest_first() {
        let store = PendingStore::open(None, Duration::from_secs(60)).expect("open");
        let per_plugin = usize::try_from(MAX_PENDING_ANSWER_BYTES_PER_PLUGIN).expect("fits");
        let over = per_plugin / MAX_PENDING_ANSWER + 2;
        let ids: Vec<_> = (0..over).map(|n| settle_large(&store, "a", n)).collect();
        assert_eq!(store.get(&ids[0]), Ok(None), "the oldest made room");
        assert!(store.get(&ids[over - 1]).expect("read").is_some());
        assert!(kept_bytes(&store, Some("a")) <= per_plugin);

        let all = usize::try_from(MAX_PENDING_ANSWER_BYTES).expect("fits");
        let plugins = all / per_plugin + 1;
        let mut first_of_b = None;
        for p in 0..plugins {
            let plugin = format!("p{p}");
            for n in 0..per_plugin / MAX_PENDING_ANSWER - 1 {
                let id = settle_large(&store, &plugin, n);
                first_of_b.get_or_insert(id);
            }
        }
        assert!(kept_bytes(&store, None) <= all);
        let first_of_b = first_of_b.expect("made");
        assert!(
            store.get(&ids[over - 1]).expect("read").is_none()
                && store.get(&first_of_b).expect("read").is_none(),
            "the oldest settled of any plugin made room"
        );
    }
}
