//! Access tokens of federated pool tokens, in memory only: obtained by exchanging an identity
//! token (`IdentityTokenSource`) at the provider (`TokenExchange`), cached until shortly
//! before `expires_in`, refreshed single-flight. Never stored, never logged: a value leaves
//! this module only to the request that sends it upstream (and that request's scrubber).
//!
//! Per token: while the access token is fresh every request reads it under a short lock.
//! Once it is due for refresh, one request (the one that takes the token's refresh lock)
//! exchanges while the others keep using the still-valid value; only when it is no longer
//! usable (or there is none yet) do requests wait for that one exchange. So concurrent
//! requests cause one exchange per token lifetime, and a refresh under load fails nothing.

use crate::context::StoreCalls;
use crate::upstream::{CallError, FetchError, HttpClient, ReqBody};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tollgate_core::clock::Clock;
use tollgate_core::federation::{AccessGrant, Exchange, ExchangeError, Lifetime, parse_response};
use tollgate_core::ports::{IdentityTokenSource, Secret, TokenExchange};

/// Why a federated token has no access token for this request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FederationError {
    /// The provider refused the exchange: the token is to be marked invalid.
    #[error(transparent)]
    Rejected(ExchangeError),
    /// Identity source or token endpoint unavailable, or no identity source configured.
    #[error("{0}")]
    Unavailable(String),
}

#[derive(Clone)]
struct Cached {
    value: Secret,
    life: Lifetime,
}

#[derive(Default)]
struct Slot {
    current: Mutex<Option<Cached>>,
    /// Held by the one request exchanging for this token.
    refresh: tokio::sync::Mutex<()>,
}

pub struct FederatedTokens {
    identity: Option<Arc<dyn IdentityTokenSource>>,
    exchange: Arc<dyn TokenExchange>,
    clock: Arc<dyn Clock>,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

/// Most tokens tracked; the map starts over when full (values are re-obtained on demand).
const MAX_SLOTS: usize = 10_000;

impl FederatedTokens {
    pub fn new(
        identity: Option<Arc<dyn IdentityTokenSource>>,
        exchange: Arc<dyn TokenExchange>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            identity,
            exchange,
            clock,
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, key: &str) -> Arc<Slot> {
        let mut m = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = m.get(key) {
            return s.clone();
        }
        if m.len() >= MAX_SLOTS {
            m.clear();
        }
        let s = Arc::new(Slot::default());
        m.insert(key.to_owned(), s.clone());
        s
    }

    /// The access token for the federated token `key` (pool/token id). `stale`: a value the
    /// provider just refused (401): a different cached value is returned if one appeared
    /// meanwhile, else one new exchange is made.
    pub async fn access_token(
        &self,
        key: &str,
        audience: &str,
        exchange: &Exchange,
        stale: Option<&Secret>,
        calls: &mut StoreCalls,
    ) -> Result<Secret, FederationError> {
        let slot = self.slot(key);
        let current = || {
            slot.current
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        };
        let now = self.clock.now_ms();
        let good = |c: &Cached| stale != Some(&c.value);
        if let Some(c) = current().filter(good) {
            if c.life.fresh(now) {
                return Ok(c.value);
            }
            if c.life.usable(now) {
                // Due for refresh: the request that gets the lock refreshes; the others
                // keep using the value, which is still valid.
                match slot.refresh.try_lock() {
                    Ok(guard) => {
                        let refreshed = self.refresh(&slot, audience, exchange, calls).await;
                        drop(guard);
                        return match refreshed {
                            // Could not refresh (yet): the current value still serves.
                            Err(FederationError::Unavailable(_)) => Ok(c.value),
                            other => other,
                        };
                    }
                    Err(_) => return Ok(c.value),
                }
            }
        }
        // Nothing usable: wait for the one exchange (made by whoever holds the lock).
        let _guard = slot.refresh.lock().await;
        if let Some(c) = current().filter(good)
            && c.life.fresh(self.clock.now_ms())
        {
            return Ok(c.value);
        }
        self.refresh(&slot, audience, exchange, calls).await
    }

    /// One exchange; the caller holds the slot's refresh lock.
    async fn refresh(
        &self,
        slot: &Slot,
        audience: &str,
        exchange: &Exchange,
        calls: &mut StoreCalls,
    ) -> Result<Secret, FederationError> {
        let Some(identity) = &self.identity else {
            return Err(FederationError::Unavailable(
                "no identity token source configured (TOLLGATE_FEDERATION)".into(),
            ));
        };
        calls.reads += 1;
        let jwt = identity
            .identity_token(audience)
            .await
            .map_err(|e| FederationError::Unavailable(format!("identity token: {e}")))?;
        calls.reads += 1;
        let grant = match self.exchange.exchange(exchange, &jwt).await {
            Ok(g) => g,
            Err(e @ ExchangeError::Rejected { .. }) => {
                // A refused federation must not keep serving an old value either.
                *slot.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
                return Err(FederationError::Rejected(e));
            }
            Err(ExchangeError::Unavailable(m)) => return Err(FederationError::Unavailable(m)),
        };
        drop(jwt);
        let cached = Cached {
            value: grant.access_token,
            life: Lifetime::of(self.clock.now_ms(), grant.lifetime_ms),
        };
        let value = cached.value.clone();
        *slot.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(cached);
        Ok(value)
    }

