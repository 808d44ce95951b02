//! The HOTP (RFC 4226) and TOTP (RFC 6238) algorithms.
//!
//! Counters and times are 64-bit (RFC 6238 section 4.2: the step after 2038 still works), the
//! counter is encoded as 8 bytes big-endian, and the period is a [`NonZeroU64`] so that no division
//! by zero is possible (totp-rs accepted `period=0` from a URI and crashed).

use super::error::MfaError;
use super::secret::OtpSecret;
use core::fmt;
use core::num::NonZeroU64;
use hmac::{Hmac, KeyInit, Mac};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The HMAC hash of a factor. Only SHA-1 is portable across authenticator apps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// HMAC-SHA-1, the default and the only one every app honours.
    #[default]
    Sha1,
    /// HMAC-SHA-256.
    Sha256,
    /// HMAC-SHA-512.
    Sha512,
}

impl Algorithm {
    /// The name used in `otpauth://` URIs (`SHA1`, `SHA256`, `SHA512`).
    pub fn uri_name(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
            Self::Sha512 => "SHA512",
        }
    }

    /// Parses a URI name, ignoring ASCII case.
    pub fn from_uri_name(name: &str) -> Option<Self> {
        [Self::Sha1, Self::Sha256, Self::Sha512]
            .into_iter()
            .find(|a| a.uri_name().eq_ignore_ascii_case(name))
    }

    /// The byte that identifies this hash in the sealed seed format (docs/MFA.md).
    pub(crate) fn format_id(self) -> u8 {
        match self {
            Self::Sha1 => 1,
            Self::Sha256 => 2,
            Self::Sha512 => 3,
        }
    }

    pub(crate) fn from_format_id(id: u8) -> Option<Self> {
        match id {
            1 => Some(Self::Sha1),
            2 => Some(Self::Sha256),
            3 => Some(Self::Sha512),
            _ => None,
        }
    }
}

/// Number of digits in a code: 6, 7 or 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digits(u8);

impl Digits {
    /// Six digits, the default and the only length every app honours.
    pub const SIX: Self = Self(6);
    /// Seven digits.
    pub const SEVEN: Self = Self(7);
    /// Eight digits (the RFC 6238 test vectors).
    pub const EIGHT: Self = Self(8);

    /// Checks that `digits` is 6, 7 or 8 (RFC 4226 requires at least 6; a `u32` holds at most 9,
    /// and 9 would bias the truncation).
    pub fn new(digits: u8) -> Result<Self, MfaError> {
        match digits {
            6..=8 => Ok(Self(digits)),
            _ => Err(MfaError::InvalidSetting {
                setting: "digits",
                reason: format!("must be 6, 7 or 8, got `{digits}`"),
            }),
        }
    }

    /// The number of digits.
    pub fn get(self) -> u8 {
        self.0
    }

    /// `value` modulo 10^digits. Each arm divides by a constant, which compiles to a
    /// multiplication instead of a hardware division.
    fn reduce(self, value: u32) -> u32 {
        match self.0 {
            6 => value % 1_000_000,
            7 => value % 10_000_000,
            _ => value % 100_000_000,
        }
    }
}

impl Default for Digits {
    fn default() -> Self {
        Self::SIX
    }
}

/// The parameters of a TOTP factor: hash, digits and period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TotpParams {
    algorithm: Algorithm,
    digits: Digits,
    period: NonZeroU64,
}

impl TotpParams {
    /// The portable parameters: SHA-1, 6 digits, 30 seconds.
    pub const PORTABLE: Self = Self {
        algorithm: Algorithm::Sha1,
        digits: Digits::SIX,
        period: NonZeroU64::MIN.saturating_add(29),
    };

    /// Checks and builds parameters. `period` is in seconds and must be at least 1.
    ///
    /// Many authenticator apps silently ignore anything but SHA-1, 6 digits and 30 s, which is
    /// why a factor only becomes active after one code has been confirmed.
    pub fn new(algorithm: Algorithm, digits: u8, period: u64) -> Result<Self, MfaError> {
        let digits = Digits::new(digits)?;
        let period = NonZeroU64::new(period).ok_or_else(|| MfaError::InvalidSetting {
            setting: "period",
            reason: "must be at least 1 second, got `0`".into(),
        })?;
        Ok(Self {
            algorithm,
            digits,
            period,
        })
    }

