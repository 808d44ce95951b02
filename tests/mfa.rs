//! The MFA layer through its public API: verification, replay, lockout, enrollment, recovery,
//! step-up, URIs, QR codes and Debug redaction.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use custodian::SecretBytes;
use custodian::mfa::{
    Algorithm, Factor, FactorState, LockoutPolicy, MfaError, OtpKind, OtpSecret, OtpauthUri, Phase,
    RecoveryCodeSet, RejectReason, StepUp, StepUpMethod, TotpKey, TotpParams, UriError, Verifier,
    Window,
};
use proptest::prelude::*;

const SEED: &[u8] = b"12345678901234567890";
const NOW: u64 = 1_700_000_000;

fn rfc_key() -> TotpKey {
    TotpKey::new(
        OtpSecret::from_bytes(SecretBytes::new(SEED.to_vec())).unwrap(),
        TotpParams::PORTABLE,
    )
}

fn active_factor(verifier: &Verifier) -> Factor {
    let state = FactorState::from_stored(Phase::Active, None, 0, 0, false);
    let _ = verifier;
    Factor::from_parts("user-1", "phone", rfc_key(), state).unwrap()
}

fn code(factor: &Factor, now: u64) -> String {
    factor
        .key()
        .code_at(now)
        .unwrap()
        .expose_secret()
        .to_owned()
}

fn code_at_step(factor: &Factor, step: u64) -> String {
    factor
        .key()
        .code_at_step(step)
        .unwrap()
        .expose_secret()
        .to_owned()
}

/// Applies the result of a verification the way a store would, returning the reason on refusal.
fn attempt(
    verifier: &Verifier,
    factor: &mut Factor,
    code: &str,
    now: u64,
) -> Result<u64, RejectReason> {
    match verifier.verify(factor, code, now) {
        Ok(verified) => {
            factor.set_state(*verified.state());
            Ok(verified.step())
        }
        Err(rejected) => {
            factor.set_state(*rejected.state());
            Err(rejected.reason())
        }
    }
}

// ---------------------------------------------------------------- verification and replay

#[test]
fn accepts_the_window_and_nothing_outside() {
    let verifier = Verifier::default();
    let step = NOW / 30;
    for (offset, accepted) in [(-2i64, false), (-1, true), (0, true), (1, true), (2, false)] {
        let mut factor = active_factor(&verifier);
        let c = code_at_step(&factor, step.checked_add_signed(offset).unwrap());
        let result = attempt(&verifier, &mut factor, &c, NOW);
        assert_eq!(result.is_ok(), accepted, "offset {offset}: {result:?}");
    }
    // A wider window accepts two steps back.
    let wide = verifier.with_window(Window::new(2, 0).unwrap());
    let mut factor = active_factor(&wide);
    let c = code_at_step(&factor, step - 2);
    assert_eq!(attempt(&wide, &mut factor, &c, NOW), Ok(step - 2));
    let c = code_at_step(&factor, step + 1);
    assert_eq!(
        attempt(&wide, &mut factor, &c, NOW),
        Err(RejectReason::WrongCode)
    );
    assert!(Window::new(11, 1).is_err());
}

#[test]
fn same_code_twice_is_refused() {
    let verifier = Verifier::default();
    let mut factor = active_factor(&verifier);
    let c = code(&factor, NOW);
    assert_eq!(attempt(&verifier, &mut factor, &c, NOW), Ok(NOW / 30));
    assert_eq!(
        attempt(&verifier, &mut factor, &c, NOW + 1),
        Err(RejectReason::Replayed)
    );
    // Still refused while it is inside the window of the next step.
    assert_eq!(
        attempt(&verifier, &mut factor, &c, NOW + 30),
        Err(RejectReason::Replayed)
    );
}

#[test]
fn earlier_code_after_a_later_one_is_refused() {
    let verifier = Verifier::default();
    let mut factor = active_factor(&verifier);
    let step = NOW / 30;
    let later = code_at_step(&factor, step + 1);
    let earlier = code_at_step(&factor, step);
    assert_eq!(attempt(&verifier, &mut factor, &later, NOW), Ok(step + 1));
    assert_eq!(
        attempt(&verifier, &mut factor, &earlier, NOW),
        Err(RejectReason::Replayed)
    );
    assert_eq!(factor.state().last_step(), Some(step + 1));
}

