//! Errors of the MFA layer.
//!
//! Two kinds, on purpose. A refused code (wrong, replayed, throttled, locked, factor not active) is
//! one coarse [`MfaError::Rejected`] whose message is the same in every case, so the caller learns
//! nothing it could use to guess; the [`RejectReason`] inside is for the audit log only. Everything
//! else (a malformed URI, a bad policy, a short secret) is a configuration or input mistake and says
//! precisely what is wrong and how to fix it. No message ever contains secret material.

use serde::Serialize;
use thiserror::Error;

/// Why a code was refused. For the audit log: never show it to the person who typed the code.
///
/// Serializes as `{"type":"wrong_code"}`, `{"type":"throttled","retry_at":1700000060}`, and so
/// on: the variant's snake-case name, with its fields beside it (the shape of the audit log's
/// actions). It never holds the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RejectReason {
    /// The code is not made of exactly the configured number of ASCII digits.
    Malformed,
    /// No step in the window produced this code.
    WrongCode,
    /// The code matched only steps at or before the last accepted one. Not counted as a failure
    /// (a spent code gives no guessing power), so many of these in a row point to a server clock
    /// that was stepped back, not to a guesser.
    Replayed,
    /// Too many recent failures: no code is checked before this Unix time.
    Throttled {
        /// Unix time (seconds) from which codes are checked again.
        retry_at: u64,
    },
    /// Too many consecutive failures: locked until an administrative reset or a recovery code.
    Locked,
    /// The factor is pending confirmation or disabled, so it cannot be used to log in.
    NotActive,
    /// The enrollment was not confirmed in time; start a new one.
    EnrollmentExpired,
    /// Another request changed the factor first (compare-and-set lost); the code was not accepted.
    Conflict,
    /// The recovery code is not one of the user's unused codes.
    UnknownRecoveryCode,
}

/// Errors of the MFA layer.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum MfaError {
    /// A code or recovery code was refused. The message is deliberately the same for every reason.
    #[error("code rejected, try later")]
    Rejected(RejectReason),
    /// A secret could not be decoded or is too short.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// An `otpauth://` URI could not be parsed or built.
    #[error(transparent)]
    Uri(#[from] UriError),
    /// A parameter or policy value is out of range.
    #[error("invalid MFA setting `{setting}`: {reason}")]
    InvalidSetting {
        /// Which setting (for example `digits` or `lock_after`).
        setting: &'static str,
        /// What is wrong and what would fix it.
        reason: String,
    },
    /// A user or factor id is unusable.
    #[error("invalid {what} `{value}`: {reason}")]
    InvalidId {
        /// `user id` or `factor id`.
        what: &'static str,
        /// The offending id, shortened and escaped.
        value: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The operation needs a fresh verification of this user (step-up) and none was given in time.
    #[error(
        "step-up required: {reason}; verify a code (or a recovery code) of user `{user}` again, at most {max_age} s before this change"
    )]
    StepUpRequired {
        /// The user whose factor was to change.
        user: String,
        /// Why the given step-up did not count.
        reason: &'static str,
        /// The accepted age in seconds.
        max_age: u64,
    },
    /// The factor is in the wrong phase for this operation (for example confirming an active one).
    #[error("factor `{factor}` of user `{user}` is {actual}, but this needs it {expected}")]
    WrongPhase {
        /// The user.
        user: String,
        /// The factor.
        factor: String,
        /// The phase the operation needs.
        expected: &'static str,
        /// The phase it is in.
        actual: &'static str,
    },
    /// No such factor in the store.
    #[error("no MFA factor `{factor}` for user `{user}`")]
    NotFound {
        /// The user.
        user: String,
        /// The factor.
        factor: String,
    },
    /// An active factor with this id already exists for the user (a pending or disabled one is
    /// replaced by a new enrollment).
    #[error(
        "MFA factor `{factor}` of user `{user}` is active; pick another factor id, or disable it first"
    )]
    AlreadyExists {
        /// The user.
        user: String,
        /// The factor.
        factor: String,
    },
    /// A stored record does not follow the documented format (see docs/MFA.md).
    #[error("stored MFA record is malformed: {0}")]
    CorruptRecord(&'static str),
    /// The QR code could not be built (the URI is too long for any QR version).
    #[error("cannot render the enrollment QR code: {0}")]
    Qr(String),
    /// The random number generator failed (`crypto::fill_random`).
    #[error("the random number generator failed")]
    Random,
    /// A sealed seed did not open (wrong key-encryption key, a row copied from another user or
    /// factor, or tampering) or could not be sealed.
    #[error("sealed MFA seed: {0}")]
    Seal(#[from] crate::envelope::EnvelopeError),
    /// The factor's stored state failed its integrity check (`state_mac`, see docs/MFA.md): the
    /// row was edited, copied from another user or factor, or written under another state key.
    /// The factor is refused until an administrator looks at it; report this as a security event.
    #[error(
        "MFA factor `{factor}` of user `{user}` failed its state integrity check and is refused; report it as a security event"
    )]
    StateTampered {
        /// The user.
        user: String,
        /// The factor.
        factor: String,
    },
    /// The factor's row has no `state_mac` (written before state authentication existed). It is
    /// refused until [`MfaService::adopt_unauthenticated_state`](super::MfaService::adopt_unauthenticated_state)
    /// adopts it once.
    #[error(
        "MFA factor `{factor}` of user `{user}` has no state MAC (written by an older version); check the row and adopt it with `MfaService::adopt_unauthenticated_state`"
    )]
    StateUnauthenticated {
        /// The user.
        user: String,
        /// The factor.
        factor: String,
    },
    /// The factor store failed (database error; the message names it).
    #[error("MFA store: {0}")]
    Store(String),
    /// The factor store did not answer in time or could not be reached.
    #[error("MFA store unavailable: {0}")]
    StoreUnavailable(String),
    /// From the key hierarchy, for a service whose seeds are sealed in a key ring
    /// (`Custodian::mfa`); [`KeyError::SubjectErased`](crate::keys::KeyError::SubjectErased) when
    /// the staff member was erased.
    #[error(transparent)]
    Keys(Box<crate::keys::KeyError>),
    /// The outcome could not be written to the audit log, so it is refused (no step-up is
    /// returned). The factor's new state may already be stored: a code is spent all the same.
    #[error("MFA outcome not recorded in the audit log, so it is refused: {0}")]
    Audit(#[from] crate::audit::AuditError),
}

