//! tollgate's AWS adapters: the store ports of `tollgate-core` on DynamoDB, Secrets Manager
//! and KMS.
//!
//! - [`DynamoStore`] — [`TenantStore`], [`KeyStore`] and [`PoolStore`] on three DynamoDB
//!   tables (see [`Tables`] and this crate's README for the item layouts).
//! - [`SecretsManagerStore`] — [`SecretStore`] on Secrets Manager (always stage `AWSCURRENT`).
//! - [`KmsEnvelope`] — [`Decrypter`] for tenant-owned provider keys, plus `encrypt` for the CLI.
//! - [`DynamoLimitStore`] — [`LimitStore`] on the limits table (versioned counters, one
//!   conditional write per decision).
//! - [`DynamoIssuerStore`] — [`IssuerStore`] on the issuers table (trusted OIDC issuers).
//!
//! Every adapter counts its SDK calls in a public [`OpCounter`] (`ops`): reads are
//! Get/Query/Scan pages/GetSecretValue/Decrypt, writes are Put/Update/Delete/CreateSecret/
//! PutSecretValue/DeleteSecret/Encrypt.
//!
//! Errors: any service or transport failure becomes [`StoreError::Unavailable`] carrying only
//! the service, the operation and the error kind or code — never request contents or secret
//! values — so callers fail closed. An item that does not decode becomes
//! [`StoreError::Corrupt`].
//!
//! Construction is cheap and makes no network call: build the [`aws_config::SdkConfig`] once
//! per process with [`sdk_config`] and the adapters from it (see [`AwsAdapters::from_env`]).
//!
//! [`TenantStore`]: tollgate_core::ports::TenantStore
//! [`KeyStore`]: tollgate_core::ports::KeyStore
//! [`PoolStore`]: tollgate_core::ports::PoolStore
//! [`SecretStore`]: tollgate_core::ports::SecretStore
//! [`Decrypter`]: tollgate_core::ports::Decrypter
//! [`LimitStore`]: tollgate_core::ports::LimitStore
//! [`IssuerStore`]: tollgate_core::ports::IssuerStore
//! [`OpCounter`]: tollgate_core::ports::OpCounter
//! [`StoreError::Unavailable`]: tollgate_core::ports::StoreError::Unavailable
//! [`StoreError::Corrupt`]: tollgate_core::ports::StoreError::Corrupt

mod audit_state;
mod dynamo;
mod error;
mod issuers;
mod kms;
mod limits;
mod logs;
mod rotation;
mod secrets;
mod sns;
mod sts;

pub use audit_state::{DynamoAuditState, ENV_AUDIT_STATE_TABLE};
pub use dynamo::{CONFIG_SORT_KEY, DynamoStore, KEYS_BY_TENANT_INDEX, Tables};
pub use error::ConfigError;
pub use issuers::DynamoIssuerStore;
pub use kms::{KmsEnvelope, KmsTenantKeys};
pub use limits::DynamoLimitStore;
pub use logs::{CloudWatchAuditLog, ENV_PROXY_LOG_GROUP};
pub use secrets::SecretsManagerStore;
pub use sns::{ENV_ALERT_TOPIC_ARN, SnsAlertSink};
pub use sts::StsIdentityTokens;

use std::time::Duration;

/// Environment variable naming the tenants table.
pub const ENV_TENANTS_TABLE: &str = "TOLLGATE_TENANTS_TABLE";
/// Environment variable naming the client keys table.
pub const ENV_KEYS_TABLE: &str = "TOLLGATE_KEYS_TABLE";
/// Environment variable naming the token pool table.
pub const ENV_POOL_TABLE: &str = "TOLLGATE_POOL_TABLE";
/// Environment variable naming the limit counters table.
pub const ENV_LIMITS_TABLE: &str = "TOLLGATE_LIMITS_TABLE";
/// `combined` (default): a limited request's settlement and its pool token's usage write are
/// one `TransactWriteItems` (one call fewer, two write units per item); `separate`: two
/// single-item writes (one write unit each). See docs/limits.md, "Cost of the hot path".
pub const ENV_LIMIT_SETTLE: &str = "TOLLGATE_LIMIT_SETTLE";
/// Environment variable naming the trusted OIDC issuers table.
pub const ENV_ISSUERS_TABLE: &str = "TOLLGATE_ISSUERS_TABLE";
/// Environment variable naming the pepper secret (id or ARN).
pub const ENV_PEPPER_SECRET_ID: &str = "TOLLGATE_PEPPER_SECRET_ID";
/// Environment variable naming the customer managed KMS key (id, ARN or alias).
pub const ENV_KMS_KEY_ID: &str = "TOLLGATE_KMS_KEY_ID";

/// Connect timeout the adapters use unless the environment says otherwise.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Per-attempt timeout: a store call that hangs fails closed rather than holding a request.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// First retry backoff (jittered, doubling).
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(25);
/// Longest retry backoff.
pub const MAX_BACKOFF: Duration = Duration::from_millis(250);
/// Whole-operation timeout, retries included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// Loads the SDK configuration from the environment (`AWS_REGION`, credentials chain,
/// `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>`, ...), with the short timeouts and
/// backoffs above (they take precedence over `AWS_MAX_ATTEMPTS` / `AWS_RETRY_MODE`) so an
/// unreachable service fails closed quickly. Call once per process.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(default_timeouts())
        .retry_config(default_retry())
        .load()
        .await
}

