//! The [`KeyStore`] contract, one check per function.
//!
//! Every check takes a factory that returns a new, empty store each time it is called (for a
//! database: a fresh database or schema). A check returns the store's error where a call fails
//! that the contract says succeeds, and panics (an assertion naming the rule) where the store
//! answers wrongly. Stores only keep rows and compare-and-set them; they never check MACs, so the
//! rows here carry arbitrary bytes.

use crate::audit::{Action, AuditEntry, AuditEvent};
use crate::crypto::Suite;
use crate::keys::store::{
    ChangeFeed, CommitOutcome, Journal, KeyStore, LedgerRecord, LedgerWrite, RingChange,
    RingRecord, RingRows, SubjectRecord, TOMBSTONE_BUCKETS, VersionDigest, VersionRecord,
    tombstone_bucket,
};
use crate::keys::{KeyError, RotationPolicy, VersionState};
use std::sync::{Arc, Barrier};

/// Returns a new, empty store on every call.
pub type NewStore<'a> = &'a dyn Fn() -> Arc<dyn KeyStore>;

/// One check of the contract.
pub type Check = fn(NewStore<'_>) -> Result<(), KeyError>;

/// Every check, by name.
pub const ALL: &[(&str, Check)] = &[
    (
        "meta_put_if_absent_keeps_the_first_value",
        meta_put_if_absent_keeps_the_first_value,
    ),
    (
        "meta_put_if_absent_race_has_one_winner",
        meta_put_if_absent_race_has_one_winner,
    ),
    ("ring_rows_round_trip_exactly", ring_rows_round_trip_exactly),
    (
        "ring_names_are_sorted_by_bytes",
        ring_names_are_sorted_by_bytes,
    ),
    ("create_ring_twice_is_refused", create_ring_twice_is_refused),
    (
        "commit_ring_compares_and_sets_the_generation",
        commit_ring_compares_and_sets_the_generation,
    ),
    (
        "commit_ring_race_has_one_winner",
        commit_ring_race_has_one_winner,
    ),
    (
        "guarded_commit_refuses_while_subject_keys_depend",
        guarded_commit_refuses_while_subject_keys_depend,
    ),
    (
        "insert_subjects_reports_existing_rows",
        insert_subjects_reports_existing_rows,
    ),
    (
        "concurrent_inserts_of_one_subject_key_have_one_winner",
        concurrent_inserts_of_one_subject_key_have_one_winner,
    ),
    (
        "subject_generations_newest_and_history_order",
        subject_generations_newest_and_history_order,
    ),
    (
        "rewrap_only_rows_still_wrapped_by_the_expected_version",
        rewrap_only_rows_still_wrapped_by_the_expected_version,
    ),
    ("erase_only_live_rows", erase_only_live_rows),
    (
        "subjects_wrapped_below_filters_orders_and_limits",
        subjects_wrapped_below_filters_orders_and_limits,
    ),
    (
        "count_subjects_wrapped_below_counts_the_rows_it_would_list",
        count_subjects_wrapped_below_counts_the_rows_it_would_list,
    ),
    (
        "big_integers_are_refused_or_kept_exactly",
        big_integers_are_refused_or_kept_exactly,
    ),
    (
        "change_feed_announces_ring_changes_erasures_and_recreations",
        change_feed_announces_ring_changes_erasures_and_recreations,
    ),
    (
        "change_feed_positions_and_limits",
        change_feed_positions_and_limits,
    ),
    (
        "ledger_is_initialised_once_and_compare_and_set",
        ledger_is_initialised_once_and_compare_and_set,
    ),
    (
        "audit_entries_commit_with_their_change_only",
        audit_entries_commit_with_their_change_only,
    ),
    ("purge_answers", purge_answers),
    (
        "tombstone_buckets_match_the_documented_function",
        tombstone_buckets_match_the_documented_function,
    ),
];

/// Runs every check of [`ALL`] in order; panics naming the check where a store call fails (an
/// assertion that fails names its rule itself).
///
/// ```
/// use custodian::conformance::key_store;
/// use custodian::keys::{KeyStore, MemoryKeyStore};
/// use std::sync::Arc;
///
/// key_store::all(&|| Arc::new(MemoryKeyStore::new()) as Arc<dyn KeyStore>);
/// ```
pub fn all(new_store: NewStore<'_>) {
    for (name, check) in ALL {
        if let Err(error) = check(new_store) {
            panic!("key store conformance check `{name}`: the store failed: {error}");
        }
    }
}

// ---- Rows ----

fn version(
    ring: &str,
    version: u32,
    state: VersionState,
    superseded_at: Option<u64>,
) -> VersionRecord {
    VersionRecord {
        ring: ring.to_owned(),
        version,
        state,
        wrapped_key: (state != VersionState::Destroyed).then(|| vec![version as u8; 61]),
        created_at: 1_700_000_000 + u64::from(version),
        superseded_at,
        usage_reserved: u64::from(version) * 65_536,
        mac: [version as u8 ^ 0x5a; 32],
    }
}

/// A ring at `generation` with versions `1..=versions`, the last one primary.
fn ring(name: &str, generation: u64, versions: u32) -> RingRows {
    let rows: Vec<VersionRecord> = (1..=versions)
        .map(|v| {
            let primary = v == versions;
            let state = if primary {
                VersionState::Active
            } else {
                VersionState::DecryptOnly
            };
            version(
                name,
                v,
                state,
                (!primary).then_some(1_700_000_100 + u64::from(v)),
            )
        })
        .collect();
    RingRows {
        ring: RingRecord {
            name: name.to_owned(),
            generation,
            suite: Suite::default(),
            primary_version: versions,
            min_encryption_version: versions,
            min_decryption_version: 1,
            policy: RotationPolicy::default(),
            created_at: 1_700_000_000,
            versions: rows
                .iter()
                .map(|v| VersionDigest {
                    version: v.version,
                    state: v.state,
                    mac: v.mac,
                })
                .collect(),
            mac: [generation as u8; 32],
        },
        versions: rows,
    }
}

/// The change that moves `rows` to the next generation with one more version.
fn rotation(rows: &RingRows) -> RingChange {
    let next = rows.ring.primary_version + 1;
    let mut ring = ring(&rows.ring.name, rows.ring.generation + 1, next).ring;
    ring.mac = [0xc0 ^ (rows.ring.generation as u8); 32];
    let mut superseded = version(
        &rows.ring.name,
        next - 1,
        VersionState::DecryptOnly,
        Some(1_700_009_999),
    );
    superseded.usage_reserved += 1;
    RingChange {
        expected_generation: rows.ring.generation,
        ring,
        versions: vec![
            superseded,
            version(&rows.ring.name, next, VersionState::Active, None),
        ],
        require_no_subject_keys_below: None,
        journal: Journal::default(),
    }
}

fn subject(ring: &str, subject: &str, generation: u64, wrapped_by: u32, key: u8) -> SubjectRecord {
    SubjectRecord {
        ring: ring.to_owned(),
        subject: subject.to_owned(),
        generation,
        wrapped_by,
        wrapped_key: Some(vec![key; 60]),
        created_at: 1_700_000_500 + generation,
        erased_at: None,
        mac: [key; 32],
    }
}

fn tombstone(row: &SubjectRecord, erased_at: u64) -> SubjectRecord {
    SubjectRecord {
        wrapped_key: None,
        erased_at: Some(erased_at),
        mac: [0xee; 32],
        ..row.clone()
    }
}

fn create(store: &dyn KeyStore, rows: &RingRows) -> Result<(), KeyError> {
    assert!(
        store.create_ring(rows, &mut Journal::default())?,
        "creating ring `{}` in an empty store",
        rows.ring.name
    );
    Ok(())
}

fn expect_loaded(store: &dyn KeyStore, expected: &RingRows) -> Result<(), KeyError> {
    let loaded = store.load_ring(&expected.ring.name)?.rows;
    assert_eq!(
        loaded.as_ref(),
        Some(expected),
        "ring `{}` as stored",
        expected.ring.name
    );
    Ok(())
}

/// Joins a scoped thread, passing its panic on.
fn join<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

// ---- Checks ----

/// `get_meta` and `put_meta_if_absent`: the first value stays, binary values round-trip.
pub fn meta_put_if_absent_keeps_the_first_value(new_store: NewStore<'_>) -> Result<(), KeyError> {
    let store = new_store();
    assert_eq!(store.get_meta("integrity_key")?, None);
    let first = [0u8, 1, 2, 0xff, 0];
    assert_eq!(store.put_meta_if_absent("integrity_key", &first)?, first);
    assert_eq!(store.put_meta_if_absent("integrity_key", b"second")?, first);
    assert_eq!(
        store.get_meta("integrity_key")?.as_deref(),
        Some(&first[..])
    );
    assert_eq!(store.get_meta("other")?, None);
    Ok(())
}

/// Two threads initialising the same value at once agree on one winner.
pub fn meta_put_if_absent_race_has_one_winner(new_store: NewStore<'_>) -> Result<(), KeyError> {
    let store = new_store();
    for round in 0..10u8 {
        let key = format!("race-{round}");
        let barrier = Barrier::new(2);
        let (a, b) = std::thread::scope(|s| {
            let put = |value: u8| {
                let (store, key, barrier) = (&store, &key, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    store.put_meta_if_absent(key, &[value; 16])
                })
            };
            let (a, b) = (put(1), put(2));
            (join(a), join(b))
        });
        let (a, b) = (a?, b?);
        assert_eq!(a, b, "both initialisers must be told the same winner");
        assert!(a == [1; 16] || a == [2; 16]);
        assert_eq!(store.get_meta(&key)?, Some(a));
    }
    Ok(())
}

