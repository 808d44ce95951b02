//! The embedded default [`KeyStore`]: one SQLite file (bundled SQLite), WAL mode, full fsync on
//! commit, every multi-row change in one `BEGIN IMMEDIATE` transaction, a schema version table
//! and forward-only migrations. Several processes may open the same file: writers serialise on
//! SQLite's lock (with a busy timeout) and the ring generation column decides who wins.

use super::KeyError;
use super::ring::{RotationPolicy, VersionState};
use super::store::{
    CHANGE_FEED_RETENTION, Change, ChangeFeed, CommitOutcome, Journal, KeyStore, LedgerRecord,
    LedgerView, MAC_LEN, RingChange, RingRecord, RingRows, RingView, SubjectRecord, SubjectView,
    VersionRecord, announces_change, decode_digests, decode_ledger, encode_digests,
    encode_ledger_body, events_of_inserted, every_bucket, tombstone_bucket,
};
use crate::audit::{AuditError, AuditEvent, AuditStore, BuildAppend, Hash, PreparedAppend};
use crate::audit::{SqliteAuditStore, sqlite as audit_sqlite};
use crate::crypto::Suite;
use crate::sqlite::Pool;
use core::fmt;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// `tombstone_bucket(subject)` in SQL (docs/KEYSTORE.md): the same text in the index and in the
/// queries, so that SQLite uses the index.
macro_rules! bucket_sql {
    () => {
        "((coalesce(unicode(substr(subject, -1, 1)), 0) \
         + 31 * coalesce(unicode(substr(subject, -2, 1)), 0) \
         + 961 * coalesce(unicode(substr(subject, -3, 1)), 0)) % 256)"
    };
}

/// Schema version this build writes; `MIGRATIONS[i]` upgrades from version `i` to `i + 1`.
pub const SCHEMA_VERSION: u32 = 3;

const MIGRATIONS: [&str; 3] = [
    r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL
) STRICT;
CREATE TABLE rings (
    name                   TEXT PRIMARY KEY NOT NULL,
    generation             INTEGER NOT NULL,
    suite                  INTEGER NOT NULL,
    primary_version        INTEGER NOT NULL,
    min_encryption_version INTEGER NOT NULL,
    min_decryption_version INTEGER NOT NULL,
    max_age_secs           INTEGER,
    max_encryptions        INTEGER NOT NULL,
    propagation_secs       INTEGER NOT NULL,
    created_at             INTEGER NOT NULL,
    version_digests        BLOB NOT NULL,
    mac                    BLOB NOT NULL
) STRICT;
CREATE TABLE ring_versions (
    ring           TEXT NOT NULL REFERENCES rings(name),
    version        INTEGER NOT NULL,
    state          INTEGER NOT NULL,
    wrapped_key    BLOB,
    created_at     INTEGER NOT NULL,
    superseded_at  INTEGER,
    usage_reserved INTEGER NOT NULL,
    mac            BLOB NOT NULL,
    PRIMARY KEY (ring, version)
) STRICT;
CREATE TABLE subject_keys (
    ring        TEXT NOT NULL REFERENCES rings(name),
    subject     TEXT NOT NULL,
    generation  INTEGER NOT NULL,
    wrapped_by  INTEGER NOT NULL,
    wrapped_key BLOB,
    created_at  INTEGER NOT NULL,
    erased_at   INTEGER,
    mac         BLOB NOT NULL,
    PRIMARY KEY (ring, subject, generation)
) STRICT;
CREATE INDEX subject_keys_by_wrapping_version
    ON subject_keys (ring, wrapped_by) WHERE wrapped_key IS NOT NULL;
"#,
    r#"
CREATE TABLE changes (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    ring    TEXT NOT NULL,
    subject TEXT
) STRICT;
"#,
    // The ledger, and an index that makes counting tombstones cheap. The audit tables are
    // created with them (`audit::sqlite::create_tables`).
    concat!(
        "CREATE TABLE ledger (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    counter INTEGER NOT NULL,
    body    BLOB NOT NULL,
    mac     BLOB NOT NULL
) STRICT;
CREATE INDEX subject_keys_tombstones ON subject_keys (",
        bucket_sql!(),
        ") WHERE wrapped_key IS NULL;"
    ),
];

/// A key store in one SQLite database file, with its audit log in the same file.
///
/// Key operations and erasures append their audit entries in their own transaction
/// ([`KeyStore`] methods take a [`Journal`]); [`SqliteKeyStore::audit_store`] reads and appends
/// to the same log.
pub struct SqliteKeyStore {
    pool: Arc<Pool>,
}

