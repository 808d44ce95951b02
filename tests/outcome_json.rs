//! The JSON shape of the outcomes an application records or returns: MFA verifications and
//! refusals, step-ups, rotations and erasures. Field names are part of the API: a SIEM or an
//! archive parses them, so a rename must fail here first.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use custodian::Custodian;
use custodian::SecretBytes;
use custodian::keys::{LocalRootKey, MemoryKeyStore};
use custodian::mfa::{
    OtpSecret, RejectReason, StepUp, StepUpMethod, TotpKey, TotpParams, Verifier,
};
use serde_json::json;

const NOW: u64 = 1_700_000_010;
/// The RFC 6238 appendix B seed (SHA-1).
const SEED: &[u8] = b"12345678901234567890";

fn key() -> TotpKey {
    TotpKey::new(
        OtpSecret::from_bytes(SecretBytes::new(SEED.to_vec())).unwrap(),
        TotpParams::PORTABLE,
    )
}

#[test]
fn verified_has_step_state_and_step_up_and_no_code() {
    let verifier = Verifier::default();
    let factor = verifier
        .begin_enrollment("user-42", "phone", key(), NOW)
        .unwrap();
    let code = factor.key().code_at(NOW).unwrap();
    let verified = verifier
        .confirm_enrollment(&factor, code.expose_secret(), NOW)
        .unwrap();
    let value = serde_json::to_value(&verified).unwrap();
    assert_eq!(
        value,
        json!({
            "step": NOW / 30,
            "state": {
                "phase": {"type": "active"},
                "last_step": NOW / 30,
                "failures": 0,
                "retry_at": 0,
                "locked": false,
            },
            "step_up": {
                "user": "user-42",
                "factor": "phone",
                "method": "totp",
                "verified_at": NOW,
            },
        })
    );
    let text = value.to_string();
    assert!(!text.contains(code.expose_secret()), "{text}");
}

#[test]
fn rejected_has_reason_and_counted_state() {
    let verifier = Verifier::default();
    let factor = verifier
        .begin_enrollment("user-42", "phone", key(), NOW)
        .unwrap();
    let pending = serde_json::to_value(factor.state()).unwrap();
    assert_eq!(
        pending["phase"],
        json!({"type": "pending", "expires_at": NOW + 600})
    );
    let rejected = verifier
        .confirm_enrollment(&factor, "000000", NOW)
        .unwrap_err();
    assert_eq!(
        serde_json::to_value(&rejected).unwrap(),
        json!({
            "reason": {"type": "wrong_code"},
            "state": {
                "phase": {"type": "pending", "expires_at": NOW + 600},
                "last_step": null,
                "failures": 1,
                "retry_at": 0,
                "locked": false,
            },
        })
    );
}

#[test]
fn every_reject_reason_is_a_tagged_snake_case_object() {
    let cases = [
        (RejectReason::Malformed, json!({"type": "malformed"})),
        (RejectReason::WrongCode, json!({"type": "wrong_code"})),
        (RejectReason::Replayed, json!({"type": "replayed"})),
        (
            RejectReason::Throttled { retry_at: 7 },
            json!({"type": "throttled", "retry_at": 7}),
        ),
        (RejectReason::Locked, json!({"type": "locked"})),
        (RejectReason::NotActive, json!({"type": "not_active"})),
        (
            RejectReason::EnrollmentExpired,
            json!({"type": "enrollment_expired"}),
        ),
        (RejectReason::Conflict, json!({"type": "conflict"})),
        (
            RejectReason::UnknownRecoveryCode,
            json!({"type": "unknown_recovery_code"}),
        ),
    ];
    for (reason, expected) in cases {
        assert_eq!(serde_json::to_value(reason).unwrap(), expected);
    }
}

#[test]
fn step_up_by_recovery_code() {
    let step_up = StepUp::assume_verified_by_this_server(
        "user-42",
        "recovery-code",
        StepUpMethod::RecoveryCode,
        NOW,
    );
    assert_eq!(
        serde_json::to_string(&step_up).unwrap(),
        r#"{"user":"user-42","factor":"recovery-code","method":"recovery_code","verified_at":1700000010}"#
    );
}

#[test]
fn rotation_and_erasure() {
    let custodian = Custodian::builder()
        .key_store(MemoryKeyStore::new())
        .root_key(LocalRootKey::random().unwrap())
        .clock(|| NOW)
        .build()
        .unwrap();
    let context = custodian::EncryptionContext::for_field("customers", "42", "email").unwrap();
    custodian
        .encrypt("cus_42", &context, b"jane@example.com")
        .unwrap();
    let rotation = custodian.rotate().unwrap();
    assert_eq!(
        serde_json::to_value(&rotation).unwrap(),
        json!({"ring": "customers", "new_version": 2})
    );
    let batch = custodian
        .keys()
        .rewrap_subject_keys_batch("customers", NOW)
        .unwrap();
    assert_eq!(
        serde_json::to_value(&batch).unwrap(),
        json!({"rewrapped": 1, "done": true})
    );
    let erasure = custodian.erase_subject("cus_42").unwrap();
    assert_eq!(
        serde_json::to_value(&erasure).unwrap(),
        json!({
            "ring": "customers",
            "subject": "cus_42",
            "generation": 1,
            "erased_at": NOW,
            "newly_erased": true,
            "purged": true,
            // The key store's own audit log: two rings created, the subject's key, the rotation,
            // then this erasure.
            "audit_index": 4,
        })
    );
}
