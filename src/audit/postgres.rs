//! [`PgAuditStore`]: the audit log in PostgreSQL (feature `postgres`), shared by every server of a
//! shop.
//!
//! Two append-only tables, `custodian_audit_entries (idx, entry)` and `custodian_audit_hashes (idx,
//! hash)`, created by migration 4 of custodian's schema (docs/AUDIT.md). An append is one
//! transaction that first takes the advisory lock `pg_advisory_xact_lock(0x63757361, 0)` ("cusa"),
//! held until it commits or rolls back: appends from every thread, process and server queue on it,
//! so the size an append reads, the hashes it computes from and the rows it inserts belong to one
//! tree. Reads take no lock (rows below the size never change).
//!
//! [`AuditStore::append`] runs its closure on the calling thread while the transaction stays open
//! on the runtime: the two talk over channels, so the closure need not be `Send`. [`append_in`] is
//! the same append inside a transaction the caller opened (the PostgreSQL key store's), async.

use std::sync::mpsc;
use std::time::Instant;

use sqlx::PgConnection;
use sqlx::postgres::PgPool;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::error::AuditError;
use super::hash::{HASH_LEN, Hash};
use super::log::PreparedAppend;
use super::store::{AppendBatch, AuditStore, BuildAppend, check_batch};
use super::tree::{HashReader, append_reads};
use crate::postgres::{LOCK_CLASS_AUDIT, Postgres, PostgresError, bigint, classify};

impl From<PostgresError> for AuditError {
    fn from(err: PostgresError) -> Self {
        match err {
            PostgresError::Unavailable(message) => AuditError::StoreUnavailable(message),
            other => AuditError::Store {
                message: other.to_string(),
                source: None,
            },
        }
    }
}

fn db(what: &str) -> impl FnOnce(sqlx::Error) -> AuditError + '_ {
    move |e| classify(what, e).into()
}

fn to_u64(value: i64, what: &str) -> Result<u64, AuditError> {
    u64::try_from(value).map_err(|_| {
        AuditError::StoreContract(format!("{what} is {value}, which no append writes"))
    })
}

fn to_bigint(value: u64) -> Result<i64, AuditError> {
    bigint("audit index", value).map_err(|_| AuditError::TreeTooLarge(value))
}

/// Takes the audit log's advisory lock, held until the transaction ends.
async fn lock(conn: &mut PgConnection) -> Result<(), AuditError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, 0)")
        .bind(LOCK_CLASS_AUDIT)
        .execute(conn)
        .await
        .map_err(db("taking the audit log's lock"))?;
    Ok(())
}

/// The tree size and the number of stored hashes, from the highest index of each table (an index
/// lookup each; a deleted row below the highest is caught where it is read).
async fn sizes(conn: &mut PgConnection) -> Result<(u64, u64), AuditError> {
    let (entries, hashes): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COALESCE(MAX(idx) + 1, 0) FROM custodian_audit_entries),
                (SELECT COALESCE(MAX(idx) + 1, 0) FROM custodian_audit_hashes)",
    )
    .fetch_one(conn)
    .await
    .map_err(db("reading the audit log's size"))?;
    Ok((
        to_u64(entries, "the audit log's size")?,
        to_u64(hashes, "the number of stored hashes")?,
    ))
}

