//! The audit log through the public API: appends (also from several threads), checkpoints,
//! proofs, the JSON-lines export, verification against every kind of tampering, and erasure
//! receipts.

use std::sync::Arc;

use custodian::SecretKey;
use custodian::audit::{
    Action, AuditError, AuditEvent, AuditLog, AuditStore, CheckpointSigner, CheckpointVerifier,
    Decision, ErasureReceipt, Hash, MemoryAuditStore, Outcome, verify,
    verify_checkpoint_consistency, verify_entries, verify_receipt,
};

const NOW: u64 = 1_700_000_000;
const ORIGIN: &str = "shop.example/audit";

fn signer() -> CheckpointSigner {
    CheckpointSigner::from_secret(ORIGIN, &SecretKey::from_bytes([42; 32])).unwrap()
}

fn event(i: u64) -> AuditEvent {
    let action = match i % 4 {
        0 => Action::FieldsRevealed {
            fields: vec!["email".into(), "phone".into()],
        },
        1 => Action::AccessDecision {
            decision: Decision::Deny,
            rule: Some("support-no-payment".into()),
            policy_digest: Hash::digest(b"policy"),
        },
        2 => Action::MfaVerified,
        _ => Action::SubjectErased,
    };
    AuditEvent::new(
        NOW + i,
        format!("staff-{}", i % 3),
        action,
        format!("customers/{i}"),
    )
    .with_subject(format!("cus_{i}"))
}

fn log_with(n: u64) -> AuditLog<MemoryAuditStore> {
    let log = AuditLog::new(MemoryAuditStore::new());
    let events: Vec<AuditEvent> = (0..n).map(event).collect();
    assert_eq!(log.append_batch(&events).unwrap(), 0..n);
    log
}

fn raw_entries(log: &AuditLog<MemoryAuditStore>) -> Vec<Vec<u8>> {
    let size = log.tree_size().unwrap();
    log.store().read_entries(0, size).unwrap()
}

#[test]
fn appends_get_consecutive_indexes_and_the_checkpoint_verifies() {
    let log = AuditLog::new(MemoryAuditStore::new());
    let first = log.append(event(0)).unwrap();
    assert_eq!(first.index, 0);
    assert_eq!(log.append_batch(&[event(1), event(2)]).unwrap(), 1..3);
    assert_eq!(log.append(event(3)).unwrap().index, 3);
    let entries = log.entries(0..4).unwrap();
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(entry.index, i as u64);
        assert_eq!(entry.event, event(i as u64));
    }
    let signer = signer();
    let checkpoint = log.checkpoint(&signer, NOW + 10).unwrap();
    let verified = verify(
        &raw_entries(&log),
        &checkpoint,
        &signer.verifier(),
        NOW + 10,
    )
    .unwrap();
    assert_eq!(verified.checkpoint.tree_size(), 4);
    assert_eq!(verified.checkpoint.root(), &log.root(4).unwrap());
    assert_eq!(verified.unsigned_entries, 0);
}

#[test]
fn an_invalid_event_in_a_batch_stores_nothing() {
    let log = log_with(3);
    let bad = AuditEvent::new(NOW, "", Action::MfaFailed, "x");
    let err = log.append_batch(&[event(3), bad]).unwrap_err();
    assert!(
        matches!(err, AuditError::InvalidField { field: "actor", .. }),
        "{err}"
    );
    assert_eq!(log.tree_size().unwrap(), 3);
}

