//! One definition of a correct [`AuditStore`], to run against every backend (memory, SQLite and
//! PostgreSQL in `tests/store_conformance.rs`), in the manner of object_store's integration suite.
//!
//! [`check_store`] takes a factory of fresh, empty stores and runs every check on a new one; it
//! returns the first failure as [`AuditError::StoreContract`] naming the check, or the store's own
//! error. Call it from each backend's tests:
//!
//! ```
//! use custodian::audit::{MemoryAuditStore, conformance};
//!
//! conformance::check_store(MemoryAuditStore::new).unwrap();
//! ```

use std::sync::Arc;

use super::entry::{Action, AuditEvent};
use super::error::AuditError;
use super::hash::{Hash, leaf_hash};
use super::log::AuditLog;
use super::store::{AppendBatch, AuditStore};
use super::tree::{HashReader, hashes_to_append, stored_hash_count, stored_hash_index, tree_hash};

/// Threads used by the concurrency check, and appends per thread.
const THREADS: u64 = 4;
const APPENDS_PER_THREAD: u64 = 25;

fn fail(check: &str, detail: impl std::fmt::Display) -> AuditError {
    AuditError::StoreContract(format!("conformance check `{check}` failed: {detail}"))
}

fn event(i: u64) -> AuditEvent {
    AuditEvent::new(
        i,
        format!("actor-{i}"),
        Action::MfaVerified,
        format!("user-{i}/phone"),
    )
}

/// Runs every check, each on a fresh store from `make`.
pub fn check_store<S, F>(make: F) -> Result<(), AuditError>
where
    S: AuditStore + 'static,
    F: Fn() -> S,
{
    empty_store(make())?;
    appends_are_ordered_and_readable(make())?;
    a_failed_build_stores_nothing(make())?;
    a_wrong_batch_is_refused(make())?;
    reads_outside_the_log_are_errors(make())?;
    concurrent_appends_build_one_tree(make())?;
    Ok(())
}

fn empty_store<S: AuditStore>(store: S) -> Result<(), AuditError> {
    if store.tree_size()? != 0 {
        return Err(fail("empty_store", "a new store is not empty"));
    }
    if !store.read_entries(0, 0)?.is_empty() {
        return Err(fail("empty_store", "read_entries(0, 0) is not empty"));
    }
    Ok(())
}

fn appends_are_ordered_and_readable<S: AuditStore>(store: S) -> Result<(), AuditError> {
    let check = "appends_are_ordered_and_readable";
    let log = AuditLog::new(store);
    let events: Vec<AuditEvent> = (0..37).map(event).collect();
    let first = log.append_batch(events.get(..5).unwrap_or_default())?;
    let second = log.append_batch(events.get(5..).unwrap_or_default())?;
    if first != (0..5) || second != (5..37) {
        return Err(fail(
            check,
            format!("indexes {first:?} then {second:?}, expected 0..5 then 5..37"),
        ));
    }
    let stored = log.store().read_entries(0, 37)?;
    let mut expected_hashes = Vec::new();
    for (i, bytes) in (0u64..).zip(&stored) {
        let entry = super::AuditEntry::decode(bytes)?;
        if entry.index != i
            || Some(&entry.event) != events.get(usize::try_from(i).unwrap_or(usize::MAX))
        {
            return Err(fail(check, format!("entry {i} reads back differently")));
        }
        expected_hashes.extend(hashes_to_append(i, &[leaf_hash(bytes)], &expected_hashes)?);
    }
    if stored.len() != 37 {
        return Err(fail(
            check,
            format!("{} entries read back, expected 37", stored.len()),
        ));
    }
    let all: Vec<u64> = (0..stored_hash_count(37)).collect();
    if log.store().read_hashes(&all)? != expected_hashes {
        return Err(fail(
            check,
            "the stored hashes differ from the ones computed",
        ));
    }
    // Non-contiguous, increasing indexes come back in order.
    let some = [
        stored_hash_index(0, 3),
        stored_hash_index(2, 1),
        stored_hash_index(5, 0),
    ];
    let expected: Vec<Hash> = some
        .iter()
        .filter_map(|&i| expected_hashes.get(usize::try_from(i).ok()?).copied())
        .collect();
    if log.store().read_hashes(&some)? != expected {
        return Err(fail(
            check,
            "read_hashes returned other hashes or another order",
        ));
    }
    if log.store().read_entries(10, 12)? != stored.get(10..12).unwrap_or_default() {
        return Err(fail(
            check,
            "read_entries(10, 12) differs from the full read",
        ));
    }
    Ok(())
}

