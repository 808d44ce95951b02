use crate::envelope::EnvelopeError;
use thiserror::Error;

/// Errors of the record layer (typed fields and blind indexes).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordError {
    /// A value could not be normalized for indexing.
    #[error("cannot normalize value for indexing: {0}")]
    Normalize(String),
    /// A blind index is misconfigured.
    #[error("invalid blind index: {0}")]
    InvalidIndex(String),
    /// Sealing or opening failed (see [`EnvelopeError`]; decryption failures stay coarse).
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// A value could not be encoded, or an opened value is not of the expected type.
    #[error("{0}")]
    Serialize(String),
    /// A stored index token is not of the form `bi1:<version>:<base64url>`.
    #[error("malformed index token `{0}`")]
    MalformedToken(String),
}
