//! The [`FactorStore`] contract as test functions. Each takes a factory that returns a fresh,
//! empty store; each panics (with the name of the broken rule) where the store breaks the contract.

use crate::SecretKey;
use crate::envelope::{Kek, StaticKek};
use crate::mfa::{
    ConsumeOutcome, FactorRecord, FactorState, FactorStore, LockoutPolicy, MfaError, MfaService,
    Phase, RejectReason, StateWrite, TotpKey, Verifier,
};
use std::sync::{Arc, Barrier};

/// A fresh, empty store per call.
pub type Factory<'a> = &'a (dyn Fn() -> Arc<dyn FactorStore> + Sync);

const NOW: u64 = 1_700_000_000;

/// Every check of this module, in order.
pub fn all(factory: Factory<'_>) {
    put_pending_inserts_once(factory);
    put_pending_replaces_only_a_pending_or_disabled_row_at_its_generation(factory);
    put_pending_unless_active_sees_active_factors(factory);
    compare_and_set_refuses_a_stale_generation(factory);
    a_replaced_enrollment_never_reuses_a_generation(factory);
    enrollment_after_an_admin_disable_replaces_the_factor(factory);
    factors_lists_one_user_by_factor_id(factory);
    recovery_codes_replace_list_and_consume_once(factory);
    a_failed_reset_rolls_the_code_back(factory);
    the_same_code_raced_is_accepted_once(factory);
    parallel_wrong_guesses_never_pass_the_lock(factory);
    edited_states_are_refused_as_tampered(factory);
    a_row_copied_to_another_user_is_refused(factory);
    an_edited_phase_cannot_waive_the_step_up(factory);
    rows_without_a_mac_are_refused_until_adopted(factory);
}

fn record(user: &str, factor: &str, state: FactorState, generation: u64) -> FactorRecord {
    FactorRecord {
        user: user.to_owned(),
        factor: factor.to_owned(),
        sealed_seed: format!("sealed {user}/{factor}/{generation}").into_bytes(),
        state,
        generation,
        state_mac: format!("mac {user}/{factor}/{generation}").into_bytes(),
    }
}

/// A compare-and-set write whose (fake) MAC names the generation it creates, so that tests see
/// whether the store wrote it.
fn write(factor: &str, expected_generation: u64, state: FactorState) -> StateWrite {
    StateWrite {
        factor: factor.to_owned(),
        expected_generation,
        state,
        state_mac: format!("mac {factor} {}", expected_generation + 1).into_bytes(),
    }
}

fn pending() -> FactorState {
    FactorState::pending(NOW + 600)
}

fn active() -> FactorState {
    FactorState::from_stored(Phase::Active, Some(1), 0, 0, false)
}

/// A pending factor is inserted once; a second insert of the same id is refused.
pub fn put_pending_inserts_once(factory: Factory<'_>) {
    let store = factory();
    let first = record("u1", "phone", pending(), 0);
    assert!(store.put_pending(&first, None, false).unwrap(), "insert");
    let again = record("u1", "phone", pending(), 0);
    assert!(
        !store.put_pending(&again, None, false).unwrap(),
        "a second insert of one factor id must be refused"
    );
    assert_eq!(store.load("u1", "phone").unwrap(), Some(first));
    assert_eq!(store.load("u1", "laptop").unwrap(), None);
    assert_eq!(store.load("u2", "phone").unwrap(), None);
}

