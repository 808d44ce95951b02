//! [`SqliteFactorStore`]: the [`FactorStore`] in an SQLite file (feature `sqlite`). The schema is in
//! docs/MFA.md; it may share the key store's file.

use super::error::MfaError;
use super::store::{ConsumeOutcome, FactorRecord, FactorStore, StateWrite};
use super::verify::{FactorState, Phase};
use crate::sqlite::Pool;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use std::path::Path;
use std::time::Duration;

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
    state_mac          BLOB,
    PRIMARY KEY (user_id, factor_id)
) STRICT;
CREATE TABLE IF NOT EXISTS custodian_mfa_recovery_code (
    user_id   TEXT    NOT NULL,
    code_id   INTEGER NOT NULL,
    code_hash BLOB    NOT NULL,
    PRIMARY KEY (user_id, code_id)
) STRICT;
";

const SELECT_FACTOR: &str = "SELECT user_id, factor_id, sealed_seed, phase, pending_expires_at,
    last_step, failures, retry_at, locked, generation, state_mac FROM custodian_mfa_factor";

/// Adds the `state_mac` column to a table created before state MACs existed. Its rows keep
/// `NULL` there, which `MfaService` refuses until they are adopted (docs/MFA.md, "Upgrading").
fn migrate(conn: &mut Connection) -> Result<(), MfaError> {
    let tx = write_transaction(conn)?;
    let has_mac: i64 = tx.query_row(
        "SELECT count(*) FROM pragma_table_info('custodian_mfa_factor') WHERE name = 'state_mac'",
        [],
        |row| row.get(0),
    )?;
    if has_mac == 0 {
        tx.execute_batch("ALTER TABLE custodian_mfa_factor ADD COLUMN state_mac BLOB")?;
    }
    tx.commit()?;
    Ok(())
}

/// Factors and recovery codes in one SQLite file. Connections are pooled: verifications of
/// different users run in parallel, and writers queue on SQLite's lock (busy timeout 5 s).
pub struct SqliteFactorStore {
    pool: Pool,
}

impl std::fmt::Debug for SqliteFactorStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteFactorStore")
            .field("path", &self.pool.path())
            .finish_non_exhaustive()
    }
}

impl SqliteFactorStore {
    /// Opens (creating if needed) the two tables in the database file at `path`, adding the
    /// `state_mac` column to a factor table created by an older version.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, MfaError> {
        let store = Self {
            pool: Pool::new(path.as_ref(), Duration::from_secs(5)).map_err(MfaError::Store)?,
        };
        store.with_conn(|conn| {
            conn.execute_batch(SCHEMA)?;
            migrate(conn)
        })?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.pool.path()
    }

    fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, MfaError>,
    ) -> Result<T, MfaError> {
        self.pool.with_conn(MfaError::from, f)
    }
}

/// A transaction that takes the write lock at once, so that two writers queue on the busy timeout
/// instead of one failing when it upgrades from reading.
fn write_transaction(conn: &mut Connection) -> Result<Transaction<'_>, MfaError> {
    Ok(conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
}

impl FactorStore for SqliteFactorStore {
    fn put_pending(
        &self,
        record: &FactorRecord,
        replaces: Option<u64>,
        unless_active: bool,
    ) -> Result<bool, MfaError> {
        let columns = StateColumns::from_state(&record.state)?;
        self.with_conn(|conn| {
            let tx = write_transaction(conn)?;
            if unless_active {
                let active: i64 = tx.query_row(
                    "SELECT count(*) FROM custodian_mfa_factor
                     WHERE user_id = ?1 AND phase = 'active'",
                    params![record.user],
                    |row| row.get(0),
                )?;
                if active > 0 {
                    return Ok(false);
                }
            }
            let written = match replaces {
                None => tx.execute(
                    "INSERT INTO custodian_mfa_factor
                         (user_id, factor_id, sealed_seed, phase, pending_expires_at, last_step,
                          failures, retry_at, locked, generation, state_mac)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                     ON CONFLICT (user_id, factor_id) DO NOTHING",
                    params![
                        record.user,
                        record.factor,
                        record.sealed_seed,
                        columns.phase,
                        columns.pending_expires_at,
                        columns.last_step,
                        columns.failures,
                        columns.retry_at,
                        columns.locked,
                        to_i64(record.generation)?,
                        mac_column(&record.state_mac)
                    ],
                )?,
                Some(generation) => tx.execute(
                    "UPDATE custodian_mfa_factor
                     SET sealed_seed = ?3, phase = ?4, pending_expires_at = ?5, last_step = ?6,
                         failures = ?7, retry_at = ?8, locked = ?9, generation = ?10,
                         state_mac = ?12
                     WHERE user_id = ?1 AND factor_id = ?2 AND phase IN ('pending', 'disabled')
                       AND generation = ?11 AND ?10 = generation + 1",
                    params![
                        record.user,
                        record.factor,
                        record.sealed_seed,
                        columns.phase,
                        columns.pending_expires_at,
                        columns.last_step,
                        columns.failures,
                        columns.retry_at,
                        columns.locked,
                        to_i64(record.generation)?,
                        to_i64(generation)?,
                        mac_column(&record.state_mac)
                    ],
                )?,
            };
            tx.commit()?;
            Ok(written == 1)
        })
    }

