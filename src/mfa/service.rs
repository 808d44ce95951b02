//! [`MfaService`]: enrollment, login, step-up and recovery over any [`FactorStore`], with every
//! outcome persisted by compare-and-set.
//!
//! A verification reads the factor, verifies against the state it read, and writes the new state
//! only if the row is still at the generation it read. If another request (another thread, another
//! server) changed the row in between, the write is lost and the code is **not** accepted: the
//! service reads again and verifies again, and the reloaded replay mark then refuses the code. So
//! two concurrent logins with the same code cannot both succeed, whichever servers they reach.
//!
//! Seeds are stored only sealed (see [`super::sealed_seed`]); recovery codes only as salted hashes
//! (see [`super::recovery`]). Every factor row carries a state MAC (see docs/MFA.md, "State MAC")
//! under the service's state key: a row whose lifecycle columns were edited, copied from another
//! user or factor, or written without the key is refused ([`MfaError::StateTampered`]), never
//! honoured.
//!
//! # Audit
//!
//! With [`MfaService::with_audit`], every outcome is appended to an audit log (docs/AUDIT.md,
//! "What custodian records"): enrollments, confirmations, verified, failed and replayed codes,
//! locks, unlocks, disabled factors and recovery codes. Actor: the user (the administrator for
//! [`admin_reset`](MfaService::admin_reset), [`admin_disable`](MfaService::admin_disable) and
//! [`admin_revoke_recovery_codes`](MfaService::admin_revoke_recovery_codes));
//! resource: `user/factor` (`user/recovery-code` for a recovery code). No code, seed or hash is
//! ever recorded.
//!
//! The entry is appended right after the factor store commits the change, not in the same
//! transaction (the factor stores have no audit table yet). If the append fails, the operation
//! fails closed: it returns [`MfaError::Audit`] and no [`StepUp`], even though the factor's new
//! state (a consumed code, a counted failure) is already stored. A crash between the two writes
//! loses the entry.

use super::enrollment::Factor;
use super::error::{MfaError, RejectReason, excerpt};
use super::otp::TotpKey;
use super::recovery::{RecoveryCodeHash, RecoveryCodeSet};
use super::sealed_seed::{KekSeeds, SeedKeys, open_seed_with, seal_seed_with};
use super::state_mac;
use super::step_up::{RECOVERY_CODE_FACTOR, StepUp, StepUpMethod};
use super::store::{ConsumeOutcome, FactorRecord, FactorStore, StateWrite};
use super::verify::{FactorState, Phase, Rejected, Verified, Verifier};
use crate::audit::{Action, AuditEvent, AuditLog, AuditStore, Outcome};
use crate::envelope::Kek;
use crate::secret::SecretKey;
use core::fmt;
use std::sync::Arc;

/// How often an operation is retried after losing a compare-and-set race.
const CAS_ATTEMPTS: usize = 3;

/// A factor with the generation its state was read at.
#[derive(Debug)]
pub struct StoredFactor {
    /// The factor, its seed opened.
    pub factor: Factor,
    /// Pass this to [`MfaService::compare_and_set`].
    pub generation: u64,
}

/// Factors and recovery codes of every user, in a [`FactorStore`], with seeds sealed (under a KEK
/// given to [`MfaService::new`], or in a key ring when the facade's `Custodian::mfa` built it) and
/// factor states authenticated with a state key.
///
/// Cheap to clone (a few `Arc`s); share one per application. Every method is one or a few store
/// round trips; none holds a lock of its own, so verifications of different users run in parallel.
#[derive(Clone)]
pub struct MfaService {
    store: Arc<dyn FactorStore>,
    seeds: Arc<dyn SeedKeys>,
    state_key: Arc<SecretKey>,
    audit: Option<Arc<AuditLog<Arc<dyn AuditStore>>>>,
}

impl fmt::Debug for MfaService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MfaService")
            .field("store", &self.store)
            .field("seeds", &self.seeds.describe())
            .field("state_key", &self.state_key)
            .field("audit", &self.audit)
            .finish()
    }
}

impl MfaService {
    /// The `info` to derive the state key with from the key hierarchy:
    /// `KeyManager::derive_key(ring, version, MfaService::STATE_KEY_INFO, now)`.
    pub const STATE_KEY_INFO: &'static [u8] = b"custodian/v1/mfa-state";

