//! Alerts to an SNS topic: one message per alert, the alert's JSON as the body, its rule and
//! severity as message attributes (for subscription filter policies).

use crate::error::unavailable;
use async_trait::async_trait;
use aws_sdk_sns::Client;
use aws_sdk_sns::types::MessageAttributeValue;
use tollgate_core::detect::Alert;
use tollgate_core::detect::port::AlertSink;
use tollgate_core::ports::{OpCounter, StoreError};

const SERVICE: &str = "sns";
/// Environment variable naming the alert topic (ARN).
pub const ENV_ALERT_TOPIC_ARN: &str = "TOLLGATE_ALERT_TOPIC_ARN";

/// [`AlertSink`] on SNS.
#[derive(Debug, Clone)]
pub struct SnsAlertSink {
    client: Client,
    topic_arn: String,
    pub ops: std::sync::Arc<OpCounter>,
}

impl SnsAlertSink {
    /// No network call.
    pub fn new(conf: &aws_config::SdkConfig, topic_arn: impl Into<String>) -> Self {
        Self {
            client: Client::new(conf),
            topic_arn: topic_arn.into(),
            ops: Default::default(),
        }
    }
}

fn attr(v: &str) -> Result<MessageAttributeValue, StoreError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(v)
        .build()
        .map_err(|e| StoreError::Unavailable(format!("sns Publish: {e}")))
}

#[async_trait]
impl AlertSink for SnsAlertSink {
    async fn publish(&self, alert: &Alert) -> Result<(), StoreError> {
        let body = serde_json::to_string(alert)
            .map_err(|e| StoreError::Corrupt(format!("alert does not encode: {e}")))?;
        self.ops.write();
        self.client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(alert.subject_line())
            .message(body)
            .message_attributes("rule", attr(alert.rule.as_str())?)
            .message_attributes("severity", attr(alert.severity.as_str())?)
            .send()
            .await
            .map_err(|e| unavailable(SERVICE, "Publish", &e))?;
        Ok(())
    }
}
