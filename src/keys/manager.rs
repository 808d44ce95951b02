//! The [`KeyManager`]: resolves keys (cache, then store, then root provider) and runs the envelope
//! operations with them.

use super::KeyError;
use super::cache::KeyCache;
use super::integrity::{INTEGRITY_KEY_AAD, INTEGRITY_KEY_META, Integrity};
use super::ring::{self, RingInfo, RingKek, RotationPolicy, VersionState};
use super::root::RootKeyProvider;
use super::store::{CommitOutcome, KeyStore, RingChange, RingRows, SubjectRecord};
use super::subject::{
    SubjectKek, SubjectKeys, SubjectState, new_subject_key, unwrap_subject_key, wrap_subject_key,
};
use crate::crypto::Suite;
use crate::envelope::{self, EncryptionContext, EnvelopeError, Header, Kek, KeyId};
use crate::secret::{SecretBytes, SecretKey};
use core::fmt;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak};

/// Tuning of a [`KeyManager`]. The defaults suit a shop backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerOptions {
    /// Unwrapped subject keys kept per ring (default 10,000). 0 disables the subject cache.
    pub subject_cache_capacity: usize,
    /// Seconds an unwrapped subject key stays cached (default 300). An erasure made by another
    /// process takes effect here after at most this long; erasures made through any manager of
    /// this process take effect at once.
    pub subject_cache_ttl_secs: u64,
    /// Encryptions reserved per store write (default 65,536). Reserved but unused encryptions
    /// (on exit or crash) count as used, so the 2^32 limit is never undercounted.
    pub usage_block: u64,
    /// When the primary version has used its encryption budget, rotate automatically instead of
    /// failing with [`KeyError::UsageExhausted`] (default true).
    pub auto_rotate_when_exhausted: bool,
    /// Compare-and-set attempts before giving up with [`KeyError::Conflict`] (default 32).
    pub max_conflict_retries: u32,
    /// Subject-key rows rewrapped per store round trip after a rotation (default 1,000).
    pub subject_rewrap_batch: usize,
}

impl Default for ManagerOptions {
    fn default() -> Self {
        Self {
            subject_cache_capacity: 10_000,
            subject_cache_ttl_secs: 300,
            usage_block: 1 << 16,
            auto_rotate_when_exhausted: true,
            max_conflict_retries: 32,
            subject_rewrap_batch: 1_000,
        }
    }
}

/// The record of an erasure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    /// Key ring.
    pub ring: String,
    /// Subject id.
    pub subject: String,
    /// Generation of the subject key that was erased.
    pub generation: u64,
    /// When it was erased (the first erasure's time if it already was).
    pub erased_at: u64,
    /// False when the subject had already been erased (nothing changed).
    pub newly_erased: bool,
}

/// One generation of a subject's key, as recorded in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectGeneration {
    /// Generation, from 1.
    pub generation: u64,
    /// Creation time (0 for a tombstone written by erasing a subject that had no key).
    pub created_at: u64,
    /// Erasure time, if erased.
    pub erased_at: Option<u64>,
    /// Ring version whose key wraps (or last wrapped) this subject key; 0 if it never had one.
    pub wrapped_by: u32,
}

/// The versions of a ring usable for lookups (blind indexes): write with the primary, query with
/// every live version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveVersions {
    /// The version new data is sealed under.
    pub primary: u32,
    /// Every version that can still decrypt, ascending (the primary included).
    pub live: Vec<u32>,
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// Key ring.
    pub ring: String,
    /// The new primary version.
    pub new_version: u32,
    /// Subject keys rewrapped to the new version.
    pub subject_keys_rewrapped: u64,
}

/// Encryptions this process may still do under one version: `[next, end)`.
struct Lease {
    version: u32,
    next: AtomicU64,
    end: u64,
}

impl Lease {
    fn empty(version: u32) -> Self {
        Self {
            version,
            next: AtomicU64::new(0),
            end: 0,
        }
    }

    fn try_take(&self, n: u64) -> bool {
        let taken = self.next.fetch_add(n, Ordering::Relaxed);
        taken.checked_add(n).is_some_and(|after| after <= self.end)
    }
}

/// A verified ring with its decryptable version keys unwrapped.
struct RingSnapshot {
    rows: RingRows,
    keys: BTreeMap<u32, Arc<RingKek>>,
    /// The snapshot may be used for sealing until then (half the ring's propagation time).
    valid_until: AtomicU64,
    lease: Arc<Lease>,
}

impl RingSnapshot {
    fn primary(&self) -> Result<&Arc<RingKek>, KeyError> {
        self.keys
            .get(&self.rows.ring.primary_version)
            .ok_or_else(|| {
                KeyError::tampered("primary version has no key", &self.rows.ring.name, None)
            })
    }

    fn decrypting_key(&self, version: u32) -> Result<&Arc<RingKek>, KeyError> {
        let ring = &self.rows.ring;
        let row = self
            .rows
            .versions
            .iter()
            .find(|v| v.version == version)
            .ok_or_else(|| KeyError::UnknownVersion {
                ring: ring.name.clone(),
                version,
            })?;
        match row.state {
            VersionState::Destroyed => Err(KeyError::VersionDestroyed {
                ring: ring.name.clone(),
                version,
            }),
            VersionState::Disabled => Err(KeyError::VersionDisabled {
                ring: ring.name.clone(),
                version,
                min_decryption_version: ring.min_decryption_version,
            }),
            VersionState::Active | VersionState::DecryptOnly => {
                self.keys
                    .get(&version)
                    .ok_or_else(|| KeyError::UnknownVersion {
                        ring: ring.name.clone(),
                        version,
                    })
            }
        }
    }
}

