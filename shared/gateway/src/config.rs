//! Gateway settings, read once from the environment at start-up. A malformed value stops the
//! process with a message naming the variable; a missing one takes the documented default.

use tollgate_core::pool::HealthPolicy;
use tollgate_core::retry::RetryPolicy;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {name} must be {expected}, got {value:?}")]
    Invalid {
        name: &'static str,
        expected: &'static str,
        value: String,
    },
    #[error("environment variable {0} is required")]
    Missing(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// How long a verified (or unknown) key id is trusted from memory. Revocation takes effect
    /// within this time. 0 disables the cache.
    pub key_cache_ttl_ms: u64,
    /// How long a pool view is reused before re-reading it. This instance's own observations
    /// apply at once regardless.
    pub pool_cache_ttl_ms: u64,
    /// How long a provider token value or the pepper is reused before re-reading it.
    pub secret_cache_ttl_ms: u64,
    pub max_body_bytes: usize,
    /// Time allowed for an upstream to send response headers, and between stream chunks.
    pub upstream_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    pub pepper_secret_id: String,
    /// How long a concurrency slot is held by a request that never settles (an instance
    /// that died mid-request). At least the longest a request can run.
    pub limit_lease_ms: u64,
    /// Output tokens reserved for a request that sets no `max_tokens` of its own.
    pub default_max_output_tokens: u64,
    pub retry: RetryPolicy,
    pub health: HealthPolicy,
    /// How long an issuer's JWK Set is reused before it is fetched again.
    pub jwks_cache_ttl_ms: u64,
    /// The least time between two fetches of one JWK Set outside the TTL: a token with an
    /// unknown `kid` refreshes it at most this often, and a failed fetch is not retried sooner.
    pub jwks_refresh_min_ms: u64,
    /// Time allowed for one JWK Set fetch.
    pub jwks_timeout_ms: u64,
    /// Keys expiring within this long are flagged in the audit line (`key_expiring_in_days`)
    /// and counted in the EMF line (`key_expiring`). 0 turns warnings off.
    pub key_expiry_warn_ms: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            key_cache_ttl_ms: 5_000,
            pool_cache_ttl_ms: 2_000,
            secret_cache_ttl_ms: 60_000,
            max_body_bytes: 1 << 20,
            upstream_timeout_ms: 120_000,
            connect_timeout_ms: 5_000,
            pepper_secret_id: "tollgate/pepper".into(),
            limit_lease_ms: 900_000,
            default_max_output_tokens: 4_096,
            retry: RetryPolicy::default(),
            health: HealthPolicy::default(),
            jwks_cache_ttl_ms: 300_000,
            jwks_refresh_min_ms: 30_000,
            jwks_timeout_ms: 3_000,
            key_expiry_warn_ms: 14 * 86_400_000,
        }
    }
}

fn num(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
) -> Result<u64, ConfigError> {
    match get(name) {
        None => Ok(default),
        Some(v) if v.trim().is_empty() => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| ConfigError::Invalid {
            name,
            expected: "a whole number",
            value: v,
        }),
    }
}

impl GatewayConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Same as [`from_env`](Self::from_env) over any lookup (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let d = Self::default();
        let retry = RetryPolicy {
            max_attempts: num(
                &get,
                "TOLLGATE_MAX_ATTEMPTS",
                u64::from(d.retry.max_attempts),
            )?
            .clamp(1, 10) as u32,
            ..d.retry
        };
        let health = HealthPolicy {
            breaker_threshold: num(
                &get,
                "TOLLGATE_BREAKER_THRESHOLD",
                u64::from(d.health.breaker_threshold),
            )?
            .max(1) as u32,
            breaker_open_ms: num(&get, "TOLLGATE_BREAKER_OPEN_MS", d.health.breaker_open_ms)?,
            ..d.health
        };
        Ok(Self {
            key_cache_ttl_ms: num(&get, "TOLLGATE_KEY_CACHE_TTL_MS", d.key_cache_ttl_ms)?,
            pool_cache_ttl_ms: num(&get, "TOLLGATE_POOL_CACHE_TTL_MS", d.pool_cache_ttl_ms)?,
            secret_cache_ttl_ms: num(&get, "TOLLGATE_SECRET_CACHE_TTL_MS", d.secret_cache_ttl_ms)?,
            max_body_bytes: num(&get, "TOLLGATE_MAX_BODY_BYTES", d.max_body_bytes as u64)? as usize,
            upstream_timeout_ms: num(&get, "TOLLGATE_UPSTREAM_TIMEOUT_MS", d.upstream_timeout_ms)?
                .max(1),
            connect_timeout_ms: num(&get, "TOLLGATE_CONNECT_TIMEOUT_MS", d.connect_timeout_ms)?
                .max(1),
            pepper_secret_id: get("TOLLGATE_PEPPER_SECRET_ID")
                .filter(|s| !s.trim().is_empty())
                .unwrap_or(d.pepper_secret_id),
            limit_lease_ms: num(&get, "TOLLGATE_LIMIT_LEASE_MS", d.limit_lease_ms)?.max(1),
            default_max_output_tokens: num(
                &get,
                "TOLLGATE_DEFAULT_MAX_OUTPUT_TOKENS",
                d.default_max_output_tokens,
            )?,
            retry,
            health,
            jwks_cache_ttl_ms: num(&get, "TOLLGATE_JWKS_CACHE_TTL_MS", d.jwks_cache_ttl_ms)?,
            jwks_refresh_min_ms: num(&get, "TOLLGATE_JWKS_REFRESH_MIN_MS", d.jwks_refresh_min_ms)?,
            jwks_timeout_ms: num(&get, "TOLLGATE_JWKS_TIMEOUT_MS", d.jwks_timeout_ms)?.max(1),
            key_expiry_warn_ms: num(
                &get,
                "TOLLGATE_KEY_EXPIRY_WARN_DAYS",
                d.key_expiry_warn_ms / 86_400_000,
            )?
            .saturating_mul(86_400_000),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn defaults_apply_and_bad_numbers_name_the_variable() {
        let empty: HashMap<&str, String> = HashMap::new();
        let c = GatewayConfig::from_lookup(|k| empty.get(k).cloned()).unwrap();
        assert_eq!(c, GatewayConfig::default());
        let bad: HashMap<&str, String> = [("TOLLGATE_KEY_CACHE_TTL_MS", "soon".to_owned())].into();
        let err = GatewayConfig::from_lookup(|k| bad.get(k).cloned()).unwrap_err();
        assert!(err.to_string().contains("TOLLGATE_KEY_CACHE_TTL_MS"));
        let zero: HashMap<&str, String> = [("TOLLGATE_KEY_CACHE_TTL_MS", "0".to_owned())].into();
        assert_eq!(
            GatewayConfig::from_lookup(|k| zero.get(k).cloned())
                .unwrap()
                .key_cache_ttl_ms,
            0
        );
        assert_eq!(c.key_expiry_warn_ms, 14 * 86_400_000);
        let days: HashMap<&str, String> =
            [("TOLLGATE_KEY_EXPIRY_WARN_DAYS", "30".to_owned())].into();
        assert_eq!(
            GatewayConfig::from_lookup(|k| days.get(k).cloned())
                .unwrap()
                .key_expiry_warn_ms,
            30 * 86_400_000
        );
    }
}