#[test]
fn concurrent_appends_build_one_consistent_tree() {
    let log = Arc::new(AuditLog::new(MemoryAuditStore::new()));
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for i in 0..50 {
                    if i % 5 == 0 {
                        log.append_batch(&[event(t * 1000 + i), event(t * 1000 + i + 500)])
                            .unwrap();
                    } else {
                        log.append(event(t * 1000 + i)).unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let size = log.tree_size().unwrap();
    assert_eq!(size, 8 * 60);
    let signer = signer();
    let checkpoint = signer
        .verifier()
        .verify(&log.checkpoint(&signer, NOW).unwrap(), NOW)
        .unwrap();
    assert_eq!(log.verify_store(&checkpoint).unwrap(), 0);
    // Every entry's index is its position, and the stored tree equals the recomputed one.
    let entries = log.store().read_entries(0, size).unwrap();
    verify_entries(&entries, &checkpoint).unwrap();
}

#[test]
fn proofs_from_the_log_verify_against_its_checkpoints() {
    let log = log_with(100);
    let signer = signer();
    let verifier = signer.verifier();
    let old = verifier
        .verify(&log.checkpoint(&signer, NOW).unwrap(), NOW)
        .unwrap();
    log.append_batch(&(100..157).map(event).collect::<Vec<_>>())
        .unwrap();
    let new_text = log.checkpoint(&signer, NOW + 1).unwrap();
    let new = verifier.verify_newer(&new_text, &old, NOW + 1).unwrap();

    let proof = log.consistency_proof(100, 157).unwrap();
    verify_checkpoint_consistency(&old, &new, &proof).unwrap();
    // The proof for other sizes, or swapped checkpoints, do not pass.
    let other = log.consistency_proof(99, 157).unwrap();
    assert!(verify_checkpoint_consistency(&old, &new, &other).is_err());
    assert!(verify_checkpoint_consistency(&new, &old, &proof).is_err());

    for index in [0, 1, 63, 99, 100, 156] {
        let proof = log.inclusion_proof(index, 157).unwrap();
        let entry = log.entries(index..index + 1).unwrap().pop().unwrap();
        proof
            .verify(&entry.leaf_hash().unwrap(), new.root())
            .unwrap();
        assert!(
            proof
                .verify(&entry.leaf_hash().unwrap(), old.root())
                .is_err()
        );
    }
    assert!(matches!(
        log.inclusion_proof(3, 158),
        Err(AuditError::SizeOutOfRange {
            size: 158,
            log_size: 157
        })
    ));
    assert!(log.consistency_proof(10, 158).is_err());
}

#[test]
fn a_consistency_proof_exposes_a_rewritten_history() {
    let log = log_with(20);
    let signer = signer();
    let verifier = signer.verifier();
    let old = verifier
        .verify(&log.checkpoint(&signer, NOW).unwrap(), NOW)
        .unwrap();
    // A second log that shares the first 10 entries, then differs, then grows past the old size.
    let forked = log_with(10);
    let mut changed = event(10);
    changed.actor = "intruder".into();
    forked.append(changed).unwrap();
    forked
        .append_batch(&(11..30).map(event).collect::<Vec<_>>())
        .unwrap();
    let new = verifier
        .verify(&forked.checkpoint(&signer, NOW + 1).unwrap(), NOW + 1)
        .unwrap();
    let proof = forked.consistency_proof(20, 30).unwrap();
    assert!(matches!(
        verify_checkpoint_consistency(&old, &new, &proof),
        Err(AuditError::ConsistencyProof { .. })
    ));
    // And the store check at start-up sees it too.
    assert!(matches!(
        forked.verify_against(&old),
        Err(AuditError::RootMismatch { tree_size: 20 })
    ));
    // A store rolled back to before the checkpoint.
    let rolled_back = log_with(15);
    assert!(matches!(
        rolled_back.verify_against(&old),
        Err(AuditError::Truncated {
            checkpoint_size: 20,
            found: 15
        })
    ));
    log.verify_against(&old).unwrap();
}

fn checkpoint_of(log: &AuditLog<MemoryAuditStore>) -> custodian::audit::Checkpoint {
    let signer = signer();
    signer
        .verifier()
        .verify(&log.checkpoint(&signer, NOW).unwrap(), NOW)
        .unwrap()
}

#[test]
fn verification_names_the_first_bad_index() {
    let log = log_with(12);
    let checkpoint = checkpoint_of(&log);
    let good = raw_entries(&log);
    assert_eq!(verify_entries(&good, &checkpoint).unwrap(), 0);

    // Deleted entry 5: entry 6 now stands at position 5.
    let mut deleted = good.clone();
    deleted.remove(5);
    assert!(matches!(
        verify_entries(&deleted, &checkpoint),
        Err(AuditError::EntryOutOfPlace {
            position: 5,
            found: 6
        })
    ));
    // Inserted a copy of entry 3 after it.
    let mut inserted = good.clone();
    inserted.insert(4, good[3].clone());
    assert!(matches!(
        verify_entries(&inserted, &checkpoint),
        Err(AuditError::EntryOutOfPlace {
            position: 4,
            found: 3
        })
    ));
    // Swapped 7 and 8.
    let mut reordered = good.clone();
    reordered.swap(7, 8);
    assert!(matches!(
        verify_entries(&reordered, &checkpoint),
        Err(AuditError::EntryOutOfPlace {
            position: 7,
            found: 8
        })
    ));
    // Truncated to 9.
    assert!(matches!(
        verify_entries(&good[..9], &checkpoint),
        Err(AuditError::Truncated {
            checkpoint_size: 12,
            found: 9
        })
    ));
    // A byte of entry 2 changed so that it no longer decodes.
    let mut garbled = good.clone();
    garbled[2][0] = 9;
    assert!(matches!(
        verify_entries(&garbled, &checkpoint),
        Err(AuditError::EntryUndecodable { index: 2, .. })
    ));
    // A modified entry that keeps its index and decodes: caught by the root.
    let mut modified = good.clone();
    let last = modified[4].len() - 1;
    modified[4][last] = 1; // outcome success -> failure
    assert!(matches!(
        verify_entries(&modified, &checkpoint),
        Err(AuditError::RootMismatch { tree_size: 12 })
    ));
    // A consistent rewrite (indexes renumbered after a deletion) is caught by the root too.
    let renumbered: Vec<Vec<u8>> = log
        .entries(0..12)
        .unwrap()
        .into_iter()
        .filter(|e| e.index != 5)
        .enumerate()
        .map(|(i, mut e)| {
            e.index = i as u64;
            e.encode().unwrap()
        })
        .collect();
    assert!(verify_entries(&renumbered, &checkpoint).is_err());
    // Entries past the checkpoint are counted, not refused.
    log.append(event(12)).unwrap();
    assert_eq!(verify_entries(&raw_entries(&log), &checkpoint).unwrap(), 1);
}

/// A store wrapper whose entries table was edited behind the log's back.
#[derive(Debug)]
struct EditedStore {
    inner: MemoryAuditStore,
    index: u64,
    bytes: Vec<u8>,
}

impl AuditStore for EditedStore {
    fn tree_size(&self) -> Result<u64, AuditError> {
        self.inner.tree_size()
    }
    fn append(&self, build: &mut custodian::audit::BuildAppend<'_>) -> Result<u64, AuditError> {
        self.inner.append(build)
    }
    fn read_entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, AuditError> {
        let mut entries = self.inner.read_entries(start, end)?;
        if (start..end).contains(&self.index) {
            entries[(self.index - start) as usize] = self.bytes.clone();
        }
        Ok(entries)
    }
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, AuditError> {
        self.inner.read_hashes(indexes)
    }
}

#[test]
fn verify_store_names_a_modified_entry() {
    let original = log_with(30);
    let checkpoint = checkpoint_of(&original);
    let inner = MemoryAuditStore::new();
    let copy = AuditLog::new(inner);
    copy.append_batch(&(0..30).map(event).collect::<Vec<_>>())
        .unwrap();
    let mut entry = copy.entries(17..18).unwrap().pop().unwrap();
    entry.event.actor = "someone-else".into();
    let edited = AuditLog::new(EditedStore {
        inner: MemoryAuditStore::new(),
        index: 17,
        bytes: entry.encode().unwrap(),
    });
    edited
        .append_batch(&(0..30).map(event).collect::<Vec<_>>())
        .unwrap();
    assert!(matches!(
        edited.verify_store(&checkpoint),
        Err(AuditError::EntryModified { index: 17 })
    ));
    assert_eq!(copy.verify_store(&checkpoint).unwrap(), 0);
}

#[test]
fn json_lines_export_round_trips() {
    let log = log_with(6);
    let text = log.export_json_lines(0..6).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6);
    assert_eq!(
        lines[1],
        format!(
            r#"{{"index":1,"time":1700000001,"actor":"staff-1","action":{{"type":"access_decision","decision":"deny","rule":"support-no-payment","policy_digest":"{}"}},"resource":"customers/1","subject":"cus_1","outcome":"success"}}"#,
            Hash::digest(b"policy")
        )
    );
    for (line, entry) in lines.iter().zip(log.entries(0..6).unwrap()) {
        let back: custodian::audit::AuditEntry = serde_json::from_str(line).unwrap();
        assert_eq!(back, entry);
    }
}

#[test]
fn erasure_receipts_verify_with_the_public_key_alone() {
    let log = log_with(40);
    let signer = signer();
    // Entry 3 is an erasure (event(i) with i % 4 == 3).
    let receipt = log.erasure_receipt(3, &signer, NOW + 100).unwrap();
    let json = serde_json::to_string_pretty(&receipt).unwrap();

    // An auditor with the JSON and the published verifier key only.
    let verifier =
        CheckpointVerifier::from_verifier_key(&signer.verifier().verifier_key()).unwrap();
    let received: ErasureReceipt = serde_json::from_str(&json).unwrap();
    let checkpoint = verify_receipt(&received, &verifier, NOW + 100).unwrap();
    assert_eq!(checkpoint.tree_size(), 40);
    assert_eq!(received.entry.event.subject.as_deref(), Some("cus_3"));

    // Not an erasure: refused when asked for and when presented.
    assert!(matches!(
        log.erasure_receipt(2, &signer, NOW),
        Err(AuditError::NotAnErasure {
            index: 2,
            action: "mfa_verified"
        })
    ));
    let mut other = receipt.clone();
    other.entry = log.entries(2..3).unwrap().pop().unwrap();
    other.proof = log.inclusion_proof(2, 40).unwrap();
    assert!(matches!(
        verify_receipt(&other, &verifier, NOW + 100),
        Err(AuditError::NotAnErasure { .. })
    ));

    // Tampered receipts.
    let mut subject = receipt.clone();
    subject.entry.event.subject = Some("cus_4".into());
    assert!(matches!(
        verify_receipt(&subject, &verifier, NOW + 100),
        Err(AuditError::InclusionProof { .. })
    ));
    let mut index = receipt.clone();
    index.proof.leaf_index = 7;
    assert!(matches!(
        verify_receipt(&index, &verifier, NOW + 100),
        Err(AuditError::ReceiptMismatch(_))
    ));
    let mut size = receipt.clone();
    size.proof.tree_size = 41;
    assert!(matches!(
        verify_receipt(&size, &verifier, NOW + 100),
        Err(AuditError::ReceiptMismatch(_))
    ));
    let mut hashes = receipt.clone();
    hashes.proof.hashes[0] = Hash::digest(b"x");
    assert!(verify_receipt(&hashes, &verifier, NOW + 100).is_err());
    let mut failed = receipt.clone();
    failed.entry.event.outcome = Outcome::Failure;
    assert!(verify_receipt(&failed, &verifier, NOW + 100).is_err());
    // Another key, or a checkpoint from the future.
    let stranger = CheckpointSigner::from_secret(ORIGIN, &SecretKey::from_bytes([7; 32])).unwrap();
    assert!(matches!(
        verify_receipt(&receipt, &stranger.verifier(), NOW + 100),
        Err(AuditError::SignatureMissing { .. })
    ));
    assert!(matches!(
        verify_receipt(&receipt, &verifier, NOW + 99),
        Err(AuditError::TimestampInFuture { .. })
    ));
}

/// A store that, like a database retrying a busy transaction, calls the closure twice and keeps
/// only the second answer.
#[derive(Debug, Default)]
struct RetryingStore {
    inner: MemoryAuditStore,
}

impl AuditStore for RetryingStore {
    fn tree_size(&self) -> Result<u64, AuditError> {
        self.inner.tree_size()
    }
    fn append(&self, build: &mut custodian::audit::BuildAppend<'_>) -> Result<u64, AuditError> {
        let size = self.inner.tree_size()?;
        let reader: &dyn custodian::audit::HashReader = &StoreHashes(&self.inner);
        let _discarded = build(size, reader)?;
        self.inner.append(build)
    }
    fn read_entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, AuditError> {
        self.inner.read_entries(start, end)
    }
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, AuditError> {
        self.inner.read_hashes(indexes)
    }
}

struct StoreHashes<'a>(&'a MemoryAuditStore);

