//! One TTL cache type for everything the gateway keeps between requests (key records,
//! tenants, pool views, secret values). Freshness is judged by the injected clock, so tests
//! move time instead of sleeping. A TTL of 0 disables caching: `insert` keeps nothing.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use tollgate_core::clock::{Clock, EpochMs};

struct Entry<V> {
    value: V,
    fetched_at: EpochMs,
}

pub struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, Entry<V>>>,
    ttl_ms: u64,
    capacity: usize,
    clock: Arc<dyn Clock>,
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    pub fn new(capacity: usize, ttl_ms: u64, clock: Arc<dyn Clock>) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            ttl_ms,
            capacity: capacity.max(1),
            clock,
        }
    }

    pub fn ttl_ms(&self) -> u64 {
        self.ttl_ms
    }

    fn fresh(&self, fetched_at: EpochMs, now: EpochMs) -> bool {
        self.ttl_ms > 0 && now.saturating_sub(fetched_at) < self.ttl_ms
    }

    /// The value, if cached and younger than the TTL.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.with_fresh(key, |v| v.clone())
    }

    /// Runs `f` on the cached value in place, if it is fresh.
    pub fn with_fresh<Q, R>(&self, key: &Q, f: impl FnOnce(&mut V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = self.clock.now_ms();
        let mut g = self.entries.lock().ok()?;
        let e = g.get_mut(key)?;
        if self.fresh(e.fetched_at, now) {
            Some(f(&mut e.value))
        } else {
            None
        }
    }

    /// Runs `f` on the cached value in place, fresh or not (this instance's own observations
    /// apply to whatever view it holds).
    pub fn with_any<Q, R>(&self, key: &Q, f: impl FnOnce(&mut V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut g = self.entries.lock().ok()?;
        g.get_mut(key).map(|e| f(&mut e.value))
    }

    pub fn insert(&self, key: K, value: V) {
        if self.ttl_ms == 0 {
            return;
        }
        let now = self.clock.now_ms();
        let Ok(mut g) = self.entries.lock() else {
            return;
        };
        if g.len() >= self.capacity && !g.contains_key(&key) {
            // Full: drop what has expired; if that frees nothing, start over. A flood of
            // distinct keys costs re-reads, never unbounded memory.
            g.retain(|_, e| self.ttl_ms > 0 && now.saturating_sub(e.fetched_at) < self.ttl_ms);
            if g.len() >= self.capacity {
                g.clear();
            }
        }
        g.insert(
            key,
            Entry {
                value,
                fetched_at: now,
            },
        );
    }

    pub fn remove<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Ok(mut g) = self.entries.lock() {
            g.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::clock::FakeClock;

    #[test]
    fn entries_expire_by_the_injected_clock() {
        let clock = Arc::new(FakeClock::new(1_000));
        let c: TtlCache<String, u32> = TtlCache::new(10, 100, clock.clone());
        c.insert("a".into(), 1);
        assert_eq!(c.get("a"), Some(1));
        clock.advance_ms(99);
        assert_eq!(c.get("a"), Some(1));
        clock.advance_ms(1);
        assert_eq!(c.get("a"), None);
        // A stale view can still take this instance's own observations.
        assert_eq!(c.with_any("a", |v| *v), Some(1));
    }

    #[test]
    fn ttl_zero_keeps_nothing() {
        let c: TtlCache<String, u32> = TtlCache::new(10, 0, Arc::new(FakeClock::new(0)));
        c.insert("a".into(), 1);
        assert_eq!(c.get("a"), None);
    }

    #[test]
    fn capacity_is_a_bound() {
        let clock = Arc::new(FakeClock::new(0));
        let c: TtlCache<u32, u32> = TtlCache::new(4, 1_000, clock);
        for i in 0..100 {
            c.insert(i, i);
        }
        assert!(c.entries.lock().unwrap().len() <= 4);
        assert_eq!(c.get(&99), Some(99));
    }
}
