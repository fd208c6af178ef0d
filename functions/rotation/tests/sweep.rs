//! The scheduled sweep against the AWS emulator (real SDK: the DynamoDB pool table, Secrets
//! Manager values, versions and RotateSecret) and the mock provider (real HTTP probes, which
//! the mock counts, and its admin API for the due rotation).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use tollgate_aws::{DynamoStore, SecretsManagerStore, Tables};
use tollgate_core::clock::{Clock, SystemClock};
use tollgate_core::ports::{PoolStore, Secret, SecretStore};
use tollgate_core::records::{ProviderKind, SecretRef, TokenRecord, TokenStatus};
use tollgate_core::rotation::{RotationMode, RotationSettings, TokenRotation};
use tollgate_core::sweep::{ProbeResult, SweepSettings};
use tollgate_rotation::provider::HttpMinter;
use tollgate_rotation::{Event, Handler, Reply, SweepPorts};
use tollgate_testkit::{Emulator, unique_ns};

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
    secrets: Arc<SecretsManagerStore>,
    dynamo: Arc<DynamoStore>,
    mock: String,
    http: reqwest::Client,
    ns: String,
    pool: String,
    admin_secret: String,
    lines: Arc<Mutex<Vec<String>>>,
    kms: aws_sdk_kms::Client,
}

impl Rig {
    async fn new(tag: &str) -> Rig {
        let emu = emulator();
        let conf = emu.sdk_config().await;
        let tables = Tables::from_vars(&|k| emu.resource(k).map(str::to_owned)).unwrap();
        let ns = unique_ns(tag);
        let rig = Rig {
            secrets: Arc::new(SecretsManagerStore::new(&conf)),
            dynamo: Arc::new(DynamoStore::new(&conf, tables)),
            mock: start_mock().await,
            http: reqwest::Client::new(),
            pool: format!("{ns}pool"),
            admin_secret: format!("tollgate/admin/{ns}"),
            ns,
            lines: Arc::default(),
            kms: aws_sdk_kms::Client::new(&conf),
        };
        rig.secrets
            .put_secret(&rig.admin_secret, &Secret::new("mock-admin-test"))
            .await
            .unwrap();
        rig
    }

    fn secret_id(&self, id: &str) -> String {
        format!("tollgate/pool/{}/{id}", self.pool)
    }

    fn value(&self, id: &str) -> String {
        format!("mock-ok-{id}-{}", self.ns)
    }

    /// Stores token `id` (value [`Rig::value`]) as `f` shapes its record.
    async fn token(&self, id: &str, f: impl FnOnce(TokenRecord) -> TokenRecord) {
        let secret_id = self.secret_id(id);
        self.secrets
            .put_secret(&secret_id, &Secret::new(self.value(id)))
            .await
            .unwrap();
        let t = f(TokenRecord::new(
            id,
            self.pool.clone(),
            ProviderKind::Openai,
            format!("{}/v1", self.mock),
            SecretRef::SecretsManager { secret_id },
            "ops",
            0,
        ));
        self.dynamo.put_token(&t).await.unwrap();
    }

    /// A tenant-owned token: `value` KMS-encrypted for `tenant` on the record.
    async fn kms_token(&self, id: &str, tenant: &str, value: &str) {
        let blob = self.encrypt(tenant, value).await;
        let t = TokenRecord::new(
            id,
            self.pool.clone(),
            ProviderKind::Openai,
            format!("{}/v1", self.mock),
            SecretRef::KmsBlob {
                ciphertext_b64: blob,
                tenant_id: tenant.to_owned(),
            },
            "ops",
            0,
        );
        self.dynamo.put_token(&t).await.unwrap();
    }

    async fn encrypt(&self, tenant: &str, value: &str) -> String {
        let emu = emulator();
        tollgate_aws::KmsEnvelope::new(&emu.sdk_config().await)
            .encrypt(
                emu.resource("TOLLGATE_KMS_KEY_ID").unwrap(),
                &Secret::new(value),
                tenant,
            )
            .await
            .unwrap()
    }

    fn handler(&self) -> Handler {
        let admin = Some(self.admin_secret.clone());
        let minter = Arc::new(HttpMinter::new(self.secrets.clone(), admin.clone(), admin).unwrap());
        let lines = self.lines.clone();
        Handler {
            secrets: self.secrets.clone(),
            pools: self.dynamo.clone(),
            records: self.dynamo.clone(),
            minter: minter.clone(),
            clock: Arc::new(SystemClock),
            settings: RotationSettings { grace_ms: 60_000 },
            sweep: Some(SweepPorts {
                probes: self.dynamo.clone(),
                prober: minter,
                decrypter: Some(Arc::new(tollgate_aws::KmsEnvelope::from_client(
                    self.kms.clone(),
                ))),
                starter: self.secrets.clone(),
                token_secrets: Some(self.dynamo.clone()),
                settings: SweepSettings::default(),
                function_arn: emulator()
                    .resource("TOLLGATE_ROTATION_FUNCTION_ARN")
                    .map(str::to_owned),
                // The emulator cannot invoke the function: the sweep runs the steps itself.
                rotate_immediately: false,
                lines: Arc::new(move |l: &str| lines.lock().unwrap().push(l.to_owned())),
            }),
        }
    }

