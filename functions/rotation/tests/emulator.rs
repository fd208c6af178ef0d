//! The rotation function against the AWS emulator (real SDK: Secrets Manager versions and
//! stages, the DynamoDB pool table) and the mock provider's admin API (real HTTP), each step
//! started the way Secrets Manager starts it: RotateSecret makes the AWSPENDING version, then
//! the four steps are invoked with its id.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aws_sdk_secretsmanager::types::RotationRulesType;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tollgate_aws::{DynamoStore, SecretsManagerStore, Tables};
use tollgate_core::clock::SystemClock;
use tollgate_core::ports::{PoolStore, Secret, SecretStore};
use tollgate_core::records::{ProviderKind, SecretRef, TokenRecord};
use tollgate_core::rotation::{
    RetireVia, RotationMode, RotationRecords, RotationSettings, RotationState, STAGED, Step,
    StepOutcome, TokenRotation, VersionedSecrets,
};
use tollgate_rotation::provider::HttpMinter;
use tollgate_rotation::{Event, FunctionError, Handler, Reply};
use tollgate_testkit::{Emulator, unique_ns};

const GRACE_MS: u64 = 400;

fn emulator() -> &'static Emulator {
    match tollgate_testkit::shared() {
        Ok(e) => e,
        Err(e) => panic!("AWS emulator: {e}"),
    }
}

async fn start_mock() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(tollgate_mock_provider::serve(
        listener,
        tollgate_mock_provider::Config::default(),
    ));
    format!("http://{addr}")
}

struct Rig {
    sm: aws_sdk_secretsmanager::Client,
    secrets: Arc<SecretsManagerStore>,
    dynamo: Arc<DynamoStore>,
    mock: String,
    http: reqwest::Client,
    pool: String,
    secret_id: String,
    function_arn: String,
    admin_secret: String,
}

impl Rig {
    /// A pool token rotated with `mode`, whose current value is a key the mock knows as
    /// `initial_key_id`.
    async fn new(tag: &str, provider: ProviderKind, mode: RotationMode) -> Rig {
        let emu = emulator();
        let conf = emu.sdk_config().await;
        let tables = Tables::from_vars(&|k| emu.resource(k).map(str::to_owned)).unwrap();
        let ns = unique_ns(tag);
        let rig = Rig {
            sm: aws_sdk_secretsmanager::Client::new(&conf),
            secrets: Arc::new(SecretsManagerStore::new(&conf)),
            dynamo: Arc::new(DynamoStore::new(&conf, tables)),
            mock: start_mock().await,
            http: reqwest::Client::new(),
            pool: format!("{ns}pool"),
            secret_id: format!("tollgate/pool/{ns}pool/t1"),
            function_arn: emu
                .resource("TOLLGATE_ROTATION_FUNCTION_ARN")
                .expect("resources.py prints the rotation stand-in's ARN")
                .to_owned(),
            admin_secret: format!("tollgate/admin/{ns}"),
        };
        rig.secrets
            .put_secret(&rig.admin_secret, &Secret::new("mock-admin-test"))
            .await
            .unwrap();
        let initial = format!("mock-ok-initial-{ns}");
        rig.register("key_initial", &initial).await;
        rig.secrets
            .put_secret(&rig.secret_id, &Secret::new(initial))
            .await
            .unwrap();
        let t = TokenRecord {
            rotation: Some(TokenRotation::new(mode, 30, Some("key_initial".into()), 0)),
            ..TokenRecord::new(
                "t1",
                rig.pool.clone(),
                provider,
                format!("{}/v1", rig.mock),
                SecretRef::SecretsManager {
                    secret_id: rig.secret_id.clone(),
                },
                "ops",
                0,
            )
        };
        rig.dynamo.put_token(&t).await.unwrap();
        rig
    }

    /// A fresh handler, as a new Lambda process would build it.
    fn handler(&self) -> Handler {
        let (openai, anthropic) = (
            Some(self.admin_secret.clone()),
            Some(self.admin_secret.clone()),
        );
        Handler {
            secrets: self.secrets.clone(),
            pools: self.dynamo.clone(),
            records: self.dynamo.clone(),
            minter: Arc::new(HttpMinter::new(self.secrets.clone(), openai, anthropic).unwrap()),
            clock: Arc::new(SystemClock),
            settings: RotationSettings { grace_ms: GRACE_MS },
            sweep: None,
        }
    }

    /// What RotateSecret does before it invokes the function (the emulator cannot invoke it).
    /// The version id is chosen here: the emulator's RotateSecret answers with the AWSCURRENT
    /// version's id instead of the new one's.
    async fn start_rotation(&self) -> String {
        let token = uuid::Uuid::new_v4().to_string();
        self.sm
            .rotate_secret()
            .secret_id(&self.secret_id)
            .client_request_token(&token)
            .rotation_lambda_arn(&self.function_arn)
            .rotation_rules(
                RotationRulesType::builder()
                    .automatically_after_days(30)
                    .build(),
            )
            .rotate_immediately(false)
            .send()
            .await
            .unwrap();
        token
    }

