//! Verifying a whole log, or a log's growth, against signed checkpoints.
//!
//! [`verify`] needs only the entries' bytes, the checkpoint text and the public key: an auditor
//! can run it on an export without access to the store. [`AuditLog::verify_store`] does the same
//! from inside and also compares every stored leaf hash, which names the first modified entry.

use super::checkpoint::{Checkpoint, CheckpointVerifier, SignedCheckpoint};
use super::entry::AuditEntry;
use super::error::AuditError;
use super::hash::{EMPTY_ROOT, Hash, leaf_hash};
use super::log::AuditLog;
use super::proof::{ConsistencyProof, verify_consistency};
use super::store::{AuditStore, StoreReader};
use super::tree::{Frontier, stored_hash_index, tree_hash};

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedLog {
    /// The verified checkpoint.
    pub checkpoint: Checkpoint,
    /// Entries after the checkpoint's tree size: well-formed and in place, but not yet covered by
    /// a signature.
    pub unsigned_entries: u64,
}

/// Verifies a log: the checkpoint's signature (see [`CheckpointVerifier::verify`]), then every
/// entry against it (see [`verify_entries`]).
pub fn verify<B: AsRef<[u8]>>(
    entries: &[B],
    checkpoint: &SignedCheckpoint,
    verifier: &CheckpointVerifier,
    now: u64,
) -> Result<VerifiedLog, AuditError> {
    let checkpoint = verifier.verify(checkpoint, now)?;
    let unsigned_entries = verify_entries(entries, &checkpoint)?;
    Ok(VerifiedLog {
        checkpoint,
        unsigned_entries,
    })
}

/// Recomputes the tree from the encoded entries and compares it with a verified checkpoint.
///
/// Detects a modified, deleted, inserted or reordered entry and a truncation before the
/// checkpoint's size. Where the entries themselves show where (an entry that does not decode, or
/// whose index is not its position, or a missing tail), the error names the first bad index;
/// a changed entry that kept its index is caught by the root, which cannot say which one (use
/// [`AuditLog::verify_store`] for that). Returns the number of entries past the checkpoint.
pub fn verify_entries<B: AsRef<[u8]>>(
    entries: &[B],
    checkpoint: &Checkpoint,
) -> Result<u64, AuditError> {
    let size = checkpoint.tree_size();
    if size == 0 && *checkpoint.root() != EMPTY_ROOT {
        return Err(AuditError::RootMismatch { tree_size: 0 });
    }
    let mut frontier = Frontier::default();
    let mut position = 0u64;
    for bytes in entries {
        let bytes = bytes.as_ref();
        let entry = AuditEntry::decode(bytes).map_err(|e| AuditError::EntryUndecodable {
            index: position,
            source: Box::new(e),
        })?;
        if entry.index != position {
            return Err(AuditError::EntryOutOfPlace {
                position,
                found: entry.index,
            });
        }
        if position < size {
            frontier.push(leaf_hash(bytes), |_| {});
            if position + 1 == size && frontier.root() != *checkpoint.root() {
                return Err(AuditError::RootMismatch { tree_size: size });
            }
        }
        position += 1;
    }
    if position < size {
        return Err(AuditError::Truncated {
            checkpoint_size: size,
            found: position,
        });
    }
    Ok(position - size)
}

/// Checks that a newer verified checkpoint extends a trusted one, by a consistency proof: the
/// check that makes a rollback or a rewritten history visible. Both must come from
/// [`CheckpointVerifier::verify`] (or [`verify_newer`](CheckpointVerifier::verify_newer)).
pub fn verify_checkpoint_consistency(
    trusted: &Checkpoint,
    new: &Checkpoint,
    proof: &ConsistencyProof,
) -> Result<(), AuditError> {
    if trusted.origin() != new.origin() {
        return Err(AuditError::WrongOrigin {
            expected: trusted.origin().to_owned(),
            found: super::error::excerpt(new.origin()),
        });
    }
    if new.tree_size() < trusted.tree_size() {
        return Err(AuditError::SizeRegressed {
            trusted: trusted.tree_size(),
            found: new.tree_size(),
        });
    }
    if proof.old_size != trusted.tree_size() || proof.new_size != new.tree_size() {
        return Err(AuditError::ConsistencyProof {
            old: proof.old_size,
            new: proof.new_size,
            reason: "the proof is for other sizes than the two checkpoints",
        });
    }
    if trusted.tree_size() == 0 {
        // Every tree extends the empty one; only the empty root is checked.
        return if *trusted.root() == EMPTY_ROOT && proof.hashes.is_empty() {
            Ok(())
        } else {
            Err(AuditError::ConsistencyProof {
                old: 0,
                new: new.tree_size(),
                reason: "the empty tree needs the empty root and an empty proof",
            })
        };
    }
    verify_consistency(
        trusted.tree_size(),
        new.tree_size(),
        trusted.root(),
        new.root(),
        &proof.hashes,
    )
}

impl<S: AuditStore> AuditLog<S> {
    /// Checks the store against a checkpoint kept or published elsewhere, cheaply: the store
    /// still holds at least that many entries and its stored hashes give the same root. Catches a
    /// rollback of the whole store to before the checkpoint, and a rewritten history.
    pub fn verify_against(&self, trusted: &Checkpoint) -> Result<(), AuditError> {
        let log_size = self.tree_size()?;
        if log_size < trusted.tree_size() {
            return Err(AuditError::Truncated {
                checkpoint_size: trusted.tree_size(),
                found: log_size,
            });
        }
        if tree_hash(trusted.tree_size(), &StoreReader(self.store()))? != *trusted.root() {
            return Err(AuditError::RootMismatch {
                tree_size: trusted.tree_size(),
            });
        }
        Ok(())
    }

    /// Checks every entry of the store against a checkpoint: each entry's hash against the leaf
    /// hash stored for it (naming the first modified entry), then [`verify_entries`], then the
    /// stored interior hashes against the checkpoint's root. Reads the whole log.
    pub fn verify_store(&self, checkpoint: &Checkpoint) -> Result<u64, AuditError> {
        let size = self.tree_size()?;
        let entries = self.store().read_entries(0, size)?;
        let indexes: Vec<u64> = (0..size).map(|i| stored_hash_index(0, i)).collect();
        let stored: Vec<Hash> = if indexes.is_empty() {
            Vec::new()
        } else {
            self.store().read_hashes(&indexes)?
        };
        for ((index, bytes), stored) in (0u64..).zip(&entries).zip(&stored) {
            if leaf_hash(bytes) != *stored {
                return Err(AuditError::EntryModified { index });
            }
        }
        let unsigned = verify_entries(&entries, checkpoint)?;
        self.verify_against(checkpoint)?;
        Ok(unsigned)
    }
}
