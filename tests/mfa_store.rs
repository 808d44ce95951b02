//! The SQLite factor store: compare-and-set under concurrency, sealed seeds bound to their user,
//! recovery codes, step-up rules.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use custodian::envelope::{EnvelopeError, Kek, StaticKek};
use custodian::mfa::{
    MfaError, MfaService, OtpSecret, Phase, RecoveryCodeSet, RejectReason, SqliteFactorStore,
    StepUpMethod, TotpKey, TotpParams, Verifier,
};
use custodian::{SecretBytes, SecretKey};
use rusqlite::Connection;
use std::path::Path;
use std::sync::{Arc, Barrier};

const NOW: u64 = 1_700_000_000;
const SEED: &[u8] = b"12345678901234567890";

fn rfc_key() -> TotpKey {
    TotpKey::new(
        OtpSecret::from_bytes(SecretBytes::new(SEED.to_vec())).unwrap(),
        TotpParams::PORTABLE,
    )
}

fn code_at(now: u64) -> String {
    rfc_key().code_at(now).unwrap().expose_secret().to_owned()
}

fn store_at(path: &Path, kek: &Arc<dyn Kek>) -> MfaService {
    MfaService::new(
        SqliteFactorStore::open(path).unwrap(),
        Arc::clone(kek),
        state_key(),
    )
}

/// The state key; in production `KeyManager::derive_key(.., b"custodian/v1/mfa-state", now)`.
fn state_key() -> SecretKey {
    SecretKey::from_bytes([0x42; 32])
}

fn kek() -> Arc<dyn Kek> {
    Arc::new(StaticKek::generate("mfa-seeds", 1).unwrap())
}

/// A store with `user-1`'s factor `phone` enrolled and confirmed at `NOW`.
fn enrolled(path: &Path, kek: &Arc<dyn Kek>) -> MfaService {
    let store = store_at(path, kek);
    let verifier = Verifier::default();
    store
        .begin_enrollment(&verifier, "user-1", "phone", rfc_key(), NOW, None)
        .unwrap();
    store
        .confirm_enrollment(&verifier, "user-1", "phone", &code_at(NOW), NOW)
        .unwrap();
    store
}

#[test]
fn enrollment_login_and_replay_through_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let kek = kek();
    let store = store_at(&dir.path().join("mfa.db"), &kek);
    let verifier = Verifier::default();
    let factor = store
        .begin_enrollment(&verifier, "user-1", "phone", rfc_key(), NOW, None)
        .unwrap();
    let uri = factor.enrollment_uri("ACME", "jane@example.com").unwrap();
    assert!(
        uri.to_uri()
            .expose_secret()
            .contains("secret=GEZDGNBVGY3TQOJQ")
    );
    assert_eq!(
        store.factors("user-1").unwrap(),
        [(
            "phone".to_owned(),
            Phase::Pending {
                expires_at: NOW + 600
            }
        )]
    );

    // A pending factor does not log in.
    let first = code_at(NOW);
    let err = store
        .verify(&verifier, "user-1", "phone", &first, NOW)
        .unwrap_err();
    assert_eq!(err.reject_reason(), Some(RejectReason::NotActive));

    let step_up = store
        .confirm_enrollment(&verifier, "user-1", "phone", &first, NOW)
        .unwrap();
    assert_eq!(step_up.method(), StepUpMethod::Totp);
    assert_eq!(
        store.factors("user-1").unwrap(),
        [("phone".to_owned(), Phase::Active)]
    );

    // The confirmation code is consumed.
    let err = store
        .verify(&verifier, "user-1", "phone", &first, NOW + 2)
        .unwrap_err();
    assert_eq!(err.reject_reason(), Some(RejectReason::Replayed));
    assert_eq!(err.to_string(), "code rejected, try later");
    assert_eq!(
        store
            .load("user-1", "phone")
            .unwrap()
            .factor
            .state()
            .failures(),
        0,
        "a replay is not a failure: a spent code gives no guessing power"
    );

    let later = NOW + 30;
    let step_up = store
        .verify(&verifier, "user-1", "phone", &code_at(later), later)
        .unwrap();
    assert_eq!(step_up.verified_at(), later);
    assert_eq!(step_up.factor(), "phone");
    let stored = store.load("user-1", "phone").unwrap();
    assert_eq!(stored.factor.state().failures(), 0);
    assert_eq!(stored.factor.state().last_step(), Some(later / 30));
    assert!(matches!(
        store.load("user-1", "nope"),
        Err(MfaError::NotFound { .. })
    ));
}

