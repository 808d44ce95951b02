//! Opening the key store and the root key named on the command line.

use crate::Failure;
use custodian::keys::{KeyManager, KeyStore, LocalRootKey, ManagerOptions, RootKeyProvider};
use custodian::mfa::FactorStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The environment variable the library's examples and docs read the root key from.
pub(crate) const ROOT_KEY_VAR: &str = "CUSTODIAN_ROOT_KEY";

/// Where the store is and how to read the root key (global options).
#[derive(Debug, clap::Args)]
pub(crate) struct StoreArgs {
    /// The key store: an SQLite file path, or a `postgres://` URL (needs the `postgres` feature).
    // The variable's value is never shown in `--help`: a URL may hold a password.
    #[arg(
        long,
        global = true,
        env = "CUSTODIAN_STORE",
        hide_env_values = true,
        value_name = "PATH|URL"
    )]
    pub store: Option<String>,

    /// The root key file (64 hex digits or base64 of 32 bytes, mode 0600). Without it, the key
    /// is read from the `CUSTODIAN_ROOT_KEY` environment variable.
    #[arg(
        long,
        global = true,
        env = "CUSTODIAN_ROOT_KEY_FILE",
        hide_env_values = true,
        value_name = "FILE"
    )]
    pub root_key: Option<PathBuf>,

    /// Who the audit log records as the actor of this command's changes.
    #[arg(
        long,
        global = true,
        default_value = "custodian-cli",
        value_name = "NAME"
    )]
    pub actor: String,

    /// The audit log's name, signed into its checkpoints (the application's `audit_origin`).
    #[arg(
        long,
        global = true,
        default_value = custodian::DEFAULT_AUDIT_ORIGIN,
        value_name = "ORIGIN"
    )]
    pub origin: String,
}

/// Where the store lives.
#[derive(Debug, Clone)]
pub(crate) enum Location {
    /// An SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (the password is never printed: see [`Location::shown`]).
    Postgres(String),
}

impl Location {
    pub(crate) fn parse(args: &StoreArgs) -> Result<Self, Failure> {
        let store = args.store.as_deref().ok_or_else(|| {
            Failure::Usage(
                "no store given: pass `--store PATH` (an SQLite file) or `--store postgres://...`, \
                 or set CUSTODIAN_STORE"
                    .into(),
            )
        })?;
        if custodian::stores::is_postgres_url(store) {
            Ok(Location::Postgres(store.to_owned()))
        } else {
            Ok(Location::Sqlite(PathBuf::from(store)))
        }
    }

    /// The location for messages, without a password.
    pub(crate) fn shown(&self) -> String {
        match self {
            Location::Sqlite(path) => path.display().to_string(),
            Location::Postgres(url) => redact_password(url),
        }
    }
}

/// `postgres://user:secret@host/db` as `postgres://user:***@host/db`.
pub(crate) fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// Where the root key came from.
#[derive(Debug, Clone)]
pub(crate) enum RootSource {
    File(PathBuf),
    Env,
}

impl RootSource {
    pub(crate) fn of(args: &StoreArgs) -> Result<Self, Failure> {
        match &args.root_key {
            Some(path) => Ok(RootSource::File(path.clone())),
            None if std::env::var_os(ROOT_KEY_VAR).is_some() => Ok(RootSource::Env),
            None => Err(Failure::Usage(format!(
                "no root key given: pass `--root-key FILE` (or set CUSTODIAN_ROOT_KEY_FILE), or set {ROOT_KEY_VAR}"
            ))),
        }
    }

    /// Reads the key exactly as the library does (the file's mode is checked there).
    pub(crate) fn load(&self) -> Result<LocalRootKey, Failure> {
        let loaded = match self {
            RootSource::File(path) => LocalRootKey::from_file(path),
            RootSource::Env => LocalRootKey::from_env(ROOT_KEY_VAR),
        };
        loaded.map_err(Failure::from)
    }
}

/// The opened store, as a key manager (whose store is also the audit log's).
pub(crate) struct Opened {
    pub keys: KeyManager,
    pub location: Location,
    /// The same store as the manager's, for the facade (MFA commands).
    pub store: Arc<dyn KeyStore>,
    pub root: Arc<dyn RootKeyProvider>,
    /// Keeps the PostgreSQL handle (and its runtime) alive while the stores use it.
    #[cfg(feature = "postgres")]
    pub postgres: Option<custodian::postgres::Postgres>,
}

