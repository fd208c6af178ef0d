//! The scheduled sweep over the token pool: what to do with each token, and the health
//! figures the sweep reports (and `tollgate pool health` prints).
//!
//! Pure: [`plan`] decides from a token record, the clock reading and [`SweepSettings`];
//! [`apply_probe`] turns a probe's result into a health change; [`pool_health`] and
//! [`emf_lines`] / [`summary_line`] compute what is reported. The function crate does the I/O.
//!
//! Probes are cheap and rate-limited: one `GET {base_url}/models` (no tokens billed) per token,
//! and a token is probed only when
//! - it is `active`, has not been probed for [`SweepSettings::probe_interval_ms`], and has not
//!   served a request for that long either (`last_used_at`: the proxy records it only for an
//!   answered request, so a token in use is never probed), or
//! - it is `cooling` and its cooldown has ended (a 2xx re-enables it).
//!
//! `invalid`, `expired` and `disabled` tokens are never probed: an operator brings them back.
//! At most [`SweepSettings::max_probes`] probes run per sweep (least recently probed first).

use crate::clock::{Clock, EpochMs};
use crate::pool::{FailureCount, HealthPolicy, Outcome, TokenChange, next_state};
use crate::ports::{Decrypter, PoolStore, Secret, StoreError, TokenSecretSwap};
use crate::records::{SecretRef, TokenRecord, TokenStatus};
use crate::rotation::{
    AWSCURRENT, RotationMode, RotationStarter, RotationState, STAGED, VersionedSecrets,
};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const MINUTE_MS: u64 = 60_000;
const DAY_MS: u64 = 86_400_000;

/// The sweep's knobs (the function reads them from the environment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepSettings {
    /// A token is probed at most this often, and not while it served a request this recently.
    pub probe_interval_ms: u64,
    /// Probes per sweep at most.
    pub max_probes: usize,
    /// Warn about a token whose `expires_at` is less than this far away.
    pub expiry_warning_ms: u64,
    /// Start rotations (RotateSecret) for tokens past their rotation due date.
    pub start_rotations: bool,
}

impl Default for SweepSettings {
    fn default() -> Self {
        Self {
            probe_interval_ms: 15 * MINUTE_MS,
            max_probes: 50,
            expiry_warning_ms: 7 * DAY_MS,
            start_rotations: true,
        }
    }
}

/// What a probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ProbeResult {
    /// 2xx.
    Ok,
    /// 401 / 403: the provider refuses the credential.
    Rejected { status: u16 },
    /// 429.
    RateLimited {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    /// Any other 4xx (a provider without `/models`, say): says nothing about the credential.
    Inconclusive { status: u16 },
    /// Transport failure, timeout, 5xx; or the value could not be read.
    Unavailable,
}

impl ProbeResult {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeResult::Ok => "ok",
            ProbeResult::Rejected { .. } => "rejected",
            ProbeResult::RateLimited { .. } => "rate_limited",
            ProbeResult::Inconclusive { .. } => "inconclusive",
            ProbeResult::Unavailable => "unavailable",
        }
    }
}

/// The last probe of a token, stored on its pool record (`last_probe`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastProbe {
    pub at: EpochMs,
    #[serde(flatten)]
    pub result: ProbeResult,
}

/// Why a token is not probed this time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Skip {
    /// invalid / expired / disabled: an operator brings it back.
    NotServing,
    /// cooling, cooldown not over.
    CoolingDown,
    /// Served a request within the probe interval.
    UsedRecently,
    /// Probed within the probe interval.
    ProbedRecently,
}

/// What the sweep does about a rotation that is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RotationDue {
    /// `openai_admin`: RotateSecret now.
    Start,
    /// `staged`: RotateSecret if the operator staged a value, else warn.
    StartIfStaged,
}

/// The sweep's decision for one token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// `expires_at` has passed and the status does not say so yet.
    pub mark_expired: bool,
    /// `Ok(())`: probe it; `Err(why)`: leave it.
    pub probe: Result<(), Skip>,
    /// Expires within the warning window.
    pub expiring_soon: bool,
    pub rotation: Option<RotationDue>,
}

