//! The storage interface: rows in, rows out, compare-and-set on every change.
//!
//! A store keeps only wrapped key material and the integrity MACs computed by the
//! [`KeyManager`](super::KeyManager); it never sees a plaintext key and never checks a MAC itself.
//! That keeps backends small: [`SqliteKeyStore`](super::SqliteKeyStore) (embedded default),
//! [`MemoryKeyStore`](super::MemoryKeyStore) (tests), and later a PostgreSQL store shared by several
//! application servers. Every method is synchronous and is called only on cache misses and
//! administrative operations; see `docs/ARCHITECTURE.md` for how async applications call it.
//!
//! Concurrency is optimistic and must hold across processes: a ring row carries a `generation`,
//! every change to a ring names the generation it was computed from, and the store applies it only
//! if that generation is still current ([`RingChange`]). Subject-key rows are changed with the same
//! compare-and-set idea on their own columns. An in-process lock alone is never enough.

use super::KeyError;
use super::ring::{RotationPolicy, VersionState};
use crate::audit::{AuditEvent, AuditStore};
use crate::crypto::Suite;
use core::fmt;
use std::ops::Range;

/// Length of every row MAC (HMAC-SHA256).
pub const MAC_LEN: usize = 32;

/// The stored row of a key ring. Field meanings are in `docs/KEYSTORE.md` (table `rings`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingRecord {
    /// Ring name (see [`KeyId::new`](crate::envelope::KeyId::new) for the allowed characters).
    pub name: String,
    /// Incremented by every committed change; the compare-and-set column.
    pub generation: u64,
    /// AEAD suite of every version of this ring.
    pub suite: Suite,
    /// The version that new data is sealed under (always the newest version).
    pub primary_version: u32,
    /// Versions below this are decrypt-only.
    pub min_encryption_version: u32,
    /// Versions below this cannot decrypt (disabled or destroyed).
    pub min_decryption_version: u32,
    /// When to rotate, and how long a rotation takes to reach every process.
    pub policy: RotationPolicy,
    /// Creation time (seconds since the Unix epoch).
    pub created_at: u64,
    /// The ring's record of each of its version rows, ascending: a version row that does not match
    /// its entry was edited, replaced or rolled back.
    pub versions: Vec<VersionDigest>,
    /// HMAC over every field above, `versions` included.
    pub mac: [u8; MAC_LEN],
}

/// A ring's record of one of its version rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionDigest {
    /// Version number.
    pub version: u32,
    /// The row's state.
    pub state: VersionState,
    /// The row's MAC.
    pub mac: [u8; MAC_LEN],
}

/// The stored row of one key-ring version.
#[derive(Clone, PartialEq, Eq)]
pub struct VersionRecord {
    /// Ring name.
    pub ring: String,
    /// Version number, from 1.
    pub version: u32,
    /// Lifecycle state.
    pub state: VersionState,
    /// The version's 256-bit key wrapped by the root key provider; `None` once destroyed.
    pub wrapped_key: Option<Vec<u8>>,
    /// When the version was created by a rotation.
    pub created_at: u64,
    /// When a newer version replaced it as primary; `None` while it is the primary.
    pub superseded_at: Option<u64>,
    /// Encryptions reserved under this version so far, by every process together (an upper bound
    /// of the encryptions done: processes reserve in blocks before they encrypt).
    pub usage_reserved: u64,
    /// HMAC over every field above.
    pub mac: [u8; MAC_LEN],
}

/// The stored row of one generation of a subject's key.
#[derive(Clone, PartialEq, Eq)]
pub struct SubjectRecord {
    /// Ring name.
    pub ring: String,
    /// Subject id.
    pub subject: String,
    /// 1 for the first key of this subject, incremented each time the subject is re-created after
    /// an erasure.
    pub generation: u64,
    /// Ring version whose key wrapped `wrapped_key` (kept on tombstones for the record).
    pub wrapped_by: u32,
    /// The subject key wrapped by ring version `wrapped_by`; `None` once erased.
    pub wrapped_key: Option<Vec<u8>>,
    /// When this generation was created.
    pub created_at: u64,
    /// When it was erased; `None` while live.
    pub erased_at: Option<u64>,
    /// HMAC over every field above.
    pub mac: [u8; MAC_LEN],
}

impl SubjectRecord {
    /// Whether the key material is still present.
    pub fn is_live(&self) -> bool {
        self.wrapped_key.is_some()
    }
}

