//! Envelope format v1 through the public API: round trips, tampering, wrong keys and contexts.

use custodian::SecretKey;
use custodian::crypto::{Suite, default_provider};
use custodian::envelope::{self, EncryptionContext, EnvelopeError, Header, KeyId, StaticKek};
use proptest::prelude::*;

fn context(record: &str, field: &str) -> EncryptionContext {
    EncryptionContext::new()
        .with("table", "customers")
        .unwrap()
        .with("record", record)
        .unwrap()
        .with("field", field)
        .unwrap()
}

fn kek(name: &str, version: u32, suite: Suite) -> StaticKek {
    let id = KeyId::new(name, version).unwrap();
    StaticKek::with_algorithm(
        id,
        &SecretKey::try_random().unwrap(),
        default_provider().aead(suite),
    )
}

#[test]
fn round_trips_in_every_suite_and_size() {
    for suite in Suite::ALL {
        let kek = kek("customers", 7, suite);
        for len in [0usize, 1, 15, 16, 17, 255, 4096] {
            let plaintext: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let ctx = context("42", "email");
            let sealed = envelope::seal(&kek, &ctx, &plaintext).unwrap();
            let header = Header::parse(&sealed).unwrap();
            assert_eq!(header.suite(), suite);
            assert_eq!(header.key_id(), &KeyId::new("customers", 7).unwrap());
            assert_eq!(header.payload_len(), len);
            assert_eq!(
                envelope::open(&kek, &ctx, &sealed).unwrap().expose_secret(),
                &plaintext[..]
            );
        }
    }
}

#[test]
fn two_seals_of_the_same_value_differ() {
    let kek = kek("customers", 1, Suite::Aes256Gcm);
    let ctx = context("42", "email");
    let a = envelope::seal(&kek, &ctx, b"same").unwrap();
    let b = envelope::seal(&kek, &ctx, b"same").unwrap();
    assert_ne!(a, b);
}

#[test]
fn every_bit_flip_and_every_truncation_is_rejected() {
    for suite in Suite::ALL {
        let kek = kek("customers", 1, suite);
        let ctx = context("42", "address");
        let sealed = envelope::seal(&kek, &ctx, b"221B Baker Street, London").unwrap();
        for byte in 0..sealed.len() {
            for bit in 0..8 {
                let mut tampered = sealed.clone();
                tampered[byte] ^= 1 << bit;
                assert!(
                    envelope::open(&kek, &ctx, &tampered).is_err(),
                    "{suite:?}: flip of bit {bit} in byte {byte} was accepted"
                );
            }
        }
        for len in 0..sealed.len() {
            assert!(
                envelope::open(&kek, &ctx, &sealed[..len]).is_err(),
                "truncation to {len} accepted"
            );
        }
        let mut longer = sealed.clone();
        longer.push(0);
        assert_eq!(
            envelope::open(&kek, &ctx, &longer).unwrap_err(),
            EnvelopeError::Malformed("trailing bytes after the payload tag")
        );
    }
}

#[test]
fn wrong_context_is_rejected_coarsely() {
    let kek = kek("customers", 1, Suite::Aes256Gcm);
    let sealed = envelope::seal(&kek, &context("42", "email"), b"jane@example.com").unwrap();
    for other in [
        context("43", "email"),
        context("42", "phone"),
        EncryptionContext::new(),
    ] {
        assert_eq!(
            envelope::open(&kek, &other, &sealed).unwrap_err(),
            EnvelopeError::Decrypt
        );
    }
    let extra = context("42", "email").with("tenant", "store-1").unwrap();
    assert_eq!(
        envelope::open(&kek, &extra, &sealed).unwrap_err(),
        EnvelopeError::Decrypt
    );
}