/// A ring and its versions come back exactly as written, absent values included.
pub fn ring_rows_round_trip_exactly(new_store: NewStore<'_>) -> Result<(), KeyError> {
    let store = new_store();
    assert_eq!(store.load_ring("customers")?.rows, None);
    let mut rows = ring("customers", 7, 3);
    rows.ring.policy = RotationPolicy {
        max_age_secs: Some(86_400),
        max_encryptions: 1 << 32,
        propagation_secs: 0,
    };
    rows.ring.suite = Suite::XChaCha20Poly1305;
    rows.ring.min_decryption_version = 2;
    rows.ring.min_encryption_version = 3;
    if let Some(first) = rows.versions.first_mut() {
        *first = version("customers", 1, VersionState::Destroyed, Some(1_700_000_101));
    }
    create(store.as_ref(), &rows)?;
    expect_loaded(store.as_ref(), &rows)?;
    assert_eq!(
        store.load_ring("Customers")?.rows,
        None,
        "names are case-sensitive"
    );
    Ok(())
}

/// `ring_names` lists every ring once, in byte order.
pub fn ring_names_are_sorted_by_bytes(new_store: NewStore<'_>) -> Result<(), KeyError> {
    let store = new_store();
    assert!(store.ring_names()?.is_empty());
    for name in ["b", "a", "B", "a.1", "a-1", "_x"] {
        create(store.as_ref(), &ring(name, 1, 1))?;
    }
    assert_eq!(store.ring_names()?, ["B", "_x", "a", "a-1", "a.1", "b"]);
    Ok(())
}

/// A second ring of the same name is refused and changes nothing.
pub fn create_ring_twice_is_refused(new_store: NewStore<'_>) -> Result<(), KeyError> {
    let store = new_store();
    let rows = ring("orders", 1, 1);
    create(store.as_ref(), &rows)?;
    assert!(
        !store.create_ring(&ring("orders", 5, 2), &mut Journal::default())?,
        "second create of `orders`"
    );
    expect_loaded(store.as_ref(), &rows)?;
    Ok(())
}

