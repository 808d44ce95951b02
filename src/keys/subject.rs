//! Per-subject (per-customer) keys: how they are wrapped at rest, and the per-version KEK derived
//! from a subject key and a ring version key.
//!
//! Erasing a subject deletes its key; since every subject KEK is derived from it, every ciphertext
//! sealed for the subject, under any ring version, becomes unopenable at once (crypto-shredding),
//! while ring rotation still rewraps subject ciphertexts like any other (only the header version
//! changes).

use super::KeyError;
use super::integrity::Encoder;
use super::manager::{Erasure, KeyManager, SubjectGeneration};
use super::ring::{RingKek, hkdf_sha256};
use super::state::{RingHandle, RingSnapshot, broadcast};
use super::store::{Journal, SubjectRecord};
use crate::audit::{Action, AuditEvent};
use crate::crypto::{TAG_LEN, Tag, fill_random};
use crate::envelope::{EnvelopeError, Kek, KeyId, StaticKek};
use crate::secret::{KEY_LEN, SecretKey};
use core::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use zeroize::Zeroizing;

/// How long an erasure waits for readers of older snapshots before it reports `purged: false`
/// instead of blocking (the erasure itself is committed either way).
const PURGE_WAIT_ON_ERASE: std::time::Duration = std::time::Duration::from_millis(500);

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
    Ok(StaticKek::with_algorithm(id, &key, ring_kek.algorithm()))
}

/// Where [`KeyManager::subject_keys`] found a subject's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeySource {
    /// This process's cache.
    Cached,
    /// The store.
    Loaded,
    /// Nowhere: this call created it.
    Created,
}

/// The envelope KEK of one subject under one ring version: an in-memory KEK with the derived key.
pub(crate) type SubjectKek = StaticKek;

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

/// Ring versions whose subject KEKs one cached subject key keeps (one per version it is used
/// with while cached: normally one or two).
const DERIVED_SLOTS: usize = 4;

/// An unwrapped subject key and the per-version KEKs derived from it.
pub(crate) struct SubjectKeys {
    pub(crate) generation: u64,
    key: SecretKey,
    /// Set once each and never replaced, so that reading one on the hot path of a seal or open is
    /// a plain load, without a lock or a reference count. A subject used with more versions than
    /// slots while cached derives the others on each use. When a version stops decrypting, the
    /// ring's subject cache is cleared, which drops (and zeroizes) its KEKs.
    derived: [OnceLock<Arc<SubjectKek>>; DERIVED_SLOTS],
}

impl SubjectKeys {
    pub(crate) fn new(generation: u64, key: SecretKey) -> Self {
        Self {
            generation,
            key,
            derived: Default::default(),
        }
    }

    fn derived(&self, version: u32) -> Option<&Arc<SubjectKek>> {
        self.derived
            .iter()
            .filter_map(OnceLock::get)
            .find(|kek| kek.key_id().version() == version)
    }

    /// The subject's KEK under ring version `ring_kek`, derived once and then reused.
    pub(crate) fn kek(
        &self,
        subject: &str,
        ring_kek: &RingKek,
    ) -> Result<Arc<SubjectKek>, KeyError> {
        let version = ring_kek.key_id().version();
        if let Some(kek) = self.derived(version) {
            return Ok(Arc::clone(kek));
        }
        let kek = Arc::new(derive_subject_kek(ring_kek, subject, &self.key)?);
        for slot in &self.derived {
            // The first free slot takes it; a slot another thread filled meanwhile with the same
            // version wins, so that every caller uses one KEK.
            let kept = slot.get_or_init(|| Arc::clone(&kek));
            if kept.key_id().version() == version {
                return Ok(Arc::clone(kept));
            }
        }
        Ok(kek)
    }

