//! The behaviour every store implementation must show, run once per implementation: by this
//! crate's tests for the in-memory store, by `tollgate-aws`'s integration tests against the
//! AWS emulator. Ids are prefixed with `ns` so runs can share one emulator.
//!
//! Test code compiled into the library (so another crate's tests can run it): a failed
//! expectation must fail the calling test loudly.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "contract test suite: failing loudly is its job"
)]

use tollgate_core::clock::EpochMs;
use tollgate_core::identity::{
    ClaimRule, IssuerPolicy, IssuerRecord, JwksLocation, JwsAlg, TenantMapping,
};
use tollgate_core::key::KeyEnv;
use tollgate_core::limits::{Counters, Limits};
use tollgate_core::pool::{FailureCount, TokenChange};
use tollgate_core::ports::{
    CounterDelta, CounterWrite, DeltaOutcome, IssuerStore, KeyStore, LimitStore, PoolStore,
    PriceStore, Secret, SecretStore, StoreError, SwapOutcome, TenantStore, VersionedCounters,
};
use tollgate_core::pricing::{Price, PriceTable};
use tollgate_core::provider::Usage;
use tollgate_core::records::{
    ClientKeyRecord, KeyStatus, PoolConfig, ProviderKind, SecretRef, Strategy, Tenant, TokenRecord,
    TokenStatus,
};

pub fn tenant(id: &str) -> Tenant {
    Tenant {
        model_pools: [("gpt-4o*".to_owned(), "openai-eu".to_owned())].into(),
        dlp_policy: Some(tollgate_core::records::Policy::default().with_category(
            tollgate_dlp::Category::Contact,
            tollgate_dlp::Action::Redact,
        )),
        ..Tenant::new(id, format!("Tenant {id}"), "owner@example.test", 1)
    }
}

pub fn key_record(key_id: &str, tenant_id: &str) -> ClientKeyRecord {
    // Fields away from their defaults, so a store dropping one fails the round trip.
    ClientKeyRecord {
        name: "contract".into(),
        expires_at: Some(4_000_000_000_000),
        allowed_cidrs: vec!["10.0.0.0/8".parse().expect("static cidr")],
        allowed_models: vec!["gpt-4o*".into()],
        dlp_policy: Some(
            tollgate_core::records::Policy::default()
                .with_entity(tollgate_dlp::Entity::Email, tollgate_dlp::Action::Off),
        ),
        ..ClientKeyRecord::new(
            key_id,
            KeyEnv::Test,
            "WXYZ",
            tenant_id,
            "dev@example.test",
            ("ab".repeat(32), 1),
            1,
        )
    }
}

pub fn token(pool: &str, id: &str) -> TokenRecord {
    TokenRecord {
        weight: 2,
        priority: 1,
        ..TokenRecord::new(
            id,
            pool,
            ProviderKind::Openai,
            "http://127.0.0.1:1/v1",
            SecretRef::SecretsManager {
                secret_id: format!("tollgate/pool/{id}"),
            },
            "ops@example.test",
            1,
        )
    }
}

pub async fn run_all<S>(s: &S, ns: &str)
where
    S: TenantStore + KeyStore + PoolStore + SecretStore + IssuerStore,
{
    tenants_round_trip_and_refuse_overwrite(s, ns).await;
    keys_round_trip_list_by_tenant_and_revoke(s, ns).await;
    keys_suspend_and_resume_but_revoked_keys_stay_revoked(s, ns).await;
    keys_rotate_in_one_write_and_only_once(s, ns).await;
    limits_round_trip_on_tenants_and_keys(s, ns).await;
    pool_tokens_round_trip_with_strategy(s, ns).await;
    health_change_applies_only_on_expected_version(s, ns).await;
    usage_adds_up(s, ns).await;
    operator_status_and_delete(s, ns).await;
    secrets_return_the_newest_version(s, ns).await;
    issuers_round_trip_and_list(s, ns).await;
}

pub async fn tenants_round_trip_and_refuse_overwrite<S: TenantStore>(s: &S, ns: &str) {
    let t = tenant(&format!("{ns}acme"));
    s.put_tenant(&t).await.expect("put tenant");
    assert_eq!(
        s.get_tenant(&t.tenant_id).await.expect("get"),
        Some(t.clone())
    );
    assert_eq!(s.put_tenant(&t).await, Err(StoreError::AlreadyExists));
    assert!(s.list_tenants().await.expect("list").contains(&t));
    assert_eq!(s.get_tenant(&format!("{ns}nope")).await.expect("get"), None);
    let strict = tollgate_core::records::Policy::default()
        .with_category(tollgate_dlp::Category::Contact, tollgate_dlp::Action::Block);
    s.set_tenant_policy(&t.tenant_id, Some(&strict))
        .await
        .expect("set policy");
    let got = s
        .get_tenant(&t.tenant_id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got.dlp_policy, Some(strict));
    s.set_tenant_policy(&t.tenant_id, None)
        .await
        .expect("clear policy");
    let got = s
        .get_tenant(&t.tenant_id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got.dlp_policy, None);
    assert_eq!(
        s.set_tenant_policy(&format!("{ns}nope"), None).await,
        Err(StoreError::NotFound)
    );
}

