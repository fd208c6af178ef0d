//! Provider key rotation: the Secrets Manager rotation protocol (createSecret → setSecret →
//! testSecret → finishSecret) for pool tokens, and the retirement of a replaced key once every
//! proxy's value cache has moved on.
//!
//! This module owns the decisions; the I/O sits behind three small ports:
//! [`VersionedSecrets`] (a secret's versions and staging labels: Secrets Manager, or memory),
//! [`RotationRecords`] (the token's rotation record in the pool table) and [`Minter`] (the
//! provider: mint a key, test a value, retire a key). [`Rotator`] runs one step or one
//! retirement pass over them and never logs or returns a secret value.
//!
//! Canonical checks before every step, as Secrets Manager expects of a rotation function:
//! rotation is enabled on the secret; the request token is a version of the secret; a version
//! that is already `AWSCURRENT` is done (finishSecret still makes sure the pool record says
//! so); a version that is not `AWSPENDING` is an error. Every step is idempotent: run twice, or
//! by two invocations at once, it ends in the same state (the loser of a race may fail with a
//! retryable [`RotationError::Conflict`] and succeed when retried).
//!
//! Modes ([`RotationMode`]):
//! - `openai_admin`: createSecret mints a key for the project's service account through the
//!   OpenAI Admin API; the replaced key is deleted after the grace period.
//! - `staged`: an operator stages the next value (stage [`STAGED`], written by
//!   `tollgate token stage`); createSecret copies it to `AWSPENDING`; the replaced key is
//!   deactivated through the Anthropic Admin API after the grace period (`retire:
//!   anthropic_admin`), or left alone (`retire: none`, any OpenAI-compatible provider).
//!
//! The grace period: after finishSecret, proxies keep serving the previous value from their
//! cache for up to their secret cache TTL; the previous key stays valid at the provider until
//! [`RotationSettings::grace_ms`] (longer than every proxy's cache TTL) has passed and
//! [`Rotator::retire_due`] retires it.

use crate::clock::{Clock, EpochMs};
use crate::ports::{PoolStore, Secret, StoreError};
use crate::records::{SecretRef, TokenRecord};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The stage proxies read.
pub const AWSCURRENT: &str = "AWSCURRENT";
/// The stage of the version being rotated in.
pub const AWSPENDING: &str = "AWSPENDING";
/// The stage an operator's staged next value carries until a rotation consumes it.
pub const STAGED: &str = "TOLLGATE_STAGED";
/// Default days between rotations (the next due date the pool record shows).
pub const DEFAULT_INTERVAL_DAYS: u32 = 30;
/// How long a createSecret may be in flight before another invocation may treat its minted
/// key as abandoned.
pub const CREATE_LEASE_MS: u64 = 60_000;
const DAY_MS: u64 = 86_400_000;

/// How a token's next value comes to be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RotationMode {
    /// createSecret creates a new key for the service account through the OpenAI Admin API
    /// (`POST /organization/projects/{project}/service_accounts/{sa}/api_keys`); the replaced
    /// key is deleted (`DELETE /organization/projects/{project}/api_keys/{key}`) after the
    /// grace period.
    OpenaiAdmin {
        project_id: String,
        service_account_id: String,
        /// Expiry the provider puts on a minted key (`expires_in_seconds`); `None`: none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_ttl_secs: Option<u64>,
    },
    /// An operator stages the next value; rotation tests and promotes it.
    Staged {
        #[serde(default)]
        retire: RetireVia,
    },
}

/// What happens to a replaced staged key after the grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetireVia {
    /// Nothing (an OpenAI-compatible provider without an admin API): the operator revokes it.
    #[default]
    None,
    /// `POST /v1/organizations/api_keys/{id}` with `{"status": "inactive"}`.
    AnthropicAdmin,
}

/// Where a token's rotation stands.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RotationState {
    /// Nothing in progress, nothing waiting to be retired.
    #[default]
    Current,
    /// createSecret prepared `version_id` (holding the provider key `key_id`, when known).
    Pending {
        version_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_id: Option<String>,
        started_at: EpochMs,
    },
    /// Rotated; a replaced key waits in `retiring` for its grace period to end.
    Retiring,
}

