//! Token choice and token health. Pure: the caller passes the pool view, the clock reading,
//! a round-robin counter and an RNG; the store applies the returned [`TokenChange`].

use crate::clock::EpochMs;
use crate::records::{PoolView, Strategy, TokenRecord, TokenStatus};
use rand::Rng;

/// Can this token take a request now?
pub fn is_eligible(t: &TokenRecord, now: EpochMs) -> bool {
    if t.expires_at.is_some_and(|e| e <= now) {
        return false;
    }
    match t.status {
        TokenStatus::Active => true,
        // A cooldown that has run out is the breaker's half-open state: one request may try.
        TokenStatus::Cooling => t.cooldown_until.is_none_or(|c| c <= now),
        TokenStatus::Invalid | TokenStatus::Expired | TokenStatus::Disabled => false,
    }
}

/// Picks a token for the next attempt, skipping `exclude` (tokens already tried for this
/// request). `rr` is a per-pool counter the caller increments on each call.
pub fn select<'a>(
    view: &'a PoolView,
    now: EpochMs,
    exclude: &[&str],
    rr: u64,
    rng: &mut impl Rng,
) -> Option<&'a TokenRecord> {
    let mut candidates: Vec<&TokenRecord> = view
        .tokens
        .iter()
        .filter(|t| is_eligible(t, now) && !exclude.contains(&t.token_id.as_str()))
        .collect();
    if candidates.is_empty() {
        return None;
    }
    // A stable order makes round-robin fair across instances reading the same pool.
    candidates.sort_by(|a, b| a.token_id.cmp(&b.token_id));
    match view.strategy {
        Strategy::RoundRobin => Some(candidates[(rr % candidates.len() as u64) as usize]),
        Strategy::LeastUsed => candidates.into_iter().min_by_key(|t| t.requests),
        Strategy::Weighted => {
            let total: u64 = candidates.iter().map(|t| u64::from(t.weight)).sum();
            if total == 0 {
                return Some(candidates[(rr % candidates.len() as u64) as usize]);
            }
            let mut pick = rng.gen_range(0..total);
            for t in &candidates {
                let w = u64::from(t.weight);
                if pick < w {
                    return Some(t);
                }
                pick -= w;
            }
            candidates.last().copied()
        }
        Strategy::Priority => {
            let best = candidates.iter().map(|t| t.priority).min()?;
            let tier: Vec<&TokenRecord> = candidates
                .into_iter()
                .filter(|t| t.priority == best)
                .collect();
            Some(tier[(rr % tier.len() as u64) as usize])
        }
    }
}

/// What one upstream attempt told us about a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// 401 / 403: the credential itself is bad.
    AuthRejected,
    /// 429, with the cooldown the provider's headers asked for, if any.
    RateLimited {
        retry_after_ms: Option<u64>,
    },
    /// 5xx, connect error, timeout.
    Transient,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Consecutive transient failures that open the breaker.
    pub breaker_threshold: u32,
    pub breaker_open_ms: u64,
    /// Cooldown for a 429 that named no reset time.
    pub default_cooldown_ms: u64,
    /// Upper bound on any provider-requested cooldown.
    pub max_cooldown_ms: u64,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self {
            breaker_threshold: 3,
            breaker_open_ms: 30_000,
            default_cooldown_ms: 30_000,
            max_cooldown_ms: 3_600_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureCount {
    Reset,
    Increment,
}

/// A state change for the store to apply (conditionally, on `version`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenChange {
    pub status: TokenStatus,
    /// The status differs from the one the change was computed from: the stored `version`
    /// is bumped, so other instances' pending changes against the old status lose the race.
    pub bump_version: bool,
    pub cooldown_until: Option<EpochMs>,
    pub failures: FailureCount,
    pub last_error: Option<&'static str>,
}

/// The health state machine. `None` means nothing to write (a success on a healthy token).
pub fn next_state(
    t: &TokenRecord,
    outcome: Outcome,
    now: EpochMs,
    policy: &HealthPolicy,
) -> Option<TokenChange> {
    next_state_inner(t, outcome, now, policy).map(|mut c| {
        c.bump_version = c.status != t.status;
        c
    })
}

