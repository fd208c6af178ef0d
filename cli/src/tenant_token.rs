//! `tollgate token add --tenant T`: a tenant-owned provider key.
//!
//! The value (stdin or `--value-env`, never a flag) is encrypted with KMS under the deployment's
//! key with encryption context `{"tenant": T}` and kept on the pool record as
//! `SecretRef::KmsBlob`; no Secrets Manager secret is made. The proxy decrypts it with the same
//! context (`tollgate_aws::KmsEnvelope`, docs/design.md), so a blob copied onto another tenant's
//! token does not decrypt. The plaintext is dropped once encrypted and never printed.

use crate::args::TokenAdd;
use crate::ctx::Ctx;
use crate::error::{CliError, Result, StoreContext, describe};
use crate::output::Out;
use crate::token::{read_value, token_json};
use tollgate_core::clock::rfc3339;
use tollgate_core::ports::StoreError;
use tollgate_core::records::{SecretRef, TokenRecord};

pub async fn add(ctx: &mut Ctx<'_>, a: TokenAdd) -> Result<Out> {
    let Some(tenant) = a.tenant.clone() else {
        return Err(CliError::new("--tenant is required for a tenant-owned key"));
    };
    let now = ctx.clock.now_ms();
    if let Some(t) = a.expires_at.filter(|t| *t <= now) {
        return Err(CliError::new(format!(
            "--expires-at {} is not in the future",
            rfc3339(t)
        )));
    }
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
    let token_id = match a.id.clone() {
        Some(id) => id,
        None => {
            let mut id = String::from("tok_");
            tollgate_core::base62::push_random(&mut id, 10, |b| ctx.rng.fill_bytes(b));
            id
        }
    };
    if existing.tokens.iter().any(|t| t.token_id == token_id) {
        return Err(CliError::new(format!(
            "token {token_id} already exists in pool {}; choose another --id",
            a.pool
        )));
    }
    let value = read_value(ctx, a.value_env.as_deref())?;
    let ciphertext_b64 = encrypter
        .encrypt(&value, &tenant)
        .await
        .ctx(format!("encrypting the value for tenant {tenant} with KMS"))?;
    drop(value);
    let owner = a
        .owner
        .or_else(|| ctx.console.env_var("USER").filter(|u| !u.trim().is_empty()))
        .unwrap_or_else(|| "operator".to_owned());
    let rec = TokenRecord {
        weight: a.weight,
        priority: a.priority,
        expires_at: a.expires_at,
        ..TokenRecord::new(
            token_id.clone(),
            a.pool.clone(),
            a.provider,
            a.base_url
                .unwrap_or_else(|| a.provider.default_base_url().to_owned()),
            SecretRef::KmsBlob {
                ciphertext_b64,
                tenant_id: tenant.clone(),
            },
            owner,
            now,
        )
    };
    match ctx.pools.put_token(&rec).await {
        Ok(()) => {}
        Err(StoreError::AlreadyExists) => {
            return Err(CliError::new(format!(
                "token {token_id} already exists in pool {}",
                a.pool
            )));
        }
        Err(e) => {
            return Err(CliError::new(format!(
                "adding token {token_id} to pool {} failed: {}",
                a.pool,
                describe(&e)
            )));
        }
    }
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
