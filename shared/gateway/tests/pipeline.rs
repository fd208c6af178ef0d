//! The whole request path with in-memory stores, a fake clock and the bundled mock provider
//! as upstream (on loopback). Each test names the behaviour it pins.
// Test code: a failed unwrap is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::body::Body;
use http::{Request, Response};
use rand::{SeedableRng, rngs::StdRng};
use serde_json::{Value, json};
use std::sync::Arc;
use tollgate_core::audit::{AuditRecord, Decision};
use tollgate_core::auth::Peppers;
use tollgate_core::clock::FakeClock;
use tollgate_core::key::{ClientKey, KeyEnv};
use tollgate_core::ports::{KeyStore, LimitStore, PoolStore, Secret, SecretStore, TenantStore};
use tollgate_core::records::{
    ClientKeyRecord, ProviderKind, SecretRef, Tenant, TokenRecord, TokenStatus,
};
use tollgate_gateway::{Gateway, GatewayConfig, MemoryAuditSink, Stores, router};
use tollgate_memory::MemoryStore;
use tower::ServiceExt;

const PEPPER: &str = r#"{"current":"1","v1":"unit-test-pepper-0123456789abcdefghijklmnop"}"#;
const T0: u64 = 1_800_000_000_000;

struct H {
    app: axum::Router,
    store: Arc<MemoryStore>,
    /// The price table's store, apart so a test can fail it alone.
    prices: Arc<MemoryStore>,
    audit: Arc<MemoryAuditSink>,
    clock: Arc<FakeClock>,
    key: String,
    key_id: String,
    mock: String,
}

async fn start_mock() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let cfg = tollgate_mock_provider::Config {
        stall: std::time::Duration::from_secs(5),
        ..Default::default()
    };
    tokio::spawn(tollgate_mock_provider::serve(l, cfg));
    format!("http://{addr}")
}

fn token(pool: &str, id: &str, kind: ProviderKind, base: &str, priority: u32) -> TokenRecord {
    let mut t = TokenRecord::new(
        id,
        pool,
        kind,
        format!("{base}/v1"),
        SecretRef::SecretsManager {
            secret_id: format!("tollgate/pool/{id}"),
        },
        "ops@example.test",
        T0,
    );
    t.priority = priority;
    t
}

/// `tokens`: (pool, token id, token value). Ids sort in the order round-robin tries them.
async fn setup_with(tokens: &[(&str, &str, &str)], tweak: impl FnOnce(&mut GatewayConfig)) -> H {
    let mock = start_mock().await;
    let store = Arc::new(MemoryStore::new());
    store
        .put_secret("tollgate/pepper", &Secret::new(PEPPER))
        .await
        .unwrap();
    store
        .put_tenant(&Tenant::new("acme", "Acme", "platform@acme.test", T0))
        .await
        .unwrap();
    let k = ClientKey::generate(KeyEnv::Test, &mut StdRng::seed_from_u64(42));
    store
        .put_key(&{
            let mut r = ClientKeyRecord::for_key(
                &k,
                "acme",
                "dev@acme.test",
                Peppers::parse(PEPPER).unwrap().digest_new(&k),
                T0,
            );
            r.name = "tests".into();
            r.expires_at = Some(T0 + 86_400_000);
            r
        })
        .await
        .unwrap();
    for (pool, id, value) in tokens {
        let kind = if *pool == "anthropic" {
            ProviderKind::Anthropic
        } else {
            ProviderKind::Openai
        };
        store
            .put_token(&token(pool, id, kind, &mock, 0))
            .await
            .unwrap();
        store
            .put_secret(&format!("tollgate/pool/{id}"), &Secret::new(*value))
            .await
            .unwrap();
    }
    let mut cfg = GatewayConfig {
        upstream_timeout_ms: 2_000,
        ..GatewayConfig::default()
    };
    tweak(&mut cfg);
    let clock = Arc::new(FakeClock::new(T0));
    let audit = Arc::new(MemoryAuditSink::default());
    let prices = Arc::new(MemoryStore::new());
    let gw = Gateway::new(
        cfg,
        Stores {
            prices: Some(prices.clone()),
            ..Stores::single(store.clone())
        },
        clock.clone(),
        audit.clone(),
    )
    .unwrap();
    H {
        app: router(gw),
        store,
        prices,
        audit,
        clock,
        key: k.expose().to_owned(),
        key_id: k.key_id().to_owned(),
        mock,
    }
}

async fn setup(tokens: &[(&str, &str, &str)]) -> H {
    setup_with(tokens, |_| {}).await
}

fn chat(stream: bool) -> Value {
    json!({"model": "gpt-4o-mini", "stream": stream, "stream_options": {"include_usage": true},
           "messages": [{"role": "user", "content": "hi there"}]})
}

impl H {
    async fn call(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: Body,
    ) -> Response<Body> {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(a) = auth {
            b = b.header("authorization", format!("Bearer {a}"));
        }
        b = b.header("content-type", "application/json");
        self.app
            .clone()
            .oneshot(b.body(body).unwrap())
            .await
            .unwrap()
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, String) {
        let r = self
            .call("POST", path, Some(&self.key), Body::from(body.to_string()))
            .await;
        read(r).await
    }

    async fn calls(&self) -> Vec<Value> {
        let text = reqwest::get(format!("{}/_mock/calls", self.mock))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn last_audit(&self) -> AuditRecord {
        self.audit.records().last().cloned().expect("an audit line")
    }

    async fn token(&self, pool: &str, id: &str) -> TokenRecord {
        self.store
            .load_pool(pool)
            .await
            .unwrap()
            .tokens
            .into_iter()
            .find(|t| t.token_id == id)
            .unwrap()
    }
}

async fn read(r: Response<Body>) -> (u16, String) {
    let status = r.status().as_u16();
    let b = axum::body::to_bytes(r.into_body(), 1 << 22).await.unwrap();
    (status, String::from_utf8_lossy(&b).into_owned())
}

#[tokio::test]
async fn chat_request_is_forwarded_with_the_pool_token_not_the_client_key() {
    let h = setup(&[("openai", "t1", "mock-ok-one")]).await;
    let (status, body) = h.post("/v1/chat/completions", &chat(false)).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    let calls = h.calls().await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["token"], "mock-ok-one");
    assert_eq!(calls[0]["path"], "/v1/chat/completions");
    assert!(!calls.iter().any(|c| c.to_string().contains(&h.key)));
    let a = h.last_audit();
    assert_eq!(a.decision, Decision::Allow);
    assert_eq!(a.status, 200);
    assert_eq!(a.tenant.as_deref(), Some("acme"));
    assert_eq!(a.key_id.as_deref(), Some(h.key_id.as_str()));
    assert_eq!(a.token_id.as_deref(), Some("t1"));
    assert!(a.tokens_in.unwrap() > 0 && a.tokens_out.unwrap() > 0);
    assert!(!a.to_line().contains(&h.key));
    assert!(!a.to_line().contains("mock-ok-one"));
    assert_eq!(h.token("openai", "t1").await.requests, 1);
}

#[tokio::test]
async fn warm_request_reads_nothing_and_writes_once() {
    let h = setup(&[("openai", "t1", "mock-ok-one")]).await;
    assert_eq!(h.post("/v1/chat/completions", &chat(false)).await.0, 200);
    let before = h.store.ops.snapshot();
    assert_eq!(h.post("/v1/chat/completions", &chat(false)).await.0, 200);
    let after = h.store.ops.snapshot();
    assert_eq!(after.0 - before.0, 0, "reads on a warm request");
    assert_eq!(after.1 - before.1, 1, "writes on a warm request");
    let a = h.last_audit();
    assert_eq!((a.store_reads, a.store_writes), (0, 1));
}

