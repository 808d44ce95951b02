//! [`SqliteAuditStore`]: the audit log in an SQLite file (feature `sqlite`), shared by the threads
//! and processes that open it.
//!
//! Two append-only tables, `audit_entries (idx, entry)` and `audit_hashes (idx, hash)` (columns in
//! docs/AUDIT.md). An append is one `BEGIN IMMEDIATE` transaction: SQLite's write lock makes it the
//! only writer of the file, so the size it reads, the hashes it computes from and the rows it
//! inserts belong to one tree whatever the other threads and processes do. Connections are those of
//! the key store (`crate::sqlite::Pool`): WAL, `synchronous = FULL`, a busy timeout.
//!
//! [`append_in`] is the same append inside a transaction someone else opened, so that the SQLite
//! key store can commit a key operation and its audit entry together.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::error::AuditError;
use super::hash::{HASH_LEN, Hash};
use super::log::PreparedAppend;
use super::store::{AppendBatch, AuditStore, BuildAppend, check_batch};
use super::tree::HashReader;
use crate::sqlite::Pool;

/// The tables and the triggers that keep them append-only. Idempotent.
///
/// The triggers stop an update or a delete by mistake (a migration, an ORM, a cleanup job); they
/// do not stop someone who can write the file, who can drop them. The Merkle tree and a checkpoint
/// kept elsewhere catch that (docs/AUDIT.md, "Limits").
const CREATE_TABLES: &str = "
CREATE TABLE IF NOT EXISTS audit_entries (
    idx   INTEGER PRIMARY KEY CHECK (idx >= 0),
    entry BLOB NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS audit_hashes (
    idx  INTEGER PRIMARY KEY CHECK (idx >= 0),
    hash BLOB NOT NULL CHECK (length(hash) = 32)
) STRICT;
CREATE TRIGGER IF NOT EXISTS audit_entries_no_update BEFORE UPDATE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_entries_no_delete BEFORE DELETE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_hashes_no_update BEFORE UPDATE ON audit_hashes
BEGIN SELECT RAISE(ABORT, 'audit_hashes is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_hashes_no_delete BEFORE DELETE ON audit_hashes
BEGIN SELECT RAISE(ABORT, 'audit_hashes is append-only'); END;
";

/// Creates the audit tables (and their append-only triggers) if they do not exist, on `conn`:
/// inside the key store's migration transaction, or on a file of its own.
pub(crate) fn create_tables(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(CREATE_TABLES)
}

/// Appends `prepared` through `conn`, which must be inside an open transaction that holds
/// SQLite's write lock (`BEGIN IMMEDIATE`), so that no other writer changes the size between the
/// read and the insert. Returns the index of the first entry. Nothing is committed here: the
/// entries become visible, together with whatever else the transaction wrote, when the caller
/// commits; if it rolls back, they are gone too.
pub(crate) fn append_in(
    conn: &Connection,
    prepared: &mut PreparedAppend,
) -> Result<u64, AuditError> {
    if conn.is_autocommit() {
        return Err(AuditError::StoreContract(
            "append_in needs an open `BEGIN IMMEDIATE` transaction; the connection has none".into(),
        ));
    }
    append_with(conn, &mut |size, reader| prepared.build(size, reader))
}

/// The append itself, inside the caller's transaction: read the sizes, build, check, insert.
fn append_with(conn: &Connection, build: &mut BuildAppend<'_>) -> Result<u64, AuditError> {
    let (size, stored) = sizes(conn)?;
    let batch = build(size, &ConnReader(conn))?;
    check_batch(size, stored, &batch)?;
    insert(conn, size, stored, &batch)?;
    Ok(size)
}

fn sql_err(what: &str) -> impl FnOnce(rusqlite::Error) -> AuditError + '_ {
    move |e| AuditError::store(format!("{what} failed"), e)
}

fn to_u64(value: i64, what: &str) -> Result<u64, AuditError> {
    u64::try_from(value).map_err(|_| {
        AuditError::StoreContract(format!("{what} is {value}, which no append writes"))
    })
}

fn to_i64(value: u64) -> Result<i64, AuditError> {
    i64::try_from(value).map_err(|_| AuditError::TreeTooLarge(value))
}

/// The tree size and the number of stored hashes, from the highest index of each table (one
/// B-tree descent each; a deleted row below the highest is caught where it is read).
fn sizes(conn: &Connection) -> Result<(u64, u64), AuditError> {
    let (entries, hashes): (i64, i64) = conn
        .prepare_cached(
            "SELECT (SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_entries),
                    (SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_hashes)",
        )
        .and_then(|mut stmt| stmt.query_row([], |row| Ok((row.get(0)?, row.get(1)?))))
        .map_err(sql_err("reading the audit log's size"))?;
    Ok((
        to_u64(entries, "the audit log's size")?,
        to_u64(hashes, "the number of stored hashes")?,
    ))
}

fn insert(
    conn: &Connection,
    size: u64,
    stored: u64,
    batch: &AppendBatch,
) -> Result<(), AuditError> {
    let what = "inserting audit entries";
    let mut stmt = conn
        .prepare_cached("INSERT INTO audit_entries (idx, entry) VALUES (?1, ?2)")
        .map_err(sql_err(what))?;
    for (index, entry) in (size..).zip(&batch.entries) {
        stmt.execute(params![to_i64(index)?, entry])
            .map_err(sql_err(what))?;
    }
    let what = "inserting audit hashes";
    let mut stmt = conn
        .prepare_cached("INSERT INTO audit_hashes (idx, hash) VALUES (?1, ?2)")
        .map_err(sql_err(what))?;
    for (index, hash) in (stored..).zip(&batch.hashes) {
        stmt.execute(params![to_i64(index)?, hash.as_bytes().as_slice()])
            .map_err(sql_err(what))?;
    }
    Ok(())
}

/// Reads stored hashes through one connection (inside an append, the appending transaction's).
struct ConnReader<'a>(&'a Connection);

