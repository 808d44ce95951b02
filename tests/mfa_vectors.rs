//! RFC 4226 Appendix D and RFC 6238 Appendix B, every vector, through the public API.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use custodian::SecretBytes;
use custodian::mfa::{Algorithm, Digits, OtpSecret, TotpKey, TotpParams, hotp};

const SEED_SHA1: &[u8] = b"12345678901234567890";
const SEED_SHA256: &[u8] = b"12345678901234567890123456789012";
const SEED_SHA512: &[u8] = b"1234567890123456789012345678901234567890123456789012345678901234";

/// RFC 4226 Appendix D: count, truncated decimal value, 6-digit HOTP.
const HOTP: [(u64, u32, &str); 10] = [
    (0, 1284755224, "755224"),
    (1, 1094287082, "287082"),
    (2, 137359152, "359152"),
    (3, 1726969429, "969429"),
    (4, 1640338314, "338314"),
    (5, 868254676, "254676"),
    (6, 1918287922, "287922"),
    (7, 82162583, "162583"),
    (8, 673399871, "399871"),
    (9, 645520489, "520489"),
];

/// RFC 6238 Appendix B: time, SHA-1, SHA-256, SHA-512 (8 digits, 30 s, T0 = 0).
const TOTP: [(u64, &str, &str, &str); 6] = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
];

fn key(seed: &[u8], algorithm: Algorithm, digits: u8) -> TotpKey {
    let secret = OtpSecret::from_bytes(SecretBytes::new(seed.to_vec())).unwrap();
    TotpKey::new(secret, TotpParams::new(algorithm, digits, 30).unwrap())
}

#[test]
fn rfc4226_appendix_d() {
    for (count, truncated, expected) in HOTP {
        let code = hotp(SEED_SHA1, count, Algorithm::Sha1, Digits::SIX).unwrap();
        assert_eq!(code.expose_secret(), expected, "count {count}");
        // The 6-digit code is the truncated value mod 10^6: check the table is self-consistent.
        assert_eq!(format!("{:06}", truncated % 1_000_000), expected);
        // 8 digits of the same truncated value.
        let eight = hotp(SEED_SHA1, count, Algorithm::Sha1, Digits::EIGHT).unwrap();
        assert_eq!(
            eight.expose_secret(),
            format!("{:08}", truncated % 100_000_000)
        );
    }
}

#[test]
fn rfc4226_base32_seed_matches_ascii_seed() {
    let secret = OtpSecret::from_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").unwrap();
    assert_eq!(secret.expose_secret(), SEED_SHA1);
}

#[test]
fn rfc6238_appendix_b_eight_digits() {
    for (time, sha1, sha256, sha512) in TOTP {
        for (seed, algorithm, expected) in [
            (SEED_SHA1, Algorithm::Sha1, sha1),
            (SEED_SHA256, Algorithm::Sha256, sha256),
            (SEED_SHA512, Algorithm::Sha512, sha512),
        ] {
            let code = key(seed, algorithm, 8).code_at(time).unwrap();
            assert_eq!(code.expose_secret(), expected, "{algorithm:?} at {time}");
        }
    }
}

#[test]
fn rfc6238_appendix_b_six_digit_truncations() {
    for (time, sha1, sha256, sha512) in TOTP {
        for (seed, algorithm, expected8) in [
            (SEED_SHA1, Algorithm::Sha1, sha1),
            (SEED_SHA256, Algorithm::Sha256, sha256),
            (SEED_SHA512, Algorithm::Sha512, sha512),
        ] {
            let code = key(seed, algorithm, 6).code_at(time).unwrap();
            assert_eq!(
                code.expose_secret(),
                &expected8[2..],
                "{algorithm:?} at {time}"
            );
            let seven = key(seed, algorithm, 7).code_at(time).unwrap();
            assert_eq!(
                seven.expose_secret(),
                &expected8[1..],
                "{algorithm:?} at {time}"
            );
        }
    }
    // The example called out in the vectors file.
    let code = key(SEED_SHA1, Algorithm::Sha1, 6)
        .code_at(1111111111)
        .unwrap();
    assert_eq!(code.expose_secret(), "050471");
}

#[test]
fn rfc6238_steps_are_64_bit() {
    let params = TotpParams::default();
    assert_eq!(params.step_at(20000000000), 0x27BC86AA);
    assert_eq!(params.step_at(1111111109), 0x023523EC);
    // Beyond 2^32 steps (period 1 s) the counter still encodes as 8 bytes.
    let one_second = TotpParams::new(Algorithm::Sha1, 6, 1).unwrap();
    let big = 1u64 << 40;
    let by_time = TotpKey::new(
        OtpSecret::from_bytes(SecretBytes::new(SEED_SHA1.to_vec())).unwrap(),
        one_second,
    )
    .code_at(big)
    .unwrap();
    let by_counter = hotp(SEED_SHA1, big, Algorithm::Sha1, Digits::SIX).unwrap();
    assert_eq!(by_time.expose_secret(), by_counter.expose_secret());
    let truncated = hotp(SEED_SHA1, big & 0xffff_ffff, Algorithm::Sha1, Digits::SIX).unwrap();
    assert_ne!(by_counter.expose_secret(), truncated.expose_secret());
}

#[test]
fn the_20_byte_seed_gives_other_codes_for_sha256_and_sha512() {
    // The negative test from the vectors file: a common bug is to use the SHA-1 seed for all three.
    let wrong256 = key(SEED_SHA1, Algorithm::Sha256, 8).code_at(59).unwrap();
    let wrong512 = key(SEED_SHA1, Algorithm::Sha512, 8).code_at(59).unwrap();
    assert_eq!(wrong256.expose_secret(), "32247374");
    assert_eq!(wrong512.expose_secret(), "69342147");
    assert_ne!(wrong256.expose_secret(), "46119246");
    assert_ne!(wrong512.expose_secret(), "90693936");
}