impl RotationState {
    pub fn as_str(&self) -> &'static str {
        match self {
            RotationState::Current => "current",
            RotationState::Pending { .. } => "pending",
            RotationState::Retiring => "retiring",
        }
    }
}

/// A replaced provider key and when it may be retired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiringKey {
    pub key_id: String,
    pub after: EpochMs,
}

/// A token's rotation record, stored on its pool record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRotation {
    pub mode: RotationMode,
    /// Bumped on every write; writes are conditional on it.
    #[serde(default)]
    pub rev: u64,
    #[serde(default)]
    pub state: RotationState,
    /// The provider's id of the key `AWSCURRENT` holds (what gets retired next time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The provider's id of the operator-staged next key (staged mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged_key_id: Option<String>,
    /// The Secrets Manager version the token serves since the last rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<EpochMs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_due_at: Option<EpochMs>,
    #[serde(default = "default_interval")]
    pub interval_days: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retiring: Vec<RetiringKey>,
}

fn default_interval() -> u32 {
    DEFAULT_INTERVAL_DAYS
}

impl TokenRotation {
    /// A fresh record: nothing rotated yet, next due `interval_days` after `now`.
    pub fn new(
        mode: RotationMode,
        interval_days: u32,
        key_id: Option<String>,
        now: EpochMs,
    ) -> Self {
        Self {
            mode,
            rev: 0,
            state: RotationState::Current,
            key_id,
            staged_key_id: None,
            secret_version: None,
            rotated_at: None,
            next_due_at: Some(now.saturating_add(u64::from(interval_days) * DAY_MS)),
            interval_days,
            retiring: Vec::new(),
        }
    }

    /// Whether a replaced key of this mode is retired at the provider.
    pub fn retires_keys(&self) -> bool {
        match &self.mode {
            RotationMode::OpenaiAdmin { .. } => true,
            RotationMode::Staged { retire } => *retire != RetireVia::None,
        }
    }

    /// The state once no version is pending: `Retiring` while replaced keys wait for
    /// retirement, else `Current`.
    fn at_rest(&self) -> RotationState {
        if self.retiring.is_empty() {
            RotationState::Current
        } else {
            RotationState::Retiring
        }
    }
}

/// The four steps, by the names Secrets Manager sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    Create,
    Set,
    Test,
    Finish,
}

impl Step {
    pub const ALL: [Step; 4] = [Step::Create, Step::Set, Step::Test, Step::Finish];

    pub fn parse(s: &str) -> Result<Self, RotationError> {
        match s {
            "createSecret" => Ok(Step::Create),
            "setSecret" => Ok(Step::Set),
            "testSecret" => Ok(Step::Test),
            "finishSecret" => Ok(Step::Finish),
            _ => Err(RotationError::UnknownStep),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Create => "createSecret",
            Step::Set => "setSecret",
            Step::Test => "testSecret",
            Step::Finish => "finishSecret",
        }
    }
}

/// What a step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    /// The version is already `AWSCURRENT`: nothing to do (finishSecret synced the record).
    AlreadyCurrent,
    /// createSecret found the pending value already in place.
    AlreadyCreated,
    Created,
    /// setSecret: the provider already holds the key; nothing to set.
    Set,
    Tested,
    Finished,
}

/// Why a step failed. [`RotationError::retryable`] says whether running it again can succeed.
/// Messages name ids and kinds, never a secret value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RotationError {
    #[error("unknown rotation step")]
    UnknownStep,
    #[error("the secret does not exist")]
    SecretNotFound,
    #[error("rotation is not enabled for the secret")]
    NotEnabled,
    #[error("version {0} is not a version of the secret")]
    UnknownVersion(String),
    #[error("version {0} is not AWSPENDING")]
    NotPending(String),
    #[error("no pool token uses the secret")]
    NoToken,
    #[error("pool token {0} has no rotation mode configured")]
    NotConfigured(String),
    #[error("nothing is staged for token {0}: stage the next value first (tollgate token stage)")]
    NothingStaged(String),
    #[error("version {0} holds no new value: createSecret has not completed")]
    NotCreated(String),
    #[error("the provider refused the pending value (status {status})")]
    TestFailed { status: u16 },
    #[error("the provider's admin API refused the request (status {status})")]
    ProviderRejected { status: u16 },
    #[error("provider not reachable: {0}")]
    ProviderUnavailable(String),
    #[error("provider admin API not configured: {0}")]
    ProviderNotConfigured(String),
    #[error("another invocation is working on version {0}")]
    Conflict(String),
    #[error("store: {0}")]
    Store(StoreError),
}