#[test]
fn adjacent_steps_sharing_a_code_take_the_first_later_step() {
    // Steps 57766335 and 57766336 of the RFC seed share the 6-digit code (found by search).
    let verifier = Verifier::default();
    let mut factor = active_factor(&verifier);
    let (s, t) = (57_766_335u64, 57_766_336u64);
    let shared = code_at_step(&factor, s);
    assert_eq!(
        shared,
        code_at_step(&factor, t),
        "fixture: the two steps share a code"
    );
    let now = s * 30 + 10;
    // Both steps are in the window; the first one later than the mark is taken, so the code of
    // step `t` is not burnt early.
    assert_eq!(attempt(&verifier, &mut factor, &shared, now), Ok(s));
    assert_eq!(attempt(&verifier, &mut factor, &shared, now + 1), Ok(t));
    assert_eq!(
        attempt(&verifier, &mut factor, &shared, now + 2),
        Err(RejectReason::Replayed)
    );
}

#[test]
fn malformed_codes_count_as_failures() {
    let verifier = Verifier::default();
    let mut factor = active_factor(&verifier);
    for bad in ["", "12345", "1234567", "12345a", "１２３４５６", "123\n456"] {
        let before = factor.state().failures();
        let result = attempt(&verifier, &mut factor, bad, NOW + 1000 * u64::from(before));
        assert_eq!(result, Err(RejectReason::Malformed), "{bad:?}");
        assert_eq!(factor.state().failures(), before + 1);
    }
    // Spaces inside a well-formed code are fine.
    let c = code(&factor, NOW + 10_000);
    let spaced = format!("{} {}", &c[..3], &c[3..]);
    assert!(attempt(&verifier, &mut factor, &spaced, NOW + 10_000).is_ok());
}

#[test]
fn verification_does_not_mutate_and_the_error_is_coarse() {
    let verifier = Verifier::default();
    let factor = active_factor(&verifier);
    let before = *factor.state();
    let wrong = verifier.verify(&factor, "000000", NOW).unwrap_err();
    assert_eq!(*factor.state(), before);
    assert_eq!(wrong.state().failures(), 1);
    let mut messages = vec![wrong.to_string(), MfaError::from(wrong).to_string()];
    let mut locked = active_factor(&verifier);
    locked.set_state(FactorState::from_stored(Phase::Active, None, 10, 0, true));
    let good = code(&locked, NOW);
    let locked_error = verifier.verify(&locked, &good, NOW).unwrap_err();
    assert_eq!(locked_error.reason(), RejectReason::Locked);
    messages.push(locked_error.to_string());
    let mut throttled = active_factor(&verifier);
    throttled.set_state(FactorState::from_stored(
        Phase::Active,
        None,
        4,
        NOW + 30,
        false,
    ));
    let throttled_error = verifier.verify(&throttled, &good, NOW).unwrap_err();
    assert_eq!(
        throttled_error.reason(),
        RejectReason::Throttled { retry_at: NOW + 30 }
    );
    messages.push(throttled_error.to_string());
    let mut replayed = active_factor(&verifier);
    replayed.set_state(FactorState::from_stored(
        Phase::Active,
        Some(NOW / 30 + 1),
        0,
        0,
        false,
    ));
    messages.push(
        verifier
            .verify(&replayed, &good, NOW)
            .unwrap_err()
            .to_string(),
    );
    assert!(
        messages.iter().all(|m| m == "code rejected, try later"),
        "{messages:?}"
    );
}

// ---------------------------------------------------------------- throttling and lockout

#[test]
fn default_policy_throttles_then_locks() {
    let verifier = Verifier::default();
    let mut factor = active_factor(&verifier);
    let mut now = NOW;
    let mut delays = Vec::new();
    for _ in 0..10 {
        assert_eq!(
            attempt(&verifier, &mut factor, "000000", now),
            Err(RejectReason::WrongCode)
        );
        let retry_at = factor.state().retry_at();
        delays.push(retry_at.saturating_sub(now));
        now = now.max(retry_at);
    }
    assert_eq!(delays, [0, 0, 0, 30, 60, 120, 240, 480, 900, 0]);
    assert!(factor.state().is_locked());
    // Locked: even the right code is refused, and refusals no longer change the state.
    let right = code(&factor, now);
    let state = *factor.state();
    assert_eq!(
        attempt(&verifier, &mut factor, &right, now),
        Err(RejectReason::Locked)
    );
    assert_eq!(*factor.state(), state);
}

