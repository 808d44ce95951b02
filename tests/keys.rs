//! The key hierarchy through the public API: rotation, erasure, stores, tampering, concurrency.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use custodian::SecretKey;
use custodian::crypto::Suite;
use custodian::envelope::{EncryptionContext, EnvelopeError, Header};
use custodian::keys::store;
use custodian::keys::{
    KeyError, KeyManager, KeyStore, LocalRootKey, ManagerOptions, MemoryKeyStore, RewrapOutcome,
    RotationPolicy, SqliteKeyStore, VersionState, generate_key_file,
};
use std::sync::Arc;

const T0: u64 = 1_700_000_000;

fn ctx(record: &str) -> EncryptionContext {
    EncryptionContext::new()
        .with("table", "customers")
        .unwrap()
        .with("record", record)
        .unwrap()
        .with("field", "email")
        .unwrap()
}

fn quick_policy() -> RotationPolicy {
    RotationPolicy {
        propagation_secs: 0,
        ..RotationPolicy::default()
    }
}

fn root_bytes() -> [u8; 32] {
    [0x42; 32]
}

fn root() -> LocalRootKey {
    LocalRootKey::new(&SecretKey::from_bytes(root_bytes()))
}

fn manager_on(store: Arc<dyn KeyStore>) -> KeyManager {
    KeyManager::with_options(store, Arc::new(root()), ManagerOptions::default()).unwrap()
}

fn memory_manager() -> KeyManager {
    let keys = KeyManager::new(MemoryKeyStore::new(), root()).unwrap();
    keys.create_ring("customers", Suite::default(), quick_policy(), T0)
        .unwrap();
    keys
}

fn sqlite_store(dir: &tempfile::TempDir) -> Arc<dyn KeyStore> {
    Arc::new(SqliteKeyStore::open(dir.path().join("keys.db")).unwrap())
}

#[test]
fn ring_and_subject_data_survive_rotation_rewrap_and_destroy() {
    let dir = tempfile::tempdir().unwrap();
    let keys = manager_on(sqlite_store(&dir));
    keys.create_ring("customers", Suite::default(), quick_policy(), T0)
        .unwrap();

    let shop = keys
        .seal("customers", None, &ctx("shop"), b"smtp password", T0)
        .unwrap();
    let jane = keys
        .seal(
            "customers",
            Some("cus_1"),
            &ctx("1"),
            b"jane@example.com",
            T0,
        )
        .unwrap();
    assert_eq!(
        Header::parse(&jane).unwrap().key_id().subject(),
        Some("cus_1")
    );

    let rotation = keys.rotate("customers", T0 + 10).unwrap();
    assert_eq!(rotation.new_version, 2);
    // The rotation rewraps no subject key: jane's still opens under version 1 until the job runs.
    assert_eq!(
        keys.open(&ctx("1"), &jane, T0 + 10)
            .unwrap()
            .expose_secret(),
        b"jane@example.com"
    );
    assert_eq!(
        keys.pending_subject_rewraps("customers", T0 + 10).unwrap(),
        1,
        "jane's subject key waits for the rewrap job"
    );
    assert_eq!(keys.rewrap_subject_keys("customers", T0 + 10).unwrap(), 1);
    assert_eq!(
        keys.pending_subject_rewraps("customers", T0 + 10).unwrap(),
        0
    );
    assert_eq!(keys.rewrap_subject_keys("customers", T0 + 10).unwrap(), 0);
    assert!(keys.needs_rewrap(&shop, T0 + 10).unwrap());
    assert!(keys.needs_rewrap(&jane, T0 + 10).unwrap());

    let shop2 = keys.rewrap(&ctx("shop"), &shop, T0 + 10).unwrap();
    let jane2 = keys.rewrap(&ctx("1"), &jane, T0 + 10).unwrap();
    assert_eq!(Header::parse(&jane2).unwrap().key_id().version(), 2);
    assert!(!keys.needs_rewrap(&jane2, T0 + 10).unwrap());
    // Only the key part changes: the encrypted payload and its tag are the same bytes.
    assert_eq!(jane[jane.len() - 32..], jane2[jane2.len() - 32..]);
    // Rewrapping a current value is a no-op.
    let mut again = jane2.clone();
    assert!(
        !keys
            .rewrap_in_place(&ctx("1"), &mut again, T0 + 10)
            .unwrap()
    );
    assert_eq!(again, jane2);

    keys.set_min_encryption_version("customers", 2, T0 + 20)
        .unwrap();
    keys.set_min_decryption_version("customers", 2, T0 + 20)
        .unwrap();
    assert!(matches!(
        keys.open(&ctx("1"), &jane, T0 + 20),
        Err(KeyError::VersionDisabled { version: 1, .. })
    ));
    assert!(
        keys.destroy_version("customers", 1, T0 + 30)
            .unwrap()
            .newly_destroyed
    );
    assert!(
        !keys
            .destroy_version("customers", 1, T0 + 30)
            .unwrap()
            .newly_destroyed
    );
    assert!(matches!(
        keys.open(&ctx("1"), &jane, T0 + 30),
        Err(KeyError::VersionDestroyed { version: 1, .. })
    ));
    assert_eq!(
        keys.open(&ctx("shop"), &shop2, T0 + 30)
            .unwrap()
            .expose_secret(),
        b"smtp password"
    );
    assert_eq!(
        keys.open(&ctx("1"), &jane2, T0 + 30)
            .unwrap()
            .expose_secret(),
        b"jane@example.com"
    );

    // A fresh manager (new process) sees the same state from the file.
    let fresh = manager_on(sqlite_store(&dir));
    let info = fresh.ring_info("customers", T0 + 40).unwrap();
    let states: Vec<_> = info.versions.iter().map(|v| v.state).collect();
    assert_eq!(states, [VersionState::Destroyed, VersionState::Active]);
    assert_eq!(
        fresh
            .open(&ctx("1"), &jane2, T0 + 40)
            .unwrap()
            .expose_secret(),
        b"jane@example.com"
    );
}

#[test]
fn wrong_context_fails_coarsely() {
    let keys = memory_manager();
    let sealed = keys
        .seal("customers", Some("cus_1"), &ctx("1"), b"x", T0)
        .unwrap();
    let err = keys.open(&ctx("2"), &sealed, T0).unwrap_err();
    assert!(err.is_decrypt_failure(), "{err:?}");
    // Already current: rewrap is a no-op that decrypts nothing.
    assert_eq!(keys.rewrap(&ctx("2"), &sealed, T0).unwrap(), sealed);
    keys.rotate("customers", T0).unwrap();
    let err = keys.rewrap(&ctx("2"), &sealed, T0).unwrap_err();
    assert!(err.is_decrypt_failure(), "{err:?}");
}

