//! Key, factor and audit stores on SQLite and PostgreSQL, the facade on top of them, and the async
//! API. One binary for many test files, since each binary links the whole crate and its
//! dependencies again (Cargo.toml, `autotests = false`).

#[cfg(feature = "tokio")]
mod async_api;
mod audit_stores;
#[cfg(feature = "tokio")]
mod axum_shop;
#[cfg(all(feature = "sqlx-sqlite", feature = "postgres"))]
mod db_types;
mod erasure_integrity;
mod invalidation;
mod keys;
mod keys_model;
mod mfa_store;
#[cfg(feature = "postgres")]
mod pg_support;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "conformance")]
mod store_conformance;
mod surface;

/// The name the test harness gives test `name` of the module whose `module_path!()` is `module`:
/// the path inside this crate. Tests that re-run this binary as a child process select one test
/// by it (`--exact`).
pub fn test_name(module: &str, name: &str) -> String {
    match module.split_once("::") {
        Some((_crate_name, path)) => format!("{path}::{name}"),
        None => name.to_owned(),
    }
}
