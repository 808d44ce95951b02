//! `Custodian::reveal`: access check, field view, decryption of exactly the shown fields, and the
//! audit entries, through the public API and the shipped shop policy.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use custodian::audit::{
    Action, AuditEntry, AuditError, AuditStore, BuildAppend, Decision, Hash, MemoryAuditStore,
    Outcome,
};
use custodian::keys::{LocalRootKey, MemoryKeyStore};
use custodian::mfa::{StepUp, StepUpMethod};
use custodian::rbac::{Justification, Policy, Principal, Reason, Resource, Visibility};
use custodian::{Custodian, EncryptionContext, Error, RevealRequest, SealedRecord};
use std::sync::Arc;

const NOW: u64 = 1_750_000_000;

const NAME: &str = "Jane Doe";
const EMAIL: &str = "jane.doe@example.com";
const PHONE: &str = "+1 (555) 010-4477";
const ADDRESS: &str = "12 Harbour Street, Portsmouth";

fn shop_policy() -> Policy {
    Policy::from_path(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/policies/shop.toml"
    ))
    .unwrap()
}

fn custodian_with(store: Arc<dyn AuditStore>) -> Custodian {
    Custodian::builder()
        .key_store(MemoryKeyStore::new())
        .root_key(LocalRootKey::random().unwrap())
        .clock(|| NOW)
        .audit_store(store)
        .build()
        .unwrap()
}

fn custodian() -> Custodian {
    custodian_with(Arc::new(MemoryAuditStore::new()))
}

fn seal(custodian: &Custodian, table: &str, record: &str, field: &str, value: &str) -> Vec<u8> {
    let context = EncryptionContext::for_field(table, record, field).unwrap();
    custodian
        .encrypt("cus_42", &context, value.as_bytes())
        .unwrap()
}

