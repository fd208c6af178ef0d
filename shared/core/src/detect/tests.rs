use super::*;
use crate::audit::{AttemptOutcome, AuditRecord, BudgetPeriod, BudgetUse};

const MIN: u64 = 60_000;
const HOUR: u64 = 60 * MIN;
const DAY: u64 = 24 * HOUR;
const T0: u64 = 1_700_000_000_000;

struct Feed {
    state: AuditState,
    p: Params,
    n: u64,
    findings: Vec<Finding>,
}

impl Feed {
    fn new() -> Self {
        Self {
            state: AuditState::new(),
            p: Params::default(),
            n: 0,
            findings: Vec::new(),
        }
    }

    fn send(&mut self, at: u64, reason: Reason, key: Option<&str>, ip: &str) -> Vec<Finding> {
        self.n += 1;
        let mut r = AuditRecord::new(format!("req-{}", self.n), at);
        r.reason = reason;
        r.decision = reason.decision();
        r.key_id = key.map(str::to_owned);
        r.source_ip = Some(ip.to_owned());
        r.tenant = Some("acme".into());
        r.pool = Some("openai".into());
        self.replay(&format!("ev-{}", self.n), at, &r)
    }

    fn replay(&mut self, event_id: &str, at: u64, r: &AuditRecord) -> Vec<Finding> {
        let f = observe(
            &mut self.state,
            &self.p,
            Observed {
                event_id,
                at,
                record: r,
            },
        );
        self.findings.extend(f.clone());
        f
    }

    fn rules(&self) -> Vec<(Rule, String)> {
        self.findings
            .iter()
            .map(|f| (f.rule, f.subject.clone()))
            .collect()
    }
}

#[test]
fn networks_are_slash_24_and_slash_48() {
    assert_eq!(
        network_of("203.0.113.77".parse().unwrap()),
        "203.0.113.0/24"
    );
    assert_eq!(
        network_of("2001:db8:abcd:12::1".parse().unwrap()),
        "2001:db8:abcd::/48"
    );
    assert_eq!(
        network_of("::ffff:198.51.100.9".parse().unwrap()),
        "198.51.100.0/24"
    );
}

#[test]
fn every_authentication_failure_is_classified_as_a_detector_signal_or_deliberately_not() {
    // Scan-type failures are exactly the ones that happen before a key id is proven.
    for r in [
        Reason::MissingKey,
        Reason::BadPrefix,
        Reason::BadLength,
        Reason::BadCharset,
        Reason::BadChecksum,
        Reason::UnknownKey,
    ] {
        assert!(r.is_authentication_failure());
        assert_eq!(signal(r), Signal::Scan, "{r}");
    }
    assert_eq!(signal(Reason::DigestMismatch), Signal::WrongSecret);
    assert_eq!(signal(Reason::SourceNotAllowed), Signal::OutsideSource);
    assert_eq!(signal(Reason::Suspended), Signal::Other);
}

#[test]
fn scanning_from_one_network_fires_once_at_the_threshold() {
    let mut feed = Feed::new();
    for i in 0..29 {
        let f = feed.send(T0 + i * 1_000, Reason::BadChecksum, None, "198.51.100.7");
        assert!(f.is_empty());
    }
    let f = feed.send(
        T0 + 29_000,
        Reason::UnknownKey,
        Some("k-guess"),
        "198.51.100.8",
    );
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].rule, Rule::AuthScanNetwork);
    assert_eq!(f[0].subject, "net:198.51.100.0/24");
    assert_eq!(f[0].counts["events"], 30);
    assert_eq!(f[0].evidence.len(), 20);
    assert_eq!(f[0].evidence.last().map(String::as_str), Some("req-30"));
}

#[test]
fn scan_failures_spread_over_more_than_the_window_do_not_fire() {
    let mut feed = Feed::new();
    // 60 typos from one office network, one every 30 seconds short of 20 per 10 minutes.
    for i in 0..60 {
        feed.send(
            T0 + i * 31 * 1_000,
            Reason::BadChecksum,
            None,
            "198.51.100.7",
        );
    }
    assert_eq!(feed.rules(), vec![]);
}

