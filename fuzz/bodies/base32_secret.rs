//! Fuzz body: arbitrary text into the base32 decoder and the secret constructors.
//!
//! Nothing may panic. What decodes must encode to canonical base32 that decodes to the same bytes;
//! canonical input must come back unchanged; the length policy (80 bits legacy, 128 bits normal,
//! 1024 bits at most) must hold.

use custodian::mfa::secret::{decode_base32, encode_base32};
use custodian::mfa::OtpSecret;

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let decoded = decode_base32(text);
    let strict = OtpSecret::from_base32(text);
    let legacy = OtpSecret::import_legacy_base32(text);
    let Ok(bytes) = decoded else {
        assert!(strict.is_err() && legacy.is_err());
        return;
    };
    let encoded = encode_base32(bytes.expose_secret());
    let again = decode_base32(encoded.expose_secret()).unwrap();
    assert_eq!(again.expose_secret(), bytes.expose_secret(), "round trip changed the bytes");
    assert!(!encoded.expose_secret().contains(['=', ' ']));

    // Canonical text is a fixed point: encoding what it decodes to gives it back.
    let canonical_again = encode_base32(again.expose_secret());
    assert_eq!(canonical_again, encoded, "canonical encoding is not stable");
    // Uppercase input without spaces or padding and a multiple of 8 symbols has no leftover bits,
    // so it is canonical and must come back unchanged.
    let plain = text.bytes().all(|c| c.is_ascii_uppercase() || (b'2'..=b'7').contains(&c));
    if plain && text.len() % 8 == 0 {
        assert_eq!(encoded.expose_secret(), text, "canonical input did not round trip");
    }

    let len = bytes.len();
    assert_eq!(strict.is_ok(), (16..=128).contains(&len), "strict length policy");
    assert_eq!(legacy.is_ok(), (10..=128).contains(&len), "legacy length policy");
    if let Ok(secret) = strict {
        assert_eq!(secret.expose_secret(), bytes.expose_secret());
        assert_eq!(secret.to_base32(), encoded);
    }
}