/// A replacement lands only on a pending or disabled row still at the named generation, and writes
/// the next; an active row is never replaced.
pub fn put_pending_replaces_only_a_pending_or_disabled_row_at_its_generation(factory: Factory<'_>) {
    let store = factory();
    assert!(
        !store
            .put_pending(&record("u1", "phone", pending(), 1), Some(0), false)
            .unwrap(),
        "replacing a missing row"
    );
    store
        .put_pending(&record("u1", "phone", pending(), 0), None, false)
        .unwrap();
    assert!(
        !store
            .put_pending(&record("u1", "phone", pending(), 6), Some(5), false)
            .unwrap(),
        "replacing at a stale generation"
    );
    let next = record("u1", "phone", pending(), 1);
    assert!(store.put_pending(&next, Some(0), false).unwrap(), "replace");
    assert_eq!(store.load("u1", "phone").unwrap(), Some(next));
    // Active rows are never replaced.
    assert!(
        store
            .compare_and_set("u1", &write("phone", 1, active()))
            .unwrap()
    );
    assert!(
        !store
            .put_pending(&record("u1", "phone", pending(), 3), Some(2), false)
            .unwrap(),
        "an active factor must not be replaced"
    );
    assert_eq!(
        store.load("u1", "phone").unwrap().map(|r| r.state),
        Some(active())
    );
    // A disabled row is replaced, at its generation only.
    let disabled = active().with_phase(Phase::Disabled);
    assert!(
        store
            .compare_and_set("u1", &write("phone", 2, disabled))
            .unwrap()
    );
    assert!(
        !store
            .put_pending(&record("u1", "phone", pending(), 3), Some(2), false)
            .unwrap(),
        "replacing a disabled row at a stale generation"
    );
    assert!(
        !store
            .put_pending(&record("u1", "phone", pending(), 5), Some(3), false)
            .unwrap(),
        "a replacement must write exactly the next generation"
    );
    let again = record("u1", "phone", pending(), 4);
    assert!(
        store.put_pending(&again, Some(3), false).unwrap(),
        "a disabled factor is replaced by a new enrollment"
    );
    assert_eq!(store.load("u1", "phone").unwrap(), Some(again));
}

/// `unless_active` refuses while the user has an active factor, and only then.
pub fn put_pending_unless_active_sees_active_factors(factory: Factory<'_>) {
    let store = factory();
    assert!(
        store
            .put_pending(&record("u1", "phone", pending(), 0), None, true)
            .unwrap()
    );
    assert!(
        store
            .put_pending(&record("u1", "laptop", pending(), 0), None, true)
            .unwrap(),
        "a pending factor is not an active one"
    );
    assert!(
        store
            .compare_and_set("u1", &write("phone", 0, active()))
            .unwrap()
    );
    assert!(
        !store
            .put_pending(&record("u1", "tablet", pending(), 0), None, true)
            .unwrap(),
        "the user has an active factor"
    );
    assert!(
        store
            .put_pending(&record("u2", "tablet", pending(), 0), None, true)
            .unwrap(),
        "another user's active factor does not count"
    );
    assert!(
        store
            .put_pending(&record("u1", "tablet", pending(), 0), None, false)
            .unwrap()
    );
}

/// Compare-and-set writes only at the expected generation and increments it.
pub fn compare_and_set_refuses_a_stale_generation(factory: Factory<'_>) {
    let store = factory();
    store
        .put_pending(&record("u1", "phone", pending(), 0), None, false)
        .unwrap();
    assert!(
        store
            .compare_and_set("u1", &write("phone", 0, active()))
            .unwrap()
    );
    assert!(
        !store
            .compare_and_set("u1", &write("phone", 0, pending()))
            .unwrap(),
        "stale generation"
    );
    assert!(
        !store
            .compare_and_set("u1", &write("other", 1, pending()))
            .unwrap(),
        "missing row"
    );
    let row = store.load("u1", "phone").unwrap().unwrap();
    assert_eq!((row.generation, row.state), (1, active()));
    assert_eq!(row.state_mac, b"mac phone 1");
    let locked = FactorState::from_stored(Phase::Active, Some(u64::MAX >> 1), 7, NOW + 30, true);
    assert!(
        store
            .compare_and_set("u1", &write("phone", 1, locked))
            .unwrap()
    );
    let row = store.load("u1", "phone").unwrap().unwrap();
    assert_eq!(
        (row.generation, row.state),
        (2, locked),
        "every state field round-trips"
    );
    assert_eq!(
        row.state_mac, b"mac phone 2",
        "the state MAC is stored as given"
    );
}

/// A confirmation computed against an enrollment that was restarted meanwhile fails its
/// compare-and-set: the restarted row never has the generation the confirmation read.
pub fn a_replaced_enrollment_never_reuses_a_generation(factory: Factory<'_>) {
    let service = service(factory());
    let verifier = Verifier::default();
    service
        .begin_enrollment(
            &verifier,
            "u1",
            "phone",
            TotpKey::generate().unwrap(),
            NOW,
            None,
        )
        .unwrap();
    let in_flight = service.load("u1", "phone").unwrap();
    let confirmed = active();
    service
        .begin_enrollment(
            &verifier,
            "u1",
            "phone",
            TotpKey::generate().unwrap(),
            NOW + 1,
            None,
        )
        .unwrap();
    assert!(
        !service
            .compare_and_set("u1", "phone", in_flight.generation, &confirmed)
            .unwrap(),
        "a confirmation of the replaced secret must not land"
    );
    assert!(matches!(
        service.load("u1", "phone").unwrap().factor.state().phase(),
        Phase::Pending { .. }
    ));
}