#[test]
fn unknown_ring_and_version_are_named() {
    let keys = memory_manager();
    let other = KeyManager::new(MemoryKeyStore::new(), root()).unwrap();
    other
        .create_ring("orders", Suite::default(), quick_policy(), T0)
        .unwrap();
    let sealed = other.seal("orders", None, &ctx("1"), b"x", T0).unwrap();
    assert!(matches!(
        keys.open(&ctx("1"), &sealed, T0),
        Err(KeyError::UnknownRing(name)) if name == "orders"
    ));
    other.rotate("orders", T0).unwrap();
    let v2 = other.seal("orders", None, &ctx("1"), b"x", T0).unwrap();
    keys.create_ring("orders", Suite::default(), quick_policy(), T0)
        .unwrap();
    assert!(matches!(
        keys.open(&ctx("1"), &v2, T0),
        Err(KeyError::UnknownVersion { version: 2, .. })
    ));
    assert!(matches!(
        keys.create_ring("orders", Suite::default(), quick_policy(), T0),
        Err(KeyError::RingExists(_))
    ));
    assert!(
        keys.create_ring("bad name", Suite::default(), quick_policy(), T0)
            .is_err()
    );
}

#[test]
fn erasure_is_distinct_permanent_and_recorded() {
    let keys = memory_manager();
    let before = keys
        .seal("customers", Some("cus_7"), &ctx("7"), b"old address", T0)
        .unwrap();
    keys.rotate("customers", T0 + 1).unwrap();
    let after_rotation = keys
        .seal(
            "customers",
            Some("cus_7"),
            &ctx("7"),
            b"new address",
            T0 + 1,
        )
        .unwrap();
    let neighbour = keys
        .seal("customers", Some("cus_8"), &ctx("8"), b"neighbour", T0 + 1)
        .unwrap();

    let erasure = keys.erase_subject("customers", "cus_7", T0 + 5).unwrap();
    assert!(erasure.newly_erased);
    assert_eq!(erasure.generation, 1);
    for sealed in [&before, &after_rotation] {
        match keys.open(&ctx("7"), sealed, T0 + 6) {
            Err(KeyError::SubjectErased {
                subject, erased_at, ..
            }) => {
                assert_eq!(subject, "cus_7");
                assert_eq!(erased_at, T0 + 5);
            }
            other => panic!("expected SubjectErased, got {other:?}"),
        }
    }
    assert!(matches!(
        keys.rewrap(&ctx("7"), &before, T0 + 6),
        Err(KeyError::SubjectErased { .. })
    ));
    // Other subjects are untouched.
    assert_eq!(
        keys.open(&ctx("8"), &neighbour, T0 + 6)
            .unwrap()
            .expose_secret(),
        b"neighbour"
    );
    // Erasing again changes nothing and keeps the first time.
    let again = keys.erase_subject("customers", "cus_7", T0 + 9).unwrap();
    assert!(!again.newly_erased);
    assert_eq!(again.erased_at, T0 + 5);

    // Re-creating the id makes a new generation; old data stays unopenable.
    let reborn = keys
        .seal(
            "customers",
            Some("cus_7"),
            &ctx("7"),
            b"new customer",
            T0 + 10,
        )
        .unwrap();
    assert_eq!(
        keys.open(&ctx("7"), &reborn, T0 + 10)
            .unwrap()
            .expose_secret(),
        b"new customer"
    );
    for sealed in [&before, &after_rotation] {
        let err = keys.open(&ctx("7"), sealed, T0 + 10).unwrap_err();
        assert!(err.is_decrypt_failure(), "{err:?}");
    }
    let history = keys.subject_history("customers", "cus_7").unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].erased_at, Some(T0 + 5));
    assert_eq!(history[1].generation, 2);
    assert_eq!(history[1].erased_at, None);

    // Erasing a subject that never had a key still leaves a record.
    let ghost = keys
        .erase_subject("customers", "cus_never", T0 + 11)
        .unwrap();
    assert!(ghost.newly_erased);
    assert_eq!(
        keys.subject_history("customers", "cus_never").unwrap()[0].erased_at,
        Some(T0 + 11)
    );
}

#[test]
fn erasure_purges_every_manager_of_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let first = manager_on(sqlite_store(&dir));
    first
        .create_ring("customers", Suite::default(), quick_policy(), T0)
        .unwrap();
    let second = manager_on(sqlite_store(&dir));
    let sealed = first
        .seal("customers", Some("cus_1"), &ctx("1"), b"x", T0)
        .unwrap();
    // Both managers now hold the subject key in their caches.
    second.open(&ctx("1"), &sealed, T0).unwrap();
    first.erase_subject("customers", "cus_1", T0 + 1).unwrap();
    assert!(matches!(
        second.open(&ctx("1"), &sealed, T0 + 1),
        Err(KeyError::SubjectErased { .. })
    ));
}

#[test]
fn erasure_in_another_process_is_seen_when_the_cache_expires() {
    let shared = MemoryKeyStore::new();
    let options = ManagerOptions {
        subject_cache_ttl_secs: 60,
        ..ManagerOptions::default()
    };
    let a = KeyManager::with_options(Arc::new(shared.clone()), Arc::new(root()), options.clone())
        .unwrap();
    a.create_ring("customers", Suite::default(), quick_policy(), T0)
        .unwrap();
    let sealed = a
        .seal("customers", Some("cus_1"), &ctx("1"), b"x", T0)
        .unwrap();
    a.open(&ctx("1"), &sealed, T0).unwrap();
    // Another process erases straight in the store (simulated: a store shared by reference only,
    // not by the process-wide cache registry, is what a second process looks like to `a`).
    let b = KeyManager::with_options(Arc::new(shared), Arc::new(root()), options).unwrap();
    b.erase_subject("customers", "cus_1", T0 + 1).unwrap();
    // `b` is in the same test process, so the registry purged `a` as well.
    assert!(matches!(
        a.open(&ctx("1"), &sealed, T0 + 1),
        Err(KeyError::SubjectErased { .. })
    ));
}

#[test]
fn thresholds_and_destroy_are_guarded() {
    let keys = KeyManager::new(MemoryKeyStore::new(), root()).unwrap();
    let policy = RotationPolicy {
        propagation_secs: 100,
        ..RotationPolicy::default()
    };
    keys.create_ring("customers", Suite::default(), policy, T0)
        .unwrap();
    keys.rotate("customers", T0 + 10).unwrap();
    assert!(matches!(
        keys.destroy_version("customers", 1, T0 + 10),
        Err(KeyError::Refused(msg)) if msg.contains("min_decryption_version")
    ));
    assert!(
        keys.set_min_decryption_version("customers", 2, T0 + 10)
            .is_err()
    );
    keys.set_min_encryption_version("customers", 2, T0 + 10)
        .unwrap();
    // Version 1 was superseded at T0 + 10; other processes may seal under it until T0 + 110.
    match keys.set_min_decryption_version("customers", 2, T0 + 109) {
        Err(KeyError::Refused(msg)) => assert!(msg.contains("propagation_secs"), "{msg}"),
        other => panic!("{other:?}"),
    }
    keys.set_min_decryption_version("customers", 2, T0 + 110)
        .unwrap();
    assert!(
        keys.set_min_encryption_version("customers", 3, T0 + 110)
            .is_err()
    );
    keys.destroy_version("customers", 1, T0 + 110).unwrap();
    assert!(
        keys.set_min_decryption_version("customers", 1, T0 + 110)
            .is_err()
    );
    assert!(
        keys.set_policy(
            "customers",
            RotationPolicy {
                max_encryptions: 0,
                ..policy
            },
            T0
        )
        .is_err()
    );
}

