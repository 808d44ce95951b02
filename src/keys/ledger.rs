//! The store-wide ledger: what makes a restored row, a deleted tombstone or a rolled-back ring
//! row visible although each of them carries a valid MAC of its own.
//!
//! Row MACs prove a row was written by a manager holding the integrity key, not that it is the
//! row's *current* content. The ledger row ([`LedgerRecord`]) closes that gap for the rows that
//! matter most: it counts the erasure tombstones the store must hold (in 256 buckets of the
//! subject id) and names every ring's current generation, under a MAC, and every change to either
//! is committed together with a new ledger by compare-and-set on its counter. Each read of a ring
//! comes with the ledger of the same snapshot, each read of a subject key also with the number of
//! tombstones in its bucket, and either is refused as tampered when they disagree. A manager also
//! remembers the highest counter it has seen and refuses an older ledger.
//!
//! What stays undetected by the store alone (docs/KEYSTORE.md): a rollback of the ledger row
//! *together with* every row it covers, as a restored backup of the whole file does, to a state
//! that this process never saw. The audit log's checkpoints, kept elsewhere, catch that
//! ([`crate::audit::AuditLog::verify_against`]).

use super::KeyError;
use super::integrity::{Encoder, Integrity};
use super::manager::KeyManager;
use super::ring::VersionState;
use super::store::{
    LedgerRecord, LedgerView, LedgerWrite, MAC_LEN, RingRows, TOMBSTONE_BUCKETS, tombstone_bucket,
};
use crate::audit::{Action, AuditEvent};
use std::sync::atomic::Ordering;

/// Meta key of the integrity key in stores that keep a ledger (wrapped with
/// [`INTEGRITY_KEY_V2_AAD`]). Its presence means "this store has a ledger": a store that has it
/// and no ledger row was tampered with.
pub(crate) const INTEGRITY_KEY_V2_META: &str = "integrity_key_v2";
/// Associated data of the v2 integrity key's root wrap.
pub(crate) const INTEGRITY_KEY_V2_AAD: &[u8] = b"custodian/v2/integrity-key";

impl Integrity {
    pub(crate) fn ledger_mac(&self, l: &LedgerRecord) -> [u8; MAC_LEN] {
        let mut e = Encoder::label("custodian/v1/mac/ledger");
        e.u64(l.counter)
            // INVARIANT: TOMBSTONE_BUCKETS (256) counts.
            .u32(u32::try_from(l.erasures.len()).unwrap_or(u32::MAX));
        for count in &l.erasures {
            e.u64(*count);
        }
        // INVARIANT: fewer than 2^32 rings.
        e.u32(u32::try_from(l.rings.len()).unwrap_or(u32::MAX));
        for (name, generation) in &l.rings {
            e.str(name).u64(*generation);
        }
        self.mac_of(&e)
    }

    pub(crate) fn seal_ledger(&self, l: &mut LedgerRecord) {
        l.mac = self.ledger_mac(l);
    }

    /// The ledger of `view`, checked: present, MAC valid, one count per bucket, rings sorted and
    /// unique, and as many tombstones stored in each bucket the view counted as the ledger says.
    pub(crate) fn verify_ledger<'a>(
        &self,
        view: &'a LedgerView,
    ) -> Result<&'a LedgerRecord, KeyError> {
        let ledger = view
            .ledger
            .as_ref()
            .ok_or_else(|| KeyError::tampered("the ledger row is missing", "", None))?;
        if !self.mac_eq(&self.ledger_mac(ledger), &ledger.mac) {
            return Err(KeyError::tampered("the ledger row fails its MAC", "", None));
        }
        if ledger.erasures.len() != TOMBSTONE_BUCKETS {
            return Err(KeyError::tampered(
                "the ledger has the wrong number of buckets",
                "",
                None,
            ));
        }
        if !ledger
            .rings
            .windows(2)
            .all(|w| matches!(w, [a, b] if a.0 < b.0))
        {
            return Err(KeyError::tampered(
                "the ledger lists rings out of order",
                "",
                None,
            ));
        }
        for (bucket, stored) in &view.tombstones {
            if ledger.erasures.get(usize::from(*bucket)) != Some(stored) {
                return Err(KeyError::tampered(
                    "the number of erasure tombstones differs from the ledger's (a tombstone was deleted or an erased key restored)",
                    "",
                    None,
                ));
            }
        }
        Ok(ledger)
    }
}