/// The hashes stored at `indexes`, in the same order, in one query; a missing row is an error.
async fn read_hashes(conn: &mut PgConnection, indexes: &[u64]) -> Result<Vec<Hash>, AuditError> {
    if indexes.is_empty() {
        return Ok(Vec::new());
    }
    let wanted: Vec<i64> = indexes
        .iter()
        .map(|&i| to_bigint(i))
        .collect::<Result<_, _>>()?;
    let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
        "SELECT idx, hash FROM custodian_audit_hashes WHERE idx = ANY($1) ORDER BY idx",
    )
    .bind(&wanted)
    .fetch_all(conn)
    .await
    .map_err(db("reading audit hashes"))?;
    indexes
        .iter()
        .zip(&wanted)
        .map(|(&index, want)| {
            let at = rows
                .binary_search_by_key(want, |(idx, _)| *idx)
                .map_err(|_| {
                    AuditError::StoreContract(format!(
                        "stored hash {index} is missing from custodian_audit_hashes: rows were \
                         deleted (the store was tampered with or truncated), or the index is past \
                         the end"
                    ))
                })?;
            let bytes = rows.get(at).map(|(_, h)| h.as_slice()).unwrap_or_default();
            Hash::from_slice(bytes).ok_or_else(|| {
                AuditError::StoreContract(format!(
                    "stored hash {index} in custodian_audit_hashes is {} bytes, not {HASH_LEN}",
                    bytes.len()
                ))
            })
        })
        .collect()
}

/// Inserts a checked batch, entries from `size` and hashes from `stored`, in one statement (one
/// round trip). Plain inserts: an index that exists already fails the primary key, nothing is
/// overwritten.
async fn insert(
    conn: &mut PgConnection,
    size: u64,
    stored: u64,
    batch: &AppendBatch,
) -> Result<(), AuditError> {
    let entry_indexes: Vec<i64> = (size..)
        .take(batch.entries.len())
        .map(to_bigint)
        .collect::<Result<_, _>>()?;
    let hash_indexes: Vec<i64> = (stored..)
        .take(batch.hashes.len())
        .map(to_bigint)
        .collect::<Result<_, _>>()?;
    let hashes: Vec<&[u8]> = batch
        .hashes
        .iter()
        .map(|h| h.as_bytes().as_slice())
        .collect();
    // A data-modifying WITH runs to completion exactly once, whether or not it is read.
    sqlx::query(
        "WITH entries AS (
             INSERT INTO custodian_audit_entries (idx, entry)
             SELECT * FROM UNNEST($1::bigint[], $2::bytea[])
         )
         INSERT INTO custodian_audit_hashes (idx, hash)
         SELECT * FROM UNNEST($3::bigint[], $4::bytea[])",
    )
    .bind(&entry_indexes)
    .bind(&batch.entries)
    .bind(&hash_indexes)
    .bind(&hashes)
    .execute(conn)
    .await
    .map_err(db("inserting audit entries and hashes"))?;
    Ok(())
}

/// Hashes read ahead of a synchronous build; asking for any other index is an error.
struct Prefetched {
    indexes: Vec<u64>,
    hashes: Vec<Hash>,
}

impl HashReader for Prefetched {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, AuditError> {
        indexes
            .iter()
            .map(|index| {
                self.indexes
                    .binary_search(index)
                    .ok()
                    .and_then(|at| self.hashes.get(at))
                    .copied()
                    .ok_or_else(|| {
                        AuditError::StoreContract(format!(
                            "stored hash {index} was not read ahead for this append"
                        ))
                    })
            })
            .collect()
    }
}

/// Appends `prepared` through `conn`, which must be inside a transaction the caller opened and
/// will commit (the PostgreSQL key store's): takes the audit lock (held until that transaction
/// ends; take it as the last lock, after the key store's, so that lock order stays the same
/// everywhere), reads the size and the hashes the append needs, builds, checks and inserts.
/// Returns the index of the first entry. Outside a transaction the lock would be released at once
/// and two appends could race.
pub(crate) async fn append_in(
    conn: &mut PgConnection,
    prepared: &mut PreparedAppend,
) -> Result<u64, AuditError> {
    lock(conn).await?;
    let (size, stored) = sizes(conn).await?;
    let indexes = append_reads(size)?;
    let hashes = read_hashes(conn, &indexes).await?;
    let batch = prepared.build(size, &Prefetched { indexes, hashes })?;
    check_batch(size, stored, &batch)?;
    insert(conn, size, stored, &batch).await?;
    Ok(size)
}

/// What the calling thread asks of the transaction open on the runtime.
enum Request {
    Read(Vec<u64>),
    Write(AppendBatch),
}