    async fn sweep(&self, h: &Handler) -> tollgate_core::sweep::SweepReport {
        let ev = Event::from_json(json!({"action": "sweep", "pools": [self.pool]})).unwrap();
        match h.handle(ev).await.unwrap() {
            Reply::Swept(r) => *r,
            other => panic!("unexpected reply {other:?}"),
        }
    }

    async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.mock))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn probes_of(&self, id: &str) -> u64 {
        self.get("/_mock/probes").await["by_token"][self.value(id)]
            .as_u64()
            .unwrap_or(0)
    }

    async fn record(&self, id: &str) -> TokenRecord {
        self.dynamo
            .load_pool(&self.pool)
            .await
            .unwrap()
            .tokens
            .into_iter()
            .find(|t| t.token_id == id)
            .unwrap()
    }

    /// The EMF line for this rig's pool and the summary line, from what the sweep printed.
    fn printed(&self) -> (Value, Value) {
        let lines = self.lines.lock().unwrap();
        let parsed: Vec<Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).expect("every printed line is JSON"))
            .collect();
        let emf = parsed
            .iter()
            .rev()
            .find(|v| v["_aws"].is_object() && v["pool"] == self.pool.as_str())
            .expect("an EMF line for the pool")
            .clone();
        let summary = parsed
            .iter()
            .rev()
            .find(|v| v["event"] == "pool_health")
            .expect("a pool_health line")
            .clone();
        (emf, summary)
    }
}