impl KeyManager {
    /// Verifies `view` and that its ledger is not older than one this manager saw before the read
    /// began (`floor`, read before the store was asked).
    pub(super) fn checked_ledger<'a>(
        &self,
        view: &'a LedgerView,
        floor: u64,
    ) -> Result<&'a LedgerRecord, KeyError> {
        let ledger = self.integrity.verify_ledger(view)?;
        if ledger.counter < floor {
            return Err(KeyError::tampered(
                "the ledger is older than one this process already saw (rolled back)",
                "",
                None,
            ));
        }
        self.ledger_seen.fetch_max(ledger.counter, Ordering::SeqCst);
        Ok(ledger)
    }

    /// Remembers the ledger `journal` committed: this manager wrote it, so it has seen it, and a
    /// later read of an older one is a rollback, whether or not it read the store in between.
    pub(super) fn saw_committed(&self, journal: &super::store::Journal) {
        if let Some(write) = &journal.ledger {
            self.ledger_seen
                .fetch_max(write.record.counter, Ordering::SeqCst);
        }
    }

    /// The highest ledger counter seen so far: read it before asking the store.
    pub(super) fn ledger_floor(&self) -> u64 {
        self.ledger_seen.load(Ordering::SeqCst)
    }

    /// The current ledger, freshly read and verified, to compute a change of `ring` from. Read
    /// with the ring (no tombstone counts: the write's compare-and-set on the counter is what
    /// makes it current, and counting is for reads that serve keys).
    pub(super) fn current_ledger(&self, ring: &str) -> Result<LedgerRecord, KeyError> {
        let floor = self.ledger_floor();
        let view = self.store.load_ring(ring)?;
        self.checked_ledger(&view.ledger, floor).cloned()
    }

    /// Checks a ring read against the ledger of the same snapshot.
    pub(super) fn check_ring_in_ledger(
        &self,
        name: &str,
        rows: Option<&RingRows>,
        ledger: &LedgerRecord,
    ) -> Result<(), KeyError> {
        let listed = ledger
            .rings
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .and_then(|i| ledger.rings.get(i))
            .map(|(_, generation)| *generation);
        match (rows, listed) {
            (None, None) => Ok(()),
            (Some(rows), Some(generation)) if rows.ring.generation == generation => Ok(()),
            (Some(_), Some(_)) => Err(KeyError::tampered(
                "ring row has another generation than the ledger records (rolled back or replayed)",
                name,
                None,
            )),
            (Some(_), None) => Err(KeyError::tampered(
                "ring row not recorded in the ledger (inserted)",
                name,
                None,
            )),
            (None, Some(_)) => Err(KeyError::tampered(
                "ring recorded in the ledger is missing (deleted)",
                name,
                None,
            )),
        }
    }

    /// The ledger after a change: counter + 1, one more tombstone in the bucket of `erased` (a
    /// subject id), and `ring` (if any) at `generation`.
    pub(super) fn next_ledger(
        &self,
        current: &LedgerRecord,
        erased: Option<&str>,
        ring: Option<(&str, u64)>,
    ) -> LedgerWrite {
        let mut record = current.clone();
        record.counter = current.counter.saturating_add(1);
        if let Some(count) = erased.and_then(|subject| {
            record
                .erasures
                .get_mut(usize::from(tombstone_bucket(subject)))
        }) {
            *count = count.saturating_add(1);
        }
        if let Some((name, generation)) = ring {
            match record.rings.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
                Ok(i) => {
                    if let Some(slot) = record.rings.get_mut(i) {
                        slot.1 = generation;
                    }
                }
                Err(i) => record.rings.insert(i, (name.to_owned(), generation)),
            }
        }
        self.integrity.seal_ledger(&mut record);
        LedgerWrite {
            expected_counter: Some(current.counter),
            record,
        }
    }

    /// Opens the integrity key and makes sure the store has a ledger: creates one for a new store,
    /// and for a store written before the ledger existed, builds it from the store as it is now
    /// (trust on first use, stated in docs/KEYSTORE.md) and retires the old integrity-key entry in
    /// the same transaction, so that a build without the ledger can no longer write to it.
    pub(super) fn open_integrity(
        store: &dyn super::KeyStore,
        root: &dyn super::RootKeyProvider,
    ) -> Result<Integrity, KeyError> {
        use super::integrity::{INTEGRITY_KEY_AAD, INTEGRITY_KEY_META};
        let unwrap = |aad: &[u8], blob: &[u8]| {
            root.unwrap(aad, blob).map_err(|e| match e {
                KeyError::RootUnwrap(_) => KeyError::RootUnwrap(
                    "the store-integrity key (is this the root key the store was created with?)"
                        .into(),
                ),
                other => other,
            })
        };
        for _ in 0..3 {
            if let Some(blob) = store.get_meta(INTEGRITY_KEY_V2_META)? {
                let integrity = Integrity::new(unwrap(INTEGRITY_KEY_V2_AAD, &blob)?);
                integrity.verify_ledger(&store.load_ledger()?)?;
                return Ok(integrity);
            }
            let (integrity, mut ledger) = match store.get_meta(INTEGRITY_KEY_META)? {
                // A store from before the ledger: record it as it is now.
                Some(blob) => {
                    let integrity = Integrity::new(unwrap(INTEGRITY_KEY_AAD, &blob)?);
                    let mut rings = Vec::new();
                    for name in store.ring_names()? {
                        if let Some(rows) = store.load_ring(&name)?.rows {
                            integrity.verify_ring(&rows)?;
                            rings.push((name, rows.ring.generation));
                        }
                    }
                    let mut erasures = vec![0; TOMBSTONE_BUCKETS];
                    for (bucket, count) in store.load_ledger()?.tombstones {
                        if let Some(slot) = erasures.get_mut(usize::from(bucket)) {
                            *slot = count;
                        }
                    }
                    let ledger = LedgerRecord {
                        counter: 1,
                        erasures,
                        rings,
                        mac: [0; MAC_LEN],
                    };
                    (integrity, ledger)
                }
                None => (
                    Integrity::new(super::subject::random_key()?),
                    LedgerRecord {
                        counter: 1,
                        erasures: vec![0; TOMBSTONE_BUCKETS],
                        rings: Vec::new(),
                        mac: [0; MAC_LEN],
                    },
                ),
            };
            integrity.seal_ledger(&mut ledger);
            let blob = root.wrap(INTEGRITY_KEY_V2_AAD, integrity.key())?;
            // Another process may initialise the store at the same time: one wins, the loop
            // then reads the winner's key.
            if store.init_ledger(&ledger, (INTEGRITY_KEY_V2_META, &blob), INTEGRITY_KEY_META)? {
                return Ok(integrity);
            }
        }
        Err(KeyError::Conflict(
            "the key store's ledger initialisation".into(),
        ))
    }
}

