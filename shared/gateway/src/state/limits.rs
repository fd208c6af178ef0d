//! Limit counters shared across instances (a `LimitStore`), with this instance's last known
//! state of each subject so the warm path needs no read: a decision is made on the cached
//! counters and written conditionally on their version; losing that race returns the current
//! state, and the decision is made again. A refusal on the requests-per-minute limit is
//! remembered until its window resets, so a caller hammering a full window costs no write.
//!
//! Contention: requests of one instance for the same subject take turns (a striped local
//! lock held across decide-and-write), so they never race each other through the store —
//! only other instances can make a write lose. A loser decides again at once on the state
//! the refusal returned (the freshest there is: pausing would only let it go stale while the
//! winners carry on). Without the turn, N concurrent requests of one instance on one key make
//! N writers race per round and some lose every one of their rounds: a false 503.
//!
//! Across instances the race stays: with W instances writing one subject at once, a request
//! loses a round with probability up to (W-1)/W, so `MAX_ROUNDS` bounds how hot one subject
//! may run before admissions fail closed.

use crate::cache::TtlCache;
use crate::context::StoreCalls;
use std::sync::Arc;
use tollgate_core::clock::{Clock, EpochMs};
use tollgate_core::limits::{
    Ask, Counters, LimitKind, LimitRefusal, Limits, MINUTE_MS, Micros, Windows, admit, settle,
    settle_delta,
};
use tollgate_core::ports::{
    CounterDelta, CounterWrite, DeltaOutcome, LimitStore, StoreError, SwapOutcome, UsageWrite,
    VersionedCounters,
};

/// How many times a decision is retried after losing a race before giving up (fail closed).
/// Three instances busy on one subject lose 64 rounds in a row with probability (2/3)^64.
const MAX_ROUNDS: usize = 64;

/// Local lock stripes: subjects hash onto them; a request holds the stripes of all its
/// subjects (in index order, so two requests never wait on each other crosswise).
const STRIPES: usize = 64;

/// Counters of subjects nobody touched for this long may be dropped by the store.
const IDLE_TTL_MS: u64 = 40 * 86_400_000;

/// What a settlement did.
#[derive(Debug)]
pub struct Settled {
    /// The pool token's usage went with it (or may have: an error leaves it unknown, and it
    /// is not written twice).
    pub usage_written: bool,
    pub result: Result<(), StoreError>,
}

/// A request admitted against one or more subjects: what settlement needs.
#[derive(Debug, Clone)]
pub struct Admission {
    pub subjects: Vec<String>,
    pub ask: Ask,
    pub windows: Windows,
    pub request_id: String,
    /// Each subject's spend in the day and month windows at admission, this request's
    /// reservation excluded (same order as `subjects`); empty when no subject has a spend
    /// budget. The audit line reports it against the budgets.
    pub spent: Vec<(Micros, Micros)>,
}

#[derive(Debug)]
pub enum LimitError {
    /// A limit refused; the subject whose limit it was.
    Refused(LimitRefusal, String),
    Store(StoreError),
}

/// An admission on its way to the request that asked for it. Dropped before the request
/// claims it, it releases the reservation on the runtime.
struct Unclaimed {
    admission: Option<Admission>,
    counters: Arc<LimitCounters>,
}

impl Drop for Unclaimed {
    fn drop(&mut self) {
        let Some(a) = self.admission.take() else {
            return;
        };
        let counters = self.counters.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let mut calls = StoreCalls::default();
                if let Err(e) = counters.settle(&a, Ask::default(), None, &mut calls).await.result {
                    tracing::error!(error = %e, "releasing an abandoned admission failed; the reservation stays until its window ends");
                }
            });
        }
    }
}

/// Attempts of a settlement write whose outcome was unknown (see [`LimitCounters::settle`]).
const SETTLE_ATTEMPTS: u64 = 3;

