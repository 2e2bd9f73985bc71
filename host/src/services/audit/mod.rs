//! The audit log: one JSON line per capability denial and per operator action, written to the
//! file the policy names by a writer thread of its own, and emitted as a `tracing` event.
//!
//! Memory is bounded whatever a plugin does: records wait in a bounded queue, and when it is
//! full they are dropped and counted; the writer then writes one `dropped` record with the
//! count. The last records are also kept in a fixed-size ring for `/audit`.

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::SystemTime;

use parking_lot::Mutex;

use crate::error::Error;

mod record;

pub use record::{AuditOutcome, AuditRecord, AUDIT_SCHEMA};

/// Records waiting for the writer before new ones are dropped.
pub const AUDIT_QUEUE: usize = 4096;
/// Records kept in memory for `/audit`.
pub const AUDIT_RING: usize = 512;

/// The host's audit log.
#[derive(Debug)]
pub struct AuditLog {
    seq: AtomicU64,
    dropped: Arc<AtomicU64>,
    ring: Mutex<VecDeque<AuditRecord>>,
    queue: Mutex<Option<SyncSender<AuditRecord>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    path: Option<PathBuf>,
    /// Where denials, reloads and restarts are counted for the metrics, as they are recorded.
    tally: Arc<crate::observe::tally::Tally>,
}

impl AuditLog {
    /// An audit log kept in memory (and in `tracing`) only.
    pub fn in_memory() -> Self {
        Self {
            seq: AtomicU64::new(0),
            dropped: Arc::new(AtomicU64::new(0)),
            ring: Mutex::new(VecDeque::with_capacity(AUDIT_RING)),
            queue: Mutex::new(None),
            writer: Mutex::new(None),
            path: None,
            tally: Arc::default(),
        }
    }

