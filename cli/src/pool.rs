//! `tollgate pool show | health | set-strategy | set-tenant-share`.
//!
//! A pool's tenant share (`set-tenant-share POOL --max-concurrency N`) caps how many requests
//! one tenant may have in flight through the pool at once, across every proxy instance, so one
//! tenant cannot take all of the pool's provider capacity.

use crate::args::{PoolCmd, PoolHealthArgs, PoolSetStrategy, PoolSetTenantShare, PoolShow};
use crate::ctx::Ctx;
use crate::error::{CliError, Result, StoreContext};
use crate::output::{Out, Table, or_dash, remaining, time_or_dash, truncate};
use crate::token::token_json;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use tollgate_core::clock::EpochMs;
use tollgate_core::records::{PoolConfig, PoolView, TokenRecord};

pub async fn run(ctx: &mut Ctx<'_>, cmd: PoolCmd) -> Result<Out> {
    match cmd {
        PoolCmd::Show(a) => show(ctx, a).await,
        PoolCmd::Health(a) => health(ctx, a).await,
        PoolCmd::SetStrategy(a) => set_strategy(ctx, a).await,
        PoolCmd::SetTenantShare(a) => set_tenant_share(ctx, a).await,
    }
}

/// `pool health [POOL]`: the figures the sweep's `pool_health` line carries, computed from the
/// pool table by the same code (`tollgate_core::sweep::pool_health`).
pub async fn health(ctx: &mut Ctx<'_>, a: PoolHealthArgs) -> Result<Out> {
    let mut tokens = ctx.pools.list_tokens().await.ctx("listing tokens")?;
    if let Some(p) = &a.pool {
        tokens.retain(|t| &t.pool == p);
        if tokens.is_empty() {
            return Err(CliError::new(format!("pool {p} has no tokens")));
        }
    }
    let now = ctx.clock.now_ms();
    let warn_ms = u64::from(a.expiring_days) * 86_400_000;
    let health = tollgate_core::sweep::pool_health(&tokens, now, warn_ms);
    let mut table = Table::new([
        "POOL",
        "TOKENS",
        "ACTIVE",
        "COOLING",
        "INVALID",
        "EXPIRED",
        "DISABLED",
        "SERVING",
        "LAST PROBE",
        "NEXT ROTATION DUE",
        "EXPIRING SOON",
    ]);
    let at = |t: &Option<tollgate_core::sweep::TokenAt>| match t {
        Some(t) => format!("{} ({})", time_or_dash(Some(t.at)), t.token_id),
        None => "-".to_owned(),
    };
    for h in &health {
        let n = |s: &str| h.by_status.get(s).copied().unwrap_or(0).to_string();
        let expiring = if h.expiring_soon.is_empty() {
            "-".to_owned()
        } else {
            h.expiring_soon
                .iter()
                .map(|e| format!("{} ({})", e.token_id, time_or_dash(Some(e.at))))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut due = at(&h.next_rotation_due);
        if h.rotations_overdue > 0 {
            due.push_str(&format!(" [{} overdue]", h.rotations_overdue));
        }
        table.row([
            h.pool.clone(),
            h.tokens.to_string(),
            n("active"),
            n("cooling"),
            n("invalid"),
            n("expired"),
            n("disabled"),
            h.serving.to_string(),
            at(&h.last_probe),
            due,
            expiring,
        ]);
    }
    let human = if health.is_empty() {
        "No tokens. Add one with `tollgate token add`.".to_owned()
    } else {
        table.render()
    };
    let pools: Vec<serde_json::Value> = health
        .iter()
        .map(|h| {
            let at = |t: &Option<tollgate_core::sweep::TokenAt>| {
                t.as_ref().map(
                    |t| json!({ "token_id": t.token_id, "at": tollgate_core::clock::rfc3339(t.at) }),
                )
            };
            json!({
                "pool": h.pool,
                "tokens": h.tokens,
                "by_status": h.by_status,
                "serving": h.serving,
                "last_probe": at(&h.last_probe),
                "next_rotation_due": at(&h.next_rotation_due),
                "rotations_overdue": h.rotations_overdue,
                "expiring_soon": h.expiring_soon.iter().map(|e| json!({
                    "token_id": e.token_id, "expires_at": tollgate_core::clock::rfc3339(e.at)
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Out::new(
        human,
        json!({ "expiring_days": a.expiring_days, "pools": pools }),
    ))
}

pub async fn show(ctx: &mut Ctx<'_>, a: PoolShow) -> Result<Out> {
    let pools: BTreeMap<String, PoolView> = match &a.pool {
        Some(p) => {
            let view = ctx
                .pools
                .load_pool(p)
                .await
                .ctx(format!("reading pool {p}"))?;
            BTreeMap::from([(p.clone(), view)])
        }
        None => {
            let mut m: BTreeMap<String, PoolView> = BTreeMap::new();
            for cfg in ctx
                .pools
                .list_pool_configs()
                .await
                .ctx("listing pool settings")?
            {
                let v = m.entry(cfg.pool).or_default();
                v.strategy = cfg.strategy;
                v.tenant_concurrency = cfg.tenant_concurrency;
            }
            for t in ctx.pools.list_tokens().await.ctx("listing tokens")? {
                m.entry(t.pool.clone()).or_default().tokens.push(t);
            }
            m
        }
    };
    let now = ctx.clock.now_ms();
    Ok(render(&pools, now))
}

/// Both renderings of a set of pools at time `now`.
pub fn render(pools: &BTreeMap<String, PoolView>, now: EpochMs) -> Out {
    let mut human = String::new();
    let mut json_pools = Vec::new();
    if pools.is_empty() {
        human.push_str("No pools. Add a token with `tollgate token add`.\n");
    }
    for (name, view) in pools {
        let mut tokens: Vec<&TokenRecord> = view.tokens.iter().collect();
        tokens.sort_by(|x, y| (x.priority, &x.token_id).cmp(&(y.priority, &y.token_id)));
        let usable = tokens
            .iter()
            .filter(|t| tollgate_core::pool::is_eligible(t, now))
            .count();
        if !human.is_empty() {
            human.push('\n');
        }
        let share = view
            .tenant_concurrency
            .map(|n| format!("  per-tenant in flight {n}"))
            .unwrap_or_default();
        human.push_str(&format!(
            "pool {name}  strategy {}{share}  tokens {}  usable now {usable}\n",
            view.strategy.as_str(),
            tokens.len()
        ));
        if tokens.is_empty() {
            human.push_str("  (no tokens)\n");
        } else {
            human.push_str(&token_table(&tokens, now).render());
        }
        json_pools.push(json!({
            "pool": name,
            "strategy": view.strategy,
            "tenant_concurrency": view.tenant_concurrency,
            "usable": usable,
            "tokens": tokens.iter().map(|t| token_json(t, now)).collect::<Vec<_>>(),
        }));
    }
    Out::new(human, json!({ "pools": json_pools }))
}

fn token_table(tokens: &[&TokenRecord], now: EpochMs) -> Table {
    let mut table = Table::new([
        "TOKEN",
        "PROVIDER",
        "BASE URL",
        "STATUS",
        "WEIGHT",
        "PRIO",
        "COOLDOWN",
        "FAILS",
        "REQUESTS",
        "TOKENS IN/OUT",
        "LAST USED",
        "LAST ERROR",
    ]);
    for t in tokens {
        table.row([
            t.token_id.clone(),
            t.provider.as_str().to_owned(),
            t.base_url.clone(),
            status_label(t, now),
            t.weight.to_string(),
            t.priority.to_string(),
            remaining(t.cooldown_until, now),
            format!("{}/{}", t.consecutive_failures, t.total_failures),
            t.requests.to_string(),
            format!("{}/{}", t.tokens_in, t.tokens_out),
            time_or_dash(t.last_used_at),
            truncate(&or_dash(t.last_error.as_deref().unwrap_or("")), 60),
        ]);
    }
    table
}

/// The stored status, marked when the token has passed its expiry but not been swept yet.
fn status_label(t: &TokenRecord, now: EpochMs) -> String {
    let s = t.status.as_str();
    if t.expires_at.is_some_and(|e| e <= now) && s != "expired" {
        format!("{s} (past expiry)")
    } else {
        s.to_owned()
    }
}

/// Every pool that exists: one with a settings record or at least one token. There is no
/// other pool record: a pool comes into being with its first token (`token add --new-pool`).
pub async fn existing_pools(ctx: &Ctx<'_>) -> Result<BTreeSet<String>> {
    let mut pools: BTreeSet<String> = ctx
        .pools
        .list_pool_configs()
        .await
        .ctx("listing pool settings")?
        .into_iter()
        .map(|c| c.pool)
        .collect();
    for t in ctx.pools.list_tokens().await.ctx("listing tokens")? {
        pools.insert(t.pool);
    }
    Ok(pools)
}

/// Whether `pool` exists, given its loaded view (tokens) and, only when it has none, the
/// settings records.
pub async fn pool_exists(ctx: &Ctx<'_>, pool: &str, view: &PoolView) -> Result<bool> {
    if !view.tokens.is_empty() {
        return Ok(true);
    }
    Ok(ctx
        .pools
        .list_pool_configs()
        .await
        .ctx("listing pool settings")?
        .iter()
        .any(|c| c.pool == pool))
}

/// "pool X does not exist (existing pools: a, b); " + what to do.
pub async fn missing_pool(ctx: &Ctx<'_>, pool: &str, what_to_do: &str) -> CliError {
    let known = match existing_pools(ctx).await {
        Ok(p) if p.is_empty() => "there are no pools yet".to_owned(),
        Ok(p) => format!(
            "existing pools: {}",
            p.into_iter().collect::<Vec<_>>().join(", ")
        ),
        Err(e) => format!("the existing pools could not be listed: {e}"),
    };
    CliError::new(format!(
        "pool {pool} does not exist ({known}); {what_to_do}"
    ))
}

pub async fn set_strategy(ctx: &mut Ctx<'_>, a: PoolSetStrategy) -> Result<Out> {
    let view = ctx
        .pools
        .load_pool(&a.pool)
        .await
        .ctx(format!("reading pool {}", a.pool))?;
    if !pool_exists(ctx, &a.pool, &view).await? {
        return Err(missing_pool(
            ctx,
            &a.pool,
            &format!(
                "a pool comes into being with its first token: `tollgate token add --pool {} --new-pool ...`",
                a.pool
            ),
        )
        .await);
    }
    let cfg = PoolConfig {
        // The rest of the settings stay as they are.
        tenant_concurrency: view.tenant_concurrency,
        ..PoolConfig::new(a.pool.clone(), a.strategy)
    };
    ctx.pools
        .set_pool_config(&cfg)
        .await
        .ctx(format!("setting the strategy of pool {}", a.pool))?;
    Ok(Out::new(
        format!(
            "Pool {} now uses {}; proxies pick this up within their pool cache TTL.",
            a.pool,
            a.strategy.as_str()
        ),
        json!({ "pool": a.pool, "strategy": a.strategy }),
    ))
}

pub async fn set_tenant_share(ctx: &mut Ctx<'_>, a: PoolSetTenantShare) -> Result<Out> {
    let view = ctx
        .pools
        .load_pool(&a.pool)
        .await
        .ctx(format!("reading pool {}", a.pool))?;
    if !pool_exists(ctx, &a.pool, &view).await? {
        return Err(missing_pool(
            ctx,
            &a.pool,
            &format!(
                "a pool comes into being with its first token: `tollgate token add --pool {} --new-pool ...`",
                a.pool
            ),
        )
        .await);
    }
    let cap = if a.clear { None } else { a.max_concurrency };
    let cfg = PoolConfig {
        tenant_concurrency: cap,
        ..PoolConfig::new(a.pool.clone(), view.strategy)
    };
    ctx.pools
        .set_pool_config(&cfg)
        .await
        .ctx(format!("setting the tenant share of pool {}", a.pool))?;
    let what = match cap {
        Some(n) => format!(
            "each tenant may have at most {n} requests in flight through pool {}",
            a.pool
        ),
        None => format!("pool {} has no per-tenant cap", a.pool),
    };
    Ok(Out::new(
        format!("{what}; proxies pick this up within their pool cache TTL."),
        json!({ "pool": a.pool, "tenant_concurrency": cap }),
    ))
}