pub struct LimitCounters {
    store: Arc<dyn LimitStore>,
    clock: Arc<dyn Clock>,
    known: TtlCache<String, VersionedCounters>,
    refused_until: TtlCache<String, LimitRefusal>,
    lease_ms: u64,
    stripes: Vec<tokio::sync::Mutex<()>>,
}

fn stripe_of(subject: &str) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    subject.hash(&mut h);
    (h.finish() % STRIPES as u64) as usize
}

impl LimitCounters {
    pub fn new(store: Arc<dyn LimitStore>, clock: Arc<dyn Clock>, lease_ms: u64) -> Self {
        Self {
            store,
            // The cached state is only a first guess (a stale one costs a lost race, never a
            // wrong decision): keep it a while.
            known: TtlCache::new(100_000, 10 * MINUTE_MS, clock.clone()),
            refused_until: TtlCache::new(100_000, MINUTE_MS, clock.clone()),
            clock,
            lease_ms,
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }

    /// Takes this instance's turn on every subject (see the module doc).
    async fn turn<'a>(
        &'a self,
        subjects: impl Iterator<Item = &'a str>,
    ) -> Vec<tokio::sync::MutexGuard<'a, ()>> {
        let mut idx: Vec<usize> = subjects.map(stripe_of).collect();
        idx.sort_unstable();
        idx.dedup();
        let mut guards = Vec::with_capacity(idx.len());
        for i in idx {
            if let Some(m) = self.stripes.get(i) {
                guards.push(m.lock().await);
            }
        }
        guards
    }

    /// A remembered refusal still in force for one of the subjects.
    fn remembered_refusal(
        &self,
        subjects: &[(String, Limits)],
        now: EpochMs,
    ) -> Option<LimitError> {
        subjects.iter().find_map(|(s, limits)| {
            self.refused_until
                .get(s.as_str())
                // A limit raised since the refusal may admit again: ask the store.
                .filter(|r| r.reset_at > now && limits.rpm.is_some_and(|l| l <= r.limit))
                .map(|r| LimitError::Refused(LimitRefusal { remaining: 0, ..r }, s.clone()))
        })
    }

    async fn state(
        &self,
        subject: &str,
        calls: &mut StoreCalls,
    ) -> Result<VersionedCounters, StoreError> {
        if let Some(s) = self.known.get(subject) {
            return Ok(s);
        }
        calls.reads += 1;
        let s = self.store.load_counters(subject).await?;
        self.known.insert(subject.to_owned(), s.clone());
        Ok(s)
    }

    /// Swaps `next` in for every subject; on a lost race the cache takes the current state.
    async fn swap(
        &self,
        writes: Vec<CounterWrite>,
        now: EpochMs,
        calls: &mut StoreCalls,
    ) -> Result<bool, StoreError> {
        calls.writes += 1;
        match self
            .store
            .swap_counters(&writes, now.saturating_add(IDLE_TTL_MS))
            .await?
        {
            SwapOutcome::Applied => {
                for w in writes {
                    self.known.insert(
                        w.subject,
                        VersionedCounters {
                            counters: w.counters,
                            version: w.expected_version + 1,
                        },
                    );
                }
                Ok(true)
            }
            SwapOutcome::Conflict(current) => {
                // Subjects the store did not report are read again next round.
                for w in &writes {
                    if !current.iter().any(|(s, _)| *s == w.subject) {
                        self.known.remove(w.subject.as_str());
                    }
                }
                for (s, c) in current {
                    self.known.insert(s, c);
                }
                Ok(false)
            }
        }
    }

    /// Admits `ask` against every `(subject, limits)` pair at once (all or none).
    ///
    /// The decision runs as its own task: a caller cancelled while its conditional write is
    /// on the wire (the client went away, the HTTP server dropped the handler) would never
    /// learn that the write applied, and its reservation would stay counted until the window
    /// ends. The task always sees the outcome; when nobody is waiting for it any more, it
    /// releases what it reserved.
    pub async fn admit(
        self: &Arc<Self>,
        subjects: &[(String, Limits)],
        ask: Ask,
        request_id: &str,
        calls: &mut StoreCalls,
    ) -> Result<Admission, LimitError> {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return self.admit_now(subjects, ask, request_id, calls).await;
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let this = self.clone();
        let subjects = subjects.to_vec();
        let request_id = request_id.to_owned();
        rt.spawn(async move {
            let mut task_calls = StoreCalls::default();
            let r = this
                .admit_now(&subjects, ask, &request_id, &mut task_calls)
                .await;
            let r = r.map(|a| Unclaimed {
                admission: Some(a),
                counters: this.clone(),
            });
            // Refused by a caller that has gone: `Unclaimed` releases on drop. Accepted but
            // never read (the caller went away after this send): the same, from the channel.
            let _ = tx.send((r, task_calls));
        });
        match rx.await {
            Ok((r, task_calls)) => {
                calls.reads += task_calls.reads;
                calls.writes += task_calls.writes;
                r.and_then(|mut u| {
                    u.admission.take().ok_or_else(|| {
                        LimitError::Store(StoreError::Unavailable("limit admission lost".into()))
                    })
                })
            }
            Err(_) => Err(LimitError::Store(StoreError::Unavailable(
                "limit admission task ended without an answer".into(),
            ))),
        }
    }

    async fn admit_now(
        &self,
        subjects: &[(String, Limits)],
        ask: Ask,
        request_id: &str,
        calls: &mut StoreCalls,
    ) -> Result<Admission, LimitError> {
        let now = self.clock.now_ms();
        if let Some(r) = self.remembered_refusal(subjects, now) {
            return Err(r);
        }
        let _turn = self.turn(subjects.iter().map(|(s, _)| s.as_str())).await;
        // Decide at the time of the decision, not of the arrival: the turn may have taken a
        // while, and the window may have filled meanwhile.
        let now = self.clock.now_ms();
        if let Some(r) = self.remembered_refusal(subjects, now) {
            return Err(r);
        }
        // Subjects whose state this admission has read from the store itself.
        let mut read_here: Vec<&str> = Vec::new();
        let budgeted = subjects
            .iter()
            .any(|(_, l)| l.budget_day_micros.is_some() || l.budget_month_micros.is_some());
        'rounds: for _ in 0..MAX_ROUNDS {
            let mut writes = Vec::with_capacity(subjects.len());
            let mut spent = Vec::new();
            for (subject, limits) in subjects {
                let cached = self.known.get(subject.as_str()).is_some();
                let state = self
                    .state(subject, calls)
                    .await
                    .map_err(LimitError::Store)?;
                if !cached {
                    read_here.push(subject);
                }
                match admit(
                    limits,
                    &state.counters,
                    &ask,
                    request_id,
                    now,
                    self.lease_ms,
                ) {
                    Ok(next) => {
                        if budgeted {
                            spent.push((
                                next.spend_day.saturating_sub(ask.spend),
                                next.spend_month.saturating_sub(ask.spend),
                            ));
                        }
                        writes.push(CounterWrite {
                            subject: subject.clone(),
                            expected_version: state.version,
                            counters: next,
                        });
                    }
                    Err(r) => {
                        if r.kind == LimitKind::Rpm {
                            // The window's count only grows until it resets: a refusal on
                            // any state this instance saw holds on the current one too.
                            self.refused_until.insert(subject.clone(), r);
                        } else if !read_here.contains(&subject.as_str()) {
                            // Spend, tokens and slots go down when requests settle, possibly
                            // on another instance: a refusal decided on a remembered state
                            // may be stale. Confirm it on the stored state (one read).
                            self.known.remove(subject.as_str());
                            continue 'rounds;
                        }
                        return Err(LimitError::Refused(r, subject.clone()));
                    }
                }
            }
            if self
                .swap(writes, now, calls)
                .await
                .map_err(LimitError::Store)?
            {
                return Ok(Admission {
                    subjects: subjects.iter().map(|(s, _)| s.clone()).collect(),
                    ask,
                    windows: Windows::at(now),
                    request_id: request_id.to_owned(),
                    spent,
                });
            }
        }
        Err(LimitError::Store(StoreError::Unavailable(
            "limit counters: too many concurrent writers".into(),
        )))
    }

    /// Whether [`LimitCounters::settle`] can carry the pool token's usage write.
    pub fn carries_usage(&self) -> bool {
        self.store.carries_usage()
    }

    /// Replaces the admission's reservation by `actual` and frees its concurrency slot, with
    /// `usage` (the pool token's usage write, when [`LimitCounters::carries_usage`]) in the
    /// same write.
    ///
    /// First as deltas ([`settle_delta`]): one write with no version to lose, so it does not
    /// retry, and it carries the usage. When the store did not apply it (a window moved on
    /// meanwhile, the token was deleted, a transaction conflict), nothing was written and the
    /// settlement is made the slow way: decide on the counters and swap them in
    /// conditionally; `usage_written` is then false and the caller writes the usage itself.
    /// An error of the delta write leaves its outcome unknown (a timeout on a write that did
    /// apply): it is retried, which is safe because every delta is conditional on the
    /// request's lease and removes it — a retry of an applied delta is not applied, and the
    /// slow way finds no lease and changes nothing (the usage may then be written twice:
    /// statistics only). Seen as a lease never released when the emulator timed out under a
    /// loaded `make test`. After the last attempt the reservation stays counted until its
    /// window ends — never the other way round.
    pub async fn settle(
        &self,
        a: &Admission,
        actual: Ask,
        usage: Option<&UsageWrite>,
        calls: &mut StoreCalls,
    ) -> Settled {
        let _turn = self.turn(a.subjects.iter().map(String::as_str)).await;
        let now = self.clock.now_ms();
        let usage = usage.filter(|_| self.store.carries_usage());
        let deltas: Vec<CounterDelta> = a
            .subjects
            .iter()
            .map(|s| CounterDelta {
                subject: s.clone(),
                delta: settle_delta(&a.ask, a.windows, &actual, &a.request_id, now),
            })
            .collect();
        let mut attempt = 0u64;
        let outcome = loop {
            calls.writes += 1;
            let r = self
                .store
                .apply_deltas(&deltas, usage, now.saturating_add(IDLE_TTL_MS))
                .await;
            attempt += 1;
            match r {
                Err(e) if attempt < SETTLE_ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, "limit settlement write failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
                }
                r => break r,
            }
        };
        match outcome {
            Ok(DeltaOutcome::Applied) => {
                // The store moved each version by one. A cached state at the version the
                // delta applied to becomes the settled state; a stale one stays stale (its
                // version is behind) and costs a lost race, as before.
                for d in &deltas {
                    if let Some(c) = self.known.get(d.subject.as_str()) {
                        let settled = d.delta.apply(&c.counters).unwrap_or_else(|| {
                            settle(&c.counters, &a.ask, a.windows, &actual, &a.request_id, now)
                        });
                        self.known.insert(
                            d.subject.clone(),
                            VersionedCounters {
                                counters: settled,
                                version: c.version + 1,
                            },
                        );
                    }
                }
                return Settled {
                    usage_written: usage.is_some(),
                    result: Ok(()),
                };
            }
            Ok(DeltaOutcome::NotApplied) => {}
            Err(e) => {
                return Settled {
                    usage_written: usage.is_some(),
                    result: Err(e),
                };
            }
        }
        Settled {
            usage_written: false,
            result: self.settle_by_swap(a, actual, now, calls).await,
        }
    }

    /// The settlement decided on the counters and swapped in on their version.
    async fn settle_by_swap(
        &self,
        a: &Admission,
        actual: Ask,
        now: EpochMs,
        calls: &mut StoreCalls,
    ) -> Result<(), StoreError> {
        for _ in 0..MAX_ROUNDS {
            let mut writes = Vec::with_capacity(a.subjects.len());
            for subject in &a.subjects {
                let state = self.state(subject, calls).await?;
                writes.push(CounterWrite {
                    subject: subject.clone(),
                    expected_version: state.version,
                    counters: settle(
                        &state.counters,
                        &a.ask,
                        a.windows,
                        &actual,
                        &a.request_id,
                        now,
                    ),
                });
            }
            if self.swap(writes, now, calls).await? {
                return Ok(());
            }
        }
        Err(StoreError::Unavailable(
            "limit counters: too many concurrent writers".into(),
        ))
    }

    /// The current counters of a subject, read from the store (operator views).
    pub async fn read(&self, subject: &str) -> Result<Counters, StoreError> {
        Ok(self.store.load_counters(subject).await?.counters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use tollgate_core::clock::FakeClock;
    use tollgate_core::limits::Limits;
    use tollgate_core::ports::{CounterDelta, CounterWrite, DeltaOutcome, SwapOutcome, UsageWrite};
    use tollgate_memory::MemoryStore;

    /// A store whose first settlement write applies and then reports an error, as a write
    /// that timed out after it landed does.
    struct TimesOutAfterApplying {
        inner: MemoryStore,
        failed: AtomicU32,
    }

    #[async_trait::async_trait]
    impl LimitStore for TimesOutAfterApplying {
        async fn load_counters(&self, subject: &str) -> Result<VersionedCounters, StoreError> {
            self.inner.load_counters(subject).await
        }
        async fn swap_counters(
            &self,
            writes: &[CounterWrite],
            expires_at: EpochMs,
        ) -> Result<SwapOutcome, StoreError> {
            self.inner.swap_counters(writes, expires_at).await
        }
        async fn apply_deltas(
            &self,
            deltas: &[CounterDelta],
            usage: Option<&UsageWrite>,
            expires_at: EpochMs,
        ) -> Result<DeltaOutcome, StoreError> {
            let r = self.inner.apply_deltas(deltas, usage, expires_at).await;
            if self.failed.fetch_add(1, Ordering::SeqCst) == 0 {
                return Err(StoreError::Unavailable("timed out".into()));
            }
            r
        }
        fn carries_usage(&self) -> bool {
            false
        }
    }

    #[tokio::test]
    async fn a_settlement_whose_write_timed_out_after_landing_releases_the_lease_once() {
        let store = Arc::new(TimesOutAfterApplying {
            inner: MemoryStore::new(),
            failed: AtomicU32::new(0),
        });
        let counters = Arc::new(LimitCounters::new(
            store.clone(),
            Arc::new(FakeClock::new(1_800_000_000_000)),
            60_000,
        ));
        let limits = Limits {
            budget_day_micros: Some(1_000_000),
            ..Limits::default()
        };
        let mut calls = StoreCalls::default();
        let ask = Ask {
            tokens: 100,
            spend: 5_000,
        };
        let a = counters
            .admit(&[("key#k".into(), limits)], ask, "req-1", &mut calls)
            .await
            .unwrap();
        let held = counters.read("key#k").await.unwrap();
        assert_eq!(held.inflight.len(), 1, "the admission holds a lease");
        let actual = Ask {
            tokens: 40,
            spend: 2_000,
        };
        let s = counters.settle(&a, actual, None, &mut calls).await;
        assert!(s.result.is_ok(), "{:?}", s.result);
        let after = counters.read("key#k").await.unwrap();
        assert!(
            after.inflight.is_empty(),
            "the lease is released: {after:?}"
        );
        // Applied exactly once: the spend is the actual usage, not the reservation and not
        // twice the correction.
        assert_eq!(after.spend_day, 2_000, "{after:?}");
        assert!(
            store.failed.load(Ordering::SeqCst) >= 2,
            "the write was retried"
        );
    }
}
