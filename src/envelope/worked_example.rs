//! Checks the worked examples in docs/FORMAT.md byte for byte, so the document cannot drift from
//! the code, and the rules the document states about the text form, the context and key errors.

use super::seal::seal_with;
use super::{
    EncryptionContext, EnvelopeError, KeyId, StaticKek, decode_text, open, rewrap, seal, seal_text,
};
use crate::crypto::{CryptoProvider, Suite, default_provider, rustcrypto};
use crate::secret::SecretKey;
use data_encoding::HEXLOWER;
use hkdf::Hkdf;
use sha2::Sha256;

const FORMAT_MD: &str = include_str!("../../docs/FORMAT.md");

/// The value of `name: <hex>` inside the FORMAT.md block opened by ```` ```text <block> ````,
/// whitespace removed.
fn doc_value_in(block: &str, name: &str) -> String {
    let block = FORMAT_MD
        .split(&format!("```text {block}\n"))
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap_or_else(|| panic!("block `{block}` missing from FORMAT.md"));
    let prefix = format!("{name}:");
    let mut value = String::new();
    let mut lines = block.lines().skip_while(|l| !l.starts_with(&prefix));
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("`{name}` missing from block `{block}` of FORMAT.md"));
    value.push_str(first[prefix.len()..].trim());
    // Continuation lines are indented.
    for line in lines.take_while(|l| l.starts_with("  ")) {
        value.push_str(line.trim());
    }
    value.split_whitespace().collect()
}

fn doc_value(name: &str) -> String {
    doc_value_in("worked-example", name)
}

fn hex_in(block: &str, name: &str) -> Vec<u8> {
    HEXLOWER
        .decode(doc_value_in(block, name).as_bytes())
        .unwrap()
}

fn hex(name: &str) -> Vec<u8> {
    hex_in("worked-example", name)
}

fn example_context() -> EncryptionContext {
    EncryptionContext::new()
        .with("table", "customers")
        .unwrap()
        .with("record", "42")
        .unwrap()
        .with("field", "email")
        .unwrap()
}

/// Both backends, so every documented example is checked by two independent implementations.
fn providers() -> Vec<&'static CryptoProvider> {
    vec![default_provider(), &rustcrypto::PROVIDER]
}

