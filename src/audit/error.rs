//! Errors of the audit layer.
//!
//! Nothing here is secret, so every message is precise: which index, which size, which check, and
//! what would fix it. Text taken from untrusted input (a checkpoint, an entry) is shortened and
//! escaped before it goes into a message.

use thiserror::Error;

/// Everything that can go wrong appending to, proving from or verifying an audit log.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The storage backend failed. The backend's own error is the `source`, kept opaque so that a
    /// driver's version never becomes part of custodian's API.
    #[error("audit store: {message}")]
    Store {
        /// What the store was doing.
        message: String,
        /// The backend's error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The storage backend could not be reached, or did not answer within its timeout (a
    /// PostgreSQL server that is down or restarting). An append that timed out after the server
    /// received its commit may still have been stored (a lost reply): check the entries before
    /// appending the same events again.
    #[error("audit store unavailable: {0}")]
    StoreUnavailable(String),
    /// The store returned something that breaks its contract (wrong number of hashes, a gap).
    #[error("audit store broke its contract: {0}")]
    StoreContract(String),
    /// A leaf index at or past the tree size.
    #[error("leaf index {index} is not in a tree of size {tree_size}")]
    IndexOutOfRange {
        /// The index asked for.
        index: u64,
        /// The tree size it was asked against.
        tree_size: u64,
    },
    /// A tree size larger than the log (or a range that ends past it).
    #[error("tree size {size} is larger than the log, which has {log_size} entries")]
    SizeOutOfRange {
        /// The size asked for.
        size: u64,
        /// The log's size.
        log_size: u64,
    },
    /// A consistency proof asked from a larger size to a smaller one.
    #[error("old tree size {old} is larger than new tree size {new}")]
    SizesReversed {
        /// The old size.
        old: u64,
        /// The new size.
        new: u64,
    },
    /// A tree size beyond what the stored-hash numbering supports (2^62 entries).
    #[error("tree size {0} is too large: at most 2^62 entries are supported")]
    TreeTooLarge(u64),
    /// An inclusion proof does not prove the leaf against the root.
    #[error(
        "inclusion proof for leaf {index} in a tree of size {tree_size} does not verify: {reason}"
    )]
    InclusionProof {
        /// The leaf index.
        index: u64,
        /// The tree size.
        tree_size: u64,
        /// Which check failed.
        reason: &'static str,
    },
    /// A consistency proof does not link the two roots.
    #[error("consistency proof from size {old} to size {new} does not verify: {reason}")]
    ConsistencyProof {
        /// The old size.
        old: u64,
        /// The new size.
        new: u64,
        /// Which check failed.
        reason: &'static str,
    },
    /// An entry field is refused (too long, control characters, empty where a value is needed).
    #[error("audit entry field `{field}` is invalid: {reason}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// What is wrong and what is accepted.
        reason: &'static str,
    },
    /// Encoded entry bytes do not follow docs/AUDIT.md.
    #[error("malformed audit entry at byte {offset}: {reason}")]
    MalformedEntry {
        /// Offset of the first byte that could not be decoded.
        offset: usize,
        /// What was expected there.
        reason: &'static str,
    },
    /// Checkpoint text does not follow the C2SP checkpoint and signed-note formats.
    #[error("malformed checkpoint (line {line}): {reason}")]
    MalformedCheckpoint {
        /// 1-based line of the problem (0 when it concerns the whole text).
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A key or a verifier-key string is unusable.
    #[error("invalid checkpoint key: {0}")]
    InvalidKey(&'static str),
    /// The checkpoint names another log than the one expected.
    #[error("checkpoint origin `{found}` is not the expected `{expected}`")]
    WrongOrigin {
        /// The origin the verifier expects.
        expected: String,
        /// The origin found (shortened, escaped).
        found: String,
    },
    /// No signature line from the expected key.
    #[error(
        "checkpoint has no signature from key `{name}` (key id {key_id}); is it from this log?"
    )]
    SignatureMissing {
        /// The expected key name.
        name: String,
        /// The expected key id, hex.
        key_id: String,
    },
    /// A signature line from the expected key that does not verify.
    #[error("checkpoint signature by key `{name}` does not verify")]
    BadSignature {
        /// The key name.
        name: String,
    },
    /// More signature lines than accepted.
    #[error("checkpoint has more than {max} signature lines")]
    TooManySignatures {
        /// The limit.
        max: usize,
    },
    /// A checkpoint timestamp after `now` (plus nothing: clocks of signer and verifier are the same
    /// application's).
    #[error("checkpoint timestamp {timestamp} is in the future of now ({now})")]
    TimestampInFuture {
        /// The checkpoint's time, Unix seconds.
        timestamp: u64,
        /// The verifier's time.
        now: u64,
    },
    /// A checkpoint for a smaller tree than one already trusted: a rollback or a fork.
    #[error(
        "checkpoint tree size {found} is smaller than the trusted size {trusted}: the log was rolled back or forked"
    )]
    SizeRegressed {
        /// The size already trusted.
        trusted: u64,
        /// The size presented.
        found: u64,
    },
    /// A checkpoint signed before the one already trusted.
    #[error("checkpoint timestamp {found} is before the trusted checkpoint's {trusted}")]
    TimestampRegressed {
        /// The trusted checkpoint's time.
        trusted: u64,
        /// The time presented.
        found: u64,
    },
    /// A checkpoint of the same size as a trusted one but with another root: a fork.
    #[error("checkpoint of size {size} has another root than the trusted one: the log forked")]
    Forked {
        /// The tree size.
        size: u64,
    },
    /// Verification: the entry at this position carries another index.
    #[error(
        "entry at position {position} says it is entry {found}: entries were inserted, deleted or reordered"
    )]
    EntryOutOfPlace {
        /// Position in the list verified.
        position: u64,
        /// The index the entry carries.
        found: u64,
    },
    /// Verification: the entry at this index does not decode.
    #[error("entry {index} does not decode: {source}")]
    EntryUndecodable {
        /// The index.
        index: u64,
        /// The decoding error.
        source: Box<AuditError>,
    },
    /// Verification: the entry's leaf hash differs from the one stored for it.
    #[error("entry {index} was modified: its hash differs from the stored leaf hash")]
    EntryModified {
        /// The index.
        index: u64,
    },
    /// Verification: fewer entries than the checkpoint covers.
    #[error(
        "the log was truncated: the checkpoint covers {checkpoint_size} entries, only {found} are present (the first missing is entry {found})"
    )]
    Truncated {
        /// The checkpoint's tree size.
        checkpoint_size: u64,
        /// Entries found.
        found: u64,
    },
    /// Verification: the recomputed root differs from the signed one.
    #[error(
        "the entries' root at size {tree_size} differs from the checkpoint's: an entry before index {tree_size} was changed, or the checkpoint is for another log"
    )]
    RootMismatch {
        /// The tree size.
        tree_size: u64,
    },
    /// A receipt is not about an erasure.
    #[error("the receipt's entry {index} records `{action}`, not a subject erasure")]
    NotAnErasure {
        /// The entry's index.
        index: u64,
        /// The action it records.
        action: &'static str,
    },
    /// A receipt's parts do not belong together.
    #[error("receipt is inconsistent: {0}")]
    ReceiptMismatch(&'static str),
    /// The random number generator failed while generating a signing key.
    #[error("the random number generator failed")]
    Random,
}

impl AuditError {
    /// A store error with a message and the backend's error as the source.
    pub fn store(
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Store {
            message: message.into(),
            source: Some(source.into()),
        }
    }
}

impl From<crate::crypto::CryptoError> for AuditError {
    fn from(_: crate::crypto::CryptoError) -> Self {
        // The only crypto call of this layer that can fail is the CSPRNG.
        Self::Random
    }
}

/// Shortens and escapes untrusted text before it goes into an error message (no log injection).
pub(crate) fn excerpt(text: &str) -> String {
    const MAX_CHARS: usize = 64;
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
