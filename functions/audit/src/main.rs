//! The audit function. Wiring only: configuration from the environment, the DynamoDB state
//! store and the SNS alert sink, then the Lambda runtime with [`Processor::handle_raw`] as
//! the CloudWatch Logs subscription handler (see the library for what a batch does).
//!
//! Environment: `TOLLGATE_AUDIT_STATE_TABLE`, `TOLLGATE_ALERT_TOPIC_ARN` (required),
//! `TOLLGATE_AUDIT_PARAMS` (optional JSON overriding detector parameters),
//! `TOLLGATE_AUDIT_SUSPEND_RULES` (rules whose key alerts suspend the key: comma-separated,
//! or `none`; default `key_refused_outside`). When any rule suspends, the key store's table
//! variables (`TOLLGATE_TENANTS_TABLE`, `TOLLGATE_KEYS_TABLE`, `TOLLGATE_POOL_TABLE`) are
//! required too; only the keys table is written.

use lambda_runtime::{LambdaEvent, service_fn};
use std::process::ExitCode;
use std::sync::Arc;
use tollgate_audit::{ENV_PARAMS, ENV_SUSPEND_RULES, Processor, params_from, suspend_rules_from};
use tollgate_aws::{
    DynamoAuditState, DynamoStore, ENV_ALERT_TOPIC_ARN, ENV_AUDIT_STATE_TABLE, SnsAlertSink, Tables,
};
use tollgate_lambda_start::env::{self, EnvError};

async fn run() -> Result<(), String> {
    let table = env::required(ENV_AUDIT_STATE_TABLE).map_err(|e| e.to_string())?;
    let topic = env::required(ENV_ALERT_TOPIC_ARN).map_err(|e| e.to_string())?;
    let raw = env::optional(ENV_PARAMS).map_err(|e| e.to_string())?;
    let params = params_from(raw.as_deref()).map_err(|_| {
        EnvError::Invalid {
            name: ENV_PARAMS.into(),
            expected: "a JSON object of detector parameters",
        }
        .to_string()
    })?;
    let rules = env::optional(ENV_SUSPEND_RULES).map_err(|e| e.to_string())?;
    let rules = suspend_rules_from(rules.as_deref()).map_err(|_| {
        EnvError::Invalid {
            name: ENV_SUSPEND_RULES.into(),
            expected: "a comma-separated list of rule names, or none",
        }
        .to_string()
    })?;
    let conf = tollgate_lambda_start::aws::sdk_config().await;
    let mut processor = Processor::new(
        Arc::new(DynamoAuditState::new(&conf, table)),
        Arc::new(SnsAlertSink::new(&conf, topic)),
        params,
    );
    if !rules.is_empty() {
        let tables = Tables::from_env().map_err(|e| format!("{e} (needed to suspend keys)"))?;
        processor = processor.with_auto_suspend(Arc::new(DynamoStore::new(&conf, tables)), rules);
    }
    let processor = Arc::new(processor);
    lambda_runtime::run(service_fn(
        move |ev: LambdaEvent<tollgate_audit::RawLogsEvent>| {
            let p = processor.clone();
            async move {
                p.handle_raw(ev.payload)
                    .await
                    .map_err(lambda_runtime::Error::from)
            }
        },
    ))
    .await
    .map_err(|e| format!("lambda runtime: {e}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    tollgate_lambda_start::logging::init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "audit function stopped");
            eprintln!("audit: {e}");
            ExitCode::FAILURE
        }
    }
}
