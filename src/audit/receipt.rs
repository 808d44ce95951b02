//! Erasure receipts: what a data-protection officer hands over to show a subject's key was
//! erased, and that anyone can check with the log's public key alone.

use serde::{Deserialize, Serialize};

use super::checkpoint::{Checkpoint, CheckpointSigner, CheckpointVerifier, SignedCheckpoint};
use super::entry::{Action, AuditEntry, Outcome};
use super::error::AuditError;
use super::log::AuditLog;
use super::proof::{InclusionProof, verify_inclusion};
use super::store::AuditStore;

/// An erasure entry, its inclusion proof, and a signed checkpoint the proof leads to.
///
/// Serializes to JSON as `{"entry": {...}, "proof": {...}, "checkpoint": "<checkpoint text>"}`.
/// Nothing in it names the customer beyond the subject id the application chose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureReceipt {
    /// The erasure entry.
    pub entry: AuditEntry,
    /// Proof that the entry is in the tree the checkpoint signs.
    pub proof: InclusionProof,
    /// The signed checkpoint.
    pub checkpoint: SignedCheckpoint,
}

impl<S: AuditStore> AuditLog<S> {
    /// A receipt for the erasure recorded at `index`, with a checkpoint of the log as it is now.
    pub fn erasure_receipt(
        &self,
        index: u64,
        signer: &CheckpointSigner,
        now: u64,
    ) -> Result<ErasureReceipt, AuditError> {
        let size = self.tree_size()?;
        if index >= size {
            return Err(AuditError::IndexOutOfRange {
                index,
                tree_size: size,
            });
        }
        let entry = self
            .entries(index..index + 1)?
            .pop()
            .ok_or_else(|| AuditError::StoreContract(format!("entry {index} is missing")))?;
        check_erasure(&entry)?;
        let (_, checkpoint) = self.checkpoint_of_size(size, signer, now)?;
        Ok(ErasureReceipt {
            entry,
            proof: self.inclusion_proof(index, size)?,
            checkpoint,
        })
    }
}

fn check_erasure(entry: &AuditEntry) -> Result<(), AuditError> {
    if entry.event.action != Action::SubjectErased {
        return Err(AuditError::NotAnErasure {
            index: entry.index,
            action: entry.event.action.name(),
        });
    }
    if entry.event.outcome != Outcome::Success {
        return Err(AuditError::ReceiptMismatch(
            "the erasure entry records an erasure that did not succeed",
        ));
    }
    if entry.event.subject.is_none() {
        return Err(AuditError::ReceiptMismatch(
            "the erasure entry names no subject",
        ));
    }
    Ok(())
}

/// Verifies an erasure receipt with the log's public key: the checkpoint's signature, origin and
/// time (not after `now`), that the entry is a successful subject erasure, and that the proof
/// leads from the entry's hash to the checkpoint's root at the checkpoint's size. Returns the
/// verified checkpoint.
pub fn verify_receipt(
    receipt: &ErasureReceipt,
    verifier: &CheckpointVerifier,
    now: u64,
) -> Result<Checkpoint, AuditError> {
    let checkpoint = verifier.verify(&receipt.checkpoint, now)?;
    check_erasure(&receipt.entry)?;
    if receipt.proof.leaf_index != receipt.entry.index {
        return Err(AuditError::ReceiptMismatch(
            "the proof is for another index than the entry",
        ));
    }
    if receipt.proof.tree_size != checkpoint.tree_size() {
        return Err(AuditError::ReceiptMismatch(
            "the proof is for another tree size than the checkpoint",
        ));
    }
    verify_inclusion(
        &receipt.entry.leaf_hash()?,
        receipt.entry.index,
        checkpoint.tree_size(),
        &receipt.proof.hashes,
        checkpoint.root(),
    )?;
    Ok(checkpoint)
}
