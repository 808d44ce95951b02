//! An SQLite store of factors and recovery codes that persists state with compare-and-set.
//!
//! Every factor row has a `generation` column. A verification reads the row, verifies against the
//! state it read, and writes the new state with
//! `UPDATE ... SET ..., generation = generation + 1 WHERE user_id = ? AND factor_id = ? AND generation = ?`.
//! If another request changed the row in between, no row matches, the write is lost, and the code
//! is **not** accepted: the store reloads and verifies again, and the reloaded replay mark then
//! refuses the code. So two concurrent logins with the same code cannot both succeed, whether they
//! run on two connections, two threads or two servers sharing the database.
//!
//! Seeds are stored only sealed (see [`super::sealed_seed`]); recovery codes only as salted
//! hashes (see [`super::recovery`]). The schema is in docs/MFA.md.

use super::enrollment::Factor;
use super::error::{MfaError, RejectReason, excerpt};
use super::otp::TotpKey;
use super::recovery::{RecoveryCodeHash, RecoveryCodeSet};
use super::sealed_seed::{open_seed, seal_seed};
use super::step_up::{RECOVERY_CODE_FACTOR, StepUp, StepUpMethod};
use super::verify::{FactorState, Phase, Rejected, Verified, Verifier};
use crate::envelope::Kek;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use std::sync::Arc;
use std::time::Duration;

/// How often a verification is retried after losing a compare-and-set race.
const CAS_ATTEMPTS: usize = 3;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS custodian_mfa_factor (
    user_id            TEXT    NOT NULL,
    factor_id          TEXT    NOT NULL,
    sealed_seed        BLOB    NOT NULL,
    phase              TEXT    NOT NULL CHECK (phase IN ('pending', 'active', 'disabled')),
    pending_expires_at INTEGER CHECK (pending_expires_at >= 0),
    last_step          INTEGER CHECK (last_step >= 0),
    failures           INTEGER NOT NULL DEFAULT 0 CHECK (failures >= 0),
    retry_at           INTEGER NOT NULL DEFAULT 0 CHECK (retry_at >= 0),
    locked             INTEGER NOT NULL DEFAULT 0 CHECK (locked IN (0, 1)),
    generation         INTEGER NOT NULL DEFAULT 0 CHECK (generation >= 0),
    PRIMARY KEY (user_id, factor_id)
) STRICT;
CREATE TABLE IF NOT EXISTS custodian_mfa_recovery_code (
    user_id   TEXT    NOT NULL,
    code_id   INTEGER NOT NULL,
    code_hash BLOB    NOT NULL,
    PRIMARY KEY (user_id, code_id)
) STRICT;
";

/// A factor with the generation its state was read at.
#[derive(Debug)]
pub struct StoredFactor {
    /// The factor, its seed opened.
    pub factor: Factor,
    /// Pass this to [`SqliteFactorStore::compare_and_set`].
    pub generation: u64,
}

/// Factors and recovery codes in SQLite. One store per connection; use one connection per thread.
pub struct SqliteFactorStore {
    conn: Connection,
    kek: Arc<dyn Kek>,
}

impl std::fmt::Debug for SqliteFactorStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteFactorStore")
            .field("kek", self.kek.key_id())
            .finish_non_exhaustive()
    }
}

