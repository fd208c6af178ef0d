//! A replayed week of ordinary traffic raises no alert.
//!
//! The traffic is generated (seeded, so every run replays the same week) with what a real
//! gateway sees: daily and weekly cycles (busy working hours, quiet nights, a slow weekend),
//! keys that appear mid-week (learning starts at their first use), keys used from two or
//! three networks (office, VPN over IPv6, CI egress), and the ordinary noise: typos in keys
//! (bad checksums), calls without a key, a deleted key still configured in a cron job
//! (unknown key every five minutes all week), developers trying a model their key is not
//! scoped for, a CIDR-restricted key used once from outside, a secret pasted into a prompt
//! now and then, an isolated pool failure, rate-limit refusals, and one-off requests from a
//! phone hotspot after the learning period. Served requests carry a cost and go to one of a
//! pool's three provider tokens; now and then a token answers a 5xx and the request fails
//! over to another (an ordinary retry). Every third key has a daily spend budget and the
//! tenant has one, sized at 1.6–3× (keys) and 2× (tenant) of an ordinary weekday's spend, so
//! the budget burn-rate rule sees a week of office-hours spend. It goes through the handler
//! as real `awslogs` payloads in subscription-sized batches, with in-memory state and sink.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Batch, logs_event};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use tollgate_audit::Processor;
use tollgate_core::detect::Params;
use tollgate_core::reason::Reason;
use tollgate_memory::audit::{MemoryAlertSink, MemoryAuditState};

const MIN: u64 = 60_000;
const HOUR: u64 = 60 * MIN;
const DAY: u64 = 24 * HOUR;
/// Monday 2026-01-05 00:00 UTC.
const T0: u64 = 1_767_571_200_000;

struct Key {
    id: String,
    /// Networks it is used from, with the share of its traffic.
    ips: Vec<String>,
    /// Requests per busy hour.
    rate: f64,
    /// First day of use.
    from_day: u64,
}

/// Busy 08–18 UTC on weekdays, quiet nights, a slow weekend.
fn activity(t: u64) -> f64 {
    let day = (t - T0) / DAY;
    let hour = ((t - T0) % DAY) / HOUR;
    let daily = match hour {
        8..=17 => 1.0,
        6 | 7 | 18..=21 => 0.35,
        _ => 0.05,
    };
    let weekly = if day >= 5 { 0.15 } else { 1.0 };
    daily * weekly
}

fn keys(rng: &mut StdRng) -> Vec<Key> {
    (0..26)
        .map(|i| {
            let office = format!(
                "10.{}.{}.{}",
                10 + i % 5,
                rng.gen_range(0..250),
                rng.gen_range(1..250)
            );
            let vpn = format!(
                "2001:db8:{:x}:{:x}::{:x}",
                100 + i % 5,
                rng.gen_range(0..9000),
                rng.gen_range(1..9000)
            );
            let ci = format!("172.16.{}.{}", 40 + i % 3, rng.gen_range(1..250));
            let ips = match i % 3 {
                0 => vec![office],
                1 => vec![office, vpn],
                _ => vec![office, vpn, ci],
            };
            Key {
                id: format!("WEEKKEY{i:05}"),
                ips,
                rate: rng.gen_range(4.0..40.0),
                // 20 keys from the start, 6 appear on days 1..=5.
                from_day: if i < 20 { 0 } else { 1 + (i as u64 - 20) % 5 },
            }
        })
        .collect()
}

fn reason_of_served(rng: &mut StdRng) -> Reason {
    match rng.gen_range(0..1000) {
        0..=3 => Reason::LimitRpm,
        4 => Reason::UpstreamTimeout,
        5 => Reason::ClientDisconnected,
        _ => Reason::Ok,
    }
}

