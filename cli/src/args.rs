//! The command line, as clap types. Every value is validated here, so a malformed id, URL,
//! CIDR, time or duration is a usage error (exit 2) before anything touches AWS.
//!
//! There is deliberately no flag that takes a secret: a pool token's value comes from stdin
//! or from the environment variable `--value-env` names.

use clap::{ArgGroup, Args, Parser, Subcommand};
use ipnet::IpNet;
use std::path::PathBuf;
use tollgate_core::clock::{EpochMs, parse_rfc3339};
use tollgate_core::key::KeyEnv;
use tollgate_core::provider::Route;
use tollgate_core::records::{ProviderKind, Strategy};
use tollgate_dlp::{Action, Category, Entity, RequestKind};

#[derive(Debug, Parser)]
#[command(
    name = "tollgate",
    version,
    about = "Operate a tollgate gateway: tenants, client keys, the upstream token pool and \
             sensitive-data policies.",
    long_about = "Operate a tollgate gateway: tenants, client keys, the upstream token pool and \
sensitive-data policies.\n\n\
AWS access uses the usual credential chain and region settings; AWS_ENDPOINT_URL points it at \
a local emulator. Tables come from TOLLGATE_TENANTS_TABLE, TOLLGATE_KEYS_TABLE and \
TOLLGATE_POOL_TABLE (defaults tollgate-tenants, tollgate-keys, tollgate-pool); the pepper \
secret from TOLLGATE_PEPPER_SECRET_ID (default tollgate/pepper); pool token secrets are \
encrypted with TOLLGATE_KMS_KEY_ID when set."
)]
pub struct Cli {
    /// Print one JSON document instead of tables (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tenants: the teams or applications keys are issued to.
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Client keys (tgk_live_… / tgk_test_…).
    #[command(subcommand)]
    Key(KeyCmd),
    /// Upstream provider tokens in the pool.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Pool health and selection strategy.
    #[command(subcommand)]
    Pool(PoolCmd),
    /// Sensitive-data (DLP) policies of tenants and keys.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Rate, concurrency and budget limits of tenants and keys.
    #[command(subcommand)]
    Limits(LimitsCmd),
    /// Current use of a tenant's or key's limits: windows, reserved and spent, remaining, resets.
    Usage(UsageArgs),
    /// Trusted OIDC issuers: their JWTs are accepted as callers (see `issuer add --help`).
    #[command(subcommand)]
    Issuer(crate::issuer::IssuerCmd),
    /// The model price table spend limits and the audit line's cost use (USD per million
    /// tokens).
    #[command(subcommand)]
    Prices(PricesCmd),
    /// Scan stdin for sensitive data as the proxy would. Never prints a matched value.
    ///
    /// Needs no AWS access unless --tenant is given.
    Scan(ScanArgs),
    /// Alerts the audit function raised (kept in its state table, TOLLGATE_AUDIT_STATE_TABLE,
    /// default tollgate-audit-state).
    #[command(subcommand)]
    Alerts(AlertsCmd),
    /// The proxy's audit lines in CloudWatch Logs.
    #[command(subcommand)]
    Audit(AuditCmd),
}

#[derive(Debug, Subcommand)]
pub enum AlertsCmd {
    /// Recent alerts, newest first: the latest per (rule, subject), with how many later
    /// occurrences were counted into it.
    List(AlertsList),
    /// One alert in full: counts, evidence request ids, networks, summary, runbook and what
    /// the auto-response did.
    Show(AlertsShow),
}

#[derive(Debug, Args)]
pub struct AlertsList {
    /// Alerts opened within this long (e.g. 1h, 24h, 7d).
    #[arg(long, default_value = "24h", value_parser = parse_duration_ms)]
    pub since: u64,
    /// Only this rule (e.g. key_refused_outside).
    #[arg(long, value_parser = parse_rule)]
    pub rule: Option<tollgate_core::detect::Rule>,
    /// Only alerts about this tenant.
    #[arg(long, value_parser = parse_id)]
    pub tenant: Option<String>,
    /// Only alerts about this key: key id, display form or full key.
    #[arg(long)]
    pub key: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

#[derive(Debug, Args)]
pub struct AlertsShow {
    /// The alert id as `alerts list` prints it: <rule>/<subject>, e.g.
    /// key_refused_outside/key:AbCdEf123456.
    #[arg(value_parser = parse_alert_id)]
    pub id: (tollgate_core::detect::Rule, String),
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Print the proxy's audit lines (FilterLogEvents), optionally only one tenant's or key's,
    /// and with --follow keep printing new ones.
    Tail(AuditTail),
}

#[derive(Debug, Args)]
pub struct AuditTail {
    /// The proxy's log group (template output ProxyLogGroupName).
    #[arg(long, env = "TOLLGATE_PROXY_LOG_GROUP")]
    pub log_group: String,
    /// Only this tenant's requests.
    #[arg(long, value_parser = parse_id)]
    pub tenant: Option<String>,
    /// Only this key's requests: key id, display form or full key.
    #[arg(long)]
    pub key: Option<String>,
    /// Start this long ago (e.g. 10m, 2h).
    #[arg(long, default_value = "10m", value_parser = parse_duration_ms)]
    pub since: u64,
    /// Keep polling for new lines until interrupted.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// With --follow: time between polls (e.g. 2s).
    #[arg(long, default_value = "2s", value_parser = parse_duration_ms)]
    pub interval: u64,
}

pub fn parse_rule(s: &str) -> Result<tollgate_core::detect::Rule, String> {
    tollgate_core::detect::Rule::ALL
        .iter()
        .copied()
        .find(|r| r.as_str() == s.trim())
        .ok_or_else(|| {
            let names: Vec<&str> = tollgate_core::detect::Rule::ALL
                .iter()
                .map(|r| r.as_str())
                .collect();
            format!("unknown rule {s:?}; one of {}", names.join(", "))
        })
}

pub fn parse_alert_id(s: &str) -> Result<(tollgate_core::detect::Rule, String), String> {
    tollgate_core::detect::parse_alert_id(s)
        .ok_or_else(|| format!("expected <rule>/<subject> as `alerts list` prints it, not {s:?}"))
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Each stdin line is one document as a JSON string; prints one JSON array of findings
    /// ({"entity","start","end","action"}, byte offsets) per document, in order.
    #[arg(long, conflicts_with = "request")]
    pub jsonl: bool,
    /// Read a request body (JSON) of this API kind, openai or anthropic, and print it
    /// redacted as the proxy would forward it. Exit code 3 when it would be blocked.
    #[arg(long, value_name = "KIND", value_parser = parse_request_kind)]
    pub request: Option<RequestKind>,
    /// A JSON policy file, e.g. {"categories":{"contact":"redact"},"entities":{"IP_ADDRESS":"off"}}
    /// (default: the built-in policy).
    #[arg(long, value_name = "FILE", conflicts_with = "tenant")]
    pub policy: Option<PathBuf>,
    /// Use this tenant's stored policy (reads the tenants table).
    #[arg(long, value_parser = parse_id)]
    pub tenant: Option<String>,
    /// With --tenant: use this key's effective policy (tenant policy + key overrides). Key id,
    /// display form or full key.
    #[arg(long, requires = "tenant")]
    pub key: Option<String>,
}

#[derive(Debug, Args)]
pub struct UsageArgs {
    /// The tenant (its limits as a whole, or with --key one key's).
    #[arg(long, value_parser = parse_id)]
    pub tenant: String,
    /// A key of that tenant: key id, display form or full key.
    #[arg(long)]
    pub key: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum LimitsCmd {
    /// Stored limits of a tenant (and key) and the limits the proxy applies.
    Show(LimitsTarget),
    /// Set limits (merged into what is stored): e.g. --rpm 600 --tpm 200k --concurrency 20
    /// --budget-day 50usd --budget-month 1000usd.
    Set(LimitsSet),
    /// Remove stored limits (the tenant's, its per-key defaults with --per-key, or a key's).
    Clear(LimitsTarget),
}

#[derive(Debug, Args)]
pub struct LimitsTarget {
    /// The tenant whose limits (or whose key's limits) to read or change.
    #[arg(long, value_parser = parse_id)]
    pub tenant: String,
    /// A key of that tenant: key id, display form or full key. Without it, the tenant.
    #[arg(long, conflicts_with = "per_key")]
    pub key: Option<String>,
    /// The limits every key of the tenant gets unless the key sets its own (instead of the
    /// limits on the tenant as a whole).
    #[arg(long)]
    pub per_key: bool,
}

#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("limit")
        .required(true)
        .multiple(true)
        .args(["rpm", "tpm", "concurrency", "budget_day", "budget_month", "tokens_day", "tokens_month"])
))]
pub struct LimitsSet {
    #[command(flatten)]
    pub target: LimitsTarget,
    #[command(flatten)]
    pub limits: LimitFlags,
}