/// A ring row with all its version rows, in ascending version order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingRows {
    /// The ring row.
    pub ring: RingRecord,
    /// Every version row of the ring, ascending.
    pub versions: Vec<VersionRecord>,
}

/// Number of buckets the ledger counts tombstones in.
pub const TOMBSTONE_BUCKETS: usize = 256;

/// The bucket of a subject's tombstones: from the code points of the subject id's last three
/// characters `c1` (last), `c2`, `c3` (0 where the id is shorter),
/// `(c1 + 31·c2 + 961·c3) mod 256`. Both SQL stores compute the same expression in SQL over their
/// `subject` column (docs/KEYSTORE.md), so counting one bucket reads only that bucket's rows.
pub fn tombstone_bucket(subject: &str) -> u16 {
    let mut last = subject.chars().rev().map(u32::from);
    let (c1, c2, c3) = (
        last.next().unwrap_or(0),
        last.next().unwrap_or(0),
        last.next().unwrap_or(0),
    );
    // At most 0x10FFFF · 993, far below u32::MAX; the result is below 256.
    u16::try_from((c1 + 31 * c2 + 961 * c3) % 256).unwrap_or(0)
}

/// The store-wide ledger row: what the store as a whole must contain, MAC'd by the manager
/// (docs/KEYSTORE.md, table `ledger`).
///
/// Row MACs alone cannot tell a current row from an older copy of it. The ledger can: it counts
/// the erasure tombstones the store must hold, per [`tombstone_bucket`] (a restored live row or a
/// deleted tombstone changes its bucket's count), and names every ring's current generation (a
/// ring row rolled back to an older, validly MAC'd copy has another generation). Every change
/// that erases a key or commits a ring change writes a new ledger in the same transaction,
/// compare-and-set on `counter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRecord {
    /// Incremented by every write of the ledger; never decreases.
    pub counter: u64,
    /// How many tombstones (subject rows without key material) the store holds in each bucket
    /// ([`TOMBSTONE_BUCKETS`] entries).
    pub erasures: Vec<u64>,
    /// Every ring and its current generation, sorted by name.
    pub rings: Vec<(String, u64)>,
    /// HMAC over every field above.
    pub mac: [u8; MAC_LEN],
}

/// The ledger as one read transaction saw it, with the facts it is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerView {
    /// The ledger row; `None` in a store created before the ledger existed (or if it was deleted).
    pub ledger: Option<LedgerRecord>,
    /// Tombstone rows actually stored, as `(bucket, count)`: for a subject read, the subject's
    /// bucket; for [`KeyStore::load_ledger`], every bucket; for a ring read, none.
    pub tombstones: Vec<(u16, u64)>,
}

/// What a change writes besides its rows, in the same transaction.
#[derive(Debug, Clone, Default)]
pub struct Journal {
    /// The new ledger, written only if the stored ledger's counter is still
    /// `expected_counter` (`None`: only if there is no ledger yet); otherwise the store writes
    /// nothing and answers [`KeyError::LedgerMoved`].
    pub ledger: Option<LedgerWrite>,
    /// Audit events appended to the store's audit log in the same transaction. For
    /// [`KeyStore::insert_subjects`], one event per row, appended only for the rows inserted.
    pub audit: Vec<AuditEvent>,
    /// Set by the store: the audit indexes it appended (empty if none).
    pub appended: Range<u64>,
}

/// A ledger to write by compare-and-set.
#[derive(Debug, Clone)]
pub struct LedgerWrite {
    /// The counter of the ledger the change was computed from; `None` if there was none.
    pub expected_counter: Option<u64>,
    /// The new ledger.
    pub record: LedgerRecord,
}

/// A ring as one read transaction saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingView {
    /// The ring and its versions, if the ring exists.
    pub rows: Option<RingRows>,
    /// The ledger.
    pub ledger: LedgerView,
}

/// A subject's newest key row as one read transaction saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectView {
    /// The newest generation's row, live or erased.
    pub row: Option<SubjectRecord>,
    /// The ledger.
    pub ledger: LedgerView,
}

/// One atomic change to a ring: applied in a single transaction, only if the stored ring still has
/// generation `expected_generation`.
#[derive(Debug, Clone)]
pub struct RingChange {
    /// Generation the change was computed from.
    pub expected_generation: u64,
    /// The new ring row (its generation is `expected_generation + 1`).
    pub ring: RingRecord,
    /// Version rows to insert or replace (keyed by ring and version).
    pub versions: Vec<VersionRecord>,
    /// If set, the change is refused (inside the same transaction) while any live subject key of
    /// this ring is wrapped by a version below this one.
    pub require_no_subject_keys_below: Option<u32>,
    /// The ledger and audit entries written with the change.
    pub journal: Journal,
}