impl SqliteKeyStore {
    /// Opens (creating if needed) the store at `path` and migrates it to [`SCHEMA_VERSION`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        Self::open_with_busy_timeout(path, Duration::from_secs(10))
    }

    /// Like [`SqliteKeyStore::open`], waiting at most `busy_timeout` for another writer.
    pub fn open_with_busy_timeout(
        path: impl AsRef<Path>,
        busy_timeout: Duration,
    ) -> Result<Self, KeyError> {
        let store = Self {
            pool: Arc::new(Pool::new(path.as_ref(), busy_timeout).map_err(KeyError::Store)?),
        };
        store.with_conn(migrate)?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.pool.path()
    }

    /// Runs `f` on a pooled connection.
    fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, KeyError>,
    ) -> Result<T, KeyError> {
        self.pool.with_conn(
            |e| KeyError::Store(format!("cannot open `{}`: {e}", self.path().display())),
            f,
        )
    }

    /// The audit log kept in this store's file, over the same connections.
    pub fn audit_store(&self) -> SqliteAuditStore {
        SqliteAuditStore::from_pool(Arc::clone(&self.pool))
    }
}

/// Moves the WAL's content into the database file and truncates the WAL to zero bytes, so that
/// deleted key bytes (already overwritten in the database file by `secure_delete`) do not linger
/// in it. Waits at most `wait` for readers of older snapshots; returns whether it completed.
fn checkpoint(conn: &Connection, wait: Duration, busy_timeout: Duration) -> Result<bool, KeyError> {
    conn.busy_timeout(wait).map_err(store_err)?;
    // (busy, WAL frames, frames checkpointed): busy = 1 when readers or writers stopped it.
    let result = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    });
    conn.busy_timeout(busy_timeout).map_err(store_err)?;
    match result {
        Ok((0, _, _)) => Ok(true),
        Ok(_) => Ok(false),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(store_err(e)),
    }
}

/// Writes `journal` inside the transaction `tx`: the ledger by compare-and-set (nothing is
/// written and [`KeyError::LedgerMoved`] returned if it moved), then `events` appended to the
/// audit log. The caller commits.
fn write_journal(
    tx: &rusqlite::Transaction<'_>,
    journal: &mut Journal,
    events: &[AuditEvent],
) -> Result<(), KeyError> {
    if let Some(write) = &journal.ledger {
        let stored: Option<Int> = tx
            .query_row("SELECT counter FROM ledger WHERE id = 1", [], |r| r.get(0))
            .optional()
            .map_err(store_err)?;
        if stored.map(|c| c.0) != write.expected_counter {
            return Err(KeyError::LedgerMoved);
        }
        let record = &write.record;
        tx.execute(
            "INSERT INTO ledger (id, counter, body, mac) VALUES (1, ?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET counter = excluded.counter, body = excluded.body,
                 mac = excluded.mac",
            params![
                int(record.counter),
                encode_ledger_body(record),
                record.mac.as_slice()
            ],
        )
        .map_err(store_err)?;
    }
    journal.appended = 0..0;
    if !events.is_empty() {
        let mut prepared = PreparedAppend::new(events)?;
        let first = audit_sqlite::append_in(tx, &mut prepared)?;
        journal.appended = first..first + events.len() as u64;
    }
    Ok(())
}

/// Which tombstone counts a read takes with the ledger.
#[derive(Clone, Copy)]
enum Counts {
    /// None (ring reads).
    None,
    /// One bucket's, through the partial expression index (subject reads).
    Bucket(u16),
    /// Every bucket's (opening the store).
    All,
}

/// The rewrap job's page: live subject rows of ring `?1` wrapped below version `?2`, at most `?3`,
/// in the order of the `(ring, wrapped_by)` index (no sort, and rows already moved to a newer
/// version are never read again).
fn wrapped_below_sql() -> String {
    format!(
        "SELECT {SUBJECT_COLUMNS} FROM subject_keys
         WHERE ring = ?1 AND wrapped_key IS NOT NULL AND wrapped_by < ?2
         ORDER BY wrapped_by LIMIT ?3"
    )
}

fn read_ledger(conn: &Connection, counts: Counts) -> Result<LedgerView, KeyError> {
    let row: Option<(Int, Vec<u8>, Vec<u8>)> = conn
        .prepare_cached("SELECT counter, body, mac FROM ledger WHERE id = 1")
        .and_then(|mut stmt| {
            stmt.query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
        })
        .map_err(store_err)?;
    let tombstones = match counts {
        Counts::None => Vec::new(),
        Counts::Bucket(bucket) => {
            let count: Int = conn
                .prepare_cached(concat!(
                    "SELECT count(*) FROM subject_keys WHERE wrapped_key IS NULL AND ",
                    bucket_sql!(),
                    " = ?1"
                ))
                .and_then(|mut stmt| stmt.query_row([bucket], |r| r.get(0)))
                .map_err(store_err)?;
            vec![(bucket, count.0)]
        }
        Counts::All => {
            let found: Vec<(u16, Int)> = conn
                .prepare_cached(concat!(
                    "SELECT ",
                    bucket_sql!(),
                    ", count(*) FROM subject_keys WHERE wrapped_key IS NULL GROUP BY 1"
                ))
                .and_then(|mut stmt| {
                    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                        .and_then(Iterator::collect)
                })
                .map_err(store_err)?;
            every_bucket(&found.iter().map(|(b, n)| (*b, n.0)).collect::<Vec<_>>())
        }
    };
    Ok(LedgerView {
        ledger: row
            .map(|(counter, body, mac)| decode_ledger(counter.0, &body, &mac))
            .transpose()?,
        tombstones,
    })
}

