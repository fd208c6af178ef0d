//! The gateway value every request shares: stores, caches, the upstream HTTP client, the
//! clock and the audit sink. Built once per process (per warm Lambda sandbox).

use crate::audit_sink::AuditSink;
use crate::config::GatewayConfig;
use crate::respond::{Denial, error_response};
use crate::{authenticate, forward, inspect, request, settle};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use http::{HeaderValue, Request, Response};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tollgate_core::audit::{AuditRecord, Decision};
use tollgate_core::auth::Peppers;
use tollgate_core::clock::{Clock, EpochMs};
use tollgate_core::ports::{
    Decrypter, KeyStore, PoolStore, Secret, SecretStore, StoreError, TenantStore,
};
use tollgate_core::provider::Route;
use tollgate_core::records::{ClientKeyRecord, PoolView, SecretRef, Tenant, TokenRecord};
use tracing::Instrument;

/// The caller's address as the platform saw it (API Gateway's request context, or the TCP
/// peer in HTTP mode). Never taken from a header the caller controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceIp(pub Option<IpAddr>);

/// The platform's request id (Lambda's), when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

pub struct Stores {
    pub tenants: Arc<dyn TenantStore>,
    pub keys: Arc<dyn KeyStore>,
    pub pools: Arc<dyn PoolStore>,
    pub secrets: Arc<dyn SecretStore>,
    pub decrypter: Option<Arc<dyn Decrypter>>,
}

/// A key lookup result as cached: the record and its tenant, or a miss.
#[derive(Debug, Clone)]
pub(crate) struct KeyEntry {
    pub rec: Option<ClientKeyRecord>,
    pub tenant: Option<Tenant>,
    pub fetched_at: EpochMs,
}

struct Timed<T> {
    value: T,
    fetched_at: EpochMs,
}

pub struct Gateway {
    pub(crate) cfg: GatewayConfig,
    pub(crate) stores: Stores,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) http: reqwest::Client,
    pub(crate) audit: Arc<dyn AuditSink>,
    key_cache: moka::sync::Cache<String, Arc<KeyEntry>>,
    peppers: Mutex<Option<Timed<Arc<Peppers>>>>,
    pools: Mutex<HashMap<String, Timed<PoolView>>>,
    token_values: moka::sync::Cache<String, Arc<(Secret, EpochMs)>>,
    rr: AtomicU64,
}

/// Per-request bookkeeping carried through the stages.
pub(crate) struct Ctx {
    pub audit: AuditRecord,
    pub started: Instant,
    pub reads: u32,
    pub writes: u32,
}

impl Default for Ctx {
    fn default() -> Self {
        Self {
            audit: AuditRecord::new(String::new(), 0),
            started: Instant::now(),
            reads: 0,
            writes: 0,
        }
    }
}

