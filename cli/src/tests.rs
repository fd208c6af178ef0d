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
            clock: &self.clock,
            rng: &mut self.rng,
            console: &mut self.console,
            settings: Settings::default(),
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
        .ok(&[
            "token",
            "add",
            "--pool",
            "openai",
            "--provider",
            "openai",
            "--weight",
            "3",
            "--owner",
            "ops",
        ])
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
async fn token_add_from_env_and_refusals() {
    let mut h = Harness::new().await;
    h.console
        .env
        .insert("ANTHROPIC_KEY".into(), TOKEN_VALUE.into());
    h.console.env.insert("USER".into(), "alice".into());
    let out = h
        .ok(&[
            "token",
            "add",
            "--pool",
            "claude",
            "--provider",
            "anthropic",
            "--id",
            "tok_claude1",
            "--value-env",
            "ANTHROPIC_KEY",
            "--base-url",
            "http://127.0.0.1:9000/v1/",
        ])
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
        .run(&[
            "token",
            "add",
            "--pool",
            "claude",
            "--provider",
            "openai",
            "--id",
            "tok_claude1",
        ])
        .await
        .unwrap_err();
    assert!(e.0.contains("already exists in pool claude"), "{e}");
    // The same id in another pool is another token with its own secret.
    h.ok(&[
        "token",
        "add",
        "--pool",
        "other",
        "--provider",
        "openai",
        "--id",
        "tok_claude1",
        "--value-env",
        "USER",
    ])
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
        .run(&["token", "add", "--pool", "p", "--provider", "openai"])
        .await
        .unwrap_err();
    assert!(e.0.contains("empty"), "{e}");
    let e = h
        .run(&[
            "token",
            "add",
            "--pool",
            "p",
            "--provider",
            "openai",
            "--value-env",
            "NOPE",
        ])
        .await
        .unwrap_err();
    assert!(e.0.contains("NOPE is not set"), "{e}");
    h.console.stdin = Some("two\nlines\n".into());
    let e = h
        .run(&["token", "add", "--pool", "p", "--provider", "openai"])
        .await
        .unwrap_err();
    assert!(e.0.contains("whitespace") && !e.0.contains("two"), "{e}");
    // None of the refusals left a record behind.
    assert_eq!(h.pools.list_tokens().await.unwrap().len(), 2);
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
        .run(&[
            "token",
            "add",
            "--pool",
            "p",
            "--provider",
            "openai",
            "--id",
            "tok_x",
        ])
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
    h.ok(&[
        "token",
        "add",
        "--pool",
        "p",
        "--provider",
        "openai",
        "--id",
        "tok_a",
    ])
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
async fn pool_show_renders_cooldown_remaining_and_counters() {
    let mut h = Harness::new().await;
    h.console.stdin = Some(TOKEN_VALUE.into());
    h.ok(&[
        "token",
        "add",
        "--pool",
        "p",
        "--provider",
        "openai",
        "--id",
        "tok_a",
    ])
    .await;
    h.console.stdin = Some(TOKEN_VALUE.into());
    h.ok(&[
        "token",
        "add",
        "--pool",
        "p",
        "--provider",
        "openai",
        "--id",
        "tok_b",
    ])
    .await;
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
