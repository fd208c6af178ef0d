//! The store contract and adapter-specific behaviour, with the real AWS SDK against the local
//! AWS emulator (moto, started once for this test binary by `tollgate-testkit`).
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test binary: its set-up helpers (outside #[test] fns) should fail loudly"
)]

use async_trait::async_trait;
use tollgate_aws::{DynamoIssuerStore, DynamoStore, KmsEnvelope, SecretsManagerStore, Tables};
use tollgate_core::clock::EpochMs;
use tollgate_core::identity::IssuerRecord;
use tollgate_core::limits::Limits;
use tollgate_core::pool::{FailureCount, TokenChange, apply};
use tollgate_core::ports::{
    Decrypter, IssuerStore, KeyStore, PoolStore, Secret, SecretStore, StoreError, TenantStore,
};
use tollgate_core::provider::Usage;
use tollgate_core::records::{
    ClientKeyRecord, Policy, PoolConfig, PoolView, Tenant, TokenRecord, TokenStatus,
};
use tollgate_memory::contract;
use tollgate_testkit::{Emulator, unique_ns};

fn emulator() -> &'static Emulator {
    match tollgate_testkit::shared() {
        Ok(e) => e,
        Err(e) => panic!("AWS emulator: {e}"),
    }
}

struct Adapters {
    dynamo: DynamoStore,
    secrets: SecretsManagerStore,
    kms: KmsEnvelope,
    kms_key_id: String,
}

async fn adapters() -> Adapters {
    let emu = emulator();
    let conf = emu.sdk_config().await;
    let tables = Tables::from_vars(&|k| emu.resource(k).map(str::to_owned)).expect("tables");
    let kms_key_id = emu
        .resource("TOLLGATE_KMS_KEY_ID")
        .expect("kms key id")
        .to_owned();
    Adapters {
        dynamo: DynamoStore::new(&conf, tables),
        secrets: SecretsManagerStore::new(&conf).with_kms_key(kms_key_id.clone()),
        kms: KmsEnvelope::new(&conf),
        kms_key_id,
    }
}

/// One value with all five store traits, as the contract suite wants.
struct Combined {
    dynamo: DynamoStore,
    secrets: SecretsManagerStore,
    issuers: DynamoIssuerStore,
}

async fn issuer_store() -> DynamoIssuerStore {
    let emu = emulator();
    let conf = emu.sdk_config().await;
    let table = DynamoIssuerStore::table_from_vars(&|k| emu.resource(k).map(str::to_owned))
        .expect("issuers table");
    DynamoIssuerStore::new(&conf, table)
}

#[async_trait]
impl IssuerStore for Combined {
    async fn get_issuer(&self, iss: &str) -> Result<Option<IssuerRecord>, StoreError> {
        self.issuers.get_issuer(iss).await
    }
    async fn put_issuer(&self, rec: &IssuerRecord) -> Result<(), StoreError> {
        self.issuers.put_issuer(rec).await
    }
    async fn list_issuers(&self) -> Result<Vec<IssuerRecord>, StoreError> {
        self.issuers.list_issuers().await
    }
    async fn delete_issuer(&self, iss: &str) -> Result<(), StoreError> {
        self.issuers.delete_issuer(iss).await
    }
}

#[async_trait]
impl TenantStore for Combined {
    async fn get_tenant(&self, id: &str) -> Result<Option<Tenant>, StoreError> {
        self.dynamo.get_tenant(id).await
    }
    async fn put_tenant(&self, t: &Tenant) -> Result<(), StoreError> {
        self.dynamo.put_tenant(t).await
    }
    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        self.dynamo.list_tenants().await
    }
    async fn set_tenant_policy(&self, id: &str, p: Option<&Policy>) -> Result<(), StoreError> {
        self.dynamo.set_tenant_policy(id, p).await
    }
    async fn set_tenant_limits(&self, id: &str, l: Option<&Limits>) -> Result<(), StoreError> {
        self.dynamo.set_tenant_limits(id, l).await
    }
    async fn set_tenant_key_limits(&self, id: &str, l: Option<&Limits>) -> Result<(), StoreError> {
        self.dynamo.set_tenant_key_limits(id, l).await
    }
}

