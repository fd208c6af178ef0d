//! One alert per (rule, subject) per suppression window; later occurrences are counted into
//! the open one.

use super::{AuditState, EntryId, Finding, Params, Rule, Severity};
use crate::clock::{EpochMs, rfc3339};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `tollgate_alert` schema version of [`Alert`].
pub const ALERT_SCHEMA: u32 = 1;

/// The open alert of one (rule, subject).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppression {
    pub rule: Rule,
    pub subject: String,
    pub severity: Severity,
    /// When the alert went out.
    pub opened_at: EpochMs,
    /// Findings of the same (rule, subject) before this are counted, not sent.
    pub until: EpochMs,
    pub first_seen: EpochMs,
    pub last_seen: EpochMs,
    /// Findings counted into this alert, the first included.
    pub occurrences: u64,
    /// Request ids: the alert's evidence plus later occurrences', at most `evidence_max`
    /// newest.
    pub evidence: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The alert as it was published (what `tollgate alerts show` prints), with what the
    /// auto-response did. Absent in entries written before alerts were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<Box<Alert>>,
    /// Findings of other rules about the same subject counted into this alert (grouping).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub related: BTreeMap<Rule, u64>,
}

impl Suppression {
    /// The id operators use for this alert: `<rule>/<subject>` (one open alert per pair).
    pub fn alert_id(&self) -> String {
        alert_id(self.rule, &self.subject)
    }
}

/// `<rule>/<subject>`: names the latest alert of one (rule, subject).
pub fn alert_id(rule: Rule, subject: &str) -> String {
    format!("{}/{subject}", rule.as_str())
}

/// The (rule, subject) an [`alert_id`] names.
pub fn parse_alert_id(id: &str) -> Option<(Rule, String)> {
    let (rule, subject) = id.trim().split_once('/')?;
    let rule = Rule::ALL.iter().copied().find(|r| r.as_str() == rule)?;
    (!subject.is_empty()).then(|| (rule, subject.to_owned()))
}

/// The message published to SNS. Ids and counts only: never a key value or prompt text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub tollgate_alert: u32,
    pub rule: Rule,
    pub subject: String,
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub counts: BTreeMap<String, u64>,
    /// RFC 3339 of the oldest and newest request counted.
    pub first_seen: String,
    pub last_seen: String,
    /// Request ids (look them up in the proxy's audit lines).
    pub evidence: Vec<String>,
    pub networks: Vec<String>,
    /// User agents of the request that opened the alert, for rules that look at them
    /// (`canary_key_used`). Absent otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_agents: Vec<String>,
    /// Further findings of this (rule, subject) before this time are counted, not sent.
    pub suppressed_until: String,
    /// One human paragraph: what happened and the runbook line.
    pub summary: String,
    pub runbook: String,
    /// What the audit function did about it (e.g. `suspended key ABC`), if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
}

impl Alert {
    pub fn from_finding(f: &Finding, until: EpochMs) -> Self {
        let counts = f
            .counts
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ");
        Alert {
            tollgate_alert: ALERT_SCHEMA,
            rule: f.rule,
            subject: f.subject.clone(),
            severity: f.severity,
            tenant: f.tenant.clone(),
            counts: f.counts.clone(),
            first_seen: rfc3339(f.first_seen),
            last_seen: rfc3339(f.at),
            evidence: f.evidence.clone(),
            networks: f.networks.clone(),
            user_agents: f.user_agents.clone(),
            suppressed_until: rfc3339(until),
            summary: format!(
                "[{}] {} on {} ({}) between {} and {}. {}{}",
                f.severity.as_str(),
                f.rule.as_str(),
                f.subject,
                counts,
                rfc3339(f.first_seen),
                rfc3339(f.at),
                f.note
                    .as_deref()
                    .map(|n| format!("{n}. "))
                    .unwrap_or_default(),
                f.rule.runbook()
            ),
            runbook: f.rule.runbook().to_owned(),
            response: None,
        }
    }

    /// The SNS subject line (ASCII, under 100 characters).
    pub fn subject_line(&self) -> String {
        let s = format!(
            "tollgate {} {}: {}",
            self.severity.as_str(),
            self.rule.as_str(),
            self.subject
        );
        s.chars()
            .filter(|c| c.is_ascii() && !c.is_ascii_control())
            .take(99)
            .collect()
    }
}