#[test]
fn a_concurrent_second_verification_with_the_same_code_loses() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mfa.db");
    let kek = kek();
    let store_a = enrolled(&path, &kek);
    let store_b = store_at(&path, &kek);
    let verifier = Verifier::default();
    let now = NOW + 30;
    let code = code_at(now);

    // Both requests read the same state and both find the code valid...
    let read_a = store_a.load("user-1", "phone").unwrap();
    let read_b = store_b.load("user-1", "phone").unwrap();
    assert_eq!(read_a.generation, read_b.generation);
    let ok_a = verifier.verify(&read_a.factor, &code, now).unwrap();
    let ok_b = verifier.verify(&read_b.factor, &code, now).unwrap();
    // ...but only the first compare-and-set writes.
    assert!(
        store_a
            .compare_and_set("user-1", "phone", read_a.generation, ok_a.state())
            .unwrap()
    );
    assert!(
        !store_b
            .compare_and_set("user-1", "phone", read_b.generation, ok_b.state())
            .unwrap()
    );

    // The store's own verify on the second connection reloads and refuses the replay.
    let err = store_b
        .verify(&verifier, "user-1", "phone", &code, now)
        .unwrap_err();
    assert_eq!(err.reject_reason(), Some(RejectReason::Replayed));
}

#[test]
fn racing_threads_with_the_same_code_succeed_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mfa.db");
    let kek = kek();
    drop(enrolled(&path, &kek));
    for round in 1..=5u64 {
        let now = NOW + 30 * round;
        let code = code_at(now);
        let barrier = Arc::new(Barrier::new(2));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (path, kek, barrier, code) = (
                    path.clone(),
                    Arc::clone(&kek),
                    Arc::clone(&barrier),
                    code.clone(),
                );
                std::thread::spawn(move || {
                    let store = store_at(&path, &kek);
                    barrier.wait();
                    store.verify(&Verifier::default(), "user-1", "phone", &code, now)
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {results:?}");
        let loss = results.iter().find_map(|r| r.as_ref().err()).unwrap();
        assert!(matches!(
            loss.reject_reason(),
            Some(RejectReason::Replayed | RejectReason::Conflict)
        ));
        // The failure was counted; a success in the next round resets it.
    }
}

#[test]
fn a_seed_row_copied_to_another_account_does_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mfa.db");
    let kek = kek();
    let store = enrolled(&path, &kek);
    let verifier = Verifier::default();
    store
        .begin_enrollment(
            &verifier,
            "user-2",
            "phone",
            TotpKey::generate().unwrap(),
            NOW,
            None,
        )
        .unwrap();
    // An attacker with write access to the table copies user-1's sealed seed into user-2's row,
    // and into another factor of user-1.
    let conn = Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE custodian_mfa_factor SET sealed_seed =
            (SELECT sealed_seed FROM custodian_mfa_factor WHERE user_id = 'user-1' AND factor_id = 'phone')
         WHERE user_id = 'user-2'",
        [],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO custodian_mfa_factor (user_id, factor_id, sealed_seed, phase, generation)
         SELECT user_id, 'laptop', sealed_seed, 'active', 0 FROM custodian_mfa_factor
         WHERE user_id = 'user-1' AND factor_id = 'phone'",
        [],
    )
    .unwrap();
    // The state MAC binds the sealed seed: the edited row is refused before its seed is opened.
    assert!(matches!(
        store.load("user-2", "phone"),
        Err(MfaError::StateTampered { .. })
    ));
    let err = store
        .verify(&verifier, "user-2", "phone", &code_at(NOW + 30), NOW + 30)
        .unwrap_err();
    assert!(matches!(err, MfaError::StateTampered { .. }), "{err}");
    // The inserted row has no MAC; adopting it opens the seed first, which is bound to user-1's
    // phone and does not open as the laptop.
    assert!(matches!(
        store.load("user-1", "laptop"),
        Err(MfaError::StateUnauthenticated { .. })
    ));
    assert!(matches!(
        store.adopt_unauthenticated_state("user-1", "laptop"),
        Err(MfaError::Seal(EnvelopeError::Decrypt))
    ));
    assert!(matches!(
        store.load("user-1", "laptop"),
        Err(MfaError::StateUnauthenticated { .. })
    ));
    // The original still opens, and with another KEK nothing does.
    assert!(store.load("user-1", "phone").is_ok());
    let other = store_at(&path, &kek_other());
    assert!(other.load("user-1", "phone").is_err());
}

