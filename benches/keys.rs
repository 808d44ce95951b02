//! Key hierarchy costs:
//! - seal through the `KeyManager` (cached subject, ring level) against the bare envelope seal, and
//!   open for a cached subject against the bare envelope open;
//! - seal for an uncached subject, read from an SQLite store holding 100,000 subjects;
//! - subject-key creation into SQLite (batched and one at a time);
//! - rewrap of 1 KiB and 1 MiB ciphertexts, and rewrap against open + seal of 1 MiB;
//! - a rotation against the number of customers: `rotate` itself, and the subject-key rewrap job
//!   that follows it, on SQLite stores of 10,000 subjects, and of 1,000,000 with
//!   `CUSTODIAN_BENCH_MILLION=1` (building that store takes a few minutes).
//!
//! Run: `cargo bench --bench keys -- --warm-up-time 1 --measurement-time 3`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use custodian::SecretKey;
use custodian::crypto::Suite;
use custodian::envelope::{self, EncryptionContext, StaticKek};
use custodian::keys::{
    KeyManager, KeyStore, LocalRootKey, ManagerOptions, RotationPolicy, SqliteKeyStore,
};
use std::hint::black_box;
use std::sync::Arc;

const NOW: u64 = 1_700_000_000;
const SUBJECTS: usize = 100_000;

fn ctx() -> EncryptionContext {
    EncryptionContext::new()
        .with("table", "customers")
        .unwrap()
        .with("record", "42")
        .unwrap()
        .with("field", "email")
        .unwrap()
}

fn manager(store: Arc<dyn KeyStore>, options: ManagerOptions) -> KeyManager {
    let root = LocalRootKey::new(&SecretKey::from_bytes([7; 32]));
    KeyManager::with_options(store, Arc::new(root), options).unwrap()
}

fn sqlite(dir: &tempfile::TempDir, name: &str) -> Arc<dyn KeyStore> {
    Arc::new(SqliteKeyStore::open(dir.path().join(name)).unwrap())
}

fn seal(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let keys = manager(sqlite(&dir, "seal.db"), ManagerOptions::default());
    keys.create_ring(
        "customers",
        Suite::default(),
        RotationPolicy::default(),
        NOW,
    )
    .unwrap();
    let ctx = ctx();
    let plaintext = [0x61u8; 64];
    keys.seal("customers", Some("cus_1"), &ctx, &plaintext, NOW)
        .unwrap();
    let kek = StaticKek::generate("customers", 1).unwrap();

    let mut group = c.benchmark_group("seal_64B");
    group.bench_function("envelope_bare", |b| {
        b.iter(|| envelope::seal(&kek, &ctx, black_box(&plaintext)).unwrap())
    });
    group.bench_function("manager_cached_subject", |b| {
        b.iter(|| {
            keys.seal("customers", Some("cus_1"), &ctx, black_box(&plaintext), NOW)
                .unwrap()
        })
    });
    group.bench_function("manager_ring_level", |b| {
        b.iter(|| {
            keys.seal("customers", None, &ctx, black_box(&plaintext), NOW)
                .unwrap()
        })
    });
    group.finish();

    let bare = envelope::seal(&kek, &ctx, &plaintext).unwrap();
    let subject = keys
        .seal("customers", Some("cus_1"), &ctx, &plaintext, NOW)
        .unwrap();
    let mut group = c.benchmark_group("open_64B");
    group.bench_function("envelope_bare", |b| {
        b.iter(|| envelope::open(&kek, &ctx, black_box(&bare)).unwrap())
    });
    group.bench_function("manager_cached_subject", |b| {
        b.iter(|| keys.open(&ctx, black_box(&subject), NOW).unwrap())
    });
    group.finish();
}

fn uncached(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(&dir, "subjects.db");
    let setup = manager(Arc::clone(&store), ManagerOptions::default());
    setup
        .create_ring(
            "customers",
            Suite::default(),
            RotationPolicy::default(),
            NOW,
        )
        .unwrap();
    let names: Vec<String> = (0..SUBJECTS).map(|i| format!("cus_{i:06}")).collect();
    for chunk in names.chunks(1_000) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        assert_eq!(
            setup.create_subjects("customers", &refs, NOW).unwrap(),
            refs.len()
        );
    }
    // No subject cache: every seal reads the subject's row, verifies its MAC, unwraps the key and
    // derives the KEK.
    let keys = manager(
        store,
        ManagerOptions {
            subject_cache_capacity: 0,
            ..ManagerOptions::default()
        },
    );
    let ctx = ctx();
    let plaintext = [0x61u8; 64];
    let mut next = 0usize;
    c.bench_function("seal_64B/manager_uncached_subject_sqlite_100k", |b| {
        b.iter(|| {
            next = (next + 7_919) % SUBJECTS;
            keys.seal("customers", Some(&names[next]), &ctx, &plaintext, NOW)
                .unwrap()
        })
    });
    // The same after 1,000 erasures: each subject read also counts the tombstones (through a
    // partial index) and checks the count against the ledger (docs/KEYSTORE.md, §5).
    for i in 0..ERASED {
        setup
            .erase_subject("customers", &format!("gone_{i:05}"), NOW)
            .unwrap();
    }
    c.bench_function(
        "seal_64B/manager_uncached_subject_sqlite_100k_1k_erased",
        |b| {
            b.iter(|| {
                next = (next + 7_919) % SUBJECTS;
                keys.seal("customers", Some(&names[next]), &ctx, &plaintext, NOW)
                    .unwrap()
            })
        },
    );
}

