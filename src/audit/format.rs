//! The binary form of an audit entry, version 1 (docs/AUDIT.md has the byte-by-byte table).
//!
//! Big-endian integers, `u16`-length-prefixed UTF-8 strings, one tag byte per choice. Decoding is
//! strict so that each entry has exactly one encoding, and so one leaf hash: every length, tag and
//! limit the encoder enforces, the decoder enforces too, and trailing bytes are refused.

use super::entry::{
    Action, AuditEntry, AuditEvent, Decision, MAX_FIELDS, MAX_NAME_LEN, MAX_RESOURCE_LEN, Outcome,
};
use super::error::AuditError;
use super::hash::{HASH_LEN, Hash};

/// The format version this code writes and reads.
pub(crate) const VERSION: u8 = 1;

mod tag {
    pub(super) const KEY_RING_CREATED: u8 = 0x01;
    pub(super) const KEY_RING_ROTATED: u8 = 0x02;
    pub(super) const KEY_VERSION_DISABLED: u8 = 0x03;
    pub(super) const KEY_VERSION_DESTROYED: u8 = 0x04;
    pub(super) const KEY_POLICY_CHANGED: u8 = 0x05;
    pub(super) const SUBJECT_CREATED: u8 = 0x10;
    pub(super) const SUBJECT_ERASED: u8 = 0x11;
    pub(super) const FIELDS_REVEALED: u8 = 0x20;
    pub(super) const ACCESS_DECISION: u8 = 0x21;
    pub(super) const MFA_ENROLLED: u8 = 0x30;
    pub(super) const MFA_CONFIRMED: u8 = 0x31;
    pub(super) const MFA_VERIFIED: u8 = 0x32;
    pub(super) const MFA_FAILED: u8 = 0x33;
    pub(super) const MFA_REPLAYED: u8 = 0x34;
    pub(super) const MFA_LOCKED: u8 = 0x35;
    pub(super) const MFA_UNLOCKED: u8 = 0x36;
    pub(super) const RECOVERY_CODE_USED: u8 = 0x37;
    pub(super) const MFA_DISABLED: u8 = 0x38;
    pub(super) const POLICY_LOADED: u8 = 0x40;
}

/// How a string field is checked: its name (for errors), whether it may be empty, its limit.
struct Text {
    field: &'static str,
    may_be_empty: bool,
    max: usize,
    too_long: &'static str,
}

const ACTOR: Text = Text {
    field: "actor",
    may_be_empty: false,
    max: MAX_NAME_LEN,
    too_long: "longer than 256 bytes",
};
const RESOURCE: Text = Text {
    field: "resource",
    may_be_empty: true,
    max: MAX_RESOURCE_LEN,
    too_long: "longer than 1024 bytes",
};
const SUBJECT: Text = Text {
    field: "subject",
    ..ACTOR
};
const RULE: Text = Text {
    field: "rule",
    ..ACTOR
};
const FIELD: Text = Text {
    field: "fields",
    ..ACTOR
};

/// Why a string is refused, worded for the caller who built it and for the decoder.
enum Problem {
    Empty,
    TooLong,
    Control,
}

impl Text {
    fn check(&self, value: &str) -> Result<(), Problem> {
        if value.is_empty() && !self.may_be_empty {
            return Err(Problem::Empty);
        }
        if value.len() > self.max {
            return Err(Problem::TooLong);
        }
        if value.chars().any(char::is_control) {
            return Err(Problem::Control);
        }
        Ok(())
    }

    fn validate(&self, value: &str) -> Result<(), AuditError> {
        self.check(value)
            .map_err(|problem| AuditError::InvalidField {
                field: self.field,
                reason: match problem {
                    Problem::Empty => "must not be empty",
                    Problem::TooLong => self.too_long,
                    Problem::Control => {
                        "contains a control character (newlines and tabs are refused too)"
                    }
                },
            })
    }
}

pub(crate) fn validate(event: &AuditEvent) -> Result<(), AuditError> {
    ACTOR.validate(&event.actor)?;
    RESOURCE.validate(&event.resource)?;
    if let Some(subject) = &event.subject {
        SUBJECT.validate(subject)?;
    }
    match &event.action {
        Action::FieldsRevealed { fields } => {
            if fields.is_empty() || fields.len() > MAX_FIELDS {
                return Err(AuditError::InvalidField {
                    field: "fields",
                    reason: "must list 1 to 256 field names",
                });
            }
            for name in fields {
                FIELD.validate(name)?;
            }
        }
        Action::AccessDecision {
            rule: Some(rule), ..
        } => RULE.validate(rule)?,
        _ => {}
    }
    Ok(())
}

