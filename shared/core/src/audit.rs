//! The audit line: one JSON object per request on stdout, versioned, written by the proxy and
//! read by the audit function. It names who, what, which check decided, and how long things
//! took. It never holds a key, a provider token, or prompt text — only ids and counts.

use crate::clock::{EpochMs, rfc3339};
use crate::reason::Reason;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Deny,
    Error,
    /// A canary key was used: refused like a bad key, and always an alert. Lines written
    /// before canary keys existed never carry it.
    Canary,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Always 1: marks the line as an audit line among the function's other output.
    pub tollgate_audit: u8,
    /// Schema version of this line.
    pub v: u32,
    pub time: String,
    pub request_id: String,
    pub tenant: Option<String>,
    /// Key id only (the 12-character public part).
    pub key_id: Option<String>,
    /// Owner of the key that made the request; for a JWT caller, its principal claim (`sub`).
    pub principal: Option<String>,
    /// For a JWT caller: the trusted issuer (`iss`) the token named, bounded. Absent on lines
    /// written before JWT callers existed.
    #[serde(default)]
    pub issuer: Option<String>,
    /// The key was rotated to this successor and is in its overlap: the caller has not
    /// switched yet. Absent otherwise (and on lines written before rotation existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<String>,
    /// The key expires within the proxy's warning window (`TOLLGATE_KEY_EXPIRY_WARN_DAYS`):
    /// whole days left (0 = less than a day). Absent otherwise, for JWT callers, and on lines
    /// written before the field existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_expiring_in_days: Option<u32>,
    pub source_ip: Option<String>,
    /// The caller's `User-Agent` header, sanitized ([`user_agent`]: control characters
    /// dropped, bounded). Absent when the request had none, and on lines written before the
    /// field existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    pub route: Option<String>,
    pub model: Option<String>,
    pub pool: Option<String>,
    pub decision: Decision,
    /// Which check decided (`ok`, `bad_checksum`, `unknown_key`, `model_not_allowed`, ...):
    /// one [`Reason`], serialized as its snake_case string.
    pub reason: Reason,
    pub status: u16,
    pub token_id: Option<String>,
    pub attempts: u32,
    /// Each upstream attempt's token and outcome, oldest first, when any attempt failed
    /// (at most [`MAX_UPSTREAM_ATTEMPTS`]). Absent when the request made no attempt or its
    /// single attempt succeeded (then `token_id` with `attempts: 1` says it all, and the line
    /// costs nothing more), and on lines written before the field existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstream: Vec<UpstreamAttempt>,
    /// The spend budgets (key's and tenant's, day and month) the request was admitted under,
    /// with each window's spend as the limit stage saw it at admission (settled spend plus
    /// reservations in flight, this request's excluded) and when the window ends. Absent when
    /// no spend budget applies, for requests refused before the limit stage, and on lines
    /// written before the field existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<BudgetUse>,
    pub latency_ms: f64,
    pub upstream_ms: Option<f64>,
    pub overhead_ms: f64,
    pub tokens_in: Option<u64>,
    pub tokens_out: Option<u64>,
    pub cost_usd: Option<f64>,
    /// Entity type → count. Never the matched text.
    #[serde(default)]
    pub dlp: BTreeMap<String, u32>,
    /// Secrets redacted from the provider's response: entity type → count.
    #[serde(default)]
    pub dlp_response: BTreeMap<String, u32>,
    pub stream: bool,
    pub error_class: Option<String>,
    /// Store calls (AWS API calls in production) this request made: cache misses, usage and
    /// health writes. A malformed key must show 0 and 0.
    #[serde(default)]
    pub store_reads: u32,
    #[serde(default)]
    pub store_writes: u32,
}

/// The most upstream attempts a line lists (the retry policy bounds attempts well below it).
pub const MAX_UPSTREAM_ATTEMPTS: usize = 8;

/// What one upstream attempt told the proxy about its token (the pool's health outcome).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The provider answered (2xx, or a 4xx that is the caller's doing).
    Ok,
    /// 401 / 403 (or a rejected federation exchange): the token was marked invalid.
    AuthRejected,
    /// 429: the token was cooled.
    RateLimited,
    /// 5xx, connect error, timeout, a body or stream that broke.
    Transient,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Ok => "ok",
            AttemptOutcome::AuthRejected => "auth_rejected",
            AttemptOutcome::RateLimited => "rate_limited",
            AttemptOutcome::Transient => "transient",
        }
    }
}

