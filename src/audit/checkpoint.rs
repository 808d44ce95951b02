//! Signed checkpoints: the tree size and root of the log at a time, signed with Ed25519, in the
//! C2SP `tlog-checkpoint` text form (c2sp.org/tlog-checkpoint over c2sp.org/signed-note):
//!
//! ```text
//! custodian.example/shop-audit
//! 42
//! <base64 root hash>
//! timestamp 1700000000
//!
//! — custodian.example/shop-audit <base64(key id || signature)>
//! ```
//!
//! The fourth line is custodian's one extension line, the signing time in Unix seconds. The key
//! name is the origin. An auditor verifies with the public key alone, given as a
//! [`CheckpointVerifier`] or its C2SP verifier-key string `<origin>+<key id hex>+<base64(0x01 ||
//! public key)>`.

use core::fmt;

use data_encoding::{BASE64, HEXLOWER};
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::error::{AuditError, excerpt};
use super::hash::Hash;
use super::note::{self, ED25519_TYPE};
use super::tree::MAX_TREE_SIZE;
use crate::secret::SecretKey;

/// The prefix of custodian's timestamp extension line.
const TIMESTAMP_PREFIX: &str = "timestamp ";

/// The signed state of a log: origin, tree size, root hash and signing time.
///
/// Values come only from a signature check ([`CheckpointVerifier::verify`]) or from signing
/// ([`CheckpointSigner::sign`]), so holding one means its signature was made or checked here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    origin: String,
    tree_size: u64,
    root: Hash,
    timestamp: u64,
}

impl Checkpoint {
    /// The log's name, also the signing key's name.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// How many entries the checkpoint covers.
    pub fn tree_size(&self) -> u64 {
        self.tree_size
    }

    /// The Merkle root of those entries.
    pub fn root(&self) -> &Hash {
        &self.root
    }

    /// When it was signed, Unix seconds.
    pub fn timestamp(&self) -> u64 {
        self.timestamp
    }

    /// The note text that is signed: four lines, each ending in a newline.
    fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n{TIMESTAMP_PREFIX}{}\n",
            self.origin,
            self.tree_size,
            BASE64.encode(self.root.as_bytes()),
            self.timestamp
        )
    }
}

/// The text of a signed checkpoint, as published or handed to an auditor. Not trusted until a
/// [`CheckpointVerifier`] has checked it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SignedCheckpoint(String);

impl SignedCheckpoint {
    /// Wraps checkpoint text received from elsewhere (checked only by [`CheckpointVerifier`]).
    pub fn from_text(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SignedCheckpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Signs checkpoints. Holds an Ed25519 private key: zeroized on drop, never printed, never
/// serialized.
pub struct CheckpointSigner {
    origin: String,
    key: SigningKey,
    key_id: [u8; 4],
}

impl CheckpointSigner {
    /// A signer for the log `origin` (for example `shop.example/audit`) from a 32-byte Ed25519
    /// seed, such as one derived from custodian's key hierarchy or read from a KMS.
    ///
    /// The origin is also the key name: non-empty, without spaces, control characters or `+`.
    pub fn from_secret(origin: &str, seed: &SecretKey) -> Result<Self, AuditError> {
        note::check_key_name(origin).map_err(AuditError::InvalidKey)?;
        let key = SigningKey::from_bytes(seed.expose_secret());
        let key_id = note::key_id(origin, &key.verifying_key());
        Ok(Self {
            origin: origin.to_owned(),
            key,
            key_id,
        })
    }

    /// A signer with a fresh key from the operating system's CSPRNG. Keep its seed
    /// ([`expose_secret`](Self::expose_secret)) somewhere safe, or checkpoints cannot be signed
    /// by the same key after a restart.
    pub fn generate(origin: &str) -> Result<Self, AuditError> {
        Self::from_secret(origin, &SecretKey::try_random()?)
    }

    /// The 32-byte seed. Named loudly so that every use is easy to find in review.
    pub fn expose_secret(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    /// The log's name.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The verifier for this signer's checkpoints, to hand to auditors.
    pub fn verifier(&self) -> CheckpointVerifier {
        CheckpointVerifier {
            origin: self.origin.clone(),
            key: self.key.verifying_key(),
            key_id: self.key_id,
        }
    }

    /// Signs the state `tree_size`, `root` at `timestamp` (Unix seconds).
    pub fn sign(
        &self,
        tree_size: u64,
        root: Hash,
        timestamp: u64,
    ) -> Result<(Checkpoint, SignedCheckpoint), AuditError> {
        if tree_size > MAX_TREE_SIZE {
            return Err(AuditError::TreeTooLarge(tree_size));
        }
        let checkpoint = Checkpoint {
            origin: self.origin.clone(),
            tree_size,
            root,
            timestamp,
        };
        let text = note::sign(&checkpoint.body(), &self.origin, &self.key, self.key_id);
        Ok((checkpoint, SignedCheckpoint(text)))
    }
}

impl fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("origin", &self.origin)
            .field("key_id", &HEXLOWER.encode(&self.key_id))
            .field("key", &"[REDACTED]")
            .finish()
    }
}

/// Checks checkpoints with a log's public key alone.
#[derive(Clone, PartialEq, Eq)]
pub struct CheckpointVerifier {
    origin: String,
    key: VerifyingKey,
    key_id: [u8; 4],
}

impl fmt::Debug for CheckpointVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CheckpointVerifier")
            .field(&self.verifier_key())
            .finish()
    }
}