/// The limit flags, one set for `limits set` and `issuer add` (for an issuer's callers each
/// limit applies per principal: issuer + subject).
#[derive(Debug, Args, Default)]
pub struct LimitFlags {
    /// Requests per minute (e.g. 600, 1.2k).
    #[arg(long, value_parser = parse_count)]
    pub rpm: Option<u64>,
    /// Tokens (input + output) per minute (e.g. 200k, 1m).
    #[arg(long, value_parser = parse_count)]
    pub tpm: Option<u64>,
    /// Requests in flight at once.
    #[arg(long, value_parser = parse_count)]
    pub concurrency: Option<u64>,
    /// Spend per UTC day in US dollars (e.g. 50usd, $12.50).
    #[arg(long, value_parser = parse_usd)]
    pub budget_day: Option<u64>,
    /// Spend per UTC month in US dollars.
    #[arg(long, value_parser = parse_usd)]
    pub budget_month: Option<u64>,
    /// Tokens per UTC day (for models without a price).
    #[arg(long, value_parser = parse_count)]
    pub tokens_day: Option<u64>,
    /// Tokens per UTC month.
    #[arg(long, value_parser = parse_count)]
    pub tokens_month: Option<u64>,
}

impl LimitFlags {
    /// The limits these flags give (unset flags stay unset).
    pub fn limits(&self) -> tollgate_core::limits::Limits {
        tollgate_core::limits::Limits {
            rpm: self.rpm,
            tpm: self.tpm,
            concurrency: self.concurrency,
            budget_day_micros: self.budget_day,
            budget_month_micros: self.budget_month,
            tokens_day: self.tokens_day,
            tokens_month: self.tokens_month,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum PricesCmd {
    /// Every price the proxy uses: the stored table, or the built-in defaults while nothing
    /// is stored.
    List,
    /// Set one model's price (USD per million tokens). The first edit stores the built-in
    /// defaults with it.
    Set(PricesSet),
    /// Remove one model's price (its requests then cost 0 USD: only token limits apply).
    Remove(PricesRemove),
    /// Load prices from a file: JSON {"model": {"input": 2.5, "output": 10, "cached_input":
    /// 1.25}} or CSV with the header model,input,output[,cached_input] (USD per million
    /// tokens). Merged into the current table unless --replace.
    Import(PricesImport),
}

#[derive(Debug, Args)]
pub struct PricesSet {
    /// Model name as requests send it; dated snapshots and aliases (`<model>-…`) inherit it.
    pub model: String,
    /// Input price, USD per million tokens.
    #[arg(long)]
    pub input: f64,
    /// Output price, USD per million tokens.
    #[arg(long)]
    pub output: f64,
    /// Cached (prompt-cache read) input price, USD per million tokens.
    #[arg(long)]
    pub cached_input: Option<f64>,
}

#[derive(Debug, Args)]
pub struct PricesRemove {
    pub model: String,
}

#[derive(Debug, Args)]
pub struct PricesImport {
    /// The JSON or CSV file.
    pub file: PathBuf,
    /// Store exactly the file's prices (models not in it lose their price) instead of merging.
    #[arg(long)]
    pub replace: bool,
}

/// `600`, `200k`, `1.5m`, `2_000`: a whole count.
pub fn parse_count(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase().replace('_', "");
    let (num, mult) = match t.strip_suffix('k') {
        Some(n) => (n.to_owned(), 1_000u64),
        None => match t.strip_suffix('m') {
            Some(n) => (n.to_owned(), 1_000_000u64),
            None => (t.clone(), 1),
        },
    };
    let bad = || format!("{s:?} is not a count (e.g. 600, 200k, 1.5m)");
    let (whole, frac) = num.split_once('.').unwrap_or((&num, ""));
    if whole.is_empty() && frac.is_empty() {
        return Err(bad());
    }
    let w: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let mut v = w.checked_mul(mult).ok_or_else(bad)?;
    if !frac.is_empty() {
        if !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 6 {
            return Err(bad());
        }
        let f: u64 = frac.parse().map_err(|_| bad())?;
        let scale = 10u64.pow(frac.len() as u32);
        if !(f * mult).is_multiple_of(scale) {
            return Err(format!("{s:?} is not a whole number"));
        }
        v = v.checked_add(f * mult / scale).ok_or_else(bad)?;
    }
    Ok(v)
}

/// `50usd`, `$12.50`, `0.25 usd`, `1000`: US dollars, as micro-dollars.
pub fn parse_usd(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_prefix('$').unwrap_or(&t);
    let t = t.strip_suffix("usd").unwrap_or(t).trim();
    let bad = || format!("{s:?} is not an amount in US dollars (e.g. 50usd, $12.50)");
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let w: u64 = whole.parse().map_err(|_| bad())?;
    let f: u64 = if frac.is_empty() {
        0
    } else {
        frac.parse::<u64>().map_err(|_| bad())? * 10u64.pow(6 - frac.len() as u32)
    };
    w.checked_mul(1_000_000)
        .and_then(|m| m.checked_add(f))
        .ok_or_else(bad)
}

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Stored policy of a tenant (and key) and the effective action for every entity.
    Show(PolicyTarget),
    /// Merge entries into the stored policy (or replace it with --file).
    Set(PolicySet),
    /// Remove the stored policy (the tenant's, or the key's overrides).
    Clear(PolicyTarget),
}

#[derive(Debug, Args)]
pub struct PolicyTarget {
    /// The tenant whose policy (or whose key's overrides) to read or change.
    #[arg(long, value_parser = parse_id)]
    pub tenant: String,
    /// A key of that tenant: key id, display form or full key. Without it, the tenant's policy.
    #[arg(long)]
    pub key: Option<String>,
}

#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("entries")
        .required(true)
        .multiple(true)
        .args(["file", "category", "entity"])
))]
pub struct PolicySet {
    #[command(flatten)]
    pub target: PolicyTarget,
    /// Replace the stored policy with this JSON policy file.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["category", "entity"])]
    pub file: Option<PathBuf>,
    /// CATEGORY=ACTION (repeatable). Categories: secret, financial, national_id, contact,
    /// network. Actions: block, redact, log, off.
    #[arg(long, value_name = "CATEGORY=ACTION", value_parser = parse_category_action)]
    pub category: Vec<(Category, Action)>,
    /// ENTITY=ACTION (repeatable), e.g. EMAIL=redact; beats the entity's category.
    #[arg(long, value_name = "ENTITY=ACTION", value_parser = parse_entity_action)]
    pub entity: Vec<(Entity, Action)>,
}

