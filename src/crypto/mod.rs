//! The cryptographic layer: AEAD suites behind a small provider interface.
//!
//! Everything above this layer asks a [`CryptoProvider`] for an [`AeadAlgorithm`] by [`Suite`] and never
//! names a concrete cipher crate, the way rustls plugs in `ring` or `aws-lc-rs`. Two backends exist:
//! `awslc::PROVIDER` (AWS-LC through aws-lc-rs; the default while the `aws-lc` feature is on, as it
//! is by default) and [`rustcrypto::PROVIDER`] (pure Rust, with AES-NI and CLMUL used when the CPU
//! has them; the default without `aws-lc`). Both pass the conformance suite in
//! `tests/crypto_conformance.rs`, and a third backend would implement the two traits in [`provider`]
//! and be added there.

#[cfg(feature = "aws-lc")]
pub mod awslc;
mod error;
pub mod provider;
mod random;
pub mod rustcrypto;
mod suite;

pub use error::CryptoError;
pub use provider::{AeadAlgorithm, AeadKey, CryptoProvider, TAG_LEN, Tag};
pub use random::fill_random;
pub use suite::Suite;

/// The provider used when none is chosen: `awslc::PROVIDER` with the `aws-lc` feature,
/// [`rustcrypto::PROVIDER`] without it.
pub fn default_provider() -> &'static CryptoProvider {
    #[cfg(feature = "aws-lc")]
    return &awslc::PROVIDER;
    #[cfg(not(feature = "aws-lc"))]
    return &rustcrypto::PROVIDER;
}
