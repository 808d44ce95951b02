//! PostgreSQL storage shared by several application servers (feature `postgres`).
//!
//! One [`Postgres`] handle (a connection pool, a tokio runtime handle and a per-call timeout) is
//! shared by the PostgreSQL stores: [`PgKeyStore`](crate::keys::PgKeyStore) for key rings and
//! subject keys, [`PgFactorStore`] for MFA factors and recovery codes, and
//! [`PgAuditStore`](crate::audit::PgAuditStore) for the audit log. Their tables are prefixed `custodian_` and live in the pool's `search_path`;
//! [`Postgres::migrate`] creates and upgrades them (`docs/KEYSTORE.md`, `docs/MFA.md`).
//!
//! # Synchronous stores over an async driver
//!
//! custodian's store traits are synchronous. A store call spawns its query on the tokio runtime
//! ([`Handle::spawn`]) and waits for the answer on a channel, at most for the handle's timeout
//! ([`Postgres::with_timeout`], default 5 s). A call that does not finish in time, or that cannot
//! reach the server, fails with a "store unavailable" error (for example
//! [`KeyError::StoreUnavailable`](crate::keys::KeyError::StoreUnavailable)) and its task is
//! aborted; the pool reconnects by itself once the server is back.
//!
//! A call that timed out may still have been applied by the server (as with any lost reply):
//! every store change is a compare-and-set, so retrying it is safe.
//!
//! **Never call the synchronous stores on a tokio worker thread.** The wait blocks the thread: on
//! a multi-thread runtime that takes a worker away from every other task, and on a current-thread
//! runtime the query can never run, so the call fails after the timeout. From async code, call
//! them through `tokio::task::spawn_blocking` (as custodian's async API does).
//!
//! # TLS
//!
//! custodian enables no TLS feature of sqlx: cargo unifies the application's sqlx features with
//! custodian's, so enable the TLS feature you want on your own `sqlx` dependency, configure it on
//! the pool you build, and pass that pool to [`Postgres::from_pool`]. sqlx and tokio are
//! re-exported ([`postgres::sqlx`](sqlx), [`postgres::tokio`](tokio)) for applications that do
//! not depend on them themselves.
//!
//! # Toolchain
//!
//! sqlx 0.9 needs Rust 1.94 or newer; the default build of custodian needs 1.89.

mod factor_store;
mod schema;
pub(crate) use schema::bucket_sql;

pub use factor_store::PgFactorStore;
pub use schema::{Migrated, SCHEMA_VERSION};
/// The sqlx release custodian is built with (PostgreSQL driver, tokio runtime, no TLS).
pub use sqlx;
/// The tokio release the driver runs on ([`Postgres::runtime`] is one of its handles).
pub use tokio;

use core::fmt;
use core::future::Future;
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;
use thiserror::Error;
use tokio::runtime::{Handle, Runtime};

/// The per-call timeout of a new handle.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections of a pool opened by [`Postgres::connect`].
const CONNECT_MAX_CONNECTIONS: u32 = 10;

/// Errors of the PostgreSQL layer; each store turns them into its own error type.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PostgresError {
    /// The server could not be reached, or did not answer in time.
    #[error("{0}")]
    Unavailable(String),
    /// The server answered with an error.
    #[error("{0}")]
    Database(String),
    /// [`Postgres::from_pool`] was called outside a tokio runtime.
    #[error(
        "`Postgres::from_pool` must be called inside a tokio runtime (the pool's driver runs on it); call it from async code or inside `Runtime::enter`, or use `Postgres::connect`, which starts a runtime of its own"
    )]
    NoRuntime,
    /// The connection URL could not be used.
    #[error("invalid PostgreSQL connection url: {0}")]
    InvalidUrl(String),
    /// A value does not fit PostgreSQL's signed 64-bit `BIGINT`.
    #[error(
        "{what} is {value}, above the largest value PostgreSQL's BIGINT stores ({})",
        i64::MAX
    )]
    ValueOutOfRange {
        /// The value's name.
        what: &'static str,
        /// The value.
        value: u64,
    },
    /// The database was migrated by a newer custodian with a schema this build does not know.
    #[error(
        "custodian's PostgreSQL schema is at version {found}, newer than this build supports ({supported}); upgrade custodian"
    )]
    SchemaTooNew {
        /// Version found in `custodian_schema`.
        found: u32,
        /// Newest version this build knows.
        supported: u32,
    },
}

/// A connection pool, the tokio runtime its driver runs on, and the timeout of every store call.
///
/// Cheap to clone; clones share the pool and the runtime.
#[derive(Clone)]
pub struct Postgres {
    shared: Arc<Shared>,
    timeout: Duration,
}

