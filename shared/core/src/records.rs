//! The records the stores hold: tenants, client keys, pool tokens and pool settings.
//! Plain data with serde; the adapters map them to and from their storage.

use crate::clock::EpochMs;
use crate::key::{ClientKey, KeyEnv};
use crate::limits::Limits;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
pub use tollgate_dlp::Policy;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    pub tenant_id: String,
    pub name: String,
    /// Every tenant has an explicit owner (a person or team address).
    pub owner: String,
    pub created_at: EpochMs,
    #[serde(default)]
    pub disabled: bool,
    /// Model pattern → pool. Overrides the route's default pool.
    #[serde(default)]
    pub model_pools: BTreeMap<String, String>,
    /// Sensitive-data policy for this tenant's requests; `None` = the built-in defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dlp_policy: Option<Policy>,
    /// Limits on the tenant as a whole: every key's requests count against them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// Limits each key of the tenant gets unless the key overrides them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_limits: Option<Limits>,
}

impl Tenant {
    /// An enabled tenant with no model mapping and the built-in DLP policy: every other field
    /// at the value a stored record without it deserializes to. Set more with struct update
    /// syntax: `Tenant { disabled: true, ..Tenant::new(..) }`.
    pub fn new(
        tenant_id: impl Into<String>,
        name: impl Into<String>,
        owner: impl Into<String>,
        created_at: EpochMs,
    ) -> Self {
        Self {
            tenant_id: tenant_id.into(),
            name: name.into(),
            owner: owner.into(),
            created_at,
            disabled: false,
            model_pools: BTreeMap::new(),
            dlp_policy: None,
            limits: None,
            key_limits: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Active,
    /// Refused like a revoked key, but reversible (`tollgate key resume`): set by an operator
    /// or by the audit function's auto-response.
    Suspended,
    Revoked,
}

/// What the key store holds for one client key: never the key itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientKeyRecord {
    pub key_id: String,
    pub tenant_id: String,
    pub owner: String,
    pub env: KeyEnv,
    pub name: String,
    /// Hex of HMAC-SHA256(pepper[pepper_version], key).
    pub digest_hex: String,
    pub pepper_version: u32,
    pub last4: String,
    pub status: KeyStatus,
    pub created_at: EpochMs,
    #[serde(default)]
    pub expires_at: Option<EpochMs>,
    #[serde(default)]
    pub revoked_at: Option<EpochMs>,
    /// When and why the key was suspended (cleared when it is resumed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended_at: Option<EpochMs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended_reason: Option<String>,
    /// Empty = any source network.
    #[serde(default)]
    pub allowed_cidrs: Vec<IpNet>,
    /// Empty = any model. Entries are exact names or `prefix*`.
    #[serde(default)]
    pub allowed_models: Vec<String>,
    /// Empty = every route. Entries are route names (`chat.completions`, `messages`, ...).
    #[serde(default)]
    pub allowed_routes: Vec<String>,
    /// Model pattern → pool; beats the tenant's mapping.
    #[serde(default)]
    pub model_pools: BTreeMap<String, String>,
    /// Overrides layered over the tenant's sensitive-data policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dlp_policy: Option<Policy>,
    /// Overrides layered over the tenant's per-key limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// The key this one replaced (`key rotate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_from: Option<String>,
    /// The key that replaced this one. While this key still works (its overlap), requests
    /// under it say so in the audit line: the caller has not switched yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_to: Option<String>,
    /// A canary key (`tollgate key issue --canary`): it looks and verifies like any other,
    /// but every use is refused with the uniform 401 and audited as decision `canary` — a
    /// leak detector. Fixed at issue: never set on or cleared from an existing key, and a
    /// canary is never rotated. Absent (false) on every other record.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub canary: bool,
}

impl ClientKeyRecord {
    /// An active key record with an empty name, no expiry, and no restriction (any network,
    /// model and route; the tenant's pool mapping and DLP policy): every other field at the
    /// value a stored record without it deserializes to. `digest` is what
    /// [`Peppers::digest_new`](crate::auth::Peppers::digest_new) returns: the hex HMAC of the
    /// key and the pepper version it used. Set more with struct update syntax.
    pub fn new(
        key_id: impl Into<String>,
        env: KeyEnv,
        last4: impl Into<String>,
        tenant_id: impl Into<String>,
        owner: impl Into<String>,
        digest: (String, u32),
        created_at: EpochMs,
    ) -> Self {
        let (digest_hex, pepper_version) = digest;
        Self {
            key_id: key_id.into(),
            tenant_id: tenant_id.into(),
            owner: owner.into(),
            env,
            name: String::new(),
            digest_hex,
            pepper_version,
            last4: last4.into(),
            status: KeyStatus::Active,
            created_at,
            expires_at: None,
            revoked_at: None,
            suspended_at: None,
            suspended_reason: None,
            allowed_cidrs: Vec::new(),
            allowed_models: Vec::new(),
            allowed_routes: Vec::new(),
            model_pools: BTreeMap::new(),
            dlp_policy: None,
            limits: None,
            rotated_from: None,
            rotated_to: None,
            canary: false,
        }
    }

