//! This process's view of each ring: verified snapshots with unwrapped version keys, the usage
//! lease of the primary version, and the process-wide registry that lets an erasure or a
//! destruction reach every manager of the same store.

use super::KeyError;
use super::cache::KeyCache;
use super::manager::KeyManager;
use super::ring::{self, RingKek, VersionState};
use super::store::RingRows;
use super::subject::SubjectState;
use crate::envelope::{Kek, KeyId};
use arc_swap::ArcSwapOption;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak};

/// Encryptions this process may still do under one version: `[next, end)`.
pub(super) struct Lease {
    pub(super) version: u32,
    pub(super) next: AtomicU64,
    pub(super) end: u64,
}

impl Lease {
    pub(super) fn empty(version: u32) -> Self {
        Self {
            version,
            next: AtomicU64::new(0),
            end: 0,
        }
    }

    pub(super) fn try_take(&self, n: u64) -> bool {
        let taken = self.next.fetch_add(n, Ordering::Relaxed);
        taken.checked_add(n).is_some_and(|after| after <= self.end)
    }
}

/// A verified ring with its decryptable version keys unwrapped.
pub(super) struct RingSnapshot {
    pub(super) rows: RingRows,
    pub(super) keys: BTreeMap<u32, Arc<RingKek>>,
    /// The snapshot may be used for sealing until then (half the ring's propagation time).
    pub(super) valid_until: AtomicU64,
    pub(super) lease: Arc<Lease>,
    /// The `now` this snapshot was installed at (a reload by the change feed reuses it, so that
    /// the feed never moves a caller's clock).
    pub(super) installed_at: u64,
}

impl RingSnapshot {
    pub(super) fn primary(&self) -> Result<&Arc<RingKek>, KeyError> {
        self.keys
            .get(&self.rows.ring.primary_version)
            .ok_or_else(|| {
                KeyError::tampered("primary version has no key", &self.rows.ring.name, None)
            })
    }