/// Decides what the sweep does with `t` at `now`.
pub fn plan(t: &TokenRecord, now: EpochMs, s: &SweepSettings) -> Plan {
    let expired = t.expires_at.is_some_and(|e| e <= now);
    let mark_expired = expired && t.status != TokenStatus::Expired;
    let probe = if expired {
        Err(Skip::NotServing)
    } else {
        match t.status {
            TokenStatus::Invalid | TokenStatus::Expired | TokenStatus::Disabled => {
                Err(Skip::NotServing)
            }
            TokenStatus::Cooling if t.cooldown_until.is_some_and(|c| c > now) => {
                Err(Skip::CoolingDown)
            }
            TokenStatus::Cooling => Ok(()),
            TokenStatus::Active => {
                let recent = |at: Option<EpochMs>| {
                    at.is_some_and(|a| now.saturating_sub(a) < s.probe_interval_ms)
                };
                if recent(t.last_used_at) {
                    Err(Skip::UsedRecently)
                } else if recent(t.last_probe.map(|p| p.at)) {
                    Err(Skip::ProbedRecently)
                } else {
                    Ok(())
                }
            }
        }
    };
    let expiring_soon = !expired
        && t.expires_at
            .is_some_and(|e| e.saturating_sub(now) < s.expiry_warning_ms);
    Plan {
        mark_expired,
        probe,
        expiring_soon,
        rotation: rotation_due(t, now),
    }
}

/// Whether `t`'s rotation is due (past `next_due_at`, nothing in progress, the value in
/// Secrets Manager, and the token not disabled or expired).
pub fn rotation_due(t: &TokenRecord, now: EpochMs) -> Option<RotationDue> {
    let rot = t.rotation.as_ref()?;
    if !matches!(t.secret, SecretRef::SecretsManager { .. })
        || matches!(t.status, TokenStatus::Disabled | TokenStatus::Expired)
        || matches!(rot.state, RotationState::Pending { .. })
        || rot.next_due_at.is_none_or(|d| d > now)
    {
        return None;
    }
    Some(match rot.mode {
        RotationMode::OpenaiAdmin { .. } => RotationDue::Start,
        RotationMode::Staged { .. } => RotationDue::StartIfStaged,
    })
}

/// The health change a probe result makes, if any: 2xx re-enables a cooling token (and
/// clears a failure streak); 401/403 marks the token `invalid`; 429 on a cooling token cools
/// it again. Anything else changes nothing (a probe never cools an active token nor opens its
/// breaker: the proxy's own traffic decides that).
pub fn apply_probe(t: &TokenRecord, r: ProbeResult, now: EpochMs) -> Option<TokenChange> {
    let policy = HealthPolicy::default();
    match r {
        ProbeResult::Ok => next_state(t, Outcome::Success, now, &policy),
        ProbeResult::Rejected { .. } => next_state(t, Outcome::AuthRejected, now, &policy),
        ProbeResult::RateLimited { retry_after_ms } if t.status == TokenStatus::Cooling => {
            next_state(t, Outcome::RateLimited { retry_after_ms }, now, &policy)
        }
        ProbeResult::RateLimited { .. }
        | ProbeResult::Inconclusive { .. }
        | ProbeResult::Unavailable => None,
    }
}

/// The change that marks an expired token `expired`.
pub fn expire(t: &TokenRecord) -> TokenChange {
    TokenChange {
        status: TokenStatus::Expired,
        bump_version: t.status != TokenStatus::Expired,
        cooldown_until: None,
        failures: FailureCount::Reset,
        last_error: Some("token_expired"),
    }
}

/// Every status, in the order reports list them.
pub const STATUSES: [TokenStatus; 5] = [
    TokenStatus::Active,
    TokenStatus::Cooling,
    TokenStatus::Invalid,
    TokenStatus::Expired,
    TokenStatus::Disabled,
];

/// A token named in a report, with the time that put it there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenAt {
    pub token_id: String,
    pub at: EpochMs,
}