impl CheckpointVerifier {
    /// A verifier for the log `origin` from its 32-byte Ed25519 public key.
    pub fn new(origin: &str, public_key: &[u8; 32]) -> Result<Self, AuditError> {
        note::check_key_name(origin).map_err(AuditError::InvalidKey)?;
        let key = VerifyingKey::from_bytes(public_key)
            .map_err(|_| AuditError::InvalidKey("not an Ed25519 public key"))?;
        if key.is_weak() {
            return Err(AuditError::InvalidKey(
                "a weak (small-order) Ed25519 public key",
            ));
        }
        let key_id = note::key_id(origin, &key);
        Ok(Self {
            origin: origin.to_owned(),
            key,
            key_id,
        })
    }

    /// Parses a C2SP verifier key, `<origin>+<key id, 8 hex digits>+<base64(0x01 || public key)>`,
    /// and checks that the key id is the one the name and key give.
    pub fn from_verifier_key(text: &str) -> Result<Self, AuditError> {
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(AuditError::InvalidKey(
                "a verifier key has three parts separated by `+`",
            ));
        };
        let id = HEXLOWER
            .decode(id_hex.as_bytes())
            .ok()
            .filter(|id| id.len() == 4)
            .ok_or(AuditError::InvalidKey(
                "the key id is not 8 lowercase hex digits",
            ))?;
        let key = BASE64
            .decode(key_b64.as_bytes())
            .map_err(|_| AuditError::InvalidKey("the key is not standard base64"))?;
        let (kind, key) = key
            .split_first()
            .ok_or(AuditError::InvalidKey("the key is empty"))?;
        if *kind != ED25519_TYPE {
            return Err(AuditError::InvalidKey(
                "not an Ed25519 key (type byte 0x01)",
            ));
        }
        let key: &[u8; 32] = key
            .try_into()
            .map_err(|_| AuditError::InvalidKey("an Ed25519 public key has 32 bytes"))?;
        let verifier = Self::new(name, key)?;
        if verifier.key_id.as_slice() != id.as_slice() {
            return Err(AuditError::InvalidKey(
                "the key id does not match the name and key",
            ));
        }
        Ok(verifier)
    }

    /// The C2SP verifier-key string, to publish next to the log.
    pub fn verifier_key(&self) -> String {
        let mut key = vec![ED25519_TYPE];
        key.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{}+{}",
            self.origin,
            HEXLOWER.encode(&self.key_id),
            BASE64.encode(&key)
        )
    }

    /// The log's name (and key name).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The 32-byte public key.
    pub fn public_key_bytes(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    #[cfg(test)]
    pub(crate) fn public_key(&self) -> &VerifyingKey {
        &self.key
    }

    #[cfg(test)]
    pub(crate) fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// Verifies a checkpoint: the form, a good signature by this key, the origin, and a timestamp
    /// not after `now`. Never panics on any input.
    pub fn verify(
        &self,
        checkpoint: &SignedCheckpoint,
        now: u64,
    ) -> Result<Checkpoint, AuditError> {
        self.verify_text(checkpoint.as_str(), now)
    }

    /// [`verify`](Self::verify) for text that is not yet a [`SignedCheckpoint`].
    pub fn verify_text(&self, text: &str, now: u64) -> Result<Checkpoint, AuditError> {
        let body = match note::open(text, &self.origin, self.key_id, &self.key) {
            Ok(body) => body,
            // Unsigned by this key because it is another log's checkpoint: say so.
            Err(AuditError::SignatureMissing { .. })
                if text
                    .split('\n')
                    .next()
                    .is_some_and(|first| first != self.origin) =>
            {
                return Err(AuditError::WrongOrigin {
                    expected: self.origin.clone(),
                    found: excerpt(text.split('\n').next().unwrap_or_default()),
                });
            }
            Err(other) => return Err(other),
        };
        let checkpoint = parse_body(body)?;
        if checkpoint.origin != self.origin {
            return Err(AuditError::WrongOrigin {
                expected: self.origin.clone(),
                found: excerpt(&checkpoint.origin),
            });
        }
        if checkpoint.timestamp > now {
            return Err(AuditError::TimestampInFuture {
                timestamp: checkpoint.timestamp,
                now,
            });
        }
        Ok(checkpoint)
    }

    /// Verifies a checkpoint that must not go back from one trusted before: refuses a smaller
    /// tree (a rollback or fork), the same size with another root (a fork), and an earlier
    /// timestamp. A larger tree still needs a consistency proof
    /// ([`verify_checkpoint_consistency`](super::verify_checkpoint_consistency)) to show it
    /// extends the trusted one.
    pub fn verify_newer(
        &self,
        checkpoint: &SignedCheckpoint,
        trusted: &Checkpoint,
        now: u64,
    ) -> Result<Checkpoint, AuditError> {
        let new = self.verify(checkpoint, now)?;
        if new.tree_size < trusted.tree_size {
            return Err(AuditError::SizeRegressed {
                trusted: trusted.tree_size,
                found: new.tree_size,
            });
        }
        if new.tree_size == trusted.tree_size && new.root != trusted.root {
            return Err(AuditError::Forked {
                size: new.tree_size,
            });
        }
        if new.timestamp < trusted.timestamp {
            return Err(AuditError::TimestampRegressed {
                trusted: trusted.timestamp,
                found: new.timestamp,
            });
        }
        Ok(new)
    }
}

