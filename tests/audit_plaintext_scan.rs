//! Nothing secret reaches the audit log: a whole flow through the public API (seal, reveal, a
//! denial, MFA enrollment, confirmation, login, failures, a replay, a recovery code, rotation,
//! erasure) records into one store, then every stored entry (the binary form and the JSON-lines
//! export) is scanned for every plaintext, masked value, OTP secret, OTP code, recovery code and
//! key this test can reach. A self-check plants values and makes sure the scan finds them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use custodian::audit::{
    Action, AuditEvent, AuditLog, AuditStore, CheckpointSigner, Decision, Hash, MemoryAuditStore,
};
use custodian::envelope::{Kek, KeyId, StaticKek};
use custodian::keys::{LocalRootKey, MemoryKeyStore};
use custodian::mfa::{
    MemoryFactorStore, MfaService, OtpSecret, RecoveryCodeSet, StepUp, TotpKey, TotpParams,
    Verifier,
};
use custodian::rbac::{Justification, Policy, Principal, Resource};
use custodian::{
    Custodian, EncryptionContext, RevealRequest, SealedRecord, SecretBytes, SecretKey,
};
use data_encoding::{BASE32, BASE32_NOPAD, BASE64, HEXLOWER, HEXUPPER};
use std::sync::Arc;

const NOW: u64 = 1_750_000_000;
/// The MFA flow happens a little before the facade's clock, so that its step-up is fresh then.
const MFA_T: u64 = NOW - 200;

/// One thing that must never be in the log, under a label for the failure message.
struct Needle {
    label: String,
    bytes: Vec<u8>,
}

#[derive(Default)]
struct Needles(Vec<Needle>);

impl Needles {
    fn text(&mut self, label: &str, text: &str) {
        self.0.push(Needle {
            label: label.to_owned(),
            bytes: text.as_bytes().to_vec(),
        });
    }

    /// Raw bytes and every text form a log could carry them in.
    fn key(&mut self, label: &str, bytes: &[u8]) {
        self.0.push(Needle {
            label: format!("{label} (raw)"),
            bytes: bytes.to_vec(),
        });
        for (form, text) in [
            ("hex", HEXLOWER.encode(bytes)),
            ("HEX", HEXUPPER.encode(bytes)),
            ("base64", BASE64.encode(bytes)),
            ("base32", BASE32_NOPAD.encode(bytes)),
        ] {
            self.text(&format!("{label} ({form})"), &text);
        }
    }
}

/// Every (needle, place) found in the entries and the export.
fn scan(entries: &[Vec<u8>], export: &str, needles: &Needles) -> Vec<String> {
    let mut found = Vec::new();
    for needle in &needles.0 {
        assert!(
            needle.bytes.len() >= 5,
            "needle `{}` too short to scan for",
            needle.label
        );
        for (index, entry) in entries.iter().enumerate() {
            if contains(entry, &needle.bytes) {
                found.push(format!("{} in binary entry {index}", needle.label));
            }
        }
        if contains(export.as_bytes(), &needle.bytes) {
            found.push(format!("{} in the JSON-lines export", needle.label));
        }
    }
    found
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn dump(log: &AuditLog<Arc<dyn AuditStore>>) -> (Vec<Vec<u8>>, String) {
    let size = log.tree_size().unwrap();
    (
        log.store_entries(0..size).unwrap(),
        log.export_json_lines(0..size).unwrap(),
    )
}

fn shop_policy() -> Policy {
    Policy::from_path(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/policies/shop.toml"
    ))
    .unwrap()
}

struct Customer {
    id: &'static str,
    subject: &'static str,
    fields: [(&'static str, &'static str); 4],
}

