//! The audit function's handler: one CloudWatch Logs subscription batch in, alerts out.
//!
//! [`Processor::handle`] takes the decoded batch (`aws_lambda_events`' `LogData`: the runtime
//! already undid the base64 and gzip), skips a `CONTROL_MESSAGE`, reads each event with
//! [`AuditRecord::from_line`], counts foreign lines (anything without the audit marker:
//! EMF metrics, runtime lines) and malformed ones (marked but unreadable, e.g. truncated)
//! without failing the batch, then:
//!
//! 1. loads the state entries the lines touch (one batched read),
//! 2. runs the detectors in log-event time order,
//! 3. loads the suppression entries of what fired and keeps one alert per (rule, subject),
//! 4. publishes the alerts (an SNS failure fails the batch before any state is saved),
//! 5. saves each changed entry once, conditional on the version it was loaded at.
//!
//! Auto-response: for the rules in [`Processor::with_auto_suspend`] (default
//! [`DEFAULT_SUSPEND_RULES`]), an alert about a key first suspends it (reversible with
//! `tollgate key resume`; reason and time recorded on the key), and the alert says so in
//! `response`. The proxy refuses it within its key cache TTL.
//!
//! `canary_key_used` always alerts and its response is always on, but it suspends nothing:
//! the proxy already refuses a canary on every use (before its status is even looked at), so
//! suspending it would change nothing and only hide that it is a canary from `key list`. The
//! response is recorded as "refused at the proxy, nothing to suspend" and the alert is never
//! grouped into another (it is the only critical rule). Naming it in
//! [`ENV_SUSPEND_RULES`] changes nothing.
//!
//! A failure at any step fails the invocation and Lambda retries the whole batch; the
//! detectors' windows hold log event ids, so entries saved by the failed attempt do not count
//! its events again. Alerts are at least once: an alert published by an attempt whose saves
//! then failed is published again by the retry.
//!
//! Never logs a line's content: audit lines hold ids only, but foreign lines could hold
//! anything.

use aws_lambda_events::cloudwatch_logs::{LogData, LogsEvent};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tollgate_core::audit::AuditRecord;
use tollgate_core::clock::{EpochMs, parse_rfc3339};
use tollgate_core::detect::port::{AlertSink, AuditStateStore, SaveOutcome};
use tollgate_core::detect::{
    AuditState, EntryId, EntryRef, Observed, Params, Rule, entry_refs, grouping_ids, observe,
    subject_key_id,
};
use tollgate_core::ports::{KeyStore, StoreError};

/// `messageType` of a health check CloudWatch Logs sends to a new subscription.
pub const CONTROL_MESSAGE: &str = "CONTROL_MESSAGE";
/// Environment variable holding detector parameter overrides as JSON (see `Params`).
pub const ENV_PARAMS: &str = "TOLLGATE_AUDIT_PARAMS";
/// Environment variable: comma-separated rules whose key alerts suspend the key, or `none`.
pub const ENV_SUSPEND_RULES: &str = "TOLLGATE_AUDIT_SUSPEND_RULES";
/// Rules that suspend by default: a valid key used from outside its networks or scopes is a
/// leaked key. (`key_new_network` has honest false positives, travel; `auth_targeted_key`
/// means someone lacks the secret, and suspending would only lock out the owner.)
pub const DEFAULT_SUSPEND_RULES: &[Rule] = &[Rule::KeyRefusedOutside];

/// The subscription's invocation as Lambda delivers it: `{"awslogs":{"data":"<base64 of
/// gzip>"}}`. Decoded by [`decode_logs`] rather than through `aws_lambda_events`' `LogsEvent`,
/// whose deserializer inflates and parses through a byte-at-a-time reader: in the audit bench
/// that decode took more than half of each batch's time.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct RawLogsEvent {
    #[serde(rename = "awslogs")]
    pub aws_logs: RawLogsData,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct RawLogsData {
    pub data: String,
}

