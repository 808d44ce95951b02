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
    let policy = Policy::from_path(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/policies/shop.toml"
    ))
    .unwrap();
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