    fn load(&self, user: &str, factor: &str) -> Result<Option<FactorRecord>, MfaError> {
        self.with_conn(|conn| {
            conn.query_row(
                &format!("{SELECT_FACTOR} WHERE user_id = ?1 AND factor_id = ?2"),
                params![user, factor],
                raw_factor,
            )
            .optional()?
            .map(RawFactor::into_record)
            .transpose()
        })
    }

    fn factors(&self, user: &str) -> Result<Vec<FactorRecord>, MfaError> {
        self.with_conn(|conn| {
            let mut statement = conn.prepare(&format!(
                "{SELECT_FACTOR} WHERE user_id = ?1 ORDER BY factor_id"
            ))?;
            let rows = statement.query_map(params![user], raw_factor)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row?.into_record()?);
            }
            Ok(out)
        })
    }

    fn compare_and_set(&self, user: &str, write: &StateWrite) -> Result<bool, MfaError> {
        self.with_conn(|conn| Ok(update_state(conn, user, write)? == 1))
    }

    fn replace_recovery_codes(&self, user: &str, hashes: &[Vec<u8>]) -> Result<(), MfaError> {
        self.with_conn(|conn| {
            let tx = write_transaction(conn)?;
            tx.execute(
                "DELETE FROM custodian_mfa_recovery_code WHERE user_id = ?1",
                params![user],
            )?;
            for (id, hash) in (0u64..).zip(hashes) {
                tx.execute(
                    "INSERT INTO custodian_mfa_recovery_code (user_id, code_id, code_hash)
                     VALUES (?1, ?2, ?3)",
                    params![user, to_i64(id)?, hash],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn recovery_codes(&self, user: &str) -> Result<Vec<(u64, Vec<u8>)>, MfaError> {
        self.with_conn(|conn| {
            let mut statement = conn.prepare(
                "SELECT code_id, code_hash FROM custodian_mfa_recovery_code
                 WHERE user_id = ?1 ORDER BY code_id",
            )?;
            let rows = statement.query_map(params![user], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, hash) = row?;
                out.push((to_u64(id)?, hash));
            }
            Ok(out)
        })
    }

    fn consume_recovery_code(
        &self,
        user: &str,
        code_id: u64,
        resets: &[StateWrite],
    ) -> Result<ConsumeOutcome, MfaError> {
        self.with_conn(|conn| {
            let tx = write_transaction(conn)?;
            let deleted = tx.execute(
                "DELETE FROM custodian_mfa_recovery_code WHERE user_id = ?1 AND code_id = ?2",
                params![user, to_i64(code_id)?],
            )?;
            if deleted != 1 {
                return Ok(ConsumeOutcome::CodeGone);
            }
            for write in resets {
                if update_state(&tx, user, write)? != 1 {
                    // Dropping the transaction rolls the deletion back.
                    return Ok(ConsumeOutcome::FactorsChanged);
                }
            }
            tx.commit()?;
            Ok(ConsumeOutcome::Consumed)
        })
    }
}

/// `NULL` for an empty MAC (a row that has none), the bytes otherwise.
fn mac_column(mac: &[u8]) -> Option<&[u8]> {
    (!mac.is_empty()).then_some(mac)
}

fn update_state(conn: &Connection, user: &str, write: &StateWrite) -> Result<usize, MfaError> {
    let columns = StateColumns::from_state(&write.state)?;
    Ok(conn.execute(
        "UPDATE custodian_mfa_factor
         SET phase = ?1, pending_expires_at = ?2, last_step = ?3, failures = ?4, retry_at = ?5,
             locked = ?6, generation = generation + 1, state_mac = ?10
         WHERE user_id = ?7 AND factor_id = ?8 AND generation = ?9",
        params![
            columns.phase,
            columns.pending_expires_at,
            columns.last_step,
            columns.failures,
            columns.retry_at,
            columns.locked,
            user,
            write.factor,
            to_i64(write.expected_generation)?,
            mac_column(&write.state_mac)
        ],
    )?)
}

/// One row as read, before its columns are checked.
struct RawFactor {
    user: String,
    factor: String,
    sealed_seed: Vec<u8>,
    columns: StateColumns,
    generation: i64,
    state_mac: Option<Vec<u8>>,
}

fn raw_factor(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawFactor> {
    Ok(RawFactor {
        user: row.get(0)?,
        factor: row.get(1)?,
        sealed_seed: row.get(2)?,
        columns: StateColumns {
            phase: row.get(3)?,
            pending_expires_at: row.get(4)?,
            last_step: row.get(5)?,
            failures: row.get(6)?,
            retry_at: row.get(7)?,
            locked: row.get(8)?,
        },
        generation: row.get(9)?,
        state_mac: row.get(10)?,
    })
}

impl RawFactor {
    fn into_record(self) -> Result<FactorRecord, MfaError> {
        Ok(FactorRecord {
            user: self.user,
            factor: self.factor,
            sealed_seed: self.sealed_seed,
            state: self.columns.to_state()?,
            generation: to_u64(self.generation)?,
            state_mac: self.state_mac.unwrap_or_default(),
        })
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

impl From<rusqlite::Error> for MfaError {
    fn from(e: rusqlite::Error) -> Self {
        MfaError::Store(e.to_string())
    }
}