/// A `u64` stored as SQLite's signed 64-bit INTEGER; values above `i64::MAX` are refused, and a
/// negative stored value reads as an error instead of wrapping around.
#[derive(Clone, Copy)]
struct Int(u64);

impl rusqlite::ToSql for Int {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        i64::try_from(self.0)
            .map(rusqlite::types::ToSqlOutput::from)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
    }
}

impl rusqlite::types::FromSql for Int {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let v = i64::column_result(value)?;
        u64::try_from(v)
            .map(Int)
            .map_err(|_| rusqlite::types::FromSqlError::OutOfRange(v))
    }
}

fn int(v: u64) -> Int {
    Int(v)
}

fn opt_int(v: Option<u64>) -> Option<Int> {
    v.map(Int)
}

fn store_err(e: rusqlite::Error) -> KeyError {
    KeyError::Store(e.to_string())
}

/// Applies the missing migrations in one transaction.
fn migrate(conn: &mut Connection) -> Result<u32, KeyError> {
    // Fast path without a write transaction (and its fsync) when the schema is current.
    let current: Option<u32> = conn
        .query_row("SELECT version FROM schema_version WHERE id = 1", [], |r| {
            r.get(0)
        })
        .optional()
        .unwrap_or(None);
    if current == Some(SCHEMA_VERSION) {
        return Ok(SCHEMA_VERSION);
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(store_err)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
             id      INTEGER PRIMARY KEY CHECK (id = 1),
             version INTEGER NOT NULL
         ) STRICT;",
    )
    .map_err(store_err)?;
    // Read again inside the write transaction: another process may have migrated meanwhile.
    let found: u32 = tx
        .query_row("SELECT version FROM schema_version WHERE id = 1", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(store_err)?
        .unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(KeyError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(sql).map_err(|e| {
            KeyError::Store(format!("migration from schema version {from} failed: {e}"))
        })?;
    }
    audit_sqlite::create_tables(&tx)
        .map_err(|e| KeyError::Store(format!("creating the audit tables failed: {e}")))?;
    tx.execute(
        "INSERT INTO schema_version (id, version) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET version = excluded.version",
        [SCHEMA_VERSION],
    )
    .map_err(store_err)?;
    tx.commit().map_err(store_err)?;
    Ok(SCHEMA_VERSION)
}

// ---- Row mapping. Values that cannot be decoded are reported as tampering. ----

fn mac_of(bytes: Vec<u8>, ring: &str, version: Option<u32>) -> Result<[u8; MAC_LEN], KeyError> {
    bytes
        .try_into()
        .map_err(|_| KeyError::tampered("MAC column has the wrong length", ring, version))
}

struct RawRing {
    name: String,
    generation: u64,
    suite: u8,
    primary_version: u32,
    min_encryption_version: u32,
    min_decryption_version: u32,
    max_age_secs: Option<u64>,
    max_encryptions: u64,
    propagation_secs: u64,
    created_at: u64,
    version_digests: Vec<u8>,
    mac: Vec<u8>,
}

const RING_COLUMNS: &str = "name, generation, suite, primary_version, min_encryption_version, \
    min_decryption_version, max_age_secs, max_encryptions, propagation_secs, created_at, \
    version_digests, mac";

fn raw_ring(r: &Row<'_>) -> rusqlite::Result<RawRing> {
    Ok(RawRing {
        name: r.get(0)?,
        generation: r.get::<_, Int>(1)?.0,
        suite: r.get(2)?,
        primary_version: r.get(3)?,
        min_encryption_version: r.get(4)?,
        min_decryption_version: r.get(5)?,
        max_age_secs: r.get::<_, Option<Int>>(6)?.map(|i| i.0),
        max_encryptions: r.get::<_, Int>(7)?.0,
        propagation_secs: r.get::<_, Int>(8)?.0,
        created_at: r.get::<_, Int>(9)?.0,
        version_digests: r.get(10)?,
        mac: r.get(11)?,
    })
}