/// After an administrator disables a user's only factor, its code no longer logs in, the user
/// enrolls again without a step-up (the disabled row is replaced under a new generation, never a
/// reused one), and only the new secret logs in; a confirmation computed before the disable never
/// lands.
pub fn enrollment_after_an_admin_disable_replaces_the_factor(factory: Factory<'_>) {
    let store = factory();
    let (service, old_app) = enrolled(Arc::clone(&store), "u1");
    let verifier = Verifier::default();
    let before = store.load("u1", "phone").unwrap().unwrap();
    assert!(
        service
            .admin_disable("admin-1", "u1", "phone", NOW + 30)
            .unwrap(),
        "an active factor is disabled"
    );
    assert!(
        !service
            .admin_disable("admin-1", "u1", "phone", NOW + 30)
            .unwrap(),
        "disabling twice writes nothing"
    );
    let disabled = store.load("u1", "phone").unwrap().unwrap();
    assert_eq!(disabled.state.phase(), Phase::Disabled);
    assert_eq!(disabled.generation, before.generation + 1);
    let at = NOW + 60;
    assert!(
        matches!(
            service.verify(
                &verifier,
                "u1",
                "phone",
                old_app.code_at(at).unwrap().expose_secret(),
                at
            ),
            Err(MfaError::Rejected(RejectReason::NotActive))
        ),
        "a disabled factor must not log in"
    );

    let new_key = TotpKey::generate().unwrap();
    let new_app = new_key.duplicate();
    service
        .begin_enrollment(&verifier, "u1", "phone", new_key, at, None)
        .unwrap();
    let pending_row = store.load("u1", "phone").unwrap().unwrap();
    assert!(
        pending_row.generation > disabled.generation,
        "the new enrollment must not reuse a generation: {} after {}",
        pending_row.generation,
        disabled.generation
    );
    assert!(matches!(pending_row.state.phase(), Phase::Pending { .. }));
    assert!(
        !service
            .compare_and_set("u1", "phone", before.generation, &active())
            .unwrap(),
        "a write computed before the disable must not land"
    );
    let later = at + 30;
    service
        .confirm_enrollment(
            &verifier,
            "u1",
            "phone",
            new_app.code_at(later).unwrap().expose_secret(),
            later,
        )
        .unwrap();
    let last = later + 30;
    let (old_code, new_code) = (
        old_app.code_at(last).unwrap(),
        new_app.code_at(last).unwrap(),
    );
    // Two random secrets share a code once in a million steps; only a differing code tells.
    if old_code.expose_secret() != new_code.expose_secret() {
        assert!(
            matches!(
                service.verify(&verifier, "u1", "phone", old_code.expose_secret(), last),
                Err(MfaError::Rejected(RejectReason::WrongCode))
            ),
            "the old secret must not log in after re-enrollment"
        );
    }
    service
        .verify(&verifier, "u1", "phone", new_code.expose_secret(), last + 1)
        .unwrap();
}

/// `factors` lists only the user's rows, by factor id.
pub fn factors_lists_one_user_by_factor_id(factory: Factory<'_>) {
    let store = factory();
    for (user, factor) in [("u1", "phone"), ("u2", "phone"), ("u1", "laptop")] {
        store
            .put_pending(&record(user, factor, pending(), 0), None, false)
            .unwrap();
    }
    let ids: Vec<String> = store
        .factors("u1")
        .unwrap()
        .into_iter()
        .map(|r| r.factor)
        .collect();
    assert_eq!(ids, ["laptop", "phone"]);
    assert!(store.factors("nobody").unwrap().is_empty());
}