/// What became of a [`RingChange`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Applied.
    Committed,
    /// The ring's generation moved on (or the ring is gone); nothing was written.
    Conflict,
    /// Live subject keys still depend on versions below the required one; nothing was written.
    SubjectKeysDepend(u64),
}

/// How many changes a store keeps in its change feed; a reader further behind drops every cached
/// key instead ([`ChangeFeed::complete`] is false).
pub const CHANGE_FEED_RETENTION: u64 = 10_000;

/// One entry of a store's change feed: what other processes must drop from their caches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Position in the feed: increasing in commit order, never reused.
    pub seq: u64,
    /// The ring concerned.
    pub ring: String,
    /// The subject whose key was erased or re-created; `None` for a change to the ring row itself
    /// (rotation, disabled or destroyed version, policy).
    pub subject: Option<String>,
}

/// The answer of [`KeyStore::changes_since`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeFeed {
    /// The newest position in the feed; pass it as `after` next time.
    pub latest: u64,
    /// The changes after `after`, oldest first.
    pub changes: Vec<Change>,
    /// False when some changes after `after` are no longer known (pruned, or more than the
    /// requested limit): the reader must drop every cached key of the store.
    pub complete: bool,
}

/// Persistent storage of key rings and subject keys.
///
/// Besides the rows, a store keeps a **change feed**: every committed ring change, every erasure
/// and every re-creation of an erased subject appends an entry in the same transaction. Each
/// [`KeyManager`](super::KeyManager) polls it (every 250 ms by default) and drops what changed
/// from its caches, so an erasure or a rotation reaches every process and server within a second
/// while the store is reachable. The feed is only a hint: every row it points at is read again and
/// verified.
pub trait KeyStore: AuditStore + Send + Sync + fmt::Debug {
    /// Reads a store-wide value (such as the wrapped integrity key).
    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, KeyError>;