#[test]
fn credential_stuffing_from_many_networks_is_one_finding_kind_not_per_network_scans() {
    let mut feed = Feed::new();
    for i in 0..100u64 {
        let ip = format!("203.0.{}.{}", i % 25, 10 + i % 7);
        feed.send(
            T0 + i * 1_000,
            Reason::UnknownKey,
            Some(&format!("k{i}")),
            &ip,
        );
    }
    assert_eq!(
        feed.rules(),
        vec![(Rule::AuthStuffing, ALL_NETWORKS.to_owned())]
    );
    assert_eq!(feed.findings[0].counts["distinct_networks"], 25);
    assert_eq!(feed.findings[0].counts["distinct_keys"], 100);
    assert!(feed.findings[0].tenant.is_none());
}

#[test]
fn wrong_secrets_for_one_real_key_are_targeting_not_scanning() {
    let mut feed = Feed::new();
    for i in 0..3 {
        feed.send(
            T0 + i * MIN,
            Reason::DigestMismatch,
            Some("KEY000000001"),
            "192.0.2.5",
        );
    }
    assert_eq!(
        feed.rules(),
        vec![(Rule::AuthTargetedKey, "key:KEY000000001".to_owned())]
    );
    // Two other keys with one wrong secret each: nothing.
    feed.send(
        T0,
        Reason::DigestMismatch,
        Some("KEY000000002"),
        "192.0.2.5",
    );
    feed.send(
        T0,
        Reason::DigestMismatch,
        Some("KEY000000003"),
        "192.0.2.5",
    );
    assert_eq!(feed.findings.len(), 1);
}

#[test]
fn a_replayed_event_does_not_count_twice() {
    let mut feed = Feed::new();
    let mut r = AuditRecord::new("req-x".into(), T0);
    r.reason = Reason::DigestMismatch;
    r.key_id = Some("KEY000000001".into());
    for _ in 0..5 {
        assert!(feed.replay("ev-same", T0, &r).is_empty());
    }
    assert_eq!(feed.state.keys["KEY000000001"].wrong_secrets.len(), 1);
}

fn learned_key(feed: &mut Feed, key: &str) {
    for h in 0..48 {
        feed.send(T0 + h * HOUR, Reason::Ok, Some(key), "10.1.2.3");
        feed.send(T0 + h * HOUR + MIN, Reason::Ok, Some(key), "10.9.0.4");
    }
}

#[test]
fn a_new_network_after_learning_fires_on_sustained_use_only() {
    let mut feed = Feed::new();
    learned_key(&mut feed, "K1");
    let after = T0 + 3 * DAY;
    // Two requests from a hotel: below the threshold.
    feed.send(after, Reason::Ok, Some("K1"), "192.0.2.1");
    feed.send(after + MIN, Reason::Ok, Some("K1"), "192.0.2.2");
    // Known networks: never.
    feed.send(after + 2 * MIN, Reason::Ok, Some("K1"), "10.1.2.200");
    assert!(feed.findings.is_empty());
    // Sustained use from a new network.
    for i in 0..5 {
        feed.send(
            after + HOUR * 2 + i * MIN,
            Reason::Ok,
            Some("K1"),
            "203.0.113.9",
        );
    }
    assert_eq!(
        feed.rules(),
        vec![(Rule::KeyNewNetwork, "key:K1".to_owned())]
    );
    assert_eq!(feed.findings[0].networks, vec!["203.0.113.0/24".to_owned()]);
    // Learned now: more use from it adds nothing.
    feed.send(after + HOUR * 3, Reason::Ok, Some("K1"), "203.0.113.9");
    assert_eq!(feed.findings.len(), 1);
}

#[test]
fn networks_seen_during_learning_are_learned_without_alerts() {
    let mut feed = Feed::new();
    for i in 0..40 {
        feed.send(
            T0 + i * HOUR,
            Reason::Ok,
            Some("K2"),
            &format!("10.0.{i}.1"),
        );
    }
    assert!(feed.findings.is_empty());
    assert_eq!(feed.state.keys["K2"].networks.len(), 32, "bounded");
}

#[test]
fn refusals_by_network_from_a_valid_key_fire_at_two_scope_refusals_at_ten() {
    let mut feed = Feed::new();
    feed.send(T0, Reason::SourceNotAllowed, Some("K3"), "203.0.113.1");
    assert!(feed.findings.is_empty());
    feed.send(
        T0 + MIN,
        Reason::SourceNotAllowed,
        Some("K3"),
        "203.0.113.1",
    );
    assert_eq!(
        feed.rules(),
        vec![(Rule::KeyRefusedOutside, "key:K3".to_owned())]
    );

    let mut feed = Feed::new();
    for i in 0..9 {
        feed.send(
            T0 + i * MIN,
            Reason::ModelNotAllowed,
            Some("K4"),
            "10.0.0.1",
        );
    }
    assert!(feed.findings.is_empty(), "a developer trying models");
    feed.send(
        T0 + 9 * MIN,
        Reason::RouteNotAllowed,
        Some("K4"),
        "10.0.0.1",
    );
    assert_eq!(
        feed.rules(),
        vec![(Rule::KeyRefusedOutside, "key:K4".to_owned())]
    );
}

