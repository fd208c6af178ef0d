//! What every request shares, built once per process (per warm Lambda sandbox): settings, the
//! clock, the upstream HTTP client, the audit sink, and the three caches in front of the
//! stores — [`keys`] (key records and tenants), [`issuers`] (trusted OIDC issuers and their
//! JWK Sets), [`pools`] (pool views: select, observe, forget) and [`secrets`] (the pepper and
//! provider token values). Stages read from here;
//! nothing here knows about stages or the handler.

pub mod issuers;
pub mod keys;
pub mod limits;
pub mod pools;
pub mod prices;
pub mod secrets;

use crate::audit_sink::AuditSink;
use crate::config::GatewayConfig;
pub use issuers::{HttpJwks, IdentityStores};
use std::sync::Arc;
use std::time::Duration;
use tollgate_core::clock::{Clock, EpochMs};
use tollgate_core::ports::{
    Decrypter, KeyStore, LimitStore, PoolStore, PriceStore, SecretStore, TenantStore,
};

pub struct Stores {
    pub tenants: Arc<dyn TenantStore>,
    pub keys: Arc<dyn KeyStore>,
    pub pools: Arc<dyn PoolStore>,
    pub secrets: Arc<dyn SecretStore>,
    pub decrypter: Option<Arc<dyn Decrypter>>,
    /// Limit counters. `None`: no store for them — a request that has limits is refused
    /// (503, fail closed) rather than let through unlimited.
    pub limits: Option<Arc<dyn LimitStore>>,
    /// The model price table. `None`: the built-in prices, and a request with a spend budget
    /// is refused (503, fail closed) since its cost cannot be checked against the operators'
    /// table.
    pub prices: Option<Arc<dyn PriceStore>>,
}

pub struct Gateway {
    pub(crate) cfg: GatewayConfig,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) http: reqwest::Client,
    pub(crate) audit: Arc<dyn AuditSink>,
    pub(crate) keys: keys::KeyDirectory,
    pub(crate) issuers: issuers::IssuerDirectory,
    pub(crate) pools: pools::PoolCache,
    pub(crate) secrets: secrets::SecretCache,
    pub(crate) limits: Option<Arc<limits::LimitCounters>>,
    pub(crate) prices: prices::PriceBook,
}

impl Gateway {
    /// A gateway that trusts no OIDC issuer: JWT callers are refused (unknown issuer).
    pub fn new(
        cfg: GatewayConfig,
        stores: Stores,
        clock: Arc<dyn Clock>,
        audit: Arc<dyn AuditSink>,
    ) -> Result<Arc<Self>, reqwest::Error> {
        Self::with_identity(cfg, stores, None, clock, audit)
    }

    /// A gateway that also accepts JWTs from the issuers in `identity`'s store.
    pub fn with_identity(
        cfg: GatewayConfig,
        stores: Stores,
        identity: Option<IdentityStores>,
        clock: Arc<dyn Clock>,
        audit: Arc<dyn AuditSink>,
    ) -> Result<Arc<Self>, reqwest::Error> {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_millis(cfg.connect_timeout_ms))
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tollgate/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Arc::new(Self {
            keys: keys::KeyDirectory::new(
                stores.keys,
                stores.tenants,
                cfg.key_cache_ttl_ms,
                clock.clone(),
            ),
            issuers: issuers::IssuerDirectory::new(
                identity,
                cfg.key_cache_ttl_ms,
                cfg.jwks_cache_ttl_ms,
                cfg.jwks_refresh_min_ms,
                clock.clone(),
            ),
            pools: pools::PoolCache::new(stores.pools, cfg.pool_cache_ttl_ms, clock.clone()),
            secrets: secrets::SecretCache::new(
                stores.secrets,
                stores.decrypter,
                cfg.pepper_secret_id.clone(),
                cfg.secret_cache_ttl_ms,
                clock.clone(),
            ),
            limits: stores.limits.map(|s| {
                Arc::new(limits::LimitCounters::new(
                    s,
                    clock.clone(),
                    cfg.limit_lease_ms,
                ))
            }),
            prices: prices::PriceBook::new(stores.prices, cfg.key_cache_ttl_ms, clock.clone()),
            cfg,
            clock,
            http,
            audit,
        }))
    }

    pub(crate) fn now(&self) -> EpochMs {
        self.clock.now_ms()
    }
}
