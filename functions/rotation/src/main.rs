//! The rotation function. Wiring only: configuration from the environment, the Secrets
//! Manager and DynamoDB adapters, the HTTP minter, then the Lambda runtime with
//! [`Handler::handle_json`] (see the library for what an invocation does).
//!
//! Environment: `TOLLGATE_TENANTS_TABLE`, `TOLLGATE_KEYS_TABLE`, `TOLLGATE_POOL_TABLE`
//! (only the pool table is read and written); `TOLLGATE_ROTATION_GRACE_MS` (default 600000:
//! how long a replaced key stays valid; must exceed `TOLLGATE_SECRET_CACHE_TTL_MS`, the
//! proxies' value cache, when that is set); `TOLLGATE_OPENAI_ADMIN_KEY_SECRET_ID` and
//! `TOLLGATE_ANTHROPIC_ADMIN_KEY_SECRET_ID` (optional: the admin keys' secrets).
//!
//! The sweep (`{"action": "sweep"}`): `TOLLGATE_SWEEP_PROBE_INTERVAL_MS` (default 900000: a
//! token is probed at most this often, and not while it served a request this recently),
//! `TOLLGATE_SWEEP_MAX_PROBES` (default 50 per sweep), `TOLLGATE_SWEEP_EXPIRY_WARNING_MS`
//! (default 604800000: seven days), `TOLLGATE_SWEEP_START_ROTATIONS` (default `true`),
//! `TOLLGATE_SWEEP_DRIVE_STEPS` (default `false`; `true` on the local stack, whose emulator
//! cannot invoke the function: RotateSecret then only labels the version and the sweep runs
//! the four steps itself), `TOLLGATE_KMS_KEY_ID` (optional: probes tenant-owned tokens,
//! decrypting only blobs made under this key). RotateSecret names this function by
//! `TOLLGATE_ROTATION_FUNCTION_ARN` when set (the local stand-in), else by the ARN the runtime
//! reports for the invocation.

use lambda_runtime::{LambdaEvent, service_fn};
use std::process::ExitCode;
use std::sync::Arc;
use tollgate_aws::{DynamoStore, KmsEnvelope, SecretsManagerStore, Tables};
use tollgate_core::clock::SystemClock;
use tollgate_core::ports::Decrypter;
use tollgate_core::rotation::RotationSettings;
use tollgate_core::sweep::SweepSettings;
use tollgate_lambda_start::env::{self, EnvError};
use tollgate_rotation::provider::{
    ENV_ANTHROPIC_ADMIN_SECRET, ENV_OPENAI_ADMIN_SECRET, HttpMinter,
};
use tollgate_rotation::{DEFAULT_GRACE_MS, ENV_GRACE_MS, Handler, SweepPorts};

const ENV_SECRET_CACHE_TTL_MS: &str = "TOLLGATE_SECRET_CACHE_TTL_MS";

async fn run() -> Result<(), String> {
    let grace_ms: u64 = env::parse_or(
        ENV_GRACE_MS,
        DEFAULT_GRACE_MS,
        "a whole number of milliseconds",
    )
    .map_err(|e| e.to_string())?;
    let cache_ms: Option<u64> = env::optional(ENV_SECRET_CACHE_TTL_MS)
        .map_err(|e| e.to_string())?
        .map(|v| v.trim().parse())
        .transpose()
        .map_err(|_| {
            EnvError::Invalid {
                name: ENV_SECRET_CACHE_TTL_MS.into(),
                expected: "a whole number of milliseconds",
            }
            .to_string()
        })?;
    if let Some(c) = cache_ms
        && grace_ms <= c
    {
        return Err(EnvError::Invalid {
            name: ENV_GRACE_MS.into(),
            expected: "longer than TOLLGATE_SECRET_CACHE_TTL_MS (the proxies' value cache)",
        }
        .to_string());
    }
    let openai_admin = env::optional(ENV_OPENAI_ADMIN_SECRET).map_err(|e| e.to_string())?;
    let anthropic_admin = env::optional(ENV_ANTHROPIC_ADMIN_SECRET).map_err(|e| e.to_string())?;
    let tables = Tables::from_env().map_err(|e| e.to_string())?;
    let conf = tollgate_lambda_start::aws::sdk_config().await;
    let secrets = Arc::new(SecretsManagerStore::new(&conf));
    let dynamo = Arc::new(DynamoStore::new(&conf, tables));
    let minter = HttpMinter::new(secrets.clone(), openai_admin, anthropic_admin)
        .map_err(|e| format!("HTTP client: {e}"))?;
    let defaults = SweepSettings::default();
    let settings = SweepSettings {
        probe_interval_ms: env::parse_or(
            "TOLLGATE_SWEEP_PROBE_INTERVAL_MS",
            defaults.probe_interval_ms,
            "a whole number of milliseconds",
        )
        .map_err(|e| e.to_string())?,
        max_probes: env::parse_or(
            "TOLLGATE_SWEEP_MAX_PROBES",
            defaults.max_probes,
            "a whole number",
        )
        .map_err(|e| e.to_string())?,
        expiry_warning_ms: env::parse_or(
            "TOLLGATE_SWEEP_EXPIRY_WARNING_MS",
            defaults.expiry_warning_ms,
            "a whole number of milliseconds",
        )
        .map_err(|e| e.to_string())?,
        start_rotations: env::parse_or(
            "TOLLGATE_SWEEP_START_ROTATIONS",
            defaults.start_rotations,
            "true or false",
        )
        .map_err(|e| e.to_string())?,
    };
    let drive_steps: bool = env::parse_or("TOLLGATE_SWEEP_DRIVE_STEPS", false, "true or false")
        .map_err(|e| e.to_string())?;
    let decrypter: Option<Arc<dyn Decrypter>> = env::optional("TOLLGATE_KMS_KEY_ID")
        .map_err(|e| e.to_string())?
        .map(|k| Arc::new(KmsEnvelope::new(&conf).with_decrypt_key(k)) as Arc<dyn Decrypter>);
    // Locally the emulator's stand-in function (RotateSecret needs an ARN it knows).
    let fixed_arn = env::optional("TOLLGATE_ROTATION_FUNCTION_ARN").map_err(|e| e.to_string())?;
    let minter = Arc::new(minter);
    let handler = Handler {
        secrets: secrets.clone(),
        pools: dynamo.clone(),
        records: dynamo.clone(),
        minter: minter.clone(),
        clock: Arc::new(SystemClock),
        settings: RotationSettings { grace_ms },
        sweep: Some(SweepPorts {
            token_secrets: Some(dynamo.clone()),
            probes: dynamo,
            prober: minter,
            decrypter,
            starter: secrets,
            settings,
            function_arn: fixed_arn.clone(),
            rotate_immediately: !drive_steps,
            lines: Arc::new(|l: &str| println!("{l}")),
        }),
    };
    tracing::info!(grace_ms, ?settings, drive_steps, "rotation function ready");
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<serde_json::Value>| {
        // RotateSecret names this function by the ARN the runtime reports.
        let mut h = handler.clone();
        if let Some(s) = h.sweep.as_mut()
            && s.function_arn.is_none()
        {
            s.function_arn = Some(ev.context.invoked_function_arn.clone());
        }
        async move { h.handle_json(ev.payload).await }
    }))
    .await
    .map_err(|e| format!("lambda runtime: {e}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    tollgate_lambda_start::logging::init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "rotation function stopped");
            eprintln!("rotation: {e}");
            ExitCode::FAILURE
        }
    }
}
