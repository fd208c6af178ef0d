//! `tollgate issuer add | list | show | remove`: the OIDC issuers whose JWTs the proxy accepts
//! as callers. A record says which tokens count (issuer, audiences, algorithms, required
//! claims), where the signing keys are (an explicit JWK Set URL or the issuer's discovery
//! document), which tenant a token belongs to (fixed, or a claim naming an existing tenant)
//! and the policy every caller of the issuer runs with (the fields a key carries). Changes
//! take effect within the proxy's key cache TTL.
//!
//! The argument types live here rather than in `args.rs` (which only names the command):
//! they are this command's alone. Values are validated by the parsers below, so a malformed
//! URL, algorithm or claim rule is a usage error (exit 2) before anything touches AWS.

use crate::args::{parse_cidr, parse_id, parse_model_pattern, parse_model_pool, parse_route};
use crate::ctx::{Ctx, confirm};
use crate::error::{CliError, Result, StoreContext};
use crate::output::{Out, Table, fields};
use crate::policy::{load_policy_file, policy_json};
use clap::{ArgGroup, Args, Subcommand};
use ipnet::IpNet;
use serde_json::{Value, json};
use std::path::PathBuf;
use tollgate_core::clock::rfc3339;
use tollgate_core::identity::{
    ClaimRule, DEFAULT_PRINCIPAL_CLAIM, IssuerPolicy, IssuerRecord, JwksLocation, JwsAlg,
    TenantMapping, discovery_url, jwks_uri_from_discovery,
};
use tollgate_core::limits::Limits;
use tollgate_core::ports::{IssuerStore, StoreError};

const NOTE: &str = "takes effect within the proxy's key cache TTL (a few seconds by default)";

#[derive(Debug, Subcommand)]
pub enum IssuerCmd {
    /// Trust an OIDC issuer: its JWTs become callers with the policy given here.
    ///
    /// Example (GitHub Actions, one repository, tenant acme):
    ///   tollgate issuer add https://token.actions.githubusercontent.com --audience tollgate
    ///     --discovery --tenant acme --require repository=acme/app --allow-model 'gpt-4o*'
    Add(Box<IssuerAdd>),
    /// List trusted issuers.
    List,
    /// Show one trusted issuer's record.
    Show(IssuerRef),
    /// Stop trusting an issuer: its tokens are refused within the key cache TTL.
    Remove(IssuerRemove),
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("keys").required(true).args(["jwks_url", "discovery"])))]
#[command(group(ArgGroup::new("tenant_map").required(true).args(["tenant", "tenant_claim"])))]
pub struct IssuerAdd {
    /// The issuer exactly as tokens carry it in `iss` (https; http only for localhost).
    #[arg(value_parser = parse_issuer_url)]
    pub issuer: String,
    /// An audience a token's `aud` may name (repeatable; at least one).
    #[arg(long = "audience", required = true, value_parser = parse_claim_value)]
    pub audiences: Vec<String>,
    /// The issuer's JWK Set URL (https; http only for localhost).
    #[arg(long, value_parser = parse_issuer_url)]
    pub jwks_url: Option<String>,
    /// Find the JWK Set through the issuer's discovery document
    /// (<issuer>/.well-known/openid-configuration, whose `issuer` must match exactly).
    #[arg(long)]
    pub discovery: bool,
    /// An accepted signature algorithm (repeatable; default RS256): RS256, RS384, RS512,
    /// PS256, PS384, PS512, ES256, ES384, EdDSA. `none` and HMAC are never accepted.
    #[arg(long = "alg", value_parser = parse_alg)]
    pub algorithms: Vec<JwsAlg>,
    /// Every token of this issuer belongs to this tenant (which must exist).
    #[arg(long, value_parser = parse_id)]
    pub tenant: Option<String>,
    /// The claim whose value names the token's tenant (which must exist when a token arrives).
    #[arg(long, value_parser = parse_claim_name)]
    pub tenant_claim: Option<String>,
    /// With --tenant-claim: a tenant the claim may name (repeatable). Strongly advised for an
    /// issuer anyone can get tokens from (public CI providers): without it, any tenant.
    #[arg(long = "tenant-allow", requires = "tenant_claim", conflicts_with = "tenant", value_parser = parse_id)]
    pub tenant_allow: Vec<String>,
    /// The claim naming the caller (audit line `principal`, per-principal limits).
    #[arg(long, default_value = DEFAULT_PRINCIPAL_CLAIM, value_parser = parse_claim_name)]
    pub principal_claim: String,
    /// CLAIM=VALUE: the claim must be this string (repeatable), e.g. repository=acme/app.
    #[arg(long = "require", value_name = "CLAIM=VALUE", value_parser = parse_claim_rule)]
    pub require: Vec<(String, String)>,
    /// CLAIM=VALUE: the claim must be an array holding VALUE, or a space-separated string
    /// with VALUE as a word (repeatable), e.g. groups=llm-users or scope=llm.
    #[arg(long = "require-contains", value_name = "CLAIM=VALUE", value_parser = parse_claim_rule)]
    pub require_contains: Vec<(String, String)>,
    /// CLAIM=VALUE: tokens whose claim is this string are tenant admins, on the management
    /// API (/tollgate/v1/…), of the one tenant the token maps to. Default: nobody.
    #[arg(long, value_name = "CLAIM=VALUE", value_parser = parse_claim_rule,
          conflicts_with = "tenant_admin_contains")]
    pub tenant_admin: Option<(String, String)>,
    /// CLAIM=VALUE: as --tenant-admin, for a claim that is an array (or space-separated
    /// string) holding VALUE, e.g. groups=tollgate-admins.
    #[arg(long, value_name = "CLAIM=VALUE", value_parser = parse_claim_rule)]
    pub tenant_admin_contains: Option<(String, String)>,
    /// Source network callers may come from (repeatable; none = any).
    #[arg(long = "allow-cidr", value_parser = parse_cidr)]
    pub allow_cidr: Vec<IpNet>,
    /// Model callers may use: exact name or `prefix*` (repeatable; none = any).
    #[arg(long = "allow-model", value_parser = parse_model_pattern)]
    pub allow_model: Vec<String>,
    /// Route callers may call, e.g. chat.completions, messages (repeatable; none = all).
    #[arg(long = "allow-route", value_parser = parse_route)]
    pub allow_route: Vec<String>,
    /// Route models to a pool for these callers: PATTERN=POOL (repeatable).
    #[arg(long = "model-pool", value_name = "PATTERN=POOL", value_parser = parse_model_pool)]
    pub model_pool: Vec<(String, String)>,
    /// Sensitive-data policy for these callers: a JSON policy file as `policy set --file`
    /// takes (default: the tenant's).
    #[arg(long, value_name = "FILE")]
    pub dlp_policy: Option<PathBuf>,
    /// Limits per principal (issuer + subject), as `limits set` takes them.
    #[command(flatten)]
    pub limits: crate::args::LimitFlags,
    /// Replace the record if the issuer is already trusted (otherwise that is an error).
    #[arg(long)]
    pub replace: bool,
    /// Before storing, fetch the discovery document (with --discovery) and the JWK Set the
    /// way the proxy will, and refuse if they do not verify: unreachable, another issuer's
    /// document, a plain-http jwks_uri, or no key usable with the allowed algorithms.
    #[arg(long)]
    pub check: bool,
}