    /// Calls `f` with the KEK under ring version `version` if it was derived already.
    pub(crate) fn with_kek<R>(
        &self,
        version: u32,
        f: impl FnOnce(&SubjectKek) -> Option<R>,
    ) -> Option<R> {
        self.derived(version).and_then(|kek| f(kek))
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

/// A fresh random 256-bit key (subject keys, version keys, the integrity key).
pub(crate) fn random_key() -> Result<SecretKey, KeyError> {
    SecretKey::try_random().map_err(|_| KeyError::Random)
}

// ---- Resolution, creation and erasure of subject keys by the manager ----

impl KeyManager {
    /// Creates keys for many new subjects in one store transaction (bulk import). Subjects that
    /// already have a live key are left alone. Returns how many keys were created.
    pub fn create_subjects(
        &self,
        ring: &str,
        subjects: &[&str],
        now: u64,
    ) -> Result<usize, KeyError> {
        let handle = self.handle(ring);
        let mut rows = Vec::with_capacity(subjects.len());
        let mut keys = Vec::with_capacity(subjects.len());
        for subject in subjects {
            KeyId::new(ring, 1)?.for_subject(*subject)?;
            let snap = self.encrypting_key(&handle, now, 1)?;
            let ring_kek = snap.primary()?;
            let key = random_key()?;
            rows.push(self.new_subject_row(ring_kek, subject, 1, &key, now)?);
            keys.push(key);
        }
        let epoch = handle.erasures.load(Ordering::SeqCst);
        let mut journal = Journal {
            audit: subjects
                .iter()
                .map(|subject| self.subject_event(ring, subject, Action::SubjectCreated, now))
                .collect(),
            ..Journal::default()
        };
        let inserted = self.store.insert_subjects(&rows, &mut journal)?;
        let mut created = 0;
        for ((subject, key), inserted) in subjects.iter().zip(keys).zip(&inserted) {
            if *inserted {
                created += 1;
                handle.subjects.insert_if(
                    subject,
                    Arc::new(SubjectState::Live(SubjectKeys::new(1, key))),
                    now,
                    || handle.erasures.load(Ordering::SeqCst) == epoch,
                );
            } else {
                // Generation 1 exists: the subject is live already, or was erased and needs a
                // new generation, which the single-subject path handles.
                let snap = self.snapshot(&handle, now)?;
                let (_, source) = self.subject_keys(&handle, &snap, subject, now, true)?;
                created += usize::from(source == KeySource::Created);
            }
        }
        Ok(created)
    }

    /// Erases the subject's key (crypto-shredding): every ciphertext sealed for `subject` in
    /// `ring`, under any version, fails with [`KeyError::SubjectErased`] from now on, in every
    /// manager of this process at once and in other processes once their subject cache expires.
    /// The erasure is recorded in the store (a tombstone, counted by the ledger) and in its audit
    /// log, in the same transaction, by [`ManagerOptions::actor`](super::ManagerOptions::actor).
    /// Erasing twice is harmless.
    pub fn erase_subject(&self, ring: &str, subject: &str, now: u64) -> Result<Erasure, KeyError> {
        self.erase_subject_by(ring, subject, &self.options.actor, now)
    }

    /// [`KeyManager::erase_subject`], recording `actor` (who requested the erasure) in the audit
    /// log.
    pub fn erase_subject_by(
        &self,
        ring: &str,
        subject: &str,
        actor: &str,
        now: u64,
    ) -> Result<Erasure, KeyError> {
        KeyId::new(ring, 1)?.for_subject(subject)?;
        let event = AuditEvent::new(now, actor, Action::SubjectErased, ring).with_subject(subject);
        event.validate()?;
        let mut result = None;
        for _ in 0..self.options.max_conflict_retries.max(1) {
            let floor = self.ledger_floor();
            let view = self.store.load_subject(ring, subject)?;
            let ledger = self.checked_ledger(&view.ledger, floor)?;
            if let Some(row) = &view.row {
                self.integrity.verify_subject(row)?;
            }
            let mut journal = Journal {
                ledger: Some(self.next_ledger(ledger, Some(subject), None)),
                audit: vec![event.clone()],
                ..Journal::default()
            };
            let (generation, written) = match view.row {
                Some(row) if !row.is_live() => {
                    result = Some(Erasure {
                        ring: ring.to_owned(),
                        subject: subject.to_owned(),
                        generation: row.generation,
                        erased_at: row.erased_at.unwrap_or(now),
                        newly_erased: false,
                        purged: false,
                        audit_index: None,
                    });
                    break;
                }
                Some(row) => {
                    let mut tombstone = row.clone();
                    tombstone.wrapped_key = None;
                    tombstone.erased_at = Some(now);
                    self.integrity.seal_subject(&mut tombstone);
                    (
                        row.generation,
                        self.store.erase_subject(&tombstone, &mut journal),
                    )
                }
                None => {
                    // No key yet: record the erasure anyway, so it can be shown later and any
                    // key created afterwards is a new generation.
                    let mut tombstone = SubjectRecord {
                        ring: ring.to_owned(),
                        subject: subject.to_owned(),
                        generation: 1,
                        wrapped_by: 0,
                        wrapped_key: None,
                        created_at: 0,
                        erased_at: Some(now),
                        mac: [0; 32],
                    };
                    self.integrity.seal_subject(&mut tombstone);
                    let inserted = self
                        .store
                        .insert_subjects(std::slice::from_ref(&tombstone), &mut journal);
                    (1, inserted.map(|rows| rows == [true]))
                }
            };
            match written {
                Ok(true) => {
                    self.saw_committed(&journal);
                    result = Some(Erasure {
                        ring: ring.to_owned(),
                        subject: subject.to_owned(),
                        generation,
                        erased_at: now,
                        newly_erased: true,
                        purged: false,
                        audit_index: Some(journal.appended.start),
                    });
                    break;
                }
                Ok(false) | Err(KeyError::LedgerMoved) => continue,
                Err(e) => return Err(e),
            }
        }
        let mut erasure =
            result.ok_or_else(|| KeyError::Conflict(format!("subject `{subject}`")))?;
        let erased_at = erasure.erased_at;
        broadcast(&self.store_id, ring, |h| {
            h.erasures.fetch_add(1, Ordering::SeqCst);
            h.subjects.remove(subject);
            h.subjects
                .insert(subject, Arc::new(SubjectState::Erased { erased_at }), now);
        });
        // The erasure is committed; whether its bytes already left the files is reported, not
        // waited for (readers of older snapshots would stall it): see `purge`.
        erasure.purged = self.store.purge(PURGE_WAIT_ON_ERASE)?;
        Ok(erasure)
    }

    /// Makes sure the key material of every erasure and destroyed version is gone from the
    /// store's files, waiting up to `wait` for readers of older snapshots (an online backup, a
    /// long report) to finish. Returns whether that is confirmed; call it again if not.
    pub fn purge(&self, wait: std::time::Duration) -> Result<bool, KeyError> {
        self.store.purge(wait)
    }

    fn subject_event(&self, ring: &str, subject: &str, action: Action, now: u64) -> AuditEvent {
        AuditEvent::new(now, &self.options.actor, action, ring).with_subject(subject)
    }

    /// Every generation of the subject's key, oldest first, with creation and erasure times
    /// (verified against their MACs): the record that proves an erasure.
    pub fn subject_history(
        &self,
        ring: &str,
        subject: &str,
    ) -> Result<Vec<SubjectGeneration>, KeyError> {
        self.store
            .subject_history(ring, subject)?
            .into_iter()
            .map(|row| {
                self.integrity.verify_subject(&row)?;
                Ok(SubjectGeneration {
                    generation: row.generation,
                    created_at: row.created_at,
                    erased_at: row.erased_at,
                    wrapped_by: row.wrapped_by,
                })
            })
            .collect()
    }

    /// The KEK of `subject` under the primary `ring_kek`, creating the subject key if needed.
    pub(super) fn subject_kek(
        &self,
        handle: &RingHandle,
        snap: &RingSnapshot,
        ring_kek: &RingKek,
        subject: &str,
        now: u64,
    ) -> Result<Arc<SubjectKek>, KeyError> {
        let (keys, _) = self.subject_keys(handle, snap, subject, now, true)?;
        keys.kek(subject, ring_kek)
    }

    /// The subject's live key: from the cache, else from the store, else (if `create`) new.
    /// The second value says where the key was found.
    pub(super) fn subject_keys(
        &self,
        handle: &RingHandle,
        snap: &RingSnapshot,
        subject: &str,
        now: u64,
        create: bool,
    ) -> Result<(LiveSubject, KeySource), KeyError> {
        if let Some(state) = handle.subjects.get(subject, now) {
            match state.as_ref() {
                SubjectState::Live(_) => return Ok((LiveSubject(state), KeySource::Cached)),
                SubjectState::Erased { erased_at } if !create => {
                    return Err(erased(&handle.name, subject, *erased_at));
                }
                SubjectState::Erased { .. } => {}
            }
        }
        for _ in 0..self.options.max_conflict_retries.max(1) {
            let epoch = handle.erasures.load(Ordering::SeqCst);
            let unchanged = || handle.erasures.load(Ordering::SeqCst) == epoch;
            let floor = self.ledger_floor();
            let view = self.store.load_subject(&handle.name, subject)?;
            self.checked_ledger(&view.ledger, floor)?;
            let row = view.row;
            if let Some(row) = &row {
                self.integrity.verify_subject(row)?;
                if row.ring != handle.name || row.subject != subject {
                    return Err(KeyError::tampered(
                        "subject key row of another subject",
                        &handle.name,
                        None,
                    ));
                }
            }
            let generation = match row {
                Some(SubjectRecord {
                    wrapped_key: Some(wrapped),
                    generation,
                    wrapped_by,
                    ..
                }) => {
                    let snap_now;
                    let from = match snap.decrypting_key(wrapped_by) {
                        Ok(kek) => Arc::clone(kek),
                        Err(_) => {
                            // Wrapped by a version newer than this snapshot (another process
                            // rotated), or by one that no longer decrypts.
                            snap_now = self.reload(handle, now)?;
                            Arc::clone(snap_now.decrypting_key(wrapped_by)?)
                        }
                    };
                    let key = unwrap_subject_key(&from, subject, generation, &wrapped)?;
                    let state = Arc::new(SubjectState::Live(SubjectKeys::new(generation, key)));
                    let cached =
                        handle
                            .subjects
                            .insert_if(subject, Arc::clone(&state), now, unchanged);
                    if !cached && !unchanged() {
                        // An erasure ran while this key was read: read the store again.
                        continue;
                    }
                    return Ok((LiveSubject(state), KeySource::Loaded));
                }
                Some(SubjectRecord {
                    erased_at,
                    generation,
                    ..
                }) => {
                    let erased_at = erased_at.unwrap_or(0);
                    if !create {
                        handle.subjects.insert(
                            subject,
                            Arc::new(SubjectState::Erased { erased_at }),
                            now,
                        );
                        return Err(erased(&handle.name, subject, erased_at));
                    }
                    generation.checked_add(1).ok_or_else(|| {
                        KeyError::Refused(format!("subject `{subject}` has no generations left"))
                    })?
                }
                None if !create => {
                    // A ciphertext names a subject that never had a key here.
                    return Err(EnvelopeError::Decrypt.into());
                }
                None => 1,
            };
            // Create: the wrap is one more encryption under the primary version.
            let wrap_snap = self.encrypting_key(handle, now, 1)?;
            let wrap_kek = wrap_snap.primary()?;
            let key = random_key()?;
            let row = self.new_subject_row(wrap_kek, subject, generation, &key, now)?;
            let mut journal = Journal {
                audit: vec![self.subject_event(&handle.name, subject, Action::SubjectCreated, now)],
                ..Journal::default()
            };
            if self
                .store
                .insert_subjects(std::slice::from_ref(&row), &mut journal)?
                == [true]
            {
                let state = Arc::new(SubjectState::Live(SubjectKeys::new(generation, key)));
                // Not cached if an erasure ran meanwhile; the seal in progress still uses it.
                handle
                    .subjects
                    .insert_if(subject, Arc::clone(&state), now, unchanged);
                return Ok((LiveSubject(state), KeySource::Created));
            }
            // Someone else created this generation first: use theirs.
        }
        Err(KeyError::Conflict(format!("subject `{subject}`")))
    }

    pub(super) fn new_subject_row(
        &self,
        ring_kek: &RingKek,
        subject: &str,
        generation: u64,
        key: &SecretKey,
        now: u64,
    ) -> Result<SubjectRecord, KeyError> {
        let mut row = SubjectRecord {
            ring: ring_kek.key_id().name().to_owned(),
            subject: subject.to_owned(),
            generation,
            wrapped_by: ring_kek.key_id().version(),
            wrapped_key: Some(wrap_subject_key(ring_kek, subject, generation, key)?),
            created_at: now,
            erased_at: None,
            mac: [0; 32],
        };
        self.integrity.seal_subject(&mut row);
        Ok(row)
    }
}

/// A subject state known to be `Live`.
pub(super) struct LiveSubject(Arc<SubjectState>);

impl LiveSubject {
    pub(super) fn kek(
        &self,
        subject: &str,
        ring_kek: &RingKek,
    ) -> Result<Arc<SubjectKek>, KeyError> {
        match self.0.as_ref() {
            SubjectState::Live(keys) => keys.kek(subject, ring_kek),
            SubjectState::Erased { .. } => Err(EnvelopeError::Decrypt.into()),
        }
    }
}

pub(super) fn erased(ring: &str, subject: &str, erased_at: u64) -> KeyError {
    KeyError::SubjectErased {
        ring: ring.to_owned(),
        subject: subject.to_owned(),
        erased_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Suite;
    use crate::envelope::{self, EncryptionContext, StaticKek};

    /// The subject-KEK derivation documented in docs/KEYSTORE.md, recomputed with the `hkdf` crate:
    /// a message sealed under the manager's KEK opens under a KEK built from the documented formula.
    #[test]
    fn subject_kek_matches_the_documented_derivation() {
        let ring_key = [0x11u8; 32];
        let subject_key = SecretKey::from_bytes([0x22; 32]);
        let ring_kek = RingKek::new(
            KeyId::new("customers", 3).unwrap(),
            Suite::Aes256Gcm,
            SecretKey::from_bytes(ring_key),
        );
        let ours = derive_subject_kek(&ring_kek, "cus_42", &subject_key).unwrap();

        let ikm = [ring_key, [0x22; 32]].concat();
        let info = [&b"customers"[..], &[0], &3u32.to_be_bytes(), b"cus_42"].concat();
        let hkdf = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"custodian/v1/subject-kek"), &ikm);
        let mut okm = [0u8; 32];
        hkdf.expand(&info, &mut okm).unwrap();
        let id = KeyId::new("customers", 3)
            .unwrap()
            .for_subject("cus_42")
            .unwrap();
        let theirs = StaticKek::new(id, &SecretKey::from_bytes(okm));

        let ctx = EncryptionContext::new().with("record", "1").unwrap();
        let sealed = envelope::seal(&ours, &ctx, b"x").unwrap();
        assert_eq!(
            envelope::open(&theirs, &ctx, &sealed)
                .unwrap()
                .expose_secret(),
            b"x"
        );
        // A different subject derives a different key.
        let other = derive_subject_kek(&ring_kek, "cus_43", &subject_key).unwrap();
        let sealed = envelope::seal(&other, &ctx, b"x").unwrap();
        assert!(envelope::open(&theirs, &ctx, &sealed).is_err());
    }

    #[test]
    fn debug_of_internal_key_types_shows_no_key_bytes() {
        let ring_kek = RingKek::new(
            KeyId::new("customers", 3).unwrap(),
            Suite::Aes256Gcm,
            SecretKey::from_bytes([0xAB; 32]),
        );
        let keys = SubjectKeys::new(4, SecretKey::from_bytes([0xCD; 32]));
        let kek = keys.kek("cus_1", &ring_kek).unwrap();
        let integrity = crate::keys::integrity::Integrity::new(SecretKey::from_bytes([0xEF; 32]));
        let shown = [
            format!("{ring_kek:?}"),
            format!("{kek:?}"),
            format!("{keys:?}"),
            format!(
                "{:?}",
                SubjectState::Live(SubjectKeys::new(1, SecretKey::from_bytes([0xCD; 32])))
            ),
            format!("{integrity:?}"),
        ];
        for text in &shown {
            for byte in ["171", "205", "239", "ab", "AB", "cd", "CD", "ef", "EF"] {
                assert!(!text.contains(byte), "{text}");
            }
        }
        assert_eq!(
            shown[0],
            "RingKek { id: KeyId { name: \"customers\", version: 3, subject: None }, suite: \"AES-256-GCM\", .. }"
        );
        assert_eq!(shown[2], "SubjectKeys { generation: 4, .. }");
        assert_eq!(shown[4], "Integrity([REDACTED])");
    }

    #[test]
    fn subject_key_wrap_binds_subject_generation_and_version() {
        let ring_kek = RingKek::new(
            KeyId::new("customers", 3).unwrap(),
            Suite::Aes256Gcm,
            SecretKey::from_bytes([0x11; 32]),
        );
        let key = SecretKey::from_bytes([0x33; 32]);
        let blob = wrap_subject_key(&ring_kek, "cus_1", 1, &key).unwrap();
        assert_eq!(blob.len(), 12 + 32 + 16);
        let back = unwrap_subject_key(&ring_kek, "cus_1", 1, &blob).unwrap();
        assert_eq!(back.expose_secret(), key.expose_secret());
        assert!(unwrap_subject_key(&ring_kek, "cus_2", 1, &blob).is_err());
        assert!(unwrap_subject_key(&ring_kek, "cus_1", 2, &blob).is_err());
        let v4 = RingKek::new(
            KeyId::new("customers", 4).unwrap(),
            Suite::Aes256Gcm,
            SecretKey::from_bytes([0x11; 32]),
        );
        assert!(unwrap_subject_key(&v4, "cus_1", 1, &blob).is_err());
        assert!(unwrap_subject_key(&ring_kek, "cus_1", 1, &blob[1..]).is_err());
    }
}
