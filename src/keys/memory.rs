//! An in-memory [`KeyStore`] for tests and examples: same semantics as the SQLite store, nothing
//! persisted. Clones share the same data, which lets a test play two processes.

use super::KeyError;
use super::store::{
    CHANGE_FEED_RETENTION, Change, ChangeFeed, CommitOutcome, KeyStore, RingChange, RingRows,
    SubjectRecord, announces_change,
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
}

impl Data {
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

    fn ring_names(&self) -> Result<Vec<String>, KeyError> {
        Ok(self.lock().rings.keys().cloned().collect())
    }

    fn load_ring(&self, name: &str) -> Result<Option<RingRows>, KeyError> {
        Ok(self.lock().rings.get(name).cloned())
    }

    fn create_ring(&self, rows: &RingRows) -> Result<bool, KeyError> {
        let mut data = self.lock();
        if data.rings.contains_key(&rows.ring.name) {
            return Ok(false);
        }
        data.rings.insert(rows.ring.name.clone(), rows.clone());
        Ok(true)
    }

    fn commit_ring(&self, change: &RingChange) -> Result<CommitOutcome, KeyError> {
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

    fn load_subject(&self, ring: &str, subject: &str) -> Result<Option<SubjectRecord>, KeyError> {
        Ok(self
            .lock()
            .subjects
            .range(
                (ring.to_owned(), subject.to_owned(), 0)
                    ..=(ring.to_owned(), subject.to_owned(), u64::MAX),
            )
            .next_back()
            .map(|(_, s)| s.clone()))
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

    fn insert_subjects(&self, rows: &[SubjectRecord]) -> Result<Vec<bool>, KeyError> {
        let mut data = self.lock();
        Ok(rows
            .iter()
            .map(|row| {
                let key = (row.ring.clone(), row.subject.clone(), row.generation);
                match data.subjects.entry(key) {
                    std::collections::btree_map::Entry::Occupied(_) => false,
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        slot.insert(row.clone());
                        if announces_change(row) {
                            data.announce(&row.ring, Some(&row.subject));
                        }
                        true
                    }
                }
            })
            .collect())
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

    fn erase_subject(&self, tombstone: &SubjectRecord) -> Result<bool, KeyError> {
        let mut data = self.lock();
        let key = (
            tombstone.ring.clone(),
            tombstone.subject.clone(),
            tombstone.generation,
        );
        match data.subjects.get_mut(&key) {
            Some(existing) if existing.is_live() => {
                *existing = tombstone.clone();
                data.announce(&tombstone.ring, Some(&tombstone.subject));
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn subjects_wrapped_below(
        &self,
        ring: &str,
        version: u32,
        limit: usize,
    ) -> Result<Vec<SubjectRecord>, KeyError> {
        Ok(self
            .lock()
            .subjects
            .values()
            .filter(|s| s.ring == ring && s.is_live() && s.wrapped_by < version)
            .take(limit)
            .cloned()
            .collect())
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

impl fmt::Debug for MemoryKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let data = self.lock();
        f.debug_struct("MemoryKeyStore")
            .field("rings", &data.rings.len())
            .field("subject_rows", &data.subjects.len())
            .finish()
    }
}
