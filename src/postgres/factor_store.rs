//! [`PgFactorStore`]: MFA factors and recovery codes in PostgreSQL, shared by every server of a
//! shop, with the semantics of the SQLite and memory factor stores (tables in `docs/MFA.md`).
//!
//! Every change is one statement or one transaction at READ COMMITTED. Compare-and-set is
//! `UPDATE ... WHERE generation = $expected`: of two servers writing the same row from the same
//! generation, the second waits for the first, re-checks the condition against the committed row
//! and updates nothing, so a code is accepted once and every failure is counted.

use super::{Postgres, PostgresError, bigint, classify};
use crate::mfa::{
    ConsumeOutcome, FactorRecord, FactorState, FactorStore, MfaError, Phase, StateWrite,
};
use core::fmt;
use core::future::Future;
use sqlx::postgres::PgPool;

/// MFA factors and recovery codes in the tables `custodian_mfa_factor` and
/// `custodian_mfa_recovery_code`.
///
/// Cheap to clone: clones share the [`Postgres`] handle. The methods are synchronous and wait for
/// the server at most for the handle's timeout; never call them on a tokio worker thread (see
/// [`crate::postgres`]).
#[derive(Clone)]
pub struct PgFactorStore {
    pg: Postgres,
}

impl PgFactorStore {
    /// A store on `pg`, after creating or upgrading custodian's tables
    /// ([`Postgres::migrate_blocking`]; no query at all if this handle has migrated already).
    pub fn open(pg: Postgres) -> Result<Self, MfaError> {
        pg.migrate_blocking()?;
        Ok(Self { pg })
    }

    /// The PostgreSQL handle.
    pub fn postgres(&self) -> &Postgres {
        &self.pg
    }

    fn run<T, F, Fut>(&self, what: String, task: F) -> Result<T, MfaError>
    where
        T: Send + 'static,
        F: FnOnce(PgPool, String) -> Fut,
        Fut: Future<Output = Result<T, PostgresError>> + Send + 'static,
    {
        let future = task(self.pg.pool().clone(), what.clone());
        Ok(self.pg.run(&what, future)?)
    }
}

impl From<PostgresError> for MfaError {
    fn from(err: PostgresError) -> Self {
        match err {
            PostgresError::Unavailable(message) => MfaError::StoreUnavailable(message),
            PostgresError::ValueOutOfRange { what, value } => MfaError::InvalidSetting {
                setting: what,
                reason: format!("`{value}` does not fit a PostgreSQL BIGINT"),
            },
            other => MfaError::Store(other.to_string()),
        }
    }
}

/// A [`FactorState`] as column values.
#[derive(Clone)]
struct StateColumns {
    phase: &'static str,
    pending_expires_at: Option<i64>,
    last_step: Option<i64>,
    failures: i64,
    retry_at: i64,
    locked: bool,
}

impl StateColumns {
    fn from_state(state: &FactorState) -> Result<Self, PostgresError> {
        let pending_expires_at = match state.phase() {
            Phase::Pending { expires_at } => Some(bigint("time", expires_at)?),
            Phase::Active | Phase::Disabled => None,
        };
        Ok(Self {
            phase: state.phase().name(),
            pending_expires_at,
            last_step: state
                .last_step()
                .map(|step| bigint("time", step))
                .transpose()?,
            failures: i64::from(state.failures()),
            retry_at: bigint("time", state.retry_at())?,
            locked: state.is_locked(),
        })
    }
}

type FactorRow = (
    String,
    String,
    Vec<u8>,
    String,
    Option<i64>,
    Option<i64>,
    i64,
    i64,
    bool,
    i64,
    Option<Vec<u8>>,
);

const SELECT_FACTOR: &str = "SELECT user_id, factor_id, sealed_seed, phase, pending_expires_at, \
    last_step, failures, retry_at, locked, generation, state_mac FROM custodian_mfa_factor \
    WHERE user_id = $1 AND factor_id = $2";
// `COLLATE "C"` orders by bytes, like the other stores, whatever the database's collation.
const SELECT_FACTORS: &str = "SELECT user_id, factor_id, sealed_seed, phase, pending_expires_at, \
    last_step, failures, retry_at, locked, generation, state_mac FROM custodian_mfa_factor \
    WHERE user_id = $1 ORDER BY factor_id COLLATE \"C\"";

fn to_u64(value: i64) -> Result<u64, MfaError> {
    u64::try_from(value).map_err(|_| MfaError::CorruptRecord("negative integer column"))
}

fn factor_record(row: FactorRow) -> Result<FactorRecord, MfaError> {
    let (
        user,
        factor,
        sealed_seed,
        phase,
        expires,
        last_step,
        failures,
        retry_at,
        locked,
        generation,
        state_mac,
    ) = row;
    let phase = match (phase.as_str(), expires) {
        ("pending", Some(expires_at)) => Phase::Pending {
            expires_at: to_u64(expires_at)?,
        },
        ("active", _) => Phase::Active,
        ("disabled", _) => Phase::Disabled,
        _ => {
            return Err(MfaError::CorruptRecord(
                "unknown phase or pending without expiry",
            ));
        }
    };
    Ok(FactorRecord {
        user,
        factor,
        sealed_seed,
        state: FactorState::from_stored(
            phase,
            last_step.map(to_u64).transpose()?,
            u32::try_from(failures).map_err(|_| MfaError::CorruptRecord("failures"))?,
            to_u64(retry_at)?,
            locked,
        ),
        generation: to_u64(generation)?,
        state_mac: state_mac.unwrap_or_default(),
    })
}

