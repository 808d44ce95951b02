//! The [`KeyStore`] shared by several application servers: PostgreSQL through sqlx (feature
//! `postgres`), with the rows, row MACs and compare-and-set semantics of the SQLite store.
//!
//! Every multi-row change is one transaction at PostgreSQL's default isolation (READ COMMITTED).
//! Compare-and-set is `UPDATE ... WHERE` on the expected values: a concurrent writer of the same
//! row waits for the first to commit, then re-checks the condition against the committed row, so
//! exactly one wins. The one check that spans rows, "no live subject key of this ring below
//! version m" before a ring change that disables or destroys versions, is made race-free by
//! advisory locks (see [`PgKeyStore::commit_ring`]'s comments).

use super::KeyError;
use super::ring::{RotationPolicy, VersionState};
use super::store::{
    CHANGE_FEED_RETENTION, Change, ChangeFeed, CommitOutcome, Journal, KeyStore, LedgerRecord,
    LedgerView, LedgerWrite, MAC_LEN, RingChange, RingRecord, RingRows, RingView, SubjectRecord,
    SubjectView, VersionRecord, announces_change, decode_digests, decode_ledger, encode_digests,
    encode_ledger_body, events_of_inserted, every_bucket, tombstone_bucket,
};
use crate::audit::{
    AuditError, AuditEvent, AuditStore, BuildAppend, Hash, PgAuditStore, PreparedAppend,
    postgres as audit_pg,
};
use crate::crypto::Suite;
use crate::postgres::{LOCK_CLASS_FEED, Postgres, PostgresError, bigint, classify, ring_lock_key};
use core::fmt;
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{Postgres as Pg, Transaction};
use std::collections::{BTreeSet, HashMap};
use std::ops::Range;

/// A key store in PostgreSQL tables prefixed `custodian_` (schema in `docs/KEYSTORE.md`).
///
/// Cheap to clone: clones share the [`Postgres`] handle. The methods are synchronous and wait for
/// the server at most for the handle's timeout; never call them on a tokio worker thread (see
/// [`crate::postgres`]).
#[derive(Clone)]
pub struct PgKeyStore {
    pg: Postgres,
}

impl PgKeyStore {
    /// A store on `pg`, after creating or upgrading custodian's tables
    /// ([`Postgres::migrate_blocking`]; no query at all if this handle has migrated already, for
    /// example through [`Postgres::migrate`] from async code).
    pub fn open(pg: Postgres) -> Result<Self, KeyError> {
        pg.migrate_blocking()?;
        Ok(Self { pg })
    }

    /// The PostgreSQL handle.
    pub fn postgres(&self) -> &Postgres {
        &self.pg
    }

    /// Runs `task` with a clone of the pool on the handle's runtime (see [`Postgres::run`]).
    fn run<T, F, Fut>(&self, what: String, task: F) -> Result<T, KeyError>
    where
        T: Send + 'static,
        F: FnOnce(PgPool, String) -> Fut,
        Fut: Future<Output = Result<T, PostgresError>> + Send + 'static,
    {
        let future = task(self.pg.pool().clone(), what.clone());
        Ok(self.pg.run(&what, future)?)
    }
}

// ---- Rows as bound parameters: owned (the query runs in a spawned task) and range-checked. ----

struct RingParams {
    name: String,
    generation: i64,
    suite: i16,
    primary_version: i64,
    min_encryption_version: i64,
    min_decryption_version: i64,
    max_age_secs: Option<i64>,
    max_encryptions: i64,
    propagation_secs: i64,
    created_at: i64,
    version_digests: Vec<u8>,
    mac: Vec<u8>,
}

impl RingParams {
    fn new(r: &RingRecord) -> Result<Self, PostgresError> {
        Ok(Self {
            name: r.name.clone(),
            generation: bigint("ring generation", r.generation)?,
            suite: i16::from(r.suite.id()),
            primary_version: i64::from(r.primary_version),
            min_encryption_version: i64::from(r.min_encryption_version),
            min_decryption_version: i64::from(r.min_decryption_version),
            max_age_secs: r
                .policy
                .max_age_secs
                .map(|v| bigint("max_age_secs", v))
                .transpose()?,
            max_encryptions: bigint("max_encryptions", r.policy.max_encryptions)?,
            propagation_secs: bigint("propagation_secs", r.policy.propagation_secs)?,
            created_at: bigint("ring created_at", r.created_at)?,
            version_digests: encode_digests(&r.versions),
            mac: r.mac.to_vec(),
        })
    }
}

struct VersionParams {
    ring: String,
    version: i64,
    state: i16,
    wrapped_key: Option<Vec<u8>>,
    created_at: i64,
    superseded_at: Option<i64>,
    usage_reserved: i64,
    mac: Vec<u8>,
}

impl VersionParams {
    fn new(v: &VersionRecord) -> Result<Self, PostgresError> {
        Ok(Self {
            ring: v.ring.clone(),
            version: i64::from(v.version),
            state: i16::from(v.state.code()),
            wrapped_key: v.wrapped_key.clone(),
            created_at: bigint("version created_at", v.created_at)?,
            superseded_at: v
                .superseded_at
                .map(|t| bigint("superseded_at", t))
                .transpose()?,
            usage_reserved: bigint("usage_reserved", v.usage_reserved)?,
            mac: v.mac.to_vec(),
        })
    }

    fn all(versions: &[VersionRecord]) -> Result<Vec<Self>, PostgresError> {
        versions.iter().map(Self::new).collect()
    }
}

/// Subject rows as parallel arrays, for `UNNEST`.
#[derive(Default)]
struct SubjectColumns {
    ring: Vec<String>,
    subject: Vec<String>,
    generation: Vec<i64>,
    wrapped_by: Vec<i64>,
    wrapped_key: Vec<Option<Vec<u8>>>,
    created_at: Vec<i64>,
    erased_at: Vec<Option<i64>>,
    mac: Vec<Vec<u8>>,
}

