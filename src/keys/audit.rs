//! The key store's own audit log, and the checkpoint signing key kept in the key hierarchy.
//!
//! Every [`KeyStore`] is also an [`AuditStore`](crate::audit::AuditStore): key operations and
//! erasures append their entries in their own transaction (see [`Journal`](super::store::Journal)),
//! and the application appends its own (reveals, access decisions, MFA) to the same log.

use super::KeyError;
use super::manager::{Erasure, KeyManager};
use super::store::KeyStore;
use crate::audit::{AuditError, AuditLog, CheckpointSigner, ErasureReceipt};
use std::sync::Arc;

/// Meta key of the root-wrapped Ed25519 seed that signs audit checkpoints.
const SIGNING_KEY_META: &str = "audit_signing_key";
/// Associated data of its root wrap.
const SIGNING_KEY_AAD: &[u8] = b"custodian/v1/audit-signing-key";

impl KeyManager {
    /// The audit log kept in this manager's key store.
    pub fn audit_log(&self) -> AuditLog<Arc<dyn KeyStore>> {
        AuditLog::new(Arc::clone(&self.store))
    }

    /// The signer of the log's checkpoints, named `origin` (for example `shop.example/audit`).
    ///
    /// Its 32-byte seed is created on first use and kept in the key store wrapped by the root key,
    /// like every other key: whoever can unwrap with the root key can sign, the store alone cannot.
    /// Publish `checkpoint_signer(origin)?.verifier().verifier_key()` for auditors.
    pub fn checkpoint_signer(&self, origin: &str) -> Result<CheckpointSigner, KeyError> {
        let blob = match self.store.get_meta(SIGNING_KEY_META)? {
            Some(blob) => blob,
            None => {
                let seed = super::subject::random_key()?;
                let blob = self.root.wrap(SIGNING_KEY_AAD, &seed)?;
                self.store.put_meta_if_absent(SIGNING_KEY_META, &blob)?
            }
        };
        let seed = self.root.unwrap(SIGNING_KEY_AAD, &blob)?;
        Ok(CheckpointSigner::from_secret(origin, &seed)?)
    }

    /// An erasure receipt for `erasure` (returned by [`KeyManager::erase_subject`]): its audit
    /// entry, an inclusion proof and a checkpoint of the log as it is now, signed by `signer`.
    /// Anyone verifies it with the public key alone ([`crate::audit::verify_receipt`]).
    pub fn erasure_receipt(
        &self,
        erasure: &Erasure,
        signer: &CheckpointSigner,
        now: u64,
    ) -> Result<ErasureReceipt, KeyError> {
        let index = erasure.audit_index.ok_or_else(|| {
            KeyError::Audit(AuditError::ReceiptMismatch(
                "this erasure happened earlier (newly_erased is false); use the receipt of the first erasure",
            ))
        })?;
        let receipt = self.audit_log().erasure_receipt(index, signer, now)?;
        let event = &receipt.entry.event;
        if event.resource != erasure.ring || event.subject.as_deref() != Some(&erasure.subject) {
            return Err(KeyError::Audit(AuditError::ReceiptMismatch(
                "the audit entry at the erasure's index records another erasure",
            )));
        }
        Ok(receipt)
    }
}