    pub(super) fn decrypting_key(&self, version: u32) -> Result<&Arc<RingKek>, KeyError> {
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
pub(super) struct RingHandle {
    pub(super) name: String,
    /// Read without a lock (arc-swap) by the general paths of seal and open; replaced under
    /// `update`, together with the ring map's copy that the cached paths read.
    pub(super) snapshot: ArcSwapOption<RingSnapshot>,
    /// Serialises this process's reloads, reservations and administrative changes of the ring
    /// (other processes are kept in line by the store's compare-and-set).
    pub(super) update: Mutex<()>,
    pub(super) subjects: KeyCache<SubjectState>,
    /// The second of the last reload forced by a ciphertext naming an unknown, newer version.
    pub(super) forced_reload_at: AtomicU64,
    /// Incremented by every erasure in this ring, before its cache purge: a subject key read from
    /// the store is cached only if no erasure happened meanwhile.
    pub(super) erasures: AtomicU64,
    /// Incremented whenever an installed snapshot changes the primary or the set of live versions
    /// (blind indexes watch it to pick up an index-key rotation).
    pub(super) versions_epoch: AtomicU64,
}

impl RingHandle {
    /// Calls `f` with `subject`'s KEK under `ring_kek`'s version if the subject key is cached and
    /// that KEK derived already, borrowed under the cache shard's read lock.
    pub(super) fn with_cached_kek<R>(
        &self,
        subject: &str,
        ring_kek: &RingKek,
        now: u64,
        f: impl FnOnce(&dyn Kek) -> Option<R>,
    ) -> Option<R> {
        let version = ring_kek.key_id().version();
        self.subjects.with(subject, now, |state| match state {
            SubjectState::Live(keys) => keys.with_kek(version, |kek| f(kek)),
            SubjectState::Erased { .. } => None,
        })
    }

    /// Whether a forced reload is allowed at `now`: once per second per ring, so that made-up
    /// version numbers cannot turn every call into a store read.
    pub(super) fn may_force_reload(&self, now: u64) -> bool {
        self.forced_reload_at.swap(now, Ordering::Relaxed) != now
    }
}

/// A planned ring change: the next rows and an optional "no subject keys below this version"
/// guard, or `None` for nothing to do.
pub(super) type Plan<'a> =
    dyn FnMut(&RingRows) -> Result<Option<(RingRows, Option<u32>)>, KeyError> + 'a;

/// The ring handles of one manager by name. foldhash rather than SipHash: the lookup is on every
/// seal and open, and the map holds only rings this process has used (made-up names from
/// ciphertexts are dropped again), so collisions could slow down at most that many entries.
pub(super) type Rings = RwLock<HashMap<String, RingEntry, foldhash::quality::RandomState>>;

/// A ring handle in its manager's map, with a copy of the snapshot last installed in it, so that
/// the cached paths of seal and open read both under the map's read lock alone (see
/// `KeyManager::seal_cached`).
/// Installs run under the handle's `update` mutex, so the copy is never older than the last one.
pub(super) struct RingEntry {
    pub(super) handle: Arc<RingHandle>,
    pub(super) snapshot: Option<Arc<RingSnapshot>>,
}

/// Every manager of this process with the id of its store, so that an erasure or a destruction
/// reaches the caches of all managers of the same store.
pub(super) static MANAGERS: Mutex<Vec<([u8; 32], Weak<Rings>)>> = Mutex::new(Vec::new());

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `f` on the ring handle `ring` of every live manager of store `store_id` in this process.
pub(super) fn broadcast(store_id: &[u8; 32], ring: &str, f: impl Fn(&RingHandle)) {
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
            .map(|entry| Arc::clone(&entry.handle));
        if let Some(handle) = handle {
            f(&handle);
        }
    }
}

/// The handle's snapshot if still valid at `now`.
pub(super) fn current(handle: &RingHandle, now: u64) -> Option<Arc<RingSnapshot>> {
    handle
        .snapshot
        .load()
        .as_ref()
        .filter(|s| now < s.valid_until.load(Ordering::Relaxed))
        .cloned()
}

/// Marks the handle's snapshot stale, so the next use reloads it (after a destroy elsewhere in
/// this process).
pub(super) fn expire(handle: &RingHandle) {
    if let Some(snap) = handle.snapshot.load().as_ref() {
        snap.valid_until.store(0, Ordering::Relaxed);
    }
}

impl KeyManager {
    pub(super) fn handle(&self, ring: &str) -> Arc<RingHandle> {
        if let Some(entry) = self
            .rings
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(ring)
        {
            return Arc::clone(&entry.handle);
        }
        let mut rings = self.rings.write().unwrap_or_else(PoisonError::into_inner);
        let entry = rings.entry(ring.to_owned()).or_insert_with(|| RingEntry {
            snapshot: None,
            handle: Arc::new(RingHandle {
                name: ring.to_owned(),
                snapshot: ArcSwapOption::empty(),
                update: Mutex::new(()),
                subjects: KeyCache::new(
                    self.options.subject_cache_capacity,
                    self.options.subject_cache_ttl_secs,
                ),
                forced_reload_at: AtomicU64::new(u64::MAX),
                erasures: AtomicU64::new(0),
                versions_epoch: AtomicU64::new(0),
            }),
        });
        Arc::clone(&entry.handle)
    }

    /// A snapshot valid at `now`, reloading the ring if needed.
    pub(super) fn snapshot(
        &self,
        handle: &RingHandle,
        now: u64,
    ) -> Result<Arc<RingSnapshot>, KeyError> {
        if let Some(snap) = current(handle, now) {
            return Ok(snap);
        }
        let _guard = lock(&handle.update);
        if let Some(snap) = current(handle, now) {
            return Ok(snap);
        }
        let rows = self.load_verified_or_forget(handle)?;
        self.install(handle, rows, now, None)
    }

    /// Reloads the ring even if the snapshot is still valid (a ciphertext names a newer version).
    pub(super) fn reload(
        &self,
        handle: &RingHandle,
        now: u64,
    ) -> Result<Arc<RingSnapshot>, KeyError> {
        let _guard = lock(&handle.update);
        let rows = self.load_verified_or_forget(handle)?;
        self.install(handle, rows, now, None)
    }

    /// [`KeyManager::load_verified`]; an unknown ring's handle is dropped again, so that
    /// ciphertexts naming made-up rings cannot grow the handle map.
    fn load_verified_or_forget(&self, handle: &RingHandle) -> Result<RingRows, KeyError> {
        let result = self.load_verified(&handle.name);
        if matches!(result, Err(KeyError::UnknownRing(_))) {
            let mut rings = self.rings.write().unwrap_or_else(PoisonError::into_inner);
            let unused = rings
                .get(&handle.name)
                .is_some_and(|entry| entry.handle.snapshot.load().is_none());
            if unused {
                rings.remove(&handle.name);
            }
        }
        result
    }

