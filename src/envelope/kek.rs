use super::EnvelopeError;
use crate::crypto::Suite;
use crate::crypto::{AeadAlgorithm, AeadKey, CryptoError, default_provider};
use crate::secret::SecretKey;
use core::fmt;

/// Longest key-ring name, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Longest subject id, in bytes.
pub const MAX_SUBJECT_LEN: usize = 128;

/// Names the key that wraps a message's data key: a key ring, a version in it, and optionally the
/// subject (customer) whose per-subject key takes part in the wrap.
///
/// The id is written in clear in every ciphertext header. Use opaque subject ids (`cus_1842`), not
/// e-mail addresses.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId {
    name: String,
    version: u32,
    subject: Option<String>,
}

impl KeyId {
    /// A ring-level key id. `name`: 1 to 64 bytes of `A-Z a-z 0-9 . _ -`; `version` >= 1.
    pub fn new(name: impl Into<String>, version: u32) -> Result<Self, EnvelopeError> {
        let name = name.into();
        validate_name(&name)?;
        if version == 0 {
            return Err(EnvelopeError::InvalidKeyId(
                "version must be at least 1".into(),
            ));
        }
        Ok(Self {
            name,
            version,
            subject: None,
        })
    }

    /// The same ring and version, for `subject`: 1 to 128 bytes of UTF-8 without control characters.
    pub fn for_subject(mut self, subject: impl Into<String>) -> Result<Self, EnvelopeError> {
        let subject = subject.into();
        validate_subject(&subject)?;
        self.subject = Some(subject);
        Ok(self)
    }

    /// A key id from parts the caller has already checked with [`name_is_valid`] and
    /// [`subject_is_valid`] (the header parser), so they are not checked twice.
    pub(crate) fn from_checked_parts(name: &str, version: u32, subject: Option<&str>) -> Self {
        debug_assert!(name_is_valid(name) && version > 0 && subject.is_none_or(subject_is_valid));
        Self {
            name: name.to_owned(),
            version,
            subject: subject.map(str::to_owned),
        }
    }

    /// The key-ring name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key version within the ring.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The subject, for data sealed under a per-subject key.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// The same id with another version (used when rewrapping to a ring's new primary version).
    pub fn with_version(&self, version: u32) -> Result<Self, EnvelopeError> {
        if version == 0 {
            return Err(EnvelopeError::InvalidKeyId(
                "version must be at least 1".into(),
            ));
        }
        Ok(Self {
            version,
            ..self.clone()
        })
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key `{}` v{}", self.name, self.version)?;
        if let Some(subject) = &self.subject {
            write!(f, " for subject `{subject}`")?;
        }
        Ok(())
    }
}

/// Whether `name` is a valid key-ring name (see [`KeyId::new`]).
pub(crate) fn name_is_valid(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether `subject` is a valid subject id (see [`KeyId::for_subject`]).
pub(crate) fn subject_is_valid(subject: &str) -> bool {
    (1..=MAX_SUBJECT_LEN).contains(&subject.len()) && !subject.chars().any(char::is_control)
}

pub(crate) fn validate_name(name: &str) -> Result<(), EnvelopeError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(EnvelopeError::InvalidKeyId(format!(
            "key-ring name must be 1 to {MAX_NAME_LEN} bytes, got {}",
            name.len()
        )));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(EnvelopeError::InvalidKeyId(format!(
            "key-ring name `{}` contains {bad:?}; use only A-Z a-z 0-9 . _ -",
            name.escape_debug()
        )));
    }
    Ok(())
}

pub(crate) fn validate_subject(subject: &str) -> Result<(), EnvelopeError> {
    if subject.is_empty() || subject.len() > MAX_SUBJECT_LEN {
        return Err(EnvelopeError::InvalidKeyId(format!(
            "subject id must be 1 to {MAX_SUBJECT_LEN} bytes, got {}",
            subject.len()
        )));
    }
    if subject.chars().any(char::is_control) {
        return Err(EnvelopeError::InvalidKeyId(
            "subject id contains a control character".into(),
        ));
    }
    Ok(())
}