/// Standard retries (throttling, 5xx, connection errors) with up to 3 attempts, but short
/// backoffs: a store that is down should cost a request well under a second before it fails
/// closed, not the SDK's default of several seconds.
pub fn default_retry() -> aws_config::retry::RetryConfig {
    aws_config::retry::RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(INITIAL_BACKOFF)
        .with_max_backoff(MAX_BACKOFF)
}

/// The timeouts [`sdk_config`] applies.
pub fn default_timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}

/// Every adapter plus the two resource names the proxy and CLI need, built from one
/// `SdkConfig` and the `TOLLGATE_*` variables.
#[derive(Debug, Clone)]
pub struct AwsAdapters {
    pub dynamo: std::sync::Arc<DynamoStore>,
    pub secrets: std::sync::Arc<SecretsManagerStore>,
    pub kms: std::sync::Arc<KmsEnvelope>,
    /// The limit counters, when `TOLLGATE_LIMITS_TABLE` is set (see [`AwsAdapters::limit_store`]).
    pub limits: Option<std::sync::Arc<DynamoLimitStore>>,
    /// The trusted OIDC issuers, when `TOLLGATE_ISSUERS_TABLE` is set (see
    /// [`AwsAdapters::issuer_store`]).
    pub issuers: Option<std::sync::Arc<DynamoIssuerStore>>,
    /// `TOLLGATE_PEPPER_SECRET_ID`.
    pub pepper_secret_id: String,
    /// `TOLLGATE_KMS_KEY_ID`, when set (needed to encrypt, and to create secrets under the
    /// customer managed key).
    pub kms_key_id: Option<String>,
}

impl AwsAdapters {
    /// [`sdk_config`] plus [`AwsAdapters::from_config`] with the process environment.
    pub async fn from_env() -> Result<Self, ConfigError> {
        let conf = sdk_config().await;
        Self::from_config(&conf, |k| std::env::var(k).ok())
    }

    /// Builds every adapter from `conf`, reading the `TOLLGATE_*` names through `var`.
    /// Secrets created through `secrets` use the KMS key when one is configured.
    pub fn from_config(
        conf: &aws_config::SdkConfig,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let tables = Tables::from_vars(&var)?;
        let pool_table = tables.pool.clone();
        let settle_separate = var(ENV_LIMIT_SETTLE).is_some_and(|v| v.trim() == "separate");
        let pepper_secret_id = required(&var, ENV_PEPPER_SECRET_ID)?;
        let kms_key_id = var(ENV_KMS_KEY_ID).filter(|v| !v.trim().is_empty());
        let mut secrets = SecretsManagerStore::new(conf);
        if let Some(k) = &kms_key_id {
            secrets = secrets.with_kms_key(k.clone());
        }
        Ok(Self {
            dynamo: std::sync::Arc::new(DynamoStore::new(conf, tables)),
            secrets: std::sync::Arc::new(secrets),
            kms: std::sync::Arc::new(KmsEnvelope::new(conf)),
            // Optional here so operator tools that never touch counters keep working without
            // it; the proxy asks for it with `limit_store`, which names the missing variable.
            limits: DynamoLimitStore::table_from_vars(&var)
                .ok()
                // Settlements carry the pool token's usage write (one call, not two) unless
                // the operator chose fewer write units over fewer calls.
                .map(|t| {
                    let store = DynamoLimitStore::new(conf, t);
                    std::sync::Arc::new(if settle_separate {
                        store
                    } else {
                        store.with_usage_table(pool_table)
                    })
                }),
            // Optional like the counters: without it the proxy trusts no issuer.
            issuers: DynamoIssuerStore::table_from_vars(&var)
                .ok()
                .map(|t| std::sync::Arc::new(DynamoIssuerStore::new(conf, t))),
            pepper_secret_id,
            kms_key_id,
        })
    }
}

impl AwsAdapters {
    /// The limit counters store; `MissingVar(TOLLGATE_LIMITS_TABLE)` when it is not configured.
    pub fn limit_store(&self) -> Result<std::sync::Arc<DynamoLimitStore>, ConfigError> {
        self.limits
            .clone()
            .ok_or(ConfigError::MissingVar(ENV_LIMITS_TABLE))
    }

    /// The trusted issuers store; `MissingVar(TOLLGATE_ISSUERS_TABLE)` when not configured.
    pub fn issuer_store(&self) -> Result<std::sync::Arc<DynamoIssuerStore>, ConfigError> {
        self.issuers
            .clone()
            .ok_or(ConfigError::MissingVar(ENV_ISSUERS_TABLE))
    }
}

pub(crate) fn required(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<String, ConfigError> {
    match var(name) {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(ConfigError::MissingVar(name)),
    }
}
