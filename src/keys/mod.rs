//! The key hierarchy: root key -> versioned key rings -> per-subject keys -> per-message data keys.
//!
//! - [`RootKeyProvider`] wraps the key-ring versions ([`LocalRootKey`] here; a KMS or HSM later).
//! - Key rings have versions with Vault-transit semantics ([`ring`]): rotate, thresholds, states,
//!   destroy, a rotation policy with usage limits.
//! - Per-subject (per-customer) keys make crypto-shredding possible: [`KeyManager::erase_subject`]
//!   makes every ciphertext of that customer unopenable, wherever it was copied.
//! - A [`KeyStore`] keeps the wrapped keys ([`SqliteKeyStore`], [`MemoryKeyStore`]); every row is
//!   authenticated, every change is a compare-and-set, so several processes can share one store.
//! - The [`KeyManager`] ties it together and caches unwrapped keys; the envelope layer does the
//!   per-message encryption.
//!
//! The schema and everything that is authenticated are specified in `docs/KEYSTORE.md`.

mod admin;
mod audit;
mod cache;
mod error;
mod feed;
mod integrity;
mod io_guard;
mod ledger;
mod manager;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
mod rewrap;
pub mod ring;
mod root;
#[cfg(feature = "sqlite")]
mod sqlite;
mod state;
pub mod store;
mod subject;

pub use error::KeyError;
#[cfg(feature = "tokio")]
pub(crate) use io_guard::without_io;
pub use manager::{
    Destruction, Erasure, KeyManager, LiveVersions, ManagerOptions, RingWatch, Rotation,
    SubjectGeneration, SubjectRewrapBatch,
};
pub use memory::MemoryKeyStore;
#[cfg(feature = "postgres")]
pub use postgres::PgKeyStore;
pub use rewrap::{RewrapOutcome, RewrapProgress};
pub use ring::{RingInfo, RotationPolicy, VersionInfo, VersionState};
pub use root::{LocalRootKey, RootKeyProvider, generate_key_file};
#[cfg(feature = "sqlite")]
pub use sqlite::{SCHEMA_VERSION, SqliteKeyStore};
pub use store::{Change, ChangeFeed, KeyStore};