/// Everything this process holds for one ring.
struct RingHandle {
    name: String,
    snapshot: RwLock<Option<Arc<RingSnapshot>>>,
    /// Serialises this process's reloads, reservations and administrative changes of the ring
    /// (other processes are kept in line by the store's compare-and-set).
    update: Mutex<()>,
    subjects: KeyCache<SubjectState>,
}

/// A planned ring change: the next rows and an optional "no subject keys below this version"
/// guard, or `None` for nothing to do.
type Plan<'a> = dyn FnMut(&RingRows) -> Result<Option<(RingRows, Option<u32>)>, KeyError> + 'a;

type Rings = RwLock<HashMap<String, Arc<RingHandle>>>;

/// Every manager of this process with the id of its store, so that an erasure or a destruction
/// reaches the caches of all managers of the same store.
static MANAGERS: Mutex<Vec<([u8; 32], Weak<Rings>)>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `f` on the ring handle `ring` of every live manager of store `store_id` in this process.
fn broadcast(store_id: &[u8; 32], ring: &str, f: impl Fn(&RingHandle)) {
    let managers: Vec<Arc<Rings>> = {
        let mut all = lock(&MANAGERS);
        all.retain(|(_, w)| w.strong_count() > 0);
        all.iter()
            .filter(|(id, _)| id == store_id)
            .filter_map(|(_, w)| w.upgrade())
            .collect()
    };
    for rings in managers {
        let handle = rings
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(ring)
            .cloned();
        if let Some(handle) = handle {
            f(&handle);
        }
    }
}

/// Ties the key hierarchy together: root provider, key store, caches and the envelope format.
///
/// Share one manager per store across the application (`Arc<KeyManager>`; it is `Send + Sync`).
/// Methods taking `now` (seconds since the Unix epoch) may touch the store on a cache miss;
/// see `docs/ARCHITECTURE.md` for calling them from async code.
///
/// ```
/// use custodian::keys::{KeyManager, LocalRootKey, MemoryKeyStore, RotationPolicy};
/// use custodian::crypto::Suite;
/// use custodian::EncryptionContext;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let now = 1_700_000_000;
/// let keys = KeyManager::new(MemoryKeyStore::new(), LocalRootKey::random()?)?;
/// keys.create_ring("customers", Suite::default(), RotationPolicy::default(), now)?;
/// let ctx = EncryptionContext::new().with("table", "customers")?.with("record", "42")?;
///
/// let sealed = keys.seal("customers", Some("cus_42"), &ctx, b"jane@example.com", now)?;
/// assert_eq!(keys.open(&ctx, &sealed, now)?.expose_secret(), b"jane@example.com");
///
/// keys.rotate("customers", now + 10)?;
/// assert!(keys.needs_rewrap(&sealed, now + 10)?);
/// let rewrapped = keys.rewrap(&ctx, &sealed, now + 10)?;
/// assert!(!keys.needs_rewrap(&rewrapped, now + 10)?);
///
/// keys.erase_subject("customers", "cus_42", now + 20)?;
/// assert!(matches!(
///     keys.open(&ctx, &rewrapped, now + 20),
///     Err(custodian::keys::KeyError::SubjectErased { .. })
/// ));
/// # Ok(())
/// # }
/// ```
pub struct KeyManager {
    store: Arc<dyn KeyStore>,
    root: Arc<dyn RootKeyProvider>,
    integrity: Integrity,
    /// Identifies the store (derived from its integrity key) among the managers of this process.
    store_id: [u8; 32],
    options: ManagerOptions,
    rings: Arc<Rings>,
}

impl KeyManager {
    /// A manager with default options. Reads (or, on a new store, creates) the store-integrity
    /// key, which checks that `root` is the root key the store was created with.
    pub fn new(
        store: impl KeyStore + 'static,
        root: impl RootKeyProvider + 'static,
    ) -> Result<Self, KeyError> {
        Self::with_options(Arc::new(store), Arc::new(root), ManagerOptions::default())
    }

    /// A manager over shared store and root provider handles, with explicit options.
    pub fn with_options(
        store: Arc<dyn KeyStore>,
        root: Arc<dyn RootKeyProvider>,
        options: ManagerOptions,
    ) -> Result<Self, KeyError> {
        let blob = match store.get_meta(INTEGRITY_KEY_META)? {
            Some(blob) => blob,
            None => {
                let key = new_subject_key()?;
                let blob = root.wrap(INTEGRITY_KEY_AAD, &key)?;
                store.put_meta_if_absent(INTEGRITY_KEY_META, &blob)?
            }
        };
        let key = root.unwrap(INTEGRITY_KEY_AAD, &blob).map_err(|e| match e {
            KeyError::RootUnwrap(_) => KeyError::RootUnwrap(
                "the store-integrity key (is this the root key the store was created with?)".into(),
            ),
            other => other,
        })?;
        let integrity = Integrity::new(key);
        let store_id = integrity.store_id();
        let rings: Arc<Rings> = Arc::new(RwLock::new(HashMap::new()));
        {
            let mut all = lock(&MANAGERS);
            all.retain(|(_, w)| w.strong_count() > 0);
            all.push((store_id, Arc::downgrade(&rings)));
        }
        Ok(Self {
            store,
            root,
            integrity,
            store_id,
            options,
            rings,
        })
    }

