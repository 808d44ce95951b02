//! The cost that auditing adds to a reveal (issue 11 item 9): `Custodian::reveal` of a 4-field
//! customer record (shop policy, support agent with a ticket, so all four fields are opened and
//! shown), recording into a `MemoryAuditStore` and into a `SqliteAuditStore` (a durable commit per
//! reveal), against the baseline measured in the same run: the same policy check, field view,
//! batch decryption and masking with no audit entry. A fourth line times the two appends alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use custodian::audit::{AuditLog, AuditStore, MemoryAuditStore, SqliteAuditStore};
use custodian::keys::{KeyStore, LocalRootKey, MemoryKeyStore};
use custodian::rbac::{Justification, Policy, Principal, RequestContext, Resource, Visibility};
use custodian::{Custodian, EncryptionContext, RevealRequest, SealedRecord, SecretKey};
use std::hint::black_box;
use std::sync::Arc;

const NOW: u64 = 1_750_000_000;
const FIELDS: [(&str, &str); 4] = [
    ("name", "Jane Doe"),
    ("email", "jane.doe@example.com"),
    ("phone", "+1 (555) 010-4477"),
    ("address", "12 Harbour Street, Portsmouth"),
];

fn custodian(keys: Arc<dyn KeyStore>, audit: Arc<dyn AuditStore>) -> Custodian {
    Custodian::builder()
        .with_store(keys)
        .root_key(LocalRootKey::new(&SecretKey::from_bytes([7; 32])))
        .clock(|| NOW)
        .audit_store(audit)
        .build()
        .unwrap()
}

/// What `reveal` does, without the audit entry: check, view, open the shown fields, mask.
fn reveal_unaudited(
    custodian: &Custodian,
    policy: &Policy,
    agent: &Principal,
    customer: &Resource,
    context: &RequestContext,
    sealed: &[(&str, Vec<u8>)],
) -> Vec<(String, String)> {
    let decision = policy.check(agent, "view", customer, context);
    assert!(decision.is_allowed());
    let view = decision.view();
    let shown: Vec<_> = sealed
        .iter()
        .filter_map(|(name, bytes)| {
            let (_, kind, visibility) = view.iter().find(|(field, _, _)| field == name)?;
            (visibility != Visibility::Hidden).then(|| {
                let context = EncryptionContext::for_field("customers", customer.id(), *name);
                (*name, kind, visibility, context.unwrap(), bytes.as_slice())
            })
        })
        .collect();
    let items: Vec<(&EncryptionContext, &[u8])> = shown
        .iter()
        .map(|(_, _, _, context, bytes)| (context, *bytes))
        .collect();
    let opened = custodian.decrypt_many(&items);
    shown
        .iter()
        .zip(opened)
        .map(|((name, kind, visibility, _, _), plaintext)| {
            let plaintext = plaintext.unwrap();
            let text = std::str::from_utf8(plaintext.expose_secret()).unwrap();
            let value = match visibility {
                Visibility::Masked => kind.mask(text),
                _ => text.to_owned(),
            };
            ((*name).to_owned(), value)
        })
        .collect()
}

fn bench_reveal(c: &mut Criterion) {
    let policy = Policy::from_path(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/policies/shop.toml"
    ))
    .unwrap();
    let keys: Arc<dyn KeyStore> = Arc::new(MemoryKeyStore::new());
    let in_memory = custodian(Arc::clone(&keys), Arc::new(MemoryAuditStore::new()));
    let sealed: Vec<(&str, Vec<u8>)> = FIELDS
        .iter()
        .map(|(field, value)| {
            let context = EncryptionContext::for_field("customers", "42", *field).unwrap();
            (
                *field,
                in_memory
                    .encrypt("cus_42", &context, value.as_bytes())
                    .unwrap(),
            )
        })
        .collect();
    let record = sealed
        .iter()
        .fold(SealedRecord::new("customers"), |record, (field, bytes)| {
            record.field(*field, bytes.as_slice())
        });
    let agent = Principal::new("emp-17", "store-3").with_role("support");
    let customer = Resource::new("customer", "42", "store-3");
    let ticket = Justification::ticket("SUP-5521").naming("customer", "42");
    let request = RevealRequest::new(&agent, "view", &customer).with_justification(ticket.clone());
    let context = RequestContext::at(NOW).with_justification(ticket);
    assert_eq!(
        reveal_unaudited(&in_memory, &policy, &agent, &customer, &context, &sealed).len(),
        4
    );
    assert_eq!(
        in_memory
            .reveal(&policy, &request, &record)
            .unwrap()
            .fields()
            .len(),
        4
    );

    let dir = tempfile::tempdir().unwrap();
    let sqlite = custodian(
        Arc::clone(&keys),
        Arc::new(SqliteAuditStore::open(dir.path().join("audit.db")).unwrap()),
    );

    let mut group = c.benchmark_group("reveal_4_fields");
    group.bench_function("baseline_check_view_decrypt_mask_no_audit", |b| {
        b.iter(|| {
            reveal_unaudited(
                &in_memory,
                black_box(&policy),
                &agent,
                &customer,
                &context,
                black_box(&sealed),
            )
        })
    });
    group.bench_function("reveal_audit_memory", |b| {
        b.iter(|| {
            in_memory
                .reveal(black_box(&policy), &request, black_box(&record))
                .unwrap()
        })
    });
    // The audit part alone: the two entries a reveal appends, into a memory log of its own.
    let log = AuditLog::new(MemoryAuditStore::new());
    let events = in_memory
        .audit()
        .entries(0..2)
        .unwrap()
        .into_iter()
        .map(|entry| entry.event)
        .collect::<Vec<_>>();
    group.bench_function("append_the_2_entries_only_memory", |b| {
        b.iter(|| log.append_batch(black_box(&events)).unwrap())
    });
    group.bench_function("reveal_audit_sqlite_durable", |b| {
        b.iter(|| {
            sqlite
                .reveal(black_box(&policy), &request, black_box(&record))
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_reveal);
criterion_main!(benches);