#[test]
fn usage_limit_rotates_automatically_or_refuses() {
    let store = Arc::new(MemoryKeyStore::new());
    let options = ManagerOptions {
        usage_block: 4,
        ..ManagerOptions::default()
    };
    let keys = KeyManager::with_options(store.clone(), Arc::new(root()), options.clone()).unwrap();
    let policy = RotationPolicy {
        max_encryptions: 10,
        ..quick_policy()
    };
    keys.create_ring("customers", Suite::default(), policy, T0)
        .unwrap();
    let sealed: Vec<_> = (0..35)
        .map(|i| {
            keys.seal("customers", None, &ctx(&i.to_string()), b"x", T0)
                .unwrap()
        })
        .collect();
    let info = keys.ring_info("customers", T0).unwrap();
    assert_eq!(info.primary_version, 4);
    for v in &info.versions {
        assert!(v.usage_reserved <= 10, "{v:?}");
    }
    for (i, s) in sealed.iter().enumerate() {
        keys.open(&ctx(&i.to_string()), s, T0).unwrap();
    }

    let strict = KeyManager::with_options(
        store,
        Arc::new(root()),
        ManagerOptions {
            auto_rotate_when_exhausted: false,
            ..options
        },
    )
    .unwrap();
    let mut exhausted = false;
    for i in 0..20 {
        match strict.seal("customers", None, &ctx(&i.to_string()), b"x", T0) {
            Ok(_) => {}
            Err(KeyError::UsageExhausted { version, .. }) => {
                assert_eq!(version, 4);
                exhausted = true;
                break;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(exhausted);
}

#[test]
fn rotate_if_due_follows_age_and_rotates_once() {
    let dir = tempfile::tempdir().unwrap();
    let keys = manager_on(sqlite_store(&dir));
    let policy = RotationPolicy {
        max_age_secs: Some(1_000),
        ..quick_policy()
    };
    keys.create_ring("customers", Suite::default(), policy, T0)
        .unwrap();
    assert!(keys.rotate_if_due("customers", T0 + 999).unwrap().is_none());
    // Four "processes" (own connections and caches) race to rotate the due ring.
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let store = sqlite_store(&dir);
            std::thread::spawn(move || {
                let keys = manager_on(store);
                keys.rotate_if_due("customers", T0 + 1_000).unwrap()
            })
        })
        .collect();
    let rotated: Vec<_> = handles
        .into_iter()
        .filter_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(rotated.len(), 1, "{rotated:?}");
    assert_eq!(
        keys.ring_info("customers", T0 + 1_000)
            .unwrap()
            .primary_version,
        2
    );
    assert_eq!(keys.rotate_due_rings(T0 + 1_500).unwrap().len(), 0);
    assert_eq!(keys.rotate_due_rings(T0 + 2_000).unwrap().len(), 1);
}

#[test]
fn concurrent_rotations_from_two_connections_lose_no_version() {
    let dir = tempfile::tempdir().unwrap();
    manager_on(sqlite_store(&dir))
        .create_ring("customers", Suite::default(), quick_policy(), T0)
        .unwrap();
    let per_thread = 8;
    let handles: Vec<_> = (0..3)
        .map(|t| {
            let store = sqlite_store(&dir);
            std::thread::spawn(move || {
                let keys = manager_on(store);
                let mut mine = Vec::new();
                for i in 0..per_thread {
                    let rotation = keys.rotate("customers", T0 + i).unwrap();
                    let record = format!("{t}-{i}");
                    let sealed = keys
                        .seal(
                            "customers",
                            Some(&format!("cus_{t}")),
                            &ctx(&record),
                            record.as_bytes(),
                            T0 + i,
                        )
                        .unwrap();
                    mine.push((rotation.new_version, record, sealed));
                }
                mine
            })
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let mut versions: Vec<u32> = results.iter().map(|(v, _, _)| *v).collect();
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(
        versions.len(),
        3 * per_thread as usize,
        "a version was handed out twice"
    );
    let keys = manager_on(sqlite_store(&dir));
    let info = keys.ring_info("customers", T0 + 100).unwrap();
    assert_eq!(info.primary_version, 1 + 3 * per_thread as u32);
    let numbers: Vec<u32> = info.versions.iter().map(|v| v.version).collect();
    assert_eq!(numbers, (1..=info.primary_version).collect::<Vec<_>>());
    for (_, record, sealed) in &results {
        assert_eq!(
            keys.open(&ctx(record), sealed, T0 + 100)
                .unwrap()
                .expose_secret(),
            record.as_bytes()
        );
    }
}

#[test]
fn threads_seal_while_another_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let keys = Arc::new(
        KeyManager::with_options(
            sqlite_store(&dir),
            Arc::new(root()),
            ManagerOptions {
                usage_block: 16,
                ..ManagerOptions::default()
            },
        )
        .unwrap(),
    );
    keys.create_ring("customers", Suite::default(), quick_policy(), T0)
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rotator = {
        let keys = Arc::clone(&keys);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || n < 5 {
                keys.rotate("customers", T0).unwrap();
                n += 1;
            }
            n
        })
    };
    let sealers: Vec<_> = (0..3)
        .map(|t| {
            let keys = Arc::clone(&keys);
            std::thread::spawn(move || {
                (0..150)
                    .map(|i| {
                        let record = format!("{t}-{i}");
                        let subject = (i % 3 != 0).then(|| format!("cus_{}", i % 7));
                        let sealed = keys
                            .seal(
                                "customers",
                                subject.as_deref(),
                                &ctx(&record),
                                record.as_bytes(),
                                T0,
                            )
                            .unwrap();
                        (record, sealed)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let sealed: Vec<_> = sealers
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rotations = rotator.join().unwrap();
    assert!(rotations >= 5);
    let versions: std::collections::BTreeSet<u32> = sealed
        .iter()
        .map(|(_, s)| Header::parse(s).unwrap().key_id().version())
        .collect();
    assert!(
        versions.len() > 1,
        "sealing never saw a rotation: {versions:?}"
    );
    let fresh = manager_on(sqlite_store(&dir));
    for (record, s) in &sealed {
        for keys in [&*keys, &fresh] {
            assert_eq!(
                keys.open(&ctx(record), s, T0).unwrap().expose_secret(),
                record.as_bytes()
            );
        }
    }
}

#[test]
fn batch_rewrap_reports_progress_and_resumes() {
    let keys = memory_manager();
    let mut rows: Vec<(u32, Vec<u8>)> = (0..20)
        .map(|i| {
            let subject = format!("cus_{}", i % 4);
            (
                i,
                keys.seal("customers", Some(&subject), &ctx(&i.to_string()), b"v", T0)
                    .unwrap(),
            )
        })
        .collect();
    keys.erase_subject("customers", "cus_3", T0).unwrap();
    keys.rotate("customers", T0 + 1).unwrap();

    // First run is interrupted after 7 values: the caller wrote back what was done.
    let first: Vec<_> = rows
        .iter()
        .take(7)
        .map(|(id, v)| (*id, ctx(&id.to_string()), v.clone()))
        .collect();
    for (id, outcome) in keys.rewrap_batch(first, T0 + 1, |_| {}) {
        if let RewrapOutcome::Rewrapped(bytes) = outcome {
            rows[id as usize].1 = bytes;
        }
    }
    // The resumed run goes over everything again.
    let mut last = None;
    let all: Vec<_> = rows
        .iter()
        .map(|(id, v)| (*id, ctx(&id.to_string()), v.clone()))
        .collect();
    let outcomes = keys.rewrap_batch(all, T0 + 1, |p| last = Some(*p));
    let last = last.unwrap();
    assert_eq!(last.seen, 20);
    // cus_3 owns records 3, 7, 11, 15, 19: erased, so they fail (and stay as they were).
    assert_eq!(last.failed, 5);
    assert_eq!(
        last.current, 6,
        "records 0..=6 except 3 were done in the first run"
    );
    assert_eq!(last.rewrapped, 9);
    for (id, outcome) in outcomes {
        match outcome {
            RewrapOutcome::Rewrapped(bytes) => rows[id as usize].1 = bytes,
            RewrapOutcome::Current => {}
            RewrapOutcome::Failed(e) => {
                assert_eq!(id % 4, 3);
                assert!(matches!(e, KeyError::SubjectErased { .. }), "{e:?}");
            }
        }
    }
    for (id, v) in &rows {
        if id % 4 != 3 {
            assert!(!keys.needs_rewrap(v, T0 + 1).unwrap());
            keys.open(&ctx(&id.to_string()), v, T0 + 1).unwrap();
        }
    }
}

#[test]
fn reencrypt_uses_a_fresh_data_key() {
    let keys = memory_manager();
    let sealed = keys
        .seal("customers", Some("cus_1"), &ctx("1"), b"payload", T0)
        .unwrap();
    keys.rotate("customers", T0).unwrap();
    let fresh = keys.reencrypt(&ctx("1"), &sealed, T0).unwrap();
    assert_eq!(Header::parse(&fresh).unwrap().key_id().version(), 2);
    assert_ne!(sealed[sealed.len() - 16..], fresh[fresh.len() - 16..]);
    assert_eq!(
        keys.open(&ctx("1"), &fresh, T0).unwrap().expose_secret(),
        b"payload"
    );
}

#[test]
fn derived_keys_are_stable_separated_and_follow_the_version_lifecycle() {
    let keys = memory_manager();
    let a = keys.derive_key("customers", 1, b"index:email", T0).unwrap();
    let b = keys.derive_key("customers", 1, b"index:email", T0).unwrap();
    let c = keys.derive_key("customers", 1, b"index:phone", T0).unwrap();
    assert_eq!(a.expose_secret(), b.expose_secret());
    assert_ne!(a.expose_secret(), c.expose_secret());
    keys.rotate("customers", T0).unwrap();
    let d = keys.derive_key("customers", 2, b"index:email", T0).unwrap();
    assert_ne!(a.expose_secret(), d.expose_secret());
    let live = keys.live_versions("customers", T0).unwrap();
    assert_eq!((live.primary, live.live.clone()), (2, vec![1, 2]));
    keys.set_min_encryption_version("customers", 2, T0).unwrap();
    keys.set_min_decryption_version("customers", 2, T0).unwrap();
    assert_eq!(keys.live_versions("customers", T0).unwrap().live, vec![2]);
    assert!(matches!(
        keys.derive_key("customers", 1, b"index:email", T0),
        Err(KeyError::VersionDisabled { .. })
    ));
    assert!(matches!(
        keys.derive_key("customers", 3, b"index:email", T0),
        Err(KeyError::UnknownVersion { .. })
    ));
    // The same store and root key derive the same key in another process.
    let again = keys.derive_key("customers", 2, b"index:email", T0).unwrap();
    assert_eq!(again.expose_secret(), d.expose_secret());
}

#[test]
fn suites_other_than_aes_gcm_work() {
    let keys = KeyManager::new(MemoryKeyStore::new(), root()).unwrap();
    keys.create_ring("chacha", Suite::XChaCha20Poly1305, quick_policy(), T0)
        .unwrap();
    let sealed = keys
        .seal("chacha", Some("cus_1"), &ctx("1"), b"x", T0)
        .unwrap();
    assert_eq!(
        Header::parse(&sealed).unwrap().suite(),
        Suite::XChaCha20Poly1305
    );
    keys.rotate("chacha", T0).unwrap();
    let rewrapped = keys.rewrap(&ctx("1"), &sealed, T0).unwrap();
    assert_eq!(
        keys.open(&ctx("1"), &rewrapped, T0)
            .unwrap()
            .expose_secret(),
        b"x"
    );
}

#[test]
fn wrong_root_key_is_refused_clearly() {
    let store = MemoryKeyStore::new();
    KeyManager::new(store.clone(), root()).unwrap();
    let err = KeyManager::new(store, LocalRootKey::random().unwrap()).unwrap_err();
    assert!(matches!(err, KeyError::RootUnwrap(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("root key the store was created with")
    );
}

#[test]
fn malformed_ciphertexts_are_errors_not_panics() {
    let keys = memory_manager();
    let sealed = keys.seal("customers", None, &ctx("1"), b"x", T0).unwrap();
    for cut in 0..sealed.len() {
        assert!(keys.open(&ctx("1"), &sealed[..cut], T0).is_err());
        assert!(keys.needs_rewrap(&sealed[..cut], T0).is_err());
    }
    let mut flipped = sealed.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert!(matches!(
        keys.open(&ctx("1"), &flipped, T0),
        Err(KeyError::Envelope(EnvelopeError::Decrypt))
    ));
}

// ---- Tampering with the SQLite file ----

struct Tamper {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl Tamper {
    fn new() -> (Self, KeyManager) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.db");
        let keys = manager_on(Arc::new(SqliteKeyStore::open(&path).unwrap()));
        keys.create_ring("customers", Suite::default(), quick_policy(), T0)
            .unwrap();
        keys.seal("customers", Some("cus_1"), &ctx("1"), b"x", T0)
            .unwrap();
        keys.seal("customers", Some("cus_2"), &ctx("2"), b"x", T0)
            .unwrap();
        keys.rotate("customers", T0 + 1).unwrap();
        (Self { _dir: dir, path }, keys)
    }

    fn sql(&self, sql: &str) {
        let conn = rusqlite::Connection::open(&self.path).unwrap();
        conn.execute_batch(sql).unwrap();
    }

    fn row(&self, version: u32) -> Vec<rusqlite::types::Value> {
        let conn = rusqlite::Connection::open(&self.path).unwrap();
        conn.query_row(
            "SELECT state, wrapped_key, created_at, superseded_at, usage_reserved, mac
             FROM ring_versions WHERE ring = 'customers' AND version = ?1",
            [version],
            |r| (0..6).map(|i| r.get(i)).collect(),
        )
        .unwrap()
    }

    fn restore(&self, version: u32, row: &[rusqlite::types::Value]) {
        let conn = rusqlite::Connection::open(&self.path).unwrap();
        conn.execute(
            "UPDATE ring_versions SET state = ?1, wrapped_key = ?2, created_at = ?3,
                 superseded_at = ?4, usage_reserved = ?5, mac = ?6
             WHERE ring = 'customers' AND version = ?7",
            rusqlite::params![row[0], row[1], row[2], row[3], row[4], row[5], version],
        )
        .unwrap();
    }

    /// Loads the ring in a fresh manager (nothing cached) and returns the error.
    fn load_error(&self) -> KeyError {
        let keys = manager_on(Arc::new(SqliteKeyStore::open(&self.path).unwrap()));
        keys.ring_info("customers", T0 + 100).unwrap_err()
    }
}

fn assert_tampered(err: KeyError, expected_version: Option<u32>) {
    match err {
        KeyError::Tampered { version, ring, .. } => {
            assert_eq!(ring, "customers");
            assert_eq!(version, expected_version);
        }
        other => panic!("expected Tampered, got {other:?}"),
    }
}

#[test]
fn tampering_state_flip_is_detected() {
    let (t, keys) = Tamper::new();
    keys.set_min_encryption_version("customers", 2, T0 + 2)
        .unwrap();
    keys.set_min_decryption_version("customers", 2, T0 + 2)
        .unwrap();
    // Re-enable the disabled version behind the manager's back.
    t.sql("UPDATE ring_versions SET state = 1 WHERE ring = 'customers' AND version = 1");
    let err = t.load_error();
    assert!(err.to_string().contains("tampering"), "{err}");
    assert_tampered(err, Some(1));
}

#[test]
fn tampering_material_swap_is_detected() {
    let (t, _keys) = Tamper::new();
    t.sql(
        "UPDATE ring_versions SET wrapped_key = CASE version
             WHEN 1 THEN (SELECT wrapped_key FROM ring_versions WHERE ring = 'customers' AND version = 2)
             ELSE (SELECT wrapped_key FROM ring_versions WHERE ring = 'customers' AND version = 1) END
         WHERE ring = 'customers'",
    );
    assert_tampered(t.load_error(), Some(1));
}

#[test]
fn tampering_version_rollback_is_detected() {
    let (t, _keys) = Tamper::new();
    let old = t.row(2);
    // A new process reserves a block of encryptions: that rewrites version 2's row.
    let other = manager_on(Arc::new(SqliteKeyStore::open(&t.path).unwrap()));
    other
        .seal("customers", None, &ctx("9"), b"x", T0 + 2)
        .unwrap();
    assert_ne!(t.row(2), old);
    t.restore(2, &old);
    assert_tampered(t.load_error(), Some(2));
}

#[test]
fn tampering_with_a_destroyed_version_is_detected() {
    let (t, keys) = Tamper::new();
    let before = t.row(1);
    keys.set_min_encryption_version("customers", 2, T0 + 2)
        .unwrap();
    keys.set_min_decryption_version("customers", 2, T0 + 2)
        .unwrap();
    keys.destroy_version("customers", 1, T0 + 2).unwrap();
    assert_eq!(t.row(1)[1], rusqlite::types::Value::Null);
    // Putting the destroyed material back (from a copy) is refused.
    t.restore(1, &before);
    assert_tampered(t.load_error(), Some(1));
}

#[test]
fn tampering_ring_row_and_deleted_versions_are_detected() {
    let (t, _keys) = Tamper::new();
    t.sql("UPDATE rings SET min_decryption_version = 2 WHERE name = 'customers'");
    assert_tampered(t.load_error(), None);

    let (t, _keys) = Tamper::new();
    t.sql("DELETE FROM ring_versions WHERE ring = 'customers' AND version = 2");
    assert_tampered(t.load_error(), Some(2));

    let (t, _keys) = Tamper::new();
    t.sql("UPDATE rings SET generation = generation + 5 WHERE name = 'customers'");
    assert_tampered(t.load_error(), None);
}

#[test]
fn tampering_with_subject_rows_is_detected() {
    let (t, _keys) = Tamper::new();
    t.sql(
        "UPDATE subject_keys SET wrapped_key = CASE subject
             WHEN 'cus_1' THEN (SELECT wrapped_key FROM subject_keys WHERE subject = 'cus_2')
             ELSE (SELECT wrapped_key FROM subject_keys WHERE subject = 'cus_1') END",
    );
    let keys = manager_on(Arc::new(SqliteKeyStore::open(&t.path).unwrap()));
    let err = keys
        .seal("customers", Some("cus_1"), &ctx("1"), b"x", T0 + 5)
        .unwrap_err();
    assert!(matches!(err, KeyError::Tampered { .. }), "{err:?}");

    let (t, keys) = Tamper::new();
    keys.erase_subject("customers", "cus_1", T0 + 5).unwrap();
    // Backdating the erasure record is detected.
    t.sql("UPDATE subject_keys SET erased_at = 1 WHERE subject = 'cus_1'");
    let err = keys.subject_history("customers", "cus_1").unwrap_err();
    assert!(matches!(err, KeyError::Tampered { .. }), "{err:?}");
}

// ---- Root key files ----

#[cfg(unix)]
#[test]
fn root_key_file_must_be_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("root.key");
    let generated = generate_key_file(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(matches!(
        generate_key_file(&path),
        Err(KeyError::RootKey(msg)) if msg.contains("refusing to overwrite")
    ));
    let loaded = LocalRootKey::from_file(&path).unwrap();
    // Both wrap and unwrap for each other: same key.
    let key = SecretKey::try_random().unwrap();
    let blob = custodian::keys::RootKeyProvider::wrap(&generated, b"aad", &key).unwrap();
    let back = custodian::keys::RootKeyProvider::unwrap(&loaded, b"aad", &blob).unwrap();
    assert_eq!(back.expose_secret(), key.expose_secret());

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let err = LocalRootKey::from_file(&path).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("chmod 600 {}", path.display())),
        "{msg}"
    );
    assert!(msg.contains("0640"), "{msg}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o604)).unwrap();
    assert!(matches!(
        LocalRootKey::from_file(&path),
        Err(KeyError::RootKeyPermissions { mode: 0o604, .. })
    ));
    assert!(LocalRootKey::from_file(dir.path().join("missing")).is_err());
}

const ENV_VAR: &str = "CUSTODIAN_TEST_ROOT_KEY_7F3A";

/// Runs in a child process with the variable set (setting variables in-process needs `unsafe`,
/// which this crate forbids).
#[test]
fn root_key_from_environment_child() {
    let Ok(expected) = std::env::var("CUSTODIAN_TEST_EXPECT") else {
        return;
    };
    match LocalRootKey::from_env(ENV_VAR) {
        Ok(loaded) => {
            assert_eq!(expected, "ok");
            let key = SecretKey::try_random().unwrap();
            let blob = custodian::keys::RootKeyProvider::wrap(&root(), b"aad", &key).unwrap();
            let back = custodian::keys::RootKeyProvider::unwrap(&loaded, b"aad", &blob).unwrap();
            assert_eq!(back.expose_secret(), key.expose_secret());
            assert!(loaded.source().contains(ENV_VAR));
        }
        Err(e) => assert!(e.to_string().contains(&expected), "{e}"),
    }
}

#[test]
fn root_key_from_environment() {
    let hex: String = root_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let b64 = data_encoding::BASE64.encode(&root_bytes());
    let cases: [(Option<&str>, &str); 4] = [
        (Some(&hex), "ok"),
        (Some(&b64), "ok"),
        (None, "not set"),
        (Some("c2hvcnQ="), "decodes to 5 bytes"),
    ];
    for (value, expect) in cases {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.arg(crate::test_name(
            module_path!(),
            "root_key_from_environment_child",
        ))
        .args(["--exact", "--nocapture"])
        .env("CUSTODIAN_TEST_EXPECT", expect)
        .env_remove(ENV_VAR);
        if let Some(value) = value {
            cmd.env(ENV_VAR, value);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{expect}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
    }
}

// ---- Debug output never shows key bytes ----

#[test]
fn debug_output_shows_no_key_material() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir);
    let keys = manager_on(Arc::clone(&store));
    keys.create_ring("customers", Suite::default(), quick_policy(), T0)
        .unwrap();
    keys.seal("customers", Some("cus_1"), &ctx("1"), b"secret", T0)
        .unwrap();
    let derived = keys.derive_key("customers", 1, b"index", T0).unwrap();
    let rows = store.load_ring("customers").unwrap().rows.unwrap();
    let subject = store
        .load_subject("customers", "cus_1")
        .unwrap()
        .row
        .unwrap();
    let wrapped = rows.versions[0].wrapped_key.clone().unwrap();

    let shown = [
        format!("{keys:?}"),
        format!("{:?}", root()),
        format!("{store:?}"),
        format!("{:?}", MemoryKeyStore::new()),
        format!("{rows:?}"),
        format!("{subject:?}"),
        format!("{derived:?}"),
        format!("{:?}", keys.ring_info("customers", T0).unwrap()),
    ];
    let root_hex: String = root_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let derived_hex: String = derived
        .expose_secret()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    for text in &shown {
        assert!(!text.contains(&root_hex[..16]), "{text}");
        assert!(!text.contains(&derived_hex[..16]), "{text}");
        // No byte arrays of key length printed as numbers.
        assert!(
            !text.contains(&format!("{:?}", &root_bytes()[..4])),
            "{text}"
        );
        assert!(
            !text.contains(&format!("{:?}", &derived.expose_secret()[..4])),
            "{text}"
        );
        assert!(!text.contains(&format!("{:?}", &wrapped[..4])), "{text}");
        let subject_wrapped = subject.wrapped_key.as_ref().unwrap();
        assert!(
            !text.contains(&format!("{:?}", &subject_wrapped[..4])),
            "{text}"
        );
    }
    assert_eq!(format!("{derived:?}"), "SecretKey([REDACTED])");
    assert!(shown[0].starts_with("KeyManager {"), "{}", shown[0]);
}

#[test]
fn manager_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<KeyManager>();
    check::<SqliteKeyStore>();
    check::<MemoryKeyStore>();
    check::<LocalRootKey>();
}

#[test]
fn made_up_rings_and_versions_do_not_grow_state_or_hammer_the_store() {
    let keys = memory_manager();
    let other = KeyManager::new(MemoryKeyStore::new(), root()).unwrap();
    for i in 0..200 {
        let name = format!("ring{i}");
        other
            .create_ring(&name, Suite::default(), quick_policy(), T0)
            .unwrap();
        let sealed = other.seal(&name, None, &ctx("1"), b"x", T0).unwrap();
        assert!(matches!(
            keys.open(&ctx("1"), &sealed, T0),
            Err(KeyError::UnknownRing(_))
        ));
    }
    // No handle is kept for rings that do not exist.
    let shown = format!("{keys:?}");
    assert!(shown.contains("loaded_rings: []"), "{shown}");
    // A version another process just created opens at once (one forced reload).
    let shared = MemoryKeyStore::new();
    let a = KeyManager::new(shared.clone(), root()).unwrap();
    let b = KeyManager::new(shared, root()).unwrap();
    a.create_ring("r", Suite::default(), RotationPolicy::default(), T0)
        .unwrap();
    b.seal("r", None, &ctx("1"), b"x", T0).unwrap();
    a.rotate("r", T0).unwrap();
    let v2 = a.seal("r", None, &ctx("1"), b"y", T0).unwrap();
    assert_eq!(b.open(&ctx("1"), &v2, T0).unwrap().expose_secret(), b"y");
}

/// A memory store with hooks: it pauses one `load_subject` call after reading (to run an
/// erasure in that window), counts `load_ring` calls, and can fail them as a server that is down.
#[derive(Debug)]
struct HookedStore {
    inner: MemoryKeyStore,
    armed: std::sync::atomic::AtomicBool,
    reached: std::sync::Barrier,
    release: std::sync::Barrier,
    ring_loads: std::sync::atomic::AtomicUsize,
    rings_unavailable: std::sync::atomic::AtomicBool,
}

impl HookedStore {
    fn on(inner: MemoryKeyStore) -> Self {
        Self {
            inner,
            armed: std::sync::atomic::AtomicBool::new(false),
            reached: std::sync::Barrier::new(2),
            release: std::sync::Barrier::new(2),
            ring_loads: std::sync::atomic::AtomicUsize::new(0),
            rings_unavailable: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn ring_loads(&self) -> usize {
        self.ring_loads.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl KeyStore for HookedStore {
    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, KeyError> {
        self.inner.get_meta(key)
    }
    fn put_meta_if_absent(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.inner.put_meta_if_absent(key, value)
    }
    fn load_ledger(&self) -> Result<store::LedgerView, KeyError> {
        self.inner.load_ledger()
    }
    fn init_ledger(
        &self,
        ledger: &store::LedgerRecord,
        meta: (&str, &[u8]),
        retire: &str,
    ) -> Result<bool, KeyError> {
        self.inner.init_ledger(ledger, meta, retire)
    }
    fn ring_names(&self) -> Result<Vec<String>, KeyError> {
        self.inner.ring_names()
    }
    fn load_ring(&self, name: &str) -> Result<store::RingView, KeyError> {
        self.ring_loads
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self
            .rings_unavailable
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(KeyError::StoreUnavailable("the server is down".into()));
        }
        self.inner.load_ring(name)
    }
    fn create_ring(
        &self,
        rows: &store::RingRows,
        journal: &mut store::Journal,
    ) -> Result<bool, KeyError> {
        self.inner.create_ring(rows, journal)
    }
    fn commit_ring(
        &self,
        change: &mut store::RingChange,
    ) -> Result<store::CommitOutcome, KeyError> {
        self.inner.commit_ring(change)
    }
    fn load_subject(&self, ring: &str, subject: &str) -> Result<store::SubjectView, KeyError> {
        let row = self.inner.load_subject(ring, subject);
        if self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            self.reached.wait();
            self.release.wait();
        }
        row
    }
    fn subject_history(
        &self,
        ring: &str,
        subject: &str,
    ) -> Result<Vec<store::SubjectRecord>, KeyError> {
        self.inner.subject_history(ring, subject)
    }
    fn insert_subjects(
        &self,
        rows: &[store::SubjectRecord],
        journal: &mut store::Journal,
    ) -> Result<Vec<bool>, KeyError> {
        self.inner.insert_subjects(rows, journal)
    }
    fn rewrap_subjects(&self, rows: &[(store::SubjectRecord, u32)]) -> Result<Vec<bool>, KeyError> {
        self.inner.rewrap_subjects(rows)
    }
    fn changes_since(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<custodian::keys::ChangeFeed, KeyError> {
        self.inner.changes_since(after, limit)
    }
    fn erase_subject(
        &self,
        tombstone: &store::SubjectRecord,
        journal: &mut store::Journal,
    ) -> Result<bool, KeyError> {
        self.inner.erase_subject(tombstone, journal)
    }
    fn purge(&self, wait: std::time::Duration) -> Result<bool, KeyError> {
        self.inner.purge(wait)
    }
    fn subjects_wrapped_below(
        &self,
        ring: &str,
        version: u32,
        limit: usize,
    ) -> Result<Vec<store::SubjectRecord>, KeyError> {
        self.inner.subjects_wrapped_below(ring, version, limit)
    }
    fn count_subjects_wrapped_below(&self, ring: &str, version: u32) -> Result<u64, KeyError> {
        self.inner.count_subjects_wrapped_below(ring, version)
    }
}

impl custodian::audit::AuditStore for HookedStore {
    fn tree_size(&self) -> Result<u64, custodian::audit::AuditError> {
        self.inner.tree_size()
    }
    fn append(
        &self,
        build: &mut custodian::audit::BuildAppend<'_>,
    ) -> Result<u64, custodian::audit::AuditError> {
        self.inner.append(build)
    }
    fn read_entries(
        &self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Vec<u8>>, custodian::audit::AuditError> {
        self.inner.read_entries(start, end)
    }
    fn read_hashes(
        &self,
        indexes: &[u64],
    ) -> Result<Vec<custodian::audit::Hash>, custodian::audit::AuditError> {
        self.inner.read_hashes(indexes)
    }
}

#[test]
fn a_key_read_while_it_is_erased_is_not_cached() {
    let store = Arc::new(HookedStore::on(MemoryKeyStore::new()));
    let keys = Arc::new(manager_on(store.clone()));
    keys.create_ring("customers", Suite::default(), quick_policy(), T0)
        .unwrap();
    let sealed = keys
        .seal("customers", Some("cus_1"), &ctx("1"), b"x", T0)
        .unwrap();
    // Past the cache TTL, so the next open reads the subject row from the store.
    let later = T0 + 1_000;
    store.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let reader = {
        let (keys, sealed) = (Arc::clone(&keys), sealed.clone());
        std::thread::spawn(move || keys.open(&ctx("1"), &sealed, later).map(|_| ()))
    };
    // The reader holds the live row it read; erase now, then let it continue.
    store.reached.wait();
    keys.erase_subject("customers", "cus_1", later).unwrap();
    store.release.wait();
    let _ = reader.join().unwrap();
    assert!(
        matches!(
            keys.open(&ctx("1"), &sealed, later),
            Err(KeyError::SubjectErased { .. })
        ),
        "the erased key came back into the cache"
    );
}

/// The change feed reloads a ring once per poll however many of its changes the poll reads, and
/// once a reload finds the store down it expires the other rings instead of waiting for the
/// store's timeout once per ring: each reload holds the ring's update lock, and sealers that need
/// a usage reservation wait behind it (seen as seals blocked for several timeouts while a
/// PostgreSQL server was down).
#[test]
fn the_change_feed_reloads_each_ring_once_and_stops_at_a_store_that_is_down() {
    let shared = MemoryKeyStore::new();
    let manual = ManagerOptions {
        change_feed_poll_ms: 0,
        ..ManagerOptions::default()
    };
    let writer =
        KeyManager::with_options(Arc::new(shared.clone()), Arc::new(root()), manual.clone())
            .unwrap();
    let store = Arc::new(HookedStore::on(shared));
    let reader = KeyManager::with_options(store.clone(), Arc::new(root()), manual).unwrap();
    for ring in ["a", "b"] {
        writer
            .create_ring(ring, Suite::default(), quick_policy(), T0)
            .unwrap();
        reader.seal(ring, None, &ctx("1"), b"x", T0).unwrap();
    }
    reader.apply_changes().unwrap();
    let version_of = |ring: &str| {
        let sealed = reader.seal(ring, None, &ctx("1"), b"x", T0).unwrap();
        Header::parse(&sealed).unwrap().key_id().version()
    };

    // Seven rotations over two rings: two reloads.
    for ring in ["a", "a", "a", "a", "b", "b", "b"] {
        writer.rotate(ring, T0).unwrap();
    }
    let before = store.ring_loads();
    assert_eq!(reader.apply_changes().unwrap(), 7);
    assert_eq!(
        store.ring_loads() - before,
        2,
        "one reload per changed ring"
    );
    assert_eq!((version_of("a"), version_of("b")), (5, 4));
    // The usage those seals reserved is in the feed too.
    reader.apply_changes().unwrap();

    // The server goes down after the feed was read: one reload is tried, the other ring expires.
    for ring in ["a", "a", "b", "b"] {
        writer.rotate(ring, T0).unwrap();
    }
    store
        .rings_unavailable
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let before = store.ring_loads();
    assert_eq!(reader.apply_changes().unwrap(), 4);
    assert_eq!(
        store.ring_loads() - before,
        1,
        "reloads tried after the store was found down"
    );
    // Neither ring is served from its old snapshot: both must reload, and cannot yet.
    for ring in ["a", "b"] {
        assert!(matches!(
            reader.seal(ring, None, &ctx("1"), b"x", T0),
            Err(KeyError::StoreUnavailable(_))
        ));
    }
    store
        .rings_unavailable
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!((version_of("a"), version_of("b")), (7, 6));
}

/// The subject-key rewrap after a rotation is a job apart: batches of `subject_rewrap_batch`,
/// interruptible between any two, resumable by any manager, and shared by several servers at
/// once without double counting; every subject key opens throughout.
#[test]
fn the_subject_key_rewrap_job_resumes_and_is_shared_by_two_servers() {
    let dir = tempfile::tempdir().unwrap();
    let options = ManagerOptions {
        subject_rewrap_batch: 40,
        ..ManagerOptions::default()
    };
    let server =
        || KeyManager::with_options(sqlite_store(&dir), Arc::new(root()), options.clone()).unwrap();
    let (a, b) = (server(), server());
    a.create_ring("customers", Suite::default(), quick_policy(), T0)
        .unwrap();
    let sealed: Vec<(String, Vec<u8>)> = (0..300)
        .map(|i| {
            let subject = format!("cus_{i}");
            let value = a
                .seal("customers", Some(&subject), &ctx(&subject), b"x", T0)
                .unwrap();
            (subject, value)
        })
        .collect();
    a.rotate("customers", T0 + 10).unwrap();

    // One batch, then the job is "interrupted": the rest still opens under version 1.
    let first = a.rewrap_subject_keys_batch("customers", T0 + 10).unwrap();
    assert_eq!((first.rewrapped, first.done), (40, false));
    for (subject, value) in &sealed {
        assert_eq!(
            b.open(&ctx(subject), value, T0 + 10)
                .unwrap()
                .expose_secret(),
            b"x"
        );
    }
    let store = sqlite_store(&dir);
    assert_eq!(
        store
            .subjects_wrapped_below("customers", 2, 1_000)
            .unwrap()
            .len(),
        260
    );

    // Two servers finish it at once: every key is rewrapped exactly once between them.
    let (left_a, left_b) = std::thread::scope(|s| {
        let ja = s.spawn(|| a.rewrap_subject_keys("customers", T0 + 11).unwrap());
        let jb = s.spawn(|| b.rewrap_subject_keys("customers", T0 + 11).unwrap());
        (ja.join().unwrap(), jb.join().unwrap())
    });
    assert_eq!(first.rewrapped + left_a + left_b, 300);
    assert!(
        store
            .subjects_wrapped_below("customers", 2, 1_000)
            .unwrap()
            .is_empty()
    );
    assert!(
        a.rewrap_subject_keys_batch("customers", T0 + 12)
            .unwrap()
            .done
    );
    for (subject, value) in &sealed {
        assert_eq!(
            a.open(&ctx(subject), value, T0 + 12)
                .unwrap()
                .expose_secret(),
            b"x"
        );
    }
    // With no subject key left below it, version 1 can stop decrypting at once.
    a.set_min_encryption_version("customers", 2, T0 + 13)
        .unwrap();
    a.set_min_decryption_version("customers", 2, T0 + 13)
        .unwrap();
}

/// A policy whose snapshots stay valid, so that seals take the cached path (`quick_policy`
/// reloads on every call instead).
fn cached_policy() -> RotationPolicy {
    RotationPolicy {
        propagation_secs: 600,
        ..RotationPolicy::default()
    }
}

#[test]
fn cached_seals_count_against_the_usage_limit() {
    for subject in [None, Some("cus_1")] {
        let keys = KeyManager::with_options(
            Arc::new(MemoryKeyStore::new()),
            Arc::new(root()),
            ManagerOptions {
                usage_block: 4,
                ..ManagerOptions::default()
            },
        )
        .unwrap();
        let policy = RotationPolicy {
            max_encryptions: 10,
            ..cached_policy()
        };
        keys.create_ring("customers", Suite::default(), policy, T0)
            .unwrap();
        let sealed: Vec<_> = (0..35)
            .map(|i| {
                keys.seal("customers", subject, &ctx(&i.to_string()), b"x", T0)
                    .unwrap()
            })
            .collect();
        let info = keys.ring_info("customers", T0).unwrap();
        // A subject key's creation is one encryption more under version 1.
        assert!(info.primary_version >= 4, "{subject:?}: {info:?}");
        for v in &info.versions {
            assert!(v.usage_reserved <= 10, "{subject:?}: {v:?}");
        }
        let versions: Vec<u32> = sealed
            .iter()
            .map(|s| Header::parse(s).unwrap().key_id().version())
            .collect();
        for version in 1..=3 {
            let used = versions.iter().filter(|v| **v == version).count();
            assert!(
                used <= 10,
                "{subject:?}: {used} seals under version {version}"
            );
        }
        for (i, s) in sealed.iter().enumerate() {
            keys.open(&ctx(&i.to_string()), s, T0).unwrap();
        }
    }
}

#[test]
fn a_cached_subject_follows_more_rotations_than_it_keeps_kek_slots_for() {
    let dir = tempfile::tempdir().unwrap();
    let keys = manager_on(sqlite_store(&dir));
    keys.create_ring("customers", Suite::default(), cached_policy(), T0)
        .unwrap();
    let mut sealed = Vec::new();
    for round in 0..7u32 {
        // Twice per version: the second seal finds the KEK the first one derived.
        for _ in 0..2 {
            let s = keys
                .seal("customers", Some("cus_1"), &ctx("1"), b"jane", T0)
                .unwrap();
            assert_eq!(Header::parse(&s).unwrap().key_id().version(), round + 1);
            sealed.push(s);
        }
        keys.rotate("customers", T0).unwrap();
    }
    // This manager (cached KEKs, some beyond the slots) and a new one (nothing cached) agree.
    let fresh = manager_on(sqlite_store(&dir));
    for s in &sealed {
        assert_eq!(
            keys.open(&ctx("1"), s, T0).unwrap().expose_secret(),
            b"jane"
        );
        assert_eq!(
            fresh.open(&ctx("1"), s, T0).unwrap().expose_secret(),
            b"jane"
        );
    }
}

#[test]
fn a_cached_subject_seal_after_its_erasure_starts_a_new_generation() {
    let keys = KeyManager::new(MemoryKeyStore::new(), root()).unwrap();
    keys.create_ring("customers", Suite::default(), cached_policy(), T0)
        .unwrap();
    let before = keys
        .seal("customers", Some("cus_1"), &ctx("1"), b"jane", T0)
        .unwrap();
    keys.seal("customers", Some("cus_1"), &ctx("1"), b"jane", T0)
        .unwrap();
    keys.erase_subject("customers", "cus_1", T0 + 1).unwrap();
    assert!(matches!(
        keys.open(&ctx("1"), &before, T0 + 1),
        Err(KeyError::SubjectErased { .. })
    ));
    let after = keys
        .seal("customers", Some("cus_1"), &ctx("1"), b"new", T0 + 2)
        .unwrap();
    // The old generation's data stays unopenable under the new one.
    let err = keys.open(&ctx("1"), &before, T0 + 2).unwrap_err();
    assert!(err.is_decrypt_failure(), "{err:?}");
    assert_eq!(
        keys.open(&ctx("1"), &after, T0 + 2)
            .unwrap()
            .expose_secret(),
        b"new"
    );
    let history = keys.subject_history("customers", "cus_1").unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
}

#[test]
fn cached_opens_refuse_what_the_general_path_refuses() {
    let keys = KeyManager::new(MemoryKeyStore::new(), root()).unwrap();
    let policy = RotationPolicy {
        propagation_secs: 60,
        ..RotationPolicy::default()
    };
    keys.create_ring("customers", Suite::default(), policy, T0)
        .unwrap();
    let ring_v1 = keys
        .seal("customers", None, &ctx("1"), b"ring", T0)
        .unwrap();
    let subject_v1 = keys
        .seal("customers", Some("cus_1"), &ctx("1"), b"jane", T0)
        .unwrap();
    for sealed in [&ring_v1, &subject_v1] {
        // Opened twice: the second open finds every key cached.
        for _ in 0..2 {
            keys.open(&ctx("1"), sealed, T0).unwrap();
            let err = keys.open(&ctx("2"), sealed, T0).unwrap_err();
            assert!(err.is_decrypt_failure(), "{err:?}");
        }
    }
    keys.rotate("customers", T0).unwrap();
    keys.rewrap_subject_keys("customers", T0).unwrap();
    // Version 1 superseded for the propagation time, then disabled: refused with its reason.
    keys.set_min_encryption_version("customers", 2, T0 + 60)
        .unwrap();
    keys.set_min_decryption_version("customers", 2, T0 + 60)
        .unwrap();
    for sealed in [&ring_v1, &subject_v1] {
        assert!(
            matches!(
                keys.open(&ctx("1"), sealed, T0 + 60),
                Err(KeyError::VersionDisabled { version: 1, .. })
            ),
            "{:?}",
            keys.open(&ctx("1"), sealed, T0 + 60)
        );
    }
    // A new version opens from the cache again.
    let subject_v2 = keys
        .seal("customers", Some("cus_1"), &ctx("1"), b"jane", T0 + 60)
        .unwrap();
    for _ in 0..2 {
        assert_eq!(
            keys.open(&ctx("1"), &subject_v2, T0 + 60)
                .unwrap()
                .expose_secret(),
            b"jane"
        );
    }
}
