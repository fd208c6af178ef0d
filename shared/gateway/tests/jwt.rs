//! JWT callers through the whole request path: in-memory stores, an in-memory JWKS (and one
//! served over loopback HTTP), a fake clock and the bundled mock provider. Signing keys (RSA
//! and P-256) are generated when the tests run; nothing secret is checked in. Each test names
//! the behaviour it pins.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use axum::body::Body;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::Request;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tollgate_core::audit::{AuditRecord, Decision};
use tollgate_core::clock::FakeClock;
use tollgate_core::identity::{IssuerRecord, JwsAlg, TenantMapping, principal_key_id};
use tollgate_core::ports::{IssuerStore, PoolStore, Secret, SecretStore, TenantStore};
use tollgate_core::reason::Reason;
use tollgate_core::records::{ProviderKind, SecretRef, Tenant, TokenRecord};
use tollgate_gateway::{
    Gateway, GatewayConfig, HttpJwks, IdentityStores, MemoryAuditSink, Stores, router,
};
use tollgate_memory::{MemoryJwks, MemoryStore};
use tower::ServiceExt;

const T0: u64 = 1_800_000_000_000;
const ISS: &str = "https://idp.example.test";
const JWKS_URL: &str = "https://idp.example.test/.well-known/jwks.json";
const PEPPER: &str = r#"{"current":"1","v1":"unit-test-pepper-0123456789abcdefghijklmnop"}"#;

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A signing key made for this test run, and its public JWK.
enum SigningKey {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

impl SigningKey {
    fn rsa() -> Self {
        SigningKey::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).unwrap())
    }
    fn ec() -> Self {
        SigningKey::Ec(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap())
    }
    fn alg(&self) -> &'static str {
        match self {
            SigningKey::Rsa(_) => "RS256",
            SigningKey::Ec(_) => "ES256",
        }
    }
    fn jwk(&self, kid: &str) -> Value {
        match self {
            SigningKey::Rsa(k) => {
                let p = k.public_key();
                json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                       "n": b64(p.modulus().big_endian_without_leading_zero()),
                       "e": b64(p.exponent().big_endian_without_leading_zero())})
            }
            SigningKey::Ec(k) => {
                let point = k.public_key().as_ref();
                json!({"kty": "EC", "kid": kid, "use": "sig", "crv": "P-256",
                       "x": b64(&point[1..33]), "y": b64(&point[33..65])})
            }
        }
    }
    /// The public key's bytes, as an attacker would find them (for the HS256 confusion test).
    fn public_bytes(&self) -> Vec<u8> {
        match self {
            SigningKey::Rsa(k) => k.public_key().as_ref().to_vec(),
            SigningKey::Ec(k) => k.public_key().as_ref().to_vec(),
        }
    }
    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            SigningKey::Rsa(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &rng, msg, &mut sig).unwrap();
                sig
            }
            SigningKey::Ec(k) => k.sign(&rng, msg).unwrap().as_ref().to_vec(),
        }
    }
    /// A compact JWS over `claims` with header `alg`/`kid` as given.
    fn token_with(&self, header: &Value, claims: &Value) -> String {
        let signing_input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = self.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", b64(&sig))
    }
    fn token(&self, kid: &str, claims: &Value) -> String {
        self.token_with(
            &json!({"alg": self.alg(), "typ": "JWT", "kid": kid}),
            claims,
        )
    }
}

fn jwks(keys: &[(&SigningKey, &str)]) -> String {
    json!({"keys": keys.iter().map(|(k, kid)| k.jwk(kid)).collect::<Vec<_>>()}).to_string()
}

fn claims() -> Value {
    json!({"iss": ISS, "aud": "tollgate", "sub": "ci-runner-7", "iat": T0 / 1000,
           "nbf": T0 / 1000, "exp": T0 / 1000 + 600})
}

fn issuer(algs: Vec<JwsAlg>) -> IssuerRecord {
    let mut rec = IssuerRecord::new(
        ISS,
        vec!["tollgate".into()],
        JWKS_URL,
        algs,
        TenantMapping::Fixed {
            tenant_id: "acme".into(),
        },
        T0,
    );
    rec.policy.allowed_models = vec!["gpt-4o-mini".into()];
    rec
}

struct H {
    app: axum::Router,
    store: Arc<MemoryStore>,
    jwks: Arc<MemoryJwks>,
    audit: Arc<MemoryAuditSink>,
    clock: Arc<FakeClock>,
    mock: String,
}