#[derive(Debug, Subcommand)]
pub enum TenantCmd {
    /// Create a tenant.
    Create(TenantCreate),
    /// List tenants.
    List,
}

#[derive(Debug, Args)]
pub struct TenantCreate {
    /// Tenant id: letters, digits, `.`, `_`, `-` (up to 64).
    #[arg(value_parser = parse_id)]
    pub tenant_id: String,
    /// Human-readable name (default: the tenant id).
    #[arg(long, value_parser = parse_label)]
    pub name: Option<String>,
    /// Who answers for this tenant (a person or team address).
    #[arg(long, value_parser = parse_owner)]
    pub owner: String,
    /// Route models to a pool for this tenant: PATTERN=POOL, e.g. 'gpt-4o*=openai-eu'
    /// (repeatable; longest matching pattern wins; a key's own mapping comes first).
    #[arg(long = "model-pool", value_name = "PATTERN=POOL", value_parser = parse_model_pool)]
    pub model_pool: Vec<(String, String)>,
}

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Issue a client key. The key is printed once and never stored.
    Issue(KeyIssue),
    /// List keys (display form only).
    List(KeyList),
    /// Show one key, by key id, display form or the full key.
    Show(KeyRef),
    /// Revoke a key (permanent).
    Revoke(KeyRevoke),
    /// Suspend a key: refused like a revoked key, but reversible with `key resume`.
    Suspend(KeySuspend),
    /// Resume a suspended key.
    Resume(KeyRef),
    /// Rotate a key: issue a successor (same tenant, owner, policy and limits), print it
    /// once, and keep the old key working until --overlap ends.
    Rotate(KeyRotate),
}

#[derive(Debug, Args)]
pub struct KeyRotate {
    /// Key id, display form or full key.
    pub key: String,
    /// How long the old key keeps working, e.g. 24h or 7d (its audit lines say so meanwhile).
    #[arg(long, value_parser = parse_duration_ms)]
    pub overlap: u64,
}

#[derive(Debug, Args)]
pub struct KeyIssue {
    #[arg(long, value_parser = parse_id)]
    pub tenant: String,
    /// Who answers for this key.
    #[arg(long, value_parser = parse_owner)]
    pub owner: String,
    /// A label, e.g. the application or environment using the key.
    #[arg(long, value_parser = parse_label)]
    pub name: Option<String>,
    /// live or test.
    #[arg(long, default_value = "live", value_parser = parse_env)]
    pub env: KeyEnv,
    /// Lifetime, e.g. 90m, 12h, 30d, 2w.
    #[arg(long, value_parser = parse_duration_ms, conflicts_with = "expires_at")]
    pub expires_in: Option<u64>,
    /// Expiry as RFC 3339, e.g. 2026-01-31T00:00:00Z.
    #[arg(long, value_parser = parse_time)]
    pub expires_at: Option<EpochMs>,
    /// Source network allowed to use the key (repeatable; none = any).
    #[arg(long = "allow-cidr", value_parser = parse_cidr)]
    pub allow_cidr: Vec<IpNet>,
    /// Model the key may use: exact name or `prefix*` (repeatable; none = any).
    #[arg(long = "allow-model", value_parser = parse_model_pattern)]
    pub allow_model: Vec<String>,
    /// Route the key may call, e.g. chat.completions, messages (repeatable; none = all).
    #[arg(long = "allow-route", value_parser = parse_route)]
    pub allow_route: Vec<String>,
    /// Route models to a pool for this key: PATTERN=POOL, e.g. '*=team-pool' (repeatable;
    /// longest matching pattern wins; beats the tenant's mapping).
    #[arg(long = "model-pool", value_name = "PATTERN=POOL", value_parser = parse_model_pool)]
    pub model_pool: Vec<(String, String)>,
    /// Issue a canary: a key that looks and verifies like any other but never reaches a
    /// provider. Plant it where a leak would expose it (repository, CI config, wiki); every
    /// use gets the uniform 401 and raises a `canary_key_used` alert. Name it after the
    /// place it is planted (--name). It takes no scopes or expiry, and is never rotated.
    #[arg(long, conflicts_with_all = ["expires_in", "expires_at", "allow_cidr", "allow_model", "allow_route", "model_pool"])]
    pub canary: bool,
}

