use super::KeyId;
use crate::crypto::{CryptoError, Suite};
use thiserror::Error;

/// Errors of the envelope layer.
///
/// Authentication failures are one coarse variant, [`EnvelopeError::Decrypt`]: it does not say whether
/// the wrapped key, the payload or the context was wrong. Structural problems, which anyone can see in
/// the header without a key, are reported precisely; no variant carries secret material.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The key, the context or the ciphertext is wrong (deliberately no detail).
    #[error("decryption failed: wrong key, wrong context, or tampered ciphertext")]
    Decrypt,
    /// The bytes are not a well-formed v1 ciphertext.
    #[error("malformed ciphertext: {0}")]
    Malformed(&'static str),
    /// The format version byte is not one this build understands.
    #[error("unsupported ciphertext format version `{0}` (this build reads version 1)")]
    UnsupportedVersion(u8),
    /// The suite byte names no known suite.
    #[error("unknown AEAD suite id `{0}`")]
    UnknownSuite(u8),
    /// The ciphertext names a different key than the one given.
    #[error("ciphertext was sealed under {found}, not under the given {given}")]
    WrongKey {
        /// Key named in the ciphertext header.
        found: KeyId,
        /// Key that was passed in.
        given: KeyId,
    },
    /// The ciphertext's suite differs from the key's.
    #[error("ciphertext uses {found}, but the key is for {given}")]
    WrongSuite {
        /// Suite named in the header.
        found: &'static str,
        /// Suite of the given key.
        given: &'static str,
    },
    /// An encryption-context entry is invalid.
    #[error("invalid encryption context: {0}")]
    InvalidContext(String),
    /// A key id is invalid.
    #[error("invalid key id: {0}")]
    InvalidKeyId(String),
    /// The plaintext exceeds [`super::MAX_PAYLOAD_LEN`].
    #[error("plaintext of {0} bytes exceeds the 1 GiB limit of format v1")]
    TooLarge(usize),
    /// The text form is not `cst1:` followed by unpadded base64url.
    #[error("malformed text ciphertext: {0}")]
    MalformedText(&'static str),
    /// The buffer given to [`super::open_into`] is shorter than the plaintext (whose length is
    /// public: [`super::Header::payload_len`]).
    #[error("output buffer of {given} bytes is too small for a plaintext of {needed} bytes")]
    BufferTooSmall {
        /// The plaintext length, from the header.
        needed: usize,
        /// Length of the buffer that was given.
        given: usize,
    },
    /// The random number generator failed (sealing only).
    #[error("random number generator failed")]
    Random,
}

impl EnvelopeError {
    /// Maps a crypto-layer failure without revealing which step failed.
    pub(crate) fn from_crypto(err: CryptoError) -> Self {
        match err {
            CryptoError::Random => EnvelopeError::Random,
            _ => EnvelopeError::Decrypt,
        }
    }

    pub(crate) fn wrong_suite(found: Suite, given: Suite) -> Self {
        EnvelopeError::WrongSuite {
            found: found.name(),
            given: given.name(),
        }
    }
}
