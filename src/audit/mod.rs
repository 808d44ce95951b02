//! A tamper-evident audit log: who did what to which customer's data, provably.
//!
//! Entries are appended to an [`AuditStore`] and hashed into an RFC 9162 Merkle tree; the log's
//! state is published as Ed25519-signed checkpoints in the C2SP `tlog-checkpoint` text form.
//! Anyone with a checkpoint and the public key can check that an entry is in the log, that a
//! newer log extends an older one, that a list of entries is exactly the signed one, and that an
//! erasure was recorded ([`verify_receipt`]). docs/AUDIT.md describes every byte and the limits
//! (a rollback of the whole store is caught only against a checkpoint kept elsewhere).
//!
//! - [`leaf_hash`], [`node_hash`], [`tree_hash`], [`HashReader`]: the tree maths over a flat table of stored
//!   hashes that a memory, SQLite or PostgreSQL table can back;
//! - [`inclusion_proof`], [`consistency_proof`] and their pure verifiers;
//! - [`AuditEvent`], [`AuditEntry`], [`Action`]: what is recorded, in a canonical binary form;
//! - [`AuditLog`] over an [`AuditStore`]: [`MemoryAuditStore`], `SqliteAuditStore` (feature
//!   `sqlite`), `PgAuditStore` (feature `postgres`);
//! - [`CheckpointSigner`], [`CheckpointVerifier`]: signed checkpoints;
//! - [`verify`], [`verify_checkpoint_consistency`], [`ErasureReceipt`], [`verify_receipt`];
//! - [`conformance`]: the checks every [`AuditStore`] backend must pass.
//!
//! Entries take only ids, names and digests; nothing here does I/O beyond the store trait, and
//! time is always passed in as `now`.
//!
//! # Example
//!
//! ```
//! use custodian::audit::{
//!     Action, AuditEvent, AuditLog, CheckpointSigner, CheckpointVerifier, MemoryAuditStore,
//!     verify, verify_receipt,
//! };
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let now = 1_700_000_000;
//! let log = AuditLog::new(MemoryAuditStore::new());
//! let signer = CheckpointSigner::generate("shop.example/audit")?;
//!
//! log.append(
//!     AuditEvent::new(now, "staff-7", Action::FieldsRevealed { fields: vec!["email".into()] }, "customers/42")
//!         .with_subject("cus_42"),
//! )?;
//! let erasure = log.append(
//!     AuditEvent::new(now, "dpo-1", Action::SubjectErased, "customers/42").with_subject("cus_42"),
//! )?;
//!
//! // Publish the verifier key; sign a checkpoint and keep it outside the store.
//! let verifier = CheckpointVerifier::from_verifier_key(&signer.verifier().verifier_key())?;
//! let checkpoint = log.checkpoint(&signer, now)?;
//!
//! // An auditor checks an export of the entries against the checkpoint...
//! let entries = log.store_entries(0..log.tree_size()?)?;
//! let verified = verify(&entries, &checkpoint, &verifier, now)?;
//! assert_eq!(verified.checkpoint.tree_size(), 2);
//!
//! // ...and a data-protection officer hands over a receipt for the erasure.
//! let receipt = log.erasure_receipt(erasure.index, &signer, now)?;
//! let json = serde_json::to_string(&receipt)?;
//! verify_receipt(&serde_json::from_str(&json)?, &verifier, now)?;
//!
//! // A deleted entry is named.
//! let mut tampered = entries.clone();
//! tampered.remove(0);
//! let err = verify(&tampered, &checkpoint, &verifier, now).unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "entry at position 0 says it is entry 1: entries were inserted, deleted or reordered"
//! );
//! # Ok(())
//! # }
//! ```

mod checkpoint;
pub mod conformance;
mod entry;
mod error;
mod format;
mod hash;
mod log;
mod note;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
mod proof;
mod receipt;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;
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
pub use log::{AuditLog, PreparedAppend};
pub use note::{MAX_NOTE_LEN, MAX_SIGNATURES};
#[cfg(feature = "postgres")]
pub use postgres::PgAuditStore;
pub use proof::{
    ConsistencyProof, InclusionProof, MAX_PROOF_HASHES, consistency_proof, inclusion_proof,
    verify_consistency, verify_inclusion,
};
pub use receipt::{ErasureReceipt, verify_receipt};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteAuditStore;
pub use store::{AppendBatch, AuditStore, BuildAppend, MemoryAuditStore, check_batch};
pub use tree::{
    HashReader, MAX_TREE_SIZE, hashes_to_append, stored_hash_count, stored_hash_index, tree_hash,
};
pub use verify::{VerifiedLog, verify, verify_checkpoint_consistency, verify_entries};
