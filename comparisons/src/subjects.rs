//! A key ring with a chosen number of customers (subject keys) in an SQLite key store, for the
//! growth of a subject seal and of a rotation with the number of customers.

use std::sync::Arc;

use custodian::SecretKey;
use custodian::crypto::Suite;
use custodian::keys::{
    KeyError, KeyManager, KeyStore, LocalRootKey, ManagerOptions, RotationPolicy, SqliteKeyStore,
};

/// The time of every operation.
pub const NOW: u64 = 1_700_000_000;

/// The ring every subject key belongs to.
pub const RING: &str = "customers";

/// A ring of `count` subject keys in a new SQLite file.
pub struct Subjects {
    /// A manager without a subject cache: every seal for a subject reads its row from the store,
    /// checks its MAC and unwraps its key.
    pub uncached: KeyManager,
    /// A manager with the default options, for rotations and the rewrap job.
    pub manager: KeyManager,
    /// The subjects' names, `cus_0` to `cus_{count-1}`.
    pub names: Vec<String>,
    _dir: tempfile::TempDir,
}

fn manager(store: Arc<dyn KeyStore>, options: ManagerOptions) -> Result<KeyManager, KeyError> {
    let root = LocalRootKey::new(&SecretKey::from_bytes([7; 32]));
    KeyManager::with_options(store, Arc::new(root), options)
}

impl Subjects {
    /// Creates the store, the ring, and `count` subject keys, 10,000 per transaction.
    pub fn create(count: usize) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let dir = tempfile::tempdir()?;
        let store: Arc<dyn KeyStore> = Arc::new(SqliteKeyStore::open(dir.path().join("keys.db"))?);
        let keys = manager(Arc::clone(&store), ManagerOptions::default())?;
        keys.create_ring(RING, Suite::default(), RotationPolicy::default(), NOW)?;
        let names: Vec<String> = (0..count).map(|i| format!("cus_{i}")).collect();
        for chunk in names.chunks(10_000) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            keys.create_subjects(RING, &refs, NOW)?;
        }
        let uncached = manager(
            store,
            ManagerOptions {
                subject_cache_capacity: 0,
                ..ManagerOptions::default()
            },
        )?;
        Ok(Self {
            uncached,
            manager: keys,
            names,
            _dir: dir,
        })
    }
}