#[test]
fn throttled_attempts_are_not_checked_and_not_counted() {
    let verifier = Verifier::default();
    let mut factor = active_factor(&verifier);
    for i in 0..4 {
        let _ = attempt(&verifier, &mut factor, "000000", NOW + i);
    }
    let retry_at = factor.state().retry_at();
    assert_eq!(retry_at, NOW + 3 + 30);
    let right = code(&factor, NOW + 10);
    assert_eq!(
        attempt(&verifier, &mut factor, &right, NOW + 10),
        Err(RejectReason::Throttled { retry_at })
    );
    assert_eq!(factor.state().failures(), 4);
    // After the delay the right code works and resets the count.
    let right = code(&factor, retry_at);
    assert!(attempt(&verifier, &mut factor, &right, retry_at).is_ok());
    assert_eq!(factor.state().failures(), 0);
    assert_eq!(factor.state().retry_at(), 0);
}

#[test]
fn locks_at_the_100th_failure_at_most() {
    assert!(LockoutPolicy::new(3, 1, 1, 101).is_err());
    assert!(LockoutPolicy::new(3, 1, 1, 0).is_err());
    assert!(LockoutPolicy::new(10, 1, 1, 10).is_err());
    assert!(LockoutPolicy::new(3, 0, 1, 10).is_err());
    assert!(LockoutPolicy::new(3, 10, 5, 10).is_err());
    let message = LockoutPolicy::new(3, 1, 1, 101).unwrap_err().to_string();
    assert!(
        message.contains("`lock_after`") && message.contains("101"),
        "{message}"
    );

    let verifier = Verifier::default().with_lockout(LockoutPolicy::new(5, 1, 60, 100).unwrap());
    let mut factor = active_factor(&verifier);
    let mut now = NOW;
    for i in 1..=100u32 {
        assert!(
            !factor.state().is_locked(),
            "locked early, after {} failures",
            i - 1
        );
        assert_eq!(
            attempt(&verifier, &mut factor, "000000", now),
            Err(RejectReason::WrongCode)
        );
        assert_eq!(factor.state().failures(), i);
        now = now.max(factor.state().retry_at()) + 1;
    }
    assert!(factor.state().is_locked());
    let right = code(&factor, now);
    assert_eq!(
        attempt(&verifier, &mut factor, &right, now),
        Err(RejectReason::Locked)
    );
    // An administrator's reset unlocks and keeps the replay mark.
    factor.set_state(factor.state().admin_reset());
    assert!(attempt(&verifier, &mut factor, &right, now).is_ok());
}

#[test]
fn success_resets_the_failure_count() {
    let verifier = Verifier::default();
    let mut factor = active_factor(&verifier);
    for i in 0..3 {
        let _ = attempt(&verifier, &mut factor, "000000", NOW + i);
    }
    assert_eq!(factor.state().failures(), 3);
    let right = code(&factor, NOW + 3);
    assert!(attempt(&verifier, &mut factor, &right, NOW + 3).is_ok());
    assert_eq!(factor.state().failures(), 0);
}

#[test]
fn a_recovery_code_unlocks_a_locked_factor() {
    let verifier = Verifier::default();
    let mut factor = active_factor(&verifier);
    factor.set_state(FactorState::from_stored(
        Phase::Active,
        Some(5),
        10,
        0,
        true,
    ));
    let (set, codes) = RecoveryCodeSet::generate("user-1").unwrap();
    let (_, step_up) = set.consume(codes[0].expose_secret(), NOW).unwrap();
    let unlocked = verifier
        .unlock_with_recovery(&factor, &step_up, NOW + 10)
        .unwrap();
    assert!(!unlocked.is_locked());
    assert_eq!(unlocked.failures(), 0);
    assert_eq!(unlocked.last_step(), Some(5));
    // A TOTP step-up, another user's step-up or a stale one do not unlock.
    let totp = StepUp::assume_verified_by_this_server("user-1", "phone", StepUpMethod::Totp, NOW);
    assert!(matches!(
        verifier.unlock_with_recovery(&factor, &totp, NOW),
        Err(MfaError::StepUpRequired { .. })
    ));
    let (other_set, other_codes) = RecoveryCodeSet::generate("user-2").unwrap();
    let (_, other) = other_set
        .consume(other_codes[0].expose_secret(), NOW)
        .unwrap();
    assert!(verifier.unlock_with_recovery(&factor, &other, NOW).is_err());
    assert!(
        verifier
            .unlock_with_recovery(&factor, &step_up, NOW + 301)
            .is_err()
    );
}