#[tokio::test]
async fn malformed_keys_get_the_same_401_with_zero_store_calls() {
    let h = setup(&[("openai", "t1", "mock-ok-one")]).await;
    let mut flipped = h.key.clone();
    let c = if &flipped[20..21] == "a" { "b" } else { "a" };
    flipped.replace_range(20..21, c);
    let before = h.store.ops.snapshot();
    let mut bodies = std::collections::HashSet::new();
    for (auth, reason) in [
        (None, "missing_key"),
        (Some("sk-not-ours"), "bad_prefix"),
        (Some("tgk_test_short"), "bad_length"),
        (Some(flipped.as_str()), "bad_checksum"),
    ] {
        let r = h
            .call(
                "POST",
                "/v1/chat/completions",
                auth,
                Body::from(chat(false).to_string()),
            )
            .await;
        let (status, body) = read(r).await;
        assert_eq!(status, 401);
        bodies.insert(body);
        let a = h.last_audit();
        assert_eq!(a.reason.as_str(), reason);
        assert_eq!((a.store_reads, a.store_writes), (0, 0));
    }
    assert_eq!(bodies.len(), 1);
    assert_eq!(
        h.store.ops.snapshot(),
        before,
        "no store call for a malformed key"
    );
    assert!(h.calls().await.is_empty());
}

#[tokio::test]
async fn unknown_revoked_and_expired_keys_get_the_same_401() {
    let h = setup_with(&[("openai", "t1", "mock-ok-one")], |c| {
        c.key_cache_ttl_ms = 0
    })
    .await;
    let (_, good_401) = read(
        h.call("POST", "/v1/chat/completions", None, Body::from("{}"))
            .await,
    )
    .await;
    let unknown = ClientKey::generate(KeyEnv::Test, &mut StdRng::seed_from_u64(7));
    let r = h
        .call(
            "POST",
            "/v1/chat/completions",
            Some(unknown.expose()),
            Body::from(chat(false).to_string()),
        )
        .await;
    assert_eq!(read(r).await, (401, good_401.clone()));
    assert_eq!(h.last_audit().reason.as_str(), "unknown_key");

    h.clock.advance_ms(86_400_000);
    assert_eq!(
        h.post("/v1/chat/completions", &chat(false)).await,
        (401, good_401.clone())
    );
    assert_eq!(h.last_audit().reason.as_str(), "expired");

    h.clock.set_ms(T0);
    h.store.revoke_key(&h.key_id, T0).await.unwrap();
    assert_eq!(
        h.post("/v1/chat/completions", &chat(false)).await,
        (401, good_401)
    );
    assert_eq!(h.last_audit().reason.as_str(), "revoked");
}

#[tokio::test]
async fn revoked_key_is_refused_after_cache_ttl() {
    let h = setup_with(&[("openai", "t1", "mock-ok-one")], |c| {
        c.key_cache_ttl_ms = 5_000
    })
    .await;
    assert_eq!(h.post("/v1/chat/completions", &chat(false)).await.0, 200);
    h.store.revoke_key(&h.key_id, T0).await.unwrap();
    h.clock.advance_ms(4_999);
    assert_eq!(
        h.post("/v1/chat/completions", &chat(false)).await.0,
        200,
        "still cached"
    );
    h.clock.advance_ms(1);
    assert_eq!(h.post("/v1/chat/completions", &chat(false)).await.0, 401);
    assert_eq!(h.last_audit().reason.as_str(), "revoked");
}

#[tokio::test]
async fn a_401_token_is_marked_invalid_and_the_request_succeeds_on_the_next() {
    let h = setup(&[
        ("openai", "a-bad", "mock-401-x"),
        ("openai", "b-good", "mock-ok-y"),
    ])
    .await;
    let (status, body) = h.post("/v1/chat/completions", &chat(false)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        h.token("openai", "a-bad").await.status,
        TokenStatus::Invalid
    );
    let a = h.last_audit();
    assert_eq!(a.attempts, 2);
    assert_eq!(a.token_id.as_deref(), Some("b-good"));
    // Each attempt's token and outcome, for the audit function's token rules.
    let tried: Vec<_> = a
        .upstream
        .iter()
        .map(|t| (t.token_id.as_str(), t.outcome))
        .collect();
    assert_eq!(
        tried,
        [
            ("a-bad", tollgate_core::audit::AttemptOutcome::AuthRejected),
            ("b-good", tollgate_core::audit::AttemptOutcome::Ok)
        ]
    );
    // The invalid token is not tried again.
    h.post("/v1/chat/completions", &chat(false)).await;
    let tokens: Vec<_> = h.calls().await.iter().map(|c| c["token"].clone()).collect();
    assert_eq!(tokens, ["mock-401-x", "mock-ok-y", "mock-ok-y"]);
}

#[tokio::test]
async fn a_429_cools_the_token_for_retry_after_and_the_next_token_answers() {
    let h = setup(&[
        ("openai", "a-busy", "mock-429-x"),
        ("openai", "b-good", "mock-ok-y"),
    ])
    .await;
    assert_eq!(h.post("/v1/chat/completions", &chat(false)).await.0, 200);
    let busy = h.token("openai", "a-busy").await;
    assert_eq!(busy.status, TokenStatus::Cooling);
    // The mock sends retry-after: 2 and a 2s reset header: cool for 2 s.
    assert_eq!(busy.cooldown_until, Some(T0 + 2_000));
    for _ in 0..3 {
        h.post("/v1/chat/completions", &chat(false)).await;
    }
    let busy_calls = h
        .calls()
        .await
        .iter()
        .filter(|c| c["token"] == "mock-429-x")
        .count();
    assert_eq!(busy_calls, 1, "cooling token is skipped");
    h.clock.advance_ms(2_000);
    for _ in 0..2 {
        h.post("/v1/chat/completions", &chat(false)).await;
    }
    let busy_calls = h
        .calls()
        .await
        .iter()
        .filter(|c| c["token"] == "mock-429-x")
        .count();
    assert_eq!(busy_calls, 2, "after the cooldown the token is tried again");
}

#[tokio::test]
async fn all_tokens_failing_gives_a_bounded_503_in_the_provider_shape() {
    let h = setup(&[
        ("anthropic", "a", "mock-500-a"),
        ("anthropic", "b", "mock-500-b"),
        ("anthropic", "c", "mock-401-c"),
        ("anthropic", "d", "mock-500-d"),
        ("anthropic", "e", "mock-500-e"),
    ])
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
    let (status, text) = read(r).await;
    assert_eq!(status, 503);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "overloaded_error");
    let max = GatewayConfig::default().retry.max_attempts as usize;
    assert_eq!(h.calls().await.len(), max, "attempts are bounded");
    let a = h.last_audit();
    assert_eq!(a.decision, Decision::Error);
    assert_eq!(a.attempts as usize, max);
}

