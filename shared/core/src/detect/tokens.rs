//! Provider tokens seen through the audit line's upstream attempts
//! ([`crate::audit::AuditRecord::attempts_iter`]): a token the provider rejected
//! ([`Rule::ProviderTokenInvalid`]) and a token that keeps failing and recovering
//! ([`Rule::ProviderTokenFlapping`]).
//!
//! One entry per token (`tok#<pool>/<id>`). Flapping counts, in fixed windows of
//! `flap_window_ms`, the token's successful and failed attempts and the changes between the
//! two (a failure is a 401/403 or a transient failure; a 429 is the provider pacing a busy
//! token and counts as neither). It fires when a window holds at least `flap_min_changes`
//! changes and failures are at least `flap_min_failure_ratio` of the attempts: a token that
//! fails now and then under load has a low ratio, a dead one has no changes.
//!
//! Idempotent: the entry keeps the newest (time, log event id) it counted and skips lines at
//! or before it (a retried batch counts nothing twice; a line arriving after a newer one of
//! the same token is not counted). Bounded: counters plus one evidence window.

use super::{Finding, Hit, Observed, Params, Rule, Window};
use crate::audit::AttemptOutcome;
use crate::clock::EpochMs;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One provider token's recent attempts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TokenState {
    /// Newest line counted: (time, log event id).
    #[serde(default)]
    pub through: Option<(EpochMs, String)>,
    /// Whether the last counted attempt succeeded (none before the first).
    #[serde(default)]
    pub last_ok: Option<bool>,
    /// Start of the current flapping window.
    #[serde(default)]
    pub window_start: EpochMs,
    #[serde(default)]
    pub ok: u64,
    #[serde(default)]
    pub failed: u64,
    #[serde(default)]
    pub changes: u64,
    /// Requests whose attempts changed the token's state, this window (evidence).
    #[serde(default, skip_serializing_if = "Window::is_empty")]
    pub flips: Window,
    /// Requests where the provider rejected the token (401/403), for evidence.
    #[serde(default, skip_serializing_if = "Window::is_empty")]
    pub rejected: Window,
}

/// The subject of a token alert: `token:<pool>/<id>`.
pub fn token_subject(pool: &str, token_id: &str) -> String {
    format!("token:{pool}/{token_id}")
}

/// Whether the line at (`at`, `event_id`) was counted already; marks it counted otherwise
/// (reusing the stored id's buffer: no allocation per line once the entry exists).
pub(super) fn seen(through: &mut Option<(EpochMs, String)>, at: EpochMs, event_id: &str) -> bool {
    match through {
        Some((t, id)) if (*t, id.as_str()) >= (at, event_id) => true,
        Some((t, id)) => {
            *t = at;
            id.clear();
            id.push_str(event_id);
            false
        }
        None => {
            *through = Some((at, event_id.to_owned()));
            false
        }
    }
}

/// Counts the attempts of one line that went to the token `token_id` of `pool`.
pub(super) fn observe(
    st: &mut TokenState,
    p: &Params,
    ev: &Observed<'_>,
    pool: &str,
    token_id: &str,
    out: &mut Vec<Finding>,
) {
    if seen(&mut st.through, ev.at, ev.event_id) {
        return;
    }
    let rec = ev.record;
    if ev.at >= st.window_start.saturating_add(p.flap_window_ms) {
        st.window_start = ev.at;
        st.ok = 0;
        st.failed = 0;
        st.changes = 0;
        st.flips = Window::default();
    }
    let mut flap = false;
    for (i, (_, outcome)) in rec
        .attempts_iter()
        .filter(|(t, _)| *t == token_id)
        .enumerate()
    {
        let ok = match outcome {
            AttemptOutcome::Ok => true,
            AttemptOutcome::AuthRejected | AttemptOutcome::Transient => false,
            AttemptOutcome::RateLimited => continue,
        };
        if ok {
            st.ok += 1;
        } else {
            st.failed += 1;
        }
        let hit = || Hit {
            at: ev.at,
            event_id: format!("{}#{i}", ev.event_id),
            request_id: rec.request_id.clone(),
            key_id: None,
            network: None,
            reason: rec.reason,
        };
        if outcome == AttemptOutcome::AuthRejected {
            st.rejected
                .add(hit(), p.token_invalid_suppression_ms, p.window_cap);
            let mut f = token_finding(
                Rule::ProviderTokenInvalid,
                ev,
                pool,
                token_id,
                &st.rejected,
                p,
            );
            f.counts
                .insert("rejections".into(), st.rejected.len() as u64);
            f.suppress_until = Some(ev.at.saturating_add(p.token_invalid_suppression_ms));
            out.push(f);
        }
        if st.last_ok.is_some_and(|last| last != ok) {
            st.changes += 1;
            st.flips.add(hit(), p.flap_window_ms, p.window_cap);
            flap = true;
        }
        st.last_ok = Some(ok);
    }
    let attempts = st.ok + st.failed;
    if flap
        && st.changes >= p.flap_min_changes
        && attempts > 0
        && st.failed as f64 >= p.flap_min_failure_ratio * attempts as f64
    {
        let mut f = token_finding(
            Rule::ProviderTokenFlapping,
            ev,
            pool,
            token_id,
            &st.flips,
            p,
        );
        f.first_seen = st.window_start;
        f.counts.insert("changes".into(), st.changes);
        f.counts.insert("ok".into(), st.ok);
        f.counts.insert("failed".into(), st.failed);
        out.push(f);
    }
}

