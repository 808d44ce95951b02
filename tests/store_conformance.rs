//! Every store of this crate against the same contract (`custodian::conformance`,
//! `custodian::audit::conformance`): key stores, MFA factor stores and audit stores, in memory, in
//! SQLite and in PostgreSQL; and the key manager end to end on PostgreSQL.
//!
//! PostgreSQL tests need `CUSTODIAN_PG_URL`: run `scripts/with-postgres cargo test --release
//! --all-features`. Without it they print a loud skip notice, or fail when `CI` is set.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use custodian::conformance::{factor_store, key_store};
use custodian::keys::{KeyStore, MemoryKeyStore};
use custodian::mfa::{FactorStore, MemoryFactorStore};
use std::sync::Arc;

#[test]
fn memory_factor_store() {
    factor_store::all(&|| Arc::new(MemoryFactorStore::new()) as Arc<dyn FactorStore>);
}

#[cfg(feature = "sqlite")]
#[test]
fn sqlite_factor_store() {
    let dir = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    factor_store::all(&|| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.path().join(format!("mfa-{n}.db"));
        Arc::new(custodian::mfa::SqliteFactorStore::open(path).unwrap()) as Arc<dyn FactorStore>
    });
}

#[test]
fn every_key_store_check_is_listed_once() {
    let mut names: Vec<&str> = key_store::ALL.iter().map(|(name, _)| *name).collect();
    let count = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), count);
    assert!(count >= 15, "{count} checks");
}

#[test]
fn memory_key_store() {
    key_store::all(&|| Arc::new(MemoryKeyStore::new()) as Arc<dyn KeyStore>);
}

#[cfg(feature = "sqlite")]
#[test]
fn sqlite_key_store() {
    let dir = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    key_store::all(&|| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.path().join(format!("keys-{n}.db"));
        Arc::new(custodian::keys::SqliteKeyStore::open(path).unwrap()) as Arc<dyn KeyStore>
    });
}

#[test]
fn memory_audit_store() {
    custodian::audit::conformance::check_store(custodian::audit::MemoryAuditStore::new).unwrap();
}

/// Every key store is also the audit store of its key operations: the same contract holds.
#[test]
fn memory_key_store_as_audit_store() {
    custodian::audit::conformance::check_store(custodian::keys::MemoryKeyStore::new).unwrap();
}

#[cfg(feature = "sqlite")]
#[test]
fn sqlite_key_store_as_audit_store() {
    let dir = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    custodian::audit::conformance::check_store(|| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        custodian::keys::SqliteKeyStore::open(dir.path().join(format!("keys-{n}.db"))).unwrap()
    })
    .unwrap();
}

#[cfg(feature = "sqlite")]
#[test]
fn sqlite_audit_store() {
    let dir = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    custodian::audit::conformance::check_store(|| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        custodian::audit::SqliteAuditStore::open(dir.path().join(format!("audit-{n}.db"))).unwrap()
    })
    .unwrap();
}

#[cfg(feature = "postgres")]
use crate::pg_support;

#[cfg(feature = "postgres")]
mod postgres {
    use super::pg_support;
    use custodian::EncryptionContext;
    use custodian::SecretKey;
    use custodian::conformance::{factor_store, key_store};
    use custodian::crypto::Suite;
    use custodian::keys::{
        KeyError, KeyManager, KeyStore, LocalRootKey, ManagerOptions, PgKeyStore, RotationPolicy,
    };
    use custodian::mfa::FactorStore;
    use custodian::postgres::PgFactorStore;
    use std::sync::Arc;

    const T0: u64 = 1_700_000_000;

    #[test]
    fn pg_key_store() {
        let Some(url) = pg_support::url() else { return };
        key_store::all(&|| pg_support::fresh_key_store(&url));
    }

    #[test]
    fn pg_factor_store() {
        let Some(url) = pg_support::url() else { return };
        factor_store::all(&|| {
            let schema = pg_support::fresh_schema(&url);
            let pg = pg_support::handle_in(&url, &schema);
            Arc::new(PgFactorStore::open(pg).unwrap()) as Arc<dyn FactorStore>
        });
    }

    #[test]
    fn pg_key_store_as_audit_store() {
        let Some(url) = pg_support::url() else { return };
        custodian::audit::conformance::check_store(|| {
            let schema = pg_support::fresh_schema(&url);
            custodian::keys::PgKeyStore::open(pg_support::handle_in(&url, &schema)).unwrap()
        })
        .unwrap();
    }

    #[test]
    fn pg_audit_store() {
        let Some(url) = pg_support::url() else { return };
        custodian::audit::conformance::check_store(|| {
            let schema = pg_support::fresh_schema(&url);
            custodian::audit::PgAuditStore::open(&pg_support::handle_in(&url, &schema)).unwrap()
        })
        .unwrap();
    }

