//! The tenant management API (`/tollgate/v1/…`) through the whole handler: in-memory stores,
//! an in-memory JWK Set with a P-256 key generated when the test runs, a fake clock. Pins the
//! isolation promises: an admin of one tenant sees and touches only that tenant's keys, by
//! whatever path, id or body it sends; a static key never gets in; an identity without the
//! admin role gets 403; every answer is audited.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use axum::body::Body;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::Request;
use rand::{SeedableRng, rngs::StdRng};
use serde_json::{Value, json};
use std::sync::Arc;
use tollgate_core::audit::{AuditRecord, Decision};
use tollgate_core::auth::Peppers;
use tollgate_core::clock::FakeClock;
use tollgate_core::identity::{ClaimRule, IssuerRecord, JwsAlg, TenantMapping};
use tollgate_core::key::{ClientKey, KeyEnv};
use tollgate_core::ports::{IssuerStore, KeyStore, Secret, SecretStore, TenantStore};
use tollgate_core::reason::Reason;
use tollgate_core::records::{ClientKeyRecord, KeyStatus, Tenant};
use tollgate_gateway::{Gateway, GatewayConfig, IdentityStores, MemoryAuditSink, Stores, router};
use tollgate_memory::{MemoryJwks, MemoryStore};
use tower::ServiceExt;

const T0: u64 = 1_800_000_000_000;
const ISS: &str = "https://idp.example.test";
const JWKS_URL: &str = "https://idp.example.test/jwks";
const PEPPER: &str = r#"{"current":"1","v1":"unit-test-pepper-0123456789abcdefghijklmnop"}"#;

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

struct Signer(EcdsaKeyPair);

impl Signer {
    fn new() -> Self {
        Signer(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap())
    }
    fn jwks(&self) -> String {
        let p = self.0.public_key().as_ref();
        json!({"keys": [{"kty": "EC", "kid": "k1", "crv": "P-256", "use": "sig",
                         "x": b64(&p[1..33]), "y": b64(&p[33..65])}]})
        .to_string()
    }
    fn token(&self, claims: Value) -> String {
        let head = json!({"alg": "ES256", "typ": "JWT", "kid": "k1"});
        let input = format!(
            "{}.{}",
            b64(head.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = self.0.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", b64(sig.as_ref()))
    }
}

/// A token for tenant `org`, an admin when `groups` holds `tg-admins`.
fn claims(sub: &str, org: &str, groups: &[&str]) -> Value {
    json!({"iss": ISS, "aud": "tollgate", "sub": sub, "org": org, "groups": groups,
           "iat": T0 / 1000, "exp": T0 / 1000 + 600})
}

struct H {
    app: axum::Router,
    store: Arc<MemoryStore>,
    audit: Arc<MemoryAuditSink>,
    signer: Signer,
    /// tenant → (key id, full key)
    keys: Vec<(String, String, String)>,
}

async fn setup() -> H {
    let store = Arc::new(MemoryStore::new());
    store
        .put_secret("tollgate/pepper", &Secret::new(PEPPER))
        .await
        .unwrap();
    let peppers = Peppers::parse(PEPPER).unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    let mut keys = Vec::new();
    for t in ["acme", "globex"] {
        store
            .put_tenant(&Tenant::new(t, t, "plat@example.test", T0))
            .await
            .unwrap();
        for n in 0..2 {
            let k = ClientKey::generate(KeyEnv::Test, &mut rng);
            let mut r = ClientKeyRecord::for_key(
                &k,
                t,
                format!("dev{n}@{t}.test"),
                peppers.digest_new(&k),
                T0 + n,
            );
            r.name = format!("{t}-{n}");
            store.put_key(&r).await.unwrap();
            keys.push((t.to_owned(), k.key_id().to_owned(), k.expose().to_owned()));
        }
    }
    let mut iss = IssuerRecord::new(
        ISS,
        vec!["tollgate".into()],
        JWKS_URL,
        vec![JwsAlg::ES256],
        TenantMapping::Claim {
            claim: "org".into(),
            allowed: vec!["acme".into(), "globex".into()],
        },
        T0,
    );
    iss.tenant_admin = Some(ClaimRule::Contains {
        claim: "groups".into(),
        value: "tg-admins".into(),
    });
    store.put_issuer(&iss).await.unwrap();
    let signer = Signer::new();
    let jwks = Arc::new(MemoryJwks::new());
    jwks.publish(JWKS_URL, signer.jwks());
    let audit = Arc::new(MemoryAuditSink::default());
    let gw = Gateway::with_identity(
        GatewayConfig::default(),
        Stores::single(store.clone()),
        Some(IdentityStores {
            issuers: store.clone(),
            jwks,
        }),
        Arc::new(FakeClock::new(T0)),
        audit.clone(),
    )
    .unwrap();
    H {
        app: router(gw),
        store,
        audit,
        signer,
        keys,
    }
}

impl H {
    fn admin(&self, org: &str) -> String {
        self.signer.token(claims(
            &format!("admin@{org}"),
            org,
            &["staff", "tg-admins"],
        ))
    }

    fn key_of(&self, tenant: &str, n: usize) -> (String, String) {
        let (_, id, full) = self
            .keys
            .iter()
            .filter(|(t, _, _)| t == tenant)
            .nth(n)
            .unwrap();
        (id.clone(), full.clone())
    }

    async fn call(&self, method: &str, path: &str, bearer: &str, body: &str) -> (u16, Value) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {bearer}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap();
        let r = self.app.clone().oneshot(req).await.unwrap();
        let status = r.status().as_u16();
        let b = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&b).unwrap_or(Value::Null))
    }

    fn last_audit(&self) -> AuditRecord {
        self.audit.records().last().cloned().unwrap()
    }
}