impl AuditState {
    /// The alert to send for `f`, or none when an alert for its (rule, subject) is open:
    /// then the finding is counted into that one. The suppression entry must be loaded
    /// ([`EntryId::Suppression`]) before this is called.
    pub fn suppress(&mut self, p: &Params, f: &Finding) -> Option<Alert> {
        let id = EntryId::Suppression(f.rule, f.subject.clone());
        self.dirty.insert(id);
        let slot = (f.rule, f.subject.clone());
        if let Some(s) = self.suppressions.get_mut(&slot)
            && f.at < s.until
        {
            s.occurrences += 1;
            s.last_seen = s.last_seen.max(f.at);
            for r in &f.evidence {
                if !s.evidence.contains(r) {
                    s.evidence.push(r.clone());
                }
            }
            let extra = s.evidence.len().saturating_sub(p.evidence_max);
            s.evidence.drain(..extra);
            return None;
        }
        let until = f
            .suppress_until
            .filter(|u| *u > f.at)
            .unwrap_or_else(|| f.at.saturating_add(p.suppression_ms));
        self.suppressions.insert(
            slot,
            Suppression {
                rule: f.rule,
                subject: f.subject.clone(),
                severity: f.severity,
                opened_at: f.at,
                until,
                first_seen: f.first_seen,
                last_seen: f.at,
                occurrences: 1,
                evidence: f.evidence.clone(),
                tenant: f.tenant.clone(),
                alert: None,
                related: BTreeMap::new(),
            },
        );
        Some(Alert::from_finding(f, until))
    }

    /// Like [`Self::suppress`], but first groups: a finding about a key while an alert of
    /// another rule about the same key is open (and at least as severe) is counted into that
    /// alert as a related rule, unless its rule is in `standalone` (rules that respond on
    /// their own, e.g. auto-suspend). The suppression entries of every rule for the subject
    /// must be loaded ([`grouping_ids`]).
    pub fn suppress_related(
        &mut self,
        p: &Params,
        f: &Finding,
        standalone: &std::collections::BTreeSet<Rule>,
    ) -> Option<Alert> {
        let own_open = self
            .suppressions
            .get(&(f.rule, f.subject.clone()))
            .is_some_and(|s| f.at < s.until);
        if p.group_related
            && !own_open
            && !standalone.contains(&f.rule)
            && super::subject_key_id(&f.subject).is_some()
        {
            let host = self
                .suppressions
                .iter_mut()
                .filter(|((r, subj), s)| {
                    *r != f.rule && *subj == f.subject && f.at < s.until && s.severity >= f.severity
                })
                .max_by_key(|(_, s)| (s.severity, s.opened_at));
            if let Some(((r, subj), s)) = host {
                *s.related.entry(f.rule).or_insert(0) += 1;
                s.last_seen = s.last_seen.max(f.at);
                for id in &f.evidence {
                    if !s.evidence.contains(id) {
                        s.evidence.push(id.clone());
                    }
                }
                let extra = s.evidence.len().saturating_sub(p.evidence_max);
                s.evidence.drain(..extra);
                let id = EntryId::Suppression(*r, subj.clone());
                self.dirty.insert(id);
                return None;
            }
        }
        self.suppress(p, f)
    }

    /// Keeps `alert` (as published, auto-response included) in its open suppression entry,
    /// so operators can list and show it (`tollgate alerts`). Call after [`Self::suppress`]
    /// returned it; no extra write (the entry is saved anyway).
    pub fn record_alert(&mut self, alert: &Alert) {
        let slot = (alert.rule, alert.subject.clone());
        if let Some(s) = self.suppressions.get_mut(&slot) {
            s.alert = Some(Box::new(alert.clone()));
            self.dirty
                .insert(EntryId::Suppression(alert.rule, alert.subject.clone()));
        }
    }
}

/// The suppression entries [`AuditState::suppress_related`] needs for `f`: every rule's for a
/// key subject (grouping), only its own otherwise.
pub fn grouping_ids(f: &Finding) -> Vec<EntryId> {
    if super::subject_key_id(&f.subject).is_some() {
        Rule::ALL
            .iter()
            .map(|r| EntryId::Suppression(*r, f.subject.clone()))
            .collect()
    } else {
        vec![EntryId::Suppression(f.rule, f.subject.clone())]
    }
}