    /// Stores `value` under `key` unless a value is already there, and returns the stored value
    /// (so that two processes initialising one store agree on the winner).
    fn put_meta_if_absent(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, KeyError>;

    /// The ledger and the number of tombstones in every bucket, read in one snapshot (this
    /// counts every tombstone: managers call it when they open the store).
    fn load_ledger(&self) -> Result<LedgerView, KeyError>;

    /// In one transaction, if the store has no ledger yet: writes `ledger`, stores `meta`
    /// (key, value) and deletes the meta key `retire` (the pre-ledger integrity key, so that an
    /// older build, which would not keep the ledger, can no longer open the store). Returns
    /// `false`, writing nothing, if a ledger exists.
    fn init_ledger(
        &self,
        ledger: &LedgerRecord,
        meta: (&str, &[u8]),
        retire: &str,
    ) -> Result<bool, KeyError>;

    /// Names of every ring, sorted.
    fn ring_names(&self) -> Result<Vec<String>, KeyError>;

    /// A ring, all its versions and the ledger (without tombstone counts), read in one
    /// consistent snapshot.
    fn load_ring(&self, name: &str) -> Result<RingView, KeyError>;

    /// Inserts a new ring with its versions and writes `journal`; `Ok(false)` (nothing written)
    /// if a ring of that name exists.
    fn create_ring(&self, rows: &RingRows, journal: &mut Journal) -> Result<bool, KeyError>;

    /// Applies `change` (with its journal) atomically if the ring's generation is still the
    /// expected one.
    fn commit_ring(&self, change: &mut RingChange) -> Result<CommitOutcome, KeyError>;

    /// The newest generation of a subject's key row, live or erased, the ledger and the number
    /// of tombstones in the subject's [`tombstone_bucket`], in one snapshot.
    fn load_subject(&self, ring: &str, subject: &str) -> Result<SubjectView, KeyError>;

    /// Every generation of a subject's key row, oldest first (the erasure record).
    fn subject_history(&self, ring: &str, subject: &str) -> Result<Vec<SubjectRecord>, KeyError>;

    /// Inserts rows in one transaction, with `journal`. Per row, `false` means a row with that
    /// ring, subject and generation already existed (someone else created it first) and this one
    /// was skipped (and so was its audit event).
    fn insert_subjects(
        &self,
        rows: &[SubjectRecord],
        journal: &mut Journal,
    ) -> Result<Vec<bool>, KeyError>;

    /// In one transaction, replaces the wrap of each live row (same ring, subject, generation) that
    /// is still wrapped by the paired `expected_wrapped_by`. Per row, `false` means it was erased or
    /// rewrapped meanwhile and was left alone.
    fn rewrap_subjects(&self, rows: &[(SubjectRecord, u32)]) -> Result<Vec<bool>, KeyError>;

    /// Turns the live row with the tombstone's ring, subject and generation into `tombstone`
    /// (material deleted, `erased_at` set) and writes `journal`; `Ok(false)` (nothing written) if
    /// that row is not live any more. Implementations overwrite the deleted bytes where the backend
    /// allows it; [`KeyStore::purge`] confirms they are gone from the files.
    fn erase_subject(
        &self,
        tombstone: &SubjectRecord,
        journal: &mut Journal,
    ) -> Result<bool, KeyError>;

    /// Makes sure deleted key material no longer lingers in the backend's files (for SQLite:
    /// a `TRUNCATE` checkpoint of the write-ahead log, which waits for readers of older snapshots
    /// for at most `wait`). Returns whether that is confirmed; `false` means readers still hold
    /// older snapshots (an online backup, a long query) and a later call is needed.
    fn purge(&self, wait: std::time::Duration) -> Result<bool, KeyError>;

    /// Up to `limit` live subject rows of `ring` wrapped by a version below `version`, oldest
    /// wrapping version first (in no particular order within a version). The order is what an
    /// index on `(ring, wrapped_by)` gives without sorting: the rewrap job that pages through
    /// these rows then reads each batch, never the rows it already moved to a newer version.
    fn subjects_wrapped_below(
        &self,
        ring: &str,
        version: u32,
        limit: usize,
    ) -> Result<Vec<SubjectRecord>, KeyError>;

    /// How many live subject rows of `ring` are wrapped by a version below `version`: the rows
    /// [`KeyStore::subjects_wrapped_below`] would list without a limit, counted from the same
    /// `(ring, wrapped_by)` index, in the store, without returning them (the total of a rewrap
    /// job's progress).
    fn count_subjects_wrapped_below(&self, ring: &str, version: u32) -> Result<u64, KeyError>;

    /// The change feed after position `after`, at most `limit` entries (more makes the answer
    /// incomplete). `after = u64::MAX` asks only for the newest position.
    ///
    /// Entries are appended, in the transaction of the change, by [`KeyStore::commit_ring`] (ring
    /// entry), [`KeyStore::erase_subject`] (when it erased) and [`KeyStore::insert_subjects`] (for
    /// each inserted row that is a tombstone or a generation above 1). At least the newest
    /// [`CHANGE_FEED_RETENTION`] entries are kept.
    fn changes_since(&self, after: u64, limit: usize) -> Result<ChangeFeed, KeyError>;
}

/// Whether inserting `row` must be announced on the change feed: an erasure recorded without a
/// key, or a subject re-created after an erasure (other processes may have cached it as erased).
pub fn announces_change(row: &SubjectRecord) -> bool {
    !row.is_live() || row.generation > 1
}

impl fmt::Debug for VersionRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VersionRecord")
            .field("ring", &self.ring)
            .field("version", &self.version)
            .field("state", &self.state)
            .field(
                "wrapped_key",
                &self
                    .wrapped_key
                    .as_ref()
                    .map(|k| format!("[{} bytes]", k.len())),
            )
            .field("created_at", &self.created_at)
            .field("superseded_at", &self.superseded_at)
            .field("usage_reserved", &self.usage_reserved)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for SubjectRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubjectRecord")
            .field("ring", &self.ring)
            .field("subject", &self.subject)
            .field("generation", &self.generation)
            .field("wrapped_by", &self.wrapped_by)
            .field(
                "wrapped_key",
                &self
                    .wrapped_key
                    .as_ref()
                    .map(|k| format!("[{} bytes]", k.len())),
            )
            .field("created_at", &self.created_at)
            .field("erased_at", &self.erased_at)
            .finish_non_exhaustive()
    }
}

/// The `version_digests` column of both SQL stores: per version ascending,
/// `be32(version) ‖ u8(state) ‖ MAC` (docs/KEYSTORE.md).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn encode_digests(digests: &[VersionDigest]) -> Vec<u8> {
    let mut out = Vec::with_capacity(digests.len() * (5 + MAC_LEN));
    for d in digests {
        out.extend_from_slice(&d.version.to_be_bytes());
        out.push(d.state.code());
        out.extend_from_slice(&d.mac);
    }
    out
}