#[derive(Debug, Args)]
pub struct IssuerRef {
    /// The issuer exactly as stored (`issuer list` shows them).
    pub issuer: String,
}

#[derive(Debug, Args)]
pub struct IssuerRemove {
    /// The issuer exactly as stored.
    pub issuer: String,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

// ---- value parsers ----

/// An issuer or JWK Set URL: https with a host, or http to localhost / loopback; no
/// credentials, query or fragment. Kept exactly as typed (an issuer must equal `iss`
/// character for character, so nothing is normalised).
pub fn parse_issuer_url(s: &str) -> std::result::Result<String, String> {
    if s.len() > 1024 {
        return Err("a URL must be at most 1024 characters".into());
    }
    if s.trim() != s || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a URL must not contain spaces or control characters".into());
    }
    let u = url::Url::parse(s).map_err(|e| format!("not a valid URL: {e}"))?;
    if u.host_str().is_none_or(str::is_empty) {
        return Err("the URL must have a host".into());
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("the URL must not contain credentials".into());
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err("the URL must not have a query string or fragment".into());
    }
    if !tollgate_core::identity::is_acceptable_url(s) {
        return Err(
            "the URL must use https (plain http only for localhost, 127.0.0.1 or [::1])".into(),
        );
    }
    Ok(s.to_owned())
}

pub fn parse_alg(s: &str) -> std::result::Result<JwsAlg, String> {
    if let Some(a) = JwsAlg::parse(s.trim()) {
        return Ok(a);
    }
    let t = s.trim().to_ascii_lowercase();
    if t == "none" || t.starts_with("hs") {
        return Err(format!(
            "{s:?} is never accepted: unsigned (none) and HMAC (HS*) tokens are refused"
        ));
    }
    Err(format!(
        "unknown algorithm {s:?}; one of: RS256, RS384, RS512, PS256, PS384, PS512, ES256, \
         ES384, EdDSA (exact spelling)"
    ))
}

/// A claim name: 1–128 characters, no spaces or control characters.
pub fn parse_claim_name(s: &str) -> std::result::Result<String, String> {
    let t = s.trim();
    if t.is_empty() || t.len() > 128 || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "a claim name is 1-128 characters without spaces, not {s:?}"
        ));
    }
    Ok(t.to_owned())
}

/// An audience or claim value: 1–512 characters, no control characters.
pub fn parse_claim_value(s: &str) -> std::result::Result<String, String> {
    if s.is_empty() || s.len() > 512 || s.chars().any(char::is_control) {
        return Err("a value is 1-512 characters without control characters".into());
    }
    Ok(s.to_owned())
}