/// `commit_ring` applies a change only from the current generation; stale or unknown is a
/// conflict that writes nothing.
pub fn commit_ring_compares_and_sets_the_generation(
    new_store: NewStore<'_>,
) -> Result<(), KeyError> {
    let store = new_store();
    let rows = ring("orders", 1, 1);
    create(store.as_ref(), &rows)?;
    let change = rotation(&rows);
    assert_eq!(
        store.commit_ring(&mut change.clone())?,
        CommitOutcome::Committed
    );
    let rotated = RingRows {
        ring: change.ring.clone(),
        versions: change.versions.clone(),
    };
    expect_loaded(store.as_ref(), &rotated)?;

    // The same change again: its expected generation is stale now.
    let mut stale = change.clone();
    stale.ring.mac = [0x11; 32];
    assert_eq!(
        store.commit_ring(&mut stale.clone())?,
        CommitOutcome::Conflict
    );
    expect_loaded(store.as_ref(), &rotated)?;

    let mut unknown = rotation(&ring("nowhere", 1, 1));
    unknown.ring.name = "nowhere".into();
    assert_eq!(
        store.commit_ring(&mut unknown.clone())?,
        CommitOutcome::Conflict
    );
    assert_eq!(store.load_ring("nowhere")?.rows, None);

    // A change that only rewrites existing version rows (no new version).
    let mut usage = rotation(&rotated);
    usage.ring.primary_version = 2;
    usage.versions.truncate(1);
    if let Some(v) = usage.versions.first_mut() {
        *v = version("orders", 2, VersionState::Active, None);
        v.usage_reserved = 1 << 20;
    }
    assert_eq!(
        store.commit_ring(&mut usage.clone())?,
        CommitOutcome::Committed
    );
    let loaded = store.load_ring("orders")?.rows;
    let loaded = loaded
        .as_ref()
        .map(|r| (r.ring.generation, r.versions.len()));
    assert_eq!(
        loaded,
        Some((3, 2)),
        "generation and version count after the second change"
    );
    Ok(())
}

/// Two writers committing from the same generation at once: exactly one wins.
pub fn commit_ring_race_has_one_winner(new_store: NewStore<'_>) -> Result<(), KeyError> {
    let store = new_store();
    let mut rows = ring("race", 1, 1);
    create(store.as_ref(), &rows)?;
    for _ in 0..10 {
        let mut a = rotation(&rows);
        let mut b = rotation(&rows);
        a.ring.mac = [0xaa; 32];
        b.ring.mac = [0xbb; 32];
        let barrier = Barrier::new(2);
        let (ra, rb) = std::thread::scope(|s| {
            let commit = |change: &RingChange| {
                let (store, barrier, change) = (&store, &barrier, change.clone());
                s.spawn(move || {
                    barrier.wait();
                    store.commit_ring(&mut change.clone())
                })
            };
            let (ha, hb) = (commit(&a), commit(&b));
            (join(ha), join(hb))
        });
        let (ra, rb) = (ra?, rb?);
        let a_won = (ra, rb) == (CommitOutcome::Committed, CommitOutcome::Conflict);
        let b_won = (ra, rb) == (CommitOutcome::Conflict, CommitOutcome::Committed);
        assert!(
            a_won || b_won,
            "two commits from one generation: expected one winner, got {ra:?} and {rb:?}"
        );
        let winner = if a_won { a } else { b };
        rows = RingRows {
            ring: winner.ring,
            versions: store
                .load_ring("race")?
                .rows
                .map(|r| r.versions)
                .unwrap_or_default(),
        };
        expect_loaded(store.as_ref(), &rows)?;
    }
    assert_eq!(rows.ring.generation, 11);
    assert_eq!(
        rows.versions.len(),
        11,
        "one version per committed rotation, none lost"
    );
    Ok(())
}

/// A change that requires no live subject key below a version is refused, writing nothing,
/// while such keys exist; erased keys and other rings' keys do not count.
pub fn guarded_commit_refuses_while_subject_keys_depend(
    new_store: NewStore<'_>,
) -> Result<(), KeyError> {
    let store = new_store();
    let rows = ring("r", 1, 3);
    create(store.as_ref(), &rows)?;
    create(store.as_ref(), &ring("other", 1, 1))?;
    let a = subject("r", "a", 1, 1, 1);
    let b = subject("r", "b", 1, 2, 2);
    let erased = subject("r", "c", 1, 1, 3);
    let elsewhere = subject("other", "a", 1, 1, 4);
    let inserted = store.insert_subjects(
        &[a.clone(), b.clone(), erased.clone(), elsewhere],
        &mut Journal::default(),
    )?;
    assert_eq!(inserted, [true; 4]);
    assert!(store.erase_subject(&tombstone(&erased, 1_700_001_000), &mut Journal::default())?);

    let mut change = rotation(&rows);
    change.versions.clear();
    change.ring.primary_version = 3;
    change.require_no_subject_keys_below = Some(2);
    assert_eq!(
        store.commit_ring(&mut change.clone())?,
        CommitOutcome::SubjectKeysDepend(1)
    );
    change.require_no_subject_keys_below = Some(3);
    assert_eq!(
        store.commit_ring(&mut change.clone())?,
        CommitOutcome::SubjectKeysDepend(2)
    );
    expect_loaded(store.as_ref(), &rows)?;

    let mut a3 = a.clone();
    a3.wrapped_by = 3;
    assert_eq!(store.rewrap_subjects(&[(a3, 1)])?, [true]);
    assert_eq!(
        store.commit_ring(&mut change.clone())?,
        CommitOutcome::SubjectKeysDepend(1)
    );
    change.require_no_subject_keys_below = Some(2);
    assert_eq!(
        store.commit_ring(&mut change.clone())?,
        CommitOutcome::Committed
    );
    let generation = store.load_ring("r")?.rows.map(|r| r.ring.generation);
    assert_eq!(generation, Some(2));
    Ok(())
}

/// `insert_subjects` reports per row whether it was inserted; an existing row is left as it was.
pub fn insert_subjects_reports_existing_rows(new_store: NewStore<'_>) -> Result<(), KeyError> {
    let store = new_store();
    create(store.as_ref(), &ring("r", 1, 1))?;
    assert_eq!(
        store.insert_subjects(&[], &mut Journal::default())?,
        Vec::<bool>::new()
    );
    let a = subject("r", "a", 1, 1, 1);
    let b = subject("r", "b", 1, 1, 2);
    assert_eq!(
        store.insert_subjects(&[a.clone(), b.clone()], &mut Journal::default())?,
        [true, true]
    );

    let a_again = subject("r", "a", 1, 1, 9);
    let c = subject("r", "c", 1, 1, 3);
    let a2 = subject("r", "a", 2, 1, 4);
    assert_eq!(
        store.insert_subjects(&[a_again, c.clone(), a2.clone()], &mut Journal::default())?,
        [false, true, true]
    );
    assert_eq!(store.subject_history("r", "a")?, [a, a2]);
    assert_eq!(store.load_subject("r", "c")?.row, Some(c));

    // Two rows with one key in one call: the first is inserted, the second reported existing.
    let d = subject("r", "d", 1, 1, 5);
    let d_dup = subject("r", "d", 1, 1, 6);
    assert_eq!(
        store.insert_subjects(&[d.clone(), d_dup], &mut Journal::default())?,
        [true, false]
    );
    assert_eq!(store.load_subject("r", "d")?.row, Some(d));
    assert_eq!(store.load_subject("r", "b")?.row, Some(b));
    Ok(())
}