#[tokio::test]
async fn the_sweep_marks_expired_and_revoked_tokens_reenables_a_cooled_one_rotates_a_due_one_and_reports()
 {
    let rig = Rig::new("sweep").await;
    let now = SystemClock.now_ms();
    // Expired: its expiry passed while it was active.
    rig.token("expired", |t| TokenRecord {
        expires_at: Some(now - 1_000),
        ..t
    })
    .await;
    // Revoked at the provider: a console key, deactivated through the Anthropic Admin API.
    rig.token("revoked", |t| t).await;
    let r = rig
        .http
        .post(format!("{}/_mock/admin/keys", rig.mock))
        .json(&json!({"id": "key_revoked", "value": rig.value("revoked")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = rig
        .http
        .post(format!(
            "{}/v1/organizations/api_keys/key_revoked",
            rig.mock
        ))
        .header("x-api-key", "mock-admin-test")
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"status": "inactive"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    // Cooled by a 429 whose cooldown has ended.
    rig.token("cooled", |t| TokenRecord {
        status: TokenStatus::Cooling,
        cooldown_until: Some(now - 1_000),
        consecutive_failures: 1,
        last_error: Some("upstream_rate_limited".into()),
        ..t
    })
    .await;
    // Still cooling: not probed.
    rig.token("cooling", |t| TokenRecord {
        status: TokenStatus::Cooling,
        cooldown_until: Some(now + 3_600_000),
        ..t
    })
    .await;
    // Served a request a moment ago: not probed.
    rig.token("busy", |t| TokenRecord {
        last_used_at: Some(now - 1_000),
        ..t
    })
    .await;
    // Past its rotation due date, minted through the (mock) OpenAI Admin API; expires in 2 days.
    rig.token("due", |t| {
        let mut rot = TokenRotation::new(
            RotationMode::OpenaiAdmin {
                project_id: "proj_test".into(),
                service_account_id: "svc_acct_test".into(),
                key_ttl_secs: None,
            },
            30,
            None,
            0,
        );
        rot.next_due_at = Some(now - 1_000);
        TokenRecord {
            rotation: Some(rot),
            expires_at: Some(now + 2 * 86_400_000),
            last_used_at: Some(now - 1_000),
            ..t
        }
    })
    .await;

    let h = rig.handler();
    let report = rig.sweep(&h).await;
    let name = |id: &str| format!("{}/{id}", rig.pool);
    assert_eq!(report.tokens, 6);
    assert_eq!(report.marked_expired, vec![name("expired")]);
    assert_eq!(report.marked_invalid, vec![name("revoked")]);
    assert_eq!(report.reenabled, vec![name("cooled")]);
    assert_eq!(report.rotations_started, vec![name("due")]);
    assert_eq!(report.expiring_soon, vec![name("due")]);
    assert_eq!(report.probed, 2, "{report:?}");
    assert!(report.errors.is_empty(), "{:?}", report.errors);

    // The store says so.
    assert_eq!(rig.record("expired").await.status, TokenStatus::Expired);
    let revoked = rig.record("revoked").await;
    assert_eq!(revoked.status, TokenStatus::Invalid);
    assert_eq!(
        revoked.last_probe.map(|p| p.result),
        Some(ProbeResult::Rejected { status: 401 })
    );
    let cooled = rig.record("cooled").await;
    assert_eq!(
        (
            cooled.status,
            cooled.cooldown_until,
            cooled.consecutive_failures
        ),
        (TokenStatus::Active, None, 0)
    );
    assert_eq!(rig.record("cooling").await.status, TokenStatus::Cooling);
    // The due token was rotated: a new value minted, current, and the record's due date moved.
    let due = rig.record("due").await;
    let rot = due.rotation.unwrap();
    assert!(rot.next_due_at.unwrap() > now + 29 * 86_400_000);
    assert!(rot.secret_version.is_some());
    let current = rig.secrets.get_secret(&rig.secret_id("due")).await.unwrap();
    assert_ne!(current.expose(), rig.value("due"));
    assert_eq!(rig.get("/_mock/admin").await["created"], 1);

    // The mock counted exactly the probes the sweep decided on.
    assert_eq!(rig.probes_of("revoked").await, 1);
    assert_eq!(rig.probes_of("cooled").await, 1);
    for id in ["expired", "cooling", "busy", "due"] {
        assert_eq!(rig.probes_of(id).await, 0, "{id} was probed");
    }

    // Metrics: one EMF line for the pool, counts by status, and the summary line.
    let (emf, summary) = rig.printed();
    println!("sweep EMF line: {emf}\nsweep summary line: {summary}");
    let directive = &emf["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "tollgate");
    assert_eq!(directive["Dimensions"], json!([["pool"]]));
    for m in directive["Metrics"].as_array().unwrap() {
        assert!(emf[m["Name"].as_str().unwrap()].is_u64(), "{m}");
    }
    assert_eq!(emf["tokens_active"], 3, "{emf}");
    assert_eq!(emf["tokens_cooling"], 1);
    assert_eq!(emf["tokens_invalid"], 1);
    assert_eq!(emf["tokens_expired"], 1);
    assert_eq!(emf["tokens_disabled"], 0);
    assert_eq!(emf["tokens_serving"], 3);
    assert_eq!(emf["tokens_expiring_soon"], 1);
    assert_eq!(emf["rotations_overdue"], 0);
    assert_eq!(summary["sweep"]["probed"], 2);
    assert_eq!(summary["pools"][0]["pool"], rig.pool.as_str());
    assert_eq!(summary["pools"][0]["by_status"]["invalid"], 1);

    // A second sweep right away probes nothing: each token at most once per probe interval.
    let before = rig.get("/_mock/stats").await["probes"].as_u64().unwrap();
    let again = rig.sweep(&h).await;
    assert_eq!(again.probed, 0, "{again:?}");
    assert!(again.rotations_started.is_empty());
    assert_eq!(again.skipped["probed_recently"], 1, "{again:?}");
    assert_eq!(rig.get("/_mock/stats").await["probes"], before);
}

#[tokio::test]
async fn a_staged_tenant_owned_value_is_promoted_after_a_2xx_probe_and_a_refused_one_is_not() {
    use tollgate_core::ports::{Decrypter, TokenSecretSwap};
    let rig = Rig::new("sweep-kms").await;
    let tenant = format!("{}acme", rig.ns);
    let (good_next, bad_next) = (
        format!("mock-ok-next-{}", rig.ns),
        format!("mock-401-next-{}", rig.ns),
    );
    for (id, next) in [("good", &good_next), ("bad", &bad_next)] {
        rig.kms_token(id, &tenant, &rig.value(id)).await;
        let staged = SecretRef::KmsBlob {
            ciphertext_b64: rig.encrypt(&tenant, next).await,
            tenant_id: tenant.clone(),
        };
        rig.dynamo
            .set_staged(&rig.pool, id, Some(&staged))
            .await
            .unwrap();
    }
    let report = rig.sweep(&rig.handler()).await;
    assert_eq!(report.staged_promoted, vec![format!("{}/good", rig.pool)]);
    assert_eq!(report.staged_refused, vec![format!("{}/bad", rig.pool)]);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let kms = tollgate_aws::KmsEnvelope::from_client(rig.kms.clone());
    let value_of = |t: &TokenRecord| match &t.secret {
        SecretRef::KmsBlob {
            ciphertext_b64,
            tenant_id,
        } => (ciphertext_b64.clone(), tenant_id.clone()),
        other => panic!("not a KMS blob: {other:?}"),
    };
    let good = rig.record("good").await;
    assert!(good.staged_secret.is_none());
    let (blob, t) = value_of(&good);
    assert_eq!(kms.decrypt(&blob, &t).await.unwrap().expose(), good_next);
    let bad = rig.record("bad").await;
    assert!(bad.staged_secret.is_some(), "a refused value stays staged");
    let (blob, t) = value_of(&bad);
    assert_eq!(
        kms.decrypt(&blob, &t).await.unwrap().expose(),
        rig.value("bad")
    );
    // Each staged value was tested once; then the idle tokens' health probes used their
    // current values: the promoted one for "good", the unchanged one for "bad".
    let probes = rig.get("/_mock/probes").await;
    assert_eq!(probes["by_token"][&good_next], 2, "{probes}");
    assert_eq!(probes["by_token"][&bad_next], 1, "{probes}");
    assert_eq!(rig.probes_of("good").await, 0, "{probes}");
    assert_eq!(rig.probes_of("bad").await, 1, "{probes}");
}