impl From<crate::pool::Outcome> for AttemptOutcome {
    fn from(o: crate::pool::Outcome) -> Self {
        use crate::pool::Outcome;
        match o {
            Outcome::Success => AttemptOutcome::Ok,
            Outcome::AuthRejected => AttemptOutcome::AuthRejected,
            Outcome::RateLimited { .. } => AttemptOutcome::RateLimited,
            Outcome::Transient => AttemptOutcome::Transient,
        }
    }
}

/// One upstream attempt: the token tried (id only, never its value) and what came of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamAttempt {
    pub token_id: String,
    pub outcome: AttemptOutcome,
}

impl AuditRecord {
    /// Records one upstream attempt's outcome. A single successful attempt is left implicit
    /// (`token_id` + `attempts`), so the common request allocates nothing here: the list is
    /// written only once an attempt failed, and then holds every attempt.
    pub fn note_attempt(&mut self, token_id: &str, outcome: AttemptOutcome) {
        if outcome == AttemptOutcome::Ok && self.upstream.is_empty() {
            return;
        }
        if self.upstream.len() < MAX_UPSTREAM_ATTEMPTS {
            self.upstream.push(UpstreamAttempt {
                token_id: token_id.to_owned(),
                outcome,
            });
        }
    }

    /// Every upstream attempt with its outcome, the implicit single success included.
    pub fn attempts_iter(&self) -> impl Iterator<Item = (&str, AttemptOutcome)> {
        let implicit =
            (self.upstream.is_empty() && self.attempts == 1 && self.decision == Decision::Allow)
                .then_some(self.token_id.as_deref())
                .flatten()
                .map(|t| (t, AttemptOutcome::Ok));
        implicit.into_iter().chain(
            self.upstream
                .iter()
                .map(|a| (a.token_id.as_str(), a.outcome)),
        )
    }
}

/// Whose budget a [`BudgetUse`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetScope {
    Key,
    Tenant,
}

/// The UTC window of a spend budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetPeriod {
    Day,
    Month,
}

impl BudgetPeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetPeriod::Day => "day",
            BudgetPeriod::Month => "month",
        }
    }
}

/// One spend budget at admission: the limit, the window's spend then, and the window's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetUse {
    pub scope: BudgetScope,
    pub period: BudgetPeriod,
    /// The budget, in millionths of a dollar (as the limits hold it: exact).
    pub budget_micros: u64,
    /// The window's spend at admission, in millionths of a dollar.
    pub spent_micros: u64,
    /// When the window ends (epoch ms, UTC): the budget resets then.
    pub window_end_ms: u64,
}

/// The longest value of a caller-controlled field (model, user agent, ...) the line keeps.
/// CloudWatch Logs truncates events above 256 KB; an audit line must never come near that.
pub const MAX_FIELD_CHARS: usize = 256;

/// The most characters of a `User-Agent` the line keeps: real SDK agents are under 100
/// (`OpenAI/Python 1.x`, `Anthropic/Python 0.x`); anything longer is cut and marked.
pub const MAX_USER_AGENT_CHARS: usize = 128;

/// A caller's `User-Agent` as the audit line keeps it: control characters (newlines, escape
/// sequences a terminal would run) removed, surrounding space trimmed, at most
/// [`MAX_USER_AGENT_CHARS`] characters (then marked with `…`); `None` when nothing is left.
/// Caller-controlled: never trusted, only recorded and compared.
pub fn user_agent(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len().min(MAX_USER_AGENT_CHARS + 3));
    for (n, c) in raw.trim().chars().filter(|c| !c.is_control()).enumerate() {
        if n == MAX_USER_AGENT_CHARS {
            out.push('…');
            break;
        }
        out.push(c);
    }
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    (!out.is_empty()).then_some(out)
}

/// `s` cut to [`MAX_FIELD_CHARS`] characters (on a character boundary), marked with `…` when
/// cut.
pub fn bounded(s: &str) -> String {
    match s.char_indices().nth(MAX_FIELD_CHARS) {
        None => s.to_owned(),
        Some((i, _)) => format!("{}…", &s[..i]),
    }
}