#[async_trait]
impl KeyStore for Combined {
    async fn get_key(&self, id: &str) -> Result<Option<ClientKeyRecord>, StoreError> {
        self.dynamo.get_key(id).await
    }
    async fn put_key(&self, r: &ClientKeyRecord) -> Result<(), StoreError> {
        self.dynamo.put_key(r).await
    }
    async fn revoke_key(&self, id: &str, at: EpochMs) -> Result<(), StoreError> {
        self.dynamo.revoke_key(id, at).await
    }
    async fn set_key_suspended(
        &self,
        id: &str,
        reason: Option<&str>,
        at: EpochMs,
    ) -> Result<bool, StoreError> {
        self.dynamo.set_key_suspended(id, reason, at).await
    }
    async fn rotate_key(
        &self,
        old: &str,
        exp: EpochMs,
        successor: &ClientKeyRecord,
    ) -> Result<bool, StoreError> {
        self.dynamo.rotate_key(old, exp, successor).await
    }
    async fn list_keys(&self, t: Option<&str>) -> Result<Vec<ClientKeyRecord>, StoreError> {
        self.dynamo.list_keys(t).await
    }
    async fn set_key_policy(&self, id: &str, p: Option<&Policy>) -> Result<(), StoreError> {
        self.dynamo.set_key_policy(id, p).await
    }
    async fn set_key_limits(&self, id: &str, l: Option<&Limits>) -> Result<(), StoreError> {
        self.dynamo.set_key_limits(id, l).await
    }
}

#[async_trait]
impl PoolStore for Combined {
    async fn load_pool(&self, pool: &str) -> Result<PoolView, StoreError> {
        self.dynamo.load_pool(pool).await
    }
    async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.dynamo.list_tokens().await
    }
    async fn list_pool_configs(&self) -> Result<Vec<PoolConfig>, StoreError> {
        self.dynamo.list_pool_configs().await
    }
    async fn set_pool_config(&self, cfg: &PoolConfig) -> Result<(), StoreError> {
        self.dynamo.set_pool_config(cfg).await
    }
    async fn put_token(&self, t: &TokenRecord) -> Result<(), StoreError> {
        self.dynamo.put_token(t).await
    }
    async fn set_token_status(
        &self,
        pool: &str,
        id: &str,
        st: TokenStatus,
    ) -> Result<(), StoreError> {
        self.dynamo.set_token_status(pool, id, st).await
    }
    async fn delete_token(&self, pool: &str, id: &str) -> Result<(), StoreError> {
        self.dynamo.delete_token(pool, id).await
    }
    async fn apply_change(
        &self,
        pool: &str,
        id: &str,
        v: u64,
        c: &TokenChange,
    ) -> Result<bool, StoreError> {
        self.dynamo.apply_change(pool, id, v, c).await
    }
    async fn record_usage(
        &self,
        pool: &str,
        id: &str,
        u: Usage,
        at: EpochMs,
    ) -> Result<(), StoreError> {
        self.dynamo.record_usage(pool, id, u, at).await
    }
}

#[async_trait]
impl SecretStore for Combined {
    async fn get_secret(&self, id: &str) -> Result<Secret, StoreError> {
        self.secrets.get_secret(id).await
    }
    async fn put_secret(&self, id: &str, v: &Secret) -> Result<(), StoreError> {
        self.secrets.put_secret(id, v).await
    }
    async fn delete_secret(&self, id: &str) -> Result<(), StoreError> {
        self.secrets.delete_secret(id).await
    }
}