    fn ctx(record: &str) -> EncryptionContext {
        EncryptionContext::new()
            .with("table", "customers")
            .unwrap()
            .with("record", record)
            .unwrap()
    }

    fn manager(store: Arc<dyn KeyStore>) -> KeyManager {
        let root = LocalRootKey::new(&SecretKey::from_bytes([0x42; 32]));
        KeyManager::with_options(store, Arc::new(root), ManagerOptions::default()).unwrap()
    }

    /// Seal, open, rotate (with subject-key rewrap), rewrap data, retire and destroy the old
    /// version, erase: the key manager on PostgreSQL, with a second manager (another server) on
    /// the same tables.
    #[test]
    fn key_manager_end_to_end_on_postgres() {
        let Some(url) = pg_support::url() else { return };
        let schema = pg_support::fresh_schema(&url);
        let server = || -> Arc<dyn KeyStore> {
            Arc::new(PgKeyStore::open(pg_support::handle_in(&url, &schema)).unwrap())
        };
        let a = manager(server());
        let policy = RotationPolicy {
            propagation_secs: 0,
            ..RotationPolicy::default()
        };
        a.create_ring("customers", Suite::default(), policy, T0)
            .unwrap();
        let b = manager(server());

        let ring_level = a
            .seal("customers", None, &ctx("1"), b"ring data", T0)
            .unwrap();
        let jane = a
            .seal(
                "customers",
                Some("cus_jane"),
                &ctx("2"),
                b"jane@example.com",
                T0,
            )
            .unwrap();
        let bob = b
            .seal(
                "customers",
                Some("cus_bob"),
                &ctx("3"),
                b"bob@example.com",
                T0,
            )
            .unwrap();
        assert_eq!(
            b.open(&ctx("2"), &jane, T0).unwrap().expose_secret(),
            b"jane@example.com"
        );
        assert_eq!(
            a.open(&ctx("3"), &bob, T0).unwrap().expose_secret(),
            b"bob@example.com"
        );

        let rotation = a.rotate("customers", T0 + 10).unwrap();
        assert_eq!(rotation.new_version, 2);
        assert_eq!(a.rewrap_subject_keys("customers", T0 + 10).unwrap(), 2);
        let store = server();
        assert!(
            store
                .subjects_wrapped_below("customers", 2, 10)
                .unwrap()
                .is_empty()
        );
        let jane = b.rewrap(&ctx("2"), &jane, T0 + 11).unwrap();
        let bob = b.rewrap(&ctx("3"), &bob, T0 + 11).unwrap();

        a.set_min_encryption_version("customers", 2, T0 + 20)
            .unwrap();
        a.set_min_decryption_version("customers", 2, T0 + 20)
            .unwrap();
        assert!(
            a.destroy_version("customers", 1, T0 + 30)
                .unwrap()
                .newly_destroyed
        );
        assert!(
            !a.destroy_version("customers", 1, T0 + 31)
                .unwrap()
                .newly_destroyed
        );
        let loaded = store.load_ring("customers").unwrap().rows.unwrap();
        assert_eq!(loaded.versions.len(), 2);
        assert_eq!(
            loaded.versions[0].wrapped_key, None,
            "destroyed material is gone"
        );

        // A new manager (a server started now) sees the destroyed version and the rewrapped data.
        let c = manager(server());
        assert!(matches!(
            c.open(&ctx("1"), &ring_level, T0 + 31),
            Err(KeyError::VersionDestroyed { version: 1, .. })
        ));
        assert_eq!(
            c.open(&ctx("2"), &jane, T0 + 31).unwrap().expose_secret(),
            b"jane@example.com"
        );
        assert_eq!(
            b.ring_info("customers", T0 + 31).unwrap().generation,
            a.ring_info("customers", T0 + 31).unwrap().generation
        );

        let erasure = a.erase_subject("customers", "cus_bob", T0 + 50).unwrap();
        assert!(erasure.newly_erased);
        let d = manager(server());
        assert!(matches!(
            d.open(&ctx("3"), &bob, T0 + 51),
            Err(KeyError::SubjectErased { .. })
        ));
        let history = d.subject_history("customers", "cus_bob").unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].erased_at, Some(T0 + 50));
        // Sealing for the id again starts generation 2 with a new key.
        let again = d
            .seal(
                "customers",
                Some("cus_bob"),
                &ctx("5"),
                b"bob again",
                T0 + 60,
            )
            .unwrap();
        // (A server that cached the erasure, like `a`, keeps refusing the id until its cache
        // entry expires: cross-server invalidation is separate work.)
        assert_eq!(
            manager(server())
                .open(&ctx("5"), &again, T0 + 60)
                .unwrap()
                .expose_secret(),
            b"bob again"
        );
        assert_eq!(d.subject_history("customers", "cus_bob").unwrap().len(), 2);
        assert_eq!(
            a.open(&ctx("2"), &jane, T0 + 61).unwrap().expose_secret(),
            b"jane@example.com"
        );
    }
}