impl RotationError {
    /// Whether the same step can succeed when run again (Secrets Manager, the local driver
    /// and the CLI retry these; the others need an operator).
    pub fn retryable(&self) -> bool {
        match self {
            RotationError::ProviderUnavailable(_) | RotationError::Conflict(_) => true,
            RotationError::Store(e) => matches!(e, StoreError::Unavailable(_)),
            RotationError::UnknownStep
            | RotationError::SecretNotFound
            | RotationError::NotEnabled
            | RotationError::UnknownVersion(_)
            | RotationError::NotPending(_)
            | RotationError::NoToken
            | RotationError::NotConfigured(_)
            | RotationError::NothingStaged(_)
            | RotationError::NotCreated(_)
            | RotationError::TestFailed { .. }
            | RotationError::ProviderRejected { .. }
            | RotationError::ProviderNotConfigured(_) => false,
        }
    }

    /// A stable name for logs and the Lambda error type.
    pub fn kind(&self) -> &'static str {
        match self {
            RotationError::UnknownStep => "unknown_step",
            RotationError::SecretNotFound => "secret_not_found",
            RotationError::NotEnabled => "rotation_not_enabled",
            RotationError::UnknownVersion(_) => "unknown_version",
            RotationError::NotPending(_) => "not_pending",
            RotationError::NoToken => "no_token",
            RotationError::NotConfigured(_) => "not_configured",
            RotationError::NothingStaged(_) => "nothing_staged",
            RotationError::NotCreated(_) => "not_created",
            RotationError::TestFailed { .. } => "test_failed",
            RotationError::ProviderRejected { .. } => "provider_rejected",
            RotationError::ProviderUnavailable(_) => "provider_unavailable",
            RotationError::ProviderNotConfigured(_) => "provider_not_configured",
            RotationError::Conflict(_) => "conflict",
            RotationError::Store(_) => "store",
        }
    }
}

impl From<StoreError> for RotationError {
    fn from(e: StoreError) -> Self {
        RotationError::Store(e)
    }
}

/// A secret's versions as the canonical checks need them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecretVersions {
    pub name: String,
    pub arn: String,
    pub rotation_enabled: bool,
    /// Version id → staging labels.
    pub stages: BTreeMap<String, Vec<String>>,
}

impl SecretVersions {
    /// The version carrying `stage`, if any.
    pub fn version_with(&self, stage: &str) -> Option<&str> {
        self.stages
            .iter()
            .find(|(_, s)| s.iter().any(|x| x == stage))
            .map(|(v, _)| v.as_str())
    }

    pub fn has_stage(&self, version: &str, stage: &str) -> bool {
        self.stages
            .get(version)
            .is_some_and(|s| s.iter().any(|x| x == stage))
    }

    /// Whether a pool record's `secret_id` (name or ARN) names this secret.
    pub fn is_named(&self, secret_id: &str) -> bool {
        secret_id == self.name || secret_id == self.arn
    }
}

/// A secret's versions and staging labels (Secrets Manager).
#[async_trait]
pub trait VersionedSecrets: Send + Sync {
    /// `NotFound` for an unknown secret.
    async fn describe(&self, secret_id: &str) -> Result<SecretVersions, StoreError>;
    /// The value of the version carrying `stage` (and being `version_id`, when given).
    /// `None`: no such version, the version does not carry the stage, or it holds no value.
    async fn value(
        &self,
        secret_id: &str,
        version_id: Option<&str>,
        stage: &str,
    ) -> Result<Option<Secret>, StoreError>;
    /// Stores `value` as version `version_id` with stage `AWSPENDING` (the same value again
    /// is a no-op).
    async fn put_pending(
        &self,
        secret_id: &str,
        version_id: &str,
        value: &Secret,
    ) -> Result<(), StoreError>;
    /// Stores `value` as a new version carrying only [`STAGED`]; returns its version id.
    async fn put_staged(&self, secret_id: &str, value: &Secret) -> Result<String, StoreError>;
    /// Moves `stage` onto `to` (removing it from `from`), or with `to = None` removes it from
    /// `from`.
    async fn move_stage(
        &self,
        secret_id: &str,
        stage: &str,
        to: Option<&str>,
        from: Option<&str>,
    ) -> Result<(), StoreError>;
}

