//! The cryptographic layer: AEAD suites behind a small provider interface.
//!
//! Everything above this layer asks a [`CryptoProvider`] for an [`AeadAlgorithm`] by [`Suite`] and never
//! names a concrete cipher crate, the way rustls plugs in `ring` or `aws-lc-rs`. The default provider
//! is [`rustcrypto::PROVIDER`] (pure Rust, with AES-NI and CLMUL used when the CPU has them). A second
//! backend implements the two traits in [`provider`] and must pass the conformance suite in
//! `tests/crypto_conformance.rs`.

mod error;
pub mod provider;
mod random;
pub mod rustcrypto;
mod suite;

pub use error::CryptoError;
pub use provider::{AeadAlgorithm, AeadKey, CryptoProvider, TAG_LEN, Tag};
pub use random::fill_random;
pub use suite::Suite;

/// The provider used when none is chosen: [`rustcrypto::PROVIDER`].
pub fn default_provider() -> &'static CryptoProvider {
    &rustcrypto::PROVIDER
}