// ---------------------------------------------------------------- enrollment

#[test]
fn enrollment_confirms_with_one_code_which_is_then_consumed() {
    let verifier = Verifier::default();
    let mut factor = verifier
        .begin_enrollment("user-1", "phone", rfc_key(), NOW)
        .unwrap();
    assert_eq!(
        factor.state().phase(),
        Phase::Pending {
            expires_at: NOW + 600
        }
    );
    // A pending factor cannot log in.
    let c = code(&factor, NOW);
    assert_eq!(
        attempt(&verifier, &mut factor, &c, NOW),
        Err(RejectReason::NotActive)
    );

    let confirmed = verifier.confirm_enrollment(&factor, &c, NOW).unwrap();
    assert_eq!(confirmed.state().phase(), Phase::Active);
    assert_eq!(confirmed.step_up().method(), StepUpMethod::Totp);
    factor.set_state(*confirmed.state());
    // The confirmation code cannot be replayed to log in.
    assert_eq!(
        attempt(&verifier, &mut factor, &c, NOW + 1),
        Err(RejectReason::Replayed)
    );
    // Confirming again is refused, and the URI (with the secret) is no longer shown.
    assert!(verifier.confirm_enrollment(&factor, &c, NOW).is_err());
    assert!(matches!(
        factor.enrollment_uri("ACME", "jane"),
        Err(MfaError::WrongPhase {
            expected: "pending",
            actual: "active",
            ..
        })
    ));
}

#[test]
fn enrollment_expires_and_failures_count() {
    let verifier = Verifier::default().with_enrollment_ttl(60).unwrap();
    assert!(Verifier::default().with_enrollment_ttl(0).is_err());
    let factor = verifier
        .begin_enrollment("user-1", "phone", rfc_key(), NOW)
        .unwrap();
    let late = NOW + 61;
    let c = code(&factor, late);
    let rejected = verifier.confirm_enrollment(&factor, &c, late).unwrap_err();
    assert_eq!(rejected.reason(), RejectReason::EnrollmentExpired);
    let wrong = verifier
        .confirm_enrollment(&factor, "000000", NOW)
        .unwrap_err();
    assert_eq!(wrong.reason(), RejectReason::WrongCode);
    assert_eq!(wrong.state().failures(), 1);
    assert!(matches!(wrong.state().phase(), Phase::Pending { .. }));
}

#[test]
fn ids_are_checked() {
    let verifier = Verifier::default();
    for (user, factor) in [
        ("", "phone"),
        ("u", ""),
        ("u\n", "phone"),
        (&*"u".repeat(129), "phone"),
    ] {
        let err = verifier
            .begin_enrollment(user, factor, rfc_key(), NOW)
            .unwrap_err();
        assert!(matches!(err, MfaError::InvalidId { .. }), "{err}");
        assert!(!err.to_string().contains('\n'));
    }
}

#[test]
fn disabling_needs_a_fresh_step_up_of_the_same_user() {
    let verifier = Verifier::default();
    let mut factor = active_factor(&verifier);
    let c = code(&factor, NOW);
    let verified = verifier.verify(&factor, &c, NOW).unwrap();
    factor.set_state(*verified.state());
    let step_up = verified.step_up().clone();
    assert_eq!(step_up.user(), "user-1");
    assert_eq!(step_up.factor(), "phone");
    assert_eq!(step_up.verified_at(), NOW);

    let stale = verifier.disable(&factor, &step_up, NOW + 301).unwrap_err();
    assert!(
        stale
            .to_string()
            .starts_with("step-up required: the last verification is too old"),
        "{stale}"
    );
    let other = StepUp::assume_verified_by_this_server("user-2", "phone", StepUpMethod::Totp, NOW);
    assert!(verifier.disable(&factor, &other, NOW).is_err());

    let disabled = verifier.disable(&factor, &step_up, NOW + 300).unwrap();
    assert_eq!(disabled.phase(), Phase::Disabled);
    factor.set_state(disabled);
    let next = code(&factor, NOW + 60);
    assert_eq!(
        attempt(&verifier, &mut factor, &next, NOW + 60),
        Err(RejectReason::NotActive)
    );
    assert!(verifier.disable(&factor, &step_up, NOW + 10).is_err());
}

// ---------------------------------------------------------------- URIs