#[tokio::test]
async fn aws_adapters_pass_the_store_contract() {
    let a = adapters().await;
    let combined = Combined {
        dynamo: a.dynamo,
        secrets: a.secrets,
        issuers: issuer_store().await,
    };
    contract::run_all(&combined, &unique_ns("contract")).await;
}

/// The proxy's lookup of a token's issuer is one GetItem; an issuer item is stored attribute
/// by attribute under its exact `iss` (hash key `issuer`).
#[tokio::test]
async fn an_issuer_lookup_is_one_read_and_items_are_plain_attributes() {
    use tollgate_core::identity::{JwsAlg, TenantMapping};
    let s = issuer_store().await;
    let iss = format!("https://{}idp.example.test", unique_ns("iss"));
    let rec = IssuerRecord::new(
        iss.clone(),
        vec!["tollgate".into()],
        format!("{iss}/jwks"),
        vec![JwsAlg::RS256],
        TenantMapping::Fixed {
            tenant_id: "acme".into(),
        },
        7,
    );
    s.put_issuer(&rec).await.expect("put");
    let before = s.ops.snapshot();
    assert_eq!(s.get_issuer(&iss).await.expect("get"), Some(rec));
    assert_eq!(s.ops.snapshot().0 - before.0, 1);
    let raw = s
        .client()
        .get_item()
        .table_name(s.table())
        .key(
            "issuer",
            aws_sdk_dynamodb::types::AttributeValue::S(iss.clone()),
        )
        .send()
        .await
        .expect("raw get")
        .item
        .expect("item");
    assert_eq!(raw["issuer"].as_s().expect("S"), &iss);
    assert_eq!(raw["audiences"].as_l().expect("L").len(), 1);
    assert_eq!(
        raw["jwks"].as_m().expect("M")["kind"].as_s().expect("S"),
        "url"
    );
    assert_eq!(raw["created_at"].as_n().expect("N"), "7");
    s.delete_issuer(&iss).await.expect("delete");
}

#[tokio::test]
async fn aws_sweep_writes_pass_the_contract() {
    let a = adapters().await;
    contract::sweep_writes_touch_only_their_fields(&a.dynamo, &unique_ns("sweep")).await;
}

#[tokio::test]
async fn aws_rotation_ports_pass_the_rotation_contract() {
    let a = adapters().await;
    let ns = unique_ns("rot");
    contract::rotation_records_swap_only_over_the_expected_rev(&a.dynamo, &ns).await;
    let name = format!("tollgate/contract/{ns}versions");
    a.secrets
        .put_secret(&name, &Secret::new("v1"))
        .await
        .expect("create secret");
    // Version ids only need to be unique within the secret.
    let token = "ffffffff-0000-4000-8000-000000000001";
    contract::versioned_secrets_follow_staging_rules(&a.secrets, &name, token).await;
}

#[tokio::test]
async fn the_local_resources_exist() {
    let emu = emulator();
    let a = adapters().await;
    // The pepper secret the bootstrap made reads back as JSON with a current version.
    let pepper_id = emu
        .resource("TOLLGATE_PEPPER_SECRET_ID")
        .expect("pepper id");
    let pepper = a.secrets.get_secret(pepper_id).await.expect("pepper");
    let v: serde_json::Value = serde_json::from_str(pepper.expose()).expect("pepper is json");
    assert!(v.get("current").is_some());
    // The tables answer.
    a.dynamo.list_tenants().await.expect("tenants table");
    a.dynamo.list_keys(Some("nobody")).await.expect("keys GSI");
    assert_eq!(
        a.dynamo.load_pool("no-such-pool").await.expect("pool"),
        PoolView::default()
    );
    let env = emu.env();
    for k in ["AWS_ENDPOINT_URL", "AWS_REGION", "TOLLGATE_POOL_TABLE"] {
        assert!(env.iter().any(|(n, _)| n == k), "{k} missing from env()");
    }
}

