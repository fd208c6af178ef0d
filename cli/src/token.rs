//! `tollgate token add | list | enable | disable | remove | set-value`.
//!
//! A token's value never passes through a flag, a record or an output: it is read from stdin
//! (or the environment variable `--value-env` names), written to Secrets Manager, and dropped.

use crate::args::{TokenAdd, TokenCmd, TokenList, TokenRef, TokenRemove, TokenSetValue};
use crate::ctx::{Ctx, MAX_SECRET_BYTES, POOL_SECRET_PREFIX, confirm};
use crate::error::{CliError, Result, StoreContext, describe};
use crate::output::{Out, Table, time_or_dash};
use serde_json::json;
use tollgate_core::clock::{EpochMs, rfc3339};
use tollgate_core::ports::{Secret, StoreError};
use tollgate_core::records::{SecretRef, TokenRecord, TokenStatus};

pub async fn run(ctx: &mut Ctx<'_>, cmd: TokenCmd) -> Result<Out> {
    match cmd {
        TokenCmd::Add(a) => add(ctx, *a).await,
        TokenCmd::List(a) => list(ctx, a).await,
        TokenCmd::Enable(a) => set_status(ctx, a, TokenStatus::Active).await,
        TokenCmd::Disable(a) => set_status(ctx, a, TokenStatus::Disabled).await,
        TokenCmd::Remove(a) => remove(ctx, a).await,
        TokenCmd::SetValue(a) => set_value(ctx, a).await,
        TokenCmd::SetRotation(a) => crate::rotate::set_rotation(ctx, a).await,
        TokenCmd::Stage(a) => crate::rotate::stage(ctx, a).await,
        TokenCmd::Rotate(a) => crate::rotate::rotate(ctx, a).await,
        TokenCmd::Reencrypt(a) => crate::tenant_token::reencrypt(ctx, a).await,
    }
}

/// `tollgate/pool/<pool>/<token_id>`: token ids are unique within a pool (the table's key is
/// pool + token id), so the pool is part of the secret's name.
pub fn secret_id_for(pool: &str, token_id: &str) -> String {
    format!("{POOL_SECRET_PREFIX}{pool}/{token_id}")
}

pub(crate) fn generate_id(ctx: &mut Ctx<'_>) -> String {
    let mut id = String::from("tok_");
    tollgate_core::base62::push_random(&mut id, 10, |b| ctx.rng.fill_bytes(b));
    id
}

/// Reads a token value from the named environment variable or from stdin. The value is
/// checked but never quoted in an error.
pub(crate) fn read_value(ctx: &mut Ctx<'_>, value_env: Option<&str>) -> Result<Secret> {
    let (raw, source) = match value_env {
        Some(var) => (
            ctx.console
                .env_var(var)
                .ok_or_else(|| CliError::new(format!("environment variable {var} is not set")))?,
            format!("environment variable {var}"),
        ),
        None => (
            ctx.console
                .read_secret("Token value (not echoed; end with Enter): ")
                .map_err(|e| CliError::new(format!("reading the token value from stdin: {e}")))?,
            "stdin".to_owned(),
        ),
    };
    if raw.len() as u64 > MAX_SECRET_BYTES {
        return Err(CliError::new(format!(
            "the token value from {source} is longer than {MAX_SECRET_BYTES} bytes"
        )));
    }
    let value = raw.trim_end_matches(['\n', '\r']);
    if value.trim().is_empty() {
        return Err(CliError::new(format!(
            "the token value from {source} is empty"
        )));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(CliError::new(format!(
            "the token value from {source} contains whitespace or control characters (more than one line?)"
        )));
    }
    Ok(Secret::new(value))
}

