//! Seeds sealed in a ring of the key hierarchy, under each staff member's subject key.
//!
//! This is how the facade's `Custodian::mfa` keeps seeds: the ring is rotated and its subject keys
//! rewrapped like any other ring, so seeds never have to be rewritten; and erasing the staff
//! member's subject in the ring makes every seed of theirs unopenable, like a customer's data.

use super::error::MfaError;
use super::sealed_seed::SeedKeys;
use crate::envelope::{EncryptionContext, EnvelopeError, Header};
use crate::keys::{KeyError, KeyManager};
use crate::secret::SecretBytes;
use std::sync::Arc;

/// Seeds of user `u` sealed in `ring` under subject `u`.
pub(crate) struct RingSeeds {
    pub(crate) keys: KeyManager,
    pub(crate) ring: String,
    /// The facade's clock (seconds since the Unix epoch), for the key caches.
    pub(crate) now: Arc<dyn Fn() -> u64 + Send + Sync>,
}

impl SeedKeys for RingSeeds {
    fn describe(&self) -> String {
        format!("key ring `{}`", self.ring)
    }

    fn seal(
        &self,
        user: &str,
        context: &EncryptionContext,
        record: &[u8],
    ) -> Result<Vec<u8>, MfaError> {
        self.keys
            .seal(&self.ring, Some(user), context, record, (self.now)())
            .map_err(from_key_error)
    }

    fn open(
        &self,
        user: &str,
        context: &EncryptionContext,
        sealed: &[u8],
    ) -> Result<SecretBytes, MfaError> {
        // Only a seed sealed in this ring under this user's own key: a value sealed elsewhere in
        // the hierarchy is refused before any key is touched, with the same coarse error.
        let header = Header::parse(sealed).map_err(MfaError::Seal)?;
        let id = header.key_id();
        if id.name() != self.ring || id.subject() != Some(user) {
            return Err(MfaError::Seal(EnvelopeError::Decrypt));
        }
        self.keys
            .open(context, sealed, (self.now)())
            .map_err(from_key_error)
    }
}

/// The envelope's coarse errors stay [`MfaError::Seal`], as for a seed sealed under a KEK.
fn from_key_error(e: KeyError) -> MfaError {
    match e {
        KeyError::Envelope(e) => MfaError::Seal(e),
        e => MfaError::Keys(Box::new(e)),
    }
}
