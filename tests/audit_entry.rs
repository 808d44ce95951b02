//! The binary form of audit entries: round trips, one encoding per entry, refusals, and no panic
//! on any bytes.

use custodian::audit::{
    Action, AuditEntry, AuditError, AuditEvent, Decision, Hash, MAX_FIELDS, MAX_NAME_LEN,
    MAX_RESOURCE_LEN, Outcome,
};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9_./é-]{1,40}"
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        Just(Action::KeyRingCreated),
        any::<u32>().prop_map(|version| Action::KeyRingRotated { version }),
        any::<u32>().prop_map(|version| Action::KeyVersionDisabled { version }),
        any::<u32>().prop_map(|version| Action::KeyVersionDestroyed { version }),
        Just(Action::KeyPolicyChanged),
        Just(Action::SubjectCreated),
        Just(Action::SubjectErased),
        prop::collection::vec(name(), 1..6).prop_map(|fields| Action::FieldsRevealed { fields }),
        (any::<bool>(), prop::option::of(name()), any::<[u8; 32]>()).prop_map(
            |(allow, rule, d)| {
                Action::AccessDecision {
                    decision: if allow {
                        Decision::Allow
                    } else {
                        Decision::Deny
                    },
                    rule,
                    policy_digest: Hash::from_bytes(d),
                }
            }
        ),
        Just(Action::MfaEnrolled),
        Just(Action::MfaConfirmed),
        Just(Action::MfaVerified),
        Just(Action::MfaFailed),
        Just(Action::MfaReplayed),
        Just(Action::MfaLocked),
        Just(Action::MfaUnlocked),
        Just(Action::RecoveryCodeUsed),
        Just(Action::MfaDisabled),
        any::<[u8; 32]>().prop_map(|d| Action::PolicyLoaded {
            policy_digest: Hash::from_bytes(d)
        }),
    ]
}

fn entry() -> impl Strategy<Value = AuditEntry> {
    (
        any::<u64>(),
        any::<u64>(),
        name(),
        action(),
        "[a-z0-9/]{0,30}",
        prop::option::of(name()),
        prop_oneof![
            Just(Outcome::Success),
            Just(Outcome::Failure),
            Just(Outcome::Denied)
        ],
    )
        .prop_map(
            |(index, time, actor, action, resource, subject, outcome)| AuditEntry {
                index,
                event: AuditEvent {
                    time,
                    actor,
                    action,
                    resource,
                    subject,
                    outcome,
                },
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn entries_round_trip_in_binary_and_json(e in entry()) {
        let bytes = e.encode().unwrap();
        prop_assert_eq!(&AuditEntry::decode(&bytes).unwrap(), &e);
        let json = serde_json::to_string(&e).unwrap();
        prop_assert_eq!(&serde_json::from_str::<AuditEntry>(&json).unwrap(), &e);
        // Any extra byte, and any shorter prefix, is refused.
        let mut longer = bytes.clone();
        longer.push(0);
        prop_assert!(AuditEntry::decode(&longer).is_err());
        for len in 0..bytes.len() {
            prop_assert!(AuditEntry::decode(&bytes[..len]).is_err());
        }
    }

    /// Whatever decodes re-encodes to the same bytes: one encoding per entry, so one leaf hash.
    /// And no input panics the decoder.
    #[test]
    fn decoding_is_canonical_and_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(e) = AuditEntry::decode(&bytes) {
            prop_assert_eq!(e.encode().unwrap(), bytes);
        }
    }

    /// Single-byte changes of valid encodings: canonical whenever they still decode.
    #[test]
    fn mutated_entries_are_canonical_or_refused(e in entry(), at: prop::sample::Index, byte: u8) {
        let mut bytes = e.encode().unwrap();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        if let Ok(decoded) = AuditEntry::decode(&bytes) {
            prop_assert_eq!(decoded.encode().unwrap(), bytes);
        }
    }
}

fn sample() -> AuditEntry {
    AuditEntry {
        index: 5,
        event: AuditEvent::new(1, "staff-1", Action::SubjectErased, "customers/42")
            .with_subject("cus_42"),
    }
}

#[test]
fn non_canonical_and_unknown_forms_are_refused() {
    let good = sample().encode().unwrap();
    let refuse = |bytes: &[u8], want: &str| {
        let err = AuditEntry::decode(bytes).unwrap_err();
        assert!(matches!(err, AuditError::MalformedEntry { .. }), "{err}");
        assert!(err.to_string().contains(want), "{err}");
    };
    let mut version = good.clone();
    version[0] = 2;
    refuse(&version, "unknown version");
    // Layout: version 1, index 8, time 8, actor (2 + 7), action tag at 26.
    let mut tag = good.clone();
    tag[26] = 0x7f;
    refuse(&tag, "unknown action tag");
    let mut presence = good.clone();
    let subject_flag = 27 + 2 + "customers/42".len();
    assert_eq!(presence[subject_flag], 1);
    presence[subject_flag] = 2;
    refuse(&presence, "other than 0 or 1");
    let mut outcome = good.clone();
    *outcome.last_mut().unwrap() = 3;
    refuse(&outcome, "unknown outcome");
    let mut utf8 = good.clone();
    utf8[19] = 0xff; // first byte of the actor
    refuse(&utf8, "not UTF-8");
    let mut control = good.clone();
    control[19] = b'\n';
    refuse(&control, "control character");
    let mut empty_actor = vec![1];
    empty_actor.extend_from_slice(&[0; 16]);
    empty_actor.extend_from_slice(&[0, 0]);
    refuse(&empty_actor, "empty string");
    let mut trailing = good.clone();
    trailing.push(0);
    refuse(&trailing, "trailing bytes");
}

#[test]
fn events_past_the_limits_are_refused_before_storing() {
    let check = |e: AuditEvent, field: &str| {
        let entry = AuditEntry { index: 0, event: e };
        match entry.encode() {
            Err(AuditError::InvalidField { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{other:?}"),
        }
    };
    let long = "x".repeat(MAX_NAME_LEN + 1);
    check(
        AuditEvent::new(0, long.clone(), Action::MfaFailed, ""),
        "actor",
    );
    check(AuditEvent::new(0, "a\nb", Action::MfaFailed, ""), "actor");
    check(
        AuditEvent::new(0, "a", Action::MfaFailed, "r".repeat(MAX_RESOURCE_LEN + 1)),
        "resource",
    );
    check(
        AuditEvent::new(0, "a", Action::MfaFailed, "").with_subject(""),
        "subject",
    );
    check(
        AuditEvent::new(0, "a", Action::FieldsRevealed { fields: vec![] }, ""),
        "fields",
    );
    check(
        AuditEvent::new(
            0,
            "a",
            Action::FieldsRevealed {
                fields: vec!["f".into(); MAX_FIELDS + 1],
            },
            "",
        ),
        "fields",
    );
    check(
        AuditEvent::new(
            0,
            "a",
            Action::AccessDecision {
                decision: Decision::Allow,
                rule: Some(long),
                policy_digest: Hash::digest(b""),
            },
            "",
        ),
        "rule",
    );
    // At the limits they are accepted.
    let at_limit = AuditEvent::new(
        0,
        "a".repeat(MAX_NAME_LEN),
        Action::MfaFailed,
        "r".repeat(MAX_RESOURCE_LEN),
    );
    let entry = AuditEntry {
        index: u64::MAX,
        event: at_limit,
    };
    assert_eq!(AuditEntry::decode(&entry.encode().unwrap()).unwrap(), entry);
}
