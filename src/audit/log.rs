//! [`AuditLog`]: appends events to an [`AuditStore`], signs checkpoints, serves proofs.

use std::ops::Range;

use super::checkpoint::{Checkpoint, CheckpointSigner, SignedCheckpoint};
use super::entry::{AuditEntry, AuditEvent};
use super::error::AuditError;
use super::hash::{Hash, leaf_hash};
use super::proof::{ConsistencyProof, InclusionProof, consistency_proof, inclusion_proof};
use super::store::{AppendBatch, AuditStore, StoreReader};
use super::tree::{HashReader, hashes_to_append, tree_hash};

/// The byte range of the index inside an encoded entry (after the version byte).
const INDEX_BYTES: Range<usize> = 1..9;

/// A tamper-evident audit log over any [`AuditStore`].
///
/// Appends are atomic and ordered by the store; the tree, the checkpoints and the proofs are
/// computed here, the same for every store.
#[derive(Debug)]
pub struct AuditLog<S: AuditStore> {
    store: S,
}

impl<S: AuditStore> AuditLog<S> {
    /// A log kept in `store` (which may already hold entries).
    pub fn new(store: S) -> Self {
        Self { store }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Number of entries.
    pub fn tree_size(&self) -> Result<u64, AuditError> {
        self.store.tree_size()
    }

    /// Appends one event; returns it as stored, with its index.
    pub fn append(&self, event: AuditEvent) -> Result<AuditEntry, AuditError> {
        let index = self.append_batch(std::slice::from_ref(&event))?.start;
        Ok(AuditEntry { index, event })
    }

    /// Appends events atomically and in order: all get consecutive indexes, or none is stored.
    /// Returns their indexes.
    pub fn append_batch(&self, events: &[AuditEvent]) -> Result<Range<u64>, AuditError> {
        let mut prepared = PreparedAppend::new(events)?;
        let first = self
            .store
            .append(&mut |size, reader| prepared.build(size, reader))?;
        Ok(first..first + events.len() as u64)
    }

    /// The root hash of the first `tree_size` entries.
    pub fn root(&self, tree_size: u64) -> Result<Hash, AuditError> {
        self.check_size(tree_size)?;
        tree_hash(tree_size, &StoreReader(&self.store))
    }

    /// Signs a checkpoint of the whole log as it is now.
    pub fn checkpoint(
        &self,
        signer: &CheckpointSigner,
        now: u64,
    ) -> Result<SignedCheckpoint, AuditError> {
        Ok(self
            .checkpoint_of_size(self.store.tree_size()?, signer, now)?
            .1)
    }

    /// Signs a checkpoint of the first `size` entries (the log may have grown since `size` was
    /// read: the tree of a given size never changes).
    pub(crate) fn checkpoint_of_size(
        &self,
        size: u64,
        signer: &CheckpointSigner,
        now: u64,
    ) -> Result<(Checkpoint, SignedCheckpoint), AuditError> {
        let root = tree_hash(size, &StoreReader(&self.store))?;
        signer.sign(size, root, now)
    }

    /// Proof that entry `index` is in the tree of `tree_size` entries.
    pub fn inclusion_proof(
        &self,
        index: u64,
        tree_size: u64,
    ) -> Result<InclusionProof, AuditError> {
        self.check_size(tree_size)?;
        inclusion_proof(index, tree_size, &StoreReader(&self.store))
    }

    /// Proof that the tree of `old_size` entries is a prefix of the tree of `new_size`.
    pub fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<ConsistencyProof, AuditError> {
        self.check_size(new_size)?;
        consistency_proof(old_size, new_size, &StoreReader(&self.store))
    }

    /// The entries `range` in their binary form (docs/AUDIT.md), as hashed and signed: what
    /// [`verify`](super::verify) checks.
    pub fn store_entries(&self, range: Range<u64>) -> Result<Vec<Vec<u8>>, AuditError> {
        self.store.read_entries(range.start, range.end)
    }

    /// The entries `range`, decoded.
    pub fn entries(&self, range: Range<u64>) -> Result<Vec<AuditEntry>, AuditError> {
        self.store
            .read_entries(range.start, range.end)?
            .iter()
            .map(|bytes| AuditEntry::decode(bytes))
            .collect()
    }

    /// The entries `range` as JSON lines (one JSON object per entry, each ending in `\n`), for
    /// export to a SIEM or an archive. The binary form stays the one that is hashed and signed.
    pub fn export_json_lines(&self, range: Range<u64>) -> Result<String, AuditError> {
        let mut out = String::new();
        for entry in self.entries(range)? {
            let line = serde_json::to_string(&entry)
                .map_err(|e| AuditError::store("cannot serialize an entry to JSON", e))?;
            out.push_str(&line);
            out.push('\n');
        }
        Ok(out)
    }

    fn check_size(&self, size: u64) -> Result<(), AuditError> {
        let log_size = self.store.tree_size()?;
        if size > log_size {
            return Err(AuditError::SizeOutOfRange { size, log_size });
        }
        Ok(())
    }
}

/// Events encoded once, ready to be numbered and hashed inside a store's lock or transaction.
///
/// [`AuditLog::append_batch`] uses it through [`AuditStore::append`]; a database store that must
/// commit audit entries in the transaction of another change (the key stores do) calls
/// [`PreparedAppend::build`] itself, with the tree size and hashes its transaction sees.
#[derive(Debug, Clone)]
pub struct PreparedAppend {
    encoded: Vec<Vec<u8>>,
}

impl PreparedAppend {
    /// Validates and encodes `events` (outside any lock: only the 8 index bytes change later).
    pub fn new(events: &[AuditEvent]) -> Result<Self, AuditError> {
        let encoded = events
            .iter()
            .map(|event| {
                AuditEntry {
                    index: 0,
                    event: event.clone(),
                }
                .encode()
            })
            .collect::<Result<Vec<Vec<u8>>, AuditError>>()?;
        Ok(Self { encoded })
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.encoded.len()
    }

    /// Whether there is no event.
    pub fn is_empty(&self) -> bool {
        self.encoded.is_empty()
    }

    /// Numbers the entries from `size` and computes the stored hashes they add, reading the
    /// existing ones through `reader`. Call it again if the transaction is retried.
    pub fn build(&mut self, size: u64, reader: &dyn HashReader) -> Result<AppendBatch, AuditError> {
        let mut leaves = Vec::with_capacity(self.encoded.len());
        for (index, bytes) in (size..).zip(self.encoded.iter_mut()) {
            bytes
                .get_mut(INDEX_BYTES)
                .ok_or_else(|| AuditError::StoreContract("entry shorter than its header".into()))?
                .copy_from_slice(&index.to_be_bytes());
            leaves.push(leaf_hash(bytes));
        }
        let hashes = hashes_to_append(size, &leaves, reader)?;
        // Cloned, not moved: a store may retry a transaction and call this again.
        Ok(AppendBatch {
            entries: self.encoded.clone(),
            hashes,
        })
    }
}