    /// The hash.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The number of digits.
    pub fn digits(&self) -> Digits {
        self.digits
    }

    /// The period in seconds (never 0).
    pub fn period(&self) -> NonZeroU64 {
        self.period
    }

    /// Whether every popular authenticator app honours these parameters.
    pub fn is_portable(&self) -> bool {
        *self == Self::PORTABLE
    }

    /// The time step that contains Unix time `now` (RFC 6238 `T`, with `T0 = 0`).
    pub fn step_at(&self, now: u64) -> u64 {
        now / self.period
    }
}

impl Default for TotpParams {
    fn default() -> Self {
        Self::PORTABLE
    }
}

/// A one-time code as digits. Short-lived but still a secret: redacted in `Debug`, zeroized.
#[derive(Clone)]
pub struct OtpCode {
    ascii: [u8; 8],
    len: u8,
}

impl OtpCode {
    fn new(value: u32, digits: Digits) -> Self {
        let mut ascii = [b'0'; 8];
        let mut rest = value;
        for slot in ascii.iter_mut().take(usize::from(digits.0)).rev() {
            // INVARIANT: `rest % 10` < 10, so the sum is an ASCII digit.
            *slot = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        Self {
            ascii,
            len: digits.0,
        }
    }

    fn bytes(&self) -> &[u8] {
        self.ascii.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// The code as a string of digits, with leading zeros.
    pub fn expose_secret(&self) -> &str {
        core::str::from_utf8(self.bytes()).unwrap_or("")
    }

    /// Constant-time equality of two codes of the same length.
    pub(crate) fn ct_eq_code(&self, other: &Self) -> subtle::Choice {
        // One 64-bit comparison instead of eight byte comparisons (each of which would pass
        // through `subtle`'s optimization barrier).
        u64::from_ne_bytes(self.ascii).ct_eq(&u64::from_ne_bytes(other.ascii))
            & self.len.ct_eq(&other.len)
    }

    /// The code as a number (leading zeros dropped). The caller wipes it.
    pub(crate) fn value(&self) -> u32 {
        self.bytes().iter().fold(0u32, |value, digit| {
            value * 10 + u32::from(digit.wrapping_sub(b'0'))
        })
    }

    /// Compares with typed input in constant time. The input must be exactly the digits (spaces
    /// allowed, so `123 456` matches `123456`).
    pub fn matches(&self, input: &str) -> bool {
        match normalize_code(input, self.len) {
            Some(typed) => bool::from(typed.ct_eq_code(self)),
            None => false,
        }
    }
}

// By hand rather than derived: the derive wipes an array byte by byte (a volatile write each), and
// a verify drops four codes.
impl Zeroize for OtpCode {
    fn zeroize(&mut self) {
        self.ascii.as_mut_slice().zeroize();
        self.len.zeroize();
    }
}

impl Drop for OtpCode {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl ZeroizeOnDrop for OtpCode {}

impl fmt::Debug for OtpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OtpCode([REDACTED; {} digits])", self.len)
    }
}

/// Parses typed input into exactly `digits` ASCII digits, ignoring spaces; `None` when malformed.
pub(crate) fn normalize_code(input: &str, digits: u8) -> Option<OtpCode> {
    let mut ascii = [b'0'; 8];
    let mut len = 0u8;
    for &c in input.as_bytes() {
        match c {
            b' ' => {}
            b'0'..=b'9' => {
                *ascii.get_mut(usize::from(len))? = c;
                len += 1;
            }
            _ => return None,
        }
    }
    (len == digits).then_some(OtpCode { ascii, len })
}

/// HMAC keyed once: verifying a window of steps then costs two hash blocks per step, not four.
#[derive(Clone)]
pub(crate) enum KeyedHmac {
    Sha1(Sha1Pads),
    Sha256(Hmac<sha2::Sha256>),
    Sha512(Hmac<sha2::Sha512>),
}

impl KeyedHmac {
    pub(crate) fn new(algorithm: Algorithm, key: &[u8]) -> Result<Self, MfaError> {
        // HMAC accepts keys of any length; the error arm exists only because the trait is generic.
        let invalid = |_| MfaError::InvalidSetting {
            setting: "secret",
            reason: "the HMAC key was refused".into(),
        };
        Ok(match algorithm {
            Algorithm::Sha1 => Self::Sha1(Sha1Pads::new(key)),
            Algorithm::Sha256 => Self::Sha256(Hmac::new_from_slice(key).map_err(invalid)?),
            Algorithm::Sha512 => Self::Sha512(Hmac::new_from_slice(key).map_err(invalid)?),
        })
    }

