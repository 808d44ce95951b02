//! What an audit entry records: who did what to which resource and subject, when, with which
//! outcome. Only ids, names, numbers and digests fit in these types: no field takes customer data
//! or key material, and the strings are checked for length and control characters.

use serde::{Deserialize, Serialize};

use super::error::AuditError;
use super::format;
use super::hash::{Hash, leaf_hash};

/// The most bytes of an actor, a subject id, a rule id or a field name.
pub const MAX_NAME_LEN: usize = 256;
/// The most bytes of a resource.
pub const MAX_RESOURCE_LEN: usize = 1024;
/// The most field names one [`Action::FieldsRevealed`] lists.
pub const MAX_FIELDS: usize = 256;

/// Allowed or denied, for [`Action::AccessDecision`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The request was denied.
    Deny,
    /// The request was allowed.
    Allow,
}

/// Whether the recorded operation took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It took effect.
    #[default]
    Success,
    /// It failed (an error, a wrong code).
    Failure,
    /// It was refused by policy before anything happened.
    Denied,
}

/// The recorded operation. Each variant has a fixed tag byte (docs/AUDIT.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Action {
    /// A key ring was created (the resource names the ring).
    KeyRingCreated,
    /// A key ring was rotated to a new version.
    KeyRingRotated {
        /// The new primary version.
        version: u32,
    },
    /// A key version was disabled for encryption or decryption.
    KeyVersionDisabled {
        /// The version.
        version: u32,
    },
    /// A key version was destroyed: what it protected no longer opens.
    KeyVersionDestroyed {
        /// The version.
        version: u32,
    },
    /// A key ring's rotation policy changed.
    KeyPolicyChanged,
    /// A subject (a customer) got its own key.
    SubjectCreated,
    /// A subject's key was erased (crypto-shredding).
    SubjectErased,
    /// Fields of a record were decrypted and shown.
    FieldsRevealed {
        /// The field names (never their values).
        fields: Vec<String>,
    },
    /// An access-control decision.
    AccessDecision {
        /// Allowed or denied.
        decision: Decision,
        /// The deciding rule, if a rule decided (none when nothing allowed the request).
        rule: Option<String>,
        /// SHA-256 of the policy text that decided.
        policy_digest: Hash,
    },
    /// An MFA factor was enrolled (pending confirmation).
    MfaEnrolled,
    /// An MFA enrollment was confirmed.
    MfaConfirmed,
    /// An MFA code was accepted.
    MfaVerified,
    /// An MFA code was refused.
    MfaFailed,
    /// An already used MFA code was presented again.
    MfaReplayed,
    /// An MFA factor was locked after repeated failures.
    MfaLocked,
    /// An MFA factor was unlocked.
    MfaUnlocked,
    /// A recovery code was used.
    RecoveryCodeUsed,
    /// An MFA factor was disabled (by its user after a step-up, or by an administrator); the user
    /// must enroll again to use it.
    MfaDisabled,
    /// An access policy was loaded.
    PolicyLoaded {
        /// SHA-256 of the policy text.
        policy_digest: Hash,
    },
}

impl Action {
    /// The snake-case name of the action, as in the JSON export.
    pub fn name(&self) -> &'static str {
        match self {
            Self::KeyRingCreated => "key_ring_created",
            Self::KeyRingRotated { .. } => "key_ring_rotated",
            Self::KeyVersionDisabled { .. } => "key_version_disabled",
            Self::KeyVersionDestroyed { .. } => "key_version_destroyed",
            Self::KeyPolicyChanged => "key_policy_changed",
            Self::SubjectCreated => "subject_created",
            Self::SubjectErased => "subject_erased",
            Self::FieldsRevealed { .. } => "fields_revealed",
            Self::AccessDecision { .. } => "access_decision",
            Self::MfaEnrolled => "mfa_enrolled",
            Self::MfaConfirmed => "mfa_confirmed",
            Self::MfaVerified => "mfa_verified",
            Self::MfaFailed => "mfa_failed",
            Self::MfaReplayed => "mfa_replayed",
            Self::MfaLocked => "mfa_locked",
            Self::MfaUnlocked => "mfa_unlocked",
            Self::RecoveryCodeUsed => "recovery_code_used",
            Self::MfaDisabled => "mfa_disabled",
            Self::PolicyLoaded { .. } => "policy_loaded",
        }
    }
}

/// What the application records; the log gives it its index when it appends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When, Unix seconds.
    pub time: u64,
    /// Who: the principal's id (never a name or an email address).
    pub actor: String,
    /// What.
    pub action: Action,
    /// On what: a key-ring name, `table/record`, `user/factor` or a policy source. May be empty.
    pub resource: String,
    /// Whose data, if it concerns one subject: the subject id the application chose.
    pub subject: Option<String>,
    /// Whether it took effect.
    pub outcome: Outcome,
}

impl AuditEvent {
    /// An event that succeeded and concerns no subject; see [`with_subject`](Self::with_subject)
    /// and [`with_outcome`](Self::with_outcome).
    pub fn new(
        time: u64,
        actor: impl Into<String>,
        action: Action,
        resource: impl Into<String>,
    ) -> Self {
        Self {
            time,
            actor: actor.into(),
            action,
            resource: resource.into(),
            subject: None,
            outcome: Outcome::Success,
        }
    }

    /// The subject (customer) id this event concerns.
    #[must_use]
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// The outcome, when not [`Outcome::Success`].
    #[must_use]
    pub fn with_outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// Checks every field against the limits of docs/AUDIT.md.
    pub fn validate(&self) -> Result<(), AuditError> {
        format::validate(self)
    }
}

/// An event at its place in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Its position in the log, from 0; part of the signed bytes, so an entry cannot be moved.
    pub index: u64,
    /// What was recorded.
    #[serde(flatten)]
    pub event: AuditEvent,
}

impl AuditEntry {
    /// The canonical binary encoding (docs/AUDIT.md), the bytes the Merkle leaf hashes.
    pub fn encode(&self) -> Result<Vec<u8>, AuditError> {
        format::encode(self)
    }

    /// Decodes the binary form, refusing any byte string that is not the one canonical encoding
    /// of an entry (trailing bytes, an unknown tag, a bad length, a field past its limits).
    pub fn decode(bytes: &[u8]) -> Result<Self, AuditError> {
        format::decode(bytes)
    }

    /// The Merkle leaf hash of the encoding: `SHA-256(0x00 || encode())`.
    pub fn leaf_hash(&self) -> Result<Hash, AuditError> {
        Ok(leaf_hash(&self.encode()?))
    }
}