/// Opens the store and the root key. An SQLite path that does not exist is refused rather than
/// created: a typo must not start an empty store with a fresh integrity key.
pub(crate) fn open(args: &StoreArgs) -> Result<Opened, Failure> {
    let location = Location::parse(args)?;
    let root: Arc<dyn RootKeyProvider> = Arc::new(RootSource::of(args)?.load()?);
    let options = ManagerOptions {
        actor: args.actor.clone(),
        // A command runs once: no change feed to follow.
        change_feed_poll_ms: 0,
        ..ManagerOptions::default()
    };
    let (store, postgres) = open_key_store(&location)?;
    let keys = KeyManager::with_options(Arc::clone(&store), Arc::clone(&root), options)?;
    #[cfg(not(feature = "postgres"))]
    let () = postgres;
    Ok(Opened {
        keys,
        location,
        store,
        root,
        #[cfg(feature = "postgres")]
        postgres,
    })
}

#[cfg(feature = "postgres")]
type PgHandle = Option<custodian::postgres::Postgres>;
#[cfg(not(feature = "postgres"))]
type PgHandle = ();

fn open_key_store(location: &Location) -> Result<(Arc<dyn KeyStore>, PgHandle), Failure> {
    match location {
        Location::Sqlite(path) => {
            require_file(path)?;
            let store = custodian::keys::SqliteKeyStore::open(path)?;
            #[cfg(feature = "postgres")]
            return Ok((Arc::new(store), None));
            #[cfg(not(feature = "postgres"))]
            return Ok((Arc::new(store), ()));
        }
        Location::Postgres(url) => open_postgres(url),
    }
}

#[cfg(feature = "postgres")]
fn open_postgres(url: &str) -> Result<(Arc<dyn KeyStore>, PgHandle), Failure> {
    let pg = custodian::postgres::Postgres::connect(url).map_err(|e| {
        Failure::Store(format!(
            "cannot use PostgreSQL store `{}`: {e}",
            redact_password(url)
        ))
    })?;
    let store = custodian::keys::PgKeyStore::open(pg.clone())?;
    Ok((Arc::new(store), Some(pg)))
}

#[cfg(not(feature = "postgres"))]
fn open_postgres(url: &str) -> Result<(Arc<dyn KeyStore>, PgHandle), Failure> {
    Err(postgres_feature_missing(url))
}

#[cfg(not(feature = "postgres"))]
fn postgres_feature_missing(url: &str) -> Failure {
    Failure::Usage(format!(
        "`{}` is a PostgreSQL URL, but this custodian was built without the `postgres` feature; \
         install it with `cargo install custodian --features cli,postgres`",
        redact_password(url)
    ))
}

/// Refuses an SQLite path that is not an existing file.
pub(crate) fn require_file(path: &Path) -> Result<(), Failure> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(_) => Err(Failure::Store(format!(
            "store `{}` is not a file",
            path.display()
        ))),
        Err(e) => Err(Failure::Store(format!(
            "cannot open store `{}`: {e} (custodian does not create a store; the application does)",
            path.display()
        ))),
    }
}

impl Opened {
    /// The MFA factor store in the same database.
    pub(crate) fn factor_store(&self) -> Result<Arc<dyn FactorStore>, Failure> {
        match &self.location {
            Location::Sqlite(path) => Ok(Arc::new(custodian::mfa::SqliteFactorStore::open(path)?)),
            #[cfg(feature = "postgres")]
            Location::Postgres(_) => {
                let pg = self
                    .postgres
                    .clone()
                    .ok_or_else(|| Failure::Store("the PostgreSQL handle is missing".into()))?;
                Ok(Arc::new(custodian::mfa::PgFactorStore::open(pg)?))
            }
            #[cfg(not(feature = "postgres"))]
            Location::Postgres(url) => Err(postgres_feature_missing(url)),
        }
    }

    /// The current time (Unix seconds).
    pub(crate) fn now(&self) -> u64 {
        now()
    }
}

/// The system clock, Unix seconds.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