/// The audit events of a ring change, from the rows before and after it. Usage reservations
/// alone record nothing (they happen every few thousand encryptions).
pub(super) fn ring_change_events(
    before: &RingRows,
    after: &RingRows,
    actor: &str,
    now: u64,
) -> Vec<AuditEvent> {
    let name = after.ring.name.as_str();
    let event = |action| AuditEvent::new(now, actor, action, name);
    let mut events = Vec::new();
    if after.ring.primary_version > before.ring.primary_version {
        events.push(event(Action::KeyRingRotated {
            version: after.ring.primary_version,
        }));
    }
    let mut other_change = after.ring.policy != before.ring.policy;
    for v in &after.versions {
        let old = before.versions.iter().find(|o| o.version == v.version);
        let Some(old) = old else { continue };
        if old.state == v.state {
            continue;
        }
        match v.state {
            VersionState::Destroyed => {
                events.push(event(Action::KeyVersionDestroyed { version: v.version }))
            }
            VersionState::Disabled | VersionState::DecryptOnly
                if old.state.code() < v.state.code() =>
            {
                events.push(event(Action::KeyVersionDisabled { version: v.version }))
            }
            // A version re-enabled by lowering a threshold.
            _ => other_change = true,
        }
    }
    if other_change {
        events.push(event(Action::KeyPolicyChanged));
    }
    events
}