impl AuditRecord {
    pub fn new(request_id: String, at: EpochMs) -> Self {
        Self {
            tollgate_audit: 1,
            v: SCHEMA_VERSION,
            time: rfc3339(at),
            request_id,
            tenant: None,
            key_id: None,
            principal: None,
            issuer: None,
            superseded_by: None,
            key_expiring_in_days: None,
            source_ip: None,
            user_agent: None,
            route: None,
            model: None,
            pool: None,
            decision: Decision::Deny,
            reason: Reason::Ok,
            status: 0,
            token_id: None,
            attempts: 0,
            upstream: Vec::new(),
            budgets: Vec::new(),
            latency_ms: 0.0,
            upstream_ms: None,
            overhead_ms: 0.0,
            tokens_in: None,
            tokens_out: None,
            cost_usd: None,
            dlp: BTreeMap::new(),
            dlp_response: BTreeMap::new(),
            stream: false,
            error_class: None,
            store_reads: 0,
            store_writes: 0,
        }
    }

    /// The line as written to stdout: `{"tollgate_audit":1, ...}` on one line.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a line back, as the audit function does.
    pub fn from_line(line: &str) -> Option<Self> {
        serde_json::from_str::<Self>(line.trim())
            .ok()
            .filter(|r| r.tollgate_audit == 1)
    }

    /// A CloudWatch Embedded Metric Format line for this request. Serialized straight from
    /// borrowed fields (one allocation, the line): building a `serde_json::Value` tree for it
    /// cost more than the rest of the audit work together (see README, Performance).
    ///
    /// `key_expiring` (1) is declared and written only on lines of requests whose key expires
    /// within the warning window: every other line stays byte for byte what it was before the
    /// metric existed, and costs what it cost (a Sum of the metric counts the flagged requests;
    /// an alarm on it treats missing data as not breaching).
    pub fn to_emf_line(&self, at: EpochMs) -> String {
        let expiring = self.key_expiring_in_days.is_some();
        let line = EmfLine {
            aws: EmfMeta {
                cloud_watch_metrics: [EmfDirective {
                    dimensions: [["route", "decision"]],
                    metrics: if expiring {
                        &EMF_METRICS_EXPIRING
                    } else {
                        &EMF_METRICS_EXPIRING[..6]
                    },
                    namespace: "tollgate",
                }],
                timestamp: at,
            },
            attempts: self.attempts,
            decision: self.decision,
            key_expiring: expiring.then_some(1),
            latency: self.latency_ms,
            overhead: self.overhead_ms,
            requests: 1,
            route: self.route.as_deref().unwrap_or("none"),
            tokens_in: self.tokens_in.unwrap_or(0),
            tokens_out: self.tokens_out.unwrap_or(0),
        };
        serde_json::to_string(&line).unwrap_or_default()
    }
}

// The EMF line's shape. Fields are declared in the order a `serde_json::Value` would print
// them (sorted), so the line is byte for byte what it was when it was built as a `Value`.
#[derive(Serialize)]
struct EmfLine<'a> {
    #[serde(rename = "_aws")]
    aws: EmfMeta,
    attempts: u32,
    decision: Decision,
    /// 1 when the request's key expires within the warning window (absent otherwise):
    /// summed, the requests still made with keys about to expire.
    #[serde(skip_serializing_if = "Option::is_none")]
    key_expiring: Option<u8>,
    latency: f64,
    overhead: f64,
    requests: u32,
    route: &'a str,
    tokens_in: u64,
    tokens_out: u64,
}

#[derive(Serialize)]
struct EmfMeta {
    #[serde(rename = "CloudWatchMetrics")]
    cloud_watch_metrics: [EmfDirective; 1],
    #[serde(rename = "Timestamp")]
    timestamp: EpochMs,
}

