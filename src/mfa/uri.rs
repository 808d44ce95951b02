//! `otpauth://` URIs, the Key Uri Format that authenticator apps scan from a QR code.
//!
//! ```text
//! otpauth://totp/ACME%20Shop:jane%40example.com?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=ACME%20Shop
//! ```
//!
//! Generation percent-encodes every byte outside the RFC 3986 unreserved set, puts the issuer in
//! both the label and the `issuer` parameter, and emits `algorithm`, `digits` and `period` only
//! when they differ from the portable SHA-1 / 6 / 30 s (popular apps ignore them anyway).
//!
//! Parsing is strict where a mistake would break codes or mislead the user: `period=0`, digits
//! outside 6-8, unknown algorithms, bad base32, a label issuer that differs from the `issuer`
//! parameter, `:` inside the issuer or account, duplicate parameters and control characters are
//! all refused with a precise [`UriError`]. Unknown parameters (such as `image`) are ignored. In
//! the query, `+` means a space (form encoding); in the label it is a literal `+`.

use super::error::{UriError, excerpt};
use super::otp::{Algorithm, Digits, TotpKey, TotpParams};
use super::secret::{OtpSecret, SecretText};
use core::fmt::Write as _;
use subtle::ConstantTimeEq;

/// Longest URI accepted, in bytes.
pub const MAX_URI_LEN: usize = 4096;
/// Longest issuer or account name accepted, in bytes (after percent-decoding).
pub const MAX_FIELD_LEN: usize = 256;

/// The OTP type of a URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtpKind {
    /// Time-based (RFC 6238).
    Totp,
    /// Counter-based (RFC 4226), with the counter the app starts from.
    Hotp {
        /// The initial counter.
        counter: u64,
    },
}

/// A parsed or generated `otpauth://` URI.
///
/// It holds the secret, so its text form is a [`SecretText`] and its `Debug` shows no secret.
#[derive(Debug)]
pub struct OtpauthUri {
    kind: OtpKind,
    issuer: Option<String>,
    account: String,
    secret: OtpSecret,
    params: TotpParams,
}

impl OtpauthUri {
    /// A TOTP URI for `key`. `issuer` should be given (apps group and label entries by it).
    pub fn totp(issuer: Option<&str>, account: &str, key: TotpKey) -> Result<Self, UriError> {
        let issuer = issuer.map(check_issuer).transpose()?;
        let account = check_account(account)?;
        let (secret, params) = key.into_parts();
        Ok(Self {
            kind: OtpKind::Totp,
            issuer,
            account,
            secret,
            params,
        })
    }

    /// An HOTP URI (the period of `params` is ignored).
    pub fn hotp(
        issuer: Option<&str>,
        account: &str,
        secret: OtpSecret,
        algorithm: Algorithm,
        digits: Digits,
        counter: u64,
    ) -> Result<Self, UriError> {
        let issuer = issuer.map(check_issuer).transpose()?;
        let account = check_account(account)?;
        let params = hotp_params(algorithm, digits);
        Ok(Self {
            kind: OtpKind::Hotp { counter },
            issuer,
            account,
            secret,
            params,
        })
    }

    /// Parses a URI whose secret has at least 128 bits.
    pub fn parse(uri: &str) -> Result<Self, UriError> {
        Self::parse_with(uri, OtpSecret::from_base32)
    }

    /// Parses a URI whose secret may have only 80 bits, for importing factors from providers that
    /// issued such secrets. Prefer re-enrolling those users.
    pub fn parse_legacy(uri: &str) -> Result<Self, UriError> {
        Self::parse_with(uri, OtpSecret::import_legacy_base32)
    }

    fn parse_with(
        uri: &str,
        decode_secret: fn(&str) -> Result<OtpSecret, super::SecretError>,
    ) -> Result<Self, UriError> {
        if uri.len() > MAX_URI_LEN {
            return Err(UriError::TooLong {
                len: uri.len(),
                max: MAX_URI_LEN,
            });
        }
        const SCHEME: &str = "otpauth://";
        let rest = match uri.get(..SCHEME.len()) {
            Some(scheme) if scheme.eq_ignore_ascii_case(SCHEME) => uri.get(SCHEME.len()..),
            _ => None,
        }
        .ok_or(UriError::NotOtpauth)?;
        // A fragment is not part of the key.
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let (kind_text, rest) = rest.split_once('/').unwrap_or((rest, ""));
        let is_hotp = if kind_text.eq_ignore_ascii_case("totp") {
            false
        } else if kind_text.eq_ignore_ascii_case("hotp") {
            true
        } else {
            return Err(UriError::UnknownType {
                found: excerpt(kind_text),
            });
        };
        let (label_text, query) = rest.split_once('?').unwrap_or((rest, ""));
        let label = percent_decode(label_text, false, "label")?;
        let (label_issuer, account) = match label.split_once(':') {
            Some((issuer, account)) => (Some(check_issuer(issuer)?), account),
            None => (None, label.as_str()),
        };
        let account = check_account(account)?;

        let mut fields = QueryFields::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            fields.set(name, value)?;
        }