#[tokio::test]
async fn a_new_secret_version_is_picked_up_and_awscurrent_moves() {
    let a = adapters().await;
    let id = format!("{}tollgate/pool/rotating", unique_ns("secret"));
    a.secrets
        .put_secret(&id, &Secret::new("value-one"))
        .await
        .expect("put v1");
    assert_eq!(
        a.secrets.get_secret(&id).await.expect("get").expose(),
        "value-one"
    );
    let current = |d: &aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput| {
        d.version_ids_to_stages()
            .and_then(|m| {
                m.iter()
                    .find(|(_, stages)| stages.iter().any(|s| s == "AWSCURRENT"))
                    .map(|(v, _)| v.clone())
            })
            .expect("a version is AWSCURRENT")
    };
    let before = a
        .secrets
        .client()
        .describe_secret()
        .secret_id(&id)
        .send()
        .await
        .expect("describe");
    a.secrets
        .put_secret(&id, &Secret::new("value-two"))
        .await
        .expect("put v2");
    assert_eq!(
        a.secrets.get_secret(&id).await.expect("get").expose(),
        "value-two"
    );
    let after = a
        .secrets
        .client()
        .describe_secret()
        .secret_id(&id)
        .send()
        .await
        .expect("describe");
    assert_ne!(current(&before), current(&after));
    // Created under the customer managed key.
    assert!(after.kms_key_id().is_some());
    a.secrets.delete_secret(&id).await.expect("delete");
    assert_eq!(a.secrets.get_secret(&id).await, Err(StoreError::NotFound));
}

#[tokio::test]
async fn kms_round_trip_is_bound_to_the_tenant() {
    let a = adapters().await;
    let key = Secret::new("sk-tenant-owned-provider-key");
    let blob = a
        .kms
        .encrypt(&a.kms_key_id, &key, "acme")
        .await
        .expect("encrypt");
    assert!(!blob.contains("sk-tenant"));
    assert_eq!(a.kms.decrypt(&blob, "acme").await.expect("decrypt"), key);
    assert!(matches!(
        a.kms.decrypt(&blob, "globex").await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        a.kms.decrypt("not base64!", "acme").await,
        Err(StoreError::Corrupt(_))
    ));
    // Pinned to the key it was made with, it still decrypts.
    let pinned = a.kms.clone().with_decrypt_key(a.kms_key_id.clone());
    assert_eq!(pinned.decrypt(&blob, "acme").await.expect("decrypt"), key);
    let (reads, writes) = a.kms.ops.snapshot();
    assert!(reads >= 2 && writes == 1, "{reads} reads, {writes} writes");
}

#[tokio::test]
async fn warm_path_calls_are_one_read_and_one_write() {
    let a = adapters().await;
    let pool = format!("{}pool", unique_ns("ops"));
    a.dynamo
        .put_token(&contract::token(&pool, "t1"))
        .await
        .expect("put");
    a.dynamo
        .set_pool_config(&PoolConfig::new(
            pool.clone(),
            tollgate_core::records::Strategy::LeastUsed,
        ))
        .await
        .expect("config");

    let before = a.dynamo.ops.snapshot();
    let view = a.dynamo.load_pool(&pool).await.expect("load");
    let after = a.dynamo.ops.snapshot();
    assert_eq!((after.0 - before.0, after.1 - before.1), (1, 0));
    assert_eq!(view.strategy, tollgate_core::records::Strategy::LeastUsed);
    assert_eq!(view.tokens.len(), 1);

    let before = a.dynamo.ops.snapshot();
    a.dynamo
        .record_usage(
            &pool,
            "t1",
            Usage {
                input: 3,
                output: 4,
            },
            9,
        )
        .await
        .expect("usage");
    let after = a.dynamo.ops.snapshot();
    assert_eq!((after.0 - before.0, after.1 - before.1), (0, 1));

    // Usage for a deleted token does not bring it back.
    a.dynamo.delete_token(&pool, "t1").await.expect("delete");
    a.dynamo
        .record_usage(
            &pool,
            "t1",
            Usage {
                input: 1,
                output: 1,
            },
            10,
        )
        .await
        .expect("usage on a deleted token is ignored");
    assert!(
        a.dynamo
            .load_pool(&pool)
            .await
            .expect("load")
            .tokens
            .is_empty()
    );
    assert_eq!(
        a.dynamo.delete_token(&pool, "t1").await,
        Err(StoreError::NotFound)
    );
}