async fn start_mock() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(tollgate_mock_provider::serve(
        l,
        tollgate_mock_provider::Config::default(),
    ));
    format!("http://{addr}")
}

async fn setup_with(
    issuer: IssuerRecord,
    jwks_src: Option<Arc<dyn tollgate_core::ports::JwksSource>>,
) -> H {
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
    store
        .put_token(&TokenRecord::new(
            "t1",
            "openai",
            ProviderKind::Openai,
            format!("{mock}/v1"),
            SecretRef::SecretsManager {
                secret_id: "tollgate/pool/t1".into(),
            },
            "ops@example.test",
            T0,
        ))
        .await
        .unwrap();
    store
        .put_secret("tollgate/pool/t1", &Secret::new("mock-ok-one"))
        .await
        .unwrap();
    store.put_issuer(&issuer).await.unwrap();
    let jwks = Arc::new(MemoryJwks::new());
    let clock = Arc::new(FakeClock::new(T0));
    let audit = Arc::new(MemoryAuditSink::default());
    let gw = Gateway::with_identity(
        GatewayConfig {
            upstream_timeout_ms: 2_000,
            ..GatewayConfig::default()
        },
        Stores::single(store.clone()),
        Some(IdentityStores {
            issuers: store.clone(),
            jwks: jwks_src.unwrap_or_else(|| jwks.clone()),
        }),
        clock.clone(),
        audit.clone(),
    )
    .unwrap();
    H {
        app: router(gw),
        store,
        jwks,
        audit,
        clock,
        mock,
    }
}

async fn setup(issuer: IssuerRecord) -> H {
    setup_with(issuer, None).await
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi there"}]})
}

impl H {
    async fn post(&self, bearer: &str, model: &str) -> (u16, String) {
        let req = Request::builder()
            .method("POST")
            .uri("/v1/chat/completions")
            .header("authorization", format!("Bearer {bearer}"))
            .header("content-type", "application/json")
            .body(Body::from(chat(model).to_string()))
            .unwrap();
        let r = self.app.clone().oneshot(req).await.unwrap();
        let status = r.status().as_u16();
        let b = axum::body::to_bytes(r.into_body(), 1 << 22).await.unwrap();
        (status, String::from_utf8_lossy(&b).into_owned())
    }

    async fn upstream_calls(&self) -> usize {
        let text = reqwest::get(format!("{}/_mock/calls", self.mock))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        serde_json::from_str::<Vec<Value>>(&text).unwrap().len()
    }

    fn last_audit(&self) -> AuditRecord {
        self.audit.records().last().cloned().expect("an audit line")
    }
}

#[tokio::test]
async fn rs256_token_is_accepted_under_the_issuers_policy() {
    let key = SigningKey::rsa();
    let h = setup(issuer(vec![JwsAlg::RS256])).await;
    h.jwks.publish(JWKS_URL, jwks(&[(&key, "k1")]));
    let token = key.token("k1", &claims());

    let (status, body) = h.post(&token, "gpt-4o-mini").await;
    assert_eq!(status, 200, "{body}");
    let a = h.last_audit();
    assert_eq!((a.decision, a.reason), (Decision::Allow, Reason::Ok));
    assert_eq!(a.principal.as_deref(), Some("ci-runner-7"));
    assert_eq!(a.issuer.as_deref(), Some(ISS));
    assert_eq!(a.tenant.as_deref(), Some("acme"));
    assert_eq!(
        a.key_id.as_deref(),
        Some(principal_key_id(ISS, "ci-runner-7").as_str())
    );
    assert!(!a.to_line().contains(&token));
    assert_eq!(h.upstream_calls().await, 1);

    // The issuer's model allow-list applies like a key's.
    let (status, body) = h.post(&token, "gpt-4o").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(h.last_audit().reason, Reason::ModelNotAllowed);
    assert_eq!(h.upstream_calls().await, 1);
}

