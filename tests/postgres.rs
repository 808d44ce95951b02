//! What only the PostgreSQL layer has: migrations raced by several servers, the sync-over-async
//! bridge (timeouts, runtimes), and the advisory lock that makes the subject-key check of a ring
//! change race-free across servers. The store contract itself is in `store_conformance.rs`.
//!
//! Needs `CUSTODIAN_PG_URL`: run `scripts/with-postgres cargo test --release --all-features`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::pg_support;

use custodian::crypto::Suite;
use custodian::keys::store::{
    CommitOutcome, Journal, RingChange, RingRecord, RingRows, SubjectRecord, VersionDigest,
    VersionRecord,
};
use custodian::keys::{KeyError, KeyStore, PgKeyStore, RotationPolicy, VersionState};
use custodian::postgres::sqlx;
use custodian::postgres::{Postgres, PostgresError, SCHEMA_VERSION, tokio};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use pg_support::scalar;

#[test]
fn servers_starting_at_once_migrate_once() {
    let Some(url) = pg_support::url() else { return };
    for _ in 0..3 {
        let schema = pg_support::fresh_schema(&url);
        let servers = 6;
        let barrier = Barrier::new(servers);
        let migrated = std::thread::scope(|s| {
            let handles: Vec<_> = (0..servers)
                .map(|_| {
                    let (url, schema, barrier) = (&url, &schema, &barrier);
                    s.spawn(move || {
                        let pg = pg_support::handle_in(url, schema);
                        barrier.wait();
                        pg.migrate_blocking()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap().unwrap())
                .collect::<Vec<_>>()
        });
        let steps: u32 = migrated.iter().map(|m| m.to - m.from).sum();
        assert_eq!(
            steps, SCHEMA_VERSION,
            "schema applied exactly once: {migrated:?}"
        );
        assert!(migrated.iter().all(|m| m.to == SCHEMA_VERSION));
        assert_eq!(
            scalar(
                &url,
                format!("SELECT count(*) FROM {schema}.custodian_schema")
            ),
            1
        );
        assert_eq!(
            scalar(
                &url,
                format!(
                    "SELECT count(*) FROM information_schema.tables WHERE table_schema = '{schema}'"
                )
            ),
            11,
            "custodian_schema, _meta, _rings, _ring_versions, _subject_keys, _changes, \
             _mfa_factor, _mfa_recovery_code, _audit_entries, _audit_hashes, _ledger"
        );
        // Opening a store on the migrated schema is a no-op migration.
        let again = pg_support::handle_in(&url, &schema)
            .migrate_blocking()
            .unwrap();
        assert_eq!((again.from, again.to), (SCHEMA_VERSION, SCHEMA_VERSION));
    }
}

#[test]
fn a_newer_schema_is_refused() {
    let Some(url) = pg_support::url() else { return };
    let schema = pg_support::fresh_schema(&url);
    PgKeyStore::open(pg_support::handle_in(&url, &schema)).unwrap();
    pg_support::execute(
        &url,
        format!("UPDATE {schema}.custodian_schema SET version = 99"),
    );
    match PgKeyStore::open(pg_support::handle_in(&url, &schema)) {
        Err(KeyError::SchemaTooNew {
            found: 99,
            supported,
        }) => assert_eq!(supported, SCHEMA_VERSION),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_unreachable_server_is_store_unavailable() {
    // Port 1 on loopback: nothing listens there. No server is needed for this test.
    let pg = Postgres::connect("postgres://custodian@127.0.0.1:1/custodian")
        .unwrap()
        .with_timeout(Duration::from_millis(500));
    assert_eq!(pg.timeout(), Duration::from_millis(500));
    match PgKeyStore::open(pg) {
        Err(KeyError::StoreUnavailable(message)) => {
            assert!(
                message.contains("migrating custodian's schema"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_malformed_url_is_refused_at_once() {
    match Postgres::connect("postgres://app:hunter2@127.0.0.1:port/shop") {
        Err(e @ PostgresError::InvalidUrl(_)) => {
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn from_pool_needs_a_runtime() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pool = {
        let _entered = runtime.enter();
        sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://custodian@127.0.0.1:1/custodian")
            .unwrap()
    };
    assert!(matches!(
        Postgres::from_pool(pool.clone()),
        Err(PostgresError::NoRuntime)
    ));
    let _entered = runtime.enter();
    assert!(Postgres::from_pool(pool).is_ok());
}

#[test]
fn a_sync_call_on_a_current_thread_runtime_times_out_instead_of_hanging() {
    let Some(url) = pg_support::url() else { return };
    let schema = pg_support::fresh_schema(&url);
    PgKeyStore::open(pg_support::handle_in(&url, &schema)).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The misuse the module docs warn about: the store's task can only run on this thread,
    // which the store call blocks.
    let result = runtime.block_on(async {
        let pool = pg_support::pool_in(&url, &schema, 1);
        let pg = Postgres::from_pool(pool)
            .unwrap()
            .with_timeout(Duration::from_millis(300));
        let store = PgKeyStore::open(pg)?;
        store.get_meta("integrity_key")
    });
    match result {
        Err(KeyError::StoreUnavailable(message)) => {
            assert!(message.contains("spawn_blocking"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_handle_with_its_own_runtime_may_be_dropped_in_async_code() {
    let Some(url) = pg_support::url() else { return };
    let pg = Postgres::connect(&url).unwrap();
    assert!(format!("{pg:?}").contains("owns_runtime: true"));
    assert!(
        !format!("{pg:?}").contains("127.0.0.1"),
        "no connection details in Debug"
    );
    let store = PgKeyStore::open(pg).unwrap();
    store.get_meta("x").unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // Dropping a runtime that waits for its tasks would panic here.
    runtime.block_on(async move { drop(store) });
}

// ---- The subject-key guard of a ring change, raced by another server ----

fn version(version: u32, state: VersionState) -> VersionRecord {
    VersionRecord {
        ring: "r".into(),
        version,
        state,
        wrapped_key: Some(vec![version as u8; 61]),
        created_at: 1,
        superseded_at: (state != VersionState::Active).then_some(2),
        usage_reserved: 0,
        mac: [version as u8; 32],
    }
}

fn two_version_ring() -> RingRows {
    let versions = vec![
        version(1, VersionState::DecryptOnly),
        version(2, VersionState::Active),
    ];
    RingRows {
        ring: RingRecord {
            name: "r".into(),
            generation: 1,
            suite: Suite::default(),
            primary_version: 2,
            min_encryption_version: 2,
            min_decryption_version: 1,
            policy: RotationPolicy::default(),
            created_at: 1,
            versions: versions
                .iter()
                .map(|v| VersionDigest {
                    version: v.version,
                    state: v.state,
                    mac: v.mac,
                })
                .collect(),
            mac: [1; 32],
        },
        versions,
    }
}

fn late_subject() -> SubjectRecord {
    SubjectRecord {
        ring: "r".into(),
        subject: "late".into(),
        generation: 1,
        wrapped_by: 1,
        wrapped_key: Some(vec![7; 60]),
        created_at: 3,
        erased_at: None,
        mac: [7; 32],
    }
}

/// Advisory locks of the ring class ("cust") held or awaited in `mode`.
fn ring_locks(url: &str, mode: &str, granted: bool) -> i64 {
    scalar(
        url,
        format!(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = {} \
             AND objsubid = 2 AND mode = '{mode}' AND granted = {granted}",
            0x6375_7374
        ),
    )
}

fn wait_until(what: &str, condition: impl Fn() -> bool) {
    for _ in 0..600 {
        if condition() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting until {what}");
}

/// Server B's subject insert is in flight (it waits behind a third transaction) when server A
/// commits a ring change requiring no live key below version 2. A must wait for B and then see
/// B's key; without the advisory lock its count would miss the uncommitted row and commit.
#[test]
fn a_guarded_ring_change_waits_for_subject_writes_in_flight() {
    let Some(url) = pg_support::url() else { return };
    let schema = pg_support::fresh_schema(&url);
    let server_a = PgKeyStore::open(pg_support::handle_in(&url, &schema)).unwrap();
    let server_b = PgKeyStore::open(pg_support::handle_in(&url, &schema)).unwrap();
    let rows = two_version_ring();
    assert!(
        server_a
            .create_ring(&rows, &mut Journal::default())
            .unwrap()
    );

    // A third session inserts the same subject row and keeps its transaction open: B's insert
    // will wait for it on the primary key, holding the ring's shared lock.
    let admin = pg_support::admin(&url);
    // sqlx needs a runtime context to drop the blocker's transaction if this test fails.
    let _entered = admin.runtime().enter();
    let blocker_pool = pg_support::pool_in(&url, &schema, 1);
    let late = late_subject();
    let mut blocker = admin
        .runtime()
        .block_on(async {
            let mut tx = blocker_pool.begin().await?;
            sqlx::query(
                "INSERT INTO custodian_subject_keys
                     (ring, subject, generation, wrapped_by, wrapped_key, created_at, erased_at, mac)
                 VALUES ('r', 'late', 1, 1, '\\x00', 0, NULL, '\\x00')",
            )
            .execute(&mut *tx)
            .await?;
            Ok::<_, sqlx::Error>(tx)
        })
        .map(Some)
        .unwrap();
    let mut change = RingChange {
        expected_generation: 1,
        ring: rows.ring.clone(),
        versions: Vec::new(),
        require_no_subject_keys_below: Some(2),
        journal: Journal::default(),
    };
    change.ring.generation = 2;
    change.ring.min_decryption_version = 2;

    let (inserted, committed) = std::thread::scope(|s| {
        let b = s.spawn(|| {
            server_b.insert_subjects(std::slice::from_ref(&late), &mut Journal::default())
        });
        wait_until("B holds the ring's shared lock", || {
            ring_locks(&url, "ShareLock", true) == 1
        });
        let a = s.spawn(|| server_a.commit_ring(&mut change.clone()));
        wait_until("A waits for the exclusive lock", || {
            ring_locks(&url, "ExclusiveLock", false) == 1
        });
        assert!(!a.is_finished() && !b.is_finished());
        admin
            .runtime()
            .block_on(blocker.take().unwrap().rollback())
            .unwrap();
        (b.join().unwrap(), a.join().unwrap())
    });
    assert_eq!(inserted.unwrap(), [true]);
    assert_eq!(committed.unwrap(), CommitOutcome::SubjectKeysDepend(1));
    assert_eq!(
        server_a
            .load_ring("r")
            .unwrap()
            .rows
            .unwrap()
            .ring
            .generation,
        1
    );
    assert_eq!(server_a.load_subject("r", "late").unwrap().row, Some(late));
}

/// Two servers (two pools) rotating one ring from the same generation, many rounds: one wins
/// each round, no version is lost or duplicated.
#[test]
fn two_servers_committing_one_ring() {
    let Some(url) = pg_support::url() else { return };
    let schema = pg_support::fresh_schema(&url);
    let servers: Vec<Arc<dyn KeyStore>> = (0..2)
        .map(|_| {
            Arc::new(PgKeyStore::open(pg_support::handle_in(&url, &schema)).unwrap())
                as Arc<dyn KeyStore>
        })
        .collect();
    let mut rows = two_version_ring();
    assert!(
        servers[0]
            .create_ring(&rows, &mut Journal::default())
            .unwrap()
    );
    for round in 0..20u8 {
        let barrier = Barrier::new(2);
        let outcomes = std::thread::scope(|s| {
            let handles: Vec<_> = servers
                .iter()
                .enumerate()
                .map(|(i, server)| {
                    let mut change = RingChange {
                        expected_generation: rows.ring.generation,
                        ring: rows.ring.clone(),
                        versions: vec![version(
                            rows.ring.primary_version + 1,
                            VersionState::Active,
                        )],
                        require_no_subject_keys_below: None,
                        journal: Journal::default(),
                    };
                    change.ring.generation += 1;
                    change.ring.primary_version += 1;
                    change.ring.mac = [round.wrapping_mul(2).wrapping_add(i as u8); 32];
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        (server.commit_ring(&mut change.clone()).unwrap(), change)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        });
        let winners: Vec<_> = outcomes
            .iter()
            .filter(|(o, _)| *o == CommitOutcome::Committed)
            .collect();
        assert_eq!(winners.len(), 1, "{outcomes:?}");
        rows = servers[1].load_ring("r").unwrap().rows.unwrap();
        assert_eq!(rows.ring, winners[0].1.ring);
    }
    assert_eq!(rows.ring.generation, 21);
    let versions: Vec<u32> = rows.versions.iter().map(|v| v.version).collect();
    assert_eq!(versions, (1..=22).collect::<Vec<_>>());
}

// ---- MFA across servers ----

/// Two servers (two pools, one database) receive the same login code at once, round after
/// round: exactly one accepts it. Then both guess wrong in parallel: no more guesses are checked
/// than the lock allows, and the lock holds on both servers.
#[test]
fn mfa_on_two_servers_accepts_a_code_once_and_locks_for_both() {
    use custodian::envelope::{Kek, StaticKek};
    use custodian::mfa::{LockoutPolicy, MfaError, MfaService, RejectReason, TotpKey, Verifier};
    use custodian::postgres::PgFactorStore;

    let Some(url) = pg_support::url() else { return };
    let schema = pg_support::fresh_schema(&url);
    let kek: Arc<dyn Kek> = Arc::new(StaticKek::generate("mfa-seeds", 1).unwrap());
    let servers: Vec<MfaService> = (0..2)
        .map(|_| {
            let store = PgFactorStore::open(pg_support::handle_in(&url, &schema)).unwrap();
            let state_key = custodian::SecretKey::from_bytes([9; 32]);
            MfaService::new(store, Arc::clone(&kek), state_key)
        })
        .collect();
    let now = 1_700_000_000;
    let verifier = Verifier::default();
    let key = TotpKey::generate().unwrap();
    let app = key.duplicate();
    servers[0]
        .begin_enrollment(&verifier, "jane", "phone", key, now, None)
        .unwrap();
    servers[1]
        .confirm_enrollment(
            &verifier,
            "jane",
            "phone",
            app.code_at(now).unwrap().expose_secret(),
            now,
        )
        .unwrap();

    for round in 1..=10u64 {
        let at = now + 30 * round;
        let code = app.code_at(at).unwrap();
        let barrier = Barrier::new(servers.len());
        let accepted = std::thread::scope(|s| {
            let handles: Vec<_> = servers
                .iter()
                .map(|server| {
                    let (barrier, code, verifier) = (&barrier, &code, &verifier);
                    s.spawn(move || {
                        barrier.wait();
                        server.verify(verifier, "jane", "phone", code.expose_secret(), at)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(Result::is_ok)
                .count()
        });
        assert_eq!(
            accepted, 1,
            "round {round}: one code, one login across servers"
        );
    }

    const LOCK_AFTER: u32 = 4;
    let verifier =
        Verifier::default().with_lockout(LockoutPolicy::new(3, 1, 1, LOCK_AFTER).unwrap());
    let at = now + 10_000;
    let right = app.code_at(at).unwrap();
    let checked: usize = std::thread::scope(|s| {
        let handles: Vec<_> = servers
            .iter()
            .enumerate()
            .map(|(n, server)| {
                let (verifier, right) = (&verifier, &right);
                s.spawn(move || {
                    let mut checked = 0;
                    for guess in 0..LOCK_AFTER as usize * 2 {
                        let wrong = format!("{:06}", (n * 500_000 + guess * 13) % 1_000_000);
                        if wrong == right.expose_secret() {
                            continue;
                        }
                        match server.verify(
                            verifier,
                            "jane",
                            "phone",
                            &wrong,
                            at + guess as u64 * 2,
                        ) {
                            Err(MfaError::Rejected(RejectReason::WrongCode)) => checked += 1,
                            Err(MfaError::Rejected(_)) => {}
                            other => panic!("unexpected outcome {other:?}"),
                        }
                    }
                    checked
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert!(checked <= LOCK_AFTER as usize, "{checked} guesses checked");
    let later = at + 60;
    for server in &servers {
        let code = app.code_at(later).unwrap();
        assert!(matches!(
            server.verify(&verifier, "jane", "phone", code.expose_secret(), later),
            Err(MfaError::Rejected(RejectReason::Locked))
        ));
    }
}

/// State MACs on PostgreSQL: an UPDATE that re-enables a disabled factor is refused as tampered,
/// and a table from schema version 2 (no `state_mac` column) is migrated, its rows refused until
/// adopted once.
#[test]
fn mfa_state_is_authenticated_and_old_rows_are_adopted_once() {
    use custodian::envelope::{Kek, StaticKek};
    use custodian::mfa::{MfaError, MfaService, TotpKey, Verifier};
    use custodian::postgres::PgFactorStore;
    use pg_support::execute;

    let Some(url) = pg_support::url() else { return };
    let schema = pg_support::fresh_schema(&url);
    let kek: Arc<dyn Kek> = Arc::new(StaticKek::generate("mfa-seeds", 1).unwrap());
    let server = |kek: &Arc<dyn Kek>| {
        let store = PgFactorStore::open(pg_support::handle_in(&url, &schema)).unwrap();
        MfaService::new(
            store,
            Arc::clone(kek),
            custodian::SecretKey::from_bytes([9; 32]),
        )
    };
    let service = server(&kek);
    let now = 1_700_000_000;
    let verifier = Verifier::default();
    let key = TotpKey::generate().unwrap();
    let app = key.duplicate();
    for user in ["jane", "joe"] {
        service
            .begin_enrollment(&verifier, user, "phone", key.duplicate(), now, None)
            .unwrap();
        let code = app.code_at(now).unwrap();
        service
            .confirm_enrollment(&verifier, user, "phone", code.expose_secret(), now)
            .unwrap();
    }
    let at = now + 30;
    let code = app.code_at(at).unwrap();
    let step_up = service
        .verify(&verifier, "jane", "phone", code.expose_secret(), at)
        .unwrap();
    service
        .disable(&verifier, "jane", "phone", &step_up, at)
        .unwrap();
    execute(
        &url,
        format!("UPDATE {schema}.custodian_mfa_factor SET phase = 'active' WHERE user_id = 'jane'"),
    );
    let later = at + 60;
    let code = app.code_at(later).unwrap();
    assert!(matches!(
        service.verify(&verifier, "jane", "phone", code.expose_secret(), later),
        Err(MfaError::StateTampered { .. })
    ));

    // Back to schema version 2, as an older build left it (no `state_mac` column, and none of
    // the later tables); a new server migrates.
    execute(
        &url,
        format!("ALTER TABLE {schema}.custodian_mfa_factor DROP COLUMN state_mac"),
    );
    // Later versions' tables did not exist yet either.
    for statement in [
        "DROP TABLE {s}.custodian_audit_entries, {s}.custodian_audit_hashes, {s}.custodian_ledger",
        "DROP FUNCTION {s}.custodian_audit_append_only",
        "DROP INDEX {s}.custodian_subject_keys_tombstones",
    ] {
        execute(&url, statement.replace("{s}", &schema));
    }
    execute(
        &url,
        format!("UPDATE {schema}.custodian_schema SET version = 2"),
    );
    let upgraded = server(&kek);
    assert_eq!(
        scalar(
            &url,
            format!("SELECT version::bigint FROM {schema}.custodian_schema")
        ),
        i64::from(SCHEMA_VERSION)
    );
    assert!(matches!(
        upgraded.verify(&verifier, "joe", "phone", code.expose_secret(), later),
        Err(MfaError::StateUnauthenticated { .. })
    ));
    assert!(
        upgraded
            .adopt_unauthenticated_state("joe", "phone")
            .unwrap()
    );
    assert!(
        !upgraded
            .adopt_unauthenticated_state("joe", "phone")
            .unwrap()
    );
    upgraded
        .verify(&verifier, "joe", "phone", code.expose_secret(), later)
        .unwrap();
}