fn portable_uri() -> OtpauthUri {
    OtpauthUri::totp(Some("ACME Shop"), "jane@example.com", rfc_key()).unwrap()
}

#[test]
fn generated_uri_is_portable_and_percent_encoded() {
    assert_eq!(
        portable_uri().to_uri().expose_secret(),
        "otpauth://totp/ACME%20Shop:jane%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=ACME%20Shop"
    );
    let params = TotpParams::new(Algorithm::Sha512, 8, 60).unwrap();
    let key = TotpKey::new(rfc_key().secret().duplicate(), params);
    let uri = OtpauthUri::totp(Some("Zoë & Co"), "jane", key).unwrap();
    assert_eq!(
        uri.to_uri().expose_secret(),
        "otpauth://totp/Zo%C3%AB%20%26%20Co:jane?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Zo%C3%AB%20%26%20Co&algorithm=SHA512&digits=8&period=60"
    );
}

#[test]
fn uris_round_trip() {
    let cases = [
        portable_uri(),
        OtpauthUri::totp(None, "jane", rfc_key()).unwrap(),
        OtpauthUri::totp(
            Some("a/b?c=d&e"),
            "x+y %",
            TotpKey::new(
                rfc_key().secret().duplicate(),
                TotpParams::new(Algorithm::Sha256, 7, 1).unwrap(),
            ),
        )
        .unwrap(),
        OtpauthUri::hotp(
            Some("ACME"),
            "jane",
            rfc_key().secret().duplicate(),
            Algorithm::Sha1,
            custodian::mfa::Digits::EIGHT,
            u64::MAX,
        )
        .unwrap(),
    ];
    for uri in cases {
        let text = uri.to_uri();
        let parsed = OtpauthUri::parse(text.expose_secret()).unwrap();
        assert_eq!(parsed, uri, "{}", text.expose_secret());
        assert_eq!(parsed.to_uri(), text);
    }
}

#[test]
fn parsing_is_tolerant_where_apps_are() {
    let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    for text in [
        format!("otpauth://totp/ACME%20Shop:jane%40example.com?secret={secret}&issuer=ACME%20Shop"),
        format!("OTPAUTH://TOTP/ACME%20Shop%3Ajane%40example.com?secret={}&issuer=ACME+Shop", secret.to_lowercase()),
        format!("otpauth://totp/ACME%20Shop:%20%20jane%40example.com?issuer=ACME%20Shop&secret={secret}&image=x&period=30&digits=6&algorithm=sha1"),
        format!("otpauth://totp/jane%40example.com?secret={secret}&issuer=ACME%20Shop#fragment"),
        "otpauth://totp/ACME%20Shop:jane%40example.com?secret=GEZD%20GNBV%20GY3TQOJQGEZDGNBVGY3TQOJQ====".to_owned(),
    ] {
        let parsed = OtpauthUri::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(parsed, portable_uri(), "{text}");
    }
    let hotp =
        OtpauthUri::parse(&format!("otpauth://hotp/jane?secret={secret}&counter=7")).unwrap();
    assert_eq!(hotp.kind(), OtpKind::Hotp { counter: 7 });
    assert!(hotp.to_totp_key().is_none());
}

/// docs/MFA.md: leading spaces of the account are dropped on parse and on generation; trailing
/// and inner ones are kept.
#[test]
fn leading_account_spaces_are_dropped_both_ways() {
    let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    let parsed = OtpauthUri::parse(&format!(
        "otpauth://totp/ACME:%20%20jane%20doe%20?secret={secret}"
    ))
    .unwrap();
    assert_eq!(parsed.account(), "jane doe ");
    let generated = OtpauthUri::totp(Some("ACME"), "  jane", rfc_key()).unwrap();
    assert_eq!(generated.account(), "jane");
    assert!(
        generated
            .to_uri()
            .expose_secret()
            .starts_with("otpauth://totp/ACME:jane?"),
        "{}",
        generated.to_uri().expose_secret()
    );
    assert!(matches!(
        OtpauthUri::totp(Some("ACME"), "   ", rfc_key()),
        Err(UriError::EmptyAccount)
    ));
}