struct Shared {
    pool: PgPool,
    handle: Handle,
    /// The runtime [`Postgres::connect`] started when none was running; `None` otherwise.
    _runtime: OwnedRuntime,
    /// Set once this process has checked (or brought) the schema at [`SCHEMA_VERSION`].
    schema_ready: AtomicBool,
}

/// A runtime owned by the handle. Dropping a runtime normally waits for its tasks, which panics in
/// async code; this one is shut down in the background, so the last clone may be dropped anywhere.
struct OwnedRuntime(Option<Runtime>);

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl Postgres {
    /// Uses a pool the application already has (with its own TLS, size and timeouts), on the
    /// tokio runtime of the calling thread.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use custodian::postgres::{Postgres, sqlx::postgres::PgPoolOptions};
    ///
    /// let pool = PgPoolOptions::new()
    ///     .max_connections(20)
    ///     .connect("postgres://app@db.internal/shop")
    ///     .await?;
    /// let pg = Postgres::from_pool(pool)?;
    /// pg.migrate().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_pool(pool: PgPool) -> Result<Self, PostgresError> {
        let handle = Handle::try_current().map_err(|_| PostgresError::NoRuntime)?;
        Ok(Self::new(pool, handle, None))
    }

    /// Opens a pool of up to 10 connections to `url`, on the current tokio runtime or, outside
    /// one, on a small runtime of its own (two worker threads, stopped when the last clone is
    /// dropped). Connections are opened on first use, so this does not wait for the server.
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use custodian::keys::{KeyManager, LocalRootKey, PgKeyStore};
    /// use custodian::postgres::Postgres;
    ///
    /// let pg = Postgres::connect("postgres://app@db.internal/shop")?;
    /// let store = PgKeyStore::open(pg)?;
    /// let keys = KeyManager::new(store, LocalRootKey::from_env("CUSTODIAN_ROOT_KEY")?)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn connect(url: &str) -> Result<Self, PostgresError> {
        let (handle, runtime) = match Handle::try_current() {
            Ok(handle) => (handle, None),
            Err(_) => {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("custodian-postgres")
                    .enable_all()
                    .build()
                    .map_err(|e| {
                        PostgresError::Unavailable(format!(
                            "cannot start a tokio runtime for PostgreSQL: {e}"
                        ))
                    })?;
                (runtime.handle().clone(), Some(runtime))
            }
        };
        // The pool starts maintenance tasks on the runtime it is created in.
        let pool = {
            let _entered = handle.enter();
            PgPoolOptions::new()
                .max_connections(CONNECT_MAX_CONNECTIONS)
                .acquire_timeout(DEFAULT_TIMEOUT)
                .connect_lazy(url)
                .map_err(|e| PostgresError::InvalidUrl(e.to_string()))?
        };
        Ok(Self::new(pool, handle, runtime))
    }

    fn new(pool: PgPool, handle: Handle, runtime: Option<Runtime>) -> Self {
        Self {
            shared: Arc::new(Shared {
                pool,
                handle,
                _runtime: OwnedRuntime(runtime),
                schema_ready: AtomicBool::new(false),
            }),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same handle with another per-call timeout: how long a store call waits for the server
    /// before it fails as unavailable.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.shared.pool
    }

    /// The runtime the queries run on.
    pub fn runtime(&self) -> &Handle {
        &self.shared.handle
    }

    /// Creates custodian's tables, or upgrades them to [`SCHEMA_VERSION`], in one transaction
    /// under an advisory lock: servers starting at once migrate once, the others wait and find
    /// the work done. Refuses a database migrated by a newer build. For async code; the stores'
    /// `open` does the same synchronously.
    pub async fn migrate(&self) -> Result<Migrated, PostgresError> {
        let migrated = schema::migrate(self.shared.pool.clone()).await?;
        self.shared.schema_ready.store(true, Ordering::Release);
        Ok(migrated)
    }

    /// [`Postgres::migrate`] for synchronous callers (see the module docs on worker threads);
    /// skipped when this handle has migrated already.
    pub fn migrate_blocking(&self) -> Result<Migrated, PostgresError> {
        if self.shared.schema_ready.load(Ordering::Acquire) {
            return Ok(Migrated {
                from: SCHEMA_VERSION,
                to: SCHEMA_VERSION,
            });
        }
        let pool = self.shared.pool.clone();
        let migrated = self.run("migrating custodian's schema", async move {
            schema::migrate(pool).await
        })?;
        self.shared.schema_ready.store(true, Ordering::Release);
        Ok(migrated)
    }

    /// Runs `task` on the runtime and waits for its result, at most for the timeout: the bridge
    /// between the synchronous store traits and the async driver. `what` names the operation in
    /// errors ("loading key ring `x`").
    pub(crate) fn run<T, F>(&self, what: &str, task: F) -> Result<T, PostgresError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, PostgresError>> + Send + 'static,
    {
        let (sender, receiver) = mpsc::sync_channel(1);
        let join = self.shared.handle.spawn(async move {
            // The receiver is gone only after a timeout; the result is then dropped.
            let _ = sender.send(task.await);
        });
        match receiver.recv_timeout(self.timeout) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // Stop the query: an unfinished transaction rolls back when its connection goes.
                join.abort();
                Err(PostgresError::Unavailable(format!(
                    "{what} did not finish within {} ms (is the server reachable? a call on a tokio worker thread also ends this way: use spawn_blocking)",
                    self.timeout.as_millis()
                )))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(PostgresError::Unavailable(format!(
                "{what} was dropped before it finished: the tokio runtime is shutting down"
            ))),
        }
    }
}