    /// Factors kept in `store`, seeds sealed with `kek`, states authenticated with `state_key`.
    ///
    /// Both keys must be the same on every server and after every restart, or stored seeds no
    /// longer open and every factor is refused as tampered: take them from the key hierarchy, never
    /// from `StaticKek::generate` or `SecretKey::try_random`. The state key is meant to be
    /// `KeyManager::derive_key(ring, version, MfaService::STATE_KEY_INFO, now)` (docs/MFA.md,
    /// "State MAC"); it is a required argument so that no service runs with unauthenticated state.
    pub fn new(store: impl FactorStore + 'static, kek: Arc<dyn Kek>, state_key: SecretKey) -> Self {
        Self::with_store(Arc::new(store), kek, state_key)
    }

    /// Like [`MfaService::new`] with a shared store handle.
    pub fn with_store(
        store: Arc<dyn FactorStore>,
        kek: Arc<dyn Kek>,
        state_key: SecretKey,
    ) -> Self {
        Self::with_seed_keys(store, Arc::new(KekSeeds(kek)), state_key)
    }

    /// A service whose seeds are sealed in `ring` of `keys`, each under the staff member's
    /// subject key (the facade's `Custodian::mfa`).
    pub(crate) fn in_key_ring(
        store: Arc<dyn FactorStore>,
        keys: crate::keys::KeyManager,
        ring: String,
        now: Arc<dyn Fn() -> u64 + Send + Sync>,
        state_key: SecretKey,
    ) -> Self {
        let seeds = super::ring_seeds::RingSeeds { keys, ring, now };
        Self::with_seed_keys(store, Arc::new(seeds), state_key)
    }

    /// A service whose seeds are sealed by `seeds`.
    fn with_seed_keys(
        store: Arc<dyn FactorStore>,
        seeds: Arc<dyn SeedKeys>,
        state_key: SecretKey,
    ) -> Self {
        Self {
            store,
            seeds,
            state_key: Arc::new(state_key),
            audit: None,
        }
    }

    /// Records every outcome in the audit log kept in `store` (see the module documentation for
    /// what is recorded, and why an outcome that cannot be recorded is refused).
    ///
    /// Share the facade's log with `Arc::clone(custodian.audit().store())`, so that one tree
    /// holds reveals and MFA outcomes alike.
    #[must_use]
    pub fn with_audit(mut self, store: Arc<dyn AuditStore>) -> Self {
        self.audit = Some(Arc::new(AuditLog::new(store)));
        self
    }

    /// The audit log, if [`with_audit`](Self::with_audit) gave one.
    pub fn audit(&self) -> Option<&AuditLog<Arc<dyn AuditStore>>> {
        self.audit.as_deref()
    }

    /// Appends `events` atomically, or does nothing without an audit log.
    fn record(&self, events: impl FnOnce() -> Vec<AuditEvent>) -> Result<(), MfaError> {
        if let Some(log) = &self.audit {
            log.append_batch(&events())?;
        }
        Ok(())
    }

    /// Records an administrator's successful action on a user's factor ([`admin_event`]).
    fn record_admin(
        &self,
        now: u64,
        admin: &str,
        user: &str,
        factor_id: &str,
        action: Action,
    ) -> Result<(), MfaError> {
        self.record(|| vec![admin_event(now, admin, user, factor_id, action)])
    }

    /// Records a refused code: failed (or replayed), and locked if this refusal locked the factor.
    fn record_rejection(
        &self,
        user: &str,
        factor_id: &str,
        before: &FactorState,
        rejected: &Rejected,
        now: u64,
    ) -> Result<(), MfaError> {
        self.record(|| {
            let reason = rejected.reason();
            let action = match reason {
                RejectReason::Replayed => Action::MfaReplayed,
                _ => Action::MfaFailed,
            };
            let mut events = vec![factor_event(
                now,
                user,
                factor_id,
                action,
                rejection_outcome(reason),
            )];
            if rejected.state().is_locked() && !before.is_locked() {
                events.push(factor_event(
                    now,
                    user,
                    factor_id,
                    Action::MfaLocked,
                    Outcome::Success,
                ));
            }
            events
        })
    }

