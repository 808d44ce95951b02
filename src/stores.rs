//! The stores of one deployment (keys with their audit log, and MFA factors), opened from one
//! location: a directory for the embedded SQLite stores, or a PostgreSQL URL for several servers.
//!
//! An application's configuration then holds one string, and the choice between SQLite and
//! PostgreSQL is not code:
//!
//! ```no_run
//! # #[cfg(feature = "sqlite")]
//! # fn main() -> Result<(), custodian::Error> {
//! use custodian::keys::LocalRootKey;
//! use custodian::{Custodian, Stores};
//!
//! let location = std::env::var("DATABASE_URL").unwrap_or_else(|_| "/var/lib/shop/keys".into());
//! let stores = Stores::open(&location)?;
//! let custodian = Custodian::builder()
//!     .with_store(stores.keys)
//!     .root_key(LocalRootKey::from_file("/etc/shop/root.key")?)
//!     .build()?;
//! let mfa = custodian.mfa_with_store(stores.factors)?;
//! # let _ = mfa;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "sqlite"))]
//! # fn main() {}
//! ```

use crate::Error;
use crate::keys::KeyStore;
use crate::mfa::FactorStore;
use std::fmt;
use std::sync::Arc;

/// The SQLite file of the key store (key rings, subject keys, the audit log) in a store directory.
pub const SQLITE_KEYS_FILE: &str = "keys.db";
/// The SQLite file of the MFA factor store in a store directory.
pub const SQLITE_MFA_FILE: &str = "mfa.db";

/// The key store and the MFA factor store of one deployment, both SQLite or both PostgreSQL.
#[derive(Clone)]
pub struct Stores {
    /// Key rings, subject keys and, in the same database, the audit log.
    pub keys: Arc<dyn KeyStore>,
    /// MFA factors and recovery codes.
    pub factors: Arc<dyn FactorStore>,
}

impl fmt::Debug for Stores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stores").finish_non_exhaustive()
    }
}

impl Stores {
    /// Opens (and creates or migrates) the stores at `location`:
    ///
    /// - a URL starting `postgres://` or `postgresql://`: the PostgreSQL stores on one connection
    ///   pool (needs the `postgres` feature), shared by every server given the same URL;
    /// - anything else is a directory (created if missing) holding the SQLite files
    ///   [`SQLITE_KEYS_FILE`] and [`SQLITE_MFA_FILE`] (needs the `sqlite` feature).
    ///
    /// Opening does I/O: from async code, call it on the blocking pool.
    pub fn open(location: &str) -> Result<Self, Error> {
        if is_postgres_url(location) {
            return Self::postgres(location);
        }
        Self::sqlite(std::path::Path::new(location))
    }

    /// The SQLite stores in directory `dir` (created if missing).
    #[cfg(feature = "sqlite")]
    pub fn sqlite(dir: &std::path::Path) -> Result<Self, Error> {
        if dir.is_file() {
            return Err(Error::Configuration(format!(
                "store location `{}` is a file; give the directory that holds (or will hold) \
                 `{SQLITE_KEYS_FILE}` and `{SQLITE_MFA_FILE}`",
                dir.display()
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::Configuration(format!(
                "cannot create store directory `{}`: {e}",
                dir.display()
            ))
        })?;
        let keys = crate::keys::SqliteKeyStore::open(dir.join(SQLITE_KEYS_FILE))?;
        let factors = crate::mfa::SqliteFactorStore::open(dir.join(SQLITE_MFA_FILE))?;
        Ok(Self {
            keys: Arc::new(keys),
            factors: Arc::new(factors),
        })
    }

    #[cfg(not(feature = "sqlite"))]
    fn sqlite(dir: &std::path::Path) -> Result<Self, Error> {
        Err(Error::Configuration(format!(
            "store location `{}` is a SQLite directory, and this build has no SQLite store: \
             enable the `sqlite` feature, or give a `postgres://` URL",
            dir.display()
        )))
    }

    /// The PostgreSQL stores at `url`, on one connection pool.
    #[cfg(feature = "postgres")]
    pub fn postgres(url: &str) -> Result<Self, Error> {
        let pg = crate::postgres::Postgres::connect(url).map_err(crate::keys::KeyError::from)?;
        let keys = crate::keys::PgKeyStore::open(pg.clone())?;
        let factors = crate::mfa::PgFactorStore::open(pg)?;
        Ok(Self {
            keys: Arc::new(keys),
            factors: Arc::new(factors),
        })
    }

    #[cfg(not(feature = "postgres"))]
    fn postgres(_url: &str) -> Result<Self, Error> {
        Err(Error::Configuration(
            "the store location is a PostgreSQL URL, and this build has no PostgreSQL store: \
             enable the `postgres` feature"
                .into(),
        ))
    }
}

/// Whether `location` names a PostgreSQL store (a `postgres://` or `postgresql://` URL, scheme in
/// any case) rather than a SQLite path: the one rule [`Stores::open`] and the `custodian` command
/// both go by.
pub fn is_postgres_url(location: &str) -> bool {
    ["postgres://", "postgresql://"].iter().any(|scheme| {
        location
            .get(..scheme.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(scheme))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgres_url_is_told_from_a_directory() {
        assert!(is_postgres_url("postgres://u@localhost/db"));
        assert!(is_postgres_url("PostgreSQL://u@localhost/db"));
        assert!(!is_postgres_url("/var/lib/shop/postgres"));
        assert!(!is_postgres_url("postgres"));
        assert!(!is_postgres_url(""));
    }

    #[cfg(not(feature = "postgres"))]
    #[test]
    fn a_postgres_url_without_the_feature_names_the_feature() {
        let error = Stores::open("postgres://u@localhost/db").unwrap_err();
        assert_eq!(error.kind(), crate::ErrorKind::Configuration);
        assert!(error.to_string().contains("`postgres` feature"), "{error}");
    }

    #[cfg(not(feature = "sqlite"))]
    #[test]
    fn a_directory_without_the_feature_names_the_feature() {
        let error = Stores::open("/var/lib/shop/keys").unwrap_err();
        assert_eq!(error.kind(), crate::ErrorKind::Configuration);
        assert!(error.to_string().contains("`sqlite` feature"), "{error}");
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn a_directory_holds_both_sqlite_stores_and_a_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let location = dir.path().join("custodian");
        let stores = Stores::open(location.to_str().unwrap()).unwrap();
        drop(stores);
        assert!(location.join(SQLITE_KEYS_FILE).is_file());
        assert!(location.join(SQLITE_MFA_FILE).is_file());

        let file = dir.path().join("keys.db");
        std::fs::write(&file, b"").unwrap();
        let error = Stores::open(file.to_str().unwrap()).unwrap_err();
        assert_eq!(error.kind(), crate::ErrorKind::Configuration);
        assert!(error.to_string().contains("is a file"), "{error}");
    }
}