#[test]
fn dlp_blocks_burst_per_key() {
    let mut feed = Feed::new();
    for i in 0..4 {
        feed.send(
            T0 + i * MIN,
            Reason::SensitiveDataBlocked,
            Some("K5"),
            "10.0.0.1",
        );
    }
    feed.send(T0, Reason::SensitiveDataBlocked, Some("K6"), "10.0.0.1");
    assert!(feed.findings.is_empty());
    feed.send(
        T0 + 5 * MIN,
        Reason::SensitiveDataBlocked,
        Some("K5"),
        "10.0.0.1",
    );
    assert_eq!(
        feed.rules(),
        vec![(Rule::DlpBlockBurst, "key:K5".to_owned())]
    );
}

#[test]
fn a_pool_with_every_token_failing_fires_per_pool() {
    let mut feed = Feed::new();
    feed.send(T0, Reason::AllTokensFailed, Some("K7"), "10.0.0.1");
    feed.send(T0 + MIN, Reason::NoEligibleToken, Some("K8"), "10.0.0.2");
    assert!(feed.findings.is_empty());
    feed.send(
        T0 + 2 * MIN,
        Reason::AllTokensFailed,
        Some("K7"),
        "10.0.0.1",
    );
    assert_eq!(
        feed.rules(),
        vec![(Rule::PoolTokensFailing, "pool:openai".to_owned())]
    );
}

#[test]
fn one_alert_per_rule_and_subject_per_window_with_occurrences_counted() {
    let mut feed = Feed::new();
    for i in 0..10 {
        feed.send(
            T0 + i * MIN,
            Reason::DigestMismatch,
            Some("K9"),
            "192.0.2.5",
        );
    }
    assert_eq!(feed.findings.len(), 8);
    let p = feed.p.clone();
    let alerts: Vec<Alert> = feed
        .findings
        .clone()
        .iter()
        .filter_map(|f| feed.state.suppress(&p, f))
        .collect();
    assert_eq!(alerts.len(), 1);
    let s = &feed.state.suppressions[&(Rule::AuthTargetedKey, "key:K9".to_owned())];
    assert_eq!(s.occurrences, 8);
    assert_eq!(s.evidence.len(), 10);
    assert!(alerts[0].summary.contains(Rule::AuthTargetedKey.runbook()));
    // After the window: a new alert.
    let mut later = feed.findings[0].clone();
    later.at = T0 + 2 * HOUR;
    assert!(feed.state.suppress(&p, &later).is_some());
}

#[test]
fn changed_entries_carry_an_expiry_and_round_trip_through_serde() {
    let mut feed = Feed::new();
    feed.send(T0, Reason::BadChecksum, None, "198.51.100.7");
    feed.send(T0, Reason::Ok, Some("K1"), "10.0.0.1");
    let changed = feed.state.changed(&feed.p);
    let ids: Vec<String> = changed.iter().map(|(id, _, _)| id.to_string()).collect();
    assert_eq!(ids, vec!["net#198.51.100.0/24", "auth#global", "key#K1"]);
    for (id, e, exp) in changed {
        assert!(exp > T0);
        let json = serde_json::to_string(&e).unwrap();
        assert!(!json.contains("tgk_"));
        let back: Entry = serde_json::from_str(&json).unwrap();
        let mut fresh = AuditState::new();
        fresh.insert(id.clone(), back);
        assert_eq!(fresh.get(&id), Some(e));
    }
}