/// Starts a rotation as an operator would (Secrets Manager's RotateSecret).
#[async_trait]
pub trait RotationStarter: Send + Sync {
    /// Labels a new version `version_id` AWSPENDING, enables rotation with `function_arn` (when
    /// given) every `interval_days`, and with `immediately` lets Secrets Manager run the four
    /// steps; without it only the function's testSecret runs on AWS (the local driver then
    /// runs the steps itself).
    async fn start_rotation(
        &self,
        secret_id: &str,
        version_id: &str,
        function_arn: Option<&str>,
        interval_days: u32,
        immediately: bool,
    ) -> Result<(), StoreError>;
}

/// The rotation record on a token's pool record.
#[async_trait]
pub trait RotationRecords: Send + Sync {
    /// Stores `new` as the token's rotation record if the stored one's `rev` still equals
    /// `expected_rev` (0: no rotation record stored). `Ok(false)`: another writer came first.
    /// `NotFound` for an unknown token.
    async fn swap_rotation(
        &self,
        pool: &str,
        token_id: &str,
        expected_rev: u64,
        new: &TokenRotation,
    ) -> Result<bool, StoreError>;
}

/// A key a provider minted: its value (shown once) and its id at the provider.
#[derive(Debug, Clone)]
pub struct Minted {
    pub value: Secret,
    pub key_id: Option<String>,
}

/// Why a provider call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// A definite refusal (4xx): the same call will be refused again.
    #[error("refused with status {status}")]
    Rejected { status: u16 },
    /// Transport failure, timeout, 429 or 5xx.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// No admin credential for this provider, or a mode the minter cannot serve.
    #[error("not configured: {0}")]
    NotConfigured(String),
}

/// The provider side of rotation.
#[async_trait]
pub trait Minter: Send + Sync {
    /// A new key for an `openai_admin` token, named `name`.
    async fn mint(&self, token: &TokenRecord, name: &str) -> Result<Minted, ProviderError>;
    /// A cheap authenticated call (list models) with `value`: `Ok` on 2xx.
    async fn test(&self, token: &TokenRecord, value: &Secret) -> Result<(), ProviderError>;
    /// Deletes or deactivates the provider key `key_id`. A key already gone is `Ok`.
    async fn retire(&self, token: &TokenRecord, key_id: &str) -> Result<(), ProviderError>;
}

/// Settings of the rotation function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationSettings {
    /// How long a replaced key stays valid at the provider after finishSecret. Must exceed
    /// every proxy's secret cache TTL.
    pub grace_ms: u64,
}

/// What a retirement pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetireReport {
    pub retired: u64,
    pub failed: u64,
    /// Keys still inside their grace period.
    pub waiting: u64,
}

/// Runs rotation steps and retirement passes over the ports.
pub struct Rotator<'a> {
    pub secrets: &'a dyn VersionedSecrets,
    pub pools: &'a dyn PoolStore,
    pub records: &'a dyn RotationRecords,
    pub minter: &'a dyn Minter,
    pub clock: &'a dyn Clock,
    pub settings: RotationSettings,
}

/// Result of the canonical checks.
enum Checked {
    AlreadyCurrent,
    Pending,
}

const SWAP_ATTEMPTS: usize = 5;

