//! The rotation function's handler: one invocation in, one rotation step or one retirement
//! pass out.
//!
//! Two event shapes:
//! - Secrets Manager's rotation event (`aws_lambda_events`'
//!   [`SecretsManagerSecretRotationEvent`]: `Step`, `SecretId`, `ClientRequestToken`), run by
//!   [`Rotator::run`](tollgate_core::rotation::Rotator::run);
//! - `{"action": "retire_due"}` from the EventBridge schedule (and the local driver): retires
//!   replaced keys whose grace period has ended.
//!
//! The protocol's decisions live in `tollgate_core::rotation`; this crate maps events to it,
//! maps its errors to a Lambda error whose type says whether a retry can succeed
//! (`Retryable.<kind>` / `Permanent.<kind>`), and supplies the provider adapter
//! ([`provider::HttpMinter`]). Logs name the step, secret and version; never a value.

pub mod provider;

use aws_lambda_events::event::secretsmanager::SecretsManagerSecretRotationEvent;
use serde::Serialize;
use std::sync::Arc;
use tollgate_core::clock::Clock;
use tollgate_core::ports::PoolStore;
use tollgate_core::rotation::{
    Minter, RetireReport, RotationError, RotationRecords, RotationSettings, Rotator, Step,
    StepOutcome, VersionedSecrets,
};

/// The action the schedule sends.
pub const RETIRE_DUE: &str = "retire_due";
/// Environment: grace period in milliseconds.
pub const ENV_GRACE_MS: &str = "TOLLGATE_ROTATION_GRACE_MS";
/// Default grace period: ten minutes, well above the proxies' default 60 s value cache.
pub const DEFAULT_GRACE_MS: u64 = 600_000;

/// One invocation's payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Rotation(SecretsManagerSecretRotationEvent),
    RetireDue,
}

impl Event {
    /// A rotation event when it has a `Step`; otherwise `{"action": "retire_due"}`.
    pub fn from_json(v: serde_json::Value) -> Result<Self, FunctionError> {
        if v.get("Step").is_some() {
            return serde_json::from_value(v)
                .map(Event::Rotation)
                .map_err(|_| FunctionError::BadEvent);
        }
        match v.get("action").and_then(|a| a.as_str()) {
            Some(RETIRE_DUE) => Ok(Event::RetireDue),
            _ => Err(FunctionError::BadEvent),
        }
    }
}

/// What an invocation answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Reply {
    Step {
        step: &'static str,
        outcome: StepOutcome,
    },
    Retired(RetireReport),
}

/// Why an invocation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FunctionError {
    #[error("the event is neither a rotation step nor {{\"action\": \"retire_due\"}}")]
    BadEvent,
    #[error("{0}")]
    Rotation(#[from] RotationError),
}

impl FunctionError {
    pub fn retryable(&self) -> bool {
        match self {
            FunctionError::BadEvent => false,
            FunctionError::Rotation(e) => e.retryable(),
        }
    }

    /// `Retryable.<kind>` or `Permanent.<kind>`: the Lambda error type.
    pub fn error_type(&self) -> String {
        let kind = match self {
            FunctionError::BadEvent => "bad_event",
            FunctionError::Rotation(e) => e.kind(),
        };
        let class = if self.retryable() {
            "Retryable"
        } else {
            "Permanent"
        };
        format!("{class}.{kind}")
    }
}

impl From<FunctionError> for lambda_runtime::Diagnostic {
    fn from(e: FunctionError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: e.error_type(),
            error_message: e.to_string(),
        }
    }
}

/// The ports a handler runs over, built once per process.
#[derive(Clone)]
pub struct Handler {
    pub secrets: Arc<dyn VersionedSecrets>,
    pub pools: Arc<dyn PoolStore>,
    pub records: Arc<dyn RotationRecords>,
    pub minter: Arc<dyn Minter>,
    pub clock: Arc<dyn Clock>,
    pub settings: RotationSettings,
}

impl Handler {
    fn rotator(&self) -> Rotator<'_> {
        Rotator {
            secrets: self.secrets.as_ref(),
            pools: self.pools.as_ref(),
            records: self.records.as_ref(),
            minter: self.minter.as_ref(),
            clock: self.clock.as_ref(),
            settings: self.settings,
        }
    }

    /// Runs one invocation.
    pub async fn handle(&self, event: Event) -> Result<Reply, FunctionError> {
        match event {
            Event::Rotation(ev) => {
                let step = Step::parse(&ev.step)?;
                let r = self
                    .rotator()
                    .run(step, &ev.secret_id, &ev.client_request_token)
                    .await;
                match &r {
                    Ok(outcome) => tracing::info!(
                        step = step.as_str(),
                        secret_id = %ev.secret_id,
                        version = %ev.client_request_token,
                        outcome = ?outcome,
                        "rotation step done"
                    ),
                    Err(e) => tracing::warn!(
                        step = step.as_str(),
                        secret_id = %ev.secret_id,
                        version = %ev.client_request_token,
                        error.kind = e.kind(),
                        retryable = e.retryable(),
                        error = %e,
                        "rotation step failed"
                    ),
                }
                Ok(Reply::Step {
                    step: step.as_str(),
                    outcome: r?,
                })
            }
            Event::RetireDue => {
                let report = self.rotator().retire_due().await?;
                tracing::info!(
                    retired = report.retired,
                    failed = report.failed,
                    waiting = report.waiting,
                    "retirement pass done"
                );
                Ok(Reply::Retired(report))
            }
        }
    }

    /// [`Handler::handle`] on a raw JSON payload (what the Lambda runtime hands over).
    pub async fn handle_json(&self, v: serde_json::Value) -> Result<Reply, FunctionError> {
        let event = Event::from_json(v).inspect_err(|_| {
            tracing::warn!("the invocation is not a rotation event nor a retire_due action")
        })?;
        self.handle(event).await
    }
}

#[cfg(test)]
mod tests;
