//! The facade as one integration surface: MFA keys from the key hierarchy (surviving a restart,
//! rotated with the ring, erased with the subject) and one error type whose `kind()` maps every
//! failure, without becoming an oracle.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use custodian::crypto::Suite;
use custodian::keys::{KeyError, LocalRootKey, RotationPolicy, SqliteKeyStore};
use custodian::mfa::{MfaError, MfaService, RejectReason, SqliteFactorStore, TotpKey, Verifier};
use custodian::rbac::Policy;
use custodian::record::{BlindIndex, Encrypted, IndexToken, Normalizer};
use custodian::rotation::{IndexedValue, Rewritten, RunProgress, StoredValue};
use custodian::{Custodian, EncryptionContext, Error, ErrorKind, SecretKey};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const T0: u64 = 1_750_000_000;

/// A shop's files: the key store and the factor store, reopened as a restarted server would.
struct Shop {
    _dir: tempfile::TempDir,
    keys_db: PathBuf,
    mfa_db: PathBuf,
    root: SecretKey,
    clock: Arc<AtomicU64>,
}

impl Shop {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Shop {
            keys_db: dir.path().join("keys.db"),
            mfa_db: dir.path().join("mfa.db"),
            _dir: dir,
            root: SecretKey::try_random().unwrap(),
            clock: Arc::new(AtomicU64::new(T0)),
        }
    }

    /// A server process: a new facade over the same files.
    fn start(&self) -> Custodian {
        self.start_with_root(&self.root)
    }

    fn start_with_root(&self, root: &SecretKey) -> Custodian {
        self.try_start(&self.keys_db, root).unwrap()
    }

    fn try_start(&self, keys_db: &Path, root: &SecretKey) -> Result<Custodian, Error> {
        let clock = Arc::clone(&self.clock);
        Custodian::builder()
            .key_store(SqliteKeyStore::open(keys_db)?)
            .root_key(LocalRootKey::new(root))
            .clock(move || clock.load(Ordering::SeqCst))
            .new_ring_settings(
                Suite::default(),
                RotationPolicy {
                    propagation_secs: 0,
                    ..RotationPolicy::default()
                },
            )
            .build()
    }

    fn mfa(&self, custodian: &Custodian) -> MfaService {
        custodian
            .mfa(SqliteFactorStore::open(&self.mfa_db).unwrap())
            .unwrap()
    }

    fn now(&self) -> u64 {
        self.clock.load(Ordering::SeqCst)
    }

    fn advance(&self, secs: u64) -> u64 {
        self.clock.fetch_add(secs, Ordering::SeqCst) + secs
    }
}

/// The shop policy the examples ship.
fn shop_policy() -> Policy {
    Policy::from_path(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/policies/shop.toml"
    ))
    .unwrap()
}

/// Enrolls and confirms `user`'s phone; returns the authenticator app's copy of the key.
fn enroll(shop: &Shop, mfa: &MfaService, user: &str) -> TotpKey {
    let verifier = Verifier::default();
    let now = shop.now();
    let pending = mfa
        .begin_enrollment(
            &verifier,
            user,
            "phone",
            TotpKey::generate().unwrap(),
            now,
            None,
        )
        .unwrap();
    let app = pending.key().duplicate();
    mfa.confirm_enrollment(
        &verifier,
        user,
        "phone",
        app.code_at(now).unwrap().expose_secret(),
        now,
    )
    .unwrap();
    app
}

fn login(shop: &Shop, mfa: &MfaService, user: &str, app: &TotpKey) -> Result<u64, MfaError> {
    // A new 30-second step each time, so no code is a replay of the last one.
    let now = shop.advance(30);
    mfa.verify(
        &Verifier::default(),
        user,
        "phone",
        app.code_at(now).unwrap().expose_secret(),
        now,
    )
    .map(|step_up| step_up.verified_at())
}

