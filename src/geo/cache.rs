//! An LRU cache whose entries also expire after a TTL.
//!
//! Badges report from the same few places all day, so most lookups repeat;
//! the TTL bounds how long a provider's old answer (or a reloaded cell
//! database's old answer) is served. Negative answers are cached too: asking
//! a provider again about a cell it does not know only costs quota.
//!
//! The clock is passed in, so expiry is tested without sleeping. The caller
//! holds it behind a mutex and never across an await.

use std::hash::Hash;
use std::time::{Duration, Instant};

use lru::LruCache;

/// A cache's counters and size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    /// Lookups not found, including expired entries.
    pub misses: u64,
    /// Entries found but past their TTL (also counted in `misses`).
    pub expired: u64,
    /// Entries pushed out to stay within capacity.
    pub evictions: u64,
    pub entries: usize,
    pub capacity: usize,
}

pub(crate) struct TtlCache<K: Hash + Eq, V> {
    // `None` when the capacity is 0: caching is off.
    map: Option<LruCache<K, (Instant, V)>>,
    capacity: usize,
    ttl: Duration,
    stats: CacheStats,
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Self {
        // Unbounded plus our own limit: `LruCache::new` would allocate the
        // whole capacity (100k entries by default) up front.
        let map = (capacity > 0).then(LruCache::unbounded);
        Self {
            map,
            capacity,
            ttl,
            stats: CacheStats {
                capacity,
                ..CacheStats::default()
            },
        }
    }

    pub(crate) fn get(&mut self, key: &K, now: Instant) -> Option<V> {
        let Some(map) = self.map.as_mut() else {
            self.stats.misses += 1;
            return None;
        };
        let fresh = match map.get(key) {
            None => {
                self.stats.misses += 1;
                return None;
            }
            Some((at, value)) => {
                (now.saturating_duration_since(*at) < self.ttl).then(|| value.clone())
            }
        };
        match fresh {
            Some(value) => {
                self.stats.hits += 1;
                Some(value)
            }
            None => {
                map.pop(key);
                self.stats.expired += 1;
                self.stats.misses += 1;
                None
            }
        }
    }

    pub(crate) fn insert(&mut self, key: K, value: V, now: Instant) {
        let Some(map) = self.map.as_mut() else {
            return;
        };
        if !map.contains(&key) && map.len() >= self.capacity {
            map.pop_lru();
            self.stats.evictions += 1;
        }
        map.put(key, (now, value));
    }

    pub(crate) fn clear(&mut self) {
        if let Some(map) = self.map.as_mut() {
            map.clear();
        }
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.map.as_ref().map_or(0, LruCache::len),
            ..self.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    #[test]
    fn hits_until_the_ttl_then_misses() {
        let t0 = Instant::now();
        let mut c = TtlCache::new(10, TTL);
        assert_eq!(c.get(&1, t0), None);
        c.insert(1, "a", t0);
        assert_eq!(c.get(&1, t0 + Duration::from_secs(59)), Some("a"));
        assert_eq!(c.get(&1, t0 + TTL), None);
        assert_eq!(c.get(&1, t0), None, "an expired entry is removed");
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.expired, s.entries), (1, 3, 1, 0));
    }

    #[test]
    fn evicts_the_least_recently_used_at_capacity() {
        let t0 = Instant::now();
        let mut c = TtlCache::new(2, TTL);
        c.insert(1, 10, t0);
        c.insert(2, 20, t0);
        assert_eq!(c.get(&1, t0), Some(10));
        c.insert(3, 30, t0);
        assert_eq!(c.get(&2, t0), None);
        assert_eq!(c.get(&1, t0), Some(10));
        assert_eq!(c.get(&3, t0), Some(30));
        // Replacing a present key evicts nothing and restarts its TTL.
        c.insert(1, 11, t0 + Duration::from_secs(30));
        assert_eq!(c.get(&1, t0 + Duration::from_secs(80)), Some(11));
        let s = c.stats();
        assert_eq!((s.evictions, s.entries, s.capacity), (1, 2, 2));
    }

    #[test]
    fn capacity_zero_turns_caching_off() {
        let t0 = Instant::now();
        let mut c = TtlCache::new(0, TTL);
        c.insert(1, 10, t0);
        assert_eq!(c.get(&1, t0), None);
        assert_eq!(c.stats().entries, 0);
        c.clear();
    }
}