/// What every kind of `token add` (stored, tenant-owned, federated) checks before a value is
/// read or stored: the expiry is in the future, the pool exists (unless `--new-pool`: a
/// mistyped `--pool` must not quietly start a pool no key routes to) and the token id, given
/// or generated, is free in it. Returns the id.
pub(crate) async fn new_token_id(ctx: &mut Ctx<'_>, a: &TokenAdd, now: EpochMs) -> Result<String> {
    if let Some(t) = a.expires_at.filter(|t| *t <= now) {
        return Err(CliError::new(format!(
            "--expires-at {} is not in the future",
            rfc3339(t)
        )));
    }
    let token_id = match &a.id {
        Some(id) => id.clone(),
        None => generate_id(ctx),
    };
    let existing = ctx
        .pools
        .load_pool(&a.pool)
        .await
        .ctx(format!("reading pool {}", a.pool))?;
    if !a.new_pool && !crate::pool::pool_exists(ctx, &a.pool, &existing).await? {
        return Err(crate::pool::missing_pool(
            ctx,
            &a.pool,
            "pass --new-pool to create it with this token",
        )
        .await);
    }
    if existing.tokens.iter().any(|t| t.token_id == token_id) {
        return Err(CliError::new(format!(
            "token {token_id} already exists in pool {}; choose another --id",
            a.pool
        )));
    }
    Ok(token_id)
}

/// The pool record `token add` writes: active, with the flags' base URL (else the provider's),
/// weight, priority, expiry and owner (else `$USER`, else "operator").
pub(crate) fn added_record(
    ctx: &Ctx<'_>,
    a: &TokenAdd,
    token_id: &str,
    secret: SecretRef,
    now: EpochMs,
) -> TokenRecord {
    let owner = a
        .owner
        .clone()
        .or_else(|| ctx.console.env_var("USER").filter(|u| !u.trim().is_empty()))
        .unwrap_or_else(|| "operator".to_owned());
    let base_url = a
        .base_url
        .clone()
        .unwrap_or_else(|| a.provider.default_base_url().to_owned());
    TokenRecord {
        status: TokenStatus::Active,
        weight: a.weight,
        priority: a.priority,
        expires_at: a.expires_at,
        ..TokenRecord::new(
            token_id.to_owned(),
            a.pool.clone(),
            a.provider,
            base_url,
            secret,
            owner,
            now,
        )
    }
}

/// Writes a record made by [`added_record`] whose value lives elsewhere than Secrets Manager
/// (nothing to clean up when the write fails).
pub(crate) async fn put_added(ctx: &mut Ctx<'_>, rec: &TokenRecord) -> Result<()> {
    match ctx.pools.put_token(rec).await {
        Ok(()) => Ok(()),
        Err(StoreError::AlreadyExists) => Err(CliError::new(format!(
            "token {} already exists in pool {}; choose another --id",
            rec.token_id, rec.pool
        ))),
        Err(e) => Err(CliError::new(format!(
            "adding token {} to pool {} failed: {}",
            rec.token_id,
            rec.pool,
            describe(&e)
        ))),
    }
}

pub async fn add(ctx: &mut Ctx<'_>, a: TokenAdd) -> Result<Out> {
    if a.federation.federated {
        return crate::federated::add(ctx, a).await;
    }
    if a.tenant.is_some() {
        return crate::tenant_token::add(ctx, a).await;
    }
    let now = ctx.clock.now_ms();
    let token_id = new_token_id(ctx, &a, now).await?;
    let value = read_value(ctx, a.value_env.as_deref())?;

    let secret_id = secret_id_for(&a.pool, &token_id);
    match ctx.secrets.get_secret(&secret_id).await {
        Err(StoreError::NotFound) => {}
        Ok(_) => {
            return Err(CliError::new(format!(
                "secret {secret_id} already exists without a pool record; refusing to overwrite it \
                 (delete it, or choose another --id)"
            )));
        }
        Err(e) => return Err(CliError::store(format!("checking secret {secret_id}"), e)),
    }
    ctx.secrets
        .put_secret(&secret_id, &value)
        .await
        .ctx(format!("storing the token value as secret {secret_id}"))?;
    drop(value);

    let rec = added_record(
        ctx,
        &a,
        &token_id,
        SecretRef::SecretsManager {
            secret_id: secret_id.clone(),
        },
        now,
    );
    if let Err(e) = ctx.pools.put_token(&rec).await {
        // No orphans: the secret goes if its record could not be written.
        let cleanup = match ctx.secrets.delete_secret(&secret_id).await {
            Ok(()) | Err(StoreError::NotFound) => format!("secret {secret_id} was deleted again"),
            Err(de) => format!(
                "deleting secret {secret_id} failed too ({}); delete it by hand",
                describe(&de)
            ),
        };
        let why = match e {
            StoreError::AlreadyExists => {
                format!("token {token_id} already exists in pool {}", a.pool)
            }
            other => describe(&other),
        };
        return Err(CliError::new(format!(
            "adding token {token_id} to pool {} failed: {why}; {cleanup}",
            a.pool
        )));
    }
    Ok(Out::new(
        format!(
            "Added token {} to pool {} ({}, {}), status active. Value stored as secret {}.",
            rec.token_id,
            rec.pool,
            rec.provider.as_str(),
            rec.base_url,
            secret_id
        ),
        token_json(&rec, now),
    ))
}

