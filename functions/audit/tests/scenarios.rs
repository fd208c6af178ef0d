//! Attack scenarios replayed as real `awslogs` subscription events through the audit
//! function's handler, with the real AWS SDK against the local AWS emulator: detector state
//! in a DynamoDB table, alerts published to an SNS topic and read back from an SQS queue
//! subscribed to it (raw delivery). Each scenario raises exactly one alert with the right
//! rule and subject; bad input raises none and fails nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Batch, Event, logs_event};
use std::sync::Arc;
use tollgate_audit::Processor;
use tollgate_aws::{DynamoAuditState, SnsAlertSink};
use tollgate_core::detect::port::AlertHistory;
use tollgate_core::detect::{Alert, Params, Rule};
use tollgate_core::reason::Reason;
use tollgate_testkit::unique_ns;

const MIN: u64 = 60_000;
const HOUR: u64 = 60 * MIN;
const DAY: u64 = 24 * HOUR;
/// Monday 2026-01-05 00:00 UTC.
const T0: u64 = 1_767_571_200_000;

/// One isolated stack per scenario: its own state table, topic and queue.
struct Stack {
    processor: Processor,
    keys: Arc<tollgate_aws::DynamoStore>,
    state: Arc<DynamoAuditState>,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

async fn stack(tag: &str) -> Stack {
    let emu = tollgate_testkit::shared().unwrap_or_else(|e| panic!("AWS emulator: {e}"));
    let conf = emu.sdk_config().await;
    let ns = unique_ns(tag);

    let table = format!("{ns}audit-state");
    emu.create_table_like(tollgate_testkit::AUDIT_STATE_TABLE, &table)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let sns = aws_sdk_sns::Client::new(&conf);
    let topic_arn = sns
        .create_topic()
        .name(format!("{ns}alerts"))
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let sqs = aws_sdk_sqs::Client::new(&conf);
    let queue_url = sqs
        .create_queue()
        .queue_name(format!("{ns}alerts-q"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()
        .remove(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .unwrap();
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(queue_arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .unwrap();

    let tables = tollgate_aws::Tables::from_vars(&|k| emu.resource(k).map(str::to_owned)).unwrap();
    let keys = Arc::new(tollgate_aws::DynamoStore::new(&conf, tables));
    let state = Arc::new(DynamoAuditState::new(&conf, table));
    let processor = Processor::new(
        state.clone(),
        Arc::new(SnsAlertSink::new(&conf, topic_arn)),
        Params::default(),
    )
    .with_auto_suspend(
        keys.clone(),
        tollgate_audit::suspend_rules_from(None).unwrap(),
    );
    Stack {
        processor,
        keys,
        state,
        sqs,
        queue_url,
    }
}

impl Stack {
    /// Feeds events in subscription batches of at most `per_batch`.
    async fn replay(&self, events: &[Event], per_batch: usize) {
        for chunk in events.chunks(per_batch.max(1)) {
            self.processor
                .handle_event(logs_event("DATA_MESSAGE", chunk))
                .await
                .unwrap();
        }
    }

    /// Every message in the queue (drained until a receive comes back empty).
    async fn alerts(&self) -> Vec<Alert> {
        let mut out = Vec::new();
        loop {
            let got = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            let msgs = got.messages.unwrap_or_default();
            if msgs.is_empty() {
                return out;
            }
            for m in msgs {
                let body = m.body.unwrap();
                assert!(!body.contains("tgk_"), "an alert never carries a key");
                out.push(serde_json::from_str(&body).expect("an alert message"));
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(m.receipt_handle.unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
}

fn rules(alerts: &[Alert]) -> Vec<(Rule, String)> {
    alerts.iter().map(|a| (a.rule, a.subject.clone())).collect()
}

#[tokio::test]
async fn credential_stuffing_across_many_networks_raises_one_stuffing_alert() {
    let s = stack("stuffing").await;
    let mut b = Batch::default();
    // 300 guessed keys from 60 networks over 5 minutes: 5 tries per network.
    for i in 0..300u64 {
        let ip = format!("198.{}.{}.{}", 18 + i % 2, (i / 2) % 30, 1 + i % 200);
        let key = format!("G{i:011}");
        let reason = if i % 3 == 0 {
            Reason::BadChecksum
        } else {
            Reason::UnknownKey
        };
        b.line(T0 + i * 1_000, reason, Some(&key), &ip);
    }
    s.replay(&b.take(), 100).await;
    let alerts = s.alerts().await;
    assert_eq!(
        rules(&alerts),
        vec![(Rule::AuthStuffing, "all-networks".to_owned())]
    );
    let a = &alerts[0];
    assert!(a.counts["distinct_networks"] >= 20);
    assert!(!a.evidence.is_empty() && a.evidence.len() <= 20);
    assert!(a.summary.contains(Rule::AuthStuffing.runbook()));
}

#[tokio::test]
async fn a_targeted_key_with_wrong_secrets_raises_one_targeting_alert() {
    let s = stack("targeted").await;
    let mut b = Batch::default();
    // The key's owner works normally; someone else tries 12 secrets for its id.
    for i in 0..50u64 {
        b.line(
            T0 + i * MIN,
            Reason::Ok,
            Some("TGTKEY000001"),
            "10.20.30.40",
        );
    }
    for i in 0..12u64 {
        b.line(
            T0 + 10 * MIN + i * 20_000,
            Reason::DigestMismatch,
            Some("TGTKEY000001"),
            &format!("203.0.113.{}", 10 + i),
        );
    }
    let mut events = b.take();
    events.sort_by_key(|e| e.timestamp);
    s.replay(&events, 16).await;
    assert_eq!(
        rules(&s.alerts().await),
        vec![(Rule::AuthTargetedKey, "key:TGTKEY000001".to_owned())]
    );
}

#[tokio::test]
async fn a_stolen_key_used_from_a_new_network_raises_one_new_network_alert() {
    let s = stack("stolen").await;
    let mut b = Batch::default();
    // Three days of office and CI use (learning period: two days).
    for h in 0..72u64 {
        for m in 0..4u64 {
            b.line(
                T0 + h * HOUR + m * 13 * MIN,
                Reason::Ok,
                Some("STOLEN000001"),
                if m % 2 == 0 {
                    "10.1.2.3"
                } else {
                    "2001:db8:42:7::5"
                },
            );
        }
    }
    s.replay(&b.take(), 200).await;
    // Day four: the key at 20 times its rate from a network it never used.
    let start = T0 + 3 * DAY + 2 * HOUR;
    for i in 0..80u64 {
        b.line(
            start + i * 45_000,
            Reason::Ok,
            Some("STOLEN000001"),
            "45.33.12.99",
        );
    }
    s.replay(&b.take(), 25).await;
    let alerts = s.alerts().await;
    assert_eq!(
        rules(&alerts),
        vec![(Rule::KeyNewNetwork, "key:STOLEN000001".to_owned())]
    );
    assert_eq!(alerts[0].networks, vec!["45.33.12.0/24".to_owned()]);
}

#[tokio::test]
async fn a_pool_whose_tokens_all_fail_raises_one_pool_alert() {
    let s = stack("pool").await;
    let mut b = Batch::default();
    for i in 0..40u64 {
        let key = format!("POOLKEY{:05}", i % 4);
        let reason = if i < 10 {
            Reason::Ok
        } else if i % 5 == 0 {
            Reason::NoEligibleToken
        } else {
            Reason::AllTokensFailed
        };
        b.pool_line(T0 + i * 5_000, reason, &key, "10.0.0.7", "anthropic-eu");
    }
    s.replay(&b.take(), 10).await;
    assert_eq!(
        rules(&s.alerts().await),
        vec![(Rule::PoolTokensFailing, "pool:anthropic-eu".to_owned())]
    );
}

#[tokio::test]
async fn bad_lines_empty_batches_and_control_messages_fail_nothing_and_alert_nothing() {
    let s = stack("junk").await;
    let good = common::audit_line("req-ok", T0, Reason::Ok, Some("K1"), "10.0.0.1", None);
    let junk = [
        "START RequestId: 6f1c Version: $LATEST".to_owned(),
        r#"{"_aws":{"Timestamp":1767571200000,"CloudWatchMetrics":[]},"requests":1}"#.to_owned(),
        good[..good.len() / 3].to_owned(),
        "{\"tollgate_audit\":1,\"v\":99}".to_owned(),
        "\u{0}\u{1}binary".to_owned(),
        String::new(),
        good.clone(),
    ];
    let events: Vec<Event> = junk
        .iter()
        .enumerate()
        .map(|(i, m)| Event {
            id: format!("{i:056}"),
            timestamp: T0 + i as u64,
            message: m.clone(),
        })
        .collect();
    let r = s
        .processor
        .handle_event(logs_event("DATA_MESSAGE", &events))
        .await
        .unwrap();
    assert_eq!(
        (r.audit_lines, r.foreign_lines, r.malformed_lines),
        (1, 4, 2)
    );
    let r = s
        .processor
        .handle_event(logs_event("DATA_MESSAGE", &[]))
        .await
        .unwrap();
    assert_eq!(r.events, 0);
    let control = [Event {
        id: String::new(),
        timestamp: T0,
        message: "CWL CONTROL MESSAGE: Checking health of destination Lambda.".into(),
    }];
    let r = s
        .processor
        .handle_event(logs_event("CONTROL_MESSAGE", &control))
        .await
        .unwrap();
    assert!(r.control_message);
    assert!(s.alerts().await.is_empty());
}

#[tokio::test]
async fn a_valid_key_refused_for_its_network_raises_one_alert_and_is_suspended() {
    use tollgate_core::key::KeyEnv;
    use tollgate_core::ports::KeyStore;
    use tollgate_core::records::{ClientKeyRecord, KeyStatus};
    let s = stack("outside").await;
    let key_id = format!("OUT{:09}", std::process::id());
    let rec = ClientKeyRecord {
        allowed_cidrs: vec!["10.20.0.0/16".parse().unwrap()],
        ..ClientKeyRecord::new(
            &key_id,
            KeyEnv::Live,
            "WXYZ",
            "acme",
            "o@x.test",
            ("00".into(), 1),
            T0,
        )
    };
    s.keys.put_key(&rec).await.unwrap();
    let mut b = Batch::default();
    for i in 0..6u64 {
        b.line(
            T0 + i * MIN,
            Reason::SourceNotAllowed,
            Some(&key_id),
            "45.33.12.99",
        );
    }
    s.replay(&b.take(), 3).await;
    let alerts = s.alerts().await;
    assert_eq!(
        rules(&alerts),
        vec![(Rule::KeyRefusedOutside, format!("key:{key_id}"))]
    );
    assert!(alerts[0].response.as_deref().unwrap().contains("suspended"));
    let got = s.keys.get_key(&key_id).await.unwrap().unwrap();
    assert_eq!(got.status, KeyStatus::Suspended);
    assert_eq!(
        got.suspended_reason.as_deref(),
        Some("audit rule key_refused_outside")
    );
}

/// Three days of `per_hour` requests an hour of `key` from its office and VPN networks.
fn busy_history(b: &mut Batch, key: &str, start: u64, per_hour: u64) {
    for h in 0..72u64 {
        for i in 0..per_hour {
            let ip = if i % 2 == 0 {
                "10.1.2.3"
            } else {
                "2001:db8:42:7::5"
            };
            b.line(
                start + h * HOUR + i * (HOUR / per_hour),
                Reason::Ok,
                Some(key),
                ip,
            );
        }
    }
}

#[tokio::test]
async fn a_leaked_key_at_20x_its_baseline_from_a_new_network_raises_one_grouped_alert() {
    let s = stack("leak20x").await;
    let start = (T0 / HOUR + 1) * HOUR;
    let mut b = Batch::default();
    busy_history(&mut b, "LEAKED000001", start, 30);
    s.replay(&b.take(), 500).await;
    assert!(s.alerts().await.is_empty(), "three ordinary days");
    // Day four, one hour: 600 requests (20×) from a network the key never used.
    let spike = start + 3 * DAY + 2 * HOUR;
    for i in 0..600u64 {
        b.line(
            spike + i * 5_000,
            Reason::Ok,
            Some("LEAKED000001"),
            "45.33.12.99",
        );
    }
    s.replay(&b.take(), 100).await;
    let alerts = s.alerts().await;
    // Both rules fire (new network after 5 requests, rate past 200/h); one alert.
    assert_eq!(
        rules(&alerts),
        vec![(Rule::KeyNewNetwork, "key:LEAKED000001".to_owned())]
    );
    let kept = s
        .state
        .recent_alerts(0, spike + HOUR)
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.subject == "key:LEAKED000001")
        .unwrap();
    assert!(
        kept.related
            .get(&Rule::KeyRateSpike)
            .is_some_and(|n| *n >= 1),
        "the rate spike was grouped into it: {:?}",
        kept.related
    );
}

#[tokio::test]
async fn a_key_at_ten_times_its_baseline_from_its_own_network_raises_one_rate_alert() {
    let s = stack("rate10x").await;
    let start = (T0 / HOUR + 1) * HOUR;
    let mut b = Batch::default();
    busy_history(&mut b, "BUSYKEY00001", start, 30);
    s.replay(&b.take(), 500).await;
    let spike = start + 3 * DAY + 2 * HOUR;
    for i in 0..300u64 {
        let ip = if i % 2 == 0 {
            "10.1.2.3"
        } else {
            "2001:db8:42:7::5"
        };
        b.line(spike + i * 10_000, Reason::Ok, Some("BUSYKEY00001"), ip);
    }
    s.replay(&b.take(), 100).await;
    let alerts = s.alerts().await;
    assert_eq!(
        rules(&alerts),
        vec![(Rule::KeyRateSpike, "key:BUSYKEY00001".to_owned())]
    );
    // 30 an hour, less the two idle hours before the spike folded in as zeros.
    let baseline = alerts[0].counts["requests_baseline_per_hour"];
    assert!((25..=30).contains(&baseline), "{baseline}");
    assert_eq!(alerts[0].counts["requests_this_hour"], 201);
    assert_eq!(alerts[0].response, None, "not a suspending rule by default");
}

#[tokio::test]
async fn a_canary_key_used_raises_one_critical_alert_and_suspends_nothing() {
    use tollgate_core::key::KeyEnv;
    use tollgate_core::ports::KeyStore;
    use tollgate_core::records::{ClientKeyRecord, KeyStatus};
    let s = stack("canary").await;
    let key_id = format!("CAN{:09}", std::process::id());
    let rec = ClientKeyRecord {
        canary: true,
        ..ClientKeyRecord::new(
            &key_id,
            KeyEnv::Live,
            "WXYZ",
            "acme",
            "sec@x.test",
            ("00".into(), 1),
            T0,
        )
    };
    s.keys.put_key(&rec).await.unwrap();
    let mut b = Batch::default();
    // Ordinary traffic around it, then whoever found the key tries it four times from two
    // networks, in two batches (the second is inside the suppression window).
    for i in 0..20u64 {
        b.line(T0 + i * MIN, Reason::Ok, Some("NORMAL000001"), "10.1.2.3");
    }
    for (i, ip) in ["45.33.12.99", "45.33.12.99", "198.51.100.7", "198.51.100.7"]
        .iter()
        .enumerate()
    {
        let at = T0 + 5 * MIN + i as u64 * 10 * MIN;
        let mut r = tollgate_core::audit::AuditRecord::new(format!("req-canary-{i}"), at);
        r.reason = Reason::Canary;
        r.decision = Reason::Canary.decision();
        r.status = 401;
        r.key_id = Some(key_id.clone());
        r.tenant = Some("acme".into());
        r.source_ip = Some((*ip).to_owned());
        r.route = Some("chat.completions".into());
        r.user_agent = tollgate_core::audit::user_agent("OpenAI/Python 1.54.0");
        b.push(at, r.to_line());
    }
    let mut events = b.take();
    events.sort_by_key(|e| e.timestamp);
    s.replay(&events, 12).await;
    let alerts = s.alerts().await;
    assert_eq!(
        rules(&alerts),
        vec![(Rule::CanaryKeyUsed, format!("key:{key_id}"))]
    );
    let a = &alerts[0];
    assert_eq!(a.severity, tollgate_core::detect::Severity::Critical);
    assert_eq!(a.user_agents, vec!["OpenAI/Python 1.54.0".to_owned()]);
    assert_eq!(a.tenant.as_deref(), Some("acme"));
    assert!(a.response.as_deref().unwrap().contains("nothing suspended"));
    // The later uses were counted into the alert, not sent.
    let kept = s
        .state
        .recent_alerts(0, T0 + 2 * HOUR)
        .await
        .unwrap()
        .into_iter()
        .find(|x| x.rule == Rule::CanaryKeyUsed)
        .unwrap();
    assert_eq!(kept.occurrences, 4);
    // Suspending a canary would change nothing: it is left as it is.
    let got = s.keys.get_key(&key_id).await.unwrap().unwrap();
    assert_eq!((got.status, got.canary), (KeyStatus::Active, true));
}

#[tokio::test]
async fn a_key_used_by_a_new_client_raises_one_new_user_agent_alert_and_upgrades_none() {
    let s = stack("newua").await;
    let mut b = Batch::default();
    let line = |b: &mut Batch, at: u64, ua: &str| {
        let mut r = tollgate_core::audit::AuditRecord::new(format!("req-{at}-{}", b.n + 1), at);
        r.reason = Reason::Ok;
        r.decision = Reason::Ok.decision();
        r.status = 200;
        r.key_id = Some("UAKEY0000001".into());
        r.tenant = Some("acme".into());
        r.source_ip = Some("10.1.2.3".into());
        r.route = Some("chat.completions".into());
        r.user_agent = tollgate_core::audit::user_agent(ua);
        b.push(at, r.to_line());
    };
    // Three days with the Python SDK, upgraded on day three: no alert.
    for h in 0..72u64 {
        for m in 0..3u64 {
            let ua = if h < 50 {
                "OpenAI/Python 1.54.0"
            } else {
                "OpenAI/Python 1.55.2"
            };
            line(&mut b, T0 + h * HOUR + m * 17 * MIN, ua);
        }
    }
    s.replay(&b.take(), 200).await;
    assert!(s.alerts().await.is_empty(), "learning, and an SDK upgrade");
    // Day four: the same key driven by a script, from the same network.
    for i in 0..12u64 {
        line(
            &mut b,
            T0 + 3 * DAY + 2 * HOUR + i * 3 * MIN,
            "python-requests/2.31.0",
        );
    }
    s.replay(&b.take(), 5).await;
    let alerts = s.alerts().await;
    assert_eq!(
        rules(&alerts),
        vec![(Rule::KeyNewUserAgent, "key:UAKEY0000001".to_owned())]
    );
    assert_eq!(
        alerts[0].user_agents,
        vec!["python-requests/2.31.0".to_owned()]
    );
    assert_eq!(alerts[0].response, None, "not a suspending rule");
}

/// A served line of `key` with a cost, the key's daily budget and the day's spend before it.
fn spend_line(b: &mut Batch, at: u64, key: &str, cost_micros: u64, budget: u64, spent: u64) {
    use tollgate_core::audit::{AuditRecord, BudgetPeriod, BudgetScope, BudgetUse};
    let mut r = AuditRecord::new(format!("req-{at}-{}", b.n + 1), at);
    r.reason = Reason::Ok;
    r.decision = Reason::Ok.decision();
    r.status = 200;
    r.key_id = Some(key.to_owned());
    r.tenant = Some("acme".into());
    r.source_ip = Some("10.1.2.3".into());
    r.route = Some("chat.completions".into());
    r.model = Some("gpt-4o".into());
    r.pool = Some("openai".into());
    r.token_id = Some("openai-1".into());
    r.attempts = 1;
    r.cost_usd = Some(cost_micros as f64 / 1e6);
    r.budgets.push(BudgetUse {
        scope: BudgetScope::Key,
        period: BudgetPeriod::Day,
        budget_micros: budget,
        spent_micros: spent,
        window_end_ms: (at / DAY + 1) * DAY,
    });
    b.push(at, r.to_line());
}

#[tokio::test]
async fn slow_spend_creep_that_would_exhaust_a_daily_budget_raises_one_burn_alert() {
    let s = stack("burn").await;
    let key = "BURNKEY00001";
    let budget = 40_000_000; // $40 a day
    let mut b = Batch::default();
    // Two days at $1 an hour (a line every two minutes): $24 a day, well inside the budget.
    for d in 0..2u64 {
        let mut spent = 0;
        for i in 0..720u64 {
            let cost = 33_333;
            spend_line(&mut b, T0 + d * DAY + i * 2 * MIN, key, cost, budget, spent);
            spent += cost;
        }
    }
    s.replay(&b.take(), 240).await;
    assert!(s.alerts().await.is_empty(), "two ordinary days");
    // Day three: the spend creeps up by $0.25 an hour every hour; at that pace the $40 run
    // out in the early afternoon. The proxy refuses past the budget, so the lines stop there.
    let day = T0 + 2 * DAY;
    let mut spent = 0;
    for i in 0..720u64 {
        let hourly = 1_000_000 + 250_000 * (i / 30);
        let cost = hourly / 30;
        if spent + cost > budget {
            break;
        }
        spend_line(&mut b, day + i * 2 * MIN, key, cost, budget, spent);
        spent += cost;
    }
    s.replay(&b.take(), 60).await;
    let alerts = s.alerts().await;
    assert_eq!(
        rules(&alerts),
        vec![(Rule::BudgetBurnRate, format!("key:{key}"))]
    );
    let a = &alerts[0];
    assert_eq!(a.counts["budget_micros"], budget);
    assert!(a.counts["minutes_early"] >= 60, "{:?}", a.counts);
    assert!(a.summary.contains("runs out at"), "{}", a.summary);
    assert!(a.summary.contains(Rule::BudgetBurnRate.runbook()));
    // Suppressed until the budget's window resets, not for an hour.
    assert_eq!(a.suppressed_until, "2026-01-08T00:00:00Z");
    println!("burn alert: {}", a.summary);
}

/// A served line whose upstream attempts went to `attempts` (token, outcome), the last one
/// answering.
fn token_line(
    b: &mut Batch,
    at: u64,
    reason: Reason,
    attempts: &[(&str, tollgate_core::audit::AttemptOutcome)],
) {
    let mut r = tollgate_core::audit::AuditRecord::new(format!("req-{at}-{}", b.n + 1), at);
    r.reason = reason;
    r.decision = reason.decision();
    r.status = if reason == Reason::Ok { 200 } else { 502 };
    r.key_id = Some("APPKEY000001".into());
    r.tenant = Some("acme".into());
    r.source_ip = Some("10.1.2.3".into());
    r.route = Some("chat.completions".into());
    r.pool = Some("openai".into());
    for (t, o) in attempts {
        r.note_attempt(t, *o);
        r.attempts += 1;
        r.token_id = Some((*t).to_owned());
    }
    b.push(at, r.to_line());
}

#[tokio::test]
async fn a_provider_key_revoked_upstream_raises_one_invalid_token_alert() {
    use tollgate_core::audit::AttemptOutcome::{AuthRejected, Ok};
    let s = stack("revoked").await;
    let mut b = Batch::default();
    // An hour of traffic over two tokens.
    for i in 0..120u64 {
        let t = if i % 2 == 0 { "tok-a" } else { "tok-b" };
        token_line(&mut b, T0 + i * 30_000, Reason::Ok, &[(t, Ok)]);
    }
    // tok-a is revoked at the provider: the request that meets it fails over to tok-b, and
    // two other proxy instances, whose pool view has not caught up yet, meet it too.
    let at = T0 + HOUR;
    for j in 0..3u64 {
        token_line(
            &mut b,
            at + j * 4_000,
            Reason::Ok,
            &[("tok-a", AuthRejected), ("tok-b", Ok)],
        );
    }
    // Then only tok-b.
    for i in 0..60u64 {
        token_line(&mut b, at + MIN + i * 30_000, Reason::Ok, &[("tok-b", Ok)]);
    }
    s.replay(&b.take(), 50).await;
    let alerts = s.alerts().await;
    assert_eq!(
        rules(&alerts),
        vec![(Rule::ProviderTokenInvalid, "token:openai/tok-a".to_owned())]
    );
    assert_eq!(alerts[0].severity, tollgate_core::detect::Severity::High);
    assert!(alerts[0].runbook.contains("tollgate token add"));
    assert_eq!(alerts[0].evidence.len(), 1, "the first rejection opened it");
}

#[tokio::test]
async fn a_flapping_provider_token_raises_one_flapping_alert() {
    use tollgate_core::audit::AttemptOutcome::{Ok, Transient};
    let s = stack("flap").await;
    let mut b = Batch::default();
    // Twenty minutes, a request every 10 s: one in three meets tok-f failing (a 5xx) and
    // fails over to tok-g; the others are answered by tok-f.
    for i in 0..120u64 {
        let at = T0 + i * 10_000;
        if i % 3 == 2 {
            token_line(
                &mut b,
                at,
                Reason::Ok,
                &[("tok-f", Transient), ("tok-g", Ok)],
            );
        } else {
            token_line(&mut b, at, Reason::Ok, &[("tok-f", Ok)]);
        }
    }
    s.replay(&b.take(), 25).await;
    let alerts = s.alerts().await;
    assert_eq!(
        rules(&alerts),
        vec![(Rule::ProviderTokenFlapping, "token:openai/tok-f".to_owned())]
    );
    let a = &alerts[0];
    assert!(
        a.counts["changes"] >= 6 && a.counts["failed"] >= 2,
        "{:?}",
        a.counts
    );
}