/// What the transaction answers.
enum Reply {
    /// The lock is held; the size and the number of stored hashes.
    Opened(u64, u64),
    Hashes(Result<Vec<Hash>, AuditError>),
    /// Committed (the first index), or failed and rolled back.
    Done(Result<u64, AuditError>),
}

/// One append's transaction, on the runtime: lock, report the size, answer reads, then insert
/// the batch and commit. If the caller goes away (its build failed, or it timed out) the
/// transaction is dropped, which rolls it back.
async fn append_session(
    pool: PgPool,
    mut requests: UnboundedReceiver<Request>,
    replies: mpsc::Sender<Reply>,
) {
    let result = async {
        let mut tx = pool.begin().await.map_err(db("starting an audit append"))?;
        lock(&mut tx).await?;
        let (size, stored) = sizes(&mut tx).await?;
        let _ = replies.send(Reply::Opened(size, stored));
        loop {
            match requests.recv().await {
                Some(Request::Read(indexes)) => {
                    let _ = replies.send(Reply::Hashes(read_hashes(&mut tx, &indexes).await));
                }
                Some(Request::Write(batch)) => {
                    insert(&mut tx, size, stored, &batch).await?;
                    tx.commit()
                        .await
                        .map_err(db("committing an audit append"))?;
                    return Ok(size);
                }
                None => {
                    return Err(AuditError::StoreContract(
                        "the append was abandoned before its batch was sent".into(),
                    ));
                }
            }
        }
    }
    .await;
    let _ = replies.send(Reply::Done(result));
}

/// The calling thread's end of an [`append_session`]: it reads hashes for the build.
struct Session {
    requests: UnboundedSender<Request>,
    replies: mpsc::Receiver<Reply>,
    deadline: Instant,
    timeout_ms: u128,
}

impl Session {
    fn reply(&self) -> Result<Reply, AuditError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        match self.replies.recv_timeout(left) {
            Ok(Reply::Done(Err(e))) => Err(e),
            Ok(reply) => Ok(reply),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(AuditError::StoreUnavailable(format!(
                "appending to the audit log did not finish within {} ms (is the server reachable? \
                 a call on a tokio worker thread also ends this way: use spawn_blocking)",
                self.timeout_ms
            ))),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(AuditError::StoreUnavailable(
                "appending to the audit log was dropped before it finished: the tokio runtime is \
                 shutting down"
                    .into(),
            )),
        }
    }

    fn send(&self, request: Request) -> Result<(), AuditError> {
        self.requests.send(request).map_err(|_| {
            AuditError::StoreUnavailable(
                "the audit append's transaction ended before its batch was sent".into(),
            )
        })
    }
}

fn unexpected() -> AuditError {
    AuditError::StoreContract("the audit append's transaction answered out of turn".into())
}

impl HashReader for Session {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, AuditError> {
        self.send(Request::Read(indexes.to_vec()))?;
        match self.reply()? {
            Reply::Hashes(result) => result,
            _ => Err(unexpected()),
        }
    }
}

/// Aborts the append's task when the call returns early (an error or a timeout): its transaction
/// is dropped and rolls back.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The audit log in PostgreSQL tables `custodian_audit_entries` and `custodian_audit_hashes`
/// (docs/AUDIT.md).
///
/// Cheap to clone: clones share the [`Postgres`] handle. The methods are synchronous and wait for
/// the server at most for the handle's timeout; never call them on a tokio worker thread (see
/// [`crate::postgres`]). An append that times out is rolled back unless the server had already
/// received its commit (a lost reply): see [`AuditError::StoreUnavailable`].
#[derive(Clone)]
pub struct PgAuditStore {
    pg: Postgres,
}

impl PgAuditStore {
    /// A store on `pg`, after creating or upgrading custodian's tables
    /// ([`Postgres::migrate_blocking`]; no query at all if this handle has migrated already).
    pub fn open(pg: &Postgres) -> Result<Self, AuditError> {
        pg.migrate_blocking()?;
        Ok(Self { pg: pg.clone() })
    }

