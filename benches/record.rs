//! The record API (issue 4): typed fields for a cached customer, a typical 4-field customer record,
//! a blind-index token, and a batch of 1,000 fields, all through the `Custodian` facade.
//!
//! Target: a customer record with 4 encrypted fields sealed in <= 4 us and opened in <= 4 us (median).

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use custodian::keys::{LocalRootKey, MemoryKeyStore, SqliteKeyStore};
use custodian::record::{Encrypted, Normalizer};
use custodian::{Custodian, EncryptionContext};
use std::hint::black_box;
use std::time::Duration;

fn facade_on_sqlite(dir: &std::path::Path) -> Custodian {
    Custodian::builder()
        .key_store(SqliteKeyStore::open(dir.join("keys.db")).unwrap())
        .root_key(LocalRootKey::random().unwrap())
        .build()
        .unwrap()
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let custodian = facade_on_sqlite(dir.path());
    let subject = "cus_1842";
    let email = "jane.doe@example.com".to_string();
    let ctx = |field: &str| EncryptionContext::for_field("customers", "1842", field).unwrap();
    let (email_ctx, name_ctx, phone_ctx, address_ctx) =
        (ctx("email"), ctx("name"), ctx("phone"), ctx("address"));
    // Warm the subject key cache (the first use creates the key in SQLite).
    custodian.encrypt(subject, &email_ctx, b"warm-up").unwrap();

    let mut group = c.benchmark_group("record");
    group.bench_function("encrypted_string_seal_email", |b| {
        b.iter(|| {
            custodian
                .seal(subject, &email_ctx, black_box(&email))
                .unwrap()
        })
    });
    let sealed: Encrypted<String> = custodian.seal(subject, &email_ctx, &email).unwrap();
    group.bench_function("encrypted_string_open_email", |b| {
        b.iter(|| custodian.open(black_box(&sealed), &email_ctx).unwrap())
    });

    // A typical customer record: e-mail, name, phone and a postal address.
    let fields: [(&EncryptionContext, &[u8]); 4] = [
        (&email_ctx, b"jane.doe@example.com"),
        (&name_ctx, b"Jane Doe"),
        (&phone_ctx, b"+44 7700 900123"),
        (&address_ctx, br#"{"street":"221B Baker Street","city":"London","postcode":"NW1 6XE","country":"GB"}"#),
    ];
    group.bench_function("customer_record_4_fields_seal", |b| {
        b.iter(|| custodian.encrypt_many(subject, black_box(&fields)).unwrap())
    });
    let record = custodian.encrypt_many(subject, &fields).unwrap();
    let sealed_fields: Vec<(&EncryptionContext, &[u8])> = fields
        .iter()
        .zip(&record)
        .map(|((ctx, _), ct)| (*ctx, ct.as_slice()))
        .collect();
    group.bench_function("customer_record_4_fields_open", |b| {
        b.iter(|| {
            for result in custodian.decrypt_many(black_box(&sealed_fields)) {
                black_box(result.unwrap());
            }
        })
    });

    let index = custodian
        .blind_index("customers.email", Normalizer::Email)
        .unwrap();
    group.bench_function("blind_index_token_email", |b| {
        b.iter(|| index.token(black_box(" Jane.Doe@Example.com")).unwrap())
    });

    // A batch of 1,000 fields of 1,000 customers (cached keys), and the same one by one.
    let memory = Custodian::builder()
        .key_store(MemoryKeyStore::new())
        .root_key(LocalRootKey::random().unwrap())
        .build()
        .unwrap();
    let contexts: Vec<EncryptionContext> = (0..1_000)
        .map(|i| EncryptionContext::for_field("customers", i.to_string(), "email").unwrap())
        .collect();
    let subjects: Vec<String> = (0..1_000).map(|i| format!("cus_{i}")).collect();
    memory
        .create_subjects(&subjects.iter().map(String::as_str).collect::<Vec<_>>())
        .unwrap();
    for (s, c) in subjects.iter().zip(&contexts) {
        memory.encrypt(s, c, b"warm").unwrap();
    }
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("batch_1000_fields_seal", |b| {
        b.iter(|| {
            subjects
                .iter()
                .zip(&contexts)
                .map(|(s, c)| memory.encrypt_many(s, &[(c, email.as_bytes())]).unwrap())
                .collect::<Vec<_>>()
        })
    });
    let batch: Vec<Vec<u8>> = subjects
        .iter()
        .zip(&contexts)
        .map(|(s, c)| memory.encrypt(s, c, email.as_bytes()).unwrap())
        .collect();
    let batch_items: Vec<(&EncryptionContext, &[u8])> = contexts
        .iter()
        .zip(&batch)
        .map(|(c, ct)| (c, ct.as_slice()))
        .collect();
    group.bench_function("batch_1000_fields_open", |b| {
        b.iter_batched(
            || (),
            |()| memory.decrypt_many(&batch_items),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = record_benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(record_benches);