    /// The key store.
    pub fn store(&self) -> &Arc<dyn KeyStore> {
        &self.store
    }

    // ---- Rings: creation and administration ----

    /// Creates a ring with version 1 as its primary.
    pub fn create_ring(
        &self,
        name: &str,
        suite: Suite,
        policy: RotationPolicy,
        now: u64,
    ) -> Result<RingInfo, KeyError> {
        KeyId::new(name, 1)?;
        policy.validate()?;
        let key = new_subject_key()?;
        let wrapped = self
            .root
            .wrap(ring::version_wrap_aad(name, 1, suite).bytes(), &key)?;
        let mut rows = ring::new_ring(name, suite, policy, wrapped, now);
        self.seal_rows(&mut rows);
        if !self.store.create_ring(&rows)? {
            return Err(KeyError::RingExists(name.to_owned()));
        }
        Ok(RingInfo::from_rows(&rows))
    }

    /// Creates the ring unless it exists; returns it either way (an existing ring keeps its
    /// suite and policy).
    pub fn ensure_ring(
        &self,
        name: &str,
        suite: Suite,
        policy: RotationPolicy,
        now: u64,
    ) -> Result<RingInfo, KeyError> {
        match self.create_ring(name, suite, policy, now) {
            Err(KeyError::RingExists(_)) => self.ring_info(name, now),
            other => other,
        }
    }

    /// Names of every ring in the store.
    pub fn ring_names(&self) -> Result<Vec<String>, KeyError> {
        self.store.ring_names()
    }

    /// The ring's versions, states and thresholds, freshly read and verified.
    pub fn ring_info(&self, ring: &str, now: u64) -> Result<RingInfo, KeyError> {
        let handle = self.handle(ring);
        let _guard = lock(&handle.update);
        let rows = self.load_verified(ring)?;
        let info = RingInfo::from_rows(&rows);
        self.install(&handle, rows, now, None)?;
        Ok(info)
    }

    /// The primary and the live versions (for blind indexes: write with the primary, query with
    /// every live version).
    pub fn live_versions(&self, ring: &str, now: u64) -> Result<LiveVersions, KeyError> {
        let snap = self.snapshot(&self.handle(ring), now)?;
        Ok(LiveVersions {
            primary: snap.rows.ring.primary_version,
            live: snap.keys.keys().copied().collect(),
        })
    }

    /// Adds a version and makes it the primary, then rewraps the subject keys to it.
    pub fn rotate(&self, ring: &str, now: u64) -> Result<Rotation, KeyError> {
        let handle = self.handle(ring);
        let rows = self
            .modify(&handle, now, false, |rows| self.plan_rotation(rows, now))?
            .ok_or_else(|| KeyError::Conflict(format!("key ring `{ring}`")))?;
        self.finish_rotation(ring, rows.ring.primary_version, now)
    }

    /// Rotates if the primary version is older than the policy's maximum age or has used its
    /// encryption budget. Two processes calling this at once rotate once.
    pub fn rotate_if_due(&self, ring: &str, now: u64) -> Result<Option<Rotation>, KeyError> {
        let handle = self.handle(ring);
        let rotated = self.modify(&handle, now, false, |rows| {
            if RingInfo::from_rows(rows).rotation_due(now) {
                self.plan_rotation(rows, now)
            } else {
                Ok(None)
            }
        })?;
        match rotated {
            Some(rows) => self
                .finish_rotation(ring, rows.ring.primary_version, now)
                .map(Some),
            None => Ok(None),
        }
    }

    /// [`KeyManager::rotate_if_due`] for every ring in the store (for a periodic job).
    pub fn rotate_due_rings(&self, now: u64) -> Result<Vec<Rotation>, KeyError> {
        let mut done = Vec::new();
        for name in self.store.ring_names()? {
            if let Some(rotation) = self.rotate_if_due(&name, now)? {
                done.push(rotation);
            }
        }
        Ok(done)
    }

    fn plan_rotation(
        &self,
        rows: &RingRows,
        now: u64,
    ) -> Result<Option<(RingRows, Option<u32>)>, KeyError> {
        let version = ring::next_version(rows)?;
        let key = new_subject_key()?;
        let wrapped = self.root.wrap(
            ring::version_wrap_aad(&rows.ring.name, version, rows.ring.suite).bytes(),
            &key,
        )?;
        Ok(Some((ring::rotate(rows, wrapped, now)?, None)))
    }

    fn finish_rotation(&self, ring: &str, version: u32, now: u64) -> Result<Rotation, KeyError> {
        // Subject keys left under older versions still open (those versions still decrypt), so a
        // crash here loses nothing; the next rotation, threshold change or destroy finishes it.
        let rewrapped = self.rewrap_subject_keys(ring, now)?;
        Ok(Rotation {
            ring: ring.to_owned(),
            new_version: version,
            subject_keys_rewrapped: rewrapped,
        })
    }

    /// Versions below `min` become decrypt-only.
    pub fn set_min_encryption_version(
        &self,
        ring: &str,
        min: u32,
        now: u64,
    ) -> Result<RingInfo, KeyError> {
        let handle = self.handle(ring);
        let rows = self.modify(&handle, now, false, |rows| {
            Ok(Some((ring::set_min_encryption_version(rows, min)?, None)))
        })?;
        self.info_after(ring, rows, now)
    }