    /// The HOTP code for `counter` (RFC 4226 section 5.3).
    pub(crate) fn code(&self, counter: u64, digits: Digits) -> OtpCode {
        OtpCode::new(self.value(counter, digits), digits)
    }

    /// The HOTP code for `counter` as a number below 10^digits (what [`OtpCode`] spells out):
    /// for verification, which compares numbers and skips spelling out every candidate. The
    /// caller wipes it.
    pub(crate) fn value(&self, counter: u64, digits: Digits) -> u32 {
        let message = counter.to_be_bytes();
        let value = match self {
            Self::Sha1(pads) => {
                let mut mac = pads.mac_counter(counter);
                let value = truncate(&mac);
                mac.as_mut_slice().zeroize();
                value
            }
            Self::Sha256(mac) => truncate(&mac_once(mac, &message)),
            Self::Sha512(mac) => truncate(&mac_once(mac, &message)),
        };
        digits.reduce(value)
    }
}

/// SHA-1's block length in bytes.
const SHA1_BLOCK: usize = 64;
/// SHA-1's output length in bytes.
const SHA1_LEN: usize = 20;
/// SHA-1's initial hash value (FIPS 180-4 section 5.3.1).
const SHA1_INIT: [u32; 5] = [
    0x6745_2301,
    0xEFCD_AB89,
    0x98BA_DCFE,
    0x1032_5476,
    0xC3D2_E1F0,
];

/// HMAC-SHA-1 (RFC 2104) for HOTP's 8-byte messages, with the key's inner and outer pad states
/// hashed once: `H(K ^ opad || H(K ^ ipad || counter))`.
///
/// Both hashes after the pads are exactly one SHA-1 block (the 8-byte counter or the 20-byte inner
/// hash, then the padding and the bit length of FIPS 180-4 section 5.1.1), so each code costs two
/// calls of the `sha1` crate's compression function on a copy of a pad state: no buffering, no
/// `Hmac` object to clone per step. The pad states and every intermediate are wiped on drop.
/// `tests::sha1_pads_match_the_hmac_crate` checks it against the `hmac` crate.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct Sha1Pads {
    inner: [u32; 5],
    outer: [u32; 5],
}

impl Sha1Pads {
    pub(crate) fn new(key: &[u8]) -> Self {
        // RFC 2104 section 2: a key longer than a block is hashed first; then it is zero-padded.
        let mut padded = [0u8; SHA1_BLOCK];
        if key.len() > SHA1_BLOCK {
            let mut digest = <sha1::Sha1 as sha1::Digest>::digest(key);
            copy_prefix(&mut padded, &digest);
            digest.as_mut_slice().zeroize();
        } else {
            copy_prefix(&mut padded, key);
        }
        let pad_state = |pad: u8| {
            let mut block = padded;
            block.iter_mut().for_each(|b| *b ^= pad);
            let mut state = SHA1_INIT;
            sha1::block_api::compress(&mut state, core::slice::from_ref(&block));
            block.as_mut_slice().zeroize();
            state
        };
        let pads = Self {
            inner: pad_state(0x36),
            outer: pad_state(0x5c),
        };
        padded.as_mut_slice().zeroize();
        pads
    }

