//! The durable audit stores (SQLite, and PostgreSQL when `CUSTODIAN_PG_URL` names a server):
//! appends from several threads of several processes build one tree that verifies against a
//! signed checkpoint, and rows deleted or changed behind the store's back are named by
//! verification, never a panic. The contract itself is checked in `tests/store_conformance.rs`.
//!
//! PostgreSQL tests need `CUSTODIAN_PG_URL`: run `scripts/with-postgres cargo test --release
//! --all-features --test storage audit_stores`. Without it they print a loud skip notice, or fail when `CI`
//! is set.
#![cfg(any(feature = "sqlite", feature = "postgres"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use custodian::SecretKey;
use custodian::audit::{
    Action, AuditEntry, AuditError, AuditEvent, AuditLog, AuditStore, CheckpointSigner,
    stored_hash_index, verify,
};
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;

#[cfg(feature = "postgres")]
use crate::pg_support;

const CHILD_ENV: &str = "CUSTODIAN_AUDIT_APPEND_CHILD";
/// Appending processes: this one and two children.
const CHILDREN: usize = 2;
const THREADS: usize = 4;
const ROUNDS: usize = 30;
const NOW: u64 = 1_700_000_000;

type Log = AuditLog<Arc<dyn AuditStore>>;

/// Opens the store named by `spec`: `sqlite:PATH` or `postgres:SCHEMA URL`.
fn open(spec: &str) -> Log {
    let store: Arc<dyn AuditStore> = match spec.split_once(':') {
        #[cfg(feature = "sqlite")]
        Some(("sqlite", path)) => Arc::new(custodian::audit::SqliteAuditStore::open(path).unwrap()),
        #[cfg(feature = "postgres")]
        Some(("postgres", rest)) => {
            let (schema, url) = rest.split_once(' ').unwrap();
            Arc::new(
                custodian::audit::PgAuditStore::open(&pg_support::handle_in(url, schema)).unwrap(),
            )
        }
        _ => panic!("unknown store spec `{spec}`"),
    };
    AuditLog::new(store)
}

/// Round `r` of a thread appends one event, or a batch of three every fourth round.
fn round_events(process: usize, thread: usize, round: usize) -> Vec<AuditEvent> {
    let count = if round % 4 == 3 { 3 } else { 1 };
    (0..count)
        .map(|k| {
            AuditEvent::new(
                NOW + round as u64,
                format!("p{process}-t{thread}"),
                Action::MfaVerified,
                format!("round-{round}/{k}"),
            )
        })
        .collect()
}

fn events_per_thread() -> usize {
    (0..ROUNDS).map(|r| round_events(0, 0, r).len()).sum()
}