    /// Versions below `min` stop decrypting (reversibly). Subject keys still wrapped by them are
    /// rewrapped to the primary first. Refused until each newly disabled version has been
    /// superseded for the ring's `propagation_secs`.
    pub fn set_min_decryption_version(
        &self,
        ring: &str,
        min: u32,
        now: u64,
    ) -> Result<RingInfo, KeyError> {
        let handle = self.handle(ring);
        let rows = self.modify_guarded(&handle, now, min, |rows| {
            ring::set_min_decryption_version(rows, min, now).map(Some)
        })?;
        self.info_after(ring, rows, now)
    }

    /// Irreversibly deletes the material of `version`, which must be below
    /// `min_decryption_version`. Data still under it can never be opened again. Returns false if it
    /// was already destroyed.
    pub fn destroy_version(&self, ring: &str, version: u32, now: u64) -> Result<bool, KeyError> {
        let handle = self.handle(ring);
        let destroyed = self.modify_guarded(&handle, now, version.saturating_add(1), |rows| {
            ring::destroy_version(rows, version)
        })?;
        broadcast(&self.store_id, ring, expire);
        Ok(destroyed.is_some())
    }

    /// Replaces the rotation policy.
    pub fn set_policy(
        &self,
        ring: &str,
        policy: RotationPolicy,
        now: u64,
    ) -> Result<RingInfo, KeyError> {
        let handle = self.handle(ring);
        let rows = self.modify(&handle, now, false, |rows| {
            Ok(Some((ring::set_policy(rows, policy)?, None)))
        })?;
        self.info_after(ring, rows, now)
    }

    fn info_after(
        &self,
        ring: &str,
        rows: Option<RingRows>,
        now: u64,
    ) -> Result<RingInfo, KeyError> {
        match rows {
            Some(rows) => Ok(RingInfo::from_rows(&rows)),
            None => self.ring_info(ring, now),
        }
    }

    /// Rewraps every live subject key of `ring` that is wrapped by a version older than the
    /// primary. Idempotent; safe to run concurrently with anything (each row is compare-and-set).
    pub fn rewrap_subject_keys(&self, ring: &str, now: u64) -> Result<u64, KeyError> {
        let handle = self.handle(ring);
        let mut total = 0u64;
        // Each pass rewraps a batch in one store transaction, or finds nothing left; the bound
        // only stops a store that keeps returning rows it then refuses to update.
        for _ in 0..100_000 {
            let snap = self.snapshot(&handle, now)?;
            let primary = snap.rows.ring.primary_version;
            let rows = self.store.subjects_wrapped_below(
                ring,
                primary,
                self.options.subject_rewrap_batch.max(1),
            )?;
            if rows.is_empty() {
                return Ok(total);
            }
            let mut batch = Vec::with_capacity(rows.len());
            for row in rows {
                self.integrity.verify_subject(&row)?;
                let Some(wrapped) = row.wrapped_key.as_deref() else {
                    continue;
                };
                let from = snap.decrypting_key(row.wrapped_by).map_err(|e| {
                    KeyError::Refused(format!(
                        "subject key of `{}` is wrapped by version {} of key ring `{ring}`, which cannot decrypt ({e}); lower min_decryption_version to {} and retry",
                        row.subject, row.wrapped_by, row.wrapped_by
                    ))
                })?;
                let key = unwrap_subject_key(from, &row.subject, row.generation, wrapped)?;
                let (_, to) = self.encrypting_key(&handle, now, 1)?;
                let to_version = to.key_id().version();
                if to_version <= row.wrapped_by {
                    continue;
                }
                let mut next = row.clone();
                next.wrapped_by = to_version;
                next.wrapped_key = Some(wrap_subject_key(&to, &row.subject, row.generation, &key)?);
                self.integrity.seal_subject(&mut next);
                batch.push((next, row.wrapped_by));
            }
            let done = self.store.rewrap_subjects(&batch)?;
            total += done.iter().filter(|d| **d).count() as u64;
        }
        Err(KeyError::Conflict(format!(
            "subject keys of key ring `{ring}`"
        )))
    }

    // ---- Data: seal, open, rewrap ----

    /// Seals `plaintext` under the ring's primary version, for `subject` if given (creating the
    /// subject's key on first use, or a new generation after an erasure).
    pub fn seal(
        &self,
        ring: &str,
        subject: Option<&str>,
        context: &EncryptionContext,
        plaintext: &[u8],
        now: u64,
    ) -> Result<Vec<u8>, KeyError> {
        let handle = self.handle(ring);
        let (snap, ring_kek) = self.encrypting_key(&handle, now, 1)?;
        match subject {
            None => Ok(envelope::seal(ring_kek.as_ref(), context, plaintext)?),
            Some(subject) => {
                let kek = self.subject_kek(&handle, &snap, &ring_kek, subject, now)?;
                Ok(envelope::seal(kek.as_ref(), context, plaintext)?)
            }
        }
    }

    /// Opens a ciphertext sealed by [`KeyManager::seal`]; the ring, version and subject come from
    /// its header.
    pub fn open(
        &self,
        context: &EncryptionContext,
        ciphertext: &[u8],
        now: u64,
    ) -> Result<SecretBytes, KeyError> {
        let header = Header::parse(ciphertext)?;
        self.with_decrypting_kek(&header, now, |kek, _| {
            envelope::open(kek, context, ciphertext).map_err(KeyError::from)
        })
    }