#[tokio::test]
async fn an_admin_lists_and_reads_only_their_own_tenants_keys() {
    let h = setup().await;
    let (status, body) = h
        .call("GET", "/tollgate/v1/keys", &h.admin("acme"), "")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tenant_id"], "acme");
    let keys = body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    for k in keys {
        assert!(k["name"].as_str().unwrap().starts_with("acme-"));
        assert!(k.get("digest_hex").is_none() && k.get("pepper_version").is_none());
    }
    let text = body.to_string();
    for (_, _, full) in &h.keys {
        assert!(!text.contains(full.as_str()), "a full key in a listing");
    }
    let a = h.last_audit();
    assert_eq!(a.route.as_deref(), Some("manage.keys.list"));
    assert_eq!((a.decision, a.status), (Decision::Allow, 200));
    assert_eq!(a.tenant.as_deref(), Some("acme"));
    assert_eq!(a.issuer.as_deref(), Some(ISS));
    assert_eq!(a.principal.as_deref(), Some("admin@acme"));

    let (own, _) = h.key_of("acme", 0);
    let (status, body) = h
        .call(
            "GET",
            &format!("/tollgate/v1/keys/{own}"),
            &h.admin("acme"),
            "",
        )
        .await;
    assert_eq!((status, body["key_id"].as_str()), (200, Some(own.as_str())));
}