    /// Every access token held now (for the response scrubber).
    pub fn held(&self) -> Vec<Secret> {
        let m = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        m.values()
            .filter_map(|s| {
                s.current
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .map(|c| c.value.clone())
            })
            .collect()
    }
}

/// The exchange over HTTPS (loopback HTTP allowed for the local mock): one POST of the JSON
/// body, the answer read whole (at most 64 KiB). The request and response bodies are never
/// logged.
pub struct HttpTokenExchange {
    http: HttpClient,
    timeout: Duration,
}

impl HttpTokenExchange {
    pub fn new(http: HttpClient, timeout: Duration) -> Self {
        Self { http, timeout }
    }
}

const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

/// The token endpoint as a request URI when it is HTTPS, or plain HTTP to loopback.
fn allowed_url(url: &str) -> Option<http::Uri> {
    let u = crate::upstream::absolute_uri(url)?;
    let loopback = u
        .host()
        .is_some_and(|h| h.eq_ignore_ascii_case("localhost") || h == "127.0.0.1" || h == "[::1]");
    (u.scheme_str() == Some("https") || loopback).then_some(u)
}

#[async_trait]
impl TokenExchange for HttpTokenExchange {
    async fn exchange(
        &self,
        exchange: &Exchange,
        identity_token: &Secret,
    ) -> Result<AccessGrant, ExchangeError> {
        let Some(uri) = allowed_url(exchange.token_url()) else {
            // An identity token must not travel in clear text: a configuration error.
            return Err(ExchangeError::Rejected {
                status: 0,
                code: "token_url_not_https".into(),
            });
        };
        let mut req = http::Request::post(uri)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json");
        for (k, v) in exchange.request_headers() {
            req = req.header(*k, *v);
        }
        let req = req
            .body(ReqBody::from(
                exchange.request_body(identity_token).to_string(),
            ))
            .map_err(|_| ExchangeError::Unavailable("token request not built".into()))?;
        let (status, body) = self
            .http
            .fetch(req, MAX_TOKEN_RESPONSE, self.timeout)
            .await
            .map_err(|e| {
                ExchangeError::Unavailable(match e {
                    FetchError::Call(CallError::TimedOut) => {
                        "token endpoint did not answer in time".into()
                    }
                    FetchError::Call(e) => format!("token endpoint unreachable ({e})"),
                    FetchError::Body => "token endpoint body not read".into(),
                    FetchError::TooLarge => "token endpoint answer too large".into(),
                })
            })?;
        parse_response(status.as_u16(), &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use tollgate_core::clock::FakeClock;
    use tollgate_core::ports::StoreError;

    struct FakeIdentity;
    #[async_trait]
    impl IdentityTokenSource for FakeIdentity {
        async fn identity_token(&self, audience: &str) -> Result<Secret, StoreError> {
            Ok(Secret::new(format!("jwt-for-{audience}")))
        }
    }

    /// Counts exchanges; each takes `delay` and grants `lifetime_ms`, or refuses.
    struct FakeExchange {
        n: AtomicU32,
        delay: Duration,
        lifetime_ms: u64,
        answer: Mutex<Option<ExchangeError>>,
    }
    impl FakeExchange {
        fn new(lifetime_ms: u64) -> Arc<Self> {
            Arc::new(Self {
                n: AtomicU32::new(0),
                delay: Duration::from_millis(30),
                lifetime_ms,
                answer: Mutex::new(None),
            })
        }
        fn count(&self) -> u32 {
            self.n.load(Ordering::SeqCst)
        }
        fn fail_with(&self, e: Option<ExchangeError>) {
            *self.answer.lock().unwrap() = e;
        }
    }
    #[async_trait]
    impl TokenExchange for FakeExchange {
        async fn exchange(
            &self,
            _e: &Exchange,
            jwt: &Secret,
        ) -> Result<AccessGrant, ExchangeError> {
            assert_eq!(jwt.expose(), "jwt-for-aud-1");
            let n = self.n.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(self.delay).await;
            if let Some(e) = self.answer.lock().unwrap().clone() {
                return Err(e);
            }
            Ok(AccessGrant {
                access_token: Secret::new(format!("at-{n}")),
                lifetime_ms: self.lifetime_ms,
            })
        }
    }

    fn ex() -> Exchange {
        Exchange::OpenaiTokenExchange {
            token_url: "https://auth.example.test/oauth/token".into(),
            identity_provider_id: "idp".into(),
            service_account_id: "svc".into(),
        }
    }

    fn setup(lifetime_ms: u64) -> (Arc<FederatedTokens>, Arc<FakeExchange>, Arc<FakeClock>) {
        let x = FakeExchange::new(lifetime_ms);
        let clock = Arc::new(FakeClock::new(1_000_000));
        let f = Arc::new(FederatedTokens::new(
            Some(Arc::new(FakeIdentity)),
            x.clone(),
            clock.clone(),
        ));
        (f, x, clock)
    }

    async fn get(f: &FederatedTokens, stale: Option<&Secret>) -> Result<Secret, FederationError> {
        f.access_token("p/t", "aud-1", &ex(), stale, &mut StoreCalls::default())
            .await
    }

    async fn many(f: &Arc<FederatedTokens>, n: usize) -> Vec<Result<Secret, FederationError>> {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let f = f.clone();
                tokio::spawn(async move { get(&f, None).await })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_exchange() {
        let (f, x, _) = setup(600_000);
        let got = many(&f, 50).await;
        assert_eq!(x.count(), 1);
        assert!(got.iter().all(|r| r.as_ref().unwrap().expose() == "at-1"));
        // Fresh: served from the cache.
        assert_eq!(get(&f, None).await.unwrap().expose(), "at-1");
        assert_eq!(x.count(), 1);
    }

    #[tokio::test]
    async fn a_due_token_is_refreshed_once_while_the_others_keep_the_old_value() {
        let (f, x, clock) = setup(600_000);
        get(&f, None).await.unwrap();
        // Past refresh_at (lifetime − 60 s), before use_until.
        clock.advance_ms(600_000 - 30_000);
        let got = many(&f, 40).await;
        assert_eq!(x.count(), 2, "one refresh for 40 requests");
        assert!(got.iter().all(|r| r.is_ok()), "no request fails");
        assert!(got.iter().any(|r| r.as_ref().unwrap().expose() == "at-1"));
        assert_eq!(get(&f, None).await.unwrap().expose(), "at-2");
    }

    #[tokio::test]
    async fn an_expired_token_is_never_served() {
        let (f, x, clock) = setup(600_000);
        get(&f, None).await.unwrap();
        clock.advance_ms(600_000);
        let got = many(&f, 10).await;
        assert_eq!(x.count(), 2);
        assert!(got.iter().all(|r| r.as_ref().unwrap().expose() == "at-2"));
    }

    #[tokio::test]
    async fn a_rejected_exchange_is_reported_and_nothing_is_cached() {
        let (f, x, clock) = setup(600_000);
        get(&f, None).await.unwrap();
        x.fail_with(Some(ExchangeError::Rejected {
            status: 401,
            code: "invalid_grant".into(),
        }));
        clock.advance_ms(600_000 - 30_000);
        assert!(matches!(
            get(&f, None).await,
            Err(FederationError::Rejected(_))
        ));
        // The old value is dropped: the next request exchanges again (and is refused).
        assert!(matches!(
            get(&f, None).await,
            Err(FederationError::Rejected(_))
        ));
        assert_eq!(x.count(), 3);
    }

    #[tokio::test]
    async fn an_unavailable_endpoint_during_refresh_keeps_the_valid_value() {
        let (f, x, clock) = setup(600_000);
        get(&f, None).await.unwrap();
        x.fail_with(Some(ExchangeError::Unavailable("503".into())));
        clock.advance_ms(600_000 - 30_000);
        assert_eq!(get(&f, None).await.unwrap().expose(), "at-1");
        clock.advance_ms(30_000);
        assert!(matches!(
            get(&f, None).await,
            Err(FederationError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn a_refused_value_is_replaced_by_one_new_exchange() {
        let (f, x, _) = setup(600_000);
        let v1 = get(&f, None).await.unwrap();
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let f = f.clone();
                let v1 = v1.clone();
                tokio::spawn(async move { get(&f, Some(&v1)).await })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().expose(), "at-2");
        }
        assert_eq!(x.count(), 2);
    }

    #[tokio::test]
    async fn without_an_identity_source_federated_tokens_are_unavailable() {
        let x = FakeExchange::new(1_000);
        let f = FederatedTokens::new(None, x.clone(), Arc::new(FakeClock::new(0)));
        assert!(matches!(
            get(&f, None).await,
            Err(FederationError::Unavailable(_))
        ));
        assert_eq!(x.count(), 0);
    }

    #[test]
    fn the_exchange_refuses_clear_text_except_loopback() {
        assert!(allowed_url("https://auth.openai.com/oauth/token").is_some());
        assert!(allowed_url("http://127.0.0.1:9/v1/oauth/token").is_some());
        assert!(allowed_url("http://localhost:9/v1/oauth/token").is_some());
        assert!(allowed_url("http://[::1]:9/v1/oauth/token").is_some());
        assert!(allowed_url("http://auth.example.test/oauth/token").is_none());
        assert!(allowed_url("ftp://x/y").is_none());
    }
}