    /// Whether the ciphertext is under an older version than its ring's primary (header only,
    /// no decryption).
    pub fn needs_rewrap(&self, ciphertext: &[u8], now: u64) -> Result<bool, KeyError> {
        let header = Header::parse(ciphertext)?;
        let snap = self.snapshot(&self.handle(header.key_id().name()), now)?;
        Ok(header.key_id().version() < snap.rows.ring.primary_version)
    }

    /// Rewraps the data key to the ring's primary version without decrypting the payload; the
    /// cost does not depend on the payload size.
    pub fn rewrap(
        &self,
        context: &EncryptionContext,
        ciphertext: &[u8],
        now: u64,
    ) -> Result<Vec<u8>, KeyError> {
        let mut out = ciphertext.to_vec();
        self.rewrap_in_place(context, &mut out, now)?;
        Ok(out)
    }

    /// Like [`KeyManager::rewrap`], rewriting only the header part of `ciphertext`. Returns false
    /// (and changes nothing) when it is already under the primary version. On error the
    /// ciphertext is unchanged.
    pub fn rewrap_in_place(
        &self,
        context: &EncryptionContext,
        ciphertext: &mut Vec<u8>,
        now: u64,
    ) -> Result<bool, KeyError> {
        let header = Header::parse(ciphertext)?;
        let id = header.key_id();
        let handle = self.handle(id.name());
        let snap = self.snapshot(&handle, now)?;
        if id.version() >= snap.rows.ring.primary_version {
            return Ok(false);
        }
        let (_, to_ring) = self.encrypting_key(&handle, now, 1)?;
        if id.version() >= to_ring.key_id().version() {
            return Ok(false);
        }
        self.with_decrypting_kek(&header, now, |from, subject| {
            // The target KEK comes from the same subject key generation as the source.
            let to: Arc<dyn Kek> = match (subject, id.subject()) {
                (Some(keys), Some(subject)) => keys.kek(subject, &to_ring)?,
                _ => to_ring.clone(),
            };
            envelope::rewrap_in_place(from, to.as_ref(), context, ciphertext)
                .map_err(KeyError::from)
        })?;
        Ok(true)
    }

    /// Opens and seals again under the primary version with a fresh data key (after a suspected
    /// data-key leak). Costs a full decryption and encryption.
    pub fn reencrypt(
        &self,
        context: &EncryptionContext,
        ciphertext: &[u8],
        now: u64,
    ) -> Result<Vec<u8>, KeyError> {
        let header = Header::parse(ciphertext)?;
        let plaintext = self.open(context, ciphertext, now)?;
        let id = header.key_id();
        self.seal(
            id.name(),
            id.subject(),
            context,
            plaintext.expose_secret(),
            now,
        )
    }

    /// A key for another purpose (such as a blind index) derived from a live version of the ring:
    /// HKDF-SHA256 with `info` (see `docs/KEYSTORE.md`). The version key itself never leaves the
    /// manager.
    pub fn derive_key(
        &self,
        ring: &str,
        version: u32,
        info: &[u8],
        now: u64,
    ) -> Result<SecretKey, KeyError> {
        let handle = self.handle(ring);
        let snap = self.snapshot(&handle, now)?;
        let snap = if version > snap.rows.ring.primary_version {
            self.reload(&handle, now)?
        } else {
            snap
        };
        Ok(snap.decrypting_key(version)?.derive_key(info))
    }

