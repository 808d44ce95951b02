//! Where an audit log keeps its entries and stored hashes: a small sync trait, and a memory
//! implementation.
//!
//! A store holds two append-only tables, `entries (index, bytes)` and `hashes (index, hash)`.
//! It knows nothing of Merkle trees: [`AuditLog`](super::AuditLog) computes what to write, inside
//! the store's critical section, through the closure of [`AuditStore::append`]. That keeps one
//! definition of the tree for every backend while the store alone decides, under its lock or
//! transaction, which index the next entry gets, so appends from several threads (or, for a
//! database, several processes) build one consistent tree.

use std::fmt;
use std::sync::{Mutex, MutexGuard};

use super::error::AuditError;
use super::hash::Hash;
use super::tree::{HashReader, stored_hash_count};

/// What one append writes, computed under the store's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendBatch {
    /// The encoded entries, to be stored at indexes `tree_size..` (the size the closure was given).
    pub entries: Vec<Vec<u8>>,
    /// The stored hashes they add, to be stored at indexes `stored_hash_count(tree_size)..`.
    pub hashes: Vec<Hash>,
}

/// The closure [`AuditStore::append`] calls with the current tree size and a reader of the
/// stored hashes, both as of inside the lock or transaction.
pub type BuildAppend<'a> = dyn FnMut(u64, &dyn HashReader) -> Result<AppendBatch, AuditError> + 'a;

/// Storage for an audit log.
///
/// # Contract
/// - `append` runs `build` while holding whatever makes the append exclusive (a mutex, an
///   `IMMEDIATE` SQLite transaction, a PostgreSQL advisory lock), with the current size and a reader
///   that sees every committed hash; it then writes the whole batch atomically, or nothing.
/// - Stores never update or delete: entries and hashes are append-only.
/// - `read_hashes` answers exactly one hash per index, in order (see [`HashReader`]).
pub trait AuditStore: Send + Sync + fmt::Debug {
    /// Number of entries stored.
    fn tree_size(&self) -> Result<u64, AuditError>;

    /// Appends atomically what `build` returns; returns the index of the first new entry.
    fn append(&self, build: &mut BuildAppend<'_>) -> Result<u64, AuditError>;

    /// The encoded entries `start..end` (`end` at most the tree size).
    fn read_entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, AuditError>;

    /// The stored hashes at `indexes`, in the same order.
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, AuditError>;
}

/// Checks a batch against the store's current tables before it is written: one hash table row
/// per stored hash the new entries add, no more, no less. Stores call it inside their lock.
pub fn check_batch(
    tree_size: u64,
    stored_hashes: u64,
    batch: &AppendBatch,
) -> Result<(), AuditError> {
    let new_size = u64::try_from(batch.entries.len())
        .ok()
        .and_then(|added| tree_size.checked_add(added))
        .ok_or(AuditError::TreeTooLarge(u64::MAX))?;
    let expected = stored_hash_count(new_size).checked_sub(stored_hash_count(tree_size));
    if stored_hashes != stored_hash_count(tree_size)
        || u64::try_from(batch.hashes.len()).ok() != expected
    {
        return Err(AuditError::StoreContract(format!(
            "appending {} entries to a tree of {tree_size} (with {stored_hashes} stored hashes) must add {} hashes, not {}",
            batch.entries.len(),
            expected.unwrap_or(0),
            batch.hashes.len()
        )));
    }
    Ok(())
}

/// An audit store in memory, for tests and for applications that export the log elsewhere.
#[derive(Default)]
pub struct MemoryAuditStore {
    tables: Mutex<Tables>,
}

#[derive(Default)]
struct Tables {
    entries: Vec<Vec<u8>>,
    hashes: Vec<Hash>,
}

impl MemoryAuditStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, Tables>, AuditError> {
        self.tables.lock().map_err(|_| AuditError::Store {
            message: "the memory store's lock is poisoned (a thread panicked while appending)"
                .into(),
            source: None,
        })
    }
}

impl fmt::Debug for MemoryAuditStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // try_lock: formatting the store from inside an append (same thread) must not deadlock.
        let mut out = f.debug_struct("MemoryAuditStore");
        match self.tables.try_lock() {
            Ok(tables) => out.field("tree_size", &tables.entries.len()),
            Err(_) => out.field("tree_size", &"<locked>"),
        };
        out.finish()
    }
}

fn to_usize(value: u64) -> Result<usize, AuditError> {
    usize::try_from(value).map_err(|_| AuditError::TreeTooLarge(value))
}

impl AuditStore for MemoryAuditStore {
    fn tree_size(&self) -> Result<u64, AuditError> {
        Ok(self.lock()?.entries.len() as u64)
    }

    fn append(&self, build: &mut BuildAppend<'_>) -> Result<u64, AuditError> {
        let mut tables = self.lock()?;
        let size = tables.entries.len() as u64;
        let batch = build(size, &tables.hashes)?;
        check_batch(size, tables.hashes.len() as u64, &batch)?;
        tables.entries.extend(batch.entries);
        tables.hashes.extend(batch.hashes);
        Ok(size)
    }

    fn read_entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, AuditError> {
        let tables = self.lock()?;
        let log_size = tables.entries.len() as u64;
        if start > end || end > log_size {
            return Err(AuditError::SizeOutOfRange {
                size: end,
                log_size,
            });
        }
        Ok(tables
            .entries
            .get(to_usize(start)?..to_usize(end)?)
            .unwrap_or_default()
            .to_vec())
    }

    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, AuditError> {
        self.lock()?.hashes.read_hashes(indexes)
    }
}

impl<S: AuditStore + ?Sized> AuditStore for std::sync::Arc<S> {
    fn tree_size(&self) -> Result<u64, AuditError> {
        (**self).tree_size()
    }

    fn append(&self, build: &mut BuildAppend<'_>) -> Result<u64, AuditError> {
        (**self).append(build)
    }

    fn read_entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, AuditError> {
        (**self).read_entries(start, end)
    }

    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, AuditError> {
        (**self).read_hashes(indexes)
    }
}

/// Lets the tree maths read a store directly.
pub(crate) struct StoreReader<'a, S: ?Sized>(pub(crate) &'a S);

impl<S: AuditStore + ?Sized> HashReader for StoreReader<'_, S> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, AuditError> {
        self.0.read_hashes(indexes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_inside_an_append_does_not_deadlock() {
        let store = MemoryAuditStore::new();
        let mut seen = String::new();
        let _ = store.append(&mut |_, _| {
            seen = format!("{store:?}");
            Err(AuditError::StoreContract("stop".into()))
        });
        assert_eq!(seen, r#"MemoryAuditStore { tree_size: "<locked>" }"#);
        assert_eq!(format!("{store:?}"), "MemoryAuditStore { tree_size: 0 }");
    }
}