/// Two writers creating the same subject key at once: one is told it inserted, and its row is
/// the one stored.
pub fn concurrent_inserts_of_one_subject_key_have_one_winner(
    new_store: NewStore<'_>,
) -> Result<(), KeyError> {
    let store = new_store();
    create(store.as_ref(), &ring("r", 1, 1))?;
    for round in 0..10 {
        let name = format!("customer-{round}");
        let rows = [
            subject("r", &name, 1, 1, 0xa0),
            subject("r", &name, 1, 1, 0xb0),
        ];
        let barrier = Barrier::new(2);
        let results = std::thread::scope(|s| {
            let handles: Vec<_> = rows
                .iter()
                .map(|row| {
                    let (store, barrier, row) = (&store, &barrier, row.clone());
                    s.spawn(move || {
                        barrier.wait();
                        store.insert_subjects(&[row], &mut Journal::default())
                    })
                })
                .collect();
            handles.into_iter().map(join).collect::<Vec<_>>()
        });
        let results = results.into_iter().collect::<Result<Vec<_>, _>>()?;
        let winners: Vec<&SubjectRecord> = rows
            .iter()
            .zip(&results)
            .filter(|(_, inserted)| inserted.as_slice() == [true])
            .map(|(row, _)| row)
            .collect();
        assert_eq!(winners.len(), 1, "inserted flags {results:?}");
        assert_eq!(
            store.load_subject("r", &name)?.row.as_ref(),
            winners.first().copied()
        );
    }
    Ok(())
}

/// `load_subject` returns the newest generation, `subject_history` all of them oldest first,
/// each scoped to its ring and subject.
pub fn subject_generations_newest_and_history_order(
    new_store: NewStore<'_>,
) -> Result<(), KeyError> {
    let store = new_store();
    create(store.as_ref(), &ring("r", 1, 1))?;
    create(store.as_ref(), &ring("s", 1, 1))?;
    assert_eq!(store.load_subject("r", "a")?.row, None);
    assert!(store.subject_history("r", "a")?.is_empty());
    let g1 = tombstone(&subject("r", "a", 1, 1, 1), 1_700_000_900);
    let g2 = tombstone(&subject("r", "a", 2, 1, 2), 1_700_000_901);
    let g3 = subject("r", "a", 3, 1, 3);
    let g10 = subject("r", "a", 10, 1, 10);
    // Written out of order, and with neighbours that must not leak in.
    let others = [
        subject("s", "a", 11, 1, 7),
        subject("r", "ab", 12, 1, 8),
        subject("r", "A", 13, 1, 9),
    ];
    store.insert_subjects(&[g3.clone(), g1.clone()], &mut Journal::default())?;
    store.insert_subjects(&others, &mut Journal::default())?;
    store.insert_subjects(&[g10.clone(), g2.clone()], &mut Journal::default())?;
    assert_eq!(store.load_subject("r", "a")?.row, Some(g10.clone()));
    assert_eq!(store.subject_history("r", "a")?, [g1, g2, g3, g10]);
    assert_eq!(store.subject_history("s", "a")?.len(), 1);
    Ok(())
}

/// `rewrap_subjects` replaces a row only while it is live and still wrapped by the expected
/// version; per row, it says which.
pub fn rewrap_only_rows_still_wrapped_by_the_expected_version(
    new_store: NewStore<'_>,
) -> Result<(), KeyError> {
    let store = new_store();
    create(store.as_ref(), &ring("r", 1, 3))?;
    let a = subject("r", "a", 1, 1, 1);
    let b = subject("r", "b", 1, 1, 2);
    let c = subject("r", "c", 1, 1, 3);
    store.insert_subjects(&[a.clone(), b.clone(), c.clone()], &mut Journal::default())?;
    assert!(store.erase_subject(&tombstone(&c, 1_700_002_000), &mut Journal::default())?);
    let rewrapped = |row: &SubjectRecord, to: u32| SubjectRecord {
        wrapped_by: to,
        wrapped_key: Some(vec![0x40 + to as u8; 60]),
        mac: [0x40 + to as u8; 32],
        ..row.clone()
    };
    assert_eq!(store.rewrap_subjects(&[])?, Vec::<bool>::new());
    let a2 = rewrapped(&a, 2);
    let missing = subject("r", "missing", 1, 1, 4);
    assert_eq!(
        store.rewrap_subjects(&[
            (a2.clone(), 1),
            (rewrapped(&b, 3), 2),
            (rewrapped(&c, 3), 1),
            (rewrapped(&missing, 3), 1),
        ])?,
        [true, false, false, false]
    );
    assert_eq!(store.load_subject("r", "a")?.row, Some(a2.clone()));
    assert_eq!(store.load_subject("r", "b")?.row, Some(b));
    assert_eq!(
        store.load_subject("r", "c")?.row.map(|r| r.is_live()),
        Some(false)
    );
    assert_eq!(store.load_subject("r", "missing")?.row, None);
    // Rewrapped again from the version it now has; the stale expectation fails.
    assert_eq!(store.rewrap_subjects(&[(rewrapped(&a, 3), 1)])?, [false]);
    let a3 = rewrapped(&a, 3);
    assert_eq!(store.rewrap_subjects(&[(a3.clone(), 2)])?, [true]);
    assert_eq!(store.load_subject("r", "a")?.row, Some(a3));
    Ok(())
}