#[test]
fn mfa_from_the_facade_survives_a_restart() {
    let shop = Shop::new();
    let app = {
        let first = shop.start();
        let mfa = shop.mfa(&first);
        enroll(&shop, &mfa, "staff-7")
    };
    // Everything from the first process is gone: a new facade on the same files verifies.
    let second = shop.start();
    let mfa = shop.mfa(&second);
    let now = login(&shop, &mfa, "staff-7", &app).unwrap();
    assert_eq!(now, shop.now());
    // The seed is sealed under the staff member's key in the MFA ring, not a process-local KEK.
    let rings = second.keys().ring_names().unwrap();
    assert!(
        rings.iter().any(|r| r == custodian::DEFAULT_MFA_RING),
        "{rings:?}"
    );
    let history = second
        .keys()
        .subject_history(custodian::DEFAULT_MFA_RING, "staff-7")
        .unwrap();
    assert_eq!(history.len(), 1);
}

#[test]
fn another_root_key_opens_no_seed() {
    let shop = Shop::new();
    let first = shop.start();
    enroll(&shop, &shop.mfa(&first), "staff-7");
    drop(first);
    let wrong = SecretKey::try_random().unwrap();
    let error = shop.try_start(&shop.keys_db, &wrong).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Configuration, "{error}");
}

#[test]
fn mfa_seeds_keep_opening_across_rotation_and_rewrap_of_their_ring() {
    let shop = Shop::new();
    let custodian = shop.start();
    let mfa = shop.mfa(&custodian);
    let app = enroll(&shop, &mfa, "staff-7");
    let ring = custodian::DEFAULT_MFA_RING;
    let keys = custodian.keys();
    keys.rotate(ring, shop.advance(10)).unwrap();
    keys.rewrap_subject_keys(ring, shop.advance(10)).unwrap();
    // Version 2 is now the primary; new enrollments go under it, the old seed still opens.
    assert_eq!(keys.ring_info(ring, shop.now()).unwrap().primary_version, 2);
    login(&shop, &mfa, "staff-7", &app).unwrap();
    let app2 = enroll(&shop, &mfa, "staff-8");
    login(&shop, &shop.mfa(&shop.start()), "staff-8", &app2).unwrap();
}

#[test]
fn erasing_a_staff_member_erases_their_seeds() {
    let shop = Shop::new();
    let custodian = shop.start();
    let mfa = shop.mfa(&custodian);
    let app = enroll(&shop, &mfa, "staff-7");
    let other = enroll(&shop, &mfa, "staff-8");
    let erasure = custodian.erase_subject_by("staff-7", "dpo@shop").unwrap();
    assert!(erasure.newly_erased);
    let error = Error::from(login(&shop, &mfa, "staff-7", &app).unwrap_err());
    assert_eq!(error.kind(), ErrorKind::SubjectErased, "{error}");
    assert!(error.is_subject_erased());
    // The erasure of the MFA ring's key is recorded too, with the same actor.
    let log = custodian.audit();
    let entries = log.entries(0..log.tree_size().unwrap()).unwrap();
    let erased: Vec<_> = entries
        .iter()
        .filter(|e| e.event.action.name() == "subject_erased")
        .map(|e| (e.event.resource.clone(), e.event.actor.clone()))
        .collect();
    assert_eq!(
        erased,
        [
            ("customers".to_owned(), "dpo@shop".to_owned()),
            (
                custodian::DEFAULT_MFA_RING.to_owned(),
                "dpo@shop".to_owned()
            )
        ]
    );
    // Other staff are untouched, on this server and on a restarted one.
    login(&shop, &mfa, "staff-8", &other).unwrap();
    login(&shop, &shop.mfa(&shop.start()), "staff-8", &other).unwrap();
    // A customer who never had MFA is erased in the data ring only.
    let before = log.tree_size().unwrap();
    custodian.erase_subject("cus_1").unwrap();
    let after = log.entries(before..log.tree_size().unwrap()).unwrap();
    let new: Vec<_> = after
        .iter()
        .map(|e| (e.event.action.name(), e.event.resource.as_str()))
        .collect();
    assert_eq!(new, [("subject_erased", "customers")]);
}

