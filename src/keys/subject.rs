//! Per-subject (per-customer) keys: how they are wrapped at rest, and the per-version KEK derived
//! from a subject key and a ring version key.
//!
//! Erasing a subject deletes its key; since every subject KEK is derived from it, every ciphertext
//! sealed for the subject, under any ring version, becomes unopenable at once (crypto-shredding),
//! while ring rotation still rewraps subject ciphertexts like any other (only the header version
//! changes).

use super::KeyError;
use super::integrity::Encoder;
use super::ring::{RingKek, hkdf_sha256};
use crate::crypto::{AeadAlgorithm, AeadKey, TAG_LEN, Tag, fill_random};
use crate::envelope::{Kek, KeyId};
use crate::secret::{KEY_LEN, SecretKey};
use core::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use zeroize::Zeroizing;

/// HKDF salt of the subject-KEK derivation.
pub(crate) const SUBJECT_KEK_SALT: &[u8] = b"custodian/v1/subject-kek";

/// Associated data of a subject key's wrap under a ring version.
fn subject_wrap_aad(ring: &str, subject: &str, generation: u64, wrapped_by: u32) -> Encoder {
    let mut e = Encoder::label("custodian/v1/subject-key");
    e.str(ring).str(subject).u64(generation).u32(wrapped_by);
    e
}

/// Wraps a subject key under ring version `kek`: `nonce || AEAD(subject key) || tag`, with the
/// ring's suite, binding ring, subject, generation and the wrapping version.
pub(crate) fn wrap_subject_key(
    kek: &RingKek,
    subject: &str,
    generation: u64,
    key: &SecretKey,
) -> Result<Vec<u8>, KeyError> {
    let id = kek.key_id();
    let nonce_len = kek.algorithm().suite().nonce_len();
    let aad = subject_wrap_aad(id.name(), subject, generation, id.version());
    let mut blob = vec![0u8; nonce_len];
    fill_random(&mut blob).map_err(|_| KeyError::Random)?;
    let mut body = Zeroizing::new(*key.expose_secret());
    let tag = kek
        .wrapping_key()
        .seal_in_place(&blob, aad.bytes(), body.as_mut_slice())
        .map_err(KeyError::from)?;
    blob.extend_from_slice(body.as_slice());
    blob.extend_from_slice(&tag);
    Ok(blob)
}

/// Reverses [`wrap_subject_key`]. A failure means tampering (the row's MAC already verified).
pub(crate) fn unwrap_subject_key(
    kek: &RingKek,
    subject: &str,
    generation: u64,
    blob: &[u8],
) -> Result<SecretKey, KeyError> {
    let id = kek.key_id();
    let fail = || {
        KeyError::tampered(
            "subject key does not unwrap under the version that wrapped it",
            id.name(),
            Some(id.version()),
        )
    };
    let nonce_len = kek.algorithm().suite().nonce_len();
    if blob.len() != nonce_len + KEY_LEN + TAG_LEN {
        return Err(fail());
    }
    let (nonce, rest) = blob.split_at_checked(nonce_len).ok_or_else(fail)?;
    let (body, tag) = rest.split_at_checked(KEY_LEN).ok_or_else(fail)?;
    let tag: Tag = tag.try_into().map_err(|_| fail())?;
    let aad = subject_wrap_aad(id.name(), subject, generation, id.version());
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    key.copy_from_slice(body);
    kek.wrapping_key()
        .open_in_place(nonce, aad.bytes(), key.as_mut_slice(), &tag)
        .map_err(|_| fail())?;
    Ok(SecretKey::from_bytes(*key))
}

/// The KEK of `subject`'s data under ring version `ring_kek`:
/// HKDF-SHA256(ikm = ring version key || subject key, salt = `custodian/v1/subject-kek`,
/// info = ring name || 0x00 || be32(version) || subject id).
pub(crate) fn derive_subject_kek(
    ring_kek: &RingKek,
    subject: &str,
    subject_key: &SecretKey,
) -> Result<SubjectKek, KeyError> {
    let ring_id = ring_kek.key_id();
    let id = ring_id.clone().for_subject(subject)?;
    let mut info = Vec::with_capacity(ring_id.name().len() + 5 + subject.len());
    info.extend_from_slice(ring_id.name().as_bytes());
    info.push(0);
    info.extend_from_slice(&ring_id.version().to_be_bytes());
    info.extend_from_slice(subject.as_bytes());
    let key = hkdf_sha256(
        SUBJECT_KEK_SALT,
        &[
            ring_kek.secret().expose_secret().as_slice(),
            subject_key.expose_secret().as_slice(),
        ],
        &info,
    );
    let algorithm = ring_kek.algorithm();
    Ok(SubjectKek {
        id,
        algorithm,
        key: algorithm.key(&key),
    })
}

/// The envelope KEK of one subject under one ring version.
pub(crate) struct SubjectKek {
    id: KeyId,
    algorithm: &'static dyn AeadAlgorithm,
    key: Box<dyn AeadKey>,
}

impl Kek for SubjectKek {
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

impl fmt::Debug for SubjectKek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubjectKek")
            .field("id", &self.id)
            .field("suite", &self.algorithm.suite().name())
            .finish_non_exhaustive()
    }
}

/// What the cache knows about one subject of one ring.
pub(crate) enum SubjectState {
    /// A live key of this generation, with the KEKs derived from it so far.
    Live(SubjectKeys),
    /// The newest generation was erased at this time.
    Erased {
        /// Erasure time.
        erased_at: u64,
    },
}

/// An unwrapped subject key and the per-version KEKs derived from it (a handful at most: one per
/// live ring version).
pub(crate) struct SubjectKeys {
    pub(crate) generation: u64,
    key: SecretKey,
    derived: RwLock<Vec<(u32, Arc<SubjectKek>)>>,
}

impl SubjectKeys {
    pub(crate) fn new(generation: u64, key: SecretKey) -> Self {
        Self {
            generation,
            key,
            derived: RwLock::new(Vec::new()),
        }
    }

    /// The subject's KEK under ring version `ring_kek`, derived once and then reused.
    pub(crate) fn kek(
        &self,
        subject: &str,
        ring_kek: &RingKek,
    ) -> Result<Arc<SubjectKek>, KeyError> {
        let version = ring_kek.key_id().version();
        if let Some(kek) = self
            .derived
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(v, _)| *v == version)
            .map(|(_, kek)| Arc::clone(kek))
        {
            return Ok(kek);
        }
        let kek = Arc::new(derive_subject_kek(ring_kek, subject, &self.key)?);
        let mut derived = self.derived.write().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, existing)) = derived.iter().find(|(v, _)| *v == version) {
            return Ok(Arc::clone(existing));
        }
        derived.push((version, Arc::clone(&kek)));
        Ok(kek)
    }

    /// Forgets the KEKs derived under versions that can no longer decrypt.
    pub(crate) fn forget_versions(&self, keep: impl Fn(u32) -> bool) {
        self.derived
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(v, _)| keep(*v));
    }
}

impl fmt::Debug for SubjectKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubjectKeys")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for SubjectState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubjectState::Live(keys) => f.debug_tuple("Live").field(keys).finish(),
            SubjectState::Erased { erased_at } => f
                .debug_struct("Erased")
                .field("erased_at", erased_at)
                .finish(),
        }
    }
}

/// Fresh random subject key.
pub(crate) fn new_subject_key() -> Result<SecretKey, KeyError> {
    SecretKey::try_random().map_err(|_| KeyError::Random)
}