pub async fn limits_round_trip_on_tenants_and_keys<S: TenantStore + KeyStore>(s: &S, ns: &str) {
    let t = tenant(&format!("{ns}limited"));
    s.put_tenant(&t).await.expect("put tenant");
    let whole = Limits {
        rpm: Some(600),
        budget_month_micros: Some(1_000_000_000),
        ..Limits::default()
    };
    let per_key = Limits {
        concurrency: Some(20),
        tpm: Some(200_000),
        ..Limits::default()
    };
    s.set_tenant_limits(&t.tenant_id, Some(&whole))
        .await
        .expect("set tenant limits");
    s.set_tenant_key_limits(&t.tenant_id, Some(&per_key))
        .await
        .expect("set key defaults");
    let got = s
        .get_tenant(&t.tenant_id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        (got.limits, got.key_limits),
        (Some(whole), Some(per_key.clone()))
    );
    s.set_tenant_limits(&t.tenant_id, None)
        .await
        .expect("clear");
    let got = s
        .get_tenant(&t.tenant_id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!((got.limits, got.key_limits), (None, Some(per_key)));
    assert_eq!(
        s.set_tenant_limits(&format!("{ns}nope"), None).await,
        Err(StoreError::NotFound)
    );

    let k = key_record(&format!("{ns}keyL0000"), &t.tenant_id);
    s.put_key(&k).await.expect("put key");
    let own = Limits {
        rpm: Some(60),
        budget_day_micros: Some(1_000_000),
        ..Limits::default()
    };
    s.set_key_limits(&k.key_id, Some(&own)).await.expect("set");
    let got = s.get_key(&k.key_id).await.expect("get").expect("exists");
    assert_eq!(got.limits, Some(own));
    s.set_key_limits(&k.key_id, None).await.expect("clear");
    let got = s.get_key(&k.key_id).await.expect("get").expect("exists");
    assert_eq!(got.limits, None);
    assert_eq!(
        s.set_key_limits(&format!("{ns}missing"), None).await,
        Err(StoreError::NotFound)
    );
}

pub async fn keys_suspend_and_resume_but_revoked_keys_stay_revoked<S: KeyStore>(s: &S, ns: &str) {
    let a = key_record(&format!("{ns}keyS0000"), &format!("{ns}t1"));
    s.put_key(&a).await.expect("put");
    assert_eq!(
        s.set_key_suspended(&a.key_id, Some("rule key_refused_outside"), 50)
            .await,
        Ok(true)
    );
    let got = s.get_key(&a.key_id).await.expect("get").expect("exists");
    assert_eq!(got.status, KeyStatus::Suspended);
    assert_eq!(got.suspended_at, Some(50));
    assert_eq!(
        got.suspended_reason.as_deref(),
        Some("rule key_refused_outside")
    );
    assert_eq!(got.allowed_cidrs, a.allowed_cidrs, "other fields untouched");
    assert_eq!(
        s.set_key_suspended(&a.key_id, Some("again"), 60).await,
        Ok(false),
        "already suspended"
    );
    assert_eq!(s.set_key_suspended(&a.key_id, None, 70).await, Ok(true));
    let got = s.get_key(&a.key_id).await.expect("get").expect("exists");
    assert_eq!(got, a, "resumed: exactly as before");
    assert_eq!(s.set_key_suspended(&a.key_id, None, 80).await, Ok(false));
    s.revoke_key(&a.key_id, 90).await.expect("revoke");
    assert_eq!(
        s.set_key_suspended(&a.key_id, Some("x"), 95).await,
        Ok(false)
    );
    assert_eq!(s.set_key_suspended(&a.key_id, None, 96).await, Ok(false));
    let got = s.get_key(&a.key_id).await.expect("get").expect("exists");
    assert_eq!(got.status, KeyStatus::Revoked);
    assert_eq!(
        s.set_key_suspended(&format!("{ns}missing"), Some("x"), 1)
            .await,
        Err(StoreError::NotFound)
    );
}

pub async fn keys_rotate_in_one_write_and_only_once<S: KeyStore>(s: &S, ns: &str) {
    let old = key_record(&format!("{ns}rotOld00000"), &format!("{ns}acme"));
    s.put_key(&old).await.expect("put old");
    let successor = |id: &str| ClientKeyRecord {
        rotated_from: Some(old.key_id.clone()),
        ..key_record(id, &old.tenant_id)
    };
    let new = successor(&format!("{ns}rotNew00000"));
    // A successor id that is taken changes nothing.
    let taken = key_record(&format!("{ns}rotTaken000"), &old.tenant_id);
    s.put_key(&taken).await.expect("put taken");
    assert_eq!(
        s.rotate_key(&old.key_id, 5_000, &successor(&taken.key_id))
            .await,
        Err(StoreError::AlreadyExists)
    );
    let o = s.get_key(&old.key_id).await.expect("get").expect("old");
    assert_eq!(
        (o.rotated_to.as_deref(), o.expires_at),
        (None, old.expires_at)
    );
    assert_eq!(s.rotate_key(&old.key_id, 5_000, &new).await, Ok(true));
    let o = s.get_key(&old.key_id).await.expect("get").expect("old");
    assert_eq!(o.rotated_to.as_deref(), Some(new.key_id.as_str()));
    assert_eq!(o.expires_at, Some(5_000));
    assert_eq!(
        o.status,
        KeyStatus::Active,
        "the old key works until its overlap ends"
    );
    let n = s.get_key(&new.key_id).await.expect("get").expect("new");
    assert_eq!(n, new);
    // Only once: a second rotation of the old key, or of a revoked key, changes nothing.
    let again = successor(&format!("{ns}rotAgain000"));
    assert_eq!(s.rotate_key(&old.key_id, 9_000, &again).await, Ok(false));
    assert_eq!(s.get_key(&again.key_id).await.expect("get"), None);
    s.revoke_key(&taken.key_id, 1).await.expect("revoke");
    let from_revoked = ClientKeyRecord {
        rotated_from: Some(taken.key_id.clone()),
        ..key_record(&format!("{ns}rotRevoked0"), &old.tenant_id)
    };
    assert_eq!(
        s.rotate_key(&taken.key_id, 9_000, &from_revoked).await,
        Ok(false)
    );
    assert_eq!(s.get_key(&from_revoked.key_id).await.expect("get"), None);
    assert_eq!(
        s.rotate_key(&format!("{ns}rotNobody00"), 9_000, &from_revoked)
            .await,
        Err(StoreError::NotFound)
    );
    // A canary is never rotated (its successor would be a working key planted as bait),
    // and its flag survives the round trip.
    let canary = ClientKeyRecord {
        canary: true,
        ..key_record(&format!("{ns}rotCanary00"), &old.tenant_id)
    };
    s.put_key(&canary).await.expect("put canary");
    assert_eq!(
        s.get_key(&canary.key_id).await.expect("get"),
        Some(canary.clone())
    );
    let from_canary = successor(&format!("{ns}rotFromCan0"));
    assert_eq!(
        s.rotate_key(&canary.key_id, 9_000, &from_canary).await,
        Ok(false)
    );
    assert_eq!(s.get_key(&from_canary.key_id).await.expect("get"), None);
}

pub async fn keys_round_trip_list_by_tenant_and_revoke<S: KeyStore>(s: &S, ns: &str) {
    let a = key_record(&format!("{ns}keyA0000"), &format!("{ns}t1"));
    let b = key_record(&format!("{ns}keyB0000"), &format!("{ns}t2"));
    s.put_key(&a).await.expect("put a");
    s.put_key(&b).await.expect("put b");
    assert_eq!(s.put_key(&a).await, Err(StoreError::AlreadyExists));
    assert_eq!(s.get_key(&a.key_id).await.expect("get"), Some(a.clone()));
    let t1 = s.list_keys(Some(&a.tenant_id)).await.expect("list");
    assert_eq!(t1, vec![a.clone()]);
    s.revoke_key(&a.key_id, 77).await.expect("revoke");
    let got = s.get_key(&a.key_id).await.expect("get").expect("exists");
    assert_eq!(got.status, KeyStatus::Revoked);
    assert_eq!(got.revoked_at, Some(77));
    assert_eq!(
        s.revoke_key(&format!("{ns}missing"), 1).await,
        Err(StoreError::NotFound)
    );
    let p = tollgate_core::records::Policy::default().with_entity(
        tollgate_dlp::Entity::IpAddress,
        tollgate_dlp::Action::Redact,
    );
    s.set_key_policy(&b.key_id, Some(&p)).await.expect("set");
    let got = s.get_key(&b.key_id).await.expect("get").expect("exists");
    assert_eq!(got.dlp_policy, Some(p));
    assert_eq!(got.status, KeyStatus::Active, "other fields untouched");
    assert_eq!(
        s.set_key_policy(&format!("{ns}missing"), None).await,
        Err(StoreError::NotFound)
    );
}

pub async fn pool_tokens_round_trip_with_strategy<S: PoolStore>(s: &S, ns: &str) {
    let pool = format!("{ns}pool");
    let t1 = token(&pool, "t1");
    let t2 = token(&pool, "t2");
    s.put_token(&t1).await.expect("put");
    s.put_token(&t2).await.expect("put");
    assert_eq!(s.put_token(&t1).await, Err(StoreError::AlreadyExists));
    s.put_token(&token(&format!("{ns}other"), "t9"))
        .await
        .expect("put other");
    let v = s.load_pool(&pool).await.expect("load");
    assert_eq!(v.strategy, Strategy::RoundRobin);
    let mut ids: Vec<_> = v.tokens.iter().map(|t| t.token_id.clone()).collect();
    ids.sort();
    assert_eq!(ids, ["t1", "t2"]);
    assert_eq!(v.tokens.iter().find(|t| t.token_id == "t1"), Some(&t1));
    let cfg = PoolConfig {
        tenant_concurrency: Some(3),
        ..PoolConfig::new(pool.clone(), Strategy::Priority)
    };
    s.set_pool_config(&cfg).await.expect("config");
    let v = s.load_pool(&pool).await.expect("load");
    assert_eq!(
        (v.strategy, v.tenant_concurrency),
        (Strategy::Priority, Some(3))
    );
    assert!(s.list_pool_configs().await.expect("configs").contains(&cfg));
    // Replacing the settings without a cap removes it.
    s.set_pool_config(&PoolConfig::new(pool.clone(), Strategy::Priority))
        .await
        .expect("config");
    assert_eq!(
        s.load_pool(&pool).await.expect("load").tenant_concurrency,
        None
    );
    assert!(s.list_tokens().await.expect("all").len() >= 3);
}

pub async fn health_change_applies_only_on_expected_version<S: PoolStore>(s: &S, ns: &str) {
    let pool = format!("{ns}health");
    s.put_token(&token(&pool, "h1")).await.expect("put");
    let invalid = TokenChange {
        status: TokenStatus::Invalid,
        bump_version: true,
        cooldown_until: None,
        failures: FailureCount::Increment,
        last_error: Some("upstream_auth_rejected"),
    };
    assert!(
        s.apply_change(&pool, "h1", 0, &invalid)
            .await
            .expect("apply")
    );
    // A second instance still holding version 0 loses the race and changes nothing.
    let cooling = TokenChange {
        status: TokenStatus::Cooling,
        bump_version: true,
        cooldown_until: Some(5),
        failures: FailureCount::Increment,
        last_error: Some("upstream_rate_limited"),
    };
    assert!(
        !s.apply_change(&pool, "h1", 0, &cooling)
            .await
            .expect("apply")
    );
    let t = &s.load_pool(&pool).await.expect("load").tokens[0];
    assert_eq!(t.status, TokenStatus::Invalid);
    assert_eq!(t.version, 1);
    assert_eq!(t.consecutive_failures, 1);
    assert_eq!(t.last_error.as_deref(), Some("upstream_auth_rejected"));
    assert!(
        !s.apply_change(&pool, "absent", 0, &cooling)
            .await
            .expect("apply")
    );
}

pub async fn usage_adds_up<S: PoolStore>(s: &S, ns: &str) {
    let pool = format!("{ns}usage");
    s.put_token(&token(&pool, "u1")).await.expect("put");
    for i in 0..3 {
        s.record_usage(
            &pool,
            "u1",
            Usage {
                input: 10,
                output: 5,
            },
            100 + i,
        )
        .await
        .expect("usage");
    }
    let t = &s.load_pool(&pool).await.expect("load").tokens[0];
    assert_eq!((t.requests, t.tokens_in, t.tokens_out), (3, 30, 15));
    assert_eq!(t.last_used_at, Some(102));
}

pub async fn operator_status_and_delete<S: PoolStore>(s: &S, ns: &str) {
    let pool = format!("{ns}ops");
    let mut t = token(&pool, "o1");
    t.status = TokenStatus::Cooling;
    t.cooldown_until = Some(99);
    t.consecutive_failures = 4;
    s.put_token(&t).await.expect("put");
    s.set_token_status(&pool, "o1", TokenStatus::Disabled)
        .await
        .expect("disable");
    let got = &s.load_pool(&pool).await.expect("load").tokens[0];
    assert_eq!(got.status, TokenStatus::Disabled);
    assert!(got.version > 0);
    s.set_token_status(&pool, "o1", TokenStatus::Active)
        .await
        .expect("enable");
    let got = &s.load_pool(&pool).await.expect("load").tokens[0];
    assert_eq!(got.status, TokenStatus::Active);
    assert_eq!(got.cooldown_until, None);
    assert_eq!(got.consecutive_failures, 0);
    assert_eq!(
        s.set_token_status(&pool, "nope", TokenStatus::Active).await,
        Err(StoreError::NotFound)
    );
    s.delete_token(&pool, "o1").await.expect("delete");
    assert!(s.load_pool(&pool).await.expect("load").tokens.is_empty());
}

pub async fn secrets_return_the_newest_version<S: SecretStore>(s: &S, ns: &str) {
    let id = format!("{ns}tollgate/pool/s1");
    s.put_secret(&id, &Secret::new("mock-ok-first"))
        .await
        .expect("put");
    assert_eq!(
        s.get_secret(&id).await.expect("get").expose(),
        "mock-ok-first"
    );
    s.put_secret(&id, &Secret::new("mock-ok-second"))
        .await
        .expect("put");
    assert_eq!(
        s.get_secret(&id).await.expect("get").expose(),
        "mock-ok-second"
    );
    s.delete_secret(&id).await.expect("delete");
    assert!(s.get_secret(&id).await.is_err());
    assert_eq!(
        s.get_secret(&format!("{ns}absent")).await,
        Err(StoreError::NotFound)
    );
}

// ---------------------------------------------------------------------------------------
// Limit counters (`LimitStore`): what makes the limits exact across instances.
// ---------------------------------------------------------------------------------------

/// Counters away from their defaults in every group, leases included, so a store dropping a
/// field fails the round trip.
pub fn counters(requests: u64) -> Counters {
    Counters {
        minute: 29_000_000,
        requests,
        tokens_minute: 1_200,
        day: 20_000,
        spend_day: 1_500_000,
        tokens_day: 9_000,
        month: 670,
        spend_month: 7_000_000,
        tokens_month: 90_000,
        inflight: [
            ("req-a".to_owned(), 1_800_000_000_000),
            ("req-b".to_owned(), 1_800_000_000_001),
        ]
        .into(),
    }
}

fn write(subject: &str, expected_version: u64, c: Counters) -> CounterWrite {
    CounterWrite {
        subject: subject.to_owned(),
        expected_version,
        counters: c,
    }
}

/// Far enough ahead that no store drops the counters during the test.
const EXPIRES: EpochMs = 4_000_000_000_000;

pub async fn run_limits<S: LimitStore>(s: &S, ns: &str) {
    counters_start_at_version_zero_and_the_first_write_expects_it(s, ns).await;
    a_stale_version_is_refused_with_the_current_state_and_changes_nothing(s, ns).await;
    two_subjects_are_all_or_nothing(s, ns).await;
    versions_increase_by_one_per_applied_write(s, ns).await;
    settlement_deltas_apply_on_their_windows_only(s, ns).await;
}

/// A settlement as deltas: applied on the admission's windows, version + 1, lease freed,
/// never below what the differences say; refused (nothing written) when a group it corrects
/// is stored under another window or the subject is not stored; all or none across subjects.
pub async fn settlement_deltas_apply_on_their_windows_only<S: LimitStore>(s: &S, ns: &str) {
    use tollgate_core::limits::SettleDelta;
    let key = format!("key#{ns}delta");
    let tenant = format!("tenant#{ns}delta");
    for subject in [&key, &tenant] {
        let out = s
            .swap_counters(&[write(subject, 0, counters(5))], EXPIRES)
            .await
            .expect("swap");
        assert_eq!(out, SwapOutcome::Applied);
    }
    let c = counters(5);
    let delta = SettleDelta {
        minute: Some((c.minute, -200)),
        day: Some((c.day, -400_000, -200)),
        month: Some((c.month, 100, -200)),
        release: "req-a".to_owned(),
    };
    let d = |subject: &str, delta: &SettleDelta| CounterDelta {
        subject: subject.to_owned(),
        delta: delta.clone(),
    };
    let out = s
        .apply_deltas(&[d(&key, &delta)], None, EXPIRES)
        .await
        .expect("deltas");
    assert_eq!(out, DeltaOutcome::Applied);
    let stored = s.load_counters(&key).await.expect("load");
    let mut want = counters(5);
    want.tokens_minute -= 200;
    want.spend_day -= 400_000;
    want.tokens_day -= 200;
    want.spend_month += 100;
    want.tokens_month -= 200;
    want.inflight.remove("req-a");
    assert_eq!(
        stored,
        VersionedCounters {
            counters: want.clone(),
            version: 2
        }
    );
    // Replayed (the lease is gone: settled already): nothing changes.
    let out = s
        .apply_deltas(&[d(&key, &delta)], None, EXPIRES)
        .await
        .expect("deltas");
    assert_eq!(out, DeltaOutcome::NotApplied);
    assert_eq!(s.load_counters(&key).await.expect("load").version, 2);
    // The other request of the key, on its own lease.
    let no_lease = SettleDelta {
        minute: None,
        day: None,
        month: Some((c.month, 1, 0)),
        release: "req-b".to_owned(),
    };
    let out = s
        .apply_deltas(&[d(&key, &no_lease)], None, EXPIRES)
        .await
        .expect("deltas");
    assert_eq!(out, DeltaOutcome::Applied);
    want.spend_month += 1;
    want.inflight.remove("req-b");
    assert_eq!(
        s.load_counters(&key).await.expect("load"),
        VersionedCounters {
            counters: want.clone(),
            version: 3
        }
    );
    // The minute moved on in the store: nothing is written.
    let moved = SettleDelta {
        minute: Some((c.minute - 1, -1)),
        ..delta.clone()
    };
    let tenant_before = s.load_counters(&tenant).await.expect("load");
    let out = s
        .apply_deltas(&[d(&tenant, &moved)], None, EXPIRES)
        .await
        .expect("deltas");
    assert_eq!(out, DeltaOutcome::NotApplied);
    assert_eq!(s.load_counters(&tenant).await.expect("load"), tenant_before);
    assert_eq!(s.load_counters(&key).await.expect("load").version, 3);
    // A subject never stored is not created by a settlement.
    let ghost = format!("key#{ns}ghost");
    let out = s
        .apply_deltas(&[d(&ghost, &delta)], None, EXPIRES)
        .await
        .expect("deltas");
    assert_eq!(out, DeltaOutcome::NotApplied);
    assert_eq!(
        s.load_counters(&ghost).await.expect("load"),
        VersionedCounters::default()
    );
    // Both subjects at once: all or none (the key's lease is gone, so neither applies)...
    let out = s
        .apply_deltas(&[d(&tenant, &delta), d(&key, &no_lease)], None, EXPIRES)
        .await
        .expect("deltas");
    assert_eq!(out, DeltaOutcome::NotApplied);
    assert_eq!(s.load_counters(&tenant).await.expect("load"), tenant_before);
    // ...and the tenant alone, whose lease is held, applies.
    let out = s
        .apply_deltas(&[d(&tenant, &delta)], None, EXPIRES)
        .await
        .expect("deltas");
    assert_eq!(out, DeltaOutcome::Applied);
    assert_eq!(s.load_counters(&tenant).await.expect("load").version, 2);
    assert_eq!(s.load_counters(&key).await.expect("load").version, 3);
    // A stale version decided before the delta is refused (others re-decide on it).
    let out = s
        .swap_counters(&[write(&key, 2, counters(6))], EXPIRES)
        .await
        .expect("swap");
    assert!(matches!(out, SwapOutcome::Conflict(_)), "{out:?}");
}

pub async fn counters_start_at_version_zero_and_the_first_write_expects_it<S: LimitStore>(
    s: &S,
    ns: &str,
) {
    let subject = format!("key#{ns}first");
    assert_eq!(
        s.load_counters(&subject).await.expect("load"),
        VersionedCounters::default(),
        "a subject never written reads as empty, version 0"
    );
    // Claiming a stored version that does not exist is refused...
    let out = s
        .swap_counters(&[write(&subject, 3, counters(1))], EXPIRES)
        .await
        .expect("swap");
    assert_eq!(
        out,
        SwapOutcome::Conflict(vec![(subject.clone(), VersionedCounters::default())])
    );
    // ...and version 0 creates it.
    let out = s
        .swap_counters(&[write(&subject, 0, counters(1))], EXPIRES)
        .await
        .expect("swap");
    assert_eq!(out, SwapOutcome::Applied);
    let stored = s.load_counters(&subject).await.expect("load");
    assert_eq!(
        stored,
        VersionedCounters {
            counters: counters(1),
            version: 1
        }
    );
    // A second creator (it also saw nothing stored) loses and learns what is there.
    let out = s
        .swap_counters(&[write(&subject, 0, counters(7))], EXPIRES)
        .await
        .expect("swap");
    assert_conflict_reports(&out, &[(&subject, &stored)]);
    assert_eq!(s.load_counters(&subject).await.expect("load"), stored);
}

pub async fn a_stale_version_is_refused_with_the_current_state_and_changes_nothing<
    S: LimitStore,
>(
    s: &S,
    ns: &str,
) {
    let subject = format!("key#{ns}stale");
    for v in 0..2 {
        let out = s
            .swap_counters(&[write(&subject, v, counters(v + 1))], EXPIRES)
            .await
            .expect("swap");
        assert_eq!(out, SwapOutcome::Applied);
    }
    let current = s.load_counters(&subject).await.expect("load");
    assert_eq!(current.version, 2);
    // Decided on version 1: another instance has written since.
    let out = s
        .swap_counters(&[write(&subject, 1, counters(99))], EXPIRES)
        .await
        .expect("swap");
    assert_eq!(
        out,
        SwapOutcome::Conflict(vec![(subject.clone(), current.clone())]),
        "one subject: the refusal carries the stored state"
    );
    assert_eq!(s.load_counters(&subject).await.expect("load"), current);
    // Deciding again on what the refusal returned applies.
    let out = s
        .swap_counters(&[write(&subject, current.version, counters(3))], EXPIRES)
        .await
        .expect("swap");
    assert_eq!(out, SwapOutcome::Applied);
}

pub async fn two_subjects_are_all_or_nothing<S: LimitStore>(s: &S, ns: &str) {
    let key = format!("key#{ns}pair");
    let tenant = format!("tenant#{ns}pair");
    let out = s
        .swap_counters(
            &[write(&key, 0, counters(1)), write(&tenant, 0, counters(10))],
            EXPIRES,
        )
        .await
        .expect("swap");
    assert_eq!(out, SwapOutcome::Applied, "both created in one write");
    let k1 = s.load_counters(&key).await.expect("load");
    let t1 = s.load_counters(&tenant).await.expect("load");
    assert_eq!((k1.version, t1.version), (1, 1));
    assert_eq!(t1.counters, counters(10));

    // Another instance moves the tenant on (a different key of the same tenant).
    let out = s
        .swap_counters(&[write(&tenant, 1, counters(11))], EXPIRES)
        .await
        .expect("swap");
    assert_eq!(out, SwapOutcome::Applied);
    let t2 = s.load_counters(&tenant).await.expect("load");

    // The key's version is current, the tenant's stale: nothing is written.
    let out = s
        .swap_counters(
            &[write(&key, 1, counters(2)), write(&tenant, 1, counters(12))],
            EXPIRES,
        )
        .await
        .expect("swap");
    assert_conflict_reports(&out, &[(&tenant, &t2)]);
    assert_eq!(
        s.load_counters(&key).await.expect("load"),
        k1,
        "the key's own write did not apply"
    );
    assert_eq!(s.load_counters(&tenant).await.expect("load"), t2);

    // The other way round: the tenant current, the key stale.
    let out = s
        .swap_counters(
            &[write(&key, 5, counters(2)), write(&tenant, 2, counters(12))],
            EXPIRES,
        )
        .await
        .expect("swap");
    assert_conflict_reports(&out, &[(&key, &k1)]);
    assert_eq!(s.load_counters(&tenant).await.expect("load"), t2);

    // Decided on the current versions, both apply together.
    let out = s
        .swap_counters(
            &[write(&key, 1, counters(2)), write(&tenant, 2, counters(12))],
            EXPIRES,
        )
        .await
        .expect("swap");
    assert_eq!(out, SwapOutcome::Applied);
    assert_eq!(s.load_counters(&key).await.expect("load").version, 2);
    assert_eq!(s.load_counters(&tenant).await.expect("load").version, 3);
}

pub async fn versions_increase_by_one_per_applied_write<S: LimitStore>(s: &S, ns: &str) {
    let subject = format!("tenant#{ns}versions");
    let mut version = 0;
    for i in 0..5 {
        let out = s
            .swap_counters(&[write(&subject, version, counters(i))], EXPIRES)
            .await
            .expect("swap");
        assert_eq!(out, SwapOutcome::Applied, "write {i}");
        let stored = s.load_counters(&subject).await.expect("load");
        assert_eq!(stored.version, version + 1, "write {i}");
        assert_eq!(stored.counters, counters(i), "write {i}");
        version = stored.version;
    }
    // A refused write does not move the version.
    let out = s
        .swap_counters(&[write(&subject, version - 1, counters(0))], EXPIRES)
        .await
        .expect("swap");
    assert!(matches!(out, SwapOutcome::Conflict(_)), "{out:?}");
    assert_eq!(
        s.load_counters(&subject).await.expect("load").version,
        version
    );
}

/// A conflict that reports every subject in `stale` with its stored state; any other
/// subject it reports must also be reported as stored (a store may leave out subjects whose
/// own condition held: the caller reads those again).
fn assert_conflict_reports(out: &SwapOutcome, stale: &[(&String, &VersionedCounters)]) {
    let SwapOutcome::Conflict(current) = out else {
        panic!("expected a conflict, got {out:?}");
    };
    for (subject, state) in stale {
        let reported = current.iter().find(|(s, _)| s == *subject);
        assert_eq!(
            reported.map(|(_, c)| c),
            Some(*state),
            "the stale subject {subject} is reported with its stored state"
        );
    }
    let subjects: Vec<&String> = current.iter().map(|(s, _)| s).collect();
    let mut unique = subjects.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(subjects.len(), unique.len(), "each subject reported once");
}

/// Issuer records: get by exact `iss`, replace on put, list, delete (`NotFound` when absent).
pub async fn issuers_round_trip_and_list<S: IssuerStore>(s: &S, ns: &str) {
    let url = format!("https://{ns}idp.example.test");
    let rec = IssuerRecord::new(
        url.clone(),
        vec!["tollgate".into()],
        format!("{url}/jwks"),
        vec![JwsAlg::RS256],
        TenantMapping::Fixed {
            tenant_id: format!("{ns}acme"),
        },
        1,
    );
    assert_eq!(s.get_issuer(&url).await.unwrap(), None);
    s.put_issuer(&rec).await.unwrap();
    assert_eq!(s.get_issuer(&url).await.unwrap(), Some(rec.clone()));
    // Exact match only: a trailing slash is another issuer.
    assert_eq!(s.get_issuer(&format!("{url}/")).await.unwrap(), None);
    let changed = IssuerRecord {
        audiences: vec!["tollgate".into(), "other".into()],
        ..rec.clone()
    };
    s.put_issuer(&changed).await.unwrap();
    assert_eq!(s.get_issuer(&url).await.unwrap(), Some(changed.clone()));
    let listed = s.list_issuers().await.unwrap();
    assert_eq!(listed.iter().filter(|r| r.issuer == url).count(), 1);
    assert!(listed.contains(&changed));
    // Every field survives the store: policy, claim rules, a claim mapping, discovery.
    let full = IssuerRecord {
        jwks: JwksLocation::Discovery,
        principal_claim: "email".into(),
        required_claims: vec![
            ClaimRule::Equals {
                claim: "repository".into(),
                value: "acme/app".into(),
            },
            ClaimRule::Contains {
                claim: "groups".into(),
                value: "llm".into(),
            },
        ],
        tenant: TenantMapping::Claim {
            claim: "org".into(),
            allowed: vec![format!("{ns}acme"), format!("{ns}globex")],
        },
        policy: IssuerPolicy {
            allowed_cidrs: vec!["10.0.0.0/8".parse().unwrap()],
            allowed_models: vec!["gpt-4o*".into()],
            allowed_routes: vec!["chat.completions".into()],
            model_pools: [("*".to_owned(), "team".to_owned())].into(),
            dlp_policy: None,
            limits: Some(Limits {
                rpm: Some(60),
                budget_day_micros: Some(5_000_000),
                ..Limits::default()
            }),
        },
        ..IssuerRecord::new(
            format!("https://{ns}full.example.test/tenant/"),
            vec!["api://tollgate".into()],
            "https://unused.example.test/jwks",
            vec![JwsAlg::ES256, JwsAlg::EdDSA],
            TenantMapping::Fixed {
                tenant_id: "x".into(),
            },
            2,
        )
    };
    s.put_issuer(&full).await.unwrap();
    assert_eq!(
        s.get_issuer(&full.issuer).await.unwrap(),
        Some(full.clone())
    );
    s.delete_issuer(&url).await.unwrap();
    assert_eq!(s.get_issuer(&url).await.unwrap(), None);
    assert_eq!(s.delete_issuer(&url).await, Err(StoreError::NotFound));
    let listed = s.list_issuers().await.unwrap();
    assert!(listed.iter().all(|r| r.issuer != url));
    assert!(listed.contains(&full));
    s.delete_issuer(&full.issuer).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Model prices (`PriceStore`). The store holds one table for the deployment, so this suite
// needs a store of its own (the AWS test gives it its own price item).

pub async fn run_prices<S: PriceStore>(s: &S) {
    nothing_is_stored_until_the_first_write_and_the_table_round_trips(s).await;
    a_price_write_on_a_stale_version_changes_nothing(s).await;
}

pub async fn nothing_is_stored_until_the_first_write_and_the_table_round_trips<S: PriceStore>(
    s: &S,
) {
    assert_eq!(s.load_prices().await.expect("load"), None);
    // A stale expectation on an empty store is refused too.
    assert!(
        !s.store_prices(&PriceTable::default(), 3)
            .await
            .expect("store")
    );
    let mut t = PriceTable::builtin();
    t.prices.insert(
        "anthropic.claude-sonnet-4-5-20250929-v1:0".into(),
        Price {
            input: 3_000_000,
            output: 15_000_000,
            cached_input: None,
        },
    );
    t.prices.insert(
        "free-model".into(),
        Price {
            input: 0,
            output: 0,
            cached_input: Some(0),
        },
    );
    assert!(s.store_prices(&t, 0).await.expect("first store"));
    let got = s.load_prices().await.expect("load").expect("stored");
    assert_eq!(got.version, 1);
    assert_eq!(got.table, t, "every model, every field, cached or not");
}

pub async fn a_price_write_on_a_stale_version_changes_nothing<S: PriceStore>(s: &S) {
    let before = s.load_prices().await.expect("load").expect("stored");
    let mut smaller = before.table.clone();
    smaller.prices.retain(|m, _| m.starts_with("gpt-4o"));
    // Someone else stored first: both version 0 and an old version are refused.
    assert!(!s.store_prices(&smaller, 0).await.expect("store"));
    assert!(
        !s.store_prices(&smaller, before.version + 1)
            .await
            .expect("store")
    );
    assert_eq!(s.load_prices().await.expect("load"), Some(before.clone()));
    // On the current version the table is replaced as a whole (removals included).
    assert!(
        s.store_prices(&smaller, before.version)
            .await
            .expect("store")
    );
    let after = s.load_prices().await.expect("load").expect("stored");
    assert_eq!(after.version, before.version + 1);
    assert_eq!(after.table, smaller);
}

/// Rotation records: written only over the `rev` the writer read (0: none stored yet), kept
/// apart from the token's health fields, `NotFound` for an unknown token.
pub async fn rotation_records_swap_only_over_the_expected_rev<S>(s: &S, ns: &str)
where
    S: PoolStore + tollgate_core::rotation::RotationRecords,
{
    use tollgate_core::rotation::{
        RetireVia, RetiringKey, RotationMode, RotationState, TokenRotation,
    };
    let pool = format!("{ns}rot");
    s.put_token(&token(&pool, "r1")).await.unwrap();
    let mut r = TokenRotation::new(
        RotationMode::Staged {
            retire: RetireVia::AnthropicAdmin,
        },
        7,
        Some("apikey_1".into()),
        1_000,
    );
    r.rev = 1;
    assert!(s.swap_rotation(&pool, "r1", 0, &r).await.unwrap());
    assert!(
        !s.swap_rotation(&pool, "r1", 0, &r).await.unwrap(),
        "rev 0 is taken"
    );
    let mut next = r.clone();
    next.rev = 2;
    next.state = RotationState::Pending {
        version_id: "v2".into(),
        key_id: None,
        started_at: 5,
    };
    next.retiring = vec![RetiringKey {
        key_id: "apikey_0".into(),
        after: 9,
    }];
    assert!(!s.swap_rotation(&pool, "r1", 7, &next).await.unwrap());
    assert!(s.swap_rotation(&pool, "r1", 1, &next).await.unwrap());
    let stored = s.load_pool(&pool).await.unwrap().tokens[0].clone();
    assert_eq!(stored.rotation, Some(next));
    assert_eq!(stored.status, TokenStatus::Active);
    assert_eq!(stored.weight, 2, "the rest of the record is untouched");
    assert_eq!(
        s.swap_rotation(&pool, "missing", 0, &r).await,
        Err(StoreError::NotFound)
    );
}

/// Versions and staging labels of a secret `name` the caller created with the value `v1` as
/// its only (AWSCURRENT) version. `token` is a fresh version id (32 to 64 characters).
pub async fn versioned_secrets_follow_staging_rules<S>(s: &S, name: &str, token: &str)
where
    S: tollgate_core::rotation::VersionedSecrets,
{
    use tollgate_core::rotation::{AWSCURRENT, AWSPENDING, STAGED};
    let d = s.describe(name).await.unwrap();
    assert_eq!(d.stages.len(), 1);
    let first = d.version_with(AWSCURRENT).unwrap().to_owned();
    assert!(d.is_named(name));
    let v = |x: &str| Some(Secret::new(x));
    assert_eq!(s.value(name, None, AWSCURRENT).await.unwrap(), v("v1"));
    assert_eq!(s.value(name, None, AWSPENDING).await.unwrap(), None);
    assert_eq!(s.value(name, Some(token), AWSPENDING).await.unwrap(), None);

    let staged = s.put_staged(name, &Secret::new("v-staged")).await.unwrap();
    assert_eq!(s.value(name, None, STAGED).await.unwrap(), v("v-staged"));
    assert_eq!(
        s.describe(name).await.unwrap().version_with(STAGED),
        Some(staged.as_str())
    );

    s.put_pending(name, token, &Secret::new("v2"))
        .await
        .unwrap();
    s.put_pending(name, token, &Secret::new("v2"))
        .await
        .unwrap();
    assert_eq!(
        s.value(name, Some(token), AWSPENDING).await.unwrap(),
        v("v2")
    );
    assert_eq!(s.value(name, Some(&first), AWSPENDING).await.unwrap(), None);
    assert_eq!(s.value(name, None, AWSCURRENT).await.unwrap(), v("v1"));

    s.move_stage(name, AWSCURRENT, Some(token), Some(&first))
        .await
        .unwrap();
    s.move_stage(name, AWSPENDING, None, Some(token))
        .await
        .unwrap();
    s.move_stage(name, STAGED, None, Some(&staged))
        .await
        .unwrap();
    let d = s.describe(name).await.unwrap();
    assert_eq!(d.version_with(AWSCURRENT), Some(token));
    assert_eq!(d.version_with(AWSPENDING), None);
    assert_eq!(d.version_with(STAGED), None);
    assert_eq!(s.value(name, None, AWSCURRENT).await.unwrap(), v("v2"));
    assert_eq!(
        s.describe("tollgate/contract/no-such-secret").await,
        Err(StoreError::NotFound)
    );
}

/// The sweep's writes: a probe lands on the record without touching health; a token's secret
/// reference is replaced only over the expected one; a staged value is set and cleared; an
/// unknown token is `NotFound` for each.
pub async fn sweep_writes_touch_only_their_fields<S>(s: &S, ns: &str)
where
    S: PoolStore + tollgate_core::sweep::ProbeRecords + tollgate_core::ports::TokenSecretSwap,
{
    use tollgate_core::sweep::{LastProbe, ProbeResult};
    let pool = format!("{ns}sweep");
    s.put_token(&token(&pool, "s1")).await.unwrap();
    let probe = LastProbe {
        at: 77,
        result: ProbeResult::Rejected { status: 401 },
    };
    s.record_probe(&pool, "s1", &probe).await.unwrap();
    let t = s.load_pool(&pool).await.unwrap().tokens.remove(0);
    assert_eq!(t.last_probe, Some(probe));
    assert_eq!((t.status, t.version, t.weight), (TokenStatus::Active, 0, 2));
    assert_eq!(
        s.record_probe(&pool, "nope", &probe).await,
        Err(StoreError::NotFound)
    );

    let old = t.secret.clone();
    let blob = |c: &str| SecretRef::KmsBlob {
        ciphertext_b64: c.into(),
        tenant_id: "acme".into(),
    };
    assert!(
        s.swap_secret(&pool, "s1", &old, &blob("AAAA"))
            .await
            .unwrap()
    );
    assert!(
        !s.swap_secret(&pool, "s1", &old, &blob("BBBB"))
            .await
            .unwrap(),
        "the expected reference is gone"
    );
    assert!(
        s.swap_secret(&pool, "s1", &blob("AAAA"), &blob("CCCC"))
            .await
            .unwrap()
    );
    assert_eq!(
        s.load_pool(&pool).await.unwrap().tokens[0].secret,
        blob("CCCC")
    );
    assert_eq!(
        s.swap_secret(&pool, "nope", &old, &blob("AAAA")).await,
        Err(StoreError::NotFound)
    );

    s.set_staged(&pool, "s1", Some(&blob("DDDD")))
        .await
        .unwrap();
    let t = s.load_pool(&pool).await.unwrap().tokens.remove(0);
    assert_eq!(t.staged_secret, Some(blob("DDDD")));
    assert_eq!(t.last_probe, Some(probe), "other fields untouched");
    s.set_staged(&pool, "s1", None).await.unwrap();
    assert_eq!(
        s.load_pool(&pool).await.unwrap().tokens[0].staged_secret,
        None
    );
    assert_eq!(
        s.set_staged(&pool, "nope", None).await,
        Err(StoreError::NotFound)
    );
}
