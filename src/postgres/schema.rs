//! custodian's PostgreSQL schema: a version table and forward-only migrations, applied under an
//! advisory lock so that servers starting at once migrate exactly once.

use super::{LOCK_CLASS_MIGRATION, PostgresError, classify};
use sqlx::postgres::PgPool;

/// `tombstone_bucket(subject)` in SQL (docs/KEYSTORE.md; `ascii('')` is 0): the same text as
/// the index of schema version 5, so that PostgreSQL uses the index.
macro_rules! bucket_sql {
    () => {
        "((ascii(substr(subject, length(subject), 1)) \
         + 31 * ascii(substr(subject, length(subject) - 1, 1)) \
         + 961 * ascii(substr(subject, length(subject) - 2, 1))) % 256)"
    };
}
pub(crate) use bucket_sql;

/// Schema version this build writes; `MIGRATIONS[i]` upgrades from version `i` to `i + 1`.
pub const SCHEMA_VERSION: u32 = 5;

/// Each step is a list of statements, run in the migration's transaction. Integers are `BIGINT`
/// (the store refuses values above `i64::MAX`; 32-bit unsigned values fit without loss).
const MIGRATIONS: [&[&str]; 5] = [
    // 0 -> 1: the key store (docs/KEYSTORE.md).
    &[
        "CREATE TABLE custodian_meta (
            key   TEXT PRIMARY KEY,
            value BYTEA NOT NULL
        )",
        "CREATE TABLE custodian_rings (
            name                   TEXT PRIMARY KEY,
            generation             BIGINT NOT NULL,
            suite                  SMALLINT NOT NULL,
            primary_version        BIGINT NOT NULL,
            min_encryption_version BIGINT NOT NULL,
            min_decryption_version BIGINT NOT NULL,
            max_age_secs           BIGINT,
            max_encryptions        BIGINT NOT NULL,
            propagation_secs       BIGINT NOT NULL,
            created_at             BIGINT NOT NULL,
            version_digests        BYTEA NOT NULL,
            mac                    BYTEA NOT NULL
        )",
        "CREATE TABLE custodian_ring_versions (
            ring           TEXT NOT NULL REFERENCES custodian_rings (name),
            version        BIGINT NOT NULL,
            state          SMALLINT NOT NULL,
            wrapped_key    BYTEA,
            created_at     BIGINT NOT NULL,
            superseded_at  BIGINT,
            usage_reserved BIGINT NOT NULL,
            mac            BYTEA NOT NULL,
            PRIMARY KEY (ring, version)
        )",
        "CREATE TABLE custodian_subject_keys (
            ring        TEXT NOT NULL REFERENCES custodian_rings (name),
            subject     TEXT NOT NULL,
            generation  BIGINT NOT NULL,
            wrapped_by  BIGINT NOT NULL,
            wrapped_key BYTEA,
            created_at  BIGINT NOT NULL,
            erased_at   BIGINT,
            mac         BYTEA NOT NULL,
            PRIMARY KEY (ring, subject, generation)
        )",
        "CREATE INDEX custodian_subject_keys_by_wrapping_version
            ON custodian_subject_keys (ring, wrapped_by) WHERE wrapped_key IS NOT NULL",
        // The change feed (KeyStore::changes_since). `seq` follows commit order because every
        // writer appends under one advisory lock held until it commits (keys/postgres.rs).
        "CREATE TABLE custodian_changes (
            seq     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            ring    TEXT NOT NULL,
            subject TEXT
        )",
    ],
    // 1 -> 2: MFA factors and recovery codes (docs/MFA.md).
    &[
        "CREATE TABLE custodian_mfa_factor (
            user_id            TEXT     NOT NULL,
            factor_id          TEXT     NOT NULL,
            sealed_seed        BYTEA    NOT NULL,
            phase              TEXT     NOT NULL CHECK (phase IN ('pending', 'active', 'disabled')),
            pending_expires_at BIGINT   CHECK (pending_expires_at >= 0),
            last_step          BIGINT   CHECK (last_step >= 0),
            failures           BIGINT   NOT NULL DEFAULT 0 CHECK (failures >= 0),
            retry_at           BIGINT   NOT NULL DEFAULT 0 CHECK (retry_at >= 0),
            locked             BOOLEAN  NOT NULL DEFAULT FALSE,
            generation         BIGINT   NOT NULL DEFAULT 0 CHECK (generation >= 0),
            PRIMARY KEY (user_id, factor_id)
        )",
        "CREATE TABLE custodian_mfa_recovery_code (
            user_id   TEXT   NOT NULL,
            code_id   BIGINT NOT NULL,
            code_hash BYTEA  NOT NULL,
            PRIMARY KEY (user_id, code_id)
        )",
    ],
    // 2 -> 3: the state MAC of every factor row (docs/MFA.md, "State MAC"). Existing rows keep
    // NULL and are refused until adopted (docs/MFA.md, "Upgrading").
    &["ALTER TABLE custodian_mfa_factor ADD COLUMN state_mac BYTEA"],
    // 3 -> 4: the audit log (docs/AUDIT.md, "PostgreSQL store"). Append-only: the triggers refuse
    // an UPDATE, DELETE or TRUNCATE by mistake (not by the tables' owner, who can drop them).
    &[
        "CREATE TABLE custodian_audit_entries (
            idx   BIGINT PRIMARY KEY CHECK (idx >= 0),
            entry BYTEA  NOT NULL
        )",
        "CREATE TABLE custodian_audit_hashes (
            idx  BIGINT PRIMARY KEY CHECK (idx >= 0),
            hash BYTEA  NOT NULL CHECK (octet_length(hash) = 32)
        )",
        "CREATE FUNCTION custodian_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
         END
         $$",
        "CREATE TRIGGER custodian_audit_entries_append_only
            BEFORE UPDATE OR DELETE ON custodian_audit_entries
            FOR EACH ROW EXECUTE FUNCTION custodian_audit_append_only()",
        "CREATE TRIGGER custodian_audit_entries_no_truncate
            BEFORE TRUNCATE ON custodian_audit_entries
            FOR EACH STATEMENT EXECUTE FUNCTION custodian_audit_append_only()",
        "CREATE TRIGGER custodian_audit_hashes_append_only
            BEFORE UPDATE OR DELETE ON custodian_audit_hashes
            FOR EACH ROW EXECUTE FUNCTION custodian_audit_append_only()",
        "CREATE TRIGGER custodian_audit_hashes_no_truncate
            BEFORE TRUNCATE ON custodian_audit_hashes
            FOR EACH STATEMENT EXECUTE FUNCTION custodian_audit_append_only()",
    ],
    // 4 -> 5: the key store's ledger (docs/KEYSTORE.md), and an index that makes counting
    // tombstones cheap.
    &[
        "CREATE TABLE custodian_ledger (
            id      SMALLINT PRIMARY KEY CHECK (id = 1),
            counter BIGINT   NOT NULL CHECK (counter >= 0),
            body    BYTEA    NOT NULL,
            mac     BYTEA    NOT NULL
        )",
        concat!(
            "CREATE INDEX custodian_subject_keys_tombstones ON custodian_subject_keys (",
            bucket_sql!(),
            ") WHERE wrapped_key IS NULL"
        ),
    ],
];