/// One pool's health as stored records show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolHealth {
    pub pool: String,
    pub tokens: u64,
    /// Count by status (every status present, zeros included).
    pub by_status: BTreeMap<&'static str, u64>,
    /// Tokens that can take a request now.
    pub serving: u64,
    /// The most recent probe of any token of the pool.
    pub last_probe: Option<TokenAt>,
    /// The earliest rotation due date among the pool's rotated tokens.
    pub next_rotation_due: Option<TokenAt>,
    /// Rotated tokens whose due date has passed.
    pub rotations_overdue: u64,
    /// Tokens whose `expires_at` is within the warning window (not yet passed).
    pub expiring_soon: Vec<TokenAt>,
}

/// Per-pool health of `tokens` at `now`, pools in name order.
pub fn pool_health(tokens: &[TokenRecord], now: EpochMs, warn_ms: u64) -> Vec<PoolHealth> {
    let mut pools: BTreeMap<&str, PoolHealth> = BTreeMap::new();
    for t in tokens {
        let h = pools.entry(&t.pool).or_insert_with(|| PoolHealth {
            pool: t.pool.clone(),
            tokens: 0,
            by_status: STATUSES.iter().map(|s| (s.as_str(), 0)).collect(),
            serving: 0,
            last_probe: None,
            next_rotation_due: None,
            rotations_overdue: 0,
            expiring_soon: Vec::new(),
        });
        h.tokens += 1;
        let expired = t.expires_at.is_some_and(|e| e <= now);
        // An expiry the sweep has not written yet already counts as expired.
        let status = if expired && t.status != TokenStatus::Disabled {
            TokenStatus::Expired
        } else {
            t.status
        };
        *h.by_status.entry(status.as_str()).or_insert(0) += 1;
        if crate::pool::is_eligible(t, now) {
            h.serving += 1;
        }
        if let Some(p) = t.last_probe
            && h.last_probe.as_ref().is_none_or(|l| p.at > l.at)
        {
            h.last_probe = Some(TokenAt {
                token_id: t.token_id.clone(),
                at: p.at,
            });
        }
        if let Some(due) = t.rotation.as_ref().and_then(|r| r.next_due_at) {
            if due <= now {
                h.rotations_overdue += 1;
            }
            if h.next_rotation_due.as_ref().is_none_or(|n| due < n.at) {
                h.next_rotation_due = Some(TokenAt {
                    token_id: t.token_id.clone(),
                    at: due,
                });
            }
        }
        if let Some(e) = t.expires_at
            && e > now
            && e - now < warn_ms
        {
            h.expiring_soon.push(TokenAt {
                token_id: t.token_id.clone(),
                at: e,
            });
        }
    }
    pools.into_values().collect()
}

/// Metric names of the per-pool EMF line (namespace `tollgate`, dimension `pool`).
pub const EMF_NAMESPACE: &str = "tollgate";

/// One CloudWatch Embedded Metric Format line per pool: the count of tokens by status
/// (`tokens_active`, `tokens_cooling`, `tokens_invalid`, `tokens_expired`, `tokens_disabled`),
/// `tokens_serving`, `tokens_expiring_soon` and `rotations_overdue`, dimension `pool`.
pub fn emf_lines(health: &[PoolHealth], now: EpochMs) -> Vec<String> {
    health
        .iter()
        .map(|h| {
            let mut values: BTreeMap<String, serde_json::Value> = BTreeMap::new();
            for (status, n) in &h.by_status {
                values.insert(format!("tokens_{status}"), (*n).into());
            }
            values.insert("tokens_serving".into(), h.serving.into());
            values.insert(
                "tokens_expiring_soon".into(),
                (h.expiring_soon.len() as u64).into(),
            );
            values.insert("rotations_overdue".into(), h.rotations_overdue.into());
            let metrics: Vec<serde_json::Value> = values
                .keys()
                .map(|k| serde_json::json!({ "Name": k, "Unit": "Count" }))
                .collect();
            let mut line = serde_json::Map::new();
            line.insert(
                "_aws".into(),
                serde_json::json!({
                    "Timestamp": now,
                    "CloudWatchMetrics": [{
                        "Namespace": EMF_NAMESPACE,
                        "Dimensions": [["pool"]],
                        "Metrics": metrics,
                    }],
                }),
            );
            line.insert("pool".into(), h.pool.clone().into());
            line.extend(values);
            serde_json::Value::Object(line).to_string()
        })
        .collect()
}

