//! Spend burn rate against a budget ([`Rule::BudgetBurnRate`]).
//!
//! The proxy's audit line carries, for every request admitted under a spend budget, the
//! budget, the window's spend at admission and when the window ends ([`BudgetUse`]). For each
//! budget (a key's or a tenant's, per day or month) this keeps a few samples of the window's
//! spend over the recent past (`burn_day_lookback_ms`, 1 h, for daily budgets;
//! `burn_month_lookback_ms`, 24 h, for monthly ones; one sample per twelfth of it), takes the
//! spend rate over that span, and projects it linearly: the budget runs out at
//! `now + (budget − spent) / rate`. It fires when that is at least `burn_min_early_fraction`
//! of the window before the window ends, within `burn_horizon_fraction` of the window from
//! now, and once `burn_min_used_fraction` of the budget is spent.
//!
//! The spend is the limit stage's own count (the budget's counters, across every instance
//! and, for a tenant budget, every key of the tenant), so the rule needs no sum of its own.
//! Idempotent: a sample is a function of the lines (the newest spend per bucket), so a
//! replayed line changes nothing. Bounded: at most 13 samples per budget.

use super::{Finding, Observed, Params, Rule};
use crate::audit::{BudgetPeriod, BudgetScope, BudgetUse};
use crate::clock::{EpochMs, rfc3339};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

const DAY: u64 = 86_400_000;
/// Samples a lookback span is cut into.
const BUCKETS: u64 = 12;

/// One budget's recent spend: `(time, spent micros)` samples of its current window.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BurnState {
    /// The window the samples belong to (its end); a new window starts over.
    pub window_end: EpochMs,
    pub samples: VecDeque<(EpochMs, u64)>,
}

/// The nominal length of a budget window, for the fractions.
fn period_ms(p: BudgetPeriod) -> u64 {
    match p {
        BudgetPeriod::Day => DAY,
        BudgetPeriod::Month => 30 * DAY,
    }
}

fn lookback(p: &Params, period: BudgetPeriod) -> u64 {
    match period {
        BudgetPeriod::Day => p.burn_day_lookback_ms,
        BudgetPeriod::Month => p.burn_month_lookback_ms,
    }
    .max(BUCKETS)
}

/// The subject of a budget alert: `key:<id>` or `tenant:<id>`.
pub fn budget_subject(
    scope: BudgetScope,
    key_id: Option<&str>,
    tenant: Option<&str>,
) -> Option<String> {
    match scope {
        BudgetScope::Key => key_id.map(super::key_subject),
        BudgetScope::Tenant => tenant.map(|t| format!("tenant:{t}")),
    }
}

impl BurnState {
    /// Adds the spend a line reported; drops samples older than the lookback (keeping the
    /// newest one before it, so the span can reach back the whole lookback).
    fn add(&mut self, at: EpochMs, b: &BudgetUse, look: u64) {
        if b.window_end_ms != self.window_end {
            if b.window_end_ms < self.window_end {
                return; // a late line of a window that has ended
            }
            self.window_end = b.window_end_ms;
            self.samples.clear();
        }
        let bucket = look / BUCKETS;
        match self.samples.back_mut() {
            Some(last) if at < last.0 => return, // older than what is counted: skip
            Some(last) if at / bucket == last.0 / bucket => *last = (at, b.spent_micros),
            _ => self.samples.push_back((at, b.spent_micros)),
        }
        let horizon = at.saturating_sub(look);
        while self.samples.len() > 2 && self.samples.get(1).is_some_and(|s| s.0 <= horizon) {
            self.samples.pop_front();
        }
        while self.samples.len() > BUCKETS as usize + 1 {
            self.samples.pop_front();
        }
    }

    /// Spend per millisecond over the samples, when they span at least half the lookback.
    fn rate(&self, look: u64) -> Option<f64> {
        let (t0, s0) = *self.samples.front()?;
        let (t1, s1) = *self.samples.back()?;
        let span = t1.checked_sub(t0)?;
        (span >= look / 2 && span > 0).then(|| s1.saturating_sub(s0) as f64 / span as f64)
    }
}

