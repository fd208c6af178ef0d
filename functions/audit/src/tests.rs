use super::*;
use aws_lambda_events::cloudwatch_logs::LogEntry;
use tollgate_core::detect::Rule;
use tollgate_core::reason::Reason;
use tollgate_memory::audit::{MemoryAlertSink, MemoryAuditState};

const T0: u64 = 1_700_000_000_000;

fn processor() -> (Processor, Arc<MemoryAuditState>, Arc<MemoryAlertSink>) {
    let state = Arc::new(MemoryAuditState::new());
    let sink = Arc::new(MemoryAlertSink::new());
    (
        Processor::new(state.clone(), sink.clone(), Params::default()),
        state,
        sink,
    )
}

fn entry(id: &str, at: u64, message: String) -> LogEntry {
    let mut e = LogEntry::default();
    e.id = id.into();
    e.timestamp = at as i64;
    e.message = message;
    e
}

fn batch(entries: Vec<LogEntry>) -> LogData {
    let mut d = LogData::default();
    d.message_type = "DATA_MESSAGE".into();
    d.log_group = "/aws/lambda/tollgate-proxy".into();
    d.log_events = entries;
    d
}

fn line(n: u64, reason: Reason, key: &str, ip: &str) -> String {
    let mut r = AuditRecord::new(format!("req-{n}"), T0 + n);
    r.reason = reason;
    r.decision = reason.decision();
    r.key_id = Some(key.into());
    r.source_ip = Some(ip.into());
    r.to_line()
}

fn targeting(n: u64) -> Vec<LogEntry> {
    (0..n)
        .map(|i| {
            entry(
                &format!("ev-{i}"),
                T0 + i * 1000,
                line(i, Reason::DigestMismatch, "KEY000000001", "192.0.2.9"),
            )
        })
        .collect()
}