#[tokio::test]
async fn es256_token_is_accepted_and_the_jwks_is_fetched_once_within_its_ttl() {
    let key = SigningKey::ec();
    let h = setup(issuer(vec![JwsAlg::ES256])).await;
    h.jwks.publish(JWKS_URL, jwks(&[(&key, "ec-1")]));
    let token = key.token("ec-1", &claims());
    for _ in 0..3 {
        let (status, body) = h.post(&token, "gpt-4o-mini").await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(h.jwks.fetches(), 1);
    // After the TTL the set is fetched again.
    h.clock
        .advance_ms(GatewayConfig::default().jwks_cache_ttl_ms);
    let mut c = claims();
    c["exp"] = json!(h.clock_s() + 600);
    let (status, body) = h.post(&key.token("ec-1", &c), "gpt-4o-mini").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(h.jwks.fetches(), 2);
}

impl H {
    fn clock_s(&self) -> u64 {
        use tollgate_core::clock::Clock;
        self.clock.now_ms() / 1000
    }
}

#[tokio::test]
async fn every_bad_token_gets_the_same_401_with_its_own_audit_reason_and_no_upstream_call() {
    let key = SigningKey::rsa();
    let other = SigningKey::rsa();
    let h = setup(issuer(vec![JwsAlg::RS256])).await;
    h.jwks.publish(JWKS_URL, jwks(&[(&key, "k1")]));
    let good = key.token("k1", &claims());
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims();
        f(&mut c);
        key.token("k1", &c)
    };
    let unsigned = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "kid": "k1"}).to_string().as_bytes()),
        b64(claims().to_string().as_bytes())
    );
    let hs256 = jsonwebtoken::encode(
        &{
            let mut hd = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
            hd.kid = Some("k1".into());
            hd
        },
        &claims(),
        &jsonwebtoken::EncodingKey::from_secret(&key.public_bytes()),
    )
    .unwrap();
    let tampered = {
        let parts: Vec<&str> = good.split('.').collect();
        let mut c = claims();
        c["sub"] = json!("admin");
        format!(
            "{}.{}.{}",
            parts[0],
            b64(c.to_string().as_bytes()),
            parts[2]
        )
    };
    let cases: Vec<(&str, String, Reason)> = vec![
        (
            "expired",
            with(&|c| c["exp"] = json!(T0 / 1000 - 61)),
            Reason::JwtExpired,
        ),
        (
            "not yet valid",
            with(&|c| c["nbf"] = json!(T0 / 1000 + 3600)),
            Reason::JwtNotYetValid,
        ),
        (
            "wrong audience",
            with(&|c| c["aud"] = json!("someone-else")),
            Reason::JwtWrongAudience,
        ),
        (
            "wrong issuer",
            with(&|c| c["iss"] = json!("https://evil.example.test")),
            Reason::JwtIssuerUnknown,
        ),
        (
            "unknown kid",
            other.token("k9", &claims()),
            Reason::JwtUnknownKid,
        ),
        (
            "signed by another key under a known kid",
            other.token("k1", &claims()),
            Reason::JwtBadSignature,
        ),
        ("alg none", unsigned, Reason::JwtAlgNotAllowed),
        (
            "HS256 with the public key as secret",
            hs256,
            Reason::JwtAlgNotAllowed,
        ),
        ("tampered payload", tampered, Reason::JwtBadSignature),
        (
            "no principal",
            with(&|c| {
                c.as_object_mut().unwrap().remove("sub");
            }),
            Reason::JwtPrincipalMissing,
        ),
        ("garbage", "abc.def.ghi".into(), Reason::JwtMalformed),
    ];
    let (_, uniform) = h.post("tgk_test_nonsense", "gpt-4o-mini").await;
    for (what, token, reason) in cases {
        let (status, body) = h.post(&token, "gpt-4o-mini").await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(
            body, uniform,
            "{what}: the 401 must not say which check failed"
        );
        let a = h.last_audit();
        assert_eq!(a.reason, reason, "{what}");
        assert_eq!(a.decision, Decision::Deny, "{what}");
        assert!(!a.to_line().contains(&token), "{what}");
    }
    assert_eq!(h.upstream_calls().await, 0);
    // The unknown kid cost one refresh; nothing else re-fetched.
    assert_eq!(h.jwks.fetches(), 2);
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_by_one_refresh_and_unknown_kids_are_rate_limited() {
    let old = SigningKey::rsa();
    let new = SigningKey::rsa();
    let h = setup(issuer(vec![JwsAlg::RS256])).await;
    h.jwks.publish(JWKS_URL, jwks(&[(&old, "2024")]));
    let (status, _) = h.post(&old.token("2024", &claims()), "gpt-4o-mini").await;
    assert_eq!(status, 200);
    assert_eq!(h.jwks.fetches(), 1);

    // The issuer rotates: the cached set does not know the new kid yet.
    h.jwks
        .publish(JWKS_URL, jwks(&[(&old, "2024"), (&new, "2025")]));
    let (status, body) = h.post(&new.token("2025", &claims()), "gpt-4o-mini").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(h.jwks.fetches(), 2);

    // A made-up kid right after: refused without another fetch.
    let (status, _) = h
        .post(&new.token("made-up", &claims()), "gpt-4o-mini")
        .await;
    assert_eq!(status, 401);
    assert_eq!(h.last_audit().reason, Reason::JwtUnknownKid);
    assert_eq!(h.jwks.fetches(), 2);
    // Once the refresh interval has passed, an unknown kid may refresh again.
    h.clock
        .advance_ms(GatewayConfig::default().jwks_refresh_min_ms);
    let (status, _) = h
        .post(&new.token("made-up", &claims()), "gpt-4o-mini")
        .await;
    assert_eq!(status, 401);
    assert_eq!(h.jwks.fetches(), 3);
}

