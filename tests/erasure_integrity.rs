//! Erasure that holds: tampering with the SQLite file directly (restoring rows, deleting
//! tombstones, rolling back single rows) is refused as tampering, an erasure and its audit entry
//! commit together, and the purge of erased key bytes from the files is reported truthfully while
//! readers hold older snapshots.

use custodian::SecretKey;
use custodian::audit::{Action, CheckpointVerifier, verify_receipt};
use custodian::crypto::Suite;
use custodian::envelope::EncryptionContext;
use custodian::keys::{
    KeyError, KeyManager, KeyStore, LocalRootKey, ManagerOptions, RotationPolicy, SqliteKeyStore,
};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const T0: u64 = 1_700_000_000;
const RING: &str = "customers";

fn ctx(record: &str) -> EncryptionContext {
    EncryptionContext::new()
        .with("table", "customers")
        .unwrap()
        .with("record", record)
        .unwrap()
        .with("field", "email")
        .unwrap()
}

fn root() -> LocalRootKey {
    LocalRootKey::new(&SecretKey::from_bytes([0x42; 32]))
}

/// A manager on the file, as a freshly started process would open it (empty caches).
fn manager(path: &Path) -> Result<KeyManager, KeyError> {
    let store: Arc<dyn KeyStore> = Arc::new(SqliteKeyStore::open(path)?);
    KeyManager::with_options(
        store,
        Arc::new(root()),
        ManagerOptions {
            change_feed_poll_ms: 0,
            ..ManagerOptions::default()
        },
    )
}

fn policy() -> RotationPolicy {
    RotationPolicy {
        propagation_secs: 0,
        ..RotationPolicy::default()
    }
}

struct Shop {
    _dir: tempfile::TempDir,
    path: PathBuf,
    keys: KeyManager,
    sealed: Vec<u8>,
}

/// A store with a ring and one customer's sealed e-mail.
fn shop() -> Shop {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.db");
    let keys = manager(&path).unwrap();
    keys.create_ring(RING, Suite::default(), policy(), T0)
        .unwrap();
    let sealed = keys
        .seal(RING, Some("cus_1"), &ctx("1"), b"jane@example.com", T0)
        .unwrap();
    Shop {
        _dir: dir,
        path,
        keys,
        sealed,
    }
}

fn is_tampered<T: std::fmt::Debug>(result: &Result<T, KeyError>) -> bool {
    matches!(result, Err(KeyError::Tampered { .. }))
}

/// What a new process gets when it opens the sealed value.
fn open_fresh(shop: &Shop) -> Result<Vec<u8>, KeyError> {
    let keys = manager(&shop.path)?;
    keys.open(&ctx("1"), &shop.sealed, T0 + 100)
        .map(|p| p.expose_secret().to_vec())
}

type SubjectColumns = (u32, Option<Vec<u8>>, Option<i64>, Vec<u8>);

fn subject_row(conn: &Connection) -> SubjectColumns {
    conn.query_row(
        "SELECT wrapped_by, wrapped_key, erased_at, mac FROM subject_keys WHERE subject = 'cus_1'",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )
    .unwrap()
}

#[test]
fn an_untampered_store_opens_and_erases_normally() {
    let shop = shop();
    assert_eq!(open_fresh(&shop).unwrap(), b"jane@example.com");
    let erasure = shop.keys.erase_subject(RING, "cus_1", T0 + 10).unwrap();
    assert!(erasure.newly_erased);
    assert!(erasure.purged, "no reader holds an older snapshot");
    assert!(matches!(
        open_fresh(&shop),
        Err(KeyError::SubjectErased { .. })
    ));
}

#[test]
fn a_restored_subject_row_is_refused_not_served() {
    let shop = shop();
    let conn = Connection::open(&shop.path).unwrap();
    let (wrapped_by, wrapped_key, _, mac) = subject_row(&conn);
    shop.keys.erase_subject(RING, "cus_1", T0 + 10).unwrap();
    // Someone with write access to the file puts the live row back (from a backup).
    conn.execute(
        "UPDATE subject_keys SET wrapped_by = ?1, wrapped_key = ?2, erased_at = NULL, mac = ?3
         WHERE subject = 'cus_1'",
        rusqlite::params![wrapped_by, wrapped_key, mac],
    )
    .unwrap();
    let result = open_fresh(&shop);
    assert!(is_tampered(&result), "{result:?}");
}

