//! The storage contracts as test functions, one module per store trait (feature `conformance`;
//! not API-stable).
//!
//! Every backend of this crate runs the same functions (tests/store_conformance.rs), so the memory,
//! SQLite and PostgreSQL stores cannot drift apart; a store written outside this crate runs them
//! too. Each function takes a factory that returns a fresh, empty store and panics, naming the rule,
//! where the store breaks the contract.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod factor_store;
pub mod key_store;
