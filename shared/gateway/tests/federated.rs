//! Federated pool tokens through the whole request path: in-memory stores, the bundled mock
//! provider on loopback as both API and token endpoint, and the local identity signer with a
//! P-384 key generated for each test (the mock is told its public half). Real time: the mock
//! expires access tokens by the wall clock.
// Test code: a failed unwrap is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use axum::body::Body;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::Request;
use rand::{SeedableRng, rngs::StdRng};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate_core::auth::Peppers;
use tollgate_core::clock::{Clock, SystemClock};
use tollgate_core::federation::{Exchange, anthropic_token_url};
use tollgate_core::key::{ClientKey, KeyEnv};
use tollgate_core::ports::{KeyStore, PoolStore, Secret, SecretStore, TenantStore};
use tollgate_core::records::{
    ClientKeyRecord, PoolConfig, ProviderKind, SecretRef, Strategy, Tenant, TokenRecord,
    TokenStatus,
};
use tollgate_gateway::{Gateway, GatewayConfig, MemoryAuditSink, Stores, router};
use tollgate_memory::MemoryStore;
use tollgate_memory::identity::LocalIdentitySigner;
use tower::ServiceExt;

const PEPPER: &str = r#"{"current":"1","v1":"unit-test-pepper-0123456789abcdefghijklmnop"}"#;
const AUDIENCE: &str = "https://api.openai.example.test/v1";
const ISSUER: &str = "https://identity.tollgate.test";

struct H {
    app: axum::Router,
    store: Arc<MemoryStore>,
    key: String,
    mock: String,
    http: reqwest::Client,
}

async fn start_mock() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(tollgate_mock_provider::serve(l, Default::default()));
    format!("http://{addr}")
}

fn openai_federated(pool: &str, id: &str, mock: &str, account: &str, prio: u32) -> TokenRecord {
    let mut t = TokenRecord::new(
        id,
        pool,
        ProviderKind::Openai,
        format!("{mock}/v1"),
        SecretRef::Federated {
            audience: AUDIENCE.into(),
            exchange: Exchange::OpenaiTokenExchange {
                token_url: format!("{mock}/oauth/token"),
                identity_provider_id: "idp_test".into(),
                service_account_id: account.into(),
            },
        },
        "ops@example.test",
        SystemClock.now_ms(),
    );
    t.priority = prio;
    t
}

