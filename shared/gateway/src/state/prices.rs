//! The model price table a request is priced with: the stored table ([`PriceStore`]), cached
//! for the key cache TTL like key records, so an edit with `tollgate prices` applies within
//! that TTL without a restart. Nothing stored: the built-in defaults. The store failing: the
//! caller decides — a request with a spend budget is refused (fail closed), anything else is
//! priced with the last table this instance read (or the built-in one) for its audit line.

use crate::cache::TtlCache;
use crate::context::StoreCalls;
use std::sync::Arc;
use tollgate_core::clock::Clock;
use tollgate_core::ports::{PriceStore, StoreError};
use tollgate_core::pricing::PriceTable;

pub struct PriceBook {
    store: Option<Arc<dyn PriceStore>>,
    cache: TtlCache<(), Arc<PriceTable>>,
    builtin: Arc<PriceTable>,
}

impl PriceBook {
    pub fn new(store: Option<Arc<dyn PriceStore>>, ttl_ms: u64, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            cache: TtlCache::new(1, ttl_ms, clock),
            builtin: Arc::new(PriceTable::builtin()),
        }
    }

    /// The current table: cached, else read from the store (one read). `Unavailable` when no
    /// price store is configured or it cannot be read.
    pub async fn current(&self, calls: &mut StoreCalls) -> Result<Arc<PriceTable>, StoreError> {
        let Some(store) = &self.store else {
            return Err(StoreError::Unavailable("no price store configured".into()));
        };
        self.cache
            .read_through(
                &(),
                calls,
                |t| t.clone(),
                || async {
                    Ok(match store.load_prices().await? {
                        Some(stored) => Arc::new(stored.table),
                        None => self.builtin.clone(),
                    })
                },
            )
            .await
    }

    /// The last table read (of any age), else the built-in one. No I/O.
    pub fn last_known(&self) -> Arc<PriceTable> {
        self.cache
            .with_any(&(), |t| t.clone())
            .unwrap_or_else(|| self.builtin.clone())
    }
}