impl Gateway {
    pub fn new(
        cfg: GatewayConfig,
        stores: Stores,
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
            key_cache: moka::sync::Cache::new(100_000),
            token_values: moka::sync::Cache::new(10_000),
            peppers: Mutex::new(None),
            pools: Mutex::new(HashMap::new()),
            rr: AtomicU64::new(0),
            cfg,
            stores,
            clock,
            http,
            audit,
        }))
    }

    pub(crate) fn now(&self) -> EpochMs {
        self.clock.now_ms()
    }

    fn fresh(&self, fetched_at: EpochMs, ttl: u64) -> bool {
        ttl > 0 && self.now().saturating_sub(fetched_at) < ttl
    }

    /// Key record and tenant by key id: cache first, then two store reads.
    pub(crate) async fn key_entry(
        &self,
        key_id: &str,
        ctx: &mut Ctx,
    ) -> Result<Arc<KeyEntry>, StoreError> {
        if let Some(e) = self.key_cache.get(key_id)
            && self.fresh(e.fetched_at, self.cfg.key_cache_ttl_ms)
        {
            return Ok(e);
        }
        ctx.reads += 1;
        let rec = self.stores.keys.get_key(key_id).await?;
        let tenant = match &rec {
            Some(r) => {
                ctx.reads += 1;
                self.stores.tenants.get_tenant(&r.tenant_id).await?
            }
            None => None,
        };
        let entry = Arc::new(KeyEntry {
            rec,
            tenant,
            fetched_at: self.now(),
        });
        if self.cfg.key_cache_ttl_ms > 0 {
            self.key_cache.insert(key_id.to_owned(), entry.clone());
        }
        Ok(entry)
    }

    /// The pepper set, cached; `force` re-reads it (a key under a newer version appeared).
    pub(crate) async fn peppers(
        &self,
        force: bool,
        ctx: &mut Ctx,
    ) -> Result<Arc<Peppers>, StoreError> {
        if !force
            && let Ok(g) = self.peppers.lock()
            && let Some(t) = g.as_ref()
            && self.fresh(t.fetched_at, self.cfg.secret_cache_ttl_ms.max(1))
        {
            return Ok(t.value.clone());
        }
        ctx.reads += 1;
        let raw = self
            .stores
            .secrets
            .get_secret(&self.cfg.pepper_secret_id)
            .await?;
        let p =
            Arc::new(Peppers::parse(raw.expose()).map_err(|e| StoreError::Corrupt(e.to_string()))?);
        if let Ok(mut g) = self.peppers.lock() {
            *g = Some(Timed {
                value: p.clone(),
                fetched_at: self.now(),
            });
        }
        Ok(p)
    }

    /// Chooses a token for `pool`, skipping `exclude`. Reads the pool when the cached view is
    /// older than its TTL.
    pub(crate) async fn choose_token(
        &self,
        pool: &str,
        exclude: &[&str],
        ctx: &mut Ctx,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let fresh = self.pools.lock().is_ok_and(|g| {
            g.get(pool)
                .is_some_and(|t| self.fresh(t.fetched_at, self.cfg.pool_cache_ttl_ms))
        });
        if !fresh {
            ctx.reads += 1;
            let view = self.stores.pools.load_pool(pool).await?;
            if let Ok(mut g) = self.pools.lock() {
                g.insert(
                    pool.to_owned(),
                    Timed {
                        value: view,
                        fetched_at: self.now(),
                    },
                );
            }
        }
        let now = self.now();
        let rr = self.rr.fetch_add(1, Ordering::Relaxed);
        let g = self
            .pools
            .lock()
            .map_err(|_| StoreError::Unavailable("pool cache poisoned".into()))?;
        Ok(g.get(pool).and_then(|t| {
            tollgate_core::pool::select(&t.value, now, exclude, rr, &mut rand::thread_rng())
                .cloned()
        }))
    }

    /// Applies this instance's own observation to its cached view at once.
    pub(crate) fn update_cached_token(
        &self,
        pool: &str,
        token_id: &str,
        f: impl FnOnce(&mut TokenRecord),
    ) {
        if let Ok(mut g) = self.pools.lock()
            && let Some(t) = g
                .get_mut(pool)
                .and_then(|v| v.value.tokens.iter_mut().find(|t| t.token_id == token_id))
        {
            f(t);
        }
    }

    /// This instance's latest view of one token.
    pub(crate) fn cached_token(&self, pool: &str, token_id: &str) -> Option<TokenRecord> {
        let g = self.pools.lock().ok()?;
        g.get(pool)?
            .value
            .tokens
            .iter()
            .find(|t| t.token_id == token_id)
            .cloned()
    }

    /// Drops a cached pool view so the next request re-reads it (another instance won a race).
    pub(crate) fn forget_pool(&self, pool: &str) {
        if let Ok(mut g) = self.pools.lock() {
            g.remove(pool);
        }
    }

    /// A token's value, cached for the secret TTL. `force` re-reads (after a 401, in case the
    /// secret was rotated since it was cached).
    pub(crate) async fn token_value(
        &self,
        t: &TokenRecord,
        force: bool,
        ctx: &mut Ctx,
    ) -> Result<Secret, StoreError> {
        if !force
            && let Some(v) = self.token_values.get(&t.token_id)
            && self.fresh(v.1, self.cfg.secret_cache_ttl_ms)
        {
            return Ok(v.0.clone());
        }
        ctx.reads += 1;
        let value = match &t.secret {
            SecretRef::SecretsManager { secret_id } => {
                self.stores.secrets.get_secret(secret_id).await?
            }
            SecretRef::KmsBlob {
                ciphertext_b64,
                tenant_id,
            } => match &self.stores.decrypter {
                Some(d) => d.decrypt(ciphertext_b64, tenant_id).await?,
                None => {
                    return Err(StoreError::Unavailable(
                        "no KMS decrypter configured".into(),
                    ));
                }
            },
        };
        self.token_values
            .insert(t.token_id.clone(), Arc::new((value.clone(), self.now())));
        Ok(value)
    }
}

/// Every path goes through one handler: unknown routes get a provider-shaped 404 too.
pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new().fallback(handle).with_state(gw)
}

async fn handle(State(gw): State<Arc<Gateway>>, req: Request<Body>) -> Response<Body> {
    let started = Instant::now();
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let source_ip = req.extensions().get::<SourceIp>().and_then(|s| s.0);
    let mut audit = AuditRecord::new(request_id.clone(), gw.now());
    audit.source_ip = source_ip.map(|ip| ip.to_string());
    let mut ctx = Ctx {
        audit,
        started,
        reads: 0,
        writes: 0,
    };
    // Spans carry ids only: request, tenant, key id. Never a key or a token.
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        tenant = tracing::field::Empty,
        key_id = tracing::field::Empty
    );
    let kind = Route::kind_for_path(req.uri().path());

    let result = async {
        let route = request::route(&req)?;
        ctx.audit.route = Some(route.name().into());
        let principal = authenticate::authenticate(&gw, req.headers(), source_ip, &mut ctx).await?;
        span.record("tenant", principal.rec.tenant_id.as_str());
        span.record("key_id", principal.rec.key_id.as_str());
        let mut parsed = request::read(&gw, route, req, &principal, &mut ctx).await?;
        let policy = inspect::inspect(route, &principal, &mut parsed, &mut ctx)?;
        let filter = inspect::response_policy(&policy);
        forward::forward(&gw, route, parsed, filter, &mut ctx).await
    }
    .instrument(span.clone())
    .await;

    // The audit and refusal logs below belong to the request's span too.
    let _entered = span.enter();
    let mut resp = match result {
        Ok(forward::Forwarded::Done(resp)) => {
            settle::finish(&gw, &mut ctx, resp.status().as_u16(), Decision::Allow, "ok");
            resp
        }
        Ok(forward::Forwarded::Streaming(resp)) => resp,
        Err(denial) => {
            let resp = error_response(kind, &denial);
            ctx.audit.error_class = Some(denial.class().code().into());
            let decision = match denial {
                Denial::Store(_) | Denial::NoUpstream(_) | Denial::UpstreamTimeout => {
                    Decision::Error
                }
                _ => Decision::Deny,
            };
            settle::finish(
                &gw,
                &mut ctx,
                resp.status().as_u16(),
                decision,
                &denial.reason(),
            );
            resp
        }
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-tollgate-request-id", v);
    }
    resp
}
