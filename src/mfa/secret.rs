//! OTP secrets (seeds) and their RFC 4648 base32 text form.
//!
//! New secrets come from custodian's CSPRNG ([`crate::crypto::fill_random`]) and have 160 bits (RFC 4226 recommends 160, requires 128;
//! NIST SP 800-63B requires 112). Imported secrets must have 128 bits unless the caller uses the
//! explicitly named [`OtpSecret::import_legacy_base32`], which accepts the 80-bit secrets some
//! providers still issue.

use super::error::SecretError;
use crate::secret::SecretBytes;
use core::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Bytes in a newly generated secret (160 bits, as RFC 4226 recommends).
pub const DEFAULT_SECRET_LEN: usize = 20;
/// Fewest bytes accepted for a new or imported secret (128 bits, RFC 4226 section 4 R6).
pub const MIN_SECRET_LEN: usize = 16;
/// Fewest bytes accepted by [`OtpSecret::import_legacy_base32`] (80 bits).
pub const MIN_LEGACY_SECRET_LEN: usize = 10;
/// Most bytes accepted (longer HMAC keys are hashed first and add nothing).
pub const MAX_SECRET_LEN: usize = 128;

const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Text that is secret: a base32 seed, an `otpauth://` URI, a QR rendering of one, a recovery code.
///
/// Zeroized on drop, redacted in `Debug`, no `Display`; read it with [`SecretText::expose_secret`].
#[derive(Zeroize, ZeroizeOnDrop, Default, Clone)]
pub struct SecretText(String);

/// Constant-time for texts of equal length (the length is not secret).
impl PartialEq for SecretText {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for SecretText {}

impl SecretText {
    /// Takes ownership of the text; it is zeroized when this value is dropped.
    pub fn new(text: String) -> Self {
        Self(text)
    }

    /// The text. Named loudly so that every use is easy to find in review.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// Length in bytes (not secret).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretText([REDACTED; {}])", self.0.len())
    }
}

/// The shared secret of a TOTP/HOTP factor (the HMAC key).
///
/// Not `Clone` (copies are explicit through [`OtpSecret::duplicate`]), no `Display`, no `Serialize`.
/// At rest it is sealed with the envelope layer (see [`super::store`]).
pub struct OtpSecret(SecretBytes);

impl OtpSecret {
    /// A fresh 160-bit secret from the CSPRNG.
    pub fn generate() -> Result<Self, super::MfaError> {
        Self::generate_with_len(DEFAULT_SECRET_LEN)
    }

    /// A fresh secret of `len` bytes (16 to 128) from the CSPRNG, for example 32 for SHA-256.
    pub fn generate_with_len(len: usize) -> Result<Self, super::MfaError> {
        check_len(len, MIN_SECRET_LEN)?;
        let mut bytes = vec![0u8; len];
        crate::crypto::fill_random(&mut bytes)?;
        Ok(Self(SecretBytes::new(bytes)))
    }

    /// Wraps raw secret bytes of at least 128 bits.
    pub fn from_bytes(bytes: SecretBytes) -> Result<Self, SecretError> {
        check_len(bytes.len(), MIN_SECRET_LEN)?;
        Ok(Self(bytes))
    }

    /// Parses a base32 secret of at least 128 bits (lowercase, spaces and padding are tolerated).
    pub fn from_base32(text: &str) -> Result<Self, SecretError> {
        let bytes = decode_base32(text)?;
        Self::from_bytes(bytes)
    }

    /// Parses a base32 secret of at least 80 bits, for factors imported from providers that issued
    /// such short secrets. Prefer re-enrolling those users with a fresh 160-bit secret.
    pub fn import_legacy_base32(text: &str) -> Result<Self, SecretError> {
        let bytes = decode_base32(text)?;
        check_len(bytes.len(), MIN_LEGACY_SECRET_LEN)?;
        Ok(Self(bytes))
    }

    /// Wraps bytes whose length was checked when the factor was created (a stored legacy seed).
    pub(crate) fn import_legacy_bytes(bytes: SecretBytes) -> Self {
        Self(bytes)
    }

