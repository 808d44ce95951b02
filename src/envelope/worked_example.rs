//! Checks the worked example in docs/FORMAT.md byte for byte, so the document cannot drift from
//! the code.

use super::seal::seal_with;
use super::{EncryptionContext, KeyId, StaticKek, open, seal_text};
use crate::secret::SecretKey;
use data_encoding::HEXLOWER;

const FORMAT_MD: &str = include_str!("../../docs/FORMAT.md");

/// The value of `name: <hex>` inside the worked-example block of FORMAT.md, whitespace removed.
fn doc_value(name: &str) -> String {
    let block = FORMAT_MD
        .split("```text worked-example")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap();
    let prefix = format!("{name}:");
    let mut value = String::new();
    let mut lines = block.lines().skip_while(|l| !l.starts_with(&prefix));
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("`{name}` missing from FORMAT.md"));
    value.push_str(first[prefix.len()..].trim());
    // Continuation lines are indented.
    for line in lines.take_while(|l| l.starts_with("  ")) {
        value.push_str(line.trim());
    }
    value.split_whitespace().collect()
}

fn hex(name: &str) -> Vec<u8> {
    HEXLOWER.decode(doc_value(name).as_bytes()).unwrap()
}

#[test]
fn format_md_worked_example_matches_the_code() {
    let kek_key = SecretKey::from_slice(&hex("KEK")).unwrap();
    let kek = StaticKek::new(KeyId::new("customers", 1).unwrap(), &kek_key);
    let dek = SecretKey::from_slice(&hex("DEK")).unwrap();
    let context = EncryptionContext::new()
        .with("table", "customers")
        .unwrap()
        .with("record", "42")
        .unwrap()
        .with("field", "email")
        .unwrap();
    let plaintext = b"jane@example.com";

    assert_eq!(
        HEXLOWER.encode(&context.encode()),
        doc_value("context encoding")
    );
    let sealed = seal_with(
        &kek,
        &context,
        plaintext,
        &dek,
        &hex("wrap nonce"),
        &hex("data nonce"),
    )
    .unwrap();
    assert_eq!(HEXLOWER.encode(&sealed), doc_value("ciphertext"));
    assert_eq!(HEXLOWER.encode(&sealed[..24]), doc_value("key header"));
    let mut wrap_aad = sealed[..24].to_vec();
    wrap_aad.extend_from_slice(&context.encode());
    assert_eq!(HEXLOWER.encode(&wrap_aad), doc_value("wrap AAD"));
    let mut payload_aad = sealed[..5].to_vec();
    payload_aad.extend_from_slice(&context.encode());
    assert_eq!(HEXLOWER.encode(&payload_aad), doc_value("payload AAD"));

    // The documented bytes open with the public API, and the text form is the documented one.
    let from_doc = hex("ciphertext");
    assert_eq!(
        open(&kek, &context, &from_doc).unwrap().expose_secret(),
        plaintext
    );
    let text = format!("cst1:{}", data_encoding::BASE64URL_NOPAD.encode(&from_doc));
    assert_eq!(text, doc_value("text form"));
    // (A fresh seal_text differs, of course: new DEK and nonces.)
    assert_ne!(seal_text(&kek, &context, plaintext).unwrap(), text);
}

#[test]
#[ignore = "prints the worked example's values; run by hand when the format changes"]
fn print_worked_example() {
    let kek_key = SecretKey::from_bytes(core::array::from_fn(|i| i as u8));
    let kek = StaticKek::new(KeyId::new("customers", 1).unwrap(), &kek_key);
    let dek = SecretKey::from_bytes(core::array::from_fn(|i| 0x20 + i as u8));
    let wrap_nonce: Vec<u8> = (0x40..0x4c).collect();
    let data_nonce: Vec<u8> = (0x50..0x5c).collect();
    let context = EncryptionContext::new()
        .with("table", "customers")
        .unwrap()
        .with("record", "42")
        .unwrap()
        .with("field", "email")
        .unwrap();
    let sealed = seal_with(
        &kek,
        &context,
        b"jane@example.com",
        &dek,
        &wrap_nonce,
        &data_nonce,
    )
    .unwrap();
    println!("context encoding: {}", HEXLOWER.encode(&context.encode()));
    println!("ciphertext: {}", HEXLOWER.encode(&sealed));
    println!(
        "text form: cst1:{}",
        data_encoding::BASE64URL_NOPAD.encode(&sealed)
    );
}
