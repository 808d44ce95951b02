//! An in-memory [`KeyStore`] for tests and examples: same semantics as the SQLite store, nothing
//! persisted. Clones share the same data, which lets a test play two processes.

use super::KeyError;
use super::store::{
    CHANGE_FEED_RETENTION, Change, ChangeFeed, CommitOutcome, Journal, KeyStore, LedgerRecord,
    LedgerView, RingChange, RingRows, RingView, SubjectRecord, SubjectView, TOMBSTONE_BUCKETS,
    announces_change, events_of_inserted, tombstone_bucket,
};
use crate::audit::{
    AuditError, AuditEvent, AuditStore, BuildAppend, Hash, HashReader, PreparedAppend, check_batch,
};
use core::fmt;
use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

#[derive(Default)]
struct Data {
    meta: BTreeMap<String, Vec<u8>>,
    rings: BTreeMap<String, RingRows>,
    /// Keyed by (ring, subject, generation).
    subjects: BTreeMap<(String, String, u64), SubjectRecord>,
    /// The change feed: the newest entries, oldest first.
    changes: VecDeque<Change>,
    /// The newest position ever appended.
    latest: u64,
    ledger: Option<LedgerRecord>,
    /// The audit log's tables.
    audit_entries: Vec<Vec<u8>>,
    audit_hashes: Vec<Hash>,
}

impl Data {
    /// The ledger with the tombstone counts of `buckets` (all of them for `None`).
    fn view(&self, buckets: Option<u16>) -> LedgerView {
        let mut counts = vec![0u64; TOMBSTONE_BUCKETS];
        for s in self.subjects.values().filter(|s| !s.is_live()) {
            if let Some(count) = counts.get_mut(usize::from(tombstone_bucket(&s.subject))) {
                *count += 1;
            }
        }
        let all = (0u16..).zip(counts);
        LedgerView {
            ledger: self.ledger.clone(),
            tombstones: match buckets {
                None => all.collect(),
                Some(bucket) => all.filter(|(b, _)| *b == bucket).collect(),
            },
        }
    }

    /// The ledger compare-and-set of `journal`, checked before anything is written.
    fn check_ledger(&self, journal: &Journal) -> Result<(), KeyError> {
        match &journal.ledger {
            Some(write) if self.ledger.as_ref().map(|l| l.counter) != write.expected_counter => {
                Err(KeyError::LedgerMoved)
            }
            _ => Ok(()),
        }
    }

    /// Writes the ledger of `journal` and appends `events` to the audit log (both already
    /// checked: the caller holds the lock, so this is one atomic step with the row changes).
    fn apply(&mut self, journal: &mut Journal, events: &[AuditEvent]) -> Result<(), KeyError> {
        let size = self.audit_entries.len() as u64;
        if !events.is_empty() {
            let batch = PreparedAppend::new(events)?.build(size, &self.audit_hashes)?;
            check_batch(size, self.audit_hashes.len() as u64, &batch)?;
            self.audit_entries.extend(batch.entries);
            self.audit_hashes.extend(batch.hashes);
        }
        journal.appended = size..self.audit_entries.len() as u64;
        if let Some(write) = &journal.ledger {
            self.ledger = Some(write.record.clone());
        }
        Ok(())
    }

    fn announce(&mut self, ring: &str, subject: Option<&str>) {
        self.latest += 1;
        self.changes.push_back(Change {
            seq: self.latest,
            ring: ring.to_owned(),
            subject: subject.map(str::to_owned),
        });
        while self.changes.len() as u64 > CHANGE_FEED_RETENTION {
            self.changes.pop_front();
        }
    }
}

/// A key store that lives in this process only.
#[derive(Clone, Default)]
pub struct MemoryKeyStore {
    data: Arc<Mutex<Data>>,
}

impl MemoryKeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl KeyStore for MemoryKeyStore {
    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, KeyError> {
        Ok(self.lock().meta.get(key).cloned())
    }