/// Recovery codes: a set replaces the previous one; a code is consumed exactly once.
pub fn recovery_codes_replace_list_and_consume_once(factory: Factory<'_>) {
    let store = factory();
    store
        .replace_recovery_codes("u1", &[vec![1; 48], vec![2; 48], vec![3; 48]])
        .unwrap();
    store.replace_recovery_codes("u2", &[vec![9; 48]]).unwrap();
    store
        .replace_recovery_codes("u1", &[vec![4; 48], vec![5; 48]])
        .unwrap();
    assert_eq!(
        store.recovery_codes("u1").unwrap(),
        vec![(0, vec![4; 48]), (1, vec![5; 48])],
        "the new set replaces the old"
    );
    assert_eq!(
        store.consume_recovery_code("u1", 1, &[]).unwrap(),
        ConsumeOutcome::Consumed
    );
    assert_eq!(
        store.consume_recovery_code("u1", 1, &[]).unwrap(),
        ConsumeOutcome::CodeGone
    );
    assert_eq!(store.recovery_codes("u1").unwrap(), vec![(0, vec![4; 48])]);
    assert_eq!(store.recovery_codes("u2").unwrap(), vec![(0, vec![9; 48])]);
}

/// A recovery-code use whose factor reset loses its compare-and-set writes nothing.
pub fn a_failed_reset_rolls_the_code_back(factory: Factory<'_>) {
    let store = factory();
    store
        .put_pending(&record("u1", "phone", pending(), 0), None, false)
        .unwrap();
    store.replace_recovery_codes("u1", &[vec![1; 48]]).unwrap();
    let resets = [write("phone", 7, active())];
    assert_eq!(
        store.consume_recovery_code("u1", 0, &resets).unwrap(),
        ConsumeOutcome::FactorsChanged
    );
    assert_eq!(store.recovery_codes("u1").unwrap().len(), 1, "code kept");
    let resets = [write("phone", 0, active())];
    assert_eq!(
        store.consume_recovery_code("u1", 0, &resets).unwrap(),
        ConsumeOutcome::Consumed
    );
    assert_eq!(
        store
            .load("u1", "phone")
            .unwrap()
            .map(|r| (r.generation, r.state)),
        Some((1, active()))
    );
    assert_eq!(
        store.load("u1", "phone").unwrap().unwrap().state_mac,
        b"mac phone 1",
        "a reset stores its state MAC"
    );
    assert!(store.recovery_codes("u1").unwrap().is_empty());
}

fn service(store: Arc<dyn FactorStore>) -> MfaService {
    let kek: Arc<dyn Kek> = Arc::new(StaticKek::generate("mfa-seeds", 1).unwrap());
    MfaService::with_store(store, kek, SecretKey::from_bytes([0x5a; 32]))
}

/// An enrolled service and the user's key.
fn enrolled(store: Arc<dyn FactorStore>, user: &str) -> (MfaService, TotpKey) {
    let service = service(store);
    let verifier = Verifier::default();
    let key = TotpKey::generate().unwrap();
    let app = key.duplicate();
    service
        .begin_enrollment(&verifier, user, "phone", key, NOW, None)
        .unwrap();
    let code = app.code_at(NOW).unwrap();
    service
        .confirm_enrollment(&verifier, user, "phone", code.expose_secret(), NOW)
        .unwrap();
    (service, app)
}

/// The same code sent by several servers at once is accepted exactly once, round after round.
pub fn the_same_code_raced_is_accepted_once(factory: Factory<'_>) {
    const THREADS: usize = 4;
    let (service, app) = enrolled(factory(), "racer");
    let verifier = Verifier::default();
    for round in 1..=8u64 {
        let now = NOW + 30 * round;
        let code = app.code_at(now).unwrap();
        let barrier = Barrier::new(THREADS);
        let accepted = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..THREADS)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        service.verify(&verifier, "racer", "phone", code.expose_secret(), now)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(Result::is_ok)
                .count()
        });
        assert_eq!(accepted, 1, "round {round}: one code, one login");
    }
}

