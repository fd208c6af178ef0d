//! In-memory stores. Same traits and same contract as the AWS adapters (see [`contract`]), so
//! the gateway's unit tests and the benchmark run the real request path without AWS.
//! Each store counts its reads and writes like the AWS adapters do.

pub mod audit;
pub mod contract;
pub mod identity;
pub mod rotation;

use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use tollgate_core::clock::EpochMs;
use tollgate_core::identity::IssuerRecord;
use tollgate_core::limits::Limits;
use tollgate_core::pool::{TokenChange, apply};
use tollgate_core::ports::{
    CounterDelta, CounterWrite, DeltaOutcome, IssuerStore, JwksSource, KeyStore, LimitStore,
    OpCounter, PoolStore, PriceStore, Secret, SecretStore, StoreError, StoredPrices, SwapOutcome,
    TenantStore, UsageWrite, VersionedCounters,
};
use tollgate_core::pricing::PriceTable;
use tollgate_core::provider::Usage;
use tollgate_core::records::{
    ClientKeyRecord, KeyStatus, Policy, PoolConfig, PoolView, Strategy, Tenant, TokenRecord,
    TokenStatus,
};

fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>, StoreError> {
    m.lock()
        .map_err(|_| StoreError::Unavailable("in-memory store poisoned".into()))
}

/// Tenants, keys, pools and secrets in one place.
#[derive(Default)]
pub struct MemoryStore {
    tenants: Mutex<BTreeMap<String, Tenant>>,
    keys: Mutex<BTreeMap<String, ClientKeyRecord>>,
    tokens: Mutex<BTreeMap<(String, String), TokenRecord>>,
    pools: Mutex<BTreeMap<String, PoolConfig>>,
    secrets: Mutex<HashMap<String, Vec<Secret>>>,
    counters: Mutex<HashMap<String, VersionedCounters>>,
    issuers: Mutex<BTreeMap<String, IssuerRecord>>,
    prices: Mutex<Option<StoredPrices>>,
    /// When set, every call fails as an unreachable service would (fail-closed tests).
    failing: std::sync::atomic::AtomicBool,
    pub ops: OpCounter,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_failing(&self, failing: bool) {
        self.failing
            .store(failing, std::sync::atomic::Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            Err(StoreError::Unavailable("injected failure".into()))
        } else {
            Ok(())
        }
    }

    fn read(&self) -> Result<(), StoreError> {
        self.check()?;
        self.ops.read();
        Ok(())
    }

    fn write(&self) -> Result<(), StoreError> {
        self.check()?;
        self.ops.write();
        Ok(())
    }

    /// One write changing a stored tenant; `NotFound` when there is none.
    fn update_tenant(&self, id: &str, f: impl FnOnce(&mut Tenant)) -> Result<(), StoreError> {
        self.write()?;
        f(lock(&self.tenants)?
            .get_mut(id)
            .ok_or(StoreError::NotFound)?);
        Ok(())
    }

    /// One write changing a stored key record; `NotFound` when there is none.
    fn update_key(&self, id: &str, f: impl FnOnce(&mut ClientKeyRecord)) -> Result<(), StoreError> {
        self.write()?;
        f(lock(&self.keys)?.get_mut(id).ok_or(StoreError::NotFound)?);
        Ok(())
    }
}

#[async_trait]
impl TenantStore for MemoryStore {
    async fn get_tenant(&self, tenant_id: &str) -> Result<Option<Tenant>, StoreError> {
        self.read()?;
        Ok(lock(&self.tenants)?.get(tenant_id).cloned())
    }
    async fn put_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
        self.write()?;
        let mut m = lock(&self.tenants)?;
        if m.contains_key(&tenant.tenant_id) {
            return Err(StoreError::AlreadyExists);
        }
        m.insert(tenant.tenant_id.clone(), tenant.clone());
        Ok(())
    }
    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        self.read()?;
        Ok(lock(&self.tenants)?.values().cloned().collect())
    }
    async fn set_tenant_policy(
        &self,
        tenant_id: &str,
        policy: Option<&Policy>,
    ) -> Result<(), StoreError> {
        self.update_tenant(tenant_id, |t| t.dlp_policy = policy.cloned())
    }
    async fn set_tenant_limits(
        &self,
        tenant_id: &str,
        limits: Option<&Limits>,
    ) -> Result<(), StoreError> {
        self.update_tenant(tenant_id, |t| t.limits = limits.cloned())
    }
    async fn set_tenant_key_limits(
        &self,
        tenant_id: &str,
        limits: Option<&Limits>,
    ) -> Result<(), StoreError> {
        self.update_tenant(tenant_id, |t| t.key_limits = limits.cloned())
    }
}

