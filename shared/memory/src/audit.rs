//! In-memory detector state and alert sink for the audit function's unit tests, plus the
//! contract every [`AuditStateStore`] implementation must pass.

use crate::lock;
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Mutex;
use tollgate_core::clock::EpochMs;
use tollgate_core::detect::port::{AlertHistory, AlertSink, AuditStateStore, SaveOutcome, Stored};
use tollgate_core::detect::{Alert, Entry, EntryId, Suppression};
use tollgate_core::ports::{OpCounter, StoreError};

/// [`AuditStateStore`] in a map: entry, version, expiry.
#[derive(Debug, Default)]
pub struct MemoryAuditState {
    items: Mutex<BTreeMap<String, (Entry, u64, EpochMs)>>,
    failing: std::sync::atomic::AtomicBool,
    pub ops: OpCounter,
}

impl MemoryAuditState {
    pub fn new() -> Self {
        Self::default()
    }

    /// When set, every call fails as an unreachable service would.
    pub fn set_failing(&self, failing: bool) {
        self.failing
            .store(failing, std::sync::atomic::Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            Err(StoreError::Unavailable("injected failure".into()))
        } else {
            Ok(())
        }
    }

    /// Every stored entry (expired ones included), by id string.
    pub fn dump(&self) -> Result<BTreeMap<String, Entry>, StoreError> {
        Ok(lock(&self.items)?
            .iter()
            .map(|(k, (e, _, _))| (k.clone(), e.clone()))
            .collect())
    }
}

#[async_trait]
impl AuditStateStore for MemoryAuditState {
    async fn load(&self, ids: &[EntryId], now: EpochMs) -> Result<Vec<Stored>, StoreError> {
        self.check()?;
        self.ops.read();
        let items = lock(&self.items)?;
        Ok(ids
            .iter()
            .map(|id| match items.get(&id.to_string()) {
                None => Stored::default(),
                Some((e, v, exp)) => Stored {
                    entry: (*exp > now).then(|| e.clone()),
                    version: *v,
                },
            })
            .collect())
    }

    async fn save(
        &self,
        id: &EntryId,
        entry: &Entry,
        expected: u64,
        expires_at: EpochMs,
    ) -> Result<SaveOutcome, StoreError> {
        self.check()?;
        self.ops.write();
        let mut items = lock(&self.items)?;
        let key = id.to_string();
        let current = items.get(&key).map_or(0, |(_, v, _)| *v);
        if current != expected {
            return Ok(SaveOutcome::Conflict);
        }
        items.insert(key, (entry.clone(), expected + 1, expires_at));
        Ok(SaveOutcome::Saved)
    }
}

#[async_trait]
impl AlertHistory for MemoryAuditState {
    async fn recent_alerts(
        &self,
        since: EpochMs,
        now: EpochMs,
    ) -> Result<Vec<Suppression>, StoreError> {
        self.check()?;
        self.ops.read();
        let items = lock(&self.items)?;
        let mut out: Vec<Suppression> = items
            .values()
            .filter(|(_, _, exp)| *exp > now)
            .filter_map(|(e, _, _)| match e {
                Entry::Suppression(s) if s.opened_at >= since => Some(s.clone()),
                _ => None,
            })
            .collect();
        sort_newest_first(&mut out);
        Ok(out)
    }
}

/// Newest alert first; ties by id, so listings are stable.
pub fn sort_newest_first(v: &mut [Suppression]) {
    v.sort_by(|a, b| {
        b.opened_at
            .cmp(&a.opened_at)
            .then_with(|| a.alert_id().cmp(&b.alert_id()))
    });
}

/// [`AlertSink`] that keeps what it was given.
#[derive(Debug, Default)]
pub struct MemoryAlertSink {
    alerts: Mutex<Vec<Alert>>,
    failing: std::sync::atomic::AtomicBool,
}

impl MemoryAlertSink {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_failing(&self, failing: bool) {
        self.failing
            .store(failing, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn alerts(&self) -> Vec<Alert> {
        self.alerts.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl AlertSink for MemoryAlertSink {
    async fn publish(&self, alert: &Alert) -> Result<(), StoreError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Unavailable("injected failure".into()));
        }
        lock(&self.alerts)?.push(alert.clone());
        Ok(())
    }
}

/// The behaviour every [`AuditStateStore`] must show. Ids are prefixed with `ns`.
#[allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "contract test suite: failing loudly is its job"
)]
pub mod contract {
    use super::*;
    use tollgate_core::detect::{KeyState, Window};

    const NOW: EpochMs = 1_700_000_000_000;

    fn key_entry(first: EpochMs) -> Entry {
        let mut k = KeyState {
            first_seen: Some(first),
            last_seen: first + 5,
            ..KeyState::default()
        };
        k.networks.insert("203.0.113.0/24".into(), first + 5);
        k.networks.insert("2001:db8:1::/48".into(), first + 1);
        Entry::Key(k)
    }

