//! The rules, their parameters and what each one tells the operator to do.

use serde::{Deserialize, Serialize};

/// Every rule the audit function runs. Its snake_case string is part of the alert schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Many malformed / unknown keys from one source network: someone scanning.
    AuthScanNetwork,
    /// Many malformed / unknown keys from many networks at once: credential stuffing.
    AuthStuffing,
    /// A real key id presented with wrong secrets: someone guessing one key.
    AuthTargetedKey,
    /// A key in sustained use from a network never seen for it after its learning period.
    KeyNewNetwork,
    /// A valid key refused by its source networks or scopes: held by someone outside.
    KeyRefusedOutside,
    /// Many requests of one key blocked for sensitive data.
    DlpBlockBurst,
    /// A pool with no usable token: every token failed, or none was eligible.
    PoolTokensFailing,
    /// A key's requests, tokens or spend this hour far above its own baseline.
    KeyRateSpike,
    /// A key in sustained use by a client (user agent family) never seen for it after its
    /// learning period.
    KeyNewUserAgent,
    /// A canary key was used: it was only ever planted, so whoever used it read where it was
    /// planted. No false positives; always an alert, at the highest severity.
    CanaryKeyUsed,
    /// A key's or tenant's spend rate would exhaust its budget well before the window resets.
    BudgetBurnRate,
    /// The provider rejected a pool token (401/403): the proxy marked it invalid.
    ProviderTokenInvalid,
    /// A pool token alternating between working and failing.
    ProviderTokenFlapping,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl Rule {
    pub const ALL: [Rule; 13] = [
        Rule::AuthScanNetwork,
        Rule::AuthStuffing,
        Rule::AuthTargetedKey,
        Rule::KeyNewNetwork,
        Rule::KeyRefusedOutside,
        Rule::DlpBlockBurst,
        Rule::PoolTokensFailing,
        Rule::KeyRateSpike,
        Rule::CanaryKeyUsed,
        Rule::KeyNewUserAgent,
        Rule::BudgetBurnRate,
        Rule::ProviderTokenInvalid,
        Rule::ProviderTokenFlapping,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::AuthScanNetwork => "auth_scan_network",
            Rule::AuthStuffing => "auth_stuffing",
            Rule::AuthTargetedKey => "auth_targeted_key",
            Rule::KeyNewNetwork => "key_new_network",
            Rule::KeyRefusedOutside => "key_refused_outside",
            Rule::DlpBlockBurst => "dlp_block_burst",
            Rule::PoolTokensFailing => "pool_tokens_failing",
            Rule::KeyRateSpike => "key_rate_spike",
            Rule::CanaryKeyUsed => "canary_key_used",
            Rule::KeyNewUserAgent => "key_new_user_agent",
            Rule::BudgetBurnRate => "budget_burn_rate",
            Rule::ProviderTokenInvalid => "provider_token_invalid",
            Rule::ProviderTokenFlapping => "provider_token_flapping",
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            Rule::AuthScanNetwork | Rule::DlpBlockBurst => Severity::Medium,
            Rule::KeyNewNetwork | Rule::KeyRateSpike | Rule::KeyNewUserAgent => Severity::Medium,
            Rule::BudgetBurnRate | Rule::ProviderTokenFlapping => Severity::Medium,
            Rule::ProviderTokenInvalid => Severity::High,
            Rule::AuthStuffing
            | Rule::AuthTargetedKey
            | Rule::KeyRefusedOutside
            | Rule::PoolTokensFailing => Severity::High,
            Rule::CanaryKeyUsed => Severity::Critical,
        }
    }

    /// What to do first. One line; the README next to this module has the reasoning.
    pub fn runbook(self) -> &'static str {
        match self {
            Rule::AuthScanNetwork => {
                "Someone is probing the gateway from one network with malformed or unknown keys; no key is known to be at risk. Block the network at the WAF / API Gateway resource policy if it persists."
            }
            Rule::AuthStuffing => {
                "Keys from a list are being tried from many networks. Check for a leaked key list (repositories, paste sites), enable a WAF rate rule on 401s, and watch for auth_targeted_key alerts."
            }
            Rule::AuthTargetedKey => {
                "A real key id is being presented with wrong secrets: someone knows the id. Confirm with the key's owner, then `tollgate key revoke <id>` and issue a new key; look up the evidence request ids for the source addresses."
            }
            Rule::KeyNewNetwork => {
                "A key is in sustained use from a network it never used before. Ask the owner whether they moved; if not, `tollgate key suspend <id>` (reversible) and rotate it."
            }
            Rule::KeyRefusedOutside => {
                "A valid key was refused for its source network or scopes: whoever holds it is outside its intended use. Treat the key as leaked: suspend or revoke it and reissue to the owner."
            }
            Rule::DlpBlockBurst => {
                "Many requests of one key were blocked for sensitive data. Contact the key's owner: a user pasting secrets, a misbehaving integration, or exfiltration through prompts."
            }
            Rule::KeyRateSpike => {
                "A key is far above its own usual rate for this hour of the week. Ask the owner about a new job or load test; if nobody knows, `tollgate key suspend <id>` (reversible), look up the evidence request ids, and set limits (`tollgate limits set`)."
            }
            Rule::KeyNewUserAgent => {
                "A key is in sustained use by client software it never used before (user agent family; versions are ignored). Ask the owner whether they changed tools; if not, `tollgate key suspend <id>` (reversible) and rotate it. The user agent is the caller's claim: weigh it with the key's networks."
            }
            Rule::CanaryKeyUsed => {
                "A canary key was used. It was only ever planted, so whoever used it read the place it was planted: `tollgate key show <id>` for its name and owner, treat every secret stored in that place as leaked and rotate it, and look up the source addresses and user agents of the evidence request ids. The proxy refused the request; nothing reached a provider, and the key needs no suspension."
            }
            Rule::BudgetBurnRate => {
                "At the recent spend rate the budget runs out well before its window resets, and the proxy will then refuse every request of the key (or tenant) until it does. Ask the owner whether the spend is expected: if so raise the budget (`tollgate limits set`); if not, find what spends (the evidence request ids: model, user agent, source) and suspend the key (`tollgate key suspend <id>`, reversible)."
            }
            Rule::ProviderTokenInvalid => {
                "The provider rejected a pool token (401/403) and the proxy marked it invalid: it was revoked, deleted or rotated upstream (providers revoke keys they find leaked). Rotate or replace it: `tollgate token add` a fresh one to the pool, then `tollgate token remove <id>`; check the provider's console for why it was revoked."
            }
            Rule::ProviderTokenFlapping => {
                "A pool token keeps alternating between working and failing: every failure costs a request a retry. Run `tollgate pool health <pool>`, check the provider's status for that account or region, and disable the token (`tollgate token disable`) if it keeps flapping. If every token of the pool flaps at once, it is the provider."
            }
            Rule::PoolTokensFailing => {
                "No provider token of the pool is usable: requests are failing. Run `tollgate pool health <pool>`; replace invalid tokens (`tollgate token add`) or wait for cooling ones."
            }
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

const MINUTE: u64 = 60_000;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// Every threshold and window of every rule. Defaults are documented in the README.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Params {
    /// [`Rule::AuthScanNetwork`]: window, and failures from one network within it.
    pub scan_window_ms: u64,
    pub scan_min_failures: usize,
    /// [`Rule::AuthStuffing`]: window, failures across all networks, distinct networks.
    pub stuffing_window_ms: u64,
    pub stuffing_min_failures: usize,
    pub stuffing_min_networks: usize,
    /// [`Rule::AuthTargetedKey`]: window, and wrong-secret attempts on one key id.
    pub targeted_window_ms: u64,
    pub targeted_min_mismatches: usize,
    /// [`Rule::KeyNewNetwork`]: how long a key's networks are learned before a new one
    /// counts, the window and number of allowed requests from a new network that make it
    /// an alert, and how many networks / candidates a key keeps.
    pub learning_ms: u64,
    pub new_network_window_ms: u64,
    pub new_network_min_requests: usize,
    pub max_networks_per_key: usize,
    pub max_candidates_per_key: usize,
    /// [`Rule::KeyNewUserAgent`]: the window and number of served requests from a user agent
    /// family not learned for the key that make it an alert (after the same learning period
    /// as networks), and how many families / candidates a key keeps.
    pub new_user_agent_window_ms: u64,
    pub new_user_agent_min_requests: usize,
    pub max_user_agents_per_key: usize,
    pub max_user_agent_candidates_per_key: usize,
    /// [`Rule::KeyRefusedOutside`]: window, source-network refusals, scope refusals.
    pub outside_window_ms: u64,
    pub outside_min_source: usize,
    pub outside_min_scope: usize,
    /// [`Rule::DlpBlockBurst`]: window and blocked requests of one key.
    pub dlp_window_ms: u64,
    pub dlp_min_blocks: usize,
    /// [`Rule::CanaryKeyUsed`]: how long a canary key's uses are kept (evidence, and
    /// idempotency per log event); every use is a finding.
    pub canary_window_ms: u64,
    /// [`Rule::PoolTokensFailing`]: window and failed requests of one pool.
    pub pool_window_ms: u64,
    pub pool_min_failures: usize,
    /// One alert per (rule, subject) per this long; later occurrences are counted into it.
    pub suppression_ms: u64,
    /// Most hits any one window keeps (bounds state size; above every threshold).
    pub window_cap: usize,
    /// Most request ids an alert carries as evidence.
    pub evidence_max: usize,
    /// How long a key's learned networks live after its last use.
    pub key_retention_ms: u64,
    /// How long an alert stays listable (`tollgate alerts list`) after it opened.
    pub alert_retention_ms: u64,
    /// [`Rule::KeyRateSpike`]: EWM weights (hour-of-week slots, all hours), samples a slot
    /// needs before it is used, hours of history before the rule fires, how many standard
    /// deviations and how many times the mean a spike is, and absolute floors per hour.
    pub rate_slot_alpha: f64,
    pub rate_alpha: f64,
    pub rate_min_slot_samples: u32,
    pub rate_min_history_hours: u32,
    pub rate_k_sigma: f64,
    pub rate_min_ratio: f64,
    pub rate_floor_requests: f64,
    pub rate_floor_tokens: f64,
    pub rate_floor_cost_usd: f64,
    /// [`Rule::BudgetBurnRate`]: how far back the spend rate is measured for daily and
    /// monthly budgets; the budget share spent before it may fire; how soon (as a share of
    /// the window: day 24 h, month 30 days) the projection must run out, and at least how
    /// long before the window resets.
    pub burn_day_lookback_ms: u64,
    pub burn_month_lookback_ms: u64,
    pub burn_min_used_fraction: f64,
    pub burn_horizon_fraction: f64,
    pub burn_min_early_fraction: f64,
    /// [`Rule::ProviderTokenInvalid`]: one alert per token per this long.
    pub token_invalid_suppression_ms: u64,
    /// [`Rule::ProviderTokenFlapping`]: the (fixed) window, the ok/failed changes within it,
    /// and the share of its attempts that failed.
    pub flap_window_ms: u64,
    pub flap_min_changes: u64,
    pub flap_min_failure_ratio: f64,
    /// Grouping: a finding about a key while another rule's alert about the same key is open
    /// is counted into that alert (as a related rule) instead of sent, unless it is more
    /// severe or its rule responds on its own (auto-suspend).
    pub group_related: bool,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            scan_window_ms: 10 * MINUTE,
            scan_min_failures: 30,
            stuffing_window_ms: 10 * MINUTE,
            stuffing_min_failures: 100,
            stuffing_min_networks: 20,
            targeted_window_ms: HOUR,
            targeted_min_mismatches: 3,
            learning_ms: 2 * DAY,
            new_network_window_ms: HOUR,
            new_network_min_requests: 5,
            max_networks_per_key: 32,
            max_candidates_per_key: 8,
            new_user_agent_window_ms: HOUR,
            new_user_agent_min_requests: 5,
            max_user_agents_per_key: 16,
            max_user_agent_candidates_per_key: 4,
            outside_window_ms: HOUR,
            outside_min_source: 2,
            outside_min_scope: 10,
            dlp_window_ms: 10 * MINUTE,
            dlp_min_blocks: 5,
            canary_window_ms: HOUR,
            pool_window_ms: 5 * MINUTE,
            pool_min_failures: 3,
            suppression_ms: HOUR,
            window_cap: 256,
            evidence_max: 20,
            key_retention_ms: 90 * DAY,
            alert_retention_ms: 7 * DAY,
            rate_slot_alpha: 0.3,
            rate_alpha: 0.05,
            rate_min_slot_samples: 2,
            rate_min_history_hours: 24,
            rate_k_sigma: 6.0,
            rate_min_ratio: 5.0,
            rate_floor_requests: 200.0,
            rate_floor_tokens: 200_000.0,
            rate_floor_cost_usd: 5.0,
            burn_day_lookback_ms: HOUR,
            burn_month_lookback_ms: DAY,
            burn_min_used_fraction: 0.25,
            burn_horizon_fraction: 0.25,
            burn_min_early_fraction: 0.04,
            token_invalid_suppression_ms: DAY,
            flap_window_ms: 10 * MINUTE,
            flap_min_changes: 6,
            flap_min_failure_ratio: 0.2,
            group_related: true,
        }
    }
}

impl Params {
    /// The longest window any rule uses: how long a window entry is worth keeping.
    pub fn longest_window_ms(&self) -> u64 {
        [
            self.scan_window_ms,
            self.stuffing_window_ms,
            self.targeted_window_ms,
            self.new_network_window_ms,
            self.new_user_agent_window_ms,
            self.outside_window_ms,
            self.dlp_window_ms,
            self.pool_window_ms,
            self.canary_window_ms,
        ]
        .into_iter()
        .max()
        .unwrap_or(HOUR)
    }
}
