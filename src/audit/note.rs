//! The C2SP signed-note text form (c2sp.org/signed-note), Ed25519 only.
//!
//! ```text
//! <text, one or more lines, each ending in a newline>
//! <blank line>
//! — <key name> <base64(4-byte key id || 64-byte signature)>
//! ```
//!
//! Parsing is strict and bounded: at most [`MAX_NOTE_LEN`] bytes and [`MAX_SIGNATURES`] signature
//! lines, UTF-8 without control characters other than newline. Signatures from unknown keys are
//! ignored, as the specification requires; a bad signature from the expected key rejects the note.

use data_encoding::BASE64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::error::{AuditError, excerpt};

/// The signature type byte of Ed25519 in signed notes.
pub(crate) const ED25519_TYPE: u8 = 0x01;
/// The most signature lines a note may carry (the specification asks verifiers to accept 16).
pub const MAX_SIGNATURES: usize = 16;
/// The most bytes a note may have: enough for a checkpoint and 16 signatures.
pub const MAX_NOTE_LEN: usize = 8 * 1024;
/// The em dash that starts every signature line, followed by a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// `SHA-256(name || 0x0A || 0x01 || public key)[:4]`: which key signed, in a signature line.
pub(crate) fn key_id(name: &str, public_key: &VerifyingKey) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([b'\n', ED25519_TYPE]);
    hasher.update(public_key.as_bytes());
    let digest: [u8; 32] = hasher.finalize().into();
    let [a, b, c, d, ..] = digest;
    [a, b, c, d]
}

/// A key name: non-empty, no Unicode space, no `+` (which separates the parts of a verifier key).
pub(crate) fn check_key_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("the key name is empty");
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c == '+' || c.is_control())
    {
        return Err("the key name contains a space, a control character or `+`");
    }
    Ok(())
}

/// Signs `text` (which ends in a newline) and returns the whole note.
pub(crate) fn sign(text: &str, name: &str, key: &SigningKey, key_id: [u8; 4]) -> String {
    let signature = key.sign(text.as_bytes()).to_bytes();
    let mut blob = Vec::with_capacity(4 + signature.len());
    blob.extend_from_slice(&key_id);
    blob.extend_from_slice(&signature);
    format!(
        "{text}\n{SIGNATURE_PREFIX}{name} {}\n",
        BASE64.encode(&blob)
    )
}

/// Checks the form of `note`, then its signature by (`name`, `key_id`, `key`); returns the signed
/// text (ending in a newline) only if that signature verifies.
pub(crate) fn open<'a>(
    note: &'a str,
    name: &str,
    key_id: [u8; 4],
    key: &VerifyingKey,
) -> Result<&'a str, AuditError> {
    let malformed = |line, reason| AuditError::MalformedCheckpoint { line, reason };
    if note.len() > MAX_NOTE_LEN {
        return Err(malformed(0, "longer than 8 KiB"));
    }
    if let Some(at) = note.find(|c: char| c.is_control() && c != '\n') {
        return Err(malformed(
            line_of(note, at),
            "a control character other than newline",
        ));
    }
    if !note.ends_with('\n') {
        return Err(malformed(0, "the note does not end with a newline"));
    }
    // The text ends at the last blank line; the signature lines follow it.
    let split = note
        .rfind("\n\n")
        .ok_or_else(|| malformed(0, "no blank line before the signatures"))?;
    let (text, signatures) = note.split_at(split + 1);
    let signatures = signatures.strip_prefix('\n').unwrap_or(signatures);
    let first_signature_line = line_of(note, split + 2);

    let lines: Vec<&str> = signatures
        .strip_suffix('\n')
        .unwrap_or(signatures)
        .split('\n')
        .collect();
    if lines.len() > MAX_SIGNATURES {
        return Err(AuditError::TooManySignatures {
            max: MAX_SIGNATURES,
        });
    }
    let mut verified = false;
    for (i, line) in lines.iter().enumerate() {
        let number = first_signature_line + i;
        let rest = line
            .strip_prefix(SIGNATURE_PREFIX)
            .ok_or_else(|| malformed(number, "a signature line must start with `— `"))?;
        let (line_name, encoded) = rest.split_once(' ').ok_or_else(|| {
            malformed(number, "a signature line needs a key name and a signature")
        })?;
        check_key_name(line_name).map_err(|reason| malformed(number, reason))?;
        let blob = BASE64
            .decode(encoded.as_bytes())
            .map_err(|_| malformed(number, "the signature is not standard base64"))?;
        let (id, signature) = blob
            .split_first_chunk::<4>()
            .ok_or_else(|| malformed(number, "the signature is shorter than its 4-byte key id"))?;
        if line_name != name || *id != key_id {
            continue; // Another key's signature (a witness, a rotated key): ignored.
        }
        let bad = || AuditError::BadSignature {
            name: excerpt(name),
        };
        let signature: &[u8; 64] = signature.try_into().map_err(|_| bad())?;
        key.verify_strict(text.as_bytes(), &Signature::from_bytes(signature))
            .map_err(|_| bad())?;
        verified = true;
    }
    if !verified {
        return Err(AuditError::SignatureMissing {
            name: excerpt(name),
            key_id: data_encoding::HEXLOWER.encode(&key_id),
        });
    }
    Ok(text)
}

