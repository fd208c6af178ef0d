//! `tollgate audit tail`: the proxy's audit lines from CloudWatch Logs (FilterLogEvents
//! through [`AuditLogSource`]), optionally only one tenant's or key's, as a table or one JSON
//! line per request (`--json`); `--follow` keeps polling.
//!
//! Following: each poll asks for events from a cursor that lags the newest event seen by
//! [`LAG_MS`] (CloudWatch Logs makes events searchable a little out of order) and skips ids
//! already printed, so a line is printed once and a late one within the lag is not missed.
//! Lines other than audit lines (EMF metrics, runtime lines) are skipped; the filter pattern
//! asks CloudWatch Logs for audit lines only, and every line is checked again here.

use crate::args::AuditTail;
use crate::error::{Result, StoreContext};
use std::collections::BTreeMap;
use std::io::Write;
use tollgate_core::audit::AuditRecord;
use tollgate_core::clock::EpochMs;
use tollgate_core::detect::port::AuditLogSource;

/// How far behind the newest event seen each follow-up poll starts.
pub const LAG_MS: u64 = 10_000;
/// Most pages one poll reads (FilterLogEvents pages are up to 10,000 events / 1 MB).
const MAX_PAGES: usize = 100;

/// Which requests to show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TailFilter {
    pub tenant: Option<String>,
    pub key_id: Option<String>,
}

impl TailFilter {
    pub fn from_args(a: &AuditTail) -> Result<Self> {
        let key_id = a
            .key
            .as_deref()
            .map(crate::key::parse_lookup)
            .transpose()?
            .map(|k| k.key_id().to_owned());
        Ok(Self {
            tenant: a.tenant.clone(),
            key_id,
        })
    }

    /// The CloudWatch Logs filter pattern: audit lines, of this tenant / key. Ids are
    /// validated (letters, digits, `.`, `_`, `-`), so they need no quoting beyond `"`.
    pub fn pattern(&self) -> String {
        let mut terms = vec!["$.tollgate_audit = 1".to_owned()];
        if let Some(t) = &self.tenant {
            terms.push(format!("$.tenant = \"{t}\""));
        }
        if let Some(k) = &self.key_id {
            terms.push(format!("$.key_id = \"{k}\""));
        }
        format!("{{ {} }}", terms.join(" && "))
    }

    pub fn matches(&self, r: &AuditRecord) -> bool {
        self.tenant
            .as_ref()
            .is_none_or(|t| r.tenant.as_ref() == Some(t))
            && self
                .key_id
                .as_ref()
                .is_none_or(|k| r.key_id.as_ref() == Some(k))
    }
}

/// Where the next poll starts, and what was already printed.
#[derive(Debug, Clone, Default)]
pub struct Cursor {
    start: EpochMs,
    printed: BTreeMap<String, EpochMs>,
}

impl Cursor {
    pub fn new(start: EpochMs) -> Self {
        Self {
            start,
            printed: BTreeMap::new(),
        }
    }
}

/// One poll: the audit lines not printed yet that pass `filter`, oldest first.
pub async fn poll(
    src: &dyn AuditLogSource,
    filter: &TailFilter,
    cursor: &mut Cursor,
) -> Result<Vec<(EpochMs, AuditRecord)>> {
    let pattern = filter.pattern();
    let mut next = None;
    let mut out = Vec::new();
    for _ in 0..MAX_PAGES {
        let page = src
            .page(cursor.start, Some(&pattern), next.take())
            .await
            .ctx("reading the proxy's log group")?;
        for e in page.events {
            if e.timestamp < cursor.start || cursor.printed.contains_key(&e.id) {
                continue;
            }
            cursor.printed.insert(e.id, e.timestamp);
            let m = e.message.trim();
            let Some(r) = m.find('{').and_then(|i| AuditRecord::from_line(&m[i..])) else {
                continue;
            };
            if filter.matches(&r) {
                out.push((e.timestamp, r));
            }
        }
        match page.next {
            Some(n) => next = Some(n),
            None => break,
        }
    }
    out.sort_by_key(|(at, r)| (*at, r.request_id.clone()));
    let newest = cursor
        .printed
        .values()
        .copied()
        .max()
        .unwrap_or(cursor.start);
    cursor.start = cursor.start.max(newest.saturating_sub(LAG_MS));
    let start = cursor.start;
    cursor.printed.retain(|_, at| *at >= start);
    Ok(out)
}

/// The column header of the human rendering.
pub fn header() -> String {
    format!(
        "{:<24}  {:>3}  {:<26}  {:<12}  {:<12}  {:<15}  {:<18}  {:<20}  {:>8}  {:>9}  REQUEST",
        "TIME", "ST", "DECISION/REASON", "TENANT", "KEY", "SOURCE", "ROUTE", "MODEL", "MS", "USD"
    )
}

/// One request as a table row (fixed columns, so rows line up as they stream).
pub fn row(r: &AuditRecord) -> String {
    let d = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
    let cut = |s: String, n: usize| crate::output::truncate(&s, n);
    format!(
        "{:<24}  {:>3}  {:<26}  {:<12}  {:<12}  {:<15}  {:<18}  {:<20}  {:>8.1}  {:>9}  {}",
        cut(r.time.clone(), 24),
        r.status,
        cut(format!("{:?}/{}", r.decision, r.reason).to_lowercase(), 26),
        cut(d(&r.tenant), 12),
        cut(d(&r.key_id), 12),
        cut(d(&r.source_ip), 15),
        cut(d(&r.route), 18),
        cut(d(&r.model), 20),
        r.latency_ms,
        r.cost_usd.map_or("-".to_owned(), |c| format!("{c:.6}")),
        r.request_id,
    )
}