fn token_finding(
    rule: Rule,
    ev: &Observed<'_>,
    pool: &str,
    token_id: &str,
    w: &Window,
    p: &Params,
) -> Finding {
    Finding {
        rule,
        subject: token_subject(pool, token_id),
        severity: rule.severity(),
        at: ev.at,
        first_seen: w.oldest().unwrap_or(ev.at),
        counts: BTreeMap::new(),
        evidence: w.evidence(p.evidence_max),
        networks: Vec::new(),
        // A pool token serves every tenant of its pool: the alert is the operator's.
        tenant: None,
        user_agents: Vec::new(),
        suppress_until: None,
        note: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditRecord, Decision};

    fn line(i: u64, outcomes: &[(&str, AttemptOutcome)]) -> AuditRecord {
        let mut r = AuditRecord::new(format!("r{i}"), i);
        r.decision = Decision::Allow;
        r.pool = Some("openai".into());
        for (t, o) in outcomes {
            r.note_attempt(t, *o);
            r.attempts += 1;
            r.token_id = Some((*t).to_owned());
        }
        r
    }

    fn feed(st: &mut TokenState, lines: &[AuditRecord], token: &str) -> Vec<Finding> {
        let p = Params::default();
        let mut out = Vec::new();
        for (i, r) in lines.iter().enumerate() {
            let id = format!("e{i:04}");
            observe(
                st,
                &p,
                &Observed {
                    event_id: &id,
                    at: 1_000 + i as u64 * 1_000,
                    record: r,
                },
                "openai",
                token,
                &mut out,
            );
        }
        out
    }

    #[test]
    fn a_rejected_token_finds_once_per_rejection_and_a_replay_adds_nothing() {
        use AttemptOutcome::*;
        let lines = vec![line(0, &[("t1", AuthRejected), ("t2", Ok)])];
        let mut st = TokenState::default();
        let f = feed(&mut st, &lines, "t1");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule, Rule::ProviderTokenInvalid);
        assert_eq!(f[0].subject, "token:openai/t1");
        assert!(feed(&mut st, &lines, "t1").is_empty(), "replayed");
    }

    #[test]
    fn alternating_failures_flap_and_rare_ones_do_not() {
        use AttemptOutcome::*;
        let flapping: Vec<AuditRecord> = (0..12)
            .map(|i| {
                if i % 2 == 0 {
                    line(i, &[("t1", Transient), ("t2", Ok)])
                } else {
                    line(i, &[("t1", Ok)])
                }
            })
            .collect();
        let f = feed(&mut TokenState::default(), &flapping, "t1");
        assert!(f.iter().all(|f| f.rule == Rule::ProviderTokenFlapping));
        assert!(!f.is_empty());
        // One failure in fifty: changes, but a low failure share.
        let busy: Vec<AuditRecord> = (0..300)
            .map(|i| {
                if i % 50 == 0 {
                    line(i, &[("t1", Transient), ("t1", Ok)])
                } else {
                    line(i, &[("t1", Ok)])
                }
            })
            .collect();
        assert!(feed(&mut TokenState::default(), &busy, "t1").is_empty());
        // Pacing (429) is not failing.
        let paced: Vec<AuditRecord> = (0..40)
            .map(|i| line(i, &[("t1", RateLimited), ("t2", Ok)]))
            .collect();
        assert!(feed(&mut TokenState::default(), &paced, "t1").is_empty());
    }
}