#[test]
fn format_md_worked_example_matches_the_code() {
    let kek_key = SecretKey::from_slice(&hex("KEK")).unwrap();
    let kek = StaticKek::new(KeyId::new("customers", 1).unwrap(), &kek_key);
    let dek = SecretKey::from_slice(&hex("DEK")).unwrap();
    let context = example_context();
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

/// The ChaCha20-Poly1305 and XChaCha20-Poly1305 examples: same keys, context and plaintext as
/// the AES-256-GCM one, their own nonces.
#[test]
fn format_md_chacha_examples_match_the_code() {
    for (block, suite) in [
        ("worked-example-chacha20-poly1305", Suite::ChaCha20Poly1305),
        (
            "worked-example-xchacha20-poly1305",
            Suite::XChaCha20Poly1305,
        ),
    ] {
        let hex = |name: &str| hex_in(block, name);
        let kek_key = SecretKey::from_slice(&hex("KEK")).unwrap();
        let dek = SecretKey::from_slice(&hex("DEK")).unwrap();
        let (wrap_nonce, data_nonce) = (hex("wrap nonce"), hex("data nonce"));
        assert_eq!(wrap_nonce.len(), suite.nonce_len(), "{block}");
        let from_doc = hex("ciphertext");
        assert_eq!(from_doc[4], suite.id(), "{block}");
        for provider in providers() {
            let kek = StaticKek::with_algorithm(
                KeyId::new("customers", 1).unwrap(),
                &kek_key,
                provider.aead(suite),
            );
            let sealed = seal_with(
                &kek,
                &example_context(),
                b"jane@example.com",
                &dek,
                &wrap_nonce,
                &data_nonce,
            )
            .unwrap();
            assert_eq!(HEXLOWER.encode(&sealed), doc_value_in(block, "ciphertext"));
            assert_eq!(
                open(&kek, &example_context(), &from_doc)
                    .unwrap()
                    .expose_secret(),
                b"jane@example.com"
            );
        }
        assert_eq!(
            HEXLOWER.encode(&from_doc[..24]),
            doc_value_in(block, "key header")
        );
        let text = format!("cst1:{}", data_encoding::BASE64URL_NOPAD.encode(&from_doc));
        assert_eq!(text, doc_value_in(block, "text form"));
    }
}

/// The subject example: the subject KEK is derived exactly as docs/KEYSTORE.md says (recomputed
/// here with the `hkdf` crate from the documented salt, input and info), then used as the KEK.
#[test]
fn format_md_subject_example_matches_the_code() {
    let block = "worked-example-subject";
    let hex = |name: &str| hex_in(block, name);
    let version_key = hex("version key");
    let subject_key = hex("subject key");
    let mut ikm = version_key.clone();
    ikm.extend_from_slice(&subject_key);
    let mut info = b"customers\x00".to_vec();
    info.extend_from_slice(&1u32.to_be_bytes());
    info.extend_from_slice(b"cus_42");
    assert_eq!(HEXLOWER.encode(&info), doc_value_in(block, "info"));
    let mut subject_kek = [0u8; 32];
    Hkdf::<Sha256>::new(Some(b"custodian/v1/subject-kek"), &ikm)
        .expand(&info, &mut subject_kek)
        .unwrap();
    assert_eq!(
        HEXLOWER.encode(&subject_kek),
        doc_value_in(block, "subject KEK")
    );

    let id = KeyId::new("customers", 1)
        .unwrap()
        .for_subject("cus_42")
        .unwrap();
    let kek = StaticKek::new(id, &SecretKey::from_bytes(subject_kek));
    let context = example_context();
    let sealed = seal_with(
        &kek,
        &context,
        b"jane@example.com",
        &SecretKey::from_slice(&hex("DEK")).unwrap(),
        &hex("wrap nonce"),
        &hex("data nonce"),
    )
    .unwrap();
    assert_eq!(HEXLOWER.encode(&sealed), doc_value_in(block, "ciphertext"));
    assert_eq!(
        HEXLOWER.encode(&sealed[..30]),
        doc_value_in(block, "key header")
    );
    let text = format!("cst1:{}", data_encoding::BASE64URL_NOPAD.encode(&sealed));
    assert_eq!(text, doc_value_in(block, "text form"));
    assert_eq!(
        open(&kek, &context, &hex("ciphertext"))
            .unwrap()
            .expose_secret(),
        b"jane@example.com"
    );
}

/// FORMAT.md, "Text form": only the exact alphabet, no padding, no white space, zero trailing bits.
#[test]
fn the_text_form_is_strict() {
    let good = format!(
        "cst1:{}",
        doc_value("text form").trim_start_matches("cst1:")
    );
    let binary = decode_text(&good).unwrap();
    assert_eq!(binary, hex("ciphertext"));
    // One byte `A` is `QQ`; `QR` has a non-zero trailing bit.
    assert_eq!(decode_text("cst1:QQ").unwrap(), b"A");
    let body = good.trim_start_matches("cst1:");
    let refused = [
        "cst1:QR".to_owned(),                          // non-zero trailing bits
        "cst1:QQ==".to_owned(),                        // padding
        "cst1:QQ=".to_owned(),                         // padding
        format!(" {good}"),                            // leading white space
        format!("{good}\n"),                           // trailing newline
        format!("cst1:{} {}", &body[..8], &body[8..]), // inner space
        format!("cst1:{}\r\n{}", &body[..8], &body[8..]),
        format!("cst1:{}", body.replace('-', "+").replace('_', "/")), // standard base64 alphabet
        "cst1:Q+".to_owned(),
        "cst1:Q/".to_owned(),
        "cst1:Q".to_owned(), // impossible length
        format!("CST1:{body}"),
        format!("cst:{body}"),
        body.to_owned(),
    ];
    assert!(body.contains('-') || body.contains('_'));
    for text in refused {
        assert!(
            matches!(decode_text(&text), Err(EnvelopeError::MalformedText(_))),
            "{text:?}"
        );
    }
}

/// FORMAT.md, "Context encoding": no normalization, control characters and empty values allowed,
/// keys sorted by UTF-8 bytes (not by UTF-16 code units as Java's and JavaScript's string order).
#[test]
fn context_rules_are_as_documented() {
    let kek = StaticKek::generate("customers", 1).unwrap();
    let nfc = EncryptionContext::new().with("name", "Jos\u{e9}").unwrap();
    let nfd = EncryptionContext::new()
        .with("name", "Jose\u{301}")
        .unwrap();
    assert_ne!(nfc.encode(), nfd.encode());
    let sealed = seal(&kek, &nfc, b"x").unwrap();
    assert_eq!(
        open(&kek, &nfd, &sealed).err(),
        Some(EnvelopeError::Decrypt)
    );

    let odd = EncryptionContext::new()
        .with("empty", "")
        .unwrap()
        .with("tab\there", "nul\u{0}and\u{7f}")
        .unwrap();
    let sealed = seal(&kek, &odd, b"x").unwrap();
    assert_eq!(open(&kek, &odd, &sealed).unwrap().expose_secret(), b"x");
    assert!(EncryptionContext::new().with("", "v").is_err());

    // U+FF21 (UTF-8 ef bc a1) sorts before U+1F600 (UTF-8 f0 9f 98 80) in byte order; in UTF-16
    // order (d83d de00 against ff21) it would come after.
    let context = EncryptionContext::new()
        .with("\u{1F600}", "1")
        .unwrap()
        .with("\u{FF21}", "2")
        .unwrap()
        .with("z", "3")
        .unwrap();
    let keys: Vec<&str> = context.iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["z", "\u{FF21}", "\u{1F600}"]);
    assert_eq!(
        HEXLOWER.encode(&context.encode()),
        "0003\
         00017a0000000133\
         0003efbca10000000132\
         0004f09f98800000000131"
    );
    let mut utf16: Vec<Vec<u16>> = ["z", "\u{FF21}", "\u{1F600}"]
        .iter()
        .map(|k| k.encode_utf16().collect())
        .collect();
    utf16.sort();
    assert_eq!(String::from_utf16(&utf16[1]).unwrap(), "\u{1F600}");
}

