//! custodian protects customer data inside a shop backend.
//!
//! The crate is layered; each folder is one layer and depends only on the ones above it in this list:
//!
//! - [`secret`]: key material that zeroizes on drop and never prints;
//! - [`crypto`]: AEAD suites behind a small provider interface (AWS-LC by default, pure-Rust RustCrypto without the `aws-lc` feature);
//! - [`envelope`]: the versioned ciphertext format: a fresh data key per message, wrapped by a
//!   key-encryption key, with an [`EncryptionContext`] bound into both layers;
//! - [`keys`]: the key hierarchy (root key, versioned key rings, per-subject keys), rotation,
//!   crypto-shredding and the durable key store;
//! - [`audit`]: a tamper-evident audit log (RFC 9162 Merkle tree, signed C2SP checkpoints,
//!   inclusion and consistency proofs, erasure receipts) over a storage trait;
//! - [`reveal`]: the inputs and answer of [`Custodian::reveal`], which checks access, decrypts only
//!   the fields the policy shows and records who saw them.
//!
//! # Quick start
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
pub mod keys;
pub mod mask;
pub mod mfa;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod rbac;
pub mod record;
pub mod reveal;
pub mod secret;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use envelope::{EncryptionContext, EnvelopeError, Header, Kek, KeyId, StaticKek};
pub use error::{Error, ErrorKind};
pub use facade::{
    Clock, Custodian, CustodianBuilder, DEFAULT_AUDIT_ORIGIN, DEFAULT_MFA_RING, Missing,
    SystemClock,
};
pub use reveal::{Denied, RevealRequest, Revealed, RevealedField, SealedRecord};
pub use secret::{SecretBytes, SecretKey};

/// The README's examples, compiled and run as doc tests (they use the SQLite, PostgreSQL and async
/// parts, so they need those features: the README's test command turns all features on).
#[doc = include_str!("../README.md")]
#[cfg(all(doctest, feature = "sqlite", feature = "postgres", feature = "tokio"))]
pub struct ReadmeDoctests;