    /// The secret in canonical base32 (uppercase, no padding, no spaces).
    pub fn to_base32(&self) -> SecretText {
        encode_base32(self.0.expose_secret())
    }

    /// The raw key bytes.
    pub fn expose_secret(&self) -> &[u8] {
        self.0.expose_secret()
    }

    /// Length in bytes (not secret).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: an empty secret cannot be built.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Makes a second copy. Not `Clone`, so that copies are always explicit.
    pub fn duplicate(&self) -> Self {
        Self(SecretBytes::new(self.0.expose_secret().to_vec()))
    }
}

impl fmt::Debug for OtpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OtpSecret([REDACTED; {} bits])", self.0.len() * 8)
    }
}

fn check_len(len: usize, min: usize) -> Result<(), SecretError> {
    if len < min {
        return Err(SecretError::TooShort {
            bits: len * 8,
            min_bits: min * 8,
        });
    }
    if len > MAX_SECRET_LEN {
        return Err(SecretError::TooLong {
            bytes: len,
            max_bytes: MAX_SECRET_LEN,
        });
    }
    Ok(())
}

/// Encodes bytes as RFC 4648 base32, uppercase, without padding.
pub fn encode_base32(bytes: &[u8]) -> SecretText {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u64 = 0;
    let mut bits: u32 = 0;
    for &byte in bytes {
        // Keep only the bits not yet emitted (at most 4 + 8).
        buffer = ((buffer << 8) | u64::from(byte)) & 0xfff;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(symbol((buffer >> bits) as u8));
        }
    }
    if bits > 0 {
        out.push(symbol((buffer << (5 - bits)) as u8));
    }
    buffer.zeroize();
    SecretText(out)
}

fn symbol(value: u8) -> char {
    // INVARIANT: masked to 5 bits, so the lookup always succeeds.
    ALPHABET
        .get(usize::from(value & 0x1f))
        .map_or('A', |&c| char::from(c))
}

fn value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a'),
        b'2'..=b'7' => Some(c - b'2' + 26),
        _ => None,
    }
}