#[tokio::test]
async fn another_tenants_key_is_unreachable_by_id_path_or_body() {
    let h = setup().await;
    let acme = h.admin("acme");
    let (theirs, theirs_full) = h.key_of("globex", 0);
    let unknown = h
        .call("GET", "/tollgate/v1/keys/ZZZZZZZZZZZZ", &acme, "")
        .await;
    let attempts = [
        ("GET", format!("/tollgate/v1/keys/{theirs}"), String::new()),
        (
            "POST",
            format!("/tollgate/v1/keys/{theirs}/revoke"),
            json!({"tenant_id": "globex"}).to_string(),
        ),
        (
            "GET",
            format!("/tollgate/v1/keys/{theirs}?tenant=globex"),
            String::new(),
        ),
        (
            "GET",
            format!("/tollgate/v1/keys/%2e%2e/{theirs}"),
            String::new(),
        ),
        (
            "GET",
            format!("/tollgate/v1/keys/../keys/{theirs}"),
            String::new(),
        ),
        (
            "GET",
            format!("/tollgate/v1/tenants/globex/keys/{theirs}"),
            String::new(),
        ),
        ("GET", "/tollgate/v1/keys/globex".to_owned(), String::new()),
    ];
    for (method, path, body) in &attempts {
        let (status, resp) = h.call(method, path, &acme, body).await;
        assert!(
            status == 404 || status == 405,
            "{method} {path}: {status} {resp}"
        );
        assert!(!resp.to_string().contains(&theirs), "{method} {path}");
    }
    // Another tenant's key id answers exactly like an id nobody has.
    let (status, body) = h
        .call("GET", &format!("/tollgate/v1/keys/{theirs}"), &acme, "")
        .await;
    assert_eq!((status, &body), (unknown.0, &unknown.1));
    assert_eq!(h.last_audit().reason, Reason::ManagedKeyNotFound);
    // The listing is acme's alone, whatever the query says.
    let (_, body) = h
        .call("GET", "/tollgate/v1/keys?tenant=globex", &acme, "")
        .await;
    assert_eq!(body["tenant_id"], "acme");
    // globex's key is untouched and still works on the provider routes' authentication.
    let rec = h.store.get_key(&theirs).await.unwrap().unwrap();
    assert_eq!(rec.status, KeyStatus::Active);
    assert!(theirs_full.starts_with("tgk_test_"));
    // Pools and issuers are not there at all.
    for path in [
        "/tollgate/v1/pools",
        "/tollgate/v1/issuers",
        "/tollgate/v1/tenants",
    ] {
        let (status, _) = h.call("GET", path, &acme, "").await;
        assert_eq!(status, 404, "{path}");
    }
}

#[tokio::test]
async fn an_admin_revokes_their_own_key_and_it_stops_working_at_once() {
    let h = setup().await;
    let (id, full) = h.key_of("acme", 1);
    let chat = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]});
    // Before: the key authenticates (no pool configured, so it fails later, not with 401).
    let (status, _) = h
        .call("POST", "/v1/chat/completions", &full, &chat.to_string())
        .await;
    assert_ne!(status, 401);
    let (status, body) = h
        .call(
            "POST",
            &format!("/tollgate/v1/keys/{id}/revoke"),
            &h.admin("acme"),
            "",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "revoked");
    assert_eq!(h.last_audit().route.as_deref(), Some("manage.keys.revoke"));
    assert_eq!(h.last_audit().store_writes, 1);
    let rec = h.store.get_key(&id).await.unwrap().unwrap();
    assert_eq!(rec.status, KeyStatus::Revoked);
    let (status, _) = h
        .call("POST", "/v1/chat/completions", &full, &chat.to_string())
        .await;
    assert_eq!(status, 401);
    assert_eq!(h.last_audit().reason, Reason::Revoked);
    // Revoking again changes nothing and writes nothing.
    let (status, _) = h
        .call(
            "POST",
            &format!("/tollgate/v1/keys/{id}/revoke"),
            &h.admin("acme"),
            "",
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(h.last_audit().store_writes, 0);
}

