//! What every request shares, built once per process (per warm Lambda sandbox): settings, the
//! clock, the upstream HTTP client, the audit sink, and the three caches in front of the
//! stores — [`keys`] (key records and tenants), [`issuers`] (trusted OIDC issuers and their
//! JWK Sets), [`pools`] (pool views: select, observe, forget) and [`secrets`] (the pepper and
//! provider token values). Stages read from here;
//! nothing here knows about stages or the handler.

pub mod federated;
pub mod issuers;
pub mod keys;
pub mod limits;
pub mod pools;
pub mod prices;
pub mod secrets;

use crate::audit_sink::AuditSink;
use crate::config::GatewayConfig;
use crate::upstream::{BuildError, HttpClient};
use http::Uri;
pub use issuers::{HttpJwks, IdentityStores};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tollgate_core::clock::{Clock, EpochMs};
use tollgate_core::ports::{
    Decrypter, IdentityTokenSource, KeyStore, LimitStore, PoolStore, PriceStore, Secret,
    SecretStore, TenantStore,
};
use tollgate_core::provider::{Route, upstream_url};
use tollgate_core::records::{SecretRef, TokenRecord};

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

impl Stores {
    /// One store serving every port (the in-memory store of `TOLLGATE_STORE=memory` and of
    /// tests): no decrypter, limits and prices from the same store.
    pub fn single<S>(store: Arc<S>) -> Self
    where
        S: TenantStore + KeyStore + PoolStore + SecretStore + LimitStore + PriceStore + 'static,
    {
        Self {
            tenants: store.clone(),
            keys: store.clone(),
            pools: store.clone(),
            secrets: store.clone(),
            decrypter: None,
            limits: Some(store.clone()),
            prices: Some(store),
        }
    }
}

pub struct Gateway {
    pub(crate) cfg: GatewayConfig,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) http: HttpClient,
    pub(crate) audit: Arc<dyn AuditSink>,
    pub(crate) keys: keys::KeyDirectory,
    pub(crate) issuers: issuers::IssuerDirectory,
    pub(crate) pools: pools::PoolCache,
    pub(crate) secrets: secrets::SecretCache,
    pub(crate) federated: federated::FederatedTokens,
    pub(crate) limits: Option<Arc<limits::LimitCounters>>,
    pub(crate) prices: prices::PriceBook,
    /// Upstream URLs already parsed, by token base URL, one per route asked for. Parsing one
    /// costs more than the rest of the upstream call's set-up; keyed by the base URL, a
    /// cached one is found without joining the URL first.
    upstream_urls: Mutex<HashMap<String, Vec<(Route, Uri)>>>,
}

/// Most base URLs kept (each with at most one URL per route); the map starts over when full.
const MAX_UPSTREAM_URLS: usize = 1024;

impl Gateway {
    /// A gateway that trusts no OIDC issuer: JWT callers are refused (unknown issuer).
    pub fn new(
        cfg: GatewayConfig,
        stores: Stores,
        clock: Arc<dyn Clock>,
        audit: Arc<dyn AuditSink>,
    ) -> Result<Arc<Self>, BuildError> {
        Self::with_identity(cfg, stores, None, clock, audit)
    }

    /// A gateway that also accepts JWTs from the issuers in `identity`'s store.
    pub fn with_identity(
        cfg: GatewayConfig,
        stores: Stores,
        identity: Option<IdentityStores>,
        clock: Arc<dyn Clock>,
        audit: Arc<dyn AuditSink>,
    ) -> Result<Arc<Self>, BuildError> {
        Self::with_federation(cfg, stores, identity, None, clock, audit)
    }

    /// A gateway that can also serve federated pool tokens, with identity tokens from
    /// `federation` (`None`: federated tokens are skipped as unavailable).
    pub fn with_federation(
        cfg: GatewayConfig,
        stores: Stores,
        identity: Option<IdentityStores>,
        federation: Option<Arc<dyn IdentityTokenSource>>,
        clock: Arc<dyn Clock>,
        audit: Arc<dyn AuditSink>,
    ) -> Result<Arc<Self>, BuildError> {
        let http = HttpClient::new(Duration::from_millis(cfg.connect_timeout_ms))?;
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
            federated: federated::FederatedTokens::new(
                federation,
                Arc::new(federated::HttpTokenExchange::new(
                    http.clone(),
                    Duration::from_millis(cfg.upstream_timeout_ms),
                )),
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
            upstream_urls: Mutex::new(HashMap::new()),
            cfg,
            clock,
            http,
            audit,
        }))
    }

    /// The credential sent upstream for `t`: its stored value (cached), or for a federated
    /// token a short-lived access token (exchanged, cached in memory only). `stale`: the
    /// value the provider just refused with a 401 — re-read / re-exchange once.
    pub(crate) async fn upstream_credential(
        &self,
        t: &TokenRecord,
        stale: Option<&Secret>,
        calls: &mut crate::context::StoreCalls,
    ) -> Result<Secret, federated::FederationError> {
        match &t.secret {
            SecretRef::Federated { audience, exchange } => {
                let key = format!("{}/{}", t.pool, t.token_id);
                self.federated
                    .access_token(&key, audience, exchange, stale, calls)
                    .await
            }
            _ => self
                .secrets
                .token_value(t, stale.is_some(), calls)
                .await
                .map_err(|e| federated::FederationError::Unavailable(e.to_string())),
        }
    }

    pub(crate) fn now(&self) -> EpochMs {
        self.clock.now_ms()
    }

    /// The request URI of `route` at `base_url` ([`upstream_url`]), from the cache when it
    /// was parsed before; `None` when it is not an absolute http(s) URL.
    pub(crate) fn upstream_uri(&self, base_url: &str, route: Route) -> Option<Uri> {
        let cached =
            |v: &Vec<(Route, Uri)>| v.iter().find(|(r, _)| *r == route).map(|(_, u)| u.clone());
        if let Ok(m) = self.upstream_urls.lock()
            && let Some(u) = m.get(base_url).and_then(cached)
        {
            return Some(u);
        }
        let parsed = crate::upstream::absolute_uri(&upstream_url(base_url, route))?;
        if let Ok(mut m) = self.upstream_urls.lock() {
            if m.len() >= MAX_UPSTREAM_URLS && !m.contains_key(base_url) {
                m.clear();
            }
            let routes = m.entry(base_url.to_owned()).or_default();
            if !routes.iter().any(|(r, _)| *r == route) {
                routes.push((route, parsed.clone()));
            }
        }
        Some(parsed)
    }
}