#[test]
fn lines_are_classified_audit_foreign_or_malformed() {
    let good = line(1, Reason::Ok, "K", "10.0.0.1");
    assert!(matches!(classify(&good), Line::Audit(_)));
    assert_eq!(
        classify("START RequestId: abc Version: $LATEST"),
        Line::Foreign
    );
    assert_eq!(classify(r#"{"_aws":{"Timestamp":1}}"#), Line::Foreign);
    assert_eq!(classify(&good[..good.len() / 2]), Line::Malformed);
    assert_eq!(
        classify(r#"{"tollgate_audit":1,"v":1,"nonsense":true}"#),
        Line::Malformed
    );
}

#[tokio::test]
async fn a_batch_with_bad_lines_still_counts_the_good_ones() {
    let (p, _, sink) = processor();
    let mut events = targeting(3);
    let good = line(9, Reason::Ok, "K", "10.0.0.1");
    events.push(entry("x1", T0, "REPORT RequestId: 1 Duration: 3 ms".into()));
    events.push(entry("x2", T0, good[..40].to_owned()));
    events.push(entry("x3", T0, String::new()));
    events.push(entry("x4", T0, "{\"tollgate_audit\":1}".into()));
    let r = p.handle(&batch(events)).await.unwrap();
    assert_eq!(
        (r.events, r.audit_lines, r.foreign_lines, r.malformed_lines),
        (7, 3, 2, 2)
    );
    assert_eq!(r.alerts, 1);
    assert_eq!(sink.alerts()[0].rule, Rule::AuthTargetedKey);
}

#[tokio::test]
async fn empty_batches_and_control_messages_touch_nothing() {
    let (p, state, sink) = processor();
    let r = p.handle(&batch(vec![])).await.unwrap();
    assert_eq!(r, BatchReport::default());
    let mut control = batch(targeting(5));
    control.message_type = CONTROL_MESSAGE.into();
    let r = p.handle(&control).await.unwrap();
    assert!(r.control_message);
    assert_eq!((r.audit_lines, r.alerts, r.state_writes), (0, 0, 0));
    assert!(sink.alerts().is_empty());
    assert!(state.dump().unwrap().is_empty());
}

#[tokio::test]
async fn a_retried_batch_does_not_double_count_or_alert_again() {
    let (p, state, sink) = processor();
    // Two wrong secrets: below the threshold of three.
    let b = batch(targeting(2));
    p.handle(&b).await.unwrap();
    p.handle(&b).await.unwrap();
    assert!(
        sink.alerts().is_empty(),
        "a replay must not reach the threshold"
    );
    let dump = state.dump().unwrap();
    match &dump["key#KEY000000001"] {
        tollgate_core::detect::Entry::Key(k) => assert_eq!(k.wrong_secrets.len(), 2),
        other => panic!("{other:?}"),
    }
    // The third one fires; replaying the whole batch adds nothing.
    let b = batch(targeting(3));
    p.handle(&b).await.unwrap();
    p.handle(&b).await.unwrap();
    assert_eq!(sink.alerts().len(), 1);
}

#[tokio::test]
async fn a_failed_publish_fails_the_batch_and_the_retry_alerts() {
    let (p, state, sink) = processor();
    sink.set_failing(true);
    let b = batch(targeting(3));
    assert!(matches!(p.handle(&b).await, Err(BatchError::Publish(_))));
    assert!(state.dump().unwrap().is_empty(), "no state saved");
    sink.set_failing(false);
    let r = p.handle(&b).await.unwrap();
    assert_eq!(r.alerts, 1);
}

#[tokio::test]
async fn a_store_failure_fails_the_batch() {
    let (p, state, _) = processor();
    state.set_failing(true);
    assert!(matches!(
        p.handle(&batch(targeting(1))).await,
        Err(BatchError::State(_))
    ));
}

#[tokio::test]
async fn later_findings_are_counted_into_the_open_alert_across_batches() {
    let (p, state, sink) = processor();
    p.handle(&batch(targeting(3))).await.unwrap();
    let more: Vec<LogEntry> = (10..14)
        .map(|i| {
            entry(
                &format!("ev-{i}"),
                T0 + i * 1000,
                line(i, Reason::DigestMismatch, "KEY000000001", "192.0.2.9"),
            )
        })
        .collect();
    let r = p.handle(&batch(more)).await.unwrap();
    assert_eq!((r.alerts, r.suppressed), (0, 4));
    assert_eq!(sink.alerts().len(), 1);
    match &state.dump().unwrap()["sup#auth_targeted_key#key:KEY000000001"] {
        tollgate_core::detect::Entry::Suppression(s) => assert_eq!(s.occurrences, 5),
        other => panic!("{other:?}"),
    }
}

#[test]
fn params_take_overrides_and_reject_garbage() {
    let p = params_from(Some(r#"{"targeted_min_mismatches": 7}"#)).unwrap();
    assert_eq!(p.targeted_min_mismatches, 7);
    assert_eq!(p.scan_min_failures, Params::default().scan_min_failures);
    assert!(params_from(Some("not json")).is_err());
    assert_eq!(params_from(None).unwrap(), Params::default());
}

#[test]
fn suspend_rules_default_to_leaked_key_patterns_and_parse_names() {
    assert_eq!(
        suspend_rules_from(None).unwrap(),
        [Rule::KeyRefusedOutside].into()
    );
    assert!(suspend_rules_from(Some("none")).unwrap().is_empty());
    assert_eq!(
        suspend_rules_from(Some("key_new_network, key_refused_outside")).unwrap(),
        [Rule::KeyNewNetwork, Rule::KeyRefusedOutside].into()
    );
    assert_eq!(
        suspend_rules_from(Some("key_new_network,bogus")),
        Err("bogus".to_owned())
    );
}

#[tokio::test]
async fn a_leaked_key_alert_suspends_the_key_and_says_so() {
    use tollgate_core::key::KeyEnv;
    use tollgate_core::ports::KeyStore;
    use tollgate_core::records::{ClientKeyRecord, KeyStatus};
    let keys = Arc::new(tollgate_memory::MemoryStore::new());
    for id in ["LEAKED000001", "TARGET000001"] {
        let rec = ClientKeyRecord::new(
            id,
            KeyEnv::Live,
            "WXYZ",
            "acme",
            "o@x.test",
            ("00".into(), 1),
            0,
        );
        keys.put_key(&rec).await.unwrap();
    }
    let (p, _, sink) = processor();
    let p = p.with_auto_suspend(keys.clone(), suspend_rules_from(None).unwrap());
    let mut events = vec![
        entry(
            "e1",
            T0,
            line(1, Reason::SourceNotAllowed, "LEAKED000001", "45.33.12.99"),
        ),
        entry(
            "e2",
            T0 + 1000,
            line(2, Reason::SourceNotAllowed, "LEAKED000001", "45.33.12.99"),
        ),
    ];
    // Targeting is alerted but does not suspend (the attacker lacks the secret).
    events.extend(targeting(3).into_iter().map(|mut e| {
        e.message = e.message.replace("KEY000000001", "TARGET000001");
        e
    }));
    let r = p.handle(&batch(events)).await.unwrap();
    assert_eq!((r.alerts, r.suspended), (2, 1));
    let leaked = keys.get_key("LEAKED000001").await.unwrap().unwrap();
    assert_eq!(leaked.status, KeyStatus::Suspended);
    assert_eq!(
        leaked.suspended_reason.as_deref(),
        Some("audit rule key_refused_outside")
    );
    let target = keys.get_key("TARGET000001").await.unwrap().unwrap();
    assert_eq!(target.status, KeyStatus::Active);
    let alerts = sink.alerts();
    let leak_alert = alerts
        .iter()
        .find(|a| a.rule == Rule::KeyRefusedOutside)
        .unwrap();
    assert!(
        leak_alert
            .response
            .as_deref()
            .unwrap()
            .contains("suspended key LEAKED000001")
    );
    assert!(
        alerts
            .iter()
            .find(|a| a.rule == Rule::AuthTargetedKey)
            .unwrap()
            .response
            .is_none()
    );
}

#[tokio::test]
async fn the_published_alert_is_kept_for_tollgate_alerts_with_its_later_occurrences() {
    use tollgate_core::detect::port::AlertHistory;
    let (p, state, sink) = processor();
    p.handle(&batch(targeting(3))).await.unwrap();
    // Two more wrong secrets later: counted into the open alert, not sent.
    let later: Vec<LogEntry> = (3..5)
        .map(|i| {
            entry(
                &format!("ev-{i}"),
                T0 + i * 1000,
                line(i, Reason::DigestMismatch, "KEY000000001", "192.0.2.9"),
            )
        })
        .collect();
    p.handle(&batch(later)).await.unwrap();
    assert_eq!(sink.alerts().len(), 1);
    let kept = state.recent_alerts(0, T0 + 10_000).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].alert_id(), "auth_targeted_key/key:KEY000000001");
    assert_eq!(
        kept[0].occurrences, 3,
        "the first finding and two later ones"
    );
    assert_eq!(kept[0].alert.as_deref(), Some(&sink.alerts()[0]));
    // Kept for alert_retention_ms (7 days), not just the suppression window.
    let week = Params::default().alert_retention_ms;
    assert_eq!(
        state.recent_alerts(0, T0 + week - 1).await.unwrap().len(),
        1
    );
    assert!(
        state
            .recent_alerts(0, T0 + week + 10_000)
            .await
            .unwrap()
            .is_empty()
    );
}