/// Erasures before the second uncached-subject benchmark (each is one durable transaction).
const ERASED: usize = 1_000;

fn creation(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let keys = manager(sqlite(&dir, "create.db"), ManagerOptions::default());
    keys.create_ring(
        "customers",
        Suite::default(),
        RotationPolicy::default(),
        NOW,
    )
    .unwrap();
    let mut group = c.benchmark_group("subject_key_creation_sqlite");
    let mut counter = 0u64;
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("batch_1000_per_transaction", |b| {
        b.iter_batched(
            || {
                (0..1_000)
                    .map(|_| {
                        counter += 1;
                        format!("new_{counter}")
                    })
                    .collect::<Vec<_>>()
            },
            |names| {
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                assert_eq!(
                    keys.create_subjects("customers", &refs, NOW).unwrap(),
                    1_000
                );
            },
            BatchSize::SmallInput,
        )
    });
    group.throughput(Throughput::Elements(1));
    let ctx = ctx();
    group.bench_function("one_per_transaction_via_seal", |b| {
        b.iter(|| {
            counter += 1;
            keys.seal(
                "customers",
                Some(&format!("one_{counter}")),
                &ctx,
                b"x",
                NOW,
            )
            .unwrap()
        })
    });
    group.finish();
}

fn rewrap(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let keys = manager(sqlite(&dir, "rewrap.db"), ManagerOptions::default());
    keys.create_ring(
        "customers",
        Suite::default(),
        RotationPolicy::default(),
        NOW,
    )
    .unwrap();
    let ctx = ctx();
    let small = vec![0x61u8; 1 << 10];
    let large = vec![0x61u8; 1 << 20];
    let sealed_small = keys
        .seal("customers", Some("cus_1"), &ctx, &small, NOW)
        .unwrap();
    let sealed_large = keys
        .seal("customers", Some("cus_1"), &ctx, &large, NOW)
        .unwrap();
    keys.rotate("customers", NOW).unwrap();
    assert!(keys.needs_rewrap(&sealed_large, NOW).unwrap());

    let mut group = c.benchmark_group("rewrap");
    for (name, sealed) in [("1KiB", &sealed_small), ("1MiB", &sealed_large)] {
        group.bench_function(format!("rewrap_in_place_{name}"), |b| {
            b.iter_batched(
                || sealed.clone(),
                |mut value| {
                    assert!(keys.rewrap_in_place(&ctx, &mut value, NOW).unwrap());
                    value
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.bench_function("open_and_seal_1MiB", |b| {
        b.iter(|| {
            let plaintext = keys.open(&ctx, &sealed_large, NOW).unwrap();
            keys.seal(
                "customers",
                Some("cus_1"),
                &ctx,
                plaintext.expose_secret(),
                NOW,
            )
            .unwrap()
        })
    });
    group.finish();
}

/// A SQLite store with `n` subject keys in ring `customers`, made 10,000 per transaction.
fn store_with_subjects(dir: &tempfile::TempDir, n: usize) -> KeyManager {
    let keys = manager(
        sqlite(dir, &format!("rotation_{n}.db")),
        ManagerOptions::default(),
    );
    keys.create_ring(
        "customers",
        Suite::default(),
        RotationPolicy::default(),
        NOW,
    )
    .unwrap();
    for start in (0..n).step_by(10_000) {
        let names: Vec<String> = (start..n.min(start + 10_000))
            .map(|i| format!("cus_{i}"))
            .collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        keys.create_subjects("customers", &refs, NOW).unwrap();
    }
    keys
}

fn rotation(c: &mut Criterion) {
    let mut sizes = vec![10_000usize];
    if std::env::var_os("CUSTODIAN_BENCH_MILLION").is_some() {
        sizes.push(1_000_000);
    }
    let mut group = c.benchmark_group("rotation_sqlite");
    group.sample_size(10);
    for n in sizes {
        let dir = tempfile::tempdir().unwrap();
        let keys = store_with_subjects(&dir, n);
        // The rotation: one ring transaction, whatever the number of customers.
        group.bench_function(format!("rotate/{n}_subjects"), |b| {
            b.iter(|| keys.rotate("customers", NOW).unwrap())
        });
        // The job after it: every subject key rewrapped to the new version (linear, by design).
        group.bench_function(format!("rewrap_subject_keys/{n}_subjects"), |b| {
            b.iter_custom(|iters| {
                let mut spent = std::time::Duration::ZERO;
                for _ in 0..iters {
                    keys.rotate("customers", NOW).unwrap();
                    let start = std::time::Instant::now();
                    let rewrapped = keys.rewrap_subject_keys("customers", NOW).unwrap();
                    spent += start.elapsed();
                    assert_eq!(rewrapped, n as u64);
                }
                spent
            })
        });
    }
    group.finish();
}

criterion_group!(benches, seal, rewrap, creation, uncached, rotation);
criterion_main!(benches);