    /// The state MAC of a row (docs/MFA.md, "State MAC").
    fn state_mac(
        &self,
        user: &str,
        factor_id: &str,
        sealed_seed: &[u8],
        state: &FactorState,
        generation: u64,
    ) -> Vec<u8> {
        state_mac::compute(
            &self.state_key,
            user,
            factor_id,
            sealed_seed,
            state,
            generation,
        )
        .to_vec()
    }

    /// Refuses a row that is not exactly what this service wrote for this user and factor.
    fn check_row(&self, user: &str, row: &FactorRecord) -> Result<(), MfaError> {
        if row.user != user {
            return Err(MfaError::CorruptRecord(
                "factor row of another user or factor",
            ));
        }
        if row.state_mac.is_empty() {
            return Err(MfaError::StateUnauthenticated {
                user: excerpt(user),
                factor: excerpt(&row.factor),
            });
        }
        if !state_mac::matches(
            &self.state_key,
            &row.user,
            &row.factor,
            &row.sealed_seed,
            &row.state,
            row.generation,
            &row.state_mac,
        ) {
            return Err(MfaError::StateTampered {
                user: excerpt(user),
                factor: excerpt(&row.factor),
            });
        }
        Ok(())
    }

    /// Every factor row of the user, each checked.
    fn checked_factors(&self, user: &str) -> Result<Vec<FactorRecord>, MfaError> {
        let rows = self.store.factors(user)?;
        for row in &rows {
            self.check_row(user, row)?;
        }
        Ok(rows)
    }

    /// The write of `state` over `row`, with the MAC of the generation it creates.
    fn write_over(&self, row: &FactorRecord, state: &FactorState) -> Result<StateWrite, MfaError> {
        let generation = row
            .generation
            .checked_add(1)
            .ok_or(MfaError::CorruptRecord("factor generation exhausted"))?;
        Ok(StateWrite {
            factor: row.factor.clone(),
            expected_generation: row.generation,
            state: *state,
            state_mac: self.state_mac(&row.user, &row.factor, &row.sealed_seed, state, generation),
        })
    }

    /// The factor store.
    pub fn store(&self) -> &Arc<dyn FactorStore> {
        &self.store
    }

    /// Starts (or restarts) an enrollment and stores the pending factor.
    ///
    /// If the user already has an active factor, `step_up` must be a fresh verification of that
    /// user; otherwise anyone holding a hijacked session could add their own authenticator. A
    /// pending or disabled factor of the same id is replaced (with a new generation, so a
    /// confirmation computed against the replaced secret can never land, and the old secret never
    /// logs in again); an active one is an error.
    pub fn begin_enrollment(
        &self,
        verifier: &Verifier,
        user: &str,
        factor_id: &str,
        key: TotpKey,
        now: u64,
        step_up: Option<&StepUp>,
    ) -> Result<Factor, MfaError> {
        let factor = verifier.begin_enrollment(user, factor_id, key, now)?;
        let step_up_check = step_up.map(|s| verifier.require_step_up(s, user, now));
        let stepped_up = matches!(step_up_check, Some(Ok(())));
        let sealed_seed = seal_seed_with(self.seeds.as_ref(), user, factor_id, factor.key())?;
        for _ in 0..CAS_ATTEMPTS {
            if !stepped_up {
                // The store's own "unless active" check reads the unauthenticated phase column;
                // check every row first, so that an active factor edited to look disabled cannot
                // waive the step-up.
                self.checked_factors(user)?;
            }
            let existing = self.store.load(user, factor_id)?;
            if let Some(row) = &existing {
                self.check_row(user, row)?;
            }
            let (replaces, generation) = match &existing {
                None => (None, 0),
                Some(row) if row.state.phase() != Phase::Active => {
                    let next = row
                        .generation
                        .checked_add(1)
                        .ok_or(MfaError::CorruptRecord("factor generation exhausted"))?;
                    (Some(row.generation), next)
                }
                Some(_) => {
                    return Err(MfaError::AlreadyExists {
                        user: excerpt(user),
                        factor: excerpt(factor_id),
                    });
                }
            };
            let record = FactorRecord {
                user: user.to_owned(),
                factor: factor_id.to_owned(),
                sealed_seed: sealed_seed.clone(),
                state: *factor.state(),
                generation,
                state_mac: self.state_mac(
                    user,
                    factor_id,
                    &sealed_seed,
                    factor.state(),
                    generation,
                ),
            };
            if self.store.put_pending(&record, replaces, !stepped_up)? {
                self.record(|| {
                    vec![factor_event(
                        now,
                        user,
                        factor_id,
                        Action::MfaEnrolled,
                        Outcome::Success,
                    )]
                })?;
                return Ok(factor);
            }
            // Refused: either the row changed, or the user has an active factor and no valid
            // step-up was given.
            let has_active = self
                .checked_factors(user)?
                .iter()
                .any(|row| row.state.phase() == Phase::Active);
            if has_active && !stepped_up {
                // Adding a factor next to an active one without a step-up is what a hijacked
                // session would try: record the refusal.
                self.record(|| {
                    vec![factor_event(
                        now,
                        user,
                        factor_id,
                        Action::MfaEnrolled,
                        Outcome::Denied,
                    )]
                })?;
                return Err(match step_up_check {
                    Some(Err(e)) => e,
                    _ => MfaError::StepUpRequired {
                        user: excerpt(user),
                        reason: "the user already has an active factor",
                        max_age: verifier.step_up_max_age,
                    },
                });
            }
        }
        Err(MfaError::Rejected(RejectReason::Conflict))
    }