#[derive(Debug, Args)]
pub struct KeyList {
    /// Only this tenant's keys.
    #[arg(long, value_parser = parse_id)]
    pub tenant: Option<String>,
    /// Only active keys that expire within this long, e.g. 14d (soonest first). The proxy
    /// flags their requests too (audit line `key_expiring_in_days`).
    #[arg(long, value_parser = parse_duration_ms)]
    pub expiring: Option<u64>,
    /// Only keys whose digest uses this pepper version (before dropping a version from the
    /// pepper secret: none of these may still be live).
    #[arg(long)]
    pub pepper_version: Option<u32>,
}

#[derive(Debug, Args)]
pub struct KeyRef {
    /// Key id (12 characters), display form (tgk_live_<id>…<last4>) or the full key.
    pub key: String,
}

#[derive(Debug, Args)]
pub struct KeyRevoke {
    /// Key id, display form or full key.
    pub key: String,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct KeySuspend {
    /// Key id, display form or full key.
    pub key: String,
    /// Why (recorded on the key and shown by `key show`).
    #[arg(long, default_value = "suspended by an operator", value_parser = parse_label)]
    pub reason: String,
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Add a provider token. The value is read from stdin, or from the variable --value-env names.
    // Boxed: its flags (stored, tenant-owned and federated tokens) dwarf the other commands'.
    Add(Box<TokenAdd>),
    /// List tokens.
    List(TokenList),
    /// Put a token back into rotation (clears cooldown and failure streak).
    Enable(TokenRef),
    /// Take a token out of rotation.
    Disable(TokenRef),
    /// Delete a token and its secret.
    Remove(TokenRemove),
    /// Store a new value for a token (stdin or --value-env).
    SetValue(TokenSetValue),
    /// Configure how the rotation function rotates a token.
    SetRotation(TokenSetRotation),
    /// Stage a token's next value (stdin or --value-env) for a staged-mode rotation.
    Stage(TokenStage),
    /// Rotate a token now (createSecret, setSecret, testSecret, finishSecret).
    Rotate(TokenRotate),
    /// Re-encrypt tenant-owned (KMS) token values under the current key material (after a KMS
    /// key rotation, or to move them onto TOLLGATE_KMS_KEY_ID).
    Reencrypt(TokenReencrypt),
}

#[derive(Debug, Args)]
pub struct TokenReencrypt {
    /// Only this pool's tokens.
    #[arg(long, value_parser = parse_id)]
    pub pool: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RotationModeArg {
    /// Mint a new key for an OpenAI project service account through the Admin API.
    OpenaiAdmin,
    /// An operator stages each next value (`token stage`).
    Staged,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RetireArg {
    /// Leave the replaced key alone (revoke it yourself).
    None,
    /// Deactivate the replaced key through the Anthropic Admin API.
    AnthropicAdmin,
}

#[derive(Debug, Args)]
pub struct TokenSetRotation {
    #[command(flatten)]
    pub token: TokenRef,
    #[arg(long, value_enum)]
    pub mode: RotationModeArg,
    /// OpenAI project id (openai-admin).
    #[arg(long, value_parser = parse_id, required_if_eq("mode", "openai-admin"))]
    pub project_id: Option<String>,
    /// OpenAI service account id whose keys are minted (openai-admin).
    #[arg(long, value_parser = parse_id, required_if_eq("mode", "openai-admin"))]
    pub service_account_id: Option<String>,
    /// Expiry the provider puts on each minted key, in days (openai-admin).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=365))]
    pub key_ttl_days: Option<u64>,
    /// What happens to a replaced staged key after the grace period (staged).
    #[arg(long, value_enum, default_value = "none")]
    pub retire: RetireArg,
    /// The provider's id of the key the token holds now (retired after the next rotation).
    #[arg(long, value_parser = parse_id)]
    pub key_id: Option<String>,
    /// Days between rotations (the next due date).
    #[arg(long, default_value_t = tollgate_core::rotation::DEFAULT_INTERVAL_DAYS, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub interval_days: u32,
}

impl TokenSetRotation {
    pub fn mode(&self) -> Result<tollgate_core::rotation::RotationMode, crate::CliError> {
        use tollgate_core::rotation::{RetireVia, RotationMode};
        Ok(match self.mode {
            RotationModeArg::OpenaiAdmin => RotationMode::OpenaiAdmin {
                project_id: self
                    .project_id
                    .clone()
                    .ok_or_else(|| crate::CliError::new("--project-id is required"))?,
                service_account_id: self
                    .service_account_id
                    .clone()
                    .ok_or_else(|| crate::CliError::new("--service-account-id is required"))?,
                key_ttl_secs: self.key_ttl_days.map(|d| d * 86_400),
            },
            RotationModeArg::Staged => RotationMode::Staged {
                retire: match self.retire {
                    RetireArg::None => RetireVia::None,
                    RetireArg::AnthropicAdmin => RetireVia::AnthropicAdmin,
                },
            },
        })
    }
}

#[derive(Debug, Args)]
pub struct TokenStage {
    #[command(flatten)]
    pub token: TokenRef,
    /// The provider's id of the staged key (needed to retire it after the next rotation).
    #[arg(long, value_parser = parse_id)]
    pub key_id: Option<String>,
    /// Read the value from this environment variable instead of stdin.
    #[arg(long, value_name = "VAR", value_parser = parse_env_var_name)]
    pub value_env: Option<String>,
}

#[derive(Debug, Args)]
pub struct TokenRotate {
    #[command(flatten)]
    pub token: TokenRef,
    /// On AWS: how long to wait for Secrets Manager to finish.
    #[arg(long, default_value_t = 300)]
    pub wait_secs: u64,
}

#[derive(Debug, Args)]
pub struct TokenAdd {
    /// The pool to add the token to. It must exist (have a token or settings) unless
    /// --new-pool is given.
    #[arg(long, value_parser = parse_id)]
    pub pool: String,
    /// Create --pool if it does not exist yet (without it, a pool name that matches no
    /// existing pool is refused, so a typo does not start a new pool).
    #[arg(long)]
    pub new_pool: bool,
    /// openai or anthropic.
    #[arg(long, value_parser = parse_provider)]
    pub provider: ProviderKind,
    /// Provider base URL including the version prefix (default: the provider's public API).
    /// Checked after parsing (see [`parse_from`]) so a rejected URL is never echoed.
    /// Link-local and instance-metadata addresses are refused; plain http only to loopback,
    /// localhost and private addresses unless --allow-plain-http.
    #[arg(long)]
    pub base_url: Option<String>,
    /// Accept a plain http:// base URL to a host that is not loopback, localhost or a private
    /// address (the token then travels unencrypted: only for a network path you trust).
    #[arg(long, requires = "base_url")]
    pub allow_plain_http: bool,
    /// Weight for the weighted strategy.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub weight: u32,
    /// Priority tier (lower first) for the priority strategy.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1_000))]
    pub priority: u32,
    /// Who answers for this token (default: $USER).
    #[arg(long, value_parser = parse_owner)]
    pub owner: Option<String>,
    /// Token id, unique within the pool (default: tok_ + 10 random characters).
    #[arg(long, value_parser = parse_id)]
    pub id: Option<String>,
    /// Expiry as RFC 3339.
    #[arg(long, value_parser = parse_time)]
    pub expires_at: Option<EpochMs>,
    /// Read the value from this environment variable instead of stdin.
    #[arg(long, value_name = "VAR", value_parser = parse_env_var_name)]
    pub value_env: Option<String>,
    /// A tenant-owned key: the value is encrypted with KMS under TOLLGATE_KMS_KEY_ID with
    /// encryption context {"tenant": T} and kept on the pool record (no Secrets Manager secret).
    /// The tenant must exist.
    #[arg(long, value_parser = parse_id, conflicts_with = "federated")]
    pub tenant: Option<String>,
    #[command(flatten)]
    pub federation: FederatedFlags,
}

/// `token add --federated`: a token with no stored secret; the proxy exchanges an identity
/// token for its own AWS role (STS GetWebIdentityToken) for a short-lived access token.
#[derive(Debug, Args, Default)]
pub struct FederatedFlags {
    /// Add a keyless (federated) token: nothing is read from stdin, nothing is stored in
    /// Secrets Manager.
    #[arg(long, conflicts_with = "value_env")]
    pub federated: bool,
    /// The identity token's audience (`aud`), as configured at the provider.
    #[arg(long, requires = "federated")]
    pub audience: Option<String>,
    /// The token endpoint (default: https://auth.openai.com/oauth/token for openai,
    /// {base URL origin}/v1/oauth/token for anthropic).
    #[arg(long, requires = "federated")]
    pub token_url: Option<String>,
    /// openai: the Workload Identity Provider id.
    #[arg(long, requires = "federated")]
    pub identity_provider_id: Option<String>,
    /// The provider's service account id (openai and anthropic).
    #[arg(long, requires = "federated")]
    pub service_account_id: Option<String>,
    /// anthropic: the federation rule id (fdrl_…).
    #[arg(long, requires = "federated")]
    pub federation_rule_id: Option<String>,
    /// anthropic: the organization id (UUID).
    #[arg(long, requires = "federated")]
    pub organization_id: Option<String>,
    /// anthropic: the workspace id (wrkspc_… or `default`), when the rule covers several.
    #[arg(long, requires = "federated")]
    pub workspace_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct TokenList {
    #[arg(long, value_parser = parse_id)]
    pub pool: Option<String>,
}

#[derive(Debug, Args)]
pub struct TokenRef {
    #[arg(value_parser = parse_id)]
    pub pool: String,
    #[arg(value_parser = parse_id)]
    pub token_id: String,
}

#[derive(Debug, Args)]
pub struct TokenRemove {
    #[command(flatten)]
    pub token: TokenRef,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct TokenSetValue {
    #[command(flatten)]
    pub token: TokenRef,
    /// Read the value from this environment variable instead of stdin.
    #[arg(long, value_name = "VAR", value_parser = parse_env_var_name)]
    pub value_env: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum PoolCmd {
    /// Strategy and per-token health of one pool, or of every pool.
    Show(PoolShow),
    /// Per pool: tokens by status, last probe, next due rotation, tokens expiring soon (what
    /// the rotation function's sweep reports).
    Health(PoolHealthArgs),
    /// Set a pool's selection strategy.
    SetStrategy(PoolSetStrategy),
    /// Cap how many requests one tenant may have in flight through the pool at once (its fair
    /// share of the pool's provider capacity), across every proxy instance.
    SetTenantShare(PoolSetTenantShare),
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("share").required(true).args(["max_concurrency", "clear"])))]
pub struct PoolSetTenantShare {
    #[arg(value_parser = parse_id)]
    pub pool: String,
    /// Requests in flight per tenant through this pool (at least 1).
    #[arg(long, value_parser = parse_positive_count)]
    pub max_concurrency: Option<u64>,
    /// Remove the cap.
    #[arg(long)]
    pub clear: bool,
}

fn parse_positive_count(s: &str) -> Result<u64, String> {
    match parse_count(s)? {
        0 => Err("must be at least 1 (use --clear to remove the cap)".into()),
        n => Ok(n),
    }
}

#[derive(Debug, Args)]
pub struct PoolHealthArgs {
    #[arg(value_parser = parse_id)]
    pub pool: Option<String>,
    /// "Expiring soon" means within this many days (the sweep's default warning window).
    #[arg(long, default_value_t = 7)]
    pub expiring_days: u32,
}

#[derive(Debug, Args)]
pub struct PoolShow {
    #[arg(value_parser = parse_id)]
    pub pool: Option<String>,
}

#[derive(Debug, Args)]
pub struct PoolSetStrategy {
    #[arg(value_parser = parse_id)]
    pub pool: String,
    /// round_robin, least_used, weighted or priority.
    #[arg(value_parser = parse_strategy)]
    pub strategy: Strategy,
}

/// Parses the command line: clap first, then the checks whose error must not echo the value
/// (a base URL may carry credentials, and clap's own message repeats the rejected value).
/// Both kinds of failure are usage errors (exit 2).
pub fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut cli = Cli::try_parse_from(args)?;
    // Every command that takes a base URL checks it here, with the one function.
    let base_url = match &mut cli.command {
        Command::Token(TokenCmd::Add(add)) => {
            add.base_url.as_mut().map(|u| (u, add.allow_plain_http))
        }
        _ => None,
    };
    if let Some((u, allow_plain_http)) = base_url {
        *u = parse_base_url(u, allow_plain_http).map_err(|msg| {
            use clap::CommandFactory;
            Cli::command().error(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value for '--base-url': {msg}"),
            )
        })?;
    }
    Ok(cli)
}

// ---- value parsers ----

/// Tenant, pool and token ids: they end up in table keys and secret names.
pub fn parse_id(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err("must be 1-64 characters: letters, digits, '.', '_' or '-', starting with a letter or digit".into())
    }
}

fn parse_text(s: &str, what: &str, max: usize) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if t.chars().count() > max {
        return Err(format!("{what} must be at most {max} characters"));
    }
    if t.chars().any(char::is_control) {
        return Err(format!("{what} must not contain control characters"));
    }
    Ok(t.to_owned())
}

pub fn parse_owner(s: &str) -> Result<String, String> {
    parse_text(s, "owner", 256)
}

pub fn parse_label(s: &str) -> Result<String, String> {
    parse_text(s, "name", 128)
}

pub fn parse_env(s: &str) -> Result<KeyEnv, String> {
    s.parse()
}

pub fn parse_provider(s: &str) -> Result<ProviderKind, String> {
    s.parse()
}

pub fn parse_strategy(s: &str) -> Result<Strategy, String> {
    s.parse()
}

/// `30d`, `12h`, `90m`, `45s`, `2w` → milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let err = || format!("expected a duration like 30d, 12h, 90m, 45s or 2w, not {s:?}");
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| err())?;
    let mult: u64 = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return Err(err()),
    };
    match n.checked_mul(mult) {
        Some(0) => Err("duration must be positive".into()),
        Some(ms) => Ok(ms),
        None => Err(err()),
    }
}