/// `CLAIM=VALUE` (the value may itself contain `=`).
pub fn parse_claim_rule(s: &str) -> std::result::Result<(String, String), String> {
    let (c, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected CLAIM=VALUE, e.g. repository=acme/app, not {s:?}"))?;
    Ok((parse_claim_name(c)?, parse_claim_value(v)?))
}

// ---- commands ----

pub async fn run(ctx: &mut Ctx<'_>, cmd: IssuerCmd) -> Result<Out> {
    let Some(store) = ctx.issuers else {
        return Err(CliError::new(
            "no issuers table configured: set TOLLGATE_ISSUERS_TABLE",
        ));
    };
    match cmd {
        IssuerCmd::Add(a) => add(ctx, store, *a).await,
        IssuerCmd::List => list(store).await,
        IssuerCmd::Show(a) => show(store, a).await,
        IssuerCmd::Remove(a) => remove(ctx, store, a).await,
    }
}

/// The tenant exists and is enabled (a fixed tenant or one of an allow-list).
async fn check_tenant(ctx: &Ctx<'_>, id: &str) -> Result<()> {
    let t = ctx
        .tenants
        .get_tenant(id)
        .await
        .ctx(format!("reading tenant {id:?}"))?
        .ok_or_else(|| {
            CliError::new(format!(
                "tenant {id:?} does not exist; create it first with `tollgate tenant create`"
            ))
        })?;
    if t.disabled {
        return Err(CliError::new(format!(
            "tenant {id:?} is disabled; its callers would not authenticate"
        )));
    }
    Ok(())
}

fn limits(a: &IssuerAdd) -> Option<Limits> {
    let l = a.limits.limits();
    (!l.is_empty()).then_some(l)
}

/// The largest discovery document or JWK Set `--check` reads (the proxy's cap).
const CHECK_MAX_BYTES: usize = 256 * 1024;

/// `issuer add --check`: what the proxy will do on the first token, done now. Returns the JWK
/// Set URL and how many of its keys fit the allowed algorithms.
async fn check_keys(rec: &IssuerRecord) -> Result<(String, usize)> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .map_err(|e| CliError::new(format!("--check: cannot build an HTTP client: {e}")))?;
    let get = |url: String| {
        let client = client.clone();
        async move {
            let fail =
                |why: String| CliError::new(format!("--check: {url}: {why}; nothing was stored"));
            let resp = client
                .get(&url)
                .send()
                .await
                .map_err(|e| fail(format!("unreachable ({e})")))?;
            if !resp.status().is_success() {
                return Err(fail(format!("answered HTTP {}", resp.status().as_u16())));
            }
            let body = resp
                .bytes()
                .await
                .map_err(|e| fail(format!("the body could not be read ({e})")))?;
            if body.len() > CHECK_MAX_BYTES {
                return Err(fail("larger than 256 KB".into()));
            }
            Ok(String::from_utf8_lossy(&body).into_owned())
        }
    };
    let jwks_url = match &rec.jwks {
        JwksLocation::Url { url } => url.clone(),
        JwksLocation::Discovery => {
            let url = discovery_url(&rec.issuer);
            let doc = get(url.clone()).await?;
            jwks_uri_from_discovery(&rec.issuer, &doc)
                .map_err(|e| CliError::new(format!("--check: {url}: {e}; nothing was stored")))?
        }
    };
    let doc = get(jwks_url.clone()).await?;
    let keys = serde_json::from_str::<Value>(&doc)
        .ok()
        .and_then(|v| v.get("keys").and_then(Value::as_array).cloned())
        .ok_or_else(|| {
            CliError::new(format!(
                "--check: {jwks_url}: not a JWK Set (a JSON object with a \"keys\" array); nothing was stored"
            ))
        })?;
    let usable = keys
        .iter()
        .filter(|k| rec.algorithms.iter().any(|a| jwk_fits(*a, k)))
        .count();
    if usable == 0 {
        let algs: Vec<String> = rec.algorithms.iter().map(|a| format!("{a:?}")).collect();
        return Err(CliError::new(format!(
            "--check: {jwks_url}: none of its {} keys can verify {}; nothing was stored",
            keys.len(),
            algs.join(", ")
        )));
    }
    Ok((jwks_url, usable))
}

/// A JWK the proxy would use for `alg`: a signing key of the right type and curve, whose own
/// `alg`, if it names one, is `alg`.
fn jwk_fits(alg: JwsAlg, k: &Value) -> bool {
    let s = |f: &str| k.get(f).and_then(Value::as_str);
    let kind_fits = match alg {
        JwsAlg::RS256
        | JwsAlg::RS384
        | JwsAlg::RS512
        | JwsAlg::PS256
        | JwsAlg::PS384
        | JwsAlg::PS512 => s("kty") == Some("RSA"),
        JwsAlg::ES256 => s("kty") == Some("EC") && s("crv") == Some("P-256"),
        JwsAlg::ES384 => s("kty") == Some("EC") && s("crv") == Some("P-384"),
        JwsAlg::EdDSA => s("kty") == Some("OKP") && s("crv") == Some("Ed25519"),
    };
    kind_fits
        && s("use").is_none_or(|u| u == "sig")
        && s("alg").is_none_or(|a| JwsAlg::parse(a) == Some(alg))
}

