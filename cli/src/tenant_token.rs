//! Tenant-owned provider keys: `tollgate token add --tenant T`, `token set-value` on such a
//! token (the tenant's next value, encrypted the same way), and `token reencrypt` (every blob
//! re-encrypted under the current key material), `token stage` on such a token (the next value
//! encrypted for the tenant and kept as `staged_secret` until the rotation function's sweep
//! has probed it with a 2xx and swapped it in).
//!
//! The value (stdin or `--value-env`, never a flag) is encrypted with KMS under the deployment's
//! key with encryption context `{"tenant": T}` and kept on the pool record as
//! `SecretRef::KmsBlob`; no Secrets Manager secret is made. The proxy decrypts it with the same
//! context (`tollgate_aws::KmsEnvelope`, docs/design.md), so a blob copied onto another tenant's
//! token does not decrypt. The plaintext is dropped once encrypted and never printed.

use crate::args::{TokenAdd, TokenReencrypt};
use crate::ctx::Ctx;
use crate::error::{CliError, Result, StoreContext};
use crate::output::Out;
use crate::token::{read_value, token_json};
use serde_json::json;
use tollgate_core::ports::{TenantEncrypter, TokenSecretSwap};
use tollgate_core::records::{SecretRef, TokenRecord};

pub async fn add(ctx: &mut Ctx<'_>, a: TokenAdd) -> Result<Out> {
    let Some(tenant) = a.tenant.clone() else {
        return Err(CliError::new("--tenant is required for a tenant-owned key"));
    };
    let now = ctx.clock.now_ms();
    let encrypter = ctx
        .rotation
        .as_ref()
        .and_then(|r| r.tenant_keys)
        .ok_or_else(|| {
            CliError::new(
                "tenant-owned keys need a KMS key: set TOLLGATE_KMS_KEY_ID (stack output KmsKeyArn)",
            )
        })?;
    if ctx
        .tenants
        .get_tenant(&tenant)
        .await
        .ctx(format!("reading tenant {tenant}"))?
        .is_none()
    {
        return Err(CliError::new(format!(
            "no tenant {tenant}; create it first (tollgate tenant create)"
        )));
    }
    let token_id = crate::token::new_token_id(ctx, &a, now).await?;
    let value = read_value(ctx, a.value_env.as_deref())?;
    let ciphertext_b64 = encrypter
        .encrypt(&value, &tenant)
        .await
        .ctx(format!("encrypting the value for tenant {tenant} with KMS"))?;
    drop(value);
    let rec = crate::token::added_record(
        ctx,
        &a,
        &token_id,
        SecretRef::KmsBlob {
            ciphertext_b64,
            tenant_id: tenant.clone(),
        },
        now,
    );
    crate::token::put_added(ctx, &rec).await?;
    Ok(Out::new(
        format!(
            "Added tenant-owned token {} to pool {} ({}, {}) for tenant {tenant}, status active. \
             Value encrypted with KMS (encryption context tenant={tenant}) on the pool record.",
            rec.token_id,
            rec.pool,
            rec.provider.as_str(),
            rec.base_url
        ),
        token_json(&rec, now),
    ))
}

fn ports<'a>(ctx: &Ctx<'a>) -> Result<(&'a dyn TenantEncrypter, &'a dyn TokenSecretSwap)> {
    let r = ctx.rotation.as_ref();
    match (
        r.and_then(|r| r.tenant_keys),
        r.and_then(|r| r.token_secrets),
    ) {
        (Some(k), Some(s)) => Ok((k, s)),
        _ => Err(CliError::new(
            "tenant-owned keys need a KMS key: set TOLLGATE_KMS_KEY_ID (stack output KmsKeyArn)",
        )),
    }
}

