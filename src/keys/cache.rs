//! A bounded, time-limited, sharded map for unwrapped keys.
//!
//! Reads take one shard's read lock and clone an `Arc`; nothing under a lock does I/O. Values are
//! key types that zeroize when dropped, so evicting an entry (full shard, expiry, erase, destroy)
//! zeroizes it as soon as the last in-flight user of that `Arc` is done with it.

use core::fmt;
use foldhash::quality::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

const MAX_SHARDS: usize = 16;

struct Entry<V> {
    value: Arc<V>,
    expires_at: u64,
    /// Insertion order, for evicting the oldest entry of a full shard.
    sequence: u64,
}

/// foldhash rather than SipHash: the lookup is on every seal and open, and a shard holds at most
/// `capacity / 16` entries, so colliding keys could slow down only that many.
type Shard<V> = HashMap<String, Entry<V>, RandomState>;

/// A bounded cache keyed by strings, with a TTL measured on the caller's clock.
pub(crate) struct KeyCache<V> {
    shards: Vec<RwLock<Shard<V>>>,
    shard_capacity: usize,
    ttl_secs: u64,
    hasher: RandomState,
    sequence: AtomicU64,
}

impl<V> KeyCache<V> {
    /// A cache of about `capacity` entries (at least one per shard) living `ttl_secs` each.
    /// A capacity of 0 disables caching.
    pub(crate) fn new(capacity: usize, ttl_secs: u64) -> Self {
        let shards = capacity.clamp(1, MAX_SHARDS);
        Self {
            shards: (0..shards)
                .map(|_| RwLock::new(HashMap::default()))
                .collect(),
            shard_capacity: capacity.div_ceil(shards),
            ttl_secs,
            hasher: RandomState::default(),
            sequence: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: &str) -> Option<&RwLock<Shard<V>>> {
        let hash = self.hasher.hash_one(key);
        // INVARIANT: there is at least one shard; the modulo keeps the index in range.
        let index = usize::try_from(hash % self.shards.len() as u64).unwrap_or(0);
        self.shards.get(index)
    }

    /// The value for `key` if present and not expired at `now`. An expired entry is removed.
    pub(crate) fn get(&self, key: &str, now: u64) -> Option<Arc<V>> {
        let shard = self.shard(key)?;
        {
            let map = shard.read().unwrap_or_else(PoisonError::into_inner);
            match map.get(key) {
                None => return None,
                Some(entry) if now < entry.expires_at => return Some(Arc::clone(&entry.value)),
                Some(_) => {}
            }
        }
        let mut map = shard.write().unwrap_or_else(PoisonError::into_inner);
        if map.get(key).is_some_and(|e| now >= e.expires_at) {
            map.remove(key);
        }
        None
    }

    /// Calls `f` with the value for `key` if present and not expired at `now`, under the shard's
    /// read lock: no reference-count traffic, for the cached paths of seal and open. `f` must not
    /// touch this cache (writers of the shard wait until it returns).
    pub(crate) fn with<R>(
        &self,
        key: &str,
        now: u64,
        f: impl FnOnce(&V) -> Option<R>,
    ) -> Option<R> {
        let map = self
            .shard(key)?
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(key)
            .filter(|entry| now < entry.expires_at)
            .and_then(|entry| f(&entry.value))
    }

    /// Inserts or replaces `key`, evicting expired entries and then the oldest ones if the shard
    /// is full.
    pub(crate) fn insert(&self, key: &str, value: Arc<V>, now: u64) {
        self.insert_if(key, value, now, || true);
    }

    /// [`KeyCache::insert`], only if `still_valid()` holds when checked under the shard's write
    /// lock: a concurrent [`KeyCache::remove`] (after an erasure) either runs after this insert
    /// and removes it, or has already changed what `still_valid` reads. Returns whether it
    /// inserted.
    pub(crate) fn insert_if(
        &self,
        key: &str,
        value: Arc<V>,
        now: u64,
        still_valid: impl FnOnce() -> bool,
    ) -> bool {
        if self.shard_capacity == 0 {
            return false;
        }
        let Some(shard) = self.shard(key) else {
            return false;
        };
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        let entry = Entry {
            value,
            expires_at: now.saturating_add(self.ttl_secs),
            sequence,
        };
        let mut map = shard.write().unwrap_or_else(PoisonError::into_inner);
        if !still_valid() {
            return false;
        }
        if !map.contains_key(key) && map.len() >= self.shard_capacity {
            map.retain(|_, e| now < e.expires_at);
            while map.len() >= self.shard_capacity {
                let oldest = map
                    .iter()
                    .min_by_key(|(_, e)| e.sequence)
                    .map(|(k, _)| k.clone());
                match oldest {
                    Some(k) => {
                        map.remove(&k);
                    }
                    None => break,
                }
            }
        }
        map.insert(key.to_owned(), entry);
        true
    }

    /// Removes `key` (after an erase), returning whether it was cached.
    pub(crate) fn remove(&self, key: &str) -> bool {
        self.shard(key).is_some_and(|shard| {
            shard
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(key)
                .is_some()
        })
    }

    /// Drops every entry (the change feed was incomplete: anything may have changed).
    pub(crate) fn clear(&self) {
        for shard in &self.shards {
            shard
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
    }

    /// Number of entries, expired ones included.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

impl<V> fmt::Debug for KeyCache<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyCache")
            .field("entries", &self.len())
            .field("capacity", &(self.shard_capacity * self.shards.len()))
            .field("ttl_secs", &self.ttl_secs)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_and_stays_bounded() {
        let cache = KeyCache::new(32, 10);
        for i in 0..1000 {
            cache.insert(&format!("k{i}"), Arc::new(i), 100);
        }
        assert!(cache.len() <= 32, "{}", cache.len());
        // The newest entry survives eviction of the oldest.
        assert_eq!(cache.get("k999", 100).as_deref(), Some(&999));
        assert!(cache.get("k0", 100).is_none());
        assert!(cache.get("k999", 110).is_none());
        assert!(
            cache.get("k999", 100).is_none(),
            "expired entries are removed"
        );
        cache.insert("a", Arc::new(1), 0);
        assert!(cache.remove("a"));
        assert!(cache.get("a", 0).is_none());
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let cache = KeyCache::new(0, 10);
        cache.insert("a", Arc::new(1), 0);
        assert!(cache.get("a", 0).is_none());
    }

    #[test]
    fn evicted_values_are_dropped() {
        let cache = KeyCache::new(1, 10);
        let first = Arc::new(1);
        cache.insert("a", Arc::clone(&first), 0);
        assert_eq!(Arc::strong_count(&first), 2);
        cache.insert("b", Arc::new(2), 0);
        assert_eq!(Arc::strong_count(&first), 1);
    }
}