/// Wrong guesses from several servers at once: no more of them are checked against the secret
/// than the lock allows (each checked guess is a failure written with compare-and-set before its
/// refusal is returned), and once locked even the right code is refused.
pub fn parallel_wrong_guesses_never_pass_the_lock(factory: Factory<'_>) {
    const THREADS: usize = 4;
    const LOCK_AFTER: u32 = 5;
    let (service, app) = enrolled(factory(), "guessed");
    // No delays, so that only the lock stops the guessing.
    let lockout = LockoutPolicy::new(LOCK_AFTER - 1, 1, 1, LOCK_AFTER).unwrap();
    let verifier = Verifier::default().with_lockout(lockout);
    let now = NOW + 10_000;
    let right = app.code_at(now).unwrap();
    let barrier = Barrier::new(THREADS);
    let checked: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|thread| {
                let (service, barrier, verifier, right) = (&service, &barrier, &verifier, &right);
                scope.spawn(move || {
                    barrier.wait();
                    let mut checked = 0;
                    for guess in 0..LOCK_AFTER as usize * 2 {
                        // Guesses at later seconds, so that no throttle applies.
                        let wrong = format!("{:06}", (thread * 100_000 + guess * 7) % 1_000_000);
                        if wrong == right.expose_secret() {
                            continue;
                        }
                        let at = now + guess as u64 * 2;
                        match service.verify(verifier, "guessed", "phone", &wrong, at) {
                            Err(MfaError::Rejected(RejectReason::WrongCode)) => checked += 1,
                            Err(MfaError::Rejected(_)) => {}
                            other => panic!("unexpected outcome {other:?}"),
                        }
                    }
                    checked
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert!(
        checked <= LOCK_AFTER as usize,
        "{checked} wrong guesses were checked against the secret; the lock allows {LOCK_AFTER}"
    );
    let state = *service.load("guessed", "phone").unwrap().factor.state();
    assert!(state.is_locked(), "the factor must be locked: {state:?}");
    let later = now + 60;
    let code = app.code_at(later).unwrap();
    assert!(
        matches!(
            service.verify(&verifier, "guessed", "phone", code.expose_secret(), later),
            Err(MfaError::Rejected(RejectReason::Locked))
        ),
        "a locked factor must refuse even the right code"
    );
}

fn is_tampered(result: Result<impl core::fmt::Debug, MfaError>) -> bool {
    matches!(result, Err(MfaError::StateTampered { .. }))
}

/// Writes `state` straight into the store, as an attacker with write access to the database
/// would, keeping the row's current (now wrong) MAC.
fn edit(store: &dyn FactorStore, user: &str, state: FactorState) {
    let row = store.load(user, "phone").unwrap().unwrap();
    let write = StateWrite {
        factor: "phone".to_owned(),
        expected_generation: row.generation,
        state,
        state_mac: row.state_mac,
    };
    assert!(store.compare_and_set(user, &write).unwrap());
}

/// A state edited behind the service's back (a disabled factor re-enabled, a lock cleared, the
/// replay mark rolled back, the MAC bytes changed) is refused as tampered, never honoured.
pub fn edited_states_are_refused_as_tampered(factory: Factory<'_>) {
    let store = factory();
    let (service, app) = enrolled(Arc::clone(&store), "u1");
    let verifier = Verifier::default();
    let at = NOW + 60;
    let step_up = service
        .verify(
            &verifier,
            "u1",
            "phone",
            app.code_at(at).unwrap().expose_secret(),
            at,
        )
        .unwrap();
    service
        .disable(&verifier, "u1", "phone", &step_up, at)
        .unwrap();
    let disabled = *service.load("u1", "phone").unwrap().factor.state();
    assert_eq!(disabled.phase(), Phase::Disabled);

    // Re-enable the disabled factor (a stolen phone).
    edit(store.as_ref(), "u1", disabled.with_phase(Phase::Active));
    let later = at + 60;
    let code = app.code_at(later).unwrap();
    assert!(
        is_tampered(service.verify(&verifier, "u1", "phone", code.expose_secret(), later)),
        "a re-enabled factor must be refused as tampered"
    );
    assert!(is_tampered(service.load("u1", "phone")));
    assert!(is_tampered(service.factors("u1")));
    assert!(is_tampered(
        service.admin_reset("admin-1", "u1", "phone", NOW)
    ));

    // Clear a lock.
    let store = factory();
    let (service, app) = enrolled(Arc::clone(&store), "u2");
    let locked = FactorState::from_stored(Phase::Active, Some(NOW / 30), 10, 0, true);
    let row = store.load("u2", "phone").unwrap().unwrap();
    assert!(
        service
            .compare_and_set("u2", "phone", row.generation, &locked)
            .unwrap()
    );
    edit(store.as_ref(), "u2", locked.admin_reset());
    let code = app.code_at(later).unwrap();
    assert!(
        is_tampered(service.verify(&verifier, "u2", "phone", code.expose_secret(), later)),
        "a cleared lock must be refused as tampered"
    );

    // Roll the replay mark back to before the last login.
    let store = factory();
    let (service, app) = enrolled(Arc::clone(&store), "u3");
    let code = app.code_at(at).unwrap();
    service
        .verify(&verifier, "u3", "phone", code.expose_secret(), at)
        .unwrap();
    let state = *service.load("u3", "phone").unwrap().factor.state();
    edit(
        store.as_ref(),
        "u3",
        FactorState::from_stored(Phase::Active, Some(NOW / 30), 0, 0, false),
    );
    assert_ne!(state.last_step(), Some(NOW / 30));
    assert!(
        is_tampered(service.verify(&verifier, "u3", "phone", code.expose_secret(), at)),
        "a replay after a rolled-back mark must be refused as tampered"
    );

    // Flip one bit of the MAC itself.
    let store = factory();
    let (service, _) = enrolled(Arc::clone(&store), "u4");
    let row = store.load("u4", "phone").unwrap().unwrap();
    let mut mac = row.state_mac.clone();
    mac[0] ^= 1;
    let write = StateWrite {
        factor: "phone".to_owned(),
        expected_generation: row.generation,
        state: row.state,
        state_mac: mac,
    };
    assert!(store.compare_and_set("u4", &write).unwrap());
    assert!(is_tampered(service.load("u4", "phone")));
}

/// One user's whole row (seed, state and MAC) copied onto another user is refused.
pub fn a_row_copied_to_another_user_is_refused(factory: Factory<'_>) {
    let store = factory();
    let (service, app) = enrolled(Arc::clone(&store), "victim");
    let mut row = store.load("victim", "phone").unwrap().unwrap();
    row.user = "attacker".to_owned();
    assert!(store.put_pending(&row, None, false).unwrap());
    let verifier = Verifier::default();
    let at = NOW + 60;
    let code = app.code_at(at).unwrap();
    assert!(
        is_tampered(service.verify(&verifier, "attacker", "phone", code.expose_secret(), at)),
        "a copied row must be refused as tampered"
    );
}

/// An active factor edited to look disabled does not let a second factor in without a step-up.
pub fn an_edited_phase_cannot_waive_the_step_up(factory: Factory<'_>) {
    let store = factory();
    let (service, _) = enrolled(Arc::clone(&store), "u1");
    let state = store.load("u1", "phone").unwrap().unwrap().state;
    edit(store.as_ref(), "u1", state.with_phase(Phase::Disabled));
    let verifier = Verifier::default();
    let result = service.begin_enrollment(
        &verifier,
        "u1",
        "laptop",
        TotpKey::generate().unwrap(),
        NOW + 60,
        None,
    );
    assert!(is_tampered(result), "the second factor must not be added");
    assert_eq!(store.load("u1", "laptop").unwrap(), None);
    let result = service.begin_enrollment(
        &verifier,
        "u1",
        "phone",
        TotpKey::generate().unwrap(),
        NOW + 60,
        None,
    );
    assert!(
        is_tampered(result),
        "a factor edited to look disabled must not be replaced"
    );
    assert_eq!(
        store.load("u1", "phone").unwrap().unwrap().state,
        state.with_phase(Phase::Disabled)
    );
}

/// A row without a MAC (written before state MACs existed) is refused until an administrator
/// adopts it; adoption happens once and keeps the row's state.
pub fn rows_without_a_mac_are_refused_until_adopted(factory: Factory<'_>) {
    let store = factory();
    let (service, app) = enrolled(Arc::clone(&store), "u1");
    let row = store.load("u1", "phone").unwrap().unwrap();
    let write = StateWrite {
        factor: "phone".to_owned(),
        expected_generation: row.generation,
        state: row.state,
        state_mac: Vec::new(),
    };
    assert!(store.compare_and_set("u1", &write).unwrap());
    let verifier = Verifier::default();
    let at = NOW + 60;
    let code = app.code_at(at).unwrap();
    assert!(matches!(
        service.verify(&verifier, "u1", "phone", code.expose_secret(), at),
        Err(MfaError::StateUnauthenticated { .. })
    ));
    assert!(service.adopt_unauthenticated_state("u1", "phone").unwrap());
    assert!(
        !service.adopt_unauthenticated_state("u1", "phone").unwrap(),
        "adoption happens once"
    );
    assert_eq!(
        *service.load("u1", "phone").unwrap().factor.state(),
        row.state
    );
    service
        .verify(&verifier, "u1", "phone", code.expose_secret(), at)
        .unwrap();
    // A row with a wrong MAC is not adoptable.
    edit(store.as_ref(), "u1", row.state);
    assert!(is_tampered(
        service.adopt_unauthenticated_state("u1", "phone")
    ));
}
