//! The tests whose outcome depends on the crypto backend: CI runs this binary once with AWS-LC and
//! once on RustCrypto. The test files are gathered into a few binaries, since each binary links the
//! whole crate and its dependencies again (Cargo.toml, `autotests = false`).

mod crypto_conformance;
mod envelope;
mod fuzz_corpus;
mod mfa_vectors;
mod public_api;