#[test]
fn a_seed_from_another_ring_is_refused() {
    let shop = Shop::new();
    let custodian = shop.start();
    let mfa = shop.mfa(&custodian);
    enroll(&shop, &mfa, "staff-7");
    // A value sealed in the customers ring for subject staff-7, under the seed's own context,
    // copied into the seed column: refused although every key involved is valid.
    let context = EncryptionContext::new()
        .with("purpose", "mfa-seed")
        .unwrap()
        .with("user", "staff-7")
        .unwrap()
        .with("factor", "phone")
        .unwrap();
    let forged = custodian
        .encrypt(
            "staff-7",
            &context,
            b"\x01\x01\x06\0\0\0\0\0\0\0\x1e0123456789abcdef0123",
        )
        .unwrap();
    let conn = rusqlite::Connection::open(&shop.mfa_db).unwrap();
    let changed = conn
        .execute(
            "UPDATE custodian_mfa_factor SET sealed_seed = ?1 WHERE user_id = 'staff-7'",
            [&forged],
        )
        .unwrap();
    assert_eq!(changed, 1);
    let error = Error::from(mfa.load("staff-7", "phone").unwrap_err());
    // The state MAC covers the sealed seed, so the row is refused as tampered first.
    assert_eq!(error.kind(), ErrorKind::Tampered, "{error}");
}

/// One error of every kind, each from a real operation where one can produce it, with the HTTP
/// status the kind documents.
#[test]
fn every_error_kind_maps_to_its_status() {
    let shop = Shop::new();
    let custodian = shop.start();
    let mfa = shop.mfa(&custodian);
    let verifier = Verifier::default();
    let app = enroll(&shop, &mfa, "staff-7");
    let ctx = EncryptionContext::for_field("customers", "1", "email").unwrap();
    let sealed = custodian
        .encrypt("cus_1", &ctx, b"jane@example.com")
        .unwrap();

    let mut seen = Vec::new();
    let mut check = |error: Error, kind: ErrorKind, status: u16| {
        assert_eq!(error.kind(), kind, "{error}");
        assert_eq!(kind.http_status(), status, "{kind:?}");
        seen.push(kind);
    };

    let garbage = custodian.decrypt(&ctx, b"not a ciphertext").unwrap_err();
    check(garbage, ErrorKind::InvalidInput, 400);

    let policy = Policy::from_toml("version = 2\n", "shop.toml");
    check(
        Error::from(policy.unwrap_err()),
        ErrorKind::Configuration,
        500,
    );

    // Adding a second factor to a user with an active one needs a step-up.
    let second = mfa
        .begin_enrollment(
            &verifier,
            "staff-7",
            "laptop",
            TotpKey::generate().unwrap(),
            shop.now(),
            None,
        )
        .unwrap_err();
    check(Error::from(second), ErrorKind::StepUpRequired, 401);

    let now = shop.advance(30);
    let wrong = mfa
        .verify(&verifier, "staff-7", "phone", "000000", now)
        .unwrap_err();
    check(Error::from(wrong), ErrorKind::CodeRejected, 401);

    let missing = mfa.load("staff-7", "yubikey").unwrap_err();
    check(Error::from(missing), ErrorKind::NotFound, 404);

    let again = custodian
        .keys()
        .create_ring(
            "customers",
            Suite::default(),
            RotationPolicy::default(),
            now,
        )
        .unwrap_err();
    check(Error::from(again), ErrorKind::Conflict, 409);

    let other_ctx = EncryptionContext::for_field("customers", "2", "email").unwrap();
    check(
        custodian.decrypt(&other_ctx, &sealed).unwrap_err(),
        ErrorKind::DecryptFailed,
        500,
    );

    custodian.erase_subject("cus_1").unwrap();
    let erased = custodian.decrypt(&ctx, &sealed).unwrap_err();
    check(erased, ErrorKind::SubjectErased, 410);

    let shared = custodian.encrypt_shared(&ctx, b"shop secret").unwrap();
    let keys = custodian.keys();
    keys.rotate("customers", shop.advance(10)).unwrap();
    keys.rewrap_subject_keys("customers", shop.now()).unwrap();
    keys.set_min_encryption_version("customers", 2, shop.advance(10))
        .unwrap();
    keys.set_min_decryption_version("customers", 2, shop.now())
        .unwrap();
    let retired = custodian.decrypt(&ctx, &shared).unwrap_err();
    check(retired, ErrorKind::KeyRetired, 500);

    let conn = rusqlite::Connection::open(&shop.mfa_db).unwrap();
    conn.execute(
        "UPDATE custodian_mfa_factor SET failures = 0, locked = 0 WHERE user_id = 'staff-7'",
        [],
    )
    .unwrap();
    conn.execute(
        "UPDATE custodian_mfa_factor SET last_step = last_step - 1 WHERE user_id = 'staff-7'",
        [],
    )
    .unwrap();
    let tampered = login(&shop, &mfa, "staff-7", &app).unwrap_err();
    check(Error::from(tampered), ErrorKind::Tampered, 500);

    // No store outage or internal failure can be caused on demand here; the mapping is checked on
    // the variants the stores return.
    check(
        Error::from(KeyError::StoreUnavailable("database is locked".into())),
        ErrorKind::StoreUnavailable,
        503,
    );
    check(
        Error::from(KeyError::Store("disk I/O error".into())),
        ErrorKind::Internal,
        500,
    );

    // Denied is checked with the shop policy in `a_denied_reveal_is_denied_or_asks_for_a_code`.
    assert_eq!(seen.len(), 12);
    assert_eq!(ErrorKind::Denied.http_status(), 403);
}