    pub async fn absent_entries_load_as_version_zero(s: &dyn AuditStateStore, ns: &str) {
        let ids = [
            EntryId::Key(format!("{ns}k-absent")),
            EntryId::Network(format!("{ns}198.51.100.0/24")),
        ];
        let got = s.load(&ids, NOW).await.expect("load");
        assert_eq!(got, vec![Stored::default(), Stored::default()]);
        assert_eq!(s.load(&[], NOW).await.expect("empty load"), vec![]);
    }

    pub async fn saves_are_conditional_on_the_version(s: &dyn AuditStateStore, ns: &str) {
        let id = EntryId::Key(format!("{ns}k1"));
        let e1 = key_entry(NOW);
        assert_eq!(
            s.save(&id, &e1, 0, NOW + 60_000).await.expect("save"),
            SaveOutcome::Saved
        );
        assert_eq!(
            s.save(&id, &e1, 0, NOW + 60_000).await.expect("save"),
            SaveOutcome::Conflict,
            "a second creator loses"
        );
        let got = s.load(std::slice::from_ref(&id), NOW).await.expect("load");
        assert_eq!(
            got,
            vec![Stored {
                entry: Some(e1.clone()),
                version: 1
            }]
        );
        let e2 = key_entry(NOW + 7);
        assert_eq!(
            s.save(&id, &e2, 1, NOW + 60_000).await.expect("save"),
            SaveOutcome::Saved
        );
        assert_eq!(
            s.save(&id, &e1, 1, NOW + 60_000).await.expect("save"),
            SaveOutcome::Conflict,
            "a stale writer loses"
        );
        let got = s.load(std::slice::from_ref(&id), NOW).await.expect("load");
        assert_eq!(got[0].entry, Some(e2));
        assert_eq!(got[0].version, 2);
    }

    pub async fn every_entry_kind_round_trips_in_order(s: &dyn AuditStateStore, ns: &str) {
        use tollgate_core::detect::{Rule, Severity, Suppression};
        let window = Feeder.window();
        // (`auth#global` is one item shared by every run in an emulator: not used here.)
        let subject = format!("key:{ns}k2");
        let ids = [
            EntryId::Network(format!("{ns}198.51.100.0/24")),
            EntryId::Pool(format!("{ns}openai")),
            EntryId::Key(format!("{ns}k2")),
            EntryId::Suppression(Rule::AuthTargetedKey, subject.clone()),
        ];
        let entries = [
            Entry::Window(window.clone()),
            Entry::Window(window),
            key_entry(NOW),
            Entry::Suppression(Suppression {
                rule: Rule::AuthTargetedKey,
                subject,
                severity: Severity::High,
                opened_at: NOW,
                until: NOW + 3_600_000,
                first_seen: NOW - 5,
                last_seen: NOW,
                occurrences: 3,
                evidence: vec!["req-1".into(), "req-2".into()],
                tenant: Some("acme".into()),
                alert: None,
                related: Default::default(),
            }),
        ];
        for (id, e) in ids.iter().zip(&entries) {
            assert_eq!(
                s.save(id, e, 0, NOW + 60_000).await.expect("save"),
                SaveOutcome::Saved
            );
        }
        let mut asked = ids.to_vec();
        asked.reverse();
        asked.push(ids[0].clone());
        let got = s.load(&asked, NOW).await.expect("load");
        let want: Vec<Stored> = [
            &entries[3],
            &entries[2],
            &entries[1],
            &entries[0],
            &entries[0],
        ]
        .into_iter()
        .map(|e| Stored {
            entry: Some(e.clone()),
            version: 1,
        })
        .collect();
        assert_eq!(got, want);
    }

    pub async fn expired_entries_load_absent_but_can_be_replaced(
        s: &dyn AuditStateStore,
        ns: &str,
    ) {
        let id = EntryId::Pool(format!("{ns}expiring"));
        let e = Entry::Window(Feeder.window());
        // Whole seconds: a store may keep expiry in seconds (DynamoDB TTL), rounded up.
        s.save(&id, &e, 0, NOW + 10_000).await.expect("save");
        let got = s
            .load(std::slice::from_ref(&id), NOW + 9_999)
            .await
            .expect("load");
        assert!(got[0].entry.is_some(), "not expired yet");
        let got = s
            .load(std::slice::from_ref(&id), NOW + 10_000)
            .await
            .expect("load");
        assert_eq!(
            got,
            vec![Stored {
                entry: None,
                version: 1
            }]
        );
        assert_eq!(
            s.save(&id, &e, 1, NOW + 100_000).await.expect("save"),
            SaveOutcome::Saved
        );
        let got = s
            .load(std::slice::from_ref(&id), NOW + 10_000)
            .await
            .expect("load");
        assert_eq!(got[0].entry, Some(e));
    }

    /// Many ids in one load (more than one DynamoDB BatchGetItem page).
    pub async fn large_loads_keep_order(s: &dyn AuditStateStore, ns: &str) {
        let ids: Vec<EntryId> = (0..130)
            .map(|i| EntryId::Key(format!("{ns}many-{i}")))
            .collect();
        for id in ids.iter().step_by(10) {
            s.save(id, &key_entry(NOW), 0, NOW + 60_000)
                .await
                .expect("save");
        }
        let got = s.load(&ids, NOW).await.expect("load");
        assert_eq!(got.len(), 130);
        for (i, st) in got.iter().enumerate() {
            assert_eq!(st.entry.is_some(), i % 10 == 0, "entry {i}");
        }
    }