    /// Loads a factor, checks its state MAC and opens its seed.
    ///
    /// A row whose state MAC does not match is [`MfaError::StateTampered`]; a row without one
    /// (written by an older version) is [`MfaError::StateUnauthenticated`].
    pub fn load(&self, user: &str, factor_id: &str) -> Result<StoredFactor, MfaError> {
        Ok(self.load_row(user, factor_id)?.0)
    }

    /// The stored row, checked, and the factor built from it.
    fn load_row(
        &self,
        user: &str,
        factor_id: &str,
    ) -> Result<(StoredFactor, FactorRecord), MfaError> {
        let row = self.raw_row(user, factor_id)?;
        self.check_row(user, &row)?;
        let key = open_seed_with(self.seeds.as_ref(), user, factor_id, &row.sealed_seed)?;
        let factor = Factor::from_parts(user, factor_id, key, row.state)?;
        let stored = StoredFactor {
            factor,
            generation: row.generation,
        };
        Ok((stored, row))
    }

    /// The stored row of exactly this user and factor, unchecked.
    fn raw_row(&self, user: &str, factor_id: &str) -> Result<FactorRecord, MfaError> {
        let row = self
            .store
            .load(user, factor_id)?
            .ok_or_else(|| MfaError::NotFound {
                user: excerpt(user),
                factor: excerpt(factor_id),
            })?;
        if row.user != user || row.factor != factor_id {
            return Err(MfaError::CorruptRecord(
                "factor row of another user or factor",
            ));
        }
        Ok(row)
    }

    /// Writes `state` only if the factor is still at `expected_generation`; returns whether it
    /// wrote.
    ///
    /// `false` means another request changed the factor first: do not act on the verification
    /// that produced `state`; reload and decide again. The row is read first (its sealed seed is
    /// part of the state MAC) and must pass its own integrity check.
    pub fn compare_and_set(
        &self,
        user: &str,
        factor_id: &str,
        expected_generation: u64,
        state: &FactorState,
    ) -> Result<bool, MfaError> {
        let row = self.raw_row(user, factor_id)?;
        if row.generation != expected_generation {
            return Ok(false);
        }
        self.check_row(user, &row)?;
        self.store
            .compare_and_set(user, &self.write_over(&row, state)?)
    }

    /// Adopts a row written before state MACs existed (its `state_mac` is `NULL`): checks that its
    /// seed opens for this user and factor, then writes the MAC of its current state, once.
    ///
    /// Run it only during the upgrade, after checking the row (docs/MFA.md, "Upgrading"): whatever
    /// the row says then (phase, lock, replay mark) is what gets authenticated. Returns `true` if
    /// it adopted the row, `false` if the row already had a valid MAC; a row with a wrong MAC stays
    /// refused ([`MfaError::StateTampered`]).
    pub fn adopt_unauthenticated_state(
        &self,
        user: &str,
        factor_id: &str,
    ) -> Result<bool, MfaError> {
        let row = self.raw_row(user, factor_id)?;
        if !row.state_mac.is_empty() {
            self.check_row(user, &row)?;
            return Ok(false);
        }
        open_seed_with(self.seeds.as_ref(), user, factor_id, &row.sealed_seed)?;
        if self
            .store
            .compare_and_set(user, &self.write_over(&row, &row.state)?)?
        {
            Ok(true)
        } else {
            Err(MfaError::Rejected(RejectReason::Conflict))
        }
    }

