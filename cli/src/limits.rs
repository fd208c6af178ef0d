//! `tollgate limits show | set | clear`: limits on a tenant as a whole, the per-key defaults
//! a tenant gives its keys (`--per-key`), and a key's own overrides. The proxy applies, to a
//! key's request, the key's limits (per-key defaults ← key overrides) and the tenant's.
//! Changes take effect within the proxy's key cache TTL.

use crate::args::{LimitsCmd, LimitsSet, LimitsTarget, UsageArgs};
use crate::ctx::Ctx;
use crate::error::{CliError, Result};
use crate::output::{Out, Table};
use crate::policy::{Target, load_target};
use serde_json::{Value, json};
use tollgate_core::clock::rfc3339;
use tollgate_core::limits::{LimitKind, Limits, Windows};
use tollgate_core::ports::StoreError;

const NOTE: &str = "takes effect within the proxy's key cache TTL (a few seconds by default)";

pub async fn run(ctx: &mut Ctx<'_>, cmd: LimitsCmd) -> Result<Out> {
    match cmd {
        LimitsCmd::Show(a) => show(ctx, a).await,
        LimitsCmd::Set(a) => set(ctx, a).await,
        LimitsCmd::Clear(a) => clear(ctx, a).await,
    }
}

/// Which stored layer a command reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    Tenant,
    PerKey,
    Key,
}

fn layer(a: &LimitsTarget) -> Layer {
    match (&a.key, a.per_key) {
        (Some(_), _) => Layer::Key,
        (None, true) => Layer::PerKey,
        (None, false) => Layer::Tenant,
    }
}

fn stored(t: &Target, l: Layer) -> Option<&Limits> {
    match l {
        Layer::Tenant => t.tenant.limits.as_ref(),
        Layer::PerKey => t.tenant.key_limits.as_ref(),
        Layer::Key => t.key.as_ref().and_then(|k| k.limits.as_ref()),
    }
}

fn layer_name(t: &Target, l: Layer) -> String {
    match l {
        Layer::Tenant => format!("tenant {}", t.tenant.tenant_id),
        Layer::PerKey => format!("each key of tenant {} (defaults)", t.tenant.tenant_id),
        Layer::Key => t.name(),
    }
}

async fn write(ctx: &Ctx<'_>, t: &Target, l: Layer, v: Option<&Limits>) -> Result<()> {
    let r = match (l, &t.key) {
        (Layer::Key, Some(k)) => ctx.keys.set_key_limits(&k.key_id, v).await,
        (Layer::PerKey, _) => {
            ctx.tenants
                .set_tenant_key_limits(&t.tenant.tenant_id, v)
                .await
        }
        _ => ctx.tenants.set_tenant_limits(&t.tenant.tenant_id, v).await,
    };
    match r {
        Ok(()) => Ok(()),
        Err(StoreError::NotFound) => Err(CliError::new(format!(
            "{} no longer exists; nothing was stored",
            t.name()
        ))),
        Err(e) => Err(CliError::store(
            format!("storing the limits of {}", layer_name(t, l)),
            e,
        )),
    }
}

fn usd(micros: u64) -> String {
    format!("{}.{:06} usd", micros / 1_000_000, micros % 1_000_000).replace(".000000 usd", " usd")
}

fn rows(l: Option<&Limits>) -> Vec<(&'static str, Option<String>)> {
    let l = l.cloned().unwrap_or_default();
    let n = |v: Option<u64>| v.map(|v| v.to_string());
    vec![
        ("rpm", n(l.rpm)),
        ("tpm", n(l.tpm)),
        ("concurrency", n(l.concurrency)),
        ("budget_day", l.budget_day_micros.map(usd)),
        ("budget_month", l.budget_month_micros.map(usd)),
        ("tokens_day", n(l.tokens_day)),
        ("tokens_month", n(l.tokens_month)),
    ]
}

fn render(t: &Target) -> Out {
    let tenant = t.tenant.limits.as_ref();
    let per_key = t.tenant.key_limits.as_ref();
    let key_own = t.key.as_ref().and_then(|k| k.limits.as_ref());
    let effective_key = t.key.as_ref().map(|k| k.effective_limits(&t.tenant));
    let mut header = vec!["limit", "tenant (whole)", "per key (default)"];
    if t.key.is_some() {
        header.extend(["this key", "applied to this key"]);
    }
    let mut table = Table::new(header);
    let (a, b, c, d) = (
        rows(tenant),
        rows(per_key),
        rows(key_own),
        rows(effective_key.as_ref()),
    );
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    for i in 0..a.len() {
        let mut row = vec![a[i].0.to_owned(), dash(&a[i].1), dash(&b[i].1)];
        if t.key.is_some() {
            row.push(dash(&c[i].1));
            row.push(dash(&d[i].1));
        }
        table.row(row);
    }
    let human = format!("Limits of {}:\n{}", t.name(), table.render());
    let j = |l: Option<&Limits>| serde_json::to_value(l).unwrap_or(Value::Null);
    Out::new(
        human,
        json!({
            "tenant_id": t.tenant.tenant_id,
            "key_id": t.key.as_ref().map(|k| k.key_id.clone()),
            "tenant": j(tenant),
            "per_key": j(per_key),
            "key": j(key_own),
            "effective_key": j(effective_key.as_ref()),
        }),
    )
}

