//! Per-key rate baselines: requests, tokens and spend of a key per hour against its own past.
//!
//! A key's entry counts its served requests, tokens (in + out) and spend in the current UTC
//! hour. When an hour ends (the first line of a later hour arrives), its totals are folded
//! into exponentially weighted moving mean and variance estimates: the request count into the
//! slot of its hour of the week (168 slots, so Monday 09:00 is compared with past Mondays
//! 09:00) and all three into all-hours estimates; hours with no traffic in between fold in
//! as zeros. A slot with fewer than `rate_min_slot_samples` samples falls back to the
//! all-hours estimate.
//!
//! [`Rule::KeyRateSpike`] fires while an hour is still counting, as soon as a metric passes
//! `max(floor, mean + k·sd, ratio·mean)`, after the key has `rate_min_history_hours` of
//! history. The floor keeps quiet keys from alarming on a handful of requests.
//!
//! Idempotent: the state remembers the newest (time, event id) it counted and skips lines at
//! or before it, so a retried batch counts nothing twice (a line delivered after a newer one
//! of the same key was counted is not counted: rate totals may run slightly low, never high).
//!
//! Bounded: at most 168 slots of three integers plus a dozen fields per key.

use super::{Finding, Observed, Params, Rule};
use crate::clock::EpochMs;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const HOUR: u64 = 3_600_000;
/// Hours in a week; slot 0 is Monday 00:00–01:00 UTC (the epoch was a Thursday).
const WEEK_HOURS: u64 = 168;
/// Fixed-point scale of stored estimates (integers keep the state `Eq` and its JSON small).
const SCALE: f64 = 1000.0;

/// An exponentially weighted moving mean and variance, in thousandths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Ewm {
    /// Mean × 1000.
    pub m: u64,
    /// Standard deviation × 1000.
    pub sd: u64,
    /// Samples folded in (saturating).
    pub n: u32,
}

impl Ewm {
    pub fn mean(&self) -> f64 {
        self.m as f64 / SCALE
    }
    pub fn sd(&self) -> f64 {
        self.sd as f64 / SCALE
    }

    /// Folds in `x` with weight `alpha` (the first sample sets the mean).
    pub fn fold(&mut self, x: f64, alpha: f64) {
        let (mean, var) = if self.n == 0 {
            (x, 0.0)
        } else {
            let mean = self.mean();
            let var = self.sd() * self.sd();
            let d = x - mean;
            // West's incremental EW variance.
            let new_mean = mean + alpha * d;
            (new_mean, (1.0 - alpha) * (var + alpha * d * d))
        };
        self.m = to_fixed(mean);
        self.sd = to_fixed(var.max(0.0).sqrt());
        self.n = self.n.saturating_add(1);
    }

    /// The level above which `x` is a spike: `max(floor, mean + k·sd, ratio·mean)`.
    pub fn threshold(&self, floor: f64, k: f64, ratio: f64) -> f64 {
        floor
            .max(self.mean() + k * self.sd())
            .max(ratio * self.mean())
    }
}

fn to_fixed(x: f64) -> u64 {
    // `as` saturates for out-of-range floats and maps NaN to 0.
    (x * SCALE).round() as u64
}

/// One key's rate state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RateState {
    /// The hour being counted (hours since the epoch).
    pub hour: u64,
    pub requests: u64,
    pub tokens: u64,
    /// Spend this hour in millionths of a dollar.
    pub cost_micros: u64,
    /// Newest line counted: (time, log event id).
    #[serde(default)]
    pub through: Option<(EpochMs, String)>,
    /// Hour of week (`"0"`…`"167"`, Monday 00:00 UTC first; string keys because the entry
    /// is an internally tagged enum, whose buffering cannot read integer map keys) →
    /// requests per hour.
    #[serde(default)]
    pub slots: BTreeMap<String, Ewm>,
    /// All hours: requests, tokens, spend (millionths of a dollar) per hour.
    pub requests_all: Ewm,
    pub tokens_all: Ewm,
    pub cost_all: Ewm,
    /// Completed hours folded in (the history a spike is judged against).
    pub hours: u32,
}

fn hour_of_week(hour: u64) -> u8 {
    // The epoch (hour 0) was Thursday 00:00 UTC: Monday is 3 days later.
    ((hour + 3 * 24) % WEEK_HOURS) as u8
}