    /// An audit log appending JSON lines to `path`.
    ///
    /// # Errors
    ///
    /// [`Error::AuditLog`] if the file cannot be opened for appending.
    pub fn to_file(path: &Path) -> Result<Self, Error> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| Error::AuditLog {
                path: path.to_owned(),
                source,
            })?;
        let (tx, rx) = mpsc::sync_channel(AUDIT_QUEUE);
        let mut log = Self::in_memory();
        log.path = Some(path.to_owned());
        let dropped = log.dropped.clone();
        let writer = std::thread::Builder::new()
            .name("airlock-audit".to_owned())
            .spawn(move || write_records(BufWriter::new(file), &rx, &dropped))
            .map_err(|source| Error::AuditLog {
                path: path.to_owned(),
                source,
            })?;
        *log.queue.lock() = Some(tx);
        *log.writer.lock() = Some(writer);
        Ok(log)
    }

    /// Where the records that are also metrics are counted.
    pub(crate) fn tally(&self) -> &Arc<crate::observe::tally::Tally> {
        &self.tally
    }

    /// The file records go to, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Records an event. Never blocks: when the writer is behind, the record is dropped and
    /// counted.
    pub fn record(
        &self,
        plugin: &str,
        generation: u64,
        capability: &str,
        outcome: AuditOutcome,
        detail: &str,
    ) {
        match outcome {
            AuditOutcome::Denied | AuditOutcome::PermissionDenied => {
                self.tally.denial(plugin, capability);
            }
            AuditOutcome::Loaded => self.tally.reload(plugin, false),
            AuditOutcome::ReloadRefused => self.tally.reload(plugin, true),
            AuditOutcome::Restarted => self.tally.restart(plugin),
            _ => {}
        }
        // Numbered under the ring's lock: the ring is in `seq` order, so `since` misses none.
        let mut ring = self.ring.lock();
        let record = AuditRecord {
            schema: AUDIT_SCHEMA,
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            time: rfc3339_now(),
            plugin: plugin.to_owned(),
            generation,
            capability: capability.to_owned(),
            outcome,
            detail: detail.to_owned(),
            caller: outcome.names_caller().then(crate::frame::caller::current),
        };
        if ring.len() == AUDIT_RING {
            ring.pop_front();
        }
        ring.push_back(record.clone());
        drop(ring);
        // One event with the record's fields, at a level fixed where it is written (as
        // `tracing` wants); a plugin's text in them is escaped, so it stays one line. (The
        // file's records are JSON, one line each already.)
        let (shown_capability, shown_detail) = (
            super::printable::printable(capability),
            super::printable::printable(detail),
        );
        macro_rules! trace_at {
            ($level:expr) => {
                tracing::event!(
                    target: "airlock::audit",
                    $level,
                    plugin,
                    generation,
                    capability = %shown_capability,
                    outcome = ?outcome,
                    seq = record.seq,
                    "{shown_detail}"
                )
            };
        }
        if matches!(
            outcome,
            AuditOutcome::Http
                | AuditOutcome::Routine
                | AuditOutcome::PendingCreated
                | AuditOutcome::PendingResolved
                | AuditOutcome::SourceInstalled
        ) {
            // A call made as allowed: recorded, not a warning (a routine that failed is also
            // warned of by its runner).
            trace_at!(tracing::Level::INFO);
        } else {
            trace_at!(tracing::Level::WARN);
        }
        if let Some(queue) = self.queue.lock().as_ref() {
            match queue.try_send(record) {
                Ok(()) => {}
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Records what happened to a plugin as a whole, not to one of its capabilities: the
    /// operator's actions on it, a reload, a restart, a removal.
    pub(crate) fn plugin_event(
        &self,
        plugin: &str,
        generation: u64,
        outcome: AuditOutcome,
        detail: impl std::fmt::Display,
    ) {
        self.record(plugin, generation, "", outcome, &detail.to_string());
    }

    /// The last `n` records, oldest first.
    pub fn tail(&self, n: usize) -> Vec<AuditRecord> {
        let ring = self.ring.lock();
        ring.iter()
            .skip(ring.len().saturating_sub(n))
            .cloned()
            .collect()
    }

    /// The records after `seq` (`None`: all) still in the ring, oldest first, for a reader that
    /// follows the log from the last `seq` it saw; a gap in the numbers is records it missed.
    pub fn since(&self, seq: Option<u64>) -> Vec<AuditRecord> {
        let ring = self.ring.lock();
        let skip = seq.map_or(0, |seq| ring.partition_point(|r| r.seq <= seq));
        ring.iter().skip(skip).cloned().collect()
    }

    /// How many records were recorded in all. Read under the ring's lock, where records are
    /// numbered and kept: every record counted is already in the ring, so a reader starting
    /// from the count and then reading [`AuditLog::since`] misses none.
    pub fn count(&self) -> u64 {
        let _ring = self.ring.lock();
        self.seq.load(Ordering::Relaxed)
    }

    /// Stops the writer after it has written what is queued, and flushes the file.
    pub fn close(&self) {
        drop(self.queue.lock().take());
        if let Some(writer) = self.writer.lock().take() {
            let _ = writer.join();
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.close();
    }
}

fn write_records(
    mut out: BufWriter<std::fs::File>,
    rx: &Receiver<AuditRecord>,
    dropped: &AtomicU64,
) {
    let mut dropped_seq = 0u64;
    while let Ok(first) = rx.recv() {
        let mut last_seq = first.seq;
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        for record in &batch {
            last_seq = last_seq.max(record.seq);
            write_line(&mut out, record);
        }
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            dropped_seq += 1;
            write_line(
                &mut out,
                &AuditRecord {
                    schema: AUDIT_SCHEMA,
                    seq: last_seq,
                    time: rfc3339_now(),
                    plugin: String::new(),
                    generation: 0,
                    capability: String::new(),
                    outcome: AuditOutcome::Dropped,
                    detail: format!(
                        "{lost} audit records dropped (queue full); dropped-report {dropped_seq}"
                    ),
                    caller: None,
                },
            );
        }
        let _ = out.flush();
        let _ = out.get_ref().sync_data();
    }
    let lost = dropped.swap(0, Ordering::Relaxed);
    if lost > 0 {
        write_line(
            &mut out,
            &AuditRecord {
                schema: AUDIT_SCHEMA,
                seq: 0,
                time: rfc3339_now(),
                plugin: String::new(),
                generation: 0,
                capability: String::new(),
                outcome: AuditOutcome::Dropped,
                detail: format!("{lost} audit records dropped (queue full)"),
                caller: None,
            },
        );
    }
    let _ = out.flush();
    let _ = out.get_ref().sync_data();
}

fn write_line(out: &mut impl Write, record: &AuditRecord) {
    if let Ok(line) = serde_json::to_string(record) {
        let _ = writeln!(out, "{line}");
    }
}

/// The current UTC time as RFC 3339 with milliseconds.
fn rfc3339_now() -> String {
    chrono::DateTime::<chrono::Utc>::from(SystemTime::now())
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_records_that_are_metrics_are_counted_as_they_are_recorded() {
        let log = AuditLog::in_memory();
        log.record(
            "p",
            1,
            "kv",
            AuditOutcome::Denied,
            "p used kv without a grant",
        );
        log.record(
            "p",
            1,
            "action:run",
            AuditOutcome::PermissionDenied,
            "denied",
        );
        log.record("p", 2, "", AuditOutcome::Loaded, "generation 2");
        log.record("p", 2, "", AuditOutcome::ReloadRefused, "refused");
        log.record("p", 2, "", AuditOutcome::Restarted, "restarted");
        log.record("p", 2, "kv", AuditOutcome::Revoked, "not a metric");
        let read = log.tally().read();
        let p = &read[0];
        assert_eq!(
            p.denials,
            vec![("action:run".to_owned(), 1), ("kv".to_owned(), 1)]
        );
        assert_eq!((p.reloads, p.reloads_refused, p.restarts), (1, 1, 1));
    }

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds() {
        let time = rfc3339_now();
        let parsed = chrono::DateTime::parse_from_rfc3339(&time).expect(&time);
        assert_eq!(parsed.offset().local_minus_utc(), 0, "{time}");
        assert!(
            time.ends_with('Z') && time.len() == "2026-12-07T11:30:00.000Z".len(),
            "{time}"
        );
    }

    #[test]
    fn a_follower_asks_again_from_the_last_seq_it_saw() {
        let log = AuditLog::in_memory();
        assert!(log.since(None).is_empty());
        for i in 0..3 {
            log.record("p", 1, "kv", AuditOutcome::Denied, &format!("{i}"));
        }
        let seqs = |records: Vec<AuditRecord>| records.iter().map(|r| r.seq).collect::<Vec<_>>();
        assert_eq!(seqs(log.since(None)), [0, 1, 2]);
        assert_eq!(seqs(log.since(Some(0))), [1, 2]);
        assert!(log.since(Some(2)).is_empty());
        assert!(log.since(Some(99)).is_empty());
        // Past the ring, a follower gets what is left, and sees the gap in the numbers.
        for i in 0..AUDIT_RING {
            log.record("p", 1, "kv", AuditOutcome::Denied, &format!("{i}"));
        }
        let left = log.since(Some(1));
        assert_eq!(left.len(), AUDIT_RING);
        assert_eq!(left[0].seq, 3);
    }

    #[test]
    fn a_flood_is_bounded_and_the_drop_is_recorded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::to_file(&path).expect("opens");
        let flood = 100_000u64;
        for i in 0..flood {
            log.record(
                "snoop",
                1,
                "kv",
                AuditOutcome::Denied,
                &format!("attempt {i}"),
            );
        }
        assert_eq!(log.tail(usize::MAX).len(), AUDIT_RING);
        log.close();
        let text = std::fs::read_to_string(&path).expect("written");
        let records: Vec<AuditRecord> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is a record"))
            .collect();
        let denied = records
            .iter()
            .filter(|r| r.outcome == AuditOutcome::Denied)
            .count() as u64;
        let dropped: u64 = records.iter().filter_map(AuditRecord::dropped_count).sum();
        assert_eq!(
            denied + dropped,
            flood,
            "every record is written or counted as dropped"
        );
    }
}