    /// The successor record for rotating this key at `now` to `key` (digested as `digest`)
    /// with `overlap_ms` during which both work. The successor keeps tenant, owner, name,
    /// scopes, pools, DLP policy and limits, and — when this key had an expiry — the same
    /// lifetime counted from `now`. Returns it with this key's new expiry: the end of the
    /// overlap, or its own expiry if that comes first.
    pub fn successor(
        &self,
        key: &ClientKey,
        digest: (String, u32),
        now: EpochMs,
        overlap_ms: u64,
    ) -> (ClientKeyRecord, EpochMs) {
        let lifetime = self
            .expires_at
            .map(|e| e.saturating_sub(self.created_at).max(overlap_ms));
        let next = ClientKeyRecord {
            name: self.name.clone(),
            expires_at: lifetime.map(|l| now.saturating_add(l)),
            allowed_cidrs: self.allowed_cidrs.clone(),
            allowed_models: self.allowed_models.clone(),
            allowed_routes: self.allowed_routes.clone(),
            model_pools: self.model_pools.clone(),
            dlp_policy: self.dlp_policy.clone(),
            limits: self.limits.clone(),
            rotated_from: Some(self.key_id.clone()),
            ..ClientKeyRecord::for_key(key, self.tenant_id.clone(), self.owner.clone(), digest, now)
        };
        let end = now.saturating_add(overlap_ms);
        let old_expires = self.expires_at.map_or(end, |e| e.min(end));
        (next, old_expires)
    }

    /// [`ClientKeyRecord::new`] for a key in hand (at issue time): key id, environment and
    /// last four characters are taken from `key`; the key itself is not stored.
    pub fn for_key(
        key: &ClientKey,
        tenant_id: impl Into<String>,
        owner: impl Into<String>,
        digest: (String, u32),
        created_at: EpochMs,
    ) -> Self {
        Self::new(
            key.key_id(),
            key.env(),
            key.last4(),
            tenant_id,
            owner,
            digest,
            created_at,
        )
    }

    pub fn display(&self) -> String {
        crate::key::display_form(self.env, &self.key_id, &self.last4)
    }

    /// Whole days left before this key expires, when it expires within `window_ms` of `now`
    /// (and has not expired yet): 0 means less than a day. `None` for a key without expiry,
    /// one further out, or a window of 0 (warnings off).
    pub fn expiring_in_days(&self, now: EpochMs, window_ms: u64) -> Option<u32> {
        const DAY_MS: u64 = 86_400_000;
        let left = self.expires_at?.checked_sub(now).filter(|l| *l > 0)?;
        (window_ms > 0 && left <= window_ms)
            .then(|| u32::try_from(left / DAY_MS).unwrap_or(u32::MAX))
    }

    /// The policy a request under this key runs with: the built-in defaults, then the
    /// tenant's policy, then the key's overrides.
    pub fn effective_dlp_policy(&self, tenant: &Tenant) -> Policy {
        let base = tenant.dlp_policy.clone().unwrap_or_default();
        match &self.dlp_policy {
            Some(k) => base.merge(k),
            None => base,
        }
    }