impl MfaError {
    /// The audit reason when this is a refusal, `None` for every other error.
    pub fn reject_reason(&self) -> Option<RejectReason> {
        match self {
            Self::Rejected(reason) => Some(*reason),
            _ => None,
        }
    }
}

impl From<crate::crypto::CryptoError> for MfaError {
    fn from(_: crate::crypto::CryptoError) -> Self {
        // The only crypto call of this layer is the CSPRNG.
        Self::Random
    }
}

/// Errors decoding a base32 secret. Positions are given, the offending characters never are: they
/// belong to a secret and could end up in a log.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretError {
    /// Nothing but spaces and padding.
    #[error("the secret is empty")]
    Empty,
    /// A character outside the RFC 4648 base32 alphabet.
    #[error(
        "invalid base32 character at position {position}: only A-Z, 2-7, spaces and trailing `=` are allowed"
    )]
    InvalidCharacter {
        /// Zero-based character index in the input.
        position: usize,
    },
    /// `=` before the end of the input.
    #[error("base32 padding `=` at position {position} is only allowed at the end")]
    MisplacedPadding {
        /// Zero-based character index in the input.
        position: usize,
    },
    /// A number of symbols that no byte string encodes to.
    #[error(
        "a base32 secret cannot have {symbols} symbols: a length of 1, 3 or 6 more than a multiple of 8 is impossible (is a character missing?)"
    )]
    InvalidLength {
        /// Number of base32 symbols (without spaces and padding).
        symbols: usize,
    },
    /// Too little entropy for a new secret.
    #[error(
        "the secret has {bits} bits but at least {min_bits} are required; for an existing 80-bit provider secret use `OtpSecret::import_legacy_base32`"
    )]
    TooShort {
        /// Bits in the secret.
        bits: usize,
        /// Bits required.
        min_bits: usize,
    },
    /// Longer than any sensible HMAC key.
    #[error("the secret has {bytes} bytes; at most {max_bytes} are accepted")]
    TooLong {
        /// Bytes in the secret.
        bytes: usize,
        /// Bytes accepted.
        max_bytes: usize,
    },
}