#[test]
fn wrong_kek_is_rejected() {
    let ctx = context("42", "email");
    let right = kek("customers", 1, Suite::Aes256Gcm);
    let sealed = envelope::seal(&right, &ctx, b"jane@example.com").unwrap();
    // Same id, other material: coarse failure.
    let impostor = kek("customers", 1, Suite::Aes256Gcm);
    assert_eq!(
        envelope::open(&impostor, &ctx, &sealed).unwrap_err(),
        EnvelopeError::Decrypt
    );
    // Another id: the header says so, precisely (the header is public anyway).
    let other = kek("customers", 2, Suite::Aes256Gcm);
    assert!(matches!(
        envelope::open(&other, &ctx, &sealed),
        Err(EnvelopeError::WrongKey { .. })
    ));
    let chacha = kek("customers", 1, Suite::ChaCha20Poly1305);
    assert!(matches!(
        envelope::open(&chacha, &ctx, &sealed),
        Err(EnvelopeError::WrongSuite { .. })
    ));
}

#[test]
fn swapping_wrapped_data_keys_between_ciphertexts_is_rejected() {
    let kek = kek("customers", 1, Suite::Aes256Gcm);
    let ctx = context("42", "email");
    let a = envelope::seal(&kek, &ctx, b"first value!").unwrap();
    let b = envelope::seal(&kek, &ctx, b"other value!").unwrap();
    assert_eq!(a.len(), b.len());
    // Key header: 3+1+1+1+9 ("customers") +4+1+0+4 = 24 bytes; then 12 nonce + 48 wrapped key.
    let wrap = 24..24 + 12 + 48;
    let mut swapped = a.clone();
    swapped[wrap.clone()].copy_from_slice(&b[wrap]);
    assert_eq!(
        envelope::open(&kek, &ctx, &swapped).unwrap_err(),
        EnvelopeError::Decrypt
    );
    // Moving a whole ciphertext between contexts fails too (the wrap is bound to the context).
    assert_eq!(
        envelope::open(&kek, &context("43", "email"), &a).unwrap_err(),
        EnvelopeError::Decrypt
    );
}

#[test]
fn unknown_version_and_suite_are_rejected_before_crypto() {
    let kek = kek("customers", 1, Suite::Aes256Gcm);
    let ctx = context("42", "email");
    let sealed = envelope::seal(&kek, &ctx, b"x").unwrap();
    let mut v2 = sealed.clone();
    v2[3] = 2;
    assert_eq!(
        Header::parse(&v2).unwrap_err(),
        EnvelopeError::UnsupportedVersion(2)
    );
    let mut suite9 = sealed.clone();
    suite9[4] = 9;
    assert_eq!(
        Header::parse(&suite9).unwrap_err(),
        EnvelopeError::UnknownSuite(9)
    );
    let mut long_name = sealed;
    long_name[5] = 65;
    assert!(matches!(
        Header::parse(&long_name),
        Err(EnvelopeError::Malformed(_))
    ));
    assert!(matches!(
        Header::parse(b"not a ciphertext"),
        Err(EnvelopeError::Malformed(_))
    ));
}