#[test]
fn observe_changes_only_the_entries_entries_for_names() {
    // The audit function loads exactly these before observing and saves each changed one
    // against the version it loaded: an entry changed but not listed would be saved blind.
    for reason in [
        Reason::Ok,
        Reason::ClientDisconnected,
        Reason::BadChecksum,
        Reason::UnknownKey,
        Reason::DigestMismatch,
        Reason::SourceNotAllowed,
        Reason::ModelNotAllowed,
        Reason::SensitiveDataBlocked,
        Reason::AllTokensFailed,
        Reason::NoEligibleToken,
        Reason::LimitRpm,
        Reason::Revoked,
        Reason::UpstreamTimeout,
    ] {
        for key in [Some("KEY1"), None] {
            let mut feed = Feed::new();
            let mut r = AuditRecord::new("req".into(), T0);
            r.reason = reason;
            r.decision = reason.decision();
            r.key_id = key.map(str::to_owned);
            r.source_ip = Some("192.0.2.1".into());
            r.pool = Some("openai".into());
            r.tenant = Some("acme".into());
            for scope in [BudgetScope::Key, BudgetScope::Tenant] {
                r.budgets.push(BudgetUse {
                    scope,
                    period: BudgetPeriod::Day,
                    budget_micros: 10,
                    spent_micros: 5,
                    window_end_ms: T0 + 3_600_000,
                });
            }
            r.note_attempt("t1", AttemptOutcome::AuthRejected);
            r.note_attempt("t2", AttemptOutcome::Ok);
            r.attempts = 2;
            r.token_id = Some("t2".into());
            feed.replay("ev", T0, &r);
            let listed: BTreeSet<EntryId> = entries_for(&r).into_iter().collect();
            let changed: BTreeSet<EntryId> = feed
                .state
                .changed(&feed.p)
                .into_iter()
                .map(|(id, _, _)| id)
                .collect();
            assert!(
                changed.is_subset(&listed),
                "{reason} {key:?}: {changed:?} vs {listed:?}"
            );
        }
    }
}

/// An hour boundary (rate rules count clock hours).
const H0: u64 = (T0 / HOUR + 1) * HOUR;

/// `per_hour` served requests an hour for `hours` hours from one network, spread evenly.
fn steady(feed: &mut Feed, key: &str, start: u64, hours: u64, per_hour: u64) {
    for h in 0..hours {
        for i in 0..per_hour {
            feed.send(
                start + h * HOUR + i * (HOUR / per_hour),
                Reason::Ok,
                Some(key),
                "10.1.2.3",
            );
        }
    }
}

fn of_rule(feed: &Feed, rule: Rule) -> Vec<&Finding> {
    feed.findings.iter().filter(|f| f.rule == rule).collect()
}

#[test]
fn a_key_far_above_its_hourly_baseline_is_a_rate_spike() {
    let mut feed = Feed::new();
    steady(&mut feed, "RATEKEY00001", H0, 48, 40);
    assert!(of_rule(&feed, Rule::KeyRateSpike).is_empty(), "steady use");
    // The next hour: 10× the usual rate from the usual network.
    let start = H0 + 48 * HOUR;
    for i in 0..400 {
        feed.send(
            start + i * 8_000,
            Reason::Ok,
            Some("RATEKEY00001"),
            "10.1.2.3",
        );
    }
    let spikes = of_rule(&feed, Rule::KeyRateSpike);
    assert!(!spikes.is_empty());
    let first = spikes[0];
    assert_eq!(first.subject, "key:RATEKEY00001");
    // Fires just past max(floor 200, 5 × 40), not before.
    assert_eq!(
        first.counts["requests_this_hour"], 201,
        "{:?}",
        first.counts
    );
    assert_eq!(first.counts["requests_baseline_per_hour"], 40);
}

#[test]
fn quiet_keys_new_keys_and_replays_do_not_make_rate_spikes() {
    let mut feed = Feed::new();
    // A quiet key jumping from 2 to 150 an hour: 75× but under the 200/h floor.
    steady(&mut feed, "QUIETKEY0001", H0, 48, 2);
    for i in 0..150 {
        feed.send(
            H0 + 48 * HOUR + i * 20_000,
            Reason::Ok,
            Some("QUIETKEY0001"),
            "10.1.2.3",
        );
    }
    // A brand-new key busy from its first hour: no history, no baseline to judge by.
    for i in 0..1000 {
        feed.send(H0 + i * 3_000, Reason::Ok, Some("NEWKEY000001"), "10.1.2.3");
    }
    assert!(of_rule(&feed, Rule::KeyRateSpike).is_empty());
    // A retried batch counts nothing twice: replay the last 150 lines of the quiet key.
    let before = feed.state.keys["QUIETKEY0001"].rate.clone();
    let mut r = AuditRecord::new("req-replayed".into(), H0 + 48 * HOUR);
    r.reason = Reason::Ok;
    r.decision = Reason::Ok.decision();
    r.key_id = Some("QUIETKEY0001".into());
    r.source_ip = Some("10.1.2.3".into());
    feed.replay("ev-97", H0 + 48 * HOUR, &r);
    assert_eq!(feed.state.keys["QUIETKEY0001"].rate, before);
}