pub async fn add(ctx: &mut Ctx<'_>, store: &dyn IssuerStore, a: IssuerAdd) -> Result<Out> {
    let tenant = match (&a.tenant, &a.tenant_claim) {
        (Some(t), _) => {
            check_tenant(ctx, t).await?;
            TenantMapping::Fixed {
                tenant_id: t.clone(),
            }
        }
        (None, Some(claim)) => {
            for t in &a.tenant_allow {
                check_tenant(ctx, t).await?;
            }
            TenantMapping::Claim {
                claim: claim.clone(),
                allowed: a.tenant_allow.clone(),
            }
        }
        (None, None) => return Err(CliError::new("give --tenant or --tenant-claim")),
    };
    let jwks = match &a.jwks_url {
        Some(url) => JwksLocation::Url { url: url.clone() },
        None => JwksLocation::Discovery,
    };
    let mut algorithms: Vec<JwsAlg> = Vec::new();
    for alg in &a.algorithms {
        if !algorithms.contains(alg) {
            algorithms.push(*alg);
        }
    }
    if algorithms.is_empty() {
        algorithms.push(JwsAlg::RS256);
    }
    let dlp_policy = a.dlp_policy.as_deref().map(load_policy_file).transpose()?;
    let mut required_claims: Vec<ClaimRule> = a
        .require
        .iter()
        .map(|(claim, value)| ClaimRule::Equals {
            claim: claim.clone(),
            value: value.clone(),
        })
        .collect();
    required_claims.extend(
        a.require_contains
            .iter()
            .map(|(claim, value)| ClaimRule::Contains {
                claim: claim.clone(),
                value: value.clone(),
            }),
    );
    let rec = IssuerRecord {
        issuer: a.issuer.clone(),
        audiences: a.audiences.clone(),
        jwks,
        algorithms,
        tenant,
        principal_claim: a.principal_claim.clone(),
        required_claims,
        policy: IssuerPolicy {
            allowed_cidrs: a.allow_cidr.clone(),
            allowed_models: a.allow_model.clone(),
            allowed_routes: a.allow_route.clone(),
            model_pools: a.model_pool.iter().cloned().collect(),
            dlp_policy,
            limits: limits(&a),
        },
        tenant_admin: match (&a.tenant_admin, &a.tenant_admin_contains) {
            (Some((claim, value)), _) => Some(ClaimRule::Equals {
                claim: claim.clone(),
                value: value.clone(),
            }),
            (None, Some((claim, value))) => Some(ClaimRule::Contains {
                claim: claim.clone(),
                value: value.clone(),
            }),
            (None, None) => None,
        },
        created_at: ctx.clock.now_ms(),
    };
    rec.validate()
        .map_err(|e| CliError::new(format!("issuer {:?}: {e}", rec.issuer)))?;
    let checked = if a.check {
        Some(check_keys(&rec).await?)
    } else {
        None
    };
    let existing = store
        .get_issuer(&rec.issuer)
        .await
        .ctx(format!("reading issuer {:?}", rec.issuer))?;
    if existing.is_some() && !a.replace {
        return Err(CliError::new(format!(
            "issuer {:?} is already trusted; pass --replace to replace its record",
            rec.issuer
        )));
    }
    store
        .put_issuer(&rec)
        .await
        .ctx(format!("storing issuer {:?}", rec.issuer))?;
    let verb = if existing.is_some() {
        "Replaced"
    } else {
        "Trusted"
    };
    let mut human = format!("{verb} issuer {}.\n", rec.issuer);
    human.push_str(&fields(&summary(&rec)));
    if let TenantMapping::Claim { allowed, .. } = &rec.tenant
        && allowed.is_empty()
        && rec.required_claims.is_empty()
    {
        human.push_str(
            "\nWarning: any token of this issuer may name any tenant; add --tenant-allow or \
             --require unless only your own workloads can get tokens from it.\n",
        );
    }
    if let Some((url, usable)) = &checked {
        human.push_str(&format!(
            "\nChecked: {url} holds {usable} key(s) usable with the allowed algorithms.\n"
        ));
    }
    human.push_str(&format!("\nThis {NOTE}.\n"));
    let mut json = record_json(&rec);
    json["note"] = json!(NOTE);
    if let Some((url, usable)) = checked {
        json["checked"] = json!({"jwks_url": url, "usable_keys": usable});
    }
    Ok(Out::new(human, json))
}

fn keys_line(rec: &IssuerRecord) -> String {
    match &rec.jwks {
        JwksLocation::Url { url } => url.clone(),
        JwksLocation::Discovery => format!("discovery: {}", discovery_url(&rec.issuer)),
    }
}

fn tenant_line(rec: &IssuerRecord) -> String {
    match &rec.tenant {
        TenantMapping::Fixed { tenant_id } => tenant_id.clone(),
        TenantMapping::Claim { claim, allowed } if allowed.is_empty() => {
            format!("claim {claim} (any existing tenant)")
        }
        TenantMapping::Claim { claim, allowed } => {
            format!("claim {claim} (one of {})", allowed.join(", "))
        }
    }
}

fn alg_names(rec: &IssuerRecord) -> Vec<String> {
    rec.algorithms.iter().map(|a| format!("{a:?}")).collect()
}

fn rule_line(r: &ClaimRule) -> String {
    match r {
        ClaimRule::Equals { claim, value } => format!("{claim} = {value}"),
        ClaimRule::Contains { claim, value } => format!("{claim} contains {value}"),
    }
}

fn list_or(items: &[String], none: &str) -> String {
    if items.is_empty() {
        none.to_owned()
    } else {
        items.join(", ")
    }
}

fn summary(rec: &IssuerRecord) -> Vec<(&'static str, String)> {
    let p = &rec.policy;
    let rules: Vec<String> = rec.required_claims.iter().map(rule_line).collect();
    let cidrs: Vec<String> = p.allowed_cidrs.iter().map(ToString::to_string).collect();
    let pools: Vec<String> = p
        .model_pools
        .iter()
        .map(|(m, pool)| format!("{m}={pool}"))
        .collect();
    vec![
        ("audiences", rec.audiences.join(", ")),
        ("keys", keys_line(rec)),
        ("algorithms", alg_names(rec).join(", ")),
        ("tenant", tenant_line(rec)),
        ("principal claim", rec.principal_claim.clone()),
        ("required claims", list_or(&rules, "none")),
        (
            "tenant admins",
            rec.tenant_admin
                .as_ref()
                .map(rule_line)
                .unwrap_or_else(|| "none".to_owned()),
        ),
        ("models", list_or(&p.allowed_models, "any")),
        ("routes", list_or(&p.allowed_routes, "all")),
        ("source networks", list_or(&cidrs, "any")),
        ("model pools", list_or(&pools, "tenant's")),
        (
            "dlp policy",
            if p.dlp_policy.is_some() {
                "own".to_owned()
            } else {
                "tenant's".to_owned()
            },
        ),
        (
            "limits",
            p.limits
                .as_ref()
                .map(|l| serde_json::to_string(l).unwrap_or_default())
                .unwrap_or_else(|| "tenant's per-key defaults".to_owned()),
        ),
        ("created", rfc3339(rec.created_at)),
    ]
}