#[tokio::test]
async fn static_keys_and_non_admins_never_get_in() {
    let h = setup().await;
    let (_, full) = h.key_of("acme", 0);
    let (status, body) = h.call("GET", "/tollgate/v1/keys", &full, "").await;
    assert_eq!(status, 401);
    let (_, uniform) = h
        .call("GET", "/tollgate/v1/keys", "tgk_test_nonsense", "")
        .await;
    assert_eq!(
        body, uniform,
        "a valid key learns nothing more than an invalid one"
    );
    let a = h.last_audit();
    assert_eq!(a.reason, Reason::ManagementNeedsIdentity);
    assert_eq!((a.store_reads, a.store_writes), (0, 0));
    let (status, _) = h.call("GET", "/tollgate/v1/keys", &full, "").await;
    assert_eq!(status, 401);
    assert_eq!(h.last_audit().reason, Reason::ManagementNeedsIdentity);

    // A verified identity of the tenant without the admin group: 403, nothing read.
    let dev = h.signer.token(claims("dev@acme", "acme", &["staff"]));
    let (status, _) = h.call("GET", "/tollgate/v1/keys", &dev, "").await;
    assert_eq!(status, 403);
    assert_eq!(h.last_audit().reason, Reason::NotTenantAdmin);
    let (id, _) = h.key_of("acme", 0);
    let (status, _) = h
        .call("POST", &format!("/tollgate/v1/keys/{id}/revoke"), &dev, "")
        .await;
    assert_eq!(status, 403);
    assert_eq!(
        h.store.get_key(&id).await.unwrap().unwrap().status,
        KeyStatus::Active
    );
    // A token naming a tenant outside the issuer's list is refused before any role check.
    let other = h.admin("initech");
    let (status, _) = h.call("GET", "/tollgate/v1/keys", &other, "").await;
    assert_eq!(status, 401);
    assert_eq!(h.last_audit().reason, Reason::JwtTenantNotAllowed);
    // No bearer at all.
    let (status, _) = h.call("GET", "/tollgate/v1/keys", "", "").await;
    assert_eq!(status, 401);
    let n = h.audit.records().len();
    assert!(
        h.audit
            .records()
            .iter()
            .all(|a| a.decision != Decision::Allow)
    );
    assert!(n >= 6);
}

#[tokio::test]
async fn the_tenant_reads_its_own_policy() {
    let h = setup().await;
    let (status, body) = h
        .call("GET", "/tollgate/v1/tenant", &h.admin("globex"), "")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tenant_id"], "globex");
    let (status, _) = h
        .call("POST", "/tollgate/v1/tenant", &h.admin("globex"), "{}")
        .await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn an_admin_issues_a_key_for_their_own_tenant_only_and_it_works() {
    let h = setup().await;
    let body = json!({"name": "ci", "env": "test", "expires_in_days": 30}).to_string();
    let (status, out) = h
        .call("POST", "/tollgate/v1/keys", &h.admin("acme"), &body)
        .await;
    assert_eq!(status, 201, "{out}");
    assert_eq!(out["tenant_id"], "acme");
    assert_eq!(
        out["owner"], "admin@acme",
        "the admin's principal by default"
    );
    let full = out["key"].as_str().unwrap().to_owned();
    assert!(full.starts_with("tgk_test_"));
    let id = out["key_id"].as_str().unwrap();
    let rec = h.store.get_key(id).await.unwrap().unwrap();
    assert_eq!(rec.tenant_id, "acme");
    assert_eq!(rec.expires_at, Some(T0 + 30 * 86_400_000));
    assert!(!rec.digest_hex.is_empty() && !rec.digest_hex.contains(&full));
    let a = h.last_audit();
    assert_eq!(a.route.as_deref(), Some("manage.keys.issue"));
    assert_eq!((a.status, a.store_writes), (201, 1));
    assert!(
        !a.to_line().contains(&full),
        "the audit line never carries the key"
    );
    // The new key authenticates on the provider routes.
    let chat = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]});
    let (status, _) = h
        .call("POST", "/v1/chat/completions", &full, &chat.to_string())
        .await;
    assert_ne!(status, 401);
    // It is listed for acme and not for globex.
    let (_, acme) = h
        .call("GET", "/tollgate/v1/keys", &h.admin("acme"), "")
        .await;
    assert_eq!(acme["keys"].as_array().unwrap().len(), 3);
    let (_, globex) = h
        .call("GET", "/tollgate/v1/keys", &h.admin("globex"), "")
        .await;
    assert_eq!(globex["keys"].as_array().unwrap().len(), 2);

    // A body naming another tenant is refused, not ignored; nothing is stored.
    let before = h.store.list_keys(None).await.unwrap().len();
    for body in [
        json!({"tenant_id": "globex"}),
        json!({"expires_in_days": 3650}),
    ] {
        let (status, out) = h
            .call(
                "POST",
                "/tollgate/v1/keys",
                &h.admin("acme"),
                &body.to_string(),
            )
            .await;
        assert_eq!(status, 400, "{out}");
        assert_eq!(h.last_audit().reason, Reason::ManagementBadRequest);
    }
    let dev = h.signer.token(claims("dev@acme", "acme", &["staff"]));
    let (status, _) = h.call("POST", "/tollgate/v1/keys", &dev, "{}").await;
    assert_eq!(status, 403);
    let (_, k) = h.key_of("acme", 0);
    let (status, _) = h.call("POST", "/tollgate/v1/keys", &k, "{}").await;
    assert_eq!(status, 401);
    assert_eq!(h.store.list_keys(None).await.unwrap().len(), before);
}