/// `NULL` for an empty MAC (a row that has none), the bytes otherwise.
fn mac_column(mac: &[u8]) -> Option<Vec<u8>> {
    (!mac.is_empty()).then(|| mac.to_vec())
}

/// A [`StateWrite`] as column values.
struct WriteColumns {
    factor: String,
    expected: i64,
    columns: StateColumns,
    state_mac: Option<Vec<u8>>,
}

impl WriteColumns {
    fn from_write(write: &StateWrite) -> Result<Self, PostgresError> {
        Ok(Self {
            factor: write.factor.clone(),
            expected: bigint("generation", write.expected_generation)?,
            columns: StateColumns::from_state(&write.state)?,
            state_mac: mac_column(&write.state_mac),
        })
    }
}

/// Writes the state, its MAC and `generation + 1` if the row is still at the expected
/// generation; rows written (0 or 1).
async fn update_state<'c>(
    executor: impl sqlx::PgExecutor<'c>,
    user: &str,
    write: &WriteColumns,
    what: &str,
) -> Result<u64, PostgresError> {
    let columns = &write.columns;
    Ok(sqlx::query(
        "UPDATE custodian_mfa_factor
         SET phase = $1, pending_expires_at = $2, last_step = $3, failures = $4, retry_at = $5,
             locked = $6, generation = generation + 1, state_mac = $10
         WHERE user_id = $7 AND factor_id = $8 AND generation = $9",
    )
    .bind(columns.phase)
    .bind(columns.pending_expires_at)
    .bind(columns.last_step)
    .bind(columns.failures)
    .bind(columns.retry_at)
    .bind(columns.locked)
    .bind(user)
    .bind(&write.factor)
    .bind(write.expected)
    .bind(write.state_mac.as_deref())
    .execute(executor)
    .await
    .map_err(|e| classify(what, e))?
    .rows_affected())
}