    async fn step(&self, h: &Handler, step: Step, token: &str) -> Result<Reply, FunctionError> {
        let ev = Event::from_json(json!({
            "Step": step.as_str(),
            "SecretId": self.secret_id,
            "ClientRequestToken": token,
        }))
        .unwrap();
        h.handle(ev).await
    }

    /// Runs a step until it succeeds, retrying what is retryable (as Secrets Manager does).
    async fn step_until_done(&self, h: &Handler, step: Step, token: &str) -> StepOutcome {
        for _ in 0..20 {
            match self.step(h, step, token).await {
                Ok(Reply::Step { outcome, .. }) => return outcome,
                Ok(other) => panic!("unexpected reply {other:?}"),
                Err(e) if e.retryable() => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(e) => panic!("{step:?} failed for good: {e}"),
            }
        }
        panic!("{step:?} never succeeded")
    }

    async fn current(&self) -> String {
        self.secrets
            .get_secret(&self.secret_id)
            .await
            .unwrap()
            .expose()
            .to_owned()
    }

    async fn token(&self) -> TokenRecord {
        self.dynamo.load_pool(&self.pool).await.unwrap().tokens[0].clone()
    }

    async fn register(&self, id: &str, value: &str) {
        let r = self
            .http
            .post(format!("{}/_mock/admin/keys", self.mock))
            .json(&json!({"id": id, "value": value}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }

    async fn admin(&self) -> Value {
        self.http
            .get(format!("{}/_mock/admin", self.mock))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The status the mock answers `GET /v1/models` with for this key.
    async fn models_status(&self, value: &str) -> u16 {
        self.http
            .get(format!("{}/v1/models", self.mock))
            .bearer_auth(value)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    fn key_value(admin: &Value, id: &str) -> String {
        admin["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id)
            .unwrap()["value"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

fn openai_admin() -> RotationMode {
    RotationMode::OpenaiAdmin {
        project_id: "proj_test".into(),
        service_account_id: "svc_acct_test".into(),
        key_ttl_secs: Some(90 * 86_400),
    }
}

#[tokio::test]
async fn every_step_twice_mints_once_promotes_syncs_the_pool_and_deletes_the_old_key_after_grace() {
    let rig = Rig::new("rot-twice", ProviderKind::Openai, openai_admin()).await;
    let h = rig.handler();
    let old = rig.current().await;
    let token = rig.start_rotation().await;
    let expected = [
        (
            Step::Create,
            StepOutcome::Created,
            StepOutcome::AlreadyCreated,
        ),
        (Step::Set, StepOutcome::Set, StepOutcome::Set),
        (Step::Test, StepOutcome::Tested, StepOutcome::Tested),
        (
            Step::Finish,
            StepOutcome::Finished,
            StepOutcome::AlreadyCurrent,
        ),
    ];
    for (step, first, second) in expected {
        assert_eq!(
            rig.step_until_done(&h, step, &token).await,
            first,
            "{step:?}"
        );
        assert_eq!(
            rig.step_until_done(&h, step, &token).await,
            second,
            "{step:?} again"
        );
        if step != Step::Finish {
            assert_eq!(
                rig.current().await,
                old,
                "AWSCURRENT untouched before finishSecret"
            );
        }
    }
    let admin = rig.admin().await;
    assert_eq!(
        admin["created"], 1,
        "one key minted for two createSecret runs"
    );
    let new = rig.current().await;
    assert_eq!(new, Rig::key_value(&admin, "key_mock1"));
    let d = rig.secrets.describe(&rig.secret_id).await.unwrap();
    assert!(d.has_stage(&token, "AWSCURRENT") && d.version_with("AWSPENDING").is_none());

    let rot = rig.token().await.rotation.unwrap();
    assert_eq!(rot.secret_version.as_deref(), Some(token.as_str()));
    assert!(rot.rotated_at.is_some() && rot.next_due_at > rot.rotated_at);
    assert_eq!(rot.key_id.as_deref(), Some("key_mock1"));
    assert_eq!(rot.state, RotationState::Retiring);
    assert_eq!(rot.retiring[0].key_id, "key_initial");

    // During the grace period both values work at the provider.
    assert_eq!(rig.models_status(&old).await, 200);
    assert_eq!(rig.models_status(&new).await, 200);
    // The pass covers every token in the table (other tests' too): this token's key waits.
    h.handle(Event::RetireDue).await.unwrap();
    assert_eq!(rig.admin().await["deleted"], 0);
    assert_eq!(rig.token().await.rotation.unwrap().retiring.len(), 1);
    tokio::time::sleep(Duration::from_millis(GRACE_MS + 100)).await;
    h.handle(Event::RetireDue).await.unwrap();
    let admin = rig.admin().await;
    assert_eq!(admin["deleted"], 1);
    assert_eq!(
        rig.models_status(&old).await,
        401,
        "the retired key is deleted"
    );
    assert_eq!(rig.models_status(&new).await, 200);
    assert_eq!(
        rig.token().await.rotation.unwrap().state,
        RotationState::Current
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_invocations_of_each_step_end_with_one_live_minted_key() {
    let rig = Rig::new("rot-conc", ProviderKind::Openai, openai_admin()).await;
    let (h1, h2) = (rig.handler(), rig.handler());
    let token = rig.start_rotation().await;
    for step in tollgate_core::rotation::Step::ALL {
        let (a, b) = tokio::join!(rig.step(&h1, step, &token), rig.step(&h2, step, &token));
        for r in [&a, &b] {
            if let Err(e) = r {
                assert!(
                    e.retryable(),
                    "{step:?}: a lost race must be retryable, got {e}"
                );
            }
        }
        rig.step_until_done(&h1, step, &token).await;
    }
    let admin = rig.admin().await;
    let active: Vec<&Value> = admin["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["status"] == "active" && k["id"] != "key_initial")
        .collect();
    assert_eq!(active.len(), 1, "no minted key leaked: {admin}");
    assert_eq!(rig.current().await, active[0]["value"].as_str().unwrap());
    let rot = rig.token().await.rotation.unwrap();
    assert_eq!(rot.key_id.as_deref(), active[0]["id"].as_str());
}

#[tokio::test]
async fn a_failing_test_step_leaves_awscurrent_serving_and_the_pool_record_unchanged() {
    let rig = Rig::new("rot-fail", ProviderKind::Openai, openai_admin()).await;
    let h = rig.handler();
    let old = rig.current().await;
    let token = rig.start_rotation().await;
    rig.step_until_done(&h, Step::Create, &token).await;
    rig.step_until_done(&h, Step::Set, &token).await;
    // The provider stops accepting the pending key before it is tested.
    let r = rig
        .http
        .delete(format!(
            "{}/v1/organization/projects/proj_test/api_keys/key_mock1",
            rig.mock
        ))
        .bearer_auth("mock-admin-test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let before = rig.token().await;
    let e = rig.step(&h, Step::Test, &token).await.unwrap_err();
    assert_eq!(e.error_type(), "Permanent.test_failed");
    assert_eq!(rig.current().await, old);
    assert_eq!(rig.token().await, before, "the pool record is unchanged");
    assert_eq!(
        rig.models_status(&old).await,
        200,
        "the current key still serves"
    );
}

#[tokio::test]
async fn a_rotation_interrupted_after_set_secret_resumes_in_a_new_process_and_completes() {
    let rig = Rig::new("rot-resume", ProviderKind::Openai, openai_admin()).await;
    let token = rig.start_rotation().await;
    {
        let first = rig.handler();
        rig.step_until_done(&first, Step::Create, &token).await;
        rig.step_until_done(&first, Step::Set, &token).await;
    }
    let second = rig.handler();
    for step in Step::ALL {
        rig.step_until_done(&second, step, &token).await;
    }
    let admin = rig.admin().await;
    assert_eq!(admin["created"], 1);
    assert_eq!(rig.current().await, Rig::key_value(&admin, "key_mock1"));
    assert_eq!(
        rig.token()
            .await
            .rotation
            .unwrap()
            .secret_version
            .as_deref(),
        Some(token.as_str())
    );
}

#[tokio::test]
async fn staged_anthropic_rotation_promotes_the_staged_key_and_deactivates_the_old_one_after_grace()
{
    let mode = RotationMode::Staged {
        retire: RetireVia::AnthropicAdmin,
    };
    let rig = Rig::new("rot-staged", ProviderKind::Anthropic, mode).await;
    let h = rig.handler();
    let old = rig.current().await;
    let token = rig.start_rotation().await;
    let e = rig.step(&h, Step::Create, &token).await.unwrap_err();
    assert_eq!(e.error_type(), "Permanent.nothing_staged");

    // What `tollgate token stage` does: the value under TOLLGATE_STAGED, its key id on the
    // record. The operator made the key in the console (registered at the mock).
    let next = format!("{old}-next");
    rig.register("apikey_next", &next).await;
    rig.secrets
        .put_staged(&rig.secret_id, &Secret::new(next.clone()))
        .await
        .unwrap();
    let t = rig.token().await;
    let mut rot = t.rotation.clone().unwrap();
    rot.staged_key_id = Some("apikey_next".into());
    rot.rev += 1;
    assert!(
        rig.dynamo
            .swap_rotation(&rig.pool, "t1", rot.rev - 1, &rot)
            .await
            .unwrap()
    );

    for step in Step::ALL {
        rig.step_until_done(&h, step, &token).await;
    }
    assert_eq!(rig.current().await, next);
    let d = rig.secrets.describe(&rig.secret_id).await.unwrap();
    assert_eq!(d.version_with(STAGED), None);
    tokio::time::sleep(Duration::from_millis(GRACE_MS + 100)).await;
    h.handle(Event::RetireDue).await.unwrap();
    let admin = rig.admin().await;
    assert_eq!(
        (admin["deactivated"].as_u64(), admin["created"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(rig.models_status(&old).await, 401);
    assert_eq!(rig.models_status(&next).await, 200);
}