impl RawRing {
    fn into_record(self) -> Result<RingRecord, KeyError> {
        let suite = Suite::from_id(self.suite)
            .ok_or_else(|| KeyError::tampered("unknown suite id", &self.name, None))?;
        let versions = decode_digests(&self.version_digests, &self.name)?;
        let mac = mac_of(self.mac, &self.name, None)?;
        Ok(RingRecord {
            generation: self.generation,
            suite,
            primary_version: self.primary_version,
            min_encryption_version: self.min_encryption_version,
            min_decryption_version: self.min_decryption_version,
            policy: RotationPolicy {
                max_age_secs: self.max_age_secs,
                max_encryptions: self.max_encryptions,
                propagation_secs: self.propagation_secs,
            },
            created_at: self.created_at,
            versions,
            mac,
            name: self.name,
        })
    }
}

struct RawVersion {
    ring: String,
    version: u32,
    state: u8,
    wrapped_key: Option<Vec<u8>>,
    created_at: u64,
    superseded_at: Option<u64>,
    usage_reserved: u64,
    mac: Vec<u8>,
}

const VERSION_COLUMNS: &str =
    "ring, version, state, wrapped_key, created_at, superseded_at, usage_reserved, mac";

fn raw_version(r: &Row<'_>) -> rusqlite::Result<RawVersion> {
    Ok(RawVersion {
        ring: r.get(0)?,
        version: r.get(1)?,
        state: r.get(2)?,
        wrapped_key: r.get(3)?,
        created_at: r.get::<_, Int>(4)?.0,
        superseded_at: r.get::<_, Option<Int>>(5)?.map(|i| i.0),
        usage_reserved: r.get::<_, Int>(6)?.0,
        mac: r.get(7)?,
    })
}

impl RawVersion {
    fn into_record(self) -> Result<VersionRecord, KeyError> {
        let state = VersionState::from_code(self.state).ok_or_else(|| {
            KeyError::tampered("unknown version state code", &self.ring, Some(self.version))
        })?;
        let mac = mac_of(self.mac, &self.ring, Some(self.version))?;
        Ok(VersionRecord {
            version: self.version,
            state,
            wrapped_key: self.wrapped_key,
            created_at: self.created_at,
            superseded_at: self.superseded_at,
            usage_reserved: self.usage_reserved,
            mac,
            ring: self.ring,
        })
    }
}

struct RawSubject {
    ring: String,
    subject: String,
    generation: u64,
    wrapped_by: u32,
    wrapped_key: Option<Vec<u8>>,
    created_at: u64,
    erased_at: Option<u64>,
    mac: Vec<u8>,
}

const SUBJECT_COLUMNS: &str =
    "ring, subject, generation, wrapped_by, wrapped_key, created_at, erased_at, mac";

fn raw_subject(r: &Row<'_>) -> rusqlite::Result<RawSubject> {
    Ok(RawSubject {
        ring: r.get(0)?,
        subject: r.get(1)?,
        generation: r.get::<_, Int>(2)?.0,
        wrapped_by: r.get(3)?,
        wrapped_key: r.get(4)?,
        created_at: r.get::<_, Int>(5)?.0,
        erased_at: r.get::<_, Option<Int>>(6)?.map(|i| i.0),
        mac: r.get(7)?,
    })
}

impl RawSubject {
    fn into_record(self) -> Result<SubjectRecord, KeyError> {
        let mac = mac_of(self.mac, &self.ring, Some(self.wrapped_by))?;
        Ok(SubjectRecord {
            subject: self.subject,
            generation: self.generation,
            wrapped_by: self.wrapped_by,
            wrapped_key: self.wrapped_key,
            created_at: self.created_at,
            erased_at: self.erased_at,
            mac,
            ring: self.ring,
        })
    }
}

fn upsert_version(conn: &Connection, v: &VersionRecord) -> Result<(), KeyError> {
    conn.prepare_cached(
        "INSERT INTO ring_versions (ring, version, state, wrapped_key, created_at, superseded_at,
                                    usage_reserved, mac)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (ring, version) DO UPDATE SET
             state = excluded.state, wrapped_key = excluded.wrapped_key,
             created_at = excluded.created_at, superseded_at = excluded.superseded_at,
             usage_reserved = excluded.usage_reserved, mac = excluded.mac",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            v.ring,
            v.version,
            v.state.code(),
            v.wrapped_key,
            int(v.created_at),
            opt_int(v.superseded_at),
            int(v.usage_reserved),
            v.mac.as_slice(),
        ])
    })
    .map_err(store_err)?;
    Ok(())
}

