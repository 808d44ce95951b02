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

    fn modulus(self) -> u32 {
        10u32.pow(u32::from(self.0))
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
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
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
        self.ascii.ct_eq(&other.ascii) & self.len.ct_eq(&other.len)
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
    Sha1(Hmac<sha1::Sha1>),
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
            Algorithm::Sha1 => Self::Sha1(Hmac::new_from_slice(key).map_err(invalid)?),
            Algorithm::Sha256 => Self::Sha256(Hmac::new_from_slice(key).map_err(invalid)?),
            Algorithm::Sha512 => Self::Sha512(Hmac::new_from_slice(key).map_err(invalid)?),
        })
    }

    /// The HOTP value for `counter` (RFC 4226 section 5.3).
    pub(crate) fn code(&self, counter: u64, digits: Digits) -> OtpCode {
        let message = counter.to_be_bytes();
        let value = match self {
            Self::Sha1(mac) => truncate(&mac_once(mac, &message)),
            Self::Sha256(mac) => truncate(&mac_once(mac, &message)),
            Self::Sha512(mac) => truncate(&mac_once(mac, &message)),
        };
        OtpCode::new(value % digits.modulus(), digits)
    }
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
