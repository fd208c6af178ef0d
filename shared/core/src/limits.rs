//! Limits per key and per tenant, and the arithmetic that admits and settles a request
//! against them. Pure: the gateway loads a subject's [`Counters`], calls [`admit`], and writes
//! the result back conditionally on the version it read (every instance sees the same stored
//! counters, so the limit holds across instances); when the response ends it calls
//! [`settle`] the same way.
//!
//! Windows are fixed and UTC: the minute (requests and tokens per minute), the day and the
//! month (spend and token budgets). Within a window, accepted ≤ limit exactly. A fixed window
//! lets up to 2 × limit through in a 60-second span that straddles a minute boundary (the
//! last second of one minute and the first of the next); that is the documented worst case.
//!
//! Budgets are reserved at their worst case before forwarding ([`Ask`]) and settled to the
//! provider-reported usage when the response ends, so a budget is never exceeded once
//! reservations are counted — except by a provider reporting more than the reserved maximum.
//! Concurrency is a set of leases (request id → expiry): a request that never settles (a
//! crashed instance) frees its slot when its lease expires.

use crate::clock::EpochMs;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// US dollars × 1,000,000: budgets and prices are integers, so sums are exact.
pub type Micros = u64;

pub const MINUTE_MS: u64 = 60_000;
pub const DAY_MS: u64 = 86_400_000;

/// Each limit is optional; `None` means no limit of that kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    /// Tokens (input + output) per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    /// Requests in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_day_micros: Option<Micros>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_month_micros: Option<Micros>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_day: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_month: Option<u64>,
}

impl Limits {
    /// `over`'s limits where it sets them, else these (tenant defaults ← key overrides).
    pub fn overlay(&self, over: &Limits) -> Limits {
        Limits {
            rpm: over.rpm.or(self.rpm),
            tpm: over.tpm.or(self.tpm),
            concurrency: over.concurrency.or(self.concurrency),
            budget_day_micros: over.budget_day_micros.or(self.budget_day_micros),
            budget_month_micros: over.budget_month_micros.or(self.budget_month_micros),
            tokens_day: over.tokens_day.or(self.tokens_day),
            tokens_month: over.tokens_month.or(self.tokens_month),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }
}

/// Which limit refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    Rpm,
    Tpm,
    Concurrency,
    BudgetDay,
    BudgetMonth,
    TokensDay,
    TokensMonth,
}

impl LimitKind {
    /// A budget (spend or tokens per day/month) rather than a rate: not retryable soon.
    pub fn is_budget(self) -> bool {
        matches!(
            self,
            LimitKind::BudgetDay
                | LimitKind::BudgetMonth
                | LimitKind::TokensDay
                | LimitKind::TokensMonth
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Rpm => "rpm",
            LimitKind::Tpm => "tpm",
            LimitKind::Concurrency => "concurrency",
            LimitKind::BudgetDay => "budget_day",
            LimitKind::BudgetMonth => "budget_month",
            LimitKind::TokensDay => "tokens_day",
            LimitKind::TokensMonth => "tokens_month",
        }
    }
}

/// The UTC windows an instant falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Windows {
    /// Minutes since the epoch.
    pub minute: u64,
    /// Days since the epoch.
    pub day: u64,
    /// Months since January 1970.
    pub month: u64,
}

impl Windows {
    pub fn at(now: EpochMs) -> Self {
        let day = now / DAY_MS;
        let (y, m, _) = civil_from_days(day as i64);
        Self {
            minute: now / MINUTE_MS,
            day,
            month: ((y - 1970) * 12 + (m as i64 - 1)).max(0) as u64,
        }
    }