#[test]
fn a_deleted_tombstone_is_refused_and_no_new_generation_is_created() {
    let shop = shop();
    shop.keys.erase_subject(RING, "cus_1", T0 + 10).unwrap();
    let conn = Connection::open(&shop.path).unwrap();
    conn.execute("DELETE FROM subject_keys WHERE subject = 'cus_1'", [])
        .unwrap();
    let result = open_fresh(&shop);
    assert!(is_tampered(&result), "{result:?}");
    // The running manager cached the erasure; sealing again must not quietly start generation 1.
    let sealed = shop
        .keys
        .seal(RING, Some("cus_1"), &ctx("1"), b"new", T0 + 20);
    assert!(is_tampered(&sealed), "{sealed:?}");
    let rows: i64 = conn
        .query_row(
            "SELECT count(*) FROM subject_keys WHERE subject = 'cus_1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 0, "nothing was written");
}

#[test]
fn a_ring_row_rolled_back_across_set_policy_is_refused() {
    let shop = shop();
    let conn = Connection::open(&shop.path).unwrap();
    let old: (i64, Option<i64>, i64, Vec<u8>) = conn
        .query_row(
            "SELECT generation, max_age_secs, max_encryptions, mac FROM rings WHERE name = ?1",
            [RING],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    let stricter = RotationPolicy {
        max_age_secs: Some(3_600),
        ..policy()
    };
    shop.keys.set_policy(RING, stricter, T0 + 10).unwrap();
    conn.execute(
        "UPDATE rings SET generation = ?1, max_age_secs = ?2, max_encryptions = ?3, mac = ?4
         WHERE name = ?5",
        rusqlite::params![old.0, old.1, old.2, old.3, RING],
    )
    .unwrap();
    let keys = manager(&shop.path).unwrap();
    let info = keys.ring_info(RING, T0 + 20);
    assert!(is_tampered(&info), "{info:?}");
}

#[test]
fn the_ledger_row_rolled_back_alone_is_refused() {
    let shop = shop();
    let conn = Connection::open(&shop.path).unwrap();
    let old: (i64, Vec<u8>, Vec<u8>) = conn
        .query_row("SELECT counter, body, mac FROM ledger", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    shop.keys.erase_subject(RING, "cus_1", T0 + 10).unwrap();
    conn.execute(
        "UPDATE ledger SET counter = ?1, body = ?2, mac = ?3",
        rusqlite::params![old.0, old.1, old.2],
    )
    .unwrap();
    let result = manager(&shop.path).map(|_| ());
    assert!(is_tampered(&result), "{result:?}");
}

/// The ledger's own MAC is what stops an edit of its body: an erasure undone by putting the live
/// subject row back and the tombstone count it had before (the counter and MAC left as they are)
/// would otherwise agree with itself.
#[test]
fn an_erasure_undone_by_editing_the_ledger_body_is_refused() {
    let shop = shop();
    let conn = Connection::open(&shop.path).unwrap();
    let (wrapped_by, wrapped_key, _, mac) = subject_row(&conn);
    let old_body: Vec<u8> = conn
        .query_row("SELECT body FROM ledger", [], |r| r.get(0))
        .unwrap();
    shop.keys.erase_subject(RING, "cus_1", T0 + 10).unwrap();
    conn.execute(
        "UPDATE subject_keys SET wrapped_by = ?1, wrapped_key = ?2, erased_at = NULL, mac = ?3
         WHERE subject = 'cus_1'",
        rusqlite::params![wrapped_by, wrapped_key, mac],
    )
    .unwrap();
    conn.execute("UPDATE ledger SET body = ?1", [&old_body])
        .unwrap();
    let result = open_fresh(&shop);
    assert!(is_tampered(&result), "{result:?}");
}

#[test]
fn a_deleted_ledger_is_refused() {
    let shop = shop();
    let conn = Connection::open(&shop.path).unwrap();
    conn.execute("DELETE FROM ledger", []).unwrap();
    let result = manager(&shop.path).map(|_| ());
    assert!(is_tampered(&result), "{result:?}");
}

/// Rolling back the ledger *together with* the ring rows it covers gives an older state that is
/// consistent in itself: a manager that saw the newer ledger refuses it; a new process cannot
/// tell from the store alone (docs/KEYSTORE.md), which is what the audit checkpoint is for.
#[test]
fn a_consistent_multi_row_rollback_is_refused_by_a_manager_that_saw_newer() {
    let shop = shop();
    let conn = Connection::open(&shop.path).unwrap();
    // Copy the three tables aside, rotate, then put the copies back.
    conn.execute_batch(
        "CREATE TABLE old_ledger AS SELECT * FROM ledger;
         CREATE TABLE old_rings AS SELECT * FROM rings;
         CREATE TABLE old_versions AS SELECT * FROM ring_versions;",
    )
    .unwrap();
    shop.keys.rotate(RING, T0 + 10).unwrap();
    conn.execute_batch(
        "PRAGMA foreign_keys = OFF;
         DELETE FROM ledger; INSERT INTO ledger SELECT * FROM old_ledger;
         DELETE FROM rings; INSERT INTO rings SELECT * FROM old_rings;
         DELETE FROM ring_versions; INSERT INTO ring_versions SELECT * FROM old_versions;",
    )
    .unwrap();
    // The running manager saw the newer ledger.
    let info = shop.keys.ring_info(RING, T0 + 20);
    assert!(is_tampered(&info), "{info:?}");
    // A new process sees an older, consistent store: the stated limit.
    let fresh = manager(&shop.path).unwrap();
    assert_eq!(fresh.ring_info(RING, T0 + 20).unwrap().primary_version, 1);
}

#[test]
fn a_whole_file_rollback_is_caught_against_a_checkpoint_kept_elsewhere() {
    let shop = shop();
    let copy = shop.path.with_extension("backup");
    assert!(shop.keys.purge(Duration::from_secs(5)).unwrap());
    std::fs::copy(&shop.path, &copy).unwrap();
    shop.keys.erase_subject(RING, "cus_1", T0 + 10).unwrap();
    let signer = shop.keys.checkpoint_signer("shop.example/audit").unwrap();
    let signed = shop.keys.audit_log().checkpoint(&signer, T0 + 10).unwrap();
    let verifier =
        CheckpointVerifier::from_verifier_key(&signer.verifier().verifier_key()).unwrap();
    let checkpoint = verifier.verify(&signed, T0 + 10).unwrap();
    drop(shop.keys);
    // The backup from before the erasure replaces the file.
    std::fs::copy(&copy, &shop.path).unwrap();
    let restored = manager(&shop.path).unwrap();
    assert_eq!(
        restored
            .open(&ctx("1"), &shop.sealed, T0 + 20)
            .unwrap()
            .expose_secret(),
        b"jane@example.com",
        "inside the file, the old state is consistent"
    );
    let refused = restored.audit_log().verify_against(&checkpoint);
    assert!(refused.is_err(), "the checkpoint exposes the rollback");
}

#[test]
fn a_store_from_before_the_ledger_is_migrated_and_retires_its_old_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.db");
    // What a pre-ledger build left behind: an integrity key wrapped under the first label.
    {
        use custodian::keys::RootKeyProvider;
        let store = SqliteKeyStore::open(&path).unwrap();
        let blob = root()
            .wrap(
                b"custodian/v1/integrity-key",
                &SecretKey::from_bytes([7; 32]),
            )
            .unwrap();
        store.put_meta_if_absent("integrity_key", &blob).unwrap();
    }
    let keys = manager(&path).unwrap();
    keys.create_ring(RING, Suite::default(), policy(), T0)
        .unwrap();
    let store = SqliteKeyStore::open(&path).unwrap();
    assert_eq!(store.get_meta("integrity_key").unwrap(), None, "retired");
    assert!(store.get_meta("integrity_key_v2").unwrap().is_some());
    assert!(store.load_ledger().unwrap().ledger.is_some());
    assert!(manager(&path).unwrap().ring_info(RING, T0).is_ok());
}

/// The wrapped key bytes of `cus_1`, found anywhere in the database file or its WAL.
fn bytes_on_disk(path: &Path, needle: &[u8]) -> bool {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    [path.to_path_buf(), PathBuf::from(wal)].iter().any(|file| {
        std::fs::read(file)
            .map(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
            .unwrap_or(false)
    })
}

#[test]
fn an_erasure_under_a_reader_reports_not_purged_until_purge_confirms() {
    let shop = shop();
    let conn = Connection::open(&shop.path).unwrap();
    let wrapped = subject_row(&conn).1.unwrap();
    assert!(bytes_on_disk(&shop.path, &wrapped));
    // An online backup or a report holds a read transaction.
    let mut reader = Connection::open(&shop.path).unwrap();
    let tx = reader.transaction().unwrap();
    let _: i64 = tx
        .query_row("SELECT count(*) FROM subject_keys", [], |r| r.get(0))
        .unwrap();

    let erasure = shop.keys.erase_subject(RING, "cus_1", T0 + 10).unwrap();
    assert!(erasure.newly_erased);
    assert!(
        !erasure.purged,
        "the reader's snapshot still needs the old pages"
    );
    assert!(
        bytes_on_disk(&shop.path, &wrapped),
        "and indeed the bytes are still in the files"
    );
    assert!(!shop.keys.purge(Duration::from_millis(100)).unwrap());

    drop(tx);
    drop(reader);
    assert!(shop.keys.purge(Duration::from_secs(5)).unwrap());
    assert!(
        !bytes_on_disk(&shop.path, &wrapped),
        "after a confirmed purge the wrapped key is in neither file"
    );
}

#[test]
fn destroy_version_under_a_reader_reports_not_purged_until_purge_confirms() {
    let shop = shop();
    shop.keys.rotate(RING, T0 + 10).unwrap();
    shop.keys.rewrap_subject_keys(RING, T0 + 10).unwrap();
    shop.keys
        .set_min_encryption_version(RING, 2, T0 + 10)
        .unwrap();
    shop.keys
        .set_min_decryption_version(RING, 2, T0 + 10)
        .unwrap();
    let conn = Connection::open(&shop.path).unwrap();
    let wrapped: Vec<u8> = conn
        .query_row(
            "SELECT wrapped_key FROM ring_versions WHERE ring = ?1 AND version = 1",
            [RING],
            |r| r.get(0),
        )
        .unwrap();
    let mut reader = Connection::open(&shop.path).unwrap();
    let tx = reader.transaction().unwrap();
    let _: i64 = tx
        .query_row("SELECT count(*) FROM ring_versions", [], |r| r.get(0))
        .unwrap();
    let destruction = shop.keys.destroy_version(RING, 1, T0 + 20).unwrap();
    assert!(destruction.newly_destroyed);
    assert!(!destruction.purged);
    assert!(bytes_on_disk(&shop.path, &wrapped));
    drop(tx);
    drop(reader);
    assert!(shop.keys.purge(Duration::from_secs(5)).unwrap());
    assert!(!bytes_on_disk(&shop.path, &wrapped));
}

#[test]
fn an_erasure_and_its_audit_entry_commit_together_and_give_a_receipt() {
    let shop = shop();
    let erasure = shop
        .keys
        .erase_subject_by(RING, "cus_1", "dpo-1", T0 + 10)
        .unwrap();
    let index = erasure.audit_index.unwrap();
    let log = shop.keys.audit_log();
    let entry = log.entries(index..index + 1).unwrap().pop().unwrap();
    assert_eq!(entry.event.action, Action::SubjectErased);
    assert_eq!(entry.event.actor, "dpo-1");
    assert_eq!(entry.event.subject.as_deref(), Some("cus_1"));
    // Key operations before it were recorded too, in order.
    let actions: Vec<&'static str> = log
        .entries(0..index + 1)
        .unwrap()
        .iter()
        .map(|e| e.event.action.name())
        .collect();
    assert_eq!(
        actions,
        ["key_ring_created", "subject_created", "subject_erased"]
    );

    let signer = shop.keys.checkpoint_signer("shop.example/audit").unwrap();
    let receipt = shop
        .keys
        .erasure_receipt(&erasure, &signer, T0 + 11)
        .unwrap();
    let json = serde_json::to_string(&receipt).unwrap();
    let verifier =
        CheckpointVerifier::from_verifier_key(&signer.verifier().verifier_key()).unwrap();
    verify_receipt(&serde_json::from_str(&json).unwrap(), &verifier, T0 + 11).unwrap();
    // The same signer comes back from the key hierarchy in a new process.
    let again = manager(&shop.path)
        .unwrap()
        .checkpoint_signer("shop.example/audit")
        .unwrap();
    assert_eq!(
        again.verifier().verifier_key(),
        signer.verifier().verifier_key()
    );
}

#[test]
fn an_erasure_whose_audit_entry_cannot_be_written_is_not_committed() {
    let shop = shop();
    let conn = Connection::open(&shop.path).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_entries
         BEGIN SELECT RAISE(ABORT, 'audit disk full'); END;",
    )
    .unwrap();
    let result = shop.keys.erase_subject(RING, "cus_1", T0 + 10);
    assert!(matches!(result, Err(KeyError::Audit(_))), "{result:?}");
    conn.execute_batch("DROP TRIGGER refuse_audit;").unwrap();
    assert!(subject_row(&conn).1.is_some(), "the key is still there");
    assert_eq!(open_fresh(&shop).unwrap(), b"jane@example.com");
    // And an actor the log cannot record is refused before anything is written.
    let long = "x".repeat(300);
    assert!(
        shop.keys
            .erase_subject_by(RING, "cus_1", &long, T0 + 10)
            .is_err()
    );
    assert!(subject_row(&conn).1.is_some());
}
