//! The calls waiting for the approver's decision, in tables of their own beside the pending
//! answers: each request kept with the time it was asked, and the last id given, so that no id
//! is given twice across restarts.

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{now_ms, storage, PendingError, PendingStore};

/// Calls waiting for approval by id: when asked (unix ms, little-endian), then the request.
pub(super) const APPROVALS: TableDefinition<u64, &[u8]> = TableDefinition::new("approval");
/// The last approval id given (`last`).
pub(super) const APPROVAL_IDS: TableDefinition<&str, u64> = TableDefinition::new("approval-id");

impl PendingStore {
    /// Keeps a call waiting for approval (its request as bytes); refused past `max`.
    pub(crate) fn put_approval(
        &self,
        id: u64,
        request: &[u8],
        max: usize,
    ) -> Result<(), PendingError> {
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut approvals = txn.open_table(APPROVALS).map_err(storage)?;
            if approvals.len().map_err(storage)? >= max as u64 {
                return Err(PendingError::Refused(format!(
                    "{max} calls already wait for approval; this one was refused"
                )));
            }
            let mut value = now_ms().to_le_bytes().to_vec();
            value.extend_from_slice(request);
            approvals.insert(id, value.as_slice()).map_err(storage)?;
            let mut ids = txn.open_table(APPROVAL_IDS).map_err(storage)?;
            let last = ids.get("last").map_err(storage)?.map_or(0, |v| v.value());
            ids.insert("last", last.max(id)).map_err(storage)?;
        }
        txn.commit().map_err(storage)
    }

    /// The last approval id given, by this host or one before it on the same state.
    pub(crate) fn last_approval_id(&self) -> Result<u64, PendingError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let ids = txn.open_table(APPROVAL_IDS).map_err(storage)?;
        let last = ids.get("last").map_err(storage)?;
        Ok(last.map_or(0, |v| v.value()))
    }

    /// Takes the call waiting for approval as `id`.
    pub(crate) fn take_approval(&self, id: u64) -> Result<Option<Vec<u8>>, PendingError> {
        let txn = self.db.begin_write().map_err(storage)?;
        let taken = {
            let mut approvals = txn.open_table(APPROVALS).map_err(storage)?;
            let removed = approvals.remove(id).map_err(storage)?;
            removed.map(|v| split_approval(v.value()).1.to_vec())
        };
        txn.commit().map_err(storage)?;
        Ok(taken)
    }

    /// The calls waiting for approval, by id.
    pub(crate) fn approvals(&self) -> Result<Vec<(u64, Vec<u8>)>, PendingError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let approvals = txn.open_table(APPROVALS).map_err(storage)?;
        let mut all = Vec::new();
        for row in approvals.iter().map_err(storage)? {
            let (id, value) = row.map_err(storage)?;
            all.push((id.value(), split_approval(value.value()).1.to_vec()));
        }
        Ok(all)
    }
}

/// When a stored approval was asked (unix ms), and its request.
pub(super) fn split_approval(value: &[u8]) -> (u64, &[u8]) {
    let (asked, request) = value.split_at(value.len().min(8));
    (asked.try_into().map_or(0, u64::from_le_bytes), request)
}
