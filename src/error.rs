//! [`Error`](enum@Error), the one error of the facade, and [`ErrorKind`], what an application maps it by.
//!
//! Every layer keeps its own error enum (precise where the mistake is the caller's, coarse where
//! precision would help an attacker); they all convert into [`Error`](enum@Error). An application handles
//! errors by [`Error::kind`], which is stable across releases, instead of matching the variants
//! of six enums.
//!
//! ```
//! use custodian::{Error, ErrorKind};
//!
//! fn status(error: &Error) -> u16 {
//!     match error.kind() {
//!         // Tell the client exactly this, and nothing more.
//!         ErrorKind::CodeRejected => 401,
//!         kind => kind.http_status(),
//!     }
//! }
//! # let _ = status;
//! ```
//!
//! No kind is an oracle. Every failure to decrypt a well-formed ciphertext (wrong key, wrong
//! context, tampered bytes) is one kind, [`ErrorKind::DecryptFailed`], and every refused one-time
//! code is one kind, [`ErrorKind::CodeRejected`], whatever the reason (wrong, replayed, throttled,
//! locked): the reason is in the audit log, not in the response.

use crate::audit::AuditError;
use crate::envelope::EnvelopeError;
use crate::keys::KeyError;
use crate::mfa::MfaError;
use crate::rbac::PolicyError;
use crate::record::RecordError;
use crate::reveal::Denied;
use serde::Serialize;
use thiserror::Error;

/// Errors of the facade: key management, the record layer, MFA, access control and the audit
/// log. Map them by [`Error::kind`].
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// From the key hierarchy, including [`KeyError::SubjectErased`] and the coarse decrypt error.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// From typed fields or blind indexes.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// From the MFA service, including the coarse [`MfaError::Rejected`].
    #[error(transparent)]
    Mfa(#[from] MfaError),
    /// A policy file that does not load (where, and what would fix it).
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// [`Custodian::reveal`](crate::Custodian::reveal) was denied by the policy; the denial is
    /// recorded, nothing was decrypted.
    #[error("{0}")]
    Denied(Box<Denied>),
    /// The audit entry could not be written, so nothing is returned (fail closed).
    #[error("not recorded in the audit log, so refused: {0}")]
    Audit(#[from] AuditError),
    /// A [`SealedRecord`](crate::SealedRecord) that cannot be revealed as given (the message says
    /// why).
    #[error("invalid sealed record: {0}")]
    InvalidRecord(String),
    /// A deployment setting the facade cannot use, for example a store location this build has no
    /// store for (the message says which setting and what would fix it).
    #[error("configuration: {0}")]
    Configuration(String),
}

impl From<EnvelopeError> for Error {
    fn from(e: EnvelopeError) -> Self {
        Error::Keys(KeyError::Envelope(e))
    }
}

impl Error {
    /// What went wrong, for mapping to a response; stable across releases (see [`ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Keys(e) => key_kind(e),
            Error::Record(e) => record_kind(e),
            Error::Mfa(e) => mfa_kind(e),
            Error::Policy(_) => ErrorKind::Configuration,
            // A denial that a fresh step-up would lift asks for a code, like the MFA layer does.
            Error::Denied(denied) if denied.step_up_required().is_some() => {
                ErrorKind::StepUpRequired
            }
            Error::Denied(_) => ErrorKind::Denied,
            Error::Audit(e) => audit_kind(e),
            Error::InvalidRecord(_) => ErrorKind::InvalidInput,
            Error::Configuration(_) => ErrorKind::Configuration,
        }
    }

    /// A message safe to send to the client, by kind: the error's own message where it is about
    /// the request (invalid input, denied, a step-up, not found, conflict, erased), `code
    /// rejected` for every refused code, and a generic text for every server-side kind (log
    /// the error itself: its `Display` says what failed).
    ///
    /// ```
    /// # use custodian::{Error, ErrorKind};
    /// let error = Error::from(custodian::keys::KeyError::Store("disk I/O error at page 7".into()));
    /// assert_eq!(error.kind(), ErrorKind::Internal);
    /// assert_eq!(error.public_message(), "internal error");
    /// ```
    pub fn public_message(&self) -> std::borrow::Cow<'_, str> {
        use std::borrow::Cow;
        match self.kind() {
            ErrorKind::CodeRejected => Cow::Borrowed("code rejected"),
            ErrorKind::StoreUnavailable => Cow::Borrowed("service unavailable, try again later"),
            kind if kind.http_status() >= 500 => Cow::Borrowed("internal error"),
            _ => Cow::Owned(self.to_string()),
        }
    }

    /// Whether the value belonged to a customer whose key was erased (crypto-shredded).
    pub fn is_subject_erased(&self) -> bool {
        self.kind() == ErrorKind::SubjectErased
    }

    /// The denial, when [`Custodian::reveal`](crate::Custodian::reveal) was denied by the policy.
    pub fn denied(&self) -> Option<&Denied> {
        match self {
            Error::Denied(denied) => Some(denied),
            _ => None,
        }
    }
}