    /// Verifies a login code and persists the outcome atomically. On success returns the step-up.
    ///
    /// Every refusal is the same [`MfaError::Rejected`]; match on its [`RejectReason`] only to
    /// write your own logs. With an audit log, the outcome is recorded (`mfa_verified`,
    /// `mfa_failed`, `mfa_replayed`, `mfa_locked`), and a success whose entry cannot be written
    /// is refused with [`MfaError::Audit`].
    pub fn verify(
        &self,
        verifier: &Verifier,
        user: &str,
        factor_id: &str,
        code: &str,
        now: u64,
    ) -> Result<StepUp, MfaError> {
        self.check_and_persist(user, factor_id, now, Action::MfaVerified, |factor| {
            verifier.verify(factor, code, now)
        })
    }

    /// Confirms a pending enrollment with its first code, persisting the outcome atomically.
    pub fn confirm_enrollment(
        &self,
        verifier: &Verifier,
        user: &str,
        factor_id: &str,
        code: &str,
        now: u64,
    ) -> Result<StepUp, MfaError> {
        self.check_and_persist(user, factor_id, now, Action::MfaConfirmed, |factor| {
            verifier.confirm_enrollment(factor, code, now)
        })
    }

    fn check_and_persist(
        &self,
        user: &str,
        factor_id: &str,
        now: u64,
        on_success: Action,
        check: impl Fn(&Factor) -> Result<Verified, Rejected>,
    ) -> Result<StepUp, MfaError> {
        for _ in 0..CAS_ATTEMPTS {
            let (stored, row) = self.load_row(user, factor_id)?;
            match check(&stored.factor) {
                Ok(verified) => {
                    let (state, step_up) = verified.into_parts();
                    if self
                        .store
                        .compare_and_set(user, &self.write_over(&row, &state)?)?
                    {
                        // Fail closed: no step-up leaves here unless its entry was written.
                        self.record(|| {
                            vec![factor_event(
                                now,
                                user,
                                factor_id,
                                on_success,
                                Outcome::Success,
                            )]
                        })?;
                        return Ok(step_up);
                    }
                }
                Err(rejected) => {
                    if *rejected.state() == *stored.factor.state()
                        || self
                            .store
                            .compare_and_set(user, &self.write_over(&row, rejected.state())?)?
                    {
                        self.record_rejection(
                            user,
                            factor_id,
                            stored.factor.state(),
                            &rejected,
                            now,
                        )?;
                        return Err(rejected.into());
                    }
                }
            }
            // Lost the race: another request changed the factor. Decide again on fresh state.
        }
        self.record(|| {
            vec![factor_event(
                now,
                user,
                factor_id,
                Action::MfaFailed,
                Outcome::Failure,
            )]
        })?;
        Err(MfaError::Rejected(RejectReason::Conflict))
    }

    /// Disables a factor after a fresh step-up of the same user.
    ///
    /// With an audit log it records `mfa_disabled`, whose actor is the user. The disabled row stays
    /// until the user enrolls a factor of the same id again ([`begin_enrollment`](Self::begin_enrollment)
    /// replaces it).
    pub fn disable(
        &self,
        verifier: &Verifier,
        user: &str,
        factor_id: &str,
        step_up: &StepUp,
        now: u64,
    ) -> Result<(), MfaError> {
        self.update(user, factor_id, |factor| {
            verifier.disable(factor, step_up, now)
        })?;
        self.record(|| {
            vec![factor_event(
                now,
                user,
                factor_id,
                Action::MfaDisabled,
                Outcome::Success,
            )]
        })
    }

    /// An administrator disables a factor without the user's step-up (a lost or stolen phone, a
    /// member who must enroll again): the factor no longer logs in, whatever its lock or throttle
    /// said, and the user enrolls again with [`begin_enrollment`](Self::begin_enrollment), which
    /// replaces the disabled row under a new generation.
    ///
    /// `admin` is the id of whoever asked for it: the audit log records it as the actor of an
    /// `mfa_disabled` entry at `now`. Returns `false`, writing and recording nothing, if the
    /// factor was already disabled. The user's recovery codes are not touched
    /// ([`admin_revoke_recovery_codes`](Self::admin_revoke_recovery_codes) revokes them).
    pub fn admin_disable(
        &self,
        admin: &str,
        user: &str,
        factor_id: &str,
        now: u64,
    ) -> Result<bool, MfaError> {
        let disabled = self.update_if(user, factor_id, |factor| {
            let state = factor.state();
            Ok((state.phase() != Phase::Disabled).then(|| state.with_phase(Phase::Disabled)))
        })?;
        if disabled {
            self.record_admin(now, admin, user, factor_id, Action::MfaDisabled)?;
        }
        Ok(disabled)
    }