    fn put_meta_if_absent(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, KeyError> {
        Ok(self
            .lock()
            .meta
            .entry(key.to_owned())
            .or_insert_with(|| value.to_vec())
            .clone())
    }

    fn load_ledger(&self) -> Result<LedgerView, KeyError> {
        Ok(self.lock().view(None))
    }

    fn init_ledger(
        &self,
        ledger: &LedgerRecord,
        meta: (&str, &[u8]),
        retire: &str,
    ) -> Result<bool, KeyError> {
        let mut data = self.lock();
        if data.ledger.is_some() {
            return Ok(false);
        }
        data.ledger = Some(ledger.clone());
        data.meta.insert(meta.0.to_owned(), meta.1.to_vec());
        data.meta.remove(retire);
        Ok(true)
    }

    fn ring_names(&self) -> Result<Vec<String>, KeyError> {
        Ok(self.lock().rings.keys().cloned().collect())
    }

    fn load_ring(&self, name: &str) -> Result<RingView, KeyError> {
        let data = self.lock();
        Ok(RingView {
            rows: data.rings.get(name).cloned(),
            ledger: LedgerView {
                ledger: data.ledger.clone(),
                tombstones: Vec::new(),
            },
        })
    }

    fn create_ring(&self, rows: &RingRows, journal: &mut Journal) -> Result<bool, KeyError> {
        let mut data = self.lock();
        if data.rings.contains_key(&rows.ring.name) {
            return Ok(false);
        }
        data.check_ledger(journal)?;
        let events = journal.audit.clone();
        data.apply(journal, &events)?;
        data.rings.insert(rows.ring.name.clone(), rows.clone());
        Ok(true)
    }

    fn commit_ring(&self, change: &mut RingChange) -> Result<CommitOutcome, KeyError> {
        let mut data = self.lock();
        let name = change.ring.name.as_str();
        if let Some(below) = change.require_no_subject_keys_below {
            let count = data
                .subjects
                .values()
                .filter(|s| s.ring == name && s.is_live() && s.wrapped_by < below)
                .count();
            if count > 0 {
                return Ok(CommitOutcome::SubjectKeysDepend(count as u64));
            }
        }
        let Some(rows) = data.rings.get_mut(name) else {
            return Ok(CommitOutcome::Conflict);
        };
        if rows.ring.generation != change.expected_generation {
            return Ok(CommitOutcome::Conflict);
        }
        data.check_ledger(&change.journal)?;
        let events = change.journal.audit.clone();
        data.apply(&mut change.journal, &events)?;
        let Some(rows) = data.rings.get_mut(name) else {
            return Ok(CommitOutcome::Conflict);
        };
        rows.ring = change.ring.clone();
        for v in &change.versions {
            match rows.versions.iter_mut().find(|r| r.version == v.version) {
                Some(existing) => *existing = v.clone(),
                None => rows.versions.push(v.clone()),
            }
        }
        rows.versions.sort_by_key(|v| v.version);
        data.announce(name, None);
        Ok(CommitOutcome::Committed)
    }

    fn load_subject(&self, ring: &str, subject: &str) -> Result<SubjectView, KeyError> {
        let data = self.lock();
        Ok(SubjectView {
            row: data
                .subjects
                .range(
                    (ring.to_owned(), subject.to_owned(), 0)
                        ..=(ring.to_owned(), subject.to_owned(), u64::MAX),
                )
                .next_back()
                .map(|(_, s)| s.clone()),
            ledger: data.view(Some(tombstone_bucket(subject))),
        })
    }

    fn subject_history(&self, ring: &str, subject: &str) -> Result<Vec<SubjectRecord>, KeyError> {
        Ok(self
            .lock()
            .subjects
            .range(
                (ring.to_owned(), subject.to_owned(), 0)
                    ..=(ring.to_owned(), subject.to_owned(), u64::MAX),
            )
            .map(|(_, s)| s.clone())
            .collect())
    }

    fn insert_subjects(
        &self,
        rows: &[SubjectRecord],
        journal: &mut Journal,
    ) -> Result<Vec<bool>, KeyError> {
        let mut data = self.lock();
        data.check_ledger(journal)?;
        // Decide first, write after: the audit append may fail, and then nothing may change.
        let mut seen = std::collections::BTreeSet::new();
        let inserted: Vec<bool> = rows
            .iter()
            .map(|row| {
                let key = (row.ring.clone(), row.subject.clone(), row.generation);
                !data.subjects.contains_key(&key) && seen.insert(key)
            })
            .collect();
        let events = events_of_inserted(&journal.audit, &inserted);
        data.apply(journal, &events)?;
        for (row, _) in rows.iter().zip(&inserted).filter(|(_, new)| **new) {
            data.subjects.insert(
                (row.ring.clone(), row.subject.clone(), row.generation),
                row.clone(),
            );
            if announces_change(row) {
                data.announce(&row.ring, Some(&row.subject));
            }
        }
        Ok(inserted)
    }

    fn rewrap_subjects(&self, rows: &[(SubjectRecord, u32)]) -> Result<Vec<bool>, KeyError> {
        let mut data = self.lock();
        Ok(rows
            .iter()
            .map(|(row, expected_wrapped_by)| {
                let key = (row.ring.clone(), row.subject.clone(), row.generation);
                match data.subjects.get_mut(&key) {
                    Some(existing)
                        if existing.is_live() && existing.wrapped_by == *expected_wrapped_by =>
                    {
                        *existing = row.clone();
                        true
                    }
                    _ => false,
                }
            })
            .collect())
    }

    fn erase_subject(
        &self,
        tombstone: &SubjectRecord,
        journal: &mut Journal,
    ) -> Result<bool, KeyError> {
        let mut data = self.lock();
        let key = (
            tombstone.ring.clone(),
            tombstone.subject.clone(),
            tombstone.generation,
        );
        if !data.subjects.get(&key).is_some_and(SubjectRecord::is_live) {
            return Ok(false);
        }
        data.check_ledger(journal)?;
        let events = journal.audit.clone();
        data.apply(journal, &events)?;
        data.subjects.insert(key, tombstone.clone());
        data.announce(&tombstone.ring, Some(&tombstone.subject));
        Ok(true)
    }

    fn purge(&self, _wait: std::time::Duration) -> Result<bool, KeyError> {
        // Nothing outlives a removed value here but freed heap memory.
        Ok(true)
    }

    fn subjects_wrapped_below(
        &self,
        ring: &str,
        version: u32,
        limit: usize,
    ) -> Result<Vec<SubjectRecord>, KeyError> {
        let mut below: Vec<SubjectRecord> = self
            .lock()
            .subjects
            .values()
            .filter(|s| s.ring == ring && s.is_live() && s.wrapped_by < version)
            .cloned()
            .collect();
        // Oldest wrapping version first, as the trait says (stable: by subject within one).
        below.sort_by_key(|s| s.wrapped_by);
        below.truncate(limit);
        Ok(below)
    }

    fn count_subjects_wrapped_below(&self, ring: &str, version: u32) -> Result<u64, KeyError> {
        let count = self
            .lock()
            .subjects
            .values()
            .filter(|s| s.ring == ring && s.is_live() && s.wrapped_by < version)
            .count();
        Ok(count as u64)
    }

    fn changes_since(&self, after: u64, limit: usize) -> Result<ChangeFeed, KeyError> {
        let data = self.lock();
        let oldest_known = data.changes.front().map_or(data.latest + 1, |c| c.seq);
        let changes: Vec<Change> = data
            .changes
            .iter()
            .filter(|c| c.seq > after)
            .take(limit.saturating_add(1))
            .cloned()
            .collect();
        let complete = after >= data.latest
            || (after.saturating_add(1) >= oldest_known && changes.len() <= limit);
        Ok(ChangeFeed {
            latest: data.latest,
            changes: if complete { changes } else { Vec::new() },
            complete,
        })
    }
}

impl AuditStore for MemoryKeyStore {
    fn tree_size(&self) -> Result<u64, AuditError> {
        Ok(self.lock().audit_entries.len() as u64)
    }