#[test]
fn a_denied_reveal_is_denied_or_asks_for_a_code() {
    use custodian::mfa::{StepUp, StepUpMethod};
    use custodian::rbac::{Principal, Resource};
    use custodian::{RevealRequest, SealedRecord};

    let shop = Shop::new();
    let custodian = shop.start();
    let policy = shop_policy();
    let ctx = EncryptionContext::for_field("cards", "card-9", "number").unwrap();
    let number = custodian
        .encrypt("cus_42", &ctx, b"4242 4242 4242 4242")
        .unwrap();
    let record = SealedRecord::new("cards").field("number", number.as_slice());
    let card = Resource::new("payment_card", "card-9", "store-3").with("customer_id", "cus_42");

    // Fulfillment may not see cards at all.
    let packer = Principal::new("emp-40", "store-3").with_role("fulfillment");
    let denied = custodian
        .reveal(
            &policy,
            &RevealRequest::new(&packer, "view", &card),
            &record,
        )
        .unwrap_err();
    assert_eq!(denied.kind(), ErrorKind::Denied, "{denied}");
    assert_eq!(denied.kind().http_status(), 403);

    // Finance may, after a recent step-up: without one, the kind asks for a code.
    let clerk = Principal::new("emp-82", "store-3").with_role("finance");
    let request = RevealRequest::new(&clerk, "view", &card);
    let no_step_up = custodian.reveal(&policy, &request, &record).unwrap_err();
    assert_eq!(no_step_up.kind(), ErrorKind::StepUpRequired, "{no_step_up}");
    let step_up =
        StepUp::assume_verified_by_this_server("emp-82", "phone", StepUpMethod::Totp, shop.now());
    let request = RevealRequest::new(&clerk, "view", &card).with_step_up(&step_up);
    custodian.reveal(&policy, &request, &record).unwrap();
}

/// No kind tells an attacker more than "it did not open" or "code rejected".
#[test]
fn decrypt_and_code_failures_are_one_kind_each() {
    let shop = Shop::new();
    let custodian = shop.start();
    let ctx = EncryptionContext::for_field("customers", "1", "email").unwrap();
    let sealed = custodian
        .encrypt("cus_1", &ctx, b"jane@example.com")
        .unwrap();
    let mut tampered = sealed.clone();
    *tampered.last_mut().unwrap() ^= 1;
    let other_ctx = EncryptionContext::for_field("customers", "2", "email").unwrap();
    let other_shop = Shop::new();
    let stranger = other_shop.start();
    let foreign = stranger.encrypt("cus_1", &ctx, b"x").unwrap();
    for error in [
        custodian.decrypt(&ctx, &tampered).unwrap_err(),
        custodian.decrypt(&other_ctx, &sealed).unwrap_err(),
        custodian.decrypt(&ctx, &foreign).unwrap_err(),
    ] {
        assert_eq!(error.kind(), ErrorKind::DecryptFailed, "{error}");
    }
    for reason in [
        RejectReason::Malformed,
        RejectReason::WrongCode,
        RejectReason::Replayed,
        RejectReason::Throttled { retry_at: T0 },
        RejectReason::Locked,
        RejectReason::NotActive,
        RejectReason::EnrollmentExpired,
        RejectReason::Conflict,
        RejectReason::UnknownRecoveryCode,
    ] {
        let error = Error::from(MfaError::Rejected(reason));
        assert_eq!(error.kind(), ErrorKind::CodeRejected, "{reason:?}");
        assert_eq!(error.to_string(), "code rejected, try later");
    }
}

