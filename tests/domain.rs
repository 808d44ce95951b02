//! The audit log, MFA and RBAC against in-memory stores. One binary for many test files, since each
//! binary links the whole crate and its dependencies again (Cargo.toml, `autotests = false`).

mod audit_checkpoint;
mod audit_entry;
mod audit_log;
mod audit_merkle;
mod audit_plaintext_scan;
mod mfa;
mod mfa_audit;
mod mfa_policy;
mod outcome_json;
mod rbac_load_errors;
mod rbac_model;
mod rbac_policy_tests;
mod rbac_semantics;
mod rbac_shop;
mod rbac_warnings;
mod reveal;
