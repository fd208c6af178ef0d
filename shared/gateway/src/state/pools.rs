//! Pool views, cached for the pool cache TTL, and the three things a request does with them:
//! [`select`](PoolCache::select) a token, [`observe`](PoolCache::observe) what an attempt
//! taught (applied to this instance's view at once, then to the store as a conditional
//! update), and [`forget`](PoolCache::forget) a view another instance has moved past.

use crate::cache::TtlCache;
use crate::context::StoreCalls;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tollgate_core::clock::{Clock, EpochMs};
use tollgate_core::pool::{HealthPolicy, Outcome, apply, next_state};
use tollgate_core::ports::{PoolStore, StoreError};
use tollgate_core::provider::Usage;
use tollgate_core::records::{PoolView, TokenRecord};

pub struct PoolCache {
    store: Arc<dyn PoolStore>,
    views: TtlCache<String, PoolView>,
    clock: Arc<dyn Clock>,
    rr: AtomicU64,
}

impl PoolCache {
    pub fn new(store: Arc<dyn PoolStore>, ttl_ms: u64, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            views: TtlCache::new(1_000, ttl_ms, clock.clone()),
            clock,
            rr: AtomicU64::new(0),
        }
    }

    /// Runs `f` on the pool's view: the cached one while fresh, else one read shared by every
    /// request that missed at the same time ([`TtlCache::read_through`]).
    async fn with_view<R>(
        &self,
        pool: &str,
        calls: &mut StoreCalls,
        f: impl Fn(&mut PoolView) -> R,
    ) -> Result<R, StoreError> {
        self.views
            .read_through(pool, calls, f, || self.store.load_pool(pool))
            .await
    }

    /// Chooses a token for `pool` by the pool's strategy, skipping `exclude`. Reads the pool
    /// when the cached view is older than its TTL.
    pub async fn select(
        &self,
        pool: &str,
        exclude: &[&str],
        calls: &mut StoreCalls,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let rr = self.rr.fetch_add(1, Ordering::Relaxed);
        let pick = |v: &mut PoolView| {
            tollgate_core::pool::select(
                v,
                self.clock.now_ms(),
                exclude,
                rr,
                &mut rand::thread_rng(),
            )
            .cloned()
        };
        self.with_view(pool, calls, pick).await
    }

    /// The pool's per-tenant cap on requests in flight ([`PoolView::tenant_concurrency`]).
    /// Reads the pool when the cached view is older than its TTL (the read token selection
    /// would make next anyway).
    pub async fn tenant_concurrency(
        &self,
        pool: &str,
        calls: &mut StoreCalls,
    ) -> Result<Option<u64>, StoreError> {
        self.with_view(pool, calls, |v| v.tenant_concurrency).await
    }

    /// Changes whenever a pool view is read anew or dropped (so whenever the token ids of a
    /// pool may have changed); in-place health and usage updates leave it alone.
    pub fn version(&self) -> u64 {
        self.views.version()
    }

    /// The token ids of `pool` in this instance's view (fresh or not).
    pub fn token_ids(&self, pool: &str) -> Vec<String> {
        self.views
            .with_any(pool, |v| {
                v.tokens.iter().map(|t| t.token_id.clone()).collect()
            })
            .unwrap_or_default()
    }

    fn update_token(&self, pool: &str, token_id: &str, f: impl FnOnce(&mut TokenRecord)) {
        self.views.with_any(pool, |v| {
            if let Some(t) = v.tokens.iter_mut().find(|t| t.token_id == token_id) {
                f(t);
            }
        });
    }

    /// Applies what one attempt taught about `token`: this instance's view changes at once;
    /// the store gets a conditional update on the token's version. Losing that race means
    /// another instance moved the token first: the view is dropped and re-read next time.
    pub async fn observe(
        &self,
        token: &TokenRecord,
        outcome: Outcome,
        policy: &HealthPolicy,
        calls: &mut StoreCalls,
    ) {
        let now = self.clock.now_ms();
        // Decided on this instance's copy of the token and applied to it in one step (no copy
        // of the record); on `token` itself when the view no longer holds it.
        let held = self
            .views
            .with_any(&token.pool, |v| {
                let t = v.tokens.iter_mut().find(|t| t.token_id == token.token_id)?;
                let (status, version) = (t.status, t.version);
                let change = next_state(t, outcome, now, policy);
                if let Some(c) = &change {
                    apply(t, c);
                }
                Some((change, status, version))
            })
            .flatten();
        let (change, status, version) = match held {
            Some(h) => h,
            None => (
                next_state(token, outcome, now, policy),
                token.status,
                token.version,
            ),
        };
        let Some(change) = change else {
            return;
        };
        if change.status != status {
            tracing::warn!(
                token_id = %token.token_id,
                pool = %token.pool,
                from = status.as_str(),
                to = change.status.as_str(),
                reason = change.last_error.unwrap_or(""),
                "token state changed"
            );
        }
        calls.writes += 1;
        match self
            .store
            .apply_change(&token.pool, &token.token_id, version, &change)
            .await
        {
            Ok(true) => {}
            Ok(false) => self.forget(&token.pool),
            Err(e) => {
                tracing::warn!(token_id = %token.token_id, error = %e, "token health write failed")
            }
        }
    }

    /// Counts one request's usage against `token` in this instance's view only; the time it
    /// was counted at. The store's copy: [`PoolCache::write_usage`], or the limit settlement
    /// that carries it.
    pub fn note_usage(&self, token: &TokenRecord, usage: Usage) -> EpochMs {
        let now = self.clock.now_ms();
        self.update_token(&token.pool, &token.token_id, |t| {
            t.requests += 1;
            t.tokens_in += usage.input;
            t.tokens_out += usage.output;
            t.last_used_at = Some(now);
        });
        now
    }

    /// Counts one request's usage against `token`: in this instance's view at once, in the
    /// store with one `ADD` update.
    pub async fn record_usage(&self, token: &TokenRecord, usage: Usage, calls: &mut StoreCalls) {
        let now = self.note_usage(token, usage);
        self.write_usage(token, usage, now, calls).await;
    }

    /// The store's copy of a usage already counted in this instance's view (one `ADD`).
    pub async fn write_usage(
        &self,
        token: &TokenRecord,
        usage: Usage,
        now: EpochMs,
        calls: &mut StoreCalls,
    ) {
        calls.writes += 1;
        if let Err(e) = self
            .store
            .record_usage(&token.pool, &token.token_id, usage, now)
            .await
        {
            tracing::warn!(token_id = %token.token_id, error = %e, "usage write failed");
        }
    }

    /// Drops the cached view of `pool` so the next request re-reads it.
    pub fn forget(&self, pool: &str) {
        self.views.remove(pool);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use std::sync::atomic::AtomicUsize;
    use tollgate_core::clock::{EpochMs, FakeClock};
    use tollgate_core::pool::TokenChange;
    use tollgate_core::records::{PoolConfig, TokenStatus};

    /// A pool store whose reads take a while, counting them.
    #[derive(Default)]
    struct SlowPools {
        loads: AtomicUsize,
    }

    #[async_trait]
    impl PoolStore for SlowPools {
        async fn load_pool(&self, _pool: &str) -> Result<PoolView, StoreError> {
            self.loads.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            Ok(PoolView {
                tenant_concurrency: Some(3),
                ..PoolView::default()
            })
        }
        async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
            Ok(vec![])
        }
        async fn list_pool_configs(&self) -> Result<Vec<PoolConfig>, StoreError> {
            Ok(vec![])
        }
        async fn set_pool_config(&self, _: &PoolConfig) -> Result<(), StoreError> {
            Ok(())
        }
        async fn put_token(&self, _: &TokenRecord) -> Result<(), StoreError> {
            Ok(())
        }
        async fn set_token_status(
            &self,
            _: &str,
            _: &str,
            _: TokenStatus,
        ) -> Result<(), StoreError> {
            Ok(())
        }
        async fn delete_token(&self, _: &str, _: &str) -> Result<(), StoreError> {
            Ok(())
        }
        async fn apply_change(
            &self,
            _: &str,
            _: &str,
            _: u64,
            _: &TokenChange,
        ) -> Result<bool, StoreError> {
            Ok(true)
        }
        async fn record_usage(
            &self,
            _: &str,
            _: &str,
            _: Usage,
            _: EpochMs,
        ) -> Result<(), StoreError> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn requests_that_miss_together_share_one_read() {
        let store = Arc::new(SlowPools::default());
        let cache = Arc::new(PoolCache::new(
            store.clone(),
            2_000,
            Arc::new(FakeClock::new(1_000_000)),
        ));
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let cache = cache.clone();
                tokio::spawn(async move {
                    let mut calls = StoreCalls::default();
                    let pool = if i % 2 == 0 { "a" } else { "b" };
                    let cap = cache.tenant_concurrency(pool, &mut calls).await;
                    (cap, calls.reads)
                })
            })
            .collect();
        let mut reads = 0;
        for t in tasks {
            let (cap, r) = t.await.unwrap();
            assert_eq!(cap, Ok(Some(3)));
            reads += r;
        }
        // one read per pool, however many requests missed at once
        assert_eq!(store.loads.load(Ordering::SeqCst), 2);
        assert_eq!(reads, 2);
    }
}