/// The request headers the upstream saw on the last call, lower-case, in order.
fn headers_seen(call: &Value) -> Vec<String> {
    call["headers_seen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_upstream_request_carries_the_clients_allowed_headers_and_the_gateways_own() {
    let h = setup(&[("openai", "t1", "mock-ok-one")]).await;
    let (status, body) = h.post("/v1/chat/completions", &chat(false)).await;
    assert_eq!(status, 200, "{body}");
    let calls = h.calls().await;
    let seen = headers_seen(&calls[0]);
    for name in [
        "host",
        "authorization",
        "content-type",
        "content-length",
        "user-agent",
    ] {
        assert!(seen.iter().any(|s| s == name), "{name} missing: {seen:?}");
    }
    assert_eq!(calls[0]["body"]["model"], "gpt-4o-mini");
}

#[tokio::test]
async fn an_upstream_that_does_not_answer_in_time_is_a_504_upstream_timeout() {
    let h = setup_with(
        &[
            ("openai", "a", "mock-stall-a"),
            ("openai", "b", "mock-stall-b"),
        ],
        |c| c.upstream_timeout_ms = 300,
    )
    .await;
    let started = std::time::Instant::now();
    let (status, body) = h.post("/v1/chat/completions", &chat(false)).await;
    assert_eq!(status, 504, "{body}");
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
    let a = h.last_audit();
    assert_eq!(a.reason.as_str(), "upstream_timeout");
    assert_eq!(a.decision, Decision::Error);
    assert_eq!(a.attempts, 2, "a timeout fails over to the next token");
    assert_eq!(h.token("openai", "a").await.consecutive_failures, 1);
    assert_eq!(h.token("openai", "b").await.consecutive_failures, 1);
}

/// A token in `pool` whose upstream is a loopback port nothing listens on.
async fn add_unreachable_token(h: &H, pool: &str, id: &str) {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    h.store
        .put_token(&token(pool, id, ProviderKind::Openai, &closed, 0))
        .await
        .unwrap();
    h.store
        .put_secret(&format!("tollgate/pool/{id}"), &Secret::new("mock-ok-x"))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unreachable_upstream_is_transient_and_the_next_token_answers() {
    let h = setup(&[("openai", "b-good", "mock-ok-y")]).await;
    add_unreachable_token(&h, "openai", "a-down").await;
    let (status, body) = h.post("/v1/chat/completions", &chat(false)).await;
    assert_eq!(status, 200, "{body}");
    let a = h.last_audit();
    assert_eq!(a.attempts, 2);
    assert_eq!(a.token_id.as_deref(), Some("b-good"));
    assert_eq!(h.token("openai", "a-down").await.consecutive_failures, 1);

    // With only unreachable tokens, the request fails as all tokens failed (503), not as a
    // timeout.
    let h = setup(&[]).await;
    add_unreachable_token(&h, "openai", "c-down").await;
    add_unreachable_token(&h, "openai", "d-down").await;
    let (status, body) = h.post("/v1/chat/completions", &chat(false)).await;
    assert_eq!(status, 503, "{body}");
    let a = h.last_audit();
    assert_eq!(a.reason.as_str(), "all_tokens_failed");
    assert_eq!(a.attempts, 2);
}

#[tokio::test]
async fn stream_passes_through_and_records_usage() {
    let h = setup(&[("openai", "t1", "mock-ok-one")]).await;
    let (status, body) = h.post("/v1/chat/completions", &chat(true)).await;
    assert_eq!(status, 200);
    assert!(body.starts_with("data: "));
    assert!(body.trim_end().ends_with("data: [DONE]"));
    // Settlement runs before the body reports its end, so the audit line is there already.
    let a = h.last_audit();
    assert!(a.stream);
    assert_eq!(a.reason.as_str(), "ok");
    assert!(a.tokens_out.unwrap() > 0);
}

#[tokio::test]
async fn broken_stream_ends_with_an_in_band_error_and_is_not_retried() {
    let h = setup(&[
        ("openai", "a", "mock-break3-a"),
        ("openai", "b", "mock-ok-b"),
    ])
    .await;
    let (status, body) = h.post("/v1/chat/completions", &chat(true)).await;
    assert_eq!(status, 200);
    assert!(body.contains("upstream_stream_interrupted"), "{body}");
    assert!(!body.contains("[DONE]"));
    assert_eq!(h.calls().await.len(), 1, "no retry after the first byte");
    let a = h.last_audit();
    assert_eq!(a.reason.as_str(), "upstream_stream_broken");
    assert_eq!(a.decision, Decision::Error);
}

#[tokio::test]
async fn bad_json_too_large_and_unknown_route_are_refused_in_shape() {
    let h = setup_with(&[("openai", "t1", "mock-ok-one")], |c| {
        c.max_body_bytes = 1_000
    })
    .await;
    let r = h
        .call(
            "POST",
            "/v1/chat/completions",
            Some(&h.key),
            Body::from("{not json"),
        )
        .await;
    let (status, body) = read(r).await;
    assert_eq!(status, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
        "bad_request"
    );
    let big = json!({"model": "m", "messages": [{"role": "user", "content": "x".repeat(2_000)}]});
    assert_eq!(h.post("/v1/chat/completions", &big).await.0, 413);
    let r = h
        .call("POST", "/v1/admin/keys", Some(&h.key), Body::from("{}"))
        .await;
    assert_eq!(read(r).await.0, 404);
    let r = h
        .call("GET", "/v1/chat/completions", Some(&h.key), Body::empty())
        .await;
    assert_eq!(read(r).await.0, 405);
    assert!(h.calls().await.is_empty());
}

#[tokio::test]
async fn a_failing_store_fails_closed() {
    let h = setup_with(&[("openai", "t1", "mock-ok-one")], |c| {
        c.key_cache_ttl_ms = 0
    })
    .await;
    h.store.set_failing(true);
    let (status, _) = h.post("/v1/chat/completions", &chat(false)).await;
    assert_eq!(status, 503);
    assert_eq!(h.last_audit().reason.as_str(), "store_unavailable");
    assert!(h.calls().await.is_empty());
}

#[tokio::test]
async fn models_outside_the_key_scope_get_a_403_naming_the_model() {
    let h = setup(&[("openai", "t1", "mock-ok-one")]).await;
    let scoped = ClientKey::generate(KeyEnv::Test, &mut StdRng::seed_from_u64(99));
    let mut rec = h.store.get_key(&h.key_id).await.unwrap().unwrap();
    let (digest_hex, _) = Peppers::parse(PEPPER).unwrap().digest_new(&scoped);
    rec.key_id = scoped.key_id().into();
    rec.digest_hex = digest_hex;
    rec.last4 = scoped.last4().into();
    rec.allowed_models = vec!["gpt-4o*".into()];
    h.store.put_key(&rec).await.unwrap();
    let ask = |model: &str| {
        Body::from(
            json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string(),
        )
    };
    let r = h
        .call(
            "POST",
            "/v1/chat/completions",
            Some(scoped.expose()),
            ask("o3-pro"),
        )
        .await;
    let (status, body) = read(r).await;
    assert_eq!(status, 403);
    assert!(body.contains("o3-pro"), "{body}");
    assert_eq!(h.last_audit().reason.as_str(), "model_not_allowed");
    let r = h
        .call(
            "POST",
            "/v1/chat/completions",
            Some(scoped.expose()),
            ask("gpt-4o-mini"),
        )
        .await;
    assert_eq!(read(r).await.0, 200);
    assert_eq!(h.calls().await.len(), 1);
}

/// Fake credentials are built at test time so no credential-shaped literal sits in the repo.
fn fake_secret(prefix: &str, alphabet: &[u8], len: usize, seed: u64) -> String {
    let mut r = StdRng::seed_from_u64(seed);
    let tail: String = (0..len)
        .map(|_| char::from(alphabet[rand::Rng::gen_range(&mut r, 0..alphabet.len())]))
        .collect();
    format!("{prefix}{tail}")
}

fn fake_aws_access_key() -> String {
    fake_secret("AKIA", b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16, 5)
}

fn fake_openai_key() -> String {
    let alnum = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    fake_secret("sk-proj-", alnum, 48, 6)
}

fn say(text: &str, stream: bool) -> Value {
    json!({"model": "gpt-4o-mini", "stream": stream, "messages": [{"role": "user", "content": text}]})
}

#[tokio::test]
async fn a_secret_in_the_prompt_is_blocked_by_default_with_no_upstream_call() {
    let h = setup(&[("openai", "t1", "mock-ok-one")]).await;
    let secret = fake_aws_access_key();
    let (status, body) = h
        .post(
            "/v1/chat/completions",
            &say(&format!("my key is {secret} ok"), false),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "sensitive_data_blocked");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("AWS_ACCESS_KEY")
    );
    assert!(!body.contains(&secret));
    assert!(h.calls().await.is_empty(), "zero upstream calls");
    let a = h.last_audit();
    assert_eq!(a.reason.as_str(), "sensitive_data_blocked");
    assert_eq!(a.dlp.get("AWS_ACCESS_KEY"), Some(&1));
    assert!(!a.to_line().contains(&secret));
}

#[tokio::test]
async fn a_card_number_is_redacted_before_it_leaves_and_the_body_stays_json() {
    let h = setup(&[("openai", "t1", "mock-ok-one")]).await;
    let (status, _) = h
        .post(
            "/v1/chat/completions",
            &say("charge 4111 1111 1111 1111 and mail ops@example.com", false),
        )
        .await;
    assert_eq!(status, 200);
    let calls = h.calls().await;
    let sent = calls[0]["body"]["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(sent.contains("[CREDIT_CARD_1]"), "{sent}");
    assert!(!sent.contains("4111"));
    assert!(
        sent.contains("ops@example.com"),
        "contact data is logged, not redacted"
    );
    let a = h.last_audit();
    assert_eq!(a.dlp.get("CREDIT_CARD"), Some(&1));
    assert_eq!(a.dlp.get("EMAIL"), Some(&1));
}

#[tokio::test]
async fn a_key_policy_can_turn_blocking_into_logging_and_responses_still_hide_secrets() {
    let h = setup(&[("openai", "t1", "mock-ok-one")]).await;
    let policy: tollgate_core::records::Policy =
        serde_json::from_value(json!({"categories": {"secret": "log"}})).unwrap();
    h.store
        .set_key_policy(&h.key_id, Some(&policy))
        .await
        .unwrap();
    h.clock.advance_ms(10_000); // past the key cache TTL
    let secret = fake_openai_key();
    // The mock echoes the prompt back, so the secret comes back in the answer.
    let (status, body) = h
        .post(
            "/v1/chat/completions",
            &say(&format!("echo {secret} please"), false),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains(&secret), "{body}");
    assert!(body.contains("[OPENAI_KEY_1]"), "{body}");
    assert_eq!(
        h.calls().await[0]["body"]["messages"][0]["content"],
        format!("echo {secret} please")
    );
    let a = h.last_audit();
    assert_eq!(a.dlp.get("OPENAI_KEY"), Some(&1));
    assert_eq!(a.dlp_response.get("OPENAI_KEY"), Some(&1));

    let (status, body) = h
        .post(
            "/v1/chat/completions",
            &say(&format!("echo {secret} please"), true),
        )
        .await;
    assert_eq!(status, 200);
    assert!(!body.contains(&secret), "{body}");
    let text: String = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert!(text.contains("[OPENAI_KEY_1]"), "{text}");
    assert!(body.trim_end().ends_with("data: [DONE]"));
}

// ---- Defects found by a hostile caller (issue 6). Each test failed before its fix.

/// A key with the same id as `h.key` but another secret, with a valid checksum.
fn same_id_wrong_secret(h: &H) -> String {
    let prefix = "tgk_test_";
    let body = format!("{prefix}{}{}", h.key_id, "Z".repeat(32));
    let sum = tollgate_core::base62::crc32_checksum(body.as_bytes());
    let key = format!("{body}{}", String::from_utf8_lossy(&sum));
    assert!(ClientKey::parse(&key).is_ok());
    assert_ne!(key, h.key);
    key
}

#[tokio::test]
async fn an_unknown_key_id_and_a_wrong_secret_do_the_same_store_work() {
    let h = setup_with(&[("openai", "t1", "mock-ok-one")], |c| {
        c.key_cache_ttl_ms = 0
    })
    .await;
    // Warm the pepper so both paths start equal.
    h.post("/v1/chat/completions", &chat(false)).await;
    let unknown = ClientKey::generate(KeyEnv::Test, &mut StdRng::seed_from_u64(7));
    let wrong = same_id_wrong_secret(&h);
    let mut seen = Vec::new();
    for (key, reason) in [
        (unknown.expose().to_owned(), "unknown_key"),
        (wrong, "digest_mismatch"),
    ] {
        let before = h.store.ops.snapshot();
        let r = h
            .call(
                "POST",
                "/v1/chat/completions",
                Some(&key),
                Body::from(chat(false).to_string()),
            )
            .await;
        assert_eq!(read(r).await.0, 401);
        let after = h.store.ops.snapshot();
        let a = h.last_audit();
        assert_eq!(a.reason.as_str(), reason);
        seen.push((after.0 - before.0, a.store_reads));
    }
    assert_eq!(seen[0], seen[1], "same reads on both paths: {seen:?}");
    assert_eq!(seen[0], (1, 1));
}

#[tokio::test]
async fn duplicate_json_keys_are_refused_and_nothing_goes_upstream() {
    let h = setup(&[("openai", "t1", "mock-ok-one")]).await;
    let secret = fake_openai_key();
    for body in [
        r#"{"model":"gpt-4o","model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#
            .to_owned(),
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"messages":[]}"#
            .to_owned(),
        format!(
            r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"{secret}","content":"hi"}}]}}"#
        ),
    ] {
        let r = h
            .call(
                "POST",
                "/v1/chat/completions",
                Some(&h.key),
                Body::from(body),
            )
            .await;
        let (status, text) = read(r).await;
        assert_eq!(status, 400, "{text}");
        assert_eq!(h.last_audit().reason.as_str(), "duplicate_json_key");
        assert!(!text.contains(&secret));
    }
    assert!(h.calls().await.is_empty(), "nothing reached the provider");
}

