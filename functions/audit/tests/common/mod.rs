//! Helpers shared by the audit function's integration tests: audit lines and real `awslogs`
//! subscription payloads (padded base64 of gzip, built here, never by serializing
//! `LogsEvent`, whose serializer leaves out the padding its deserializer requires).
#![allow(dead_code)]

use aws_lambda_events::cloudwatch_logs::LogsEvent;
use base64::Engine as _;
use std::io::Write as _;
use tollgate_core::audit::AuditRecord;
use tollgate_core::reason::Reason;

pub const LOG_GROUP: &str = "/aws/lambda/tollgate-proxy";

/// One log event of a subscription batch.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub timestamp: u64,
    pub message: String,
}

/// An audit line as the proxy writes it.
pub fn audit_line(
    request_id: &str,
    at: u64,
    reason: Reason,
    key_id: Option<&str>,
    ip: &str,
    pool: Option<&str>,
) -> String {
    let mut r = AuditRecord::new(request_id.to_owned(), at);
    r.reason = reason;
    r.decision = reason.decision();
    r.status = match reason.decision() {
        tollgate_core::audit::Decision::Allow => 200,
        tollgate_core::audit::Decision::Deny if reason.is_authentication_failure() => 401,
        tollgate_core::audit::Decision::Deny => 403,
        tollgate_core::audit::Decision::Error => 502,
        tollgate_core::audit::Decision::Canary => 401,
    };
    r.key_id = key_id.map(str::to_owned);
    r.tenant = key_id.map(|_| "acme".to_owned());
    r.source_ip = Some(ip.to_owned());
    r.route = Some("chat.completions".into());
    r.model = Some("gpt-4o-mini".into());
    r.pool = pool.map(str::to_owned);
    r.to_line()
}

/// The `awslogs.data` JSON document CloudWatch Logs sends (before gzip and base64).
pub fn log_data_json(message_type: &str, events: &[Event]) -> serde_json::Value {
    serde_json::json!({
        "messageType": message_type,
        "owner": "123456789012",
        "logGroup": LOG_GROUP,
        "logStream": "2026/01/05/[$LATEST]0123456789abcdef",
        "subscriptionFilters": ["tollgate-audit-lines"],
        "logEvents": events.iter().map(|e| serde_json::json!({
            "id": e.id, "timestamp": e.timestamp, "message": e.message,
        })).collect::<Vec<_>>(),
    })
}

/// The invocation payload, as Lambda delivers it: `{"awslogs":{"data":"<base64(gzip)>"}}`.
pub fn awslogs_payload(message_type: &str, events: &[Event]) -> String {
    let json = log_data_json(message_type, events).to_string();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(json.as_bytes()).expect("gzip");
    let bytes = gz.finish().expect("gzip");
    let data = base64::engine::general_purpose::STANDARD.encode(bytes);
    serde_json::json!({"awslogs": {"data": data}}).to_string()
}

/// The payload deserialized the way the Lambda runtime does it.
pub fn logs_event(message_type: &str, events: &[Event]) -> LogsEvent {
    serde_json::from_str(&awslogs_payload(message_type, events)).expect("a readable awslogs event")
}

/// Builds events with unique ids.
#[derive(Default)]
pub struct Batch {
    pub events: Vec<Event>,
    pub n: u64,
}

impl Batch {
    pub fn push(&mut self, at: u64, message: String) {
        self.n += 1;
        self.events.push(Event {
            id: format!("{at:020}{:036}", self.n),
            timestamp: at,
            message,
        });
    }

    pub fn line(&mut self, at: u64, reason: Reason, key: Option<&str>, ip: &str) {
        let rid = format!("req-{at}-{}", self.n + 1);
        self.push(at, audit_line(&rid, at, reason, key, ip, Some("openai")));
    }

    pub fn pool_line(&mut self, at: u64, reason: Reason, key: &str, ip: &str, pool: &str) {
        let rid = format!("req-{at}-{}", self.n + 1);
        self.push(at, audit_line(&rid, at, reason, Some(key), ip, Some(pool)));
    }

    pub fn take(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }
}
