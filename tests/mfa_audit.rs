//! `MfaService::with_audit`: every MFA outcome lands in the audit log, with the user as actor and
//! `user/factor` as resource, and an outcome that cannot be recorded is refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use custodian::audit::{
    Action, AuditEntry, AuditError, AuditStore, BuildAppend, Hash, MemoryAuditStore, Outcome,
};
use custodian::envelope::{Kek, StaticKek};
use custodian::mfa::{
    LockoutPolicy, MemoryFactorStore, MfaError, MfaService, OtpSecret, RecoveryCodeSet,
    RejectReason, TotpKey, TotpParams, Verifier,
};
use custodian::{SecretBytes, SecretKey};
use std::sync::Arc;

const NOW: u64 = 1_700_000_010;
/// The RFC 6238 appendix B seed (SHA-1).
const SEED: &[u8] = b"12345678901234567890";

fn key() -> TotpKey {
    TotpKey::new(
        OtpSecret::from_bytes(SecretBytes::new(SEED.to_vec())).unwrap(),
        TotpParams::PORTABLE,
    )
}

fn code_at(now: u64) -> String {
    key().code_at(now).unwrap().expose_secret().to_owned()
}

fn service(audit: Arc<dyn AuditStore>) -> MfaService {
    let kek: Arc<dyn Kek> = Arc::new(StaticKek::generate("mfa-seeds", 1).unwrap());
    MfaService::new(
        MemoryFactorStore::new(),
        kek,
        SecretKey::from_bytes([0x42; 32]),
    )
    .with_audit(audit)
}

/// Two free failures, the third consecutive one locks.
fn verifier() -> Verifier {
    Verifier::default().with_lockout(LockoutPolicy::new(2, 1, 1, 3).unwrap())
}

fn entries(service: &MfaService) -> Vec<AuditEntry> {
    let log = service.audit().unwrap();
    log.entries(0..log.tree_size().unwrap()).unwrap()
}

/// (action, actor, resource, outcome) of every entry from `from` on.
fn summary(service: &MfaService, from: usize) -> Vec<(Action, String, String, Outcome)> {
    entries(service)
        .into_iter()
        .skip(from)
        .map(|e| {
            assert!(e.event.time >= NOW, "time is the `now` given");
            assert_eq!(e.event.subject, None);
            (
                e.event.action,
                e.event.actor,
                e.event.resource,
                e.event.outcome,
            )
        })
        .collect()
}

fn row(
    action: Action,
    actor: &str,
    resource: &str,
    outcome: Outcome,
) -> (Action, String, String, Outcome) {
    (action, actor.to_owned(), resource.to_owned(), outcome)
}

/// `user-1/phone` enrolled and confirmed at `NOW`.
fn enrolled() -> MfaService {
    let service = service(Arc::new(MemoryAuditStore::new()));
    let v = verifier();
    service
        .begin_enrollment(&v, "user-1", "phone", key(), NOW, None)
        .unwrap();
    service
        .confirm_enrollment(&v, "user-1", "phone", &code_at(NOW), NOW)
        .unwrap();
    service
}

#[test]
fn enrollment_and_confirmation_are_recorded() {
    let service = enrolled();
    assert_eq!(
        summary(&service, 0),
        [
            row(
                Action::MfaEnrolled,
                "user-1",
                "user-1/phone",
                Outcome::Success
            ),
            row(
                Action::MfaConfirmed,
                "user-1",
                "user-1/phone",
                Outcome::Success
            ),
        ]
    );
    assert_eq!(entries(&service)[0].event.time, NOW);
}

#[test]
fn a_second_factor_without_step_up_is_recorded_as_denied() {
    let service = enrolled();
    let err = service
        .begin_enrollment(&verifier(), "user-1", "laptop", key(), NOW + 60, None)
        .unwrap_err();
    assert!(matches!(err, MfaError::StepUpRequired { .. }), "{err}");
    assert_eq!(
        summary(&service, 2),
        [row(
            Action::MfaEnrolled,
            "user-1",
            "user-1/laptop",
            Outcome::Denied
        )]
    );
}

#[test]
fn verified_failed_and_replayed_codes_are_recorded() {
    let service = enrolled();
    let v = verifier();
    let later = NOW + 30;
    service
        .verify(&v, "user-1", "phone", &code_at(later), later)
        .unwrap();
    let replay = service
        .verify(&v, "user-1", "phone", &code_at(later), later + 1)
        .unwrap_err();
    assert_eq!(replay.reject_reason(), Some(RejectReason::Replayed));
    let wrong = service
        .verify(&v, "user-1", "phone", "000000", later + 2)
        .unwrap_err();
    assert_eq!(wrong.reject_reason(), Some(RejectReason::WrongCode));
    let malformed = service
        .verify(&v, "user-1", "phone", "12", later + 3)
        .unwrap_err();
    assert_eq!(malformed.reject_reason(), Some(RejectReason::Malformed));
    assert_eq!(
        summary(&service, 2),
        [
            row(
                Action::MfaVerified,
                "user-1",
                "user-1/phone",
                Outcome::Success
            ),
            row(
                Action::MfaReplayed,
                "user-1",
                "user-1/phone",
                Outcome::Failure
            ),
            row(
                Action::MfaFailed,
                "user-1",
                "user-1/phone",
                Outcome::Failure
            ),
            row(
                Action::MfaFailed,
                "user-1",
                "user-1/phone",
                Outcome::Failure
            ),
        ]
    );
}

