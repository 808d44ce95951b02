//! Fuzz body: arbitrary bytes into the audit log's two parsers, the binary entry decoder and the
//! signed-checkpoint verifier (with the verifier-key parser alongside).
//!
//! Input layout: byte 0 selects the parser; the rest is its input.
//! - even: an encoded entry. Nothing may panic; whatever decodes must re-encode to exactly the
//!   input (one encoding per entry).
//! - odd: checkpoint text, checked with the key of the worked example in docs/AUDIT.md (seed
//!   0x00..0x1f, origin `shop.example/audit`). Nothing may panic; whatever verifies must start with
//!   the text this code signs for the same size, root and time.

use custodian::audit::{AuditEntry, CheckpointSigner, CheckpointVerifier};
use custodian::SecretKey;
use std::sync::OnceLock;

fn signer() -> &'static CheckpointSigner {
    static SIGNER: OnceLock<CheckpointSigner> = OnceLock::new();
    SIGNER.get_or_init(|| {
        let seed: [u8; 32] = core::array::from_fn(|i| i as u8);
        CheckpointSigner::from_secret("shop.example/audit", &SecretKey::from_bytes(seed)).unwrap()
    })
}

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok(entry) = AuditEntry::decode(rest) {
            assert_eq!(entry.encode().unwrap(), rest, "decoding is not canonical");
        }
        return;
    }
    let text = String::from_utf8_lossy(rest);
    let _ = CheckpointVerifier::from_verifier_key(&text);
    let signer = signer();
    if let Ok(checkpoint) = signer.verifier().verify_text(&text, u64::MAX) {
        let (_, ours) = signer
            .sign(checkpoint.tree_size(), *checkpoint.root(), checkpoint.timestamp())
            .unwrap();
        let body_end = ours.as_str().find("\n\n").unwrap() + 2;
        assert!(
            text.starts_with(&ours.as_str()[..body_end]),
            "a verified checkpoint is not in the canonical form"
        );
    }
}