pub(crate) fn encode(entry: &AuditEntry) -> Result<Vec<u8>, AuditError> {
    let event = &entry.event;
    validate(event)?;
    let mut out = Vec::with_capacity(64 + event.actor.len() + event.resource.len());
    out.push(VERSION);
    out.extend_from_slice(&entry.index.to_be_bytes());
    out.extend_from_slice(&event.time.to_be_bytes());
    put_str(&mut out, &event.actor);
    encode_action(&mut out, &event.action);
    put_str(&mut out, &event.resource);
    match &event.subject {
        None => out.push(0),
        Some(subject) => {
            out.push(1);
            put_str(&mut out, subject);
        }
    }
    out.push(match event.outcome {
        Outcome::Success => 0,
        Outcome::Failure => 1,
        Outcome::Denied => 2,
    });
    Ok(out)
}

fn encode_action(out: &mut Vec<u8>, action: &Action) {
    let simple = |out: &mut Vec<u8>, t: u8| out.push(t);
    match action {
        Action::KeyRingCreated => simple(out, tag::KEY_RING_CREATED),
        Action::KeyRingRotated { version } => put_version(out, tag::KEY_RING_ROTATED, *version),
        Action::KeyVersionDisabled { version } => {
            put_version(out, tag::KEY_VERSION_DISABLED, *version);
        }
        Action::KeyVersionDestroyed { version } => {
            put_version(out, tag::KEY_VERSION_DESTROYED, *version);
        }
        Action::KeyPolicyChanged => simple(out, tag::KEY_POLICY_CHANGED),
        Action::SubjectCreated => simple(out, tag::SUBJECT_CREATED),
        Action::SubjectErased => simple(out, tag::SUBJECT_ERASED),
        Action::FieldsRevealed { fields } => {
            out.push(tag::FIELDS_REVEALED);
            // INVARIANT: validate() capped the count at MAX_FIELDS, which fits in a u16.
            out.extend_from_slice(&(fields.len() as u16).to_be_bytes());
            for name in fields {
                put_str(out, name);
            }
        }
        Action::AccessDecision {
            decision,
            rule,
            policy_digest,
        } => {
            out.push(tag::ACCESS_DECISION);
            out.push(match decision {
                Decision::Deny => 0,
                Decision::Allow => 1,
            });
            match rule {
                None => out.push(0),
                Some(rule) => {
                    out.push(1);
                    put_str(out, rule);
                }
            }
            out.extend_from_slice(policy_digest.as_bytes());
        }
        Action::MfaEnrolled => simple(out, tag::MFA_ENROLLED),
        Action::MfaConfirmed => simple(out, tag::MFA_CONFIRMED),
        Action::MfaVerified => simple(out, tag::MFA_VERIFIED),
        Action::MfaFailed => simple(out, tag::MFA_FAILED),
        Action::MfaReplayed => simple(out, tag::MFA_REPLAYED),
        Action::MfaLocked => simple(out, tag::MFA_LOCKED),
        Action::MfaUnlocked => simple(out, tag::MFA_UNLOCKED),
        Action::RecoveryCodeUsed => simple(out, tag::RECOVERY_CODE_USED),
        Action::MfaDisabled => simple(out, tag::MFA_DISABLED),
        Action::PolicyLoaded { policy_digest } => {
            out.push(tag::POLICY_LOADED);
            out.extend_from_slice(policy_digest.as_bytes());
        }
    }
}

fn put_version(out: &mut Vec<u8>, tag: u8, version: u32) {
    out.push(tag);
    out.extend_from_slice(&version.to_be_bytes());
}

/// INVARIANT: callers validated the string, so its length is at most 1024 and fits in a u16.
fn put_str(out: &mut Vec<u8>, value: &str) {
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value.as_bytes());
}

/// A cursor over untrusted bytes that reports the offset of what it could not read.
struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn fail(&self, reason: &'static str) -> AuditError {
        AuditError::MalformedEntry {
            offset: self.offset,
            reason,
        }
    }

    fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], AuditError> {
        let rest = self.bytes.get(self.offset..).unwrap_or_default();
        let (taken, _) = rest.split_at_checked(len).ok_or_else(|| self.fail(what))?;
        self.offset += len;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], AuditError> {
        let bytes = self.take(N, what)?;
        bytes.try_into().map_err(|_| self.fail(what))
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, AuditError> {
        let [byte] = self.array::<1>(what)?;
        Ok(byte)
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, AuditError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, AuditError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, AuditError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    fn text(&mut self, rule: &Text) -> Result<String, AuditError> {
        let start = self.offset;
        let len = usize::from(self.u16("a string length (2 bytes)")?);
        let bytes = self.take(len, "string bytes (shorter than its length)")?;
        let value = std::str::from_utf8(bytes).map_err(|_| AuditError::MalformedEntry {
            offset: start + 2,
            reason: "a string that is not UTF-8",
        })?;
        rule.check(value)
            .map_err(|problem| AuditError::MalformedEntry {
                offset: start,
                reason: match problem {
                    Problem::Empty => "an empty string where one is required",
                    Problem::TooLong => "a string longer than its field allows",
                    Problem::Control => "a string with a control character",
                },
            })?;
        Ok(value.to_owned())
    }

    fn flag(&mut self, what: &'static str) -> Result<bool, AuditError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => {
                self.offset -= 1;
                Err(self.fail("a presence or decision byte other than 0 or 1"))
            }
        }
    }
}