/// The record as stored, with `created_at` readable and the DLP policy in its file shape.
fn record_json(rec: &IssuerRecord) -> Value {
    let mut v = serde_json::to_value(rec).unwrap_or(Value::Null);
    v["created_at"] = json!(rfc3339(rec.created_at));
    if let Some(p) = &rec.policy.dlp_policy {
        v["policy"]["dlp_policy"] = policy_json(p);
    }
    if let JwksLocation::Discovery = rec.jwks {
        v["jwks"]["url"] = json!(discovery_url(&rec.issuer));
    }
    v
}

pub async fn list(store: &dyn IssuerStore) -> Result<Out> {
    let mut all = store.list_issuers().await.ctx("listing issuers")?;
    all.sort_by(|a, b| a.issuer.cmp(&b.issuer));
    let mut table = Table::new(["ISSUER", "AUDIENCES", "KEYS", "TENANT", "CREATED"]);
    for r in &all {
        table.row([
            r.issuer.clone(),
            r.audiences.join(","),
            match r.jwks {
                JwksLocation::Url { .. } => "jwks url".to_owned(),
                JwksLocation::Discovery => "discovery".to_owned(),
            },
            tenant_line(r),
            rfc3339(r.created_at),
        ]);
    }
    let human = if all.is_empty() {
        "No trusted issuers. Add one with `tollgate issuer add`.".to_owned()
    } else {
        table.render()
    };
    Ok(Out::new(
        human,
        json!({ "issuers": all.iter().map(record_json).collect::<Vec<_>>() }),
    ))
}

async fn load(store: &dyn IssuerStore, issuer: &str) -> Result<IssuerRecord> {
    store
        .get_issuer(issuer)
        .await
        .ctx(format!("reading issuer {issuer:?}"))?
        .ok_or_else(|| {
            CliError::new(format!(
                "issuer {issuer:?} is not trusted (`tollgate issuer list` shows the exact values)"
            ))
        })
}

pub async fn show(store: &dyn IssuerStore, a: IssuerRef) -> Result<Out> {
    let rec = load(store, &a.issuer).await?;
    let mut human = format!("Issuer {}\n", rec.issuer);
    human.push_str(&fields(&summary(&rec)));
    Ok(Out::new(human, record_json(&rec)))
}