/// Decodes RFC 4648 base32, tolerating lowercase letters, spaces anywhere and `=` padding at the end.
///
/// Bits left over after the last whole byte are ignored (authenticator apps accept them, and some
/// providers issue secrets of such lengths). Errors give positions, never characters.
pub fn decode_base32(text: &str) -> Result<SecretBytes, SecretError> {
    let input = text.as_bytes();
    let mut out = Zeroizing::new(Vec::with_capacity(input.len() * 5 / 8));
    let mut buffer: u32 = 0;
    let mut bits: u32 = 0;
    let mut symbols = 0usize;
    let mut padding_from: Option<usize> = None;
    for (position, &c) in input.iter().enumerate() {
        match c {
            b' ' => {}
            b'=' => {
                padding_from.get_or_insert(position);
            }
            _ => {
                if let Some(position) = padding_from {
                    return Err(SecretError::MisplacedPadding { position });
                }
                let Some(v) = value(c) else {
                    // Report the character index, not the byte index, for non-ASCII input.
                    let position = text.get(..position).map_or(position, |s| s.chars().count());
                    return Err(SecretError::InvalidCharacter { position });
                };
                buffer = (buffer << 5) | u32::from(v);
                bits += 5;
                symbols += 1;
                if bits >= 8 {
                    bits -= 8;
                    out.push((buffer >> bits) as u8);
                    buffer &= (1 << bits) - 1;
                }
            }
        }
    }
    buffer.zeroize();
    if symbols == 0 {
        return Err(SecretError::Empty);
    }
    if matches!(symbols % 8, 1 | 3 | 6) {
        return Err(SecretError::InvalidLength { symbols });
    }
    Ok(SecretBytes::new(core::mem::take(&mut *out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors_round_trip() {
        let cases: [(&[u8], &str); 7] = [
            (b"", ""),
            (b"f", "MY"),
            (b"fo", "MZXQ"),
            (b"foo", "MZXW6"),
            (b"foob", "MZXW6YQ"),
            (b"fooba", "MZXW6YTB"),
            (b"foobar", "MZXW6YTBOI"),
        ];
        for (bytes, text) in cases {
            assert_eq!(encode_base32(bytes).expose_secret(), text);
            if !bytes.is_empty() {
                assert_eq!(decode_base32(text).unwrap().expose_secret(), bytes);
            }
        }
    }

    #[test]
    fn decoding_tolerates_lowercase_spaces_and_padding() {
        let expected = b"12345678901234567890";
        for text in [
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
            "gezdgnbvgy3tqojqgezdgnbvgy3tqojq",
            "gezd gnbv gy3t qojq gezd gnbv gy3t qojq",
            " GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ ",
        ] {
            assert_eq!(
                decode_base32(text).unwrap().expose_secret(),
                expected,
                "{text}"
            );
        }
        assert_eq!(decode_base32("MZXW6YQ=").unwrap().expose_secret(), b"foob");
        assert_eq!(decode_base32("MZXW6===").unwrap().expose_secret(), b"foo");
    }

    #[test]
    fn decoding_rejects_bad_input_without_echoing_it() {
        assert_eq!(
            decode_base32("MZ1W").err(),
            Some(SecretError::InvalidCharacter { position: 2 })
        );
        assert_eq!(
            decode_base32("MZ=XW").err(),
            Some(SecretError::MisplacedPadding { position: 2 })
        );
        assert_eq!(
            decode_base32("MZXW6YTBO").err(),
            Some(SecretError::InvalidLength { symbols: 9 })
        );
        assert_eq!(
            decode_base32("M").err(),
            Some(SecretError::InvalidLength { symbols: 1 })
        );
        assert_eq!(decode_base32(" = ").err(), Some(SecretError::Empty));
        assert_eq!(
            decode_base32("ÄZXW").err(),
            Some(SecretError::InvalidCharacter { position: 0 })
        );
        assert_eq!(
            decode_base32("MÄXW").err(),
            Some(SecretError::InvalidCharacter { position: 1 })
        );
        let message = decode_base32("SECRET8SECRET").unwrap_err().to_string();
        assert!(!message.contains('8'), "{message}");
    }

    #[test]
    fn secret_length_policy() {
        // 80-bit secret: only through the legacy import.
        let short = "JBSWY3DPEHPK3PXP";
        assert_eq!(
            OtpSecret::from_base32(short).unwrap_err(),
            SecretError::TooShort {
                bits: 80,
                min_bits: 128
            }
        );
        assert_eq!(OtpSecret::import_legacy_base32(short).unwrap().len(), 10);
        assert!(matches!(
            OtpSecret::import_legacy_base32("JBSWY3DP"),
            Err(SecretError::TooShort {
                bits: 40,
                min_bits: 80
            })
        ));
        let long = encode_base32(&[1u8; MAX_SECRET_LEN + 1]);
        assert!(matches!(
            OtpSecret::from_base32(long.expose_secret()),
            Err(SecretError::TooLong { .. })
        ));
        assert!(OtpSecret::generate_with_len(15).is_err());
        let fresh = OtpSecret::generate().unwrap();
        assert_eq!(fresh.len(), DEFAULT_SECRET_LEN);
        assert_ne!(
            fresh.expose_secret(),
            OtpSecret::generate().unwrap().expose_secret()
        );
        let again = OtpSecret::from_base32(fresh.to_base32().expose_secret()).unwrap();
        assert_eq!(again.expose_secret(), fresh.expose_secret());
    }

    #[test]
    fn debug_is_redacted() {
        let secret = OtpSecret::from_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").unwrap();
        let shown = format!("{secret:?}");
        assert_eq!(shown, "OtpSecret([REDACTED; 160 bits])");
        let text = secret.to_base32();
        assert_eq!(format!("{text:?}"), "SecretText([REDACTED; 32])");
        assert!(!format!("{text:?}").contains("GEZ"));
    }
}