#[test]
fn spend_far_above_a_keys_baseline_is_a_rate_spike() {
    let mut feed = Feed::new();
    let key = "SPENDKEY0001";
    // Two days of 20 requests an hour at 1 cent each ($0.20/h), then requests at $0.50 each.
    let send = |feed: &mut Feed, at: u64, cost: f64| {
        feed.n += 1;
        let mut r = AuditRecord::new(format!("req-{}", feed.n), at);
        r.reason = Reason::Ok;
        r.decision = Reason::Ok.decision();
        r.key_id = Some(key.into());
        r.source_ip = Some("10.1.2.3".into());
        r.cost_usd = Some(cost);
        r.tokens_in = Some(100);
        feed.replay(&format!("ev-{}", feed.n), at, &r);
    };
    for h in 0..48 {
        for i in 0..20 {
            send(&mut feed, H0 + h * HOUR + i * 180_000, 0.01);
        }
    }
    assert!(of_rule(&feed, Rule::KeyRateSpike).is_empty());
    for i in 0..20 {
        send(&mut feed, H0 + 48 * HOUR + i * 180_000, 0.5);
    }
    let spikes = of_rule(&feed, Rule::KeyRateSpike);
    assert!(!spikes.is_empty());
    // Past the $5/h floor at the 11th request ($5.50), requests still normal.
    assert_eq!(spikes[0].counts["cost_micros_this_hour"], 5_500_000);
    assert_eq!(spikes[0].counts["requests_this_hour"], 11);
}

#[test]
fn related_findings_about_a_key_join_its_open_alert() {
    let p = Params::default();
    let mut st = AuditState::new();
    let f = |rule: Rule, at: u64| Finding {
        rule,
        subject: "key:GROUPKEY0001".into(),
        severity: rule.severity(),
        at,
        first_seen: at,
        counts: BTreeMap::new(),
        evidence: vec![format!("req-{at}")],
        networks: vec![],
        tenant: None,
        user_agents: vec![],
        suppress_until: None,
        note: None,
    };
    let none = BTreeSet::new();
    assert!(
        st.suppress_related(&p, &f(Rule::KeyNewNetwork, T0), &none)
            .is_some()
    );
    // Same key, same severity, another rule: counted into the open alert.
    assert!(
        st.suppress_related(&p, &f(Rule::KeyRateSpike, H0 + MIN), &none)
            .is_none()
    );
    assert!(
        st.suppress_related(&p, &f(Rule::KeyRateSpike, H0 + 2 * MIN), &none)
            .is_none()
    );
    let host = &st.suppressions[&(Rule::KeyNewNetwork, "key:GROUPKEY0001".to_owned())];
    assert_eq!(host.related.get(&Rule::KeyRateSpike), Some(&2));
    assert!(host.evidence.contains(&format!("req-{}", H0 + MIN)));
    assert!(
        !st.suppressions
            .contains_key(&(Rule::KeyRateSpike, "key:GROUPKEY0001".to_owned()))
    );
    // More severe: its own alert.
    assert!(
        st.suppress_related(&p, &f(Rule::AuthTargetedKey, H0 + 3 * MIN), &none)
            .is_some()
    );
    // A rule that responds on its own (auto-suspend) always gets its own alert.
    let suspends: BTreeSet<Rule> = [Rule::DlpBlockBurst].into();
    assert!(
        st.suppress_related(&p, &f(Rule::DlpBlockBurst, H0 + 4 * MIN), &suspends)
            .is_some()
    );
    // After the window, a new alert.
    assert!(
        st.suppress_related(&p, &f(Rule::KeyRateSpike, H0 + 2 * HOUR), &none)
            .is_some()
    );
    // Other subjects are never grouped.
    let mut g = f(Rule::AuthScanNetwork, H0 + 5 * MIN);
    g.subject = "net:198.51.100.0/24".into();
    assert!(st.suppress_related(&p, &g, &none).is_some());
}