/// `erase_subject` turns only a live row into the tombstone; erasing again changes nothing.
pub fn erase_only_live_rows(new_store: NewStore<'_>) -> Result<(), KeyError> {
    let store = new_store();
    create(store.as_ref(), &ring("r", 1, 1))?;
    let a = subject("r", "a", 1, 1, 1);
    let a2 = subject("r", "a", 2, 1, 2);
    store.insert_subjects(std::slice::from_ref(&a), &mut Journal::default())?;
    assert!(
        !store.erase_subject(&tombstone(&a2, 1_700_003_000), &mut Journal::default())?,
        "no such generation"
    );
    let dead = tombstone(&a, 1_700_003_000);
    assert!(store.erase_subject(&dead, &mut Journal::default())?);
    assert_eq!(store.load_subject("r", "a")?.row, Some(dead.clone()));
    let mut later = tombstone(&a, 1_700_004_000);
    later.mac = [0x77; 32];
    assert!(
        !store.erase_subject(&later, &mut Journal::default())?,
        "erased already"
    );
    assert_eq!(store.load_subject("r", "a")?.row, Some(dead.clone()));
    // A tombstone for a subject that never had a key is written with insert_subjects.
    let never = tombstone(&subject("r", "never", 1, 0, 0), 1_700_005_000);
    assert_eq!(
        store.insert_subjects(std::slice::from_ref(&never), &mut Journal::default())?,
        [true]
    );
    assert!(!store.erase_subject(&never, &mut Journal::default())?);
    assert_eq!(store.subject_history("r", "never")?, [never]);
    Ok(())
}

/// `subjects_wrapped_below` lists live rows of the ring below the version, oldest wrapping version
/// first, at most `limit`.
pub fn subjects_wrapped_below_filters_orders_and_limits(
    new_store: NewStore<'_>,
) -> Result<(), KeyError> {
    let store = new_store();
    create(store.as_ref(), &ring("r", 1, 3))?;
    create(store.as_ref(), &ring("s", 1, 1))?;
    let b1 = subject("r", "b", 1, 1, 1);
    let a2 = subject("r", "a", 2, 2, 2);
    let a1 = tombstone(&subject("r", "a", 1, 1, 3), 1_700_006_000);
    let upper = subject("r", "B", 1, 1, 4);
    let current = subject("r", "c", 1, 3, 5);
    let d1 = subject("r", "d", 1, 1, 6);
    let elsewhere = subject("s", "a", 1, 1, 7);
    store.insert_subjects(
        &[
            b1.clone(),
            a2.clone(),
            a1,
            upper.clone(),
            current,
            d1.clone(),
            elsewhere,
        ],
        &mut Journal::default(),
    )?;
    // Within one wrapping version the order is the store's: compare as sets, by subject.
    let by_subject = |mut rows: Vec<SubjectRecord>| {
        rows.sort_by(|x, y| (&x.subject, x.generation).cmp(&(&y.subject, y.generation)));
        rows
    };
    let below_3 = store.subjects_wrapped_below("r", 3, 100)?;
    let versions: Vec<u32> = below_3.iter().map(|s| s.wrapped_by).collect();
    assert_eq!(versions, [1, 1, 1, 2], "oldest wrapping version first");
    let all = [upper.clone(), a2.clone(), b1.clone(), d1.clone()];
    assert_eq!(by_subject(below_3), all);
    let first_two = store.subjects_wrapped_below("r", 3, 2)?;
    assert_eq!(first_two.len(), 2);
    assert!(first_two.iter().all(|s| s.wrapped_by == 1), "{first_two:?}");
    assert!(first_two.iter().all(|s| [&upper, &b1, &d1].contains(&s)));
    assert_eq!(
        by_subject(store.subjects_wrapped_below("r", 2, 100)?),
        [upper, b1, d1]
    );
    assert!(store.subjects_wrapped_below("r", 3, 0)?.is_empty());
    assert!(store.subjects_wrapped_below("r", 1, 100)?.is_empty());
    assert!(store.subjects_wrapped_below("nowhere", 9, 100)?.is_empty());
    assert_eq!(store.subjects_wrapped_below("r", 3, usize::MAX)?.len(), 4);
    Ok(())
}

/// `count_subjects_wrapped_below` counts exactly the live rows of the ring below the version (what
/// `subjects_wrapped_below` lists without a limit), and follows rewraps, erasures and new
/// generations.
pub fn count_subjects_wrapped_below_counts_the_rows_it_would_list(
    new_store: NewStore<'_>,
) -> Result<(), KeyError> {
    let store = new_store();
    assert_eq!(store.count_subjects_wrapped_below("r", 9)?, 0, "no ring");
    create(store.as_ref(), &ring("r", 1, 3))?;
    create(store.as_ref(), &ring("s", 1, 1))?;
    let a1 = subject("r", "a", 1, 1, 1);
    let b1 = subject("r", "b", 1, 1, 2);
    let c2 = subject("r", "c", 1, 2, 3);
    let d3 = subject("r", "d", 1, 3, 4);
    let erased = subject("r", "e", 1, 1, 5);
    let elsewhere = subject("s", "a", 1, 1, 6);
    store.insert_subjects(
        &[a1.clone(), b1.clone(), c2, d3, erased.clone(), elsewhere],
        &mut Journal::default(),
    )?;
    assert!(store.erase_subject(&tombstone(&erased, 1_700_007_000), &mut Journal::default())?);
    for version in 0..=4 {
        let listed = store
            .subjects_wrapped_below("r", version, usize::MAX)?
            .len() as u64;
        assert_eq!(
            store.count_subjects_wrapped_below("r", version)?,
            listed,
            "below version {version}: the count must match the list"
        );
    }
    assert_eq!(store.count_subjects_wrapped_below("r", 1)?, 0);
    assert_eq!(store.count_subjects_wrapped_below("r", 2)?, 2, "a and b");
    assert_eq!(store.count_subjects_wrapped_below("r", 3)?, 3, "a, b and c");
    assert_eq!(store.count_subjects_wrapped_below("r", u32::MAX)?, 4);
    assert_eq!(store.count_subjects_wrapped_below("s", 2)?, 1);
    // A rewrap to the newest version and an erasure each take one off.
    let a3 = SubjectRecord {
        wrapped_by: 3,
        wrapped_key: Some(vec![0x43; 60]),
        mac: [0x43; 32],
        ..a1
    };
    assert_eq!(store.rewrap_subjects(&[(a3, 1)])?, [true]);
    assert_eq!(store.count_subjects_wrapped_below("r", 3)?, 2);
    assert!(store.erase_subject(&tombstone(&b1, 1_700_008_000), &mut Journal::default())?);
    assert_eq!(store.count_subjects_wrapped_below("r", 3)?, 1, "only c");
    // A subject re-created after its erasure counts again, once.
    store.insert_subjects(&[subject("r", "b", 2, 1, 7)], &mut Journal::default())?;
    assert_eq!(store.count_subjects_wrapped_below("r", 3)?, 2);
    Ok(())
}

