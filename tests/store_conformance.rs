//! Every store of this crate against the same contract (`custodian::conformance`).
#![allow(clippy::unwrap_used)]

use custodian::conformance::factor_store;
use custodian::mfa::{FactorStore, MemoryFactorStore};
use std::sync::Arc;

#[test]
fn memory_factor_store() {
    factor_store::all(&|| Arc::new(MemoryFactorStore::new()) as Arc<dyn FactorStore>);
}

#[cfg(feature = "sqlite")]
#[test]
fn sqlite_factor_store() {
    let dir = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    factor_store::all(&|| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.path().join(format!("mfa-{n}.db"));
        Arc::new(custodian::mfa::SqliteFactorStore::open(path).unwrap()) as Arc<dyn FactorStore>
    });
}