/// Decodes the `version_digests` column; anything malformed is reported as tampering.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn decode_digests(bytes: &[u8], ring: &str) -> Result<Vec<VersionDigest>, KeyError> {
    let bad = || KeyError::tampered("malformed version_digests column", ring, None);
    let entry = 5 + MAC_LEN;
    if !bytes.len().is_multiple_of(entry) {
        return Err(bad());
    }
    bytes
        .chunks_exact(entry)
        .map(|chunk| {
            let (version, rest) = chunk.split_at_checked(4).ok_or_else(bad)?;
            let (&state, mac) = rest.split_first().ok_or_else(bad)?;
            Ok(VersionDigest {
                version: u32::from_be_bytes(version.try_into().map_err(|_| bad())?),
                state: VersionState::from_code(state).ok_or_else(bad)?,
                mac: mac.try_into().map_err(|_| bad())?,
            })
        })
        .collect()
}

/// The audit events of the rows [`KeyStore::insert_subjects`] inserted: `journal.audit` holds one
/// per row, in row order.
pub(crate) fn events_of_inserted(audit: &[AuditEvent], inserted: &[bool]) -> Vec<AuditEvent> {
    audit
        .iter()
        .zip(inserted)
        .filter(|(_, new)| **new)
        .map(|(event, _)| event.clone())
        .collect()
}

/// Every bucket's tombstone count, in bucket order, from the buckets a `GROUP BY` found (the
/// others have none).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn every_bucket(found: &[(u16, u64)]) -> Vec<(u16, u64)> {
    let mut counts = vec![0u64; TOMBSTONE_BUCKETS];
    for (bucket, count) in found {
        if let Some(slot) = counts.get_mut(usize::from(*bucket)) {
            *slot = *count;
        }
    }
    (0u16..).zip(counts).collect()
}

/// The `body` column of the ledger row in both SQL stores: `be16(bucket count) ‖` that many
/// `be64(tombstones)` `‖ be32(ring count) ‖` per ring sorted by name
/// `be16(len) ‖ name ‖ be64(generation)` (docs/KEYSTORE.md).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn encode_ledger_body(ledger: &LedgerRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(6 + ledger.erasures.len() * 8 + ledger.rings.len() * 40);
    // INVARIANT: TOMBSTONE_BUCKETS entries.
    out.extend_from_slice(
        &u16::try_from(ledger.erasures.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    for count in &ledger.erasures {
        out.extend_from_slice(&count.to_be_bytes());
    }
    // INVARIANT: fewer than 2^32 rings; ring names are at most 64 bytes.
    out.extend_from_slice(
        &u32::try_from(ledger.rings.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    for (name, generation) in &ledger.rings {
        out.extend_from_slice(&u16::try_from(name.len()).unwrap_or(u16::MAX).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&generation.to_be_bytes());
    }
    out
}

/// Decodes the ledger row; anything malformed is reported as tampering.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn decode_ledger(
    counter: u64,
    body: &[u8],
    mac: &[u8],
) -> Result<LedgerRecord, KeyError> {
    let bad = || KeyError::tampered("malformed ledger row", "", None);
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = bytes.split_at_checked(n)?;
        *bytes = rest;
        Some(head)
    }
    let mut rest = body;
    let buckets = u16::from_be_bytes(
        take(&mut rest, 2)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?,
    );
    if usize::from(buckets) != TOMBSTONE_BUCKETS {
        return Err(bad());
    }
    let mut erasures = Vec::with_capacity(TOMBSTONE_BUCKETS);
    for _ in 0..buckets {
        erasures.push(u64::from_be_bytes(
            take(&mut rest, 8)
                .ok_or_else(bad)?
                .try_into()
                .map_err(|_| bad())?,
        ));
    }
    let count = u32::from_be_bytes(
        take(&mut rest, 4)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?,
    );
    let mut rings = Vec::new();
    for _ in 0..count {
        let len = u16::from_be_bytes(
            take(&mut rest, 2)
                .ok_or_else(bad)?
                .try_into()
                .map_err(|_| bad())?,
        );
        let name = std::str::from_utf8(take(&mut rest, usize::from(len)).ok_or_else(bad)?)
            .map_err(|_| bad())?
            .to_owned();
        let generation = u64::from_be_bytes(
            take(&mut rest, 8)
                .ok_or_else(bad)?
                .try_into()
                .map_err(|_| bad())?,
        );
        rings.push((name, generation));
    }
    if !rest.is_empty() {
        return Err(bad());
    }
    Ok(LedgerRecord {
        counter,
        erasures,
        rings,
        mac: mac.try_into().map_err(|_| bad())?,
    })
}