#[test]
fn error_kinds_serialize_as_snake_case() {
    let json = serde_json::to_string(&ErrorKind::StoreUnavailable).unwrap();
    assert_eq!(json, "\"store_unavailable\"");
    let json = serde_json::to_string(&ErrorKind::CodeRejected).unwrap();
    assert_eq!(json, "\"code_rejected\"");
}

/// A table of `(id, email)` the way an application keeps it: sealed e-mails and their tokens.
struct Table {
    rows: Vec<(u64, Encrypted<String>, IndexToken)>,
}

fn customers(custodian: &Custodian, index: &BlindIndex, n: u64) -> Table {
    let rows = (0..n)
        .map(|id| {
            let email = format!("customer{id}@example.com");
            let fields = custodian.record("customers", &id.to_string(), &format!("cus_{id}"));
            let sealed = fields.seal("email", email.as_str()).unwrap();
            (id, sealed, index.token(&email).unwrap())
        })
        .collect();
    Table { rows }
}

impl Table {
    /// A page of rows with their tokens, as `reindex_all` wants it.
    fn indexed_page(
        &self,
        after: Option<&u64>,
        page: usize,
    ) -> Option<(Vec<IndexedValue<u64>>, u64)> {
        let page = self.page(after, page);
        let last = page.last().map(|row| row.0)?;
        let values = page
            .into_iter()
            .map(|(id, sealed, token)| IndexedValue {
                key: *id,
                token: token.clone(),
                context: EncryptionContext::for_field("customers", id.to_string(), "email")
                    .unwrap(),
                value: sealed.clone(),
            })
            .collect();
        Some((values, last))
    }

    /// Up to `page` rows after `after`, as the application's `SELECT ... WHERE id > ? LIMIT ?`.
    fn page(&self, after: Option<&u64>, page: usize) -> Vec<&(u64, Encrypted<String>, IndexToken)> {
        self.rows
            .iter()
            .filter(|(id, _, _)| after.is_none_or(|a| id > a))
            .take(page)
            .collect()
    }
}

#[test]
fn rewrap_all_is_resumable_and_leaves_no_value_behind() {
    let shop = Shop::new();
    let custodian = shop.start();
    let index = custodian
        .blind_index("customers.email", Normalizer::Email)
        .unwrap();
    let table = std::cell::RefCell::new(customers(&custodian, &index, 25));
    custodian.erase_subject("cus_3").unwrap();
    let rotation = custodian.rotate().unwrap();
    assert_eq!(rotation.new_version, 2);

    let next_page = |after: Option<&u64>| -> Result<_, String> {
        let table = table.borrow();
        let page = table.page(after, 10);
        let last = page.last().map(|row| row.0);
        let values = page
            .into_iter()
            .map(|(id, sealed, _)| StoredValue {
                key: *id,
                context: EncryptionContext::for_field("customers", id.to_string(), "email")
                    .unwrap(),
                ciphertext: sealed.as_bytes().to_vec(),
            })
            .collect();
        Ok(last.map(|last| (values, last)))
    };
    let mut pages_written = 0;
    let mut reported = Vec::new();
    // The first run is interrupted by a failing write of its second page.
    let interrupted = custodian.rewrap_all(
        None,
        next_page,
        |changes: Vec<Rewritten<u64>>| {
            pages_written += 1;
            if pages_written == 2 {
                return Err("disk full".to_owned());
            }
            let mut table = table.borrow_mut();
            for change in changes {
                let row = &mut table.rows[change.key as usize];
                assert_eq!(row.1.as_bytes(), change.old.as_slice());
                row.1 = Encrypted::from_ciphertext(change.new).unwrap();
            }
            Ok(())
        },
        |p: &RunProgress<u64>| reported.push(p.clone()),
    );
    assert_eq!(interrupted.unwrap_err(), "disk full");
    let resume = reported.last().unwrap().position;
    assert_eq!(resume, Some(9));
    assert_eq!(
        reported.last().unwrap().changed,
        9,
        "one of the first ten was erased"
    );
    assert_eq!(reported.last().unwrap().erased, 1);

    // The second run resumes after row 9 and finishes.
    let mut pages = Vec::new();
    let done = custodian
        .rewrap_all(
            resume,
            next_page,
            |changes: Vec<Rewritten<u64>>| -> Result<(), String> {
                let mut table = table.borrow_mut();
                for change in changes {
                    table.rows[change.key as usize].1 =
                        Encrypted::from_ciphertext(change.new).unwrap();
                }
                Ok(())
            },
            |p: &RunProgress<u64>| pages.push(p.position),
        )
        .unwrap();
    assert_eq!(pages, [Some(19), Some(24)]);
    assert_eq!(done.progress.seen, 15);
    assert_eq!(done.progress.changed, 15);
    assert!(done.failures.is_empty());
    // Every value is now under version 2 and still opens (except the erased customer's).
    for (id, sealed, _) in &table.borrow().rows {
        let fields = custodian.record("customers", &id.to_string(), &format!("cus_{id}"));
        if *id == 3 {
            assert!(
                fields
                    .open("email", sealed)
                    .unwrap_err()
                    .is_subject_erased()
            );
            continue;
        }
        assert!(
            !custodian.needs_rewrap(sealed.as_bytes()).unwrap(),
            "row {id}"
        );
        assert_eq!(
            fields.open("email", sealed).unwrap(),
            format!("customer{id}@example.com")
        );
        assert!(fields.rewrap("email", sealed).unwrap().is_none());
    }
    // The progress serializes for a log line or a resume file.
    let json = serde_json::to_string(&done.progress).unwrap();
    assert_eq!(
        json,
        r#"{"seen":15,"changed":15,"current":0,"erased":0,"failed":0,"position":24}"#
    );
}