/// Integers up to `i64::MAX` are kept exactly. Above it, a store either refuses the whole call,
/// writing nothing, or keeps the value exactly; it never stores a different number.
pub fn big_integers_are_refused_or_kept_exactly(new_store: NewStore<'_>) -> Result<(), KeyError> {
    let store = new_store();
    let max = i64::MAX as u64;

    let mut edge = ring("edge", max, 2);
    edge.ring.created_at = max;
    edge.ring.policy.propagation_secs = max;
    edge.ring.policy.max_age_secs = Some(max);
    for v in &mut edge.versions {
        v.usage_reserved = max;
        v.created_at = max;
    }
    create(store.as_ref(), &edge)?;
    expect_loaded(store.as_ref(), &edge)?;
    let edge_subject = SubjectRecord {
        created_at: max,
        erased_at: Some(max),
        wrapped_key: None,
        ..subject("edge", "s", max, u32::MAX, 1)
    };
    assert_eq!(
        store.insert_subjects(std::slice::from_ref(&edge_subject), &mut Journal::default())?,
        [true]
    );
    assert_eq!(store.load_subject("edge", "s")?.row, Some(edge_subject));

    // A ring whose generation does not fit.
    let huge = ring("huge", u64::MAX, 1);
    match store.create_ring(&huge, &mut Journal::default()) {
        Ok(created) => {
            assert!(created);
            expect_loaded(store.as_ref(), &huge)?;
        }
        Err(_) => {
            assert_eq!(
                store.load_ring("huge")?.rows,
                None,
                "a refused ring must not be stored"
            );
            assert!(!store.ring_names()?.contains(&"huge".to_owned()));
        }
    }

    // A version row that does not fit, in an otherwise valid change.
    let rows = ring("r", 1, 1);
    create(store.as_ref(), &rows)?;
    let mut change = rotation(&rows);
    if let Some(v) = change.versions.last_mut() {
        v.usage_reserved = u64::MAX;
    }
    match store.commit_ring(&mut change.clone()) {
        Ok(outcome) => {
            assert_eq!(outcome, CommitOutcome::Committed);
            let expected = RingRows {
                ring: change.ring.clone(),
                versions: change.versions.clone(),
            };
            expect_loaded(store.as_ref(), &expected)?;
        }
        Err(_) => expect_loaded(store.as_ref(), &rows)?,
    }

    // One row of a batch that does not fit: all or nothing.
    let fine = subject("r", "fine", 1, 1, 1);
    let mut too_big = subject("r", "too-big", 1, 1, 2);
    too_big.created_at = u64::MAX;
    match store.insert_subjects(&[fine.clone(), too_big.clone()], &mut Journal::default()) {
        Ok(inserted) => {
            assert_eq!(inserted, [true, true]);
            assert_eq!(store.load_subject("r", "too-big")?.row, Some(too_big));
            assert_eq!(store.load_subject("r", "fine")?.row, Some(fine));
        }
        Err(_) => {
            assert_eq!(
                store.load_subject("r", "fine")?.row,
                None,
                "a refused batch must write nothing"
            );
            assert_eq!(store.load_subject("r", "too-big")?.row, None);
        }
    }
    Ok(())
}

fn feed_entries(feed: &ChangeFeed) -> Vec<(String, Option<String>)> {
    feed.changes
        .iter()
        .map(|c| (c.ring.clone(), c.subject.clone()))
        .collect()
}

/// The change feed gets one entry per committed ring change, per erasure and per inserted row
/// that is a tombstone or a re-creation, and none for anything refused or unchanged.
pub fn change_feed_announces_ring_changes_erasures_and_recreations(
    new_store: NewStore<'_>,
) -> Result<(), KeyError> {
    let store = new_store();
    let empty = ChangeFeed {
        latest: 0,
        changes: Vec::new(),
        complete: true,
    };
    assert_eq!(store.changes_since(0, 100)?, empty, "a new store's feed");
    let rows = ring("r", 1, 1);
    create(store.as_ref(), &rows)?;
    let a1 = subject("r", "a", 1, 1, 1);
    assert_eq!(
        store.insert_subjects(std::slice::from_ref(&a1), &mut Journal::default())?,
        [true]
    );
    assert_eq!(
        store.changes_since(0, 100)?,
        empty,
        "creating a ring or a first subject key announces nothing"
    );

    let change = rotation(&rows);
    assert_eq!(
        store.commit_ring(&mut change.clone())?,
        CommitOutcome::Committed
    );
    assert_eq!(
        store.commit_ring(&mut change.clone())?,
        CommitOutcome::Conflict
    );
    assert!(store.erase_subject(&tombstone(&a1, 1_700_007_000), &mut Journal::default())?);
    assert!(!store.erase_subject(&tombstone(&a1, 1_700_007_001), &mut Journal::default())?);
    let a2 = subject("r", "a", 2, 2, 2);
    let never = tombstone(&subject("r", "never", 1, 0, 0), 1_700_007_002);
    assert_eq!(
        store.insert_subjects(&[a2.clone(), never], &mut Journal::default())?,
        [true, true]
    );
    assert_eq!(
        store.insert_subjects(&[a2], &mut Journal::default())?,
        [false]
    );

    let feed = store.changes_since(0, 100)?;
    assert!(feed.complete);
    let r = || "r".to_owned();
    let s = |name: &str| Some(name.to_owned());
    assert_eq!(
        feed_entries(&feed),
        [(r(), None), (r(), s("a")), (r(), s("a")), (r(), s("never"))],
        "rotation, erasure, re-creation, erasure of a subject without a key"
    );
    let seqs: Vec<u64> = feed.changes.iter().map(|c| c.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w.first() < w.get(1)),
        "increasing positions {seqs:?}"
    );
    assert_eq!(seqs.last().copied(), Some(feed.latest));
    Ok(())
}