#[async_trait]
impl KeyStore for MemoryStore {
    async fn get_key(&self, key_id: &str) -> Result<Option<ClientKeyRecord>, StoreError> {
        self.read()?;
        Ok(lock(&self.keys)?.get(key_id).cloned())
    }
    async fn put_key(&self, rec: &ClientKeyRecord) -> Result<(), StoreError> {
        self.write()?;
        let mut m = lock(&self.keys)?;
        if m.contains_key(&rec.key_id) {
            return Err(StoreError::AlreadyExists);
        }
        m.insert(rec.key_id.clone(), rec.clone());
        Ok(())
    }
    async fn revoke_key(&self, key_id: &str, at: EpochMs) -> Result<(), StoreError> {
        self.write()?;
        let mut m = lock(&self.keys)?;
        let rec = m.get_mut(key_id).ok_or(StoreError::NotFound)?;
        rec.status = KeyStatus::Revoked;
        rec.revoked_at = Some(at);
        Ok(())
    }
    async fn set_key_suspended(
        &self,
        key_id: &str,
        reason: Option<&str>,
        at: EpochMs,
    ) -> Result<bool, StoreError> {
        self.write()?;
        let mut m = lock(&self.keys)?;
        let rec = m.get_mut(key_id).ok_or(StoreError::NotFound)?;
        match (reason, rec.status) {
            (Some(r), KeyStatus::Active) => {
                rec.status = KeyStatus::Suspended;
                rec.suspended_at = Some(at);
                rec.suspended_reason = Some(r.to_owned());
                Ok(true)
            }
            (None, KeyStatus::Suspended) => {
                rec.status = KeyStatus::Active;
                rec.suspended_at = None;
                rec.suspended_reason = None;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
    async fn rotate_key(
        &self,
        old_key_id: &str,
        old_expires_at: EpochMs,
        successor: &ClientKeyRecord,
    ) -> Result<bool, StoreError> {
        self.write()?;
        let mut m = lock(&self.keys)?;
        let old = m.get(old_key_id).ok_or(StoreError::NotFound)?;
        // A canary is never rotated: its successor would be a normal key planted as bait.
        if old.status != KeyStatus::Active || old.rotated_to.is_some() || old.canary {
            return Ok(false);
        }
        if m.contains_key(&successor.key_id) {
            return Err(StoreError::AlreadyExists);
        }
        m.insert(successor.key_id.clone(), successor.clone());
        if let Some(old) = m.get_mut(old_key_id) {
            old.rotated_to = Some(successor.key_id.clone());
            old.expires_at = Some(old_expires_at);
        }
        Ok(true)
    }
    async fn list_keys(&self, tenant_id: Option<&str>) -> Result<Vec<ClientKeyRecord>, StoreError> {
        self.read()?;
        Ok(lock(&self.keys)?
            .values()
            .filter(|k| tenant_id.is_none_or(|t| k.tenant_id == t))
            .cloned()
            .collect())
    }
    async fn set_key_policy(
        &self,
        key_id: &str,
        policy: Option<&Policy>,
    ) -> Result<(), StoreError> {
        self.update_key(key_id, |k| k.dlp_policy = policy.cloned())
    }
    async fn set_key_limits(
        &self,
        key_id: &str,
        limits: Option<&Limits>,
    ) -> Result<(), StoreError> {
        self.update_key(key_id, |k| k.limits = limits.cloned())
    }
}

#[async_trait]
impl PoolStore for MemoryStore {
    async fn load_pool(&self, pool: &str) -> Result<PoolView, StoreError> {
        self.read()?;
        let (strategy, tenant_concurrency) = lock(&self.pools)?
            .get(pool)
            .map(|c| (c.strategy, c.tenant_concurrency))
            .unwrap_or((Strategy::RoundRobin, None));
        let tokens = lock(&self.tokens)?
            .values()
            .filter(|t| t.pool == pool)
            .cloned()
            .collect();
        Ok(PoolView {
            strategy,
            tenant_concurrency,
            tokens,
        })
    }
    async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.read()?;
        Ok(lock(&self.tokens)?.values().cloned().collect())
    }
    async fn list_pool_configs(&self) -> Result<Vec<PoolConfig>, StoreError> {
        self.read()?;
        Ok(lock(&self.pools)?.values().cloned().collect())
    }
    async fn set_pool_config(&self, cfg: &PoolConfig) -> Result<(), StoreError> {
        self.write()?;
        lock(&self.pools)?.insert(cfg.pool.clone(), cfg.clone());
        Ok(())
    }
    async fn put_token(&self, t: &TokenRecord) -> Result<(), StoreError> {
        self.write()?;
        let mut m = lock(&self.tokens)?;
        let k = (t.pool.clone(), t.token_id.clone());
        if m.contains_key(&k) {
            return Err(StoreError::AlreadyExists);
        }
        m.insert(k, t.clone());
        Ok(())
    }
    async fn set_token_status(
        &self,
        pool: &str,
        token_id: &str,
        status: TokenStatus,
    ) -> Result<(), StoreError> {
        self.write()?;
        let mut m = lock(&self.tokens)?;
        let t = m
            .get_mut(&(pool.to_owned(), token_id.to_owned()))
            .ok_or(StoreError::NotFound)?;
        t.status = status;
        t.version += 1;
        if status == TokenStatus::Active {
            t.cooldown_until = None;
            t.consecutive_failures = 0;
        }
        Ok(())
    }
    async fn delete_token(&self, pool: &str, token_id: &str) -> Result<(), StoreError> {
        self.write()?;
        lock(&self.tokens)?
            .remove(&(pool.to_owned(), token_id.to_owned()))
            .map(|_| ())
            .ok_or(StoreError::NotFound)
    }
    async fn apply_change(
        &self,
        pool: &str,
        token_id: &str,
        expected_version: u64,
        change: &TokenChange,
    ) -> Result<bool, StoreError> {
        self.write()?;
        let mut m = lock(&self.tokens)?;
        let Some(t) = m.get_mut(&(pool.to_owned(), token_id.to_owned())) else {
            return Ok(false);
        };
        if t.version != expected_version {
            return Ok(false);
        }
        apply(t, change);
        Ok(true)
    }
    async fn record_usage(
        &self,
        pool: &str,
        token_id: &str,
        usage: Usage,
        at: EpochMs,
    ) -> Result<(), StoreError> {
        self.write()?;
        let mut m = lock(&self.tokens)?;
        if let Some(t) = m.get_mut(&(pool.to_owned(), token_id.to_owned())) {
            t.requests += 1;
            t.tokens_in += usage.input;
            t.tokens_out += usage.output;
            t.last_used_at = Some(at);
        }
        Ok(())
    }
}

#[async_trait]
impl SecretStore for MemoryStore {
    async fn get_secret(&self, secret_id: &str) -> Result<Secret, StoreError> {
        self.read()?;
        lock(&self.secrets)?
            .get(secret_id)
            .and_then(|v| v.last().cloned())
            .ok_or(StoreError::NotFound)
    }
    async fn put_secret(&self, secret_id: &str, value: &Secret) -> Result<(), StoreError> {
        self.write()?;
        lock(&self.secrets)?
            .entry(secret_id.to_owned())
            .or_default()
            .push(value.clone());
        Ok(())
    }
    async fn delete_secret(&self, secret_id: &str) -> Result<(), StoreError> {
        self.write()?;
        lock(&self.secrets)?
            .remove(secret_id)
            .map(|_| ())
            .ok_or(StoreError::NotFound)
    }
}

#[async_trait]
impl LimitStore for MemoryStore {
    async fn load_counters(&self, subject: &str) -> Result<VersionedCounters, StoreError> {
        self.read()?;
        Ok(lock(&self.counters)?
            .get(subject)
            .cloned()
            .unwrap_or_default())
    }

    async fn swap_counters(
        &self,
        writes: &[CounterWrite],
        _expires_at: EpochMs,
    ) -> Result<SwapOutcome, StoreError> {
        self.write()?;
        let mut m = lock(&self.counters)?;
        let current = |s: &str| m.get(s).cloned().unwrap_or_default();
        if writes
            .iter()
            .any(|w| current(&w.subject).version != w.expected_version)
        {
            let now: Vec<(String, VersionedCounters)> = writes
                .iter()
                .map(|w| (w.subject.clone(), current(&w.subject)))
                .collect();
            return Ok(SwapOutcome::Conflict(now));
        }
        for w in writes {
            m.insert(
                w.subject.clone(),
                VersionedCounters {
                    counters: w.counters.clone(),
                    version: w.expected_version + 1,
                },
            );
        }
        Ok(SwapOutcome::Applied)
    }

    async fn apply_deltas(
        &self,
        deltas: &[CounterDelta],
        usage: Option<&UsageWrite>,
        _expires_at: EpochMs,
    ) -> Result<DeltaOutcome, StoreError> {
        self.write()?;
        let mut m = lock(&self.counters)?;
        let mut tokens = lock(&self.tokens)?;
        let key = usage.map(|u| (u.pool.clone(), u.token_id.clone()));
        if key.as_ref().is_some_and(|k| !tokens.contains_key(k)) {
            return Ok(DeltaOutcome::NotApplied);
        }
        let mut next = Vec::with_capacity(deltas.len());
        for d in deltas {
            let Some(stored) = m.get(&d.subject).filter(|c| c.version > 0) else {
                return Ok(DeltaOutcome::NotApplied);
            };
            let Some(counters) = d.delta.apply(&stored.counters) else {
                return Ok(DeltaOutcome::NotApplied);
            };
            next.push((
                d.subject.clone(),
                VersionedCounters {
                    counters,
                    version: stored.version + 1,
                },
            ));
        }
        m.extend(next);
        if let (Some(u), Some(k)) = (usage, key)
            && let Some(t) = tokens.get_mut(&k)
        {
            t.requests += 1;
            t.tokens_in += u.usage.input;
            t.tokens_out += u.usage.output;
            t.last_used_at = Some(u.at);
        }
        Ok(DeltaOutcome::Applied)
    }

    /// The memory store is also the pool store.
    fn carries_usage(&self) -> bool {
        true
    }
}

#[async_trait]
impl PriceStore for MemoryStore {
    async fn load_prices(&self) -> Result<Option<StoredPrices>, StoreError> {
        self.read()?;
        Ok(lock(&self.prices)?.clone())
    }

    async fn store_prices(
        &self,
        table: &PriceTable,
        expected_version: u64,
    ) -> Result<bool, StoreError> {
        self.write()?;
        let mut stored = lock(&self.prices)?;
        let current = stored.as_ref().map_or(0, |p| p.version);
        if current != expected_version {
            return Ok(false);
        }
        *stored = Some(StoredPrices {
            table: table.clone(),
            version: expected_version + 1,
        });
        Ok(true)
    }
}

#[async_trait]
impl IssuerStore for MemoryStore {
    async fn get_issuer(&self, issuer: &str) -> Result<Option<IssuerRecord>, StoreError> {
        self.read()?;
        Ok(lock(&self.issuers)?.get(issuer).cloned())
    }
    async fn put_issuer(&self, rec: &IssuerRecord) -> Result<(), StoreError> {
        self.write()?;
        lock(&self.issuers)?.insert(rec.issuer.clone(), rec.clone());
        Ok(())
    }
    async fn list_issuers(&self) -> Result<Vec<IssuerRecord>, StoreError> {
        self.read()?;
        Ok(lock(&self.issuers)?.values().cloned().collect())
    }
    async fn delete_issuer(&self, issuer: &str) -> Result<(), StoreError> {
        self.write()?;
        match lock(&self.issuers)?.remove(issuer) {
            Some(_) => Ok(()),
            None => Err(StoreError::NotFound),
        }
    }
}

/// JWK Sets by URL, for tests: set a document, make every fetch fail, count fetches.
#[derive(Default)]
pub struct MemoryJwks {
    sets: Mutex<HashMap<String, String>>,
    failing: std::sync::atomic::AtomicBool,
    fetches: std::sync::atomic::AtomicU64,
}

impl MemoryJwks {
    pub fn new() -> Self {
        Self::default()
    }
    /// Publishes `json` at `url` (replacing what was there: a key rotation).
    pub fn publish(&self, url: &str, json: impl Into<String>) {
        if let Ok(mut m) = self.sets.lock() {
            m.insert(url.to_owned(), json.into());
        }
    }
    pub fn set_failing(&self, failing: bool) {
        self.failing
            .store(failing, std::sync::atomic::Ordering::SeqCst);
    }
    /// Fetches attempted so far (failed ones included).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait]
impl JwksSource for MemoryJwks {
    async fn fetch_jwks(&self, url: &str) -> Result<String, StoreError> {
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Unavailable("injected failure".into()));
        }
        lock(&self.sets)?
            .get(url)
            .cloned()
            .ok_or_else(|| StoreError::Unavailable(format!("no JWK Set at {url}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_store_passes_the_contract() {
        contract::run_all(&MemoryStore::new(), "").await;
    }

    #[tokio::test]
    async fn memory_jwks_serves_what_was_published_and_fails_when_told() {
        let j = MemoryJwks::new();
        assert!(j.fetch_jwks("https://i/jwks").await.is_err());
        j.publish("https://i/jwks", r#"{"keys":[]}"#);
        assert_eq!(
            j.fetch_jwks("https://i/jwks").await.unwrap(),
            r#"{"keys":[]}"#
        );
        j.set_failing(true);
        assert!(matches!(
            j.fetch_jwks("https://i/jwks").await,
            Err(StoreError::Unavailable(_))
        ));
        assert_eq!(j.fetches(), 3);
    }

    #[tokio::test]
    async fn memory_store_passes_the_limit_counter_contract() {
        contract::run_limits(&MemoryStore::new(), "").await;
    }

    #[tokio::test]
    async fn memory_store_passes_the_price_contract() {
        contract::run_prices(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn injected_failure_fails_every_call() {
        let s = MemoryStore::new();
        s.set_failing(true);
        assert!(matches!(
            KeyStore::get_key(&s, "x").await,
            Err(StoreError::Unavailable(_))
        ));
    }
}