/// docs/MFA.md: the label is percent-decoded before it is split, so an encoded `:` separates the
/// issuer from the account even without an `issuer` parameter.
#[test]
fn an_encoded_colon_in_the_label_splits_issuer_and_account() {
    let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    for label in ["ACME%3Aalice", "ACME%3aalice", "ACME:alice"] {
        let parsed = OtpauthUri::parse(&format!("otpauth://totp/{label}?secret={secret}")).unwrap();
        assert_eq!(parsed.issuer(), Some("ACME"), "{label}");
        assert_eq!(parsed.account(), "alice", "{label}");
    }
    // A second encoded colon would put `:` inside the account: refused.
    assert!(matches!(
        OtpauthUri::parse(&format!("otpauth://totp/ACME%3Aal%3Aice?secret={secret}")),
        Err(UriError::Colon { .. })
    ));
    assert!(matches!(
        OtpauthUri::parse(&format!(
            "otpauth://totp/ACME%3Aalice?secret={secret}&issuer=Other"
        )),
        Err(UriError::IssuerMismatch { .. })
    ));
}

#[test]
fn each_uri_mistake_has_its_own_error() {
    let s = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    let cases: Vec<(String, UriError)> = vec![
        (format!("https://totp/a?secret={s}"), UriError::NotOtpauth),
        (
            format!("otpauth://motp/a?secret={s}"),
            UriError::UnknownType {
                found: "motp".into(),
            },
        ),
        (
            format!("otpauth://totp/a?secret={s}&period=0"),
            UriError::InvalidPeriod { found: "0".into() },
        ),
        (
            format!("otpauth://totp/a?secret={s}&period=-30"),
            UriError::InvalidPeriod {
                found: "-30".into(),
            },
        ),
        (
            format!("otpauth://totp/a?secret={s}&period=99999999999999999999"),
            UriError::InvalidPeriod {
                found: "99999999999999999999".into(),
            },
        ),
        (
            format!("otpauth://totp/a?secret={s}&digits=5"),
            UriError::InvalidDigits { found: "5".into() },
        ),
        (
            format!("otpauth://totp/a?secret={s}&digits=9"),
            UriError::InvalidDigits { found: "9".into() },
        ),
        (
            format!("otpauth://totp/a?secret={s}&algorithm=MD5"),
            UriError::UnknownAlgorithm {
                found: "MD5".into(),
            },
        ),
        (
            "otpauth://totp/a?secret=GEZ1".into(),
            UriError::Secret(custodian::mfa::SecretError::InvalidCharacter { position: 3 }),
        ),
        (
            "otpauth://totp/a?secret=JBSWY3DPEHPK3PXP".into(),
            UriError::Secret(custodian::mfa::SecretError::TooShort {
                bits: 80,
                min_bits: 128,
            }),
        ),
        ("otpauth://totp/a?issuer=b".into(), UriError::MissingSecret),
        (
            format!("otpauth://totp/A:b?secret={s}&issuer=B"),
            UriError::IssuerMismatch {
                label: "A".into(),
                parameter: "B".into(),
            },
        ),
        (
            format!("otpauth://totp/A:b:c?secret={s}"),
            UriError::Colon { part: "account" },
        ),
        (
            format!("otpauth://totp/b?secret={s}&issuer=A%3AB"),
            UriError::Colon { part: "issuer" },
        ),
        (
            format!("otpauth://totp/A:?secret={s}"),
            UriError::EmptyAccount,
        ),
        (
            format!("otpauth://totp/?secret={s}"),
            UriError::EmptyAccount,
        ),
        (
            format!("otpauth://totp/:b?secret={s}"),
            UriError::EmptyIssuer,
        ),
        (
            format!("otpauth://totp/a%0Ab?secret={s}"),
            UriError::ControlCharacter { part: "account" },
        ),
        (
            format!("otpauth://totp/a%2?secret={s}"),
            UriError::BadPercentEncoding { part: "label" },
        ),
        (
            format!("otpauth://totp/a%FF?secret={s}"),
            UriError::NotUtf8 { part: "label" },
        ),
        (
            format!("otpauth://totp/a?secret={s}&secret={s}"),
            UriError::DuplicateParameter {
                name: "secret".into(),
            },
        ),
        (
            format!("otpauth://hotp/a?secret={s}"),
            UriError::MissingCounter,
        ),
        (
            format!("otpauth://hotp/a?secret={s}&counter=x"),
            UriError::InvalidCounter { found: "x".into() },
        ),
        (
            format!("otpauth://totp/{}?secret={s}", "a".repeat(257)),
            UriError::FieldTooLong {
                part: "account",
                len: 257,
                max: 256,
            },
        ),
    ];
    let long = format!("otpauth://totp/a?secret={s}&x={}", "a".repeat(4096));
    let cases = cases.into_iter().chain([(
        long.clone(),
        UriError::TooLong {
            len: long.len(),
            max: 4096,
        },
    )]);
    for (text, expected) in cases {
        let got = OtpauthUri::parse(&text).map(|_| ()).unwrap_err();
        assert_eq!(got, expected, "{text}");
        let message = got.to_string();
        assert!(
            !message.contains("GEZDGNBV"),
            "secret in message: {message}"
        );
        assert!(!message.ends_with('.'));
    }
    // Short secrets are accepted only by the named legacy parser.
    let legacy = OtpauthUri::parse_legacy("otpauth://totp/a?secret=JBSWY3DPEHPK3PXP").unwrap();
    assert_eq!(legacy.secret().len(), 10);
}