/// A key-encryption key: wraps and unwraps data keys.
///
/// The envelope layer needs only this from the key hierarchy, so key rings, per-subject keys and
/// test keys all plug in the same way. The suite of a KEK is the suite of every message it seals.
pub trait Kek: Send + Sync {
    /// The id written into headers of messages sealed with this key.
    fn key_id(&self) -> &KeyId;

    /// The AEAD algorithm (suite and backend) for both the wrap and the payload.
    fn algorithm(&self) -> &'static dyn AeadAlgorithm;

    /// The expanded wrapping key.
    fn wrapping_key(&self) -> &dyn AeadKey;
}

/// A key-encryption key held in memory, for tests, examples and callers with their own key
/// management. Production code gets its KEKs from a key store instead.
pub struct StaticKek {
    id: KeyId,
    algorithm: &'static dyn AeadAlgorithm,
    key: Box<dyn AeadKey>,
}

impl StaticKek {
    /// A KEK for AES-256-GCM (the default suite) from existing key material.
    pub fn new(id: KeyId, key: &SecretKey) -> Self {
        Self::with_algorithm(id, key, default_provider().aead(Suite::default()))
    }

    /// A KEK for another suite or backend.
    pub fn with_algorithm(
        id: KeyId,
        key: &SecretKey,
        algorithm: &'static dyn AeadAlgorithm,
    ) -> Self {
        Self {
            id,
            algorithm,
            key: algorithm.key(key),
        }
    }

    /// A KEK with fresh random material, named `name` version `version`.
    pub fn generate(name: &str, version: u32) -> Result<Self, EnvelopeError> {
        let id = KeyId::new(name, version)?;
        let key = SecretKey::try_random().map_err(|_: CryptoError| EnvelopeError::Random)?;
        Ok(Self::new(id, &key))
    }
}

impl Kek for StaticKek {
    fn key_id(&self) -> &KeyId {
        &self.id
    }

    fn algorithm(&self) -> &'static dyn AeadAlgorithm {
        self.algorithm
    }

    fn wrapping_key(&self) -> &dyn AeadKey {
        self.key.as_ref()
    }
}

impl fmt::Debug for StaticKek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticKek")
            .field("id", &self.id)
            .field("suite", &self.algorithm.suite().name())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_validate() {
        assert!(KeyId::new("customers", 1).is_ok());
        assert!(KeyId::new("", 1).is_err());
        assert!(KeyId::new("a".repeat(65), 1).is_err());
        assert!(KeyId::new("cust omers", 1).is_err());
        assert!(KeyId::new("customers", 0).is_err());
        let id = KeyId::new("customers", 3).unwrap();
        assert!(id.clone().for_subject("").is_err());
        assert!(id.clone().for_subject("a\nb").is_err());
        assert!(id.clone().for_subject("x".repeat(129)).is_err());
        let subject = id.for_subject("cus_42").unwrap();
        assert_eq!(
            subject.to_string(),
            "key `customers` v3 for subject `cus_42`"
        );
    }

    #[test]
    fn fast_checks_agree_with_the_validating_constructors() {
        let mut names: Vec<String> = (0u32..0x250)
            .filter_map(char::from_u32)
            .map(String::from)
            .collect();
        names.extend(
            [
                "",
                "customers",
                "a.b_c-d",
                "x".repeat(64).as_str(),
                "x".repeat(65).as_str(),
                "é",
                "a b",
            ]
            .map(String::from),
        );
        for name in &names {
            assert_eq!(
                name_is_valid(name),
                validate_name(name).is_ok(),
                "name {name:?}"
            );
            assert_eq!(
                subject_is_valid(name),
                validate_subject(name).is_ok(),
                "subject {name:?}"
            );
        }
        assert!(!subject_is_valid(&"s".repeat(129)));
    }

    #[test]
    fn static_kek_debug_shows_no_key_bytes() {
        let key = SecretKey::from_bytes([0x5A; 32]);
        let kek = StaticKek::new(KeyId::new("customers", 1).unwrap(), &key);
        let shown = format!("{kek:?}");
        assert!(
            shown.contains("customers") && shown.contains("AES-256-GCM"),
            "{shown}"
        );
        assert!(
            !shown.contains("90") && !shown.contains("5a") && !shown.contains("5A"),
            "{shown}"
        );
        assert_eq!(format!("{:?}", kek.wrapping_key()), "AeadKey(AES-256-GCM)");
    }
}