/// The week's audit lines as subscription events, in time order.
fn normal_week() -> (Vec<Key>, Vec<common::Event>) {
    let mut rng = StdRng::seed_from_u64(20260105);
    let keys = keys(&mut rng);
    let mut b = Batch::default();

    for minute in 0..(7 * 24 * 60) {
        let t = T0 + minute * MIN;
        let day = minute / (24 * 60);
        let a = activity(t);
        for k in &keys {
            if day < k.from_day {
                continue;
            }
            // Poisson-ish: this minute's expected requests.
            let expected = k.rate * a / 60.0;
            let mut n = expected.floor() as u64;
            if rng.gen_bool((expected - expected.floor()).clamp(0.0, 1.0)) {
                n += 1;
            }
            for j in 0..n {
                let ip = &k.ips[rng.gen_range(0..k.ips.len())];
                b.line(
                    t + j * 997 % MIN,
                    reason_of_served(&mut rng),
                    Some(&k.id),
                    ip,
                );
            }
            // Noise around this key, scaled by activity.
            if rng.gen_bool((a * 0.004).min(1.0)) {
                // A typo: one to three bad checksums from a usual network.
                for j in 0..rng.gen_range(1..=3) {
                    b.line(t + 5_000 * j, Reason::BadChecksum, None, &k.ips[0]);
                }
            }
            if rng.gen_bool((a * 0.002).min(1.0)) {
                // Trying a model the key is not scoped for, once or twice.
                for j in 0..rng.gen_range(1..=2) {
                    b.line(
                        t + 7_000 * j,
                        Reason::ModelNotAllowed,
                        Some(&k.id),
                        &k.ips[0],
                    );
                }
            }
            if rng.gen_bool((a * 0.0005).min(1.0)) {
                b.line(
                    t + 11_000,
                    Reason::SensitiveDataBlocked,
                    Some(&k.id),
                    &k.ips[0],
                );
            }
            if day >= k.from_day + 3 && rng.gen_bool((a * 0.0005).min(1.0)) {
                // A one-off check from a phone hotspot.
                let hotspot = format!(
                    "100.{}.{}.{}",
                    64 + rng.gen_range(0..60),
                    rng.gen_range(0..255),
                    rng.gen_range(1..255)
                );
                for j in 0..rng.gen_range(1..=2) {
                    b.line(t + 13_000 * j, Reason::Ok, Some(&k.id), &hotspot);
                }
            }
        }
        // A deleted key still in a cron job, every five minutes.
        if minute % 5 == 0 {
            b.line(
                t + 3_000,
                Reason::UnknownKey,
                Some("DELETEDKEY01"),
                "172.16.40.9",
            );
        }
        // A curl without a key now and then.
        if rng.gen_bool(a * 0.01) {
            b.line(t + 17_000, Reason::MissingKey, None, "10.12.3.4");
        }
        // An isolated pool failure a few times a day.
        if rng.gen_bool(0.002) {
            b.line(
                t + 19_000,
                Reason::AllTokensFailed,
                Some(&keys[0].id),
                &keys[0].ips[0],
            );
        }
        // A CIDR-restricted key used once from outside, about once a day.
        if rng.gen_bool(1.0 / 1440.0) {
            b.line(
                t + 23_000,
                Reason::SourceNotAllowed,
                Some(&keys[1].id),
                "192.0.2.77",
            );
        }
    }

    let mut events = b.take();
    events.sort_by_key(|e| e.timestamp);
    spend_and_tokens(&keys, &mut events, &mut rng);
    (keys, events)
}

/// Units of activity in one weekday (see [`activity`]): the daily spend a budget is sized on.
const WEEKDAY_UNITS: f64 = 6.0 * 0.05 + 2.0 * 0.35 + 10.0 + 4.0 * 0.35 + 2.0 * 0.05;
/// Average cost of a request, in millionths of a dollar.
const COST_MICROS: u64 = 4_000;