/// The store mirrors `tollgate_core::pool::apply` exactly, whichever way the status goes.
#[tokio::test]
async fn health_changes_mirror_the_core_state_machine() {
    let a = adapters().await;
    let pool = format!("{}health", unique_ns("apply"));
    let mut local = contract::token(&pool, "h1");
    a.dynamo.put_token(&local).await.expect("put");
    let changes = [
        // Transient below threshold: status unchanged, failures counted.
        TokenChange {
            status: TokenStatus::Active,
            bump_version: false,
            cooldown_until: None,
            failures: FailureCount::Increment,
            last_error: Some("upstream_unavailable"),
        },
        // 429: Active -> Cooling, version bumps.
        TokenChange {
            status: TokenStatus::Cooling,
            bump_version: true,
            cooldown_until: Some(5_000),
            failures: FailureCount::Increment,
            last_error: Some("upstream_rate_limited"),
        },
        // Another 429 while cooling: Cooling -> Cooling, no bump, new cooldown.
        TokenChange {
            status: TokenStatus::Cooling,
            bump_version: false,
            cooldown_until: Some(9_000),
            failures: FailureCount::Increment,
            last_error: Some("upstream_rate_limited"),
        },
        // Transient while cooling keeps the cooldown.
        TokenChange {
            status: TokenStatus::Cooling,
            bump_version: false,
            cooldown_until: Some(9_000),
            failures: FailureCount::Increment,
            last_error: Some("upstream_unavailable"),
        },
        // Success: Cooling -> Active, failures reset, cooldown removed, last_error kept.
        TokenChange {
            status: TokenStatus::Active,
            bump_version: true,
            cooldown_until: None,
            failures: FailureCount::Reset,
            last_error: None,
        },
        // Success on an active token with nothing to change still applies cleanly.
        TokenChange {
            status: TokenStatus::Active,
            bump_version: false,
            cooldown_until: None,
            failures: FailureCount::Reset,
            last_error: None,
        },
    ];
    for (i, c) in changes.iter().enumerate() {
        let applied = a
            .dynamo
            .apply_change(&pool, "h1", local.version, c)
            .await
            .expect("apply");
        assert!(applied, "change {i} not applied");
        apply(&mut local, c);
        let stored = a.dynamo.load_pool(&pool).await.expect("load").tokens;
        assert_eq!(stored, vec![local.clone()], "after change {i}");
    }
    assert_eq!(local.version, 2);
    // A stale version never applies, either variant.
    for c in &changes[..2] {
        assert!(
            !a.dynamo
                .apply_change(&pool, "h1", local.version + 7, c)
                .await
                .expect("apply")
        );
    }
    assert_eq!(
        a.dynamo.load_pool(&pool).await.expect("load").tokens,
        vec![local]
    );
}