/// Runs `tollgate audit tail`, writing as it goes. Returns after one pass, or never with
/// `--follow` (until interrupted or a read fails).
pub async fn tail(
    src: &dyn AuditLogSource,
    a: &AuditTail,
    now: EpochMs,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let filter = TailFilter::from_args(a)?;
    let mut cursor = Cursor::new(now.saturating_sub(a.since));
    let io = |e: std::io::Error| crate::error::CliError::new(format!("writing output: {e}"));
    if !json {
        writeln!(out, "{}", header()).map_err(io)?;
    }
    loop {
        for (_, r) in poll(src, &filter, &mut cursor).await? {
            let line = if json { r.to_line() } else { row(&r) };
            writeln!(out, "{line}").map_err(io)?;
        }
        out.flush().map_err(io)?;
        if !a.follow {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(a.interval)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use std::sync::Mutex;
    use tollgate_core::detect::port::{LogEvent, LogPage};
    use tollgate_core::ports::StoreError;

    /// A log group in memory, served two events per page.
    #[derive(Default)]
    struct Logs(Mutex<Vec<LogEvent>>);

    impl Logs {
        fn push(&self, id: &str, at: EpochMs, message: String) {
            self.0.lock().unwrap().push(LogEvent {
                id: id.into(),
                timestamp: at,
                message,
            });
        }
    }

    #[async_trait]
    impl AuditLogSource for Logs {
        async fn page(
            &self,
            start: EpochMs,
            _pattern: Option<&str>,
            next: Option<String>,
        ) -> Result<LogPage, StoreError> {
            let all: Vec<LogEvent> = self
                .0
                .lock()
                .unwrap()
                .iter()
                .filter(|e| e.timestamp >= start)
                .cloned()
                .collect();
            let from: usize = next.map_or(0, |n| n.parse().unwrap());
            let events: Vec<LogEvent> = all.iter().skip(from).take(2).cloned().collect();
            let next = (from + 2 < all.len()).then(|| (from + 2).to_string());
            Ok(LogPage { events, next })
        }
    }

    fn line(rid: &str, tenant: &str, key: &str, at: EpochMs) -> String {
        let mut r = AuditRecord::new(rid.into(), at);
        r.tenant = Some(tenant.into());
        r.key_id = Some(key.into());
        r.to_line()
    }

    fn ids(v: &[(EpochMs, AuditRecord)]) -> Vec<&str> {
        v.iter().map(|(_, r)| r.request_id.as_str()).collect()
    }

    #[tokio::test]
    async fn follow_prints_each_line_once_across_pages_and_polls_and_catches_late_ones() {
        let logs = Logs::default();
        let f = TailFilter::default();
        logs.push("e1", 100_000, line("r1", "acme", "K1", 100_000));
        logs.push("e2", 101_000, "START RequestId: x".into());
        logs.push("e3", 102_000, line("r3", "acme", "K2", 102_000));
        logs.push("e4", 103_000, "{\"tollgate_audit\":1,\"truncated".into());
        logs.push("e5", 104_000, line("r5", "acme", "K1", 104_000));
        let mut c = Cursor::new(90_000);
        let got = poll(&logs, &f, &mut c).await.unwrap();
        assert_eq!(ids(&got), ["r1", "r3", "r5"], "all pages, audit lines only");
        assert!(
            poll(&logs, &f, &mut c).await.unwrap().is_empty(),
            "nothing twice"
        );
        // A new line, and one searchable late with an older timestamp (within the lag).
        logs.push("e6", 110_000, line("r6", "acme", "K1", 110_000));
        logs.push("e7", 103_500, line("r7", "acme", "K1", 103_500));
        let got = poll(&logs, &f, &mut c).await.unwrap();
        assert_eq!(ids(&got), ["r7", "r6"]);
        assert!(poll(&logs, &f, &mut c).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn filters_by_tenant_and_key_even_when_the_source_ignores_the_pattern() {
        let logs = Logs::default();
        logs.push("e1", 1_000, line("r1", "acme", "K1", 1_000));
        logs.push("e2", 2_000, line("r2", "globex", "K1", 2_000));
        logs.push("e3", 3_000, line("r3", "acme", "K2", 3_000));
        let f = TailFilter {
            tenant: Some("acme".into()),
            key_id: Some("K1".into()),
        };
        assert_eq!(
            f.pattern(),
            "{ $.tollgate_audit = 1 && $.tenant = \"acme\" && $.key_id = \"K1\" }"
        );
        let got = poll(&logs, &f, &mut Cursor::new(0)).await.unwrap();
        assert_eq!(ids(&got), ["r1"]);
    }

    #[test]
    fn rows_line_up_with_the_header() {
        let mut r = AuditRecord::new("req-1".into(), 1_700_000_000_000);
        r.tenant = Some("acme".into());
        let h = header();
        let row = row(&r);
        assert_eq!(h.find("REQUEST"), row.find("req-1"), "{h}\n{row}");
    }
}
