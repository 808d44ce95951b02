//! Conformance suites for storage backends (feature `conformance`).
//!
//! Each suite is a list of plain functions that check one part of a store trait's contract. A
//! backend's test file runs the whole list against it, so the memory, SQLite and PostgreSQL
//! stores (and any store an application writes) are held to the same contract and cannot drift
//! apart:
//!
//! ```
//! use custodian::conformance::key_store;
//! use custodian::keys::{KeyStore, MemoryKeyStore};
//! use std::sync::Arc;
//!
//! # fn main() -> Result<(), custodian::keys::KeyError> {
//! key_store::run_all(&|| Arc::new(MemoryKeyStore::new()) as Arc<dyn KeyStore>)?;
//! # Ok(())
//! # }
//! ```
//!
//! A check returns the store's error if a call fails where the contract says it succeeds, and
//! panics (with an assertion message) where the store answers wrongly: run the checks from tests.

pub mod key_store;
