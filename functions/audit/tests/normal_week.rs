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
//! phone hotspot after the learning period. It goes through the handler as real `awslogs`
//! payloads in subscription-sized batches, with in-memory state and sink.
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
    (keys, events)
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
    println!(
        "normal week: {lines} audit lines in {batches} batches, {} alerts",
        alerts.len()
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