const CUSTOMERS: [Customer; 2] = [
    Customer {
        id: "42",
        subject: "cus_42",
        fields: [
            ("name", "Jane Quartermaine"),
            ("email", "jane.quartermaine@example.org"),
            ("phone", "+44 7700 900123"),
            ("address", "12 Harbour Street, Portsmouth"),
        ],
    },
    Customer {
        id: "43",
        subject: "cus_43",
        fields: [
            ("name", "Olufemi Brightwater"),
            ("email", "o.brightwater@example.net"),
            ("phone", "+33 6 12 34 56 78"),
            ("address", "7 Rue des Lilas, Lyon"),
        ],
    },
];

#[test]
fn no_plaintext_secret_code_or_key_reaches_the_audit_log() {
    let mut needles = Needles::default();
    // One store for everything: the key store's own audit log, which key operations and erasures
    // write in their own transaction, also takes the reveals and the MFA outcomes.
    let key_store = Arc::new(MemoryKeyStore::new());
    let store: Arc<dyn AuditStore> = key_store.clone();

    // Keys this test knows the bytes of.
    let root_bytes = [0x5a; 32];
    needles.key("root key", &root_bytes);
    let custodian = Custodian::builder()
        .with_store(key_store)
        .root_key(LocalRootKey::new(&SecretKey::from_bytes(root_bytes)))
        .clock(|| NOW)
        .audit_store(Arc::clone(&store))
        .build()
        .unwrap();
    let kek_bytes = [0x6b; 32];
    needles.key("MFA seed KEK", &kek_bytes);
    let kek: Arc<dyn Kek> = Arc::new(StaticKek::new(
        KeyId::new("mfa-seeds", 1).unwrap(),
        &SecretKey::from_bytes(kek_bytes),
    ));
    let state_key = custodian
        .keys()
        .derive_key("customers", 1, MfaService::STATE_KEY_INFO, NOW)
        .unwrap();
    needles.key("MFA state key", state_key.expose_secret());
    let signer_seed = [0x7c; 32];
    needles.key("checkpoint signing seed", &signer_seed);
    let signer =
        CheckpointSigner::from_secret("scan.example/audit", &SecretKey::from_bytes(signer_seed))
            .unwrap();

    // Seal and reveal customer records.
    let policy = shop_policy();
    let agent = Principal::new("emp-17", "store-3").with_role("support");
    let packer = Principal::new("emp-40", "store-3").with_role("fulfillment");
    for customer in &CUSTOMERS {
        let contexts: Vec<EncryptionContext> = customer
            .fields
            .iter()
            .map(|(field, _)| {
                EncryptionContext::for_field("customers", customer.id, *field).unwrap()
            })
            .collect();
        let items: Vec<(&EncryptionContext, &[u8])> = contexts
            .iter()
            .zip(&customer.fields)
            .map(|(context, (_, value))| (context, value.as_bytes()))
            .collect();
        let sealed = custodian.encrypt_many(customer.subject, &items).unwrap();
        let record = customer.fields.iter().zip(&sealed).fold(
            SealedRecord::new("customers"),
            |record, ((field, _), bytes)| record.field(*field, bytes.as_slice()),
        );
        let resource = Resource::new("customer", customer.id, "store-3");
        let masked = custodian
            .reveal(
                &policy,
                &RevealRequest::new(&agent, "view", &resource),
                &record,
            )
            .unwrap();
        for field in masked.fields() {
            needles.text(
                &format!("shown value of {}", field.name()),
                field.expose_secret(),
            );
        }
        let ticket = RevealRequest::new(&agent, "view", &resource)
            .with_justification(Justification::ticket("SUP-5521").naming("customer", customer.id));
        let full = custodian.reveal(&policy, &ticket, &record).unwrap();
        assert_eq!(full.fields().len(), 4);
        for (field, value) in &customer.fields {
            assert_eq!(full.field(field).unwrap().expose_secret(), *value);
            needles.text(&format!("plaintext {}.{field}", customer.id), value);
        }
        custodian
            .reveal(
                &policy,
                &RevealRequest::new(&packer, "view", &resource),
                &record,
            )
            .unwrap_err();
    }
    // The reveal results themselves carry the plaintext: the scan must look at the log only.

    // MFA with a known seed: enroll, confirm, log in, fail, replay, recovery code.
    let seed = b"scan-test seed 0123456789".to_vec();
    let otp_secret = OtpSecret::from_bytes(SecretBytes::new(seed.clone())).unwrap();
    needles.key("OTP seed", &seed);
    needles.text("OTP seed (base32, padded)", &BASE32.encode(&seed));
    needles.text(
        "OTP seed (base32 as shown)",
        otp_secret.to_base32().expose_secret(),
    );
    let key = || {
        TotpKey::new(
            OtpSecret::from_bytes(SecretBytes::new(seed.clone())).unwrap(),
            TotpParams::PORTABLE,
        )
    };
    let code_at = |now: u64| key().code_at(now).unwrap().expose_secret().to_owned();
    let mfa = MfaService::new(MemoryFactorStore::new(), kek, state_key)
        .with_audit(Arc::clone(custodian.audit().store()));
    let verifier = Verifier::default();
    mfa.begin_enrollment(&verifier, "emp-17", "phone", key(), MFA_T, None)
        .unwrap();
    let codes = [code_at(MFA_T), code_at(MFA_T + 60)];
    mfa.confirm_enrollment(&verifier, "emp-17", "phone", &codes[0], MFA_T)
        .unwrap();
    let login: StepUp = mfa
        .verify(&verifier, "emp-17", "phone", &codes[1], MFA_T + 60)
        .unwrap();
    mfa.verify(&verifier, "emp-17", "phone", &codes[1], MFA_T + 61)
        .unwrap_err(); // replay
    let wrong = "913370";
    mfa.verify(&verifier, "emp-17", "phone", wrong, MFA_T + 62)
        .unwrap_err();
    let (set, recovery) = RecoveryCodeSet::generate("emp-17").unwrap();
    mfa.replace_recovery_codes(&set).unwrap();
    mfa.use_recovery_code("emp-17", recovery[0].expose_secret(), MFA_T + 90)
        .unwrap();
    mfa.use_recovery_code("emp-17", "wxyz-0000-wrong", MFA_T + 91)
        .unwrap_err();
    mfa.admin_reset("emp-01", "emp-17", "phone", MFA_T + 95)
        .unwrap();
    // The typed codes are 6 digits: make sure none can turn up by accident in a number the log
    // holds (a time, an index), so that a hit below means a leak.
    for code in codes.iter().map(String::as_str).chain([wrong]) {
        for number in [
            NOW,
            MFA_T,
            MFA_T + 60,
            MFA_T + 61,
            MFA_T + 62,
            MFA_T + 90,
            MFA_T + 91,
            MFA_T + 95,
        ] {
            assert!(
                !number.to_string().contains(code),
                "choose another MFA_T: code {code} is part of time {number}"
            );
        }
        needles.text("a typed OTP code", code);
    }
    for (i, code) in recovery.iter().enumerate() {
        needles.text(&format!("recovery code {i}"), code.expose_secret());
        needles.text(
            &format!("recovery code {i} without dashes"),
            &code.expose_secret().replace('-', ""),
        );
    }
    for (i, hash) in set.entries().iter().enumerate() {
        needles.key(&format!("recovery code hash {i}"), &hash.to_bytes());
    }

    // A step-up-gated reveal with the login's step-up (cards need MFA).
    let clerk = Principal::new("emp-17", "store-3").with_role("finance");
    let card_number = "4929 1234 5678 9012";
    needles.text("card number", card_number);
    needles.text("card number without spaces", &card_number.replace(' ', ""));
    let card_context = EncryptionContext::for_field("cards", "card-9", "number").unwrap();
    let card = custodian
        .encrypt("cus_42", &card_context, card_number.as_bytes())
        .unwrap();
    let card_resource = Resource::new("payment_card", "card-9", "store-3");
    let shown = custodian
        .reveal(
            &policy,
            &RevealRequest::new(&clerk, "view", &card_resource).with_step_up(&login),
            &SealedRecord::new("cards").field("number", &card),
        )
        .unwrap();
    assert_eq!(shown.field("number").unwrap().expose_secret(), card_number);

    // Rotation and erasure, recorded by the key store in the same log.
    custodian.rotate().unwrap();
    custodian.rotate_index_keys().unwrap();
    custodian.erase_subject("cus_43").unwrap();
    for (ring, version) in [
        ("customers", 1),
        ("customers", 2),
        ("blind-index", 1),
        ("blind-index", 2),
    ] {
        let derived = custodian
            .keys()
            .derive_key(ring, version, b"custodian/test/scan", NOW)
            .unwrap();
        needles.key(
            &format!("key derived from {ring} v{version}"),
            derived.expose_secret(),
        );
    }
    let _checkpoint = custodian.audit().checkpoint(&signer, NOW + 100).unwrap();

    let (entries, export) = dump(custodian.audit());
    let actions: Vec<Action> = entries
        .iter()
        .map(|bytes| {
            custodian::audit::AuditEntry::decode(bytes)
                .unwrap()
                .event
                .action
        })
        .collect();
    for expected in [
        Action::SubjectErased,
        Action::KeyRingRotated { version: 2 },
        Action::RecoveryCodeUsed,
        Action::MfaVerified,
    ] {
        assert!(
            actions.contains(&expected),
            "{expected:?} missing: {actions:?}"
        );
    }
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::FieldsRevealed { .. }))
    );
    assert!(
        entries.len() >= 2 * 5 + 1 + 6,
        "the flow recorded too little to be a test: {} entries",
        entries.len()
    );
    assert_eq!(export.lines().count(), entries.len());
    let leaks = scan(&entries, &export, &needles);
    assert!(leaks.is_empty(), "found in the audit log: {leaks:#?}");

    // Self-check: the same scan over a log with planted values finds each of them.
    let planted: Arc<dyn AuditStore> = Arc::new(MemoryAuditStore::new());
    let planted_log = AuditLog::new(Arc::clone(&planted));
    for bytes in &entries {
        let entry = custodian::audit::AuditEntry::decode(bytes).unwrap();
        planted_log.append(entry.event).unwrap();
    }
    planted_log
        .append(AuditEvent::new(
            NOW,
            "emp-17",
            Action::FieldsRevealed {
                fields: vec![CUSTOMERS[1].fields[0].1.into()],
            },
            format!("customers/{}", codes[1]),
        ))
        .unwrap();
    planted_log
        .append(
            AuditEvent::new(
                NOW,
                "emp-17",
                Action::AccessDecision {
                    decision: Decision::Allow,
                    rule: Some(otp_secret.to_base32().expose_secret().to_owned()),
                    policy_digest: Hash::from_bytes(root_bytes),
                },
                "customers/42",
            )
            .with_subject(recovery[1].expose_secret()),
        )
        .unwrap();
    let (planted_entries, planted_export) = dump(&planted_log);
    let found = scan(&planted_entries, &planted_export, &needles);
    for expected in [
        "plaintext 43.name in binary entry",
        "plaintext 43.name in the JSON-lines export",
        "a typed OTP code in binary entry",
        "a typed OTP code in the JSON-lines export",
        "OTP seed (base32 as shown) in binary entry",
        "OTP seed (base32 as shown) in the JSON-lines export",
        "root key (raw) in binary entry",
        "root key (hex) in the JSON-lines export",
        "recovery code 1 in binary entry",
        "recovery code 1 in the JSON-lines export",
    ] {
        assert!(
            found.iter().any(|hit| hit.starts_with(expected)),
            "the scan missed a planted `{expected}`: {found:#?}"
        );
    }
}
