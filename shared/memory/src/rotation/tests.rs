//! The rotation protocol over the in-memory ports: every step, twice, concurrently,
//! interrupted, and failing.

use super::*;
use crate::MemoryStore;
use std::sync::atomic::Ordering;
use tollgate_core::clock::{Clock, FakeClock};
use tollgate_core::ports::PoolStore;
use tollgate_core::records::{ProviderKind, SecretRef, TokenRecord};
use tollgate_core::rotation::{
    RetireVia, RotationError, RotationMode, RotationSettings, RotationState, Rotator, STAGED, Step,
    StepOutcome,
};

const SECRET: &str = "tollgate/pool/p/t1";
const GRACE: u64 = 120_000;

struct World {
    store: MemoryStore,
    secrets: MemoryVersions,
    minter: FakeMinter,
    clock: FakeClock,
}

impl World {
    async fn new(mode: RotationMode, initial: &str, key_id: Option<&str>) -> Self {
        let w = World {
            store: MemoryStore::new(),
            secrets: MemoryVersions::new(),
            minter: FakeMinter::new(),
            clock: FakeClock::new(1_000_000),
        };
        w.secrets.create(SECRET, initial).unwrap();
        if let Some(k) = key_id {
            w.minter.add_key(k, initial);
        }
        let t = TokenRecord {
            rotation: Some(TokenRotation::new(
                mode,
                30,
                key_id.map(str::to_owned),
                1_000_000,
            )),
            ..TokenRecord::new(
                "t1",
                "p",
                ProviderKind::Openai,
                "http://mock/v1",
                SecretRef::SecretsManager {
                    secret_id: SECRET.into(),
                },
                "ops",
                0,
            )
        };
        w.store.put_token(&t).await.unwrap();
        w
    }

    fn rotator(&self) -> Rotator<'_> {
        Rotator {
            secrets: &self.secrets,
            pools: &self.store,
            records: &self.store,
            minter: &self.minter,
            clock: &self.clock,
            settings: RotationSettings { grace_ms: GRACE },
        }
    }

    async fn step(&self, step: Step, token: &str) -> Result<StepOutcome, RotationError> {
        self.rotator().run(step, SECRET, token).await
    }

    async fn all_steps(&self, token: &str) -> Result<(), RotationError> {
        for s in Step::ALL {
            self.step(s, token).await?;
        }
        Ok(())
    }

    async fn record(&self) -> TokenRotation {
        self.store.load_pool("p").await.unwrap().tokens[0]
            .rotation
            .clone()
            .unwrap()
    }

    fn current(&self) -> String {
        self.secrets.current(SECRET).unwrap().expose().to_owned()
    }
}

fn openai() -> RotationMode {
    RotationMode::OpenaiAdmin {
        project_id: "proj_1".into(),
        service_account_id: "svc_acct_1".into(),
        key_ttl_secs: None,
    }
}

#[tokio::test]
async fn openai_rotation_mints_promotes_syncs_the_record_and_retires_the_old_key_after_grace() {
    let w = World::new(openai(), "old-value", Some("key_old")).await;
    let token = w.secrets.start_rotation(SECRET).unwrap();
    w.all_steps(&token).await.unwrap();

    assert_eq!(w.current(), "fake-0");
    assert_eq!(w.minter.mints.load(Ordering::SeqCst), 1);
    let r = w.record().await;
    assert_eq!(r.secret_version.as_deref(), Some(token.as_str()));
    assert_eq!(r.rotated_at, Some(1_000_000));
    assert_eq!(r.next_due_at, Some(1_000_000 + 30 * 86_400_000));
    assert_eq!(r.key_id.as_deref(), Some("key_0"));
    assert_eq!(r.state, RotationState::Retiring);
    assert_eq!(r.retiring.len(), 1);
    assert_eq!(r.retiring[0].key_id, "key_old");
    assert_eq!(r.retiring[0].after, 1_000_000 + GRACE);
    let d = w.secrets.describe(SECRET).await.unwrap();
    assert!(d.has_stage(&token, AWSCURRENT) && !d.has_stage(&token, AWSPENDING));

    // Inside the grace period the old key stays valid.
    w.clock.advance_ms(GRACE - 1);
    let rep = w.rotator().retire_due().await.unwrap();
    assert_eq!((rep.retired, rep.waiting), (0, 1));
    assert!(w.minter.is_live("key_old"));
    w.clock.advance_ms(1);
    let rep = w.rotator().retire_due().await.unwrap();
    assert_eq!((rep.retired, rep.waiting, rep.failed), (1, 0, 0));
    assert!(!w.minter.is_live("key_old"));
    assert!(w.minter.is_live("key_0"));
    let r = w.record().await;
    assert_eq!((r.state, r.retiring.len()), (RotationState::Current, 0));
}

