//! Fuzz body: arbitrary bytes into the header parser, the text decoder and `open`.
//!
//! Input layout: byte 0 = n, bytes 1..=n = context value (lossy UTF-8), the rest = ciphertext.
//! Nothing may panic; a sealed value must open again under the same context.

use custodian::envelope::{self, EncryptionContext, Header, KeyId, StaticKek};
use custodian::SecretKey;

/// The key the seed corpus was sealed with.
pub fn fuzz_kek() -> StaticKek {
    StaticKek::new(KeyId::new("fuzz", 1).unwrap(), &SecretKey::from_bytes([7; 32]))
}

pub fn run(data: &[u8]) {
    let (n, rest) = match data.split_first() {
        Some((&n, rest)) => (usize::from(n).min(rest.len()), rest),
        None => return,
    };
    let (value, ciphertext) = rest.split_at(n);
    let mut context = EncryptionContext::new();
    if context.insert("field", String::from_utf8_lossy(value)).is_err() {
        return;
    }
    let kek = fuzz_kek();

    let header = Header::parse(ciphertext);
    let opened = envelope::open(&kek, &context, ciphertext);
    if opened.is_ok() {
        assert!(header.is_ok(), "opened a ciphertext whose header does not parse");
    }
    if let Ok(text) = std::str::from_utf8(ciphertext) {
        let _ = Header::parse_text(text);
        let _ = envelope::open_text(&kek, &context, text);
    }

    // Round trip: whatever the bytes, sealing them must give a ciphertext that opens to them.
    let sealed = envelope::seal(&kek, &context, ciphertext).unwrap();
    let reopened = envelope::open(&kek, &context, &sealed).unwrap();
    assert_eq!(reopened.expose_secret(), ciphertext);
}
