//! `tollgate alerts list|show`: the alerts the audit function raised, read from its state
//! table through [`AlertHistory`]. The table keeps the latest alert per (rule, subject) with
//! the count of later occurrences suppressed into it, for `alert_retention_ms` (default 7
//! days) after it opened. Ids, counts and request ids only: alerts never hold a key value.

use crate::args::{AlertsCmd, AlertsList, AlertsShow};
use crate::error::{CliError, Result, StoreContext};
use crate::output::{Out, Table, fields, or_dash};
use serde_json::{Value, json};
use tollgate_core::clock::{EpochMs, rfc3339};
use tollgate_core::detect::port::AlertHistory;
use tollgate_core::detect::{Suppression, key_subject};

pub async fn run(history: &dyn AlertHistory, now: EpochMs, cmd: AlertsCmd) -> Result<Out> {
    match cmd {
        AlertsCmd::List(a) => list(history, now, a).await,
        AlertsCmd::Show(a) => show(history, now, a).await,
    }
}

fn to_json(s: &Suppression) -> Value {
    json!({
        "id": s.alert_id(),
        "rule": s.rule,
        "subject": s.subject,
        "severity": s.severity,
        "tenant": s.tenant,
        "opened_at": rfc3339(s.opened_at),
        "first_seen": rfc3339(s.first_seen),
        "last_seen": rfc3339(s.last_seen),
        "suppressed_until": rfc3339(s.until),
        "occurrences": s.occurrences,
        "evidence": s.evidence,
        "response": s.alert.as_ref().and_then(|a| a.response.clone()),
        "alert": s.alert,
    })
}

async fn list(history: &dyn AlertHistory, now: EpochMs, a: AlertsList) -> Result<Out> {
    let key = a
        .key
        .as_deref()
        .map(crate::key::parse_lookup)
        .transpose()?
        .map(|k| key_subject(k.key_id()));
    let all = history
        .recent_alerts(now.saturating_sub(a.since), now)
        .await
        .ctx("reading alerts from the audit state table")?;
    let shown: Vec<Suppression> = all
        .into_iter()
        .filter(|s| a.rule.is_none_or(|r| r == s.rule))
        .filter(|s| a.tenant.is_none() || s.tenant == a.tenant)
        .filter(|s| key.as_ref().is_none_or(|k| &s.subject == k))
        .take(a.limit)
        .collect();
    let mut t = Table::new([
        "OPENED",
        "SEVERITY",
        "RULE",
        "SUBJECT",
        "TENANT",
        "COUNT",
        "LAST SEEN",
        "RESPONSE",
    ]);
    for s in &shown {
        t.row([
            rfc3339(s.opened_at),
            s.severity.as_str().to_owned(),
            s.rule.as_str().to_owned(),
            s.subject.clone(),
            or_dash(s.tenant.as_deref().unwrap_or("")),
            s.occurrences.to_string(),
            rfc3339(s.last_seen),
            or_dash(
                s.alert
                    .as_ref()
                    .and_then(|a| a.response.as_deref())
                    .unwrap_or(""),
            ),
        ]);
    }
    let human = if t.is_empty() {
        "no alerts in that time".to_owned()
    } else {
        format!(
            "{}\n(show one: tollgate alerts show <rule>/<subject>)",
            t.render()
        )
    };
    Ok(Out::new(
        human,
        json!({ "alerts": shown.iter().map(to_json).collect::<Vec<_>>() }),
    ))
}

async fn show(history: &dyn AlertHistory, now: EpochMs, a: AlertsShow) -> Result<Out> {
    let (rule, subject) = a.id;
    let all = history
        .recent_alerts(0, now)
        .await
        .ctx("reading alerts from the audit state table")?;
    let Some(s) = all
        .into_iter()
        .find(|s| s.rule == rule && s.subject == subject)
    else {
        return Err(CliError::new(format!(
            "no alert {} is kept (alerts are kept for 7 days by default)",
            tollgate_core::detect::alert_id(rule, &subject)
        )));
    };
    let mut pairs = vec![
        ("id", s.alert_id()),
        ("rule", s.rule.as_str().to_owned()),
        ("severity", s.severity.as_str().to_owned()),
        ("subject", s.subject.clone()),
        ("tenant", or_dash(s.tenant.as_deref().unwrap_or(""))),
        ("opened", rfc3339(s.opened_at)),
        ("first seen", rfc3339(s.first_seen)),
        ("last seen", rfc3339(s.last_seen)),
        ("occurrences", s.occurrences.to_string()),
        ("suppressed until", rfc3339(s.until)),
        ("evidence", s.evidence.join(" ")),
    ];
    if let Some(al) = &s.alert {
        let counts = al
            .counts
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ");
        pairs.push(("counts", counts));
        pairs.push(("networks", or_dash(&al.networks.join(" "))));
        pairs.push((
            "response",
            or_dash(al.response.as_deref().unwrap_or("none")),
        ));
        pairs.push(("runbook", al.runbook.clone()));
    }
    Ok(Out::new(fields(&pairs), to_json(&s)))
}