fn kek_other() -> Arc<dyn Kek> {
    Arc::new(StaticKek::generate("mfa-seeds", 1).unwrap())
}

#[test]
fn nothing_secret_is_stored_in_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mfa.db");
    let kek = kek();
    let store = enrolled(&path, &kek);
    let (set, codes) = RecoveryCodeSet::generate("user-1").unwrap();
    store.replace_recovery_codes(&set).unwrap();
    drop(store);
    let bytes = std::fs::read(&path).unwrap();
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(
        contains(b"custodian_mfa_factor"),
        "sanity: the file is the database"
    );
    assert!(!contains(SEED));
    assert!(!contains(b"GEZDGNBVGY3TQOJQ"));
    for code in &codes {
        assert!(!contains(code.expose_secret().as_bytes()));
        assert!(!contains(code.expose_secret().replace('-', "").as_bytes()));
    }
}

#[test]
fn lockout_then_unlock_with_a_recovery_code() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mfa.db");
    let kek = kek();
    let store = enrolled(&path, &kek);
    let verifier = Verifier::default();
    let (set, codes) = RecoveryCodeSet::generate("user-1").unwrap();
    store.replace_recovery_codes(&set).unwrap();

    let mut now = NOW + 30;
    for _ in 0..10 {
        let err = store
            .verify(&verifier, "user-1", "phone", "000000", now)
            .unwrap_err();
        assert_eq!(err.to_string(), "code rejected, try later");
        now = now.max(
            store
                .load("user-1", "phone")
                .unwrap()
                .factor
                .state()
                .retry_at(),
        ) + 1;
    }
    let state = *store.load("user-1", "phone").unwrap().factor.state();
    assert!(state.is_locked());
    assert_eq!(state.failures(), 10);
    let err = store
        .verify(&verifier, "user-1", "phone", &code_at(now), now)
        .unwrap_err();
    assert_eq!(err.reject_reason(), Some(RejectReason::Locked));

    let step_up = store
        .use_recovery_code("user-1", codes[4].expose_secret(), now)
        .unwrap();
    assert_eq!(step_up.method(), StepUpMethod::RecoveryCode);
    assert_eq!(store.recovery_codes_remaining("user-1").unwrap(), 9);
    assert!(
        !store
            .load("user-1", "phone")
            .unwrap()
            .factor
            .state()
            .is_locked()
    );
    store
        .verify(&verifier, "user-1", "phone", &code_at(now), now)
        .unwrap();

    // Single use, also from another connection.
    let other = store_at(&path, &kek);
    let err = other
        .use_recovery_code("user-1", codes[4].expose_secret(), now)
        .unwrap_err();
    assert_eq!(err.reject_reason(), Some(RejectReason::UnknownRecoveryCode));
    assert_eq!(err.to_string(), "code rejected, try later");
    other
        .use_recovery_code("user-1", &codes[5].expose_secret().to_lowercase(), now)
        .unwrap();

    // Regenerating revokes the rest of the old set.
    let (new_set, new_codes) = RecoveryCodeSet::generate("user-1").unwrap();
    store.replace_recovery_codes(&new_set).unwrap();
    assert_eq!(store.recovery_codes_remaining("user-1").unwrap(), 10);
    assert!(
        store
            .use_recovery_code("user-1", codes[6].expose_secret(), now)
            .is_err()
    );
    store
        .use_recovery_code("user-1", new_codes[0].expose_secret(), now)
        .unwrap();
    // Another user's code does not work here.
    let (set_2, codes_2) = RecoveryCodeSet::generate("user-2").unwrap();
    store.replace_recovery_codes(&set_2).unwrap();
    assert!(
        store
            .use_recovery_code("user-1", codes_2[0].expose_secret(), now)
            .is_err()
    );
}