#[test]
fn rewrap_all_reports_a_value_that_does_not_open_and_goes_on() {
    let shop = Shop::new();
    let custodian = shop.start();
    let fields = custodian.record("customers", "1", "cus_1");
    let good = fields.seal("email", "a@example.com").unwrap();
    custodian.rotate().unwrap();
    let values = vec![
        StoredValue {
            key: "misplaced",
            // Sealed for record 1, stored as record 2's: it does not open there.
            context: EncryptionContext::for_field("customers", "2", "email").unwrap(),
            ciphertext: good.as_bytes().to_vec(),
        },
        StoredValue {
            key: "right",
            context: fields.context("email").unwrap(),
            ciphertext: good.as_bytes().to_vec(),
        },
    ];
    let mut pages = Some((values, 1u32));
    let mut written = Vec::new();
    let done = custodian
        .rewrap_all(
            None,
            |_| Ok::<_, String>(pages.take()),
            |changes: Vec<Rewritten<&str>>| {
                written.extend(changes.into_iter().map(|c| c.key));
                Ok(())
            },
            |_| {},
        )
        .unwrap();
    assert_eq!(written, ["right"]);
    assert_eq!(done.progress.failed, 1);
    assert_eq!(done.failures.len(), 1);
    assert_eq!(done.failures[0].0, "misplaced");
    assert_eq!(done.failures[0].1.kind(), ErrorKind::DecryptFailed);
}

#[test]
fn reindex_all_gives_old_tokens_new_ones_and_lookups_work_throughout() {
    let shop = Shop::new();
    let custodian = shop.start();
    let index = custodian
        .blind_index("customers.email", Normalizer::Email)
        .unwrap();
    let table = std::cell::RefCell::new(customers(&custodian, &index, 12));
    custodian.rotate_index_keys().unwrap();
    // The index follows the ring: new tokens are under version 2, old ones still searchable.
    assert_eq!(index.primary_version(), 2);
    let old = table.borrow().rows[5].2.clone();
    assert!(!index.is_current(&old));
    assert!(
        index
            .search_tokens("customer5@example.com")
            .unwrap()
            .contains(&old)
    );

    let done = custodian
        .reindex_all(
            &index,
            None,
            |after: Option<&u64>| Ok::<_, String>(table.borrow().indexed_page(after, 5)),
            |changes: Vec<(u64, IndexToken)>| {
                let mut table = table.borrow_mut();
                for (id, token) in changes {
                    table.rows[id as usize].2 = token;
                }
                Ok(())
            },
            |_| {},
        )
        .unwrap();
    assert_eq!(done.progress.changed, 12);
    for (id, _, token) in &table.borrow().rows {
        assert!(index.is_current(token));
        assert_eq!(
            token,
            &index.token(&format!("customer{id}@example.com")).unwrap()
        );
    }
    // A second run finds nothing to do.
    let again = custodian
        .reindex_all(
            &index,
            None,
            |after: Option<&u64>| Ok::<_, String>(table.borrow().indexed_page(after, 100)),
            |_changes: Vec<(u64, IndexToken)>| panic!("nothing should be written"),
            |_| {},
        )
        .unwrap();
    assert_eq!(again.progress.current, 12);
    assert_eq!(again.progress.changed, 0);
}

