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

impl Decision {
    /// The audit line's string for this decision (its serialized form).
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Error => "error",
            Decision::Canary => "canary",
        }
    }
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

impl BudgetScope {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetScope::Key => "key",
            BudgetScope::Tenant => "tenant",
        }
    }
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
            time: rfc3339(at),
            request_id,
            ..Self::placeholder()
        }
    }

    /// A record that is never written (a stand-in while the real one moves elsewhere): no
    /// request id, no time — and none of `new`'s time formatting.
    pub fn placeholder() -> Self {
        Self {
            tollgate_audit: 1,
            v: SCHEMA_VERSION,
            time: String::new(),
            request_id: String::new(),
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
        let mut out = Vec::with_capacity(LINE_CAPACITY);
        self.write_line(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Appends the audit line (no newline) to `out`: byte for byte what the derived
    /// `Serialize` writes (`serde_json::to_string(self)`, the line's contract — a test
    /// compares the two over many records), written straight from the fields: keys as
    /// literals, strings and numbers through serde_json's own escaping and number formatting,
    /// no intermediate value and no allocation beyond `out`.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        // Every field named: a field added to the record without being added here does not
        // compile.
        let AuditRecord {
            tollgate_audit,
            v,
            time,
            request_id,
            tenant,
            key_id,
            principal,
            issuer,
            superseded_by,
            key_expiring_in_days,
            source_ip,
            user_agent,
            route,
            model,
            pool,
            decision,
            reason,
            status,
            token_id,
            attempts,
            upstream,
            budgets,
            latency_ms,
            upstream_ms,
            overhead_ms,
            tokens_in,
            tokens_out,
            cost_usd,
            dlp,
            dlp_response,
            stream,
            error_class,
            store_reads,
            store_writes,
        } = self;
        let mut w = LineWriter(out);
        w.raw("{\"tollgate_audit\":");
        w.u64(u64::from(*tollgate_audit));
        w.raw(",\"v\":");
        w.u64(u64::from(*v));
        w.raw(",\"time\":");
        w.str(time);
        w.raw(",\"request_id\":");
        w.str(request_id);
        w.raw(",\"tenant\":");
        w.opt_str(tenant.as_deref());
        w.raw(",\"key_id\":");
        w.opt_str(key_id.as_deref());
        w.raw(",\"principal\":");
        w.opt_str(principal.as_deref());
        w.raw(",\"issuer\":");
        w.opt_str(issuer.as_deref());
        if let Some(s) = superseded_by {
            w.raw(",\"superseded_by\":");
            w.str(s);
        }
        if let Some(d) = key_expiring_in_days {
            w.raw(",\"key_expiring_in_days\":");
            w.u64(u64::from(*d));
        }
        w.raw(",\"source_ip\":");
        w.opt_str(source_ip.as_deref());
        if let Some(s) = user_agent {
            w.raw(",\"user_agent\":");
            w.str(s);
        }
        w.raw(",\"route\":");
        w.opt_str(route.as_deref());
        w.raw(",\"model\":");
        w.opt_str(model.as_deref());
        w.raw(",\"pool\":");
        w.opt_str(pool.as_deref());
        w.raw(",\"decision\":\"");
        w.raw(decision.as_str());
        w.raw("\",\"reason\":\"");
        w.raw(reason.as_str());
        w.raw("\",\"status\":");
        w.u64(u64::from(*status));
        w.raw(",\"token_id\":");
        w.opt_str(token_id.as_deref());
        w.raw(",\"attempts\":");
        w.u64(u64::from(*attempts));
        if !upstream.is_empty() {
            w.raw(",\"upstream\":[");
            for (i, a) in upstream.iter().enumerate() {
                w.raw(if i == 0 {
                    "{\"token_id\":"
                } else {
                    ",{\"token_id\":"
                });
                w.str(&a.token_id);
                w.raw(",\"outcome\":\"");
                w.raw(a.outcome.as_str());
                w.raw("\"}");
            }
            w.raw("]");
        }
        if !budgets.is_empty() {
            w.raw(",\"budgets\":[");
            for (i, b) in budgets.iter().enumerate() {
                w.raw(if i == 0 {
                    "{\"scope\":\""
                } else {
                    ",{\"scope\":\""
                });
                w.raw(b.scope.as_str());
                w.raw("\",\"period\":\"");
                w.raw(b.period.as_str());
                w.raw("\",\"budget_micros\":");
                w.u64(b.budget_micros);
                w.raw(",\"spent_micros\":");
                w.u64(b.spent_micros);
                w.raw(",\"window_end_ms\":");
                w.u64(b.window_end_ms);
                w.raw("}");
            }
            w.raw("]");
        }
        w.raw(",\"latency_ms\":");
        w.f64(*latency_ms);
        w.raw(",\"upstream_ms\":");
        w.opt_f64(*upstream_ms);
        w.raw(",\"overhead_ms\":");
        w.f64(*overhead_ms);
        w.raw(",\"tokens_in\":");
        w.opt_u64(*tokens_in);
        w.raw(",\"tokens_out\":");
        w.opt_u64(*tokens_out);
        w.raw(",\"cost_usd\":");
        w.opt_f64(*cost_usd);
        w.raw(",\"dlp\":");
        w.counts(dlp);
        w.raw(",\"dlp_response\":");
        w.counts(dlp_response);
        w.raw(if *stream {
            ",\"stream\":true"
        } else {
            ",\"stream\":false"
        });
        w.raw(",\"error_class\":");
        w.opt_str(error_class.as_deref());
        w.raw(",\"store_reads\":");
        w.u64(u64::from(*store_reads));
        w.raw(",\"store_writes\":");
        w.u64(u64::from(*store_writes));
        w.raw("}");
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
        let mut out = Vec::with_capacity(EMF_LINE_CAPACITY);
        self.write_emf_line(at, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Appends the EMF line (no newline) to `out`: what [`Self::to_emf_line`] returns. The
    /// metric declarations are constant text; only the values are written per line.
    pub fn write_emf_line(&self, at: EpochMs, out: &mut Vec<u8>) {
        let expiring = self.key_expiring_in_days.is_some();
        let mut w = LineWriter(out);
        w.raw(EMF_HEAD);
        if expiring {
            w.raw(EMF_EXPIRING_METRIC);
        }
        w.raw(EMF_TAIL);
        w.u64(at);
        w.raw("},\"attempts\":");
        w.u64(u64::from(self.attempts));
        w.raw(",\"decision\":\"");
        w.raw(self.decision.as_str());
        w.raw(if expiring {
            "\",\"key_expiring\":1,\"latency\":"
        } else {
            "\",\"latency\":"
        });
        w.f64(self.latency_ms);
        w.raw(",\"overhead\":");
        w.f64(self.overhead_ms);
        w.raw(",\"requests\":1,\"route\":");
        w.str(self.route.as_deref().unwrap_or("none"));
        w.raw(",\"tokens_in\":");
        w.u64(self.tokens_in.unwrap_or(0));
        w.raw(",\"tokens_out\":");
        w.u64(self.tokens_out.unwrap_or(0));
        w.raw("}");
    }
}

// The EMF line's shape, keys in the order a `serde_json::Value` prints them (sorted), as when
// the line was built as a `Value` (tests compare with both that and the serde structs that
// wrote it until the writer above existed). The metrics of every line; `key_expiring` (last)
// only on lines of keys about to expire.
const EMF_HEAD: &str = concat!(
    r#"{"_aws":{"CloudWatchMetrics":[{"Dimensions":[["route","decision"]],"Metrics":["#,
    r#"{"Name":"requests","Unit":"Count"},"#,
    r#"{"Name":"latency","Unit":"Milliseconds"},"#,
    r#"{"Name":"overhead","Unit":"Milliseconds"},"#,
    r#"{"Name":"attempts","Unit":"Count"},"#,
    r#"{"Name":"tokens_in","Unit":"Count"},"#,
    r#"{"Name":"tokens_out","Unit":"Count"}"#,
);
const EMF_EXPIRING_METRIC: &str = r#",{"Name":"key_expiring","Unit":"Count"}"#;
const EMF_TAIL: &str = r#"],"Namespace":"tollgate"}],"Timestamp":"#;

/// Room for a typical audit line (~650 bytes) without growing.
pub const LINE_CAPACITY: usize = 1024;
/// Room for an EMF line (~470 bytes) without growing.
pub const EMF_LINE_CAPACITY: usize = 640;

/// Writes JSON pieces into the line. Strings and numbers go through serde_json's serializer,
/// so escaping and number formatting are exactly those of the derived `Serialize`; writing to
/// a `Vec` cannot fail.
struct LineWriter<'a>(&'a mut Vec<u8>);

impl LineWriter<'_> {
    fn raw(&mut self, s: &str) {
        self.0.extend_from_slice(s.as_bytes());
    }

    fn ser(&mut self) -> serde_json::Serializer<&mut Vec<u8>> {
        serde_json::Serializer::new(&mut *self.0)
    }

    /// A JSON string. Most need no escape (ids, names, addresses): they are copied as they
    /// are; the others go through serde_json's escaping (which escapes exactly the control
    /// characters, `"` and `\\`).
    fn str(&mut self, s: &str) {
        if s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
            let _ = serde::Serializer::serialize_str(&mut self.ser(), s);
        } else {
            self.0.reserve(s.len() + 2);
            self.0.push(b'"');
            self.0.extend_from_slice(s.as_bytes());
            self.0.push(b'"');
        }
    }

    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.str(s),
            None => self.raw("null"),
        }
    }

    fn u64(&mut self, n: u64) {
        let _ = serde::Serializer::serialize_u64(&mut self.ser(), n);
    }

    fn opt_u64(&mut self, n: Option<u64>) {
        match n {
            Some(n) => self.u64(n),
            None => self.raw("null"),
        }
    }

    /// A finite float as serde_json writes it (shortest round-trip form); `null` otherwise.
    fn f64(&mut self, x: f64) {
        let _ = serde::Serializer::serialize_f64(&mut self.ser(), x);
    }

    fn opt_f64(&mut self, x: Option<f64>) {
        match x {
            Some(x) => self.f64(x),
            None => self.raw("null"),
        }
    }

    /// `{"EMAIL":2,...}`, keys in the map's (sorted) order.
    fn counts(&mut self, m: &BTreeMap<String, u32>) {
        self.raw("{");
        for (i, (k, n)) in m.iter().enumerate() {
            if i > 0 {
                self.raw(",");
            }
            self.str(k);
            self.raw(":");
            self.u64(u64::from(*n));
        }
        self.raw("}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The serde structs that wrote the EMF line before `write_emf_line` (the reference).
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

    /// The EMF line as the serde structs wrote it before `write_emf_line`.
    fn derived_emf_line(r: &AuditRecord, at: EpochMs) -> String {
        let expiring = r.key_expiring_in_days.is_some();
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
            attempts: r.attempts,
            decision: r.decision,
            key_expiring: expiring.then_some(1),
            latency: r.latency_ms,
            overhead: r.overhead_ms,
            requests: 1,
            route: r.route.as_deref().unwrap_or("none"),
            tokens_in: r.tokens_in.unwrap_or(0),
            tokens_out: r.tokens_out.unwrap_or(0),
        };
        serde_json::to_string(&line).unwrap()
    }

    mod line_writer {
        use super::*;
        use proptest::prelude::*;

        /// Strings that need escaping (quotes, backslashes, every control character, DEL,
        /// non-ASCII) as well as arbitrary ones.
        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                "[\"\\\\\\x00-\\x1f\\x7f a-zA-Z0-9/._\u{e9}\u{2028}\u{1F600}…-]{0,24}",
                Just(String::new()),
            ]
        }

        fn opt_text() -> impl Strategy<Value = Option<String>> {
            proptest::option::of(text())
        }

        fn float() -> impl Strategy<Value = f64> {
            prop_oneof![
                any::<f64>(),
                (0u64..10_000_000).prop_map(|n| n as f64 / 1000.0),
                Just(0.0),
                Just(-0.0),
                Just(f64::NAN),
                Just(f64::INFINITY),
                Just(f64::NEG_INFINITY),
                Just(1e-7),
                Just(0.00002),
                Just(1e21),
            ]
        }

        fn counts() -> impl Strategy<Value = BTreeMap<String, u32>> {
            proptest::collection::btree_map(text(), any::<u32>(), 0..4)
        }

        fn outcome() -> impl Strategy<Value = AttemptOutcome> {
            prop_oneof![
                Just(AttemptOutcome::Ok),
                Just(AttemptOutcome::AuthRejected),
                Just(AttemptOutcome::RateLimited),
                Just(AttemptOutcome::Transient),
            ]
        }

        fn budget() -> impl Strategy<Value = BudgetUse> {
            (
                any::<bool>(),
                any::<bool>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
            )
                .prop_map(|(k, d, budget_micros, spent_micros, window_end_ms)| {
                    BudgetUse {
                        scope: if k {
                            BudgetScope::Key
                        } else {
                            BudgetScope::Tenant
                        },
                        period: if d {
                            BudgetPeriod::Day
                        } else {
                            BudgetPeriod::Month
                        },
                        budget_micros,
                        spent_micros,
                        window_end_ms,
                    }
                })
        }

        // The reasons' strings equal their serialized form for every reason (reason.rs,
        // `serialized_form_is_the_audit_string`); a sample is enough here.
        const REASONS: [Reason; 8] = [
            Reason::Ok,
            Reason::ClientDisconnected,
            Reason::BadChecksum,
            Reason::UnknownKey,
            Reason::Canary,
            Reason::ScrubberUnavailable,
            Reason::StoreUnavailable,
            Reason::Unrecognized,
        ];

        const DECISIONS: [Decision; 4] = [
            Decision::Allow,
            Decision::Deny,
            Decision::Error,
            Decision::Canary,
        ];

        fn record() -> impl Strategy<Value = AuditRecord> {
            let who = (
                text(),
                text(),
                opt_text(),
                opt_text(),
                opt_text(),
                opt_text(),
                opt_text(),
                proptest::option::of(any::<u32>()),
                opt_text(),
                opt_text(),
            );
            let what = (
                opt_text(),
                opt_text(),
                opt_text(),
                0..DECISIONS.len(),
                0..REASONS.len(),
                any::<u16>(),
                opt_text(),
                any::<u32>(),
                proptest::collection::vec((text(), outcome()), 0..3),
                proptest::collection::vec(budget(), 0..3),
            );
            let numbers = (
                float(),
                proptest::option::of(float()),
                float(),
                proptest::option::of(any::<u64>()),
                proptest::option::of(any::<u64>()),
                proptest::option::of(float()),
                counts(),
                counts(),
                any::<bool>(),
                opt_text(),
                any::<u32>(),
                any::<u32>(),
            );
            (who, what, numbers, any::<u8>(), any::<u32>()).prop_map(
                |(who, what, numbers, tollgate_audit, v)| {
                    let (
                        time,
                        request_id,
                        tenant,
                        key_id,
                        principal,
                        issuer,
                        superseded_by,
                        key_expiring_in_days,
                        source_ip,
                        user_agent,
                    ) = who;
                    let (route, model, pool, d, r, status, token_id, attempts, up, budgets) = what;
                    let (
                        latency_ms,
                        upstream_ms,
                        overhead_ms,
                        tokens_in,
                        tokens_out,
                        cost_usd,
                        dlp,
                        dlp_response,
                        stream,
                        error_class,
                        store_reads,
                        store_writes,
                    ) = numbers;
                    AuditRecord {
                        tollgate_audit,
                        v,
                        time,
                        request_id,
                        tenant,
                        key_id,
                        principal,
                        issuer,
                        superseded_by,
                        key_expiring_in_days,
                        source_ip,
                        user_agent,
                        route,
                        model,
                        pool,
                        decision: DECISIONS[d],
                        reason: REASONS[r],
                        status,
                        token_id,
                        attempts,
                        upstream: up
                            .into_iter()
                            .map(|(token_id, outcome)| UpstreamAttempt { token_id, outcome })
                            .collect(),
                        budgets,
                        latency_ms,
                        upstream_ms,
                        overhead_ms,
                        tokens_in,
                        tokens_out,
                        cost_usd,
                        dlp,
                        dlp_response,
                        stream,
                        error_class,
                        store_reads,
                        store_writes,
                    }
                },
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(4096))]

            /// The written line is byte for byte the derived serialization (the line as it
            /// was written before the writer existed).
            #[test]
            fn the_line_is_byte_for_byte_the_derived_serialization(r in record()) {
                let derived = serde_json::to_string(&r).unwrap();
                prop_assert_eq!(r.to_line(), derived.clone());
                let mut buf = b"prefix\n".to_vec();
                r.write_line(&mut buf);
                prop_assert_eq!(&buf[7..], derived.as_bytes());
            }

            /// So is the EMF line (the serde structs that wrote it before).
            #[test]
            fn the_emf_line_is_byte_for_byte_the_derived_serialization(
                r in record(),
                at in any::<u64>(),
            ) {
                let derived = super::derived_emf_line(&r, at);
                prop_assert_eq!(r.to_emf_line(at), derived.clone());
                let mut buf = b"line\n".to_vec();
                r.write_emf_line(at, &mut buf);
                prop_assert_eq!(&buf[5..], derived.as_bytes());
            }
        }

        #[test]
        fn a_typical_line_is_the_derived_serialization_and_fits_its_capacity() {
            let mut r = AuditRecord::new("5f0c6f3e-8a4f-4d7e-9c51-2f1d0f6b9a11".into(), 1);
            r.tenant = Some("acme".into());
            r.key_id = Some("AbCdEf012345".into());
            r.principal = Some("dev@acme.test".into());
            r.source_ip = Some("203.0.113.7".into());
            r.user_agent = Some("OpenAI/Python 1.54.0".into());
            r.route = Some("chat_completions".into());
            r.model = Some("gpt-4o-mini".into());
            r.pool = Some("openai".into());
            r.decision = Decision::Allow;
            r.status = 200;
            r.token_id = Some("t1".into());
            r.attempts = 1;
            r.latency_ms = 1.234;
            r.upstream_ms = Some(0.9);
            r.overhead_ms = 0.334;
            r.tokens_in = Some(12);
            r.tokens_out = Some(34);
            r.cost_usd = Some(0.00002);
            r.dlp.insert("EMAIL".into(), 2);
            r.store_writes = 1;
            let line = r.to_line();
            assert_eq!(line, serde_json::to_string(&r).unwrap());
            assert!(line.len() <= LINE_CAPACITY, "{}", line.len());
            assert!(r.to_emf_line(1).len() <= EMF_LINE_CAPACITY);
            r.key_expiring_in_days = Some(1);
            assert!(r.to_emf_line(u64::MAX).len() <= EMF_LINE_CAPACITY);
        }

        #[test]
        fn decisions_and_budget_scopes_write_their_serialized_form() {
            for d in DECISIONS {
                assert_eq!(
                    serde_json::to_string(&d).unwrap(),
                    format!("\"{}\"", d.as_str())
                );
            }
            for s in [BudgetScope::Key, BudgetScope::Tenant] {
                assert_eq!(
                    serde_json::to_string(&s).unwrap(),
                    format!("\"{}\"", s.as_str())
                );
            }
            for p in [BudgetPeriod::Day, BudgetPeriod::Month] {
                assert_eq!(
                    serde_json::to_string(&p).unwrap(),
                    format!("\"{}\"", p.as_str())
                );
            }
        }
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