#[test]
fn admin_reset_unlocks() {
    let dir = tempfile::tempdir().unwrap();
    let kek = kek();
    let store = enrolled(&dir.path().join("mfa.db"), &kek);
    let verifier = Verifier::default();
    let mut now = NOW + 30;
    for _ in 0..10 {
        let _ = store.verify(&verifier, "user-1", "phone", "000000", now);
        now = now.max(
            store
                .load("user-1", "phone")
                .unwrap()
                .factor
                .state()
                .retry_at(),
        ) + 1;
    }
    assert!(
        store
            .load("user-1", "phone")
            .unwrap()
            .factor
            .state()
            .is_locked()
    );
    store
        .admin_reset("admin-1", "user-1", "phone", now)
        .unwrap();
    store
        .verify(&verifier, "user-1", "phone", &code_at(now), now)
        .unwrap();
}

#[test]
fn adding_and_disabling_factors_need_a_fresh_step_up() {
    let dir = tempfile::tempdir().unwrap();
    let kek = kek();
    let store = enrolled(&dir.path().join("mfa.db"), &kek);
    let verifier = Verifier::default();
    let now = NOW + 30;

    // A second factor next to an active one needs a step-up.
    let err = store
        .begin_enrollment(
            &verifier,
            "user-1",
            "laptop",
            TotpKey::generate().unwrap(),
            now,
            None,
        )
        .unwrap_err();
    assert!(matches!(err, MfaError::StepUpRequired { .. }), "{err}");
    let step_up = store
        .verify(&verifier, "user-1", "phone", &code_at(now), now)
        .unwrap();
    let laptop = store
        .begin_enrollment(
            &verifier,
            "user-1",
            "laptop",
            TotpKey::generate().unwrap(),
            now,
            Some(&step_up),
        )
        .unwrap();
    // Re-enrolling the active id is refused.
    let err = store
        .begin_enrollment(&verifier, "user-1", "phone", rfc_key(), now, Some(&step_up))
        .unwrap_err();
    assert!(matches!(err, MfaError::AlreadyExists { .. }), "{err}");

    // Replacing: confirm the new factor, then disable the old one with the new step-up.
    let new_code = laptop.key().code_at(now).unwrap();
    let new_step_up = store
        .confirm_enrollment(&verifier, "user-1", "laptop", new_code.expose_secret(), now)
        .unwrap();
    let stale = now + 301;
    assert!(matches!(
        store.disable(&verifier, "user-1", "phone", &new_step_up, stale),
        Err(MfaError::StepUpRequired { .. })
    ));
    store
        .disable(&verifier, "user-1", "phone", &new_step_up, now + 10)
        .unwrap();
    assert_eq!(
        store.factors("user-1").unwrap(),
        [
            ("laptop".to_owned(), Phase::Active),
            ("phone".to_owned(), Phase::Disabled)
        ]
    );
    let err = store
        .verify(&verifier, "user-1", "phone", &code_at(now + 60), now + 60)
        .unwrap_err();
    assert_eq!(err.reject_reason(), Some(RejectReason::NotActive));
}

#[test]
fn generations_advance_and_stale_writes_lose() {
    let dir = tempfile::tempdir().unwrap();
    let kek = kek();
    let store = enrolled(&dir.path().join("mfa.db"), &kek);
    let read = store.load("user-1", "phone").unwrap();
    let state = read.factor.state().admin_reset();
    assert!(
        store
            .compare_and_set("user-1", "phone", read.generation, &state)
            .unwrap()
    );
    assert_eq!(
        store.load("user-1", "phone").unwrap().generation,
        read.generation + 1
    );
    assert!(
        !store
            .compare_and_set("user-1", "phone", read.generation, &state)
            .unwrap()
    );
}

/// Runs `sql` against the database file directly, as an attacker with write access would.
fn tamper(path: &Path, sql: &str) {
    let conn = Connection::open(path).unwrap();
    assert_eq!(conn.execute(sql, []).unwrap(), 1, "{sql}");
}