/// Customer 42's four fields, sealed as the shop stores them.
fn customer_fields(custodian: &Custodian) -> [(&'static str, Vec<u8>); 4] {
    [
        ("name", NAME),
        ("email", EMAIL),
        ("phone", PHONE),
        ("address", ADDRESS),
    ]
    .map(|(field, value)| (field, seal(custodian, "customers", "42", field, value)))
}

fn record<'a>(fields: &'a [(&'static str, Vec<u8>)]) -> SealedRecord<'a> {
    fields
        .iter()
        .fold(SealedRecord::new("customers"), |record, (name, bytes)| {
            record.field(*name, bytes.as_slice())
        })
}

fn support() -> Principal {
    Principal::new("emp-17", "store-3").with_role("support")
}

fn customer_42() -> Resource {
    Resource::new("customer", "42", "store-3")
}

fn all_entries(custodian: &Custodian) -> Vec<AuditEntry> {
    let log = custodian.audit();
    log.entries(0..log.tree_size().unwrap()).unwrap()
}

fn digest(policy: &Policy) -> Hash {
    Hash::from_hex(policy.digest()).unwrap()
}

#[test]
fn allowed_with_a_ticket_shows_every_field_in_full_and_records_it() {
    let (custodian, policy) = (custodian(), shop_policy());
    let fields = customer_fields(&custodian);
    let (agent, customer) = (support(), customer_42());
    let request = RevealRequest::new(&agent, "view", &customer)
        .with_justification(Justification::ticket("SUP-5521").naming("customer", "42"));
    let shown = custodian
        .reveal(&policy, &request, &record(&fields))
        .unwrap();
    let values: Vec<(&str, Visibility, &str)> = shown
        .fields()
        .iter()
        .map(|f| (f.name(), f.visibility(), f.expose_secret()))
        .collect();
    assert_eq!(
        values,
        [
            ("name", Visibility::Full, NAME),
            ("email", Visibility::Full, EMAIL),
            ("phone", Visibility::Full, PHONE),
            ("address", Visibility::Full, ADDRESS),
        ]
    );
    assert_eq!(shown.record(), "customers/42");
    assert_eq!(shown.audit_entries(), 0..2);

    let entries = all_entries(&custodian);
    assert_eq!(entries.len(), 2);
    for entry in &entries {
        assert_eq!(entry.event.time, NOW);
        assert_eq!(entry.event.actor, "emp-17");
        assert_eq!(entry.event.resource, "customers/42");
        assert_eq!(entry.event.subject.as_deref(), Some("cus_42"));
        assert_eq!(entry.event.outcome, Outcome::Success);
    }
    assert_eq!(
        entries[0].event.action,
        Action::AccessDecision {
            decision: Decision::Allow,
            rule: Some("support-views-customers".into()),
            policy_digest: digest(&policy),
        }
    );
    assert_eq!(
        entries[1].event.action,
        Action::FieldsRevealed {
            fields: vec![
                "name".into(),
                "email".into(),
                "phone".into(),
                "address".into()
            ],
        }
    );
}

#[test]
fn masked_fields_are_decrypted_then_masked_and_hidden_ones_are_left_out() {
    let (custodian, policy) = (custodian(), shop_policy());
    let fields = customer_fields(&custodian);
    let (agent, customer) = (support(), customer_42());
    let shown = custodian
        .reveal(
            &policy,
            &RevealRequest::new(&agent, "view", &customer),
            &record(&fields),
        )
        .unwrap();
    assert_eq!(shown.fields().len(), 2);
    let name = shown.field("name").unwrap();
    assert_eq!(
        (name.visibility(), name.expose_secret()),
        (Visibility::Full, NAME)
    );
    let email = shown.field("email").unwrap();
    assert_eq!(
        (email.visibility(), email.expose_secret()),
        (Visibility::Masked, "j***@example.com")
    );
    assert!(shown.field("phone").is_none());
    assert!(shown.field("address").is_none());
    // A masked field was shown in part: it is listed as revealed; hidden ones are not.
    assert_eq!(
        all_entries(&custodian)[1].event.action,
        Action::FieldsRevealed {
            fields: vec!["name".into(), "email".into()],
        }
    );
}

#[test]
fn hidden_fields_are_not_decrypted_at_all() {
    let (custodian, policy) = (custodian(), shop_policy());
    let mut fields = customer_fields(&custodian);
    // Phone and address hold bytes that are no ciphertext at all.
    fields[2].1 = b"garbage, not a ciphertext".to_vec();
    fields[3].1 = vec![0xff; 3];
    let (agent, customer) = (support(), customer_42());
    let shown = custodian
        .reveal(
            &policy,
            &RevealRequest::new(&agent, "view", &customer),
            &record(&fields),
        )
        .unwrap();
    assert_eq!(shown.field("name").unwrap().expose_secret(), NAME);

    // The same record under a view that shows phone and address fails: the garbage would have
    // been noticed had it been opened.
    let with_ticket = RevealRequest::new(&agent, "view", &customer)
        .with_justification(Justification::ticket("SUP-1").naming("customer", "42"));
    let err = custodian
        .reveal(&policy, &with_ticket, &record(&fields))
        .unwrap_err();
    assert!(matches!(err, Error::Keys(_)), "{err}");
    // Nothing was shown by the failed call, so nothing more was recorded.
    assert_eq!(custodian.audit().tree_size().unwrap(), 2);
}

#[test]
fn fields_the_policy_does_not_declare_are_never_opened() {
    let (custodian, policy) = (custodian(), shop_policy());
    let fields = customer_fields(&custodian);
    let (agent, customer) = (support(), customer_42());
    let record = record(&fields).field("notes", b"not even a ciphertext".as_slice());
    let with_ticket = RevealRequest::new(&agent, "view", &customer)
        .with_justification(Justification::ticket("SUP-1").naming("customer", "42"));
    let shown = custodian.reveal(&policy, &with_ticket, &record).unwrap();
    assert_eq!(shown.fields().len(), 4);
    assert!(shown.field("notes").is_none());
}

#[test]
fn denied_writes_the_decision_and_returns_nothing() {
    let (custodian, policy) = (custodian(), shop_policy());
    let fields = customer_fields(&custodian);
    let packer = Principal::new("emp-40", "store-3").with_role("fulfillment");
    let customer = customer_42();
    let err = custodian
        .reveal(
            &policy,
            &RevealRequest::new(&packer, "view", &customer),
            &record(&fields),
        )
        .unwrap_err();
    let denied = err.denied().unwrap();
    assert_eq!(
        denied.reason(),
        Reason::ForbiddenBy {
            rule: "fulfillment-no-customer-pii"
        }
    );
    assert_eq!(denied.step_up_required(), None);
    assert_eq!(denied.audit_entry(), 0);
    assert_eq!(
        err.to_string(),
        "access denied: forbidden by rule `fulfillment-no-customer-pii`"
    );
    let entries = all_entries(&custodian);
    assert_eq!(entries.len(), 1);
    let event = &entries[0].event;
    assert_eq!(
        event.action,
        Action::AccessDecision {
            decision: Decision::Deny,
            rule: Some("fulfillment-no-customer-pii".into()),
            policy_digest: digest(&policy),
        }
    );
    assert_eq!(
        (event.actor.as_str(), event.resource.as_str(), event.outcome),
        ("emp-40", "customers/42", Outcome::Denied)
    );
    assert_eq!(
        event.subject, None,
        "nothing was opened to learn the subject"
    );
}

#[test]
fn another_stores_customer_is_denied_without_a_rule() {
    let (custodian, policy) = (custodian(), shop_policy());
    let fields = customer_fields(&custodian);
    let agent = support();
    let elsewhere = Resource::new("customer", "42", "store-4");
    let err = custodian
        .reveal(
            &policy,
            &RevealRequest::new(&agent, "view", &elsewhere),
            &record(&fields),
        )
        .unwrap_err();
    assert_eq!(err.denied().unwrap().reason(), Reason::NoRuleAllowed);
    assert_eq!(
        all_entries(&custodian)[0].event.action,
        Action::AccessDecision {
            decision: Decision::Deny,
            rule: None,
            policy_digest: digest(&policy),
        }
    );
}

fn card_fields(custodian: &Custodian) -> Vec<(&'static str, Vec<u8>)> {
    [
        ("holder", "JANE DOE"),
        ("number", "4242 4242 4242 4242"),
        ("expiry", "12/29"),
    ]
    .into_iter()
    .map(|(field, value)| (field, seal(custodian, "cards", "card-9", field, value)))
    .collect()
}

fn card_record<'a>(fields: &'a [(&'static str, Vec<u8>)]) -> SealedRecord<'a> {
    fields
        .iter()
        .fold(SealedRecord::new("cards"), |record, (name, bytes)| {
            record.field(*name, bytes.as_slice())
        })
}

#[test]
fn a_decision_that_needs_a_step_up_reveals_nothing_without_a_fresh_one_of_the_principal() {
    let (custodian, policy) = (custodian(), shop_policy());
    let fields = card_fields(&custodian);
    let clerk = Principal::new("emp-82", "store-3").with_role("finance");
    let card = Resource::new("payment_card", "card-9", "store-3").with("customer_id", "cust-42");

    let no_step_up = custodian
        .reveal(
            &policy,
            &RevealRequest::new(&clerk, "view", &card),
            &card_record(&fields),
        )
        .unwrap_err();
    assert_eq!(no_step_up.denied().unwrap().step_up_required(), Some(300));

    // A step-up of someone else does not count, nor does a stale one, nor one from the future.
    let others = StepUp::assume_verified_by_this_server("emp-99", "phone", StepUpMethod::Totp, NOW);
    let stale =
        StepUp::assume_verified_by_this_server("emp-82", "phone", StepUpMethod::Totp, NOW - 301);
    let future =
        StepUp::assume_verified_by_this_server("emp-82", "phone", StepUpMethod::Totp, NOW + 10);
    for step_up in [&others, &stale, &future] {
        let request = RevealRequest::new(&clerk, "view", &card).with_step_up(step_up);
        let err = custodian
            .reveal(&policy, &request, &card_record(&fields))
            .unwrap_err();
        assert_eq!(
            err.denied().unwrap().step_up_required(),
            Some(300),
            "{step_up:?}"
        );
    }

    let fresh =
        StepUp::assume_verified_by_this_server("emp-82", "phone", StepUpMethod::Totp, NOW - 60);
    let request = RevealRequest::new(&clerk, "view", &card).with_step_up(&fresh);
    let shown = custodian
        .reveal(&policy, &request, &card_record(&fields))
        .unwrap();
    assert_eq!(
        shown.field("number").unwrap().expose_secret(),
        "4242 4242 4242 4242"
    );

    let entries = all_entries(&custodian);
    assert_eq!(entries.len(), 4 + 2);
    for denial in &entries[..4] {
        assert_eq!(
            denial.event.action,
            Action::AccessDecision {
                decision: Decision::Deny,
                rule: Some("cards-only-after-mfa".into()),
                policy_digest: digest(&policy),
            }
        );
        assert_eq!(denial.event.resource, "cards/card-9");
    }
    assert_eq!(
        entries[5].event.action,
        Action::FieldsRevealed {
            fields: vec!["holder".into(), "number".into(), "expiry".into()],
        }
    );
}

#[test]
fn a_ciphertext_of_another_record_does_not_open_under_this_one() {
    let (custodian, policy) = (custodian(), shop_policy());
    let mut fields = customer_fields(&custodian);
    // Record 43's name, offered as record 42's: the context binds the record id.
    fields[0].1 = seal(&custodian, "customers", "43", "name", "Someone Else");
    let (agent, customer) = (support(), customer_42());
    let err = custodian
        .reveal(
            &policy,
            &RevealRequest::new(&agent, "view", &customer),
            &record(&fields),
        )
        .unwrap_err();
    assert!(matches!(err, Error::Keys(_)), "{err}");
    // Swapping two fields of the same record fails the same way (the context binds the field).
    let mut swapped = customer_fields(&custodian);
    let (name, email) = (swapped[0].1.clone(), swapped[1].1.clone());
    swapped[0].1 = email;
    swapped[1].1 = name;
    assert!(
        custodian
            .reveal(
                &policy,
                &RevealRequest::new(&agent, "view", &customer),
                &record(&swapped),
            )
            .is_err()
    );
    assert_eq!(custodian.audit().tree_size().unwrap(), 0);
}

#[test]
fn a_field_given_twice_is_refused() {
    let (custodian, policy) = (custodian(), shop_policy());
    let fields = customer_fields(&custodian);
    let (agent, customer) = (support(), customer_42());
    let record = record(&fields).field("name", fields[0].1.as_slice());
    let err = custodian
        .reveal(
            &policy,
            &RevealRequest::new(&agent, "view", &customer),
            &record,
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid sealed record: field `name` is given twice"
    );
}

#[test]
fn an_erased_customer_reveals_nothing_and_records_nothing() {
    let (custodian, policy) = (custodian(), shop_policy());
    let fields = customer_fields(&custodian);
    custodian.erase_subject("cus_42").unwrap();
    let before = custodian.audit().tree_size().unwrap();
    let (agent, customer) = (support(), customer_42());
    let err = custodian
        .reveal(
            &policy,
            &RevealRequest::new(&agent, "view", &customer),
            &record(&fields),
        )
        .unwrap_err();
    assert!(err.is_subject_erased(), "{err}");
    assert_eq!(custodian.audit().tree_size().unwrap(), before);
}

#[derive(Debug, Default)]
struct BrokenAuditStore(MemoryAuditStore);

impl AuditStore for BrokenAuditStore {
    fn tree_size(&self) -> Result<u64, AuditError> {
        self.0.tree_size()
    }
    fn append(&self, _: &mut BuildAppend<'_>) -> Result<u64, AuditError> {
        Err(AuditError::Store {
            message: "disk full".into(),
            source: None,
        })
    }
    fn read_entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, AuditError> {
        self.0.read_entries(start, end)
    }
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, AuditError> {
        self.0.read_hashes(indexes)
    }
}

#[test]
fn a_reveal_that_cannot_be_recorded_returns_nothing() {
    let custodian = custodian_with(Arc::new(BrokenAuditStore::default()));
    let policy = shop_policy();
    let fields = customer_fields(&custodian);
    let (agent, customer) = (support(), customer_42());
    let err = custodian
        .reveal(
            &policy,
            &RevealRequest::new(&agent, "view", &customer),
            &record(&fields),
        )
        .unwrap_err();
    assert!(matches!(err, Error::Audit(_)), "{err}");
    assert_eq!(
        err.to_string(),
        "not recorded in the audit log, so refused: audit store: disk full"
    );
    // A denial that cannot be recorded is an audit error too, not a silent denial.
    let packer = Principal::new("emp-40", "store-3").with_role("fulfillment");
    let err = custodian
        .reveal(
            &policy,
            &RevealRequest::new(&packer, "view", &customer),
            &record(&fields),
        )
        .unwrap_err();
    assert!(matches!(err, Error::Audit(_)), "{err}");
}

#[test]
fn the_result_serializes_its_values_and_debug_hides_them() {
    let (custodian, policy) = (custodian(), shop_policy());
    let fields = customer_fields(&custodian);
    let (agent, customer) = (support(), customer_42());
    let shown = custodian
        .reveal(
            &policy,
            &RevealRequest::new(&agent, "view", &customer),
            &record(&fields),
        )
        .unwrap();
    assert_eq!(
        serde_json::to_value(&shown).unwrap(),
        serde_json::json!({
            "record": "customers/42",
            "fields": [
                {"name": "name", "visibility": "full", "value": NAME},
                {"name": "email", "visibility": "masked", "value": "j***@example.com"},
            ],
            "audit_entries": {"start": 0, "end": 2},
        })
    );
    let debug = format!("{shown:?}");
    assert!(!debug.contains(NAME) && !debug.contains("j***"), "{debug}");
    assert!(debug.contains("[REDACTED]"), "{debug}");
    let sealed_debug = format!("{:?}", record(&fields));
    assert_eq!(
        sealed_debug,
        r#"SealedRecord { table: "customers", fields: ["name", "email", "phone", "address"] }"#
    );
}

#[cfg(feature = "sqlite")]
#[test]
fn without_an_audit_store_the_log_is_the_key_stores_own_and_durable() {
    use custodian::audit::{CheckpointVerifier, verify_receipt};
    use custodian::keys::SqliteKeyStore;
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        Custodian::builder()
            .key_store(SqliteKeyStore::open(dir.path().join("keys.db")).unwrap())
            .root_key(LocalRootKey::new(&custodian::SecretKey::from_bytes(
                [7; 32],
            )))
            .audit_origin("shop.example/audit")
            .build()
            .unwrap()
    };
    let custodian = open();
    let size = custodian.audit().tree_size().unwrap();
    let actions: Vec<&str> = custodian
        .audit()
        .entries(0..size)
        .unwrap()
        .iter()
        .map(|e| e.event.action.name())
        .collect();
    assert_eq!(
        actions,
        ["key_ring_created", "key_ring_created"],
        "the key store's own log already holds the two rings the builder created"
    );
    let context = custodian::EncryptionContext::for_field("customers", "42", "email").unwrap();
    custodian
        .seal("cus_42", &context, "jane@example.com")
        .unwrap();
    let erasure = custodian.erase_subject_by("cus_42", "dpo-1").unwrap();
    let receipt = custodian.erasure_receipt(&erasure).unwrap();
    let verifier = CheckpointVerifier::from_verifier_key(
        &custodian.checkpoint_signer().verifier().verifier_key(),
    )
    .unwrap();
    let json = serde_json::to_string(&receipt).unwrap();
    verify_receipt(
        &serde_json::from_str(&json).unwrap(),
        &verifier,
        custodian.now(),
    )
    .unwrap();
    assert_eq!(receipt.entry.event.actor, "dpo-1");

    // Another process opening the same file sees the same log and signs with the same key.
    let size = custodian.audit().tree_size().unwrap();
    drop(custodian);
    let again = open();
    assert_eq!(again.audit().tree_size().unwrap(), size);
    assert_eq!(
        again.checkpoint_signer().verifier().verifier_key(),
        verifier.verifier_key()
    );
    let checkpoint = verifier
        .verify(&again.checkpoint().unwrap(), again.now())
        .unwrap();
    again.audit().verify_against(&checkpoint).unwrap();
}