/// Reading from a position returns what follows it; `u64::MAX` or the newest position return
/// nothing but the newest position; more entries than the limit make the answer incomplete.
pub fn change_feed_positions_and_limits(new_store: NewStore<'_>) -> Result<(), KeyError> {
    let store = new_store();
    let mut rows = ring("r", 1, 1);
    create(store.as_ref(), &rows)?;
    for _ in 0..4 {
        let change = rotation(&rows);
        assert_eq!(
            store.commit_ring(&mut change.clone())?,
            CommitOutcome::Committed
        );
        rows = RingRows {
            ring: change.ring,
            versions: change.versions,
        };
    }
    let all = store.changes_since(0, 100)?;
    assert_eq!(all.changes.len(), 4);
    let latest = all.latest;
    let first = all.changes.first().map(|c| c.seq).unwrap_or_default();
    let after_first = store.changes_since(first, 100)?;
    assert!(after_first.complete);
    assert_eq!(
        after_first.changes.as_slice(),
        all.changes.get(1..).unwrap_or_default()
    );
    for after in [latest, u64::MAX] {
        assert_eq!(
            store.changes_since(after, 100)?,
            ChangeFeed {
                latest,
                changes: Vec::new(),
                complete: true
            },
            "after {after}"
        );
    }
    let exact = store.changes_since(0, 4)?;
    assert!(exact.complete);
    assert_eq!(exact.changes.len(), 4);
    let short = store.changes_since(0, 3)?;
    assert!(!short.complete, "four entries do not fit a limit of three");
    assert!(short.changes.is_empty());
    assert_eq!(short.latest, latest);
    Ok(())
}

/// A ledger row; stores keep its counts without interpreting them.
fn ledger(counter: u64, erasures: u64, rings: &[(&str, u64)]) -> LedgerRecord {
    let mut buckets = vec![0; TOMBSTONE_BUCKETS];
    buckets[usize::from(tombstone_bucket("a"))] = erasures;
    LedgerRecord {
        counter,
        erasures: buckets,
        rings: rings.iter().map(|(n, g)| ((*n).to_owned(), *g)).collect(),
        mac: [counter as u8; 32],
    }
}

fn ledger_journal(expected: u64, next: LedgerRecord) -> Journal {
    Journal {
        ledger: Some(LedgerWrite {
            expected_counter: Some(expected),
            record: next,
        }),
        ..Journal::default()
    }
}

/// `init_ledger` writes the ledger, the new meta value and retires the old one, once; every
/// journaled change then writes the ledger only from the expected counter, or nothing at all
/// ([`KeyError::LedgerMoved`]). Reads return the ledger with the number of tombstones.
pub fn ledger_is_initialised_once_and_compare_and_set(
    new_store: NewStore<'_>,
) -> Result<(), KeyError> {
    let store = new_store();
    let view = store.load_ledger()?;
    assert_eq!(view.ledger, None, "a new store");
    assert_eq!(
        view.tombstones,
        (0..TOMBSTONE_BUCKETS as u16)
            .map(|b| (b, 0))
            .collect::<Vec<_>>(),
        "load_ledger counts every bucket"
    );
    store.put_meta_if_absent("old_key", b"old")?;
    let first = ledger(1, 0, &[]);
    assert!(store.init_ledger(&first, ("new_key", b"new"), "old_key")?);
    assert_eq!(store.get_meta("new_key")?.as_deref(), Some(&b"new"[..]));
    assert_eq!(
        store.get_meta("old_key")?,
        None,
        "the retired key is deleted"
    );
    assert!(
        !store.init_ledger(&ledger(9, 9, &[]), ("new_key", b"other"), "old_key")?,
        "a second initialisation is refused"
    );
    assert_eq!(store.get_meta("new_key")?.as_deref(), Some(&b"new"[..]));
    assert_eq!(store.load_ledger()?.ledger, Some(first.clone()));

    let rows = ring("r", 1, 1);
    let second = ledger(2, 0, &[("r", 1)]);
    assert!(store.create_ring(&rows, &mut ledger_journal(1, second.clone()))?);
    let view = store.load_ring("r")?;
    assert_eq!(
        view.ledger.ledger,
        Some(second.clone()),
        "read with the ring"
    );
    assert!(
        view.ledger.tombstones.is_empty(),
        "a ring read counts nothing"
    );

    // A stale ledger: nothing of the change is written.
    let a = subject("r", "a", 1, 1, 1);
    store.insert_subjects(std::slice::from_ref(&a), &mut Journal::default())?;
    let feed_before = store.changes_since(0, 100)?;
    match store.erase_subject(
        &tombstone(&a, 1_700_008_000),
        &mut ledger_journal(1, ledger(2, 1, &[("r", 1)])),
    ) {
        Err(KeyError::LedgerMoved) => {}
        other => panic!("an erasure from a stale ledger must be refused, got {other:?}"),
    }
    assert_eq!(
        store.load_subject("r", "a")?.row,
        Some(a.clone()),
        "still live"
    );
    assert_eq!(
        store.changes_since(0, 100)?,
        feed_before,
        "nothing announced"
    );
    let mut stale = rotation(&rows);
    stale.journal = ledger_journal(1, ledger(3, 0, &[("r", 2)]));
    match store.commit_ring(&mut stale) {
        Err(KeyError::LedgerMoved) => {}
        other => panic!("a ring change from a stale ledger must be refused, got {other:?}"),
    }
    assert_eq!(
        store.load_ring("r")?.rows,
        Some(rows.clone()),
        "ring unchanged"
    );

    // The current ledger: the erasure and the ledger commit together.
    let third = ledger(3, 1, &[("r", 1)]);
    assert!(store.erase_subject(
        &tombstone(&a, 1_700_008_000),
        &mut ledger_journal(2, third.clone())
    )?);
    let view = store.load_subject("r", "a")?;
    assert_eq!(view.ledger.ledger, Some(third));
    assert_eq!(
        view.ledger.tombstones,
        [(tombstone_bucket("a"), 1)],
        "a subject read counts the subject's bucket"
    );
    let never = tombstone(&subject("r", "never", 1, 0, 0), 1_700_008_001);
    assert_eq!(
        store.insert_subjects(
            std::slice::from_ref(&never),
            &mut ledger_journal(3, ledger(4, 2, &[("r", 1)]))
        )?,
        [true]
    );
    let all = store.load_ledger()?.tombstones;
    assert_eq!(all.iter().map(|(_, n)| n).sum::<u64>(), 2);
    assert!(all.contains(&(
        tombstone_bucket("never"),
        if tombstone_bucket("never") == tombstone_bucket("a") {
            2
        } else {
            1
        }
    )));
    Ok(())
}