#[test]
fn lock_refusal_and_admin_unlock_are_recorded() {
    let service = enrolled();
    let v = verifier();
    for i in 0..3 {
        service
            .verify(&v, "user-1", "phone", "000000", NOW + 100 + i)
            .unwrap_err();
    }
    let locked = service
        .verify(&v, "user-1", "phone", &code_at(NOW + 200), NOW + 200)
        .unwrap_err();
    assert_eq!(locked.reject_reason(), Some(RejectReason::Locked));
    service
        .admin_reset("admin-9", "user-1", "phone", NOW + 300)
        .unwrap();
    assert_eq!(
        summary(&service, 2),
        [
            row(
                Action::MfaFailed,
                "user-1",
                "user-1/phone",
                Outcome::Failure
            ),
            row(
                Action::MfaFailed,
                "user-1",
                "user-1/phone",
                Outcome::Failure
            ),
            row(
                Action::MfaFailed,
                "user-1",
                "user-1/phone",
                Outcome::Failure
            ),
            row(
                Action::MfaLocked,
                "user-1",
                "user-1/phone",
                Outcome::Success
            ),
            // Refused before any check: denied, not a failure.
            row(Action::MfaFailed, "user-1", "user-1/phone", Outcome::Denied),
            row(
                Action::MfaUnlocked,
                "admin-9",
                "user-1/phone",
                Outcome::Success
            ),
        ]
    );
    assert_eq!(entries(&service).last().unwrap().event.time, NOW + 300);
}

#[test]
fn disabling_is_recorded_with_the_user_or_the_administrator_as_actor() {
    let service = enrolled();
    let v = verifier();
    let at = NOW + 60;
    let step_up = service
        .verify(&v, "user-1", "phone", &code_at(at), at)
        .unwrap();
    service
        .disable(&v, "user-1", "phone", &step_up, at + 1)
        .unwrap();
    // Enrolling the disabled factor's id again replaces it; an administrator disables that one.
    service
        .begin_enrollment(&v, "user-1", "phone", key(), at + 2, None)
        .unwrap();
    service
        .confirm_enrollment(&v, "user-1", "phone", &code_at(at + 30), at + 30)
        .unwrap();
    assert!(
        service
            .admin_disable("admin-3", "user-1", "phone", at + 40)
            .unwrap()
    );
    assert!(
        !service
            .admin_disable("admin-3", "user-1", "phone", at + 41)
            .unwrap(),
        "a factor already disabled records nothing"
    );
    assert_eq!(
        summary(&service, 2),
        [
            row(
                Action::MfaVerified,
                "user-1",
                "user-1/phone",
                Outcome::Success
            ),
            row(
                Action::MfaDisabled,
                "user-1",
                "user-1/phone",
                Outcome::Success
            ),
            row(
                Action::MfaEnrolled,
                "user-1",
                "user-1/phone",
                Outcome::Success
            ),
            row(
                Action::MfaConfirmed,
                "user-1",
                "user-1/phone",
                Outcome::Success
            ),
            row(
                Action::MfaDisabled,
                "admin-3",
                "user-1/phone",
                Outcome::Success
            ),
        ]
    );
    assert_eq!(entries(&service).last().unwrap().event.time, at + 40);
    let refused = service
        .verify(&v, "user-1", "phone", &code_at(at + 90), at + 90)
        .unwrap_err();
    assert_eq!(refused.reject_reason(), Some(RejectReason::NotActive));
}

#[test]
fn recovery_codes_used_unknown_and_the_unlock_they_bring() {
    let service = enrolled();
    let v = verifier();
    let (set, codes) = RecoveryCodeSet::generate("user-1").unwrap();
    service.replace_recovery_codes(&set).unwrap();
    for i in 0..3 {
        service
            .verify(&v, "user-1", "phone", "000000", NOW + 100 + i)
            .unwrap_err();
    }
    let unknown = service
        .use_recovery_code("user-1", "not-a-code", NOW + 150)
        .unwrap_err();
    assert_eq!(
        unknown.reject_reason(),
        Some(RejectReason::UnknownRecoveryCode)
    );
    service
        .use_recovery_code("user-1", codes[0].expose_secret(), NOW + 160)
        .unwrap();
    assert_eq!(
        summary(&service, 6),
        [
            row(
                Action::RecoveryCodeUsed,
                "user-1",
                "user-1/recovery-code",
                Outcome::Failure
            ),
            row(
                Action::RecoveryCodeUsed,
                "user-1",
                "user-1/recovery-code",
                Outcome::Success
            ),
            row(
                Action::MfaUnlocked,
                "user-1",
                "user-1/phone",
                Outcome::Success
            ),
        ]
    );
    // No code, seed or hash in any entry.
    let json = service
        .audit()
        .unwrap()
        .export_json_lines(0..service.audit().unwrap().tree_size().unwrap())
        .unwrap();
    assert!(!json.contains(codes[0].expose_secret()));
}

