//! Command logic on `MemoryStore`, a fake clock, a seeded RNG and a scripted console.

use crate::args;
use crate::ctx::{Console, Ctx, Settings};
use crate::error::Result;
use crate::output::Out;
use async_trait::async_trait;
use rand::{SeedableRng, rngs::StdRng};
use std::collections::HashMap;
use std::io;
use tollgate_core::auth::{Peppers, verify};
use tollgate_core::clock::{EpochMs, FakeClock};
use tollgate_core::key::ClientKey;
use tollgate_core::pool::TokenChange;
use tollgate_core::ports::{KeyStore, PoolStore, Secret, SecretStore, StoreError, TenantStore};
use tollgate_core::provider::Usage;
use tollgate_core::records::{
    KeyStatus, PoolConfig, PoolView, SecretRef, Strategy, TokenRecord, TokenStatus,
};
use tollgate_memory::MemoryStore;

const T0: EpochMs = 1_750_000_000_000;
const PEPPER: &str = r#"{"current":"2","v1":"old-pepper-0123456789abcdef0123456789","v2":"new-pepper-0123456789abcdef0123456789"}"#;
const TOKEN_VALUE: &str = "sk-test-VALUE-never-stored-in-a-record-42";

#[derive(Default)]
struct Script {
    stdin: Option<String>,
    env: HashMap<String, String>,
    answer: Option<bool>,
    asked: Vec<String>,
}

impl Console for Script {
    fn read_secret(&mut self, _prompt: &str) -> io::Result<String> {
        self.stdin
            .take()
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no input"))
    }
    fn env_var(&self, name: &str) -> Option<String> {
        self.env.get(name).cloned()
    }
    fn confirm(&mut self, question: &str) -> Option<bool> {
        self.asked.push(question.to_owned());
        self.answer
    }
}

struct Harness<P: PoolStore = MemoryStore> {
    store: MemoryStore,
    pools: P,
    clock: FakeClock,
    rng: StdRng,
    console: Script,
}

impl Harness<MemoryStore> {
    async fn new() -> Self {
        Self::with_pools(MemoryStore::new()).await
    }
}

impl<P: PoolStore> Harness<P> {
    async fn with_pools(pools: P) -> Self {
        let store = MemoryStore::new();
        store
            .put_secret("tollgate/pepper", &Secret::new(PEPPER))
            .await
            .unwrap();
        Self {
            store,
            pools,
            clock: FakeClock::new(T0),
            rng: StdRng::seed_from_u64(7),
            console: Script::default(),
        }
    }

    async fn run(&mut self, argv: &[&str]) -> Result<Out> {
        let cli = args::parse_from(std::iter::once("tollgate").chain(argv.iter().copied()))
            .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        let mut ctx = Ctx {
            tenants: &self.store,
            keys: &self.store,
            pools: &self.pools,
            secrets: &self.store,
            limits: Some(&self.store),
            issuers: Some(&self.store),
            prices: Some(&self.store),
            clock: &self.clock,
            rng: &mut self.rng,
            console: &mut self.console,
            settings: Settings::default(),
            rotation: None,
        };
        crate::run(&mut ctx, cli.command).await
    }

    async fn ok(&mut self, argv: &[&str]) -> Out {
        self.run(argv)
            .await
            .unwrap_or_else(|e| panic!("{argv:?}: {e}"))
    }

    async fn tenant(&mut self) {
        self.ok(&[
            "tenant",
            "create",
            "acme",
            "--name",
            "Acme",
            "--owner",
            "plat@acme.test",
        ])
        .await;
    }

    async fn issue(&mut self, extra: &[&str]) -> (ClientKey, Out) {
        let mut argv = vec![
            "key",
            "issue",
            "--tenant",
            "acme",
            "--owner",
            "dev@acme.test",
        ];
        argv.extend_from_slice(extra);
        let out = self.ok(&argv).await;
        let key = ClientKey::parse(out.json["key"].as_str().unwrap()).unwrap();
        (key, out)
    }
}

fn both(out: &Out) -> String {
    format!("{}\n{}", out.human, out.json)
}

/// `token add --pool <pool> --provider <provider>` followed by what the test adds.
fn token_add<'a>(pool: &'a str, provider: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut argv = vec!["token", "add", "--pool", pool, "--provider", provider];
    argv.extend_from_slice(extra);
    argv
}

