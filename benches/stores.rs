//! Storage backends side by side (issue 10): the same operations on SQLite and, when
//! `CUSTODIAN_PG_URL` names a server (run through `scripts/with-postgres`), on PostgreSQL, in one
//! run; and what the async facade costs.
//!
//! - `seal_cached` / `open_cached`: a customer whose key is cached; must not depend on the backend
//!   (no I/O on the hot path).
//! - `open_uncached`: the subject cache turned off, so every open reads the customer's key row.
//! - `create_subjects_1000`: bulk creation, one transaction per 1,000 customers.
//! - `mfa_round_trip`: the storage part of a TOTP verification (read the factor, write its new state
//!   with compare-and-set).
//! - `invalidation_delay`: from `erase_subject` returning on one manager to another manager of the
//!   same store (its key cached) refusing the customer, through the change feed.
//! - `async`: a cached seal through `AsyncCustodian` (inline) against the sync call, and the
//!   blocking-pool round trip a miss adds.

use criterion::{BatchSize, Criterion, Throughput, criterion_group};
use custodian::asynchronous::AsyncCustodian;
use custodian::crypto::Suite;
use custodian::envelope::{Kek, StaticKek};
use custodian::keys::PgKeyStore;
use custodian::keys::{
    KeyError, KeyManager, KeyStore, LocalRootKey, ManagerOptions, RotationPolicy, SqliteKeyStore,
};
use custodian::mfa::{FactorStore, MfaService, SqliteFactorStore, TotpKey, Verifier};
use custodian::postgres::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use custodian::postgres::{PgFactorStore, Postgres, sqlx};
use custodian::{Custodian, EncryptionContext, SecretKey};
use std::hint::black_box;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const NOW: u64 = 1_700_000_000;

const CHILD_ENV: &str = "CUSTODIAN_BENCH_ERASE";

/// One backend: how to open a fresh key store and a fresh factor store, and a store that another
/// process can open too (`spec`, opened by `open_spec`).
struct Backend {
    name: &'static str,
    key_store: Box<dyn Fn() -> Arc<dyn KeyStore>>,
    factor_store: Box<dyn Fn() -> Arc<dyn FactorStore>>,
    spec: Option<String>,
    open_spec: fn(&str) -> Arc<dyn KeyStore>,
}

fn open_spec(spec: &str) -> Arc<dyn KeyStore> {
    match spec.split_once(':') {
        Some(("sqlite", path)) => Arc::new(SqliteKeyStore::open(path).unwrap()),
        Some(("postgres", rest)) => {
            let (schema, url) = rest.split_once(' ').unwrap();
            Arc::new(PgKeyStore::open(pg_in(url, schema)).unwrap())
        }
        _ => panic!("unknown store `{spec}`"),
    }
}

/// A PostgreSQL handle whose connections use `schema` (created if missing).
fn pg_in(url: &str, schema: &str) -> Postgres {
    let admin = Postgres::connect(url).unwrap();
    admin
        .runtime()
        .block_on(
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE SCHEMA IF NOT EXISTS {schema}"
            )))
            .execute(admin.pool()),
        )
        .unwrap();
    let options = PgConnectOptions::from_str(url)
        .unwrap()
        .options([("search_path", schema)]);
    let _entered = admin.runtime().enter();
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_lazy_with(options);
    // Keep the admin runtime alive for the pool: leak it, as the process ends with the bench.
    let pg = Postgres::from_pool(pool).unwrap();
    std::mem::forget(admin);
    pg
}

fn sqlite(dir: &std::path::Path) -> Backend {
    let counter = Arc::new(AtomicU64::new(0));
    let (dir_a, counter_a) = (dir.to_path_buf(), Arc::clone(&counter));
    let (dir_b, counter_b) = (dir.to_path_buf(), counter);
    Backend {
        name: "sqlite",
        key_store: Box::new(move || {
            let n = counter_a.fetch_add(1, Ordering::Relaxed);
            Arc::new(SqliteKeyStore::open(dir_a.join(format!("keys-{n}.db"))).unwrap())
        }),
        factor_store: Box::new(move || {
            let n = counter_b.fetch_add(1, Ordering::Relaxed);
            Arc::new(SqliteFactorStore::open(dir_b.join(format!("mfa-{n}.db"))).unwrap())
        }),
        spec: Some(format!("sqlite:{}", dir.join("shared.db").display())),
        open_spec,
    }
}

