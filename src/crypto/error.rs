use thiserror::Error;

/// Errors of the crypto layer. Deliberately coarse: an AEAD failure says nothing about why.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// Authentication failed (wrong key, nonce, associated data, tag or ciphertext).
    #[error("authentication failed")]
    Authentication,
    /// A nonce of the wrong length for the suite was given.
    #[error("nonce must be {expected} bytes for this suite, got {actual}")]
    NonceLength {
        /// Length the suite requires.
        expected: usize,
        /// Length that was given.
        actual: usize,
    },
    /// The message is longer than the suite can encrypt under one nonce.
    #[error("message too long for this suite")]
    MessageTooLong,
    /// The backend refused a well-formed key or returned a malformed tag (a backend bug).
    #[error("the crypto backend could not set up the key")]
    KeySetup,
    /// The random number generator failed (`crypto::fill_random`).
    #[error("the random number generator failed")]
    Random,
}
