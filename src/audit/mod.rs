//! A tamper-evident audit log: RFC 9162 Merkle tree, proofs, signed checkpoints.

mod error;
mod hash;
mod proof;
mod tree;

pub use error::AuditError;
pub use hash::{EMPTY_ROOT, HASH_LEN, Hash, leaf_hash, node_hash};
pub use proof::{
    ConsistencyProof, InclusionProof, MAX_PROOF_HASHES, consistency_proof, inclusion_proof,
    verify_consistency, verify_inclusion,
};
pub use tree::{
    HashReader, MAX_TREE_SIZE, hashes_to_append, stored_hash_count, stored_hash_index, tree_hash,
};