/// `reveal` reads what `seal` wrote: a sealed `Encrypted<String>` is shown as its text (not its
/// JSON encoding), masked like a field encrypted as bytes.
#[test]
fn reveal_shows_sealed_strings_and_encrypted_bytes_alike() {
    use custodian::rbac::{Principal, Resource, Visibility};
    use custodian::{RevealRequest, SealedRecord};

    let shop = Shop::new();
    let custodian = shop.start();
    let policy = shop_policy();
    let jane = custodian.record("customers", "42", "cus_42");
    let email = jane.seal("email", "jane.doe@example.com").unwrap();
    let name = custodian
        .encrypt("cus_42", &jane.context("name").unwrap(), b"Jane Doe")
        .unwrap();
    let record = SealedRecord::new("customers")
        .field("email", &email)
        .field("name", name.as_slice());
    let agent = Principal::new("emp-17", "store-3").with_role("support");
    let customer = Resource::new("customer", "42", "store-3");
    let shown = custodian
        .reveal(
            &policy,
            &RevealRequest::new(&agent, "view", &customer),
            &record,
        )
        .unwrap();
    let values: Vec<(&str, Visibility, &str)> = shown
        .fields()
        .iter()
        .map(|f| (f.name(), f.visibility(), f.expose_secret()))
        .collect();
    assert_eq!(
        values,
        [
            ("email", Visibility::Masked, "j***@example.com"),
            ("name", Visibility::Full, "Jane Doe"),
        ]
    );
    // Given as bytes, the same value would be read as its JSON encoding, quotes and all: the
    // typed `SealedField` is what tells the two apart.
    let as_bytes = SealedRecord::new("customers").field("email", email.as_bytes());
    let shown = custodian
        .reveal(
            &policy,
            &RevealRequest::new(&agent, "view", &customer),
            &as_bytes,
        )
        .unwrap();
    assert_ne!(shown.fields()[0].expose_secret(), "j***@example.com");
}

#[test]
fn public_messages_say_nothing_of_the_server_side() {
    let shop = Shop::new();
    let custodian = shop.start();
    let ctx = EncryptionContext::for_field("customers", "1", "email").unwrap();
    let sealed = custodian
        .encrypt("cus_1", &ctx, b"jane@example.com")
        .unwrap();
    let other = EncryptionContext::for_field("customers", "2", "email").unwrap();
    let failed = custodian.decrypt(&other, &sealed).unwrap_err();
    assert_eq!(failed.public_message(), "internal error");
    let rejected = Error::from(MfaError::Rejected(RejectReason::Locked));
    assert_eq!(rejected.public_message(), "code rejected");
    let down = Error::from(KeyError::StoreUnavailable("10.0.0.7:5432 refused".into()));
    assert!(!down.public_message().contains("10.0.0.7"));
    let garbage = custodian.decrypt(&ctx, b"garbage").unwrap_err();
    assert_eq!(garbage.public_message(), garbage.to_string());
    custodian.erase_subject("cus_1").unwrap();
    let erased = custodian.decrypt(&ctx, &sealed).unwrap_err();
    assert_eq!(erased.public_message(), erased.to_string());
}