fn assert_tampered<T: std::fmt::Debug>(result: Result<T, MfaError>) {
    match result {
        Err(err @ MfaError::StateTampered { .. }) => {
            let message = err.to_string();
            assert!(message.contains("integrity"), "{message}");
        }
        other => panic!("expected StateTampered, got {other:?}"),
    }
}

#[test]
fn an_update_that_re_enables_a_disabled_factor_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mfa.db");
    let store = enrolled(&path, &kek());
    let verifier = Verifier::default();
    let at = NOW + 30;
    let step_up = store
        .verify(&verifier, "user-1", "phone", &code_at(at), at)
        .unwrap();
    store
        .disable(&verifier, "user-1", "phone", &step_up, at)
        .unwrap();
    // The phone was stolen and disabled; the thief edits the row back to active.
    tamper(
        &path,
        "UPDATE custodian_mfa_factor SET phase = 'active' WHERE user_id = 'user-1'",
    );
    let later = at + 60;
    assert_tampered(store.verify(&verifier, "user-1", "phone", &code_at(later), later));
    assert_tampered(store.factors("user-1"));
}

#[test]
fn an_update_that_clears_the_lock_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mfa.db");
    let store = enrolled(&path, &kek());
    let verifier = Verifier::default();
    let mut now = NOW + 30;
    for _ in 0..10 {
        let _ = store.verify(&verifier, "user-1", "phone", "000000", now);
        now += 3600;
    }
    assert!(
        store
            .load("user-1", "phone")
            .unwrap()
            .factor
            .state()
            .is_locked()
    );
    tamper(
        &path,
        "UPDATE custodian_mfa_factor SET locked = 0, failures = 0, retry_at = 0
         WHERE user_id = 'user-1'",
    );
    assert_tampered(store.verify(&verifier, "user-1", "phone", "123456", now));
    assert_tampered(store.verify(&verifier, "user-1", "phone", &code_at(now), now));
}

#[test]
fn an_update_that_rolls_back_the_replay_mark_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mfa.db");
    let store = enrolled(&path, &kek());
    let verifier = Verifier::default();
    let at = NOW + 30;
    store
        .verify(&verifier, "user-1", "phone", &code_at(at), at)
        .unwrap();
    tamper(
        &path,
        &format!(
            "UPDATE custodian_mfa_factor SET last_step = {} WHERE user_id = 'user-1'",
            NOW / 30 - 5
        ),
    );
    // The spent code would be fresh again under the edited mark.
    assert_tampered(store.verify(&verifier, "user-1", "phone", &code_at(at), at));
}

#[test]
fn a_state_row_copied_onto_another_user_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mfa.db");
    let store = enrolled(&path, &kek());
    let verifier = Verifier::default();
    // user-2 is locked; the attacker copies user-1's unlocked state (MAC included) over it.
    store
        .begin_enrollment(&verifier, "user-2", "phone", rfc_key(), NOW, None)
        .unwrap();
    store
        .confirm_enrollment(&verifier, "user-2", "phone", &code_at(NOW), NOW)
        .unwrap();
    let mut now = NOW + 30;
    for _ in 0..10 {
        let _ = store.verify(&verifier, "user-2", "phone", "000000", now);
        now += 3600;
    }
    assert!(
        store
            .load("user-2", "phone")
            .unwrap()
            .factor
            .state()
            .is_locked()
    );
    tamper(
        &path,
        "UPDATE custodian_mfa_factor AS victim SET
             phase = src.phase, pending_expires_at = src.pending_expires_at,
             last_step = src.last_step, failures = src.failures, retry_at = src.retry_at,
             locked = src.locked, generation = src.generation, state_mac = src.state_mac
         FROM custodian_mfa_factor AS src
         WHERE victim.user_id = 'user-2' AND src.user_id = 'user-1'",
    );
    assert_tampered(store.verify(&verifier, "user-2", "phone", &code_at(now), now));
    // user-1's own row is untouched and still works.
    store
        .verify(&verifier, "user-1", "phone", &code_at(now), now)
        .unwrap();
}