const _: () = assert!(MIGRATIONS.len() == SCHEMA_VERSION as usize);

/// What a migration did: the schema version found and the version left. `from == to` when
/// there was nothing to do (another server had migrated already).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    /// Version before.
    pub from: u32,
    /// Version after (always [`SCHEMA_VERSION`]).
    pub to: u32,
}

fn version_of(found: i64) -> Result<u32, PostgresError> {
    u32::try_from(found).map_err(|_| {
        PostgresError::Database(format!(
            "custodian_schema holds version {found}, which no custodian writes"
        ))
    })
}

/// Reads the current version without locking, so that a migrated database costs one query.
async fn current_version(pool: &PgPool) -> Result<Option<u32>, PostgresError> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('custodian_schema') IS NOT NULL")
        .fetch_one(pool)
        .await
        .map_err(|e| classify("reading custodian's schema version", e))?;
    if !exists {
        return Ok(None);
    }
    let found: Option<i64> =
        sqlx::query_scalar("SELECT version FROM custodian_schema WHERE id = 1")
            .fetch_optional(pool)
            .await
            .map_err(|e| classify("reading custodian's schema version", e))?;
    found.map(version_of).transpose()
}

pub(super) async fn migrate(pool: PgPool) -> Result<Migrated, PostgresError> {
    let what = "migrating custodian's schema";
    match current_version(&pool).await? {
        Some(found) if found == SCHEMA_VERSION => {
            return Ok(Migrated {
                from: found,
                to: found,
            });
        }
        Some(found) if found > SCHEMA_VERSION => {
            return Err(PostgresError::SchemaTooNew {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        _ => {}
    }
    let mut tx = pool.begin().await.map_err(|e| classify(what, e))?;
    // Held until commit: a second server blocks here, then reads the version this one wrote.
    sqlx::query("SELECT pg_advisory_xact_lock($1, 0)")
        .bind(LOCK_CLASS_MIGRATION)
        .execute(&mut *tx)
        .await
        .map_err(|e| classify(what, e))?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS custodian_schema (
             id      INTEGER PRIMARY KEY CHECK (id = 1),
             version BIGINT NOT NULL
         )",
    )
    .execute(&mut *tx)
    .await
    .map_err(|e| classify(what, e))?;
    let found: Option<i64> =
        sqlx::query_scalar("SELECT version FROM custodian_schema WHERE id = 1")
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| classify(what, e))?;
    let found = found.map(version_of).transpose()?.unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(PostgresError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (from, statements) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        for statement in *statements {
            sqlx::query(*statement)
                .execute(&mut *tx)
                .await
                .map_err(|e| classify(&format!("migration from schema version {from}"), e))?;
        }
    }
    sqlx::query(
        "INSERT INTO custodian_schema (id, version) VALUES (1, $1)
         ON CONFLICT (id) DO UPDATE SET version = excluded.version",
    )
    .bind(i64::from(SCHEMA_VERSION))
    .execute(&mut *tx)
    .await
    .map_err(|e| classify(what, e))?;
    tx.commit().await.map_err(|e| classify(what, e))?;
    Ok(Migrated {
        from: found,
        to: SCHEMA_VERSION,
    })
}