#[tokio::test]
async fn a_pool_token_echoed_by_the_upstream_never_reaches_the_client() {
    let value = "mock-echo-0f9e8d7c6b5a49382716";
    let h = setup(&[("openai", "t1", value)]).await;
    let leak = |what: &str, text: &str| {
        assert!(
            !text.contains(value),
            "{what} leaked the pool token: {text}"
        );
    };
    let ask = json!({"model": "gpt-4o-mini", "messages": [
        {"role": "user", "content": "repeat {{AUTH}} twice: {{AUTH}}"}]});
    // Complete body and headers.
    let r = h
        .call(
            "POST",
            "/v1/chat/completions",
            Some(&h.key),
            Body::from(ask.to_string()),
        )
        .await;
    let headers = format!("{:?}", r.headers());
    let (status, body) = read(r).await;
    assert_eq!(status, 200, "{body}");
    leak("a 200 body", &body);
    leak("the response headers", &headers);
    assert!(body.contains("[REDACTED_POOL_TOKEN]"), "{body}");
    assert!(h.last_audit().dlp_response.contains_key("POOL_TOKEN"));
    // A stream.
    let mut s = ask.clone();
    s["stream"] = json!(true);
    let (status, body) = h.post("/v1/chat/completions", &s).await;
    assert_eq!(status, 200);
    leak("an SSE stream", &body);
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    // /v1/models.
    let r = h
        .call("GET", "/v1/models", Some(&h.key), Body::empty())
        .await;
    let (status, body) = read(r).await;
    assert_eq!(status, 200);
    leak("/v1/models", &body);
}