fn a_failed_build_stores_nothing<S: AuditStore>(store: S) -> Result<(), AuditError> {
    let log = AuditLog::new(store);
    log.append_batch(&[event(0), event(1)])?;
    let refused = log
        .store()
        .append(&mut |_, _| Err(AuditError::StoreContract("refused on purpose".into())));
    if refused.is_ok() || log.tree_size()? != 2 {
        return Err(fail(
            "a_failed_build_stores_nothing",
            "an append whose closure failed changed the store",
        ));
    }
    Ok(())
}

fn a_wrong_batch_is_refused<S: AuditStore>(store: S) -> Result<(), AuditError> {
    let log = AuditLog::new(store);
    log.append_batch(&[event(0)])?;
    // Entry 1 adds two stored hashes (its leaf, and the node over entries 0 and 1); a batch
    // with one fewer or one more must be refused.
    for extra in [1usize, 3] {
        let result = log.store().append(&mut |_, _| {
            Ok(AppendBatch {
                entries: vec![vec![1]],
                hashes: vec![Hash::digest(b"x"); extra],
            })
        });
        if result.is_ok() || log.tree_size()? != 1 {
            return Err(fail(
                "a_wrong_batch_is_refused",
                format!("a batch of one entry with {extra} hashes was stored"),
            ));
        }
    }
    Ok(())
}

fn reads_outside_the_log_are_errors<S: AuditStore>(store: S) -> Result<(), AuditError> {
    let check = "reads_outside_the_log_are_errors";
    let log = AuditLog::new(store);
    log.append_batch(&[event(0), event(1), event(2)])?;
    if log.store().read_entries(2, 4).is_ok() || log.store().read_entries(2, 1).is_ok() {
        return Err(fail(
            check,
            "read_entries past the end or backwards succeeded",
        ));
    }
    if log.store().read_hashes(&[stored_hash_count(3)]).is_ok() {
        return Err(fail(check, "read_hashes of an index not stored succeeded"));
    }
    Ok(())
}

fn concurrent_appends_build_one_tree<S: AuditStore + 'static>(store: S) -> Result<(), AuditError> {
    let check = "concurrent_appends_build_one_tree";
    let log = Arc::new(AuditLog::new(store));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || -> Result<(), AuditError> {
                for i in 0..APPENDS_PER_THREAD {
                    log.append(event(t * 1000 + i))?;
                }
                Ok(())
            })
        })
        .collect();
    for handle in handles {
        handle
            .join()
            .map_err(|_| fail(check, "an appending thread panicked"))??;
    }
    let size = log.tree_size()?;
    if size != THREADS * APPENDS_PER_THREAD {
        return Err(fail(
            check,
            format!(
                "{size} entries after {} appends",
                THREADS * APPENDS_PER_THREAD
            ),
        ));
    }
    let entries = log.store().read_entries(0, size)?;
    let mut recomputed: Vec<Hash> = Vec::new();
    for (i, bytes) in (0u64..).zip(&entries) {
        if super::AuditEntry::decode(bytes)?.index != i {
            return Err(fail(
                check,
                format!("entry at position {i} carries another index"),
            ));
        }
        recomputed.extend(hashes_to_append(i, &[leaf_hash(bytes)], &recomputed)?);
    }
    let reader: &dyn HashReader = &recomputed;
    if log.root(size)? != tree_hash(size, reader)? {
        return Err(fail(
            check,
            "the stored tree differs from the one recomputed from the entries",
        ));
    }
    Ok(())
}
