//! Limit counters shared across instances (a `LimitStore`), with this instance's last known
//! state of each subject so the warm path needs no read: a decision is made on the cached
//! counters and written conditionally on their version; losing that race returns the current
//! state, and the decision is made again. A refusal on the requests-per-minute limit is
//! remembered until its window resets, so a caller hammering a full window costs no write.

use crate::cache::TtlCache;
use crate::context::StoreCalls;
use std::sync::Arc;
use tollgate_core::clock::{Clock, EpochMs};
use tollgate_core::limits::{
    Ask, Counters, LimitKind, LimitRefusal, Limits, MINUTE_MS, Windows, admit, settle,
};
use tollgate_core::ports::{CounterWrite, LimitStore, StoreError, SwapOutcome, VersionedCounters};

/// How many times a decision is retried after losing a race before giving up (fail closed).
const MAX_ROUNDS: usize = 16;

/// Counters of subjects nobody touched for this long may be dropped by the store.
const IDLE_TTL_MS: u64 = 40 * 86_400_000;

/// A request admitted against one or more subjects: what settlement needs.
#[derive(Debug, Clone)]
pub struct Admission {
    pub subjects: Vec<String>,
    pub ask: Ask,
    pub windows: Windows,
    pub request_id: String,
}

#[derive(Debug)]
pub enum LimitError {
    Refused(LimitRefusal),
    Store(StoreError),
}

pub struct LimitCounters {
    store: Arc<dyn LimitStore>,
    clock: Arc<dyn Clock>,
    known: TtlCache<String, VersionedCounters>,
    refused_until: TtlCache<String, LimitRefusal>,
    lease_ms: u64,
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
        }
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
    pub async fn admit(
        &self,
        subjects: &[(String, Limits)],
        ask: Ask,
        request_id: &str,
        calls: &mut StoreCalls,
    ) -> Result<Admission, LimitError> {
        let now = self.clock.now_ms();
        for (s, _) in subjects {
            if let Some(r) = self.refused_until.get(s.as_str())
                && r.reset_at > now
            {
                return Err(LimitError::Refused(LimitRefusal { remaining: 0, ..r }));
            }
        }
        for _ in 0..MAX_ROUNDS {
            let mut writes = Vec::with_capacity(subjects.len());
            for (subject, limits) in subjects {
                let state = self
                    .state(subject, calls)
                    .await
                    .map_err(LimitError::Store)?;
                match admit(
                    limits,
                    &state.counters,
                    &ask,
                    request_id,
                    now,
                    self.lease_ms,
                ) {
                    Ok(next) => writes.push(CounterWrite {
                        subject: subject.clone(),
                        expected_version: state.version,
                        counters: next,
                    }),
                    Err(r) => {
                        if r.kind == LimitKind::Rpm {
                            // The window's count only grows until it resets.
                            self.refused_until.insert(subject.clone(), r);
                        }
                        return Err(LimitError::Refused(r));
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
                });
            }
        }
        Err(LimitError::Store(StoreError::Unavailable(
            "limit counters: too many concurrent writers".into(),
        )))
    }

    /// Replaces the admission's reservation by `actual` and frees its concurrency slot.
    pub async fn settle(
        &self,
        a: &Admission,
        actual: Ask,
        calls: &mut StoreCalls,
    ) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
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