fn root() -> Arc<LocalRootKey> {
    Arc::new(LocalRootKey::new(&SecretKey::from_bytes([7; 32])))
}

fn manager(store: Arc<dyn KeyStore>, options: ManagerOptions) -> KeyManager {
    let keys = KeyManager::with_options(store, root(), options).unwrap();
    keys.ensure_ring(
        "customers",
        Suite::default(),
        RotationPolicy::default(),
        NOW,
    )
    .unwrap();
    keys
}

fn ctx(record: &str) -> EncryptionContext {
    EncryptionContext::for_field("customers", record, "email").unwrap()
}

fn backend_benches(c: &mut Criterion, backend: &Backend) {
    let mut group = c.benchmark_group(format!("stores/{}", backend.name));
    group.measurement_time(Duration::from_secs(3));
    let payload = [0x5Au8; 256];

    let keys = manager((backend.key_store)(), ManagerOptions::default());
    let sealed = keys
        .seal("customers", Some("cus_1"), &ctx("1"), &payload, NOW)
        .unwrap();
    group.bench_function("seal_cached_256B", |b| {
        b.iter(|| {
            keys.seal(
                "customers",
                Some("cus_1"),
                &ctx("1"),
                black_box(&payload),
                NOW,
            )
            .unwrap()
        })
    });
    group.bench_function("open_cached_256B", |b| {
        b.iter(|| keys.open(&ctx("1"), black_box(&sealed), NOW).unwrap())
    });

    let uncached = manager(
        (backend.key_store)(),
        ManagerOptions {
            subject_cache_capacity: 0,
            ..ManagerOptions::default()
        },
    );
    let sealed_uncached = uncached
        .seal("customers", Some("cus_2"), &ctx("2"), &payload, NOW)
        .unwrap();
    group.bench_function("open_uncached_256B", |b| {
        b.iter(|| {
            uncached
                .open(&ctx("2"), black_box(&sealed_uncached), NOW)
                .unwrap()
        })
    });

    let next = AtomicU64::new(0);
    group.throughput(Throughput::Elements(1_000));
    group.sample_size(10);
    group.bench_function("create_subjects_1000", |b| {
        b.iter_batched(
            || {
                let start = next.fetch_add(1_000, Ordering::Relaxed);
                (start..start + 1_000)
                    .map(|i| format!("bulk_{i}"))
                    .collect::<Vec<_>>()
            },
            |ids| {
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                keys.create_subjects("customers", &ids, NOW).unwrap()
            },
            BatchSize::LargeInput,
        )
    });
    group.throughput(Throughput::Elements(1));
    group.sample_size(30);

    let kek: Arc<dyn Kek> = Arc::new(StaticKek::generate("mfa-seeds", 1).unwrap());
    let state_key = custodian::SecretKey::from_bytes([3; 32]);
    let mfa = MfaService::with_store((backend.factor_store)(), kek, state_key);
    let verifier = Verifier::default();
    let key = TotpKey::generate().unwrap();
    let app = key.duplicate();
    mfa.begin_enrollment(&verifier, "staff-1", "phone", key, NOW, None)
        .unwrap();
    mfa.confirm_enrollment(
        &verifier,
        "staff-1",
        "phone",
        app.code_at(NOW).unwrap().expose_secret(),
        NOW,
    )
    .unwrap();
    group.bench_function("mfa_round_trip", |b| {
        b.iter(|| {
            let stored = mfa.load("staff-1", "phone").unwrap();
            let state = *stored.factor.state();
            assert!(
                mfa.compare_and_set("staff-1", "phone", stored.generation, &state)
                    .unwrap()
            );
        })
    });

    // Another process erases (managers of one process share erasures at once, so the feed only
    // matters across processes); B, with the key cached, must refuse through the change feed.
    // Timed from the moment the erasing process has exited.
    if let Some(spec) = &backend.spec {
        let b_keys = manager((backend.open_spec)(spec), ManagerOptions::default());
        let round = AtomicU64::new(0);
        group.sample_size(10);
        group.bench_function("invalidation_delay", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let subject = format!("erased_{}", round.fetch_add(1, Ordering::Relaxed));
                    let sealed = b_keys
                        .seal("customers", Some(&subject), &ctx("9"), b"x", NOW)
                        .unwrap();
                    let status = std::process::Command::new(std::env::current_exe().unwrap())
                        .env(CHILD_ENV, format!("{spec}|{subject}"))
                        .status()
                        .unwrap();
                    assert!(status.success());
                    let started = Instant::now();
                    loop {
                        match b_keys.open(&ctx("9"), &sealed, NOW) {
                            Err(KeyError::SubjectErased { .. }) => break,
                            Ok(_) => std::thread::sleep(Duration::from_millis(1)),
                            Err(other) => panic!("{other}"),
                        }
                        assert!(started.elapsed() < Duration::from_secs(5));
                    }
                    total += started.elapsed();
                }
                total
            })
        });
    }
    group.finish();
}

