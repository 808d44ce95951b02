//! Audit log speed (issue 11): appends to the memory store, batched (target >= 50,000 entries/s)
//! and one per call; inclusion and consistency proofs, generated and verified, on a log of
//! 1,000,000 entries (target <= 50 us each); checkpoint signing and verification. The baseline,
//! measured in the same run, is one SHA-256 leaf hash of a typical entry.
//!
//! Durable stores: appends to `SqliteAuditStore` (a file in the system's temporary folder) and,
//! when `CUSTODIAN_PG_URL` names a server (`scripts/with-postgres cargo bench --all-features
//! --bench audit`), to `PgAuditStore`, in batches of 1,000 events per `append_batch` (target: at
//! least 50,000 entries/s) and one entry per commit (target: at least 2,000 entries/s). Every commit is
//! durable: SQLite in WAL mode with `synchronous = FULL` (the key store's settings: the WAL is
//! fsynced at each commit), PostgreSQL with its defaults (`fsync` and `synchronous_commit` on).
//! Without a server the PostgreSQL part is skipped with a notice, except when `CI` is set.
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use custodian::SecretKey;
use custodian::audit::{
    Action, AuditEvent, AuditLog, CheckpointSigner, Hash, MemoryAuditStore, consistency_proof,
    hashes_to_append, inclusion_proof, leaf_hash, tree_hash, verify_consistency, verify_inclusion,
};
use std::hint::black_box;

const NOW: u64 = 1_700_000_000;
const MILLION: u64 = 1_000_000;

fn event(i: u64) -> AuditEvent {
    AuditEvent::new(
        NOW + i,
        "staff-7",
        Action::FieldsRevealed {
            fields: vec!["email".into(), "phone".into()],
        },
        format!("customers/{i}"),
    )
    .with_subject(format!("cus_{i}"))
}

fn bench_append(c: &mut Criterion) {
    let entry = custodian::audit::AuditEntry {
        index: 1,
        event: event(1),
    }
    .encode()
    .unwrap();
    c.bench_function("audit_baseline/sha256_leaf_of_one_entry", |b| {
        b.iter(|| leaf_hash(black_box(&entry)))
    });

    let batch: Vec<AuditEvent> = (0..1000).map(event).collect();
    let mut group = c.benchmark_group("audit_append_memory");
    group.throughput(Throughput::Elements(100 * 1000));
    group.bench_function("100_batches_of_1000", |b| {
        // A fresh log every 100 batches keeps memory bounded; the tree still grows to 100,000.
        b.iter_batched_ref(
            || AuditLog::new(MemoryAuditStore::new()),
            |log| {
                for _ in 0..100 {
                    log.append_batch(black_box(&batch)).unwrap();
                }
            },
            BatchSize::PerIteration,
        )
    });
    group.throughput(Throughput::Elements(1));
    let log = AuditLog::new(MemoryAuditStore::new());
    let one = event(1);
    group.bench_function("one_per_call", |b| {
        b.iter(|| log.append(black_box(one.clone())).unwrap())
    });
    group.finish();
}

/// The stored hashes of a log of 1,000,000 synthetic leaves, built once outside the measurements.
fn million() -> Vec<Hash> {
    let mut stored = Vec::with_capacity(2 * MILLION as usize);
    let mut size = 0u64;
    while size < MILLION {
        let leaves: Vec<Hash> = (size..size + 10_000)
            .map(|i| leaf_hash(&i.to_be_bytes()))
            .collect();
        let added = hashes_to_append(size, &leaves, &stored).unwrap();
        stored.extend(added);
        size += 10_000;
    }
    stored
}

fn bench_proofs(c: &mut Criterion) {
    let stored = million();
    let root = tree_hash(MILLION, &stored).unwrap();
    let mut group = c.benchmark_group("audit_proofs_1m");

    // Varying indexes, so no single path stays in cache.
    let mut next = 0u64;
    let mut index = move || {
        next = (next + 618_033) % MILLION;
        next
    };
    group.bench_function("inclusion_generate", |b| {
        b.iter(|| inclusion_proof(black_box(index()), MILLION, &stored).unwrap())
    });
    let proofs: Vec<(u64, Vec<Hash>)> = (0..64)
        .map(|_| {
            let i = index();
            (i, inclusion_proof(i, MILLION, &stored).unwrap().hashes)
        })
        .collect();
    let leaves: Vec<Hash> = proofs
        .iter()
        .map(|(i, _)| leaf_hash(&i.to_be_bytes()))
        .collect();
    let mut k = 0;
    group.bench_function("inclusion_verify", |b| {
        b.iter(|| {
            k = (k + 1) % proofs.len();
            let (i, path) = &proofs[k];
            verify_inclusion(&leaves[k], *i, MILLION, black_box(path), &root).unwrap()
        })
    });

    group.bench_function("consistency_generate", |b| {
        b.iter(|| consistency_proof(black_box(1 + index()), MILLION, &stored).unwrap())
    });
    let old_sizes: Vec<u64> = (0..64).map(|_| 1 + index()).collect();
    let consistency: Vec<(u64, Hash, Vec<Hash>)> = old_sizes
        .iter()
        .map(|&m| {
            (
                m,
                tree_hash(m, &stored).unwrap(),
                consistency_proof(m, MILLION, &stored).unwrap().hashes,
            )
        })
        .collect();
    let mut k = 0;
    group.bench_function("consistency_verify", |b| {
        b.iter(|| {
            k = (k + 1) % consistency.len();
            let (m, old_root, path) = &consistency[k];
            verify_consistency(*m, MILLION, old_root, &root, black_box(path)).unwrap()
        })
    });
    group.bench_function("tree_hash", |b| {
        b.iter(|| tree_hash(black_box(MILLION - 1), &stored).unwrap())
    });
    group.finish();
}