impl RateState {
    /// Folds every completed hour before `hour` in.
    fn roll_to(&mut self, hour: u64, p: &Params) {
        if self.through.is_none() {
            self.hour = hour;
            return;
        }
        if hour <= self.hour {
            return;
        }
        // The hour that just ended, then idle hours as zeros (at most a week of them: after
        // that every slot has decayed the same way).
        let idle = (hour - self.hour - 1).min(WEEK_HOURS);
        let totals = [(self.requests, self.tokens, self.cost_micros)];
        let zeros = std::iter::repeat_n((0, 0, 0), idle as usize);
        for (i, (req, tok, cost)) in totals.into_iter().chain(zeros).enumerate() {
            let h = self.hour + i as u64;
            self.slots
                .entry(hour_of_week(h).to_string())
                .or_default()
                .fold(req as f64, p.rate_slot_alpha);
            self.requests_all.fold(req as f64, p.rate_alpha);
            self.tokens_all.fold(tok as f64, p.rate_alpha);
            self.cost_all.fold(cost as f64, p.rate_alpha);
            self.hours = self.hours.saturating_add(1);
        }
        self.hour = hour;
        self.requests = 0;
        self.tokens = 0;
        self.cost_micros = 0;
    }

    /// The request baseline for the current hour: its slot when learned, else all hours.
    fn request_baseline(&self, p: &Params) -> Ewm {
        match self.slots.get(&hour_of_week(self.hour).to_string()) {
            Some(s) if s.n >= p.rate_min_slot_samples => *s,
            _ => self.requests_all,
        }
    }
}

/// Counts one served line of key `k`; returns a finding when a metric of the current hour
/// passes its threshold (every line above it finds again; suppression keeps one alert).
pub fn observe(st: &mut RateState, p: &Params, ev: &Observed<'_>, k: &str) -> Option<Finding> {
    let fresh = st.through.is_none();
    if super::tokens::seen(&mut st.through, ev.at, ev.event_id) {
        return None;
    }
    if fresh {
        st.hour = ev.at / HOUR;
    } else {
        st.roll_to(ev.at / HOUR, p);
    }
    let rec = ev.record;
    st.requests += 1;
    st.tokens += rec.tokens_in.unwrap_or(0) + rec.tokens_out.unwrap_or(0);
    st.cost_micros += rec
        .cost_usd
        .filter(|c| c.is_finite() && *c > 0.0)
        .map_or(0, |c| (c * 1e6).round() as u64);
    if st.hours < p.rate_min_history_hours {
        return None;
    }
    let req = st.request_baseline(p);
    let checks = [
        (
            "requests",
            st.requests as f64,
            req.threshold(p.rate_floor_requests, p.rate_k_sigma, p.rate_min_ratio),
            req.mean(),
        ),
        (
            "tokens",
            st.tokens as f64,
            st.tokens_all
                .threshold(p.rate_floor_tokens, p.rate_k_sigma, p.rate_min_ratio),
            st.tokens_all.mean(),
        ),
        (
            "cost_micros",
            st.cost_micros as f64,
            st.cost_all.threshold(
                p.rate_floor_cost_usd * 1e6,
                p.rate_k_sigma,
                p.rate_min_ratio,
            ),
            st.cost_all.mean(),
        ),
    ];
    let (metric, value, threshold, mean) = checks.into_iter().find(|(_, v, t, _)| v > t)?;
    let mut counts = BTreeMap::new();
    counts.insert(format!("{metric}_this_hour"), value as u64);
    counts.insert(format!("{metric}_baseline_per_hour"), mean.round() as u64);
    counts.insert(format!("{metric}_threshold"), threshold.round() as u64);
    counts.insert("requests_this_hour".into(), st.requests);
    counts.insert("history_hours".into(), u64::from(st.hours));
    Some(Finding {
        rule: Rule::KeyRateSpike,
        subject: super::key_subject(k),
        severity: Rule::KeyRateSpike.severity(),
        at: ev.at,
        first_seen: (ev.at / HOUR) * HOUR,
        counts,
        evidence: vec![rec.request_id.clone()],
        networks: super::record_network(rec).into_iter().collect(),
        tenant: rec.tenant.clone(),
        user_agents: Vec::new(),
        suppress_until: None,
        note: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ewm_learns_a_steady_rate_and_its_spread() {
        let mut e = Ewm::default();
        for i in 0..200 {
            e.fold(if i % 2 == 0 { 90.0 } else { 110.0 }, 0.1);
        }
        assert!((e.mean() - 100.0).abs() < 2.0, "{}", e.mean());
        assert!((e.sd() - 10.0).abs() < 1.5, "{}", e.sd());
        assert_eq!(e.threshold(0.0, 6.0, 5.0), 5.0 * e.mean());
        assert_eq!(e.threshold(1e6, 6.0, 5.0), 1e6);
    }

    #[test]
    fn hour_of_week_starts_on_monday() {
        // 2026-01-05 00:00 UTC was a Monday.
        assert_eq!(hour_of_week(1_767_571_200_000 / HOUR), 0);
        assert_eq!(hour_of_week(1_767_571_200_000 / HOUR + 167), 167);
        assert_eq!(hour_of_week(1_767_571_200_000 / HOUR + 168), 0);
    }
}
