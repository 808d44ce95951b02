use crate::envelope::EnvelopeError;
use thiserror::Error;

/// Errors of the key hierarchy.
///
/// Decryption failures stay coarse ([`KeyError::Envelope`] wrapping [`EnvelopeError::Decrypt`]); the
/// only decrypt-time detail given is whether the *key* is gone on purpose ([`KeyError::SubjectErased`],
/// [`KeyError::VersionDestroyed`], [`KeyError::VersionDisabled`]), which an operator needs and which
/// reveals nothing about the plaintext. Configuration and policy errors say what would fix them.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The envelope layer refused the ciphertext (malformed, wrong context, tampered...).
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The subject's key was erased (crypto-shredded); its data can never be opened again.
    #[error("subject `{subject}` of key ring `{ring}` was erased at {erased_at} (unix seconds)")]
    SubjectErased {
        /// Key ring.
        ring: String,
        /// Subject id.
        subject: String,
        /// When the key was erased (seconds since the Unix epoch).
        erased_at: u64,
    },
    /// The key version's material was destroyed; data still under it can never be opened.
    #[error("version {version} of key ring `{ring}` was destroyed")]
    VersionDestroyed {
        /// Key ring.
        ring: String,
        /// Version.
        version: u32,
    },
    /// The key version is below the ring's `min_decryption_version`.
    #[error(
        "version {version} of key ring `{ring}` is disabled (below min_decryption_version {min_decryption_version}); lower min_decryption_version to re-enable it"
    )]
    VersionDisabled {
        /// Key ring.
        ring: String,
        /// Version.
        version: u32,
        /// The ring's current minimum decryption version.
        min_decryption_version: u32,
    },
    /// The ring has no such version.
    #[error("key ring `{ring}` has no version {version}")]
    UnknownVersion {
        /// Key ring.
        ring: String,
        /// Version.
        version: u32,
    },
    /// No key ring of that name exists in the store.
    #[error("no key ring `{0}` in the key store; create it with `KeyManager::create_ring`")]
    UnknownRing(String),
    /// A key ring of that name already exists.
    #[error("key ring `{0}` already exists")]
    RingExists(String),
    /// A stored row failed its integrity check: someone edited, swapped or rolled back key data.
    #[error("key store tampering detected: {what} (ring `{ring}`, version {version:?})")]
    Tampered {
        /// What failed to verify.
        what: &'static str,
        /// Key ring concerned (empty for store-wide data).
        ring: String,
        /// Version concerned, if any.
        version: Option<u32>,
    },
    /// A compare-and-set lost against another writer (another process or thread changed the ring or
    /// subject first). The manager reloads and retries these itself; seeing one means it gave up.
    #[error("concurrent update of {0} kept conflicting; retry the operation")]
    Conflict(String),
    /// Live subject keys are still wrapped by versions the change would disable or destroy.
    #[error(
        "{count} subject keys of key ring `{ring}` are still wrapped by versions below {below}; run `rewrap_subject_keys` first"
    )]
    SubjectKeysDepend {
        /// Key ring.
        ring: String,
        /// The version below which keys must not be wrapped.
        below: u32,
        /// How many subject keys still are.
        count: u64,
    },
    /// An administrative request is not allowed in the ring's current state.
    #[error("{0}")]
    Refused(String),
    /// A rotation policy value is out of range.
    #[error("invalid rotation policy: {0}")]
    InvalidPolicy(String),
    /// The ring's primary version has used up its encryption budget and could not be rotated.
    #[error("version {version} of key ring `{ring}` reached its encryption limit; rotate the ring")]
    UsageExhausted {
        /// Key ring.
        ring: String,
        /// Version.
        version: u32,
    },
    /// The root key could not be loaded (missing variable, unreadable or badly encoded file).
    #[error("root key: {0}")]
    RootKey(String),
    /// The root key file is readable or writable by group or others.
    #[error(
        "root key file `{path}` has mode {mode:04o}, readable by group or others; run `chmod 600 {path}`"
    )]
    RootKeyPermissions {
        /// Path of the key file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The root key provider could not unwrap a stored key: wrong root key, or tampered data.
    #[error("root key provider could not unwrap {0}: wrong root key or tampered key store")]
    RootUnwrap(String),
    /// The root key provider failed (for a remote provider: network, permissions, throttling).
    #[error("root key provider failed: {0}")]
    RootProvider(String),
    /// The storage backend failed.
    #[error("key store: {0}")]
    Store(String),
    /// The storage backend could not be reached, or did not answer within its timeout (a
    /// PostgreSQL server that is down or restarting). Nothing is lost by retrying later.
    #[error("key store unavailable: {0}")]
    StoreUnavailable(String),
    /// The store was written by a newer custodian with a schema this build does not know.
    #[error(
        "key store schema version {found} is newer than this build supports ({supported}); upgrade custodian"
    )]
    SchemaTooNew {
        /// Version found in the store.
        found: u32,
        /// Newest version this build knows.
        supported: u32,
    },
    /// The store's ledger changed after the change was computed (another writer committed first);
    /// the store wrote nothing. Stores return it; the manager reloads and retries.
    #[error("the key store's ledger moved on; reload and retry")]
    LedgerMoved,
    /// The audit entry of a key operation could not be built or written; the operation was not
    /// committed either.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// The random number generator failed (`crypto::fill_random`).
    #[error("random number generator failed")]
    Random,
    /// The operation needs the key store or the root provider, and was asked to answer from
    /// memory only. Internal to the async facade, which then runs the operation on the blocking
    /// pool; no public operation returns it.
    #[doc(hidden)]
    #[error("this operation needs the key store; the async facade runs it on the blocking pool")]
    WouldBlock,
}

impl KeyError {
    pub(crate) fn tampered(what: &'static str, ring: &str, version: Option<u32>) -> Self {
        KeyError::Tampered {
            what,
            ring: ring.to_owned(),
            version,
        }
    }

    /// Whether this is the coarse decryption failure (wrong key, context, or tampered ciphertext).
    pub fn is_decrypt_failure(&self) -> bool {
        matches!(self, KeyError::Envelope(EnvelopeError::Decrypt))
    }
}

#[cfg(feature = "postgres")]
impl From<crate::postgres::PostgresError> for KeyError {
    fn from(err: crate::postgres::PostgresError) -> Self {
        use crate::postgres::PostgresError;
        match err {
            PostgresError::Unavailable(message) => KeyError::StoreUnavailable(message),
            PostgresError::SchemaTooNew { found, supported } => {
                KeyError::SchemaTooNew { found, supported }
            }
            other => KeyError::Store(other.to_string()),
        }
    }
}

impl From<crate::crypto::CryptoError> for KeyError {
    fn from(err: crate::crypto::CryptoError) -> Self {
        match err {
            crate::crypto::CryptoError::Random => KeyError::Random,
            _ => KeyError::Envelope(EnvelopeError::Decrypt),
        }
    }
}
