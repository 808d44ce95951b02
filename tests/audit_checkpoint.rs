//! Signed checkpoints: the text form, what verification refuses, the secret key's hygiene, and
//! that no bytes make the parser panic.

use custodian::SecretKey;
use custodian::audit::{
    AuditError, CheckpointSigner, CheckpointVerifier, EMPTY_ROOT, Hash, MAX_SIGNATURES,
    SignedCheckpoint,
};
use proptest::prelude::*;

const NOW: u64 = 1_700_000_000;
const ORIGIN: &str = "shop.example/audit";

fn signer() -> CheckpointSigner {
    CheckpointSigner::from_secret(ORIGIN, &SecretKey::from_bytes([42; 32])).unwrap()
}

fn signed(size: u64, root: Hash, time: u64) -> SignedCheckpoint {
    signer().sign(size, root, time).unwrap().1
}

#[test]
fn the_text_form_is_a_c2sp_checkpoint() {
    let root = Hash::digest(b"root");
    let text = signed(7, root, NOW).to_string();
    let lines: Vec<&str> = text.split('\n').collect();
    assert_eq!(lines[0], ORIGIN);
    assert_eq!(lines[1], "7");
    assert_eq!(lines[2], data_encoding::BASE64.encode(root.as_bytes()));
    assert_eq!(lines[3], "timestamp 1700000000");
    assert_eq!(lines[4], "");
    assert!(lines[5].starts_with(&format!("\u{2014} {ORIGIN} ")));
    assert_eq!(lines[6], "");
    assert_eq!(lines.len(), 7);
    // The signature blob starts with the key id of the verifier key.
    let verifier = signer().verifier();
    let vkey = verifier.verifier_key();
    let id_hex = vkey.split('+').nth(1).unwrap();
    let blob = data_encoding::BASE64
        .decode(lines[5].rsplit(' ').next().unwrap().as_bytes())
        .unwrap();
    assert_eq!(blob.len(), 4 + 64);
    assert_eq!(data_encoding::HEXLOWER.encode(&blob[..4]), id_hex);

    let checkpoint = verifier.verify_text(&text, NOW).unwrap();
    assert_eq!(
        (
            checkpoint.origin(),
            checkpoint.tree_size(),
            *checkpoint.root(),
            checkpoint.timestamp()
        ),
        (ORIGIN, 7, root, NOW)
    );
}

#[test]
fn verifier_keys_round_trip_and_bad_ones_are_refused() {
    let verifier = signer().verifier();
    let vkey = verifier.verifier_key();
    assert_eq!(
        CheckpointVerifier::from_verifier_key(&vkey).unwrap(),
        verifier
    );
    assert_eq!(
        CheckpointVerifier::new(ORIGIN, verifier.public_key_bytes()).unwrap(),
        verifier
    );
    let (name, rest) = vkey.split_once('+').unwrap();
    let (id, key) = rest.split_once('+').unwrap();
    let mut zero = vec![0u8];
    zero.extend_from_slice(verifier.public_key_bytes());
    let type_zero = data_encoding::BASE64.encode(&zero);
    let bad = [
        format!("other.example+{id}+{key}"), // the id does not match the name
        format!("{name}+00000000+{key}"),
        format!("{name}+{}+{key}", id.to_uppercase()),
        format!("{name}+{id}"),
        format!("{name}+{id}+{}", &key[1..]),
        format!("{name}+{id}+{}", type_zero), // type byte 0x00 instead of 0x01
        format!("sp ace+{id}+{key}"),
        format!("+{id}+{key}"),
        String::new(),
    ];
    for text in bad {
        assert!(
            CheckpointVerifier::from_verifier_key(&text).is_err(),
            "{text}"
        );
    }
    assert!(CheckpointSigner::from_secret("bad name", &SecretKey::from_bytes([1; 32])).is_err());
    assert!(CheckpointSigner::from_secret("a+b", &SecretKey::from_bytes([1; 32])).is_err());
}