#[tokio::test]
async fn an_unreachable_jwks_fails_closed_with_the_uniform_401() {
    let key = SigningKey::ec();
    let h = setup(issuer(vec![JwsAlg::ES256])).await;
    h.jwks.publish(JWKS_URL, jwks(&[(&key, "k1")]));
    h.jwks.set_failing(true);
    let token = key.token("k1", &claims());
    let (_, uniform) = h.post("tgk_test_nonsense", "gpt-4o-mini").await;
    let (status, body) = h.post(&token, "gpt-4o-mini").await;
    assert_eq!(status, 401);
    assert_eq!(body, uniform);
    let a = h.last_audit();
    assert_eq!(a.reason, Reason::JwksUnavailable);
    assert_eq!(a.decision, Decision::Error, "an outage, not a bad caller");
    // A failed fetch is not repeated by every request until the refresh interval passed.
    let _ = h.post(&token, "gpt-4o-mini").await;
    assert_eq!(h.jwks.fetches(), 1);
    h.jwks.set_failing(false);
    h.clock
        .advance_ms(GatewayConfig::default().jwks_refresh_min_ms);
    let (status, body) = h.post(&token, "gpt-4o-mini").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(h.upstream_calls().await, 1);
}

#[tokio::test]
async fn a_tenant_claim_must_name_an_existing_tenant() {
    let key = SigningKey::rsa();
    let mut iss = issuer(vec![JwsAlg::RS256]);
    iss.tenant = TenantMapping::Claim {
        claim: "org".into(),
        allowed: vec![],
    };
    let h = setup(iss).await;
    h.jwks.publish(JWKS_URL, jwks(&[(&key, "k1")]));
    let mut c = claims();
    c["org"] = json!("acme");
    let (status, body) = h.post(&key.token("k1", &c), "gpt-4o-mini").await;
    assert_eq!(status, 200, "{body}");
    c["org"] = json!("globex");
    let (status, _) = h.post(&key.token("k1", &c), "gpt-4o-mini").await;
    assert_eq!(status, 401);
    assert_eq!(h.last_audit().reason, Reason::TenantMissing);
    c.as_object_mut().unwrap().remove("org");
    let (status, _) = h.post(&key.token("k1", &c), "gpt-4o-mini").await;
    assert_eq!(status, 401);
    assert_eq!(h.last_audit().reason, Reason::JwtTenantClaimMissing);
    assert_eq!(h.upstream_calls().await, 1);
    assert_eq!(h.store.list_tenants().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_gateway_without_issuers_refuses_jwts_without_a_store_call() {
    let key = SigningKey::rsa();
    let h = setup(issuer(vec![JwsAlg::RS256])).await;
    let store = h.store.clone();
    let gw = Gateway::new(
        GatewayConfig::default(),
        Stores {
            limits: None,
            prices: None,
            ..Stores::single(store.clone())
        },
        h.clock.clone(),
        h.audit.clone(),
    )
    .unwrap();
    let h = H {
        app: router(gw),
        ..h
    };
    let (status, _) = h.post(&key.token("k1", &claims()), "gpt-4o-mini").await;
    assert_eq!(status, 401);
    let a = h.last_audit();
    assert_eq!(a.reason, Reason::JwtIssuerUnknown);
    assert_eq!((a.store_reads, a.store_writes), (0, 0));
}

#[tokio::test]
async fn the_http_jwks_source_reads_a_key_set_served_on_loopback() {
    let key = SigningKey::ec();
    let doc = jwks(&[(&key, "k1")]);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", l.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let doc = doc.clone();
            async move { doc }
        }),
    );
    tokio::spawn(async move { axum::serve(l, app).await });
    let mut iss = issuer(vec![JwsAlg::ES256]);
    iss.jwks = tollgate_core::identity::JwksLocation::Url { url };
    let http = Arc::new(HttpJwks::new(Duration::from_secs(5)).unwrap());
    let h = setup_with(iss, Some(http)).await;
    let (status, body) = h.post(&key.token("k1", &claims()), "gpt-4o-mini").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(h.last_audit().issuer.as_deref(), Some(ISS));
}

