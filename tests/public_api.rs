//! The record API through the public surface only, as a shop backend would use it.

#[cfg(feature = "sqlite")]
use custodian::keys::SqliteKeyStore;
use custodian::keys::{KeyError, LocalRootKey, MemoryKeyStore};
use custodian::record::{Encrypted, Normalizer};
use custodian::{Custodian, EncryptionContext};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Address {
    street: String,
    city: String,
    postcode: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Customer {
    id: u64,
    email: Encrypted<String>,
    address: Encrypted<Address>,
    phone: Encrypted<String>,
}

fn ctx(record: u64, field: &str) -> EncryptionContext {
    EncryptionContext::for_field("customers", record.to_string(), field).unwrap()
}

fn custodian_with_clock(clock: Arc<AtomicU64>) -> Custodian {
    Custodian::builder()
        .key_store(MemoryKeyStore::new())
        .root_key(LocalRootKey::random().unwrap())
        .clock(move || clock.load(Ordering::SeqCst))
        .build()
        .unwrap()
}

fn custodian() -> Custodian {
    custodian_with_clock(Arc::new(AtomicU64::new(1_750_000_000)))
}

fn new_customer(c: &Custodian, id: u64, email: &str) -> Customer {
    let subject = format!("cus_{id}");
    Customer {
        id,
        email: c
            .seal(&subject, &ctx(id, "email"), &email.to_string())
            .unwrap(),
        address: c
            .seal(
                &subject,
                &ctx(id, "address"),
                &Address {
                    street: format!("{id} Main St"),
                    city: "Leeds".into(),
                    postcode: "LS1 1AA".into(),
                },
            )
            .unwrap(),
        phone: c
            .seal(&subject, &ctx(id, "phone"), &"+44 113 496 0000".to_string())
            .unwrap(),
    }
}

/// Checks that JSON holding sealed fields shows none of `plaintexts`, deterministically.
///
/// Every string value that is a `cst1:` ciphertext is decoded and its bytes searched for each
/// plaintext (a chance match of even the shortest, 5 bytes, has odds of about 2^-33 for these
/// sizes); the rest of the JSON, with those values blanked out, is searched as text. (Searching the
/// base64 text itself for a short plaintext such as `496` fails by chance about once in 650 runs.)
fn assert_no_plaintext(json: &str, plaintexts: &[&str]) {
    fn walk(value: &mut serde_json::Value, ciphertexts: &mut Vec<Vec<u8>>) {
        match value {
            serde_json::Value::String(s) if s.starts_with("cst1:") => {
                let bytes = data_encoding::BASE64URL_NOPAD
                    .decode(s.trim_start_matches("cst1:").as_bytes())
                    .unwrap();
                ciphertexts.push(bytes);
                *s = "<ciphertext>".into();
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| walk(v, ciphertexts)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|v| walk(v, ciphertexts)),
            _ => {}
        }
    }
    let mut value: serde_json::Value = serde_json::from_str(json).unwrap();
    let mut ciphertexts = Vec::new();
    walk(&mut value, &mut ciphertexts);
    assert!(!ciphertexts.is_empty(), "no ciphertext in {json}");
    let rest = value.to_string();
    for plaintext in plaintexts {
        assert!(!rest.contains(plaintext), "`{plaintext}` in clear: {rest}");
        for ciphertext in &ciphertexts {
            assert!(
                !ciphertext
                    .windows(plaintext.len())
                    .any(|w| w == plaintext.as_bytes()),
                "`{plaintext}` inside a ciphertext"
            );
        }
    }
}

#[test]
fn plaintext_checks_see_a_field_left_in_clear() {
    let json = r#"{"id":42,"email":"cst1:Q1NU","phone":"+44 113 496 0000"}"#;
    let caught = std::panic::catch_unwind(|| assert_no_plaintext(json, &["496"]));
    assert!(caught.is_err(), "a clear phone number went unnoticed");
    let hidden = data_encoding::BASE64URL_NOPAD.encode(b"xx jane@example.com xx");
    let json = format!(r#"{{"email":"cst1:{hidden}"}}"#);
    let caught = std::panic::catch_unwind(|| assert_no_plaintext(&json, &["jane@example.com"]));
    assert!(
        caught.is_err(),
        "a plaintext inside the ciphertext bytes went unnoticed"
    );
}

#[test]
fn typed_customer_round_trips_through_serde_json() {
    let c = custodian();
    let customer = new_customer(&c, 42, "jane@example.com");
    let json = serde_json::to_string(&customer).unwrap();
    assert_no_plaintext(
        &json,
        &[
            "jane@example.com",
            "Leeds",
            "42 Main St",
            "+44 113 496 0000",
        ],
    );
    let back: Customer = serde_json::from_str(&json).unwrap();
    assert_eq!(
        c.open(&back.email, &ctx(42, "email")).unwrap(),
        "jane@example.com"
    );
    assert_eq!(
        c.open(&back.address, &ctx(42, "address")).unwrap().city,
        "Leeds"
    );
    assert_eq!(
        c.open(&back.phone, &ctx(42, "phone")).unwrap(),
        "+44 113 496 0000"
    );
    // A `&str` seals as an `Encrypted<String>`, whose text form goes into a text column; the
    // record handle gives the table, record and owner once.
    let note = c.record("customers", "42", "cus_42");
    let sealed = note.seal("note", "likes tea").unwrap();
    let text = sealed.to_text();
    assert!(text.starts_with("cst1:"));
    let back: Encrypted<String> = Encrypted::from_text(&text).unwrap();
    assert_eq!(note.open("note", &back).unwrap(), "likes tea");
    assert_eq!(c.open(&back, &ctx(42, "note")).unwrap(), "likes tea");
    // Bytes directly, too.
    let shared = c
        .encrypt_shared(&ctx(0, "api-key"), b"sk_live_123")
        .unwrap();
    assert_eq!(
        c.decrypt(&ctx(0, "api-key"), &shared)
            .unwrap()
            .expose_secret(),
        b"sk_live_123"
    );
}

#[test]
fn a_value_moved_to_another_record_or_field_does_not_open() {
    let c = custodian();
    let jane = new_customer(&c, 1, "jane@example.com");
    let john = new_customer(&c, 2, "john@example.com");
    // Jane's e-mail pasted into John's row, or into Jane's phone column.
    let err = c.open(&jane.email, &ctx(2, "email")).unwrap_err();
    assert!(!err.is_subject_erased());
    assert!(
        matches!(err, custodian::Error::Keys(ref e) if e.is_decrypt_failure()),
        "{err}"
    );
    assert!(c.open(&jane.email, &ctx(1, "phone")).is_err());
    let as_phone: Encrypted<String> =
        Encrypted::from_ciphertext(jane.email.as_bytes().to_vec()).unwrap();
    assert!(c.open(&as_phone, &ctx(1, "phone")).is_err());
    assert_eq!(
        c.open(&john.email, &ctx(2, "email")).unwrap(),
        "john@example.com"
    );
}

/// Issue 12, finding 5: with column scope the same e-mail in two shops has one token (a customer
/// is linkable across shops); tenant-scoped indexes give unrelated tokens per shop, derived as
/// documented in `custodian::record`.
#[test]
fn tenant_scoped_indexes_do_not_link_customers_across_shops() {
    use custodian::record::IndexScope;
    use hmac::{Hmac, KeyInit, Mac};

    let c = custodian();
    let email = "jane@example.com";
    let column = c.blind_index("customers.email", Normalizer::Email).unwrap();
    let shop_a = c
        .tenant_blind_index("customers.email", "shop-a", Normalizer::Email)
        .unwrap();
    let shop_b = c
        .tenant_blind_index("customers.email", "shop-b", Normalizer::Email)
        .unwrap();
    // The finding: one column key means one token for every shop.
    assert_eq!(column.token(email).unwrap(), column.token(email).unwrap());
    // Tenant scope: unrelated tokens per shop, stable within a shop, unlike the column token.
    let (a, b) = (shop_a.token(email).unwrap(), shop_b.token(email).unwrap());
    assert_ne!(a.as_bytes(), b.as_bytes());
    assert_ne!(a.as_bytes(), column.token(email).unwrap().as_bytes());
    let shop_a_again = c
        .tenant_blind_index("customers.email", "shop-a", Normalizer::Email)
        .unwrap();
    assert_eq!(shop_a_again.token(" JANE@example.com").unwrap(), a);
    assert_eq!(shop_a.scope(), &IndexScope::tenant("shop-a").unwrap());
    assert_eq!(column.scope(), &IndexScope::Column);
    // Another column of the same shop has another key too.
    let phone = c
        .tenant_blind_index("customers.phone", "shop-a", Normalizer::Trim)
        .unwrap();
    assert_ne!(phone.token(email).unwrap().as_bytes(), a.as_bytes());

    // The documented derivation: HMAC-SHA-256 under KeyManager::derive_key(ring, version, info).
    let info = IndexScope::tenant("shop-a")
        .unwrap()
        .key_info("customers.email");
    let key = c
        .keys()
        .derive_key("blind-index", a.version(), &info, c.now())
        .unwrap();
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key.expose_secret()).unwrap();
    mac.update(email.as_bytes());
    assert_eq!(a.as_bytes(), &mac.finalize().into_bytes()[..8]);

    // Across an index-key rotation the old tenant token stays searchable.
    c.rotate_index_keys().unwrap();
    let during = c
        .tenant_blind_index("customers.email", "shop-a", Normalizer::Email)
        .unwrap();
    let search = during.search_tokens(email).unwrap();
    assert_eq!(search.len(), 2);
    assert!(search.contains(&a));
    assert!(!during.is_current(&a));
    assert!(
        !c.tenant_blind_index("customers.email", "shop-b", Normalizer::Email)
            .unwrap()
            .search_tokens(email)
            .unwrap()
            .contains(&a)
    );
    // Bad tenant ids are refused with a precise error.
    let err = c
        .tenant_blind_index("customers.email", "", Normalizer::Email)
        .unwrap_err();
    assert!(err.to_string().contains("tenant id"), "{err}");
}

#[test]
fn blind_index_lookups_find_the_record_across_an_index_key_rotation() {
    let c = custodian();
    let before = c.blind_index("customers.email", Normalizer::Email).unwrap();
    let stored: Vec<(u64, String)> = (0..50)
        .map(|i| {
            (
                i,
                before
                    .token(&format!("user{i}@example.com"))
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    c.rotate_index_keys().unwrap();
    let during = c.blind_index("customers.email", Normalizer::Email).unwrap();
    // A row indexed after the rotation uses the new version.
    let fresh = during.token("late@example.com").unwrap();
    assert_ne!(
        fresh.version(),
        custodian::record::IndexToken::parse(&stored[0].1)
            .unwrap()
            .version()
    );
    let search = |value: &str| -> Vec<u64> {
        let tokens: Vec<String> = during
            .search_tokens(value)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        stored
            .iter()
            .filter(|(_, t)| tokens.contains(t))
            .map(|(id, _)| *id)
            .collect()
    };
    assert_eq!(search(" USER17@example.com"), vec![17]);
    assert_eq!(search("nobody@example.com"), Vec::<u64>::new());
    assert!(
        during
            .search_tokens("late@example.com")
            .unwrap()
            .contains(&fresh)
    );
}

#[test]
fn an_erased_customer_fails_with_subject_erased_and_others_still_open() {
    let c = custodian();
    let jane = new_customer(&c, 1, "jane@example.com");
    let john = new_customer(&c, 2, "john@example.com");
    let erasure = c.erase_subject("cus_1").unwrap();
    assert!(erasure.newly_erased);
    for err in [
        c.open(&jane.email, &ctx(1, "email")).unwrap_err(),
        c.open(&jane.phone, &ctx(1, "phone")).unwrap_err(),
    ] {
        assert!(err.is_subject_erased(), "{err}");
        assert!(
            matches!(err, custodian::Error::Keys(KeyError::SubjectErased { ref subject, .. }) if subject == "cus_1")
        );
    }
    assert!(
        c.open(&jane.address, &ctx(1, "address"))
            .unwrap_err()
            .is_subject_erased()
    );
    assert_eq!(
        c.open(&john.email, &ctx(2, "email")).unwrap(),
        "john@example.com"
    );
    // A copy of the ciphertext made before the erasure is just as dead.
    let copy: Customer = serde_json::from_str(&serde_json::to_string(&jane).unwrap()).unwrap();
    assert!(
        c.open(&copy.email, &ctx(1, "email"))
            .unwrap_err()
            .is_subject_erased()
    );
}

#[test]
fn rotation_then_rewrap_keeps_every_value_and_is_idempotent() {
    let c = custodian();
    let customers: Vec<Customer> = (0..20)
        .map(|i| new_customer(&c, i, &format!("u{i}@example.com")))
        .collect();
    c.rotate().unwrap();
    for customer in &customers {
        let old = customer.email.as_bytes();
        assert!(c.needs_rewrap(old).unwrap());
        let new = c
            .rewrap(&ctx(customer.id, "email"), old)
            .unwrap()
            .expect("was under the old version");
        assert!(!c.needs_rewrap(&new).unwrap());
        assert_eq!(c.rewrap(&ctx(customer.id, "email"), &new).unwrap(), None);
        let reopened: Encrypted<String> = Encrypted::from_ciphertext(new).unwrap();
        assert_eq!(reopened.header().key_id().version(), 2);
        assert_eq!(
            c.open(&reopened, &ctx(customer.id, "email")).unwrap(),
            format!("u{}@example.com", customer.id)
        );
    }
}

#[test]
fn batches_match_single_calls_and_report_each_failure() {
    let c = custodian();
    let (a, b) = (ctx(7, "email"), ctx(7, "phone"));
    let sealed = c
        .encrypt_many("cus_7", &[(&a, b"x@example.com"), (&b, b"+1 555 0100")])
        .unwrap();
    let results = c.decrypt_many(&[(&a, &sealed[0]), (&a, &sealed[1]), (&b, &sealed[1])]);
    assert_eq!(
        results[0].as_ref().unwrap().expose_secret(),
        b"x@example.com"
    );
    assert!(
        results[1].is_err(),
        "phone ciphertext under the e-mail context opened"
    );
    assert_eq!(results[2].as_ref().unwrap().expose_secret(), b"+1 555 0100");
}

#[test]
fn concurrent_use_from_eight_threads() {
    let c = Arc::new(custodian());
    let handles: Vec<_> = (0..8u64)
        .map(|t| {
            let c = Arc::clone(&c);
            std::thread::spawn(move || {
                let mut sealed = Vec::new();
                for i in 0..200u64 {
                    let id = t * 1_000 + i;
                    let subject = format!("cus_{}", id % 50); // threads share subjects on purpose
                    let value = format!("{id}@example.com");
                    sealed.push((
                        id,
                        c.encrypt(&subject, &ctx(id, "email"), value.as_bytes())
                            .unwrap(),
                    ));
                    if t == 0 && i == 100 {
                        c.rotate().unwrap();
                    }
                }
                for (id, ct) in sealed {
                    let opened = c.decrypt(&ctx(id, "email"), &ct).unwrap();
                    assert_eq!(
                        opened.expose_secret(),
                        format!("{id}@example.com").as_bytes()
                    );
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[cfg(feature = "sqlite")]
#[test]
fn the_builder_reopens_an_sqlite_store_with_the_same_root_key_only() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("root.key");
    let root = custodian::keys::generate_key_file(&key_file).unwrap();
    let build = |root: LocalRootKey| {
        Custodian::builder()
            .key_store(SqliteKeyStore::open(dir.path().join("keys.db")).unwrap())
            .root_key(root)
            .build()
    };
    let first = build(root).unwrap();
    let sealed = first
        .encrypt("cus_1", &ctx(1, "email"), b"jane@example.com")
        .unwrap();
    drop(first);
    let again = build(LocalRootKey::from_file(&key_file).unwrap()).unwrap();
    assert_eq!(
        again
            .decrypt(&ctx(1, "email"), &sealed)
            .unwrap()
            .expose_secret(),
        b"jane@example.com"
    );
    assert!(
        build(LocalRootKey::random().unwrap()).is_err(),
        "a different root key opened the store"
    );
}

#[test]
fn the_facade_and_its_errors_print_no_secrets() {
    let c = custodian();
    let sealed = c
        .encrypt("cus_1", &ctx(1, "email"), b"jane@example.com")
        .unwrap();
    let shown = format!("{c:?} {:?}", c.decrypt(&ctx(1, "email"), &sealed).unwrap());
    assert!(!shown.contains("jane"), "{shown}");
    let err = c.decrypt(&ctx(2, "email"), &sealed).unwrap_err();
    assert!(!format!("{err} {err:?}").contains("jane"));
}

#[test]
fn the_facade_is_send_and_sync() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<Custodian>();
    shareable::<Encrypted<Address>>();
    shareable::<custodian::record::BlindIndex>();
}

#[test]
fn decrypt_many_gives_exactly_the_results_of_one_by_one_decrypts() {
    let c = custodian();
    let mut stored: Vec<(EncryptionContext, Vec<u8>)> = Vec::new();
    for id in 0..6u64 {
        for field in ["email", "phone"] {
            let context = ctx(id, field);
            let ct = c
                .encrypt(
                    &format!("cus_{}", id % 3),
                    &context,
                    format!("{id}-{field}").as_bytes(),
                )
                .unwrap();
            stored.push((context, ct));
        }
    }
    c.rotate().unwrap();
    stored.push((
        ctx(9, "email"),
        c.encrypt("cus_0", &ctx(9, "email"), b"after rotation")
            .unwrap(),
    ));
    c.erase_subject("cus_1").unwrap();
    stored.push((ctx(1, "email"), b"not a ciphertext".to_vec()));
    let mut truncated = stored[0].1.clone();
    truncated.pop();
    stored.push((ctx(0, "email"), truncated));
    stored.push((ctx(5, "email"), stored[0].1.clone())); // moved to another row
    let items: Vec<(&EncryptionContext, &[u8])> =
        stored.iter().map(|(c, ct)| (c, ct.as_slice())).collect();
    let batch = c.decrypt_many(&items);
    assert_eq!(batch.len(), items.len());
    let mut erased = 0;
    for ((context, ct), result) in items.iter().zip(&batch) {
        let single = c.decrypt(context, ct);
        match (result, &single) {
            (Ok(a), Ok(b)) => assert_eq!(a.expose_secret(), b.expose_secret()),
            (Err(a), Err(b)) => {
                assert_eq!(a.to_string(), b.to_string());
                erased += usize::from(a.is_subject_erased());
            }
            _ => panic!("batch {result:?} but alone {single:?}"),
        }
    }
    assert_eq!(
        erased, 4,
        "customer 1 and 4 (subject cus_1) have two fields each"
    );
    assert!(batch[12].is_ok() && batch[13].is_err() && batch[14].is_err() && batch[15].is_err());
}

#[test]
fn typed_fields_are_bytes_in_binary_formats() {
    let c = custodian();
    let customer = new_customer(&c, 5, "cbor@example.com");
    let mut cbor = Vec::new();
    ciborium::into_writer(&customer.email, &mut cbor).unwrap();
    // CBOR major type 2 (byte string), not 3 (text): the binary ciphertext, not its text form.
    assert_eq!(cbor[0] >> 5, 2, "first byte {:#04x}", cbor[0]);
    assert!(!cbor.windows(5).any(|w| w == b"cst1:"));
    let back: Encrypted<String> = ciborium::from_reader(cbor.as_slice()).unwrap();
    assert_eq!(back, customer.email);
    assert_eq!(c.open(&back, &ctx(5, "email")).unwrap(), "cbor@example.com");
    // A whole struct too, and garbage bytes are refused at deserialization.
    let mut whole = Vec::new();
    ciborium::into_writer(&customer, &mut whole).unwrap();
    let back: Customer = ciborium::from_reader(whole.as_slice()).unwrap();
    assert_eq!(
        c.open(&back.address, &ctx(5, "address")).unwrap().street,
        "5 Main St"
    );
    let mut garbage = Vec::new();
    ciborium::into_writer(
        &ciborium::Value::Bytes(b"CST\x01junk".to_vec()),
        &mut garbage,
    )
    .unwrap();
    assert!(ciborium::from_reader::<Encrypted<String>, _>(garbage.as_slice()).is_err());
}
