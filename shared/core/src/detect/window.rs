//! A bounded, time-ordered window of request events: the one data structure every rate rule
//! uses. It also makes the rules idempotent per log event: an event whose id the window
//! already holds (a batch Lambda retried) is not counted twice.

use crate::clock::EpochMs;
use crate::reason::Reason;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, VecDeque};

/// One request as a window keeps it: ids and the reason, never a key value or prompt text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hit {
    pub at: EpochMs,
    /// The CloudWatch Logs event id the request's audit line arrived in.
    pub event_id: String,
    pub request_id: String,
    /// Key id (the public 12-character part), when the line names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Source network (/24 or /48), when the line has a source address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    pub reason: Reason,
}

/// Hits within `span` milliseconds of the newest one, oldest first, at most `cap` of them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Window {
    pub hits: VecDeque<Hit>,
}

impl Window {
    /// Adds `hit` unless the window already holds its event id or it is older than the
    /// window; then drops what fell out of the span and the oldest beyond `cap`. Returns
    /// whether the hit was added (false: a replay, or too old to matter).
    pub fn add(&mut self, hit: Hit, span: u64, cap: usize) -> bool {
        if self.hits.iter().any(|h| h.event_id == hit.event_id) {
            return false;
        }
        let newest = self.newest().map_or(hit.at, |n| n.max(hit.at));
        if hit.at.saturating_add(span) <= newest {
            return false;
        }
        let pos = self
            .hits
            .iter()
            .rposition(|h| h.at <= hit.at)
            .map_or(0, |p| p + 1);
        self.hits.insert(pos, hit);
        self.prune(newest, span);
        while self.hits.len() > cap.max(1) {
            self.hits.pop_front();
        }
        true
    }

    /// Drops hits `span` or more milliseconds older than `now`.
    pub fn prune(&mut self, now: EpochMs, span: u64) {
        while self
            .hits
            .front()
            .is_some_and(|h| h.at.saturating_add(span) <= now)
        {
            self.hits.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.hits.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hits.is_empty()
    }

    pub fn newest(&self) -> Option<EpochMs> {
        self.hits.back().map(|h| h.at)
    }

    pub fn oldest(&self) -> Option<EpochMs> {
        self.hits.front().map(|h| h.at)
    }

    /// Hits whose reason passes `f`.
    pub fn count_where(&self, f: impl Fn(Reason) -> bool) -> usize {
        self.hits.iter().filter(|h| f(h.reason)).count()
    }

    pub fn distinct_keys(&self) -> usize {
        self.hits
            .iter()
            .filter_map(|h| h.key_id.as_deref())
            .collect::<BTreeSet<_>>()
            .len()
    }

    pub fn distinct_networks(&self) -> usize {
        self.hits
            .iter()
            .filter_map(|h| h.network.as_deref())
            .collect::<BTreeSet<_>>()
            .len()
    }

    /// Request ids of the newest `n` hits, oldest first.
    pub fn evidence(&self, n: usize) -> Vec<String> {
        let skip = self.hits.len().saturating_sub(n);
        self.hits
            .iter()
            .skip(skip)
            .map(|h| h.request_id.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(at: EpochMs, id: &str) -> Hit {
        Hit {
            at,
            event_id: format!("ev-{id}"),
            request_id: format!("req-{id}"),
            key_id: None,
            network: None,
            reason: Reason::BadChecksum,
        }
    }

    #[test]
    fn a_replayed_event_is_not_counted_twice() {
        let mut w = Window::default();
        assert!(w.add(hit(10, "a"), 1_000, 10));
        assert!(!w.add(hit(10, "a"), 1_000, 10));
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn hits_outside_the_span_fall_out_and_late_old_hits_are_ignored() {
        let mut w = Window::default();
        w.add(hit(0, "a"), 100, 10);
        w.add(hit(50, "b"), 100, 10);
        w.add(hit(120, "c"), 100, 10);
        assert_eq!(w.evidence(10), vec!["req-b", "req-c"]);
        assert!(!w.add(hit(10, "old"), 100, 10), "older than the window");
        // Out of order but inside the span: kept in time order.
        assert!(w.add(hit(60, "d"), 100, 10));
        assert_eq!(w.evidence(10), vec!["req-b", "req-d", "req-c"]);
    }

    #[test]
    fn the_cap_keeps_the_newest_hits() {
        let mut w = Window::default();
        for i in 0..10 {
            w.add(hit(i, &i.to_string()), 1_000, 4);
        }
        assert_eq!(w.len(), 4);
        assert_eq!(w.oldest(), Some(6));
        assert_eq!(w.evidence(2), vec!["req-8", "req-9"]);
    }
}