    /// An administrator revokes every unused recovery code of the user (with
    /// [`admin_disable`](Self::admin_disable), the reset of a member whose codes may be lost or
    /// seen): a revoked code no longer gives a step-up, and the user gets a new set with
    /// [`replace_recovery_codes`](Self::replace_recovery_codes).
    ///
    /// `admin` is the id of whoever asked for it: the audit log records it as the actor of an
    /// `mfa_disabled` entry at `now` on `user/recovery-code`. Returns how many codes were unused
    /// just before; with none, nothing is written or recorded.
    pub fn admin_revoke_recovery_codes(
        &self,
        admin: &str,
        user: &str,
        now: u64,
    ) -> Result<usize, MfaError> {
        let unused = self.recovery_codes_remaining(user)?;
        if unused == 0 {
            return Ok(0);
        }
        self.store.replace_recovery_codes(user, &[])?;
        self.record_admin(now, admin, user, RECOVERY_CODE_FACTOR, Action::MfaDisabled)?;
        Ok(unused)
    }

    /// An administrator's reset: clears failures, throttle and lock (the replay mark stays).
    ///
    /// `admin` is the id of whoever asked for it: the audit log records it as the actor of an
    /// `mfa_unlocked` entry at `now`.
    pub fn admin_reset(
        &self,
        admin: &str,
        user: &str,
        factor_id: &str,
        now: u64,
    ) -> Result<(), MfaError> {
        self.update(user, factor_id, |factor| Ok(factor.state().admin_reset()))?;
        self.record_admin(now, admin, user, factor_id, Action::MfaUnlocked)
    }

    fn update(
        &self,
        user: &str,
        factor_id: &str,
        change: impl Fn(&Factor) -> Result<FactorState, MfaError>,
    ) -> Result<(), MfaError> {
        self.update_if(user, factor_id, |factor| change(factor).map(Some))
            .map(|_| ())
    }

    /// [`update`](Self::update) where `change` may find nothing to do (`None`): then nothing is
    /// written and it returns `false`.
    fn update_if(
        &self,
        user: &str,
        factor_id: &str,
        change: impl Fn(&Factor) -> Result<Option<FactorState>, MfaError>,
    ) -> Result<bool, MfaError> {
        for _ in 0..CAS_ATTEMPTS {
            let (stored, row) = self.load_row(user, factor_id)?;
            let Some(state) = change(&stored.factor)? else {
                return Ok(false);
            };
            if self
                .store
                .compare_and_set(user, &self.write_over(&row, &state)?)?
            {
                return Ok(true);
            }
        }
        Err(MfaError::Rejected(RejectReason::Conflict))
    }

    /// The user's factors and their phases, by factor id. Fails if any row fails its integrity
    /// check.
    pub fn factors(&self, user: &str) -> Result<Vec<(String, Phase)>, MfaError> {
        Ok(self
            .checked_factors(user)?
            .into_iter()
            .map(|row| (row.factor, row.state.phase()))
            .collect())
    }

    /// Stores a new recovery-code set, revoking every code of the user's previous set.
    pub fn replace_recovery_codes(&self, set: &RecoveryCodeSet) -> Result<(), MfaError> {
        let hashes: Vec<Vec<u8>> = set
            .entries()
            .iter()
            .map(|entry| entry.to_bytes().to_vec())
            .collect();
        self.store.replace_recovery_codes(set.user(), &hashes)
    }

    /// Unused recovery codes of the user.
    pub fn recovery_codes_remaining(&self, user: &str) -> Result<usize, MfaError> {
        Ok(self.store.recovery_codes(user)?.len())
    }