pub fn secret_location(s: &SecretRef) -> String {
    match s {
        SecretRef::SecretsManager { secret_id } => format!("secretsmanager:{secret_id}"),
        SecretRef::KmsBlob { tenant_id, .. } => format!("kms-blob (tenant {tenant_id})"),
        SecretRef::Federated { audience, .. } => format!("federated (audience {audience})"),
    }
}

/// A token record for output: where the value lives, never the value or ciphertext.
pub fn token_json(t: &TokenRecord, now: EpochMs) -> serde_json::Value {
    let secret = match &t.secret {
        SecretRef::SecretsManager { secret_id } => {
            json!({ "kind": "secrets_manager", "secret_id": secret_id })
        }
        SecretRef::KmsBlob { tenant_id, .. } => {
            json!({ "kind": "kms_blob", "tenant_id": tenant_id })
        }
        SecretRef::Federated { audience, exchange } => {
            json!({ "kind": "federated", "audience": audience, "exchange": exchange })
        }
    };
    json!({
        "token_id": t.token_id,
        "pool": t.pool,
        "provider": t.provider,
        "base_url": t.base_url,
        "secret": secret,
        "owner": t.owner,
        "status": t.status,
        "weight": t.weight,
        "priority": t.priority,
        "cooldown_until": t.cooldown_until.map(rfc3339),
        "cooldown_remaining_ms": t.cooldown_until.filter(|c| *c > now).map(|c| c - now),
        "consecutive_failures": t.consecutive_failures,
        "total_failures": t.total_failures,
        "requests": t.requests,
        "tokens_in": t.tokens_in,
        "tokens_out": t.tokens_out,
        "last_used_at": t.last_used_at.map(rfc3339),
        "last_error": t.last_error,
        "expires_at": t.expires_at.map(rfc3339),
        "rotation": t.rotation,
        "created_at": rfc3339(t.created_at),
    })
}

pub async fn list(ctx: &mut Ctx<'_>, a: TokenList) -> Result<Out> {
    let mut tokens = ctx.pools.list_tokens().await.ctx("listing tokens")?;
    if let Some(p) = &a.pool {
        tokens.retain(|t| &t.pool == p);
    }
    tokens.sort_by(|x, y| (&x.pool, &x.token_id).cmp(&(&y.pool, &y.token_id)));
    let now = ctx.clock.now_ms();
    let mut table = Table::new([
        "POOL", "TOKEN", "PROVIDER", "BASE URL", "STATUS", "WEIGHT", "PRIORITY", "OWNER", "EXPIRES",
    ]);
    for t in &tokens {
        table.row([
            t.pool.clone(),
            t.token_id.clone(),
            t.provider.as_str().to_owned(),
            t.base_url.clone(),
            t.status.as_str().to_owned(),
            t.weight.to_string(),
            t.priority.to_string(),
            t.owner.clone(),
            time_or_dash(t.expires_at),
        ]);
    }
    let human = if tokens.is_empty() {
        "No tokens. Add one with `tollgate token add`.".to_owned()
    } else {
        table.render()
    };
    Ok(Out::new(
        human,
        json!({ "tokens": tokens.iter().map(|t| token_json(t, now)).collect::<Vec<_>>() }),
    ))
}

async fn find(ctx: &Ctx<'_>, pool: &str, token_id: &str) -> Result<TokenRecord> {
    ctx.pools
        .load_pool(pool)
        .await
        .ctx(format!("reading pool {pool}"))?
        .tokens
        .into_iter()
        .find(|t| t.token_id == token_id)
        .ok_or_else(|| not_found(pool, token_id))
}

fn not_found(pool: &str, token_id: &str) -> CliError {
    CliError::new(format!("no token {token_id} in pool {pool}"))
}