pub fn parse_time(s: &str) -> Result<EpochMs, String> {
    parse_rfc3339(s)
        .ok_or_else(|| format!("expected an RFC 3339 time like 2026-01-31T00:00:00Z, not {s:?}"))
}

/// A CIDR, or a bare address meaning just that host. Host bits are cleared.
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<IpNet>() {
        return Ok(n.trunc());
    }
    s.parse::<std::net::IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("expected a CIDR like 10.0.0.0/8 or an IP address, not {s:?}"))
}

pub fn parse_model_pattern(s: &str) -> Result<String, String> {
    let s = s.trim();
    let star = s.find('*');
    if s.is_empty()
        || s.len() > 128
        || s.chars().any(|c| c.is_whitespace() || c.is_control())
        || star.is_some_and(|i| i != s.len() - 1)
    {
        return Err(format!(
            "a model pattern is an exact model name or a prefix ending in '*', not {s:?}"
        ));
    }
    Ok(s.to_owned())
}

/// `PATTERN=POOL`.
pub fn parse_model_pool(s: &str) -> Result<(String, String), String> {
    let (pattern, pool) = s
        .split_once('=')
        .ok_or_else(|| format!("expected PATTERN=POOL, e.g. 'gpt-4o*=openai', not {s:?}"))?;
    Ok((parse_model_pattern(pattern)?, parse_id(pool.trim())?))
}

