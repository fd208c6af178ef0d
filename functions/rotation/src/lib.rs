//! The rotation function's handler: one invocation in, one rotation step or one retirement
//! pass out.
//!
//! Two event shapes:
//! - Secrets Manager's rotation event (`aws_lambda_events`'
//!   [`SecretsManagerSecretRotationEvent`]: `Step`, `SecretId`, `ClientRequestToken`), run by
//!   [`Rotator::run`](tollgate_core::rotation::Rotator::run);
//! - `{"action": "retire_due"}` (the local driver): retires replaced keys whose grace period
//!   has ended;
//! - `{"action": "sweep"}` (optionally `"pools": [..]`) from the EventBridge schedule: the
//!   retirement pass, then the health sweep of `tollgate_core::sweep` (probes, expiry,
//!   cooled tokens back, RotateSecret for due tokens, expiry warnings), then one EMF line per
//!   pool and one `pool_health` summary line on stdout.
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
use tollgate_core::ports::{Decrypter, StoreError};
use tollgate_core::rotation::{
    Minter, RetireReport, RotationError, RotationRecords, RotationSettings, RotationStarter,
    Rotator, Step, StepOutcome, VersionedSecrets,
};
use tollgate_core::sweep::{ProbeRecords, Prober, SweepReport, SweepSettings, Sweeper};

/// The retirement pass alone.
pub const RETIRE_DUE: &str = "retire_due";
/// The action the schedule sends: retirement, then the health sweep.
pub const SWEEP: &str = "sweep";
/// Environment: grace period in milliseconds.
pub const ENV_GRACE_MS: &str = "TOLLGATE_ROTATION_GRACE_MS";
/// Default grace period: ten minutes, well above the proxies' default 60 s value cache.
pub const DEFAULT_GRACE_MS: u64 = 600_000;

/// One invocation's payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Rotation(SecretsManagerSecretRotationEvent),
    RetireDue,
    /// The sweep; only these pools when not empty.
    Sweep {
        pools: Vec<String>,
    },
}