/// The 1-based line number of byte `at`.
fn line_of(text: &str, at: usize) -> usize {
    1 + text
        .as_bytes()
        .iter()
        .take(at)
        .filter(|&&b| b == b'\n')
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::CheckpointVerifier;

    // golang.org/x/mod/sumdb/note: the example key and note of its documentation, a published
    // known answer for the signed-note format (Ed25519 signatures are deterministic).
    const GO_SKEY_SEED: &str = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"; // 0x01 || seed
    const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const GO_NOTE: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    // c2sp.org/signed-note, "Verifier keys", "Example".
    const SPEC_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
    const SPEC_NOTE: &str = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

    fn go_key() -> SigningKey {
        let bytes = BASE64.decode(GO_SKEY_SEED.as_bytes()).unwrap();
        assert_eq!(bytes[0], ED25519_TYPE);
        SigningKey::from_bytes(&bytes[1..].try_into().unwrap())
    }

    #[test]
    fn signing_reproduces_the_go_reference_note() {
        let key = go_key();
        let id = key_id("PeterNeumann", &key.verifying_key());
        assert_eq!(id, [0xc7, 0x4f, 0x20, 0xa3]);
        assert_eq!(sign(GO_TEXT, "PeterNeumann", &key, id), GO_NOTE);
    }

    #[test]
    fn published_notes_open_with_their_verifier_keys() {
        for (vkey, note, text) in [
            (GO_VKEY, GO_NOTE, GO_TEXT),
            (SPEC_VKEY, SPEC_NOTE, "This is an example message.\n"),
        ] {
            let verifier = CheckpointVerifier::from_verifier_key(vkey).unwrap();
            assert_eq!(verifier.verifier_key(), vkey);
            let opened = open(
                note,
                verifier.origin(),
                verifier.key_id(),
                verifier.public_key(),
            );
            assert_eq!(opened.unwrap(), text);
            // One changed byte of the text and the signature no longer verifies.
            let tampered = note.replacen('e', "E", 1);
            assert!(matches!(
                open(
                    &tampered,
                    verifier.origin(),
                    verifier.key_id(),
                    verifier.public_key()
                ),
                Err(AuditError::BadSignature { .. })
            ));
        }
    }

    #[test]
    fn unknown_keys_are_ignored_and_one_known_signature_is_needed() {
        let verifier = CheckpointVerifier::from_verifier_key(GO_VKEY).unwrap();
        let (name, id, key) = (verifier.origin(), verifier.key_id(), verifier.public_key());
        // A witness's signature next to ours is ignored.
        let other = format!("{GO_NOTE}\u{2014} witness.example AAAAAAAA\n");
        assert_eq!(open(&other, name, id, key).unwrap(), GO_TEXT);
        // Only another key's signature: refused.
        let only_other = format!("{GO_TEXT}\n\u{2014} witness.example AAAAAAAA\n");
        assert!(matches!(
            open(&only_other, name, id, key),
            Err(AuditError::SignatureMissing { .. })
        ));
        // Our name and id with a short signature: a bad signature, not an ignored one.
        let short = format!("{GO_TEXT}\n\u{2014} PeterNeumann x08go/ZJ\n");
        assert!(matches!(
            open(&short, name, id, key),
            Err(AuditError::BadSignature { .. })
        ));
        // Seventeen signature lines are too many, even if one is good.
        let mut many = GO_NOTE.to_owned();
        for _ in 0..MAX_SIGNATURES {
            many.push_str("\u{2014} witness.example AAAAAAAA\n");
        }
        assert!(matches!(
            open(&many, name, id, key),
            Err(AuditError::TooManySignatures { .. })
        ));
    }

    #[test]
    fn malformed_notes_are_refused() {
        let verifier = CheckpointVerifier::from_verifier_key(GO_VKEY).unwrap();
        let (name, id, key) = (verifier.origin(), verifier.key_id(), verifier.public_key());
        let cases = [
            GO_NOTE.trim_end().to_owned(),
            GO_NOTE.replace("\n\n", "\n"),
            GO_NOTE.replace('\u{2014}', "-"),
            GO_NOTE.replace("problem,", "problem,\r"),
            GO_NOTE.replace("PeterNeumann x08", "PeterNeumann  x08"),
            GO_NOTE.replace("AM=", "AM"),
            String::new(),
            "\n\n".to_owned(),
            "x".repeat(MAX_NOTE_LEN + 1),
        ];
        for case in cases {
            assert!(open(&case, name, id, key).is_err(), "{case:?}");
        }
    }
}
