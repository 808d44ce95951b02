//! "Answer from memory or say so": the probe that lets the async facade run cached operations
//! inline and send only the ones that need the store (or a remote root key provider) to the
//! blocking pool.
//!
//! A [`KeyManager`](super::KeyManager) reaches its store and its root provider only through the
//! wrappers below. Inside [`without_io`], they refuse with [`KeyError::WouldBlock`] before doing
//! anything; the caller then runs the same operation again where blocking is allowed. Everything a
//! refused operation did before the refusal is safe to do twice: cache lookups, and usage taken from
//! the process's lease (taken usage is never given back, so a retry can only over-count, the safe
//! direction).

use super::KeyError;
use super::root::RootKeyProvider;
use super::store::{
    ChangeFeed, CommitOutcome, Journal, KeyStore, LedgerRecord, LedgerView, RingChange, RingRows,
    RingView, SubjectRecord, SubjectView,
};
use crate::audit::{AuditError, AuditStore, BuildAppend, Hash};
use crate::secret::SecretKey;
use core::fmt;
use std::cell::Cell;
use std::sync::Arc;

thread_local! {
    static NO_IO: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with store and root-provider access refused on this thread.
#[cfg(feature = "tokio")]
pub(crate) fn without_io<T>(f: impl FnOnce() -> T) -> T {
    let before = NO_IO.with(|flag| flag.replace(true));
    let result = f();
    NO_IO.with(|flag| flag.set(before));
    result
}

fn allowed() -> Result<(), KeyError> {
    if NO_IO.with(Cell::get) {
        Err(KeyError::WouldBlock)
    } else {
        Ok(())
    }
}

/// A store that refuses inside [`without_io`].
pub(super) struct GuardedStore(pub(super) Arc<dyn KeyStore>);

impl fmt::Debug for GuardedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl KeyStore for GuardedStore {
    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, KeyError> {
        allowed()?;
        self.0.get_meta(key)
    }
    fn put_meta_if_absent(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, KeyError> {
        allowed()?;
        self.0.put_meta_if_absent(key, value)
    }
    fn load_ledger(&self) -> Result<LedgerView, KeyError> {
        allowed()?;
        self.0.load_ledger()
    }
    fn init_ledger(
        &self,
        ledger: &LedgerRecord,
        meta: (&str, &[u8]),
        retire: &str,
    ) -> Result<bool, KeyError> {
        allowed()?;
        self.0.init_ledger(ledger, meta, retire)
    }
    fn ring_names(&self) -> Result<Vec<String>, KeyError> {
        allowed()?;
        self.0.ring_names()
    }
    fn load_ring(&self, name: &str) -> Result<RingView, KeyError> {
        allowed()?;
        self.0.load_ring(name)
    }
    fn create_ring(&self, rows: &RingRows, journal: &mut Journal) -> Result<bool, KeyError> {
        allowed()?;
        self.0.create_ring(rows, journal)
    }
    fn commit_ring(&self, change: &mut RingChange) -> Result<CommitOutcome, KeyError> {
        allowed()?;
        self.0.commit_ring(change)
    }
    fn load_subject(&self, ring: &str, subject: &str) -> Result<SubjectView, KeyError> {
        allowed()?;
        self.0.load_subject(ring, subject)
    }
    fn subject_history(&self, ring: &str, subject: &str) -> Result<Vec<SubjectRecord>, KeyError> {
        allowed()?;
        self.0.subject_history(ring, subject)
    }
    fn insert_subjects(
        &self,
        rows: &[SubjectRecord],
        journal: &mut Journal,
    ) -> Result<Vec<bool>, KeyError> {
        allowed()?;
        self.0.insert_subjects(rows, journal)
    }
    fn rewrap_subjects(&self, rows: &[(SubjectRecord, u32)]) -> Result<Vec<bool>, KeyError> {
        allowed()?;
        self.0.rewrap_subjects(rows)
    }
    fn erase_subject(
        &self,
        tombstone: &SubjectRecord,
        journal: &mut Journal,
    ) -> Result<bool, KeyError> {
        allowed()?;
        self.0.erase_subject(tombstone, journal)
    }
    fn purge(&self, wait: std::time::Duration) -> Result<bool, KeyError> {
        allowed()?;
        self.0.purge(wait)
    }
    fn subjects_wrapped_below(
        &self,
        ring: &str,
        version: u32,
        limit: usize,
    ) -> Result<Vec<SubjectRecord>, KeyError> {
        allowed()?;
        self.0.subjects_wrapped_below(ring, version, limit)
    }
    fn count_subjects_wrapped_below(&self, ring: &str, version: u32) -> Result<u64, KeyError> {
        allowed()?;
        self.0.count_subjects_wrapped_below(ring, version)
    }
    fn changes_since(&self, after: u64, limit: usize) -> Result<ChangeFeed, KeyError> {
        allowed()?;
        self.0.changes_since(after, limit)
    }
}

fn audit_allowed() -> Result<(), AuditError> {
    allowed().map_err(|_| AuditError::Store {
        message: "the audit log needs the key store; run this on the blocking pool".into(),
        source: None,
    })
}

impl AuditStore for GuardedStore {
    fn tree_size(&self) -> Result<u64, AuditError> {
        audit_allowed()?;
        self.0.tree_size()
    }
    fn append(&self, build: &mut BuildAppend<'_>) -> Result<u64, AuditError> {
        audit_allowed()?;
        self.0.append(build)
    }
    fn read_entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, AuditError> {
        audit_allowed()?;
        self.0.read_entries(start, end)
    }
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, AuditError> {
        audit_allowed()?;
        self.0.read_hashes(indexes)
    }
}

/// A root provider that refuses inside [`without_io`] (remote providers are network calls).
pub(super) struct GuardedRoot(pub(super) Arc<dyn RootKeyProvider>);

impl fmt::Debug for GuardedRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl RootKeyProvider for GuardedRoot {
    fn wrap(&self, aad: &[u8], key: &SecretKey) -> Result<Vec<u8>, KeyError> {
        allowed()?;
        self.0.wrap(aad, key)
    }
    fn unwrap(&self, aad: &[u8], blob: &[u8]) -> Result<SecretKey, KeyError> {
        allowed()?;
        self.0.unwrap(aad, blob)
    }
}
