//! The proxy's log group read by time with FilterLogEvents (`tollgate audit tail`).
//!
//! The filter pattern narrows what CloudWatch Logs returns (and bills scanning for); callers
//! still check every line, since a pattern is only a hint (the local emulator ignores JSON
//! patterns). Never logs or returns a line in an error.

use crate::error::unavailable;
use async_trait::async_trait;
use aws_sdk_cloudwatchlogs::Client;
use tollgate_core::clock::EpochMs;
use tollgate_core::detect::port::{AuditLogSource, LogEvent, LogPage};
use tollgate_core::ports::StoreError;

const SERVICE: &str = "logs";
/// Environment variable naming the proxy's log group.
pub const ENV_PROXY_LOG_GROUP: &str = "TOLLGATE_PROXY_LOG_GROUP";

/// [`AuditLogSource`] on one CloudWatch Logs group.
#[derive(Debug, Clone)]
pub struct CloudWatchAuditLog {
    client: Client,
    group: String,
}

impl CloudWatchAuditLog {
    /// No network call.
    pub fn new(conf: &aws_config::SdkConfig, group: impl Into<String>) -> Self {
        Self {
            client: Client::new(conf),
            group: group.into(),
        }
    }
}

#[async_trait]
impl AuditLogSource for CloudWatchAuditLog {
    async fn page(
        &self,
        start: EpochMs,
        pattern: Option<&str>,
        next: Option<String>,
    ) -> Result<LogPage, StoreError> {
        let out = self
            .client
            .filter_log_events()
            .log_group_name(&self.group)
            .start_time(i64::try_from(start).unwrap_or(i64::MAX))
            .set_filter_pattern(pattern.map(str::to_owned))
            .set_next_token(next)
            .send()
            .await
            .map_err(|e| unavailable(SERVICE, "FilterLogEvents", &e))?;
        let events = out
            .events
            .unwrap_or_default()
            .into_iter()
            .filter_map(|e| {
                Some(LogEvent {
                    id: e.event_id?,
                    timestamp: e.timestamp.and_then(|t| u64::try_from(t).ok())?,
                    message: e.message.unwrap_or_default(),
                })
            })
            .collect();
        Ok(LogPage {
            events,
            next: out.next_token.filter(|t| !t.is_empty()),
        })
    }
}