/// A route name as the proxy checks it (`Route::name`); the list is the core's `Route::ALL`.
pub fn parse_route(s: &str) -> Result<String, String> {
    Route::ALL
        .iter()
        .map(|r| r.name())
        .find(|n| *n == s)
        .map(str::to_owned)
        .ok_or_else(|| {
            let names: Vec<&str> = Route::ALL.iter().map(|r| r.name()).collect();
            format!("unknown route {s:?}; one of: {}", names.join(", "))
        })
}

/// A provider base URL, checked the same way wherever one enters: http(s) with a host and no
/// credentials, query or fragment; never a link-local or cloud instance-metadata address (see
/// [`host_reach`]); plain http only to loopback, localhost or private addresses unless
/// `allow_plain_http`. The trailing `/` is dropped (route suffixes start with one). Errors
/// never quote the URL (it may carry credentials), at most its host.
pub fn parse_base_url(s: &str, allow_plain_http: bool) -> Result<String, String> {
    let u = url::Url::parse(s.trim()).map_err(|e| format!("not a valid URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err("the base URL must use http or https".into());
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("the base URL must have a host".into());
    }
    if !u.username().is_empty() || u.password().is_some() {
        // Never echo the URL back: it carries credentials.
        return Err(
            "the base URL must not contain credentials; the token value carries them".into(),
        );
    }
    if u.query().is_some() {
        return Err("the base URL must not have a query string".into());
    }
    if u.fragment().is_some() {
        return Err("the base URL must not have a fragment".into());
    }
    let host = u.host().ok_or("the base URL must have a host")?;
    match host_reach(&host) {
        Reach::Never(why) => {
            return Err(format!(
                "{host} is {why}: a provider token is never sent there"
            ));
        }
        Reach::Remote if u.scheme() == "http" && !allow_plain_http => {
            return Err(format!(
                "plain http to {host} would carry the provider token unencrypted over the \
                 network; use https, or pass --allow-plain-http if the path to {host} is one \
                 you trust (plain http needs no flag only for loopback, localhost and private \
                 addresses: 10/8, 172.16/12, 192.168/16, fc00::/7)"
            ));
        }
        Reach::Remote | Reach::Private => {}
    }
    Ok(u.as_str().trim_end_matches('/').to_owned())
}

/// Where a base URL's host leads, for [`parse_base_url`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Never a provider: link-local, cloud instance metadata, not a unicast address.
    Never(&'static str),
    /// Loopback, `localhost` or a private range: plain http stays on a network you run.
    Private,
    /// Anything else, reached across networks the operator may not control.
    Remote,
}

/// Classifies a parsed host. `url` has already normalised the spellings of an address
/// (`2852039166`, `0xa9.0xfe.0xa9.0xfe` are `169.254.169.254`) and lowercased names. A name
/// that merely resolves to such an address is not caught here.
pub fn host_reach(host: &url::Host<&str>) -> Reach {
    use std::net::Ipv4Addr;
    fn v4(a: Ipv4Addr) -> Reach {
        if a.is_link_local() {
            Reach::Never(
                "a link-local address (169.254.0.0/16, where cloud instance metadata and \
                 credentials are served)",
            )
        } else if a == Ipv4Addr::new(100, 100, 100, 200) {
            Reach::Never("the Alibaba Cloud instance-metadata address")
        } else if a.is_unspecified() || a.is_broadcast() || a.is_multicast() {
            Reach::Never("not a unicast host address")
        } else if a.is_loopback() || a.is_private() {
            Reach::Private
        } else {
            Reach::Remote
        }
    }
    match host {
        url::Host::Ipv4(a) => v4(*a),
        url::Host::Ipv6(a) => {
            if let Some(m) = a.to_ipv4_mapped() {
                return v4(m);
            }
            let seg = a.segments();
            if seg[0] & 0xffc0 == 0xfe80 {
                Reach::Never("an IPv6 link-local address (fe80::/10)")
            } else if seg[..4] == [0xfd00, 0x0ec2, 0, 0] {
                Reach::Never(
                    "an AWS instance-services address (fd00:ec2::/64, e.g. the metadata \
                     service at fd00:ec2::254)",
                )
            } else if a.is_unspecified() || a.is_multicast() {
                Reach::Never("not a unicast host address")
            } else if a.is_loopback() || seg[0] & 0xfe00 == 0xfc00 {
                Reach::Private
            } else {
                Reach::Remote
            }
        }
        url::Host::Domain(d) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            let first = d.split('.').next().unwrap_or("");
            if matches!(
                d.as_str(),
                "metadata" | "metadata.google.internal" | "metadata.goog"
            ) || first == "instance-data"
            {
                Reach::Never("a cloud instance-metadata host name")
            } else if d == "localhost" || d.ends_with(".localhost") {
                Reach::Private
            } else {
                Reach::Remote
            }
        }
    }
}