impl SubjectColumns {
    fn new(rows: &[SubjectRecord]) -> Result<Self, PostgresError> {
        let mut c = Self::default();
        for s in rows {
            c.ring.push(s.ring.clone());
            c.subject.push(s.subject.clone());
            c.generation
                .push(bigint("subject generation", s.generation)?);
            c.wrapped_by.push(i64::from(s.wrapped_by));
            c.wrapped_key.push(s.wrapped_key.clone());
            c.created_at
                .push(bigint("subject created_at", s.created_at)?);
            c.erased_at
                .push(s.erased_at.map(|t| bigint("erased_at", t)).transpose()?);
            c.mac.push(s.mac.to_vec());
        }
        Ok(c)
    }
}

async fn upsert_versions(
    tx: &mut Transaction<'static, Pg>,
    versions: &[VersionParams],
    what: &str,
) -> Result<(), PostgresError> {
    for v in versions {
        sqlx::query(
            "INSERT INTO custodian_ring_versions
                 (ring, version, state, wrapped_key, created_at, superseded_at, usage_reserved, mac)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (ring, version) DO UPDATE SET
                 state = excluded.state, wrapped_key = excluded.wrapped_key,
                 created_at = excluded.created_at, superseded_at = excluded.superseded_at,
                 usage_reserved = excluded.usage_reserved, mac = excluded.mac",
        )
        .bind(&v.ring)
        .bind(v.version)
        .bind(v.state)
        .bind(&v.wrapped_key)
        .bind(v.created_at)
        .bind(v.superseded_at)
        .bind(v.usage_reserved)
        .bind(&v.mac)
        .execute(&mut **tx)
        .await
        .map_err(|e| classify(what, e))?;
    }
    Ok(())
}

/// Takes the shared advisory lock of each ring (in key order), held until the transaction ends.
/// Subject writers take it shared; a ring change that checks subject keys takes it exclusively.
async fn lock_rings_shared(
    tx: &mut Transaction<'static, Pg>,
    rings: &[String],
    what: &str,
) -> Result<(), PostgresError> {
    let keys: BTreeSet<(i32, i32)> = rings.iter().map(|r| ring_lock_key(r)).collect();
    for (class, key) in keys {
        sqlx::query("SELECT pg_advisory_xact_lock_shared($1, $2)")
            .bind(class)
            .bind(key)
            .execute(&mut **tx)
            .await
            .map_err(|e| classify(what, e))?;
    }
    Ok(())
}

/// Appends change-feed entries, as the last statements of the transaction, and prunes entries
/// beyond the retention.
///
/// An identity column is assigned when a row is inserted, not when it commits: two writers could
/// commit their entries out of order, and a reader that had already moved past the later one
/// would never see the earlier. So every writer appends under one advisory lock held until it
/// commits; a commit is visible before its locks are released, hence whoever sees an entry also
/// sees every entry below it. The lock serialises only the end of announcing transactions (ring
/// changes, erasures, re-creations), which are rare next to reads.
async fn announce(
    tx: &mut Transaction<'static, Pg>,
    entries: &[(String, Option<String>)],
    what: &str,
) -> Result<(), PostgresError> {
    if entries.is_empty() {
        return Ok(());
    }
    let (rings, subjects): (Vec<&str>, Vec<Option<&str>>) = entries
        .iter()
        .map(|(ring, subject)| (ring.as_str(), subject.as_deref()))
        .unzip();
    sqlx::query("SELECT pg_advisory_xact_lock($1, 0)")
        .bind(LOCK_CLASS_FEED)
        .execute(&mut **tx)
        .await
        .map_err(|e| classify(what, e))?;
    sqlx::query(
        "INSERT INTO custodian_changes (ring, subject)
         SELECT * FROM UNNEST($1::text[], $2::text[])",
    )
    .bind(rings)
    .bind(subjects)
    .execute(&mut **tx)
    .await
    .map_err(|e| classify(what, e))?;
    sqlx::query(
        "DELETE FROM custodian_changes
         WHERE seq <= (SELECT max(seq) FROM custodian_changes) - $1",
    )
    .bind(bigint("change feed retention", CHANGE_FEED_RETENTION)?)
    .execute(&mut **tx)
    .await
    .map_err(|e| classify(what, e))?;
    Ok(())
}

/// Which tombstone counts a read takes with the ledger: none (ring reads), one bucket's
/// (subject reads) or every bucket's (`None`: opening the store).
#[derive(Clone, Copy)]
enum Counts {
    None,
    Bucket(i32),
    All,
}

/// The ledger row as stored, and the tombstone counts, from one snapshot.
type RawLedger = (Option<(i64, Vec<u8>, Vec<u8>)>, Vec<(i32, i64)>);

async fn read_ledger(
    conn: &mut PgConnection,
    counts: Counts,
    what: &str,
) -> Result<RawLedger, PostgresError> {
    let row: Option<(i64, Vec<u8>, Vec<u8>)> =
        sqlx::query_as("SELECT counter, body, mac FROM custodian_ledger WHERE id = 1")
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| classify(what, e))?;
    let tombstones = match counts {
        Counts::None => Vec::new(),
        Counts::Bucket(bucket) => {
            let count: i64 = sqlx::query_scalar(concat!(
                "SELECT count(*) FROM custodian_subject_keys WHERE wrapped_key IS NULL AND ",
                crate::postgres::bucket_sql!(),
                " = $1"
            ))
            .bind(bucket)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| classify(what, e))?;
            vec![(bucket, count)]
        }
        Counts::All => sqlx::query_as(concat!(
            "SELECT ",
            crate::postgres::bucket_sql!(),
            ", count(*) FROM custodian_subject_keys WHERE wrapped_key IS NULL GROUP BY 1"
        ))
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| classify(what, e))?,
    };
    Ok((row, tombstones))
}