fn next_state_inner(
    t: &TokenRecord,
    outcome: Outcome,
    now: EpochMs,
    policy: &HealthPolicy,
) -> Option<TokenChange> {
    match outcome {
        Outcome::Success => {
            if t.status == TokenStatus::Active && t.consecutive_failures == 0 {
                None
            } else {
                Some(TokenChange {
                    status: TokenStatus::Active,
                    bump_version: false,
                    cooldown_until: None,
                    failures: FailureCount::Reset,
                    last_error: None,
                })
            }
        }
        Outcome::AuthRejected => Some(TokenChange {
            status: TokenStatus::Invalid,
            bump_version: false,
            cooldown_until: None,
            failures: FailureCount::Increment,
            last_error: Some("upstream_auth_rejected"),
        }),
        Outcome::RateLimited { retry_after_ms } => {
            let wait = retry_after_ms
                .unwrap_or(policy.default_cooldown_ms)
                .min(policy.max_cooldown_ms);
            Some(TokenChange {
                status: TokenStatus::Cooling,
                bump_version: false,
                cooldown_until: Some(now + wait),
                failures: FailureCount::Increment,
                last_error: Some("upstream_rate_limited"),
            })
        }
        Outcome::Transient => {
            let failures = t.consecutive_failures.saturating_add(1);
            if failures >= policy.breaker_threshold {
                Some(TokenChange {
                    status: TokenStatus::Cooling,
                    bump_version: false,
                    cooldown_until: Some(now + policy.breaker_open_ms),
                    failures: FailureCount::Increment,
                    last_error: Some("breaker_open"),
                })
            } else {
                Some(TokenChange {
                    status: t.status,
                    bump_version: false,
                    cooldown_until: t.cooldown_until,
                    failures: FailureCount::Increment,
                    last_error: Some("upstream_unavailable"),
                })
            }
        }
    }
}

