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
//! (see [`super::recovery`]).

use super::enrollment::Factor;
use super::error::{MfaError, RejectReason, excerpt};
use super::otp::TotpKey;
use super::recovery::{RecoveryCodeHash, RecoveryCodeSet};
use super::sealed_seed::{open_seed, seal_seed};
use super::step_up::{RECOVERY_CODE_FACTOR, StepUp, StepUpMethod};
use super::store::{ConsumeOutcome, FactorRecord, FactorStore};
use super::verify::{FactorState, Phase, Rejected, Verified, Verifier};
use crate::envelope::Kek;
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

/// Factors and recovery codes of every user, in a [`FactorStore`], with seeds sealed under `kek`.
///
/// Cheap to clone (two `Arc`s); share one per application. Every method is one or a few store
/// round trips; none holds a lock of its own, so verifications of different users run in parallel.
#[derive(Clone)]
pub struct MfaService {
    store: Arc<dyn FactorStore>,
    kek: Arc<dyn Kek>,
}

impl fmt::Debug for MfaService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MfaService")
            .field("store", &self.store)
            .field("kek", self.kek.key_id())
            .finish()
    }
}

impl MfaService {
    /// Factors kept in `store`, seeds sealed with `kek`.
    ///
    /// `kek` must be the same key (same id, same material) on every server and after every restart,
    /// or stored seeds no longer open: take it from the key hierarchy, never from
    /// `StaticKek::generate`.
    pub fn new(store: impl FactorStore + 'static, kek: Arc<dyn Kek>) -> Self {
        Self::with_store(Arc::new(store), kek)
    }

    /// Like [`MfaService::new`] with a shared store handle.
    pub fn with_store(store: Arc<dyn FactorStore>, kek: Arc<dyn Kek>) -> Self {
        Self { store, kek }
    }

    /// The factor store.
    pub fn store(&self) -> &Arc<dyn FactorStore> {
        &self.store
    }

    /// Starts (or restarts) an enrollment and stores the pending factor.
    ///
    /// If the user already has an active factor, `step_up` must be a fresh verification of that
    /// user; otherwise anyone holding a hijacked session could add their own authenticator. A
    /// pending factor of the same id is replaced (with a new generation, so a confirmation computed
    /// against the replaced secret can never land); an active or disabled one is an error.
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
        let sealed_seed = seal_seed(self.kek.as_ref(), user, factor_id, factor.key())?;
        for _ in 0..CAS_ATTEMPTS {
            let existing = self.store.load(user, factor_id)?;
            let (replaces, generation) = match &existing {
                None => (None, 0),
                Some(row) if matches!(row.state.phase(), Phase::Pending { .. }) => {
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
            };
            if self.store.put_pending(&record, replaces, !stepped_up)? {
                return Ok(factor);
            }
            // Refused: either the row changed, or the user has an active factor and no valid
            // step-up was given.
            let has_active = self
                .store
                .factors(user)?
                .iter()
                .any(|row| row.state.phase() == Phase::Active);
            if has_active && !stepped_up {
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

    /// Loads a factor and opens its seed.
    pub fn load(&self, user: &str, factor_id: &str) -> Result<StoredFactor, MfaError> {
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
        let key = open_seed(self.kek.as_ref(), user, factor_id, &row.sealed_seed)?;
        let factor = Factor::from_parts(user, factor_id, key, row.state)?;
        Ok(StoredFactor {
            factor,
            generation: row.generation,
        })
    }

    /// Writes `state` only if the factor is still at `expected_generation`; returns whether it
    /// wrote.
    ///
    /// `false` means another request changed the factor first: do not act on the verification
    /// that produced `state`; reload and decide again.
    pub fn compare_and_set(
        &self,
        user: &str,
        factor_id: &str,
        expected_generation: u64,
        state: &FactorState,
    ) -> Result<bool, MfaError> {
        self.store
            .compare_and_set(user, factor_id, expected_generation, state)
    }

    /// Verifies a login code and persists the outcome atomically. On success returns the step-up.
    ///
    /// Every refusal is the same [`MfaError::Rejected`]; match on its [`RejectReason`] only to
    /// write the audit log.
    pub fn verify(
        &self,
        verifier: &Verifier,
        user: &str,
        factor_id: &str,
        code: &str,
        now: u64,
    ) -> Result<StepUp, MfaError> {
        self.check_and_persist(user, factor_id, |factor| verifier.verify(factor, code, now))
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
        self.check_and_persist(user, factor_id, |factor| {
            verifier.confirm_enrollment(factor, code, now)
        })
    }

    fn check_and_persist(
        &self,
        user: &str,
        factor_id: &str,
        check: impl Fn(&Factor) -> Result<Verified, Rejected>,
    ) -> Result<StepUp, MfaError> {
        for _ in 0..CAS_ATTEMPTS {
            let stored = self.load(user, factor_id)?;
            match check(&stored.factor) {
                Ok(verified) => {
                    let (state, step_up) = verified.into_parts();
                    if self.compare_and_set(user, factor_id, stored.generation, &state)? {
                        return Ok(step_up);
                    }
                }
                Err(rejected) => {
                    if *rejected.state() == *stored.factor.state()
                        || self.compare_and_set(
                            user,
                            factor_id,
                            stored.generation,
                            rejected.state(),
                        )?
                    {
                        return Err(rejected.into());
                    }
                }
            }
            // Lost the race: another request changed the factor. Decide again on fresh state.
        }
        Err(MfaError::Rejected(RejectReason::Conflict))
    }

    /// Disables a factor after a fresh step-up of the same user.
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
        })
    }

    /// An administrator's reset: clears failures, throttle and lock. Log who did it.
    pub fn admin_reset(&self, user: &str, factor_id: &str) -> Result<(), MfaError> {
        self.update(user, factor_id, |factor| Ok(factor.state().admin_reset()))
    }

    fn update(
        &self,
        user: &str,
        factor_id: &str,
        change: impl Fn(&Factor) -> Result<FactorState, MfaError>,
    ) -> Result<(), MfaError> {
        for _ in 0..CAS_ATTEMPTS {
            let stored = self.load(user, factor_id)?;
            let state = change(&stored.factor)?;
            if self.compare_and_set(user, factor_id, stored.generation, &state)? {
                return Ok(());
            }
        }
        Err(MfaError::Rejected(RejectReason::Conflict))
    }

    /// The user's factors and their phases, by factor id.
    pub fn factors(&self, user: &str) -> Result<Vec<(String, Phase)>, MfaError> {
        Ok(self
            .store
            .factors(user)?
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
    pub fn use_recovery_code(&self, user: &str, code: &str, now: u64) -> Result<StepUp, MfaError> {
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
            let resets: Vec<(String, u64, FactorState)> = self
                .store
                .factors(user)?
                .into_iter()
                .filter(|row| row.state.admin_reset() != row.state)
                .map(|row| (row.factor, row.generation, row.state.admin_reset()))
                .collect();
            match self.store.consume_recovery_code(user, id, &resets)? {
                ConsumeOutcome::Consumed => {
                    return Ok(StepUp::new(
                        user,
                        RECOVERY_CODE_FACTOR,
                        StepUpMethod::RecoveryCode,
                        now,
                    ));
                }
                // Someone else used this code between our read and our delete.
                ConsumeOutcome::CodeGone => return Err(MfaError::Rejected(RejectReason::Conflict)),
                ConsumeOutcome::FactorsChanged => {}
            }
        }
        Err(MfaError::Rejected(RejectReason::Conflict))
    }
}