#[test]
fn text_form_round_trips_and_exposes_the_key_id() {
    let kek = kek("customers", 3, Suite::Aes256Gcm);
    let ctx = context("42", "email");
    let text = envelope::seal_text(&kek, &ctx, b"jane@example.com").unwrap();
    assert!(text.starts_with("cst1:"));
    assert!(
        text[5..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    assert_eq!(Header::parse_text(&text).unwrap().key_id().version(), 3);
    assert_eq!(
        envelope::open_text(&kek, &ctx, &text)
            .unwrap()
            .expose_secret(),
        b"jane@example.com"
    );
    assert!(matches!(
        envelope::open_text(&kek, &ctx, &text[1..]),
        Err(EnvelopeError::MalformedText(_))
    ));
    assert!(matches!(
        envelope::open_text(&kek, &ctx, "cst1:***"),
        Err(EnvelopeError::MalformedText(_))
    ));
}

#[test]
fn rewrap_changes_only_the_key_and_keeps_the_payload() {
    let old = kek("customers", 1, Suite::Aes256Gcm);
    let new = kek("customers", 2, Suite::Aes256Gcm);
    let ctx = context("42", "email");
    let sealed = envelope::seal(&old, &ctx, b"jane@example.com").unwrap();
    let rewrapped = envelope::rewrap(&old, &new, &ctx, &sealed).unwrap();
    assert_eq!(Header::parse(&rewrapped).unwrap().key_id().version(), 2);
    // The data nonce, payload and tag are byte-for-byte the same.
    let tail = 24 + 12 + 48;
    assert_eq!(sealed[tail..], rewrapped[tail..]);
    assert_eq!(
        envelope::open(&new, &ctx, &rewrapped)
            .unwrap()
            .expose_secret(),
        b"jane@example.com"
    );
    assert!(envelope::open(&old, &ctx, &rewrapped).is_err());
    // Rewrapping twice is harmless.
    let twice = envelope::rewrap(&new, &new, &ctx, &rewrapped).unwrap();
    assert_eq!(
        envelope::open(&new, &ctx, &twice).unwrap().expose_secret(),
        b"jane@example.com"
    );
    // A failed rewrap (wrong context) leaves the input untouched.
    let mut stored = sealed.clone();
    assert!(envelope::rewrap_in_place(&old, &new, &context("9", "email"), &mut stored).is_err());
    assert_eq!(stored, sealed);
}

#[test]
fn reencrypt_changes_the_data_key() {
    let old = kek("customers", 1, Suite::Aes256Gcm);
    let new = kek("customers", 2, Suite::XChaCha20Poly1305);
    let ctx = context("42", "email");
    let sealed = envelope::seal(&old, &ctx, b"jane@example.com").unwrap();
    let fresh = envelope::reencrypt(&old, &new, &ctx, &sealed).unwrap();
    assert_eq!(
        Header::parse(&fresh).unwrap().suite(),
        Suite::XChaCha20Poly1305
    );
    assert_eq!(
        envelope::open(&new, &ctx, &fresh).unwrap().expose_secret(),
        b"jane@example.com"
    );
}

#[test]
fn subject_key_ids_are_carried_in_the_header() {
    let id = KeyId::new("customers", 4)
        .unwrap()
        .for_subject("cus_1842")
        .unwrap();
    let kek = StaticKek::new(id.clone(), &SecretKey::try_random().unwrap());
    let ctx = context("42", "email");
    let sealed = envelope::seal(&kek, &ctx, b"x").unwrap();
    assert_eq!(Header::parse(&sealed).unwrap().key_id(), &id);
    assert_eq!(
        envelope::open(&kek, &ctx, &sealed).unwrap().expose_secret(),
        b"x"
    );
}

fn arb_context() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec(("[a-z]{1,8}", ".{0,20}"), 0..6)
}

proptest! {
    #[test]
    fn prop_round_trip(plaintext in proptest::collection::vec(any::<u8>(), 0..2048),
                       pairs in arb_context(),
                       suite in prop::sample::select(Suite::ALL.to_vec())) {
        let mut ctx = EncryptionContext::new();
        for (k, v) in &pairs {
            let _ = ctx.insert(k.clone(), v.clone()); // duplicates are refused; keep the first
        }
        let kek = kek("prop", 1, suite);
        let sealed = envelope::seal(&kek, &ctx, &plaintext).unwrap();
        let opened = envelope::open(&kek, &ctx, &sealed).unwrap();
        prop_assert_eq!(opened.expose_secret(), &plaintext[..]);
        // The same entries inserted in reverse order open it too.
        let mut reversed = EncryptionContext::new();
        for (k, v) in ctx.iter().collect::<Vec<_>>().into_iter().rev() {
            reversed.insert(k, v).unwrap();
        }
        prop_assert!(envelope::open(&kek, &reversed, &sealed).is_ok());
        let changed = ctx.clone().with("\u{1}extra", "x").unwrap();
        prop_assert!(envelope::open(&kek, &changed, &sealed).is_err());
    }
}

#[test]
fn seal_many_gives_independent_ciphertexts() {
    for suite in Suite::ALL {
        let kek = kek("customers", 1, suite);
        let (email, phone) = (context("42", "email"), context("42", "phone"));
        let sealed = envelope::seal_many(
            &kek,
            &[(&email, b"same"), (&phone, b"same"), (&email, b"same")],
        )
        .unwrap();
        assert_eq!(sealed.len(), 3);
        assert_eq!(
            envelope::open(&kek, &email, &sealed[0])
                .unwrap()
                .expose_secret(),
            b"same"
        );
        assert_eq!(
            envelope::open(&kek, &phone, &sealed[1])
                .unwrap()
                .expose_secret(),
            b"same"
        );
        assert!(envelope::open(&kek, &email, &sealed[1]).is_err());
        // Each item has its own data key and nonces: no two wraps or payloads are equal.
        let header_len = 24;
        let n = suite.nonce_len();
        assert_ne!(
            sealed[0][header_len..header_len + n + 48],
            sealed[2][header_len..header_len + n + 48]
        );
        assert_ne!(
            sealed[0][header_len + n + 48..],
            sealed[2][header_len + n + 48..]
        );
    }
    assert!(
        envelope::seal_many(&kek("c", 1, Suite::Aes256Gcm), &[])
            .unwrap()
            .is_empty()
    );
}

#[test]
fn open_into_and_seal_into_round_trip_in_every_suite() {
    for suite in Suite::ALL {
        let kek = kek("customers", 2, suite);
        let ctx = context("42", "document");
        let mut sealed = b"prefix kept".to_vec();
        for len in [0usize, 1, 16, 4097] {
            sealed.truncate(11);
            let plaintext: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            envelope::seal_into(&kek, &ctx, &plaintext, &mut sealed).unwrap();
            assert_eq!(&sealed[..11], b"prefix kept");
            let ciphertext = &sealed[11..];
            assert_eq!(
                envelope::open(&kek, &ctx, ciphertext)
                    .unwrap()
                    .expose_secret(),
                &plaintext[..]
            );
            // A longer buffer than needed: the plaintext goes to its start, the rest is untouched.
            let mut buffer = vec![0xEEu8; len + 5];
            let opened = envelope::open_into(&kek, &ctx, ciphertext, &mut buffer).unwrap();
            assert_eq!(opened, &plaintext[..]);
            assert_eq!(&buffer[len..], &[0xEE; 5]);
        }
    }
}

#[test]
fn open_into_refuses_a_short_buffer_and_wipes_on_failure() {
    let kek = kek("customers", 1, Suite::Aes256Gcm);
    let ctx = context("42", "document");
    let plaintext = vec![0x61u8; 100];
    let sealed = envelope::seal(&kek, &ctx, &plaintext).unwrap();

    let mut short = vec![0u8; 99];
    assert_eq!(
        envelope::open_into(&kek, &ctx, &sealed, &mut short).unwrap_err(),
        EnvelopeError::BufferTooSmall {
            needed: 100,
            given: 99
        }
    );

    // A tampered payload: decryption writes (unauthenticated) bytes, which must not stay.
    let mut tampered = sealed.clone();
    let last_payload_byte = tampered.len() - 17;
    tampered[last_payload_byte] ^= 1;
    let mut buffer = vec![0xEEu8; 100];
    assert_eq!(
        envelope::open_into(&kek, &ctx, &tampered, &mut buffer).unwrap_err(),
        EnvelopeError::Decrypt
    );
    assert!(buffer.iter().all(|&b| b == 0), "{buffer:?}");

    // The wrong context fails before the payload is copied: the buffer is not written.
    let mut buffer = vec![0xEEu8; 100];
    assert!(envelope::open_into(&kek, &context("43", "document"), &sealed, &mut buffer).is_err());
    assert!(buffer.iter().all(|&b| b == 0xEE));
}