/// Gives served lines a cost, provider tokens (with the odd failover) and, for budgeted keys
/// and the tenant, their daily budget and the day's spend before the request, as the proxy's
/// limit stage would see it.
fn spend_and_tokens(keys: &[Key], events: &mut [common::Event], rng: &mut StdRng) {
    use std::collections::BTreeMap;
    use tollgate_core::audit::{AttemptOutcome, AuditRecord, BudgetPeriod, BudgetScope, BudgetUse};
    let daily = |k: &Key| k.rate * WEEKDAY_UNITS * COST_MICROS as f64;
    let key_budgets: BTreeMap<&str, u64> = keys
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 == 0)
        .map(|(i, k)| {
            (
                k.id.as_str(),
                (daily(k) * (1.6 + (i % 5) as f64 * 0.35)) as u64,
            )
        })
        .collect();
    let tenant_budget = (keys.iter().map(daily).sum::<f64>() * 2.0) as u64;
    let tokens = ["openai-1", "openai-2", "openai-3"];
    let mut spent: BTreeMap<(String, u64), u64> = BTreeMap::new();
    let mut tenant_spent: BTreeMap<u64, u64> = BTreeMap::new();
    for (n, e) in events.iter_mut().enumerate() {
        let Some(mut r) = AuditRecord::from_line(&e.message) else {
            continue;
        };
        let day = e.timestamp / DAY;
        let window_end_ms = (day + 1) * DAY;
        r.pool = Some("openai".into());
        let t = tokens[n % 3];
        match r.reason {
            Reason::Ok | Reason::ClientDisconnected => {
                if rng.gen_bool(0.004) {
                    // A 5xx from one token, answered by the next.
                    r.note_attempt(t, AttemptOutcome::Transient);
                    r.note_attempt(tokens[(n + 1) % 3], AttemptOutcome::Ok);
                    r.attempts = 2;
                    r.token_id = Some(tokens[(n + 1) % 3].into());
                } else {
                    r.attempts = 1;
                    r.token_id = Some(t.into());
                }
                let key = r.key_id.clone().unwrap_or_default();
                let cost = rng.gen_range(COST_MICROS / 2..COST_MICROS * 3 / 2);
                r.cost_usd = Some(cost as f64 / 1e6);
                let mine = spent.entry((key.clone(), day)).or_default();
                if let Some(budget) = key_budgets.get(key.as_str()) {
                    r.budgets.push(BudgetUse {
                        scope: BudgetScope::Key,
                        period: BudgetPeriod::Day,
                        budget_micros: *budget,
                        spent_micros: *mine,
                        window_end_ms,
                    });
                }
                *mine += cost;
                let ours = tenant_spent.entry(day).or_default();
                r.budgets.push(BudgetUse {
                    scope: BudgetScope::Tenant,
                    period: BudgetPeriod::Day,
                    budget_micros: tenant_budget,
                    spent_micros: *ours,
                    window_end_ms,
                });
                *ours += cost;
            }
            Reason::UpstreamTimeout => {
                r.note_attempt(t, AttemptOutcome::Transient);
                r.note_attempt(tokens[(n + 1) % 3], AttemptOutcome::Transient);
                r.attempts = 2;
                r.token_id = Some(tokens[(n + 1) % 3].into());
            }
            Reason::AllTokensFailed => {
                for t in tokens {
                    r.note_attempt(t, AttemptOutcome::Transient);
                }
                r.attempts = 3;
                r.token_id = Some(tokens[2].into());
            }
            _ => continue,
        }
        e.message = r.to_line();
    }
}

/// Replays `events` in batches of 500; returns (audit lines, batches, alerts).
async fn replay(events: &[common::Event]) -> (u64, u64, Vec<tollgate_core::detect::Alert>) {
    let state = Arc::new(MemoryAuditState::new());
    let sink = Arc::new(MemoryAlertSink::new());
    let p = Processor::new(state, sink.clone(), Params::default());
    let mut lines = 0;
    let mut batches = 0;
    for chunk in events.chunks(500) {
        let r = p
            .handle_event(logs_event("DATA_MESSAGE", chunk))
            .await
            .unwrap();
        lines += r.audit_lines;
        batches += 1;
    }
    (lines, batches, sink.alerts())
}

#[tokio::test]
async fn a_normal_week_raises_no_alert() {
    let (_, events) = normal_week();
    let (lines, batches, alerts) = replay(&events).await;
    let budgeted = events
        .iter()
        .filter(|e| e.message.contains("\"budgets\""))
        .count();
    let failovers = events
        .iter()
        .filter(|e| e.message.contains("\"upstream\""))
        .count();
    println!(
        "normal week: {lines} audit lines in {batches} batches ({budgeted} under a spend budget, {failovers} with a failed upstream attempt), {} alerts",
        alerts.len()
    );
    assert!(
        budgeted > 10_000,
        "the burn-rate rule is exercised: {budgeted}"
    );
    assert!(lines > 30_000, "a week of traffic, not a sample: {lines}");
    let fired: Vec<(String, String)> = alerts
        .iter()
        .map(|a| (a.rule.to_string(), a.subject.clone()))
        .collect();
    assert!(fired.is_empty(), "a normal week raised alerts: {fired:?}");
}

#[tokio::test]
async fn the_same_week_with_a_key_stolen_on_thursday_raises_exactly_that_alert() {
    // The control for the test above: the week is not too quiet to trip a rule.
    let (keys, mut events) = normal_week();
    let victim = &keys[4].id;
    let mut b = Batch::default();
    let thursday = T0 + 3 * DAY + 14 * HOUR;
    for i in 0..60 {
        b.line(
            thursday + i * 30_000,
            Reason::Ok,
            Some(victim),
            "45.33.12.99",
        );
    }
    for e in &mut b.events {
        e.id = format!("attack-{}", e.id);
    }
    events.extend(b.take());
    events.sort_by_key(|e| e.timestamp);
    let (_, _, alerts) = replay(&events).await;
    let fired: Vec<(String, String)> = alerts
        .iter()
        .map(|a| (a.rule.to_string(), a.subject.clone()))
        .collect();
    assert_eq!(
        fired,
        vec![("key_new_network".to_owned(), format!("key:{victim}"))]
    );
}