    fn suppression(
        ns: &str,
        rule: tollgate_core::detect::Rule,
        opened_at: EpochMs,
    ) -> (EntryId, Entry) {
        use tollgate_core::detect::{Finding, Params};
        let subject = format!("key:{ns}hist");
        let f = Finding {
            rule,
            subject: subject.clone(),
            severity: rule.severity(),
            at: opened_at,
            first_seen: opened_at - 10,
            counts: [("events".to_owned(), 4u64)].into_iter().collect(),
            evidence: vec!["req-h1".into()],
            networks: vec!["198.51.100.0/24".into()],
            tenant: Some("acme".into()),
            user_agents: vec![],
            suppress_until: None,
            note: None,
        };
        let mut st = tollgate_core::detect::AuditState::new();
        let a = st.suppress(&Params::default(), &f).expect("a new alert");
        st.record_alert(&a);
        let id = EntryId::Suppression(rule, subject);
        let e = st.get(&id).expect("suppression entry");
        (id, e)
    }

    /// Kept alerts: suppression entries only, opened since `since`, unexpired, newest first,
    /// with the alert as published.
    pub async fn alert_history_lists_recent_alerts_newest_first(
        s: &(impl AuditStateStore + AlertHistory),
        ns: &str,
    ) {
        use tollgate_core::detect::Rule;
        // Far in the future, so other runs sharing a table do not interfere with `since`.
        let base = NOW * 2 + 1_000_000;
        let (old_id, old) = suppression(ns, Rule::DlpBlockBurst, base - 10_000);
        let (new_id, new) = suppression(ns, Rule::KeyRefusedOutside, base);
        let (gone_id, gone) = suppression(ns, Rule::AuthTargetedKey, base + 5);
        s.save(&old_id, &old, 0, base + 60_000).await.expect("save");
        s.save(&new_id, &new, 0, base + 60_000).await.expect("save");
        s.save(&gone_id, &gone, 0, base + 2_000)
            .await
            .expect("save");
        s.save(
            &EntryId::Key(format!("{ns}hist")),
            &key_entry(base),
            0,
            base + 60_000,
        )
        .await
        .expect("save");
        let got = s
            .recent_alerts(base - 20_000, base + 10_000)
            .await
            .expect("recent");
        let mine: Vec<_> = got
            .iter()
            .filter(|x| x.subject == format!("key:{ns}hist"))
            .collect();
        assert_eq!(
            mine.len(),
            2,
            "expired and non-alert entries left out: {mine:?}"
        );
        assert_eq!(mine[0].rule, Rule::KeyRefusedOutside, "newest first");
        assert_eq!(mine[1].rule, Rule::DlpBlockBurst);
        let alert = mine[0].alert.as_ref().expect("the alert as published");
        assert_eq!(alert.counts.get("events"), Some(&4));
        let got = s
            .recent_alerts(base - 1, base + 10_000)
            .await
            .expect("recent");
        assert!(
            got.iter().all(|x| x.opened_at >= base - 1),
            "since is respected"
        );
    }

    struct Feeder;

    impl Feeder {
        fn window(&self) -> Window {
            let mut w = Window::default();
            for i in 0..3u64 {
                w.add(
                    tollgate_core::detect::Hit {
                        at: NOW + i,
                        event_id: format!("ev-{i}"),
                        request_id: format!("req-{i}"),
                        key_id: Some("KEY000000001".into()),
                        network: Some("198.51.100.0/24".into()),
                        reason: tollgate_core::reason::Reason::BadChecksum,
                    },
                    60_000,
                    10,
                );
            }
            w
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_audit_state_passes_the_contract() {
        let s = MemoryAuditState::new();
        contract::absent_entries_load_as_version_zero(&s, "m-").await;
        contract::saves_are_conditional_on_the_version(&s, "m-").await;
        contract::every_entry_kind_round_trips_in_order(&s, "m-").await;
        contract::expired_entries_load_absent_but_can_be_replaced(&s, "m-").await;
        contract::large_loads_keep_order(&s, "m-").await;
        contract::alert_history_lists_recent_alerts_newest_first(&s, "m-").await;
    }

    #[tokio::test]
    async fn memory_sink_keeps_alerts_and_can_fail() {
        let sink = MemoryAlertSink::new();
        sink.set_failing(true);
        let f = tollgate_core::detect::Finding {
            rule: tollgate_core::detect::Rule::DlpBlockBurst,
            subject: "key:K".into(),
            severity: tollgate_core::detect::Severity::Medium,
            at: 5,
            first_seen: 1,
            counts: Default::default(),
            evidence: vec!["r1".into()],
            networks: vec![],
            tenant: None,
            user_agents: vec![],
            suppress_until: None,
            note: None,
        };
        let a = Alert::from_finding(&f, 10);
        assert!(sink.publish(&a).await.is_err());
        sink.set_failing(false);
        sink.publish(&a).await.expect("publish");
        assert_eq!(sink.alerts(), vec![a]);
    }
}