    /// When the window of `kind` that holds `now` ends.
    pub fn reset_at(kind: LimitKind, now: EpochMs) -> EpochMs {
        match kind {
            LimitKind::Rpm | LimitKind::Tpm => (now / MINUTE_MS + 1) * MINUTE_MS,
            LimitKind::Concurrency => now,
            LimitKind::BudgetDay | LimitKind::TokensDay => (now / DAY_MS + 1) * DAY_MS,
            LimitKind::BudgetMonth | LimitKind::TokensMonth => {
                let (y, m, _) = civil_from_days((now / DAY_MS) as i64);
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                days_from_civil(ny, nm, 1).max(0) as u64 * DAY_MS
            }
        }
    }
}

/// Howard Hinnant's civil-from-days: (year, month 1..=12, day 1..=31).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// One subject's counters as stored. Each group belongs to the window it names; a group from
/// an older window counts as zero.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    #[serde(default)]
    pub minute: u64,
    #[serde(default)]
    pub requests: u64,
    #[serde(default)]
    pub tokens_minute: u64,
    #[serde(default)]
    pub day: u64,
    #[serde(default)]
    pub spend_day: Micros,
    #[serde(default)]
    pub tokens_day: u64,
    #[serde(default)]
    pub month: u64,
    #[serde(default)]
    pub spend_month: Micros,
    #[serde(default)]
    pub tokens_month: u64,
    /// Requests in flight: request id → lease expiry.
    #[serde(default)]
    pub inflight: BTreeMap<String, EpochMs>,
}

impl Counters {
    /// The counters as they stand at `now`: groups of past windows reset, expired leases gone.
    /// A group stored under a *later* window than `now`'s (this instance's clock is behind
    /// the one that wrote it) is kept as it is: resetting it would erase the newer window's
    /// count at every boundary.
    pub fn current(&self, now: EpochMs) -> Counters {
        let w = Windows::at(now);
        let mut c = self.clone();
        if c.minute < w.minute {
            c.minute = w.minute;
            c.requests = 0;
            c.tokens_minute = 0;
        }
        if c.day < w.day {
            c.day = w.day;
            c.spend_day = 0;
            c.tokens_day = 0;
        }
        if c.month < w.month {
            c.month = w.month;
            c.spend_month = 0;
            c.tokens_month = 0;
        }
        c.inflight.retain(|_, exp| *exp > now);
        c
    }
}

/// What one request reserves: its worst case.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ask {
    pub tokens: u64,
    pub spend: Micros,
}

/// Why a request was not admitted, described for the caller's `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitRefusal {
    pub kind: LimitKind,
    pub limit: u64,
    pub remaining: u64,
    pub reset_at: EpochMs,
}

fn check(
    kind: LimitKind,
    limit: Option<u64>,
    used: u64,
    want: u64,
    now: EpochMs,
) -> Result<(), LimitRefusal> {
    match limit {
        Some(l) if used.saturating_add(want) > l => Err(LimitRefusal {
            kind,
            limit: l,
            remaining: l.saturating_sub(used),
            reset_at: Windows::reset_at(kind, now),
        }),
        _ => Ok(()),
    }
}

/// Admits `ask` for `request_id` against `limits` given the stored counters: the counters to
/// write back, or the first limit that refuses (rates before budgets). `lease_ms` bounds how
/// long a concurrency slot is held by a request that never settles.
pub fn admit(
    limits: &Limits,
    stored: &Counters,
    ask: &Ask,
    request_id: &str,
    now: EpochMs,
    lease_ms: u64,
) -> Result<Counters, LimitRefusal> {
    let mut c = stored.current(now);
    check(LimitKind::Rpm, limits.rpm, c.requests, 1, now)?;
    check(LimitKind::Tpm, limits.tpm, c.tokens_minute, ask.tokens, now)?;
    if let Some(l) = limits.concurrency
        && c.inflight.len() as u64 >= l
    {
        let reset_at = c.inflight.values().copied().min().unwrap_or(now);
        return Err(LimitRefusal {
            kind: LimitKind::Concurrency,
            limit: l,
            remaining: 0,
            reset_at,
        });
    }
    check(
        LimitKind::BudgetDay,
        limits.budget_day_micros,
        c.spend_day,
        ask.spend,
        now,
    )?;
    check(
        LimitKind::BudgetMonth,
        limits.budget_month_micros,
        c.spend_month,
        ask.spend,
        now,
    )?;
    check(
        LimitKind::TokensDay,
        limits.tokens_day,
        c.tokens_day,
        ask.tokens,
        now,
    )?;
    check(
        LimitKind::TokensMonth,
        limits.tokens_month,
        c.tokens_month,
        ask.tokens,
        now,
    )?;
    c.requests += 1;
    c.tokens_minute += ask.tokens;
    c.spend_day += ask.spend;
    c.spend_month += ask.spend;
    c.tokens_day += ask.tokens;
    c.tokens_month += ask.tokens;
    // Every admission holds a lease, limited concurrency or not: it is also the marker that
    // the request is still to be settled, so a settlement replayed (a retried write) finds it
    // gone and changes nothing.
    c.inflight
        .insert(request_id.to_owned(), now.saturating_add(lease_ms));
    Ok(c)
}