/// What kind of failure an [`Error`](enum@Error) is: the stable part to map to an HTTP status, a retry or an
/// alert. Serializes as its snake-case name (`"code_rejected"`).
///
/// | kind | usual HTTP status | what the application does |
/// |---|---|---|
/// | [`InvalidInput`](Self::InvalidInput) | 400 | tell the caller what to fix (the message says) |
/// | [`Denied`](Self::Denied) | 403 | show the denial (it names the rule and what would allow it) |
/// | [`StepUpRequired`](Self::StepUpRequired) | 401 | ask for a one-time code, then retry |
/// | [`CodeRejected`](Self::CodeRejected) | 401 | say "code rejected", nothing more |
/// | [`SubjectErased`](Self::SubjectErased) | 410 | the customer was erased: treat the value as gone |
/// | [`NotFound`](Self::NotFound) | 404 | no such key ring or MFA factor |
/// | [`Conflict`](Self::Conflict) | 409 | the current state does not allow it, or a concurrent change won: reload, retry |
/// | [`DecryptFailed`](Self::DecryptFailed) | 500 | a stored value does not open: wrong context, wrong key or tampered bytes |
/// | [`KeyRetired`](Self::KeyRetired) | 500 | the key version is disabled, destroyed or used up: rotate, re-enable |
/// | [`Tampered`](Self::Tampered) | 500 | stored state failed its integrity check: alert, do not retry |
/// | [`StoreUnavailable`](Self::StoreUnavailable) | 503 | the database is down or busy: retry later |
/// | [`Configuration`](Self::Configuration) | 500 | a deployment mistake (root key, policy file, setting): fix and restart |
/// | [`Internal`](Self::Internal) | 500 | anything else (a store error, the random generator): log it |
///
/// A client-supplied ciphertext that does not open is better answered with 400 than 500; the
/// kind cannot know where the bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// A malformed argument: an encryption context, a ciphertext's header or text form, a token, an
    /// id, a value that does not (de)serialize.
    InvalidInput,
    /// The access policy denied the request.
    Denied,
    /// The action needs a recent MFA step-up.
    StepUpRequired,
    /// A one-time or recovery code was refused, for whatever reason (deliberately one kind).
    CodeRejected,
    /// The value's customer was erased.
    SubjectErased,
    /// No such key ring or MFA factor.
    NotFound,
    /// The current state does not allow the operation (wrong phase, already exists, a key version
    /// still in use), or concurrent writers kept conflicting.
    Conflict,
    /// A well-formed ciphertext did not open (deliberately one kind: wrong key, wrong context and
    /// tampered bytes look the same).
    DecryptFailed,
    /// The key version the operation needs is disabled, destroyed or has reached its usage limit.
    KeyRetired,
    /// Stored state (a key-store row, an MFA factor, the audit log) failed its integrity check.
    Tampered,
    /// The store could not be reached or did not answer in time.
    StoreUnavailable,
    /// A deployment mistake: the root key, a policy file, a setting.
    Configuration,
    /// Any other failure: a store error, the random generator.
    Internal,
}

impl ErrorKind {
    /// The HTTP status this kind usually maps to (see the table above).
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::InvalidInput => 400,
            ErrorKind::Denied => 403,
            ErrorKind::StepUpRequired | ErrorKind::CodeRejected => 401,
            ErrorKind::SubjectErased => 410,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::StoreUnavailable => 503,
            ErrorKind::DecryptFailed
            | ErrorKind::KeyRetired
            | ErrorKind::Tampered
            | ErrorKind::Configuration
            | ErrorKind::Internal => 500,
        }
    }
}