/// What one sweep did (the invocation's answer, and part of the summary line).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub tokens: u64,
    pub probed: u64,
    /// Probe results by name (`ok`, `rejected`, …).
    pub probe_results: BTreeMap<&'static str, u64>,
    /// Probes left for the next sweep by `max_probes`.
    pub probes_deferred: u64,
    pub skipped: BTreeMap<&'static str, u64>,
    pub marked_expired: Vec<String>,
    pub marked_invalid: Vec<String>,
    pub reenabled: Vec<String>,
    /// `pool/token` whose rotation this sweep started.
    pub rotations_started: Vec<String>,
    /// `pool/token` whose rotation is due but could not start (nothing staged, or an error).
    pub rotations_waiting: Vec<String>,
    pub expiring_soon: Vec<String>,
    /// Store writes lost to a concurrent writer (the next sweep decides again).
    pub conflicts: u64,
    /// What failed, per token (`pool/token: what`); never a value.
    pub errors: Vec<String>,
    /// Tenant-owned tokens whose staged value answered 2xx and replaced the current one.
    pub staged_promoted: Vec<String>,
    /// Tenant-owned tokens whose staged value the provider refused (left staged, not used).
    pub staged_refused: Vec<String>,
    pub retire: crate::rotation::RetireReport,
}

/// The one pool-health summary line: `{"event": "pool_health", …}` with the sweep's report
/// and every pool's health.
pub fn summary_line(report: &SweepReport, health: &[PoolHealth], now: EpochMs) -> String {
    serde_json::json!({
        "event": "pool_health",
        "at": crate::clock::rfc3339(now),
        "sweep": report,
        "pools": health,
    })
    .to_string()
}

/// Where the sweep writes a token's last probe.
#[async_trait]
pub trait ProbeRecords: Send + Sync {
    /// Stores `probe` as the token's `last_probe` (one write; health fields untouched).
    /// `NotFound` for an unknown token.
    async fn record_probe(
        &self,
        pool: &str,
        token_id: &str,
        probe: &LastProbe,
    ) -> Result<(), StoreError>;
}

/// The provider side of a probe: one cheap authenticated call with the token's value.
#[async_trait]
pub trait Prober: Send + Sync {
    async fn probe(&self, token: &TokenRecord, value: &Secret) -> ProbeResult;
}

/// A rotation the sweep started: the version id it asked RotateSecret for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub pool: String,
    pub token_id: String,
    pub secret_id: String,
    pub version_id: String,
}

/// Runs one sweep over the ports.
pub struct Sweeper<'a> {
    pub pools: &'a dyn PoolStore,
    pub probes: &'a dyn ProbeRecords,
    pub prober: &'a dyn Prober,
    pub secrets: &'a dyn VersionedSecrets,
    /// Tenant-owned (KMS envelope) values; `None`: such tokens are not probed.
    pub decrypter: Option<&'a dyn Decrypter>,
    pub starter: &'a dyn RotationStarter,
    /// Promotes a tenant-owned token's staged value (`None`: staged values wait).
    pub token_secrets: Option<&'a dyn TokenSecretSwap>,
    pub clock: &'a dyn Clock,
    pub settings: SweepSettings,
    /// The rotation function's ARN for RotateSecret (`None`: the secret's own setting).
    pub function_arn: Option<&'a str>,
    /// With `true` RotateSecret runs the steps (AWS); with `false` only labels the version
    /// and the caller runs them (the local stack).
    pub rotate_immediately: bool,
    /// A fresh version id (a UUID) per rotation started.
    pub new_version: &'a (dyn Fn() -> String + Send + Sync),
}

