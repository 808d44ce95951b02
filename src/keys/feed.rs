//! Following the store's change feed, so that what other processes and servers change leaves
//! this process's caches within about [`ManagerOptions::change_feed_poll_ms`].
//!
//! One background thread per process (`custodian-feed`) serves every manager: each tick it reads
//! the feed of each manager whose interval has passed and applies the entries:
//!
//! - a subject entry (erased, or re-created after an erasure) bumps the ring's erasure epoch and
//!   drops the subject's cached key, so the next use reads the store again, and a load that started
//!   before cannot put the old key back (the epoch check in `subject_keys`);
//! - a ring entry (rotation, disabled or destroyed version, policy) reloads the ring's snapshot in
//!   the background, so the hot path finds the new one without I/O, or expires it if the reload
//!   fails. A poll reloads each ring once however many entries name it, and after a reload that
//!   found the store unavailable it only expires the others;
//! - an incomplete feed (this manager fell behind the store's retention) drops everything.
//!
//! The feed is a hint: every row it points at is read again and verified as usual. While the
//! store is unreachable nothing arrives; the subject cache's TTL and the ring's propagation time
//! then bound how stale this process may be, as before.

use super::KeyError;
use super::manager::{KeyManager, ManagerOptions};
use super::state::{RingHandle, Rings, expire, lock};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

/// Entries read per poll; a manager further behind drops everything instead.
const FEED_BATCH: usize = 1_000;

/// How often the thread wakes to see whether a manager's interval has passed.
const TICK: Duration = Duration::from_millis(25);

/// What the thread needs to act for one manager without keeping it alive.
struct Follower {
    rings: Weak<Rings>,
    /// Everything but the caches, to rebuild a manager view while the caches still exist.
    parts: Parts,
    interval: Duration,
    next_poll: Instant,
}

#[derive(Clone)]
struct Parts {
    store: Arc<dyn super::KeyStore>,
    root: Arc<dyn super::RootKeyProvider>,
    integrity: Arc<super::integrity::Integrity>,
    store_id: [u8; 32],
    options: ManagerOptions,
    feed_position: Arc<AtomicU64>,
    ledger_seen: Arc<AtomicU64>,
}

static FOLLOWERS: Mutex<Vec<Follower>> = Mutex::new(Vec::new());
static THREAD: OnceLock<bool> = OnceLock::new();

/// Registers `manager` with the feed thread (started on first use), unless its options turn the
/// feed off.
pub(super) fn follow(manager: &KeyManager) {
    if manager.options.change_feed_poll_ms == 0 {
        return;
    }
    let interval = Duration::from_millis(manager.options.change_feed_poll_ms);
    lock(&FOLLOWERS).push(Follower {
        rings: Arc::downgrade(&manager.rings),
        parts: Parts {
            store: Arc::clone(&manager.store),
            root: Arc::clone(&manager.root),
            integrity: Arc::clone(&manager.integrity),
            store_id: manager.store_id,
            options: manager.options.clone(),
            feed_position: Arc::clone(&manager.feed_position),
            ledger_seen: Arc::clone(&manager.ledger_seen),
        },
        interval,
        next_poll: Instant::now() + interval,
    });
    THREAD.get_or_init(|| {
        // If no thread can be started, caches are bounded by their TTLs as without the feed.
        std::thread::Builder::new()
            .name("custodian-feed".into())
            .spawn(run)
            .is_ok()
    });
}

fn run() {
    loop {
        std::thread::sleep(TICK);
        let now = Instant::now();
        let due: Vec<(Arc<Rings>, Parts)> = {
            let mut followers = lock(&FOLLOWERS);
            followers.retain(|f| f.rings.strong_count() > 0);
            followers
                .iter_mut()
                .filter(|f| f.next_poll <= now)
                .filter_map(|f| {
                    f.next_poll = now + f.interval;
                    Some((f.rings.upgrade()?, f.parts.clone()))
                })
                .collect()
        };
        for (rings, parts) in due {
            let view = KeyManager::view(parts, rings);
            // An unreachable store: nothing to apply now; the next tick tries again.
            let _ = view.apply_changes();
        }
    }
}

impl KeyManager {
    fn view(parts: Parts, rings: Arc<Rings>) -> Self {
        let Parts {
            store,
            root,
            integrity,
            store_id,
            options,
            feed_position,
            ledger_seen,
        } = parts;
        Self {
            store,
            root,
            integrity,
            store_id,
            options,
            rings,
            feed_position,
            ledger_seen,
        }
    }

    /// Reads the store's change feed now and drops from this manager's caches what other
    /// processes changed (the background thread does this every
    /// [`ManagerOptions::change_feed_poll_ms`]). Returns how many entries were applied.
    pub fn apply_changes(&self) -> Result<usize, KeyError> {
        let after = self.feed_position.load(Ordering::SeqCst);
        let feed = self.store.changes_since(after, FEED_BATCH)?;
        let handles: Vec<Arc<RingHandle>> = self
            .rings
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|entry| Arc::clone(&entry.handle))
            .collect();
        // Ring changes are gathered first: a poll reloads each ring once, however many of its
        // changes the batch holds.
        let mut stale: Vec<&Arc<RingHandle>> = Vec::new();
        let applied = if feed.complete {
            for change in &feed.changes {
                let Some(handle) = handles.iter().find(|h| h.name == change.ring) else {
                    continue;
                };
                match &change.subject {
                    Some(subject) => {
                        handle.erasures.fetch_add(1, Ordering::SeqCst);
                        handle.subjects.remove(subject);
                    }
                    None if !stale.iter().any(|h| Arc::ptr_eq(h, handle)) => stale.push(handle),
                    None => {}
                }
            }
            feed.changes.len()
        } else {
            for handle in &handles {
                handle.erasures.fetch_add(1, Ordering::SeqCst);
                handle.subjects.clear();
                stale.push(handle);
            }
            handles.len()
        };
        self.refresh_rings(&stale);
        self.feed_position.fetch_max(feed.latest, Ordering::SeqCst);
        Ok(applied)
    }

    /// Reloads each ring's snapshot, or expires it if that fails, so the next use reloads. Once
    /// the store is unavailable the remaining rings are only expired: each reload holds its
    /// ring's update lock for up to the store's timeout, and sealers that need a usage
    /// reservation wait behind it (a poll that waited one timeout per ring entry of its batch
    /// kept them waiting for several in a row while the server was down).
    fn refresh_rings(&self, stale: &[&Arc<RingHandle>]) {
        let mut store_down = false;
        for handle in stale {
            if store_down {
                expire(handle);
            } else if let Err(e) = self.refresh_ring(handle) {
                store_down = matches!(e, KeyError::StoreUnavailable(_));
            }
        }
    }

    /// Reloads the ring's snapshot at the time it was installed (the feed has no clock of its
    /// own), or expires it and returns the error if that fails.
    fn refresh_ring(&self, handle: &RingHandle) -> Result<(), KeyError> {
        let installed_at = handle
            .snapshot
            .load()
            .as_ref()
            .map(|snap| snap.installed_at);
        let Some(now) = installed_at else {
            return Ok(());
        };
        self.reload(handle, now).map(drop).inspect_err(|_| {
            expire(handle);
        })
    }
}