fn ledger_view((row, found): RawLedger, all: bool) -> Result<LedgerView, KeyError> {
    let bad = || KeyError::tampered("negative ledger counter or tombstone count", "", None);
    let mut tombstones = found
        .into_iter()
        .map(|(bucket, count)| {
            Ok((
                u16::try_from(bucket).map_err(|_| bad())?,
                u64::try_from(count).map_err(|_| bad())?,
            ))
        })
        .collect::<Result<Vec<_>, KeyError>>()?;
    if all {
        tombstones = every_bucket(&tombstones);
    }
    Ok(LedgerView {
        ledger: row
            .map(|(counter, body, mac)| {
                decode_ledger(u64::try_from(counter).map_err(|_| bad())?, &body, &mac)
            })
            .transpose()?,
        tombstones,
    })
}

/// A ledger write as bound parameters.
struct LedgerParams {
    expected: Option<i64>,
    counter: i64,
    body: Vec<u8>,
    mac: Vec<u8>,
}

impl LedgerParams {
    fn new(write: Option<&LedgerWrite>) -> Result<Option<Self>, PostgresError> {
        write
            .map(|w| {
                Ok(Self {
                    expected: w
                        .expected_counter
                        .map(|c| bigint("ledger counter", c))
                        .transpose()?,
                    counter: bigint("ledger counter", w.record.counter)?,
                    body: encode_ledger_body(&w.record),
                    mac: w.record.mac.to_vec(),
                })
            })
            .transpose()
    }
}

/// Why a journaled write wrote nothing, decided inside its transaction (which is then dropped,
/// so rolled back).
enum Refused {
    LedgerMoved,
    Audit(AuditError),
}

impl From<Refused> for KeyError {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::LedgerMoved => KeyError::LedgerMoved,
            Refused::Audit(e) => KeyError::Audit(e),
        }
    }
}