    fn append(&self, build: &mut BuildAppend<'_>) -> Result<u64, AuditError> {
        let mut data = self.lock();
        let size = data.audit_entries.len() as u64;
        let batch = build(size, &data.audit_hashes)?;
        check_batch(size, data.audit_hashes.len() as u64, &batch)?;
        data.audit_entries.extend(batch.entries);
        data.audit_hashes.extend(batch.hashes);
        Ok(size)
    }

    fn read_entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, AuditError> {
        let data = self.lock();
        let log_size = data.audit_entries.len() as u64;
        if start > end || end > log_size {
            return Err(AuditError::SizeOutOfRange {
                size: end,
                log_size,
            });
        }
        let range = usize::try_from(start).map_err(|_| AuditError::TreeTooLarge(start))?
            ..usize::try_from(end).map_err(|_| AuditError::TreeTooLarge(end))?;
        Ok(data.audit_entries.get(range).unwrap_or_default().to_vec())
    }

    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, AuditError> {
        self.lock().audit_hashes.read_hashes(indexes)
    }
}

impl fmt::Debug for MemoryKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let data = self.lock();
        f.debug_struct("MemoryKeyStore")
            .field("rings", &data.rings.len())
            .field("subject_rows", &data.subjects.len())
            .finish()
    }
}
