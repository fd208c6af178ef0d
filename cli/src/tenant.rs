//! `tollgate tenant create | list`.

use crate::args::{TenantCmd, TenantCreate};
use crate::ctx::Ctx;
use crate::error::{CliError, Result, StoreContext};
use crate::output::{Out, Table};
use serde_json::json;
use tollgate_core::clock::rfc3339;
use tollgate_core::ports::StoreError;
use tollgate_core::records::Tenant;

pub async fn run(ctx: &mut Ctx<'_>, cmd: TenantCmd) -> Result<Out> {
    match cmd {
        TenantCmd::Create(a) => create(ctx, a).await,
        TenantCmd::List => list(ctx).await,
    }
}

pub async fn create(ctx: &mut Ctx<'_>, a: TenantCreate) -> Result<Out> {
    let name = a.name.unwrap_or_else(|| a.tenant_id.clone());
    let t = Tenant {
        model_pools: a.model_pool.into_iter().collect(),
        ..Tenant::new(a.tenant_id, name, a.owner, ctx.clock.now_ms())
    };
    match ctx.tenants.put_tenant(&t).await {
        Ok(()) => {}
        Err(StoreError::AlreadyExists) => {
            return Err(CliError::new(format!(
                "tenant {:?} already exists",
                t.tenant_id
            )));
        }
        Err(e) => {
            return Err(CliError::store(
                format!("creating tenant {:?}", t.tenant_id),
                e,
            ));
        }
    }
    Ok(Out::new(
        format!(
            "Created tenant {} ({}), owner {}.",
            t.tenant_id, t.name, t.owner
        ),
        tenant_json(&t),
    ))
}

pub async fn list(ctx: &mut Ctx<'_>) -> Result<Out> {
    let mut ts = ctx.tenants.list_tenants().await.ctx("listing tenants")?;
    ts.sort_by(|a, b| a.tenant_id.cmp(&b.tenant_id));
    let mut table = Table::new(["TENANT", "NAME", "OWNER", "STATUS", "CREATED"]);
    for t in &ts {
        table.row([
            t.tenant_id.clone(),
            t.name.clone(),
            t.owner.clone(),
            status(t).to_owned(),
            rfc3339(t.created_at),
        ]);
    }
    let human = if ts.is_empty() {
        "No tenants. Create one with `tollgate tenant create`.".to_owned()
    } else {
        table.render()
    };
    Ok(Out::new(
        human,
        json!({ "tenants": ts.iter().map(tenant_json).collect::<Vec<_>>() }),
    ))
}

fn status(t: &Tenant) -> &'static str {
    if t.disabled { "disabled" } else { "active" }
}

fn tenant_json(t: &Tenant) -> serde_json::Value {
    json!({
        "tenant_id": t.tenant_id,
        "name": t.name,
        "owner": t.owner,
        "status": status(t),
        "created_at": rfc3339(t.created_at),
        "model_pools": t.model_pools,
    })
}