/// Replaces a reservation made in `reserved_in` by what the request actually used, and frees
/// its concurrency slot. A window that has closed since the reservation keeps what it
/// counted (nothing can be admitted into it any more); only windows still open are
/// corrected. Never goes below zero.
pub fn settle(
    stored: &Counters,
    reserved: &Ask,
    reserved_in: Windows,
    actual: &Ask,
    request_id: &str,
    now: EpochMs,
) -> Counters {
    // Settled already (its lease is gone): nothing to replace. A lease past its expiry still
    // marks the request as unsettled while it is stored, as for the delta form.
    if !stored.inflight.contains_key(request_id) {
        return stored.current(now);
    }
    let mut c = stored.current(now);
    c.inflight.remove(request_id);
    let adjust = |v: &mut u64, reserved: u64, actual: u64| {
        *v = v.saturating_sub(reserved).saturating_add(actual);
    };
    if c.minute == reserved_in.minute {
        adjust(&mut c.tokens_minute, reserved.tokens, actual.tokens);
    }
    if c.day == reserved_in.day {
        adjust(&mut c.spend_day, reserved.spend, actual.spend);
        adjust(&mut c.tokens_day, reserved.tokens, actual.tokens);
    }
    if c.month == reserved_in.month {
        adjust(&mut c.spend_month, reserved.spend, actual.spend);
        adjust(&mut c.tokens_month, reserved.tokens, actual.tokens);
    }
    c
}

/// A settlement as changes to the counters rather than a whole new state: what [`settle`]
/// does, expressed so a store can apply it without knowing the stored state (DynamoDB: `ADD`
/// the differences, `REMOVE` the lease). Deltas commute with every other write, so a
/// settlement written this way cannot lose a version race. Each group carries the window it
/// corrects and is applied only while the stored group is still that window; a group whose
/// window has closed by `now` (or whose difference is zero) is left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettleDelta {
    /// The minute window and the change to `tokens_minute`.
    pub minute: Option<(u64, i64)>,
    /// The day window and the changes to `spend_day`, `tokens_day`.
    pub day: Option<(u64, i64, i64)>,
    /// The month window and the changes to `spend_month`, `tokens_month`.
    pub month: Option<(u64, i64, i64)>,
    /// The request whose lease is freed; the delta applies only while that lease is stored
    /// (so a replayed settlement changes nothing).
    pub release: String,
}

fn diff(actual: u64, reserved: u64) -> i64 {
    let d = i128::from(actual) - i128::from(reserved);
    i64::try_from(d).unwrap_or(if d < 0 { i64::MIN } else { i64::MAX })
}

