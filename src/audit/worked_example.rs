//! Checks the worked example in docs/AUDIT.md byte for byte, so the document cannot drift from
//! the code.

use data_encoding::HEXLOWER;

use super::{
    Action, AuditEvent, AuditLog, CheckpointSigner, MemoryAuditStore, SignedCheckpoint,
    verify_receipt,
};
use crate::secret::SecretKey;

const AUDIT_MD: &str = include_str!("../../docs/AUDIT.md");

/// The contents of the fenced block that starts with "```text <tag>\n".
fn block(tag: &str) -> &'static str {
    AUDIT_MD
        .split(&format!("```text {tag}\n"))
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap()
}

/// The value of `name: ...` in the worked-example block; indented lines continue it.
fn doc_value(name: &str) -> String {
    let prefix = format!("{name}:");
    let mut lines = block("worked-example")
        .lines()
        .skip_while(|l| !l.starts_with(&prefix));
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("`{name}` missing from AUDIT.md"));
    let mut value = first[prefix.len()..].to_owned();
    for line in lines.take_while(|l| l.starts_with("  ")) {
        value.push_str(line);
    }
    value.trim().to_owned()
}

fn hex(name: &str) -> String {
    doc_value(name).split_whitespace().collect()
}

#[test]
fn audit_md_worked_example_matches_the_code() {
    let seed: [u8; 32] = HEXLOWER
        .decode(hex("seed").as_bytes())
        .unwrap()
        .try_into()
        .unwrap();
    let signer =
        CheckpointSigner::from_secret("shop.example/audit", &SecretKey::from_bytes(seed)).unwrap();
    let log = AuditLog::new(MemoryAuditStore::new());
    log.append(
        AuditEvent::new(
            1_700_000_000,
            "staff-7",
            Action::FieldsRevealed {
                fields: vec!["email".into(), "phone".into()],
            },
            "customers/42",
        )
        .with_subject("cus_42"),
    )
    .unwrap();
    log.append(
        AuditEvent::new(
            1_700_000_060,
            "dpo-1",
            Action::SubjectErased,
            "customers/42",
        )
        .with_subject("cus_42"),
    )
    .unwrap();

    let entries = log.entries(0..2).unwrap();
    for entry in &entries {
        let i = entry.index;
        assert_eq!(
            HEXLOWER.encode(&entry.encode().unwrap()),
            hex(&format!("entry {i}"))
        );
        assert_eq!(
            entry.leaf_hash().unwrap().to_string(),
            hex(&format!("leaf {i}"))
        );
    }
    assert_eq!(log.root(2).unwrap().to_string(), hex("root"));
    let proof = log.inclusion_proof(1, 2).unwrap();
    assert_eq!(proof.hashes.len(), 1);
    assert_eq!(
        proof.hashes[0].to_string(),
        hex("inclusion proof of entry 1 in size 2")
    );
    assert_eq!(signer.verifier().verifier_key(), doc_value("verifier key"));

    let checkpoint = log.checkpoint(&signer, 1_700_000_100).unwrap();
    assert_eq!(checkpoint.as_str(), block("worked-example-checkpoint"));
    let verifier =
        super::CheckpointVerifier::from_verifier_key(&doc_value("verifier key")).unwrap();
    let from_doc = SignedCheckpoint::from_text(block("worked-example-checkpoint"));
    assert_eq!(
        verifier
            .verify(&from_doc, 1_700_000_100)
            .unwrap()
            .tree_size(),
        2
    );
    let receipt = log.erasure_receipt(1, &signer, 1_700_000_100).unwrap();
    verify_receipt(&receipt, &verifier, 1_700_000_100).unwrap();
}