    // ---- Subjects ----

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
            let (_, ring_kek) = self.encrypting_key(&handle, now, 1)?;
            let key = new_subject_key()?;
            rows.push(self.new_subject_row(&ring_kek, subject, 1, &key, now)?);
            keys.push(key);
        }
        let inserted = self.store.insert_subjects(&rows)?;
        let mut created = 0;
        for ((subject, key), inserted) in subjects.iter().zip(keys).zip(&inserted) {
            if *inserted {
                created += 1;
                handle.subjects.insert(
                    subject,
                    Arc::new(SubjectState::Live(SubjectKeys::new(1, key))),
                    now,
                );
            } else {
                // Generation 1 exists: the subject is live already, or was erased and needs a
                // new generation, which the single-subject path handles.
                let snap = self.snapshot(&handle, now)?;
                let (_, new) = self.subject_keys(&handle, &snap, subject, now, true)?;
                created += usize::from(new);
            }
        }
        Ok(created)
    }

    /// Erases the subject's key (crypto-shredding): every ciphertext sealed for `subject` in
    /// `ring`, under any version, fails with [`KeyError::SubjectErased`] from now on, in every
    /// manager of this process at once and in other processes once their subject cache expires.
    /// The erasure time is recorded in the store. Erasing twice is harmless.
    pub fn erase_subject(&self, ring: &str, subject: &str, now: u64) -> Result<Erasure, KeyError> {
        KeyId::new(ring, 1)?.for_subject(subject)?;
        let mut result = None;
        for _ in 0..self.options.max_conflict_retries.max(1) {
            let current = self.store.load_subject(ring, subject)?;
            if let Some(row) = &current {
                self.integrity.verify_subject(row)?;
            }
            match current {
                Some(row) if !row.is_live() => {
                    result = Some(Erasure {
                        ring: ring.to_owned(),
                        subject: subject.to_owned(),
                        generation: row.generation,
                        erased_at: row.erased_at.unwrap_or(now),
                        newly_erased: false,
                    });
                    break;
                }
                Some(row) => {
                    let mut tombstone = row.clone();
                    tombstone.wrapped_key = None;
                    tombstone.erased_at = Some(now);
                    self.integrity.seal_subject(&mut tombstone);
                    if self.store.erase_subject(&tombstone)? {
                        result = Some(Erasure {
                            ring: ring.to_owned(),
                            subject: subject.to_owned(),
                            generation: row.generation,
                            erased_at: now,
                            newly_erased: true,
                        });
                        break;
                    }
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
                    if self
                        .store
                        .insert_subjects(std::slice::from_ref(&tombstone))?
                        == [true]
                    {
                        result = Some(Erasure {
                            ring: ring.to_owned(),
                            subject: subject.to_owned(),
                            generation: 1,
                            erased_at: now,
                            newly_erased: true,
                        });
                        break;
                    }
                }
            }
        }
        let erasure = result.ok_or_else(|| KeyError::Conflict(format!("subject `{subject}`")))?;
        let erased_at = erasure.erased_at;
        broadcast(&self.store_id, ring, |h| {
            h.subjects.remove(subject);
            h.subjects
                .insert(subject, Arc::new(SubjectState::Erased { erased_at }), now);
        });
        Ok(erasure)
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

    // ---- Internals: snapshots ----

    fn handle(&self, ring: &str) -> Arc<RingHandle> {
        if let Some(handle) = self
            .rings
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(ring)
        {
            return Arc::clone(handle);
        }
        let mut rings = self.rings.write().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(rings.entry(ring.to_owned()).or_insert_with(|| {
            Arc::new(RingHandle {
                name: ring.to_owned(),
                snapshot: RwLock::new(None),
                update: Mutex::new(()),
                subjects: KeyCache::new(
                    self.options.subject_cache_capacity,
                    self.options.subject_cache_ttl_secs,
                ),
            })
        }))
    }

    /// A snapshot valid at `now`, reloading the ring if needed.
    fn snapshot(&self, handle: &RingHandle, now: u64) -> Result<Arc<RingSnapshot>, KeyError> {
        if let Some(snap) = current(handle, now) {
            return Ok(snap);
        }
        let _guard = lock(&handle.update);
        if let Some(snap) = current(handle, now) {
            return Ok(snap);
        }
        let rows = self.load_verified(&handle.name)?;
        self.install(handle, rows, now, None)
    }

    /// Reloads the ring even if the snapshot is still valid (a ciphertext names a newer version).
    fn reload(&self, handle: &RingHandle, now: u64) -> Result<Arc<RingSnapshot>, KeyError> {
        let _guard = lock(&handle.update);
        let rows = self.load_verified(&handle.name)?;
        self.install(handle, rows, now, None)
    }

    fn load_verified(&self, ring: &str) -> Result<RingRows, KeyError> {
        let rows = self
            .store
            .load_ring(ring)?
            .ok_or_else(|| KeyError::UnknownRing(ring.to_owned()))?;
        if rows.ring.name != ring {
            return Err(KeyError::tampered("ring row has another name", ring, None));
        }
        self.integrity.verify_ring(&rows)?;
        ring::check_consistency(&rows)?;
        Ok(rows)
    }

    /// Builds and installs a snapshot of verified `rows`, reusing keys already unwrapped and
    /// carrying over this process's usage lease when the primary is unchanged.
    fn install(
        &self,
        handle: &RingHandle,
        rows: RingRows,
        now: u64,
        lease: Option<Lease>,
    ) -> Result<Arc<RingSnapshot>, KeyError> {
        let old = handle
            .snapshot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let suite = rows.ring.suite;
        let mut keys = BTreeMap::new();
        for v in rows.versions.iter().filter(|v| v.state.can_decrypt()) {
            let Some(wrapped) = v.wrapped_key.as_deref() else {
                continue;
            };
            let reused = old.as_ref().and_then(|old| {
                let same =
                    old.rows.versions.iter().any(|o| {
                        o.version == v.version && o.wrapped_key.as_deref() == Some(wrapped)
                    });
                if same {
                    old.keys.get(&v.version).cloned()
                } else {
                    None
                }
            });
            let kek = match reused {
                Some(kek) => kek,
                None => {
                    let aad = ring::version_wrap_aad(&rows.ring.name, v.version, suite);
                    let key = self
                        .root
                        .unwrap(aad.bytes(), wrapped)
                        .map_err(|e| match e {
                            KeyError::RootUnwrap(_) => KeyError::RootUnwrap(format!(
                                "version {} of key ring `{}`",
                                v.version, rows.ring.name
                            )),
                            other => other,
                        })?;
                    Arc::new(RingKek::new(
                        KeyId::new(&rows.ring.name, v.version)?,
                        suite,
                        key,
                    ))
                }
            };
            keys.insert(v.version, kek);
        }
        let primary = rows.ring.primary_version;
        let lease = match (lease, &old) {
            (Some(lease), _) => Arc::new(lease),
            (None, Some(old)) if old.lease.version == primary => Arc::clone(&old.lease),
            _ => Arc::new(Lease::empty(primary)),
        };
        let shrank = old
            .as_ref()
            .is_some_and(|old| old.keys.keys().any(|v| !keys.contains_key(v)));
        let snap = Arc::new(RingSnapshot {
            valid_until: AtomicU64::new(now.saturating_add(rows.ring.policy.propagation_secs / 2)),
            rows,
            keys,
            lease,
        });
        *handle
            .snapshot
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&snap));
        if shrank {
            // Drop subject KEKs derived from versions that can no longer decrypt.
            handle.subjects.for_each(|_, state| {
                if let SubjectState::Live(keys) = state {
                    keys.forget_versions(|v| snap.keys.contains_key(&v));
                }
            });
        }
        Ok(snap)
    }

    /// Recomputes every MAC of `rows`.
    fn seal_rows(&self, rows: &mut RingRows) {
        for v in &mut rows.versions {
            self.integrity.seal_version(v);
        }
        self.integrity.seal_ring(&mut rows.ring, &rows.versions);
    }

    /// Applies a planned change with compare-and-set, reloading and re-planning on conflict.
    /// `plan` returns the next rows and an optional "no subject keys below version" guard, or
    /// `None` for "nothing to do". Returns the committed rows, if any.
    fn modify(
        &self,
        handle: &RingHandle,
        now: u64,
        from_snapshot: bool,
        mut plan: impl FnMut(&RingRows) -> Result<Option<(RingRows, Option<u32>)>, KeyError>,
    ) -> Result<Option<RingRows>, KeyError> {
        let _guard = lock(&handle.update);
        self.modify_locked(handle, now, from_snapshot, &mut plan)
    }

    fn modify_locked(
        &self,
        handle: &RingHandle,
        now: u64,
        from_snapshot: bool,
        plan: &mut Plan<'_>,
    ) -> Result<Option<RingRows>, KeyError> {
        let mut cached = if from_snapshot {
            current(handle, now).map(|s| s.rows.clone())
        } else {
            None
        };
        for _ in 0..self.options.max_conflict_retries.max(1) {
            let rows = match cached.take() {
                Some(rows) => rows,
                None => self.load_verified(&handle.name)?,
            };
            let Some((mut next, guard)) = plan(&rows)? else {
                self.install(handle, rows, now, None)?;
                return Ok(None);
            };
            self.seal_rows(&mut next);
            let changed = next
                .versions
                .iter()
                .filter(|v| !rows.versions.contains(v))
                .cloned()
                .collect();
            let change = RingChange {
                expected_generation: rows.ring.generation,
                ring: next.ring.clone(),
                versions: changed,
                require_no_subject_keys_below: guard,
            };
            match self.store.commit_ring(&change)? {
                CommitOutcome::Committed => {
                    self.install(handle, next.clone(), now, None)?;
                    return Ok(Some(next));
                }
                CommitOutcome::Conflict => continue,
                CommitOutcome::SubjectKeysDepend(count) => {
                    return Err(KeyError::SubjectKeysDepend {
                        ring: handle.name.clone(),
                        below: guard.unwrap_or(0),
                        count,
                    });
                }
            }
        }
        Err(KeyError::Conflict(format!("key ring `{}`", handle.name)))
    }

    /// [`KeyManager::modify`] for changes that disable versions below `below`. The store refuses
    /// them while live subject keys are wrapped by such versions; those are then rewrapped to the
    /// primary and the change retried.
    fn modify_guarded(
        &self,
        handle: &RingHandle,
        now: u64,
        below: u32,
        mut plan: impl FnMut(&RingRows) -> Result<Option<RingRows>, KeyError>,
    ) -> Result<Option<RingRows>, KeyError> {
        let mut attempts = 0;
        loop {
            let result = self.modify(handle, now, false, |rows| {
                Ok(plan(rows)?.map(|next| (next, Some(below))))
            });
            match result {
                Err(KeyError::SubjectKeysDepend { .. }) if attempts < 3 => {
                    attempts += 1;
                    self.rewrap_subject_keys(&handle.name, now)?;
                }
                other => return other,
            }
        }
    }

    /// The primary version's KEK with `n` encryptions reserved under it.
    fn encrypting_key(
        &self,
        handle: &RingHandle,
        now: u64,
        n: u64,
    ) -> Result<(Arc<RingSnapshot>, Arc<RingKek>), KeyError> {
        for _ in 0..self.options.max_conflict_retries.max(1) {
            let snap = self.snapshot(handle, now)?;
            if snap.lease.try_take(n) {
                let kek = Arc::clone(snap.primary()?);
                return Ok((snap, kek));
            }
            self.reserve(handle, &snap, now, n)?;
        }
        Err(KeyError::Conflict(format!(
            "usage reservation of key ring `{}`",
            handle.name
        )))
    }

    /// Reserves a block of encryptions under the primary (rotating first if it is exhausted).
    fn reserve(
        &self,
        handle: &RingHandle,
        seen: &Arc<RingSnapshot>,
        now: u64,
        n: u64,
    ) -> Result<(), KeyError> {
        let _guard = lock(&handle.update);
        // Another thread may have reserved while this one waited for the lock.
        if let Some(snap) = current(handle, now)
            && !Arc::ptr_eq(&snap, seen)
            && snap.lease.next.load(Ordering::Relaxed).saturating_add(n) <= snap.lease.end
        {
            return Ok(());
        }
        let block = self.options.usage_block.max(n);
        let mut rotated = false;
        for _ in 0..self.options.max_conflict_retries.max(1) {
            let mut granted = None;
            let mut primary = 0;
            let committed = self.modify_locked(handle, now, true, &mut |rows| {
                primary = rows.ring.primary_version;
                match ring::reserve_usage(rows, block)? {
                    Some((next, start, end)) => {
                        granted = Some((next.ring.primary_version, start, end));
                        Ok(Some((next, None)))
                    }
                    None => {
                        granted = None;
                        Ok(None)
                    }
                }
            })?;
            match (committed, granted) {
                (Some(rows), Some((version, start, end))) => {
                    self.install(
                        handle,
                        rows,
                        now,
                        Some(Lease {
                            version,
                            next: AtomicU64::new(start),
                            end,
                        }),
                    )?;
                    return Ok(());
                }
                _ => {
                    if !self.options.auto_rotate_when_exhausted || rotated {
                        return Err(KeyError::UsageExhausted {
                            ring: handle.name.clone(),
                            version: primary,
                        });
                    }
                    // Rotate unless another writer already did (the plan re-checks on reload).
                    self.modify_locked(handle, now, false, &mut |rows| {
                        if ring::reserve_usage(rows, 1)?.is_none() {
                            self.plan_rotation(rows, now)
                        } else {
                            Ok(None)
                        }
                    })?;
                    rotated = true;
                }
            }
        }
        Err(KeyError::Conflict(format!(
            "usage reservation of key ring `{}`",
            handle.name
        )))
    }

    /// The KEK of `subject` under the primary `ring_kek`, creating the subject key if needed.
    fn subject_kek(
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
    /// The flag says whether this call created it.
    fn subject_keys(
        &self,
        handle: &RingHandle,
        snap: &RingSnapshot,
        subject: &str,
        now: u64,
        create: bool,
    ) -> Result<(LiveSubject, bool), KeyError> {
        if let Some(state) = handle.subjects.get(subject, now) {
            match state.as_ref() {
                SubjectState::Live(_) => return Ok((LiveSubject(state), false)),
                SubjectState::Erased { erased_at } if !create => {
                    return Err(erased(&handle.name, subject, *erased_at));
                }
                SubjectState::Erased { .. } => {}
            }
        }
        for _ in 0..self.options.max_conflict_retries.max(1) {
            let row = self.store.load_subject(&handle.name, subject)?;
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
                    handle.subjects.insert(subject, Arc::clone(&state), now);
                    return Ok((LiveSubject(state), false));
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
            let (_, wrap_kek) = self.encrypting_key(handle, now, 1)?;
            let key = new_subject_key()?;
            let row = self.new_subject_row(&wrap_kek, subject, generation, &key, now)?;
            if self.store.insert_subjects(std::slice::from_ref(&row))? == [true] {
                let state = Arc::new(SubjectState::Live(SubjectKeys::new(generation, key)));
                handle.subjects.insert(subject, Arc::clone(&state), now);
                return Ok((LiveSubject(state), true));
            }
            // Someone else created this generation first: use theirs.
        }
        Err(KeyError::Conflict(format!("subject `{subject}`")))
    }

    fn new_subject_row(
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

    /// Resolves the KEK named by `header` and runs `f` with it. A subject KEK from the cache that
    /// fails to decrypt is reloaded once from the store (another process may have erased and
    /// re-created the subject).
    fn with_decrypting_kek<T>(
        &self,
        header: &Header,
        now: u64,
        mut f: impl FnMut(&dyn Kek, Option<&LiveSubject>) -> Result<T, KeyError>,
    ) -> Result<T, KeyError> {
        let id = header.key_id();
        let handle = self.handle(id.name());
        let mut snap = self.snapshot(&handle, now)?;
        if id.version() > snap.rows.ring.primary_version {
            snap = self.reload(&handle, now)?;
        }
        let ring_kek = Arc::clone(snap.decrypting_key(id.version())?);
        let Some(subject) = id.subject() else {
            return f(ring_kek.as_ref(), None);
        };
        // Never creates: a ciphertext of an erased subject must not bring the subject back.
        let was_cached = handle.subjects.get(subject, now).is_some();
        let (keys, _) = self.subject_keys(&handle, &snap, subject, now, false)?;
        let kek = keys.kek(subject, &ring_kek)?;
        match f(kek.as_ref(), Some(&keys)) {
            Err(e) if was_cached && e.is_decrypt_failure() => {
                handle.subjects.remove(subject);
                let (keys, _) = self.subject_keys(&handle, &snap, subject, now, false)?;
                let kek = keys.kek(subject, &ring_kek)?;
                f(kek.as_ref(), Some(&keys))
            }
            other => other,
        }
    }
}

/// A subject state known to be `Live`.
struct LiveSubject(Arc<SubjectState>);

impl LiveSubject {
    fn kek(&self, subject: &str, ring_kek: &RingKek) -> Result<Arc<SubjectKek>, KeyError> {
        match self.0.as_ref() {
            SubjectState::Live(keys) => keys.kek(subject, ring_kek),
            SubjectState::Erased { .. } => Err(EnvelopeError::Decrypt.into()),
        }
    }
}

fn erased(ring: &str, subject: &str, erased_at: u64) -> KeyError {
    KeyError::SubjectErased {
        ring: ring.to_owned(),
        subject: subject.to_owned(),
        erased_at,
    }
}

/// The handle's snapshot if still valid at `now`.
fn current(handle: &RingHandle, now: u64) -> Option<Arc<RingSnapshot>> {
    handle
        .snapshot
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .filter(|s| now < s.valid_until.load(Ordering::Relaxed))
        .cloned()
}

/// Marks the handle's snapshot stale, so the next use reloads it (after a destroy elsewhere in
/// this process).
fn expire(handle: &RingHandle) {
    if let Some(snap) = handle
        .snapshot
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
    {
        snap.valid_until.store(0, Ordering::Relaxed);
    }
}

impl fmt::Debug for KeyManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rings: Vec<String> = self
            .rings
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        f.debug_struct("KeyManager")
            .field("store", &self.store)
            .field("root", &self.root)
            .field("loaded_rings", &rings)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}