    /// Uses a recovery code: consumes it (a concurrent second use of the same code loses), lifts
    /// locks and throttles on the user's factors, and returns a step-up of method recovery code.
    ///
    /// With an audit log it records `recovery_code_used` (resource `user/recovery-code`; a failure
    /// when the code is unknown or lost a race) and `mfa_unlocked` for each factor whose lock it
    /// lifted, in one batch.
    pub fn use_recovery_code(&self, user: &str, code: &str, now: u64) -> Result<StepUp, MfaError> {
        let result = self.consume_recovery_code(user, code, now);
        match &result {
            Ok((_, unlocked)) => self.record(|| {
                let mut events = vec![factor_event(
                    now,
                    user,
                    RECOVERY_CODE_FACTOR,
                    Action::RecoveryCodeUsed,
                    Outcome::Success,
                )];
                events.extend(unlocked.iter().map(|factor| {
                    factor_event(now, user, factor, Action::MfaUnlocked, Outcome::Success)
                }));
                events
            })?,
            Err(MfaError::Rejected(_)) => self.record(|| {
                vec![factor_event(
                    now,
                    user,
                    RECOVERY_CODE_FACTOR,
                    Action::RecoveryCodeUsed,
                    Outcome::Failure,
                )]
            })?,
            Err(_) => {}
        }
        result.map(|(step_up, _)| step_up)
    }

    /// The work of [`use_recovery_code`](Self::use_recovery_code); also returns the factors whose
    /// lock it lifted.
    fn consume_recovery_code(
        &self,
        user: &str,
        code: &str,
        now: u64,
    ) -> Result<(StepUp, Vec<String>), MfaError> {
        for _ in 0..CAS_ATTEMPTS {
            let stored = self.store.recovery_codes(user)?;
            let mut ids = Vec::with_capacity(stored.len());
            let mut entries = Vec::with_capacity(stored.len());
            for (id, hash) in stored {
                ids.push(id);
                entries.push(RecoveryCodeHash::from_bytes(&hash)?);
            }
            let set = RecoveryCodeSet::from_entries(user, entries)?;
            let index = set
                .find(code)
                .ok_or(MfaError::Rejected(RejectReason::UnknownRecoveryCode))?;
            let id = *ids
                .get(index)
                .ok_or(MfaError::CorruptRecord("recovery code index"))?;
            let rows = self.checked_factors(user)?;
            let resets = rows
                .iter()
                .filter(|row| row.state.admin_reset() != row.state)
                .map(|row| self.write_over(row, &row.state.admin_reset()))
                .collect::<Result<Vec<_>, MfaError>>()?;
            match self.store.consume_recovery_code(user, id, &resets)? {
                ConsumeOutcome::Consumed => {
                    let unlocked = rows
                        .into_iter()
                        .filter(|row| row.state.is_locked())
                        .map(|row| row.factor)
                        .collect();
                    let step_up =
                        StepUp::new(user, RECOVERY_CODE_FACTOR, StepUpMethod::RecoveryCode, now);
                    return Ok((step_up, unlocked));
                }
                // Someone else used this code between our read and our delete.
                ConsumeOutcome::CodeGone => return Err(MfaError::Rejected(RejectReason::Conflict)),
                ConsumeOutcome::FactorsChanged => {}
            }
        }
        Err(MfaError::Rejected(RejectReason::Conflict))
    }
}

/// The audit resource of a factor: `user/factor`.
fn factor_resource(user: &str, factor_id: &str) -> String {
    format!("{user}/{factor_id}")
}

/// An MFA event whose actor is the user themself.
fn factor_event(
    now: u64,
    user: &str,
    factor_id: &str,
    action: Action,
    outcome: Outcome,
) -> AuditEvent {
    AuditEvent::new(now, user, action, factor_resource(user, factor_id)).with_outcome(outcome)
}

/// A successful administrator's action on a user's factor: the administrator is the actor.
fn admin_event(now: u64, admin: &str, user: &str, factor_id: &str, action: Action) -> AuditEvent {
    AuditEvent::new(now, admin, action, factor_resource(user, factor_id))
        .with_outcome(Outcome::Success)
}

/// A code that was checked and wrong is a failure; one refused before any check (throttle, lock,
/// a factor that cannot log in) is denied.
fn rejection_outcome(reason: RejectReason) -> Outcome {
    match reason {
        RejectReason::Throttled { .. }
        | RejectReason::Locked
        | RejectReason::NotActive
        | RejectReason::EnrollmentExpired => Outcome::Denied,
        _ => Outcome::Failure,
    }
}