/// The answer of a journaled write that inserts or erases one row: `Some(appended)` if it wrote
/// (recorded in `journal`), `None` if the row's condition failed and nothing was written.
fn settle(
    journal: &mut Journal,
    written: Result<Option<Range<u64>>, Refused>,
) -> Result<bool, KeyError> {
    match written? {
        Some(appended) => {
            journal.appended = appended;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Writes a journal inside `tx`, as its last statements: the ledger by compare-and-set (the row
/// is locked `FOR UPDATE`, so a concurrent writer waits and then sees this one's counter), then
/// the audit entries under the audit log's lock. Lock order everywhere: ring locks, the feed
/// lock, the ledger row, the audit lock. Returns the audit indexes appended.
async fn write_journal(
    tx: &mut Transaction<'static, Pg>,
    ledger: Option<LedgerParams>,
    events: Vec<AuditEvent>,
    what: &str,
) -> Result<Result<Range<u64>, Refused>, PostgresError> {
    if let Some(ledger) = ledger {
        let stored: Option<i64> =
            sqlx::query_scalar("SELECT counter FROM custodian_ledger WHERE id = 1 FOR UPDATE")
                .fetch_optional(&mut **tx)
                .await
                .map_err(|e| classify(what, e))?;
        if stored != ledger.expected {
            return Ok(Err(Refused::LedgerMoved));
        }
        sqlx::query(
            "INSERT INTO custodian_ledger (id, counter, body, mac) VALUES (1, $1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET counter = excluded.counter, body = excluded.body,
                 mac = excluded.mac",
        )
        .bind(ledger.counter)
        .bind(ledger.body)
        .bind(ledger.mac)
        .execute(&mut **tx)
        .await
        .map_err(|e| classify(what, e))?;
    }
    if events.is_empty() {
        return Ok(Ok(0..0));
    }
    let mut prepared = match PreparedAppend::new(&events) {
        Ok(prepared) => prepared,
        Err(e) => return Ok(Err(Refused::Audit(e))),
    };
    match audit_pg::append_in(tx, &mut prepared).await {
        Ok(first) => Ok(Ok(first..first + events.len() as u64)),
        Err(e) => Ok(Err(Refused::Audit(e))),
    }
}

// ---- Rows read back. Values that cannot be decoded are reported as tampering. ----

type RingRow = (
    String,
    i64,
    i16,
    i64,
    i64,
    i64,
    Option<i64>,
    i64,
    i64,
    i64,
    Vec<u8>,
    Vec<u8>,
);
type VersionRow = (
    String,
    i64,
    i16,
    Option<Vec<u8>>,
    i64,
    Option<i64>,
    i64,
    Vec<u8>,
);
type SubjectRow = (
    String,
    String,
    i64,
    i64,
    Option<Vec<u8>>,
    i64,
    Option<i64>,
    Vec<u8>,
);

fn unsigned(value: i64, ring: &str, version: Option<u32>) -> Result<u64, KeyError> {
    u64::try_from(value).map_err(|_| KeyError::tampered("negative integer column", ring, version))
}

fn unsigned32(value: i64, ring: &str, version: Option<u32>) -> Result<u32, KeyError> {
    u32::try_from(value)
        .map_err(|_| KeyError::tampered("version number out of range", ring, version))
}

fn code(value: i16, what: &'static str, ring: &str, version: Option<u32>) -> Result<u8, KeyError> {
    u8::try_from(value).map_err(|_| KeyError::tampered(what, ring, version))
}

fn mac_of(bytes: Vec<u8>, ring: &str, version: Option<u32>) -> Result<[u8; MAC_LEN], KeyError> {
    bytes
        .try_into()
        .map_err(|_| KeyError::tampered("MAC column has the wrong length", ring, version))
}

fn ring_record(row: RingRow) -> Result<RingRecord, KeyError> {
    let (
        name,
        generation,
        suite,
        primary,
        min_enc,
        min_dec,
        max_age,
        max_enc,
        prop,
        created,
        digests,
        mac,
    ) = row;
    let n = name.as_str();
    let suite = Suite::from_id(code(suite, "unknown suite id", n, None)?)
        .ok_or_else(|| KeyError::tampered("unknown suite id", n, None))?;
    Ok(RingRecord {
        generation: unsigned(generation, n, None)?,
        suite,
        primary_version: unsigned32(primary, n, None)?,
        min_encryption_version: unsigned32(min_enc, n, None)?,
        min_decryption_version: unsigned32(min_dec, n, None)?,
        policy: RotationPolicy {
            max_age_secs: max_age.map(|v| unsigned(v, n, None)).transpose()?,
            max_encryptions: unsigned(max_enc, n, None)?,
            propagation_secs: unsigned(prop, n, None)?,
        },
        created_at: unsigned(created, n, None)?,
        versions: decode_digests(&digests, n)?,
        mac: mac_of(mac, n, None)?,
        name,
    })
}

fn version_record(row: VersionRow) -> Result<VersionRecord, KeyError> {
    let (ring, version, state, wrapped_key, created_at, superseded_at, usage, mac) = row;
    let version = unsigned32(version, &ring, None)?;
    let v = Some(version);
    let state = VersionState::from_code(code(state, "unknown version state code", &ring, v)?)
        .ok_or_else(|| KeyError::tampered("unknown version state code", &ring, v))?;
    Ok(VersionRecord {
        version,
        state,
        wrapped_key,
        created_at: unsigned(created_at, &ring, v)?,
        superseded_at: superseded_at.map(|t| unsigned(t, &ring, v)).transpose()?,
        usage_reserved: unsigned(usage, &ring, v)?,
        mac: mac_of(mac, &ring, v)?,
        ring,
    })
}

fn subject_record(row: SubjectRow) -> Result<SubjectRecord, KeyError> {
    let (ring, subject, generation, wrapped_by, wrapped_key, created_at, erased_at, mac) = row;
    let wrapped_by = unsigned32(wrapped_by, &ring, None)?;
    let v = Some(wrapped_by);
    Ok(SubjectRecord {
        generation: unsigned(generation, &ring, v)?,
        wrapped_by,
        wrapped_key,
        created_at: unsigned(created_at, &ring, v)?,
        erased_at: erased_at.map(|t| unsigned(t, &ring, v)).transpose()?,
        mac: mac_of(mac, &ring, v)?,
        subject,
        ring,
    })
}

const SELECT_RING: &str = "SELECT name, generation, suite, primary_version, \
    min_encryption_version, min_decryption_version, max_age_secs, max_encryptions, \
    propagation_secs, created_at, version_digests, mac FROM custodian_rings WHERE name = $1";
const SELECT_VERSIONS: &str = "SELECT ring, version, state, wrapped_key, created_at, \
    superseded_at, usage_reserved, mac FROM custodian_ring_versions WHERE ring = $1 \
    ORDER BY version";
const SELECT_NEWEST_SUBJECT: &str = "SELECT ring, subject, generation, wrapped_by, wrapped_key, \
    created_at, erased_at, mac FROM custodian_subject_keys WHERE ring = $1 AND subject = $2 \
    ORDER BY generation DESC LIMIT 1";
const SELECT_SUBJECT_HISTORY: &str = "SELECT ring, subject, generation, wrapped_by, wrapped_key, \
    created_at, erased_at, mac FROM custodian_subject_keys WHERE ring = $1 AND subject = $2 \
    ORDER BY generation";
// In the order of the `(ring, wrapped_by)` index, so a batch reads its rows and no others.
const SELECT_WRAPPED_BELOW: &str = "SELECT ring, subject, generation, wrapped_by, wrapped_key, \
    created_at, erased_at, mac FROM custodian_subject_keys \
    WHERE ring = $1 AND wrapped_key IS NOT NULL AND wrapped_by < $2 \
    ORDER BY wrapped_by LIMIT $3";
// The same rows, counted from the same index.
const COUNT_WRAPPED_BELOW: &str = "SELECT count(*) FROM custodian_subject_keys \
    WHERE ring = $1 AND wrapped_key IS NOT NULL AND wrapped_by < $2";

/// Per input key, whether it was inserted: each returned key marks the first row of the call with
/// that key.
fn claim(keys: &[(String, String, i64)], returned: Vec<(String, String, i64)>) -> Vec<bool> {
    let mut unclaimed: HashMap<(String, String, i64), usize> = HashMap::new();
    for key in returned {
        *unclaimed.entry(key).or_default() += 1;
    }
    keys.iter()
        .map(|key| match unclaimed.get_mut(key) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        })
        .collect()
}

impl KeyStore for PgKeyStore {
    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, KeyError> {
        let key = key.to_owned();
        self.run(
            format!("reading key store value `{key}`"),
            |pool, what| async move {
                sqlx::query_scalar("SELECT value FROM custodian_meta WHERE key = $1")
                    .bind(key)
                    .fetch_optional(&pool)
                    .await
                    .map_err(|e| classify(&what, e))
            },
        )
    }

    fn put_meta_if_absent(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, KeyError> {
        let (key, value) = (key.to_owned(), value.to_vec());
        self.run(
            format!("storing key store value `{key}`"),
            |pool, what| async move {
                let mut tx = pool.begin().await.map_err(|e| classify(&what, e))?;
                sqlx::query(
                    "INSERT INTO custodian_meta (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO NOTHING",
                )
                .bind(&key)
                .bind(value)
                .execute(&mut *tx)
                .await
                .map_err(|e| classify(&what, e))?;
                // A new statement, hence a new snapshot: it sees a concurrent winner's row, which the
                // INSERT above waited for.
                let stored: Vec<u8> =
                    sqlx::query_scalar("SELECT value FROM custodian_meta WHERE key = $1")
                        .bind(&key)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(|e| classify(&what, e))?;
                tx.commit().await.map_err(|e| classify(&what, e))?;
                Ok(stored)
            },
        )
    }

    fn ring_names(&self) -> Result<Vec<String>, KeyError> {
        self.run("listing key rings".to_owned(), |pool, what| async move {
            sqlx::query_scalar("SELECT name FROM custodian_rings ORDER BY name COLLATE \"C\"")
                .fetch_all(&pool)
                .await
                .map_err(|e| classify(&what, e))
        })
    }

    fn load_ledger(&self) -> Result<LedgerView, KeyError> {
        let raw = self.run(
            "reading the key store's ledger".to_owned(),
            |pool, what| async move {
                let mut tx = pool
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await
                    .map_err(|e| classify(&what, e))?;
                let raw = read_ledger(&mut tx, Counts::All, &what).await?;
                tx.commit().await.map_err(|e| classify(&what, e))?;
                Ok(raw)
            },
        )?;
        ledger_view(raw, true)
    }

    fn init_ledger(
        &self,
        ledger: &LedgerRecord,
        meta: (&str, &[u8]),
        retire: &str,
    ) -> Result<bool, KeyError> {
        let counter = bigint("ledger counter", ledger.counter)?;
        let (body, mac) = (encode_ledger_body(ledger), ledger.mac.to_vec());
        let (key, value, retire) = (meta.0.to_owned(), meta.1.to_vec(), retire.to_owned());
        self.run(
            "initialising the key store's ledger".to_owned(),
            |pool, what| async move {
                let mut tx = pool.begin().await.map_err(|e| classify(&what, e))?;
                let inserted = sqlx::query(
                    "INSERT INTO custodian_ledger (id, counter, body, mac) VALUES (1, $1, $2, $3)
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(counter)
                .bind(body)
                .bind(mac)
                .execute(&mut *tx)
                .await
                .map_err(|e| classify(&what, e))?
                .rows_affected();
                if inserted == 0 {
                    return Ok(false);
                }
                sqlx::query(
                    "INSERT INTO custodian_meta (key, value) VALUES ($1, $2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )
                .bind(&key)
                .bind(value)
                .execute(&mut *tx)
                .await
                .map_err(|e| classify(&what, e))?;
                sqlx::query("DELETE FROM custodian_meta WHERE key = $1")
                    .bind(&retire)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| classify(&what, e))?;
                tx.commit().await.map_err(|e| classify(&what, e))?;
                Ok(true)
            },
        )
    }

    fn load_ring(&self, name: &str) -> Result<RingView, KeyError> {
        let name = name.to_owned();
        let (loaded, ledger) = self.run(
            format!("loading key ring `{name}`"),
            |pool, what| async move {
                // One snapshot for the ring row and its versions.
                let mut tx = pool
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await
                    .map_err(|e| classify(&what, e))?;
                let ledger = read_ledger(&mut tx, Counts::None, &what).await?;
                let ring: Option<RingRow> = sqlx::query_as(SELECT_RING)
                    .bind(&name)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| classify(&what, e))?;
                let Some(ring) = ring else {
                    return Ok((None, ledger));
                };
                let versions: Vec<VersionRow> = sqlx::query_as(SELECT_VERSIONS)
                    .bind(&name)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(|e| classify(&what, e))?;
                tx.commit().await.map_err(|e| classify(&what, e))?;
                Ok((Some((ring, versions)), ledger))
            },
        )?;
        let ledger = ledger_view(ledger, false)?;
        let Some((ring, versions)) = loaded else {
            return Ok(RingView { rows: None, ledger });
        };
        Ok(RingView {
            rows: Some(RingRows {
                ring: ring_record(ring)?,
                versions: versions
                    .into_iter()
                    .map(version_record)
                    .collect::<Result<_, _>>()?,
            }),
            ledger,
        })
    }

    fn create_ring(&self, rows: &RingRows, journal: &mut Journal) -> Result<bool, KeyError> {
        let ring = RingParams::new(&rows.ring)?;
        let versions = VersionParams::all(&rows.versions)?;
        let ledger = LedgerParams::new(journal.ledger.as_ref())?;
        let events = journal.audit.clone();
        let result = self.run(
            format!("creating key ring `{}`", ring.name),
            |pool, what| async move {
                let mut tx = pool.begin().await.map_err(|e| classify(&what, e))?;
                let inserted = sqlx::query(
                    "INSERT INTO custodian_rings (name, generation, suite, primary_version,
                     min_encryption_version, min_decryption_version, max_age_secs,
                     max_encryptions, propagation_secs, created_at, version_digests, mac)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                 ON CONFLICT (name) DO NOTHING",
                )
                .bind(&ring.name)
                .bind(ring.generation)
                .bind(ring.suite)
                .bind(ring.primary_version)
                .bind(ring.min_encryption_version)
                .bind(ring.min_decryption_version)
                .bind(ring.max_age_secs)
                .bind(ring.max_encryptions)
                .bind(ring.propagation_secs)
                .bind(ring.created_at)
                .bind(&ring.version_digests)
                .bind(&ring.mac)
                .execute(&mut *tx)
                .await
                .map_err(|e| classify(&what, e))?
                .rows_affected();
                if inserted == 0 {
                    return Ok(Ok(None));
                }
                upsert_versions(&mut tx, &versions, &what).await?;
                let appended = match write_journal(&mut tx, ledger, events, &what).await? {
                    Ok(appended) => appended,
                    Err(refused) => return Ok(Err(refused)),
                };
                tx.commit().await.map_err(|e| classify(&what, e))?;
                Ok(Ok(Some(appended)))
            },
        )?;
        settle(journal, result)
    }

    fn commit_ring(&self, change: &mut RingChange) -> Result<CommitOutcome, KeyError> {
        let ledger = LedgerParams::new(change.journal.ledger.as_ref())?;
        let events = change.journal.audit.clone();
        let ring = RingParams::new(&change.ring)?;
        let versions = VersionParams::all(&change.versions)?;
        let expected = bigint("expected ring generation", change.expected_generation)?;
        let guard = change.require_no_subject_keys_below.map(i64::from);
        let lock = ring_lock_key(&ring.name);
        let result = self.run(
            format!("committing a change to key ring `{}`", ring.name),
            |pool, what| async move {
                let mut tx = pool.begin().await.map_err(|e| classify(&what, e))?;
                if let Some(below) = guard {
                    // Race-freedom of the subject-key check. At READ COMMITTED, a count sees only
                    // rows committed before it starts: without a lock, another server could insert
                    // (or rewrap) a subject key wrapped by a version below `below` after the count
                    // and commit after this change, leaving a live key under a disabled version.
                    // Subject writers hold this ring's advisory lock *shared* until they commit;
                    // this change takes it *exclusively* before counting. So every subject write
                    // either committed before the lock was granted (the count sees it: PostgreSQL
                    // makes a commit visible before it releases the transaction's locks) or waits
                    // until this change has committed: the same serial order SQLite's single writer
                    // gives.
                    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
                        .bind(lock.0)
                        .bind(lock.1)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| classify(&what, e))?;
                    let count: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM custodian_subject_keys
                     WHERE ring = $1 AND wrapped_key IS NOT NULL AND wrapped_by < $2",
                    )
                    .bind(&ring.name)
                    .bind(below)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| classify(&what, e))?;
                    if count > 0 {
                        return Ok(Ok((
                            CommitOutcome::SubjectKeysDepend(count.unsigned_abs()),
                            0..0,
                        )));
                    }
                }
                // A concurrent UPDATE of the same row makes this one wait, then re-check the
                // generation against the committed row: one of two writers from the same
                // generation updates, the other sees zero rows.
                let updated = sqlx::query(
                    "UPDATE custodian_rings SET generation = $2, suite = $3, primary_version = $4,
                     min_encryption_version = $5, min_decryption_version = $6,
                     max_age_secs = $7, max_encryptions = $8, propagation_secs = $9,
                     created_at = $10, version_digests = $11, mac = $12
                 WHERE name = $1 AND generation = $13",
                )
                .bind(&ring.name)
                .bind(ring.generation)
                .bind(ring.suite)
                .bind(ring.primary_version)
                .bind(ring.min_encryption_version)
                .bind(ring.min_decryption_version)
                .bind(ring.max_age_secs)
                .bind(ring.max_encryptions)
                .bind(ring.propagation_secs)
                .bind(ring.created_at)
                .bind(&ring.version_digests)
                .bind(&ring.mac)
                .bind(expected)
                .execute(&mut *tx)
                .await
                .map_err(|e| classify(&what, e))?
                .rows_affected();
                if updated == 0 {
                    return Ok(Ok((CommitOutcome::Conflict, 0..0)));
                }
                upsert_versions(&mut tx, &versions, &what).await?;
                announce(&mut tx, &[(ring.name.clone(), None)], &what).await?;
                let appended = match write_journal(&mut tx, ledger, events, &what).await? {
                    Ok(appended) => appended,
                    Err(refused) => return Ok(Err(refused)),
                };
                tx.commit().await.map_err(|e| classify(&what, e))?;
                Ok(Ok((CommitOutcome::Committed, appended)))
            },
        )?;
        let (outcome, appended) = result?;
        change.journal.appended = appended;
        Ok(outcome)
    }

    fn load_subject(&self, ring: &str, subject: &str) -> Result<SubjectView, KeyError> {
        let bucket = Counts::Bucket(i32::from(tombstone_bucket(subject)));
        let (ring, subject) = (ring.to_owned(), subject.to_owned());
        let (row, ledger): (Option<SubjectRow>, RawLedger) = self.run(
            format!("loading the key of subject `{subject}` of key ring `{ring}`"),
            |pool, what| async move {
                // One snapshot: the row and the ledger it is checked against.
                let mut tx = pool
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await
                    .map_err(|e| classify(&what, e))?;
                let row = sqlx::query_as(SELECT_NEWEST_SUBJECT)
                    .bind(ring)
                    .bind(subject)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| classify(&what, e))?;
                let ledger = read_ledger(&mut tx, bucket, &what).await?;
                tx.commit().await.map_err(|e| classify(&what, e))?;
                Ok((row, ledger))
            },
        )?;
        Ok(SubjectView {
            row: row.map(subject_record).transpose()?,
            ledger: ledger_view(ledger, false)?,
        })
    }

    fn subject_history(&self, ring: &str, subject: &str) -> Result<Vec<SubjectRecord>, KeyError> {
        let (ring, subject) = (ring.to_owned(), subject.to_owned());
        let rows: Vec<SubjectRow> = self.run(
            format!("loading the key history of subject `{subject}` of key ring `{ring}`"),
            |pool, what| async move {
                sqlx::query_as(SELECT_SUBJECT_HISTORY)
                    .bind(ring)
                    .bind(subject)
                    .fetch_all(&pool)
                    .await
                    .map_err(|e| classify(&what, e))
            },
        )?;
        rows.into_iter().map(subject_record).collect()
    }

    fn insert_subjects(
        &self,
        rows: &[SubjectRecord],
        journal: &mut Journal,
    ) -> Result<Vec<bool>, KeyError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let ledger = LedgerParams::new(journal.ledger.as_ref())?;
        let events = journal.audit.clone();
        let columns = SubjectColumns::new(rows)?;
        let keys: Vec<(String, String, i64)> = columns
            .ring
            .iter()
            .zip(&columns.subject)
            .zip(&columns.generation)
            .map(|((r, s), g)| (r.clone(), s.clone(), *g))
            .collect();
        let announces: Vec<bool> = rows.iter().map(announces_change).collect();
        let what = format!("inserting {} subject keys", rows.len());
        let (inserted, appended) = self.run(what, |pool, what| async move {
            let mut tx = pool.begin().await.map_err(|e| classify(&what, e))?;
            lock_rings_shared(&mut tx, &columns.ring, &what).await?;
            // UNNEST yields the rows in array order, so within one call the first of two rows
            // with the same key is the one inserted, as in the other stores.
            let returned: Vec<(String, String, i64)> = sqlx::query_as(
                "INSERT INTO custodian_subject_keys
                     (ring, subject, generation, wrapped_by, wrapped_key, created_at, erased_at, mac)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[],
                                      $5::bytea[], $6::bigint[], $7::bigint[], $8::bytea[])
                 ON CONFLICT (ring, subject, generation) DO NOTHING
                 RETURNING ring, subject, generation",
            )
            .bind(&columns.ring)
            .bind(&columns.subject)
            .bind(&columns.generation)
            .bind(&columns.wrapped_by)
            .bind(&columns.wrapped_key)
            .bind(&columns.created_at)
            .bind(&columns.erased_at)
            .bind(&columns.mac)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| classify(&what, e))?;
            let inserted = claim(&keys, returned);
            let entries: Vec<(String, Option<String>)> = keys
                .into_iter()
                .zip(inserted.iter().zip(&announces))
                .filter(|(_, (inserted, announces))| **inserted && **announces)
                .map(|((ring, subject, _), _)| (ring, Some(subject)))
                .collect();
            announce(&mut tx, &entries, &what).await?;
            let events = events_of_inserted(&events, &inserted);
            let appended = match write_journal(&mut tx, ledger, events, &what).await? {
                Ok(appended) => appended,
                Err(refused) => return Ok(Err(refused)),
            };
            tx.commit().await.map_err(|e| classify(&what, e))?;
            Ok(Ok((inserted, appended)))
        })??;
        journal.appended = appended;
        Ok(inserted)
    }

    fn rewrap_subjects(&self, rows: &[(SubjectRecord, u32)]) -> Result<Vec<bool>, KeyError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let records: Vec<SubjectRecord> = rows.iter().map(|(row, _)| row.clone()).collect();
        let columns = SubjectColumns::new(&records)?;
        let expected: Vec<i64> = rows.iter().map(|(_, v)| i64::from(*v)).collect();
        let what = format!("rewrapping {} subject keys", rows.len());
        self.run(what, |pool, what| async move {
            let mut tx = pool.begin().await.map_err(|e| classify(&what, e))?;
            lock_rings_shared(&mut tx, &columns.ring, &what).await?;
            // One statement per row, in order: a later row of the same call sees the earlier
            // one's effect, as in the other stores.
            let mut done = Vec::with_capacity(expected.len());
            for (i, expected_wrapped_by) in expected.iter().enumerate() {
                let (Some(ring), Some(subject), Some(generation), Some(wrapped_by)) = (
                    columns.ring.get(i),
                    columns.subject.get(i),
                    columns.generation.get(i),
                    columns.wrapped_by.get(i),
                ) else {
                    break;
                };
                let n = sqlx::query(
                    "UPDATE custodian_subject_keys SET wrapped_by = $1, wrapped_key = $2, mac = $3
                     WHERE ring = $4 AND subject = $5 AND generation = $6
                       AND wrapped_by = $7 AND wrapped_key IS NOT NULL",
                )
                .bind(wrapped_by)
                .bind(columns.wrapped_key.get(i))
                .bind(columns.mac.get(i))
                .bind(ring)
                .bind(subject)
                .bind(generation)
                .bind(expected_wrapped_by)
                .execute(&mut *tx)
                .await
                .map_err(|e| classify(&what, e))?
                .rows_affected();
                done.push(n == 1);
            }
            tx.commit().await.map_err(|e| classify(&what, e))?;
            Ok(done)
        })
    }

    fn erase_subject(
        &self,
        tombstone: &SubjectRecord,
        journal: &mut Journal,
    ) -> Result<bool, KeyError> {
        let ledger = LedgerParams::new(journal.ledger.as_ref())?;
        let events = journal.audit.clone();
        let erased_at = tombstone
            .erased_at
            .map(|t| bigint("erased_at", t))
            .transpose()?;
        let generation = bigint("subject generation", tombstone.generation)?;
        let (ring, subject) = (tombstone.ring.clone(), tombstone.subject.clone());
        let (wrapped_by, mac) = (i64::from(tombstone.wrapped_by), tombstone.mac.to_vec());
        let result = self.run(
            format!("erasing the key of subject `{subject}` of key ring `{ring}`"),
            |pool, what| async move {
                let mut tx = pool.begin().await.map_err(|e| classify(&what, e))?;
                // NULL replaces the wrapped key in the live row; PostgreSQL keeps the old row
                // version until VACUUM reclaims it (docs/KEYSTORE.md, limits).
                let n = sqlx::query(
                    "UPDATE custodian_subject_keys
                     SET wrapped_by = $1, wrapped_key = NULL, erased_at = $2, mac = $3
                     WHERE ring = $4 AND subject = $5 AND generation = $6
                       AND wrapped_key IS NOT NULL",
                )
                .bind(wrapped_by)
                .bind(erased_at)
                .bind(mac)
                .bind(&ring)
                .bind(&subject)
                .bind(generation)
                .execute(&mut *tx)
                .await
                .map_err(|e| classify(&what, e))?
                .rows_affected();
                if n != 1 {
                    return Ok(Ok(None));
                }
                announce(&mut tx, &[(ring, Some(subject))], &what).await?;
                let appended = match write_journal(&mut tx, ledger, events, &what).await? {
                    Ok(appended) => appended,
                    Err(refused) => return Ok(Err(refused)),
                };
                tx.commit().await.map_err(|e| classify(&what, e))?;
                Ok(Ok(Some(appended)))
            },
        )?;
        settle(journal, result)
    }

    fn purge(&self, _wait: std::time::Duration) -> Result<bool, KeyError> {
        // PostgreSQL keeps an updated row's old version (with the wrapped key) until VACUUM
        // reclaims it, and nothing a client can do confirms that the bytes left the data files,
        // the WAL, replicas and backups. Say so instead of pretending (docs/KEYSTORE.md).
        Ok(false)
    }

    fn subjects_wrapped_below(
        &self,
        ring: &str,
        version: u32,
        limit: usize,
    ) -> Result<Vec<SubjectRecord>, KeyError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let ring = ring.to_owned();
        let rows: Vec<SubjectRow> = self.run(
            format!("listing subject keys of key ring `{ring}` wrapped below version {version}"),
            |pool, what| async move {
                sqlx::query_as(SELECT_WRAPPED_BELOW)
                    .bind(ring)
                    .bind(i64::from(version))
                    .bind(limit)
                    .fetch_all(&pool)
                    .await
                    .map_err(|e| classify(&what, e))
            },
        )?;
        rows.into_iter().map(subject_record).collect()
    }

    fn count_subjects_wrapped_below(&self, ring: &str, version: u32) -> Result<u64, KeyError> {
        let ring = ring.to_owned();
        let count: i64 = self.run(
            format!("counting subject keys of key ring `{ring}` wrapped below version {version}"),
            |pool, what| async move {
                sqlx::query_scalar(COUNT_WRAPPED_BELOW)
                    .bind(ring)
                    .bind(i64::from(version))
                    .fetch_one(&pool)
                    .await
                    .map_err(|e| classify(&what, e))
            },
        )?;
        u64::try_from(count)
            .map_err(|_| KeyError::Store("a negative count of subject keys".to_owned()))
    }

    fn changes_since(&self, after: u64, limit: usize) -> Result<ChangeFeed, KeyError> {
        let wanted = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
        let (bounds, rows) = self.run(
            "reading the key store's change feed".to_owned(),
            |pool, what| async move {
                // One snapshot: the bounds and the entries agree.
                let mut tx = pool
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await
                    .map_err(|e| classify(&what, e))?;
                let bounds: (Option<i64>, Option<i64>) =
                    sqlx::query_as("SELECT min(seq), max(seq) FROM custodian_changes")
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(|e| classify(&what, e))?;
                let latest = bounds.1.unwrap_or(0);
                let rows: Vec<(i64, String, Option<String>)> = match i64::try_from(after) {
                    Ok(after) if after < latest => sqlx::query_as(
                        "SELECT seq, ring, subject FROM custodian_changes
                         WHERE seq > $1 ORDER BY seq LIMIT $2",
                    )
                    .bind(after)
                    .bind(wanted)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(|e| classify(&what, e))?,
                    _ => Vec::new(),
                };
                tx.commit().await.map_err(|e| classify(&what, e))?;
                Ok((bounds, rows))
            },
        )?;
        let bad = || KeyError::tampered("negative change feed position", "", None);
        let latest = bounds
            .1
            .map_or(Ok(0), |v| u64::try_from(v).map_err(|_| bad()))?;
        if after >= latest {
            return Ok(ChangeFeed {
                latest,
                changes: Vec::new(),
                complete: true,
            });
        }
        let oldest = bounds
            .0
            .map_or(Ok(latest), |v| u64::try_from(v).map_err(|_| bad()))?;
        let changes = rows
            .into_iter()
            .map(|(seq, ring, subject)| {
                Ok(Change {
                    seq: u64::try_from(seq).map_err(|_| bad())?,
                    ring,
                    subject,
                })
            })
            .collect::<Result<Vec<_>, KeyError>>()?;
        // Positions are never reused, so a gap before the oldest kept entry means pruning.
        let complete = after.saturating_add(1) >= oldest && changes.len() <= limit;
        Ok(ChangeFeed {
            latest,
            changes: if complete { changes } else { Vec::new() },
            complete,
        })
    }
}