#[tokio::test]
async fn a_pool_token_in_an_upstream_error_body_never_reaches_the_client() {
    let value = "mock-echo400-5a4b3c2d1e0f9a8b";
    let h = setup(&[("openai", "t1", value)]).await;
    let (status, body) = h.post("/v1/chat/completions", &chat(false)).await;
    assert_eq!(status, 400, "the caller's 4xx passes through");
    assert!(!body.contains(value), "{body}");
}

#[tokio::test]
async fn absurd_or_credential_models_are_refused_and_never_audited_verbatim() {
    let h = setup(&[("openai", "t1", "mock-ok-one")]).await;
    let huge = "m".repeat(512 * 1024);
    let aws = fake_aws_access_key();
    for model in [huge.as_str(), aws.as_str(), h.key.as_str()] {
        let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
        let (status, text) = h.post("/v1/chat/completions", &body).await;
        assert_eq!(status, 400, "{}", &text[..text.len().min(200)]);
        let a = h.last_audit();
        assert_eq!(a.reason.as_str(), "model_invalid");
        let line = a.to_line();
        assert!(line.len() < 4_096, "audit line of {} bytes", line.len());
        assert!(!line.contains(model));
    }
    assert!(h.calls().await.is_empty());
}

#[tokio::test]
async fn an_empty_bearer_is_a_missing_key_and_stream_must_be_boolean() {
    let h = setup(&[("openai", "t1", "mock-ok-one")]).await;
    let r = h
        .app
        .clone()
        .oneshot(
            Request::post("/v1/chat/completions")
                .header("authorization", "Bearer ")
                .body(Body::from(chat(false).to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(read(r).await.0, 401);
    assert_eq!(h.last_audit().reason.as_str(), "missing_key");
    for stream in [json!("yes"), json!(1), json!("false")] {
        let mut body = chat(false);
        body["stream"] = stream;
        let (status, _) = h.post("/v1/chat/completions", &body).await;
        assert_eq!(status, 400);
        assert_eq!(h.last_audit().reason.as_str(), "stream_not_boolean");
    }
    assert!(h.calls().await.is_empty());
}

#[tokio::test]
async fn a_client_that_goes_away_mid_stream_still_gets_its_audit_line() {
    let h = setup(&[("openai", "t1", "mock-ok-one")]).await;
    let r = h
        .call(
            "POST",
            "/v1/chat/completions",
            Some(&h.key),
            Body::from(chat(true).to_string()),
        )
        .await;
    assert_eq!(r.status(), 200);
    let mut body = r.into_body();
    use http_body_util::BodyExt;
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    assert!(h.audit.records().is_empty(), "not settled before the end");
    drop(body);
    // Settlement runs on the runtime once the body is dropped.
    for _ in 0..100 {
        if !h.audit.records().is_empty() {
            break;
        }
        tokio::task::yield_now().await;
    }
    let recs = h.audit.records();
    assert_eq!(recs.len(), 1, "exactly one audit line");
    assert_eq!(recs[0].reason.as_str(), "client_disconnected");
    assert_eq!(recs[0].decision, Decision::Allow);
    assert_eq!(h.token("openai", "t1").await.requests, 1);
}

#[tokio::test]
async fn every_request_writes_exactly_one_audit_line() {
    let h = setup(&[
        ("openai", "t1", "mock-ok-one"),
        ("openai", "t2", "mock-break2-x"),
    ])
    .await;
    let mut n = 0;
    for body in [chat(false), chat(true), chat(true), json!({"nope": 1})] {
        h.post("/v1/chat/completions", &body).await;
        n += 1;
        assert_eq!(h.audit.records().len(), n);
    }
}

#[tokio::test]
async fn a_token_whose_body_fails_after_the_headers_is_not_recorded_healthy() {
    let h = setup(&[("openai", "t1", "mock-cut-one")]).await;
    let (status, body) = h.post("/v1/chat/completions", &chat(false)).await;
    assert_eq!(status, 503, "{body}");
    let a = h.last_audit();
    assert_eq!(a.reason.as_str(), "upstream_body_failed");
    assert_eq!(a.decision, Decision::Error);
    let t = h.token("openai", "t1").await;
    assert_eq!(
        t.consecutive_failures, 1,
        "counted as a failure, not a success"
    );
    assert_eq!(
        t.requests, 0,
        "no usage recorded for an answer never delivered"
    );
}

// ---- Limits (issue 7).

use tollgate_core::limits::Limits;

/// A harness whose key carries `key` limits and whose tenant carries `tenant` limits.
async fn with_limits(tokens: &[(&str, &str, &str)], key: Limits, tenant: Option<Limits>) -> H {
    let h = setup(tokens).await;
    h.store.set_key_limits(&h.key_id, Some(&key)).await.unwrap();
    if let Some(t) = tenant {
        h.store.set_tenant_limits("acme", Some(&t)).await.unwrap();
    }
    h
}

#[tokio::test]
async fn requests_over_the_rpm_limit_get_a_429_naming_the_callers_limit() {
    let h = with_limits(
        &[("openai", "t1", "mock-ok-one")],
        Limits {
            rpm: Some(3),
            ..Limits::default()
        },
        None,
    )
    .await;
    for _ in 0..3 {
        assert_eq!(h.post("/v1/chat/completions", &chat(false)).await.0, 200);
    }
    let r = h
        .call(
            "POST",
            "/v1/chat/completions",
            Some(&h.key),
            Body::from(chat(false).to_string()),
        )
        .await;
    assert_eq!(r.status(), 429);
    let hd = r.headers().clone();
    let (_, body) = read(r).await;
    assert_eq!(hd["x-ratelimit-limit-requests"], "3");
    assert_eq!(hd["x-ratelimit-remaining-requests"], "0");
    let retry: u64 = hd["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "rate_limited");
    assert_eq!(h.last_audit().reason.as_str(), "limit_rpm");
    assert_eq!(
        h.calls().await.len(),
        3,
        "the refused request never reached the provider"
    );
    // Refused again within the window: remembered, no store write.
    let before = h.store.ops.snapshot();
    assert_eq!(h.post("/v1/chat/completions", &chat(false)).await.0, 429);
    assert_eq!(
        h.store.ops.snapshot().1,
        before.1,
        "a known-full window costs no write"
    );
    // The next minute admits again.
    h.clock.advance_ms(60_000);
    assert_eq!(h.post("/v1/chat/completions", &chat(false)).await.0, 200);
}

/// A warm limited request costs one write to admit and one to settle, the settlement
/// carrying the pool token's usage: two writes, no read (a key without limits: one write) —
/// with the key's limits alone and with the tenant's too; and both land.
#[tokio::test]
async fn a_warm_limited_request_writes_twice_admit_and_settle_with_its_usage() {
    let limits = Limits {
        rpm: Some(100),
        concurrency: Some(5),
        budget_day_micros: Some(10_000_000),
        ..Limits::default()
    };
    for tenant in [None, Some(limits.clone())] {
        let with_tenant = tenant.is_some();
        let h = with_limits(&[("openai", "t1", "mock-ok-one")], limits.clone(), tenant).await;
        assert_eq!(h.post("/v1/chat/completions", &chat(false)).await.0, 200);
        let first_cost = (h.last_audit().cost_usd.expect("priced") * 1_000_000.0).round() as u64;
        let before = h.store.ops.snapshot();
        assert_eq!(h.post("/v1/chat/completions", &chat(false)).await.0, 200);
        let after = h.store.ops.snapshot();
        assert_eq!(
            (after.0 - before.0, after.1 - before.1),
            (0, 2),
            "store calls of a warm limited request"
        );
        let a = h.last_audit();
        assert_eq!((a.store_reads, a.store_writes), (0, 2));
        // A single successful attempt lists nothing (`token_id` + `attempts` say it).
        assert!(a.upstream.is_empty());
        // The budgets it was admitted under, with the day's spend before it: the first
        // request's, settled.
        use tollgate_core::audit::{BudgetPeriod, BudgetScope};
        let scopes: Vec<_> = a.budgets.iter().map(|b| b.scope).collect();
        if with_tenant {
            assert_eq!(scopes, [BudgetScope::Key, BudgetScope::Tenant]);
        } else {
            assert_eq!(scopes, [BudgetScope::Key]);
        }
        for b in &a.budgets {
            assert_eq!(b.period, BudgetPeriod::Day);
            assert_eq!(b.budget_micros, 10_000_000);
            assert_eq!(b.spent_micros, first_cost);
            assert_eq!(b.window_end_ms, (T0 / 86_400_000 + 1) * 86_400_000);
        }
        let cost = (a.cost_usd.expect("priced") * 1_000_000.0).round() as u64;
        let key = h
            .store
            .load_counters(&format!("key#{}", h.key_id))
            .await
            .unwrap();
        assert_eq!(key.counters.requests, 2);
        assert!(key.counters.inflight.is_empty(), "slots freed");
        assert!(key.counters.spend_day >= cost, "settled to the usage");
        assert_eq!(
            h.token("openai", "t1").await.requests,
            2,
            "usage went with it"
        );
    }
}

#[tokio::test]
async fn a_tenant_limit_counts_every_key_and_refuses_in_anthropic_shape() {
    let h = with_limits(
        &[("anthropic", "a1", "mock-ok-a")],
        Limits::default(),
        Some(Limits {
            rpm: Some(1),
            ..Limits::default()
        }),
    )
    .await;
    let body = json!({"model": "claude-sonnet-4-6", "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(h.post("/v1/messages", &body).await.0, 200);
    let (status, text) = h.post("/v1/messages", &body).await;
    assert_eq!(status, 429);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "rate_limit_error");
}

#[tokio::test]
async fn a_daily_budget_is_reserved_up_front_and_settled_to_reported_usage() {
    // gpt-4o-mini: $0.15 / $0.60 per million tokens. A budget of 100 micro-dollars fits the
    // reservation of one request with max_tokens 100 (about 61 micro-dollars) but not two.
    let h = with_limits(
        &[("openai", "t1", "mock-ok-one")],
        Limits {
            budget_day_micros: Some(100),
            ..Limits::default()
        },
        None,
    )
    .await;
    let mut body = chat(false);
    body["max_tokens"] = json!(100);
    let (status, _) = h.post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200);
    let a = h.last_audit();
    let cost = a.cost_usd.expect("a priced model has a cost");
    assert!(cost > 0.0 && cost < 0.0001, "{cost}");
    let used = h
        .store
        .load_counters(&format!("key#{}", h.key_id))
        .await
        .unwrap();
    // Settled to the mock's reported usage, not the reservation.
    assert_eq!(used.counters.spend_day, (cost * 1_000_000.0).round() as u64);
    // Spend so far is small: a second and third still fit, until the budget is gone.
    let mut refused = None;
    for i in 0..20 {
        let (status, text) = h.post("/v1/chat/completions", &body).await;
        if status == 429 {
            refused = Some((i, text));
            break;
        }
    }
    let (_, text) = refused.expect("the budget runs out");
    assert!(text.contains("Budget"), "{text}");
    assert_eq!(h.last_audit().reason.as_str(), "budget_day");
    let spent = h
        .store
        .load_counters(&format!("key#{}", h.key_id))
        .await
        .unwrap()
        .counters
        .spend_day;
    assert!(spent <= 100, "never above the budget: {spent}");
}

#[tokio::test]
async fn concurrency_slots_are_freed_when_streams_end_or_clients_leave() {
    let h = with_limits(
        &[("openai", "t1", "mock-ok-one")],
        Limits {
            concurrency: Some(1),
            ..Limits::default()
        },
        None,
    )
    .await;
    // A stream holds the slot until its body ends.
    let r = h
        .call(
            "POST",
            "/v1/chat/completions",
            Some(&h.key),
            Body::from(chat(true).to_string()),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(h.post("/v1/chat/completions", &chat(false)).await.0, 429);
    assert_eq!(h.last_audit().reason.as_str(), "limit_concurrency");
    let _ = read(r).await;
    assert_eq!(h.post("/v1/chat/completions", &chat(false)).await.0, 200);
    // A client that goes away mid-stream frees it too.
    let r = h
        .call(
            "POST",
            "/v1/chat/completions",
            Some(&h.key),
            Body::from(chat(true).to_string()),
        )
        .await;
    drop(r);
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(h.post("/v1/chat/completions", &chat(false)).await.0, 200);
    let c = h
        .store
        .load_counters(&format!("key#{}", h.key_id))
        .await
        .unwrap();
    assert!(c.counters.inflight.is_empty());
}

#[tokio::test]
async fn an_upstream_failure_releases_the_whole_reservation() {
    let h = with_limits(
        &[("openai", "t1", "mock-500-x")],
        Limits {
            tpm: Some(100_000),
            budget_day_micros: Some(1_000_000),
            ..Limits::default()
        },
        None,
    )
    .await;
    assert_eq!(h.post("/v1/chat/completions", &chat(false)).await.0, 503);
    let c = h
        .store
        .load_counters(&format!("key#{}", h.key_id))
        .await
        .unwrap()
        .counters;
    assert_eq!((c.tokens_minute, c.spend_day), (0, 0));
    assert_eq!(c.requests, 1);
}

#[tokio::test]
async fn limits_fail_closed_when_the_counter_store_is_down() {
    let h = with_limits(
        &[("openai", "t1", "mock-ok-one")],
        Limits {
            rpm: Some(100),
            ..Limits::default()
        },
        None,
    )
    .await;
    // Authenticate once (cached), then take the stores down.
    assert_eq!(h.post("/v1/chat/completions", &chat(false)).await.0, 200);
    h.store.set_failing(true);
    let (status, _) = h.post("/v1/chat/completions", &chat(false)).await;
    assert_eq!(status, 503);
    assert_eq!(h.last_audit().reason.as_str(), "store_unavailable");
}

/// Another instance's writes, as the shared store sees them: the subject's counters replaced
/// at the next version.
async fn another_instance_sets_spend(h: &H, spend_day: u64) {
    use tollgate_core::ports::{CounterWrite, SwapOutcome};
    let subject = format!("key#{}", h.key_id);
    let cur = h.store.load_counters(&subject).await.unwrap();
    let mut counters = cur
        .counters
        .current(tollgate_core::clock::Clock::now_ms(&*h.clock));
    counters.spend_day = spend_day;
    let out = h
        .store
        .swap_counters(
            &[CounterWrite {
                subject,
                expected_version: cur.version,
                counters,
            }],
            u64::MAX,
        )
        .await
        .unwrap();
    assert_eq!(out, SwapOutcome::Applied);
}

#[tokio::test]
async fn a_budget_refusal_is_confirmed_on_the_stored_counters_not_a_remembered_state() {
    let h = with_limits(
        &[("openai", "t1", "mock-ok-one")],
        Limits {
            budget_day_micros: Some(100),
            ..Limits::default()
        },
        None,
    )
    .await;
    let mut body = chat(false);
    body["max_tokens"] = json!(100);
    assert_eq!(h.post("/v1/chat/completions", &body).await.0, 200);
    // Another instance reserves nearly all the budget: this one learns it by losing a race
    // and refuses on what it learnt.
    another_instance_sets_spend(&h, 99).await;
    assert_eq!(h.post("/v1/chat/completions", &body).await.0, 429);
    // That instance settles its request for far less. The spend this instance remembers
    // (99) is stale: refusing on it would be a false 429 until the cache expires.
    another_instance_sets_spend(&h, 5).await;
    let (status, text) = h.post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{text}");
}

#[tokio::test]
async fn a_request_cancelled_before_its_answer_is_released_and_audited() {
    let h = Arc::new(
        with_limits(
            &[("openai", "t1", "mock-slow1500-one")],
            Limits {
                concurrency: Some(1),
                budget_day_micros: Some(1_000_000),
                ..Limits::default()
            },
            None,
        )
        .await,
    );
    let subject = format!("key#{}", h.key_id);
    // An HTTP server drops the handler when its client goes away: abort it while the
    // provider is still thinking (its slot is taken, no answer yet).
    let call = tokio::spawn({
        let h = h.clone();
        async move { h.post("/v1/chat/completions", &chat(false)).await }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while h
        .store
        .load_counters(&subject)
        .await
        .unwrap()
        .counters
        .inflight
        .is_empty()
    {
        assert!(std::time::Instant::now() < deadline, "never admitted");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    // Settlement runs on the runtime (bounded wait: a lost settlement fails here).
    while h.audit.records().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no audit line");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let recs = h.audit.records();
    assert_eq!(recs.len(), 1, "exactly one audit line");
    assert_eq!(recs[0].reason.as_str(), "client_disconnected");
    let c = h.store.load_counters(&subject).await.unwrap().counters;
    assert!(c.inflight.is_empty(), "the slot is free: {c:?}");
    assert_eq!(c.spend_day, 0, "the reservation is released");
}

#[tokio::test]
async fn a_stream_cut_off_before_its_usage_is_charged_at_its_reservation() {
    let h = with_limits(
        &[("openai", "t1", "mock-break2-x")],
        Limits {
            budget_day_micros: Some(1_000_000),
            ..Limits::default()
        },
        None,
    )
    .await;
    let mut body = chat(true);
    body["max_tokens"] = json!(100);
    let (status, text) = h.post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200);
    assert!(text.contains("upstream_stream_interrupted"), "{text}");
    let a = h.last_audit();
    assert_eq!(a.reason.as_str(), "upstream_stream_broken");
    let charged = a.cost_usd.expect("charged at the reservation");
    let spent = h
        .store
        .load_counters(&format!("key#{}", h.key_id))
        .await
        .unwrap()
        .counters
        .spend_day;
    assert!(spent > 0, "not zero: the provider billed what it streamed");
    assert_eq!(spent, (charged * 1_000_000.0).round() as u64);
}

#[tokio::test]
async fn stored_prices_apply_within_the_cache_ttl_and_price_the_audit_line() {
    use tollgate_core::ports::PriceStore;
    use tollgate_core::pricing::{Price, PriceTable};
    let h = with_limits(
        &[("openai", "t1", "mock-ok-one")],
        Limits {
            budget_day_micros: Some(1_000_000),
            ..Limits::default()
        },
        None,
    )
    .await;
    assert_eq!(h.post("/v1/chat/completions", &chat(false)).await.0, 200);
    let a = h.last_audit();
    let (tin, tout) = (a.tokens_in.unwrap(), a.tokens_out.unwrap());
    let builtin = PriceTable::builtin()
        .lookup("gpt-4o-mini")
        .copied()
        .unwrap();
    assert_eq!(a.cost_usd, Some(builtin.cost(tin, tout) as f64 / 1e6));

    // An operator stores a table where gpt-4o-mini costs 100 times more.
    let mut t = PriceTable::builtin();
    let dear = Price {
        input: builtin.input * 100,
        output: builtin.output * 100,
        cached_input: None,
    };
    t.prices.insert("gpt-4o-mini".into(), dear);
    assert!(h.prices.store_prices(&t, 0).await.unwrap());
    // Within the TTL the cached table still applies...
    assert_eq!(h.post("/v1/chat/completions", &chat(false)).await.0, 200);
    assert_eq!(
        h.last_audit().cost_usd,
        Some(builtin.cost(tin, tout) as f64 / 1e6)
    );
    // ...after it, the stored one, read once and cached again.
    h.clock
        .advance_ms(GatewayConfig::default().key_cache_ttl_ms);
    assert_eq!(h.post("/v1/chat/completions", &chat(false)).await.0, 200);
    let a = h.last_audit();
    assert_eq!(a.cost_usd, Some(dear.cost(tin, tout) as f64 / 1e6));
    let reads = h.prices.ops.snapshot().0;
    assert_eq!(h.post("/v1/chat/completions", &chat(false)).await.0, 200);
    assert_eq!(
        h.prices.ops.snapshot().0,
        reads,
        "a warm request reads no prices"
    );
}

#[tokio::test]
async fn a_spend_budget_fails_closed_when_the_price_table_cannot_be_read() {
    let h = with_limits(
        &[("openai", "t1", "mock-ok-one")],
        Limits {
            budget_day_micros: Some(1_000_000),
            ..Limits::default()
        },
        None,
    )
    .await;
    h.prices.set_failing(true);
    let (status, _) = h.post("/v1/chat/completions", &chat(false)).await;
    assert_eq!(status, 503);
    assert_eq!(h.last_audit().reason.as_str(), "store_unavailable");
    assert!(h.calls().await.is_empty(), "nothing reached the provider");
    h.prices.set_failing(false);
    assert_eq!(h.post("/v1/chat/completions", &chat(false)).await.0, 200);
}

#[tokio::test]
async fn requests_without_a_spend_budget_go_through_when_the_price_table_is_down() {
    // A token-only limit, and no limit at all: neither needs the operators' prices.
    let h = with_limits(
        &[("openai", "t1", "mock-ok-one")],
        Limits {
            tokens_day: Some(1_000_000),
            ..Limits::default()
        },
        None,
    )
    .await;
    h.prices.set_failing(true);
    assert_eq!(h.post("/v1/chat/completions", &chat(false)).await.0, 200);
    let a = h.last_audit();
    assert!(
        a.cost_usd.is_some(),
        "priced with the built-in table for the audit line"
    );
    h.store.set_key_limits(&h.key_id, None).await.unwrap();
    h.clock
        .advance_ms(GatewayConfig::default().key_cache_ttl_ms);
    assert_eq!(h.post("/v1/chat/completions", &chat(false)).await.0, 200);
}

/// A second tenant with one key in the harness's store: the key.
async fn other_tenant_key(h: &H) -> String {
    h.store
        .put_tenant(&Tenant::new("globex", "Globex", "platform@globex.test", T0))
        .await
        .unwrap();
    let k = ClientKey::generate(KeyEnv::Test, &mut StdRng::seed_from_u64(43));
    let mut r = ClientKeyRecord::for_key(
        &k,
        "globex",
        "dev@globex.test",
        Peppers::parse(PEPPER).unwrap().digest_new(&k),
        T0,
    );
    r.expires_at = Some(T0 + 86_400_000);
    h.store.put_key(&r).await.unwrap();
    k.expose().to_owned()
}

#[tokio::test]
async fn a_tenant_cannot_take_more_than_its_share_of_a_pool() {
    use tollgate_core::records::{PoolConfig, Strategy};
    let h = setup(&[("openai", "t1", "mock-ok-one")]).await;
    h.store
        .set_pool_config(&PoolConfig {
            tenant_concurrency: Some(1),
            ..PoolConfig::new("openai", Strategy::RoundRobin)
        })
        .await
        .unwrap();
    let other = other_tenant_key(&h).await;
    // acme's stream holds acme's one slot in the pool until its body ends.
    let r = h
        .call(
            "POST",
            "/v1/chat/completions",
            Some(&h.key),
            Body::from(chat(true).to_string()),
        )
        .await;
    assert_eq!(r.status(), 200);
    let refused = h
        .call(
            "POST",
            "/v1/chat/completions",
            Some(&h.key),
            Body::from(chat(false).to_string()),
        )
        .await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["x-ratelimit-limit-concurrency"], "1");
    let (_, body) = read(refused).await;
    assert!(body.contains("share of the provider pool"), "{body}");
    assert_eq!(h.last_audit().reason.as_str(), "limit_pool_share");
    // Another tenant still gets through the same pool.
    let r2 = h
        .call(
            "POST",
            "/v1/chat/completions",
            Some(&other),
            Body::from(chat(false).to_string()),
        )
        .await;
    assert_eq!(r2.status(), 200);
    let _ = read(r2).await;
    // The slot comes back when acme's stream ends.
    let _ = read(r).await;
    assert_eq!(h.post("/v1/chat/completions", &chat(false)).await.0, 200);
    let c = h
        .store
        .load_counters("pool#openai#tenant#acme")
        .await
        .unwrap();
    assert!(c.counters.inflight.is_empty(), "every slot released");
    // Without a cap, nothing is counted for the pool.
    h.store
        .set_pool_config(&PoolConfig::new("openai", Strategy::RoundRobin))
        .await
        .unwrap();
    h.clock
        .advance_ms(GatewayConfig::default().pool_cache_ttl_ms);
    let before = h
        .store
        .load_counters("pool#openai#tenant#acme")
        .await
        .unwrap();
    assert_eq!(h.post("/v1/chat/completions", &chat(false)).await.0, 200);
    assert_eq!(
        h.store
            .load_counters("pool#openai#tenant#acme")
            .await
            .unwrap()
            .version,
        before.version
    );
}

#[tokio::test]
async fn a_canary_key_gets_a_bad_keys_401_costs_what_it_costs_and_is_audited_as_canary() {
    let h = setup_with(&[("openai", "t1", "mock-ok-one")], |c| {
        c.key_cache_ttl_ms = 0
    })
    .await;
    let canary = ClientKey::generate(KeyEnv::Live, &mut StdRng::seed_from_u64(99));
    h.store
        .put_key(&ClientKeyRecord {
            canary: true,
            name: "planted in acme/infra .env".into(),
            ..ClientKeyRecord::for_key(
                &canary,
                "acme",
                "security@acme.test",
                Peppers::parse(PEPPER).unwrap().digest_new(&canary),
                T0,
            )
        })
        .await
        .unwrap();
    // Warm the pepper so the canary and the unknown key start equal.
    h.post("/v1/chat/completions", &chat(false)).await;
    let unknown = ClientKey::generate(KeyEnv::Live, &mut StdRng::seed_from_u64(7));
    let before_calls = h.calls().await.len();
    let anthropic_body = json!({"model": "claude-3-5-haiku-latest", "max_tokens": 8,
        "messages": [{"role": "user", "content": "hi"}]});
    for (path, body) in [
        ("/v1/chat/completions", chat(false)),
        ("/v1/messages", anthropic_body),
    ] {
        let send = |key: String| {
            let req = Request::builder()
                .method("POST")
                .uri(path)
                .header("authorization", format!("Bearer {key}"))
                .header("x-api-key", key)
                .header("content-type", "application/json")
                .header("user-agent", " curl/8.5.0\t(probe) ")
                .body(Body::from(body.to_string()))
                .unwrap();
            h.app.clone().oneshot(req)
        };
        let bad = read(send(unknown.expose().to_owned()).await.unwrap()).await;
        let ops = h.store.ops.snapshot();
        let got = read(send(canary.expose().to_owned()).await.unwrap()).await;
        let after = h.store.ops.snapshot();
        assert_eq!(got, bad, "{path}: byte-identical to a bad key's 401");
        assert_eq!(got.0, 401);
        // What an unknown key costs: one key read, no write (no tenant read, no usage).
        assert_eq!((after.0 - ops.0, after.1 - ops.1), (1, 0), "{path}");
        let a = h.last_audit();
        assert_eq!(a.decision, Decision::Canary);
        assert_eq!(a.reason.as_str(), "canary");
        assert_eq!(a.key_id.as_deref(), Some(canary.key_id()));
        assert_eq!(a.tenant.as_deref(), Some("acme"));
        assert_eq!((a.store_reads, a.store_writes), (1, 0));
        assert!(a.route.is_some() && a.source_ip.is_none());
        assert_eq!(a.user_agent.as_deref(), Some("curl/8.5.0(probe)"));
        assert!(!a.to_line().contains(canary.expose()));
    }
    assert_eq!(h.calls().await.len(), before_calls, "no upstream call");
}

#[tokio::test]
async fn a_key_expiring_within_the_warning_window_is_flagged_in_the_audit_line() {
    // The test key expires one day after T0; the default window is 14 days.
    let h = setup(&[("openai", "t1", "mock-ok-one")]).await;
    assert_eq!(h.post("/v1/chat/completions", &chat(false)).await.0, 200);
    let a = h.last_audit();
    assert_eq!(a.key_expiring_in_days, Some(1));
    let emf: Value = serde_json::from_str(&a.to_emf_line(T0)).unwrap();
    assert_eq!(emf["key_expiring"], 1);
    h.clock.advance_ms(86_400_000 - 1);
    h.post("/v1/chat/completions", &chat(false)).await;
    assert_eq!(
        h.last_audit().key_expiring_in_days,
        Some(0),
        "less than a day"
    );

    // Warnings off (window 0), or a window shorter than what is left: no flag.
    for warn in [0, 12 * 3_600_000] {
        let h = setup_with(&[("openai", "t1", "mock-ok-one")], |c| {
            c.key_expiry_warn_ms = warn
        })
        .await;
        assert_eq!(h.post("/v1/chat/completions", &chat(false)).await.0, 200);
        let a = h.last_audit();
        assert_eq!(a.key_expiring_in_days, None, "{warn}");
        assert!(!a.to_line().contains("key_expiring_in_days"));
        let emf: Value = serde_json::from_str(&a.to_emf_line(T0)).unwrap();
        assert!(emf.get("key_expiring").is_none());
    }
}
