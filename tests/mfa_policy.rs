//! The MFA policy through its public API: every setting that a builder takes is kept and read back,
//! and changing one setting keeps the others. Mutation testing found these unchecked: a builder
//! that ignored its value, or threw away a lockout policy set earlier in the chain, passed every
//! other test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use custodian::SecretBytes;
use custodian::envelope::{Kek, StaticKek};
use custodian::mfa::{
    Factor, FactorState, LockoutPolicy, MemoryFactorStore, MfaError, MfaService, OtpSecret, Phase,
    RejectReason, StepUp, StepUpMethod, TotpKey, TotpParams, Verifier, Window,
};
use std::sync::Arc;

const SEED: &[u8] = b"12345678901234567890";
const NOW: u64 = 1_700_000_000;

fn rfc_key() -> TotpKey {
    TotpKey::new(
        OtpSecret::from_bytes(SecretBytes::new(SEED.to_vec())).unwrap(),
        TotpParams::PORTABLE,
    )
}

fn active(state: FactorState) -> Factor {
    Factor::from_parts("user-1", "phone", rfc_key(), state).unwrap()
}

fn code(now: u64) -> String {
    rfc_key().code_at(now).unwrap().expose_secret().to_owned()
}

fn step_up_at(verified_at: u64) -> StepUp {
    StepUp::assume_verified_by_this_server("user-1", "phone", StepUpMethod::Totp, verified_at)
}

/// A lockout policy unlike the default in every field.
fn custom_lockout() -> LockoutPolicy {
    LockoutPolicy::new(1, 7, 70, 4).unwrap()
}

/// Consecutive wrong codes, each after the previous throttle ended, until the factor locks;
/// returns how many it took (at most 200).
fn failures_until_locked(verifier: &Verifier) -> u32 {
    let mut factor = active(FactorState::from_stored(Phase::Active, None, 0, 0, false));
    let mut now = NOW;
    for attempt in 1..=200 {
        let rejected = verifier.verify(&factor, "000000", now).unwrap_err();
        assert_eq!(rejected.reason(), RejectReason::WrongCode);
        if rejected.state().is_locked() {
            return attempt;
        }
        now = now.max(rejected.state().retry_at()) + 1;
        factor.set_state(*rejected.state());
    }
    panic!("never locked");
}

#[test]
fn window_and_lockout_getters_return_what_was_set() {
    let window = Window::new(2, 3).unwrap();
    assert_eq!((window.back(), window.forward()), (2, 3));
    let window = Window::new(0, Window::MAX_STEPS).unwrap();
    assert_eq!((window.back(), window.forward()), (0, 10));
    let default = Window::default();
    assert_eq!((default.back(), default.forward()), (1, 1));

    let lockout = custom_lockout();
    assert_eq!((lockout.free_failures(), lockout.lock_after()), (1, 4));
    let default = LockoutPolicy::default();
    assert_eq!((default.free_failures(), default.lock_after()), (3, 10));
    assert_eq!(default.delay_after(3), 0);
    assert_eq!(default.delay_after(4), 30);

    let verifier = Verifier::default()
        .with_window(window)
        .with_lockout(lockout);
    assert_eq!(verifier.window(), window);
    assert_eq!(verifier.lockout(), lockout);
    assert_eq!(Verifier::default().window(), Window::default());
    assert_eq!(Verifier::default().lockout(), LockoutPolicy::default());
}

#[test]
fn the_configured_policy_is_the_one_applied() {
    assert_eq!(failures_until_locked(&Verifier::default()), 10);
    let custom = Verifier::default().with_lockout(custom_lockout());
    assert_eq!(failures_until_locked(&custom), 4);
    // The window: a code two steps back is refused by the default and accepted with back = 2.
    let factor = active(FactorState::from_stored(Phase::Active, None, 0, 0, false));
    let two_steps_ago = code(NOW - 60);
    assert!(
        Verifier::default()
            .verify(&factor, &two_steps_ago, NOW)
            .is_err()
    );
    let wide = Verifier::default().with_window(Window::new(2, 0).unwrap());
    assert!(wide.verify(&factor, &two_steps_ago, NOW).is_ok());
}