/// Applies a change to a cached record, as the store would.
pub fn apply(t: &mut TokenRecord, c: &TokenChange) {
    if c.bump_version {
        t.version += 1;
    }
    t.status = c.status;
    t.cooldown_until = c.cooldown_until;
    match c.failures {
        FailureCount::Reset => t.consecutive_failures = 0,
        FailureCount::Increment => {
            t.consecutive_failures = t.consecutive_failures.saturating_add(1);
            t.total_failures = t.total_failures.saturating_add(1);
        }
    }
    if let Some(e) = c.last_error {
        t.last_error = Some(e.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{ProviderKind, SecretRef};
    use rand::{SeedableRng, rngs::StdRng};

    fn tok(id: &str) -> TokenRecord {
        TokenRecord::new(
            id,
            "p",
            ProviderKind::Openai,
            "http://x/v1",
            SecretRef::SecretsManager {
                secret_id: format!("tollgate/pool/{id}"),
            },
            "ops",
            0,
        )
    }

    fn view(strategy: Strategy, tokens: Vec<TokenRecord>) -> PoolView {
        PoolView {
            strategy,
            tokens,
            tenant_concurrency: None,
        }
    }

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    #[test]
    fn round_robin_cycles_through_eligible_tokens_in_id_order() {
        let v = view(Strategy::RoundRobin, vec![tok("b"), tok("a"), tok("c")]);
        let picks: Vec<_> = (0..6)
            .map(|i| select(&v, 0, &[], i, &mut rng()).unwrap().token_id.clone())
            .collect();
        assert_eq!(picks, ["a", "b", "c", "a", "b", "c"]);
    }

    #[test]
    fn least_used_picks_fewest_requests() {
        let mut a = tok("a");
        a.requests = 10;
        let mut b = tok("b");
        b.requests = 3;
        let v = view(Strategy::LeastUsed, vec![a, b]);
        assert_eq!(select(&v, 0, &[], 0, &mut rng()).unwrap().token_id, "b");
    }

    #[test]
    fn weighted_follows_weights_and_never_picks_zero_weight() {
        let mut a = tok("a");
        a.weight = 3;
        let mut b = tok("b");
        b.weight = 1;
        let mut z = tok("z");
        z.weight = 0;
        let v = view(Strategy::Weighted, vec![a, b, z]);
        let mut r = rng();
        let mut counts = std::collections::HashMap::new();
        for i in 0..4000 {
            *counts
                .entry(select(&v, 0, &[], i, &mut r).unwrap().token_id.clone())
                .or_insert(0) += 1;
        }
        let a = counts["a"] as f64;
        let b = counts["b"] as f64;
        assert!((a / b - 3.0).abs() < 0.5, "ratio {a}/{b}");
        assert!(!counts.contains_key("z"));
    }

    #[test]
    fn priority_uses_lower_tier_only_when_higher_is_exhausted() {
        let mut primary = tok("primary");
        primary.priority = 0;
        let mut backup = tok("backup");
        backup.priority = 1;
        let mut v = view(Strategy::Priority, vec![backup, primary]);
        for i in 0..5 {
            assert_eq!(
                select(&v, 0, &[], i, &mut rng()).unwrap().token_id,
                "primary"
            );
        }
        assert_eq!(
            select(&v, 0, &["primary"], 0, &mut rng()).unwrap().token_id,
            "backup"
        );
        v.tokens[1].status = TokenStatus::Invalid;
        assert_eq!(
            select(&v, 0, &[], 0, &mut rng()).unwrap().token_id,
            "backup"
        );
    }

    #[test]
    fn ineligible_tokens_are_skipped_and_cooldown_expiry_readmits() {
        let mut cooling = tok("cooling");
        cooling.status = TokenStatus::Cooling;
        cooling.cooldown_until = Some(1_000);
        let mut expired = tok("expired");
        expired.expires_at = Some(500);
        let mut disabled = tok("disabled");
        disabled.status = TokenStatus::Disabled;
        let v = view(Strategy::RoundRobin, vec![cooling, expired, disabled]);
        assert!(select(&v, 999, &[], 0, &mut rng()).is_none());
        assert_eq!(
            select(&v, 1_000, &[], 0, &mut rng()).unwrap().token_id,
            "cooling"
        );
    }

    #[test]
    fn auth_rejection_marks_invalid() {
        let c = next_state(
            &tok("a"),
            Outcome::AuthRejected,
            0,
            &HealthPolicy::default(),
        )
        .unwrap();
        assert_eq!(c.status, TokenStatus::Invalid);
    }

    #[test]
    fn rate_limit_cools_for_retry_after_capped() {
        let p = HealthPolicy::default();
        let c = next_state(
            &tok("a"),
            Outcome::RateLimited {
                retry_after_ms: Some(2_000),
            },
            10_000,
            &p,
        )
        .unwrap();
        assert_eq!(c.status, TokenStatus::Cooling);
        assert_eq!(c.cooldown_until, Some(12_000));
        let capped = next_state(
            &tok("a"),
            Outcome::RateLimited {
                retry_after_ms: Some(u64::MAX / 2),
            },
            0,
            &p,
        )
        .unwrap();
        assert_eq!(capped.cooldown_until, Some(p.max_cooldown_ms));
        let default = next_state(
            &tok("a"),
            Outcome::RateLimited {
                retry_after_ms: None,
            },
            0,
            &p,
        )
        .unwrap();
        assert_eq!(default.cooldown_until, Some(p.default_cooldown_ms));
    }

    #[test]
    fn breaker_opens_after_threshold_then_half_open_success_closes_it() {
        let p = HealthPolicy::default();
        let mut t = tok("a");
        for _ in 0..p.breaker_threshold - 1 {
            let c = next_state(&t, Outcome::Transient, 0, &p).unwrap();
            assert_eq!(c.status, TokenStatus::Active);
            apply(&mut t, &c);
        }
        let open = next_state(&t, Outcome::Transient, 100, &p).unwrap();
        assert_eq!(open.status, TokenStatus::Cooling);
        assert_eq!(open.cooldown_until, Some(100 + p.breaker_open_ms));
        apply(&mut t, &open);
        assert!(!is_eligible(&t, 100 + p.breaker_open_ms - 1));
        assert!(is_eligible(&t, 100 + p.breaker_open_ms));
        // Half-open: one more failure re-opens at once.
        let again = next_state(&t, Outcome::Transient, 200_000, &p).unwrap();
        assert_eq!(again.status, TokenStatus::Cooling);
        let closed = next_state(&t, Outcome::Success, 200_000, &p).unwrap();
        assert_eq!(closed.status, TokenStatus::Active);
        assert_eq!(closed.failures, FailureCount::Reset);
        apply(&mut t, &closed);
        assert_eq!(t.consecutive_failures, 0);
        assert_eq!(next_state(&t, Outcome::Success, 0, &p), None);
    }
}
