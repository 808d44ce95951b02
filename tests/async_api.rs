//! The async facade: storage work never runs on the runtime's thread, cached operations need no
//! storage at all, and a slow store does not stall other tasks.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use custodian::asynchronous::{AsyncCustodian, AsyncMfa};
use custodian::audit::{AuditError, AuditStore, BuildAppend, Hash};
use custodian::envelope::{Kek, StaticKek};
use custodian::keys::store::{
    CommitOutcome, Journal, LedgerRecord, LedgerView, RingChange, RingRows, RingView,
    SubjectRecord, SubjectView,
};
use custodian::keys::{ChangeFeed, KeyError, KeyStore, LocalRootKey, MemoryKeyStore};
use custodian::mfa::{MemoryFactorStore, MfaService, TotpKey, Verifier};
use custodian::rbac::{Policy, Principal, Resource};
use custodian::{Custodian, EncryptionContext, RevealRequest, SealedRecord};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

/// A memory store that records which threads call it, and can be made slow.
#[derive(Debug, Default)]
struct Watched {
    inner: MemoryKeyStore,
    calls: AtomicUsize,
    threads: Mutex<Vec<ThreadId>>,
    delay_ms: AtomicU64,
}

impl Watched {
    fn enter(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.threads
            .lock()
            .unwrap()
            .push(std::thread::current().id());
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
    }
}

impl KeyStore for Watched {
    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, KeyError> {
        self.enter();
        self.inner.get_meta(key)
    }
    fn put_meta_if_absent(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.enter();
        self.inner.put_meta_if_absent(key, value)
    }
    fn load_ledger(&self) -> Result<LedgerView, KeyError> {
        self.enter();
        self.inner.load_ledger()
    }
    fn init_ledger(
        &self,
        ledger: &LedgerRecord,
        meta: (&str, &[u8]),
        retire: &str,
    ) -> Result<bool, KeyError> {
        self.enter();
        self.inner.init_ledger(ledger, meta, retire)
    }
    fn ring_names(&self) -> Result<Vec<String>, KeyError> {
        self.enter();
        self.inner.ring_names()
    }
    fn load_ring(&self, name: &str) -> Result<RingView, KeyError> {
        self.enter();
        self.inner.load_ring(name)
    }
    fn create_ring(&self, rows: &RingRows, journal: &mut Journal) -> Result<bool, KeyError> {
        self.enter();
        self.inner.create_ring(rows, journal)
    }
    fn commit_ring(&self, change: &mut RingChange) -> Result<CommitOutcome, KeyError> {
        self.enter();
        self.inner.commit_ring(change)
    }
    fn load_subject(&self, ring: &str, subject: &str) -> Result<SubjectView, KeyError> {
        self.enter();
        self.inner.load_subject(ring, subject)
    }
    fn subject_history(&self, ring: &str, subject: &str) -> Result<Vec<SubjectRecord>, KeyError> {
        self.enter();
        self.inner.subject_history(ring, subject)
    }
    fn insert_subjects(
        &self,
        rows: &[SubjectRecord],
        journal: &mut Journal,
    ) -> Result<Vec<bool>, KeyError> {
        self.enter();
        self.inner.insert_subjects(rows, journal)
    }
    fn rewrap_subjects(&self, rows: &[(SubjectRecord, u32)]) -> Result<Vec<bool>, KeyError> {
        self.enter();
        self.inner.rewrap_subjects(rows)
    }
    fn erase_subject(
        &self,
        tombstone: &SubjectRecord,
        journal: &mut Journal,
    ) -> Result<bool, KeyError> {
        self.enter();
        self.inner.erase_subject(tombstone, journal)
    }
    fn purge(&self, wait: std::time::Duration) -> Result<bool, KeyError> {
        self.enter();
        self.inner.purge(wait)
    }
    fn subjects_wrapped_below(
        &self,
        ring: &str,
        version: u32,
        limit: usize,
    ) -> Result<Vec<SubjectRecord>, KeyError> {
        self.enter();
        self.inner.subjects_wrapped_below(ring, version, limit)
    }
    fn count_subjects_wrapped_below(&self, ring: &str, version: u32) -> Result<u64, KeyError> {
        self.enter();
        self.inner.count_subjects_wrapped_below(ring, version)
    }
    fn changes_since(&self, after: u64, limit: usize) -> Result<ChangeFeed, KeyError> {
        // The feed thread polls this; it is not an operation of the test.
        self.inner.changes_since(after, limit)
    }
}

impl AuditStore for Watched {
    fn tree_size(&self) -> Result<u64, AuditError> {
        self.enter();
        self.inner.tree_size()
    }
    fn append(&self, build: &mut BuildAppend<'_>) -> Result<u64, AuditError> {
        self.enter();
        self.inner.append(build)
    }
    fn read_entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, AuditError> {
        self.enter();
        self.inner.read_entries(start, end)
    }
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, AuditError> {
        self.enter();
        self.inner.read_hashes(indexes)
    }
}

async fn facade(store: Arc<Watched>) -> AsyncCustodian {
    AsyncCustodian::build(
        Custodian::builder()
            .with_store(store)
            .root_key(LocalRootKey::random().unwrap()),
    )
    .await
    .unwrap()
}