pub(crate) fn decode(bytes: &[u8]) -> Result<AuditEntry, AuditError> {
    let mut r = Reader { bytes, offset: 0 };
    let version = r.u8("the version byte")?;
    if version != VERSION {
        r.offset = 0;
        return Err(r.fail("an unknown version (this code reads version 1)"));
    }
    let index = r.u64("the index (8 bytes)")?;
    let time = r.u64("the time (8 bytes)")?;
    let actor = r.text(&ACTOR)?;
    let action = decode_action(&mut r)?;
    let resource = r.text(&RESOURCE)?;
    let subject = if r.flag("the subject presence byte")? {
        Some(r.text(&SUBJECT)?)
    } else {
        None
    };
    let outcome = match r.u8("the outcome byte")? {
        0 => Outcome::Success,
        1 => Outcome::Failure,
        2 => Outcome::Denied,
        _ => {
            r.offset -= 1;
            return Err(r.fail("an unknown outcome"));
        }
    };
    if r.offset != bytes.len() {
        return Err(r.fail("trailing bytes after the entry"));
    }
    Ok(AuditEntry {
        index,
        event: AuditEvent {
            time,
            actor,
            action,
            resource,
            subject,
            outcome,
        },
    })
}

fn decode_action(r: &mut Reader<'_>) -> Result<Action, AuditError> {
    let at = r.offset;
    Ok(match r.u8("the action tag")? {
        tag::KEY_RING_CREATED => Action::KeyRingCreated,
        tag::KEY_RING_ROTATED => Action::KeyRingRotated {
            version: r.u32("a key version (4 bytes)")?,
        },
        tag::KEY_VERSION_DISABLED => Action::KeyVersionDisabled {
            version: r.u32("a key version (4 bytes)")?,
        },
        tag::KEY_VERSION_DESTROYED => Action::KeyVersionDestroyed {
            version: r.u32("a key version (4 bytes)")?,
        },
        tag::KEY_POLICY_CHANGED => Action::KeyPolicyChanged,
        tag::SUBJECT_CREATED => Action::SubjectCreated,
        tag::SUBJECT_ERASED => Action::SubjectErased,
        tag::FIELDS_REVEALED => {
            let count_at = r.offset;
            let count = usize::from(r.u16("the field count (2 bytes)")?);
            if count == 0 || count > MAX_FIELDS {
                r.offset = count_at;
                return Err(r.fail("a field count outside 1..=256"));
            }
            let mut fields = Vec::with_capacity(count);
            for _ in 0..count {
                fields.push(r.text(&FIELD)?);
            }
            Action::FieldsRevealed { fields }
        }
        tag::ACCESS_DECISION => {
            let decision = if r.flag("the decision byte")? {
                Decision::Allow
            } else {
                Decision::Deny
            };
            let rule = if r.flag("the rule presence byte")? {
                Some(r.text(&RULE)?)
            } else {
                None
            };
            let policy_digest = Hash::from_bytes(r.array::<HASH_LEN>("a 32-byte policy digest")?);
            Action::AccessDecision {
                decision,
                rule,
                policy_digest,
            }
        }
        tag::MFA_ENROLLED => Action::MfaEnrolled,
        tag::MFA_CONFIRMED => Action::MfaConfirmed,
        tag::MFA_VERIFIED => Action::MfaVerified,
        tag::MFA_FAILED => Action::MfaFailed,
        tag::MFA_REPLAYED => Action::MfaReplayed,
        tag::MFA_LOCKED => Action::MfaLocked,
        tag::MFA_UNLOCKED => Action::MfaUnlocked,
        tag::RECOVERY_CODE_USED => Action::RecoveryCodeUsed,
        tag::MFA_DISABLED => Action::MfaDisabled,
        tag::POLICY_LOADED => Action::PolicyLoaded {
            policy_digest: Hash::from_bytes(r.array::<HASH_LEN>("a 32-byte policy digest")?),
        },
        _ => {
            r.offset = at;
            return Err(r.fail("an unknown action tag"));
        }
    })
}