impl FactorStore for PgFactorStore {
    fn put_pending(
        &self,
        record: &FactorRecord,
        replaces: Option<u64>,
        unless_active: bool,
    ) -> Result<bool, MfaError> {
        let columns = StateColumns::from_state(&record.state)?;
        let generation = bigint("generation", record.generation)?;
        let replaces = replaces.map(|g| bigint("generation", g)).transpose()?;
        let (user, factor, seed) = (
            record.user.clone(),
            record.factor.clone(),
            record.sealed_seed.clone(),
        );
        let state_mac = mac_column(&record.state_mac);
        self.run(
            format!("storing MFA factor `{factor}` of user `{user}`"),
            |pool, what| async move {
                let mut tx = pool.begin().await.map_err(|e| classify(&what, e))?;
                if unless_active {
                    // FOR UPDATE: a confirmation of another factor of this user that is being
                    // written makes this wait and then read the confirmed row, so a second
                    // factor is never added beside one that became active meanwhile (the
                    // serial order SQLite's single writer gives).
                    let phases: Vec<String> = sqlx::query_scalar(
                        "SELECT phase FROM custodian_mfa_factor WHERE user_id = $1 FOR UPDATE",
                    )
                    .bind(&user)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(|e| classify(&what, e))?;
                    if phases.iter().any(|phase| phase == "active") {
                        return Ok(false);
                    }
                }
                let statement = match replaces {
                    None => sqlx::query(
                        "INSERT INTO custodian_mfa_factor
                             (user_id, factor_id, sealed_seed, phase, pending_expires_at,
                              last_step, failures, retry_at, locked, generation, state_mac)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                         ON CONFLICT (user_id, factor_id) DO NOTHING",
                    ),
                    Some(_) => sqlx::query(
                        "UPDATE custodian_mfa_factor
                         SET sealed_seed = $3, phase = $4, pending_expires_at = $5,
                             last_step = $6, failures = $7, retry_at = $8, locked = $9,
                             generation = $10, state_mac = $11
                         WHERE user_id = $1 AND factor_id = $2
                           AND phase IN ('pending', 'disabled')
                           AND generation = $12 AND $10 = generation + 1",
                    ),
                }
                .bind(&user)
                .bind(&factor)
                .bind(seed)
                .bind(columns.phase)
                .bind(columns.pending_expires_at)
                .bind(columns.last_step)
                .bind(columns.failures)
                .bind(columns.retry_at)
                .bind(columns.locked)
                .bind(generation)
                .bind(state_mac);
                let statement = match replaces {
                    Some(expected) => statement.bind(expected),
                    None => statement,
                };
                let written = statement
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| classify(&what, e))?
                    .rows_affected();
                tx.commit().await.map_err(|e| classify(&what, e))?;
                Ok(written == 1)
            },
        )
    }

    fn load(&self, user: &str, factor: &str) -> Result<Option<FactorRecord>, MfaError> {
        let (user, factor) = (user.to_owned(), factor.to_owned());
        let row: Option<FactorRow> = self.run(
            format!("loading MFA factor `{factor}` of user `{user}`"),
            |pool, what| async move {
                sqlx::query_as(SELECT_FACTOR)
                    .bind(user)
                    .bind(factor)
                    .fetch_optional(&pool)
                    .await
                    .map_err(|e| classify(&what, e))
            },
        )?;
        row.map(factor_record).transpose()
    }

    fn factors(&self, user: &str) -> Result<Vec<FactorRecord>, MfaError> {
        let user = user.to_owned();
        let rows: Vec<FactorRow> = self.run(
            format!("listing MFA factors of user `{user}`"),
            |pool, what| async move {
                sqlx::query_as(SELECT_FACTORS)
                    .bind(user)
                    .fetch_all(&pool)
                    .await
                    .map_err(|e| classify(&what, e))
            },
        )?;
        rows.into_iter().map(factor_record).collect()
    }

    fn compare_and_set(&self, user: &str, write: &StateWrite) -> Result<bool, MfaError> {
        let write = WriteColumns::from_write(write)?;
        let user = user.to_owned();
        self.run(
            format!("updating MFA factor `{}` of user `{user}`", write.factor),
            |pool, what| async move {
                // One statement: atomic on its own, one round trip per verification.
                let written = update_state(&pool, &user, &write, &what).await?;
                Ok(written == 1)
            },
        )
    }

    fn replace_recovery_codes(&self, user: &str, hashes: &[Vec<u8>]) -> Result<(), MfaError> {
        let user = user.to_owned();
        let hashes = hashes.to_vec();
        let ids: Vec<i64> = (0..hashes.len())
            .map(|id| bigint("recovery code id", id as u64))
            .collect::<Result<_, _>>()?;
        self.run(
            format!("replacing the recovery codes of user `{user}`"),
            |pool, what| async move {
                let mut tx = pool.begin().await.map_err(|e| classify(&what, e))?;
                sqlx::query("DELETE FROM custodian_mfa_recovery_code WHERE user_id = $1")
                    .bind(&user)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| classify(&what, e))?;
                sqlx::query(
                    "INSERT INTO custodian_mfa_recovery_code (user_id, code_id, code_hash)
                     SELECT $1, id, hash FROM UNNEST($2::bigint[], $3::bytea[]) AS c (id, hash)",
                )
                .bind(&user)
                .bind(&ids)
                .bind(&hashes)
                .execute(&mut *tx)
                .await
                .map_err(|e| classify(&what, e))?;
                tx.commit().await.map_err(|e| classify(&what, e))?;
                Ok(())
            },
        )
    }

    fn recovery_codes(&self, user: &str) -> Result<Vec<(u64, Vec<u8>)>, MfaError> {
        let user = user.to_owned();
        let rows: Vec<(i64, Vec<u8>)> = self.run(
            format!("loading the recovery codes of user `{user}`"),
            |pool, what| async move {
                sqlx::query_as(
                    "SELECT code_id, code_hash FROM custodian_mfa_recovery_code
                     WHERE user_id = $1 ORDER BY code_id",
                )
                .bind(user)
                .fetch_all(&pool)
                .await
                .map_err(|e| classify(&what, e))
            },
        )?;
        rows.into_iter()
            .map(|(id, hash)| Ok((to_u64(id)?, hash)))
            .collect()
    }

    fn consume_recovery_code(
        &self,
        user: &str,
        code_id: u64,
        resets: &[StateWrite],
    ) -> Result<ConsumeOutcome, MfaError> {
        let code_id = bigint("recovery code id", code_id)?;
        let resets: Vec<WriteColumns> = resets
            .iter()
            .map(WriteColumns::from_write)
            .collect::<Result<_, PostgresError>>()?;
        let user = user.to_owned();
        self.run(
            format!("using a recovery code of user `{user}`"),
            |pool, what| async move {
                let mut tx = pool.begin().await.map_err(|e| classify(&what, e))?;
                // A concurrent use of the same code waits on this row, then deletes nothing.
                let deleted = sqlx::query(
                    "DELETE FROM custodian_mfa_recovery_code WHERE user_id = $1 AND code_id = $2",
                )
                .bind(&user)
                .bind(code_id)
                .execute(&mut *tx)
                .await
                .map_err(|e| classify(&what, e))?
                .rows_affected();
                if deleted != 1 {
                    return Ok(ConsumeOutcome::CodeGone);
                }
                for write in &resets {
                    if update_state(&mut *tx, &user, write, &what).await? != 1 {
                        // Dropping the transaction rolls the deletion back.
                        return Ok(ConsumeOutcome::FactorsChanged);
                    }
                }
                tx.commit().await.map_err(|e| classify(&what, e))?;
                Ok(ConsumeOutcome::Consumed)
            },
        )
    }
}

impl fmt::Debug for PgFactorStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgFactorStore")
            .field("postgres", &self.pg)
            .finish()
    }
}