pub async fn set_status(ctx: &mut Ctx<'_>, a: TokenRef, status: TokenStatus) -> Result<Out> {
    match ctx
        .pools
        .set_token_status(&a.pool, &a.token_id, status)
        .await
    {
        Ok(()) => {}
        Err(StoreError::NotFound) => return Err(not_found(&a.pool, &a.token_id)),
        Err(e) => {
            return Err(CliError::store(
                format!(
                    "setting token {} in pool {} to {}",
                    a.token_id,
                    a.pool,
                    status.as_str()
                ),
                e,
            ));
        }
    }
    let what = if status == TokenStatus::Active {
        "enabled (cooldown and failure streak cleared)"
    } else {
        "disabled"
    };
    Ok(Out::new(
        format!(
            "Token {} in pool {} {what}; proxies pick this up within their pool cache TTL.",
            a.token_id, a.pool
        ),
        json!({ "pool": a.pool, "token_id": a.token_id, "status": status }),
    ))
}

pub async fn remove(ctx: &mut Ctx<'_>, a: TokenRemove) -> Result<Out> {
    let TokenRef { pool, token_id } = a.token;
    let rec = find(ctx, &pool, &token_id).await?;
    confirm(
        ctx,
        a.yes,
        &format!(
            "Remove token {token_id} ({}, {}) from pool {pool} and delete its secret?",
            rec.provider.as_str(),
            rec.base_url
        ),
    )?;
    match ctx.pools.delete_token(&pool, &token_id).await {
        Ok(()) => {}
        Err(StoreError::NotFound) => return Err(not_found(&pool, &token_id)),
        Err(e) => return Err(CliError::store(format!("removing token {token_id}"), e)),
    }
    let mut human = format!("Removed token {token_id} from pool {pool}.");
    let mut secret_deleted = serde_json::Value::Null;
    if let SecretRef::SecretsManager { secret_id } = &rec.secret {
        if secret_id.starts_with(POOL_SECRET_PREFIX) {
            match ctx.secrets.delete_secret(secret_id).await {
                Ok(()) | Err(StoreError::NotFound) => {
                    human.push_str(&format!(" Deleted secret {secret_id}."));
                    secret_deleted = json!(secret_id);
                }
                Err(e) => {
                    return Err(CliError::store(
                        format!(
                            "token {token_id} was removed from pool {pool}, but deleting its secret \
                             {secret_id} failed (delete it by hand)"
                        ),
                        e,
                    ));
                }
            }
        } else {
            human.push_str(&format!(
                " Secret {secret_id} is not managed by tollgate (outside {POOL_SECRET_PREFIX}); left in place."
            ));
        }
    }
    Ok(Out::new(
        human,
        json!({ "pool": pool, "token_id": token_id, "removed": true, "secret_deleted": secret_deleted }),
    ))
}

pub async fn set_value(ctx: &mut Ctx<'_>, a: TokenSetValue) -> Result<Out> {
    let TokenRef { pool, token_id } = a.token;
    let rec = find(ctx, &pool, &token_id).await?;
    if let SecretRef::KmsBlob { .. } = &rec.secret {
        return crate::tenant_token::set_value(ctx, &rec, a.value_env.as_deref()).await;
    }
    if let SecretRef::Federated { .. } = &rec.secret {
        return Err(CliError::new(format!(
            "token {token_id} is federated: it holds no value (the proxy exchanges an identity token for one)"
        )));
    }
    let SecretRef::SecretsManager { secret_id } = &rec.secret else {
        return Err(CliError::new(format!(
            "token {token_id} has no stored value to replace"
        )));
    };
    let value = read_value(ctx, a.value_env.as_deref())?;
    ctx.secrets
        .put_secret(secret_id, &value)
        .await
        .ctx(format!("storing a new value for secret {secret_id}"))?;
    drop(value);
    let mut human = format!(
        "Stored a new value for token {token_id} (secret {secret_id}); proxies pick it up within their secret cache TTL."
    );
    if matches!(
        rec.status,
        TokenStatus::Invalid | TokenStatus::Expired | TokenStatus::Disabled
    ) {
        human.push_str(&format!(
            "\nThe token is {}: run `tollgate token enable {pool} {token_id}` to put it back into rotation.",
            rec.status.as_str()
        ));
    }
    Ok(Out::new(
        human,
        json!({ "pool": pool, "token_id": token_id, "secret_id": secret_id, "status": rec.status, "updated": true }),
    ))
}
