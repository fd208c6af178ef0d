//! `tollgate token add --federated`: a keyless pool token. Nothing is read from stdin and
//! nothing goes to Secrets Manager: the record names the audience and the provider's
//! federation ids, and each proxy exchanges an identity token for its own role for a
//! short-lived access token (docs/rotation.md, "Federated tokens").

use crate::args::{FederatedFlags, TokenAdd};
use crate::ctx::Ctx;
use crate::error::{CliError, Result};
use crate::output::Out;
use crate::token::token_json;
use tollgate_core::federation::{Exchange, OPENAI_TOKEN_URL, anthropic_token_url};
use tollgate_core::records::{ProviderKind, SecretRef};

/// An id or audience: printable, no spaces, bounded.
fn checked(flag: &str, v: Option<&String>, provider: ProviderKind) -> Result<String> {
    let v = v.ok_or_else(|| {
        CliError::new(format!(
            "--federated --provider {} needs --{flag}",
            provider.as_str()
        ))
    })?;
    if v.is_empty() || v.len() > 512 || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(CliError::new(format!(
            "--{flag} must be 1 to 512 characters with no spaces or control characters"
        )));
    }
    Ok(v.clone())
}

/// The token endpoint must be https (the identity token is a bearer credential), or http to
/// loopback for the local mock.
fn checked_url(url: &str) -> Result<String> {
    let ok = url.starts_with("https://")
        || ["http://127.0.0.1", "http://localhost", "http://[::1]"]
            .iter()
            .any(|p| {
                url.strip_prefix(p)
                    .is_some_and(|r| r.starts_with([':', '/']))
            });
    if !ok || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(CliError::new(
            "--token-url must be an https:// URL (http:// only to loopback)",
        ));
    }
    Ok(url.to_owned())
}

/// What the record stores for a federated token, from the flags.
pub fn secret_ref(f: &FederatedFlags, provider: ProviderKind, base_url: &str) -> Result<SecretRef> {
    let audience = checked("audience", f.audience.as_ref(), provider)?;
    let service_account_id = checked(
        "service-account-id",
        f.service_account_id.as_ref(),
        provider,
    )?;
    let exchange = match provider {
        ProviderKind::Openai => {
            if f.federation_rule_id.is_some()
                || f.organization_id.is_some()
                || f.workspace_id.is_some()
            {
                return Err(CliError::new(
                    "--federation-rule-id, --organization-id and --workspace-id are for --provider anthropic",
                ));
            }
            Exchange::OpenaiTokenExchange {
                token_url: checked_url(f.token_url.as_deref().unwrap_or(OPENAI_TOKEN_URL))?,
                identity_provider_id: checked(
                    "identity-provider-id",
                    f.identity_provider_id.as_ref(),
                    provider,
                )?,
                service_account_id,
            }
        }
        ProviderKind::Anthropic => {
            if f.identity_provider_id.is_some() {
                return Err(CliError::new(
                    "--identity-provider-id is for --provider openai",
                ));
            }
            let workspace_id = match &f.workspace_id {
                Some(_) => Some(checked("workspace-id", f.workspace_id.as_ref(), provider)?),
                None => None,
            };
            Exchange::AnthropicJwtBearer {
                token_url: checked_url(
                    &f.token_url
                        .clone()
                        .unwrap_or_else(|| anthropic_token_url(base_url)),
                )?,
                federation_rule_id: checked(
                    "federation-rule-id",
                    f.federation_rule_id.as_ref(),
                    provider,
                )?,
                organization_id: checked("organization-id", f.organization_id.as_ref(), provider)?,
                service_account_id,
                workspace_id,
            }
        }
    };
    Ok(SecretRef::Federated { audience, exchange })
}

pub async fn add(ctx: &mut Ctx<'_>, a: TokenAdd) -> Result<Out> {
    let now = ctx.clock.now_ms();
    let base_url = a
        .base_url
        .clone()
        .unwrap_or_else(|| a.provider.default_base_url().to_owned());
    let secret = secret_ref(&a.federation, a.provider, &base_url)?;
    let token_id = crate::token::new_token_id(ctx, &a, now).await?;
    let rec = crate::token::added_record(ctx, &a, &token_id, secret, now);
    crate::token::put_added(ctx, &rec).await?;
    Ok(Out::new(
        format!(
            "Added federated token {} to pool {} ({}, {}), status active. No secret stored: \
             proxies exchange their identity token for a short-lived access token \
             (TOLLGATE_FEDERATION must be set on the proxy).",
            rec.token_id,
            rec.pool,
            rec.provider.as_str(),
            rec.base_url,
        ),
        token_json(&rec, now),
    ))
}