/// `awslogs.data` decoded: base64, gunzip into one buffer, then JSON from the slice (the
/// same `LogData` the runtime's type would give).
pub fn decode_logs(ev: &RawLogsEvent) -> Result<LogData, BatchError> {
    use base64::Engine as _;
    use std::io::Read as _;
    let gz = base64::engine::general_purpose::STANDARD
        .decode(ev.aws_logs.data.trim())
        .map_err(|e| BatchError::Decode(format!("base64: {e}")))?;
    let mut json = Vec::with_capacity(gz.len().saturating_mul(8));
    flate2::read::MultiGzDecoder::new(gz.as_slice())
        .read_to_end(&mut json)
        .map_err(|e| BatchError::Decode(format!("gzip: {e}")))?;
    serde_json::from_slice(&json).map_err(|e| BatchError::Decode(format!("json: {e}")))
}

/// Why a batch failed (Lambda retries it).
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("subscription payload does not decode: {0}")]
    Decode(String),
    #[error("audit state: {0}")]
    State(StoreError),
    #[error("alert sink: {0}")]
    Publish(StoreError),
    #[error("audit state entry {0} was changed by another invocation")]
    Conflict(String),
    #[error("suspending a key: {0}")]
    Suspend(StoreError),
}

/// What one batch held and did: the function's metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BatchReport {
    pub control_message: bool,
    pub events: u64,
    pub audit_lines: u64,
    /// Lines without the audit marker (EMF, runtime lines, anything else).
    pub foreign_lines: u64,
    /// Lines with the marker that do not parse (truncated, corrupted, unknown shape).
    pub malformed_lines: u64,
    pub findings: u64,
    pub alerts: u64,
    /// Findings counted into an alert already open.
    pub suppressed: u64,
    /// Keys this batch suspended.
    pub suspended: u64,
    pub state_reads: u64,
    pub state_writes: u64,
}

impl BatchReport {
    /// A CloudWatch Embedded Metric Format line for this batch.
    pub fn to_emf_line(&self, at: EpochMs) -> String {
        serde_json::json!({
            "_aws": {
                "Timestamp": at,
                "CloudWatchMetrics": [{
                    "Namespace": "tollgate/audit",
                    "Dimensions": [[]],
                    "Metrics": [
                        {"Name": "events", "Unit": "Count"},
                        {"Name": "audit_lines", "Unit": "Count"},
                        {"Name": "foreign_lines", "Unit": "Count"},
                        {"Name": "malformed_lines", "Unit": "Count"},
                        {"Name": "findings", "Unit": "Count"},
                        {"Name": "alerts", "Unit": "Count"},
                        {"Name": "suppressed", "Unit": "Count"},
                        {"Name": "suspended", "Unit": "Count"},
                        {"Name": "state_writes", "Unit": "Count"}
                    ]
                }]
            },
            "events": self.events,
            "audit_lines": self.audit_lines,
            "foreign_lines": self.foreign_lines,
            "malformed_lines": self.malformed_lines,
            "findings": self.findings,
            "alerts": self.alerts,
            "suppressed": self.suppressed,
            "suspended": self.suspended,
            "state_writes": self.state_writes,
        })
        .to_string()
    }
}

/// One line of a batch, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Audit(Box<AuditRecord>),
    Foreign,
    Malformed,
}

/// The marker every audit line starts with (serde writes fields in declaration order).
const MARKER: &str = "\"tollgate_audit\"";

pub fn classify(message: &str) -> Line {
    match read_line(message) {
        Ok(r) => Line::Audit(Box::new(r)),
        Err(l) => l,
    }
}

/// [`classify`] without boxing the record (the batch loop: one allocation less per line).
fn read_line(message: &str) -> Result<AuditRecord, Line> {
    let m = message.trim();
    if !m.starts_with('{') || !m.contains(MARKER) {
        return Err(Line::Foreign);
    }
    AuditRecord::from_line(m).ok_or(Line::Malformed)
}

/// The detectors with their state store and alert sink.
pub struct Processor {
    state: Arc<dyn AuditStateStore>,
    sink: Arc<dyn AlertSink>,
    params: Params,
    suspend: Option<(Arc<dyn KeyStore>, BTreeSet<Rule>)>,
}