impl custodian::audit::HashReader for StoreHashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, AuditError> {
        self.0.read_hashes(indexes)
    }
}

#[test]
fn a_store_may_call_the_append_closure_again() {
    let retrying = AuditLog::new(RetryingStore::default());
    let plain = log_with(0);
    for chunk in (0..50).map(event).collect::<Vec<_>>().chunks(7) {
        assert_eq!(
            retrying.append_batch(chunk).unwrap(),
            plain.append_batch(chunk).unwrap()
        );
    }
    assert_eq!(retrying.root(50).unwrap(), plain.root(50).unwrap());
    assert_eq!(
        retrying.entries(0..50).unwrap(),
        plain.entries(0..50).unwrap()
    );
}

#[test]
fn the_memory_store_passes_the_conformance_suite() {
    custodian::audit::conformance::check_store(MemoryAuditStore::new).unwrap();
    custodian::audit::conformance::check_store(|| Arc::new(MemoryAuditStore::new())).unwrap();
}

/// A store that forgets to check batches and serves entry reads past its end as empty.
#[derive(Debug, Default)]
struct CarelessStore {
    entries: std::sync::Mutex<Vec<Vec<u8>>>,
    hashes: std::sync::Mutex<Vec<Hash>>,
}

impl AuditStore for CarelessStore {
    fn tree_size(&self) -> Result<u64, AuditError> {
        Ok(self.entries.lock().unwrap().len() as u64)
    }
    fn append(&self, build: &mut custodian::audit::BuildAppend<'_>) -> Result<u64, AuditError> {
        let mut entries = self.entries.lock().unwrap();
        let mut hashes = self.hashes.lock().unwrap();
        let size = entries.len() as u64;
        let batch = build(size, &*hashes)?;
        entries.extend(batch.entries);
        hashes.extend(batch.hashes);
        Ok(size)
    }
    fn read_entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, AuditError> {
        let entries = self.entries.lock().unwrap();
        Ok(entries
            .iter()
            .skip(start as usize)
            .take(end.saturating_sub(start) as usize)
            .cloned()
            .collect())
    }
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, AuditError> {
        use custodian::audit::HashReader;
        self.hashes.lock().unwrap().read_hashes(indexes)
    }
}

#[test]
fn the_conformance_suite_catches_a_careless_store() {
    let err = custodian::audit::conformance::check_store(CarelessStore::default).unwrap_err();
    assert!(
        err.to_string().contains("a_wrong_batch_is_refused"),
        "{err}"
    );
}
