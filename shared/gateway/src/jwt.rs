//! A JWT caller, for [`authenticate`](crate::authenticate) (its only caller): header and
//! unverified `iss` → trusted issuer record → algorithm allow-list → key by `kid` (JWKS cache,
//! one rate-limited refresh) → signature (the `jsonwebtoken` crate; never by hand) → claims
//! ([`tollgate_core::identity::validate_claims`], on the injected clock) → tenant → source
//! network. The result is the same [`Principal`] a key gives: a record synthesized from the
//! issuer's policy under an id derived from issuer and subject. Every failure is the uniform
//! 401; the audit line names the check, the issuer (once trusted) and the principal (once the
//! signature verified). Never logs the token.

use crate::authenticate::Principal;
use crate::context::RequestCtx;
use crate::respond::Refusal;
use crate::state::Gateway;
use crate::state::issuers::algorithm;
use jsonwebtoken::{DecodingKey, Validation};
use std::net::IpAddr;
use tollgate_core::audit::bounded;
use tollgate_core::auth::{AuthFailure, verify_caller};
use tollgate_core::identity::{
    JwsAlg, JwtFailure, is_tenant_admin, peek, principal_record, string_claim, validate_claims,
};
use tollgate_core::reason::Reason;

/// Verifies the signature only: time, issuer and audience checks are
/// [`validate_claims`]'s, on the gateway's clock.
fn verified_claims(
    token: &str,
    key: &DecodingKey,
    alg: JwsAlg,
) -> Result<serde_json::Value, JwtFailure> {
    let mut v = Validation::new(algorithm(alg));
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    jsonwebtoken::decode::<serde_json::Value>(token, key, &v)
        .map(|d| d.claims)
        .map_err(|_| JwtFailure::BadSignature)
}

pub(crate) async fn authenticate(
    gw: &Gateway,
    token: &str,
    source_ip: Option<IpAddr>,
    ctx: &mut RequestCtx,
) -> Result<Principal, Refusal> {
    let deny = |f: JwtFailure| Refusal::new(Reason::from(f));
    let head = peek(token).map_err(deny)?;
    let issuer = gw
        .issuers
        .issuer(&head.iss, &mut ctx.calls)
        .await
        .map_err(crate::authenticate::store_down)?;
    let Some(issuer) = issuer.as_ref() else {
        return Err(deny(JwtFailure::IssuerUnknown));
    };
    ctx.audit.issuer = Some(bounded(&issuer.issuer));
    let alg = head
        .alg
        .filter(|a| issuer.algorithms.contains(a))
        .ok_or_else(|| deny(JwtFailure::AlgNotAllowed))?;
    let key = gw
        .issuers
        .key(issuer, alg, head.kid.as_deref(), &mut ctx.calls)
        .await
        .map_err(deny)?;
    let claims = verified_claims(token, &key, alg).map_err(deny)?;
    // From here the claims are the issuer's own: the audit line may name the principal.
    ctx.audit.principal = string_claim(&claims, &issuer.principal_claim).map(bounded);
    let now = gw.now();
    let id = validate_claims(issuer, &claims, now).map_err(deny)?;
    let tenant_admin = is_tenant_admin(issuer, &claims);
    let rec = principal_record(issuer, &id, now);
    ctx.audit.key_id = Some(rec.key_id.clone());
    let tenant = gw
        .keys
        .tenant(&id.tenant_id, &mut ctx.calls)
        .await
        .map_err(crate::authenticate::store_down)?;
    ctx.audit.tenant = Some(bounded(&id.tenant_id));
    let auth_deny = |f: AuthFailure| Refusal::new(Reason::from(f));
    verify_caller(&rec, tenant.as_deref(), source_ip).map_err(auth_deny)?;
    match tenant {
        Some(tenant) => Ok(Principal {
            tenant,
            rec: std::sync::Arc::new(rec),
            tenant_admin,
        }),
        // verify_caller() already refused this; kept total rather than unwrapping.
        None => Err(auth_deny(AuthFailure::TenantMissing)),
    }
}
