//! Key-ring administration: creation, rotation, thresholds, destruction, policy, and rewrapping
//! subject keys to the primary version. Every change goes through [`KeyManager::modify`]: plan
//! on freshly loaded rows, seal the MACs, commit with compare-and-set, re-plan on conflict.

use super::KeyError;
use super::ledger::ring_change_events;
use super::manager::{Destruction, KeyManager, Rotation, SubjectRewrapBatch};
use super::ring::{self, RingInfo, RotationPolicy};
use super::state::{Plan, RingHandle, broadcast, current, expire, lock};
use super::store::{CommitOutcome, Journal, RingChange, RingRows};
use super::subject::{random_key, unwrap_subject_key, wrap_subject_key};
use crate::audit::{Action, AuditEvent};
use crate::crypto::Suite;
use crate::envelope::{Kek, KeyId};

impl KeyManager {
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
        let key = random_key()?;
        let wrapped = self
            .root
            .wrap(ring::version_wrap_aad(name, 1, suite).bytes(), &key)?;
        let mut rows = ring::new_ring(name, suite, policy, wrapped, now);
        self.seal_rows(&mut rows);
        for _ in 0..self.options.max_conflict_retries.max(1) {
            let ledger = self.current_ledger(name)?;
            let mut journal = Journal {
                ledger: Some(self.next_ledger(&ledger, None, Some((name, rows.ring.generation)))),
                audit: vec![AuditEvent::new(
                    now,
                    &self.options.actor,
                    Action::KeyRingCreated,
                    name,
                )],
                ..Journal::default()
            };
            match self.store.create_ring(&rows, &mut journal) {
                Ok(true) => {
                    self.saw_committed(&journal);
                    return Ok(RingInfo::from_rows(&rows));
                }
                Ok(false) => return Err(KeyError::RingExists(name.to_owned())),
                Err(KeyError::LedgerMoved) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(KeyError::Conflict(format!("creation of key ring `{name}`")))
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

    /// Adds a version and makes it the primary, then rewraps the subject keys to it.
    pub fn rotate(&self, ring: &str, now: u64) -> Result<Rotation, KeyError> {
        let handle = self.handle(ring);
        let rows = self
            .modify(&handle, now, false, |rows| self.plan_rotation(rows, now))?
            .ok_or_else(|| KeyError::Conflict(format!("key ring `{ring}`")))?;
        Ok(rotation(ring, rows.ring.primary_version))
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
        Ok(rotated.map(|rows| rotation(ring, rows.ring.primary_version)))
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

    pub(super) fn plan_rotation(
        &self,
        rows: &RingRows,
        now: u64,
    ) -> Result<Option<(RingRows, Option<u32>)>, KeyError> {
        let version = ring::next_version(rows)?;
        let key = random_key()?;
        let wrapped = self.root.wrap(
            ring::version_wrap_aad(&rows.ring.name, version, rows.ring.suite).bytes(),
            &key,
        )?;
        Ok(Some((ring::rotate(rows, wrapped, now)?, None)))
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
    /// `min_decryption_version`. Data still under it can never be opened again. The result says
    /// whether this call destroyed it (false: it already was) and whether the material is
    /// confirmed gone from the store's files ([`KeyManager::purge`] confirms it later if not).
    pub fn destroy_version(
        &self,
        ring: &str,
        version: u32,
        now: u64,
    ) -> Result<Destruction, KeyError> {
        let handle = self.handle(ring);
        let destroyed = self.modify_guarded(&handle, now, version.saturating_add(1), |rows| {
            ring::destroy_version(rows, version)
        })?;
        broadcast(&self.store_id, ring, expire);
        Ok(Destruction {
            newly_destroyed: destroyed.is_some(),
            purged: self.store.purge(std::time::Duration::from_millis(500))?,
        })
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

    pub(super) fn info_after(
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
    /// primary, batch after batch ([`KeyManager::rewrap_subject_keys_batch`]) until none is left;
    /// returns how many it rewrapped. Idempotent; safe to run concurrently with anything, on
    /// several servers at once (each row is compare-and-set), and to interrupt: what is done stays
    /// done, and the rest still opens under its older version.
    pub fn rewrap_subject_keys(&self, ring: &str, now: u64) -> Result<u64, KeyError> {
        let mut total = 0u64;
        // Each batch rewraps rows in one store transaction, or finds nothing left; the bound only
        // stops a store that keeps returning rows it then refuses to update.
        for _ in 0..100_000 {
            let batch = self.rewrap_subject_keys_batch(ring, now)?;
            total += batch.rewrapped;
            if batch.done {
                return Ok(total);
            }
        }
        Err(KeyError::Conflict(format!(
            "subject keys of key ring `{ring}`"
        )))
    }

    /// How many live subject keys of `ring` are wrapped by a version older than the primary: what
    /// [`rewrap_subject_keys`](Self::rewrap_subject_keys) has left to do, counted by the store
    /// from its `(ring, wrapped_by)` index (the total of a progress bar). A count, not a promise:
    /// keys created, erased or rewrapped by others meanwhile change it.
    pub fn pending_subject_rewraps(&self, ring: &str, now: u64) -> Result<u64, KeyError> {
        let handle = self.handle(ring);
        let primary = self.snapshot(&handle, now)?.rows.ring.primary_version;
        self.store.count_subjects_wrapped_below(ring, primary)
    }

    /// One step of the subject-key rewrap that follows a rotation: rewraps up to
    /// [`subject_rewrap_batch`](super::ManagerOptions::subject_rewrap_batch) live subject keys of
    /// `ring` wrapped by versions older than the primary, in one store transaction. A background job calls it until
    /// [`SubjectRewrapBatch::done`], and may stop between any two calls: nothing is lost, since
    /// older versions keep opening their subject keys until they are disabled (which rewraps what
    /// is left first).
    pub fn rewrap_subject_keys_batch(
        &self,
        ring: &str,
        now: u64,
    ) -> Result<SubjectRewrapBatch, KeyError> {
        let handle = self.handle(ring);
        let snap = self.snapshot(&handle, now)?;
        let primary = snap.rows.ring.primary_version;
        let limit = self.options.subject_rewrap_batch.max(1);
        let rows = self.store.subjects_wrapped_below(ring, primary, limit)?;
        // A short page is the last one: new subject keys are made under the primary.
        let last = rows.len() < limit;
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
            let to_snap = self.encrypting_key(&handle, now, 1)?;
            let to = to_snap.primary()?;
            let to_version = to.key_id().version();
            if to_version <= row.wrapped_by {
                continue;
            }
            let mut next = row.clone();
            next.wrapped_by = to_version;
            next.wrapped_key = Some(wrap_subject_key(to, &row.subject, row.generation, &key)?);
            self.integrity.seal_subject(&mut next);
            batch.push((next, row.wrapped_by));
        }
        let done = if batch.is_empty() {
            Vec::new()
        } else {
            self.store.rewrap_subjects(&batch)?
        };
        Ok(SubjectRewrapBatch {
            rewrapped: done.iter().filter(|d| **d).count() as u64,
            done: last,
        })
    }

    /// Applies a planned change with compare-and-set, reloading and re-planning on conflict.
    /// `plan` returns the next rows and an optional "no subject keys below version" guard, or
    /// `None` for "nothing to do". Returns the committed rows, if any.
    pub(super) fn modify(
        &self,
        handle: &RingHandle,
        now: u64,
        from_snapshot: bool,
        mut plan: impl FnMut(&RingRows) -> Result<Option<(RingRows, Option<u32>)>, KeyError>,
    ) -> Result<Option<RingRows>, KeyError> {
        let _guard = lock(&handle.update);
        self.modify_locked(handle, now, from_snapshot, &mut plan)
    }

    pub(super) fn modify_locked(
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
            let ledger = self.current_ledger(&handle.name)?;
            let mut change = RingChange {
                expected_generation: rows.ring.generation,
                ring: next.ring.clone(),
                versions: changed,
                require_no_subject_keys_below: guard,
                journal: Journal {
                    ledger: Some(self.next_ledger(
                        &ledger,
                        None,
                        Some((&handle.name, next.ring.generation)),
                    )),
                    audit: ring_change_events(&rows, &next, &self.options.actor, now),
                    ..Journal::default()
                },
            };
            let outcome = match self.store.commit_ring(&mut change) {
                Err(KeyError::LedgerMoved) => CommitOutcome::Conflict,
                other => other?,
            };
            match outcome {
                CommitOutcome::Committed => {
                    self.saw_committed(&change.journal);
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
    pub(super) fn modify_guarded(
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
}

/// The answer of a committed rotation. Subject keys stay wrapped by older versions, which still
/// decrypt: moving them to the new version is [`KeyManager::rewrap_subject_keys`], a job apart, so
/// a rotation costs the same with ten customers or ten million. Disabling an older version rewraps
/// what is left first.
fn rotation(ring: &str, new_version: u32) -> Rotation {
    Rotation {
        ring: ring.to_owned(),
        new_version,
    }
}