    /// The PostgreSQL handle.
    pub fn postgres(&self) -> &Postgres {
        &self.pg
    }

    fn run<T, F, Fut>(&self, what: &str, task: F) -> Result<T, AuditError>
    where
        T: Send + 'static,
        F: FnOnce(PgPool) -> Fut,
        Fut: Future<Output = Result<T, AuditError>> + Send + 'static,
    {
        let future = task(self.pg.pool().clone());
        // The bridge speaks PostgresError; carry the audit error through it unchanged.
        let (sender, receiver) = mpsc::channel();
        let result = self.pg.run(what, async move {
            let _ = sender.send(future.await);
            Ok(())
        });
        match receiver.try_recv() {
            Ok(answer) => answer,
            Err(_) => Err(result.err().map_or_else(
                || AuditError::StoreUnavailable(format!("{what} ended without an answer")),
                AuditError::from,
            )),
        }
    }
}

impl core::fmt::Debug for PgAuditStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PgAuditStore")
            .field("pg", &self.pg)
            .finish()
    }
}

impl AuditStore for PgAuditStore {
    fn tree_size(&self) -> Result<u64, AuditError> {
        self.run("reading the audit log's size", |pool| async move {
            let mut conn = pool
                .acquire()
                .await
                .map_err(db("reading the audit log's size"))?;
            Ok(sizes(&mut conn).await?.0)
        })
    }

    fn append(&self, build: &mut BuildAppend<'_>) -> Result<u64, AuditError> {
        let (requests, request_receiver) = unbounded_channel();
        let (reply_sender, replies) = mpsc::channel();
        let _task = AbortOnDrop(self.pg.runtime().spawn(append_session(
            self.pg.pool().clone(),
            request_receiver,
            reply_sender,
        )));
        let session = Session {
            requests,
            replies,
            deadline: Instant::now() + self.pg.timeout(),
            timeout_ms: self.pg.timeout().as_millis(),
        };
        let Reply::Opened(size, stored) = session.reply()? else {
            return Err(unexpected());
        };
        let batch = build(size, &session)?;
        check_batch(size, stored, &batch)?;
        session.send(Request::Write(batch))?;
        match session.reply()? {
            Reply::Done(result) => result,
            _ => Err(unexpected()),
        }
    }