impl fmt::Debug for Postgres {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The connection options hold the password: only sizes are shown.
        f.debug_struct("Postgres")
            .field("pool_size", &self.shared.pool.size())
            .field("timeout", &self.timeout)
            .field("owns_runtime", &self.shared._runtime.0.is_some())
            .finish_non_exhaustive()
    }
}

/// Turns a driver error into "unavailable" (the server cannot be reached or is going away: worth
/// retrying later) or "database" (the server refused the statement), naming the operation.
pub(crate) fn classify(what: &str, error: sqlx::Error) -> PostgresError {
    let unavailable = match &error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // Class 08: connection exception; 57P01-03: shutdown or restart in progress;
            // 53300: too many connections.
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    };
    if unavailable {
        PostgresError::Unavailable(format!("{what} failed: {error}"))
    } else {
        PostgresError::Database(format!("{what} failed: {error}"))
    }
}

/// `value` as a PostgreSQL `BIGINT`; values above `i64::MAX` are refused, never wrapped.
pub(crate) fn bigint(what: &'static str, value: u64) -> Result<i64, PostgresError> {
    i64::try_from(value).map_err(|_| PostgresError::ValueOutOfRange { what, value })
}

/// The advisory-lock key of one key ring (two-key form: a class and a 32-bit hash of the name).
/// Two rings may share a key; that only serialises them, it never lets a race through.
pub(crate) fn ring_lock_key(ring: &str) -> (i32, i32) {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(b"custodian/v1/pg-ring-lock")
        .chain_update(ring.as_bytes())
        .finalize();
    let mut first = [0u8; 4];
    first.copy_from_slice(digest.get(..4).unwrap_or(&[0; 4]));
    (LOCK_CLASS_RING, i32::from_be_bytes(first))
}

/// Advisory-lock classes (first key of the two-key form), in ASCII: "cust" for rings, "cusm" for
/// migrations.
pub(crate) const LOCK_CLASS_RING: i32 = 0x6375_7374;
pub(crate) const LOCK_CLASS_MIGRATION: i32 = 0x6375_736d;
/// "cusf": the key store's change feed (one lock, second key 0).
pub(crate) const LOCK_CLASS_FEED: i32 = 0x6375_7366;
/// "cusa": the audit log (one lock, second key 0), held by every append until it commits.
pub(crate) const LOCK_CLASS_AUDIT: i32 = 0x6375_7361;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_lock_keys_follow_the_documented_formula() {
        // docs/KEYSTORE.md §7: key2 = first 4 bytes of SHA-256("custodian/v1/pg-ring-lock" ‖ name),
        // big-endian. Computed independently (Python's hashlib): 8dd92876 for `customers`.
        assert_eq!(
            ring_lock_key("customers"),
            (0x6375_7374, i32::from_be_bytes([0x8d, 0xd9, 0x28, 0x76]))
        );
        assert_ne!(ring_lock_key("customers"), ring_lock_key("orders"));
    }

    #[test]
    fn connection_failures_are_unavailable_and_refusals_are_not() {
        for error in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        ] {
            match classify("loading key ring `r`", error) {
                PostgresError::Unavailable(message) => {
                    assert!(
                        message.starts_with("loading key ring `r` failed: "),
                        "{message}"
                    )
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            classify("x", sqlx::Error::RowNotFound),
            PostgresError::Database(_)
        ));
    }

    #[test]
    fn bigint_refuses_what_does_not_fit() {
        assert_eq!(bigint("v", 0).unwrap(), 0);
        assert_eq!(bigint("v", i64::MAX as u64).unwrap(), i64::MAX);
        let err = bigint("usage_reserved", u64::MAX).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "usage_reserved is {}, above the largest value PostgreSQL's BIGINT stores ({})",
                u64::MAX,
                i64::MAX
            )
        );
    }
}