#[test]
fn confirmation_in_an_enrollment_that_expired_is_denied() {
    let service = service(Arc::new(MemoryAuditStore::new()));
    let v = verifier();
    service
        .begin_enrollment(&v, "user-1", "phone", key(), NOW, None)
        .unwrap();
    let late = NOW + 3_600;
    let err = service
        .confirm_enrollment(&v, "user-1", "phone", &code_at(late), late)
        .unwrap_err();
    assert_eq!(err.reject_reason(), Some(RejectReason::EnrollmentExpired));
    assert_eq!(
        summary(&service, 1),
        [row(
            Action::MfaFailed,
            "user-1",
            "user-1/phone",
            Outcome::Denied
        )]
    );
}

/// A store that accepts the first `allowed` appends, then fails every one.
#[derive(Debug)]
struct FailingAfter {
    inner: MemoryAuditStore,
    allowed: std::sync::atomic::AtomicUsize,
}

impl AuditStore for FailingAfter {
    fn tree_size(&self) -> Result<u64, AuditError> {
        self.inner.tree_size()
    }
    fn append(&self, build: &mut BuildAppend<'_>) -> Result<u64, AuditError> {
        use std::sync::atomic::Ordering;
        if self
            .allowed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_err()
        {
            return Err(AuditError::Store {
                message: "disk full".into(),
                source: None,
            });
        }
        self.inner.append(build)
    }
    fn read_entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, AuditError> {
        self.inner.read_entries(start, end)
    }
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, AuditError> {
        self.inner.read_hashes(indexes)
    }
}

#[test]
fn a_verification_that_cannot_be_recorded_fails_closed() {
    let store = Arc::new(FailingAfter {
        inner: MemoryAuditStore::new(),
        allowed: 2.into(), // enrollment and confirmation
    });
    let service = service(store.clone());
    let v = verifier();
    service
        .begin_enrollment(&v, "user-1", "phone", key(), NOW, None)
        .unwrap();
    service
        .confirm_enrollment(&v, "user-1", "phone", &code_at(NOW), NOW)
        .unwrap();
    let later = NOW + 30;
    let err = service
        .verify(&v, "user-1", "phone", &code_at(later), later)
        .unwrap_err();
    assert!(matches!(err, MfaError::Audit(_)), "{err}");
    assert!(err.to_string().contains("not recorded"), "{err}");
    // Failures are refused the same way: the caller cannot tell a right code from a wrong one.
    let wrong = service
        .verify(&v, "user-1", "phone", "000000", later + 1)
        .unwrap_err();
    assert!(matches!(wrong, MfaError::Audit(_)), "{wrong}");
    assert!(matches!(
        service.use_recovery_code("user-1", "nope", later + 2),
        Err(MfaError::Audit(_))
    ));
    assert!(matches!(
        service.admin_reset("admin-1", "user-1", "phone", later + 3),
        Err(MfaError::Audit(_))
    ));
    // The spent code stays spent: no second chance to get a step-up without an entry.
    store.allowed.store(10, std::sync::atomic::Ordering::SeqCst);
    let again = service
        .verify(&v, "user-1", "phone", &code_at(later), later + 4)
        .unwrap_err();
    assert_eq!(again.reject_reason(), Some(RejectReason::Replayed));
    assert_eq!(store.inner.tree_size().unwrap(), 3);
}

#[test]
fn without_an_audit_log_nothing_is_recorded_and_nothing_fails() {
    let kek: Arc<dyn Kek> = Arc::new(StaticKek::generate("mfa-seeds", 1).unwrap());
    let service = MfaService::new(
        MemoryFactorStore::new(),
        kek,
        SecretKey::from_bytes([0x42; 32]),
    );
    assert!(service.audit().is_none());
    let v = verifier();
    service
        .begin_enrollment(&v, "user-1", "phone", key(), NOW, None)
        .unwrap();
    service
        .confirm_enrollment(&v, "user-1", "phone", &code_at(NOW), NOW)
        .unwrap();
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn async_mfa_records_into_the_same_log() {
    use custodian::asynchronous::AsyncMfa;
    let store = Arc::new(MemoryAuditStore::new());
    let mfa = AsyncMfa::new(service(store.clone()), verifier());
    mfa.begin_enrollment("user-1", "phone", key(), NOW, None)
        .await
        .unwrap();
    mfa.confirm_enrollment("user-1", "phone", &code_at(NOW), NOW)
        .await
        .unwrap();
    mfa.admin_reset("admin-2", "user-1", "phone", NOW + 5)
        .await
        .unwrap();
    let log = mfa.audit().unwrap();
    assert_eq!(log.tree_size().unwrap(), 3);
    assert_eq!(store.tree_size().unwrap(), 3);
    let last = &log.entries(2..3).unwrap()[0];
    assert_eq!(last.event.action, Action::MfaUnlocked);
    assert_eq!(last.event.actor, "admin-2");
}
