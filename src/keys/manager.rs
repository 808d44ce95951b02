//! The [`KeyManager`]: resolves keys (cache, then store, then root provider) and runs the envelope
//! operations with them.

use super::KeyError;
use super::feed;
use super::integrity::Integrity;
use super::io_guard::{GuardedRoot, GuardedStore};
use super::root::RootKeyProvider;
use super::state::{MANAGERS, Rings, lock};
use super::state::{RingHandle, RingSnapshot};
use super::store::KeyStore;
use super::subject::{KeySource, LiveSubject};
use crate::envelope::{self, EncryptionContext, Header, HeaderRef, Kek};
use crate::secret::{SecretBytes, SecretKey};
use core::fmt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

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
    /// Subject-key rows rewrapped per store transaction by [`KeyManager::rewrap_subject_keys_batch`]
    /// (default 1,000).
    pub subject_rewrap_batch: usize,
    /// How often, in milliseconds, the store's change feed is read (default 250): erasures,
    /// rotations and disabled or destroyed versions made by other processes and servers leave this
    /// manager's caches within about this long while the store is reachable. 0 turns the feed off;
    /// then only `subject_cache_ttl_secs` and the ring's `propagation_secs` bound how long other
    /// processes' changes take to arrive.
    pub change_feed_poll_ms: u64,
    /// The principal recorded in the audit log for the key operations this manager performs
    /// (default `custodian`): name the service or the job. Operations that take an actor
    /// ([`KeyManager::erase_subject_by`]) record that one instead.
    pub actor: String,
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
            change_feed_poll_ms: 250,
            actor: "custodian".into(),
        }
    }
}

/// The record of an erasure.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
    /// Whether the key material is confirmed gone from the store's files, not only from its
    /// tables (for SQLite: the write-ahead log was checkpointed and truncated). `false` means
    /// readers held older snapshots; [`KeyManager::purge`] confirms it later.
    pub purged: bool,
    /// Index of the erasure's entry in the store's audit log (`None` if it was erased before).
    pub audit_index: Option<u64>,
}

/// What [`KeyManager::destroy_version`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Destruction {
    /// False when the version had already been destroyed (nothing changed).
    pub newly_destroyed: bool,
    /// Whether the material is confirmed gone from the store's files, not only from its tables;
    /// `false` means readers held older snapshots and [`KeyManager::purge`] must confirm it later.
    pub purged: bool,
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

/// What a rotation did. It does not rewrap subject keys: that is
/// [`KeyManager::rewrap_subject_keys`], a resumable job run after it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rotation {
    /// Key ring.
    pub ring: String,
    /// The new primary version.
    pub new_version: u32,
}