/// `THREADS` threads of process `process` append their rounds to `log`.
fn append_from_threads(log: &Arc<Log>, process: usize) {
    let handles: Vec<_> = (0..THREADS)
        .map(|thread| {
            let log = Arc::clone(log);
            std::thread::spawn(move || {
                for round in 0..ROUNDS {
                    let events = round_events(process, thread, round);
                    if events.len() == 1 {
                        log.append(events[0].clone()).unwrap();
                    } else {
                        log.append_batch(&events).unwrap();
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
}

/// A line `@@tag` from the other side (libtest may have printed on the same line first).
fn wait_for(input: &mut impl BufRead, tag: &str) {
    let mut buf = String::new();
    loop {
        buf.clear();
        assert!(
            input.read_line(&mut buf).unwrap() > 0,
            "ended before `{tag}`"
        );
        if buf.contains(&format!("@@{tag}")) {
            return;
        }
    }
}

/// The child side: opens the store, waits for the go, appends from its threads.
#[test]
fn audit_append_child() {
    let Ok(job) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (process, spec) = job.split_once('|').unwrap();
    let log = Arc::new(open(spec));
    println!("@@ready");
    wait_for(&mut std::io::stdin().lock(), "go");
    append_from_threads(&log, process.parse().unwrap());
    println!("@@done");
}

/// Two child processes and this one, `THREADS` threads each, append to the store of `spec` at
/// once; the result must be one tree holding every event once, in each thread's order.
fn appends_from_processes_and_threads_build_one_tree(spec: &str) {
    let log = Arc::new(open(spec));
    let mut children: Vec<_> = (1..=CHILDREN)
        .map(|process| {
            let mut child = Command::new(std::env::current_exe().unwrap())
                .arg(crate::test_name(module_path!(), "audit_append_child"))
                .args(["--exact", "--nocapture", "--test-threads=1"])
                .env(CHILD_ENV, format!("{process}|{spec}"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let stdin = child.stdin.take().unwrap();
            let mut stdout = BufReader::new(child.stdout.take().unwrap());
            wait_for(&mut stdout, "ready");
            (child, stdin, stdout)
        })
        .collect();
    // Everyone starts together: the children on their `go`, this process right after.
    for (_, stdin, _) in &mut children {
        writeln!(stdin, "@@go").unwrap();
    }
    append_from_threads(&log, 0);
    for (mut child, _, mut stdout) in children {
        wait_for(&mut stdout, "done");
        assert!(child.wait().unwrap().success());
    }

    let total = (CHILDREN + 1) * THREADS * events_per_thread();
    let size = log.tree_size().unwrap();
    assert_eq!(size, total as u64, "every appended event is stored, once");
    let bytes = log.store_entries(0..size).unwrap();
    let mut seen = HashSet::new();
    let mut last_of_thread: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (position, raw) in (0u64..).zip(&bytes) {
        let entry = AuditEntry::decode(raw).unwrap();
        assert_eq!(entry.index, position, "indexes are 0..size, each once");
        let key = (entry.event.actor.clone(), entry.event.resource.clone());
        assert!(seen.insert(key), "entry {position} is a duplicate");
        // Each thread appended sequentially: its entries are in its own order.
        let round = entry.event.time;
        if let Some(&(last_round, last_index)) = last_of_thread.get(&entry.event.actor) {
            assert!(round >= last_round && position > last_index);
        }
        last_of_thread.insert(entry.event.actor.clone(), (round, position));
    }
    assert_eq!(seen.len(), total);
    // The processes really appended at once: their entries interleave (run one after another,
    // they would form three blocks, two switches).
    let switches = bytes
        .windows(2)
        .filter(|pair| {
            let process =
                |raw: &Vec<u8>| AuditEntry::decode(raw).unwrap().event.actor[..2].to_owned();
            process(&pair[0]) != process(&pair[1])
        })
        .count();
    eprintln!("{spec}: {size} entries, {switches} switches between processes");
    assert!(
        switches > CHILDREN,
        "{switches} switches: the appends did not overlap"
    );
    assert_eq!(last_of_thread.len(), (CHILDREN + 1) * THREADS);

    // The tree verifies: from the exported entries alone, and inside the store.
    let signer =
        CheckpointSigner::from_secret("test.example/audit", &SecretKey::from_bytes([5; 32]))
            .unwrap();
    let signed = log.checkpoint(&signer, NOW).unwrap();
    let verified = verify(&bytes, &signed, &signer.verifier(), NOW).unwrap();
    assert_eq!(verified.checkpoint.tree_size(), size);
    assert_eq!(verified.unsigned_entries, 0);
    assert_eq!(log.verify_store(&verified.checkpoint).unwrap(), 0);
    // And a reopened store (a restarted server) sees the same tree.
    let reopened = open(spec);
    assert_eq!(
        reopened.root(size).unwrap(),
        *verified.checkpoint.root(),
        "a new connection sees the same committed tree"
    );
}

type RunSql = Box<dyn Fn(&str) -> Result<(), String>>;

/// One store and how to reach its tables behind its back.
struct Tampering {
    log: Log,
    entries: String,
    hashes: String,
    /// Runs SQL directly; the error text if the database refused it.
    sql: RunSql,
    /// A BLOB literal in this database's dialect.
    blob: fn(&[u8]) -> String,
    /// Turns the append-only triggers off, as someone who owns the tables can.
    disable_triggers: Box<dyn Fn()>,
}

/// Thirteen entries (a tree whose root reads three stored subtrees: 8, 4 and 1 leaves) and a
/// checkpoint of them.
fn filled(t: &Tampering) -> custodian::audit::Checkpoint {
    let events: Vec<AuditEvent> = (0..13)
        .map(|i| {
            AuditEvent::new(
                NOW + i,
                "staff-7",
                Action::FieldsRevealed {
                    fields: vec!["email".into()],
                },
                format!("customers/{i}"),
            )
        })
        .collect();
    t.log.append_batch(&events[..6]).unwrap();
    t.log.append_batch(&events[6..]).unwrap();
    let signer =
        CheckpointSigner::from_secret("test.example/audit", &SecretKey::from_bytes([6; 32]))
            .unwrap();
    let signed = t.log.checkpoint(&signer, NOW).unwrap();
    signer.verifier().verify(&signed, NOW).unwrap()
}

fn store_contract_message(result: Result<u64, AuditError>) -> String {
    match result {
        Err(AuditError::StoreContract(message)) => message,
        other => panic!("expected a store-contract error, got {other:?}"),
    }
}

/// Every kind of tampering, each on a fresh store from `fresh`.
fn tampering_is_named(fresh: &dyn Fn() -> Tampering) {
    // The triggers refuse changes made by mistake.
    let t = fresh();
    filled(&t);
    for sql in [
        format!("DELETE FROM {} WHERE idx = 3", t.entries),
        format!(
            "UPDATE {} SET entry = {} WHERE idx = 3",
            t.entries,
            (t.blob)(b"x")
        ),
        format!("DELETE FROM {} WHERE idx = 3", t.hashes),
        format!(
            "UPDATE {} SET hash = {} WHERE idx = 3",
            t.hashes,
            (t.blob)(&[0; 32])
        ),
    ] {
        let err = (t.sql)(&sql).unwrap_err();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }

    // An entry rewritten with another event, keeping its index: named.
    let t = fresh();
    let checkpoint = filled(&t);
    (t.disable_triggers)();
    let forged = AuditEntry {
        index: 5,
        event: AuditEvent::new(NOW, "someone-else", Action::SubjectErased, "customers/5"),
    }
    .encode()
    .unwrap();
    (t.sql)(&format!(
        "UPDATE {} SET entry = {} WHERE idx = 5",
        t.entries,
        (t.blob)(&forged)
    ))
    .unwrap();
    assert!(matches!(
        t.log.verify_store(&checkpoint),
        Err(AuditError::EntryModified { index: 5 })
    ));
    let exported = t.log.store_entries(0..13).unwrap();
    assert!(matches!(
        custodian::audit::verify_entries(&exported, &checkpoint),
        Err(AuditError::RootMismatch { tree_size: 13 })
    ));

    // An entry deleted in the middle: the read names the missing index.
    let t = fresh();
    let checkpoint = filled(&t);
    (t.disable_triggers)();
    (t.sql)(&format!("DELETE FROM {} WHERE idx = 5", t.entries)).unwrap();
    let message = store_contract_message(t.log.verify_store(&checkpoint));
    assert!(message.contains("entry 5 is missing"), "{message}");
    assert!(t.log.store_entries(0..13).is_err());

    // The last entry deleted: a truncation, and no append lands on the broken tables.
    let t = fresh();
    let checkpoint = filled(&t);
    (t.disable_triggers)();
    (t.sql)(&format!("DELETE FROM {} WHERE idx = 12", t.entries)).unwrap();
    assert!(matches!(
        t.log.verify_store(&checkpoint),
        Err(AuditError::Truncated {
            checkpoint_size: 13,
            found: 12
        })
    ));
    let refused = t
        .log
        .append(AuditEvent::new(NOW, "a", Action::MfaVerified, "r"));
    assert!(
        matches!(refused, Err(AuditError::StoreContract(_))),
        "{refused:?}"
    );
    assert_eq!(t.log.tree_size().unwrap(), 12);

    // A stored leaf hash changed: named as that entry's.
    let t = fresh();
    let checkpoint = filled(&t);
    (t.disable_triggers)();
    (t.sql)(&format!(
        "UPDATE {} SET hash = {} WHERE idx = {}",
        t.hashes,
        (t.blob)(&[0; 32]),
        stored_hash_index(0, 3)
    ))
    .unwrap();
    assert!(matches!(
        t.log.verify_store(&checkpoint),
        Err(AuditError::EntryModified { index: 3 })
    ));

    // A stored subtree hash the root depends on changed: the root differs.
    let t = fresh();
    let checkpoint = filled(&t);
    (t.disable_triggers)();
    (t.sql)(&format!(
        "UPDATE {} SET hash = {} WHERE idx = {}",
        t.hashes,
        (t.blob)(&[0; 32]),
        stored_hash_index(3, 0)
    ))
    .unwrap();
    assert!(matches!(
        t.log.verify_store(&checkpoint),
        Err(AuditError::RootMismatch { tree_size: 13 })
    ));
    assert!(matches!(
        t.log.verify_against(&checkpoint),
        Err(AuditError::RootMismatch { tree_size: 13 })
    ));

    // A stored hash deleted: the read names it.
    let t = fresh();
    let checkpoint = filled(&t);
    (t.disable_triggers)();
    let gone = stored_hash_index(0, 4);
    (t.sql)(&format!("DELETE FROM {} WHERE idx = {gone}", t.hashes)).unwrap();
    let message = store_contract_message(t.log.verify_store(&checkpoint));
    assert!(
        message.contains(&format!("stored hash {gone} is missing")),
        "{message}"
    );
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use custodian::audit::SqliteAuditStore;
    use std::rc::Rc;

    #[test]
    fn sqlite_appends_from_processes_and_threads_build_one_tree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        appends_from_processes_and_threads_build_one_tree(&format!("sqlite:{}", path.display()));
    }

    #[test]
    fn sqlite_tampering_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let next = std::sync::atomic::AtomicUsize::new(0);
        tampering_is_named(&|| {
            let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = dir.path().join(format!("audit-{n}.db"));
            let log: Log = AuditLog::new(Arc::new(SqliteAuditStore::open(&path).unwrap()));
            let conn = Rc::new(rusqlite::Connection::open(&path).unwrap());
            let for_triggers = Rc::clone(&conn);
            Tampering {
                log,
                entries: "audit_entries".into(),
                hashes: "audit_hashes".into(),
                sql: Box::new(move |sql| conn.execute_batch(sql).map_err(|e| e.to_string())),
                blob: |bytes| format!("X'{}'", data_encoding::HEXLOWER.encode(bytes)),
                disable_triggers: Box::new(move || {
                    for trigger in [
                        "audit_entries_no_update",
                        "audit_entries_no_delete",
                        "audit_hashes_no_update",
                        "audit_hashes_no_delete",
                    ] {
                        for_triggers
                            .execute_batch(&format!("DROP TRIGGER {trigger}"))
                            .unwrap();
                    }
                }),
            }
        });
    }

    #[test]
    fn sqlite_store_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let first = AuditLog::new(SqliteAuditStore::open(&path).unwrap());
        first.append_batch(&round_events(0, 0, 3)).unwrap();
        let root = first.root(3).unwrap();
        drop(first);
        let again = AuditLog::new(SqliteAuditStore::open(&path).unwrap());
        assert_eq!(again.tree_size().unwrap(), 3);
        assert_eq!(again.root(3).unwrap(), root);
        assert_eq!(
            again
                .append(round_events(0, 0, 0)[0].clone())
                .unwrap()
                .index,
            3
        );
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use custodian::audit::PgAuditStore;
    use custodian::postgres::sqlx::{self, AssertSqlSafe};

    /// Runs SQL on the admin connection, returning the server's refusal instead of panicking.
    fn try_execute(url: &str, sql: &str) -> Result<(), String> {
        let admin = pg_support::admin(url);
        admin
            .runtime()
            .block_on(sqlx::raw_sql(AssertSqlSafe(sql.to_owned())).execute(admin.pool()))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn pg_appends_from_processes_and_threads_build_one_tree() {
        let Some(url) = pg_support::url() else { return };
        let schema = pg_support::fresh_schema(&url);
        appends_from_processes_and_threads_build_one_tree(&format!("postgres:{schema} {url}"));
    }

    #[test]
    fn pg_tampering_is_named() {
        let Some(url) = pg_support::url() else { return };
        tampering_is_named(&|| {
            let schema = pg_support::fresh_schema(&url);
            let log: Log = AuditLog::new(Arc::new(
                PgAuditStore::open(&pg_support::handle_in(&url, &schema)).unwrap(),
            ));
            let (sql_url, trigger_url, trigger_schema) = (url.clone(), url.clone(), schema.clone());
            Tampering {
                log,
                entries: format!("{schema}.custodian_audit_entries"),
                hashes: format!("{schema}.custodian_audit_hashes"),
                sql: Box::new(move |sql| try_execute(&sql_url, sql)),
                blob: |bytes| format!("'\\x{}'::bytea", data_encoding::HEXLOWER.encode(bytes)),
                disable_triggers: Box::new(move || {
                    for table in ["custodian_audit_entries", "custodian_audit_hashes"] {
                        try_execute(
                            &trigger_url,
                            &format!("ALTER TABLE {trigger_schema}.{table} DISABLE TRIGGER USER"),
                        )
                        .unwrap();
                    }
                }),
            }
        });
    }
}