    fn read_entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, AuditError> {
        let what = "reading audit entries";
        self.run(what, move |pool| async move {
            let mut conn = pool.acquire().await.map_err(db(what))?;
            // Rows below the size never change, so the size and the rows need no common snapshot.
            let (log_size, _) = sizes(&mut conn).await?;
            if start > end || end > log_size {
                return Err(AuditError::SizeOutOfRange {
                    size: end,
                    log_size,
                });
            }
            let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
                "SELECT idx, entry FROM custodian_audit_entries
                 WHERE idx >= $1 AND idx < $2 ORDER BY idx",
            )
            .bind(to_bigint(start)?)
            .bind(to_bigint(end)?)
            .fetch_all(&mut *conn)
            .await
            .map_err(db(what))?;
            let mut out = Vec::with_capacity(rows.len());
            let mut expected = start;
            for (index, entry) in rows {
                if to_u64(index, "an entry index")? != expected {
                    break;
                }
                out.push(entry);
                expected += 1;
            }
            if expected != end {
                return Err(AuditError::StoreContract(format!(
                    "entry {expected} is missing from custodian_audit_entries, which holds \
                     entries up to {}: rows were deleted (the store was tampered with)",
                    log_size - 1
                )));
            }
            Ok(out)
        })
    }

    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, AuditError> {
        let indexes = indexes.to_vec();
        self.run("reading audit hashes", move |pool| async move {
            let mut conn = pool.acquire().await.map_err(db("reading audit hashes"))?;
            read_hashes(&mut conn, &indexes).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Action, AuditEvent, AuditLog, MemoryAuditStore};
    use sqlx::AssertSqlSafe;
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    use std::str::FromStr;

    fn event(i: u64) -> AuditEvent {
        AuditEvent::new(i, "actor", Action::MfaVerified, format!("user-{i}/phone"))
    }

    /// A handle on a new schema of the server `scripts/with-postgres` started; `None` (after a
    /// notice) without one, outside CI.
    fn fresh_handle() -> Option<Postgres> {
        let Ok(url) = std::env::var("CUSTODIAN_PG_URL") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CUSTODIAN_PG_URL is not set but CI is: run through scripts/with-postgres"
            );
            eprintln!("SKIPPED: needs CUSTODIAN_PG_URL (scripts/with-postgres)");
            return None;
        };
        let admin = Postgres::connect(&url).unwrap();
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let schema = format!(
            "custodian_unit_audit_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        admin
            .runtime()
            .block_on(
                sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(admin.pool()),
            )
            .unwrap();
        let options = PgConnectOptions::from_str(&url)
            .unwrap()
            .options([("search_path", schema.as_str())]);
        let _entered = admin.runtime().enter();
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect_lazy_with(options);
        let pg = Postgres::from_pool(pool).unwrap();
        // The pool runs on the admin handle's runtime, which must outlive it: the test process
        // ends soon after.
        std::mem::forget(admin);
        Some(pg)
    }

    #[test]
    fn append_in_commits_with_the_callers_transaction() {
        let Some(pg) = fresh_handle() else { return };
        let log = AuditLog::new(PgAuditStore::open(&pg).unwrap());
        log.append(event(0)).unwrap();

        // Rolled back with the caller's transaction: nothing stored.
        let pool = pg.pool().clone();
        let first = pg
            .runtime()
            .block_on(async move {
                let mut tx = pool.begin().await?;
                let mut prepared = PreparedAppend::new(&[event(1)]).unwrap();
                let first = append_in(&mut tx, &mut prepared).await.unwrap();
                tx.rollback().await?;
                Ok::<_, sqlx::Error>(first)
            })
            .unwrap();
        assert_eq!(first, 1);
        assert_eq!(log.tree_size().unwrap(), 1);

        // Committed with it, next to another change: stored, the tree of single appends.
        let pool = pg.pool().clone();
        let first = pg
            .runtime()
            .block_on(async move {
                let mut tx = pool.begin().await?;
                sqlx::query("CREATE TABLE other_change (x BIGINT)")
                    .execute(&mut *tx)
                    .await?;
                let mut prepared = PreparedAppend::new(&[event(1), event(2)]).unwrap();
                let first = append_in(&mut tx, &mut prepared).await.unwrap();
                tx.commit().await?;
                Ok::<_, sqlx::Error>(first)
            })
            .unwrap();
        assert_eq!(first, 1);
        assert_eq!(log.tree_size().unwrap(), 3);
        let memory = AuditLog::new(MemoryAuditStore::new());
        memory
            .append_batch(&[event(0), event(1), event(2)])
            .unwrap();
        assert_eq!(log.root(3).unwrap(), memory.root(3).unwrap());
        assert_eq!(
            log.store_entries(0..3).unwrap(),
            memory.store_entries(0..3).unwrap()
        );
    }

    #[test]
    fn a_failed_build_rolls_back_and_frees_the_lock() {
        let Some(pg) = fresh_handle() else { return };
        let store = PgAuditStore::open(&pg).unwrap();
        let log = AuditLog::new(store.clone());
        let refused = store.append(&mut |_, _| Err(AuditError::StoreContract("no".into())));
        assert!(refused.is_err());
        // The lock was released with the transaction: the next append does not wait for it.
        let started = Instant::now();
        log.append(event(0)).unwrap();
        assert!(started.elapsed() < pg.timeout());
        assert_eq!(log.tree_size().unwrap(), 1);
    }
}