#[tokio::test]
async fn items_are_stored_attribute_by_attribute() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let emu = emulator();
    let a = adapters().await;
    let pool = format!("{}layout", unique_ns("layout"));
    let mut t = contract::token(&pool, "l1");
    t.cooldown_until = Some(123);
    a.dynamo.put_token(&t).await.expect("put");
    a.dynamo
        .set_token_status(&pool, "l1", TokenStatus::Active)
        .await
        .expect("enable");
    let item = a
        .dynamo
        .client()
        .get_item()
        .table_name(emu.resource("TOLLGATE_POOL_TABLE").expect("pool table"))
        .key("pool", AttributeValue::S(pool.clone()))
        .key("token_id", AttributeValue::S("l1".into()))
        .send()
        .await
        .expect("get")
        .item
        .expect("item");
    assert_eq!(item.get("weight"), Some(&AttributeValue::N("2".into())));
    assert_eq!(item.get("version"), Some(&AttributeValue::N("1".into())));
    assert_eq!(
        item.get("status"),
        Some(&AttributeValue::S("active".into()))
    );
    assert!(!item.contains_key("cooldown_until"), "REMOVEd on enable");
    assert!(!item.contains_key("last_error"), "None is left out");
    assert!(matches!(item.get("secret"), Some(AttributeValue::M(_))));
    // The settings item lives in the pool's partition and never shows up as a token.
    a.dynamo
        .set_pool_config(&PoolConfig::new(
            pool.clone(),
            tollgate_core::records::Strategy::Weighted,
        ))
        .await
        .expect("config");
    assert!(
        a.dynamo
            .list_tokens()
            .await
            .expect("tokens")
            .iter()
            .all(|t| t.token_id != tollgate_aws::CONFIG_SORT_KEY)
    );
    let mut reserved = contract::token(&pool, tollgate_aws::CONFIG_SORT_KEY);
    reserved.pool = pool.clone();
    assert_eq!(
        a.dynamo.put_token(&reserved).await,
        Err(StoreError::AlreadyExists)
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_fails_closed_within_the_configured_bounds() {
    // Bounded by configuration, not by a stopwatch: few attempts, every one with a timeout.
    let retry = tollgate_aws::default_retry();
    assert!(retry.max_attempts() <= 3);
    let t = tollgate_aws::default_timeouts();
    assert!(t.connect_timeout().is_some());
    assert!(t.operation_timeout().is_some());
    assert!(t.operation_attempt_timeout().is_some());
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url("http://127.0.0.1:1")
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .timeout_config(tollgate_aws::default_timeouts())
        .retry_config(tollgate_aws::default_retry())
        .load()
        .await;
    let tables = Tables {
        tenants: "t".into(),
        keys: "k".into(),
        pool: "p".into(),
    };
    let dynamo = DynamoStore::new(&conf, tables);
    let secrets = SecretsManagerStore::new(&conf);
    let kms = KmsEnvelope::new(&conf);
    let r = dynamo.get_key("abcdefghijkl").await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    assert!(matches!(
        dynamo.load_pool("p").await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        secrets.get_secret("tollgate/pepper").await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        kms.decrypt("AAAA", "acme").await,
        Err(StoreError::Unavailable(_))
    ));
    // The message names the operation and the failure kind, nothing from the request.
    if let Err(StoreError::Unavailable(msg)) = dynamo.get_key("abcdefghijkl").await {
        assert!(!msg.contains("abcdefghijkl"), "{msg}");
        assert!(msg.contains("GetItem"), "{msg}");
    }
}

async fn limit_store() -> tollgate_aws::DynamoLimitStore {
    let emu = emulator();
    let conf = emu.sdk_config().await;
    let table =
        tollgate_aws::DynamoLimitStore::table_from_vars(&|k| emu.resource(k).map(str::to_owned))
            .expect("limits table");
    tollgate_aws::DynamoLimitStore::new(&conf, table)
}

#[tokio::test]
async fn dynamo_limit_store_passes_the_limit_counter_contract() {
    let s = limit_store().await;
    contract::run_limits(&s, &unique_ns("limits")).await;
}

/// One conditional write per decision: a PutItem for one subject, one TransactWriteItems for
/// two, and a lost race costs no extra read (the refusal carries the stored item).
#[tokio::test]
async fn a_counter_swap_is_one_write_and_a_lost_race_needs_no_read() {
    use tollgate_core::ports::{CounterWrite, LimitStore, SwapOutcome};
    let s = limit_store().await;
    let ns = unique_ns("limitops");
    let key = format!("key#{ns}k");
    let tenant = format!("tenant#{ns}t");
    let w = |subject: &str, v: u64| CounterWrite {
        subject: subject.to_owned(),
        expected_version: v,
        counters: contract::counters(v),
    };
    let delta = |before: (u64, u64)| {
        let after = s.ops.snapshot();
        (after.0 - before.0, after.1 - before.1)
    };
    let before = s.ops.snapshot();
    let out = s.swap_counters(&[w(&key, 0)], 4_000_000_000_000).await;
    assert_eq!(out, Ok(SwapOutcome::Applied));
    assert_eq!(delta(before), (0, 1));

    let before = s.ops.snapshot();
    let out = s
        .swap_counters(&[w(&key, 1), w(&tenant, 0)], 4_000_000_000_000)
        .await;
    assert_eq!(out, Ok(SwapOutcome::Applied));
    assert_eq!(delta(before), (0, 1));

    let before = s.ops.snapshot();
    let out = s
        .swap_counters(&[w(&key, 1), w(&tenant, 1)], 4_000_000_000_000)
        .await
        .expect("swap");
    assert_eq!(delta(before), (0, 1));
    let SwapOutcome::Conflict(current) = out else {
        panic!("expected a conflict, got {out:?}");
    };
    assert_eq!(
        current
            .iter()
            .find(|(s, _)| *s == key)
            .map(|(_, c)| c.version),
        Some(2)
    );
}

/// The TTL attribute is epoch seconds (DynamoDB ignores milliseconds: items would live
/// for ever), alongside the numeric version and the counters as attributes.
#[tokio::test]
async fn counter_items_carry_a_ttl_in_seconds() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use tollgate_core::ports::{CounterWrite, LimitStore};
    let s = limit_store().await;
    let subject = format!("key#{}ttl", unique_ns("limitttl"));
    s.swap_counters(
        &[CounterWrite {
            subject: subject.clone(),
            expected_version: 0,
            counters: contract::counters(4),
        }],
        1_900_000_000_500,
    )
    .await
    .expect("swap");
    let item = s
        .client()
        .get_item()
        .table_name(s.table())
        .key("subject", AttributeValue::S(subject))
        .send()
        .await
        .expect("get")
        .item
        .expect("item");
    assert_eq!(
        item.get("expires_at"),
        Some(&AttributeValue::N("1900000001".into()))
    );
    assert_eq!(item.get("version"), Some(&AttributeValue::N("1".into())));
    assert_eq!(item.get("requests"), Some(&AttributeValue::N("4".into())));
    let ttl = s
        .client()
        .describe_time_to_live()
        .table_name(s.table())
        .send()
        .await
        .expect("describe ttl");
    assert_eq!(
        ttl.time_to_live_description()
            .and_then(|d| d.attribute_name()),
        Some("expires_at")
    );
}