impl Processor {
    pub fn new(state: Arc<dyn AuditStateStore>, sink: Arc<dyn AlertSink>, params: Params) -> Self {
        Self {
            state,
            sink,
            params,
            suspend: None,
        }
    }

    /// Alerts of `rules` about a key suspend it through `keys` before they are published.
    pub fn with_auto_suspend(mut self, keys: Arc<dyn KeyStore>, rules: BTreeSet<Rule>) -> Self {
        self.suspend = (!rules.is_empty()).then_some((keys, rules));
        self
    }

    /// The subscription's invocation: [`Processor::handle`] plus one EMF line on stdout.
    pub async fn handle_event(&self, event: LogsEvent) -> Result<BatchReport, BatchError> {
        self.handle_data(event.aws_logs.data).await
    }

    /// The subscription's invocation from its raw payload ([`decode_logs`]): what the Lambda
    /// runs.
    pub async fn handle_raw(&self, event: RawLogsEvent) -> Result<BatchReport, BatchError> {
        self.handle_data(decode_logs(&event)?).await
    }

    async fn handle_data(&self, data: LogData) -> Result<BatchReport, BatchError> {
        let at = data
            .log_events
            .iter()
            .map(|e| e.timestamp)
            .max()
            .and_then(|t| u64::try_from(t).ok())
            .unwrap_or(0);
        let report = self.handle(&data).await?;
        println!("{}", report.to_emf_line(at));
        tracing::info!(
            events = report.events,
            audit_lines = report.audit_lines,
            foreign = report.foreign_lines,
            malformed = report.malformed_lines,
            alerts = report.alerts,
            suppressed = report.suppressed,
            "audit batch processed"
        );
        Ok(report)
    }

    /// One decoded batch.
    pub async fn handle(&self, data: &LogData) -> Result<BatchReport, BatchError> {
        let mut report = BatchReport {
            events: data.log_events.len() as u64,
            ..BatchReport::default()
        };
        if data.message_type == CONTROL_MESSAGE {
            report.control_message = true;
            return Ok(report);
        }
        let mut lines: Vec<(EpochMs, &str, AuditRecord)> = Vec::new();
        for e in &data.log_events {
            match read_line(&e.message) {
                Err(Line::Foreign) => report.foreign_lines += 1,
                Err(_) => report.malformed_lines += 1,
                Ok(r) => {
                    let at = u64::try_from(e.timestamp)
                        .ok()
                        .filter(|t| *t > 0)
                        .or_else(|| parse_rfc3339(&r.time))
                        .unwrap_or(0);
                    lines.push((at, e.id.as_str(), r));
                }
            }
        }
        report.audit_lines = lines.len() as u64;
        if lines.is_empty() {
            return Ok(report);
        }
        // Time order, ties by event id: the rate state counts "through" (time, id).
        lines.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let now = lines.last().map_or(0, |(at, _, _)| *at);

        let mut state = AuditState::new();
        let mut versions: BTreeMap<EntryId, u64> = BTreeMap::new();
        let mut refs = BTreeSet::new();
        for (_, _, r) in &lines {
            entry_refs(r, |e| {
                refs.insert(e);
            });
        }
        let ids: BTreeSet<EntryId> = refs.iter().map(EntryRef::to_id).collect();
        self.load(&mut state, &mut versions, ids, now, &mut report)
            .await?;

        let mut findings = Vec::new();
        for (at, event_id, record) in &lines {
            findings.extend(observe(
                &mut state,
                &self.params,
                Observed {
                    event_id,
                    at: *at,
                    record,
                },
            ));
        }
        report.findings = findings.len() as u64;

        // Every rule's open alert about a key the findings are about (grouping).
        let sup: BTreeSet<EntryId> = findings.iter().flat_map(grouping_ids).collect();
        self.load(&mut state, &mut versions, sup, now, &mut report)
            .await?;
        let mut alerts = Vec::new();
        let standalone = self
            .suspend
            .as_ref()
            .map(|(_, rules)| rules.clone())
            .unwrap_or_default();
        for f in &findings {
            match state.suppress_related(&self.params, f, &standalone) {
                Some(a) => alerts.push(a),
                None => report.suppressed += 1,
            }
        }
        for a in &mut alerts {
            self.respond(a, now, &mut report).await?;
            state.record_alert(a);
        }
        for a in &alerts {
            self.sink.publish(a).await.map_err(BatchError::Publish)?;
            report.alerts += 1;
        }

        for (id, entry, expires_at) in state.changed(&self.params) {
            let expected = versions.get(&id).copied().unwrap_or(0);
            report.state_writes += 1;
            match self
                .state
                .save(&id, &entry, expected, expires_at)
                .await
                .map_err(BatchError::State)?
            {
                SaveOutcome::Saved => {}
                SaveOutcome::Conflict => return Err(BatchError::Conflict(id.to_string())),
            }
        }
        Ok(report)
    }