impl Event {
    /// A rotation event when it has a `Step`; otherwise `{"action": "retire_due"}` or
    /// `{"action": "sweep", "pools": [..]}` (`pools` optional).
    pub fn from_json(v: serde_json::Value) -> Result<Self, FunctionError> {
        if v.get("Step").is_some() {
            return serde_json::from_value(v)
                .map(Event::Rotation)
                .map_err(|_| FunctionError::BadEvent);
        }
        match v.get("action").and_then(|a| a.as_str()) {
            Some(RETIRE_DUE) => Ok(Event::RetireDue),
            Some(SWEEP) => {
                let pools = match v.get("pools") {
                    None | Some(serde_json::Value::Null) => Vec::new(),
                    Some(p) => {
                        serde_json::from_value(p.clone()).map_err(|_| FunctionError::BadEvent)?
                    }
                };
                Ok(Event::Sweep { pools })
            }
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
    Swept(Box<SweepReport>),
}

/// Why an invocation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FunctionError {
    #[error("the event is neither a rotation step nor {{\"action\": \"retire_due\" | \"sweep\"}}")]
    BadEvent,
    #[error("the sweep is not configured in this handler")]
    SweepNotConfigured,
    #[error("{0}")]
    Rotation(#[from] RotationError),
}

impl FunctionError {
    pub fn retryable(&self) -> bool {
        match self {
            FunctionError::BadEvent | FunctionError::SweepNotConfigured => false,
            FunctionError::Rotation(e) => e.retryable(),
        }
    }

    /// `Retryable.<kind>` or `Permanent.<kind>`: the Lambda error type.
    pub fn error_type(&self) -> String {
        let kind = match self {
            FunctionError::BadEvent => "bad_event",
            FunctionError::SweepNotConfigured => "sweep_not_configured",
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
    /// What the sweep needs beyond the rotation ports (`None`: `sweep` is refused).
    pub sweep: Option<SweepPorts>,
}

/// Where the sweep's EMF and summary lines go (stdout in the function).
pub type LineSink = Arc<dyn Fn(&str) + Send + Sync>;

/// The sweep's ports and settings.
#[derive(Clone)]
pub struct SweepPorts {
    pub probes: Arc<dyn ProbeRecords>,
    pub prober: Arc<dyn Prober>,
    pub decrypter: Option<Arc<dyn Decrypter>>,
    pub starter: Arc<dyn RotationStarter>,
    /// Promotes tenant-owned tokens' staged values (`None`: they wait).
    pub token_secrets: Option<Arc<dyn tollgate_core::ports::TokenSecretSwap>>,
    pub settings: SweepSettings,
    /// This function's ARN, for RotateSecret.
    pub function_arn: Option<String>,
    /// `true` on AWS (Secrets Manager runs the steps). `false` locally: RotateSecret only
    /// labels the version and the sweep runs the four steps itself.
    pub rotate_immediately: bool,
    pub lines: LineSink,
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
            Event::Sweep { pools } => self.sweep(&pools).await.map(|r| Reply::Swept(Box::new(r))),
        }
    }

    /// The scheduled sweep: retirement pass, health sweep, then the due rotations' steps
    /// when this handler drives them (locally), then the EMF and summary lines.
    pub async fn sweep(&self, pools: &[String]) -> Result<SweepReport, FunctionError> {
        let ports = self
            .sweep
            .as_ref()
            .ok_or(FunctionError::SweepNotConfigured)?;
        let retire = self.rotator().retire_due().await?;
        let new_version = || uuid::Uuid::new_v4().to_string();
        let sweeper = Sweeper {
            pools: self.pools.as_ref(),
            probes: ports.probes.as_ref(),
            prober: ports.prober.as_ref(),
            secrets: self.secrets.as_ref(),
            decrypter: ports.decrypter.as_deref(),
            starter: ports.starter.as_ref(),
            token_secrets: ports.token_secrets.as_deref(),
            clock: self.clock.as_ref(),
            settings: ports.settings,
            function_arn: ports.function_arn.as_deref(),
            rotate_immediately: ports.rotate_immediately,
            new_version: &new_version,
        };
        let (mut report, started, mut health) = sweeper
            .run(pools)
            .await
            .map_err(|e: StoreError| FunctionError::Rotation(e.into()))?;
        report.retire = retire;
        if !ports.rotate_immediately && !started.is_empty() {
            for s in &started {
                for step in Step::ALL {
                    if let Err(e) = self.rotator().run(step, &s.secret_id, &s.version_id).await {
                        report.errors.push(format!(
                            "{}/{}: {} of the due rotation: {e}",
                            s.pool,
                            s.token_id,
                            step.as_str()
                        ));
                        break;
                    }
                }
            }
            // Rotations finished: the health figures show the new due dates.
            let mut tokens = self
                .pools
                .list_tokens()
                .await
                .map_err(RotationError::from)?;
            if !pools.is_empty() {
                tokens.retain(|t| pools.contains(&t.pool));
            }
            let now = self.clock.now_ms();
            let merged =
                tollgate_core::sweep::pool_health(&tokens, now, ports.settings.expiry_warning_ms);
            health = merged;
        }
        let now = self.clock.now_ms();
        for line in tollgate_core::sweep::emf_lines(&health, now) {
            (ports.lines)(&line);
        }
        (ports.lines)(&tollgate_core::sweep::summary_line(&report, &health, now));
        for e in &report.errors {
            tracing::warn!(error = %e, "sweep");
        }
        for t in &report.expiring_soon {
            tracing::warn!(token = %t, "pool token expires soon");
        }
        for t in &report.marked_invalid {
            tracing::warn!(token = %t, "the provider refused a pool token: marked invalid");
        }
        for t in &report.rotations_waiting {
            tracing::warn!(token = %t, "rotation due but not started (staged mode: stage the next value with `tollgate token stage`)");
        }
        tracing::info!(
            tokens = report.tokens,
            probed = report.probed,
            marked_expired = report.marked_expired.len(),
            marked_invalid = report.marked_invalid.len(),
            reenabled = report.reenabled.len(),
            rotations_started = report.rotations_started.len(),
            retired = report.retire.retired,
            "sweep done"
        );
        Ok(report)
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