fn async_benches(c: &mut Criterion, backend: &Backend) {
    let mut group = c.benchmark_group("async");
    group.measurement_time(Duration::from_secs(3));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let sync = Custodian::builder()
        .with_store((backend.key_store)())
        .root_key(LocalRootKey::random().unwrap())
        .build()
        .unwrap();
    let custodian = AsyncCustodian::from(sync);
    let payload = [0x5Au8; 256];
    let context = ctx("1");
    runtime
        .block_on(custodian.encrypt("cus_1", &context, &payload))
        .unwrap();
    group.bench_function("seal_cached_sync", |b| {
        b.iter(|| {
            custodian
                .sync()
                .encrypt("cus_1", &context, black_box(&payload))
                .unwrap()
        })
    });
    group.bench_function("seal_cached_async_inline", |b| {
        b.iter(|| {
            runtime
                .block_on(custodian.encrypt("cus_1", &context, black_box(&payload)))
                .unwrap()
        })
    });
    group.bench_function("block_on_empty_future", |b| {
        b.iter(|| runtime.block_on(async { black_box(1) }))
    });
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    group.bench_function("spawn_blocking_round_trip", |b| {
        b.iter(|| {
            multi
                .block_on(async { tokio::task::spawn_blocking(|| black_box(1)).await })
                .unwrap()
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = sqlite(dir.path());
    backend_benches(c, &sqlite);
    async_benches(c, &sqlite);
    match postgres() {
        Some(pg) => backend_benches(c, &pg),
        None => eprintln!(
            "stores: CUSTODIAN_PG_URL is not set, PostgreSQL skipped \
             (run `scripts/with-postgres cargo bench --all-features --bench stores`)"
        ),
    }
}

/// PostgreSQL, when a server is named: a fresh schema per store.
fn postgres() -> Option<Backend> {
    let url = std::env::var("CUSTODIAN_PG_URL").ok()?;
    let next = Arc::new(AtomicU64::new(0));
    let schema = {
        let next = Arc::clone(&next);
        move || {
            format!(
                "custodian_bench_{}_{}",
                std::process::id(),
                next.fetch_add(1, Ordering::Relaxed)
            )
        }
    };
    let (url_a, schema_a) = (url.clone(), schema.clone());
    let (url_b, schema_b) = (url.clone(), schema.clone());
    Some(Backend {
        name: "postgres",
        key_store: Box::new(move || {
            Arc::new(PgKeyStore::open(pg_in(&url_a, &schema_a())).unwrap())
        }),
        factor_store: Box::new(move || {
            Arc::new(PgFactorStore::open(pg_in(&url_b, &schema_b())).unwrap())
        }),
        spec: Some(format!("postgres:{} {url}", schema())),
        open_spec,
    })
}

criterion_group!(stores, benches);

fn main() {
    // The erasing process of `invalidation_delay`.
    if let Ok(job) = std::env::var(CHILD_ENV) {
        let (spec, subject) = job.rsplit_once('|').unwrap();
        let keys = manager(open_spec(spec), ManagerOptions::default());
        keys.erase_subject("customers", subject, NOW).unwrap();
        return;
    }
    stores();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
