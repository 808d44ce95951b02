//! A tamper-evident audit log: RFC 9162 Merkle tree, proofs, signed checkpoints.

mod checkpoint;
mod entry;
mod error;
mod format;
mod hash;
mod log;
mod note;
mod proof;
mod receipt;
mod store;
mod tree;
mod verify;
#[cfg(test)]
mod worked_example;

pub use checkpoint::{Checkpoint, CheckpointSigner, CheckpointVerifier, SignedCheckpoint};
pub use entry::{
    Action, AuditEntry, AuditEvent, Decision, MAX_FIELDS, MAX_NAME_LEN, MAX_RESOURCE_LEN, Outcome,
};
pub use error::AuditError;
pub use hash::{EMPTY_ROOT, HASH_LEN, Hash, leaf_hash, node_hash};
pub use log::AuditLog;
pub use note::{MAX_NOTE_LEN, MAX_SIGNATURES};
pub use proof::{
    ConsistencyProof, InclusionProof, MAX_PROOF_HASHES, consistency_proof, inclusion_proof,
    verify_consistency, verify_inclusion,
};
pub use receipt::{ErasureReceipt, verify_receipt};
pub use store::{AppendBatch, AuditStore, BuildAppend, MemoryAuditStore, check_batch};
pub use tree::{
    HashReader, MAX_TREE_SIZE, hashes_to_append, stored_hash_count, stored_hash_index, tree_hash,
};
pub use verify::{VerifiedLog, verify, verify_checkpoint_consistency, verify_entries};