/// Parses the four body lines (each ending in a newline).
fn parse_body(body: &str) -> Result<Checkpoint, AuditError> {
    let malformed = |line, reason| AuditError::MalformedCheckpoint { line, reason };
    let lines: Vec<&str> = body
        .strip_suffix('\n')
        .unwrap_or(body)
        .split('\n')
        .collect();
    let [origin, size, root, timestamp] = lines.as_slice() else {
        return Err(malformed(
            0,
            "a custodian checkpoint has exactly four lines: origin, size, root, timestamp",
        ));
    };
    if origin.is_empty() {
        return Err(malformed(1, "the origin is empty"));
    }
    let tree_size = parse_decimal(size).ok_or_else(|| {
        malformed(
            2,
            "the tree size is not a decimal number without leading zeros",
        )
    })?;
    if tree_size > MAX_TREE_SIZE {
        return Err(AuditError::TreeTooLarge(tree_size));
    }
    let root = BASE64
        .decode(root.as_bytes())
        .ok()
        .and_then(|bytes| Hash::from_slice(&bytes))
        .filter(|hash| BASE64.encode(hash.as_bytes()) == *root)
        .ok_or_else(|| malformed(3, "the root hash is not 32 bytes in canonical base64"))?;
    let timestamp = timestamp
        .strip_prefix(TIMESTAMP_PREFIX)
        .and_then(parse_decimal)
        .ok_or_else(|| malformed(4, "the fourth line must be `timestamp <unix seconds>`"))?;
    Ok(Checkpoint {
        origin: (*origin).to_owned(),
        tree_size,
        root,
        timestamp,
    })
}

/// A `u64` in ASCII decimal, with no sign and no leading zero (except `0` itself).
fn parse_decimal(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if canonical { text.parse().ok() } else { None }
}