    /// The 20-byte HMAC of `counter` as 8 bytes big-endian. The caller wipes it.
    fn mac_counter(&self, counter: u64) -> [u8; SHA1_LEN] {
        // Plain arrays wiped through slices at the end: `Zeroizing<[u8; N]>` would wipe byte by
        // byte (a volatile write per element), which costs more here than the hashing around it.
        let mut block = [0u8; SHA1_BLOCK];
        let mut inner = self.inner;
        last_block(&mut block, &counter.to_be_bytes());
        sha1::block_api::compress(&mut inner, core::slice::from_ref(&block));

        let mut inner_hash = [0u8; SHA1_LEN];
        state_bytes(&inner, &mut inner_hash);
        let mut outer = self.outer;
        last_block(&mut block, &inner_hash);
        sha1::block_api::compress(&mut outer, core::slice::from_ref(&block));

        let mut mac = [0u8; SHA1_LEN];
        state_bytes(&outer, &mut mac);
        block.as_mut_slice().zeroize();
        inner_hash.as_mut_slice().zeroize();
        inner.as_mut_slice().zeroize();
        outer.as_mut_slice().zeroize();
        mac
    }
}

/// Fills `block` as the last and only block after one pad block: `message`, the `0x80` byte,
/// zeros, and the bit length of pad block plus message, big-endian, in the last 8 bytes.
fn last_block(block: &mut [u8; SHA1_BLOCK], message: &[u8]) {
    block.fill(0);
    copy_prefix(block, message);
    if let Some(marker) = block.get_mut(message.len()) {
        *marker = 0x80;
    }
    let bits = ((SHA1_BLOCK + message.len()) as u64) * 8;
    let (_, length) = block.split_at_mut(SHA1_BLOCK - 8);
    length.copy_from_slice(&bits.to_be_bytes());
}

/// Copies `from` to the start of `to` (`from` is never longer here: 8 or 20 bytes into 64).
fn copy_prefix(to: &mut [u8], from: &[u8]) {
    to.iter_mut().zip(from).for_each(|(t, f)| *t = *f);
}

/// The big-endian bytes of a SHA-1 state: the hash value.
fn state_bytes(state: &[u32; 5], out: &mut [u8; SHA1_LEN]) {
    out.chunks_exact_mut(4)
        .zip(state)
        .for_each(|(bytes, word)| bytes.copy_from_slice(&word.to_be_bytes()));
}

fn mac_once<M: Mac + Clone>(keyed: &M, message: &[u8]) -> hmac::digest::Output<M> {
    let mut mac = keyed.clone();
    mac.update(message);
    mac.finalize().into_bytes()
}

/// Dynamic truncation (RFC 4226 section 5.3): 31 bits from the offset given by the last nibble.
#[expect(
    clippy::indexing_slicing,
    reason = "the offset is at most 15 and every HMAC output here has at least 20 bytes"
)]
fn truncate(mac: &[u8]) -> u32 {
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    u32::from_be_bytes([
        mac[offset] & 0x7f,
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ])
}

/// The HOTP code (RFC 4226) of `secret` for `counter`.
pub fn hotp(
    secret: &[u8],
    counter: u64,
    algorithm: Algorithm,
    digits: Digits,
) -> Result<OtpCode, MfaError> {
    Ok(KeyedHmac::new(algorithm, secret)?.code(counter, digits))
}

/// A TOTP key: the secret with its parameters.
#[derive(Debug)]
pub struct TotpKey {
    secret: OtpSecret,
    params: TotpParams,
}

impl TotpKey {
    /// Binds a secret to its parameters.
    pub fn new(secret: OtpSecret, params: TotpParams) -> Self {
        Self { secret, params }
    }

    /// A fresh 160-bit key with the portable parameters.
    pub fn generate() -> Result<Self, MfaError> {
        Ok(Self::new(OtpSecret::generate()?, TotpParams::PORTABLE))
    }

    /// The secret.
    pub fn secret(&self) -> &OtpSecret {
        &self.secret
    }

    /// The parameters.
    pub fn params(&self) -> &TotpParams {
        &self.params
    }

