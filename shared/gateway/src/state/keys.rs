//! Key records and tenants by id, cached for the key cache TTL (revocation and tenant changes
//! take effect within it). A miss is cached too, so a flood of well-formed forgeries cannot
//! turn into store reads. Key and tenant are separate lookups: the tenant is read only after
//! the key proved itself, so an unknown key id and a known id with a wrong secret cost the
//! same (one read).

use crate::cache::TtlCache;
use crate::context::StoreCalls;
use std::sync::Arc;
use tollgate_core::clock::Clock;
use tollgate_core::ports::{KeyStore, StoreError, TenantStore};
use tollgate_core::records::{ClientKeyRecord, Tenant};

pub struct KeyDirectory {
    keys: Arc<dyn KeyStore>,
    tenants: Arc<dyn TenantStore>,
    key_cache: TtlCache<String, Option<Arc<ClientKeyRecord>>>,
    tenant_cache: TtlCache<String, Option<Arc<Tenant>>>,
}

impl KeyDirectory {
    pub fn new(
        keys: Arc<dyn KeyStore>,
        tenants: Arc<dyn TenantStore>,
        ttl_ms: u64,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            keys,
            tenants,
            key_cache: TtlCache::new(100_000, ttl_ms, clock.clone()),
            tenant_cache: TtlCache::new(10_000, ttl_ms, clock),
        }
    }

    /// The key store itself, for the management API's uncached reads and its writes.
    pub fn store(&self) -> &Arc<dyn KeyStore> {
        &self.keys
    }

    /// Drops `key_id` from this instance's cache (a key just revoked here).
    pub fn forget(&self, key_id: &str) {
        self.key_cache.remove(key_id);
    }

    /// The key record for `key_id` (`None`: no such key): cache, else one store read. Shared,
    /// not copied: the request's principal holds the cached record itself.
    pub async fn key(
        &self,
        key_id: &str,
        calls: &mut StoreCalls,
    ) -> Result<Option<Arc<ClientKeyRecord>>, StoreError> {
        self.key_cache
            .read_through(
                key_id,
                calls,
                |e| e.clone(),
                || async { Ok(self.keys.get_key(key_id).await?.map(Arc::new)) },
            )
            .await
    }

    /// The tenant `tenant_id` (`None`: no such tenant): cache, else one store read (shared,
    /// like key records).
    pub async fn tenant(
        &self,
        tenant_id: &str,
        calls: &mut StoreCalls,
    ) -> Result<Option<Arc<Tenant>>, StoreError> {
        self.tenant_cache
            .read_through(
                tenant_id,
                calls,
                |t| t.clone(),
                || async { Ok(self.tenants.get_tenant(tenant_id).await?.map(Arc::new)) },
            )
            .await
    }
}