/// [`settle`] as a [`SettleDelta`], for the windows open at `now`.
pub fn settle_delta(
    reserved: &Ask,
    reserved_in: Windows,
    actual: &Ask,
    request_id: &str,
    now: EpochMs,
) -> SettleDelta {
    let w = Windows::at(now);
    let tokens = diff(actual.tokens, reserved.tokens);
    let spend = diff(actual.spend, reserved.spend);
    SettleDelta {
        minute: (w.minute == reserved_in.minute && tokens != 0)
            .then_some((reserved_in.minute, tokens)),
        day: (w.day == reserved_in.day && (tokens, spend) != (0, 0)).then_some((
            reserved_in.day,
            spend,
            tokens,
        )),
        month: (w.month == reserved_in.month && (tokens, spend) != (0, 0)).then_some((
            reserved_in.month,
            spend,
            tokens,
        )),
        release: request_id.to_owned(),
    }
}

impl SettleDelta {
    /// The stored counters with the delta applied, or `None` when a group it corrects is
    /// stored under another window or the request's lease is not there (settled already:
    /// then nothing may be applied; [`settle`] decides).
    pub fn apply(&self, stored: &Counters) -> Option<Counters> {
        let mut c = stored.clone();
        c.inflight.remove(&self.release)?;
        let add = |v: &mut u64, d: i64| *v = v.saturating_add_signed(d);
        if let Some((m, t)) = self.minute {
            if c.minute != m {
                return None;
            }
            add(&mut c.tokens_minute, t);
        }
        if let Some((d, s, t)) = self.day {
            if c.day != d {
                return None;
            }
            add(&mut c.spend_day, s);
            add(&mut c.tokens_day, t);
        }
        if let Some((m, s, t)) = self.month {
            if c.month != m {
                return None;
            }
            add(&mut c.spend_month, s);
            add(&mut c.tokens_month, t);
        }
        Some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // 2026-01-31T23:59:30Z
    const T: EpochMs = 1_769_903_970_000;

    fn limits() -> Limits {
        Limits {
            rpm: Some(3),
            tpm: Some(1_000),
            concurrency: Some(2),
            budget_day_micros: Some(1_000_000),
            budget_month_micros: Some(5_000_000),
            tokens_day: None,
            tokens_month: None,
        }
    }

    #[test]
    fn windows_and_resets_are_utc() {
        let w = Windows::at(T);
        assert_eq!(w.minute, T / MINUTE_MS);
        assert_eq!(Windows::reset_at(LimitKind::Rpm, T), T + 30_000);
        assert_eq!(Windows::reset_at(LimitKind::BudgetDay, T), T + 30_000);
        // The month ends with January: February 1st 00:00Z.
        assert_eq!(Windows::reset_at(LimitKind::BudgetMonth, T), T + 30_000);
        assert_eq!(Windows::at(T + 30_000).month, w.month + 1);
        // December rolls into the next year.
        let dec = 1_767_225_599_000; // 2025-12-31T23:59:59Z
        assert_eq!(Windows::reset_at(LimitKind::BudgetMonth, dec), dec + 1_000);
    }

    #[test]
    fn requests_per_minute_are_exact_within_a_window_and_reset_after() {
        let l = Limits {
            rpm: Some(3),
            ..Limits::default()
        };
        let mut c = Counters::default();
        for i in 0..3 {
            c = admit(&l, &c, &Ask::default(), &format!("r{i}"), T, 60_000).unwrap();
        }
        let r = admit(&l, &c, &Ask::default(), "r3", T, 60_000).unwrap_err();
        assert_eq!((r.kind, r.limit, r.remaining), (LimitKind::Rpm, 3, 0));
        assert_eq!(r.reset_at, T + 30_000);
        assert!(admit(&l, &c, &Ask::default(), "r3", T + 30_000, 60_000).is_ok());
    }

    #[test]
    fn a_slow_clock_never_erases_a_newer_window() {
        let l = Limits {
            rpm: Some(2),
            ..Limits::default()
        };
        // Written by an instance already in the next minute.
        let ahead = T + 30_000;
        let c = admit(
            &l,
            &Counters::default(),
            &Ask::default(),
            "a",
            ahead,
            60_000,
        )
        .unwrap();
        let c = admit(&l, &c, &Ask::default(), "b", ahead, 60_000).unwrap();
        // An instance whose clock is 30 s behind, still in the previous minute, sees the
        // newer count instead of resetting it.
        let behind = ahead - 30_000;
        assert!(Windows::at(behind).minute < c.minute);
        let r = admit(&l, &c, &Ask::default(), "c", behind, 60_000).unwrap_err();
        assert_eq!(r.kind, LimitKind::Rpm);
    }

    #[test]
    fn concurrency_leases_free_on_settle_or_expiry() {
        let l = Limits {
            concurrency: Some(1),
            ..Limits::default()
        };
        let a = Ask::default();
        let c = admit(&l, &Counters::default(), &a, "r1", T, 10_000).unwrap();
        let r = admit(&l, &c, &a, "r2", T, 10_000).unwrap_err();
        assert_eq!(r.kind, LimitKind::Concurrency);
        let freed = settle(&c, &a, Windows::at(T), &a, "r1", T + 1);
        assert!(admit(&l, &freed, &a, "r2", T + 1, 10_000).is_ok());
        // A request that never settles frees its slot when the lease ends.
        assert!(admit(&l, &c, &a, "r2", T + 10_000, 10_000).is_ok());
    }

    #[test]
    fn a_budget_refusal_says_budget_and_resets_with_the_day() {
        let ask = Ask {
            tokens: 10,
            spend: 600_000,
        };
        let c = admit(&limits(), &Counters::default(), &ask, "a", T, 60_000).unwrap();
        let r = admit(&limits(), &c, &ask, "b", T, 60_000).unwrap_err();
        assert_eq!(r.kind, LimitKind::BudgetDay);
        assert!(r.kind.is_budget());
        assert_eq!(r.remaining, 400_000);
    }

    #[test]
    fn settlement_replaces_the_reservation_with_actual_usage() {
        let ask = Ask {
            tokens: 500,
            spend: 900_000,
        };
        let c = admit(&limits(), &Counters::default(), &ask, "a", T, 60_000).unwrap();
        let used = Ask {
            tokens: 120,
            spend: 100_000,
        };
        let s = settle(&c, &ask, Windows::at(T), &used, "a", T + 1_000);
        assert_eq!(
            (s.tokens_minute, s.spend_day, s.spend_month),
            (120, 100_000, 100_000)
        );
        assert!(s.inflight.is_empty());
        // A failure before any output releases everything.
        let released = settle(&c, &ask, Windows::at(T), &Ask::default(), "a", T + 1_000);
        assert_eq!((released.tokens_minute, released.spend_day), (0, 0));
        assert_eq!(released.requests, 1, "the request itself still counts");
    }

    #[test]
    fn a_closed_window_keeps_what_it_counted() {
        let ask = Ask {
            tokens: 500,
            spend: 10,
        };
        let c = admit(&limits(), &Counters::default(), &ask, "a", T, 60_000).unwrap();
        // Settled 45 s later: the minute, day and month have all turned.
        let s = settle(&c, &ask, Windows::at(T), &Ask::default(), "a", T + 45_000);
        assert_eq!((s.tokens_minute, s.spend_day, s.spend_month), (0, 0, 0));
        assert_eq!(s.minute, Windows::at(T + 45_000).minute);
    }

    proptest! {
        /// Under any interleaving of admissions and settlements (success, failure, larger or
        /// smaller usage), the spend counted never exceeds the budget by more than what
        /// providers reported above the reservations, and nothing leaks once all settle.
        #[test]
        fn budgets_hold_and_nothing_leaks(
            ops in proptest::collection::vec((0u64..400_000, 0u64..500_000, any::<bool>()), 1..60)
        ) {
            let l = Limits { budget_day_micros: Some(1_000_000), concurrency: Some(5), ..Limits::default() };
            let mut c = Counters::default();
            let mut open: Vec<(String, Ask, Ask)> = Vec::new();
            let mut overshoot = 0u64;
            let mut settled = 0u64;
            for (i, (reserve, actual, settle_now)) in ops.into_iter().enumerate() {
                let ask = Ask { tokens: 0, spend: reserve };
                let id = format!("r{i}");
                if let Ok(next) = admit(&l, &c, &ask, &id, T, 60_000) {
                    c = next;
                    open.push((id, ask, Ask { tokens: 0, spend: actual }));
                }
                prop_assert!(c.inflight.len() <= 5);
                if settle_now && let Some((id, ask, used)) = open.pop() {
                    overshoot += used.spend.saturating_sub(ask.spend);
                    settled += used.spend;
                    c = settle(&c, &ask, Windows::at(T), &used, &id, T);
                }
                prop_assert!(c.spend_day <= 1_000_000 + overshoot);
            }
            for (id, ask, used) in open.drain(..) {
                c = settle(&c, &ask, Windows::at(T), &used, &id, T);
                settled += used.spend;
            }
            prop_assert!(c.inflight.is_empty());
            prop_assert_eq!(c.spend_day, settled, "every reservation replaced by its usage");
        }

        /// A settlement replayed (a retried write) changes nothing, in either form.
        #[test]
        fn a_replayed_settlement_changes_nothing(reserve in 0u64..400_000, actual in 0u64..500_000, tokens in 0u64..5_000) {
            let l = Limits { budget_day_micros: Some(1_000_000), ..Limits::default() };
            let ask = Ask { tokens, spend: reserve };
            let used = Ask { tokens: tokens / 2, spend: actual };
            let c = admit(&l, &Counters::default(), &ask, "r", T, 60_000).unwrap_or_default();
            let once = settle(&c, &ask, Windows::at(T), &used, "r", T);
            prop_assert_eq!(&settle(&once, &ask, Windows::at(T), &used, "r", T), &once);
            let delta = settle_delta(&ask, Windows::at(T), &used, "r", T);
            let applied = delta.apply(&c);
            prop_assert_eq!(applied.as_ref().map(|a| a.current(T)), Some(once.current(T)));
            prop_assert_eq!(applied.and_then(|a| delta.apply(&a)), None);
        }

        /// The delta form of a settlement gives the same counters as [`settle`] whenever it
        /// applies, in any order of admissions and settlements, at any time after the
        /// admission (windows that closed meanwhile included); and it applies whenever the
        /// stored windows are the admission's.
        #[test]
        fn a_settlement_delta_equals_the_settlement(
            ops in proptest::collection::vec(
                (0u64..400_000, 0u64..500_000, 0u64..3_000, 0u64..3_000, any::<bool>(), 0u64..200_000),
                1..40,
            )
        ) {
            let l = Limits { tpm: Some(50_000), budget_day_micros: Some(5_000_000), concurrency: Some(8), ..Limits::default() };
            let mut c = Counters::default();
            let mut open: Vec<(String, Ask, Ask, EpochMs)> = Vec::new();
            let mut now = T - 20_000;
            for (i, (reserve, actual, rt, at, settle_now, step)) in ops.into_iter().enumerate() {
                now += step;
                let ask = Ask { tokens: rt, spend: reserve };
                let id = format!("r{i}");
                if let Ok(next) = admit(&l, &c, &ask, &id, now, 600_000) {
                    c = next;
                    open.push((id, ask, Ask { tokens: at, spend: actual }, now));
                }
                if settle_now && let Some((id, ask, used, admitted)) = open.pop() {
                    let whole = settle(&c, &ask, Windows::at(admitted), &used, &id, now);
                    let delta = settle_delta(&ask, Windows::at(admitted), &used, &id, now);
                    let same_windows = Windows::at(admitted) == Windows::at(now)
                        && (c.minute, c.day, c.month) == (Windows::at(now).minute, Windows::at(now).day, Windows::at(now).month);
                    match delta.apply(&c) {
                        Some(d) => prop_assert_eq!(d.current(now), whole.current(now)),
                        None => prop_assert!(!same_windows, "a delta on the admission's windows applies"),
                    }
                    c = whole;
                }
            }
        }
    }
}
