//! The small traits the domain needs from storage. Two implementations each: DynamoDB /
//! Secrets Manager / KMS (`tollgate-aws`) and in-memory (`tollgate-memory`), held to the same
//! contract tests.

use crate::clock::EpochMs;
use crate::identity::IssuerRecord;
use crate::limits::{Counters, Limits, SettleDelta};
use crate::pool::TokenChange;
use crate::pricing::PriceTable;
use crate::provider::Usage;
use crate::records::{
    ClientKeyRecord, Policy, PoolConfig, PoolView, Tenant, TokenRecord, TokenStatus,
};
use async_trait::async_trait;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The backing service failed or could not be reached. Callers fail closed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("not found")]
    NotFound,
    #[error("already exists")]
    AlreadyExists,
    #[error("stored record is malformed: {0}")]
    Corrupt(String),
}

/// A secret value. `Debug` and `Display` never print it. Shared, not copied, when cloned:
/// cached values are handed to every request that sends them.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(std::sync::Arc<str>);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into().into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

#[async_trait]
pub trait TenantStore: Send + Sync {
    async fn get_tenant(&self, tenant_id: &str) -> Result<Option<Tenant>, StoreError>;
    /// Fails with `AlreadyExists` rather than overwrite.
    async fn put_tenant(&self, tenant: &Tenant) -> Result<(), StoreError>;
    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError>;
    /// Sets (or with `None` clears) the tenant's sensitive-data policy. `NotFound` for an
    /// unknown tenant.
    async fn set_tenant_policy(
        &self,
        tenant_id: &str,
        policy: Option<&Policy>,
    ) -> Result<(), StoreError>;
    /// Sets (or clears) the limits on the tenant as a whole. `NotFound` for an unknown tenant.
    async fn set_tenant_limits(
        &self,
        tenant_id: &str,
        limits: Option<&Limits>,
    ) -> Result<(), StoreError>;
    /// Sets (or clears) the limits every key of the tenant gets unless it overrides them.
    async fn set_tenant_key_limits(
        &self,
        tenant_id: &str,
        limits: Option<&Limits>,
    ) -> Result<(), StoreError>;
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn get_key(&self, key_id: &str) -> Result<Option<ClientKeyRecord>, StoreError>;
    /// Fails with `AlreadyExists` rather than overwrite.
    async fn put_key(&self, rec: &ClientKeyRecord) -> Result<(), StoreError>;
    /// Fails with `NotFound` for an unknown key id.
    async fn revoke_key(&self, key_id: &str, at: EpochMs) -> Result<(), StoreError>;
    /// With `Some(reason)`: suspends an active key, recording `at` and the reason. With
    /// `None`: resumes a suspended key (clearing both). Returns whether the status changed:
    /// `false` when the key was not in the state the change starts from (already suspended,
    /// already active, or revoked: a revoked key never changes). `NotFound` for an unknown
    /// key id.
    async fn set_key_suspended(
        &self,
        key_id: &str,
        reason: Option<&str>,
        at: EpochMs,
    ) -> Result<bool, StoreError>;
    /// Key rotation, in one write: stores `successor` (a new key id, `rotated_from` =
    /// `old_key_id`) and sets the old key's `rotated_to` and `expires_at = old_expires_at`.
    /// `AlreadyExists` when the successor's id is taken (nothing changed); `NotFound` for an
    /// unknown old key; `Ok(false)` when the old key is not active or already rotated
    /// (nothing changed).
    async fn rotate_key(
        &self,
        old_key_id: &str,
        old_expires_at: EpochMs,
        successor: &ClientKeyRecord,
    ) -> Result<bool, StoreError>;
    async fn list_keys(&self, tenant_id: Option<&str>) -> Result<Vec<ClientKeyRecord>, StoreError>;
    /// Sets (or with `None` clears) a key's policy overrides. `NotFound` for an unknown key.
    async fn set_key_policy(&self, key_id: &str, policy: Option<&Policy>)
    -> Result<(), StoreError>;
    /// Sets (or clears) a key's limit overrides. `NotFound` for an unknown key.
    async fn set_key_limits(&self, key_id: &str, limits: Option<&Limits>)
    -> Result<(), StoreError>;
}