    /// Suspends the alert's key when its rule calls for it, and records that on the alert.
    async fn respond(
        &self,
        alert: &mut tollgate_core::detect::Alert,
        now: EpochMs,
        report: &mut BatchReport,
    ) -> Result<(), BatchError> {
        if alert.rule == Rule::CanaryKeyUsed {
            let key_id = subject_key_id(&alert.subject).unwrap_or("?");
            alert.response = Some(format!(
                "none needed: canary key {key_id} is refused at the proxy on every use and never \
                 reached a provider; nothing suspended (rotate what was stored where it was planted)"
            ));
            return Ok(());
        }
        let Some((keys, rules)) = &self.suspend else {
            return Ok(());
        };
        let Some(key_id) = subject_key_id(&alert.subject).filter(|_| rules.contains(&alert.rule))
        else {
            return Ok(());
        };
        let why = format!("audit rule {}", alert.rule);
        let response = match keys.set_key_suspended(key_id, Some(&why), now).await {
            Ok(true) => {
                report.suspended += 1;
                tracing::warn!(key_id, rule = %alert.rule, "key suspended by the audit function");
                format!("suspended key {key_id} (resume: tollgate key resume {key_id})")
            }
            Ok(false) => format!("key {key_id} was not active: left as it is"),
            Err(StoreError::NotFound) => format!("key {key_id} does not exist"),
            Err(e) => return Err(BatchError::Suspend(e)),
        };
        alert.response = Some(response);
        Ok(())
    }

    async fn load(
        &self,
        state: &mut AuditState,
        versions: &mut BTreeMap<EntryId, u64>,
        ids: BTreeSet<EntryId>,
        now: EpochMs,
        report: &mut BatchReport,
    ) -> Result<(), BatchError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<EntryId> = ids.into_iter().collect();
        report.state_reads += 1;
        let stored = self
            .state
            .load(&ids, now)
            .await
            .map_err(BatchError::State)?;
        for (id, s) in ids.into_iter().zip(stored) {
            versions.insert(id.clone(), s.version);
            if let Some(e) = s.entry {
                state.insert(id, e);
            }
        }
        Ok(())
    }
}

/// The rules named in `raw` (from [`ENV_SUSPEND_RULES`]): [`DEFAULT_SUSPEND_RULES`] when
/// unset, none for `none`; `Err` names the first word that is not a rule.
pub fn suspend_rules_from(raw: Option<&str>) -> Result<BTreeSet<Rule>, String> {
    let Some(raw) = raw.map(str::trim) else {
        return Ok(DEFAULT_SUSPEND_RULES.iter().copied().collect());
    };
    if raw.eq_ignore_ascii_case("none") {
        return Ok(BTreeSet::new());
    }
    raw.split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(|w| {
            Rule::ALL
                .iter()
                .copied()
                .find(|r| r.as_str() == w)
                .ok_or_else(|| w.to_owned())
        })
        .collect()
}

/// Detector parameters: the defaults, with the JSON object in `raw` (from [`ENV_PARAMS`])
/// laid over them.
pub fn params_from(raw: Option<&str>) -> Result<Params, serde_json::Error> {
    match raw {
        None => Ok(Params::default()),
        Some(s) => serde_json::from_str(s),
    }
}

#[cfg(test)]
mod tests;