/// `token set-value` on a tenant-owned token: the new value encrypted for the same tenant
/// replaces the blob (conditional on the blob read). Proxies use it within their pool and
/// secret cache TTLs; the previous value stays valid at the provider until the tenant revokes
/// it.
pub async fn set_value(
    ctx: &mut Ctx<'_>,
    rec: &TokenRecord,
    value_env: Option<&str>,
) -> Result<Out> {
    let SecretRef::KmsBlob { tenant_id, .. } = &rec.secret else {
        return Err(CliError::new("not a tenant-owned token"));
    };
    let (keys, swap) = ports(ctx)?;
    let value = read_value(ctx, value_env)?;
    let ciphertext_b64 = keys.encrypt(&value, tenant_id).await.ctx(format!(
        "encrypting the value for tenant {tenant_id} with KMS"
    ))?;
    drop(value);
    let new = SecretRef::KmsBlob {
        ciphertext_b64,
        tenant_id: tenant_id.clone(),
    };
    let swapped = swap
        .swap_secret(&rec.pool, &rec.token_id, &rec.secret, &new)
        .await
        .ctx(format!("storing the new value of token {}", rec.token_id))?;
    if !swapped {
        return Err(CliError::new(format!(
            "token {} changed while its value was being replaced; nothing written, run it again",
            rec.token_id
        )));
    }
    Ok(Out::new(
        format!(
            "Stored a new value for tenant-owned token {} (tenant {tenant_id}, KMS); proxies pick it up within their pool and secret cache TTLs (a 401 with the old value re-reads at once).",
            rec.token_id
        ),
        json!({ "pool": rec.pool, "token_id": rec.token_id, "tenant_id": tenant_id, "updated": true }),
    ))
}

/// `token reencrypt [--pool P]`: KMS ReEncrypt of every tenant-owned token's blob to the
/// deployment's key (its current key material), the tenant context kept; each record replaced
/// conditionally on the blob read. The plaintext never leaves KMS.
pub async fn reencrypt(ctx: &mut Ctx<'_>, a: TokenReencrypt) -> Result<Out> {
    let (keys, swap) = ports(ctx)?;
    let mut tokens = ctx.pools.list_tokens().await.ctx("listing tokens")?;
    if let Some(p) = &a.pool {
        tokens.retain(|t| &t.pool == p);
    }
    let mut done = Vec::new();
    let mut changed = Vec::new();
    for t in &tokens {
        let SecretRef::KmsBlob {
            ciphertext_b64,
            tenant_id,
        } = &t.secret
        else {
            continue;
        };
        let fresh = keys
            .reencrypt(ciphertext_b64, tenant_id)
            .await
            .ctx(format!(
                "re-encrypting token {} of pool {} (tenant {tenant_id})",
                t.token_id, t.pool
            ))?;
        let new = SecretRef::KmsBlob {
            ciphertext_b64: fresh,
            tenant_id: tenant_id.clone(),
        };
        let name = format!("{}/{}", t.pool, t.token_id);
        if swap
            .swap_secret(&t.pool, &t.token_id, &t.secret, &new)
            .await
            .ctx(format!("storing token {name}"))?
        {
            done.push(name);
        } else {
            changed.push(name);
        }
    }
    let mut human = format!(
        "Re-encrypted {} tenant-owned token value(s) under the current KMS key material.",
        done.len()
    );
    if !changed.is_empty() {
        human.push_str(&format!(
            " Changed meanwhile, left as they are (run again): {}.",
            changed.join(", ")
        ));
    }
    Ok(Out::new(
        human,
        json!({ "reencrypted": done, "changed_meanwhile": changed }),
    ))
}

/// `token stage` on a tenant-owned token: the next value, encrypted for the same tenant, is
/// kept on the record as `staged_secret`. The next sweep probes the provider with it and, on a
/// 2xx, makes it the token's value; a refused value stays staged and unused.
pub async fn stage(ctx: &mut Ctx<'_>, rec: &TokenRecord, value_env: Option<&str>) -> Result<Out> {
    let SecretRef::KmsBlob { tenant_id, .. } = &rec.secret else {
        return Err(CliError::new("not a tenant-owned token"));
    };
    let (keys, swap) = ports(ctx)?;
    let value = read_value(ctx, value_env)?;
    let ciphertext_b64 = keys.encrypt(&value, tenant_id).await.ctx(format!(
        "encrypting the value for tenant {tenant_id} with KMS"
    ))?;
    drop(value);
    let staged = SecretRef::KmsBlob {
        ciphertext_b64,
        tenant_id: tenant_id.clone(),
    };
    swap.set_staged(&rec.pool, &rec.token_id, Some(&staged))
        .await
        .ctx(format!("staging the next value of token {}", rec.token_id))?;
    Ok(Out::new(
        format!(
            "Staged the next value of tenant-owned token {} (tenant {tenant_id}, KMS). The rotation \
             function's next sweep tests it against the provider and, on success, makes it current.",
            rec.token_id
        ),
        json!({ "pool": rec.pool, "token_id": rec.token_id, "tenant_id": tenant_id, "staged": true }),
    ))
}