#[tokio::test]
async fn usage_is_read_for_the_own_tenant_and_its_keys_only() {
    use tollgate_core::limits::Limits;
    let h = setup().await;
    h.store
        .set_tenant_limits(
            "acme",
            Some(&Limits {
                rpm: Some(100),
                ..Limits::default()
            }),
        )
        .await
        .unwrap();
    let (own, own_full) = h.key_of("acme", 0);
    h.store
        .set_key_limits(
            &own,
            Some(&Limits {
                rpm: Some(5),
                ..Limits::default()
            }),
        )
        .await
        .unwrap();
    // One request under the key counts against both (no pool: it fails after admission).
    let chat = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]});
    h.call("POST", "/v1/chat/completions", &own_full, &chat.to_string())
        .await;
    let (status, body) = h
        .call("GET", "/tollgate/v1/usage", &h.admin("acme"), "")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tenant_id"], "acme");
    let rpm = &body["usage"][0];
    assert_eq!(
        (rpm["limit"].as_str(), rpm["max"].as_u64()),
        (Some("rpm"), Some(100))
    );
    let (status, body) = h
        .call(
            "GET",
            &format!("/tollgate/v1/keys/{own}/usage"),
            &h.admin("acme"),
            "",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["usage"][0]["max"], 5);
    assert_eq!(body["usage"][0]["used"], 1);
    let (theirs, _) = h.key_of("globex", 0);
    let (status, _) = h
        .call(
            "GET",
            &format!("/tollgate/v1/keys/{theirs}/usage"),
            &h.admin("acme"),
            "",
        )
        .await;
    assert_eq!(status, 404);
    // globex sees its own (unlimited) tenant, not acme's numbers.
    let (_, body) = h
        .call("GET", "/tollgate/v1/usage", &h.admin("globex"), "")
        .await;
    assert_eq!(body["tenant_id"], "globex");
    assert!(
        body["usage"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["max"].is_null())
    );
}