/// FORMAT.md, "Decryption": a KEK with another id or suite is reported precisely (the header is
/// public), before any cryptography, unlike a wrong key with the right id.
#[test]
fn a_wrong_kek_id_or_suite_has_its_own_error() {
    let key = SecretKey::from_bytes([9; 32]);
    let id = KeyId::new("customers", 1).unwrap();
    let kek = StaticKek::new(id.clone(), &key);
    let context = example_context();
    let sealed = seal(&kek, &context, b"x").unwrap();

    let other_version = StaticKek::new(KeyId::new("customers", 2).unwrap(), &key);
    assert_eq!(
        open(&other_version, &context, &sealed).err(),
        Some(EnvelopeError::WrongKey {
            found: id.clone(),
            given: KeyId::new("customers", 2).unwrap(),
        })
    );
    let for_subject = StaticKek::new(id.clone().for_subject("cus_1").unwrap(), &key);
    assert!(matches!(
        open(&for_subject, &context, &sealed),
        Err(EnvelopeError::WrongKey { .. })
    ));
    let other_suite = StaticKek::with_algorithm(
        id.clone(),
        &key,
        default_provider().aead(Suite::ChaCha20Poly1305),
    );
    let err = open(&other_suite, &context, &sealed).unwrap_err();
    assert_eq!(
        err,
        EnvelopeError::WrongSuite {
            found: "AES-256-GCM",
            given: "ChaCha20-Poly1305",
        }
    );
    assert!(matches!(
        rewrap(&kek, &other_suite, &context, &sealed),
        Err(EnvelopeError::WrongSuite { .. })
    ));
    // Same id, wrong key material: the coarse decryption error.
    let wrong_material = StaticKek::new(id, &SecretKey::from_bytes([8; 32]));
    assert_eq!(
        open(&wrong_material, &context, &sealed).err(),
        Some(EnvelopeError::Decrypt)
    );
}