#[test]
fn every_canary_use_is_a_critical_finding_and_one_alert_per_window() {
    let mut feed = Feed::new();
    let mut r = AuditRecord::new("req-canary-1".into(), T0);
    r.reason = Reason::Canary;
    r.decision = Reason::Canary.decision();
    r.key_id = Some("CANARY000001".into());
    r.tenant = Some("acme".into());
    r.source_ip = Some("45.33.12.99".into());
    r.user_agent = Some("python-requests/2.31".into());
    let f = feed.replay("ev-c1", T0, &r);
    assert_eq!(f.len(), 1, "the first use fires, no threshold");
    assert_eq!(f[0].rule, Rule::CanaryKeyUsed);
    assert_eq!(f[0].subject, "key:CANARY000001");
    assert_eq!(f[0].severity, Severity::Critical);
    assert_eq!(f[0].user_agents, vec!["python-requests/2.31".to_owned()]);
    assert_eq!(f[0].networks, vec!["45.33.12.0/24".to_owned()]);
    // A retried batch counts nothing twice.
    assert!(feed.replay("ev-c1", T0, &r).is_empty());
    r.request_id = "req-canary-2".into();
    let f2 = feed.replay("ev-c2", T0 + MIN, &r);
    assert_eq!(f2[0].counts["events"], 2);
    // Suppression: one alert for both, the second counted into it.
    let p = Params::default();
    assert!(feed.state.suppress(&p, &f[0]).is_some());
    assert!(feed.state.suppress(&p, &f2[0]).is_none());
    let a = Alert::from_finding(&f[0], T0 + HOUR);
    assert_eq!(a.user_agents, vec!["python-requests/2.31".to_owned()]);
    assert!(a.summary.contains(Rule::CanaryKeyUsed.runbook()));
    // The canary rule is the only critical one, so no other alert can absorb it.
    assert_eq!(
        Rule::ALL
            .iter()
            .filter(|r| r.severity() == Severity::Critical)
            .collect::<Vec<_>>(),
        vec![&Rule::CanaryKeyUsed]
    );
}

#[test]
fn user_agent_families_ignore_versions() {
    assert_eq!(
        user_agent_family("OpenAI/Python 1.54.0").as_deref(),
        Some("openai")
    );
    assert_eq!(
        user_agent_family("python-requests/2.31.0").as_deref(),
        Some("python-requests")
    );
    assert_eq!(user_agent_family(" curl/8.5.0").as_deref(), Some("curl"));
    assert_eq!(user_agent_family("   "), None);
}

#[test]
fn a_key_used_by_a_new_client_after_learning_alerts_once_and_upgrades_never_do() {
    let mut feed = Feed::new();
    let send = |feed: &mut Feed, at: u64, ua: &str| {
        feed.n += 1;
        let mut r = AuditRecord::new(format!("req-{}", feed.n), at);
        r.reason = Reason::Ok;
        r.decision = Decision::Allow;
        r.key_id = Some("UAKEY0000001".into());
        r.source_ip = Some("10.1.2.3".into());
        r.user_agent = Some(ua.to_owned());
        let id = format!("ev-{}", feed.n);
        feed.replay(&id, at, &r)
    };
    // Three days with the Python SDK (learning period two days), a version bump on day three.
    for h in 0..72u64 {
        let ua = if h < 60 {
            "OpenAI/Python 1.54.0"
        } else {
            "OpenAI/Python 1.55.2"
        };
        assert!(send(&mut feed, T0 + h * HOUR, ua).is_empty());
    }
    // Day four: four curl requests in an hour are below the threshold ...
    let start = T0 + 3 * DAY;
    for i in 0..4u64 {
        assert!(send(&mut feed, start + i * MIN, "curl/8.5.0").is_empty());
    }
    // ... the fifth fires, once; later ones are learned.
    let f = send(&mut feed, start + 5 * MIN, "curl/8.5.0");
    assert_eq!(f.len(), 1);
    assert_eq!(
        (f[0].rule, f[0].subject.as_str()),
        (Rule::KeyNewUserAgent, "key:UAKEY0000001")
    );
    assert_eq!(f[0].counts["events"], 5);
    assert_eq!(f[0].user_agents, vec!["curl/8.5.0".to_owned()]);
    assert!(send(&mut feed, start + 6 * MIN, "curl/8.6.0").is_empty());
    let ks = &feed.state.keys["UAKEY0000001"];
    assert_eq!(
        ks.user_agents.keys().collect::<Vec<_>>(),
        vec!["curl", "openai"]
    );
}