impl PgKeyStore {
    /// The audit log kept in this store's database, over the same handle.
    pub fn audit_store(&self) -> Result<PgAuditStore, AuditError> {
        PgAuditStore::open(&self.pg)
    }
}

impl AuditStore for PgKeyStore {
    fn tree_size(&self) -> Result<u64, AuditError> {
        self.audit_store()?.tree_size()
    }

    fn append(&self, build: &mut BuildAppend<'_>) -> Result<u64, AuditError> {
        self.audit_store()?.append(build)
    }

    fn read_entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, AuditError> {
        self.audit_store()?.read_entries(start, end)
    }

    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, AuditError> {
        self.audit_store()?.read_hashes(indexes)
    }
}

impl fmt::Debug for PgKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgKeyStore")
            .field("postgres", &self.pg)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::store::VersionDigest;

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
        assert_eq!(bytes.len(), 2 * 37);
        assert_eq!(decode_digests(&bytes, "r").unwrap(), digests);
        assert!(decode_digests(&bytes[1..], "r").is_err());
        let mut bad_state = bytes.clone();
        bad_state[4] = 9;
        assert!(decode_digests(&bad_state, "r").is_err());
    }

    #[test]
    fn out_of_range_values_are_refused_before_any_query() {
        let row = SubjectRecord {
            ring: "r".into(),
            subject: "s".into(),
            generation: u64::MAX,
            wrapped_by: 1,
            wrapped_key: Some(vec![1; 60]),
            created_at: 0,
            erased_at: None,
            mac: [0; 32],
        };
        let err = SubjectColumns::new(&[row]).err().unwrap();
        assert!(err.to_string().contains("subject generation"), "{err}");
        assert_eq!(bigint("x", i64::MAX as u64).unwrap(), i64::MAX);
    }

    #[test]
    fn negative_and_oversized_columns_read_as_tampering() {
        assert!(matches!(
            unsigned(-1, "r", None),
            Err(KeyError::Tampered { .. })
        ));
        assert!(matches!(
            unsigned32(i64::from(u32::MAX) + 1, "r", None),
            Err(KeyError::Tampered { .. })
        ));
        assert_eq!(
            unsigned32(i64::from(u32::MAX), "r", None).unwrap(),
            u32::MAX
        );
    }
}