/// What one [`KeyManager::rewrap_subject_keys_batch`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SubjectRewrapBatch {
    /// Subject keys rewrapped to the primary version in this batch (rows another server rewrapped
    /// first are not counted).
    pub rewrapped: u64,
    /// Whether no subject key was left below the primary version: the job is finished.
    pub done: bool,
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
///
/// Clones are cheap and share the store, the caches and the change feed.
#[derive(Clone)]
pub struct KeyManager {
    pub(super) store: Arc<dyn KeyStore>,
    pub(super) root: Arc<dyn RootKeyProvider>,
    pub(super) integrity: Arc<Integrity>,
    /// Identifies the store (derived from its integrity key) among the managers of this process.
    pub(super) store_id: [u8; 32],
    pub(super) options: ManagerOptions,
    pub(super) rings: Arc<Rings>,
    /// The store's change feed up to this position has been applied to the caches.
    pub(super) feed_position: Arc<AtomicU64>,
    /// The highest ledger counter this manager has seen: an older ledger is a rollback.
    pub(super) ledger_seen: Arc<AtomicU64>,
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
        // Every store and root access goes through the guards (see `io_guard`).
        let store: Arc<dyn KeyStore> = Arc::new(GuardedStore(store));
        let root: Arc<dyn RootKeyProvider> = Arc::new(GuardedRoot(root));
        let integrity = Arc::new(Self::open_integrity(store.as_ref(), root.as_ref())?);
        let store_id = integrity.store_id();
        // Changes before now concern nothing this new manager has cached.
        let feed_position = Arc::new(AtomicU64::new(store.changes_since(u64::MAX, 0)?.latest));
        let rings: Arc<Rings> = Arc::new(RwLock::new(HashMap::default()));
        {
            let mut all = lock(&MANAGERS);
            all.retain(|(_, w)| w.strong_count() > 0);
            all.push((store_id, Arc::downgrade(&rings)));
        }
        let manager = Self {
            store,
            root,
            integrity,
            store_id,
            options,
            rings,
            feed_position,
            ledger_seen: Arc::new(AtomicU64::new(0)),
        };
        feed::follow(&manager);
        Ok(manager)
    }

    /// The options this manager was built with.
    pub fn options(&self) -> &ManagerOptions {
        &self.options
    }

    /// The key store.
    pub fn store(&self) -> &Arc<dyn KeyStore> {
        &self.store
    }

    // Ring administration (create, rotate, thresholds, destroy) is in `admin.rs`; subject-key
    // creation and erasure in `subject.rs`.

    /// The primary and the live versions (for blind indexes: write with the primary, query with
    /// every live version), as of this process's view of the ring, which is at most half the
    /// ring's `propagation_secs` old: a version another process has just added may be missing.
    pub fn live_versions(&self, ring: &str, now: u64) -> Result<LiveVersions, KeyError> {
        let snap = self.snapshot(&self.handle(ring), now)?;
        Ok(LiveVersions {
            primary: snap.rows.ring.primary_version,
            live: snap.keys.keys().copied().collect(),
        })
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
        if let Some(sealed) = self.seal_cached(ring, subject, context, plaintext, now) {
            return sealed;
        }
        let handle = self.handle(ring);
        let snap = self.encrypting_key(&handle, now, 1)?;
        let ring_kek = snap.primary()?;
        match subject {
            None => Ok(envelope::seal(ring_kek.as_ref(), context, plaintext)?),
            Some(subject) => {
                let kek = self.subject_kek(&handle, &snap, ring_kek, subject, now)?;
                Ok(envelope::seal(kek.as_ref(), context, plaintext)?)
            }
        }
    }

    /// [`KeyManager::seal`] when everything it needs is in memory already: the ring's snapshot is
    /// valid and has encryptions left, and the subject's key and its KEK under the primary are
    /// cached. It borrows them under two read locks (the ring map, which holds the snapshot, and
    /// the subject cache's shard) instead of cloning `Arc`s: 5 atomic read-modify-writes instead
    /// of about 17 (issue 15: a cached-subject seal within 1.1x of a bare one). `None` means
    /// something must be loaded, reserved or derived: the general path does it.
    fn seal_cached(
        &self,
        ring: &str,
        subject: Option<&str>,
        context: &EncryptionContext,
        plaintext: &[u8],
        now: u64,
    ) -> Option<Result<Vec<u8>, KeyError>> {
        self.with_cached_ring(ring, now, |handle, snap| {
            let ring_kek = snap.keys.get(&snap.rows.ring.primary_version)?;
            // The encryption is counted only once nothing can send this call to the general path.
            let seal = |kek: &dyn Kek| {
                snap.lease
                    .try_take(1)
                    .then(|| envelope::seal(kek, context, plaintext).map_err(KeyError::from))
            };
            match subject {
                None => seal(ring_kek.as_ref()),
                Some(subject) => handle.with_cached_kek(subject, ring_kek, now, seal),
            }
        })
    }

    /// Calls `f` with the ring's handle and its snapshot if that is valid at `now`, under the ring
    /// map's read lock (the cached paths of seal and open).
    fn with_cached_ring<R>(
        &self,
        ring: &str,
        now: u64,
        f: impl FnOnce(&RingHandle, &RingSnapshot) -> Option<R>,
    ) -> Option<R> {
        let rings = self.rings.read().unwrap_or_else(PoisonError::into_inner);
        let entry = rings.get(ring)?;
        let snap = entry
            .snapshot
            .as_ref()
            .filter(|snap| now < snap.valid_until.load(Ordering::Relaxed))?;
        f(&entry.handle, snap)
    }

    /// Seals several values for the same subject (or none) at once: one key resolution, one usage
    /// reservation and one call to the random generator ([`envelope::seal_many`]).
    pub fn seal_many(
        &self,
        ring: &str,
        subject: Option<&str>,
        items: &[(&EncryptionContext, &[u8])],
        now: u64,
    ) -> Result<Vec<Vec<u8>>, KeyError> {
        let count = u64::try_from(items.len()).unwrap_or(u64::MAX);
        let handle = self.handle(ring);
        let snap = self.encrypting_key(&handle, now, count)?;
        let ring_kek = snap.primary()?;
        match subject {
            None => Ok(envelope::seal_many(ring_kek.as_ref(), items)?),
            Some(subject) => {
                let kek = self.subject_kek(&handle, &snap, ring_kek, subject, now)?;
                Ok(envelope::seal_many(kek.as_ref(), items)?)
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
        let parsed = HeaderRef::parse(ciphertext)?;
        if let Some(plaintext) = self.open_cached(context, ciphertext, parsed, now) {
            return Ok(plaintext);
        }
        self.with_decrypting_kek(&parsed.to_header(), now, |kek, _| {
            envelope::open_ref(kek, context, ciphertext, parsed).map_err(KeyError::from)
        })
    }

    /// [`KeyManager::open`] when the keys are in memory, borrowed as in
    /// [`KeyManager::seal_cached`]. Only a successful open is returned: on any failure the general
    /// path runs and reports it (and handles a cached key of an older generation), so errors are
    /// exactly its own.
    fn open_cached(
        &self,
        context: &EncryptionContext,
        ciphertext: &[u8],
        header: HeaderRef<'_>,
        now: u64,
    ) -> Option<SecretBytes> {
        self.with_cached_ring(header.name(), now, |handle, snap| {
            let ring_kek = snap.decrypting_key(header.version()).ok()?;
            let open = |kek: &dyn Kek| envelope::open_ref(kek, context, ciphertext, header).ok();
            match header.subject() {
                None => open(ring_kek.as_ref()),
                Some(subject) => handle.with_cached_kek(subject, ring_kek, now, open),
            }
        })
    }

    /// Opens several ciphertexts; each gets its own result. Consecutive ciphertexts under the same
    /// key (the fields of one record) share one key resolution; any that fails is retried alone
    /// through [`KeyManager::open`], so the results are exactly those of calling it for each.
    pub fn open_many(
        &self,
        items: &[(&EncryptionContext, &[u8])],
        now: u64,
    ) -> Vec<Result<SecretBytes, KeyError>> {
        let headers: Vec<Option<Header>> =
            items.iter().map(|(_, ct)| Header::parse(ct).ok()).collect();
        let mut results = Vec::with_capacity(items.len());
        let mut start = 0;
        while let Some(&(context, ciphertext)) = items.get(start) {
            let Some(Some(header)) = headers.get(start) else {
                // Malformed: `open` reports why.
                results.push(self.open(context, ciphertext, now));
                start += 1;
                continue;
            };
            let len = headers
                .get(start..)
                .unwrap_or_default()
                .iter()
                .take_while(|h| h.as_ref().is_some_and(|h| h.key_id() == header.key_id()))
                .count();
            let group = items.get(start..start + len).unwrap_or_default();
            let group_headers = headers.get(start..start + len).unwrap_or_default();
            let opened = self.with_decrypting_kek(header, now, |kek, _| {
                Ok(group
                    .iter()
                    .zip(group_headers)
                    .map(|((context, ciphertext), header)| {
                        header
                            .as_ref()
                            .and_then(|h| envelope::open_parsed(kek, context, ciphertext, h).ok())
                    })
                    .collect::<Vec<_>>())
            });
            let opened = opened.unwrap_or_else(|_| group.iter().map(|_| None).collect());
            for ((context, ciphertext), plaintext) in group.iter().zip(opened) {
                // Any failure is retried alone, so the result (and the error) is exactly `open`'s.
                results.push(plaintext.map_or_else(|| self.open(context, ciphertext, now), Ok));
            }
            start += len.max(1);
        }
        results
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
        let to_snap = self.encrypting_key(&handle, now, 1)?;
        let to_ring = to_snap.primary()?;
        if id.version() >= to_ring.key_id().version() {
            return Ok(false);
        }
        self.with_decrypting_kek(&header, now, |from, subject| {
            // The target KEK comes from the same subject key generation as the source.
            let to: Arc<dyn Kek> = match (subject, id.subject()) {
                (Some(keys), Some(subject)) => keys.kek(subject, to_ring)?,
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
        let snap = if version > snap.rows.ring.primary_version && handle.may_force_reload(now) {
            self.reload(&handle, now)?
        } else {
            snap
        };
        Ok(snap.decrypting_key(version)?.derive_key(info))
    }

    /// Resolves the KEK named by `header` and runs `f` with it. A subject KEK from the cache that
    /// fails to decrypt is reloaded once from the store (another process may have erased and
    /// re-created the subject).
    pub(super) fn with_decrypting_kek<T>(
        &self,
        header: &Header,
        now: u64,
        mut f: impl FnMut(&dyn Kek, Option<&LiveSubject>) -> Result<T, KeyError>,
    ) -> Result<T, KeyError> {
        let id = header.key_id();
        let handle = self.handle(id.name());
        let mut snap = self.snapshot(&handle, now)?;
        // A newer version than this snapshot knows: another process rotated.
        if id.version() > snap.rows.ring.primary_version && handle.may_force_reload(now) {
            snap = self.reload(&handle, now)?;
        }
        let ring_kek = Arc::clone(snap.decrypting_key(id.version())?);
        let Some(subject) = id.subject() else {
            return f(ring_kek.as_ref(), None);
        };
        // Never creates: a ciphertext of an erased subject must not bring the subject back.
        let (keys, source) = self.subject_keys(&handle, &snap, subject, now, false)?;
        let kek = keys.kek(subject, &ring_kek)?;
        match f(kek.as_ref(), Some(&keys)) {
            // A cached key may be of an older generation (the subject was erased and re-created
            // by another process): drop it and try the store's.
            Err(e) if source == KeySource::Cached && e.is_decrypt_failure() => {
                handle.subjects.remove(subject);
                let (keys, _) = self.subject_keys(&handle, &snap, subject, now, false)?;
                let kek = keys.kek(subject, &ring_kek)?;
                f(kek.as_ref(), Some(&keys))
            }
            other => other,
        }
    }
}

/// A ring's live versions as this process sees them, read without I/O: for keys derived from the
/// ring that must follow its rotations (blind-index keys). The change feed reloads the ring when any
/// server rotates it, and the watch's epoch moves with it.
#[derive(Clone)]
pub struct RingWatch {
    handle: Arc<RingHandle>,
}

impl RingWatch {
    /// Changes whenever the ring's primary version or its set of decryptable versions changes.
    pub fn epoch(&self) -> u64 {
        self.handle.versions_epoch.load(Ordering::SeqCst)
    }

    /// Keys derived with `info` (HKDF-SHA256, as [`KeyManager::derive_key`]) from every version
    /// that can decrypt, primary first, then the others newest first, from the ring's snapshot in
    /// memory: no store access.
    pub fn derive_live(&self, info: &[u8]) -> Result<Vec<(u32, SecretKey)>, KeyError> {
        let snap = self
            .handle
            .snapshot
            .load_full()
            .ok_or_else(|| KeyError::UnknownRing(self.handle.name.clone()))?;
        let primary = snap.rows.ring.primary_version;
        let order = std::iter::once(primary)
            .chain(snap.keys.keys().rev().copied().filter(|v| *v != primary));
        order
            .map(|version| Ok((version, snap.decrypting_key(version)?.derive_key(info))))
            .collect()
    }
}

impl fmt::Debug for RingWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingWatch")
            .field("ring", &self.handle.name)
            .field("epoch", &self.epoch())
            .finish()
    }
}

impl KeyManager {
    /// Watches `ring` (loading it first if this process has not yet, which may read the store).
    pub fn watch_ring(&self, ring: &str, now: u64) -> Result<RingWatch, KeyError> {
        let handle = self.handle(ring);
        self.snapshot(&handle, now)?;
        Ok(RingWatch { handle })
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
