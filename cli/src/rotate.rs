//! `tollgate token set-rotation | stage | rotate`: configure how a pool token rotates, stage
//! its next value, and rotate it.
//!
//! `rotate` starts a rotation the way an operator does on AWS (RotateSecret with a new
//! version id) and then:
//! - on AWS, waits while Secrets Manager invokes the rotation function for the four steps,
//!   until the new version is `AWSCURRENT` (or the wait ends);
//! - on the local stack (`TOLLGATE_ROTATION_INVOKE_URL` set: the function under
//!   `cargo lambda watch`), acts as Secrets Manager itself, because the emulator cannot invoke
//!   a function: RotateSecret without running it, then createSecret, setSecret, testSecret and
//!   finishSecret invoked in order, each retried while its error is `Retryable.*`.
//!
//! A staged value is read like `token add` reads one (stdin or `--value-env`), stored under
//! the `TOLLGATE_STAGED` label, and never printed.

use crate::args::{TokenRotate, TokenSetRotation, TokenStage};
use crate::ctx::Ctx;
use crate::error::{CliError, Result, StoreContext};
use crate::output::Out;
use async_trait::async_trait;
use serde_json::{Value, json};
use std::time::Duration;
use tollgate_core::records::{SecretRef, TokenRecord};
use tollgate_core::rotation::{
    AWSCURRENT, RotationMode, RotationRecords, RotationStarter, Step, TokenRotation,
    VersionedSecrets,
};

/// Environment: the rotation function's invoke URL on the local stack.
pub const ENV_INVOKE_URL: &str = "TOLLGATE_ROTATION_INVOKE_URL";
/// Environment: the rotation function's ARN (RotateSecret names it).
pub const ENV_FUNCTION_ARN: &str = "TOLLGATE_ROTATION_FUNCTION_ARN";
/// Attempts per step in the local driver.
const STEP_ATTEMPTS: u32 = 8;

/// A failed invocation: the function's error type (`Retryable.*` / `Permanent.*`) and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeError {
    pub error_type: String,
    pub message: String,
}

impl InvokeError {
    pub fn retryable(&self) -> bool {
        self.error_type.starts_with("Retryable.")
    }
}

/// Invokes the rotation function with one event.
#[async_trait]
pub trait StepInvoker: Send + Sync {
    async fn invoke(&self, payload: &Value) -> std::result::Result<Value, InvokeError>;
}

/// The Lambda Invoke API over HTTP (`cargo lambda watch` serves it locally).
pub struct HttpInvoker {
    url: String,
    http: reqwest::Client,
}

impl HttpInvoker {
    pub fn new(url: impl Into<String>) -> std::result::Result<Self, CliError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| CliError::new(format!("HTTP client: {e}")))?;
        Ok(Self {
            url: url.into(),
            http,
        })
    }
}

#[async_trait]
impl StepInvoker for HttpInvoker {
    async fn invoke(&self, payload: &Value) -> std::result::Result<Value, InvokeError> {
        let unreachable = |m: String| InvokeError {
            error_type: "Retryable.invoke_failed".into(),
            message: m,
        };
        let res = self
            .http
            .post(&self.url)
            .json(payload)
            .send()
            .await
            .map_err(|e| unreachable(format!("invoking the rotation function: {e}")))?;
        let function_error = res.headers().contains_key("x-amz-function-error");
        let status = res.status();
        let body: Value = res
            .json()
            .await
            .map_err(|e| unreachable(format!("reading the rotation function's answer: {e}")))?;
        if function_error || !status.is_success() || body.get("errorType").is_some() {
            return Err(InvokeError {
                error_type: body["errorType"].as_str().unwrap_or("Unknown").to_owned(),
                message: body["errorMessage"]
                    .as_str()
                    .unwrap_or("the rotation function failed")
                    .to_owned(),
            });
        }
        Ok(body)
    }
}

/// What the rotation commands need beyond the stores every command has.
pub struct RotationPorts<'a> {
    pub versions: &'a dyn VersionedSecrets,
    pub records: &'a dyn RotationRecords,
    pub starter: &'a dyn RotationStarter,
    /// Set on the local stack: drive the steps through this.
    pub invoker: Option<&'a dyn StepInvoker>,
    pub function_arn: Option<String>,
    /// Tenant-owned keys (`token add --tenant`): KMS under the deployment's key (`None`: no
    /// `TOLLGATE_KMS_KEY_ID`).
    pub tenant_keys: Option<&'a dyn tollgate_core::ports::TenantEncrypter>,
    /// Replaces a tenant-owned token's ciphertext on its pool record.
    pub token_secrets: Option<&'a dyn tollgate_core::ports::TokenSecretSwap>,
}