    /// This key's own limits: the tenant's per-key defaults with the key's overrides on top.
    pub fn effective_limits(&self, tenant: &Tenant) -> Limits {
        let base = tenant.key_limits.clone().unwrap_or_default();
        match &self.limits {
            Some(k) => base.overlay(k),
            None => base,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Openai,
    Anthropic,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Anthropic => "anthropic",
        }
    }
    pub fn default_base_url(self) -> &'static str {
        match self {
            ProviderKind::Openai => "https://api.openai.com/v1",
            ProviderKind::Anthropic => "https://api.anthropic.com/v1",
        }
    }
}

impl std::str::FromStr for ProviderKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "openai" => Ok(ProviderKind::Openai),
            "anthropic" => Ok(ProviderKind::Anthropic),
            other => Err(format!(
                "provider must be openai or anthropic, not {other:?}"
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenStatus {
    Active,
    Cooling,
    Invalid,
    Expired,
    Disabled,
}

impl TokenStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenStatus::Active => "active",
            TokenStatus::Cooling => "cooling",
            TokenStatus::Invalid => "invalid",
            TokenStatus::Expired => "expired",
            TokenStatus::Disabled => "disabled",
        }
    }
}

/// Where a token's value lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SecretRef {
    /// A Secrets Manager secret (name or ARN); the proxy reads stage AWSCURRENT.
    SecretsManager { secret_id: String },
    /// A tenant-owned key, envelope-encrypted with KMS (encryption context = tenant).
    KmsBlob {
        ciphertext_b64: String,
        tenant_id: String,
    },
    /// No stored value: the proxy exchanges an identity token for its own role (audience
    /// `audience`) for a short-lived access token at the provider (`federation.rs`).
    Federated {
        audience: String,
        exchange: crate::federation::Exchange,
    },
}

/// One upstream provider credential in a pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub token_id: String,
    pub pool: String,
    pub provider: ProviderKind,
    /// Includes the API version prefix: `https://api.openai.com/v1`, `http://vllm:8000/v1`.
    pub base_url: String,
    pub secret: SecretRef,
    pub owner: String,
    pub status: TokenStatus,
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Lower tier first; a higher tier number is used only when every lower one is exhausted.
    #[serde(default)]
    pub priority: u32,
    #[serde(default)]
    pub cooldown_until: Option<EpochMs>,
    /// Consecutive transient failures (5xx, connect, timeout); reset on success.
    #[serde(default)]
    pub consecutive_failures: u32,
    #[serde(default)]
    pub total_failures: u64,
    #[serde(default)]
    pub requests: u64,
    #[serde(default)]
    pub tokens_in: u64,
    #[serde(default)]
    pub tokens_out: u64,
    #[serde(default)]
    pub last_used_at: Option<EpochMs>,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub expires_at: Option<EpochMs>,
    /// How the token rotates and where its rotation stands (the rotation function owns it;
    /// `None`: the token is not rotated by tollgate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<crate::rotation::TokenRotation>,
    /// The sweep's last health probe of the token (`None`: never probed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe: Option<crate::sweep::LastProbe>,
    /// A tenant-owned token's next value, staged (`tollgate token stage`) until the sweep's
    /// probe with it answers 2xx and it replaces `secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged_secret: Option<SecretRef>,
    /// Bumped on every status change; conditional updates compare it.
    #[serde(default)]
    pub version: u64,
    pub created_at: EpochMs,
}

fn default_weight() -> u32 {
    1
}

impl TokenRecord {
    /// A new `active` token: weight 1, tier 0, no cooldown, zero counters, no expiry, no
    /// rotation state, version 0: every other field at the value a stored record without it
    /// deserializes to. Set more with struct update syntax:
    /// `TokenRecord { weight: 3, ..TokenRecord::new(..) }`.
    pub fn new(
        token_id: impl Into<String>,
        pool: impl Into<String>,
        provider: ProviderKind,
        base_url: impl Into<String>,
        secret: SecretRef,
        owner: impl Into<String>,
        created_at: EpochMs,
    ) -> Self {
        Self {
            token_id: token_id.into(),
            pool: pool.into(),
            provider,
            base_url: base_url.into(),
            secret,
            owner: owner.into(),
            status: TokenStatus::Active,
            weight: default_weight(),
            priority: 0,
            cooldown_until: None,
            consecutive_failures: 0,
            total_failures: 0,
            requests: 0,
            tokens_in: 0,
            tokens_out: 0,
            last_used_at: None,
            last_error: None,
            expires_at: None,
            rotation: None,
            last_probe: None,
            staged_secret: None,
            version: 0,
            created_at,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    #[default]
    RoundRobin,
    LeastUsed,
    Weighted,
    /// Priority tiers, round-robin inside a tier.
    Priority,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round_robin",
            Strategy::LeastUsed => "least_used",
            Strategy::Weighted => "weighted",
            Strategy::Priority => "priority",
        }
    }
}