#[async_trait]
pub trait PoolStore: Send + Sync {
    /// Settings and tokens of one pool in one read. A pool with no settings record uses the
    /// default strategy.
    async fn load_pool(&self, pool: &str) -> Result<PoolView, StoreError>;
    /// Every token of every pool (operator views).
    async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;
    async fn list_pool_configs(&self) -> Result<Vec<PoolConfig>, StoreError>;
    async fn set_pool_config(&self, cfg: &PoolConfig) -> Result<(), StoreError>;
    /// Fails with `AlreadyExists` rather than overwrite.
    async fn put_token(&self, t: &TokenRecord) -> Result<(), StoreError>;
    /// Operator status change (enable / disable). Enabling clears cooldown and failures.
    async fn set_token_status(
        &self,
        pool: &str,
        token_id: &str,
        status: TokenStatus,
    ) -> Result<(), StoreError>;
    async fn delete_token(&self, pool: &str, token_id: &str) -> Result<(), StoreError>;
    /// Applies a health change only if the stored `version` still equals `expected_version`
    /// (another instance may have moved the token meanwhile). `Ok(false)` = not applied.
    async fn apply_change(
        &self,
        pool: &str,
        token_id: &str,
        expected_version: u64,
        change: &TokenChange,
    ) -> Result<bool, StoreError>;
    /// Adds one request and its tokens to the token's counters (one write, no read).
    async fn record_usage(
        &self,
        pool: &str,
        token_id: &str,
        usage: Usage,
        at: EpochMs,
    ) -> Result<(), StoreError>;
}

#[async_trait]
pub trait SecretStore: Send + Sync {
    /// The current value (stage AWSCURRENT on Secrets Manager).
    async fn get_secret(&self, secret_id: &str) -> Result<Secret, StoreError>;
    /// Creates the secret, or adds a new current version when it exists.
    async fn put_secret(&self, secret_id: &str, value: &Secret) -> Result<(), StoreError>;
    async fn delete_secret(&self, secret_id: &str) -> Result<(), StoreError>;
}

/// One subject's limit counters (a key: `key#<id>`, a tenant: `tenant#<id>`) and the version
/// they were stored under (0: nothing stored yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionedCounters {
    pub counters: Counters,
    pub version: u64,
}

/// Counters to store for one subject, if its stored version still equals `expected_version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterWrite {
    pub subject: String,
    pub expected_version: u64,
    pub counters: Counters,
}

/// What a conditional counter write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwapOutcome {
    /// Every write applied; each subject's version is now `expected_version + 1`.
    Applied,
    /// Nothing applied: another instance wrote first. The current state of the subjects the
    /// store could report (ideally all), so the caller can decide again without another read;
    /// a subject missing here must be read again.
    Conflict(Vec<(String, VersionedCounters)>),
}

/// One subject's settlement as a delta (see [`SettleDelta`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterDelta {
    pub subject: String,
    pub delta: SettleDelta,
}

/// One request's usage on the pool token that answered it (what
/// [`PoolStore::record_usage`] writes), carried by a settlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageWrite {
    pub pool: String,
    pub token_id: String,
    pub usage: Usage,
    pub at: EpochMs,
}

/// What [`LimitStore::apply_deltas`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaOutcome {
    /// Every delta (and the usage, when given) applied; each subject's version moved by one.
    Applied,
    /// Nothing was written: a subject is stored under other windows or not at all, the token
    /// is gone, or another transaction held an item. The caller settles the slow way.
    NotApplied,
}

/// Limit counters shared by every instance. The gateway reads a subject's counters (or uses
/// what its last write returned), decides with `limits::admit` / `limits::settle`, and swaps
/// them in conditionally: exact across instances with one write per decision when nobody
/// raced it.
#[async_trait]
pub trait LimitStore: Send + Sync {
    async fn load_counters(&self, subject: &str) -> Result<VersionedCounters, StoreError>;
    /// All writes or none, each conditional on its subject's version. `expires_at` lets the
    /// store drop counters nobody has touched for a while (DynamoDB TTL).
    async fn swap_counters(
        &self,
        writes: &[CounterWrite],
        expires_at: EpochMs,
    ) -> Result<SwapOutcome, StoreError>;
    /// Applies every settlement delta (each only while its subject is stored under the
    /// delta's windows; each subject's version + 1) and, when given and
    /// [`LimitStore::carries_usage`], the pool token's usage — all or none, in one write.
    /// `Err` means the outcome is unknown; applying the same deltas again is safe (each is
    /// conditional on its request's lease and removes it, so an applied one is not applied twice).
    async fn apply_deltas(
        &self,
        deltas: &[CounterDelta],
        usage: Option<&UsageWrite>,
        expires_at: EpochMs,
    ) -> Result<DeltaOutcome, StoreError>;
    /// Whether [`LimitStore::apply_deltas`] can write the pool token's usage too (it knows
    /// the pool store); when not, the caller records usage itself.
    fn carries_usage(&self) -> bool;
}

/// The model price table as stored, and the version it was stored under (≥ 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPrices {
    pub table: PriceTable,
    pub version: u64,
}