const DISCOVERY_URL: &str = "https://idp.example.test/.well-known/openid-configuration";

fn discovery(issuer: &str, jwks_uri: &str) -> String {
    json!({"issuer": issuer, "jwks_uri": jwks_uri, "id_token_signing_alg_values_supported": ["RS256"]})
        .to_string()
}

#[tokio::test]
async fn discovery_finds_the_key_set_and_is_cached_with_it() {
    let old = SigningKey::rsa();
    let new = SigningKey::rsa();
    let mut iss = issuer(vec![JwsAlg::RS256]);
    iss.jwks = tollgate_core::identity::JwksLocation::Discovery;
    let h = setup(iss).await;
    let keys_url = "https://keys.idp.example.test/v1/keys";
    h.jwks.publish(DISCOVERY_URL, discovery(ISS, keys_url));
    h.jwks.publish(keys_url, jwks(&[(&old, "a")]));
    let (status, body) = h.post(&old.token("a", &claims()), "gpt-4o-mini").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(h.jwks.fetches(), 2, "discovery document, then the key set");
    let (status, _) = h.post(&old.token("a", &claims()), "gpt-4o-mini").await;
    assert_eq!(status, 200);
    assert_eq!(h.jwks.fetches(), 2, "both cached");
    // Rotation: an unknown kid refreshes both once.
    h.jwks.publish(keys_url, jwks(&[(&old, "a"), (&new, "b")]));
    let (status, _) = h.post(&new.token("b", &claims()), "gpt-4o-mini").await;
    assert_eq!(status, 200);
    assert_eq!(h.jwks.fetches(), 4);
    // After the TTL both are read again.
    h.clock
        .advance_ms(GatewayConfig::default().jwks_cache_ttl_ms + 1);
    let mut c = claims();
    c["exp"] = json!(T0 / 1000 + 3600);
    let (status, _) = h.post(&new.token("b", &c), "gpt-4o-mini").await;
    assert_eq!(status, 200);
    assert_eq!(h.jwks.fetches(), 6);
    assert_eq!(h.upstream_calls().await, 4);
}

#[tokio::test]
async fn a_discovery_document_for_another_issuer_or_with_plain_http_keys_fails_closed() {
    let key = SigningKey::rsa();
    let evil_keys = "https://evil.example.test/keys";
    for (doc, why) in [
        (
            discovery("https://evil.example.test", evil_keys),
            "names another issuer",
        ),
        (
            discovery(&format!("{ISS}/"), evil_keys),
            "issuer differs by a slash",
        ),
        (
            discovery(ISS, "http://keys.example.test/k"),
            "plain http jwks_uri",
        ),
        (json!({"issuer": ISS}).to_string(), "no jwks_uri"),
        ("<html>".to_owned(), "not JSON"),
    ] {
        let mut iss = issuer(vec![JwsAlg::RS256]);
        iss.jwks = tollgate_core::identity::JwksLocation::Discovery;
        let h = setup(iss).await;
        h.jwks.publish(DISCOVERY_URL, doc);
        h.jwks.publish(evil_keys, jwks(&[(&key, "k1")]));
        h.jwks
            .publish("http://keys.example.test/k", jwks(&[(&key, "k1")]));
        let (_, uniform) = h.post("tgk_test_nonsense", "gpt-4o-mini").await;
        let (status, body) = h.post(&key.token("k1", &claims()), "gpt-4o-mini").await;
        assert_eq!(status, 401, "{why}");
        assert_eq!(body, uniform, "{why}");
        let a = h.last_audit();
        assert_eq!(a.reason, Reason::JwksUnavailable, "{why}");
        assert_eq!(a.decision, Decision::Error, "{why}");
        assert_eq!(h.jwks.fetches(), 1, "{why}: the key set was never fetched");
        assert_eq!(h.upstream_calls().await, 0, "{why}");
    }
}
