//! One TTL cache type for everything the gateway keeps between requests (key records,
//! tenants, pool views, secret values). Freshness is judged by the injected clock, so tests
//! move time instead of sleeping. A TTL of 0 disables caching: `insert` keeps nothing.
//!
//! Reads through the cache ([`TtlCache::read_through`]) are shared: requests that miss one key
//! at the same moment take turns, the first reads the store and the rest find its value. A cold
//! instance under load would otherwise send every request's read to the store at once (seen as
//! a 5 s DynamoDB timeout on the emulator at 200 concurrent requests).

use crate::context::StoreCalls;
use std::borrow::Borrow;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// One turn per key being read through the cache; removed when its last holder is done,
    /// so a flood of distinct keys leaves nothing behind.
    turns: Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>,
    /// Bumped (under the entries' lock) whenever an entry is added, replaced or removed — not
    /// when a value is changed in place. Equal versions: no entry came or went in between.
    version: AtomicU64,
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    pub fn new(capacity: usize, ttl_ms: u64, clock: Arc<dyn Clock>) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            ttl_ms,
            capacity: capacity.max(1),
            clock,
            turns: Mutex::new(HashMap::new()),
            version: AtomicU64::new(0),
        }
    }

    /// The entries' version (see the field): read it before reading entries, and anything
    /// built from what was read is still current while the version stays the same.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
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
        self.version.fetch_add(1, Ordering::Release);
    }

    /// Runs `f` on the fresh cached value, else on the value `load` reads (counted in
    /// `calls.reads`), which is cached. Requests that miss `key` together share one `load`;
    /// a failed load is not cached and the next request in line tries its own. With a TTL of
    /// 0 nothing is kept, so nothing is shared either: every call loads.
    pub async fn read_through<Q, R, E, Fut>(
        &self,
        key: &Q,
        calls: &mut StoreCalls,
        f: impl Fn(&mut V) -> R,
        load: impl FnOnce() -> Fut,
    ) -> Result<R, E>
    where
        K: Borrow<Q> + Clone,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
        Fut: Future<Output = Result<V, E>>,
    {
        if let Some(r) = self.with_fresh(key, &f) {
            return Ok(r);
        }
        let turn = if self.ttl_ms == 0 {
            None
        } else {
            self.turns
                .lock()
                .ok()
                .map(|mut g| g.entry(key.to_owned()).or_default().clone())
        };
        let result = match &turn {
            Some(t) => {
                let _held = t.lock().await;
                match self.with_fresh(key, &f) {
                    Some(r) => Ok(r),
                    None => self.load_into(key, calls, &f, load).await,
                }
            }
            None => self.load_into(key, calls, &f, load).await,
        };
        if let Some(t) = turn {
            self.end_turn(key, t);
        }
        result
    }

    async fn load_into<Q, R, E, Fut>(
        &self,
        key: &Q,
        calls: &mut StoreCalls,
        f: &impl Fn(&mut V) -> R,
        load: impl FnOnce() -> Fut,
    ) -> Result<R, E>
    where
        Q: ToOwned<Owned = K> + ?Sized,
        Fut: Future<Output = Result<V, E>>,
    {
        calls.reads += 1;
        let mut value = load().await?;
        let r = f(&mut value);
        self.insert(key.to_owned(), value);
        Ok(r)
    }

    /// Drops the key's turn when no other request holds or waits for it.
    fn end_turn<Q>(&self, key: &Q, turn: Arc<tokio::sync::Mutex<()>>)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Ok(mut g) = self.turns.lock()
            && let Some(current) = g.get(key)
            && Arc::ptr_eq(current, &turn)
            // The map's reference and ours: nobody else is waiting.
            && Arc::strong_count(&turn) == 2
        {
            g.remove(key);
        }
    }

    pub fn remove<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Ok(mut g) = self.entries.lock()
            && g.remove(key).is_some()
        {
            self.version.fetch_add(1, Ordering::Release);
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn misses_at_the_same_moment_share_one_read() {
        let clock = Arc::new(FakeClock::new(0));
        let c: Arc<TtlCache<String, u32>> = Arc::new(TtlCache::new(10, 1_000, clock));
        let loads = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let mut tasks = Vec::new();
        for i in 0..50 {
            let (c, loads) = (c.clone(), loads.clone());
            tasks.push(tokio::spawn(async move {
                let mut calls = StoreCalls::default();
                let key = if i % 2 == 0 { "a" } else { "b" };
                let v = c
                    .read_through(
                        key,
                        &mut calls,
                        |v| *v,
                        || async {
                            loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                            Ok::<u32, ()>(7)
                        },
                    )
                    .await;
                (v, calls.reads)
            }));
        }
        let mut reads = 0;
        for t in tasks {
            let (v, r) = t.await.unwrap();
            assert_eq!(v, Ok(7));
            reads += r;
        }
        assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(reads, 2);
        assert!(
            c.turns.lock().unwrap().is_empty(),
            "turns are dropped when done"
        );
    }

    #[tokio::test]
    async fn a_failed_read_is_not_cached_and_ttl_zero_shares_nothing() {
        let clock = Arc::new(FakeClock::new(0));
        let c: TtlCache<String, u32> = TtlCache::new(10, 1_000, clock.clone());
        let mut calls = StoreCalls::default();
        let r = c
            .read_through(
                "a",
                &mut calls,
                |v| *v,
                || async { Err::<u32, &str>("down") },
            )
            .await;
        assert_eq!(r, Err("down"));
        let r = c
            .read_through("a", &mut calls, |v| *v, || async { Ok::<u32, &str>(3) })
            .await;
        assert_eq!(r, Ok(3));
        assert_eq!(calls.reads, 2);
        let z: TtlCache<String, u32> = TtlCache::new(10, 0, clock);
        for _ in 0..3 {
            let r = z
                .read_through("a", &mut calls, |v| *v, || async { Ok::<u32, &str>(1) })
                .await;
            assert_eq!(r, Ok(1));
        }
        assert_eq!(calls.reads, 5);
        assert!(z.turns.lock().unwrap().is_empty());
    }

    #[test]
    fn the_version_moves_when_entries_come_or_go_not_when_values_change_in_place() {
        let c: TtlCache<String, u32> = TtlCache::new(2, 1_000, Arc::new(FakeClock::new(0)));
        let v0 = c.version();
        c.insert("a".into(), 1);
        let v1 = c.version();
        assert_ne!(v0, v1);
        c.with_any("a", |v| *v += 1);
        assert_eq!(c.get("a"), Some(2));
        assert_eq!(c.version(), v1, "an in-place change is not a new entry");
        c.remove("missing");
        assert_eq!(c.version(), v1, "removing nothing changes nothing");
        c.insert("a".into(), 5);
        let v2 = c.version();
        assert_ne!(v1, v2, "a replaced value is a new entry");
        c.remove("a");
        assert_ne!(c.version(), v2);
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