/// The model price table operators edit (`tollgate prices`). One table for the deployment,
/// replaced as a whole: what is stored is every price there is (seeded from the built-in
/// defaults by the first edit); nothing stored means the built-in table applies.
#[async_trait]
pub trait PriceStore: Send + Sync {
    /// `None`: no table has been stored yet.
    async fn load_prices(&self) -> Result<Option<StoredPrices>, StoreError>;
    /// Stores `table` if the stored version is still `expected_version` (0: nothing stored).
    /// `Ok(false)`: another writer stored first; nothing changed.
    async fn store_prices(
        &self,
        table: &PriceTable,
        expected_version: u64,
    ) -> Result<bool, StoreError>;
}

/// The OIDC issuers the operator trusts, by exact `iss` value.
#[async_trait]
pub trait IssuerStore: Send + Sync {
    /// `None`: no such trusted issuer.
    async fn get_issuer(&self, issuer: &str) -> Result<Option<IssuerRecord>, StoreError>;
    /// Creates or replaces the record for `rec.issuer` (an operator changing a policy).
    async fn put_issuer(&self, rec: &IssuerRecord) -> Result<(), StoreError>;
    async fn list_issuers(&self) -> Result<Vec<IssuerRecord>, StoreError>;
    /// Stops trusting `issuer`. `NotFound` when no record has that exact value.
    async fn delete_issuer(&self, issuer: &str) -> Result<(), StoreError>;
}

/// Fetches an issuer's published JSON by URL: its JSON Web Key Set, or its OpenID discovery
/// document (which names the key set). The raw document; the gateway parses, checks, caches
/// and rate-limits it; an error here makes JWT callers of that issuer fail closed.
#[async_trait]
pub trait JwksSource: Send + Sync {
    async fn fetch_jwks(&self, url: &str) -> Result<String, StoreError>;
}

/// Signed identity tokens for this proxy's own identity (STS `GetWebIdentityToken` on AWS; a
/// locally generated signing key in local runs and tests), for federated pool tokens.
#[async_trait]
pub trait IdentityTokenSource: Send + Sync {
    /// A fresh JWT whose `aud` is `audience`.
    async fn identity_token(&self, audience: &str) -> Result<Secret, StoreError>;
}

/// Exchanges an identity token at a provider's token endpoint for a short-lived access token.
#[async_trait]
pub trait TokenExchange: Send + Sync {
    async fn exchange(
        &self,
        exchange: &crate::federation::Exchange,
        identity_token: &Secret,
    ) -> Result<crate::federation::AccessGrant, crate::federation::ExchangeError>;
}

/// Decrypts a tenant-owned provider key (KMS envelope, encryption context = tenant).
#[async_trait]
pub trait Decrypter: Send + Sync {
    async fn decrypt(&self, ciphertext_b64: &str, tenant_id: &str) -> Result<Secret, StoreError>;
}

/// Encrypts a tenant-owned provider key for its pool record (KMS envelope under the
/// deployment's key, encryption context = tenant): the standard base64 ciphertext
/// [`Decrypter::decrypt`] takes back with the same tenant.
#[async_trait]
pub trait TenantEncrypter: Send + Sync {
    async fn encrypt(&self, plaintext: &Secret, tenant_id: &str) -> Result<String, StoreError>;
    /// The same value re-encrypted under the deployment's key and its current key material,
    /// the tenant context checked on the way out and kept on the way in; the plaintext never
    /// leaves KMS.
    async fn reencrypt(&self, ciphertext_b64: &str, tenant_id: &str) -> Result<String, StoreError>;
}

/// Replaces where a token's value lives (a tenant-owned key's new ciphertext).
#[async_trait]
pub trait TokenSecretSwap: Send + Sync {
    /// Stores `new` as the token's `secret` if it still is `expected`. `Ok(false)`: it changed
    /// meanwhile (nothing written). `NotFound` for an unknown token.
    async fn swap_secret(
        &self,
        pool: &str,
        token_id: &str,
        expected: &crate::records::SecretRef,
        new: &crate::records::SecretRef,
    ) -> Result<bool, StoreError>;
    /// Sets (or with `None` clears) the token's staged next value. `NotFound` for an unknown
    /// token.
    async fn set_staged(
        &self,
        pool: &str,
        token_id: &str,
        staged: Option<&crate::records::SecretRef>,
    ) -> Result<(), StoreError>;
}

/// Reads and writes an adapter made, for the benchmark's "AWS calls per warm request".
#[derive(Debug, Default)]
pub struct OpCounter {
    reads: AtomicU64,
    writes: AtomicU64,
}

impl OpCounter {
    pub fn read(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }
    pub fn write(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }
    /// (reads, writes) so far.
    pub fn snapshot(&self) -> (u64, u64) {
        (
            self.reads.load(Ordering::Relaxed),
            self.writes.load(Ordering::Relaxed),
        )
    }
}