/// Counts one line's budgets; returns a finding for each budget whose projection runs out
/// early. `burn` is where the state of the line's budgets of `scope` lives (the key's entry
/// or the tenant's).
pub(super) fn observe(
    burn: &mut BTreeMap<String, BurnState>,
    scope: BudgetScope,
    p: &Params,
    ev: &Observed<'_>,
    out: &mut Vec<Finding>,
) {
    let rec = ev.record;
    for b in rec.budgets.iter().filter(|b| b.scope == scope) {
        let look = lookback(p, b.period);
        let st = match burn.get_mut(b.period.as_str()) {
            Some(s) => s,
            None => burn.entry(b.period.as_str().to_owned()).or_default(),
        };
        st.add(ev.at, b, look);
        let Some(rate) = st.rate(look).filter(|r| *r > 0.0) else {
            continue;
        };
        if b.spent_micros >= b.budget_micros
            || (b.spent_micros as f64) < p.burn_min_used_fraction * b.budget_micros as f64
        {
            continue;
        }
        let left_ms = (b.budget_micros - b.spent_micros) as f64 / rate;
        let len = period_ms(b.period) as f64;
        let ends = b.window_end_ms.saturating_sub(ev.at) as f64;
        if left_ms > p.burn_horizon_fraction * len
            || left_ms > ends - p.burn_min_early_fraction * len
        {
            continue;
        }
        let Some(subject) = budget_subject(scope, rec.key_id.as_deref(), rec.tenant.as_deref())
        else {
            continue;
        };
        let runs_out = ev.at.saturating_add(left_ms as u64);
        let mut counts = BTreeMap::new();
        counts.insert("budget_micros".into(), b.budget_micros);
        counts.insert("spent_micros".into(), b.spent_micros);
        counts.insert(
            "rate_micros_per_hour".into(),
            (rate * 3_600_000.0).round() as u64,
        );
        counts.insert(
            "minutes_to_exhaustion".into(),
            (left_ms / 60_000.0).round() as u64,
        );
        counts.insert(
            "minutes_early".into(),
            ((ends - left_ms) / 60_000.0).round() as u64,
        );
        out.push(Finding {
            rule: Rule::BudgetBurnRate,
            subject,
            severity: Rule::BudgetBurnRate.severity(),
            at: ev.at,
            first_seen: st.samples.front().map_or(ev.at, |s| s.0),
            counts,
            evidence: vec![rec.request_id.clone()],
            networks: super::record_network(rec).into_iter().collect(),
            tenant: rec.tenant.clone(),
            user_agents: Vec::new(),
            // One alert per budget window: the projection holds until the window resets.
            suppress_until: Some(b.window_end_ms),
            note: Some(format!(
                "{} {} budget of ${:.2}: ${:.2} spent, at ${:.2}/h it runs out at {}, {} min before the window resets at {}",
                match scope {
                    BudgetScope::Key => "key",
                    BudgetScope::Tenant => "tenant",
                },
                b.period.as_str(),
                b.budget_micros as f64 / 1e6,
                b.spent_micros as f64 / 1e6,
                rate * 3_600_000.0 / 1e6,
                rfc3339(runs_out),
                ((ends - left_ms) / 60_000.0).round() as u64,
                rfc3339(b.window_end_ms),
            )),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditRecord;

    const H: u64 = 3_600_000;
    /// 2026-01-05 00:00 UTC.
    const T0: u64 = 1_767_571_200_000;

    fn line(at: u64, spent: u64, budget: u64) -> AuditRecord {
        let mut r = AuditRecord::new(format!("r{at}"), at);
        r.key_id = Some("K".into());
        r.budgets.push(BudgetUse {
            scope: BudgetScope::Key,
            period: BudgetPeriod::Day,
            budget_micros: budget,
            spent_micros: spent,
            window_end_ms: T0 + DAY,
        });
        r
    }

    fn run(points: &[(u64, u64)], budget: u64) -> Vec<Finding> {
        let p = Params::default();
        let mut burn = BTreeMap::new();
        let mut out = Vec::new();
        for (i, (at, spent)) in points.iter().enumerate() {
            let r = line(*at, *spent, budget);
            let id = format!("e{i}");
            observe(
                &mut burn,
                BudgetScope::Key,
                &p,
                &Observed {
                    event_id: &id,
                    at: *at,
                    record: &r,
                },
                &mut out,
            );
        }
        out
    }

    #[test]
    fn a_rate_that_runs_out_hours_early_fires() {
        // $4/h from 06:00, $40 budget: half spent by 11:00, out at 16:00.
        let pts: Vec<(u64, u64)> = (0..=60)
            .map(|m| (T0 + 6 * H + m * 5 * 60_000, 4_000_000 * 5 + m * 333_333))
            .collect();
        let f = run(&pts, 40_000_000);
        assert!(!f.is_empty());
        assert_eq!(f[0].rule, Rule::BudgetBurnRate);
        assert_eq!(f[0].subject, "key:K");
        assert_eq!(f[0].suppress_until, Some(T0 + DAY));
    }

    #[test]
    fn a_rate_that_fits_the_budget_stays_quiet() {
        // $1/h all day against $40: never runs out.
        let pts: Vec<(u64, u64)> = (0..288)
            .map(|m| (T0 + m * 5 * 60_000, m * 83_333))
            .collect();
        assert!(run(&pts, 40_000_000).is_empty());
    }

    #[test]
    fn a_short_burst_without_history_does_not_project() {
        // Ten minutes of spending at 01:00: not half the lookback.
        let pts: Vec<(u64, u64)> = (0..10)
            .map(|m| (T0 + H + m * 60_000, 20_000_000 + m * 1_000_000))
            .collect();
        assert!(run(&pts, 40_000_000).is_empty());
    }

    #[test]
    fn a_new_window_starts_over() {
        let mut st = BurnState::default();
        let mut b = line(T0, 5, 10).budgets[0];
        st.add(T0, &b, H);
        b.window_end_ms += DAY;
        st.add(T0 + DAY + 1, &b, H);
        assert_eq!(st.samples.len(), 1);
        assert_eq!(st.window_end, T0 + 2 * DAY);
    }
}