#[tokio::test]
async fn every_step_run_twice_ends_in_the_same_state_with_one_key_minted() {
    let w = World::new(openai(), "old-value", Some("key_old")).await;
    let token = w.secrets.start_rotation(SECRET).unwrap();
    assert_eq!(w.step(Step::Create, &token).await, Ok(StepOutcome::Created));
    assert_eq!(
        w.step(Step::Create, &token).await,
        Ok(StepOutcome::AlreadyCreated)
    );
    assert_eq!(w.step(Step::Set, &token).await, Ok(StepOutcome::Set));
    assert_eq!(w.step(Step::Set, &token).await, Ok(StepOutcome::Set));
    assert_eq!(w.step(Step::Test, &token).await, Ok(StepOutcome::Tested));
    assert_eq!(w.step(Step::Test, &token).await, Ok(StepOutcome::Tested));
    assert_eq!(
        w.step(Step::Finish, &token).await,
        Ok(StepOutcome::Finished)
    );
    let after_first = w.record().await;
    assert_eq!(
        w.step(Step::Finish, &token).await,
        Ok(StepOutcome::AlreadyCurrent)
    );
    assert_eq!(
        w.record().await,
        after_first,
        "a second finish changes nothing"
    );
    assert_eq!(w.minter.mints.load(Ordering::SeqCst), 1);
    assert_eq!(w.minter.live_keys(), vec!["key_0", "key_old"]);
}

#[tokio::test]
async fn concurrent_creates_leave_one_pending_key_and_the_loser_is_retryable() {
    let w = World::new(openai(), "old-value", Some("key_old")).await;
    let token = w.secrets.start_rotation(SECRET).unwrap();
    let (a, b) = tokio::join!(w.step(Step::Create, &token), w.step(Step::Create, &token));
    for r in [&a, &b] {
        match r {
            Ok(_) => {}
            Err(e) => assert!(e.retryable(), "a lost race is retryable: {e:?}"),
        }
    }
    assert!(a.is_ok() || b.is_ok());
    // Retried until it succeeds, as Secrets Manager would.
    assert!(w.step(Step::Create, &token).await.is_ok());
    for s in [Step::Set, Step::Test, Step::Finish] {
        let (a, b) = tokio::join!(w.step(s, &token), w.step(s, &token));
        assert!(a.is_ok() || b.is_ok(), "{s:?}: {a:?} {b:?}");
        w.step(s, &token).await.unwrap();
    }
    let r = w.record().await;
    let new_key = r.key_id.clone().unwrap();
    assert_eq!(w.current(), w.minter_value(&new_key));
    // Only the promoted key and the one in grace are live: no minted key leaked.
    assert_eq!(w.minter.live_keys().len(), 2);
}

impl World {
    fn minter_value(&self, key_id: &str) -> String {
        lock(&self.minter.keys).unwrap()[key_id]
            .0
            .expose()
            .to_owned()
    }
}

#[tokio::test]
async fn a_failing_test_step_leaves_awscurrent_serving_and_the_pool_record_unchanged() {
    let w = World::new(openai(), "old-value", Some("key_old")).await;
    let token = w.secrets.start_rotation(SECRET).unwrap();
    w.step(Step::Create, &token).await.unwrap();
    w.step(Step::Set, &token).await.unwrap();
    let before = w.store.load_pool("p").await.unwrap();
    w.minter.reject_tests.store(true, Ordering::SeqCst);
    let e = w.step(Step::Test, &token).await.unwrap_err();
    assert_eq!(e, RotationError::TestFailed { status: 401 });
    assert!(!e.retryable());
    assert_eq!(w.current(), "old-value");
    assert_eq!(w.store.load_pool("p").await.unwrap(), before);
    // Secrets Manager does not finish a rotation whose test failed; if something did, the
    // pending value is still only pending until finish runs.
    assert!(w.minter.is_live("key_old"));

    // The next rotation deletes the key minted for the failed one before minting again.
    w.minter.reject_tests.store(false, Ordering::SeqCst);
    let next = w.secrets.start_rotation(SECRET).unwrap();
    w.clock.advance_ms(1);
    w.all_steps(&next).await.unwrap();
    assert!(
        !w.minter.is_live("key_0"),
        "the failed rotation's key is deleted"
    );
    assert_eq!(w.current(), "fake-1");
}