impl HashReader for ConnReader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, AuditError> {
        let what = "reading audit hashes";
        let mut stmt = self
            .0
            .prepare_cached("SELECT hash FROM audit_hashes WHERE idx = ?1")
            .map_err(sql_err(what))?;
        indexes
            .iter()
            .map(|&index| {
                let bytes: Option<Vec<u8>> = stmt
                    .query_row([to_i64(index)?], |row| row.get(0))
                    .optional()
                    .map_err(sql_err(what))?;
                let bytes = bytes.ok_or_else(|| {
                    AuditError::StoreContract(format!(
                        "stored hash {index} is missing from audit_hashes: rows were deleted \
                         (the store was tampered with or truncated), or the index is past the end"
                    ))
                })?;
                Hash::from_slice(&bytes).ok_or_else(|| {
                    AuditError::StoreContract(format!(
                        "stored hash {index} in audit_hashes is {} bytes, not {HASH_LEN}",
                        bytes.len()
                    ))
                })
            })
            .collect()
    }
}

/// An audit store in one SQLite database file.
///
/// Several threads and several processes may append to the same file: each append is one
/// `BEGIN IMMEDIATE` transaction, and writers wait for each other up to the busy timeout. Commits
/// are durable (WAL with `synchronous = FULL`, as for the key store). Reads never block appends.
///
/// ```
/// use custodian::audit::{Action, AuditEvent, AuditLog, SqliteAuditStore};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("audit.db");
/// let log = AuditLog::new(SqliteAuditStore::open(&path)?);
/// let entry = log.append(AuditEvent::new(1_700_000_000, "staff-7", Action::MfaVerified, "staff-7/phone"))?;
/// assert_eq!(entry.index, 0);
/// # Ok(())
/// # }
/// ```
pub struct SqliteAuditStore {
    pool: Arc<Pool>,
}

impl SqliteAuditStore {
    /// Opens (creating if needed) the audit tables in the SQLite file at `path`. In-memory
    /// databases (`:memory:`) are refused: use [`MemoryAuditStore`](super::MemoryAuditStore).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, AuditError> {
        Self::open_with_busy_timeout(path, Duration::from_secs(10))
    }

    /// Like [`SqliteAuditStore::open`], waiting at most `busy_timeout` for another writer.
    pub fn open_with_busy_timeout(
        path: impl AsRef<Path>,
        busy_timeout: Duration,
    ) -> Result<Self, AuditError> {
        let pool = Pool::new(path.as_ref(), busy_timeout).map_err(|message| AuditError::Store {
            message,
            source: None,
        })?;
        let store = Self::from_pool(Arc::new(pool));
        store.with_conn(|conn| {
            create_tables(conn).map_err(|e| {
                AuditError::store(
                    format!(
                        "cannot create the audit tables in `{}`",
                        store.path().display()
                    ),
                    e,
                )
            })
        })?;
        Ok(store)
    }

    /// A store over connections the caller already has (the key store's), whose file holds the
    /// audit tables already ([`create_tables`]).
    pub(crate) fn from_pool(pool: Arc<Pool>) -> Self {
        Self { pool }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.pool.path()
    }

    fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, AuditError>,
    ) -> Result<T, AuditError> {
        self.pool.with_conn(
            |e| AuditError::store(format!("cannot open `{}`", self.path().display()), e),
            f,
        )
    }
}

impl core::fmt::Debug for SqliteAuditStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SqliteAuditStore")
            .field("path", &self.path())
            .finish()
    }
}

impl AuditStore for SqliteAuditStore {
    fn tree_size(&self) -> Result<u64, AuditError> {
        self.with_conn(|conn| Ok(sizes(conn)?.0))
    }