fn ports<'c, 'a>(ctx: &'c Ctx<'a>) -> Result<&'c RotationPorts<'a>> {
    ctx.rotation
        .as_ref()
        .ok_or_else(|| CliError::new("rotation is not available in this configuration"))
}

async fn load(ctx: &Ctx<'_>, pool: &str, token_id: &str) -> Result<TokenRecord> {
    ctx.pools
        .load_pool(pool)
        .await
        .ctx(format!("reading pool {pool}"))?
        .tokens
        .into_iter()
        .find(|t| t.token_id == token_id)
        .ok_or_else(|| CliError::new(format!("no token {token_id} in pool {pool}")))
}

fn secret_id(t: &TokenRecord) -> Result<String> {
    match &t.secret {
        SecretRef::SecretsManager { secret_id } => Ok(secret_id.clone()),
        SecretRef::KmsBlob { .. } => Err(CliError::new(format!(
            "token {} is a tenant-owned (KMS) key: it is rotated by `token set-value`, not by the rotation function",
            t.token_id
        ))),
        SecretRef::Federated { .. } => Err(CliError::new(format!(
            "token {} is federated: it holds no secret, so there is nothing to rotate",
            t.token_id
        ))),
    }
}

fn configured(t: &TokenRecord) -> Result<TokenRotation> {
    t.rotation.clone().ok_or_else(|| {
        CliError::new(format!(
            "token {} has no rotation mode: set one with `tollgate token set-rotation {} {} --mode ...`",
            t.token_id, t.pool, t.token_id
        ))
    })
}

/// Stores `f(current)` as the rotation record, retrying over concurrent writers.
async fn update_record(
    ctx: &Ctx<'_>,
    pool: &str,
    token_id: &str,
    f: impl Fn(Option<TokenRotation>) -> Result<TokenRotation>,
) -> Result<TokenRotation> {
    let p = ports(ctx)?;
    for _ in 0..5 {
        let t = load(ctx, pool, token_id).await?;
        let rev = t.rotation.as_ref().map(|r| r.rev).unwrap_or(0);
        let mut next = f(t.rotation)?;
        next.rev = rev + 1;
        if p.records
            .swap_rotation(pool, token_id, rev, &next)
            .await
            .ctx(format!("writing the rotation record of {pool}/{token_id}"))?
        {
            return Ok(next);
        }
    }
    Err(CliError::new(
        "the token's rotation record kept changing (a rotation running?); try again",
    ))
}

pub async fn set_rotation(ctx: &mut Ctx<'_>, a: TokenSetRotation) -> Result<Out> {
    let t = load(ctx, &a.token.pool, &a.token.token_id).await?;
    secret_id(&t)?;
    let mode = a.mode()?;
    let now = ctx.clock.now_ms();
    let rec = update_record(ctx, &a.token.pool, &a.token.token_id, |old| {
        Ok(match old {
            Some(mut r) => {
                r.mode = mode.clone();
                r.interval_days = a.interval_days;
                if a.key_id.is_some() {
                    r.key_id = a.key_id.clone();
                }
                r
            }
            None => TokenRotation::new(mode.clone(), a.interval_days, a.key_id.clone(), now),
        })
    })
    .await?;
    Ok(Out::new(
        format!(
            "Token {}/{} rotates in mode {} every {} days.",
            a.token.pool,
            a.token.token_id,
            mode_name(&rec.mode),
            rec.interval_days
        ),
        json!({ "pool": a.token.pool, "token_id": a.token.token_id, "rotation": rec }),
    ))
}

fn mode_name(m: &RotationMode) -> &'static str {
    match m {
        RotationMode::OpenaiAdmin { .. } => "openai-admin",
        RotationMode::Staged { .. } => "staged",
    }
}