#[test]
#[ignore = "prints the worked examples' values; run by hand when the format changes"]
fn print_worked_examples() {
    let kek_key = SecretKey::from_bytes(core::array::from_fn(|i| i as u8));
    let dek = SecretKey::from_bytes(core::array::from_fn(|i| 0x20 + i as u8));
    let context = example_context();
    println!("context encoding: {}", HEXLOWER.encode(&context.encode()));
    for (suite, wrap_nonce, data_nonce) in [
        (
            Suite::Aes256Gcm,
            (0x40..0x4c).collect::<Vec<u8>>(),
            (0x50..0x5c).collect::<Vec<u8>>(),
        ),
        (
            Suite::ChaCha20Poly1305,
            (0x40..0x4c).collect(),
            (0x50..0x5c).collect(),
        ),
        (
            Suite::XChaCha20Poly1305,
            (0x40..0x58).collect(),
            (0x60..0x78).collect(),
        ),
    ] {
        let kek = StaticKek::with_algorithm(
            KeyId::new("customers", 1).unwrap(),
            &kek_key,
            default_provider().aead(suite),
        );
        let sealed = seal_with(
            &kek,
            &context,
            b"jane@example.com",
            &dek,
            &wrap_nonce,
            &data_nonce,
        )
        .unwrap();
        println!("{}:", suite.name());
        println!("wrap nonce: {}", HEXLOWER.encode(&wrap_nonce));
        println!("data nonce: {}", HEXLOWER.encode(&data_nonce));
        println!("ciphertext: {}", HEXLOWER.encode(&sealed));
        println!(
            "text form: cst1:{}",
            data_encoding::BASE64URL_NOPAD.encode(&sealed)
        );
    }
    // Subject: version key 00..1f, subject key 80..9f, subject `cus_42`.
    let version_key: Vec<u8> = (0..0x20).collect();
    let subject_key: Vec<u8> = (0x80..0xa0).collect();
    let mut ikm = version_key.clone();
    ikm.extend_from_slice(&subject_key);
    let mut info = b"customers\x00".to_vec();
    info.extend_from_slice(&1u32.to_be_bytes());
    info.extend_from_slice(b"cus_42");
    let mut subject_kek = [0u8; 32];
    Hkdf::<Sha256>::new(Some(b"custodian/v1/subject-kek"), &ikm)
        .expand(&info, &mut subject_kek)
        .unwrap();
    let id = KeyId::new("customers", 1)
        .unwrap()
        .for_subject("cus_42")
        .unwrap();
    let kek = StaticKek::new(id, &SecretKey::from_bytes(subject_kek));
    let wrap_nonce: Vec<u8> = (0x40..0x4c).collect();
    let data_nonce: Vec<u8> = (0x50..0x5c).collect();
    let sealed = seal_with(
        &kek,
        &context,
        b"jane@example.com",
        &dek,
        &wrap_nonce,
        &data_nonce,
    )
    .unwrap();
    println!("subject:");
    println!("info: {}", HEXLOWER.encode(&info));
    println!("subject KEK: {}", HEXLOWER.encode(&subject_kek));
    println!("ciphertext: {}", HEXLOWER.encode(&sealed));
    println!(
        "text form: cst1:{}",
        data_encoding::BASE64URL_NOPAD.encode(&sealed)
    );
}