pub const CATEGORIES: [Category; 5] = [
    Category::Secret,
    Category::Financial,
    Category::NationalId,
    Category::Contact,
    Category::Network,
];

pub const ACTIONS: [Action; 4] = [Action::Block, Action::Redact, Action::Log, Action::Off];

fn parse_action(s: &str) -> Result<Action, String> {
    s.trim().parse().map_err(|_| {
        let names: Vec<&str> = ACTIONS.iter().map(|a| a.name()).collect();
        format!("unknown action {s:?}; one of: {}", names.join(", "))
    })
}

fn split_assignment<'a>(s: &'a str, what: &str) -> Result<(&'a str, &'a str), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim(), v.trim()))
        .ok_or_else(|| format!("expected {what}=ACTION, not {s:?}"))
}

/// `contact=redact`.
pub fn parse_category_action(s: &str) -> Result<(Category, Action), String> {
    let (c, a) = split_assignment(s, "CATEGORY")?;
    let c = c.parse().map_err(|_| {
        let names: Vec<&str> = CATEGORIES.iter().map(|c| c.name()).collect();
        format!("unknown category {c:?}; one of: {}", names.join(", "))
    })?;
    Ok((c, parse_action(a)?))
}

/// `EMAIL=off` (entity names are case-insensitive).
pub fn parse_entity_action(s: &str) -> Result<(Entity, Action), String> {
    let (e, a) = split_assignment(s, "ENTITY")?;
    let e = e.parse().map_err(|_| {
        let names: Vec<&str> = Entity::ALL.iter().map(|e| e.name()).collect();
        format!("unknown entity {e:?}; one of: {}", names.join(", "))
    })?;
    Ok((e, parse_action(a)?))
}

pub fn parse_request_kind(s: &str) -> Result<RequestKind, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "openai" => Ok(RequestKind::Openai),
        "anthropic" => Ok(RequestKind::Anthropic),
        _ => Err(format!("expected openai or anthropic, not {s:?}")),
    }
}

