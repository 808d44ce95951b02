//! Connections to one SQLite database file, shared by the SQLite stores (keys, MFA factors).
//!
//! Each operation takes a connection from a small idle list (or opens one), runs without holding
//! any lock of ours, and gives it back: several threads read in parallel (WAL), and writers queue on
//! SQLite's own lock with a busy timeout. rusqlite's types stay inside the crate.

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Connections kept open for reuse.
const MAX_IDLE_CONNECTIONS: usize = 8;

/// A pool of connections to one database file, each set up the way the stores rely on.
pub(crate) struct Pool {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
}

impl Pool {
    /// A pool for the file at `path`. SQLite's in-memory databases (`:memory:`, an empty path) are
    /// refused: every pooled connection would get a database of its own, and data written through
    /// one would be missing from the next. The memory stores serve that purpose.
    pub(crate) fn new(path: &Path, busy_timeout: Duration) -> Result<Self, String> {
        let name = path.as_os_str();
        if name.is_empty()
            || name == ":memory:"
            || name.to_string_lossy().starts_with("file::memory:")
        {
            return Err(format!(
                "`{}` is an in-memory SQLite database, which a connection pool cannot share; \
                 give a file path, or use the memory store",
                path.display()
            ));
        }
        Ok(Self {
            path: path.to_path_buf(),
            busy_timeout,
            idle: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn busy_timeout(&self) -> Duration {
        self.busy_timeout
    }

    /// A new connection: WAL (readers never block the writer), `synchronous = FULL` (a commit
    /// survives power loss, not just a crash), `secure_delete` (deleted key bytes are overwritten,
    /// not just unlinked), foreign keys on.
    pub(crate) fn connect(&self) -> Result<Connection, rusqlite::Error> {
        let conn = Connection::open(&self.path)?;
        conn.busy_timeout(self.busy_timeout)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(
            "PRAGMA synchronous = FULL; PRAGMA secure_delete = ON; PRAGMA foreign_keys = ON;",
        )?;
        Ok(conn)
    }

    fn release(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE_CONNECTIONS {
            idle.push(conn);
        }
    }

    /// Runs `f` on a pooled connection (opened on demand; no lock is held while `f` runs).
    /// `open_error` turns a failure to open into the caller's error type.
    pub(crate) fn with_conn<T, E>(
        &self,
        open_error: impl FnOnce(rusqlite::Error) -> E,
        f: impl FnOnce(&mut Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        let pooled = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => self.connect().map_err(open_error)?,
        };
        let result = f(&mut conn);
        self.release(conn);
        result
    }
}