/// Errors parsing or building an `otpauth://` URI (the Key Uri Format of authenticator apps).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UriError {
    /// The scheme is not `otpauth://`.
    #[error("the URI must start with `otpauth://`")]
    NotOtpauth,
    /// The type after `otpauth://` is neither `totp` nor `hotp`.
    #[error("unknown OTP type `{found}`: expected `totp` or `hotp`")]
    UnknownType {
        /// The type found (shortened, escaped).
        found: String,
    },
    /// The URI is longer than any authenticator app accepts.
    #[error("the URI has {len} bytes; at most {max} are accepted")]
    TooLong {
        /// Length found.
        len: usize,
        /// Length accepted.
        max: usize,
    },
    /// A `%` not followed by two hexadecimal digits.
    #[error("invalid percent-encoding in the {part}: `%` must be followed by two hex digits")]
    BadPercentEncoding {
        /// `label` or the parameter name.
        part: &'static str,
    },
    /// Percent-decoded bytes are not UTF-8.
    #[error("the {part} is not valid UTF-8 after percent-decoding")]
    NotUtf8 {
        /// `label` or the parameter name.
        part: &'static str,
    },
    /// A control character (for example a newline) in a text field.
    #[error("the {part} contains a control character")]
    ControlCharacter {
        /// `label`, `issuer` or `account`.
        part: &'static str,
    },
    /// The account name is empty.
    #[error("the account name in the label is empty")]
    EmptyAccount,
    /// The issuer is present but empty.
    #[error("the issuer is empty: leave it out or give the service name")]
    EmptyIssuer,
    /// A `:` inside the issuer or the account name, which makes the label ambiguous.
    #[error("`:` is not allowed in the {part}; it separates issuer and account in the label")]
    Colon {
        /// `issuer` or `account`.
        part: &'static str,
    },
    /// A text field is too long.
    #[error("the {part} has {len} bytes; at most {max} are accepted")]
    FieldTooLong {
        /// `issuer` or `account`.
        part: &'static str,
        /// Length found.
        len: usize,
        /// Length accepted.
        max: usize,
    },
    /// The issuer in the label and the `issuer` parameter differ.
    #[error(
        "the label issuer `{label}` differs from the `issuer` parameter `{parameter}`: they must be the same"
    )]
    IssuerMismatch {
        /// Issuer in the label.
        label: String,
        /// Issuer parameter.
        parameter: String,
    },
    /// A parameter appears twice.
    #[error("the parameter `{name}` appears more than once")]
    DuplicateParameter {
        /// The parameter.
        name: String,
    },
    /// No `secret` parameter.
    #[error("the `secret` parameter is missing")]
    MissingSecret,
    /// The `secret` parameter is not valid base32 or too short.
    #[error("invalid `secret`: {0}")]
    Secret(SecretError),
    /// The `algorithm` parameter names no supported hash.
    #[error("unknown `algorithm` `{found}`: expected `SHA1`, `SHA256` or `SHA512`")]
    UnknownAlgorithm {
        /// The value found (shortened, escaped).
        found: String,
    },
    /// The `digits` parameter is not 6, 7 or 8.
    #[error("`digits` must be 6, 7 or 8, got `{found}`")]
    InvalidDigits {
        /// The value found (shortened, escaped).
        found: String,
    },
    /// The `period` parameter is not a positive whole number of seconds.
    #[error("`period` must be a whole number of seconds greater than 0, got `{found}`")]
    InvalidPeriod {
        /// The value found (shortened, escaped).
        found: String,
    },
    /// An `hotp` URI without a `counter` parameter.
    #[error("an `hotp` URI needs a `counter` parameter")]
    MissingCounter,
    /// The `counter` parameter is not a 64-bit unsigned number.
    #[error("`counter` must be a whole number from 0 to 18446744073709551615, got `{found}`")]
    InvalidCounter {
        /// The value found (shortened, escaped).
        found: String,
    },
}

/// Shortens and escapes untrusted text before it goes into an error message (no log injection).
pub(crate) fn excerpt(text: &str) -> String {
    const MAX_CHARS: usize = 40;
    let mut out: String = text
        .chars()
        .take(MAX_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(MAX_CHARS).is_some() {
        out.push('…');
    }
    out
}