impl SqliteFactorStore {
    /// Uses `conn`, creating the two tables if needed, and seals seeds with `kek`.
    ///
    /// Sets a 5-second busy timeout so that concurrent writers wait instead of failing.
    pub fn open(conn: Connection, kek: Arc<dyn Kek>) -> Result<Self, MfaError> {
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self { conn, kek })
    }

    /// A transaction that takes the write lock at once, so that two writers queue on the busy
    /// timeout instead of one failing when it upgrades from reading.
    fn write_transaction(&self) -> Result<Transaction<'_>, MfaError> {
        Ok(Transaction::new_unchecked(
            &self.conn,
            TransactionBehavior::Immediate,
        )?)
    }

    /// The connection, for the caller's own transactions and queries.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Starts (or restarts) an enrollment and stores the pending factor.
    ///
    /// If the user already has an active factor, `step_up` must be a fresh verification of that
    /// user; otherwise anyone holding a hijacked session could add their own authenticator. A
    /// pending factor of the same id is replaced; an active or disabled one is an error.
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
        let tx = self.write_transaction()?;
        let active: i64 = tx.query_row(
            "SELECT count(*) FROM custodian_mfa_factor WHERE user_id = ?1 AND phase = 'active'",
            params![user],
            |row| row.get(0),
        )?;
        if active > 0 {
            let Some(step_up) = step_up else {
                return Err(MfaError::StepUpRequired {
                    user: excerpt(user),
                    reason: "the user already has an active factor",
                    max_age: verifier.step_up_max_age,
                });
            };
            verifier.require_step_up(step_up, user, now)?;
        }
        let existing: Option<String> = tx
            .query_row(
                "SELECT phase FROM custodian_mfa_factor WHERE user_id = ?1 AND factor_id = ?2",
                params![user, factor_id],
                |row| row.get(0),
            )
            .optional()?;
        match existing.as_deref() {
            None => {}
            Some("pending") => {
                tx.execute(
                    "DELETE FROM custodian_mfa_factor WHERE user_id = ?1 AND factor_id = ?2",
                    params![user, factor_id],
                )?;
            }
            Some(_) => {
                return Err(MfaError::AlreadyExists {
                    user: excerpt(user),
                    factor: excerpt(factor_id),
                });
            }
        }
        let sealed = seal_seed(self.kek.as_ref(), user, factor_id, factor.key())?;
        let state = StateColumns::from_state(factor.state())?;
        tx.execute(
            "INSERT INTO custodian_mfa_factor
                 (user_id, factor_id, sealed_seed, phase, pending_expires_at, last_step, failures,
                  retry_at, locked, generation)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0)",
            params![
                user,
                factor_id,
                sealed,
                state.phase,
                state.pending_expires_at,
                state.last_step,
                state.failures,
                state.retry_at,
                state.locked
            ],
        )?;
        tx.commit()?;
        Ok(factor)
    }

    /// Loads a factor and opens its seed.
    pub fn load(&self, user: &str, factor_id: &str) -> Result<StoredFactor, MfaError> {
        let row = self
            .conn
            .query_row(
                "SELECT sealed_seed, phase, pending_expires_at, last_step, failures, retry_at,
                        locked, generation
                 FROM custodian_mfa_factor WHERE user_id = ?1 AND factor_id = ?2",
                params![user, factor_id],
                |row| {
                    Ok((
                        row.get::<_, Vec<u8>>(0)?,
                        StateColumns {
                            phase: row.get(1)?,
                            pending_expires_at: row.get(2)?,
                            last_step: row.get(3)?,
                            failures: row.get(4)?,
                            retry_at: row.get(5)?,
                            locked: row.get(6)?,
                        },
                        row.get::<_, i64>(7)?,
                    ))
                },
            )
            .optional()?
            .ok_or_else(|| MfaError::NotFound {
                user: excerpt(user),
                factor: excerpt(factor_id),
            })?;
        let (sealed, columns, generation) = row;
        let key = open_seed(self.kek.as_ref(), user, factor_id, &sealed)?;
        let factor = Factor::from_parts(user, factor_id, key, columns.to_state()?)?;
        Ok(StoredFactor {
            factor,
            generation: to_u64(generation)?,
        })
    }

    /// Writes `state` only if the row is still at `expected_generation`; returns whether it wrote.
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
        let columns = StateColumns::from_state(state)?;
        let changed = self.conn.execute(
            "UPDATE custodian_mfa_factor
             SET phase = ?1, pending_expires_at = ?2, last_step = ?3, failures = ?4, retry_at = ?5,
                 locked = ?6, generation = generation + 1
             WHERE user_id = ?7 AND factor_id = ?8 AND generation = ?9",
            params![
                columns.phase,
                columns.pending_expires_at,
                columns.last_step,
                columns.failures,
                columns.retry_at,
                columns.locked,
                user,
                factor_id,
                to_i64(expected_generation)?
            ],
        )?;
        Ok(changed == 1)
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
        let mut statement = self.conn.prepare(
            "SELECT factor_id, phase, pending_expires_at FROM custodian_mfa_factor
             WHERE user_id = ?1 ORDER BY factor_id",
        )?;
        let rows = statement.query_map(params![user], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Option<i64>>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, phase, expires) = row?;
            out.push((id, parse_phase(&phase, expires)?));
        }
        Ok(out)
    }

    /// Stores a new recovery-code set, revoking every code of the user's previous set.
    pub fn replace_recovery_codes(&self, set: &RecoveryCodeSet) -> Result<(), MfaError> {
        let tx = self.write_transaction()?;
        tx.execute(
            "DELETE FROM custodian_mfa_recovery_code WHERE user_id = ?1",
            params![set.user()],
        )?;
        for (index, entry) in set.entries().iter().enumerate() {
            tx.execute(
                "INSERT INTO custodian_mfa_recovery_code (user_id, code_id, code_hash)
                 VALUES (?1, ?2, ?3)",
                params![
                    set.user(),
                    to_i64(index as u64)?,
                    entry.to_bytes().as_slice()
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Unused recovery codes of the user.
    pub fn recovery_codes_remaining(&self, user: &str) -> Result<usize, MfaError> {
        let count: i64 = self.conn.query_row(
            "SELECT count(*) FROM custodian_mfa_recovery_code WHERE user_id = ?1",
            params![user],
            |row| row.get(0),
        )?;
        usize::try_from(count).map_err(|_| MfaError::CorruptRecord("negative count"))
    }

    /// Uses a recovery code: consumes it (a concurrent second use of the same code loses), lifts
    /// locks and throttles on the user's factors, and returns a step-up of method recovery code.
    pub fn use_recovery_code(&self, user: &str, code: &str, now: u64) -> Result<StepUp, MfaError> {
        let tx = self.write_transaction()?;
        let mut ids = Vec::new();
        let mut entries = Vec::new();
        {
            let mut statement = tx.prepare(
                "SELECT code_id, code_hash FROM custodian_mfa_recovery_code
                 WHERE user_id = ?1 ORDER BY code_id",
            )?;
            let rows = statement.query_map(params![user], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
            })?;
            for row in rows {
                let (id, hash) = row?;
                ids.push(id);
                entries.push(RecoveryCodeHash::from_bytes(&hash)?);
            }
        }
        let set = RecoveryCodeSet::from_entries(user, entries)?;
        let index = set
            .find(code)
            .ok_or(MfaError::Rejected(RejectReason::UnknownRecoveryCode))?;
        let id = ids
            .get(index)
            .ok_or(MfaError::CorruptRecord("recovery code index"))?;
        let deleted = tx.execute(
            "DELETE FROM custodian_mfa_recovery_code WHERE user_id = ?1 AND code_id = ?2",
            params![user, id],
        )?;
        if deleted != 1 {
            // Someone else used this code between our read and our delete.
            return Err(MfaError::Rejected(RejectReason::Conflict));
        }
        tx.execute(
            "UPDATE custodian_mfa_factor
             SET failures = 0, retry_at = 0, locked = 0, generation = generation + 1
             WHERE user_id = ?1 AND (locked = 1 OR failures > 0 OR retry_at > 0)",
            params![user],
        )?;
        tx.commit()?;
        Ok(StepUp::new(
            user,
            RECOVERY_CODE_FACTOR,
            StepUpMethod::RecoveryCode,
            now,
        ))
    }
}

/// A [`FactorState`] as column values.
struct StateColumns {
    phase: String,
    pending_expires_at: Option<i64>,
    last_step: Option<i64>,
    failures: i64,
    retry_at: i64,
    locked: i64,
}

impl StateColumns {
    fn from_state(state: &FactorState) -> Result<Self, MfaError> {
        let pending_expires_at = match state.phase() {
            Phase::Pending { expires_at } => Some(to_i64(expires_at)?),
            Phase::Active | Phase::Disabled => None,
        };
        Ok(Self {
            phase: state.phase().name().to_owned(),
            pending_expires_at,
            last_step: state.last_step().map(to_i64).transpose()?,
            failures: i64::from(state.failures()),
            retry_at: to_i64(state.retry_at())?,
            locked: i64::from(state.is_locked()),
        })
    }

    fn to_state(&self) -> Result<FactorState, MfaError> {
        Ok(FactorState::from_stored(
            parse_phase(&self.phase, self.pending_expires_at)?,
            self.last_step.map(to_u64).transpose()?,
            u32::try_from(self.failures).map_err(|_| MfaError::CorruptRecord("failures"))?,
            to_u64(self.retry_at)?,
            match self.locked {
                0 => false,
                1 => true,
                _ => return Err(MfaError::CorruptRecord("locked must be 0 or 1")),
            },
        ))
    }
}

fn parse_phase(phase: &str, pending_expires_at: Option<i64>) -> Result<Phase, MfaError> {
    match (phase, pending_expires_at) {
        ("pending", Some(expires_at)) => Ok(Phase::Pending {
            expires_at: to_u64(expires_at)?,
        }),
        ("active", _) => Ok(Phase::Active),
        ("disabled", _) => Ok(Phase::Disabled),
        _ => Err(MfaError::CorruptRecord(
            "unknown phase or pending without expiry",
        )),
    }
}

/// SQLite integers are signed: times and steps beyond `i64::MAX` are refused, not wrapped.
fn to_i64(value: u64) -> Result<i64, MfaError> {
    i64::try_from(value).map_err(|_| MfaError::InvalidSetting {
        setting: "time",
        reason: format!("`{value}` does not fit an SQLite integer"),
    })
}

fn to_u64(value: i64) -> Result<u64, MfaError> {
    u64::try_from(value).map_err(|_| MfaError::CorruptRecord("negative integer column"))
}