#[test]
fn step_up_max_age_is_applied_and_keeps_the_other_settings() {
    let window = Window::new(2, 0).unwrap();
    let verifier = Verifier::default()
        .with_window(window)
        .with_lockout(custom_lockout())
        .with_enrollment_ttl(77)
        .unwrap()
        .with_step_up_max_age(45);

    // The configured age, not the default 300 s.
    assert!(
        verifier
            .require_step_up(&step_up_at(NOW - 45), "user-1", NOW)
            .is_ok()
    );
    match verifier.require_step_up(&step_up_at(NOW - 46), "user-1", NOW) {
        Err(MfaError::StepUpRequired { max_age, .. }) => assert_eq!(max_age, 45),
        other => panic!("{other:?}"),
    }
    let long = Verifier::default().with_step_up_max_age(3_600);
    assert!(
        long.require_step_up(&step_up_at(NOW - 3_600), "user-1", NOW)
            .is_ok()
    );
    assert!(
        long.require_step_up(&step_up_at(NOW - 3_601), "user-1", NOW)
            .is_err()
    );

    // Everything set earlier in the chain survives.
    assert_eq!(verifier.window(), window);
    assert_eq!(verifier.lockout(), custom_lockout());
    assert_eq!(failures_until_locked(&verifier), 4);
    let pending = verifier
        .begin_enrollment("user-1", "phone", rfc_key(), NOW)
        .unwrap();
    assert_eq!(
        pending.state().phase(),
        Phase::Pending {
            expires_at: NOW + 77
        }
    );
    // And the step-up age survives settings changed after it.
    let later = verifier.with_lockout(LockoutPolicy::default());
    assert!(
        later
            .require_step_up(&step_up_at(NOW - 46), "user-1", NOW)
            .is_err()
    );
}

#[test]
fn admin_reset_clears_failures_throttle_and_lock_and_keeps_the_replay_mark() {
    let last_step = TotpParams::PORTABLE.step_at(NOW) - 1;
    for (failures, retry_at, locked) in [(5, NOW + 900, false), (10, 0, true), (4, NOW + 30, true)]
    {
        let state =
            FactorState::from_stored(Phase::Active, Some(last_step), failures, retry_at, locked);
        let reset = state.admin_reset();
        assert_eq!(reset.failures(), 0);
        assert_eq!(reset.retry_at(), 0, "throttle kept");
        assert!(!reset.is_locked());
        assert_eq!(reset.last_step(), Some(last_step));
        assert_eq!(reset.phase(), Phase::Active);
        // The reset factor takes a fresh code at once, inside the former throttle.
        let verified = Verifier::default()
            .verify(&active(reset), &code(NOW), NOW)
            .unwrap();
        assert_eq!(verified.state().failures(), 0);
        // The replay mark still refuses the step before it.
        let replay = Verifier::default()
            .verify(&active(reset), &code(NOW - 30), NOW)
            .unwrap_err();
        assert_eq!(replay.reason(), RejectReason::Replayed);
    }
}

/// The error for a time the store cannot hold names the time the caller passed (`now`), not the
/// enrollment expiry computed from it, which the caller never saw.
#[test]
fn a_time_beyond_the_supported_range_is_reported_as_given() {
    let verifier = Verifier::default();
    let now = i64::MAX as u64 - 10;
    let check_at = |now: u64, err: MfaError| {
        let expiry = now.saturating_add(600);
        let text = err.to_string();
        match &err {
            MfaError::InvalidSetting { setting, .. } => assert_eq!(*setting, "now", "{text}"),
            other => panic!("{other:?}"),
        }
        assert!(text.contains(&format!("`{now}`")), "{text}");
        assert!(
            expiry == now || !text.contains(&expiry.to_string()),
            "{text}"
        );
    };
    let check = |err| check_at(now, err);
    check(
        verifier
            .begin_enrollment("user-1", "phone", rfc_key(), now)
            .unwrap_err(),
    );
    check_at(
        u64::MAX,
        verifier
            .begin_enrollment("user-1", "phone", rfc_key(), u64::MAX)
            .map(|_| ())
            .unwrap_err(),
    );
    let kek: Arc<dyn Kek> = Arc::new(StaticKek::generate("mfa-seeds", 1).unwrap());
    let state_key = custodian::SecretKey::from_bytes([9; 32]);
    let store = MfaService::new(MemoryFactorStore::new(), kek, state_key);
    check(
        store
            .begin_enrollment(&verifier, "user-1", "phone", rfc_key(), now, None)
            .unwrap_err(),
    );
    // The last time whose enrollment expiry still fits is accepted.
    let last = i64::MAX as u64 - 600;
    assert!(
        verifier
            .begin_enrollment("user-1", "phone", rfc_key(), last)
            .is_ok()
    );
}

/// A refusal's `Debug` is what ends up in an application's logs: it says why and what state to
/// store, never the code. (Mutation testing found that an empty `Debug` passed every test.)
#[test]
fn a_refusal_debugs_its_reason_and_state_but_not_the_code() {
    let factor = active(FactorState::from_stored(Phase::Active, None, 0, 0, false));
    let right = code(NOW);
    let wrong = if right == "000000" {
        "999999"
    } else {
        "000000"
    };
    let rejected = Verifier::default().verify(&factor, wrong, NOW).unwrap_err();
    let debug = format!("{rejected:?}");
    assert!(debug.starts_with("Rejected {"), "{debug}");
    assert!(debug.contains("reason: WrongCode"), "{debug}");
    assert!(debug.contains("failures: 1"), "{debug}");
    assert!(!debug.contains(wrong) && !debug.contains(&right), "{debug}");
    assert_eq!(rejected.to_string(), "code rejected, try later");
}