    pub(super) fn load_verified(&self, ring: &str) -> Result<RingRows, KeyError> {
        let floor = self.ledger_floor();
        let view = self.store.load_ring(ring)?;
        let ledger = self.checked_ledger(&view.ledger, floor)?;
        self.check_ring_in_ledger(ring, view.rows.as_ref(), ledger)?;
        let rows = view
            .rows
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
    pub(super) fn install(
        &self,
        handle: &RingHandle,
        rows: RingRows,
        now: u64,
        lease: Option<Lease>,
    ) -> Result<Arc<RingSnapshot>, KeyError> {
        let old = handle.snapshot.load_full();
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
        let versions_changed = old.as_ref().is_none_or(|old| {
            old.rows.ring.primary_version != primary || !old.keys.keys().eq(keys.keys())
        });
        let snap = Arc::new(RingSnapshot {
            valid_until: AtomicU64::new(now.saturating_add(rows.ring.policy.propagation_secs / 2)),
            rows,
            keys,
            lease,
            installed_at: now,
        });
        handle.snapshot.store(Some(Arc::clone(&snap)));
        if let Some(entry) = self
            .rings
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&handle.name)
            && core::ptr::eq(Arc::as_ptr(&entry.handle), handle)
        {
            entry.snapshot = Some(Arc::clone(&snap));
        }
        if versions_changed {
            handle.versions_epoch.fetch_add(1, Ordering::SeqCst);
        }
        if shrank {
            // Subject KEKs derived from versions that can no longer decrypt are dropped with
            // their subject keys, which are read from the store again on next use (this follows
            // a destruction or a raised minimum version: rare, and once per subject).
            handle.subjects.clear();
        }
        Ok(snap)
    }

    /// Recomputes every MAC of `rows`.
    pub(super) fn seal_rows(&self, rows: &mut RingRows) {
        for v in &mut rows.versions {
            self.integrity.seal_version(v);
        }
        self.integrity.seal_ring(&mut rows.ring, &rows.versions);
    }

    /// A snapshot with `n` encryptions reserved under its primary version's KEK
    /// ([`RingSnapshot::primary`]).
    pub(super) fn encrypting_key(
        &self,
        handle: &RingHandle,
        now: u64,
        n: u64,
    ) -> Result<Arc<RingSnapshot>, KeyError> {
        for _ in 0..self.options.max_conflict_retries.max(1) {
            let snap = self.snapshot(handle, now)?;
            if snap.lease.try_take(n) {
                return Ok(snap);
            }
            // The block this thread reserves holds its own `n` already: taking them from the
            // snapshot in place on the next turn could fail again if a rotation installed a newer
            // one meanwhile, and a thread that rotates in a loop would starve the sealers.
            if let Some(snap) = self.reserve(handle, &snap, now, n)? {
                return Ok(snap);
            }
        }
        Err(KeyError::Conflict(format!(
            "usage reservation of key ring `{}`",
            handle.name
        )))
    }

    /// Reserves a block of encryptions under the primary (rotating first if it is exhausted).
    /// Returns the snapshot installed with the block when the caller's `n` encryptions are taken
    /// from it already, and `None` when the caller should look at the current snapshot again
    /// (another thread reserved meanwhile, or the block was cut short by the usage limit).
    pub(super) fn reserve(
        &self,
        handle: &RingHandle,
        seen: &Arc<RingSnapshot>,
        now: u64,
        n: u64,
    ) -> Result<Option<Arc<RingSnapshot>>, KeyError> {
        let _guard = lock(&handle.update);
        // Another thread may have reserved while this one waited for the lock.
        if let Some(snap) = current(handle, now)
            && !Arc::ptr_eq(&snap, seen)
            && snap.lease.next.load(Ordering::Relaxed).saturating_add(n) <= snap.lease.end
        {
            return Ok(None);
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
                    let taken = start.checked_add(n).filter(|after| *after <= end);
                    let snap = self.install(
                        handle,
                        rows,
                        now,
                        Some(Lease {
                            version,
                            next: AtomicU64::new(taken.unwrap_or(start)),
                            end,
                        }),
                    )?;
                    return Ok(taken.map(|_| snap));
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
}