pub fn parse_env_var_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && !s.as_bytes()[0].is_ascii_digit()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(s.to_owned())
    } else {
        Err("expected an environment variable name (letters, digits, '_')".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn there_is_no_value_flag_for_token_secrets() {
        let e = Cli::try_parse_from([
            "tollgate",
            "token",
            "add",
            "--pool",
            "p",
            "--provider",
            "openai",
            "--value",
            "sk-x",
        ])
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument);
    }

    #[test]
    fn a_rejected_base_url_is_a_usage_error_that_does_not_echo_it() {
        let e = parse_from([
            "tollgate",
            "token",
            "add",
            "--pool",
            "p",
            "--provider",
            "openai",
            "--base-url",
            "https://u:hunter2@x/v1",
        ])
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let ok = parse_from([
            "tollgate",
            "token",
            "add",
            "--pool",
            "p",
            "--provider",
            "openai",
            "--base-url",
            "http://127.0.0.1:9/v1/",
        ])
        .unwrap();
        let Command::Token(TokenCmd::Add(a)) = ok.command else {
            panic!()
        };
        assert_eq!(a.base_url.as_deref(), Some("http://127.0.0.1:9/v1"));
    }

    /// `token add` with this base URL (and extra flags): the stored URL, or the usage error.
    fn add_with_base_url(url: &str, extra: &[&str]) -> Result<String, clap::Error> {
        let argv = [
            "tollgate",
            "token",
            "add",
            "--pool",
            "p",
            "--provider",
            "openai",
            "--base-url",
            url,
        ];
        let cli = parse_from(argv.iter().chain(extra))?;
        let Command::Token(TokenCmd::Add(a)) = cli.command else {
            panic!()
        };
        Ok(a.base_url.unwrap())
    }

    #[test]
    fn instance_metadata_and_link_local_base_urls_are_refused() {
        for url in [
            "http://169.254.169.254/latest",
            "https://169.254.169.254/v1",
            "http://169.254.170.2/v2",
            "http://2852039166/v1", // 169.254.169.254 as one number
            "http://0xa9.0xfe.0xa9.0xfe/v1",
            "http://[fd00:ec2::254]/latest",
            "https://[fe80::1]/v1",
            "https://[febf::1]/v1",
            "https://[::ffff:169.254.169.254]/v1",
            "http://metadata.google.internal/computeMetadata/v1",
            "https://metadata.google.internal./v1",
            "http://METADATA/v1",
            "http://metadata.goog/v1",
            "http://instance-data/latest",
            "http://instance-data.ec2.internal/latest",
            "http://0.0.0.0:8080/v1",
            "http://[::]:8080/v1",
        ] {
            for extra in [&[][..], &["--allow-plain-http"][..]] {
                let e = add_with_base_url(url, extra)
                    .map(|u| panic!("{url} {extra:?} accepted as {u}"))
                    .unwrap_err();
                assert_eq!(e.exit_code(), 2, "{url}: {e}");
                let msg = e.to_string();
                assert!(msg.contains("never"), "{url}: {msg}");
                assert!(!msg.contains("--allow-plain-http"), "{url}: {msg}");
            }
        }
        // Neighbours that are not metadata stay usable.
        for url in [
            "https://metadata.example.com/v1",
            "https://my-instance-data.example/v1",
            "https://169.255.0.1/v1",
            "https://[fd00:ec3::254]/v1",
        ] {
            assert!(add_with_base_url(url, &[]).is_ok(), "{url}");
        }
    }

    #[test]
    fn plain_http_to_a_public_host_needs_allow_plain_http() {
        for url in [
            "http://api.openai.com/v1",
            "http://203.0.113.7:8000/v1",
            "http://100.64.0.1/v1",
            "http://[2001:db8::1]/v1",
            "http://vllm.corp.example:8000/v1",
        ] {
            let e = add_with_base_url(url, &[]).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{url}: {e}");
            let msg = e.to_string();
            assert!(
                msg.contains("--allow-plain-http") && msg.contains("https"),
                "{url}: {msg}"
            );
            assert_eq!(
                add_with_base_url(url, &["--allow-plain-http"]).unwrap(),
                url.trim_end_matches('/')
            );
        }
        // Loopback, localhost and private ranges: plain http is fine without the flag.
        for url in [
            "http://127.0.0.1:9/v1",
            "http://127.8.9.10/v1",
            "http://localhost:8000/v1",
            "http://mock.localhost:8000/v1",
            "http://10.1.2.3/v1",
            "http://172.16.0.1/v1",
            "http://172.31.255.254/v1",
            "http://192.168.1.10:8000/v1",
            "http://[::1]:8000/v1",
            "http://[fd12:3456::1]/v1",
            "http://[::ffff:10.0.0.1]/v1",
        ] {
            assert!(add_with_base_url(url, &[]).is_ok(), "{url}");
        }
        // https never needs it.
        assert!(add_with_base_url("https://api.openai.com/v1", &[]).is_ok());
        // The flag only makes sense with a base URL.
        let e = parse_from([
            "tollgate",
            "token",
            "add",
            "--pool",
            "p",
            "--provider",
            "openai",
            "--allow-plain-http",
        ])
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn ids_and_texts() {
        assert!(parse_id("acme-prod_1.x").is_ok());
        for bad in ["", "-x", "a/b", "a b", &"x".repeat(65)] {
            assert!(parse_id(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_owner("  a@b.test ").unwrap(), "a@b.test");
        assert!(parse_owner("  ").is_err());
        assert!(parse_owner("a\nb").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("30d"), Ok(30 * 86_400_000));
        assert_eq!(parse_duration_ms("90m"), Ok(90 * 60_000));
        assert_eq!(parse_duration_ms("2w"), Ok(14 * 86_400_000));
        for bad in ["", "d", "30", "30x", "0d", "-1d", "99999999999999999999d"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cidrs_models_routes() {
        assert_eq!(parse_cidr("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_cidr("192.0.2.1").unwrap().to_string(), "192.0.2.1/32");
        assert_eq!(
            parse_cidr("2001:db8::1").unwrap().to_string(),
            "2001:db8::1/128"
        );
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_model_pattern("gpt-4o*").is_ok());
        assert!(parse_model_pattern("gpt*4o").is_err());
        assert!(parse_route("chat.completions").is_ok());
        assert_eq!(
            parse_model_pool("*=team-a"),
            Ok(("*".to_owned(), "team-a".to_owned()))
        );
        assert!(parse_model_pool("gpt-4o").is_err());
        assert!(parse_model_pool("gpt-4o=a/b").is_err());
        assert!(parse_route("chat").is_err());
    }

    #[test]
    fn routes_are_the_cores_list() {
        for r in Route::ALL {
            assert_eq!(parse_route(r.name()).as_deref(), Ok(r.name()));
        }
        let e = parse_route("nope").unwrap_err();
        for r in Route::ALL {
            assert!(e.contains(r.name()), "{e}");
        }
    }

    #[test]
    fn policy_entries_and_request_kinds() {
        assert_eq!(
            parse_category_action("national_id=off"),
            Ok((Category::NationalId, Action::Off))
        );
        assert_eq!(
            parse_entity_action("email = Redact"),
            Ok((Entity::Email, Action::Redact))
        );
        assert!(
            parse_category_action("secrets=block")
                .unwrap_err()
                .contains("contact")
        );
        assert!(parse_category_action("secret").is_err());
        assert!(
            parse_entity_action("EMAIL=maybe")
                .unwrap_err()
                .contains("redact")
        );
        assert!(
            parse_entity_action("NOPE=off")
                .unwrap_err()
                .contains("CREDIT_CARD")
        );
        assert_eq!(parse_request_kind("anthropic"), Ok(RequestKind::Anthropic));
        assert!(parse_request_kind("gemini").is_err());
        // set needs entries; --file excludes the others; --key needs --tenant for scan.
        for bad in [
            vec!["policy", "set", "--tenant", "t"],
            vec![
                "policy",
                "set",
                "--tenant",
                "t",
                "--file",
                "p.json",
                "--entity",
                "EMAIL=off",
            ],
            vec!["scan", "--key", "abcdefghijkl"],
            vec!["scan", "--jsonl", "--request", "openai"],
            vec!["scan", "--policy", "p.json", "--tenant", "t"],
        ] {
            let e = parse_from(std::iter::once("tollgate").chain(bad.iter().copied())).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}");
        }
        assert!(parse_from(["tollgate", "scan"]).is_ok());
        assert!(
            parse_from([
                "tollgate",
                "policy",
                "set",
                "--tenant",
                "t",
                "--category",
                "contact=redact",
                "--entity",
                "EMAIL=off",
                "--entity",
                "PHONE=log",
            ])
            .is_ok()
        );
    }

    #[test]
    fn base_urls() {
        assert_eq!(
            parse_base_url("https://api.openai.com/v1/", false).unwrap(),
            "https://api.openai.com/v1"
        );
        assert_eq!(
            parse_base_url("http://127.0.0.1:8080/v1", false).unwrap(),
            "http://127.0.0.1:8080/v1"
        );
        assert!(parse_base_url("ftp://x/v1", false).is_err());
        assert!(parse_base_url("https://x/v1?key=1", false).is_err());
        assert!(parse_base_url("https://x/v1#f", false).is_err());
        let e = parse_base_url("https://user:hunter2@x/v1", false).unwrap_err();
        assert!(!e.contains("hunter2"));
        assert!(parse_base_url("not a url", false).is_err());
    }
}