fn ctx(record: &str) -> EncryptionContext {
    EncryptionContext::for_field("customers", record, "email").unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn storage_never_runs_on_the_runtime_thread_and_cached_calls_need_none() {
    let runtime_thread = std::thread::current().id();
    let store = Arc::new(Watched::default());
    let custodian = facade(Arc::clone(&store)).await;

    // A miss: creates the customer's key.
    let first = custodian
        .encrypt("cus_1", &ctx("1"), b"jane@example.com")
        .await
        .unwrap();
    // Hits: the ring and the key are cached, so no storage call at all.
    let before = store.calls.load(Ordering::SeqCst);
    for _ in 0..100 {
        let sealed = custodian
            .encrypt("cus_1", &ctx("1"), b"jane@example.com")
            .await
            .unwrap();
        let opened = custodian.decrypt(&ctx("1"), &sealed).await.unwrap();
        assert_eq!(opened.expose_secret(), b"jane@example.com");
    }
    assert_eq!(
        store.calls.load(Ordering::SeqCst),
        before,
        "cached seals and opens must not touch the store"
    );
    // Administrative operations and misses.
    custodian.rotate().await.unwrap();
    assert!(custodian.rewrap(&ctx("1"), &first).await.unwrap().is_some());
    custodian.erase_subject("cus_1").await.unwrap();
    let erased = custodian.decrypt(&ctx("1"), &first).await.unwrap_err();
    assert!(erased.is_subject_erased());
    let results = custodian
        .decrypt_many(&[
            (&ctx("1"), first.as_slice()),
            (&ctx("2"), b"garbage".as_slice()),
        ])
        .await;
    assert!(results[0].as_ref().unwrap_err().is_subject_erased());
    assert!(results[1].is_err());
    custodian
        .create_subjects(vec!["cus_2".into(), "cus_3".into()])
        .await
        .unwrap();

    let threads = store.threads.lock().unwrap();
    assert!(
        threads.len() > 5,
        "the store was used: {} calls",
        threads.len()
    );
    assert!(
        !threads.contains(&runtime_thread),
        "a store call ran on the runtime's own thread"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_slow_store_does_not_stall_other_tasks() {
    let store = Arc::new(Watched::default());
    let custodian = facade(Arc::clone(&store)).await;
    store.delay_ms.store(300, Ordering::SeqCst);
    let ticks = Arc::new(AtomicUsize::new(0));
    let ticker = {
        let ticks = Arc::clone(&ticks);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                ticks.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    // A miss on a store that takes 300 ms per call.
    custodian
        .encrypt("cus_slow", &ctx("9"), b"value")
        .await
        .unwrap();
    ticker.abort();
    let ticks = ticks.load(Ordering::SeqCst);
    assert!(
        ticks >= 10,
        "the runtime's only thread was blocked: the ticker ran {ticks} times during the miss"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_code_raced_by_many_tasks_is_accepted_once() {
    let kek: Arc<dyn Kek> = Arc::new(StaticKek::generate("mfa-seeds", 1).unwrap());
    let mfa = AsyncMfa::new(
        MfaService::new(
            MemoryFactorStore::new(),
            kek,
            custodian::SecretKey::from_bytes([3; 32]),
        ),
        Verifier::default(),
    );
    let now = 1_700_000_000;
    let key = TotpKey::generate().unwrap();
    let app = key.duplicate();
    mfa.begin_enrollment("u1", "phone", key, now, None)
        .await
        .unwrap();
    mfa.confirm_enrollment(
        "u1",
        "phone",
        app.code_at(now).unwrap().expose_secret(),
        now,
    )
    .await
    .unwrap();
    for round in 1..=5u64 {
        let at = now + 30 * round;
        let code = app.code_at(at).unwrap().expose_secret().to_owned();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (mfa, code) = (mfa.clone(), code.clone());
                tokio::spawn(async move { mfa.verify("u1", "phone", &code, at).await.is_ok() })
            })
            .collect();
        let mut accepted = 0;
        for task in tasks {
            accepted += usize::from(task.await.unwrap());
        }
        assert_eq!(accepted, 1, "round {round}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_reveal_run_through_blocking_writes_its_audit_entries_off_the_runtime_thread() {
    let runtime_thread = std::thread::current().id();
    let store = Arc::new(Watched::default());
    let custodian = facade(Arc::clone(&store)).await;
    let sealed = custodian
        .encrypt("cus_1", &ctx("1"), b"jane@example.com")
        .await
        .unwrap();
    let policy = Policy::from_toml(
        r#"
        version = 1
        [resource_types.customer]
        actions = ["view"]
        fields = { email = "email" }
        [roles.support]
        [[rules]]
        name = "support-views-customers"
        effect = "allow"
        roles = ["support"]
        permissions = ["customer:view"]
        fields = { email = "masked" }
        "#,
        "inline.toml",
    )
    .unwrap();
    // The customer's key is cached now: only the audit append needs the store.
    store.threads.lock().unwrap().clear();
    let shown = custodian
        .blocking(move |c| {
            let agent = Principal::new("emp-17", "store-3").with_role("support");
            let customer = Resource::new("customer", "1", "store-3");
            let record = SealedRecord::new("customers").field("email", sealed.as_slice());
            c.reveal(
                &policy,
                &RevealRequest::new(&agent, "view", &customer),
                &record,
            )
        })
        .await
        .unwrap();
    assert_eq!(
        shown.field("email").unwrap().expose_secret(),
        "j***@example.com"
    );
    assert_eq!(
        shown.audit_entries().count(),
        2,
        "decision and fields revealed"
    );
    let threads = store.threads.lock().unwrap();
    assert!(!threads.is_empty(), "the audit entries went to the store");
    assert!(
        !threads.contains(&runtime_thread),
        "a store call ran on the runtime's own thread"
    );
}
