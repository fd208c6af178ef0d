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
    pub const ALL: [Rule; 7] = [
        Rule::AuthScanNetwork,
        Rule::AuthStuffing,
        Rule::AuthTargetedKey,
        Rule::KeyNewNetwork,
        Rule::KeyRefusedOutside,
        Rule::DlpBlockBurst,
        Rule::PoolTokensFailing,
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
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            Rule::AuthScanNetwork | Rule::DlpBlockBurst => Severity::Medium,
            Rule::KeyNewNetwork => Severity::Medium,
            Rule::AuthStuffing
            | Rule::AuthTargetedKey
            | Rule::KeyRefusedOutside
            | Rule::PoolTokensFailing => Severity::High,
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
    /// [`Rule::KeyRefusedOutside`]: window, source-network refusals, scope refusals.
    pub outside_window_ms: u64,
    pub outside_min_source: usize,
    pub outside_min_scope: usize,
    /// [`Rule::DlpBlockBurst`]: window and blocked requests of one key.
    pub dlp_window_ms: u64,
    pub dlp_min_blocks: usize,
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
            outside_window_ms: HOUR,
            outside_min_source: 2,
            outside_min_scope: 10,
            dlp_window_ms: 10 * MINUTE,
            dlp_min_blocks: 5,
            pool_window_ms: 5 * MINUTE,
            pool_min_failures: 3,
            suppression_ms: HOUR,
            window_cap: 256,
            evidence_max: 20,
            key_retention_ms: 90 * DAY,
            alert_retention_ms: 7 * DAY,
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
            self.outside_window_ms,
            self.dlp_window_ms,
            self.pool_window_ms,
        ]
        .into_iter()
        .max()
        .unwrap_or(HOUR)
    }
}