/// The price table as one item of the limits table, under a subject of this run's own.
#[tokio::test]
async fn dynamo_price_store_passes_the_price_contract() {
    let s = limit_store()
        .await
        .with_prices_subject(format!("#prices-{}", unique_ns("prices")));
    contract::run_prices(&s).await;
}

/// A limited request against the DynamoDB adapters, warm: one conditional write to admit
/// (PutItem) and one to settle that carries the pool token's usage (TransactWriteItems of
/// the counters' delta and the usage `ADD`) — two calls, no read — and both land: the
/// counters settle to the usage, the lease is freed, the token counts the request.
#[tokio::test]
async fn a_limited_request_costs_one_write_to_admit_and_one_to_settle_with_its_usage() {
    use tollgate_core::limits::{Ask, Windows, admit, settle_delta};
    use tollgate_core::ports::{
        CounterDelta, CounterWrite, DeltaOutcome, LimitStore, SwapOutcome, UsageWrite,
    };
    let emu = emulator();
    let a = adapters().await;
    let pool_table = emu.resource("TOLLGATE_POOL_TABLE").expect("pool table");
    let s = limit_store().await.with_usage_table(pool_table);
    let ns = unique_ns("settleops");
    let pool = format!("{ns}pool");
    a.dynamo
        .put_token(&contract::token(&pool, "u1"))
        .await
        .expect("token");
    let subject = format!("key#{ns}k");
    let limits = Limits {
        rpm: Some(100),
        concurrency: Some(4),
        budget_day_micros: Some(10_000_000),
        ..Limits::default()
    };
    let now: EpochMs = 1_800_000_000_000;
    let reserved = Ask {
        tokens: 1_000,
        spend: 50_000,
    };
    let used = Ask {
        tokens: 300,
        spend: 12_000,
    };
    let (limit_ops, pool_ops) = (s.ops.snapshot(), a.dynamo.ops.snapshot());
    let admitted = admit(
        &limits,
        &Default::default(),
        &reserved,
        "req-1",
        now,
        60_000,
    )
    .expect("admitted");
    let out = s
        .swap_counters(
            &[CounterWrite {
                subject: subject.clone(),
                expected_version: 0,
                counters: admitted.clone(),
            }],
            now + 86_400_000,
        )
        .await
        .expect("admit");
    assert_eq!(out, SwapOutcome::Applied);
    assert!(admitted.inflight.contains_key("req-1"));
    let out = s
        .apply_deltas(
            &[CounterDelta {
                subject: subject.clone(),
                delta: settle_delta(&reserved, Windows::at(now), &used, "req-1", now + 500),
            }],
            Some(&UsageWrite {
                pool: pool.clone(),
                token_id: "u1".into(),
                usage: Usage {
                    input: 100,
                    output: 200,
                },
                at: now + 500,
            }),
            now + 86_400_000,
        )
        .await
        .expect("settle");
    assert_eq!(out, DeltaOutcome::Applied);
    let (lr, lw) = s.ops.snapshot();
    let (pr, pw) = a.dynamo.ops.snapshot();
    assert_eq!(
        (
            lr - limit_ops.0,
            lw - limit_ops.1,
            pr - pool_ops.0,
            pw - pool_ops.1
        ),
        (0, 2, 0, 0),
        "admit + settle-with-usage: two writes, no read, nothing else"
    );
    let stored = s.load_counters(&subject).await.expect("load");
    assert_eq!(stored.version, 2);
    assert_eq!(
        (
            stored.counters.requests,
            stored.counters.tokens_minute,
            stored.counters.spend_day,
            stored.counters.inflight.len()
        ),
        (1, 300, 12_000, 0)
    );
    let t = a
        .dynamo
        .load_pool(&pool)
        .await
        .expect("pool")
        .tokens
        .into_iter()
        .find(|t| t.token_id == "u1")
        .expect("token");
    assert_eq!((t.requests, t.tokens_in, t.tokens_out), (1, 100, 200));

    // The token deleted meanwhile: the transaction writes nothing (the caller settles the
    // slow way and its usage write finds no token), and no bare token item appears.
    a.dynamo.delete_token(&pool, "u1").await.expect("delete");
    let out = s
        .apply_deltas(
            &[CounterDelta {
                subject: subject.clone(),
                delta: settle_delta(&reserved, Windows::at(now), &used, "req-2", now + 600),
            }],
            Some(&UsageWrite {
                pool: pool.clone(),
                token_id: "u1".into(),
                usage: Usage {
                    input: 1,
                    output: 1,
                },
                at: now + 600,
            }),
            now + 86_400_000,
        )
        .await
        .expect("settle");
    assert_eq!(out, DeltaOutcome::NotApplied);
    assert_eq!(s.load_counters(&subject).await.expect("load"), stored);
    assert!(
        a.dynamo
            .load_pool(&pool)
            .await
            .expect("pool")
            .tokens
            .is_empty()
    );
}