impl Sweeper<'_> {
    /// One sweep over every token (or only the pools in `only`, when not empty). Store
    /// failures reading the pool table fail the sweep; a failure about one token is counted
    /// and the sweep goes on. Returns the report, the rotations started, and the health of
    /// every pool after the sweep's changes.
    pub async fn run(
        &self,
        only: &[String],
    ) -> Result<(SweepReport, Vec<Started>, Vec<PoolHealth>), StoreError> {
        let now = self.clock.now_ms();
        let mut tokens = self.pools.list_tokens().await?;
        if !only.is_empty() {
            tokens.retain(|t| only.contains(&t.pool));
        }
        let mut report = SweepReport {
            tokens: tokens.len() as u64,
            ..SweepReport::default()
        };
        let mut started = Vec::new();
        let mut to_probe = Vec::new();
        for (i, t) in tokens.iter_mut().enumerate() {
            let p = plan(t, now, &self.settings);
            let name = format!("{}/{}", t.pool, t.token_id);
            if p.mark_expired {
                let c = expire(t);
                if self.change(t, &c, &mut report).await {
                    report.marked_expired.push(name.clone());
                }
            }
            if p.expiring_soon {
                report.expiring_soon.push(name.clone());
            }
            match p.probe {
                Ok(()) if !has_stored_value(t) => {
                    *report.skipped.entry("no_stored_value").or_insert(0) += 1;
                }
                Ok(()) => to_probe.push(i),
                Err(why) => {
                    *report.skipped.entry(skip_name(why)).or_insert(0) += 1;
                }
            }
            if let Some(due) = p.rotation
                && self.settings.start_rotations
            {
                match self.start(t, due).await {
                    Ok(Some(s)) => {
                        report.rotations_started.push(name);
                        started.push(s);
                    }
                    Ok(None) => report.rotations_waiting.push(name),
                    Err(e) => {
                        report
                            .errors
                            .push(format!("{name}: starting the due rotation: {e}"));
                        report.rotations_waiting.push(name);
                    }
                }
            }
        }
        for t in tokens.iter_mut() {
            if t.staged_secret.is_some() {
                self.promote_staged(t, &mut report).await;
            }
        }
        // Least recently probed first, so a capped sweep still reaches every token in turn.
        to_probe.sort_by_key(|&i| tokens[i].last_probe.map_or(0, |p| p.at));
        let cap = self.settings.max_probes;
        report.probes_deferred = to_probe.len().saturating_sub(cap) as u64;
        for &i in to_probe.iter().take(cap) {
            self.probe(&mut tokens[i], now, &mut report).await;
        }
        let health = pool_health(&tokens, now, self.settings.expiry_warning_ms);
        Ok((report, started, health))
    }

    /// Applies `c` to `t` in the store (conditional on its version) and in `t`.
    async fn change(&self, t: &mut TokenRecord, c: &TokenChange, report: &mut SweepReport) -> bool {
        match self
            .pools
            .apply_change(&t.pool, &t.token_id, t.version, c)
            .await
        {
            Ok(true) => {
                crate::pool::apply(t, c);
                true
            }
            Ok(false) => {
                report.conflicts += 1;
                false
            }
            Err(e) => {
                report
                    .errors
                    .push(format!("{}/{}: health write: {e}", t.pool, t.token_id));
                false
            }
        }
    }

    async fn value(&self, t: &TokenRecord, report: &mut SweepReport) -> Option<Secret> {
        // `if let` rather than `match`: a token kind holding no stored value (federated) is
        // filtered out by `has_stored_value` before it gets here.
        let r = if let SecretRef::SecretsManager { secret_id } = &t.secret {
            self.secrets
                .value(secret_id, None, AWSCURRENT)
                .await
                .and_then(|v| v.ok_or(StoreError::NotFound))
        } else if let SecretRef::KmsBlob {
            ciphertext_b64,
            tenant_id,
        } = &t.secret
        {
            match self.decrypter {
                Some(d) => d.decrypt(ciphertext_b64, tenant_id).await,
                None => Err(StoreError::Unavailable(
                    "no KMS decrypter configured".into(),
                )),
            }
        } else {
            Err(StoreError::NotFound)
        };
        r.inspect_err(|e| {
            report
                .errors
                .push(format!("{}/{}: reading the value: {e}", t.pool, t.token_id))
        })
        .ok()
    }

    async fn probe(&self, t: &mut TokenRecord, now: EpochMs, report: &mut SweepReport) {
        let result = match self.value(t, report).await {
            Some(v) => self.prober.probe(t, &v).await,
            None => ProbeResult::Unavailable,
        };
        report.probed += 1;
        *report.probe_results.entry(result.as_str()).or_insert(0) += 1;
        let name = format!("{}/{}", t.pool, t.token_id);
        let was = t.status;
        if let Some(c) = apply_probe(t, result, now)
            && self.change(t, &c, report).await
        {
            match (was, t.status) {
                (TokenStatus::Cooling, TokenStatus::Active) => report.reenabled.push(name),
                (_, TokenStatus::Invalid) if was != TokenStatus::Invalid => {
                    report.marked_invalid.push(name)
                }
                _ => {}
            }
        }
        let mark = LastProbe { at: now, result };
        match self.probes.record_probe(&t.pool, &t.token_id, &mark).await {
            Ok(()) => t.last_probe = Some(mark),
            Err(e) => report.errors.push(format!(
                "{}/{}: recording the probe: {e}",
                t.pool, t.token_id
            )),
        }
    }

    /// A tenant-owned token's staged value: probed (one `GET /models` with it); on 2xx it
    /// replaces the current blob (conditional on the blob read) and the stage is cleared; on
    /// 401/403 it stays staged and unused and the report says so; otherwise it waits.
    async fn promote_staged(&self, t: &mut TokenRecord, report: &mut SweepReport) {
        let name = format!("{}/{}", t.pool, t.token_id);
        let (Some(swap), Some(staged)) = (self.token_secrets, t.staged_secret.clone()) else {
            return;
        };
        let SecretRef::KmsBlob {
            ciphertext_b64,
            tenant_id,
        } = &staged
        else {
            return;
        };
        let value = match self.decrypter {
            Some(d) => d.decrypt(ciphertext_b64, tenant_id).await,
            None => Err(StoreError::Unavailable(
                "no KMS decrypter configured".into(),
            )),
        };
        let value = match value {
            Ok(v) => v,
            Err(e) => {
                report
                    .errors
                    .push(format!("{name}: reading the staged value: {e}"));
                return;
            }
        };
        match self.prober.probe(t, &value).await {
            ProbeResult::Ok => {}
            ProbeResult::Rejected { .. } => {
                report.staged_refused.push(name);
                return;
            }
            _ => return,
        }
        drop(value);
        let r = match swap
            .swap_secret(&t.pool, &t.token_id, &t.secret, &staged)
            .await
        {
            Ok(true) => swap.set_staged(&t.pool, &t.token_id, None).await,
            Ok(false) => {
                report.conflicts += 1;
                return;
            }
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => {
                t.secret = staged;
                t.staged_secret = None;
                report.staged_promoted.push(name);
            }
            Err(e) => report
                .errors
                .push(format!("{name}: promoting the staged value: {e}")),
        }
    }

    /// RotateSecret for a due token; `Ok(None)`: a staged token with nothing staged.
    async fn start(
        &self,
        t: &TokenRecord,
        due: RotationDue,
    ) -> Result<Option<Started>, StoreError> {
        let (SecretRef::SecretsManager { secret_id }, Some(rot)) = (&t.secret, &t.rotation) else {
            return Ok(None);
        };
        if due == RotationDue::StartIfStaged
            && self
                .secrets
                .describe(secret_id)
                .await?
                .version_with(STAGED)
                .is_none()
        {
            return Ok(None);
        }
        let version_id = (self.new_version)();
        self.starter
            .start_rotation(
                secret_id,
                &version_id,
                self.function_arn,
                rot.interval_days,
                self.rotate_immediately,
            )
            .await?;
        Ok(Some(Started {
            pool: t.pool.clone(),
            token_id: t.token_id.clone(),
            secret_id: secret_id.clone(),
            version_id,
        }))
    }
}

/// Whether the token's value is stored (Secrets Manager or a KMS blob) and so can be probed.
fn has_stored_value(t: &TokenRecord) -> bool {
    matches!(
        t.secret,
        SecretRef::SecretsManager { .. } | SecretRef::KmsBlob { .. }
    )
}

fn skip_name(s: Skip) -> &'static str {
    match s {
        Skip::NotServing => "not_serving",
        Skip::CoolingDown => "cooling_down",
        Skip::UsedRecently => "used_recently",
        Skip::ProbedRecently => "probed_recently",
    }
}

#[cfg(test)]
mod tests;