#[derive(Serialize)]
struct EmfDirective {
    #[serde(rename = "Dimensions")]
    dimensions: [[&'static str; 2]; 1],
    #[serde(rename = "Metrics")]
    metrics: &'static [EmfMetric],
    #[serde(rename = "Namespace")]
    namespace: &'static str,
}

#[derive(Serialize, Clone, Copy)]
struct EmfMetric {
    #[serde(rename = "Name")]
    name: &'static str,
    #[serde(rename = "Unit")]
    unit: &'static str,
}

/// The metrics of every line; the last one only on lines of keys about to expire.
const EMF_METRICS_EXPIRING: [EmfMetric; 7] = [
    EmfMetric {
        name: "requests",
        unit: "Count",
    },
    EmfMetric {
        name: "latency",
        unit: "Milliseconds",
    },
    EmfMetric {
        name: "overhead",
        unit: "Milliseconds",
    },
    EmfMetric {
        name: "attempts",
        unit: "Count",
    },
    EmfMetric {
        name: "tokens_in",
        unit: "Count",
    },
    EmfMetric {
        name: "tokens_out",
        unit: "Count",
    },
    EmfMetric {
        name: "key_expiring",
        unit: "Count",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_line_round_trips_and_is_marked() {
        let mut r = AuditRecord::new("req-1".into(), 1_700_000_000_000);
        r.tenant = Some("acme".into());
        r.decision = Decision::Allow;
        r.reason = Reason::Ok;
        r.dlp.insert("EMAIL".into(), 2);
        let line = r.to_line();
        assert!(!line.contains('\n'));
        assert!(line.contains("\"tollgate_audit\":1"));
        assert_eq!(AuditRecord::from_line(&line), Some(r));
        assert_eq!(AuditRecord::from_line("{\"other\":1}"), None);
    }

    #[test]
    fn schema_has_every_contract_field() {
        let v: serde_json::Value =
            serde_json::from_str(&AuditRecord::new("r".into(), 0).to_line()).unwrap();
        for f in [
            "v",
            "time",
            "request_id",
            "tenant",
            "key_id",
            "principal",
            "source_ip",
            "route",
            "model",
            "decision",
            "reason",
            "status",
            "token_id",
            "attempts",
            "latency_ms",
            "upstream_ms",
            "overhead_ms",
            "tokens_in",
            "tokens_out",
            "cost_usd",
            "dlp",
            "stream",
            "error_class",
            "store_reads",
            "store_writes",
        ] {
            assert!(v.get(f).is_some(), "missing {f}");
        }
    }

    #[test]
    fn bounded_cuts_long_values_on_a_char_boundary() {
        assert_eq!(bounded("gpt-4o"), "gpt-4o");
        let long = "モ".repeat(600);
        let b = bounded(&long);
        assert_eq!(b.chars().count(), MAX_FIELD_CHARS + 1);
        assert!(b.ends_with('…'));
        let exact = "a".repeat(MAX_FIELD_CHARS);
        assert_eq!(bounded(&exact), exact);
    }

    #[test]
    fn user_agents_are_kept_sanitized_and_bounded() {
        assert_eq!(
            user_agent(" OpenAI/Python 1.54.0 ").as_deref(),
            Some("OpenAI/Python 1.54.0")
        );
        assert_eq!(
            user_agent("evil\n{\"tollgate_audit\":1}\u{1b}[2J").as_deref(),
            Some("evil{\"tollgate_audit\":1}[2J")
        );
        assert_eq!(user_agent("\r\n\t "), None);
        assert_eq!(user_agent(""), None);
        let long = user_agent(&"ü".repeat(1000)).unwrap();
        assert_eq!(long.chars().count(), MAX_USER_AGENT_CHARS + 1);
        assert!(long.ends_with('…'));
        let exact = "a".repeat(MAX_USER_AGENT_CHARS);
        assert_eq!(user_agent(&exact).as_deref(), Some(exact.as_str()));
    }

    #[test]
    fn lines_without_the_newer_fields_still_parse() {
        // A line as written before user agents, canaries and expiry warnings existed.
        let mut r = AuditRecord::new("old".into(), 0);
        r.reason = Reason::UnknownKey;
        let mut v: serde_json::Value = serde_json::from_str(&r.to_line()).unwrap();
        let o = v.as_object_mut().unwrap();
        for f in [
            "user_agent",
            "issuer",
            "superseded_by",
            "key_expiring_in_days",
            "upstream",
            "budgets",
        ] {
            o.remove(f);
        }
        assert_eq!(AuditRecord::from_line(&v.to_string()), Some(r));
    }

    #[test]
    fn a_single_successful_attempt_is_implicit_and_allocates_nothing() {
        let mut r = AuditRecord::new("r".into(), 0);
        r.decision = Decision::Allow;
        r.token_id = Some("t1".into());
        r.attempts = 1;
        r.note_attempt("t1", AttemptOutcome::Ok);
        assert_eq!(r.upstream.capacity(), 0);
        assert!(!r.to_line().contains("\"upstream\":"));
        assert_eq!(
            r.attempts_iter().collect::<Vec<_>>(),
            vec![("t1", AttemptOutcome::Ok)]
        );
    }

    #[test]
    fn failed_attempts_are_listed_with_the_one_that_answered() {
        let mut r = AuditRecord::new("r".into(), 0);
        r.decision = Decision::Allow;
        r.note_attempt("t1", AttemptOutcome::AuthRejected);
        r.note_attempt("t2", AttemptOutcome::Transient);
        r.note_attempt("t2", AttemptOutcome::Ok);
        r.token_id = Some("t2".into());
        r.attempts = 2;
        let line = r.to_line();
        assert!(line.contains(r#""upstream":[{"token_id":"t1","outcome":"auth_rejected"}"#));
        let back = AuditRecord::from_line(&line).unwrap();
        assert_eq!(back, r);
        assert_eq!(
            back.attempts_iter().map(|(_, o)| o).collect::<Vec<_>>(),
            vec![
                AttemptOutcome::AuthRejected,
                AttemptOutcome::Transient,
                AttemptOutcome::Ok
            ]
        );
        for _ in 0..20 {
            r.note_attempt("t3", AttemptOutcome::Transient);
        }
        assert_eq!(r.upstream.len(), MAX_UPSTREAM_ATTEMPTS);
    }

    #[test]
    fn budgets_round_trip_and_are_absent_without_any() {
        let mut r = AuditRecord::new("r".into(), 0);
        assert!(!r.to_line().contains("budgets"));
        r.budgets.push(BudgetUse {
            scope: BudgetScope::Tenant,
            period: BudgetPeriod::Day,
            budget_micros: 50_000_000,
            spent_micros: 12_345_678,
            window_end_ms: 86_400_000,
        });
        let line = r.to_line();
        assert!(line.contains(r#""budgets":[{"scope":"tenant","period":"day","budget_micros":50000000,"spent_micros":12345678,"window_end_ms":86400000}]"#));
        assert_eq!(AuditRecord::from_line(&line), Some(r));
    }

    #[test]
    fn a_canary_line_round_trips() {
        let mut r = AuditRecord::new("c".into(), 0);
        r.reason = Reason::Canary;
        r.decision = Decision::Canary;
        r.user_agent = user_agent("curl/8.5.0");
        let line = r.to_line();
        assert!(line.contains("\"decision\":\"canary\""));
        assert!(line.contains("\"user_agent\":\"curl/8.5.0\""));
        assert_eq!(AuditRecord::from_line(&line), Some(r));
    }

    #[test]
    fn emf_line_declares_metrics() {
        let r = AuditRecord::new("r".into(), 0);
        let v: serde_json::Value = serde_json::from_str(&r.to_emf_line(5)).unwrap();
        assert_eq!(v["_aws"]["Timestamp"], 5);
        assert_eq!(v["requests"], 1);
        assert!(v.get("key_expiring").is_none());
    }

    #[test]
    fn emf_line_is_byte_for_byte_the_value_tree_it_replaced() {
        let mut r = AuditRecord::new("r".into(), 0);
        r.route = Some("chat_completions".into());
        r.latency_ms = 1.25;
        r.overhead_ms = 0.031;
        r.attempts = 2;
        r.tokens_in = Some(7);
        let old = serde_json::json!({
            "_aws": {"Timestamp": 5u64, "CloudWatchMetrics": [{
                "Namespace": "tollgate", "Dimensions": [["route", "decision"]],
                "Metrics": [
                    {"Name": "requests", "Unit": "Count"},
                    {"Name": "latency", "Unit": "Milliseconds"},
                    {"Name": "overhead", "Unit": "Milliseconds"},
                    {"Name": "attempts", "Unit": "Count"},
                    {"Name": "tokens_in", "Unit": "Count"},
                    {"Name": "tokens_out", "Unit": "Count"}]}]},
            "route": "chat_completions", "decision": r.decision, "requests": 1,
            "latency": 1.25, "overhead": 0.031, "attempts": 2, "tokens_in": 7, "tokens_out": 0,
        })
        .to_string();
        assert_eq!(r.to_emf_line(5), old);
        // A key about to expire: one more metric, declared and written on its lines only.
        r.key_expiring_in_days = Some(3);
        let mut expiring: serde_json::Value = serde_json::from_str(&old).unwrap();
        expiring["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"Name": "key_expiring", "Unit": "Count"}));
        expiring["key_expiring"] = serde_json::json!(1);
        assert_eq!(r.to_emf_line(5), expiring.to_string());
    }
}