/// The store counts tombstones in exactly the buckets [`tombstone_bucket`] computes, for short,
/// multi-byte and astral-plane subject ids too (the SQL stores compute it in SQL).
pub fn tombstone_buckets_match_the_documented_function(
    new_store: NewStore<'_>,
) -> Result<(), KeyError> {
    let store = new_store();
    create(store.as_ref(), &ring("r", 1, 1))?;
    let ids = [
        "a",
        "ab",
        "abc",
        "cus_42",
        "cus_000123",
        "é€x",
        "x😀",
        "😀😀😀",
        "Zürich-7",
        "0",
    ];
    let rows: Vec<SubjectRecord> = ids
        .iter()
        .map(|id| tombstone(&subject("r", id, 1, 0, 0), 1_700_011_000))
        .collect();
    assert_eq!(
        store.insert_subjects(&rows, &mut Journal::default())?,
        vec![true; ids.len()]
    );
    let mut expected = vec![0u64; TOMBSTONE_BUCKETS];
    for id in ids {
        expected[usize::from(tombstone_bucket(id))] += 1;
    }
    let counted = store.load_ledger()?.tombstones;
    assert_eq!(
        counted,
        (0u16..).zip(expected).collect::<Vec<_>>(),
        "every bucket's count"
    );
    for id in ids {
        let view = store.load_subject("r", id)?;
        let bucket = tombstone_bucket(id);
        assert_eq!(
            view.ledger.tombstones,
            [(bucket, counted[usize::from(bucket)].1)],
            "the bucket of `{id}`"
        );
    }
    Ok(())
}

fn event(subject: &str) -> AuditEvent {
    AuditEvent::new(1_700_009_000, "conformance", Action::SubjectCreated, "r").with_subject(subject)
}

fn audit_subjects(store: &dyn KeyStore) -> Vec<Option<String>> {
    let size = store.tree_size().unwrap_or(0);
    store
        .read_entries(0, size)
        .unwrap_or_default()
        .iter()
        .map(|bytes| AuditEntry::decode(bytes).map(|e| e.event.subject))
        .collect::<Result<_, _>>()
        .unwrap_or_default()
}

/// Audit events of a journal are appended in the transaction of the change: for inserted rows
/// only, never for a refused change, and at the indexes the journal reports.
pub fn audit_entries_commit_with_their_change_only(
    new_store: NewStore<'_>,
) -> Result<(), KeyError> {
    let store = new_store();
    let rows = ring("r", 1, 1);
    create(store.as_ref(), &rows)?;
    let a = subject("r", "a", 1, 1, 1);
    store.insert_subjects(std::slice::from_ref(&a), &mut Journal::default())?;
    assert_eq!(store.tree_size()?, 0, "an empty journal appends nothing");

    let b = subject("r", "b", 1, 1, 2);
    let c = subject("r", "c", 1, 1, 3);
    let mut journal = Journal {
        audit: vec![event("a"), event("b"), event("c")],
        ..Journal::default()
    };
    assert_eq!(
        store.insert_subjects(&[a.clone(), b, c], &mut journal)?,
        [false, true, true]
    );
    assert_eq!(journal.appended, 0..2, "two rows inserted, two entries");
    assert_eq!(
        audit_subjects(store.as_ref()),
        [Some("b".to_owned()), Some("c".to_owned())],
        "the skipped row's event is not appended"
    );

    let mut stale = rotation(&rows);
    stale.expected_generation = 7;
    stale.journal.audit = vec![event("rotation")];
    assert_eq!(store.commit_ring(&mut stale)?, CommitOutcome::Conflict);
    let mut erased = Journal {
        audit: vec![event("a")],
        ..Journal::default()
    };
    let not_live = tombstone(&subject("r", "zz", 1, 1, 1), 1_700_009_001);
    assert!(!store.erase_subject(&not_live, &mut erased)?);
    assert_eq!(store.tree_size()?, 2, "refused changes append nothing");

    let mut rotate = rotation(&rows);
    rotate.journal.audit = vec![event("rotation")];
    assert_eq!(store.commit_ring(&mut rotate)?, CommitOutcome::Committed);
    assert_eq!(rotate.journal.appended, 2..3);
    let mut erase = Journal {
        audit: vec![event("a")],
        ..Journal::default()
    };
    assert!(store.erase_subject(&tombstone(&a, 1_700_009_002), &mut erase)?);
    assert_eq!(erase.appended, 3..4);
    assert_eq!(store.tree_size()?, 4);
    Ok(())
}

/// `purge` answers without error after an erasure and leaves the rows as they were. Whether it
/// can confirm is the backend's property (SQLite confirms when no reader holds an older
/// snapshot, tested in tests/erasure_integrity.rs; PostgreSQL never can): a store that cannot
/// must answer `false`, never claim a purge it cannot check.
pub fn purge_answers(new_store: NewStore<'_>) -> Result<(), KeyError> {
    let store = new_store();
    let rows = ring("r", 1, 1);
    create(store.as_ref(), &rows)?;
    let a = subject("r", "a", 1, 1, 1);
    store.insert_subjects(std::slice::from_ref(&a), &mut Journal::default())?;
    let dead = tombstone(&a, 1_700_010_000);
    assert!(store.erase_subject(&dead, &mut Journal::default())?);
    store.purge(std::time::Duration::from_secs(1))?;
    assert_eq!(
        store.load_subject("r", "a")?.row,
        Some(dead),
        "rows unchanged"
    );
    Ok(())
}