    /// The code at Unix time `now` (what the user's app shows). Servers verify with
    /// [`super::Verifier`], which also handles skew and replay.
    pub fn code_at(&self, now: u64) -> Result<OtpCode, MfaError> {
        self.code_at_step(self.params.step_at(now))
    }

    /// The code of time step `step`.
    pub fn code_at_step(&self, step: u64) -> Result<OtpCode, MfaError> {
        hotp(
            self.secret.expose_secret(),
            step,
            self.params.algorithm,
            self.params.digits,
        )
    }

    /// Splits into secret and parameters.
    pub fn into_parts(self) -> (OtpSecret, TotpParams) {
        (self.secret, self.params)
    }

    /// Makes a second copy of the key.
    pub fn duplicate(&self) -> Self {
        Self::new(self.secret.duplicate(), self.params)
    }

    pub(crate) fn keyed(&self) -> Result<KeyedHmac, MfaError> {
        KeyedHmac::new(self.params.algorithm, self.secret.expose_secret())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_and_period_are_checked() {
        for bad in [0u8, 5, 9, 10, 255] {
            assert!(Digits::new(bad).is_err(), "{bad}");
        }
        assert!(TotpParams::new(Algorithm::Sha1, 6, 0).is_err());
        let err = TotpParams::new(Algorithm::Sha1, 6, 0)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "invalid MFA setting `period`: must be at least 1 second, got `0`"
        );
        let params = TotpParams::new(Algorithm::Sha1, 6, 30).unwrap();
        assert!(params.is_portable());
        assert_eq!(params, TotpParams::default());
        assert_eq!(params.period().get(), 30);
        assert!(
            !TotpParams::new(Algorithm::Sha256, 6, 30)
                .unwrap()
                .is_portable()
        );
        assert_eq!(
            TotpParams::new(Algorithm::Sha1, 6, 1)
                .unwrap()
                .step_at(u64::MAX),
            u64::MAX
        );
    }

    #[test]
    fn codes_keep_leading_zeros_and_compare_exactly() {
        let code = OtpCode::new(42, Digits::SIX);
        assert_eq!(code.value(), 42);
        assert_eq!(OtpCode::new(99_999_999, Digits::EIGHT).value(), 99_999_999);
        assert_eq!(normalize_code("012 345", 6).unwrap().value(), 12_345);
        assert_eq!(code.expose_secret(), "000042");
        assert!(code.matches("000042"));
        assert!(code.matches("000 042"));
        assert!(!code.matches("00042"));
        assert!(!code.matches("0000042"));
        assert!(!code.matches("000043"));
        assert!(!code.matches("00004２"));
        assert!(!code.matches(""));
        assert_eq!(format!("{code:?}"), "OtpCode([REDACTED; 6 digits])");
    }

    /// The hand-keyed HMAC-SHA-1 agrees with the `hmac` crate for keys shorter than, as long as,
    /// and longer than a block, and for counters with every byte in use.
    #[test]
    fn sha1_pads_match_the_hmac_crate() {
        for key_len in [0usize, 1, 10, 20, 32, 63, 64, 65, 100, 200] {
            let key: Vec<u8> = (0..key_len).map(|i| (i * 31 + 7) as u8).collect();
            let pads = Sha1Pads::new(&key);
            for counter in [0u64, 1, 56_666_666, u64::MAX, 0x0102_0304_0506_0708] {
                let mut reference = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(&key).unwrap();
                reference.update(&counter.to_be_bytes());
                let expected = reference.finalize().into_bytes();
                assert_eq!(
                    &pads.mac_counter(counter)[..],
                    &expected[..],
                    "key {key_len} bytes, counter {counter}"
                );
            }
        }
    }

    #[test]
    fn algorithm_names() {
        assert_eq!(Algorithm::from_uri_name("sha256"), Some(Algorithm::Sha256));
        assert_eq!(Algorithm::from_uri_name("SHA512"), Some(Algorithm::Sha512));
        assert_eq!(Algorithm::from_uri_name("MD5"), None);
        for a in [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512] {
            assert_eq!(Algorithm::from_format_id(a.format_id()), Some(a));
        }
        assert_eq!(Algorithm::from_format_id(0), None);
    }
}