#[tokio::test]
async fn key_list_by_pepper_version_names_the_keys_an_old_version_still_serves() {
    let mut h = Harness::new().await;
    h.tenant().await;
    let (new_key, _) = h.issue(&[]).await;
    // A key issued while v1 was current (the harness's pepper secret is now at v2).
    let old = tollgate_core::records::ClientKeyRecord::new(
        "OLDkey000001",
        tollgate_core::key::KeyEnv::Test,
        "ABCD",
        "acme",
        "dev@acme.test",
        ("ab".repeat(32), 1),
        T0,
    );
    h.store.put_key(&old).await.unwrap();
    let out = h.ok(&["key", "list", "--pepper-version", "1"]).await;
    let keys = out.json["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{}", out.json);
    assert_eq!(keys[0]["key_id"], "OLDkey000001");
    assert!(!out.human.contains(new_key.key_id()));
    let out = h.ok(&["key", "list", "--pepper-version", "2"]).await;
    assert_eq!(out.json["keys"][0]["key_id"], new_key.key_id());
    assert_eq!(out.json["keys"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn tenant_create_and_list() {
    let mut h = Harness::new().await;
    h.tenant().await;
    let out = h.ok(&["tenant", "list"]).await;
    assert!(out.human.contains("acme") && out.human.contains("plat@acme.test"));
    assert_eq!(out.json["tenants"][0]["owner"], "plat@acme.test");
    let e = h
        .run(&["tenant", "create", "acme", "--name", "X", "--owner", "o"])
        .await
        .unwrap_err();
    assert!(e.0.contains("already exists"), "{e}");
}

#[tokio::test]
async fn tenant_create_without_a_name_uses_the_id() {
    let mut h = Harness::new().await;
    let out = h
        .ok(&["tenant", "create", "acme-prod", "--owner", "plat@acme.test"])
        .await;
    assert_eq!(out.json["name"], "acme-prod");
    let t = h.store.get_tenant("acme-prod").await.unwrap().unwrap();
    assert_eq!(t.name, "acme-prod");
    // An explicit name still wins.
    h.ok(&["tenant", "create", "b", "--name", "Beta", "--owner", "o"])
        .await;
    assert_eq!(h.store.get_tenant("b").await.unwrap().unwrap().name, "Beta");
}

#[tokio::test]
async fn tenant_list_aligns_japanese_names() {
    let mut h = Harness::new().await;
    for (id, name) in [
        ("acme", "株式会社アクメ"),
        ("beta", "Beta"),
        ("gamma", "ガンマ開発"),
    ] {
        h.ok(&[
            "tenant", "create", id, "--name", name, "--owner", "o@x.test",
        ])
        .await;
    }
    let out = h.ok(&["tenant", "list"]).await;
    let lines: Vec<&str> = out.human.lines().collect();
    // The OWNER column starts at the same terminal column on every line.
    let owner_col = |l: &str| {
        let i = l.find(['o', 'O']).unwrap();
        unicode_width::UnicodeWidthStr::width(&l[..i])
    };
    assert_eq!(lines.len(), 5, "{}", out.human);
    for l in &lines[2..] {
        assert_eq!(owner_col(l), owner_col(lines[0]), "{}", out.human);
    }
    assert!(
        lines[2].starts_with("acme    株式会社アクメ  o@x.test"),
        "{}",
        out.human
    );
}

#[tokio::test]
async fn issue_stores_a_digest_never_the_key_and_the_key_verifies() {
    let mut h = Harness::new().await;
    h.tenant().await;
    let (key, out) = h
        .issue(&[
            "--name",
            "ci",
            "--env",
            "test",
            "--expires-in",
            "30d",
            "--allow-cidr",
            "10.0.0.0/8",
            "--model-pool",
            "*=team-pool",
        ])
        .await;
    assert!(out.human.contains(key.expose()));
    assert!(out.human.contains("will not be shown again"));
    assert_eq!(out.json["key_id"], key.key_id());
    assert_eq!(out.json["display"], key.display());
    assert!(key.expose().starts_with("tgk_test_"));

    let rec = h.store.get_key(key.key_id()).await.unwrap().unwrap();
    let stored = serde_json::to_string(&rec).unwrap();
    assert!(!stored.contains(key.expose()));
    let secret_part = &key.expose()[9 + 12..key.expose().len() - 6];
    assert!(!stored.contains(secret_part));
    assert_eq!(rec.pepper_version, 2);
    assert_eq!(rec.last4, key.last4());
    assert_eq!(rec.name, "ci");
    assert_eq!(rec.owner, "dev@acme.test");
    assert_eq!(rec.expires_at, Some(T0 + 30 * 86_400_000));
    assert_eq!(rec.status, KeyStatus::Active);
    assert_eq!(
        rec.model_pools.get("*").map(String::as_str),
        Some("team-pool")
    );

    let peppers = Peppers::parse(PEPPER).unwrap();
    let tenant = h.store.get_tenant("acme").await.unwrap();
    assert_eq!(
        verify(
            &key,
            Some(&rec),
            tenant.as_ref(),
            &peppers,
            T0,
            Some("10.1.2.3".parse().unwrap())
        ),
        Ok(())
    );
}

#[tokio::test]
async fn issue_for_a_missing_tenant_or_without_pepper_fails_clearly() {
    let mut h = Harness::new().await;
    let e = h
        .run(&["key", "issue", "--tenant", "nope", "--owner", "o"])
        .await
        .unwrap_err();
    assert!(e.0.contains("tenant \"nope\" does not exist"), "{e}");
    h.tenant().await;
    h.store.delete_secret("tollgate/pepper").await.unwrap();
    let e = h
        .run(&["key", "issue", "--tenant", "acme", "--owner", "o"])
        .await
        .unwrap_err();
    assert!(
        e.0.contains("pepper secret \"tollgate/pepper\" does not exist"),
        "{e}"
    );
    let e = h
        .run(&[
            "key",
            "issue",
            "--tenant",
            "acme",
            "--owner",
            "o",
            "--expires-at",
            "2001-01-01T00:00:00Z",
        ])
        .await
        .unwrap_err();
    assert!(e.0.contains("not in the future"), "{e}");
}

#[tokio::test]
async fn issue_retries_on_a_key_id_collision() {
    let mut h = Harness::new().await;
    h.tenant().await;
    // The same seed generates the same first key: pre-store it so the first attempt collides.
    let first = ClientKey::generate(
        tollgate_core::key::KeyEnv::Live,
        &mut StdRng::seed_from_u64(7),
    );
    let (key, _) = h.issue(&[]).await;
    assert_eq!(first.key_id(), key.key_id());
    h.rng = StdRng::seed_from_u64(7);
    let (second, _) = h.issue(&[]).await;
    assert_ne!(second.key_id(), key.key_id());
    assert_eq!(h.store.list_keys(Some("acme")).await.unwrap().len(), 2);
}

#[tokio::test]
async fn list_and_show_never_show_the_key_or_digest() {
    let mut h = Harness::new().await;
    h.tenant().await;
    let (key, _) = h.issue(&[]).await;
    let digest = h
        .store
        .get_key(key.key_id())
        .await
        .unwrap()
        .unwrap()
        .digest_hex;
    let secret_part = key.expose()[9 + 12..key.expose().len() - 6].to_owned();
    let list = h.ok(&["key", "list"]).await;
    let listed = h.ok(&["key", "list", "--tenant", "acme"]).await;
    let by_id = h.ok(&["key", "show", key.key_id()]).await;
    let display = key.display();
    let by_display = h.ok(&["key", "show", &display]).await;
    let ascii_display = display.replace('…', "...");
    let by_ascii = h.ok(&["key", "show", &ascii_display]).await;
    let by_full = h.ok(&["key", "show", key.expose()]).await;
    for out in [&list, &listed, &by_id, &by_display, &by_ascii, &by_full] {
        let s = both(out);
        assert!(s.contains(&key.display()), "{s}");
        assert!(!s.contains(key.expose()), "{s}");
        assert!(!s.contains(&secret_part), "{s}");
        assert!(!s.contains(&digest), "{s}");
    }
    assert_eq!(by_full.json["presented_key_matches"], true);
    assert_eq!(list.json["keys"][0]["status"], "active");

    // A well-formed key with the same id but another secret is flagged.
    let e = h
        .run(&["key", "show", "tgk_live_nonsense"])
        .await
        .unwrap_err();
    assert!(!e.0.contains("nonsense"), "{e}");
    let e = h.run(&["key", "show", "whatever"]).await.unwrap_err();
    assert!(e.0.contains("expected a key id"), "{e}");
    let wrong_last4 = format!("tgk_live_{}…zzzz", key.key_id());
    assert!(h.run(&["key", "show", &wrong_last4]).await.is_err());
}

#[tokio::test]
async fn revoke_needs_confirmation_and_marks_the_key_revoked() {
    let mut h = Harness::new().await;
    h.tenant().await;
    let (key, _) = h.issue(&[]).await;
    // No terminal to ask: refuse without --yes.
    let e = h.run(&["key", "revoke", key.key_id()]).await.unwrap_err();
    assert!(e.0.contains("--yes"), "{e}");
    h.console.answer = Some(false);
    assert_eq!(
        h.run(&["key", "revoke", key.key_id()]).await.unwrap_err().0,
        "aborted"
    );
    h.clock.advance_ms(5_000);
    let out = h.ok(&["key", "revoke", key.key_id(), "--yes"]).await;
    assert!(out.human.contains("cache TTL"), "{}", out.human);
    let rec = h.store.get_key(key.key_id()).await.unwrap().unwrap();
    assert_eq!(rec.status, KeyStatus::Revoked);
    assert_eq!(rec.revoked_at, Some(T0 + 5_000));
    let show = h.ok(&["key", "show", key.key_id()]).await;
    assert_eq!(show.json["status"], "revoked");
    let again = h.ok(&["key", "revoke", key.key_id(), "--yes"]).await;
    assert_eq!(again.json["changed"], false);
    let e = h
        .run(&["key", "revoke", "AAAAAAAAAAAA", "--yes"])
        .await
        .unwrap_err();
    assert!(e.0.contains("no key with id AAAAAAAAAAAA"), "{e}");
}

#[tokio::test]
async fn suspend_and_resume_are_reversible_and_never_touch_a_revoked_key() {
    let mut h = Harness::new().await;
    h.tenant().await;
    let (key, _) = h.issue(&[]).await;
    h.clock.advance_ms(1_000);
    let out = h
        .ok(&["key", "suspend", key.key_id(), "--reason", "incident 42"])
        .await;
    assert_eq!(out.json["changed"], true);
    assert!(out.human.contains("tollgate key resume"), "{}", out.human);
    let rec = h.store.get_key(key.key_id()).await.unwrap().unwrap();
    assert_eq!(rec.status, KeyStatus::Suspended);
    assert_eq!(rec.suspended_at, Some(T0 + 1_000));
    let show = h.ok(&["key", "show", key.key_id()]).await;
    assert_eq!(show.json["status"], "suspended");
    assert!(show.human.contains("incident 42"), "{}", show.human);
    let again = h.ok(&["key", "suspend", key.key_id()]).await;
    assert_eq!(again.json["changed"], false);

    let out = h.ok(&["key", "resume", key.key_id()]).await;
    assert_eq!(out.json["changed"], true);
    assert_eq!(out.json["status"], "active");
    let rec = h.store.get_key(key.key_id()).await.unwrap().unwrap();
    assert_eq!((rec.status, rec.suspended_at), (KeyStatus::Active, None));

    h.ok(&["key", "revoke", key.key_id(), "--yes"]).await;
    let out = h.ok(&["key", "resume", key.key_id()]).await;
    assert_eq!(out.json["changed"], false);
    assert_eq!(out.json["status"], "revoked");
}

#[tokio::test]
async fn a_canary_key_verifies_as_a_canary_is_listed_apart_and_is_never_rotated() {
    use tollgate_core::auth::AuthFailure;
    let mut h = Harness::new().await;
    h.tenant().await;
    let (normal, _) = h.issue(&[]).await;
    let (canary, out) = h
        .issue(&["--canary", "--name", "repo acme/infra .env"])
        .await;
    assert!(out.human.contains("CANARY"), "{}", out.human);
    assert_eq!(out.json["canary"], true);
    // It is a real key: same shape, and it proves itself — as a canary.
    let rec = h.store.get_key(canary.key_id()).await.unwrap().unwrap();
    assert!(rec.canary);
    let tenant = h.store.get_tenant("acme").await.unwrap();
    let peppers = Peppers::parse(PEPPER).unwrap();
    assert_eq!(
        verify(&canary, Some(&rec), tenant.as_ref(), &peppers, T0, None),
        Err(AuthFailure::Canary)
    );

    let list = h.ok(&["key", "list"]).await;
    assert_eq!(list.json["keys"].as_array().unwrap().len(), 1);
    assert_eq!(list.json["keys"][0]["key_id"], normal.key_id());
    assert_eq!(list.json["canaries"][0]["key_id"], canary.key_id());
    assert_eq!(list.json["canaries"][0]["status"], "canary");
    let (keys_part, canary_part) = list.human.split_once("Canary keys").unwrap();
    assert!(keys_part.contains(&normal.display()) && !keys_part.contains(&canary.display()));
    assert!(canary_part.contains(&canary.display()), "{}", list.human);
    assert!(!both(&list).contains(canary.expose()));

    let e = h
        .run(&["key", "rotate", canary.key_id(), "--overlap", "1h"])
        .await
        .unwrap_err();
    assert!(e.0.contains("canary"), "{e}");
    assert_eq!(h.store.list_keys(Some("acme")).await.unwrap().len(), 2);
    // Scopes and expiry make no sense on a tripwire: refused before anything is stored.
    let cli = args::parse_from([
        "tollgate",
        "key",
        "issue",
        "--tenant",
        "acme",
        "--owner",
        "o",
        "--canary",
        "--expires-in",
        "1d",
    ]);
    assert!(cli.is_err());
}

#[tokio::test]
async fn expired_keys_list_as_expired() {
    let mut h = Harness::new().await;
    h.tenant().await;
    h.issue(&["--expires-in", "1h"]).await;
    h.clock.advance_ms(3_600_000);
    let out = h.ok(&["key", "list"]).await;
    assert_eq!(out.json["keys"][0]["status"], "expired");
}

#[tokio::test]
async fn token_add_reads_the_value_from_stdin_and_never_puts_it_in_the_record() {
    let mut h = Harness::new().await;
    h.console.stdin = Some(format!("{TOKEN_VALUE}\n"));
    let out = h
        .ok(&token_add(
            "openai",
            "openai",
            &["--new-pool", "--weight", "3", "--owner", "ops"],
        ))
        .await;
    assert!(!both(&out).contains(TOKEN_VALUE));
    let id = out.json["token_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("tok_") && id.len() == 14, "{id}");
    let view = h.pools.load_pool("openai").await.unwrap();
    let rec = &view.tokens[0];
    assert!(!serde_json::to_string(rec).unwrap().contains(TOKEN_VALUE));
    assert_eq!(rec.status, TokenStatus::Active);
    assert_eq!(rec.weight, 3);
    assert_eq!(rec.base_url, "https://api.openai.com/v1");
    assert_eq!(
        rec.secret,
        SecretRef::SecretsManager {
            secret_id: format!("tollgate/pool/openai/{id}")
        }
    );
    assert_eq!(
        h.store
            .get_secret(&format!("tollgate/pool/openai/{id}"))
            .await
            .unwrap()
            .expose(),
        TOKEN_VALUE
    );
}

#[tokio::test]
async fn token_add_federated_reads_nothing_and_stores_no_secret() {
    let mut h = Harness::new().await;
    // No stdin: a federated token must not ask for a value.
    let out = h
        .ok(&token_add(
            "openai",
            "openai",
            &[
                "--new-pool",
                "--id",
                "fed-1",
                "--federated",
                "--audience",
                "https://api.openai.com/v1",
                "--identity-provider-id",
                "idp_123",
                "--service-account-id",
                "svc_acct_456",
            ],
        ))
        .await;
    assert_eq!(out.json["secret"]["kind"], "federated");
    let rec = h.pools.load_pool("openai").await.unwrap().tokens.remove(0);
    assert_eq!(
        rec.secret,
        SecretRef::Federated {
            audience: "https://api.openai.com/v1".into(),
            exchange: tollgate_core::federation::Exchange::OpenaiTokenExchange {
                token_url: "https://auth.openai.com/oauth/token".into(),
                identity_provider_id: "idp_123".into(),
                service_account_id: "svc_acct_456".into(),
            },
        }
    );
    assert_eq!(
        h.store.get_secret("tollgate/pool/openai/fed-1").await,
        Err(StoreError::NotFound)
    );
    // Anthropic: the token endpoint follows the base URL; missing fields are named.
    h.ok(&token_add(
        "anthropic",
        "anthropic",
        &[
            "--new-pool",
            "--id",
            "fed-a",
            "--federated",
            "--audience",
            "https://api.anthropic.com",
            "--federation-rule-id",
            "fdrl_1",
            "--organization-id",
            "00000000-0000-4000-8000-000000000000",
            "--service-account-id",
            "svac_1",
        ],
    ))
    .await;
    let rec = h
        .pools
        .load_pool("anthropic")
        .await
        .unwrap()
        .tokens
        .remove(0);
    let SecretRef::Federated { exchange, .. } = rec.secret else {
        panic!("not federated")
    };
    assert_eq!(
        exchange.token_url(),
        "https://api.anthropic.com/v1/oauth/token"
    );
    let e = h
        .run(&token_add(
            "anthropic",
            "anthropic",
            &[
                "--federated",
                "--audience",
                "x",
                "--service-account-id",
                "svac_1",
            ],
        ))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("--federation-rule-id"), "{e}");
    let e = h
        .run(&token_add(
            "openai",
            "openai",
            &[
                "--federated",
                "--audience",
                "x",
                "--identity-provider-id",
                "i",
                "--service-account-id",
                "s",
                "--token-url",
                "http://auth.example.test/oauth/token",
            ],
        ))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("https"), "{e}");
}

#[tokio::test]
async fn token_add_from_env_and_refusals() {
    let mut h = Harness::new().await;
    h.console
        .env
        .insert("ANTHROPIC_KEY".into(), TOKEN_VALUE.into());
    h.console.env.insert("USER".into(), "alice".into());
    let out = h
        .ok(&token_add(
            "claude",
            "anthropic",
            &[
                "--new-pool",
                "--id",
                "tok_claude1",
                "--value-env",
                "ANTHROPIC_KEY",
                "--base-url",
                "http://127.0.0.1:9000/v1/",
            ],
        ))
        .await;
    assert_eq!(out.json["owner"], "alice");
    assert_eq!(out.json["base_url"], "http://127.0.0.1:9000/v1");
    assert_eq!(
        h.store
            .get_secret("tollgate/pool/claude/tok_claude1")
            .await
            .unwrap()
            .expose(),
        TOKEN_VALUE
    );
    // Same id again in the same pool: refused before reading any value.
    let e = h
        .run(&token_add("claude", "openai", &["--id", "tok_claude1"]))
        .await
        .unwrap_err();
    assert!(e.0.contains("already exists in pool claude"), "{e}");
    // The same id in another pool is another token with its own secret.
    h.ok(&token_add(
        "other",
        "openai",
        &["--new-pool", "--id", "tok_claude1", "--value-env", "USER"],
    ))
    .await;
    assert_eq!(
        h.store
            .get_secret("tollgate/pool/other/tok_claude1")
            .await
            .unwrap()
            .expose(),
        "alice"
    );
    assert_eq!(
        h.store
            .get_secret("tollgate/pool/claude/tok_claude1")
            .await
            .unwrap()
            .expose(),
        TOKEN_VALUE
    );
    // Empty or missing values.
    h.console.stdin = Some("\n".into());
    let e = h
        .run(&token_add("p", "openai", &["--new-pool"]))
        .await
        .unwrap_err();
    assert!(e.0.contains("empty"), "{e}");
    let e = h
        .run(&token_add(
            "p",
            "openai",
            &["--new-pool", "--value-env", "NOPE"],
        ))
        .await
        .unwrap_err();
    assert!(e.0.contains("NOPE is not set"), "{e}");
    h.console.stdin = Some("two\nlines\n".into());
    let e = h
        .run(&token_add("p", "openai", &["--new-pool"]))
        .await
        .unwrap_err();
    assert!(e.0.contains("whitespace") && !e.0.contains("two"), "{e}");
    // None of the refusals left a record behind.
    assert_eq!(h.pools.list_tokens().await.unwrap().len(), 2);
}

#[tokio::test]
async fn token_add_to_a_pool_that_does_not_exist_needs_new_pool() {
    let mut h = Harness::new().await;
    let add = |pool: &'static str, id: &'static str, extra: &[&'static str]| {
        let mut argv = token_add(pool, "openai", &["--id", id]);
        argv.extend_from_slice(extra);
        argv
    };
    // No pools at all: the error says so and names the flag, before any value is read.
    h.console.stdin = Some(TOKEN_VALUE.into());
    let e = h.run(&add("openai", "a", &[])).await.unwrap_err();
    assert!(
        e.0.contains("pool openai does not exist")
            && e.0.contains("no pools yet")
            && e.0.contains("--new-pool"),
        "{e}"
    );
    assert!(
        h.console.stdin.is_some(),
        "the value was read before refusing"
    );
    h.ok(&add("openai", "a", &["--new-pool"])).await;

    // A typo: refused, existing pools listed, nothing read or written.
    h.ok(&["pool", "set-strategy", "openai", "weighted"]).await;
    h.pools
        .set_pool_config(&PoolConfig::new("anthropic", Strategy::Priority))
        .await
        .unwrap();
    h.console.stdin = Some(TOKEN_VALUE.into());
    let e = h.run(&add("opneai", "b", &[])).await.unwrap_err();
    assert!(
        e.0.contains("pool opneai does not exist")
            && e.0.contains("existing pools: anthropic, openai")
            && e.0.contains("--new-pool"),
        "{e}"
    );
    assert!(h.console.stdin.is_some());
    assert_eq!(
        h.store.get_secret("tollgate/pool/opneai/b").await,
        Err(StoreError::NotFound)
    );
    assert_eq!(h.pools.list_tokens().await.unwrap().len(), 1);
    assert_eq!(h.pools.list_pool_configs().await.unwrap().len(), 2);

    // Existing pools need no flag: one with tokens, one with only its settings.
    h.ok(&add("openai", "b", &[])).await;
    h.console.stdin = Some(TOKEN_VALUE.into());
    h.ok(&add("anthropic", "c", &[])).await;
    // --new-pool on a pool that exists is harmless (scripts may always pass it).
    h.console.stdin = Some(TOKEN_VALUE.into());
    h.ok(&add("openai", "d", &["--new-pool"])).await;
    let view = h.pools.load_pool("openai").await.unwrap();
    assert_eq!(view.strategy, Strategy::Weighted, "settings kept");
    assert_eq!(view.tokens.len(), 3);
}

#[tokio::test]
async fn pool_set_strategy_refuses_a_pool_that_does_not_exist() {
    let mut h = Harness::new().await;
    let e = h
        .run(&["pool", "set-strategy", "openai", "priority"])
        .await
        .unwrap_err();
    assert!(
        e.0.contains("pool openai does not exist") && e.0.contains("no pools yet"),
        "{e}"
    );
    assert!(h.pools.list_pool_configs().await.unwrap().is_empty());
    h.console.stdin = Some(TOKEN_VALUE.into());
    h.ok(&token_add("openai", "openai", &["--new-pool"])).await;
    let e = h
        .run(&["pool", "set-strategy", "opneai", "priority"])
        .await
        .unwrap_err();
    assert!(
        e.0.contains("pool opneai does not exist")
            && e.0.contains("existing pools: openai")
            && e.0.contains("token add --pool opneai --new-pool"),
        "{e}"
    );
    assert!(h.pools.list_pool_configs().await.unwrap().is_empty());
    h.ok(&["pool", "set-strategy", "openai", "priority"]).await;
    assert_eq!(
        h.pools.load_pool("openai").await.unwrap().strategy,
        Strategy::Priority
    );
}

/// A pool store whose token writes fail: for the rollback path.
struct FailingPuts(MemoryStore);

#[async_trait]
impl PoolStore for FailingPuts {
    async fn load_pool(&self, pool: &str) -> Result<PoolView, StoreError> {
        self.0.load_pool(pool).await
    }
    async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.0.list_tokens().await
    }
    async fn list_pool_configs(&self) -> Result<Vec<PoolConfig>, StoreError> {
        self.0.list_pool_configs().await
    }
    async fn set_pool_config(&self, cfg: &PoolConfig) -> Result<(), StoreError> {
        self.0.set_pool_config(cfg).await
    }
    async fn put_token(&self, _t: &TokenRecord) -> Result<(), StoreError> {
        Err(StoreError::Unavailable(
            "dynamodb PutItem: throttled".into(),
        ))
    }
    async fn set_token_status(&self, p: &str, id: &str, s: TokenStatus) -> Result<(), StoreError> {
        self.0.set_token_status(p, id, s).await
    }
    async fn delete_token(&self, p: &str, id: &str) -> Result<(), StoreError> {
        self.0.delete_token(p, id).await
    }
    async fn apply_change(
        &self,
        p: &str,
        id: &str,
        v: u64,
        c: &TokenChange,
    ) -> Result<bool, StoreError> {
        self.0.apply_change(p, id, v, c).await
    }
    async fn record_usage(
        &self,
        p: &str,
        id: &str,
        u: Usage,
        at: EpochMs,
    ) -> Result<(), StoreError> {
        self.0.record_usage(p, id, u, at).await
    }
}

#[tokio::test]
async fn token_add_deletes_the_secret_when_the_record_write_fails() {
    let mut h = Harness::with_pools(FailingPuts(MemoryStore::new())).await;
    h.console.stdin = Some(TOKEN_VALUE.into());
    let e = h
        .run(&token_add("p", "openai", &["--new-pool", "--id", "tok_x"]))
        .await
        .unwrap_err();
    assert!(
        e.0.contains("throttled") && e.0.contains("deleted again"),
        "{e}"
    );
    assert!(!e.0.contains(TOKEN_VALUE));
    assert_eq!(
        h.store.get_secret("tollgate/pool/p/tok_x").await,
        Err(StoreError::NotFound)
    );
}

#[tokio::test]
async fn enable_disable_set_value_remove() {
    let mut h = Harness::new().await;
    h.console.stdin = Some(TOKEN_VALUE.into());
    h.ok(&token_add("p", "openai", &["--new-pool", "--id", "tok_a"]))
        .await;
    h.ok(&["token", "disable", "p", "tok_a"]).await;
    assert_eq!(
        h.pools.load_pool("p").await.unwrap().tokens[0].status,
        TokenStatus::Disabled
    );
    let list = h.ok(&["token", "list", "--pool", "p"]).await;
    assert_eq!(list.json["tokens"][0]["status"], "disabled");
    h.console.stdin = Some("sk-new-value\n".into());
    let out = h.ok(&["token", "set-value", "p", "tok_a"]).await;
    assert!(out.human.contains("secret cache TTL") && out.human.contains("token enable"));
    assert_eq!(
        h.store
            .get_secret("tollgate/pool/p/tok_a")
            .await
            .unwrap()
            .expose(),
        "sk-new-value"
    );
    h.ok(&["token", "enable", "p", "tok_a"]).await;
    assert_eq!(
        h.pools.load_pool("p").await.unwrap().tokens[0].status,
        TokenStatus::Active
    );
    let e = h
        .run(&["token", "disable", "p", "tok_zz"])
        .await
        .unwrap_err();
    assert_eq!(e.0, "no token tok_zz in pool p");
    assert!(h.run(&["token", "remove", "p", "tok_a"]).await.is_err());
    h.ok(&["token", "remove", "p", "tok_a", "--yes"]).await;
    assert!(h.pools.load_pool("p").await.unwrap().tokens.is_empty());
    assert_eq!(
        h.store.get_secret("tollgate/pool/p/tok_a").await,
        Err(StoreError::NotFound)
    );
}

#[tokio::test]
async fn pool_health_counts_by_status_and_names_last_probe_next_rotation_and_expiring_tokens() {
    let mut h = Harness::new().await;
    for (id, extra) in [
        ("tok_a", vec![]),
        ("tok_b", vec!["--expires-at", "2025-06-18T00:00:00Z"]),
        ("tok_c", vec![]),
    ] {
        h.console.stdin = Some(TOKEN_VALUE.into());
        let mut args = token_add("p", "openai", &["--new-pool", "--id", id]);
        args.extend(extra);
        h.ok(&args).await;
    }
    h.ok(&["token", "disable", "p", "tok_c"]).await;
    tollgate_core::sweep::ProbeRecords::record_probe(
        &h.pools,
        "p",
        "tok_a",
        &tollgate_core::sweep::LastProbe {
            at: T0 - 1_000,
            result: tollgate_core::sweep::ProbeResult::Ok,
        },
    )
    .await
    .unwrap();
    let rot = tollgate_core::rotation::TokenRotation::new(
        tollgate_core::rotation::RotationMode::Staged {
            retire: tollgate_core::rotation::RetireVia::None,
        },
        30,
        None,
        T0,
    );
    assert!(
        tollgate_core::rotation::RotationRecords::swap_rotation(&h.pools, "p", "tok_a", 0, &rot)
            .await
            .unwrap()
    );

    let out = h.ok(&["pool", "health"]).await;
    let p = &out.json["pools"][0];
    assert_eq!(p["pool"], "p");
    assert_eq!(p["tokens"], 3);
    assert_eq!(p["by_status"]["active"], 2);
    assert_eq!(p["by_status"]["disabled"], 1);
    assert_eq!(p["serving"], 2);
    assert_eq!(p["last_probe"]["token_id"], "tok_a");
    assert_eq!(p["next_rotation_due"]["token_id"], "tok_a");
    assert_eq!(p["expiring_soon"][0]["token_id"], "tok_b");
    let line = out.human.lines().find(|l| l.starts_with("p ")).unwrap();
    assert!(line.contains("tok_b"), "{line}");
    // A narrower window leaves tok_b out.
    let out = h.ok(&["pool", "health", "p", "--expiring-days", "1"]).await;
    assert_eq!(out.json["pools"][0]["expiring_soon"], serde_json::json!([]));
    assert!(h.run(&["pool", "health", "nope"]).await.is_err());
}

#[tokio::test]
async fn pool_show_renders_cooldown_remaining_and_counters() {
    let mut h = Harness::new().await;
    h.console.stdin = Some(TOKEN_VALUE.into());
    h.ok(&token_add("p", "openai", &["--new-pool", "--id", "tok_a"]))
        .await;
    h.console.stdin = Some(TOKEN_VALUE.into());
    h.ok(&token_add("p", "openai", &["--id", "tok_b"])).await;
    h.ok(&["pool", "set-strategy", "p", "least-used"]).await;
    let change = TokenChange {
        status: TokenStatus::Cooling,
        bump_version: true,
        cooldown_until: Some(T0 + 12_000),
        failures: tollgate_core::pool::FailureCount::Increment,
        last_error: Some("rate_limited"),
    };
    assert!(
        h.pools
            .apply_change("p", "tok_a", 0, &change)
            .await
            .unwrap()
    );
    h.pools
        .record_usage(
            "p",
            "tok_b",
            Usage {
                input: 10,
                output: 20,
            },
            T0,
        )
        .await
        .unwrap();

    let out = h.ok(&["pool", "show", "p"]).await;
    assert!(out.human.contains("strategy least_used"), "{}", out.human);
    let line_a = out.human.lines().find(|l| l.starts_with("tok_a")).unwrap();
    assert!(
        line_a.contains("cooling") && line_a.contains("12s") && line_a.contains("rate_limited"),
        "{line_a}"
    );
    let line_b = out.human.lines().find(|l| l.starts_with("tok_b")).unwrap();
    assert!(line_b.contains("10/20"), "{line_b}");
    assert_eq!(out.json["pools"][0]["strategy"], "least_used");
    assert_eq!(
        out.json["pools"][0]["tokens"][0]["cooldown_remaining_ms"],
        12_000
    );
    assert_eq!(out.json["pools"][0]["usable"], 1);

    h.clock.advance_ms(12_000);
    let all = h.ok(&["pool", "show"]).await;
    let line_a = all.human.lines().find(|l| l.starts_with("tok_a")).unwrap();
    assert!(!line_a.contains("12s"), "{line_a}");
    assert!(all.json["pools"][0]["tokens"][0]["cooldown_remaining_ms"].is_null());
    assert!(!both(&all).contains(TOKEN_VALUE));
    assert_eq!(
        Strategy::LeastUsed,
        h.pools.load_pool("p").await.unwrap().strategy
    );
}

// ---- policy ----

/// A file under the system temp directory, removed on drop.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> Self {
        let p = std::env::temp_dir().join(format!("tollgate-cli-{}-{name}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        Self(p)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The effective actions `policy show --json` prints agree with what the proxy computes
/// from the stored records (`ClientKeyRecord::effective_dlp_policy`).
async fn assert_effective_matches_records(
    h: &Harness,
    shown: &serde_json::Value,
    key_id: Option<&str>,
) {
    use tollgate_dlp::Entity;
    let tenant = h.store.get_tenant("acme").await.unwrap().unwrap();
    let eff = match key_id {
        Some(id) => h
            .store
            .get_key(id)
            .await
            .unwrap()
            .unwrap()
            .effective_dlp_policy(&tenant),
        None => tenant.dlp_policy.clone().unwrap_or_default(),
    };
    for e in Entity::ALL {
        assert_eq!(
            shown["effective"][e.name()],
            eff.action_for(e).name(),
            "{e}: {shown}"
        );
    }
}

#[tokio::test]
async fn policy_set_show_clear_for_a_tenant_and_a_key() {
    use tollgate_dlp::{Action, Category, Entity, Policy};
    let mut h = Harness::new().await;
    h.tenant().await;
    let (key, _) = h.issue(&[]).await;

    // Nothing stored: the built-in defaults.
    let out = h.ok(&["policy", "show", "--tenant", "acme"]).await;
    assert!(
        out.human.contains("none (built-in defaults)"),
        "{}",
        out.human
    );
    let row = |human: &str, e: &str| {
        human
            .lines()
            .find(|l| l.split_whitespace().next() == Some(e))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| panic!("no row {e}: {human}"))
    };
    assert_eq!(row(&out.human, "EMAIL"), "EMAIL contact log default");
    assert_eq!(
        row(&out.human, "OPENAI_KEY"),
        "OPENAI_KEY secret block default"
    );
    assert_eq!(out.json["tenant"], serde_json::Value::Null);
    assert_eq!(out.json["key"], serde_json::Value::Null);
    assert_eq!(out.json["effective"]["CREDIT_CARD"], "redact");
    assert_eq!(
        out.json["effective"].as_object().unwrap().len(),
        Entity::ALL.len()
    );

    // Tenant: set merges entries into what is stored.
    let out = h
        .ok(&[
            "policy",
            "set",
            "--tenant",
            "acme",
            "--category",
            "contact=redact",
            "--entity",
            "ip_address=off",
        ])
        .await;
    assert!(out.human.contains("key cache TTL"), "{}", out.human);
    assert_eq!(
        out.json["tenant"],
        serde_json::json!({"categories": {"contact": "redact"}, "entities": {"IP_ADDRESS": "off"}})
    );
    let out = h
        .ok(&["policy", "set", "--tenant", "acme", "--entity", "EMAIL=log"])
        .await;
    assert_eq!(
        out.json["tenant"],
        serde_json::json!({"categories": {"contact": "redact"}, "entities": {"EMAIL": "log", "IP_ADDRESS": "off"}})
    );
    let stored = h
        .store
        .get_tenant("acme")
        .await
        .unwrap()
        .unwrap()
        .dlp_policy;
    assert_eq!(
        stored,
        Some(
            Policy::default()
                .with_category(Category::Contact, Action::Redact)
                .with_entity(Entity::IpAddress, Action::Off)
                .with_entity(Entity::Email, Action::Log)
        )
    );
    let out = h.ok(&["policy", "show", "--tenant", "acme"]).await;
    assert_eq!(row(&out.human, "EMAIL"), "EMAIL contact log tenant");
    assert_eq!(row(&out.human, "PHONE"), "PHONE contact redact tenant");
    assert_eq!(
        row(&out.human, "IP_ADDRESS"),
        "IP_ADDRESS network off tenant"
    );
    assert_eq!(
        row(&out.human, "CREDIT_CARD"),
        "CREDIT_CARD financial redact default"
    );
    assert_effective_matches_records(&h, &out.json, None).await;

    // Key (by display form): a key category beats the tenant's entity entry.
    let display = key.display();
    let out = h
        .ok(&[
            "policy",
            "set",
            "--tenant",
            "acme",
            "--key",
            &display,
            "--category",
            "contact=off",
            "--entity",
            "CREDIT_CARD=block",
        ])
        .await;
    assert_eq!(
        out.json["key"],
        serde_json::json!({"categories": {"contact": "off"}, "entities": {"CREDIT_CARD": "block"}})
    );
    assert_eq!(out.json["key_id"], key.key_id());
    let out = h
        .ok(&["policy", "show", "--tenant", "acme", "--key", key.key_id()])
        .await;
    assert!(out.human.contains(&display), "{}", out.human);
    assert_eq!(row(&out.human, "EMAIL"), "EMAIL contact off key");
    assert_eq!(row(&out.human, "PHONE"), "PHONE contact off key");
    assert_eq!(
        row(&out.human, "CREDIT_CARD"),
        "CREDIT_CARD financial block key"
    );
    assert_eq!(
        row(&out.human, "IP_ADDRESS"),
        "IP_ADDRESS network off tenant"
    );
    assert_eq!(row(&out.human, "IBAN"), "IBAN financial redact default");
    assert_eq!(out.json["sources"]["IP_ADDRESS"], "tenant");
    assert_eq!(out.json["tenant"]["categories"]["contact"], "redact");
    assert_effective_matches_records(&h, &out.json, Some(key.key_id())).await;
    // The full key works too, and is never echoed.
    let out = h
        .ok(&[
            "policy",
            "show",
            "--tenant",
            "acme",
            "--key",
            key.expose(),
            "--json",
        ])
        .await;
    assert_eq!(out.json["effective"]["EMAIL"], "off");
    assert!(!both(&out).contains(key.expose()));

    // Clear the key: the tenant's policy applies again.
    let out = h
        .ok(&["policy", "clear", "--tenant", "acme", "--key", key.key_id()])
        .await;
    assert_eq!(out.json["had_policy"], true);
    assert!(out.human.contains("key cache TTL"), "{}", out.human);
    assert_eq!(
        h.store
            .get_key(key.key_id())
            .await
            .unwrap()
            .unwrap()
            .dlp_policy,
        None
    );
    let out = h
        .ok(&["policy", "show", "--tenant", "acme", "--key", key.key_id()])
        .await;
    assert_eq!(row(&out.human, "EMAIL"), "EMAIL contact log tenant");
    assert_effective_matches_records(&h, &out.json, Some(key.key_id())).await;

    // Clear the tenant, twice.
    let out = h.ok(&["policy", "clear", "--tenant", "acme"]).await;
    assert_eq!(out.json["had_policy"], true);
    assert_eq!(
        h.store
            .get_tenant("acme")
            .await
            .unwrap()
            .unwrap()
            .dlp_policy,
        None
    );
    let out = h.ok(&["policy", "clear", "--tenant", "acme"]).await;
    assert_eq!(out.json["had_policy"], false);
    assert!(out.human.contains("had no DLP policy"), "{}", out.human);
}

#[tokio::test]
async fn policy_set_from_a_file_replaces_and_mistakes_are_refused() {
    let mut h = Harness::new().await;
    h.tenant().await;
    let (key, _) = h.issue(&[]).await;
    h.ok(&[
        "policy",
        "set",
        "--tenant",
        "acme",
        "--category",
        "contact=redact",
    ])
    .await;

    let good = TempFile::new("good.json", r#"{"entities":{"EMAIL":"redact"}}"#);
    let out = h
        .ok(&["policy", "set", "--tenant", "acme", "--file", good.path()])
        .await;
    assert_eq!(
        out.json["tenant"],
        serde_json::json!({"entities": {"EMAIL": "redact"}})
    );
    assert_eq!(out.json["effective"]["PHONE"], "log");

    let bad = TempFile::new("bad.json", r#"{"entities":{"NOPE":"off"}}"#);
    let e = h
        .run(&["policy", "set", "--tenant", "acme", "--file", bad.path()])
        .await
        .unwrap_err();
    assert!(e.0.contains("policy file") && e.0.contains("NOPE"), "{e}");
    let e = h
        .run(&[
            "policy",
            "set",
            "--tenant",
            "acme",
            "--file",
            "/nonexistent/p.json",
        ])
        .await
        .unwrap_err();
    assert!(e.0.contains("reading policy file"), "{e}");
    // Nothing changed by the failures.
    let out = h.ok(&["policy", "show", "--tenant", "acme"]).await;
    assert_eq!(
        out.json["tenant"],
        serde_json::json!({"entities": {"EMAIL": "redact"}})
    );

    // An empty file clears.
    let empty = TempFile::new("empty.json", "{}");
    h.ok(&["policy", "set", "--tenant", "acme", "--file", empty.path()])
        .await;
    assert_eq!(
        h.store
            .get_tenant("acme")
            .await
            .unwrap()
            .unwrap()
            .dlp_policy,
        None
    );

    // A category next to an entity entry of its own layer: the entity entry still wins, and
    // the operator is told.
    h.ok(&["policy", "set", "--tenant", "acme", "--entity", "EMAIL=log"])
        .await;
    let out = h
        .ok(&[
            "policy",
            "set",
            "--tenant",
            "acme",
            "--category",
            "contact=off",
        ])
        .await;
    assert!(
        out.human.contains("note: EMAIL keeps its own entry (log)"),
        "{}",
        out.human
    );
    assert_eq!(out.json["effective"]["EMAIL"], "log");
    assert_eq!(out.json["effective"]["PHONE"], "off");

    // Turning secrets off is allowed, with a warning.
    let out = h
        .ok(&[
            "policy",
            "set",
            "--tenant",
            "acme",
            "--entity",
            "OPENAI_KEY=off",
        ])
        .await;
    assert!(
        out.human.contains("warning: OPENAI_KEY off"),
        "{}",
        out.human
    );

    // Unknown tenant, a key of another tenant, a display form with the wrong last 4.
    let e = h
        .run(&["policy", "show", "--tenant", "nope"])
        .await
        .unwrap_err();
    assert!(e.0.contains("\"nope\" does not exist"), "{e}");
    h.ok(&[
        "tenant", "create", "other", "--name", "O", "--owner", "o@x.test",
    ])
    .await;
    let e = h
        .run(&[
            "policy",
            "set",
            "--tenant",
            "other",
            "--key",
            key.key_id(),
            "--entity",
            "EMAIL=off",
        ])
        .await
        .unwrap_err();
    assert!(e.0.contains("belongs to tenant \"acme\""), "{e}");
    assert_eq!(
        h.store
            .get_key(key.key_id())
            .await
            .unwrap()
            .unwrap()
            .dlp_policy,
        None
    );
    let wrong = format!("tgk_live_{}…ZZZZ", key.key_id());
    let e = h
        .run(&["policy", "show", "--tenant", "acme", "--key", &wrong])
        .await
        .unwrap_err();
    assert!(e.0.contains("not the key named"), "{e}");
}

// ---- scan ----

struct Scanned {
    code: u8,
    stdout: String,
    stderr: String,
}

/// Runs `tollgate scan ...` on `stdin`, with stores for `--tenant`.
async fn scan_with(h: Option<&Harness>, argv: &[&str], stdin: &str) -> Result<Scanned> {
    let cli = args::parse_from(["tollgate", "scan"].into_iter().chain(argv.iter().copied()))
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    let args::Command::Scan(a) = cli.command else {
        panic!("not scan")
    };
    let stores = h.map(|h| (&h.store as &dyn TenantStore, &h.store as &dyn KeyStore));
    let policy = crate::scan::resolve_policy(&a, stores).await?;
    let mut input = io::Cursor::new(stdin.as_bytes().to_vec());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = crate::scan::run(&a, cli.json, &policy, &mut input, &mut out, &mut err)?;
    Ok(Scanned {
        code,
        stdout: String::from_utf8(out).unwrap(),
        stderr: String::from_utf8(err).unwrap(),
    })
}

async fn scan(argv: &[&str], stdin: &str) -> Scanned {
    scan_with(None, argv, stdin)
        .await
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"))
}

const CARD: &str = "4111 1111 1111 1111";

#[tokio::test]
async fn scan_jsonl_prints_one_array_per_document_with_byte_offsets() {
    let docs = [
        "write to jane.doe@example.com today",
        "カード番号は 4111 1111 1111 1111 です",
        "電話は090-1234-5678です",
        "nothing to see here",
    ];
    let mut input = String::new();
    for d in docs {
        input.push_str(&serde_json::to_string(d).unwrap());
        input.push('\n');
        input.push('\n'); // blank lines are skipped
    }
    let s = scan(&["--jsonl"], &input).await;
    assert_eq!(s.code, 0);
    let lines: Vec<&str> = s.stdout.lines().collect();
    assert_eq!(lines.len(), docs.len(), "{}", s.stdout);
    let expect = [
        ("EMAIL", "jane.doe@example.com", "log"),
        ("CREDIT_CARD", CARD, "redact"),
        ("PHONE", "090-1234-5678", "log"),
    ];
    for (i, (entity, text, action)) in expect.iter().enumerate() {
        let start = docs[i].find(text).unwrap();
        // Exactly this shape and key order.
        assert_eq!(
            lines[i],
            format!(
                r#"[{{"entity":"{entity}","start":{start},"end":{},"action":"{action}"}}]"#,
                start + text.len()
            )
        );
    }
    // Byte offsets, not characters: the Japanese prefix is 3 bytes per character.
    assert_eq!(docs[2].find("090").unwrap(), 9);
    assert_eq!(docs[1].find(CARD).unwrap(), 19);
    assert_eq!(lines[3], "[]");
    for l in &lines {
        assert!(
            !l.contains("jane") && !l.contains("4111") && !l.contains("090"),
            "{l}"
        );
    }
}

#[tokio::test]
async fn scan_jsonl_names_a_malformed_line_without_quoting_it() {
    let input = "\"a@b.example\"\n\n4111111111111111\n\"x\"\n";
    let e = scan_with(None, &["--jsonl"], input).await.err().unwrap();
    assert!(
        e.0.contains("stdin line 3") && e.0.contains("JSON string"),
        "{e}"
    );
    assert!(!e.0.contains("4111111111111111"), "{e}");
    let e = scan_with(None, &["--jsonl"], "\"unterminated\n")
        .await
        .err()
        .unwrap();
    assert!(e.0.contains("stdin line 1"), "{e}");
    // The lines before the bad one were printed (through scan::run's flush).
    let cli = args::parse_from(["tollgate", "scan", "--jsonl"]).unwrap();
    let args::Command::Scan(a) = cli.command else {
        panic!()
    };
    let mut out = Vec::new();
    let r = crate::scan::run(
        &a,
        false,
        &tollgate_dlp::Policy::default(),
        &mut io::Cursor::new(input.as_bytes().to_vec()),
        &mut out,
        &mut Vec::new(),
    );
    assert!(r.is_err());
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "[{\"entity\":\"EMAIL\",\"start\":0,\"end\":11,\"action\":\"log\"}]\n"
    );
}

#[tokio::test]
async fn scan_one_document_prints_a_table_or_json_and_never_the_values() {
    let doc = format!("mail jane.doe@example.com, card {CARD}\n");
    let s = scan(&[], &doc).await;
    assert_eq!(s.code, 0);
    let lines: Vec<&str> = s.stdout.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["ENTITY", "CATEGORY", "ACTION", "START", "END"]
    );
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["EMAIL", "contact", "log", "5", "25"]
    );
    assert_eq!(
        lines[3].split_whitespace().collect::<Vec<_>>(),
        ["CREDIT_CARD", "financial", "redact", "32", "51"]
    );
    assert!(!s.stdout.contains("jane") && !s.stdout.contains("4111"));
    let s = scan(&["--json"], &doc).await;
    let v: serde_json::Value = serde_json::from_str(&s.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!([
            {"entity": "EMAIL", "start": 5, "end": 25, "action": "log"},
            {"entity": "CREDIT_CARD", "start": 32, "end": 51, "action": "redact"},
        ])
    );
    assert_eq!(scan(&[], "hello").await.stdout.trim(), "No findings.");
    assert_eq!(scan(&["--json"], "").await.stdout.trim(), "[]");
    let mut bad = b"caf".to_vec();
    bad.push(0xe9);
    let cli = args::parse_from(["tollgate", "scan"]).unwrap();
    let args::Command::Scan(a) = cli.command else {
        panic!()
    };
    let e = crate::scan::run(
        &a,
        false,
        &tollgate_dlp::Policy::default(),
        &mut io::Cursor::new(bad),
        &mut Vec::new(),
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(e.0.contains("not valid UTF-8 (at byte 3)"), "{e}");
}

/// A fake OpenAI-shaped key, assembled at test time so no credential-shaped literal is in
/// the repository.
fn openai_key() -> String {
    ["sk-", "proj-", "Q7vX2mK9pL4wR8tY1n", "B6cZ3hJ5fD0sGaWq"].concat()
}

#[tokio::test]
async fn scan_request_redacts_like_the_proxy_and_blocks_with_exit_3() {
    let body = serde_json::json!({
        "model": "gpt-4o-mini",
        "temperature": 0.2,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": format!("charge {CARD} and mail jane.doe@example.com")},
        ],
    })
    .to_string();
    let s = scan(&["--request", "openai"], &body).await;
    assert_eq!(s.code, 0);
    let out: serde_json::Value = serde_json::from_str(&s.stdout).expect("valid JSON");
    assert_eq!(out["model"], "gpt-4o-mini");
    assert_eq!(out["temperature"], 0.2);
    assert_eq!(out["messages"][0]["content"], "be brief");
    assert_eq!(
        out["messages"][1]["content"],
        "charge [CREDIT_CARD_1] and mail jane.doe@example.com"
    );
    assert!(!s.stdout.contains("4111"));
    assert!(s.stderr.contains("decision: redact"), "{}", s.stderr);
    assert!(s.stderr.contains("CREDIT_CARD") && s.stderr.contains("EMAIL"));
    assert!(
        !s.stderr.contains("4111") && !s.stderr.contains("jane"),
        "{}",
        s.stderr
    );

    let s = scan(&["--request", "openai", "--json"], &body).await;
    let v: serde_json::Value = serde_json::from_str(&s.stdout).unwrap();
    assert_eq!(v["decision"], "redact");
    assert_eq!(
        v["counts"],
        serde_json::json!({"CREDIT_CARD": 1, "EMAIL": 1})
    );
    assert_eq!(v["blocked"], serde_json::json!([]));
    assert_eq!(v["body"], out);
    assert!(s.stderr.is_empty());

    // A secret: refused, exit 3, the body is not printed and the value never appears.
    let body = serde_json::json!({
        "model": "claude-x",
        "max_tokens": 10,
        "system": "be brief",
        "messages": [{"role": "user", "content": [{"type": "text", "text": format!("use {}", openai_key())}]}],
    })
    .to_string();
    let s = scan(&["--request", "anthropic"], &body).await;
    assert_eq!(s.code, crate::scan::EXIT_BLOCKED);
    assert_eq!(s.code, 3);
    assert!(s.stdout.is_empty(), "{}", s.stdout);
    assert!(s.stderr.contains("decision: block") && s.stderr.contains("OPENAI_KEY"));
    assert!(!s.stderr.contains(&openai_key()));
    let s = scan(&["--request", "anthropic", "--json"], &body).await;
    assert_eq!(s.code, 3);
    let v: serde_json::Value = serde_json::from_str(&s.stdout).unwrap();
    assert_eq!(v["decision"], "block");
    assert_eq!(v["blocked"], serde_json::json!(["OPENAI_KEY"]));
    assert_eq!(v["body"], serde_json::Value::Null);
    assert!(!s.stdout.contains(&openai_key()));

    // Nothing found: the body goes through unchanged.
    let plain = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let s = scan(&["--request", "openai"], plain).await;
    assert_eq!((s.code, s.stdout.trim()), (0, plain));
    assert!(s.stderr.contains("decision: allow"));

    let e = scan_with(None, &["--request", "openai"], "[1]")
        .await
        .err()
        .unwrap();
    assert!(e.0.contains("JSON object"), "{e}");
    let e = scan_with(None, &["--request", "openai"], "{nope")
        .await
        .err()
        .unwrap();
    assert!(e.0.contains("not valid JSON"), "{e}");
}

#[tokio::test]
async fn scan_uses_a_policy_file_or_the_stored_policy() {
    let doc = format!("\"jane.doe@example.com {CARD}\"\n");
    let file = TempFile::new(
        "scan-policy.json",
        r#"{"categories":{"contact":"redact"},"entities":{"CREDIT_CARD":"off"}}"#,
    );
    let s = scan(&["--jsonl", "--policy", file.path()], &doc).await;
    assert_eq!(
        s.stdout,
        "[{\"entity\":\"EMAIL\",\"start\":0,\"end\":20,\"action\":\"redact\"}]\n"
    );
    let bad = TempFile::new("scan-bad.json", r#"{"categories":{"contact":"maybe"}}"#);
    let e = scan_with(None, &["--policy", bad.path()], "")
        .await
        .err()
        .unwrap();
    assert!(e.0.contains("policy file"), "{e}");

    // --tenant / --key: the policy the proxy would apply to that key.
    let mut h = Harness::new().await;
    h.tenant().await;
    let (key, _) = h.issue(&[]).await;
    h.ok(&[
        "policy",
        "set",
        "--tenant",
        "acme",
        "--category",
        "contact=block",
    ])
    .await;
    h.ok(&[
        "policy",
        "set",
        "--tenant",
        "acme",
        "--key",
        key.key_id(),
        "--entity",
        "EMAIL=off",
    ])
    .await;
    let s = scan_with(Some(&h), &["--jsonl", "--tenant", "acme"], &doc)
        .await
        .unwrap();
    assert!(
        s.stdout
            .starts_with("[{\"entity\":\"EMAIL\",\"start\":0,\"end\":20,\"action\":\"block\"}"),
        "{}",
        s.stdout
    );
    let s = scan_with(
        Some(&h),
        &["--jsonl", "--tenant", "acme", "--key", key.key_id()],
        &doc,
    )
    .await
    .unwrap();
    assert_eq!(
        s.stdout,
        "[{\"entity\":\"CREDIT_CARD\",\"start\":21,\"end\":40,\"action\":\"redact\"}]\n"
    );
    let e = scan_with(Some(&h), &["--tenant", "nope"], "")
        .await
        .err()
        .unwrap();
    assert!(e.0.contains("does not exist"), "{e}");
    // Without stores, --tenant cannot be served (main builds them for it).
    assert!(scan_with(None, &["--tenant", "acme"], "").await.is_err());
}

#[test]
fn limit_amounts_take_human_units() {
    use crate::args::{parse_count, parse_usd};
    assert_eq!(parse_count("600"), Ok(600));
    assert_eq!(parse_count("200k"), Ok(200_000));
    assert_eq!(parse_count("1.5m"), Ok(1_500_000));
    assert_eq!(parse_count("2_000"), Ok(2_000));
    assert!(parse_count("1.5").is_err(), "not whole");
    assert!(parse_count("lots").is_err());
    assert!(parse_count("").is_err());
    assert_eq!(parse_usd("50usd"), Ok(50_000_000));
    assert_eq!(parse_usd("$12.50"), Ok(12_500_000));
    assert_eq!(parse_usd("0.25 USD"), Ok(250_000));
    assert_eq!(parse_usd("1000"), Ok(1_000_000_000));
    assert!(parse_usd("-5usd").is_err());
    assert!(parse_usd("1.0000001usd").is_err(), "below a micro-dollar");
    assert!(parse_usd("fifty").is_err());
}

#[tokio::test]
async fn limits_set_show_clear_on_tenant_defaults_and_key() {
    use tollgate_core::limits::Limits;
    let mut h = Harness::new().await;
    h.tenant().await;
    let (key, _) = h.issue(&[]).await;
    let key_id = key.key_id().to_owned();

    h.ok(&[
        "limits",
        "set",
        "--tenant",
        "acme",
        "--rpm",
        "600",
        "--budget-month",
        "1000usd",
    ])
    .await;
    h.ok(&[
        "limits",
        "set",
        "--tenant",
        "acme",
        "--per-key",
        "--tpm",
        "200k",
        "--concurrency",
        "20",
    ])
    .await;
    let out = h
        .ok(&[
            "limits",
            "set",
            "--tenant",
            "acme",
            "--key",
            &key_id,
            "--rpm",
            "60",
            "--budget-day",
            "1usd",
        ])
        .await;
    assert!(out.human.contains("key cache TTL"), "{}", out.human);
    assert_eq!(out.json["effective_key"]["rpm"], 60);
    assert_eq!(
        out.json["effective_key"]["tpm"], 200_000,
        "per-key default applies"
    );
    assert_eq!(out.json["effective_key"]["budget_day_micros"], 1_000_000);

    let t = h.store.get_tenant("acme").await.unwrap().unwrap();
    assert_eq!(
        t.limits,
        Some(Limits {
            rpm: Some(600),
            budget_month_micros: Some(1_000_000_000),
            ..Limits::default()
        })
    );
    let k = h.store.get_key(&key_id).await.unwrap().unwrap();
    assert_eq!(k.effective_limits(&t).concurrency, Some(20));

    // Set merges: the stored rpm stays when only the budget changes.
    h.ok(&[
        "limits",
        "set",
        "--tenant",
        "acme",
        "--key",
        &key_id,
        "--budget-day",
        "2usd",
    ])
    .await;
    let k = h.store.get_key(&key_id).await.unwrap().unwrap();
    assert_eq!(k.limits.as_ref().unwrap().rpm, Some(60));
    assert_eq!(
        k.limits.as_ref().unwrap().budget_day_micros,
        Some(2_000_000)
    );

    let out = h
        .ok(&["limits", "show", "--tenant", "acme", "--key", &key_id])
        .await;
    assert!(out.human.contains("2 usd"), "{}", out.human);

    h.ok(&["limits", "clear", "--tenant", "acme", "--key", &key_id])
        .await;
    assert_eq!(
        h.store.get_key(&key_id).await.unwrap().unwrap().limits,
        None
    );
    h.ok(&["limits", "clear", "--tenant", "acme", "--per-key"])
        .await;
    let t = h.store.get_tenant("acme").await.unwrap().unwrap();
    assert_eq!(t.key_limits, None);
    assert!(
        t.limits.is_some(),
        "clearing the defaults keeps the tenant's own limits"
    );

    // Mistakes are refused before anything is stored.
    let e = h
        .run(&["limits", "set", "--tenant", "acme", "--rpm", "0"])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("revoke"), "{e}");
    assert!(
        h.run(&["limits", "show", "--tenant", "nope"])
            .await
            .is_err()
    );
}

#[tokio::test]
async fn usage_shows_each_window_with_remaining_and_reset() {
    use tollgate_core::limits::{Ask, Limits, admit};
    use tollgate_core::ports::{CounterWrite, LimitStore};
    let mut h = Harness::new().await;
    h.tenant().await;
    let (key, _) = h.issue(&[]).await;
    let key_id = key.key_id().to_owned();
    h.ok(&[
        "limits",
        "set",
        "--tenant",
        "acme",
        "--key",
        &key_id,
        "--rpm",
        "10",
        "--budget-day",
        "1usd",
    ])
    .await;
    // Two requests admitted the way the proxy does it.
    let now = tollgate_core::clock::Clock::now_ms(&h.clock);
    let limits = Limits {
        rpm: Some(10),
        budget_day_micros: Some(1_000_000),
        ..Limits::default()
    };
    let subject = format!("key#{key_id}");
    let mut c = h.store.load_counters(&subject).await.unwrap();
    for (i, spend) in [(0, 250_000), (1, 100_000)] {
        let next = admit(
            &limits,
            &c.counters,
            &Ask { tokens: 0, spend },
            &format!("r{i}"),
            now,
            60_000,
        )
        .unwrap();
        let w = CounterWrite {
            subject: subject.clone(),
            expected_version: c.version,
            counters: next,
        };
        h.store.swap_counters(&[w], now).await.unwrap();
        c = h.store.load_counters(&subject).await.unwrap();
    }
    let out = h.ok(&["usage", "--tenant", "acme", "--key", &key_id]).await;
    let rows = out.json["usage"].as_array().unwrap();
    let row = |name: &str| rows.iter().find(|r| r["limit"] == name).unwrap().clone();
    assert_eq!(row("rpm")["used"], 2);
    assert_eq!(row("rpm")["remaining"], 8);
    assert_eq!(row("budget_day")["used"], 350_000);
    assert_eq!(row("budget_day")["remaining"], 650_000);
    assert!(
        row("budget_day")["resets_at"]
            .as_str()
            .unwrap()
            .ends_with("T00:00:00Z")
    );
    assert_eq!(row("tpm")["max"], serde_json::Value::Null);
    assert!(out.human.contains("0.350000 usd"), "{}", out.human);
    // The tenant as a whole has no counters yet: all zero.
    let out = h.ok(&["usage", "--tenant", "acme"]).await;
    assert_eq!(out.json["usage"][0]["used"], 0);
}

// ---------------------------------------------------------------------------------------------
// prices

#[tokio::test]
async fn prices_list_shows_the_builtin_defaults_until_the_first_edit_stores_them() {
    use tollgate_core::ports::PriceStore;
    let mut h = Harness::new().await;
    let out = h.ok(&["prices", "list"]).await;
    assert_eq!(out.json["source"], "builtin");
    assert_eq!(out.json["prices"]["gpt-4o-mini"]["input"], 0.15);
    assert!(out.human.contains("built-in defaults"), "{}", out.human);
    assert_eq!(
        h.store.load_prices().await.unwrap(),
        None,
        "listing stores nothing"
    );

    let out = h
        .ok(&[
            "prices", "set", "my-llama", "--input", "0.2", "--output", "0.8",
        ])
        .await;
    assert_eq!(out.json["added"], true);
    let stored = h.store.load_prices().await.unwrap().unwrap();
    assert_eq!(stored.version, 1);
    // The defaults were stored along with the new model.
    assert_eq!(
        stored.table.prices.len(),
        tollgate_core::pricing::PriceTable::builtin().prices.len() + 1
    );
    assert_eq!(stored.table.prices["my-llama"].output, 800_000);

    let out = h
        .ok(&[
            "prices",
            "set",
            "gpt-4o",
            "--input",
            "2",
            "--output",
            "8",
            "--cached-input",
            "1",
        ])
        .await;
    assert_eq!(out.json["updated"], true);
    let out = h.ok(&["--json", "prices", "list"]).await;
    assert_eq!(out.json["source"], "stored");
    assert_eq!(out.json["version"], 2);
    assert_eq!(out.json["prices"]["gpt-4o"]["cached_input"], 1.0);

    h.ok(&["prices", "remove", "my-llama"]).await;
    let e = h.run(&["prices", "remove", "my-llama"]).await.unwrap_err();
    assert!(e.0.contains("no price of its own"), "{e}");
}

#[tokio::test]
async fn prices_set_refuses_bad_values_and_names_and_stores_nothing() {
    use tollgate_core::ports::PriceStore;
    let mut h = Harness::new().await;
    for (argv, needle) in [
        (
            vec!["prices", "set", "m", "--input=-1", "--output", "1"],
            "input price -1",
        ),
        (
            vec!["prices", "set", "m", "--input", "NaN", "--output", "1"],
            "input price NaN",
        ),
        (
            vec!["prices", "set", "m", "--input", "1", "--output", "inf"],
            "output price inf",
        ),
        (
            vec![
                "prices",
                "set",
                "m",
                "--input",
                "1",
                "--output",
                "1",
                "--cached-input",
                "20000",
            ],
            "cached_input price",
        ),
        (
            vec!["prices", "set", "bad name", "--input", "1", "--output", "1"],
            "model name",
        ),
        (vec!["prices", "remove", "a/../../b c"], "model name"),
    ] {
        let e = h.run(&argv).await.unwrap_err();
        assert!(e.0.contains(needle), "{argv:?}: {e}");
    }
    let long = "m".repeat(200);
    let e = h
        .run(&["prices", "set", &long, "--input", "1", "--output", "1"])
        .await
        .unwrap_err();
    assert!(e.0.contains("1 to 128 characters"), "{e}");
    assert_eq!(h.store.load_prices().await.unwrap(), None);
}

#[tokio::test]
async fn prices_import_merges_or_replaces_and_a_bad_file_changes_nothing() {
    use tollgate_core::ports::PriceStore;
    let dir = std::env::temp_dir().join(format!("tollgate-prices-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("p.csv");
    std::fs::write(
        &csv,
        "model,input,output,cached_input\ngpt-4o,2,8,\nnew-model,1,2,0.5\n",
    )
    .unwrap();
    let mut h = Harness::new().await;
    let out = h.ok(&["prices", "import", csv.to_str().unwrap()]).await;
    assert_eq!(
        (out.json["added"].as_u64(), out.json["changed"].as_u64()),
        (Some(1), Some(1))
    );
    let n_builtin = tollgate_core::pricing::PriceTable::builtin().prices.len() as u64;
    assert_eq!(out.json["total"].as_u64(), Some(n_builtin + 1));

    let json = dir.join("p.json");
    std::fs::write(
        &json,
        r#"{"prices": {"only-model": {"input": 1, "output": 1}}}"#,
    )
    .unwrap();
    let out = h
        .ok(&["prices", "import", json.to_str().unwrap(), "--replace"])
        .await;
    assert_eq!(out.json["total"].as_u64(), Some(1));
    assert_eq!(out.json["removed"].as_u64(), Some(n_builtin + 1));
    let before = h.store.load_prices().await.unwrap();

    let bad = dir.join("bad.csv");
    std::fs::write(&bad, "model,input,output\nok,1,1\nneg,-0.5,1\n").unwrap();
    let e = h
        .run(&["prices", "import", bad.to_str().unwrap()])
        .await
        .unwrap_err();
    assert!(
        e.0.contains("neg: input price -0.5") && e.0.contains("nothing was stored"),
        "{e}"
    );
    let e = h
        .run(&[
            "prices",
            "import",
            dir.join("missing.json").to_str().unwrap(),
        ])
        .await
        .unwrap_err();
    assert!(e.0.contains("missing.json"), "{e}");
    assert_eq!(h.store.load_prices().await.unwrap(), before);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn prices_fail_with_a_clear_error_when_the_store_is_down() {
    let mut h = Harness::new().await;
    h.store.set_failing(true);
    let e = h.run(&["prices", "list"]).await.unwrap_err();
    assert!(
        e.0.contains("reading the price table: the store is unavailable"),
        "{e}"
    );
}

#[tokio::test]
async fn pool_tenant_share_is_set_shown_kept_by_set_strategy_and_cleared() {
    let mut h = Harness::new().await;
    let e = h
        .run(&[
            "pool",
            "set-tenant-share",
            "openai",
            "--max-concurrency",
            "5",
        ])
        .await
        .unwrap_err();
    assert!(e.0.contains("pool openai does not exist"), "{e}");
    h.pools
        .set_pool_config(&PoolConfig::new("openai", Strategy::Weighted))
        .await
        .unwrap();
    let out = h
        .ok(&[
            "pool",
            "set-tenant-share",
            "openai",
            "--max-concurrency",
            "5",
        ])
        .await;
    assert_eq!(out.json["tenant_concurrency"], 5);
    let v = h.pools.load_pool("openai").await.unwrap();
    assert_eq!(
        (v.strategy, v.tenant_concurrency),
        (Strategy::Weighted, Some(5))
    );
    // Changing the strategy keeps the share.
    h.ok(&["pool", "set-strategy", "openai", "priority"]).await;
    let v = h.pools.load_pool("openai").await.unwrap();
    assert_eq!(
        (v.strategy, v.tenant_concurrency),
        (Strategy::Priority, Some(5))
    );
    let shown = h.ok(&["pool", "show"]).await;
    assert!(
        shown.human.contains("per-tenant in flight 5"),
        "{}",
        shown.human
    );
    assert_eq!(shown.json["pools"][0]["tenant_concurrency"], 5);
    // Zero and a missing value are usage errors; --clear removes it.
    assert!(
        args::parse_from([
            "tollgate",
            "pool",
            "set-tenant-share",
            "openai",
            "--max-concurrency",
            "0"
        ])
        .is_err()
    );
    assert!(args::parse_from(["tollgate", "pool", "set-tenant-share", "openai"]).is_err());
    h.ok(&["pool", "set-tenant-share", "openai", "--clear"])
        .await;
    assert_eq!(
        h.pools
            .load_pool("openai")
            .await
            .unwrap()
            .tenant_concurrency,
        None
    );
}

#[tokio::test]
async fn rotate_issues_a_successor_once_and_the_old_key_ends_with_the_overlap() {
    let mut h = Harness::new().await;
    h.tenant().await;
    let (old, _) = h
        .issue(&[
            "--name",
            "ci",
            "--expires-in",
            "30d",
            "--allow-model",
            "gpt-4o*",
        ])
        .await;
    let out = h
        .ok(&["key", "rotate", old.key_id(), "--overlap", "24h"])
        .await;
    let new = ClientKey::parse(out.json["key"].as_str().unwrap()).unwrap();
    assert!(out.human.contains(new.expose()), "shown once, like issue");
    assert!(out.human.contains("superseded_by"), "{}", out.human);
    let o = h.store.get_key(old.key_id()).await.unwrap().unwrap();
    assert_eq!(o.rotated_to.as_deref(), Some(new.key_id()));
    assert_eq!(o.expires_at, Some(T0 + 86_400_000));
    let n = h.store.get_key(new.key_id()).await.unwrap().unwrap();
    assert_eq!(n.rotated_from.as_deref(), Some(old.key_id()));
    assert_eq!(
        (n.tenant_id.as_str(), n.owner.as_str(), n.name.as_str()),
        ("acme", "dev@acme.test", "ci")
    );
    assert_eq!(n.allowed_models, vec!["gpt-4o*".to_owned()]);
    assert_eq!(n.expires_at, Some(T0 + 30 * 86_400_000));
    // The new key verifies; the record never holds it.
    let peppers = Peppers::parse(PEPPER).unwrap();
    let tenant = h.store.get_tenant("acme").await.unwrap();
    assert_eq!(
        verify(&new, Some(&n), tenant.as_ref(), &peppers, T0, None),
        Ok(())
    );
    assert!(!both(&h.ok(&["key", "show", new.key_id()]).await).contains(new.expose()));
    // Only once, and never from a revoked key.
    let e = h
        .run(&["key", "rotate", old.key_id(), "--overlap", "1h"])
        .await
        .unwrap_err();
    assert!(e.0.contains("already rotated"), "{e}");
    h.ok(&["key", "revoke", new.key_id(), "--yes"]).await;
    let e = h
        .run(&["key", "rotate", new.key_id(), "--overlap", "1h"])
        .await
        .unwrap_err();
    assert!(e.0.contains("revoked"), "{e}");
    assert_eq!(h.store.list_keys(Some("acme")).await.unwrap().len(), 2);
}