#[test]
fn uri_construction_checks_fields() {
    assert_eq!(
        OtpauthUri::totp(Some("A:B"), "jane", rfc_key()).unwrap_err(),
        UriError::Colon { part: "issuer" }
    );
    assert_eq!(
        OtpauthUri::totp(Some("A"), "ja:ne", rfc_key()).unwrap_err(),
        UriError::Colon { part: "account" }
    );
    assert_eq!(
        OtpauthUri::totp(Some(""), "jane", rfc_key()).unwrap_err(),
        UriError::EmptyIssuer
    );
    assert_eq!(
        OtpauthUri::totp(None, " ", rfc_key()).unwrap_err(),
        UriError::EmptyAccount
    );
}

// ---------------------------------------------------------------- QR codes

#[cfg(feature = "qr")]
#[test]
fn png_decodes_back_to_the_uri_with_an_independent_decoder() {
    let uri = portable_uri();
    let png_bytes = uri.qr().unwrap().to_png(4).unwrap();
    assert_eq!(&png_bytes.expose_secret()[..8], b"\x89PNG\r\n\x1a\n");

    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes.expose_secret().to_vec()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    let (w, h) = (info.width as usize, info.height as usize);
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| pixels[y * w + x]);
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1);
    let (_, content) = grids[0].decode().unwrap();
    assert_eq!(content, uri.to_uri().expose_secret());
}

#[cfg(feature = "qr")]
#[test]
fn svg_and_terminal_renderings_hold_the_same_modules() {
    use custodian::mfa::TerminalBackground;
    let qr = portable_uri().qr().unwrap();
    let size = qr.width() + 8;
    let svg = qr.to_svg();
    assert!(svg.expose_secret().starts_with("<?xml"));
    assert!(
        svg.expose_secret()
            .contains(&format!("viewBox=\"0 0 {size} {size}\""))
    );
    let dark_in_svg = svg.expose_secret().matches('M').count();

    let light = qr.to_terminal(TerminalBackground::Light);
    let lines: Vec<&str> = light.expose_secret().lines().collect();
    assert_eq!(lines.len(), size.div_ceil(2));
    assert!(lines.iter().all(|l| l.chars().count() == size));
    let dark_in_terminal: usize = light
        .expose_secret()
        .chars()
        .map(|c| match c {
            '█' => 2,
            '▀' | '▄' => 1,
            _ => 0,
        })
        .sum();
    assert_eq!(dark_in_svg, dark_in_terminal);
    // The dark-background rendering is the negative image.
    let dark = qr.to_terminal(TerminalBackground::Dark);
    let blocks_dark: usize = dark
        .expose_secret()
        .chars()
        .map(|c| match c {
            '█' => 2,
            '▀' | '▄' => 1,
            _ => 0,
        })
        .sum();
    assert_eq!(blocks_dark + dark_in_terminal, size * size);
    assert!(qr.to_png(0).is_err());
    assert!(qr.to_png(33).is_err());
    assert!(!format!("{qr:?}").contains('█'));
}

// ---------------------------------------------------------------- Debug redaction