#[tokio::test]
async fn a_rotation_interrupted_after_set_resumes_and_completes() {
    let w = World::new(openai(), "old-value", Some("key_old")).await;
    let token = w.secrets.start_rotation(SECRET).unwrap();
    w.step(Step::Create, &token).await.unwrap();
    w.step(Step::Set, &token).await.unwrap();
    // The function died here; Secrets Manager retries from createSecret.
    w.clock.advance_ms(5_000);
    w.all_steps(&token).await.unwrap();
    assert_eq!(w.current(), "fake-0");
    assert_eq!(w.minter.mints.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_create_that_died_after_minting_is_cleaned_up_once_its_lease_ends() {
    let w = World::new(openai(), "old-value", Some("key_old")).await;
    let token = w.secrets.start_rotation(SECRET).unwrap();
    // Minted and recorded, but never stored: what a crash between the two leaves.
    let mut r = w.record().await;
    r.state = RotationState::Pending {
        version_id: token.clone(),
        key_id: Some("key_lost".into()),
        started_at: w.clock.now_ms(),
    };
    r.rev = 1;
    w.minter.add_key("key_lost", "lost-value");
    assert!(w.store.swap_rotation("p", "t1", 0, &r).await.unwrap());
    let e = w.step(Step::Create, &token).await.unwrap_err();
    assert!(matches!(e, RotationError::Conflict(_)) && e.retryable());
    w.clock.advance_ms(tollgate_core::rotation::CREATE_LEASE_MS);
    w.all_steps(&token).await.unwrap();
    assert!(!w.minter.is_live("key_lost"));
    assert_eq!(w.record().await.key_id.as_deref(), Some("key_0"));
}

#[tokio::test]
async fn a_finish_interrupted_before_the_record_was_written_syncs_it_when_retried() {
    let w = World::new(openai(), "old-value", Some("key_old")).await;
    let token = w.secrets.start_rotation(SECRET).unwrap();
    for s in [Step::Create, Step::Set, Step::Test] {
        w.step(s, &token).await.unwrap();
    }
    // Stages moved, record not yet written.
    let prev = w.secrets.describe(SECRET).await.unwrap();
    let prev = prev.version_with(AWSCURRENT).unwrap().to_owned();
    w.secrets
        .move_stage(SECRET, AWSCURRENT, Some(&token), Some(&prev))
        .await
        .unwrap();
    assert_eq!(w.record().await.secret_version, None);
    assert_eq!(
        w.step(Step::Finish, &token).await,
        Ok(StepOutcome::AlreadyCurrent)
    );
    let r = w.record().await;
    assert_eq!(r.secret_version.as_deref(), Some(token.as_str()));
    assert_eq!(r.key_id.as_deref(), Some("key_0"));
}

#[tokio::test]
async fn staged_rotation_promotes_the_staged_value_and_deactivates_the_old_key_after_grace() {
    let mode = RotationMode::Staged {
        retire: RetireVia::AnthropicAdmin,
    };
    let w = World::new(mode, "good-old", Some("apikey_old")).await;
    let token = w.secrets.start_rotation(SECRET).unwrap();
    assert_eq!(
        w.step(Step::Create, &token).await,
        Err(RotationError::NothingStaged("t1".into()))
    );
    assert_eq!(w.current(), "good-old");

    w.secrets
        .put_staged(SECRET, &Secret::new("good-next"))
        .await
        .unwrap();
    let mut r = w.record().await;
    r.staged_key_id = Some("apikey_next".into());
    r.rev += 1;
    assert!(
        w.store
            .swap_rotation("p", "t1", r.rev - 1, &r)
            .await
            .unwrap()
    );
    w.minter.add_key("apikey_next", "good-next");
    w.all_steps(&token).await.unwrap();
    assert_eq!(w.current(), "good-next");
    assert_eq!(
        w.minter.mints.load(Ordering::SeqCst),
        0,
        "staged mode never mints"
    );
    let d = w.secrets.describe(SECRET).await.unwrap();
    assert_eq!(d.version_with(STAGED), None, "the staged value is consumed");
    let r = w.record().await;
    assert_eq!(r.key_id.as_deref(), Some("apikey_next"));
    assert_eq!(r.staged_key_id, None);
    assert_eq!(r.retiring[0].key_id, "apikey_old");
    w.clock.advance_ms(GRACE);
    w.rotator().retire_due().await.unwrap();
    assert!(!w.minter.is_live("apikey_old"));

    // Nothing staged again: the next rotation stops at createSecret.
    let again = w.secrets.start_rotation(SECRET).unwrap();
    assert_eq!(
        w.step(Step::Create, &again).await,
        Err(RotationError::NothingStaged("t1".into()))
    );
}

#[tokio::test]
async fn staged_rotation_without_an_admin_api_retires_nothing() {
    let mode = RotationMode::Staged {
        retire: RetireVia::None,
    };
    let w = World::new(mode, "good-old", Some("k-old")).await;
    w.secrets
        .put_staged(SECRET, &Secret::new("good-next"))
        .await
        .unwrap();
    let token = w.secrets.start_rotation(SECRET).unwrap();
    w.all_steps(&token).await.unwrap();
    assert_eq!(w.current(), "good-next");
    let r = w.record().await;
    assert!(r.retiring.is_empty());
    assert_eq!(r.state, RotationState::Current);
}

#[tokio::test]
async fn canonical_checks_refuse_before_anything_is_touched() {
    let w = World::new(openai(), "old-value", Some("key_old")).await;
    // Rotation never enabled.
    let e = w
        .step(Step::Create, "00000000-0000-4000-8000-000000000009")
        .await;
    assert_eq!(e, Err(RotationError::NotEnabled));
    let token = w.secrets.start_rotation(SECRET).unwrap();
    let e = w.step(Step::Create, "not-a-version").await;
    assert_eq!(
        e,
        Err(RotationError::UnknownVersion("not-a-version".into()))
    );
    // The current version is done for every step.
    let current = w.secrets.describe(SECRET).await.unwrap();
    let current = current.version_with(AWSCURRENT).unwrap().to_owned();
    assert_eq!(
        w.step(Step::Create, &current).await,
        Ok(StepOutcome::AlreadyCurrent)
    );
    // A version that lost AWSPENDING to a newer rotation is refused.
    let newer = w.secrets.start_rotation(SECRET).unwrap();
    assert_eq!(
        w.step(Step::Create, &token).await,
        Err(RotationError::NotPending(token.clone()))
    );
    assert_eq!(w.minter.mints.load(Ordering::SeqCst), 0);
    // Set and test before create refuse: nothing new is pending.
    assert_eq!(
        w.step(Step::Test, &newer).await,
        Err(RotationError::NotCreated(newer.clone()))
    );
    assert_eq!(w.current(), "old-value");
}

#[tokio::test]
async fn an_unreachable_provider_or_store_is_retryable_and_changes_nothing() {
    let w = World::new(openai(), "old-value", Some("key_old")).await;
    let token = w.secrets.start_rotation(SECRET).unwrap();
    w.minter.unavailable.store(true, Ordering::SeqCst);
    let e = w.step(Step::Create, &token).await.unwrap_err();
    assert!(e.retryable(), "{e:?}");
    w.minter.unavailable.store(false, Ordering::SeqCst);
    w.secrets.set_failing(true);
    let e = w.step(Step::Create, &token).await.unwrap_err();
    assert!(e.retryable(), "{e:?}");
    w.secrets.set_failing(false);
    assert_eq!(w.current(), "old-value");
    w.all_steps(&token).await.unwrap();
    assert_eq!(w.current(), "fake-0");
}

#[tokio::test]
async fn memory_rotation_ports_pass_the_contract() {
    crate::contract::rotation_records_swap_only_over_the_expected_rev(&MemoryStore::new(), "")
        .await;
    let s = MemoryVersions::new();
    s.create("c/secret", "v1").unwrap();
    crate::contract::versioned_secrets_follow_staging_rules(
        &s,
        "c/secret",
        "ffffffff-0000-4000-8000-000000000001",
    )
    .await;
}

#[tokio::test]
async fn memory_sweep_writes_pass_the_contract() {
    crate::contract::sweep_writes_touch_only_their_fields(&MemoryStore::new(), "").await;
}