fn ring_params(r: &RingRecord) -> [Box<dyn rusqlite::ToSql + '_>; 12] {
    [
        Box::new(&r.name),
        Box::new(int(r.generation)),
        Box::new(r.suite.id()),
        Box::new(r.primary_version),
        Box::new(r.min_encryption_version),
        Box::new(r.min_decryption_version),
        Box::new(opt_int(r.policy.max_age_secs)),
        Box::new(int(r.policy.max_encryptions)),
        Box::new(int(r.policy.propagation_secs)),
        Box::new(int(r.created_at)),
        Box::new(encode_digests(&r.versions)),
        Box::new(r.mac.as_slice()),
    ]
}

impl KeyStore for SqliteKeyStore {
    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, KeyError> {
        self.with_conn(|conn| {
            conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
                .map_err(store_err)
        })
    }

    fn put_meta_if_absent(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.with_conn(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(store_err)?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
                params![key, value],
            )
            .map_err(store_err)?;
            let stored: Vec<u8> = tx
                .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .map_err(store_err)?;
            tx.commit().map_err(store_err)?;
            Ok(stored)
        })
    }

    fn load_ledger(&self) -> Result<LedgerView, KeyError> {
        self.with_conn(|conn| {
            let tx = conn.transaction().map_err(store_err)?;
            let view = read_ledger(&tx, Counts::All)?;
            tx.commit().map_err(store_err)?;
            Ok(view)
        })
    }

    fn init_ledger(
        &self,
        ledger: &LedgerRecord,
        meta: (&str, &[u8]),
        retire: &str,
    ) -> Result<bool, KeyError> {
        self.with_conn(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(store_err)?;
            let inserted = tx
                .execute(
                    "INSERT INTO ledger (id, counter, body, mac) VALUES (1, ?1, ?2, ?3)
                     ON CONFLICT (id) DO NOTHING",
                    params![
                        int(ledger.counter),
                        encode_ledger_body(ledger),
                        ledger.mac.as_slice()
                    ],
                )
                .map_err(store_err)?;
            if inserted == 0 {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![meta.0, meta.1],
            )
            .map_err(store_err)?;
            tx.execute("DELETE FROM meta WHERE key = ?1", [retire])
                .map_err(store_err)?;
            tx.commit().map_err(store_err)?;
            Ok(true)
        })
    }

    fn ring_names(&self) -> Result<Vec<String>, KeyError> {
        self.with_conn(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT name FROM rings ORDER BY name")
                .map_err(store_err)?;
            let names = stmt
                .query_map([], |r| r.get(0))
                .and_then(Iterator::collect)
                .map_err(store_err)?;
            Ok(names)
        })
    }

    fn load_ring(&self, name: &str) -> Result<RingView, KeyError> {
        self.with_conn(|conn| {
            // One read transaction: the ring row, its versions and the ledger come from the same
            // snapshot.
            let tx = conn.transaction().map_err(store_err)?;
            let ledger = read_ledger(&tx, Counts::None)?;
            let raw = tx
                .prepare_cached(&format!("SELECT {RING_COLUMNS} FROM rings WHERE name = ?1"))
                .and_then(|mut stmt| stmt.query_row([name], raw_ring).optional())
                .map_err(store_err)?;
            let Some(raw) = raw else {
                return Ok(RingView { rows: None, ledger });
            };
            let versions: Vec<RawVersion> = tx
                .prepare_cached(&format!(
                    "SELECT {VERSION_COLUMNS} FROM ring_versions WHERE ring = ?1 ORDER BY version"
                ))
                .and_then(|mut stmt| {
                    stmt.query_map([name], raw_version)
                        .and_then(Iterator::collect)
                })
                .map_err(store_err)?;
            tx.commit().map_err(store_err)?;
            Ok(RingView {
                rows: Some(RingRows {
                    ring: raw.into_record()?,
                    versions: versions
                        .into_iter()
                        .map(RawVersion::into_record)
                        .collect::<Result<_, _>>()?,
                }),
                ledger,
            })
        })
    }

    fn create_ring(&self, rows: &RingRows, journal: &mut Journal) -> Result<bool, KeyError> {
        self.with_conn(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(store_err)?;
            let params = ring_params(&rows.ring);
            let inserted = tx
                .execute(
                    &format!(
                        "INSERT INTO rings ({RING_COLUMNS})
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                         ON CONFLICT (name) DO NOTHING"
                    ),
                    rusqlite::params_from_iter(params.iter()),
                )
                .map_err(store_err)?;
            if inserted == 0 {
                return Ok(false);
            }
            for v in &rows.versions {
                upsert_version(&tx, v)?;
            }
            let events = journal.audit.clone();
            write_journal(&tx, journal, &events)?;
            tx.commit().map_err(store_err)?;
            Ok(true)
        })
    }

    fn commit_ring(&self, change: &mut RingChange) -> Result<CommitOutcome, KeyError> {
        self.with_conn(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(store_err)?;
            let r = &change.ring;
            if let Some(below) = change.require_no_subject_keys_below {
                let count: Int = tx
                    .query_row(
                        "SELECT count(*) FROM subject_keys
                         WHERE ring = ?1 AND wrapped_key IS NOT NULL AND wrapped_by < ?2",
                        params![r.name, below],
                        |row| row.get(0),
                    )
                    .map_err(store_err)?;
                if count.0 > 0 {
                    return Ok(CommitOutcome::SubjectKeysDepend(count.0));
                }
            }
            let mut params = ring_params(r).into_iter().collect::<Vec<_>>();
            params.push(Box::new(int(change.expected_generation)));
            let updated = tx
                .execute(
                    // `name` is the key the subject rows refer to: setting it, even to itself,
                    // makes SQLite check the foreign key against every subject row of the ring,
                    // which made a rotation linear in the number of customers.
                    "UPDATE rings SET generation = ?2, suite = ?3, primary_version = ?4,
                         min_encryption_version = ?5, min_decryption_version = ?6,
                         max_age_secs = ?7, max_encryptions = ?8, propagation_secs = ?9,
                         created_at = ?10, version_digests = ?11, mac = ?12
                     WHERE name = ?1 AND generation = ?13",
                    rusqlite::params_from_iter(params.iter()),
                )
                .map_err(store_err)?;
            if updated == 0 {
                return Ok(CommitOutcome::Conflict);
            }
            for v in &change.versions {
                upsert_version(&tx, v)?;
            }
            announce(&tx, &r.name, None)?;
            let events = change.journal.audit.clone();
            write_journal(&tx, &mut change.journal, &events)?;
            tx.commit().map_err(store_err)?;
            Ok(CommitOutcome::Committed)
        })
    }

    fn load_subject(&self, ring: &str, subject: &str) -> Result<SubjectView, KeyError> {
        let (raw, ledger) = self.with_conn(|conn| {
            let tx = conn.transaction().map_err(store_err)?;
            let raw = tx
                .prepare_cached(&format!(
                    "SELECT {SUBJECT_COLUMNS} FROM subject_keys WHERE ring = ?1 AND subject = ?2
                     ORDER BY generation DESC LIMIT 1"
                ))
                .and_then(|mut stmt| stmt.query_row([ring, subject], raw_subject).optional())
                .map_err(store_err)?;
            let ledger = read_ledger(&tx, Counts::Bucket(tombstone_bucket(subject)))?;
            tx.commit().map_err(store_err)?;
            Ok((raw, ledger))
        })?;
        Ok(SubjectView {
            row: raw.map(RawSubject::into_record).transpose()?,
            ledger,
        })
    }

    fn subject_history(&self, ring: &str, subject: &str) -> Result<Vec<SubjectRecord>, KeyError> {
        let raw: Vec<RawSubject> = self.with_conn(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {SUBJECT_COLUMNS} FROM subject_keys WHERE ring = ?1 AND subject = ?2
                 ORDER BY generation"
            ))
            .and_then(|mut stmt| {
                stmt.query_map([ring, subject], raw_subject)
                    .and_then(Iterator::collect)
            })
            .map_err(store_err)
        })?;
        raw.into_iter().map(RawSubject::into_record).collect()
    }

    fn insert_subjects(
        &self,
        rows: &[SubjectRecord],
        journal: &mut Journal,
    ) -> Result<Vec<bool>, KeyError> {
        self.with_conn(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(store_err)?;
            let mut inserted = Vec::with_capacity(rows.len());
            {
                let mut stmt = tx
                    .prepare_cached(&format!(
                        "INSERT INTO subject_keys ({SUBJECT_COLUMNS})
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                         ON CONFLICT (ring, subject, generation) DO NOTHING"
                    ))
                    .map_err(store_err)?;
                for s in rows {
                    let n = stmt
                        .execute(params![
                            s.ring,
                            s.subject,
                            int(s.generation),
                            s.wrapped_by,
                            s.wrapped_key,
                            int(s.created_at),
                            opt_int(s.erased_at),
                            s.mac.as_slice(),
                        ])
                        .map_err(store_err)?;
                    inserted.push(n == 1);
                }
            }
            for (row, _) in rows
                .iter()
                .zip(&inserted)
                .filter(|(row, new)| **new && announces_change(row))
            {
                announce(&tx, &row.ring, Some(&row.subject))?;
            }
            let events = events_of_inserted(&journal.audit, &inserted);
            write_journal(&tx, journal, &events)?;
            tx.commit().map_err(store_err)?;
            Ok(inserted)
        })
    }

    fn rewrap_subjects(&self, rows: &[(SubjectRecord, u32)]) -> Result<Vec<bool>, KeyError> {
        self.with_conn(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(store_err)?;
            let mut done = Vec::with_capacity(rows.len());
            {
                let mut stmt = tx
                    .prepare_cached(
                        "UPDATE subject_keys SET wrapped_by = ?1, wrapped_key = ?2, mac = ?3
                         WHERE ring = ?4 AND subject = ?5 AND generation = ?6
                           AND wrapped_by = ?7 AND wrapped_key IS NOT NULL",
                    )
                    .map_err(store_err)?;
                for (row, expected_wrapped_by) in rows {
                    let n = stmt
                        .execute(params![
                            row.wrapped_by,
                            row.wrapped_key,
                            row.mac.as_slice(),
                            row.ring,
                            row.subject,
                            int(row.generation),
                            expected_wrapped_by,
                        ])
                        .map_err(store_err)?;
                    done.push(n == 1);
                }
            }
            tx.commit().map_err(store_err)?;
            Ok(done)
        })
    }

    fn erase_subject(
        &self,
        tombstone: &SubjectRecord,
        journal: &mut Journal,
    ) -> Result<bool, KeyError> {
        self.with_conn(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(store_err)?;
            let n = tx
                .prepare_cached(
                    "UPDATE subject_keys SET wrapped_by = ?1, wrapped_key = NULL, erased_at = ?2,
                         mac = ?3
                     WHERE ring = ?4 AND subject = ?5 AND generation = ?6
                       AND wrapped_key IS NOT NULL",
                )
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        tombstone.wrapped_by,
                        opt_int(tombstone.erased_at),
                        tombstone.mac.as_slice(),
                        tombstone.ring,
                        tombstone.subject,
                        int(tombstone.generation),
                    ])
                })
                .map_err(store_err)?;
            if n == 0 {
                return Ok(false);
            }
            announce(&tx, &tombstone.ring, Some(&tombstone.subject))?;
            let events = journal.audit.clone();
            write_journal(&tx, journal, &events)?;
            tx.commit().map_err(store_err)?;
            Ok(true)
        })
    }

    fn purge(&self, wait: Duration) -> Result<bool, KeyError> {
        self.with_conn(|conn| checkpoint(conn, wait, self.pool.busy_timeout()))
    }

    fn subjects_wrapped_below(
        &self,
        ring: &str,
        version: u32,
        limit: usize,
    ) -> Result<Vec<SubjectRecord>, KeyError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let raw: Vec<RawSubject> = self.with_conn(|conn| {
            conn.prepare_cached(&wrapped_below_sql())
                .and_then(|mut stmt| {
                    stmt.query_map(params![ring, version, limit], raw_subject)
                        .and_then(Iterator::collect)
                })
                .map_err(store_err)
        })?;
        raw.into_iter().map(RawSubject::into_record).collect()
    }

    fn count_subjects_wrapped_below(&self, ring: &str, version: u32) -> Result<u64, KeyError> {
        let count: Int = self.with_conn(|conn| {
            conn.prepare_cached(
                "SELECT count(*) FROM subject_keys
                 WHERE ring = ?1 AND wrapped_key IS NOT NULL AND wrapped_by < ?2",
            )
            .and_then(|mut stmt| stmt.query_row(params![ring, version], |r| r.get(0)))
            .map_err(store_err)
        })?;
        Ok(count.0)
    }

    fn changes_since(&self, after: u64, limit: usize) -> Result<ChangeFeed, KeyError> {
        self.with_conn(|conn| {
            // One read transaction: the bounds and the entries come from one snapshot.
            let tx = conn.transaction().map_err(store_err)?;
            let (oldest, latest): (Option<Int>, Option<Int>) = tx
                .query_row("SELECT min(seq), max(seq) FROM changes", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(store_err)?;
            let latest = latest.map_or(0, |v| v.0);
            if after >= latest {
                return Ok(ChangeFeed {
                    latest,
                    changes: Vec::new(),
                    complete: true,
                });
            }
            let oldest = oldest.map_or(latest, |v| v.0);
            let wanted = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
            let changes: Vec<Change> = tx
                .prepare_cached(
                    "SELECT seq, ring, subject FROM changes WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )
                .and_then(|mut stmt| {
                    stmt.query_map(params![int(after), wanted], |r| {
                        Ok(Change {
                            seq: r.get::<_, Int>(0)?.0,
                            ring: r.get(1)?,
                            subject: r.get(2)?,
                        })
                    })
                    .and_then(Iterator::collect)
                })
                .map_err(store_err)?;
            // Entries are never skipped, so a gap before the oldest kept one means pruning.
            let complete = after.saturating_add(1) >= oldest && changes.len() <= limit;
            Ok(ChangeFeed {
                latest,
                changes: if complete { changes } else { Vec::new() },
                complete,
            })
        })
    }
}

/// Appends a change-feed entry inside the transaction `tx`, and prunes entries beyond the
/// retention.
fn announce(
    tx: &rusqlite::Transaction<'_>,
    ring: &str,
    subject: Option<&str>,
) -> Result<(), KeyError> {
    tx.prepare_cached("INSERT INTO changes (ring, subject) VALUES (?1, ?2)")
        .and_then(|mut stmt| stmt.execute(params![ring, subject]))
        .map_err(store_err)?;
    let seq = tx.last_insert_rowid();
    tx.prepare_cached("DELETE FROM changes WHERE seq <= ?1")
        .and_then(|mut stmt| {
            stmt.execute([
                seq.saturating_sub(i64::try_from(CHANGE_FEED_RETENTION).unwrap_or(i64::MAX))
            ])
        })
        .map_err(store_err)?;
    Ok(())
}

impl AuditStore for SqliteKeyStore {
    fn tree_size(&self) -> Result<u64, AuditError> {
        self.audit_store().tree_size()
    }

    fn append(&self, build: &mut BuildAppend<'_>) -> Result<u64, AuditError> {
        self.audit_store().append(build)
    }

    fn read_entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, AuditError> {
        self.audit_store().read_entries(start, end)
    }

    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, AuditError> {
        self.audit_store().read_hashes(indexes)
    }
}

impl fmt::Debug for SqliteKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteKeyStore")
            .field("path", &self.path())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::store::VersionDigest;

    #[test]
    fn migrates_once_and_refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.db");
        SqliteKeyStore::open(&path).unwrap();
        // Opening again is a no-op migration.
        let store = SqliteKeyStore::open(&path).unwrap();
        assert!(store.ring_names().unwrap().is_empty());
        let conn = Connection::open(&path).unwrap();
        let version: u32 = conn
            .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        conn.execute("UPDATE schema_version SET version = 99", [])
            .unwrap();
        match SqliteKeyStore::open(&path) {
            Err(KeyError::SchemaTooNew {
                found: 99,
                supported,
            }) => {
                assert_eq!(supported, SCHEMA_VERSION)
            }
            other => panic!("{other:?}"),
        }
    }

    /// Counting one bucket's tombstones reads the partial expression index, not the table: a
    /// subject read costs O(tombstones / 256), not O(tombstones).
    #[test]
    fn the_bucket_count_uses_the_tombstone_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteKeyStore::open(dir.path().join("keys.db")).unwrap();
        store
            .with_conn(|conn| {
                let plan: Vec<String> = conn
                    .prepare(concat!(
                        "EXPLAIN QUERY PLAN SELECT count(*) FROM subject_keys ",
                        "WHERE wrapped_key IS NULL AND ",
                        bucket_sql!(),
                        " = 7"
                    ))
                    .unwrap()
                    .query_map([], |r| r.get::<_, String>(3))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                assert!(
                    plan.iter()
                        .any(|step| step.contains("subject_keys_tombstones")),
                    "{plan:?}"
                );
                Ok(())
            })
            .unwrap();
    }

    /// The rewrap job's page query walks the `(ring, wrapped_by)` index in its own order: no sort,
    /// no scan of the rows already rewrapped (before, ordering by subject made each batch scan
    /// them all, and a million-key rewrap took minutes instead of seconds).
    #[test]
    fn the_rewrap_page_reads_the_wrapping_version_index_without_sorting() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteKeyStore::open(dir.path().join("keys.db")).unwrap();
        store
            .with_conn(|conn| {
                let plan: Vec<String> = conn
                    .prepare(&format!("EXPLAIN QUERY PLAN {}", wrapped_below_sql()))
                    .unwrap()
                    .query_map(params!["r", 3, 1_000], |r| r.get::<_, String>(3))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                assert!(
                    plan.iter()
                        .any(|step| step.contains("subject_keys_by_wrapping_version")),
                    "{plan:?}"
                );
                assert!(
                    !plan.iter().any(|step| step.contains("TEMP B-TREE")),
                    "{plan:?}"
                );
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn digests_round_trip_and_reject_garbage() {
        let digests = vec![
            VersionDigest {
                version: 1,
                state: VersionState::Disabled,
                mac: [7; 32],
            },
            VersionDigest {
                version: 2,
                state: VersionState::Active,
                mac: [9; 32],
            },
        ];
        let bytes = encode_digests(&digests);
        assert_eq!(decode_digests(&bytes, "r").unwrap(), digests);
        assert!(decode_digests(&bytes[1..], "r").is_err());
        let mut bad_state = bytes.clone();
        bad_state[4] = 9;
        assert!(decode_digests(&bad_state, "r").is_err());
    }
}