impl std::str::FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.replace('-', "_").as_str() {
            "round_robin" => Ok(Strategy::RoundRobin),
            "least_used" => Ok(Strategy::LeastUsed),
            "weighted" => Ok(Strategy::Weighted),
            "priority" => Ok(Strategy::Priority),
            other => Err(format!(
                "strategy must be round_robin, least_used, weighted or priority, not {other:?}"
            )),
        }
    }
}

/// Per-pool settings, stored beside the pool's tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolConfig {
    pub pool: String,
    pub strategy: Strategy,
    /// Fair share of the pool: the most requests one tenant may have in flight through this
    /// pool at once, counted across every proxy instance (a hard cap, enforced like a
    /// concurrency limit). `None`: no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_concurrency: Option<u64>,
}

impl PoolConfig {
    /// Settings with `strategy` and no per-tenant cap.
    pub fn new(pool: impl Into<String>, strategy: Strategy) -> Self {
        Self {
            pool: pool.into(),
            strategy,
            tenant_concurrency: None,
        }
    }
}

/// A pool as the proxy sees it: settings plus tokens.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PoolView {
    pub strategy: Strategy,
    /// See [`PoolConfig::tenant_concurrency`].
    pub tenant_concurrency: Option<u64>,
    pub tokens: Vec<TokenRecord>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn from_minimal<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).expect("minimal stored record")
    }

    #[test]
    fn expiry_warnings_count_whole_days_inside_the_window_only() {
        const DAY: u64 = 86_400_000;
        let mut k = ClientKeyRecord::new("K", KeyEnv::Live, "abcd", "t", "o", ("00".into(), 1), 0);
        let now = 100 * DAY;
        assert_eq!(k.expiring_in_days(now, 14 * DAY), None, "no expiry");
        k.expires_at = Some(now + 14 * DAY);
        assert_eq!(
            k.expiring_in_days(now, 14 * DAY),
            Some(14),
            "the window's edge is in"
        );
        assert_eq!(
            k.expiring_in_days(now - 1, 14 * DAY),
            None,
            "one ms further out"
        );
        k.expires_at = Some(now + DAY + 5);
        assert_eq!(k.expiring_in_days(now, 14 * DAY), Some(1));
        k.expires_at = Some(now + 1);
        assert_eq!(
            k.expiring_in_days(now, 14 * DAY),
            Some(0),
            "less than a day"
        );
        assert_eq!(k.expiring_in_days(now, 0), None, "window 0: warnings off");
        k.expires_at = Some(now);
        assert_eq!(k.expiring_in_days(now, 14 * DAY), None, "already expired");
    }

    #[test]
    fn a_canary_flag_is_absent_from_ordinary_records_and_round_trips() {
        let k = ClientKeyRecord::new("K", KeyEnv::Live, "abcd", "t", "o", ("00".into(), 1), 0);
        let v = serde_json::to_value(&k).unwrap();
        assert!(v.get("canary").is_none());
        let c = ClientKeyRecord { canary: true, ..k };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["canary"], true);
        assert_eq!(serde_json::from_value::<ClientKeyRecord>(v).unwrap(), c);
    }

    #[test]
    fn new_tenant_equals_a_stored_tenant_with_only_required_fields() {
        let t = Tenant::new("acme", "Acme", "platform@acme.test", 5);
        let stored: Tenant = from_minimal(json!({
            "tenant_id": "acme", "name": "Acme", "owner": "platform@acme.test", "created_at": 5
        }));
        assert_eq!(t, stored);
    }

    #[test]
    fn new_key_record_equals_a_stored_record_with_only_required_fields() {
        let r = ClientKeyRecord::new(
            "AbCdEf012345",
            KeyEnv::Test,
            "WXYZ",
            "acme",
            "dev@acme.test",
            ("ab".repeat(32), 2),
            5,
        );
        let stored: ClientKeyRecord = from_minimal(json!({
            "key_id": "AbCdEf012345", "tenant_id": "acme", "owner": "dev@acme.test",
            "env": "test", "name": "", "digest_hex": "ab".repeat(32), "pepper_version": 2,
            "last4": "WXYZ", "status": "active", "created_at": 5
        }));
        assert_eq!(r, stored);
    }

    #[test]
    fn key_record_for_a_key_takes_id_env_and_last4_from_it() {
        use rand::{SeedableRng, rngs::StdRng};
        let k = ClientKey::generate(KeyEnv::Live, &mut StdRng::seed_from_u64(3));
        let r = ClientKeyRecord::for_key(&k, "acme", "dev@acme.test", ("00".into(), 1), 0);
        assert_eq!(
            (r.key_id.as_str(), r.env, r.last4.as_str()),
            (k.key_id(), KeyEnv::Live, k.last4())
        );
        assert!(!format!("{r:?}").contains(k.expose()));
    }

    #[test]
    fn new_token_equals_a_stored_token_with_only_required_fields() {
        let t = TokenRecord::new(
            "t1",
            "openai",
            ProviderKind::Openai,
            "https://api.openai.com/v1",
            SecretRef::SecretsManager {
                secret_id: "tollgate/pool/t1".into(),
            },
            "ops",
            5,
        );
        let stored: TokenRecord = from_minimal(json!({
            "token_id": "t1", "pool": "openai", "provider": "openai",
            "base_url": "https://api.openai.com/v1",
            "secret": {"kind": "secrets_manager", "secret_id": "tollgate/pool/t1"},
            "owner": "ops", "status": "active", "created_at": 5
        }));
        assert_eq!(t, stored);
    }

    #[test]
    fn a_successor_keeps_the_keys_policy_and_lifetime_and_the_old_key_ends_with_the_overlap() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let old_key = ClientKey::generate(KeyEnv::Live, &mut rng);
        let day = 86_400_000;
        let old = ClientKeyRecord {
            name: "ci".into(),
            expires_at: Some(1_000 + 90 * day),
            allowed_models: vec!["gpt-4o*".into()],
            limits: Some(Limits {
                rpm: Some(10),
                ..Limits::default()
            }),
            ..ClientKeyRecord::for_key(&old_key, "acme", "dev@acme.test", ("ab".into(), 1), 1_000)
        };
        let new_key = ClientKey::generate(KeyEnv::Live, &mut rng);
        let now = 10 * day;
        let (next, old_exp) = old.successor(&new_key, ("cd".into(), 2), now, day);
        assert_eq!(next.key_id, new_key.key_id());
        assert_eq!(next.rotated_from.as_deref(), Some(old.key_id.as_str()));
        assert_eq!(
            (next.tenant_id.as_str(), next.owner.as_str()),
            ("acme", "dev@acme.test")
        );
        assert_eq!((next.name.as_str(), next.pepper_version), ("ci", 2));
        assert_eq!(next.allowed_models, old.allowed_models);
        assert_eq!(next.limits, old.limits);
        assert_eq!(next.expires_at, Some(now + 90 * day - 1_000 + 1_000));
        assert_eq!(old_exp, now + day);
        // An old key expiring before the overlap ends keeps its own expiry.
        let soon = ClientKeyRecord {
            expires_at: Some(now + 3_600_000),
            ..old.clone()
        };
        assert_eq!(
            soon.successor(&new_key, ("cd".into(), 2), now, day).1,
            now + 3_600_000
        );
        // Without an expiry the successor has none either.
        let forever = ClientKeyRecord {
            expires_at: None,
            ..old
        };
        let (next, old_exp) = forever.successor(&new_key, ("cd".into(), 2), now, day);
        assert_eq!((next.expires_at, old_exp), (None, now + day));
    }
}