        let issuer = match (label_issuer, fields.issuer) {
            (Some(label), Some(parameter)) if label != parameter => {
                return Err(UriError::IssuerMismatch {
                    label: excerpt(&label),
                    parameter: excerpt(&parameter),
                });
            }
            (Some(label), _) => Some(label),
            (None, parameter) => parameter,
        };
        let secret_text = fields.secret.ok_or(UriError::MissingSecret)?;
        let secret = decode_secret(secret_text.expose_secret()).map_err(UriError::Secret)?;
        let algorithm = fields.algorithm.unwrap_or_default();
        let digits = fields.digits.unwrap_or_default();
        let (kind, params) = if is_hotp {
            let counter = fields.counter.ok_or(UriError::MissingCounter)?;
            (OtpKind::Hotp { counter }, hotp_params(algorithm, digits))
        } else {
            let period = fields.period.unwrap_or(30);
            let params = TotpParams::new(algorithm, digits.get(), period).map_err(|_| {
                UriError::InvalidPeriod {
                    found: period.to_string(),
                }
            })?;
            (OtpKind::Totp, params)
        };
        Ok(Self {
            kind,
            issuer,
            account,
            secret,
            params,
        })
    }

    /// The URI text. It contains the secret: show it only to the enrolling user.
    pub fn to_uri(&self) -> SecretText {
        let mut out = String::with_capacity(128);
        out.push_str(match self.kind {
            OtpKind::Totp => "otpauth://totp/",
            OtpKind::Hotp { .. } => "otpauth://hotp/",
        });
        if let Some(issuer) = &self.issuer {
            percent_encode_into(&mut out, issuer);
            out.push(':');
        }
        percent_encode_into(&mut out, &self.account);
        out.push_str("?secret=");
        out.push_str(self.secret.to_base32().expose_secret());
        if let Some(issuer) = &self.issuer {
            out.push_str("&issuer=");
            percent_encode_into(&mut out, issuer);
        }
        let portable = TotpParams::PORTABLE;
        if self.params.algorithm() != portable.algorithm() {
            out.push_str("&algorithm=");
            out.push_str(self.params.algorithm().uri_name());
        }
        if self.params.digits() != portable.digits() {
            let _ = write!(out, "&digits={}", self.params.digits().get());
        }
        match self.kind {
            OtpKind::Totp => {
                if self.params.period() != portable.period() {
                    let _ = write!(out, "&period={}", self.params.period());
                }
            }
            OtpKind::Hotp { counter } => {
                let _ = write!(out, "&counter={counter}");
            }
        }
        SecretText::new(out)
    }

    /// TOTP or HOTP (with its counter).
    pub fn kind(&self) -> OtpKind {
        self.kind
    }

    /// The issuer (service name), if any.
    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    /// The account name.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The secret.
    pub fn secret(&self) -> &OtpSecret {
        &self.secret
    }

    /// Hash, digits and period (the period is 30 s and meaningless for HOTP).
    pub fn params(&self) -> &TotpParams {
        &self.params
    }

    /// The TOTP key, or `None` for an HOTP URI.
    pub fn to_totp_key(&self) -> Option<TotpKey> {
        match self.kind {
            OtpKind::Totp => Some(TotpKey::new(self.secret.duplicate(), self.params)),
            OtpKind::Hotp { .. } => None,
        }
    }
}

impl PartialEq for OtpauthUri {
    fn eq(&self, other: &Self) -> bool {
        let same_secret: bool = self
            .secret
            .expose_secret()
            .ct_eq(other.secret.expose_secret())
            .into();
        self.kind == other.kind
            && self.issuer == other.issuer
            && self.account == other.account
            && self.params == other.params
            && same_secret
    }
}

impl Eq for OtpauthUri {}

fn hotp_params(algorithm: Algorithm, digits: Digits) -> TotpParams {
    // INVARIANT: digits is already checked and 30 is not 0, so this cannot fail; the fallback
    // keeps the function total anyway.
    TotpParams::new(algorithm, digits.get(), 30).unwrap_or(TotpParams::PORTABLE)
}

/// The parameters of the query, each allowed once.
#[derive(Default)]
struct QueryFields {
    secret: Option<SecretText>,
    issuer: Option<String>,
    algorithm: Option<Algorithm>,
    digits: Option<Digits>,
    period: Option<u64>,
    counter: Option<u64>,
}