pub async fn remove(ctx: &mut Ctx<'_>, store: &dyn IssuerStore, a: IssuerRemove) -> Result<Out> {
    let rec = load(store, &a.issuer).await?;
    confirm(
        ctx,
        a.yes,
        &format!(
            "Stop trusting {}? Its tokens will be refused (tenant {}).",
            rec.issuer,
            tenant_line(&rec)
        ),
    )?;
    match store.delete_issuer(&rec.issuer).await {
        Ok(()) | Err(StoreError::NotFound) => {}
        Err(e) => {
            return Err(CliError::store(
                format!("removing issuer {:?}", rec.issuer),
                e,
            ));
        }
    }
    Ok(Out::new(
        format!(
            "Removed issuer {}; its tokens are refused. This {NOTE}.",
            rec.issuer
        ),
        json!({"issuer": rec.issuer, "removed": true, "note": NOTE}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{self, Command};
    use crate::ctx::{Console, Settings};
    use rand::{SeedableRng, rngs::StdRng};
    use tollgate_core::clock::FakeClock;
    use tollgate_core::ports::TenantStore;
    use tollgate_core::records::Tenant;
    use tollgate_memory::MemoryStore;

    const T0: u64 = 1_750_000_000_000;
    const ISS: &str = "https://token.actions.githubusercontent.com";

    struct Answer(Option<bool>);
    impl Console for Answer {
        fn read_secret(&mut self, _: &str) -> std::io::Result<String> {
            Err(std::io::ErrorKind::UnexpectedEof.into())
        }
        fn env_var(&self, _: &str) -> Option<String> {
            None
        }
        fn confirm(&mut self, _: &str) -> Option<bool> {
            self.0
        }
    }

    async fn store() -> MemoryStore {
        let s = MemoryStore::new();
        s.put_tenant(&Tenant::new("acme", "Acme", "plat@acme.test", T0))
            .await
            .unwrap();
        let mut off = Tenant::new("gone", "Gone", "plat@acme.test", T0);
        off.disabled = true;
        s.put_tenant(&off).await.unwrap();
        s
    }

    fn parse(argv: &[&str]) -> std::result::Result<IssuerCmd, clap::Error> {
        let cli = args::parse_from(
            ["tollgate", "issuer"]
                .into_iter()
                .chain(argv.iter().copied()),
        )?;
        match cli.command {
            Command::Issuer(c) => Ok(c),
            other => panic!("{other:?}"),
        }
    }

    async fn run_on(s: &MemoryStore, answer: Option<bool>, argv: &[&str]) -> Result<Out> {
        let cmd = parse(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        let clock = FakeClock::new(T0);
        let mut rng = StdRng::seed_from_u64(1);
        let mut console = Answer(answer);
        let mut ctx = Ctx {
            tenants: s,
            keys: s,
            pools: s,
            secrets: s,
            limits: Some(s),
            issuers: Some(s),
            prices: Some(s),
            rotation: None,
            clock: &clock,
            rng: &mut rng,
            console: &mut console,
            settings: Settings::default(),
        };
        run(&mut ctx, cmd).await
    }

    #[tokio::test]
    async fn add_check_fetches_discovery_and_keys_and_refuses_what_would_not_verify() {
        let s = store().await;
        let rsa = json!({"kty": "RSA", "use": "sig", "kid": "r1", "n": "AQAB", "e": "AQAB"});
        let ec = json!({"kty": "EC", "crv": "P-256", "kid": "e1", "x": "AA", "y": "AA"});
        let enc = json!({"kty": "RSA", "use": "enc", "kid": "r2", "n": "AQAB", "e": "AQAB"});
        let base = serve_with(|_| Vec::new()).await; // knows nothing: every path is a 404
        let iss_dead = format!("{base}/dead");
        let e = run_on(
            &s,
            None,
            &[
                "add",
                &iss_dead,
                "--audience",
                "tg",
                "--discovery",
                "--tenant",
                "acme",
                "--check",
            ],
        )
        .await
        .unwrap_err();
        assert!(
            e.0.contains("HTTP 404") && e.0.contains("nothing was stored"),
            "{e}"
        );
        assert!(s.get_issuer(&iss_dead).await.unwrap().is_none());

        // An issuer on a second server whose documents name that server's own URL.
        let good_jwks = json!({"keys": [rsa, enc]}).to_string();
        let only_enc = json!({"keys": [enc, ec]}).to_string();
        let routes = |base: &str| {
            vec![
                (
                    "/good/.well-known/openid-configuration".to_owned(),
                    json!({"issuer": format!("{base}/good"), "jwks_uri": format!("{base}/good/jwks")}).to_string(),
                ),
                ("/good/jwks".to_owned(), good_jwks.clone()),
                (
                    "/liar/.well-known/openid-configuration".to_owned(),
                    json!({"issuer": "https://someone-else.example", "jwks_uri": format!("{base}/good/jwks")}).to_string(),
                ),
                ("/enc/jwks".to_owned(), only_enc.clone()),
            ]
        };
        let base = serve_with(routes).await;
        let good = format!("{base}/good");
        let out = run_on(
            &s,
            None,
            &[
                "add",
                &good,
                "--audience",
                "tg",
                "--discovery",
                "--tenant",
                "acme",
                "--check",
                "--json",
            ],
        )
        .await
        .unwrap();
        assert_eq!(
            out.json["checked"]["usable_keys"], 1,
            "the enc key does not count"
        );
        assert_eq!(out.json["checked"]["jwks_url"], format!("{good}/jwks"));
        assert!(s.get_issuer(&good).await.unwrap().is_some());

        let liar = format!("{base}/liar");
        let e = run_on(
            &s,
            None,
            &[
                "add",
                &liar,
                "--audience",
                "tg",
                "--discovery",
                "--tenant",
                "acme",
                "--check",
            ],
        )
        .await
        .unwrap_err();
        assert!(e.0.contains("another issuer"), "{e}");
        assert!(s.get_issuer(&liar).await.unwrap().is_none());

        // RS256 wanted, the set has only an encryption key and an EC key.
        let enc_iss = format!("{base}/enc");
        let enc_url = format!("{base}/enc/jwks");
        let e = run_on(
            &s,
            None,
            &[
                "add",
                &enc_iss,
                "--audience",
                "tg",
                "--jwks-url",
                &enc_url,
                "--tenant",
                "acme",
                "--check",
            ],
        )
        .await
        .unwrap_err();
        assert!(e.0.contains("none of its 2 keys can verify RS256"), "{e}");
        // ES256 fits the EC key.
        run_on(
            &s,
            None,
            &[
                "add",
                &enc_iss,
                "--audience",
                "tg",
                "--jwks-url",
                &enc_url,
                "--alg",
                "ES256",
                "--tenant",
                "acme",
                "--check",
            ],
        )
        .await
        .unwrap();
    }

    /// Serves fixed bodies by path on loopback (one request per connection); `routes` gets
    /// the server's base URL, so documents can name it.
    async fn serve_with(routes: impl Fn(&str) -> Vec<(String, String)>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://localhost:{}", l.local_addr().unwrap().port());
        let routes = routes(&base);
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                let path = req.split_whitespace().nth(1).unwrap_or("").to_owned();
                let (status, body) = routes
                    .iter()
                    .find(|(p, _)| *p == path)
                    .map_or(("404 Not Found", String::new()), |(_, b)| {
                        ("200 OK", b.clone())
                    });
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            }
        });
        base
    }

    #[tokio::test]
    async fn add_stores_every_field_and_list_show_remove_work() {
        let s = store().await;
        let out = run_on(
            &s,
            None,
            &[
                "add",
                ISS,
                "--audience",
                "tollgate",
                "--audience",
                "api://tg",
                "--discovery",
                "--alg",
                "RS256",
                "--alg",
                "ES256",
                "--alg",
                "RS256",
                "--tenant",
                "acme",
                "--require",
                "repository=acme/app",
                "--require-contains",
                "groups=llm",
                "--principal-claim",
                "repository",
                "--allow-model",
                "gpt-4o*",
                "--allow-route",
                "chat.completions",
                "--allow-cidr",
                "10.1.2.3/8",
                "--model-pool",
                "*=team",
                "--rpm",
                "60",
                "--budget-day",
                "5usd",
                "--tenant-admin-contains",
                "groups=tg-admins",
            ],
        )
        .await
        .unwrap();
        assert!(out.human.contains("Trusted issuer"), "{}", out.human);
        let rec = s.get_issuer(ISS).await.unwrap().unwrap();
        assert_eq!(rec.audiences, vec!["tollgate", "api://tg"]);
        assert_eq!(rec.jwks, JwksLocation::Discovery);
        assert_eq!(rec.algorithms, vec![JwsAlg::RS256, JwsAlg::ES256]);
        assert_eq!(
            rec.tenant,
            TenantMapping::Fixed {
                tenant_id: "acme".into()
            }
        );
        assert_eq!(rec.principal_claim, "repository");
        assert_eq!(
            rec.required_claims,
            vec![
                ClaimRule::Equals {
                    claim: "repository".into(),
                    value: "acme/app".into()
                },
                ClaimRule::Contains {
                    claim: "groups".into(),
                    value: "llm".into()
                },
            ]
        );
        assert_eq!(rec.policy.allowed_models, vec!["gpt-4o*"]);
        assert_eq!(rec.policy.allowed_cidrs[0].to_string(), "10.0.0.0/8");
        assert_eq!(rec.policy.model_pools["*"], "team");
        let l = rec.policy.limits.clone().unwrap();
        assert_eq!((l.rpm, l.budget_day_micros), (Some(60), Some(5_000_000)));
        assert_eq!(rec.created_at, T0);
        assert_eq!(
            rec.tenant_admin,
            Some(ClaimRule::Contains {
                claim: "groups".into(),
                value: "tg-admins".into()
            })
        );
        assert!(
            out.human.contains("groups contains tg-admins"),
            "{}",
            out.human
        );
        assert_eq!(
            out.json["jwks"]["url"],
            "https://token.actions.githubusercontent.com/.well-known/openid-configuration"
        );

        // Adding it again needs --replace.
        let argv = [
            "add",
            ISS,
            "--audience",
            "x",
            "--jwks-url",
            "https://k.test/jwks",
            "--tenant",
            "acme",
        ];
        let e = run_on(&s, None, &argv).await.unwrap_err();
        assert!(e.0.contains("--replace"), "{e}");
        assert_eq!(s.get_issuer(ISS).await.unwrap(), Some(rec));
        let mut with_replace = argv.to_vec();
        with_replace.push("--replace");
        let out = run_on(&s, None, &with_replace).await.unwrap();
        assert!(out.human.starts_with("Replaced"));
        let rec = s.get_issuer(ISS).await.unwrap().unwrap();
        assert_eq!(rec.audiences, vec!["x"]);
        assert_eq!(rec.policy, IssuerPolicy::default());

        let out = run_on(&s, None, &["list"]).await.unwrap();
        assert!(
            out.human.contains(ISS) && out.human.contains("jwks url"),
            "{}",
            out.human
        );
        assert_eq!(out.json["issuers"].as_array().unwrap().len(), 1);
        let out = run_on(&s, None, &["show", ISS]).await.unwrap();
        assert!(out.human.contains("https://k.test/jwks"), "{}", out.human);

        // Remove asks; without an answer nothing changes.
        let e = run_on(&s, None, &["remove", ISS]).await.unwrap_err();
        assert!(e.0.contains("--yes"), "{e}");
        let e = run_on(&s, Some(false), &["remove", ISS]).await.unwrap_err();
        assert_eq!(e.0, "aborted");
        assert!(s.get_issuer(ISS).await.unwrap().is_some());
        run_on(&s, Some(true), &["remove", ISS]).await.unwrap();
        assert!(s.get_issuer(ISS).await.unwrap().is_none());
        let e = run_on(&s, None, &["remove", ISS, "--yes"])
            .await
            .unwrap_err();
        assert!(e.0.contains("not trusted"), "{e}");
        let out = run_on(&s, None, &["list"]).await.unwrap();
        assert!(out.human.starts_with("No trusted issuers"));
    }

    #[tokio::test]
    async fn tenants_must_exist_and_be_enabled_and_nothing_is_stored_otherwise() {
        let s = store().await;
        let base = ["add", ISS, "--audience", "tg", "--discovery"];
        for (extra, want) in [
            (&["--tenant", "nobody"][..], "does not exist"),
            (&["--tenant", "gone"][..], "disabled"),
            (
                &[
                    "--tenant-claim",
                    "org",
                    "--tenant-allow",
                    "acme",
                    "--tenant-allow",
                    "nope",
                ][..],
                "does not exist",
            ),
        ] {
            let argv: Vec<&str> = base.iter().chain(extra).copied().collect();
            let e = run_on(&s, None, &argv).await.unwrap_err();
            assert!(e.0.contains(want), "{extra:?}: {e}");
        }
        assert!(s.list_issuers().await.unwrap().is_empty());
        // A claim mapping without an allow-list or required claims is stored with a warning.
        let argv: Vec<&str> = base
            .iter()
            .chain(&["--tenant-claim", "org"])
            .copied()
            .collect();
        let out = run_on(&s, None, &argv).await.unwrap();
        assert!(out.human.contains("Warning"), "{}", out.human);
    }

    #[test]
    fn bad_input_is_a_usage_error_with_a_clear_message() {
        let ok = [
            "add",
            ISS,
            "--audience",
            "tg",
            "--discovery",
            "--tenant",
            "acme",
        ];
        assert!(parse(&ok).is_ok());
        let swap = |i: usize, v: &'static str| {
            let mut a = ok.to_vec();
            a[i] = v;
            a
        };
        for (argv, want) in [
            (swap(1, "http://idp.example.test"), "https"),
            (swap(1, "https://u:p@idp.example.test"), "credentials"),
            (swap(1, "https://idp.example.test/?x=1"), "query"),
            (swap(1, "idp.example.test"), "not a valid URL"),
            (swap(1, " https://idp.example.test"), "spaces"),
            (swap(3, ""), "1-512"),
            (swap(6, "-x"), ""),
        ] {
            let e = parse(&argv).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{argv:?}");
            assert!(e.to_string().contains(want), "{argv:?}: {e}");
        }
        for (alg, want) in [
            ("none", "never"),
            ("HS256", "never"),
            ("rs256", "exact spelling"),
        ] {
            let mut a = ok.to_vec();
            a.extend(["--alg", alg]);
            let e = parse(&a).unwrap_err();
            assert!(e.to_string().contains(want), "{alg}: {e}");
        }
        for (extra, what) in [
            (&["--require", "repository"][..], "CLAIM=VALUE"),
            (&["--require", "a b=c"][..], "claim name"),
            (&["--jwks-url", "http://keys.example.test/j"][..], "https"),
            (
                &["--jwks-url", "https://keys.example.test/j"][..],
                "cannot be used",
            ),
            (&["--tenant-claim", "org"][..], "cannot be used"),
        ] {
            let mut a = ok.to_vec();
            a.extend(extra);
            let e = parse(&a).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{extra:?}");
            assert!(e.to_string().contains(what), "{extra:?}: {e}");
        }
        // Keys and tenant are required, each one way.
        for argv in [
            vec!["add", ISS, "--audience", "tg", "--tenant", "acme"],
            vec!["add", ISS, "--audience", "tg", "--discovery"],
            vec!["add", ISS, "--discovery", "--tenant", "acme"],
            vec![
                "add",
                ISS,
                "--audience",
                "tg",
                "--discovery",
                "--tenant",
                "acme",
                "--tenant-allow",
                "x",
            ],
        ] {
            assert_eq!(parse(&argv).unwrap_err().exit_code(), 2, "{argv:?}");
        }
        assert!(
            parse(&[
                "add",
                "http://localhost:8080",
                "--audience",
                "tg",
                "--jwks-url",
                "http://127.0.0.1:8080/jwks",
                "--tenant",
                "acme"
            ])
            .is_ok()
        );
        // The value of an equals rule may contain '='.
        assert_eq!(
            parse_claim_rule("sub=repo:acme/app:ref=main"),
            Ok(("sub".into(), "repo:acme/app:ref=main".into()))
        );
    }

    #[tokio::test]
    async fn a_dlp_policy_file_is_validated_and_stored_on_the_issuer() {
        let s = store().await;
        let dir = std::env::temp_dir().join(format!("tg-issuer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.json");
        std::fs::write(&good, r#"{"categories":{"contact":"redact"}}"#).unwrap();
        let bad = dir.join("bad.json");
        std::fs::write(&bad, r#"{"categories":{"gossip":"block"}}"#).unwrap();
        let base = [
            "add",
            ISS,
            "--audience",
            "tg",
            "--discovery",
            "--tenant",
            "acme",
        ];
        let mut argv = base.to_vec();
        let bad_path = bad.to_string_lossy().into_owned();
        argv.extend(["--dlp-policy", bad_path.as_str()]);
        let e = run_on(&s, None, &argv).await.unwrap_err();
        assert!(e.0.contains("policy file"), "{e}");
        assert!(s.get_issuer(ISS).await.unwrap().is_none());
        let mut argv = base.to_vec();
        let good_path = good.to_string_lossy().into_owned();
        argv.extend(["--dlp-policy", good_path.as_str()]);
        let out = run_on(&s, None, &argv).await.unwrap();
        let rec = s.get_issuer(ISS).await.unwrap().unwrap();
        assert!(rec.policy.dlp_policy.is_some());
        assert_eq!(
            out.json["policy"]["dlp_policy"]["categories"]["contact"],
            "redact"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn without_an_issuers_table_the_command_says_which_variable() {
        let s = store().await;
        let cmd = parse(&["list"]).unwrap();
        let clock = FakeClock::new(T0);
        let mut rng = StdRng::seed_from_u64(1);
        let mut console = Answer(None);
        let mut ctx = Ctx {
            tenants: &s,
            keys: &s,
            pools: &s,
            secrets: &s,
            limits: None,
            issuers: None,
            prices: None,
            rotation: None,
            clock: &clock,
            rng: &mut rng,
            console: &mut console,
            settings: Settings::default(),
        };
        let e = run(&mut ctx, cmd).await.unwrap_err();
        assert!(e.0.contains("TOLLGATE_ISSUERS_TABLE"), "{e}");
    }
}
