//! When to try again, on which token, after how long. Bounded in total attempts; full-jitter
//! exponential backoff for transient failures; immediate failover for auth and rate limits.

use crate::pool::Outcome;
use rand::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Upstream attempts per client request, all tokens together.
    pub max_attempts: u32,
    /// Extra tries on the same token after a transient failure before moving on.
    pub same_token_retries: u32,
    pub base_backoff_ms: u64,
    pub max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            same_token_retries: 0,
            base_backoff_ms: 25,
            max_backoff_ms: 1_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    SameToken { after_ms: u64 },
    OtherToken { after_ms: u64 },
    GiveUp,
}

impl RetryPolicy {
    /// Full jitter: uniform in `0..=min(max, base * 2^n)`.
    pub fn backoff_ms(&self, n: u32, rng: &mut impl Rng) -> u64 {
        let cap = self
            .base_backoff_ms
            .saturating_mul(1u64 << n.min(20))
            .min(self.max_backoff_ms);
        rng.gen_range(0..=cap)
    }

    /// `attempts` counts attempts made so far (≥ 1); `same_token_tries` those on this token;
    /// `transient_so_far` the transient failures so far in this request (drives backoff).
    pub fn decide(
        &self,
        outcome: Outcome,
        attempts: u32,
        same_token_tries: u32,
        transient_so_far: u32,
        rng: &mut impl Rng,
    ) -> Next {
        if outcome == Outcome::Success || attempts >= self.max_attempts {
            return Next::GiveUp;
        }
        match outcome {
            Outcome::Success => Next::GiveUp,
            Outcome::AuthRejected | Outcome::RateLimited { .. } => Next::OtherToken { after_ms: 0 },
            Outcome::Transient => {
                let after_ms = self.backoff_ms(transient_so_far.saturating_sub(1), rng);
                if same_token_tries <= self.same_token_retries {
                    Next::SameToken { after_ms }
                } else {
                    Next::OtherToken { after_ms }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{SeedableRng, rngs::StdRng};

    #[test]
    fn auth_and_rate_limit_fail_over_at_once() {
        let p = RetryPolicy::default();
        let mut r = StdRng::seed_from_u64(1);
        assert_eq!(
            p.decide(Outcome::AuthRejected, 1, 1, 0, &mut r),
            Next::OtherToken { after_ms: 0 }
        );
        assert_eq!(
            p.decide(
                Outcome::RateLimited {
                    retry_after_ms: Some(5)
                },
                1,
                1,
                0,
                &mut r
            ),
            Next::OtherToken { after_ms: 0 }
        );
    }

    #[test]
    fn attempts_are_bounded() {
        let p = RetryPolicy::default();
        let mut r = StdRng::seed_from_u64(1);
        assert_eq!(
            p.decide(Outcome::Transient, p.max_attempts, 1, 1, &mut r),
            Next::GiveUp
        );
    }

    #[test]
    fn transient_retries_same_token_then_moves_on_with_jittered_backoff() {
        let p = RetryPolicy {
            same_token_retries: 1,
            ..RetryPolicy::default()
        };
        let mut r = StdRng::seed_from_u64(1);
        assert!(matches!(
            p.decide(Outcome::Transient, 1, 1, 1, &mut r),
            Next::SameToken { after_ms } if after_ms <= p.base_backoff_ms
        ));
        assert!(matches!(
            p.decide(Outcome::Transient, 2, 2, 2, &mut r),
            Next::OtherToken { after_ms } if after_ms <= p.base_backoff_ms * 2
        ));
    }

    #[test]
    fn backoff_grows_then_caps_and_jitters() {
        let p = RetryPolicy::default();
        let mut r = StdRng::seed_from_u64(9);
        let samples: Vec<u64> = (0..200).map(|_| p.backoff_ms(30, &mut r)).collect();
        assert!(samples.iter().all(|&s| s <= p.max_backoff_ms));
        let distinct: std::collections::HashSet<_> = samples.iter().collect();
        assert!(distinct.len() > 50, "full jitter spreads the waits");
    }
}
