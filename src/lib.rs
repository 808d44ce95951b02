//! custodian protects customer data inside a shop backend.
//!
//! # Start with the facade
//!
//! [`Custodian`] is what most backends need: build it over a key store and a root key, then
//!
//! - **seal / open** typed fields ([`Custodian::seal`], [`Custodian::open`], or by field name
//!   through [`Custodian::record`]): an [`Encrypted<T>`](record::Encrypted) serializes as its
//!   ciphertext and maps to a database column;
//! - **encrypt / decrypt** bytes ([`Custodian::encrypt`], [`Custodian::decrypt`]);
//! - **rotate, rewrap and re-index** ([`Custodian::rotate`], [`Custodian::rewrap_all`],
//!   [`Custodian::reindex_all`], see [`rotation`]);
//! - **erase** a customer ([`Custodian::erase_subject`]) and prove it
//!   ([`Custodian::erasure_receipt`]);
//! - **reveal** fields to staff through the access policy, audited ([`Custodian::reveal`]);
//! - **MFA** for staff with keys from the same hierarchy ([`Custodian::mfa`]).
//!
//! Every error is one [`Error`]; map it by [`Error::kind`] ([`ErrorKind`] lists the HTTP status
//! each kind usually gets).
//!
//! ```
//! use custodian::keys::{LocalRootKey, MemoryKeyStore};
//! use custodian::Custodian;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let custodian = Custodian::builder()
//!     .key_store(MemoryKeyStore::new()) // SqliteKeyStore::open("keys.db")? in production
//!     .root_key(LocalRootKey::random()?) // LocalRootKey::from_file("root.key")? in production
//!     .build()?;
//! let jane = custodian.record("customers", "42", "cus_42");
//! let email = jane.seal("email", "jane@example.com")?;
//! assert_eq!(jane.open("email", &email)?, "jane@example.com");
//!
//! custodian.erase_subject("cus_42")?; // crypto-shredded: no copy of her data opens any more
//! assert!(jane.open("email", &email).unwrap_err().is_subject_erased());
//! # Ok(())
//! # }
//! ```
//!
//! # The layers
//!
//! Each folder is one layer, listed here from the bottom up (docs/ARCHITECTURE.md has the exact
//! dependencies):
//!
//! - [`secret`]: key material that zeroizes on drop and never prints;
//! - [`crypto`]: AEAD suites behind a small provider interface (AWS-LC by default, pure-Rust
//!   RustCrypto without the `aws-lc` feature);
//! - [`envelope`]: the versioned ciphertext format: a fresh data key per message, wrapped by a
//!   key-encryption key, with an [`EncryptionContext`] bound into both layers;
//! - [`audit`]: a tamper-evident audit log (RFC 9162 Merkle tree, signed C2SP checkpoints,
//!   inclusion and consistency proofs, erasure receipts) over a storage trait;
//! - [`keys`]: the key hierarchy (root key, versioned key rings, per-subject keys), rotation,
//!   crypto-shredding and the durable key stores, which record their own audit entries;
//! - [`record`]: typed encrypted fields ([`record::Encrypted`]) and blind indexes for lookups on
//!   encrypted columns;
//! - [`mfa`]: TOTP with enrollment, replay protection, lockout, recovery codes and step-up;
//! - [`mask`] and [`rbac`]: masking of shown values (`j***@example.com`) and role-based access
//!   control with field views, compiled from TOML or JSON policies;
//! - the facade: [`Custodian`], [`Error`], [`RecordFields`], [`rotation`], [`reveal`], and
//!   [`stores`], which opens the key and MFA stores from one location (a directory or a URL);
//! - [`asynchronous`] (feature `tokio`): the facade for async code; [`postgres`] (feature
//!   `postgres`): the stores several app servers share.
//!
//! # Without the facade
//!
//! The envelope layer alone, with a key-encryption key you manage yourself:
//!
//! ```
//! use custodian::envelope::{self, EncryptionContext, StaticKek};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // In production the key-encryption key comes from a key store; here a fresh one will do.
//! let kek = StaticKek::generate("customers", 1)?;
//! let context = EncryptionContext::new()
//!     .with("table", "customers")?
//!     .with("record", "42")?
//!     .with("field", "email")?;
//!
//! let sealed = envelope::seal(&kek, &context, b"jane@example.com")?;
//! let opened = envelope::open(&kek, &context, &sealed)?;
//! assert_eq!(opened.expose_secret(), b"jane@example.com");
//!
//! // The same bytes under another record's context do not open.
//! let other = EncryptionContext::new()
//!     .with("table", "customers")?
//!     .with("record", "43")?
//!     .with("field", "email")?;
//! assert!(envelope::open(&kek, &other, &sealed).is_err());
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[cfg(feature = "tokio")]
pub mod asynchronous;
pub mod audit;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod crypto;
pub mod envelope;
mod error;
mod facade;
mod fields;
pub mod keys;
pub mod mask;
pub mod mfa;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod rbac;
pub mod record;
pub mod reveal;
pub mod rotation;
pub mod secret;
#[cfg(feature = "sqlite")]
mod sqlite;
pub mod stores;

pub use envelope::{EncryptionContext, EnvelopeError, Header, Kek, KeyId, StaticKek};
pub use error::{Error, ErrorKind};
pub use facade::{
    Clock, Custodian, CustodianBuilder, DEFAULT_AUDIT_ORIGIN, DEFAULT_MFA_RING, Missing,
    SystemClock,
};
pub use fields::RecordFields;
pub use reveal::{
    Authorized, Denied, RevealRequest, Revealed, RevealedField, SealedField, SealedRecord,
};
pub use secret::{SecretBytes, SecretKey};
pub use stores::Stores;

/// The README's examples, compiled and run as doc tests (they use the SQLite, PostgreSQL and async
/// parts, so they need those features: the README's test command turns all features on).
#[doc = include_str!("../README.md")]
#[cfg(all(doctest, feature = "sqlite", feature = "postgres", feature = "tokio"))]
pub struct ReadmeDoctests;