/// A P-384 key made now; the mock trusts its public half (kid `local-1`) and issues access
/// tokens living `expires_in` seconds. Returns the private key, PKCS#8 DER.
async fn trust_new_key(http: &reqwest::Client, mock: &str, expires_in: u64) -> Vec<u8> {
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &SystemRandom::new())
            .unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = pair.public_key().as_ref();
    assert_eq!(point.len(), 97, "uncompressed P-384 point");
    let r = http
        .post(format!("{mock}/_mock/federation"))
        .header("content-type", "application/json")
        .body(
            json!({
                "keys": [{"kid": "local-1",
                          "x": URL_SAFE_NO_PAD.encode(&point[1..49]),
                          "y": URL_SAFE_NO_PAD.encode(&point[49..97])}],
                "issuer": ISSUER,
                "audiences": [AUDIENCE, "https://api.anthropic.example.test"],
                "expires_in": expires_in,
                "reject_service_accounts": ["svc_acct_revoked"],
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    pkcs8.as_ref().to_vec()
}

/// A gateway whose proxy identity is a P-384 key made now; the mock trusts its public half
/// and issues access tokens living `expires_in` seconds.
async fn setup(
    tokens: impl FnOnce(&str) -> Vec<TokenRecord>,
    secrets: &[(&str, &str)],
    expires_in: u64,
) -> H {
    let mock = start_mock().await;
    let tokens = tokens(&mock);
    let http = reqwest::Client::new();
    let pkcs8 = trust_new_key(&http, &mock, expires_in).await;
    let signer = LocalIdentitySigner::from_pkcs8_der(
        &pkcs8,
        "local-1",
        ISSUER,
        "tollgate-proxy-test",
        Arc::new(SystemClock),
    )
    .unwrap();

    let now = SystemClock.now_ms();
    let store = Arc::new(MemoryStore::new());
    store
        .put_secret("tollgate/pepper", &Secret::new(PEPPER))
        .await
        .unwrap();
    store
        .put_tenant(&Tenant::new("acme", "Acme", "platform@acme.test", now))
        .await
        .unwrap();
    let k = ClientKey::generate(KeyEnv::Test, &mut StdRng::seed_from_u64(7));
    let mut rec = ClientKeyRecord::for_key(
        &k,
        "acme",
        "dev@acme.test",
        Peppers::parse(PEPPER).unwrap().digest_new(&k),
        now,
    );
    rec.expires_at = Some(now + 86_400_000);
    store.put_key(&rec).await.unwrap();
    for t in &tokens {
        store
            .set_pool_config(&PoolConfig::new(t.pool.clone(), Strategy::Priority))
            .await
            .unwrap();
        store.put_token(t).await.unwrap();
    }
    for (id, value) in secrets {
        store.put_secret(id, &Secret::new(*value)).await.unwrap();
    }
    let cfg = GatewayConfig {
        upstream_timeout_ms: 5_000,
        pool_cache_ttl_ms: 0,
        ..GatewayConfig::default()
    };
    let gw = Gateway::with_federation(
        cfg,
        Stores {
            prices: Some(Arc::new(MemoryStore::new())),
            ..Stores::single(store.clone())
        },
        None,
        Some(Arc::new(signer)),
        Arc::new(SystemClock),
        Arc::new(MemoryAuditSink::default()),
    )
    .unwrap();
    H {
        app: router(gw),
        store,
        key: k.expose().to_owned(),
        mock,
        http,
    }
}

impl H {
    async fn chat(&self) -> (u16, String) {
        let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
        let r = self
            .app
            .clone()
            .oneshot(
                Request::post("/v1/chat/completions")
                    .header("authorization", format!("Bearer {}", self.key))
                    .header("content-type", "application/json")
                    .body(Body::from(body.to_string()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = r.status().as_u16();
        let b = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8_lossy(&b).into_owned())
    }

    async fn get(&self, path: &str) -> Value {
        let text = self
            .http
            .get(format!("{}{path}", self.mock))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        serde_json::from_str(&text).unwrap()
    }

    async fn counters(&self) -> Value {
        self.get("/_mock/federation").await["counters"].clone()
    }

    async fn calls(&self) -> Vec<Value> {
        serde_json::from_value(self.get("/_mock/calls").await).unwrap()
    }

    async fn status(&self, pool: &str, id: &str) -> TokenStatus {
        self.store
            .load_pool(pool)
            .await
            .unwrap()
            .tokens
            .into_iter()
            .find(|t| t.token_id == id)
            .unwrap()
            .status
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_cause_one_exchange_per_token_lifetime() {
    let h = setup(
        |m| vec![openai_federated("openai", "fed", m, "svc_acct_ok", 0)],
        &[],
        3600,
    )
    .await;
    let h = Arc::new(h);
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let h = h.clone();
            tokio::spawn(async move { h.chat().await })
        })
        .collect();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let c = h.counters().await;
    assert_eq!(c["exchanges_openai"], 1, "{c}");
    let calls = h.calls().await;
    let api: Vec<_> = calls
        .iter()
        .filter(|c| c["path"] == "/v1/chat/completions")
        .collect();
    assert_eq!(api.len(), 40);
    assert!(
        api.iter()
            .all(|c| c["token"].as_str().unwrap().starts_with("mock-oat-"))
    );
    assert_eq!(h.status("openai", "fed").await, TokenStatus::Active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn access_tokens_are_refreshed_before_expiry_under_load_with_no_failed_request() {
    // 3 s access tokens: refreshed 0.75 s before expiry; 8 clients for 7.5 s.
    let h = Arc::new(
        setup(
            |m| vec![openai_federated("openai", "fed", m, "svc_acct_ok", 0)],
            &[],
            3,
        )
        .await,
    );
    let started = Instant::now();
    let run = Duration::from_millis(7_500);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let h = h.clone();
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0u32, 0u32);
                while started.elapsed() < run {
                    match h.chat().await.0 {
                        200 => ok += 1,
                        _ => failed += 1,
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    let (mut ok, mut failed) = (0, 0);
    for t in tasks {
        let (o, f) = t.await.unwrap();
        ok += o;
        failed += f;
    }
    let c = h.counters().await;
    let exchanges = c["exchanges_openai"].as_u64().unwrap();
    println!(
        "federated refresh under load: {ok} requests answered, {failed} failed, {exchanges} exchanges in 7.5 s (3 s tokens)"
    );
    assert_eq!(failed, 0);
    assert!(ok > 50, "load was applied: {ok}");
    // One per refresh interval (2.25 s) plus the first: 4 for 7.5 s, never one per request.
    assert!((3..=5).contains(&exchanges), "{c}");
    // The provider never saw an expired access token.
    let refused: Vec<_> = h
        .calls()
        .await
        .into_iter()
        .filter(|c| c["status"] == 401)
        .collect();
    assert!(refused.is_empty(), "{refused:?}");
}

#[tokio::test]
async fn a_rejected_exchange_marks_the_token_invalid_and_fails_over() {
    let h = setup(
        |m| {
            vec![
                openai_federated("openai", "a-revoked", m, "svc_acct_revoked", 0),
                {
                    let mut t = TokenRecord::new(
                        "b-stored",
                        "openai",
                        ProviderKind::Openai,
                        format!("{m}/v1"),
                        SecretRef::SecretsManager {
                            secret_id: "tollgate/pool/openai/b-stored".into(),
                        },
                        "ops@example.test",
                        SystemClock.now_ms(),
                    );
                    t.priority = 1;
                    t
                },
            ]
        },
        &[("tollgate/pool/openai/b-stored", "mock-ok-stored")],
        3600,
    )
    .await;
    let (status, body) = h.chat().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(h.status("openai", "a-revoked").await, TokenStatus::Invalid);
    let c = h.counters().await;
    assert_eq!(
        (c["rejected"].as_u64(), c["exchanges_openai"].as_u64()),
        (Some(1), Some(0))
    );
    // Invalid: not tried again.
    let (status, _) = h.chat().await;
    assert_eq!(status, 200);
    assert_eq!(h.counters().await["rejected"], 1);
    let calls = h.calls().await;
    assert!(calls.iter().all(|c| c["token"] == "mock-ok-stored"));
}

#[tokio::test]
async fn an_anthropic_federated_token_sends_a_bearer_access_token_with_the_oauth_beta() {
    let h = setup(
        |m| {
            vec![TokenRecord::new(
                "fed-a",
                "anthropic",
                ProviderKind::Anthropic,
                format!("{m}/v1"),
                SecretRef::Federated {
                    audience: "https://api.anthropic.example.test".into(),
                    exchange: Exchange::AnthropicJwtBearer {
                        token_url: anthropic_token_url(&format!("{m}/v1")),
                        federation_rule_id: "fdrl_test".into(),
                        organization_id: "00000000-0000-4000-8000-000000000000".into(),
                        service_account_id: "svac_test".into(),
                        workspace_id: None,
                    },
                },
                "ops@example.test",
                SystemClock.now_ms(),
            )]
        },
        &[],
        3600,
    )
    .await;
    let body = json!({"model": "claude-sonnet-4", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let r = h
        .app
        .clone()
        .oneshot(
            Request::post("/v1/messages")
                .header("x-api-key", &h.key)
                .header("anthropic-version", "2023-06-01")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&text));
    assert_eq!(h.counters().await["exchanges_anthropic"], 1);
    let calls = h.calls().await;
    let call = calls.iter().find(|c| c["path"] == "/v1/messages").unwrap();
    assert!(call["token"].as_str().unwrap().starts_with("mock-oat-"));
    assert!(
        call["headers_seen"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h != "x-api-key")
    );
}

#[tokio::test]
async fn the_mock_verifies_the_assertion_it_receives() {
    use tollgate_core::clock::FakeClock;
    use tollgate_core::ports::IdentityTokenSource;
    let mock = start_mock().await;
    let http = reqwest::Client::new();
    let trusted = trust_new_key(&http, &mock, 60).await;
    let signer = |der: &[u8], clock: Arc<dyn Clock>| {
        LocalIdentitySigner::from_pkcs8_der(der, "local-1", ISSUER, "proxy", clock).unwrap()
    };
    let now: Arc<dyn Clock> = Arc::new(SystemClock);
    let exchange = |jwt: Secret| {
        let http = http.clone();
        let url = format!("{mock}/oauth/token");
        async move {
            let body = Exchange::OpenaiTokenExchange {
                token_url: url.clone(),
                identity_provider_id: "idp".into(),
                service_account_id: "svc_acct_ok".into(),
            }
            .request_body(&jwt);
            let r = http
                .post(url)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
            (status, v)
        }
    };
    let good = signer(&trusted, now.clone());
    let (status, v) = exchange(good.identity_token(AUDIENCE).await.unwrap()).await;
    assert_eq!(status, 200, "{v}");
    assert!(v["access_token"].as_str().unwrap().starts_with("mock-oat-"));
    assert_eq!(v["expires_in"], 60);
    // Wrong audience.
    let (status, v) = exchange(good.identity_token("https://elsewhere.test").await.unwrap()).await;
    assert_eq!((status, v["error"].as_str()), (401, Some("invalid_grant")));
    // Expired: signed as of an hour ago (lifetime 300 s).
    let past = signer(
        &trusted,
        Arc::new(FakeClock::new(SystemClock.now_ms() - 3_600_000)),
    );
    let (status, _) = exchange(past.identity_token(AUDIENCE).await.unwrap()).await;
    assert_eq!(status, 401);
    // Signed by a key the mock was never given (same kid).
    let other =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &SystemRandom::new())
            .unwrap();
    let (status, _) = exchange(
        signer(other.as_ref(), now.clone())
            .identity_token(AUDIENCE)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    // Not a JWT at all.
    let (status, _) = exchange(Secret::new("not-a-jwt")).await;
    assert_eq!(status, 401);
    let c: Value = serde_json::from_str(
        &http
            .get(format!("{mock}/_mock/federation"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(c["counters"]["exchanges_openai"], 1);
    assert_eq!(c["counters"]["rejected"], 4);
}
