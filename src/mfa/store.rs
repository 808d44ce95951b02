//! The storage interface for MFA factors and recovery codes: rows in, rows out, compare-and-set on
//! every change.
//!
//! A store keeps sealed seeds and factor states; it never sees a plaintext seed, and it decides
//! nothing. The decisions (is this code valid, is a step-up needed, what is the new state) are made
//! once, in [`MfaService`](super::MfaService), for every backend: [`MemoryFactorStore`](super::MemoryFactorStore),
//! `SqliteFactorStore` (feature `sqlite`) and `PgFactorStore` (feature `postgres`). The conformance
//! suite (`custodian::conformance`, feature `conformance`) checks each backend against this contract.
//!
//! Every factor row has a `generation`. A change names the generation it was computed from and is
//! applied only if the row is still at it, so that two servers verifying the same code at once cannot
//! both succeed, and a confirmation computed against a replaced enrollment never lands. Generations
//! of one `(user, factor)` row only grow: replacing a pending enrollment or a disabled factor writes
//! `generation + 1`, it never starts again at 0.

use super::error::MfaError;
use super::verify::FactorState;
use core::fmt;

/// One stored factor: its sealed seed and the state of its last change.
#[derive(Clone, PartialEq, Eq)]
pub struct FactorRecord {
    /// The user id.
    pub user: String,
    /// The factor id (unique per user).
    pub factor: String,
    /// The seed sealed by [`super::sealed_seed`]: only the MFA key-encryption key opens it, and only
    /// for this user and factor.
    pub sealed_seed: Vec<u8>,
    /// Phase, replay mark, failures, throttle and lock.
    pub state: FactorState,
    /// Incremented by every change; the compare-and-set column.
    pub generation: u64,
    /// HMAC-SHA256 over user, factor, sealed seed, state and generation, computed by
    /// [`MfaService`](super::MfaService) (docs/MFA.md, "State MAC"). Stores keep it as given and
    /// never check it; empty for rows written before state MACs existed (column `NULL`).
    pub state_mac: Vec<u8>,
}

impl fmt::Debug for FactorRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FactorRecord")
            .field("user", &self.user)
            .field("factor", &self.factor)
            .field(
                "sealed_seed",
                &format_args!("[{} bytes]", self.sealed_seed.len()),
            )
            .field("state", &self.state)
            .field("generation", &self.generation)
            .field(
                "state_mac",
                &format_args!("[{} bytes]", self.state_mac.len()),
            )
            .finish()
    }
}

/// A state to write with compare-and-set, with its state MAC (computed for the generation the
/// write creates, `expected_generation + 1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateWrite {
    /// The factor id.
    pub factor: String,
    /// The generation the state was computed from; the row must still be at it.
    pub expected_generation: u64,
    /// The new state.
    pub state: FactorState,
    /// The new row's state MAC, stored as given.
    pub state_mac: Vec<u8>,
}

/// What became of a recovery-code use ([`FactorStore::consume_recovery_code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeOutcome {
    /// The code was deleted and every reset was written, in one transaction.
    Consumed,
    /// The code was already gone (used by a concurrent request); nothing was written.
    CodeGone,
    /// A factor changed since it was read; nothing was written. Read again and retry.
    FactorsChanged,
}

/// Persistent storage of MFA factors and recovery-code hashes, shared by every server of a shop.
///
/// All methods are synchronous and must be atomic on their own: each is one transaction. Async
/// applications call them through [`crate::asynchronous`] (feature `tokio`), which runs them on the
/// blocking pool.
pub trait FactorStore: Send + Sync + fmt::Debug {
    /// Stores a pending enrollment.
    ///
    /// - `replaces: None`: inserts `record` only if the user has no factor of that id.
    /// - `replaces: Some(g)`: replaces the existing row only if it is still pending or disabled at
    ///   generation `g` (an active row is never replaced); `record.generation` must then be `g + 1`.
    /// - `unless_active`: in the same transaction, refuses if the user has an active factor (the
    ///   caller had no valid step-up, so a second factor must not be added).
    ///
    /// `Ok(false)` means one of these conditions failed and nothing was written: read again and
    /// decide again.
    fn put_pending(
        &self,
        record: &FactorRecord,
        replaces: Option<u64>,
        unless_active: bool,
    ) -> Result<bool, MfaError>;

    /// The factor's row, if any.
    fn load(&self, user: &str, factor: &str) -> Result<Option<FactorRecord>, MfaError>;

    /// Every factor of the user, by factor id.
    fn factors(&self, user: &str) -> Result<Vec<FactorRecord>, MfaError>;

    /// Writes `write.state` and `write.state_mac` (and `generation = expected_generation + 1`)
    /// only if the row of `(user, write.factor)` is still at `write.expected_generation`; returns
    /// whether it wrote.
    fn compare_and_set(&self, user: &str, write: &StateWrite) -> Result<bool, MfaError>;

    /// Replaces the user's recovery codes by `hashes` (ids `0..hashes.len()`), in one transaction.
    fn replace_recovery_codes(&self, user: &str, hashes: &[Vec<u8>]) -> Result<(), MfaError>;

    /// The user's unused recovery-code hashes with their ids, by id.
    fn recovery_codes(&self, user: &str) -> Result<Vec<(u64, Vec<u8>)>, MfaError>;

    /// In one transaction: deletes recovery code `code_id` of `user` and applies each of `resets`
    /// with compare-and-set. Nothing is written unless all of it succeeds.
    fn consume_recovery_code(
        &self,
        user: &str,
        code_id: u64,
        resets: &[StateWrite],
    ) -> Result<ConsumeOutcome, MfaError>;
}