    fn append(&self, build: &mut BuildAppend<'_>) -> Result<u64, AuditError> {
        self.with_conn(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql_err("starting an audit append"))?;
            // On any error the transaction is dropped, which rolls it back.
            let first = append_with(&tx, build)?;
            tx.commit().map_err(sql_err("committing an audit append"))?;
            Ok(first)
        })
    }

    fn read_entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, AuditError> {
        self.with_conn(|conn| {
            // Rows below the size never change, so the size and the rows need no common snapshot.
            let (log_size, _) = sizes(conn)?;
            if start > end || end > log_size {
                return Err(AuditError::SizeOutOfRange {
                    size: end,
                    log_size,
                });
            }
            let what = "reading audit entries";
            let mut stmt = conn
                .prepare_cached(
                    "SELECT idx, entry FROM audit_entries WHERE idx >= ?1 AND idx < ?2 ORDER BY idx",
                )
                .map_err(sql_err(what))?;
            let mut rows = stmt
                .query(params![to_i64(start)?, to_i64(end)?])
                .map_err(sql_err(what))?;
            let mut out = Vec::new();
            let mut expected = start;
            while let Some(row) = rows.next().map_err(sql_err(what))? {
                let index: i64 = row.get(0).map_err(sql_err(what))?;
                if to_u64(index, "an entry index")? != expected {
                    break;
                }
                out.push(row.get(1).map_err(sql_err(what))?);
                expected += 1;
            }
            if expected != end {
                return Err(AuditError::StoreContract(format!(
                    "entry {expected} is missing from audit_entries, which holds entries up to \
                     {}: rows were deleted (the store was tampered with)",
                    log_size - 1
                )));
            }
            Ok(out)
        })
    }

    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, AuditError> {
        self.with_conn(|conn| ConnReader(conn).read_hashes(indexes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Action, AuditEvent, AuditLog};

    fn event(i: u64) -> AuditEvent {
        AuditEvent::new(i, "actor", Action::MfaVerified, format!("user-{i}/phone"))
    }

    #[test]
    fn append_in_commits_with_the_callers_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let log = AuditLog::new(SqliteAuditStore::open(&path).unwrap());
        log.append(event(0)).unwrap();

        let pool = Pool::new(&path, Duration::from_secs(5)).unwrap();
        let mut conn = pool.connect().unwrap();
        create_tables(&conn).unwrap();

        // Outside a transaction: refused.
        let mut prepared = PreparedAppend::new(&[event(1)]).unwrap();
        assert!(matches!(
            append_in(&conn, &mut prepared),
            Err(AuditError::StoreContract(_))
        ));

        // Rolled back with the caller's transaction: nothing stored.
        {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .unwrap();
            assert_eq!(append_in(&tx, &mut prepared).unwrap(), 1);
            tx.rollback().unwrap();
        }
        assert_eq!(log.tree_size().unwrap(), 1);

        // Committed with it: stored, and the tree is the one single appends give.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .unwrap();
        tx.execute_batch(
            "CREATE TABLE other_change (x INTEGER) STRICT; INSERT INTO other_change VALUES (7);",
        )
        .unwrap();
        let mut prepared = PreparedAppend::new(&[event(1), event(2)]).unwrap();
        assert_eq!(append_in(&tx, &mut prepared).unwrap(), 1);
        tx.commit().unwrap();
        assert_eq!(log.tree_size().unwrap(), 3);
        let memory = AuditLog::new(crate::audit::MemoryAuditStore::new());
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
    fn memory_databases_are_refused() {
        let err = SqliteAuditStore::open(":memory:").unwrap_err();
        assert!(err.to_string().contains("in-memory"), "{err}");
    }

    #[test]
    fn create_tables_is_idempotent_and_the_tables_are_append_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let log = AuditLog::new(SqliteAuditStore::open(&path).unwrap());
        log.append(event(0)).unwrap();
        let _again = SqliteAuditStore::open(&path).unwrap();
        let conn = Connection::open(&path).unwrap();
        create_tables(&conn).unwrap();
        for sql in [
            "DELETE FROM audit_entries",
            "UPDATE audit_entries SET entry = x'00'",
            "DELETE FROM audit_hashes",
            "UPDATE audit_hashes SET hash = zeroblob(32)",
        ] {
            let err = conn.execute(sql, []).unwrap_err();
            assert!(err.to_string().contains("is append-only"), "{sql}: {err}");
        }
        assert_eq!(log.tree_size().unwrap(), 1);
    }

    #[test]
    fn debug_shows_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let store = SqliteAuditStore::open(&path).unwrap();
        assert_eq!(
            format!("{store:?}"),
            format!("SqliteAuditStore {{ path: {path:?} }}")
        );
    }
}