#[test]
fn debug_of_every_secret_type_is_redacted() {
    let key = rfc_key();
    let secret_b32 = "GEZDGNBVGY3TQOJQ";
    let raw = String::from_utf8_lossy(SEED).into_owned();
    let verifier = Verifier::default();
    let factor = verifier
        .begin_enrollment("user-1", "phone", key.duplicate(), NOW)
        .unwrap();
    let uri = portable_uri();
    let code = key.code_at(NOW).unwrap();
    let (set, codes) = RecoveryCodeSet::generate("user-1").unwrap();
    let shown = [
        format!("{:?}", key.secret()),
        format!("{key:?}"),
        format!("{factor:?}"),
        format!("{uri:?}"),
        format!("{:?}", uri.to_uri()),
        format!("{:?}", key.secret().to_base32()),
        format!("{code:?}"),
        format!("{set:?}"),
        format!("{:?}", codes[0]),
    ];
    for text in &shown {
        assert!(!text.contains(secret_b32), "{text}");
        assert!(!text.contains(&raw), "{text}");
        assert!(!text.contains(code.expose_secret()), "{text}");
        assert!(!text.contains(&codes[0].expose_secret()[..9]), "{text}");
        assert!(
            text.contains("REDACTED") || text.contains("RecoveryCodeHash(v1)"),
            "{text}"
        );
    }
    assert_eq!(shown[0], "OtpSecret([REDACTED; 160 bits])");
    assert_eq!(shown[6], "OtpCode([REDACTED; 6 digits])");
}

// ---------------------------------------------------------------- properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the clock and the history, a code is accepted at most once, and an accepted step
    /// always moves the mark forward.
    #[test]
    fn no_step_is_accepted_twice(times in proptest::collection::vec(0u64..600, 1..40), offsets in proptest::collection::vec(-2i64..=2, 1..40)) {
        let verifier = Verifier::default()
            .with_lockout(LockoutPolicy::new(99, 1, 1, 100).unwrap());
        let mut factor = active_factor(&verifier);
        let mut accepted = std::collections::HashSet::new();
        let mut now = NOW;
        for (dt, offset) in times.iter().zip(offsets.iter().cycle()) {
            now += dt;
            let step = (now / 30).checked_add_signed(*offset).unwrap();
            let c = code_at_step(&factor, step);
            let mark = factor.state().last_step();
            if let Ok(step) = attempt(&verifier, &mut factor, &c, now) {
                prop_assert!(accepted.insert(step), "step {step} accepted twice");
                prop_assert!(mark.is_none_or(|m| step > m));
            }
        }
    }

    /// Generated URIs always parse back to the same key and names.
    #[test]
    fn uri_round_trip(issuer in "[^:\\p{Cc}]{1,40}", account in "[^: \\p{Cc}][^:\\p{Cc}]{0,40}", digits in 6u8..=8, period in 1u64..100_000, alg in 0usize..3, len in 16usize..=64) {
        let algorithm = [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512][alg];
        let key = TotpKey::new(OtpSecret::generate_with_len(len).unwrap(), TotpParams::new(algorithm, digits, period).unwrap());
        let uri = OtpauthUri::totp(Some(&issuer), &account, key).unwrap();
        let parsed = OtpauthUri::parse(uri.to_uri().expose_secret()).unwrap();
        prop_assert_eq!(parsed, uri);
    }

    /// Base32 round trip for every length the secret policy accepts.
    #[test]
    fn base32_round_trip(bytes in proptest::collection::vec(any::<u8>(), 16..=128)) {
        let secret = OtpSecret::from_bytes(SecretBytes::new(bytes.clone())).unwrap();
        let text = secret.to_base32();
        let again = OtpSecret::from_base32(text.expose_secret()).unwrap();
        prop_assert_eq!(again.expose_secret(), &bytes[..]);
        let lower = OtpSecret::from_base32(&text.expose_secret().to_lowercase()).unwrap();
        prop_assert_eq!(lower.expose_secret(), &bytes[..]);
    }
}

#[test]
fn a_replay_is_not_counted_as_a_failure() {
    let verifier = Verifier::default();
    let mut factor = active_factor(&verifier);
    let c = code(&factor, NOW);
    assert_eq!(attempt(&verifier, &mut factor, &c, NOW), Ok(NOW / 30));
    let before = *factor.state();
    for i in 0..u64::from(LockoutPolicy::default().lock_after()) * 2 {
        let rejected = verifier.verify(&factor, &c, NOW + i).unwrap_err();
        assert_eq!(rejected.reason(), RejectReason::Replayed);
        assert_eq!(
            *rejected.state(),
            before,
            "a replay must leave the state unchanged"
        );
    }
    // A wrong code still counts.
    let rejected = verifier.verify(&factor, "000000", NOW + 1).unwrap_err();
    assert_eq!(rejected.reason(), RejectReason::WrongCode);
    assert_eq!(rejected.state().failures(), before.failures() + 1);
}