fn envelope_kind(e: &EnvelopeError) -> ErrorKind {
    match e {
        EnvelopeError::Decrypt
        | EnvelopeError::WrongKey { .. }
        | EnvelopeError::WrongSuite { .. } => ErrorKind::DecryptFailed,
        EnvelopeError::Random => ErrorKind::Internal,
        _ => ErrorKind::InvalidInput,
    }
}

fn key_kind(e: &KeyError) -> ErrorKind {
    match e {
        KeyError::Envelope(e) => envelope_kind(e),
        KeyError::SubjectErased { .. } => ErrorKind::SubjectErased,
        KeyError::VersionDestroyed { .. }
        | KeyError::VersionDisabled { .. }
        | KeyError::UsageExhausted { .. } => ErrorKind::KeyRetired,
        // A ciphertext naming a version its ring never had was not made by this store.
        KeyError::UnknownVersion { .. } => ErrorKind::DecryptFailed,
        KeyError::UnknownRing(_) => ErrorKind::NotFound,
        KeyError::RingExists(_)
        | KeyError::Conflict(_)
        | KeyError::SubjectKeysDepend { .. }
        | KeyError::Refused(_)
        | KeyError::LedgerMoved => ErrorKind::Conflict,
        KeyError::Tampered { .. } => ErrorKind::Tampered,
        KeyError::InvalidPolicy(_)
        | KeyError::RootKey(_)
        | KeyError::RootKeyPermissions { .. }
        | KeyError::RootUnwrap(_)
        | KeyError::RootProvider(_)
        | KeyError::SchemaTooNew { .. } => ErrorKind::Configuration,
        KeyError::StoreUnavailable(_) => ErrorKind::StoreUnavailable,
        KeyError::Audit(e) => audit_kind(e),
        _ => ErrorKind::Internal,
    }
}

fn record_kind(e: &RecordError) -> ErrorKind {
    match e {
        RecordError::Envelope(e) => envelope_kind(e),
        // A blind index built with an impossible setting (token length, tenant id), or whose keys
        // cannot be derived: the deployment's to fix, not the request's.
        RecordError::InvalidIndex(_) => ErrorKind::Configuration,
        _ => ErrorKind::InvalidInput,
    }
}

fn mfa_kind(e: &MfaError) -> ErrorKind {
    match e {
        MfaError::Rejected(_) => ErrorKind::CodeRejected,
        MfaError::StepUpRequired { .. } => ErrorKind::StepUpRequired,
        MfaError::Secret(_) | MfaError::Uri(_) | MfaError::InvalidId { .. } => {
            ErrorKind::InvalidInput
        }
        MfaError::InvalidSetting { .. } => ErrorKind::Configuration,
        MfaError::WrongPhase { .. } | MfaError::AlreadyExists { .. } => ErrorKind::Conflict,
        MfaError::NotFound { .. } => ErrorKind::NotFound,
        MfaError::CorruptRecord(_)
        | MfaError::StateTampered { .. }
        | MfaError::StateUnauthenticated { .. } => ErrorKind::Tampered,
        MfaError::Seal(e) => envelope_kind(e),
        MfaError::Keys(e) => key_kind(e),
        MfaError::StoreUnavailable(_) => ErrorKind::StoreUnavailable,
        MfaError::Audit(e) => audit_kind(e),
        _ => ErrorKind::Internal,
    }
}

fn audit_kind(e: &AuditError) -> ErrorKind {
    match e {
        AuditError::StoreUnavailable(_) => ErrorKind::StoreUnavailable,
        AuditError::Store { .. } | AuditError::Random => ErrorKind::Internal,
        AuditError::IndexOutOfRange { .. }
        | AuditError::SizeOutOfRange { .. }
        | AuditError::SizesReversed { .. }
        | AuditError::TreeTooLarge(_)
        | AuditError::InvalidField { .. }
        | AuditError::MalformedEntry { .. }
        | AuditError::MalformedCheckpoint { .. }
        | AuditError::NotAnErasure { .. } => ErrorKind::InvalidInput,
        AuditError::InvalidKey(_) => ErrorKind::Configuration,
        // Everything else is a verification that failed: a proof, a signature, a rollback, an
        // entry edited in place, a store that broke its contract.
        _ => ErrorKind::Tampered,
    }
}