pub async fn stage(ctx: &mut Ctx<'_>, a: TokenStage) -> Result<Out> {
    let t = load(ctx, &a.token.pool, &a.token.token_id).await?;
    if let SecretRef::KmsBlob { .. } = &t.secret {
        return crate::tenant_token::stage(ctx, &t, a.value_env.as_deref()).await;
    }
    let secret = secret_id(&t)?;
    let rot = configured(&t)?;
    if !matches!(rot.mode, RotationMode::Staged { .. }) {
        return Err(CliError::new(format!(
            "token {} mints its own keys (mode {}): there is nothing to stage",
            t.token_id,
            mode_name(&rot.mode)
        )));
    }
    let value = crate::token::read_value(ctx, a.value_env.as_deref())?;
    let current = ctx
        .secrets
        .get_secret(&secret)
        .await
        .ctx(format!("reading secret {secret}"))?;
    if current == value {
        return Err(CliError::new(
            "the staged value is the current value: stage the next key",
        ));
    }
    let version = ports(ctx)?
        .versions
        .put_staged(&secret, &value)
        .await
        .ctx(format!("staging the next value in secret {secret}"))?;
    drop(value);
    update_record(ctx, &a.token.pool, &a.token.token_id, |old| {
        let mut r = old.ok_or_else(|| CliError::new("the rotation record disappeared"))?;
        r.staged_key_id = a.key_id.clone();
        Ok(r)
    })
    .await?;
    Ok(Out::new(
        format!(
            "Staged the next value of {}/{} as version {version}. `tollgate token rotate {} {}` tests and promotes it.",
            a.token.pool, a.token.token_id, a.token.pool, a.token.token_id
        ),
        json!({ "pool": a.token.pool, "token_id": a.token.token_id, "staged_version": version }),
    ))
}

/// A version id (UUID v4 form) from the CLI's RNG.
fn version_id(ctx: &mut Ctx<'_>) -> String {
    let mut b = [0u8; 16];
    ctx.rng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

pub async fn rotate(ctx: &mut Ctx<'_>, a: TokenRotate) -> Result<Out> {
    let t = load(ctx, &a.token.pool, &a.token.token_id).await?;
    let secret = secret_id(&t)?;
    let rot = configured(&t)?;
    let version = version_id(ctx);
    let p = ports(ctx)?;
    let local = p.invoker.is_some();
    p.starter
        .start_rotation(
            &secret,
            &version,
            p.function_arn.as_deref(),
            rot.interval_days,
            !local,
        )
        .await
        .ctx(format!("starting the rotation of secret {secret}"))?;
    let mut steps = Vec::new();
    if let Some(invoker) = p.invoker {
        for step in Step::ALL {
            let outcome = drive(invoker, step, &secret, &version).await.map_err(|e| {
                let serving = if step == Step::Finish {
                    "check which version is AWSCURRENT".to_owned()
                } else {
                    "the current value keeps serving".to_owned()
                };
                CliError::new(format!(
                    "{} failed ({}): {}; {serving}",
                    step.as_str(),
                    e.error_type,
                    e.message
                ))
            })?;
            steps.push(json!({ "step": step.as_str(), "outcome": outcome }));
        }
    } else {
        wait_current(p.versions, &secret, &version, a.wait_secs).await?;
    }
    let after = load(ctx, &a.token.pool, &a.token.token_id).await?;
    Ok(Out::new(
        format!(
            "Rotated {}/{}: version {version} is current. The previous key stays valid for the \
             grace period, then the rotation function retires it.",
            a.token.pool, a.token.token_id
        ),
        json!({
            "pool": a.token.pool,
            "token_id": a.token.token_id,
            "version": version,
            "steps": steps,
            "rotation": after.rotation,
        }),
    ))
}

/// One step, retried while the function says a retry can succeed.
async fn drive(
    invoker: &dyn StepInvoker,
    step: Step,
    secret: &str,
    version: &str,
) -> std::result::Result<Value, InvokeError> {
    let payload =
        json!({ "Step": step.as_str(), "SecretId": secret, "ClientRequestToken": version });
    let mut wait = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        match invoker.invoke(&payload).await {
            Ok(v) => return Ok(v.get("outcome").cloned().unwrap_or(v)),
            Err(e) if e.retryable() && attempt < STEP_ATTEMPTS => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// On AWS: polls until Secrets Manager has made `version` current.
async fn wait_current(
    versions: &dyn VersionedSecrets,
    secret: &str,
    version: &str,
    wait_secs: u64,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait_secs);
    loop {
        let d = versions
            .describe(secret)
            .await
            .ctx(format!("reading the versions of secret {secret}"))?;
        if d.has_stage(version, AWSCURRENT) {
            return Ok(());
        }
        if !d.stages.contains_key(version) {
            return Err(CliError::new(format!(
                "version {version} disappeared from secret {secret}: the rotation failed (see the rotation function's logs)"
            )));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(CliError::new(format!(
                "version {version} is not current after {wait_secs} s; Secrets Manager may still be rotating (see the rotation function's logs)"
            )));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