fn bench_checkpoint(c: &mut Criterion) {
    let signer =
        CheckpointSigner::from_secret("shop.example/audit", &SecretKey::from_bytes([7; 32]))
            .unwrap();
    let verifier = signer.verifier();
    let root = Hash::digest(b"root");
    let (_, text) = signer.sign(MILLION, root, NOW).unwrap();
    let mut group = c.benchmark_group("audit_checkpoint");
    group.bench_function("sign", |b| {
        b.iter(|| signer.sign(black_box(MILLION), root, NOW).unwrap())
    });
    group.bench_function("verify", |b| {
        b.iter(|| verifier.verify(black_box(&text), NOW).unwrap())
    });
    group.finish();
}

/// Appends to a durable store: 1,000 events per transaction, and one event per transaction.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn bench_durable_append<S: custodian::audit::AuditStore>(
    c: &mut Criterion,
    name: &str,
    log: &AuditLog<S>,
) {
    let batch: Vec<AuditEvent> = (0..1000).map(event).collect();
    let mut group = c.benchmark_group(format!("audit_append_{name}"));
    group.throughput(Throughput::Elements(1000));
    group.bench_function("batch_of_1000", |b| {
        b.iter(|| log.append_batch(black_box(&batch)).unwrap())
    });
    group.throughput(Throughput::Elements(1));
    let one = event(1);
    group.bench_function("one_commit_per_entry", |b| {
        b.iter(|| log.append(black_box(one.clone())).unwrap())
    });
    group.finish();
}

#[cfg(feature = "sqlite")]
fn bench_sqlite(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::new(
        custodian::audit::SqliteAuditStore::open(dir.path().join("audit.db")).unwrap(),
    );
    bench_durable_append(c, "sqlite", &log);
}

#[cfg(not(feature = "sqlite"))]
fn bench_sqlite(_: &mut Criterion) {
    eprintln!("audit: feature `sqlite` is off, SQLite skipped");
}

#[cfg(feature = "postgres")]
fn bench_postgres(c: &mut Criterion) {
    use custodian::postgres::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    use custodian::postgres::{Postgres, sqlx};
    use std::str::FromStr;

    let Some(url) = std::env::var("CUSTODIAN_PG_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CUSTODIAN_PG_URL is not set but CI is: run `scripts/with-postgres cargo bench --all-features --bench audit`"
        );
        eprintln!(
            "audit: CUSTODIAN_PG_URL is not set, PostgreSQL skipped \
             (run `scripts/with-postgres cargo bench --all-features --bench audit`)"
        );
        return;
    };
    // A fresh schema, so that every run starts from an empty log.
    let schema = format!("custodian_bench_audit_{}", std::process::id());
    let admin = Postgres::connect(&url).unwrap();
    admin
        .runtime()
        .block_on(
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                .execute(admin.pool()),
        )
        .unwrap();
    let options = PgConnectOptions::from_str(&url)
        .unwrap()
        .options([("search_path", schema.as_str())]);
    let pg = {
        let _entered = admin.runtime().enter();
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect_lazy_with(options);
        Postgres::from_pool(pool).unwrap()
    };
    let log = AuditLog::new(custodian::audit::PgAuditStore::open(&pg).unwrap());
    bench_durable_append(c, "postgres", &log);
    // The pool runs on the admin handle's runtime: keep it until the process ends.
    std::mem::forget(admin);
}

#[cfg(not(feature = "postgres"))]
fn bench_postgres(_: &mut Criterion) {
    eprintln!("audit: feature `postgres` is off, PostgreSQL skipped");
}

criterion_group!(
    benches,
    bench_append,
    bench_sqlite,
    bench_postgres,
    bench_proofs,
    bench_checkpoint
);
criterion_main!(benches);