impl Rotator<'_> {
    /// Runs one step for version `token` of `secret_id` (as Secrets Manager sends them).
    pub async fn run(
        &self,
        step: Step,
        secret_id: &str,
        token: &str,
    ) -> Result<StepOutcome, RotationError> {
        let versions = match self.secrets.describe(secret_id).await {
            Ok(v) => v,
            Err(StoreError::NotFound) => return Err(RotationError::SecretNotFound),
            Err(e) => return Err(e.into()),
        };
        let checked = canonical_checks(&versions, token)?;
        let rec = self.token_for(&versions).await?;
        let rot = rec
            .rotation
            .clone()
            .ok_or_else(|| RotationError::NotConfigured(rec.token_id.clone()))?;
        match (step, checked) {
            (Step::Finish, Checked::AlreadyCurrent) => {
                self.sync_record(&rec, token).await?;
                Ok(StepOutcome::AlreadyCurrent)
            }
            (_, Checked::AlreadyCurrent) => Ok(StepOutcome::AlreadyCurrent),
            (Step::Create, Checked::Pending) => self.create(secret_id, token, &rec, &rot).await,
            (Step::Set, Checked::Pending) => {
                self.pending_value(secret_id, token).await?;
                Ok(StepOutcome::Set)
            }
            (Step::Test, Checked::Pending) => {
                let value = self.pending_value(secret_id, token).await?;
                self.minter.test(&rec, &value).await.map_err(|e| match e {
                    ProviderError::Rejected { status } => RotationError::TestFailed { status },
                    other => provider_error(other),
                })?;
                Ok(StepOutcome::Tested)
            }
            (Step::Finish, Checked::Pending) => {
                self.finish(secret_id, token, &versions, &rec, &rot).await
            }
        }
    }

    /// The pool token whose value lives in this secret.
    async fn token_for(&self, versions: &SecretVersions) -> Result<TokenRecord, RotationError> {
        self.pools
            .list_tokens()
            .await?
            .into_iter()
            .find(|t| matches!(&t.secret, SecretRef::SecretsManager { secret_id } if versions.is_named(secret_id)))
            .ok_or(RotationError::NoToken)
    }

    async fn reload(
        &self,
        rec: &TokenRecord,
    ) -> Result<(TokenRecord, TokenRotation), RotationError> {
        let view = self.pools.load_pool(&rec.pool).await?;
        let t = view
            .tokens
            .into_iter()
            .find(|t| t.token_id == rec.token_id)
            .ok_or(RotationError::NoToken)?;
        let rot = t
            .rotation
            .clone()
            .ok_or_else(|| RotationError::NotConfigured(t.token_id.clone()))?;
        Ok((t, rot))
    }

    async fn current_value(&self, secret_id: &str) -> Result<Secret, RotationError> {
        self.secrets
            .value(secret_id, None, AWSCURRENT)
            .await?
            .ok_or_else(|| StoreError::Corrupt("the secret has no AWSCURRENT value".into()).into())
    }

    /// The pending version's value, which must differ from the current one (a pending version
    /// holding a copy of the current value, as the local emulator's RotateSecret leaves it,
    /// holds nothing new).
    async fn pending_value(&self, secret_id: &str, token: &str) -> Result<Secret, RotationError> {
        let current = self.current_value(secret_id).await?;
        match self
            .secrets
            .value(secret_id, Some(token), AWSPENDING)
            .await?
        {
            Some(v) if v != current => Ok(v),
            _ => Err(RotationError::NotCreated(token.to_owned())),
        }
    }

    async fn create(
        &self,
        secret_id: &str,
        token: &str,
        rec: &TokenRecord,
        rot: &TokenRotation,
    ) -> Result<StepOutcome, RotationError> {
        if self.pending_value(secret_id, token).await.is_ok() {
            return Ok(StepOutcome::AlreadyCreated);
        }
        let current = self.current_value(secret_id).await?;
        match &rot.mode {
            RotationMode::Staged { .. } => {
                let staged = self
                    .secrets
                    .value(secret_id, None, STAGED)
                    .await?
                    .filter(|v| *v != current)
                    .ok_or_else(|| RotationError::NothingStaged(rec.token_id.clone()))?;
                self.secrets.put_pending(secret_id, token, &staged).await?;
                self.mark_pending(rec, token, None).await?;
                Ok(StepOutcome::Created)
            }
            RotationMode::OpenaiAdmin { .. } => {
                self.clear_abandoned(rec, token).await?;
                let name = format!("tollgate-{}-{}", rec.token_id, short(token));
                let minted = self.minter.mint(rec, &name).await.map_err(provider_error)?;
                if minted.value == current {
                    return Err(RotationError::ProviderRejected { status: 200 });
                }
                if let Err(e) = self.mark_pending(rec, token, minted.key_id.clone()).await {
                    // Another invocation recorded its own key first: ours is not used.
                    if let Some(k) = &minted.key_id {
                        self.minter.retire(rec, k).await.map_err(provider_error)?;
                    }
                    return Err(e);
                }
                self.secrets
                    .put_pending(secret_id, token, &minted.value)
                    .await?;
                Ok(StepOutcome::Created)
            }
        }
    }

    /// A key minted for a version whose createSecret never stored it (crashed), or for an
    /// earlier version whose rotation failed, is deleted before minting another. A createSecret
    /// for this version still inside its lease is left to finish: [`RotationError::Conflict`].
    async fn clear_abandoned(&self, rec: &TokenRecord, token: &str) -> Result<(), RotationError> {
        self.swap_record(rec, token, async |rot: &TokenRotation| {
            let RotationState::Pending {
                version_id,
                key_id,
                started_at,
            } = &rot.state
            else {
                return Ok(None);
            };
            let now = self.clock.now_ms();
            if version_id == token && now < started_at.saturating_add(CREATE_LEASE_MS) {
                return Err(RotationError::Conflict(token.to_owned()));
            }
            if let Some(k) = key_id {
                self.minter.retire(rec, k).await.map_err(provider_error)?;
            }
            let mut next = rot.clone();
            next.state = next.at_rest();
            Ok(Some(next))
        })
        .await
    }

    /// Records that `token` is being prepared (with the provider key it holds). Fails with
    /// `Conflict` when another invocation recorded another key for the same version.
    async fn mark_pending(
        &self,
        rec: &TokenRecord,
        token: &str,
        key_id: Option<String>,
    ) -> Result<(), RotationError> {
        self.swap_record(rec, token, async |rot: &TokenRotation| {
            let want = match &rot.mode {
                RotationMode::Staged { .. } => rot.staged_key_id.clone(),
                RotationMode::OpenaiAdmin { .. } => key_id.clone(),
            };
            if let RotationState::Pending {
                version_id,
                key_id: held,
                ..
            } = &rot.state
                && version_id == token
            {
                if *held == want {
                    return Ok(None);
                }
                return Err(RotationError::Conflict(token.to_owned()));
            }
            let mut next = rot.clone();
            next.state = RotationState::Pending {
                version_id: token.to_owned(),
                key_id: want,
                started_at: self.clock.now_ms(),
            };
            Ok(Some(next))
        })
        .await
    }

    async fn finish(
        &self,
        secret_id: &str,
        token: &str,
        versions: &SecretVersions,
        rec: &TokenRecord,
        rot: &TokenRotation,
    ) -> Result<StepOutcome, RotationError> {
        let value = self.pending_value(secret_id, token).await?;
        let previous = versions.version_with(AWSCURRENT);
        self.secrets
            .move_stage(secret_id, AWSCURRENT, Some(token), previous)
            .await?;
        // Secrets Manager leaves AWSPENDING on the new version; the emulator keeps it too.
        // Removing it marks the rotation complete for the next RotateSecret.
        self.secrets
            .move_stage(secret_id, AWSPENDING, None, Some(token))
            .await?;
        if matches!(rot.mode, RotationMode::Staged { .. })
            && let Some(staged) = versions.version_with(STAGED)
            && self.secrets.value(secret_id, Some(staged), STAGED).await? == Some(value)
        {
            self.secrets
                .move_stage(secret_id, STAGED, None, Some(staged))
                .await?;
        }
        self.sync_record(rec, token).await?;
        Ok(StepOutcome::Finished)
    }

    /// Makes the pool record say `token` is the served version: version, rotated_at, next due
    /// date, the new key id, and the replaced key queued for retirement after the grace period.
    /// A no-op when the record already says so.
    async fn sync_record(&self, rec: &TokenRecord, token: &str) -> Result<(), RotationError> {
        self.swap_record(rec, token, async |rot: &TokenRotation| {
            if rot.secret_version.as_deref() == Some(token) {
                return Ok(None);
            }
            let now = self.clock.now_ms();
            let mut next = rot.clone();
            let new_key = match &rot.state {
                RotationState::Pending {
                    version_id, key_id, ..
                } if version_id == token => key_id.clone(),
                _ => None,
            };
            if let Some(old) = rot.key_id.clone()
                && rot.retires_keys()
                && Some(&old) != new_key.as_ref()
            {
                next.retiring.push(RetiringKey {
                    key_id: old,
                    after: now.saturating_add(self.settings.grace_ms),
                });
            }
            if matches!(rot.mode, RotationMode::Staged { .. }) {
                next.staged_key_id = None;
            }
            next.key_id = new_key;
            next.secret_version = Some(token.to_owned());
            next.rotated_at = Some(now);
            next.next_due_at = Some(now.saturating_add(u64::from(rot.interval_days) * DAY_MS));
            next.state = next.at_rest();
            Ok(Some(next))
        })
        .await
    }

    /// One compare-and-swap of the token's rotation record, retried on a lost race: `change`
    /// sees the record as stored now and returns the record to write (its `rev` is set here),
    /// `None` when there is nothing to write, or an error that ends the step.
    /// [`RotationError::Conflict`] after [`SWAP_ATTEMPTS`] lost races.
    async fn swap_record(
        &self,
        rec: &TokenRecord,
        token: &str,
        mut change: impl AsyncFnMut(&TokenRotation) -> Result<Option<TokenRotation>, RotationError>,
    ) -> Result<(), RotationError> {
        for _ in 0..SWAP_ATTEMPTS {
            let (_, rot) = self.reload(rec).await?;
            let Some(mut next) = change(&rot).await? else {
                return Ok(());
            };
            next.rev = rot.rev + 1;
            if self
                .records
                .swap_rotation(&rec.pool, &rec.token_id, rot.rev, &next)
                .await?
            {
                return Ok(());
            }
        }
        Err(RotationError::Conflict(token.to_owned()))
    }

    /// Retires every replaced key whose grace period has ended (the scheduled pass).
    pub async fn retire_due(&self) -> Result<RetireReport, RotationError> {
        let mut report = RetireReport::default();
        for t in self.pools.list_tokens().await? {
            let Some(rot) = &t.rotation else { continue };
            if rot.retiring.is_empty() {
                continue;
            }
            self.retire_token(&t, &mut report).await?;
        }
        Ok(report)
    }

    async fn retire_token(
        &self,
        t: &TokenRecord,
        report: &mut RetireReport,
    ) -> Result<(), RotationError> {
        let now = self.clock.now_ms();
        let (_, rot) = self.reload(t).await?;
        let mut keep = Vec::new();
        let mut retired = 0;
        for k in &rot.retiring {
            if k.after > now {
                report.waiting += 1;
                keep.push(k.clone());
                continue;
            }
            match self.minter.retire(t, &k.key_id).await {
                Ok(()) => retired += 1,
                Err(_) => {
                    report.failed += 1;
                    keep.push(k.clone());
                }
            }
        }
        if keep.len() == rot.retiring.len() {
            return Ok(());
        }
        let mut next = rot.clone();
        next.retiring = keep;
        if next.state == RotationState::Retiring {
            next.state = next.at_rest();
        }
        next.rev = rot.rev + 1;
        // A lost race only delays the record: the keys are retired (retiring twice is Ok).
        if self
            .records
            .swap_rotation(&t.pool, &t.token_id, rot.rev, &next)
            .await?
        {
            report.retired += retired;
        }
        Ok(())
    }
}

fn canonical_checks(v: &SecretVersions, token: &str) -> Result<Checked, RotationError> {
    if !v.rotation_enabled {
        return Err(RotationError::NotEnabled);
    }
    if !v.stages.contains_key(token) {
        return Err(RotationError::UnknownVersion(token.to_owned()));
    }
    if v.has_stage(token, AWSCURRENT) {
        return Ok(Checked::AlreadyCurrent);
    }
    if !v.has_stage(token, AWSPENDING) {
        return Err(RotationError::NotPending(token.to_owned()));
    }
    Ok(Checked::Pending)
}

fn provider_error(e: ProviderError) -> RotationError {
    match e {
        ProviderError::Rejected { status } => RotationError::ProviderRejected { status },
        ProviderError::Unavailable(m) => RotationError::ProviderUnavailable(m),
        ProviderError::NotConfigured(m) => RotationError::ProviderNotConfigured(m),
    }
}

/// The first 8 characters of a version id, for key names.
fn short(token: &str) -> &str {
    token.get(..8).unwrap_or(token)
}

#[cfg(test)]
mod tests;