#[test]
fn the_signing_key_never_prints() {
    let signer = CheckpointSigner::from_secret(ORIGIN, &SecretKey::from_bytes([0xAB; 32])).unwrap();
    let shown = format!("{signer:?}");
    let id = signer
        .verifier()
        .verifier_key()
        .split('+')
        .nth(1)
        .unwrap()
        .to_owned();
    assert_eq!(
        shown,
        format!(r#"CheckpointSigner {{ origin: "{ORIGIN}", key_id: "{id}", key: "[REDACTED]" }}"#)
    );
    assert!(!shown.contains("ab, ab") && !shown.contains("171"));
    assert_eq!(signer.expose_secret(), &[0xAB; 32]);
    let fresh = CheckpointSigner::generate(ORIGIN).unwrap();
    assert_ne!(fresh.expose_secret(), signer.expose_secret());
    assert_ne!(fresh.verifier(), signer.verifier());
}

#[test]
fn verification_refusals() {
    let verifier = signer().verifier();
    let good = signed(10, EMPTY_ROOT, NOW);
    verifier.verify(&good, NOW).unwrap();

    // Another log's checkpoint, and a key of another log with our origin.
    let other_log =
        CheckpointSigner::from_secret("other.example/log", &SecretKey::from_bytes([42; 32]))
            .unwrap()
            .sign(10, EMPTY_ROOT, NOW)
            .unwrap()
            .1;
    assert!(matches!(
        verifier.verify(&other_log, NOW),
        Err(AuditError::WrongOrigin { .. })
    ));
    let impostor = CheckpointSigner::from_secret(ORIGIN, &SecretKey::from_bytes([43; 32]))
        .unwrap()
        .sign(10, EMPTY_ROOT, NOW)
        .unwrap()
        .1;
    assert!(matches!(
        verifier.verify(&impostor, NOW),
        Err(AuditError::SignatureMissing { .. })
    ));

    // A changed body with the old signature.
    let text = good.to_string();
    let forged = SignedCheckpoint::from_text(text.replacen("\n10\n", "\n11\n", 1));
    assert!(matches!(
        verifier.verify(&forged, NOW),
        Err(AuditError::BadSignature { .. })
    ));
    let later =
        SignedCheckpoint::from_text(text.replace("timestamp 1700000000", "timestamp 1700000001"));
    assert!(matches!(
        verifier.verify(&later, NOW + 5),
        Err(AuditError::BadSignature { .. })
    ));
    // Every flipped bit of the signature line's base64 is refused.
    let sig_start = text.rfind(' ').unwrap() + 1;
    for at in sig_start..text.len() - 2 {
        let mut bytes = text.clone().into_bytes();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8(bytes).unwrap();
        if changed != text {
            assert!(verifier.verify_text(&changed, NOW).is_err(), "byte {at}");
        }
    }
    // No signature at all.
    let unsigned = &text[..text.find("\n\n").unwrap() + 2];
    assert!(verifier.verify_text(unsigned, NOW).is_err());
    // Too many signature lines.
    let mut crowded = text.clone();
    for _ in 0..MAX_SIGNATURES {
        crowded.push_str("\u{2014} witness.example AAAAAAAA\n");
    }
    assert!(matches!(
        verifier.verify_text(&crowded, NOW),
        Err(AuditError::TooManySignatures { .. })
    ));
    // A timestamp in the future of now.
    assert!(matches!(
        verifier.verify(&signed(10, EMPTY_ROOT, NOW + 1), NOW),
        Err(AuditError::TimestampInFuture { timestamp, now: NOW }) if timestamp == NOW + 1
    ));
}

#[test]
fn malformed_bodies_are_refused_even_when_signed() {
    // Sign arbitrary note texts with the log's key, to reach the body parser.
    let verifier = signer().verifier();
    let root = data_encoding::BASE64.encode(EMPTY_ROOT.as_bytes());
    let bodies = [
        format!("{ORIGIN}\n010\n{root}\ntimestamp 1\n"),
        format!("{ORIGIN}\n+10\n{root}\ntimestamp 1\n"),
        format!("{ORIGIN}\n\n{root}\ntimestamp 1\n"),
        format!("{ORIGIN}\n18446744073709551615\n{root}\ntimestamp 1\n"),
        format!("{ORIGIN}\n10\n{}\ntimestamp 1\n", &root[..40]),
        format!("{ORIGIN}\n10\n{root}\n"),
        format!("{ORIGIN}\n10\n{root}\ntimestamp 01\n"),
        format!("{ORIGIN}\n10\n{root}\ntime 1\n"),
        format!("{ORIGIN}\n10\n{root}\ntimestamp 1\nextra\n"),
        format!("{ORIGIN}\n10\n{}\ntimestamp 1\n", root.replace('=', "")),
    ];
    for body in bodies {
        let text = custom_note(&body);
        assert!(
            matches!(
                verifier.verify_text(&text, NOW),
                Err(AuditError::MalformedCheckpoint { .. } | AuditError::TreeTooLarge(_))
            ),
            "{body:?}: {:?}",
            verifier.verify_text(&text, NOW)
        );
    }
}

/// A signed note over any text, made with the same key (Ed25519 over the text, C2SP key id).
fn custom_note(body: &str) -> String {
    use ed25519_dalek::Signer;
    let key = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    let verifier = signer().verifier();
    let vkey = verifier.verifier_key();
    let id = data_encoding::HEXLOWER
        .decode(vkey.split('+').nth(1).unwrap().as_bytes())
        .unwrap();
    let mut blob = id;
    blob.extend_from_slice(&key.sign(body.as_bytes()).to_bytes());
    format!(
        "{body}\n\u{2014} {ORIGIN} {}\n",
        data_encoding::BASE64.encode(&blob)
    )
}

#[test]
fn a_smaller_or_forked_or_older_checkpoint_is_refused_after_a_trusted_one() {
    let verifier = signer().verifier();
    let root = Hash::digest(b"a");
    let trusted = verifier.verify(&signed(10, root, NOW), NOW).unwrap();
    assert!(matches!(
        verifier.verify_newer(&signed(9, root, NOW + 1), &trusted, NOW + 1),
        Err(AuditError::SizeRegressed {
            trusted: 10,
            found: 9
        })
    ));
    assert!(matches!(
        verifier.verify_newer(&signed(10, Hash::digest(b"b"), NOW + 1), &trusted, NOW + 1),
        Err(AuditError::Forked { size: 10 })
    ));
    assert!(matches!(
        verifier.verify_newer(&signed(11, root, NOW - 1), &trusted, NOW + 1),
        Err(AuditError::TimestampRegressed { .. })
    ));
    verifier
        .verify_newer(&signed(10, root, NOW + 1), &trusted, NOW + 1)
        .unwrap();
    verifier
        .verify_newer(&signed(12, root, NOW + 1), &trusted, NOW + 1)
        .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Arbitrary bytes (as text where they are UTF-8) never panic the checkpoint parser.
    #[test]
    fn arbitrary_text_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let verifier = signer().verifier();
        let text = String::from_utf8_lossy(&bytes);
        prop_assert!(verifier.verify_text(&text, NOW).is_err());
        let _ = CheckpointVerifier::from_verifier_key(&text);
    }

    /// Mutations of a real checkpoint: never a panic, and accepted only if unchanged.
    #[test]
    fn mutated_checkpoints_never_panic(at: prop::sample::Index, byte: u8, cut: prop::sample::Index) {
        let verifier = signer().verifier();
        let text = signed(5, Hash::digest(b"r"), NOW).to_string();
        let mut bytes = text.clone().into_bytes();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        bytes.truncate(1 + cut.index(bytes.len()));
        let changed = String::from_utf8_lossy(&bytes);
        let result = verifier.verify_text(&changed, NOW);
        if changed != text {
            prop_assert!(result.is_err());
        }
    }
}