pub async fn show(ctx: &mut Ctx<'_>, a: LimitsTarget) -> Result<Out> {
    let t = load_target(ctx.tenants, ctx.keys, &a.tenant, a.key.as_deref()).await?;
    Ok(render(&t))
}

pub async fn set(ctx: &mut Ctx<'_>, a: LimitsSet) -> Result<Out> {
    let l = layer(&a.target);
    let mut t = load_target(
        ctx.tenants,
        ctx.keys,
        &a.target.tenant,
        a.target.key.as_deref(),
    )
    .await?;
    let given = a.limits.limits();
    if given.concurrency == Some(0) || given.rpm == Some(0) {
        return Err(CliError::new(
            "a limit of 0 refuses every request; to stop a key, revoke it (tollgate key revoke)",
        ));
    }
    let new = stored(&t, l).cloned().unwrap_or_default().overlay(&given);
    write(ctx, &t, l, Some(&new)).await?;
    match l {
        Layer::Tenant => t.tenant.limits = Some(new),
        Layer::PerKey => t.tenant.key_limits = Some(new),
        Layer::Key => {
            if let Some(k) = t.key.as_mut() {
                k.limits = Some(new);
            }
        }
    }
    let mut out = render(&t);
    out.human = format!(
        "Stored the limits of {}; this {NOTE}.\n\n{}",
        layer_name(&t, l),
        out.human
    );
    out.json["note"] = json!(NOTE);
    Ok(out)
}

pub async fn clear(ctx: &mut Ctx<'_>, a: LimitsTarget) -> Result<Out> {
    let l = layer(&a);
    let t = load_target(ctx.tenants, ctx.keys, &a.tenant, a.key.as_deref()).await?;
    let had = stored(&t, l).is_some();
    write(ctx, &t, l, None).await?;
    Ok(Out::new(
        format!(
            "Cleared the limits of {}{}; this {NOTE}.",
            layer_name(&t, l),
            if had { "" } else { " (none were set)" }
        ),
        json!({
            "tenant_id": t.tenant.tenant_id,
            "key_id": t.key.as_ref().map(|k| k.key_id.clone()),
            "cleared": true,
            "had_limits": had,
            "note": NOTE,
        }),
    ))
}

/// `tollgate usage`: what the subject has used of each limit in the current UTC windows
/// (reservations of requests in flight included), what remains, and when each window resets.
pub async fn usage(ctx: &mut Ctx<'_>, a: UsageArgs) -> Result<Out> {
    let t = load_target(ctx.tenants, ctx.keys, &a.tenant, a.key.as_deref()).await?;
    let Some(store) = ctx.limits else {
        return Err(CliError::new(
            "no limit counters are configured for this deployment (TOLLGATE_LIMITS_TABLE)",
        ));
    };
    let (subject, limits) = match &t.key {
        Some(k) => (format!("key#{}", k.key_id), k.effective_limits(&t.tenant)),
        None => (
            format!("tenant#{}", t.tenant.tenant_id),
            t.tenant.limits.clone().unwrap_or_default(),
        ),
    };
    let now = ctx.clock.now_ms();
    let c = store
        .load_counters(&subject)
        .await
        .map_err(|e| CliError::store(format!("reading the counters of {}", t.name()), e))?
        .counters
        .current(now);
    let rows: Vec<(LimitKind, u64, Option<u64>)> = vec![
        (LimitKind::Rpm, c.requests, limits.rpm),
        (LimitKind::Tpm, c.tokens_minute, limits.tpm),
        (
            LimitKind::Concurrency,
            c.inflight.len() as u64,
            limits.concurrency,
        ),
        (LimitKind::BudgetDay, c.spend_day, limits.budget_day_micros),
        (
            LimitKind::BudgetMonth,
            c.spend_month,
            limits.budget_month_micros,
        ),
        (LimitKind::TokensDay, c.tokens_day, limits.tokens_day),
        (LimitKind::TokensMonth, c.tokens_month, limits.tokens_month),
    ];
    let show = |k: LimitKind, v: u64| match k {
        LimitKind::BudgetDay | LimitKind::BudgetMonth => usd(v),
        _ => v.to_string(),
    };
    let mut table = Table::new(["limit", "used", "limit", "remaining", "resets"]);
    let mut json_rows = Vec::new();
    for (k, used, limit) in rows {
        let reset = (k != LimitKind::Concurrency).then(|| Windows::reset_at(k, now));
        table.row([
            k.as_str().to_owned(),
            show(k, used),
            limit.map(|l| show(k, l)).unwrap_or_else(|| "-".into()),
            limit
                .map(|l| show(k, l.saturating_sub(used)))
                .unwrap_or_else(|| "-".into()),
            reset.map(rfc3339).unwrap_or_else(|| "-".into()),
        ]);
        json_rows.push(json!({
            "limit": k.as_str(),
            "used": used,
            "max": limit,
            "remaining": limit.map(|l| l.saturating_sub(used)),
            "resets_at": reset.map(rfc3339),
        }));
    }
    Ok(Out::new(
        format!(
            "Usage of {} (UTC windows; spend in USD, reservations of requests in flight included):\n{}",
            t.name(),
            table.render()
        ),
        json!({
            "tenant_id": t.tenant.tenant_id,
            "key_id": t.key.as_ref().map(|k| k.key_id.clone()),
            "subject": subject,
            "usage": json_rows,
            "in_flight": c.inflight.len(),
        }),
    ))
}