#[test]
fn a_table_from_before_state_macs_is_migrated_and_adopted_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mfa.db");
    let kek = kek();
    enrolled(&path, &kek);
    // Turn the file into what an older version wrote: no state_mac column.
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch("ALTER TABLE custodian_mfa_factor DROP COLUMN state_mac")
        .unwrap();
    drop(conn);
    let store = store_at(&path, &kek);
    let verifier = Verifier::default();
    let at = NOW + 30;
    assert!(matches!(
        store.verify(&verifier, "user-1", "phone", &code_at(at), at),
        Err(MfaError::StateUnauthenticated { .. })
    ));
    assert!(
        store
            .adopt_unauthenticated_state("user-1", "phone")
            .unwrap()
    );
    assert!(
        !store
            .adopt_unauthenticated_state("user-1", "phone")
            .unwrap()
    );
    store
        .verify(&verifier, "user-1", "phone", &code_at(at), at)
        .unwrap();
    // Reopening does not add the column twice.
    store_at(&path, &kek).load("user-1", "phone").unwrap();
}

/// A login while the server clock ran `ahead` seconds fast, then genuine codes at the right time:
/// refused as replays until the clock passes the replay mark, never counted, never locking; and
/// every code is still accepted at most once.
fn clock_step_back(ahead: u64) {
    let dir = tempfile::tempdir().unwrap();
    let store = enrolled(&dir.path().join("mfa.db"), &kek());
    let verifier = Verifier::default();
    let fast = NOW + ahead;
    store
        .verify(&verifier, "user-1", "phone", &code_at(fast), fast)
        .unwrap();
    let fast_code_reused = store.verify(&verifier, "user-1", "phone", &code_at(fast), fast);
    assert_eq!(
        fast_code_reused.unwrap_err().reject_reason(),
        Some(RejectReason::Replayed)
    );
    // The clock is corrected. The user types every genuine code for the next 20 steps (far more
    // than the 10 failures that lock), each twice.
    for i in 1..=20u64 {
        let now = NOW + 30 * i;
        for _ in 0..2 {
            let err = store
                .verify(&verifier, "user-1", "phone", &code_at(now), now)
                .unwrap_err();
            assert_eq!(
                err.reject_reason(),
                Some(RejectReason::Replayed),
                "step {i}"
            );
        }
    }
    let state = *store.load("user-1", "phone").unwrap().factor.state();
    assert!(!state.is_locked(), "{state:?}");
    assert_eq!((state.failures(), state.retry_at()), (0, 0), "{state:?}");
    // Once the clock passes the mark, the next code is accepted, exactly once; the code of the
    // fast login is never accepted again.
    let past = fast + 30;
    store
        .verify(&verifier, "user-1", "phone", &code_at(past), past)
        .unwrap();
    let again = store.verify(&verifier, "user-1", "phone", &code_at(past), past);
    assert_eq!(
        again.unwrap_err().reject_reason(),
        Some(RejectReason::Replayed)
    );
    let old = store.verify(&verifier, "user-1", "phone", &code_at(fast), past);
    assert!(old.is_err());
    // Wrong codes still count.
    let err = store
        .verify(&verifier, "user-1", "phone", "000000", past + 30)
        .unwrap_err();
    assert_eq!(err.reject_reason(), Some(RejectReason::WrongCode));
    assert_eq!(
        store
            .load("user-1", "phone")
            .unwrap()
            .factor
            .state()
            .failures(),
        1
    );
}

#[test]
fn a_clock_step_back_of_one_hour_does_not_lock_the_user() {
    clock_step_back(3600);
}

#[test]
fn a_clock_step_back_of_ten_minutes_does_not_lock_the_user() {
    clock_step_back(600);
}

#[test]
fn the_service_debug_shows_no_state_key_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_at(&dir.path().join("mfa.db"), &kek());
    let shown = format!("{store:?}");
    assert!(shown.contains("state_key"), "{shown}");
    assert!(shown.contains("REDACTED"), "{shown}");
    // The key is 32 bytes 0x42 (66): neither decimal nor hex runs of it appear.
    assert!(!shown.contains("66, 66"), "{shown}");
    assert!(!shown.to_lowercase().contains("4242"), "{shown}");
}