#[tokio::test]
async fn an_admin_rotates_a_key_and_the_old_one_is_marked_during_the_overlap() {
    let h = setup().await;
    let (old, old_full) = h.key_of("acme", 0);
    let (status, out) = h
        .call(
            "POST",
            &format!("/tollgate/v1/keys/{old}/rotate"),
            &h.admin("acme"),
            r#"{"overlap_hours": 2}"#,
        )
        .await;
    assert_eq!(status, 201, "{out}");
    let new_full = out["key"].as_str().unwrap().to_owned();
    let new_id = out["key_id"].as_str().unwrap().to_owned();
    assert_eq!(out["rotated_from"], old.as_str());
    let o = h.store.get_key(&old).await.unwrap().unwrap();
    assert_eq!(o.rotated_to.as_deref(), Some(new_id.as_str()));
    assert_eq!(o.expires_at, Some(T0 + 2 * 3_600_000));
    assert!(!h.last_audit().to_line().contains(&new_full));
    // Both keys work; the old key's audit line names its successor.
    let chat = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]});
    let (status, _) = h
        .call("POST", "/v1/chat/completions", &old_full, &chat.to_string())
        .await;
    assert_ne!(status, 401);
    assert_eq!(
        h.last_audit().superseded_by.as_deref(),
        Some(new_id.as_str())
    );
    let (status, _) = h
        .call("POST", "/v1/chat/completions", &new_full, &chat.to_string())
        .await;
    assert_ne!(status, 401);
    assert_eq!(h.last_audit().superseded_by, None);
    // Only once; another tenant's key is a 404; a bad overlap is a 400.
    let path = format!("/tollgate/v1/keys/{old}/rotate");
    let (status, _) = h.call("POST", &path, &h.admin("acme"), "").await;
    assert_eq!(status, 400);
    let (theirs, _) = h.key_of("globex", 0);
    let (status, _) = h
        .call(
            "POST",
            &format!("/tollgate/v1/keys/{theirs}/rotate"),
            &h.admin("acme"),
            "",
        )
        .await;
    assert_eq!(status, 404);
    let (other, _) = h.key_of("acme", 1);
    for body in [
        r#"{"overlap_hours": 0}"#,
        r#"{"overlap_hours": 1000}"#,
        r#"{"tenant_id":"globex"}"#,
    ] {
        let (status, _) = h
            .call(
                "POST",
                &format!("/tollgate/v1/keys/{other}/rotate"),
                &h.admin("acme"),
                body,
            )
            .await;
        assert_eq!(status, 400, "{body}");
    }
    assert_eq!(h.store.list_keys(None).await.unwrap().len(), 5);
}

#[tokio::test]
async fn canary_keys_are_invisible_to_tenant_admins() {
    let h = setup().await;
    let acme = h.admin("acme");
    let (own, _) = h.key_of("acme", 0);
    // The operator plants a canary in acme.
    let k = ClientKey::generate(KeyEnv::Live, &mut StdRng::seed_from_u64(77));
    let canary = ClientKeyRecord {
        canary: true,
        name: "tripwire".into(),
        ..ClientKeyRecord::for_key(
            &k,
            "acme",
            "sec@acme.test",
            Peppers::parse(PEPPER).unwrap().digest_new(&k),
            T0,
        )
    };
    h.store.put_key(&canary).await.unwrap();
    let (status, body) = h.call("GET", "/tollgate/v1/keys", &acme, "").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key_id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&own.as_str()) && !ids.contains(&k.key_id()),
        "{ids:?}"
    );
    let unknown = h
        .call("GET", "/tollgate/v1/keys/ZZZZZZZZZZZZ", &acme, "")
        .await;
    for (method, path, body) in [
        ("GET", format!("/tollgate/v1/keys/{}", k.key_id()), ""),
        (
            "POST",
            format!("/tollgate/v1/keys/{}/revoke", k.key_id()),
            "{}",
        ),
        (
            "POST",
            format!("/tollgate/v1/keys/{}/rotate", k.key_id()),
            "{}",
        ),
    ] {
        let got = h.call(method, &path, &acme, body).await;
        assert_eq!(got, unknown, "{method} {path}");
    }
    // Nor can one be issued here: the field is refused like any unknown one.
    let (status, _) = h
        .call("POST", "/tollgate/v1/keys", &acme, r#"{"canary":true}"#)
        .await;
    assert_eq!(status, 400);
    let after = h.store.get_key(k.key_id()).await.unwrap().unwrap();
    assert_eq!(after, canary, "untouched");
}