impl QueryFields {
    fn set(&mut self, raw_name: &str, raw_value: &str) -> Result<(), UriError> {
        let name = raw_name.to_ascii_lowercase();
        let duplicate = || UriError::DuplicateParameter {
            name: excerpt(raw_name),
        };
        match name.as_str() {
            "secret" => {
                if self.secret.is_some() {
                    return Err(duplicate());
                }
                let decoded = percent_decode(raw_value, true, "`secret`")?;
                self.secret = Some(SecretText::new(decoded));
            }
            "issuer" => {
                if self.issuer.is_some() {
                    return Err(duplicate());
                }
                let decoded = percent_decode(raw_value, true, "`issuer`")?;
                self.issuer = Some(check_issuer(&decoded)?);
            }
            "algorithm" => {
                if self.algorithm.is_some() {
                    return Err(duplicate());
                }
                let decoded = percent_decode(raw_value, true, "`algorithm`")?;
                let algorithm = Algorithm::from_uri_name(&decoded).ok_or_else(|| {
                    UriError::UnknownAlgorithm {
                        found: excerpt(&decoded),
                    }
                })?;
                self.algorithm = Some(algorithm);
            }
            "digits" => {
                if self.digits.is_some() {
                    return Err(duplicate());
                }
                let decoded = percent_decode(raw_value, true, "`digits`")?;
                let digits = parse_number(&decoded)
                    .and_then(|d| u8::try_from(d).ok())
                    .and_then(|d| Digits::new(d).ok())
                    .ok_or_else(|| UriError::InvalidDigits {
                        found: excerpt(&decoded),
                    })?;
                self.digits = Some(digits);
            }
            "period" => {
                if self.period.is_some() {
                    return Err(duplicate());
                }
                let decoded = percent_decode(raw_value, true, "`period`")?;
                let period = parse_number(&decoded).filter(|&p| p > 0).ok_or_else(|| {
                    UriError::InvalidPeriod {
                        found: excerpt(&decoded),
                    }
                })?;
                self.period = Some(period);
            }
            "counter" => {
                if self.counter.is_some() {
                    return Err(duplicate());
                }
                let decoded = percent_decode(raw_value, true, "`counter`")?;
                let counter = parse_number(&decoded).ok_or_else(|| UriError::InvalidCounter {
                    found: excerpt(&decoded),
                })?;
                self.counter = Some(counter);
            }
            // Unknown parameters (`image`, vendor extensions) do not affect the codes.
            _ => {}
        }
        Ok(())
    }
}

/// Decimal digits only (no sign, no spaces), as the Key Uri Format writes numbers.
fn parse_number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn check_issuer(issuer: &str) -> Result<String, UriError> {
    if issuer.is_empty() {
        return Err(UriError::EmptyIssuer);
    }
    check_text("issuer", issuer)?;
    Ok(issuer.to_owned())
}

/// Leading spaces are dropped (the format allows `Issuer:%20account`).
fn check_account(account: &str) -> Result<String, UriError> {
    let account = account.trim_start_matches(' ');
    if account.is_empty() {
        return Err(UriError::EmptyAccount);
    }
    check_text("account", account)?;
    Ok(account.to_owned())
}

fn check_text(part: &'static str, text: &str) -> Result<(), UriError> {
    if text.len() > MAX_FIELD_LEN {
        return Err(UriError::FieldTooLong {
            part,
            len: text.len(),
            max: MAX_FIELD_LEN,
        });
    }
    if text.contains(':') {
        return Err(UriError::Colon { part });
    }
    if text.chars().any(char::is_control) {
        return Err(UriError::ControlCharacter { part });
    }
    Ok(())
}

fn percent_encode_into(out: &mut String, text: &str) {
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

fn percent_decode(text: &str, plus_is_space: bool, part: &'static str) -> Result<String, UriError> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut input = text.bytes();
    while let Some(b) = input.next() {
        match b {
            b'%' => {
                let hex = |c: Option<u8>| c.and_then(|c| char::from(c).to_digit(16));
                match (hex(input.next()), hex(input.next())) {
                    // INVARIANT: both nibbles are below 16, so the value fits a byte.
                    (Some(high), Some(low)) => bytes.push((high * 16 + low) as u8),
                    _ => return Err(UriError::BadPercentEncoding { part }),
                }
            }
            b'+' if plus_is_space => bytes.push(b' '),
            _ => bytes.push(b),
        }
    }
    String::from_utf8(bytes).map_err(|e| {
        // The bytes may belong to a secret: wipe them before dropping.
        let mut bytes = e.into_bytes();
        zeroize::Zeroize::zeroize(&mut bytes);
        UriError::NotUtf8 { part }
    })
}