#[test]
fn rewrap_in_place_and_reindex_in_place_bring_a_loaded_page_up_to_date() {
    let shop = Shop::new();
    let custodian = shop.start();
    let index = custodian
        .blind_index("customers.email", Normalizer::Email)
        .unwrap();
    let table = customers(&custodian, &index, 6);
    custodian.erase_subject("cus_2").unwrap();
    custodian.rotate().unwrap();
    custodian.rotate_index_keys().unwrap();

    // A page as the application loaded it; row 4 comes back with the wrong context.
    let mut page: Vec<(EncryptionContext, Encrypted<String>)> = table
        .rows
        .iter()
        .map(|(id, sealed, _)| {
            let record = if *id == 4 { "5" } else { &id.to_string() };
            let context = EncryptionContext::for_field("customers", record, "email").unwrap();
            (context, sealed.clone())
        })
        .collect();
    let before: Vec<Vec<u8>> = page.iter().map(|(_, v)| v.as_bytes().to_vec()).collect();

    let outcome = custodian.rewrap_in_place(page.iter_mut().map(|(c, v)| (&*c, v)));
    assert_eq!(outcome.changed, [0, 1, 3, 5]);
    assert_eq!((outcome.seen, outcome.current, outcome.erased), (6, 0, 1));
    assert_eq!(outcome.failures.len(), 1);
    assert_eq!(outcome.failures[0].0, 4);
    assert_eq!(
        serde_json::to_string(&outcome).unwrap(),
        r#"{"seen":6,"changed":4,"current":0,"erased":1,"failed":1}"#
    );
    for (position, (context, value)) in page.iter().enumerate() {
        if outcome.changed.contains(&position) {
            assert!(!custodian.needs_rewrap(value.as_bytes()).unwrap());
            let email = custodian.open(value, context).unwrap();
            assert_eq!(email, format!("customer{position}@example.com"));
        } else {
            assert_eq!(
                value.as_bytes(),
                before[position].as_slice(),
                "left as it was"
            );
        }
    }
    let again = custodian.rewrap_in_place(page.iter_mut().map(|(c, v)| (&*c, v)));
    assert!(again.changed.is_empty());
    assert_eq!(again.current, 4);

    let mut tokens: Vec<IndexToken> = table.rows.iter().map(|row| row.2.clone()).collect();
    let rows = page
        .iter()
        .zip(tokens.iter_mut())
        .map(|((c, v), t)| (c, v, t));
    let outcome = custodian.reindex_in_place(&index, rows);
    assert_eq!(outcome.changed, [0, 1, 3, 5]);
    assert_eq!((outcome.erased, outcome.failures.len()), (1, 1));
    for position in [0, 1, 3, 5] {
        let email = format!("customer{position}@example.com");
        assert_eq!(tokens[position], index.token(&email).unwrap());
        assert!(index.is_current(&tokens[position]));
    }
    assert!(
        !index.is_current(&tokens[2]),
        "the erased row keeps its old token"
    );
}

#[test]
fn authorize_records_every_decision_and_asks_for_a_code_when_a_step_up_would_lift_a_denial() {
    use custodian::RevealRequest;
    use custodian::mfa::{StepUp, StepUpMethod};
    use custodian::rbac::{Principal, Resource};

    let shop = Shop::new();
    let custodian = shop.start();
    let policy = shop_policy();
    let card = Resource::new("payment_card", "card-9", "store-3").with("customer_id", "cus_42");
    let size = || custodian.audit().tree_size().unwrap();

    let packer = Principal::new("emp-40", "store-3").with_role("fulfillment");
    let before = size();
    let denied = custodian
        .authorize(&policy, &RevealRequest::new(&packer, "view", &card))
        .unwrap_err();
    assert_eq!(denied.kind(), ErrorKind::Denied, "{denied}");
    assert_eq!(denied.denied().unwrap().audit_entry(), before);

    let clerk = Principal::new("emp-82", "store-3").with_role("finance");
    let no_step_up = custodian
        .authorize(&policy, &RevealRequest::new(&clerk, "view", &card))
        .unwrap_err();
    assert_eq!(no_step_up.kind(), ErrorKind::StepUpRequired, "{no_step_up}");

    let step_up =
        StepUp::assume_verified_by_this_server("emp-82", "phone", StepUpMethod::Totp, shop.now());
    let request = RevealRequest::new(&clerk, "view", &card).with_step_up(Some(&step_up));
    let allowed = custodian.authorize(&policy, &request).unwrap();
    assert!(allowed.decision().is_allowed());
    assert_eq!(allowed.audit_entry(), before + 2);
    assert_eq!(
        size(),
        before + 3,
        "one entry per decision, denials included"
    );

    let trail = custodian.audit().export_json_lines(before..size()).unwrap();
    assert_eq!(
        trail.matches(r#""type":"access_decision""#).count(),
        3,
        "{trail}"
    );
    assert_eq!(trail.matches("payment_card/card-9").count(), 3, "{trail}");
    assert!(
        trail.contains("emp-40") && trail.contains("emp-82"),
        "{trail}"
    );
}
